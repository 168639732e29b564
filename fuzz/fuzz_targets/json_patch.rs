//! Fuzz JSON Patch on subscriptions: the input is the body of a `PATCH /trigger-subscriptions/{id}`
//! (`application/json-patch+json`), applied by `trigger_relay::api::apply_patch`, the function the API's PATCH
//! handler calls (op and field checks, `json_patch`, parsing the result, the id/triggerId rule, write-only
//! secrets, every config check). What the handler does after it (count per trigger, route, store) needs a
//! running server and is not fuzzed here.
//!
//! The first byte picks the current subscription: HTTP with basic auth and a filter, HTTP with a bearer token,
//! Kafka with a dead letter, NATS (JetStream), EventBridge, DISCARD.
//!
//! Checked: no panic, no hang; an Ok result keeps the id and triggerId and passes the config checks again;
//! an error is never a server error. Once, at start: the empty patch `[]` gives back each subscription unchanged
//! (secrets included).
//!
//! Run: `scripts/fuzz 60 json_patch`.

#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use trigger_relay::api::apply_patch;
use trigger_relay::Config;

/// The current subscriptions (shared with `src/api/patch/tests.rs`).
const CONFIG: &str = include_str!("../../tests/fixtures/json_patch.toml");

fn config() -> &'static Config {
    static C: OnceLock<Config> = OnceLock::new();
    C.get_or_init(|| {
        let c = Config::from_toml_with_env(CONFIG, |_| None)
            .unwrap_or_else(|e| panic!("the fuzz config is not valid: {e}"));
        for s in &c.subscriptions {
            let same = apply_patch(&c, s, b"[]")
                .unwrap_or_else(|e| panic!("`[]` on {}: {} {:?}", s.name, e.message, e.causes));
            assert_eq!(&same, s, "the empty patch changed {}", s.name);
        }
        c
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, body)) = data.split_first() else {
        return;
    };
    let c = config();
    let old = &c.subscriptions[pick as usize % c.subscriptions.len()];
    match apply_patch(c, old, body) {
        Ok(new) => {
            assert_eq!(new.id, old.id, "the id changed");
            assert_eq!(new.trigger_id, old.trigger_id, "the triggerId changed");
            let problems = c.check_subscription("", &new);
            assert!(problems.is_empty(), "accepted but not valid: {problems:?}");
        }
        Err(e) => {
            assert!(
                e.status.is_client_error(),
                "{}: {} {:?}",
                e.status,
                e.message,
                e.causes
            );
        }
    }
});
