//! What happens to a job's messages after the provider accepted them: delivery receipts
//! (whole messages or part by part), the `unknown` timeout, opens and clicks, and the
//! per-minute and per-country figures reports are built from.
//!
//! Every per-recipient change is one compare-and-swap on a byte, so concurrent callbacks
//! count exactly once: the delivery state only moves forward (awaiting or `unknown` →
//! `delivered` | `undelivered` | `expired`, the first final receipt wins, later ones are
//! duplicates), and the unique open and click counts move when a recipient's bit first flips.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering::*};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use parking_lot::Mutex;
use serde::Serialize;

use super::counters::JobCounters;
use crate::links::MAX_LINKS;
use crate::phone::RegionCode;

/// A message's delivery as receipts (or their absence) tell it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    Delivered,
    /// Undelivered or rejected by the network.
    Undelivered,
    /// The network gave up within the message's validity period.
    Expired,
    /// No receipt came within `callbacks.receipt_timeout_seconds` (a late one still counts).
    Unknown,
}

impl DeliveryState {
    /// Stable snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Delivered => "delivered",
            DeliveryState::Undelivered => "undelivered",
            DeliveryState::Expired => "expired",
            DeliveryState::Unknown => "unknown",
        }
    }

    /// One-byte code, as the journal stores it.
    pub fn code(self) -> u8 {
        match self {
            DeliveryState::Delivered => 1,
            DeliveryState::Undelivered => 2,
            DeliveryState::Expired => 3,
            DeliveryState::Unknown => 4,
        }
    }

    /// Inverse of [`DeliveryState::code`].
    pub fn from_code(code: u8) -> Option<DeliveryState> {
        match code {
            1 => Some(DeliveryState::Delivered),
            2 => Some(DeliveryState::Undelivered),
            3 => Some(DeliveryState::Expired),
            4 => Some(DeliveryState::Unknown),
            _ => None,
        }
    }
}

const AWAITING: u8 = 0;
const UNKNOWN: u8 = 4;
const OPENED: u8 = 1;
const CLICKED: u8 = 2;

/// A receipt's status as providers report it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReceiptStatus {
    Delivered,
    Undelivered,
    Expired,
    /// Refused by the network; counts as undelivered.
    Rejected,
}

impl ReceiptStatus {
    fn final_state(self) -> DeliveryState {
        match self {
            ReceiptStatus::Delivered => DeliveryState::Delivered,
            ReceiptStatus::Undelivered | ReceiptStatus::Rejected => DeliveryState::Undelivered,
            ReceiptStatus::Expired => DeliveryState::Expired,
        }
    }
}

/// The most parts a part-by-part receipt may name.
pub const MAX_PARTS: u8 = 64;

/// One receipt for one message. `part` is `(part, parts)`, 1-based, for providers that
/// report each part of a concatenated SMS; `None` (or `parts` = 1) covers the whole message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReceiptUpdate {
    pub status: ReceiptStatus,
    pub part: Option<(u8, u8)>,
}

/// What a receipt did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReceiptEffect {
    /// Moved the message forward (or recorded a new part of it).
    Applied,
    /// The message already had a final state, or this part was already reported.
    Duplicate,
}

/// A message the provider accepted, as the worker hands it on.
#[derive(Debug, Clone)]
pub struct AcceptedMessage {
    /// The provider slot that accepted it.
    pub provider: u16,
    pub index: u32,
    pub region: RegionCode,
    pub parts: u32,
    pub cost_micros: i64,
    pub provider_message_id: String,
}

/// Told about every provider acceptance, once per provider answer (the callbacks index
/// learns provider message ids here).
pub trait SendObserver: Send + Sync + 'static {
    fn accepted(&self, job: &Arc<super::Job>, batch: &[AcceptedMessage]);
}

/// One minute of a job's activity.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct MinuteCounts {
    pub sent: u64,
    pub parts: u64,
    pub delivered: u64,
    pub undelivered: u64,
    pub expired: u64,
    pub opened: u64,
    pub clicked: u64,
}

