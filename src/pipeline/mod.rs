//! The pipeline core: what flows ([`Event`], [`Delivery`], [`Outcome`]), where it waits ([`Queue`],
//! [`Reservation`]: the per-sink bound, released on drop), where it goes ([`Route`], [`Target`]), how it fails
//! ([`SinkError`]), and the counters and trace context it carries.
//!
//! It imports nothing above it: only the leaves (`error`, `model`, `status`, `filter`). What a route reaches that
//! belongs to a higher component (a dead letter's producer, the span exporter) it holds through a trait defined
//! here ([`DeadLetterWriter`], [`SpanExporter`]). The layering test (`layering.rs`, beside `lib.rs`) fails on any
//! import cycle between the modules of `src/`.

pub mod event;
mod metrics;
pub mod queue;
pub mod route;
mod target;
mod trace;

pub use event::{Delivery, DeliverySpan, Event, Outcome, Routes, Share};
pub use metrics::{Finishing, RouteMetrics};
pub use queue::{Queue, QueueConfig, QueueFull, QueueReceiver, QueueStats, Reservation};
pub use route::{CloudEvents, DeadLetterWriter, FilterCounters, Route, RouteEntry, SpanExporter};
pub use target::{EventBridgeTarget, SinkError, Target};
pub use trace::TraceContext;

/// A fresh random span id (never zero).
pub fn new_span_id() -> u64 {
    uuid::Uuid::new_v4().as_u64_pair().0 | 1
}
