//! The HTTP webhook transport: one POST per delivery over a shared keep-alive pool, retried with backoff on
//! connection errors, 408, 429 and 5xx (honouring `Retry-After`), never on other 4xx (driven by
//! `sinks::driver`).

use std::time::Duration;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use http::{header, HeaderValue, Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use prometheus::IntCounter;

use super::egress::{EgressConnector, EgressPolicy, EgressRefused};
use crate::envelope::Binding;
use crate::pipeline::Delivery;
use crate::sinks::driver::{InFlight, Transport};
use crate::sinks::retry::Backoff;
use crate::sinks::{SinkError, Target};

const TAKE: usize = 128;
const USER_AGENT: &str = concat!("trigger-relay/", env!("CARGO_PKG_VERSION"));

type HttpClient = Client<HttpsConnector<EgressConnector>, Full<Bytes>>;

pub struct HttpSink {
    client: HttpClient,
    /// `Via` on every request: this relay instance, so its own ingress can refuse a loop.
    via: HeaderValue,
    max_in_flight: usize,
    request_timeout: Duration,
    delivery_timeout: Duration,
    max_retry_after: Duration,
    retries: IntCounter,
}

/// Build the shared client: HTTP/1.1 and HTTP/2 (ALPN) over rustls with the system's roots, keep-alive pool,
/// every new connection through the egress policy.
pub fn client(
    config: &super::HttpSinkConfig,
    policy: std::sync::Arc<EgressPolicy>,
) -> Result<HttpClient, String> {
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_native_roots(std::sync::Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .map_err(|e| format!("TLS roots: {e}"))?
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .wrap_connector(EgressConnector::new(
            policy,
            Duration::from_millis(config.request_timeout_ms),
        ));
    Ok(Client::builder(TokioExecutor::new())
        .timer(TokioTimer::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(Duration::from_millis(config.idle_timeout_ms))
        .pool_max_idle_per_host(config.max_idle_per_host)
        .build(https))
}

impl HttpSink {
    pub fn new(
        config: &super::HttpSinkConfig,
        delivery_timeout: Duration,
        retries: IntCounter,
        policy: std::sync::Arc<EgressPolicy>,
        instance: &str,
    ) -> Result<Self, String> {
        Ok(Self {
            client: client(config, policy)?,
            via: HeaderValue::from_str(&format!("1.1 trigger-relay-{instance}"))
                .map_err(|e| e.to_string())?,
            max_in_flight: config.max_in_flight,
            request_timeout: Duration::from_millis(config.request_timeout_ms),
            delivery_timeout,
            max_retry_after: Duration::from_millis(config.max_retry_after_ms),
            retries,
        })
    }
}

/// How one attempt ended.
enum Attempt {
    Done,
    /// Send again, after at least this long when the server said so.
    Retry(SinkError, Option<Duration>),
    Fail(SinkError),
}

/// `Retry-After` in seconds (the HTTP-date form is read as "soon": the backoff applies).
fn retry_after(v: Option<&HeaderValue>) -> Option<Duration> {
    v.and_then(|v| v.to_str().ok())
        .and_then(|s| s.trim().parse::<u64>().ok())
        .map(Duration::from_secs)
}

async fn attempt(
    client: &HttpClient,
    via: &HeaderValue,
    uri: &Uri,
    auth: Option<&HeaderValue>,
    d: &Delivery,
    timeout: Duration,
) -> Attempt {
    let mut req = Request::builder()
        .method(Method::POST)
        .uri(uri.clone())
        .header(header::USER_AGENT, USER_AGENT)
        .header(header::VIA, via.clone());
    if let Some(a) = auth {
        req = req.header(header::AUTHORIZATION, a.clone());
    }
    // `content-type`, the relay's ids, `test` for a test invocation, the trace context, CloudEvents headers.
    for (k, v) in crate::envelope::headers(d, Binding::Http) {
        req = req.header(k, &*v);
    }
    let req = match req.body(Full::new(crate::envelope::payload(d))) {
        Ok(r) => r,
        Err(e) => return Attempt::Fail(SinkError::Rejected(e.to_string())),
    };
    let answer = tokio::time::timeout(timeout, async {
        let resp = client.request(req).await?;
        let status = resp.status();
        let after = retry_after(resp.headers().get(header::RETRY_AFTER));
        // Read (a bounded part of) the body so the connection can be reused; keep it for the error text.
        let body = Limited::new(resp.into_body(), 4096)
            .collect()
            .await
            .map(|c| c.to_bytes())
            .unwrap_or_default();
        Ok::<_, hyper_util::client::legacy::Error>((status, after, body))
    })
    .await;
    match answer {
        Err(_) => Attempt::Retry(
            SinkError::Unavailable(format!(
                "no answer within request_timeout_ms ({} ms)",
                timeout.as_millis()
            )),
            None,
        ),
        Ok(Err(e)) => {
            let mut text = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                // The egress policy's refusal is final: the same address would be refused again.
                if let Some(refused) = s.downcast_ref::<EgressRefused>() {
                    return Attempt::Fail(SinkError::Rejected(refused.to_string()));
                }
                text.push_str(": ");
                text.push_str(&s.to_string());
                source = s.source();
            }
            Attempt::Retry(SinkError::Unavailable(text), None)
        }
        Ok(Ok((status, after, body))) => {
            if status.is_success() {
                return Attempt::Done;
            }
            // The relay's words only: the target's body is not repeated (statuses are readable through the API,
            // and a body would turn the relay into a reader of whatever the URL points at).
            let _ = body;
            let text = format!("HTTP {status}");
            if status == StatusCode::LOOP_DETECTED {
                // A relay's ingress refused its own event coming back: sending it again would only loop.
                Attempt::Fail(SinkError::Rejected(text))
            } else if status.is_server_error()
                || status == StatusCode::TOO_MANY_REQUESTS
                || status == StatusCode::REQUEST_TIMEOUT
            {
                Attempt::Retry(SinkError::Unavailable(text), after)
            } else if status == StatusCode::PAYLOAD_TOO_LARGE {
                Attempt::Fail(SinkError::TooLarge(text))
            } else {
                Attempt::Fail(SinkError::Rejected(text))
            }
        }
    }
}

impl HttpSink {
    fn post(&self, mut d: Delivery) -> InFlight {
        let client = self.client.clone();
        let via = self.via.clone();
        let timeout = self.request_timeout;
        let deadline = d.event().received + self.delivery_timeout;
        let max_after = self.max_retry_after;
        let retries = self.retries.clone();
        Box::pin(async move {
            let Target::Http { uri, auth } = &d.route().target else {
                let e = Err(SinkError::Rejected("not an HTTP subscription".into()));
                return vec![(d, e)];
            };
            let (uri, auth) = (uri.clone(), auth.clone());
            let mut backoff = Backoff::new(Duration::from_millis(100));
            loop {
                d.attempts += 1;
                let (err, after) =
                    match attempt(&client, &via, &uri, auth.as_ref(), &d, timeout).await {
                        Attempt::Done => return vec![(d, Ok(()))],
                        Attempt::Fail(e) => return vec![(d, Err(e))],
                        Attempt::Retry(e, after) => (e, after),
                    };
                let wait = backoff.wait(after.map(|a| a.min(max_after)));
                if !Backoff::fits(wait, deadline) {
                    return vec![(d, Err(SinkError::TimedOut(err.to_string())))];
                }
                retries.inc();
                tracing::debug!(tracking_id = %d.event().tracking_id, error = %err, wait_ms = wait.as_millis() as u64, "webhook attempt failed; retrying");
                backoff.sleep(wait).await;
            }
        })
    }
}

impl Transport for HttpSink {
    fn take(&self) -> usize {
        TAKE
    }

    fn max_in_flight(&self) -> usize {
        self.max_in_flight
    }

    fn start(&self, batch: Vec<Delivery>) -> BoxFuture<'_, Vec<InFlight>> {
        let out = batch.into_iter().map(|d| self.post(d)).collect();
        Box::pin(std::future::ready(out))
    }

    fn flush(&self, _within: Duration) -> BoxFuture<'_, ()> {
        Box::pin(std::future::ready(()))
    }
}
