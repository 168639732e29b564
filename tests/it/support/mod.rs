//! Test support: start the relay through its public entry point on 127.0.0.1:0, talk to it over real HTTP, and
//! reach real brokers (started by `scripts/test`, or by a test itself when it needs to stop one).

pub mod aws;
pub mod reliability;
pub mod webhook;

pub use trigger_relay_testkit::toml::*;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use trigger_relay::{Config, Relay};

/// The shared Kafka-compatible broker that `scripts/test` started.
pub fn kafka() -> String {
    std::env::var("TRIGGER_RELAY_TEST_KAFKA").unwrap_or_else(|_| {
        panic!(
            "this test needs a Kafka-compatible broker. Run the suite with `scripts/test` (it installs and starts \
             tansu), or start one yourself: `tansu broker --storage-engine memory://tansu/ --listener-url \
             tcp://127.0.0.1:9092 --advertised-listener-url tcp://127.0.0.1:9092` and set \
             TRIGGER_RELAY_TEST_KAFKA=127.0.0.1:9092"
        )
    })
}

/// The shared nats-server (JetStream enabled) that `scripts/test` started.
pub fn nats() -> String {
    std::env::var("TRIGGER_RELAY_TEST_NATS").unwrap_or_else(|_| {
        panic!(
            "this test needs nats-server with JetStream. Run the suite with `scripts/test` (it installs and starts \
             it), or run `nats-server -js -p 4222` (Debian: apt-get install nats-server) and set \
             TRIGGER_RELAY_TEST_NATS=nats://127.0.0.1:4222"
        )
    })
}

/// Held for its whole run by every test that measures under load: each test that writes a `RELIABILITY.md` row
/// (`reliability::Row`) and the load harness, so no two of them overlap. They used to run in separate test
/// binaries, one binary after another; in the one shared binary they would meet (`shutdown::` and `soak::` sort
/// next to each other, as do `reliability::` and `replay::`), and their loads, timings, 503 counts and published
/// rows would then measure each other. Light tests still run beside them. A failing test does not poison it.
///
/// `let _measured = support::MEASURED.lock().await;` (or `.blocking_lock()` in a plain `#[test]`).
pub static MEASURED: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The head of a config whose relay takes events without ingress auth and may post to webhooks on loopback
/// (`[sinks.http.egress]` allows 127.0.0.0/8): `format!("{LOOPBACK_HOOKS}\n[delivery]\n…")`.
pub const LOOPBACK_HOOKS: &str = r#"[sinks.http.egress]
allow_cidrs = ["127.0.0.0/8"]
[ingress.auth]
none = true"#;

/// The head of a config whose relay takes events without ingress auth and answers once they are delivered:
/// `format!("{OPEN_DELIVERED}\n[sinks.kafka.main]\n…")`.
pub const OPEN_DELIVERED: &str = r#"[ingress.auth]
none = true
[delivery]
ack = "delivered""#;

/// [`OPEN_DELIVERED`], but answering once events are queued (`ack = "accepted"`).
pub const OPEN_ACCEPTED: &str = r#"[ingress.auth]
none = true
[delivery]
ack = "accepted""#;

/// A client of the NATS server at `server` subscribed to `subject`, the subscription flushed to the server (so
/// what is published after this returns is received). Keep the client while reading the subscription.
pub async fn nats_subscriber(
    server: &str,
    subject: &str,
) -> (async_nats::Client, async_nats::Subscriber) {
    let client = async_nats::connect(server).await.unwrap();
    let sub = client.subscribe(subject.to_string()).await.unwrap();
    client.flush().await.unwrap();
    (client, sub)
}

/// What a finished child process wrote, its stdout then its stderr.
pub fn output_text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Kill (SIGKILL) and reap the broker process `child` if it runs.
fn kill_child(child: &mut Option<Child>) {
    if let Some(mut c) = child.take() {
        let _ = c.kill();
        let _ = c.wait();
    }
}

