//! Criterion benchmarks of herald's hot paths, with throughput in elements so the output reads
//! as recipients (or numbers, or messages) per second.
//!
//! `cargo bench --bench hot_paths` runs them all; add a filter such as `policy` to run one.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Duration, NaiveTime, Utc};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use herald::domain::{Address, Channel, JobId, MessageId, Purpose};
use herald::phone::{self, RegionCode};
use herald::policy::quiet_hours::QuietHours;
use herald::policy::{JobPolicy, PhoneMismatchPolicy, PolicyInput, PolicyRunner};
use herald::snapshot::{load_csv, Snapshot};
use herald::store::{CapRule, MemoryStore};
use herald::template::{count_parts, Template};

/// The allocator the gateway ships with, so these figures are its own.
#[cfg(unix)]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

const CONTACTS: usize = 200_000;
const BATCH: usize = 512;
const CN: RegionCode = RegionCode(*b"CN");

fn snapshot() -> Snapshot {
    let mut csv = String::from("contact_id,phone,timezone,sms_consent,first_name,city,tier\n");
    for i in 0..CONTACTS {
        csv.push_str(&format!(
            "c{i},+86131{:08},Asia/Shanghai,opt_in,N{},Shanghai,gold\n",
            20_000_000 + i,
            i % 100
        ));
    }
    let (snap, _) = load_csv(csv.as_bytes(), Utc::now(), CN).expect("snapshot");
    snap
}

fn bench_phone(c: &mut Criterion) {
    let numbers: Vec<String> = (0..1000)
        .map(|i| format!("+86 131 {:04} {:04}", 2300 + i % 100, i))
        .collect();
    let mut g = c.benchmark_group("phone");
    g.throughput(Throughput::Elements(numbers.len() as u64));
    g.bench_function("parse_validate", |b| {
        b.iter(|| {
            numbers
                .iter()
                .filter(|n| phone::parse(n, CN).is_ok())
                .count()
        })
    });
    // Time zones by number, per recipient without a contact zone: landlines and mobiles of
    // several countries, so both the full-number and the calling-code lookups run.
    let mixed: Vec<phone::PhoneInfo> = [
        "+86 131 2307 9337",
        "+86 10 1252 0004",
        "+1 212 736 5000",
        "+1 800 555 0100",
        "+7 912 345 67 89",
        "+7 495 123 45 67",
        "+44 7400 123456",
        "+49 30 1234567",
        "+55 11 96123 4567",
        "+61 2 9876 5432",
    ]
    .iter()
    .cycle()
    .take(1000)
    .filter_map(|n| phone::parse(n, CN).ok())
    .collect();
    g.throughput(Throughput::Elements(mixed.len() as u64));
    g.bench_function("zones_for", |b| {
        b.iter(|| {
            mixed
                .iter()
                .map(|p| phone::zones_for(p).len())
                .sum::<usize>()
        })
    });
    g.finish();
}

fn bench_snapshot(c: &mut Criterion, snap: &Snapshot) {
    let ids: Vec<String> = (0..BATCH)
        .map(|i| format!("c{}", (i * 7919) % CONTACTS))
        .collect();
    let mut g = c.benchmark_group("snapshot");
    g.throughput(Throughput::Elements(ids.len() as u64));
    g.bench_function("lookup_hit", |b| {
        b.iter(|| ids.iter().filter(|id| snap.lookup(id).is_some()).count())
    });
    g.finish();
}

fn job_policy(caps: bool) -> JobPolicy {
    JobPolicy {
        tenant: Default::default(),
        channel: Channel::Sms,
        wechat_account: None,
        push_platforms: None,
        fields: Arc::new(herald::template::channel::CompiledFields::None),
        purpose: Purpose::Marketing,
        phone_mismatch: PhoneMismatchPolicy::UseSnapshot,
        template: Arc::new(
            Template::compile("Hi {{first_name}}, 20% off in {{city}} tonight").expect("template"),
        ),
        variants: None,
        content_rules: Default::default(),
        job_variables: HashMap::new(),
        default_region: CN,
        quiet_hours: Some(QuietHours {
            start: NaiveTime::from_hms_opt(0, 0, 0).expect("time"),
            end: NaiveTime::from_hms_opt(23, 59, 59).expect("time"),
        }),
        cap_rules: if caps {
            vec![CapRule {
                channel: Channel::Sms,
                purpose: Purpose::Marketing,
                max: 2,
                window_seconds: 86_400,
            }]
        } else {
            Vec::new()
        },
        cap_holder_seed: 0,
        reserve_caps: caps,
    }
}

