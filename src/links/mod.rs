//! Tracked links and opens: templates' links rewritten to signed short links (`rewrite`),
//! the token format (`token`), and [`Tracking`], which gives each job a tag and turns a
//! token from a click or an open back into (job, recipient, link).
//!
//! Where it sits: the API rewrites a job's template before it is planned ([`Tracking::prepare`])
//! and attaches the job once accepted ([`Tracking::attach`]); workers fill each message's
//! tokens ([`crate::dispatch::Job::fill_links`]); `GET /c/{token}` and `GET /o/{token}` resolve
//! here. A click only ever redirects to a link the job's template held.

pub mod rewrite;
pub mod token;

use std::sync::Arc;

use dashmap::mapref::entry::Entry;
use dashmap::DashMap;
use xxhash_rust::xxh3::xxh3_64_with_seed;

pub use rewrite::{RewriteError, Rewritten, MAX_LINKS};
pub use token::{LinkSigner, TokenClaims, OPEN_LINK, TOKEN_LEN, UNSUBSCRIBE_LINK};

use crate::config::TrackingConfig;
use crate::dispatch::Job;
use crate::domain::{Channel, JobId};

/// Whether a body gets an open pixel: an email with an HTML part.
fn pixel_for(body: &str, channel: Channel) -> bool {
    channel == Channel::Email && crate::template::email::has_html(body)
}

/// What a job needs to fill its messages' tokens and resolve its clicks.
#[derive(Debug)]
pub struct JobLinks {
    /// The job's tag in every token (unique among this gateway's jobs).
    pub tag: u32,
    /// The template's original links, by index.
    pub urls: Vec<String>,
    /// Whether an open pixel was added (email).
    pub pixel: bool,
    pub signer: Arc<LinkSigner>,
}

/// The tracking service: the link signer and the tag → job registry.
pub struct Tracking {
    base_url: String,
    signer: Arc<LinkSigner>,
    jobs: DashMap<u32, Arc<Job>>,
}

impl Tracking {
    /// Builds the service. Without a configured secret a random one is used for this process.
    pub fn new(config: &TrackingConfig) -> Tracking {
        let signer = match &config.link_secret {
            Some(s) => LinkSigner::new(s.expose()),
            None => {
                tracing::warn!(
                    env = %config.link_secret_env,
                    "no link secret configured; tracked links will stop resolving after a restart"
                );
                LinkSigner::new(&rand::random::<[u8; 32]>())
            }
        };
        Tracking {
            base_url: config.base_url.trim_end_matches('/').to_string(),
            signer: Arc::new(signer),
            jobs: DashMap::new(),
        }
    }

    /// The base of tracked links (`https://hrld.io`).
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// The signer (tests and tools mint tokens with it).
    pub fn signer(&self) -> &LinkSigner {
        &self.signer
    }

    /// Rewrites a template body's links (and adds the open pixel to an email with an HTML
    /// part).
    pub fn prepare(&self, body: &str, channel: Channel) -> Result<Rewritten, RewriteError> {
        rewrite::rewrite(body, &self.base_url, pixel_for(body, channel))
    }

    /// Registers an accepted job under a fresh tag and gives it its links. The tag is derived
    /// from the job id, probing on a collision, so it is stable and unique among live jobs.
    pub fn attach(&self, job: &Arc<Job>, rewritten: &Rewritten, channel: Channel) {
        let tag = self.assign_tag(&job.id, job);
        job.set_links(JobLinks {
            tag,
            urls: rewritten.links.clone(),
            pixel: channel == Channel::Email && rewritten.body.contains(rewrite::OPEN_MARK),
            signer: self.signer.clone(),
        });
    }

    fn assign_tag(&self, id: &JobId, job: &Arc<Job>) -> u32 {
        let mut seed = 0u64;
        loop {
            let tag = xxh3_64_with_seed(id.as_str().as_bytes(), seed) as u32;
            match self.jobs.entry(tag) {
                Entry::Vacant(v) => {
                    v.insert(job.clone());
                    return tag;
                }
                Entry::Occupied(_) => seed += 1,
            }
        }
    }

    /// The job and claims of a token, if it is genuine and its job is known. The signature is
    /// checked first, so a forged token costs one MAC and touches no state.
    pub fn resolve(&self, token: &str) -> Option<(Arc<Job>, TokenClaims)> {
        let claims = self.signer.verify(token)?;
        let job = self.jobs.get(&claims.job_tag)?.clone();
        Some((job, claims))
    }
}
