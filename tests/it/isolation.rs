//! Per-destination isolation: a destination that never answers fills only its own queue; events for another
//! destination keep flowing and its queue stays empty.

use crate::support;

use std::time::Duration;

use futures_util::StreamExt;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocked_destination_does_not_hold_up_another() {
    let server = nats();
    let nowhere = format!("127.0.0.1:{}", free_port());
    let subject = unique("iso");
    let (_client, mut sub) = nats_subscriber(&server, &subject).await;
    let relay = start(&format!(
        r#"
{OPEN_ACCEPTED}
shutdown_grace_ms = 200
[sinks.kafka.blocked]
bootstrap_servers = "{nowhere}"
[sinks.kafka.blocked.queue]
max_events = 1000
{}{}{}"#,
        nats_sink("ok", &server),
        kafka_subscription("to blocked kafka", CREATED, "t"),
        nats_subscription("to nats", "idn:identity-deleted", &subject)
    ))
    .await;
    for i in 0..50 {
        let blocked = post_example(&relay, CREATED, &format!("k{i}")).await;
        assert_eq!(blocked.status, 200);
        let ok = post_example(&relay, "idn:identity-deleted", &format!("n{i}")).await;
        assert_eq!(ok.status, 200);
    }
    for i in 0..50 {
        let m = tokio::time::timeout(Duration::from_secs(10), sub.next())
            .await
            .expect("NATS keeps delivering")
            .unwrap();
        let inv = m
            .headers
            .as_ref()
            .and_then(|h| h.get("invocation-id"))
            .map(|v| v.to_string());
        assert_eq!(inv, Some(format!("n{i}")));
    }
    eventually(
        "the NATS queue drained",
        Duration::from_secs(10),
        || async {
            metric(
                &relay,
                "trigger_relay_queue_depth_events",
                &["sink=\"nats.ok\""],
            )
            .await
                == 0.0
        },
    )
    .await;
    assert_eq!(
        metric(
            &relay,
            "trigger_relay_queue_depth_events",
            &["sink=\"kafka.blocked\""]
        )
        .await,
        50.0,
        "the blocked destination holds only its own events"
    );
    relay.shutdown();
    assert_eq!(
        relay.wait().await.undelivered,
        50,
        "shutdown reports the blocked destination's events"
    );
}

/// A sink worker that dies (a panic, injected here with the `fault-injection` failpoint) fails `/healthz` with
/// its name, so the liveness probe restarts the pod; `/readyz` is 503 and its subscriptions get 503, while another
/// sink's keep flowing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_sink_worker_fails_the_liveness_probe() {
    if !cfg!(feature = "fault-injection") {
        panic!("this test needs the failpoint: run `cargo test --features fault-injection` (scripts/test does)");
    }
    let relay = support::reliability::RelayProcess::spawn(
        "[ingress.auth]\nnone = true\n[[subscriptions]]\nname = \"out\"\ntriggerId = \"idn:identity-created\"\ntype = \"STDOUT\"\n\
         [[subscriptions]]\nname = \"drop\"\ntriggerId = \"idn:identity-deleted\"\ntype = \"DISCARD\"\n",
        &[("TRIGGER_RELAY_FAULT_PANIC_SINK", "stdout")],
    );
    let admin = relay.admin;
    let get = |path: &'static str| async move {
        let r = request("GET", admin, path, &[], Vec::new()).await;
        (r.status, String::from_utf8_lossy(&r.body).into_owned())
    };
    eventually(
        "the admin listener",
        Duration::from_secs(30),
        || async move { support::reliability::readyz(admin).await.is_some() },
    )
    .await;
    eventually("/healthz fails", Duration::from_secs(30), || async move {
        get("/healthz").await.0 == 503
    })
    .await;
    let health = get("/healthz").await;
    assert!(
        health.1.contains("sink worker stopped: stdout"),
        "{}",
        health.1
    );
    let ready = get("/readyz").await;
    assert_eq!(ready.0, 503, "{}", ready.1);
    let post = |trigger: &'static str| {
        let ingress = relay.ingress;
        async move {
            request(
                "POST",
                ingress,
                &format!("/events/{trigger}"),
                &[("content-type", "application/json")],
                example_body(trigger, &unique("dead")),
            )
            .await
            .status
        }
    };
    assert_eq!(
        post("idn:identity-created").await,
        503,
        "its subscriptions are refused, not lost"
    );
    assert_eq!(
        post("idn:identity-deleted").await,
        200,
        "another sink keeps working"
    );
}
