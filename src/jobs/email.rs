//! What a job mails: each edition to its language's recipients (recorded in the
//! ledger so that nothing is sent twice, and kept so that a delivery that failed for a
//! transient reason is sent later as the same message), previews and test sends. The
//! email's sentences are the edition's own. The owners' alerts are `alerts`.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use chrono::{DateTime, Utc};
use lettre::message::Mailbox;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::config::{Config, Job, Smtp};
use super::ledger::{Claim, DeliveryKey, DeliveryRecord, DeliveryState, DeliveryUpdate, Ledger};
use super::mail::{Attachment, Failure, Mailer, Outgoing};
use super::{Context, Delivery, JobError, JobRun};
use crate::clock::Clock;
use crate::render::templates::{self, NarrativeError};
use crate::run::watch::WatchResult;
use crate::run::RunOutcome;

/// What one edition mails, as kept in the ledger: the text, and the files attached
/// (read when sending, so a retry attaches the very files of the run).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EditionMail {
    pub subject: String,
    pub text: String,
    pub html: String,
    pub attachments: Vec<(String, String, PathBuf)>,
    /// File name prefix in an outbox.
    pub outbox_name: String,
}

impl EditionMail {
    /// The files, read from `files` (where they must lie).
    fn attachments(&self, files: &RunFiles<'_>) -> Result<Vec<Attachment>, Failure> {
        self.attachments
            .iter()
            .map(|(name, content_type, path)| {
                let path = files.check(path)?;
                Ok(Attachment {
                    filename: name.clone(),
                    content_type: if content_type == "application/pdf" {
                        "application/pdf"
                    } else {
                        "text/csv; charset=utf-8"
                    },
                    bytes: std::fs::read(&path).map_err(|e| {
                        Failure::Permanent(format!(
                            "the report file {} cannot be read: {e}",
                            path.display()
                        ))
                    })?,
                })
            })
            .collect()
    }
}

/// Where a run's attachments may come from: its own output directory, itself inside
/// the job's folder of the configured `output_dir`. A kept message is read back from
/// the ledger, a file that whoever can write it could point at any file this process
/// can read; so every path is checked after resolving `..` and symbolic links.
struct RunFiles<'a> {
    /// The run's directory as recorded (`None`: none was).
    run_dir: Option<&'a Path>,
    /// `output_dir/<job output>`.
    job_dir: PathBuf,
}

impl RunFiles<'_> {
    fn check(&self, path: &Path) -> Result<PathBuf, Failure> {
        let refuse = |why: String| {
            Failure::Permanent(format!(
                "the attachment {} is refused: {why}; not sent (the message kept in the run ledger names files outside the run)",
                path.display()
            ))
        };
        let Some(run_dir) = self.run_dir else {
            return Err(refuse("the run has no output directory recorded".into()));
        };
        let resolve = |p: &Path, what: &str| {
            std::fs::canonicalize(p).map_err(|e| {
                Failure::Permanent(format!("the {what} {} cannot be read: {e}", p.display()))
            })
        };
        let job_dir = resolve(&self.job_dir, "job's output folder")?;
        let run = resolve(run_dir, "run's output directory")?;
        if run == job_dir || !run.starts_with(&job_dir) {
            return Err(refuse(format!(
                "the run's recorded directory {} is not inside the job's output folder {}",
                run_dir.display(),
                job_dir.display()
            )));
        }
        let file = resolve(path, "report file")?;
        if !file.starts_with(&run) {
            return Err(refuse(format!(
                "it resolves to {}, outside the run's output directory {}",
                file.display(),
                run.display()
            )));
        }
        Ok(file)
    }
}

