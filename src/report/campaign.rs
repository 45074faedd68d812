//! Funnel reports for one job (`GET /v1/jobs/{id}/report`) or a campaign (every job with
//! that campaign id, `GET /v1/campaigns/{campaign_id}/report`), as JSON or CSV.
//!
//! The funnel: audience → rejected (by reason) → sent → delivered / undelivered / expired /
//! unknown → opened → clicked (total events and unique contacts) → opted out after the send;
//! the rates between the steps; cost by channel, provider and destination country; and a
//! per-minute series of sends, receipts, opens and clicks.
//!
//! Every figure comes from the jobs' atomic counters and per-recipient state, so it is exact
//! while callbacks keep arriving (each field is read once; a report taken mid-flight is a
//! consistent lower bound per field). "Opted out after the send" counts contacts that were
//! sent a message and whose consent for that channel changed to opt-out (any source: inbound
//! STOP, API) after the job started sending.
//!
//! CSV is a long table with a header `metric,dimension,value`: one row per figure, e.g.
//! `funnel.sent,,120`, `rejected,opted_out,3`, `rate.delivered_of_sent,,0.9750`,
//! `cost.by_country,CN CNY,5400000` (the dimension names the country and currency),
//! `series.delivered,2026-11-23T04:01:00Z,57`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::csv_cell;
use crate::dispatch::delivery::MinuteCounts;
use crate::dispatch::{Dispatcher, Job};
use crate::domain::{Consent, JobId, JobStatus, Reason, RecipientOutcome};
use crate::store::{StateStore, StoreError};

/// What a report covers.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Scope {
    /// `job` or `campaign`.
    pub kind: &'static str,
    pub id: String,
    pub jobs: Vec<JobId>,
}

/// Events and the contacts behind them.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct Engagement {
    pub total: u64,
    pub unique_contacts: u64,
}

/// Rejections.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct Rejected {
    pub total: u64,
    pub by_reason: BTreeMap<&'static str, u64>,
}

/// The funnel's counts.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct Funnel {
    pub audience: u64,
    pub rejected: Rejected,
    pub deferred: u64,
    /// Not decided yet (the job is still running or paused).
    pub pending: u64,
    /// Left unsent by a cancel.
    pub cancelled: u64,
    pub sent: u64,
    /// Permanently failed at the provider.
    pub failed: u64,
    pub delivered: u64,
    pub undelivered: u64,
    pub expired: u64,
    /// No receipt within the receipt timeout.
    pub unknown: u64,
    /// Sent, no receipt yet, timeout not reached.
    pub awaiting_receipt: u64,
    pub opened: Engagement,
    pub clicked: Engagement,
    pub opted_out_after_send: u64,
}

/// Ratios between funnel steps (four decimals); `null` when the base is zero.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, utoipa::ToSchema)]
pub struct Rates {
    pub sent_of_audience: Option<f64>,
    pub delivered_of_sent: Option<f64>,
    pub opened_of_delivered: Option<f64>,
    pub clicked_of_delivered: Option<f64>,
    pub clicked_of_opened: Option<f64>,
    pub opted_out_of_sent: Option<f64>,
}

/// One line of a cost breakdown.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
#[schema(as = CostBreakdownLine)]
pub struct CostLine {
    pub key: String,
    pub currency: String,
    pub messages: u64,
    pub parts: u64,
    pub cost_micros: i64,
}

/// Cost, in integer micros per currency.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct Cost {
    pub total_micros: BTreeMap<String, i64>,
    pub by_channel: Vec<CostLine>,
    pub by_provider: Vec<CostLine>,
    pub by_country: Vec<CostLine>,
}

/// Clicks on one tracked link of one job.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct LinkLine {
    pub job: JobId,
    pub index: usize,
    pub url: String,
    pub clicks: u64,
}

/// One minute of the series.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct SeriesPoint {
    pub minute: DateTime<Utc>,
    #[serde(flatten)]
    pub counts: MinuteCounts,
}

/// A whole report.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[schema(as = FunnelReport)]
pub struct Report {
    pub scope: Scope,
    pub generated_at: DateTime<Utc>,
    pub funnel: Funnel,
    pub rates: Rates,
    pub cost: Cost,
    pub links: Vec<LinkLine>,
    pub series: Vec<SeriesPoint>,
    /// A job with A/B variants: each variant's funnel and how it compares with the best.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub variants: Option<super::variants::VariantsReport>,
}

