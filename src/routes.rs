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
use crate::filter::Filter;
use crate::model::{Subscription, SubscriptionType};
use crate::queue::Queue;
use crate::router::{RouteEntry, RouteSpec, Router, RouterMetrics};
use crate::sinks::dead_letter::DeadLetter;
use crate::sinks::eventbridge::EventBridgeTarget;
use crate::sinks::metrics::SinkMetrics;
use crate::sinks::nats::render_subject;
use crate::sinks::Target;

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

/// Most compiled filters kept between builds (a full table has at most 50 per trigger).
const MAX_CACHED_FILTERS: usize = 4096;

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
    pub(crate) spans: Option<Arc<crate::spans::Spans>>,
    /// Where API-set EventBridge endpoints may connect (the webhooks' policy).
    pub(crate) egress: Arc<crate::sinks::http::EgressPolicy>,
    /// Compiled filters by their text: a table rebuilt after an API write compiles only the filters that are new
    /// (on the blocking pool, not on the workers that serve the ingress). Holds what the last full build used.
    pub(crate) filters: std::sync::Mutex<std::collections::HashMap<Arc<str>, Filter>>,
}

impl RouteBuilder {
    /// The start-up table: every enabled config-file subscription must route (an error stops the start, naming
    /// it); a stored one that cannot route on this replica (its endpoint refused by this replica's egress policy,
    /// say) is left out and logged, as [`RouteBuilder::build_lenient`] does, so one stored subscription cannot keep
    /// every replica from starting.
    pub async fn build(
        &self,
        from_file: &[Subscription],
        stored: &[Subscription],
    ) -> Result<Router, String> {
        let mut router = Router::new(self.catalog.clone());
        for s in from_file.iter().filter(|s| s.enabled) {
            if let Some((spec, queue)) = self.spec(s).await? {
                router.add(spec, queue, &self.router_metrics);
            }
        }
        for s in stored.iter().filter(|s| s.enabled) {
            self.add_lenient(&mut router, s).await;
        }
        self.keep_filters(&[from_file, stored].concat());
        Ok(router)
    }

    async fn add_lenient(&self, router: &mut Router, s: &Subscription) {
        match self.spec(s).await {
            Ok(Some((spec, queue))) => router.add(spec, queue, &self.router_metrics),
            Ok(None) => {}
            Err(e) => {
                tracing::error!(subscription = %s.effective_id(), error = %e, "a subscription cannot be routed on this replica; it is left out")
            }
        }
    }

