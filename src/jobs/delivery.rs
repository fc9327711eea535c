//! An edition's delivery: each edition's email to its language's recipients, each
//! delivery claimed in the ledger before its SMTP attempt (so that nothing is sent
//! twice) and its outcome recorded: sent, given up, or failed for a transient reason
//! and kept, with its next try and retry time on the run's clock, for `resend`.
//! Previews and test sends touch no ledger.

use std::sync::atomic::{AtomicBool, Ordering};

use chrono::{DateTime, Utc};
use lettre::message::Mailbox;

use super::config::{Job, MailedEdition};
use super::email::{Compose, EditionMail, RunFiles};
use super::ledger::{Claim, DeliveryKey, DeliveryState, DeliveryUpdate, Ledger};
use super::mail::{Failure, Mailer, Outgoing};
use super::{Context, Delivery, JobError, JobRun};
use crate::clock::Clock;
use crate::run::RunOutcome;

/// Sends what the delivery mode asks; returns the errors that make the run fail.
pub fn deliver(
    ctx: &Context<'_>,
    outcome: &RunOutcome,
    out: &mut JobRun,
    log: &mut Vec<String>,
) -> Result<Vec<String>, JobError> {
    let watch = out.watch.clone();
    deliver_edition(ctx, outcome, None, &ctx.job.mailed(), &watch, out, log)
}

/// A region's edition of a bursted job: its folder (the ledger's key) and the
/// value as the data spells it (the subject's).
#[derive(Debug, Clone, Copy)]
pub struct Region<'a> {
    pub folder: &'a str,
    pub label: &'a str,
}

/// [`deliver`] of one edition of the run (`region`: a bursted job's region, whose
/// deliveries and message the ledger keys by it) to `mailed`, its emails leading
/// with the fired rules of `watch`.
pub fn deliver_edition(
    ctx: &Context<'_>,
    outcome: &RunOutcome,
    region: Option<Region<'_>>,
    mailed: &[MailedEdition],
    watch: &[crate::run::watch::WatchResult],
    out: &mut JobRun,
    log: &mut Vec<String>,
) -> Result<Vec<String>, JobError> {
    let Context {
        config,
        job,
        delivery,
        ledger,
        ..
    } = *ctx;
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
    // The comparison period a fired watch rule names, only when one fired.
    let compared_with = outcome
        .comparison_period
        .as_deref()
        .filter(|_| watch.iter().any(|w| w.fired));
    let sender = Sender {
        job,
        period: &outcome.period,
        mailer: &mailer,
        ledger,
        stop: ctx.stop,
        clock: ctx.clock.as_ref(),
        retry_until: retry_until(job, ctx.fire, ctx.clock.now()),
        files: RunFiles {
            run_dir: Some(&outcome.dir),
            job_dir: config.defaults.output_dir.join(&job.output),
        },
    };
    let compose = Compose {
        job,
        outcome,
        templates: &templates,
        smtp,
        watch,
        compared_with,
        region: region.map(|r| (r.folder, r.label)),
    };
    let region_key = region.map_or("", |r| r.folder);
    // Each language at each depth a list asks for; its key parts the brief's
    // deliveries and message from the full report's in the ledger.
    for mailed in mailed {
        let (lang, key) = (&mailed.lang, &mailed.key());
        let recipients: Vec<Mailbox> = match delivery {
            Delivery::TestTo(addr) => vec![addr.clone()],
            _ => mailed.recipients.clone(),
        };
        if recipients.is_empty() {
            continue;
        }
        let test_to = match delivery {
            Delivery::TestTo(addr) => Some(addr),
            _ => None,
        };
        let content = match compose.email(lang, mailed.depth, test_to) {
            Ok(c) => c,
            Err(e) => {
                errors.push(e.to_string());
                continue;
            }
        };
        if let Some(l) = ledger {
            l.save_message(&job.name, &outcome.period, region_key, key, &content)?;
        }
        let mut tally = Tally {
            out: &mut *out,
            log: &mut *log,
            errors: &mut errors,
        };
        for to in recipients {
            let edition = Edition {
                region: region_key,
                lang: key,
                content: &content,
                to,
                test: test_to.is_some(),
            };
            sender.send(edition, &mut tally)?;
        }
    }
    Ok(errors)
}

