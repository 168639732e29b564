//! The relay's configuration: one TOML file, strictly parsed, validated as a whole.
//!
//! Why strict: a typo in a gateway's config (`ack_timout_ms`) must not silently fall back to a default. Every
//! table denies unknown keys, sizes and durations carry their unit in the key (`_bytes`, `_ms`), and
//! [`Config::from_toml`] reports *every* semantic error with its key path, which `trigger-relay check-config`
//! prints. Secrets come from the environment through `${VAR}` interpolation in string values.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::catalog::{Catalog, TriggerType};
use crate::model::{AckMode, Secret, Subscription, SubscriptionType};

/// The embedded development default: a `STDOUT` subscription, no broker needed.
pub const DEV_CONFIG: &str = include_str!("../config/dev.toml");

/// ISC gives a FIRE_AND_FORGET subscriber 10 s to answer.
pub const ISC_RESPONSE_LIMIT_MS: u64 = 10_000;

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub ingress: IngressConfig,
    #[serde(default)]
    pub admin: AdminConfig,
    #[serde(default)]
    pub delivery: DeliveryConfig,
    #[serde(default)]
    pub log: LogConfig,
    #[serde(default)]
    pub sinks: SinksConfig,
    #[serde(default)]
    pub catalog: CatalogConfig,
    /// The Triggers management API on the admin listener (off unless `[api]` enables it).
    #[serde(default)]
    pub api: ApiConfig,
    #[serde(default)]
    pub subscriptions: Vec<Subscription>,
    /// Defaults of CloudEvents envelopes (`[cloudevents]`).
    #[serde(default)]
    pub cloudevents: crate::envelope::CloudEventsDefaults,
    /// OTLP span export (`[tracing]`, off unless `otlp_endpoint` is set).
    #[serde(default)]
    pub tracing: crate::spans::TracingConfig,
    /// Which environment variables `${VAR}` may read (read before interpolation, never interpolated itself).
    #[serde(default)]
    pub env: EnvConfig,
    /// The tenant the `isc` commands manage (`[isc]`, only read by them).
    #[serde(default)]
    pub isc: Option<crate::isc::IscConfig>,
}

/// `[env]`: the allow-list of `${VAR}` interpolation. A config can only read variables meant for it, so a
/// config file from elsewhere cannot pull, say, `${DATABASE_PASSWORD}` into a header or a URL.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EnvConfig {
    /// Variables whose name starts with one of these may be read. Written out, it replaces the default.
    #[serde(default = "default_env_prefixes")]
    pub allow_prefixes: Vec<String>,
    /// Further variables that may be read, by exact name.
    #[serde(default)]
    pub allow: Vec<String>,
}

impl Default for EnvConfig {
    fn default() -> Self {
        Self {
            allow_prefixes: default_env_prefixes(),
            allow: Vec::new(),
        }
    }
}

/// The default `[env] allow_prefixes`.
pub const DEFAULT_ENV_PREFIXES: &[&str] = &["TRIGGER_RELAY_", "ISC_", "KAFKA_", "NATS_", "AWS_"];

fn default_env_prefixes() -> Vec<String> {
    DEFAULT_ENV_PREFIXES.iter().map(|p| p.to_string()).collect()
}

impl EnvConfig {
    pub fn allows(&self, name: &str) -> bool {
        self.allow.iter().any(|a| a == name)
            || self
                .allow_prefixes
                .iter()
                .any(|p| name.starts_with(p.as_str()))
    }
}

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

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DeliveryConfig {
    /// Default ack mode for subscriptions that do not set `ackMode`.
    #[serde(default = "default_ack")]
    pub ack: AckMode,
    /// `delivered` mode: how long the ingress waits for the brokers before answering 503.
    #[serde(default = "default_ack_timeout")]
    pub ack_timeout_ms: u64,
    /// How long a sink keeps retrying one event before it is dropped (and counted).
    #[serde(default = "default_delivery_timeout")]
    pub delivery_timeout_ms: u64,
    /// `Retry-After` seconds on 503 answers.
    #[serde(default = "default_retry_after")]
    pub retry_after_s: u64,
    /// On SIGTERM: how long to drain queues and flush producers before exiting anyway.
    #[serde(default = "default_grace")]
    pub shutdown_grace_ms: u64,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        Self {
            ack: default_ack(),
            ack_timeout_ms: default_ack_timeout(),
            delivery_timeout_ms: default_delivery_timeout(),
            retry_after_s: default_retry_after(),
            shutdown_grace_ms: default_grace(),
        }
    }
}

fn default_ack() -> AckMode {
    AckMode::Accepted
}
fn default_ack_timeout() -> u64 {
    5_000
}
fn default_delivery_timeout() -> u64 {
    300_000
}
fn default_retry_after() -> u64 {
    1
}
fn default_grace() -> u64 {
    20_000
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Pretty,
    Json,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    #[serde(default)]
    pub format: LogFormat,
    /// A `tracing` filter (`info`, `trigger_relay=debug`); `RUST_LOG` wins when set.
    #[serde(default = "default_level")]
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::default(),
            level: default_level(),
        }
    }
}

fn default_level() -> String {
    "info".into()
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SinksConfig {
    /// Kafka clusters by name; subscriptions name one in `kafkaConfig.cluster`.
    #[serde(default)]
    pub kafka: BTreeMap<String, crate::sinks::kafka::KafkaClusterConfig>,
    /// NATS connections by name; subscriptions name one in `natsConfig.connection`.
    #[serde(default)]
    pub nats: BTreeMap<String, crate::sinks::nats::NatsConnectionConfig>,
    /// Settings of the sink every `EVENTBRIDGE` subscription goes through.
    #[serde(default)]
    pub eventbridge: crate::sinks::eventbridge::EventBridgeSinkConfig,
    /// Settings of the sink every `HTTP` subscription goes through.
    #[serde(default)]
    pub http: crate::sinks::http::HttpSinkConfig,
    /// The queue of the `DISCARD` sink.
    #[serde(default)]
    pub discard: crate::sinks::stdout::StdoutConfig,
    /// The queue of the `STDOUT` sink.
    #[serde(default)]
    pub stdout: crate::sinks::stdout::StdoutConfig,
}

/// Queue capacity of one sink, in events and in bytes; whichever is reached first sheds load with 503.
#[derive(Debug, Clone, Copy, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct QueueConfig {
    #[serde(default = "default_queue_events")]
    pub max_events: usize,
    #[serde(default = "default_queue_bytes")]
    pub max_bytes: u64,
}