    /// Forget compiled filters that no subscription in `subs` uses (the cache is bounded by the table).
    fn keep_filters(&self, subs: &[Subscription]) {
        let used: std::collections::HashSet<&str> =
            subs.iter().filter_map(|s| s.filter.as_deref()).collect();
        self.filters
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|k, _| used.contains(&**k));
    }

    /// `expr` compiled: from the cache, or on the blocking pool (a filter with regexes can take milliseconds).
    async fn compile(&self, expr: &str) -> Result<Filter, String> {
        if let Some(f) = self
            .filters
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(expr)
        {
            return Ok(f.clone());
        }
        let text: Arc<str> = expr.into();
        let t = text.clone();
        let compiled = match tokio::task::spawn_blocking(move || Filter::compile(&t)).await {
            Ok(r) => r.map_err(|e| e.to_string())?,
            Err(e) => return Err(format!("the filter could not be compiled: {e}")),
        };
        self.router_metrics.compilations.inc();
        let mut cache = self.filters.lock().unwrap_or_else(|p| p.into_inner());
        // Checks of writes that never land (refused, conflicting) must not grow it without bound.
        if cache.len() < MAX_CACHED_FILTERS {
            cache.insert(text, compiled.clone());
        }
        Ok(compiled)
    }

    /// A table routing to every enabled subscription in `subs` that can be routed; each one that cannot is
    /// left out with an error log (a replica following a store written by replicas with another config).
    pub async fn build_lenient(&self, subs: &[Subscription]) -> Router {
        let mut router = Router::new(self.catalog.clone());
        for s in subs.iter().filter(|s| s.enabled) {
            self.add_lenient(&mut router, s).await;
        }
        self.keep_filters(subs);
        router
    }

    /// Whether `s`'s destination exists, asked of the broker (Vector's sink healthchecks): the Kafka topic in the
    /// cluster's metadata, a stream holding the JetStream subject, the EventBridge bus. `Ok` for destinations with
    /// nothing to ask (core NATS, webhooks, STDOUT, DISCARD), and for triggers outside the catalog.
    pub async fn check_destination(&self, s: &Subscription) -> Result<(), Destination> {
        const WAIT: std::time::Duration = std::time::Duration::from_secs(5);
        let Some((spec, _)) = self.spec(s).await.map_err(Destination::Missing)? else {
            return Ok(());
        };
        match &spec.target {
            Target::Kafka { topic, .. } => {
                let cluster = spec.sink.trim_start_matches("kafka.").to_string();
                let Some(c) = self.config.sinks.kafka.get(&cluster) else {
                    return Ok(());
                };
                // Asked with a client of its own: the sink's producer keeps only the metadata its sends need
                // (a topic's cached leader would otherwise outlive a broker that forgot the topic).
                let client = c.base_client_config().map_err(Destination::Missing)?;
                let t = topic.clone();
                let metadata = tokio::task::spawn_blocking(move || {
                    use rdkafka::consumer::Consumer;
                    let probe: rdkafka::consumer::BaseConsumer =
                        client.create().map_err(|e| e.to_string())?;
                    probe
                        .fetch_metadata(Some(&t), WAIT)
                        .map_err(|e| e.to_string())
                })
                .await
                .map_err(|e| Destination::Unreachable(e.to_string()))?
                .map_err(|e| Destination::Unreachable(format!("Kafka cluster `{cluster}`: {e}")))?;
                let exists = metadata.topics().iter().any(|m| {
                    m.name() == topic && m.error().is_none() && !m.partitions().is_empty()
                });
                drop(metadata);
                match exists {
                    true => Ok(()),
                    false => match &c.create_topics {
                        Some(create) => create_topic(c, &cluster, topic, create).await,
                        None => Err(Destination::Missing(format!(
                            "the Kafka topic `{topic}` does not exist in cluster `{cluster}`: create it (or fix kafkaConfig.topic, or set [sinks.kafka.{cluster}.create_topics])"
                        ))),
                    },
                }
            }
            Target::Nats {
                subject,
                jetstream: true,
                ..
            } => {
                let connection = spec.sink.trim_start_matches("nats.").to_string();
                let Some(client) = self.nats_clients.get(&connection).cloned() else {
                    return Ok(());
                };
                let js = async_nats::jetstream::new(client);
                match tokio::time::timeout(WAIT, js.stream_by_subject(subject.as_str())).await {
                    Err(_) => Err(Destination::Unreachable(format!(
                        "NATS connection `{connection}` did not answer"
                    ))),
                    Ok(Ok(_)) => Ok(()),
                    Ok(Err(e)) => Err(Destination::Missing(format!(
                        "no JetStream stream holds the subject `{subject}` on connection `{connection}` ({e}): create one (or set jetstream = false)"
                    ))),
                }
            }
            Target::EventBridge(t) => {
                let call = t.client.describe_event_bus().name(&t.bus).send();
                match tokio::time::timeout(WAIT, call).await {
                    Err(_) => Err(Destination::Unreachable(format!(
                        "EventBridge in {} did not answer",
                        t.region
                    ))),
                    Ok(Ok(_)) => Ok(()),
                    Ok(Err(e)) => {
                        if let Some(refused) = crate::sinks::http::EgressRefused::find(&e) {
                            return Err(Destination::Missing(format!(
                                "eventBridgeConfig.endpointUrl: {refused}"
                            )));
                        }
                        let not_found = e
                            .as_service_error()
                            .is_some_and(|se| se.is_resource_not_found_exception());
                        if not_found {
                            Err(Destination::Missing(format!(
                                "the EventBridge bus `{}` does not exist in {}: create it (or fix eventBridgeConfig.eventBusName)",
                                t.bus, t.region
                            )))
                        } else {
                            Err(Destination::Unreachable(format!(
                                "EventBridge in {}: {}",
                                t.region,
                                aws_sdk_eventbridge::error::DisplayErrorContext(&e)
                            )))
                        }
                    }
                }
            }
            _ => Ok(()),
        }
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
    ) -> Result<aws_sdk_eventbridge::Client, String> {
        let key = (region.to_string(), endpoint.map(str::to_string));
        let mut clients = self.eventbridge_clients.lock().await;
        if let Some((_, c)) = clients.iter().find(|(k, _)| *k == key) {
            return Ok(c.clone());
        }
        // An endpoint the config file names is the operator's; any other came from an API caller (allowed only
        // with `api.allow_endpoint_url`) and connects through the egress policy.
        let operators = endpoint.is_none_or(|url| {
            self.config.subscriptions.iter().any(|s| {
                s.event_bridge_config
                    .as_ref()
                    .is_some_and(|e| e.endpoint_url.as_deref() == Some(url))
            })
        });
        let c = crate::sinks::eventbridge::client(
            region,
            endpoint,
            (!operators).then_some(&self.egress),
        )
        .await?;
        clients.push((key, c.clone()));
        Ok(c)
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
                    .await
                    .map_err(|m| named("eventBridgeConfig.endpointUrl", m))?;
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
            Some(f) => Some(self.compile(f).await.map_err(|e| named("filter", e))?),
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
                envelope: crate::envelope::resolve(s, &config.cloudevents),
                spans: self.spans.clone(),
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

/// Create `topic` as `[sinks.kafka.NAME.create_topics]` says (the destination check found it missing). An
/// existing topic (another replica was first) counts as created.
async fn create_topic(
    c: &crate::sinks::kafka::KafkaClusterConfig,
    cluster: &str,
    topic: &str,
    create: &crate::sinks::kafka::CreateTopics,
) -> Result<(), Destination> {
    use crate::sinks::kafka::CreateTopicError;
    let base = c.base_client_config().map_err(Destination::Missing)?;
    let wait = std::time::Duration::from_secs(5);
    let (partitions, replication) = (create.partitions, create.replication_factor);
    match crate::sinks::kafka::create_topic(&base, topic, partitions, replication, &[], wait).await {
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
