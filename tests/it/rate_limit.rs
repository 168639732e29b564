//! `[ingress.rate_limit]` through the real relay: a per-source-IP limit (checked before auth) and a per-credential
//! limit (after auth) answer 429 + `Retry-After` in ISC's `ErrorResponseDto` shape, count the refusal by scope and
//! enqueue nothing; other sources and credentials are unaffected; the tracked-source table has a hard cap (new
//! sources fail open, counted); and it is all off by default.
//!
//! Source IPs: Linux routes all of 127.0.0.0/8 to loopback, so a client bound to 127.0.0.2 reaches the relay on
//! 127.0.0.1 as a different peer. Windows are 10 minutes, so no limit resets mid-test; nothing sleeps.

use crate::support;

use std::net::IpAddr;

use base64::Engine;
use support::*;
use trigger_relay::Relay;

const TRIGGER: &str = "idn:identity-created";
const WINDOW_MS: u64 = 600_000;

fn basic(user: &str, pass: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
    )
}

/// A relay with two Basic users (`alice`/`pa`, `bob`/`pb`) and a bearer token (`tok-1-0123456789abcdef0123456789`), a DISCARD subscription
/// in `delivered` mode (a 200 means the event reached the sink, so the sink's count is exact), and `limits`
/// under `[ingress.rate_limit]` (none: no table at all).
async fn relay(limits: Option<&str>) -> Relay {
    let table = limits
        .map(|l| format!("[ingress.rate_limit]\n{l}\n"))
        .unwrap_or_default();
    start(&format!(
        r#"
[ingress.auth]
basic = [{{ username = "alice", password = "pa" }}, {{ username = "bob", password = "pb" }}]
bearer_tokens = ["tok-1-0123456789abcdef0123456789"]
{table}
[delivery]
ack = "delivered"
[[subscriptions]]
name = "d"
triggerId = "{TRIGGER}"
type = "DISCARD"
"#
    ))
    .await
}

/// One request of a scripted sequence: from a source IP, with an `Authorization` value, and the answer it gets.
struct Step {
    from: &'static str,
    /// `X-Forwarded-For`, when the step sends one.
    forwarded: Option<&'static str>,
    auth: String,
    status: u16,
    /// For a 429: the `[ingress.rate_limit]` key its cause names, and further text the causes contain.
    limit_key: &'static str,
    cause: &'static str,
}

fn step(from: &'static str, auth: impl Into<String>, status: u16) -> Step {
    Step {
        from,
        forwarded: None,
        auth: auth.into(),
        status,
        limit_key: "",
        cause: "",
    }
}

impl Step {
    fn forwarded_for(mut self, xff: &'static str) -> Step {
        self.forwarded = Some(xff);
        self
    }
}

fn limited(
    from: &'static str,
    auth: impl Into<String>,
    key: &'static str,
    cause: &'static str,
) -> Step {
    Step {
        from,
        forwarded: None,
        auth: auth.into(),
        status: 429,
        limit_key: key,
        cause,
    }
}

/// POST an example event from source address `from`.
async fn post_from(relay: &Relay, from: &str, forwarded: Option<&str>, auth: &str) -> Response {
    let mut headers = vec![
        ("content-type", "application/json"),
        ("authorization", auth),
    ];
    if let Some(xff) = forwarded {
        headers.push(("x-forwarded-for", xff));
    }
    request_from(
        Some(from.parse::<IpAddr>().unwrap()),
        "POST",
        relay.ingress_addr(),
        &format!("/events/{TRIGGER}"),
        &headers,
        example_body(TRIGGER, &unique("inv")),
    )
    .await
}

