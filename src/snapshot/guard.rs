//! The checks a full upload must pass before it may replace the live snapshot.
//!
//! A full load replaces every contact at once, so a broken export (the wrong file, a
//! truncated one, random bytes) would otherwise turn every recipient of every running job
//! into `unknown_contact` and survive restarts as the kept snapshot. An upload is refused
//! when more of its rows were rejected than the configured share allows, or when it would
//! drop the configured share of the live contacts or more (unless the caller says the
//! shrink is intended).

use serde::Serialize;

use super::error::LoadReport;

/// Limits applied to one full upload (from `[snapshot]` and the request).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct UploadGuard {
    /// Largest accepted share of rejected rows among the rows read (0.01 = 1%).
    pub max_rejected_share: f64,
    /// Loss of live contacts, as a share of the live count, from which an upload is refused
    /// (0.5: an upload with half the live contacts or fewer).
    pub max_shrink_share: f64,
    /// The caller accepts any shrink (the rejected-rows check still applies).
    pub allow_shrink: bool,
}

/// Why an upload was refused; the live snapshot is unchanged.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(tag = "check", rename_all = "snake_case")]
pub enum Refusal {
    /// More rows were rejected than `snapshot.max_rejected_share` allows.
    RejectedRows {
        rejected_rows: usize,
        rows: usize,
        max_rejected_share: f64,
    },
    /// The upload would drop `max_shrink_share` of the live contacts or more.
    Shrink {
        live_contacts: usize,
        contacts: usize,
        max_shrink_share: f64,
    },
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::RejectedRows {
                rejected_rows,
                rows,
                max_rejected_share,
            } => write!(
                f,
                "{rejected_rows} of {rows} rows were rejected, more than snapshot.max_rejected_share \
                 ({max_rejected_share}) allows; the live snapshot is unchanged"
            ),
            Refusal::Shrink {
                live_contacts,
                contacts,
                max_shrink_share,
            } => write!(
                f,
                "the upload has {contacts} contacts and would shrink the live snapshot of \
                 {live_contacts} by snapshot.max_shrink_share ({max_shrink_share}) or more; \
                 the live snapshot is unchanged (repeat with ?allow_shrink=true if intended)"
            ),
        }
    }
}

impl UploadGuard {
    /// Whether an upload that loaded as `report` may replace a snapshot of `live` contacts.
    pub fn check(&self, report: &LoadReport, live: usize) -> Result<(), Refusal> {
        // Rows that carried a contact (kept, superseded or rejected); deletions do not count.
        let rows = report.contacts + report.duplicate_rows + report.rejected_rows;
        if rows > 0 && report.rejected_rows as f64 > self.max_rejected_share * rows as f64 {
            return Err(Refusal::RejectedRows {
                rejected_rows: report.rejected_rows,
                rows,
                max_rejected_share: self.max_rejected_share,
            });
        }
        let lost = live.saturating_sub(report.contacts);
        if !self.allow_shrink && lost > 0 && lost as f64 >= self.max_shrink_share * live as f64 {
            return Err(Refusal::Shrink {
                live_contacts: live,
                contacts: report.contacts,
                max_shrink_share: self.max_shrink_share,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard(allow_shrink: bool) -> UploadGuard {
        UploadGuard {
            max_rejected_share: 0.01,
            max_shrink_share: 0.5,
            allow_shrink,
        }
    }

    fn report(contacts: usize, rejected_rows: usize) -> LoadReport {
        LoadReport {
            contacts,
            rejected_rows,
            ..LoadReport::default()
        }
    }

    #[test]
    fn rejected_rows_over_the_share_refuse_even_with_allow_shrink() {
        assert!(
            guard(false).check(&report(99, 1), 100).is_ok(),
            "1% is allowed"
        );
        let e = guard(true).check(&report(9, 1), 0).expect_err("10%");
        assert!(matches!(e, Refusal::RejectedRows { rows: 10, .. }), "{e:?}");
        assert!(guard(true).check(&report(0, 72), 0).is_err());
    }

    #[test]
    fn shrinking_past_the_share_needs_allow_shrink() {
        assert!(guard(false).check(&report(51, 0), 100).is_ok(), "49% lost");
        let e = guard(false)
            .check(&report(50, 0), 100)
            .expect_err("half lost");
        assert!(matches!(
            e,
            Refusal::Shrink {
                live_contacts: 100,
                ..
            }
        ));
        assert!(guard(true).check(&report(50, 0), 100).is_ok());
        assert!(
            guard(false).check(&report(0, 0), 100).is_err(),
            "empty upload"
        );
        assert!(guard(false).check(&report(0, 0), 0).is_ok(), "nothing live");
        assert!(guard(false).check(&report(500, 0), 100).is_ok(), "growth");
        let strict = UploadGuard {
            max_shrink_share: 0.0,
            ..guard(false)
        };
        assert!(strict.check(&report(100, 0), 100).is_ok(), "same size");
        assert!(strict.check(&report(99, 0), 100).is_err(), "any loss");
    }
}
