//! The ingress: the URL an ISC tenant's HTTP subscription posts to.
//!
//! `POST /events/{triggerId}` or `POST /events` (trigger id then from `_metadata.triggerId`). One function per
//! step, in order (`route_request`): the path's trigger; `admit` (per-IP rate limit, before auth: it is cheap
//! and shields the auth path; method; a loop through this relay's own webhook); `authenticate` (credentials,
//! per-credential rate limit); `read_body` (content type, size, read timeout); `metadata` (a JSON object,
//! `_metadata`); `choose_trigger`; the routing table's lookup; `deliver` (the router picks the subscriptions,
//! room is reserved in every matched sink's queue, all or nothing: a full queue answers 503 and nothing is
//! enqueued; the deliveries are handed over); `answer` (at once in `accepted` mode, or once every
//! `delivered`-mode subscription's broker acknowledged). A step refuses with a typed [`refusal::Refusal`],
//! which alone turns into the metric label and ISC's error body. The body is forwarded as the exact bytes
//! received.

pub mod auth;
pub mod limits;
pub mod metrics;
pub mod probe;
mod refusal;

use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;

use crate::envelope::TraceContext;
use crate::error::{ApiError, TrackingId};
use crate::model::AckMode;
use crate::pipeline::{Delivery, Event, Outcome, RouteEntry, Routes, Share};
use crate::router::{Lookup, Router};
use crate::sinks::SinkError;

pub use auth::{Authenticator, Credential};
pub use limits::{IngressLimits, Scope};
pub use metrics::IngressMetrics;
use refusal::Refusal;

pub struct IngressState {
    pub router: Arc<ArcSwap<Router>>,
    pub auth: Authenticator,
    pub max_body_bytes: u64,
    pub body_read_timeout: Duration,
    pub ack_timeout: Duration,
    pub retry_after_s: u64,
    pub metrics: IngressMetrics,
    /// `[ingress.rate_limit]` (`IngressLimits::default()`: off).
    pub limits: IngressLimits,
    /// `trigger-relay-<instance>`: the token this relay's webhooks put in `Via`; a request carrying it is a loop.
    pub loop_token: Arc<str>,
}

/// Counts a request in flight for as long as its handler lives (also when the connection is dropped). Borrows
/// the gauge from the state the handler holds: no reference count to take and give back per request.
struct InFlight<'a>(&'a prometheus::IntGauge);

