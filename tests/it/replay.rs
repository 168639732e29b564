//! `trigger-relay replay` against dead letters written by a real failure: a webhook rejects events (400 and
//! 413, final refusals), the relay writes them to a Kafka topic or a JetStream subject, the webhook then
//! accepts, and the real binary replays them. Checked: every selected event arrives once, with `replay: true`
//! and `replay-of` naming the original tracking id; `--reason`, `--since`/`--until`, `--limit` and
//! `--subscription` select what they say; `--dry-run` sends nothing; an event whose subscription was removed
//! is reported as orphaned (and the exit code says so); a replay rejected again is reported and not
//! dead-lettered a second time; a dead letter that cannot be read exits 3.

use crate::support;

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, SystemTime};

use support::webhook::{Received, Webhook};
use support::*;

const DELETED: &str = "idn:identity-deleted";

/// The relay's config: `hook` (identity-created) and, while `with_gone`, `gone` (identity-deleted), both
/// webhooks with `dead_letter`; `other` (identity-created, no dead letter) only in the replay's config.
fn config(kafka: &str, nats: &str, hook: &Webhook, dead_letter: &str, original: bool) -> String {
    let dead_letter = format!("deadLetter = {dead_letter}\n");
    let to_hook = |name: &str, trigger: &str| {
        http_subscription(name, trigger, &hook.url(&format!("/{name}")))
    };
    let mut c = format!(
        "{OPEN_DELIVERED}\ndelivery_timeout_ms = 5000\n[sinks.http.egress]\nallow_cidrs = [\"127.0.0.0/8\"]\n{}{}",
        kafka_sink("main", kafka),
        nats_sink("main", nats)
    );
    c += &(to_hook("hook", CREATED) + &dead_letter);
    if original {
        c += &(to_hook("gone", DELETED) + &dead_letter);
    } else {
        c += &to_hook("other", CREATED);
    }
    c
}

/// The relay that meets the failures: [`config`] with `gone`, started and ready.
async fn start_original(
    kafka: &str,
    nats: &str,
    hook: &Webhook,
    dead_letter: &str,
) -> trigger_relay::Relay {
    let relay = start(&config(kafka, nats, hook, dead_letter, true)).await;
    wait_ready(&relay).await;
    relay
}

/// The replay's config file ([`config`] without `gone`, with `other`), in a directory the caller keeps.
fn replay_config(
    kafka: &str,
    nats: &str,
    hook: &Webhook,
    dead_letter: &str,
) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("relay.toml");
    std::fs::write(&file, config(kafka, nats, hook, dead_letter, false)).unwrap();
    (dir, file)
}

/// The replay's report says `what`.
fn says(r: &Run, what: &str) {
    assert!(r.stdout.contains(what), "{}", r.stdout);
}

/// One event posted and refused: its invocation id, trigger, body and the tracking id of the 502 answer.
#[derive(Debug, Clone)]
struct Posted {
    invocation: String,
    body: Vec<u8>,
    tracking: String,
}

async fn post_refused(relay: &trigger_relay::Relay, trigger: &str) -> Posted {
    let invocation = unique("inv");
    let body = example_body(trigger, &invocation);
    let r = post_event(relay, &format!("/events/{trigger}"), body.clone()).await;
    assert_eq!(r.status, 502, "{}", String::from_utf8_lossy(&r.body));
    Posted {
        invocation,
        body,
        tracking: r.headers["x-tracking-id"].to_str().unwrap().to_string(),
    }
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

/// The real binary: `trigger-relay replay --config <file> <args>`.
async fn replay(config: &Path, args: &[&str]) -> Run {
    let config = config.to_path_buf();
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_trigger-relay"))
            .arg("replay")
            .arg("--config")
            .arg(&config)
            .args(&args)
            .env_remove("RUST_LOG")
            .output()
            .expect("run trigger-relay replay");
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    })
    .await
    .unwrap()
}

fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_nanos(t).to_string()
}

/// The replayed requests on `path` since `from`, each checked against the event it replays.
fn replays_of(got: &[Received], from: usize, path: &str, posted: &[Posted]) -> Vec<String> {
    let by_invocation: HashMap<&str, &Posted> =
        posted.iter().map(|p| (p.invocation.as_str(), p)).collect();
    let mut seen = Vec::new();
    for r in got[from..].iter().filter(|r| r.path == path) {
        let inv = r.headers["invocation-id"].to_str().unwrap();
        let p = by_invocation
            .get(inv)
            .unwrap_or_else(|| panic!("a replay of an event not posted: {inv}"));
        assert_eq!(&r.body[..], &p.body[..], "the exact payload");
        assert_eq!(r.headers["replay"], "true");
        assert_eq!(
            r.headers["replay-of"].to_str().unwrap(),
            p.tracking,
            "replay-of names the original tracking id"
        );
        seen.push(inv.to_string());
    }
    seen.sort();
    seen
}

