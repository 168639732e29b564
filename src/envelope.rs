//! What a message carries besides the payload: the relay's headers, the W3C trace context and, when a
//! subscription asks for it, a CloudEvents 1.0 envelope. Every sink that writes headers (Kafka, NATS, HTTP, and
//! the dead letters) takes them from [`headers`] and its body from [`payload`], so a header is added in one
//! place and every bus carries the same set.
//!
//! Invariants:
//! - In `none` and `cloudevents-binary` mode the body is the request's bytes, untouched: the envelope lives in
//!   headers only (`ce_` on Kafka, `ce-` on HTTP and NATS, following each protocol binding).
//! - In `cloudevents-structured` mode the received bytes are spliced into the envelope as `data` as they are
//!   (the ingress's probe has checked them as one JSON object), not parsed and re-encoded. The envelope is
//!   built once per event and cached on it (one per distinct source/subject setting, so at most one per route),
//!   not once per subscription.
//! - The trace context is always present: taken from a valid `traceparent` on the ingress, else started by the
//!   relay with the tracking id as its trace id (so the id in the logs and the id in a trace viewer are one).
//!
//! Why not the `cloudevents-sdk` crate: its `Event` holds `data` as a parsed `serde_json::Value` (a tree per
//! event, and the payload re-encoded with serde's formatting in structured mode), and its binding features
//! come with their own Kafka/NATS/HTTP client versions. The envelope is seven fixed attributes and two
//! extensions; the hand-written part is the header names per binding and RFC 3986 percent-encoding, and the
//! tests hold it to the CloudEvents Python SDK's decoders.

use std::borrow::Cow;
use std::sync::Arc;

use bytes::Bytes;

use serde::{Deserialize, Serialize};

use crate::model::{Envelope, Subscription};
use crate::pipeline::CloudEvents;
use crate::pipeline::{Delivery, Event};

/// The wire a message is written to (the protocol bindings name and encode headers differently).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Binding {
    Kafka,
    Nats,
    Http,
}

/// The CloudEvents `type` of a trigger: `com.sailpoint.` and the trigger id with `:` as `.`
/// (`idn:identity-created` → `com.sailpoint.idn.identity-created`): reverse-DNS, as the spec recommends, and
/// reversible.
pub fn event_type(trigger_id: &str) -> String {
    format!("com.sailpoint.{}", trigger_id.replace(':', "."))
}

/// `[cloudevents]`: what subscriptions with a CloudEvents envelope use when they do not say.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CloudEventsDefaults {
    /// `source` of subscriptions whose `cloudEvents.source` is not set; set it to your tenant's URL
    /// (`https://acme.api.identitynow.com`). Default: [`DEFAULT_SOURCE`].
    #[serde(default)]
    pub source: Option<String>,
}

/// The `source` when neither the subscription nor `[cloudevents]` names one (EventBridge entries' default too).
pub const DEFAULT_SOURCE: &str = "sailpoint.isc";

/// Longest `source` accepted (bytes).
const MAX_SOURCE: usize = 1024;
/// Longest `subject` pointer accepted (bytes).
const MAX_SUBJECT_POINTER: usize = 256;

/// Why a `source` cannot be used, if it cannot.
pub fn check_source(source: &str) -> Option<String> {
    if source.is_empty() {
        Some("must not be empty (a URI-reference such as https://acme.api.identitynow.com)".into())
    } else if source.len() > MAX_SOURCE {
        Some(format!("is longer than {MAX_SOURCE} bytes"))
    } else if source.chars().any(char::is_control) {
        Some("must not contain control characters".into())
    } else {
        None
    }
}

