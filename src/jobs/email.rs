//! What an edition's email is: its subject, text and HTML from the report's email
//! templates (the edition's own sentences, each fired watch rule in the sentence
//! page 1 prints, periods in its words, a test send marked), the files it attaches (named after report, period and
//! language) and where they may come from. Sending it is `delivery`, sending it again
//! `resend`; the owners' alerts are `alerts`.
//!
//! Why this file is long: about 290 lines of code; the rest are its tests (every
//! report and language, escaping, the watch block, an override).

use std::path::{Path, PathBuf};

use lettre::message::Mailbox;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::config::{Job, Smtp};
use super::mail::{Attachment, Failure};
use crate::render::templates::{self, NarrativeError};
use crate::reports::{period_label, Period};
use crate::run::watch::WatchResult;
use crate::run::{Depth, RunOutcome};

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
/// edition's language (English where a language folder of the user's has none):
/// `email.test_note` is a Tera template of the strings (`{{ to }}`, `{{ job }}`).
fn test_marks(
    templates: &templates::Templates,
    report: &str,
    language: &templates::Language,
    to: &Mailbox,
    job: &str,
) -> Result<(String, String), NarrativeError> {
    let english;
    let words = if language.strings.get_opt("email.test_note").is_some() {
        language
    } else {
        english = templates.language(report, "en")?;
        &english
    };
    let prefix = language
        .strings
        .get_opt("email.test_subject")
        .unwrap_or_else(|| words.strings.get("email.test_subject"));
    let note = words.fill(
        "email.test_note",
        &json!({ "to": to.email.to_string(), "job": job }),
    );
    words.failure()?;
    Ok((prefix, note))
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
    /// A bursted job's region edition: its folder and the value as the data spells it.
    pub(super) region: Option<(&'a str, &'a str)>,
}

