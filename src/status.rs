//! Invocation statuses, as ISC's `GET /trigger-invocations/status` reports them: the latest test and
//! real-time deliveries, with their outcome.
//!
//! Bounded: at most [`MAX_ENTRIES`] kept, successes for 24 h and failures for 48 h (ISC's retention), and a
//! payload is kept with its status only when it is at most [`MAX_KEPT_INPUT`] bytes (the `Bytes` is shared with
//! the event, not copied). Recording is one short mutex hold per finished delivery, on the sink worker, never
//! on the ingress path.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;

/// Statuses kept (ISC returns at most 2000).
pub const MAX_ENTRIES: usize = 2000;
/// Largest payload kept with a status.
pub const MAX_KEPT_INPUT: usize = 16 * 1024;
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
    entries: Mutex<VecDeque<Status>>,
}

impl StatusLog {
    pub fn record(&self, s: Status) {
        let mut e = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        while e.len() >= MAX_ENTRIES {
            e.pop_front();
        }
        e.push_back(s);
    }

    /// The statuses still kept, newest last.
    pub fn list(&self) -> Vec<Status> {
        let now = SystemTime::now();
        let mut e = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        e.retain(|s| !s.expired(now));
        e.iter().cloned().collect()
    }

    /// Keep the payload only when it is small.
    pub fn keepable(body: &Bytes) -> Option<Bytes> {
        (body.len() <= MAX_KEPT_INPUT).then(|| body.clone())
    }
}
