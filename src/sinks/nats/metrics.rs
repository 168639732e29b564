//! NATS-only metrics (the delivery counters every sink shares are in `sinks::metrics`).

use prometheus::{IntCounterVec, Opts, Registry};

#[derive(Clone)]
pub struct NatsMetrics {
    /// JetStream publishes sent again after a transient failure.
    pub retries: IntCounterVec,
}

impl NatsMetrics {
    pub fn register(r: &Registry) -> prometheus::Result<Self> {
        let m = Self {
            retries: IntCounterVec::new(
                Opts::new(
                    "trigger_relay_nats_publish_retries_total",
                    "JetStream publishes retried after a transient failure",
                ),
                &["sink"],
            )?,
        };
        r.register(Box::new(m.retries.clone()))?;
        Ok(m)
    }
}