/// How long a delivery that failed for a transient reason keeps being tried: until
/// the job's next fire (when the next edition is due), and at least an hour from
/// `now`.
pub fn retry_until(job: &Job, fire: DateTime<Utc>, now: DateTime<Utc>) -> DateTime<Utc> {
    let floor = now + chrono::Duration::hours(1);
    job.cron
        .next_after(job.timezone, fire)
        .map_or(floor, |next| next.max(floor))
}

/// Sends one edition's message to recipients, keeping the ledger of record.
pub(super) struct Sender<'a> {
    pub(super) job: &'a Job,
    pub(super) period: &'a str,
    pub(super) mailer: &'a Mailer,
    pub(super) ledger: Option<&'a Ledger>,
    pub(super) stop: &'a AtomicBool,
    /// When a retry is due, a test send's Message-ID.
    pub(super) clock: &'a dyn Clock,
    pub(super) retry_until: DateTime<Utc>,
    pub(super) files: RunFiles<'a>,
}

/// One message to send: an edition's mail to one recipient.
pub(super) struct Edition<'a> {
    /// A bursted job's region (its folder); `''` otherwise.
    pub(super) region: &'a str,
    /// The edition's ledger key: its language, `<lang>.brief` for a brief
    /// (`config::MailedEdition::key`).
    pub(super) lang: &'a str,
    pub(super) content: &'a EditionMail,
    pub(super) to: Mailbox,
    /// A test send (`--to`): its own Message-ID, so it is never taken for the real one.
    pub(super) test: bool,
}

/// What the deliveries of one run add up to: the counts, the log lines an alert
/// quotes, the errors that make the run fail.
pub(super) struct Tally<'a> {
    pub(super) out: &'a mut JobRun,
    pub(super) log: &'a mut Vec<String>,
    pub(super) errors: &'a mut Vec<String>,
}

/// A delivery this process claimed: its key, the Message-ID it goes out with, and
/// what the ledger said of earlier attempts.
struct Claimed<'a> {
    key: DeliveryKey<'a>,
    message_id: String,
    /// Left `sending` by a process that is gone: the server may hold a copy.
    again: bool,
    attempts_before: i64,
}

