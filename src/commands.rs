//! The configuration-driven commands of the binary: each loads the configuration,
//! calls the library and prints what a person at a terminal needs.

use std::path::Path;

use anyhow::anyhow;
use chrono::{DateTime, Utc};
use cxreport::clock::{Clock, SystemClock};
use cxreport::config::Config;
use cxreport::daemon::{self, DaemonError, Delivery};
use cxreport::ledger::{Ledger, RunState};
use cxreport::{pdf, pipeline};

use crate::Failure;

fn load(path: &Path) -> Result<Config, Failure> {
    Config::load(path).map_err(|e| (2, e.into()))
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
        (
            2,
            DaemonError::UnknownJob {
                name: name.to_owned(),
                config: config.path.clone(),
                known: known.join(", "),
            }
            .into(),
        )
    })?;
    let fire = as_of.unwrap_or_else(|| SystemClock.now());
    let run = daemon::run_job(&config, job, fire, delivery).map_err(|e| (1, e.into()))?;
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
        _ => Err((
            1,
            anyhow!(run.error.unwrap_or_else(|| "the run failed".into())),
        )),
    }
}

pub fn daemon(config: &Path) -> Result<(), Failure> {
    let config = load(config)?;
    let stop = daemon::stop_on_signals().map_err(|e| (1, e.into()))?;
    daemon::run_daemon(&config, &SystemClock, stop).map_err(|e| (1, e.into()))
}

pub fn schedule(config: &Path, count: usize) -> Result<(), Failure> {
    let config = load(config)?;
    let now = SystemClock.now();
    for job in &config.jobs {
        let windowed = cxreport::reports::find(&job.report)
            .is_some_and(|r| r.options().iter().any(|(o, _)| *o == "window"));
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

pub fn check(config_path: &Path, db: Option<&Path>) -> Result<(), Failure> {
    let mut problems: Vec<String> = Vec::new();
    let config = match Config::load(config_path) {
        Ok(c) => Some(c),
        Err(e) => {
            problems.push(e.to_string());
            None
        }
    };
    let families = pdf::font_families();
    for want in [pdf::LATIN_FAMILY, pdf::CJK_FAMILY] {
        if !families.iter().any(|f| f == want) {
            problems.push(format!(
                "font family `{want}` is not embedded (have: {})",
                families.join(", ")
            ));
        }
    }
    if let Some(config) = &config {
        let templates = config.templates();
        for job in &config.jobs {
            for lang in &job.languages {
                if let Err(e) = templates.language(&job.report, lang) {
                    problems.push(format!("job `{}`: {e}", job.name));
                }
            }
            if let Err(e) = templates.get(&format!("{}/report.typ", job.report)) {
                problems.push(format!("job `{}`: {e}", job.name));
            }
            let database = db
                .map(Path::to_owned)
                .or_else(|| job.database.clone())
                .or_else(|| config.defaults.database.clone());
            match database {
                Some(path) => {
                    let req = cxreport::daemon::request_on(config, job, path);
                    if let Err(e) = pipeline::check_database(&req) {
                        problems.push(format!("job `{}`: {e}", job.name));
                    }
                }
                None => eprintln!("job `{}`: uses the built-in demo database", job.name),
            }
        }
        if let Some(smtp) = &config.smtp {
            if let cxreport::config::Transport::Smtp {
                password_env: Some(var),
                ..
            } = &smtp.transport
            {
                if std::env::var_os(var).is_none() {
                    problems.push(format!(
                        "smtp.password_env: environment variable {var} is not set"
                    ));
                }
            }
        }
    }
    if problems.is_empty() {
        println!("ok: {}", config_path.display());
        Ok(())
    } else {
        for p in &problems {
            eprintln!("- {p}");
        }
        Err((2, anyhow!("{} problem(s) found", problems.len())))
    }
}

pub fn history(config: &Path, job: Option<&str>) -> Result<(), Failure> {
    let config = load(config)?;
    let path = config.state_path();
    if !path.exists() {
        println!("no runs yet ({} does not exist)", path.display());
        return Ok(());
    }
    let ledger = Ledger::open(&path).map_err(|e| (1, e.into()))?;
    let runs = ledger.history(job).map_err(|e| (1, e.into()))?;
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
        Err((
            1,
            anyhow!("the latest run failed for: {}", latest_failed.join(", ")),
        ))
    }
}
