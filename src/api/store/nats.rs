//! The `nats` store: a JetStream Key-Value bucket that every replica shares.
//!
//! - One key per trigger: `t_` + the trigger id in unpadded base64url (ids contain `:`, which a key cannot).
//! - Writes are compare-and-swap on the key's revision (`create` when there is no record, `update(key, value,
//!   revision)` otherwise); JetStream refuses a stale revision, which is [`StoreError::Conflict`].
//! - A follower task replays the bucket (`watch_with_history`: the newest value of every key, then every
//!   change) into the [`View`], and starts over from a fresh replay when the watch ends or fails, so a replica
//!   that lost the engine catches up when it returns. The view is published only once a replay reaches the end
//!   (`delta == 0`), never half-replayed.
//! - The bucket is created if missing (replicas, storage, history from `[api.store]`); an existing bucket is
//!   used as it is.
//! - Every operation has a deadline (`request_timeout_ms`) and is refused at once while the connection is down,
//!   so a write during an outage answers 503 quickly instead of hanging.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use async_nats::connection::State;
use async_nats::jetstream::kv;
use base64::Engine;
use futures_util::StreamExt;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::sealed::Sealer;
use super::{decode, encode, Record, StoreError, View};
use crate::config::NatsStoreConfig;
use crate::model::Subscription;

const NAME: &str = "nats";

pub struct NatsStore {
    client: async_nats::Client,
    /// Set once the bucket exists (the follower creates it when the engine first answers).
    kv: Arc<ArcSwapOption<kv::Store>>,
    sealer: Arc<Sealer>,
    timeout: Duration,
}

fn unavailable(message: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable {
        store: NAME,
        message: message.to_string(),
    }
}

/// The bucket key of a trigger's record.
pub fn key(trigger: &str) -> String {
    format!(
        "t_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(trigger)
    )
}

impl NatsStore {
    pub async fn open(
        config: &NatsStoreConfig,
        connection: &crate::sinks::nats::NatsConnectionConfig,
        sealer: Sealer,
        view: Arc<watch::Sender<Arc<View>>>,
        statuses: Arc<crate::status::StatusLog>,
        stop: CancellationToken,
    ) -> Result<Self, StoreError> {
        let options = connection.options().await.map_err(|e| StoreError::Failed {
            store: NAME,
            message: format!("credentials of connection `{}`: {e}", config.connection),
        })?;
        let client = options
            .name("trigger-relay api store")
            .connect(connection.servers.clone())
            .await
            .map_err(unavailable)?;
        let store = Self {
            client: client.clone(),
            kv: Arc::new(ArcSwapOption::empty()),
            sealer: Arc::new(sealer),
            timeout: Duration::from_millis(config.request_timeout_ms),
        };
        let js = async_nats::jetstream::new(client);
        super::statuses::share(
            js.clone(),
            config.status_bucket.clone(),
            config.status_max_bytes,
            config.replicas,
            store.timeout,
            statuses,
            stop.clone(),
        );
        let follower = Follower {
            js,
            config: config.clone(),
            kv: store.kv.clone(),
            sealer: store.sealer.clone(),
            view,
        };
        tokio::spawn(follower.run(stop));
        Ok(store)
    }

    pub fn connected(&self) -> bool {
        self.client.connection_state() == State::Connected && self.kv.load().is_some()
    }

    fn bucket(&self) -> Result<Arc<kv::Store>, StoreError> {
        if self.client.connection_state() != State::Connected {
            return Err(unavailable("not connected"));
        }
        self.kv
            .load_full()
            .ok_or_else(|| unavailable("the bucket is not open yet"))
    }

    pub async fn read(&self, trigger: &str) -> Result<Option<Record>, StoreError> {
        let kv = self.bucket()?;
        let entry = tokio::time::timeout(self.timeout, kv.entry(key(trigger)))
            .await
            .map_err(|_| unavailable("timed out"))?
            .map_err(unavailable)?;
        let Some(entry) = entry.filter(|e| e.operation == kv::Operation::Put) else {
            return Ok(None);
        };
        let (_, subscriptions) =
            decode(&entry.value, &self.sealer).map_err(|m| StoreError::Failed {
                store: NAME,
                message: format!("the record of `{trigger}` is not readable: {m}"),
            })?;
        Ok(Some(Record {
            revision: entry.revision,
            subscriptions,
        }))
    }

    pub async fn write(
        &self,
        trigger: &str,
        expected: Option<u64>,
        subs: &[Subscription],
    ) -> Result<u64, StoreError> {
        let kv = self.bucket()?;
        let value = encode(trigger, subs, &self.sealer).map_err(|m| StoreError::Failed {
            store: NAME,
            message: m,
        })?;
        let k = key(trigger);
        let conflict = || StoreError::Conflict(trigger.to_string());
        let done = match expected {
            None => tokio::time::timeout(self.timeout, kv.create(&k, value))
                .await
                .map_err(|_| unavailable("timed out"))?
                .map_err(|e| match e.kind() {
                    kv::CreateErrorKind::AlreadyExists => conflict(),
                    _ => unavailable(e),
                }),
            Some(revision) => tokio::time::timeout(self.timeout, kv.update(&k, value, revision))
                .await
                .map_err(|_| unavailable("timed out"))?
                .map_err(|e| match e.kind() {
                    kv::UpdateErrorKind::WrongLastRevision => conflict(),
                    _ => unavailable(e),
                }),
        };
        done
    }
}