/// Run `steps` in order; every 429 must carry `Retry-After` (1 s to the window), `X-Tracking-Id` and an
/// `ErrorResponseDto` whose cause names the limit. Returns how many were answered 200.
async fn check(relay: &Relay, steps: &[Step]) -> usize {
    let mut ok = 0;
    for (i, s) in steps.iter().enumerate() {
        let r = post_from(relay, s.from, s.forwarded, &s.auth).await;
        let what = format!("step {i} (from {}, {:?})", s.from, s.auth);
        assert_eq!(
            r.status,
            s.status,
            "{what}: {}",
            String::from_utf8_lossy(&r.body)
        );
        if r.status == 200 {
            ok += 1;
        }
        if r.status != 429 {
            continue;
        }
        let retry: u64 = r
            .headers
            .get("retry-after")
            .unwrap_or_else(|| panic!("{what}: no Retry-After"))
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(
            (1..=WINDOW_MS / 1000).contains(&retry),
            "{what}: Retry-After {retry}"
        );
        let tracking = r.headers["x-tracking-id"].to_str().unwrap().to_string();
        let j = r.json();
        assert_eq!(j["detailCode"], "429 Too Many Requests", "{what}: {j}");
        assert_eq!(j["trackingId"], tracking.as_str(), "{what}");
        assert_eq!(tracking.len(), 32, "{what}");
        let text = j["messages"][0]["text"].as_str().unwrap();
        assert!(text.contains("rate limit exceeded"), "{what}: {text}");
        assert_eq!(j["messages"][0]["locale"], "en-US", "{what}");
        let causes = j["causes"].to_string();
        assert!(
            causes.contains(&format!("ingress.rate_limit.{}", s.limit_key))
                && causes.contains(&format!("per {WINDOW_MS} ms")),
            "{what}: {causes}"
        );
        assert!(
            causes.contains(s.cause),
            "{what}: {causes} lacks {:?}",
            s.cause
        );
    }
    ok
}

