//! Per-subscription dead letters: where an event goes when its destination refused it for good (rejected,
//! too large, retries exhausted), so an operator can inspect and replay it instead of reading logs.
//!
//! A dead letter is a Kafka topic or a NATS subject on a connection the relay already has. The record is the
//! exact payload; headers say which subscription, why, after how many attempts and with which last error
//! (`dead-letter-*`). Writing it is bounded by [`WRITE_TIMEOUT`]; a dead letter that cannot be written is
//! counted (`result="failed"`) and logged with the tracking id, and the delivery still ends as failed.
//! The ingress answer (in `delivered` mode) reports the destination's failure either way: the event did not
//! reach its destination, and ISC's retry may still deliver it.

use std::time::Duration;

use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};

use std::borrow::Cow;

use crate::envelope::Binding;
use crate::pipeline::Delivery;
use crate::sinks::SinkError;

/// The longest a dead-letter write may take.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// Where one subscription's dead letters go.
pub enum DeadLetter {
    Kafka {
        producer: FutureProducer,
        /// `kafka.NAME`
        sink: String,
        topic: String,
    },
    Nats {
        client: async_nats::Client,
        /// `nats.NAME`
        sink: String,
        subject: String,
        jetstream: bool,
    },
}

impl std::fmt::Debug for DeadLetter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Kafka { sink, topic, .. } => write!(f, "DeadLetter({sink} topic {topic})"),
            Self::Nats { sink, subject, .. } => write!(f, "DeadLetter({sink} subject {subject})"),
        }
    }
}

/// The headers of a dead letter, as `(name, value)` pairs.
/// The event's own headers on this binding ([`crate::envelope::headers`]), then why it is here.
fn dead_letter_headers<'a>(
    d: &'a Delivery,
    e: &SinkError,
    binding: Binding,
) -> Vec<crate::envelope::Header<'a>> {
    let mut h = crate::envelope::headers(d, binding);
    h.extend([
        (
            "subscription-name",
            Cow::Borrowed(&*d.route().subscription_name),
        ),
        ("tracking-id", Cow::Owned(d.event().tracking_id.to_string())),
        ("dead-letter-sink", Cow::Borrowed(&*d.route().sink)),
        ("dead-letter-reason", Cow::Borrowed(e.reason())),
        ("dead-letter-attempts", Cow::Owned(d.attempts.to_string())),
        ("dead-letter-error", Cow::Owned(e.to_string())),
    ]);
    h
}

/// Check a subscription's `deadLetter` (`path`): exactly one of a Kafka topic or a NATS subject, each checked
/// as the subscription's own destination of that kind would be.
pub(crate) fn check(
    config: &crate::sinks::kind::SinksConfig,
    path: &str,
    s: &crate::model::Subscription,
    dl: &crate::model::DeadLetterConfig,
    errors: &mut dyn crate::keypath::ErrorSink,
) {
    match (&dl.kafka_config, &dl.nats_config) {
        (Some(k), None) => {
            crate::sinks::kafka::check_config(config, &format!("{path}.kafkaConfig"), k, errors)
        }
        (None, Some(n)) => {
            let p = format!("{path}.natsConfig");
            crate::sinks::nats::check_config(config, &p, n, &s.trigger_id, errors);
            if n.expected_stream.is_some() {
                errors.error(
                    format!("{p}.expectedStream"),
                    "is not used for dead letters".into(),
                );
            }
        }
        _ => errors.error(
            path.to_string(),
            "set exactly one of kafkaConfig (a topic) or natsConfig (a subject)".into(),
        ),
    }
}

