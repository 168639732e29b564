//! `check-config --print` on the binary: the redacted effective config on standard output, no secret on either
//! stream, and an interpolation outside the allow-list refused with its key path. The same rules on the library
//! are the config's unit tests (`src/config/redact/tests.rs`, `src/config/env/tests.rs`).

use std::process::Command;

use trigger_relay_testkit::secrets::{assert_no_secret, env, ALL_SECRETS};

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
