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

pub mod auth;
mod collection;
pub mod follow;
mod openapi;
pub mod patch;
mod policy;
pub mod store;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use prometheus::{IntCounterVec, Opts, Registry};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::catalog::{Catalog, TriggerType};
use crate::config::{Config, MAX_SUBSCRIPTIONS_PER_TRIGGER};
use crate::error::ApiError;
use crate::model::Subscription;
use crate::pipeline::{Delivery, Event};
use crate::ratelimit::{OverLimit, RateLimiter};
use crate::routes::RouteBuilder;
use crate::status::StatusLog;
use auth::{Auth, Principal, TokenError};
use collection::{params, Query, Spec};
pub use patch::apply_patch;
use store::{Store, StoreError};

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

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ValidateFilterInput {
    input: Value,
    filter: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TestInvocation {
    trigger_id: String,
    #[serde(default)]
    input: Option<Value>,
    #[serde(default)]
    content_json: Option<Value>,
    #[serde(default)]
    subscription_ids: Option<Vec<String>>,
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
                tokio::task::spawn_blocking(move || validate_filter(&body))
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

    async fn token(&self, req: Request<Incoming>, source: IpAddr) -> Result<Resp, ApiError> {
        if req.method() != Method::POST {
            return Err(
                ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "POST the token request")
                    .with_header(header::ALLOW, HeaderValue::from_static("POST")),
            );
        }
        self.refuse_failing_source(source)?;
        let over = |OverLimit { retry_after_s }| {
            ApiError::new(StatusCode::TOO_MANY_REQUESTS, "rate limit exceeded")
                .retry_after(retry_after_s)
        };
        self.token_sources.check(&source).map_err(over)?;
        // The client's credentials in any of the encodings clients use: the query string, an urlencoded or
        // multipart/form-data body, or HTTP Basic (RFC 6749 §2.3.1: id and secret form-encoded, then base64).
        let mut form = params(req.uri().query());
        let content_type = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let basic = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(basic_credentials);
        let body = Limited::new(req.into_body(), 64 * 1024)
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        if content_type
            .to_ascii_lowercase()
            .starts_with("multipart/form-data")
        {
            let fields = multipart_fields(&content_type, body).await.map_err(|why| {
                bad_request("the token request is not valid multipart/form-data").cause(why)
            })?;
            form.extend(fields);
        } else {
            form.extend(form_urlencoded::parse(&body).into_owned());
        }
        if let Some((id, secret)) = basic {
            form.entry("client_id".into()).or_insert(id);
            form.entry("client_secret".into()).or_insert(secret);
        }
        // Each configured client has its own window for token requests too, whichever address sends them.
        if let Some(id) = form
            .get("client_id")
            .filter(|id| self.auth.knows_client(id))
        {
            self.token_clients.check(id.as_str()).map_err(over)?;
        }
        let oauth_error = |status: StatusCode, code: &str, description: &str| {
            json_response(
                status,
                &json!({ "error": code, "error_description": description }),
            )
        };
        Ok(match self.auth.issue(&form) {
            Ok((token, ttl, scopes)) => json_response(
                StatusCode::OK,
                &json!({
                    "access_token": token,
                    "token_type": "bearer",
                    "expires_in": ttl.as_secs(),
                    "scope": scopes.join(" "),
                }),
            ),
            Err(TokenError::UnsupportedGrant) => oauth_error(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                "only grant_type=client_credentials is supported",
            ),
            Err(TokenError::InvalidRequest(why)) => {
                oauth_error(StatusCode::BAD_REQUEST, "invalid_request", why)
            }
            Err(TokenError::InvalidClient) => {
                self.failed(source, "bad_client");
                oauth_error(
                    StatusCode::UNAUTHORIZED,
                    "invalid_client",
                    "unknown client or wrong secret",
                )
            }
        })
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

    fn list_triggers(&self, query: &HashMap<String, String>) -> Result<Resp, ApiError> {
        let items = self
            .catalog
            .all()
            .iter()
            .map(|t| {
                let mut v = json!({
                    "id": t.id,
                    "name": t.name,
                    "type": match t.kind { TriggerType::FireAndForget => "FIRE_AND_FORGET", TriggerType::RequestResponse => "REQUEST_RESPONSE" },
                    "description": t.description,
                    "inputSchema": t.input_schema.clone().unwrap_or_else(|| "{}".into()),
                    "exampleInput": t.example_input.clone().unwrap_or_else(|| json!({})),
                });
                if t.kind == TriggerType::RequestResponse {
                    v["outputSchema"] = json!(t.output_schema);
                    v["exampleOutput"] = t.example_output.clone().unwrap_or(Value::Null);
                }
                v
            })
            .collect();
        Self::list(
            query,
            &Spec {
                filters: &[("id", &["eq", "ge", "le"])],
                sorters: &["id", "name"],
            },
            items,
        )
    }

    /// The API's view of a subscription: ISC's shape, `triggerName` from the catalog, secrets `null`.
    fn dto(&self, s: &Subscription) -> Value {
        let mut v = document(s);
        if let Value::Object(m) = &mut v {
            m.insert(
                "triggerName".into(),
                self.catalog
                    .get(&s.trigger_id)
                    .map(|t| t.name.clone())
                    .unwrap_or_default()
                    .into(),
            );
        }
        v
    }

    fn config_subs(&self) -> &[Subscription] {
        &self.config.subscriptions
    }

    fn all(&self) -> Vec<Subscription> {
        let mut all = self.config_subs().to_vec();
        all.extend(self.store.view().subscriptions().cloned());
        all
    }

    /// A subscription by id, and whether it is the config file's (read-only).
    fn find(&self, id: &str) -> Option<(Subscription, bool)> {
        if let Some(s) = self.config_subs().iter().find(|s| s.effective_id() == id) {
            return Some((s.clone(), true));
        }
        self.store
            .view()
            .subscriptions()
            .find(|s| s.effective_id() == id)
            .map(|s| (s.clone(), false))
    }

    /// On ISC's mounts only ISC's subscription types are listed: SailPoint's SDKs refuse a list holding any other
    /// `type` (their models' enum), so a KAFKA route would break every SDK user's list call. The relay's mount
    /// (`/relay/v1/trigger-subscriptions`) lists them all.
    fn list_subscriptions(
        &self,
        query: &HashMap<String, String>,
        relay_types: bool,
    ) -> Result<Resp, ApiError> {
        let items = self
            .all()
            .iter()
            .filter(|s| relay_types || s.kind.is_isc())
            .map(|s| self.dto(s))
            .collect();
        Self::list(
            query,
            &Spec {
                filters: &[
                    ("id", &["eq", "in"]),
                    ("triggerId", &["eq"]),
                    ("type", &["eq", "le"]),
                ],
                sorters: &["triggerId", "triggerName"],
            },
            items,
        )
    }

    fn get(&self, id: &str) -> Result<Resp, ApiError> {
        let (s, _) = self.find(id).ok_or_else(|| not_found(id))?;
        Ok(self.answer(StatusCode::OK, &s))
    }

    /// A subscription answer: the DTO and its `ETag`.
    fn answer(&self, status: StatusCode, s: &Subscription) -> Resp {
        let mut r = json_response(status, &self.dto(s));
        if let Ok(v) = HeaderValue::from_str(&store::etag(s)) {
            r.headers_mut().insert(header::ETAG, v);
        }
        r
    }

    /// `s` may join `stored` (the API's subscriptions of its trigger, without `s`): ISC's limit of subscriptions
    /// per trigger, and a name not yet used on the trigger.
    fn check_room(&self, s: &Subscription, stored: &[Subscription]) -> Result<(), ApiError> {
        let id = s.effective_id();
        let others: Vec<&Subscription> = self
            .config_subs()
            .iter()
            .chain(stored)
            .filter(|o| o.trigger_id == s.trigger_id && o.effective_id() != id)
            .collect();
        if others.len() >= MAX_SUBSCRIPTIONS_PER_TRIGGER {
            return Err(bad_request(format!(
                "`{}` already has {} subscriptions",
                s.trigger_id,
                others.len()
            ))
            .cause(format!(
                "ISC allows at most {MAX_SUBSCRIPTIONS_PER_TRIGGER} subscriptions per FIRE_AND_FORGET trigger"
            )));
        }
        if let Some(o) = others.iter().find(|o| o.name == s.name) {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                format!(
                    "`{}` already has a subscription named `{}`",
                    s.trigger_id, s.name
                ),
            )
            .cause(format!(
                "subscription `{}` has that name: choose another",
                o.effective_id()
            )));
        }
        Ok(())
    }

    /// Change the API's subscriptions of `trigger` by compare-and-swap on its record: `change` gets them fresh
    /// from the store (maybe more than once, after a conflict) and says which subscription the answer shows and
    /// whether it must be routable. Answers once this replica's routing table has the change.
    async fn commit(
        &self,
        trigger: &str,
        mut change: impl FnMut(&mut Vec<Subscription>) -> Result<(Subscription, bool), ApiError>,
    ) -> Result<Subscription, ApiError> {
        /// Rounds lost to other replicas before the write gives up with 409 (each round is one read and one
        /// write, a few milliseconds; with a handful of replicas writing one trigger at once this is ample).
        const ATTEMPTS: u32 = 32;
        let _turn = self.writes.lock().await;
        for attempt in 0..ATTEMPTS {
            let (expected, mut subs) = match self.store.read(trigger).await.map_err(store_error)? {
                Some(r) => (Some(r.revision), r.subscriptions),
                None => (None, Vec::new()),
            };
            let (changed, route) = change(&mut subs)?;
            if route {
                self.check_route(&changed).await?;
            }
            match self.store.write(trigger, expected, &subs).await {
                Ok(revision) => {
                    self.wait_routed(revision).await;
                    return Ok(changed);
                }
                Err(StoreError::Conflict(_)) => {
                    self.store_conflicts.inc();
                    // A little jitter, so two replicas that collided do not collide again in step.
                    let jitter = u64::from(uuid::Uuid::new_v4().as_bytes()[0] % 8)
                        + u64::from(attempt.min(8));
                    tokio::time::sleep(std::time::Duration::from_millis(jitter)).await;
                }
                Err(e) => return Err(store_error(e)),
            }
        }
        Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("the subscriptions of `{trigger}` kept changing while this write was tried"),
        )
        .cause(format!(
            "{ATTEMPTS} concurrent writes from other replicas came first: send it again"
        )))
    }

    /// The subscription can be routed on this replica (its sink, cluster, connection exist).
    async fn check_route(&self, s: &Subscription) -> Result<(), ApiError> {
        let guard = self.builder.lock().await;
        let Some(builder) = guard.as_ref() else {
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "the relay is shutting down",
            ));
        };
        builder
            .route(s)
            .await
            .map(|_| ())
            .map_err(|m| bad_request("the subscription cannot be routed").cause(m))
    }

    /// The destination exists (the topic, the stream, the bus): asked of the broker before a write, so a typo is a
    /// 400 now rather than every event lost later. Disabled subscriptions are not checked (they may be created
    /// before their destination), and only a definite "missing" refuses.
    async fn check_destination(&self, s: &Subscription) -> Result<(), ApiError> {
        if !s.enabled {
            return Ok(());
        }
        let guard = self.builder.lock().await;
        let Some(builder) = guard.as_ref() else {
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "the relay is shutting down",
            ));
        };
        match builder.check_destination(s).await {
            Ok(()) => Ok(()),
            Err(crate::routes::Destination::Missing(m)) => Err(bad_request(
                "the subscription's destination does not exist or may not be used",
            )
            .cause(m)),
            // A check that cannot be made (the broker or AWS does not answer now) does not block the write: the
            // destination may well exist, and deliveries report what happens.
            Err(crate::routes::Destination::Unreachable(m)) => {
                tracing::warn!(subscription = %s.name, problem = %m, "the subscription's destination could not be checked; stored anyway");
                Ok(())
            }
        }
    }

    /// Read-your-writes: wait (a bounded time) until the routing table reflects `revision`.
    async fn wait_routed(&self, revision: u64) {
        let mut routed = self.routed.clone();
        let wait = routed.wait_for(|r| *r >= revision);
        if tokio::time::timeout(std::time::Duration::from_secs(10), wait)
            .await
            .is_err()
        {
            tracing::warn!(revision, "a stored change was not routed within 10 s; it is stored and will route when this replica applies it");
        }
    }

    fn read_only(id: &str) -> ApiError {
        ApiError::new(
            StatusCode::CONFLICT,
            format!("subscription `{id}` is managed by the relay's config file"),
        )
        .cause("change it in the config file and restart; the API manages only the subscriptions it created")
    }

    async fn create(&self, body: &[u8]) -> Result<Resp, ApiError> {
        let mut s = parse(body)?;
        s.id = Some(uuid::Uuid::new_v4().to_string());
        validate(&self.config, &s)?;
        self.check_destination(&s).await?;
        let trigger = s.trigger_id.clone();
        let created = self
            .commit(&trigger, |stored| {
                self.check_room(&s, stored)?;
                stored.push(s.clone());
                Ok((s.clone(), true))
            })
            .await?;
        Ok(self.answer(StatusCode::CREATED, &created))
    }

    /// Replace subscription `id` with what `make` builds from its current version (fresh from the store, so a
    /// PATCH applies to what is stored now), if `If-Match` still matches.
    async fn save(
        &self,
        id: &str,
        if_match: Option<&str>,
        make: impl Fn(&Subscription) -> Result<Subscription, ApiError>,
    ) -> Result<Resp, ApiError> {
        let (old, read_only) = self.find(id).ok_or_else(|| not_found(id))?;
        if read_only {
            return Err(Self::read_only(id));
        }
        // Checked on what the change makes of the version this replica holds (the write itself applies it to
        // the stored one, which names the same destination unless a concurrent write moved it).
        self.check_destination(&make(&old)?).await?;
        let saved = self
            .commit(&old.trigger_id, |stored| {
                let i = stored
                    .iter()
                    .position(|s| s.effective_id() == id)
                    .ok_or_else(|| not_found(id))?;
                check_if_match(if_match, &stored[i])?;
                let new = make(&stored[i])?;
                let rest: Vec<Subscription> = stored
                    .iter()
                    .filter(|s| s.effective_id() != id)
                    .cloned()
                    .collect();
                self.check_room(&new, &rest)?;
                stored[i] = new.clone();
                Ok((new, true))
            })
            .await?;
        Ok(self.answer(StatusCode::OK, &saved))
    }

    /// PUT: ISC's `SubscriptionPutRequest` has no required field and no `triggerId`; what it leaves out of
    /// `name`, `type` and `triggerId` stays, everything else is replaced.
    async fn update(
        &self,
        id: &str,
        body: &[u8],
        if_match: Option<&str>,
    ) -> Result<Resp, ApiError> {
        let doc: Value = serde_json::from_slice(body)
            .map_err(|e| bad_request("the body is not JSON").cause(e.to_string()))?;
        if !doc.is_object() {
            return Err(bad_request("the body must be a JSON object"));
        }
        self.save(id, if_match, |old| {
            let mut doc = doc.clone();
            if let Value::Object(m) = &mut doc {
                m.entry("triggerId")
                    .or_insert_with(|| old.trigger_id.clone().into());
                m.entry("name").or_insert_with(|| old.name.clone().into());
                m.entry("type").or_insert_with(|| old.kind.as_str().into());
            }
            replacement(&self.config, old, parse(doc.to_string().as_bytes())?)
        })
        .await
    }

    /// PATCH: the JSON Patch is applied and validated by [`apply_patch`]; here only what needs the server.
    async fn patch(
        &self,
        id: &str,
        content_type: &str,
        body: &[u8],
        if_match: Option<&str>,
    ) -> Result<Resp, ApiError> {
        if !content_type.starts_with("application/json-patch+json") {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "PATCH takes a JSON Patch document",
            )
            .cause("set Content-Type: application/json-patch+json"));
        }
        self.save(id, if_match, |old| apply_patch(&self.config, old, body))
            .await
    }

    async fn delete(&self, id: &str, if_match: Option<&str>) -> Result<Resp, ApiError> {
        let (old, read_only) = self.find(id).ok_or_else(|| not_found(id))?;
        if read_only {
            return Err(Self::read_only(id));
        }
        self.commit(&old.trigger_id, |stored| {
            let i = stored
                .iter()
                .position(|s| s.effective_id() == id)
                .ok_or_else(|| not_found(id))?;
            check_if_match(if_match, &stored[i])?;
            Ok((stored.remove(i), false))
        })
        .await?;
        let mut r = Response::new(Full::new(Bytes::new()));
        *r.status_mut() = StatusCode::NO_CONTENT;
        Ok(r)
    }

    fn list_statuses(&self, query: &HashMap<String, String>) -> Result<Resp, ApiError> {
        // Newest first; statuses from other replicas arrive in their own order, so sort by when each started.
        let mut kept = self.statuses.list();
        kept.sort_by_key(|s| std::cmp::Reverse(s.created));
        let items: Vec<Value> = kept.iter().map(|s| s.to_json()).collect();
        Self::list(
            query,
            &Spec {
                filters: &[("triggerId", &["eq"]), ("subscriptionId", &["eq"])],
                sorters: &["triggerId", "subscriptionName", "created", "completed"],
            },
            items,
        )
    }

    /// Send a test event through the real sink path to the chosen subscriptions (disabled ones too).
    async fn test_invocation(&self, body: &[u8]) -> Result<Resp, ApiError> {
        let t: TestInvocation = serde_json::from_slice(body)
            .map_err(|e| bad_request("the test invocation is not valid").cause(e.to_string()))?;
        let info = self.catalog.get(&t.trigger_id).ok_or_else(|| {
            bad_request(format!("unknown trigger `{}`", t.trigger_id))
                .cause("use an id from GET /triggers")
        })?;
        if info.kind == TriggerType::RequestResponse {
            return Err(bad_request(format!(
                "`{}` is a REQUEST_RESPONSE trigger; trigger-relay relays FIRE_AND_FORGET triggers only",
                t.trigger_id
            )));
        }
        let named = |s: &Subscription| {
            t.subscription_ids
                .as_ref()
                .is_none_or(|ids| ids.iter().any(|i| *i == s.effective_id()))
        };
        // Config-file subscriptions are the operator's, not the API caller's: tests reach them only when the
        // config says so. Naming one is refused (silently skipping it would look like a delivered test).
        if !self.config.api.test_config_subscriptions {
            if let Some(s) = self
                .config_subs()
                .iter()
                .find(|s| s.trigger_id == t.trigger_id && t.subscription_ids.is_some() && named(s))
            {
                return Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    format!(
                        "subscription `{}` is managed by the relay's config file",
                        s.effective_id()
                    ),
                )
                .cause("test invocations reach config-file subscriptions only with api.test_config_subscriptions = true"));
            }
        }
        let candidates = if self.config.api.test_config_subscriptions {
            self.all()
        } else {
            self.store.view().subscriptions().cloned().collect()
        };
        let chosen: Vec<Subscription> = candidates
            .into_iter()
            .filter(|s| s.trigger_id == t.trigger_id)
            .filter(|s| named(s))
            .collect();
        // contentJson is kept with every status the test leaves: bounded like a kept input.
        let content_len = t
            .content_json
            .as_ref()
            .map_or(0, |c| serde_json::to_vec(c).map_or(0, |v| v.len()));
        if content_len > crate::status::MAX_KEPT_INPUT {
            return Err(bad_request(format!(
                "contentJson is {content_len} bytes; at most {} are accepted",
                crate::status::MAX_KEPT_INPUT
            )));
        }
        if chosen.is_empty() {
            let mut r = Response::new(Full::new(Bytes::new()));
            *r.status_mut() = StatusCode::NO_CONTENT;
            return Ok(r);
        }
        let content = t.content_json.clone().unwrap_or_else(|| json!({}));
        let guard = self.builder.lock().await;
        let Some(builder) = guard.as_ref() else {
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "the relay is shutting down",
            ));
        };
        let mut out = Vec::new();
        for s in chosen {
            let invocation_id = uuid::Uuid::new_v4().to_string();
            let mut payload = match t.input.clone().or_else(|| info.example_input.clone()) {
                Some(Value::Object(m)) => m,
                Some(_) => return Err(bad_request("input must be a JSON object")),
                None => serde_json::Map::new(),
            };
            payload.insert(
                "_metadata".into(),
                json!({
                    "triggerType": info.kind.metadata_name(),
                    "invocationId": invocation_id,
                    "triggerId": info.id,
                }),
            );
            let bytes = Bytes::from(Value::Object(payload).to_string());
            if bytes.len() as u64 > self.config.ingress.max_body_bytes {
                return Err(bad_request(format!(
                    "the test event is {} bytes; the ingress accepts at most {} (ingress.max_body_bytes)",
                    bytes.len(),
                    self.config.ingress.max_body_bytes
                )));
            }
            let Some(entry) = builder
                .route(&s)
                .await
                .map_err(|m| bad_request("a subscription cannot be routed").cause(m))?
            else {
                continue;
            };
            let reservation = entry.queue.try_reserve(bytes.len()).map_err(|full| {
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the relay is at capacity; retry later",
                )
                .cause(full.to_string())
                .retry_after(1)
            })?;
            let mut event = Event::new(
                info.id.as_str().into(),
                Some(invocation_id.clone().into_boxed_str()),
                crate::error::TrackingId::new(),
                bytes,
                Instant::now(),
            );
            event.test = Some(content.clone());
            if !Delivery::enqueue(Arc::new(event), &entry, None, reservation) {
                return Err(ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the relay is shutting down",
                ));
            }
            out.push(json!({
                "id": invocation_id,
                "triggerId": info.id,
                "secret": uuid::Uuid::new_v4().to_string(),
                "contentJson": content,
            }));
        }
        Ok(json_response(StatusCode::OK, &Value::Array(out)))
    }
}

