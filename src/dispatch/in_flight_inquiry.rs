//! At a restart, messages caught in flight at a provider that cannot drop repeats are not
//! simply marked in doubt: the provider is asked first what it knows of them
//! ([`Provider::in_flight_fates`], e.g. the SMPP submit log). Those it never took are sent
//! again, those it took are settled as sent under its id, and only the rest stay in doubt.

use super::journal::codec::SendingItem;
use crate::domain::MessageId;
use crate::provider::{InFlightFate, InFlightMessage, Provider};

/// The in-flight messages of one job, sorted by what the provider said of them.
#[derive(Debug, Default)]
pub struct Inquiry {
    pub not_sent: Vec<SendingItem>,
    /// With the provider's id.
    pub sent: Vec<(SendingItem, String)>,
    pub unknown: Vec<SendingItem>,
}

/// Asks `provider` about `items`; `id` gives each item's message id.
pub fn ask(
    provider: &dyn Provider,
    items: Vec<SendingItem>,
    id: impl Fn(&SendingItem) -> MessageId,
) -> Inquiry {
    let mut out = Inquiry::default();
    if items.is_empty() {
        return out;
    }
    let asked: Vec<InFlightMessage> = items
        .iter()
        .map(|it| InFlightMessage {
            id: id(it),
            to: it.to,
            parts: it.parts,
        })
        .collect();
    let fates = provider.in_flight_fates(&asked);
    // A provider that answers too few leaves the rest in doubt, never sent again.
    let mut fates = fates.into_iter();
    for item in items {
        match fates.next().unwrap_or(InFlightFate::Unknown) {
            InFlightFate::NotSent => out.not_sent.push(item),
            InFlightFate::Sent {
                provider_message_id,
            } => out.sent.push((item, provider_message_id)),
            InFlightFate::Unknown => out.unknown.push(item),
        }
    }
    out
}