/// A unique name for a topic or subscription.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

/// A free loopback port (bound and released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Wait (checking every `poll`, at most 20 s) until the broker process `what` just started accepts connections
/// on loopback `port`.
fn wait_listening(what: &str, port: u16, poll: Duration) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "{what} did not listen on {port} within 20 s"
        );
        std::thread::sleep(poll);
    }
}

/// A tansu broker owned by one test, so the test can stop and restart it.
pub struct PrivateKafka {
    pub port: u16,
    child: Option<Child>,
    /// `s3://bucket/` on moto's S3 when the broker keeps its data across restarts; in memory otherwise.
    storage: Option<String>,
}

impl PrivateKafka {
    pub fn start_on(port: u16) -> Self {
        Self::spawn(port, None)
    }

    /// A broker whose topics and records survive SIGKILL: tansu's S3 storage on the moto server that
    /// `scripts/test` started (a fresh bucket per broker).
    pub fn start_persistent() -> Self {
        let moto = std::env::var("TRIGGER_RELAY_TEST_MOTO").unwrap_or_else(|_| {
            panic!("this test keeps a Kafka broker's data across restarts in moto's S3. Run it with `scripts/test`, which starts moto")
        });
        let bucket = unique("tansu");
        let url = format!("{moto}/{bucket}");
        let ok = Command::new("curl")
            .args(["-sf", "-X", "PUT", &url, "-o", "/dev/null"])
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(ok, "cannot create the S3 bucket {url} on moto (curl)");
        Self::spawn(free_port(), Some(format!("s3://{bucket}/")))
    }

    /// SIGKILL, then start again on the same port and storage.
    pub fn restart(&mut self) {
        self.kill();
        let storage = self.storage.clone();
        *self = Self::spawn(self.port, storage);
    }

    fn spawn(port: u16, storage: Option<String>) -> Self {
        let bin = std::env::var("TRIGGER_RELAY_TEST_TANSU").unwrap_or_else(|_| "tansu".into());
        let url = format!("tcp://127.0.0.1:{port}");
        let engine = storage.clone().unwrap_or_else(|| "memory://tansu/".into());
        let mut cmd = Command::new(&bin);
        if storage.is_some() {
            let moto = std::env::var("TRIGGER_RELAY_TEST_MOTO").unwrap();
            cmd.env("AWS_ENDPOINT", moto)
                .env("AWS_ALLOW_HTTP", "true")
                .env("AWS_DEFAULT_REGION", "us-east-1")
                .env("AWS_REGION", "us-east-1");
        }
        let child = cmd
            .args(["broker", "--storage-engine", &engine, "--listener-url", &url])
            .args(["--advertised-listener-url", &url])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start tansu ({bin}): {e}. Run the suite with `scripts/test`, which installs it")
            });
        wait_listening("tansu", port, Duration::from_millis(50));
        Self {
            port,
            child: Some(child),
            storage,
        }
    }

    pub fn start() -> Self {
        Self::start_on(free_port())
    }

    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Kill the broker (SIGKILL) and wait until the port is closed.
    pub fn kill(&mut self) {
        kill_child(&mut self.child);
    }
}

