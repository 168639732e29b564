//! ISC's Triggers API, served by the relay on the admin listener (never on the public ingress), so the tools
//! people use with ISC — SailPoint's SDKs, Postman collections, scripts — manage the relay's subscriptions.
//!
//! One handler set, two mounts: `/beta/...` as ISC's beta spec documents it, and the newer `/…/v1` paths that
//! SailPoint's current SDK calls (`/triggers/v1`, `/trigger-subscriptions/v1/{id}`, ...). Access is ISC's too:
//! `POST /oauth/token` (client credentials) or a static bearer token, ISC's scope names, 100 requests per 10 s
//! per caller, and ISC's error shapes.
//!
//! Writes go to the store ([`store`]), one record per trigger, by compare-and-swap: read the trigger's record
//! fresh → check and change it (ISC's 50 per trigger, the name free on the trigger, `If-Match`) → write it naming
//! the revision read; a concurrent write on another replica makes that fail and the write starts over from a
//! fresh read (writes on one replica also take turns, so only replicas race). The answer waits until this
//! replica's routing table includes the write ([`follow`]). Reads answer from the replica's view of the store,
//! so they keep answering while the engine is away; writes then answer 503 with `Retry-After`. An event in
//! flight keeps the route it started with; the next event sees the new table. Subscriptions from the config
//! file are listed but read-only (409). Every subscription answer carries an `ETag`; PUT, PATCH and DELETE
//! honour `If-Match` (412 when it no longer matches).
//!
//! Layout: this file is the front door — [`Operation`] (method + path → operation, with the scopes it needs),
//! authentication and rate limits, body limits, then one handler per operation, grouped by resource:
//! [`subscriptions`], [`triggers`] (and filter validation), [`invocations`] (statuses, test invocations) and
//! [`token`] (`POST /oauth/token`).

pub mod auth;
mod collection;
pub mod follow;
mod invocations;
mod openapi;
pub mod patch;
mod policy;
pub mod store;
mod subscriptions;
mod token;
mod triggers;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use prometheus::{IntCounterVec, Opts, Registry};
use serde_json::Value;

use crate::catalog::Catalog;
use crate::config::Config;
use crate::error::ApiError;
use crate::ratelimit::{OverLimit, RateLimiter};
use crate::routes::RouteBuilder;
use crate::status::StatusLog;
use auth::{Auth, Principal};
use collection::{params, Query, Spec};
pub use patch::apply_patch;
use store::Store;

/// Filter validations running at once (see `ApiState::validations`).
const MAX_VALIDATIONS: usize = 1;

/// Largest request body the API reads.
const MAX_BODY: usize = 1024 * 1024;
/// A test invocation's body: its `contentJson` may be at most `status::MAX_KEPT_INPUT` (16 KiB), so a body eight
/// times that (room for escapes and pretty-printing) is refused before it is parsed (parallel 1 MiB test calls would otherwise each build a tree).
const MAX_TEST_BODY: usize = 8 * crate::status::MAX_KEPT_INPUT;

const SUBS_READ: &[&str] = &[
    "sp:trigger-service-subscriptions:read",
    "sp:trigger-service-subscriptions:manage",
];
const SUBS_MANAGE: &[&str] = &["sp:trigger-service-subscriptions:manage"];
const STATUS_READ: &[&str] = &[
    "sp:trigger-service-invocation-status:read",
    "sp:trigger-service-invocation-status:manage",
];
const STATUS_MANAGE: &[&str] = &["sp:trigger-service-invocation-status:manage"];

/// One Triggers API operation, as method + path select it: matched once, then dispatched on the variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Operation {
    ListTriggers,
    ListSubscriptions,
    CreateSubscription,
    ValidateFilter,
    GetSubscription,
    UpdateSubscription,
    PatchSubscription,
    DeleteSubscription,
    ListStatuses,
    TestInvocation,
    CompleteInvocation,
}

