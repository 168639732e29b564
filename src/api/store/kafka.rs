//! The `kafka` store: a single-partition compacted topic that every replica reads from the beginning.
//!
//! Kafka has no compare-and-swap, so the log decides, the same way on every replica:
//! - A record's key is the trigger id; its value is the trigger's record (`null`, a tombstone, when the trigger
//!   has no API subscriptions left); its header `trigger-relay-base` names the offset of the record it replaces
//!   (`-1`: there was none).
//! - Read in log order, a record is **accepted** when its base is the offset of the last accepted record of its
//!   key (or when no record of that key has been seen: the first one, or the first left after compaction), and
//!   ignored otherwise. Every replica applies the same rule to the same log, so all agree on what won.
//! - A writer produces, learns its record's offset from the delivery report, waits until its own reader has read
//!   that offset, and then knows whether it won (the API answers) or lost (the API reads again and retries).
//! - A loser then restates the winner (the winner's value again, based on it), so the newest record of a key is
//!   an accepted one and compaction keeps what won. (A writer that dies between losing and restating leaves a
//!   loser newest until the next write of that trigger; compaction could then keep the loser: a window we
//!   document rather than close.)
//! - "Read fresh" before a write means: the reader has reached the high watermark fetched just now.
//! - A record's revision (its `ETag`-free version, named in `If-Match`-free writes as `expected`) is its offset
//!   plus one, so revisions start at 1 like the other stores'.
//!
//! The topic is created if missing (`cleanup.policy=compact`, one partition); an existing one with more than one
//! partition, or a policy other than compact, stops the start-up. The reader has no consumer group and commits
//! nothing; its position is in memory and it replays from the beginning at every start.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, ResourceSpecifier};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer, StreamConsumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::sealed::Sealer;
use super::{decode, encode, Record, StoreError, View};
use crate::config::KafkaStoreConfig;
use crate::model::Subscription;

const NAME: &str = "kafka";
const BASE: &str = "trigger-relay-base";
/// Decisions remembered for writers waiting to learn theirs.
const DECISIONS: usize = 4096;

fn unavailable(message: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable {
        store: NAME,
        message: message.to_string(),
    }
}

fn failed(message: impl std::fmt::Display) -> StoreError {
    StoreError::Failed {
        store: NAME,
        message: message.to_string(),
    }
}

/// What the reader has applied.
#[derive(Default)]
struct Applied {
    records: BTreeMap<String, Record>,
    /// Offset → accepted, for the latest offsets read.
    decisions: VecDeque<(i64, bool)>,
}

pub struct KafkaStore {
    producer: FutureProducer,
    /// For the high watermark (a blocking call, made on the blocking pool).
    probe: Arc<BaseConsumer>,
    topic: String,
    timeout: Duration,
    sealer: Arc<Sealer>,
    applied: Arc<Mutex<Applied>>,
    /// The next offset the reader will read.
    position: watch::Receiver<i64>,
    connected: Arc<AtomicBool>,
}

