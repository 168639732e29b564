//! `check-config --print`: the effective config with every secret shown as `***`.

use super::Config;

/// Kafka `options` whose name looks like a credential: `check-config --print` shows `***` for their values.
pub fn is_credential_option(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    n.starts_with("sasl.")
        || n.starts_with("ssl.key")
        || ["password", "secret", "token", "key", "credential"]
            .iter()
            .any(|w| n.contains(w))
}

impl Config {
    /// The effective config (after `${VAR}` interpolation and with every default filled in) as TOML, with every
    /// secret shown as `***`: `Secret` fields, credential-like Kafka `options`, and the password of a URL.
    /// This is what `trigger-relay check-config --print` prints.
    pub fn to_redacted_toml(&self) -> String {
        let json = crate::model::with_redacted_secrets(|| serde_json::to_value(self))
            .expect("the config serialises");
        let toml = toml::Value::try_from(redact_json(json).unwrap_or(serde_json::Value::Null))
            .expect("the config is TOML");
        toml::to_string_pretty(&toml).expect("the config prints as TOML")
    }
}

/// Drop nulls (TOML has none: an unset option is left out) and hide URL passwords (`scheme://user:pw@host`).
fn redact_json(v: serde_json::Value) -> Option<serde_json::Value> {
    use serde_json::Value;
    Some(match v {
        Value::Null => return None,
        Value::String(s) => Value::String(redact_url_password(&s)),
        Value::Array(a) => Value::Array(a.into_iter().filter_map(redact_json).collect()),
        Value::Object(o) => Value::Object(
            o.into_iter()
                .filter_map(|(k, v)| Some((k, redact_json(v)?)))
                .collect(),
        ),
        other => other,
    })
}

/// `scheme://user:***@host`: the password of every URL in `s` hidden.
pub fn redact_url_password(s: &str) -> String {
    // `scheme://user:password@host…` (also inside a comma-separated list of URLs).
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i + 3);
        out.push_str(head);
        let end = tail.find(['/', ',', ' ']).unwrap_or(tail.len());
        let authority = &tail[..end];
        match (authority.rfind('@'), authority.find(':')) {
            (Some(at), Some(colon)) if colon < at => {
                out.push_str(&authority[..colon]);
                out.push_str(":***");
                out.push_str(&authority[at..]);
            }
            _ => out.push_str(authority),
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}
