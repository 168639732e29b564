//! Several relay processes (the real binary) sharing one subscription store on a real engine: subscriptions,
//! tokens and routing are the deployment's, not one pod's. Every case runs against each shared store kind in
//! [`KINDS`] (each case starts its own engine, so it can kill and restart it).

use std::collections::HashSet;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::{ADMIN_TOKEN, CLIENT_SECRET};
use crate::support::reliability::{self, RelayProcess};
use crate::support::webhook::Webhook;
use crate::support::*;

/// The shared store kinds.
const KINDS: &[Kind] = &[Kind::Nats, Kind::Kafka];

#[derive(Clone, Copy, Debug)]
enum Kind {
    Nats,
    Kafka,
}

const SIGNING_KEY: &str = "signing-key-of-the-deployment-0123456789";
const ROTATED_KEY: &str = "next-signing-key-of-the-deployment-98765";
const STORE_KEY: &str = "store-key-of-the-deployment-0123456789ab";

/// One engine a case owns: a private nats-server, or a private tansu keeping its data in moto's S3 (so a
/// restart keeps the topics).
struct Engine {
    kind: Kind,
    nats: Option<PrivateNats>,
    kafka: Option<PrivateKafka>,
    bucket: String,
    _dir: tempfile::TempDir,
}

impl Engine {
    /// An engine that keeps its data only while it runs (the cases that never restart it).
    fn start(kind: Kind) -> Self {
        Self::start_with(kind, false)
    }

    /// An engine that keeps its data across a restart (tansu on moto's S3 is slower, so only where needed).
    fn start_persistent(kind: Kind) -> Self {
        Self::start_with(kind, true)
    }

    fn start_with(kind: Kind, persistent: bool) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (nats, kafka) = match (kind, persistent) {
            (Kind::Nats, _) => (Some(PrivateNats::start(dir.path())), None),
            (Kind::Kafka, true) => (None, Some(PrivateKafka::start_persistent())),
            (Kind::Kafka, false) => (None, Some(PrivateKafka::start())),
        };
        Self {
            kind,
            nats,
            kafka,
            bucket: unique("subs").replace('-', "_"),
            _dir: dir,
        }
    }

    /// The `[api.store]` table (and the connection it names) for this engine.
    fn store_toml(&self) -> String {
        match self.kind {
            Kind::Nats => format!(
                "[api.store]\nkind = \"nats\"\nconnection = \"store\"\nbucket = \"{b}\"\nstatus_bucket = \"{b}_st\"\n\
                 request_timeout_ms = 1000\n[sinks.nats.store]\nservers = [\"{}\"]\n",
                self.nats.as_ref().unwrap().url(),
                b = self.bucket,
            ),
            Kind::Kafka => format!(
                "[api.store]\nkind = \"kafka\"\ncluster = \"store\"\ntopic = \"{b}\"\nstatus_topic = \"{b}_st\"\n\
                 request_timeout_ms = 5000\n[sinks.kafka.store]\nbootstrap_servers = \"{}\"\n",
                self.kafka.as_ref().unwrap().bootstrap(),
                b = self.bucket,
            ),
        }
    }

    fn kill(&mut self) {
        self.nats.iter_mut().for_each(PrivateNats::kill);
        self.kafka.iter_mut().for_each(PrivateKafka::kill);
    }

    fn restart(&mut self) {
        self.nats.iter_mut().for_each(PrivateNats::restart);
        self.kafka.iter_mut().for_each(PrivateKafka::restart);
    }
}

/// A replica's config: the deployment's keys (`signing`, `verifying`), the API, the store.
fn replica_toml(engine: &Engine, signing: &str, verifying: &[&str]) -> String {
    let digest = sha256_hex(CLIENT_SECRET);
    let verifying: Vec<String> = verifying.iter().map(|k| format!("\"{k}\"")).collect();
    format!(
        r#"
{LOOPBACK_HOOKS}
[delivery]
ack = "delivered"
[api]
enabled = true
rate_limit_requests = 100000
store_key = "{STORE_KEY}"
token_signing_key = "{signing}"
token_verification_keys = [{verifying}]
{}{}{store}"#,
        sdk_client(&digest),
        admin_token("admin", ADMIN_TOKEN),
        verifying = verifying.join(", "),
        store = engine.store_toml(),
    )
}

