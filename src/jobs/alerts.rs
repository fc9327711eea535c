//! The owners' alerts: a run that failed, a fire that could not start, deliveries
//! given up; deliveries a planned shutdown interrupted (they resume by themselves, and
//! the alert says so rather than "failed"); and a run a retry resolved (which replaces
//! the run's alerts not sent yet, or follows those sent). Kept in the ledger until the
//! SMTP server takes them (sent at once when there is no ledger to keep them in),
//! their text from the `owner_alert.tera` template, rendered where a runaway override
//! ends only itself, naming the host they come from.

use std::sync::atomic::{AtomicBool, Ordering};

use chrono::{DateTime, Utc};
use lettre::message::Mailbox;
use serde_json::json;

use super::config::Config;
use super::config::Job;
pub use super::ledger::AlertKind as Kind;
use super::ledger::{clip, Ledger, NewAlert, MAX_ERROR_BYTES};
use super::mail::{Mailer, Outgoing};
use super::{Context, Delivery, JobError};
use crate::clock::Clock;

/// The host name the alerts name (`None` when the system does not say): an owner
/// with several installations must know which one wrote.
pub fn host_name() -> Option<String> {
    hostname::get()
        .ok()
        .and_then(|h| h.into_string().ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
}

/// A period key as a person reads it ("2023-12-15 – 2024-06-15"), in English: the
/// alerts are language-neutral.
fn period_label(period: &str) -> String {
    crate::reports::period_label(period, None)
}

/// One owner alert: what it is about and what it says.
pub struct Alert<'a> {
    pub config: &'a Config,
    pub job: &'a Job,
    /// The run it is about.
    pub period: &'a str,
    pub fire: DateTime<Utc>,
    pub kind: Kind,
    pub subject: &'a str,
    /// The error, or what happened.
    pub what: &'a str,
    /// The run's log lines it quotes (the last ones).
    pub log: &'a [String],
    /// The clock its Message-ID is taken from when there is no ledger to keep it in
    /// (a kept alert is timed by the ledger's).
    pub clock: &'a dyn Clock,
}

/// How an alert goes out.
#[derive(Clone, Copy)]
pub enum Route<'a> {
    /// Kept in the ledger only: the daemon's alerts worker sends it, off the caller's
    /// thread (and a process that is stopping does not wait on SMTP).
    Keep(&'a Ledger),
    /// Sent now: kept first when there is a ledger (then sent with the kept alerts
    /// that are due, and kept for later when the server does not take it), sent at
    /// once without one; `stop` ends the sending.
    Now {
        ledger: Option<&'a Ledger>,
        stop: &'a AtomicBool,
    },
}

/// Tells the job's owners that a run failed (only when delivering for real).
pub fn alert_owners(ctx: &Context<'_>, period: &str, error: &str, log: &[String]) {
    if !matches!(ctx.delivery, Delivery::Send) {
        return;
    }
    let subject = format!(
        "[cxreport] job {} failed ({})",
        ctx.job.name,
        period_label(period)
    );
    let route = match ctx.ledger {
        // Stopping: kept, and sent by the next process; shutdown does not wait on SMTP.
        Some(l) if ctx.stop.load(Ordering::SeqCst) => Route::Keep(l),
        ledger => Route::Now {
            ledger,
            stop: ctx.stop,
        },
    };
    alert(
        &Alert {
            config: ctx.config,
            job: ctx.job,
            period,
            fire: ctx.fire,
            kind: Kind::Failed,
            subject: &subject,
            what: error,
            log,
            clock: ctx.clock.as_ref(),
        },
        route,
    );
}

/// Tells the owners that a planned shutdown stopped the run's deliveries (`lines`:
/// what was not sent). Not a failure: the next start of the daemon sends them, so the
/// alert says that, and is kept (shutdown does not wait on SMTP) for the next process.
pub fn alert_interrupted(ctx: &Context<'_>, period: &str, lines: &[String]) {
    if !matches!(ctx.delivery, Delivery::Send) {
        return;
    }
    let subject = format!(
        "[cxreport] job {} interrupted by shutdown, resumes at the next start ({})",
        ctx.job.name,
        period_label(period)
    );
    let what = format!(
        "{} delivery(ies) not sent: the process was asked to stop",
        lines.len()
    );
    let route = match ctx.ledger {
        Some(l) => Route::Keep(l),
        None => Route::Now {
            ledger: None,
            stop: ctx.stop,
        },
    };
    alert(
        &Alert {
            config: ctx.config,
            job: ctx.job,
            period,
            fire: ctx.fire,
            kind: Kind::Interrupted,
            subject: &subject,
            what: &what,
            log: lines,
            clock: ctx.clock.as_ref(),
        },
        route,
    );
}

/// Who retried a run's deliveries, as the "resolved" alert says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retrier {
    /// `cxreport retry`, run by a person.
    Command,
    /// The daemon, retrying after the delivery backoff.
    Daemon,
}

