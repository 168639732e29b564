//! Fuzz the set evaluator against the per-filter evaluator: the input is filters, one per line; a line that
//! is a repeat of an earlier one or empty (a route without a filter) makes the set share work. Each member's
//! verdict in the set, evaluated on the part of the payload the set reads (`FilterSet::parse`), must be its
//! filter's own verdict alone on the whole of the fixed ISC payload of the `filter` target, and so must its
//! verdict from `FilterSet::evaluate_body` (the router's way: the index alone on a borrowed parse where it can).
//!
//! Run (from this directory): `cargo fuzz run filter_set corpus/filter_set seeds/filter -- -dict=filter.dict -max_total_time=60`

#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use trigger_relay::filter::{EventBudget, Filter, FilterSet};

const PAYLOAD: &str = r#"{
  "identity": {"id": "ee769173319b41d19ccec6cea52f237b", "name": "john.doe", "type": "IDENTITY",
               "attributes": {"email": "john@example.com", "tags": ["a", "b"], "n": 5, "f": 2.5, "z": null}},
  "changes": [
    {"attribute": "department", "oldValue": "Sales", "newValue": "Marketing"},
    {"attribute": "cloudLifecycleState", "oldValue": "active", "newValue": "terminated"}
  ],
  "warnings": ["Account skipped"], "_metadata": {"triggerType": "fireAndForget", "invocationId": "x"}
}"#;

fn payload() -> &'static Value {
    static DOC: OnceLock<Value> = OnceLock::new();
    DOC.get_or_init(|| serde_json::from_str(PAYLOAD).expect("fuzz payload"))
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let doc = payload();
    // At most 50 members (ISC's subscriptions per trigger); lines that do not compile are left out.
    let members: Vec<Option<Filter>> = text
        .lines()
        .take(50)
        .filter_map(|l| {
            if l.trim().is_empty() {
                Some(None)
            } else {
                Filter::compile(l).ok().map(Some)
            }
        })
        .collect();
    let mut set = FilterSet::new();
    for m in &members {
        set.push(m.as_ref());
    }
    // The set on the part of the payload it reads (`FilterSet::parse`), each filter alone on the whole.
    let projected = set.parse(PAYLOAD.as_bytes()).expect("the payload parses");
    let verdicts = set.evaluate(
        &projected,
        &mut EventBudget::with_steps(u64::MAX / 4, set.distinct()),
    );
    // And as the router asks (`evaluate_body`: the index alone on a borrowed parse when it covers the set).
    let direct = set
        .evaluate_body(
            PAYLOAD.as_bytes(),
            &mut EventBudget::with_steps(u64::MAX / 4, set.distinct()),
        )
        .expect("the payload parses");
    for (i, m) in members.iter().enumerate() {
        let alone = m.as_ref().map(|f| f.evaluate(doc));
        assert_eq!(verdicts.get(i).cloned(), alone);
        assert_eq!(direct.get(i).cloned(), alone);
    }
});
