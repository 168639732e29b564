//! Where `trigger-relay replay` reads dead letters from: a Kafka topic or a JetStream subject, read once from a
//! start point to the end it had when the replay started, one record at a time (nothing is committed, acked
//! or deleted: the dead letter stays as it was).
//!
//! Memory is bounded by the clients' prefetch, not by the topic: Kafka's fetch queue is capped
//! (`queued.max.messages.kbytes`), JetStream pulls at most [`NATS_BATCH`] messages at a time.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures_util::StreamExt;
use rdkafka::consumer::{BaseConsumer, Consumer, StreamConsumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};

use crate::sinks::kafka::KafkaClusterConfig;
use crate::sinks::nats::NatsConnectionConfig;

/// How long a broker question (metadata, watermarks, stream info) may take.
const ASK: Duration = Duration::from_secs(15);
/// How long reading may make no progress before the source counts as unreadable.
const STALLED: Duration = Duration::from_secs(30);
/// Messages JetStream sends per pull (each up to the stream's largest message).
const NATS_BATCH: i64 = 64;
/// Kafka's prefetch, in KiB (librdkafka's default is 64 MiB).
const KAFKA_PREFETCH_KIB: &str = "8192";

/// Why a dead letter cannot be read (the exit code 3).
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("Kafka `{sink}`: {message}")]
    Kafka { sink: String, message: String },
    #[error("NATS `{sink}`: {message}")]
    Nats { sink: String, message: String },
}

/// One dead letter as read.
#[derive(Debug, Clone)]
pub struct DeadLetterRecord {
    /// Where it is: `partition 0 offset 12`, `stream DLQ sequence 5` (printed in reports).
    pub position: String,
    /// When the dead letter was written (Kafka: the record's timestamp; JetStream: when the stream stored it).
    pub written: Option<SystemTime>,
    pub body: Bytes,
    /// Header names and values as written (NATS values percent-decoded).
    pub headers: Vec<(String, String)>,
}

impl DeadLetterRecord {
    /// The first value of header `name`.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// An open dead letter.
pub enum Source {
    Kafka(Box<KafkaSource>),
    Nats(Box<NatsSource>),
}

impl Source {
    /// The next record, or `None` at the end the source had when it was opened.
    pub async fn next(&mut self) -> Result<Option<DeadLetterRecord>, SourceError> {
        match self {
            Self::Kafka(k) => k.next().await,
            Self::Nats(n) => n.next().await,
        }
    }

    /// How many records are left to read at most (from the start point to the end), when known at open.
    pub fn total(&self) -> Option<u64> {
        match self {
            Self::Kafka(k) => Some(k.total),
            Self::Nats(n) => Some(n.total),
        }
    }
}

/// A Kafka topic read from the start offsets (the beginning, or the first record at `--since`) up to the high
/// watermarks taken when it was opened: no consumer group offsets are committed.
pub struct KafkaSource {
    sink: String,
    consumer: StreamConsumer,
    /// Partition → its high watermark at open, for the partitions not yet read to it.
    remaining: BTreeMap<i32, i64>,
    total: u64,
}

impl KafkaSource {
    pub async fn open(
        sink: &str,
        cluster: &KafkaClusterConfig,
        topic: &str,
        since: Option<SystemTime>,
    ) -> Result<Self, SourceError> {
        let failed = |message: String| SourceError::Kafka {
            sink: sink.to_string(),
            message,
        };
        let mut c = cluster.base_client_config().map_err(&failed)?;
        // A group id librdkafka needs for a consumer; nothing is ever committed under it.
        c.set(
            "group.id",
            format!("trigger-relay-replay-{}", uuid::Uuid::new_v4().simple()),
        )
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "false")
        .set("queued.max.messages.kbytes", KAFKA_PREFETCH_KIB);
        let probe: BaseConsumer = c
            .create()
            .map_err(|e| failed(format!("cannot create a consumer: {e}")))?;
        let t = topic.to_string();
        let plan = tokio::task::spawn_blocking(move || kafka_plan(&probe, &t, since))
            .await
            .map_err(|e| failed(format!("the broker question failed: {e}")))?
            .map_err(&failed)?;
        let consumer: StreamConsumer = c
            .create()
            .map_err(|e| failed(format!("cannot create a consumer: {e}")))?;
        let mut tpl = TopicPartitionList::new();
        let mut remaining = BTreeMap::new();
        let mut total = 0;
        for (partition, start, high) in plan {
            if start < high {
                tpl.add_partition_offset(topic, partition, Offset::Offset(start))
                    .map_err(|e| failed(e.to_string()))?;
                remaining.insert(partition, high);
                total += (high - start) as u64;
            }
        }
        if !remaining.is_empty() {
            consumer
                .assign(&tpl)
                .map_err(|e| failed(format!("cannot read topic `{topic}`: {e}")))?;
        }
        Ok(Self {
            sink: sink.to_string(),
            consumer,
            remaining,
            total,
        })
    }