fn bench_policy(c: &mut Criterion, snap: &Snapshot) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let store = MemoryStore::new();
    let ids: Vec<String> = (0..BATCH)
        .map(|i| format!("c{}", (i * 7919) % CONTACTS))
        .collect();
    let inputs: Vec<PolicyInput<'_>> = ids
        .iter()
        .map(|id| PolicyInput {
            contact_id: id,
            upstream_phone: None,
            variables: None,
        })
        .collect();
    let mut g = c.benchmark_group("policy");
    g.throughput(Throughput::Elements(BATCH as u64));
    for (name, caps) in [("decide_batch", false), ("decide_batch_with_caps", true)] {
        let policy = job_policy(caps);
        let mut now: DateTime<Utc> = "2026-11-23T04:00:00Z".parse().expect("time");
        g.bench_function(name, |b| {
            b.iter(|| {
                // Two days on each round, so cap windows never fill up.
                now += Duration::days(2);
                rt.block_on(PolicyRunner::decide_batch(
                    &policy, snap, &store, &inputs, now,
                ))
                .expect("decide")
            })
        });
    }
    g.finish();
}

fn bench_render(c: &mut Criterion) {
    let t = Template::compile(
        "Hi {{first_name}}, 20% off everything in {{city}} tonight only. Reply STOP to opt out",
    )
    .expect("t");
    let values = ["Wei", "Shanghai"];
    let mut g = c.benchmark_group("template");
    g.throughput(Throughput::Elements(1));
    g.bench_function("render_and_count_parts", |b| {
        let mut out = String::with_capacity(256);
        b.iter(|| {
            out.clear();
            t.render_into(&mut out, |i| values.get(i).copied())
                .expect("render");
            count_parts(&out)
        })
    });
    g.bench_function("count_parts_ucs2", |b| {
        b.iter(|| count_parts("您好，今晚全场八折，回复TD退订"))
    });
    g.finish();
}

/// The per-message content check with the shipped rules (the Advertising Law's terms), and
/// the per-recipient variant choice of an A/B job.
fn bench_content(c: &mut Criterion) {
    let config: herald::config::Config =
        toml::from_str(herald::config::DEFAULT_TOML).expect("default config");
    let rules = config
        .compliance
        .compiled()
        .expect("shipped rules")
        .for_job(Channel::Sms, Purpose::Marketing);
    let body = "【星河商城】尊敬的会员，双十一全场八折，今晚零点截止，详情见 https://hrld.io/c/abcdefghij0123456789AB 回T退订";
    let parts = count_parts(body);
    let mut g = c.benchmark_group("content");
    g.throughput(Throughput::Elements(1));
    g.bench_function("check_message_shipped_rules", |b| {
        b.iter(|| rules.check_message(body, parts))
    });
    let spec = herald::template::VariantsSpec {
        variants: ["a", "b", "c"]
            .iter()
            .map(|n| herald::template::VariantSpec {
                name: n.to_string(),
                weight: 1,
            })
            .collect(),
        holdout: 0.1,
        rollout: None,
    };
    let joined = herald::template::variants::join(&["A {{x}}", "B {{x}}", "C {{x}}"]);
    let variants = herald::template::Variants::build("job_bench", spec, &joined, Utc::now())
        .expect("variants");
    let ids: Vec<String> = (0..1024).map(|i| format!("c{i}")).collect();
    g.throughput(Throughput::Elements(ids.len() as u64));
    g.bench_function("variant_route", |b| {
        let now = Utc::now();
        b.iter(|| {
            ids.iter()
                .filter(|id| matches!(variants.route(id, now), herald::template::Route::Send(_)))
                .count()
        })
    });
    g.finish();
}

fn bench_rate_limiter(c: &mut Criterion) {
    let limiter = herald::dispatch::PartsLimiter::new(u32::MAX / 2, u32::MAX / 2);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
    let mut g = c.benchmark_group("rate_limiter");
    g.throughput(Throughput::Elements(1));
    g.bench_function("acquire_uncontended", |b| {
        b.iter(|| rt.block_on(limiter.acquire(1, &|| true)))
    });
    // The fleet-wide limiter between two asks: parts come from the block it holds.
    let shared = herald::dispatch::PartsLimiter::shared(
        std::sync::Arc::new(AlwaysGrants),
        "bench",
        u32::MAX / 2,
        u32::MAX / 2,
    );
    g.bench_function("acquire_shared_from_block", |b| {
        b.iter(|| rt.block_on(shared.acquire(1, &|| true)))
    });
    g.finish();
}

