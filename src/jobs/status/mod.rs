//! The daemon's heartbeat and whether the service is healthy: the daemon writes its
//! heartbeat into the ledger ([`Pulse`], in `pulse`); `cxreport status` (a liveness or readiness
//! probe, a cron monitor) judges it and each configured job's latest run into lines
//! for a person and the problems that make the answer "no", each with the next step.
//! `status` reads the ledger read-only: asking never blocks the daemon or changes
//! anything.
//!
//! Liveness is judged on real time: the heartbeat records the real time of each tick
//! and, beside it, the daemon's own clock (a rehearsal clock runs ahead of the real
//! one; next fires are told on it).

mod pulse;

pub use pulse::Pulse;

use std::path::Path;

use chrono::{DateTime, Duration, Utc};

use super::config::Config;
use super::ledger::{DeliveryState, Heartbeat, Ledger, LedgerError, RunRecord, RunState};

/// How often the daemon writes its heartbeat (real time); `status`'s default
/// `--max-age` is many of these.
pub const HEARTBEAT_EVERY: std::time::Duration = std::time::Duration::from_secs(2);
/// A heartbeat older than this (real time) is a daemon that is not running.
pub const DEFAULT_MAX_AGE: std::time::Duration = std::time::Duration::from_secs(120);
/// The least `--max-age`: a few heartbeats, so that a live daemon is never judged
/// silent between two of them.
pub const MIN_MAX_AGE_SECS: u64 = 5;
const _: () = assert!(HEARTBEAT_EVERY.as_secs() * 2 < MIN_MAX_AGE_SECS);
/// A daemon clock further than this from the real one is a rehearsal clock.
const REHEARSAL: Duration = Duration::seconds(60);

/// What `status` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// One line per fact: the daemon, then each job.
    pub lines: Vec<String>,
    /// What makes the service unhealthy, each with what to do; empty when healthy.
    pub problems: Vec<String>,
}

impl Report {
    pub fn healthy(&self) -> bool {
        self.problems.is_empty()
    }
}

/// What to judge.
#[derive(Debug, Clone, Copy)]
pub struct Ask {
    /// Real time now.
    pub now: DateTime<Utc>,
    pub max_age: std::time::Duration,
    /// The daemon alone (a liveness probe: restarting it mends nothing of a failed run).
    pub daemon_only: bool,
}

/// This machine's name, as the heartbeat records it (the alerts' name for it).
pub fn host_name() -> String {
    super::alerts::host_name().unwrap_or_else(|| "unknown".to_owned())
}

/// Whether process `pid` exists on this machine; `None` when that cannot be told
/// (no `/proc`).
fn process_alive(pid: u32) -> Option<bool> {
    Path::new("/proc/self")
        .exists()
        .then(|| Path::new("/proc").join(pid.to_string()).exists())
}

/// Reads the ledger of `config` (read-only) and judges it.
pub fn status(config: &Config, ask: Ask) -> Result<Report, LedgerError> {
    let path = config.state_path();
    if !path.exists() {
        return Ok(Report {
            lines: vec![format!("no ledger at {}", path.display())],
            problems: vec![format!(
                "the daemon has never run here: there is no ledger at {}; start it (`cxreport daemon --config {}`, `systemctl start cxreport`, or the container), then ask again",
                path.display(),
                config.path.display()
            )],
        });
    }
    let ledger = Ledger::open_read_only(&path)?;
    let beats = ledger.heartbeats()?;
    let runs = if ask.daemon_only {
        Vec::new()
    } else {
        ledger.latest_runs()?
    };
    let unsent_alerts = if ask.daemon_only {
        0
    } else {
        ledger.pending_alerts(None)?.len()
    };
    let here = host_name();
    let mut report = judge(config, beats.first(), &runs, ask, |h| {
        if h.host == here {
            process_alive(h.pid)
        } else {
            None
        }
    });
    if unsent_alerts > 0 {
        report.lines.push(format!(
            "{unsent_alerts} owner alert(s) not sent yet: the SMTP server does not take them (`cxreport history` shows why)"
        ));
    }
    Ok(report)
}

