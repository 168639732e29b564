//! The per-sink bounded queue between the ingress and a sink worker.
//!
//! Capacity is counted in events **and** bytes; a delivery holds its share from the moment the ingress reserves
//! it until the sink has finished with it (acknowledged or dropped), so the bound covers what sits in the
//! channel *and* what is in flight to the broker. Reservation never waits: when either capacity is used up the
//! ingress answers 503 at once (fail fast), which is the relay's back-pressure on ISC.
//!
//! An event's bytes are its body plus the sink kind's fixed cost of holding one event besides its body
//! (`SinkKind::event_overhead_bytes`: for Kafka, librdkafka's record and headers and the relay's in-flight
//! state), so `max_bytes` bounds the memory the queue's events hold, not just their bodies: with many small
//! events the fixed part is most of it.
//!
//! Fan-out: the deliveries of one event to one queue (several subscriptions on the same sink) travel as one
//! channel item and share one reservation of their total, taken once and given back once, when the last of
//! them is done. The worker still sees deliveries one by one ([`QueueReceiver::recv_many`] splits a group
//! across batches, keeping its rest for the next call), so nothing downstream of the queue knows of groups.

use std::collections::VecDeque;
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

/// What the channel carries: one delivery, or the deliveries of one event to this queue (fan-out).
#[derive(Debug)]
enum Item {
    One(Delivery),
    Group(Vec<Delivery>),
}

/// The sending side, held by the routing table.
#[derive(Clone, Debug)]
pub struct Queue {
    tx: mpsc::Sender<Item>,
    stats: QueueStats,
}

/// Capacity counters of a queue, readable after the senders are gone (shutdown report).
#[derive(Clone, Debug)]
pub struct QueueStats {
    pub name: Arc<str>,
    cap: QueueConfig,
    /// Bytes each event counts besides its body (the sink kind's, see the module doc).
    event_overhead: u32,
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

/// The receiving side, owned by the sink worker. `recv_many` yields 0 once every sender is gone and the
/// channel is empty.
pub struct QueueReceiver {
    rx: mpsc::Receiver<Item>,
    /// The rest of a group that a batch's limit cut (at most one group: fewer deliveries than the trigger has
    /// subscriptions).
    rest: VecDeque<Delivery>,
}

impl QueueReceiver {
    /// Up to `limit` deliveries that are ready, appended to `buf` in queue order, waiting for at least one;
    /// 0 means closed and empty. Cancel-safe: the only wait is before anything is taken.
    pub async fn recv_many(&mut self, buf: &mut Vec<Delivery>, limit: usize) -> usize {
        let start = buf.len();
        if limit == 0 {
            return 0;
        }
        self.take_rest(buf, start + limit);
        if buf.len() == start {
            match self.rx.recv().await {
                Some(item) => self.place(item, buf, start + limit),
                None => return 0,
            }
        }
        while buf.len() < start + limit {
            match self.rx.try_recv() {
                Ok(item) => self.place(item, buf, start + limit),
                Err(_) => break,
            }
        }
        buf.len() - start
    }

    fn take_rest(&mut self, buf: &mut Vec<Delivery>, until: usize) {
        while buf.len() < until {
            match self.rest.pop_front() {
                Some(d) => buf.push(d),
                None => break,
            }
        }
    }

    fn place(&mut self, item: Item, buf: &mut Vec<Delivery>, until: usize) {
        match item {
            Item::One(d) => buf.push(d),
            Item::Group(group) => {
                let room = until.saturating_sub(buf.len());
                let mut group = group.into_iter();
                buf.extend(group.by_ref().take(room));
                self.rest.extend(group);
            }
        }
    }
}

/// A share of a queue's capacity: `events` events and `bytes` bytes, given back when the last delivery holding
/// it drops (one delivery, or the deliveries of one event to this queue).
#[derive(Debug, Clone)]
pub struct Reservation {
    held: Arc<Held>,
}

#[derive(Debug)]
struct Held {
    shared: Arc<Shared>,
    events: u32,
    bytes: u32,
}

impl Reservation {
    /// A delivery holding this reservation was accepted and will never be delivered.
    pub fn mark_lost(&self) {
        self.held.shared.lost.fetch_add(1, Ordering::AcqRel);
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let s = &self.shared;
        s.depth_events.sub(self.events as i64);
        s.depth_bytes.sub(self.bytes as i64);
        s.events.add_permits(self.events as usize);
        s.bytes.add_permits(self.bytes as usize);
    }
}

/// A new queue, each event counting its body and `event_overhead` bytes. The gauges are this sink's depth
/// gauges (see `sinks::metrics`).
pub fn bounded(
    name: &str,
    cap: QueueConfig,
    event_overhead: u32,
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
        event_overhead,
    };
    (
        Queue { tx, stats },
        QueueReceiver {
            rx,
            rest: VecDeque::new(),
        },
    )
}

