//! Reliability tests' shared parts: the relay binary as a child process (so its RSS and file descriptors can
//! be read from `/proc`), a load generator that records every answer, and the rows of `RELIABILITY.md`.
//!
//! Each fault, overload or soak test writes one row to `target/reliability/<name>.json`; `scripts/test`
//! renders them into `RELIABILITY.md` after `cargo test` (`scripts/render-reliability`).

use std::collections::HashSet;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use super::{example_body, free_port, request};

/// One line of `RELIABILITY.md`.
#[derive(Debug, Default, serde::Serialize)]
pub struct Row {
    pub name: String,
    pub scenario: String,
    /// POSTs sent to the relay.
    pub sent: usize,
    /// Answered 2xx.
    pub acknowledged: usize,
    /// Distinct invocation ids found at the destination.
    pub delivered: usize,
    /// Answered 2xx and not at the destination.
    pub lost: usize,
    /// Copies beyond the first at the destination.
    pub duplicated: usize,
    /// Dropped after an outage longer than `delivery_timeout_ms`, as counted by the relay's metrics.
    pub dropped_counted: usize,
    /// Peak resident memory of the relay process, when it ran as its own process.
    pub rss_peak_kb: Option<u64>,
    pub notes: String,
}

impl Row {
    /// Write `target/reliability/<name>.json` (next to the crate, whatever `CARGO_TARGET_DIR` is).
    pub fn write(&self) {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/reliability");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{}.json", self.name));
        std::fs::write(&path, serde_json::to_vec_pretty(self).unwrap()).unwrap();
        eprintln!("reliability row: {}", serde_json::to_string(self).unwrap());
    }
}

/// Count what arrived: (distinct ids, copies beyond the first).
pub fn tally<'a>(ids: impl IntoIterator<Item = &'a String>) -> (HashSet<String>, usize) {
    let mut seen = HashSet::new();
    let mut dup = 0;
    for id in ids {
        if !seen.insert(id.clone()) {
            dup += 1;
        }
    }
    (seen, dup)
}

