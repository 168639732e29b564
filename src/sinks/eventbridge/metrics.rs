//! EventBridge-only metrics (the delivery and retry counters every sink shares are in `sinks::metrics`).

use prometheus::{IntCounter, Registry};

#[derive(Clone)]
pub struct EventBridgeMetrics {
    /// Calls that were throttled (whole call or some entries).
    pub throttled: IntCounter,
}

impl EventBridgeMetrics {
    pub fn register(r: &Registry) -> prometheus::Result<Self> {
        let m = Self {
            throttled: IntCounter::new(
                "trigger_relay_eventbridge_throttled_calls_total",
                "EventBridge calls answered with throttling (whole call or some entries)",
            )?,
        };
        r.register(Box::new(m.throttled.clone()))?;
        Ok(m)
    }
}