/// Replays and follows the bucket into the view.
struct Follower {
    js: async_nats::jetstream::Context,
    config: NatsStoreConfig,
    kv: Arc<ArcSwapOption<kv::Store>>,
    sealer: Arc<Sealer>,
    view: Arc<watch::Sender<Arc<View>>>,
}

impl Follower {
    async fn run(self, stop: CancellationToken) {
        let mut backoff = Duration::from_millis(100);
        loop {
            let result = tokio::select! {
                _ = stop.cancelled() => return,
                r = self.follow() => r,
            };
            if let Err(e) = result {
                tracing::warn!(store = NAME, bucket = %self.config.bucket, error = %e, retry_in = ?backoff, "the subscription store is not followed; replaying again");
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    }

    async fn bucket(&self) -> Result<kv::Store, String> {
        let timeout = Duration::from_millis(self.config.request_timeout_ms);
        let got = tokio::time::timeout(timeout, self.js.get_key_value(&self.config.bucket)).await;
        match got {
            Ok(Ok(kv)) => return Ok(kv),
            Ok(Err(e))
                if e.kind() == async_nats::jetstream::context::KeyValueErrorKind::GetBucket => {}
            Ok(Err(e)) => return Err(format!("opening bucket `{}`: {e}", self.config.bucket)),
            Err(_) => {
                return Err(format!(
                    "opening bucket `{}`: timed out",
                    self.config.bucket
                ))
            }
        }
        // The bucket's stream, as async-nats's `create_key_value` would make it. That call first reads the
        // account's info, which it cannot parse from nats-server 2.9 (Debian's), so the stream is made here.
        let bucket = &self.config.bucket;
        let stream = async_nats::jetstream::stream::Config {
            name: format!("KV_{bucket}"),
            description: Some(
                "trigger-relay: the Triggers API's subscriptions, one key per trigger".into(),
            ),
            subjects: vec![format!("$KV.{bucket}.>")],
            max_messages_per_subject: self.config.history,
            max_message_size: MAX_RECORD_BYTES,
            storage: self.config.storage.into(),
            allow_rollup: true,
            deny_delete: true,
            deny_purge: false,
            allow_direct: true,
            num_replicas: self.config.replicas,
            discard: async_nats::jetstream::stream::DiscardPolicy::New,
            ..Default::default()
        };
        tokio::time::timeout(timeout, self.js.get_or_create_stream(stream))
            .await
            .map_err(|_| format!("creating bucket `{bucket}`: timed out"))?
            .map_err(|e| format!("creating bucket `{bucket}`: {e}"))?;
        tokio::time::timeout(timeout, self.js.get_key_value(bucket))
            .await
            .map_err(|_| format!("opening bucket `{bucket}`: timed out"))?
            .map_err(|e| format!("opening bucket `{bucket}`: {e}"))
    }

    /// One replay, then changes until the watch ends: `Err` says why it ended.
    async fn follow(&self) -> Result<(), String> {
        let kv = self.bucket().await?;
        self.kv.store(Some(Arc::new(kv.clone())));
        let status = kv
            .status()
            .await
            .map_err(|e| format!("reading the bucket's status: {e}"))?;
        let mut records: BTreeMap<String, Record> = BTreeMap::new();
        let mut revision = 0;
        let mut caught_up = status.info.state.messages == 0;
        if caught_up {
            self.publish(&records, revision);
        }
        let mut watch = kv
            .watch_with_history(">")
            .await
            .map_err(|e| format!("watching the bucket: {e}"))?;
        while let Some(entry) = watch.next().await {
            let entry = entry.map_err(|e| e.to_string())?;
            revision = revision.max(entry.revision);
            match entry.operation {
                kv::Operation::Put => match decode(&entry.value, &self.sealer) {
                    Ok((trigger, subscriptions)) => {
                        records.insert(
                            trigger,
                            Record {
                                revision: entry.revision,
                                subscriptions,
                            },
                        );
                    }
                    Err(m) => {
                        tracing::error!(store = NAME, key = %entry.key, error = %m, "a subscription record is not readable; it is skipped");
                    }
                },
                kv::Operation::Delete | kv::Operation::Purge => {
                    let gone = base64::engine::general_purpose::URL_SAFE_NO_PAD
                        .decode(entry.key.trim_start_matches("t_"))
                        .ok()
                        .and_then(|b| String::from_utf8(b).ok());
                    if let Some(t) = gone {
                        records.remove(&t);
                    }
                }
            }
            if entry.delta == 0 {
                caught_up = true;
            }
            if caught_up {
                self.publish(&records, revision);
            }
        }
        Err("the watch ended".into())
    }

    fn publish(&self, records: &BTreeMap<String, Record>, revision: u64) {
        self.view.send_replace(Arc::new(View {
            records: records.clone(),
            revision,
            caught_up: true,
        }));
    }
}

/// Largest record (one trigger's subscriptions): 50 subscriptions of at most a few KiB each fit many times.
const MAX_RECORD_BYTES: i32 = 1024 * 1024;
