//! Fuzz the ingress's body probe (`trigger_relay::ingress::probe`: the one pass that checks a body is a JSON
//! object and reads `_metadata`) against serde_json's verdict on the same bytes
//! (`tests/it/support/probe_oracle.rs`, shared with `tests/it/probe.rs`): both refuse, or both accept with the
//! same ids. Also: no panic, no hang.
//!
//! Run: `scripts/fuzz 60 json_probe`.

#![no_main]

#[path = "../../tests/it/support/probe_oracle.rs"]
mod probe_oracle;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(body) = std::str::from_utf8(data) {
        probe_oracle::assert_agree(body);
    }
});