impl DeadLetter {
    /// Where `s`'s dead letters go (`dl` is its `deadLetter`), on a connection the relay already has.
    pub(crate) fn resolve(
        config: &crate::sinks::kind::SinksConfig,
        connections: &crate::sinks::kind::Connections,
        s: &crate::model::Subscription,
        dl: &crate::model::DeadLetterConfig,
    ) -> Result<DeadLetter, String> {
        if let Some(k) = &dl.kafka_config {
            let cluster = config.kafka_cluster_for(k)?;
            let producer = connections
                .kafka
                .get(cluster)
                .ok_or_else(|| format!("no Kafka cluster `{cluster}`"))?;
            return Ok(DeadLetter::Kafka {
                producer: producer.clone(),
                sink: format!("kafka.{cluster}"),
                topic: k.topic.clone(),
            });
        }
        if let Some(n) = &dl.nats_config {
            let connection = config.nats_connection_for(n)?;
            let client = connections
                .nats
                .get(connection)
                .ok_or_else(|| format!("no NATS connection `{connection}`"))?;
            return Ok(DeadLetter::Nats {
                client: client.clone(),
                sink: format!("nats.{connection}"),
                subject: crate::sinks::nats::render_subject(&n.subject, &s.trigger_id)?,
                jetstream: n.jetstream,
            });
        }
        Err("set kafkaConfig or natsConfig".into())
    }

    /// Write `d` with the reason it failed; count the result on the subscription's metrics.
    async fn write_one(&self, d: &Delivery, e: &SinkError) {
        let result = tokio::time::timeout(WRITE_TIMEOUT, self.send(d, e))
            .await
            .unwrap_or_else(|_| Err(format!("no answer within {} s", WRITE_TIMEOUT.as_secs())));
        d.route().metrics.dead_letter(result.is_ok());
        match result {
            Ok(()) => tracing::warn!(
                tracking_id = %d.event().tracking_id,
                trace_id = %d.event().trace.trace_id_hex(),
                subscription = %d.route().subscription_id,
                dead_letter = ?self,
                error = %e,
                "event written to the dead letter"
            ),
            Err(why) => tracing::error!(
                tracking_id = %d.event().tracking_id,
                trace_id = %d.event().trace.trace_id_hex(),
                subscription = %d.route().subscription_id,
                dead_letter = ?self,
                error = %e,
                dead_letter_error = %why,
                "event failed and could not be written to the dead letter"
            ),
        }
    }

    async fn send(&self, d: &Delivery, e: &SinkError) -> Result<(), String> {
        let body = crate::envelope::payload(d);
        match self {
            Self::Kafka {
                producer, topic, ..
            } => {
                let h = dead_letter_headers(d, e, Binding::Kafka);
                let mut headers = OwnedHeaders::new_with_capacity(h.len());
                for (k, v) in &h {
                    headers = headers.insert(Header {
                        key: k,
                        value: Some(v.as_bytes()),
                    });
                }
                let mut record: FutureRecord<'_, [u8], [u8]> =
                    FutureRecord::to(topic).payload(&body[..]).headers(headers);
                if let Some(id) = &d.event().invocation_id {
                    record = record.key(id.as_bytes());
                }
                producer
                    .send(record, rdkafka::util::Timeout::After(WRITE_TIMEOUT))
                    .await
                    .map(|_| ())
                    .map_err(|(e, _)| e.to_string())
            }
            Self::Nats {
                client,
                subject,
                jetstream,
                ..
            } => {
                let mut headers = async_nats::HeaderMap::new();
                for (k, v) in &dead_letter_headers(d, e, Binding::Nats) {
                    // Header values are one line.
                    headers.insert(*k, v.replace(['\r', '\n'], " ").as_str());
                }
                if *jetstream {
                    let js = async_nats::jetstream::new(client.clone());
                    let ack = js
                        .publish_with_headers(subject.clone(), headers, body)
                        .await
                        .map_err(|e| e.to_string())?;
                    ack.await.map(|_| ()).map_err(|e| e.to_string())
                } else {
                    client
                        .publish_with_headers(subject.clone(), headers, body)
                        .await
                        .map_err(|e| e.to_string())?;
                    client.flush().await.map_err(|e| e.to_string())
                }
            }
        }
    }
}

impl crate::pipeline::DeadLetterWriter for DeadLetter {
    fn write<'a>(
        &'a self,
        d: &'a Delivery,
        e: &'a SinkError,
    ) -> futures_util::future::BoxFuture<'a, ()> {
        Box::pin(self.write_one(d, e))
    }
}
