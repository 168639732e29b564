//! The per-sink bounded queue between the ingress and a sink worker.
//!
//! Capacity is counted in events **and** bytes; a delivery holds its share from the moment the ingress reserves
//! it until the sink has finished with it (acknowledged or dropped), so the bound covers what sits in the
//! channel *and* what is in flight to the broker. Reservation never waits: when either capacity is used up the
//! ingress answers 503 at once (fail fast), which is the relay's back-pressure on ISC.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use prometheus::IntGauge;
use tokio::sync::{mpsc, Semaphore};

use serde::{Deserialize, Serialize};

use super::Delivery;
use crate::keypath::ErrorSink;

/// Queue capacity of one sink, in events and in bytes; whichever is reached first sheds load with 503.
#[derive(Debug, Clone, Copy, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct QueueConfig {
    #[serde(default = "default_queue_events")]
    pub max_events: usize,
    #[serde(default = "default_queue_bytes")]
    pub max_bytes: u64,
}

impl Default for QueueConfig {
    fn default() -> Self {
        Self {
            max_events: default_queue_events(),
            max_bytes: default_queue_bytes(),
        }
    }
}

fn default_queue_events() -> usize {
    10_000
}
fn default_queue_bytes() -> u64 {
    64 * 1024 * 1024
}

/// Check one queue's capacities.
pub(crate) fn check_queue(path: &str, q: &QueueConfig, errors: &mut dyn ErrorSink) {
    if q.max_events == 0 || q.max_events > 10_000_000 {
        errors.error(
            format!("{path}.max_events"),
            "must be between 1 and 10000000".into(),
        );
    }
    if q.max_bytes < 1024 || q.max_bytes > (u32::MAX as u64) {
        errors.error(
            format!("{path}.max_bytes"),
            "must be between 1024 and 4294967295".into(),
        );
    }
}

/// Which capacity was exhausted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum QueueFull {
    #[error("queue full (events)")]
    Events,
    #[error("queue full (bytes)")]
    Bytes,
    #[error("queue closed")]
    Closed,
}

/// The sending side, held by the routing table.
#[derive(Clone, Debug)]
pub struct Queue {
    tx: mpsc::Sender<Delivery>,
    stats: QueueStats,
}

/// Capacity counters of a queue, readable after the senders are gone (shutdown report).
#[derive(Clone, Debug)]
pub struct QueueStats {
    pub name: Arc<str>,
    cap: QueueConfig,
    shared: Arc<Shared>,
}

/// What a queue's senders, its reservations and its stats share: one allocation, one reference count per
/// reservation (the ingress takes one per delivery).
#[derive(Debug)]
struct Shared {
    events: Semaphore,
    bytes: Semaphore,
    depth_events: IntGauge,
    depth_bytes: IntGauge,
    lost: AtomicUsize,
}

impl QueueStats {
    /// Deliveries reserved and not yet finished.
    pub fn outstanding_events(&self) -> usize {
        self.cap.max_events - self.shared.events.available_permits()
    }

    /// Accepted deliveries that ended as `ShutDown` (abandoned at the end of the grace period).
    pub fn lost_events(&self) -> usize {
        self.shared.lost.load(Ordering::Acquire)
    }
}

/// The receiving side, owned by the sink worker. `recv` yields `None` once every sender is gone and the
/// channel is empty.
pub struct QueueReceiver {
    rx: mpsc::Receiver<Delivery>,
}

impl QueueReceiver {
    pub async fn recv(&mut self) -> Option<Delivery> {
        self.rx.recv().await
    }

    /// Up to `limit` deliveries that are ready, waiting for at least one; 0 means closed and empty.
    pub async fn recv_many(&mut self, buf: &mut Vec<Delivery>, limit: usize) -> usize {
        self.rx.recv_many(buf, limit).await
    }
}

/// A share of a queue's capacity: one event and `bytes` bytes, given back on drop.
#[derive(Debug)]
pub struct Reservation {
    shared: Arc<Shared>,
    bytes: u32,
}

impl Reservation {
    /// The delivery holding this reservation was accepted and will never be delivered.
    pub fn mark_lost(&self) {
        self.shared.lost.fetch_add(1, Ordering::AcqRel);
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let s = &self.shared;
        s.depth_events.dec();
        s.depth_bytes.sub(self.bytes as i64);
        s.events.add_permits(1);
        s.bytes.add_permits(self.bytes as usize);
    }
}

/// A new queue. The gauges are this sink's depth gauges (see `sinks::metrics`).
pub fn bounded(
    name: &str,
    cap: QueueConfig,
    depth_events: IntGauge,
    depth_bytes: IntGauge,
) -> (Queue, QueueReceiver) {
    // Reservations bound what is in the channel to `max_events`, so a send after a reservation never finds
    // the channel full.
    let (tx, rx) = mpsc::channel(cap.max_events.max(1));
    let stats = QueueStats {
        name: name.into(),
        shared: Arc::new(Shared {
            events: Semaphore::new(cap.max_events),
            bytes: Semaphore::new(cap.max_bytes as usize),
            depth_events,
            depth_bytes,
            lost: AtomicUsize::new(0),
        }),
        cap,
    };
    (Queue { tx, stats }, QueueReceiver { rx })
}

impl Queue {
    pub fn name(&self) -> &str {
        &self.stats.name
    }

    pub fn stats(&self) -> QueueStats {
        self.stats.clone()
    }

    /// Reserve room for one event of `bytes` bytes, or say at once which capacity is used up.
    pub fn try_reserve(&self, bytes: usize) -> Result<Reservation, QueueFull> {
        if self.tx.is_closed() {
            return Err(QueueFull::Closed);
        }
        let n = u32::try_from(bytes.max(1)).map_err(|_| QueueFull::Bytes)?;
        let s = &self.stats.shared;
        let events = s.events.try_acquire().map_err(|_| QueueFull::Events)?;
        // If the bytes are short, the event permit goes back as it drops.
        let bytes_permit = s.bytes.try_acquire_many(n).map_err(|_| QueueFull::Bytes)?;
        // From here the reservation gives both back when it drops.
        events.forget();
        bytes_permit.forget();
        s.depth_events.inc();
        s.depth_bytes.add(n as i64);
        Ok(Reservation {
            shared: s.clone(),
            bytes: n,
        })
    }

    /// Hand a delivery (holding a reservation of this queue) to the sink worker.
    pub fn send(&self, d: Delivery) -> Result<(), Delivery> {
        self.tx.try_send(d).map_err(|e| match e {
            mpsc::error::TrySendError::Full(d) | mpsc::error::TrySendError::Closed(d) => d,
        })
    }
}