/// Builds the report of `jobs` (one job, or a campaign's jobs).
pub async fn build(
    kind: &'static str,
    id: String,
    jobs: &[Arc<Job>],
    store: &dyn StateStore,
    now: DateTime<Utc>,
) -> Result<Report, StoreError> {
    let mut f = Funnel::default();
    let mut by_reason: BTreeMap<&'static str, u64> = BTreeMap::new();
    let mut cost = CostBook::default();
    let mut series: BTreeMap<i64, MinuteCounts> = BTreeMap::new();
    let mut links = Vec::new();
    for job in jobs {
        // With shared work, what every instance wrote (the breakdowns below stay this
        // instance's own).
        let remaining = super::job_view::remaining(job);
        let cancelled = if job.status() == JobStatus::Cancelled {
            remaining
        } else {
            0
        };
        let counts = super::job_view::counts(job);
        f.audience += counts.audience;
        for (reason, n) in counts.rejected {
            *by_reason.entry(reason).or_default() += n;
        }
        f.deferred += counts.deferred;
        f.cancelled += cancelled;
        f.pending += remaining
            .saturating_sub(counts.deferred)
            .saturating_sub(cancelled);
        f.sent += counts.sent;
        f.failed += counts.failed;
        f.delivered += counts.delivered;
        f.undelivered += counts.undelivered;
        f.expired += counts.expired;
        f.unknown += counts.unknown;
        f.opened.total += job.progress.delivery.opened.load(Relaxed);
        f.clicked.total += job.progress.delivery.clicked.load(Relaxed);
        let currency = job.currency.to_string();
        let line = (counts.sent, counts.segments, counts.cost_micros);
        cost.add(
            Breakdown::Channel,
            job.spec.channel.as_str(),
            &currency,
            line,
        );
        for (slot, l) in job.progress.delivery.providers() {
            let l = (l.messages, l.parts, l.cost_micros);
            let name = job.provider_at(usize::from(slot));
            cost.add(Breakdown::Provider, name, &currency, l);
        }
        for (region, l) in job.progress.delivery.countries() {
            let l = (l.messages, l.parts, l.cost_micros);
            cost.add(Breakdown::Country, region.as_str(), &currency, l);
        }
        for (minute, m) in job.progress.delivery.series() {
            series.entry(minute).or_default().add(&m);
        }
        if let Some(l) = job.links() {
            let clicks = job.progress.delivery.link_clicks(l.urls.len());
            links.extend(
                l.urls
                    .iter()
                    .zip(clicks)
                    .enumerate()
                    .map(|(index, (url, clicks))| LinkLine {
                        job: job.id.clone(),
                        index,
                        url: url.clone(),
                        clicks,
                    }),
            );
        }
    }
    f.rejected = Rejected {
        total: by_reason.values().sum(),
        by_reason,
    };
    f.awaiting_receipt = f
        .sent
        .saturating_sub(f.delivered + f.undelivered + f.expired + f.unknown);
    (f.opened.unique_contacts, f.clicked.unique_contacts) = unique_engagement(jobs);
    f.opted_out_after_send = opted_out_after_send(jobs, store).await?;
    let rate =
        |n: u64, d: u64| (d > 0).then(|| (n as f64 / d as f64 * 10_000.0).round() / 10_000.0);
    let rates = Rates {
        sent_of_audience: rate(f.sent, f.audience),
        delivered_of_sent: rate(f.delivered, f.sent),
        opened_of_delivered: rate(f.opened.unique_contacts, f.delivered),
        clicked_of_delivered: rate(f.clicked.unique_contacts, f.delivered),
        clicked_of_opened: rate(f.clicked.unique_contacts, f.opened.unique_contacts),
        opted_out_of_sent: rate(f.opted_out_after_send, f.sent),
    };
    let variants = match (kind, jobs) {
        ("job", [job]) => super::variants::build(job, store).await?,
        _ => None,
    };
    Ok(Report {
        variants,
        scope: Scope {
            kind,
            id,
            jobs: jobs.iter().map(|j| j.id.clone()).collect(),
        },
        generated_at: now,
        funnel: f,
        rates,
        cost: cost.finish(),
        links,
        series: series
            .into_iter()
            .filter_map(|(minute, counts)| {
                DateTime::from_timestamp(minute.saturating_mul(60), 0)
                    .map(|minute| SeriesPoint { minute, counts })
            })
            .collect(),
    })
}

