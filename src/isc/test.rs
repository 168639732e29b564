//! `isc test`: prove the path tenant → relay → bus for each routed trigger.
//!
//! For each trigger the relay routes, the tenant is asked for a test invocation (ISC's
//! `POST /trigger-invocations/test`) through the relay's managed subscription only. ISC answers with the
//! invocations it started; each carries the invocation id the tenant puts in the payload's
//! `_metadata.invocationId`, and the relay keys its invocation statuses by that id. The command then reads the
//! relay's own `GET /trigger-invocations/status` until every status of that id is complete: received (a status
//! exists: the relay took the event), delivered (every destination finished without error). With several
//! replicas behind a shared store, each replica's statuses are in every replica's list.
//!
//! A test that one of the relay's filters excludes from every subscription leaves no status: the table says
//! "not received (or every relay filter excluded the test payload)".

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime};

use serde_json::{json, Value};

use super::{sync, IscError, EXIT_FAILED, EXIT_OK};
use crate::config::Config;

/// How often the relay's statuses are read while tests are pending.
const POLL: Duration = Duration::from_millis(250);

struct Pending {
    trigger_id: String,
    /// Why it was not sent.
    not_sent: Option<String>,
    invocation: Option<String>,
    sent_at: Instant,
    /// Statuses seen: (complete, error).
    seen: Vec<(bool, Option<String>)>,
    /// The relay's own time from receipt to the last delivery.
    relay_ms: Option<u128>,
    done_after: Option<Duration>,
}

impl Pending {
    fn finished(&self) -> bool {
        self.not_sent.is_some() || (!self.seen.is_empty() && self.seen.iter().all(|(c, _)| *c))
    }
    fn delivered(&self) -> bool {
        self.not_sent.is_none()
            && !self.seen.is_empty()
            && self.seen.iter().all(|(c, e)| *c && e.is_none())
    }
}