impl MinuteCounts {
    /// Adds another minute's counts.
    pub fn add(&mut self, o: &MinuteCounts) {
        self.sent += o.sent;
        self.parts += o.parts;
        self.delivered += o.delivered;
        self.undelivered += o.undelivered;
        self.expired += o.expired;
        self.opened += o.opened;
        self.clicked += o.clicked;
    }
}

/// Sends and cost towards one destination country, or through one provider.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[schema(as = ProviderCost)]
pub struct CostLine {
    pub messages: u64,
    pub parts: u64,
    pub cost_micros: i64,
}

/// Per-recipient afterlife of a job's messages, plus its time series.
pub struct Delivery {
    state: Vec<AtomicU8>,
    engaged: Vec<AtomicU8>,
    /// Delivered-parts masks of multi-part messages still being reported part by part.
    partial: Mutex<HashMap<u32, u64>>,
    any_partial: AtomicBool,
    link_clicks: [AtomicU64; MAX_LINKS],
    series: Mutex<BTreeMap<i64, MinuteCounts>>,
    countries: Mutex<BTreeMap<RegionCode, CostLine>>,
    /// Sends and cost by the provider slot that accepted them.
    providers: Mutex<BTreeMap<u16, CostLine>>,
    pub opened: AtomicU64,
    pub opened_unique: AtomicU64,
    pub clicked: AtomicU64,
    pub clicked_unique: AtomicU64,
}

fn minute(at: DateTime<Utc>) -> i64 {
    at.timestamp().div_euclid(60)
}

impl Delivery {
    /// State for `n` recipients.
    pub fn new(n: usize) -> Delivery {
        Delivery {
            state: (0..n).map(|_| AtomicU8::new(AWAITING)).collect(),
            engaged: (0..n).map(|_| AtomicU8::new(0)).collect(),
            partial: Mutex::new(HashMap::new()),
            any_partial: AtomicBool::new(false),
            link_clicks: std::array::from_fn(|_| AtomicU64::new(0)),
            series: Mutex::new(BTreeMap::new()),
            countries: Mutex::new(BTreeMap::new()),
            providers: Mutex::new(BTreeMap::new()),
            opened: AtomicU64::new(0),
            opened_unique: AtomicU64::new(0),
            clicked: AtomicU64::new(0),
            clicked_unique: AtomicU64::new(0),
        }
    }

    /// Recipient `i`'s delivery state, once a receipt (or the timeout) settled it.
    pub fn state(&self, i: u32) -> Option<DeliveryState> {
        self.state
            .get(i as usize)
            .and_then(|s| DeliveryState::from_code(s.load(Acquire)))
    }

    /// Whether recipient `i` opened and clicked.
    pub fn engagement(&self, i: u32) -> (bool, bool) {
        let bits = self.engaged.get(i as usize).map_or(0, |b| b.load(Relaxed));
        (bits & OPENED != 0, bits & CLICKED != 0)
    }

    /// Applies a receipt to recipient `i`.
    pub fn apply(
        &self,
        i: u32,
        update: ReceiptUpdate,
        counters: &JobCounters,
        at: DateTime<Utc>,
    ) -> ReceiptEffect {
        let Some(slot) = self.state.get(i as usize) else {
            return ReceiptEffect::Duplicate;
        };
        let target = update.status.final_state();
        if let Some((part, parts)) = update.part.filter(|&(_, parts)| parts > 1) {
            if is_final(slot.load(Acquire)) {
                return ReceiptEffect::Duplicate;
            }
            let mut partial = self.partial.lock();
            self.any_partial.store(true, Release);
            if target == DeliveryState::Delivered {
                let mask = partial.entry(i).or_insert(0);
                let bit = 1u64 << (part.clamp(1, MAX_PARTS) - 1);
                if *mask & bit != 0 {
                    return ReceiptEffect::Duplicate;
                }
                *mask |= bit;
                if mask.count_ones() < u32::from(parts.min(MAX_PARTS)) {
                    return ReceiptEffect::Applied;
                }
            }
            // Every part delivered, or one part failed: the message is settled.
            partial.remove(&i);
        } else if self.any_partial.load(Acquire) {
            self.partial.lock().remove(&i);
        }
        self.settle(slot, target, counters, at)
    }