/// The jobs of a campaign, oldest first; ids are time-ordered, which breaks ties between
/// jobs created in the same instant.
pub fn jobs_of(dispatcher: &Dispatcher, campaign_id: &str) -> Vec<Arc<Job>> {
    let mut jobs: Vec<Arc<Job>> = dispatcher
        .list()
        .into_iter()
        .filter(|j| j.spec.campaign_id == campaign_id)
        .collect();
    jobs.sort_by(|a, b| (a.spec.created_at, &a.id).cmp(&(b.spec.created_at, &b.id)));
    jobs
}

/// Unique contacts that opened and that clicked, across the jobs (a contact reached by two
/// jobs of a campaign counts once).
fn unique_engagement(jobs: &[Arc<Job>]) -> (u64, u64) {
    if let [job] = jobs {
        return (
            job.progress.delivery.opened_unique.load(Relaxed),
            job.progress.delivery.clicked_unique.load(Relaxed),
        );
    }
    let (mut opened, mut clicked) = (HashSet::new(), HashSet::new());
    for job in jobs {
        if job.progress.delivery.opened_unique.load(Relaxed) == 0 {
            continue;
        }
        for i in 0..job.audience.len() as u32 {
            let (o, c) = job.progress.delivery.engagement(i);
            if o {
                opened.insert(job.audience.contact_id(i));
            }
            if c {
                clicked.insert(job.audience.contact_id(i));
            }
        }
    }
    (opened.len() as u64, clicked.len() as u64)
}

/// Contacts sent a message by one of the jobs who opted out of its channel afterwards.
async fn opted_out_after_send(
    jobs: &[Arc<Job>],
    store: &dyn StateStore,
) -> Result<u64, StoreError> {
    let Some(since) = jobs.iter().filter_map(|j| j.state().started_at).min() else {
        return Ok(0);
    };
    // Each job's contacts are its tenant's: their opt-outs are read per tenant.
    let mut tenants: Vec<&crate::access::TenantId> = jobs.iter().map(|j| &j.spec.tenant).collect();
    tenants.sort();
    tenants.dedup();
    let mut changes = Vec::new();
    for tenant in tenants {
        for c in store.consent_changes_since(tenant, since).await? {
            changes.push((tenant, c));
        }
    }
    type Key<'a> = (&'a crate::access::TenantId, &'a str, crate::domain::Channel);
    let mut opted_out: HashMap<Key<'_>, DateTime<Utc>> = HashMap::new();
    for (tenant, c) in changes.iter().filter(|(_, c)| c.consent == Consent::OptOut) {
        opted_out
            .entry((*tenant, c.contact_id.as_str(), c.channel))
            .or_insert(c.at);
    }
    if opted_out.is_empty() {
        return Ok(0);
    }
    let mut contacts = HashSet::new();
    for job in jobs {
        let Some(started) = job.state().started_at else {
            continue;
        };
        for i in 0..job.audience.len() as u32 {
            let contact = job.audience.contact_id(i);
            let after = opted_out
                .get(&(&job.spec.tenant, contact, job.spec.channel))
                .is_some_and(|at| *at >= started);
            if after && job.outcome(i) == RecipientOutcome::Sent {
                contacts.insert(contact);
            }
        }
    }
    Ok(contacts.len() as u64)
}

#[derive(Clone, Copy)]
enum Breakdown {
    Channel,
    Provider,
    Country,
}

/// Messages, parts and cost micros.
type Totals = (u64, u64, i64);

#[derive(Default)]
struct CostBook {
    /// Per breakdown: (key, currency) → totals.
    lines: [BTreeMap<(String, String), Totals>; 3],
}

impl CostBook {
    fn add(&mut self, b: Breakdown, key: &str, currency: &str, (m, p, c): Totals) {
        let e = self.lines[b as usize]
            .entry((key.to_string(), currency.to_string()))
            .or_default();
        e.0 += m;
        e.1 += p;
        e.2 += c;
    }

    fn finish(self) -> Cost {
        let [channel, provider, country] = self.lines.map(|m| {
            m.into_iter()
                .map(
                    |((key, currency), (messages, parts, cost_micros))| CostLine {
                        key,
                        currency,
                        messages,
                        parts,
                        cost_micros,
                    },
                )
                .collect::<Vec<_>>()
        });
        let mut total_micros = BTreeMap::new();
        for l in &channel {
            *total_micros.entry(l.currency.clone()).or_default() += l.cost_micros;
        }
        Cost {
            total_micros,
            by_channel: channel,
            by_provider: provider,
            by_country: country,
        }
    }
}

