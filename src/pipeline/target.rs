//! How a delivery fails ([`SinkError`], one answer for every sink) and what it needs to know of its destination
//! ([`Target`], one variant per sink kind: the wire-format part of a kind, see `sinks::kind`).

/// Why a delivery failed, as every sink reports it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SinkError {
    /// The destination refused the event for good (too large, not authorised, unknown topic...).
    #[error("rejected by the destination: {0}")]
    Rejected(String),
    /// Larger than the destination accepts; sending again cannot help.
    #[error("too large for the destination: {0}")]
    TooLarge(String),
    /// The destination could not be reached or answered with a transient error.
    #[error("destination unavailable: {0}")]
    Unavailable(String),
    /// Retries ran out after `delivery_timeout_ms`.
    #[error("not delivered within delivery_timeout_ms: {0}")]
    TimedOut(String),
    /// The relay stopped before the event could be delivered.
    #[error("relay shut down before delivery")]
    ShutDown,
}

impl SinkError {
    /// Would sending again later possibly succeed?
    pub fn is_retriable(&self) -> bool {
        matches!(self, Self::Unavailable(_) | Self::TimedOut(_))
    }

    /// A bounded label value for metrics.
    /// Every [`SinkError::reason`] (the `reason` label's values).
    pub const REASONS: [&'static str; 5] = [
        "rejected",
        "too_large",
        "unavailable",
        "timed_out",
        "shut_down",
    ];

    pub fn reason(&self) -> &'static str {
        match self {
            Self::Rejected(_) => "rejected",
            Self::TooLarge(_) => "too_large",
            Self::Unavailable(_) => "unavailable",
            Self::TimedOut(_) => "timed_out",
            Self::ShutDown => "shut_down",
        }
    }
}

/// What a subscription's deliveries need to know about their destination, one variant per sink kind.
#[derive(Debug, Clone)]
pub enum Target {
    Kafka {
        topic: String,
        key: crate::model::KafkaKey,
    },
    /// `subject` is the rendered template.
    Nats {
        subject: String,
        jetstream: bool,
        expected_stream: Option<String>,
    },
    EventBridge(EventBridgeTarget),
    Http {
        uri: ::http::Uri,
        /// The `Authorization` header (marked sensitive), if the subscription authenticates.
        auth: Option<::http::HeaderValue>,
    },
    Stdout,
    Discard,
}

/// Where one subscription's entries go: which client (region + endpoint), which API, bus and source.
#[derive(Clone)]
pub struct EventBridgeTarget {
    pub region: String,
    pub endpoint: Option<String>,
    pub client: aws_sdk_eventbridge::Client,
    pub mode: crate::model::EventBridgeMode,
    pub bus: String,
    pub source: String,
}

impl std::fmt::Debug for EventBridgeTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventBridgeTarget")
            .field("region", &self.region)
            .field("endpoint", &self.endpoint)
            .field("mode", &self.mode)
            .field("bus", &self.bus)
            .field("source", &self.source)
            .finish()
    }
}
