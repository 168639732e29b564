//! Where the API's subscriptions live, so that every replica of a deployment serves the same ones.
//!
//! The store holds **one record per trigger**: that trigger's API-created subscriptions, with a revision. One
//! compare-and-swap on one record therefore covers everything a write must check atomically: ISC's 50
//! subscriptions per trigger and the name being free on that trigger. Writers read the record fresh from the
//! engine, change it, and write it back naming the revision they read; a concurrent writer makes that fail
//! ([`StoreError::Conflict`]) and the API tries again from a fresh read.
//!
//! Every replica also keeps the whole store in memory (a [`View`]), replayed at start and then followed: the
//! routing table is rebuilt from it on every change (`api::follow`), and the data plane never reads the store.
//!
//! Backends, chosen in `[api.store]`:
//! - `file` ([`file`]): one JSON file for a single process, held with an exclusive lock so a second process
//!   refuses to start instead of overwriting the first one's writes;
//! - `nats` ([`nats`]): a JetStream Key-Value bucket shared by every replica (revision = the bucket's sequence),
//!   and a second one for the invocation statuses every replica lists ([`statuses`]);
//! - `kafka` ([`kafka`]): a single-partition compacted topic; the log order decides every write (see there).
//!
//! Webhook credentials are sealed ([`sealed`]) with the configured key before they reach a backend.

pub mod file;
pub mod kafka;
pub mod nats;
pub mod sealed;
pub mod statuses;

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use serde_json::Value;
use tokio::sync::watch;

use crate::model::{Secret, Subscription};
use sealed::Sealer;

/// One trigger's API-created subscriptions, as of `revision`.
#[derive(Debug, Clone)]
pub struct Record {
    pub revision: u64,
    pub subscriptions: Vec<Subscription>,
}

/// What this replica has applied of the store.
#[derive(Debug, Default)]
pub struct View {
    /// By trigger id.
    pub records: BTreeMap<String, Record>,
    /// The highest store revision applied.
    pub revision: u64,
    /// The store was replayed to its end once since start: until then the API's answers and the routing table
    /// could miss subscriptions (`/readyz` answers 503).
    pub caught_up: bool,
}

impl View {
    pub fn subscriptions(&self) -> impl Iterator<Item = &Subscription> {
        self.records.values().flat_map(|r| r.subscriptions.iter())
    }
}

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Another write changed the record since it was read.
    #[error("another write changed the subscriptions of `{0}` first")]
    Conflict(String),
    /// The engine cannot be reached (or did not answer in time); reads still answer from the last view.
    #[error("the subscription store ({store}) is unreachable: {message}")]
    Unavailable {
        store: &'static str,
        message: String,
    },
    /// Anything else: an unreadable record, a file that cannot be written, a second process on a file store.
    #[error("the subscription store ({store}): {message}")]
    Failed {
        store: &'static str,
        message: String,
    },
}

impl StoreError {
    /// Worth trying again later (a conflict at once, from a fresh read; an outage after `Retry-After`).
    pub fn is_retriable(&self) -> bool {
        matches!(self, Self::Conflict(_) | Self::Unavailable { .. })
    }
}

/// Where a subscription's secrets are, by JSON pointer: the one place that knows. The model's `Serialize` writes
/// each as `null` (the API never shows them); the store puts them back, sealed. `every_secret_field_is_stored`
/// fails when a new `Secret` field is not listed here.
const SECRET_POINTERS: [&str; 2] = [
    "/httpConfig/basicAuthConfig/password",
    "/httpConfig/bearerTokenAuthConfig/bearerToken",
];

/// The values at [`SECRET_POINTERS`], in that order.
fn secret_values(s: &Subscription) -> [Option<&Secret>; 2] {
    let http = s.http_config.as_ref();
    [
        http.and_then(|h| h.basic_auth_config.as_ref())
            .and_then(|b| b.password.as_ref()),
        http.and_then(|h| h.bearer_token_auth_config.as_ref())
            .and_then(|b| b.bearer_token.as_ref()),
    ]
}

