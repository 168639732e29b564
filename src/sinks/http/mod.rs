//! The HTTP webhook sink (`HTTP` subscriptions, ISC's `httpConfig`): the relay calls a webhook the way ISC
//! calls a subscriber — a POST of the exact payload with `Content-Type: application/json` and the
//! subscription's `Authorization` (NO_AUTH, BASIC_AUTH, BEARER_TOKEN) — so an endpoint written for ISC works
//! behind the relay unchanged.
//!
//! One keep-alive pool (HTTP/1.1, HTTP/2 by ALPN, rustls with the system's roots) serves every webhook.
//! Each attempt is bounded by `request_timeout_ms`; connection errors, timeouts, 408, 429 and 5xx are retried
//! with exponential backoff (at least the server's `Retry-After`, at most `max_retry_after_ms`) until
//! `delivery_timeout_ms`; any other answer is final (413 as `too_large`, other 4xx as `rejected`).
//! `httpDispatchMode` SYNC is what a FIRE_AND_FORGET delivery is; ASYNC and DYNAMIC parse (the model is
//! ISC's) but config validation refuses them: they exist for REQUEST_RESPONSE triggers.

mod config;
mod kind;
mod sink;

pub(crate) use kind::Kind;

pub(crate) use config::check_subscription;
pub mod egress;

pub use config::{target, HttpSinkConfig};
pub use egress::{EgressConfig, EgressPolicy, EgressRefused, EgressResolver};
pub use sink::HttpSink;