    async fn next(&mut self) -> Result<Option<DeadLetterRecord>, SourceError> {
        let mut idle = Duration::ZERO;
        const POLL: Duration = Duration::from_secs(1);
        while !self.remaining.is_empty() {
            match tokio::time::timeout(POLL, self.consumer.recv()).await {
                Ok(Ok(m)) => {
                    let (p, offset) = (m.partition(), m.offset());
                    let Some(&high) = self.remaining.get(&p) else {
                        continue;
                    };
                    if offset >= high {
                        // Written after the replay started (its own failures are not written again).
                        self.remaining.remove(&p);
                        continue;
                    }
                    if offset + 1 >= high {
                        self.remaining.remove(&p);
                    }
                    let headers = m
                        .headers()
                        .map(|h| {
                            h.iter()
                                .map(|h| {
                                    (
                                        h.key.to_string(),
                                        String::from_utf8_lossy(h.value.unwrap_or_default())
                                            .into_owned(),
                                    )
                                })
                                .collect()
                        })
                        .unwrap_or_default();
                    return Ok(Some(DeadLetterRecord {
                        position: format!("partition {p} offset {offset}"),
                        written: m.timestamp().to_millis().and_then(|ms| {
                            u64::try_from(ms)
                                .ok()
                                .map(|ms| SystemTime::UNIX_EPOCH + Duration::from_millis(ms))
                        }),
                        body: Bytes::copy_from_slice(m.payload().unwrap_or_default()),
                        headers,
                    }));
                }
                Ok(Err(e)) => {
                    tracing::warn!(sink = %self.sink, error = %e, "reading the dead letter");
                    idle += POLL / 10;
                    tokio::time::sleep(POLL / 10).await;
                }
                Err(_) => {
                    idle += POLL;
                    // Offsets the topic skips (transaction markers, compaction) leave a partition short of its
                    // high watermark without a record at it: the consumer's position says it got there.
                    if let Ok(pos) = self.consumer.position() {
                        for e in pos.elements() {
                            if let (Offset::Offset(o), Some(&high)) =
                                (e.offset(), self.remaining.get(&e.partition()))
                            {
                                if o >= high {
                                    self.remaining.remove(&e.partition());
                                }
                            }
                        }
                    }
                }
            }
            if idle >= STALLED && !self.remaining.is_empty() {
                return Err(SourceError::Kafka {
                    sink: self.sink.clone(),
                    message: format!(
                        "no record for {} s while {} partition(s) are not read to their end",
                        STALLED.as_secs(),
                        self.remaining.len()
                    ),
                });
            }
        }
        Ok(None)
    }
}

/// `(partition, start offset, high watermark)` of every partition of `topic`.
fn kafka_plan(
    c: &BaseConsumer,
    topic: &str,
    since: Option<SystemTime>,
) -> Result<Vec<(i32, i64, i64)>, String> {
    let md = c
        .fetch_metadata(Some(topic), ASK)
        .map_err(|e| format!("the brokers did not answer: {e}"))?;
    let t = md
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .ok_or_else(|| format!("topic `{topic}` does not exist"))?;
    if t.error().is_some() || t.partitions().is_empty() {
        return Err(format!("topic `{topic}` does not exist"));
    }
    let mut plan = Vec::new();
    for p in t.partitions() {
        let (low, high) = c
            .fetch_watermarks(topic, p.id(), ASK)
            .map_err(|e| format!("topic `{topic}` partition {}: {e}", p.id()))?;
        plan.push((p.id(), low, high));
    }
    if let Some(since) = since {
        let ms = since
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        let mut tpl = TopicPartitionList::new();
        for (p, _, _) in &plan {
            tpl.add_partition_offset(topic, *p, Offset::Offset(ms))
                .map_err(|e| e.to_string())?;
        }
        let found = c
            .offsets_for_times(tpl, ASK)
            .map_err(|e| format!("cannot look up offsets by time in `{topic}`: {e}"))?;
        for (p, start, high) in &mut plan {
            match found.find_partition(topic, *p).map(|e| e.offset()) {
                Some(Offset::Offset(o)) => *start = o.max(*start),
                // No record at or after `since`.
                _ => *start = *high,
            }
        }
    }
    Ok(plan)
}

/// A JetStream subject read with an ephemeral ordered consumer (no acks: nothing is removed) from the first
/// message (or the first stored at `--since`) up to the stream's last sequence when it was opened.
pub struct NatsSource {
    sink: String,
    messages: Option<async_nats::jetstream::consumer::pull::Ordered>,
    /// The stream's last sequence when the replay started.
    last: u64,
    total: u64,
    _client: async_nats::Client,
}