impl Queue {
    pub fn name(&self) -> &str {
        &self.stats.name
    }

    /// The name, shared (routes of this sink hold it as their `sink`).
    pub fn name_arc(&self) -> &Arc<str> {
        &self.stats.name
    }

    pub fn stats(&self) -> QueueStats {
        self.stats.clone()
    }

    /// The same queue (another sender of it).
    pub fn same(&self, other: &Queue) -> bool {
        Arc::ptr_eq(&self.stats.shared, &other.stats.shared)
    }

    /// Reserve room for one event of `bytes` bytes, or say at once which capacity is used up.
    pub fn try_reserve(&self, bytes: usize) -> Result<Reservation, QueueFull> {
        self.try_reserve_many(1, bytes)
    }

    /// Reserve room for `events` deliveries of a body of `bytes` bytes each (one event to several subscriptions
    /// on this queue: each is counted, as each may be copied downstream), all or none. Each counts its body and
    /// the queue's per-event overhead.
    pub fn try_reserve_many(&self, events: usize, bytes: usize) -> Result<Reservation, QueueFull> {
        if self.tx.is_closed() {
            return Err(QueueFull::Closed);
        }
        let events = u32::try_from(events.max(1)).map_err(|_| QueueFull::Events)?;
        let n = u32::try_from(bytes.max(1))
            .ok()
            .and_then(|b| b.checked_add(self.stats.event_overhead))
            .and_then(|b| b.checked_mul(events))
            .ok_or(QueueFull::Bytes)?;
        let s = &self.stats.shared;
        let events_permit = s
            .events
            .try_acquire_many(events)
            .map_err(|_| QueueFull::Events)?;
        // If the bytes are short, the event permits go back as they drop.
        let bytes_permit = s.bytes.try_acquire_many(n).map_err(|_| QueueFull::Bytes)?;
        // From here the reservation gives both back when it drops.
        events_permit.forget();
        bytes_permit.forget();
        s.depth_events.add(events as i64);
        s.depth_bytes.add(n as i64);
        Ok(Reservation {
            held: Arc::new(Held {
                shared: s.clone(),
                events,
                bytes: n,
            }),
        })
    }

    /// Hand a delivery (holding a reservation of this queue) to the sink worker.
    pub fn send(&self, d: Delivery) -> Result<(), Unsent> {
        self.send_item(Item::One(d))
    }

    /// Hand the deliveries of one event to this queue (sharing one reservation) to the sink worker as one item.
    pub fn send_group(&self, group: Vec<Delivery>) -> Result<(), Unsent> {
        self.send_item(Item::Group(group))
    }

    fn send_item(&self, item: Item) -> Result<(), Unsent> {
        self.tx.try_send(item).map_err(|e| match e {
            mpsc::error::TrySendError::Full(i) | mpsc::error::TrySendError::Closed(i) => Unsent(i),
        })
    }
}

/// Deliveries the worker could not take (it is gone: shutdown, a failed worker). Reservations bound the channel
/// to its capacity, so a full channel does not happen.
#[derive(Debug)]
pub struct Unsent(Item);