    fn settle(
        &self,
        slot: &AtomicU8,
        target: DeliveryState,
        counters: &JobCounters,
        at: DateTime<Utc>,
    ) -> ReceiptEffect {
        let mut current = slot.load(Acquire);
        loop {
            if is_final(current) {
                return ReceiptEffect::Duplicate;
            }
            match slot.compare_exchange(current, target.code(), AcqRel, Acquire) {
                Ok(_) => break,
                Err(now) => current = now,
            }
        }
        if current == UNKNOWN {
            counters.unknown.fetch_sub(1, Relaxed);
        }
        let counter = match target {
            DeliveryState::Delivered => &counters.delivered,
            DeliveryState::Undelivered => &counters.undelivered,
            DeliveryState::Expired => &counters.expired,
            DeliveryState::Unknown => &counters.unknown,
        };
        counter.fetch_add(1, Relaxed);
        self.bump(at, |m| match target {
            DeliveryState::Delivered => m.delivered += 1,
            DeliveryState::Undelivered => m.undelivered += 1,
            DeliveryState::Expired => m.expired += 1,
            DeliveryState::Unknown => {}
        });
        ReceiptEffect::Applied
    }

    /// Restores a final delivery state recorded before a restart as applied at `at` (counted
    /// once, in the count and the minute series).
    pub fn restore(&self, i: u32, state: DeliveryState, counters: &JobCounters, at: DateTime<Utc>) {
        let Some(slot) = self.state.get(i as usize) else {
            return;
        };
        if slot
            .compare_exchange(AWAITING, state.code(), AcqRel, Acquire)
            .is_err()
        {
            return;
        }
        let counter = match state {
            DeliveryState::Delivered => &counters.delivered,
            DeliveryState::Undelivered => &counters.undelivered,
            DeliveryState::Expired => &counters.expired,
            DeliveryState::Unknown => &counters.unknown,
        };
        counter.fetch_add(1, Relaxed);
        self.bump(at, |m| match state {
            DeliveryState::Delivered => m.delivered += 1,
            DeliveryState::Undelivered => m.undelivered += 1,
            DeliveryState::Expired => m.expired += 1,
            DeliveryState::Unknown => {}
        });
    }

    /// Marks recipient `i` `unknown` if no receipt settled it; answers whether it did.
    pub fn mark_unknown(&self, i: u32, counters: &JobCounters) -> bool {
        let marked = self.state.get(i as usize).is_some_and(|s| {
            s.compare_exchange(AWAITING, UNKNOWN, AcqRel, Acquire)
                .is_ok()
        });
        if marked {
            counters.unknown.fetch_add(1, Relaxed);
        }
        marked
    }

    /// Records an open by recipient `i`.
    pub fn record_open(&self, i: u32, at: DateTime<Utc>) {
        let Some(bits) = self.engaged.get(i as usize) else {
            return;
        };
        self.opened.fetch_add(1, Relaxed);
        if bits.fetch_or(OPENED, AcqRel) & OPENED == 0 {
            self.opened_unique.fetch_add(1, Relaxed);
        }
        self.bump(at, |m| m.opened += 1);
    }

    /// Records a click by recipient `i` on link `link`.
    pub fn record_click(&self, i: u32, link: usize, at: DateTime<Utc>) {
        let Some(bits) = self.engaged.get(i as usize) else {
            return;
        };
        self.clicked.fetch_add(1, Relaxed);
        if let Some(c) = self.link_clicks.get(link) {
            c.fetch_add(1, Relaxed);
        }
        // A click proves the message was seen: it counts as an open too (unique only).
        let before = bits.fetch_or(CLICKED | OPENED, AcqRel);
        if before & CLICKED == 0 {
            self.clicked_unique.fetch_add(1, Relaxed);
        }
        if before & OPENED == 0 {
            self.opened_unique.fetch_add(1, Relaxed);
        }
        self.bump(at, |m| m.clicked += 1);
    }

