//! Fixed-window request counters per key, with a hard cap on how many keys are tracked.
//!
//! Why it exists: the admin API limits each caller (ISC's 100 requests per 10 s) and the ingress can limit each
//! source IP and each credential (`[ingress.rate_limit]`). Callers and credentials are configured, so their tables
//! are small, but source IPs are chosen by whoever connects: a table keyed by them must not grow without bound.
//! `governor`'s keyed limiter (a `DashMap` per key) grows until it is swept with `retain_recent`, and has no cap
//! of its own, so we keep these ~100 lines instead (see ARCHITECTURE.md).
//!
//! The table never holds more than `max_keys` entries. When a new key arrives and the table is full, windows
//! that have expired are dropped first (a sweep: at most once per eighth of a window, and never before the
//! oldest window in the table can have expired, so a full table of live windows costs no scan per request). If
//! the table is still full, the new key **fails open**: its request is allowed without being counted
//! ([`Admitted::Untracked`], which the caller counts in a metric). We chose that over the alternatives:
//! refusing unknown keys would let anyone who fills the table with spoofed or many sources lock out every
//! other source (ISC included), and evicting live windows would let the same flood reset the counts of the
//! sources it is meant to limit. A source that is already tracked stays limited while the table is full.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A request that may go ahead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admitted {
    /// Counted in its key's window.
    Counted,
    /// Not counted: the table is full of live windows (fail open).
    Untracked,
}

/// A request over its key's limit: wait this many seconds (rounded up, at least 1) for the window to reset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OverLimit {
    pub retry_after_s: u64,
}

struct Window {
    start: Instant,
    count: u32,
}

struct Table<K> {
    windows: HashMap<K, Window>,
    /// A full table is not swept again before this (see the module doc).
    next_sweep: Option<Instant>,
}

/// At most `limit` requests per key per `window`; at most `max_keys` keys tracked.
pub struct RateLimiter<K> {
    limit: u32,
    window: Duration,
    max_keys: usize,
    table: Mutex<Table<K>>,
}

impl<K: Hash + Eq> RateLimiter<K> {
    /// `limit` and `window` must be greater than 0 (the config checks); `max_keys` is raised to at least 1.
    pub fn new(limit: u32, window: Duration, max_keys: usize) -> Self {
        Self {
            limit,
            window,
            max_keys: max_keys.max(1),
            table: Mutex::new(Table {
                windows: HashMap::new(),
                next_sweep: None,
            }),
        }
    }