/// Rate-limited answers by scope, and events the sink received.
async fn counts(relay: &Relay) -> (f64, f64, f64) {
    let name = "trigger_relay_ingress_rate_limited_requests_total";
    (
        metric(relay, name, &["scope=\"ip\""]).await,
        metric(relay, name, &["scope=\"credential\""]).await,
        metric(
            relay,
            "trigger_relay_sink_events_sent_total",
            &["sink=\"discard\""],
        )
        .await,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_ip_limit_is_checked_before_auth_and_spares_other_sources() {
    let relay = relay(Some(&format!(
        "per_ip_requests = 3\nwindow_ms = {WINDOW_MS}"
    )))
    .await;
    let alice = basic("alice", "pa");
    let steps = [
        step("127.0.0.2", &alice, 200),
        step("127.0.0.2", &alice, 200),
        // A failed login counts for its source too.
        step("127.0.0.2", basic("alice", "wrong"), 401),
        limited("127.0.0.2", &alice, "per_ip_requests allows 3 requests", ""),
        // Over the limit, credentials are not even checked.
        limited("127.0.0.2", basic("alice", "wrong"), "per_ip_requests", ""),
        limited(
            "127.0.0.2",
            "Bearer tok-1-0123456789abcdef0123456789",
            "per_ip_requests",
            "",
        ),
        // Other sources have their own windows, whatever the credential.
        step("127.0.0.3", &alice, 200),
        step("127.0.0.3", basic("bob", "pb"), 200),
        step("127.0.0.4", "Bearer tok-1-0123456789abcdef0123456789", 200),
    ];
    let ok = check(&relay, &steps).await;
    assert_eq!(counts(&relay).await, (3.0, 0.0, ok as f64));
    assert_eq!(
        metric(
            &relay,
            "trigger_relay_ingress_requests_total",
            &["status=\"429\"", &format!("trigger=\"{TRIGGER}\"")]
        )
        .await,
        3.0
    );
    relay.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_trusted_proxies_the_source_is_the_forwarded_client() {
    // 127.0.0.2 and 127.0.0.3 are the proxies (a load balancer in front of an ingress controller).
    let relay = relay(Some(&format!(
        "per_ip_requests = 1
window_ms = {WINDOW_MS}
trusted_proxies = [\"127.0.0.2/32\", \"127.0.0.3/32\"]"
    )))
    .await;
    let alice = basic("alice", "pa");
    let steps = [
        // Through the proxy: each forwarded client has its own window.
        step("127.0.0.2", &alice, 200).forwarded_for("203.0.113.7"),
        limited("127.0.0.2", &alice, "per_ip_requests", "").forwarded_for("203.0.113.7"),
        step("127.0.0.2", &alice, 200).forwarded_for("203.0.113.8"),
        // Two proxies deep: the right-most untrusted hop is the client; what it wrote on the left is ignored.
        limited("127.0.0.2", &alice, "per_ip_requests", "")
            .forwarded_for("198.51.100.1, 203.0.113.7, 127.0.0.3"),
        // Junk the client wrote on the left is never read: the client is the hop the proxy appended.
        step("127.0.0.2", &alice, 200).forwarded_for("junk, 203.0.113.9"),
        limited("127.0.0.2", &alice, "per_ip_requests", "")
            .forwarded_for("unknown, 203.0.113.9:5678"),
        // A hop that does not parse among the proxies' own entries: the proxy itself is the source.
        step("127.0.0.2", &alice, 200).forwarded_for("203.0.113.10, not-an-ip"),
        // From an untrusted peer the header is ignored: spoofing a fresh address does not help.
        step("127.0.0.4", &alice, 200).forwarded_for("192.0.2.1"),
        limited("127.0.0.4", &alice, "per_ip_requests", "").forwarded_for("192.0.2.2"),
    ];
    let ok = check(&relay, &steps).await;
    assert_eq!(counts(&relay).await, (4.0, 0.0, ok as f64));
    relay.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_credential_limit_counts_each_credential_across_sources() {
    let relay = relay(Some(&format!(
        "per_credential_requests = 2\nwindow_ms = {WINDOW_MS}"
    )))
    .await;
    let alice = basic("alice", "pa");
    let bob = basic("bob", "pb");
    let steps = [
        step("127.0.0.2", &alice, 200),
        step("127.0.0.3", &alice, 200),
        // The third request of alice's, from a third source: the limit follows the credential.
        limited(
            "127.0.0.4",
            &alice,
            "per_credential_requests allows 2 requests",
            "credential: basic:alice",
        ),
        // Authentication comes first: a wrong password is a 401, not alice's 429.
        step("127.0.0.2", basic("alice", "wrong"), 401),
        step("127.0.0.2", &bob, 200),
        step("127.0.0.2", &bob, 200),
        limited("127.0.0.2", &bob, "per_credential_requests", "basic:bob"),
        step("127.0.0.2", "Bearer tok-1-0123456789abcdef0123456789", 200),
        limited(
            "127.0.0.5",
            &alice,
            "per_credential_requests",
            "basic:alice",
        ),
    ];
    let ok = check(&relay, &steps).await;
    assert_eq!(counts(&relay).await, (0.0, 3.0, ok as f64));
    relay.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_source_table_lets_new_sources_through_uncounted() {
    let relay = relay(Some(&format!(
        "per_ip_requests = 1\nmax_tracked_keys = 2\nwindow_ms = {WINDOW_MS}"
    )))
    .await;
    let alice = basic("alice", "pa");
    let steps = [
        step("127.0.0.2", &alice, 200),
        step("127.0.0.3", &alice, 200),
        // The table (2 sources) is full of live windows: a third source fails open, every time.
        step("127.0.0.4", &alice, 200),
        step("127.0.0.4", &alice, 200),
        // Tracked sources stay limited.
        limited("127.0.0.2", &alice, "per_ip_requests allows 1 requests", ""),
        limited("127.0.0.3", &alice, "per_ip_requests", ""),
    ];
    let ok = check(&relay, &steps).await;
    assert_eq!(counts(&relay).await, (2.0, 0.0, ok as f64));
    assert_eq!(
        metric(
            &relay,
            "trigger_relay_ingress_rate_limit_untracked_requests_total",
            &["scope=\"ip\""]
        )
        .await,
        2.0
    );
    relay.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn off_by_default() {
    for limits in [None, Some("window_ms = 1\nmax_tracked_keys = 1")] {
        let relay = relay(limits).await;
        let steps: Vec<Step> = (0..30)
            .map(|i| {
                step(
                    "127.0.0.2",
                    basic(["alice", "bob"][i % 2], ["pa", "pb"][i % 2]),
                    200,
                )
            })
            .collect();
        assert_eq!(check(&relay, &steps).await, 30, "{limits:?}");
        assert_eq!(counts(&relay).await, (0.0, 0.0, 30.0), "{limits:?}");
        relay.shutdown();
    }
}