impl NatsSource {
    pub async fn open(
        sink: &str,
        conn: &NatsConnectionConfig,
        subject: &str,
        since: Option<SystemTime>,
    ) -> Result<Self, SourceError> {
        use async_nats::jetstream::consumer::pull::OrderedConfig;
        use async_nats::jetstream::consumer::DeliverPolicy;
        use async_nats::jetstream::context::GetStreamByNameErrorKind;
        use async_nats::jetstream::stream::RetentionPolicy;
        let failed = |message: String| SourceError::Nats {
            sink: sink.to_string(),
            message,
        };
        let opts = conn
            .options()
            .await
            .map_err(|e| failed(format!("cannot read the credentials: {e}")))?;
        let client = async_nats::connect_with_options(conn.servers.clone(), opts)
            .await
            .map_err(|e| failed(format!("cannot connect: {e}")))?;
        let js = async_nats::jetstream::new(client.clone());
        let name = match tokio::time::timeout(ASK, js.stream_by_subject(subject)).await {
            Err(_) => {
                return Err(failed(format!(
                    "no answer within {} s from {:?}",
                    ASK.as_secs(),
                    conn.servers
                )))
            }
            Ok(Err(e)) if e.kind() == GetStreamByNameErrorKind::NotFound => {
                return Err(failed(format!(
                    "no JetStream stream holds subject `{subject}`: core NATS keeps no message, so a dead \
                     letter on core NATS cannot be replayed (write dead letters to JetStream: \
                     `natsConfig = {{ subject = \"…\", jetstream = true }}` and a stream holding the subject)"
                )))
            }
            Ok(Err(e)) => return Err(failed(format!("cannot find the stream of `{subject}`: {e}"))),
            Ok(Ok(name)) => name,
        };
        let ask = |what: &str, e: String| failed(format!("stream `{name}`: {what}: {e}"));
        let mut stream = tokio::time::timeout(ASK, js.get_stream(&name))
            .await
            .map_err(|_| ask("no answer", "timed out".into()))?
            .map_err(|e| ask("cannot open it", e.to_string()))?;
        let info = stream
            .info()
            .await
            .map_err(|e| ask("no stream info", e.to_string()))?;
        if info.config.retention != RetentionPolicy::Limits {
            // On interest and work-queue streams a consumer's delivery can remove the message.
            return Err(failed(format!(
                "stream `{name}` has {:?} retention: reading it could remove dead letters; replay reads \
                 streams with limits retention (the default) only",
                info.config.retention
            )));
        }
        let last = info.state.last_sequence;
        let deliver_policy = match since {
            None => DeliverPolicy::All,
            Some(t) => {
                let text = humantime::format_rfc3339_nanos(t).to_string();
                let start_time = async_nats::datetime::parse_rfc3339(&text)
                    .map_err(|e| failed(format!("--since {text}: {e}")))?;
                DeliverPolicy::ByStartTime { start_time }
            }
        };
        let consumer = stream
            .create_consumer(OrderedConfig {
                filter_subject: subject.to_string(),
                deliver_policy,
                max_batch: NATS_BATCH,
                ..Default::default()
            })
            .await
            .map_err(|e| ask("cannot create a consumer", e.to_string()))?;
        let total = consumer.cached_info().num_pending;
        let messages = if total == 0 {
            None
        } else {
            Some(
                consumer
                    .messages()
                    .await
                    .map_err(|e| ask("cannot read", e.to_string()))?,
            )
        };
        Ok(Self {
            sink: sink.to_string(),
            messages,
            last,
            total,
            _client: client,
        })
    }

    async fn next(&mut self) -> Result<Option<DeadLetterRecord>, SourceError> {
        let Some(messages) = &mut self.messages else {
            return Ok(None);
        };
        let failed = |message: String| SourceError::Nats {
            sink: self.sink.clone(),
            message,
        };
        let m = match tokio::time::timeout(STALLED, messages.next()).await {
            Err(_) => {
                return Err(failed(format!(
                    "no message for {} s before the end of the stream",
                    STALLED.as_secs()
                )))
            }
            Ok(None) => {
                self.messages = None;
                return Ok(None);
            }
            Ok(Some(Err(e))) => return Err(failed(format!("reading: {e}"))),
            Ok(Some(Ok(m))) => m,
        };
        let info = m
            .info()
            .map_err(|e| failed(format!("a message without JetStream info: {e}")))?;
        let (seq, pending) = (info.stream_sequence, info.pending);
        let written: SystemTime = info.published.into();
        if seq > self.last {
            // Stored after the replay started.
            self.messages = None;
            return Ok(None);
        }
        if pending == 0 || seq == self.last {
            self.messages = None;
        }
        let stream = info.stream.to_string();
        let headers = m
            .headers
            .as_ref()
            .map(|h| {
                h.iter()
                    .flat_map(|(k, vs)| {
                        vs.iter().map(move |v| {
                            (
                                k.to_string(),
                                percent_encoding::percent_decode_str(v.as_str())
                                    .decode_utf8_lossy()
                                    .into_owned(),
                            )
                        })
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok(Some(DeadLetterRecord {
            position: format!("stream {stream} sequence {seq}"),
            written: Some(written),
            body: m.payload.clone(),
            headers,
        }))
    }
}
