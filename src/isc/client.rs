//! A client of ISC's Triggers API, used against the tenant and against the relay's own API (which speaks the
//! same wire format). It does what a polite ISC client must: OAuth client credentials at
//! `{base}/oauth/token` (renewed before it expires), at most `rate` requests per 10 s (ISC's limit is 100 per
//! client), `429` answered by waiting `Retry-After` (bounded) and trying again, lists read page by page
//! (`limit` 250, `offset`), the per-service `/…/v1` paths first and the `/beta` mount when the tenant does not
//! know them. Every answer body is read up to a bound; no secret is ever part of an error message.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use serde_json::Value;

use crate::model::Secret;

/// ISC's rate-limit window.
const WINDOW: Duration = Duration::from_secs(10);
/// The longest one request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// The largest answer read (a page of 250 subscriptions is far less).
const MAX_ANSWER: usize = 16 * 1024 * 1024;
/// How often one request is sent again after a `429`.
const MAX_THROTTLED: u32 = 6;
/// The longest `Retry-After` honoured; a longer one is taken as this.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);
/// A list page (ISC's maximum).
pub const PAGE: usize = 250;
/// Pages read at most from one list.
const MAX_PAGES: usize = 41;
/// Items kept at most from one list (ISC allows 50 subscriptions per trigger and keeps 2000 statuses; this is far
/// beyond a tenant), so a hostile tenant cannot fill memory with pages.
const MAX_ITEMS: usize = 10_000;

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach {url}: {why}")]
    Unreachable { url: String, why: String },
    #[error("{url} did not answer within {} s", REQUEST_TIMEOUT.as_secs())]
    Timeout { url: String },
    #[error("{method} {url} answered {status}: {detail}")]
    Status {
        method: Method,
        url: String,
        status: StatusCode,
        detail: String,
    },
    #[error("{url} is still rate limited after {MAX_THROTTLED} waits")]
    Throttled { url: String },
    #[error("{url} answered something that is not the expected JSON: {why}")]
    Invalid { url: String, why: String },
}

impl ClientError {
    /// Refused credentials (401/403): the operator must fix the config, trying again will not help.
    pub fn is_auth(&self) -> bool {
        matches!(self, Self::Status { status, .. } if *status == StatusCode::UNAUTHORIZED || *status == StatusCode::FORBIDDEN)
    }
    /// Whether trying the same call later may succeed.
    pub fn is_retriable(&self) -> bool {
        match self {
            Self::Unreachable { .. } | Self::Timeout { .. } | Self::Throttled { .. } => true,
            Self::Status { status, .. } => status.is_server_error(),
            Self::Invalid { .. } => false,
        }
    }
}

/// How requests are authenticated.
pub enum Auth {
    /// Client credentials at `{base}/oauth/token`.
    OAuth { client_id: String, secret: Secret },
    /// A static bearer token.
    Bearer(Secret),
}

/// Which mount the Triggers API is called on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mount {
    /// `/trigger-subscriptions/v1`, … (SailPoint's per-service versions).
    V1,
    /// `/beta/trigger-subscriptions`, …
    Beta,
    /// `/relay/v1/trigger-subscriptions`, …: the relay's own mount, which also lists its KAFKA, NATS, … types.
    Relay,
}

/// One client of one Triggers API.
pub struct TriggersClient {
    http: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    base: String,
    auth: Auth,
    token: Option<(String, Instant)>,
    /// When the last requests were sent (at most `rate` of them).
    sent: VecDeque<Instant>,
    rate: usize,
    mount: Option<Mount>,
    /// `429`s waited out, for the summary.
    pub throttled: u32,
    /// Texts never shown in an error (the client's own credential, and what [`TriggersClient::hide`] adds).
    secrets: Vec<String>,
}

/// One page-through of a list.
pub struct Listed {
    pub items: Vec<Value>,
}

