//! The Kafka sink (`KAFKA` subscriptions): one rdkafka producer per configured cluster, shared by every
//! subscription that names the cluster.
//!
//! Batching, compression, retries with backoff and idempotence are librdkafka's (`linger.ms`, `batch.size`,
//! `message.timeout.ms` = `delivery_timeout_ms`, `enable.idempotence`); the worker only moves deliveries from
//! the relay's bounded queue into the producer and completes them from their delivery reports, with no
//! per-event waiting: every delivery report is awaited concurrently.

mod config;
mod kind;
mod metrics;
mod sink;

pub(crate) use kind::check_config;
pub(crate) use kind::Kind;

pub use config::{check_topic, Compression, CreateTopics, KafkaClusterConfig};
pub use metrics::KafkaMetrics;
pub use sink::KafkaSink;

/// Why [`create_topic`] did not create a topic.
#[derive(Debug, thiserror::Error)]
pub enum CreateTopicError {
    /// No admin client could be made from the config.
    #[error("{0}")]
    Client(String),
    /// The broker did not answer.
    #[error("{0}")]
    Unreachable(String),
    /// The broker answered no (no permission, a bad setting, ...).
    #[error("{0}")]
    Refused(String),
}

impl CreateTopicError {
    pub fn is_retriable(&self) -> bool {
        matches!(self, Self::Unreachable(_))
    }
}

/// Create `topic` with `partitions`, `replication` and topic `configs`, through an admin client made from
/// `base` (the API's Kafka store and `create_topics` share it). `Ok(false)` when it already existed.
pub async fn create_topic(
    base: &rdkafka::ClientConfig,
    topic: &str,
    partitions: i32,
    replication: i32,
    configs: &[(&str, &str)],
    timeout: std::time::Duration,
) -> Result<bool, CreateTopicError> {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    let admin: AdminClient<rdkafka::client::DefaultClientContext> = base
        .create()
        .map_err(|e| CreateTopicError::Client(e.to_string()))?;
    let opts = AdminOptions::new()
        .operation_timeout(Some(timeout))
        .request_timeout(Some(timeout));
    let mut t = NewTopic::new(topic, partitions, TopicReplication::Fixed(replication));
    for (k, v) in configs {
        t = t.set(k, v);
    }
    let results = admin
        .create_topics([&t], &opts)
        .await
        .map_err(|e| CreateTopicError::Unreachable(e.to_string()))?;
    let mut created = false;
    for r in results {
        match r {
            Ok(_) => created = true,
            Err((_, rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((_, e)) => return Err(CreateTopicError::Refused(e.to_string())),
        }
    }
    Ok(created)
}
