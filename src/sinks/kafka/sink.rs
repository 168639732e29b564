//! The Kafka worker: queue → librdkafka → delivery reports → `Delivery::finish`.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use futures_util::stream::{FuturesUnordered, StreamExt};
use prometheus::{Histogram, IntCounter, IntGauge};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use tokio_util::sync::CancellationToken;

use crate::event::{Delivery, Outcome};
use crate::model::KafkaKey;
use crate::queue::QueueReceiver;
use crate::sinks::{Readiness, SinkError, SinkWorker, Target};

/// How many deliveries the worker takes from the queue at once.
const TAKE: usize = 512;

pub struct KafkaSink {
    name: String,
    producer: FutureProducer,
    batch: Histogram,
    queue_full: IntCounter,
}

impl KafkaSink {
    /// Create the producer (no connection is made yet) and start probing the cluster for readiness.
    pub fn new(
        name: &str,
        config: rdkafka::ClientConfig,
        ready: Readiness,
        connected: IntGauge,
        batch: Histogram,
        metrics: &super::KafkaMetrics,
        stop: CancellationToken,
    ) -> Result<Self, KafkaError> {
        let producer: FutureProducer = config.create()?;
        let probe = producer.clone();
        let sink = name.to_string();
        // Readiness: the cluster answered a metadata request once.
        tokio::task::spawn_blocking(move || {
            let mut wait = Duration::from_millis(100);
            while !stop.is_cancelled() {
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
            name: name.to_string(),
            producer,
            batch,
            queue_full: metrics.queue_full.with_label_values(&[name]),
        })
    }
}

type InFlight = Pin<Box<dyn Future<Output = (Delivery, Outcome)> + Send>>;

impl SinkWorker for KafkaSink {
    fn run(
        self: Box<Self>,
        mut rx: QueueReceiver,
        stop: CancellationToken,
    ) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        Box::pin(async move {
            let mut inflight: FuturesUnordered<InFlight> = FuturesUnordered::new();
            let mut buf = Vec::with_capacity(TAKE);
            let mut open = true;
            loop {
                if !open && inflight.is_empty() {
                    break;
                }
                tokio::select! {
                    biased;
                    _ = stop.cancelled() => break,
                    Some((d, outcome)) = inflight.next(), if !inflight.is_empty() => d.finish(outcome),
                    n = rx.recv_many(&mut buf, TAKE), if open => {
                        if n == 0 {
                            open = false;
                            continue;
                        }
                        self.batch.observe(n as f64);
                        for d in buf.drain(..) {
                            self.enqueue(d, &mut inflight, &stop).await;
                        }
                    }
                }
            }
            // Grace period over: what is left was not delivered.
            for d in buf.drain(..) {
                d.finish(Err(SinkError::ShutDown));
            }
            let left = inflight.len();
            if left > 0 {
                tracing::warn!(sink = %self.name, left, "shutdown grace over with events still in flight to Kafka");
            }
            let producer = self.producer.clone();
            let _ = tokio::task::spawn_blocking(move || producer.flush(Duration::from_millis(500)))
                .await;
            drop(inflight);
            tracing::info!(sink = %self.name, "Kafka sink stopped");
        })
    }
}

impl KafkaSink {
    /// Hand one delivery to librdkafka, waiting (for an earlier report, or briefly) while its queue is full.
    async fn enqueue(
        &self,
        d: Delivery,
        inflight: &mut FuturesUnordered<InFlight>,
        stop: &CancellationToken,
    ) {
        let Target::Kafka { topic, key } = &d.route.target else {
            d.finish(Err(SinkError::Rejected("not a Kafka subscription".into())));
            return;
        };
        let key_bytes: Option<Vec<u8>> = match key {
            KafkaKey::None => None,
            KafkaKey::InvocationId => d
                .event
                .invocation_id
                .as_ref()
                .map(|s| s.as_bytes().to_vec()),
            KafkaKey::Pointer(p) => serde_json::from_slice::<serde_json::Value>(&d.event.body)
                .ok()
                .and_then(|v| {
                    v.pointer(p).map(|k| match k {
                        serde_json::Value::String(s) => s.clone().into_bytes(),
                        other => other.to_string().into_bytes(),
                    })
                }),
        };
        loop {
            let mut headers = OwnedHeaders::new_with_capacity(4)
                .insert(Header {
                    key: "trigger-id",
                    value: Some(d.event.trigger_id.as_bytes()),
                })
                .insert(Header {
                    key: "subscription-id",
                    value: Some(d.route.subscription_id.as_bytes()),
                })
                .insert(Header {
                    key: "content-type",
                    value: Some("application/json"),
                });
            if let Some(id) = &d.event.invocation_id {
                headers = headers.insert(Header {
                    key: "invocation-id",
                    value: Some(id.as_bytes()),
                });
            }
            let mut record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(topic)
                .payload(&d.event.body[..])
                .headers(headers);
            if let Some(k) = &key_bytes {
                record = record.key(&k[..]);
            }
            match self.producer.send_result(record).map_err(|(e, _)| e) {
                Ok(report) => {
                    inflight.push(Box::pin(async move {
                        let outcome = match report.await {
                            Ok(Ok(_)) => Ok(()),
                            Ok(Err((e, _))) => Err(classify(&e)),
                            Err(_canceled) => Err(SinkError::ShutDown),
                        };
                        (d, outcome)
                    }));
                    return;
                }
                Err(KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull)) => {
                    self.queue_full.inc();
                    // Room appears when a report arrives; finish that one meanwhile.
                    tokio::select! {
                        _ = stop.cancelled() => {
                            d.finish(Err(SinkError::ShutDown));
                            return;
                        }
                        Some((done, outcome)) = inflight.next(), if !inflight.is_empty() => done.finish(outcome),
                        _ = tokio::time::sleep(Duration::from_millis(10)) => {}
                    }
                }
                Err(e) => {
                    d.finish(Err(classify(&e)));
                    return;
                }
            }
        }
    }
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
