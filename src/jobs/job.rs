//! One job's run: the job's lock, the ledger's run row, the report (planned once: the
//! period keys the ledger), the deliveries and the owners' alert when it fails. Only a
//! real send (`Delivery::Send`) is a run of record: previews and test sends take no
//! lock and leave the ledger alone, so nothing of theirs can be recovered or re-sent.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::AtomicBool;

use chrono::{DateTime, Utc};

use super::config::{Burst, Config, DataSource, Job, MailedEdition, Overlap};
use super::ledger::{DeliveryState, EditionRecord, Ledger, RunState};
use super::{alerts, delivery};
use super::{Context, Delivery, JobError, JobRun};
use crate::clock::{FixedClock, SharedClock};
use crate::demo::{self, DemoError};
use crate::run::burst::{run_burst, BurstRequest};
use crate::run::{self, Location, RunRequest};

/// The request a job's run makes of the pipeline.
pub fn request(config: &Config, job: &Job) -> Result<RunRequest, DemoError> {
    let db = match &job.database {
        DataSource::At(db) => db.clone(),
        DataSource::Demo => demo::demo_database(&demo::cache_dir())?.into(),
    };
    Ok(request_on(config, job, db))
}

/// A job's request against a given database.
pub fn request_on(config: &Config, job: &Job, db: Location) -> RunRequest {
    RunRequest {
        report: job.report.clone(),
        db,
        mapping: job.mapping.clone(),
        window: job.window,
        options: job.options.clone(),
        out_dir: config.defaults.output_dir.clone(),
        name: job.output.display().to_string(),
        source_tz: config.defaults.source_timezone,
        tz: job.timezone,
        langs: job.languages.clone(),
        depths: job.depths(),
        templates: config.templates(),
        time_limit: Some(config.defaults.run_timeout),
        watch: job.watch.clone(),
    }
}

/// How a job is run: what it delivers, what stops it, what time it is.
#[derive(Clone, Copy)]
pub struct Runner<'a> {
    pub config: &'a Config,
    pub delivery: &'a Delivery,
    /// The daemon's shutdown flag: ends the run between deliveries.
    pub stop: &'a AtomicBool,
    /// The clock the ledger, the retries and the alerts are timed by.
    pub clock: &'a SharedClock,
}

/// Runs one job as the schedule would at `fire`, delivering as asked.
pub fn run_job(runner: Runner<'_>, job: &Job, fire: DateTime<Utc>) -> Result<JobRun, JobError> {
    run_job_with(runner, job, fire, run_locked)
}