impl Unsent {
    /// Refuse each of them: nothing was accepted (see [`Delivery::refuse`]).
    pub fn refuse(self) {
        match self.0 {
            Item::One(d) => d.refuse(),
            Item::Group(g) => g.into_iter().for_each(Delivery::refuse),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::{
        Event, FilterCounters, Finishing, Route, RouteMetrics, Routes, Share, SinkError, Target,
    };
    use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, Opts};

    fn route() -> Arc<Route> {
        route_on("discard")
    }

    fn route_on(sink: &str) -> Arc<Route> {
        let counter = || IntCounter::new("c", "c").unwrap();
        Arc::new(Route {
            subscription_id: "s".into(),
            subscription_name: "s".into(),
            sink: sink.into(),
            target: Target::Discard,
            ack: crate::model::AckMode::Accepted,
            filter: None,
            metrics: RouteMetrics {
                sent: counter(),
                failed: IntCounterVec::new(Opts::new("f", "f"), &["a", "b", "c"]).unwrap(),
                dead_letter_written: counter(),
                dead_letter_failed: counter(),
                sink: "discard".into(),
                subscription: "s".into(),
                latency: Histogram::with_opts(HistogramOpts::new("l", "l")).unwrap(),
            },
            dead_letter: None,
            statuses: None,
            envelope: None,
            spans: None,
            filter_metrics: FilterCounters {
                matched: counter(),
                not_matched: counter(),
                error: counter(),
            },
        })
    }

    fn queue(max_events: usize, max_bytes: u64) -> (Queue, QueueReceiver) {
        queue_with_overhead(max_events, max_bytes, 0)
    }

    fn queue_with_overhead(
        max_events: usize,
        max_bytes: u64,
        overhead: u32,
    ) -> (Queue, QueueReceiver) {
        let gauge = || IntGauge::new("g", "g").unwrap();
        bounded(
            "q",
            QueueConfig {
                max_events,
                max_bytes,
            },
            overhead,
            gauge(),
            gauge(),
        )
    }

    fn event(n: u8) -> Arc<Event> {
        let body = bytes::Bytes::from(vec![n; 100]);
        let tracking = crate::error::TrackingId::new();
        Arc::new(Event::new(
            "t".into(),
            None,
            tracking,
            body,
            std::time::Instant::now(),
        ))
    }

    /// Each event counts its body and the queue's per-event overhead, a group once per delivery; all of it
    /// comes back when the reservations drop, and a size that overflows is refused, not wrapped.
    #[test]
    fn an_event_counts_its_body_and_the_queue_overhead() {
        // (overhead, body, deliveries per reservation, max_bytes, reservations that fit)
        fn check(overhead: u32, body: usize, per: usize, max_bytes: u64, fit: usize) {
            let case =
                format!("overhead {overhead}, body {body}, {per} per reservation, {max_bytes} B");
            let (q, _rx) = queue_with_overhead(1000, max_bytes, overhead);
            for round in 0..2 {
                let held: Vec<_> = (0..fit)
                    .map(|i| {
                        q.try_reserve_many(per, body).unwrap_or_else(|e| {
                            panic!("{case}: reservation {i} (round {round}): {e}")
                        })
                    })
                    .collect();
                assert_eq!(
                    q.try_reserve_many(per, body).unwrap_err(),
                    QueueFull::Bytes,
                    "{case}: one more than {fit} (round {round})"
                );
                drop(held);
            }
        }
        check(0, 100, 1, 1024, 10);
        check(200, 100, 1, 1024, 3);
        check(200, 100, 3, 2048, 2);
        check(2048, 0, 1, 4096, 1);
        check(2048, 1000, 2, 1 << 20, 172);
        let (q, _rx) = queue_with_overhead(10, 1 << 20, 4096);
        assert_eq!(
            q.try_reserve_many(3, u32::MAX as usize - 10).unwrap_err(),
            QueueFull::Bytes
        );
    }

    /// A fan-out group: reserved all or none, split across batches in order, its room given back once, when the
    /// last of its deliveries is done.
    #[tokio::test]
    async fn a_group_is_reserved_whole_split_in_order_and_released_by_its_last_delivery() {
        let (q, mut rx) = queue(10, 2048);
        let stats = q.stats();
        // Events short: nothing taken. Bytes short: the event permits go back too.
        assert_eq!(q.try_reserve_many(11, 1).unwrap_err(), QueueFull::Events);
        assert_eq!(q.try_reserve_many(3, 1000).unwrap_err(), QueueFull::Bytes);
        assert_eq!(stats.outstanding_events(), 0);

        let r = q.try_reserve_many(3, 100).unwrap();
        assert_eq!(stats.outstanding_events(), 3);
        let share = Share::new(event(1), Routes::One(route()), r);
        let group = (0..3)
            .map(|_| Delivery::new(share.clone(), 0, None))
            .collect();
        drop(share);
        assert!(Delivery::enqueue_group(&q, group));
        let single = q.try_reserve(100).unwrap();
        let share = Share::new(event(2), Routes::One(route()), single);
        q.send(Delivery::new(share, 0, None)).unwrap();

        let mut buf = Vec::new();
        assert_eq!(rx.recv_many(&mut buf, 2).await, 2);
        assert_eq!(rx.recv_many(&mut buf, 2).await, 2);
        let bodies: Vec<u8> = buf.iter().map(|d| d.event().body[0]).collect();
        assert_eq!(
            bodies,
            [1, 1, 1, 2],
            "the group's rest comes before what was sent after it"
        );
        assert_eq!(stats.outstanding_events(), 4);

        let single = buf.pop().unwrap();
        single.finish(Ok(()));
        assert_eq!(stats.outstanding_events(), 3);
        buf.pop().unwrap().finish(Ok(()));
        buf.pop().unwrap().finish(Ok(()));
        assert_eq!(
            stats.outstanding_events(),
            3,
            "held until the group's last delivery"
        );
        buf.pop().unwrap().finish(Ok(()));
        assert_eq!(stats.outstanding_events(), 0);
        assert_eq!(stats.lost_events(), 0);
    }

    /// A group the worker can no longer take is refused whole, its room given back, nothing counted as lost.
    #[tokio::test]
    async fn a_group_sent_to_a_stopped_worker_is_refused_whole() {
        let (q, rx) = queue(10, 4096);
        let stats = q.stats();
        let r = q.try_reserve_many(2, 100).unwrap();
        drop(rx);
        let share = Share::new(event(1), Routes::One(route()), r);
        let group = (0..2)
            .map(|_| Delivery::new(share.clone(), 0, None))
            .collect();
        drop(share);
        assert!(!Delivery::enqueue_group(&q, group));
        assert_eq!(stats.outstanding_events(), 0);
        assert_eq!(stats.lost_events(), 0);
    }

    /// Deliveries finished together: each success counted at once, the latencies added to the sink's histogram
    /// in one update (`flush`), a failure not observed; another sink's delivery is observed into its own.
    #[tokio::test]
    async fn deliveries_finished_together_count_each_latency_once() {
        let (q, _rx) = queue(10, 4096);
        let (r, other) = (route(), route_on("other"));
        let share = Share::new(
            event(1),
            Routes::One(r.clone()),
            q.try_reserve_many(3, 100).unwrap(),
        );
        let mut finishing = Finishing::new(std::time::Instant::now());
        Delivery::new(share.clone(), 0, None).finish_in(Ok(()), &mut finishing);
        Delivery::new(share.clone(), 0, None).finish_in(Ok(()), &mut finishing);
        let failed = Err(SinkError::Rejected("no".into()));
        Delivery::new(share, 0, None).finish_in(failed, &mut finishing);
        let elsewhere = Share::new(
            event(2),
            Routes::One(other.clone()),
            q.try_reserve(100).unwrap(),
        );
        Delivery::new(elsewhere, 0, None).finish_in(Ok(()), &mut finishing);
        assert_eq!(r.metrics.sent.get(), 2);
        assert_eq!(
            r.metrics.latency.get_sample_count(),
            0,
            "not before the flush"
        );
        assert_eq!(other.metrics.latency.get_sample_count(), 1);
        finishing.flush();
        assert_eq!(r.metrics.latency.get_sample_count(), 2);
        assert_eq!(q.stats().outstanding_events(), 0);
    }

    /// A delivery lets go of the body only when it holds its share alone: a group's body stays until the
    /// last of its deliveries can release it.
    #[tokio::test]
    async fn a_shared_body_is_released_by_the_last_delivery_holding_it() {
        let (q, _rx) = queue(10, 4096);
        let share = Share::new(
            event(1),
            Routes::One(route()),
            q.try_reserve_many(2, 100).unwrap(),
        );
        let (mut a, b) = (
            Delivery::new(share.clone(), 0, None),
            Delivery::new(share, 0, None),
        );
        a.release_body();
        assert_eq!(a.event().body.len(), 100, "b still holds the share");
        b.finish(Ok(()));
        a.release_body();
        assert!(a.event().body.is_empty());
        a.restore_body(bytes::Bytes::from_static(b"back"));
        assert_eq!(&a.event().body[..], b"back");
        a.finish(Ok(()));
        assert_eq!(q.stats().outstanding_events(), 0);
    }
}
