//! Fault and overload tests with real brokers, real load and the real binary; each writes its row of
//! `RELIABILITY.md` (see `tests/it/support/reliability.rs`).
//!
//! - Kafka broker SIGKILLed mid-load and restarted (a private tansu whose data survives restarts, on moto's
//!   S3), `delivered` mode: every event answered 2xx is in the topic afterwards.
//! - The same in `accepted` mode with an outage shorter than `delivery_timeout_ms`: nothing lost.
//! - `accepted` mode with an outage longer than `delivery_timeout_ms`, then a shutdown during a second outage:
//!   what is missing from the topic is exactly what `trigger_relay_sink_events_failed_total{reason}` and the
//!   shutdown report count.
//! - Overload at twice a slow sink's capacity: only 200 and 503 answers, each fast, bounded queue and memory,
//!   every accepted event delivered, and full acceptance again afterwards.
//!
//! tansu forgets idempotent producer ids across restarts, so these relays run with `enable_idempotence =
//! false` (see `tests/it/kafka_faults.rs`); duplicates are therefore possible and counted, not forbidden.

use crate::support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use support::reliability::*;
use support::*;

/// A private tansu whose data survives SIGKILL, and a fresh topic on it.
async fn persistent_topic(prefix: &str) -> (PrivateKafka, String) {
    let broker = PrivateKafka::start_persistent();
    let topic = unique(prefix);
    create_topic(&broker.bootstrap(), &topic).await;
    (broker, topic)
}

/// The ids in `topic`, read until at least `n` arrived or 60 s passed.
fn consume_answered(broker: &PrivateKafka, topic: &str, n: usize) -> Vec<String> {
    consume_ids(&broker.bootstrap(), topic, n, Duration::from_secs(60))
}

fn kafka_toml(bootstrap: &str, topic: &str, delivery: &str) -> String {
    format!(
        r#"
[ingress.auth]
none = true
[delivery]
{delivery}
[sinks.kafka.main]
bootstrap_servers = "{bootstrap}"
linger_ms = 1
enable_idempotence = false
options = {{ "reconnect.backoff.max.ms" = 500, "topic.metadata.refresh.interval.ms" = 1000 }}
{}"#,
        kafka_subscription("sub", CREATED, topic)
    )
}

const SINK: &str = r#"sink="kafka.main""#;

/// Run `workers` × `per_worker` POSTs; SIGKILL the broker after `kill_after` 2xx answers and restart it once
/// `restart_when` holds for the (2xx, other) counts. Returns the answers.
async fn load_with_outage(
    relay: &RelayProcess,
    broker: &mut PrivateKafka,
    prefix: &str,
    per_worker: usize,
    kill_after: usize,
    restart_when: impl Fn(&(usize, usize)) -> bool,
) -> Answers {
    let (tx, mut rx) = tokio::sync::watch::channel((0, 0));
    let stop = Arc::new(AtomicBool::new(false));
    let load = tokio::spawn(closed_loop(
        relay.ingress,
        prefix.to_string(),
        4,
        per_worker,
        Duration::from_secs(8),
        stop,
        tx,
    ));
    rx.wait_for(|(ok, _)| *ok >= kill_after)
        .await
        .expect("load runs");
    tokio::task::block_in_place(|| broker.kill());
    rx.wait_for(|c| restart_when(c))
        .await
        .expect("load runs during the outage");
    tokio::task::block_in_place(|| broker.restart());
    load.await.unwrap()
}

/// Wait until the relay finished every delivery it accepted (queue empty, every delivery counted).
async fn settle(relay: &RelayProcess, accepted: usize) {
    eventually(
        "every accepted event has an outcome",
        Duration::from_secs(120),
        || async {
            let depth = relay
                .metric("trigger_relay_queue_depth_events", &[SINK])
                .await;
            let sent = relay
                .metric("trigger_relay_sink_events_sent_total", &[SINK])
                .await;
            let failed = relay
                .metric("trigger_relay_sink_events_failed_total", &[SINK])
                .await;
            depth == 0.0 && (sent + failed) as usize >= accepted
        },
    )
    .await;
}

/// [`settle`] until `outcomes` events have one, read the topic, and [`check_no_loss`] (writing the row).
async fn settle_and_check(
    (relay, broker, topic): (&RelayProcess, &PrivateKafka, &str),
    a: &Answers,
    outcomes: usize,
    name: &str,
    scenario: &str,
) -> Row {
    settle(relay, outcomes).await;
    let rss = rss_kb(relay.pid());
    let ids = consume_answered(broker, topic, a.ok.len());
    check_no_loss(name, scenario, a, &ids, rss)
}

/// The sink counted no event as failed.
async fn assert_nothing_failed(relay: &RelayProcess) {
    assert_eq!(
        relay
            .metric("trigger_relay_sink_events_failed_total", &[SINK])
            .await,
        0.0
    );
}

