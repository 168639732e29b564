//! NATS end to end against a real nats-server: core and JetStream, exact bytes and headers, dedupe by
//! invocation id, subject templates.

use crate::support;

use std::time::Duration;

use async_nats::jetstream;
use futures_util::StreamExt;
use support::*;

fn config(server: &str, subs: &str, ack: &str) -> String {
    format!("{}{}{subs}\n", open(ack), nats_sink("main", server))
}

fn assert_headers(h: &async_nats::HeaderMap, inv: &str, sub: &str) {
    let get = |k: &str| h.get(k).map(|v| v.as_str().to_string());
    assert_eq!(get("trigger-id").as_deref(), Some("idn:identity-created"));
    assert_eq!(get("invocation-id").as_deref(), Some(inv));
    assert_eq!(get("subscription-id").as_deref(), Some(sub));
    assert_eq!(get("content-type").as_deref(), Some("application/json"));
}

/// Core NATS in both ack modes: the template renders the trigger, bytes and headers arrive unchanged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn core_round_trip_with_subject_template() {
    for ack in ["accepted", "delivered"] {
        let server = nats();
        let prefix = unique("core");
        let client = async_nats::connect(&server).await.unwrap();
        let mut sub = client
            .subscribe(format!("{prefix}.identity-created"))
            .await
            .unwrap();
        client.flush().await.unwrap();
        let subs = format!(
            "[[subscriptions]]\nid = \"core-sub\"\nname = \"core\"\ntriggerId = \"idn:identity-created\"\ntype = \"NATS\"\nnatsConfig = {{ subject = \"{prefix}.{{trigger}}\" }}\n"
        );
        let relay = start(&config(&server, &subs, ack)).await;
        wait_ready(&relay).await;
        let body = example_body("idn:identity-created", "inv-core");
        assert_eq!(
            post_event(&relay, "/events/idn:identity-created", body.clone())
                .await
                .status,
            200,
            "{ack}"
        );
        let msg = tokio::time::timeout(Duration::from_secs(10), sub.next())
            .await
            .expect("message")
            .unwrap();
        assert_eq!(&msg.payload[..], &body[..], "{ack}: exact bytes");
        assert_headers(
            msg.headers.as_ref().expect("headers"),
            "inv-core",
            "core-sub",
        );
        relay.shutdown();
        assert_eq!(relay.wait().await.undelivered, 0);
    }
}

/// JetStream: the stream acknowledges; a replayed invocation id is stored once (Nats-Msg-Id).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jetstream_round_trip_and_dedupe() {
    let server = nats();
    let prefix = unique("js");
    let stream_name = prefix.replace('-', "_");
    let client = async_nats::connect(&server).await.unwrap();
    let js = jetstream::new(client);
    let mut stream = js
        .create_stream(jetstream::stream::Config {
            name: stream_name.clone(),
            subjects: vec![format!("{prefix}.>")],
            ..Default::default()
        })
        .await
        .unwrap();
    let subs = format!(
        "[[subscriptions]]\nid = \"js-sub\"\nname = \"js\"\ntriggerId = \"idn:identity-created\"\ntype = \"NATS\"\nnatsConfig = {{ subject = \"{prefix}.{{trigger}}\", jetstream = true, expectedStream = \"{stream_name}\" }}\n"
    );
    let relay = start(&config(&server, &subs, "delivered")).await;
    wait_ready(&relay).await;
    let body = example_body("idn:identity-created", "inv-js-1");
    for _ in 0..2 {
        let r = post_event(&relay, "/events/idn:identity-created", body.clone()).await;
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    }
    let other = example_body("idn:identity-created", "inv-js-2");
    assert_eq!(
        post_event(&relay, "/events/idn:identity-created", other)
            .await
            .status,
        200
    );
    assert_eq!(
        stream.info().await.unwrap().state.messages,
        2,
        "the replay was dropped by the duplicate window"
    );
    let first = stream.get_raw_message(1).await.unwrap();
    assert_eq!(&first.payload[..], &body[..], "exact bytes");
    assert_eq!(first.subject.as_str(), format!("{prefix}.identity-created"));
    assert_headers(&first.headers, "inv-js-1", "js-sub");
    relay.shutdown();
    assert_eq!(relay.wait().await.undelivered, 0);
}

/// JetStream to a subject no stream holds is refused for good: 502 in delivered mode, counted as rejected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jetstream_without_a_stream_is_rejected() {
    let server = nats();
    let subject = unique("nostream");
    let subs = format!(
        "[[subscriptions]]\nid = \"lost\"\nname = \"lost\"\ntriggerId = \"idn:identity-created\"\ntype = \"NATS\"\nnatsConfig = {{ subject = \"{subject}\", jetstream = true }}\n"
    );
    let relay = start(&config(&server, &subs, "delivered")).await;
    // The destination check finds no stream: not ready, naming the subscription and what to do.
    wait_not_ready_with(
        &relay,
        "subscription `lost`: no JetStream stream holds the subject",
    )
    .await;
    let r = post_example(&relay, CREATED, "x").await;
    assert_eq!(r.status, 502, "{}", String::from_utf8_lossy(&r.body));
    let rejected = metric(
        &relay,
        "trigger_relay_sink_events_failed_total",
        &["subscription=\"lost\"", "reason=\"rejected\""],
    )
    .await;
    assert_eq!(rejected, 1.0);
    // Once a stream holds the subject, the next check (every 10 s) makes the relay ready, without a restart.
    let js = async_nats::jetstream::new(async_nats::connect(&server).await.unwrap());
    js.create_stream(async_nats::jetstream::stream::Config {
        name: unique("held").replace('-', "_"),
        subjects: vec![subject.clone()],
        ..Default::default()
    })
    .await
    .unwrap();
    wait_ready(&relay).await;
    relay.shutdown();
    relay.wait().await;
}

