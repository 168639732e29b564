//! `check-config --print`: the effective config with every secret shown as `***`.

use super::Config;
pub use crate::model::{is_credential_option, redact_url_password};

impl Config {
    /// The effective config (after `${VAR}` interpolation and with every default filled in) as TOML, with every
    /// secret shown as `***`: `Secret` fields, credential-like Kafka `options`, and the password of a URL.
    /// This is what `trigger-relay check-config --print` prints.
    pub fn to_redacted_toml(&self) -> String {
        let json = serde_json::to_value(self).expect("the config serialises");
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

#[cfg(test)]
mod tests;
