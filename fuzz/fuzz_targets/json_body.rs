//! Fuzz the JSON body path: the input is the body of a well-formed `POST` (right content type and length, no
//! auth needed), so every execution reaches the object check, the `_metadata` probe (trigger id, invocation
//! id), the trigger lookup, filter evaluation and the queue reservation. The first byte picks the path:
//! `/events` (trigger from `_metadata.triggerId`), or one of three routed triggers (plain, filtered on the
//! changes array, filtered at the root).
//!
//! Checked: no panic, no hang; a 200 only for a body that is a JSON object; on `/events` a 200 only when
//! `_metadata.triggerId` is a string; never 500.
//!
//! Run: `scripts/fuzz 60 json_body`.

#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;

const PATHS: [&str; 4] = [
    "/events",
    "/events/idn:identity-created",
    "/events/idn:identity-attributes-changed",
    "/events/idn%3Aidentity-deleted",
];

fuzz_target!(|data: &[u8]| {
    let Some((&pick, body)) = data.split_first() else {
        return;
    };
    let path = PATHS[pick as usize % PATHS.len()];
    let mut req = format!(
        "POST {path} HTTP/1.1\r\nhost: relay\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(body);
    let out = common::exchange(&common::harness().open, &req, false);
    let statuses = common::statuses(&out);
    let text = String::from_utf8_lossy(&out);
    assert_eq!(statuses.len(), 1, "one answer to one request:\n{text}");
    let status = statuses[0];
    assert!(status != 500, "500:\n{text}");
    if status == 200 {
        let v: serde_json::Value = serde_json::from_slice(body)
            .unwrap_or_else(|e| panic!("200 for a body that is not JSON ({e})"));
        assert!(v.is_object(), "200 for a body that is not an object");
        if path == "/events" {
            assert!(
                v["_metadata"]["triggerId"].is_string(),
                "200 on /events without _metadata.triggerId"
            );
        }
    }
});