    /// Records a batch of accepted messages in the minute and country figures.
    pub fn record_accepted(&self, batch: &[AcceptedMessage], at: DateTime<Utc>) {
        if batch.is_empty() {
            return;
        }
        let parts: u64 = batch.iter().map(|m| u64::from(m.parts)).sum();
        self.bump(at, |m| {
            m.sent += batch.len() as u64;
            m.parts += parts;
        });
        let mut countries = self.countries.lock();
        for m in batch {
            let line = countries.entry(m.region).or_default();
            line.messages += 1;
            line.parts += u64::from(m.parts);
            line.cost_micros += m.cost_micros;
        }
        drop(countries);
        let mut providers = self.providers.lock();
        for m in batch {
            let line = providers.entry(m.provider).or_default();
            line.messages += 1;
            line.parts += u64::from(m.parts);
            line.cost_micros += m.cost_micros;
        }
    }

    fn bump(&self, at: DateTime<Utc>, f: impl FnOnce(&mut MinuteCounts)) {
        f(self.series.lock().entry(minute(at)).or_default());
    }

    /// The per-minute series (minute = Unix seconds / 60).
    pub fn series(&self) -> BTreeMap<i64, MinuteCounts> {
        self.series.lock().clone()
    }

    /// Sends and cost by destination country.
    pub fn countries(&self) -> BTreeMap<RegionCode, CostLine> {
        self.countries.lock().clone()
    }

    /// Sends and cost by the provider slot that accepted them.
    pub fn providers(&self) -> BTreeMap<u16, CostLine> {
        self.providers.lock().clone()
    }

    /// Clicks per template link, for the first `links` links.
    pub fn link_clicks(&self, links: usize) -> Vec<u64> {
        self.link_clicks
            .iter()
            .take(links)
            .map(|c| c.load(Relaxed))
            .collect()
    }
}

fn is_final(code: u8) -> bool {
    matches!(code, 1..=3)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at() -> DateTime<Utc> {
        "2026-11-23T04:00:30Z".parse().expect("time")
    }

    fn whole(status: ReceiptStatus) -> ReceiptUpdate {
        ReceiptUpdate { status, part: None }
    }

    #[test]
    fn status_moves_forward_once() {
        let d = Delivery::new(2);
        let c = JobCounters::default();
        assert_eq!(
            d.apply(0, whole(ReceiptStatus::Delivered), &c, at()),
            ReceiptEffect::Applied
        );
        assert_eq!(
            d.apply(0, whole(ReceiptStatus::Delivered), &c, at()),
            ReceiptEffect::Duplicate
        );
        assert_eq!(
            d.apply(0, whole(ReceiptStatus::Expired), &c, at()),
            ReceiptEffect::Duplicate
        );
        assert_eq!(d.state(0), Some(DeliveryState::Delivered));
        assert_eq!(c.delivered.load(Relaxed), 1);
        assert_eq!(c.expired.load(Relaxed), 0);
        assert_eq!(
            d.apply(1, whole(ReceiptStatus::Rejected), &c, at()),
            ReceiptEffect::Applied
        );
        assert_eq!(d.state(1), Some(DeliveryState::Undelivered));
        assert_eq!(d.series()[&(at().timestamp() / 60)].delivered, 1);
    }

    #[test]
    fn unknown_is_left_by_a_late_receipt() {
        let d = Delivery::new(1);
        let c = JobCounters::default();
        assert!(d.mark_unknown(0, &c));
        assert!(!d.mark_unknown(0, &c));
        assert_eq!(c.unknown.load(Relaxed), 1);
        d.apply(0, whole(ReceiptStatus::Expired), &c, at());
        assert_eq!(c.unknown.load(Relaxed), 0);
        assert_eq!(c.expired.load(Relaxed), 1);
        assert!(
            !d.mark_unknown(0, &c),
            "a settled message never becomes unknown"
        );
    }

    #[test]
    fn parts_deliver_the_message_when_all_are_in() {
        let d = Delivery::new(1);
        let c = JobCounters::default();
        let part = |p| ReceiptUpdate {
            status: ReceiptStatus::Delivered,
            part: Some((p, 3)),
        };
        assert_eq!(d.apply(0, part(2), &c, at()), ReceiptEffect::Applied);
        assert_eq!(d.apply(0, part(2), &c, at()), ReceiptEffect::Duplicate);
        assert_eq!(d.apply(0, part(1), &c, at()), ReceiptEffect::Applied);
        assert_eq!(d.state(0), None, "two of three parts");
        assert_eq!(d.apply(0, part(3), &c, at()), ReceiptEffect::Applied);
        assert_eq!(d.state(0), Some(DeliveryState::Delivered));
        assert_eq!(c.delivered.load(Relaxed), 1);
    }

    #[test]
    fn a_failed_part_fails_the_message() {
        let d = Delivery::new(1);
        let c = JobCounters::default();
        let part = |p, status| ReceiptUpdate {
            status,
            part: Some((p, 2)),
        };
        d.apply(0, part(1, ReceiptStatus::Delivered), &c, at());
        d.apply(0, part(2, ReceiptStatus::Undelivered), &c, at());
        assert_eq!(d.state(0), Some(DeliveryState::Undelivered));
        assert_eq!(
            d.apply(0, part(1, ReceiptStatus::Delivered), &c, at()),
            ReceiptEffect::Duplicate
        );
    }

    #[test]
    fn clicks_and_opens_count_totals_and_unique_recipients() {
        let d = Delivery::new(2);
        d.record_click(0, 1, at());
        d.record_click(0, 1, at());
        d.record_open(1, at());
        d.record_open(0, at());
        assert_eq!(d.clicked.load(Relaxed), 2);
        assert_eq!(d.clicked_unique.load(Relaxed), 1);
        assert_eq!(d.opened.load(Relaxed), 2);
        assert_eq!(d.opened_unique.load(Relaxed), 2);
        assert_eq!(d.link_clicks(2), vec![0, 2]);
        assert_eq!(d.engagement(0), (true, true));
        d.record_click(9, 0, at());
        assert_eq!(d.clicked.load(Relaxed), 2, "out of range is ignored");
    }
}

