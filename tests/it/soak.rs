//! Soak: the relay binary under steady load (Kafka and DISCARD subscriptions on every event), sampling its
//! resident memory and open file descriptors from `/proc/<pid>`. By default a 10-second version runs with the
//! suite; `scripts/soak [MINUTES]` (`TRIGGER_RELAY_SOAK_MINUTES`) runs it for minutes and prints each sample.
//!
//! Checked: every answer is 200; nothing lost; after warm-up, open descriptors stay flat (± a few keep-alive
//! connections) and memory does not keep growing (the last third's peak is within 32 MiB of the first third's).

use crate::support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::reliability::*;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak_rss_and_fds_stay_flat() {
    let _measured = support::MEASURED.lock().await;
    let minutes: Option<f64> = std::env::var("TRIGGER_RELAY_SOAK_MINUTES")
        .ok()
        .map(|m| m.parse().expect("TRIGGER_RELAY_SOAK_MINUTES is a number"));
    let (run, every) = match minutes {
        Some(m) => (Duration::from_secs_f64(m * 60.0), Duration::from_secs(10)),
        None => (Duration::from_secs(10), Duration::from_secs(1)),
    };
    let bootstrap = kafka();
    let topic = unique("soak");
    create_topic(&bootstrap, &topic).await;
    let relay = RelayProcess::start(&format!(
        r#"
{OPEN_ACCEPTED}
{}{}"#,
        kafka_route(&bootstrap, "kafka", CREATED, &topic),
        subscription("discard", CREATED, "DISCARD", "")
    ))
    .await;
    let pid = relay.pid();
    let stop = Arc::new(AtomicBool::new(false));
    let (tx, _rx) = tokio::sync::watch::channel((0, 0));
    let load = tokio::spawn(closed_loop(
        relay.ingress,
        "soak".into(),
        4,
        usize::MAX,
        Duration::from_secs(10),
        stop.clone(),
        tx,
    ));
    let t0 = Instant::now();
    let mut samples: Vec<(u64, u64, usize, f64)> = Vec::new(); // (s, rss KiB, fds, sent)
    while t0.elapsed() < run {
        tokio::time::sleep(every).await;
        let s = (
            t0.elapsed().as_secs(),
            rss_kb(pid).expect("relay alive"),
            open_fds(pid).expect("relay alive"),
            relay
                .metric(
                    "trigger_relay_sink_events_sent_total",
                    &[r#"sink="kafka.main""#],
                )
                .await,
        );
        eprintln!(
            "soak t={:>5}s rss={:>7} KiB fds={:>4} kafka_sent={}",
            s.0, s.1, s.2, s.3
        );
        samples.push(s);
    }
    stop.store(true, Ordering::Relaxed);
    let a = load.await.unwrap();
    assert!(
        a.other.is_empty() && a.unavailable.is_empty(),
        "every answer is 200: {:?}",
        &a.other[..a.other.len().min(5)]
    );
    eventually(
        "every event sent to Kafka",
        Duration::from_secs(60),
        || async {
            relay
                .metric(
                    "trigger_relay_sink_events_sent_total",
                    &[r#"sink="kafka.main""#],
                )
                .await as usize
                >= a.ok.len()
        },
    )
    .await;
    let failed = relay
        .metric("trigger_relay_sink_events_failed_total", &[])
        .await;
    let third = (samples.len() / 3).max(1);
    let first = &samples[..third];
    let last = &samples[samples.len() - third..];
    let peak = |s: &[(u64, u64, usize, f64)]| s.iter().map(|x| x.1).max().unwrap();
    let fds = |s: &[(u64, u64, usize, f64)]| s.iter().map(|x| x.2).max().unwrap();
    let rss_peak = peak(&samples);
    Row {
        name: if minutes.is_some() {
            "soak".into()
        } else {
            "soak-short".into()
        },
        scenario: format!(
            "steady load for {} s (4 connections, Kafka + DISCARD per event), samples every {} s",
            run.as_secs(),
            every.as_secs()
        ),
        sent: a.sent(),
        acknowledged: a.ok.len(),
        delivered: a.ok.len() - failed as usize,
        lost: failed as usize,
        duplicated: 0,
        dropped_counted: 0,
        rss_peak_kb: Some(rss_peak),
        notes: format!(
            "RSS first third peak {} KiB, last third peak {} KiB; fds {} → {}",
            peak(first),
            peak(last),
            fds(first),
            fds(last)
        ),
    }
    .write();
    assert_eq!(failed, 0.0, "nothing failed");
    assert!(
        fds(last) <= fds(first) + 8,
        "open file descriptors grow: {} → {}",
        fds(first),
        fds(last)
    );
    assert!(
        peak(last) <= peak(first) + 32 * 1024,
        "memory keeps growing: {} → {} KiB",
        peak(first),
        peak(last)
    );
}