/// A shared bucket that grants every block at once, so the bench sees only the block cache.
struct AlwaysGrants;

#[async_trait::async_trait]
impl herald::store::RateBucket for AlwaysGrants {
    async fn take(
        &self,
        _: herald::store::BlockRequest,
    ) -> Result<herald::store::BlockAnswer, herald::store::StoreError> {
        Ok(herald::store::BlockAnswer::Granted {
            after: std::time::Duration::ZERO,
        })
    }
}

fn bench_ids(c: &mut Criterion) {
    let job = JobId::generate();
    let mut g = c.benchmark_group("ids");
    g.throughput(Throughput::Elements(1));
    g.bench_function("message_id_derive", |b| {
        b.iter(|| MessageId::derive(&job, "c000001", Channel::Sms))
    });
    g.finish();
}

/// What durability adds to every chunk of 512 sends, on the workers' threads: the `sending`
/// record before the provider call, and after it the `settled` record and the ledger
/// charges: form 3, as dispatch writes them (shared header once, each compact row encoded
/// and digested), and form 2 for comparison (canonical rows digested, then packed).
fn bench_durable_records(c: &mut Criterion) {
    use herald::dispatch::journal::codec::{
        encode_sending, encode_settled, SettledItem, Settlement,
    };
    use herald::domain::{Currency, Micros};
    use herald::ledger::charge_rows::{HeaderRef, RowRef};
    use herald::ledger::{EntryBatchBuilder, EntryKind, EntryRef, SharedHeaderBatchBuilder};
    use herald::provider::OutboundMessage;

    let job = JobId::generate();
    let messages: Vec<OutboundMessage> = (0..BATCH)
        .map(|i| OutboundMessage {
            id: MessageId::derive(&job, &format!("c{i}"), Channel::Sms),
            to: Address::Phone(8_613_120_000_000 + i as u64 * 7),
            channel: Channel::Sms,
            body: format!("Hi N{}, 20% off in Shanghai tonight only", i % 100),
            parts: 1,
            content: None,
        })
        .collect();
    let settled: Vec<SettledItem> = messages
        .iter()
        .enumerate()
        .map(|(i, m)| SettledItem {
            index: i as u32,
            settlement: Settlement::Sent,
            parts: 1,
            cost_micros: 45_000,
            region: CN,
            provider_message_id: format!("sbx-{:032x}", m.id.as_u128()),
        })
        .collect();
    let cny = Currency::parse("CNY").expect("currency");
    let at = Utc::now();
    let mut g = c.benchmark_group("durable");
    g.throughput(Throughput::Elements(BATCH as u64));
    g.bench_function("sending_record", |b| {
        b.iter(|| {
            encode_sending(
                job.as_str(),
                "sandbox",
                messages.iter().enumerate().map(|(i, m)| (i as u32, CN, m)),
            )
        })
    });
    g.bench_function("settled_record", |b| {
        b.iter(|| encode_settled(job.as_str(), "sandbox", 1_764_000_000, &settled))
    });
    g.bench_function("ledger_charges", |b| {
        b.iter(|| {
            let header = HeaderRef {
                kind: EntryKind::Charge,
                job_id: job.as_str(),
                campaign_id: "bench",
                channel: Channel::Sms,
                provider: "sandbox",
                currency: cny,
                at,
            };
            let mut batch = SharedHeaderBatchBuilder::new(&header, BATCH);
            let mut id_text = [0u8; 36];
            for (m, s) in messages.iter().zip(&settled) {
                batch.push(&RowRef {
                    message_id: m.id.write_str(&mut id_text),
                    country: "CN",
                    parts: 1,
                    unit_price_micros: Micros(45_000),
                    cost_micros: Micros(45_000),
                    references: None,
                    provider_message_id: Some(&s.provider_message_id),
                });
            }
            batch.finish()
        })
    });
    g.bench_function("ledger_charges_form2", |b| {
        b.iter(|| {
            let mut batch = EntryBatchBuilder::with_capacity(BATCH);
            let mut id_text = [0u8; 36];
            for (m, s) in messages.iter().zip(&settled) {
                batch.push(&EntryRef {
                    kind: EntryKind::Charge,
                    message_id: m.id.write_str(&mut id_text),
                    job_id: job.as_str(),
                    campaign_id: "bench",
                    channel: Channel::Sms,
                    provider: "sandbox",
                    country: "CN",
                    parts: 1,
                    unit_price_micros: Micros(45_000),
                    cost_micros: Micros(45_000),
                    currency: cny,
                    at,
                    references: None,
                    provider_message_id: Some(&s.provider_message_id),
                });
            }
            batch.finish()
        })
    });
    g.finish();
}

