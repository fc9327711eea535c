//! What an edition's email is: its subject, text and HTML from the report's email
//! templates (the edition's own sentences, fired watch rules and periods in its words,
//! a test send marked), the files it attaches (named after report, period and
//! language) and where they may come from. Sending it is `delivery`, sending it again
//! `resend`; the owners' alerts are `alerts`.

use std::path::{Path, PathBuf};

use lettre::message::Mailbox;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::config::{Job, Smtp};
use super::mail::{Attachment, Failure};
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
    pub(super) fn attachments(&self, files: &RunFiles<'_>) -> Result<Vec<Attachment>, Failure> {
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
pub(super) struct RunFiles<'a> {
    /// The run's directory as recorded (`None`: none was).
    pub(super) run_dir: Option<&'a Path>,
    /// `output_dir/<job output>`.
    pub(super) job_dir: PathBuf,
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
pub(super) struct Compose<'a> {
    pub(super) job: &'a Job,
    pub(super) outcome: &'a RunOutcome,
    pub(super) templates: &'a templates::Templates,
    pub(super) smtp: &'a Smtp,
    pub(super) watch: &'a [WatchResult],
    /// The comparison period a fired watch rule names (its key), if one fired.
    pub(super) compared_with: Option<&'a str>,
}

impl Compose<'_> {
    /// The email of the `lang` edition; `test_to`: a test send to that address.
    pub(super) fn email(
        &self,
        lang: &str,
        test_to: Option<&Mailbox>,
    ) -> Result<EditionMail, NarrativeError> {
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
        let compared_with = compared_with.map(|key| crate::reports::period_key_label(key, &as_of));
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
