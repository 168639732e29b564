//! Invocation statuses shared by every replica through a second JetStream Key-Value bucket (`status_bucket`), or a
//! second topic with the `kafka` store ([`share_kafka`]), so `GET /trigger-invocations/status` on any replica lists what every replica delivered.
//!
//! - Key: `s.<base64url(invocation id)>.<base64url(subscription id)>`; a started invocation is put, and put
//!   again when it finishes (history 1: only the newest is kept).
//! - The bucket's own limits bound it: every entry expires after 48 h (ISC's longest retention; the 24 h of a
//!   delivered one is applied when listing) and the bucket holds at most `status_max_bytes`, oldest dropped first.
//! - Publishing never slows a delivery: records reach the publisher through a bounded channel (full: the share is
//!   dropped and counted), which gathers them for 50 ms, keeps the newest per key (a delivery that starts and ends
//!   within that time is one put), and puts at most 64 at once.
//! - Each replica follows the bucket (the newest of every key, then changes) into its bounded [`StatusLog`].

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_nats::jetstream::kv;
use base64::Engine;
use bytes::Bytes;
use futures_util::StreamExt;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::status::{InvocationKind, Status, StatusLog};

/// Records waiting for the publisher.
const CHANNEL: usize = 8192;
/// Puts in flight at once.
const IN_FLIGHT: usize = 64;

fn b64(s: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
}