impl Compose<'_> {
    /// The email of the `lang` edition at `depth` (its PDF attached); `test_to`: a
    /// test send to that address.
    pub(super) fn email(
        &self,
        lang: &str,
        depth: Depth,
        test_to: Option<&Mailbox>,
    ) -> Result<EditionMail, NarrativeError> {
        let Compose {
            job,
            outcome,
            templates,
            smtp,
            watch,
            compared_with,
            region,
        } = *self;
        let language = templates.language(&job.report, lang)?;
        let edition = outcome.edition(lang);
        let path = outcome.dir.join(depth.pdf_name(lang));
        // The brief's attachment says so in its name: `…_en-brief.pdf`.
        let file = match depth {
            Depth::Full => attachment_name(&job.report, &outcome.period, lang, "pdf"),
            Depth::Brief => attachment_name(
                &job.report,
                &outcome.period,
                &format!("{lang}-{depth}"),
                "pdf",
            ),
        };
        let size = std::fs::metadata(&path).map_or(0, |m| m.len());
        let attached = size <= smtp.max_attachment_bytes && size > 0;
        let mb = |b: u64| format!("{:.1}", b as f64 / (1024.0 * 1024.0));
        let e = &json!({
            "title": language.strings.get("document.title"),
            "period": edition.map(|e| e.period_label.as_str()),
            "period_covered": edition.and_then(|e| e.period_covered.as_deref()),
            // "the report for <window>", "the report (as of <date>)".
            "period_kind": Period::of_key(&outcome.period).kind(),
            "findings": edition.map(|e| &e.headlines),
            "actions": edition.map(|e| &e.actions),
            // The same with the numbers the PDF prints: each headline's (F1…) and the
            // finding each action follows from.
            "headlines": edition.map(|e| e.headlines.iter().enumerate().map(|(i, text)| json!({
                "label": e.headline_labels.get(i), "text": text,
            })).collect::<Vec<_>>()),
            "action_items": edition.map(|e| e.actions.iter().enumerate().map(|(i, text)| json!({
                "text": text, "follows": e.action_follows.get(i).filter(|f| !f.is_empty()),
            })).collect::<Vec<_>>()),
            "depth": depth.as_str(),
            "file": file,
            "attached": attached,
            "size_mb": mb(size),
            "limit_mb": mb(smtp.max_attachment_bytes),
            "path": std::fs::canonicalize(&path).unwrap_or(path.clone()).display().to_string(),
            "job": job.name,
            "region": region.map(|r| r.1),
            "watch": watch.iter().filter(|w| w.fired).map(|w| &w.rule).collect::<Vec<_>>(),
            "watch_label": language.strings.get("email.watch"),
            // Each printed by the one sentence of `watch_rule.tera`.
            "watch_fired": watch.iter().filter(|w| w.fired).map(|w| w.printed(&language, compared_with)).collect::<Vec<_>>(),
            "compared_with": compared_with.map(|key| period_label(key, Some(&language))),
        });
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
        // A region's edition says so in its subject (`… — CN`), also under an override.
        if let Some((_, label)) = region {
            subject = format!("{subject} — {label}");
        }
        // Marked here, not in the templates: an override of them cannot lose the mark.
        if let Some(to) = test_to {
            let (prefix, note) = test_marks(templates, &job.report, &language, to, &job.name)?;
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
            outbox_name: match region {
                Some((folder, _)) => format!("{}_{}_{folder}", job.name, outcome.period),
                None => format!("{}_{}", job.name, outcome.period),
            },
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
    use crate::jobs::config::Config;
    use crate::run::EditionText;

    const REPORTS: [&str; 3] = ["conversation-usage", "tag-drivers", "customer-segmentation"];
    const LANGS: [&str; 2] = ["en", "zh"];

    /// A job `j` of `report` mailing both editions; `templates`: a user directory.
    fn config(dir: &Path, report: &str, templates: Option<&Path>) -> Config {
        let tpl = templates.map_or(String::new(), |t| {
            format!("templates = \"{}\"\n", t.display())
        });
        let text = format!(
            "[defaults]\ndatabase = \"demo\"\noutput_dir = \"{out}/out\"\n{tpl}[smtp]\noutbox = \"{out}/outbox\"\nfrom = \"r@example.com\"\n[[job]]\nname = \"j\"\nreport = \"{report}\"\ncron = \"0 8 * * *\"\n[job.recipients]\nen = [\"a@example.com\"]\nzh = [\"b@example.com\"]\n",
            out = dir.display()
        );
        Config::parse(Path::new("schedules.toml"), &text).unwrap()
    }

    /// A run of `report` with both editions written, each with `findings` on page 1.
    fn outcome(dir: &Path, report: &str, findings: &[&str]) -> RunOutcome {
        let period = if report == "customer-segmentation" {
            "asof-2024-06-15"
        } else {
            "2023-12-15_2024-06-15"
        };
        let run = dir.join("out/j").join(period);
        std::fs::create_dir_all(&run).unwrap();
        let editions = LANGS
            .iter()
            .map(|lang| {
                std::fs::write(run.join(format!("report.{lang}.pdf")), b"%PDF-1.7").unwrap();
                let language = templates::Templates::default()
                    .language(report, lang)
                    .unwrap();
                EditionText {
                    lang: (*lang).to_owned(),
                    period_label: period_label(period, Some(&language)),
                    period_covered: None,
                    findings: Vec::new(),
                    headlines: findings.iter().map(|f| (*f).to_owned()).collect(),
                    actions: vec!["Call the owners.".to_owned()],
                    headline_labels: (1..=findings.len()).map(|i| format!("F{i}")).collect(),
                    action_follows: vec![if *lang == "en" {
                        "(follows from F2)".to_owned()
                    } else {
                        "（依据 F2）".to_owned()
                    }],
                }
            })
            .collect();
        RunOutcome {
            dir: run,
            period: period.to_owned(),
            window: None,
            comparison_period: None,
            editions,
            main_csv: None,
            pdfs: Vec::new(),
            watch: Vec::new(),
        }
    }

    /// A rule on the conversation count, `fired` or not.
    fn rule(fired: bool) -> WatchResult {
        WatchResult {
            rule: "calls".to_owned(),
            metric: "conv_cnt".to_owned(),
            slice: "overall".to_owned(),
            rise: false,
            threshold: 5.0,
            change: Some(-12.0),
            current: Some(88.0),
            previous: Some(100.0),
            unit: Some(crate::reports::comparison::Unit::Count),
            fired,
            note: None,
        }
    }

    fn mail(
        config: &Config,
        outcome: &RunOutcome,
        lang: &str,
        watch: &[WatchResult],
    ) -> EditionMail {
        Compose {
            job: &config.jobs[0],
            outcome,
            templates: &config.templates(),
            smtp: config.smtp.as_ref().unwrap(),
            watch,
            compared_with: Some("2023-06-15_2023-12-14"),
            region: None,
        }
        .email(lang, Depth::Full, None)
        .unwrap()
    }

    /// A region's edition names its region in the subject, in every language and
    /// under an override of the subject template, and keeps its outbox files apart.
    #[test]
    fn a_region_edition_names_its_region_in_the_subject() {
        let dir = tempfile::tempdir().unwrap();
        let config = config(dir.path(), "conversation-usage", None);
        let o = outcome(dir.path(), "conversation-usage", &["First."]);
        for lang in LANGS {
            let m = Compose {
                job: &config.jobs[0],
                outcome: &o,
                templates: &config.templates(),
                smtp: config.smtp.as_ref().unwrap(),
                watch: &[],
                compared_with: None,
                region: Some(("cn", "CN")),
            }
            .email(lang, Depth::Full, None)
            .unwrap();
            assert!(m.subject.ends_with(" — CN"), "{}", m.subject);
            assert!(m.outbox_name.ends_with("_cn"), "{}", m.outbox_name);
            let plain = mail(&config, &o, lang, &[]);
            assert!(!plain.subject.contains(" — "), "{}", plain.subject);
        }
    }

    fn title(report: &str, lang: &str) -> String {
        templates::Templates::default()
            .language(report, lang)
            .unwrap()
            .strings
            .get("document.title")
    }

    /// The sentence that opens each email: a window is "for" a period, a snapshot is
    /// "as of" one in parentheses (one shared template, the period's kind decides).
    fn opening(report: &str, lang: &str, html: bool) -> String {
        let title = title(report, lang);
        let (t, p) = if html {
            (format!("<strong>{title}</strong>"), "<strong>{}</strong>")
        } else {
            (title, "{}")
        };
        let snapshot = report == "customer-segmentation";
        let period = if snapshot {
            if lang == "en" {
                "as of 2024-06-15"
            } else {
                "截至 2024-06-15"
            }
        } else {
            "2023-12-15 – 2024-06-15"
        };
        match (lang, snapshot) {
            ("en", true) => format!("the {t} report ({}) is ready.", p.replace("{}", period)),
            ("en", false) => format!("the {t} report for {} is ready.", p.replace("{}", period)),
            (_, true) => format!("《{t}》报告（{period}）已生成。"),
            (_, false) => format!("{period} 的《{t}》报告已生成。"),
        }
    }

    #[test]
    fn every_report_and_language_has_its_subject_body_and_attachment() {
        for report in REPORTS {
            let dir = tempfile::tempdir().unwrap();
            let config = config(dir.path(), report, None);
            let o = outcome(dir.path(), report, &["First.", "Second."]);
            for lang in LANGS {
                let m = mail(&config, &o, lang, &[]);
                let label = &o.edition(lang).unwrap().period_label;
                assert_eq!(m.subject, format!("{} · {label}", title(report, lang)));
                assert!(
                    m.text.contains(&opening(report, lang, false)),
                    "{report} {lang}:\n{}",
                    m.text
                );
                assert!(
                    m.html.contains(&opening(report, lang, true)),
                    "{report} {lang}:\n{}",
                    m.html
                );
                // Numbered as the PDF numbers them: the headlines' F1…, and the
                // finding each action follows from.
                let (findings, actions) = if lang == "en" {
                    (
                        "Top findings (numbered as in the PDF):\n- F1 First.\n- F2 Second.\n",
                        "Top actions:\n1. Call the owners. (follows from F2)\n",
                    )
                } else {
                    (
                        "核心结论（编号与 PDF 一致）：\n- F1 First.\n- F2 Second.\n",
                        "优先行动：\n1. Call the owners.（依据 F2）\n",
                    )
                };
                assert!(
                    m.text.contains(findings) && m.text.contains(actions),
                    "{}",
                    m.text
                );
                assert!(
                    m.html.contains(
                        "<ul><li><strong>F1</strong> First.</li><li><strong>F2</strong> Second.</li></ul>"
                    ),
                    "{}",
                    m.html
                );
                assert!(
                    m.text.ends_with(&format!(
                        "cxreport{} j\n",
                        if lang == "en" { ", job" } else { "，任务" }
                    )),
                    "{:?}",
                    m.text
                );
                let file = attachment_name(report, &o.period, lang, "pdf");
                assert!(m.text.contains(&file), "{}", m.text);
                assert_eq!(m.attachments.len(), 1);
                assert_eq!(m.attachments[0].0, file);
                assert_eq!(m.outbox_name, format!("j_{}", o.period));
            }
        }
    }

    #[test]
    fn database_text_is_escaped_in_html_and_not_in_text() {
        let dir = tempfile::tempdir().unwrap();
        let config = config(dir.path(), "tag-drivers", None);
        let o = outcome(dir.path(), "tag-drivers", &["Tag <P1> & \"Bug\" isn't new"]);
        for lang in LANGS {
            let m = mail(&config, &o, lang, &[]);
            assert!(
                m.text.contains("- F1 Tag <P1> & \"Bug\" isn't new\n"),
                "{}",
                m.text
            );
            assert!(
                m.html
                    .contains("</strong> Tag &lt;P1&gt; &amp; &quot;Bug&quot; isn&#x27;t new</li>"),
                "{}",
                m.html
            );
            assert!(!m.html.contains("<P1>"), "{}", m.html);
        }
    }

    #[test]
    fn the_watch_block_is_there_exactly_when_a_rule_fired() {
        for report in REPORTS {
            let dir = tempfile::tempdir().unwrap();
            let config = config(dir.path(), report, None);
            let o = outcome(dir.path(), report, &["First."]);
            for lang in LANGS {
                let (head, line) = if lang == "en" {
                    (
                        "Watch rules that fired (compared with 2023-06-15 – 2023-12-14):",
                        "fell by 12, from 100 to 88 (the rule's threshold: 5).",
                    )
                } else {
                    (
                        "触发的预警规则（对比期 2023-06-15 – 2023-12-14）：",
                        "下降 12，从 100 变为 88（规则阈值：5）。",
                    )
                };
                // The sentence page 1 prints, word for word.
                let language = templates::Templates::default()
                    .language(report, lang)
                    .unwrap();
                let sentence = rule(true).sentence(&language).unwrap();
                assert!(sentence.ends_with(line), "{sentence}");
                let fired = mail(&config, &o, lang, &[rule(true), rule(false)]);
                for body in [&fired.text, &fired.html] {
                    assert!(
                        body.contains(head) && body.contains(&sentence),
                        "{report} {lang}:\n{body}"
                    );
                    assert_eq!(body.matches(line).count(), 1, "{body}");
                }
                assert!(fired.subject.starts_with("["), "{}", fired.subject);
                assert!(fired.subject.contains(": calls] "), "{}", fired.subject);
                for quiet in [vec![], vec![rule(false)]] {
                    let m = mail(&config, &o, lang, &quiet);
                    for body in [&m.text, &m.html, &m.subject] {
                        assert!(
                            !body.contains(head) && !body.contains("calls"),
                            "{report} {lang}:\n{body}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn a_report_specific_override_wins_over_the_shared_email() {
        let dir = tempfile::tempdir().unwrap();
        let user = dir.path().join("templates");
        for (path, text) in [
            ("tag-drivers/en/email.txt.tera", "Mine: {{ e.title }}"),
            ("shared/en/email.html", "<p>Ours: {{ e.title }}</p>"),
        ] {
            let path = user.join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        let td = config(dir.path(), "tag-drivers", Some(&user));
        let o = outcome(dir.path(), "tag-drivers", &["First."]);
        let m = mail(&td, &o, "en", &[]);
        assert_eq!(m.text, format!("Mine: {}", title("tag-drivers", "en")));
        // The user's shared file replaces the built-in shared one for every report.
        assert_eq!(
            m.html,
            format!("<p>Ours: {}</p>", title("tag-drivers", "en"))
        );
        // Another report and another language keep the built-in shared text.
        let cs = config(dir.path(), "customer-segmentation", Some(&user));
        let o = outcome(dir.path(), "customer-segmentation", &["First."]);
        let m = mail(&cs, &o, "en", &[]);
        assert!(
            m.text
                .contains(&opening("customer-segmentation", "en", false)),
            "{}",
            m.text
        );
        let m = mail(
            &td,
            &outcome(dir.path(), "tag-drivers", &["First."]),
            "zh",
            &[],
        );
        assert!(
            m.html.contains(&opening("tag-drivers", "zh", true)),
            "{}",
            m.html
        );
    }

    #[test]
    fn a_test_send_says_to_whom_in_its_language_and_an_old_override_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let built_in = config(dir.path(), "tag-drivers", None);
        let o = outcome(dir.path(), "tag-drivers", &["First."]);
        let to: Mailbox = "t@example.com".parse().unwrap();
        let compose = |config: &Config, lang: &str| {
            Compose {
                job: &config.jobs[0],
                outcome: &o,
                templates: &config.templates(),
                smtp: config.smtp.as_ref().unwrap(),
                watch: &[],
                compared_with: None,
                region: None,
            }
            .email(lang, Depth::Full, Some(&to))
        };
        for (lang, note) in [
            ("en", "This is a test, sent only to t@example.com (`cxreport run --job j --to`); the job's recipients did not get it."),
            ("zh", "这是一封测试邮件，只发给了 t@example.com（`cxreport run --job j --to`）；任务的收件人没有收到。"),
        ] {
            let m = compose(&built_in, lang).unwrap();
            assert!(m.text.starts_with(&format!("{note}\n\n")), "{}", m.text);
            assert!(m.subject.starts_with('['), "{}", m.subject);
        }
        // A strings file of the user's in the form before the notes were Tera.
        let user = dir.path().join("templates");
        std::fs::create_dir_all(user.join("shared/en")).unwrap();
        std::fs::write(
            user.join("shared/en/strings.toml"),
            "[email]\ntest_note = \"Only to {to}.\"\n",
        )
        .unwrap();
        let old = config(dir.path(), "tag-drivers", Some(&user));
        let e = compose(&old, "en").unwrap_err().to_string();
        assert!(
            e.contains("shared/en/strings.toml") && e.contains("`{{ to }}`"),
            "{e}"
        );
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
