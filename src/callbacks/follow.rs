//! Follows and unfollows of a WeChat official account: the follower's openid is looked up in
//! the contact snapshot (the contacts whose openid for this account it is) and their WeChat
//! consent set, as an inbound `STOP` sets SMS consent. Other channels are never touched.

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
    /// Records `consent` for the provider's channel for every contact that has `openid`.
    pub async fn apply_follow(
        &self,
        provider: &ProviderCallbacks,
        account: Option<&str>,
        openid: &str,
        consent: Consent,
    ) -> Result<FollowTally, StoreError> {
        let snapshot = self.books.default_store().current();
        let (account, wanted) = (account.map(str::to_string), openid.to_string());
        let contacts =
            tokio::task::spawn_blocking(move || followers(&snapshot, account.as_deref(), &wanted))
                .await
                .map_err(|e| StoreError::Unavailable(format!("contact lookup: {e}")))?;
        tracing::info!(
            provider = %provider.name,
            consent = ?consent,
            contacts = contacts.len(),
            "wechat follow event"
        );
        let now = self.clock.now();
        let source = format!("wechat:{}", provider.name);
        let changes: Vec<ConsentChange> = contacts
            .into_iter()
            .map(|contact_id| ConsentChange {
                contact_id,
                channel: provider.channel,
                consent,
                source: source.clone(),
                at: now,
            })
            .collect();
        if !changes.is_empty() {
            self.store.record_consent(&changes).await?;
            if let Some(journal) = self.consent_log.get() {
                if let Err(e) = journal.record_consent(&changes).await {
                    tracing::warn!(error = %e, "consent changes could not be journaled for webhooks");
                }
            }
        }
        Ok(FollowTally {
            contacts: changes.len(),
        })
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
