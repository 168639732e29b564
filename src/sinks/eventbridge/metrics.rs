//! EventBridge-only metrics (the delivery counters every sink shares are in `sinks::metrics`).

use prometheus::{IntCounter, Registry};

#[derive(Clone)]
pub struct EventBridgeMetrics {
    /// Entries sent again after a failed call or a failed entry.
    pub retries: IntCounter,
    /// Calls that were throttled (whole call or some entries).
    pub throttled: IntCounter,
}

impl EventBridgeMetrics {
    pub fn register(r: &Registry) -> prometheus::Result<Self> {
        let m = Self {
            retries: IntCounter::new(
                "trigger_relay_eventbridge_retried_entries_total",
                "EventBridge entries sent again (failed call or failed entry)",
            )?,
            throttled: IntCounter::new(
                "trigger_relay_eventbridge_throttled_calls_total",
                "EventBridge calls answered with throttling (whole call or some entries)",
            )?,
        };
        r.register(Box::new(m.retries.clone()))?;
        r.register(Box::new(m.throttled.clone()))?;
        Ok(m)
    }
}
