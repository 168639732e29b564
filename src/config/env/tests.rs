//! Interpolation reads only the variables `[env]` allows, naming the key path of any other, and the shipped
//! example configs stay within the default allow-list.

use trigger_relay_testkit::secrets::env;

use crate::config::{Config, ConfigErrors};

fn load(text: &str) -> Result<Config, ConfigErrors> {
    let env = env();
    Config::from_toml_with_env(text, |k| env.get(k).map(|v| v.to_string()))
}

/// `text` does not load, and the errors say `says`.
fn assert_refused(text: &str, says: &str) {
    let e = load(text).unwrap_err().to_string();
    assert!(e.contains(says), "{e}");
}

#[test]
fn interpolation_reads_only_allowed_variables() {
    // Default prefixes: TRIGGER_RELAY_, ISC_, KAFKA_, NATS_, AWS_.
    let e = load(
        "[ingress.auth]\nbearer_tokens = [\"${DATABASE_PASSWORD}\"]\n[log]\nlevel = \"${ISC_BEARER_TOKEN}\"\n",
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.starts_with("ingress.auth.bearer_tokens[0]: environment variable `DATABASE_PASSWORD` is not in the allow-list"),
        "{e}"
    );
    assert!(
        !e.contains("db-000-0123456789abcdef0123456789ab") && !e.contains("log.level"),
        "{e}"
    );
    // Explicit names, and prefixes written out replace the default ones.
    let ok = "[env]\nallow_prefixes = [\"DATABASE_\"]\nallow = [\"EXTRA_NAME\"]\n[ingress.auth]\nbearer_tokens = [\"${DATABASE_PASSWORD}\", \"${EXTRA_NAME}\"]\n";
    let c = load(ok).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        c.ingress.auth.unwrap().bearer_tokens[1].expose(),
        "relay-client-0123456789abcdef012345"
    );
    assert_refused(
        &format!("{ok}[log]\nlevel = \"${{ISC_BEARER_TOKEN}}\"\n"),
        "log.level: environment variable `ISC_BEARER_TOKEN` is not in the allow-list",
    );
    // `[env]` itself is taken literally, and checked.
    assert_refused(
        "[env]\nallow_prefixes = [\"\"]\nallow = \"X\"\n[ingress.auth]\nnone = true\n",
        "env.allow",
    );
    assert_refused(
        "[env]\nallow_prefixes = [\"\"]\n[ingress.auth]\nnone = true\n",
        "env.allow_prefixes[0]: an empty prefix",
    );
    assert_refused("[env]\nallow = [\"${EXTRA_NAME}\"]\n[ingress.auth]\nnone = true\n[log]\nlevel = \"${EXTRA_NAME}\"\n", "log.level: environment variable `EXTRA_NAME` is not in the allow-list");
    // An allowed variable that is not set is still its own error.
    assert_refused(
        "[ingress.auth]\nbearer_tokens = [\"${ISC_UNSET}\"]\n",
        "environment variable `ISC_UNSET` is not set",
    );
}

/// The shipped example configs stay valid under the default allow-list.
#[test]
fn example_configs_read_only_allowed_variables() {
    let root = env!("CARGO_MANIFEST_DIR");
    for f in [
        "config/dev.toml",
        "config/kafka.toml",
        "config/nats.toml",
        "deploy/container.toml",
        "deploy/compose/relay.toml",
    ] {
        let text = std::fs::read_to_string(format!("{root}/{f}")).unwrap();
        if let Err(e) =
            Config::from_toml_with_env(&text, |k| Some(format!("{k}-value-0123456789abcdef012")))
        {
            panic!("{f}: {e}");
        }
    }
}
