//! The integration tests: one test binary (`cargo test --test it`), one module per area (each was its own
//! binary in `tests/`, and each of those linked the relay, rdkafka and the AWS SDK again). Run one area with a
//! path filter: `cargo test --test it kafka::` (or `scripts/test kafka::`).
//!
//! All modules share one process, so a test must not change process-wide state other tests can see: no
//! `std::env::set_var` (pass variables to child processes with `Command::env`), no `set_current_dir`, no fixed
//! ports (`127.0.0.1:0` or `support::free_port`), and brokers a test stops are its own (`support::PrivateKafka`,
//! `support::PrivateNats`). What is process-wide by nature:
//!
//! - the log subscriber: `support::start` installs it once, always with the same config;
//! - SIGHUP: `listener::certificates_reload_on_change_and_on_sighup_without_dropping_connections` sends one to this
//!   process; it reloads the certificates of every relay in it with a TLS listener, and only `listener::` tests
//!   start those (none of them counts successful reloads exactly);
//! - the machine: tests that measure under load hold [`support::MEASURED`], so they do not overlap each other.

mod support;

mod api;
mod config;
mod dead_letters;
mod deploy;
/// CloudEvents envelopes and trace context on every bus (dead letters among them).
mod envelopes;
mod eventbridge;
mod fuzz_regressions;
mod http;
mod ingress;
mod isc;
mod isolation;
mod kafka;
mod kafka_faults;
mod listener;
mod load_harness;
mod monitoring;
mod nats;
mod nats_auth;
mod rate_limit;
mod reliability;
mod replay;
mod sdk;
mod secrets;
mod shutdown;
mod soak;
