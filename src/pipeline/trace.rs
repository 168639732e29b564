//! W3C trace context of one event: the caller's `traceparent`/`tracestate` read once at the ingress, or a
//! trace the relay starts (its trace id is the event's tracking id). `envelope` writes it onto every message.

use crate::error::TrackingId;

/// Most bytes of `tracestate` kept (W3C: 512 is what a vendor must be able to propagate).
const MAX_TRACESTATE: usize = 512;
/// Most `tracestate` list members kept (W3C's limit).
const MAX_TRACESTATE_MEMBERS: usize = 32;

/// W3C trace context of one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceContext {
    pub trace_id: u128,
    pub parent_id: u64,
    pub flags: u8,
    pub state: Option<Box<str>>,
    /// Taken from the caller (else started by the relay, and `parent_id` names no span anyone exported).
    pub remote: bool,
}

impl TraceContext {
    /// A new trace for an event that arrived without one: its trace id is the tracking id. Not sampled: nothing
    /// records it unless span export is on (the ingress then marks it sampled).
    pub fn start(tracking: TrackingId) -> Self {
        let parent_id = (uuid::Uuid::new_v4().as_u64_pair().0) | 1;
        Self {
            trace_id: tracking.as_u128(),
            parent_id,
            flags: 0,
            state: None,
            remote: false,
        }
    }

    /// The caller's trace from a request's headers (see [`TraceContext::from_headers`]). The names are parsed
    /// once (a `&str` lookup parses its name on every request: ~600 instructions, a tenth of what the relay
    /// added per event at first), and `tracestate` is looked up only after a valid `traceparent`.
    pub fn from_request(h: &http::HeaderMap) -> Option<Self> {
        static TRACEPARENT: http::HeaderName = http::HeaderName::from_static("traceparent");
        static TRACESTATE: http::HeaderName = http::HeaderName::from_static("tracestate");
        let tp = h.get(&TRACEPARENT)?;
        Self::from_headers(
            Some(tp.as_bytes()),
            h.get_all(&TRACESTATE)
                .iter()
                .map(http::HeaderValue::as_bytes),
        )
    }

    /// The trace the caller sent (`traceparent` and `tracestate` header values); `None` when `traceparent` is
    /// absent or invalid (the event keeps the trace [`TraceContext::start`] gave it, and the caller's
    /// `tracestate` is dropped, as W3C requires).
    pub fn from_headers<'a>(
        traceparent: Option<&[u8]>,
        tracestate: impl Iterator<Item = &'a [u8]>,
    ) -> Option<Self> {
        let mut t = traceparent.and_then(parse_traceparent)?;
        // List members in order while they fit (W3C: at most 32; a vendor trims from the end).
        let mut state = String::new();
        let mut members = 0;
        for v in tracestate {
            let Ok(v) = std::str::from_utf8(v) else {
                return Some(t);
            };
            if !v.bytes().all(|b| (0x20..=0x7e).contains(&b)) {
                return Some(t);
            }
            for m in v.split(',').map(str::trim).filter(|m| !m.is_empty()) {
                let grown = state.len() + m.len() + usize::from(!state.is_empty());
                if members == MAX_TRACESTATE_MEMBERS || grown > MAX_TRACESTATE {
                    break;
                }
                if !state.is_empty() {
                    state.push(',');
                }
                state.push_str(m);
                members += 1;
            }
        }
        if !state.is_empty() {
            t.state = Some(state.into_boxed_str());
        }
        Some(t)
    }

    /// The `traceparent` header value (version 00).
    pub fn traceparent(&self) -> String {
        self.traceparent_with(self.parent_id)
    }

    /// The `traceparent` of this trace with `parent` as the parent span (a span of the relay's own).
    pub fn traceparent_with(&self, parent: u64) -> String {
        format!(
            "00-{:032x}-{:016x}-{:02x}",
            self.trace_id, parent, self.flags
        )
    }

    /// The trace id as 32 hex digits (for log lines; nothing is formatted unless a line is written).
    pub fn trace_id_hex(&self) -> impl std::fmt::Display {
        struct Hex(u128);
        impl std::fmt::Display for Hex {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "{:032x}", self.0)
            }
        }
        Hex(self.trace_id)
    }

    /// The same trace as an AWS X-Ray trace header (EventBridge's `TraceHeader`): X-Ray's trace id is the W3C
    /// one split after its first 8 hex digits, as AWS's own W3C propagators map it.
    pub fn xray(&self) -> String {
        self.xray_with(self.parent_id)
    }

    /// [`TraceContext::xray`] with `parent` as the parent span (a span of the relay's own).
    pub fn xray_with(&self, parent: u64) -> String {
        let hex = format!("{:032x}", self.trace_id);
        format!(
            "Root=1-{}-{};Parent={:016x};Sampled={}",
            &hex[..8],
            &hex[8..],
            parent,
            self.flags & 1
        )
    }
}

fn parse_traceparent(v: &[u8]) -> Option<TraceContext> {
    let s = std::str::from_utf8(v).ok()?.trim();
    let b = s.as_bytes();
    // ASCII before any slicing: a multi-byte character would put a slice bound inside it.
    if b.len() < 55 || !b[..56.min(b.len())].is_ascii() {
        return None;
    }
    if b[2] != b'-' || b[35] != b'-' || b[52] != b'-' {
        return None;
    }
    let lower_hex = |p: &str| p.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'));
    let (version, trace, parent, flags) = (&s[..2], &s[3..35], &s[36..52], &s[53..55]);
    if !(lower_hex(version) && lower_hex(trace) && lower_hex(parent) && lower_hex(flags)) {
        return None;
    }
    // Version 00 is exactly 55 characters; a later version may append fields after a '-'.
    match version {
        "ff" => return None,
        "00" if b.len() != 55 => return None,
        _ if b.len() > 55 && b[55] != b'-' => return None,
        _ => {}
    }
    let trace_id = u128::from_str_radix(trace, 16).ok()?;
    let parent_id = u64::from_str_radix(parent, 16).ok()?;
    if trace_id == 0 || parent_id == 0 {
        return None;
    }
    Some(TraceContext {
        trace_id,
        parent_id,
        // Passed on as version 00, whose only flag is `sampled`: the other bits are zero (W3C).
        flags: u8::from_str_radix(flags, 16).ok()? & 0x01,
        state: None,
        remote: true,
    })
}
