//! The NATS transport: core (publish a batch + one flush) or JetStream (one ack per event, retried), driven
//! by `sinks::driver` (which bounds the window of unacknowledged events to `max_in_flight`).

use std::time::{Duration, Instant};

use async_nats::connection::State;
use async_nats::jetstream::context::{PublishError, PublishErrorKind};
use async_nats::jetstream::message::PublishMessage;
use async_nats::HeaderMap;
use futures_util::future::BoxFuture;
use prometheus::{IntCounter, IntGauge};
use tokio_util::sync::CancellationToken;

use crate::envelope::Binding;
use crate::pipeline::Delivery;
use crate::sinks::driver::{InFlight, Transport};
use crate::sinks::retry::Backoff;
use crate::sinks::{Readiness, SinkError, Target};

const TAKE: usize = 256;

pub struct NatsSink {
    client: async_nats::Client,
    js: async_nats::jetstream::Context,
    retries: IntCounter,
    max_in_flight: usize,
    delivery_timeout: Duration,
}

impl NatsSink {
    /// The connection, shared with dead letters that go to it.
    pub fn client(&self) -> async_nats::Client {
        self.client.clone()
    }

    /// Connect in the background (reconnecting forever) and watch for the first connection (readiness).
    pub async fn new(
        name: &str,
        config: &super::NatsConnectionConfig,
        delivery_timeout: Duration,
        ready: Readiness,
        sink_metrics: &crate::sinks::metrics::SinkMetrics,
        retries: IntCounter,
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
            js: async_nats::jetstream::new(client.clone()),
            client,
            retries,
            max_in_flight: config.max_in_flight,
            delivery_timeout,
        })
    }
}

fn headers(d: &Delivery) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in crate::envelope::headers(d, Binding::Nats) {
        h.insert(k, &*v);
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

impl NatsSink {
    /// One JetStream delivery, retried with backoff until its deadline (safe: `Nats-Msg-Id` dedupes).
    fn jetstream(&self, mut d: Delivery) -> InFlight {
        let js = self.js.clone();
        let retries = self.retries.clone();
        let deadline = d.event().received + self.delivery_timeout;
        Box::pin(async move {
            let route = d.route().clone();
            let Target::Nats {
                subject,
                expected_stream,
                ..
            } = &route.target
            else {
                return vec![(
                    d,
                    Err(SinkError::Rejected("not a NATS subscription".into())),
                )];
            };
            let mut backoff = Backoff::new(Duration::from_millis(50));
            loop {
                d.attempts += 1;
                let mut msg = PublishMessage::build()
                    .payload(crate::envelope::payload(&d))
                    .headers(headers(&d));
                if let Some(id) = &d.event().invocation_id {
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
                    Ok(()) => return vec![(d, Ok(()))],
                    Err(e) => classify(&e),
                };
                if !err.is_retriable() {
                    return vec![(d, Err(err))];
                }
                let wait = backoff.wait(None);
                if !Backoff::fits(wait, deadline) {
                    return vec![(d, Err(SinkError::TimedOut(err.to_string())))];
                }
                retries.inc();
                backoff.sleep(wait).await;
            }
        })
    }

    /// Core NATS: publish the batch now (in order), then one flush for all of it in the returned future.
    async fn core(&self, batch: Vec<Delivery>) -> InFlight {
        let mut sent = Vec::with_capacity(batch.len());
        let mut failed = Vec::new();
        for mut d in batch {
            d.attempts = 1;
            let Target::Nats { subject, .. } = &d.route().target else {
                failed.push((
                    d,
                    Err(SinkError::Rejected("not a NATS subscription".into())),
                ));
                continue;
            };
            let r = self
                .client
                .publish_with_headers(subject.clone(), headers(&d), crate::envelope::payload(&d))
                .await;
            match r {
                Ok(()) => sent.push(d),
                Err(e) => failed.push((d, Err(SinkError::Rejected(e.to_string())))),
            }
        }
        let client = self.client.clone();
        let delivery_timeout = self.delivery_timeout;
        Box::pin(async move {
            if sent.is_empty() {
                return failed;
            }
            let deadline = sent
                .iter()
                .map(|d| d.event().received)
                .min()
                .unwrap_or_else(Instant::now)
                + delivery_timeout;
            let outcome = match tokio::time::timeout_at(deadline.into(), client.flush()).await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(SinkError::Unavailable(e.to_string())),
                Err(_) => Err(SinkError::TimedOut("NATS flush".into())),
            };
            failed.extend(sent.into_iter().map(|d| (d, outcome.clone())));
            failed
        })
    }
}

impl Transport for NatsSink {
    fn take(&self) -> usize {
        TAKE
    }

    fn max_in_flight(&self) -> usize {
        self.max_in_flight
    }

    fn start(&self, batch: Vec<Delivery>) -> BoxFuture<'_, Vec<InFlight>> {
        Box::pin(async move {
            let mut out = Vec::new();
            let mut core = Vec::new();
            for d in batch {
                match d.route().target {
                    Target::Nats {
                        jetstream: true, ..
                    } => out.push(self.jetstream(d)),
                    _ => core.push(d),
                }
            }
            if !core.is_empty() {
                out.push(self.core(core).await);
            }
            out
        })
    }

    fn flush(&self, within: Duration) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let _ = tokio::time::timeout(within, self.client.flush()).await;
        })
    }
}
