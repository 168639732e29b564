//! The ingress: the URL an ISC tenant's HTTP subscription posts to.
//!
//! `POST /events/{triggerId}` or `POST /events` (trigger id then from `_metadata.triggerId`). Checks, in order:
//! path, per-IP rate limit (before auth: it is cheap and shields the auth path), method, auth, per-credential
//! rate limit, content type, size, JSON object, trigger; then the router picks the subscriptions, the ingress
//! reserves room in every matched sink's queue (all or nothing: a full queue answers 503 and nothing is
//! enqueued), hands the deliveries over and answers 200 with an empty body, at once in `accepted` mode or once
//! every `delivered`-mode subscription's broker acknowledged. The body is forwarded as the exact bytes received.

pub mod auth;
pub mod limits;
pub mod metrics;
pub mod probe;

use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;

use crate::envelope::TraceContext;
use crate::error::{ApiError, TrackingId};
use crate::model::AckMode;
use crate::pipeline::queue::QueueFull;
use crate::pipeline::{Delivery, Event, Outcome};
use crate::router::{Lookup, Router};
use crate::sinks::SinkError;

pub use auth::{Authenticator, Credential};
pub use limits::{IngressLimits, Scope};
pub use metrics::IngressMetrics;

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

/// The answer to a request shed because a queue is full (logged at debug level: the metric counts them).
const SHED_MESSAGE: &str = "the relay is at capacity; retry later";

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

fn refuse(m: &IngressMetrics, reason: &str, e: ApiError) -> ApiError {
    m.rejected.with_label_values(&[reason]).inc();
    e
}

/// A 429 from an `[ingress.rate_limit]` limit, counted by scope; its cause names the limit.
fn rate_limited(state: &IngressState, scope: Scope, retry_after_s: u64) -> ApiError {
    state
        .metrics
        .rate_limited
        .with_label_values(&[scope.label()])
        .inc();
    let what = match scope {
        Scope::Ip => "source IP",
        Scope::Credential => "credential",
    };
    ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        format!("rate limit exceeded for this {what}; retry after {retry_after_s} s"),
    )
    .cause(format!(
        "ingress.rate_limit.{} allows {} requests per {} ms",
        scope.key(),
        state.limits.limit(scope),
        state.limits.window_ms()
    ))
    .retry_after(retry_after_s)
    .dto_body()
}

