//! The daemon: runs jobs when due, one job's runs after another and different jobs in
//! parallel; recovers runs whose process died, retries deliveries that failed for a
//! transient reason and sends the owner alerts it kept; survives failing jobs and an
//! unusable ledger (alerting the owners of the fires that cannot start, at most once
//! per job and kind of alert in [`ALERT_WINDOW`]); notices a schedule cursor ahead of
//! its clock; records its heartbeat ([`Pulse`](super::status::Pulse), for `cxreport
//! status`); stops cleanly on SIGINT/SIGTERM (a delivery in flight gets
//! [`mail::STOP_GRACE`](super::mail::STOP_GRACE) to finish), and at once on a second
//! one.
//!
//! Why this file is long (about 730 lines): the tick is one loop whose steps
//! (recovery, due fires, retries, expired retries, kept alerts) share the daemon's
//! state (its workers, the fires dispatched, the alert throttle), and its unit tests (a
//! fake clock, a busy job, an expired retry) live beside it: a quarter of the file.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use super::alerts::Route;
use super::config::{Config, Job, Overlap};
use super::job::{fire_period, fire_text, run_job, Runner};
use super::ledger::{Ledger, RunState};
use super::schedule::{self, Catchup};
use super::{alerts, resend};
use super::{Delivery, JobError};
use crate::clock::SharedClock;

/// How often the daemon looks at the clock and the ledger.
const TICK: Duration = Duration::from_secs(1);
/// A cursor further ahead of the clock than this was not written by this clock (a
/// clock stepped back, a rehearsal run on the production ledger): left alone, the job
/// would stay silent until real time caught up.
const CURSOR_TOLERANCE: chrono::Duration = chrono::Duration::minutes(2);
/// Alerts the daemon sends without a ledger to keep them in (the ledger is what
/// fails): at most one per job and kind in this window; the ones held back are counted
/// in the next.
pub const ALERT_WINDOW: chrono::Duration = chrono::Duration::minutes(15);

/// One piece of a job's work.
#[derive(Debug, Clone)]
enum Work {
    /// The scheduled run at this fire time.
    Fire(DateTime<Utc>),
    /// Deliveries of this period waiting for another try.
    Retry(String),
}

