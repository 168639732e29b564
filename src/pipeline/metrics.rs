//! One route's delivery counters, recorded when a delivery finishes (registered by `sinks::metrics`), and
//! [`Finishing`]: what the deliveries a sink finishes together record once.

use std::sync::Arc;
use std::time::{Duration, Instant};

use prometheus::local::LocalHistogram;
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

    /// [`record`](Self::record) for a delivery finished with others (`finishing`): its latency goes to the
    /// batch's local histogram when it is this route's sink's.
    pub(crate) fn record_in(
        &self,
        outcome: &Outcome,
        received: Instant,
        sink: &Arc<str>,
        finishing: &mut Finishing,
    ) {
        if outcome.is_err() {
            return self.record(outcome, finishing.latency(received));
        }
        let latency = finishing.latency(received).as_secs_f64();
        self.sent.inc();
        match &mut finishing.local {
            Some((s, local)) if Arc::ptr_eq(s, sink) || **s == **sink => local.observe(latency),
            Some(_) => self.latency.observe(latency),
            local @ None => {
                let l = self.latency.local();
                l.observe(latency);
                *local = Some((sink.clone(), l));
            }
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

/// The deliveries a sink worker finishes together (one send's answer): one clock read for all of them, one
/// latency computation per event (a fan-out's deliveries share theirs), and the sink's latency histogram
/// observed locally and added to the shared one once, by [`flush`](Self::flush) (or when dropped). A fan-out to 50
/// otherwise makes 50 atomic observations of one histogram per event, which cost more than the rest of the
/// deliveries' completion (BENCHMARKS.md, "fan-out, fifth step").
pub struct Finishing {
    now: Instant,
    last: Option<(Instant, Duration)>,
    local: Option<(Arc<str>, LocalHistogram)>,
}

impl Finishing {
    pub fn new(now: Instant) -> Self {
        Self {
            now,
            last: None,
            local: None,
        }
    }

    /// The next deliveries finish at `now` (the driver keeps one `Finishing` for its life).
    pub fn restart(&mut self, now: Instant) {
        self.now = now;
        self.last = None;
    }

    /// From `received` to when these deliveries finished.
    fn latency(&mut self, received: Instant) -> Duration {
        match self.last {
            Some((r, l)) if r == received => l,
            _ => {
                let l = self.now.saturating_duration_since(received);
                self.last = Some((received, l));
                l
            }
        }
    }

    /// Add what was observed locally to the shared histogram (`LocalHistogram` also does when dropped).
    pub fn flush(&mut self) {
        if let Some((_, local)) = &mut self.local {
            local.flush();
        }
    }
}
