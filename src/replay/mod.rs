//! `trigger-relay replay`: deliver dead-lettered events again, each to its original subscription (or a named
//! one), through the relay's own route, queue and sink: the same envelope, headers, retries and auth as the
//! first attempt, plus `replay: true` and `replay-of: <original tracking id>`.
//!
//! Why a command and not a consumer script: only the relay knows how a subscription is delivered (its
//! webhook's credentials, its topic's key, its CloudEvents envelope), and the dead letters' `dead-letter-*`
//! headers name the subscription in the relay's own ids. So the command starts the relay library in-process
//! (listeners on loopback, like `check-config --connect`) and hands each event to [`Relay::redeliver`].
//!
//! What it never does: delete, commit or ack anything in the dead letter (a replayed event stays where it was;
//! one that fails again is reported, not written a second time), hold the dead letter in memory (records are
//! read and delivered one by one, at most `--concurrency` in flight), or print a secret (it prints
//! subscription ids and names, positions, tracking ids and the relay's own error texts).
//!
//! Exit codes: [`EXIT_OK`], [`EXIT_INCOMPLETE`], [`EXIT_USAGE`], [`EXIT_SOURCE`], [`EXIT_START`].

mod report;
pub mod source;

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use futures_util::stream::FuturesUnordered;
use futures_util::StreamExt;

use crate::relay::{Redelivery, ReplayRefusal};
use crate::Relay;
use report::{Progress, Stats};
use source::{DeadLetterRecord, Source, SourceError};

/// Every selected event was redelivered (dry run: every one would be).
pub const EXIT_OK: u8 = 0;
/// Some selected event failed again or has no subscription to go to (orphaned); nothing was lost.
pub const EXIT_INCOMPLETE: u8 = 1;
/// The arguments are wrong (a sink or subscription the config does not have).
pub const EXIT_USAGE: u8 = 2;
/// The dead letter cannot be read (the broker does not answer, no such topic, a core NATS subject).
pub const EXIT_SOURCE: u8 = 3;
/// The relay cannot start with this config (nothing was sent).
pub const EXIT_START: u8 = 4;

/// The dead-letter reasons an event can have (`dead-letter-reason`, [`crate::sinks::SinkError::reason`]).
const REASONS: [&str; 4] = ["rejected", "too_large", "timed_out", "unavailable"];

const EXIT_CODES: &str = "Exit codes:\n  0  every selected event was redelivered (with --dry-run: every one would be)\n  \
1  some event failed again or is orphaned (its subscription no longer exists); they stay in the dead letter\n  \
2  wrong arguments (a sink or subscription the config does not have)\n  \
3  the dead letter cannot be read (no such topic, a core NATS subject, the broker does not answer)\n  \
4  the relay cannot start with this config (nothing was sent)\n\n\
Nothing is ever removed from the dead letter: run the command again, or with other filters, as often as needed.";

/// `trigger-relay replay` arguments.
#[derive(Debug, clap::Args)]
#[command(after_help = EXIT_CODES)]
pub struct ReplayArgs {
    /// The dead letter to read, named by a sink of the config file: `kafka.<cluster>:<topic>` or
    /// `nats.<connection>:<subject>` (`kafka:<topic>` / `nats:<subject>` when the config has one). The
    /// connection's servers, TLS and credentials are used. A NATS subject must be held by a JetStream stream
    /// (core NATS keeps nothing to replay).
    #[arg(long, value_name = "SINK:TOPIC_OR_SUBJECT")]
    pub from: String,
    /// Deliver every selected event to this subscription (id, or a unique name) instead of the one its
    /// `subscription-id` header names. It must be for the event's trigger.
    #[arg(long, value_name = "ID_OR_NAME")]
    pub subscription: Option<String>,
    /// Only events that failed for this reason (the `dead-letter-reason` header). Repeat for several.
    #[arg(long = "reason", value_name = "REASON", value_parser = REASONS)]
    pub reasons: Vec<String>,
    /// Only dead letters written at or after this time: RFC 3339 (`2026-12-01T18:00:00Z`, an offset such as
    /// `+01:00`) or a duration before now (`2h`, `30min`, `1day`). Kafka: the record's timestamp; JetStream:
    /// when the stream stored it.
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    pub since: Option<SystemTime>,
    /// Only dead letters written at or before this time (same forms as --since).
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    pub until: Option<SystemTime>,
    /// Stop after this many selected events (those that pass --reason, --since and --until).
    #[arg(long, value_name = "N")]
    pub limit: Option<u64>,
    /// At most this many events sent per second (a decimal number, e.g. 0.5 or 200).
    #[arg(long, value_name = "EVENTS_PER_SECOND", default_value_t = 100.0, value_parser = parse_rate)]
    pub rate: f64,
    /// At most this many events in flight at once (each waits for its destination's answer, retries included).
    #[arg(long, value_name = "N", default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub concurrency: u16,
    /// Read and report what would be sent to which subscription, and send nothing.
    #[arg(long)]
    pub dry_run: bool,
}

