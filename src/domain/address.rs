//! Where a message goes on each channel, and the shape checks every address passes once, at
//! snapshot load: an email's syntax and domain form, a push token's shape per platform, a
//! WeChat openid per official account.
//!
//! The checks are deliberately about form, not reachability: a well-formed address that does
//! not exist comes back as a bounce or an unregistered token and is suppressed then.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::Channel;

/// Longest address RFC 5321 lets through a `RCPT TO` path.
const MAX_EMAIL: usize = 254;
/// Longest local part (RFC 5321 §4.5.3.1.1).
const MAX_LOCAL: usize = 64;
/// An FCM registration token is ~160 printable characters today; the bounds leave room for
/// longer ones while refusing cells that are plainly something else.
const FCM_TOKEN_LEN: std::ops::RangeInclusive<usize> = 32..=4096;
/// An APNs device token: 32 bytes as hex.
const APNS_TOKEN_LEN: usize = 64;
/// WeChat openids are 28 characters; account names are app ids (`wx` + 16 hex) or short names.
const MAX_WECHAT_ID: usize = 64;

/// The push service a device token belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PushPlatform {
    /// Firebase Cloud Messaging (Android, web).
    Fcm,
    /// Apple Push Notification service.
    Apns,
}

impl PushPlatform {
    /// Stable lowercase name, as the snapshot spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            PushPlatform::Fcm => "fcm",
            PushPlatform::Apns => "apns",
        }
    }

    /// The platform named `name` (ASCII case-insensitive).
    pub fn parse(name: &str) -> Option<PushPlatform> {
        match name.trim().to_ascii_lowercase().as_str() {
            "fcm" => Some(PushPlatform::Fcm),
            "apns" => Some(PushPlatform::Apns),
            _ => None,
        }
    }
}

/// A message's destination. Which variant a job uses follows from its channel.
#[derive(Clone, PartialEq, Eq, Hash)]
pub enum Address {
    /// E.164 digits as an integer (SMS).
    Phone(u64),
    /// A checked address with a lower-cased domain.
    Email(Box<str>),
    /// A device token of one push platform.
    Push {
        platform: PushPlatform,
        token: Box<str>,
    },
    /// A follower of an official account; `account` is `None` for the default account.
    Wechat {
        account: Option<Box<str>>,
        openid: Box<str>,
    },
}

impl Address {
    /// The channel this address is reached on.
    pub fn channel(&self) -> Channel {
        match self {
            Address::Phone(_) => Channel::Sms,
            Address::Email(_) => Channel::Email,
            Address::Push { .. } => Channel::Push,
            Address::Wechat { .. } => Channel::Wechat,
        }
    }

    /// The phone number, for SMS.
    pub fn phone(&self) -> Option<u64> {
        match self {
            Address::Phone(p) => Some(*p),
            _ => None,
        }
    }

    /// The email address, for email.
    pub fn email(&self) -> Option<&str> {
        match self {
            Address::Email(e) => Some(e),
            _ => None,
        }
    }

    /// The entry of the suppression list that stops sends to this address, for the channels
    /// whose address can be suppressed on its own (email, push); phones have their own list.
    pub fn suppression_entry(&self) -> Option<String> {
        match self {
            Address::Email(e) => Some(email_entry(e)),
            Address::Push { token, .. } => Some(push_entry(token)),
            Address::Phone(_) | Address::Wechat { .. } => None,
        }
    }
}

/// The suppression-list entry of an email address (already normalized).
pub fn email_entry(email: &str) -> String {
    format!("email:{email}")
}

/// The suppression-list entry of a push token.
pub fn push_entry(token: &str) -> String {
    format!("push:{token}")
}

/// Addresses are personal data: the debug form shows their kind and a short masked tail only,
/// so a logged message never carries a full address.
impl fmt::Debug for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Phone(p) => write!(f, "Phone(…{:04})", p % 10_000),
            Address::Email(e) => {
                let domain = e.rsplit_once('@').map_or("", |(_, d)| d);
                write!(f, "Email(…@{domain})")
            }
            Address::Push { platform, token } => {
                write!(f, "Push({}, …{})", platform.as_str(), tail(token))
            }
            Address::Wechat { account, openid } => write!(
                f,
                "Wechat({}, …{})",
                account.as_deref().unwrap_or("default"),
                tail(openid)
            ),
        }
    }
}

fn tail(s: &str) -> &str {
    let start = s.len().saturating_sub(4);
    s.get(start..).unwrap_or("")
}

