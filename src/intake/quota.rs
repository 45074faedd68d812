//! Tenants' monthly quotas: the recipients a tenant's jobs may address per calendar month
//! (UTC), counted when a job is accepted. A job that does not fit in what is left is refused
//! whole, before anything is sent, rather than stopped half-way through its audience.

use chrono::{DateTime, Datelike, TimeZone, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use crate::access::TenantId;
use crate::config::Config;
use crate::store::{QuotaAnswer, QuotaReservation, StateStore, StoreError};

/// The month `at` counts in, as `YYYYMM`.
pub fn month_of(at: DateTime<Utc>) -> u32 {
    at.year().max(0) as u32 * 100 + at.month()
}

/// When the month after `month` (`YYYYMM`) starts: when its quota is whole again.
pub fn resets_at(month: u32) -> DateTime<Utc> {
    let (year, m) = ((month / 100) as i32, month % 100);
    let (year, m) = if m >= 12 {
        (year + 1, 1)
    } else {
        (year, m + 1)
    };
    Utc.with_ymd_and_hms(year, m, 1, 0, 0, 0)
        .single()
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// `YYYYMM` as `YYYY-MM`.
fn month_label(month: u32) -> String {
    format!("{:04}-{:02}", month / 100, month % 100)
}

/// A tenant's quota this month, as the API shows it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, ToSchema)]
pub struct QuotaView {
    /// The calendar month (UTC) counted, `YYYY-MM`.
    pub month: String,
    /// Recipients the tenant's jobs may address this month.
    pub limit: u64,
    /// Recipients of the jobs accepted this month.
    pub used: u64,
    pub remaining: u64,
    /// When the next month's count starts.
    pub resets_at: DateTime<Utc>,
}

/// A job refused for its tenant's quota.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuotaExceeded {
    pub asked: u64,
    pub view: QuotaView,
}

impl std::fmt::Display for QuotaExceeded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "this job's {} recipients do not fit in the tenant's monthly quota: {} of {} used in {}, {} left; it resets at {}",
            self.asked,
            self.view.used,
            self.view.limit,
            self.view.month,
            self.view.remaining,
            self.view.resets_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        )
    }
}

fn view(limit: u64, used: u64, month: u32) -> QuotaView {
    QuotaView {
        month: month_label(month),
        limit,
        used,
        remaining: limit.saturating_sub(used),
        resets_at: resets_at(month),
    }
}

/// The quota of `tenant` in the month of `now`, if it has one.
pub async fn current(
    store: &dyn StateStore,
    config: &Config,
    tenant: &TenantId,
    now: DateTime<Utc>,
) -> Result<Option<QuotaView>, StoreError> {
    let Some(limit) = limit_of(config, tenant) else {
        return Ok(None);
    };
    let month = month_of(now);
    Ok(Some(view(
        limit,
        store.quota_used(tenant, month).await?,
        month,
    )))
}

/// Counts a job's recipients against its tenant's quota for the month it was made in;
/// answers that month (for giving it back), or None when the tenant has no quota.
pub async fn reserve(
    store: &dyn StateStore,
    config: &Config,
    r: Reserve<'_>,
) -> Result<Result<Option<u32>, QuotaExceeded>, StoreError> {
    let Some(limit) = limit_of(config, r.tenant) else {
        return Ok(Ok(None));
    };
    let month = month_of(r.at);
    let answer = store
        .reserve_quota(&QuotaReservation {
            tenant: r.tenant,
            month,
            job: r.job,
            recipients: r.recipients,
            limit,
        })
        .await?;
    Ok(match answer {
        QuotaAnswer::Reserved { .. } => Ok(Some(month)),
        QuotaAnswer::Exceeded { used } => Err(QuotaExceeded {
            asked: r.recipients,
            view: view(limit, used, month),
        }),
    })
}

/// What [`reserve`] counts.
pub struct Reserve<'a> {
    pub tenant: &'a TenantId,
    pub job: &'a crate::domain::JobId,
    pub recipients: u64,
    /// When the job was made: its month is the one counted.
    pub at: DateTime<Utc>,
}

fn limit_of(config: &Config, tenant: &TenantId) -> Option<u64> {
    config
        .tenant_limits(tenant)
        .map(|t| t.monthly_recipients)
        .filter(|l| *l > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_count_in_utc_and_reset_on_the_first() {
        let last_second = Utc.with_ymd_and_hms(2026, 12, 31, 23, 59, 59).unwrap();
        assert_eq!(month_of(last_second), 202612);
        assert_eq!(
            resets_at(202612),
            Utc.with_ymd_and_hms(2027, 1, 1, 0, 0, 0).unwrap()
        );
        assert_eq!(
            resets_at(202602),
            Utc.with_ymd_and_hms(2026, 3, 1, 0, 0, 0).unwrap()
        );
        assert_eq!(month_label(202603), "2026-03");
    }
}
