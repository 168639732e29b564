//! `[ingress]` and `[admin]`: the two listeners' addresses, limits and TLS, and the credentials ISC sends.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::model::Secret;

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct IngressConfig {
    #[serde(default = "default_ingress_listen")]
    pub listen: SocketAddr,
    #[serde(default = "default_max_body")]
    pub max_body_bytes: u64,
    /// The longest a client may take to send a request body (408 after it; slow senders hold no capacity).
    #[serde(default = "default_body_timeout")]
    pub body_read_timeout_ms: u64,
    /// Required: credentials ISC sends, or `none = true` written out.
    #[serde(default)]
    pub auth: Option<AuthConfig>,
    #[serde(default)]
    pub limits: ListenerLimits,
    /// Serve HTTPS (HTTP/1.1 and HTTP/2 by ALPN) instead of plain HTTP.
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    /// Per-source-IP and per-credential request limits (429 + `Retry-After`); off unless a limit is set.
    #[serde(default)]
    pub rate_limit: IngressRateLimitConfig,
}

impl Default for IngressConfig {
    fn default() -> Self {
        Self {
            listen: default_ingress_listen(),
            max_body_bytes: default_max_body(),
            body_read_timeout_ms: default_body_timeout(),
            auth: None,
            limits: ListenerLimits::default(),
            tls: None,
            rate_limit: IngressRateLimitConfig::default(),
        }
    }
}

/// Connection limits and timeouts of one listener (`[ingress.limits]`, `[admin.limits]`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerLimits {
    /// Open connections at most; one more is answered 503 and closed (plain HTTP) or closed (TLS).
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// HTTP/2 streams (requests) open at once on one connection.
    #[serde(default = "default_max_concurrent_streams")]
    pub max_concurrent_streams: u32,
    /// Request line + headers at most (HTTP/1.1: 431 beyond it; HTTP/2: the header list size). At least 8192.
    #[serde(default = "default_max_header_bytes")]
    pub max_header_bytes: usize,
    /// The longest a client may take to send the TLS handshake, or a request's headers (slowloris).
    #[serde(default = "default_header_read_timeout")]
    pub header_read_timeout_ms: u64,
    /// A keep-alive connection with no request in progress for this long is closed.
    #[serde(default = "default_idle_timeout")]
    pub idle_timeout_ms: u64,
    /// The longest one request may take from its headers to its answer (503 after it).
    #[serde(default = "default_request_timeout")]
    pub request_timeout_ms: u64,
}

impl Default for ListenerLimits {
    fn default() -> Self {
        Self {
            max_connections: default_max_connections(),
            max_header_bytes: default_max_header_bytes(),
            max_concurrent_streams: default_max_concurrent_streams(),
            header_read_timeout_ms: default_header_read_timeout(),
            idle_timeout_ms: default_idle_timeout(),
            request_timeout_ms: default_request_timeout(),
        }
    }
}

/// `[ingress.rate_limit]`: fixed windows of `window_ms`; a limit left out is off (both are, by default).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct IngressRateLimitConfig {
    /// Requests per source IP (the TCP peer address) per window, counted before authentication.
    #[serde(default)]
    pub per_ip_requests: Option<u32>,
    /// Requests per credential (Basic username, or bearer token) per window, counted after authentication.
    #[serde(default)]
    pub per_credential_requests: Option<u32>,
    #[serde(default = "default_ingress_rate_window")]
    pub window_ms: u64,
    /// Most source IPs tracked at once; beyond it new sources are let through uncounted (and counted in
    /// `trigger_relay_ingress_rate_limit_untracked_requests_total`).
    #[serde(default = "default_max_tracked_keys")]
    pub max_tracked_keys: usize,
    /// Proxies (CIDRs) whose `X-Forwarded-For` is believed: from a peer in this list, the source is the
    /// right-most address in the header that is not itself a trusted proxy. Empty: the TCP peer, always.
    #[serde(default)]
    pub trusted_proxies: Vec<ipnet::IpNet>,
}

impl Default for IngressRateLimitConfig {
    fn default() -> Self {
        Self {
            per_ip_requests: None,
            per_credential_requests: None,
            window_ms: default_ingress_rate_window(),
            max_tracked_keys: default_max_tracked_keys(),
            trusted_proxies: Vec::new(),
        }
    }
}

fn default_max_connections() -> usize {
    4096
}
fn default_max_concurrent_streams() -> u32 {
    100
}
fn default_max_header_bytes() -> usize {
    32 * 1024
}
fn default_header_read_timeout() -> u64 {
    10_000
}
fn default_idle_timeout() -> u64 {
    60_000
}
fn default_request_timeout() -> u64 {
    30_000
}

/// PEM files for a listener's TLS (`[ingress.tls]`, `[admin.tls]`), reloaded when they change or on SIGHUP.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// Certificate chain, leaf first.
    pub cert_file: PathBuf,
    /// Private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
    /// Require a client certificate signed by one of these CAs (mutual TLS).
    #[serde(default)]
    pub client_ca_file: Option<PathBuf>,
    /// How often the files are checked for new contents; 0 = only on SIGHUP.
    #[serde(default = "default_tls_watch")]
    pub watch_interval_ms: u64,
}

fn default_tls_watch() -> u64 {
    10_000
}
fn default_ingress_rate_window() -> u64 {
    1_000
}
fn default_max_tracked_keys() -> usize {
    100_000
}

/// Upper bounds of `[ingress.rate_limit]`: an hour-long window, ten million tracked sources (~1 GB).
pub const MAX_RATE_WINDOW_MS: u64 = 3_600_000;
pub const MAX_TRACKED_KEYS: usize = 10_000_000;

fn default_ingress_listen() -> SocketAddr {
    ([0, 0, 0, 0], 8080).into()
}
fn default_max_body() -> u64 {
    1024 * 1024
}
fn default_body_timeout() -> u64 {
    10_000
}

/// What the ingress accepts in `Authorization`, as an ISC subscription's `httpConfig` sends it. Several
/// credentials may be listed at once, so a secret can be rotated without downtime.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// Accept requests without credentials. Must be written out; meant for development.
    #[serde(default)]
    pub none: bool,
    #[serde(default)]
    pub basic: Vec<BasicCredential>,
    #[serde(default)]
    pub bearer_tokens: Vec<Secret>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BasicCredential {
    pub username: String,
    pub password: Secret,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    #[serde(default = "default_admin_listen")]
    pub listen: SocketAddr,
    #[serde(default)]
    pub limits: ListenerLimits,
    /// Serve HTTPS; with `client_ca_file`, only clients with a certificate from that CA get in.
    #[serde(default)]
    pub tls: Option<TlsConfig>,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            listen: default_admin_listen(),
            limits: ListenerLimits::default(),
            tls: None,
        }
    }
}

fn default_admin_listen() -> SocketAddr {
    ([0, 0, 0, 0], 9090).into()
}
