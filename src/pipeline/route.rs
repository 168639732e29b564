//! A route: one subscription as the data path sees it (its destination, filter, counters, dead letter), and the
//! queue its deliveries go to. Built by `routes`, held by the routing table (`router`), carried by every
//! [`Delivery`](super::Delivery) to its sink.
//!
//! What a route reaches that belongs to a component above the pipeline (the dead letter's producer, the span
//! exporter) it holds as a small trait object defined here, so the pipeline imports nothing above it.

use std::sync::Arc;

use futures_util::future::BoxFuture;
use prometheus::IntCounter;

use super::{Delivery, Outcome, Queue, RouteMetrics, SinkError, Target};
use crate::filter::Filter;
use crate::model::AckMode;

/// Where a route's permanently failed deliveries are written (`sinks::dead_letter::DeadLetter`).
pub trait DeadLetterWriter: Send + Sync + std::fmt::Debug {
    /// Write `d` with the reason it failed; the writer counts and logs its own result.
    fn write<'a>(&'a self, d: &'a Delivery, e: &'a SinkError) -> BoxFuture<'a, ()>;
}

/// The span exporter (`spans::Spans`), while `[tracing]` exports spans.
pub trait SpanExporter: Send + Sync + std::fmt::Debug {
    /// The `ingress` span of an accepted event and its `enqueue` child.
    fn ingress(
        &self,
        e: &super::Event,
        path: &str,
        status: u16,
        started: std::time::SystemTime,
        enqueued: (std::time::SystemTime, std::time::SystemTime),
    );
    /// The `publish` span of a finished delivery.
    fn publish(&self, d: &Delivery, outcome: &Outcome);
}

/// A route's CloudEvents settings, resolved when the routing table is built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloudEvents {
    /// `cloudevents-structured` (else binary).
    pub structured: bool,
    pub source: Arc<str>,
    /// `type`, derived from the trigger id: [`event_type`].
    pub kind: Arc<str>,
    /// A JSON pointer into the payload whose value becomes `subject` (absent value: no subject).
    pub subject: Option<Arc<str>>,
}

/// One subscription as the data path sees it.
#[derive(Debug)]
pub struct Route {
    pub subscription_id: Arc<str>,
    pub subscription_name: Arc<str>,
    /// e.g. `kafka.main`, `stdout`: a bounded metric label.
    pub sink: Arc<str>,
    pub target: Target,
    pub ack: AckMode,
    pub filter: Option<Filter>,
    pub metrics: RouteMetrics,
    /// Where permanently failed events go (`deadLetter`), if anywhere.
    pub dead_letter: Option<Arc<dyn DeadLetterWriter>>,
    /// Where outcomes are recorded for `GET /trigger-invocations/status` (when the API is on).
    pub statuses: Option<Arc<crate::status::StatusLog>>,
    /// The CloudEvents envelope of this subscription's messages, if it has one.
    pub envelope: Option<Arc<CloudEvents>>,
    /// The span exporter, while `[tracing]` exports spans.
    pub spans: Option<Arc<dyn SpanExporter>>,
    pub filter_metrics: FilterCounters,
}

#[derive(Debug, Clone)]
pub struct FilterCounters {
    pub matched: IntCounter,
    pub not_matched: IntCounter,
    pub error: IntCounter,
}

/// A route and the queue its deliveries go to.
#[derive(Debug, Clone)]
pub struct RouteEntry {
    pub route: Arc<Route>,
    pub queue: Queue,
}
