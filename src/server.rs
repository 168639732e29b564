//! The HTTP accept loop both listeners (ingress, admin) share: HTTP/1.1 keep-alive and HTTP/2 (h2c, or ALPN
//! over TLS) on one port, with the limits an internet-facing listener needs, and connections tracked for
//! graceful shutdown.
//!
//! Limits ([`ListenerLimits`]): at most `max_connections` open (one more is answered 503 and closed, or just
//! closed on a TLS port, before any handshake work); the TLS handshake and each request's headers within
//! `header_read_timeout_ms` (slowloris); headers within `max_header_bytes` (431); a connection with no request in
//! progress for `idle_timeout_ms` is closed; a request that outlives `request_timeout_ms` is answered 503.
//!
//! Stopping is one shape: cancel `stop` → the loop stops accepting and drops the listener → every open
//! connection finishes the request it is serving and closes → [`serve`] returns. Cancelling `kill` (the
//! caller's deadline) drops the connections still open, so no connection outlives the server.

mod hyper_answers;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use prometheus::{IntCounterVec, IntGaugeVec, Opts, Registry};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::ListenerLimits;
use crate::error::ApiError;
use crate::tls::TlsReloader;

/// Connection metrics of both listeners, registered once, labelled by listener (`ingress`, `admin`).
#[derive(Clone)]
pub struct ServerMetrics {
    open: IntGaugeVec,
    refused: IntCounterVec,
    timeouts: IntCounterVec,
    tls_failures: IntCounterVec,
    oversized: IntCounterVec,
    malformed: IntCounterVec,
}

impl ServerMetrics {
    pub fn register(r: &Registry) -> prometheus::Result<Self> {
        let open = IntGaugeVec::new(
            Opts::new(
                "trigger_relay_connections_open",
                "Open connections by listener",
            ),
            &["listener"],
        )?;
        let refused = IntCounterVec::new(
            Opts::new(
                "trigger_relay_connections_refused_total",
                "Connections turned away because max_connections were open",
            ),
            &["listener"],
        )?;
        let timeouts = IntCounterVec::new(
            Opts::new(
                "trigger_relay_connection_timeouts_total",
                "Connections or requests ended by a limit: stage = handshake, idle, request",
            ),
            &["listener", "stage"],
        )?;
        let tls_failures = IntCounterVec::new(
            Opts::new(
                "trigger_relay_tls_handshake_failures_total",
                "TLS handshakes that failed (bad client certificate, protocol error, timeout)",
            ),
            &["listener"],
        )?;
        let oversized = IntCounterVec::new(
            Opts::new(
                "trigger_relay_request_headers_too_large_total",
                "Requests answered 431 because their headers were over max_header_bytes",
            ),
            &["listener"],
        )?;
        let malformed = IntCounterVec::new(
            Opts::new(
                "trigger_relay_malformed_requests_total",
                "Request heads hyper could not parse (bad request line or header line: 400; URI too long: 414), answered with ISC's error body",
            ),
            &["listener"],
        )?;
        for m in [&refused, &timeouts, &tls_failures, &oversized, &malformed] {
            r.register(Box::new(m.clone()))?;
        }
        r.register(Box::new(open.clone()))?;
        Ok(Self {
            open,
            refused,
            timeouts,
            tls_failures,
            oversized,
            malformed,
        })
    }
}

/// How one listener serves: its name (metric label, logs), limits and optional TLS.
#[derive(Clone)]
pub struct ServeOptions {
    pub name: &'static str,
    pub limits: ListenerLimits,
    pub tls: Option<Arc<TlsReloader>>,
    pub metrics: ServerMetrics,
}

