//! Shared by the ingress fuzz targets: an ingress (`IngressState`, built from the library's public types) with
//! real bounded queues and a filtered route, served one HTTP connection at a time over `tokio::io::duplex`
//! exactly as `server::serve` serves a TCP connection (hyper-util's auto builder: HTTP/1.1 keep-alive + h2c).

use std::convert::Infallible;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use trigger_relay::catalog::Catalog;
use trigger_relay::config::{AuthConfig, QueueConfig};
use trigger_relay::filter::Filter;
use trigger_relay::ingress::{handle, Authenticator, IngressMetrics, IngressState};
use trigger_relay::model::{AckMode, Secret};
use trigger_relay::router::{RouteSpec, Router, RouterMetrics};
use trigger_relay::sinks::metrics::SinkMetrics;
use trigger_relay::sinks::Target;

#[allow(dead_code)] // each target uses part of it
pub struct Harness {
    pub rt: tokio::runtime::Runtime,
    /// `[ingress.auth] none = true`
    pub open: Arc<IngressState>,
    /// `bearer_tokens = ["fuzz-token"]`, `basic = [{ username = "isc", password = "fuzz-pw" }]`
    pub closed: Arc<IngressState>,
}

fn state(rt: &tokio::runtime::Runtime, auth: AuthConfig) -> Arc<IngressState> {
    let registry = prometheus::Registry::new();
    let im = IngressMetrics::register(&registry).unwrap();
    let sm = SinkMetrics::register(&registry).unwrap();
    let rm = RouterMetrics::register(&registry, im.requests.clone()).unwrap();
    let mut router = Router::new(Catalog::builtin());
    // A small queue, so the fuzzer also reaches the 503 (shed) path; drained in the background.
    let cap = QueueConfig {
        max_events: 4,
        max_bytes: 1 << 20,
    };
    let (de, db) = sm.depth("discard", &cap);
    let (queue, mut rx) = trigger_relay::pipeline::queue::bounded("discard", cap, 0, de, db);
    rt.spawn(async move {
        let mut batch = Vec::new();
        while rx.recv_many(&mut batch, 64).await > 0 {
            batch.clear();
        }
    });
    let routes = [
        ("plain", "idn:identity-created", None),
        (
            "filtered",
            "idn:identity-attributes-changed",
            Some(r#"$.changes[?(@.attribute == "department" && @.newValue =~ /mark.*/i)]"#),
        ),
        (
            "root",
            "idn:identity-deleted",
            Some(r#"$[?($.identity.name in ["a", "b"])]"#),
        ),
    ];
    for (name, trigger, filter) in routes {
        let spec = RouteSpec {
            subscription_id: name.into(),
            subscription_name: name.into(),
            trigger_id: trigger.into(),
            sink: "discard".into(),
            target: Target::Discard,
            reads_payload: false,
            ack: AckMode::Accepted,
            filter: filter.map(|f| Filter::compile(f).expect("fuzz filter")),
            metrics: sm.route("discard", name),
            dead_letter: None,
            statuses: None,
            envelope: None,
            spans: None,
        };
        router.add(spec, queue.clone(), &rm);
    }
    Arc::new(IngressState {
        router: Arc::new(arc_swap::ArcSwap::from_pointee(router)),
        auth: Authenticator::new(&auth),
        max_body_bytes: 64 * 1024,
        body_read_timeout: Duration::from_millis(200),
        ack_timeout: Duration::from_millis(200),
        retry_after_s: 1,
        metrics: im,
        limits: Default::default(),
        loop_token: "".into(),
    })
}

pub fn harness() -> &'static Harness {
    static H: OnceLock<Harness> = OnceLock::new();
    H.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let open = state(
            &rt,
            AuthConfig {
                none: true,
                ..Default::default()
            },
        );
        let closed = state(
            &rt,
            AuthConfig {
                bearer_tokens: vec![Secret::new("fuzz-token")],
                basic: vec![trigger_relay::config::BasicCredential {
                    username: "isc".into(),
                    password: Secret::new("fuzz-pw"),
                }],
                ..Default::default()
            },
        );
        Harness { rt, open, closed }
    })
}

/// Serve one connection whose client sends `input` and then (when `close_write`) closes its write side; return
/// what the server wrote. hyper closes an HTTP/1 connection at the client's EOF (no half-close), so a caller that
/// needs every answer sends `connection: close` and keeps its side open. Panics (a fuzz failure) if the exchange
/// does not end within 10 s.
pub fn exchange(state: &Arc<IngressState>, input: &[u8], close_write: bool) -> Vec<u8> {
    let h = harness();
    let state = state.clone();
    h.rt.block_on(async move {
        let (mut client, server) = tokio::io::duplex(64 * 1024);
        let svc = service_fn(move |req| {
            let s = state.clone();
            // A duplex stream has no peer address: a fixed one stands in (the per-IP limit is off here).
            let peer = std::net::SocketAddr::from(([127, 0, 0, 1], 40000));
            async move { Ok::<_, Infallible>(handle(s, req, peer).await) }
        });
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .keep_alive(true)
            .header_read_timeout(Duration::from_secs(2));
        let conn = async move {
            let _ = builder.serve_connection(TokioIo::new(server), svc).await;
        };
        let io = async move {
            let _ = client.write_all(input).await;
            if close_write {
                let _ = client.shutdown().await;
            }
            let mut out = Vec::new();
            let _ = client.read_to_end(&mut out).await;
            out
        };
        let run = async { tokio::join!(conn, io).1 };
        tokio::time::timeout(Duration::from_secs(10), run)
            .await
            .expect("an ingress connection hung for 10 s")
    })
}

/// Every status line the server wrote (HTTP/1.1 only).
pub fn statuses(out: &[u8]) -> Vec<u16> {
    let text = String::from_utf8_lossy(out);
    text.match_indices("HTTP/1.1 ")
        .filter_map(|(i, _)| text.get(i + 9..i + 12)?.parse().ok())
        .collect()
}
