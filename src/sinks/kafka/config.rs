//! `[sinks.kafka.NAME]`: one Kafka cluster and its producer settings.

use std::collections::BTreeMap;

use rdkafka::ClientConfig;
use serde::Deserialize;

use crate::keypath::ErrorSink;
use crate::pipeline::queue::check_queue;
use crate::pipeline::QueueConfig;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    None,
    Gzip,
    Snappy,
    #[default]
    Lz4,
    Zstd,
}

impl Compression {
    fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Gzip => "gzip",
            Self::Snappy => "snappy",
            Self::Lz4 => "lz4",
            Self::Zstd => "zstd",
        }
    }
}

#[derive(Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaClusterConfig {
    /// `host:port[,host:port…]`
    pub bootstrap_servers: String,
    /// `all` (default), `1` or `0`. Anything but `all` can lose acknowledged events when a broker fails.
    #[serde(default = "default_acks")]
    pub acks: String,
    #[serde(default = "yes")]
    pub enable_idempotence: bool,
    #[serde(default)]
    pub compression: Compression,
    #[serde(default = "default_linger")]
    pub linger_ms: u64,
    #[serde(default = "default_batch_bytes")]
    pub batch_max_bytes: u64,
    /// The relay's queue in front of this producer.
    #[serde(default)]
    pub queue: QueueConfig,
    /// Any other librdkafka property (`"security.protocol" = "SASL_SSL"`, `"sasl.password" = "${KAFKA_PASSWORD}"`).
    /// Nested tables are read as dotted names, so `security.protocol = "SSL"` unquoted works too.
    #[serde(default, serialize_with = "redacted_options")]
    pub options: toml::Table,
    /// Topic prefixes subscriptions created through the Triggers API may publish to on this cluster (e.g.
    /// `["isc."]`). Empty (the default): any topic except those starting with `_` (Kafka's and Connect's internal
    /// topics) and the config file's dead-letter topics. Config-file subscriptions are not limited.
    #[serde(default)]
    pub api_topic_prefixes: Vec<String>,
    /// Create a subscription's topic when the destination check finds it missing (off: a missing topic makes
    /// the relay not ready, or the API write a 400).
    #[serde(default)]
    pub create_topics: Option<CreateTopics>,
}

/// `[sinks.kafka.NAME.create_topics]`: how the relay creates the topics it finds missing.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct CreateTopics {
    #[serde(default = "one")]
    pub partitions: i32,
    #[serde(default = "one")]
    pub replication_factor: i32,
}

fn one() -> i32 {
    1
}

/// Serialised (`check-config --print`) as flat librdkafka names, credential-like values as `***`.
fn redacted_options<S: serde::Serializer>(options: &toml::Table, s: S) -> Result<S::Ok, S::Error> {
    let mut flat = BTreeMap::new();
    if flatten(options, String::new(), &mut flat).is_err() {
        flat.clear();
    }
    s.collect_map(flat.into_iter().map(|(k, v)| {
        let v = if crate::model::is_credential_option(&k) {
            "***".to_string()
        } else {
            v
        };
        (k, v)
    }))
}

/// `options` may hold credentials (`sasl.password`, `ssl.key.password`...): `Debug` shows their names only.
impl std::fmt::Debug for KafkaClusterConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<String> = self
            .passthrough()
            .map(|o| o.into_iter().map(|(k, _)| format!("{k}=***")).collect())
            .unwrap_or_else(|_| vec!["(invalid)".into()]);
        f.debug_struct("KafkaClusterConfig")
            .field("bootstrap_servers", &self.bootstrap_servers)
            .field("acks", &self.acks)
            .field("enable_idempotence", &self.enable_idempotence)
            .field("compression", &self.compression)
            .field("linger_ms", &self.linger_ms)
            .field("batch_max_bytes", &self.batch_max_bytes)
            .field("queue", &self.queue)
            .field("options", &names)
            .field("api_topic_prefixes", &self.api_topic_prefixes)
            .finish()
    }
}

fn default_acks() -> String {
    "all".into()
}
fn yes() -> bool {
    true
}
fn default_linger() -> u64 {
    5
}
fn default_batch_bytes() -> u64 {
    1_000_000
}

/// librdkafka properties the named settings own.
const OWNED: &[(&str, &str)] = &[
    ("bootstrap.servers", "bootstrap_servers"),
    ("metadata.broker.list", "bootstrap_servers"),
    ("acks", "acks"),
    ("request.required.acks", "acks"),
    ("enable.idempotence", "enable_idempotence"),
    ("compression.type", "compression"),
    ("compression.codec", "compression"),
    ("linger.ms", "linger_ms"),
    ("queue.buffering.max.ms", "linger_ms"),
    ("batch.size", "batch_max_bytes"),
    ("message.timeout.ms", "delivery.delivery_timeout_ms"),
    ("delivery.timeout.ms", "delivery.delivery_timeout_ms"),
];

impl KafkaClusterConfig {
    /// Pass-through options as librdkafka `(name, value)` pairs.
    pub fn passthrough(&self) -> Result<Vec<(String, String)>, (String, String)> {
        let mut out = BTreeMap::new();
        flatten(&self.options, String::new(), &mut out)?;
        Ok(out.into_iter().collect())
    }

