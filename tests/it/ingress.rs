//! Bad input at the ingress: each case gets its exact status and ISC's error shape, and nothing reaches Kafka.
//! Also: credential rotation, and a known trigger without subscriptions.

use crate::support;

use std::time::Duration;

use base64::Engine;
use support::*;

const GOOD: &str = r#"{"identity":{"id":"1","name":"a","type":"IDENTITY"},"attributes":{},"_metadata":{"triggerId":"idn:identity-created","invocationId":"inv-good","triggerType":"fireAndForget"}}"#;

fn basic(user: &str, pass: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
    )
}

struct Case {
    name: &'static str,
    method: &'static str,
    path: &'static str,
    auth: Option<String>,
    content_type: Option<&'static str>,
    body: Vec<u8>,
    status: u16,
    /// Text the error message (or 401 `error`) contains.
    message: &'static str,
}

fn case(name: &'static str, status: u16, message: &'static str) -> Case {
    Case {
        name,
        method: "POST",
        path: "/events/idn:identity-created",
        auth: Some("Bearer token-new-0123456789abcdef0123456789".into()),
        content_type: Some("application/json"),
        body: GOOD.as_bytes().to_vec(),
        status,
        message,
    }
}

async fn check(relay: &trigger_relay::Relay, c: Case) {
    let mut headers = Vec::new();
    if let Some(a) = &c.auth {
        headers.push(("authorization", a.as_str()));
    }
    if let Some(ct) = c.content_type {
        headers.push(("content-type", ct));
    }
    let r = request(
        c.method,
        relay.ingress_addr(),
        c.path,
        &headers,
        c.body.clone(),
    )
    .await;
    assert_eq!(
        r.status,
        c.status,
        "{}: {}",
        c.name,
        String::from_utf8_lossy(&r.body)
    );
    let j = r.json();
    // Every error carries its tracking id in a header too (401's ISC body has no place for it).
    let header_id = r
        .headers
        .get("x-tracking-id")
        .unwrap_or_else(|| panic!("{}: no X-Tracking-Id header", c.name))
        .to_str()
        .unwrap()
        .to_string();
    assert_eq!(header_id.len(), 32, "{}", c.name);
    if c.status == 401 {
        let e = j["error"]
            .as_str()
            .unwrap_or_else(|| panic!("{}: 401 is {{\"error\": …}}: {j}", c.name));
        assert!(e.contains(c.message), "{}: {e}", c.name);
        assert!(r.headers.contains_key("www-authenticate"), "{}", c.name);
        return;
    }
    assert!(
        j["detailCode"]
            .as_str()
            .unwrap()
            .starts_with(&c.status.to_string()),
        "{}: {j}",
        c.name
    );
    let tracking = j["trackingId"].as_str().unwrap();
    assert_eq!(tracking, header_id, "{}", c.name);
    assert_eq!(
        tracking.len(),
        32,
        "{}: trackingId is 32 hex digits",
        c.name
    );
    let text = j["messages"][0]["text"].as_str().unwrap();
    assert!(
        text.contains(c.message),
        "{}: message {text:?} lacks {:?}",
        c.name,
        c.message
    );
    assert_eq!(j["messages"][0]["locale"], "en-US");
    assert!(j["causes"].is_array(), "{}", c.name);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_exact_status_and_isc_error_and_never_reaches_kafka() {
    let bootstrap = kafka();
    let topic = unique("bad-input");
    create_topic(&bootstrap, &topic).await;
    let relay = start(&format!(
        r#"
[ingress]
max_body_bytes = 2048
[ingress.auth]
basic = [{{ username = "isc", password = "s3cret" }}]
bearer_tokens = ["token-old-0123456789abcdef0123456789", "token-new-0123456789abcdef0123456789"]
[delivery]
ack = "delivered"
{}"#,
        kafka_route(&bootstrap, "sub", CREATED, &topic)
    ))
    .await;
    let big = format!(r#"{{"pad":"{}"}}"#, "x".repeat(4096)).into_bytes();
    let mismatch = GOOD
        .replace("idn:identity-created", "idn:identity-deleted")
        .into_bytes();
    let cases = vec![
        Case {
            method: "GET",
            ..case("wrong method", 405, "method GET")
        },
        Case {
            method: "PUT",
            ..case("PUT", 405, "method PUT")
        },
        Case {
            path: "/nope",
            ..case("unknown path", 404, "no such path")
        },
        Case {
            content_type: Some("text/plain"),
            ..case("wrong content type", 415, "application/json")
        },
        Case {
            content_type: None,
            ..case("no content type", 415, "application/json")
        },
        Case {
            body: b"[1,2]".to_vec(),
            ..case("array body", 400, "JSON object")
        },
        Case {
            body: b"\"s\"".to_vec(),
            ..case("string body", 400, "JSON object")
        },
        Case {
            body: b"{\"a\":".to_vec(),
            ..case("invalid JSON", 400, "not valid JSON")
        },
        Case {
            body: b"{} trailing".to_vec(),
            ..case("trailing garbage", 400, "not valid JSON")
        },
        Case {
            body: b"{\"_metadata\":\"x\"}".to_vec(),
            ..case("_metadata not an object", 400, "not valid JSON")
        },
        Case {
            body: big,
            ..case("oversize", 413, "larger than 2048")
        },
        Case {
            path: "/events/idn:no-such-trigger",
            body: b"{}".to_vec(),
            ..case("unknown trigger", 404, "unknown trigger")
        },
        Case {
            path: "/events/idn:access-request-pre-approval",
            body: b"{}".to_vec(),
            ..case("REQUEST_RESPONSE", 501, "REQUEST_RESPONSE")
        },
        Case {
            body: mismatch,
            ..case("mismatched trigger ids", 400, "differ")
        },
        Case {
            path: "/events",
            body: b"{}".to_vec(),
            ..case("no trigger id at all", 400, "no trigger id")
        },
        Case {
            auth: None,
            ..case("missing credentials", 401, "missing")
        },
        Case {
            auth: Some("Bearer wrong".into()),
            ..case("wrong bearer", 401, "invalid")
        },
        Case {
            auth: Some(basic("isc", "wrong")),
            ..case("wrong password", 401, "invalid")
        },
        Case {
            auth: Some("Digest abc".into()),
            ..case("unsupported scheme", 401, "scheme")
        },
        Case {
            auth: Some("Basic %%%".into()),
            ..case("broken basic", 401, "invalid")
        },
    ];
    for c in cases {
        check(&relay, c).await;
    }
    // Rotation: every configured credential works; the sentinel events are the only records in the topic.
    for (i, auth) in [
        basic("isc", "s3cret"),
        "Bearer token-old-0123456789abcdef0123456789".into(),
        "bearer token-new-0123456789abcdef0123456789".into(),
    ]
    .iter()
    .enumerate()
    {
        let body = GOOD.replace("inv-good", &format!("inv-good-{i}"));
        let r = request(
            "POST",
            relay.ingress_addr(),
            "/events/idn%3Aidentity-created",
            &[
                ("authorization", auth),
                ("content-type", "application/json; charset=utf-8"),
            ],
            body,
        )
        .await;
        assert_eq!(
            r.status,
            200,
            "{auth}: {}",
            String::from_utf8_lossy(&r.body)
        );
    }
    let records = consume(&bootstrap, &topic, 4, Duration::from_secs(5));
    let ids: Vec<_> = records
        .iter()
        .map(|r| r.headers["invocation-id"].clone())
        .collect();
    assert_eq!(
        ids,
        ["inv-good-0", "inv-good-1", "inv-good-2"],
        "no refused request reached Kafka"
    );
    assert_eq!(
        metric(
            &relay,
            "trigger_relay_ingress_rejected_requests_total",
            &["reason=\"auth\""]
        )
        .await,
        5.0
    );
    assert_eq!(
        metric(
            &relay,
            "trigger_relay_ingress_requests_total",
            &["status=\"200\"", "trigger=\"idn:identity-created\""]
        )
        .await,
        3.0
    );
    relay.shutdown();
    relay.wait().await;
}

#[tokio::test]
async fn known_trigger_without_subscription_is_answered_200_and_counted_unrouted() {
    let relay = start(
        r#"
[ingress.auth]
none = true
[[catalog.triggers]]
id = "idn:machine-identity-created"
name = "Machine Identity Created"
type = "FIRE_AND_FORGET"
[[subscriptions]]
name = "disabled"
triggerId = "idn:identity-created"
type = "STDOUT"
enabled = false
"#,
    )
    .await;
    for t in [
        "idn:identity-created",
        "idn:machine-identity-created",
        "idn:source-created",
    ] {
        let r = post_event(&relay, &format!("/events/{t}"), "{}").await;
        assert_eq!(r.status, 200, "{t}");
        assert_eq!(
            metric(
                &relay,
                "trigger_relay_ingress_unrouted_events_total",
                &[&format!("trigger=\"{t}\"")]
            )
            .await,
            1.0
        );
    }
    relay.shutdown();
    relay.wait().await;
}

#[tokio::test]
async fn admin_endpoints() {
    let relay = start("[ingress.auth]\nnone = true\n").await;
    let get = |p: &'static str| request("GET", relay.admin_addr(), p, &[], "");
    assert_eq!(get("/healthz").await.status, 200);
    assert_eq!(get("/readyz").await.status, 200, "no sinks: ready at once");
    let m = String::from_utf8_lossy(&get("/metrics").await.body).into_owned();
    assert!(
        m.contains("trigger_relay_ingress_in_flight_requests"),
        "{m}"
    );
    assert_eq!(get("/nope").await.status, 404);
    // The ingress does not serve admin paths.
    assert_eq!(
        request("GET", relay.ingress_addr(), "/metrics", &[], "")
            .await
            .status,
        404
    );
    relay.shutdown();
    relay.wait().await;
}

/// The ingress speaks HTTP/2 with prior knowledge (h2c) as well as HTTP/1.1.
#[tokio::test]
async fn h2c_is_served() {
    use http_body_util::{BodyExt, Full};
    let relay = start("[ingress.auth]\nnone = true\n").await;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .http2_only(true)
        .build_http::<Full<bytes::Bytes>>();
    let req = http::Request::post(format!(
        "http://{}/events/idn:identity-created",
        relay.ingress_addr()
    ))
    .header("content-type", "application/json")
    .body(Full::new(bytes::Bytes::from_static(b"{}")))
    .unwrap();
    let resp = client.request(req).await.expect("h2c request");
    assert_eq!(resp.version(), http::Version::HTTP_2);
    assert_eq!(resp.status(), 200);
    assert!(resp
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes()
        .is_empty());
    relay.shutdown();
    relay.wait().await;
}

/// A client that stops sending its body gets 408 after `body_read_timeout_ms`, and holds up neither the
/// relay nor its shutdown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_body_gets_408_and_does_not_hold_shutdown() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let relay = start(
        r#"
[ingress]
body_read_timeout_ms = 300
[ingress.auth]
none = true
[delivery]
shutdown_grace_ms = 2000
[[subscriptions]]
name = "out"
triggerId = "idn:identity-created"
type = "STDOUT"
"#,
    )
    .await;
    let addr = relay.ingress_addr();
    let stalled = |path: &'static str| async move {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let head = format!(
            "POST {path} HTTP/1.1\r\nhost: relay\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{{\"a\":"
        );
        s.write_all(head.as_bytes()).await.unwrap();
        s
    };
    let mut s = stalled("/events/idn:identity-created").await;
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut answer))
        .await
        .expect("the relay answers a stalled body")
        .unwrap();
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("body_read_timeout_ms"), "{text}");
    assert!(
        text.contains(r#""detailCode":"408 Request Timeout""#),
        "{text}"
    );

    // A second stalled client is still sending when shutdown starts: the relay stops anyway.
    let _held = stalled("/events/idn:identity-created").await;
    let report = tokio::time::timeout(Duration::from_secs(10), relay.wait())
        .await
        .expect("shutdown is not held up by a stalled client");
    assert_eq!(report.undelivered, 0);
}