async fn replica(engine: &Engine) -> RelayProcess {
    RelayProcess::start(&replica_toml(engine, SIGNING_KEY, &[])).await
}

async fn call(
    r: &RelayProcess,
    method: &str,
    path: &str,
    token: &str,
    headers: &[(&str, &str)],
    body: Option<Value>,
) -> Response {
    let auth = format!("Bearer {token}");
    let mut h = vec![
        ("authorization", auth.as_str()),
        ("content-type", "application/json"),
    ];
    h.extend_from_slice(headers);
    let bytes = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
    request(method, r.admin, path, &h, bytes).await
}

async fn admin(r: &RelayProcess, method: &str, path: &str, body: Option<Value>) -> Response {
    call(r, method, path, ADMIN_TOKEN, &[], body).await
}

/// `POST /beta/trigger-subscriptions` of [`subscription`], as the admin.
async fn create(r: &RelayProcess, name: &str, trigger: &str, url: &str) -> Response {
    admin(
        r,
        "POST",
        "/beta/trigger-subscriptions",
        Some(subscription(name, trigger, url)),
    )
    .await
}

fn subscription(name: &str, trigger: &str, url: &str) -> Value {
    json!({
        "name": name,
        "triggerId": trigger,
        "type": "HTTP",
        "httpConfig": {
            "url": url,
            "httpAuthenticationType": "BEARER_TOKEN",
            "bearerTokenAuthConfig": { "bearerToken": "webhook-secret-of-team-a" }
        },
        "enabled": true,
    })
}

async fn ids_on(r: &RelayProcess) -> HashSet<String> {
    let l = admin(r, "GET", "/beta/trigger-subscriptions?limit=250", None).await;
    assert_eq!(l.status, 200, "{}", String::from_utf8_lossy(&l.body));
    l.json()
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect()
}

async fn token_from(r: &RelayProcess) -> String {
    let body = format!("grant_type=client_credentials&client_id=sdk&client_secret={CLIENT_SECRET}");
    let t = request(
        "POST",
        r.admin,
        "/oauth/token",
        &[("content-type", "application/x-www-form-urlencoded")],
        body.into_bytes(),
    )
    .await;
    assert_eq!(t.status, 200);
    t.json()["access_token"].as_str().unwrap().to_string()
}

