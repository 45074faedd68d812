//! The in-process `sandbox` provider: simulated latency, transient and permanent failures and
//! delivery receipts at configured rates. It never sends anything anywhere; it is the embedded
//! default and the target of benchmarks.
//!
//! Outcomes are drawn from a seeded generator, so a run with a given seed is reproducible.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::Mutex;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use xxhash_rust::xxh3::xxh3_64;

use super::{DeliveryStatus, OutboundMessage, Provider, SendOutcome, SimulatedReceipt};
use crate::config::ProviderConfig;

/// Simulation settings, from the provider's config block.
#[derive(Debug, Clone)]
pub struct SandboxSettings {
    pub name: String,
    pub latency: Duration,
    pub transient_failure_rate: f64,
    pub permanent_failure_rate: f64,
    pub delivery_rate: f64,
    pub receipt_delay: Duration,
    pub seed: u64,
}

impl SandboxSettings {
    /// Reads the simulation settings of a provider config.
    pub fn from_config(c: &ProviderConfig) -> SandboxSettings {
        SandboxSettings {
            name: c.name.clone(),
            latency: Duration::from_millis(c.latency_ms),
            transient_failure_rate: c.transient_failure_rate,
            permanent_failure_rate: c.permanent_failure_rate,
            delivery_rate: c.delivery_rate,
            receipt_delay: Duration::from_millis(c.receipt_delay_ms),
            seed: 0x6865_7261_6c64,
        }
    }
}

/// The sandbox provider.
pub struct Sandbox {
    settings: SandboxSettings,
    rng: Mutex<SmallRng>,
    accepted: AtomicU64,
}

impl Sandbox {
    /// A sandbox with the given settings.
    pub fn new(settings: SandboxSettings) -> Sandbox {
        Sandbox {
            rng: Mutex::new(SmallRng::seed_from_u64(settings.seed)),
            settings,
            accepted: AtomicU64::new(0),
        }
    }

    /// How many messages it has accepted so far.
    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }
}

#[async_trait]
impl Provider for Sandbox {
    fn name(&self) -> &str {
        &self.settings.name
    }

    async fn send_batch(&self, messages: &[OutboundMessage]) -> Vec<SendOutcome> {
        if !self.settings.latency.is_zero() {
            tokio::time::sleep(self.settings.latency).await;
        }
        let s = &self.settings;
        let mut rng = self.rng.lock();
        let out: Vec<SendOutcome> = messages
            .iter()
            .map(|m| {
                let roll: f64 = rng.gen();
                if roll < s.permanent_failure_rate {
                    SendOutcome::Permanent {
                        error: "sandbox: simulated permanent failure".into(),
                    }
                } else if roll < s.permanent_failure_rate + s.transient_failure_rate {
                    SendOutcome::Transient {
                        error: "sandbox: simulated transient failure".into(),
                    }
                } else {
                    // `sbx-` and the message id's hex digits, written without `format!`
                    // (a million sends a second spend a visible share of a core on it).
                    let mut digits = [0u8; 36];
                    let id = m.id.write_str(&mut digits);
                    let mut provider_message_id = String::with_capacity(id.len());
                    provider_message_id.push_str("sbx-");
                    provider_message_id.push_str(&id[4..]);
                    SendOutcome::Accepted {
                        provider_message_id,
                    }
                }
            })
            .collect();
        drop(rng);
        let accepted = out
            .iter()
            .filter(|o| matches!(o, SendOutcome::Accepted { .. }))
            .count();
        self.accepted.fetch_add(accepted as u64, Ordering::Relaxed);
        out
    }

    fn simulated_receipt(&self, message: &OutboundMessage) -> Option<SimulatedReceipt> {
        // Deterministic per message id, so a resend gets the same fate.
        let roll =
            (xxh3_64(&message.id.as_u128().to_le_bytes()) >> 11) as f64 / (1u64 << 53) as f64;
        let status = if roll < self.settings.delivery_rate {
            DeliveryStatus::Delivered
        } else {
            DeliveryStatus::Undelivered
        };
        Some(SimulatedReceipt {
            status,
            after: self.settings.receipt_delay,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Address, Channel, JobId, MessageId};

    fn settings(transient: f64, permanent: f64) -> SandboxSettings {
        SandboxSettings {
            name: "sandbox".into(),
            latency: Duration::ZERO,
            transient_failure_rate: transient,
            permanent_failure_rate: permanent,
            delivery_rate: 0.9,
            receipt_delay: Duration::ZERO,
            seed: 7,
        }
    }

    fn batch(n: usize) -> Vec<OutboundMessage> {
        let job = JobId::generate();
        (0..n)
            .map(|i| OutboundMessage {
                id: MessageId::derive(&job, &format!("c{i}"), Channel::Sms),
                to: Address::Phone(8613100000000 + i as u64),
                channel: Channel::Sms,
                body: "hi".into(),
                parts: 1,
                content: None,
            })
            .collect()
    }

    #[tokio::test]
    async fn failure_rates_are_roughly_as_configured() {
        let sb = Sandbox::new(settings(0.1, 0.05));
        let out = sb.send_batch(&batch(20_000)).await;
        let transient = out
            .iter()
            .filter(|o| matches!(o, SendOutcome::Transient { .. }))
            .count();
        let permanent = out
            .iter()
            .filter(|o| matches!(o, SendOutcome::Permanent { .. }))
            .count();
        assert!((1_600..2_400).contains(&transient), "{transient}");
        assert!((700..1_300).contains(&permanent), "{permanent}");
        assert_eq!(sb.accepted() as usize, 20_000 - transient - permanent);
    }

    #[tokio::test]
    async fn receipts_follow_the_delivery_rate() {
        let sb = Sandbox::new(settings(0.0, 0.0));
        let msgs = batch(10_000);
        let delivered = msgs
            .iter()
            .filter(|m| {
                sb.simulated_receipt(m).map(|r| r.status) == Some(DeliveryStatus::Delivered)
            })
            .count();
        assert!((8_700..9_300).contains(&delivered), "{delivered}");
    }
}