/// A subscription's envelope settings that cannot work, as `(key under the subscription, message)`. `wraps`:
/// whether its sink kind puts its messages in a CloudEvents envelope (`SinkKind::wraps_cloudevents`).
pub fn check(s: &Subscription, wraps: bool) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    if !s.envelope.is_none() && !wraps {
        out.push((
            "envelope",
            format!(
                "a CloudEvents envelope applies to KAFKA, NATS and HTTP subscriptions, not {} (EVENTBRIDGE entries have their own envelope)",
                s.kind.as_str()
            ),
        ));
    }
    if let Some(c) = &s.cloud_events {
        if s.envelope.is_none() {
            out.push((
                "cloudEvents",
                "is used only with envelope = \"cloudevents-binary\" or \"cloudevents-structured\""
                    .into(),
            ));
        }
        if let Some(m) = c.source.as_deref().and_then(check_source) {
            out.push(("cloudEvents.source", m));
        }
        if let Some(p) = &c.subject {
            let bad_escape = p
                .split('~')
                .skip(1)
                .any(|rest| !(rest.starts_with('0') || rest.starts_with('1')));
            if !p.starts_with('/') || bad_escape {
                out.push((
                    "cloudEvents.subject",
                    format!("`{p}` is not a JSON pointer (RFC 6901) such as \"/identity/id\""),
                ));
            } else if p.len() > MAX_SUBJECT_POINTER {
                out.push((
                    "cloudEvents.subject",
                    format!("is longer than {MAX_SUBJECT_POINTER} bytes"),
                ));
            }
        }
    }
    out
}

/// The route's CloudEvents settings for `s`, or `None` without an envelope.
pub fn resolve(s: &Subscription, defaults: &CloudEventsDefaults) -> Option<Arc<CloudEvents>> {
    let structured = match s.envelope {
        Envelope::None => return None,
        Envelope::CloudeventsBinary => false,
        Envelope::CloudeventsStructured => true,
    };
    let c = s.cloud_events.as_ref();
    let source = c
        .and_then(|c| c.source.as_deref())
        .or(defaults.source.as_deref())
        .unwrap_or(DEFAULT_SOURCE);
    Some(Arc::new(CloudEvents {
        structured,
        source: source.into(),
        kind: event_type(&s.trigger_id).into(),
        subject: c.and_then(|c| c.subject.as_deref()).map(Into::into),
    }))
}

pub const STRUCTURED_CONTENT_TYPE: &str = "application/cloudevents+json; charset=UTF-8";

pub use crate::pipeline::TraceContext;

/// One header: a fixed name and its value (borrowed from the event where it can be).
pub type Header<'a> = (&'static str, Cow<'a, str>);

/// CloudEvents attribute header names, per binding: Kafka's `ce_`, HTTP's and NATS's `ce-`.
struct Names {
    specversion: &'static str,
    id: &'static str,
    source: &'static str,
    kind: &'static str,
    time: &'static str,
    subject: &'static str,
    traceparent: &'static str,
    tracestate: &'static str,
}

const KAFKA_NAMES: Names = Names {
    specversion: "ce_specversion",
    id: "ce_id",
    source: "ce_source",
    kind: "ce_type",
    time: "ce_time",
    subject: "ce_subject",
    traceparent: "ce_traceparent",
    tracestate: "ce_tracestate",
};

const DASH_NAMES: Names = Names {
    specversion: "ce-specversion",
    id: "ce-id",
    source: "ce-source",
    kind: "ce-type",
    time: "ce-time",
    subject: "ce-subject",
    traceparent: "ce-traceparent",
    tracestate: "ce-tracestate",
};

