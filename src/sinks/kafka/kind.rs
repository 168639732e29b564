//! `KAFKA` as a sink kind: `[sinks.kafka.NAME]` tables (one producer and one queue each), `kafkaConfig` on a
//! subscription, the topic's existence asked of the cluster's metadata (and created with `create_topics`).

use futures_util::future::BoxFuture;

use crate::keypath::ErrorSink;
use crate::model::{KafkaKey, KafkaSubscriptionConfig, Subscription, SubscriptionType};
use crate::pipeline::QueueConfig;
use crate::sinks::kind::Settings;
use crate::sinks::kind::{
    BuildError, Destination, ResolveContext, SinkKind, StartContext, Unresolved,
};
use crate::sinks::{Readiness, Target};

use super::{check_topic, KafkaMetrics, KafkaSink};

pub(crate) struct Kind;

/// Check a `kafkaConfig` (a subscription's or a dead letter's): `path` is the `kafkaConfig` key.
pub(crate) fn check_config(
    config: &crate::sinks::kind::SinksConfig,
    path: &str,
    k: &KafkaSubscriptionConfig,
    errors: &mut dyn ErrorSink,
) {
    if let Err(m) = config.kafka_cluster_for(k) {
        errors.error(format!("{path}.cluster"), m);
    }
    if let Err(m) = check_topic(&k.topic) {
        errors.error(format!("{path}.topic"), m);
    }
}

impl SinkKind for Kind {
    fn subscription_type(&self) -> SubscriptionType {
        SubscriptionType::Kafka
    }

    fn config_field(&self, s: &Subscription) -> Option<(&'static str, bool)> {
        Some(("kafkaConfig", s.kafka_config.is_some()))
    }

    fn check_tables(&self, config: &Settings, errors: &mut dyn ErrorSink) {
        for (name, k) in &config.sinks.kafka {
            k.validate(
                &format!("sinks.kafka.{name}"),
                config.delivery_timeout_ms,
                errors,
            );
        }
    }

    fn queues(&self, config: &Settings) -> Vec<(String, QueueConfig)> {
        config
            .sinks
            .kafka
            .iter()
            .map(|(n, k)| (format!("sinks.kafka.{n}.queue"), k.queue))
            .collect()
    }

    fn event_overhead_bytes(&self) -> u32 {
        super::sink::EVENT_OVERHEAD_BYTES
    }

    fn check_subscription(
        &self,
        config: &Settings,
        path: &str,
        s: &Subscription,
        errors: &mut dyn ErrorSink,
    ) {
        match &s.kafka_config {
            None => errors.error(
                format!("{path}.kafkaConfig"),
                "required for type KAFKA".into(),
            ),
            Some(k) => check_config(config.sinks, &format!("{path}.kafkaConfig"), k, errors),
        }
    }

    fn wraps_cloudevents(&self) -> bool {
        true
    }

    fn start<'a>(&'a self, mut ctx: StartContext<'a>) -> BoxFuture<'a, Result<(), BuildError>> {
        Box::pin(async move {
            let metrics = KafkaMetrics::register(ctx.registry)?;
            // Every configured cluster: dead letters and the API's Kafka store may use one no subscription names.
            for (name, cluster) in &ctx.config.sinks.kafka {
                let sink = format!("kafka.{name}");
                let client = cluster
                    .client_config(ctx.config.delivery_timeout_ms)
                    .map_err(|m| BuildError::sink(&sink, m))?;
                let ready = Readiness::default();
                let transport = KafkaSink::new(
                    &sink,
                    client,
                    ready.clone(),
                    ctx.sink_metrics
                        .connected
                        .with_label_values(&[sink.as_str()]),
                    &metrics,
                    ctx.stop.clone(),
                )
                .map_err(|e| BuildError::sink(&sink, e.to_string()))?;
                ctx.connections
                    .kafka
                    .insert(name.clone(), transport.producer());
                ctx.add_driver(&sink, transport, cluster.queue, Some(ready));
            }
            Ok(())
        })
    }