/// Serve `handler` on `listener` until `stop` is cancelled, then wait for open connections to finish their
/// current request, or until `kill` is cancelled.
pub async fn serve<H, F>(
    listener: TcpListener,
    handler: H,
    stop: CancellationToken,
    kill: CancellationToken,
    opts: ServeOptions,
) where
    H: Fn(Request<Incoming>, SocketAddr) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    let limits = &opts.limits;
    // The series exists from the start (0), so a dashboard shows "none yet" rather than "no data".
    let answers = hyper_answers::Counters {
        listener: opts.name,
        malformed: opts.metrics.malformed.with_label_values(&[opts.name]),
        oversized: opts.metrics.oversized.with_label_values(&[opts.name]),
    };
    let header_timeout = Duration::from_millis(limits.header_read_timeout_ms);
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .keep_alive(true)
        .header_read_timeout(header_timeout)
        // hyper's own limit is twice ours, so a request between the two gets the relay's 431 from the service;
        // one beyond twice the limit gets hyper's 431, which `HyperAnswers` gives ISC's body too.
        .max_buf_size(limits.max_header_bytes.saturating_mul(2));
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits.max_concurrent_streams)
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX));
    let graceful = GracefulShutdown::new();
    let conn = Arc::new(Conn {
        builder,
        handler,
        kill: kill.clone(),
        opts: opts.clone(),
        answers,
    });
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    // Writing 503s is bounded too: past this many at once, excess connections are just closed.
    let refusals = Arc::new(Semaphore::new(REFUSALS_AT_ONCE));
    let tracker = TaskTracker::new();
    loop {
        let accepted = tokio::select! {
            _ = stop.cancelled() => break,
            r = listener.accept() => r,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(listener = opts.name, error = %e, "accept failed");
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tokio::time::sleep(Duration::from_millis(50)) => continue,
                }
            }
        };
        let _ = stream.set_nodelay(true);
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            opts.metrics.refused.with_label_values(&[opts.name]).inc();
            tracing::debug!(
                listener = opts.name,
                "max_connections open: connection turned away"
            );
            if opts.tls.is_none() {
                if let Ok(r) = refusals.clone().try_acquire_owned() {
                    tracker.spawn(async move {
                        refuse(stream).await;
                        drop(r);
                    });
                }
            }
            continue;
        };
        let conn = conn.clone();
        let watcher = graceful.watcher();
        tracker.spawn(async move {
            // One guard for the slot and the gauge: both are given back however the task ends (a panic too).
            let _slot = Slot::new(
                conn.opts.metrics.open.with_label_values(&[conn.opts.name]),
                permit,
            );
            conn.run(stream, peer, watcher).await;
        });
    }
    drop(listener);
    tracker.close();
    // Connections still in their TLS handshake hold a watcher too: waiting for them is bounded by their
    // handshake timeout (or `kill`).
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = kill.cancelled() => {}
    }
    tracker.wait().await;
}

/// What each connection task needs, shared.
struct Conn<H> {
    builder: auto::Builder<TokioExecutor>,
    handler: H,
    kill: CancellationToken,
    opts: ServeOptions,
    /// hyper's own error answers get ISC's body ([`hyper_answers`]).
    answers: hyper_answers::Counters,
}

impl<H, F> Conn<H>
where
    H: Fn(Request<Incoming>, SocketAddr) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    async fn run(&self, stream: TcpStream, peer: SocketAddr, watcher: Watcher) {
        let name = self.opts.name;
        let Some(tls) = &self.opts.tls else {
            return self.http(stream, peer, watcher).await;
        };
        let acceptor = tokio_rustls::TlsAcceptor::from(tls.current());
        let limit = Duration::from_millis(self.opts.limits.header_read_timeout_ms);
        let handshake = tokio::select! {
            r = tokio::time::timeout(limit, acceptor.accept(stream)) => r,
            _ = self.kill.cancelled() => return,
        };
        match handshake {
            Ok(Ok(s)) => self.http(s, peer, watcher).await,
            Ok(Err(e)) => {
                self.opts
                    .metrics
                    .tls_failures
                    .with_label_values(&[name])
                    .inc();
                tracing::debug!(listener = name, error = %e, "TLS handshake failed");
            }
            Err(_) => {
                self.opts
                    .metrics
                    .tls_failures
                    .with_label_values(&[name])
                    .inc();
                self.opts
                    .metrics
                    .timeouts
                    .with_label_values(&[name, "handshake"])
                    .inc();
                tracing::debug!(listener = name, "TLS handshake timed out");
            }
        }
    }

    async fn http<I>(&self, io: I, peer: SocketAddr, watcher: Watcher)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let name = self.opts.name;
        let activity = Arc::new(Activity::new());
        let request_timeout = Duration::from_millis(self.opts.limits.request_timeout_ms);
        let idle_timeout = Duration::from_millis(self.opts.limits.idle_timeout_ms);
        let header_timeout = Duration::from_millis(self.opts.limits.header_read_timeout_ms);
        let h = self.handler.clone();
        let (act, metrics) = (activity.clone(), self.opts.metrics.clone());
        let oversized = self.answers.oversized.clone();
        let max_header = self.opts.limits.max_header_bytes;
        let svc = service_fn(move |req: Request<Incoming>| {
            let busy = act.begin();
            if header_bytes(&req) > max_header {
                oversized.inc();
                let mut resp = ApiError::new(
                    StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                    format!("the request's headers are larger than {max_header} bytes"),
                )
                .cause(format!("{name}.limits.max_header_bytes limits them"))
                .into_response();
                resp.headers_mut()
                    .insert(http::header::CONNECTION, HeaderValue::from_static("close"));
                drop(busy);
                return futures_util::future::Either::Left(std::future::ready(
                    Ok::<_, Infallible>(resp),
                ));
            }
            // The TCP peer goes to the handler as an argument, not in the request's extensions: their map is an
            // allocation per request, on the hot path (the ingress's per-IP rate limit reads it).
            let f = h(req, peer);
            let metrics = metrics.clone();
            let fut = async move {
                let resp = match tokio::time::timeout(request_timeout, f).await {
                    Ok(r) => r,
                    Err(_) => {
                        metrics.timeouts.with_label_values(&[name, "request"]).inc();
                        ApiError::new(
                            StatusCode::SERVICE_UNAVAILABLE,
                            format!(
                                "the request took longer than {} ms ({name}.limits.request_timeout_ms)",
                                request_timeout.as_millis()
                            ),
                        )
                        .retry_after(1)
                        .into_response()
                    }
                };
                drop(busy);
                Ok::<_, Infallible>(resp)
            };
            futures_util::future::Either::Right(fut)
        });
        let conn = self
            .builder
            .serve_connection(
                TokioIo::new(hyper_answers::HyperAnswers::new(io, self.answers.clone())),
                svc,
            )
            .into_owned();
        let conn = watcher.watch(conn);
        tokio::select! {
            r = conn => if let Err(e) = r {
                tracing::debug!(listener = name, error = %e, "connection ended with an error");
            },
            _ = activity.idle(idle_timeout, header_timeout) => {
                self.opts.metrics.timeouts.with_label_values(&[name, "idle"]).inc();
                tracing::debug!(listener = name, "idle connection closed");
            }
            _ = self.kill.cancelled() => {
                tracing::debug!(listener = name, "connection dropped at the end of the grace period");
            }
        }
    }
}

