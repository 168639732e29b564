//! SailPoint's Python SDK (`sailpoint.triggers`) against the relay: its OAuth flow, its `/…/v1` paths and its
//! strict models, driven by `tests/it/sdk/check_sdk.py`. `scripts/test` installs the SDK (`pip install sailpoint`).
//! Also the relay's own OpenAPI document, checked by `openapi-spec-validator` (`scripts/test` installs it too).

use crate::support;

use std::time::Duration;

use support::webhook::Webhook;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sailpoints_python_sdk_manages_relay_subscriptions() {
    let dir = tempfile::tempdir().unwrap();
    let hook = Webhook::start().await;
    let secret = "sdk-client-secret";
    let digest = sha256_hex(secret);
    let relay = start(&format!(
        r#"
{LOOPBACK_HOOKS}
[api]
enabled = true
store_path = "{store}"
[[api.clients]]
client_id = "sdk"
client_secret_sha256 = "{digest}"
scopes = ["sp:trigger-service-subscriptions:manage", "sp:trigger-service-invocation-status:manage"]
# A relay-typed subscription the SDK's models cannot represent: its list calls must work anyway.
[[subscriptions]]
name = "relay-typed"
triggerId = "idn:identity-created"
type = "DISCARD"
"#,
        store = dir.path().join("store.json").display()
    ))
    .await;
    let base = format!("http://{}", relay.admin_addr());
    let url = hook.url("/sdk");
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("python3")
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/it/sdk/check_sdk.py"
            ))
            .env("BASE_URL", base)
            .env("CLIENT_ID", "sdk")
            .env("CLIENT_SECRET", secret)
            .env("WEBHOOK_URL", url)
            .output()
    })
    .await
    .unwrap()
    .expect("python3 runs (scripts/test installs it)");
    let text = output_text(&out);
    assert!(
        out.status.success(),
        "the SDK check failed (install the SDK with `python3 -m pip install sailpoint`; scripts/test does):\n{text}"
    );
    assert!(text.contains("sdk: all operations passed"), "{text}");
    // ISC's mounts leave the relay's types out (the SDK's lists above decoded with one present); the relay's
    // mount lists them.
    let token = {
        let r = request(
            "POST",
            relay.admin_addr(),
            "/oauth/token",
            &[("content-type", "application/x-www-form-urlencoded")],
            format!("grant_type=client_credentials&client_id=sdk&client_secret={secret}")
                .into_bytes(),
        )
        .await;
        r.json()["access_token"].as_str().unwrap().to_string()
    };
    let auth = format!("Bearer {token}");
    for (path, has) in [
        ("/trigger-subscriptions/v1", false),
        ("/beta/trigger-subscriptions", false),
        ("/relay/v1/trigger-subscriptions", true),
    ] {
        let l = request(
            "GET",
            relay.admin_addr(),
            path,
            &[("authorization", &auth)],
            Vec::new(),
        )
        .await;
        assert_eq!(l.status, 200, "{path}");
        assert_eq!(
            String::from_utf8_lossy(&l.body).contains("\"DISCARD\""),
            has,
            "{path}"
        );
    }
    // The SDK's test invocation went through the real HTTP sink.
    let got = hook.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(got[0].headers["authorization"], "Bearer sdk-secret-2");
}

/// `GET /openapi.json` is a valid OpenAPI 3.0 document by an independent validator (`openapi-spec-validator`),
/// and describes the relay's own mount and types, so ordinary tooling can manage KAFKA and NATS routes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_passes_a_real_validator() {
    const TOKEN: &str = "openapi-admin-token-0123456789abcdef";
    let dir = tempfile::tempdir().unwrap();
    let relay = start(&format!(
        "[ingress.auth]\nnone = true\n[api]\nenabled = true\nstore_path = \"{}\"\n\
         [[api.tokens]]\nname = \"admin\"\ntoken = \"{TOKEN}\"\nscopes = [\"sp:scopes:all\"]\n",
        dir.path().join("store.json").display()
    ))
    .await;
    let r = request("GET", relay.admin_addr(), "/openapi.json", &[], Vec::new()).await;
    assert_eq!(r.status, 200);
    let doc: serde_json::Value = r.json();
    for path in [
        "/relay/v1/trigger-subscriptions",
        "/relay/v1/trigger-subscriptions/{id}",
        "/trigger-subscriptions/v1",
        "/beta/trigger-subscriptions",
    ] {
        assert!(doc["paths"][path].is_object(), "{path} in openapi.json");
    }
    let text = doc.to_string();
    for kind in ["\"KAFKA\"", "\"NATS\"", "\"kafkaConfig\"", "\"natsConfig\""] {
        assert!(text.contains(kind), "{kind} described in openapi.json");
    }
    let file = dir.path().join("openapi.json");
    std::fs::write(&file, &r.body).unwrap();
    let out = std::process::Command::new("python3")
        .args([
            "-c",
            "import json, sys\n\
             from openapi_spec_validator import validate\n\
             from openapi_spec_validator.readers import read_from_filename\n\
             spec, _ = read_from_filename(sys.argv[1])\n\
             validate(spec)\n\
             print('openapi: valid', spec['openapi'], len(spec['paths']), 'paths')",
        ])
        .arg(&file)
        .output()
        .expect("python3 runs (scripts/test installs it)");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.contains("openapi: valid 3.0"),
        "openapi-spec-validator refused /openapi.json (install it with `python3 -m pip install openapi-spec-validator`; scripts/test does):\n{said}"
    );

    // Every operation it lists is served, and answers with a status it documents.
    let auth = format!("Bearer {TOKEN}");
    let mut exercised = 0;
    let mut wrong = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let url = path.replace("{id}", "00000000-0000-0000-0000-000000000000");
            let (content_type, body) = match method.as_str() {
                "patch" => ("application/json-patch+json", "[]"),
                "post" if path.ends_with("/oauth/token") => (
                    "application/x-www-form-urlencoded",
                    "grant_type=client_credentials",
                ),
                "post" | "put" => ("application/json", "{}"),
                _ => ("application/json", ""),
            };
            let r = request(
                &method.to_ascii_uppercase(),
                relay.admin_addr(),
                &url,
                &[("authorization", &auth), ("content-type", content_type)],
                body.as_bytes().to_vec(),
            )
            .await;
            exercised += 1;
            let documented = op["responses"].as_object().is_some_and(|rs| {
                rs.contains_key(&r.status.to_string()) || rs.contains_key("default")
            });
            if !documented {
                wrong.push(format!("{method} {path}: {} not documented", r.status));
            }
        }
    }
    assert!(exercised >= 30, "{exercised} operations");
    assert!(wrong.is_empty(), "{wrong:#?}");
}