struct Daemon {
    config: Arc<Config>,
    /// The daemon's clock (a rehearsal clock, or the real one): the schedule, the
    /// ledgers its workers open, their retries and alerts all read it.
    clock: SharedClock,
    stop: Arc<AtomicBool>,
    /// By job name (or `name#n` for an overlapping run), and `alerts`.
    workers: HashMap<String, JoinHandle<()>>,
    /// Fires handed to a worker and not yet behind the job's cursor.
    dispatched: HashSet<(usize, DateTime<Utc>)>,
    /// The clock at the previous tick.
    last_tick: DateTime<Utc>,
    spawned: u64,
    /// Alerts sent without the ledger, by job and kind.
    held: HashMap<(String, &'static str), Held>,
}

/// The last alert of one job and kind sent while the ledger failed, and what was
/// held back since.
#[derive(Debug, Clone, Copy)]
struct Held {
    sent_at: DateTime<Utc>,
    count: u64,
}

/// Whether an alert of `key` goes out at `now`: `Some(n)` with the number held back
/// since the previous one, `None` while the window of the previous one lasts (then
/// counted).
fn throttle(
    held: &mut HashMap<(String, &'static str), Held>,
    key: (String, &'static str),
    now: DateTime<Utc>,
) -> Option<u64> {
    match held.get_mut(&key) {
        Some(h) if now >= h.sent_at && now - h.sent_at < ALERT_WINDOW => {
            h.count += 1;
            None
        }
        Some(h) => {
            let n = h.count;
            *h = Held {
                sent_at: now,
                count: 0,
            };
            Some(n)
        }
        None => {
            held.insert(
                key,
                Held {
                    sent_at: now,
                    count: 0,
                },
            );
            Some(0)
        }
    }
}

/// Runs jobs when due until `stop` is set (SIGINT/SIGTERM), then lets the work in
/// flight end: a report being written is finished, a delivery being sent finishes
/// its SMTP attempt or is given up [`STOP_GRACE`](super::mail::STOP_GRACE) after the
/// signal, and no new one starts (what is left is retried at the next start).
pub fn run_daemon(
    config: &Config,
    clock: SharedClock,
    stop: Arc<AtomicBool>,
) -> Result<(), JobError> {
    // A ledger that cannot be opened at start is an error the operator sees at once.
    let ledger = Ledger::open_with_clock(&config.state_path(), SharedClock::clone(&clock))?;
    tracing::info!(jobs = config.jobs.len(), ledger = %ledger.path().display(), "daemon started");
    let mut pulse = super::status::Pulse::start(config, &ledger, clock.now());
    drop(ledger);
    let mut d = Daemon::new(config, clock, stop);
    while !d.stop.load(Ordering::SeqCst) {
        let started = Instant::now();
        let now = d.clock.now();
        d.workers.retain(|_, h| !h.is_finished());
        let ticked = d.tick(now);
        pulse.beat(now, ticked.as_ref().err().map(ToString::to_string));
        if let Err(e) = ticked {
            d.ledger_failed(now, &e);
        }
        d.last_tick = now;
        while !d.stop.load(Ordering::SeqCst) && started.elapsed() < TICK {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    tracing::info!(
        in_flight = d.workers.len(),
        "stopping: waiting for the work in flight (a second signal stops at once)"
    );
    pulse.stopping(d.clock.now());
    // Still beating while it waits: `status` tells a daemon finishing its work from
    // one that hangs.
    while d.workers.values().any(|h| !h.is_finished()) {
        pulse.beat(d.clock.now(), None);
        std::thread::sleep(Duration::from_millis(50));
    }
    for (_, h) in d.workers {
        let _ = h.join();
    }
    pulse.stopped(d.clock.now());
    tracing::info!("daemon stopped");
    Ok(())
}

impl Daemon {
    fn new(config: &Config, clock: SharedClock, stop: Arc<AtomicBool>) -> Self {
        Self {
            config: Arc::new(config.clone()),
            last_tick: clock.now(),
            clock,
            stop,
            workers: HashMap::new(),
            dispatched: HashSet::new(),
            spawned: 0,
            held: HashMap::new(),
        }
    }

    fn ledger(&self) -> Result<Ledger, JobError> {
        Ok(Ledger::open_with_clock(
            &self.config.state_path(),
            SharedClock::clone(&self.clock),
        )?)
    }

    /// An alert about `job`, timed by the daemon's clock.
    fn alert<'a>(
        &'a self,
        job: &'a Job,
        fire: DateTime<Utc>,
        period: &'a str,
        (subject, what): (&'a str, &'a str),
    ) -> alerts::Alert<'a> {
        alerts::Alert {
            config: &self.config,
            job,
            period,
            fire,
            kind: alerts::Kind::Failed,
            subject,
            what,
            log: &[],
            clock: self.clock.as_ref(),
        }
    }

    fn tick(&mut self, now: DateTime<Utc>) -> Result<(), JobError> {
        let config = Arc::clone(&self.config);
        let ledger = self.ledger()?;
        let mut work: Vec<(usize, Work)> = Vec::new();
        // Runs a process left in flight (its lock is free): run again, once.
        for r in ledger.recover_interrupted()? {
            let Some(i) = config.jobs.iter().position(|j| j.name == r.job) else {
                continue;
            };
            let fire = r.fire.unwrap_or(now);
            if r.gave_up {
                let job = &config.jobs[i];
                let msg = super::ledger::Interrupted::message(&job.name, r.fire);
                tracing::error!(job = %r.job, period = %r.period, fire = %fire_text(fire), "{msg}");
                let subject = format!(
                    "[cxreport] job {} interrupted twice, not run again ({})",
                    job.name, r.period
                );
                // Kept only: the alerts worker sends it, off this thread.
                alerts::alert(
                    &self.alert(job, fire, &r.period, (&subject, &msg)),
                    Route::Keep(&ledger),
                );
                // Its fire is behind the cursor, so the schedule does not run it either.
                advance_cursor(&ledger, job, fire)?;
                continue;
            }
            tracing::warn!(job = %r.job, period = %r.period, fire = %fire_text(fire), "running again a run interrupted by a process that died");
            self.dispatched.insert((i, fire));
            work.push((i, Work::Fire(fire)));
        }
        for (i, job) in config.jobs.iter().enumerate() {
            let Some(mut cursor) = ledger.cursor(&job.name)? else {
                // First start: nothing before now counts as missed.
                ledger.set_cursor(&job.name, now)?;
                continue;
            };
            if cursor > now + CURSOR_TOLERANCE {
                // Now, not the cursor's time: nothing is skipped until real time
                // catches up, and nothing before now is fired as missed.
                tracing::warn!(
                    job = %job.name,
                    cursor = %crate::source::timestamp::format_utc(cursor),
                    now = %crate::source::timestamp::format_utc(now),
                    "the job's schedule cursor is ahead of the clock (a clock stepped back, or a rehearsal clock used this ledger); set to now"
                );
                ledger.set_cursor(&job.name, now)?;
                cursor = now;
            }
            self.dispatched.retain(|(j, f)| *j != i || *f > cursor);
            let fires = schedule::due(
                &job.cron,
                job.timezone,
                cursor,
                now,
                job.catchup,
                job.max_catchup,
            );
            if fires.is_empty() {
                // Everything up to now is considered; a fire being run moves the
                // cursor itself once it is recorded.
                if !self.dispatched.iter().any(|(j, _)| *j == i) && now > cursor {
                    ledger.set_cursor(&job.name, now)?;
                }
                continue;
            }
            for fire in fires {
                if self.dispatched.insert((i, fire)) {
                    work.push((i, Work::Fire(fire)));
                }
            }
        }
        for e in ledger.expire_retries(now)? {
            if let Some(job) = config.job(&e.job) {
                let (region, retry_region) = if e.region.is_empty() {
                    (String::new(), String::new())
                } else {
                    (
                        format!(" (region {})", e.region),
                        format!(" --region {}", e.region),
                    )
                };
                let msg = format!(
                    "the delivery of the {} edition{region} to {} was given up: out of retry time ({}); `cxreport retry --job {} --period {}{retry_region}` sends it again",
                    e.lang, e.recipient, e.last_error, e.job, e.period
                );
                tracing::error!(job = %e.job, period = %e.period, "{msg}");
                let subject = format!("[cxreport] job {} delivery given up ({})", e.job, e.period);
                let fire = ledger
                    .run(&e.job, &e.period)?
                    .and_then(|r| r.fire_time)
                    .unwrap_or(now);
                // Kept only: the alerts worker sends it, off this thread.
                alerts::alert(
                    &self.alert(job, fire, &e.period, (&subject, &msg)),
                    Route::Keep(&ledger),
                );
            }
        }
        for (job, period) in ledger.retries_due(now)? {
            if let Some(i) = config.jobs.iter().position(|j| j.name == job) {
                work.push((i, Work::Retry(period)));
            }
        }
        let mut by_job: HashMap<usize, Vec<Work>> = HashMap::new();
        for (i, w) in work {
            by_job.entry(i).or_default().push(w);
        }
        for (i, works) in by_job {
            self.dispatch(i, works, &ledger)?;
        }
        if !ledger.alerts_due(now)?.is_empty() && !self.busy("alerts") {
            let config = Arc::clone(&self.config);
            let stop = Arc::clone(&self.stop);
            let clock = SharedClock::clone(&self.clock);
            let h = std::thread::spawn(move || {
                match Ledger::open_with_clock(&config.state_path(), clock) {
                    Ok(l) => {
                        if let Err(e) = alerts::flush_alerts(&config, &l, &stop) {
                            tracing::error!("sending the kept owner alerts: {e}");
                        }
                    }
                    Err(e) => tracing::error!("sending the kept owner alerts: {e}"),
                }
            });
            self.workers.insert("alerts".into(), h);
        }
        Ok(())
    }

    fn busy(&self, key: &str) -> bool {
        self.workers.get(key).is_some_and(|h| !h.is_finished())
    }

    fn dispatch(&mut self, i: usize, works: Vec<Work>, ledger: &Ledger) -> Result<(), JobError> {
        let job = self.config.jobs[i].clone();
        let mut works = works;
        works.sort_by_key(|w| match w {
            Work::Fire(t) => (0, Some(*t)),
            Work::Retry(_) => (1, None),
        });
        if self.busy(&job.name) {
            let mut kept = Vec::new();
            for w in works {
                match w {
                    Work::Fire(fire) if job.overlap == Overlap::Forbid => {
                        let why = "a previous run of this job was still in flight";
                        tracing::warn!(job = %job.name, fire = %fire_text(fire), "{why}; this fire is skipped");
                        let period = fire_period(fire);
                        ledger.record_skipped(&job.name, &period, fire, why)?;
                        let subject = format!("[cxreport] job {} did not run ({period})", job.name);
                        alerts::alert(
                            &self.alert(&job, fire, &period, (&subject, why)),
                            Route::Keep(ledger),
                        );
                        advance_cursor(ledger, &job, fire)?;
                    }
                    // Tried again at a later tick, when the worker is free.
                    Work::Retry(_) => {}
                    w => kept.push(w),
                }
            }
            works = kept;
        }
        if works.is_empty() {
            return Ok(());
        }
        let config = Arc::clone(&self.config);
        let stop = Arc::clone(&self.stop);
        let clock = SharedClock::clone(&self.clock);
        let name = job.name.clone();
        let handle = std::thread::spawn(move || {
            let runner = Runner {
                config: &config,
                delivery: &Delivery::Send,
                stop: &stop,
                clock: &clock,
            };
            for w in works {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                match w {
                    Work::Fire(fire) => run_fire(runner, &job, fire),
                    Work::Retry(period) => retry(runner, &job, &period),
                }
            }
        });
        self.spawned += 1;
        let key = if self.busy(&name) {
            format!("{name}#{}", self.spawned)
        } else {
            name
        };
        self.workers.insert(key, handle);
        Ok(())
    }

    /// The ledger cannot be used: every fire due since the last tick cannot start.
    /// Their owners hear about it directly (there is nowhere to keep the alert), once
    /// per job in [`ALERT_WINDOW`]; the fires run when the ledger works again, as each
    /// job's catch-up policy says.
    fn ledger_failed(&mut self, now: DateTime<Utc>, e: &JobError) {
        tracing::error!("the run ledger cannot be used: {e}");
        for job in &self.config.jobs {
            for fire in schedule::due(
                &job.cron,
                job.timezone,
                self.last_tick,
                now,
                Catchup::All,
                usize::MAX,
            ) {
                let mut msg = format!(
                    "the fire at {} cannot start: {e}. It runs when the ledger works again, as the job's catch-up policy ({}) says.",
                    crate::source::timestamp::format_utc(fire),
                    job.catchup
                );
                tracing::error!(job = %job.name, "{msg}");
                let Some(before) = throttle(&mut self.held, (job.name.clone(), "ledger"), now)
                else {
                    tracing::warn!(job = %job.name, "owner alert held back: one was sent less than {} min ago", ALERT_WINDOW.num_minutes());
                    continue;
                };
                if before > 0 {
                    msg.push_str(&format!(
                        " {before} more alert(s) like this one were held back since the previous one (at most one is sent every {} minutes).",
                        ALERT_WINDOW.num_minutes()
                    ));
                }
                let subject = format!(
                    "[cxreport] job {} cannot run: the run ledger fails",
                    job.name
                );
                let period = fire_period(fire);
                alerts::alert(
                    &self.alert(job, fire, &period, (&subject, &msg)),
                    Route::Now {
                        ledger: None,
                        stop: &self.stop,
                    },
                );
            }
        }
    }
}

/// Moves the job's cursor up to `fire` (never back).
fn advance_cursor(ledger: &Ledger, job: &Job, fire: DateTime<Utc>) -> Result<(), JobError> {
    if ledger.cursor(&job.name)?.is_none_or(|c| c < fire) {
        ledger.set_cursor(&job.name, fire)?;
    }
    Ok(())
}

/// One scheduled run, in a worker. A fire that cannot start is recorded (or, when
/// the ledger itself fails, alerted); once recorded the job's cursor passes it.
fn run_fire(runner: Runner<'_>, job: &Job, fire: DateTime<Utc>) {
    let Runner {
        config,
        stop,
        clock,
        ..
    } = runner;
    let why = match run_job(runner, job, fire) {
        Ok(r) => {
            tracing::info!(job = %r.job, state = %r.state, period = r.period.as_deref().map(tracing::field::display), "run finished");
            None
        }
        Err(JobError::Busy(_)) => Some(
            "another process holds the job's lock: a run of this job is in flight elsewhere (e.g. `cxreport run --job … --send`)"
                .to_owned(),
        ),
        Err(e) => Some(e.to_string()),
    };
    let ledger = Ledger::open_with_clock(&config.state_path(), SharedClock::clone(clock));
    if let Some(why) = &why {
        tracing::error!(job = %job.name, fire = %fire_text(fire), "the fire cannot start: {why}");
        let period = fire_period(fire);
        let subject = format!("[cxreport] job {} did not run ({period})", job.name);
        let kept = ledger
            .as_ref()
            .ok()
            .filter(|l| l.record_skipped(&job.name, &period, fire, why).is_ok());
        let alert = alerts::Alert {
            config,
            job,
            period: &period,
            fire,
            kind: alerts::Kind::Failed,
            subject: &subject,
            what: why,
            log: &[],
            clock: clock.as_ref(),
        };
        alerts::alert(&alert, Route::Now { ledger: kept, stop });
    }
    match ledger {
        Ok(l) => {
            if let Err(e) = advance_cursor(&l, job, fire) {
                tracing::error!(job = %job.name, "moving the schedule cursor: {e}");
            }
        }
        Err(e) => tracing::error!(job = %job.name, "moving the schedule cursor: {e}"),
    }
}

/// Deliveries of a period waiting for another try, in a worker, under the job's lock.
fn retry(runner: Runner<'_>, job: &Job, period: &str) {
    let Runner {
        config,
        stop,
        clock,
        ..
    } = runner;
    let retried = (|| -> Result<Option<super::JobRun>, JobError> {
        let l = Ledger::open_with_clock(&config.state_path(), SharedClock::clone(clock))?;
        let Some(_lock) = l.lock_job(&job.name, true)? else {
            return Ok(None);
        };
        let r = resend::resend(config, job, &l, period, None, stop)?;
        if r.state == RunState::Succeeded && r.sent > 0 {
            // As after `cxreport retry`: a "failed" still waiting is replaced, and
            // owners already told it failed hear that it is resolved.
            let fire = l
                .run(&job.name, period)?
                .and_then(|r| r.fire_time)
                .unwrap_or_else(|| l.now());
            alerts::resolved_after_retry(
                config,
                job,
                &l,
                period,
                fire,
                r.sent,
                alerts::Retrier::Daemon,
            )?;
        }
        Ok(Some(r))
    })();
    match retried {
        Ok(Some(r)) => {
            tracing::info!(job = %job.name, period, sent = r.sent, failed = r.failed, "retried deliveries")
        }
        Ok(None) => {}
        Err(e) => tracing::error!(job = %job.name, period, "retrying deliveries: {e}"),
    }
}

/// Sets `stop` on the first SIGINT or SIGTERM; a second one ends the process at once
/// (exit status [`FAILED`](crate::exit::FAILED)): the ledger stays consistent (each
/// change is one SQLite transaction), a run cut short is recovered at the next start.
pub fn stop_on_signals() -> Result<Arc<AtomicBool>, JobError> {
    let stop = Arc::new(AtomicBool::new(false));
    let status = i32::from(crate::exit::FAILED);
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register_conditional_shutdown(sig, status, Arc::clone(&stop))
            .map_err(JobError::Signal)?;
        signal_hook::flag::register(sig, Arc::clone(&stop)).map_err(JobError::Signal)?;
    }
    Ok(stop)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::FixedClock;
    use crate::jobs::ledger::{DeliveryKey, DeliveryState, DeliveryUpdate};

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    /// A daily 08:00 job whose runs fail at once (its database is missing), with an
    /// owner and an outbox; its daemon on a clock stopped at `now`.
    fn daemon_at(dir: &std::path::Path, now: DateTime<Utc>) -> Daemon {
        let text = format!(
            "[defaults]\ndatabase = \"{out}/missing.sqlite\"\noutput_dir = \"{out}\"\n[smtp]\noutbox = \"{out}/outbox\"\nfrom = \"r@example.com\"\n[[job]]\nname = \"j\"\ncron = \"0 8 * * *\"\nowners = [\"owner@example.com\"]\n",
            out = dir.display()
        );
        let config = Config::parse(std::path::Path::new("schedules.toml"), &text).unwrap();
        Daemon::new(
            &config,
            Arc::new(FixedClock(now)),
            Arc::new(AtomicBool::new(false)),
        )
    }

    fn join_workers(d: &mut Daemon) {
        for (_, h) in d.workers.drain() {
            h.join().unwrap();
        }
    }

    fn outbox(dir: &std::path::Path) -> Vec<String> {
        std::fs::read_dir(dir.join("outbox"))
            .map(|r| {
                r.map(|e| e.unwrap().file_name().into_string().unwrap())
                    .collect()
            })
            .unwrap_or_default()
    }

    #[test]
    fn a_tick_dispatches_a_due_fire_once() {
        let dir = tempfile::tempdir().unwrap();
        let now = at("2025-01-01T08:00:30Z");
        let mut d = daemon_at(dir.path(), now);
        d.ledger()
            .unwrap()
            .set_cursor("j", at("2025-01-01T07:59:00Z"))
            .unwrap();
        d.tick(now).unwrap();
        assert_eq!(d.spawned, 1);
        assert!(d.dispatched.contains(&(0, at("2025-01-01T08:00:00Z"))));
        // The worker may still run: the fire is not handed out again.
        d.tick(now + chrono::Duration::seconds(1)).unwrap();
        assert_eq!(d.spawned, 1);
        join_workers(&mut d);
        d.tick(now + chrono::Duration::seconds(2)).unwrap();
        assert_eq!(d.spawned, 1, "the fire is behind the cursor now");
        let l = d.ledger().unwrap();
        let h = l.history(None).unwrap();
        assert_eq!(h.len(), 1, "{h:?}");
        assert_eq!(h[0].period, "fire-2025-01-01T08:00:00Z");
        assert_eq!(h[0].state, RunState::Failed);
        // Stamped on the daemon's clock.
        assert_eq!(h[0].started_at.as_deref(), Some("2025-01-01 08:00:30"));
        // Everything up to the latest tick is considered.
        assert_eq!(
            l.cursor("j").unwrap(),
            Some(now + chrono::Duration::seconds(2))
        );
    }

    #[test]
    fn a_fire_while_the_job_is_busy_is_skipped_when_overlap_is_forbidden() {
        let dir = tempfile::tempdir().unwrap();
        let now = at("2025-01-01T08:00:30Z");
        let mut d = daemon_at(dir.path(), now);
        assert_eq!(d.config.jobs[0].overlap, Overlap::Forbid);
        d.ledger()
            .unwrap()
            .set_cursor("j", at("2025-01-01T07:59:00Z"))
            .unwrap();
        // A run of the job still in flight.
        let (release, wait) = std::sync::mpsc::channel::<()>();
        d.workers.insert(
            "j".into(),
            std::thread::spawn(move || {
                let _ = wait.recv();
            }),
        );
        d.tick(now).unwrap();
        assert_eq!(d.spawned, 0, "nothing started beside it");
        let l = d.ledger().unwrap();
        let h = l.history(None).unwrap();
        assert_eq!(h.len(), 1, "{h:?}");
        assert_eq!(
            (h[0].period.as_str(), h[0].state),
            ("fire-2025-01-01T08:00:00Z", RunState::Skipped)
        );
        assert!(h[0].error.as_deref().unwrap().contains("still in flight"));
        assert_eq!(l.cursor("j").unwrap(), Some(at("2025-01-01T08:00:00Z")));
        // The owners hear of it: kept, then sent by the alerts worker.
        release.send(()).unwrap();
        join_workers(&mut d);
        let sent = outbox(dir.path());
        assert_eq!(sent.len(), 1, "{sent:?}");
        assert!(sent[0].starts_with("alert_j_owner@example.com"), "{sent:?}");
    }

    #[test]
    fn a_tick_gives_up_a_retry_past_its_time_and_tells_the_owners() {
        let dir = tempfile::tempdir().unwrap();
        let now = at("2025-01-01T12:00:00Z");
        let mut d = daemon_at(dir.path(), now);
        let l = d.ledger().unwrap();
        l.set_cursor("j", now).unwrap();
        l.begin_run("j", "p", Some(at("2025-01-01T08:00:00Z")), None)
            .unwrap();
        l.finish_run("j", "p", RunState::Failed, Some("451 try later"))
            .unwrap();
        let key = DeliveryKey {
            job: "j",
            period: "p",
            region: "",
            lang: "en",
            recipient: "ceo@example.com",
        };
        l.delivery(&key, &key.message_id("example.com")).unwrap();
        l.update_delivery(
            &key,
            &DeliveryUpdate {
                state: DeliveryState::Failed,
                attempts_added: 2,
                error: Some("451 try later"),
                next_attempt: Some(at("2025-01-01T10:00:00Z")),
                retry_until: Some(at("2025-01-01T11:00:00Z")),
            },
        )
        .unwrap();
        d.tick(now).unwrap();
        let state = l.deliveries("j", "p").unwrap()[0].state;
        assert_eq!(state, DeliveryState::GaveUp);
        assert_eq!(d.spawned, 0, "not retried: out of retry time");
        join_workers(&mut d);
        let sent = outbox(dir.path());
        assert_eq!(sent.len(), 1, "{sent:?}");
    }

    #[test]
    fn alerts_without_a_ledger_are_one_per_window_then_counted() {
        let mut held = HashMap::new();
        let t0 = DateTime::parse_from_rfc3339("2025-01-01T08:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let key = || ("j".to_owned(), "ledger");
        let sent: Vec<Option<u64>> = (0..600)
            .map(|s| throttle(&mut held, key(), t0 + chrono::Duration::seconds(s)))
            .collect();
        let out: Vec<(usize, u64)> = sent
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.map(|n| (i, n)))
            .collect();
        // 600 fires in 10 minutes: one alert.
        assert_eq!(out, [(0, 0)]);
        assert_eq!(
            throttle(&mut held, key(), t0 + ALERT_WINDOW),
            Some(599),
            "the next one counts those held back"
        );
        assert_eq!(
            throttle(&mut held, ("k".into(), "ledger"), t0),
            Some(0),
            "per job"
        );
    }
}
