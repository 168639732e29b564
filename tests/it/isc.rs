//! `trigger-relay isc sync` and `isc test` with real components: a second relay plays the tenant (its Triggers
//! API is ISC's wire format, and its HTTP subscriptions really call the first relay's ingress), a proxy in front
//! of it answers `429` first, and a fixture tenant serves ISC's own answer shapes (`tests/fixtures/isc/`) on the
//! `/beta` mount only.

use crate::support;

use std::net::SocketAddr;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};
use support::*;

const CLIENT_SECRET: &str = "isc-client-secret-0123456789abcdef";
const OPS_TOKEN: &str = "relay-ops-token-0123456789abcdef01234567";
const TOKEN_A: &str = "ingress-token-A-0123456789abcdef0123456789";
const TOKEN_B: &str = "ingress-token-B-0123456789abcdef0123456789";

/// One request a [`Server`] saw.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    uri: String,
    authorization: Option<String>,
    body: Bytes,
}

type Answer = http::Response<Full<Bytes>>;
type Handler = Arc<dyn Fn(&Seen) -> Option<Answer> + Send + Sync>;

/// A loopback HTTP server that records every request, answers what `handler` answers and forwards the rest to
/// `upstream` (a recording, fault-injecting proxy), or answers 404.
struct Server {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Server {
    async fn start(upstream: Option<SocketAddr>, handler: Handler) -> Self {
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let log = seen.clone();
        let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
        // The task is not aborted when the server is dropped: it serves until the test ends.
        let (addr, _task) = serve(move |req: http::Request<hyper::body::Incoming>| {
            let (log, handler, client) = (log.clone(), handler.clone(), client.clone());
            async move {
                let (parts, body) = req.into_parts();
                let body = body.collect().await.unwrap().to_bytes();
                let s = Seen {
                    method: parts.method.to_string(),
                    uri: parts.uri.to_string(),
                    authorization: parts
                        .headers
                        .get("authorization")
                        .map(|v| v.to_str().unwrap().to_string()),
                    body: body.clone(),
                };
                log.lock().unwrap().push(s.clone());
                if let Some(a) = handler(&s) {
                    return a;
                }
                let Some(up) = upstream else {
                    return answer(404, include_str!("../fixtures/isc/not-found.json"));
                };
                let mut b = http::Request::builder()
                    .method(parts.method)
                    .uri(format!("http://{up}{}", parts.uri));
                for (k, v) in &parts.headers {
                    if k != "host" {
                        b = b.header(k, v);
                    }
                }
                let r = client
                    .request(b.body(Full::new(body)).unwrap())
                    .await
                    .unwrap();
                let (p, body) = r.into_parts();
                let body = body.collect().await.unwrap().to_bytes();
                http::Response::from_parts(p, Full::new(body))
            }
        })
        .await;
        Self { addr, seen }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// Requests that change something (not GET, not the token).
    fn writes(&self) -> Vec<Seen> {
        self.seen()
            .into_iter()
            .filter(|s| s.method != "GET" && !s.uri.starts_with("/oauth/token"))
            .collect()
    }
}

fn answer(status: u16, body: &str) -> Answer {
    http::Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap()
}

/// A proxy that answers the first `n` requests with ISC's 429 (`Retry-After: 1`), then forwards.
fn throttle_first(n: usize) -> Handler {
    let left = Arc::new(Mutex::new(n));
    Arc::new(move |_| {
        let mut l = left.lock().unwrap();
        (*l > 0).then(|| {
            *l -= 1;
            http::Response::builder()
                .status(429)
                .header("retry-after", "2")
                .body(Full::new(Bytes::from_static(
                    b"{\"message\": \" Rate Limit Exceeded \"}",
                )))
                .unwrap()
        })
    })
}

/// Run `trigger-relay <args>` with `config` written to a file; (exit code, stdout, stderr).
fn cli(config: &str, args: &[&str]) -> (i32, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("relay.toml");
    std::fs::write(&path, config).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_trigger-relay"))
        .arg("--config")
        .arg(&path)
        .args(args)
        .env("ISC_CLIENT_SECRET", CLIENT_SECRET)
        .output()
        .expect("run trigger-relay");
    let (o, e) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    for secret in [CLIENT_SECRET, OPS_TOKEN, TOKEN_A, TOKEN_B] {
        assert!(
            !o.contains(secret) && !e.contains(secret),
            "a secret was printed:\n{o}\n{e}"
        );
    }
    (out.status.code().unwrap_or(-1), o, e)
}

/// The tenant: a relay whose Triggers API plays ISC, its webhooks allowed to call loopback.
async fn tenant(store: &std::path::Path) -> trigger_relay::Relay {
    let digest = sha256_hex(CLIENT_SECRET);
    let store = store.join("tenant.json");
    start(&format!(
        r#"
[ingress.auth]
none = true
[sinks.http.egress]
allow_cidrs = ["127.0.0.0/8"]
[api]
enabled = true
store_path = "{}"
[[api.clients]]
client_id = "isc-sync"
client_secret_sha256 = "{digest}"
scopes = ["sp:scopes:all"]
"#,
        store.display()
    ))
    .await
}

/// An access token of the tenant's OAuth client.
async fn tenant_token(tenant: &trigger_relay::Relay) -> String {
    request(
        "POST",
        tenant.admin_addr(),
        &format!("/oauth/token?grant_type=client_credentials&client_id=isc-sync&client_secret={CLIENT_SECRET}"),
        &[],
        "",
    )
    .await
    .json()["access_token"]
        .as_str()
        .unwrap()
        .to_string()
}

/// The tenant's subscriptions, as its API lists them.
async fn tenant_subs(tenant: &trigger_relay::Relay) -> Vec<Value> {
    let token = tenant_token(tenant).await;
    let r = request(
        "GET",
        tenant.admin_addr(),
        "/beta/trigger-subscriptions",
        &[("authorization", &format!("Bearer {token}"))],
        "",
    )
    .await;
    assert_eq!(r.status, 200);
    let mut v: Vec<Value> = serde_json::from_value(r.json()).unwrap();
    v.sort_by_key(|s| s["triggerId"].as_str().unwrap().to_string());
    v
}

/// Create a subscription on the tenant (what an admin made by hand, or an earlier relay left).
async fn tenant_create(tenant: &trigger_relay::Relay, body: Value) -> Value {
    let token = tenant_token(tenant).await;
    let r = request(
        "POST",
        tenant.admin_addr(),
        "/beta/trigger-subscriptions",
        &[
            ("authorization", &format!("Bearer {token}")),
            ("content-type", "application/json"),
        ],
        body.to_string(),
    )
    .await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    r.json()
}

fn isc_table(tenant_url: &str, public_url: &str, relay_api: SocketAddr) -> String {
    format!(
        r#"
[isc]
tenant_url = "{tenant_url}"
client_id = "isc-sync"
client_secret = "${{ISC_CLIENT_SECRET}}"
public_url = "{public_url}"
relay_api_url = "http://{relay_api}"
"#
    )
}

fn row<'a>(out: &'a str, trigger: &str) -> &'a str {
    out.lines()
        .find(|l| l.starts_with(&format!("{trigger} ")))
        .unwrap_or_else(|| panic!("no row for {trigger} in:\n{out}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_reconciles_the_tenant_and_test_proves_the_path_to_kafka_and_nats() {
    let bootstrap = kafka();
    let nats_url = nats();
    let topic = unique("isc-identity");
    create_topic(&bootstrap, &topic).await;
    let subject = unique("isc.correlated");
    let store = tempfile::tempdir().unwrap();
    // The relay: one Kafka route from its config file, one NATS route created through its API.
    let relay_base = format!(
        r#"
[delivery]
ack = "delivered"
{}{}[api]
enabled = true
store_path = "{}"
{}{}"#,
        kafka_sink("main", &bootstrap),
        nats_sink("main", &nats_url),
        store.path().join("store.json").display(),
        admin_token("ops", OPS_TOKEN),
        kafka_subscription("identities", CREATED, &topic)
    );
    let relay = start(&format!(
        "[ingress.auth]\nbearer_tokens = [\"{TOKEN_A}\", \"{TOKEN_B}\"]\n{relay_base}"
    ))
    .await;
    wait_ready(&relay).await;
    let r = request(
        "POST",
        relay.admin_addr(),
        "/beta/trigger-subscriptions",
        &[
            ("authorization", &format!("Bearer {OPS_TOKEN}")),
            ("content-type", "application/json"),
        ],
        json!({"name": "correlations", "triggerId": "idn:account-correlated", "type": "NATS",
               "natsConfig": {"subject": subject}})
        .to_string(),
    )
    .await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let nats_sub_id = r.json()["id"].as_str().unwrap().to_string();

    let tenant = tenant(store.path()).await;
    // An admin's own subscription on a trigger the relay routes, and one an earlier relay left behind.
    let unmanaged = tenant_create(
        &tenant,
        json!({"name": "SIEM", "description": "hand-made", "triggerId": "idn:identity-created", "type": "HTTP",
               "httpConfig": {"url": "http://127.0.0.1:9/siem", "httpDispatchMode": "SYNC", "httpAuthenticationType": "NO_AUTH"}}),
    )
    .await;
    let stale = tenant_create(
        &tenant,
        json!({"name": "trigger-relay idn:source-deleted", "triggerId": "idn:source-deleted", "type": "HTTP",
               "description": "[trigger-relay:default] cred:00000000",
               "httpConfig": {"url": "http://127.0.0.1:9/events/idn:source-deleted", "httpDispatchMode": "SYNC",
                              "httpAuthenticationType": "NO_AUTH"}}),
    )
    .await;
    // ISC's rate limit in front of the tenant: the first two calls are answered 429.
    let proxy = Server::start(Some(tenant.admin_addr()), throttle_first(2)).await;
    let ingress = format!("http://{}", relay.ingress_addr());
    let config_v1 = format!(
        "[ingress.auth]\nbearer_tokens = [\"{TOKEN_A}\"]\n{relay_base}{}",
        isc_table(&proxy.url(), &ingress, relay.admin_addr())
    );

    // Dry run: the plan, and nothing changes.
    let before = tenant_subs(&tenant).await;
    let began = std::time::Instant::now();
    let (code, out, err) = cli(&config_v1, &["isc", "sync", "--dry-run"]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(err.contains("rate limiting (429)"), "{err}");
    // Two 429s with `Retry-After: 2`: the run waited them out, not the client's 1 s fallback.
    assert!(
        began.elapsed() >= Duration::from_secs(4),
        "{:?}",
        began.elapsed()
    );
    let throttled = proxy.seen().len();
    assert!(
        throttled >= 3,
        "the 429s were not retried: {:?}",
        proxy.seen()
    );
    assert!(
        row(&out, "idn:identity-created").contains(" create "),
        "{out}"
    );
    assert!(
        row(&out, "idn:account-correlated").contains(" create "),
        "{out}"
    );
    assert!(
        row(&out, "idn:source-deleted").contains(" delete "),
        "{out}"
    );
    assert!(
        out.contains("1 unmanaged subscription(s) left alone"),
        "{out}"
    );
    assert!(out.contains("nothing was changed"), "{out}");
    assert!(
        proxy.writes().is_empty(),
        "a dry run wrote: {:?}",
        proxy.writes()
    );
    assert_eq!(tenant_subs(&tenant).await, before);

    // The real run.
    let (code, out, err) = cli(&config_v1, &["isc", "sync"]);
    assert_eq!(code, 0, "{out}\n{err}");
    let subs = tenant_subs(&tenant).await;
    let managed: Vec<&Value> = subs
        .iter()
        .filter(|s| {
            s["description"]
                .as_str()
                .unwrap_or("")
                .contains("[trigger-relay:default]")
        })
        .collect();
    let triggers: Vec<&str> = managed
        .iter()
        .map(|s| s["triggerId"].as_str().unwrap())
        .collect();
    assert_eq!(
        triggers,
        ["idn:account-correlated", "idn:identity-created"],
        "{subs:#?}"
    );
    for s in &managed {
        let t = s["triggerId"].as_str().unwrap();
        assert_eq!(s["httpConfig"]["url"], format!("{ingress}/events/{t}"));
        assert_eq!(s["httpConfig"]["httpAuthenticationType"], "BEARER_TOKEN");
        assert_eq!(s["enabled"], true);
    }
    assert!(
        subs.iter().all(|s| s["id"] != stale["id"]),
        "the stale one stays"
    );
    assert_eq!(
        subs.iter().find(|s| s["id"] == unmanaged["id"]),
        Some(&unmanaged),
        "the unmanaged subscription was touched"
    );

    // Idempotent: a second run writes nothing.
    let writes = proxy.writes().len();
    let (code, out, err) = cli(&config_v1, &["isc", "sync"]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("in step"), "{out}");
    assert_eq!(proxy.writes().len(), writes, "a second run wrote");

    // `isc test`: through the tenant's HTTP subscriptions to the relay's ingress, then Kafka and NATS.
    let (_nc, mut nats_in) = nats_subscriber(&nats_url, &subject).await;
    let (code, out, err) = cli(&config_v1, &["isc", "test", "--timeout", "30s"]);
    assert_eq!(code, 0, "{out}\n{err}");
    for t in ["idn:identity-created", "idn:account-correlated"] {
        let r = row(&out, t);
        assert!(r.contains("delivered") && r.contains("1/1"), "{out}");
    }
    let records = consume(&bootstrap, &topic, 1, Duration::from_secs(20));
    assert_eq!(records.len(), 1, "the Kafka topic holds the test event");
    assert!(records[0].headers.contains_key("invocation-id"));
    let msg = tokio::time::timeout(
        Duration::from_secs(10),
        futures_util::StreamExt::next(&mut nats_in),
    )
    .await
    .expect("the NATS subject got the test event")
    .unwrap();
    let body: Value = serde_json::from_slice(&msg.payload).unwrap();
    assert_eq!(body["_metadata"]["triggerId"], "idn:account-correlated");

    // A credential rotation and a new public URL (a proxy in front of the ingress, which records what the
    // tenant sends): both subscriptions are updated, and the tenant calls with the newest token.
    let front = Server::start(Some(relay.ingress_addr()), Arc::new(|_| None)).await;
    let config_v2 = format!(
        "[ingress.auth]\nbearer_tokens = [\"{TOKEN_A}\", \"{TOKEN_B}\"]\n{relay_base}{}",
        isc_table(&proxy.url(), &front.url(), relay.admin_addr())
    );
    let (code, out, err) = cli(&config_v2, &["isc", "sync", "--dry-run"]);
    assert_eq!(code, 0, "{out}\n{err}");
    for t in ["idn:identity-created", "idn:account-correlated"] {
        let r = row(&out, t);
        assert!(
            r.contains(" update ") && r.contains("credential rotated") && r.contains("url"),
            "{out}"
        );
    }
    let (code, out, err) = cli(&config_v2, &["isc", "sync"]);
    assert_eq!(code, 0, "{out}\n{err}");
    let (code, out, err) = cli(
        &config_v2,
        &["isc", "test", "--trigger", "idn:account-correlated"],
    );
    assert_eq!(code, 0, "{out}\n{err}");
    let calls = front.seen();
    assert!(!calls.is_empty(), "the tenant did not call the new URL");
    assert!(
        calls
            .iter()
            .all(|c| c.authorization.as_deref() == Some(&*format!("Bearer {TOKEN_B}"))),
        "the tenant still calls with the old token: {calls:?}"
    );

    // The relay no longer routes idn:account-correlated: its managed subscription goes, the rest stays.
    let r = request(
        "DELETE",
        relay.admin_addr(),
        &format!("/beta/trigger-subscriptions/{nats_sub_id}"),
        &[("authorization", &format!("Bearer {OPS_TOKEN}"))],
        "",
    )
    .await;
    assert_eq!(r.status, 204);
    let (code, out, err) = cli(&config_v2, &["isc", "sync"]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        row(&out, "idn:account-correlated").contains(" delete "),
        "{out}"
    );
    let subs = tenant_subs(&tenant).await;
    assert!(
        subs.iter()
            .all(|s| s["triggerId"] != "idn:account-correlated"),
        "{subs:#?}"
    );
    assert!(subs.iter().any(|s| s["id"] == unmanaged["id"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_speaks_iscs_wire_format_on_the_beta_mount() {
    // A fixture tenant: ISC's answers (tests/fixtures/isc/), only on `/beta`; the first list page is full
    // (250 unmanaged subscriptions), so the client must page.
    let filler: Vec<Value> = (0..250)
        .map(|i| {
            let mut s: Value =
                serde_json::from_str(include_str!("../fixtures/isc/subscriptions.json")).unwrap();
            let mut one = s[0].take();
            one["id"] = json!(format!("filler-{i}"));
            one
        })
        .collect();
    let filler = Value::Array(filler).to_string();
    let tenant = Server::start(
        None,
        Arc::new(move |s: &Seen| {
            let path = s.uri.split('?').next().unwrap();
            match (s.method.as_str(), path) {
                ("POST", "/oauth/token") => {
                    Some(answer(200, include_str!("../fixtures/isc/token.json")))
                }
                ("GET", "/beta/trigger-subscriptions") if s.uri.contains("offset=0") => {
                    Some(answer(200, &filler))
                }
                ("GET", "/beta/trigger-subscriptions") => Some(answer(
                    200,
                    include_str!("../fixtures/isc/subscriptions.json"),
                )),
                ("POST", "/beta/trigger-subscriptions") => {
                    Some(answer(201, include_str!("../fixtures/isc/created.json")))
                }
                ("DELETE", p) if p.starts_with("/beta/trigger-subscriptions/") => Some(
                    http::Response::builder()
                        .status(204)
                        .body(Full::new(Bytes::new()))
                        .unwrap(),
                ),
                _ => None,
            }
        }),
    )
    .await;
    // A relay config without the API: its routes are its config file's.
    let config = format!(
        r#"
[ingress.auth]
bearer_tokens = ["{TOKEN_A}"]
[[subscriptions]]
name = "out"
triggerId = "idn:identity-created"
type = "STDOUT"
filter = '$[?(@.attributes.department == "Sales")]'
[isc]
push_filters = true
tenant_url = "{}"
client_id = "isc-sync"
client_secret = "${{ISC_CLIENT_SECRET}}"
public_url = "https://relay.example.com/"
"#,
        tenant.url()
    );
    let (code, out, err) = cli(&config, &["isc", "sync"]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        row(&out, "idn:identity-created").contains("created 5d4c3b2a"),
        "{out}"
    );
    assert!(
        row(&out, "idn:source-deleted").contains("deleted 9e8d7c6b"),
        "{out}"
    );
    let seen = tenant.seen();
    let token = seen
        .iter()
        .find(|s| s.uri == "/oauth/token")
        .expect("a token request");
    let form: std::collections::HashMap<String, String> =
        form_urlencoded::parse(&token.body).into_owned().collect();
    assert_eq!(form["grant_type"], "client_credentials");
    assert_eq!(form["client_id"], "isc-sync");
    assert_eq!(form["client_secret"], CLIENT_SECRET);
    // v1 first (404 on this tenant), then beta, page by page.
    let lists: Vec<&str> = seen
        .iter()
        .filter(|s| s.method == "GET")
        .map(|s| s.uri.as_str())
        .collect();
    assert_eq!(
        lists,
        [
            "/trigger-subscriptions/v1?limit=250&offset=0",
            "/beta/trigger-subscriptions?limit=250&offset=0",
            "/beta/trigger-subscriptions?limit=250&offset=250",
        ]
    );
    let bearer = "Bearer eyJhbGciOiJSUzI1NiJ9.eyJ0ZW5hbnRfaWQiOiJmaXh0dXJlIn0.c2ln";
    assert!(seen
        .iter()
        .filter(|s| s.uri != "/oauth/token")
        .all(|s| s.authorization.as_deref() == Some(bearer)));
    let create = seen
        .iter()
        .find(|s| s.method == "POST" && s.uri == "/beta/trigger-subscriptions")
        .unwrap();
    let body: Value = serde_json::from_slice(&create.body).unwrap();
    assert_eq!(body["triggerId"], "idn:identity-created");
    assert_eq!(body["type"], "HTTP");
    assert_eq!(body["enabled"], true);
    assert_eq!(
        body["httpConfig"],
        json!({"url": "https://relay.example.com/events/idn:identity-created", "httpDispatchMode": "SYNC",
               "httpAuthenticationType": "BEARER_TOKEN", "bearerTokenAuthConfig": {"bearerToken": TOKEN_A}})
    );
    // Every relay subscription of the trigger is filtered: the tenant gets the (here single) filter.
    assert_eq!(body["filter"], "$[?(@.attributes.department == \"Sales\")]");
    assert!(body["description"]
        .as_str()
        .unwrap()
        .contains("[trigger-relay:default]"));
    // Exactly one create and one delete, the create first: the unmanaged EVENTBRIDGE and HTTP subscriptions
    // are left alone.
    let writes: Vec<String> = tenant.writes().iter().map(|w| w.method.clone()).collect();
    assert_eq!(writes, ["POST", "DELETE"], "{:?}", tenant.writes());
}

/// Exit codes and the messages that say what to do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn isc_commands_say_what_is_wrong() {
    let closed = free_port();
    let refusing = Server::start(
        None,
        Arc::new(|s: &Seen| {
            (s.uri == "/oauth/token").then(|| {
                answer(
                    401,
                    r#"{"error": "invalid_client", "error_description": "Bad credentials"}"#,
                )
            })
        }),
    )
    .await;
    // Lists an empty tenant; a create answers 503 for one trigger and 400 for another.
    let failing = Server::start(
        None,
        Arc::new(|s: &Seen| match (s.method.as_str(), s.uri.split('?').next().unwrap()) {
            ("POST", "/oauth/token") => Some(answer(200, include_str!("../fixtures/isc/token.json"))),
            ("GET", "/trigger-subscriptions/v1") => Some(answer(200, "[]")),
            ("POST", "/trigger-subscriptions/v1") if String::from_utf8_lossy(&s.body).contains("idn:identity-created") => {
                Some(answer(503, r#"{"detailCode": "503 Service Unavailable", "messages": []}"#))
            }
            // A tenant that quotes the request in its error: the credential in it must not be printed.
            ("POST", "/trigger-subscriptions/v1") => Some(answer(
                400,
                &json!({"detailCode": "400.0 Bad request syntax", "messages": [{"locale": "en-US",
                        "localeOrigin": "DEFAULT", "text": format!("refused {}", serde_json::from_slice::<Value>(&s.body).unwrap()["httpConfig"])}]})
                .to_string(),
            )),
            _ => None,
        }),
    )
    .await;
    let base = format!("[ingress.auth]\nbearer_tokens = [\"{TOKEN_A}\"]\n[[subscriptions]]\nname = \"o\"\ntriggerId = \"idn:identity-created\"\ntype = \"STDOUT\"\n");
    let isc = |tenant: &str| {
        format!(
            "{base}[isc]\ntenant_url = \"{tenant}\"\nclient_id = \"c\"\nclient_secret = \"${{ISC_CLIENT_SECRET}}\"\npublic_url = \"https://relay.example.com\"\n"
        )
    };
    struct Case {
        name: &'static str,
        config: String,
        args: &'static [&'static str],
        code: i32,
        says: &'static str,
    }
    let cases = [
        Case {
            name: "no [isc] table",
            config: base.clone(),
            args: &["isc", "sync"],
            code: 1,
            says: "no [isc] table",
        },
        Case {
            name: "tenant unreachable",
            config: isc(&format!("http://127.0.0.1:{closed}")),
            args: &["isc", "sync", "--dry-run"],
            code: 3,
            says: "cannot reach",
        },
        Case {
            name: "credentials refused",
            config: isc(&refusing.url()),
            args: &["isc", "sync"],
            code: 1,
            says: "check [isc] client_id",
        },
        Case {
            name: "a change the tenant fails with 503 is worth a retry",
            config: isc(&failing.url()),
            args: &["isc", "sync"],
            code: 3,
            says: "FAILED: POST",
        },
        Case {
            name: "a change the tenant refuses needs a fix",
            config: isc(&failing.url()).replace("idn:identity-created", "idn:source-created"),
            args: &["isc", "sync"],
            code: 1,
            says: "400 Bad Request",
        },
        Case {
            name: "test without the API",
            config: isc(&refusing.url()),
            args: &["isc", "test"],
            code: 1,
            says: "enable [api]",
        },
        Case {
            name: "basic credential missing",
            config: isc("https://acme.api.identitynow.com")
                .replace("[isc]\n", "[isc]\ncredential = \"basic\"\n"),
            args: &["isc", "sync"],
            code: 1,
            says: "isc.credential",
        },
    ];
    for c in &cases {
        let (code, out, err) = cli(&c.config, c.args);
        assert_eq!(code, c.code, "{}: exit code\n{out}\n{err}", c.name);
        assert!(
            err.contains(c.says) || out.contains(c.says),
            "{}: says {:?}\n{out}\n{err}",
            c.name,
            c.says
        );
    }
}
