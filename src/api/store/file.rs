//! The `file` store, for a single process: one JSON file (`{"subscriptions": [...]}`), rewritten whole on every
//! change (temp file, fsync, rename, fsync of the directory), so a crash leaves either the old or the new file,
//! never a torn one. Mode 0600.
//!
//! The process holds an exclusive lock on `<path>.lock` for its lifetime: a second process opening the same store
//! (two replicas sharing a volume) refuses to start instead of overwriting the first one's writes. Revisions are
//! counted in this process (the file needs none: there is no other writer).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use super::sealed::Sealer;
use super::{from_stored, stored_form, Record, StoreError, View};
use crate::model::Subscription;

const NAME: &str = "file";

pub struct FileStore {
    path: PathBuf,
    sealer: Sealer,
    /// The records and the last revision given out; the lock also serialises writes.
    state: Mutex<(BTreeMap<String, Record>, u64)>,
    view: Arc<watch::Sender<Arc<View>>>,
    /// Held open for the lock's sake.
    _lock: std::fs::File,
}

fn failed(message: String) -> StoreError {
    StoreError::Failed {
        store: NAME,
        message,
    }
}

impl FileStore {
    /// Lock and read the store at `path` (an absent file is an empty store).
    pub fn open(
        path: &Path,
        sealer: Sealer,
        view: Arc<watch::Sender<Arc<View>>>,
    ) -> Result<Self, StoreError> {
        let lock_path = sibling(path, "lock");
        if let Some(dir) = lock_path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| failed(format!("cannot create {}: {e}", dir.display())))?;
        }
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| failed(format!("cannot open {}: {e}", lock_path.display())))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(failed(format!(
                    "{} is in use by another trigger-relay process (it holds {}): a file store serves one \
                     process; for several replicas use [api.store] kind = \"nats\"",
                    path.display(),
                    lock_path.display()
                )))
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(failed(format!("cannot lock {}: {e}", lock_path.display())))
            }
        }
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct File {
            subscriptions: Vec<serde_json::Value>,
        }
        let subs: Vec<Subscription> = match std::fs::read(path) {
            Ok(bytes) => {
                let unreadable =
                    |e: String| failed(format!("{} is not readable: {e}", path.display()));
                let f: File =
                    serde_json::from_slice(&bytes).map_err(|e| unreadable(e.to_string()))?;
                f.subscriptions
                    .into_iter()
                    .map(|v| from_stored(v, &sealer))
                    .collect::<Result<_, _>>()
                    .map_err(unreadable)?
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(failed(format!("cannot read {}: {e}", path.display()))),
        };
        let mut records: BTreeMap<String, Record> = BTreeMap::new();
        for s in subs {
            records
                .entry(s.trigger_id.clone())
                .or_insert(Record {
                    revision: 1,
                    subscriptions: Vec::new(),
                })
                .subscriptions
                .push(s);
        }
        view.send_replace(Arc::new(View {
            records: records.clone(),
            revision: 1,
            caught_up: true,
        }));
        Ok(Self {
            path: path.to_path_buf(),
            sealer,
            state: Mutex::new((records, 1)),
            view,
            _lock: lock,
        })
    }

    pub fn read(&self, trigger: &str) -> Option<Record> {
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.0.get(trigger).cloned()
    }

    pub fn write(
        &self,
        trigger: &str,
        expected: Option<u64>,
        subs: &[Subscription],
    ) -> Result<u64, StoreError> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if state.0.get(trigger).map(|r| r.revision) != expected {
            return Err(StoreError::Conflict(trigger.to_string()));
        }
        let revision = state.1 + 1;
        let mut records = state.0.clone();
        records.insert(
            trigger.to_string(),
            Record {
                revision,
                subscriptions: subs.to_vec(),
            },
        );
        let all = records
            .values()
            .flat_map(|r| r.subscriptions.iter())
            .map(|s| stored_form(s, &self.sealer))
            .collect::<Result<Vec<_>, _>>()
            .map_err(failed)?;
        let text = serde_json::to_vec_pretty(&serde_json::json!({ "subscriptions": all }))
            .map_err(|e| failed(e.to_string()))?;
        self.write_file(&text)
            .map_err(|e| failed(format!("cannot write {}: {e}", self.path.display())))?;
        *state = (records.clone(), revision);
        self.view.send_replace(Arc::new(View {
            records,
            revision,
            caught_up: true,
        }));
        Ok(revision)
    }

    fn write_file(&self, bytes: &[u8]) -> std::io::Result<()> {
        let tmp = sibling(&self.path, "tmp");
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let mut f = opts.open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, &self.path)?;
        std::fs::File::open(dir_of(&self.path))?.sync_all()?;
        Ok(())
    }
}

fn dir_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// `.<name>.<suffix>` beside `path`.
fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "store".into());
    dir_of(path).join(format!(".{name}.{suffix}"))
}
