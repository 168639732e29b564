//! trigger-relay: a subscriber for SailPoint Identity Security Cloud event triggers that republishes each
//! invocation, per subscription, to the platform team's own bus.
//!
//! Data flows one way: [`ingress`] (HTTP, auth) → [`router`] (trigger id, filters) → per-sink bounded
//! [`pipeline::queue`] → sink worker (batching + send, [`sinks`]) → ack. [`relay::Relay`] wires it together; the binary
//! in `main.rs` only parses arguments and calls [`relay::Relay::start`], and so do the tests.
#![forbid(unsafe_code)]

pub(crate) mod admin;
pub mod api;
pub mod catalog;
pub mod config;
pub(crate) mod envelope;
pub(crate) mod error;
pub mod filter;
pub mod ingress;
pub mod isc;
pub(crate) mod json;
pub(crate) mod keypath;
pub mod model;
pub mod pipeline;
pub(crate) mod ratelimit;
pub mod relay;
pub mod replay;
pub mod router;
pub(crate) mod routes;
pub(crate) mod server;
pub mod sinks;
pub(crate) mod spans;
pub(crate) mod status;
pub mod telemetry;
pub(crate) mod tls;

#[cfg(test)]
mod layering;

pub use config::Config;
pub use relay::{Relay, ShutdownReport};
