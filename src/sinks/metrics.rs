//! Delivery metrics shared by every sink kind, registered in one place. Label values are bounded: `sink` is a
//! configured sink name, `subscription` a configured subscription id, `reason` a [`SinkError::reason`].

use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

#[derive(Clone)]
pub struct SinkMetrics {
    sent: IntCounterVec,
    failed: IntCounterVec,
    dead_letters: IntCounterVec,
    latency: HistogramVec,
    batch: HistogramVec,
    retries: IntCounterVec,
    pub connected: IntGaugeVec,
    depth_events: IntGaugeVec,
    depth_bytes: IntGaugeVec,
    capacity_events: IntGaugeVec,
    capacity_bytes: IntGaugeVec,
}

impl SinkMetrics {
    pub fn register(r: &Registry) -> prometheus::Result<Self> {
        let m = Self {
            sent: IntCounterVec::new(
                Opts::new(
                    "trigger_relay_sink_events_sent_total",
                    "Events acknowledged by the destination",
                ),
                &["sink", "subscription"],
            )?,
            failed: IntCounterVec::new(
                Opts::new(
                    "trigger_relay_sink_events_failed_total",
                    "Events that could not be delivered (dropped), by reason",
                ),
                &["sink", "subscription", "reason"],
            )?,
            dead_letters: IntCounterVec::new(
                Opts::new(
                    "trigger_relay_dead_letter_events_total",
                    "Failed events handed to the subscription's dead letter, by result (written, failed)",
                ),
                &["sink", "subscription", "result"],
            )?,
            latency: HistogramVec::new(
                HistogramOpts::new(
                    "trigger_relay_sink_publish_latency_seconds",
                    "From request received to destination acknowledgement",
                )
                .buckets(vec![
                    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                    10.0, 30.0,
                ]),
                &["sink"],
            )?,
            batch: HistogramVec::new(
                HistogramOpts::new(
                    "trigger_relay_sink_batch_size_events",
                    "Events taken from the queue at once",
                )
                .buckets(vec![
                    1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0,
                ]),
                &["sink"],
            )?,
            retries: IntCounterVec::new(
                Opts::new(
                    "trigger_relay_sink_retries_total",
                    "Delivery attempts that failed transiently and were made again, per sink: webhook requests, \
                     JetStream publishes, EventBridge entries (Kafka retries inside librdkafka)",
                ),
                &["sink"],
            )?,
            connected: IntGaugeVec::new(
                Opts::new(
                    "trigger_relay_sink_connected",
                    "1 once the sink has reached its destination",
                ),
                &["sink"],
            )?,
            depth_events: IntGaugeVec::new(
                Opts::new(
                    "trigger_relay_queue_depth_events",
                    "Events queued or in flight, per sink",
                ),
                &["sink"],
            )?,
            depth_bytes: IntGaugeVec::new(
                Opts::new(
                    "trigger_relay_queue_depth_bytes",
                    "Bytes queued or in flight, per sink (bodies and each event's fixed cost to the sink)",
                ),
                &["sink"],
            )?,
            capacity_events: IntGaugeVec::new(
                Opts::new(
                    "trigger_relay_queue_capacity_events",
                    "The sink queue's max_events (the ingress answers 503 beyond it)",
                ),
                &["sink"],
            )?,
            capacity_bytes: IntGaugeVec::new(
                Opts::new(
                    "trigger_relay_queue_capacity_bytes",
                    "The sink queue's max_bytes (the ingress answers 503 beyond it)",
                ),
                &["sink"],
            )?,
        };
        r.register(Box::new(m.sent.clone()))?;
        r.register(Box::new(m.failed.clone()))?;
        r.register(Box::new(m.dead_letters.clone()))?;
        r.register(Box::new(m.latency.clone()))?;
        r.register(Box::new(m.batch.clone()))?;
        r.register(Box::new(m.retries.clone()))?;
        r.register(Box::new(m.connected.clone()))?;
        r.register(Box::new(m.depth_events.clone()))?;
        r.register(Box::new(m.depth_bytes.clone()))?;
        r.register(Box::new(m.capacity_events.clone()))?;
        r.register(Box::new(m.capacity_bytes.clone()))?;
        Ok(m)
    }

    /// The retry counter of one sink (`sinks::retry::Backoff`'s loops count each attempt made again).
    pub fn retries(&self, sink: &str) -> prometheus::IntCounter {
        self.retries.with_label_values(&[sink])
    }

    /// Depth gauges for a sink's queue; also publishes the queue's capacity, so depth can be read against it.
    pub fn depth(&self, sink: &str, cap: &crate::pipeline::QueueConfig) -> (IntGauge, IntGauge) {
        self.capacity_events
            .with_label_values(&[sink])
            .set(i64::try_from(cap.max_events).unwrap_or(i64::MAX));
        self.capacity_bytes
            .with_label_values(&[sink])
            .set(i64::try_from(cap.max_bytes).unwrap_or(i64::MAX));
        (
            self.depth_events.with_label_values(&[sink]),
            self.depth_bytes.with_label_values(&[sink]),
        )
    }

    pub fn batch(&self, sink: &str) -> Histogram {
        self.batch.with_label_values(&[sink])
    }

    /// Remove every series of a deleted subscription on `sink` (delivered, failed by reason, dead letters).
    pub fn forget(&self, sink: &str, subscription: &str) {
        let _ = self.sent.remove_label_values(&[sink, subscription]);
        for reason in crate::sinks::SinkError::REASONS {
            let _ = self
                .failed
                .remove_label_values(&[sink, subscription, reason]);
        }
        for result in ["written", "failed"] {
            let _ = self
                .dead_letters
                .remove_label_values(&[sink, subscription, result]);
        }
    }

    /// Handles for one subscription on one sink, resolved once so the hot path does no label lookups.
    pub fn route(&self, sink: &str, subscription: &str) -> RouteMetrics {
        RouteMetrics {
            sent: self.sent.with_label_values(&[sink, subscription]),
            failed: self.failed.clone(),
            dead_letter_written: self.dead_letters.with_label_values(&[
                sink,
                subscription,
                "written",
            ]),
            dead_letter_failed: self.dead_letters.with_label_values(&[
                sink,
                subscription,
                "failed",
            ]),
            sink: sink.into(),
            subscription: subscription.into(),
            latency: self.latency.with_label_values(&[sink]),
        }
    }
}

pub use crate::pipeline::RouteMetrics;