/// One verdict for a valid event: a body the ingress's probe accepts but the JSON parser cannot read (nesting
/// past 128, a number out of range, an unpaired surrogate) is refused with 400 and counted when a subscription of
/// its trigger reads it (a filter here), instead of being accepted and then dropped by every filter; where no
/// subscription reads the body, its bytes are forwarded as they are (200).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_the_filters_cannot_read_are_refused_not_dropped() {
    let relay = start(
        r#"
[ingress.auth]
none = true
[[subscriptions]]
name = "filtered"
triggerId = "idn:identity-created"
type = "DISCARD"
filter = "$[?($.identity.name == 'a')]"
[[subscriptions]]
name = "verbatim"
triggerId = "idn:identity-deleted"
type = "DISCARD"
"#,
    )
    .await;
    wait_ready(&relay).await;
    let wrap = |field: String| {
        format!(
            r#"{{"identity":{{"name":"a"}},"x":{field},"_metadata":{{"invocationId":"inv-x"}}}}"#
        )
    };
    let deep = format!("{}1{}", "[".repeat(130), "]".repeat(130));
    let cases = [
        ("nesting past 128", wrap(deep), "recursion limit"),
        ("a lone surrogate", wrap(r#""\ud800""#.into()), "surrogate"),
        ("1e400", wrap("1e400".into()), "number out of range"),
        (
            "a 400-digit integer",
            wrap("9".repeat(400)),
            "number out of range",
        ),
    ];
    for (what, body, cause) in cases {
        let filtered = post_event(&relay, "/events/idn:identity-created", body.clone()).await;
        let text = String::from_utf8_lossy(&filtered.body).to_string();
        assert_eq!(filtered.status, 400, "{what}: {text}");
        assert!(
            text.contains(cause) && text.contains("cannot read"),
            "{what}: {text}"
        );
        let verbatim = post_event(&relay, "/events/idn:identity-deleted", body).await;
        assert_eq!(
            verbatim.status, 200,
            "{what}: nothing reads it, the bytes go as they are"
        );
    }
    assert_eq!(
        metric(
            &relay,
            "trigger_relay_ingress_rejected_requests_total",
            &["reason=\"unreadable_json\""]
        )
        .await,
        4.0
    );
}

/// The filters of a trigger share one budget per event: 20 subscriptions whose filter is quadratic in the event
/// (each alone well within one filter's budget, and matching) cost the event at most its budget, each fails
/// closed (counted, logged) past its share, and a cheap subscription among them still gets the event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_filters_share_one_budget_per_event() {
    let _measured = support::MEASURED.lock().await;
    // For each of 700 elements, `in` walks the whole list again: ~490,000 steps, a quarter of one filter's
    // budget, five times a twenty-first share of the event's.
    let hostile = |i: usize| format!("$.x[?(@.v in $.x[*].v && @.v != {})]", 100_000 + i);
    let mut toml = String::from("[ingress.auth]\nnone = true\n");
    let check = |toml: &mut String, name: &str, filter: &str| {
        toml.push_str(&format!(
            "[[subscriptions]]\nname = \"{name}\"\ntriggerId = \"idn:identity-created\"\ntype = \"DISCARD\"\nfilter = '{filter}'\n"
        ));
    };
    for i in 0..20 {
        check(&mut toml, &format!("hostile {i}"), &hostile(i));
    }
    check(&mut toml, "cheap", "$.identity");
    let relay = start(&toml).await;
    wait_ready(&relay).await;
    let items: Vec<String> = (0..700).map(|v| format!(r#"{{"v":{v}}}"#)).collect();
    let body = format!(
        r#"{{"identity":{{"id":"i1"}},"x":[{}],"_metadata":{{"invocationId":"inv-budget"}}}}"#,
        items.join(",")
    );
    let answer = post_event(&relay, "/events/idn:identity-created", body.clone()).await;
    assert_eq!(
        answer.status,
        200,
        "{}",
        String::from_utf8_lossy(&answer.body)
    );
    let evaluations = |result: &'static str| {
        metric_of_result(
            &relay,
            "trigger_relay_filter_evaluations_total",
            &[],
            result,
        )
    };
    assert_eq!(
        evaluations("error").await,
        20.0,
        "every hostile filter fails closed"
    );
    assert_eq!(
        evaluations("matched").await,
        1.0,
        "the cheap filter still matches"
    );
    assert_eq!(
        metric(&relay, "trigger_relay_filter_budget_exhausted_total", &[]).await,
        1.0
    );
    support::reliability::Row {
        name: "filter-budget-hostile".into(),
        scenario: "one event on a trigger with 20 quadratic filters (each alone within its budget) and one cheap one"
            .into(),
        sent: 1,
        acknowledged: usize::from(answer.status == 200),
        delivered: evaluations("matched").await as usize,
        notes: "the 20 filters failed closed past their share of the event's 4M-step budget (counted as errors, logged with the tracking id); the cheap subscription still matched".into(),
        ..Default::default()
    }
    .write();
    relay.shutdown();
    relay.wait().await;

    // The control: one such filter alone is within its budget and matches the same event.
    let mut alone = String::from("[ingress.auth]\nnone = true\n");
    check(&mut alone, "alone", &hostile(0));
    let relay = start(&alone).await;
    wait_ready(&relay).await;
    let answer = post_event(&relay, "/events/idn:identity-created", body).await;
    assert_eq!(answer.status, 200);
    assert_eq!(
        metric(
            &relay,
            "trigger_relay_filter_evaluations_total",
            &["result=\"matched\""]
        )
        .await,
        1.0
    );
    assert_eq!(
        metric(&relay, "trigger_relay_filter_budget_exhausted_total", &[]).await,
        0.0
    );
}

/// A trigger id with a newline or an ANSI escape in the path cannot forge or colour a log line: the pretty log
/// shows the message escaped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caller_text_cannot_forge_log_lines() {
    let dir = tempfile::tempdir().unwrap();
    let (ingress, admin) = (free_port(), free_port());
    let path = dir.path().join("relay.toml");
    std::fs::write(
        &path,
        format!("[ingress]\nlisten = \"127.0.0.1:{ingress}\"\n[admin]\nlisten = \"127.0.0.1:{admin}\"\n[ingress.auth]\nnone = true\n[log]\nformat = \"pretty\"\nlevel = \"info\"\n"),
    )
    .unwrap();
    let log = dir.path().join("relay.log");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_trigger-relay"))
        .arg("--config")
        .arg(&path)
        .env_remove("RUST_LOG")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{ingress}").parse().unwrap();
    eventually(
        "the relay listens",
        Duration::from_secs(20),
        || async move { tokio::net::TcpStream::connect(addr).await.is_ok() },
    )
    .await;
    let r = request(
        "POST",
        addr,
        "/events/idn:x%0AFORGED%20line%1B%5B31mred",
        &[("content-type", "application/json")],
        br#"{"a":1}"#.to_vec(),
    )
    .await;
    assert_eq!(r.status, 404, "{}", String::from_utf8_lossy(&r.body));
    let tracking = r.json()["trackingId"].as_str().unwrap().to_string();
    eventually("the refusal is logged", Duration::from_secs(10), || {
        let (log, tracking) = (log.clone(), tracking.clone());
        async move {
            std::fs::read_to_string(&log)
                .unwrap_or_default()
                .contains(&tracking)
        }
    })
    .await;
    let _ = child.kill();
    let _ = child.wait();
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        !text.lines().any(|l| l.starts_with("FORGED")),
        "a forged line:\n{text}"
    );
    assert!(
        !text.contains("\x1b[31mred"),
        "a raw escape sequence:\n{text}"
    );
}