impl KafkaStore {
    pub async fn open(
        config: &KafkaStoreConfig,
        cluster: &crate::sinks::kafka::KafkaClusterConfig,
        sealer: Sealer,
        view: Arc<watch::Sender<Arc<View>>>,
        statuses: Arc<crate::status::StatusLog>,
        stop: CancellationToken,
    ) -> Result<Self, StoreError> {
        let timeout = Duration::from_millis(config.request_timeout_ms);
        let base = cluster.base_client_config().map_err(failed)?;
        ensure_topic(
            &base,
            &config.topic,
            config.replication_factor,
            "compact",
            None,
            timeout,
        )
        .await?;
        let mut p = base.clone();
        p.set("acks", "all")
            .set("enable.idempotence", "false")
            .set("linger.ms", "0")
            .set("message.timeout.ms", config.request_timeout_ms.to_string());
        let producer: FutureProducer = p.create().map_err(failed)?;
        let mut c = base.clone();
        c.set(
            "group.id",
            format!("trigger-relay-store-{}", uuid::Uuid::new_v4()),
        )
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        // A write waits for this replica's reader to read it back: do not let a fetch sit at the broker for
        // librdkafka's default 500 ms (the topic is small; the polls are cheap).
        .set("fetch.wait.max.ms", "10");
        let probe: Arc<BaseConsumer> = Arc::new(c.create().map_err(failed)?);
        let reader: StreamConsumer = c.create().map_err(failed)?;
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&config.topic, 0, Offset::Beginning)
            .map_err(failed)?;
        reader.assign(&tpl).map_err(failed)?;
        let (position_tx, position) = watch::channel(0i64);
        let store = Self {
            producer: producer.clone(),
            probe: probe.clone(),
            topic: config.topic.clone(),
            timeout,
            sealer: Arc::new(sealer),
            applied: Arc::new(Mutex::new(Applied::default())),
            position,
            connected: Arc::new(AtomicBool::new(false)),
        };
        let r = Reader {
            consumer: reader,
            probe: probe.clone(),
            topic: config.topic.clone(),
            sealer: store.sealer.clone(),
            applied: store.applied.clone(),
            position: position_tx,
            view,
        };
        tokio::spawn(r.run(stop.clone()));
        tokio::spawn(health(
            probe,
            config.topic.clone(),
            store.connected.clone(),
            stop.clone(),
        ));
        ensure_topic(
            &base,
            &config.status_topic,
            config.replication_factor,
            "delete",
            Some(config.status_max_bytes),
            timeout,
        )
        .await?;
        super::statuses::share_kafka(producer, c, config.status_topic.clone(), statuses, stop);
        Ok(store)
    }

    pub fn connected(&self) -> bool {
        self.connected.load(Ordering::Acquire)
    }

    /// Wait until the reader has read everything before `offset`.
    async fn reach(&self, offset: i64) -> Result<(), StoreError> {
        let mut position = self.position.clone();
        tokio::time::timeout(self.timeout, position.wait_for(|p| *p >= offset))
            .await
            .map_err(|_| unavailable("the store's reader did not catch up in time"))?
            .map_err(|_| unavailable("the store's reader stopped"))?;
        Ok(())
    }

    pub async fn read(&self, trigger: &str) -> Result<Option<Record>, StoreError> {
        if !self.connected() {
            return Err(unavailable("the broker does not answer"));
        }
        let high = high_watermark(self.probe.clone(), self.topic.clone(), self.timeout).await?;
        self.reach(high).await?;
        let applied = self.applied.lock().unwrap_or_else(|p| p.into_inner());
        Ok(applied.records.get(trigger).cloned())
    }

    pub async fn write(
        &self,
        trigger: &str,
        expected: Option<u64>,
        subs: &[Subscription],
    ) -> Result<u64, StoreError> {
        if !self.connected() {
            return Err(unavailable("the broker does not answer"));
        }
        let offset = self.produce(trigger, expected, subs).await?;
        self.reach(offset + 1).await?;
        let revision = offset as u64 + 1;
        let won = {
            let applied = self.applied.lock().unwrap_or_else(|p| p.into_inner());
            applied
                .decisions
                .iter()
                .rev()
                .find(|(o, _)| *o == offset)
                .map(|(_, accepted)| *accepted)
        };
        match won {
            Some(true) => Ok(revision),
            Some(false) => {
                // Restate the winner, so the newest record of the key is one that won (see the module doc).
                let current = {
                    let applied = self.applied.lock().unwrap_or_else(|p| p.into_inner());
                    applied.records.get(trigger).cloned()
                };
                if let Some(c) = current {
                    let _ = self
                        .produce(trigger, Some(c.revision), &c.subscriptions)
                        .await;
                }
                Err(StoreError::Conflict(trigger.to_string()))
            }
            None => Err(unavailable("the outcome of the write is not known")),
        }
    }

    async fn produce(
        &self,
        trigger: &str,
        expected: Option<u64>,
        subs: &[Subscription],
    ) -> Result<i64, StoreError> {
        // The offset of the record replaced: its revision minus one.
        let base = expected.map_or(-1, |r| r as i64 - 1).to_string();
        let headers = OwnedHeaders::new().insert(Header {
            key: BASE,
            value: Some(base.as_bytes()),
        });
        let value = if subs.is_empty() {
            None
        } else {
            Some(encode(trigger, subs, &self.sealer).map_err(failed)?)
        };
        let mut record = FutureRecord::<str, [u8]>::to(&self.topic)
            .key(trigger)
            .partition(0)
            .headers(headers);
        if let Some(v) = &value {
            record = record.payload(v.as_ref());
        }
        match self.producer.send(record, self.timeout).await {
            Ok(delivery) => Ok(delivery.offset),
            Err((e, _)) => Err(unavailable(e)),
        }
    }
}

