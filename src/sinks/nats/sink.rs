//! The NATS worker: queue → publish (core: batch + one flush; JetStream: bounded window of acks) → finish.

use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

use async_nats::connection::State;
use async_nats::jetstream::context::{PublishError, PublishErrorKind};
use async_nats::jetstream::message::PublishMessage;
use async_nats::HeaderMap;
use futures_util::stream::{FuturesUnordered, StreamExt};
use prometheus::{Histogram, IntCounter, IntGauge};
use tokio_util::sync::CancellationToken;

use crate::event::{Delivery, Outcome};
use crate::queue::QueueReceiver;
use crate::sinks::{Readiness, SinkError, SinkWorker, Target};

const TAKE: usize = 256;

pub struct NatsSink {
    name: String,
    client: async_nats::Client,
    js: async_nats::jetstream::Context,
    batch: Histogram,
    retries: IntCounter,
    max_in_flight: usize,
    delivery_timeout: Duration,
}

impl NatsSink {
    /// Connect in the background (reconnecting forever) and watch for the first connection (readiness).
    pub async fn new(
        name: &str,
        config: &super::NatsConnectionConfig,
        delivery_timeout: Duration,
        ready: Readiness,
        sink_metrics: &crate::sinks::metrics::SinkMetrics,
        metrics: &super::NatsMetrics,
        stop: CancellationToken,
    ) -> Result<Self, String> {
        let options = config
            .options()
            .await
            .map_err(|e| format!("credentials: {e}"))?;
        let client = options
            .connect(config.servers.clone())
            .await
            .map_err(|e| format!("cannot connect: {e}"))?;
        let connected: IntGauge = sink_metrics.connected.with_label_values(&[name]);
        let batch = sink_metrics.batch(name);
        let probe = client.clone();
        let sink = name.to_string();
        tokio::spawn(async move {
            loop {
                if probe.connection_state() == State::Connected {
                    ready.set();
                    connected.set(1);
                    tracing::info!(sink = %sink, "connected to NATS");
                    return;
                }
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                }
            }
        });
        Ok(Self {
            name: name.to_string(),
            js: async_nats::jetstream::new(client.clone()),
            client,
            batch,
            retries: metrics.retries.with_label_values(&[name]),
            max_in_flight: config.max_in_flight,
            delivery_timeout,
        })
    }
}

fn headers(d: &Delivery) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert("trigger-id", &*d.event.trigger_id);
    h.insert("subscription-id", &*d.route.subscription_id);
    h.insert("content-type", "application/json");
    if let Some(id) = &d.event.invocation_id {
        h.insert("invocation-id", &**id);
    }
    h
}

fn classify(e: &PublishError) -> SinkError {
    match e.kind() {
        PublishErrorKind::StreamNotFound
        | PublishErrorKind::MaxPayloadExceeded
        | PublishErrorKind::WrongLastMessageId
        | PublishErrorKind::WrongLastSequence => SinkError::Rejected(e.to_string()),
        _ => SinkError::Unavailable(e.to_string()),
    }
}

type InFlight = Pin<Box<dyn Future<Output = (Delivery, Outcome)> + Send>>;

impl NatsSink {
    /// One JetStream delivery, retried with backoff until its deadline (safe: `Nats-Msg-Id` dedupes).
    fn jetstream(&self, d: Delivery) -> InFlight {
        let js = self.js.clone();
        let retries = self.retries.clone();
        let deadline = d.event.received + self.delivery_timeout;
        Box::pin(async move {
            let Target::Nats {
                subject,
                expected_stream,
                ..
            } = &d.route.target
            else {
                return (
                    d,
                    Err(SinkError::Rejected("not a NATS subscription".into())),
                );
            };
            let mut backoff = Duration::from_millis(50);
            loop {
                let mut msg = PublishMessage::build()
                    .payload(d.event.body.clone())
                    .headers(headers(&d));
                if let Some(id) = &d.event.invocation_id {
                    msg = msg.message_id(&**id);
                }
                if let Some(s) = expected_stream {
                    msg = msg.expected_stream(s);
                }
                let result = match js.send_publish(subject.clone(), msg).await {
                    Ok(ack) => ack.await.map(|_| ()),
                    Err(e) => Err(e),
                };
                let err = match result {
                    Ok(()) => return (d, Ok(())),
                    Err(e) => classify(&e),
                };
                if !err.is_retriable() {
                    return (d, Err(err));
                }
                if Instant::now() + backoff >= deadline {
                    return (d, Err(SinkError::TimedOut(err.to_string())));
                }
                retries.inc();
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        })
    }

    /// Core NATS: publish the batch, then one flush for all of it.
    async fn core(&self, batch: &mut Vec<Delivery>) {
        let mut sent = Vec::with_capacity(batch.len());
        for d in batch.drain(..) {
            let Target::Nats { subject, .. } = &d.route.target else {
                d.finish(Err(SinkError::Rejected("not a NATS subscription".into())));
                continue;
            };
            let r = self
                .client
                .publish_with_headers(subject.clone(), headers(&d), d.event.body.clone())
                .await;
            match r {
                Ok(()) => sent.push(d),
                Err(e) => d.finish(Err(SinkError::Rejected(e.to_string()))),
            }
        }
        if sent.is_empty() {
            return;
        }
        let deadline = sent
            .iter()
            .map(|d| d.event.received)
            .min()
            .unwrap_or_else(Instant::now)
            + self.delivery_timeout;
        let outcome = match tokio::time::timeout_at(deadline.into(), self.client.flush()).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(SinkError::Unavailable(e.to_string())),
            Err(_) => Err(SinkError::TimedOut("NATS flush".into())),
        };
        for d in sent {
            d.finish(outcome.clone());
        }
    }
}

impl SinkWorker for NatsSink {
    fn run(
        self: Box<Self>,
        mut rx: QueueReceiver,
        stop: CancellationToken,
    ) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        Box::pin(async move {
            let mut inflight: FuturesUnordered<InFlight> = FuturesUnordered::new();
            let mut buf = Vec::with_capacity(TAKE);
            let mut core = Vec::with_capacity(TAKE);
            let mut open = true;
            loop {
                if !open && inflight.is_empty() {
                    break;
                }
                let room = self.max_in_flight.saturating_sub(inflight.len()).min(TAKE);
                tokio::select! {
                    biased;
                    _ = stop.cancelled() => break,
                    Some((d, outcome)) = inflight.next(), if !inflight.is_empty() => d.finish(outcome),
                    n = rx.recv_many(&mut buf, room), if open && room > 0 => {
                        if n == 0 {
                            open = false;
                            continue;
                        }
                        self.batch.observe(n as f64);
                        for d in buf.drain(..) {
                            match d.route.target {
                                Target::Nats { jetstream: true, .. } => inflight.push(self.jetstream(d)),
                                _ => core.push(d),
                            }
                        }
                        if !core.is_empty() {
                            self.core(&mut core).await;
                        }
                    }
                }
            }
            for d in buf.drain(..).chain(core.drain(..)) {
                d.finish(Err(SinkError::ShutDown));
            }
            let _ = tokio::time::timeout(Duration::from_millis(500), self.client.flush()).await;
            tracing::info!(sink = %self.name, left = inflight.len(), "NATS sink stopped");
        })
    }
}