    /// Count one request for `key`.
    pub fn check<Q>(&self, key: &Q) -> Result<Admitted, OverLimit>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        self.check_at(key, Instant::now())
    }

    /// `key`'s answer if it asked now, without counting a request: `Some` when it is over its limit.
    pub fn peek<Q>(&self, key: &Q) -> Option<OverLimit>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let now = Instant::now();
        let t = self.lock();
        let w = t.windows.get(key)?;
        if now.saturating_duration_since(w.start) >= self.window || w.count < self.limit {
            return None;
        }
        Some(self.over(w, now))
    }

    /// The answer for a window that is full at `now`: the seconds left in it, rounded up, at least 1.
    fn over(&self, w: &Window, now: Instant) -> OverLimit {
        let left = self
            .window
            .saturating_sub(now.saturating_duration_since(w.start));
        let s = left.as_secs() + u64::from(left.subsec_nanos() > 0);
        OverLimit {
            retry_after_s: s.max(1),
        }
    }

    /// Requests allowed per key per window.
    pub fn limit(&self) -> u32 {
        self.limit
    }

    /// How many keys are tracked now (never more than `max_keys`).
    pub fn tracked(&self) -> usize {
        self.lock().windows.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Table<K>> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn check_at<Q>(&self, key: &Q, now: Instant) -> Result<Admitted, OverLimit>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        let mut t = self.lock();
        if let Some(w) = t.windows.get_mut(key) {
            if now.saturating_duration_since(w.start) >= self.window {
                *w = Window {
                    start: now,
                    count: 0,
                };
            }
            if w.count >= self.limit {
                return Err(self.over(w, now));
            }
            w.count += 1;
            return Ok(Admitted::Counted);
        }
        if t.windows.len() >= self.max_keys {
            self.sweep(&mut t, now);
            if t.windows.len() >= self.max_keys {
                return Ok(Admitted::Untracked);
            }
        }
        t.windows.insert(
            key.to_owned(),
            Window {
                start: now,
                count: 1,
            },
        );
        Ok(Admitted::Counted)
    }

    /// Drop expired windows, unless a sweep cannot free anything yet or ran less than an eighth of a window ago.
    fn sweep(&self, t: &mut Table<K>, now: Instant) {
        if t.next_sweep.is_some_and(|at| now < at) {
            return;
        }
        let window = self.window;
        t.windows
            .retain(|_, w| now.saturating_duration_since(w.start) < window);
        // Nothing left can expire before the oldest remaining window does.
        let oldest_expiry = t.windows.values().map(|w| w.start + window).min();
        let soonest = now + window / 8;
        t.next_sweep = Some(oldest_expiry.map_or(soonest, |e| e.max(soonest)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const W: Duration = Duration::from_secs(10);

    #[test]
    fn limits_each_key_in_its_window_and_resets_after_it() {
        let l = RateLimiter::<String>::new(2, W, 10);
        let t0 = Instant::now();
        assert_eq!(l.check_at("a", t0), Ok(Admitted::Counted));
        assert_eq!(l.check_at("a", t0), Ok(Admitted::Counted));
        assert_eq!(
            l.check_at("a", t0 + Duration::from_millis(1500)),
            Err(OverLimit { retry_after_s: 9 })
        );
        // Another key has its own window.
        assert_eq!(l.check_at("b", t0), Ok(Admitted::Counted));
        // Less than a second left still says 1.
        assert_eq!(
            l.check_at("a", t0 + W - Duration::from_millis(1)),
            Err(OverLimit { retry_after_s: 1 })
        );
        assert_eq!(l.check_at("a", t0 + W), Ok(Admitted::Counted));
    }

    #[test]
    fn a_full_table_drops_expired_windows_then_fails_open_without_growing() {
        let l = RateLimiter::<u32>::new(1, W, 3);
        let t0 = Instant::now();
        for k in 0..3 {
            assert_eq!(l.check_at(&k, t0), Ok(Admitted::Counted));
        }
        // Full of live windows: a new key is let through uncounted; known keys stay limited.
        for _ in 0..5 {
            assert_eq!(l.check_at(&99, t0), Ok(Admitted::Untracked));
        }
        assert!(l.check_at(&0, t0).is_err());
        assert_eq!(l.tracked(), 3);
        // Once the windows expired, a sweep makes room.
        let later = t0 + W;
        assert_eq!(l.check_at(&99, later), Ok(Admitted::Counted));
        assert!(l.check_at(&99, later).is_err());
        assert_eq!(l.tracked(), 1);
    }

    #[test]
    fn a_full_table_of_live_windows_is_not_rescanned_per_request() {
        let l = RateLimiter::<u32>::new(1, W, 2);
        let t0 = Instant::now();
        assert!(l.check_at(&0, t0).is_ok());
        assert!(l.check_at(&1, t0 + Duration::from_secs(5)).is_ok());
        // Sweep at t0+1s frees nothing; the next may run when key 0's window ends (t0+10s).
        assert_eq!(
            l.check_at(&2, t0 + Duration::from_secs(1)),
            Ok(Admitted::Untracked)
        );
        assert_eq!(l.lock().next_sweep, Some(t0 + W));
        assert_eq!(
            l.check_at(&2, t0 + Duration::from_secs(9)),
            Ok(Admitted::Untracked)
        );
        assert_eq!(l.check_at(&2, t0 + W), Ok(Admitted::Counted));
        assert_eq!(l.tracked(), 2);
    }
}
