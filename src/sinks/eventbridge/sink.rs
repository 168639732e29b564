//! The EventBridge transport: deliveries → PutEvents / PutPartnerEvents calls, batched by count and size,
//! each call retrying only its failed entries (driven by `sinks::driver`).

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_eventbridge::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_eventbridge::types::{PutEventsRequestEntry, PutPartnerEventsRequestEntry};
use aws_sdk_eventbridge::Client;
use futures_util::future::BoxFuture;
use prometheus::IntCounter;

use crate::model::EventBridgeMode;
use crate::pipeline::EventBridgeTarget;
use crate::pipeline::{Delivery, Outcome};
use crate::sinks::driver::{InFlight, Transport};
use crate::sinks::retry::Backoff;
use crate::sinks::{SinkError, Target};

/// Deliveries taken from the queue at once (split into calls of at most 10 or 20).
const TAKE: usize = 200;

/// Entries that can share a call.
type GroupKey = (String, Option<String>, EventBridgeMode, String, String);

impl EventBridgeTarget {
    fn group(&self) -> GroupKey {
        (
            self.region.clone(),
            self.endpoint.clone(),
            self.mode,
            self.bus.clone(),
            self.source.clone(),
        )
    }

    fn max_entries(&self) -> usize {
        match self.mode {
            EventBridgeMode::PutEvents => 10,
            EventBridgeMode::PutPartnerEvents => 20,
        }
    }
}

pub struct EventBridgeSink {
    max_entry_bytes: usize,
    max_in_flight: usize,
    request_timeout: Duration,
    delivery_timeout: Duration,
    linger: Duration,
    retries: IntCounter,
    throttled: IntCounter,
}

impl EventBridgeSink {
    pub fn new(
        config: &super::EventBridgeSinkConfig,
        delivery_timeout: Duration,
        retries: IntCounter,
        throttled: IntCounter,
    ) -> Self {
        Self {
            max_entry_bytes: config.max_entry_bytes,
            max_in_flight: config.max_in_flight,
            request_timeout: Duration::from_millis(config.request_timeout_ms),
            delivery_timeout,
            linger: Duration::from_millis(config.linger_ms),
            retries,
            throttled,
        }
    }
}

/// AWS's size of an entry: Source + DetailType + Detail (+ Resources, which the relay does not send).
fn entry_size(t: &EventBridgeTarget, d: &Delivery) -> usize {
    t.source.len() + d.event().trigger_id.len() + d.event().body.len()
}

/// Entry error codes worth sending again.
fn retriable_code(code: &str) -> bool {
    matches!(
        code,
        "ThrottlingException"
            | "InternalFailure"
            | "InternalException"
            | "ServiceUnavailable"
            | "ServiceUnavailableException"
            | "RequestTimeout"
    )
}

fn throttling(code: &str) -> bool {
    code == "ThrottlingException" || code.contains("Throttl") || code == "LimitExceededException"
}

/// The result of one call, per entry in call order: `None` = accepted, `Some((code, message))` = failed.
type EntryResults = Vec<Option<(String, String)>>;

/// Why a whole call failed.
struct CallError {
    error: SinkError,
    throttled: bool,
}

fn call_error<E: ProvideErrorMetadata + std::error::Error + 'static>(e: SdkError<E>) -> CallError {
    match &e {
        SdkError::ServiceError(se) => {
            let code = se.err().code().unwrap_or("").to_string();
            let text = format!("{code}: {}", se.err().message().unwrap_or(""));
            let status = se.raw().status().as_u16();
            if retriable_code(&code) || throttling(&code) || status >= 500 || status == 429 {
                CallError {
                    error: SinkError::Unavailable(text),
                    throttled: throttling(&code) || status == 429,
                }
            } else {
                CallError {
                    error: SinkError::Rejected(text),
                    throttled: false,
                }
            }
        }
        // An endpoint the egress policy refuses stays refused: not retried.
        _ => match crate::sinks::http::EgressRefused::find(&e) {
            Some(refused) => CallError {
                error: SinkError::Rejected(refused.to_string()),
                throttled: false,
            },
            None => CallError {
                error: SinkError::Unavailable(
                    aws_sdk_eventbridge::error::DisplayErrorContext(&e).to_string(),
                ),
                throttled: false,
            },
        },
    }
}

