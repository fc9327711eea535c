//! End-to-end tests of the reports, one file per report (`conversation_usage.rs`,
//! `tag_drivers.rs`, `customer_segmentation.rs`), checked through their CSVs, summary,
//! charts and both PDF editions read back; here, what holds for all three: the report
//! list, an unknown report, a job of each kind delivering to an outbox. One test binary
//! for all of them: each binary links the whole library.

#[path = "../common/mod.rs"]
mod common;
mod conversation_usage;
mod coverage;
mod customer_segmentation;
mod depth;
mod glossary;
mod method;
mod tag_drivers;
mod truth;
mod zh;

use std::path::Path;
use std::sync::OnceLock;

use common::{demo_db, json, run, text};
pub use common::{run_report, AS_OF};

/// Runs `report` once on the demo database; returns its output folder.
fn output_of(report: &'static str) -> &'static Path {
    static RUNS: OnceLock<std::sync::Mutex<Vec<(&'static str, &'static Path)>>> = OnceLock::new();
    let runs = RUNS.get_or_init(Default::default);
    let mut runs = runs.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, p)) = runs.iter().find(|(r, _)| *r == report) {
        return p;
    }
    let dir: &'static tempfile::TempDir = Box::leak(Box::new(tempfile::tempdir().unwrap()));
    let out = run_report(demo_db(), dir.path(), report, &[]);
    assert!(
        out.starts_with(dir.path().join(report)),
        "{}",
        out.display()
    );
    let out: &'static Path = Box::leak(out.into_boxed_path());
    runs.push((report, out));
    out
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-6
}

#[test]
fn reports_lists_all_three_with_their_options() {
    let o = run(&["reports"]);
    assert!(o.status.success());
    let out = String::from_utf8_lossy(&o.stdout);
    for name in ["conversation-usage", "tag-drivers", "customer-segmentation"] {
        assert!(
            out.lines().any(|l| l == name),
            "{name} missing from:\n{out}"
        );
    }
    assert!(out.contains("--min-pp"), "{out}");
}

