//! Scheduled jobs: one job's run (lease, ledger, report, deliveries, owner alerts) and
//! the daemon that runs jobs when due, one job's runs after another and different jobs
//! in parallel, survives failing jobs, and stops cleanly on SIGINT/SIGTERM.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use chrono::{DateTime, Utc};
use lettre::message::Mailbox;
use serde_json::json;

use crate::clock::{Clock, FixedClock};
use crate::config::{Config, Job, Overlap};
use crate::edition;
use crate::ledger::{DeliveryKey, DeliveryState, Ledger, LedgerError, RunState};
use crate::mail::{Attachment, Mailer, Outgoing};
use crate::narrative::{self, NarrativeError};
use crate::pipeline::{self, RunOutcome, RunRequest};
use crate::schedule;

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error("job `{0}` has a run in flight (overlap = \"forbid\"); not starting another")]
    Busy(String),
    #[error("unknown job `{name}` in {config} (jobs: {known})")]
    UnknownJob {
        name: String,
        config: PathBuf,
        known: String,
    },
    #[error("installing the signal handler: {0}")]
    Signal(std::io::Error),
}

/// What a job's run does with its editions.
#[derive(Debug, Clone)]
pub enum Delivery {
    /// Write the report only.
    None,
    /// Deliver through the configured transport, recorded in the ledger.
    Send,
    /// Write `.eml` files into a directory (a preview: the ledger is not touched).
    Outbox(PathBuf),
    /// Send every edition to one address (a test: the ledger is not touched).
    TestTo(Mailbox),
}

/// How a job's run ended.
#[derive(Debug, Clone)]
pub struct JobRun {
    pub job: String,
    pub period: Option<String>,
    pub state: RunState,
    pub error: Option<String>,
    pub dir: Option<PathBuf>,
    pub sent: usize,
    pub failed: usize,
}

/// The request a job's run makes of the pipeline.
pub fn request(config: &Config, job: &Job) -> Result<RunRequest, pipeline::PipelineError> {
    let db = match job
        .database
        .clone()
        .or_else(|| config.defaults.database.clone())
    {
        Some(db) => db,
        None => pipeline::demo_database(&pipeline::cache_dir())?,
    };
    Ok(request_on(config, job, db))
}

/// A job's request against a given database.
pub fn request_on(config: &Config, job: &Job, db: PathBuf) -> RunRequest {
    RunRequest {
        report: job.report.clone(),
        db,
        window: job.window,
        usage_source: job.usage_source,
        out_dir: config.defaults.output_dir.clone(),
        name: job.output.display().to_string(),
        source_tz: config.defaults.source_timezone,
        tz: job.timezone,
        min_cell: job.min_cell,
        min_pp: job.min_pp,
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
) -> Result<JobRun, DaemonError> {
    let mut ledger = Ledger::open(&config.state_path())?;
    if job.overlap == Overlap::Forbid && !ledger.acquire_lease(&job.name)? {
        return Err(DaemonError::Busy(job.name.clone()));
    }
    let result = run_leased(config, job, fire, delivery, &ledger);
    ledger.release_lease(&job.name)?;
    result
}

fn run_leased(
    config: &Config,
    job: &Job,
    fire: DateTime<Utc>,
    delivery: &Delivery,
    ledger: &Ledger,
) -> Result<JobRun, DaemonError> {
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
        Err(e) => {
            return fail_before_period(config, job, fire, delivery, ledger, out, e.to_string())
        }
    };
    let period = match pipeline::period_of(&req, clock.now()) {
        Ok(p) => p,
        Err(e) => {
            return fail_before_period(config, job, fire, delivery, ledger, out, e.to_string())
        }
    };
    out.period = Some(period.clone());
    ledger.begin_run(&job.name, &period, Some(fire), None)?;
    tracing::info!(job = %job.name, %period, fire = %fire, "run started");
    let outcome = match pipeline::run(&req, &clock) {
        Ok(o) => o,
        Err(e) => {
            let msg = e.to_string();
            log.push(msg.clone());
            fail_run(config, job, &period, fire, delivery, ledger, &msg, &log)?;
            out.error = Some(msg);
            return Ok(out);
        }
    };
    ledger.set_output(&job.name, &period, &outcome.dir)?;
    out.dir = Some(outcome.dir.clone());

    let errors = deliver(config, job, &outcome, delivery, ledger, &mut out, &mut log)?;
    if errors.is_empty() {
        out.state = RunState::Succeeded;
        ledger.finish_run(&job.name, &period, RunState::Succeeded, None)?;
        tracing::info!(job = %job.name, %period, sent = out.sent, "run succeeded");
    } else {
        let msg = errors.join("; ");
        fail_run(config, job, &period, fire, delivery, ledger, &msg, &log)?;
        out.error = Some(msg);
    }
    Ok(out)
}

/// The ledger key of a fire that never got a period (failed before, or skipped).
fn fire_period(fire: DateTime<Utc>) -> String {
    format!("fire-{}", fire.format("%Y-%m-%dT%H:%M:%SZ"))
}

