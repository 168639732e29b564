//! The load harness behind `cargo bench --bench load` (and, in short mode, `tests/it/load_harness.rs`): one
//! module both reach through this dev-only crate.
//!
//! - The relay runs as its own process (the binary Cargo built for this profile), pinned with `taskset` to the
//!   last core when the machine has two or more, so its peak RSS and CPU seconds come from `/proc/<pid>`.
//! - The load generator is a hyper HTTP/1.1 client in this process, on one thread pinned to core 0: N keep-alive
//!   connections, either closed loop (each connection sends its next request when the answer came) or a fixed
//!   offered rate (each connection follows its own schedule; latency is counted from the scheduled send time,
//!   so a stalled server cannot hide its queueing delay).
//! - Baselines (a minimal hyper server answering 204, a direct rdkafka producer, a direct async-nats publisher)
//!   run in this process on their own thread pinned to the relay's core, with a single-threaded tokio runtime
//!   (the pinned relay also gets one tokio worker: tokio sizes its pool by the CPUs it may use).
//! - Payloads are ISC's example invocations from the built-in catalog, padded to 0.5, 1, 2, 4 and 8 KB, each
//!   request with its own `_metadata.invocationId` (so JetStream's duplicate window never drops one).
//!
//! Nothing here asserts timings: the harness measures and reports.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::payloads::{shared_path_filters, typical_filters, Payloads, MIX};
use futures_util::stream::{FuturesUnordered, StreamExt};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;

/// The relay binary [`run`] starts, from [`Options::relay_bin`] (set once per process).
static RELAY_BIN: OnceLock<String> = OnceLock::new();

/// The relay binary to run: `$TRIGGER_RELAY_BENCH_RELAY` (another build, for a before/after comparison in
/// one sitting), else the one the caller named in [`Options::from_env`].
pub fn relay_bin() -> String {
    std::env::var("TRIGGER_RELAY_BENCH_RELAY")
        .unwrap_or_else(|_| RELAY_BIN.get().cloned().unwrap_or_default())
}

/// The relay's default `linger_ms` (src/sinks/kafka/config.rs), used by the direct producers of the Kafka rows
/// unless `--kafka-linger-ms` sets both sides.
pub const RELAY_DEFAULT_LINGER_MS: u64 = 5;

const TOKEN: &str = "bench-token-0123456789abcdef0123456789";
const AUTHORIZATION: &str = "Bearer bench-token-0123456789abcdef0123456789";

/// Every scenario, in the order they run.
pub const SCENARIOS: &[&str] = &[
    "blackhole",
    "kafka-accepted",
    "kafka-delivered",
    "kafka-latency",
    "kafka-memory",
    "nats-core",
    "nats-jetstream",
    "fanout",
    "overload",
    "filters",
];

#[derive(Debug, Clone)]
pub struct Options {
    /// The relay binary Cargo built next to the bench or test (`env!("CARGO_BIN_EXE_trigger-relay")` there:
    /// release for `cargo bench`, debug for `cargo test`).
    pub relay_bin: String,
    /// A few seconds per scenario: proves the harness works, measures nothing worth keeping.
    pub short: bool,
    /// Scenario names (or prefixes, `kafka` selects both Kafka scenarios); empty = all.
    pub scenarios: Vec<String>,
    /// Keep-alive connections of the load generator.
    pub connections: usize,
    /// Mark scenarios whose broker is not running as skipped instead of failing (asked for explicitly).
    pub skip_missing_brokers: bool,
    /// Kafka bootstrap servers and NATS URL (`TRIGGER_RELAY_BENCH_KAFKA`/`_NATS`, else the test ones).
    pub kafka: Option<String>,
    pub nats: Option<String>,
    /// `--kafka-linger-ms N`: the relay's `linger_ms` in every Kafka scenario (and the direct producer's
    /// `linger.ms` where it stands for the same settings); `None`: the relay's default.
    pub kafka_linger_ms: Option<u64>,
    /// `--kafka-option name=value`: librdkafka properties added to the relay's `[sinks.kafka.bench.options]`
    /// and to the direct producers.
    pub kafka_options: Vec<(String, String)>,
}

impl Options {
    pub fn from_env(relay_bin: &str) -> Self {
        let env = |a: &str, b: &str| std::env::var(a).or_else(|_| std::env::var(b)).ok();
        Self {
            relay_bin: relay_bin.to_string(),
            short: false,
            scenarios: Vec::new(),
            connections: 64,
            skip_missing_brokers: false,
            kafka: env("TRIGGER_RELAY_BENCH_KAFKA", "TRIGGER_RELAY_TEST_KAFKA"),
            nats: env("TRIGGER_RELAY_BENCH_NATS", "TRIGGER_RELAY_TEST_NATS"),
            kafka_linger_ms: None,
            kafka_options: Vec::new(),
        }
    }

    fn linger_ms(&self) -> u64 {
        self.kafka_linger_ms.unwrap_or(RELAY_DEFAULT_LINGER_MS)
    }

    fn selected(&self, name: &str) -> bool {
        self.scenarios.is_empty() || self.scenarios.iter().any(|s| name.starts_with(s.as_str()))
    }

    fn warmup(&self) -> Duration {
        Duration::from_millis(if self.short { 200 } else { 2000 })
    }

    fn measure(&self) -> Duration {
        Duration::from_millis(if self.short { 1000 } else { 10_000 })
    }
}

/// One line of the result table.
#[derive(Debug, Clone, Default)]
pub struct Row {
    pub scenario: String,
    /// Events per second the relay answered 200 (or the fixed rate it was offered).
    pub relay: f64,
    pub baseline: f64,
    pub baseline_name: String,
    pub p99_ms: f64,
    /// The relay's peak RSS (VmHWM), MiB.
    pub rss_mib: f64,
    /// The relay's CPU time (user + system) per answered event, µs.
    pub cpu_us_per_event: f64,
    pub errors: String,
    pub note: String,
    pub skipped: Option<String>,
}

impl Row {
    pub fn ratio(&self) -> f64 {
        if self.baseline > 0.0 {
            self.relay / self.baseline
        } else {
            0.0
        }
    }
}

pub struct Report {
    pub rows: Vec<Row>,
    pub pinned: bool,
    pub idle_rss_mib: Option<f64>,
}

impl Report {
    pub fn markdown(&self) -> String {
        let mut s = String::new();
        s.push_str("| scenario | relay ev/s | baseline ev/s | ratio | relay p99 | relay peak RSS | relay CPU/event | errors | notes |\n");
        s.push_str("|---|---:|---:|---:|---:|---:|---:|---|---|\n");
        for r in &self.rows {
            if let Some(why) = &r.skipped {
                let _ = writeln!(
                    s,
                    "| {} | – | – | – | – | – | – | – | skipped: {why} |",
                    r.scenario
                );
                continue;
            }
            let _ =
                writeln!(
                s,
                "| {} | {:.0} | {:.0} ({}) | {:.2} | {:.2} ms | {:.1} MiB | {:.1} µs | {} | {} |",
                r.scenario,
                r.relay,
                r.baseline,
                r.baseline_name,
                r.ratio(),
                r.p99_ms,
                r.rss_mib,
                r.cpu_us_per_event,
                if r.errors.is_empty() { "none" } else { &r.errors },
                r.note
            );
        }
        let _ = writeln!(
            s,
            "\nRelay pinned to its own core: {}. Idle RSS after start-up: {}.",
            if self.pinned {
                "yes (taskset; load generator on core 0)"
            } else {
                "no"
            },
            self.idle_rss_mib
                .map(|m| format!("{m:.1} MiB"))
                .unwrap_or_else(|| "not measured".into())
        );
        s
    }
}