impl Drop for PrivateKafka {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A nats-server (JetStream, file store) owned by one test, so the test can restart it with its data.
pub struct PrivateNats {
    pub port: u16,
    store: std::path::PathBuf,
    child: Option<Child>,
}

impl PrivateNats {
    pub fn start(store: &std::path::Path) -> Self {
        let mut n = Self {
            port: free_port(),
            store: store.to_path_buf(),
            child: None,
        };
        n.restart();
        n
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Kill (SIGKILL) the server if it runs, then start it again on the same port and store.
    pub fn restart(&mut self) {
        self.kill();
        let bin = std::env::var("TRIGGER_RELAY_TEST_NATS_SERVER")
            .unwrap_or_else(|_| "nats-server".into());
        let child = Command::new(&bin)
            .args(["-js", "-a", "127.0.0.1", "-p", &self.port.to_string(), "-sd"])
            .arg(&self.store)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start nats-server ({bin}): {e}. Run the suite with `scripts/test`, which installs it"));
        wait_listening("nats-server", self.port, Duration::from_millis(20));
        self.child = Some(child);
    }

    pub fn kill(&mut self) {
        kill_child(&mut self.child);
    }
}

impl Drop for PrivateNats {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A loopback HTTP server (HTTP/1.1 and h2c) that answers every request with what `handle` makes of it: the
/// accept loop of the test webhooks, proxies and fake tenants. Returns its address and its task (abort it to
/// stop the server; dropping the handle leaves it running).
pub async fn serve<F, Fut>(handle: F) -> (SocketAddr, tokio::task::JoinHandle<()>)
where
    F: Fn(http::Request<hyper::body::Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = http::Response<Full<Bytes>>> + Send + 'static,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let handle = handle.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req| {
                    let answer = handle(req);
                    async move { Ok::<_, std::convert::Infallible>(answer.await) }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (addr, task)
}

/// Create a one-partition topic.
pub async fn create_topic(bootstrap: &str, topic: &str) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("admin client");
    let t = NewTopic::new(topic, 1, TopicReplication::Fixed(1));
    let r = admin
        .create_topics(
            [&t],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
        )
        .await
        .expect("create_topics request");
    for res in r {
        res.unwrap_or_else(|(t, e)| panic!("cannot create topic {t}: {e}"));
    }
}

/// One consumed record.
#[derive(Debug, Clone)]
pub struct Record {
    pub key: Option<Vec<u8>>,
    pub value: Vec<u8>,
    pub headers: HashMap<String, String>,
}

/// Read records from partition 0 of `topic` until `n` arrived or `within` passed (then return what came).
pub fn consume(bootstrap: &str, topic: &str, n: usize, within: Duration) -> Vec<Record> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", unique("test"))
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Beginning)
        .unwrap();
    c.assign(&tpl).expect("assign");
    let deadline = Instant::now() + within;
    let mut out = Vec::new();
    while out.len() < n && Instant::now() < deadline {
        match c.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                let mut headers = HashMap::new();
                if let Some(h) = m.headers() {
                    for hdr in h.iter() {
                        headers.insert(
                            hdr.key.to_string(),
                            String::from_utf8_lossy(hdr.value.unwrap_or_default()).into_owned(),
                        );
                    }
                }
                out.push(Record {
                    key: m.key().map(|k| k.to_vec()),
                    value: m.payload().unwrap_or_default().to_vec(),
                    headers,
                });
            }
            Some(Err(e)) => eprintln!("consumer: {e}"),
            None => {}
        }
    }
    out
}

