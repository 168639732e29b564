//! One accepted invocation ([`Event`], shared by every subscription it matched) and one unit of sink work
//! ([`Delivery`]: an event for one subscription, holding its queue reservation until it is done).
//!
//! The body is a [`Bytes`] of the request exactly as received: fan-out to 50 subscriptions clones a pointer,
//! not the payload, and no sink re-serialises it. A sink whose client copies the message (Kafka: librdkafka
//! holds its own copy until the delivery report) lets go of the body once the client has it
//! ([`Delivery::release_body`]), so an in-flight event is held once, not twice; the delivery keeps its queue
//! reservation, which now counts the client's copy, and gets the message back from the client if it fails
//! ([`Delivery::restore_body`]) for its dead letter.
//!
//! The deliveries of one event to one queue hold one [`Share`]: the event, the trigger's routes they index and
//! their common reservation. A fan-out costs one reference count per delivery, not three.
//!
//! A delivery is finished exactly once. One that is dropped without [`Delivery::finish`] (a sink task
//! abandoned at the end of the shutdown grace period, a worker that panicked, a queue dropped with events
//! still in it) finishes itself as [`SinkError::ShutDown`] in its `Drop`: it is counted, logged with its
//! tracking id and reported by the shutdown; nothing accepted disappears silently.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Instant, SystemTime};

use bytes::Bytes;
use tokio::sync::oneshot;

use super::{
    CloudEvents, Finishing, Queue, Reservation, Route, RouteEntry, SinkError, TraceContext,
};
use crate::error::TrackingId;
use crate::status::{InvocationKind, Status, StatusLog};

#[derive(Debug)]
pub struct Event {
    pub trigger_id: Arc<str>,
    /// `_metadata.invocationId`, when the payload has one (ISC's per-delivery id: the dedupe key downstream).
    pub invocation_id: Option<Box<str>>,
    /// The id in our logs and error bodies for this request.
    pub tracking_id: TrackingId,
    pub body: Bytes,
    pub received: Instant,
    /// The wall-clock time of `received` (CloudEvents `time`, statuses' `created`).
    pub received_at: SystemTime,
    /// W3C trace context: the caller's, or one the relay started (see `envelope`).
    pub trace: TraceContext,
    /// The id of this event's `ingress` span, while spans are exported (`spans`).
    pub span_id: Option<u64>,
    /// A test invocation (`POST /trigger-invocations/test`): its `contentJson`. `None` for real-time events.
    pub test: Option<serde_json::Value>,
    /// `trigger-relay replay`: the tracking id of the event this one delivers again (from its dead letter).
    /// `None` for events ISC sent. A replay that fails is not dead-lettered again: the original is still there.
    pub replay_of: Option<Box<str>>,
    /// The body parsed once, on first use, for every subscription that needs it (a Kafka key pointer).
    parsed: OnceLock<Option<serde_json::Value>>,
    /// Structured CloudEvents envelopes built for this event, one per distinct setting (bounded by its routes).
    structured: Mutex<Vec<(Arc<CloudEvents>, Bytes)>>,
}

impl Event {
    pub fn new(
        trigger_id: Arc<str>,
        invocation_id: Option<Box<str>>,
        tracking_id: TrackingId,
        body: Bytes,
        received: Instant,
    ) -> Self {
        Self {
            trigger_id,
            invocation_id,
            tracking_id,
            body,
            received,
            received_at: {
                let now = SystemTime::now();
                now.checked_sub(received.elapsed()).unwrap_or(now)
            },
            trace: TraceContext::start(tracking_id),
            span_id: None,
            test: None,
            replay_of: None,
            parsed: OnceLock::new(),
            structured: Mutex::new(Vec::new()),
        }
    }

    /// The body as the ingress already parsed it (for filters), so no route parses it again.
    pub fn seed_json(&mut self, doc: serde_json::Value) {
        let _ = self.parsed.set(Some(doc));
    }

    /// The structured envelope for `c`, built by `build` at most once per event for equal settings.
    pub fn structured_envelope(
        &self,
        c: &Arc<CloudEvents>,
        build: impl FnOnce() -> Bytes,
    ) -> Bytes {
        let mut cache = self.structured.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, b)) = cache.iter().find(|(k, _)| Arc::ptr_eq(k, c) || **k == **c) {
            return b.clone();
        }
        let b = build();
        cache.push((c.clone(), b.clone()));
        b
    }

    /// This event's metadata with another body (empty: released; the message given back: restored). Not
    /// shared with the original: its parsed JSON and envelopes stay behind, to be freed with it.
    fn with_body(&self, body: Bytes) -> Self {
        Self {
            trigger_id: self.trigger_id.clone(),
            invocation_id: self.invocation_id.clone(),
            tracking_id: self.tracking_id,
            body,
            received: self.received,
            received_at: self.received_at,
            trace: self.trace.clone(),
            span_id: self.span_id,
            test: self.test.clone(),
            replay_of: self.replay_of.clone(),
            parsed: OnceLock::new(),
            structured: Mutex::new(Vec::new()),
        }
    }

    /// The body as JSON, parsed at most once per event however many subscriptions ask.
    pub fn json(&self) -> Option<&serde_json::Value> {
        self.parsed
            .get_or_init(|| serde_json::from_slice(&self.body).ok())
            .as_ref()
    }
}

