//! `apply_patch` on the subscriptions the `json_patch` fuzz target patches: the seeds' shapes and every input
//! the fuzzer found (`scripts/fuzz`), kept as regression cases.

use super::apply_patch;
use crate::config::Config;

/// `json_patch`: PATCH bodies through `api::apply_patch`, the function the API's PATCH handler calls, on the
/// subscriptions the fuzz target patches (`tests/fixtures/json_patch.toml`: 0 HTTP basic auth, 1 HTTP bearer,
/// 2 Kafka, 3 NATS, 4 EventBridge, 5 DISCARD). The seeds' shapes, and every input the fuzzer found.
#[test]
fn json_patch_bodies() {
    let config = Config::from_toml_with_env(
        include_str!("../../../tests/fixtures/json_patch.toml"),
        |_| None,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let subs = &config.subscriptions;
    // (subscription, body, Ok: a field of the result as JSON and its value | Err: a word of the 400's causes)
    type Expect = Result<(&'static str, serde_json::Value), &'static str>;
    let copy_growth = format!(
        "[{}]",
        (0..40)
            .map(|i| format!(r#"{{"op":"copy","from":"/httpConfig","path":"/httpConfig/{i}"}}"#))
            .collect::<Vec<_>>()
            .join(",")
    );
    // Inserts at the front of an array, each a memmove of the rest: a way to burn CPU, not to edit a subscription.
    let many_ops = format!(
        "[{}]",
        vec![r#"{"op":"add","path":"/description","value":"d"}"#; 1001].join(",")
    );
    let cases: &[(usize, &str, Expect)] = &[
        (5, "[]", Ok(("/name", "discard".into()))),
        (5, &many_ops, Err("at most 1000")),
        (
            0,
            r#"[{"op":"replace","path":"/description","value":"d"},{"op":"copy","from":"/name","path":"/description"},
                {"op":"replace","path":"/name","value":"A new name"},{"op":"remove","path":"/filter"}]"#,
            Ok(("/description", "webhook basic".into())),
        ),
        (
            1,
            r#"[{"op":"replace","path":"/enabled","value":true}]"#,
            Ok(("/enabled", true.into())),
        ),
        // The secret stays when the user and the destination stay (another path is the same destination); it is
        // not exposed to the patch either way. Another user or another host needs the password again.
        (
            0,
            r#"[{"op":"replace","path":"/httpConfig/url","value":"https://hooks.example.com/y"}]"#,
            Ok(("/httpConfig/basicAuthConfig/userName", "isc".into())),
        ),
        (
            0,
            r#"[{"op":"replace","path":"/httpConfig/basicAuthConfig/userName","value":"other"}]"#,
            Err("send the password of `other`"),
        ),
        (
            0,
            r#"[{"op":"replace","path":"/httpConfig/url","value":"https://evil.example.net/isc"}]"#,
            Err("basicAuthConfig.password: the stored credential is kept only while"),
        ),
        (
            0,
            r#"[{"op":"replace","path":"/httpConfig/basicAuthConfig/userName","value":"other"},
                {"op":"add","path":"/httpConfig/basicAuthConfig/password","value":"new-pw"}]"#,
            Ok(("/httpConfig/basicAuthConfig/userName", "other".into())),
        ),
        (
            1,
            r#"[{"op":"replace","path":"/httpConfig/httpAuthenticationType","value":"BASIC_AUTH"}]"#,
            Err("basicAuthConfig"),
        ),
        (
            2,
            r#"[{"op":"move","from":"/kafkaConfig/topic","path":"/description"},{"op":"add","path":"/kafkaConfig/topic","value":"isc.moved"}]"#,
            Ok(("/kafkaConfig/topic", "isc.moved".into())),
        ),
        (
            3,
            r#"[{"op":"replace","path":"/natsConfig/subject","value":"isc.{nope}"}]"#,
            Err("subject"),
        ),
        (
            4,
            r#"[{"op":"replace","path":"/responseDeadline","value":"PT"}]"#,
            Err("responseDeadline"),
        ),
        (
            5,
            r#"[{"op":"replace","path":"/id","value":"x"}]"#,
            Err("/id"),
        ),
        (
            5,
            r#"[{"op":"replace","path":"/triggerId","value":"idn:identity-deleted"}]"#,
            Err("/triggerId"),
        ),
        (
            5,
            r#"[{"op":"test","path":"/name","value":"discard"}]"#,
            Err("test"),
        ),
        (5, r#"[{"op":"remove","path":"/nope"}]"#, Err("/nope")),
        (
            5,
            r#"[{"op":"remove","path":"/filter"},{"op":"remove","path":"/filter"}]"#,
            Err("does not apply"),
        ),
        (
            3,
            r#"[{"op":"replace","path":"/type","value":"INLINE"}]"#,
            Err("INLINE"),
        ),
        (5, r#"{"op":"replace","path":"/name","value":"x"}"#, Err("")),
        (5, r#"[{"op":"replace","path":"/name"}]"#, Err("value")),
        // Each `copy` of a field into itself doubled the document: 40 of them (2.6 KB) took all the memory
        // (libFuzzer: out-of-memory). The size is now bounded before each copy.
        (0, &copy_growth, Err("too large")),
        (
            2,
            r#"[{"op":"copy","from":"/kafkaConfig","path":"/deadLetter/kafkaConfig"},{"op":"remove","path":"/deadLetter/natsConfig"}]"#,
            Ok((
                "/deadLetter/kafkaConfig/topic",
                "isc.identity-deleted".into(),
            )),
        ),
        (
            5,
            r#"[{"op":"copy","from":"/nope","path":"/name"}]"#,
            Err("/nope"),
        ),
        (
            5,
            r#"[{"op":"replace","path":"/name","value":"x"},{"op":"remove","path":"/description/x"}]"#,
            Err("operation '/1'"),
        ),
    ];
    for (i, (pick, body, expect)) in cases.iter().enumerate() {
        let old = &subs[*pick];
        let got = apply_patch(&config, old, body.as_bytes());
        match (got, expect) {
            (Ok(new), Ok((pointer, value))) => {
                assert_eq!(new.id, old.id, "case {i}");
                assert_eq!(new.trigger_id, old.trigger_id, "case {i}");
                assert!(config.check_subscription("", &new).is_empty(), "case {i}");
                let doc = serde_json::to_value(&new).unwrap();
                assert_eq!(doc.pointer(pointer), Some(value), "case {i}: {doc}");
            }
            (Err(e), Err(word)) => {
                assert_eq!(e.status, 400, "case {i}: {} {:?}", e.message, e.causes);
                let text = format!("{} {:?}", e.message, e.causes);
                assert!(text.contains(word), "case {i}: `{word}` not in {text}");
            }
            (Ok(new), Err(_)) => panic!("case {i}: accepted: {new:?}"),
            (Err(e), Ok(_)) => panic!("case {i}: refused: {} {:?}", e.message, e.causes),
        }
    }
}