/// Create on A → listed on B and C, and an event posted to B reaches the new subscription; the time from A's
/// 201 to B routing is reported. Tokens from A work on B; a key rotation keeps old tokens until they are dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_share_subscriptions_tokens_and_routing() {
    for kind in KINDS {
        let engine = Engine::start(*kind);
        let hook = Webhook::start().await;
        let a = replica(&engine).await;
        let b = replica(&engine).await;
        // C signs with the next key and still accepts the current one (mid-rotation).
        let c = RelayProcess::start(&replica_toml(&engine, ROTATED_KEY, &[SIGNING_KEY])).await;

        // Tokens: A's works on B and on C; C's (the new key) is refused by A, which does not know it yet.
        let ta = token_from(&a).await;
        let list = |r: &RelayProcess, t: String| {
            let admin = r.admin;
            async move {
                request(
                    "GET",
                    admin,
                    "/trigger-subscriptions/v1",
                    &[("authorization", &format!("Bearer {t}"))],
                    Vec::new(),
                )
                .await
                .status
            }
        };
        assert_eq!(list(&b, ta.clone()).await, 200, "{kind:?}: A's token on B");
        assert_eq!(
            list(&c, ta.clone()).await,
            200,
            "{kind:?}: A's token on C (verification key)"
        );
        // D has finished the rotation: the old key is gone, so A's token (signed with it) is refused.
        let d = RelayProcess::start(&replica_toml(&engine, ROTATED_KEY, &[])).await;
        assert_eq!(
            list(&d, ta.clone()).await,
            401,
            "{kind:?}: a rotated-out key"
        );
        drop(d);
        let tc = token_from(&c).await;
        assert_eq!(
            list(&a, tc.clone()).await,
            401,
            "{kind:?}: a key A does not have"
        );
        assert_eq!(list(&c, tc).await, 200);
        // The access token is a JWT with the claims SailPoint's CLI reads.
        let payload = ta.split('.').nth(1).unwrap();
        let claims: Value = serde_json::from_slice(
            &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, payload)
                .unwrap(),
        )
        .unwrap();
        assert_eq!(claims["client_id"], "sdk");
        assert_eq!(claims["user_name"], "sdk");
        assert!(claims["exp"].as_u64().unwrap() > claims["iat"].as_u64().unwrap());
        assert!(claims["jti"].is_string());

        // Create on A; B routes it.
        let trigger = "idn:identity-created";
        let r = create(&a, "shared", trigger, &hook.url("/shared")).await;
        assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
        let created = Instant::now();
        let id = r.json()["id"].as_str().unwrap().to_string();
        assert!(
            r.headers.get("etag").is_some(),
            "a subscription answer has an ETag"
        );
        // B routes it: post to B until the webhook has an event (each post is one invocation id).
        let mut n = 0;
        while hook.received().is_empty() {
            assert!(
                created.elapsed() < Duration::from_secs(10),
                "{kind:?}: B never routed the subscription A created"
            );
            n += 1;
            let e = post_event(
                &RelayHandle(b.ingress),
                &format!("/events/{trigger}"),
                example_body(trigger, &format!("inv-{n}")),
            )
            .await;
            assert_eq!(e.status, 200);
        }
        let routed_in = created.elapsed();
        eprintln!(
            "[replicas/{kind:?}] from A's 201 to B routing: {routed_in:?} ({n} event(s) posted)"
        );
        // Listed by every replica (each follows the store on its own; only the writer's answer waits for it).
        for r in [&b, &c] {
            eventually(
                "listed on every replica",
                Duration::from_secs(10),
                || async { ids_on(r).await.contains(&id) },
            )
            .await;
        }
        // The secret stays write-only everywhere, and never reaches the engine in clear.
        let got = admin(
            &c,
            "GET",
            &format!("/beta/trigger-subscriptions/{id}"),
            None,
        )
        .await;
        assert_eq!(
            got.json()["httpConfig"]["bearerTokenAuthConfig"]["bearerToken"],
            Value::Null
        );
        assert!(
            !engine_holds(&engine, "webhook-secret-of-team-a").await,
            "{kind:?}: the webhook secret is sealed at rest"
        );
    }
}

/// Whether any value in the engine contains `needle` in clear.
async fn engine_holds(engine: &Engine, needle: &str) -> bool {
    match engine.kind {
        Kind::Kafka => consume(
            &engine.kafka.as_ref().unwrap().bootstrap(),
            &engine.bucket,
            10_000,
            Duration::from_secs(3),
        )
        .iter()
        .any(|r| String::from_utf8_lossy(&r.value).contains(needle)),
        Kind::Nats => {
            let client = async_nats::connect(engine.nats.as_ref().unwrap().url())
                .await
                .unwrap();
            let js = async_nats::jetstream::new(client);
            let kv = js.get_key_value(&engine.bucket).await.unwrap();
            let mut keys = kv.keys().await.unwrap();
            use futures_util::StreamExt;
            let mut found = false;
            while let Some(k) = keys.next().await {
                let v = kv.get(k.unwrap()).await.unwrap().unwrap_or_default();
                found |= String::from_utf8_lossy(&v).contains(needle);
            }
            found
        }
    }
}

/// `post_event` takes a relay; a process has only addresses.
struct RelayHandle(std::net::SocketAddr);

async fn post_event(r: &RelayHandle, path: &str, body: Vec<u8>) -> Response {
    request(
        "POST",
        r.0,
        path,
        &[("content-type", "application/json")],
        body,
    )
    .await
}