fn parse_time(s: &str) -> Result<SystemTime, String> {
    if let Ok(d) = humantime::parse_duration(s) {
        return SystemTime::now()
            .checked_sub(d)
            .ok_or_else(|| format!("`{s}` before now is before the epoch"));
    }
    if let Ok(t) = async_nats::datetime::parse_rfc3339(s) {
        return Ok(t.into());
    }
    humantime::parse_rfc3339_weak(s).map_err(|_| {
        format!(
            "`{s}` is neither an RFC 3339 time (2026-12-01T18:00:00Z) nor a duration (2h, 30min)"
        )
    })
}

fn parse_rate(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(r) if r.is_finite() && r > 0.0 => Ok(r),
        _ => Err(format!(
            "`{s}` is not a positive number of events per second"
        )),
    }
}

/// Why the replay could not run; each maps to an exit code.
#[derive(Debug, thiserror::Error)]
enum ReplayError {
    #[error("{0}")]
    Usage(String),
    #[error("cannot read the dead letter: {0}")]
    Source(#[from] SourceError),
    #[error("cannot start the relay: {0}")]
    Start(String),
}

impl ReplayError {
    fn code(&self) -> u8 {
        match self {
            Self::Usage(_) => EXIT_USAGE,
            Self::Source(_) => EXIT_SOURCE,
            Self::Start(_) => EXIT_START,
        }
    }
}

/// `--from`, resolved against the config's sinks.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Origin {
    Kafka { cluster: String, topic: String },
    Nats { connection: String, subject: String },
}

