//! The task that applies the sandbox's simulated delivery receipts when they come due, as a
//! real provider's receipts would arrive some time after the send.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio::time::Instant;

use super::job::Job;
use crate::metrics;
use crate::provider::DeliveryStatus;

/// Receipts of one chunk that come due together.
pub struct ReceiptBatch {
    pub due: Instant,
    pub job: Arc<Job>,
    pub receipts: Vec<(u32, DeliveryStatus)>,
}

struct Due(ReceiptBatch);

impl PartialEq for Due {
    fn eq(&self, other: &Self) -> bool {
        self.0.due == other.0.due
    }
}
impl Eq for Due {}
impl PartialOrd for Due {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Due {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.due.cmp(&other.0.due)
    }
}

/// Applies simulated receipts when they come due.
pub(super) async fn apply_receipts(mut rx: mpsc::Receiver<ReceiptBatch>) {
    let mut heap: BinaryHeap<Reverse<Due>> = BinaryHeap::new();
    loop {
        let next_due = heap.peek().map(|Reverse(d)| d.0.due);
        tokio::select! {
            msg = rx.recv() => match msg {
                Some(b) => heap.push(Reverse(Due(b))),
                None if heap.is_empty() => return,
                None => {
                    if let Some(due) = next_due { tokio::time::sleep_until(due).await; }
                }
            },
            _ = async { match next_due { Some(d) => tokio::time::sleep_until(d).await, None => std::future::pending().await } } => {}
        }
        let now = Instant::now();
        while heap.peek().is_some_and(|Reverse(d)| d.0.due <= now) {
            if let Some(Reverse(Due(b))) = heap.pop() {
                metrics::receipts(
                    b.job.spec.channel,
                    &b.job.provider_name,
                    b.receipts.iter().map(|(_, status)| status),
                );
                b.job.record_receipts(&b.receipts);
            }
        }
    }
}