/// The judgement itself, pure: `beat` is the latest heartbeat, `runs` each job's
/// latest run, `alive` tells whether a heartbeat's process still exists (`None`:
/// cannot tell, e.g. another host).
pub fn judge(
    config: &Config,
    beat: Option<&Heartbeat>,
    runs: &[RunRecord],
    ask: Ask,
    alive: impl Fn(&Heartbeat) -> Option<bool>,
) -> Report {
    let mut lines = Vec::new();
    let mut problems = Vec::new();
    let start = format!(
        "start it (`systemctl start cxreport`, `docker start …`, or `cxreport daemon --config {}`)",
        config.path.display()
    );
    match beat {
        None => {
            lines.push("daemon: no heartbeat in the ledger".to_owned());
            problems.push(format!(
                "no daemon has run on this ledger yet (or only a version before heartbeats): {start}"
            ));
        }
        Some(h) => {
            let age = (ask.now - h.ticked_at).max(Duration::zero());
            let max_age = Duration::from_std(ask.max_age).unwrap_or(Duration::MAX);
            lines.push(format!(
                "daemon: host {}, pid {}, cxreport {}, started {}; last tick {} ago ({})",
                h.host,
                h.pid,
                h.version,
                time(h.started_at),
                ago(age),
                time(h.ticked_at)
            ));
            if (h.clock_at - h.ticked_at).abs() > REHEARSAL {
                lines.push(format!(
                    "  its clock is a rehearsal clock: it read {} at that tick",
                    time(h.clock_at)
                ));
            }
            if let Some(stopped) = h.stopped_at {
                problems.push(format!(
                    "the daemon stopped at {} ({} ago), as asked (SIGTERM or SIGINT): {start}",
                    time(stopped),
                    ago((ask.now - stopped).max(Duration::zero()))
                ));
            } else if let Some(stopping) = h.stopping_at.filter(|_| age <= max_age) {
                problems.push(format!(
                    "the daemon is stopping (asked at {}): it waits for the work in flight, then exits; {start} once it has",
                    time(stopping)
                ));
            } else if age > max_age {
                let why = match alive(h) {
                    Some(false) => format!(
                        "its process (pid {}) is gone: it was killed or crashed. Its log says why (`journalctl -u cxreport`, `docker logs …`); then {start}",
                        h.pid
                    ),
                    Some(true) => format!(
                        "its process (pid {}) is still there but does not tick: it may be stuck. Look at its log (`journalctl -u cxreport`), then restart it (`systemctl restart cxreport`)",
                        h.pid
                    ),
                    None => format!(
                        "it ran on host {} (pid {}): look there, or {start}",
                        h.host, h.pid
                    ),
                };
                problems.push(format!(
                    "the daemon's last tick was {} ago, more than --max-age {} s: {why}",
                    ago(age),
                    ask.max_age.as_secs()
                ));
            } else if let Some(e) = &h.last_error {
                problems.push(format!(
                    "the daemon runs, but its latest tick failed: {e}. Its log has the details; fix the cause (often the ledger's disk or permissions) and it resumes by itself"
                ));
            }
        }
    }
    if ask.daemon_only {
        return Report { lines, problems };
    }
    // Next fires as the daemon's clock sees them.
    let clock = beat.map_or(ask.now, |h| {
        h.clock_at
            .checked_add_signed((ask.now - h.ticked_at).max(Duration::zero()))
            .unwrap_or(h.clock_at)
    });
    for job in &config.jobs {
        let next = job
            .cron
            .upcoming(job.timezone, clock, 1)
            .first()
            .map_or_else(
                || "no next fire".to_owned(),
                |t| {
                    format!(
                        "next fire {}",
                        t.with_timezone(&job.timezone).format("%Y-%m-%d %H:%M %Z")
                    )
                },
            );
        let Some(run) = runs.iter().find(|r| r.job == job.name) else {
            lines.push(format!("{}: no run yet; {next}", job.name));
            continue;
        };
        let finished = run.finished_at.as_deref().unwrap_or("-");
        match run.state {
            RunState::Succeeded => lines.push(format!(
                "{}: latest run {} succeeded (finished {finished} UTC); {next}",
                job.name, run.period
            )),
            RunState::Running => lines.push(format!(
                "{}: run {} in flight (started {} UTC); {next}",
                job.name,
                run.period,
                run.started_at.as_deref().unwrap_or("-")
            )),
            state @ (RunState::Failed | RunState::Skipped) => {
                lines.push(format!(
                    "{}: latest run {} {state} (finished {finished} UTC); {next}",
                    job.name, run.period
                ));
                problems.push(run_problem(&job.name, run));
            }
        }
    }
    Report { lines, problems }
}

