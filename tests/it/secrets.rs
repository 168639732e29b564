//! Secrets and the `${VAR}` allow-list: a secret never appears in `Debug` or in `check-config --print`, the
//! printed config is the effective one (interpolated, defaults filled in), and interpolation reads only the
//! variables `[env]` allows, with the key path of any other.

use std::collections::HashMap;
use std::process::Command;

use trigger_relay::Config;

/// Every kind of secret the config holds, each with a distinct value.
const ALL_SECRETS: &str = r#"
[env]
allow = ["EXTRA_NAME"]
[ingress.auth]
bearer_tokens = ["${ISC_BEARER_TOKEN}", "literal-bearer-999-0123456789abcdef0123456789"]
basic = [{ username = "isc", password = "${ISC_BASIC_PASSWORD}" }]
[sinks.kafka.main]
bootstrap_servers = "${KAFKA_BOOTSTRAP_SERVERS}"
options = { "security.protocol" = "SASL_SSL", "sasl.mechanism" = "PLAIN", "sasl.username" = "${KAFKA_USERNAME}", "sasl.password" = "${KAFKA_PASSWORD}", ssl = { key = { password = "keypw-555" } }, "client.id" = "${EXTRA_NAME}" }
[sinks.nats.main]
servers = ["nats://relay:nats-url-pw-777@127.0.0.1:4222"]
token = "${NATS_TOKEN}"
[[subscriptions]]
name = "k"
triggerId = "idn:identity-created"
type = "KAFKA"
kafkaConfig = { topic = "t" }
[[subscriptions]]
name = "n"
triggerId = "idn:identity-created"
type = "NATS"
natsConfig = { subject = "isc.{trigger}" }
[[subscriptions]]
name = "hb"
triggerId = "idn:identity-created"
type = "HTTP"
httpConfig = { url = "https://hook.example/x", httpAuthenticationType = "BASIC_AUTH", basicAuthConfig = { userName = "u", password = "hook-basic-888" } }
[[subscriptions]]
name = "ht"
triggerId = "idn:identity-created"
type = "HTTP"
httpConfig = { url = "https://hook.example/y", httpAuthenticationType = "BEARER_TOKEN", bearerTokenAuthConfig = { bearerToken = "hook-bearer-666" } }
"#;

const SECRET_VALUES: &[&str] = &[
    "tok-111-0123456789abcdef0123456789",
    "basic-222",
    "sasl-333",
    "nats-444",
    "keypw-555",
    "hook-bearer-666",
    "nats-url-pw-777",
    "hook-basic-888",
    "literal-bearer-999-0123456789abcdef0123456789",
];

fn env() -> HashMap<&'static str, &'static str> {
    [
        ("ISC_BEARER_TOKEN", "tok-111-0123456789abcdef0123456789"),
        ("ISC_BASIC_PASSWORD", "basic-222"),
        ("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"),
        ("KAFKA_USERNAME", "kafka-user"),
        ("KAFKA_PASSWORD", "sasl-333"),
        ("NATS_TOKEN", "nats-444"),
        ("EXTRA_NAME", "relay-client-0123456789abcdef012345"),
        ("DATABASE_PASSWORD", "db-000-0123456789abcdef0123456789ab"),
    ]
    .into()
}

fn load(text: &str) -> Result<Config, trigger_relay::config::ConfigErrors> {
    let env = env();
    Config::from_toml_with_env(text, |k| env.get(k).map(|v| v.to_string()))
}

/// `text` does not load, and the errors say `says`.
fn assert_refused(text: &str, says: &str) {
    let e = load(text).unwrap_err().to_string();
    assert!(e.contains(says), "{e}");
}

fn assert_no_secret(what: &str, text: &str) {
    for s in SECRET_VALUES {
        assert!(!text.contains(s), "{what} shows the secret `{s}`:\n{text}");
    }
}

#[test]
fn debug_and_print_never_show_a_secret() {
    let c = load(ALL_SECRETS).unwrap_or_else(|e| panic!("{e}"));
    // The secrets did arrive where they are used.
    let auth = c.ingress.auth.as_ref().unwrap();
    assert_eq!(
        auth.bearer_tokens[0].expose(),
        "tok-111-0123456789abcdef0123456789"
    );
    assert_eq!(auth.basic[0].password.expose(), "basic-222");
    assert_no_secret("Debug", &format!("{c:?}"));
    assert_no_secret("Debug (pretty)", &format!("{c:#?}"));
    let printed = c.to_redacted_toml();
    assert_no_secret("--print", &printed);
    // It is the effective config: interpolated, with defaults, and secrets visibly set.
    for want in [
        "bootstrap_servers = \"127.0.0.1:9092\"",
        "max_body_bytes = 1048576",
        "delivery_timeout_ms = 300000",
        "enable_idempotence = true",
        "\"client.id\" = \"relay-client-0123456789abcdef012345\"",
        "\"sasl.password\" = \"***\"",
        "\"sasl.username\" = \"***\"",
        "\"ssl.key.password\" = \"***\"",
        "\"security.protocol\" = \"SASL_SSL\"",
        "token = \"***\"",
        "bearerToken = \"***\"",
        "\"nats://relay:***@127.0.0.1:4222\"",
        "allow_prefixes = [",
    ] {
        assert!(printed.contains(want), "--print lacks `{want}`:\n{printed}");
    }
    // And it is a config again once its secrets are filled in (they print as `***`, too short for a token).
    let filled = printed.replace("\"***\"", "\"a-real-secret-goes-here-0123456789\"");
    let again = Config::from_toml_with_env(&filled, |_| None)
        .unwrap_or_else(|e| panic!("--print output does not load: {e}\n{printed}"));
    assert_eq!(again.subscriptions.len(), 4);
    assert_eq!(
        again.ingress.auth.unwrap().bearer_tokens[0].expose(),
        "a-real-secret-goes-here-0123456789"
    );
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

/// The binary: `check-config --print` writes the redacted effective config to standard output.
#[test]
fn check_config_print_on_the_binary() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("relay.toml");
    std::fs::write(&path, ALL_SECRETS).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_trigger-relay"));
    cmd.args(["check-config", "--print", "--config"]).arg(&path);
    for (k, v) in env() {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("ok (4 subscription(s), 1 Kafka cluster(s))"),
        "{stderr}"
    );
    assert!(stdout.contains("[sinks.kafka.main]"), "{stdout}");
    assert_no_secret("--print (stdout)", &stdout);
    assert_no_secret("--print (stderr)", &stderr);
    // An interpolation outside the allow-list fails with its key path.
    std::fs::write(
        &path,
        "[ingress.auth]\nbearer_tokens = [\"${DATABASE_PASSWORD}\"]\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_trigger-relay"))
        .args(["check-config", "--print", "--config"])
        .arg(&path)
        .env("DATABASE_PASSWORD", "db-000-0123456789abcdef0123456789ab")
        .output()
        .unwrap();
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(all.contains("ingress.auth.bearer_tokens[0]: environment variable `DATABASE_PASSWORD` is not in the allow-list"), "{all}");
    assert!(
        !all.contains("db-000-0123456789abcdef0123456789ab"),
        "{all}"
    );
}