/// A digest of all a subscription holds, secrets included: its `ETag`, the same on every replica.
pub fn etag(s: &Subscription) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(serde_json::to_vec(s).unwrap_or_default());
    for v in secret_values(s) {
        match v {
            Some(v) => {
                h.update([1]);
                h.update(v.expose().as_bytes());
                h.update([0]);
            }
            None => h.update([0]),
        }
    }
    let d = h.finalize();
    let hex: String = d[..12].iter().map(|b| format!("{b:02x}")).collect();
    format!("\"{hex}\"")
}

/// A subscription as stored: the model's JSON with each secret sealed (or in clear without a key).
pub fn stored_form(s: &Subscription, sealer: &Sealer) -> Result<Value, String> {
    let mut v = serde_json::to_value(s).map_err(|e| e.to_string())?;
    for (pointer, secret) in SECRET_POINTERS.into_iter().zip(secret_values(s)) {
        if let (Some(secret), Some(slot)) = (secret, v.pointer_mut(pointer)) {
            *slot = sealer.seal(secret.expose())?.into();
        }
    }
    Ok(v)
}

/// The inverse of [`stored_form`].
pub fn from_stored(mut v: Value, sealer: &Sealer) -> Result<Subscription, String> {
    for pointer in SECRET_POINTERS {
        if let Some(slot) = v.pointer_mut(pointer) {
            if let Some(text) = slot.as_str() {
                *slot = sealer.open(text)?.into();
            }
        }
    }
    serde_json::from_value(v).map_err(|e| e.to_string())
}

/// A record's bytes in a shared engine: `{"triggerId": …, "subscriptions": […]}`.
pub fn encode(trigger: &str, subs: &[Subscription], sealer: &Sealer) -> Result<Bytes, String> {
    let subscriptions = subs
        .iter()
        .map(|s| stored_form(s, sealer))
        .collect::<Result<Vec<_>, _>>()?;
    let doc = serde_json::json!({ "triggerId": trigger, "subscriptions": subscriptions });
    Ok(Bytes::from(doc.to_string()))
}

/// The inverse of [`encode`].
pub fn decode(bytes: &[u8], sealer: &Sealer) -> Result<(String, Vec<Subscription>), String> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase", deny_unknown_fields)]
    struct Doc {
        trigger_id: String,
        subscriptions: Vec<Value>,
    }
    let d: Doc = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    let subs = d
        .subscriptions
        .into_iter()
        .map(|v| from_stored(v, sealer))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((d.trigger_id, subs))
}

/// The store, whichever backend holds it.
pub struct Store {
    backend: Backend,
    view: Arc<watch::Sender<Arc<View>>>,
}

enum Backend {
    File(Box<file::FileStore>),
    Nats(nats::NatsStore),
    Kafka(Box<kafka::KafkaStore>),
}

impl Store {
    /// Open the configured store. A `file` store is read now; a `nats` store connects and replays in the
    /// background (the view says when it has caught up), so an engine that is down does not stop the relay.
    pub async fn open(
        config: &crate::config::Config,
        statuses: Arc<crate::status::StatusLog>,
        stop: tokio_util::sync::CancellationToken,
    ) -> Result<Self, StoreError> {
        let sealer = Sealer::new(&config.api);
        let view = Arc::new(watch::Sender::new(Arc::new(View::default())));
        let backend = match config.api.store_config() {
            Some(crate::config::ApiStoreConfig::File { path }) => Backend::File(Box::new(
                file::FileStore::open(&path, sealer, view.clone())?,
            )),
            Some(crate::config::ApiStoreConfig::Nats(n)) => {
                let connection =
                    config
                        .sinks
                        .nats
                        .get(&n.connection)
                        .ok_or_else(|| StoreError::Failed {
                            store: "nats",
                            message: format!("no NATS connection `{}`", n.connection),
                        })?;
                Backend::Nats(
                    nats::NatsStore::open(&n, connection, sealer, view.clone(), statuses, stop)
                        .await?,
                )
            }
            Some(crate::config::ApiStoreConfig::Kafka(k)) => {
                let cluster =
                    config
                        .sinks
                        .kafka
                        .get(&k.cluster)
                        .ok_or_else(|| StoreError::Failed {
                            store: "kafka",
                            message: format!("no Kafka cluster `{}`", k.cluster),
                        })?;
                Backend::Kafka(Box::new(
                    kafka::KafkaStore::open(&k, cluster, sealer, view.clone(), statuses, stop)
                        .await?,
                ))
            }
            None => {
                return Err(StoreError::Failed {
                    store: "file",
                    message: "no store configured".into(),
                })
            }
        };
        Ok(Self { backend, view })
    }

