//! The daemon: runs jobs when due, one job's runs after another and different jobs in
//! parallel, survives failing jobs, and stops cleanly on SIGINT/SIGTERM.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::config::{Config, Overlap};
use super::job::{fire_period, run_job};
use super::ledger::{Ledger, LedgerError};
use super::schedule;
use super::{Delivery, JobError};
use crate::clock::Clock;

// ---------------------------------------------------------------------------
// The daemon

/// Decides which fire times are due now and moves each job's cursor past them.
pub fn due_now(
    config: &Config,
    ledger: &Ledger,
    now: DateTime<Utc>,
) -> Result<Vec<(usize, DateTime<Utc>)>, LedgerError> {
    let mut out = Vec::new();
    for (i, job) in config.jobs.iter().enumerate() {
        let Some(cursor) = ledger.cursor(&job.name)? else {
            // First start: nothing before now counts as missed.
            ledger.set_cursor(&job.name, now)?;
            continue;
        };
        for fire in schedule::due(
            &job.cron,
            job.timezone,
            cursor,
            now,
            job.catchup,
            job.max_catchup,
        ) {
            out.push((i, fire));
        }
        if now > cursor {
            ledger.set_cursor(&job.name, now)?;
        }
    }
    Ok(out)
}

/// Runs jobs when due until `stop` is set (SIGINT/SIGTERM), then lets the runs in
/// flight finish.
pub fn run_daemon(
    config: &Config,
    clock: &dyn Clock,
    stop: Arc<AtomicBool>,
) -> Result<(), JobError> {
    let ledger = Ledger::open(&config.state_path())?;
    let mut workers: HashMap<String, JoinHandle<()>> = HashMap::new();
    let config = Arc::new(config.clone());
    // Runs a previous process left in flight are run again.
    let mut pending: Vec<(usize, DateTime<Utc>)> = Vec::new();
    for (job, period) in ledger.recover_interrupted()? {
        if let Some(i) = config.jobs.iter().position(|j| j.name == job) {
            let fire = ledger
                .history(Some(&job))?
                .into_iter()
                .find(|r| r.period == period)
                .and_then(|r| r.fire_time)
                .and_then(|t| crate::source::timestamp::parse(&t, chrono_tz::Tz::UTC).ok())
                .unwrap_or_else(|| clock.now());
            tracing::warn!(
                job,
                period,
                "re-running a run interrupted by a previous process"
            );
            pending.push((i, fire));
        }
    }
    tracing::info!(jobs = config.jobs.len(), ledger = %ledger.path().display(), "daemon started");
    while !stop.load(Ordering::SeqCst) {
        let now = clock.now();
        pending.extend(due_now(&config, &ledger, now)?);
        workers.retain(|_, h| !h.is_finished());
        let mut by_job: HashMap<usize, Vec<DateTime<Utc>>> = HashMap::new();
        for (i, fire) in pending.drain(..) {
            by_job.entry(i).or_default().push(fire);
        }
        for (i, mut fires) in by_job {
            let job = config.jobs[i].clone();
            fires.sort();
            if workers.contains_key(&job.name) && job.overlap == Overlap::Forbid {
                for fire in fires {
                    tracing::warn!(job = %job.name, %fire, "previous run still in flight; this fire is skipped");
                    let period = fire_period(fire);
                    ledger.record_skipped(
                        &job.name,
                        &period,
                        fire,
                        "a previous run of this job was still in flight",
                    )?;
                }
                continue;
            }
            let config = Arc::clone(&config);
            let name = job.name.clone();
            let handle = std::thread::spawn(move || {
                for fire in fires {
                    match run_job(&config, &job, fire, &Delivery::Send) {
                        Ok(r) => {
                            tracing::info!(job = %r.job, state = ?r.state, period = ?r.period, "run finished")
                        }
                        Err(e) => tracing::error!(job = %job.name, "run not started: {e}"),
                    }
                }
            });
            let key = if workers.contains_key(&name) {
                format!("{name}#{}", now.timestamp_micros())
            } else {
                name
            };
            workers.insert(key, handle);
        }
        // Sleep until the next fire time, waking regularly to notice a stop request.
        let next = config
            .jobs
            .iter()
            .filter_map(|j| j.cron.next_after(j.timezone, now))
            .min();
        let wait = next.map_or(Duration::from_secs(60), |n| {
            (n - clock.now()).to_std().unwrap_or(Duration::ZERO)
        });
        let deadline = std::time::Instant::now() + wait.min(Duration::from_secs(3600));
        while !stop.load(Ordering::SeqCst) && std::time::Instant::now() < deadline {
            std::thread::sleep(
                Duration::from_millis(200)
                    .min(deadline.saturating_duration_since(std::time::Instant::now())),
            );
        }
        if next.is_some_and(|n| clock.now() < n) && !stop.load(Ordering::SeqCst) {
            // Woken early by the hourly cap: loop and recompute.
            continue;
        }
    }
    tracing::info!(
        in_flight = workers.len(),
        "stopping: waiting for runs in flight"
    );
    for (_, h) in workers {
        let _ = h.join();
    }
    tracing::info!("daemon stopped");
    Ok(())
}

/// Sets `stop` on SIGINT or SIGTERM.
pub fn stop_on_signals() -> Result<Arc<AtomicBool>, JobError> {
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&stop)).map_err(JobError::Signal)?;
    }
    Ok(stop)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn at(s: &str) -> DateTime<Utc> {
        crate::source::timestamp::parse(s, chrono_tz::Tz::UTC).unwrap()
    }

    #[test]
    fn due_now_walks_cursors_with_a_fixed_clock() {
        let dir = tempfile::tempdir().unwrap();
        let text = format!(
            "[defaults]\noutput_dir = \"{}\"\n[[job]]\nname = \"daily\"\ncron = \"0 8 * * *\"\ncatchup = \"all\"\n[[job]]\nname = \"latest\"\ncron = \"0 8 * * *\"\ncatchup = \"latest\"\n",
            dir.path().display()
        );
        let config = Config::parse(Path::new("schedules.toml"), &text).unwrap();
        let ledger = Ledger::open(&config.state_path()).unwrap();
        // First start: nothing is missed.
        assert!(due_now(&config, &ledger, at("2024-06-10 09:00:00"))
            .unwrap()
            .is_empty());
        // Three days later.
        let due = due_now(&config, &ledger, at("2024-06-13 09:00:00")).unwrap();
        let daily: Vec<_> = due
            .iter()
            .filter(|(i, _)| *i == 0)
            .map(|(_, t)| *t)
            .collect();
        let latest: Vec<_> = due
            .iter()
            .filter(|(i, _)| *i == 1)
            .map(|(_, t)| *t)
            .collect();
        assert_eq!(
            daily,
            [
                at("2024-06-11 08:00:00"),
                at("2024-06-12 08:00:00"),
                at("2024-06-13 08:00:00")
            ]
        );
        assert_eq!(latest, [at("2024-06-13 08:00:00")]);
        // Already considered: nothing again.
        assert!(due_now(&config, &ledger, at("2024-06-13 09:30:00"))
            .unwrap()
            .is_empty());
    }
}
