//! What a job mails: each edition to its language's recipients (recorded in the
//! ledger so that nothing is sent twice), previews and test sends, and the owners'
//! alert when a run fails. The email's sentences are the edition's own.

use chrono::Utc;
use lettre::message::Mailbox;
use serde_json::json;

use super::config::Job;
use super::ledger::{DeliveryKey, DeliveryState};
use super::mail::{Attachment, Mailer, Outgoing};
use super::{Context, Delivery, JobError, JobRun};
use crate::render::templates::{self, NarrativeError};
use crate::run::RunOutcome;

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
    templates: &templates::Templates,
    max_attachment: u64,
    attach_csv: bool,
) -> Result<EmailContent, NarrativeError> {
    let language = templates.language(&job.report, lang)?;
    let edition = outcome.edition(lang);
    let file = format!("report.{lang}.pdf");
    let path = outcome.dir.join(&file);
    let bytes = std::fs::read(&path).unwrap_or_default();
    let attached = (bytes.len() as u64) <= max_attachment && !bytes.is_empty();
    let mb = |b: u64| format!("{:.1}", b as f64 / (1024.0 * 1024.0));
    let value = json!({ "e": {
        "title": language.strings.get("document.title"),
        "period": edition.map(|e| e.period_label.as_str()),
        "findings": edition.map(|e| &e.headlines),
        "actions": edition.map(|e| &e.actions),
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
pub fn alert_owners(ctx: &Context<'_>, period: &str, error: &str, log: &[String]) {
    let Context {
        config,
        job,
        fire,
        delivery,
        ..
    } = *ctx;
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
        "fire_time": crate::source::timestamp::format_utc(fire),
        "host": std::env::var("HOSTNAME").unwrap_or_default(),
        "log": log.iter().rev().take(20).rev().collect::<Vec<_>>(),
    });
    let text = match templates::owner_alert(&config.templates(), &value) {
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
