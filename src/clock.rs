//! The injected clock: everything that asks "what time is it" asks a [`Clock`], so the
//! window logic, the scheduler and the PDF's `today()` are testable at a fixed time.
//! Also the CPU time the process and a thread have used so far (for the manifest's
//! stage timings and the benchmark).

use chrono::{DateTime, Utc};

pub trait Clock: Send + Sync {
    fn now(&self) -> DateTime<Utc>;
}

/// A clock shared by the threads of one process (the daemon's workers, the ledgers
/// they open): the rehearsal clock drives their retries and alerts as it drives the
/// schedule.
pub type SharedClock = std::sync::Arc<dyn Clock>;

/// The real clock, shared.
pub fn system() -> SharedClock {
    std::sync::Arc::new(SystemClock)
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
        // A rehearsal left running long enough would pass the last instant a run
        // can be about: it stays there rather than overflow.
        self.start
            .checked_add_signed(chrono::Duration::microseconds((elapsed * 1e6) as i64))
            .map_or_else(latest, |t| t.min(latest()))
    }
}

/// The instants a run can be about (`--as-of`, `--clock-start`, window dates):
/// four-digit years from 1900, so that every window, comparison period and trend
/// month computed from them, and the PDF's date, stay representable.
pub const FIRST_YEAR: i32 = 1900;
pub const LAST_YEAR: i32 = 9999;

/// The latest instant a run can be about: 9999-12-31T23:59:59Z.
pub fn latest() -> DateTime<Utc> {
    chrono::NaiveDate::from_ymd_opt(LAST_YEAR, 12, 31)
        .and_then(|d| d.and_hms_opt(23, 59, 59))
        .map_or(DateTime::<Utc>::MAX_UTC, |t| t.and_utc())
}

/// The fastest a rehearsal clock runs (`--clock-speed`): a real second is then
/// about eleven and a half days, and the clock cannot pass the last instant a run
/// can be about within any rehearsal's length.
pub const MAX_SPEED: f64 = 1e6;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ClockError {
    #[error("`{text}` is not an RFC 3339 instant: {reason}")]
    Instant { text: String, reason: String },
    #[error(
        "`{text}` lies outside the instants a run can be about: years {first} to {last} ({first}-01-01T00:00:00Z to {last}-12-31T23:59:59Z)",
        first = FIRST_YEAR,
        last = LAST_YEAR
    )]
    InstantRange { text: String },
    #[error("`{text}` is not a speed: expected a number greater than 0 and at most {max:e}", max = MAX_SPEED)]
    Speed { text: String },
}

/// An instant given on the command line (`--as-of`), within the years a run can be
/// about.
pub fn parse_instant(text: &str) -> Result<DateTime<Utc>, ClockError> {
    let t: DateTime<Utc> =
        text.trim()
            .parse()
            .map_err(|e: chrono::ParseError| ClockError::Instant {
                text: text.to_owned(),
                reason: match chrono::NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d") {
                    // The likeliest slip; said plainly rather than as "premature end
                    // of input", and not guessed: which midnight is meant matters.
                    Ok(d) => format!(
                        "a date needs a time and an offset; for midnight UTC write {d}T00:00:00Z"
                    ),
                    Err(_) => format!(
                        "{e}; write it like 2024-07-01T00:00:00Z (UTC) or 2024-07-01T08:00:00+08:00"
                    ),
                },
            })?;
    if (FIRST_YEAR..=LAST_YEAR).contains(&chrono::Datelike::year(&t)) {
        Ok(t)
    } else {
        Err(ClockError::InstantRange {
            text: text.to_owned(),
        })
    }
}

