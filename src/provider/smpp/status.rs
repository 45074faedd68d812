//! SMPP `command_status` values and what a `submit_sm_resp` carrying one means for the
//! message (the table in docs/providers-smpp.md):
//!
//! | class | statuses | outcome |
//! | --- | --- | --- |
//! | accepted | `ESME_ROK` | `Accepted` under the SMSC's message id |
//! | throttled | `ESME_RTHROTTLED`, `ESME_RMSGQFUL` | `Throttled`: sent again later, not a failure |
//! | transient | `ESME_RSYSERR`, `ESME_RINVBNDSTS`, `ESME_RSUBMITFAIL`, `ESME_RX_T_APPN`, `ESME_RDELIVERYFAILURE`, `ESME_RUNKNOWNERR`, and every status not listed here (vendor codes 0x400–0x4FF among them) | `Transient`: retried within the retry budget |
//! | permanent | the rest of the table below: the message itself is wrong (length, addresses, TON/NPI, `esm_class`, data coding, TLVs, schedule or validity) or refused (`ESME_RX_P_APPN`, `ESME_RX_R_APPN`) | `Permanent` |
//!
//! An unknown status is transient because retries are bounded, and a message refused for good
//! comes back refused again, while one dropped at the first odd status would be lost.

use std::time::Duration;

use crate::provider::SendOutcome;

pub const ESME_ROK: u32 = 0x00;
pub const ESME_RINVBNDSTS: u32 = 0x04;
pub const ESME_RSYSERR: u32 = 0x08;
pub const ESME_RINVCMDID: u32 = 0x03;
pub const ESME_RINVCMDLEN: u32 = 0x02;
pub const ESME_RMSGQFUL: u32 = 0x14;
pub const ESME_RTHROTTLED: u32 = 0x58;
pub const ESME_RX_T_APPN: u32 = 0x64;
pub const ESME_RX_P_APPN: u32 = 0x65;
/// `command_id` of `deliver_sm`.
pub const CMD_DELIVER_SM: u32 = 0x0000_0005;

/// How a status answers a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusClass {
    Ok,
    Throttled,
    Transient,
    Permanent,
}

/// (status, name, class) for every status of SMPP 3.4 section 5.1.3.
#[rustfmt::skip]
const TABLE: &[(u32, &str, StatusClass)] = {
    use StatusClass::*;
    &[
        (0x00, "ESME_ROK", Ok),
        (0x01, "ESME_RINVMSGLEN", Permanent),
        (0x02, "ESME_RINVCMDLEN", Permanent),
        (0x03, "ESME_RINVCMDID", Permanent),
        (0x04, "ESME_RINVBNDSTS", Transient),
        (0x05, "ESME_RALYBND", Transient),
        (0x06, "ESME_RINVPRTFLG", Permanent),
        (0x07, "ESME_RINVREGDLVFLG", Permanent),
        (0x08, "ESME_RSYSERR", Transient),
        (0x0A, "ESME_RINVSRCADR", Permanent),
        (0x0B, "ESME_RINVDSTADR", Permanent),
        (0x0C, "ESME_RINVMSGID", Permanent),
        (0x0D, "ESME_RBINDFAIL", Transient),
        (0x0E, "ESME_RINVPASWD", Transient),
        (0x0F, "ESME_RINVSYSID", Transient),
        (0x11, "ESME_RCANCELFAIL", Permanent),
        (0x13, "ESME_RREPLACEFAIL", Permanent),
        (0x14, "ESME_RMSGQFUL", Throttled),
        (0x15, "ESME_RINVSERTYP", Permanent),
        (0x33, "ESME_RINVNUMDESTS", Permanent),
        (0x34, "ESME_RINVDLNAME", Permanent),
        (0x40, "ESME_RINVDESTFLAG", Permanent),
        (0x42, "ESME_RINVSUBREP", Permanent),
        (0x43, "ESME_RINVESMCLASS", Permanent),
        (0x44, "ESME_RCNTSUBDL", Permanent),
        (0x45, "ESME_RSUBMITFAIL", Transient),
        (0x48, "ESME_RINVSRCTON", Permanent),
        (0x49, "ESME_RINVSRCNPI", Permanent),
        (0x50, "ESME_RINVDSTTON", Permanent),
        (0x51, "ESME_RINVDSTNPI", Permanent),
        (0x53, "ESME_RINVSYSTYP", Permanent),
        (0x54, "ESME_RINVREPFLAG", Permanent),
        (0x55, "ESME_RINVNUMMSGS", Permanent),
        (0x58, "ESME_RTHROTTLED", Throttled),
        (0x61, "ESME_RINVSCHED", Permanent),
        (0x62, "ESME_RINVEXPIRY", Permanent),
        (0x63, "ESME_RINVDFTMSGID", Permanent),
        (0x64, "ESME_RX_T_APPN", Transient),
        (0x65, "ESME_RX_P_APPN", Permanent),
        (0x66, "ESME_RX_R_APPN", Permanent),
        (0x67, "ESME_RQUERYFAIL", Permanent),
        (0xC0, "ESME_RINVOPTPARSTREAM", Permanent),
        (0xC1, "ESME_ROPTPARNOTALLWD", Permanent),
        (0xC2, "ESME_RINVPARLEN", Permanent),
        (0xC3, "ESME_RMISSINGOPTPARAM", Permanent),
        (0xC4, "ESME_RINVOPTPARAMVAL", Permanent),
        (0xFE, "ESME_RDELIVERYFAILURE", Transient),
        (0xFF, "ESME_RUNKNOWNERR", Transient),
    ]
};

