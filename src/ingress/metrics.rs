//! Ingress metrics, registered in one place. `trigger` label values are catalog ids or `unknown`; `status`
//! is an HTTP status code; `sink` a configured sink name; `scope` is `ip` or `credential`: all bounded. Nothing
//! is labelled by source IP or credential.

use prometheus::{IntCounter, IntCounterVec, IntGauge, Opts, Registry};

#[derive(Clone)]
pub struct IngressMetrics {
    pub requests: IntCounterVec,
    pub bytes: IntCounter,
    pub in_flight: IntGauge,
    pub unrouted: IntCounterVec,
    pub shed: IntCounterVec,
    pub rejected: IntCounterVec,
    pub rate_limited: IntCounterVec,
    pub rate_limit_untracked: IntCounterVec,
}

impl IngressMetrics {
    pub fn register(r: &Registry) -> prometheus::Result<Self> {
        let m = Self {
            requests: IntCounterVec::new(
                Opts::new(
                    "trigger_relay_ingress_requests_total",
                    "Ingress requests by trigger and status",
                ),
                &["trigger", "status"],
            )?,
            bytes: IntCounter::new(
                "trigger_relay_ingress_bytes_total",
                "Request body bytes accepted",
            )?,
            in_flight: IntGauge::new(
                "trigger_relay_ingress_in_flight_requests",
                "Requests being handled",
            )?,
            unrouted: IntCounterVec::new(
                Opts::new(
                    "trigger_relay_ingress_unrouted_events_total",
                    "Events of a known trigger that matched no enabled subscription",
                ),
                &["trigger"],
            )?,
            shed: IntCounterVec::new(
                Opts::new(
                    "trigger_relay_ingress_shed_requests_total",
                    "Requests answered 503 because a sink queue was full",
                ),
                &["sink"],
            )?,
            rejected: IntCounterVec::new(
                Opts::new(
                    "trigger_relay_ingress_rejected_requests_total",
                    "Requests answered with an error (4xx/5xx), by reason",
                ),
                &["reason"],
            )?,
            rate_limited: IntCounterVec::new(
                Opts::new(
                    "trigger_relay_ingress_rate_limited_requests_total",
                    "Requests answered 429 by an [ingress.rate_limit] limit, by scope (ip, credential)",
                ),
                &["scope"],
            )?,
            rate_limit_untracked: IntCounterVec::new(
                Opts::new(
                    "trigger_relay_ingress_rate_limit_untracked_requests_total",
                    "Requests let through uncounted because the rate-limit table was full (max_tracked_keys), by scope",
                ),
                &["scope"],
            )?,
        };
        r.register(Box::new(m.requests.clone()))?;
        r.register(Box::new(m.bytes.clone()))?;
        r.register(Box::new(m.in_flight.clone()))?;
        r.register(Box::new(m.unrouted.clone()))?;
        r.register(Box::new(m.shed.clone()))?;
        r.register(Box::new(m.rejected.clone()))?;
        r.register(Box::new(m.rate_limited.clone()))?;
        r.register(Box::new(m.rate_limit_untracked.clone()))?;
        Ok(m)
    }
}
