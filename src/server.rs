//! The HTTP accept loop both listeners (ingress, admin) share: HTTP/1.1 keep-alive and h2c on one port,
//! connections tracked for graceful shutdown.
//!
//! Stopping is one shape: cancel `stop` → the loop stops accepting and drops the listener → every open
//! connection finishes the request it is serving and closes → [`serve`] returns. Cancelling `kill` (the
//! caller's deadline) drops the connections still open, so no connection outlives the server.

use std::convert::Infallible;
use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Serve `handler` on `listener` until `stop` is cancelled, then wait for open connections to finish their
/// current request, or until `kill` is cancelled.
pub async fn serve<H, F>(
    listener: TcpListener,
    handler: H,
    stop: CancellationToken,
    kill: CancellationToken,
    name: &'static str,
) where
    H: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .keep_alive(true)
        .header_read_timeout(Duration::from_secs(30));
    let graceful = GracefulShutdown::new();
    let tracker = TaskTracker::new();
    loop {
        let accepted = tokio::select! {
            _ = stop.cancelled() => break,
            r = listener.accept() => r,
        };
        match accepted {
            Ok((stream, _peer)) => {
                let _ = stream.set_nodelay(true);
                let h = handler.clone();
                let svc = service_fn(move |mut req: Request<Incoming>| {
                    // The TCP peer, for handlers that need it (the ingress's per-IP rate limit).
                    req.extensions_mut().insert::<std::net::SocketAddr>(_peer);
                    let f = h(req);
                    async move { Ok::<_, Infallible>(f.await) }
                });
                let conn = builder
                    .serve_connection(TokioIo::new(stream), svc)
                    .into_owned();
                let conn = graceful.watch(conn);
                let kill = kill.clone();
                tracker.spawn(async move {
                    tokio::select! {
                        r = conn => if let Err(e) = r {
                            tracing::debug!(listener = name, error = %e, "connection ended with an error");
                        },
                        _ = kill.cancelled() => {
                            tracing::debug!(listener = name, "connection dropped at the end of the grace period");
                        }
                    }
                });
            }
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(listener = name, error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    drop(listener);
    tracker.close();
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = kill.cancelled() => {}
    }
    tracker.wait().await;
}