/// A small job for unit tests of the stages after sending.
#[cfg(test)]
pub(crate) mod test_support {
    use std::collections::HashMap;
    use std::sync::Arc;

    use crate::clock::ManualClock;
    use crate::dispatch::job::{JobParts, JobSpec};
    use crate::dispatch::{AudienceBuilder, Job};
    use crate::domain::{Channel, Currency, JobId, Purpose};
    use crate::phone::RegionCode;
    use crate::policy::{JobPolicy, PhoneMismatchPolicy};
    use crate::template::Template;

    /// A job of `n` recipients `c0..c{n-1}` on provider slot 0.
    pub(crate) fn job(n: usize) -> Arc<Job> {
        let now = "2026-11-23T04:00:00Z".parse().expect("time");
        let mut audience = AudienceBuilder::new();
        for i in 0..n {
            audience
                .push(&format!("c{i}"), None, None)
                .expect("recipient");
        }
        let template = Arc::new(Template::compile("Hi").expect("template"));
        Job::new(
            JobParts {
                id: JobId::generate(),
                spec: JobSpec {
                    campaign_id: "test".into(),
                    channel: Channel::Sms,
                    purpose: Purpose::Transactional,
                    priority: 1,
                    send_at: None,
                    template_body: "Hi".into(),
                    phone_mismatch: PhoneMismatchPolicy::UseSnapshot,
                    created_at: now,
                    variants: None,
                    tenant: Default::default(),
                    fields: None,
                    wechat_account: None,
                },
                policy: JobPolicy {
                    tenant: Default::default(),
                    channel: Channel::Sms,
                    wechat_account: None,
                    push_platforms: None,
                    purpose: Purpose::Transactional,
                    phone_mismatch: PhoneMismatchPolicy::UseSnapshot,
                    template,
                    fields: Arc::new(crate::template::channel::CompiledFields::None),
                    variants: None,
                    content_rules: Default::default(),
                    job_variables: HashMap::new(),
                    default_region: RegionCode(*b"CN"),
                    quiet_hours: None,
                    cap_rules: Vec::new(),
                    cap_holder_seed: 0,
                    reserve_caps: false,
                },
                provider: 0,
                provider_name: "sandbox".into(),
                currency: Currency::parse("CNY").expect("currency"),
                providers: Vec::new(),
                shards: 1,
                clock: Arc::new(ManualClock::new(now)),
            },
            audience.finish(),
            now,
        )
    }
}