/// Sends what the delivery mode asks; returns the errors that make the run fail.
pub fn deliver(
    ctx: &Context<'_>,
    outcome: &RunOutcome,
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
    // The comparison period a fired watch rule names: the whole summary serialized
    // once, and only when one fired.
    let compared_with = if out.watch.iter().any(|w| w.fired) {
        outcome.comparison_period.clone()
    } else {
        serde_json::Value::Null
    };
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
    // A copy: the deliveries below count into `out` while the emails quote these.
    let watch = out.watch.clone();
    let compose = Compose {
        job,
        outcome,
        templates: &templates,
        smtp,
        watch: &watch,
        compared_with: &compared_with,
    };
    for lang in &job.languages {
        let recipients: Vec<Mailbox> = match delivery {
            Delivery::TestTo(addr) => vec![addr.clone()],
            _ => job.recipients.get(lang).cloned().unwrap_or_default(),
        };
        if recipients.is_empty() {
            continue;
        }
        let test_to = match delivery {
            Delivery::TestTo(addr) => Some(addr),
            _ => None,
        };
        let content = match compose.email(lang, test_to) {
            Ok(c) => c,
            Err(e) => {
                errors.push(e.to_string());
                continue;
            }
        };
        if let Some(l) = ledger {
            l.save_message(&job.name, &outcome.period, lang, &content)?;
        }
        let mut tally = Tally {
            out: &mut *out,
            log: &mut *log,
            errors: &mut errors,
        };
        for to in recipients {
            let edition = Edition {
                lang,
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

/// The deliveries of one run that are not sent yet, sent again from the kept
/// messages (the daemon's retries, `cxreport retry`). The caller holds the job's lock.
pub fn resend(
    config: &Config,
    job: &Job,
    ledger: &Ledger,
    period: &str,
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
    };
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
                if !d.state.settled() {
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
        if d.state.settled() {
            continue;
        }
        let Some(content) = ledger.message::<EditionMail>(&job.name, period, &d.lang)? else {
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

/// Sends one edition's message to recipients, keeping the ledger of record.
struct Sender<'a> {
    job: &'a Job,
    period: &'a str,
    mailer: &'a Mailer,
    ledger: Option<&'a Ledger>,
    stop: &'a AtomicBool,
    /// When a retry is due, a test send's Message-ID.
    clock: &'a dyn Clock,
    retry_until: DateTime<Utc>,
    files: RunFiles<'a>,
}

/// One message to send: an edition's mail to one recipient.
struct Edition<'a> {
    lang: &'a str,
    content: &'a EditionMail,
    to: Mailbox,
    /// A test send (`--to`): its own Message-ID, so it is never taken for the real one.
    test: bool,
}

/// What the deliveries of one run add up to: the counts, the log lines an alert
/// quotes, the errors that make the run fail.
struct Tally<'a> {
    out: &'a mut JobRun,
    log: &'a mut Vec<String>,
    errors: &'a mut Vec<String>,
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
    fn send(&self, edition: Edition<'_>, tally: &mut Tally<'_>) -> Result<(), JobError> {
        let (job, lang) = (self.job, edition.lang);
        let recipient = edition.to.email.to_string();
        let key = DeliveryKey {
            job: &job.name,
            period: self.period,
            lang,
            recipient: &recipient,
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
                    tracing::info!(job = %job.name, lang, recipient, "already sent; not sending again");
                    return Ok(());
                }
                Claim::Settled(_) => {
                    tally.errors.push(format!(
                        "delivery of {lang} to {recipient} was given up earlier (`cxreport retry --job {} --period {}` sends it again)",
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
        let Edition {
            lang, content, to, ..
        } = edition;
        let job = self.job;
        let key = &claimed.key;
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
            outbox_name: format!("{}_{lang}_{recipient}", content.outbox_name),
        };
        let log = &mut *tally.log;
        let (attempts, failure) = self.mailer.send(&message, self.stop, |n, f| {
            let line = format!("{lang} to {recipient}: attempt {n} failed ({f})");
            tracing::warn!(job = %job.name, "{line}");
            log.push(line);
        });
        if failure.is_none() {
            tracing::info!(job = %job.name, lang, recipient, attempts, possible_duplicate = claimed.again, via = %self.mailer.target, "delivered");
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
        let (lang, recipient) = (key.lang, key.recipient);
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

/// The name an attachment carries in the email: the report, the period as the
/// cover prints it (`2023-12-15..2024-06-15`, `as-of-2024-06-15`) and the language,
/// so that the files of several months and languages saved side by side stay apart
/// (`conversation-usage_2023-12-15..2024-06-15_en.pdf`). ASCII letters, digits and
/// `-_.` only; the file on disk keeps its own name.
pub fn attachment_name(report: &str, period: &str, part: &str, ext: &str) -> String {
    let period = match period.split_once('_') {
        Some((a, b)) if !period.starts_with("fire-") => format!("{a}..{b}"),
        _ => period.replacen("asof-", "as-of-", 1),
    };
    let safe = |s: &str| -> String {
        s.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '-' | '.') {
                    c
                } else {
                    '-'
                }
            })
            .collect()
    };
    format!("{}_{}_{}.{ext}", safe(report), safe(&period), safe(part))
}

/// A test send's subject prefix and the sentence that opens its body, in the
/// edition's language (English when a language folder of the user's has none).
fn test_marks(
    language: &crate::render::templates::Language,
    to: &Mailbox,
    job: &str,
) -> (String, String) {
    let prefix = language
        .strings
        .get_opt("email.test_subject")
        .unwrap_or_else(|| "[TEST] ".to_owned());
    let note = language
        .strings
        .get_opt("email.test_note")
        .unwrap_or_else(|| {
            "This is a test, sent only to {to} (`cxreport run --job {job} --to`); the job's recipients did not get it.".to_owned()
        })
        .replace("{to}", to.email.as_ref())
        .replace("{job}", job);
    (prefix, note)
}

/// A fired rule as the email prints it: its numbers ([`WatchResult::printed`]) and
/// the metric and slice in the edition's words, as the cover names them.
fn watch_line(language: &crate::render::templates::Language, w: &WatchResult) -> serde_json::Value {
    let mut v = w.printed();
    let s = &language.strings;
    let metric = s
        .get_opt(&format!("change.metric_{}", w.metric))
        .unwrap_or_else(|| w.metric.clone());
    let slice = if w.slice == "overall" {
        s.get_opt("labels.overall")
            .unwrap_or_else(|| w.slice.clone())
    } else {
        s.get_opt(&format!("labels.segment.{}", w.slice))
            .unwrap_or_else(|| w.slice.clone())
    };
    v["metric_label"] = metric.into();
    v["slice_label"] = slice.into();
    v
}

/// What every edition's email of one run is made from.
struct Compose<'a> {
    job: &'a Job,
    outcome: &'a RunOutcome,
    templates: &'a templates::Templates,
    smtp: &'a Smtp,
    watch: &'a [WatchResult],
    /// The comparison period a fired watch rule names (its key), or null.
    compared_with: &'a serde_json::Value,
}

impl Compose<'_> {
    /// The email of the `lang` edition; `test_to`: a test send to that address.
    fn email(&self, lang: &str, test_to: Option<&Mailbox>) -> Result<EditionMail, NarrativeError> {
        let Compose {
            job,
            outcome,
            templates,
            smtp,
            watch,
            compared_with,
        } = *self;
        let language = templates.language(&job.report, lang)?;
        let edition = outcome.edition(lang);
        let on_disk = format!("report.{lang}.pdf");
        let path = outcome.dir.join(&on_disk);
        let file = attachment_name(&job.report, &outcome.period, lang, "pdf");
        let as_of = language
            .strings
            .get_opt("document.as_of")
            .unwrap_or_else(|| "as of".to_owned());
        let compared_with = match compared_with.as_str() {
            Some(key) => serde_json::Value::from(crate::reports::period_key_label(key, &as_of)),
            None => compared_with.clone(),
        };
        let size = std::fs::metadata(&path).map_or(0, |m| m.len());
        let attached = size <= smtp.max_attachment_bytes && size > 0;
        let mb = |b: u64| format!("{:.1}", b as f64 / (1024.0 * 1024.0));
        let value = json!({ "e": {
            "title": language.strings.get("document.title"),
            "period": edition.map(|e| e.period_label.as_str()),
            "findings": edition.map(|e| &e.headlines),
            "actions": edition.map(|e| &e.actions),
            "file": file,
            "attached": attached,
            "size_mb": mb(size),
            "limit_mb": mb(smtp.max_attachment_bytes),
            "path": std::fs::canonicalize(&path).unwrap_or(path.clone()).display().to_string(),
            "job": job.name,
            "watch": watch.iter().filter(|w| w.fired).map(|w| &w.rule).collect::<Vec<_>>(),
            "watch_label": language.strings.get("email.watch"),
            "watch_fired": watch.iter().filter(|w| w.fired).map(|w| watch_line(&language, w)).collect::<Vec<_>>(),
            "compared_with": compared_with,
        }});
        let e = &value["e"];
        let mut attachments = Vec::new();
        if attached {
            attachments.push((file, "application/pdf".to_owned(), path));
        }
        if let Some(name) = outcome.main_csv.as_deref().filter(|_| smtp.attach_csv) {
            let stem = name.strip_suffix(".csv").unwrap_or(name);
            attachments.push((
                attachment_name(&job.report, &outcome.period, stem, "csv"),
                "text/csv".to_owned(),
                outcome.dir.join(name),
            ));
        }
        // The templates can be overrides: rendered where a runaway one ends only itself.
        let mut texts = crate::run::worker::render_texts(
            templates,
            &job.report,
            lang,
            "e",
            e,
            &[
                ("email_subject.tera", true),
                ("email.txt.tera", false),
                ("email.html", false),
            ],
        )?
        .into_iter();
        let mut next = || texts.next().unwrap_or_default();
        let (mut subject, mut text, mut html) = (next(), next(), next());
        // Marked here, not in the templates: an override of them cannot lose the mark.
        if let Some(to) = test_to {
            let (prefix, note) = test_marks(&language, to, &job.name);
            subject = format!("{prefix}{subject}");
            text = format!("{note}\n\n{text}");
            let note_html = format!(
                "<p style=\"border: 1px solid #c0392b; padding: 6px;\"><strong>{}</strong></p>",
                html_escape(&note)
            );
            html = match html
                .find("<body")
                .and_then(|at| html[at..].find('>').map(|end| at + end + 1))
            {
                Some(after) => format!("{}{note_html}{}", &html[..after], &html[after..]),
                None => format!("{note_html}{html}"),
            };
        }
        Ok(EditionMail {
            subject,
            text,
            html,
            attachments,
            outbox_name: format!("{}_{}", job.name, outcome.period),
        })
    }
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::{FixedClock, SharedClock};
    use crate::jobs::ledger::RunState;

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
        ledger.save_message("j", "p", "en", &content).unwrap();
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
        let r = resend(&config, job, &ledger, "p", &stop).unwrap();
        assert_eq!((r.state, r.sent, r.failed), (RunState::Succeeded, 1, 0));
        assert_eq!(std::fs::read_dir(&outbox).unwrap().count(), 1);
        let d = &ledger.deliveries("j", "p").unwrap()[0];
        assert_eq!((d.state, d.attempts), (DeliveryState::Sent, 2));
        // Nothing left to send: nothing sent again.
        let r = resend(&config, job, &ledger, "p", &stop).unwrap();
        assert_eq!(r.sent, 0);
        sender.send(edition(), &mut tally).unwrap();
        assert_eq!(tally.out.sent, 0, "already sent");
        assert_eq!(std::fs::read_dir(&outbox).unwrap().count(), 1);
    }

    #[test]
    fn attachments_are_named_after_report_period_and_language() {
        assert_eq!(
            attachment_name("conversation-usage", "2023-12-15_2024-06-15", "zh", "pdf"),
            "conversation-usage_2023-12-15..2024-06-15_zh.pdf"
        );
        assert_eq!(
            attachment_name("customer-segmentation", "asof-2024-06-15", "en", "pdf"),
            "customer-segmentation_as-of-2024-06-15_en.pdf"
        );
        assert_eq!(
            attachment_name("tag-drivers", "2024-01-01_2024-06-30", "tag_drivers", "csv"),
            "tag-drivers_2024-01-01..2024-06-30_tag-drivers.csv"
        );
        // A language folder of the user's with an odd name stays a safe file name.
        assert_eq!(
            attachment_name("r", "2024-01-01_2024-06-30", "p t/../x", "pdf"),
            "r_2024-01-01..2024-06-30_p-t-..-x.pdf"
        );
    }

    #[test]
    fn only_the_runs_own_files_are_attached() {
        let dir = tempfile::tempdir().unwrap();
        let job_dir = dir.path().join("out/j");
        let run = job_dir.join("2024-01-01_2024-06-30");
        std::fs::create_dir_all(&run).unwrap();
        std::fs::write(run.join("report.en.pdf"), b"%PDF").unwrap();
        std::fs::write(dir.path().join("secret"), b"s").unwrap();
        std::os::unix::fs::symlink(dir.path().join("secret"), run.join("link.pdf")).unwrap();
        let files = RunFiles {
            run_dir: Some(&run),
            job_dir: job_dir.clone(),
        };
        assert!(files.check(&run.join("report.en.pdf")).is_ok());
        for outside in [
            PathBuf::from("/etc/passwd"),
            run.join("../../../secret"),
            run.join("link.pdf"),
        ] {
            let e = files.check(&outside).unwrap_err();
            assert!(
                matches!(&e, Failure::Permanent(m) if m.contains("outside the run's output directory")),
                "{}: {e}",
                outside.display()
            );
        }
        // A run directory edited to point elsewhere.
        let etc = RunFiles {
            run_dir: Some(Path::new("/etc")),
            job_dir,
        };
        let e = etc.check(Path::new("/etc/passwd")).unwrap_err();
        assert!(
            e.to_string().contains("not inside the job's output folder"),
            "{e}"
        );
    }
}