/// [`run_job`] with the body of the run given: the lock, the panic guard and what
/// a panic leaves (a failed run, an alert) are the same whatever the body.
fn run_job_with(
    runner: Runner<'_>,
    job: &Job,
    fire: DateTime<Utc>,
    body: fn(&Context<'_>, &mut JobRun) -> Result<(), JobError>,
) -> Result<JobRun, JobError> {
    let Runner {
        config,
        delivery,
        stop,
        clock,
    } = runner;
    let recorded = matches!(delivery, Delivery::Send);
    let ledger = if recorded {
        Some(Ledger::open_with_clock(
            &config.state_path(),
            SharedClock::clone(clock),
        )?)
    } else {
        None
    };
    // Held until this function returns, also when the run panics (the guard is
    // dropped while unwinding) or the process dies (the kernel releases it).
    let _lock = match &ledger {
        Some(l) => Some(
            l.lock_job(&job.name, job.overlap == Overlap::Forbid)?
                .ok_or_else(|| JobError::Busy(job.name.clone()))?,
        ),
        None => None,
    };
    let ctx = Context {
        config,
        job,
        fire,
        delivery,
        ledger: ledger.as_ref(),
        stop,
        clock,
    };
    let mut out = JobRun {
        job: job.name.clone(),
        period: None,
        state: RunState::Failed,
        error: None,
        dir: None,
        sent: 0,
        failed: 0,
        interrupted: 0,
        up_to_date: false,
        watch: Vec::new(),
        editions: Vec::new(),
    };
    match catch_unwind(AssertUnwindSafe(|| body(&ctx, &mut out))) {
        Ok(result) => result.map(|()| out),
        Err(panic) => {
            let msg = crate::run::worker::panic_message(panic.as_ref());
            let period = out.period.clone().unwrap_or_else(|| fire_period(fire));
            if let Some(l) = ctx.ledger {
                l.record_failed(&job.name, &period, fire, &msg)?;
            }
            tracing::error!(job = %job.name, %period, "run failed: {}", super::ledger::clip(&msg, super::ledger::MAX_ERROR_BYTES));
            alerts::alert_owners(&ctx, &period, &msg, std::slice::from_ref(&msg));
            out.period = Some(period);
            out.error = Some(msg);
            out.state = RunState::Failed;
            Ok(out)
        }
    }
}

fn run_locked(ctx: &Context<'_>, out: &mut JobRun) -> Result<(), JobError> {
    let Context {
        config,
        job,
        fire,
        ledger,
        ..
    } = *ctx;
    let mut log: Vec<String> = Vec::new();
    let clock = FixedClock(fire);
    let req = match request(config, job) {
        Ok(r) => r,
        Err(e) => return fail_before_period(ctx, out, e.to_string()),
    };
    let prepared = match run::prepare(&req, &clock) {
        Ok(p) => p,
        Err(e) => return fail_before_period(ctx, out, e.to_string()),
    };
    let period = prepared.plan.period.clone();
    out.period = Some(period.clone());
    if let Some(l) = ledger {
        // The plan is cheap, the run is not: a fire whose period was delivered in full
        // already (a frequent cron on data that has not moved) renders nothing again.
        if let Some(dir) = up_to_date(l, job, &period)? {
            tracing::info!(job = %job.name, %period, fire = %fire, "up to date: every delivery of this period was sent already; not rendered again");
            out.state = RunState::Succeeded;
            out.dir = Some(dir);
            out.up_to_date = true;
            return Ok(());
        }
        l.begin_run(&job.name, &period, Some(fire), None)?;
    }
    tracing::info!(job = %job.name, %period, fire = %fire_text(fire), "run started");
    if let Some(burst) = &job.burst {
        // The plan gave the period every edition shares; each edition plans its own.
        drop(prepared);
        return run_bursted(ctx, out, req, burst, &period, &mut log);
    }
    let outcome = match run::execute(prepared, &req) {
        Ok(o) => o,
        Err(e) => {
            let msg = e.to_string();
            log.push(msg.clone());
            fail_run(ctx, &period, &msg, &log)?;
            out.error = Some(msg);
            return Ok(());
        }
    };
    if let Some(l) = ledger {
        l.set_output(&job.name, &period, &outcome.dir)?;
    }
    out.dir = Some(outcome.dir.clone());
    if !job.watch.is_empty() {
        out.watch = outcome.watch.clone();
        for w in out.watch.iter().filter(|w| w.fired) {
            tracing::warn!(job = %job.name, rule = %w.rule, metric = %w.metric, slice = %w.slice, change = w.change.map(|c| tracing::field::display(format!("{c:+.2}"))), "watch rule fired");
        }
        if let Some(l) = ledger {
            l.record_watch(&job.name, &period, "", &out.watch)?;
        }
    }

    let errors = delivery::deliver(ctx, &outcome, out, &mut log)?;
    finish(ctx, &period, errors, out, &log)
}

/// Records how the run ended from the `errors` of its editions and deliveries.
fn finish(
    ctx: &Context<'_>,
    period: &str,
    errors: Vec<String>,
    out: &mut JobRun,
    log: &[String],
) -> Result<(), JobError> {
    let Context { job, ledger, .. } = *ctx;
    if errors.is_empty() {
        out.state = RunState::Succeeded;
        if let Some(l) = ledger {
            l.finish_run(&job.name, period, RunState::Succeeded, None)?;
        }
        tracing::info!(job = %job.name, %period, sent = out.sent, "run succeeded");
    } else if out.interrupted == errors.len() {
        // Only a planned shutdown stopped it: recorded as a run whose deliveries wait
        // (the next start retries them), and the owners are told it resumes, not that
        // it failed.
        let msg = errors.join("; ");
        if let Some(l) = ledger {
            l.finish_run(&job.name, period, RunState::Failed, Some(&msg))?;
        }
        tracing::warn!(job = %job.name, %period, waiting = out.interrupted, "interrupted by shutdown: the deliveries not sent are sent when the daemon starts again");
        alerts::alert_interrupted(ctx, period, &errors);
        out.error = Some(msg);
    } else {
        let msg = errors.join("; ");
        fail_run(ctx, period, &msg, log)?;
        out.error = Some(msg);
    }
    Ok(())
}

/// A bursted job's run: one edition per value found in the data, each judged by
/// the watch rules on its own and mailed to its value's recipients only; a value
/// without recipients is written, not mailed. A region whose run or delivery fails
/// is recorded and alerted with the others' outcome, never in their way.
fn run_bursted(
    ctx: &Context<'_>,
    out: &mut JobRun,
    req: RunRequest,
    burst: &Burst,
    period: &str,
    log: &mut Vec<String>,
) -> Result<(), JobError> {
    let Context {
        job, ledger, fire, ..
    } = *ctx;
    let per_value = burst
        .values
        .iter()
        .map(|v| (v.folder.clone(), (v.languages(), v.depths())))
        .collect();
    let dir = req.out_dir.join(&req.name).join(period);
    let mut run = req;
    // A value mailed to no one: written in the job's languages, in full.
    run.depths = run::full_only();
    let request = BurstRequest {
        run,
        by: burst.by.clone(),
        per_value,
    };
    let editions = match run_burst(&request, &FixedClock(fire)) {
        Ok(e) => e,
        Err(e) => {
            let msg = e.to_string();
            log.push(msg.clone());
            fail_run(ctx, period, &msg, log)?;
            out.error = Some(msg);
            return Ok(());
        }
    };
    if let Some(l) = ledger {
        l.set_output(&job.name, period, &dir)?;
    }
    out.dir = Some(dir);
    let mut errors = Vec::new();
    for v in &burst.values {
        if !editions.iter().any(|e| e.folder == v.folder) {
            let found: Vec<String> = editions
                .iter()
                .map(|e| format!("`{}` ({})", e.value, e.companies))
                .collect();
            errors.push(format!(
                "burst value `{}` has recipients, but no company holds it under the {} (the values found: {}); its recipients got nothing",
                v.written,
                burst.describe(),
                if found.is_empty() { "none".to_owned() } else { found.join(", ") }
            ));
        }
    }
    let mut records = Vec::new();
    for e in &editions {
        let value = burst.value(&e.folder);
        let mut record = EditionRecord {
            region: e.folder.clone(),
            label: e.value.clone(),
            companies: e.companies,
            mailed: value.is_some(),
            error: None,
            watch: Vec::new(),
        };
        let outcome = match &e.outcome {
            Ok(o) => o,
            Err(err) => {
                let msg = format!("region {}: the run failed: {err}", e.value);
                tracing::error!(job = %job.name, %period, region = %e.folder, "{msg}");
                log.push(msg.clone());
                errors.push(msg);
                record.error = Some(err.to_string());
                records.push(record);
                continue;
            }
        };
        if !job.watch.is_empty() {
            record.watch.clone_from(&outcome.watch);
            for w in outcome.watch.iter().filter(|w| w.fired) {
                tracing::warn!(job = %job.name, region = %e.folder, rule = %w.rule, metric = %w.metric, slice = %w.slice, "watch rule fired");
            }
            if let Some(l) = ledger {
                l.record_watch(&job.name, period, &e.folder, &outcome.watch)?;
            }
            out.watch.extend(outcome.watch.iter().cloned());
        }
        match value {
            None => {
                tracing::info!(job = %job.name, %period, region = %e.folder, dir = %outcome.dir.display(), "written, no recipients: not mailed");
            }
            Some(v) => {
                let region = delivery::Region {
                    folder: &e.folder,
                    label: &e.value,
                };
                let failed = delivery::deliver_edition(
                    ctx,
                    outcome,
                    Some(region),
                    &v.mailed(),
                    &outcome.watch,
                    out,
                    log,
                )?;
                errors.extend(
                    failed
                        .into_iter()
                        .map(|f| format!("region {}: {f}", e.value)),
                );
            }
        }
        records.push(record);
    }
    if let Some(l) = ledger {
        l.record_editions(&job.name, period, &records)?;
    }
    out.editions = records;
    finish(ctx, period, errors, out, log)
}

/// The run's directory when the period was run and every delivery the job makes now
/// was sent: each language's recipients, and for a bursted job each region's (its
/// deliveries keyed by the value's folder, an unbursted job's by `''`); `None` when
/// anything is left to do (a recipient added since, a delivery failed or given up,
/// the outputs removed).
fn up_to_date(
    ledger: &Ledger,
    job: &Job,
    period: &str,
) -> Result<Option<std::path::PathBuf>, JobError> {
    let Some(run) = ledger.run(&job.name, period)? else {
        return Ok(None);
    };
    let Some(dir) = run.output_dir.filter(|d| d.is_dir()) else {
        return Ok(None);
    };
    if run.state != RunState::Succeeded {
        return Ok(None);
    }
    let mailed: Vec<(&str, Vec<MailedEdition>)> = match &job.burst {
        Some(burst) => burst
            .values
            .iter()
            .map(|v| (v.folder.as_str(), v.mailed()))
            .collect(),
        None => vec![("", job.mailed())],
    };
    let deliveries = ledger.deliveries(&job.name, period)?;
    let all_sent = mailed.iter().all(|(region, editions)| {
        editions.iter().all(|edition| {
            let key = edition.key();
            edition.recipients.iter().all(|to| {
                let to = to.email.to_string();
                deliveries.iter().any(|d| {
                    d.region == *region
                        && d.lang == key
                        && d.recipient == to
                        && d.state == DeliveryState::Sent
                })
            })
        })
    });
    Ok(all_sent.then_some(dir))
}

/// The ledger key of a fire that never got a period (failed before, or skipped).
pub fn fire_period(fire: DateTime<Utc>) -> String {
    format!("fire-{}", fire_text(fire))
}

/// A fire time as a user writes it (`--as-of`, `--clock-start`): RFC 3339 in UTC.
pub fn fire_text(fire: DateTime<Utc>) -> impl std::fmt::Display {
    fire.format("%Y-%m-%dT%H:%M:%SZ")
}

/// Records a failed run, logs it and tells the owners.
fn fail_run(ctx: &Context<'_>, period: &str, msg: &str, log: &[String]) -> Result<(), JobError> {
    let job = ctx.job;
    if let Some(l) = ctx.ledger {
        l.finish_run(&job.name, period, RunState::Failed, Some(msg))?;
    }
    tracing::error!(job = %job.name, %period, "run failed: {}", super::ledger::clip(msg, super::ledger::MAX_ERROR_BYTES));
    alerts::alert_owners(ctx, period, msg, log);
    Ok(())
}

fn fail_before_period(ctx: &Context<'_>, out: &mut JobRun, msg: String) -> Result<(), JobError> {
    // No period could be computed: the run is keyed by its fire time instead.
    let period = fire_period(ctx.fire);
    if let Some(l) = ctx.ledger {
        l.begin_run(&ctx.job.name, &period, Some(ctx.fire), None)?;
    }
    fail_run(ctx, &period, &msg, std::slice::from_ref(&msg))?;
    out.error = Some(msg);
    out.period = Some(period);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn failing(_: &Context<'_>, out: &mut JobRun) -> Result<(), JobError> {
        out.period = Some("2024-01-01_2024-06-30".into());
        panic!("an index out of range somewhere");
    }

    #[test]
    fn a_panic_inside_a_run_is_recorded_alerted_and_releases_the_lock() {
        let dir = tempfile::tempdir().unwrap();
        let text = format!(
            "[defaults]\ndatabase = \"demo\"\noutput_dir = \"{out}\"\n[smtp]\noutbox = \"{out}/outbox\"\nfrom = \"r@example.com\"\n[[job]]\nname = \"j\"\ncron = \"0 8 * * *\"\nowners = [\"owner@example.com\"]\n",
            out = dir.path().display()
        );
        let config = Config::parse(Path::new("schedules.toml"), &text).unwrap();
        let job = &config.jobs[0];
        let fire = DateTime::parse_from_rfc3339("2025-01-01T08:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let clock: SharedClock = std::sync::Arc::new(FixedClock(fire));
        let runner = Runner {
            config: &config,
            delivery: &Delivery::Send,
            stop: &AtomicBool::new(false),
            clock: &clock,
        };
        let r = run_job_with(runner, job, fire, failing).unwrap();
        assert_eq!(r.state, RunState::Failed);
        assert!(r
            .error
            .as_deref()
            .unwrap()
            .contains("an index out of range"));
        let ledger = Ledger::open(&config.state_path()).unwrap();
        let h = ledger.history(Some("j")).unwrap();
        assert_eq!(h.len(), 1);
        assert_eq!(
            (h[0].period.as_str(), h[0].state.as_str()),
            ("2024-01-01_2024-06-30", "failed")
        );
        assert!(h[0].error.as_deref().unwrap().contains("internal error"));
        // Stamped on the run's clock, not the ledger's own.
        assert_eq!(
            (h[0].started_at.as_deref(), h[0].finished_at.as_deref()),
            (Some("2025-01-01 08:00:00"), Some("2025-01-01 08:00:00"))
        );
        // The lock is free again, and the owner heard about it.
        assert!(ledger.lock_job("j", true).unwrap().is_some());
        let alerts: Vec<_> = std::fs::read_dir(dir.path().join("outbox"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(alerts.len(), 1, "{alerts:?}");
        assert!(
            alerts[0].starts_with("alert_j_owner@example.com"),
            "{alerts:?}"
        );
    }
}