impl EventBridgeSink {
    /// One call for `batch` (all the same target), answered per entry.
    async fn call(
        client: &Client,
        t: &EventBridgeTarget,
        batch: &[Delivery],
    ) -> Result<EntryResults, CallError> {
        let detail = |d: &Delivery| String::from_utf8_lossy(&d.event().body).into_owned();
        fn results<'a>(
            n: usize,
            failed: i32,
            entries: impl Iterator<Item = (Option<&'a str>, Option<&'a str>)>,
        ) -> EntryResults {
            if failed == 0 {
                // Every entry accepted (some implementations, moto's PutPartnerEvents among them, list none).
                return vec![None; n];
            }
            let mut out: EntryResults = entries
                .map(|(code, msg)| code.map(|c| (c.to_string(), msg.unwrap_or("").to_string())))
                .collect();
            // An answer without a result per entry cannot be trusted for the missing ones: send them again.
            out.resize(
                n,
                Some(("InternalFailure".into(), "no result for this entry".into())),
            );
            out
        }
        match t.mode {
            EventBridgeMode::PutEvents => {
                let entries = batch
                    .iter()
                    .map(|d| {
                        PutEventsRequestEntry::builder()
                            .source(&t.source)
                            .detail_type(&*d.event().trigger_id)
                            .detail(detail(d))
                            .event_bus_name(&t.bus)
                            .trace_header(
                                d.event()
                                    .trace
                                    .xray_with(d.span.map_or(d.event().trace.parent_id, |s| s.id)),
                            )
                            .build()
                    })
                    .collect();
                let out = client
                    .put_events()
                    .set_entries(Some(entries))
                    .send()
                    .await
                    .map_err(call_error)?;
                Ok(results(
                    batch.len(),
                    out.failed_entry_count(),
                    out.entries()
                        .iter()
                        .map(|e| (e.error_code(), e.error_message())),
                ))
            }
            EventBridgeMode::PutPartnerEvents => {
                let entries = batch
                    .iter()
                    .map(|d| {
                        PutPartnerEventsRequestEntry::builder()
                            .source(&t.source)
                            .detail_type(&*d.event().trigger_id)
                            .detail(detail(d))
                            .build()
                    })
                    .collect();
                let out = client
                    .put_partner_events()
                    .set_entries(Some(entries))
                    .send()
                    .await
                    .map_err(call_error)?;
                Ok(results(
                    batch.len(),
                    out.failed_entry_count(),
                    out.entries()
                        .iter()
                        .map(|e| (e.error_code(), e.error_message())),
                ))
            }
        }
    }

    /// Send one batch until every entry is accepted, failed for good, or out of time; retry only the
    /// entries that failed, with backoff (longer when throttled).
    fn send_batch(&self, t: EventBridgeTarget, mut batch: Vec<Delivery>) -> InFlight {
        let client = t.client.clone();
        let request_timeout = self.request_timeout;
        let delivery_timeout = self.delivery_timeout;
        let retries = self.retries.clone();
        let throttled_count = self.throttled.clone();
        Box::pin(async move {
            let mut done: Vec<(Delivery, Outcome)> = Vec::with_capacity(batch.len());
            let mut backoff = Backoff::new(Duration::from_millis(100));
            loop {
                for d in batch.iter_mut() {
                    d.attempts += 1;
                }
                let answer = tokio::time::timeout(request_timeout, Self::call(&client, &t, &batch))
                    .await
                    .unwrap_or_else(|_| {
                        Err(CallError {
                            error: SinkError::Unavailable(format!(
                                "no answer within request_timeout_ms ({} ms)",
                                request_timeout.as_millis()
                            )),
                            throttled: false,
                        })
                    });
                let mut again = Vec::new();
                let mut throttled = false;
                match answer {
                    Ok(results) => {
                        for (d, r) in batch.drain(..).zip(results) {
                            match r {
                                None => done.push((d, Ok(()))),
                                Some((code, msg)) if retriable_code(&code) => {
                                    throttled |= throttling(&code);
                                    again.push((
                                        d,
                                        SinkError::Unavailable(format!("{code}: {msg}")),
                                    ));
                                }
                                Some((code, msg)) => done
                                    .push((d, Err(SinkError::Rejected(format!("{code}: {msg}"))))),
                            }
                        }
                    }
                    Err(CallError {
                        error,
                        throttled: t,
                    }) if error.is_retriable() => {
                        throttled = t;
                        again.extend(batch.drain(..).map(|d| (d, error.clone())));
                    }
                    Err(CallError { error, .. }) => {
                        done.extend(batch.drain(..).map(|d| (d, Err(error.clone()))));
                    }
                }
                if again.is_empty() {
                    return done;
                }
                if throttled {
                    throttled_count.inc();
                    backoff.at_least(Duration::from_millis(500));
                }
                // Each event keeps its own deadline: received + delivery_timeout_ms.
                let wait = backoff.wait(None);
                for (d, e) in again {
                    if !Backoff::fits(wait, d.event().received + delivery_timeout) {
                        done.push((d, Err(SinkError::TimedOut(e.to_string()))));
                    } else {
                        batch.push(d);
                    }
                }
                if batch.is_empty() {
                    return done;
                }
                retries.inc_by(batch.len() as u64);
                backoff.sleep(wait).await;
            }
        })
    }
}