    /// This cluster's servers and pass-through options without the producer's own settings: for the clients that
    /// only read or ask (the API store's reader, destination checks, admin requests).
    pub fn base_client_config(&self) -> Result<ClientConfig, String> {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.bootstrap_servers);
        for (k, v) in self
            .passthrough()
            .map_err(|(k, m)| format!("options.{k}: {m}"))?
        {
            c.set(k, v);
        }
        Ok(c)
    }

    /// The librdkafka configuration of this cluster's producer.
    pub fn client_config(&self, delivery_timeout_ms: u64) -> Result<ClientConfig, String> {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.bootstrap_servers)
            .set("acks", &self.acks)
            .set("enable.idempotence", self.enable_idempotence.to_string())
            .set("compression.type", self.compression.as_str())
            .set("linger.ms", self.linger_ms.to_string())
            .set("batch.size", self.batch_max_bytes.to_string())
            .set("message.timeout.ms", delivery_timeout_ms.to_string())
            // The relay's queue bounds what is in flight; librdkafka's own queue must hold at least that.
            .set(
                "queue.buffering.max.messages",
                self.queue.max_events.max(100_000).to_string(),
            )
            .set(
                "queue.buffering.max.kbytes",
                (self.queue.max_bytes / 1024 + 1024)
                    .max(1_048_576)
                    .to_string(),
            );
        for (k, v) in self
            .passthrough()
            .map_err(|(k, m)| format!("options.{k}: {m}"))?
        {
            c.set(k, v);
        }
        Ok(c)
    }

    pub(crate) fn validate(
        &self,
        path: &str,
        delivery_timeout_ms: u64,
        errors: &mut dyn ErrorSink,
    ) {
        // librdkafka refuses these only when the producer is created; say so at check-config time.
        if self.linger_ms >= delivery_timeout_ms {
            errors.error(
                format!("{path}.linger_ms"),
                format!("must be less than delivery.delivery_timeout_ms ({delivery_timeout_ms})"),
            );
        }
        if self.bootstrap_servers.trim().is_empty() {
            errors.error(
                format!("{path}.bootstrap_servers"),
                "must not be empty".into(),
            );
        }
        if !matches!(self.acks.as_str(), "all" | "-1" | "1" | "0") {
            errors.error(
                format!("{path}.acks"),
                "must be \"all\", \"1\" or \"0\"".into(),
            );
        } else if self.enable_idempotence && !matches!(self.acks.as_str(), "all" | "-1") {
            errors.error(
                format!("{path}.acks"),
                "enable_idempotence needs acks = \"all\"; set enable_idempotence = false to use another value".into(),
            );
        }
        if self.linger_ms > 900_000 {
            errors.error(format!("{path}.linger_ms"), "must be at most 900000".into());
        }
        if let Some(c) = &self.create_topics {
            if !(1..=10_000).contains(&c.partitions) {
                errors.error(
                    format!("{path}.create_topics.partitions"),
                    "must be between 1 and 10000".into(),
                );
            }
            if !(1..=32).contains(&c.replication_factor) {
                errors.error(
                    format!("{path}.create_topics.replication_factor"),
                    "must be between 1 and 32".into(),
                );
            }
        }
        if !(1..=2_147_483_647).contains(&self.batch_max_bytes) {
            errors.error(
                format!("{path}.batch_max_bytes"),
                "must be between 1 and 2147483647".into(),
            );
        }
        check_queue(&format!("{path}.queue"), &self.queue, errors);
        match self.passthrough() {
            Err((k, m)) => errors.error(format!("{path}.options.{k}"), m),
            Ok(opts) => {
                let mut bad = false;
                for (k, _) in &opts {
                    if let Some((_, owner)) = OWNED.iter().find(|(name, _)| name == k) {
                        bad = true;
                        errors.error(
                            format!("{path}.options.{k}"),
                            format!("set `{owner}` instead"),
                        );
                    }
                }
                if self.enable_idempotence {
                    for (k, v) in &opts {
                        let in_flight = matches!(
                            k.as_str(),
                            "max.in.flight" | "max.in.flight.requests.per.connection"
                        );
                        if in_flight && v.parse::<u64>().map_or(true, |n| n > 5) {
                            bad = true;
                            errors.error(
                                format!("{path}.options.{k}"),
                                "must be at most 5 with enable_idempotence (librdkafka refuses more)"
                                    .into(),
                            );
                        }
                    }
                }
                if !bad {
                    // librdkafka checks names and values without connecting anywhere.
                    if let Err(e) = self.client_config(delivery_timeout_ms).and_then(|c| {
                        c.create_native_config()
                            .map(|_| ())
                            .map_err(|e| e.to_string())
                    }) {
                        errors.error(
                            format!("{path}.options"),
                            format!("librdkafka refuses the configuration: {e}"),
                        );
                    }
                }
            }
        }
    }
}

fn flatten(
    t: &toml::Table,
    prefix: String,
    out: &mut BTreeMap<String, String>,
) -> Result<(), (String, String)> {
    for (k, v) in t {
        let name = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        let s = match v {
            toml::Value::String(s) => s.clone(),
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            toml::Value::Float(f) => f.to_string(),
            toml::Value::Table(inner) => {
                flatten(inner, name, out)?;
                continue;
            }
            _ => return Err((name, "must be a string, number or boolean".into())),
        };
        out.insert(name, s);
    }
    Ok(())
}

/// Kafka's rules for topic names.
pub fn check_topic(topic: &str) -> Result<(), String> {
    if topic.is_empty() || topic.len() > 249 {
        return Err("must be 1 to 249 characters".into());
    }
    if topic == "." || topic == ".." {
        return Err("must not be \".\" or \"..\"".into());
    }
    if let Some(c) = topic
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!(
            "`{c}` is not allowed in a Kafka topic name (letters, digits, '.', '_', '-')"
        ));
    }
    Ok(())
}
