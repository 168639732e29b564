//! The one backoff every retrying sink uses (webhooks, JetStream, EventBridge): exponential steps from a first
//! wait, doubled after each sleep up to [`Backoff::MAX`], never shorter than what the destination asked for
//! (`Retry-After`, a throttle), and never past the event's deadline (`received + delivery_timeout_ms`): an
//! attempt whose wait would end after the deadline is not made, and the delivery ends `TimedOut`.
//!
//! Kafka retries inside librdkafka (`retry.backoff.ms`, `message.timeout.ms`), so it has no loop of its own.
//! Why not `backon`: its delay iterators cover the doubling, but not a floor set per attempt by the answer
//! (`Retry-After`) nor the check against a per-event deadline before sleeping; what is left is these few lines.

use std::time::{Duration, Instant};

/// Where a retry loop is in its waits.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    step: Duration,
}

impl Backoff {
    /// The longest step.
    pub const MAX: Duration = Duration::from_secs(5);

    pub fn new(first: Duration) -> Self {
        Self { step: first }
    }

    /// The wait before the next attempt: the current step, or `floor` when the destination asked for longer.
    pub fn wait(&self, floor: Option<Duration>) -> Duration {
        floor.map_or(self.step, |f| f.max(self.step))
    }

    /// Make the current step at least `d` (a throttled destination).
    pub fn at_least(&mut self, d: Duration) {
        self.step = self.step.max(d);
    }

    /// Whether an attempt after waiting `wait` from now still starts before `deadline`.
    pub fn fits(wait: Duration, deadline: Instant) -> bool {
        Instant::now() + wait < deadline
    }

    /// Sleep `wait`, then double the step (at most [`Backoff::MAX`]).
    pub async fn sleep(&mut self, wait: Duration) {
        tokio::time::sleep(wait).await;
        self.step = (self.step * 2).min(Self::MAX);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn steps_double_up_to_the_max_and_never_undercut_the_floor() {
        let mut b = Backoff::new(Duration::from_millis(100));
        let mut seen = Vec::new();
        for _ in 0..8 {
            let w = b.wait(None);
            seen.push(w.as_millis());
            b.sleep(w).await;
        }
        assert_eq!(seen, [100, 200, 400, 800, 1600, 3200, 5000, 5000]);
        assert_eq!(b.wait(Some(Duration::from_secs(9))), Duration::from_secs(9));
        assert_eq!(b.wait(Some(Duration::from_millis(1))), Backoff::MAX);
        let mut t = Backoff::new(Duration::from_millis(50));
        t.at_least(Duration::from_millis(500));
        assert_eq!(t.wait(None), Duration::from_millis(500));
        let soon = Instant::now() + Duration::from_millis(100);
        assert!(Backoff::fits(Duration::from_millis(99), soon));
        assert!(!Backoff::fits(Duration::from_millis(100), soon));
    }
}