/// Records a failed run, logs it and tells the owners.
#[allow(clippy::too_many_arguments)]
fn fail_run(
    config: &Config,
    job: &Job,
    period: &str,
    fire: DateTime<Utc>,
    delivery: &Delivery,
    ledger: &Ledger,
    msg: &str,
    log: &[String],
) -> Result<(), DaemonError> {
    ledger.finish_run(&job.name, period, RunState::Failed, Some(msg))?;
    tracing::error!(job = %job.name, %period, "run failed: {msg}");
    alert_owners(config, job, period, fire, delivery, msg, log);
    Ok(())
}

fn fail_before_period(
    config: &Config,
    job: &Job,
    fire: DateTime<Utc>,
    delivery: &Delivery,
    ledger: &Ledger,
    mut out: JobRun,
    msg: String,
) -> Result<JobRun, DaemonError> {
    // No period could be computed: the run is keyed by its fire time instead.
    let period = fire_period(fire);
    ledger.begin_run(&job.name, &period, Some(fire), None)?;
    fail_run(
        config,
        job,
        &period,
        fire,
        delivery,
        ledger,
        &msg,
        std::slice::from_ref(&msg),
    )?;
    out.error = Some(msg);
    out.period = Some(period);
    Ok(out)
}

/// Sends what the delivery mode asks; returns the errors that make the run fail.
fn deliver(
    config: &Config,
    job: &Job,
    outcome: &RunOutcome,
    delivery: &Delivery,
    ledger: &Ledger,
    out: &mut JobRun,
    log: &mut Vec<String>,
) -> Result<Vec<String>, DaemonError> {
    let mut errors = Vec::new();
    if matches!(delivery, Delivery::None) {
        return Ok(errors);
    }
    let Some(smtp) = &config.smtp else {
        return Ok(vec![format!(
            "delivery needs the [smtp] section of {} (at least `from`)",
            config.path.display()
        )]);
    };
    let mailer = match delivery {
        Delivery::Outbox(dir) => Mailer::outbox(smtp, dir),
        _ => Mailer::new(smtp),
    };
    let mailer = match mailer {
        Ok(m) => m,
        Err(e) => {
            errors.push(e.to_string());
            return Ok(errors);
        }
    };
    let templates = config.templates();
    for lang in &job.languages {
        let recipients: Vec<Mailbox> = match delivery {
            Delivery::TestTo(addr) => vec![addr.clone()],
            _ => job.recipients.get(lang).cloned().unwrap_or_default(),
        };
        if recipients.is_empty() {
            continue;
        }
        let content = match email_content(
            job,
            outcome,
            lang,
            &templates,
            smtp.max_attachment_bytes,
            smtp.attach_csv,
        ) {
            Ok(c) => c,
            Err(e) => {
                errors.push(e.to_string());
                continue;
            }
        };
        for to in recipients {
            let recipient = to.email.to_string();
            let key = DeliveryKey {
                job: &job.name,
                period: &outcome.period,
                lang,
                recipient: &recipient,
            };
            let recorded = matches!(delivery, Delivery::Send);
            let message_id = match delivery {
                Delivery::TestTo(_) => format!(
                    "<test.{}.{}>",
                    Utc::now().timestamp_micros(),
                    key.message_id(&mailer.from_domain())
                        .trim_matches(['<', '>'])
                ),
                _ => key.message_id(&mailer.from_domain()),
            };
            if recorded {
                let (state, _) = ledger.delivery(&key, &message_id)?;
                if matches!(state, DeliveryState::Sent | DeliveryState::GaveUp) {
                    tracing::info!(job = %job.name, lang, recipient, state = ?state, "delivery already settled; not sending again");
                    if state == DeliveryState::GaveUp {
                        errors.push(format!(
                            "delivery of {lang} to {recipient} was given up earlier"
                        ));
                        out.failed += 1;
                    }
                    continue;
                }
            }
            let message = Outgoing {
                message_id,
                to,
                subject: content.subject.clone(),
                text: content.text.clone(),
                html: Some(content.html.clone()),
                attachments: content.attachments(),
                outbox_name: format!("{}_{}_{lang}_{recipient}", job.name, outcome.period),
            };
            let (attempts, failure) = mailer.send(&message, |n, f| {
                let line = format!("{lang} to {recipient}: attempt {n} failed ({f})");
                tracing::warn!(job = %job.name, "{line}");
                log.push(line);
            });
            match failure {
                None => {
                    out.sent += 1;
                    tracing::info!(job = %job.name, lang, recipient, attempts, via = %mailer.target, "delivered");
                    if recorded {
                        ledger.update_delivery(
                            &key,
                            DeliveryState::Sent,
                            i64::from(attempts),
                            None,
                        )?;
                    }
                }
                Some(f) => {
                    out.failed += 1;
                    let line = format!("delivery of {lang} to {recipient} given up after {attempts} attempt(s): {f}");
                    tracing::error!(job = %job.name, "{line}");
                    if recorded {
                        ledger.update_delivery(
                            &key,
                            DeliveryState::GaveUp,
                            i64::from(attempts),
                            Some(&f.to_string()),
                        )?;
                    }
                    errors.push(line);
                }
            }
        }
    }
    Ok(errors)
}

