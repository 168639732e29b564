//! Sinks: where events go. Each sink kind lives in its own module with the same shape (config, worker that
//! batches and sends, metrics), after Vector's `src/sinks/*`.
//!
//! The seam: the router hands [`Delivery`](crate::pipeline::Delivery)s to a sink's bounded queue; the sink worker
//! ([`SinkWorker::run`]) takes them, sends them, and calls `Delivery::finish` with the outcome. Network sinks
//! implement [`driver::Transport`] (start a batch, flush) and share one loop ([`driver::Driver`]) for the
//! in-flight bound, dead letters and shutdown.
//!
//! A kind is one folder (`config.rs`, `sink.rs`, `kind.rs`, `mod.rs`, and `metrics.rs` for metrics of its own)
//! and one line in [`KINDS`]:
//! its `kind.rs` implements [`SinkKind`], which is all that config validation, the routing table and start-up
//! know of it. What a new kind adds outside its folder is the wire format's: its [`Target`] variant, and for a
//! new subscription `type` its `SubscriptionType` variant and config field (ARCHITECTURE.md, "How to add a
//! sink").

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::pipeline::queue::QueueReceiver;

pub mod dead_letter;
pub mod discard;
pub mod driver;
pub mod eventbridge;
pub mod http;
pub mod kafka;
pub mod kind;
pub mod metrics;
pub mod nats;
pub(crate) mod retry;
pub mod stdout;

pub use kind::Destination;
pub(crate) use kind::{kind_of, SinkKind};

/// Every sink kind the relay delivers to: one line each (see [`kind`]). A subscription type without a line here
/// (INLINE, SCRIPT, WORKFLOW) runs inside ISC and is refused by validation.
pub(crate) static KINDS: &[&dyn SinkKind] = &[
    &kafka::Kind,
    &nats::Kind,
    &eventbridge::Kind,
    &http::Kind,
    &stdout::Kind,
    &discard::Kind,
];

pub use crate::pipeline::{SinkError, Target};

/// Whether a sink has reached its destination once and its worker is still running (readiness).
#[derive(Debug, Clone, Default)]
pub struct Readiness {
    connected: Arc<AtomicBool>,
    failed: Arc<AtomicBool>,
}

impl Readiness {
    pub fn set(&self) {
        self.connected.store(true, Ordering::Release)
    }
    /// The worker is gone (it panicked): the relay stays not ready until restarted.
    pub fn fail(&self) {
        self.failed.store(true, Ordering::Release)
    }
    /// The worker is gone: only a restart brings it back (`/healthz` fails).
    pub fn has_failed(&self) -> bool {
        self.failed.load(Ordering::Acquire)
    }
    pub fn is_ready(&self) -> bool {
        self.connected.load(Ordering::Acquire) && !self.failed.load(Ordering::Acquire)
    }
}

/// A sink's worker: drains its queue until every sender is gone, then flushes and returns.
pub trait SinkWorker: Send + 'static {
    /// `stop` is cancelled when the shutdown grace period is over: abandon what is left.
    fn run(
        self: Box<Self>,
        rx: QueueReceiver,
        stop: CancellationToken,
    ) -> Pin<Box<dyn Future<Output = ()> + Send>>;
}
