//! The routing table: trigger id → the enabled subscriptions of that trigger, each with its compiled filter
//! and the queue of its sink.
//!
//! Filters are compiled when the table is built (config load, later API writes), never per event. Per event
//! the payload is parsed into a `serde_json::Value` at most once, and only when some candidate subscription
//! reads it; events whose subscriptions have no filter stay on the zero-parse path. When only filters read it,
//! the tree holds only what they can read (`filter::Needs`). The table is immutable:
//! a change builds a new one and swaps it in whole (see `relay`), so a request sees one consistent table.

use std::collections::HashMap;
use std::sync::Arc;

use prometheus::{IntCounter, IntCounterVec, Opts, Registry};

use crate::catalog::{Catalog, TriggerInfo, TriggerType};
use crate::filter::{EvalError, EventBudget, Filter};
use crate::model::AckMode;
use crate::pipeline::queue::Queue;
use crate::sinks::metrics::RouteMetrics;
use crate::sinks::Target;

pub use crate::pipeline::route::{FilterCounters, Route, RouteEntry};

#[derive(Debug)]
pub struct TriggerRoutes {
    /// The trigger id, shared by every event of this trigger (no allocation per request).
    pub id: Arc<str>,
    /// `trigger_relay_ingress_requests_total{trigger=id, status="200"}`.
    pub accepted: IntCounter,
    pub info: Arc<TriggerInfo>,
    pub routes: Vec<RouteEntry>,
    /// The routes alone, in the same order: shared with the deliveries, which index it
    /// ([`crate::pipeline::Share`]). It holds no queue, so a delivery keeps no sender of any queue open.
    pub table: Arc<Vec<Arc<Route>>>,
    /// The routes' filters, in route order, identical ones evaluated once per event (`filter::set`).
    filters: crate::filter::FilterSet,
    /// `trigger_relay_filter_budget_exhausted_total`.
    budget_exhausted: IntCounter,
    /// Some route reads the body as JSON (a filter, a Kafka key pointer, STDOUT): the ingress then parses it once
    /// and refuses a body the parser cannot read, instead of accepting an event no route can handle.
    needs_json: bool,
    /// Some route reads the JSON beyond its filter (a Kafka key pointer, a CloudEvents subject, STDOUT): the whole
    /// tree is then built, and handed on with the event. Otherwise only what the filters read is built
    /// ([`crate::filter::Needs`]), for them alone.
    reads_whole: bool,
}

/// What [`TriggerRoutes::select`] found: the matched routes (indices into [`TriggerRoutes::routes`], in order),
/// and the whole parsed body when a route reads more of it than its filter.
pub struct Selected {
    pub routes: Vec<usize>,
    pub json: Option<serde_json::Value>,
}

