//! One accepted invocation ([`Event`], shared by every subscription it matched) and one unit of sink work
//! ([`Delivery`]: an event for one subscription, holding its queue reservation until it is done).
//!
//! The body is a [`Bytes`] of the request exactly as received: fan-out to 50 subscriptions clones a pointer,
//! not the payload, and no sink re-serialises it.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use tokio::sync::oneshot;

use crate::queue::Reservation;
use crate::router::Route;
use crate::sinks::SinkError;

#[derive(Debug)]
pub struct Event {
    pub trigger_id: Arc<str>,
    /// `_metadata.invocationId`, when the payload has one (ISC's per-delivery id: the dedupe key downstream).
    pub invocation_id: Option<Box<str>>,
    /// The id in our logs and error bodies for this request.
    pub tracking_id: String,
    pub body: Bytes,
    pub received: Instant,
}

/// How a delivery ended, as the ingress sees it in `delivered` mode.
pub type Outcome = Result<(), SinkError>;

/// An event on its way to one subscription's destination.
#[derive(Debug)]
pub struct Delivery {
    pub event: Arc<Event>,
    pub route: Arc<Route>,
    /// Present when the ingress waits for this delivery (`delivered` mode).
    pub ack: Option<oneshot::Sender<Outcome>>,
    /// Frees the queue's event and byte capacity when the delivery is done (dropped).
    pub reservation: Reservation,
}

impl Delivery {
    /// Finish this delivery: count it, tell a waiting ingress, release its queue capacity.
    pub fn finish(self, outcome: Outcome) {
        let latency = self.event.received.elapsed();
        self.route.metrics.record(&outcome, latency);
        if let Err(e) = &outcome {
            tracing::warn!(
                tracking_id = %self.event.tracking_id,
                subscription = %self.route.subscription_id,
                trigger = %self.event.trigger_id,
                invocation_id = self.event.invocation_id.as_deref().unwrap_or(""),
                error = %e,
                "event not delivered"
            );
        }
        if let Some(tx) = self.ack {
            let _ = tx.send(outcome);
        }
    }
}
