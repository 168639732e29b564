//! Wiring and lifecycle: build sinks, queues and the routing table from a [`Config`], bind both listeners, and
//! stop in one shape.
//!
//! Shutdown (SIGTERM in `main`, [`Relay::shutdown`] in tests): readiness goes false → the ingress stops accepting
//! and finishes the requests it has → the queues close → every sink drains and flushes → the admin listener
//! closes. All of it under `delivery.shutdown_grace_ms`; what is still undelivered when the grace period ends is
//! counted, logged and returned in the [`ShutdownReport`].
//!
//! [`Relay::redeliver`] is the one way in besides the ingress: `trigger-relay replay` hands it dead-lettered
//! events, which take the same route, queue and sink as the ingress's.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use prometheus::Registry;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::{CancellationToken, DropGuard};
use tokio_util::task::TaskTracker;

use crate::admin::AdminState;
use crate::config::{Config, ConfigErrors};
use crate::ingress::{Authenticator, IngressLimits, IngressMetrics, IngressState};
use crate::model::SubscriptionType;
use crate::pipeline::queue::{Queue, QueueStats};
use crate::router::{Router, RouterMetrics};
use crate::routes::RouteBuilder;
use crate::server::{ServeOptions, ServerMetrics};
use crate::sinks::kind::{BuildError, Connections, SinkSet, StartContext};
use crate::sinks::metrics::SinkMetrics;
use crate::sinks::Readiness;
use crate::tls::{TlsMetrics, TlsReloader};

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("invalid configuration:\n{0}")]
    Config(#[from] ConfigErrors),
    #[error("cannot listen on {addr} ({listener}): {source}")]
    Bind {
        listener: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("sink `{sink}`: {message}")]
    Sink { sink: String, message: String },
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error("TLS for the {listener} listener ([{listener}.tls]): {source}")]
    Tls {
        listener: &'static str,
        source: crate::tls::TlsError,
    },
}

impl From<BuildError> for StartError {
    fn from(e: BuildError) -> Self {
        match e {
            BuildError::Sink { sink, message } => Self::Sink { sink, message },
            BuildError::Metrics(e) => Self::Metrics(e),
        }
    }
}

impl StartError {
    /// Could starting again succeed without changing the config (a port in use may be freed)?
    pub fn is_retriable(&self) -> bool {
        match self {
            Self::Bind { .. } => true,
            Self::Tls { source, .. } => source.is_retriable(),
            _ => false,
        }
    }
}

/// What shutdown left behind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShutdownReport {
    /// Events accepted (queued or in flight) and not delivered when the grace period ended.
    pub undelivered: usize,
}

/// A running relay.
///
/// Dropping it starts a shutdown, so nothing it started (sink workers, readiness probes) outlives it.
pub struct Relay {
    /// What [`Relay::redeliver`] needs: the route builder and the subscriptions it may find.
    replay: Arc<ReplayState>,
    ingress_addr: SocketAddr,
    admin_addr: SocketAddr,
    admin: Arc<AdminState>,
    stop: CancellationToken,
    done: JoinHandle<ShutdownReport>,
    _stop_on_drop: DropGuard,
}

/// The subscriptions a [`Relay`] knows and the builder that routes them, for [`Relay::redeliver`].
struct ReplayState {
    config: Arc<Config>,
    builder: Arc<tokio::sync::Mutex<Option<RouteBuilder>>>,
    store: Option<Arc<crate::api::store::Store>>,
    /// How long a redelivery may take before it is given up on: the sink's own retries, and a margin.
    wait: Duration,
}

