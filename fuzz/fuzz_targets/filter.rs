//! Fuzz the filter engine: compile arbitrary UTF-8 as a filter, evaluate it
//! on a fixed ISC payload and validate it. Must never panic, hang or blow
//! the stack.
//!
//! Run (from this directory; new inputs go to corpus/filter, seeds/ is read):
//! `cargo fuzz run filter corpus/filter seeds/filter -- -dict=filter.dict -max_total_time=60`

#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use trigger_relay::filter::{validate, Filter};

const PAYLOAD: &str = r#"{
  "identity": {"id": "ee769173319b41d19ccec6cea52f237b", "name": "john.doe", "type": "IDENTITY",
               "attributes": {"email": "john@example.com", "tags": ["a", "b"], "n": 5, "f": 2.5, "z": null}},
  "changes": [
    {"attribute": "department", "oldValue": "Sales", "newValue": "Marketing"},
    {"attribute": "manager",
     "oldValue": {"id": "ee769173319b41d19ccec6c235423237b", "name": "robert.brown", "type": "IDENTITY"},
     "newValue": {"id": "ee769173319b41d19ccec6c235423236c", "name": "mary.johnson", "type": "IDENTITY"}},
    {"attribute": "cloudLifecycleState", "oldValue": "active", "newValue": "terminated"}
  ],
  "warnings": ["Account skipped"], "matrix": [[1, 2], [3, "4"]], "paths": ["$.a", "@", "[1]", "'q'"],
  "unicode": "Zoë 😀", "_metadata": {"triggerType": "fireAndForget", "invocationId": "x"}
}"#;

fn payload() -> &'static Value {
    static DOC: OnceLock<Value> = OnceLock::new();
    DOC.get_or_init(|| serde_json::from_str(PAYLOAD).expect("fuzz payload"))
}

fuzz_target!(|data: &[u8]| {
    let Ok(expr) = std::str::from_utf8(data) else {
        return;
    };
    let doc = payload();
    match Filter::compile(expr) {
        Ok(f) => {
            let r = f.evaluate(doc).unwrap_or(false);
            assert_eq!(f.matches(doc), r);
            let v = validate(expr, doc);
            assert!(v.is_valid_json_path);
            assert_eq!(v.is_valid, r);
        }
        Err(e) => {
            assert!(e.position <= expr.chars().count());
            assert!(!validate(expr, doc).is_valid_json_path);
        }
    }
});
