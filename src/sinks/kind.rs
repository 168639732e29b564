//! A sink kind, as the rest of the relay sees it: one trait ([`SinkKind`]) that each folder under `src/sinks/`
//! implements in its `kind.rs`, and one list ([`KINDS`](super::KINDS)) that registers them (Vector's
//! `SinkConfig::build`). Config validation (`config`), the routing table (`routes`) and start-up (`relay`)
//! iterate over the list; none of them names a kind.
//!
//! What a kind answers:
//! - its subscription `type` and ISC's name for that type's config field (`kafkaConfig`);
//! - the checks of its `[sinks.*]` tables and of a subscription's config, with key paths;
//! - its queues (every queue must hold the largest event the ingress accepts), and what one event costs them
//!   besides its body;
//! - how it starts: its metrics, its sinks (queue + worker + readiness), the connections dead letters share;
//! - the [`Target`] and sink name a subscription resolves to, and whether that destination exists.
//!
//! The trait is object safe (`&'static dyn SinkKind`), so the list is a plain slice and adding a kind cannot
//! change the order or shape of anything else. Async answers are boxed futures, as [`SinkWorker`] does.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use futures_util::future::BoxFuture;
use prometheus::Registry;
use tokio_util::sync::CancellationToken;

use serde::{Deserialize, Serialize};

use crate::keypath::{pick_named, ErrorSink};
use crate::model::{Subscription, SubscriptionType};
use crate::pipeline::queue::{self, Queue, QueueReceiver};
use crate::pipeline::QueueConfig;
use crate::sinks::http::EgressPolicy;
use crate::sinks::metrics::SinkMetrics;
use crate::sinks::{Readiness, SinkWorker, Target};

/// `[sinks]`: every kind's tables (the config file's field names, spelled out).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SinksConfig {
    /// Kafka clusters by name; subscriptions name one in `kafkaConfig.cluster`.
    #[serde(default)]
    pub kafka: BTreeMap<String, super::kafka::KafkaClusterConfig>,
    /// NATS connections by name; subscriptions name one in `natsConfig.connection`.
    #[serde(default)]
    pub nats: BTreeMap<String, super::nats::NatsConnectionConfig>,
    /// Settings of the sink every `EVENTBRIDGE` subscription goes through.
    #[serde(default)]
    pub eventbridge: super::eventbridge::EventBridgeSinkConfig,
    /// Settings of the sink every `HTTP` subscription goes through.
    #[serde(default)]
    pub http: super::http::HttpSinkConfig,
    /// The queue of the `DISCARD` sink.
    #[serde(default)]
    pub discard: super::stdout::StdoutConfig,
    /// The queue of the `STDOUT` sink.
    #[serde(default)]
    pub stdout: super::stdout::StdoutConfig,
}

impl SinksConfig {
    /// The name of the Kafka cluster a subscription publishes to.
    pub fn kafka_cluster_for<'a>(
        &'a self,
        k: &'a crate::model::KafkaSubscriptionConfig,
    ) -> Result<&'a str, String> {
        pick_named(
            "Kafka cluster",
            "sinks.kafka",
            self.kafka.keys(),
            k.cluster.as_deref(),
        )
    }

    /// The name of the NATS connection a subscription publishes to.
    pub fn nats_connection_for<'a>(
        &'a self,
        n: &'a crate::model::NatsSubscriptionConfig,
    ) -> Result<&'a str, String> {
        pick_named(
            "NATS connection",
            "sinks.nats",
            self.nats.keys(),
            n.connection.as_deref(),
        )
    }
}

/// What a kind reads of the config: the `[sinks]` tables, the delivery deadline, and the config file's
/// subscriptions (an EventBridge endpoint one of them names is the operator's, not an API caller's).
#[derive(Clone, Copy)]
pub(crate) struct Settings<'a> {
    pub sinks: &'a SinksConfig,
    pub delivery_timeout_ms: u64,
    pub subscriptions: &'a [Subscription],
}

/// Why a destination check did not pass.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Destination {
    /// The broker says it is not there (or the subscription cannot be routed at all).
    #[error("{0}")]
    Missing(String),
    /// The broker did not answer the question.
    #[error("{0}")]
    Unreachable(String),
}

impl Destination {
    /// Asking again later may pass (the broker was away); a missing destination stays missing until someone acts.
    pub fn is_retriable(&self) -> bool {
        matches!(self, Self::Unreachable(_))
    }
}

