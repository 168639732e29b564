//! The listeners as an internet-facing gateway needs them: native TLS (HTTP/1.1 and HTTP/2 by ALPN), certificate
//! reload on file change and on SIGHUP without dropping open connections, client certificates on the admin
//! listener, and the connection limits (max connections, header size, slowloris, idle, per-request total).
//! Certificates are made by the test (rcgen); every check goes through real sockets.

use crate::support;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const EVENT_PATH: &str = "/events/idn:identity-created";

/// A CA and the PEM files of a server certificate (and a client certificate) it signed, in a temp dir.
struct Pki {
    dir: tempfile::TempDir,
    ca_key: rcgen::KeyPair,
    ca: rcgen::Certificate,
}

impl Pki {
    fn new() -> Pki {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
        let ca_key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(Vec::new()).unwrap();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = p.self_signed(&ca_key).unwrap();
        let pki = Pki {
            dir: tempfile::tempdir().unwrap(),
            ca_key,
            ca,
        };
        std::fs::write(pki.path("ca.pem"), pki.ca.pem()).unwrap();
        pki
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Write `<name>.pem` / `<name>.key` for a leaf certificate (SANs localhost and 127.0.0.1); its DER.
    fn leaf(&self, name: &str) -> Vec<u8> {
        use rcgen::{CertificateParams, KeyPair, SanType};
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(vec!["localhost".into()]).unwrap();
        p.subject_alt_names
            .push(SanType::IpAddress("127.0.0.1".parse().unwrap()));
        let cert = p.signed_by(&key, &self.ca, &self.ca_key).unwrap();
        // Each file replaced whole (write, rename), the key first. A watcher may still see the new key with the
        // old certificate for one poll (a failed reload, counted); the next poll loads the pair.
        let put = |file: String, text: String| {
            let tmp = self.path(&format!("{file}.tmp"));
            std::fs::write(&tmp, text).unwrap();
            std::fs::rename(&tmp, self.path(&file)).unwrap();
        };
        put(format!("{name}.key"), key.serialize_pem());
        put(format!("{name}.pem"), cert.pem());
        cert.der().to_vec()
    }

    fn toml(&self, name: &str, extra: &str) -> String {
        format!(
            "cert_file = \"{}\"\nkey_file = \"{}\"\n{extra}",
            self.path(&format!("{name}.pem")).display(),
            self.path(&format!("{name}.key")).display()
        )
    }

    /// A client trusting this CA, presenting `client` (`(pki, name)`: a leaf written by that pki) if given.
    fn client_config(
        &self,
        client: Option<(&Pki, &str)>,
        alpn: &[&[u8]],
    ) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca.der().clone()).unwrap();
        let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
        let mut c = match client {
            None => builder.with_no_client_auth(),
            Some((pki, name)) => {
                let chain = CertificateDer::pem_file_iter(pki.path(&format!("{name}.pem")))
                    .unwrap()
                    .collect::<Result<Vec<_>, _>>()
                    .unwrap();
                let key = PrivateKeyDer::from_pem_file(pki.path(&format!("{name}.key"))).unwrap();
                builder.with_client_auth_cert(chain, key).unwrap()
            }
        };
        c.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Arc::new(c)
    }
}

/// An HTTPS connection: the protocol ALPN chose, the server's certificate, and a request sender.
struct Https {
    alpn: Option<Vec<u8>>,
    server_cert: Vec<u8>,
    send: Sender,
}

enum Sender {
    H1(hyper::client::conn::http1::SendRequest<Full<Bytes>>),
    H2(hyper::client::conn::http2::SendRequest<Full<Bytes>>),
}