/// A rehearsal clock's speed (`--clock-speed`): greater than 0, at most [`MAX_SPEED`].
pub fn parse_speed(text: &str) -> Result<f64, ClockError> {
    match text.trim().parse::<f64>() {
        Ok(v) if v > 0.0 && v <= MAX_SPEED => Ok(v),
        _ => Err(ClockError::Speed {
            text: text.to_owned(),
        }),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instants_outside_the_years_of_a_run_are_refused_by_name() {
        assert_eq!(
            parse_instant("2024-07-01T00:00:00Z").map(|t| t.to_rfc3339()),
            Ok("2024-07-01T00:00:00+00:00".to_owned())
        );
        assert!(parse_instant("9999-12-31T23:59:59Z").is_ok());
        for text in ["+10000-01-01T00:00:00Z", "1899-12-31T23:59:59Z"] {
            let e = parse_instant(text).unwrap_err();
            assert!(matches!(e, ClockError::InstantRange { .. }), "{text}: {e}");
            assert!(
                e.to_string().contains(text) && e.to_string().contains("1900"),
                "{e}"
            );
        }
        assert!(matches!(
            parse_instant("yesterday"),
            Err(ClockError::Instant { .. })
        ));
        // A date alone is the likeliest slip: the message gives the instant to write.
        let e = parse_instant("2024-07-01").unwrap_err().to_string();
        assert!(
            e.ends_with("not an RFC 3339 instant: a date needs a time and an offset; for midnight UTC write 2024-07-01T00:00:00Z"),
            "{e}"
        );
        assert!(!e.contains("premature"), "{e}");
    }

    #[test]
    fn speeds_are_bounded() {
        assert_eq!(parse_speed("240"), Ok(240.0));
        assert_eq!(parse_speed("1e6"), Ok(1e6));
        for text in ["1e15", "0", "-1", "inf", "NaN", "fast"] {
            let e = parse_speed(text).unwrap_err();
            assert!(e.to_string().contains(text), "{e}");
        }
    }

    /// A rehearsal clock far ahead stays at the last instant instead of panicking on
    /// the overflow.
    #[test]
    fn a_simulated_clock_does_not_overflow() {
        let clock = SimulatedClock::new(latest(), f64::MAX);
        std::thread::sleep(std::time::Duration::from_millis(2));
        assert_eq!(clock.now(), latest());
    }
}

/// CPU time (user + system) this process has used so far, its finished threads
/// included (Linux; `None` elsewhere).
pub fn process_cpu() -> Option<std::time::Duration> {
    cpu_of("/proc/self/stat")
}

/// CPU time (user + system) the calling thread has used so far (Linux).
pub fn thread_cpu() -> Option<std::time::Duration> {
    cpu_of("/proc/thread-self/stat")
}

/// `utime + stime` of a `/proc/…/stat` file. They count clock ticks of 10 ms (USER_HZ
/// is 100 on every Linux the tool runs on; reading `sysconf` would need libc): a
/// single short stage reads to ±10 ms, sums over many stages and runs are unbiased.
fn cpu_of(path: &str) -> Option<std::time::Duration> {
    stat_cpu(&std::fs::read_to_string(path).ok()?)
}

fn stat_cpu(stat: &str) -> Option<std::time::Duration> {
    // The command name (field 2) may hold spaces: count fields after its `)`.
    let mut fields = stat.get(stat.rfind(')')? + 1..)?.split_whitespace();
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(std::time::Duration::from_millis((utime + stime) * 10))
}

#[cfg(test)]
mod cpu_tests {
    use super::*;

    #[test]
    fn cpu_time_is_user_plus_system_ticks_after_the_command_name() {
        // pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt majflt
        // cmajflt utime stime …
        let stat = "42 (a (b) c) R 1 2 3 4 5 6 7 8 9 10 37 5 0 0 20";
        assert_eq!(stat_cpu(stat), Some(std::time::Duration::from_millis(420)));
        assert_eq!(stat_cpu("42 (x) R 1"), None);
    }

    #[test]
    fn the_process_has_used_at_least_what_this_thread_has() {
        let start = thread_cpu().expect("Linux");
        let mut x = 0u64;
        while thread_cpu().expect("Linux") < start + std::time::Duration::from_millis(20) {
            x = x.wrapping_add(1);
        }
        assert!(x > 0);
        assert!(process_cpu().expect("Linux") >= thread_cpu().expect("Linux"));
    }
}
