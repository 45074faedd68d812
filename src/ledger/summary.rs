//! Ledger totals for finance: per currency, and per campaign, channel, provider, country and
//! UTC month within each currency (money in different currencies is never added up). One
//! pass over the entries; `GET /v1/ledger/summary` answers it as JSON and the finance page
//! under `/ui/` shows it and offers the by-month table as CSV ([`by_month_csv`]).

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{Ledger, LedgerEntry, LedgerError};
use crate::access::TenantId;
use crate::dispatch::Dispatcher;

/// Which entries a summary counts; every bound is optional.
#[derive(Debug, Clone, Default)]
pub struct LedgerFilter {
    pub campaign_id: Option<String>,
    pub job_id: Option<String>,
    /// Inclusive.
    pub from: Option<DateTime<Utc>>,
    /// Exclusive.
    pub to: Option<DateTime<Utc>>,
    /// Only this tenant's entries; `None` for every tenant's.
    pub tenant: Option<TenantJobs>,
}

/// The entries one tenant may see: those of its own jobs. Entries of jobs this instance no
/// longer holds are the default tenant's (the installation's history).
#[derive(Debug, Clone)]
pub struct TenantJobs {
    tenant: TenantId,
    jobs: HashMap<String, TenantId>,
}

impl TenantJobs {
    /// `tenant`'s view, with the owners of every job `dispatcher` holds.
    pub fn of(dispatcher: &Dispatcher, tenant: &TenantId) -> TenantJobs {
        TenantJobs {
            tenant: tenant.clone(),
            jobs: dispatcher
                .list()
                .iter()
                .map(|j| (j.id.to_string(), j.spec.tenant.clone()))
                .collect(),
        }
    }

    fn owns(&self, job_id: &str) -> bool {
        match self.jobs.get(job_id) {
            Some(t) => *t == self.tenant,
            None => self.tenant.is_default(),
        }
    }
}

impl LedgerFilter {
    /// Whether `e` is counted.
    pub fn matches(&self, e: &LedgerEntry) -> bool {
        self.tenant.as_ref().is_none_or(|t| t.owns(&e.entry.job_id))
            && self
                .campaign_id
                .as_deref()
                .is_none_or(|c| e.entry.campaign_id == c)
            && self.job_id.as_deref().is_none_or(|j| e.entry.job_id == j)
            && self.from.is_none_or(|f| e.entry.at >= f)
            && self.to.is_none_or(|t| e.entry.at < t)
    }
}

/// Entries, parts and cost of one group. Corrections and refunds are entries too, so a
/// group's cost is what was finally charged.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Total {
    pub entries: u64,
    pub parts: u64,
    pub cost_micros: i64,
}

/// Currency → group key → total.
pub type Groups = BTreeMap<String, BTreeMap<String, Total>>;

/// A summary. A dimension with no entries is left out of the JSON.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Summary {
    /// Currency → total.
    pub totals: BTreeMap<String, Total>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    #[schema(value_type = BTreeMap<String, BTreeMap<String, Total>>)]
    pub by_campaign: Groups,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    #[schema(value_type = BTreeMap<String, BTreeMap<String, Total>>)]
    pub by_channel: Groups,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    #[schema(value_type = BTreeMap<String, BTreeMap<String, Total>>)]
    pub by_provider: Groups,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    #[schema(value_type = BTreeMap<String, BTreeMap<String, Total>>)]
    pub by_country: Groups,
    /// Keyed by the UTC month of the entry, `YYYY-MM`.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    #[schema(value_type = BTreeMap<String, BTreeMap<String, Total>>)]
    pub by_month: Groups,
}

impl Summary {
    /// Counts one entry. Allocates only for a group seen for the first time: a summary of
    /// millions of entries is one pass of map lookups.
    pub fn add(&mut self, e: &LedgerEntry) {
        let n = &e.entry;
        let currency = n.currency.as_str();
        let mut month = [0u8; 7];
        let month = month_key(n.at, &mut month);
        let add = |t: &mut Total| {
            t.entries += 1;
            t.parts += u64::from(n.parts);
            t.cost_micros += n.cost_micros.0;
        };
        match self.totals.get_mut(currency) {
            Some(t) => add(t),
            None => add(self.totals.entry(currency.to_string()).or_default()),
        }
        for (groups, key) in [
            (&mut self.by_campaign, n.campaign_id.as_str()),
            (&mut self.by_channel, n.channel.as_str()),
            (&mut self.by_provider, n.provider.as_str()),
            (&mut self.by_country, n.country.as_str()),
            (&mut self.by_month, month.as_ref()),
        ] {
            if !groups.contains_key(currency) {
                groups.insert(currency.to_string(), BTreeMap::new());
            }
            let Some(keys) = groups.get_mut(currency) else {
                continue;
            };
            match keys.get_mut(key) {
                Some(t) => add(t),
                None => add(keys.entry(key.to_string()).or_default()),
            }
        }
    }
}