#[test]
fn unknown_report_is_a_usage_error_listing_the_known_ones() {
    let o = run(&["run", "nps-trends", "--db", demo_db().to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("nps-trends"));
}

#[test]
fn a_job_of_each_new_report_runs_and_delivers_to_the_outbox() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("schedules.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[defaults]
database = "{db}"
output_dir = "out"

[smtp]
outbox = "out/outbox"
from = "CX Reports <reports@example.com>"

[[job]]
name = "tags-weekly"
report = "tag-drivers"
cron = "0 7 * * 1"
window = "rolling:3m"
min_pp = 5
owners = ["cx@example.com"]
[job.recipients]
en = ["cs-lead@example.com"]
zh = ["tags-zh@example.com"]

[[job]]
name = "segments-monthly"
report = "customer-segmentation"
cron = "0 7 1 * *"
owners = ["cx@example.com"]
[job.recipients]
zh = ["gm-china@example.com"]
en = ["segments-en@example.com"]

[[job]]
name = "usage-monthly"
report = "conversation-usage"
cron = "0 7 1 * *"
owners = ["cx@example.com"]
[job.recipients]
en = ["usage-en@example.com"]
zh = ["usage-zh@example.com"]
"#,
            db = demo_db().display()
        ),
    )
    .unwrap();
    let o = run(&["check", "--config", config.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    for job in ["tags-weekly", "segments-monthly", "usage-monthly"] {
        let o = run(&[
            "run",
            "--job",
            job,
            "--config",
            config.to_str().unwrap(),
            "--send",
            "--as-of",
            AS_OF,
        ]);
        assert!(o.status.success(), "{job}: {}", text(&o));
    }
    let manifest = json(
        &dir.path()
            .join("out/tags-weekly/2024-03-15_2024-06-15/manifest.json"),
    );
    assert_eq!(manifest["parameters"]["min_pp"], 5.0);
    let emails: Vec<Email> = std::fs::read_dir(dir.path().join("out/outbox"))
        .unwrap()
        .map(|e| Email::read(&e.unwrap().path()))
        .collect();
    assert_eq!(emails.len(), 6);
    every_email_numbers_its_findings_as_its_pdf(&dir.path().join("out"), &emails);
    let to_en = emails
        .iter()
        .find(|e| e.to.contains("cs-lead@example.com"))
        .unwrap();
    assert!(
        to_en
            .subject
            .starts_with("What at-risk and expansion customers talk to support about"),
        "{}",
        to_en.subject
    );
    // Attachments are named after report, period and language.
    assert!(
        matches!(&to_en.attachments[..], [a] if a.starts_with("tag-drivers_") && a.ends_with("_en.pdf")),
        "{:?}",
        to_en.attachments
    );
    let to_zh = emails
        .iter()
        .find(|e| e.to.contains("gm-china@example.com"))
        .unwrap();
    assert!(
        to_zh.subject.contains("客户画像与客户旅程"),
        "{}",
        to_zh.subject
    );
    assert!(to_zh.text.contains("截至 2024-06-14"), "{}", to_zh.text);
    assert!(
        matches!(&to_zh.attachments[..], [a] if a.starts_with("customer-segmentation_") && a.ends_with("_zh.pdf")),
        "{:?}",
        to_zh.attachments
    );
    // A report name the configuration does not know is named with the known ones.
    std::fs::write(
        &config,
        std::fs::read_to_string(&config)
            .unwrap()
            .replace("report = \"tag-drivers\"", "report = \"tag-driver\""),
    )
    .unwrap();
    let o = run(&["check", "--config", config.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    let t = text(&o);
    assert!(
        t.contains("tag-driver") && t.contains("customer-segmentation"),
        "{t}"
    );
}

/// Each email's findings and actions carry the numbers its PDF prints (F1…, "follows
/// from F2"), so that a reader finds them there; the texts are snapshots (reviewed as
/// any wording change), the attachment's size left out (it moves with every layout
/// change).
fn every_email_numbers_its_findings_as_its_pdf(out: &Path, emails: &[Email]) {
    for (to, job, lang) in [
        ("cs-lead@example.com", "tags-weekly", "en"),
        ("tags-zh@example.com", "tags-weekly", "zh"),
        ("segments-en@example.com", "segments-monthly", "en"),
        ("gm-china@example.com", "segments-monthly", "zh"),
        ("usage-en@example.com", "usage-monthly", "en"),
        ("usage-zh@example.com", "usage-monthly", "zh"),
    ] {
        let email = emails.iter().find(|e| e.to.contains(to)).unwrap();
        let run = std::fs::read_dir(out.join(job))
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.join("manifest.json").exists())
            .unwrap();
        // Compared without spaces or line breaks, and with straight quotes.
        let plain = |t: &str| {
            common::squash(t)
                .replace(['’', '‘'], "'")
                .replace(['“', '”'], "\"")
        };
        let pdf = plain(&common::pdf_text(&run.join(format!("report.{lang}.pdf"))));
        let mut numbered = 0;
        for line in email.text.lines() {
            // "- F1 The sentence." and "1. The action. (follows from F2)".
            let label = line
                .strip_prefix("- F")
                .and_then(|rest| rest.split_once(' '))
                .map(|(n, _)| format!("F{n}"));
            if let Some(label) = label {
                let printed = line.trim_start_matches("- ");
                assert!(
                    pdf.contains(&plain(printed)),
                    "{job} {lang}: `{printed}` is not in the PDF as numbered"
                );
                assert!(label.len() > 1, "{line}");
                numbered += 1;
            }
            let follows = if lang == "en" {
                " (follows from F"
            } else {
                "（依据 F"
            };
            if let Some(at) = line.find(follows) {
                let reference = plain(&line[at..]);
                assert!(
                    pdf.contains(&reference),
                    "{job} {lang}: {reference} is not on the PDF's page 1"
                );
            }
        }
        assert!(
            numbered > 0,
            "{job} {lang}: no numbered finding in\n{}",
            email.text
        );
        let redacted: String = email
            .text
            .lines()
            .map(|l| match l.find(" MB") {
                Some(at) => {
                    let start = l[..at]
                        .char_indices()
                        .rfind(|(_, c)| !(c.is_ascii_digit() || *c == '.'))
                        .map_or(0, |(i, c)| i + c.len_utf8());
                    format!("{}[size]{}", &l[..start], &l[at..])
                }
                None => l.to_owned(),
            })
            .collect::<Vec<_>>()
            .join("\n");
        insta::assert_snapshot!(format!("email_{job}_{lang}"), redacted);
    }
}

/// An .eml of the outbox, decoded.
struct Email {
    to: String,
    subject: String,
    text: String,
    attachments: Vec<String>,
}

impl Email {
    fn read(path: &Path) -> Self {
        use mailparse::MailHeaderMap;
        let raw = std::fs::read(path).unwrap();
        let mail = mailparse::parse_mail(&raw).unwrap();
        let mut e = Email {
            to: mail.headers.get_first_value("To").unwrap_or_default(),
            subject: mail.headers.get_first_value("Subject").unwrap_or_default(),
            text: String::new(),
            attachments: Vec::new(),
        };
        fn walk(p: &mailparse::ParsedMail<'_>, e: &mut Email) {
            let disposition = p.get_content_disposition();
            if let Some(name) = disposition.params.get("filename") {
                e.attachments.push(name.clone());
            } else if p.ctype.mimetype == "text/plain" {
                e.text.push_str(&p.get_body().unwrap_or_default());
            }
            for sub in &p.subparts {
                walk(sub, e);
            }
        }
        walk(&mail, &mut e);
        e
    }
}