#[test]
fn subject_templates() {
    use trigger_relay::sinks::nats::render_subject;
    let ok = [
        (
            "isc.{trigger}",
            "idn:identity-created",
            "isc.identity-created",
        ),
        (
            "{trigger}.events",
            "idn:va-cluster-status-change",
            "va-cluster-status-change.events",
        ),
        ("fixed", "idn:identity-created", "fixed"),
        (
            "a.{trigger}",
            "custom.trigger name",
            "a.custom_trigger_name",
        ),
        ("a.{trigger}", "idn:x*y>z", "a.x_y_z"),
    ];
    for (t, trigger, want) in ok {
        assert_eq!(render_subject(t, trigger).as_deref(), Ok(want), "{t}");
    }
    for (t, why) in [
        ("", "empty"),
        ("a..b", "empty token"),
        ("a.*", "wildcard"),
        ("a.>", "wildcard"),
        ("a b", "white space"),
        ("a.{other}", "placeholder"),
    ] {
        let e = render_subject(t, "idn:identity-created").unwrap_err();
        assert!(e.contains(why), "{t}: {e}");
    }
}

/// JetStream server killed and restarted mid-stream, `delivered` mode: every event answered 200 is in the
/// stream afterwards, once (the retries after the restart are deduplicated by `Nats-Msg-Id`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jetstream_restart_mid_stream_loses_nothing_answered_200() {
    let _measured = support::MEASURED.lock().await;
    let store = tempfile::tempdir().unwrap();
    let mut server = PrivateNats::start(store.path());
    let client = async_nats::connect(server.url()).await.unwrap();
    jetstream::new(client)
        .create_stream(jetstream::stream::Config {
            name: "RESTART".into(),
            subjects: vec!["restart.>".into()],
            ..Default::default()
        })
        .await
        .unwrap();
    let subs = "[[subscriptions]]\nname = \"js\"\ntriggerId = \"idn:identity-created\"\ntype = \"NATS\"\nnatsConfig = { subject = \"restart.{trigger}\", jetstream = true }\n";
    let relay = start(&config(&server.url(), subs, "delivered").replace(
        "ack = \"delivered\"",
        "ack = \"delivered\"\nack_timeout_ms = 3000",
    ))
    .await;
    wait_ready(&relay).await;
    let mut answered = Vec::new();
    for i in 0..60 {
        if i == 20 {
            server.restart();
        }
        let inv = format!("restart-{i:03}");
        let r = post_example(&relay, CREATED, &inv).await;
        match r.status {
            200 => answered.push(inv),
            503 => {} // not acknowledged within ack_timeout_ms while the server was away: ISC was told
            s => panic!("unexpected {s}: {}", String::from_utf8_lossy(&r.body)),
        }
    }
    assert!(
        answered.len() >= 40,
        "most events were answered 200 ({})",
        answered.len()
    );
    let client = async_nats::connect(server.url()).await.unwrap();
    let mut stream = jetstream::new(client).get_stream("RESTART").await.unwrap();
    let n = stream.info().await.unwrap().state.messages;
    let mut stored = std::collections::HashSet::new();
    for seq in 1..=n {
        if let Ok(m) = stream.get_raw_message(seq).await {
            let inv = m
                .headers
                .get("invocation-id")
                .map(|v| v.to_string())
                .unwrap_or_default();
            assert!(stored.insert(inv.clone()), "{inv} stored twice");
        }
    }
    let missing: Vec<_> = answered.iter().filter(|i| !stored.contains(*i)).collect();
    support::reliability::Row {
        name: "nats-jetstream-restart".into(),
        scenario: "nats-server (JetStream) SIGKILLed and restarted mid-stream, `delivered` mode"
            .into(),
        sent: 60,
        acknowledged: answered.len(),
        delivered: stored.len(),
        lost: missing.len(),
        duplicated: 0, // asserted above: each invocation id is stored once (Nats-Msg-Id)
        dropped_counted: 0,
        rss_peak_kb: None,
        notes: format!(
            "{} answered 503 within the outage (ISC told); retries deduplicated by Nats-Msg-Id",
            60 - answered.len()
        ),
    }
    .write();
    assert!(
        missing.is_empty(),
        "answered 200 but not in the stream: {missing:?}"
    );
    relay.shutdown();
    relay.wait().await;
}