/// A subscription as the API shows it, without `triggerName` (which needs the catalog): ISC's shape, the
/// effective id, secrets `null`; the relay's own fields only when set (ISC's clients know ISC's fields).
fn document(s: &Subscription) -> Value {
    let mut v = serde_json::to_value(s.withheld()).unwrap_or_default();
    if let Value::Object(m) = &mut v {
        m.insert("id".into(), s.effective_id().into());
        for k in ["kafkaConfig", "natsConfig", "ackMode", "deadLetter"] {
            if m.get(k) == Some(&Value::Null) {
                m.remove(k);
            }
        }
    }
    v
}

/// `If-Match` (absent: any version may be replaced, last write wins).
fn check_if_match(if_match: Option<&str>, current: &Subscription) -> Result<(), ApiError> {
    let Some(list) = if_match else {
        return Ok(());
    };
    let tag = store::etag(current);
    let matches = list
        .split(',')
        .map(str::trim)
        .any(|t| t == "*" || t.trim_start_matches("W/") == tag);
    if matches {
        return Ok(());
    }
    Err(ApiError::new(
        StatusCode::PRECONDITION_FAILED,
        "the subscription changed since that version was read",
    )
    .cause(format!(
        "If-Match: {list}; the current ETag is {tag}: GET it again"
    )))
}

