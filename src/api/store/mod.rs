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

use crate::model::{Sealed, Secret, Subscription};
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

/// A digest of all a subscription holds, secrets included: its `ETag`, the same on every replica.
pub fn etag(s: &Subscription) -> String {
    use sha2::{Digest, Sha256};
    let Ok(exposed) =
        s.try_map_secrets(|secret| Ok::<_, std::convert::Infallible>(secret.expose()));
    let d = Sha256::digest(serde_json::to_vec(&exposed).unwrap_or_default());
    let hex: String = d[..12].iter().map(|b| format!("{b:02x}")).collect();
    format!("\"{hex}\"")
}

/// A subscription as stored: the model's JSON with each secret [`Sealed`] (or in clear without a key).
pub fn stored_form(s: &Subscription, sealer: &Sealer) -> Result<Value, String> {
    let sealed = s.try_map_secrets(|secret| sealer.seal(secret.expose()).map(Sealed))?;
    serde_json::to_value(sealed).map_err(|e| e.to_string())
}

/// The inverse of [`stored_form`].
pub fn from_stored(v: Value, sealer: &Sealer) -> Result<Subscription, String> {
    let sealed: Subscription<Sealed> = serde_json::from_value(v).map_err(|e| e.to_string())?;
    sealed.try_map_secrets(|Sealed(text)| sealer.open(text).map(Secret::new))
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

    /// Every secret of a subscription survives the store, sealed: stored, it is neither in clear nor `***` nor
    /// `null`; read back, it is what was written. (A new secret field is an `Option<S>` in the model, which
    /// [`Subscription::try_map_secrets`] must place before it compiles; this holds the conversions to that.)
    #[test]
    fn every_secret_field_is_stored() {
        let s: Subscription = serde_json::from_value(serde_json::json!({
            "name": "s", "triggerId": "idn:identity-created", "type": "HTTP",
            "httpConfig": {"url": "https://example.com/", "httpAuthenticationType": "BEARER_TOKEN",
                "basicAuthConfig": {"userName": "u", "password": "pw-secret"},
                "bearerTokenAuthConfig": {"bearerToken": "token-secret"}},
        }))
        .unwrap();
        let sealer = Sealer::for_tests(Some("k".repeat(32).as_str()));
        let stored = stored_form(&s, &sealer).unwrap();
        let text = stored.to_string();
        for absent in ["pw-secret", "token-secret", "***"] {
            assert!(!text.contains(absent), "{absent} in {text}");
        }
        for pointer in [
            "/httpConfig/basicAuthConfig/password",
            "/httpConfig/bearerTokenAuthConfig/bearerToken",
        ] {
            let slot = stored.pointer(pointer).and_then(Value::as_str);
            assert!(
                slot.is_some_and(|v| v.starts_with("sealed:")),
                "{pointer} in {text}"
            );
        }
        assert_eq!(from_stored(stored, &sealer).unwrap(), s);
        // Without a key the store holds them in clear (the documented choice), still not lost.
        let clear = Sealer::for_tests(None);
        assert_eq!(
            from_stored(stored_form(&s, &clear).unwrap(), &clear).unwrap(),
            s
        );
        // The API's form withholds both; a log or a printed config shows `***`.
        let shown = serde_json::to_value(s.withheld()).unwrap();
        assert_eq!(
            shown["httpConfig"]["basicAuthConfig"]["password"],
            Value::Null
        );
        assert_eq!(
            shown["httpConfig"]["bearerTokenAuthConfig"]["bearerToken"],
            Value::Null
        );
        let logged = serde_json::to_string(&s).unwrap();
        assert!(
            !logged.contains("secret") && logged.matches("***").count() == 2,
            "{logged}"
        );
    }

    /// A change of a secret alone changes the `ETag` (a PUT that only rotates a token is a new version).
    #[test]
    fn the_etag_covers_the_secrets() {
        let with = |token: &str| -> Subscription {
            serde_json::from_value(serde_json::json!({
                "name": "s", "triggerId": "idn:identity-created", "type": "HTTP",
                "httpConfig": {"url": "https://example.com/", "httpAuthenticationType": "BEARER_TOKEN",
                    "bearerTokenAuthConfig": {"bearerToken": token}},
            }))
            .unwrap()
        };
        assert_eq!(etag(&with("a")), etag(&with("a")));
        assert_ne!(etag(&with("a")), etag(&with("b")));
    }
}