/// Why [`Relay::redeliver`] did not hand an event to a sink (nothing was sent; the caller keeps the event).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplayRefusal {
    /// No subscription of the config file (or of the API's store) has this id.
    #[error("no subscription `{0}` (removed from the config, or deleted through the API)")]
    NoSuchSubscription(String),
    /// The subscription exists and is disabled: its owner stopped its deliveries.
    #[error("subscription `{0}` is disabled")]
    Disabled(String),
    /// The subscription is for another trigger than the event's.
    #[error("subscription `{subscription}` is for `{subscription_trigger}`, the event is `{event_trigger}`")]
    OtherTrigger {
        subscription: String,
        subscription_trigger: String,
        event_trigger: String,
    },
    /// The subscription cannot be routed by this config (its sink or connection is missing, say).
    #[error("subscription `{subscription}` cannot be routed: {why}")]
    NotRoutable { subscription: String, why: String },
    /// The sink's queue has no room now (events in flight hold it): try again when one finishes.
    #[error("the sink's queue is full ({0}); retry when a delivery finishes")]
    AtCapacity(crate::pipeline::queue::QueueFull),
    /// The relay is shutting down.
    #[error("the relay is shutting down")]
    ShuttingDown,
}

/// One event to deliver again ([`Relay::redeliver`]): what its dead letter holds.
#[derive(Debug, Clone)]
pub struct Redelivery {
    /// The subscription to deliver to (its effective id).
    pub subscription_id: String,
    /// The event's trigger (the dead letter's `trigger-id`).
    pub trigger_id: String,
    /// `_metadata.invocationId` (the dead letter's `invocation-id`): the dedupe key downstream stays the same.
    pub invocation_id: Option<Box<str>>,
    /// The payload as ISC sent it.
    pub body: bytes::Bytes,
    /// The original event's tracking id (`replay-of` on the redelivered message).
    pub replay_of: Box<str>,
    /// The original's trace context, continued when the dead letter carried a valid `traceparent`.
    pub trace: Option<crate::envelope::TraceContext>,
}