impl Transport for EventBridgeSink {
    fn take(&self) -> usize {
        TAKE
    }

    fn max_in_flight(&self) -> usize {
        self.max_in_flight
    }

    fn start(&self, batch: Vec<Delivery>) -> BoxFuture<'_, Vec<InFlight>> {
        let mut out: Vec<InFlight> = Vec::new();
        // Group by destination, keeping queue order within each; cut calls by count and by size.
        let mut groups: HashMap<GroupKey, (EventBridgeTarget, Vec<Delivery>, usize)> =
            HashMap::new();
        for d in batch {
            let Target::EventBridge(t) = &d.route().target else {
                let e = Err(SinkError::Rejected(
                    "not an EventBridge subscription".into(),
                ));
                out.push(Box::pin(std::future::ready(vec![(d, e)])));
                continue;
            };
            let t = t.clone();
            let size = entry_size(&t, &d);
            if size > self.max_entry_bytes {
                let e = Err(SinkError::TooLarge(format!(
                    "the entry is {size} bytes; EventBridge takes at most {} (sinks.eventbridge.max_entry_bytes)",
                    self.max_entry_bytes
                )));
                out.push(Box::pin(std::future::ready(vec![(d, e)])));
                continue;
            }
            let (_, group, bytes) = groups
                .entry(t.group())
                .or_insert_with(|| (t.clone(), Vec::new(), 0));
            if group.len() == t.max_entries() || *bytes + size > self.max_entry_bytes {
                out.push(self.send_batch(t.clone(), std::mem::take(group)));
                *bytes = 0;
            }
            group.push(d);
            *bytes += size;
        }
        for (_, (t, group, _)) in groups {
            if !group.is_empty() {
                out.push(self.send_batch(t, group));
            }
        }
        Box::pin(std::future::ready(out))
    }

    fn linger(&self) -> Duration {
        self.linger
    }

    fn flush(&self, _within: Duration) -> BoxFuture<'_, ()> {
        // Nothing is buffered outside the calls in flight.
        Box::pin(std::future::ready(()))
    }
}
