//! `[sinks.http]`: settings shared by every `HTTP` subscription (each subscription carries ISC's
//! `httpConfig`: URL, dispatch mode, authentication).

use http::{HeaderValue, Uri};
use serde::Deserialize;

use crate::keypath::ErrorSink;
use crate::model::HttpConfig;
use crate::pipeline::queue::check_queue;
use crate::pipeline::QueueConfig;

#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSinkConfig {
    /// The relay's queue in front of the webhooks (all HTTP subscriptions share it).
    #[serde(default)]
    pub queue: QueueConfig,
    /// Requests in flight at once, across webhooks.
    #[serde(default = "default_in_flight")]
    pub max_in_flight: usize,
    /// One attempt (connect, send, answer); a slower one is retried.
    #[serde(default = "default_request_timeout")]
    pub request_timeout_ms: u64,
    /// Idle keep-alive connections kept per host.
    #[serde(default = "default_idle")]
    pub max_idle_per_host: usize,
    /// How long an idle keep-alive connection is kept.
    #[serde(default = "default_idle_timeout")]
    pub idle_timeout_ms: u64,
    /// The longest `Retry-After` honoured; a longer one is cut to this.
    #[serde(default = "default_max_retry_after")]
    pub max_retry_after_ms: u64,
    /// Where webhooks may connect (`egress`): inward addresses are refused unless listed here.
    #[serde(default)]
    pub egress: super::EgressConfig,
}

impl Default for HttpSinkConfig {
    fn default() -> Self {
        Self {
            queue: QueueConfig::default(),
            max_in_flight: default_in_flight(),
            request_timeout_ms: default_request_timeout(),
            max_idle_per_host: default_idle(),
            idle_timeout_ms: default_idle_timeout(),
            max_retry_after_ms: default_max_retry_after(),
            egress: super::EgressConfig::default(),
        }
    }
}

fn default_in_flight() -> usize {
    256
}
fn default_request_timeout() -> u64 {
    10_000
}
fn default_idle() -> usize {
    32
}
fn default_idle_timeout() -> u64 {
    90_000
}
fn default_max_retry_after() -> u64 {
    60_000
}

impl HttpSinkConfig {
    pub(crate) fn validate(&self, path: &str, errors: &mut dyn ErrorSink) {
        if self.max_in_flight == 0 {
            errors.error(
                format!("{path}.max_in_flight"),
                "must be greater than 0".into(),
            );
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

/// What a subscription's deliveries need: the URL and the `Authorization` header (sensitive), if any.
pub fn target(c: &HttpConfig) -> Result<(Uri, Option<HeaderValue>), String> {
    use base64::Engine as _;
    // Messages show the URL with any password masked: they reach API answers and logs.
    let shown = crate::model::redact_url_password(&c.url);
    let uri: Uri = c
        .url
        .parse()
        .map_err(|e| format!("url: `{shown}` is not a URL: {e}"))?;
    match uri.scheme_str() {
        Some("http") | Some("https") if uri.host().is_some() => {}
        _ => return Err(format!("url: `{shown}` must be an http:// or https:// URL")),
    }
    if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
        // A user name or password in the URL is never sent (the relay builds Authorization itself) and would be
        // shown wherever the URL is: refuse it and point at the field that carries credentials.
        return Err(format!(
            "url: `{shown}` must not contain a user name or password: use httpAuthenticationType BASIC_AUTH with basicAuthConfig"
        ));
    }
    let kind = c.http_authentication_type.as_deref().unwrap_or("NO_AUTH");
    let auth = match kind {
        "NO_AUTH" => None,
        "BASIC_AUTH" => {
            let b = c.basic_auth_config.as_ref().ok_or(
                "basicAuthConfig: required for httpAuthenticationType BASIC_AUTH".to_string(),
            )?;
            let pw = b.password.as_ref().map(|p| p.expose()).unwrap_or("");
            let raw =
                base64::engine::general_purpose::STANDARD.encode(format!("{}:{pw}", b.user_name));
            Some(format!("Basic {raw}"))
        }
        "BEARER_TOKEN" => {
            let t = c
                .bearer_token_auth_config
                .as_ref()
                .and_then(|b| b.bearer_token.as_ref())
                .ok_or(
                    "bearerTokenAuthConfig.bearerToken: required for httpAuthenticationType BEARER_TOKEN"
                        .to_string(),
                )?;
            Some(format!("Bearer {}", t.expose()))
        }
        other => {
            return Err(format!(
                "httpAuthenticationType: `{other}` is not NO_AUTH, BASIC_AUTH or BEARER_TOKEN"
            ))
        }
    };
    let auth = match auth {
        None => None,
        Some(a) => {
            let mut v = HeaderValue::from_str(&a).map_err(|_| {
                "the credentials contain characters not allowed in a header".to_string()
            })?;
            v.set_sensitive(true);
            Some(v)
        }
    };
    Ok((uri, auth))
}

/// Check one subscription's `httpConfig`; `path` is its key path.
pub(crate) fn check_subscription(path: &str, c: &HttpConfig, errors: &mut dyn ErrorSink) {
    match c.http_dispatch_mode.as_str() {
        "SYNC" => {}
        "ASYNC" | "DYNAMIC" => errors.error(
            format!("{path}.httpDispatchMode"),
            format!(
                "{} is for REQUEST_RESPONSE triggers; a FIRE_AND_FORGET delivery is SYNC",
                c.http_dispatch_mode
            ),
        ),
        other => errors.error(
            format!("{path}.httpDispatchMode"),
            format!("`{other}` is not SYNC, ASYNC or DYNAMIC"),
        ),
    }
    if let Err(m) = target(c) {
        let (key, msg) = m.split_once(": ").unwrap_or(("", m.as_str()));
        let p = if key.is_empty() {
            path.to_string()
        } else {
            format!("{path}.{key}")
        };
        errors.error(p, msg.to_string());
    }
}
