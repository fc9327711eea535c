//! Retries: the deliveries of one run that are not sent yet, sent again from the
//! messages the ledger kept (the daemon's retries after the backoff, `cxreport
//! retry`), as the same messages with the run's own files; and what waits when they
//! cannot be sent at all.

use std::sync::atomic::AtomicBool;

use chrono::{DateTime, Utc};
use lettre::message::Mailbox;

use super::config::{Config, Job};
use super::delivery::{retry_until, Edition, Sender, Tally};
use super::email::{EditionMail, RunFiles};
use super::ledger::{DeliveryKey, DeliveryRecord, DeliveryState, DeliveryUpdate, Ledger};
use super::mail::Mailer;
use super::{JobError, JobRun};

/// The deliveries of one run that are not sent yet, sent again from the kept
/// messages (the daemon's retries, `cxreport retry`); `region`: only that region
/// edition's (`retry --region`). The caller holds the job's lock.
pub fn resend(
    config: &Config,
    job: &Job,
    ledger: &Ledger,
    period: &str,
    region: Option<&str>,
    stop: &AtomicBool,
) -> Result<JobRun, JobError> {
    let mut out = JobRun {
        job: job.name.clone(),
        period: Some(period.to_owned()),
        state: super::ledger::RunState::Failed,
        error: None,
        dir: None,
        sent: 0,
        failed: 0,
        interrupted: 0,
        up_to_date: false,
        watch: Vec::new(),
        editions: Vec::new(),
    };
    let ours = |d: &DeliveryRecord| region.is_none_or(|r| d.region == r);
    let mailer = match &config.smtp {
        None => Err(format!(
            "delivery needs the [smtp] section of {}",
            config.path.display()
        )),
        Some(smtp) => Mailer::new(smtp).map_err(|e| e.to_string()),
    };
    let mailer = match mailer {
        Ok(m) => m,
        Err(e) => {
            // Nothing can be sent until the configuration changes: the next try
            // waits a while rather than every tick.
            for d in ledger.deliveries(&job.name, period)? {
                if !d.state.settled() && ours(&d) {
                    let later = ledger.now() + chrono::Duration::minutes(10);
                    park(
                        ledger,
                        job,
                        period,
                        &d,
                        DeliveryState::Failed,
                        &e,
                        Some(later),
                    )?;
                }
            }
            out.error = Some(e);
            return Ok(out);
        }
    };
    let facts = ledger.run(&job.name, period)?;
    let run_dir = facts.as_ref().and_then(|f| f.output_dir.clone());
    out.dir.clone_from(&run_dir);
    let now = ledger.now();
    let fire = facts.as_ref().and_then(|f| f.fire_time).unwrap_or(now);
    let sender = Sender {
        job,
        period,
        mailer: &mailer,
        ledger: Some(ledger),
        stop,
        clock: ledger.clock().as_ref(),
        retry_until: retry_until(job, fire, now),
        files: RunFiles {
            run_dir: run_dir.as_deref(),
            job_dir: config.defaults.output_dir.join(&job.output),
        },
    };
    let mut errors = Vec::new();
    let mut log = Vec::new();
    for d in ledger.deliveries(&job.name, period)? {
        if d.state.settled() || !ours(&d) {
            continue;
        }
        let Some(content) = ledger.message::<EditionMail>(&job.name, period, &d.region, &d.lang)?
        else {
            let why = "the message of this run was not kept (written by an older cxreport): run the job again";
            park(ledger, job, period, &d, DeliveryState::GaveUp, why, None)?;
            errors.push(format!("{} to {}: {why}", d.lang, d.recipient));
            continue;
        };
        let to: Mailbox = match d.recipient.parse() {
            Ok(m) => m,
            Err(e) => {
                errors.push(format!("{}: {e}", d.recipient));
                continue;
            }
        };
        let edition = Edition {
            region: &d.region,
            lang: &d.lang,
            content: &content,
            to,
            test: false,
        };
        let mut tally = Tally {
            out: &mut out,
            log: &mut log,
            errors: &mut errors,
        };
        sender.send(edition, &mut tally)?;
    }
    if errors.is_empty() && ledger.all_sent(&job.name, period)? {
        out.state = super::ledger::RunState::Succeeded;
        ledger.finish_run(&job.name, period, out.state, None)?;
        tracing::info!(job = %job.name, period, sent = out.sent, "every delivery of the run is sent");
    } else {
        out.error = Some(errors.join("; "));
    }
    Ok(out)
}

