//! `[sinks.eventbridge]`: settings shared by every `EVENTBRIDGE` subscription (the subscriptions themselves
//! carry ISC's `eventBridgeConfig`: account, region, plus bus, source, endpoint and mode).

use serde::Deserialize;

use crate::keypath::ErrorSink;
use crate::model::{EventBridgeConfig, EventBridgeMode};
use crate::pipeline::queue::check_queue;
use crate::pipeline::QueueConfig;

/// AWS's limit on one entry (Source + DetailType + Detail + Resources) and on one PutEvents request: 1 MiB
/// since January 2026 (256 KiB before; set `max_entry_bytes = 262144` where that older quota applies).
pub const DEFAULT_MAX_ENTRY_BYTES: usize = 1_048_576;

#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct EventBridgeSinkConfig {
    /// The relay's queue in front of EventBridge (all EVENTBRIDGE subscriptions share it).
    #[serde(default)]
    pub queue: QueueConfig,
    /// Largest entry, and largest sum of entries in one call. A larger event goes to the dead letter.
    #[serde(default = "default_max_entry")]
    pub max_entry_bytes: usize,
    /// Events sent and not yet acknowledged, across concurrent calls.
    #[serde(default = "default_in_flight")]
    pub max_in_flight: usize,
    /// Wait up to this long for more events to fill a call (0: send at once; under load calls fill anyway).
    #[serde(default)]
    pub linger_ms: u64,
    /// One PutEvents call (connect + answer); a call that takes longer is retried.
    #[serde(default = "default_request_timeout")]
    pub request_timeout_ms: u64,
}

impl Default for EventBridgeSinkConfig {
    fn default() -> Self {
        Self {
            queue: QueueConfig::default(),
            max_entry_bytes: default_max_entry(),
            max_in_flight: default_in_flight(),
            linger_ms: 0,
            request_timeout_ms: default_request_timeout(),
        }
    }
}

fn default_max_entry() -> usize {
    DEFAULT_MAX_ENTRY_BYTES
}
fn default_in_flight() -> usize {
    1_000
}
fn default_request_timeout() -> u64 {
    10_000
}

impl EventBridgeSinkConfig {
    pub(crate) fn validate(&self, path: &str, errors: &mut dyn ErrorSink) {
        if !(1024..=DEFAULT_MAX_ENTRY_BYTES).contains(&self.max_entry_bytes) {
            errors.error(
                format!("{path}.max_entry_bytes"),
                format!("must be between 1024 and {DEFAULT_MAX_ENTRY_BYTES} (AWS's quota)"),
            );
        }
        if self.max_in_flight == 0 {
            errors.error(
                format!("{path}.max_in_flight"),
                "must be greater than 0".into(),
            );
        }
        if self.linger_ms > 10_000 {
            errors.error(format!("{path}.linger_ms"), "must be at most 10000".into());
        }
        if self.request_timeout_ms == 0 {
            errors.error(
                format!("{path}.request_timeout_ms"),
                "must be greater than 0".into(),
            );
        }
        check_queue(&format!("{path}.queue"), &self.queue, errors);
    }
}

/// Check one subscription's `eventBridgeConfig`; `path` is its key path.
pub(crate) fn check_subscription(path: &str, c: &EventBridgeConfig, errors: &mut dyn ErrorSink) {
    if c.aws_account.len() != 12 || !c.aws_account.bytes().all(|b| b.is_ascii_digit()) {
        errors.error(
            format!("{path}.awsAccount"),
            "must be a 12-digit AWS account id".into(),
        );
    }
    let region_ok = !c.aws_region.is_empty()
        && c.aws_region
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !region_ok {
        errors.error(
            format!("{path}.awsRegion"),
            format!("`{}` is not an AWS region (e.g. us-east-1)", c.aws_region),
        );
    }
    if c.source.is_empty() || c.source.len() > 256 {
        errors.error(
            format!("{path}.source"),
            "must be 1 to 256 characters".into(),
        );
    }
    match c.mode {
        EventBridgeMode::PutEvents => {
            if c.source.starts_with("aws.") {
                errors.error(
                    format!("{path}.source"),
                    "sources starting with `aws.` are AWS's own; PutEvents refuses them (use mode = \"putPartnerEvents\" for a partner source)".into(),
                );
            }
            if c.event_bus_name.is_empty() {
                errors.error(
                    format!("{path}.eventBusName"),
                    "must not be empty (\"default\" is the account's default bus)".into(),
                );
            }
        }
        EventBridgeMode::PutPartnerEvents => {
            if !c.source.starts_with("aws.partner/") {
                errors.error(
                    format!("{path}.source"),
                    "a partner event source is named `aws.partner/…`".into(),
                );
            }
        }
    }
    if let Some(u) = &c.endpoint_url {
        if !(u.starts_with("http://") || u.starts_with("https://")) {
            errors.error(
                format!("{path}.endpointUrl"),
                format!("`{u}` is not an http(s) URL"),
            );
        }
    }
}