impl Relay {
    /// Start everything described by `config` (already validated by [`Config::from_toml`]).
    pub async fn start(config: Config) -> Result<Relay, StartError> {
        // Clients that ask rustls for the process default (async-nats's TLS) get ring, said once here rather than
        // left to which providers the dependency graph happens to build (a second one makes rustls refuse to guess).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let registry = Registry::new();
        let sink_metrics = SinkMetrics::register(&registry)?;
        let ingress_metrics = IngressMetrics::register(&registry)?;
        let router_metrics = RouterMetrics::register(&registry, ingress_metrics.requests.clone())?;
        let server_metrics = ServerMetrics::register(&registry)?;
        let tls_metrics = TlsMetrics::register(&registry)?;
        // process_cpu_seconds_total, process_resident_memory_bytes, process_open_fds, ... (read from /proc: Linux).
        #[cfg(target_os = "linux")]
        registry.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))?;
        let ready_metric = crate::admin::register_ready(&registry)?;
        // The configured ack timeout, so alerts and dashboards compare publish latency with it, not a constant.
        let ack_timeout = prometheus::Gauge::new(
            "trigger_relay_ack_timeout_seconds",
            "delivery.ack_timeout_ms in seconds: how long a `delivered` request waits for the destination before 503",
        )?;
        ack_timeout.set(config.delivery.ack_timeout_ms as f64 / 1000.0);
        registry.register(Box::new(ack_timeout))?;
        let catalog = config.catalog()?;
        let worker_stop = CancellationToken::new();
        // If start-up fails half way, stop what was already started (readiness probes).
        let startup = worker_stop.clone().drop_guard();

        let mut sinks = SinkSet::default();
        // Webhooks (and API-set EventBridge endpoints) connect through the egress policy; it learns the relay's
        // own listeners once they are bound.
        let egress = Arc::new(crate::sinks::http::EgressPolicy::new(
            &config.sinks.http.egress,
        ));
        let mut connections = Connections {
            egress: egress.clone(),
            ..Connections::default()
        };
        // This process, as its webhooks name it in `Via` (its ingress refuses a request that carries it).
        let instance: String = uuid::Uuid::new_v4().simple().to_string()[..12].to_string();
        // The API may add subscriptions of ISC's types at any time: their sinks then always run.
        let api_on = config.api.enabled;
        let enabled: Vec<_> = config.subscriptions.iter().filter(|s| s.enabled).collect();
        let used: HashSet<SubscriptionType> = enabled.iter().map(|s| s.kind).collect();
        for kind in crate::sinks::KINDS {
            let ctx = StartContext {
                config: config.sink_settings(),
                registry: &registry,
                sink_metrics: &sink_metrics,
                stop: &worker_stop,
                instance: &instance,
                used: &used,
                api_on,
                sinks: &mut sinks,
                connections: &mut connections,
                event_overhead: kind.event_overhead_bytes(),
            };
            kind.start(ctx).await?;
        }

        let statuses = api_on.then(|| Arc::new(crate::status::StatusLog::default()));
        let spans =
            crate::spans::Spans::start(&config.tracing).map_err(|message| StartError::Sink {
                sink: "tracing".into(),
                message,
            })?;
        let stats: Vec<QueueStats> = sinks.queues.values().map(Queue::stats).collect();
        let builder = RouteBuilder {
            config: Arc::new(config.clone()),
            catalog: catalog.clone(),
            queues: std::mem::take(&mut sinks.queues),
            connections,
            sink_metrics: sink_metrics.clone(),
            router_metrics: router_metrics.clone(),
            statuses: statuses.clone(),
            spans: spans.clone(),
            filters: Default::default(),
        };
        // Subscriptions from the API's store join the config file's; the table then follows the store.
        let api_stop = CancellationToken::new();
        let store = if api_on {
            let store = crate::api::store::Store::open(
                &config,
                statuses.clone().unwrap_or_default(),
                api_stop.clone(),
            )
            .await
            .map_err(|e| StartError::Sink {
                sink: "api".into(),
                message: e.to_string(),
            })?;
            Some(Arc::new(store))
        } else {
            None
        };
        let view = store.as_ref().map(|s| s.view()).unwrap_or_default();
        let replay_store = store.clone();
        // `routable` lists the config file's subscriptions first, then the store's that fit this config.
        let all = crate::api::follow::routable(&config, &view);
        let (from_file, stored) = all.split_at(config.subscriptions.len().min(all.len()));
        let router =
            builder
                .build(from_file, stored)
                .await
                .map_err(|message| StartError::Sink {
                    sink: "router".into(),
                    message,
                })?;
        let builder = Arc::new(tokio::sync::Mutex::new(Some(builder)));
        let replay = Arc::new(ReplayState {
            config: Arc::new(config.clone()),
            builder: builder.clone(),
            store: replay_store,
            wait: Duration::from_millis(config.delivery.delivery_timeout_ms)
                + crate::sinks::dead_letter::WRITE_TIMEOUT,
        });
        let router = Arc::new(ArcSwap::from_pointee(router));
        let api = match store {
            Some(store) => {
                let (routed_tx, routed_rx) = tokio::sync::watch::channel(view.revision);
                let follow = crate::api::follow::Follow {
                    config: Arc::new(config.clone()),
                    view: store.subscribe(),
                    builder: builder.clone(),
                    router: router.clone(),
                    routed: routed_tx,
                    routed_ids: view
                        .subscriptions()
                        .map(crate::model::Subscription::effective_id)
                        .collect(),
                };
                tokio::spawn(follow.run(api_stop.clone()));
                Some(Arc::new(crate::api::ApiState::new(
                    &config,
                    catalog.clone(),
                    store,
                    routed_rx,
                    builder.clone(),
                    statuses.clone().unwrap_or_default(),
                    &registry,
                )?))
            }
            None => None,
        };
        let api_stop_guard = api_stop.clone().drop_guard();

        let bind = |listener: &'static str, addr: SocketAddr| async move {
            TcpListener::bind(addr)
                .await
                .map_err(|source| StartError::Bind {
                    listener,
                    addr,
                    source,
                })
        };
        let tls = |listener: &'static str, c: &Option<crate::config::TlsConfig>| {
            c.clone()
                .map(|c| TlsReloader::new(listener, c, tls_metrics.clone()))
                .transpose()
                .map_err(|source| StartError::Tls { listener, source })
        };
        let ingress_tls = tls("ingress", &config.ingress.tls)?;
        let admin_tls = tls("admin", &config.admin.tls)?;
        let ingress_listener = bind("ingress", config.ingress.listen).await?;
        let admin_listener = bind("admin", config.admin.listen).await?;
        let local = |l: &TcpListener, listener, addr| {
            l.local_addr().map_err(|source| StartError::Bind {
                listener,
                addr,
                source,
            })
        };
        let ingress_addr = local(&ingress_listener, "ingress", config.ingress.listen)?;
        let admin_addr = local(&admin_listener, "admin", config.admin.listen)?;
        egress.set_own(vec![ingress_addr, admin_addr]);

        startup.disarm();
        let workers = TaskTracker::new();
        for (name, worker, rx, ready) in sinks.workers {
            let stop = worker_stop.clone();
            let connected = sink_metrics.connected.with_label_values(&[name.as_str()]);
            workers.spawn(async move {
                // Supervised: a worker that panics makes the relay not ready (its queue closes, so the
                // ingress answers 503 for its subscriptions) instead of failing silently.
                #[cfg(feature = "fault-injection")]
                let panics = std::env::var("TRIGGER_RELAY_FAULT_PANIC_SINK").as_deref() == Ok(&*name);
                let run = async move {
                    #[cfg(feature = "fault-injection")]
                    if panics {
                        panic!("fault injection: TRIGGER_RELAY_FAULT_PANIC_SINK");
                    }
                    worker.run(rx, stop).await
                };
                match tokio::spawn(run).await {
                    Ok(()) => tracing::debug!(sink = %name, "sink worker finished"),
                    Err(e) => {
                        ready.fail();
                        connected.set(0);
                        tracing::error!(sink = %name, error = %e, "sink worker failed; the relay is not ready until restarted");
                    }
                }
            });
        }
        workers.close();

        let auth = config
            .ingress
            .auth
            .as_ref()
            .map(Authenticator::new)
            .unwrap_or_else(|| {
                Authenticator::new(&crate::config::AuthConfig {
                    none: false,
                    ..Default::default()
                })
            });
        let limits = IngressLimits::new(&config.ingress.rate_limit, &auth);
        let ingress_state = Arc::new(IngressState {
            router: router.clone(),
            auth,
            limits,
            max_body_bytes: config.ingress.max_body_bytes,
            body_read_timeout: Duration::from_millis(config.ingress.body_read_timeout_ms),
            ack_timeout: Duration::from_millis(config.delivery.ack_timeout_ms),
            retry_after_s: config.delivery.retry_after_s,
            metrics: ingress_metrics,
            loop_token: format!("trigger-relay-{instance}").into(),
        });
        let draining = Arc::new(AtomicBool::new(false));
        // Destination checks of the config file's subscriptions: a missing topic, stream or bus keeps `/readyz`
        // 503 naming it (checked again every 10 s, so creating it makes the relay ready without a restart).
        let destinations = Arc::new(std::sync::Mutex::new(std::collections::BTreeMap::new()));
        let destinations_checked = Arc::new(AtomicBool::new(false));
        {
            let (builder, destinations, stop) =
                (builder.clone(), destinations.clone(), api_stop.clone());
            let checked = destinations_checked.clone();
            // Asked only once every sink has reached its broker: a question to a broker that is not there would
            // only wait out its timeout (and hold a blocking thread into shutdown).
            let sinks_ready: Vec<Readiness> =
                sinks.readiness.iter().map(|(_, r)| r.clone()).collect();
            let subs: Vec<_> = enabled.iter().map(|s| (*s).clone()).collect();
            tokio::spawn(async move {
                while !sinks_ready.iter().all(Readiness::is_ready) {
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                    }
                }
                let mut pending = subs;
                if pending.is_empty() {
                    checked.store(true, Ordering::Release);
                }
                while !pending.is_empty() {
                    let mut still = Vec::new();
                    for s in pending {
                        let result = {
                            let guard = builder.lock().await;
                            let Some(b) = guard.as_ref() else { return };
                            b.check_destination(&s).await
                        };
                        let mut d = destinations.lock().unwrap_or_else(|p| p.into_inner());
                        match result {
                            Ok(()) => {
                                d.remove(&s.name);
                            }
                            Err(crate::routes::Destination::Missing(why)) => {
                                if d.insert(s.name.clone(), why.clone()).is_none() {
                                    tracing::error!(subscription = %s.name, problem = %why, "a subscription's destination does not exist; not ready until it does");
                                }
                                still.push(s);
                            }
                            Err(crate::routes::Destination::Unreachable(_)) => still.push(s),
                        }
                    }
                    pending = still;
                    checked.store(true, Ordering::Release);
                    if pending.is_empty() {
                        break;
                    }
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = tokio::time::sleep(Duration::from_secs(10)) => {}
                    }
                }
            });
        }
        let admin_state = Arc::new(AdminState {
            destinations,
            destinations_checked,
            registry,
            sinks: sinks.readiness,
            draining: draining.clone(),
            api,
            ready: ready_metric,
        });

        let readiness_view = admin_state.clone();
        let ingress_stop = CancellationToken::new();
        let ingress_kill = CancellationToken::new();
        let admin_stop = CancellationToken::new();
        let admin_kill = CancellationToken::new();
        // Certificate watchers live until the very end of shutdown.
        let tls_stop = CancellationToken::new();
        for t in [&ingress_tls, &admin_tls].into_iter().flatten() {
            tokio::spawn(t.clone().watch(tls_stop.clone()));
        }
        let ingress_task = tokio::spawn(crate::server::serve(
            ingress_listener,
            // Boxed once: the handler's future is large, and hyper and the server's timeout move it several times.
            move |req, peer| Box::pin(crate::ingress::handle(ingress_state.clone(), req, peer)),
            ingress_stop.clone(),
            ingress_kill.clone(),
            ServeOptions {
                name: "ingress",
                limits: config.ingress.limits.clone(),
                tls: ingress_tls,
                metrics: server_metrics.clone(),
            },
        ));
        let admin_task = tokio::spawn(crate::server::serve(
            admin_listener,
            move |req, peer| crate::admin::handle(admin_state.clone(), req, peer),
            admin_stop.clone(),
            admin_kill.clone(),
            ServeOptions {
                name: "admin",
                limits: config.admin.limits.clone(),
                tls: admin_tls,
                metrics: server_metrics,
            },
        ));
        tracing::info!(ingress = %ingress_addr, admin = %admin_addr, subscriptions = enabled.len(), "trigger-relay listening");

        let stop = CancellationToken::new();
        let grace = Duration::from_millis(config.delivery.shutdown_grace_ms);
        let supervisor_stop = stop.clone();
        let done = tokio::spawn(async move {
            supervisor_stop.cancelled().await;
            draining.store(true, Ordering::Release);
            // The store's followers stop: the table stays as it is until it is emptied below.
            drop(api_stop_guard);
            tracing::info!(
                grace_ms = grace.as_millis() as u64,
                "shutting down: not ready, no new connections, draining"
            );
            let start = tokio::time::Instant::now();
            let deadline = start + grace;
            ingress_stop.cancel();
            // Requests in progress get half the grace period; the sinks get the rest (at least).
            let mut ingress_task = ingress_task;
            if tokio::time::timeout_at(start + grace / 2, &mut ingress_task)
                .await
                .is_err()
            {
                tracing::warn!("ingress requests still open after half the grace period: dropping their connections");
                ingress_kill.cancel();
                let _ = ingress_task.await;
            }
            // The last senders go with the table: the queues close and the workers drain them.
            // The builder holds queue senders too: take it (the API's writes stop with it), then swap the table.
            drop(builder.lock().await.take());
            router.store(Arc::new(Router::new(catalog)));
            drop(router);
            let drained = tokio::time::timeout_at(deadline, workers.wait())
                .await
                .is_ok();
            worker_stop.cancel();
            if !drained {
                // The workers finish what already has an answer and drop the rest (counted as lost).
                let _ = tokio::time::timeout(Duration::from_secs(2), workers.wait()).await;
            }
            let left = |s: &QueueStats| s.lost_events() + s.outstanding_events();
            let undelivered: usize = stats.iter().map(left).sum();
            if undelivered > 0 {
                for s in &stats {
                    let n = left(s);
                    if n > 0 {
                        tracing::error!(sink = %s.name, undelivered = n, "events left undelivered at shutdown");
                    }
                }
                tracing::error!(
                    undelivered,
                    "shutdown grace period over: events left undelivered"
                );
            } else {
                tracing::info!("drained: every accepted event was delivered or accounted for");
            }
            if let Some(spans) = spans {
                // The last spans (the deliveries just finished) go out within what is left of the grace period.
                let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                spans.shutdown(left.max(Duration::from_secs(1))).await;
            }
            admin_stop.cancel();
            let mut admin_task = admin_task;
            if tokio::time::timeout(Duration::from_secs(1), &mut admin_task)
                .await
                .is_err()
            {
                admin_kill.cancel();
                let _ = admin_task.await;
            }
            tls_stop.cancel();
            ShutdownReport { undelivered }
        });
        Ok(Relay {
            replay,
            ingress_addr,
            admin_addr,
            admin: readiness_view,
            _stop_on_drop: stop.clone().drop_guard(),
            stop,
            done,
        })
    }

    /// Wait until the API's store (if the API is on) has been read once, so [`Relay::subscription`] sees its
    /// subscriptions; `false` when it has not within `within` (the store's engine does not answer).
    pub async fn subscriptions_loaded(&self, within: Duration) -> bool {
        let Some(store) = &self.replay.store else {
            return true;
        };
        let mut view = store.subscribe();
        tokio::time::timeout(within, view.wait_for(|v| v.caught_up))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// The subscription with this id (or, when no id matches, this name, if only one has it): the config
    /// file's, then the API store's as this relay last read it.
    pub fn subscription(&self, id_or_name: &str) -> Option<crate::model::Subscription> {
        let view = self.replay.store.as_ref().map(|s| s.view());
        let stored = view.iter().flat_map(|v| v.subscriptions());
        let all: Vec<&crate::model::Subscription> = self
            .replay
            .config
            .subscriptions
            .iter()
            .chain(stored)
            .collect();
        if let Some(s) = all.iter().find(|s| s.effective_id() == id_or_name) {
            return Some((*s).clone());
        }
        let mut named = all.into_iter().filter(|s| s.name == id_or_name);
        match (named.next(), named.next()) {
            (Some(s), None) => Some(s.clone()),
            _ => None,
        }
    }

    /// The subscription [`Relay::redeliver`] would deliver an event of `trigger_id` to, or why it would refuse
    /// before routing (`--dry-run` asks this alone).
    pub fn redelivery_target(
        &self,
        subscription_id: &str,
        trigger_id: &str,
    ) -> Result<crate::model::Subscription, ReplayRefusal> {
        let s = self
            .subscription(subscription_id)
            .filter(|s| s.effective_id() == subscription_id)
            .ok_or_else(|| ReplayRefusal::NoSuchSubscription(subscription_id.to_string()))?;
        if !s.enabled {
            return Err(ReplayRefusal::Disabled(subscription_id.to_string()));
        }
        if s.trigger_id != trigger_id {
            return Err(ReplayRefusal::OtherTrigger {
                subscription: subscription_id.to_string(),
                subscription_trigger: s.trigger_id,
                event_trigger: trigger_id.to_string(),
            });
        }
        Ok(s)
    }

    /// Deliver one event again to one subscription through the real path (route, queue reservation, sink,
    /// retries), and wait for its outcome, as a `delivered`-mode ingress would (without `ack_timeout_ms`: the
    /// wait lasts as long as the sink may retry). The message carries `replay: true` and `replay-of` (see
    /// [`crate::envelope::headers`]). Filters are not evaluated: the event matched when ISC sent it, and naming
    /// the subscription is the caller's choice. A refusal sends nothing.
    pub async fn redeliver(
        &self,
        r: Redelivery,
    ) -> Result<crate::pipeline::Outcome, ReplayRefusal> {
        let s = self.redelivery_target(&r.subscription_id, &r.trigger_id)?;
        let rx = {
            let guard = self.replay.builder.lock().await;
            let builder = guard.as_ref().ok_or(ReplayRefusal::ShuttingDown)?;
            let not_routable = |why: String| ReplayRefusal::NotRoutable {
                subscription: r.subscription_id.clone(),
                why,
            };
            let entry = builder
                .route(&s)
                .await
                .map_err(not_routable)?
                .ok_or_else(|| {
                    not_routable(format!("trigger `{}` is not in the catalog", s.trigger_id))
                })?;
            let reservation = entry
                .queue
                .try_reserve(r.body.len())
                .map_err(|full| match full {
                    crate::pipeline::queue::QueueFull::Closed => ReplayRefusal::ShuttingDown,
                    other => ReplayRefusal::AtCapacity(other),
                })?;
            let mut event = crate::pipeline::Event::new(
                s.trigger_id.as_str().into(),
                r.invocation_id,
                crate::error::TrackingId::new(),
                r.body,
                std::time::Instant::now(),
            );
            if let Some(t) = r.trace {
                event.trace = t;
            }
            event.replay_of = Some(r.replay_of);
            let (tx, rx) = tokio::sync::oneshot::channel();
            if !crate::pipeline::Delivery::enqueue(Arc::new(event), &entry, Some(tx), reservation) {
                return Err(ReplayRefusal::ShuttingDown);
            }
            rx
        };
        Ok(match tokio::time::timeout(self.replay.wait, rx).await {
            Ok(Ok(outcome)) => outcome,
            // The delivery was dropped without an answer: the sink stopped.
            Ok(Err(_)) => Err(crate::sinks::SinkError::ShutDown),
            Err(_) => Err(crate::sinks::SinkError::TimedOut(format!(
                "no outcome within {} s",
                self.replay.wait.as_secs()
            ))),
        })
    }

    /// Why `/readyz` would answer 503 now (a sink not yet connected, a missing destination, ...), if it would.
    pub fn not_ready(&self) -> Option<String> {
        self.admin.not_ready()
    }

    /// Whether the first pass over the config file's destinations found one missing (a definite answer, unlike
    /// a broker that has not answered yet).
    pub fn destination_missing(&self) -> bool {
        self.admin
            .destinations_checked
            .load(std::sync::atomic::Ordering::Acquire)
            && !self
                .admin
                .destinations
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .is_empty()
    }

    pub fn ingress_addr(&self) -> SocketAddr {
        self.ingress_addr
    }

    pub fn admin_addr(&self) -> SocketAddr {
        self.admin_addr
    }

    /// Begin a graceful shutdown (idempotent).
    pub fn shutdown(&self) {
        self.stop.cancel();
    }

    /// Wait until the relay has stopped (after [`Relay::shutdown`]; waiting also starts it).
    pub async fn wait(self) -> ShutdownReport {
        self.stop.cancel();
        match self.done.await {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "shutdown task failed");
                ShutdownReport { undelivered: 0 }
            }
        }
    }
}