/// Sets a delivery's state without an attempt (nothing was sent).
fn park(
    ledger: &Ledger,
    job: &Job,
    period: &str,
    d: &DeliveryRecord,
    state: DeliveryState,
    error: &str,
    next_attempt: Option<DateTime<Utc>>,
) -> Result<(), JobError> {
    let key = DeliveryKey {
        job: &job.name,
        period,
        region: &d.region,
        lang: &d.lang,
        recipient: &d.recipient,
    };
    ledger.update_delivery(
        &key,
        &DeliveryUpdate {
            state,
            attempts_added: 0,
            error: Some(error),
            next_attempt,
            retry_until: None,
        },
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::{FixedClock, SharedClock};
    use crate::jobs::ledger::RunState;
    use std::path::Path;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    /// A daily 08:00 job mailing its English edition to one recipient, into an
    /// outbox, one attempt per try.
    fn config(dir: &Path) -> Config {
        let text = format!(
            "[defaults]\ndatabase = \"demo\"\noutput_dir = \"{out}/out\"\n[smtp]\noutbox = \"{out}/outbox\"\nfrom = \"r@example.com\"\nmax_attempts = 1\nbackoff_secs = 0.05\n[[job]]\nname = \"j\"\ncron = \"0 8 * * *\"\n[job.recipients]\nen = [\"ceo@example.com\"]\n",
            out = dir.display()
        );
        Config::parse(Path::new("schedules.toml"), &text).unwrap()
    }

    fn no_run(job: &Job) -> JobRun {
        JobRun {
            job: job.name.clone(),
            period: Some("p".into()),
            state: RunState::Failed,
            error: None,
            dir: None,
            sent: 0,
            failed: 0,
            interrupted: 0,
            up_to_date: false,
            watch: Vec::new(),
            editions: Vec::new(),
        }
    }

    #[test]
    fn a_delivery_is_retried_until_the_next_fire_and_at_least_an_hour() {
        let dir = tempfile::tempdir().unwrap();
        let config = config(dir.path());
        let job = &config.jobs[0];
        let fire = at("2025-01-01T08:00:00Z");
        assert_eq!(
            retry_until(job, fire, at("2025-01-01T08:00:05Z")),
            at("2025-01-02T08:00:00Z"),
            "the next fire"
        );
        // Resent late (the next fire is near, or past): an hour from now.
        assert_eq!(
            retry_until(job, fire, at("2025-01-02T07:30:00Z")),
            at("2025-01-02T08:30:00Z")
        );
    }

    /// A delivery the transport refuses for now (the outbox cannot be written) is kept
    /// failed with its next try and retry time on the run's clock, not the real one;
    /// `resend` then sends the kept message and the run succeeds; a second send of it
    /// sends nothing.
    #[test]
    fn a_failed_delivery_is_kept_on_the_runs_clock_and_resent_from_the_kept_message() {
        let dir = tempfile::tempdir().unwrap();
        let config = config(dir.path());
        let job = &config.jobs[0];
        let smtp = config.smtp.as_ref().unwrap();
        let outbox = dir.path().join("outbox");
        std::fs::write(&outbox, b"not a folder").unwrap();
        let fire = at("2025-01-01T08:00:00Z");
        let clock: SharedClock = std::sync::Arc::new(FixedClock(at("2025-01-01T08:00:05Z")));
        let ledger = Ledger::open_with_clock(&config.state_path(), clock.clone()).unwrap();
        ledger.begin_run("j", "p", Some(fire), None).unwrap();
        let content = EditionMail {
            subject: "Report".into(),
            text: "text".into(),
            html: "<p>html</p>".into(),
            attachments: Vec::new(),
            outbox_name: "j_p".into(),
        };
        ledger.save_message("j", "p", "", "en", &content).unwrap();
        let mailer = Mailer::new(smtp).unwrap();
        let stop = AtomicBool::new(false);
        let sender = Sender {
            job,
            period: "p",
            mailer: &mailer,
            ledger: Some(&ledger),
            stop: &stop,
            clock: clock.as_ref(),
            retry_until: retry_until(job, fire, clock.now()),
            files: RunFiles {
                run_dir: None,
                job_dir: config.defaults.output_dir.join(&job.output),
            },
        };
        let (mut out, mut log, mut errors) = (no_run(job), Vec::new(), Vec::new());
        let mut tally = Tally {
            out: &mut out,
            log: &mut log,
            errors: &mut errors,
        };
        let edition = || Edition {
            region: "",
            lang: "en",
            content: &content,
            to: "ceo@example.com".parse().unwrap(),
            test: false,
        };
        sender.send(edition(), &mut tally).unwrap();
        assert_eq!((tally.out.sent, tally.out.failed), (0, 1));
        assert!(
            tally.errors[0]
                .ends_with("tried again from 2025-01-01 08:00:07 until 2025-01-02 08:00:00"),
            "{:?}",
            tally.errors
        );
        let d = &ledger.deliveries("j", "p").unwrap()[0];
        assert_eq!((d.state, d.attempts), (DeliveryState::Failed, 1));
        assert_eq!(d.next_attempt_at.as_deref(), Some("2025-01-01 08:00:07"));
        assert_eq!(d.retry_until.as_deref(), Some("2025-01-02 08:00:00"));

        std::fs::remove_file(&outbox).unwrap();
        let r = resend(&config, job, &ledger, "p", None, &stop).unwrap();
        assert_eq!((r.state, r.sent, r.failed), (RunState::Succeeded, 1, 0));
        assert_eq!(std::fs::read_dir(&outbox).unwrap().count(), 1);
        let d = &ledger.deliveries("j", "p").unwrap()[0];
        assert_eq!((d.state, d.attempts), (DeliveryState::Sent, 2));
        // Nothing left to send: nothing sent again.
        let r = resend(&config, job, &ledger, "p", None, &stop).unwrap();
        assert_eq!(r.sent, 0);
        sender.send(edition(), &mut tally).unwrap();
        assert_eq!(tally.out.sent, 0, "already sent");
        assert_eq!(std::fs::read_dir(&outbox).unwrap().count(), 1);
    }
}
