//! `[sinks.nats.NAME]`: one NATS connection, and the subject template of `natsConfig`.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::keypath::ErrorSink;
use crate::model::Secret;
use crate::pipeline::queue::check_queue;
use crate::pipeline::QueueConfig;

#[derive(Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct NatsConnectionConfig {
    /// `nats://host:4222`, `tls://…`; several for a cluster.
    pub servers: Vec<String>,
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub password: Option<Secret>,
    #[serde(default)]
    pub token: Option<Secret>,
    #[serde(default)]
    pub nkey_seed: Option<Secret>,
    #[serde(default)]
    pub creds_file: Option<PathBuf>,
    #[serde(default)]
    pub tls_required: bool,
    #[serde(default)]
    pub tls_ca_file: Option<PathBuf>,
    #[serde(default)]
    pub tls_cert_file: Option<PathBuf>,
    #[serde(default)]
    pub tls_key_file: Option<PathBuf>,
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout_ms: u64,
    /// JetStream: acks awaited at once, per connection.
    #[serde(default = "default_in_flight")]
    pub max_in_flight: usize,
    #[serde(default)]
    pub queue: QueueConfig,
    /// Subject prefixes subscriptions created through the Triggers API may publish to on this connection (e.g.
    /// `["isc."]`). Empty (the default): any subject except those starting with `$` (`$JS.API`, `$SYS`, `$KV`)
    /// or `_` (`_INBOX`) and the config file's dead-letter subjects. Config-file subscriptions are not limited.
    #[serde(default)]
    pub api_subject_prefixes: Vec<String>,
}

/// A server URL may carry a password (`nats://user:password@host`): `Debug` shows `***` in its place.
impl std::fmt::Debug for NatsConnectionConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let servers: Vec<String> = self
            .servers
            .iter()
            .map(|s| crate::model::redact_url_password(s))
            .collect();
        f.debug_struct("NatsConnectionConfig")
            .field("servers", &servers)
            .field("user", &self.user)
            .field("password", &self.password)
            .field("token", &self.token)
            .field("nkey_seed", &self.nkey_seed)
            .field("creds_file", &self.creds_file)
            .field("tls_required", &self.tls_required)
            .field("tls_ca_file", &self.tls_ca_file)
            .field("tls_cert_file", &self.tls_cert_file)
            .field("tls_key_file", &self.tls_key_file)
            .field("connect_timeout_ms", &self.connect_timeout_ms)
            .field("max_in_flight", &self.max_in_flight)
            .field("queue", &self.queue)
            .field("api_subject_prefixes", &self.api_subject_prefixes)
            .finish()
    }
}

fn default_connect_timeout() -> u64 {
    5_000
}
fn default_in_flight() -> usize {
    256
}

impl NatsConnectionConfig {
    pub(crate) fn validate(&self, path: &str, errors: &mut dyn ErrorSink) {
        if self.servers.is_empty() {
            errors.error(
                format!("{path}.servers"),
                "list at least one server URL".into(),
            );
        }
        for (i, s) in self.servers.iter().enumerate() {
            if s.trim().is_empty() || s.contains(char::is_whitespace) {
                errors.error(
                    format!("{path}.servers[{i}]"),
                    format!("`{s}` is not a server URL"),
                );
            }
        }
        if self.user.is_some() != self.password.is_some() {
            errors.error(
                format!("{path}.password"),
                "user and password go together".into(),
            );
        }
        let methods = [
            self.user.is_some(),
            self.token.is_some(),
            self.nkey_seed.is_some(),
            self.creds_file.is_some(),
        ];
        if methods.iter().filter(|m| **m).count() > 1 {
            errors.error(
                path.to_string(),
                "choose one of user/password, token, nkey_seed, creds_file".into(),
            );
        }
        if self.tls_cert_file.is_some() != self.tls_key_file.is_some() {
            errors.error(
                format!("{path}.tls_key_file"),
                "tls_cert_file and tls_key_file go together".into(),
            );
        }
        if self.connect_timeout_ms == 0 {
            errors.error(
                format!("{path}.connect_timeout_ms"),
                "must be greater than 0".into(),
            );
        }
        if !(1..=65_536).contains(&self.max_in_flight) {
            errors.error(
                format!("{path}.max_in_flight"),
                "must be between 1 and 65536".into(),
            );
        }
        check_queue(&format!("{path}.queue"), &self.queue, errors);
    }

    /// async-nats options: reconnect forever with its backoff, connect in the background.
    pub async fn options(&self) -> std::io::Result<async_nats::ConnectOptions> {
        let mut o = async_nats::ConnectOptions::new()
            .name("trigger-relay")
            .connection_timeout(Duration::from_millis(self.connect_timeout_ms))
            .retry_on_initial_connect()
            .max_reconnects(None)
            .require_tls(self.tls_required);
        if let (Some(u), Some(p)) = (&self.user, &self.password) {
            o = o.user_and_password(u.clone(), p.expose().to_string());
        }
        if let Some(t) = &self.token {
            o = o.token(t.expose().to_string());
        }
        if let Some(seed) = &self.nkey_seed {
            o = o.nkey(seed.expose().to_string());
        }
        if let Some(f) = &self.creds_file {
            o = o.credentials_file(f).await?;
        }
        if let Some(ca) = &self.tls_ca_file {
            o = o.add_root_certificates(ca.clone());
        }
        if let (Some(c), Some(k)) = (&self.tls_cert_file, &self.tls_key_file) {
            o = o.add_client_certificate(c.clone(), k.clone());
        }
        Ok(o)
    }
}

/// Render a subject template for a trigger: `{trigger}` is the trigger id without its `idn:` prefix, with
/// characters that cannot stand in a NATS subject token (`.`, `*`, `>`, white space, `:`) replaced by `_`.
/// The result must be a valid subject to publish to: no empty token, no wildcard.
pub fn render_subject(template: &str, trigger_id: &str) -> Result<String, String> {
    let name = trigger_id.strip_prefix("idn:").unwrap_or(trigger_id);
    let token: String = name
        .chars()
        .map(|c| {
            if c == '.' || c == '*' || c == '>' || c == ':' || c.is_whitespace() {
                '_'
            } else {
                c
            }
        })
        .collect();
    let subject = template.replace("{trigger}", &token);
    if subject.is_empty() {
        return Err("must not be empty".into());
    }
    if subject.contains(char::is_whitespace) {
        return Err(format!("`{subject}` contains white space"));
    }
    if subject.contains('{') || subject.contains('}') {
        return Err(format!("`{template}`: the only placeholder is {{trigger}}"));
    }
    for t in subject.split('.') {
        if t.is_empty() {
            return Err(format!("`{subject}` has an empty token"));
        }
        if t == "*" || t == ">" {
            return Err(format!(
                "`{subject}` has a wildcard; publish subjects cannot"
            ));
        }
    }
    Ok(subject)
}