/// How long a destination check waits for the broker's answer.
pub(crate) const DESTINATION_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Why a kind could not start its sinks.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BuildError {
    #[error("sink `{sink}`: {message}")]
    Sink { sink: String, message: String },
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
}

impl BuildError {
    pub(crate) fn sink(sink: &str, message: impl Into<String>) -> Self {
        Self::Sink {
            sink: sink.to_string(),
            message: message.into(),
        }
    }
}

/// Why a subscription does not resolve to a destination: the key under the subscription (`kafkaConfig.cluster`)
/// and what is wrong.
pub(crate) type Unresolved = (&'static str, String);

/// The connections routes and dead letters share, by configured name, filled in while the kinds start.
#[derive(Default)]
pub(crate) struct Connections {
    /// `[sinks.kafka.NAME]`'s producer (Kafka subscriptions and Kafka dead letters).
    pub kafka: BTreeMap<String, rdkafka::producer::FutureProducer>,
    /// `[sinks.nats.NAME]`'s client (NATS subscriptions, NATS dead letters, JetStream destination checks).
    pub nats: BTreeMap<String, async_nats::Client>,
    /// EventBridge clients by (region, endpoint), created on first use.
    #[allow(clippy::type_complexity)]
    pub eventbridge:
        tokio::sync::Mutex<Vec<((String, Option<String>), aws_sdk_eventbridge::Client)>>,
    /// Where API-set endpoints (webhooks, EventBridge `endpointUrl`) may connect.
    pub egress: Arc<EgressPolicy>,
}

/// What a subscription is resolved against: the config and the shared connections.
pub(crate) struct ResolveContext<'a> {
    pub config: Settings<'a>,
    pub connections: &'a Connections,
}

/// The sinks the kinds started: queue senders by sink name, and the workers `relay` runs on them.
#[derive(Default)]
pub(crate) struct SinkSet {
    pub queues: BTreeMap<String, Queue>,
    pub workers: Vec<(String, Box<dyn SinkWorker>, QueueReceiver, Readiness)>,
    pub readiness: Vec<(String, Readiness)>,
}

impl SinkSet {
    /// A sink with no connection to wait for (EventBridge, HTTP, DISCARD): ready at once; failures show per event.
    pub fn add_connectionless(
        &mut self,
        name: &str,
        cap: (QueueConfig, u32),
        worker: Box<dyn SinkWorker>,
        metrics: &SinkMetrics,
    ) {
        let ready = Readiness::default();
        ready.set();
        metrics.connected.with_label_values(&[name]).set(1);
        self.add(name, cap, worker, ready, metrics);
    }

    /// A sink whose worker sets `ready` once it has reached its destination. `cap`: the queue's capacity and
    /// the bytes each event counts besides its body ([`SinkKind::event_overhead_bytes`]).
    pub fn add(
        &mut self,
        name: &str,
        (cap, event_overhead): (QueueConfig, u32),
        worker: Box<dyn SinkWorker>,
        ready: Readiness,
        metrics: &SinkMetrics,
    ) {
        let (depth_events, depth_bytes) = metrics.depth(name, &cap);
        let (q, rx) = queue::bounded(name, cap, event_overhead, depth_events, depth_bytes);
        self.queues.insert(name.to_string(), q);
        self.workers
            .push((name.to_string(), worker, rx, ready.clone()));
        self.readiness.push((name.to_string(), ready));
    }
}

/// What a kind starts with, and where it puts what it started.
pub(crate) struct StartContext<'a> {
    pub config: Settings<'a>,
    pub registry: &'a Registry,
    pub sink_metrics: &'a SinkMetrics,
    /// Cancelled when the grace period is over (and when start-up fails half way).
    pub stop: &'a CancellationToken,
    /// This process, as its webhooks name it in `Via`.
    pub instance: &'a str,
    /// The types of the config file's enabled subscriptions.
    pub used: &'a HashSet<SubscriptionType>,
    /// The Triggers API is on: subscriptions of ISC's types may arrive at any time.
    pub api_on: bool,
    pub sinks: &'a mut SinkSet,
    pub connections: &'a mut Connections,
    /// The kind's [`SinkKind::event_overhead_bytes`], which its queues count per event.
    pub event_overhead: u32,
}

