//! End to end over HTTP into a real Kafka-compatible broker (tansu): exact bytes, headers, topic and key, in
//! both ack modes.

use crate::support;

use std::collections::HashMap;
use std::time::Duration;

use support::*;

struct Case {
    mode: &'static str,
    /// Send through `/events` with the trigger id only in `_metadata`, instead of `/events/{id}`.
    bare_path: bool,
}

/// Every GA FIRE_AND_FORGET trigger's ISC example, one subscription each, all to one topic.
async fn check(case: Case) {
    let bootstrap = kafka();
    let topic = unique("e2e");
    create_topic(&bootstrap, &topic).await;
    let triggers = ga_fire_and_forget();
    let mut toml = format!(
        "{}{}linger_ms = 1\n",
        open(case.mode),
        kafka_sink("main", &bootstrap)
    );
    for (i, t) in triggers.iter().enumerate() {
        toml.push_str(&format!(
            "[[subscriptions]]\nid = \"sub-{i}\"\nname = \"s{i}\"\ntriggerId = \"{t}\"\ntype = \"KAFKA\"\nkafkaConfig = {{ topic = \"{topic}\" }}\n"
        ));
    }
    let relay = start(&toml).await;
    let mut sent = HashMap::new();
    for (i, t) in triggers.iter().enumerate() {
        let inv = unique("inv");
        let body = example_body(t, &inv);
        let path = if case.bare_path {
            "/events".to_string()
        } else {
            format!("/events/{t}")
        };
        let r = post_event(&relay, &path, body.clone()).await;
        assert_eq!(r.status, 200, "{t}: {}", String::from_utf8_lossy(&r.body));
        assert!(
            r.body.is_empty(),
            "a FIRE_AND_FORGET answer has an empty body"
        );
        sent.insert(inv, (t.clone(), format!("sub-{i}"), body));
    }
    let records = consume(&bootstrap, &topic, sent.len(), Duration::from_secs(30));
    assert_eq!(
        records.len(),
        sent.len(),
        "every event is in the topic once"
    );
    for r in records {
        let inv = r
            .headers
            .get("invocation-id")
            .expect("invocation-id header")
            .clone();
        let (trigger, sub, body) = sent.remove(&inv).expect("a record we sent, once");
        assert_eq!(r.value, body, "payload bytes unchanged");
        assert_eq!(r.headers.get("trigger-id"), Some(&trigger));
        assert_eq!(r.headers.get("subscription-id"), Some(&sub));
        assert_eq!(
            r.headers.get("content-type").map(String::as_str),
            Some("application/json")
        );
        assert_eq!(
            r.key.as_deref(),
            Some(inv.as_bytes()),
            "default key is the invocation id"
        );
    }
    let sent_total = metric(
        &relay,
        "trigger_relay_sink_events_sent_total",
        &["sink=\"kafka.main\""],
    )
    .await;
    assert_eq!(sent_total as usize, triggers.len());
    relay.shutdown();
    assert_eq!(relay.wait().await.undelivered, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accepted_mode_delivers_every_ga_trigger_byte_for_byte() {
    check(Case {
        mode: "accepted",
        bare_path: false,
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivered_mode_delivers_every_ga_trigger_byte_for_byte() {
    check(Case {
        mode: "delivered",
        bare_path: true,
    })
    .await;
}

/// Keys from a JSON pointer, none, and fan-out of one event to several topics.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_and_fan_out() {
    let bootstrap = kafka();
    let (by_ptr, no_key, by_num) = (unique("key-ptr"), unique("key-none"), unique("key-num"));
    for t in [&by_ptr, &no_key, &by_num] {
        create_topic(&bootstrap, t).await;
    }
    let subs = subscriptions_on_created(&[
        (
            "by pointer",
            "KAFKA",
            &format!(r#"kafkaConfig = {{ topic = "{by_ptr}", key = "/identity/id" }}"#),
        ),
        (
            "no key",
            "KAFKA",
            &format!(r#"kafkaConfig = {{ topic = "{no_key}", key = "none" }}"#),
        ),
        (
            "number key",
            "KAFKA",
            &format!(
                "ackMode = \"accepted\"\nkafkaConfig = {{ topic = \"{by_num}\", key = \"/n\" }}"
            ),
        ),
    ]);
    let relay = start(&format!(
        "{OPEN_DELIVERED}\n{}{subs}",
        kafka_sink("main", &bootstrap)
    ))
    .await;
    let body = r#"{"identity":{"id":"2c918085","name":"W","type":"IDENTITY"},"n":42,"_metadata":{"triggerId":"idn:identity-created","invocationId":"i-1","triggerType":"fireAndForget"}}"#;
    assert_eq!(
        post_event(&relay, "/events/idn:identity-created", body)
            .await
            .status,
        200
    );
    let check = |topic: &str, key: Option<&[u8]>| {
        let r = consume(&bootstrap, topic, 1, Duration::from_secs(20));
        assert_eq!(r.len(), 1, "{topic}");
        assert_eq!(r[0].value, body.as_bytes());
        assert_eq!(r[0].key.as_deref(), key, "{topic}");
    };
    check(&by_ptr, Some(b"2c918085"));
    check(&no_key, None);
    check(&by_num, Some(b"42"));
    relay.shutdown();
    relay.wait().await;
}

/// Subscriptions with a JSONPath filter get only the events it selects; others on the same trigger get all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_select_events_per_subscription() {
    let bootstrap = kafka();
    let (filtered, all) = (unique("filtered"), unique("all"));
    create_topic(&bootstrap, &filtered).await;
    create_topic(&bootstrap, &all).await;
    let changed = "idn:identity-attributes-changed";
    let relay = start(&format!(
        r#"{OPEN_DELIVERED}
{}{}id = "only-engineering"
filter = "$.changes[?(@.attribute == 'department' && @.newValue =~ /eng.*/i)]"
{}"#,
        kafka_sink("main", &bootstrap),
        kafka_subscription("only engineering", changed, &filtered),
        kafka_subscription("everything", changed, &all)
    ))
    .await;
    let event = |inv: &str, dept: &str| {
        format!(
            r#"{{"identity":{{"id":"1","name":"a","type":"IDENTITY"}},"changes":[{{"attribute":"department","oldValue":"x","newValue":"{dept}"}}],"_metadata":{{"triggerId":"idn:identity-attributes-changed","invocationId":"{inv}","triggerType":"fireAndForget"}}}}"#
        )
    };
    for (inv, dept) in [
        ("i-eng", "Engineering"),
        ("i-sales", "Sales"),
        ("i-eng2", "ENG ops"),
    ] {
        assert_eq!(
            post_event(&relay, "/events", event(inv, dept)).await.status,
            200
        );
    }
    let ids = |topic: &str, n| {
        consume(&bootstrap, topic, n, Duration::from_secs(20))
            .into_iter()
            .map(|r| r.headers["invocation-id"].clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(ids(&filtered, 2), ["i-eng", "i-eng2"]);
    assert_eq!(ids(&all, 3), ["i-eng", "i-sales", "i-eng2"]);
    let m = |result: &'static str| {
        let only = &["subscription=\"only-engineering\""];
        metric_of_result(
            &relay,
            "trigger_relay_filter_evaluations_total",
            only,
            result,
        )
    };
    assert_eq!(
        (m("matched").await, m("not_matched").await, m("error").await),
        (2.0, 1.0, 0.0)
    );
    relay.shutdown();
    relay.wait().await;
}

#[test]
fn an_invalid_filter_is_a_config_error_with_its_position() {
    let e = trigger_relay::Config::from_toml(
        "[ingress.auth]\nnone = true\n[[subscriptions]]\nname = \"x\"\ntriggerId = \"idn:identity-created\"\ntype = \"STDOUT\"\nfilter = \"$[?(@.a == )]\"\n",
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.starts_with("subscriptions[0].filter: invalid JSONPath filter:")
            && e.contains("at position"),
        "{e}"
    );
}

/// `check-config --connect` asks the brokers: a topic the cluster does not have is exit 1 naming it; with the
/// topic created, exit 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_config_connect_finds_a_missing_topic() {
    let bootstrap = kafka();
    let topic = unique("connect");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("relay.toml");
    std::fs::write(
        &path,
        format!(
            "[ingress.auth]\nnone = true\n[sinks.kafka.main]\nbootstrap_servers = \"{bootstrap}\"\n\
             [[subscriptions]]\nname = \"typo\"\ntriggerId = \"idn:identity-created\"\ntype = \"KAFKA\"\n\
             kafkaConfig = {{ topic = \"{topic}\" }}\n"
        ),
    )
    .unwrap();
    let run = || check_config_connect(path.clone());
    let out = run().await;
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!(
            "subscription `typo`: the Kafka topic `{topic}` does not exist"
        )),
        "{err}"
    );
    create_topic(&bootstrap, &topic).await;
    let out = run().await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// With `[sinks.kafka.NAME.create_topics]` the relay creates a subscription's missing topic (with the partitions
/// asked for) instead of staying not ready, and delivers to it; `check-config --connect` still reports it
/// missing (a check creates nothing).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_topics_makes_a_missing_topic() {
    let bootstrap = kafka();
    let topic = unique("created");
    let toml = format!(
        "[ingress.auth]\nnone = true\n[delivery]\nack = \"delivered\"\n[sinks.kafka.main]\nbootstrap_servers = \"{bootstrap}\"\n\
         [sinks.kafka.main.create_topics]\npartitions = 2\n\
         [[subscriptions]]\nname = \"new topic\"\ntriggerId = \"idn:identity-created\"\ntype = \"KAFKA\"\n\
         kafkaConfig = {{ topic = \"{topic}\", key = \"none\" }}\n"
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("relay.toml");
    std::fs::write(&path, &toml).unwrap();
    let out = check_config_connect(path.clone()).await;
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let relay = start(&toml).await;
    wait_ready(&relay).await;
    let body = example_body("idn:identity-created", &unique("created"));
    let r = post_event(&relay, "/events/idn:identity-created", body.clone()).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let (b, t) = (bootstrap.clone(), topic.clone());
    let partitions = tokio::task::spawn_blocking(move || {
        use rdkafka::consumer::{BaseConsumer, Consumer};
        let c: BaseConsumer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", &b)
            .create()
            .unwrap();
        let m = c.fetch_metadata(Some(&t), Duration::from_secs(5)).unwrap();
        m.topics()[0].partitions().len()
    })
    .await
    .unwrap();
    assert_eq!(partitions, 2);
    relay.shutdown();
    assert_eq!(relay.wait().await.undelivered, 0);
}

/// `trigger-relay --config <path> check-config --connect`, run to its end.
async fn check_config_connect(path: std::path::PathBuf) -> std::process::Output {
    tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_trigger-relay"))
            .args(["--config"])
            .arg(&path)
            .args(["check-config", "--connect"])
            .output()
            .unwrap()
    })
    .await
    .unwrap()
}