/// `VmRSS` of a process, in KiB.
pub fn rss_kb(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Open file descriptors of a process.
pub fn open_fds(pid: u32) -> Option<usize> {
    Some(std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count())
}

/// The relay binary, started on free loopback ports with a config file; killed on drop.
pub struct RelayProcess {
    pub child: Option<Child>,
    pub ingress: SocketAddr,
    pub admin: SocketAddr,
    _dir: tempfile::TempDir,
}

impl RelayProcess {
    /// `toml` must not set `ingress.listen` / `admin.listen`.
    pub async fn start(toml: &str) -> Self {
        let p = Self::spawn(toml, &[]);
        // A liveness bound, not a timing claim: a relay on a private broker that is itself starting, with the
        // other tests of the binary sharing two cores, can take a while.
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while readyz(p.admin).await != Some(200) {
            if std::time::Instant::now() > deadline {
                let why = request("GET", p.admin, "/readyz", &[], Bytes::new()).await;
                panic!(
                    "the relay was not ready within 60 s: /readyz {} {}\nits log:\n{}",
                    why.status,
                    String::from_utf8_lossy(&why.body),
                    p.log()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        p
    }

    /// Start the binary with `env` set, without waiting for it to be ready.
    pub fn spawn(toml: &str, env: &[(&str, &str)]) -> Self {
        let (i, a) = (free_port(), free_port());
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("relay.toml");
        let text = format!(
            "[ingress]\nlisten = \"127.0.0.1:{i}\"\n[admin]\nlisten = \"127.0.0.1:{a}\"\n{toml}"
        );
        std::fs::write(&path, text).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_trigger-relay"))
            .arg("--config")
            .arg(&path)
            .env("RUST_LOG", "warn,rdkafka=off,librdkafka=off")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            // A file, not a pipe: nobody reads a pipe while the test runs, and a full one blocks the relay.
            .stderr(std::fs::File::create(dir.path().join("relay.log")).unwrap())
            .spawn()
            .expect("start the relay binary");
        Self {
            child: Some(child),
            ingress: format!("127.0.0.1:{i}").parse().unwrap(),
            admin: format!("127.0.0.1:{a}").parse().unwrap(),
            _dir: dir,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    pub async fn metric(&self, name: &str, labels: &[&str]) -> f64 {
        metric_at(self.admin, name, labels).await
    }

    /// SIGTERM, then wait for the exit: (exit status, standard error).
    pub async fn terminate(&mut self) -> (std::process::ExitStatus, String) {
        let child = self.child.take().unwrap();
        let pid = child.id().to_string();
        assert!(Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success());
        let mut child = child;
        let status = tokio::task::spawn_blocking(move || child.wait())
            .await
            .unwrap()
            .unwrap();
        (status, self.log())
    }

    /// What the relay logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self._dir.path().join("relay.log")).unwrap_or_default()
    }
}

impl Drop for RelayProcess {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// `/readyz` status, `None` when the admin listener does not answer.
pub async fn readyz(admin: SocketAddr) -> Option<u16> {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let uri: http::Uri = format!("http://{admin}/readyz").parse().unwrap();
    match tokio::time::timeout(Duration::from_secs(2), client.get(uri)).await {
        Ok(Ok(r)) => Some(r.status().as_u16()),
        _ => None,
    }
}

/// One sample of `/metrics` at `admin` (summed over matching label sets).
pub async fn metric_at(admin: SocketAddr, name: &str, labels: &[&str]) -> f64 {
    let text = tokio::time::timeout(
        Duration::from_secs(10),
        request("GET", admin, "/metrics", &[], Bytes::new()),
    )
    .await
    .unwrap_or_else(|_| panic!("{admin}/metrics did not answer within 10 s"))
    .body;
    let text = String::from_utf8_lossy(&text).into_owned();
    text.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .filter(|l| labels.iter().all(|lab| l.contains(lab)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Every answer a load run got.
#[derive(Debug, Default, Clone)]
pub struct Answers {
    pub ok: Vec<String>,
    pub unavailable: Vec<String>,
    /// Anything else: status or transport error, with the invocation id.
    pub other: Vec<(String, String)>,
    /// Slowest answer.
    pub slowest: Duration,
}

impl Answers {
    pub fn sent(&self) -> usize {
        self.ok.len() + self.unavailable.len() + self.other.len()
    }
}

/// POST `trigger` events from `workers` keep-alive connections in a loop (`prefix-w-n` invocation ids) until
/// each sent `per_worker` or `stop` is set. `progress` gets the number of 2xx answers so far after each one.
pub async fn closed_loop(
    ingress: SocketAddr,
    prefix: String,
    workers: usize,
    per_worker: usize,
    answer_within: Duration,
    stop: Arc<std::sync::atomic::AtomicBool>,
    progress: tokio::sync::watch::Sender<(usize, usize)>,
) -> Answers {
    let answers = Arc::new(Mutex::new(Answers::default()));
    let progress = Arc::new(progress);
    let mut tasks = Vec::new();
    for w in 0..workers {
        let (answers, stop, progress) = (answers.clone(), stop.clone(), progress.clone());
        let prefix = prefix.to_string();
        tasks.push(tokio::spawn(async move {
            let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
            for n in 0..per_worker {
                if stop.load(std::sync::atomic::Ordering::Relaxed) {
                    break;
                }
                let inv = format!("{prefix}-{w}-{n:06}");
                let outcome = post(&client, ingress, &inv, answer_within).await;
                let mut a = answers.lock().unwrap();
                match outcome {
                    (Ok(s), t) if (200..300).contains(&s) => {
                        a.ok.push(inv);
                        a.slowest = a.slowest.max(t);
                    }
                    (Ok(503), t) => {
                        a.unavailable.push(inv);
                        a.slowest = a.slowest.max(t);
                    }
                    (Ok(s), _) => a.other.push((inv, format!("status {s}"))),
                    (Err(e), _) => a.other.push((inv, e)),
                }
                let counts = (a.ok.len(), a.unavailable.len() + a.other.len());
                drop(a);
                progress.send_replace(counts);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let a = answers.lock().unwrap().clone();
    a
}

/// One POST; the status or why there was none, and how long it took.
pub async fn post(
    client: &Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
    ingress: SocketAddr,
    inv: &str,
    within: Duration,
) -> (Result<u16, String>, Duration) {
    let req = http::Request::post(format!("http://{ingress}/events/idn:identity-created"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(example_body(
            "idn:identity-created",
            inv,
        ))))
        .unwrap();
    let t0 = Instant::now();
    let r = match tokio::time::timeout(within, client.request(req)).await {
        Err(_) => Err(format!("no answer within {within:?}")),
        Ok(Err(e)) => Err(format!("transport: {e}")),
        Ok(Ok(r)) => {
            let s = r.status().as_u16();
            let _ = r.into_body().collect().await;
            Ok(s)
        }
    };
    (r, t0.elapsed())
}

/// The `invocation-id` of every record in partition 0 of `topic`: read until at least `at_least` arrived and
/// then 2 s passed without a new one (so duplicates beyond `at_least` are seen too), or `within` passed.
pub fn consume_ids(bootstrap: &str, topic: &str, at_least: usize, within: Duration) -> Vec<String> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::message::{Headers, Message};
    let c: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", super::unique("rel"))
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("consumer");
    let mut tpl = rdkafka::TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, rdkafka::Offset::Beginning)
        .unwrap();
    c.assign(&tpl).expect("assign");
    let deadline = Instant::now() + within;
    let mut out = Vec::new();
    let mut last = Instant::now();
    while Instant::now() < deadline {
        if out.len() >= at_least && last.elapsed() > Duration::from_secs(2) {
            break;
        }
        match c.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                last = Instant::now();
                let id = m
                    .headers()
                    .and_then(|h| {
                        h.iter()
                            .find(|h| h.key == "invocation-id")
                            .and_then(|h| h.value)
                            .map(|v| String::from_utf8_lossy(v).into_owned())
                    })
                    .unwrap_or_default();
                out.push(id);
            }
            Some(Err(e)) => eprintln!("consumer: {e}"),
            None => {}
        }
    }
    out
}