impl Origin {
    fn parse(s: &str, config: &crate::Config) -> Result<Self, String> {
        let (sink, dest) = s.split_once(':').filter(|(_, d)| !d.is_empty()).ok_or_else(|| {
            format!("--from `{s}`: expected `kafka.<cluster>:<topic>` or `nats.<connection>:<subject>`")
        })?;
        let (kind, name) = sink.split_once('.').unwrap_or((sink, ""));
        let pick = |names: Vec<&String>, what: &str| -> Result<String, String> {
            if name.is_empty() {
                match names.as_slice() {
                    [one] => Ok((*one).clone()),
                    [] => Err(format!("--from `{s}`: the config has no {what}")),
                    _ => Err(format!(
                        "--from `{s}`: the config has several {what}s; name one: {}",
                        names
                            .iter()
                            .map(|n| format!("{kind}.{n}"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    )),
                }
            } else if names.iter().any(|n| *n == name) {
                Ok(name.to_string())
            } else {
                Err(format!(
                    "--from `{s}`: no {what} `{name}` in the config (it has: {})",
                    if names.is_empty() {
                        "none".to_string()
                    } else {
                        names
                            .iter()
                            .map(|n| format!("{kind}.{n}"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    }
                ))
            }
        };
        match kind {
            "kafka" => Ok(Self::Kafka {
                cluster: pick(config.sinks.kafka.keys().collect(), "[sinks.kafka] cluster")?,
                topic: dest.to_string(),
            }),
            "nats" => Ok(Self::Nats {
                connection: pick(config.sinks.nats.keys().collect(), "[sinks.nats] connection")?,
                subject: dest.to_string(),
            }),
            _ => Err(format!(
                "--from `{s}`: the sink is `kafka.<cluster>` or `nats.<connection>` (dead letters live on Kafka or NATS)"
            )),
        }
    }

    async fn open(
        &self,
        config: &crate::Config,
        since: Option<SystemTime>,
    ) -> Result<Source, SourceError> {
        match self {
            Self::Kafka { cluster, topic } => {
                let sink = format!("kafka.{cluster}");
                let c = &config.sinks.kafka[cluster];
                Ok(Source::Kafka(Box::new(
                    source::KafkaSource::open(&sink, c, topic, since).await?,
                )))
            }
            Self::Nats {
                connection,
                subject,
            } => {
                let sink = format!("nats.{connection}");
                let c = &config.sinks.nats[connection];
                Ok(Source::Nats(Box::new(
                    source::NatsSource::open(&sink, c, subject, since).await?,
                )))
            }
        }
    }
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Kafka { cluster, topic } => write!(f, "kafka.{cluster}:{topic}"),
            Self::Nats {
                connection,
                subject,
            } => write!(f, "nats.{connection}:{subject}"),
        }
    }
}

/// Run the command; the exit code.
pub async fn run(config: crate::Config, args: ReplayArgs) -> u8 {
    // The relay inside logs only errors (each event's outcome is in the report); RUST_LOG still wins.
    let mut log = config.log.clone();
    log.level = "error,rdkafka=off,librdkafka=off".into();
    crate::telemetry::init_logging(&log);
    match replay(config, args).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("replay: {e}");
            e.code()
        }
    }
}

/// What one dead letter says, ready to send (or why it cannot be).
struct Selected {
    position: String,
    tracking_id: String,
    subscription_id: Option<String>,
    /// The dead letter's `subscription-name` (what an orphan is listed as).
    subscription_name: Option<String>,
    redelivery: Result<Redelivery, String>,
}

async fn replay(config: crate::Config, args: ReplayArgs) -> Result<u8, ReplayError> {
    let from = Origin::parse(&args.from, &config).map_err(ReplayError::Usage)?;
    if let (Some(s), Some(u)) = (args.since, args.until) {
        if s > u {
            return Err(ReplayError::Usage("--since is after --until".into()));
        }
    }
    // The source first: a dead letter that cannot be read stops the command before anything starts.
    let mut source = from.open(&config, args.since).await?;
    let (relay, note) = start(config).await?;
    if let Some(n) = &note {
        eprintln!("replay: {n}");
    }
    if !relay.subscriptions_loaded(Duration::from_secs(30)).await {
        eprintln!(
            "replay: the API's store was not read within 30 s: only config-file subscriptions are known"
        );
    }
    let result = deliver_all(&relay, &mut source, &from, &args).await;
    relay.shutdown();
    let _ = tokio::time::timeout(Duration::from_secs(10), relay.wait()).await;
    let stats = result?;
    report::summary(&stats, &from.to_string(), args.dry_run, note.as_deref());
    Ok(if stats.complete() {
        EXIT_OK
    } else {
        EXIT_INCOMPLETE
    })
}

/// The relay library on loopback, the API's store kept (API-created subscriptions are found) when it can be
/// opened: a `file` store held by the running relay cannot, and the replay then knows the config file's
/// subscriptions only (said in the note).
async fn start(mut config: crate::Config) -> Result<(Relay, Option<String>), ReplayError> {
    let loopback: std::net::SocketAddr = ([127, 0, 0, 1], 0).into();
    config.ingress.listen = loopback;
    config.admin.listen = loopback;
    config.ingress.tls = None;
    config.admin.tls = None;
    let file_store = matches!(
        config.api.store_config(),
        Some(crate::config::ApiStoreConfig::File { .. })
    );
    match Relay::start(config.clone()).await {
        Ok(r) => Ok((r, None)),
        Err(e) if config.api.enabled && file_store => {
            config.api.enabled = false;
            let r = Relay::start(config)
                .await
                .map_err(|e| ReplayError::Start(e.to_string()))?;
            Ok((
                r,
                Some(format!(
                    "the API's file store cannot be opened ({e}): API-created subscriptions are not known, \
                     their events are reported as orphaned (stop the relay, or use a nats or kafka store, to \
                     replay them)"
                )),
            ))
        }
        Err(e) => Err(ReplayError::Start(e.to_string())),
    }
}

