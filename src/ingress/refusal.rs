//! Why the ingress did not accept a request: one variant per reason, typed, with its metric label (the
//! `reason` of `trigger_relay_ingress_rejected_total`) and its answer (ISC's `ErrorResponseDto`). The steps of
//! `route_request` return a `Refusal`; only [`Refusal::answer`] turns one into a response, so a label and its
//! status cannot drift apart, and nothing downstream compares message texts.

use http::{header, HeaderValue, Method, StatusCode};

use super::{IngressState, Scope};
use crate::error::{ApiError, TrackingId};
use crate::pipeline::{QueueFull, SinkError};

/// The answer to a request shed because a queue is full.
const SHED_MESSAGE: &str = "the relay is at capacity; retry later";

#[derive(Debug)]
pub(crate) enum Refusal {
    /// Not `/events` or `/events/{triggerId}`.
    Path(String),
    /// An `[ingress.rate_limit]` limit; `credential` names it for the per-credential one.
    RateLimited {
        scope: Scope,
        retry_after_s: u64,
        credential: Option<String>,
    },
    Method(Method),
    /// The request carries this relay's own webhook `Via` token.
    Loop,
    /// No or wrong credentials (the authenticator's reason).
    Unauthorized(String),
    ContentType,
    TooLarge,
    BodyTimeout,
    /// The body could not be read (the connection's reason).
    Body(String),
    NotObject,
    /// Not UTF-8 or not JSON (the reason).
    InvalidJson(String),
    TriggerMismatch {
        path: String,
        body: String,
    },
    NoTrigger,
    UnknownTrigger(String),
    RequestResponse(String),
    /// JSON the trigger's subscriptions cannot read (serde_json's reason).
    UnreadableJson {
        why: String,
        tracking_id: TrackingId,
    },
    /// A matched sink's queue has no room (or is closed).
    Shed {
        sink: String,
        full: QueueFull,
    },
    /// A matched sink's worker is gone.
    SinkStopped(TrackingId),
    AckTimeout(TrackingId),
    DestinationRejected(TrackingId, SinkError),
    NotDelivered(TrackingId, SinkError),
}

