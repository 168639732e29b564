//! The admin listener, on its own port so it is never exposed with the ingress: `/metrics` (Prometheus text),
//! `/healthz` (the process answers), `/readyz` (every sink reached its destination once, and not draining),
//! and the Triggers API (`api`) when it is enabled.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use prometheus::{Encoder, Registry, TextEncoder};

use crate::error::ApiError;
use crate::sinks::Readiness;

pub struct AdminState {
    pub registry: Registry,
    pub sinks: Vec<(String, Readiness)>,
    pub draining: Arc<AtomicBool>,
    /// The Triggers API, when `[api]` enables it.
    pub api: Option<Arc<crate::api::ApiState>>,
}

impl AdminState {
    /// Why the relay is not ready, if it is not.
    pub fn not_ready(&self) -> Option<String> {
        if self.draining.load(Ordering::Acquire) {
            return Some("draining".into());
        }
        let waiting: Vec<&str> = self
            .sinks
            .iter()
            .filter(|(_, r)| !r.is_ready())
            .map(|(n, _)| n.as_str())
            .collect();
        (!waiting.is_empty()).then(|| format!("waiting for sinks: {}", waiting.join(", ")))
    }
}

fn text(status: StatusCode, body: String, content_type: &'static str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

pub async fn handle(state: Arc<AdminState>, req: Request<Incoming>) -> Response<Full<Bytes>> {
    if let Some(api) = &state.api {
        if crate::api::ApiState::serves(req.uri().path()) {
            return api.handle(req).await;
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
        "/healthz" => text(StatusCode::OK, "ok\n".into(), "text/plain"),
        "/readyz" => match state.not_ready() {
            None => text(StatusCode::OK, "ready\n".into(), "text/plain"),
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
