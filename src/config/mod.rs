//! The relay's configuration: one TOML file, strictly parsed, validated as a whole.
//!
//! Why strict: a typo in a gateway's config (`ack_timout_ms`) must not silently fall back to a default. Every
//! table denies unknown keys, sizes and durations carry their unit in the key (`_bytes`, `_ms`), and
//! [`Config::from_toml`] reports *every* semantic error with its key path, which `trigger-relay check-config`
//! prints. Secrets come from the environment through `${VAR}` interpolation in string values.
//!
//! The files: `mod.rs` (the top-level tables, parsing, the error list), `env.rs` (`[env]` and `${VAR}`),
//! `ingress.rs` (`[ingress]` and `[admin]`: listeners, credentials), `api.rs` (`[api]` and its checks),
//! `validate.rs` (the whole-config checks; each sink kind checks its own tables, `crate::sinks::SinkKind`),
//! `redact.rs` (`check-config --print`).

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::catalog::Catalog;
use crate::model::{AckMode, Subscription};

mod api;
mod env;
mod ingress;
mod isc;
mod redact;
mod validate;

pub(crate) use crate::keypath::ErrorSink;
pub use api::*;
use env::{env_allow_list, interpolate};
pub use env::{EnvConfig, DEFAULT_ENV_PREFIXES};
pub use ingress::*;
pub use isc::{Credential, IscConfig};
pub use redact::{is_credential_option, redact_url_password};
pub use validate::iso8601_duration;

/// The embedded development default: a `STDOUT` subscription, no broker needed.
pub const DEV_CONFIG: &str = include_str!("../../config/dev.toml");

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
    pub isc: Option<IscConfig>,
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

pub use crate::sinks::kind::SinksConfig;

pub use crate::pipeline::QueueConfig;

/// ISC's limit of subscriptions per FIRE_AND_FORGET trigger.
pub const MAX_SUBSCRIPTIONS_PER_TRIGGER: usize = 50;

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogConfig {
    /// Triggers the built-in catalog does not know yet (tenants get new triggers first).
    #[serde(default)]
    pub triggers: Vec<CatalogEntryConfig>,
}

pub use crate::catalog::CatalogEntryConfig;

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

/// The errors found so far, for the checks in this module's files.
pub(crate) struct Errors(pub(crate) Vec<ConfigError>);

impl Errors {
    pub(crate) fn push(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(ConfigError {
            path: path.into(),
            message: message.into(),
        });
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

    pub(super) fn catalog_checked(&self, errors: &mut Errors) -> Catalog {
        let mut catalog = Catalog::builtin();
        for (i, t) in self.catalog.triggers.iter().enumerate() {
            let path = format!("catalog.triggers[{i}]");
            if let Err(msg) = catalog.extend(t) {
                errors.push(format!("{path}.id"), msg);
            }
        }
        catalog
    }
}

impl Config {
    /// The name of the Kafka cluster a subscription publishes to.
    pub fn kafka_cluster_for<'a>(
        &'a self,
        k: &'a crate::model::KafkaSubscriptionConfig,
    ) -> Result<&'a str, String> {
        self.sinks.kafka_cluster_for(k)
    }

    /// The name of the NATS connection a subscription publishes to.
    pub fn nats_connection_for<'a>(
        &'a self,
        n: &'a crate::model::NatsSubscriptionConfig,
    ) -> Result<&'a str, String> {
        self.sinks.nats_connection_for(n)
    }

    /// What the sink kinds read of this config.
    pub(crate) fn sink_settings(&self) -> crate::sinks::kind::Settings<'_> {
        crate::sinks::kind::Settings {
            sinks: &self.sinks,
            delivery_timeout_ms: self.delivery.delivery_timeout_ms,
            subscriptions: &self.subscriptions,
        }
    }
}

impl ErrorSink for Errors {
    fn error(&mut self, path: String, message: String) {
        self.push(path, message)
    }
}

#[cfg(test)]
mod tests;