impl Refusal {
    /// The `reason` label (bounded: one per variant).
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Path(_) => "path",
            Self::RateLimited { .. } => "rate_limited",
            Self::Method(_) => "method",
            Self::Loop => "loop",
            Self::Unauthorized(_) => "auth",
            Self::ContentType => "content_type",
            Self::TooLarge => "too_large",
            Self::BodyTimeout => "body_timeout",
            Self::Body(_) => "body",
            Self::NotObject => "not_object",
            Self::InvalidJson(_) => "invalid_json",
            Self::TriggerMismatch { .. } => "trigger_mismatch",
            Self::NoTrigger => "no_trigger",
            Self::UnknownTrigger(_) => "unknown_trigger",
            Self::RequestResponse(_) => "request_response",
            Self::UnreadableJson { .. } => "unreadable_json",
            Self::Shed { .. } => "shed",
            Self::SinkStopped(_) => "sink_stopped",
            Self::AckTimeout(_) => "ack_timeout",
            Self::DestinationRejected(..) => "destination_rejected",
            Self::NotDelivered(..) => "not_delivered",
        }
    }

    /// Count it and build the answer.
    pub fn answer(self, state: &IngressState) -> ApiError {
        let m = &state.metrics;
        m.rejected.with_label_values(&[self.reason()]).inc();
        let unavailable = |tracking_id: TrackingId, cause: String| {
            ApiError::tracked(
                StatusCode::SERVICE_UNAVAILABLE,
                "the event was not acknowledged by its destination",
                tracking_id.to_string(),
            )
            .cause(cause)
            .retry_after(state.retry_after_s)
        };
        match self {
            Self::Path(path) => ApiError::new(StatusCode::NOT_FOUND, format!("no such path `{path}`"))
                .cause("POST events to /events/{triggerId} or /events"),
            Self::RateLimited {
                scope,
                retry_after_s,
                credential,
            } => {
                m.rate_limited.with_label_values(&[scope.label()]).inc();
                let what = match scope {
                    Scope::Ip => "source IP",
                    Scope::Credential => "credential",
                };
                let e = ApiError::new(
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
                .dto_body();
                match credential {
                    Some(c) => e.cause(format!("credential: {c}")),
                    None => e,
                }
            }
            Self::Method(method) => ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                format!("method {method} is not allowed"),
            )
            .cause("ISC delivers events with POST")
            .with_header(header::ALLOW, HeaderValue::from_static("POST")),
            Self::Loop => ApiError::new(
                StatusCode::LOOP_DETECTED,
                "this event was sent by this relay's own webhook delivery",
            )
            .cause("an HTTP subscription points at this relay's ingress: change its URL"),
            Self::Unauthorized(why) => ApiError::new(StatusCode::UNAUTHORIZED, why).with_header(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(state.auth.challenge()),
            ),
            Self::ContentType => ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "the body must be application/json",
            )
            .cause("set Content-Type: application/json"),
            Self::TooLarge => ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the body is larger than {} bytes", state.max_body_bytes),
            )
            .cause("ingress.max_body_bytes limits the size of one event"),
            Self::BodyTimeout => ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                format!(
                    "the request body did not arrive within {} ms",
                    state.body_read_timeout.as_millis()
                ),
            )
            .cause("ingress.body_read_timeout_ms limits how long one request body may take"),
            Self::Body(why) => {
                ApiError::new(StatusCode::BAD_REQUEST, "the request body could not be read").cause(why)
            }
            Self::NotObject => {
                ApiError::new(StatusCode::BAD_REQUEST, "the body must be a JSON object")
                    .cause("ISC trigger payloads are JSON objects")
            }
            Self::InvalidJson(why) => {
                ApiError::new(StatusCode::BAD_REQUEST, "the body is not valid JSON").cause(why)
            }
            Self::TriggerMismatch { path, body } => ApiError::new(
                StatusCode::BAD_REQUEST,
                "the trigger id in the path and in _metadata.triggerId differ",
            )
            .cause(format!("path: {path}; _metadata.triggerId: {body}")),
            Self::NoTrigger => ApiError::new(StatusCode::BAD_REQUEST, "no trigger id")
                .cause("POST to /events/{triggerId}, or include _metadata.triggerId in the body"),
            Self::UnknownTrigger(id) => {
                ApiError::new(StatusCode::NOT_FOUND, format!("unknown trigger `{id}`"))
                    .cause("add it to [[catalog.triggers]] in the config if your tenant has it")
            }
            Self::RequestResponse(id) => ApiError::new(
                StatusCode::NOT_IMPLEMENTED,
                format!("`{id}` is a REQUEST_RESPONSE trigger; trigger-relay relays FIRE_AND_FORGET triggers only"),
            ),
            Self::UnreadableJson { why, tracking_id } => ApiError::tracked(
                StatusCode::BAD_REQUEST,
                "the body is JSON this trigger's subscriptions cannot read",
                tracking_id.to_string(),
            )
            .cause(why)
            .cause("nesting deeper than 128, a number beyond ±1.8e308 (or an integer of hundreds of digits), or an unpaired \\u surrogate"),
            Self::Shed { sink, full } => {
                m.shed.with_label_values(&[sink.as_str()]).inc();
                let cause = match full {
                    QueueFull::Closed => {
                        format!("sink `{sink}` is stopped (the relay is shutting down)")
                    }
                    other => format!("sink `{sink}`: {other}"),
                };
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, SHED_MESSAGE)
                    .shed()
                    .cause(cause)
                    .retry_after(state.retry_after_s)
            }
            Self::SinkStopped(tracking_id) => ApiError::tracked(
                StatusCode::SERVICE_UNAVAILABLE,
                "the relay is shutting down; retry later",
                tracking_id.to_string(),
            )
            .cause("a destination's sink is stopped")
            .retry_after(state.retry_after_s),
            Self::AckTimeout(tracking_id) => unavailable(
                tracking_id,
                format!(
                    "no acknowledgement within delivery.ack_timeout_ms ({} ms)",
                    state.ack_timeout.as_millis()
                ),
            ),
            Self::DestinationRejected(tracking_id, e) => ApiError::tracked(
                StatusCode::BAD_GATEWAY,
                "the destination rejected the event",
                tracking_id.to_string(),
            )
            .cause(e.to_string()),
            Self::NotDelivered(tracking_id, e) => unavailable(tracking_id, e.to_string()),
        }
    }
}