/// A whole job through the dispatcher and the in-process sandbox (no latency, no failures,
/// no rate limit, ledger off): decide, render, count parts, send, account.
fn bench_whole_job(c: &mut Criterion) {
    use herald::clock::SystemClock;
    use herald::config::{Config, DEFAULT_TOML};
    use herald::dispatch::planner::{plan, PlanRequest};
    use herald::dispatch::{
        AudienceBuilder, Dispatcher, DispatcherDeps, JobSpec, PartsLimiter, ProviderSlot,
    };
    use herald::domain::{Currency, JobStatus};
    use herald::provider::sandbox::{Sandbox, SandboxSettings};
    use herald::snapshot::{ContactBooks, SnapshotStore};

    const JOB: usize = 50_000;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut config: Config = toml::from_str(DEFAULT_TOML).expect("config");
    config.policy.quiet_hours.enabled = false;
    config.policy.frequency_caps.clear();
    let mut sandbox = config.providers[0].clone();
    sandbox.latency_ms = 0;
    sandbox.transient_failure_rate = 0.0;
    sandbox.permanent_failure_rate = 0.0;
    // Nothing is written to the books' directory here.
    let books_dir = tempfile::tempdir().expect("dir");
    let snapshots = Arc::new(SnapshotStore::empty(CN));
    snapshots.replace(snapshot()).expect("snapshot");
    let dispatcher = rt.block_on(async {
        Dispatcher::start(DispatcherDeps {
            store: Arc::new(MemoryStore::new()),
            books: Arc::new(
                ContactBooks::with_default(books_dir.path(), snapshots).expect("books"),
            ),
            providers: vec![ProviderSlot {
                provider: Arc::new(Sandbox::new(SandboxSettings::from_config(&sandbox))),
                channel: Channel::Sms,
                currency: Currency::parse("CNY").expect("currency"),
                limiter: PartsLimiter::new(0, 0),
                idempotent: true,
            }],
            router: herald::dispatch::Router::new(&config, &[(sandbox.name.clone(), Channel::Sms)]),
            channel_limits: Default::default(),
            tenant_limits: Default::default(),
            clock: Arc::new(SystemClock),
            config: config.dispatch.clone(),
            max_snapshot_age: Duration::hours(1),
            charging: false,
            send_log: Arc::new(herald::dispatch::send_log::LedgerOnlyLog::new(None)),
            observer: None,
            journal: None,
            state_health: Default::default(),
        })
    });
    let mut g = c.benchmark_group("dispatch");
    g.throughput(Throughput::Elements(JOB as u64));
    g.sample_size(10);
    g.bench_function("whole_job_sandbox_50k", |b| {
        let _runtime = rt.enter();
        b.iter(|| {
            let mut audience = AudienceBuilder::new();
            for i in 0..JOB {
                audience
                    .push(&format!("c{}", i % CONTACTS), None, None)
                    .expect("push");
            }
            let job = plan(
                &dispatcher,
                &config,
                PlanRequest {
                    id: JobId::generate(),
                    spec: JobSpec {
                        campaign_id: "bench".into(),
                        channel: Channel::Sms,
                        purpose: Purpose::Marketing,
                        priority: 100,
                        send_at: None,
                        template_body: "Hi {{first_name}}".into(),
                        phone_mismatch: PhoneMismatchPolicy::UseSnapshot,
                        created_at: Utc::now(),
                        variants: None,
                        tenant: Default::default(),
                        fields: None,
                        wechat_account: None,
                    },
                    template: Arc::new(
                        Template::compile("Hi {{first_name}}, sale in {{city}}").expect("t"),
                    ),
                    job_variables: HashMap::new(),
                    audience: audience.finish(),
                    reserve_caps: true,
                    shards: None,
                },
            )
            .expect("plan");
            dispatcher.submit(job.clone());
            rt.block_on(async {
                while job.status() != JobStatus::Completed {
                    tokio::time::sleep(std::time::Duration::from_millis(1)).await;
                }
            });
        })
    });
    g.finish();
}

fn all(c: &mut Criterion) {
    let snap = snapshot();
    bench_phone(c);
    bench_snapshot(c, &snap);
    bench_policy(c, &snap);
    bench_render(c);
    bench_content(c);
    bench_rate_limiter(c);
    bench_ids(c);
    bench_durable_records(c);
    bench_whole_job(c);
}

criterion_group!(benches, all);
criterion_main!(benches);