/// `Authorization: Basic base64(id:secret)` with each part form-urlencoded (RFC 6749 §2.3.1).
fn basic_credentials(value: &str) -> Option<(String, String)> {
    use base64::Engine;
    let b64 = value
        .strip_prefix("Basic ")
        .or_else(|| value.strip_prefix("basic "))?;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (id, secret) = text.split_once(':')?;
    let decode = |s: &str| {
        form_urlencoded::parse(format!("x={s}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
    };
    Some((decode(id)?, decode(secret)?))
}

/// The text fields of a multipart/form-data body (at most 16 fields of 8 KiB: a token request has three).
async fn multipart_fields(
    content_type: &str,
    body: Bytes,
) -> Result<Vec<(String, String)>, String> {
    let boundary = multer::parse_boundary(content_type).map_err(|e| e.to_string())?;
    let stream = futures_util::stream::once(async move { Ok::<_, std::io::Error>(body) });
    let constraints = multer::Constraints::new().size_limit(
        multer::SizeLimit::new()
            .whole_stream(64 * 1024)
            .per_field(8 * 1024),
    );
    let mut m = multer::Multipart::with_constraints(stream, boundary, constraints);
    let mut out = Vec::new();
    while let Some(field) = m.next_field().await.map_err(|e| e.to_string())? {
        if out.len() >= 16 {
            return Err("more than 16 fields".into());
        }
        let name = field.name().unwrap_or_default().to_string();
        let value = field.text().await.map_err(|e| e.to_string())?;
        out.push((name, value));
    }
    Ok(out)
}

/// A store failure as the API answers it: an outage is 503 with `Retry-After`, naming the store.
fn store_error(e: StoreError) -> ApiError {
    match &e {
        StoreError::Unavailable { .. } => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the subscription store is unreachable; retry later",
        )
        .cause(e.to_string())
        .retry_after(1),
        StoreError::Conflict(_) => {
            ApiError::new(StatusCode::CONFLICT, "a concurrent write came first")
                .cause(e.to_string())
        }
        StoreError::Failed { .. } => ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the change could not be saved",
        )
        .cause(e.to_string()),
    }
}

