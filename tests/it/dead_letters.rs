//! Dead letters on Kafka: an event its destination refuses for good is written, byte for byte, to the
//! subscription's dead-letter topic with headers saying which subscription, why, after how many attempts and
//! with which error. (The NATS dead-letter subject is covered by the EventBridge and HTTP tests.)

use crate::support;

use std::time::Duration;

use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_event_lands_in_the_kafka_dead_letter_topic_with_its_reason() {
    let bootstrap = kafka();
    let nats_url = nats();
    let dlq = unique("dlq");
    create_topic(&bootstrap, &dlq).await;
    // JetStream to a subject no stream holds: refused for good.
    let subject = unique("nostream");
    let relay = start(&format!(
        r#"
{OPEN_DELIVERED}
{}{}{}natsConfig = {{ subject = "{subject}", jetstream = true }}
deadLetter = {{ kafkaConfig = {{ topic = "{dlq}" }} }}
"#,
        kafka_sink("main", &bootstrap),
        nats_sink("main", &nats_url),
        subscription("refused", CREATED, "NATS", "")
    ))
    .await;
    // The destination check already says what is wrong; the event is then refused for that reason.
    wait_not_ready_with(&relay, "no JetStream stream holds the subject").await;
    let id = unique("dl");
    let body = example_body("idn:identity-created", &id);
    let r = post_event(&relay, "/events/idn:identity-created", body.clone()).await;
    assert_eq!(r.status, 502, "{}", String::from_utf8_lossy(&r.body));
    let tracking = r.headers["x-tracking-id"].to_str().unwrap().to_string();

    let got =
        tokio::task::spawn_blocking(move || consume(&bootstrap, &dlq, 1, Duration::from_secs(20)))
            .await
            .unwrap();
    assert_eq!(got.len(), 1, "one dead letter");
    let rec = &got[0];
    assert_eq!(rec.value, body, "the dead letter is the exact payload");
    assert_eq!(
        rec.key.as_deref(),
        Some(id.as_bytes()),
        "keyed by invocation id"
    );
    let h = &rec.headers;
    assert_eq!(h["subscription-name"], "refused");
    assert_eq!(h["trigger-id"], "idn:identity-created");
    assert_eq!(h["invocation-id"], id);
    assert_eq!(
        h["tracking-id"], tracking,
        "the same tracking id as the 502 answer"
    );
    assert_eq!(h["dead-letter-sink"], "nats.main");
    assert_eq!(h["dead-letter-reason"], "rejected");
    assert_eq!(h["dead-letter-attempts"], "1");
    assert!(
        h["dead-letter-error"].contains("stream"),
        "{}",
        h["dead-letter-error"]
    );
    assert_eq!(dead_letters_written(&relay).await, 1.0);
}