impl<'a> InFlight<'a> {
    fn new(g: &'a prometheus::IntGauge) -> Self {
        g.inc();
        Self(g)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// The trigger a request named, for its metric label: a catalog id or `unknown` (bounded).
enum Named {
    None,
    Raw(String),
    Known(Arc<str>),
    /// Routed and accepted: its `200` counter, resolved when the routing table was built.
    Accepted(prometheus::IntCounter),
}

/// Handle one ingress request.
/// `peer` is the TCP peer (the per-IP rate limit's source, unless it is a trusted proxy).
pub async fn handle(
    state: Arc<IngressState>,
    req: Request<Incoming>,
    peer: SocketAddr,
) -> Response<Full<Bytes>> {
    let m = &state.metrics;
    let _in_flight = InFlight::new(&m.in_flight);
    let (trigger, result) = route_request(&state, req, peer).await;
    if let (Named::Accepted(counter), Ok(())) = (&trigger, &result) {
        counter.inc();
        return accepted();
    }
    // Error paths name a trigger not yet looked up: it is a label only if the catalog has it.
    let known = match trigger {
        Named::Raw(t) => state
            .router
            .load()
            .catalog()
            .get(&t)
            .map(|i| Arc::<str>::from(i.id.as_str())),
        Named::Known(t) => Some(t),
        Named::Accepted(_) | Named::None => None,
    };
    let label: &str = known.as_deref().unwrap_or("unknown");
    let resp = match result {
        Ok(()) => accepted(),
        Err(e) => {
            if e.shed || e.status == StatusCode::TOO_MANY_REQUESTS {
                // Under overload (or a flood from one source) this is thousands per second: the shed and
                // rate-limited counters tell it, the log would drown.
                tracing::debug!(tracking_id = %e.tracking_id, trigger = label, causes = ?e.causes, "ingress request shed");
            } else if e.status.is_server_error() {
                tracing::warn!(tracking_id = %e.tracking_id, status = e.status.as_u16(), trigger = label, error = ?e.message, causes = ?e.causes, "ingress request failed");
            } else {
                tracing::info!(tracking_id = %e.tracking_id, status = e.status.as_u16(), trigger = label, error = ?e.message, causes = ?e.causes, "ingress request refused");
            }
            e.into_response()
        }
    };
    m.requests
        .with_label_values(&[label, resp.status().as_str()])
        .inc();
    resp
}

/// 200 with an empty body. hyper writes its `content-length: 0` (HTTP/1.1) from the body's exact size: no header
/// map is built here, on the hot path.
fn accepted() -> Response<Full<Bytes>> {
    Response::new(Full::new(Bytes::new()))
}

/// One request through the ingress's steps: the path's trigger → admit (per-IP limit, method, loop) →
/// authenticate (and the per-credential limit) → read the body → its metadata (JSON object, trigger id) →
/// resolve the routes → reserve and enqueue → answer (at once, or after every `delivered` acknowledgement).
/// Each step refuses with a [`Refusal`]; the trigger named so far labels the answer's metric.
async fn route_request(
    state: &IngressState,
    req: Request<Incoming>,
    peer: SocketAddr,
) -> (Named, Result<(), ApiError>) {
    // Split once: the trigger id borrows from the path (no allocation unless it is percent-encoded).
    let (req, body) = req.into_parts();
    let path_trigger = match trigger_in_path(req.uri.path()) {
        Ok(t) => t,
        Err(r) => return (Named::None, Err(r.answer(state))),
    };
    let before_lookup = |r: Refusal| {
        let named = path_trigger
            .as_ref()
            .map_or(Named::None, |t| Named::Raw(t.to_string()));
        (named, Err(r.answer(state)))
    };
    if let Err(r) = admit(state, &req, peer).and_then(|()| authenticate(state, &req)) {
        return before_lookup(r);
    }
    let body = match read_body(state, &req, body).await {
        Ok(b) => b,
        Err(r) => return before_lookup(r),
    };
    let received = Instant::now();
    let (body_trigger, invocation_id) = match metadata(&body) {
        Ok(m) => (m.trigger_id, m.invocation_id),
        Err(r) => return before_lookup(r),
    };
    let trigger_id = match choose_trigger(&path_trigger, &body_trigger) {
        Ok(t) => t,
        Err(r) => return before_lookup(r),
    };
    // The table is loaded only now, so a slow client holds no queue (and no shutdown) hostage.
    let router = state.router.load_full();
    let routes = match router.lookup(trigger_id) {
        Lookup::Known(r) => r,
        Lookup::Unrouted(info) => {
            state
                .metrics
                .unrouted
                .with_label_values(&[info.id.as_str()])
                .inc();
            return (Named::Known(info.id.as_str().into()), Ok(()));
        }
        Lookup::RequestResponse(info) => {
            let named = Named::Known(info.id.as_str().into());
            return (
                named,
                Err(Refusal::RequestResponse(trigger_id.to_string()).answer(state)),
            );
        }
        Lookup::Unknown => {
            return (
                Named::None,
                Err(Refusal::UnknownTrigger(trigger_id.to_string()).answer(state)),
            )
        }
    };
    // From here on a failure is labelled with the routed trigger, and (with span export on) the accepted event's
    // `ingress` span carries the answer's status.
    let mut span: Option<Box<IngressSpan>> = None;
    let invocation_id = invocation_id.map(|s| s.into_owned().into_boxed_str());
    let body = body.clone();
    let result = deliver(
        state,
        &req,
        routes,
        body,
        received,
        invocation_id,
        &mut span,
    )
    .await;
    match result {
        Ok(Some(accepted)) => (Named::Accepted(accepted), Ok(())),
        Ok(None) => (Named::Known(routes.id.clone()), Ok(())),
        Err(r) => {
            let e = r.answer(state);
            if let Some(s) = span.as_mut() {
                s.status = e.status.as_u16();
            }
            (Named::Known(routes.id.clone()), Err(e))
        }
    }
}

/// The trigger id in the path (`/events/{triggerId}`), `None` for `/events`.
fn trigger_in_path(path: &str) -> Result<Option<Cow<'_, str>>, Refusal> {
    if path == "/events" || path == "/events/" {
        return Ok(None);
    }
    match path.strip_prefix("/events/") {
        // Most ids have no `%` (ISC does not encode the `:`): borrowed as they are, without the decoder's pass.
        Some(t) if t.contains('%') => Ok(Some(
            percent_encoding::percent_decode_str(t).decode_utf8_lossy(),
        )),
        Some(t) => Ok(Some(Cow::Borrowed(t))),
        None => Err(Refusal::Path(path.to_string())),
    }
}

/// Before the credentials are read: the per-IP limit (cheap, and it shields the auth path), the method, a loop.
fn admit(
    state: &IngressState,
    req: &http::request::Parts,
    peer: SocketAddr,
) -> Result<(), Refusal> {
    if state.limits.per_ip.is_some() {
        let ip = limits::source_ip(&req.headers, peer, state.limits.trusted_proxies());
        if let Err(l) = limits::admit(state.limits.per_ip.as_ref(), &ip, &state.metrics, Scope::Ip)
        {
            return Err(Refusal::RateLimited {
                scope: Scope::Ip,
                retry_after_s: l.retry_after_s,
                credential: None,
            });
        }
    }
    if req.method != Method::POST {
        return Err(Refusal::Method(req.method.clone()));
    }
    // A webhook subscription that points back at this relay (directly or through a load balancer) would loop.
    if !state.loop_token.is_empty()
        && req
            .headers
            .get_all(header::VIA)
            .iter()
            .any(|v| v.to_str().is_ok_and(|v| v.contains(&*state.loop_token)))
    {
        return Err(Refusal::Loop);
    }
    Ok(())
}

/// The credentials, and the per-credential limit.
fn authenticate(state: &IngressState, req: &http::request::Parts) -> Result<(), Refusal> {
    let credential = state
        .auth
        .check(req.headers.get(header::AUTHORIZATION))
        .map_err(|e| Refusal::Unauthorized(e.to_string()))?;
    let limit = state.limits.per_credential.as_ref();
    if let Err(l) = limits::admit(limit, &credential, &state.metrics, Scope::Credential) {
        return Err(Refusal::RateLimited {
            scope: Scope::Credential,
            retry_after_s: l.retry_after_s,
            credential: Some(state.auth.name(credential).to_string()),
        });
    }
    Ok(())
}

/// The body: JSON by its content type, within `max_body_bytes` (declared or read) and `body_read_timeout_ms`.
async fn read_body(
    state: &IngressState,
    req: &http::request::Parts,
    body: Incoming,
) -> Result<Bytes, Refusal> {
    let json = req
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .eq_ignore_ascii_case("application/json")
        })
        .unwrap_or(false);
    if !json {
        return Err(Refusal::ContentType);
    }
    let declared = req
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > state.max_body_bytes) {
        return Err(Refusal::TooLarge);
    }
    let read = Limited::new(body, state.max_body_bytes as usize).collect();
    let body = match tokio::time::timeout(state.body_read_timeout, read).await {
        Err(_) => return Err(Refusal::BodyTimeout),
        Ok(Ok(c)) => c.to_bytes(),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => return Err(Refusal::TooLarge),
        Ok(Err(e)) => return Err(Refusal::Body(e.to_string())),
    };
    state.metrics.bytes.inc_by(body.len() as u64);
    Ok(body)
}