fn entry(status: u32) -> Option<&'static (u32, &'static str, StatusClass)> {
    TABLE.iter().find(|e| e.0 == status)
}

/// The class of a status; unknown and vendor statuses are transient.
pub fn classify(status: u32) -> StatusClass {
    entry(status).map_or(StatusClass::Transient, |e| e.2)
}

/// The status's SMPP 3.4 name, or `other` for one the table lacks (a metric label).
pub fn name(status: u32) -> &'static str {
    entry(status).map_or("other", |e| e.1)
}

/// `ESME_RINVDSTADR (0x0000000B)`, or `status 0x00000400` for one the table lacks.
pub fn describe(status: u32) -> String {
    match entry(status) {
        Some((_, name, _)) => format!("{name} (0x{status:08X})"),
        None => format!("status 0x{status:08X}"),
    }
}

/// The outcome of one `submit_sm` answered with `status`.
pub fn outcome(status: u32, message_id: &str, throttle: Duration) -> SendOutcome {
    match classify(status) {
        StatusClass::Ok => SendOutcome::Accepted {
            provider_message_id: message_id.to_string(),
        },
        StatusClass::Throttled => SendOutcome::Throttled {
            retry_after: throttle,
        },
        // An error `submit_sm_resp` is an answer: the SMSC did not take the message.
        StatusClass::Transient => SendOutcome::Unavailable {
            error: describe(status),
        },
        StatusClass::Permanent => SendOutcome::Permanent {
            error: describe(status),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_maps_as_documented() {
        let t = Duration::from_secs(1);
        assert_eq!(
            outcome(0, "0A1B", t),
            SendOutcome::Accepted {
                provider_message_id: "0A1B".into()
            }
        );
        for s in [ESME_RTHROTTLED, ESME_RMSGQFUL] {
            assert_eq!(outcome(s, "", t), SendOutcome::Throttled { retry_after: t });
        }
        for s in [
            ESME_RSYSERR,
            0x45,
            ESME_RX_T_APPN,
            0xFE,
            0xFF,
            0x400,
            0x1234_5678,
        ] {
            assert!(
                matches!(outcome(s, "", t), SendOutcome::Unavailable { .. }),
                "{s:#x}"
            );
        }
        for s in [0x01, 0x0A, 0x0B, 0x43, 0x48, 0x51, 0x62, 0x65, 0x66, 0xC4] {
            assert!(
                matches!(outcome(s, "", t), SendOutcome::Permanent { .. }),
                "{s:#x}"
            );
        }
    }

    #[test]
    fn errors_read_as_the_spec_names_them() {
        assert_eq!(describe(0x0B), "ESME_RINVDSTADR (0x0000000B)");
        assert_eq!(describe(0x401), "status 0x00000401");
        let mut seen = std::collections::HashSet::new();
        assert!(TABLE.iter().all(|e| seen.insert(e.0)), "a status twice");
    }
}
