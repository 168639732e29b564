//! `[env]` and `${VAR}` interpolation: which environment variables a config may read (read before anything is
//! interpolated), and the interpolation itself, each error with its key path.

use serde::{Deserialize, Serialize};

use super::Errors;

/// `[env]`: the allow-list of `${VAR}` interpolation. A config can only read variables meant for it, so a
/// config file from elsewhere cannot pull, say, `${DATABASE_PASSWORD}` into a header or a URL.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EnvConfig {
    /// Variables whose name starts with one of these may be read. Written out, it replaces the default.
    #[serde(default = "default_env_prefixes")]
    pub allow_prefixes: Vec<String>,
    /// Further variables that may be read, by exact name.
    #[serde(default)]
    pub allow: Vec<String>,
}

impl Default for EnvConfig {
    fn default() -> Self {
        Self {
            allow_prefixes: default_env_prefixes(),
            allow: Vec::new(),
        }
    }
}

/// The default `[env] allow_prefixes`.
pub const DEFAULT_ENV_PREFIXES: &[&str] = &["TRIGGER_RELAY_", "ISC_", "KAFKA_", "NATS_", "AWS_"];

fn default_env_prefixes() -> Vec<String> {
    DEFAULT_ENV_PREFIXES.iter().map(|p| p.to_string()).collect()
}

impl EnvConfig {
    pub fn allows(&self, name: &str) -> bool {
        self.allow.iter().any(|a| a == name)
            || self
                .allow_prefixes
                .iter()
                .any(|p| name.starts_with(p.as_str()))
    }
}

/// Replace `${NAME}` in every string value with the environment variable; `$${` stands for a literal `${`.
pub(super) fn interpolate(
    v: &mut toml::Value,
    path: &mut String,
    env: &impl Fn(&str) -> Result<String, String>,
    errors: &mut Errors,
) {
    match v {
        toml::Value::String(s) if s.contains("${") => match expand(s, env) {
            Ok(out) => *s = out,
            Err(m) => errors.push(path.clone(), m),
        },
        toml::Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                interpolate(item, path, env, errors);
                path.truncate(len);
            }
        }
        toml::Value::Table(t) => {
            for (k, item) in t.iter_mut() {
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(k);
                interpolate(item, path, env, errors);
                path.truncate(len);
            }
        }
        _ => {}
    }
}

fn expand(s: &str, env: &impl Fn(&str) -> Result<String, String>) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        if let Some(t) = tail.strip_prefix("$${") {
            out.push_str("${");
            rest = t;
        } else if let Some(t) = tail.strip_prefix("${") {
            let end = t.find('}').ok_or_else(|| {
                "unterminated `${`: write `${NAME}`, or `$${` for a literal".to_string()
            })?;
            let name = &t[..end];
            let valid = !name.is_empty()
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                && !name.starts_with(|c: char| c.is_ascii_digit());
            if !valid {
                return Err(format!(
                    "`${{{name}}}` is not a valid environment variable name"
                ));
            }
            out.push_str(&env(name)?);
            rest = &t[end + 1..];
        } else {
            out.push('$');
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// `[env]`, read from the raw TOML before anything is interpolated (its own values are taken literally).
pub(super) fn env_allow_list(value: &toml::Value, errors: &mut Errors) -> EnvConfig {
    let Some(raw) = value.get("env") else {
        return EnvConfig::default();
    };
    let allow: EnvConfig = match serde_path_to_error::deserialize(raw.clone()) {
        Ok(a) => a,
        Err(e) => {
            let msg = e.inner().to_string();
            errors.push(
                format!("env.{}", e.path()).trim_end_matches(".."),
                msg.lines().next().unwrap_or_default().trim(),
            );
            return EnvConfig {
                allow_prefixes: Vec::new(),
                allow: Vec::new(),
            };
        }
    };
    for (i, p) in allow.allow_prefixes.iter().enumerate() {
        if p.is_empty() {
            errors.push(
                format!("env.allow_prefixes[{i}]"),
                "an empty prefix would allow every variable; list the names in `allow` instead",
            );
        }
    }
    allow
}

#[cfg(test)]
mod tests;
