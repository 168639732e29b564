//! The verdict the ingress's body probe (`trigger_relay::ingress::probe`) is held to: what serde_json decided
//! before the probe replaced it (`IgnoredAny` into a borrowed struct), for the same bodies. Used by the probe's
//! unit tests (`src/ingress/probe.rs`), `benches/probe.rs` and the `json_probe` fuzz target.

use std::borrow::Cow;

use serde::Deserialize;
use trigger_relay::ingress::probe::probe;

#[derive(Deserialize)]
struct Probe<'a> {
    #[serde(rename = "_metadata", borrow, default)]
    metadata: Option<Meta<'a>>,
}

#[derive(Deserialize)]
struct Meta<'a> {
    #[serde(rename = "triggerId", borrow, default)]
    trigger_id: Option<Cow<'a, str>>,
    #[serde(rename = "invocationId", borrow, default)]
    invocation_id: Option<Cow<'a, str>>,
}

/// `(triggerId, invocationId)` of an accepted body.
pub type Ids = (Option<String>, Option<String>);

/// serde_json's verdict: the ids of an accepted body (the ingress also wanted a `{` first).
pub fn serde_verdict(body: &str) -> Result<Ids, String> {
    if !body
        .trim_start_matches([' ', '\t', '\n', '\r'])
        .starts_with('{')
    {
        return Err("not an object".into());
    }
    let p: Probe<'_> = serde_json::from_str(body).map_err(|e| e.to_string())?;
    let m = p.metadata.map_or((None, None), |m| {
        (
            m.trigger_id.map(Cow::into_owned),
            m.invocation_id.map(Cow::into_owned),
        )
    });
    Ok(m)
}

/// Panics unless the relay's probe and serde_json agree on `body` (see [`assert_agrees_with`]).
pub fn assert_agree(body: &str) {
    let ours = probe(body);
    assert_agrees_with(
        body,
        ours.map(|m| {
            (
                m.trigger_id.map(Cow::into_owned),
                m.invocation_id.map(Cow::into_owned),
            )
        })
        .map_err(|e| (e.what.to_string(), e.offset)),
    );
}

/// Panics unless `ours` (a probe's verdict: the ids, or what it refused and at which offset) and serde_json
/// agree on `body`: both refuse it, or both accept it with the same ids. One difference is by design: serde's
/// derive also took `_metadata` as an array (its fields in order); the probe wants an object. The probe's own
/// unit tests call this with their build of the probe.
pub fn assert_agrees_with(body: &str, ours: Result<Ids, (String, usize)>) {
    match (ours, serde_verdict(body)) {
        (Ok(m), Ok(ids)) => assert_eq!(m, ids, "different ids for {body:?}"),
        (Err(_), Err(_)) => {}
        (Ok(_), Err(e)) => panic!("the probe accepted {body:?}; serde_json refused it: {e}"),
        (Err((what, offset)), Ok(_)) => assert!(
            what == "`_metadata` must be an object" && body.as_bytes().get(offset) == Some(&b'['),
            "the probe refused {body:?} ({what} at byte {offset}); serde_json accepted it"
        ),
    }
}
