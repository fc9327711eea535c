//! The configuration-driven commands (`run --job`, `daemon`, `schedule`, `check`,
//! `history`): each loads the configuration, calls the library and prints what a
//! person at a terminal needs.

use std::path::Path;

use super::Failure;
use crate::clock::{Clock, SystemClock};
use crate::jobs::config::Config;
use crate::jobs::ledger::{Ledger, RunState};
use crate::jobs::{check, daemon, job, Delivery, JobError};
use anyhow::anyhow;
use chrono::{DateTime, Utc};

fn load(path: &Path) -> Result<Config, Failure> {
    Ok(Config::load(path)?)
}

pub fn run_job(
    config: &Path,
    name: &str,
    as_of: Option<DateTime<Utc>>,
    delivery: &Delivery,
) -> Result<(), Failure> {
    let config = load(config)?;
    let job = config.job(name).ok_or_else(|| {
        let known: Vec<&str> = config.jobs.iter().map(|j| j.name.as_str()).collect();
        JobError::UnknownJob {
            name: name.to_owned(),
            config: config.path.clone(),
            known: known.join(", "),
        }
    })?;
    let fire = as_of.unwrap_or_else(|| SystemClock.now());
    let run = job::run_job(&config, job, fire, delivery)?;
    if let Some(dir) = &run.dir {
        println!("{}", dir.display());
    }
    match run.state {
        RunState::Succeeded => {
            if !matches!(delivery, Delivery::None) {
                eprintln!("{} message(s) delivered", run.sent);
            }
            Ok(())
        }
        _ => Err(Failure::Failed(anyhow!(run
            .error
            .unwrap_or_else(|| "the run failed".into())))),
    }
}

pub fn daemon(config: &Path) -> Result<(), Failure> {
    let config = load(config)?;
    let stop = daemon::stop_on_signals()?;
    Ok(daemon::run_daemon(&config, &SystemClock, stop)?)
}

pub fn schedule(config: &Path, count: usize) -> Result<(), Failure> {
    let config = load(config)?;
    let now = SystemClock.now();
    for job in &config.jobs {
        let windowed = crate::reports::find(&job.report)
            .is_some_and(|r| r.options().iter().any(|o| o.name == "window"));
        let window = if windowed {
            format!("  window={}", job.window)
        } else {
            String::new()
        };
        println!(
            "{}  report={}  cron=\"{}\"  timezone={}{window}  catchup={:?}",
            job.name, job.report, job.cron, job.timezone, job.catchup
        );
        for t in job.cron.upcoming(job.timezone, now, count) {
            println!(
                "    {}  ({})",
                t.with_timezone(&job.timezone).format("%Y-%m-%d %H:%M %Z"),
                t.format("%Y-%m-%d %H:%M UTC")
            );
        }
    }
    Ok(())
}

pub fn check(
    config_path: &Path,
    db: Option<&crate::run::Location>,
    mapping: Option<&crate::run::Mapping>,
) -> Result<(), Failure> {
    let found = check::check(config_path, db, mapping);
    for note in &found.notes {
        eprintln!("{note}");
    }
    if found.problems.is_empty() {
        match db {
            Some(db) if !config_path.exists() => println!("ok: {db}"),
            _ => println!("ok: {}", config_path.display()),
        }
        Ok(())
    } else {
        for p in &found.problems {
            eprintln!("- {p}");
        }
        Err(Failure::Usage(anyhow!(
            "{} problem(s) found",
            found.problems.len()
        )))
    }
}

pub fn history(config: &Path, job: Option<&str>) -> Result<(), Failure> {
    let config = load(config)?;
    let path = config.state_path();
    if !path.exists() {
        println!("no runs yet ({} does not exist)", path.display());
        return Ok(());
    }
    let ledger = Ledger::open(&path).map_err(|e| Failure::Failed(e.into()))?;
    let runs = ledger.history(job).map_err(|e| Failure::Failed(e.into()))?;
    let mut latest_failed: Vec<String> = Vec::new();
    let mut last_job: Option<&str> = None;
    for (i, r) in runs.iter().enumerate() {
        if last_job != Some(r.job.as_str()) {
            println!("{}", r.job);
            last_job = Some(&r.job);
        }
        println!(
            "  {:<24} {:<9} started {}  finished {}  attempts {}{}",
            r.period,
            r.state,
            r.started_at.as_deref().unwrap_or("-"),
            r.finished_at.as_deref().unwrap_or("-"),
            r.attempts,
            r.error
                .as_deref()
                .map(|e| format!("\n      error: {e}"))
                .unwrap_or_default()
        );
        for d in &r.deliveries {
            println!(
                "      {} {:<32} {:<8} attempts {}{}",
                d.lang,
                d.recipient,
                d.state,
                d.attempts,
                d.last_error
                    .as_deref()
                    .map(|e| format!("  ({e})"))
                    .unwrap_or_default()
            );
        }
        let is_latest = runs.get(i + 1).is_none_or(|n| n.job != r.job);
        if is_latest && r.state == "failed" {
            latest_failed.push(r.job.clone());
        }
    }
    if latest_failed.is_empty() {
        Ok(())
    } else {
        Err(Failure::Failed(anyhow!(
            "the latest run failed for: {}",
            latest_failed.join(", ")
        )))
    }
}