impl StartContext<'_> {
    /// Run `transport` in the shared [`Driver`](crate::sinks::driver::Driver) loop as sink `name`, behind a
    /// queue of `cap`. `ready`: set by the transport once it reached its destination; `None` for a sink with no
    /// connection to wait for (ready at once, failures show per event).
    pub fn add_driver<T: crate::sinks::driver::Transport>(
        &mut self,
        name: &str,
        transport: T,
        cap: QueueConfig,
        ready: Option<Readiness>,
    ) {
        let worker = Box::new(crate::sinks::driver::Driver::new(
            name,
            transport,
            self.sink_metrics.batch(name),
        ));
        let cap = (cap, self.event_overhead);
        match ready {
            Some(ready) => self.sinks.add(name, cap, worker, ready, self.sink_metrics),
            None => self
                .sinks
                .add_connectionless(name, cap, worker, self.sink_metrics),
        }
    }

    /// Whether subscriptions of `ty` can be routed here: the config file has one, or the API may add one.
    pub fn needed(&self, ty: SubscriptionType) -> bool {
        self.used.contains(&ty) || (self.api_on && ty.is_isc())
    }

    pub fn delivery_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.config.delivery_timeout_ms)
    }
}

/// One sink kind (one folder under `src/sinks/`). See the module doc.
pub(crate) trait SinkKind: Sync {
    /// The subscription `type` this kind delivers.
    fn subscription_type(&self) -> SubscriptionType;

    /// ISC's name of the subscription field holding this type's config (`httpConfig`), and whether `s` has it.
    /// `None` for types that take no config (STDOUT, DISCARD).
    fn config_field(&self, s: &Subscription) -> Option<(&'static str, bool)>;

    /// Check this kind's `[sinks.*]` tables.
    fn check_tables(&self, config: &Settings, errors: &mut dyn ErrorSink);

    /// This kind's queues, by key path (`sinks.kafka.main.queue`).
    fn queues(&self, config: &Settings) -> Vec<(String, QueueConfig)>;

    /// What one event costs this kind's queues besides its body, in bytes: what holds it while it is queued
    /// and in flight (the client's copy of its record, its headers, the relay's state of the send), so a
    /// queue's `max_bytes` bounds memory rather than bodies. Measured, not derived (BENCHMARKS.md,
    /// `kafka-memory`); 0 where an event costs little beyond its shared body.
    fn event_overhead_bytes(&self) -> u32 {
        0
    }

    /// Check a subscription of this type; `path` is the subscription's (`subscriptions[3]`).
    fn check_subscription(
        &self,
        config: &Settings,
        path: &str,
        s: &Subscription,
        errors: &mut dyn ErrorSink,
    );

    /// Whether a delivery of this type can fail (and so have a dead letter).
    fn can_fail(&self) -> bool {
        true
    }

    /// Whether a CloudEvents envelope applies to this type's messages.
    fn wraps_cloudevents(&self) -> bool {
        false
    }

    /// Register this kind's metrics and start its sinks (those the config and the API can use).
    fn start<'a>(&'a self, ctx: StartContext<'a>) -> BoxFuture<'a, Result<(), BuildError>>;

    /// The sink `s` goes through and what its deliveries need to know.
    fn resolve<'a>(
        &'a self,
        ctx: ResolveContext<'a>,
        s: &'a Subscription,
    ) -> BoxFuture<'a, Result<(String, Target), Unresolved>>;

    /// Whether the destination exists, asked of the broker (Vector's sink healthchecks). `Ok` where there is
    /// nothing to ask.
    fn check_destination<'a>(
        &'a self,
        _ctx: ResolveContext<'a>,
        _sink: &'a str,
        _target: &'a Target,
    ) -> BoxFuture<'a, Result<(), Destination>> {
        Box::pin(std::future::ready(Ok(())))
    }

    /// Whether routing to `target` reads the payload as JSON (a key taken from it, a line that embeds it).
    fn reads_payload(&self, _target: &Target) -> bool {
        false
    }
}

/// The registered kind that delivers `ty`, if the relay delivers it at all (INLINE, SCRIPT and WORKFLOW run
/// inside ISC).
pub(crate) fn kind_of(ty: SubscriptionType) -> Option<&'static dyn SinkKind> {
    super::KINDS
        .iter()
        .copied()
        .find(|k| k.subscription_type() == ty)
}
