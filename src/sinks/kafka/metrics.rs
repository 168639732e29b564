//! Kafka-only metrics (the delivery counters every sink shares are in `sinks::metrics`).

use prometheus::{IntCounterVec, Opts, Registry};

#[derive(Clone)]
pub struct KafkaMetrics {
    /// librdkafka's local queue was full and the worker had to wait before enqueueing.
    pub queue_full: IntCounterVec,
}

impl KafkaMetrics {
    pub fn register(r: &Registry) -> prometheus::Result<Self> {
        let m = Self {
            queue_full: IntCounterVec::new(
                Opts::new(
                    "trigger_relay_kafka_producer_queue_full_total",
                    "Times librdkafka's local queue was full and an event had to wait",
                ),
                &["sink"],
            )?,
        };
        r.register(Box::new(m.queue_full.clone()))?;
        Ok(m)
    }
}