impl Default for QueueConfig {
    fn default() -> Self {
        Self {
            max_events: default_queue_events(),
            max_bytes: default_queue_bytes(),
        }
    }
}

fn default_queue_events() -> usize {
    10_000
}
fn default_queue_bytes() -> u64 {
    64 * 1024 * 1024
}

/// `[api]`: ISC's Triggers API served on the admin listener, with its own clients and a durable store.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ApiConfig {
    #[serde(default)]
    pub enabled: bool,
    /// Shorthand for `[api.store] kind = "file"` with this path.
    #[serde(default)]
    pub store_path: Option<std::path::PathBuf>,
    /// Where subscriptions created through the API are kept (`api::store`).
    #[serde(default)]
    pub store: Option<ApiStoreConfig>,
    /// Seals webhook credentials in the store (AES-256-GCM; at least 32 bytes, e.g. `${STORE_KEY}`). Required
    /// with a shared store.
    #[serde(default)]
    pub store_key: Option<crate::model::Secret>,
    /// Earlier store keys: they still open what they sealed (rotation).
    #[serde(default)]
    pub store_old_keys: Vec<crate::model::Secret>,
    /// Signs the access tokens of `POST /oauth/token` (HS256 JWTs; at least 32 bytes). Every replica must have
    /// the same key; required with a shared store. Without it a single process signs with a random key.
    #[serde(default)]
    pub token_signing_key: Option<crate::model::Secret>,
    /// Earlier signing keys: tokens they signed are accepted until they expire (rotation).
    #[serde(default)]
    pub token_verification_keys: Vec<crate::model::Secret>,
    /// OAuth clients (`POST /oauth/token`, client credentials).
    #[serde(default)]
    pub clients: Vec<ApiClientConfig>,
    /// Static bearer tokens, each with its scopes.
    #[serde(default)]
    pub tokens: Vec<ApiTokenConfig>,
    /// Requests per client per window (ISC: 100 per 10 s); more get 429.
    #[serde(default = "default_rate_requests")]
    pub rate_limit_requests: u32,
    #[serde(default = "default_rate_window")]
    pub rate_limit_window_ms: u64,
    /// Lifetime of an access token from `/oauth/token` (at most 24 h).
    #[serde(default = "default_token_ttl")]
    pub token_ttl_s: u64,
    /// Failed authentications (wrong client secret, unknown or expired bearer token) allowed per source IP per
    /// rate-limit window; beyond it that source gets 429 until the window ends.
    #[serde(default = "default_auth_failures")]
    pub auth_failure_limit: u32,
    /// Whether `POST /trigger-invocations/test` may send test events to subscriptions of the config file (by
    /// default only to subscriptions the API created).
    #[serde(default)]
    pub test_config_subscriptions: bool,
    /// Whether API callers may set `eventBridgeConfig.endpointUrl` (by default only the config file may: it
    /// sends signed AWS requests to any URL).
    #[serde(default)]
    pub allow_endpoint_url: bool,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            store_path: None,
            store: None,
            store_key: None,
            store_old_keys: Vec::new(),
            token_signing_key: None,
            token_verification_keys: Vec::new(),
            clients: Vec::new(),
            tokens: Vec::new(),
            rate_limit_requests: default_rate_requests(),
            rate_limit_window_ms: default_rate_window(),
            token_ttl_s: default_token_ttl(),
            auth_failure_limit: default_auth_failures(),
            test_config_subscriptions: false,
            allow_endpoint_url: false,
        }
    }
}

fn default_rate_requests() -> u32 {
    100
}
fn default_rate_window() -> u64 {
    10_000
}
fn default_token_ttl() -> u64 {
    3_600
}
fn default_auth_failures() -> u32 {
    20
}
/// `[api.store]`: where the API's subscriptions live.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum ApiStoreConfig {
    /// One JSON file for a single process (locked; a second process refuses to start).
    File { path: std::path::PathBuf },
    /// A JetStream Key-Value bucket shared by every replica.
    Nats(NatsStoreConfig),
    /// A single-partition compacted topic every replica reads from the beginning.
    Kafka(KafkaStoreConfig),
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaStoreConfig {
    /// A cluster of `[sinks.kafka.<name>]` (its servers and options; the store has its own clients).
    pub cluster: String,
    #[serde(default = "default_store_topic")]
    pub topic: String,
    /// The topic of invocation statuses every replica shares (48 h, at most `status_max_bytes`).
    #[serde(default = "default_status_bucket")]
    pub status_topic: String,
    #[serde(default = "default_status_max_bytes")]
    pub status_max_bytes: i64,
    /// Used when the relay creates the topics.
    #[serde(default = "default_replication")]
    pub replication_factor: i32,
    /// Deadline of each store operation; a write that misses it answers 503.
    #[serde(default = "default_store_timeout")]
    pub request_timeout_ms: u64,
}

fn default_store_topic() -> String {
    "trigger-relay-subscriptions".into()
}
fn default_replication() -> i32 {
    1
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NatsStoreConfig {
    /// A connection of `[sinks.nats.<name>]` (its servers and credentials; the store opens its own client).
    pub connection: String,
    #[serde(default = "default_store_bucket")]
    pub bucket: String,
    /// Copies of the bucket in a JetStream cluster (1 to 5), used when the relay creates it.
    #[serde(default = "default_store_replicas")]
    pub replicas: usize,
    /// `file` or `memory`, used when the relay creates the bucket.
    #[serde(default)]
    pub storage: KvStorage,
    /// Revisions kept per key, used when the relay creates the bucket (1 to 64).
    #[serde(default = "default_store_history")]
    pub history: i64,
    /// Deadline of each store operation; a write that misses it answers 503.
    #[serde(default = "default_store_timeout")]
    pub request_timeout_ms: u64,
    /// The bucket of invocation statuses every replica shares (48 h, at most `status_max_bytes`).
    #[serde(default = "default_status_bucket")]
    pub status_bucket: String,
    #[serde(default = "default_status_max_bytes")]
    pub status_max_bytes: i64,
}

fn default_status_bucket() -> String {
    "trigger-relay-statuses".into()
}
fn default_status_max_bytes() -> i64 {
    64 * 1024 * 1024
}

#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum KvStorage {
    #[default]
    File,
    Memory,
}