/// A job's latest run that did not succeed, with what to do about it.
fn run_problem(job: &str, run: &RunRecord) -> String {
    let why = run.error.as_deref().unwrap_or("no reason was recorded");
    let what = if run.state == RunState::Skipped {
        "did not run"
    } else {
        "failed"
    };
    let waiting = run
        .deliveries
        .iter()
        .filter(|d| d.state == DeliveryState::Failed)
        .filter_map(|d| d.retry_until.as_deref())
        .max();
    let unsent = run
        .deliveries
        .iter()
        .any(|d| matches!(d.state, DeliveryState::Failed | DeliveryState::GaveUp));
    let next = if let Some(until) = waiting {
        format!(
            "the daemon tries its deliveries again until {until} UTC; to send them now: `cxreport retry --job {job} --period {}`",
            run.period
        )
    } else if unsent {
        format!(
            "once the cause is fixed, `cxreport retry --job {job} --period {}` sends what was not delivered",
            run.period
        )
    } else {
        let as_of = run
            .fire_time
            .as_deref()
            .and_then(|t| crate::source::timestamp::parse(t, chrono_tz::Tz::UTC).ok())
            .map(|t| format!(" --as-of {}", t.format("%Y-%m-%dT%H:%M:%SZ")))
            .unwrap_or_default();
        format!("once the cause is fixed, run it again: `cxreport run --job {job}{as_of} --send`")
    };
    format!(
        "job `{job}`: its latest run ({}) {what}: {why}; `cxreport history --job {job}` has the details; {next}",
        run.period
    )
}

fn time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