async fn connect(
    addr: std::net::SocketAddr,
    config: Arc<rustls::ClientConfig>,
) -> std::io::Result<Https> {
    let tcp = TcpStream::connect(addr).await?;
    let tls = tokio_rustls::TlsConnector::from(config)
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await?;
    let (_, session) = tls.get_ref();
    let alpn = session.alpn_protocol().map(|p| p.to_vec());
    let server_cert = session.peer_certificates().unwrap()[0].to_vec();
    let io = TokioIo::new(tls);
    let send = if alpn.as_deref() == Some(b"h2") {
        let (s, c) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
            .await
            .map_err(std::io::Error::other)?;
        tokio::spawn(c);
        Sender::H2(s)
    } else {
        let (s, c) = hyper::client::conn::http1::handshake(io)
            .await
            .map_err(std::io::Error::other)?;
        tokio::spawn(c);
        Sender::H1(s)
    };
    Ok(Https {
        alpn,
        server_cert,
        send,
    })
}

impl Https {
    /// One request on this connection: status and body, or the error that ended the connection.
    async fn request(
        &mut self,
        method: &str,
        path: &str,
        body: &[u8],
    ) -> Result<(u16, Bytes), String> {
        let req = http::Request::builder()
            .method(method)
            .uri(format!("https://localhost{path}"))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::copy_from_slice(body)))
            .unwrap();
        let resp = match &mut self.send {
            Sender::H1(s) => {
                s.ready().await.map_err(|e| format!("{e:?}"))?;
                s.send_request(req).await
            }
            Sender::H2(s) => {
                s.ready().await.map_err(|e| format!("{e:?}"))?;
                s.send_request(req).await
            }
        }
        .map_err(|e| format!("{e:?}"))?;
        let status = resp.status().as_u16();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok((status, body))
    }
}

