//! Fuzz the ingress's body probe (`trigger_relay::ingress::probe`: the one pass that checks a body is a JSON
//! object and reads `_metadata`) against serde_json's verdict on the same bytes
//! (`trigger_relay_testkit::probe_oracle`, shared with the probe's tests and `benches/probe.rs`): both refuse, or both accept with the
//! same ids. Also: no panic, no hang.
//!
//! Run: `scripts/fuzz 60 json_probe`.

#![no_main]

use libfuzzer_sys::fuzz_target;
use trigger_relay_testkit::probe_oracle;

fuzz_target!(|data: &[u8]| {
    if let Ok(body) = std::str::from_utf8(data) {
        probe_oracle::assert_agree(body);
    }
});
