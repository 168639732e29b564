//! The body probe against serde_json's verdict (`trigger_relay_testkit::probe_oracle`): hand-picked cases,
//! then generated documents and mutations of them. The same check runs unbounded in the `json_probe` fuzz
//! target.

use std::borrow::Cow;

use proptest::prelude::*;
use serde_json::{json, Value};

use super::probe;

/// This build's probe held to serde_json's verdict on `body`.
fn assert_agree(body: &str) {
    let ours = probe(body)
        .map(|m| {
            (
                m.trigger_id.map(Cow::into_owned),
                m.invocation_id.map(Cow::into_owned),
            )
        })
        .map_err(|e| (e.what.to_string(), e.offset));
    trigger_relay_testkit::probe_oracle::assert_agrees_with(body, ours);
}

/// `Some((triggerId, invocationId))`: accepted with these ids; `None`: refused.
type Verdict<'a> = Option<(Option<&'a str>, Option<&'a str>)>;

fn check(cases: &[(&str, Verdict<'_>)]) {
    for (body, want) in cases {
        assert_agree(body);
        let got = probe(body).ok().map(|m| {
            (
                m.trigger_id.map(|s| s.into_owned()),
                m.invocation_id.map(|s| s.into_owned()),
            )
        });
        let want = want.map(|(t, i)| (t.map(String::from), i.map(String::from)));
        assert_eq!(got, want, "{body:?}");
    }
}

#[test]
fn hand_picked_bodies() {
    let none = Some((None, None));
    check(&[
        ("{}", none),
        (" \t\r\n{ } \n", none),
        (
            r#"{"_metadata":{"triggerId":"idn:identity-created","invocationId":"i-1"},"x":1}"#,
            Some((Some("idn:identity-created"), Some("i-1"))),
        ),
        (r#"{"_metadata":null}"#, none),
        (
            r#"{"_metadata":{"triggerId":null,"invocationId":"i"}}"#,
            Some((None, Some("i"))),
        ),
        (
            r#"{"\u005fmetadata":{"trigger\u0049d":"idn:\u0061"}}"#,
            Some((Some("idn:a"), None)),
        ),
        (r#"{"a":"\ud800"}"#, none), // skipped strings: any \u escape, as serde_json
        (r#"{"_metadata":{"triggerId":"\ud800"}}"#, None), // a read id must decode
        (r#"{"\ud800":1}"#, None),   // a root key is read
        (
            r#"{"a":[1,-0,0.5,-1.5e10,2E+3,3e-2,true,false,null,{},[],{"b":[[{}]]}],"s":"q\"\\\/\b\f\n\r\t\u00e9 é"}"#,
            none,
        ),
        ("", None),
        ("[]", None),
        ("{", None),
        ("{} x", None),
        ("{}{}", None),
        (r#"{"a"}"#, None),
        (r#"{"a":}"#, None),
        (r#"{"a":1,}"#, None),
        (r#"{"a":[1,]}"#, None),
        (r#"{"a":[1 2]}"#, None),
        (r#"{"a":01}"#, None),
        (r#"{"a":1.}"#, None),
        (r#"{"a":1e}"#, None),
        (r#"{"a":-}"#, None),
        (r#"{"a":+1}"#, None),
        (r#"{"a":tru}"#, None),
        (r#"{"a":nul}"#, None),
        (r#"{"a":"\x"}"#, None),
        (r#"{"a":"\u12g4"}"#, None),
        ("{\"a\":\"tab\tin string\"}", None),
        ("{\"a\":\"\u{1}\"}", None),
        (r#"{"a":"unterminated}"#, None),
        (r#"{1:2}"#, None),
        (r#"{"_metadata":"x"}"#, None),
        (r#"{"_metadata":{"triggerId":1}}"#, None),
        (r#"{"_metadata":{},"_metadata":{}}"#, None),
        (r#"{"_metadata":{"triggerId":"a","triggerId":"b"}}"#, None),
        (r#"{"_metadata":["idn:x"]}"#, None), // serde's derive took this; the probe does not
    ]);
    // Nesting is not limited (serde_json's ignore path had no limit either).
    let deep = format!("{{\"a\":{}{}}}", "[".repeat(5000), "]".repeat(5000));
    check(&[(&deep, Some((None, None)))]);
}

/// JSON values of every kind, keys and strings drawn to hit the interesting bytes.
fn value() -> impl Strategy<Value = Value> {
    let text = || prop::string::string_regex(r#"[a-z_é"\\\u{1}\t/ ]{0,12}"#).unwrap();
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        (-1e300f64..1e300).prop_map(Value::from),
        text().prop_map(Value::String),
    ];
    leaf.prop_recursive(5, 64, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(text(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A root object, sometimes with a `_metadata` (ids strings or null), compact or pretty: always accepted.
fn body() -> impl Strategy<Value = String> {
    let id = prop_oneof![
        Just(Value::Null),
        "[a-z:\\-\"\\\\é]{0,20}".prop_map(Value::String),
    ];
    (
        prop::collection::btree_map("[a-z_]{1,8}", value(), 0..6),
        prop::option::of((prop::option::of(id.clone()), prop::option::of(id))),
        any::<bool>(),
    )
        .prop_map(|(fields, meta, pretty)| {
            let mut root: serde_json::Map<String, Value> = fields.into_iter().collect();
            if let Some((t, i)) = meta {
                let mut m = serde_json::Map::new();
                t.map(|t| m.insert("triggerId".into(), t));
                i.map(|i| m.insert("invocationId".into(), i));
                root.insert("_metadata".into(), Value::Object(m));
            }
            let root = Value::Object(root);
            if pretty {
                serde_json::to_string_pretty(&root).unwrap()
            } else {
                root.to_string()
            }
        })
}

/// Characters that matter to the grammar, for mutations.
const ALPHABET: &[char] = &[
    '"', '\\', '{', '}', '[', ']', ',', ':', 'u', '0', '1', '-', '+', 'e', '.', 'n', 't', ' ',
    '\n', '\u{1}', 'é', 'd', '8',
];

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn generated_bodies_agree(body in body()) {
        assert_agree(&body);
        prop_assert!(probe(&body).is_ok(), "{body}");
    }

    #[test]
    fn mutated_bodies_agree(
        body in body(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), 0usize..3, prop::sample::select(ALPHABET)), 1..4),
    ) {
        let mut chars: Vec<char> = body.chars().collect();
        for (at, kind, c) in edits {
            let i = at.index(chars.len() + 1);
            match kind {
                0 => chars.insert(i, c),
                1 if i < chars.len() => { chars.remove(i); }
                _ if i < chars.len() => chars[i] = c,
                _ => chars.truncate(i),
            }
        }
        let body: String = chars.into_iter().collect();
        assert_agree(&body);
    }
}

#[test]
fn an_isc_payload_is_read() {
    let body = json!({
        "identity": {"id": "2c91808568c529c60168cca6f90c1313", "name": "john.doe", "type": "IDENTITY"},
        "changes": [{"attribute": "department", "oldValue": "sales", "newValue": "marketing"}],
        "_metadata": {"triggerId": "idn:identity-attributes-changed", "triggerType": "FIRE_AND_FORGET",
                      "invocationId": "2f2a6b3c-0b47-4d5c-9e1b-6a7c1f3e9a11"}
    })
    .to_string();
    check(&[(
        &body,
        Some((
            Some("idn:identity-attributes-changed"),
            Some("2f2a6b3c-0b47-4d5c-9e1b-6a7c1f3e9a11"),
        )),
    )]);
}
