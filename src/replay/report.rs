//! What `trigger-relay replay` tells its operator: one line on stdout per event that was not delivered
//! (orphaned or failed, with its position and tracking id, so nothing disappears into a count), a progress line
//! on stderr (rewritten in place on a terminal, a line every few seconds otherwise), and the summary table.
//!
//! Hand-written rather than with a progress-bar crate: it is a line of counts and a table, and a crate would
//! bring its own terminal handling for that.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

/// Most subscriptions listed one by one in the summary (a dead letter with more names the rest `(others)`).
const MAX_ROWS: usize = 10_000;

/// The name column of a subscription neither the relay nor the dead letter names.
const UNKNOWN: &str = "(unknown)";

/// Counts for one subscription.
#[derive(Debug, Default, Clone)]
pub struct Row {
    pub name: Option<String>,
    pub sent: u64,
    pub failed: u64,
    pub orphaned: u64,
}

/// Counts of one replay.
#[derive(Debug, Default)]
pub struct Stats {
    /// Records read from the dead letter.
    pub read: u64,
    /// Records that passed the filters.
    pub selected: u64,
    pub sent: u64,
    pub failed: u64,
    /// Selected, with no subscription to go to (removed, disabled, another trigger, not a relay dead letter).
    pub orphaned: u64,
    pub in_flight: u64,
    pub skipped_reason: u64,
    pub skipped_time: u64,
    /// Dead letters that are themselves replays (`replay: true`).
    pub skipped_replays: u64,
    /// Failures by reason.
    pub failures: BTreeMap<&'static str, u64>,
    pub rows: BTreeMap<String, Row>,
}

impl Stats {
    fn row(&mut self, id: Option<&str>, name: Option<String>) -> &mut Row {
        let key = match id {
            Some(id) if self.rows.len() < MAX_ROWS || self.rows.contains_key(id) => id.to_string(),
            Some(_) => "(others)".to_string(),
            None => "(none)".to_string(),
        };
        let row = self.rows.entry(key).or_default();
        if row.name.is_none() {
            row.name = name;
        }
        row
    }

    pub fn sent(&mut self, id: &str, name: Option<String>) {
        self.sent += 1;
        self.row(Some(id), name).sent += 1;
    }

    pub fn failed(&mut self, id: &str, name: Option<String>, reason: &'static str) {
        self.failed += 1;
        *self.failures.entry(reason).or_default() += 1;
        self.row(Some(id), name).failed += 1;
    }

    pub fn orphan(&mut self, id: Option<&str>, name: Option<String>) {
        self.orphaned += 1;
        self.row(id, name).orphaned += 1;
    }

    pub fn skipped(&self) -> u64 {
        self.skipped_reason + self.skipped_time + self.skipped_replays
    }

    /// Every selected event delivered (or, in a dry run, deliverable).
    pub fn complete(&self) -> bool {
        self.failed == 0 && self.orphaned == 0
    }

    /// The counts on one line (progress and summary); `total`: how many records the source holds at most.
    pub fn line(&self, dry_run: bool, total: Option<u64>) -> String {
        let read = match total {
            Some(t) => format!("read {} of at most {t}", self.read),
            None => format!("read {}", self.read),
        };
        let skipped = format!(
            "skipped {} (reason {}, time {}, replays {})",
            self.skipped(),
            self.skipped_reason,
            self.skipped_time,
            self.skipped_replays
        );
        if dry_run {
            format!(
                "{read}, selected {}, would send {}, orphaned {}, {skipped}",
                self.selected, self.sent, self.orphaned
            )
        } else {
            format!(
                "{read}, selected {}, sent {}, failed {}, orphaned {}, in flight {}, {skipped}",
                self.selected, self.sent, self.failed, self.orphaned, self.in_flight
            )
        }
    }
}

/// One event not delivered, on stdout as it happens: `orphaned  <position>  tracking-id <id>  <why>`.
pub fn line(what: &str, position: &str, tracking_id: &str, why: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        "{what:<9} {position}  tracking-id {tracking_id}  {}",
        why.replace(['\r', '\n'], " ")
    );
}

/// The progress line on stderr.
pub struct Progress {
    tty: bool,
    total: Option<u64>,
    dry_run: bool,
    last: Instant,
    started: Instant,
}

impl Progress {
    pub fn new(total: Option<u64>, dry_run: bool) -> Self {
        let now = Instant::now();
        Self {
            tty: std::io::stderr().is_terminal(),
            total,
            dry_run,
            last: now,
            started: now,
        }
    }

    fn render(&self, s: &Stats) -> String {
        format!(
            "replay: {} ({:.0} s)",
            s.line(self.dry_run, self.total),
            self.started.elapsed().as_secs_f64()
        )
    }

    pub fn tick(&mut self, s: &Stats) {
        let every = if self.tty {
            Duration::from_millis(100)
        } else {
            Duration::from_secs(5)
        };
        if self.last.elapsed() < every {
            return;
        }
        self.last = Instant::now();
        let mut err = std::io::stderr().lock();
        if self.tty {
            let _ = write!(err, "\r\x1b[K{}", self.render(s));
            let _ = err.flush();
        } else {
            let _ = writeln!(err, "{}", self.render(s));
        }
    }

    pub fn finish(&mut self, s: &Stats) {
        let mut err = std::io::stderr().lock();
        if self.tty {
            let _ = write!(err, "\r\x1b[K");
        }
        let _ = writeln!(err, "{}", self.render(s));
    }
}

/// The summary table on stdout.
pub fn summary(s: &Stats, from: &str, dry_run: bool, note: Option<&str>) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        "\nreplay of {from}{}",
        if dry_run {
            " (dry run: nothing sent)"
        } else {
            ""
        }
    );
    if !s.rows.is_empty() {
        let width = s
            .rows
            .values()
            .filter_map(|r| r.name.as_deref())
            .map(str::len)
            .chain([UNKNOWN.len()])
            .max()
            .unwrap_or(0)
            .min(40);
        let sent = if dry_run { "WOULD SEND" } else { "SENT" };
        let _ = writeln!(
            out,
            "{:<36}  {:<width$}  {sent:>10}  {:>6}  {:>8}",
            "SUBSCRIPTION", "NAME", "FAILED", "ORPHANED"
        );
        for (id, r) in &s.rows {
            let name = r.name.as_deref().unwrap_or(UNKNOWN);
            let _ = writeln!(
                out,
                "{id:<36}  {name:<width$}  {:>10}  {:>6}  {:>8}",
                r.sent, r.failed, r.orphaned
            );
        }
    }
    if !s.failures.is_empty() {
        let by: Vec<String> = s.failures.iter().map(|(r, n)| format!("{r} {n}")).collect();
        let _ = writeln!(out, "failed by reason: {}", by.join(", "));
    }
    if let Some(n) = note {
        let _ = writeln!(out, "note: {n}");
    }
    let _ = writeln!(out, "{}", s.line(dry_run, None));
    if s.orphaned > 0 {
        let _ = writeln!(
            out,
            "orphaned events stay in the dead letter; replay them to another subscription with --subscription"
        );
    }
}