/// Parse a subscription body; `path` errors name the field.
fn parse(body: &[u8]) -> Result<Subscription, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let s: Subscription = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        bad_request("the subscription is not valid").cause(if path == "." {
            inner.to_string()
        } else {
            format!("{path}: {inner}")
        })
    })?;
    Ok(s)
}

/// Every check the config applies to a subscription, then what only the API refuses (`policy`).
fn validate(config: &Config, s: &Subscription) -> Result<(), ApiError> {
    let mut causes: Vec<String> = config
        .check_subscription("", s)
        .into_iter()
        .map(|p| p.to_string().trim_start_matches('.').to_string())
        .collect();
    causes.extend(
        policy::check(config, s)
            .into_iter()
            .map(|(path, why)| format!("{path}: {why}")),
    );
    if causes.is_empty() {
        return Ok(());
    }
    let mut e = bad_request("the subscription is not valid");
    for c in causes {
        e = e.cause(c);
    }
    Err(e)
}

/// `new` in place of `old` (PUT, PATCH): same id and `triggerId`, write-only secrets kept, validated.
fn replacement(
    config: &Config,
    old: &Subscription,
    mut new: Subscription,
) -> Result<Subscription, ApiError> {
    let id = old.effective_id();
    if new.id.as_deref().is_some_and(|n| n != id) {
        return Err(bad_request("the id cannot be changed").cause(format!("id: `{id}`")));
    }
    if new.trigger_id != old.trigger_id {
        return Err(bad_request("the triggerId cannot be changed")
            .cause(format!("triggerId: `{}`", old.trigger_id)));
    }
    new.id = Some(id);
    keep_secrets(&mut new, old)?;
    validate(config, &new)?;
    Ok(new)
}