impl From<KvStorage> for async_nats::jetstream::stream::StorageType {
    fn from(s: KvStorage) -> Self {
        match s {
            KvStorage::File => Self::File,
            KvStorage::Memory => Self::Memory,
        }
    }
}

fn default_store_bucket() -> String {
    "trigger-relay-subscriptions".into()
}
fn default_store_replicas() -> usize {
    1
}
fn default_store_history() -> i64 {
    5
}
fn default_store_timeout() -> u64 {
    2_000
}

impl ApiConfig {
    /// The store, `store_path` read as a `file` store.
    pub fn store_config(&self) -> Option<ApiStoreConfig> {
        self.store.clone().or_else(|| {
            self.store_path
                .clone()
                .map(|path| ApiStoreConfig::File { path })
        })
    }
}

/// Longest accepted `api.token_ttl_s` (ISC's own tokens last 12 h).
pub const MAX_TOKEN_TTL_S: u64 = 24 * 3_600;
/// Shortest static bearer token accepted (ingress and API): 32 bytes, e.g. `openssl rand -hex 32` (64).
pub const MIN_TOKEN_LEN: usize = 32;

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ApiClientConfig {
    pub client_id: String,
    /// SHA-256 of the client secret, hex (`printf %s "$SECRET" | sha256sum`): the secret itself is never stored.
    pub client_secret_sha256: String,
    pub scopes: Vec<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ApiTokenConfig {
    /// A name for logs and rate limits.
    pub name: String,
    pub token: Secret,
    pub scopes: Vec<String>,
}

/// The scopes the API knows (ISC's names); `sp:scopes:all` grants every one.
pub const API_SCOPES: &[&str] = &[
    "sp:trigger-service-subscriptions:read",
    "sp:trigger-service-subscriptions:manage",
    "sp:trigger-service-invocation-status:read",
    "sp:trigger-service-invocation-status:manage",
    "sp:scopes:all",
];

/// ISC's limit of subscriptions per FIRE_AND_FORGET trigger.
pub const MAX_SUBSCRIPTIONS_PER_TRIGGER: usize = 50;

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogConfig {
    /// Triggers the built-in catalog does not know yet (tenants get new triggers first).
    #[serde(default)]
    pub triggers: Vec<CatalogEntryConfig>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CatalogEntryConfig {
    pub id: String,
    pub name: String,
    #[serde(rename = "type")]
    pub kind: TriggerType,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub example_input: Option<serde_json::Value>,
}

/// Every problem found in a config, each with its key path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// e.g. `subscriptions[1].kafkaConfig.cluster`
    pub path: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

struct Errors(Vec<ConfigError>);

impl Errors {
    fn push(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(ConfigError {
            path: path.into(),
            message: message.into(),
        });
    }
}

fn validate_listener(name: &str, l: &ListenerLimits, tls: Option<&TlsConfig>, errors: &mut Errors) {
    if l.max_connections == 0 || l.max_connections > 1_000_000 {
        errors.push(
            format!("{name}.limits.max_connections"),
            "must be between 1 and 1000000",
        );
    }
    if l.max_concurrent_streams == 0 || l.max_concurrent_streams > 1000 {
        errors.push(
            format!("{name}.limits.max_concurrent_streams"),
            "must be between 1 and 1000",
        );
    }
    // hyper's HTTP/1.1 read buffer cannot be smaller than 8 KiB.
    if !(8192..=1024 * 1024).contains(&l.max_header_bytes) {
        errors.push(
            format!("{name}.limits.max_header_bytes"),
            "must be between 8192 and 1048576",
        );
    }
    for (key, v) in [
        ("header_read_timeout_ms", l.header_read_timeout_ms),
        ("idle_timeout_ms", l.idle_timeout_ms),
        ("request_timeout_ms", l.request_timeout_ms),
    ] {
        if v == 0 {
            errors.push(format!("{name}.limits.{key}"), "must be greater than 0");
        }
    }
    if let Some(t) = tls {
        for (key, p) in [("cert_file", &t.cert_file), ("key_file", &t.key_file)] {
            if p.as_os_str().is_empty() {
                errors.push(format!("{name}.tls.{key}"), "must name a PEM file");
            }
        }
    }
}

impl Config {
    /// Parse, interpolate `${VAR}` from the environment, and validate. All semantic errors are reported
    /// together; a structural error (unknown key, wrong type) is reported with its path first, since nothing
    /// after it can be read reliably.
    pub fn from_toml(text: &str) -> Result<Config, ConfigErrors> {
        Self::from_toml_with_env(text, |k| std::env::var(k).ok())
    }

    /// As [`Config::from_toml`], reading variables through `env` (tests pass a map).
    pub fn from_toml_with_env(
        text: &str,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigErrors> {
        let one = |path: String, message: String| ConfigErrors(vec![ConfigError { path, message }]);
        let mut value: toml::Value = toml::from_str(text).map_err(|e| {
            let msg = e.message().to_string();
            let at = e
                .span()
                .map(|s| {
                    let line = text[..s.start.min(text.len())].lines().count().max(1);
                    format!("line {line}")
                })
                .unwrap_or_default();
            one(at, format!("invalid TOML: {msg}"))
        })?;
        let mut errors = Errors(Vec::new());
        let allow = env_allow_list(&value, &mut errors);
        let env = |name: &str| -> Result<String, String> {
            if !allow.allows(name) {
                return Err(format!(
                    "environment variable `{name}` is not in the allow-list: add it to `[env] allow`, or give it \
                     a prefix from `[env] allow_prefixes` ({})",
                    allow.allow_prefixes.join(", ")
                ));
            }
            env(name).ok_or_else(|| format!("environment variable `{name}` is not set"))
        };
        if let toml::Value::Table(t) = &mut value {
            for (k, item) in t.iter_mut().filter(|(k, _)| k.as_str() != "env") {
                interpolate(item, &mut k.clone(), &env, &mut errors);
            }
        }
        if !errors.0.is_empty() {
            return Err(ConfigErrors(errors.0));
        }
        let config: Config = serde_path_to_error::deserialize(value).map_err(|e| {
            let path = e.path().to_string();
            let path = if path == "." { String::new() } else { path };
            // toml appends "in `table`" on a second line; the path already says where.
            let msg = e.into_inner().to_string();
            one(
                path,
                msg.lines().next().unwrap_or_default().trim().to_string(),
            )
        })?;
        config.validate()?;
        Ok(config)
    }

    /// The catalog this config describes: built-in triggers plus `[[catalog.triggers]]`.
    pub fn catalog(&self) -> Result<Catalog, ConfigErrors> {
        let mut errors = Errors(Vec::new());
        let catalog = self.catalog_checked(&mut errors);
        if errors.0.is_empty() {
            Ok(catalog)
        } else {
            Err(ConfigErrors(errors.0))
        }
    }

    fn catalog_checked(&self, errors: &mut Errors) -> Catalog {
        let mut catalog = Catalog::builtin();
        for (i, t) in self.catalog.triggers.iter().enumerate() {
            let path = format!("catalog.triggers[{i}]");
            if let Err(msg) = catalog.extend(t) {
                errors.push(format!("{path}.id"), msg);
            }
        }
        catalog
    }

    fn validate(&self) -> Result<(), ConfigErrors> {
        let mut errors = Errors(Vec::new());
        if let Some(m) = self
            .cloudevents
            .source
            .as_deref()
            .and_then(crate::envelope::check_source)
        {
            errors.push("cloudevents.source", m);
        }
        for (key, m) in self.tracing.check() {
            errors.push(format!("tracing.{key}"), m);
        }
        if let Some(isc) = &self.isc {
            for (key, m) in isc.check(self.ingress.auth.as_ref()) {
                errors.push(format!("isc.{key}"), m);
            }
        }
        let d = &self.delivery;
        if d.ack_timeout_ms == 0 || d.ack_timeout_ms >= ISC_RESPONSE_LIMIT_MS {
            errors.push(
                "delivery.ack_timeout_ms",
                format!(
                    "must be between 1 and {} (ISC stops waiting for an answer after 10 s)",
                    ISC_RESPONSE_LIMIT_MS - 1
                ),
            );
        }
        if d.delivery_timeout_ms < d.ack_timeout_ms {
            errors.push(
                "delivery.delivery_timeout_ms",
                "must be at least delivery.ack_timeout_ms",
            );
        }
        if d.shutdown_grace_ms == 0 {
            errors.push("delivery.shutdown_grace_ms", "must be greater than 0");
        }
        if self.ingress.max_body_bytes == 0 || self.ingress.max_body_bytes > 64 * 1024 * 1024 {
            errors.push(
                "ingress.max_body_bytes",
                "must be between 1 and 67108864 (64 MiB)",
            );
        }
        if self.ingress.body_read_timeout_ms == 0 {
            errors.push("ingress.body_read_timeout_ms", "must be greater than 0");
        }
        for (name, limits, tls) in [
            ("ingress", &self.ingress.limits, &self.ingress.tls),
            ("admin", &self.admin.limits, &self.admin.tls),
        ] {
            validate_listener(name, limits, tls.as_ref(), &mut errors);
        }
        let needed = self
            .ingress
            .body_read_timeout_ms
            .saturating_add(d.ack_timeout_ms);
        if self.ingress.limits.request_timeout_ms < needed {
            errors.push(
                "ingress.limits.request_timeout_ms",
                format!("must be at least ingress.body_read_timeout_ms + delivery.ack_timeout_ms ({needed})"),
            );
        }
        let rl = &self.ingress.rate_limit;
        if rl.per_ip_requests == Some(0) {
            errors.push(
                "ingress.rate_limit.per_ip_requests",
                "must be greater than 0 (leave it out to turn the limit off)",
            );
        }
        if rl.per_credential_requests == Some(0) {
            errors.push(
                "ingress.rate_limit.per_credential_requests",
                "must be greater than 0 (leave it out to turn the limit off)",
            );
        } else if rl.per_credential_requests.is_some()
            && self.ingress.auth.as_ref().is_some_and(|a| a.none)
        {
            errors.push(
                "ingress.rate_limit.per_credential_requests",
                "needs credentials: with `ingress.auth.none = true` there is none to count requests by",
            );
        }
        if rl.window_ms == 0 || rl.window_ms > MAX_RATE_WINDOW_MS {
            errors.push(
                "ingress.rate_limit.window_ms",
                format!("must be between 1 and {MAX_RATE_WINDOW_MS} (an hour)"),
            );
        }
        if rl.max_tracked_keys == 0 || rl.max_tracked_keys > MAX_TRACKED_KEYS {
            errors.push(
                "ingress.rate_limit.max_tracked_keys",
                format!("must be between 1 and {MAX_TRACKED_KEYS}"),
            );
        }
        if self.ingress.listen == self.admin.listen && self.ingress.listen.port() != 0 {
            errors.push("admin.listen", "must differ from ingress.listen");
        }
        match &self.ingress.auth {
            None => errors.push(
                "ingress.auth",
                "missing: list the credentials ISC sends (`basic = [{ username, password }]`, \
                 `bearer_tokens = [...]`), or write `none = true` to accept unauthenticated requests",
            ),
            Some(a) => {
                let has_creds = !a.basic.is_empty() || !a.bearer_tokens.is_empty();
                if a.none && has_creds {
                    errors.push("ingress.auth.none", "`none = true` cannot be combined with credentials");
                }
                if !a.none && !has_creds {
                    errors.push(
                        "ingress.auth",
                        "no credentials: add `basic` or `bearer_tokens`, or write `none = true`",
                    );
                }
                for (i, b) in a.basic.iter().enumerate() {
                    if b.username.is_empty() || b.username.contains(':') {
                        errors.push(
                            format!("ingress.auth.basic[{i}].username"),
                            "must be non-empty and contain no ':'",
                        );
                    }
                    if b.password.expose().is_empty() {
                        errors.push(format!("ingress.auth.basic[{i}].password"), "must not be empty");
                    }
                }
                for (i, t) in a.bearer_tokens.iter().enumerate() {
                    if t.expose().is_empty() || t.expose().chars().any(|c| c.is_whitespace()) {
                        errors.push(
                            format!("ingress.auth.bearer_tokens[{i}]"),
                            "must be non-empty and contain no white space",
                        );
                    } else if t.expose().len() < MIN_TOKEN_LEN {
                        errors.push(
                            format!("ingress.auth.bearer_tokens[{i}]"),
                            format!("must be at least {MIN_TOKEN_LEN} bytes (generate one with `openssl rand -hex 32`)"),
                        );
                    }
                }
            }
        }
        check_queue("sinks.stdout.queue", &self.sinks.stdout.queue, &mut errors);
        check_queue(
            "sinks.discard.queue",
            &self.sinks.discard.queue,
            &mut errors,
        );
        for (name, k) in &self.sinks.kafka {
            k.validate(
                &format!("sinks.kafka.{name}"),
                d.delivery_timeout_ms,
                &mut |p, m| errors.push(p, m),
            );
        }
        for (name, n) in &self.sinks.nats {
            n.validate(&format!("sinks.nats.{name}"), &mut |p, m| errors.push(p, m));
        }
        self.sinks
            .eventbridge
            .validate("sinks.eventbridge", &mut |p, m| errors.push(p, m));
        self.sinks
            .http
            .validate("sinks.http", &mut |p, m| errors.push(p, m));
        // An event that can never fit in a queue would be answered 503 forever.
        let queues = [
            ("sinks.stdout.queue".to_string(), self.sinks.stdout.queue),
            ("sinks.discard.queue".to_string(), self.sinks.discard.queue),
            (
                "sinks.eventbridge.queue".to_string(),
                self.sinks.eventbridge.queue,
            ),
            ("sinks.http.queue".to_string(), self.sinks.http.queue),
        ]
        .into_iter()
        .chain(
            self.sinks
                .kafka
                .iter()
                .map(|(n, k)| (format!("sinks.kafka.{n}.queue"), k.queue)),
        )
        .chain(
            self.sinks
                .nats
                .iter()
                .map(|(n, c)| (format!("sinks.nats.{n}.queue"), c.queue)),
        );
        for (path, q) in queues {
            if q.max_bytes < self.ingress.max_body_bytes {
                errors.push(
                    format!("{path}.max_bytes"),
                    format!(
                        "must be at least ingress.max_body_bytes ({}), or the largest events never fit",
                        self.ingress.max_body_bytes
                    ),
                );
            }
        }
        let a = &self.api;
        if a.enabled {
            if a.store_path.is_none() && a.store.is_none() {
                errors.push(
                    "api.store",
                    "required when the API is enabled: [api.store] kind = \"file\" (one process) or \"nats\" (replicas), or api.store_path",
                );
            }
            if a.clients.is_empty() && a.tokens.is_empty() {
                errors.push("api", "no clients and no tokens: nobody could call the API");
            }
        }
        if a.rate_limit_requests == 0 || a.rate_limit_window_ms == 0 {
            errors.push(
                "api.rate_limit_requests",
                "rate_limit_requests and rate_limit_window_ms must be greater than 0",
            );
        }
        if a.token_ttl_s == 0 || a.token_ttl_s > MAX_TOKEN_TTL_S {
            errors.push(
                "api.token_ttl_s",
                format!("must be 1 to {MAX_TOKEN_TTL_S} (24 h)"),
            );
        }
        if a.auth_failure_limit == 0 {
            errors.push("api.auth_failure_limit", "must be greater than 0");
        }
        if a.store_path.is_some() && a.store.is_some() {
            errors.push(
                "api.store_path",
                "set either api.store_path or [api.store], not both",
            );
        }
        if let Some(ApiStoreConfig::Kafka(k)) = &a.store {
            if !self.sinks.kafka.contains_key(&k.cluster) {
                errors.push(
                    "api.store.cluster",
                    format!(
                        "no Kafka cluster `{}`: name one of [sinks.kafka.<name>] ({})",
                        k.cluster,
                        self.sinks
                            .kafka
                            .keys()
                            .cloned()
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                );
            }
            for (key, t) in [("topic", &k.topic), ("status_topic", &k.status_topic)] {
                if let Err(m) = crate::sinks::kafka::check_topic(t) {
                    errors.push(format!("api.store.{key}"), m);
                }
            }
            if k.topic == k.status_topic {
                errors.push("api.store.status_topic", "must differ from api.store.topic");
            }
            if !(1..=5).contains(&k.replication_factor) {
                errors.push("api.store.replication_factor", "must be 1 to 5");
            }
            if !(1024 * 1024..=1024 * 1024 * 1024).contains(&k.status_max_bytes) {
                errors.push("api.store.status_max_bytes", "must be 1 MiB to 1 GiB");
            }
            if !(1..=60_000).contains(&k.request_timeout_ms) {
                errors.push("api.store.request_timeout_ms", "must be 1 to 60000");
            }
        }
        let shared = matches!(
            a.store,
            Some(ApiStoreConfig::Nats(_) | ApiStoreConfig::Kafka(_))
        );
        if a.enabled && shared {
            if a.store_key.is_none() {
                errors.push("api.store_key", "required with a shared store: webhook credentials are sealed with it (at least 32 bytes, e.g. `openssl rand -hex 32`)");
            }
            if a.token_signing_key.is_none() {
                errors.push("api.token_signing_key", "required with a shared store: every replica must verify the tokens every other one issues (at least 32 bytes, e.g. `openssl rand -hex 32`)");
            }
        }
        if let Some(ApiStoreConfig::Nats(n)) = &a.store {
            if !self.sinks.nats.contains_key(&n.connection) {
                errors.push(
                    "api.store.connection",
                    format!(
                        "no NATS connection `{}`: name one of [sinks.nats.<name>] ({})",
                        n.connection,
                        self.sinks
                            .nats
                            .keys()
                            .cloned()
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                );
            }
            if n.bucket.is_empty()
                || n.bucket.len() > 64
                || !n
                    .bucket
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                errors.push(
                    "api.store.bucket",
                    "1 to 64 characters of A-Z, a-z, 0-9, - and _",
                );
            }
            if n.status_bucket == n.bucket
                || n.status_bucket.is_empty()
                || n.status_bucket.len() > 64
                || !n
                    .status_bucket
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                errors.push(
                    "api.store.status_bucket",
                    "1 to 64 characters of A-Z, a-z, 0-9, - and _, not the subscriptions' bucket",
                );
            }
            if !(1024 * 1024..=1024 * 1024 * 1024).contains(&n.status_max_bytes) {
                errors.push("api.store.status_max_bytes", "must be 1 MiB to 1 GiB");
            }
            if !(1..=5).contains(&n.replicas) {
                errors.push("api.store.replicas", "must be 1 to 5");
            }
            if !(1..=64).contains(&n.history) {
                errors.push("api.store.history", "must be 1 to 64");
            }
            if !(1..=60_000).contains(&n.request_timeout_ms) {
                errors.push("api.store.request_timeout_ms", "must be 1 to 60000");
            }
        }
        let keys = [
            ("api.store_key".to_string(), a.store_key.as_ref()),
            (
                "api.token_signing_key".to_string(),
                a.token_signing_key.as_ref(),
            ),
        ]
        .into_iter()
        .chain(
            a.store_old_keys
                .iter()
                .enumerate()
                .map(|(i, k)| (format!("api.store_old_keys[{i}]"), Some(k))),
        )
        .chain(
            a.token_verification_keys
                .iter()
                .enumerate()
                .map(|(i, k)| (format!("api.token_verification_keys[{i}]"), Some(k))),
        );
        for (path, key) in keys {
            if key.is_some_and(|k| k.expose().len() < MIN_TOKEN_LEN) {
                errors.push(path, format!("must be at least {MIN_TOKEN_LEN} bytes (generate one with `openssl rand -hex 32`)"));
            }
        }
        for (i, c) in a.clients.iter().enumerate() {
            if c.client_id.is_empty() {
                errors.push(format!("api.clients[{i}].client_id"), "must not be empty");
            }
            if c.client_secret_sha256.len() != 64
                || !c
                    .client_secret_sha256
                    .bytes()
                    .all(|b| b.is_ascii_hexdigit())
            {
                errors.push(
                    format!("api.clients[{i}].client_secret_sha256"),
                    "must be 64 hex digits: printf %s \"$SECRET\" | sha256sum",
                );
            }
            check_scopes(&format!("api.clients[{i}].scopes"), &c.scopes, &mut errors);
        }
        for (i, t) in a.tokens.iter().enumerate() {
            if t.token.expose().len() < MIN_TOKEN_LEN {
                errors.push(
                    format!("api.tokens[{i}].token"),
                    format!("must be at least {MIN_TOKEN_LEN} bytes (generate one with `openssl rand -hex 32`)"),
                );
            }
            check_scopes(&format!("api.tokens[{i}].scopes"), &t.scopes, &mut errors);
        }
        let catalog = self.catalog_checked(&mut errors);
        let mut per_trigger: std::collections::HashMap<&str, usize> = Default::default();
        for s in &self.subscriptions {
            *per_trigger.entry(s.trigger_id.as_str()).or_default() += 1;
        }
        for (t, n) in per_trigger {
            if n > MAX_SUBSCRIPTIONS_PER_TRIGGER {
                errors.push(
                    "subscriptions",
                    format!("{n} subscriptions for `{t}`: ISC allows at most {MAX_SUBSCRIPTIONS_PER_TRIGGER} per trigger"),
                );
            }
        }
        let mut names = HashSet::new();
        let mut ids = HashSet::new();
        for (i, s) in self.subscriptions.iter().enumerate() {
            let path = format!("subscriptions[{i}]");
            self.validate_subscription(&path, s, &catalog, &mut errors);
            if !names.insert(s.name.as_str()) {
                errors.push(
                    format!("{path}.name"),
                    format!("`{}` is used by another subscription", s.name),
                );
            }
            // A derived id repeats only when the name does, which is reported above.
            if !ids.insert(s.effective_id()) && s.id.is_some() {
                errors.push(format!("{path}.id"), "is used by another subscription");
            }
        }
        if errors.0.is_empty() {
            Ok(())
        } else {
            Err(ConfigErrors(errors.0))
        }
    }

    /// Check one subscription as the config would (the API's POST, PUT and PATCH); paths start at `path`.
    pub fn check_subscription(&self, path: &str, s: &Subscription) -> Vec<ConfigError> {
        let mut errors = Errors(Vec::new());
        let catalog = self.catalog_checked(&mut errors);
        self.validate_subscription(path, s, &catalog, &mut errors);
        errors.0
    }

    fn validate_subscription(
        &self,
        path: &str,
        s: &Subscription,
        catalog: &Catalog,
        errors: &mut Errors,
    ) {
        if s.name.trim().is_empty() {
            errors.push(format!("{path}.name"), "must not be empty");
        }
        for (key, m) in crate::envelope::check(s) {
            errors.push(format!("{path}.{key}"), m);
        }
        if !iso8601_duration(&s.response_deadline) {
            errors.push(
                format!("{path}.responseDeadline"),
                format!(
                    "`{}` is not an ISO-8601 duration such as PT1H",
                    s.response_deadline
                ),
            );
        }
        match catalog.get(&s.trigger_id) {
            None => errors.push(
                format!("{path}.triggerId"),
                format!(
                    "unknown trigger `{}`: use an id from `GET /beta/triggers` or add it under [[catalog.triggers]]",
                    s.trigger_id
                ),
            ),
            Some(t) if t.kind == TriggerType::RequestResponse => errors.push(
                format!("{path}.triggerId"),
                format!(
                    "`{}` is a REQUEST_RESPONSE trigger; trigger-relay relays FIRE_AND_FORGET triggers only",
                    s.trigger_id
                ),
            ),
            Some(_) => {}
        }
        if let Some(f) = &s.filter {
            if let Err(e) = crate::filter::Filter::compile(f) {
                errors.push(
                    format!("{path}.filter"),
                    format!("invalid JSONPath filter: {e}"),
                );
            }
        }
        let configs = [
            (
                "httpConfig",
                s.http_config.is_some(),
                SubscriptionType::Http,
            ),
            (
                "eventBridgeConfig",
                s.event_bridge_config.is_some(),
                SubscriptionType::Eventbridge,
            ),
            (
                "kafkaConfig",
                s.kafka_config.is_some(),
                SubscriptionType::Kafka,
            ),
            (
                "natsConfig",
                s.nats_config.is_some(),
                SubscriptionType::Nats,
            ),
            (
                "inlineConfig",
                s.inline_config.is_some(),
                SubscriptionType::Inline,
            ),
            (
                "scriptConfig",
                s.script_config.is_some(),
                SubscriptionType::Script,
            ),
            (
                "workflowConfig",
                s.workflow_config.is_some(),
                SubscriptionType::Workflow,
            ),
        ];
        for (key, present, kind) in configs {
            if present && kind != s.kind {
                errors.push(
                    format!("{path}.{key}"),
                    format!("does not go with type {}", s.kind.as_str()),
                );
            }
        }
        if let Some(dl) = &s.dead_letter {
            let p = format!("{path}.deadLetter");
            match (&dl.kafka_config, &dl.nats_config) {
                (Some(k), None) => {
                    if let Err(m) = self.kafka_cluster_for(k) {
                        errors.push(format!("{p}.kafkaConfig.cluster"), m);
                    }
                    if let Err(m) = crate::sinks::kafka::check_topic(&k.topic) {
                        errors.push(format!("{p}.kafkaConfig.topic"), m);
                    }
                }
                (None, Some(n)) => {
                    if let Err(m) = self.nats_connection_for(n) {
                        errors.push(format!("{p}.natsConfig.connection"), m);
                    }
                    if let Err(m) = crate::sinks::nats::render_subject(&n.subject, &s.trigger_id) {
                        errors.push(format!("{p}.natsConfig.subject"), m);
                    }
                    if n.expected_stream.is_some() {
                        errors.push(
                            format!("{p}.natsConfig.expectedStream"),
                            "is not used for dead letters",
                        );
                    }
                }
                _ => errors.push(
                    p,
                    "set exactly one of kafkaConfig (a topic) or natsConfig (a subject)",
                ),
            }
            if matches!(s.kind, SubscriptionType::Stdout | SubscriptionType::Discard) {
                errors.push(
                    format!("{path}.deadLetter"),
                    format!(
                        "{} subscriptions cannot fail; remove deadLetter",
                        s.kind.as_str()
                    ),
                );
            }
        }
        match s.kind {
            SubscriptionType::Kafka => match &s.kafka_config {
                None => errors.push(format!("{path}.kafkaConfig"), "required for type KAFKA"),
                Some(k) => {
                    if let Err(m) = self.kafka_cluster_for(k) {
                        errors.push(format!("{path}.kafkaConfig.cluster"), m);
                    }
                    if let Err(m) = crate::sinks::kafka::check_topic(&k.topic) {
                        errors.push(format!("{path}.kafkaConfig.topic"), m);
                    }
                }
            },
            SubscriptionType::Nats => match &s.nats_config {
                None => errors.push(format!("{path}.natsConfig"), "required for type NATS"),
                Some(n) => {
                    if let Err(m) = self.nats_connection_for(n) {
                        errors.push(format!("{path}.natsConfig.connection"), m);
                    }
                    if let Err(m) = crate::sinks::nats::render_subject(&n.subject, &s.trigger_id) {
                        errors.push(format!("{path}.natsConfig.subject"), m);
                    }
                    if n.expected_stream.is_some() && !n.jetstream {
                        errors.push(format!("{path}.natsConfig.expectedStream"), "needs jetstream = true");
                    }
                }
            },
            SubscriptionType::Stdout | SubscriptionType::Discard => {}
            SubscriptionType::Http => match &s.http_config {
                None => errors.push(format!("{path}.httpConfig"), "required for type HTTP"),
                Some(h) => crate::sinks::http::check_subscription(
                    &format!("{path}.httpConfig"),
                    h,
                    &mut |p, m| errors.push(p, m),
                ),
            },
            SubscriptionType::Eventbridge => match &s.event_bridge_config {
                None => errors.push(
                    format!("{path}.eventBridgeConfig"),
                    "required for type EVENTBRIDGE",
                ),
                Some(e) => crate::sinks::eventbridge::check_subscription(
                    &format!("{path}.eventBridgeConfig"),
                    e,
                    &mut |p, m| errors.push(p, m),
                ),
            },
            SubscriptionType::Inline | SubscriptionType::Script | SubscriptionType::Workflow => errors.push(
                format!("{path}.type"),
                format!(
                    "type {} runs inside ISC and cannot be relayed; use HTTP, EVENTBRIDGE, KAFKA, NATS or STDOUT",
                    s.kind.as_str()
                ),
            ),
        }
    }

    /// The name of the Kafka cluster a subscription publishes to.
    pub fn kafka_cluster_for<'a>(
        &'a self,
        k: &'a crate::model::KafkaSubscriptionConfig,
    ) -> Result<&'a str, String> {
        pick_named(
            "Kafka cluster",
            "sinks.kafka",
            self.sinks.kafka.keys(),
            k.cluster.as_deref(),
        )
    }

    /// The name of the NATS connection a subscription publishes to.
    pub fn nats_connection_for<'a>(
        &'a self,
        n: &'a crate::model::NatsSubscriptionConfig,
    ) -> Result<&'a str, String> {
        pick_named(
            "NATS connection",
            "sinks.nats",
            self.sinks.nats.keys(),
            n.connection.as_deref(),
        )
    }
}