    /// `file` or `nats`: named in errors and `/readyz`.
    pub fn kind(&self) -> &'static str {
        match self.backend {
            Backend::File(_) => "file",
            Backend::Nats(_) => "nats",
            Backend::Kafka(_) => "kafka",
        }
    }

    /// What this replica has applied.
    pub fn view(&self) -> Arc<View> {
        self.view.borrow().clone()
    }

    /// Told of every change this replica applies.
    pub fn subscribe(&self) -> watch::Receiver<Arc<View>> {
        self.view.subscribe()
    }

    /// Whether the engine answers now (a file store always does).
    pub fn connected(&self) -> bool {
        match &self.backend {
            Backend::File(_) => true,
            Backend::Nats(n) => n.connected(),
            Backend::Kafka(k) => k.connected(),
        }
    }

    /// One trigger's record as the engine holds it now (not the view, which may lag).
    pub async fn read(&self, trigger: &str) -> Result<Option<Record>, StoreError> {
        match &self.backend {
            Backend::File(f) => Ok(f.read(trigger)),
            Backend::Nats(n) => n.read(trigger).await,
            Backend::Kafka(k) => k.read(trigger).await,
        }
    }

    /// Write a trigger's record if it is still at `expected` (`None`: there is none yet). The new revision.
    pub async fn write(
        &self,
        trigger: &str,
        expected: Option<u64>,
        subs: &[Subscription],
    ) -> Result<u64, StoreError> {
        match &self.backend {
            Backend::File(f) => f.write(trigger, expected, subs),
            Backend::Nats(n) => n.write(trigger, expected, subs).await,
            Backend::Kafka(k) => k.write(trigger, expected, subs).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every `Secret` of a subscription is put back by [`stored_form`]: a secret field missing from
    /// [`SECRET_POINTERS`] would be stored as `null` and lost.
    #[test]
    fn every_secret_field_is_stored() {
        let s: Subscription = serde_json::from_value(serde_json::json!({
            "name": "s", "triggerId": "idn:identity-created", "type": "HTTP",
            "httpConfig": {"url": "https://example.com/", "httpAuthenticationType": "BEARER_TOKEN",
                "basicAuthConfig": {"userName": "u", "password": "p"},
                "bearerTokenAuthConfig": {"bearerToken": "t"}},
        }))
        .unwrap();
        let redacted = crate::model::with_redacted_secrets(|| serde_json::to_value(&s).unwrap());
        let mut starred = Vec::new();
        fn walk(v: &Value, at: String, out: &mut Vec<String>) {
            match v {
                Value::String(s) if s == "***" => out.push(at),
                Value::Object(m) => m
                    .iter()
                    .for_each(|(k, v)| walk(v, format!("{at}/{k}"), out)),
                Value::Array(a) => a
                    .iter()
                    .enumerate()
                    .for_each(|(i, v)| walk(v, format!("{at}/{i}"), out)),
                _ => {}
            }
        }
        walk(&redacted, String::new(), &mut starred);
        let mut listed: Vec<String> = SECRET_POINTERS.iter().map(|p| p.to_string()).collect();
        starred.sort();
        listed.sort();
        assert_eq!(starred, listed);
        let sealer = Sealer::for_tests(Some("k".repeat(32).as_str()));
        let stored = stored_form(&s, &sealer).unwrap();
        assert!(!stored.to_string().contains("\"p\""), "sealed: {stored}");
        assert_eq!(from_stored(stored, &sealer).unwrap(), s);
    }
}