/// Scheme, host (lower case) and port of a webhook URL: where its credential goes.
fn destination(url: &str) -> Option<(String, String, u16)> {
    let uri: http::Uri = url.parse().ok()?;
    let scheme = uri.scheme_str()?.to_ascii_lowercase();
    let port = uri
        .port_u16()
        .unwrap_or(if scheme == "https" { 443 } else { 80 });
    Some((scheme, uri.host()?.to_ascii_lowercase(), port))
}

/// Secrets are write-only: a PUT or PATCH that leaves one out keeps the stored one, but only while it still goes
/// where it went — same scheme, host, port and authentication type (and user name for BASIC_AUTH). A change of
/// destination drops it, and a request that leaves it out then is refused naming the field, so a `manage` caller
/// cannot send another team's webhook secret to a host of its choice.
fn keep_secrets(new: &mut Subscription, old: &Subscription) -> Result<(), ApiError> {
    let (Some(n), Some(o)) = (new.http_config.as_mut(), old.http_config.as_ref()) else {
        return Ok(());
    };
    let (from, to) = (destination(&o.url), destination(&n.url));
    let kind = |c: &crate::model::HttpConfig| {
        c.http_authentication_type
            .clone()
            .unwrap_or_else(|| "NO_AUTH".into())
    };
    let (old_kind, new_kind) = (kind(o), kind(n));
    let same_place = to.is_some() && to == from;
    let same_auth = old_kind == new_kind;
    let moved = || {
        let show = |d: &Option<(String, String, u16)>| {
            d.as_ref()
                .map_or_else(|| "?".to_string(), |(s, h, p)| format!("{s}://{h}:{p}"))
        };
        format!(
            "the stored credential is kept only while the destination and authentication type stay the same \
             ({} {old_kind} → {} {new_kind}): send it again",
            show(&from),
            show(&to),
        )
    };
    // A secret the new authentication type does not use is simply not carried over.
    let (basic, bearer) = (new_kind == "BASIC_AUTH", new_kind == "BEARER_TOKEN");
    if let (Some(nb), Some(ob)) = (n.basic_auth_config.as_mut(), o.basic_auth_config.as_ref()) {
        if basic && nb.password.is_none() && ob.password.is_some() {
            if same_place && same_auth && nb.user_name == ob.user_name {
                nb.password = ob.password.clone();
            } else if nb.user_name != ob.user_name {
                return Err(bad_request("the subscription is not valid").cause(format!(
                    "httpConfig.basicAuthConfig.password: the stored password belongs to user `{}`: send the password of `{}`",
                    ob.user_name, nb.user_name
                )));
            } else {
                return Err(bad_request("the subscription is not valid")
                    .cause(format!("httpConfig.basicAuthConfig.password: {}", moved())));
            }
        }
    }
    if let (Some(nb), Some(ob)) = (
        n.bearer_token_auth_config.as_mut(),
        o.bearer_token_auth_config.as_ref(),
    ) {
        if bearer && nb.bearer_token.is_none() && ob.bearer_token.is_some() {
            if same_place && same_auth {
                nb.bearer_token = ob.bearer_token.clone();
            } else {
                return Err(bad_request("the subscription is not valid").cause(format!(
                    "httpConfig.bearerTokenAuthConfig.bearerToken: {}",
                    moved()
                )));
            }
        }
    }
    Ok(())
}

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

/// ISC's validate-filter: does `filter` compile, and does it select something in `input`.
fn validate_filter(body: &[u8]) -> Result<Resp, ApiError> {
    let v: ValidateFilterInput = serde_json::from_slice(body).map_err(|e| {
        bad_request("expected {\"input\": {...}, \"filter\": \"...\"}").cause(e.to_string())
    })?;
    let r = crate::filter::validate(&v.filter, &v.input);
    Ok(json_response(
        StatusCode::OK,
        &serde_json::to_value(r).unwrap_or_default(),
    ))
}