impl Operation {
    /// The operation for `method` on `segments` (the path below its mount), with the scopes it needs.
    fn select(method: &Method, segments: &[&str]) -> Option<(Self, &'static [&'static str])> {
        use Operation::*;
        Some(match (method, segments) {
            (&Method::GET, ["triggers"]) => (ListTriggers, SUBS_READ),
            (&Method::GET, ["trigger-subscriptions"]) => (ListSubscriptions, SUBS_READ),
            (&Method::POST, ["trigger-subscriptions"]) => (CreateSubscription, SUBS_MANAGE),
            (&Method::POST, ["trigger-subscriptions", "validate-filter"]) => {
                (ValidateFilter, SUBS_MANAGE)
            }
            (&Method::GET, ["trigger-subscriptions", _]) => (GetSubscription, SUBS_READ),
            (&Method::PUT, ["trigger-subscriptions", _]) => (UpdateSubscription, SUBS_MANAGE),
            (&Method::PATCH, ["trigger-subscriptions", _]) => (PatchSubscription, SUBS_MANAGE),
            (&Method::DELETE, ["trigger-subscriptions", _]) => (DeleteSubscription, SUBS_MANAGE),
            (&Method::GET, ["trigger-invocations", "status"]) => (ListStatuses, STATUS_READ),
            (&Method::POST, ["trigger-invocations", "test"]) => (TestInvocation, STATUS_MANAGE),
            (&Method::POST, ["trigger-invocations", _, "complete"]) => {
                (CompleteInvocation, STATUS_MANAGE)
            }
            _ => return None,
        })
    }

    /// The `operation` label of `trigger_relay_api_requests_total` and of log lines.
    fn name(self) -> &'static str {
        use Operation::*;
        match self {
            ListTriggers => "list_triggers",
            ListSubscriptions => "list_subscriptions",
            CreateSubscription => "create_subscription",
            ValidateFilter => "validate_filter",
            GetSubscription => "get_subscription",
            UpdateSubscription => "update_subscription",
            PatchSubscription => "patch_subscription",
            DeleteSubscription => "delete_subscription",
            ListStatuses => "list_statuses",
            TestInvocation => "test_invocation",
            CompleteInvocation => "complete_invocation",
        }
    }
}

pub struct ApiState {
    config: Arc<Config>,
    catalog: Catalog,
    store: Arc<Store>,
    /// The store revision this replica's routing table reflects ([`follow`]).
    routed: tokio::sync::watch::Receiver<u64>,
    /// Writes on this replica take turns, so compare-and-swap conflicts only come from other replicas.
    writes: tokio::sync::Mutex<()>,
    /// Filter validations at once: each parses an input of up to 1 MiB into a tree several times its size, so
    /// the number in parallel is what bounds their memory (more get 429 with `Retry-After`).
    validations: tokio::sync::Semaphore,
    builder: Arc<tokio::sync::Mutex<Option<RouteBuilder>>>,
    statuses: Arc<StatusLog>,
    auth: Auth,
    /// Keyed by caller name: client ids and token names are configured, so the table is sized to hold them all.
    limiter: RateLimiter<String>,
    /// `POST /oauth/token` per configured client id it names, whichever address sends it (its own window, so
    /// asking for tokens does not use up the client's API calls).
    token_clients: RateLimiter<String>,
    /// Token requests per source IP (any client id, known or not), ISC's rate per window.
    token_sources: RateLimiter<IpAddr>,
    /// Failed authentications per source IP; over the limit, that source gets 429 for the rest of the window.
    failures: RateLimiter<IpAddr>,
    requests: IntCounterVec,
    auth_failures: IntCounterVec,
    store_connected: prometheus::IntGauge,
    store_conflicts: prometheus::IntCounter,
}

/// Source IPs tracked by the token-request and failed-authentication limiters (each a fixed-size table).
const MAX_TRACKED_SOURCES: usize = 10_000;

type Resp = Response<Full<Bytes>>;