fn sorted(p: &[Posted]) -> Vec<String> {
    let mut v: Vec<String> = p.iter().map(|p| p.invocation.clone()).collect();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_dead_letters_are_replayed_once_by_reason_and_time() {
    let (bootstrap, nats_url) = (kafka(), nats());
    let dlq = unique("replay-dlq");
    create_topic(&bootstrap, &dlq).await;
    let hook = Webhook::start().await;
    let dead_letter = format!(r#"{{ kafkaConfig = {{ topic = "{dlq}" }} }}"#);
    // First 3 + 1 events rejected (400), the next 2 too large (413); the webhook accepts everything after.
    hook.script(&[
        (400, &[]),
        (400, &[]),
        (400, &[]),
        (400, &[]),
        (413, &[]),
        (413, &[]),
    ]);
    let relay = start_original(&bootstrap, &nats_url, &hook, &dead_letter).await;
    let mut rejected = Vec::new();
    for _ in 0..3 {
        rejected.push(post_refused(&relay, CREATED).await);
    }
    let gone = post_refused(&relay, DELETED).await;
    // Each 502 came after its dead letter was written: everything so far is at or before `between`.
    let between = SystemTime::now();
    // Kafka timestamps are milliseconds: the next records must be stamped after `between`'s millisecond.
    std::thread::sleep(Duration::from_millis(5));
    let mut too_large = Vec::new();
    for _ in 0..2 {
        too_large.push(post_refused(&relay, CREATED).await);
    }
    let records = {
        let (b, t) = (bootstrap.clone(), dlq.clone());
        tokio::task::spawn_blocking(move || consume(&b, &t, 6, Duration::from_secs(20)))
            .await
            .unwrap()
    };
    assert_eq!(records.len(), 6, "six dead letters");
    let reasons: Vec<&str> = records
        .iter()
        .map(|r| r.headers["dead-letter-reason"].as_str())
        .collect();
    assert_eq!(
        reasons,
        [
            "rejected",
            "rejected",
            "rejected",
            "rejected",
            "too_large",
            "too_large"
        ]
    );
    relay.shutdown();
    relay.wait().await;
    let originals = hook.received().len();
    assert_eq!(originals, 6);

    // The replay's config: `gone` was removed, `other` added.
    let (_dir, file) = replay_config(&bootstrap, &nats_url, &hook, &dead_letter);
    let from = format!("kafka.main:{dlq}");
    let (since, until) = (rfc3339(between), rfc3339(between));

    struct Case<'a> {
        args: Vec<&'a str>,
        code: i32,
        says: Vec<String>,
    }
    let dry_runs = [
        Case {
            args: vec!["--dry-run", "--since", &since],
            code: 0,
            // Kafka starts each partition at its first offset at `--since`'s millisecond (offsets by time), so
            // the last record before it may be read, and is then skipped by its time.
            says: vec!["selected 2, would send 2, orphaned 0".into()],
        },
        Case {
            args: vec!["--dry-run", "--reason", "rejected"],
            code: 1,
            says: vec![
                "selected 4, would send 3, orphaned 1, skipped 2 (reason 2, time 0".into(),
                format!("tracking-id {}", gone.tracking),
            ],
        },
        Case {
            args: vec![
                "--dry-run",
                "--reason",
                "rejected",
                "--reason",
                "too_large",
                "--limit",
                "2",
            ],
            code: 0,
            says: vec!["selected 2, would send 2".into()],
        },
        Case {
            args: vec!["--dry-run", "--reason", "timed_out"],
            code: 0,
            says: vec!["selected 0, would send 0".into()],
        },
    ];
    for c in &dry_runs {
        let mut args = vec!["--from", from.as_str()];
        args.extend(&c.args);
        let r = replay(&file, &args).await;
        assert_eq!(r.code, c.code, "{:?}\n{}\n{}", c.args, r.stdout, r.stderr);
        for s in &c.says {
            assert!(
                r.stdout.contains(s.as_str()),
                "{:?}: {s:?} in\n{}",
                c.args,
                r.stdout
            );
        }
    }
    assert_eq!(hook.received().len(), originals, "a dry run sends nothing");

    // Real replays: the too-large ones after `between`, then everything up to `between`.
    let r = replay(
        &file,
        &["--from", &from, "--reason", "too_large", "--since", &since],
    )
    .await;
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    says(&r, "sent 2, failed 0, orphaned 0");
    let r = replay(&file, &["--from", &from, "--until", &until, "--rate", "50"]).await;
    assert_eq!(
        r.code, 1,
        "the orphan makes it incomplete\n{}\n{}",
        r.stdout, r.stderr
    );
    says(&r, "sent 3, failed 0, orphaned 1");
    assert!(
        r.stdout.contains(&format!(
            "orphaned  partition 0 offset 3  tracking-id {}",
            gone.tracking
        )),
        "the orphan is reported with its tracking id\n{}",
        r.stdout
    );
    // Every event delivered once: the binary waited for each outcome before it exited.
    let got = hook.received();
    let all: Vec<Posted> = rejected.iter().chain(&too_large).cloned().collect();
    assert_eq!(replays_of(&got, originals, "/hook", &all), sorted(&all));
    assert_eq!(got.len(), originals + 5, "nothing else was sent");

    // To a named subscription instead of the original one.
    let r = replay(
        &file,
        &[
            "--from",
            &from,
            "--since",
            &since,
            "--subscription",
            "other",
        ],
    )
    .await;
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let got = hook.received();
    assert_eq!(
        replays_of(&got, originals + 5, "/other", &too_large),
        sorted(&too_large)
    );
    assert_eq!(got.len(), originals + 7);

    // Arguments and sources that cannot work.
    let missing = format!("kafka.main:{}", unique("no-such-topic"));
    let core = format!("nats.main:{}", unique("core"));
    for (args, code, says) in [
        (vec!["--from", missing.as_str()], 3, "does not exist"),
        (
            vec!["--from", core.as_str()],
            3,
            "core NATS keeps no message",
        ),
        (
            vec!["--from", "kafka.nope:x"],
            2,
            "no [sinks.kafka] cluster `nope`",
        ),
        (
            vec!["--from", from.as_str(), "--subscription", "nope"],
            2,
            "--subscription `nope`",
        ),
        (
            vec!["--from", from.as_str(), "--reason", "bogus"],
            2,
            "bogus",
        ),
    ] {
        let r = replay(&file, &args).await;
        assert_eq!(r.code, code, "{args:?}\n{}\n{}", r.stdout, r.stderr);
        assert!(
            r.stderr.contains(says),
            "{args:?}: {says:?} in\n{}",
            r.stderr
        );
    }
    assert_eq!(hook.received().len(), originals + 7);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jetstream_dead_letters_are_replayed_once() {
    let (bootstrap, nats_url) = (kafka(), nats());
    let subject = format!("replay.{}", uuid::Uuid::new_v4().simple());
    let stream = format!("REPLAY_{}", uuid::Uuid::new_v4().simple());
    async_nats::jetstream::new(async_nats::connect(&nats_url).await.unwrap())
        .create_stream(async_nats::jetstream::stream::Config {
            name: stream.clone(),
            subjects: vec![subject.clone()],
            ..Default::default()
        })
        .await
        .unwrap();
    let hook = Webhook::start().await;
    let dead_letter =
        format!(r#"{{ natsConfig = {{ subject = "{subject}", jetstream = true }} }}"#);
    hook.script(&[(400, &[]), (400, &[]), (400, &[])]);
    let relay = start_original(&bootstrap, &nats_url, &hook, &dead_letter).await;
    let mut posted = Vec::new();
    for _ in 0..3 {
        posted.push(post_refused(&relay, CREATED).await);
    }
    relay.shutdown();
    relay.wait().await;
    let originals = hook.received().len();

    let (_dir, file) = replay_config(&bootstrap, &nats_url, &hook, &dead_letter);
    let from = format!("nats.main:{subject}");
    let r = replay(&file, &["--from", &from, "--dry-run"]).await;
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    says(&r, "read 3, selected 3, would send 3");
    let later = rfc3339(SystemTime::now() + Duration::from_secs(3600));
    let r = replay(&file, &["--from", &from, "--since", &later]).await;
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    says(&r, "read 0, selected 0, sent 0");
    assert_eq!(hook.received().len(), originals, "nothing sent yet");

    // A replay the webhook rejects again: reported and counted, not written to the dead letter a second time.
    hook.script(&[(400, &[])]);
    let r = replay(&file, &["--from", &from, "--limit", "1"]).await;
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    says(&r, "sent 0, failed 1, orphaned 0");
    assert!(
        r.stdout.contains(&format!(
            "failed    stream {stream} sequence 1  tracking-id {}",
            posted[0].tracking
        )),
        "{}",
        r.stdout
    );
    says(&r, "failed by reason: rejected 1");
    let originals = hook.received().len();

    let r = replay(&file, &["--from", &from, "--reason", "rejected"]).await;
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    says(&r, "read 3, selected 3, sent 3, failed 0, orphaned 0");
    let got = hook.received();
    assert_eq!(
        replays_of(&got, originals, "/hook", &posted),
        sorted(&posted)
    );
    assert_eq!(got.len(), originals + 3);
    // The stream still holds every dead letter, and only those: a replay removes nothing and adds nothing.
    let mut s = async_nats::jetstream::new(async_nats::connect(&nats_url).await.unwrap())
        .get_stream(&stream)
        .await
        .unwrap();
    assert_eq!(s.info().await.unwrap().state.messages, 3);
}
