//! The Kafka sink (`KAFKA` subscriptions): one rdkafka producer per configured cluster, shared by every
//! subscription that names the cluster.
//!
//! Batching, compression, retries with backoff and idempotence are librdkafka's (`linger.ms`, `batch.size`,
//! `message.timeout.ms` = `delivery_timeout_ms`, `enable.idempotence`); the worker only moves deliveries from
//! the relay's bounded queue into the producer and completes them from their delivery reports, with no
//! per-event waiting: every delivery report is awaited concurrently.

mod config;
mod metrics;
mod sink;

pub use config::{check_topic, Compression, CreateTopics, KafkaClusterConfig};
pub use metrics::KafkaMetrics;
pub use sink::KafkaSink;
