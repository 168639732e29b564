//! The Kafka transport: deliveries → librdkafka → delivery reports (driven by `sinks::driver`).

use std::time::Duration;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use prometheus::{IntCounter, IntGauge};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Message, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use tokio_util::sync::CancellationToken;

use crate::envelope::Binding;
use crate::model::KafkaKey;
use crate::pipeline::{Delivery, Outcome};
use crate::sinks::driver::{InFlight, Transport};
use crate::sinks::{Readiness, SinkError, Target};

/// How many deliveries the worker takes from the queue at once.
const TAKE: usize = 512;

pub struct KafkaSink {
    producer: FutureProducer,
    queue_full: IntCounter,
    stop: CancellationToken,
}

/// What one Kafka event costs its queue besides its body (`SinkKind::event_overhead_bytes`): librdkafka's
/// record and its copies of the headers, the delivery-report channel and the relay's state of the send, until
/// the report. Measured with the broker stopped (`kafka-memory` in BENCHMARKS.md): peak RSS over the events
/// held, less their bodies, came to 2.0–2.1 KiB per event (the load's own fixed part spread over them
/// included), so the queue bounds memory to within a few percent (1.01× its `max_bytes` there).
pub const EVENT_OVERHEAD_BYTES: u32 = 2048;

impl KafkaSink {
    /// Create the producer (no connection is made yet) and start probing the cluster for readiness.
    pub fn new(
        name: &str,
        config: rdkafka::ClientConfig,
        ready: Readiness,
        connected: IntGauge,
        metrics: &super::KafkaMetrics,
        stop: CancellationToken,
    ) -> Result<Self, KafkaError> {
        let producer: FutureProducer = config.create()?;
        let probe = producer.clone();
        let sink = name.to_string();
        let probe_stop = stop.clone();
        // Readiness: the cluster answered a metadata request once.
        tokio::task::spawn_blocking(move || {
            let mut wait = Duration::from_millis(100);
            while !probe_stop.is_cancelled() {
                match probe.client().fetch_metadata(None, Duration::from_secs(2)) {
                    Ok(_) => {
                        ready.set();
                        connected.set(1);
                        tracing::info!(sink = %sink, "connected to Kafka");
                        return;
                    }
                    Err(e) => {
                        tracing::warn!(sink = %sink, error = %e, "Kafka cluster not reachable yet; retrying");
                        std::thread::sleep(wait);
                        wait = (wait * 2).min(Duration::from_secs(5));
                    }
                }
            }
        });
        Ok(Self {
            producer,
            queue_full: metrics.queue_full.with_label_values(&[name]),
            stop,
        })
    }
}

impl Transport for KafkaSink {
    fn take(&self) -> usize {
        TAKE
    }

    fn max_in_flight(&self) -> usize {
        // librdkafka batches and retries; the relay's queue already bounds what is in flight.
        usize::MAX
    }

    fn start(&self, batch: Vec<Delivery>) -> BoxFuture<'_, Vec<InFlight>> {
        Box::pin(async move {
            let mut out = Vec::with_capacity(batch.len());
            for d in batch {
                out.push(self.produce(d).await);
            }
            out
        })
    }

    fn flush(&self, within: Duration) -> BoxFuture<'_, ()> {
        let producer = self.producer.clone();
        Box::pin(async move {
            let _ = tokio::task::spawn_blocking(move || producer.flush(within)).await;
        })
    }
}

impl KafkaSink {
    /// The producer, shared with dead letters that go to this cluster.
    pub fn producer(&self) -> FutureProducer {
        self.producer.clone()
    }

