//! One job's run: the lease, the ledger's run row, the report (planned once: the
//! period keys the ledger), the deliveries and the owners' alert when it fails.

use chrono::{DateTime, Utc};

use super::config::{Config, Job, Overlap};
use super::email;
use super::ledger::{Ledger, RunState};
use super::{Context, Delivery, JobError, JobRun};
use crate::clock::FixedClock;
use crate::demo::{self, DemoError};
use crate::run::{self, Location, RunRequest};

/// The request a job's run makes of the pipeline.
pub fn request(config: &Config, job: &Job) -> Result<RunRequest, DemoError> {
    let db = match job
        .database
        .clone()
        .or_else(|| config.defaults.database.clone())
    {
        Some(db) => db,
        None => demo::demo_database(&demo::cache_dir())?.into(),
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
        templates: config.templates(),
    }
}

/// Runs one job as the schedule would at `fire`, delivering as asked.
pub fn run_job(
    config: &Config,
    job: &Job,
    fire: DateTime<Utc>,
    delivery: &Delivery,
) -> Result<JobRun, JobError> {
    let mut ledger = Ledger::open(&config.state_path())?;
    if job.overlap == Overlap::Forbid && !ledger.acquire_lease(&job.name)? {
        return Err(JobError::Busy(job.name.clone()));
    }
    let ctx = Context {
        config,
        job,
        fire,
        delivery,
        ledger: &ledger,
    };
    let result = run_leased(&ctx);
    ledger.release_lease(&job.name)?;
    result
}

fn run_leased(ctx: &Context<'_>) -> Result<JobRun, JobError> {
    let Context {
        config,
        job,
        fire,
        ledger,
        ..
    } = *ctx;
    let mut log: Vec<String> = Vec::new();
    let mut out = JobRun {
        job: job.name.clone(),
        period: None,
        state: RunState::Failed,
        error: None,
        dir: None,
        sent: 0,
        failed: 0,
    };
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
    ledger.begin_run(&job.name, &period, Some(fire), None)?;
    tracing::info!(job = %job.name, %period, fire = %fire, "run started");
    let outcome = match run::execute(prepared, &req) {
        Ok(o) => o,
        Err(e) => {
            let msg = e.to_string();
            log.push(msg.clone());
            fail_run(ctx, &period, &msg, &log)?;
            out.error = Some(msg);
            return Ok(out);
        }
    };
    ledger.set_output(&job.name, &period, &outcome.dir)?;
    out.dir = Some(outcome.dir.clone());

    let errors = email::deliver(ctx, &outcome, &mut out, &mut log)?;
    if errors.is_empty() {
        out.state = RunState::Succeeded;
        ledger.finish_run(&job.name, &period, RunState::Succeeded, None)?;
        tracing::info!(job = %job.name, %period, sent = out.sent, "run succeeded");
    } else {
        let msg = errors.join("; ");
        fail_run(ctx, &period, &msg, &log)?;
        out.error = Some(msg);
    }
    Ok(out)
}

/// The ledger key of a fire that never got a period (failed before, or skipped).
pub fn fire_period(fire: DateTime<Utc>) -> String {
    format!("fire-{}", fire.format("%Y-%m-%dT%H:%M:%SZ"))
}

/// Records a failed run, logs it and tells the owners.
fn fail_run(ctx: &Context<'_>, period: &str, msg: &str, log: &[String]) -> Result<(), JobError> {
    let job = ctx.job;
    ctx.ledger
        .finish_run(&job.name, period, RunState::Failed, Some(msg))?;
    tracing::error!(job = %job.name, %period, "run failed: {msg}");
    email::alert_owners(ctx, period, msg, log);
    Ok(())
}

fn fail_before_period(ctx: &Context<'_>, mut out: JobRun, msg: String) -> Result<JobRun, JobError> {
    // No period could be computed: the run is keyed by its fire time instead.
    let period = fire_period(ctx.fire);
    ctx.ledger
        .begin_run(&ctx.job.name, &period, Some(ctx.fire), None)?;
    fail_run(ctx, &period, &msg, std::slice::from_ref(&msg))?;
    out.error = Some(msg);
    out.period = Some(period);
    Ok(out)
}