/// After a retry sent every delivery of a run: the run's alerts not sent yet are
/// replaced by one saying it is resolved, and owners who were already told it failed
/// (or are being told now) get that too. Nothing when no alert was ever made for the
/// run. Returns whether an alert was kept.
pub fn resolved_after_retry(
    config: &Config,
    job: &Job,
    ledger: &Ledger,
    period: &str,
    fire: DateTime<Utc>,
    sent: usize,
    by: Retrier,
) -> Result<bool, JobError> {
    let (dropped, sent_before) = ledger.drop_pending_alerts(&job.name, period)?;
    if dropped == 0 && sent_before == 0 {
        return Ok(false);
    }
    let subject = format!(
        "[cxreport] job {} resolved after retry ({})",
        job.name,
        period_label(period)
    );
    let what = format!(
        "{}{} sent {sent} delivery(ies) at {} UTC: every delivery of the run is now sent.{}",
        match by {
            Retrier::Command => "`cxreport retry`",
            Retrier::Daemon => "The daemon's retry",
        },
        host_name().map(|h| format!(" on {h}")).unwrap_or_default(),
        crate::source::timestamp::format_utc(ledger.now()),
        if dropped > 0 {
            format!(" {dropped} alert(s) about it that were still waiting to be sent are replaced by this one.")
        } else {
            String::new()
        }
    );
    alert(
        &Alert {
            config,
            job,
            period,
            fire,
            kind: Kind::Resolved,
            subject: &subject,
            what: &what,
            log: &[],
            clock: ledger.clock().as_ref(),
        },
        Route::Keep(ledger),
    );
    Ok(true)
}

/// Writes an owner alert (its text from `owner_alert.tera`) and keeps or sends it
/// as `route` says.
pub fn alert(a: &Alert<'_>, route: Route<'_>) {
    let Alert {
        config,
        job,
        period,
        ..
    } = *a;
    if job.owners.is_empty() || config.smtp.is_none() {
        return;
    }
    let (ledger, stop) = match route {
        Route::Keep(l) => (Some(l), None),
        Route::Now { ledger, stop } => (ledger, Some(stop)),
    };
    let never = AtomicBool::new(false);
    // Quoted, not copied: a run's error may hold a value of many megabytes.
    let log: Vec<_> = a
        .log
        .iter()
        .rev()
        .take(20)
        .rev()
        .map(|l| clip(l, MAX_ERROR_BYTES / 4))
        .collect();
    let error = clip(a.what, MAX_ERROR_BYTES);
    let value = json!({
        "kind": a.kind.as_str(),
        "job": job.name,
        "period": period,
        "period_label": period_label(period),
        "error": error,
        "fire_time": crate::source::timestamp::format_utc(a.fire),
        "host": host_name().unwrap_or_default(),
        "log": log,
    });
    let text = match crate::run::worker::owner_alert(&config.templates(), &value) {
        Ok(t) => t,
        Err(e) => {
            tracing::error!(job = %job.name, "cannot write the owner alert: {e}");
            // The alert still goes out, with the error as its whole text.
            format!("cxreport: job {} ({period}): {error}", job.name)
        }
    };
    let domain = config
        .smtp
        .as_ref()
        .map_or_else(String::new, |s| s.from.email.domain().to_owned());
    for owner in &job.owners {
        let now = ledger.map_or_else(|| a.clock.now(), Ledger::now);
        let message_id = format!(
            "<alert.{}.{}@{domain}>",
            job.name,
            now.timestamp_nanos_opt().unwrap_or(0)
        );
        let queued = ledger.map(|l| {
            l.queue_alert(&NewAlert {
                job: &job.name,
                period,
                kind: a.kind,
                recipient: owner.email.as_ref(),
                message_id: &message_id,
                subject: a.subject,
                body: &text,
            })
        });
        let at_once = |stop| {
            send_alert_now(
                config,
                job,
                &alert_message(owner, &message_id, a.subject, &text, &job.name),
                stop,
            );
        };
        match queued {
            Some(Ok(())) => {}
            Some(Err(e)) => {
                tracing::error!(job = %job.name, "cannot keep the owner alert in the ledger: {e}");
                at_once(stop.unwrap_or(&never));
            }
            None => at_once(stop.unwrap_or(&never)),
        }
    }
    if let (Some(l), Some(stop)) = (ledger, stop) {
        if let Err(e) = flush_alerts(config, l, stop) {
            tracing::error!(job = %job.name, "sending the kept owner alerts: {e}");
        }
    }
}

fn alert_message(
    owner: &Mailbox,
    message_id: &str,
    subject: &str,
    text: &str,
    job: &str,
) -> Outgoing {
    Outgoing {
        message_id: message_id.to_owned(),
        to: owner.clone(),
        subject: subject.to_owned(),
        text: text.to_owned(),
        html: None,
        attachments: Vec::new(),
        outbox_name: format!(
            "alert_{job}_{}_{}",
            owner.email,
            message_id.trim_matches(['<', '>'])
        ),
    }
}

