//! Channels, purposes and consent states.

use serde::{Deserialize, Serialize};

/// A delivery channel. Only `sms` has a provider today; the others are accepted by the
/// schema so upstream systems can be written against the final API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    Sms,
    Email,
    Push,
    Wechat,
}

impl Channel {
    /// Every channel, in index order.
    pub const ALL: [Channel; 4] = [Channel::Sms, Channel::Email, Channel::Push, Channel::Wechat];

    /// Stable lowercase name, used in metrics labels, ids and the config.
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Sms => "sms",
            Channel::Email => "email",
            Channel::Push => "push",
            Channel::Wechat => "wechat",
        }
    }

    /// Index into per-channel arrays (consent bits, counters).
    pub fn index(self) -> usize {
        self as usize
    }

    /// The channel at an index, as stored forms keep it.
    pub fn from_index(index: usize) -> Option<Channel> {
        [Channel::Sms, Channel::Email, Channel::Push, Channel::Wechat]
            .get(index)
            .copied()
    }
}

/// Why a message is sent: marketing needs explicit consent, transactional only no opt-out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Purpose {
    Marketing,
    Transactional,
}

impl Purpose {
    /// Stable lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Purpose::Marketing => "marketing",
            Purpose::Transactional => "transactional",
        }
    }
}

/// A contact's consent for one channel. `Unknown` is the empty CSV cell.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Consent {
    #[default]
    Unknown,
    OptIn,
    OptOut,
}

impl Consent {
    /// Parses the snapshot spelling: `opt_in`, `opt_out`, or empty for unknown.
    pub fn parse(s: &str) -> Option<Consent> {
        match s.trim() {
            "" => Some(Consent::Unknown),
            "opt_in" => Some(Consent::OptIn),
            "opt_out" => Some(Consent::OptOut),
            _ => None,
        }
    }

    /// Two-bit code for compact storage.
    pub fn to_bits(self) -> u8 {
        match self {
            Consent::Unknown => 0,
            Consent::OptIn => 1,
            Consent::OptOut => 2,
        }
    }

    /// Inverse of [`Consent::to_bits`]; unknown codes read as `Unknown`.
    pub fn from_bits(bits: u8) -> Consent {
        match bits & 0b11 {
            1 => Consent::OptIn,
            2 => Consent::OptOut,
            _ => Consent::Unknown,
        }
    }
}
