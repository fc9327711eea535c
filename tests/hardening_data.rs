//! Issue 26, the data and argument edge cases, through the binary: text of the data
//! that Typst cannot lay out in time, escape sequences of the data on the terminal,
//! values at the ends of what dates and clocks can hold, and data the built-in
//! templates must still describe.

mod common;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{bin, json, pdf_text, squash, text};

/// Runs `cmd` to its end, or kills it after `limit` (a hang guard, not a speed
/// test); returns what it printed and how long it took.
fn bounded(mut cmd: Command, limit: Duration) -> (Output, Duration) {
    let started = Instant::now();
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("binary runs");
    // Drain the pipes while waiting: a full pipe would stall the child.
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut o = Vec::new();
        out.read_to_end(&mut o).unwrap();
        o
    });
    let err_reader = std::thread::spawn(move || {
        let mut e = Vec::new();
        err.read_to_end(&mut e).unwrap();
        e
    });
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let output = Output {
                status,
                stdout: reader.join().unwrap(),
                stderr: err_reader.join().unwrap(),
            };
            return (output, started.elapsed());
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{cmd:?} did not end within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A copy of the demo database, changed by `sql`.
fn demo_copy(dir: &Path, name: &str, sql: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::copy(common::demo_db(), &path).unwrap();
    let db = rusqlite::Connection::open(&path).unwrap();
    db.execute_batch(sql).unwrap();
    path
}

fn run_report(db: &Path, out: &Path, report: &str, extra: &[&str]) -> (Output, Duration) {
    let mut cmd = bin();
    cmd.args([
        "run",
        report,
        "--db",
        db.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--as-of",
        "2024-07-01T00:00:00Z",
    ])
    .args(extra);
    bounded(cmd, Duration::from_secs(300))
}

/// The run's directory, as the binary printed it.
fn run_dir(o: &Output) -> PathBuf {
    let printed = String::from_utf8_lossy(&o.stdout);
    PathBuf::from(printed.lines().last().unwrap_or_default().trim())
}

/// Item 7: a topic tag of 60,000 words took Typst 335 s and 1.8 GB. Two such tags
/// that differ only in their last word (on every conversation tagged Escalation, the
/// top at-risk topic, and Billing) are laid out cut to 120 characters and still
/// read apart, the data-quality notes say so in both languages, and the CSVs and
/// summary.json keep them whole.
#[test]
fn sixty_thousand_word_topic_tags_are_laid_out_cut() {
    let dir = tempfile::tempdir().unwrap();
    let words: Vec<String> = (0..60_000).map(|i| format!("word{i}")).collect();
    let words = words.join(" ");
    let tags = [format!("{words} alpha"), format!("{words} beta")];
    let db = demo_copy(dir.path(), "long-tag.sqlite", "");
    {
        let c = rusqlite::Connection::open(&db).unwrap();
        for (tag, was) in tags.iter().zip(["Escalation", "Billing"]) {
            let n = c
                .execute(
                    "UPDATE intercom__conversation_enhanced SET all_conversation_tags = ?1 \
                     WHERE all_conversation_tags = ?2",
                    [tag.as_str(), was],
                )
                .unwrap();
            assert!(n > 100, "{n} conversations tagged {was}");
        }
    }
    let (o, took) = run_report(&db, &dir.path().join("out"), "tag-drivers", &[]);
    assert!(o.status.success(), "{}", text(&o));
    let out = run_dir(&o);
    let manifest = json(&out.join("manifest.json"));
    eprintln!(
        "60,000-word tags: the run took {:.1} s, peak RSS {} kB",
        took.as_secs_f64(),
        manifest["peak_rss_kb"]
    );
    assert!(took < Duration::from_secs(120), "took {took:?}");
    let cuts: Vec<String> = tags
        .iter()
        .map(|t| cxreport::render::format::cut_text(t).unwrap())
        .collect();
    assert_ne!(cuts[0], cuts[1], "the cut tags read apart");
    for (lang, note) in [
        ("en", "longer than 120 characters"),
        ("zh", "超过120个字符"),
    ] {
        let pdf = squash(&pdf_text(&out.join(format!("report.{lang}.pdf"))));
        for cut in &cuts {
            assert!(pdf.contains(&squash(cut)), "{lang}: the cut tag `{cut}`");
        }
        assert!(
            !pdf.contains("word1000"),
            "{lang}: more of a tag than the cut"
        );
        assert!(pdf.contains(&squash(note)), "{lang}: the note `{note}`");
    }
    let whole = |text: &str| tags.iter().all(|t| text.contains(t.as_str()));
    let csv = std::fs::read_to_string(out.join("tag_shares.csv")).unwrap();
    assert!(whole(&csv), "tag_shares.csv holds the whole tags");
    let summary = std::fs::read_to_string(out.join("summary.json")).unwrap();
    assert!(whole(&summary), "summary.json holds the whole tags");
}