/// The headers of `d` on `binding`: the relay's own (`trigger-id`, `subscription-id`, `content-type`,
/// `invocation-id`, `test`, `replay` and `replay-of`), the W3C trace context, and the CloudEvents attributes in binary mode.
pub fn headers<'a>(d: &'a Delivery, binding: Binding) -> Vec<Header<'a>> {
    let e = d.event();
    let ce = d.route().envelope.as_deref();
    let mut h: Vec<Header<'_>> = Vec::with_capacity(
        if ce.is_some() { 16 } else { 7 } + if e.replay_of.is_some() { 2 } else { 0 },
    );
    // Kafka header values are bytes; HTTP and NATS values must be printable ASCII (an odd id is
    // percent-encoded rather than breaking the request).
    let enc = |v: &'a str| match binding {
        Binding::Kafka => Cow::Borrowed(v),
        Binding::Nats | Binding::Http => percent_encode(Cow::Borrowed(v)),
    };
    h.push(("trigger-id", enc(&e.trigger_id)));
    h.push(("subscription-id", enc(&d.route().subscription_id)));
    let structured = ce.is_some_and(|c| c.structured);
    h.push((
        "content-type",
        Cow::Borrowed(if structured {
            STRUCTURED_CONTENT_TYPE
        } else {
            "application/json"
        }),
    ));
    if let Some(id) = &e.invocation_id {
        h.push(("invocation-id", enc(id)));
    }
    if e.test.is_some() {
        h.push(("test", Cow::Borrowed("true")));
    }
    // `trigger-relay replay`: a consumer tells a replay from the first delivery, and finds the original's
    // tracking id (the one in the relay's logs and in the dead letter's `tracking-id`).
    if let Some(of) = &e.replay_of {
        h.push(("replay", Cow::Borrowed("true")));
        h.push(("replay-of", enc(of)));
    }
    // The message's parent is its `publish` span while spans are exported, else the caller's span.
    let traceparent = e
        .trace
        .traceparent_with(d.span.map_or(e.trace.parent_id, |s| s.id));
    if let Some(s) = &e.trace.state {
        h.push(("tracestate", Cow::Borrowed(&**s)));
    }
    match ce {
        Some(c) if !c.structured => {
            let names = match binding {
                Binding::Kafka => &KAFKA_NAMES,
                Binding::Nats | Binding::Http => &DASH_NAMES,
            };
            let enc = |v: Cow<'static, str>| match binding {
                Binding::Kafka => v,
                Binding::Nats | Binding::Http => percent_encode(v),
            };
            h.push((names.specversion, Cow::Borrowed("1.0")));
            h.push((names.id, enc(Cow::Owned(ce_id(e)))));
            h.push((names.source, enc(Cow::Owned(c.source.to_string()))));
            h.push((names.kind, enc(Cow::Owned(c.kind.to_string()))));
            h.push((names.time, enc(Cow::Owned(ce_time(e)))));
            if binding == Binding::Nats {
                // NATS's binding maps datacontenttype to its own header; Content-Type says structured or not.
                h.push(("ce-datacontenttype", Cow::Borrowed("application/json")));
            }
            if let Some(subject) = c.subject.as_deref().and_then(|p| ce_subject(e, p)) {
                h.push((names.subject, enc(Cow::Owned(subject))));
            }
            h.push((names.traceparent, Cow::Owned(event_traceparent(e))));
            if let Some(s) = &e.trace.state {
                h.push((names.tracestate, enc(Cow::Owned(s.to_string()))));
            }
        }
        _ => {}
    }
    h.push(("traceparent", Cow::Owned(traceparent)));
    h
}

/// The body of `d`'s message: the request's bytes, or in structured mode the CloudEvents JSON envelope.
pub fn payload(d: &Delivery) -> Bytes {
    if let Some(sent) = &d.sent {
        // Given back by the sink after it released the event's body (see `Delivery::restore_body`).
        return sent.clone();
    }
    match &d.route().envelope {
        Some(c) if c.structured => d
            .event()
            .structured_envelope(c, || structured(d.event(), c)),
        _ => d.event().body.clone(),
    }
}

/// The CloudEvents tracing extension's `traceparent`: the event's context (its `ingress` span while spans are
/// exported), the same for every subscription, so a structured envelope is built once per event.
fn event_traceparent(e: &Event) -> String {
    e.trace
        .traceparent_with(e.span_id.unwrap_or(e.trace.parent_id))
}

/// `id` must be a non-empty string: an empty `invocationId` counts as none.
fn ce_id(e: &Event) -> String {
    e.invocation_id
        .as_deref()
        .filter(|id| !id.is_empty())
        .map_or_else(|| e.tracking_id.to_string(), str::to_string)
}

fn ce_time(e: &Event) -> String {
    humantime::format_rfc3339_micros(e.received_at).to_string()
}

fn ce_subject(e: &Event, pointer: &str) -> Option<String> {
    // `subject` must not be empty when present: an empty value gives none.
    e.json()?
        .pointer(pointer)
        .map(|v| match v {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        })
        .filter(|s| !s.is_empty())
}

