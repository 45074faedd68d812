//! Follows and unfollows of a WeChat official account: the follower's openid is looked up in
//! the contact snapshot (the contacts whose openid for this account it is) and their WeChat
//! consent set, as an inbound `STOP` sets SMS consent. Other channels are never touched. An
//! event names only an openid, so it applies in every tenant whose book holds it.

use super::{Callbacks, ProviderCallbacks};
use crate::domain::Consent;
use crate::snapshot::Snapshot;
use crate::store::{ConsentChange, StoreError};

/// What a follow event changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FollowTally {
    /// Contacts whose consent was recorded.
    pub contacts: usize,
}

impl Callbacks {
    /// Records `consent` for the provider's channel for every contact, in every tenant's book,
    /// that has `openid`.
    pub async fn apply_follow(
        &self,
        provider: &ProviderCallbacks,
        account: Option<&str>,
        openid: &str,
        consent: Consent,
    ) -> Result<FollowTally, StoreError> {
        let books = self.books.all();
        let (account, wanted) = (account.map(str::to_string), openid.to_string());
        let found = tokio::task::spawn_blocking(move || {
            books
                .into_iter()
                .map(|(tenant, store)| {
                    let contacts = followers(&store.current(), account.as_deref(), &wanted);
                    (tenant, contacts)
                })
                .filter(|(_, contacts)| !contacts.is_empty())
                .collect::<Vec<_>>()
        })
        .await
        .map_err(|e| StoreError::Unavailable(format!("contact lookup: {e}")))?;
        let contacts: usize = found.iter().map(|(_, c)| c.len()).sum();
        tracing::info!(
            provider = %provider.name,
            consent = ?consent,
            contacts,
            "wechat follow event"
        );
        let now = self.clock.now();
        let source = format!("wechat:{}", provider.name);
        for (tenant, ids) in found {
            let changes: Vec<ConsentChange> = ids
                .into_iter()
                .map(|contact_id| ConsentChange {
                    contact_id,
                    channel: provider.channel,
                    consent,
                    source: source.clone(),
                    at: now,
                })
                .collect();
            self.record_consent(&tenant, &changes).await?;
        }
        Ok(FollowTally { contacts })
    }
}

/// The contacts whose openid for `account` is `openid`: one pass over the snapshot (follow
/// events are rare beside sends; an openid index would make it a lookup).
fn followers(snapshot: &Snapshot, account: Option<&str>, openid: &str) -> Vec<String> {
    snapshot
        .iter()
        .filter(|c| c.wechat_openid(account) == Some(openid))
        .map(|c| c.contact_id().to_string())
        .collect()
}
