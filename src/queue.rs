//! The per-sink bounded queue between the ingress and a sink worker.
//!
//! Capacity is counted in events **and** bytes; a delivery holds its share from the moment the ingress reserves
//! it until the sink has finished with it (acknowledged or dropped), so the bound covers what sits in the
//! channel *and* what is in flight to the broker. Reservation never waits: when either capacity is used up the
//! ingress answers 503 at once (fail fast), which is the relay's back-pressure on ISC.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use prometheus::IntGauge;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};

use crate::config::QueueConfig;
use crate::event::Delivery;

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
    events: Arc<Semaphore>,
    bytes: Arc<Semaphore>,
    cap: QueueConfig,
    depth_events: IntGauge,
    depth_bytes: IntGauge,
    lost: Arc<AtomicUsize>,
}

impl QueueStats {
    /// Deliveries reserved and not yet finished.
    pub fn outstanding_events(&self) -> usize {
        self.cap.max_events - self.events.available_permits()
    }

    /// Accepted deliveries that ended as `ShutDown` (abandoned at the end of the grace period).
    pub fn lost_events(&self) -> usize {
        self.lost.load(Ordering::Acquire)
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
    _events: OwnedSemaphorePermit,
    _bytes: OwnedSemaphorePermit,
    bytes: i64,
    depth_events: IntGauge,
    depth_bytes: IntGauge,
    lost: Arc<AtomicUsize>,
}

impl Reservation {
    /// The delivery holding this reservation was accepted and will never be delivered.
    pub fn mark_lost(&self) {
        self.lost.fetch_add(1, Ordering::AcqRel);
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.depth_events.dec();
        self.depth_bytes.sub(self.bytes);
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
        events: Arc::new(Semaphore::new(cap.max_events)),
        bytes: Arc::new(Semaphore::new(cap.max_bytes as usize)),
        cap,
        depth_events,
        depth_bytes,
        lost: Arc::new(AtomicUsize::new(0)),
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
        let events = self
            .stats
            .events
            .clone()
            .try_acquire_owned()
            .map_err(|_| QueueFull::Events)?;
        let bytes_permit = self
            .stats
            .bytes
            .clone()
            .try_acquire_many_owned(n)
            .map_err(|_| QueueFull::Bytes)?;
        self.stats.depth_events.inc();
        self.stats.depth_bytes.add(n as i64);
        Ok(Reservation {
            _events: events,
            _bytes: bytes_permit,
            bytes: n as i64,
            depth_events: self.stats.depth_events.clone(),
            depth_bytes: self.stats.depth_bytes.clone(),
            lost: self.stats.lost.clone(),
        })
    }

    /// Hand a delivery (holding a reservation of this queue) to the sink worker.
    pub fn send(&self, d: Delivery) -> Result<(), Delivery> {
        self.tx.try_send(d).map_err(|e| match e {
            mpsc::error::TrySendError::Full(d) | mpsc::error::TrySendError::Closed(d) => d,
        })
    }
}