/// The record as a redelivery to `target` (the `--subscription`, else its own `subscription-id`).
fn select(rec: DeadLetterRecord, target: Option<&str>) -> Selected {
    let tracking_id = rec.header("tracking-id").unwrap_or("-").to_string();
    let subscription_id = target
        .map(str::to_string)
        .or_else(|| rec.header("subscription-id").map(str::to_string));
    let subscription_name = target
        .is_none()
        .then(|| rec.header("subscription-name").map(str::to_string))
        .flatten();
    let redelivery = (|| {
        let subscription_id = subscription_id
            .clone()
            .ok_or("no subscription-id header: not a trigger-relay dead letter")?;
        let structured = rec
            .header("content-type")
            .is_some_and(|c| c.starts_with("application/cloudevents+json"));
        let body = if structured {
            unwrap_structured(&rec.body)
                .ok_or("a CloudEvents structured envelope without a JSON `data`")?
        } else {
            rec.body.clone()
        };
        let trigger_id = match rec.header("trigger-id") {
            Some(t) => t.to_string(),
            None => serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| {
                    v.pointer("/_metadata/triggerId")?
                        .as_str()
                        .map(str::to_string)
                })
                .ok_or("no trigger-id header and no _metadata.triggerId in the payload")?,
        };
        let traceparent = rec.header("traceparent").map(str::as_bytes);
        let tracestate = rec
            .headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case("tracestate"))
            .map(|(_, v)| v.as_bytes());
        Ok::<_, &str>(Redelivery {
            subscription_id,
            trigger_id,
            invocation_id: rec.header("invocation-id").map(Into::into),
            body,
            replay_of: tracking_id.as_str().into(),
            trace: crate::envelope::TraceContext::from_headers(traceparent, tracestate),
        })
    })()
    .map_err(str::to_string);
    Selected {
        position: rec.position,
        tracking_id,
        subscription_id,
        subscription_name,
        redelivery,
    }
}

/// The payload inside a structured envelope: its `data`, as the bytes the relay spliced in.
fn unwrap_structured(body: &[u8]) -> Option<Bytes> {
    #[derive(serde::Deserialize)]
    struct Envelope<'a> {
        #[serde(borrow)]
        data: &'a serde_json::value::RawValue,
    }
    let e: Envelope<'_> = serde_json::from_slice(body).ok()?;
    let data = e.data.get();
    data.starts_with('{')
        .then(|| Bytes::copy_from_slice(data.as_bytes()))
}

/// One finished redelivery.
struct Done {
    position: String,
    tracking_id: String,
    subscription_id: String,
    subscription_name: Option<String>,
    result: Result<crate::pipeline::Outcome, ReplayRefusal>,
}

/// How long a delivery waits for queue room before it counts as failed.
const CAPACITY_WAIT: Duration = Duration::from_secs(30);

async fn redeliver(relay: &Relay, sel: Selected, r: Redelivery) -> Done {
    let subscription_id = r.subscription_id.clone();
    let deadline = Instant::now() + CAPACITY_WAIT;
    let result = loop {
        match relay.redeliver(r.clone()).await {
            // Other replays hold the queue: room comes back as they finish (there is no signal to wait on
            // outside the queue, so look again shortly).
            Err(ReplayRefusal::AtCapacity(_)) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await
            }
            other => break other,
        }
    };
    Done {
        position: sel.position,
        tracking_id: sel.tracking_id,
        subscription_id,
        subscription_name: sel.subscription_name,
        result,
    }
}