/// The `publish` span of a delivery: built when the delivery finishes, from these.
#[derive(Debug, Clone, Copy)]
pub struct DeliverySpan {
    pub id: u64,
    /// When the delivery was handed to its sink's queue.
    pub started: SystemTime,
}

/// How a delivery ended, as the ingress sees it in `delivered` mode.
pub type Outcome = Result<(), SinkError>;

/// The routes a [`Share`]'s deliveries go to: one (a single hand-over) or the trigger's routes
/// (`router::TriggerRoutes::table`), which the deliveries index. Holding the table (one reference count per
/// share) is what spares a fan-out one reference count per delivery. It holds routes only, no queue sender, so
/// a delivery never keeps a queue's channel open.
#[derive(Debug)]
pub enum Routes {
    One(Arc<Route>),
    Table(Arc<Vec<Arc<Route>>>),
}

/// What the deliveries of one event to one queue share: the event, their routes, and the queue room they hold
/// together (released when the last of them is done). A fan-out to 50 subscriptions of one sink makes one
/// `Share` and 50 deliveries holding it: one atomic reference count each, instead of one for the event, one
/// for the route and one for the reservation (BENCHMARKS.md, "fan-out, fifth step").
#[derive(Debug)]
pub struct Share {
    event: Arc<Event>,
    routes: Routes,
    reservation: Reservation,
}

impl Share {
    pub fn new(event: Arc<Event>, routes: Routes, reservation: Reservation) -> Arc<Self> {
        Arc::new(Self {
            event,
            routes,
            reservation,
        })
    }
}

/// An event on its way to one subscription's destination.
#[derive(Debug)]
pub struct Delivery {
    share: Arc<Share>,
    /// This delivery's route in `share.routes` (0 for [`Routes::One`]).
    index: u32,
    /// Present when the ingress waits for this delivery (`delivered` mode).
    pub ack: Option<oneshot::Sender<Outcome>>,
    /// Send attempts so far (sinks that retry count them; dead letters report them).
    pub attempts: u32,
    /// This delivery's `publish` span (its id and start), while spans are exported.
    pub span: Option<DeliverySpan>,
    /// The message as the sink sent it, given back by the sink after [`Delivery::release_body`] in structured
    /// CloudEvents mode (the envelope, which the body cannot be rebuilt from): what [`crate::envelope::payload`]
    /// answers, so a dead letter carries the record that failed.
    pub sent: Option<Bytes>,
    finished: bool,
}

impl Delivery {
    /// The delivery of `share`'s event to its route number `index` (0 for [`Routes::One`]). `index` must be a
    /// route of the share: the ingress takes it from the table the share holds.
    pub fn new(share: Arc<Share>, index: usize, ack: Option<oneshot::Sender<Outcome>>) -> Self {
        let mut d = Self {
            share,
            index: u32::try_from(index).unwrap_or(u32::MAX),
            ack,
            attempts: 0,
            span: None,
            sent: None,
            finished: false,
        };
        let route = d.route();
        d.span = route.spans.as_ref().map(|_| DeliverySpan {
            id: super::new_span_id(),
            started: SystemTime::now(),
        });
        // Listed from the moment it starts, as ISC lists an invocation in flight.
        if let Some(log) = &d.route().statuses {
            log.record(d.status(None, None));
        }
        d
    }

    /// The event being delivered.
    pub fn event(&self) -> &Arc<Event> {
        &self.share.event
    }

    /// The subscription it is delivered for.
    pub fn route(&self) -> &Arc<Route> {
        match &self.share.routes {
            Routes::One(r) => r,
            Routes::Table(t) => &t[self.index as usize],
        }
    }

    /// The one hand-over of an event to a route's sink queue, for the ingress, the API's test invocations and
    /// `trigger-relay replay`: the delivery is made with the room `reservation` holds (reserved first, so an
    /// event is refused before any of its routes gets it) and queued. `false` when the sink's worker is gone
    /// (shutdown, a dead worker): the delivery is then refused (its status recorded, its room released) and the
    /// caller answers that the event was not accepted.
    pub fn enqueue(
        event: Arc<Event>,
        entry: &RouteEntry,
        ack: Option<oneshot::Sender<Outcome>>,
        reservation: Reservation,
    ) -> bool {
        let share = Share::new(event, Routes::One(entry.route.clone()), reservation);
        Self::enqueue_one(&entry.queue, Self::new(share, 0, ack))
    }

    /// Queue one delivery made for `queue` (its share holds room there). `false` as for `enqueue`, refused.
    pub fn enqueue_one(queue: &Queue, d: Delivery) -> bool {
        match queue.send(d) {
            Ok(()) => true,
            Err(unsent) => {
                unsent.refuse();
                false
            }
        }
    }

