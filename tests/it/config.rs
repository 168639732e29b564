//! Config through the binary: every shipped file passes `check-config`, and a broken one exits non-zero with
//! every message. The validation itself (every error with its key path) is unit-tested in `src/config/tests.rs`.

use std::process::Command;

fn env_vars_of(text: &str) -> Vec<String> {
    let re = regex::Regex::new(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}").unwrap();
    re.captures_iter(text).map(|c| c[1].to_string()).collect()
}

#[test]
fn every_file_in_config_passes_check_config() {
    let mut n = 0;
    for entry in std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/config")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "toml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_trigger-relay"));
        cmd.arg("check-config").arg("--config").arg(&path);
        for v in env_vars_of(&text) {
            cmd.env(v, "placeholder-value-0123456789abcdef0123");
        }
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "{}: {}{}",
            path.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        n += 1;
    }
    assert!(n >= 2, "config/ holds the example configs");
}

#[test]
fn check_config_exits_non_zero_with_every_message() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("bad.toml");
    std::fs::write(
        &p,
        "[delivery]\nack_timeout_ms = 20000\n[[subscriptions]]\nname = \"x\"\ntriggerId = \"idn:nope\"\ntype = \"STDOUT\"\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_trigger-relay"))
        .args(["check-config", "--config"])
        .arg(&p)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    for want in [
        "3 error(s)",
        "delivery.ack_timeout_ms:",
        "ingress.auth:",
        "subscriptions[0].triggerId: unknown trigger",
    ] {
        assert!(err.contains(want), "missing {want:?} in:\n{err}");
    }
}