// ---------------------------------------------------------------------------------------------------------
// CPU pinning

fn cores() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// Pinning happens when there are two cores and `taskset` exists: generator on core 0, relay and baselines on
/// the last core.
fn pinning() -> Option<(usize, usize)> {
    let taskset = Command::new("taskset")
        .arg("-V")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    (cores() >= 2 && taskset).then(|| (0, cores() - 1))
}

fn pin_current_thread(core: usize) {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; sched_setaffinity(0) applies to the calling thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(core, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

/// Run `f` on a new thread (pinned to `core`) with its own single-threaded tokio runtime.
fn on_thread<T: Send + 'static>(
    core: Option<usize>,
    f: impl FnOnce() -> std::pin::Pin<Box<dyn std::future::Future<Output = T>>> + Send + 'static,
) -> std::thread::JoinHandle<T> {
    std::thread::spawn(move || {
        if let Some(c) = core {
            pin_current_thread(c);
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
        rt.block_on(f())
    })
}

// ---------------------------------------------------------------------------------------------------------
// Latency statistics (exact: every sample kept, sorted once)

#[derive(Default, Clone)]
pub struct Latencies(Vec<u32>);

impl Latencies {
    fn record(&mut self, d: Duration) {
        self.0.push(d.as_micros().min(u32::MAX as u128) as u32);
    }
    fn merge(&mut self, o: Latencies) {
        self.0.extend(o.0);
    }
    /// Percentile in ms (q in 0..=1).
    pub fn pct(&mut self, q: f64) -> f64 {
        if self.0.is_empty() {
            return 0.0;
        }
        self.0.sort_unstable();
        let i = ((self.0.len() as f64 - 1.0) * q).round() as usize;
        self.0[i] as f64 / 1000.0
    }
    pub fn summary(&mut self) -> String {
        format!(
            "p50 {:.2} / p90 {:.2} / p99 {:.2} / max {:.2} ms",
            self.pct(0.5),
            self.pct(0.9),
            self.pct(0.99),
            self.pct(1.0)
        )
    }
}

// ---------------------------------------------------------------------------------------------------------
// The load generator

#[derive(Clone)]
struct Load {
    addr: SocketAddr,
    connections: usize,
    /// None: closed loop (as fast as answers come). Some: offered events/s across all connections.
    rate: Option<f64>,
    warmup: Duration,
    measure: Duration,
}

#[derive(Default)]
pub struct LoadResult {
    /// Answers per status during the measured window.
    pub statuses: BTreeMap<u16, u64>,
    pub io_errors: u64,
    /// Latency of 200 answers.
    pub ok_latency: Latencies,
    pub window: Duration,
    /// CPU time of the load generator's thread over its wall time (near 1.0: the generator was the limit).
    pub generator_busy: f64,
}

/// CPU time (user + system) of the calling thread.
fn thread_cpu() -> Duration {
    // SAFETY: getrusage fills the struct it is given.
    let ru = unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_THREAD, &mut ru);
        ru
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

impl LoadResult {
    pub fn ok(&self) -> u64 {
        self.statuses.get(&200).copied().unwrap_or(0)
            + self.statuses.get(&204).copied().unwrap_or(0)
    }
    pub fn ok_rate(&self) -> f64 {
        self.ok() as f64 / self.window.as_secs_f64()
    }
    pub fn errors(&self) -> String {
        let mut parts: Vec<String> = self
            .statuses
            .iter()
            .filter(|(s, _)| !matches!(s, 200 | 204))
            .map(|(s, n)| format!("{s}×{n}"))
            .collect();
        if self.io_errors > 0 {
            parts.push(format!("io×{}", self.io_errors));
        }
        parts.join(", ")
    }
}

async fn connection(i: usize, load: Load, payloads: Arc<Payloads>, start: Instant) -> LoadResult {
    let mut out = LoadResult::default();
    let measure_from = start + load.warmup;
    let end = measure_from + load.measure;
    let interval = load
        .rate
        .map(|r| Duration::from_secs_f64(load.connections as f64 / r));
    let mut next = start
        + interval
            .map(|iv| iv.mul_f64(i as f64 / load.connections as f64))
            .unwrap_or_default();
    let host = load.addr.to_string();
    'connect: while Instant::now() < end {
        let stream = match tokio::net::TcpStream::connect(load.addr).await {
            Ok(s) => s,
            Err(_) => {
                out.io_errors += 1;
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let Ok((mut sender, conn)) =
            hyper::client::conn::http1::handshake::<_, Full<Bytes>>(TokioIo::new(stream)).await
        else {
            out.io_errors += 1;
            continue;
        };
        tokio::spawn(conn);
        loop {
            let now = Instant::now();
            if now >= end {
                break 'connect;
            }
            let sent_at = match interval {
                Some(iv) => {
                    if next > now {
                        tokio::time::sleep_until(next.into()).await;
                    }
                    let at = next;
                    next += iv;
                    at
                }
                None => now,
            };
            let (t, body, _) = payloads.next();
            let req = http::Request::post(t.path.as_str())
                .header(http::header::HOST, host.as_str())
                .header(http::header::CONTENT_TYPE, "application/json")
                .header(http::header::AUTHORIZATION, AUTHORIZATION)
                .body(Full::new(body))
                .unwrap();
            if sender.ready().await.is_err() {
                out.io_errors += 1;
                continue 'connect;
            }
            let result = match sender.send_request(req).await {
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    match resp.into_body().collect().await {
                        Ok(_) => Ok(status),
                        Err(_) => Err(()),
                    }
                }
                Err(_) => Err(()),
            };
            let done = Instant::now();
            if sent_at < measure_from || done > end {
                if result.is_err() {
                    continue 'connect;
                }
                continue;
            }
            match result {
                Ok(status) => {
                    *out.statuses.entry(status).or_default() += 1;
                    if matches!(status, 200 | 204) {
                        out.ok_latency.record(done - sent_at);
                    }
                }
                Err(()) => {
                    out.io_errors += 1;
                    continue 'connect;
                }
            }
        }
    }
    out
}

/// Run the load on its own thread (pinned to the generator core) and wait for it. `during` is called when the
/// measured window starts and ends (to read the relay's CPU time).
fn run_load(
    load: &Load,
    payloads: &Arc<Payloads>,
    core: Option<usize>,
    mut at_window_start: impl FnMut(),
) -> LoadResult {
    let load = load.clone();
    let payloads = payloads.clone();
    let warmup = load.warmup;
    let handle = on_thread(core, move || {
        Box::pin(async move {
            let start = Instant::now();
            let cpu0 = thread_cpu();
            let tasks: Vec<_> = (0..load.connections)
                .map(|i| tokio::spawn(connection(i, load.clone(), payloads.clone(), start)))
                .collect();
            let mut total = LoadResult {
                window: load.measure,
                ..Default::default()
            };
            for t in tasks {
                let r = t.await.expect("connection task");
                for (s, n) in r.statuses {
                    *total.statuses.entry(s).or_default() += n;
                }
                total.io_errors += r.io_errors;
                total.ok_latency.merge(r.ok_latency);
            }
            total.generator_busy =
                (thread_cpu() - cpu0).as_secs_f64() / start.elapsed().as_secs_f64();
            total
        })
    });
    std::thread::sleep(warmup);
    at_window_start();
    handle.join().expect("load generator thread")
}

// ---------------------------------------------------------------------------------------------------------
// The relay process

struct Usage {
    cpu_s: f64,
    hwm_mib: f64,
    rss_mib: f64,
}

fn usage(pid: u32) -> Usage {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces): state is field 3, utime 14, stime 15.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|x| x.parse::<f64>().ok()).unwrap_or(0.0);
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let cpu_s = (ticks(11) + ticks(12)) / hz;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kb = |key: &str| {
        status
            .lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|x| x.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    Usage {
        cpu_s,
        hwm_mib: kb("VmHWM:") / 1024.0,
        rss_mib: kb("VmRSS:") / 1024.0,
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct RelayProc {
    child: Child,
    ingress: SocketAddr,
    admin: SocketAddr,
    dir: tempfile::TempDir,
}

impl RelayProc {
    /// Start the relay binary with `[delivery]`, `[sinks…]` and subscriptions from `body`.
    fn start(body: &str, core: Option<usize>) -> Result<Self, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let ingress: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let config = format!(
            "[ingress]\nlisten = \"{ingress}\"\n[ingress.auth]\nbearer_tokens = [\"{TOKEN}\"]\n[admin]\nlisten = \"{admin}\"\n[log]\nformat = \"json\"\nlevel = \"warn,rdkafka=off,librdkafka=off\"\n{body}"
        );
        let path = dir.path().join("relay.toml");
        std::fs::write(&path, config).map_err(|e| e.to_string())?;
        let log = std::fs::File::create(dir.path().join("relay.log")).map_err(|e| e.to_string())?;
        let mut cmd = match core {
            Some(c) => {
                let mut cmd = Command::new("taskset");
                cmd.args(["-c", &c.to_string(), &relay_bin()]);
                cmd
            }
            None => Command::new(relay_bin()),
        };
        let child = cmd
            .arg("--config")
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", relay_bin()))?;
        let mut me = Self {
            child,
            ingress,
            admin,
            dir,
        };
        me.wait_ready(admin)?;
        Ok(me)
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The sum of a metric's series on `/metrics` (`None` when the admin listener does not answer).
    fn metric(&self, name: &str) -> Option<f64> {
        let text = get(self.admin, "/metrics", Duration::from_secs(2))?;
        Some(
            text.lines()
                .filter(|l| {
                    l.strip_prefix(name)
                        .is_some_and(|r| r.starts_with([' ', '{']))
                })
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum(),
        )
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("relay.log")).unwrap_or_default()
    }

    fn wait_ready(&mut self, admin: SocketAddr) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!(
                    "the relay exited ({status}) during start-up:\n{}",
                    self.log()
                ));
            }
            if readyz(admin) {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "the relay was not ready within 60 s:\n{}",
                    self.log()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for RelayProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `GET /readyz` answered 200.
fn readyz(admin: SocketAddr) -> bool {
    get(admin, "/readyz", Duration::from_millis(200))
        .is_some_and(|r| r.as_bytes().get(9..12) == Some(b"200"))
}

/// A blocking one-shot HTTP/1.0 `GET` of the admin listener (no runtime needed): the whole response, status
/// line first, or `None` when it does not connect within `connect` or does not answer.
fn get(admin: SocketAddr, path: &str, connect: Duration) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect_timeout(&admin, connect).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: relay\r\n\r\n").as_bytes())
        .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    Some(text)
}

/// Measure the relay under `load`: answered rate, latency, errors, its CPU per answered event and peak RSS.
struct RelayRun {
    result: LoadResult,
    cpu_us_per_event: f64,
    hwm_mib: f64,
    idle_rss_mib: f64,
}

fn measure_relay(
    opts: &Options,
    pins: Option<(usize, usize)>,
    config_body: &str,
    payloads: &Arc<Payloads>,
    rate: Option<f64>,
    connections: usize,
) -> Result<RelayRun, String> {
    let relay = RelayProc::start(config_body, pins.map(|p| p.1))?;
    let pid = relay.pid();
    let idle = usage(pid);
    let load = Load {
        addr: relay.ingress,
        connections,
        rate,
        warmup: opts.warmup(),
        measure: opts.measure(),
    };
    let cpu_start = Arc::new(Mutex::new(0.0));
    let c = cpu_start.clone();
    let result = run_load(&load, payloads, pins.map(|p| p.0), move || {
        *c.lock().unwrap() = usage(pid).cpu_s;
    });
    let end = usage(pid);
    if result.ok() == 0 && result.statuses.is_empty() {
        return Err(format!(
            "no answer from the relay ({} I/O errors); its log:\n{}",
            result.io_errors,
            relay.log()
        ));
    }
    // CPU over the window is divided by every answered request (200s and 503s alike cost CPU); per event
    // counts only what was accepted, which is what a user pays for.
    let cpu = end.cpu_s - *cpu_start.lock().unwrap();
    let answered = result.ok().max(1) as f64;
    Ok(RelayRun {
        cpu_us_per_event: cpu * 1e6 / answered,
        hwm_mib: end.hwm_mib,
        idle_rss_mib: idle.rss_mib,
        result,
    })
}

// ---------------------------------------------------------------------------------------------------------
// Baselines

/// The ceiling of HTTP ingress here: hyper reading each body and answering 204, on the relay's core.
/// The hyper server's answers, and its CPU time per answer in µs (over the whole run, warm-up included).
fn baseline_hyper(
    opts: &Options,
    pins: Option<(usize, usize)>,
    payloads: &Arc<Payloads>,
) -> (LoadResult, f64) {
    let server = serve_in_thread(pins.map(|p| p.1), || Box::pin(std::future::ready(204)));
    let load = Load {
        addr: server.addr,
        connections: opts.connections,
        rate: None,
        warmup: opts.warmup(),
        measure: opts.measure(),
    };
    let r = run_load(&load, payloads, pins.map(|p| p.0), || {});
    let served =
        r.ok() as f64 * (opts.warmup() + opts.measure()).as_secs_f64() / r.window.as_secs_f64();
    let cpu = server.stop();
    let per_event = cpu.as_secs_f64() * 1e6 / served.max(1.0);
    (r, per_event)
}

fn kafka_config(
    bootstrap: &str,
    linger_ms: u64,
    options: &[(String, String)],
) -> rdkafka::ClientConfig {
    // The relay's defaults (see sinks/kafka/config.rs): acks=all, idempotence, lz4, batch 1 MB; `linger_ms` is
    // the relay's (`--kafka-linger-ms`, else its default) or 0 where the producer measures the broker's floor.
    let mut c = rdkafka::ClientConfig::new();
    c.set("bootstrap.servers", bootstrap)
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("compression.type", "lz4")
        .set("linger.ms", linger_ms.to_string())
        .set("batch.size", "1000000")
        .set("message.timeout.ms", "300000")
        .set("queue.buffering.max.messages", "100000")
        .set("queue.buffering.max.kbytes", "1048576");
    for (k, v) in options {
        c.set(k, v);
    }
    c
}

/// What a direct client achieved: rate and latency (send → broker ack).
pub struct Direct {
    pub rate: f64,
    pub latency: Latencies,
}

/// A direct rdkafka producer, same payloads and headers, same batch settings, on the relay's core. Closed loop
/// keeps up to `window` records in flight; a fixed rate sends on a schedule and measures each ack's latency.
fn baseline_kafka(
    opts: &Options,
    pins: Option<(usize, usize)>,
    bootstrap: &str,
    topic: &str,
    payloads: &Arc<Payloads>,
    rate: Option<f64>,
    linger_ms: u64,
) -> Result<Direct, String> {
    use rdkafka::message::{Header, OwnedHeaders};
    use rdkafka::producer::{FutureProducer, FutureRecord};
    let (bootstrap, topic, payloads) = (bootstrap.to_string(), topic.to_string(), payloads.clone());
    let options = opts.kafka_options.clone();
    let (warmup, measure) = (opts.warmup(), opts.measure());
    on_thread(pins.map(|p| p.1), move || {
        Box::pin(async move {
            // Created on the pinned thread: librdkafka's threads inherit its affinity.
            let producer: FutureProducer = kafka_config(&bootstrap, linger_ms, &options)
                .create()
                .map_err(|e| format!("kafka producer: {e}"))?;
            // Connected and holding a producer id before the clock starts, as the relay is when /readyz
            // answers 200: one record, acknowledged.
            let (_, body, id) = payloads.next();
            let first = FutureRecord::to(&topic).payload(&body[..]).key(id.as_str());
            producer
                .send(first, Duration::from_secs(30))
                .await
                .map_err(|(e, _)| format!("kafka producer: first record: {e}"))?;
            let start = Instant::now();
            let measure_from = start + warmup;
            let end = measure_from + measure;
            let mut in_flight = FuturesUnordered::new();
            let mut latency = Latencies::default();
            let mut acked = 0u64;
            let mut failed = 0u64;
            let window = 10_000;
            let interval = rate.map(|r| Duration::from_secs_f64(1.0 / r));
            let mut next = start;
            while Instant::now() < end {
                if let Some(iv) = interval {
                    // Keep acks flowing while waiting for the next slot.
                    while Instant::now() < next {
                        tokio::select! {
                            Some((at, r)) = in_flight.next(), if !in_flight.is_empty() => {
                                count(&mut latency, &mut acked, &mut failed, at, r, measure_from, end);
                            }
                            _ = tokio::time::sleep_until(next.into()) => {}
                        }
                    }
                    next += iv;
                } else if in_flight.len() >= window {
                    if let Some((at, r)) = in_flight.next().await {
                        count(&mut latency, &mut acked, &mut failed, at, r, measure_from, end);
                    }
                    continue;
                }
                let at = interval.map(|iv| next - iv).unwrap_or_else(Instant::now);
                let (t, body, id) = payloads.next();
                let headers = OwnedHeaders::new()
                    .insert(Header { key: "trigger-id", value: Some(t.trigger.as_str()) })
                    .insert(Header { key: "invocation-id", value: Some(id.as_str()) })
                    .insert(Header { key: "subscription-id", value: Some("direct") })
                    .insert(Header { key: "content-type", value: Some("application/json") });
                let rec = FutureRecord::to(&topic).payload(&body[..]).key(id.as_str()).headers(headers);
                match producer.send_result(rec) {
                    Ok(f) => in_flight.push(async move { (at, f.await) }),
                    Err(_) => {
                        // librdkafka's queue is full: wait for one ack.
                        if let Some((at, r)) = in_flight.next().await {
                            count(&mut latency, &mut acked, &mut failed, at, r, measure_from, end);
                        }
                    }
                }
            }
            if failed > 0 && acked == 0 {
                return Err(format!("the direct producer got no ack ({failed} failed)"));
            }
            Ok(Direct { rate: acked as f64 / measure.as_secs_f64(), latency })
        })
    })
    .join()
    .expect("kafka baseline thread")
}

#[allow(clippy::too_many_arguments)]
fn count<T, E, C>(
    latency: &mut Latencies,
    acked: &mut u64,
    failed: &mut u64,
    at: Instant,
    r: Result<Result<T, E>, C>,
    measure_from: Instant,
    end: Instant,
) {
    let now = Instant::now();
    if at < measure_from || now > end {
        return;
    }
    match r {
        Ok(Ok(_)) => {
            *acked += 1;
            latency.record(now - at);
        }
        _ => *failed += 1,
    }
}

fn nats_subject(prefix: &str, trigger: &str) -> String {
    format!("{prefix}.{}", trigger.trim_start_matches("idn:"))
}

fn nats_headers(trigger: &str, id: &str) -> async_nats::HeaderMap {
    let mut h = async_nats::HeaderMap::new();
    h.insert("trigger-id", trigger);
    h.insert("subscription-id", "direct");
    h.insert("content-type", "application/json");
    h.insert("invocation-id", id);
    h
}

/// A direct async-nats publisher on the relay's core. Core: publishes followed by a flush every 256 (what
/// the relay's core sink does per batch); JetStream: up to 256 acks awaited at once (the relay's default
/// `max_in_flight`), `Nats-Msg-Id` set as the relay sets it.
fn baseline_nats(
    opts: &Options,
    pins: Option<(usize, usize)>,
    url: &str,
    prefix: &str,
    jetstream: bool,
    payloads: &Arc<Payloads>,
) -> Result<Direct, String> {
    let (url, prefix, payloads) = (url.to_string(), prefix.to_string(), payloads.clone());
    let (warmup, measure) = (opts.warmup(), opts.measure());
    on_thread(pins.map(|p| p.1), move || {
        Box::pin(async move {
            let client = async_nats::connect(&url)
                .await
                .map_err(|e| format!("nats connect {url}: {e}"))?;
            let js = async_nats::jetstream::new(client.clone());
            let start = Instant::now();
            let measure_from = start + warmup;
            let end = measure_from + measure;
            let mut latency = Latencies::default();
            let (mut acked, mut failed) = (0u64, 0u64);
            let mut in_flight = FuturesUnordered::new();
            while Instant::now() < end {
                if jetstream {
                    if in_flight.len() >= 256 {
                        if let Some((at, r)) = in_flight.next().await {
                            count(
                                &mut latency,
                                &mut acked,
                                &mut failed,
                                at,
                                r,
                                measure_from,
                                end,
                            );
                        }
                        continue;
                    }
                    let (t, body, id) = payloads.next();
                    let msg = async_nats::jetstream::message::PublishMessage::build()
                        .payload(body)
                        .headers(nats_headers(&t.trigger, &id))
                        .message_id(&id);
                    let at = Instant::now();
                    match js
                        .send_publish(nats_subject(&prefix, &t.trigger), msg)
                        .await
                    {
                        Ok(ack) => in_flight.push(async move { (at, Ok::<_, ()>(ack.await)) }),
                        Err(_) => failed += 1,
                    }
                } else {
                    let at = Instant::now();
                    for _ in 0..256 {
                        let (t, body, id) = payloads.next();
                        client
                            .publish_with_headers(
                                nats_subject(&prefix, &t.trigger),
                                nats_headers(&t.trigger, &id),
                                body,
                            )
                            .await
                            .map_err(|e| format!("nats publish: {e}"))?;
                    }
                    let r = client.flush().await;
                    for _ in 0..256 {
                        count(
                            &mut latency,
                            &mut acked,
                            &mut failed,
                            at,
                            Ok::<_, ()>(r.as_ref().map(|_| ()).map_err(|_| ())),
                            measure_from,
                            end,
                        );
                    }
                }
            }
            Ok(Direct {
                rate: acked as f64 / measure.as_secs_f64(),
                latency,
            })
        })
    })
    .join()
    .expect("nats baseline thread")
}

// ---------------------------------------------------------------------------------------------------------
// Scenarios

fn discard_config(subs_per_trigger: usize, triggers: &[&str]) -> String {
    let mut s = String::from("[sinks.discard.queue]\nmax_events = 10000\nmax_bytes = 67108864\n");
    for t in triggers {
        for k in 0..subs_per_trigger {
            let _ = writeln!(
                s,
                "[[subscriptions]]\nname = \"{t} {k}\"\ntriggerId = \"{t}\"\ntype = \"DISCARD\""
            );
        }
    }
    s
}

fn kafka_relay_config(
    opts: &Options,
    bootstrap: &str,
    topic: &str,
    ack: &str,
    queue: (usize, u64),
) -> String {
    let (max_events, max_bytes) = queue;
    let mut s = format!(
        "[delivery]\nack = \"{ack}\"\n[sinks.kafka.bench]\nbootstrap_servers = \"{bootstrap}\"\n"
    );
    if let Some(l) = opts.kafka_linger_ms {
        let _ = writeln!(s, "linger_ms = {l}");
    }
    let _ = writeln!(
        s,
        "[sinks.kafka.bench.queue]\nmax_events = {max_events}\nmax_bytes = {max_bytes}"
    );
    if !opts.kafka_options.is_empty() {
        s.push_str("[sinks.kafka.bench.options]\n");
        for (k, v) in &opts.kafka_options {
            let _ = writeln!(s, "{k:?} = {v:?}");
        }
    }
    for t in MIX {
        let _ = writeln!(
            s,
            "[[subscriptions]]\nname = \"{t}\"\ntriggerId = \"{t}\"\ntype = \"KAFKA\"\nkafkaConfig = {{ topic = \"{topic}\" }}"
        );
    }
    s
}

fn nats_relay_config(url: &str, prefix: &str, jetstream: bool) -> String {
    let mut s =
        format!("[delivery]\nack = \"delivered\"\n[sinks.nats.bench]\nservers = [\"{url}\"]\n");
    for t in MIX {
        let _ = writeln!(
            s,
            "[[subscriptions]]\nname = \"{t}\"\ntriggerId = \"{t}\"\ntype = \"NATS\"\nnatsConfig = {{ subject = \"{prefix}.{{trigger}}\", jetstream = {jetstream} }}"
        );
    }
    s
}

/// One DISCARD subscription per filter on `idn:identity-attributes-changed`.
fn filters_config(filters: &[String]) -> String {
    let mut s = String::from("[sinks.discard.queue]\nmax_events = 10000\nmax_bytes = 67108864\n");
    for (i, f) in filters.iter().enumerate() {
        let _ = writeln!(
            s,
            "[[subscriptions]]\nname = \"filtered {i}\"\ntriggerId = \"idn:identity-attributes-changed\"\ntype = \"DISCARD\"\nfilter = '{f}'"
        );
    }
    s
}

/// A webhook that reads each body and answers 200 after `delay` (a slow downstream for the overload scenario).
struct LocalServer {
    addr: SocketAddr,
    /// CPU time the server's thread used, read when it stops.
    cpu: Arc<Mutex<Duration>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl LocalServer {
    /// Stop the server; the CPU time its thread used.
    fn stop(mut self) -> Duration {
        self.shut();
        *self.cpu.lock().unwrap()
    }

    fn shut(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for LocalServer {
    fn drop(&mut self) {
        self.shut();
    }
}

fn slow_webhook(core: Option<usize>, delay: Duration) -> LocalServer {
    serve_in_thread(core, move || {
        Box::pin(async move {
            tokio::time::sleep(delay).await;
            200
        })
    })
}

/// A hyper HTTP/1.1 server on its own thread: reads each body, answers the status `answer` gives.
fn serve_in_thread(
    core: Option<usize>,
    answer: impl Fn() -> std::pin::Pin<Box<dyn std::future::Future<Output = u16> + Send>>
        + Send
        + Sync
        + 'static,
) -> LocalServer {
    use hyper::service::service_fn;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    listener.set_nonblocking(true).unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let answer = Arc::new(answer);
    let cpu = Arc::new(Mutex::new(Duration::ZERO));
    let cpu_out = cpu.clone();
    let thread = on_thread(core, move || {
        Box::pin(async move {
            let cpu0 = thread_cpu();
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            let accept = async {
                loop {
                    let Ok((s, _)) = listener.accept().await else {
                        continue;
                    };
                    let _ = s.set_nodelay(true);
                    let answer = answer.clone();
                    tokio::spawn(async move {
                        let svc = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                            let answer = answer.clone();
                            async move {
                                let body = req.into_body().collect().await?.to_bytes();
                                std::hint::black_box(body);
                                let status = answer().await;
                                Ok::<_, hyper::Error>(
                                    http::Response::builder()
                                        .status(status)
                                        .body(http_body_util::Empty::<Bytes>::new())
                                        .unwrap(),
                                )
                            }
                        });
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(s), svc)
                            .await;
                    });
                }
            };
            tokio::select! {
                _ = accept => {}
                _ = stop_rx => {}
            }
            *cpu_out.lock().unwrap() = thread_cpu() - cpu0;
        })
    });
    LocalServer {
        addr,
        cpu,
        stop: Some(stop_tx),
        thread: Some(thread),
    }
}

/// Delete a bench topic so the in-memory broker lets go of its data (best effort).
fn delete_topic(bootstrap: &str, topic: &str) {
    use rdkafka::admin::{AdminClient, AdminOptions};
    let (bootstrap, topic) = (bootstrap.to_string(), topic.to_string());
    let _ = on_thread(None, move || {
        Box::pin(async move {
            let Ok(admin) = rdkafka::ClientConfig::new()
                .set("bootstrap.servers", &bootstrap)
                .create::<AdminClient<rdkafka::client::DefaultClientContext>>()
            else {
                return;
            };
            let _ = admin.delete_topics(&[&topic], &AdminOptions::new()).await;
        })
    })
    .join();
}

fn broker_up(addr: &str) -> bool {
    use std::net::ToSocketAddrs;
    let hostport = addr
        .trim_start_matches("nats://")
        .split(',')
        .next()
        .unwrap_or_default()
        .to_string();
    hostport
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .is_some_and(|a| std::net::TcpStream::connect_timeout(&a, Duration::from_secs(2)).is_ok())
}

const KAFKA_HELP: &str = "needs a Kafka-compatible broker: run `scripts/bench` (starts tansu on a free port), or start one \
     (`tansu broker --storage-engine memory://tansu/ --listener-url tcp://127.0.0.1:9092 \
     --advertised-listener-url tcp://127.0.0.1:9092`) and set TRIGGER_RELAY_BENCH_KAFKA=127.0.0.1:9092";
const NATS_HELP: &str =
    "needs nats-server with JetStream: run `scripts/bench` (starts it on a free port), or run \
     `nats-server -js -p 4222` and set TRIGGER_RELAY_BENCH_NATS=nats://127.0.0.1:4222";

/// A tansu broker (in-memory storage) owned by the harness, so a scenario can stop it (SIGSTOP: connections
/// stay open, nothing is answered) and let it go on (SIGCONT). `$TRIGGER_RELAY_BENCH_TANSU`, else `tansu` on
/// the PATH (scripts/test installs it).
struct PausableBroker {
    child: Child,
    addr: String,
    paused: bool,
}

impl PausableBroker {
    fn start() -> Result<Self, String> {
        let bin = std::env::var("TRIGGER_RELAY_BENCH_TANSU").unwrap_or_else(|_| "tansu".into());
        let addr = format!("127.0.0.1:{}", free_port());
        let url = format!("tcp://{addr}");
        let child = Command::new(&bin)
            .args([
                "broker",
                "--storage-engine",
                "memory://tansu/",
                "--listener-url",
            ])
            .arg(&url)
            .arg("--advertised-listener-url")
            .arg(&url)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| {
                format!("cannot start {bin} (run scripts/test once to install it): {e}")
            })?;
        let mut me = Self {
            child,
            addr,
            paused: false,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        // No readiness signal from tansu but its listening socket: poll it.
        while !broker_up(&me.addr) {
            if let Ok(Some(status)) = me.child.try_wait() {
                return Err(format!("{bin} exited ({status}) during start-up"));
            }
            if Instant::now() > deadline {
                return Err(format!("{bin} did not listen on {} within 20 s", me.addr));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(me)
    }

    fn signal(&mut self, sig: libc::c_int) {
        // SAFETY: kill(2) with the pid of a child this process spawned and has not reaped.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, sig);
        }
        self.paused = sig == libc::SIGSTOP;
    }

    fn pause(&mut self) {
        self.signal(libc::SIGSTOP);
    }

    fn resume(&mut self) {
        self.signal(libc::SIGCONT);
    }
}

impl Drop for PausableBroker {
    fn drop(&mut self) {
        if self.paused {
            self.resume();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn create_topic(bootstrap: &str, topic: &str) -> Result<(), String> {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    let (bootstrap, topic) = (bootstrap.to_string(), topic.to_string());
    on_thread(None, move || {
        Box::pin(async move {
            let admin: AdminClient<rdkafka::client::DefaultClientContext> =
                rdkafka::ClientConfig::new()
                    .set("bootstrap.servers", &bootstrap)
                    .create()
                    .map_err(|e| e.to_string())?;
            let t = NewTopic::new(&topic, 1, TopicReplication::Fixed(1));
            let r = admin
                .create_topics(
                    [&t],
                    &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
                )
                .await
                .map_err(|e| format!("create topic {topic}: {e}"))?;
            for res in r {
                res.map_err(|(t, e)| format!("create topic {t}: {e}"))?;
            }
            Ok(())
        })
    })
    .join()
    .expect("admin thread")
}

fn create_stream(url: &str, name: &str, subjects: &str) -> Result<(), String> {
    let (url, name, subjects) = (url.to_string(), name.to_string(), subjects.to_string());
    on_thread(None, move || {
        Box::pin(async move {
            let client = async_nats::connect(&url)
                .await
                .map_err(|e| format!("nats connect {url}: {e}"))?;
            let js = async_nats::jetstream::new(client);
            js.create_stream(async_nats::jetstream::stream::Config {
                name,
                subjects: vec![subjects],
                storage: async_nats::jetstream::stream::StorageType::Memory,
                max_bytes: 1 << 30,
                discard: async_nats::jetstream::stream::DiscardPolicy::Old,
                ..Default::default()
            })
            .await
            .map_err(|e| format!("create stream: {e}"))?;
            Ok(())
        })
    })
    .join()
    .expect("nats admin thread")
}

fn row_from(scenario: &str, run: &mut RelayRun, baseline: f64, baseline_name: &str) -> Row {
    Row {
        scenario: scenario.to_string(),
        relay: run.result.ok_rate(),
        baseline,
        baseline_name: baseline_name.to_string(),
        p99_ms: run.result.ok_latency.pct(0.99),
        rss_mib: run.hwm_mib,
        cpu_us_per_event: run.cpu_us_per_event,
        errors: run.result.errors(),
        note: format!(
            "{}; generator busy {:.0}%",
            run.result.ok_latency.summary(),
            run.result.generator_busy * 100.0
        ),
        skipped: None,
    }
}

fn progress(msg: &str) {
    eprintln!("[load] {msg}");
}

/// Run the selected scenarios; a scenario that cannot run (broker missing, relay not starting) is an error,
/// unless `skip_missing_brokers` was asked for.
pub fn run(opts: &Options) -> Result<Report, String> {
    RELAY_BIN.get_or_init(|| opts.relay_bin.clone());
    let pins = pinning();
    let mix = Arc::new(Payloads::new(MIX));
    let (min, max) = mix.sizes();
    progress(&format!(
        "relay {}; {} payloads of {min}..{max} bytes (mean {}); {} connections; pinned: {}",
        relay_bin(),
        mix.len(),
        mix.mean_size(),
        opts.connections,
        pins.is_some()
    ));
    let mut report = Report {
        rows: Vec::new(),
        pinned: pins.is_some(),
        idle_rss_mib: None,
    };
    let run_id = format!("{:08x}", mix.nonce());

    let need = |what: &Option<String>,
                help: &str,
                scenario: &str,
                rows: &mut Vec<Row>|
     -> Result<Option<String>, String> {
        match what {
            Some(a) if broker_up(a) => Ok(Some(a.clone())),
            _ if opts.skip_missing_brokers => {
                rows.push(Row {
                    scenario: scenario.to_string(),
                    skipped: Some("broker not running".into()),
                    ..Default::default()
                });
                Ok(None)
            }
            Some(a) => Err(format!(
                "scenario {scenario}: nothing listens on {a}; {help}"
            )),
            None => Err(format!("scenario {scenario} {help}")),
        }
    };

    if opts.selected("blackhole") {
        progress("blackhole: baseline (hyper, 204)");
        let (base, base_cpu) = baseline_hyper(opts, pins, &mix);
        progress("blackhole: relay → DISCARD");
        let mut r = measure_relay(
            opts,
            pins,
            &discard_config(1, MIX),
            &mix,
            None,
            opts.connections,
        )?;
        report.idle_rss_mib = Some(r.idle_rss_mib);
        let mut row = row_from("ingress → DISCARD", &mut r, base.ok_rate(), "hyper 204");
        row.note = format!(
            "CPU/event: hyper 204 {base_cpu:.1} µs, relay {:.2}× that; {}",
            row.cpu_us_per_event / base_cpu.max(1e-9),
            row.note
        );
        report.rows.push(row);
    }

    for ack in ["accepted", "delivered"] {
        let name = format!("kafka-{ack}");
        if !opts.selected(&name) {
            continue;
        }
        let Some(bootstrap) = need(&opts.kafka, KAFKA_HELP, &name, &mut report.rows)? else {
            continue;
        };
        let topic = format!("bench-{run_id}-{ack}");
        create_topic(&bootstrap, &topic)?;
        progress(&format!("{name}: baseline (direct rdkafka producer)"));
        let base = baseline_kafka(opts, pins, &bootstrap, &topic, &mix, None, opts.linger_ms())?;
        progress(&format!("{name}: relay"));
        // `delivered` answers only after the broker's ack: its rate is connections / latency, so it gets 4×
        // the connections (ISC's own concurrency is not documented; 256 is within what a tenant sends).
        let conns = if ack == "delivered" {
            opts.connections * 4
        } else {
            opts.connections
        };
        let mut r = measure_relay(
            opts,
            pins,
            &kafka_relay_config(opts, &bootstrap, &topic, ack, (10_000, 64 << 20)),
            &mix,
            None,
            conns,
        )?;
        let row = row_from(
            &format!("ingress → Kafka ({ack})"),
            &mut r,
            base.rate,
            "rdkafka direct",
        );
        let half = row.relay / 2.0;
        report.rows.push(row);
        if ack == "delivered" && half > 0.0 {
            progress(&format!(
                "{name}: half the maximum, {half:.0} ev/s: direct producer, then relay"
            ));
            let mut base = baseline_kafka(
                opts,
                pins,
                &bootstrap,
                &topic,
                &mix,
                Some(half),
                opts.linger_ms(),
            )?;
            let mut r = measure_relay(
                opts,
                pins,
                &kafka_relay_config(opts, &bootstrap, &topic, ack, (10_000, 64 << 20)),
                &mix,
                Some(half),
                conns,
            )?;
            let mut row = row_from(
                "ingress → Kafka (delivered) at ½ max",
                &mut r,
                base.rate,
                "rdkafka direct, same rate",
            );
            let (rp, bp) = (row.p99_ms, base.latency.pct(0.99));
            row.note = format!(
                "added p99 {:.2} ms (direct producer at the same rate: {}); relay {}",
                rp - bp,
                base.latency.summary(),
                row.note
            );
            report.rows.push(row);
        }
        delete_topic(&bootstrap, &topic);
    }

    if opts.selected("kafka-latency") {
        if let Some(bootstrap) = need(&opts.kafka, KAFKA_HELP, "kafka-latency", &mut report.rows)? {
            let topic = format!("bench-{run_id}-latency");
            create_topic(&bootstrap, &topic)?;
            progress("kafka-latency: baseline (hyper, 204)");
            let (hyper, _) = baseline_hyper(opts, pins, &mix);
            progress(&format!(
                "kafka-latency: relay (delivered, {} connections)",
                opts.connections
            ));
            let mut r = measure_relay(
                opts,
                pins,
                &kafka_relay_config(opts, &bootstrap, &topic, "delivered", (10_000, 64 << 20)),
                &mix,
                None,
                opts.connections,
            )?;
            let rate = r.result.ok_rate().max(1.0);
            progress(&format!(
                "kafka-latency: direct producer at {rate:.0} ev/s, linger.ms=0 (the broker's produce → ack)"
            ));
            let mut floor = baseline_kafka(opts, pins, &bootstrap, &topic, &mix, Some(rate), 0)?;
            let mut row = row_from(
                &format!("Kafka (delivered), {} connections", opts.connections),
                &mut r,
                hyper.ok_rate(),
                "hyper 204",
            );
            let (p50, p99) = (r.result.ok_latency.pct(0.5), r.result.ok_latency.pct(0.99));
            let (b50, b99) = (floor.latency.pct(0.5), floor.latency.pct(0.99));
            row.note = format!(
                "relay linger_ms {}; added p50 {:.2} ms, p99 {:.2} ms over the broker's produce → ack (direct producer, linger.ms=0, same rate: {}); relay {}",
                opts.linger_ms(),
                p50 - b50,
                p99 - b99,
                floor.latency.summary(),
                row.note
            );
            report.rows.push(row);
            delete_topic(&bootstrap, &topic);
        }
    }

    if opts.selected("kafka-memory") {
        // The relay's own broker, so it can be held back (SIGSTOP): nothing is acknowledged, the queue fills to
        // its byte capacity and every accepted payload stays in the relay and/or librdkafka.
        match PausableBroker::start() {
            Err(e) if opts.skip_missing_brokers => report.rows.push(Row {
                scenario: "kafka-memory".into(),
                skipped: Some(e),
                ..Default::default()
            }),
            Err(e) => return Err(format!("scenario kafka-memory: {e}")),
            Ok(mut broker) => {
                let topic = format!("bench-{run_id}-memory");
                create_topic(&broker.addr, &topic)?;
                let queue_bytes: u64 = 64 << 20;
                let relay = RelayProc::start(
                    &kafka_relay_config(
                        opts,
                        &broker.addr,
                        &topic,
                        "accepted",
                        (1_000_000, queue_bytes),
                    ),
                    pins.map(|p| p.1),
                )?;
                let idle = usage(relay.pid());
                progress("kafka-memory: broker stopped; filling the relay's queue (accepted)");
                broker.pause();
                let load = Load {
                    addr: relay.ingress,
                    connections: opts.connections,
                    rate: None,
                    warmup: opts.warmup(),
                    measure: opts.measure(),
                };
                let mut result = run_load(&load, &mix, pins.map(|p| p.0), || {});
                let end = usage(relay.pid());
                let held = relay.metric("trigger_relay_queue_depth_events");
                broker.resume();
                drop(relay);
                drop(broker);
                let queue_mib = (queue_bytes >> 20) as f64;
                let shed = result.statuses.get(&503).copied().unwrap_or(0);
                // Every accepted event is still held (nothing is acknowledged): what each costs beyond its
                // body, on average, is what the relay's per-event overhead for Kafka must cover.
                let held = held.unwrap_or(0.0).max(1.0);
                let grown = (end.hwm_mib - idle.rss_mib) * (1u64 << 20) as f64;
                let per_event = grown / held - mix.mean_size() as f64;
                report.rows.push(Row {
                    scenario: "Kafka (accepted), broker stopped: peak RSS".into(),
                    relay: end.hwm_mib - idle.rss_mib,
                    baseline: queue_mib,
                    baseline_name: "queue max_bytes, MiB".into(),
                    p99_ms: result.ok_latency.pct(0.99),
                    rss_mib: end.hwm_mib,
                    cpu_us_per_event: 0.0,
                    errors: String::new(),
                    note: format!(
                        "relay and baseline columns are MiB: peak RSS {:.1} − idle RSS {:.1} vs the queue's byte capacity; ratio = that over capacity; queue full reached: {} (503×{shed}); {held:.0} events held, {per_event:.0} B each beyond a mean body of {} B; relay linger_ms {}",
                        end.hwm_mib,
                        idle.rss_mib,
                        if shed > 0 { "yes" } else { "NO" },
                        mix.mean_size(),
                        opts.linger_ms()
                    ),
                    skipped: None,
                });
            }
        }
    }

    for js in [false, true] {
        let name = if js { "nats-jetstream" } else { "nats-core" };
        if !opts.selected(name) {
            continue;
        }
        let Some(url) = need(&opts.nats, NATS_HELP, name, &mut report.rows)? else {
            continue;
        };
        let prefix = format!("bench{run_id}{}", if js { "js" } else { "core" });
        if js {
            create_stream(&url, &prefix.to_uppercase(), &format!("{prefix}.>"))?;
        }
        progress(&format!("{name}: baseline (direct async-nats)"));
        let base = baseline_nats(opts, pins, &url, &prefix, js, &mix)?;
        progress(&format!("{name}: relay (delivered)"));
        let mut r = measure_relay(
            opts,
            pins,
            &nats_relay_config(&url, &prefix, js),
            &mix,
            None,
            opts.connections * 4,
        )?;
        let label = if js {
            "ingress → NATS JetStream (delivered)"
        } else {
            "ingress → NATS core (delivered)"
        };
        report
            .rows
            .push(row_from(label, &mut r, base.rate, "async-nats direct"));
    }

    if opts.selected("fanout") {
        let mut one: Option<(f64, f64)> = None;
        for k in [1, 5, 10, 25, 50] {
            progress(&format!("fanout: {k} DISCARD subscription(s) per event"));
            let mut r = measure_relay(
                opts,
                pins,
                &discard_config(k, MIX),
                &mix,
                None,
                opts.connections,
            )?;
            let (rate, cpu) = (r.result.ok_rate(), r.cpu_us_per_event);
            let (base_rate, base_cpu) = *one.get_or_insert((rate, cpu));
            let mut row = row_from(
                &format!("fan-out to {k}"),
                &mut r,
                base_rate,
                "fan-out to 1",
            );
            row.note = format!(
                "CPU/event {:.2}× fan-out to 1; {}",
                cpu / base_cpu.max(1e-9),
                row.note
            );
            report.rows.push(row);
        }
    }

    if opts.selected("overload") {
        // The destination must be the bottleneck for the queue to fill: an HTTP webhook (in this process, on
        // the generator's core) that answers after 200 ms, so the HTTP sink's 256 requests in flight carry at
        // most ~1.3k events/s, well under what the ingress takes even at 2× (the point is shedding, not CPU).
        let hook = slow_webhook(pins.map(|p| p.0), Duration::from_millis(200));
        let queue_bytes: u64 = 16 << 20;
        let config = format!(
            "[sinks.http.queue]\nmax_events = 10000\nmax_bytes = {queue_bytes}\n{}",
            MIX.iter()
                .map(|t| format!(
                    "[[subscriptions]]\nname = \"{t}\"\ntriggerId = \"{t}\"\ntype = \"HTTP\"\nhttpConfig = {{ url = \"http://{}/hook\" }}\n",
                    hook.addr
                ))
                .collect::<String>()
        );
        progress("overload: measuring the maximum (slow webhook, accepted, closed loop)");
        let max = measure_relay(opts, pins, &config, &mix, None, opts.connections)?
            .result
            .ok_rate();
        let offered = (2.0 * max).max(100.0);
        progress(&format!(
            "overload: offering {offered:.0} ev/s (2× {max:.0})"
        ));
        let mut r = measure_relay(opts, pins, &config, &mix, Some(offered), opts.connections)?;
        let mut row = row_from(
            "overload: 2× max offered (200 ms webhook)",
            &mut r,
            max,
            "measured max",
        );
        let limit = (queue_bytes >> 20) as f64 + 64.0;
        let shed = r.result.statuses.get(&503).copied().unwrap_or(0);
        row.note = format!(
            "offered {offered:.0} ev/s, shed 503×{shed}; peak RSS {:.1} MiB vs limit {limit:.0} MiB (queue 16 MiB + 64): {}; {}",
            row.rss_mib,
            if row.rss_mib <= limit { "within" } else { "OVER" },
            row.note
        );
        report.rows.push(row);
        drop(hook);
    }

    if opts.selected("filters") {
        let one = Arc::new(Payloads::new(&["idn:identity-attributes-changed"]));
        progress("filters: baseline (1 unfiltered DISCARD subscription)");
        let base = measure_relay(
            opts,
            pins,
            &discard_config(1, &["idn:identity-attributes-changed"]),
            &one,
            None,
            opts.connections,
        )?;
        let shared_path = shared_path_filters();
        for (label, config) in [
            (
                "50 filtered subscriptions",
                filters_config(&typical_filters()),
            ),
            ("10 filters that share a path", filters_config(&shared_path)),
        ] {
            progress(&format!("filters: {label}"));
            let mut r = measure_relay(opts, pins, &config, &one, None, opts.connections)?;
            let mut row = row_from(label, &mut r, base.result.ok_rate(), "1 unfiltered");
            row.note = format!(
                "CPU/event {:.2}× unfiltered; {}",
                row.cpu_us_per_event / base.cpu_us_per_event.max(1e-9),
                row.note
            );
            report.rows.push(row);
        }
    }

    if report.rows.is_empty() {
        return Err(format!(
            "no scenario matches {:?}; scenarios: {}",
            opts.scenarios,
            SCENARIOS.join(", ")
        ));
    }
    Ok(report)
}

/// Where the table goes: `$TRIGGER_RELAY_BENCH_OUT`, else the repository's `target/load-bench.md`.
pub fn out_path() -> PathBuf {
    std::env::var_os("TRIGGER_RELAY_BENCH_OUT")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/load-bench.md"))
}
