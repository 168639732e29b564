//! The worker loop every network sink shares: take a batch from the bounded queue, start sending it, finish
//! deliveries as their acknowledgements arrive, hand permanent failures to the subscription's dead letter,
//! and stop in one shape.
//!
//! A sink kind only says how to start sending a batch and how to flush ([`Transport`]); the driver owns the
//! concurrency bound (`max_in_flight`, counted in deliveries), the ordering of completions, dead letters and
//! the shutdown accounting, so those rules are written once for Kafka, NATS, EventBridge and HTTP.
//!
//! Shutdown: when every sender is gone the driver drains the queue, waits for what is in flight and flushes.
//! When `stop` fires first (the grace period is over) it flushes briefly, finishes every delivery whose
//! answer is already there, and drops the rest, which finish themselves as `ShutDown` (see `event`): they
//! are counted, logged and reported as undelivered.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use futures_util::future::{BoxFuture, FutureExt};
use futures_util::stream::{FuturesUnordered, StreamExt};
use prometheus::Histogram;
use tokio_util::sync::CancellationToken;

use crate::pipeline::queue::QueueReceiver;
use crate::pipeline::{Delivery, Finishing, Outcome};
use crate::sinks::{SinkError, SinkWorker};

/// Deliveries finished by one in-flight send, each with its outcome.
pub type Done = Vec<(Delivery, Outcome)>;
/// One send in flight (a record awaiting its report, a batch awaiting its response...).
pub type InFlight = BoxFuture<'static, Done>;

/// How long the last flush may take once the grace period is over.
const FINAL_FLUSH: Duration = Duration::from_millis(500);

/// What a sink kind implements; the [`Driver`] does the rest.
pub trait Transport: Send + Sync + 'static {
    /// Deliveries taken from the queue at once.
    fn take(&self) -> usize;
    /// Most deliveries started and not yet finished (the sink's window of unacknowledged sends).
    fn max_in_flight(&self) -> usize;
    /// Start sending `batch` (in queue order). The returned future may wait for room in the client, never
    /// for acknowledgements: those are the [`InFlight`] futures it returns.
    fn start(&self, batch: Vec<Delivery>) -> BoxFuture<'_, Vec<InFlight>>;
    /// Push out what the client still buffers, waiting at most `within`.
    fn flush(&self, within: Duration) -> BoxFuture<'_, ()>;
    /// How long to wait for more deliveries to fill a batch (0: send what is there).
    fn linger(&self) -> Duration {
        Duration::ZERO
    }
}

/// A sink worker: a [`Transport`] driven by the shared loop.
pub struct Driver<T> {
    name: String,
    transport: T,
    batch: Histogram,
}

impl<T: Transport> Driver<T> {
    pub fn new(name: &str, transport: T, batch: Histogram) -> Self {
        Self {
            name: name.to_string(),
            transport,
            batch,
        }
    }
}

enum Step {
    Sent(Done),
    DeadLettered(Delivery, Outcome),
}

type Pending = Pin<Box<dyn Future<Output = Step> + Send>>;

/// What to do with a finished send: finish it, or write it to its dead letter first.
fn settle(
    d: Delivery,
    outcome: Outcome,
    finishing: &mut Finishing,
    inflight: &FuturesUnordered<Pending>,
) -> bool {
    match (&outcome, &d.route().dead_letter) {
        // A replay (`trigger-relay replay`) that fails again is not written a second time: its original is
        // still in the dead letter (a replay never deletes), and the replay reports the failure itself.
        (Err(e), Some(dl)) if *e != SinkError::ShutDown && d.event().replay_of.is_none() => {
            let dl = dl.clone();
            inflight.push(Box::pin(async move {
                let Err(e) = &outcome else { unreachable!() };
                dl.write(&d, e).await;
                Step::DeadLettered(d, outcome)
            }));
            false
        }
        _ => {
            d.finish_in(outcome, finishing);
            true
        }
    }
}

impl<T: Transport> SinkWorker for Driver<T> {
    fn run(
        self: Box<Self>,
        mut rx: QueueReceiver,
        stop: CancellationToken,
    ) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        Box::pin(async move {
            let take = self.transport.take().max(1);
            let linger = self.transport.linger();
            let max = self.transport.max_in_flight().max(1);
            let mut inflight: FuturesUnordered<Pending> = FuturesUnordered::new();
            let mut finishing = Finishing::new(std::time::Instant::now());
            let mut outstanding = 0usize;
            let mut buf = Vec::with_capacity(take);
            let mut open = true;
            let stopped = loop {
                if !open && inflight.is_empty() {
                    break false;
                }
                let room = max.saturating_sub(outstanding).min(take);
                tokio::select! {
                    biased;
                    _ = stop.cancelled() => break true,
                    Some(step) = inflight.next(), if !inflight.is_empty() => match step {
                        Step::Sent(done) => {
                            // One clock read and one histogram update for what finished together (a
                            // send's answer).
                            finishing.restart(std::time::Instant::now());
                            for (d, outcome) in done {
                                if settle(d, outcome, &mut finishing, &inflight) {
                                    outstanding -= 1;
                                }
                            }
                            finishing.flush();
                        }
                        Step::DeadLettered(d, outcome) => {
                            d.finish(outcome);
                            outstanding -= 1;
                        }
                    },
                    n = rx.recv_many(&mut buf, room), if open && room > 0 => {
                        if n == 0 {
                            open = false;
                            continue;
                        }
                        if !linger.is_zero() && n < room {
                            // Fill the batch for up to `linger` (bounded, like Kafka's linger.ms).
                            let until = tokio::time::Instant::now() + linger;
                            while buf.len() < room {
                                let want = room - buf.len();
                                match tokio::time::timeout_at(until, rx.recv_many(&mut buf, want)).await {
                                    Ok(0) => {
                                        open = false;
                                        break;
                                    }
                                    Ok(_) => {}
                                    Err(_) => break,
                                }
                            }
                        }
                        let n = buf.len();
                        self.batch.observe(n as f64);
                        outstanding += n;
                        let batch = std::mem::replace(&mut buf, Vec::with_capacity(take));
                        for f in self.transport.start(batch).await {
                            inflight.push(Box::pin(f.map(Step::Sent)));
                        }
                    }
                }
            };
            if !stopped {
                tokio::select! {
                    _ = stop.cancelled() => {}
                    _ = self.transport.flush(Duration::from_secs(5)) => {}
                }
                tracing::info!(sink = %self.name, "sink drained and stopped");
                return;
            }
            // Grace period over: push out what the client holds, then keep every answer that is already in.
            self.transport.flush(FINAL_FLUSH).await;
            while let Some(Some(step)) = inflight.next().now_or_never() {
                match step {
                    Step::Sent(done) => {
                        for (d, outcome) in done {
                            d.finish(outcome);
                        }
                    }
                    Step::DeadLettered(d, outcome) => d.finish(outcome),
                }
            }
            let left = inflight.len();
            // Dropping them (and the queue) finishes every delivery left as `ShutDown`: counted and logged.
            drop(inflight);
            drop(buf);
            drop(rx);
            tracing::warn!(sink = %self.name, sends_abandoned = left, "sink stopped at the end of the shutdown grace period");
        })
    }
}