/// 100 concurrent creates on one trigger, spread over A and B: exactly 50 land (ISC's limit, held across
/// replicas), every 201 is still there after both restart, every other answer is 400 or 409. Duplicate names on
/// one trigger are refused across replicas too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_creates_across_replicas_hold_the_limit() {
    for kind in KINDS {
        let engine = Engine::start(*kind);
        let hook = Webhook::start().await;
        let mut a = replica(&engine).await;
        let mut b = replica(&engine).await;
        let trigger = "idn:access-request-post-approval";
        let mut tasks = Vec::new();
        for i in 0..100 {
            let (target, url) = (
                if i % 2 == 0 { a.admin } else { b.admin },
                hook.url("/limit"),
            );
            tasks.push(tokio::spawn(async move {
                let body = subscription(&format!("limit {i}"), trigger, &url).to_string();
                let auth = format!("Bearer {ADMIN_TOKEN}");
                let r = request(
                    "POST",
                    target,
                    "/beta/trigger-subscriptions",
                    &[
                        ("authorization", &auth),
                        ("content-type", "application/json"),
                    ],
                    body.into_bytes(),
                )
                .await;
                let id = (r.status == 201).then(|| r.json()["id"].as_str().unwrap().to_string());
                if r.status >= 500 {
                    eprintln!(
                        "[replicas] create answered {}: {}",
                        r.status,
                        String::from_utf8_lossy(&r.body)
                    );
                }
                (r.status, id)
            }));
        }
        let mut created = HashSet::new();
        let mut others = Vec::new();
        for t in tasks {
            match t.await.unwrap() {
                (201, Some(id)) => {
                    created.insert(id);
                }
                (status, _) => others.push(status),
            }
        }
        assert_eq!(
            created.len(),
            50,
            "{kind:?}: exactly ISC's limit lands; others: {others:?}"
        );
        assert!(
            others.iter().all(|s| *s == 400 || *s == 409),
            "{kind:?}: {others:?}"
        );
        // The same name twice on one trigger, on two replicas: the second is a 409.
        let name_trigger = "idn:source-deleted";
        let first = create(&a, "one name", name_trigger, &hook.url("/n")).await;
        assert_eq!(first.status, 201);
        let second = create(&b, "one name", name_trigger, &hook.url("/n")).await;
        assert_eq!(
            second.status,
            409,
            "{}",
            String::from_utf8_lossy(&second.body)
        );
        created.insert(first.json()["id"].as_str().unwrap().to_string());

        // Both restart; every 201 is still there, on both.
        a.terminate().await;
        b.terminate().await;
        let a2 = replica(&engine).await;
        let b2 = replica(&engine).await;
        assert_eq!(
            ids_on(&a2).await,
            created,
            "{kind:?}: after restarting both"
        );
        assert_eq!(ids_on(&b2).await, created);
    }
}

