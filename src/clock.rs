//! The injected clock: everything that asks "what time is it" asks a [`Clock`], so the
//! window logic, the scheduler and the PDF's `today()` are testable at a fixed time.

use chrono::{DateTime, Utc};

pub trait Clock: Send + Sync {
    fn now(&self) -> DateTime<Utc>;
}

/// The real clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock that starts at a chosen instant and runs `speed` times as fast as the real
/// one: a daemon rehearsal of a DST change or a catch-up, end to end, in seconds.
#[derive(Debug, Clone, Copy)]
pub struct SimulatedClock {
    start: DateTime<Utc>,
    real_start: std::time::Instant,
    speed: f64,
}

impl SimulatedClock {
    pub fn new(start: DateTime<Utc>, speed: f64) -> Self {
        Self {
            start,
            real_start: std::time::Instant::now(),
            speed,
        }
    }
}

impl Clock for SimulatedClock {
    fn now(&self) -> DateTime<Utc> {
        let elapsed = self.real_start.elapsed().as_secs_f64() * self.speed;
        self.start + chrono::Duration::microseconds((elapsed * 1e6) as i64)
    }
}

/// A clock stopped at one instant (tests, reruns of a scheduled fire time).
#[derive(Debug, Clone, Copy)]
pub struct FixedClock(pub DateTime<Utc>);

impl Clock for FixedClock {
    fn now(&self) -> DateTime<Utc> {
        self.0
    }
}

/// A run's time limit: the chart engine and SQLite stop work past it, with an error
/// that says which limit it was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadline {
    pub at: std::time::Instant,
    /// The limit as configured, for messages.
    pub budget: std::time::Duration,
}

impl Deadline {
    /// A limit of `budget` from now.
    pub fn after(budget: std::time::Duration) -> Self {
        Self {
            at: std::time::Instant::now() + budget,
            budget,
        }
    }

    pub fn passed(&self) -> bool {
        std::time::Instant::now() >= self.at
    }
}