fn millis(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[derive(serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct Shared {
    id: String,
    trigger_id: String,
    subscription_id: String,
    subscription_name: String,
    test: bool,
    created_ms: u64,
    completed_ms: Option<u64>,
    /// The kept payload (at most `status::MAX_KEPT_INPUT` bytes), as text.
    input: Option<String>,
    content_json: serde_json::Value,
    error: Option<String>,
}

impl From<&Status> for Shared {
    fn from(s: &Status) -> Self {
        Self {
            id: s.id.clone(),
            trigger_id: s.trigger_id.to_string(),
            subscription_id: s.subscription_id.to_string(),
            subscription_name: s.subscription_name.to_string(),
            test: s.kind == InvocationKind::Test,
            created_ms: millis(s.created),
            completed_ms: s.completed.map(millis),
            input: s
                .input
                .as_ref()
                .map(|b| String::from_utf8_lossy(b).into_owned()),
            content_json: s.content_json.clone(),
            error: s.error.clone(),
        }
    }
}

impl Shared {
    fn into_status(self) -> Status {
        let at = |ms: u64| UNIX_EPOCH + Duration::from_millis(ms);
        Status {
            id: self.id,
            trigger_id: self.trigger_id.into(),
            subscription_id: self.subscription_id.into(),
            subscription_name: self.subscription_name.into(),
            kind: if self.test {
                InvocationKind::Test
            } else {
                InvocationKind::RealTime
            },
            created: at(self.created_ms),
            completed: self.completed_ms.map(at),
            input: self
                .input
                .map(|t| Bytes::from(t.into_bytes()))
                .and_then(|b| StatusLog::keepable(&b)),
            content_json: self.content_json,
            error: self.error,
        }
    }
}

fn key(s: &Status) -> String {
    format!("s.{}.{}", b64(&s.id), b64(&s.subscription_id))
}

/// Open (or create) the statuses bucket, then publish this replica's statuses and follow everyone's until `stop`.
pub fn share(
    js: async_nats::jetstream::Context,
    bucket: String,
    max_bytes: i64,
    replicas: usize,
    timeout: Duration,
    log: Arc<StatusLog>,
    stop: CancellationToken,
) {
    let (tx, rx) = mpsc::channel(CHANNEL);
    log.share_with(tx);
    let open = Arc::new(tokio::sync::OnceCell::new());
    let opener = {
        let (js, bucket, open) = (js.clone(), bucket.clone(), open.clone());
        move || {
            let (js, bucket, open) = (js.clone(), bucket.clone(), open.clone());
            async move {
                open.get_or_try_init(|| async {
                    let stream = async_nats::jetstream::stream::Config {
                        name: format!("KV_{bucket}"),
                        description: Some(
                            "trigger-relay: invocation statuses of every replica".into(),
                        ),
                        subjects: vec![format!("$KV.{bucket}.>")],
                        max_messages_per_subject: 1,
                        max_age: Duration::from_secs(48 * 3600),
                        max_bytes,
                        max_message_size: 64 * 1024,
                        allow_rollup: true,
                        deny_delete: true,
                        allow_direct: true,
                        num_replicas: replicas,
                        discard: async_nats::jetstream::stream::DiscardPolicy::Old,
                        ..Default::default()
                    };
                    tokio::time::timeout(timeout, js.get_or_create_stream(stream))
                        .await
                        .map_err(|_| "timed out".to_string())?
                        .map_err(|e| e.to_string())?;
                    tokio::time::timeout(timeout, js.get_key_value(&bucket))
                        .await
                        .map_err(|_| "timed out".to_string())?
                        .map_err(|e| e.to_string())
                })
                .await
                .cloned()
            }
        }
    };
    tokio::spawn(publish(rx, opener.clone(), stop.clone()));
    tokio::spawn(follow(opener, log, bucket, stop));
}

/// The next records to publish: what arrives within 50 ms of the first, the newest per key. `None` at `stop`.
async fn next_batch(
    rx: &mut mpsc::Receiver<Status>,
    stop: &CancellationToken,
) -> Option<HashMap<String, Status>> {
    let first = tokio::select! {
        _ = stop.cancelled() => return None,
        s = rx.recv() => s?,
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut batch: HashMap<String, Status> = HashMap::new();
    batch.insert(key(&first), first);
    while batch.len() < CHANNEL {
        match rx.try_recv() {
            Ok(s) => {
                batch.insert(key(&s), s);
            }
            Err(_) => break,
        }
    }
    Some(batch)
}

fn value(s: &Status) -> Vec<u8> {
    serde_json::to_vec(&Shared::from(s)).unwrap_or_default()
}

/// A shared status as this replica's log keeps it (`None`: not readable, skipped).
fn read(bytes: &[u8]) -> Option<Status> {
    serde_json::from_slice::<Shared>(bytes)
        .ok()
        .map(Shared::into_status)
}

async fn publish<F, Fut>(mut rx: mpsc::Receiver<Status>, open: F, stop: CancellationToken)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<kv::Store, String>>,
{
    while let Some(batch) = next_batch(&mut rx, &stop).await {
        let kv = match open().await {
            Ok(kv) => kv,
            Err(e) => {
                tracing::warn!(error = %e, dropped = batch.len(), "invocation statuses not shared: the statuses bucket is not open");
                continue;
            }
        };
        let puts = batch.into_iter().map(|(k, s)| {
            let kv = kv.clone();
            async move { kv.put(k, value(&s).into()).await.is_ok() }
        });
        let failed = futures_util::stream::iter(puts)
            .buffer_unordered(IN_FLIGHT)
            .filter(|ok| std::future::ready(!ok))
            .count()
            .await;
        if failed > 0 {
            tracing::warn!(
                failed,
                "invocation statuses not shared: the statuses bucket refused them"
            );
        }
    }
}

async fn follow<F, Fut>(open: F, log: Arc<StatusLog>, bucket: String, stop: CancellationToken)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<kv::Store, String>>,
{
    let mut backoff = Duration::from_millis(100);
    loop {
        let run = async {
            let kv = open().await?;
            let mut watch = kv
                .watch_with_history(">")
                .await
                .map_err(|e| e.to_string())?;
            while let Some(entry) = watch.next().await {
                let entry = entry.map_err(|e| e.to_string())?;
                if entry.operation != kv::Operation::Put {
                    continue;
                }
                if let Some(s) = read(&entry.value) {
                    log.merge(s);
                }
            }
            Err::<(), String>("the watch ended".into())
        };
        let result = tokio::select! {
            _ = stop.cancelled() => return,
            r = run => r,
        };
        if let Err(e) = result {
            tracing::warn!(bucket = %bucket, error = %e, retry_in = ?backoff, "invocation statuses of other replicas are not followed; trying again");
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

/// The same through Kafka: this replica produces its statuses to `topic` (keyed like the bucket; the topic's
/// retention, 48 h and `status_max_bytes`, bounds it) and reads everyone's from the beginning.
pub fn share_kafka(
    producer: rdkafka::producer::FutureProducer,
    consumer: rdkafka::ClientConfig,
    topic: String,
    log: Arc<StatusLog>,
    stop: CancellationToken,
) {
    use rdkafka::consumer::Consumer;
    use rdkafka::Message;
    let (tx, mut rx) = mpsc::channel(CHANNEL);
    log.share_with(tx);
    let (t, s) = (topic.clone(), stop.clone());
    tokio::spawn(async move {
        while let Some(batch) = next_batch(&mut rx, &s).await {
            let sends = batch.into_iter().map(|(k, status)| {
                let (producer, t) = (producer.clone(), t.clone());
                async move {
                    let v = value(&status);
                    let record = rdkafka::producer::FutureRecord::<str, [u8]>::to(&t)
                        .key(&k)
                        .payload(&v);
                    producer.send(record, Duration::from_secs(5)).await.is_ok()
                }
            });
            let failed = futures_util::stream::iter(sends)
                .buffer_unordered(IN_FLIGHT)
                .filter(|ok| std::future::ready(!ok))
                .count()
                .await;
            if failed > 0 {
                tracing::warn!(
                    failed,
                    "invocation statuses not shared: the statuses topic refused them"
                );
            }
        }
    });
    let reader: Result<rdkafka::consumer::StreamConsumer, _> = consumer.create();
    let reader = match reader {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "invocation statuses of other replicas cannot be read");
            return;
        }
    };
    let mut tpl = rdkafka::TopicPartitionList::new();
    if tpl
        .add_partition_offset(&topic, 0, rdkafka::Offset::Beginning)
        .and_then(|_| reader.assign(&tpl))
        .is_err()
    {
        tracing::error!(topic = %topic, "invocation statuses of other replicas cannot be read");
        return;
    }
    tokio::spawn(async move {
        loop {
            let m = tokio::select! {
                _ = stop.cancelled() => return,
                m = reader.recv() => m,
            };
            match m {
                Ok(m) => {
                    if let Some(s) = m.payload().and_then(read) {
                        log.merge(s);
                    }
                }
                Err(e) => {
                    tracing::debug!(error = %e, "reading invocation statuses failed; retrying")
                }
            }
        }
    });
}
