//! Deployment material (`deploy/`): the Helm chart is rendered with Helm's own engine and validated against the
//! Kubernetes schemas, the compose quickstart and the Dockerfile are checked, and every config they carry passes
//! `trigger-relay check-config`. The checks live in `deploy/tests/check_deploy.py` (Helm and the Kubernetes schemas
//! are Python packages here); each test below runs one group of them with this build's binary.

use std::process::Command;

const INSTALL: &str = "python3 -m pip install helm-python-sdk kubernetes-validate pyyaml jsonschema \
                       (add --break-system-packages if pip refuses; scripts/test installs them when missing)";

fn check(group: &str) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/tests/check_deploy.py");
    let out = Command::new("python3")
        .arg(script)
        .arg(group)
        .env("TRIGGER_RELAY_BIN", env!("CARGO_BIN_EXE_trigger-relay"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run python3 ({e}): install Python 3.11+, then {INSTALL}")
        });
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    match out.status.code() {
        Some(0) => {}
        Some(2) => panic!("deploy checks `{group}` could not run:\n{text}\nTo fix: {INSTALL}"),
        _ => panic!(
            "deploy checks `{group}` failed:\n{text}\nRerun with `python3 deploy/tests/check_deploy.py {group}` \
             (TRIGGER_RELAY_BIN=target/debug/trigger-relay); if a package is missing: {INSTALL}"
        ),
    }
}

/// `helm lint --strict` passes and every rendered object (default values, and all optional parts on) is valid
/// Kubernetes, unknown fields included; NOTES.txt gives ISC's URL.
#[test]
fn chart_lints_renders_and_validates_against_kubernetes() {
    check("chart");
}

/// `values.schema.json` accepts the shipped values and rejects unknown keys and wrong types.
#[test]
fn chart_values_schema_rejects_bad_values() {
    check("schema");
}

/// Probes hit /healthz and /readyz on the admin port the config listens on; Services, Ingress and NetworkPolicy
/// reach the right ports; the pod outlives preStop + drain; a config change rolls the pods.
#[test]
fn chart_wiring_probes_ports_shutdown_and_rollout() {
    check("wiring");
}

/// The ISC sync hook Job and CronJob (`isc.sync`): hook annotations, `isc sync` on the ConfigMap's `isc.toml`,
/// credentials only from Secrets, the Deployment's image and security contexts, pods no relay Service selects and
/// the NetworkPolicy lets in to the admin port; the chart refuses what cannot work; absent by default.
#[test]
fn chart_isc_sync_job_and_cronjob() {
    check("isc");
}

/// The ConfigMap's config passes `check-config`, every `${VAR}` it reads comes from the pod's env, secrets come
/// from Secrets, and no secret value appears in a ConfigMap.
#[test]
fn chart_config_passes_check_config_and_holds_no_secret() {
    check("config");
}

/// `deploy/compose.yaml` parses, wires Kafka, NATS JetStream and moto, and its relay config passes `check-config`.
#[test]
fn compose_quickstart_config_passes_check_config() {
    check("compose");
}

/// `deploy/Dockerfile` (statically: stages, non-root, ports, stop signal, no secrets) and its health check script
/// against a live relay.
#[test]
fn dockerfile_is_sound_and_healthcheck_works() {
    check("docker");
}