async fn deliver_all(
    relay: &Relay,
    source: &mut Source,
    from: &Origin,
    args: &ReplayArgs,
) -> Result<Stats, ReplayError> {
    let target = match &args.subscription {
        Some(s) => Some(
            relay
                .subscription(s)
                .ok_or_else(|| {
                    ReplayError::Usage(format!(
                        "--subscription `{s}`: no subscription has this id or (unique) name"
                    ))
                })?
                .effective_id(),
        ),
        None => None,
    };
    let mut stats = Stats::default();
    let mut progress = Progress::new(source.total(), args.dry_run);
    let mut inflight = FuturesUnordered::new();
    let interval = Duration::from_secs_f64(1.0 / args.rate);
    let mut next_send = tokio::time::Instant::now();
    let mut names: BTreeMap<String, Option<String>> = BTreeMap::new();
    let mut name_of = |relay: &Relay, id: &str| -> Option<String> {
        names
            .entry(id.to_string())
            .or_insert_with(|| relay.subscription(id).map(|s| s.name))
            .clone()
    };
    let read_error = loop {
        if args.limit.is_some_and(|l| stats.selected >= l) {
            break None;
        }
        let rec = match source.next().await {
            Ok(Some(rec)) => rec,
            Ok(None) => break None,
            Err(e) => break Some(e),
        };
        stats.read += 1;
        if rec.header("replay") == Some("true") {
            stats.skipped_replays += 1;
        } else if !args.reasons.is_empty()
            && !rec
                .header("dead-letter-reason")
                .is_some_and(|r| args.reasons.iter().any(|x| x == r))
        {
            stats.skipped_reason += 1;
        } else if !in_window(rec.written, args.since, args.until) {
            stats.skipped_time += 1;
        } else {
            stats.selected += 1;
            let sel = select(rec, target.as_deref());
            match sel.redelivery.clone() {
                Err(why) => {
                    stats.orphan(
                        sel.subscription_id.as_deref(),
                        sel.subscription_name.clone(),
                    );
                    report::line("orphaned", &sel.position, &sel.tracking_id, &why);
                }
                Ok(r) if args.dry_run => {
                    let name = name_of(relay, &r.subscription_id).or(sel.subscription_name.clone());
                    match would_send(relay, &r) {
                        Ok(()) => stats.sent(&r.subscription_id, name),
                        Err(why) => {
                            stats.orphan(Some(&r.subscription_id), name);
                            report::line(
                                "orphaned",
                                &sel.position,
                                &sel.tracking_id,
                                &why.to_string(),
                            );
                        }
                    }
                }
                Ok(r) => {
                    while inflight.len() >= usize::from(args.concurrency) {
                        if let Some(done) = inflight.next().await {
                            settle(relay, &mut stats, done, &mut name_of);
                        }
                    }
                    // The rate: one send per interval, no burst to catch up after a slow stretch.
                    let now = tokio::time::Instant::now();
                    if next_send > now {
                        tokio::time::sleep_until(next_send).await;
                    }
                    next_send = next_send.max(now) + interval;
                    stats.in_flight += 1;
                    inflight.push(redeliver(relay, sel, r));
                }
            }
        }
        // Finished deliveries are counted as they come, without waiting for them.
        while let Some(Some(done)) = futures_util::FutureExt::now_or_never(inflight.next()) {
            settle(relay, &mut stats, done, &mut name_of);
        }
        progress.tick(&stats);
    };
    while let Some(done) = inflight.next().await {
        settle(relay, &mut stats, done, &mut name_of);
        progress.tick(&stats);
    }
    progress.finish(&stats);
    if let Some(e) = read_error {
        report::summary(&stats, &from.to_string(), args.dry_run, None);
        return Err(e.into());
    }
    Ok(stats)
}

/// Whether a dead letter written at `t` is within `--since` .. `--until` (an unknown time is outside any bound).
fn in_window(t: Option<SystemTime>, since: Option<SystemTime>, until: Option<SystemTime>) -> bool {
    match t {
        None => since.is_none() && until.is_none(),
        Some(t) => since.is_none_or(|s| t >= s) && until.is_none_or(|u| t <= u),
    }
}