/// `If-Match`: a stale version is refused with 412 on any replica; without it the last write wins and nothing
/// else is lost (concurrent changes to two subscriptions of one trigger, on two replicas, both stay).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn if_match_across_replicas() {
    for kind in KINDS {
        let engine = Engine::start(*kind);
        let hook = Webhook::start().await;
        let a = replica(&engine).await;
        let b = replica(&engine).await;
        let trigger = "idn:account-correlated";
        let mk = |name: &str| subscription(name, trigger, &hook.url("/m"));
        let one = admin(&a, "POST", "/beta/trigger-subscriptions", Some(mk("first"))).await;
        let two = admin(
            &a,
            "POST",
            "/beta/trigger-subscriptions",
            Some(mk("second")),
        )
        .await;
        let (one_id, two_id) = (
            one.json()["id"].as_str().unwrap().to_string(),
            two.json()["id"].as_str().unwrap().to_string(),
        );
        let path = |id: &str| format!("/beta/trigger-subscriptions/{id}");
        let etag = |r: &Response| r.headers["etag"].to_str().unwrap().to_string();
        eventually(
            "B has A's subscription",
            Duration::from_secs(10),
            || async { admin(&b, "GET", &path(&one_id), None).await.status == 200 },
        )
        .await;
        let seen = etag(&admin(&b, "GET", &path(&one_id), None).await);
        assert_eq!(seen, etag(&one), "{kind:?}: the same ETag on every replica");

        let mut changed = mk("first");
        changed["description"] = json!("changed on A");
        let r = call(
            &a,
            "PUT",
            &path(&one_id),
            ADMIN_TOKEN,
            &[("if-match", &seen)],
            Some(changed.clone()),
        )
        .await;
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        assert_ne!(etag(&r), seen);
        changed["description"] = json!("stale on B");
        let stale = call(
            &b,
            "PUT",
            &path(&one_id),
            ADMIN_TOKEN,
            &[("if-match", &seen)],
            Some(changed.clone()),
        )
        .await;
        assert_eq!(
            stale.status,
            412,
            "{}",
            String::from_utf8_lossy(&stale.body)
        );
        let patch = request(
            "PATCH",
            b.admin,
            &path(&one_id),
            &[
                ("authorization", &format!("Bearer {ADMIN_TOKEN}")),
                ("content-type", "application/json-patch+json"),
                ("if-match", &seen),
            ],
            br#"[{"op":"replace","path":"/description","value":"stale patch"}]"#.to_vec(),
        )
        .await;
        assert_eq!(patch.status, 412);
        let del = call(
            &b,
            "DELETE",
            &path(&one_id),
            ADMIN_TOKEN,
            &[("if-match", &seen)],
            None,
        )
        .await;
        assert_eq!(del.status, 412);

        // Without If-Match: concurrent PUTs of two subscriptions of one trigger on two replicas both stay.
        let mut x = mk("first");
        x["description"] = json!("last write on B");
        let mut y = mk("second");
        y["description"] = json!("written on A");
        let (p1, p2) = (path(&one_id), path(&two_id));
        let (rx, ry) = tokio::join!(
            admin(&b, "PUT", &p1, Some(x)),
            admin(&a, "PUT", &p2, Some(y)),
        );
        assert_eq!((rx.status, ry.status), (200, 200));
        // Both changes stay: at once on the replica that answered last, and on the other once it has followed.
        for r in [&a, &b] {
            eventually(
                "both concurrent changes are kept",
                Duration::from_secs(10),
                || async {
                    let got1 = admin(r, "GET", &path(&one_id), None).await.json();
                    let got2 = admin(r, "GET", &path(&two_id), None).await.json();
                    got1["description"] == "last write on B"
                        && got2["description"] == "written on A"
                },
            )
            .await;
        }
    }
}

