//! The admin listener, on its own port so it is never exposed with the ingress: `/metrics` (Prometheus text),
//! `/healthz` (the process answers and no sink worker has died), `/readyz` (every sink reached its destination once, the API's store was
//! replayed once, and not draining; an API store that is away later is named in the 200 answer, not a 503, so
//! events keep flowing),
//! and the Triggers API (`api`) when it is enabled. `/metrics` carries `/readyz`'s answer too, as
//! `trigger_relay_ready`, set from [`AdminState::not_ready`] at each scrape.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use prometheus::{Encoder, IntGauge, Registry, TextEncoder};

use crate::error::ApiError;
use crate::sinks::Readiness;

pub struct AdminState {
    pub registry: Registry,
    pub sinks: Vec<(String, Readiness)>,
    pub draining: Arc<AtomicBool>,
    /// The Triggers API, when `[api]` enables it.
    pub api: Option<Arc<crate::api::ApiState>>,
    /// `trigger_relay_ready` in `registry` ([`register_ready`]): set at each scrape of `/metrics`.
    pub ready: IntGauge,
    /// Config-file subscriptions whose destination the broker says is missing, with what is wrong.
    pub destinations: Arc<std::sync::Mutex<std::collections::BTreeMap<String, String>>>,
    /// The first pass over every config-file subscription's destination is done.
    pub destinations_checked: Arc<AtomicBool>,
}

/// Registers `trigger_relay_ready`, which `/metrics` sets to what `/readyz` would answer at that moment.
pub fn register_ready(r: &Registry) -> prometheus::Result<IntGauge> {
    let g = IntGauge::new(
        "trigger_relay_ready",
        "1 when /readyz answers 200, 0 while it answers 503 (a sink never connected or its worker failed, or draining)",
    )?;
    r.register(Box::new(g.clone()))?;
    Ok(g)
}

impl AdminState {
    /// Why the process should be restarted, if it should: a sink worker is gone (it panicked), so its queue is
    /// closed and its subscriptions get 503 until a restart. `/healthz` (the liveness probe) then fails.
    pub fn unhealthy(&self) -> Option<String> {
        let dead: Vec<&str> = self
            .sinks
            .iter()
            .filter(|(_, r)| r.has_failed())
            .map(|(n, _)| n.as_str())
            .collect();
        (!dead.is_empty()).then(|| {
            format!(
                "sink worker stopped: {} (its subscriptions get 503; restart the relay)",
                dead.join(", ")
            )
        })
    }

    /// Why the relay is not ready, if it is not.
    pub fn not_ready(&self) -> Option<String> {
        if self.draining.load(Ordering::Acquire) {
            return Some("draining".into());
        }
        if let Some(why) = self.api.as_ref().and_then(|a| a.not_ready()) {
            return Some(why);
        }
        let waiting: Vec<&str> = self
            .sinks
            .iter()
            .filter(|(_, r)| !r.is_ready())
            .map(|(n, _)| n.as_str())
            .collect();
        if !waiting.is_empty() {
            return Some(format!("waiting for sinks: {}", waiting.join(", ")));
        }
        // Once every sink has reached its broker: the destinations, asked of those brokers.
        if !self.destinations_checked.load(Ordering::Acquire) {
            return Some("checking the subscriptions' destinations".into());
        }
        let missing = self.destinations.lock().unwrap_or_else(|p| p.into_inner());
        (!missing.is_empty()).then(|| {
            missing
                .iter()
                .map(|(name, why)| format!("subscription `{name}`: {why}"))
                .collect::<Vec<_>>()
                .join("; ")
        })
    }
}

fn text(status: StatusCode, body: String, content_type: &'static str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

pub async fn handle(
    state: Arc<AdminState>,
    req: Request<Incoming>,
    peer: std::net::SocketAddr,
) -> Response<Full<Bytes>> {
    if let Some(api) = &state.api {
        if crate::api::ApiState::serves(req.uri().path()) {
            return api.handle(req, peer.ip()).await;
        }
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("method {} is not allowed", req.method()),
        )
        .with_header(header::ALLOW, HeaderValue::from_static("GET, HEAD"))
        .into_response();
    }
    match req.uri().path() {
        "/metrics" => {
            // Read at scrape time, so the gauge is never staler than the scrape itself.
            state.ready.set(i64::from(state.not_ready().is_none()));
            let mut buf = Vec::new();
            match TextEncoder::new().encode(&state.registry.gather(), &mut buf) {
                Ok(()) => text(
                    StatusCode::OK,
                    String::from_utf8_lossy(&buf).into_owned(),
                    "text/plain; version=0.0.4",
                ),
                Err(e) => {
                    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response()
                }
            }
        }
        "/healthz" => match state.unhealthy() {
            None => text(StatusCode::OK, "ok\n".into(), "text/plain"),
            Some(why) => text(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("unhealthy: {why}\n"),
                "text/plain",
            ),
        },
        "/readyz" => match state.not_ready() {
            None => {
                // Ready, with what an operator should know: the API's store away does not stop events.
                let note = state.api.as_ref().and_then(|a| a.degraded());
                let body = match note {
                    Some(n) => format!("ready ({n})\n"),
                    None => "ready\n".into(),
                };
                text(StatusCode::OK, body, "text/plain")
            }
            Some(why) => text(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("not ready: {why}\n"),
                "text/plain",
            ),
        },
        other => {
            ApiError::new(StatusCode::NOT_FOUND, format!("no such path `{other}`")).into_response()
        }
    }
}
