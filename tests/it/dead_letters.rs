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

/// A Kafka record that fails inside librdkafka (no broker answers within `delivery_timeout_ms`, so the delivery
/// report says timed out) still reaches its dead letter intact, though the relay let go of its own copy of the
/// body once librdkafka held the record: the payload comes back from the delivery report. Both as the request's
/// bytes and, in structured CloudEvents mode, as the envelope that was sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kafka_record_that_fails_in_librdkafka_reaches_its_dead_letter_intact() {
    use futures_util::StreamExt;
    let nats_url = nats();
    let dlq = unique("kafka-dlq");
    let client = async_nats::connect(&nats_url).await.unwrap();
    let mut plain = client.subscribe(format!("{dlq}.plain")).await.unwrap();
    let mut structured = client.subscribe(format!("{dlq}.structured")).await.unwrap();
    client.flush().await.unwrap();
    // Nothing listens there: librdkafka keeps the records until `delivery_timeout_ms`, then reports them failed.
    let nowhere = format!("127.0.0.1:{}", free_port());
    let relay = start(&format!(
        r#"
{OPEN_ACCEPTED}
ack_timeout_ms = 1000
delivery_timeout_ms = 2000
[sinks.kafka.main]
bootstrap_servers = "{nowhere}"
[sinks.nats.main]
servers = ["{nats_url}"]
[[subscriptions]]
name = "plain"
triggerId = "idn:identity-created"
type = "KAFKA"
kafkaConfig = {{ topic = "unreachable" }}
deadLetter = {{ natsConfig = {{ subject = "{dlq}.plain" }} }}
[[subscriptions]]
name = "structured"
triggerId = "idn:identity-created"
type = "KAFKA"
kafkaConfig = {{ topic = "unreachable" }}
envelope = "cloudevents-structured"
deadLetter = {{ natsConfig = {{ subject = "{dlq}.structured" }} }}
"#
    ))
    .await;
    let id = unique("released");
    let body = example_body("idn:identity-created", &id);
    let r = post_event(&relay, "/events/idn:identity-created", body.clone()).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));

    let within = Duration::from_secs(20);
    let msg = tokio::time::timeout(within, plain.next())
        .await
        .expect("the plain dead letter arrives")
        .unwrap();
    assert_eq!(
        &msg.payload[..],
        &body[..],
        "the dead letter is the exact payload"
    );
    let h = msg.headers.unwrap();
    assert_eq!(h.get("dead-letter-reason").unwrap().as_str(), "timed_out");
    assert_eq!(h.get("dead-letter-sink").unwrap().as_str(), "kafka.main");
    assert_eq!(h.get("invocation-id").unwrap().as_str(), id);

    let msg = tokio::time::timeout(within, structured.next())
        .await
        .expect("the structured dead letter arrives")
        .unwrap();
    let envelope: serde_json::Value = serde_json::from_slice(&msg.payload).unwrap();
    let original: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(envelope["specversion"], "1.0", "{envelope}");
    assert_eq!(envelope["id"], id.as_str(), "{envelope}");
    assert_eq!(
        envelope["data"], original,
        "the envelope as sent, with the event"
    );
    assert_eq!(
        msg.headers
            .unwrap()
            .get("dead-letter-reason")
            .unwrap()
            .as_str(),
        "timed_out"
    );
    relay.shutdown();
    relay.wait().await;
}
