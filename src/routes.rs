//! Subscriptions → routing table. One builder serves the start-up (config file) and every later change (the
//! Triggers API), so a subscription routes the same way whichever way it arrived.
//!
//! The builder holds what routes point at: each sink's queue (the senders) and the [`Connections`] the sink
//! kinds started with (the producers and clients dead letters use, the EventBridge clients made on first use).
//! What a subscription of each type resolves to is its kind's answer ([`crate::sinks::SinkKind::resolve`]).
//! While a builder exists the queues stay open; shutdown drops it (see `relay`).

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::catalog::Catalog;
use crate::config::Config;
use crate::filter::Filter;
use crate::model::Subscription;
use crate::pipeline::queue::Queue;
use crate::router::{RouteEntry, RouteSpec, Router, RouterMetrics};
use crate::sinks::dead_letter::DeadLetter;
use crate::sinks::kind::{Connections, ResolveContext};
use crate::sinks::metrics::SinkMetrics;

pub use crate::sinks::Destination;

/// Most compiled filters kept between builds (a full table has at most 50 per trigger).
const MAX_CACHED_FILTERS: usize = 4096;

pub struct RouteBuilder {
    pub(crate) config: Arc<Config>,
    pub(crate) catalog: Catalog,
    pub(crate) queues: BTreeMap<String, Queue>,
    /// The producers, clients and egress policy the sinks started with (dead letters and destination checks).
    pub(crate) connections: Connections,
    pub(crate) sink_metrics: SinkMetrics,
    pub(crate) router_metrics: RouterMetrics,
    pub(crate) statuses: Option<Arc<crate::status::StatusLog>>,
    pub(crate) spans: Option<Arc<crate::spans::Spans>>,
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
        let Some((spec, _)) = self.spec(s).await.map_err(Destination::Missing)? else {
            return Ok(());
        };
        match crate::sinks::kind_of(s.kind) {
            Some(kind) => {
                kind.check_destination(self.resolve_context(), &spec.sink, &spec.target)
                    .await
            }
            None => Ok(()),
        }
    }

    fn resolve_context(&self) -> ResolveContext<'_> {
        ResolveContext {
            config: self.config.sink_settings(),
            connections: &self.connections,
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

    async fn spec(&self, s: &Subscription) -> Result<Option<(RouteSpec, Queue)>, String> {
        let config = &self.config;
        let named = |what: &str, m: String| format!("subscription `{}`: {what}: {m}", s.name);
        // Refused by validation: a type without a sink kind runs inside ISC.
        let kind = crate::sinks::kind_of(s.kind)
            .ok_or_else(|| named("type", format!("{} cannot be relayed", s.kind.as_str())))?;
        let (sink, target) = kind
            .resolve(self.resolve_context(), s)
            .await
            .map_err(|(what, m)| named(what, m))?;
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
            Some(dl) => {
                let writer: Arc<dyn crate::pipeline::DeadLetterWriter> = Arc::new(
                    DeadLetter::resolve(&config.sinks, &self.connections, s, dl)
                        .map_err(|m| named("deadLetter", m))?,
                );
                Some(writer)
            }
        };
        Ok(Some((
            RouteSpec {
                dead_letter,
                metrics: self.sink_metrics.route(&sink, &id),
                subscription_id: id,
                subscription_name: s.name.clone(),
                trigger_id: s.trigger_id.clone(),
                reads_payload: kind.reads_payload(&target),
                sink,
                target,
                ack: s.ack_mode.unwrap_or(config.delivery.ack),
                filter,
                statuses: self.statuses.clone(),
                envelope: crate::envelope::resolve(s, &config.cloudevents),
                spans: self
                    .spans
                    .clone()
                    .map(|s| s as Arc<dyn crate::pipeline::SpanExporter>),
            },
            queue,
        )))
    }
}