fn check_no_loss(name: &str, scenario: &str, a: &Answers, ids: &[String], rss: Option<u64>) -> Row {
    assert!(
        a.other.is_empty(),
        "{name}: only 2xx and 503 answers, got {:?}",
        &a.other[..a.other.len().min(5)]
    );
    let (seen, duplicated) = tally(ids);
    let lost: Vec<_> = a.ok.iter().filter(|i| !seen.contains(*i)).collect();
    let row = Row {
        name: name.into(),
        scenario: scenario.into(),
        sent: a.sent(),
        acknowledged: a.ok.len(),
        delivered: seen.len(),
        lost: lost.len(),
        duplicated,
        dropped_counted: 0,
        rss_peak_kb: rss,
        notes: format!(
            "{} answered 503 (of which {} delivered later); slowest answer {} ms",
            a.unavailable.len(),
            a.unavailable.iter().filter(|i| seen.contains(*i)).count(),
            a.slowest.as_millis()
        ),
    };
    row.write();
    assert!(
        lost.is_empty(),
        "{name}: {} events answered 2xx are not in the topic: {:?}",
        lost.len(),
        &lost[..lost.len().min(10)]
    );
    row
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_sigkill_mid_load_delivered_mode_loses_nothing_answered_2xx() {
    let _measured = support::MEASURED.lock().await;
    let (mut broker, topic) = persistent_topic("kill-delivered").await;
    let relay = RelayProcess::start(&kafka_toml(
        &broker.bootstrap(),
        &topic,
        "ack = \"delivered\"\nack_timeout_ms = 2000",
    ))
    .await;
    // Killed after 150 acknowledged events; restarted once 8 requests were answered 503 (each after
    // ack_timeout_ms): the outage is seen by the clients.
    let a = load_with_outage(&relay, &mut broker, "kd", 100, 150, |(_, bad)| *bad >= 8).await;
    assert!(
        a.unavailable.len() >= 8,
        "the outage answered 503: {}",
        a.unavailable.len()
    );
    let row = settle_and_check(
        (&relay, &broker, &topic),
        &a,
        a.sent(),
        "kafka-sigkill-delivered",
        "Kafka broker SIGKILLed mid-load and restarted, `delivered` mode, 4 connections",
    )
    .await;
    // In delivered mode a 503 means "not acknowledged yet": the event stays queued and is delivered later.
    assert_eq!(
        row.delivered,
        a.sent(),
        "every event sent arrives in the end"
    );
    assert_nothing_failed(&relay).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_sigkill_mid_load_accepted_mode_outage_shorter_than_delivery_timeout() {
    let _measured = support::MEASURED.lock().await;
    let (mut broker, topic) = persistent_topic("kill-accepted").await;
    let relay = RelayProcess::start(&kafka_toml(
        &broker.bootstrap(),
        &topic,
        "ack = \"accepted\"\ndelivery_timeout_ms = 120000",
    ))
    .await;
    // Killed after 150 accepted events, restarted after 150 more were accepted while it was down.
    let a = load_with_outage(&relay, &mut broker, "ka", 100, 150, |(ok, _)| *ok >= 300).await;
    assert!(a.unavailable.is_empty(), "accepted mode queues: no 503");
    settle_and_check(
        (&relay, &broker, &topic),
        &a,
        a.ok.len(),
        "kafka-sigkill-accepted",
        "Kafka broker SIGKILLed mid-load and restarted within `delivery_timeout_ms`, `accepted` mode",
    )
    .await;
    assert_nothing_failed(&relay).await;
}

/// Outage longer than `delivery_timeout_ms`, then a second outage across shutdown: the events missing from the
/// topic are exactly those counted as failed (`timed_out`) plus those the shutdown report counts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_outage_beyond_delivery_timeout_drops_exactly_what_is_counted() {
    let _measured = support::MEASURED.lock().await;
    let (mut broker, topic) = persistent_topic("kill-timeout").await;
    let relay = start(&kafka_toml(
        &broker.bootstrap(),
        &topic,
        "ack = \"accepted\"\nack_timeout_ms = 2000\ndelivery_timeout_ms = 3000\nshutdown_grace_ms = 1000",
    ))
    .await;
    wait_ready(&relay).await;
    let mut acknowledged = Vec::new();
    let post_n = |prefix: &'static str, n: usize| {
        let relay = &relay;
        async move {
            let mut ok = Vec::new();
            for i in 0..n {
                let inv = format!("{prefix}-{i:03}");
                let r = post_event(
                    relay,
                    "/events/idn:identity-created",
                    example_body("idn:identity-created", &inv),
                )
                .await;
                assert_eq!(r.status, 200, "accepted mode answers once queued");
                ok.push(inv);
            }
            ok
        }
    };
    let sent = |relay: &trigger_relay::Relay| {
        let relay = relay.admin_addr();
        async move { metric_at(relay, "trigger_relay_sink_events_sent_total", &[SINK]).await }
    };
    // 1. Broker up: 20 delivered.
    acknowledged.extend(post_n("up1", 20).await);
    eventually("20 sent", Duration::from_secs(30), || async {
        sent(&relay).await == 20.0
    })
    .await;
    // 2. Broker down longer than delivery_timeout_ms: 30 accepted, then each times out and is counted.
    broker.kill();
    acknowledged.extend(post_n("down1", 30).await);
    eventually("30 timed out", Duration::from_secs(60), || async {
        metric(
            &relay,
            "trigger_relay_sink_events_failed_total",
            &[SINK, r#"reason="timed_out""#],
        )
        .await
            == 30.0
    })
    .await;
    // 3. Back up: 20 more delivered.
    tokio::task::block_in_place(|| broker.restart());
    acknowledged.extend(post_n("up2", 20).await);
    eventually("40 sent", Duration::from_secs(60), || async {
        sent(&relay).await == 40.0
    })
    .await;
    // 4. Down again, 10 accepted, shutdown with a grace period shorter than delivery_timeout_ms.
    broker.kill();
    acknowledged.extend(post_n("down2", 10).await);
    let failed = metric(&relay, "trigger_relay_sink_events_failed_total", &[SINK]).await as usize;
    relay.shutdown();
    let report = relay.wait().await;
    assert_eq!(failed, 30, "only the first outage's events timed out");
    assert_eq!(
        report.undelivered, 10,
        "the shutdown report counts the second outage's events"
    );
    tokio::task::block_in_place(|| broker.restart());
    let ids = consume_answered(&broker, &topic, 40);
    let (seen, duplicated) = tally(&ids);
    let missing: Vec<&String> = acknowledged.iter().filter(|i| !seen.contains(*i)).collect();
    let row = Row {
        name: "kafka-outage-beyond-timeout".into(),
        scenario: "Kafka down longer than `delivery_timeout_ms` (3 s), then down across shutdown, `accepted` mode"
            .into(),
        sent: acknowledged.len(),
        acknowledged: acknowledged.len(),
        delivered: seen.len(),
        lost: missing.len() - (failed + report.undelivered).min(missing.len()),
        duplicated,
        dropped_counted: failed + report.undelivered,
        rss_peak_kb: None,
        notes: format!(
            "{failed} counted in sink_events_failed_total{{reason=\"timed_out\"}}, {} in the shutdown report",
            report.undelivered
        ),
    };
    row.write();
    assert_eq!(
        missing.len(),
        failed + report.undelivered,
        "missing from the topic: exactly what the metrics and the report count; missing: {missing:?}"
    );
    assert!(
        missing.iter().all(|i| i.starts_with("down")),
        "only events accepted during an outage are missing: {missing:?}"
    );
}

/// A webhook that takes `delay` per request and records each invocation id.
async fn slow_webhook(
    delay: Duration,
) -> (std::net::SocketAddr, Arc<std::sync::Mutex<Vec<String>>>) {
    use http_body_util::BodyExt;
    let got = Arc::new(std::sync::Mutex::new(Vec::new()));
    let g = got.clone();
    let (addr, _task) = serve(move |req: http::Request<hyper::body::Incoming>| {
        let g = g.clone();
        async move {
            let body = req.into_body().collect().await.unwrap().to_bytes();
            tokio::time::sleep(delay).await;
            let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
            if let Some(id) = v["_metadata"]["invocationId"].as_str() {
                g.lock().unwrap().push(id.to_string());
            }
            http::Response::new(http_body_util::Full::new(bytes::Bytes::new()))
        }
    })
    .await;
    (addr, got)
}

/// Twice a slow sink's capacity for 5 s: every answer is 200 or 503 and fast, the queue and the process stay
/// bounded, every accepted event is delivered, and afterwards the relay accepts a full queue again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overload_at_twice_capacity_sheds_with_503_and_recovers() {
    let _measured = support::MEASURED.lock().await;
    // Capacity: 2 requests in flight × 10 ms each ≈ 200 events/s. Offered: 400/s, open loop.
    let (hook, got) = slow_webhook(Duration::from_millis(10)).await;
    let queue = 50;
    let relay = RelayProcess::start(&format!(
        r#"
{LOOPBACK_HOOKS}
[delivery]
ack = "accepted"
[sinks.http]
max_in_flight = 2
[sinks.http.queue]
max_events = {queue}
max_bytes = 1048576
{}"#,
        http_subscription("hook", CREATED, &format!("http://{hook}/hook"))
    ))
    .await;
    let pid = relay.pid();
    let ingress = relay.ingress;
    let admin = relay.admin;
    let done = Arc::new(AtomicBool::new(false));
    // Sampler: RSS and queue depth while the overload runs.
    let sampler = {
        let done = done.clone();
        tokio::spawn(async move {
            let (mut rss_peak, mut depth_peak) = (0u64, 0f64);
            while !done.load(Ordering::Relaxed) {
                rss_peak = rss_peak.max(rss_kb(pid).unwrap_or(0));
                depth_peak = depth_peak.max(
                    metric_at(
                        admin,
                        "trigger_relay_queue_depth_events",
                        &[r#"sink="http""#],
                    )
                    .await,
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            (rss_peak, depth_peak)
        })
    };
    // At most 64 requests in flight (64 keep-alive connections): the relay answers in microseconds, so this
    // does not limit the offered rate, and it keeps both processes far from the file descriptor limit.
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .pool_max_idle_per_host(64)
        .build_http::<http_body_util::Full<bytes::Bytes>>();
    let permits = Arc::new(tokio::sync::Semaphore::new(64));
    let mut tick = tokio::time::interval(Duration::from_micros(2500));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut inflight = Vec::new();
    for n in 0..2000 {
        tick.tick().await;
        let client = client.clone();
        let inv = format!("ov-{n:05}");
        let permit = permits.clone().acquire_owned().await.unwrap();
        inflight.push(tokio::spawn(async move {
            let (r, t) = post(&client, ingress, &inv, Duration::from_secs(5)).await;
            drop(permit);
            (inv, r, t)
        }));
    }
    let mut a = Answers::default();
    for t in inflight {
        let (inv, r, took) = t.await.unwrap();
        a.slowest = a.slowest.max(took);
        match r {
            Ok(200) => a.ok.push(inv),
            Ok(503) => a.unavailable.push(inv),
            Ok(s) => a.other.push((inv, format!("status {s}"))),
            Err(e) => a.other.push((inv, e)),
        }
    }
    eprintln!(
        "overload: {} ok, {} shed, {} other",
        a.ok.len(),
        a.unavailable.len(),
        a.other.len()
    );
    done.store(true, Ordering::Relaxed);
    let (rss_peak, depth_peak) = sampler.await.unwrap();
    assert!(
        a.other.is_empty(),
        "only 200 and 503: {:?}",
        &a.other[..a.other.len().min(5)]
    );
    assert!(!a.unavailable.is_empty(), "the overload was shed with 503");
    assert!(
        a.slowest < Duration::from_secs(2),
        "no answer waits on the sink: slowest {:?}",
        a.slowest
    );
    assert!(depth_peak <= queue as f64, "queue bounded: {depth_peak}");
    assert!(rss_peak < 256 * 1024, "memory bounded: {rss_peak} KiB");
    let shed = relay
        .metric("trigger_relay_ingress_shed_requests_total", &[])
        .await;
    assert_eq!(
        shed as usize,
        a.unavailable.len(),
        "every 503 counted as shed"
    );
    // Recovery: the queue drains, then takes a full queue's worth of events at once, twice.
    let mut recovered = Vec::new();
    for round in 0..2 {
        eventually("queue drained", Duration::from_secs(60), || async {
            relay.metric("trigger_relay_queue_depth_events", &[]).await == 0.0
        })
        .await;
        for i in 0..queue {
            let inv = format!("after-{round}-{i:03}");
            let (r, _) = post(&client, ingress, &inv, Duration::from_secs(5)).await;
            assert_eq!(
                r,
                Ok(200),
                "recovered: a drained queue accepts {queue} events ({inv})"
            );
            recovered.push(inv);
        }
    }
    let expected = a.ok.len() + recovered.len();
    eventually(
        "every accepted event at the webhook",
        Duration::from_secs(60),
        || async { got.lock().unwrap().len() >= expected },
    )
    .await;
    let delivered = got.lock().unwrap().clone();
    let (seen, duplicated) = tally(&delivered);
    let lost =
        a.ok.iter()
            .chain(&recovered)
            .filter(|i| !seen.contains(*i))
            .count();
    Row {
        name: "overload-2x".into(),
        scenario: "2× a slow HTTP sink's capacity for 5 s (open loop, 400 req/s), queue of 50, then recovery"
            .into(),
        sent: a.sent() + recovered.len(),
        acknowledged: expected,
        delivered: seen.len(),
        lost,
        duplicated,
        dropped_counted: 0,
        rss_peak_kb: Some(rss_peak),
        notes: format!(
            "{} answered 503 (shed); slowest answer {} ms; queue depth peak {depth_peak}",
            a.unavailable.len(),
            a.slowest.as_millis()
        ),
    }
    .write();
    assert_eq!(lost, 0, "every accepted event is delivered");
    assert!(
        seen.iter().all(|i| !a.unavailable.contains(i)),
        "nothing answered 503 was delivered"
    );
}