pub(super) async fn run(
    config: &Config,
    only: &[String],
    timeout: Duration,
) -> Result<u8, IscError> {
    let isc = super::isc(config)?;
    if !config.api.enabled {
        return Err(IscError::Config(
            "isc test reads the relay's invocation statuses through its API: enable [api] on the relay".into(),
        ));
    }
    let routes = super::relay_routes(config, isc).await?;
    let mut triggers: Vec<String> = sync::routed_triggers(&routes)
        .into_iter()
        .map(str::to_string)
        .collect();
    if !only.is_empty() {
        for t in only {
            if !triggers.contains(t) {
                return Err(IscError::Config(format!(
                    "the relay routes no enabled subscription of `{t}`"
                )));
            }
        }
        triggers.retain(|t| only.contains(t));
    }
    let mut tenant = super::tenant(isc)?;
    let mut relay = super::relay_api(config, isc)?;
    let listed = tenant.subscriptions().await?;
    // The first managed subscription of each trigger (the one `isc sync` keeps).
    let mut managed: HashMap<&str, &str> = HashMap::new();
    for s in listed.iter().filter(|s| sync::is_managed(s, &isc.instance)) {
        if let (Some(t), Some(id)) = (s["triggerId"].as_str(), s["id"].as_str()) {
            managed.entry(t).or_insert(id);
        }
    }
    let run_id = uuid::Uuid::new_v4().to_string();
    let mut pending = Vec::new();
    for t in &triggers {
        let mut p = Pending {
            trigger_id: t.clone(),
            not_sent: None,
            invocation: None,
            sent_at: Instant::now(),
            seen: Vec::new(),
            relay_ms: None,
            done_after: None,
        };
        match managed.get(t.as_str()) {
            None => {
                p.not_sent = Some(
                    "the tenant has no managed subscription: run `trigger-relay isc sync`".into(),
                )
            }
            Some(id) => {
                let body = json!({
                    "triggerId": t,
                    "contentJson": { "sentBy": "trigger-relay isc test", "run": run_id },
                    "subscriptionIds": [id],
                });
                p.sent_at = Instant::now();
                match tenant.test(&body).await {
                    Ok(started) => match started.first().and_then(|i| i["id"].as_str()) {
                        Some(id) => p.invocation = Some(id.to_string()),
                        None => p.not_sent = Some("the tenant started no invocation".into()),
                    },
                    Err(e) => p.not_sent = Some(format!("the tenant refused the test: {e}")),
                }
            }
        }
        pending.push(p);
    }
    eprintln!(
        "sent {} test invocation(s); waiting up to {} s for their delivery…",
        pending.iter().filter(|p| p.invocation.is_some()).count(),
        timeout.as_secs()
    );
    let deadline = Instant::now() + timeout;
    while pending.iter().any(|p| !p.finished()) && Instant::now() < deadline {
        for p in pending.iter_mut().filter(|p| !p.finished()) {
            let Some(inv) = p.invocation.clone() else {
                continue;
            };
            let statuses = relay.statuses(&p.trigger_id).await?;
            let mine: Vec<&Value> = statuses
                .iter()
                .filter(|s| s["id"].as_str() == Some(inv.as_str()))
                .collect();
            p.seen = mine
                .iter()
                .map(|s| {
                    let complete = s["completed"].as_str().is_some();
                    let error = s["completeInvocationInput"]["localizedError"]["message"]
                        .as_str()
                        .map(str::to_string);
                    (complete, error)
                })
                .collect();
            p.relay_ms = relay_time(&mine);
            if p.finished() {
                p.done_after = Some(p.sent_at.elapsed());
            }
        }
        if pending.iter().any(|p| !p.finished()) {
            tokio::time::sleep(POLL).await;
        }
    }
    let rows: Vec<[String; 6]> = pending
        .iter()
        .map(|p| {
            let sent = if p.invocation.is_some() { "yes" } else { "no" };
            let received = if p.seen.is_empty() {
                "no".to_string()
            } else {
                format!("yes ({} destination(s))", p.seen.len())
            };
            let ok = p.seen.iter().filter(|(c, e)| *c && e.is_none()).count();
            let delivered = if p.seen.is_empty() {
                "-".to_string()
            } else {
                format!("{ok}/{}", p.seen.len())
            };
            let time = match (p.done_after, p.relay_ms) {
                (Some(d), Some(r)) => format!("{} ms (relay {r} ms)", d.as_millis()),
                (Some(d), None) => format!("{} ms", d.as_millis()),
                _ => "-".into(),
            };
            let detail = if let Some(why) = &p.not_sent {
                why.clone()
            } else if p.seen.is_empty() {
                format!(
                    "not received within {} s (or every relay filter excluded the test payload)",
                    timeout.as_secs()
                )
            } else if let Some(e) = p.seen.iter().find_map(|(_, e)| e.clone()) {
                format!("failed: {e}")
            } else if !p.finished() {
                "still in flight".into()
            } else {
                "delivered".into()
            };
            [
                p.trigger_id.clone(),
                sent.into(),
                received,
                delivered,
                time,
                detail,
            ]
        })
        .collect();
    print!(
        "{}",
        super::table(
            &["TRIGGER", "SENT", "RECEIVED", "DELIVERED", "TIME", "DETAIL"],
            &rows
        )
    );
    let good = pending.iter().filter(|p| p.delivered()).count();
    println!("{good} of {} trigger(s) delivered", pending.len());
    Ok(if good == pending.len() {
        EXIT_OK
    } else {
        EXIT_FAILED
    })
}

/// From the earliest `created` to the latest `completed` of these statuses, in the relay's own clock.
fn relay_time(statuses: &[&Value]) -> Option<u128> {
    let parse =
        |v: &Value| -> Option<SystemTime> { humantime::parse_rfc3339_weak(v.as_str()?).ok() };
    let created = statuses.iter().filter_map(|s| parse(&s["created"])).min()?;
    let completed = statuses
        .iter()
        .map(|s| parse(&s["completed"]))
        .collect::<Option<Vec<_>>>()?;
    let last = completed.into_iter().max()?;
    last.duration_since(created).ok().map(|d| d.as_millis())
}
