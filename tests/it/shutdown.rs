//! SIGTERM under load, on the real binary: readiness goes false, every event answered 200 is in Kafka
//! afterwards, and the process exits 0.

use crate::support;

use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_loses_nothing_that_was_answered_200() {
    let _measured = support::MEASURED.lock().await;
    let bootstrap = kafka();
    let topic = unique("sigterm");
    create_topic(&bootstrap, &topic).await;
    let (ingress, admin) = (free_port(), free_port());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("relay.toml");
    std::fs::write(
        &path,
        format!(
            r#"
[ingress]
listen = "127.0.0.1:{ingress}"
[ingress.auth]
bearer_tokens = ["${{TRIGGER_RELAY_TEST_TOKEN}}"]
[admin]
listen = "127.0.0.1:{admin}"
[delivery]
ack = "accepted"
shutdown_grace_ms = 30000
[log]
format = "json"
[sinks.kafka.main]
bootstrap_servers = "{bootstrap}"
linger_ms = 20
{}"#,
            kafka_subscription("sub", CREATED, &topic)
        ),
    )
    .unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_trigger-relay"))
        .arg("--config")
        .arg(&path)
        .env(
            "TRIGGER_RELAY_TEST_TOKEN",
            "load-token-0123456789abcdef0123456789",
        )
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let admin_addr: std::net::SocketAddr = format!("127.0.0.1:{admin}").parse().unwrap();
    let ingress_addr: std::net::SocketAddr = format!("127.0.0.1:{ingress}").parse().unwrap();
    eventually("relay ready", Duration::from_secs(30), || async {
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build_http::<http_body_util::Full<bytes::Bytes>>();
        let uri: http::Uri = format!("http://{admin_addr}/readyz").parse().unwrap();
        matches!(client.get(uri).await, Ok(r) if r.status() == 200)
    })
    .await;

    // Load: 4 connections posting until the relay stops answering.
    let answered = Arc::new(Mutex::new(Vec::<String>::new()));
    let (first_200s_tx, mut first_200s) = tokio::sync::mpsc::channel::<()>(1000);
    let mut load = Vec::new();
    for worker in 0..4 {
        let answered = answered.clone();
        let tx = first_200s_tx.clone();
        load.push(tokio::spawn(async move {
            for i in 0..2000 {
                let inv = format!("w{worker}-{i:05}");
                let r = tokio::time::timeout(
                    Duration::from_secs(10),
                    request_quiet(ingress_addr, &inv),
                )
                .await;
                match r {
                    Ok(Some(200)) => {
                        answered.lock().unwrap().push(inv);
                        let _ = tx.try_send(());
                    }
                    Ok(Some(s)) => panic!("unexpected status {s} during shutdown"),
                    Ok(None) | Err(_) => break, // connection refused or closed: the relay stopped accepting
                }
            }
        }));
    }
    drop(first_200s_tx);
    for _ in 0..200 {
        first_200s.recv().await.expect("load is running");
    }
    // Readiness, polled from before the signal until the admin listener closes (it closes last).
    // The signal goes only after the poller's first answer (on a loaded machine the task may start late).
    let (polled_tx, polled_rx) = tokio::sync::oneshot::channel::<()>();
    let readiness = tokio::spawn(async move {
        let mut seen = Vec::new();
        let mut polled = Some(polled_tx);
        loop {
            let s = support::reliability::readyz(admin_addr).await;
            if seen.last() != Some(&s) {
                seen.push(s);
            }
            if let Some(tx) = polled.take() {
                let _ = tx.send(());
            }
            if s.is_none() {
                return seen;
            }
        }
    });
    polled_rx.await.expect("readiness poller running");
    let pid = child.id().to_string();
    let rss = support::reliability::rss_kb(child.id());
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    for l in load {
        l.await.unwrap();
    }
    let status = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let log = String::from_utf8_lossy(&status.stderr);
    assert!(
        status.status.success(),
        "exit code 0 after SIGTERM; log:\n{log}"
    );
    assert!(
        log.contains("drained: every accepted event was delivered"),
        "{log}"
    );
    assert!(
        !log.contains("load-token-0123456789abcdef0123456789"),
        "the token never appears in logs"
    );

    let seen = readiness.await.unwrap();
    assert_eq!(
        seen,
        [Some(200), Some(503), None],
        "after SIGTERM /readyz answers 503 (draining) before the relay stops"
    );
    let answered = answered.lock().unwrap().clone();
    assert!(answered.len() >= 200, "load ran before the signal");
    let records = consume(&bootstrap, &topic, answered.len(), Duration::from_secs(60));
    let in_kafka: std::collections::HashSet<String> = records
        .iter()
        .map(|r| r.headers["invocation-id"].clone())
        .collect();
    let missing: Vec<_> = answered.iter().filter(|i| !in_kafka.contains(*i)).collect();
    let ids: Vec<String> = records
        .iter()
        .map(|r| r.headers["invocation-id"].clone())
        .collect();
    support::reliability::Row {
        name: "sigterm-under-load".into(),
        scenario: "SIGTERM to the binary under load (4 connections), Kafka, `accepted` mode".into(),
        sent: answered.len(),
        acknowledged: answered.len(),
        delivered: in_kafka.len(),
        lost: missing.len(),
        duplicated: support::reliability::tally(&ids).1,
        dropped_counted: 0,
        rss_peak_kb: rss,
        notes: "readiness 200 → 503 → closed; exit 0; requests after the listener closed are refused, not counted as sent".into(),
    }
    .write();
    assert!(
        missing.is_empty(),
        "{} of {} answered events are not in Kafka: {:?}",
        missing.len(),
        answered.len(),
        &missing[..missing.len().min(10)]
    );
}

/// One POST on a fresh connection; `None` when the relay does not accept it.
async fn request_quiet(addr: std::net::SocketAddr, inv: &str) -> Option<u16> {
    use http_body_util::Full;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .pool_max_idle_per_host(0)
        .build_http::<Full<bytes::Bytes>>();
    let req = http::Request::post(format!("http://{addr}/events/idn:identity-created"))
        .header("content-type", "application/json")
        .header(
            "authorization",
            "Bearer load-token-0123456789abcdef0123456789",
        )
        .body(Full::new(bytes::Bytes::from(example_body(
            "idn:identity-created",
            inv,
        ))))
        .unwrap();
    client.request(req).await.ok().map(|r| r.status().as_u16())
}

/// When the grace period ends with events still undelivered (the broker is unreachable), each one is
/// counted in the shutdown report (and logged with its tracking id), never silently dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_left_at_the_end_of_grace_are_counted_not_dropped() {
    // A port nothing listens on: librdkafka keeps the records and retries until told to stop.
    let dead = format!("127.0.0.1:{}", free_port());
    let relay = start(&format!(
        "{OPEN_ACCEPTED}\nshutdown_grace_ms = 1000\n{}",
        kafka_route(&dead, "sub", CREATED, "nowhere")
    ))
    .await;
    let n = 7;
    for i in 0..n {
        let body = example_body("idn:identity-created", &format!("left-{i}"));
        let r = post_event(&relay, "/events/idn:identity-created", body).await;
        assert_eq!(r.status, 200);
    }
    let report = relay.wait().await;
    assert_eq!(
        report.undelivered, n,
        "every accepted event is accounted for"
    );
}