/// The structured-mode envelope of `e`: attributes first, then the payload bytes as `data`.
fn structured(e: &Event, c: &CloudEvents) -> Bytes {
    let text = |s: &str| serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into());
    let mut out = Vec::with_capacity(e.body.len() + 320);
    out.extend_from_slice(b"{\"specversion\":\"1.0\",\"id\":");
    out.extend_from_slice(text(&ce_id(e)).as_bytes());
    out.extend_from_slice(b",\"source\":");
    out.extend_from_slice(text(&c.source).as_bytes());
    out.extend_from_slice(b",\"type\":");
    out.extend_from_slice(text(&c.kind).as_bytes());
    out.extend_from_slice(b",\"time\":");
    out.extend_from_slice(text(&ce_time(e)).as_bytes());
    out.extend_from_slice(b",\"datacontenttype\":\"application/json\"");
    if let Some(subject) = c.subject.as_deref().and_then(|p| ce_subject(e, p)) {
        out.extend_from_slice(b",\"subject\":");
        out.extend_from_slice(text(&subject).as_bytes());
    }
    out.extend_from_slice(b",\"traceparent\":");
    out.extend_from_slice(text(&event_traceparent(e)).as_bytes());
    if let Some(s) = &e.trace.state {
        out.extend_from_slice(b",\"tracestate\":");
        out.extend_from_slice(text(s).as_bytes());
    }
    out.extend_from_slice(b",\"data\":");
    out.extend_from_slice(e.body.trim_ascii());
    out.push(b'}');
    Bytes::from(out)
}

/// The HTTP binding's header value encoding (also NATS's): every byte outside printable ASCII, space, `"` and
/// `%` as `%XX` of its UTF-8 bytes.
fn percent_encode<'a>(v: Cow<'a, str>) -> Cow<'a, str> {
    let keep = |b: u8| (0x21..=0x7e).contains(&b) && b != b'"' && b != b'%';
    if v.bytes().all(keep) {
        return v;
    }
    let mut out = String::with_capacity(v.len() * 3);
    for b in v.bytes() {
        if keep(b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::TrackingId;

    fn check(traceparent: &str, valid: bool) {
        let t = TraceContext::from_headers(
            Some(traceparent.as_bytes()),
            std::iter::once(&b"vendor=1"[..]),
        );
        assert_eq!(t.is_some(), valid, "{traceparent}");
        if let Some(t) = t {
            assert_eq!(t.traceparent(), traceparent);
            assert_eq!(t.state.as_deref(), Some("vendor=1"));
        }
    }

    #[test]
    fn traceparent_is_taken_only_when_valid() {
        check(
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            true,
        );
        check(
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00",
            true,
        );
        for bad in [
            "",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-600f067aa0ba902b7-01",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0é",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01é",
            "é1-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            check(bad, false);
        }
    }

    #[test]
    fn a_new_trace_uses_the_tracking_id() {
        let id = TrackingId::new();
        assert!(TraceContext::from_headers(None, std::iter::empty()).is_none());
        let t = TraceContext::start(id);
        assert_eq!(t.trace_id_hex().to_string(), id.to_string());
        assert_eq!(
            t.flags, 0,
            "nothing records it while spans are not exported"
        );
        assert_ne!(t.parent_id, 0);
    }

    #[test]
    fn tracestate_keeps_the_members_that_fit_and_flags_only_sampled() {
        let tp = b"cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-ff-more";
        let long = format!("a={}", "x".repeat(300));
        let states = [&b"x=1, y=2"[..], long.as_bytes(), b"z=3"];
        let t = TraceContext::from_headers(Some(&tp[..]), states.into_iter()).unwrap();
        assert_eq!(t.flags, 1);
        assert!(t.traceparent().ends_with("-01"));
        let kept = t.state.as_deref().unwrap();
        assert!(kept.starts_with("x=1,y=2,a=x"), "{kept}");
        assert!(kept.len() <= 512);
        let many: Vec<String> = (0..40).map(|i| format!("k{i}=v")).collect();
        let joined = many.join(",");
        let t =
            TraceContext::from_headers(Some(&tp[..]), std::iter::once(joined.as_bytes())).unwrap();
        assert_eq!(t.state.unwrap().split(',').count(), 32);
    }

    #[test]
    fn xray_header_splits_the_trace_id() {
        let t = TraceContext {
            trace_id: 0x5759e988bd862e3fe1be46a994272793,
            parent_id: 0x53995c3f42cd8ad8,
            flags: 1,
            state: None,
            remote: true,
        };
        assert_eq!(
            t.xray(),
            "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"
        );
    }

    #[test]
    fn header_values_are_percent_encoded_for_http_and_nats() {
        assert_eq!(percent_encode("urn:a/b".into()), "urn:a/b");
        assert_eq!(percent_encode("a b\"%é".into()), "a%20b%22%25%C3%A9");
    }

    #[test]
    fn event_types_follow_the_trigger_id() {
        assert_eq!(
            event_type("idn:identity-created"),
            "com.sailpoint.idn.identity-created"
        );
    }
}
