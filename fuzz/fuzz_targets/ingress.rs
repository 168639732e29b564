//! Fuzz the ingress from raw client bytes: the input is everything a client sends on one connection (request
//! line, headers, body, pipelined requests, an h2c preface...), served by hyper-util's auto builder (as
//! `server::serve` does) with the relay's own handler, auth, router, filters and bounded queues.
//! Must never panic, hang, or answer 500.
//!
//! The first byte picks the state: even = `[ingress.auth] none = true`, odd = a bearer token and a basic
//! credential (`fuzz-token`, `isc:fuzz-pw`, in the dictionary).
//!
//! Run: `scripts/fuzz 60 ingress` (or from fuzz/: `cargo fuzz run ingress corpus/ingress seeds/ingress --
//! -dict=http.dict`).

#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&pick, input)) = data.split_first() else {
        return;
    };
    let h = common::harness();
    let state = if pick % 2 == 0 { &h.open } else { &h.closed };
    let out = common::exchange(state, input, true);
    for s in common::statuses(&out) {
        assert!(
            s != 500,
            "the ingress answered 500:\n{}",
            String::from_utf8_lossy(&out)
        );
    }
});