    fn resolve<'a>(
        &'a self,
        ctx: ResolveContext<'a>,
        s: &'a Subscription,
    ) -> BoxFuture<'a, Result<(String, Target), Unresolved>> {
        let resolved = (|| {
            let k = s
                .kafka_config
                .as_ref()
                .ok_or(("kafkaConfig", "required".to_string()))?;
            let cluster = ctx
                .config
                .sinks
                .kafka_cluster_for(k)
                .map_err(|m| ("kafkaConfig.cluster", m))?;
            Ok((
                format!("kafka.{cluster}"),
                Target::Kafka {
                    topic: k.topic.clone(),
                    key: k.key.clone(),
                },
            ))
        })();
        Box::pin(std::future::ready(resolved))
    }

    fn check_destination<'a>(
        &'a self,
        ctx: ResolveContext<'a>,
        sink: &'a str,
        target: &'a Target,
    ) -> BoxFuture<'a, Result<(), Destination>> {
        Box::pin(async move {
            let Target::Kafka { topic, .. } = target else {
                return Ok(());
            };
            let cluster = sink.trim_start_matches("kafka.").to_string();
            let Some(c) = ctx.config.sinks.kafka.get(&cluster) else {
                return Ok(());
            };
            // Asked with a client of its own: the sink's producer keeps only the metadata its sends need (a
            // topic's cached leader would otherwise outlive a broker that forgot the topic).
            let client = c.base_client_config().map_err(Destination::Missing)?;
            let t = topic.clone();
            let metadata = tokio::task::spawn_blocking(move || {
                use rdkafka::consumer::Consumer;
                let probe: rdkafka::consumer::BaseConsumer =
                    client.create().map_err(|e| e.to_string())?;
                probe
                    .fetch_metadata(Some(&t), crate::sinks::kind::DESTINATION_WAIT)
                    .map_err(|e| e.to_string())
            })
            .await
            .map_err(|e| Destination::Unreachable(e.to_string()))?
            .map_err(|e| Destination::Unreachable(format!("Kafka cluster `{cluster}`: {e}")))?;
            let exists = metadata
                .topics()
                .iter()
                .any(|m| m.name() == topic && m.error().is_none() && !m.partitions().is_empty());
            drop(metadata);
            match (exists, &c.create_topics) {
                (true, _) => Ok(()),
                (false, Some(create)) => create_topic(c, &cluster, topic, create).await,
                (false, None) => Err(Destination::Missing(format!(
                    "the Kafka topic `{topic}` does not exist in cluster `{cluster}`: create it (or fix kafkaConfig.topic, or set [sinks.kafka.{cluster}.create_topics])"
                ))),
            }
        })
    }

    fn reads_payload(&self, target: &Target) -> bool {
        matches!(
            target,
            Target::Kafka {
                key: KafkaKey::Pointer(_),
                ..
            }
        )
    }
}

/// Create `topic` as `[sinks.kafka.NAME.create_topics]` says (the destination check found it missing). An
/// existing topic (another replica was first) counts as created.
async fn create_topic(
    c: &super::KafkaClusterConfig,
    cluster: &str,
    topic: &str,
    create: &super::CreateTopics,
) -> Result<(), Destination> {
    use super::CreateTopicError;
    let base = c.base_client_config().map_err(Destination::Missing)?;
    let wait = crate::sinks::kind::DESTINATION_WAIT;
    let (partitions, replication) = (create.partitions, create.replication_factor);
    match super::create_topic(&base, topic, partitions, replication, &[], wait).await {
        Ok(created) => {
            if created {
                tracing::info!(topic, cluster, "created a missing Kafka topic (create_topics)");
            }
            Ok(())
        }
        Err(CreateTopicError::Refused(e)) => Err(Destination::Missing(format!(
            "the Kafka topic `{topic}` does not exist in cluster `{cluster}` and could not be created: {e}"
        ))),
        Err(e) => Err(Destination::Unreachable(format!(
            "Kafka cluster `{cluster}`: {e}"
        ))),
    }
}
