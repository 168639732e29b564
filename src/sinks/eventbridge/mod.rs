//! The EventBridge sink (`EVENTBRIDGE` subscriptions, ISC's `eventBridgeConfig`): entries shaped as ISC's
//! native integration shapes them (`DetailType` = trigger id, `Detail` = the payload with `_metadata`,
//! `Source` configurable), so rules written for ISC's partner events keep matching.
//!
//! `mode = "putEvents"` (default) sends to the customer's own bus, at most 10 entries per call;
//! `"putPartnerEvents"` is for registered SaaS partners (`aws.partner/…` sources), at most 20. Calls are cut
//! by count and by size (AWS counts Source + DetailType + Detail + Resources; `max_entry_bytes`). An entry
//! too large for any call fails as `too_large` and goes to the dead letter. When a call reports
//! `FailedEntryCount > 0`, only the failed entries are sent again, with backoff (longer when throttled),
//! until `delivery_timeout_ms`; entries failing with a non-retriable code are rejected (dead letter).
//! The SDK's own retries are off, so every attempt is counted here. Credentials come from the standard AWS
//! chain (environment, profile, web identity / IRSA); the region from the subscription.

mod config;
mod kind;
mod metrics;
mod sink;

pub(crate) use kind::Kind;

pub use crate::pipeline::EventBridgeTarget;
pub(crate) use config::check_subscription;
pub use config::{EventBridgeSinkConfig, DEFAULT_MAX_ENTRY_BYTES};
pub use metrics::EventBridgeMetrics;
pub use sink::EventBridgeSink;

/// The AWS SDK's HTTP client as the relay builds it: rustls on ring (the crate's only TLS stack; the SDK's default
/// client would bring aws-lc), the standard trust roots, plain HTTP where the URL says so (moto, LocalStack).
/// With `egress`, every connection's name goes through the egress policy's resolver.
pub fn http_client(
    egress: Option<crate::sinks::http::EgressResolver>,
) -> aws_smithy_runtime_api::client::http::SharedHttpClient {
    use aws_smithy_http_client::tls;
    let b = aws_smithy_http_client::Builder::new().tls_provider(tls::Provider::Rustls(
        tls::rustls_provider::CryptoMode::Ring,
    ));
    match egress {
        Some(resolver) => b.build_with_resolver(resolver),
        None => b.build_https(),
    }
}

/// An EventBridge client for a region and an optional endpoint (moto, LocalStack), credentials from the
/// standard chain. With `egress` (an endpoint an API caller set), the client connects only where the egress
/// policy allows: names through [`EgressResolver`](crate::sinks::http::EgressResolver) on every connection, an
/// IP literal checked here (refused: `Err` with the policy's reason). The credential providers (STS for web
/// identity, SSO, IMDS) use the plain client: they go to AWS, never to a caller's URL.
pub async fn client(
    region: &str,
    endpoint_url: Option<&str>,
    egress: Option<&std::sync::Arc<crate::sinks::http::EgressPolicy>>,
) -> Result<aws_sdk_eventbridge::Client, String> {
    let shared = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(region.to_string()))
        .http_client(http_client(None))
        .load()
        .await;
    let mut b = aws_sdk_eventbridge::config::Builder::from(&shared)
        .retry_config(aws_config::retry::RetryConfig::disabled());
    if let Some(url) = endpoint_url {
        b = b.endpoint_url(url);
        if let Some(policy) = egress {
            let port = policy.check_url(url)?;
            b = b.http_client(http_client(Some(crate::sinks::http::EgressResolver {
                policy: policy.clone(),
                port,
            })));
        }
    }
    Ok(aws_sdk_eventbridge::Client::from_conf(b.build()))
}
