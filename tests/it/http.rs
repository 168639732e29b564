//! The HTTP webhook sink against a real local server: each authentication type sends ISC's header and the
//! exact payload; 503 (with `Retry-After`) then 200 is retried; 429 is retried; 400 is not (dead letter).

use crate::support;

use std::time::Duration;

use support::webhook::Webhook;
use support::*;

const SECRET_PW: &str = "pw-9f3e";
const SECRET_TOKEN: &str = "tok-77aa";

struct AuthCase {
    name: &'static str,
    http_config: String,
    /// `Authorization` the webhook must receive (None: no header).
    want: Option<String>,
}

async fn check_auth(hook: &Webhook, c: AuthCase) {
    let path = format!("/{}", c.name);
    let relay = start(&format!(
        r#"
{LOOPBACK_HOOKS}
[delivery]
ack = "delivered"
[[subscriptions]]
name = "webhook"
triggerId = "idn:identity-created"
type = "HTTP"
httpConfig = {{ url = "{url}", {cfg} }}
"#,
        url = hook.url(&path),
        cfg = c.http_config
    ))
    .await;
    let before = hook.received().len();
    let body = example_body("idn:identity-created", &unique(c.name));
    let r = post_event(&relay, "/events/idn:identity-created", body.clone()).await;
    assert_eq!(
        r.status,
        200,
        "{}: {}",
        c.name,
        String::from_utf8_lossy(&r.body)
    );
    let got = hook.wait_for(before + 1, Duration::from_secs(10)).await;
    let req = got
        .iter()
        .rev()
        .find(|r| r.path == path)
        .expect("request on the path");
    assert_eq!(&req.body[..], &body[..], "{}: exact payload", c.name);
    assert_eq!(
        req.headers["content-type"], "application/json",
        "{}",
        c.name
    );
    let auth = req
        .headers
        .get("authorization")
        .map(|v| v.to_str().unwrap().to_string());
    assert_eq!(auth, c.want, "{}", c.name);
    // The secret is nowhere in what the relay exposes.
    let metrics = request("GET", relay.admin_addr(), "/metrics", &[], Vec::new()).await;
    let text = String::from_utf8_lossy(&metrics.body);
    assert!(
        !text.contains(SECRET_PW) && !text.contains(SECRET_TOKEN),
        "{}",
        c.name
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_auth_type_sends_iscs_header_and_the_exact_payload() {
    use base64::Engine;
    let hook = Webhook::start().await;
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("isc:{SECRET_PW}"));
    for c in [
        AuthCase {
            name: "none",
            http_config: r#"httpAuthenticationType = "NO_AUTH""#.into(),
            want: None,
        },
        AuthCase {
            name: "default-is-none",
            http_config: r#"httpDispatchMode = "SYNC""#.into(),
            want: None,
        },
        AuthCase {
            name: "basic",
            http_config: format!(
                r#"httpAuthenticationType = "BASIC_AUTH", basicAuthConfig = {{ userName = "isc", password = "{SECRET_PW}" }}"#
            ),
            want: Some(format!("Basic {basic}")),
        },
        AuthCase {
            name: "bearer",
            http_config: format!(
                r#"httpAuthenticationType = "BEARER_TOKEN", bearerTokenAuthConfig = {{ bearerToken = "{SECRET_TOKEN}" }}"#
            ),
            want: Some(format!("Bearer {SECRET_TOKEN}")),
        },
    ] {
        check_auth(&hook, c).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_and_429_are_retried_400_is_not() {
    use futures_util::StreamExt;
    let hook = Webhook::start().await;
    let nats_url = nats();
    let dlq = unique("http-dlq");
    let (_client, mut dead) = nats_subscriber(&nats_url, &dlq).await;
    let relay = start(&format!(
        r#"
{LOOPBACK_HOOKS}
[delivery]
ack = "delivered"
{}{}deadLetter = {{ natsConfig = {{ subject = "{dlq}" }} }}
"#,
        nats_sink("main", &nats_url),
        http_subscription("webhook", CREATED, &hook.url("/hook"))
    ))
    .await;
    wait_ready(&relay).await;

    // 503 with Retry-After: 0, then 429, then 200: delivered, three attempts.
    hook.script(&[(503, &[("retry-after", "0")]), (429, &[])]);
    let body = example_body("idn:identity-created", &unique("retried"));
    let r = post_event(&relay, "/events/idn:identity-created", body.clone()).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let got = hook.received();
    assert_eq!(got.len(), 3, "503, 429, then 200");
    assert!(got.iter().all(|r| r.body == body));
    assert_eq!(
        metric(
            &relay,
            "trigger_relay_sink_retries_total",
            &["sink=\"http\""]
        )
        .await,
        2.0
    );

    // 400: final. One attempt, 502 to ISC, the event in the dead letter with the webhook's answer.
    hook.script(&[(400, &[])]);
    let id = unique("refused");
    let body = example_body("idn:identity-created", &id);
    let r = post_event(&relay, "/events/idn:identity-created", body.clone()).await;
    assert_eq!(r.status, 502, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(hook.received().len(), 4, "a 400 is not retried");
    let msg = tokio::time::timeout(Duration::from_secs(10), dead.next())
        .await
        .expect("the dead letter arrives")
        .unwrap();
    assert_eq!(&msg.payload[..], &body[..]);
    let h = msg.headers.unwrap();
    assert_eq!(h.get("dead-letter-reason").unwrap().as_str(), "rejected");
    assert_eq!(h.get("dead-letter-attempts").unwrap().as_str(), "1");
    assert!(h.get("dead-letter-error").unwrap().as_str().contains("400"));
    assert_eq!(h.get("invocation-id").unwrap().as_str(), id);
    assert_eq!(
        metric(
            &relay,
            "trigger_relay_sink_events_failed_total",
            &["reason=\"rejected\""]
        )
        .await,
        1.0
    );
}

/// The egress policy, on the resolved address of each connection: inward addresses in any spelling are refused
/// (final, not retried, the webhook never called), an allow-list opens them, the relay's own ingress stays refused
/// even then, and a loop through a proxy is stopped by the ingress (508) after one hop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn egress_policy_refuses_inward_addresses_at_connect_time() {
    let hook = Webhook::start().await;
    let port = hook
        .url("")
        .rsplit(':')
        .next()
        .unwrap()
        .parse::<u16>()
        .unwrap();
    let own_port = free_port();
    // A TCP proxy to the relay's ingress: a "load balancer" in front of the relay.
    let proxy = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy_port = proxy.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = proxy.accept().await {
            tokio::spawn(async move {
                if let Ok(mut out) = tokio::net::TcpStream::connect(("127.0.0.1", own_port)).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut out).await;
                }
            });
        }
    });
    struct Case {
        what: &'static str,
        url: String,
        allow: bool,
        status: u16,
        cause: &'static str,
    }
    let refused = |what, url: String, cause| Case {
        what,
        url,
        allow: false,
        status: 502,
        cause,
    };
    let cases = [
        refused(
            "loopback literal",
            format!("http://127.0.0.1:{port}/hook"),
            "127.0.0.1 is loopback",
        ),
        refused(
            "a name that resolves to loopback",
            format!("http://localhost:{port}/hook"),
            "is loopback",
        ),
        refused(
            "cloud metadata",
            "http://169.254.169.254/latest/meta-data/".into(),
            "link-local",
        ),
        refused(
            "IPv4-mapped IPv6",
            format!("http://[::ffff:127.0.0.1]:{port}/hook"),
            "IPv6 form",
        ),
        refused(
            "decimal IPv4",
            format!("http://2130706433:{port}/hook"),
            "loopback",
        ),
        refused(
            "private range",
            "http://10.1.2.3/hook".into(),
            "private (RFC 1918)",
        ),
        Case {
            what: "allowed by allow_cidrs",
            url: format!("http://127.0.0.1:{port}/hook"),
            allow: true,
            status: 200,
            cause: "",
        },
        Case {
            what: "the relay's own ingress, even when loopback is allowed",
            url: format!("http://127.0.0.1:{own_port}/events/idn:identity-created"),
            allow: true,
            status: 502,
            cause: "own listener",
        },
        Case {
            what: "a loop through a proxy",
            url: format!("http://127.0.0.1:{proxy_port}/events/idn:identity-created"),
            allow: true,
            status: 502,
            cause: "HTTP 508",
        },
    ];
    for c in cases {
        let allow = if c.allow {
            "[sinks.http.egress]\nallow_cidrs = [\"127.0.0.0/8\"]\n"
        } else {
            ""
        };
        let toml = format!(
            "{allow}[ingress]\nlisten = \"127.0.0.1:{own_port}\"\n[ingress.auth]\nnone = true\n[delivery]\nack = \"delivered\"\n\
             [[subscriptions]]\nname = \"egress\"\ntriggerId = \"idn:identity-created\"\ntype = \"HTTP\"\n\
             httpConfig = {{ url = \"{}\" }}\n",
            c.url
        );
        let mut config = trigger_relay::Config::from_toml(&toml).unwrap();
        config.admin.listen = "127.0.0.1:0".parse().unwrap();
        let relay = trigger_relay::Relay::start(config)
            .await
            .expect("relay starts");
        wait_ready(&relay).await;
        let before = hook.received().len();
        let started = std::time::Instant::now();
        let r = post_event(
            &relay,
            "/events/idn:identity-created",
            example_body("idn:identity-created", &unique("egress")),
        )
        .await;
        let body = String::from_utf8_lossy(&r.body).to_string();
        assert_eq!(r.status, c.status, "{}: {body}", c.what);
        assert!(body.contains(c.cause), "{}: {body}", c.what);
        if c.status != 200 {
            assert_eq!(
                hook.received().len(),
                before,
                "{}: the webhook must not be called",
                c.what
            );
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "{}: refused at once, not retried",
                c.what
            );
        }
        relay.shutdown();
        relay.wait().await;
    }
}