/// The sink a subscription names, or the only one configured when it names none.
fn pick_named<'a>(
    what: &str,
    table: &str,
    names: impl Iterator<Item = &'a String> + Clone,
    chosen: Option<&'a str>,
) -> Result<&'a str, String> {
    let list = || {
        names
            .clone()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join(", ")
    };
    match chosen {
        Some(c) => names
            .clone()
            .find(|n| n.as_str() == c)
            .map(String::as_str)
            .ok_or_else(|| {
                let l = list();
                format!(
                    "unknown {what} `{c}` (configured: {})",
                    if l.is_empty() { "none" } else { &l }
                )
            }),
        None => {
            let mut it = names.clone();
            match (it.next(), it.next()) {
                (Some(only), None) => Ok(only.as_str()),
                (None, _) => Err(format!("no {what} configured: add a [{table}.NAME] table")),
                _ => Err(format!(
                    "several {what}s are configured ({}): name one",
                    list()
                )),
            }
        }
    }
}

/// Check one queue's capacities.
pub(crate) fn check_queue(path: &str, q: &QueueConfig, errors: &mut impl ErrorSink) {
    if q.max_events == 0 || q.max_events > 10_000_000 {
        errors.error(
            format!("{path}.max_events"),
            "must be between 1 and 10000000".into(),
        );
    }
    if q.max_bytes < 1024 || q.max_bytes > (u32::MAX as u64) {
        errors.error(
            format!("{path}.max_bytes"),
            "must be between 1024 and 4294967295".into(),
        );
    }
}