fn json_response(status: StatusCode, v: &Value) -> Resp {
    let mut r = Response::new(Full::new(Bytes::from(v.to_string())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

fn bad_request(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, message)
}

fn not_found(id: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        format!("no subscription with id `{id}`"),
    )
}

/// The API path without its mount: `/beta/triggers`, `/triggers/v1` and `/relay/v1/triggers` all give
/// `/triggers`.
fn route(path: &str) -> Option<String> {
    if let Some(rest) = path.strip_prefix("/beta/") {
        return Some(format!("/{rest}"));
    }
    if let Some(rest) = path.strip_prefix("/relay/v1/") {
        return Some(format!("/{rest}"));
    }
    for base in [
        "/triggers",
        "/trigger-subscriptions",
        "/trigger-invocations",
    ] {
        if let Some(r) = path.strip_prefix(base).and_then(|r| r.strip_prefix("/v1")) {
            if r.is_empty() || r.starts_with('/') {
                return Some(format!("{base}{r}"));
            }
        }
    }
    None
}

impl ApiState {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        config: &Config,
        catalog: Catalog,
        store: Arc<Store>,
        routed: tokio::sync::watch::Receiver<u64>,
        builder: Arc<tokio::sync::Mutex<Option<RouteBuilder>>>,
        statuses: Arc<StatusLog>,
        registry: &Registry,
    ) -> prometheus::Result<Self> {
        let requests = IntCounterVec::new(
            Opts::new(
                "trigger_relay_api_requests_total",
                "Triggers API requests by operation and status",
            ),
            &["operation", "status"],
        )?;
        registry.register(Box::new(requests.clone()))?;
        let auth_failures = IntCounterVec::new(
            Opts::new(
                "trigger_relay_api_auth_failures_total",
                "Failed Triggers API authentications by reason (bad_client, bad_token, limited)",
            ),
            &["reason"],
        )?;
        registry.register(Box::new(auth_failures.clone()))?;
        let store_connected = prometheus::IntGauge::new(
            "trigger_relay_api_store_connected",
            "1 while the API's subscription store answers (set at each scrape), 0 while writes answer 503",
        )?;
        registry.register(Box::new(store_connected.clone()))?;
        let store_conflicts = prometheus::IntCounter::new(
            "trigger_relay_api_store_conflicts_total",
            "Subscription writes that lost a compare-and-swap to another replica and were tried again",
        )?;
        registry.register(Box::new(store_conflicts.clone()))?;
        registry.register(Box::new(statuses.unshared.clone()))?;
        let window = std::time::Duration::from_millis(config.api.rate_limit_window_ms);
        Ok(Self {
            config: Arc::new(config.clone()),
            catalog,
            store,
            routed,
            writes: tokio::sync::Mutex::new(()),
            validations: tokio::sync::Semaphore::new(MAX_VALIDATIONS),
            builder,
            statuses,
            auth: Auth::new(&config.api),
            limiter: RateLimiter::new(
                config.api.rate_limit_requests,
                window,
                config.api.clients.len() + config.api.tokens.len(),
            ),
            token_clients: RateLimiter::new(
                config.api.rate_limit_requests,
                window,
                config.api.clients.len(),
            ),
            token_sources: RateLimiter::new(
                config.api.rate_limit_requests,
                window,
                MAX_TRACKED_SOURCES,
            ),
            failures: RateLimiter::new(config.api.auth_failure_limit, window, MAX_TRACKED_SOURCES),
            requests,
            auth_failures,
            store_connected,
            store_conflicts,
        })
    }

    /// Why the API's part of the relay is not ready: the store has not been replayed yet.
    pub fn not_ready(&self) -> Option<String> {
        self.store_connected.set(i64::from(self.store.connected()));
        (!self.store.view().caught_up)
            .then(|| format!("replaying the subscription store ({})", self.store.kind()))
    }

    /// Ready, but worth saying: the store is unreachable (reads answer from the last view, writes 503).
    pub fn degraded(&self) -> Option<String> {
        (!self.store.connected()).then(|| {
            format!(
                "the subscription store ({}) is unreachable: API writes answer 503, routing uses the last table",
                self.store.kind()
            )
        })
    }

    /// Is `path` one of the API's?
    pub fn serves(path: &str) -> bool {
        path == "/oauth/token" || path == "/openapi.json" || route(path).is_some()
    }

    pub async fn handle(&self, req: Request<Incoming>, source: IpAddr) -> Resp {
        let path = req.uri().path().to_string();
        let (operation, result) = self.dispatch(req, &path, source).await;
        let resp = match result {
            Ok(r) => r,
            Err(e) => {
                if e.status.is_server_error() {
                    tracing::warn!(tracking_id = %e.tracking_id, status = e.status.as_u16(), operation, error = ?e.message, causes = ?e.causes, "API request failed");
                } else {
                    tracing::info!(tracking_id = %e.tracking_id, status = e.status.as_u16(), operation, error = ?e.message, causes = ?e.causes, "API request refused");
                }
                e.into_response()
            }
        };
        self.requests
            .with_label_values(&[operation, resp.status().as_str()])
            .inc();
        resp
    }

    async fn dispatch(
        &self,
        req: Request<Incoming>,
        path: &str,
        source: IpAddr,
    ) -> (&'static str, Result<Resp, ApiError>) {
        let method = req.method().clone();
        if path == "/oauth/token" {
            return ("token", self.token(req, source).await);
        }
        if path == "/openapi.json" {
            return (
                "openapi",
                Ok(json_response(StatusCode::OK, &openapi::document())),
            );
        }
        let Some(p) = route(path) else {
            return (
                "unknown",
                Err(ApiError::new(
                    StatusCode::NOT_FOUND,
                    format!("no such path `{path}`"),
                )),
            );
        };
        let segments: Vec<&str> = p.trim_matches('/').split('/').collect();
        let Some((op, scopes)) = Operation::select(&method, segments.as_slice()) else {
            return (
                "unknown",
                Err(ApiError::new(
                    StatusCode::NOT_FOUND,
                    format!("no operation {method} {path}"),
                )),
            );
        };
        let operation = op.name();
        let principal = match self.authorize(&req, scopes, source) {
            Ok(p) => p,
            Err(e) => return (operation, Err(e)),
        };
        // A test invocation sends events to subscriptions: it needs their manage scope as well as the
        // invocation-status one (ISC's scope for it alone would let a status client write to every destination).
        if op == Operation::TestInvocation && !principal.allowed(SUBS_MANAGE) {
            return (
                operation,
                Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    "the access token does not grant this operation",
                )
                .cause(format!(
                    "a test invocation needs {} as well as {}",
                    SUBS_MANAGE[0], STATUS_MANAGE[0]
                ))),
            );
        }
        let id = segments.get(1).map(|s| s.to_string()).unwrap_or_default();
        let query = params(req.uri().query());
        let if_match = req
            .headers()
            .get(header::IF_MATCH)
            .map(|v| v.to_str().unwrap_or("\u{0}").to_string());
        let content_type = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_ascii_lowercase();
        // A filter validation holds its slot from before its body is read until it is answered.
        let _validation = if op == Operation::ValidateFilter {
            match self.validations.try_acquire() {
                Ok(slot) => Some(slot),
                Err(_) => {
                    // Read and drop the body first (without keeping it), so that the caller, still writing,
                    // reads the 429 instead of a broken pipe.
                    discard(req.into_body()).await;
                    return (
                        operation,
                        Err(ApiError::new(
                            StatusCode::TOO_MANY_REQUESTS,
                            "too many filter validations at once",
                        )
                        .cause(format!("at most {MAX_VALIDATIONS} run at a time: retry"))
                        .retry_after(1)),
                    );
                }
            }
        } else {
            None
        };
        let body = if matches!(method, Method::POST | Method::PUT | Method::PATCH) {
            let keep = if op == Operation::TestInvocation {
                MAX_TEST_BODY
            } else {
                MAX_BODY
            };
            match read_bounded(req.into_body(), keep).await {
                Ok(Some(b)) => b,
                // Over `keep`: the rest was read (up to MAX_BODY) and dropped, so the caller reads the answer.
                Ok(None) if op == Operation::TestInvocation => {
                    return (
                        operation,
                        Err(ApiError::new(
                            StatusCode::PAYLOAD_TOO_LARGE,
                            format!("a test invocation's body is over {MAX_TEST_BODY} bytes"),
                        )
                        .cause(format!(
                            "contentJson may be at most {} bytes",
                            crate::status::MAX_KEPT_INPUT
                        ))),
                    )
                }
                Ok(None) => {
                    return (
                        operation,
                        Err(ApiError::new(
                            StatusCode::PAYLOAD_TOO_LARGE,
                            format!("the request body is over {MAX_BODY} bytes"),
                        )),
                    )
                }
                Err(e) => {
                    return (
                        operation,
                        Err(bad_request("the request body could not be read").cause(e.to_string())),
                    )
                }
            }
        } else {
            Bytes::new()
        };
        tracing::debug!(operation, caller = %principal.name, "API request");
        let result = match op {
            Operation::ListTriggers => self.list_triggers(&query),
            Operation::ListSubscriptions => {
                self.list_subscriptions(&query, path.starts_with("/relay/v1/"))
            }
            Operation::CreateSubscription => self.create(&body).await,
            Operation::ValidateFilter => {
                // Parsing a 1 MiB input and running regexes over it: on the blocking pool, not on the
                // workers that serve the ingress (one at a time, by the slot held above).
                let body = body.clone();
                tokio::task::spawn_blocking(move || triggers::validate_filter(&body))
                    .await
                    .unwrap_or_else(|e| {
                        Err(ApiError::new(
                            StatusCode::INTERNAL_SERVER_ERROR,
                            "the filter validation failed",
                        )
                        .cause(e.to_string()))
                    })
            }
            Operation::GetSubscription => self.get(&id),
            Operation::UpdateSubscription => self.update(&id, &body, if_match.as_deref()).await,
            Operation::PatchSubscription => {
                self.patch(&id, &content_type, &body, if_match.as_deref())
                    .await
            }
            Operation::DeleteSubscription => self.delete(&id, if_match.as_deref()).await,
            Operation::ListStatuses => self.list_statuses(&query),
            Operation::TestInvocation => self.test_invocation(&body).await,
            Operation::CompleteInvocation => Err(bad_request(format!("no pending invocation `{id}`")).cause(
                "trigger-relay relays FIRE_AND_FORGET triggers only: there is never a REQUEST_RESPONSE invocation to complete",
            )),
        };
        (operation, result)
    }

    /// 429 for a source over its failed-authentication limit (checked before anything else it sends).
    fn refuse_failing_source(&self, source: IpAddr) -> Result<(), ApiError> {
        match self.failures.peek(&source) {
            Some(OverLimit { retry_after_s }) => {
                self.auth_failures.with_label_values(&["limited"]).inc();
                Err(ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "too many failed authentications from this address",
                )
                .retry_after(retry_after_s))
            }
            None => Ok(()),
        }
    }

    /// Count a failed authentication from `source`.
    fn failed(&self, source: IpAddr, reason: &str) {
        self.auth_failures.with_label_values(&[reason]).inc();
        let _ = self.failures.check(&source);
    }

    fn authorize(
        &self,
        req: &Request<Incoming>,
        scopes: &[&str],
        source: IpAddr,
    ) -> Result<Principal, ApiError> {
        self.refuse_failing_source(source)?;
        let p = self
            .auth
            .authenticate(req.headers().get(header::AUTHORIZATION))
            .map_err(|why| {
                self.failed(source, "bad_token");
                ApiError::new(StatusCode::UNAUTHORIZED, why)
                    .with_header(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"))
            })?;
        if let Err(OverLimit { retry_after_s }) = self.limiter.check(p.name.as_str()) {
            return Err(
                ApiError::new(StatusCode::TOO_MANY_REQUESTS, "rate limit exceeded")
                    .retry_after(retry_after_s),
            );
        }
        if !p.allowed(scopes) {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "the access token does not grant this operation",
            )
            .cause(format!("needs one of the scopes: {}", scopes.join(", "))));
        }
        Ok(p)
    }

    fn list(
        query: &HashMap<String, String>,
        spec: &Spec,
        items: Vec<Value>,
    ) -> Result<Resp, ApiError> {
        let q = Query::parse(query, spec)
            .map_err(|m| bad_request("invalid query parameter").cause(m))?;
        let (page, total) = q.apply(items);
        let mut r = json_response(StatusCode::OK, &Value::Array(page));
        if q.count {
            r.headers_mut()
                .insert("x-total-count", HeaderValue::from(total as u64));
        }
        Ok(r)
    }
}

/// Read a request body, keeping at most `keep` bytes: `None` when it is longer (what follows is read, up to
/// `MAX_BODY`, and dropped, so the caller is still reading answers, not a reset).
async fn read_bounded(mut body: Incoming, keep: usize) -> Result<Option<Bytes>, hyper::Error> {
    let mut kept = bytes::BytesMut::new();
    let mut seen = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame?;
        let Some(data) = frame.data_ref() else {
            continue;
        };
        seen += data.len();
        if seen <= keep {
            kept.extend_from_slice(data);
        } else if seen > MAX_BODY {
            break;
        }
    }
    Ok((seen <= keep).then(|| kept.freeze()))
}

/// Read a request body to its end, up to `MAX_BODY` bytes, keeping none of it: for a refusal answered before
/// the body is used, so that the caller reads the answer rather than a reset connection.
async fn discard(mut body: Incoming) {
    let mut seen = 0usize;
    while let Some(Ok(frame)) = body.frame().await {
        seen += frame.data_ref().map_or(0, |d| d.len());
        if seen > MAX_BODY {
            break;
        }
    }
}
