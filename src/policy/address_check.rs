//! `missing_email`, `invalid_email`, `missing_push_token`, `missing_openid`: a job on a
//! channel other than SMS needs the contact's address on that channel, checked for form once,
//! at snapshot load. SMS keeps its phone rules (`phone_check.rs`, `phone_mismatch.rs`).

use super::{phone_check, Verdict};
use crate::domain::{Address, Channel, PushPlatform, Reason};
use crate::snapshot::{ContactView, EmailField};

/// The contact's address on `channel`; `wechat_account` picks the official account (`None`:
/// the default one). A push job goes to the first token the snapshot lists (the contact's
/// primary device) of a platform in `push_platforms`, the platforms herald has a provider
/// for (`None`: any platform).
pub fn check(
    contact: &ContactView<'_>,
    channel: Channel,
    wechat_account: Option<&str>,
    push_platforms: Option<&[PushPlatform]>,
) -> Result<Address, Verdict> {
    match channel {
        Channel::Email => match contact.email_field() {
            EmailField::Valid(e) => Ok(Address::Email(e.into())),
            EmailField::Missing => Err(Verdict::Reject(Reason::MissingEmail)),
            EmailField::Invalid => Err(Verdict::Reject(Reason::InvalidEmail)),
        },
        Channel::Push => contact
            .push_tokens()
            .find(|(platform, _)| push_platforms.is_none_or(|p| p.contains(platform)))
            .map(|(platform, token)| Address::Push {
                platform,
                token: token.into(),
            })
            .ok_or(Verdict::Reject(Reason::MissingPushToken)),
        Channel::Wechat => contact
            .wechat_openid(wechat_account)
            .map(|openid| Address::Wechat {
                account: wechat_account.map(Into::into),
                openid: openid.into(),
            })
            .ok_or(Verdict::Reject(Reason::MissingOpenid)),
        Channel::Sms => phone_check::check(contact.phone()).map(|p| Address::Phone(p.e164)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::phone::RegionCode;
    use crate::snapshot::load_csv;

    #[test]
    fn each_channel_needs_its_own_address() {
        let apns = "0f".repeat(32);
        let csv = format!(
            "contact_id,phone,email,push_token,wechat_openid\n\
             full,+8613123079337,Li@Example.COM,apns:{apns};fcm:{fcm},oDefault;wx1:oOther\n\
             bare,,,,\n\
             broken,,li@,,\n",
            fcm = "f".repeat(40)
        );
        let (snap, report) =
            load_csv(csv.as_bytes(), chrono::Utc::now(), RegionCode(*b"CN")).expect("loads");
        assert_eq!(report.rejected_rows, 0, "{:?}", report.errors);
        let full = snap.lookup("full").expect("full");
        assert_eq!(
            check(&full, Channel::Email, None, None),
            Ok(Address::Email("Li@example.com".into()))
        );
        assert_eq!(
            check(&full, Channel::Push, None, None),
            Ok(Address::Push {
                platform: PushPlatform::Apns,
                token: apns.clone().into()
            })
        );
        assert_eq!(
            check(&full, Channel::Wechat, Some("wx1"), None),
            Ok(Address::Wechat {
                account: Some("wx1".into()),
                openid: "oOther".into()
            })
        );
        assert_eq!(
            check(&full, Channel::Wechat, Some("wx2"), None),
            Err(Verdict::Reject(Reason::MissingOpenid))
        );
        let bare = snap.lookup("bare").expect("bare");
        for (channel, reason) in [
            (Channel::Sms, Reason::MissingPhone),
            (Channel::Email, Reason::MissingEmail),
            (Channel::Push, Reason::MissingPushToken),
            (Channel::Wechat, Reason::MissingOpenid),
        ] {
            assert_eq!(
                check(&bare, channel, None, None),
                Err(Verdict::Reject(reason))
            );
        }
        // Only the platforms herald has a provider for are reached: the first FCM token when
        // there is no APNs provider, no token at all when neither is served.
        assert_eq!(
            check(&full, Channel::Push, None, Some(&[PushPlatform::Fcm])),
            Ok(Address::Push {
                platform: PushPlatform::Fcm,
                token: "f".repeat(40).into()
            })
        );
        assert_eq!(
            check(&full, Channel::Push, None, Some(&[])),
            Err(Verdict::Reject(Reason::MissingPushToken))
        );
        let broken = snap.lookup("broken").expect("broken");
        assert_eq!(
            check(&broken, Channel::Email, None, None),
            Err(Verdict::Reject(Reason::InvalidEmail))
        );
    }
}
