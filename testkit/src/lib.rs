//! Dev-only code that more than one of trigger-relay's test targets needs: the integration tests
//! (`tests/it`), the library's unit tests, the benches (`benches/`) and the fuzz targets (`fuzz/`). It exists so they share modules by a
//! dependency instead of including each other's files by `#[path]`; nothing here is part of the relay, and the
//! relay's own build never compiles it (it is a dev-dependency only).
//!
//! - [`payloads`]: ISC's example invocations grown to 0.5–8 KB, and the filter sets of the filter benches.
//! - [`load`]: the load harness (`cargo bench --bench load`; short mode in `tests/it/load_harness.rs`).
//! - [`probe_oracle`]: serde_json's verdict that the ingress's body probe is held to.
//! - [`secrets`]: a config holding every kind of secret, and the check that a text shows none of them.
//! - [`toml`]: the parts (a sink, a subscription, a token) tests write configs from.

// `unsafe` only in `load`, for four libc calls a bench needs (pin a thread to a core, read a thread's CPU
// time, the clock tick, signal the relay's process), each with its SAFETY note; the relay itself forbids it.
#![deny(unsafe_op_in_unsafe_fn)]

pub mod load;
pub mod payloads;
pub mod probe_oracle;
pub mod secrets;
pub mod toml;