fn relay_toml(ingress: &str, admin: &str) -> String {
    format!(
        r#"
[ingress]
{ingress}
[ingress.auth]
none = true
[admin]
{admin}
[[subscriptions]]
name = "discard"
triggerId = "idn:identity-created"
type = "DISCARD"
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_ingress_speaks_http1_and_h2_by_alpn_and_refuses_plain_http() {
    let pki = Pki::new();
    pki.leaf("server");
    let relay = start(&relay_toml(
        &format!("[ingress.tls]\n{}", pki.toml("server", "")),
        "",
    ))
    .await;
    let body = example_body("idn:identity-created", &unique("tls"));
    for (name, alpn, want) in [
        (
            "h2 offered",
            &[&b"h2"[..], b"http/1.1"][..],
            Some(&b"h2"[..]),
        ),
        (
            "http/1.1 only",
            &[&b"http/1.1"[..]][..],
            Some(&b"http/1.1"[..]),
        ),
        ("no ALPN", &[][..], None),
    ] {
        let mut c = connect(relay.ingress_addr(), pki.client_config(None, alpn))
            .await
            .unwrap_or_else(|e| panic!("{name}: TLS connect: {e}"));
        assert_eq!(c.alpn.as_deref(), want, "{name}: negotiated protocol");
        let (status, resp) = c.request("POST", EVENT_PATH, &body).await.unwrap();
        assert_eq!(status, 200, "{name}: {}", String::from_utf8_lossy(&resp));
        // Keep-alive: a second request on the same connection.
        let (status, _) = c.request("POST", EVENT_PATH, &body).await.unwrap();
        assert_eq!(status, 200, "{name}: second request");
    }
    // Plain HTTP to the TLS port gets no HTTP answer.
    let mut tcp = TcpStream::connect(relay.ingress_addr()).await.unwrap();
    tcp.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut buf)).await;
    assert!(
        !buf.starts_with(b"HTTP/"),
        "plain HTTP answered on a TLS port"
    );
    eventually(
        "the failed handshake counted",
        Duration::from_secs(10),
        || async {
            metric(
                &relay,
                "trigger_relay_tls_handshake_failures_total",
                &["listener=\"ingress\""],
            )
            .await
                >= 1.0
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_reload_on_change_and_on_sighup_without_dropping_connections() {
    let pki = Pki::new();
    let first = pki.leaf("server");
    let relay = start(&relay_toml(
        &format!(
            "[ingress.tls]\n{}",
            pki.toml("server", "watch_interval_ms = 50")
        ),
        "",
    ))
    .await;
    let body = example_body("idn:identity-created", &unique("reload"));
    let reloads = |result: &'static str| {
        let ingress = &["listener=\"ingress\""];
        metric_of_result(&relay, "trigger_relay_tls_reloads_total", ingress, result)
    };
    let cfg = pki.client_config(None, &[b"http/1.1"]);
    let mut old = connect(relay.ingress_addr(), cfg.clone()).await.unwrap();
    assert_eq!(old.server_cert, first);

    // 1. The files change: new connections get the new certificate; the open one keeps working.
    let second = pki.leaf("server");
    eventually(
        "reload after the files changed",
        Duration::from_secs(20),
        || async { reloads("ok").await >= 1.0 },
    )
    .await;
    let fresh = connect(relay.ingress_addr(), cfg.clone()).await.unwrap();
    assert_eq!(
        fresh.server_cert, second,
        "new connections get the new certificate"
    );
    let (status, _) = old.request("POST", EVENT_PATH, &body).await.unwrap();
    assert_eq!(
        status, 200,
        "a connection opened before the reload still serves"
    );

    // 2. A broken file: the reload fails, the previous certificate stays.
    let errors_before = reloads("error").await;
    std::fs::write(pki.path("server.pem"), "not a certificate").unwrap();
    eventually("failed reload counted", Duration::from_secs(20), || async {
        reloads("error").await > errors_before
    })
    .await;
    let still = connect(relay.ingress_addr(), cfg.clone()).await.unwrap();
    assert_eq!(
        still.server_cert, second,
        "a bad file keeps the previous certificate"
    );
    drop(relay);

    // 3. SIGHUP with file polling off.
    let pki = Pki::new();
    let first = pki.leaf("server");
    let relay = start(&relay_toml(
        &format!(
            "[ingress.tls]\n{}",
            pki.toml("server", "watch_interval_ms = 0")
        ),
        "",
    ))
    .await;
    let cfg = pki.client_config(None, &[b"http/1.1"]);
    assert_eq!(
        connect(relay.ingress_addr(), cfg.clone())
            .await
            .unwrap()
            .server_cert,
        first
    );
    let second = pki.leaf("server");
    // `Relay::start` installed the SIGHUP handler before returning, so this reloads instead of killing us.
    assert_eq!(sighup_self(), 0, "kill -HUP <own pid>");
    let reloaded = |r: &trigger_relay::Relay| {
        let addr = r.admin_addr();
        async move {
            support::reliability::metric_at(
                addr,
                "trigger_relay_tls_reloads_total",
                &["listener=\"ingress\"", "result=\"ok\""],
            )
            .await
        }
    };
    eventually("reload on SIGHUP", Duration::from_secs(20), || async {
        reloaded(&relay).await >= 1.0
    })
    .await;
    assert_eq!(
        connect(relay.ingress_addr(), cfg)
            .await
            .unwrap()
            .server_cert,
        second
    );
}

/// `kill -HUP <own pid>` through the `kill` command (no `unsafe` libc call in the tests).
fn sighup_self() -> i32 {
    std::process::Command::new("kill")
        .arg("-HUP")
        .arg(std::process::id().to_string())
        .status()
        .map(|s| s.code().unwrap_or(-1))
        .unwrap_or(-1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_listener_requires_a_client_certificate_when_a_client_ca_is_set() {
    let pki = Pki::new();
    pki.leaf("server");
    pki.leaf("operator"); // a client certificate from the same CA
    let other = Pki::new();
    other.leaf("intruder"); // a client certificate from a CA the relay does not trust
    let ca = pki.path("ca.pem");
    let relay = start(&relay_toml(
        "",
        &format!(
            "[admin.tls]\n{}",
            pki.toml("server", &format!("client_ca_file = \"{}\"", ca.display()))
        ),
    ))
    .await;
    let addr = relay.admin_addr();
    // With a trusted client certificate: /metrics answers.
    let mut ok = connect(
        addr,
        pki.client_config(Some((&pki, "operator")), &[b"h2", b"http/1.1"]),
    )
    .await
    .expect("mTLS handshake with a trusted client certificate");
    let (status, body) = ok.request("GET", "/metrics", b"").await.unwrap();
    assert_eq!(status, 200);
    assert!(String::from_utf8_lossy(&body).contains("trigger_relay_connections_open"));

    // Without one, or with one from another CA: no answer (TLS 1.3 reports it at the first read).
    for (name, cfg) in [
        (
            "no client certificate",
            pki.client_config(None, &[b"http/1.1"]),
        ),
        (
            "untrusted client certificate",
            pki.client_config(Some((&other, "intruder")), &[b"http/1.1"]),
        ),
    ] {
        let refused = match connect(addr, cfg).await {
            Err(_) => true,
            Ok(mut c) => c.request("GET", "/metrics", b"").await.is_err(),
        };
        assert!(refused, "{name}: the admin listener answered");
    }
    // The server counts a failed handshake after closing the socket: poll (as `eventually` does).
    let mut failures = 0.0;
    for _ in 0..200 {
        let (_, body) = ok.request("GET", "/metrics", b"").await.unwrap();
        failures = String::from_utf8_lossy(&body)
            .lines()
            .find(|l| {
                l.starts_with("trigger_relay_tls_handshake_failures_total{listener=\"admin\"}")
            })
            .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .unwrap_or(0.0);
        if failures >= 2.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(failures >= 2.0, "both refusals counted: {failures}");
}

/// Send `raw` on a fresh plain connection and read until the server closes it (at most 10 s: a liveness bound,
/// not a timing assertion). `None` when the server kept the connection open that long.
async fn exchange(addr: std::net::SocketAddr, raw: &[u8]) -> Option<String> {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(raw).await.unwrap();
    let mut buf = Vec::new();
    match tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut buf)).await {
        Ok(_) => Some(String::from_utf8_lossy(&buf).into_owned()),
        Err(_) => None,
    }
}

async fn timeouts(relay: &trigger_relay::Relay, listener: &str, stage: &str) -> f64 {
    metric(
        relay,
        "trigger_relay_connection_timeouts_total",
        &[
            &format!("listener=\"{listener}\""),
            &format!("stage=\"{stage}\""),
        ],
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_limits_and_timeouts_hold_on_both_listeners() {
    // max_connections: the third connection gets a fast 503 in ISC's error shape; closing one frees a slot.
    let relay = start(&relay_toml("[ingress.limits]\nmax_connections = 2", "")).await;
    let addr = relay.ingress_addr();
    let open = || async {
        metric(
            &relay,
            "trigger_relay_connections_open",
            &["listener=\"ingress\""],
        )
        .await
    };
    let first = TcpStream::connect(addr).await.unwrap();
    let _second = TcpStream::connect(addr).await.unwrap();
    eventually("two connections open", Duration::from_secs(10), || async {
        open().await == 2.0
    })
    .await;
    let answer = exchange(
        addr,
        b"POST /events HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\n\r\n{}",
    )
    .await
    .expect("the refused connection is closed");
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("retry-after: 1"), "{answer}");
    assert!(
        answer.contains("\"detailCode\":\"503 Service Unavailable\""),
        "{answer}"
    );
    assert_eq!(
        metric(
            &relay,
            "trigger_relay_connections_refused_total",
            &["listener=\"ingress\""]
        )
        .await,
        1.0
    );
    drop(first);
    eventually("a slot is free again", Duration::from_secs(10), || async {
        open().await == 1.0
    })
    .await;
    let r = post_event(
        &relay,
        EVENT_PATH,
        example_body("idn:identity-created", &unique("slot")),
    )
    .await;
    assert_eq!(r.status, 200);
    drop(relay);

    // Request heads the relay cannot take, each answered with ISC's error body and a tracking id and counted:
    // headers over max_header_bytes (within twice the limit the relay's service answers, beyond it hyper does, and
    // the connection's IO gives hyper's bare answer the same body), and heads hyper cannot parse.
    let relay = start(&relay_toml("[ingress.limits]\nmax_header_bytes = 8192", "")).await;
    let big = |n: usize| {
        format!(
            "POST {EVENT_PATH} HTTP/1.1\r\nhost: x\r\nx-big: {}\r\ncontent-length: 2\r\n\r\n{{}}",
            "a".repeat(n)
        )
    };
    let cases: [(&str, String, u16, &str); 5] = [
        (
            "headers over twice the limit",
            big(20_000),
            431,
            "ingress.limits.max_header_bytes",
        ),
        (
            "headers within twice the limit",
            big(10_000),
            431,
            "ingress.limits.max_header_bytes",
        ),
        (
            "a header line without a colon",
            "POST /events HTTP/1.1\r\nhost: x\r\nno colon here\r\n\r\n".into(),
            400,
            "could not be parsed",
        ),
        (
            "a method that is not a token",
            "P(ST /events HTTP/1.1\r\nhost: x\r\n\r\n".into(),
            400,
            "could not be parsed",
        ),
        (
            "a request line with no version",
            "POST /events\r\nhost: x\r\n\r\n".into(),
            400,
            "could not be parsed",
        ),
    ];
    for (what, raw, status, cause) in &cases {
        let answer = exchange(relay.ingress_addr(), raw.as_bytes())
            .await
            .unwrap_or_else(|| panic!("{what}: the connection is closed after the answer"));
        assert!(
            answer.starts_with(&format!("HTTP/1.1 {status} ")),
            "{what}: {answer}"
        );
        let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
        let head = head.to_ascii_lowercase();
        assert!(
            head.contains("x-tracking-id: ") && head.contains("connection: close"),
            "{what}: {answer}"
        );
        let dto: serde_json::Value = serde_json::from_str(body)
            .unwrap_or_else(|e| panic!("{what}: ISC's error body, not {body:?}: {e}"));
        assert!(
            dto["trackingId"].as_str().is_some_and(|t| t.len() == 32),
            "{what}: {dto}"
        );
        assert!(
            dto["detailCode"]
                .as_str()
                .is_some_and(|c| c.starts_with(&status.to_string())),
            "{what}: {dto}"
        );
        assert!(body.contains(cause), "{what}: {body}");
    }
    let count = |name: &'static str| {
        let relay = &relay;
        async move { metric(relay, name, &["listener=\"ingress\""]).await }
    };
    assert_eq!(
        count("trigger_relay_request_headers_too_large_total").await,
        2.0
    );
    assert_eq!(count("trigger_relay_malformed_requests_total").await, 3.0);
    // A well-formed request on the same listener is served as before.
    let r = post_event(
        &relay,
        EVENT_PATH,
        example_body("idn:identity-created", &unique("after")),
    )
    .await;
    assert_eq!(r.status, 200);
    drop(relay);

    // Slowloris: headers that never finish are cut at header_read_timeout_ms.
    let relay = start(&relay_toml(
        "[ingress.limits]\nheader_read_timeout_ms = 200",
        "",
    ))
    .await;
    let answer = exchange(
        relay.ingress_addr(),
        b"POST /events HTTP/1.1\r\nhost: x\r\n",
    )
    .await;
    assert!(
        answer.is_some(),
        "a connection that never finished its headers stayed open"
    );
    // Connect and send nothing (hyper's protocol detection has no timer of its own), or half an HTTP/2 preface.
    for (what, raw) in [
        ("nothing", &b""[..]),
        ("half an h2 preface", &b"PRI * HTTP/2.0\r\n"[..]),
    ] {
        let answer = exchange(relay.ingress_addr(), raw).await;
        assert!(
            answer.is_some(),
            "a connection that sent {what} stayed open"
        );
    }
    drop(relay);

    // Idle keep-alive: closed after idle_timeout_ms without a request (the header timer is far longer).
    let relay = start(&relay_toml(
        "[ingress.limits]\nidle_timeout_ms = 200\nheader_read_timeout_ms = 60000",
        "",
    ))
    .await;
    let body = example_body("idn:identity-created", &unique("idle"));
    let req = format!(
        "POST {EVENT_PATH} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    let answer = exchange(relay.ingress_addr(), &[req.as_bytes(), &body].concat())
        .await
        .expect("the idle connection is closed");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert_eq!(timeouts(&relay, "ingress", "idle").await, 1.0);
    drop(relay);

    // Per-request total on the admin listener: an API request whose body never completes gets a 503.
    let store = tempfile::tempdir().unwrap();
    let relay = start(&relay_toml(
        "",
        &format!(
            "[admin.limits]\nrequest_timeout_ms = 300\n[api]\nenabled = true\nstore_path = \"{}\"\n\
             [[api.tokens]]\nname = \"admin\"\ntoken = \"tok-limits-0123456789abcdef0123456789\"\nscopes = [\"sp:scopes:all\"]",
            store.path().join("subs.json").display()
        ),
    ))
    .await;
    let mut tcp = TcpStream::connect(relay.admin_addr()).await.unwrap();
    tcp.write_all(
        b"POST /beta/trigger-subscriptions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer tok-limits-0123456789abcdef0123456789\r\n\
          content-type: application/json\r\ncontent-length: 100\r\n\r\n{\"name\":",
    )
    .await
    .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(10), tcp.read(&mut buf))
        .await
        .expect("an answer before the client finishes its body")
        .unwrap();
    let answer = String::from_utf8_lossy(&buf[..n]);
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("request_timeout_ms"), "{answer}");
    assert_eq!(timeouts(&relay, "admin", "request").await, 1.0);
}

#[test]
fn listener_limits_are_validated_with_their_key_paths() {
    let check = |toml: &str, path: &str| {
        let errs = trigger_relay::Config::from_toml(toml)
            .expect_err(toml)
            .to_string();
        assert!(
            errs.contains(path),
            "{toml}: want an error at {path}, got:\n{errs}"
        );
    };
    check(
        "[ingress.limits]\nmax_header_bytes = 100",
        "ingress.limits.max_header_bytes",
    );
    check(
        "[admin.limits]\nmax_connections = 0",
        "admin.limits.max_connections",
    );
    check(
        "[ingress.limits]\nidle_timeout_ms = 0",
        "ingress.limits.idle_timeout_ms",
    );
    check(
        "[admin.limits]\nheader_read_timeout_ms = 0",
        "admin.limits.header_read_timeout_ms",
    );
    check(
        "[ingress]\nbody_read_timeout_ms = 10000\n[ingress.limits]\nrequest_timeout_ms = 12000",
        "ingress.limits.request_timeout_ms",
    );
    check(
        "[ingress.tls]\ncert_file = \"\"\nkey_file = \"k\"",
        "ingress.tls.cert_file",
    );
    check(
        "[admin.tls]\ncert_file = \"c\"\nkey_file = \"k\"\nport = 1",
        "admin.tls.port",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_that_cannot_be_loaded_stops_start_up_with_its_path() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.pem");
    let toml = relay_toml(
        &format!(
            "[ingress.tls]\ncert_file = \"{}\"\nkey_file = \"{}\"",
            missing.display(),
            missing.display()
        ),
        "",
    );
    let mut config = trigger_relay::Config::from_toml(&toml).unwrap();
    config.ingress.listen = "127.0.0.1:0".parse().unwrap();
    config.admin.listen = "127.0.0.1:0".parse().unwrap();
    let err = match trigger_relay::Relay::start(config).await {
        Ok(_) => panic!("started with a missing certificate"),
        Err(e) => e.to_string(),
    };
    assert!(
        err.contains("[ingress.tls]") && err.contains("missing.pem"),
        "{err}"
    );
}
