//! HTTP-webhook-only metrics (the delivery counters every sink shares are in `sinks::metrics`).

use prometheus::{IntCounter, Registry};

#[derive(Clone)]
pub struct HttpMetrics {
    /// Attempts that failed and were retried.
    pub retries: IntCounter,
}

impl HttpMetrics {
    pub fn register(r: &Registry) -> prometheus::Result<Self> {
        let m = Self {
            retries: IntCounter::new(
                "trigger_relay_http_retried_requests_total",
                "Webhook attempts that failed (connection error, timeout, 408, 429, 5xx) and were retried",
            )?,
        };
        r.register(Box::new(m.retries.clone()))?;
        Ok(m)
    }
}
