//! `missing_phone`, `invalid_phone`, `not_mobile`: the snapshot's number must exist, be valid
//! in its numbering plan (checked once, at snapshot load) and reach a mobile handset.

use super::Verdict;
use crate::domain::Reason;
use crate::phone::PhoneInfo;
use crate::snapshot::PhoneField;

/// Checks the snapshot's phone field; on success hands back the number.
pub fn check(field: PhoneField) -> Result<PhoneInfo, Verdict> {
    match field {
        PhoneField::Missing => Err(Verdict::Reject(Reason::MissingPhone)),
        PhoneField::Invalid => Err(Verdict::Reject(Reason::InvalidPhone)),
        PhoneField::Valid(info) if !info.line_type.is_sms_capable() => {
            Err(Verdict::Reject(Reason::NotMobile))
        }
        PhoneField::Valid(info) => Ok(info),
    }
}