async fn route_request(
    state: &IngressState,
    req: Request<Incoming>,
    peer: SocketAddr,
) -> (Named, Result<(), ApiError>) {
    let m = &state.metrics;
    // Split once: the trigger id borrows from the path (no allocation unless it is percent-encoded).
    let (req, body) = req.into_parts();
    let path = req.uri.path();
    let path_trigger: Option<Cow<'_, str>> = if path == "/events" || path == "/events/" {
        None
    } else if let Some(t) = path.strip_prefix("/events/") {
        // Most ids have no `%` (ISC does not encode the `:`): borrowed as they are, without the decoder's pass.
        Some(if t.contains('%') {
            percent_encoding::percent_decode_str(t).decode_utf8_lossy()
        } else {
            Cow::Borrowed(t)
        })
    } else {
        let e = ApiError::new(StatusCode::NOT_FOUND, format!("no such path `{path}`"))
            .cause("POST events to /events/{triggerId} or /events");
        return (Named::None, Err(refuse(m, "path", e)));
    };
    macro_rules! fail {
        ($reason:expr, $e:expr) => {
            return (
                path_trigger
                    .as_ref()
                    .map_or(Named::None, |t| Named::Raw(t.to_string())),
                Err(refuse(m, $reason, $e)),
            )
        };
    }
    if state.limits.per_ip.is_some() {
        let ip = limits::source_ip(&req.headers, peer, state.limits.trusted_proxies());
        if let Err(l) = limits::admit(state.limits.per_ip.as_ref(), &ip, m, Scope::Ip) {
            fail!(
                "rate_limited",
                rate_limited(state, Scope::Ip, l.retry_after_s)
            );
        }
    }
    if req.method != Method::POST {
        fail!(
            "method",
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                format!("method {} is not allowed", req.method)
            )
            .cause("ISC delivers events with POST")
            .with_header(header::ALLOW, HeaderValue::from_static("POST"))
        );
    }
    // A webhook subscription that points back at this relay (directly or through a load balancer) would loop.
    if !state.loop_token.is_empty()
        && req
            .headers
            .get_all(header::VIA)
            .iter()
            .any(|v| v.to_str().is_ok_and(|v| v.contains(&*state.loop_token)))
    {
        fail!(
            "loop",
            ApiError::new(
                StatusCode::LOOP_DETECTED,
                "this event was sent by this relay's own webhook delivery"
            )
            .cause("an HTTP subscription points at this relay's ingress: change its URL")
        );
    }
    let credential = match state.auth.check(req.headers.get(header::AUTHORIZATION)) {
        Ok(c) => c,
        Err(e) => {
            let challenge = HeaderValue::from_static(state.auth.challenge());
            fail!(
                "auth",
                ApiError::new(StatusCode::UNAUTHORIZED, e.to_string())
                    .with_header(header::WWW_AUTHENTICATE, challenge)
            );
        }
    };
    if let Err(l) = limits::admit(
        state.limits.per_credential.as_ref(),
        &credential,
        m,
        Scope::Credential,
    ) {
        let e = rate_limited(state, Scope::Credential, l.retry_after_s)
            .cause(format!("credential: {}", state.auth.name(credential)));
        fail!("rate_limited", e);
    }
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
        fail!(
            "content_type",
            ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "the body must be application/json"
            )
            .cause("set Content-Type: application/json")
        );
    }
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the body is larger than {} bytes", state.max_body_bytes),
        )
        .cause("ingress.max_body_bytes limits the size of one event")
    };
    let declared = req
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > state.max_body_bytes) {
        fail!("too_large", too_large());
    }
    let read = Limited::new(body, state.max_body_bytes as usize).collect();
    let body = match tokio::time::timeout(state.body_read_timeout, read).await {
        Err(_) => fail!(
            "body_timeout",
            ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                format!(
                    "the request body did not arrive within {} ms",
                    state.body_read_timeout.as_millis()
                )
            )
            .cause("ingress.body_read_timeout_ms limits how long one request body may take")
        ),
        Ok(Ok(c)) => c.to_bytes(),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => fail!("too_large", too_large()),
        Ok(Err(e)) => fail!(
            "body",
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "the request body could not be read"
            )
            .cause(e.to_string())
        ),
    };
    m.bytes.inc_by(body.len() as u64);
    let received = Instant::now();

    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        fail!(
            "not_object",
            ApiError::new(StatusCode::BAD_REQUEST, "the body must be a JSON object")
                .cause("ISC trigger payloads are JSON objects")
        );
    }
    let text = match std::str::from_utf8(&body) {
        Ok(t) => t,
        Err(e) => fail!(
            "invalid_json",
            ApiError::new(StatusCode::BAD_REQUEST, "the body is not valid JSON")
                .cause(format!("not UTF-8: {e}"))
        ),
    };
    let (body_trigger, invocation_id) = match probe::probe(text) {
        Ok(meta) => (meta.trigger_id, meta.invocation_id),
        Err(e) => fail!(
            "invalid_json",
            ApiError::new(StatusCode::BAD_REQUEST, "the body is not valid JSON")
                .cause(e.to_string())
        ),
    };
    // The table is loaded only now, so a slow client holds no queue (and no shutdown) hostage.
    let router = state.router.load_full();
    let trigger_id: &str = match (&path_trigger, &body_trigger) {
        (Some(p), Some(b)) if p != b => fail!(
            "trigger_mismatch",
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "the trigger id in the path and in _metadata.triggerId differ"
            )
            .cause(format!("path: {p}; _metadata.triggerId: {b}"))
        ),
        (Some(p), _) => p,
        (None, Some(b)) => b,
        (None, None) => fail!(
            "no_trigger",
            ApiError::new(StatusCode::BAD_REQUEST, "no trigger id")
                .cause("POST to /events/{triggerId}, or include _metadata.triggerId in the body")
        ),
    };
    // The metric label of a failure from here on: the trigger once looked up (`unknown` while the catalog lacks
    // it), named (its id's reference taken) only when the request fails.
    let mut trigger: Option<&Arc<str>> = None;
    // With span export on: the accepted event's `ingress` span, exported when this function returns.
    let mut span: Option<Box<IngressSpan>> = None;
    macro_rules! fail_t {
        ($reason:expr, $e:expr) => {{
            let e = $e;
            if let Some(s) = span.as_mut() {
                s.status = e.status.as_u16();
            }
            return (
                trigger.map_or(Named::None, |t| Named::Known(t.clone())),
                Err(refuse(m, $reason, e)),
            );
        }};
    }
    let routes = match router.lookup(trigger_id) {
        Lookup::Unknown => fail_t!(
            "unknown_trigger",
            ApiError::new(
                StatusCode::NOT_FOUND,
                format!("unknown trigger `{trigger_id}`")
            )
            .cause("add it to [[catalog.triggers]] in the config if your tenant has it")
        ),
        Lookup::RequestResponse(info) => {
            let id: Arc<str> = info.id.as_str().into();
            trigger = Some(&id);
            fail_t!(
            "request_response",
            ApiError::new(
                StatusCode::NOT_IMPLEMENTED,
                format!("`{trigger_id}` is a REQUEST_RESPONSE trigger; trigger-relay relays FIRE_AND_FORGET triggers only")
            )
        )
        }
        Lookup::Unrouted(info) => {
            m.unrouted.with_label_values(&[info.id.as_str()]).inc();
            return (Named::Known(info.id.as_str().into()), Ok(()));
        }
        Lookup::Known(r) => r,
    };
    trigger = Some(&routes.id);
    let tracking_id = TrackingId::new();
    let (selected, json) = match routes.select(&body, &tracking_id) {
        Ok(s) => (s.routes, s.json),
        Err(why) => fail_t!(
            "unreadable_json",
            ApiError::tracked(
                StatusCode::BAD_REQUEST,
                "the body is JSON this trigger's subscriptions cannot read",
                tracking_id.to_string(),
            )
            .cause(why)
            .cause("nesting deeper than 128, a number beyond ±1.8e308 (or an integer of hundreds of digits), or an unpaired \\u surrogate")
        ),
    };
    if selected.is_empty() {
        m.unrouted.with_label_values(&[&routes.id]).inc();
        return (Named::Known(routes.id.clone()), Ok(()));
    }
    // All or nothing: reserve room in every matched queue before handing anything over.
    let mut reservations = Vec::with_capacity(selected.len());
    for entry in &selected {
        match entry.queue.try_reserve(body.len()) {
            Ok(r) => reservations.push(r),
            Err(full) => {
                m.shed.with_label_values(&[entry.queue.name()]).inc();
                let msg = match full {
                    QueueFull::Closed => format!(
                        "sink `{}` is stopped (the relay is shutting down)",
                        entry.queue.name()
                    ),
                    other => format!("sink `{}`: {other}", entry.queue.name()),
                };
                fail_t!(
                    "shed",
                    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, SHED_MESSAGE)
                        .shed()
                        .cause(msg)
                        .retry_after(state.retry_after_s)
                );
            }
        }
    }
    let mut event = Event::new(
        routes.id.clone(),
        invocation_id.map(|s| s.into_owned().into_boxed_str()),
        tracking_id,
        body.clone(),
        received,
    );
    if let Some(doc) = json {
        event.seed_json(doc);
    }
    if let Some(trace) = TraceContext::from_request(&req.headers) {
        event.trace = trace;
    }
    let spans = selected.first().and_then(|e| e.route.spans.clone());
    if spans.is_some() {
        event.span_id = Some(crate::spans::new_span_id());
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
    for (entry, reservation) in selected.into_iter().zip(reservations) {
        let ack = if entry.route.ack == AckMode::Delivered {
            let (tx, rx) = tokio::sync::oneshot::channel::<Outcome>();
            waits.push(rx);
            Some(tx)
        } else {
            None
        };
        // Refused only when the sink worker is gone (shutdown, or a worker that failed): not accepted.
        handed_over &= Delivery::enqueue(event.clone(), entry, ack, reservation);
    }
    if let (Some(spans), Some(enqueued)) = (spans, enqueue_began) {
        span = Some(Box::new(IngressSpan {
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
        let e = ApiError::tracked(
            StatusCode::SERVICE_UNAVAILABLE,
            "the relay is shutting down; retry later",
            event.tracking_id.to_string(),
        )
        .cause("a destination's sink is stopped")
        .retry_after(state.retry_after_s);
        fail_t!("sink_stopped", e);
    }
    if waits.is_empty() {
        return (Named::Accepted(routes.accepted.clone()), Ok(()));
    }
    let outcome =
        tokio::time::timeout(state.ack_timeout, futures_util::future::join_all(waits)).await;
    let unavailable = |cause: String| {
        ApiError::tracked(
            StatusCode::SERVICE_UNAVAILABLE,
            "the event was not acknowledged by its destination",
            event.tracking_id.to_string(),
        )
        .cause(cause)
        .retry_after(state.retry_after_s)
    };
    match outcome {
        Err(_) => fail_t!(
            "ack_timeout",
            unavailable(format!(
                "no acknowledgement within delivery.ack_timeout_ms ({} ms)",
                state.ack_timeout.as_millis()
            ))
        ),
        Ok(results) => {
            let mut worst: Option<SinkError> = None;
            for r in results {
                let r = r.unwrap_or(Err(SinkError::ShutDown));
                if let Err(e) = r {
                    if !matches!(worst, Some(SinkError::Rejected(_) | SinkError::TooLarge(_))) {
                        worst = Some(e);
                    }
                }
            }
            match worst {
                None => (Named::Accepted(routes.accepted.clone()), Ok(())),
                Some(e @ (SinkError::Rejected(_) | SinkError::TooLarge(_))) => {
                    let e = ApiError::tracked(
                        StatusCode::BAD_GATEWAY,
                        "the destination rejected the event",
                        event.tracking_id.to_string(),
                    )
                    .cause(e.to_string());
                    fail_t!("destination_rejected", e)
                }
                Some(other) => fail_t!("not_delivered", unavailable(other.to_string())),
            }
        }
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