struct EmailContent {
    subject: String,
    text: String,
    html: String,
    pdf: Option<(String, Vec<u8>)>,
    csv: Option<(String, Vec<u8>)>,
}

impl EmailContent {
    fn attachments(&self) -> Vec<Attachment> {
        let mut v = Vec::new();
        if let Some((name, bytes)) = &self.pdf {
            v.push(Attachment {
                filename: name.clone(),
                content_type: "application/pdf",
                bytes: bytes.clone(),
            });
        }
        if let Some((name, bytes)) = &self.csv {
            v.push(Attachment {
                filename: name.clone(),
                content_type: "text/csv; charset=utf-8",
                bytes: bytes.clone(),
            });
        }
        v
    }
}

fn email_content(
    job: &Job,
    outcome: &RunOutcome,
    lang: &str,
    templates: &narrative::Templates,
    max_attachment: u64,
    attach_csv: bool,
) -> Result<EmailContent, NarrativeError> {
    let language = templates.language(&job.report, lang)?;
    let (findings, _) = edition::sentences(&outcome.narrative, &language)?;
    let file = format!("report.{lang}.pdf");
    let path = outcome.dir.join(&file);
    let bytes = std::fs::read(&path).unwrap_or_default();
    let attached = (bytes.len() as u64) <= max_attachment && !bytes.is_empty();
    let mb = |b: u64| format!("{:.1}", b as f64 / (1024.0 * 1024.0));
    let value = json!({ "e": {
        "title": language.strings.get("document.title"),
        "period": edition::period_label(outcome.window.as_ref(), &outcome.period, &language),
        "findings": findings.iter().take(3).map(|f| f.text.clone()).collect::<Vec<_>>(),
        "file": file,
        "attached": attached,
        "size_mb": mb(bytes.len() as u64),
        "limit_mb": mb(max_attachment),
        "path": std::fs::canonicalize(&path).unwrap_or(path.clone()).display().to_string(),
        "job": job.name,
    }});
    let e = &value["e"];
    let csv = match outcome.main_csv {
        Some(name) if attach_csv => std::fs::read(outcome.dir.join(name))
            .ok()
            .map(|b| (name.to_owned(), b)),
        _ => None,
    };
    Ok(EmailContent {
        subject: language.render("email_subject.tera", "e", e)?,
        text: language.render_raw("email.txt.tera", "e", e)?,
        html: language.render_raw("email.html", "e", e)?,
        pdf: attached.then_some((file, bytes)),
        csv,
    })
}

/// Tells the job's owners that a run failed (only when delivering for real).
fn alert_owners(
    config: &Config,
    job: &Job,
    period: &str,
    fire: DateTime<Utc>,
    delivery: &Delivery,
    error: &str,
    log: &[String],
) {
    if !matches!(delivery, Delivery::Send) || job.owners.is_empty() {
        return;
    }
    let Some(smtp) = &config.smtp else { return };
    let mailer = match Mailer::new(smtp) {
        Ok(m) => m,
        Err(e) => {
            tracing::error!(job = %job.name, "cannot alert the owners: {e}");
            return;
        }
    };
    let value = json!({
        "job": job.name,
        "period": period,
        "error": error,
        "fire_time": crate::timestamp::format_utc(fire),
        "host": std::env::var("HOSTNAME").unwrap_or_default(),
        "log": log.iter().rev().take(20).rev().collect::<Vec<_>>(),
    });
    let text = match narrative::owner_alert(&config.templates(), &value) {
        Ok(t) => t,
        Err(e) => {
            tracing::error!(job = %job.name, "cannot write the owner alert: {e}");
            return;
        }
    };
    for owner in &job.owners {
        let message = Outgoing {
            message_id: format!(
                "<alert.{}.{}@{}>",
                job.name,
                Utc::now().timestamp_micros(),
                mailer.from_domain()
            ),
            to: owner.clone(),
            subject: format!("[cxreport] job {} failed ({period})", job.name),
            text: text.clone(),
            html: None,
            attachments: Vec::new(),
            outbox_name: format!("alert_{}_{period}_{}", job.name, owner.email),
        };
        let (_, failure) = mailer.send(&message, |_, _| {});
        match failure {
            None => tracing::info!(job = %job.name, owner = %owner.email, "owner alerted"),
            Some(f) => {
                tracing::error!(job = %job.name, owner = %owner.email, "owner alert failed: {f}")
            }
        }
    }
}

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
) -> Result<(), DaemonError> {
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
                .and_then(|t| crate::timestamp::parse(&t, chrono_tz::Tz::UTC).ok())
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
pub fn stop_on_signals() -> Result<Arc<AtomicBool>, DaemonError> {
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&stop)).map_err(DaemonError::Signal)?;
    }
    Ok(stop)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn at(s: &str) -> DateTime<Utc> {
        crate::timestamp::parse(s, chrono_tz::Tz::UTC).unwrap()
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