/// The engine goes away: reads answer from the last view, writes answer 503 with `Retry-After` naming the
/// store, events still flow, `/readyz` stays 200 and says so; when it returns, writes work again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engine_outage_keeps_reads_and_events_and_refuses_writes() {
    let _measured = crate::support::MEASURED.lock().await;
    for kind in KINDS {
        let mut engine = Engine::start_persistent(*kind);
        let hook = Webhook::start().await;
        let a = replica(&engine).await;
        let trigger = "idn:identity-created";
        let r = create(&a, "outage", trigger, &hook.url("/outage")).await;
        assert_eq!(r.status, 201);
        let id = r.json()["id"].as_str().unwrap().to_string();

        engine.kill();
        eventually(
            "the store is seen as unreachable",
            Duration::from_secs(20),
            || async { a.metric("trigger_relay_api_store_connected", &[]).await == 0.0 },
        )
        .await;
        assert!(
            ids_on(&a).await.contains(&id),
            "{kind:?}: reads answer from the last view"
        );
        let w = create(&a, "during", trigger, &hook.url("/x")).await;
        assert_eq!(w.status, 503, "{}", String::from_utf8_lossy(&w.body));
        assert!(w.headers.get("retry-after").is_some());
        let j = w.json();
        assert!(j["detailCode"].as_str().unwrap().starts_with("503"), "{j}");
        assert!(
            j.to_string().contains(&format!("({})", kind_name(*kind))),
            "names the store: {j}"
        );
        // Events keep flowing with the last table.
        let mut acknowledged = Vec::new();
        for i in 0..20 {
            let inv = format!("during-outage-{i}");
            let e = post_event(
                &RelayHandle(a.ingress),
                &format!("/events/{trigger}"),
                example_body(trigger, &inv),
            )
            .await;
            if e.status == 200 {
                acknowledged.push(inv);
            }
        }
        let got = hook
            .wait_for(acknowledged.len(), Duration::from_secs(20))
            .await;
        let ids: Vec<String> = got
            .iter()
            .filter_map(|r| serde_json::from_slice::<Value>(&r.body).ok())
            .filter_map(|v| v["_metadata"]["invocationId"].as_str().map(str::to_string))
            .collect();
        let (seen, duplicated) = reliability::tally(&ids);
        let lost = acknowledged.iter().filter(|i| !seen.contains(*i)).count();
        assert_eq!(
            (acknowledged.len(), lost),
            (20, 0),
            "{kind:?}: events still flow during the outage"
        );
        let ready = request("GET", a.admin, "/readyz", &[], Vec::new()).await;
        assert_eq!(ready.status, 200);
        assert!(String::from_utf8_lossy(&ready.body).contains("unreachable"));

        engine.restart();
        let back = Instant::now();
        eventually(
            "writes work again after the engine returns",
            Duration::from_secs(30),
            || async {
                let r = create(&a, "after", trigger, &hook.url("/y")).await;
                r.status == 201
            },
        )
        .await;
        reliability::Row {
            name: format!("api-store-{}-outage", kind_name(*kind)),
            scenario: format!(
                "the API's {} store SIGKILLed and restarted; events posted to a replica meanwhile, `delivered` mode",
                kind_name(*kind)
            ),
            sent: 20,
            acknowledged: acknowledged.len(),
            delivered: seen.len(),
            lost,
            duplicated,
            dropped_counted: 0,
            rss_peak_kb: reliability::rss_kb(a.pid()),
            notes: format!(
                "during the outage: lists 200 from the last view, creates 503 + Retry-After naming the store, /readyz 200 saying so; writes worked again {} ms after the engine restarted",
                back.elapsed().as_millis()
            ),
        }
        .write();
    }
}

fn kind_name(k: Kind) -> &'static str {
    match k {
        Kind::Nats => "nats",
        Kind::Kafka => "kafka",
    }
}

