//! One route's delivery counters, recorded when a delivery finishes (registered by `sinks::metrics`).

use std::time::Duration;

use prometheus::{Histogram, IntCounter, IntCounterVec};

use super::{Outcome, SinkError};

/// One subscription's delivery counters.
#[derive(Clone, Debug)]
pub struct RouteMetrics {
    pub(crate) sent: IntCounter,
    pub(crate) failed: IntCounterVec,
    pub(crate) dead_letter_written: IntCounter,
    pub(crate) dead_letter_failed: IntCounter,
    pub(crate) sink: String,
    pub(crate) subscription: String,
    pub(crate) latency: Histogram,
}

impl RouteMetrics {
    pub fn record(&self, outcome: &Outcome, latency: Duration) {
        match outcome {
            Ok(()) => {
                self.sent.inc();
                self.latency.observe(latency.as_secs_f64());
            }
            Err(e) => self.failed_with(e),
        }
    }

    /// A dead letter was written (`true`) or could not be.
    pub fn dead_letter(&self, written: bool) {
        if written {
            self.dead_letter_written.inc()
        } else {
            self.dead_letter_failed.inc()
        }
    }

    fn failed_with(&self, e: &SinkError) {
        self.failed
            .with_label_values(&[self.sink.as_str(), self.subscription.as_str(), e.reason()])
            .inc();
    }
}
