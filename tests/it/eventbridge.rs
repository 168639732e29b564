//! The EventBridge sink against moto's server: entries shaped as ISC's (detail-type, source, detail) read back
//! through a rule → SQS with the AWS SDK; a failed entry is retried alone; a throttled call is retried; an
//! event too large for EventBridge lands in the dead letter.

use crate::support;

use std::time::Duration;

use support::aws::{BusToQueue, FaultProxy, ACCOUNT, REGION};
use support::*;

fn config(endpoint: &str, bus: &str, source: &str, ack: &str, extra: &str) -> String {
    let to_bus = |name: &str, trigger: &str| {
        subscription(
            name,
            trigger,
            "EVENTBRIDGE",
            &bus_config(endpoint, bus, source),
        )
    };
    format!(
        "{}delivery_timeout_ms = 20000\n{extra}\n{}{}",
        open(ack),
        to_bus("to eventbridge", CREATED),
        to_bus("to eventbridge too", "idn:identity-attributes-changed")
    )
}

/// The `eventBridgeConfig` of a subscription to `bus` at `endpoint`, its events from `source`.
fn bus_config(endpoint: &str, bus: &str, source: &str) -> String {
    format!(
        r#"eventBridgeConfig = {{ awsAccount = "{ACCOUNT}", awsRegion = "{REGION}", eventBusName = "{bus}", source = "{source}", endpointUrl = "{endpoint}" }}"#
    )
}