/// The SHA-256 of `secret` in hex, as `api.clients[].client_secret_sha256` takes it.
pub fn sha256_hex(secret: &str) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(secret.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Start the relay from TOML (listeners forced to 127.0.0.1:0).
pub async fn start(toml: &str) -> Relay {
    let text = format!("{toml}\n",);
    let mut config =
        Config::from_toml(&text).unwrap_or_else(|e| panic!("test config is invalid:\n{e}"));
    config.ingress.listen = "127.0.0.1:0".parse().unwrap();
    config.admin.listen = "127.0.0.1:0".parse().unwrap();
    // Logs show with `--nocapture`; RUST_LOG picks what.
    config.log.level = "warn,rdkafka=off,librdkafka=off".into();
    trigger_relay::telemetry::init_logging(&config.log);
    Relay::start(config).await.expect("relay starts")
}

pub struct Response {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl Response {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

/// Send one request.
pub async fn request(
    method: &str,
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> Response {
    request_from(None, method, addr, path, headers, body).await
}

/// Send one request from local address `from` (another 127.0.0.x source, for per-IP limits), or any.
pub async fn request_from(
    from: Option<IpAddr>,
    method: &str,
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> Response {
    let mut connector = HttpConnector::new();
    connector.set_local_address(from);
    let client = Client::builder(TokioExecutor::new()).build::<_, Full<Bytes>>(connector);
    let mut b = http::Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"));
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let resp = client
        .request(b.body(Full::new(body.into())).unwrap())
        .await
        .expect("request");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    Response {
        status,
        headers,
        body,
    }
}

/// POST a JSON event to the ingress.
pub async fn post_event(relay: &Relay, path: &str, body: impl Into<Bytes>) -> Response {
    request(
        "POST",
        relay.ingress_addr(),
        path,
        &[("content-type", "application/json")],
        body,
    )
    .await
}

/// POST ISC's example event of `trigger` (invocation `invocation_id`) to `/events/<trigger>`.
pub async fn post_example(relay: &Relay, trigger: &str, invocation_id: &str) -> Response {
    let path = format!("/events/{trigger}");
    post_event(relay, &path, example_body(trigger, invocation_id)).await
}

/// The value of one sample in the relay's `/metrics` (0 when absent). `labels` like `sink="kafka.main"`.
pub async fn metric(relay: &Relay, name: &str, labels: &[&str]) -> f64 {
    reliability::metric_at(relay.admin_addr(), name, labels).await
}

/// [`metric`] of the sample `labels` and `result="<result>"`: one outcome of a counter split by result.
pub async fn metric_of_result(relay: &Relay, name: &str, labels: &[&str], result: &str) -> f64 {
    let result = format!("result=\"{result}\"");
    let labels: Vec<&str> = labels.iter().copied().chain([result.as_str()]).collect();
    metric(relay, name, &labels).await
}

/// The dead letters the relay wrote (`trigger_relay_dead_letter_events_total{result="written"}`).
pub async fn dead_letters_written(relay: &Relay) -> f64 {
    let written = ["result=\"written\""];
    metric(relay, "trigger_relay_dead_letter_events_total", &written).await
}

/// Poll `check` until it is true (a signal we can only observe by asking), failing after `within`.
pub async fn eventually<F, Fut>(what: &str, within: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Wait until `/readyz` answers 200 (every sink reached its broker once).
pub async fn wait_ready(relay: &Relay) {
    eventually(
        "relay ready (/readyz 200)",
        Duration::from_secs(30),
        || async {
            request("GET", relay.admin_addr(), "/readyz", &[], "")
                .await
                .status
                == 200
        },
    )
    .await;
}

/// Wait until `/readyz` answers 503 naming `problem` (a destination the broker says is missing: everything else
/// is up, so events can be posted and are refused for that reason).
pub async fn wait_not_ready_with(relay: &Relay, problem: &str) {
    eventually(
        &format!("/readyz 503 naming {problem:?}"),
        Duration::from_secs(30),
        || async {
            let r = request("GET", relay.admin_addr(), "/readyz", &[], "").await;
            r.status == 503 && String::from_utf8_lossy(&r.body).contains(problem)
        },
    )
    .await;
}

/// ISC's example invocation body for a trigger (example input + `_metadata`).
pub fn example_body(trigger: &str, invocation_id: &str) -> Vec<u8> {
    let catalog = trigger_relay::catalog::Catalog::builtin();
    let v = catalog
        .example_invocation(trigger, invocation_id)
        .expect("trigger in catalog");
    serde_json::to_vec_pretty(&v).unwrap()
}

/// Every FIRE_AND_FORGET trigger of the built-in catalog that is not deprecated.
pub fn ga_fire_and_forget() -> Vec<String> {
    trigger_relay::catalog::Catalog::builtin()
        .all()
        .into_iter()
        .filter(|t| t.kind == trigger_relay::catalog::TriggerType::FireAndForget && !t.deprecated)
        .map(|t| t.id.clone())
        .collect()
}