/// Kill A (SIGKILL) in the middle of a burst of writes: every write A answered 2xx is on B.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_killed_mid_burst_loses_no_answered_write() {
    let _measured = crate::support::MEASURED.lock().await;
    for kind in KINDS {
        let engine = Engine::start(*kind);
        let hook = Webhook::start().await;
        let mut a = replica(&engine).await;
        let b = replica(&engine).await;
        let answered = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sent = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let triggers = [
            "idn:identity-created",
            "idn:identity-deleted",
            "idn:source-created",
            "idn:source-updated",
        ];
        let mut writers = Vec::new();
        for (w, trigger) in triggers.into_iter().enumerate() {
            let (admin_addr, url, answered, sent) =
                (a.admin, hook.url("/burst"), answered.clone(), sent.clone());
            writers.push(tokio::spawn(async move {
                for i in 0..40 {
                    let body = subscription(&format!("burst {w}-{i}"), trigger, &url).to_string();
                    sent.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let client = async move {
                        let auth = format!("Bearer {ADMIN_TOKEN}");
                        request(
                            "POST",
                            admin_addr,
                            "/beta/trigger-subscriptions",
                            &[
                                ("authorization", &auth),
                                ("content-type", "application/json"),
                            ],
                            body.into_bytes(),
                        )
                        .await
                    };
                    // A killed replica resets the connection: the request's task ends with a panic (`request`
                    // expects an answer), which ends this writer.
                    let Ok(r) = tokio::spawn(client).await else {
                        return;
                    };
                    if r.status == 201 {
                        answered
                            .lock()
                            .unwrap()
                            .push(r.json()["id"].as_str().unwrap().to_string());
                    }
                }
            }));
        }
        eventually("a burst under way", Duration::from_secs(30), || {
            let n = answered.lock().unwrap().len();
            async move { n >= 20 }
        })
        .await;
        let mut child = a.child.take().unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
        for w in writers {
            let _ = w.await;
        }
        let answered: Vec<String> = answered.lock().unwrap().clone();
        assert!(answered.len() >= 20);
        // B follows the store on its own: give it the time to read what A wrote last.
        let deadline = Instant::now() + Duration::from_secs(10);
        let on_b = loop {
            let on_b = ids_on(&b).await;
            if answered.iter().all(|id| on_b.contains(id)) || Instant::now() > deadline {
                break on_b;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let missing: Vec<&String> = answered.iter().filter(|id| !on_b.contains(*id)).collect();
        assert!(
            missing.is_empty(),
            "{kind:?}: answered by A but not on B: {missing:?}"
        );
        reliability::Row {
            name: format!("api-replica-sigkill-{}", kind_name(*kind)),
            scenario: format!(
                "replica A SIGKILLed in a burst of subscription creates (4 writers), {} store; counted on replica B",
                kind_name(*kind)
            ),
            sent: sent.load(std::sync::atomic::Ordering::Relaxed),
            acknowledged: answered.len(),
            delivered: answered.len() - missing.len(),
            lost: missing.len(),
            duplicated: 0,
            dropped_counted: 0,
            rss_peak_kb: reliability::rss_kb(b.pid()),
            notes: format!(
                "this row counts API writes, not events: {} subscriptions on B in all (a create in flight at the kill may land unanswered)",
                on_b.len()
            ),
        }
        .write();
    }
}

/// Two relays on one `file` store (in this process, and the binary as a second process): the second refuses to
/// start, naming the lock and what to use instead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_store_serves_one_process() {
    let dir = tempfile::tempdir().unwrap();
    let hook = Webhook::start().await;
    let text = super::config(dir.path(), &hook, "");
    let first = start(&text).await;
    let mut config = trigger_relay::Config::from_toml(&text).unwrap();
    config.ingress.listen = "127.0.0.1:0".parse().unwrap();
    config.admin.listen = "127.0.0.1:0".parse().unwrap();
    let second = trigger_relay::Relay::start(config).await;
    let e = second
        .err()
        .expect("the second process must not start")
        .to_string();
    assert!(e.contains("in use by another trigger-relay process"), "{e}");
    assert!(e.contains("kind = \"nats\""), "{e}");
    // Another process (the binary) on the same store: exit 1 with the same message.
    let path = dir.path().join("second.toml");
    std::fs::write(
        &path,
        format!("[ingress]\nlisten = \"127.0.0.1:0\"\n[admin]\nlisten = \"127.0.0.1:0\"\n{text}"),
    )
    .unwrap();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_trigger-relay"))
            .arg("--config")
            .arg(&path)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "a second process must not start: {err}"
    );
    assert!(
        err.contains("in use by another trigger-relay process"),
        "{err}"
    );
    // The first still works.
    let r = super::api(&first, "GET", "/beta/trigger-subscriptions", None).await;
    assert_eq!(r.status, 200);
}