/// A connection's place under `max_connections`, counted in `trigger_relay_connections_open` while held.
struct Slot(
    prometheus::IntGauge,
    #[allow(dead_code)] OwnedSemaphorePermit,
);

impl Slot {
    fn new(gauge: prometheus::IntGauge, permit: OwnedSemaphorePermit) -> Self {
        gauge.inc();
        Slot(gauge, permit)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Requests in progress on one connection, and when the last one ended.
struct Activity {
    start: Instant,
    /// Whether a request has begun: until then the connection only gets `header_read_timeout_ms` (a client that
    /// connects and sends nothing, or half an HTTP/2 preface, gets no more time than a slow header).
    started: AtomicBool,
    in_flight: AtomicUsize,
    /// Milliseconds after `start` when the connection last went idle.
    idle_since_ms: AtomicU64,
}

impl Activity {
    fn new() -> Self {
        Self {
            start: Instant::now(),
            started: AtomicBool::new(false),
            in_flight: AtomicUsize::new(0),
            idle_since_ms: AtomicU64::new(0),
        }
    }

    fn begin(self: &Arc<Self>) -> Busy {
        self.started.store(true, Ordering::Release);
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        Busy(self.clone())
    }

    /// Resolves once no request has been in progress for `idle` (before the first request: for `first`, if
    /// shorter).
    async fn idle(&self, idle: Duration, first: Duration) {
        loop {
            let limit = if self.started.load(Ordering::Acquire) {
                idle
            } else {
                idle.min(first)
            };
            let wait = if self.in_flight.load(Ordering::Acquire) > 0 {
                limit
            } else {
                let since = Duration::from_millis(self.idle_since_ms.load(Ordering::Acquire));
                let idle_for = self.start.elapsed().saturating_sub(since);
                if idle_for >= limit {
                    return;
                }
                limit - idle_for
            };
            tokio::time::sleep(wait).await;
        }
    }
}

/// A request in progress; dropping it (answered, or abandoned with its connection) marks the end.
struct Busy(Arc<Activity>);

impl Drop for Busy {
    fn drop(&mut self) {
        let a = &self.0;
        let now = a.start.elapsed().as_millis() as u64;
        a.idle_since_ms.fetch_max(now, Ordering::AcqRel);
        a.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// At most this many 503 answers to connections over `max_connections` are being written at once.
const REFUSALS_AT_ONCE: usize = 64;

/// Answer a plain-HTTP connection over `max_connections` with a 503 and close it, reading (a bounded amount of)
/// what the client sent so that closing does not reset the answer away. A TLS connection is just closed: a
/// handshake is the work the cap protects against.
async fn refuse(mut stream: TcpStream) {
    let e = ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "too many open connections; retry later",
    );
    let body = e.body();
    let head = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nx-tracking-id: {}\r\n\
         retry-after: 1\r\nconnection: close\r\ncontent-length: {}\r\n\r\n",
        e.tracking_id,
        body.len()
    );
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        stream.write_all(head.as_bytes()).await?;
        stream.write_all(&body).await?;
        stream.shutdown().await?;
        // Lingering close: drain (bounded) what the client sends until it closes its side.
        let mut buf = [0u8; 4096];
        let mut left = 64 * 1024usize;
        while left > 0 {
            let n = stream.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            left = left.saturating_sub(n);
        }
        Ok::<_, std::io::Error>(())
    })
    .await;
}

/// The size of a request's head as `max_header_bytes` counts it: the request target and every header line.
fn header_bytes<B>(req: &Request<B>) -> usize {
    let target = req.uri().path_and_query().map_or(1, |p| p.as_str().len());
    req.headers()
        .iter()
        .fold(target, |n, (k, v)| n + k.as_str().len() + v.len() + 4)
}