/// The partition's low and high watermarks, fetched on the blocking pool.
async fn watermarks(
    probe: Arc<BaseConsumer>,
    topic: String,
    timeout: Duration,
) -> Result<(i64, i64), StoreError> {
    tokio::task::spawn_blocking(move || probe.fetch_watermarks(&topic, 0, timeout))
        .await
        .map_err(unavailable)?
        .map_err(unavailable)
}

async fn high_watermark(
    probe: Arc<BaseConsumer>,
    topic: String,
    timeout: Duration,
) -> Result<i64, StoreError> {
    watermarks(probe, topic, timeout)
        .await
        .map(|(_, high)| high)
}

/// Whether the broker answers, checked every second (a write then fails at once while it does not).
async fn health(
    probe: Arc<BaseConsumer>,
    topic: String,
    connected: Arc<AtomicBool>,
    stop: CancellationToken,
) {
    loop {
        let ok = high_watermark(probe.clone(), topic.clone(), Duration::from_secs(1))
            .await
            .is_ok();
        connected.store(ok, Ordering::Release);
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

/// Create `topic` with one partition and `policy` if it is missing; refuse one with more partitions or, when the
/// broker tells, another policy. An unreachable broker is not an error here (the reader waits for it).
pub async fn ensure_topic(
    base: &ClientConfig,
    topic: &str,
    replication: i32,
    policy: &str,
    retention_bytes: Option<i64>,
    timeout: Duration,
) -> Result<(), StoreError> {
    let bytes = retention_bytes.map(|b| b.to_string());
    let mut configs = vec![("cleanup.policy", policy)];
    if let Some(b) = &bytes {
        configs.extend([
            ("retention.bytes", b.as_str()),
            ("retention.ms", "172800000"),
        ]);
    }
    use crate::sinks::kafka::CreateTopicError;
    match crate::sinks::kafka::create_topic(base, topic, 1, replication, &configs, timeout).await {
        Ok(true) => tracing::info!(topic, policy, "created the API store's topic"),
        Ok(false) => {}
        Err(CreateTopicError::Client(e)) => return Err(failed(e)),
        Err(CreateTopicError::Refused(e)) => {
            tracing::warn!(topic, error = %e, "cannot create the API store's topic; the reader waits for it")
        }
        Err(CreateTopicError::Unreachable(e)) => {
            tracing::warn!(topic, error = %e, "the broker does not answer; the API store's reader waits for it");
            return Ok(());
        }
    }
    let metadata = {
        let admin_client = base.create::<BaseConsumer>().map_err(failed)?;
        let topic = topic.to_string();
        tokio::task::spawn_blocking(move || admin_client.fetch_metadata(Some(&topic), timeout))
            .await
            .map_err(failed)?
    };
    if let Ok(m) = metadata {
        if let Some(t) = m.topics().iter().find(|t| t.name() == topic) {
            if t.partitions().len() > 1 {
                return Err(failed(format!(
                    "topic `{topic}` has {} partitions: the store needs exactly one (its order decides every write); name another topic in api.store.topic",
                    t.partitions().len()
                )));
            }
        }
    }
    let admin: AdminClient<DefaultClientContext> = base.create().map_err(failed)?;
    let opts = AdminOptions::new()
        .operation_timeout(Some(timeout))
        .request_timeout(Some(timeout));
    if let Ok(described) = admin
        .describe_configs([&ResourceSpecifier::Topic(topic)], &opts)
        .await
    {
        for r in described.into_iter().flatten() {
            if let Some(p) = r.get("cleanup.policy").and_then(|e| e.value.clone()) {
                if !p.split(',').any(|v| v.trim() == policy) {
                    return Err(failed(format!(
                        "topic `{topic}` has cleanup.policy={p}: the store needs {policy}; name another topic or change it"
                    )));
                }
            }
        }
    }
    Ok(())
}

struct Reader {
    consumer: StreamConsumer,
    probe: Arc<BaseConsumer>,
    topic: String,
    sealer: Arc<Sealer>,
    applied: Arc<Mutex<Applied>>,
    position: watch::Sender<i64>,
    view: Arc<watch::Sender<Arc<View>>>,
}

impl Reader {
    async fn run(self, stop: CancellationToken) {
        // Caught up once a high watermark fetched since start is reached; until then, look again twice a second
        // (an empty topic sends nothing, and the broker may have been away at start).
        let mut end: Option<i64> = None;
        let mut caught_up = false;
        loop {
            if !caught_up && end.is_none() {
                if let Ok((low, high)) = watermarks(
                    self.probe.clone(),
                    self.topic.clone(),
                    Duration::from_millis(500),
                )
                .await
                {
                    end = Some(high);
                    // Nothing below `low` exists (compacted or expired): the reader starts there.
                    if *self.position.borrow() < low {
                        self.position.send_replace(low);
                    }
                }
            }
            if !caught_up && end.is_some_and(|e| *self.position.borrow() >= e) {
                caught_up = true;
                self.publish();
            }
            let message = tokio::select! {
                _ = stop.cancelled() => return,
                m = self.consumer.recv() => m,
                _ = tokio::time::sleep(Duration::from_millis(500)), if !caught_up => continue,
            };
            let m = match message {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!(store = NAME, error = %e, "reading the API store's topic failed; retrying");
                    continue;
                }
            };
            let offset = m.offset();
            let key = m.key().map(|k| String::from_utf8_lossy(k).into_owned());
            let base = m
                .headers()
                .and_then(|h| h.iter().find(|h| h.key == BASE).and_then(|h| h.value))
                .and_then(|v| std::str::from_utf8(v).ok())
                .and_then(|v| v.parse::<i64>().ok())
                .unwrap_or(-1);
            if let Some(trigger) = key {
                let payload = m.payload().map(|p| p.to_vec());
                self.apply(offset, &trigger, base, payload.as_deref());
            }
            self.position.send_replace(offset + 1);
            if !caught_up && end.is_some_and(|e| offset + 1 >= e) {
                caught_up = true;
            }
            if caught_up {
                self.publish();
            }
        }
    }

    fn apply(&self, offset: i64, trigger: &str, base: i64, payload: Option<&[u8]>) {
        let mut applied = self.applied.lock().unwrap_or_else(|p| p.into_inner());
        // The offset of the last accepted record of this trigger (revision − 1).
        let current = applied.records.get(trigger).map(|r| r.revision as i64 - 1);
        let accept = current.is_none_or(|c| c == base);
        if accept {
            let subscriptions = match payload {
                None => Ok(Vec::new()),
                Some(p) => decode(p, &self.sealer).map(|(_, s)| s),
            };
            match subscriptions {
                Ok(subscriptions) => {
                    applied.records.insert(
                        trigger.to_string(),
                        Record {
                            revision: offset as u64 + 1,
                            subscriptions,
                        },
                    );
                }
                Err(e) => {
                    tracing::error!(store = NAME, offset, trigger, error = %e, "a subscription record is not readable; it is skipped");
                }
            }
        }
        if applied.decisions.len() >= DECISIONS {
            applied.decisions.pop_front();
        }
        applied.decisions.push_back((offset, accept));
    }

    /// The view as of the reader's position (the revision of the last record read).
    fn publish(&self) {
        let applied = self.applied.lock().unwrap_or_else(|p| p.into_inner());
        self.view.send_replace(Arc::new(View {
            records: applied.records.clone(),
            revision: (*self.position.borrow()).max(0) as u64,
            caught_up: true,
        }));
    }
}