/// `_metadata.triggerId` and `_metadata.invocationId` of a body that must be a JSON object.
fn metadata(body: &Bytes) -> Result<probe::Metadata<'_>, Refusal> {
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(Refusal::NotObject);
    }
    let text =
        std::str::from_utf8(body).map_err(|e| Refusal::InvalidJson(format!("not UTF-8: {e}")))?;
    probe::probe(text).map_err(|e| Refusal::InvalidJson(e.to_string()))
}

/// The trigger id: the path's and the body's, which must agree when both are there.
fn choose_trigger<'a>(
    path: &'a Option<Cow<'a, str>>,
    body: &'a Option<Cow<'a, str>>,
) -> Result<&'a str, Refusal> {
    match (path, body) {
        (Some(p), Some(b)) if p != b => Err(Refusal::TriggerMismatch {
            path: p.to_string(),
            body: b.to_string(),
        }),
        (Some(p), _) => Ok(p),
        (None, Some(b)) => Ok(b),
        (None, None) => Err(Refusal::NoTrigger),
    }
}

/// Select the routes, reserve room in every matched queue (all or nothing), hand the deliveries over, and wait
/// for the `delivered`-mode ones. `Ok(Some(counter))`: accepted and routed; `Ok(None)`: no filter matched.
async fn deliver(
    state: &IngressState,
    req: &http::request::Parts,
    routes: &crate::router::TriggerRoutes,
    body: Bytes,
    received: Instant,
    invocation_id: Option<Box<str>>,
    span: &mut Option<Box<IngressSpan>>,
) -> Result<Option<prometheus::IntCounter>, Refusal> {
    let tracking_id = TrackingId::new();
    let (selected, json) = match routes.select(&body, &tracking_id) {
        Ok(s) => (s.routes, s.json),
        Err(why) => return Err(Refusal::UnreadableJson { why, tracking_id }),
    };
    if selected.is_empty() {
        state
            .metrics
            .unrouted
            .with_label_values(&[&routes.id])
            .inc();
        return Ok(None);
    }
    // All or nothing: reserve room in every matched queue before handing anything over, once per queue.
    let table = &routes.routes;
    let groups = by_queue(selected, table);
    let mut reservations = Vec::with_capacity(groups.len());
    for group in &groups {
        let queue = &table[group[0]].queue;
        match queue.try_reserve_many(group.len(), body.len()) {
            Ok(r) => reservations.push(r),
            Err(full) => {
                let sink = queue.name().to_string();
                return Err(Refusal::Shed { sink, full });
            }
        }
    }
    let mut event = Event::new(
        routes.id.clone(),
        invocation_id,
        tracking_id,
        body,
        received,
    );
    if let Some(doc) = json {
        event.seed_json(doc);
    }
    if let Some(trace) = TraceContext::from_request(&req.headers) {
        event.trace = trace;
    }
    let spans = table[groups[0][0]].route.spans.clone();
    if spans.is_some() {
        event.span_id = Some(crate::pipeline::new_span_id());
        if !event.trace.remote {
            // The relay's own trace is recorded (its root is the `ingress` span).
            event.trace.flags = 1;
        }
    }
    tracing::debug!(tracking_id = %event.tracking_id, trace_id = %event.trace.trace_id_hex(), trigger = %event.trigger_id, "event accepted");
    let event = Arc::new(event);
    let enqueue_began = spans.as_ref().map(|_| SystemTime::now());
    let mut waits = Vec::new();
    let mut handed_over = true;
    let mut ack = |entry: &RouteEntry| {
        (entry.route.ack == AckMode::Delivered).then(|| {
            let (tx, rx) = tokio::sync::oneshot::channel::<Outcome>();
            waits.push(rx);
            tx
        })
    };
    for (group, reservation) in groups.into_iter().zip(reservations) {
        // One share per queue: the event, the table its deliveries index, their reservation.
        let share = Share::new(
            event.clone(),
            Routes::Table(routes.table.clone()),
            reservation,
        );
        let queue = &table[group[0]].queue;
        // Refused only when the sink worker is gone (shutdown, or a worker that failed): not accepted.
        handed_over &= match group.as_slice() {
            [i] => Delivery::enqueue_one(queue, Delivery::new(share, *i, ack(&table[*i]))),
            _ => {
                let deliveries = group
                    .iter()
                    .map(|&i| Delivery::new(share.clone(), i, ack(&table[i])))
                    .collect();
                Delivery::enqueue_group(queue, deliveries)
            }
        };
    }
    if let (Some(spans), Some(enqueued)) = (spans, enqueue_began) {
        *span = Some(Box::new(IngressSpan {
            spans,
            event: event.clone(),
            path: req.uri.path().to_string(),
            status: 200,
            // From the body's arrival (the relay reads no clock earlier in a request, for the untraced path's
            // sake).
            started: event.received_at,
            enqueued: (enqueued, SystemTime::now()),
        }));
    }
    if !handed_over {
        return Err(Refusal::SinkStopped(event.tracking_id));
    }
    if !waits.is_empty() {
        answer(state, &event, waits).await?;
    }
    Ok(Some(routes.accepted.clone()))
}