/// What the table says about a trigger id.
pub enum Lookup<'a> {
    /// Not in the catalog.
    Unknown,
    /// A REQUEST_RESPONSE trigger: not relayed.
    RequestResponse(&'a TriggerInfo),
    Known(&'a TriggerRoutes),
    /// In the catalog, no enabled subscription.
    Unrouted(&'a TriggerInfo),
}

/// Router metrics, registered in one place.
#[derive(Clone)]
pub struct RouterMetrics {
    filter: IntCounterVec,
    /// The ingress's `trigger_relay_ingress_requests_total`: each routed trigger's `200` counter is resolved once,
    /// when the table is built, instead of by label lookup on every request.
    requests: IntCounterVec,
    /// `trigger_relay_filter_compilations_total`: filters compiled (a table rebuilt after an API write compiles
    /// only the filters it has not seen).
    pub compilations: IntCounter,
    /// `trigger_relay_filter_budget_exhausted_total`: events on which some filter ran out of its share of the
    /// event's filter budget.
    budget_exhausted: IntCounter,
}

impl RouterMetrics {
    /// Remove the filter series of a deleted subscription (its counters would otherwise stay on `/metrics`
    /// forever, one set per subscription ever created).
    pub fn forget(&self, subscription: &str) {
        for result in ["matched", "not_matched", "error"] {
            let _ = self.filter.remove_label_values(&[subscription, result]);
        }
    }

    /// `requests`: the ingress's per-trigger, per-status request counter (registered by the ingress).
    pub fn register(r: &Registry, requests: IntCounterVec) -> prometheus::Result<Self> {
        let filter = IntCounterVec::new(
            Opts::new(
                "trigger_relay_filter_evaluations_total",
                "Filter evaluations per subscription, by result (matched, not_matched, error)",
            ),
            &["subscription", "result"],
        )?;
        r.register(Box::new(filter.clone()))?;
        let compilations = IntCounter::new(
            "trigger_relay_filter_compilations_total",
            "Subscription filters compiled (off the async workers; a rebuilt routing table reuses what it compiled before)",
        )?;
        r.register(Box::new(compilations.clone()))?;
        let budget_exhausted = IntCounter::new(
            "trigger_relay_filter_budget_exhausted_total",
            "Events on which a subscription's filter ran out of its share of the event's filter budget (that filter did not match)",
        )?;
        r.register(Box::new(budget_exhausted.clone()))?;
        Ok(Self {
            filter,
            requests,
            compilations,
            budget_exhausted,
        })
    }
}

/// Everything needed to build a [`Route`].
pub struct RouteSpec {
    pub subscription_id: String,
    pub subscription_name: String,
    pub trigger_id: String,
    pub sink: String,
    pub target: Target,
    /// Delivering to `target` reads the payload as JSON (its kind's `SinkKind::reads_payload`).
    pub reads_payload: bool,
    pub ack: AckMode,
    pub filter: Option<Filter>,
    pub metrics: RouteMetrics,
    pub dead_letter: Option<Arc<dyn crate::pipeline::DeadLetterWriter>>,
    pub statuses: Option<Arc<crate::status::StatusLog>>,
    pub envelope: Option<Arc<crate::pipeline::CloudEvents>>,
    pub spans: Option<Arc<dyn crate::pipeline::SpanExporter>>,
}

#[derive(Debug)]
pub struct Router {
    catalog: Catalog,
    triggers: HashMap<String, TriggerRoutes>,
}

impl Router {
    /// An empty table over a catalog.
    pub fn new(catalog: Catalog) -> Self {
        Self {
            catalog,
            triggers: HashMap::new(),
        }
    }

    /// Add an enabled subscription. The trigger must be in the catalog (checked by config validation).
    pub fn add(&mut self, spec: RouteSpec, queue: Queue, metrics: &RouterMetrics) {
        let Some(info) = self.catalog.get(&spec.trigger_id).cloned() else {
            return;
        };
        let counters = |result: &str| {
            metrics
                .filter
                .with_label_values(&[spec.subscription_id.as_str(), result])
        };
        let spec_reads_payload = spec.reads_payload;
        let route = Route {
            filter_metrics: FilterCounters {
                matched: counters("matched"),
                not_matched: counters("not_matched"),
                error: counters("error"),
            },
            subscription_id: spec.subscription_id.as_str().into(),
            subscription_name: spec.subscription_name.as_str().into(),
            // The queue's own name when it is this sink's (always, from `routes`): every route of a sink then
            // holds one `Arc`, which `Finishing` compares by pointer.
            sink: match queue.name_arc() {
                n if **n == *spec.sink => n.clone(),
                _ => spec.sink.as_str().into(),
            },
            target: spec.target,
            ack: spec.ack,
            filter: spec.filter,
            metrics: spec.metrics,
            dead_letter: spec.dead_letter,
            statuses: spec.statuses,
            envelope: spec.envelope,
            spans: spec.spans,
        };
        let entry = self
            .triggers
            .entry(spec.trigger_id.clone())
            .or_insert_with(|| TriggerRoutes {
                id: spec.trigger_id.as_str().into(),
                accepted: metrics
                    .requests
                    .with_label_values(&[spec.trigger_id.as_str(), "200"]),
                info,
                routes: Vec::new(),
                table: Arc::new(Vec::new()),
                filters: crate::filter::FilterSet::new(),
                budget_exhausted: metrics.budget_exhausted.clone(),
                needs_json: false,
                reads_whole: false,
            });
        entry.filters.push(route.filter.as_ref());
        entry.reads_whole |=
            route.envelope.as_ref().is_some_and(|c| c.subject.is_some()) || spec_reads_payload;
        entry.needs_json |= route.filter.is_some() || entry.reads_whole;
        let route = Arc::new(route);
        // Not shared yet (the table is being built), so this does not copy.
        Arc::make_mut(&mut entry.table).push(route.clone());
        entry.routes.push(RouteEntry { route, queue });
    }

    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    pub fn lookup(&self, trigger_id: &str) -> Lookup<'_> {
        match self.triggers.get(trigger_id) {
            Some(t) if t.info.kind == TriggerType::RequestResponse => {
                Lookup::RequestResponse(&t.info)
            }
            Some(t) => Lookup::Known(t),
            None => match self.catalog.get(trigger_id) {
                None => Lookup::Unknown,
                Some(info) if info.kind == TriggerType::RequestResponse => {
                    Lookup::RequestResponse(info)
                }
                Some(info) => Lookup::Unrouted(info),
            },
        }
    }

    /// Every queue the table sends to (for shutdown accounting).
    pub fn queues(&self) -> impl Iterator<Item = &Queue> {
        self.triggers
            .values()
            .flat_map(|t| t.routes.iter().map(|r| &r.queue))
    }
}

impl TriggerRoutes {
    /// The routes whose filter (if any) matches `body`, which is a JSON object the ingress already checked.
    /// `Err` (serde_json's reason) when a route reads the body as JSON and the parser cannot (nesting over 128, a
    /// number out of range, an unpaired surrogate): the ingress refuses it rather than accept an event that every
    /// filter would drop and a key pointer would miss. A filter that errors on a readable body fails closed, as
    /// ISC's does, counted and logged with `tracking_id`. The filters share one [`EventBudget`] per event, so the
    /// time one event can hold this task is bounded whatever the trigger's subscriptions hold.
    pub fn select(
        &self,
        body: &[u8],
        tracking_id: &crate::error::TrackingId,
    ) -> Result<Selected, String> {
        if !self.needs_json {
            return Ok(Selected {
                routes: (0..self.routes.len()).collect(),
                json: None,
            });
        }
        // Only what the filters read, unless a route reads more (`reads_whole`) or the filters read everything:
        // the same verdicts and the same refusals either way (`filter::Needs`).
        let whole = self.reads_whole || self.filters.needs().is_everything();
        let mut budget = EventBudget::new(self.filters.distinct());
        let (verdicts, doc) = if whole {
            let doc: serde_json::Value = serde_json::from_slice(body).map_err(|e| e.to_string())?;
            (self.filters.evaluate(&doc, &mut budget), Some(doc))
        } else {
            let verdicts = self
                .filters
                .evaluate_body(body, &mut budget)
                .map_err(|e| e.to_string())?;
            (verdicts, None)
        };
        let mut exhausted = false;
        let routes = self
            .routes
            .iter()
            .enumerate()
            .filter(|(i, r)| {
                let Some(verdict) = verdicts.get(*i) else {
                    return true;
                };
                let c = &r.route.filter_metrics;
                match verdict {
                    Ok(true) => {
                        c.matched.inc();
                        true
                    }
                    Ok(false) => {
                        c.not_matched.inc();
                        false
                    }
                    Err(e) => {
                        // Fail closed, as ISC does; never silently.
                        c.error.inc();
                        exhausted |= matches!(e, EvalError::OverEventBudget(_));
                        tracing::warn!(tracking_id = %tracking_id, subscription = %r.route.subscription_id, error = %e, "the subscription's filter failed on this event; it does not match");
                        false
                    }
                }
            })
            .map(|(i, _)| i)
            .collect();
        if exhausted {
            self.budget_exhausted.inc();
        }
        Ok(Selected { routes, json: doc })
    }
}
