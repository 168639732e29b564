//! Fuzz the filters' projecting parse (`Needs::parse`, `src/filter/needs.rs`) against serde_json's whole parse
//! of the same bytes. The input's first line is a filter, the rest a body. Both must refuse the body with the
//! same message, or both read it and the filter must give the same verdict on what it read as on the whole.
//! Also: no panic, no hang.
//!
//! Run: `scripts/fuzz 60 filter_projection` (seeds: `seeds/json_probe`, bodies after a first line).

#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use trigger_relay::filter::{Filter, Needs};

fuzz_target!(|data: &[u8]| {
    let (first, body) = match data.iter().position(|&b| b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (&b"$.changes[?(@.attribute == 'a')]"[..], data),
    };
    let Ok(Ok(filter)) = std::str::from_utf8(first).map(Filter::compile) else {
        return;
    };
    let needs = Needs::of(&filter);
    let whole = serde_json::from_slice::<Value>(body);
    let projected = needs.parse(body);
    match (&whole, &projected) {
        (Err(w), Err(p)) => assert_eq!(w.to_string(), p.to_string()),
        (Ok(w), Ok(p)) => assert_eq!(filter.evaluate(p), filter.evaluate(w), "read as {p}"),
        _ => panic!("whole {whole:?}, projected {projected:?}"),
    }
});
