//! `[api]`: ISC's Triggers API on the admin listener (clients, static tokens, the shared store, keys), and its
//! checks.

use serde::{Deserialize, Serialize};

use super::{Config, Errors};
use crate::model::Secret;

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

/// Check `[api]` (and that the store names a configured connection).
pub(super) fn check(config: &Config, errors: &mut Errors) {
    let a = &config.api;
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
        if !config.sinks.kafka.contains_key(&k.cluster) {
            errors.push(
                "api.store.cluster",
                format!(
                    "no Kafka cluster `{}`: name one of [sinks.kafka.<name>] ({})",
                    k.cluster,
                    config
                        .sinks
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
        if !config.sinks.nats.contains_key(&n.connection) {
            errors.push(
                "api.store.connection",
                format!(
                    "no NATS connection `{}`: name one of [sinks.nats.<name>] ({})",
                    n.connection,
                    config
                        .sinks
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
        check_scopes(&format!("api.clients[{i}].scopes"), &c.scopes, errors);
    }
    for (i, t) in a.tokens.iter().enumerate() {
        if t.token.expose().len() < MIN_TOKEN_LEN {
            errors.push(
                format!("api.tokens[{i}].token"),
                format!("must be at least {MIN_TOKEN_LEN} bytes (generate one with `openssl rand -hex 32`)"),
            );
        }
        check_scopes(&format!("api.tokens[{i}].scopes"), &t.scopes, errors);
    }
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
