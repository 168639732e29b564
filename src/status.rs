//! Invocation statuses, as ISC's `GET /trigger-invocations/status` reports them: the latest test and
//! real-time deliveries, with their outcome.
//!
//! Bounded: at most [`MAX_ENTRIES`] kept, successes for 24 h and failures for 48 h (ISC's retention), a
//! payload is kept with its status only when it is at most [`MAX_KEPT_INPUT`] bytes (the `Bytes` is shared with
//! the event, not copied), and all kept statuses together weigh at most [`MAX_KEPT_BYTES`] (payloads, test
//! `contentJson`, error texts): the oldest go first, so a flood of large events cannot grow the log past it.
//! An invocation is listed from the moment it starts (`completed` null while it is in flight, as ISC lists it):
//! its status is recorded when the delivery is made and replaced, in place, when it finishes. Each record is one
//! short mutex hold.
//!
//! With a shared store the log is also the replica's view of every replica's statuses: each record is offered
//! to the store's publisher through a bounded channel (a full channel drops the share, counted in
//! `trigger_relay_api_statuses_unshared_total`, never blocks a delivery), and what other replicas publish is
//! merged in ([`StatusLog::merge`]).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, OnceLock};
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
    /// `None` while the delivery is in flight.
    pub completed: Option<SystemTime>,
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
        now.duration_since(self.completed.unwrap_or(self.created))
            .unwrap_or_default()
            > keep
    }

    /// One invocation's delivery to one subscription: later records of it replace earlier ones.
    pub fn key(&self) -> (String, Arc<str>) {
        (self.id.clone(), self.subscription_id.clone())
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
        let mut v = serde_json::json!({
            "id": self.id,
            "triggerId": &*self.trigger_id,
            "subscriptionName": &*self.subscription_name,
            "subscriptionId": &*self.subscription_id,
            "type": match self.kind { InvocationKind::Test => "TEST", InvocationKind::RealTime => "REAL_TIME" },
            "created": rfc3339(self.created),
            "completed": self.completed.map(rfc3339),
            "startInvocationInput": {
                "triggerId": &*self.trigger_id,
                "input": input,
                "contentJson": self.content_json,
            },
            "completeInvocationInput": complete,
        });
        // In flight: no `completed` and no `completeInvocationInput` (ISC: "empty fields imply invocation is
        // in-flight"); both are optional in ISC's schema, so SDK models accept the shorter object.
        if self.completed.is_none() {
            if let Some(m) = v.as_object_mut() {
                m.remove("completed");
                m.remove("completeInvocationInput");
            }
        }
        v
    }
}

/// ISO-8601 in UTC with milliseconds, as ISC writes timestamps.
pub fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

#[derive(Debug)]
pub struct StatusLog {
    entries: Mutex<Entries>,
    /// The shared store's publisher, when there is one.
    share: OnceLock<tokio::sync::mpsc::Sender<Status>>,
    /// Records the publisher's full channel could not take.
    pub unshared: prometheus::IntCounter,
}

impl Default for StatusLog {
    fn default() -> Self {
        Self {
            entries: Mutex::default(),
            share: OnceLock::new(),
            unshared: prometheus::IntCounter::new(
                "trigger_relay_api_statuses_unshared_total",
                "Invocation statuses not shared with the other replicas because the store's publisher was behind",
            )
            .expect("a valid metric name"),
        }
    }
}

/// Statuses with their weights, oldest first, and the sum of the weights; `index` finds a status by its key
/// (its position is its sequence number minus `first`, the sequence number of the front).
#[derive(Debug, Default)]
struct Entries {
    kept: VecDeque<(usize, Status)>,
    bytes: usize,
    index: HashMap<(String, Arc<str>), u64>,
    first: u64,
}

impl Entries {
    fn pop_front(&mut self) {
        if let Some((w, s)) = self.kept.pop_front() {
            self.bytes -= w;
            if self.index.get(&s.key()) == Some(&self.first) {
                self.index.remove(&s.key());
            }
            self.first += 1;
        }
    }

    /// Insert `s`, or replace the status with its key in place.
    fn upsert(&mut self, s: Status) {
        let weight = s.weight();
        if let Some(seq) = self.index.get(&s.key()).copied() {
            if let Some(slot) = self.kept.get_mut((seq - self.first) as usize) {
                // A late copy of the start (another replica's echo) never undoes the finish.
                if slot.1.completed.is_some() && s.completed.is_none() {
                    return;
                }
                self.bytes = self.bytes - slot.0 + weight;
                *slot = (weight, s);
                return;
            }
        }
        while self.kept.len() >= MAX_ENTRIES
            || (!self.kept.is_empty() && self.bytes + weight > MAX_KEPT_BYTES)
        {
            self.pop_front();
        }
        self.bytes += weight;
        self.index
            .insert(s.key(), self.first + self.kept.len() as u64);
        self.kept.push_back((weight, s));
    }
}

impl StatusLog {
    /// Record a status of this replica's (a delivery that started or finished), and share it.
    pub fn record(&self, s: Status) {
        if let Some(tx) = self.share.get() {
            if tx.try_send(s.clone()).is_err() {
                self.unshared.inc();
            }
        }
        self.merge(s);
    }

    /// Record a status without sharing it (one another replica shared).
    pub fn merge(&self, s: Status) {
        self.entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .upsert(s);
    }

    /// Share every later record through `tx` (the shared store's publisher). Set once.
    pub fn share_with(&self, tx: tokio::sync::mpsc::Sender<Status>) {
        let _ = self.share.set(tx);
    }

    /// The statuses still kept, newest last.
    pub fn list(&self) -> Vec<Status> {
        let now = SystemTime::now();
        let e = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        // Expired statuses are left out here and leave the log as newer ones push them out of the front.
        e.kept
            .iter()
            .filter(|(_, s)| !s.expired(now))
            .map(|(_, s)| s.clone())
            .collect()
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
            completed: Some(SystemTime::now()),
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

    #[test]
    fn a_started_invocation_is_completed_in_place() {
        let log = StatusLog::default();
        for n in 0..3 {
            let mut s = status(n, 10);
            s.completed = None;
            log.record(s);
        }
        let listed = log.list();
        assert!(listed.iter().all(|s| s.completed.is_none()));
        let j = listed[1].to_json();
        assert!(
            j.get("completed").is_none() && j.get("completeInvocationInput").is_none(),
            "{j}"
        );
        let mut done = status(1, 10);
        done.error = Some("refused".into());
        log.record(done);
        let listed = log.list();
        assert_eq!(listed.len(), 3, "replaced, not added");
        assert_eq!(listed[1].id, "inv-1", "in its place");
        assert!(listed[1].completed.is_some());
        // After the front moved on, keys still find their status.
        for n in 3..MAX_ENTRIES + 5 {
            log.record(status(n, 10));
        }
        let mut again = status(MAX_ENTRIES + 2, 10);
        again.error = Some("late".into());
        log.record(again);
        let listed = log.list();
        assert_eq!(listed.len(), MAX_ENTRIES);
        let found: Vec<_> = listed
            .iter()
            .filter(|s| s.id == format!("inv-{}", MAX_ENTRIES + 2))
            .collect();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].error.as_deref(), Some("late"));
    }
}