/// Item 17: `check` quotes the data's topic tags; an escape sequence in one (here
/// "clear the screen") reaches the terminal as visible text.
#[test]
fn check_prints_escape_sequences_of_the_data_as_text() {
    let dir = tempfile::tempdir().unwrap();
    let db = demo_copy(
        dir.path(),
        "escape.sqlite",
        "UPDATE intercom__conversation_enhanced \
         SET all_conversation_tags = 'Bill' || char(27) || '[2Jing' || char(155) || 'x' \
         WHERE all_conversation_tags = 'Billing';",
    );
    let mut cmd = bin();
    cmd.args([
        "check",
        "--config",
        dir.path().join("none.toml").to_str().unwrap(),
        "--db",
        db.to_str().unwrap(),
    ]);
    let (o, _) = bounded(cmd, Duration::from_secs(120));
    assert!(o.status.success(), "{}", text(&o));
    let printed = [o.stdout.as_slice(), o.stderr.as_slice()].concat();
    assert!(
        !printed.contains(&0x1b),
        "an ESC byte reached the terminal: {}",
        text(&o)
    );
    let printed = String::from_utf8_lossy(&printed);
    assert!(!printed.contains('\u{9b}'), "a C1 CSI reached the terminal");
    assert!(
        printed.contains("Bill\\x1b[2Jing\\u{9b}x"),
        "the tag, with its escapes visible: {printed}"
    );
}

/// Item 18: values at the ends of what dates and clocks hold are usage errors that
/// name the value and the accepted range, not panics.
#[test]
fn extreme_instants_windows_and_speeds_are_usage_errors() {
    let dir = tempfile::tempdir().unwrap();
    let db = common::demo_db().to_str().unwrap().to_owned();
    let out = dir.path().join("out");
    let out = out.to_str().unwrap();
    let config = dir.path().join("schedules.toml");
    std::fs::write(
        &config,
        "[defaults]\ndatabase = \"missing.sqlite\"\noutput_dir = \"out\"\n\
         [[job]]\nname = \"daily\"\ncron = \"0 8 * * *\"\n",
    )
    .unwrap();
    let config = config.to_str().unwrap();
    let cases: [(&[&str], &str, &str); 4] = [
        (
            &["run", "--db", &db, "--out", out, "--lang", "en"],
            "--as-of=+10000-01-01T00:00:00Z",
            "years 1900 to 9999",
        ),
        (
            &["run", "--db", &db, "--out", out, "--lang", "en"],
            "--window=range:-262000-01-01..2024-01-01",
            "between 1900-01-01 and 9999-12-31",
        ),
        (
            &["run", "--db", &db, "--out", out, "--data-only"],
            "--window=range:2024-01-01..+262142-12-31",
            "between 1900-01-01 and 9999-12-31",
        ),
        (
            &[
                "daemon",
                "--config",
                config,
                "--clock-start",
                "2024-01-01T00:00:00Z",
            ],
            "--clock-speed=1e15",
            "at most 1e6",
        ),
    ];
    for (args, flag, range) in cases {
        let mut cmd = bin();
        cmd.args(args).arg(flag);
        let (o, _) = bounded(cmd, Duration::from_secs(120));
        let said = text(&o);
        let value = flag.split_once('=').unwrap().1;
        assert_eq!(o.status.code(), Some(2), "{flag}: {said}");
        assert!(
            said.contains(value) && said.contains(range),
            "{flag}: names the value and the accepted range: {said}"
        );
        assert!(!said.contains("panicked"), "{flag}: {said}");
    }
}

/// Item 19: data the built-in templates failed on (exit 2, as if the call were
/// wrong) is described: a users table of one row, ARR of 1e308 for every user (the
/// sums overflow), response minutes of ±1e308.
#[test]
fn built_in_templates_describe_extreme_data() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "one-user.sqlite",
            "DELETE FROM users WHERE rowid > (SELECT min(rowid) FROM users);",
            "customer-segmentation",
        ),
        (
            "huge-arr.sqlite",
            "UPDATE users SET annual_revenue = 1e308;",
            "customer-segmentation",
        ),
        (
            "huge-minutes.sqlite",
            "UPDATE intercom__conversation_metrics SET time_to_first_response_minutes = \
             CASE WHEN rowid % 2 = 0 THEN 1e308 ELSE -1e308 END;",
            "conversation-usage",
        ),
        (
            "huge-minutes-tags.sqlite",
            "UPDATE intercom__conversation_metrics SET time_to_first_response_minutes = \
             CASE WHEN rowid % 2 = 0 THEN 1e308 ELSE -1e308 END;",
            "tag-drivers",
        ),
    ];
    for (name, sql, report) in cases {
        let db = demo_copy(dir.path(), name, sql);
        let out = dir.path().join(format!("out-{name}"));
        let (o, _) = run_report(&db, &out, report, &[]);
        assert_eq!(o.status.code(), Some(0), "{name} {report}: {}", text(&o));
        let run = run_dir(&o);
        for lang in ["en", "zh"] {
            let pdf = run.join(format!("report.{lang}.pdf"));
            assert!(pdf.is_file(), "{name} {report}: {}", pdf.display());
        }
    }
}

/// Item 19: a template that loads but fails on the run's data is a failed run
/// (exit 1, naming the template), not a usage error (exit 2).
#[test]
fn a_template_failing_on_the_data_is_a_failed_run() {
    let dir = tempfile::tempdir().unwrap();
    let own = dir.path().join("templates/tag-drivers/en");
    std::fs::create_dir_all(&own).unwrap();
    std::fs::write(
        own.join("takeaways.tera"),
        "{{ c.numbers.no_such_number * 2 }}",
    )
    .unwrap();
    let templates = dir.path().join("templates");
    let (o, _) = run_report(
        common::demo_db(),
        &dir.path().join("out"),
        "tag-drivers",
        &["--lang", "en", "--templates", templates.to_str().unwrap()],
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("en/takeaways.tera"), "{}", text(&o));
}
