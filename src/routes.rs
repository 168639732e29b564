//! Subscriptions → routing table. One builder serves the start-up (config file) and every later change (the
//! Triggers API), so a subscription routes the same way whichever way it arrived.
//!
//! The builder holds what routes point at: each sink's queue (the senders), the Kafka producers and NATS
//! clients dead letters use, and the EventBridge clients (one per region and endpoint, created on first use).
//! While a builder exists the queues stay open; shutdown drops it (see `relay`).

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::catalog::Catalog;
use crate::config::Config;
use crate::model::{Subscription, SubscriptionType};
use crate::queue::Queue;
use crate::router::{RouteEntry, RouteSpec, Router, RouterMetrics};
use crate::sinks::dead_letter::DeadLetter;
use crate::sinks::eventbridge::EventBridgeTarget;
use crate::sinks::metrics::SinkMetrics;
use crate::sinks::nats::render_subject;
use crate::sinks::Target;

pub struct RouteBuilder {
    pub(crate) config: Arc<Config>,
    pub(crate) catalog: Catalog,
    pub(crate) queues: BTreeMap<String, Queue>,
    pub(crate) kafka_producers: BTreeMap<String, rdkafka::producer::FutureProducer>,
    pub(crate) nats_clients: BTreeMap<String, async_nats::Client>,
    #[allow(clippy::type_complexity)]
    pub(crate) eventbridge_clients:
        tokio::sync::Mutex<Vec<((String, Option<String>), aws_sdk_eventbridge::Client)>>,
    pub(crate) sink_metrics: SinkMetrics,
    pub(crate) router_metrics: RouterMetrics,
    pub(crate) statuses: Option<Arc<crate::status::StatusLog>>,
}

impl RouteBuilder {
    /// A table routing to every enabled subscription in `subs`.
    pub async fn build(&self, subs: &[Subscription]) -> Result<Router, String> {
        let mut router = Router::new(self.catalog.clone());
        for s in subs.iter().filter(|s| s.enabled) {
            if let Some((spec, queue)) = self.spec(s).await? {
                router.add(spec, queue, &self.router_metrics);
            }
        }
        Ok(router)
    }

    /// A table routing to every enabled subscription in `subs` that can be routed; each one that cannot is
    /// left out with an error log (a replica following a store written by replicas with another config).
    pub async fn build_lenient(&self, subs: &[Subscription]) -> Router {
        let mut router = Router::new(self.catalog.clone());
        for s in subs.iter().filter(|s| s.enabled) {
            match self.spec(s).await {
                Ok(Some((spec, queue))) => router.add(spec, queue, &self.router_metrics),
                Ok(None) => {}
                Err(e) => {
                    tracing::error!(subscription = %s.effective_id(), error = %e, "a subscription cannot be routed on this replica; it is left out")
                }
            }
        }
        router
    }

    /// Forget the metric series of a subscription that no longer exists, on every sink it could have used.
    pub fn forget(&self, subscription: &str) {
        self.router_metrics.forget(subscription);
        for sink in self.queues.keys() {
            self.sink_metrics.forget(sink, subscription);
        }
    }

    /// The route of one subscription, enabled or not (test invocations reach disabled ones too). `None`
    /// when its trigger is not in the catalog.
    pub async fn route(&self, s: &Subscription) -> Result<Option<RouteEntry>, String> {
        let Some((spec, queue)) = self.spec(s).await? else {
            return Ok(None);
        };
        let mut router = Router::new(self.catalog.clone());
        let trigger = spec.trigger_id.clone();
        router.add(spec, queue, &self.router_metrics);
        Ok(match router.lookup(&trigger) {
            crate::router::Lookup::Known(t) => t.routes.first().cloned(),
            _ => None,
        })
    }

    async fn eventbridge_client(
        &self,
        region: &str,
        endpoint: Option<&str>,
    ) -> aws_sdk_eventbridge::Client {
        let key = (region.to_string(), endpoint.map(str::to_string));
        let mut clients = self.eventbridge_clients.lock().await;
        if let Some((_, c)) = clients.iter().find(|(k, _)| *k == key) {
            return c.clone();
        }
        let c = crate::sinks::eventbridge::client(region, endpoint).await;
        clients.push((key, c.clone()));
        c
    }