/// Something that collects config errors (lets sink modules validate their own tables).
pub(crate) trait ErrorSink {
    fn error(&mut self, path: String, message: String);
}

impl ErrorSink for Errors {
    fn error(&mut self, path: String, message: String) {
        self.push(path, message)
    }
}

impl<F: FnMut(String, String)> ErrorSink for F {
    fn error(&mut self, path: String, message: String) {
        self(path, message)
    }
}

/// Replace `${NAME}` in every string value with the environment variable; `$${` stands for a literal `${`.
fn interpolate(
    v: &mut toml::Value,
    path: &mut String,
    env: &impl Fn(&str) -> Result<String, String>,
    errors: &mut Errors,
) {
    match v {
        toml::Value::String(s) if s.contains("${") => match expand(s, env) {
            Ok(out) => *s = out,
            Err(m) => errors.push(path.clone(), m),
        },
        toml::Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                interpolate(item, path, env, errors);
                path.truncate(len);
            }
        }
        toml::Value::Table(t) => {
            for (k, item) in t.iter_mut() {
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(k);
                interpolate(item, path, env, errors);
                path.truncate(len);
            }
        }
        _ => {}
    }
}

fn expand(s: &str, env: &impl Fn(&str) -> Result<String, String>) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        if let Some(t) = tail.strip_prefix("$${") {
            out.push_str("${");
            rest = t;
        } else if let Some(t) = tail.strip_prefix("${") {
            let end = t.find('}').ok_or_else(|| {
                "unterminated `${`: write `${NAME}`, or `$${` for a literal".to_string()
            })?;
            let name = &t[..end];
            let valid = !name.is_empty()
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                && !name.starts_with(|c: char| c.is_ascii_digit());
            if !valid {
                return Err(format!(
                    "`${{{name}}}` is not a valid environment variable name"
                ));
            }
            out.push_str(&env(name)?);
            rest = &t[end + 1..];
        } else {
            out.push('$');
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

fn check_scopes(path: &str, scopes: &[String], errors: &mut Errors) {
    if scopes.is_empty() {
        errors.push(
            path,
            format!("list at least one of {}", API_SCOPES.join(", ")),
        );
    }
    for (i, sc) in scopes.iter().enumerate() {
        if !API_SCOPES.contains(&sc.as_str()) {
            errors.push(
                format!("{path}[{i}]"),
                format!("`{sc}` is not one of {}", API_SCOPES.join(", ")),
            );
        }
    }
}

/// ISO-8601 durations as ISC takes them: `P[nY][nM][nW][nD][T[nH][nM][n[.n]S]]`, at least one part.
pub fn iso8601_duration(s: &str) -> bool {
    let Some(rest) = s.strip_prefix('P') else {
        return false;
    };
    let (date, time) = match rest.split_once('T') {
        Some((d, t)) => (d, Some(t)),
        None => (rest, None),
    };
    fn parts(s: &str, units: &[char], fraction_last: bool) -> Option<usize> {
        let mut n = 0;
        let mut number = String::new();
        let mut next_unit = 0;
        for c in s.chars() {
            if c.is_ascii_digit() || (c == '.' && fraction_last && !number.is_empty()) {
                number.push(c);
                continue;
            }
            let at = units[next_unit..].iter().position(|u| *u == c)? + next_unit;
            if number.is_empty() || (number.contains('.') && at != units.len() - 1) {
                return None;
            }
            number.clear();
            next_unit = at + 1;
            n += 1;
        }
        number.is_empty().then_some(n)
    }
    let Some(d) = parts(date, &['Y', 'M', 'W', 'D'], false) else {
        return false;
    };
    match time {
        None => d > 0,
        Some(t) => matches!(parts(t, &['H', 'M', 'S'], true), Some(n) if n > 0),
    }
}

/// `[env]`, read from the raw TOML before anything is interpolated (its own values are taken literally).
fn env_allow_list(value: &toml::Value, errors: &mut Errors) -> EnvConfig {
    let Some(raw) = value.get("env") else {
        return EnvConfig::default();
    };
    let allow: EnvConfig = match serde_path_to_error::deserialize(raw.clone()) {
        Ok(a) => a,
        Err(e) => {
            let msg = e.inner().to_string();
            errors.push(
                format!("env.{}", e.path()).trim_end_matches(".."),
                msg.lines().next().unwrap_or_default().trim(),
            );
            return EnvConfig {
                allow_prefixes: Vec::new(),
                allow: Vec::new(),
            };
        }
    };
    for (i, p) in allow.allow_prefixes.iter().enumerate() {
        if p.is_empty() {
            errors.push(
                format!("env.allow_prefixes[{i}]"),
                "an empty prefix would allow every variable; list the names in `allow` instead",
            );
        }
    }
    allow
}

/// Kafka `options` whose name looks like a credential: `check-config --print` shows `***` for their values.
pub fn is_credential_option(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    n.starts_with("sasl.")
        || n.starts_with("ssl.key")
        || ["password", "secret", "token", "key", "credential"]
            .iter()
            .any(|w| n.contains(w))
}

impl Config {
    /// The effective config (after `${VAR}` interpolation and with every default filled in) as TOML, with every
    /// secret shown as `***`: `Secret` fields, credential-like Kafka `options`, and the password of a URL.
    /// This is what `trigger-relay check-config --print` prints.
    pub fn to_redacted_toml(&self) -> String {
        let json = crate::model::with_redacted_secrets(|| serde_json::to_value(self))
            .expect("the config serialises");
        let toml = toml::Value::try_from(redact_json(json).unwrap_or(serde_json::Value::Null))
            .expect("the config is TOML");
        toml::to_string_pretty(&toml).expect("the config prints as TOML")
    }
}

/// Drop nulls (TOML has none: an unset option is left out) and hide URL passwords (`scheme://user:pw@host`).
fn redact_json(v: serde_json::Value) -> Option<serde_json::Value> {
    use serde_json::Value;
    Some(match v {
        Value::Null => return None,
        Value::String(s) => Value::String(redact_url_password(&s)),
        Value::Array(a) => Value::Array(a.into_iter().filter_map(redact_json).collect()),
        Value::Object(o) => Value::Object(
            o.into_iter()
                .filter_map(|(k, v)| Some((k, redact_json(v)?)))
                .collect(),
        ),
        other => other,
    })
}

/// `scheme://user:***@host`: the password of every URL in `s` hidden.
pub fn redact_url_password(s: &str) -> String {
    // `scheme://user:password@host…` (also inside a comma-separated list of URLs).
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i + 3);
        out.push_str(head);
        let end = tail.find(['/', ',', ' ']).unwrap_or(tail.len());
        let authority = &tail[..end];
        match (authority.rfind('@'), authority.find(':')) {
            (Some(at), Some(colon)) if colon < at => {
                out.push_str(&authority[..colon]);
                out.push_str(":***");
                out.push_str(&authority[at..]);
            }
            _ => out.push_str(authority),
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}