/// `YYYY-MM` of `at`, written into `buf` (years past 9999 are written in full instead).
fn month_key(at: DateTime<Utc>, buf: &mut [u8; 7]) -> std::borrow::Cow<'_, str> {
    use chrono::Datelike;
    let (year, month) = (at.year(), at.month());
    if !(0..=9999).contains(&year) {
        return std::borrow::Cow::Owned(format!("{year}-{month:02}"));
    }
    let year = year as u32;
    for (i, d) in [
        year / 1000,
        year / 100 % 10,
        year / 10 % 10,
        year % 10,
        10,
        month / 10,
        month % 10,
    ]
    .into_iter()
    .enumerate()
    {
        buf[i] = if d == 10 { b'-' } else { b'0' + d as u8 };
    }
    std::borrow::Cow::Borrowed(std::str::from_utf8(buf).unwrap_or("0000-00"))
}

/// Sums the entries `filter` selects. Blocking: run it off the async runtime.
pub fn summarize(ledger: &Ledger, filter: &LedgerFilter) -> Result<Summary, LedgerError> {
    let mut summary = Summary::default();
    ledger.scan(|e| {
        if filter.matches(e) {
            summary.add(e);
        }
        true
    })?;
    Ok(summary)
}

/// The CSV header of [`by_month_csv`].
pub const BY_MONTH_CSV_HEADER: &str = "month,currency,entries,parts,cost_micros";

/// The by-month table as CSV, months in order and currencies in order within a month. Every
/// cell is a month, an ISO currency code or a number, so none can run as a formula.
pub fn by_month_csv(summary: &Summary) -> String {
    let mut rows: Vec<(&str, &str, &Total)> = summary
        .by_month
        .iter()
        .flat_map(|(currency, months)| {
            months
                .iter()
                .map(move |(month, t)| (month.as_str(), currency.as_str(), t))
        })
        .collect();
    rows.sort_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
    let mut out = String::with_capacity(64 * (rows.len() + 1));
    out.push_str(BY_MONTH_CSV_HEADER);
    out.push('\n');
    for (month, currency, t) in rows {
        out.push_str(&format!(
            "{month},{currency},{},{},{}\n",
            t.entries, t.parts, t.cost_micros
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn total(entries: u64, parts: u64, cost_micros: i64) -> Total {
        Total {
            entries,
            parts,
            cost_micros,
        }
    }

    #[test]
    fn month_keys_are_year_and_month() {
        let mut buf = [0u8; 7];
        let at = |s: &str| s.parse::<DateTime<Utc>>().unwrap();
        assert_eq!(month_key(at("2026-11-23T04:00:00Z"), &mut buf), "2026-11");
        assert_eq!(month_key(at("0987-01-31T23:59:59Z"), &mut buf), "0987-01");
        assert_eq!(month_key(at("2026-12-31T23:59:59Z"), &mut buf), "2026-12");
    }

    #[test]
    fn by_month_csv_orders_months_then_currencies() {
        let mut s = Summary::default();
        s.by_month.insert(
            "USD".into(),
            BTreeMap::from([("2026-11".into(), total(1, 2, 30_000))]),
        );
        s.by_month.insert(
            "CNY".into(),
            BTreeMap::from([
                ("2026-12".into(), total(3, 3, 150_000)),
                ("2026-11".into(), total(2, 4, 200_000)),
            ]),
        );
        assert_eq!(
            by_month_csv(&s),
            "month,currency,entries,parts,cost_micros\n\
             2026-11,CNY,2,4,200000\n\
             2026-11,USD,1,2,30000\n\
             2026-12,CNY,3,3,150000\n"
        );
    }
}