impl TriggersClient {
    pub fn new(base: &str, auth: Auth, rate: u32) -> Result<Self, ClientError> {
        let auth_secret = match &auth {
            Auth::OAuth { secret, .. } | Auth::Bearer(secret) => secret.expose().to_string(),
        };
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_native_roots(std::sync::Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .map_err(|e| ClientError::Unreachable {
                url: base.into(),
                why: format!("TLS roots: {e}"),
            })?
            .https_or_http()
            .enable_http1()
            .build();
        let http = Client::builder(TokioExecutor::new())
            .timer(TokioTimer::new())
            .pool_timer(TokioTimer::new())
            .build(https);
        Ok(Self {
            http,
            base: base.trim_end_matches('/').to_string(),
            auth,
            token: None,
            sent: VecDeque::new(),
            rate: rate.max(1) as usize,
            mount: None,
            throttled: 0,
            secrets: vec![auth_secret],
        })
    }

    /// A client of the relay's own API, on its mount (every subscription type is listed there).
    pub fn relay(base: &str, token: Secret, rate: u32) -> Result<Self, ClientError> {
        let mut c = Self::new(base, Auth::Bearer(token), rate)?;
        c.mount = Some(Mount::Relay);
        Ok(c)
    }

    /// Never show `secret` in an error (a tenant's error text may quote the request that carried it).
    pub fn hide(&mut self, secret: &str) {
        self.secrets.push(secret.to_string());
    }

    /// What an error answer says, without any secret this client knows (replaced before the text is cut).
    fn detail(&self, body: &[u8]) -> String {
        detail(body, &self.secrets)
    }

    /// The base URL (for messages).
    pub fn base(&self) -> &str {
        &self.base
    }

    /// Wait until one more request fits in the rate window.
    async fn pace(&mut self) {
        let now = Instant::now();
        while self
            .sent
            .front()
            .is_some_and(|t| now.duration_since(*t) >= WINDOW)
        {
            self.sent.pop_front();
        }
        if self.sent.len() >= self.rate {
            if let Some(first) = self.sent.front().copied() {
                tokio::time::sleep((first + WINDOW).saturating_duration_since(now)).await;
            }
            self.sent.pop_front();
        }
        self.sent.push_back(Instant::now());
    }

    /// Send one request (paced, `429`s waited out); the status, headers and body.
    async fn send(
        &mut self,
        method: Method,
        url: &str,
        content_type: Option<&str>,
        body: Bytes,
        bearer: Option<&str>,
    ) -> Result<(StatusCode, http::HeaderMap, Bytes), ClientError> {
        let mut waits = 0;
        loop {
            self.pace().await;
            let mut req = Request::builder()
                .method(method.clone())
                .uri(url)
                .header("accept", "application/json")
                .header(
                    "user-agent",
                    concat!("trigger-relay/", env!("CARGO_PKG_VERSION")),
                );
            if let Some(ct) = content_type {
                req = req.header("content-type", ct);
            }
            if let Some(t) = bearer {
                req = req.header("authorization", format!("Bearer {t}"));
            }
            let req = req
                .body(Full::new(body.clone()))
                .map_err(|e| ClientError::Unreachable {
                    url: url.into(),
                    why: e.to_string(),
                })?;
            let answer = tokio::time::timeout(REQUEST_TIMEOUT, async {
                let resp = self.http.request(req).await.map_err(|e| {
                    let mut why = e.to_string();
                    let mut src = std::error::Error::source(&e);
                    while let Some(s) = src {
                        why = format!("{why}: {s}");
                        src = s.source();
                    }
                    ClientError::Unreachable {
                        url: url.into(),
                        why,
                    }
                })?;
                let (parts, body) = resp.into_parts();
                let bytes = Limited::new(body, MAX_ANSWER)
                    .collect()
                    .await
                    .map_err(|e| ClientError::Invalid {
                        url: url.into(),
                        why: format!("cannot read the answer: {e}"),
                    })?
                    .to_bytes();
                Ok::<_, ClientError>((parts.status, parts.headers, bytes))
            })
            .await
            .map_err(|_| ClientError::Timeout { url: url.into() })??;
            if answer.0 != StatusCode::TOO_MANY_REQUESTS {
                return Ok(answer);
            }
            waits += 1;
            self.throttled += 1;
            if waits > MAX_THROTTLED {
                return Err(ClientError::Throttled { url: url.into() });
            }
            let wait = answer
                .1
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map_or(Duration::from_secs(1), Duration::from_secs)
                .clamp(Duration::from_millis(100), MAX_RETRY_AFTER);
            eprintln!(
                "  {} is rate limiting (429): waiting {} s as Retry-After says",
                self.base,
                wait.as_secs_f32()
            );
            tokio::time::sleep(wait).await;
        }
    }

    /// A valid access token (or the static one).
    async fn bearer(&mut self) -> Result<String, ClientError> {
        let (client_id, secret) = match &self.auth {
            Auth::Bearer(t) => return Ok(t.expose().to_string()),
            Auth::OAuth { client_id, secret } => (client_id.clone(), secret.clone()),
        };
        if let Some((t, until)) = &self.token {
            if Instant::now() + Duration::from_secs(60) < *until {
                return Ok(t.clone());
            }
        }
        let url = format!("{}/oauth/token", self.base);
        let form = form_urlencoded::Serializer::new(String::new())
            .append_pair("grant_type", "client_credentials")
            .append_pair("client_id", &client_id)
            .append_pair("client_secret", secret.expose())
            .finish();
        let (status, _, body) = self
            .send(
                Method::POST,
                &url,
                Some("application/x-www-form-urlencoded"),
                Bytes::from(form),
                None,
            )
            .await?;
        if !status.is_success() {
            return Err(ClientError::Status {
                method: Method::POST,
                url,
                status,
                detail: format!(
                    "{} (check isc.client_id and isc.client_secret)",
                    self.detail(&body)
                ),
            });
        }
        let v: Value = serde_json::from_slice(&body).map_err(|e| ClientError::Invalid {
            url: url.clone(),
            why: e.to_string(),
        })?;
        let token = v["access_token"]
            .as_str()
            .ok_or_else(|| ClientError::Invalid {
                url: url.clone(),
                why: "no access_token".into(),
            })?
            .to_string();
        let ttl = v["expires_in"].as_u64().unwrap_or(600).clamp(60, 86_400);
        self.token = Some((token.clone(), Instant::now() + Duration::from_secs(ttl)));
        Ok(token)
    }

    /// Call the API at `path` (after the mount); JSON body in, the status and JSON (or nothing) out.
    async fn call(
        &mut self,
        method: Method,
        url: String,
        body: Option<&Value>,
    ) -> Result<(StatusCode, http::HeaderMap, Bytes), ClientError> {
        let token = self.bearer().await?;
        let body = body.map_or_else(Bytes::new, |b| Bytes::from(b.to_string()));
        let ct = (!body.is_empty()).then_some("application/json");
        self.send(method, &url, ct, body, Some(&token)).await
    }

    /// The URL of a Triggers API resource (`subscriptions`, `subscriptions/{id}`, `invocations/test`, …).
    fn url(&self, mount: Mount, service: &str, rest: &str) -> String {
        let rest = if rest.is_empty() {
            String::new()
        } else {
            format!("/{rest}")
        };
        match mount {
            Mount::V1 => format!("{}/{service}/v1{rest}", self.base),
            Mount::Beta => format!("{}/beta/{service}{rest}", self.base),
            Mount::Relay => format!("{}/relay/v1/{service}{rest}", self.base),
        }
    }

    /// Read a whole list, page by page (`query` without limit/offset). An item seen again on a later page (the
    /// list moved under the offsets) is kept once, by `id`; a list longer than [`MAX_ITEMS`] is an error, never
    /// a partial answer (a partial list would make the sync create twice or delete what it did not see).
    async fn list(
        &mut self,
        service: &str,
        rest: &str,
        query: &str,
    ) -> Result<Listed, ClientError> {
        let mut items: Vec<Value> = Vec::new();
        let mut ids = std::collections::HashSet::new();
        for page in 0..MAX_PAGES {
            let mount = self.mount.unwrap_or(Mount::V1);
            let sep = if query.is_empty() { "" } else { "&" };
            let url = format!(
                "{}?limit={PAGE}&offset={}{sep}{query}",
                self.url(mount, service, rest),
                page * PAGE
            );
            let (status, _, body) = self.call(Method::GET, url.clone(), None).await?;
            // A tenant without the per-service paths: the beta mount, for this and every later call.
            if self.mount.is_none()
                && matches!(
                    status,
                    StatusCode::NOT_FOUND | StatusCode::METHOD_NOT_ALLOWED
                )
            {
                self.mount = Some(Mount::Beta);
                return Box::pin(self.list(service, rest, query)).await;
            }
            if !status.is_success() {
                return Err(ClientError::Status {
                    method: Method::GET,
                    url,
                    status,
                    detail: self.detail(&body),
                });
            }
            self.mount.get_or_insert(mount);
            let page: Vec<Value> = if body.is_empty() {
                Vec::new()
            } else {
                serde_json::from_slice(&body).map_err(|e| ClientError::Invalid {
                    url: url.clone(),
                    why: format!("a list page must be a JSON array: {e}"),
                })?
            };
            let n = page.len();
            for item in page {
                match item["id"].as_str() {
                    Some(id) if !ids.insert(id.to_string()) => {}
                    _ => items.push(item),
                }
            }
            if items.len() > MAX_ITEMS {
                return Err(ClientError::Invalid {
                    url,
                    why: format!("the list holds more than {MAX_ITEMS} items"),
                });
            }
            if n < PAGE {
                return Ok(Listed { items });
            }
        }
        Err(ClientError::Invalid {
            url: self.base.clone(),
            why: format!("the list did not end within {MAX_PAGES} pages"),
        })
    }

    /// Every subscription (ISC's `Subscription` objects).
    pub async fn subscriptions(&mut self) -> Result<Vec<Value>, ClientError> {
        Ok(self.list("trigger-subscriptions", "", "").await?.items)
    }

    /// The invocation statuses of one trigger, newest first.
    pub async fn statuses(&mut self, trigger_id: &str) -> Result<Vec<Value>, ClientError> {
        let filter = format!("triggerId eq \"{trigger_id}\"");
        let q: String = form_urlencoded::Serializer::new(String::new())
            .append_pair("filters", &filter)
            .append_pair("sorters", "-created")
            .finish();
        Ok(self.list("trigger-invocations", "status", &q).await?.items)
    }

    async fn expect(
        &mut self,
        method: Method,
        service: &str,
        rest: &str,
        body: Option<&Value>,
    ) -> Result<Option<Value>, ClientError> {
        let url = self.url(self.mount.unwrap_or(Mount::V1), service, rest);
        let (status, _, answer) = self.call(method.clone(), url.clone(), body).await?;
        if !status.is_success() {
            return Err(ClientError::Status {
                method,
                url,
                status,
                detail: self.detail(&answer),
            });
        }
        if answer.is_empty() || status == StatusCode::NO_CONTENT {
            return Ok(None);
        }
        serde_json::from_slice(&answer)
            .map(Some)
            .map_err(|e| ClientError::Invalid {
                url,
                why: e.to_string(),
            })
    }

    /// `POST /trigger-subscriptions`: the created subscription.
    pub async fn create(&mut self, body: &Value) -> Result<Value, ClientError> {
        self.expect(Method::POST, "trigger-subscriptions", "", Some(body))
            .await
            .map(Option::unwrap_or_default)
    }

    /// `PUT /trigger-subscriptions/{id}`.
    pub async fn replace(&mut self, id: &str, body: &Value) -> Result<Value, ClientError> {
        self.check_id(id)?;
        self.expect(
            Method::PUT,
            "trigger-subscriptions",
            &path_segment(id),
            Some(body),
        )
        .await
        .map(Option::unwrap_or_default)
    }

    /// An id that names one subscription (an empty one would address the whole collection).
    fn check_id(&self, id: &str) -> Result<(), ClientError> {
        if id.is_empty() {
            return Err(ClientError::Invalid {
                url: self.base.clone(),
                why: "a subscription without an id".into(),
            });
        }
        Ok(())
    }

    /// `DELETE /trigger-subscriptions/{id}`.
    pub async fn delete(&mut self, id: &str) -> Result<(), ClientError> {
        self.check_id(id)?;
        self.expect(
            Method::DELETE,
            "trigger-subscriptions",
            &path_segment(id),
            None,
        )
        .await
        .map(|_| ())
    }

    /// `POST /trigger-invocations/test`: the started invocations (none when nobody subscribes).
    pub async fn test(&mut self, body: &Value) -> Result<Vec<Value>, ClientError> {
        let v = self
            .expect(Method::POST, "trigger-invocations", "test", Some(body))
            .await?;
        Ok(match v {
            Some(Value::Array(a)) => a,
            _ => Vec::new(),
        })
    }
}

/// An id as one path segment (ISC's ids are hex; anything else is percent-encoded, never a path).
fn path_segment(id: &str) -> String {
    const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'.')
        .remove(b'_')
        .remove(b'~');
    percent_encoding::utf8_percent_encode(id, SEGMENT).to_string()
}

/// What an error answer says: ISC's `ErrorResponseDto` messages, `{"error"}` (401), `{"message"}` (429), else
/// the start of the body.
fn detail(body: &[u8], secrets: &[String]) -> String {
    let mut text = match serde_json::from_slice::<Value>(body) {
        Ok(v) => {
            let mut parts: Vec<String> = v["messages"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|m| m["text"].as_str().map(str::to_string))
                .collect();
            parts.extend(
                v["causes"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|m| m["text"].as_str().map(str::to_string)),
            );
            for k in ["error", "message", "error_description"] {
                if let Some(s) = v[k].as_str() {
                    parts.push(s.trim().to_string());
                }
            }
            if parts.is_empty() {
                v.to_string()
            } else {
                parts.join("; ")
            }
        }
        Err(_) => String::from_utf8_lossy(body).into_owned(),
    };
    for secret in secrets.iter().filter(|x| !x.is_empty()) {
        text = text.replace(secret.as_str(), "***");
    }
    let mut text: String = text.chars().filter(|c| !c.is_control()).take(300).collect();
    if text.is_empty() {
        text = "(no body)".into();
    }
    text
}