/// Invocation statuses are the deployment's: a delivery made by A is listed by B from the moment it starts
/// (no `completed` while the webhook keeps answering 503), then as completed; a test invocation on B is listed
/// on A.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invocation_statuses_are_listed_by_every_replica_from_the_start() {
    for kind in KINDS {
        let engine = Engine::start(*kind);
        let hook = Webhook::start().await;
        let a = replica(&engine).await;
        let b = replica(&engine).await;
        let trigger = "idn:identity-created";
        let mut sub = subscription("status", trigger, &hook.url("/status"));
        sub["ackMode"] = json!("accepted");
        let r = admin(&a, "POST", "/beta/trigger-subscriptions", Some(sub)).await;
        assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
        let sub_id = r.json()["id"].as_str().unwrap().to_string();
        // The webhook refuses for a while: the delivery stays in flight, retried.
        let busy: Vec<(u16, &[(&str, &str)])> = vec![(503, &[("retry-after", "1")]); 3];
        hook.script(&busy);
        let inv = unique("inv");
        let e = post_event(
            &RelayHandle(a.ingress),
            &format!("/events/{trigger}"),
            example_body(trigger, &inv),
        )
        .await;
        assert_eq!(e.status, 200);
        let status_on = |r: &RelayProcess, inv: String| {
            let admin = r.admin;
            async move {
                let auth = format!("Bearer {ADMIN_TOKEN}");
                let l = request(
                    "GET",
                    admin,
                    "/trigger-invocations/v1/status",
                    &[("authorization", &auth)],
                    Vec::new(),
                )
                .await;
                assert_eq!(l.status, 200);
                l.json()
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|s| s["id"] == inv.as_str())
                    .cloned()
            }
        };
        // Polled: statuses arrive from the other replica's store with no signal here.
        let deadline = Instant::now() + Duration::from_secs(10);
        let s = loop {
            if let Some(s) = status_on(&b, inv.clone())
                .await
                .filter(|s| s.get("completed").is_none())
            {
                break s;
            }
            assert!(
                Instant::now() < deadline,
                "{kind:?}: B never listed A's delivery in flight"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert_eq!(s["subscriptionId"], sub_id.as_str());
        assert_eq!(s["type"], "REAL_TIME");
        assert!(s.get("completeInvocationInput").is_none(), "{s}");
        eventually(
            "B lists it completed once the webhook takes it",
            Duration::from_secs(20),
            || {
                let f = status_on(&b, inv.clone());
                async move {
                    f.await.is_some_and(|s| {
                        s["completed"].is_string()
                            && s["completeInvocationInput"]["localizedError"].is_null()
                    })
                }
            },
        )
        .await;

        // A test invocation on B is listed on A.
        let t = admin(
            &b,
            "POST",
            "/trigger-invocations/v1/test",
            Some(json!({"triggerId": trigger, "contentJson": {"from": "B"}, "subscriptionIds": [sub_id]})),
        )
        .await;
        assert_eq!(t.status, 200, "{}", String::from_utf8_lossy(&t.body));
        let test_id = t.json()[0]["id"].as_str().unwrap().to_string();
        eventually(
            "A lists B's test invocation",
            Duration::from_secs(10),
            || {
                let f = status_on(&a, test_id.clone());
                async move {
                    f.await.is_some_and(|s| {
                        s["type"] == "TEST"
                            && s["startInvocationInput"]["contentJson"]["from"] == "B"
                    })
                }
            },
        )
        .await;
    }
}

/// The Kafka store refuses a topic it cannot decide by: one that exists with more than one partition stops the
/// start-up, naming the topic and what to do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kafka_store_refuses_a_topic_with_several_partitions() {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    let engine = Engine::start(Kind::Kafka);
    let bootstrap = engine.kafka.as_ref().unwrap().bootstrap();
    let admin: AdminClient<rdkafka::client::DefaultClientContext> = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .create()
        .unwrap();
    let t = NewTopic::new(&engine.bucket, 2, TopicReplication::Fixed(1));
    for r in admin
        .create_topics([&t], &AdminOptions::new())
        .await
        .unwrap()
    {
        r.unwrap();
    }
    let mut config =
        trigger_relay::Config::from_toml(&replica_toml(&engine, SIGNING_KEY, &[])).unwrap();
    config.ingress.listen = "127.0.0.1:0".parse().unwrap();
    config.admin.listen = "127.0.0.1:0".parse().unwrap();
    let e = trigger_relay::Relay::start(config)
        .await
        .err()
        .expect("a two-partition store topic must stop the start-up")
        .to_string();
    assert!(
        e.contains(&format!("topic `{}` has 2 partitions", engine.bucket)),
        "{e}"
    );
}