    /// Hand one delivery to librdkafka (waiting briefly while its local queue is full); the returned future
    /// completes with the delivery report.
    ///
    /// librdkafka copies the record (`RD_KAFKA_MSG_F_COPY`), so once it has it the delivery lets go of the
    /// event's body ([`Delivery::release_body`]): one copy per in-flight event, owned by librdkafka and still
    /// counted by the delivery's queue reservation until the report. A failed report gives the record back
    /// ([`OwnedMessage`]), and its payload goes back on the delivery for the dead letter.
    async fn produce(&self, mut d: Delivery) -> InFlight {
        let route = d.route().clone();
        let Target::Kafka { topic, key } = &route.target else {
            return done(
                d,
                Err(SinkError::Rejected("not a Kafka subscription".into())),
            );
        };
        let key_bytes: Option<Vec<u8>> = match key {
            KafkaKey::None => None,
            KafkaKey::InvocationId => d
                .event()
                .invocation_id
                .as_ref()
                .map(|s| s.as_bytes().to_vec()),
            KafkaKey::Pointer(p) => d.event().json().and_then(|v| {
                v.pointer(p).map(|k| match k {
                    serde_json::Value::String(s) => s.clone().into_bytes(),
                    other => other.to_string().into_bytes(),
                })
            }),
        };
        // librdkafka retries inside the producer; the relay sees one attempt.
        d.attempts = 1;
        let body = crate::envelope::payload(&d);
        loop {
            let headers = {
                let header_set = crate::envelope::headers(&d, Binding::Kafka);
                let mut headers = OwnedHeaders::new_with_capacity(header_set.len());
                for (k, v) in &header_set {
                    headers = headers.insert(Header {
                        key: k,
                        value: Some(v.as_bytes()),
                    });
                }
                headers
            };
            let mut record: FutureRecord<'_, [u8], [u8]> =
                FutureRecord::to(topic).payload(&body[..]).headers(headers);
            if let Some(k) = &key_bytes {
                record = record.key(&k[..]);
            }
            match self.producer.send_result(record).map_err(|(e, _)| e) {
                Ok(report) => {
                    drop(body);
                    d.release_body();
                    return Box::pin(async move {
                        let outcome = match report.await {
                            Ok(Ok(_)) => Ok(()),
                            Ok(Err((e, record))) => {
                                d.restore_body(record_payload(&record));
                                Err(classify(&e))
                            }
                            Err(_canceled) => Err(SinkError::ShutDown),
                        };
                        vec![(d, outcome)]
                    });
                }
                Err(KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull)) => {
                    self.queue_full.inc();
                    // librdkafka's delivery thread makes room on its own; wait a little, unless stopping.
                    tokio::select! {
                        _ = self.stop.cancelled() => return done(d, Err(SinkError::ShutDown)),
                        _ = tokio::time::sleep(Duration::from_millis(5)) => {}
                    }
                }
                Err(e) => return done(d, Err(classify(&e))),
            }
        }
    }
}

/// The payload of a record librdkafka gave back (empty when it had none).
fn record_payload(record: &OwnedMessage) -> Bytes {
    record
        .payload()
        .map(Bytes::copy_from_slice)
        .unwrap_or_default()
}

/// A send that finished before it started.
fn done(d: Delivery, outcome: Outcome) -> InFlight {
    Box::pin(std::future::ready(vec![(d, outcome)]))
}

/// Map a final librdkafka error to the relay's.
fn classify(e: &KafkaError) -> SinkError {
    let code = e.rdkafka_error_code();
    match code {
        Some(RDKafkaErrorCode::MessageTimedOut) => SinkError::TimedOut(e.to_string()),
        Some(
            RDKafkaErrorCode::MessageSizeTooLarge
            | RDKafkaErrorCode::InvalidMessageSize
            | RDKafkaErrorCode::InvalidRecord
            | RDKafkaErrorCode::TopicAuthorizationFailed
            | RDKafkaErrorCode::ClusterAuthorizationFailed
            | RDKafkaErrorCode::UnknownTopic
            | RDKafkaErrorCode::UnknownTopicOrPartition,
        ) => SinkError::Rejected(e.to_string()),
        _ => SinkError::Unavailable(e.to_string()),
    }
}