    /// [`enqueue`](Self::enqueue) for the deliveries of one event to several routes of one queue (fan-out):
    /// they share one reservation and travel as one item. `false` as for `enqueue`, every one refused.
    pub fn enqueue_group(queue: &Queue, group: Vec<Delivery>) -> bool {
        match queue.send_group(group) {
            Ok(()) => true,
            Err(unsent) => {
                unsent.refuse();
                false
            }
        }
    }

    /// Let go of the event's body (and its parsed JSON and envelopes, when no other delivery holds the event)
    /// once the sink's client holds its own copy of the message. The reservation stays until the delivery
    /// finishes: the queue's byte capacity then counts the client's copy. Kept when the subscription records
    /// invocation statuses: the finished status carries the input (and the status log holds it anyway), and
    /// while other deliveries of the event to this queue are unfinished (several subscriptions on one sink):
    /// their [`Share`] holds the body until the last of them is done (ARCHITECTURE.md, "One copy per in-flight
    /// record").
    pub fn release_body(&mut self) {
        if self.route().statuses.is_some() || self.event().body.is_empty() {
            return;
        }
        if let Some(share) = Arc::get_mut(&mut self.share) {
            share.event = Arc::new(share.event.with_body(Bytes::new()));
        }
    }

    /// The message the sink's client gave back (a failed record, from its delivery report) after
    /// [`Delivery::release_body`]: the event's body again (none or binary CloudEvents mode, where the message is
    /// the body), or in structured mode the envelope as sent ([`Delivery::sent`]).
    pub fn restore_body(&mut self, message: Bytes) {
        if self.route().envelope.as_ref().is_some_and(|c| c.structured) {
            self.sent = Some(message);
        } else if self.event().body.is_empty() {
            // Released, so this delivery held the share alone, and still does (nothing else takes it).
            if let Some(share) = Arc::get_mut(&mut self.share) {
                share.event = Arc::new(share.event.with_body(message));
            }
        }
    }

    /// This delivery's invocation status: in flight (`completed` `None`) or finished.
    fn status(&self, completed: Option<SystemTime>, error: Option<String>) -> Status {
        let (kind, content) = match &self.event().test {
            Some(c) => (InvocationKind::Test, c.clone()),
            None => (InvocationKind::RealTime, serde_json::json!({})),
        };
        Status {
            id: self
                .event()
                .invocation_id
                .as_deref()
                .map_or_else(|| self.event().tracking_id.to_string(), str::to_string),
            trigger_id: self.event().trigger_id.clone(),
            subscription_id: self.route().subscription_id.clone(),
            subscription_name: self.route().subscription_name.clone(),
            kind,
            created: self.event().received_at,
            completed,
            input: StatusLog::keepable(&self.event().body),
            content_json: content,
            error,
        }
    }

    /// Finish this delivery: count it, tell a waiting ingress, release its queue capacity.
    pub fn finish(mut self, outcome: Outcome) {
        self.complete(outcome, Instant::now());
    }

    /// [`finish`](Self::finish) for one of the deliveries a sink finished together: the time, the event's
    /// latency and the latency histogram's update are shared with the others ([`Finishing`]).
    pub fn finish_in(mut self, outcome: Outcome, finishing: &mut Finishing) {
        self.finished = true;
        let route = self.route();
        route
            .metrics
            .record_in(&outcome, self.event().received, &route.sink, finishing);
        self.report(outcome);
    }

    /// The ingress could not hand this delivery over (the sink is stopped) and answers the request with an
    /// error itself: nothing was accepted, so nothing is counted as lost.
    pub fn refuse(mut self) {
        self.finished = true;
        if let Some(log) = &self.route().statuses {
            log.record(self.status(
                Some(SystemTime::now()),
                Some("not accepted: the relay is shutting down".into()),
            ));
        }
    }

    fn complete(&mut self, outcome: Outcome, now: Instant) {
        self.finished = true;
        let latency = now.saturating_duration_since(self.event().received);
        self.route().metrics.record(&outcome, latency);
        self.report(outcome);
    }

    /// What every finish does after counting: the span, the log line of a failure, the status, the answer.
    fn report(&mut self, outcome: Outcome) {
        if let Some(spans) = &self.route().spans {
            spans.publish(self, &outcome);
        }
        if let Err(e) = &outcome {
            if *e == SinkError::ShutDown {
                self.share.reservation.mark_lost();
            }
            tracing::warn!(
                tracking_id = %self.event().tracking_id,
                trace_id = %self.event().trace.trace_id_hex(),
                subscription = %self.route().subscription_id,
                trigger = %self.event().trigger_id,
                invocation_id = self.event().invocation_id.as_deref().unwrap_or(""),
                attempts = self.attempts,
                error = %e,
                "event not delivered"
            );
        }
        if let Some(log) = &self.route().statuses {
            log.record(self.status(
                Some(SystemTime::now()),
                outcome.as_ref().err().map(|e| e.to_string()),
            ));
        }
        if let Some(tx) = self.ack.take() {
            let _ = tx.send(outcome);
        }
    }
}

impl Drop for Delivery {
    fn drop(&mut self) {
        if !self.finished {
            self.complete(Err(SinkError::ShutDown), Instant::now());
        }
    }
}