    async fn spec(&self, s: &Subscription) -> Result<Option<(RouteSpec, Queue)>, String> {
        let config = &self.config;
        let named = |what: &str, m: String| format!("subscription `{}`: {what}: {m}", s.name);
        let (sink, target) = match s.kind {
            SubscriptionType::Kafka => {
                let k = s
                    .kafka_config
                    .as_ref()
                    .ok_or_else(|| named("kafkaConfig", "required".into()))?;
                let cluster = config
                    .kafka_cluster_for(k)
                    .map_err(|m| named("kafkaConfig.cluster", m))?;
                (
                    format!("kafka.{cluster}"),
                    Target::Kafka {
                        topic: k.topic.clone(),
                        key: k.key.clone(),
                    },
                )
            }
            SubscriptionType::Nats => {
                let n = s
                    .nats_config
                    .as_ref()
                    .ok_or_else(|| named("natsConfig", "required".into()))?;
                let connection = config
                    .nats_connection_for(n)
                    .map_err(|m| named("natsConfig.connection", m))?;
                let subject = render_subject(&n.subject, &s.trigger_id)
                    .map_err(|m| named("natsConfig.subject", m))?;
                (
                    format!("nats.{connection}"),
                    Target::Nats {
                        subject,
                        jetstream: n.jetstream,
                        expected_stream: n.expected_stream.clone(),
                    },
                )
            }
            SubscriptionType::Eventbridge => {
                let e = s
                    .event_bridge_config
                    .as_ref()
                    .ok_or_else(|| named("eventBridgeConfig", "required".into()))?;
                let client = self
                    .eventbridge_client(&e.aws_region, e.endpoint_url.as_deref())
                    .await;
                (
                    "eventbridge".to_string(),
                    Target::EventBridge(EventBridgeTarget {
                        region: e.aws_region.clone(),
                        endpoint: e.endpoint_url.clone(),
                        client,
                        mode: e.mode,
                        bus: e.event_bus_name.clone(),
                        source: e.source.clone(),
                    }),
                )
            }
            SubscriptionType::Http => {
                let h = s
                    .http_config
                    .as_ref()
                    .ok_or_else(|| named("httpConfig", "required".into()))?;
                let (uri, auth) =
                    crate::sinks::http::target(h).map_err(|m| named("httpConfig", m))?;
                ("http".to_string(), Target::Http { uri, auth })
            }
            SubscriptionType::Stdout => ("stdout".to_string(), Target::Stdout),
            SubscriptionType::Discard => ("discard".to_string(), Target::Discard),
            // Refused by validation.
            SubscriptionType::Inline | SubscriptionType::Script | SubscriptionType::Workflow => {
                return Err(named(
                    "type",
                    format!("{} cannot be relayed", s.kind.as_str()),
                ))
            }
        };
        let queue = self.queues.get(&sink).cloned().ok_or_else(|| {
            named(
                "type",
                format!("the sink `{sink}` is not running (it is created at start-up when the config uses it or the API is enabled)"),
            )
        })?;
        if self.catalog.get(&s.trigger_id).is_none() {
            return Ok(None);
        }
        let id = s.effective_id();
        let filter = match &s.filter {
            Some(f) => Some(
                crate::filter::Filter::compile(f).map_err(|e| named("filter", e.to_string()))?,
            ),
            None => None,
        };
        let dead_letter = match &s.dead_letter {
            None => None,
            Some(dl) => Some(Arc::new(
                self.dead_letter(s, dl)
                    .map_err(|m| named("deadLetter", m))?,
            )),
        };
        Ok(Some((
            RouteSpec {
                dead_letter,
                metrics: self.sink_metrics.route(&sink, &id),
                subscription_id: id,
                subscription_name: s.name.clone(),
                trigger_id: s.trigger_id.clone(),
                sink,
                target,
                ack: s.ack_mode.unwrap_or(config.delivery.ack),
                filter,
                statuses: self.statuses.clone(),
            },
            queue,
        )))
    }

    fn dead_letter(
        &self,
        s: &Subscription,
        dl: &crate::model::DeadLetterConfig,
    ) -> Result<DeadLetter, String> {
        if let Some(k) = &dl.kafka_config {
            let cluster = self.config.kafka_cluster_for(k)?;
            let producer = self
                .kafka_producers
                .get(cluster)
                .ok_or_else(|| format!("no Kafka cluster `{cluster}`"))?;
            return Ok(DeadLetter::Kafka {
                producer: producer.clone(),
                sink: format!("kafka.{cluster}"),
                topic: k.topic.clone(),
            });
        }
        if let Some(n) = &dl.nats_config {
            let connection = self.config.nats_connection_for(n)?;
            let client = self
                .nats_clients
                .get(connection)
                .ok_or_else(|| format!("no NATS connection `{connection}`"))?;
            return Ok(DeadLetter::Nats {
                client: client.clone(),
                sink: format!("nats.{connection}"),
                subject: render_subject(&n.subject, &s.trigger_id)?,
                jetstream: n.jetstream,
            });
        }
        Err("set kafkaConfig or natsConfig".into())
    }
}