/// Checks an email cell (trimmed) and answers it with its domain lower-cased. The form is
/// RFC 5321's dot-atom local part (no quoted strings; UTF-8 letters allowed, as SMTPUTF8
/// servers accept them) and a DNS host name of at least two labels with an alphabetic (or
/// `xn--`) top-level label.
pub fn normalize_email(cell: &str) -> Result<String, &'static str> {
    let cell = cell.trim();
    if cell.len() > MAX_EMAIL {
        return Err("longer than 254 characters");
    }
    let (local, domain) = cell.rsplit_once('@').ok_or("has no @")?;
    if local.is_empty() || local.len() > MAX_LOCAL {
        return Err("the part before @ must be 1 to 64 characters");
    }
    let atext = |c: char| {
        c.is_ascii_alphanumeric()
            || "!#$%&'*+-/=?^_`{|}~".contains(c)
            || (!c.is_ascii() && !c.is_control() && !c.is_whitespace())
    };
    if local
        .split('.')
        .any(|part| part.is_empty() || !part.chars().all(atext))
    {
        return Err("the part before @ is not a valid local part");
    }
    check_domain(domain)?;
    Ok(format!("{local}@{}", domain.to_ascii_lowercase()))
}

fn check_domain(domain: &str) -> Result<(), &'static str> {
    const BAD: &str = "the domain is not a valid host name";
    if domain.is_empty() || domain.len() > 253 {
        return Err(BAD);
    }
    let labels: Vec<&str> = domain.split('.').collect();
    if labels.len() < 2 {
        return Err("the domain has no top-level label");
    }
    for label in &labels {
        let ok = !label.is_empty()
            && label.len() <= 63
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-');
        if !ok {
            return Err(BAD);
        }
    }
    let tld = labels.last().copied().unwrap_or("");
    let tld_ok = tld.len() >= 2
        && (tld.bytes().all(|b| b.is_ascii_alphabetic())
            || tld.to_ascii_lowercase().starts_with("xn--"));
    if !tld_ok {
        return Err("the domain's top-level label is not a name");
    }
    Ok(())
}

/// Checks one device token for its platform; answers it normalized (APNs hex lower-cased).
pub fn normalize_push_token(platform: PushPlatform, token: &str) -> Result<String, String> {
    let token = token.trim();
    match platform {
        PushPlatform::Apns => {
            if token.len() != APNS_TOKEN_LEN || !token.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err("an apns token is 64 hexadecimal characters".to_owned());
            }
            Ok(token.to_ascii_lowercase())
        }
        PushPlatform::Fcm => {
            let printable = token.bytes().all(|b| b.is_ascii_graphic() && b != b';');
            if !FCM_TOKEN_LEN.contains(&token.len()) || !printable {
                return Err(format!(
                    "an fcm token is {} to {} printable characters without ';'",
                    FCM_TOKEN_LEN.start(),
                    FCM_TOKEN_LEN.end()
                ));
            }
            Ok(token.to_owned())
        }
    }
}

/// Parses a push-token cell: `platform:token` pairs separated by `;`. Answers the stored
/// form (the same syntax, normalized) or what is wrong.
pub fn normalize_push_cell(cell: &str) -> Result<String, String> {
    let mut out = String::new();
    for pair in cell.split(';').map(str::trim).filter(|p| !p.is_empty()) {
        let (platform, token) = pair
            .split_once(':')
            .ok_or_else(|| "expected platform:token pairs separated by ';'".to_owned())?;
        let platform = PushPlatform::parse(platform)
            .ok_or_else(|| "the platform must be fcm or apns".to_owned())?;
        let token = normalize_push_token(platform, token)?;
        if !out.is_empty() {
            out.push(';');
        }
        out.push_str(platform.as_str());
        out.push(':');
        out.push_str(&token);
    }
    Ok(out)
}

/// The `(platform, token)` pairs of a stored push cell, in the order given.
pub fn push_pairs(stored: &str) -> impl Iterator<Item = (PushPlatform, &str)> {
    stored.split(';').filter_map(|pair| {
        let (platform, token) = pair.split_once(':')?;
        Some((PushPlatform::parse(platform)?, token))
    })
}

fn check_wechat_id(what: &str, id: &str) -> Result<(), String> {
    let ok = !id.is_empty()
        && id.len() <= MAX_WECHAT_ID
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "an {what} is 1 to {MAX_WECHAT_ID} letters, digits, '_' or '-'"
        ))
    }
}