/// A duration as a person reads it: seconds, minutes, hours or days.
fn ago(d: Duration) -> String {
    let s = d.num_seconds();
    match s {
        ..120 => format!("{s} s"),
        120..7200 => format!("{} min", s / 60),
        7200..172_800 => format!("{} h", s / 3600),
        _ => format!("{} days", s / 86_400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobs::ledger::DeliveryRecord;

    fn at(s: &str) -> DateTime<Utc> {
        crate::source::timestamp::parse(s, chrono_tz::Tz::UTC).unwrap()
    }

    fn config() -> Config {
        Config::parse(
            Path::new("/etc/cxreport/schedules.toml"),
            "[defaults]\ndatabase = \"demo\"\noutput_dir = \"/var/lib/cxreport\"\n\
             [smtp]\noutbox = \"/var/lib/cxreport/outbox\"\nfrom = \"r@example.com\"\n\
             [[job]]\nname = \"monthly\"\ncron = \"0 8 1 * *\"\n\
             [[job]]\nname = \"weekly\"\ncron = \"0 7 * * 1\"\ntimezone = \"Asia/Shanghai\"\n",
        )
        .unwrap()
    }

    fn beat() -> Heartbeat {
        Heartbeat {
            host: "web-1".into(),
            pid: 42,
            version: "0.1.0".into(),
            started_at: at("2024-06-01 08:00:00"),
            ticked_at: at("2024-06-01 08:10:00"),
            clock_at: at("2024-06-01 08:10:00"),
            stopping_at: None,
            stopped_at: None,
            last_error: None,
        }
    }

    fn ask(now: &str) -> Ask {
        Ask {
            now: at(now),
            max_age: DEFAULT_MAX_AGE,
            daemon_only: false,
        }
    }

    fn run(job: &str, state: &str, error: Option<&str>) -> RunRecord {
        RunRecord {
            job: job.into(),
            period: "2024-01-01_2024-05-31".into(),
            fire_time: Some("2024-06-01 08:00:00".into()),
            state: RunState::parse(state).unwrap(),
            started_at: Some("2024-06-01 08:00:00".into()),
            finished_at: Some("2024-06-01 08:00:09".into()),
            output_dir: None,
            error: error.map(str::to_owned),
            attempts: 1,
            deliveries: Vec::new(),
            watch: Vec::new(),
            editions: Vec::new(),
        }
    }

    #[test]
    fn a_daemon_that_ticked_recently_with_good_runs_is_healthy() {
        let c = config();
        let runs = [run("monthly", "succeeded", None)];
        let r = judge(&c, Some(&beat()), &runs, ask("2024-06-01 08:10:30"), |_| {
            Some(true)
        });
        assert!(r.healthy(), "{r:?}");
        assert!(
            r.lines[0].contains("host web-1, pid 42") && r.lines[0].contains("30 s ago"),
            "{r:?}"
        );
        assert!(
            r.lines[1].starts_with("monthly: latest run 2024-01-01_2024-05-31 succeeded"),
            "{r:?}"
        );
        assert!(
            r.lines[1].ends_with("next fire 2024-07-01 08:00 UTC"),
            "{r:?}"
        );
        assert!(
            r.lines[2].starts_with("weekly: no run yet; next fire 2024-06-03 07:00 CST"),
            "{r:?}"
        );
    }

    #[test]
    fn liveness_is_judged_on_real_time_and_fires_on_the_daemons_clock() {
        let c = config();
        // A rehearsal clock years ahead: the real tick decides.
        let h = Heartbeat {
            clock_at: at("2030-12-31 23:00:00"),
            ..beat()
        };
        let r = judge(&c, Some(&h), &[], ask("2024-06-01 08:11:00"), |_| {
            Some(true)
        });
        assert!(r.healthy(), "{r:?}");
        assert!(
            r.lines[1].contains("rehearsal clock") && r.lines[1].contains("2030-12-31 23:00:00")
        );
        assert!(
            r.lines[2].ends_with("next fire 2031-01-01 08:00 UTC"),
            "{r:?}"
        );
        let r = judge(&c, Some(&h), &[], ask("2024-06-01 08:12:01"), |_| {
            Some(true)
        });
        assert_eq!(r.problems.len(), 1, "{r:?}");
        assert!(
            r.problems[0].contains("last tick was 2 min ago, more than --max-age 120 s"),
            "{r:?}"
        );
        assert!(
            r.problems[0].contains("still there but does not tick"),
            "{r:?}"
        );
    }

    #[test]
    fn a_stopped_gone_or_failing_daemon_is_unhealthy_and_says_what_to_do() {
        let c = config();
        let stopped = Heartbeat {
            stopping_at: Some(at("2024-06-01 08:09:58")),
            stopped_at: Some(at("2024-06-01 08:10:00")),
            ..beat()
        };
        let r = judge(&c, Some(&stopped), &[], ask("2024-06-01 08:10:05"), |_| {
            Some(false)
        });
        assert_eq!(r.problems.len(), 1, "{r:?}");
        assert!(
            r.problems[0].starts_with("the daemon stopped at 2024-06-01 08:10:00 UTC (5 s ago)"),
            "{r:?}"
        );
        assert!(r.problems[0].contains("cxreport daemon --config /etc/cxreport/schedules.toml"));

        let stopping = Heartbeat {
            stopping_at: Some(at("2024-06-01 08:09:58")),
            ..beat()
        };
        let r = judge(&c, Some(&stopping), &[], ask("2024-06-01 08:10:05"), |_| {
            Some(true)
        });
        assert!(r.problems[0].contains("is stopping"), "{r:?}");

        let r = judge(&c, Some(&beat()), &[], ask("2024-06-01 11:10:00"), |_| {
            Some(false)
        });
        assert!(
            r.problems[0].contains("3 h ago") && r.problems[0].contains("pid 42) is gone"),
            "{r:?}"
        );
        let r = judge(&c, Some(&beat()), &[], ask("2024-06-03 11:10:00"), |_| None);
        assert!(
            r.problems[0].contains("2 days ago") && r.problems[0].contains("host web-1"),
            "{r:?}"
        );

        let failing = Heartbeat {
            last_error: Some(
                "run ledger /var/lib/cxreport/cxreport-state.sqlite: disk I/O error".into(),
            ),
            ..beat()
        };
        let r = judge(&c, Some(&failing), &[], ask("2024-06-01 08:10:01"), |_| {
            Some(true)
        });
        assert!(
            r.problems[0].contains("latest tick failed: run ledger"),
            "{r:?}"
        );

        let r = judge(&c, None, &[], ask("2024-06-01 08:10:01"), |_| None);
        assert!(
            r.problems[0].starts_with("no daemon has run on this ledger"),
            "{r:?}"
        );
    }

    #[test]
    fn a_job_whose_latest_run_failed_is_named_with_the_next_step() {
        let c = config();
        let failed = run("monthly", "failed", Some("no conversations in the window"));
        let r = judge(
            &c,
            Some(&beat()),
            std::slice::from_ref(&failed),
            ask("2024-06-01 08:10:01"),
            |_| Some(true),
        );
        assert_eq!(r.problems.len(), 1, "{r:?}");
        let p = &r.problems[0];
        assert!(p.starts_with("job `monthly`: its latest run (2024-01-01_2024-05-31) failed: no conversations in the window"), "{p}");
        assert!(
            p.contains("`cxreport run --job monthly --as-of 2024-06-01T08:00:00Z --send`"),
            "{p}"
        );

        // Deliveries waiting for their retry: the daemon sends them; `retry` now.
        let mut waiting = failed.clone();
        waiting.deliveries.push(DeliveryRecord {
            region: String::new(),
            lang: "en".into(),
            recipient: "ceo@example.com".into(),
            state: DeliveryState::Failed,
            attempts: 2,
            last_error: Some("connection refused".into()),
            message_id: "<x@y>".into(),
            possible_duplicate: false,
            next_attempt_at: Some("2024-06-01 08:20:00".into()),
            retry_until: Some("2024-07-01 08:00:00".into()),
        });
        let r = judge(
            &c,
            Some(&beat()),
            &[waiting],
            ask("2024-06-01 08:10:01"),
            |_| Some(true),
        );
        assert!(
            r.problems[0].contains("until 2024-07-01 08:00:00 UTC")
                && r.problems[0]
                    .contains("cxreport retry --job monthly --period 2024-01-01_2024-05-31"),
            "{r:?}"
        );

        let skipped = run(
            "weekly",
            "skipped",
            Some("a previous run of this job was still in flight"),
        );
        let r = judge(
            &c,
            Some(&beat()),
            &[skipped],
            ask("2024-06-01 08:10:01"),
            |_| Some(true),
        );
        assert!(
            r.problems[0].contains("job `weekly`") && r.problems[0].contains("did not run"),
            "{r:?}"
        );

        // Running, or a job no longer configured: not a problem.
        let r = judge(
            &c,
            Some(&beat()),
            &[run("monthly", "running", None), run("gone", "failed", None)],
            ask("2024-06-01 08:10:01"),
            |_| Some(true),
        );
        assert!(r.healthy(), "{r:?}");
        assert!(r.lines[1].contains("in flight"), "{r:?}");

        // The daemon alone: a failed run does not count.
        let only = Ask {
            daemon_only: true,
            ..ask("2024-06-01 08:10:01")
        };
        let r = judge(&c, Some(&beat()), &[failed], only, |_| Some(true));
        assert!(r.healthy() && r.lines.len() == 1, "{r:?}");
    }

    #[test]
    fn no_ledger_is_a_daemon_that_never_ran_here() {
        let dir = tempfile::tempdir().unwrap();
        let text = format!(
            "[defaults]\ndatabase = \"demo\"\noutput_dir = \"{}\"\n[[job]]\nname = \"j\"\ncron = \"0 8 * * *\"\n",
            dir.path().join("out").display()
        );
        let c = Config::parse(&dir.path().join("schedules.toml"), &text).unwrap();
        let r = status(&c, ask("2024-06-01 08:10:01")).unwrap();
        assert!(
            r.problems[0].starts_with("the daemon has never run here"),
            "{r:?}"
        );
        assert!(!dir.path().join("out").exists(), "status creates nothing");
    }
}