/// An alert without a ledger to keep it in (the ledger itself is what failed).
fn send_alert_now(config: &Config, job: &Job, message: &Outgoing, stop: &AtomicBool) {
    let Some(smtp) = &config.smtp else { return };
    let owner = &message.to.email;
    let result = Mailer::new(smtp).map_err(|e| e.to_string()).and_then(|m| {
        let (_, failure) = m.send(message, stop, |_, _| {});
        failure.map_or(Ok(()), |f| Err(f.to_string()))
    });
    match result {
        Ok(()) => tracing::info!(job = %job.name, owner = %owner, "owner alerted"),
        Err(e) => tracing::error!(job = %job.name, owner = %owner, "owner alert failed: {e}"),
    }
}

/// How long an alert being sent stays claimed: past it, the process that claimed it
/// is taken to have died, and the alert is due again. Longer than any one attempt.
const CLAIM: chrono::Duration = chrono::Duration::minutes(15);

/// Sends the kept owner alerts that are due; those the server does not take wait
/// for a later try, with the delivery backoff.
pub fn flush_alerts(config: &Config, ledger: &Ledger, stop: &AtomicBool) -> Result<(), JobError> {
    let Some(smtp) = &config.smtp else {
        return Ok(());
    };
    let due = ledger.alerts_due(ledger.now())?;
    if due.is_empty() {
        return Ok(());
    }
    let mailer = match Mailer::new(smtp) {
        Ok(m) => m,
        Err(e) => {
            tracing::error!("owner alerts wait: {e}");
            let later = ledger.now() + chrono::Duration::minutes(10);
            for a in due {
                ledger.alert_attempted(a.id, Some(&e.to_string()), later)?;
            }
            return Ok(());
        }
    };
    for a in due {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        // Claimed, not just read: a retry that resolved the run since `alerts_due`
        // dropped it, and another process may be sending it.
        let now = ledger.now();
        if !ledger.claim_alert(a.id, now, now + CLAIM)? {
            continue;
        }
        let Ok(owner) = a.recipient.parse::<Mailbox>() else {
            ledger.alert_attempted(a.id, None, ledger.now())?;
            continue;
        };
        let (_, failure) = mailer.send(
            &alert_message(&owner, &a.message_id, &a.subject, &a.body, &a.job),
            stop,
            |_, _| {},
        );
        let retry_at = ledger.now()
            + chrono::Duration::from_std(mailer.retry_delay(a.attempts + 1))
                .unwrap_or_else(|_| chrono::Duration::hours(1));
        match &failure {
            None => tracing::info!(job = %a.job, owner = %a.recipient, "owner alerted"),
            Some(f) => {
                tracing::error!(job = %a.job, owner = %a.recipient, "owner alert not sent yet ({f}); kept")
            }
        }
        ledger.alert_attempted(a.id, failure.map(|f| f.to_string()).as_deref(), retry_at)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_alert_quotes_a_fifty_megabyte_error_cut() {
        let dir = tempfile::tempdir().unwrap();
        let text = format!(
            "[defaults]\ndatabase = \"demo\"\noutput_dir = \"{out}\"\n[smtp]\noutbox = \"{out}/outbox\"\nfrom = \"r@example.com\"\n[[job]]\nname = \"j\"\ncron = \"0 8 * * *\"\nowners = [\"owner@example.com\"]\n",
            out = dir.path().display()
        );
        let config = Config::parse(std::path::Path::new("schedules.toml"), &text).unwrap();
        let huge = format!("bad value `{}`", "x".repeat(50 << 20));
        let log = vec![huge.clone(); 3];
        let ledger = Ledger::open(&config.state_path()).unwrap();
        let clock = crate::clock::FixedClock(
            DateTime::parse_from_rfc3339("2025-01-01T08:00:00Z")
                .unwrap()
                .with_timezone(&Utc),
        );
        for kept in [None, Some(&ledger)] {
            alert(
                &Alert {
                    config: &config,
                    job: &config.jobs[0],
                    period: "p",
                    fire: clock.0,
                    kind: Kind::Failed,
                    subject: "[cxreport] job j failed (p)",
                    what: &huge,
                    log: &log,
                    clock: &clock,
                },
                Route::Now {
                    ledger: kept,
                    stop: &AtomicBool::new(false),
                },
            );
        }
        let mails: Vec<u64> = std::fs::read_dir(dir.path().join("outbox"))
            .unwrap()
            .map(|e| e.unwrap().metadata().unwrap().len())
            .collect();
        eprintln!(
            "a {} byte error (and log) mailed as {mails:?} bytes",
            huge.len()
        );
        assert_eq!(mails.len(), 2, "sent at once, and kept then sent");
        assert!(mails.iter().all(|&n| n < 32 * 1024), "{mails:?}");
    }
}