/// The matched routes (indices into `table`) by sink queue, in route order within each: the deliveries of one
/// event to one queue share one reservation and one channel item. One route (the common case) costs no further
/// allocation.
fn by_queue(selected: Vec<usize>, table: &[RouteEntry]) -> Vec<Vec<usize>> {
    if selected.len() == 1 {
        return vec![selected];
    }
    let mut groups: Vec<Vec<usize>> = Vec::new();
    for i in selected {
        let queue = &table[i].queue;
        match groups.iter_mut().find(|g| table[g[0]].queue.same(queue)) {
            Some(g) => g.push(i),
            None => groups.push(vec![i]),
        }
    }
    groups
}

/// Wait (at most `ack_timeout_ms`) for every `delivered`-mode acknowledgement; the worst failure answers: a
/// rejection (502) before an unavailable destination (503).
async fn answer(
    state: &IngressState,
    event: &Event,
    waits: Vec<tokio::sync::oneshot::Receiver<Outcome>>,
) -> Result<(), Refusal> {
    let results = tokio::time::timeout(state.ack_timeout, futures_util::future::join_all(waits))
        .await
        .map_err(|_| Refusal::AckTimeout(event.tracking_id))?;
    let mut worst: Option<SinkError> = None;
    for r in results {
        if let Err(e) = r.unwrap_or(Err(SinkError::ShutDown)) {
            if !matches!(worst, Some(SinkError::Rejected(_) | SinkError::TooLarge(_))) {
                worst = Some(e);
            }
        }
    }
    match worst {
        None => Ok(()),
        Some(e @ (SinkError::Rejected(_) | SinkError::TooLarge(_))) => {
            Err(Refusal::DestinationRejected(event.tracking_id, e))
        }
        Some(other) => Err(Refusal::NotDelivered(event.tracking_id, other)),
    }
}

/// The `ingress` span of an accepted event, exported (with the answer's status) when the request is answered.
struct IngressSpan {
    spans: Arc<dyn crate::pipeline::SpanExporter>,
    event: Arc<Event>,
    path: String,
    status: u16,
    started: SystemTime,
    enqueued: (SystemTime, SystemTime),
}

impl Drop for IngressSpan {
    fn drop(&mut self) {
        self.spans.ingress(
            &self.event,
            &self.path,
            self.status,
            self.started,
            self.enqueued,
        );
    }
}
