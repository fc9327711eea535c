//! The heartbeat as the daemon writes it ([`Pulse`]): its owner is `daemon`, which
//! beats it at each tick; `status` (the parent) judges what it wrote.

use chrono::{DateTime, Duration, Utc};

use super::{host_name, HEARTBEAT_EVERY};
use crate::jobs::config::Config;
use crate::jobs::ledger::{Heartbeat, Ledger};
// The real time, beside the daemon's clock: liveness is judged on it.
use crate::clock::{Clock, SystemClock};

/// A daemon's heartbeat as it writes it: at most every [`HEARTBEAT_EVERY`] while
/// nothing changes, at once when something does (a tick fails or recovers, a stop).
/// A heartbeat that cannot be written is logged; the daemon goes on (the ledger's
/// failures reach the owners through the daemon's own alerts).
pub struct Pulse {
    row: Heartbeat,
    state_path: std::path::PathBuf,
    written: Option<std::time::Instant>,
}

impl Pulse {
    /// The heartbeat of this process, starting now; forgets the heartbeats of
    /// daemons that stopped or fell silent a day ago.
    pub fn start(config: &Config, ledger: &Ledger, clock_now: DateTime<Utc>) -> Self {
        let now = SystemClock.now();
        if let Err(e) = ledger.prune_heartbeats(now - Duration::days(1)) {
            tracing::warn!("clearing old heartbeats: {e}");
        }
        Self {
            row: Heartbeat {
                host: host_name(),
                pid: std::process::id(),
                version: crate::VERSION.to_owned(),
                started_at: now,
                ticked_at: now,
                clock_at: clock_now,
                stopping_at: None,
                stopped_at: None,
                last_error: None,
            },
            state_path: config.state_path(),
            written: None,
        }
    }

    /// One tick done at `clock_now` (the daemon's clock), failed with `error` or not.
    pub fn beat(&mut self, clock_now: DateTime<Utc>, error: Option<String>) {
        let changed = error != self.row.last_error;
        self.row.last_error = error;
        self.row.clock_at = clock_now;
        let due = self.written.is_none_or(|w| w.elapsed() >= HEARTBEAT_EVERY);
        if changed || due {
            self.write();
        }
    }

    /// Asked to stop: the work in flight is being waited for.
    pub fn stopping(&mut self, clock_now: DateTime<Utc>) {
        self.row.stopping_at = Some(SystemClock.now());
        self.row.clock_at = clock_now;
        self.write();
    }

    /// Stopped as asked.
    pub fn stopped(&mut self, clock_now: DateTime<Utc>) {
        self.row.stopped_at = Some(SystemClock.now());
        self.row.clock_at = clock_now;
        self.write();
    }

    fn write(&mut self) {
        self.row.ticked_at = SystemClock.now();
        // Not tried again before the next beat is due: a ledger that fails is not
        // logged every second from here.
        self.written = Some(std::time::Instant::now());
        if let Err(e) = Ledger::open(&self.state_path).and_then(|l| l.put_heartbeat(&self.row)) {
            tracing::warn!("writing the daemon's heartbeat: {e}");
        }
    }
}
