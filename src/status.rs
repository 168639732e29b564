//! Invocation statuses, as ISC's `GET /trigger-invocations/status` reports them: the latest test and
//! real-time deliveries, with their outcome.
//!
//! Bounded: at most [`MAX_ENTRIES`] kept, successes for 24 h and failures for 48 h (ISC's retention), a
//! payload is kept with its status only when it is at most [`MAX_KEPT_INPUT`] bytes (the `Bytes` is shared with
//! the event, not copied), and all kept statuses together weigh at most [`MAX_KEPT_BYTES`] (payloads, test
//! `contentJson`, error texts): the oldest go first, so a flood of large events cannot grow the log past it.
//! Recording is one short mutex hold per finished delivery, on the sink worker, never on the ingress path.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;

/// Statuses kept (ISC returns at most 2000).
pub const MAX_ENTRIES: usize = 2000;
/// Largest payload kept with a status.
pub const MAX_KEPT_INPUT: usize = 16 * 1024;
/// What all kept statuses may weigh together, in bytes (see [`Status::weight`]).
pub const MAX_KEPT_BYTES: usize = 8 * 1024 * 1024;
const KEEP_SUCCESS: Duration = Duration::from_secs(24 * 3600);
const KEEP_FAILURE: Duration = Duration::from_secs(48 * 3600);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InvocationKind {
    Test,
    RealTime,
}

#[derive(Debug, Clone)]
pub struct Status {
    pub id: String,
    pub trigger_id: Arc<str>,
    pub subscription_id: Arc<str>,
    pub subscription_name: Arc<str>,
    pub kind: InvocationKind,
    pub created: SystemTime,
    pub completed: SystemTime,
    pub input: Option<Bytes>,
    pub content_json: serde_json::Value,
    pub error: Option<String>,
}

impl Status {
    /// Bytes this status keeps alive: its payload, its test `contentJson`, its texts, and a fixed part.
    fn weight(&self) -> usize {
        let content = match self.kind {
            InvocationKind::Test => serde_json::to_vec(&self.content_json).map_or(0, |v| v.len()),
            InvocationKind::RealTime => 0,
        };
        256 + self.input.as_ref().map_or(0, Bytes::len)
            + content
            + self.error.as_ref().map_or(0, String::len)
            + self.id.len()
    }

    fn expired(&self, now: SystemTime) -> bool {
        let keep = if self.error.is_some() {
            KEEP_FAILURE
        } else {
            KEEP_SUCCESS
        };
        now.duration_since(self.completed).unwrap_or_default() > keep
    }

    /// ISC's `InvocationStatus` JSON.
    pub fn to_json(&self) -> serde_json::Value {
        let input = self
            .input
            .as_ref()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(b).ok())
            .unwrap_or_else(|| serde_json::json!({}));
        let complete = match &self.error {
            None => serde_json::json!({ "localizedError": null, "output": null }),
            Some(e) => serde_json::json!({
                "localizedError": { "locale": "en-US", "message": e },
                "output": null
            }),
        };
        serde_json::json!({
            "id": self.id,
            "triggerId": &*self.trigger_id,
            "subscriptionName": &*self.subscription_name,
            "subscriptionId": &*self.subscription_id,
            "type": match self.kind { InvocationKind::Test => "TEST", InvocationKind::RealTime => "REAL_TIME" },
            "created": rfc3339(self.created),
            "completed": rfc3339(self.completed),
            "startInvocationInput": {
                "triggerId": &*self.trigger_id,
                "input": input,
                "contentJson": self.content_json,
            },
            "completeInvocationInput": complete,
        })
    }
}

/// ISO-8601 in UTC with milliseconds, as ISC writes timestamps.
pub fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

#[derive(Debug, Default)]
pub struct StatusLog {
    entries: Mutex<Entries>,
}

/// Statuses with their weights, oldest first, and the sum of the weights.
#[derive(Debug, Default)]
struct Entries {
    kept: VecDeque<(usize, Status)>,
    bytes: usize,
}

impl StatusLog {
    pub fn record(&self, s: Status) {
        let weight = s.weight();
        let mut e = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        while e.kept.len() >= MAX_ENTRIES
            || (!e.kept.is_empty() && e.bytes + weight > MAX_KEPT_BYTES)
        {
            if let Some((w, _)) = e.kept.pop_front() {
                e.bytes -= w;
            }
        }
        e.bytes += weight;
        e.kept.push_back((weight, s));
    }

    /// The statuses still kept, newest last.
    pub fn list(&self) -> Vec<Status> {
        let now = SystemTime::now();
        let mut e = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let Entries { kept, bytes } = &mut *e;
        kept.retain(|(w, s)| {
            let keep = !s.expired(now);
            if !keep {
                *bytes -= w;
            }
            keep
        });
        kept.iter().map(|(_, s)| s.clone()).collect()
    }

    /// Bytes the kept statuses weigh now (never more than [`MAX_KEPT_BYTES`] but for one oversized status).
    pub fn bytes(&self) -> usize {
        self.entries.lock().unwrap_or_else(|p| p.into_inner()).bytes
    }

    /// Keep the payload only when it is small.
    pub fn keepable(body: &Bytes) -> Option<Bytes> {
        (body.len() <= MAX_KEPT_INPUT).then(|| body.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(n: usize, input: usize) -> Status {
        Status {
            id: format!("inv-{n}"),
            trigger_id: "idn:identity-created".into(),
            subscription_id: "s".into(),
            subscription_name: "s".into(),
            kind: InvocationKind::RealTime,
            created: SystemTime::now(),
            completed: SystemTime::now(),
            input: Some(Bytes::from(vec![b' '; input])),
            content_json: serde_json::json!({}),
            error: None,
        }
    }

    #[test]
    fn bounded_in_count_and_in_bytes() {
        let log = StatusLog::default();
        for n in 0..3 * MAX_ENTRIES {
            log.record(status(n, 10));
        }
        assert_eq!(log.list().len(), MAX_ENTRIES, "count bound");
        let log = StatusLog::default();
        for n in 0..MAX_ENTRIES {
            log.record(status(n, MAX_KEPT_INPUT));
        }
        let kept = log.list();
        assert!(log.bytes() <= MAX_KEPT_BYTES, "{} bytes", log.bytes());
        assert!(
            kept.len() < MAX_ENTRIES && kept.len() > 400,
            "{} kept",
            kept.len()
        );
        assert_eq!(
            kept.last().unwrap().id,
            format!("inv-{}", MAX_ENTRIES - 1),
            "the newest stays"
        );
    }
}