impl Sender<'_> {
    pub(super) fn send(&self, edition: Edition<'_>, tally: &mut Tally<'_>) -> Result<(), JobError> {
        let job = self.job;
        let recipient = edition.to.email.to_string();
        let key = DeliveryKey {
            job: &job.name,
            period: self.period,
            region: edition.region,
            lang: edition.lang,
            recipient: &recipient,
        };
        let lang = &shown(&key);
        let retry_region = if key.region.is_empty() {
            String::new()
        } else {
            format!(" --region {}", key.region)
        };
        let message_id = if edition.test {
            format!(
                "<test.{}.{}>",
                self.clock.now().timestamp_micros(),
                key.message_id(&self.mailer.from_domain())
                    .trim_matches(['<', '>'])
            )
        } else {
            key.message_id(&self.mailer.from_domain())
        };
        let mut again = false;
        let mut attempts_before = 0;
        let mut claim = None;
        if let Some(l) = self.ledger {
            match l.claim_delivery(&key, &message_id)? {
                Claim::Settled(DeliveryState::Sent) => {
                    tracing::info!(job = %job.name, lang = %lang, recipient, "already sent; not sending again");
                    return Ok(());
                }
                Claim::Settled(_) => {
                    tally.errors.push(format!(
                        "delivery of {lang} to {recipient} was given up earlier (`cxreport retry --job {} --period {}{retry_region}` sends it again)",
                        job.name, self.period
                    ));
                    tally.out.failed += 1;
                    return Ok(());
                }
                Claim::Taken => {
                    // An overlapping run of the same period has it: it records the
                    // outcome, this run neither sends nor counts it.
                    let line = format!(
                        "{lang} to {recipient}: another run of this job is sending it; not sent by this run"
                    );
                    tracing::info!(job = %job.name, period = self.period, "{line}");
                    tally.log.push(line);
                    return Ok(());
                }
                Claim::Won {
                    again: a,
                    attempts,
                    lock,
                } => {
                    // Left by a process that died during the SMTP conversation: the
                    // server may have accepted it. Sent again with the same Message-ID.
                    again = a;
                    attempts_before = attempts;
                    claim = Some(lock);
                }
            }
        }
        let sent_before = tally.out.sent;
        let claimed = Claimed {
            key,
            message_id,
            again,
            attempts_before,
        };
        self.send_claimed(edition, claimed, tally)?;
        if let Some(lock) = claim {
            lock.release(tally.out.sent > sent_before);
        }
        Ok(())
    }

    /// The part of [`Sender::send`] done holding the delivery's claim.
    fn send_claimed(
        &self,
        edition: Edition<'_>,
        claimed: Claimed<'_>,
        tally: &mut Tally<'_>,
    ) -> Result<(), JobError> {
        let Edition { content, to, .. } = edition;
        let job = self.job;
        let key = &claimed.key;
        let lang = &shown(key);
        let recipient = key.recipient;
        if self.stop.load(Ordering::SeqCst) {
            let line = format!("{lang} to {recipient}: not sent, the process is stopping");
            if let Some(l) = self.ledger {
                l.update_delivery(
                    key,
                    &DeliveryUpdate {
                        state: DeliveryState::Failed,
                        attempts_added: 0,
                        error: Some("not sent: the process was stopping"),
                        next_attempt: Some(self.clock.now()),
                        retry_until: Some(self.retry_until),
                    },
                )?;
            }
            tally.out.failed += 1;
            tally.out.interrupted += 1;
            tally.errors.push(line);
            return Ok(());
        }
        let attachments = match content.attachments(&self.files) {
            Ok(a) => a,
            Err(f) => return self.settle(&claimed, 1, Some(f), tally),
        };
        let message = Outgoing {
            message_id: claimed.message_id.clone(),
            to,
            subject: content.subject.clone(),
            text: content.text.clone(),
            html: Some(content.html.clone()),
            attachments,
            outbox_name: format!("{}_{}_{recipient}", content.outbox_name, key.lang),
        };
        let log = &mut *tally.log;
        let (attempts, failure) = self.mailer.send(&message, self.stop, |n, f| {
            let line = format!("{lang} to {recipient}: attempt {n} failed ({f})");
            tracing::warn!(job = %job.name, "{line}");
            log.push(line);
        });
        if failure.is_none() {
            tracing::info!(job = %job.name, lang = %lang, recipient, attempts, possible_duplicate = claimed.again, via = %self.mailer.target, "delivered");
        }
        self.settle(&claimed, attempts, failure, tally)
    }

    /// Records how a delivery's `attempts` (this time) ended.
    fn settle(
        &self,
        claimed: &Claimed<'_>,
        attempts: u32,
        failure: Option<Failure>,
        tally: &mut Tally<'_>,
    ) -> Result<(), JobError> {
        let key = &claimed.key;
        let (lang, recipient) = (&shown(key), key.recipient);
        let (state, error, next) = match &failure {
            None => {
                tally.out.sent += 1;
                (DeliveryState::Sent, None, None)
            }
            Some(f @ Failure::Permanent(_)) => {
                tally.out.failed += 1;
                let line = format!(
                    "delivery of {lang} to {recipient} given up after {attempts} attempt(s): {f}"
                );
                tracing::error!(job = %self.job.name, "{line}");
                tally.errors.push(line);
                (DeliveryState::GaveUp, Some(f.to_string()), None)
            }
            Some(f @ Failure::Transient(_)) => {
                tally.out.failed += 1;
                let total = claimed.attempts_before + i64::from(attempts);
                let next = self.clock.now()
                    + chrono::Duration::from_std(self.mailer.retry_delay(total))
                        .unwrap_or_else(|_| chrono::Duration::hours(1));
                let line = if self.ledger.is_some() {
                    format!(
                        "delivery of {lang} to {recipient} failed after {attempts} attempt(s): {f}; tried again from {} until {}",
                        crate::source::timestamp::format_utc(next),
                        crate::source::timestamp::format_utc(self.retry_until)
                    )
                } else {
                    format!(
                        "delivery of {lang} to {recipient} failed after {attempts} attempt(s): {f}"
                    )
                };
                tracing::error!(job = %self.job.name, "{line}");
                tally.errors.push(line);
                (DeliveryState::Failed, Some(f.to_string()), Some(next))
            }
        };
        if let Some(l) = self.ledger {
            l.update_delivery(
                key,
                &DeliveryUpdate {
                    state,
                    attempts_added: i64::from(attempts),
                    error: error.as_deref(),
                    next_attempt: next,
                    retry_until: next.map(|_| self.retry_until),
                },
            )?;
        }
        Ok(())
    }
}

/// How a delivery's edition reads in a log line: its language key (`zh`,
/// `en.brief`), after its region when it has one (`cn zh`).
fn shown(key: &DeliveryKey<'_>) -> String {
    if key.region.is_empty() {
        key.lang.to_owned()
    } else {
        format!("{} {}", key.region, key.lang)
    }
}