/// The envelope read back from SQS carries what ISC's native integration would send.
fn check_envelope(envelope: &serde_json::Value, source: &str, sent: &[(String, Vec<u8>)]) {
    let detail = &envelope["detail"];
    let id = detail["_metadata"]["invocationId"].as_str().unwrap();
    let (trigger, body) = sent
        .iter()
        .find(|(_, b)| {
            serde_json::from_slice::<serde_json::Value>(b).unwrap()["_metadata"]["invocationId"]
                == id
        })
        .unwrap_or_else(|| panic!("an event we did not send: {envelope}"));
    assert_eq!(envelope["detail-type"], trigger.as_str(), "{envelope}");
    assert_eq!(envelope["source"], source, "{envelope}");
    let want: serde_json::Value = serde_json::from_slice(body).unwrap();
    assert_eq!(detail, &want, "detail is the payload, _metadata included");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_events_reach_a_rule_and_its_sqs_queue_with_iscs_shape() {
    let endpoint = support::aws::moto();
    let source = unique("sailpoint.isc");
    let bus = BusToQueue::create(&unique("bus"), &source).await;
    let relay = start(&config(&endpoint, &bus.bus, &source, "delivered", "")).await;
    let mut sent = Vec::new();
    for (i, trigger) in ["idn:identity-created", "idn:identity-attributes-changed"]
        .iter()
        .cycle()
        .take(6)
        .enumerate()
    {
        let body = example_body(trigger, &unique(&format!("inv{i}")));
        let r = post_event(&relay, &format!("/events/{trigger}"), body.clone()).await;
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        sent.push((trigger.to_string(), body));
    }
    let got = bus.read(sent.len(), Duration::from_secs(20)).await;
    for envelope in &got {
        check_envelope(envelope, &source, &sent);
    }
    bus.assert_no_more(Duration::from_secs(1)).await;
    assert_eq!(
        metric(
            &relay,
            "trigger_relay_sink_events_sent_total",
            &["sink=\"eventbridge\""]
        )
        .await,
        sent.len() as f64
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_entry_is_retried_alone_and_a_throttled_call_whole() {
    let proxy = FaultProxy::start().await;
    let source = unique("sailpoint.isc");
    let bus = BusToQueue::create(&unique("bus"), &source).await;
    // linger fills one call with the whole burst, so the failing entry shares it with the others.
    let relay = start(&config(
        &proxy.url(),
        &bus.bus,
        &source,
        "accepted",
        "[sinks.eventbridge]\nlinger_ms = 1000",
    ))
    .await;
    let ids: Vec<String> = (0..5).map(|i| unique(&format!("batch{i}"))).collect();
    proxy.fail_once(&ids[2]);
    let mut sent = Vec::new();
    for id in &ids {
        let body = example_body("idn:identity-created", id);
        let r = post_event(&relay, "/events/idn:identity-created", body.clone()).await;
        assert_eq!(r.status, 200);
        sent.push(("idn:identity-created".to_string(), body));
    }
    let got = bus.read(ids.len(), Duration::from_secs(20)).await;
    for envelope in &got {
        check_envelope(envelope, &source, &sent);
    }
    bus.assert_no_more(Duration::from_secs(1)).await;
    let calls = proxy.calls();
    assert_eq!(
        calls.len(),
        2,
        "one call for the burst, one retry: {calls:#?}"
    );
    assert_eq!(calls[0].len(), ids.len(), "the burst went in one call");
    assert_eq!(calls[1].len(), 1, "only the failed entry is sent again");
    assert!(calls[1][0].contains(&ids[2]));
    assert_eq!(
        metric(
            &relay,
            "trigger_relay_sink_retries_total",
            &["sink=\"eventbridge\""]
        )
        .await,
        1.0
    );

    // A whole call throttled twice: retried with backoff, then delivered.
    proxy.throttle_calls(2);
    let id = unique("throttled");
    let body = example_body("idn:identity-created", &id);
    assert_eq!(
        post_event(&relay, "/events/idn:identity-created", body.clone())
            .await
            .status,
        200
    );
    let got = bus.read(1, Duration::from_secs(20)).await;
    check_envelope(&got[0], &source, &[("idn:identity-created".into(), body)]);
    assert!(
        metric(
            &relay,
            "trigger_relay_eventbridge_throttled_calls_total",
            &[]
        )
        .await
            >= 2.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_too_large_for_eventbridge_goes_to_the_dead_letter() {
    use futures_util::StreamExt;
    let endpoint = support::aws::moto();
    let source = unique("sailpoint.isc");
    let bus = BusToQueue::create(&unique("bus"), &source).await;
    let nats_url = nats();
    let dlq = unique("dlq");
    let (_client, mut sub) = nats_subscriber(&nats_url, &dlq).await;
    let relay = start(&format!(
        r#"
{OPEN_DELIVERED}
[sinks.eventbridge]
max_entry_bytes = 2048
{}{}deadLetter = {{ natsConfig = {{ subject = "{dlq}" }} }}
"#,
        nats_sink("main", &nats_url),
        subscription(
            "big to eventbridge",
            CREATED,
            "EVENTBRIDGE",
            &bus_config(&endpoint, &bus.bus, &source)
        )
    ))
    .await;
    wait_ready(&relay).await;
    let id = unique("big");
    let mut doc: serde_json::Value =
        serde_json::from_slice(&example_body("idn:identity-created", &id)).unwrap();
    doc["attributes"]["padding"] = serde_json::Value::String("x".repeat(4000));
    let body = serde_json::to_vec(&doc).unwrap();
    let r = post_event(&relay, "/events/idn:identity-created", body.clone()).await;
    assert_eq!(r.status, 502, "{}", String::from_utf8_lossy(&r.body));

    let msg = tokio::time::timeout(Duration::from_secs(10), sub.next())
        .await
        .expect("the dead letter arrives")
        .unwrap();
    assert_eq!(
        &msg.payload[..],
        &body[..],
        "the dead letter is the exact payload"
    );
    let h = msg.headers.unwrap();
    let get = |k: &str| h.get(k).map(|v| v.as_str().to_string()).unwrap_or_default();
    assert_eq!(get("dead-letter-reason"), "too_large");
    assert_eq!(get("dead-letter-sink"), "eventbridge");
    assert_eq!(get("subscription-name"), "big to eventbridge");
    assert_eq!(get("invocation-id"), id);
    assert!(
        get("dead-letter-error").contains("max_entry_bytes"),
        "{}",
        get("dead-letter-error")
    );
    assert_eq!(get("tracking-id").len(), 32);
    assert_eq!(dead_letters_written(&relay).await, 1.0);
    bus.assert_no_more(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_partner_events_from_a_partner_event_source() {
    let endpoint = support::aws::moto();
    let source = format!("aws.partner/trigger-relay.test/{}", unique("src"));
    support::aws::eventbridge(&endpoint)
        .create_partner_event_source()
        .name(&source)
        .account(ACCOUNT)
        .send()
        .await
        .expect("create partner event source");
    // moto delivers partner events to the account's default bus.
    let bus = BusToQueue::create("default", &source).await;
    let relay = start(&format!(
        r#"
{OPEN_DELIVERED}
{}"#,
        subscription("partner", CREATED, "EVENTBRIDGE", &format!(r#"eventBridgeConfig = {{ awsAccount = "{ACCOUNT}", awsRegion = "{REGION}", source = "{source}", endpointUrl = "{endpoint}", mode = "putPartnerEvents" }}"#))
    ))
    .await;
    let body = example_body("idn:identity-created", &unique("partner"));
    let r = post_event(&relay, "/events/idn:identity-created", body.clone()).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let got = bus.read(1, Duration::from_secs(20)).await;
    check_envelope(&got[0], &source, &[("idn:identity-created".into(), body)]);
}

/// The caller's W3C trace reaches EventBridge as the entry's X-Ray `TraceHeader` (its trace id split after
/// eight hex digits, the parent span and the sampled flag).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_callers_trace_is_the_entrys_trace_header() {
    let proxy = FaultProxy::start().await;
    let source = unique("sailpoint.isc");
    let bus = BusToQueue::create(&unique("bus"), &source).await;
    let relay = start(&config(&proxy.url(), &bus.bus, &source, "delivered", "")).await;
    let body = example_body("idn:identity-created", &unique("traced"));
    let r = request(
        "POST",
        relay.ingress_addr(),
        "/events/idn:identity-created",
        &[
            ("content-type", "application/json"),
            (
                "traceparent",
                "00-5759e988bd862e3fe1be46a994272793-53995c3f42cd8ad8-01",
            ),
        ],
        body,
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        proxy.trace_headers(),
        ["Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"]
    );
    assert_eq!(bus.read(1, Duration::from_secs(20)).await.len(), 1);
}

/// An endpoint URL that an API caller sets (possible only with `api.allow_endpoint_url`) connects only where the
/// egress policy allows: an IP literal inward is refused when written, a name that resolves inward is refused
/// when the relay connects (the bus check at the write), and the policy's `allow_cidrs` opens it, after which
/// events reach the bus.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_endpoint_urls_go_through_the_egress_policy() {
    const TOKEN: &str = "eventbridge-admin-token-0123456789abcdef";
    let endpoint = support::aws::moto();
    let port: u16 = endpoint
        .trim_end_matches('/')
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("moto's URL names its port: {endpoint}"));
    let source = unique("sailpoint.isc");
    let bus = BusToQueue::create(&unique("bus"), &source).await;
    let dir = tempfile::tempdir().unwrap();
    let relay_with = |n: usize, egress: &str| {
        format!(
            r#"
{egress}
{OPEN_DELIVERED}
delivery_timeout_ms = 20000
[api]
enabled = true
store_path = "{store}"
allow_endpoint_url = true
{token}"#,
            store = dir.path().join(format!("subs-{n}.json")).display(),
            token = admin_token("admin", TOKEN)
        )
    };
    let create = |relay: &trigger_relay::Relay, url: String| {
        let body = serde_json::json!({
            "name": format!("api eventbridge {url}"), "triggerId": "idn:identity-created", "type": "EVENTBRIDGE",
            "eventBridgeConfig": {"awsAccount": ACCOUNT, "awsRegion": REGION, "eventBusName": bus.bus,
                                  "source": source, "endpointUrl": url}
        });
        let admin = relay.admin_addr();
        async move {
            let auth = format!("Bearer {TOKEN}");
            request(
                "POST",
                admin,
                "/beta/trigger-subscriptions",
                &[
                    ("content-type", "application/json"),
                    ("authorization", &auth),
                ],
                body.to_string(),
            )
            .await
        }
    };

    let closed = start(&relay_with(0, "")).await;
    for (url, cause) in [
        (format!("http://127.0.0.1:{port}"), "127.0.0.1 is loopback"),
        (format!("http://[::ffff:127.0.0.1]:{port}"), "IPv6 form"),
        (format!("http://localhost:{port}"), "localhost ("),
    ] {
        let r = create(&closed, url.clone()).await;
        let text = String::from_utf8_lossy(&r.body).to_string();
        assert_eq!(r.status, 400, "{url}: {text}");
        assert!(
            text.contains("refused by the egress policy") && text.contains(cause),
            "{url}: {text}"
        );
    }
    closed.shutdown();
    closed.wait().await;

    let open = start(&relay_with(
        1,
        "[sinks.http.egress]\nallow_cidrs = [\"127.0.0.0/8\"]",
    ))
    .await;
    let r = create(&open, format!("http://localhost:{port}")).await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let body = example_body("idn:identity-created", &unique("inv-egress"));
    let r = post_event(&open, "/events/idn:identity-created", body.clone()).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let got = bus.read(1, Duration::from_secs(20)).await;
    check_envelope(&got[0], &source, &[("idn:identity-created".into(), body)]);
    // A stored endpoint the policy allowed once (an IP literal here) and refuses after the allow-list is narrowed:
    // that subscription is left out on start-up, and the relay still starts and serves the rest (the stored
    // `localhost` one still routes, and its connection is refused by the narrowed policy: 502 in `delivered`).
    let r = create(&open, format!("http://127.0.0.1:{port}")).await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    open.shutdown();
    open.wait().await;
    let narrowed = start(&relay_with(1, "")).await;
    wait_ready(&narrowed).await;
    let r = post_example(&narrowed, CREATED, &unique("inv-narrowed")).await;
    let text = String::from_utf8_lossy(&r.body).to_string();
    assert_eq!(r.status, 502, "{text}");
    assert!(
        text.contains("refused by the egress policy: localhost ("),
        "{text}"
    );
}
