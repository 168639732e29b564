//! CloudEvents envelopes and W3C trace context, read back from real Kafka, NATS and a webhook and decoded by
//! an independent implementation (the CloudEvents Python SDK, `decode.py` beside this file): binary and
//! structured mode on each bus and on a dead letter, the caller's trace on every destination, and a trace the
//! relay starts (its trace id is the event's tracking id) when the caller sends none.

use std::collections::HashMap;
use std::time::Duration;

use base64::Engine;
use futures_util::StreamExt;
use serde_json::{json, Value};

use crate::support::webhook::Webhook;
use crate::support::*;

const TRACEPARENT: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
const TRACESTATE: &str = "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7";
const TENANT: &str = "https://acme.api.identitynow.com";

/// One message as a bus delivered it.
struct Message {
    name: &'static str,
    binding: &'static str,
    headers: HashMap<String, String>,
    key: Option<String>,
    body: Vec<u8>,
}

/// Decode `messages` with the CloudEvents Python SDK; one JSON object per message, by name.
fn decode(messages: &[Message]) -> HashMap<String, Value> {
    let input: Vec<Value> = messages
        .iter()
        .map(|m| {
            json!({
                "name": m.name, "binding": m.binding, "headers": m.headers, "key": m.key,
                "body_b64": base64::engine::general_purpose::STANDARD.encode(&m.body),
            })
        })
        .collect();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/it/envelopes/decode.py");
    let mut child = std::process::Command::new("python3")
        .arg(script)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3 runs (scripts/test installs it)");
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(serde_json::to_string(&input).unwrap().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the CloudEvents SDK check failed (install it with `python3 -m pip install cloudevents`; scripts/test does):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let decoded: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    decoded
        .into_iter()
        .map(|v| (v["name"].as_str().unwrap().to_string(), v))
        .collect()
}

fn kafka_message(name: &'static str, r: Record) -> Message {
    Message {
        name,
        binding: "kafka",
        headers: r.headers,
        key: r.key.map(|k| String::from_utf8(k).unwrap()),
        body: r.value,
    }
}

fn nats_message(name: &'static str, m: async_nats::Message) -> Message {
    let headers = m
        .headers
        .iter()
        .flat_map(|h| h.iter())
        .map(|(k, v)| (k.to_string(), v[0].to_string()))
        .collect();
    Message {
        name,
        binding: "nats",
        headers,
        key: None,
        body: m.payload.to_vec(),
    }
}

fn http_message(name: &'static str, r: &crate::support::webhook::Received) -> Message {
    let headers = r
        .headers
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap().to_string()))
        .collect();
    Message {
        name,
        binding: "http",
        headers,
        key: None,
        body: r.body.to_vec(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cloudevents_envelopes_decode_with_the_sdk_on_every_bus_and_carry_the_trace() {
    let bootstrap = kafka();
    let nats_url = nats();
    let topics: Vec<String> = ["bin", "str", "none", "dl"]
        .iter()
        .map(|t| unique(&format!("ce-{t}")))
        .collect();
    for t in &topics {
        create_topic(&bootstrap, t).await;
    }
    let prefix = unique("ce");
    let client = async_nats::connect(&nats_url).await.unwrap();
    let mut nats_bin = client.subscribe(format!("{prefix}.bin")).await.unwrap();
    let mut nats_str = client.subscribe(format!("{prefix}.str")).await.unwrap();
    client.flush().await.unwrap();
    let hook = Webhook::start().await;
    let refusing = Webhook::start().await;
    refusing.script(&[(400, &[]), (400, &[])]);
    let subject = r#"cloudEvents = { subject = "/identity/id" }"#;
    let sub = |name: &str, kind: &str, config: String, extra: &str| {
        subscription(name, CREATED, kind, &format!("{config}\n{extra}"))
    };
    let mut toml = format!(
        "{OPEN_DELIVERED}\n[cloudevents]\nsource = \"{TENANT}\"\n{}{}{}",
        kafka_sink("main", &bootstrap),
        nats_sink("main", &nats_url),
        "[sinks.http.egress]\nallow_cidrs = [\"127.0.0.0/8\"]\n"
    );
    let kafka_cfg = |t: &str| format!("kafkaConfig = {{ topic = \"{t}\" }}");
    let nats_cfg = |s: &str| format!("natsConfig = {{ subject = \"{prefix}.{s}\" }}");
    let http_cfg = |url: String| format!("httpConfig = {{ url = \"{url}\" }}");
    for s in [
        sub(
            "kafka-binary",
            "KAFKA",
            kafka_cfg(&topics[0]),
            &format!("envelope = \"cloudevents-binary\"\n{subject}"),
        ),
        sub(
            "kafka-structured",
            "KAFKA",
            kafka_cfg(&topics[1]),
            "envelope = \"cloudevents-structured\"\ncloudEvents = { source = \"urn:relay:custom\" }",
        ),
        sub("kafka-none", "KAFKA", kafka_cfg(&topics[2]), ""),
        sub(
            "nats-binary",
            "NATS",
            nats_cfg("bin"),
            &format!("envelope = \"cloudevents-binary\"\n{subject}"),
        ),
        sub(
            "nats-structured",
            "NATS",
            nats_cfg("str"),
            "envelope = \"cloudevents-structured\"",
        ),
        sub(
            "http-binary",
            "HTTP",
            http_cfg(hook.url("/bin")),
            &format!("envelope = \"cloudevents-binary\"\n{subject}"),
        ),
        sub(
            "http-structured",
            "HTTP",
            http_cfg(hook.url("/str")),
            &format!("envelope = \"cloudevents-structured\"\n{subject}"),
        ),
        sub(
            "http-refused",
            "HTTP",
            http_cfg(refusing.url("/no")),
            &format!(
                "envelope = \"cloudevents-structured\"\nackMode = \"accepted\"\ndeadLetter = {{ kafkaConfig = {{ topic = \"{}\" }} }}",
                topics[3]
            ),
        ),
    ] {
        toml.push_str(&s);
    }
    let relay = start(&toml).await;
    wait_ready(&relay).await;

    // With the caller's trace, then without one.
    let mut bodies = Vec::new();
    for (inv, trace) in [("inv-ce-1", true), ("inv-ce-2", false)] {
        let body = example_body("idn:identity-created", inv);
        let mut headers = vec![("content-type", "application/json")];
        if trace {
            headers.extend([("traceparent", TRACEPARENT), ("tracestate", TRACESTATE)]);
        }
        let r = request(
            "POST",
            relay.ingress_addr(),
            "/events/idn:identity-created",
            &headers,
            body.clone(),
        )
        .await;
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        bodies.push(body);
    }

    let mut messages = Vec::new();
    let within = Duration::from_secs(20);
    for (i, (topic, names)) in [
        (&topics[0], ["kafka-binary-1", "kafka-binary-2"]),
        (&topics[1], ["kafka-structured-1", "kafka-structured-2"]),
        (&topics[2], ["kafka-none-1", "kafka-none-2"]),
        (&topics[3], ["dead-letter-1", "dead-letter-2"]),
    ]
    .into_iter()
    .enumerate()
    {
        let (b, t) = (bootstrap.clone(), topic.clone());
        let records = tokio::task::spawn_blocking(move || consume(&b, &t, 2, within))
            .await
            .unwrap();
        assert_eq!(records.len(), 2, "topic {i}");
        for (name, r) in names.into_iter().zip(records) {
            messages.push(kafka_message(name, r));
        }
    }
    for (sub, names) in [
        (&mut nats_bin, ["nats-binary-1", "nats-binary-2"]),
        (&mut nats_str, ["nats-structured-1", "nats-structured-2"]),
    ] {
        for name in names {
            let m = tokio::time::timeout(within, sub.next())
                .await
                .expect("NATS message")
                .unwrap();
            messages.push(nats_message(name, m));
        }
    }
    let received = hook.wait_for(4, within).await;
    assert_eq!(received.len(), 4);
    for (path, mode) in [("/bin", "binary"), ("/str", "structured")] {
        let mut n = 0;
        for r in received.iter().filter(|r| r.path == path) {
            n += 1;
            let inv = if String::from_utf8_lossy(&r.body).contains("inv-ce-1") {
                1
            } else {
                2
            };
            let name: &'static str = match (mode, inv) {
                ("binary", 1) => "http-binary-1",
                ("binary", _) => "http-binary-2",
                (_, 1) => "http-structured-1",
                _ => "http-structured-2",
            };
            messages.push(http_message(name, r));
        }
        assert_eq!(n, 2, "{path}");
    }

    let decoded = decode(&messages);
    let now = std::time::SystemTime::now();
    let mut started_trace: Option<String> = None;
    for m in &messages {
        let d = &decoded[m.name];
        let inv = if m.name.ends_with("-1") { 1 } else { 2 };
        let posted: Value = serde_json::from_slice(&bodies[inv - 1]).unwrap();
        let traceparent = m.headers.get("traceparent").expect("traceparent header");
        if inv == 1 {
            assert_eq!(traceparent, TRACEPARENT, "{}: the caller's trace", m.name);
            assert_eq!(
                m.headers.get("tracestate").map(String::as_str),
                Some(TRACESTATE),
                "{}",
                m.name
            );
        } else {
            let started = started_trace.get_or_insert_with(|| traceparent.clone());
            assert_eq!(
                traceparent, started,
                "{}: one started trace for every destination",
                m.name
            );
            assert!(!m.headers.contains_key("tracestate"), "{}", m.name);
        }
        if m.name.starts_with("kafka-none") {
            assert!(
                m.headers.keys().all(|k| !k.starts_with("ce_")),
                "{}: no envelope asked, none written: {:?}",
                m.name,
                m.headers
            );
            assert_eq!(m.body, bodies[inv - 1], "{}: exact bytes", m.name);
            continue;
        }
        assert!(
            d.get("error").is_none(),
            "{}: the SDK refused it: {d}",
            m.name
        );
        let structured = m.name.contains("structured") || m.name.starts_with("dead-letter");
        assert_eq!(
            d["mode"],
            if structured { "structured" } else { "binary" },
            "{}",
            m.name
        );
        if !structured {
            assert_eq!(
                m.body,
                bodies[inv - 1],
                "{}: binary mode leaves the bytes alone",
                m.name
            );
        }
        assert_eq!(d["specversion"], "1.0", "{}", m.name);
        assert_eq!(
            d["id"],
            format!("inv-ce-{inv}"),
            "{}: id is the invocation id",
            m.name
        );
        assert_eq!(
            d["type"], "com.sailpoint.idn.identity-created",
            "{}",
            m.name
        );
        let source = if m.name.starts_with("kafka-structured") {
            "urn:relay:custom"
        } else {
            TENANT
        };
        assert_eq!(d["source"], source, "{}", m.name);
        assert_eq!(d["datacontenttype"], "application/json", "{}", m.name);
        assert_eq!(d["data"], posted, "{}: data is the payload", m.name);
        assert_eq!(
            d["traceparent"].as_str(),
            Some(traceparent.as_str()),
            "{}: the tracing extension",
            m.name
        );
        let with_subject = [
            "kafka-binary",
            "nats-binary",
            "http-binary",
            "http-structured",
        ]
        .iter()
        .any(|p| m.name.starts_with(p));
        if with_subject {
            assert_eq!(d["subject"], posted["identity"]["id"], "{}", m.name);
        } else {
            assert!(d.get("subject").is_none(), "{}", m.name);
        }
        let time =
            humantime::parse_rfc3339(d["time"].as_str().unwrap().replace("+00:00", "Z").as_str())
                .unwrap_or_else(|e| panic!("{}: time {}: {e}", m.name, d["time"]));
        let age = now.duration_since(time).unwrap_or_default();
        assert!(
            age < Duration::from_secs(120),
            "{}: time {} is when the relay received it",
            m.name,
            d["time"]
        );
    }
    // A trace the relay started has the event's tracking id as its trace id (the dead letter names it).
    let dl = messages.iter().find(|m| m.name == "dead-letter-2").unwrap();
    let tracking = &dl.headers["tracking-id"];
    assert_eq!(&dl.headers["traceparent"][3..35], tracking.as_str());
    assert_eq!(dl.headers["dead-letter-reason"], "rejected");
    relay.shutdown();
    assert_eq!(relay.wait().await.undelivered, 0);
}

/// The spans exported so far, from every OTLP/HTTP JSON request `hook` received: name → span.
fn exported_spans(hook: &Webhook) -> Vec<Value> {
    let mut out = Vec::new();
    for r in hook.received() {
        let Ok(v) = serde_json::from_slice::<Value>(&r.body) else {
            continue;
        };
        for rs in v["resourceSpans"].as_array().into_iter().flatten() {
            let service = rs["resource"]["attributes"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|a| a["key"] == "service.name")
                .map(|a| a["value"]["stringValue"].clone());
            for ss in rs["scopeSpans"].as_array().into_iter().flatten() {
                for s in ss["spans"].as_array().into_iter().flatten() {
                    let mut s = s.clone();
                    s["service"] = service.clone().unwrap_or(Value::Null);
                    out.push(s);
                }
            }
        }
    }
    out
}

/// With `[tracing] otlp_endpoint` set, a local OTLP/HTTP receiver gets the `ingress`, `enqueue` and `publish`
/// spans with the right parents: `ingress` under the caller's span, the other two under `ingress`, and the
/// record on Kafka names its `publish` span as its parent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_are_exported_over_otlp_with_their_parents() {
    let bootstrap = kafka();
    let topic = unique("otlp");
    create_topic(&bootstrap, &topic).await;
    let collector = Webhook::start().await;
    let relay = start(&format!(
        r#"
{OPEN_DELIVERED}
[tracing]
otlp_endpoint = "{}"
otlp_protocol = "http/json"
export_interval_ms = 100
{}"#,
        collector.url("/v1/traces"),
        kafka_route(&bootstrap, "traced", CREATED, &topic)
    ))
    .await;
    wait_ready(&relay).await;
    let r = request(
        "POST",
        relay.ingress_addr(),
        "/events/idn:identity-created",
        &[
            ("content-type", "application/json"),
            ("traceparent", TRACEPARENT),
        ],
        example_body("idn:identity-created", "inv-otlp-1"),
    )
    .await;
    assert_eq!(r.status, 200);
    let (b, t) = (bootstrap.clone(), topic.clone());
    let records = tokio::task::spawn_blocking(move || consume(&b, &t, 1, Duration::from_secs(20)))
        .await
        .unwrap();
    assert_eq!(records.len(), 1);
    let record_parent = records[0].headers["traceparent"][36..52].to_string();
    assert_eq!(
        &records[0].headers["traceparent"][..36],
        &TRACEPARENT[..36],
        "the caller's trace id"
    );

    let mut spans = Vec::new();
    eventually(
        "the three spans at the collector",
        Duration::from_secs(20),
        || {
            spans = exported_spans(&collector);
            let found = ["ingress", "enqueue", "publish kafka.main"]
                .iter()
                .all(|n| spans.iter().any(|s| s["name"] == *n));
            std::future::ready(found)
        },
    )
    .await;
    let by_name = |n: &str| spans.iter().find(|s| s["name"] == n).unwrap().clone();
    let (ingress, enqueue, publish) = (
        by_name("ingress"),
        by_name("enqueue"),
        by_name("publish kafka.main"),
    );
    let trace = &TRACEPARENT[3..35];
    for s in [&ingress, &enqueue, &publish] {
        assert_eq!(s["traceId"], trace, "{s}");
        assert_eq!(s["service"], "trigger-relay", "{s}");
    }
    assert_eq!(
        ingress["parentSpanId"],
        &TRACEPARENT[36..52],
        "ingress is the caller's child"
    );
    assert_eq!(enqueue["parentSpanId"], ingress["spanId"]);
    assert_eq!(publish["parentSpanId"], ingress["spanId"]);
    assert_eq!(
        publish["spanId"],
        record_parent.as_str(),
        "the record's parent is its publish span"
    );
    assert!(
        publish["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["name"] == "ack"),
        "{publish}"
    );
    relay.shutdown();
    assert_eq!(relay.wait().await.undelivered, 0);
}