/// Parses a WeChat cell: `openid` for the default official account, or `account:openid`
/// pairs separated by `;`. Answers the stored form (the same syntax) or what is wrong; one
/// account may appear once.
pub fn normalize_wechat_cell(cell: &str) -> Result<String, String> {
    let mut out = String::new();
    let mut seen: Vec<Option<&str>> = Vec::new();
    for pair in cell.split(';').map(str::trim).filter(|p| !p.is_empty()) {
        let (account, openid) = match pair.split_once(':') {
            Some((a, o)) => (Some(a.trim()), o.trim()),
            None => (None, pair),
        };
        if let Some(a) = account {
            check_wechat_id("account", a)?;
        }
        check_wechat_id("openid", openid)?;
        if seen.contains(&account) {
            return Err(format!(
                "account {} is given more than once",
                account.unwrap_or("(default)")
            ));
        }
        seen.push(account);
        if !out.is_empty() {
            out.push(';');
        }
        if let Some(a) = account {
            out.push_str(a);
            out.push(':');
        }
        out.push_str(openid);
    }
    Ok(out)
}

/// The openid of `account` (`None`: the default account) in a stored WeChat cell.
pub fn wechat_openid<'a>(stored: &'a str, account: Option<&str>) -> Option<&'a str> {
    stored
        .split(';')
        .find_map(|pair| match pair.split_once(':') {
            Some((a, o)) if Some(a) == account => Some(o),
            None if account.is_none() && !pair.is_empty() => Some(pair),
            _ => None,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_checked_for_form_and_the_domain_lower_cased() {
        assert_eq!(
            normalize_email(" Li.Wei+promo@Mail.Example.COM ").as_deref(),
            Ok("Li.Wei+promo@mail.example.com")
        );
        assert_eq!(
            normalize_email("王@example.cn").as_deref(),
            Ok("王@example.cn")
        );
        assert_eq!(
            normalize_email("a@Shop.XN--fiqs8s").as_deref(),
            Ok("a@shop.xn--fiqs8s")
        );
        for bad in [
            "plainaddress",
            "@example.com",
            "a..b@example.com",
            ".a@example.com",
            "a@localhost",
            "a@-example.com",
            "a@example-.com",
            "a@exa_mple.com",
            "a@example.c0m",
            "a@example.com.",
            "a b@example.com",
            "a@@example.com",
        ] {
            assert!(normalize_email(bad).is_err(), "{bad}");
        }
        let long = format!("{}@example.com", "a".repeat(65));
        assert!(normalize_email(&long).is_err());
    }

    #[test]
    fn push_cells_check_each_token_for_its_platform() {
        let apns = "A".repeat(64);
        let fcm = format!("dGVzdA:APA91b{}", "x".repeat(140));
        let stored = normalize_push_cell(&format!(" apns:{apns} ; FCM:{fcm} ;")).expect("valid");
        assert_eq!(stored, format!("apns:{};fcm:{fcm}", "a".repeat(64)));
        let pairs: Vec<_> = push_pairs(&stored).collect();
        assert_eq!(pairs[0], (PushPlatform::Apns, "a".repeat(64).as_str()));
        assert_eq!(pairs[1], (PushPlatform::Fcm, fcm.as_str()));
        assert!(normalize_push_cell(&format!("apns:{}", "g".repeat(64))).is_err());
        assert!(normalize_push_cell("apns:abcd").is_err());
        assert!(normalize_push_cell("fcm:short").is_err());
        assert!(normalize_push_cell(&format!("hms:{fcm}")).is_err());
        assert!(normalize_push_cell(&fcm.replace(':', "")).is_err());
        assert_eq!(normalize_push_cell(" ; ").as_deref(), Ok(""));
    }

    #[test]
    fn wechat_cells_name_an_openid_per_account() {
        let stored = normalize_wechat_cell("oABC123_x; wx1234:oDEF-456").expect("valid");
        assert_eq!(stored, "oABC123_x;wx1234:oDEF-456");
        assert_eq!(wechat_openid(&stored, None), Some("oABC123_x"));
        assert_eq!(wechat_openid(&stored, Some("wx1234")), Some("oDEF-456"));
        assert_eq!(wechat_openid(&stored, Some("wx9999")), None);
        assert_eq!(wechat_openid("wx1:o1", None), None);
        assert_eq!(wechat_openid("", None), None);
        assert!(normalize_wechat_cell("a:o1;a:o2").is_err());
        assert!(normalize_wechat_cell("o1;o2").is_err());
        assert!(normalize_wechat_cell("open id").is_err());
    }

    #[test]
    fn debug_never_shows_a_whole_address() {
        let shown = format!(
            "{:?} {:?} {:?}",
            Address::Phone(8613123079337),
            Address::Email("li.wei@example.com".into()),
            Address::Push {
                platform: PushPlatform::Apns,
                token: "ab".repeat(32).into()
            }
        );
        assert!(!shown.contains("8613123079337"), "{shown}");
        assert!(!shown.contains("li.wei"), "{shown}");
        assert!(!shown.contains(&"ab".repeat(32)), "{shown}");
    }
}
