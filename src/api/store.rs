//! The durable store of subscriptions created through the API: one JSON file, rewritten whole on every
//! change (temp file, fsync, rename, fsync of the directory), so a crash leaves either the old or the new file,
//! never a torn one. Mode 0600: it holds webhook credentials, which the API itself never returns.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::model::Subscription;

#[derive(Debug)]
pub struct Store {
    path: PathBuf,
    subs: Mutex<Vec<Subscription>>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    subscriptions: Vec<Subscription>,
}

/// The JSON of a subscription with its secrets (the model's `Serialize` writes them as `null`, for the API).
fn with_secrets(s: &Subscription) -> serde_json::Value {
    let mut v = serde_json::to_value(s).unwrap_or_default();
    if let Some(h) = &s.http_config {
        if let Some(p) = h
            .basic_auth_config
            .as_ref()
            .and_then(|b| b.password.as_ref())
        {
            v["httpConfig"]["basicAuthConfig"]["password"] = p.expose().into();
        }
        if let Some(t) = h
            .bearer_token_auth_config
            .as_ref()
            .and_then(|b| b.bearer_token.as_ref())
        {
            v["httpConfig"]["bearerTokenAuthConfig"]["bearerToken"] = t.expose().into();
        }
    }
    v
}

impl Store {
    /// Open the store at `path` (an absent file is an empty store).
    pub fn open(path: &Path) -> Result<Self, String> {
        let subs = match std::fs::read(path) {
            Ok(bytes) => {
                let f: File = serde_json::from_slice(&bytes).map_err(|e| {
                    format!(
                        "the subscription store {} is not readable: {e}",
                        path.display()
                    )
                })?;
                f.subscriptions
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
        };
        Ok(Self {
            path: path.to_path_buf(),
            subs: Mutex::new(subs),
        })
    }

    pub fn list(&self) -> Vec<Subscription> {
        self.subs.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Make `subs` the store's content, on disk first.
    pub fn replace(&self, subs: Vec<Subscription>) -> Result<(), String> {
        let doc = serde_json::json!({
            "subscriptions": subs.iter().map(with_secrets).collect::<Vec<_>>()
        });
        let text = serde_json::to_vec_pretty(&doc).map_err(|e| e.to_string())?;
        self.write(&text).map_err(|e| {
            format!(
                "cannot write the subscription store {}: {e}",
                self.path.display()
            )
        })?;
        *self.subs.lock().unwrap_or_else(|p| p.into_inner()) = subs;
        Ok(())
    }

    fn write(&self, bytes: &[u8]) -> std::io::Result<()> {
        let dir = match self.path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        std::fs::create_dir_all(&dir)?;
        let tmp = dir.join(format!(
            ".{}.tmp",
            self.path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "store".into())
        ));
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
        std::fs::File::open(&dir)?.sync_all()?;
        Ok(())
    }
}