/// The report as CSV (`metric,dimension,value`). Metric and dimension are text; the value
/// is a number except on the `scope.*` rows, whose text is neutralised like every other text
/// cell (see [`csv_cell`]).
pub fn to_csv(r: &Report) -> String {
    let mut w = csv::Writer::from_writer(Vec::new());
    let mut row = |metric: &str, dimension: &str, value: String| {
        let _ = w.write_record([
            csv_cell::text(metric).as_ref(),
            csv_cell::text(dimension).as_ref(),
            value.as_str(),
        ]);
    };
    let text = |s: &str| csv_cell::text(s).into_owned();
    row("metric", "dimension", "value".into());
    row("scope.kind", "", text(r.scope.kind));
    row("scope.id", "", text(&r.scope.id));
    for j in &r.scope.jobs {
        row("scope.job", "", text(&j.to_string()));
    }
    let f = &r.funnel;
    for (name, v) in [
        ("funnel.audience", f.audience),
        ("funnel.rejected", f.rejected.total),
        ("funnel.deferred", f.deferred),
        ("funnel.pending", f.pending),
        ("funnel.cancelled", f.cancelled),
        ("funnel.sent", f.sent),
        ("funnel.failed", f.failed),
        ("funnel.delivered", f.delivered),
        ("funnel.undelivered", f.undelivered),
        ("funnel.expired", f.expired),
        ("funnel.unknown", f.unknown),
        ("funnel.awaiting_receipt", f.awaiting_receipt),
        ("funnel.opened.total", f.opened.total),
        ("funnel.opened.unique_contacts", f.opened.unique_contacts),
        ("funnel.clicked.total", f.clicked.total),
        ("funnel.clicked.unique_contacts", f.clicked.unique_contacts),
        ("funnel.opted_out_after_send", f.opted_out_after_send),
    ] {
        row(name, "", v.to_string());
    }
    for reason in Reason::ALL {
        if let Some(n) = f.rejected.by_reason.get(reason.as_str()) {
            row("rejected", reason.as_str(), n.to_string());
        }
    }
    let rates = &r.rates;
    for (name, v) in [
        ("rate.sent_of_audience", rates.sent_of_audience),
        ("rate.delivered_of_sent", rates.delivered_of_sent),
        ("rate.opened_of_delivered", rates.opened_of_delivered),
        ("rate.clicked_of_delivered", rates.clicked_of_delivered),
        ("rate.clicked_of_opened", rates.clicked_of_opened),
        ("rate.opted_out_of_sent", rates.opted_out_of_sent),
    ] {
        row(name, "", v.map(|v| format!("{v:.4}")).unwrap_or_default());
    }
    for (currency, v) in &r.cost.total_micros {
        row("cost.total_micros", currency, v.to_string());
    }
    for (name, lines) in [
        ("cost.by_channel", &r.cost.by_channel),
        ("cost.by_provider", &r.cost.by_provider),
        ("cost.by_country", &r.cost.by_country),
    ] {
        for l in lines {
            let dim = format!("{} {}", l.key, l.currency);
            row(&format!("{name}.messages"), &dim, l.messages.to_string());
            row(&format!("{name}.parts"), &dim, l.parts.to_string());
            row(
                &format!("{name}.cost_micros"),
                &dim,
                l.cost_micros.to_string(),
            );
        }
    }
    for l in &r.links {
        row(
            "link.clicks",
            &format!("{} {} {}", l.job, l.index, l.url),
            l.clicks.to_string(),
        );
    }
    for p in &r.series {
        let minute = p.minute.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let c = &p.counts;
        for (name, v) in [
            ("series.sent", c.sent),
            ("series.parts", c.parts),
            ("series.delivered", c.delivered),
            ("series.undelivered", c.undelivered),
            ("series.expired", c.expired),
            ("series.opened", c.opened),
            ("series.clicked", c.clicked),
        ] {
            if v > 0 {
                row(name, &minute, v.to_string());
            }
        }
    }
    if let Some(v) = &r.variants {
        super::variants::csv_rows(v, &mut row);
    }
    let bytes = w.into_inner().unwrap_or_default();
    String::from_utf8(bytes).unwrap_or_default()
}