/// `--dry-run`: what [`Relay::redeliver`] would refuse before routing, if anything.
fn would_send(relay: &Relay, r: &Redelivery) -> Result<(), ReplayRefusal> {
    relay
        .redelivery_target(&r.subscription_id, &r.trigger_id)
        .map(|_| ())
}

fn settle(
    relay: &Relay,
    stats: &mut Stats,
    done: Done,
    name_of: &mut impl FnMut(&Relay, &str) -> Option<String>,
) {
    stats.in_flight -= 1;
    let name = name_of(relay, &done.subscription_id).or(done.subscription_name);
    let id = &done.subscription_id;
    match done.result {
        Ok(Ok(())) => stats.sent(id, name),
        Ok(Err(e)) => {
            stats.failed(id, name, e.reason());
            report::line("failed", &done.position, &done.tracking_id, &e.to_string());
        }
        Err(refusal @ (ReplayRefusal::AtCapacity(_) | ReplayRefusal::ShuttingDown)) => {
            stats.failed(id, name, "not_sent");
            report::line(
                "failed",
                &done.position,
                &done.tracking_id,
                &refusal.to_string(),
            );
        }
        Err(refusal) => {
            stats.orphan(Some(id), name);
            report::line(
                "orphaned",
                &done.position,
                &done.tracking_id,
                &refusal.to_string(),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_rfc3339_or_durations_before_now() {
        let t = parse_time("2026-12-01T18:00:00Z").unwrap();
        assert_eq!(parse_time("2026-12-01T19:00:00+01:00").unwrap(), t);
        let two_hours = parse_time("2h").unwrap();
        let ago = SystemTime::now().duration_since(two_hours).unwrap();
        assert!(ago >= Duration::from_secs(7200) && ago < Duration::from_secs(7260));
        assert!(parse_time("yesterday-ish").is_err());
    }

    #[test]
    fn the_window_is_inclusive_and_an_unknown_time_is_outside_any_bound() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(100);
        let at = |s| Some(SystemTime::UNIX_EPOCH + Duration::from_secs(s));
        for (since, until, inside) in [
            (None, None, true),
            (at(100), None, true),
            (at(101), None, false),
            (None, at(100), true),
            (None, at(99), false),
            (at(50), at(150), true),
        ] {
            assert_eq!(
                in_window(Some(t), since, until),
                inside,
                "{since:?} {until:?}"
            );
        }
        assert!(in_window(None, None, None));
        assert!(!in_window(None, at(1), None));
    }

    #[test]
    fn a_structured_envelope_gives_back_the_spliced_payload() {
        let body = br#"{"specversion":"1.0","id":"x","data":{"a": [1, 2],"b":"c"}}"#;
        assert_eq!(
            unwrap_structured(body).unwrap(),
            Bytes::from_static(br#"{"a": [1, 2],"b":"c"}"#)
        );
        assert!(unwrap_structured(br#"{"data":"text"}"#).is_none());
        assert!(unwrap_structured(b"not json").is_none());
    }

    #[test]
    fn from_names_a_configured_sink() {
        let c = crate::Config::from_toml(
            "[ingress.auth]\nnone = true\n[sinks.kafka.main]\nbootstrap_servers = \"127.0.0.1:9\"\n[sinks.nats.a]\nservers = [\"nats://127.0.0.1:9\"]\n[sinks.nats.b]\nservers = [\"nats://127.0.0.1:9\"]\n",
        )
        .unwrap();
        assert_eq!(
            Origin::parse("kafka:dlq", &c).unwrap(),
            Origin::Kafka {
                cluster: "main".into(),
                topic: "dlq".into()
            }
        );
        assert_eq!(
            Origin::parse("nats.b:dl.x", &c).unwrap(),
            Origin::Nats {
                connection: "b".into(),
                subject: "dl.x".into()
            }
        );
        for bad in ["nats:dl", "kafka.other:t", "kafka.main:", "sqs.q:x", "dlq"] {
            assert!(Origin::parse(bad, &c).is_err(), "{bad}");
        }
    }
}
