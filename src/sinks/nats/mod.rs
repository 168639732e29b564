//! The NATS sink (`NATS` subscriptions): one async-nats connection per `[sinks.nats.NAME]`, shared by every
//! subscription that names it.
//!
//! Core NATS: a batch taken from the queue is published and then flushed once (no flush per event); a flushed
//! publish counts as sent. Core NATS is at-most-once: if no subscriber listens, nobody keeps the event.
//! JetStream: the stream acknowledges each event. Acks are awaited concurrently, at most `max_in_flight` at a
//! time, and `Nats-Msg-Id` is the ISC invocation id, so a retry (or a replay) is dropped by the stream's
//! duplicate window. Retries with backoff go on until `delivery_timeout_ms`.

mod config;
mod kind;
mod sink;

pub(crate) use kind::check_config;
pub(crate) use kind::Kind;

pub use config::{render_subject, NatsConnectionConfig};
pub use sink::NatsSink;
