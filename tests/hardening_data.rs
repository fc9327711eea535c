//! Issue 26, the data and argument edge cases, through the binary: text of the data
//! that Typst cannot lay out in time, escape sequences of the data on the terminal,
//! values at the ends of what dates and clocks can hold, and data the built-in
//! templates must still describe.

mod common;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{bin, cases, json, pdf_text, squash, text};

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

/// `cxreport check --db db` with `extra`, run in `dir` (no schedules.toml there).
fn check_in(dir: &Path, db: &Path, extra: &[&str]) -> Output {
    bin()
        .current_dir(dir)
        .args(["check", "--db", db.to_str().unwrap()])
        .args(extra)
        .output()
        .unwrap()
}

/// The CSVs of a run's directory, by name.
fn csvs(dir: &Path) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "csv"))
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read_to_string(&p).unwrap(),
            )
        })
        .collect();
    out.sort();
    out
}

/// Issue 28: segments spelled the users' way (`Stage: Churn Watch` tags, a
/// `lifecycle_stage` column, names of their own mapped with `segment_values`) give
/// the demo's own numbers; a rule that matches nothing is refused by `run` and by
/// `check`, naming the values found and the key that maps them, never a report of
/// "Unknown segment" companies.
#[test]
fn segments_spelled_the_users_way_read_as_the_specs() {
    let dir = tempfile::tempdir().unwrap();
    let staged = demo_copy(
        dir.path(),
        "staged.sqlite",
        "ALTER TABLE intercom__company_enhanced ADD COLUMN lifecycle_stage TEXT;
         UPDATE intercom__company_enhanced SET lifecycle_stage = CASE
             WHEN all_company_tags LIKE '%segment:renewal%' THEN 'Renewal'
             WHEN all_company_tags LIKE '%segment:churn_watch%' THEN 'Churn Watch'
             WHEN all_company_tags LIKE '%segment:expansion%' THEN 'Expansion'
             WHEN all_company_tags LIKE '%segment:new_contract%' THEN 'New Contract' END;
         UPDATE intercom__company_enhanced SET all_company_tags =
             replace(replace(replace(replace(all_company_tags,
               'segment:renewal', 'Stage: Renewal'), 'segment:churn_watch', 'Stage: Churn Watch'),
               'segment:expansion', 'Stage: Expansion'), 'segment:new_contract', 'Stage: New Contract');",
    );
    let own = demo_copy(
        dir.path(),
        "own.sqlite",
        "UPDATE intercom__company_enhanced SET all_company_tags =
             replace(replace(replace(replace(all_company_tags,
               'segment:renewal', 'Tier: Gold'), 'segment:churn_watch', 'Tier: Bronze'),
               'segment:expansion', 'Tier: Silver'), 'segment:new_contract', 'Tier: Trial');",
    );
    let mapping = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p.to_str().unwrap().to_owned()
    };
    let by_tag = mapping(
        "tag.toml",
        "segment_tag_prefix = \"Stage: \"\nat_risk_segments = [\"Churn Watch\"]\n",
    );
    let by_column = mapping("column.toml", "segment_column = \"lifecycle_stage\"\n");
    let tier = mapping("tier.toml", "segment_tag_prefix = \"Tier: \"\n");
    let tier_named = mapping(
        "tier-named.toml",
        "segment_tag_prefix = \"Tier: \"\n[segment_values]\nGold = \"renewal\"\n\
         Bronze = \"churn_watch\"\nSilver = \"expansion\"\nTrial = \"new_contract\"\n",
    );

    let (o, _) = run_report(
        common::demo_db(),
        &dir.path().join("demo"),
        "tag-drivers",
        &["--data-only"],
    );
    assert!(o.status.success(), "{}", text(&o));
    let expected = csvs(&run_dir(&o));
    assert!(!expected.is_empty());
    for (i, (db, m)) in [
        (&staged, &by_tag),
        (&staged, &by_column),
        (&own, &tier_named),
    ]
    .into_iter()
    .enumerate()
    {
        let (o, _) = run_report(
            db,
            &dir.path().join(format!("o{i}")),
            "tag-drivers",
            &["--data-only", "--mapping", m],
        );
        assert!(o.status.success(), "{m}: {}", text(&o));
        assert_eq!(csvs(&run_dir(&o)), expected, "{m}");
    }

    // Names the report does not know: refused, the values and the key named.
    let (o, _) = run_report(
        &own,
        &dir.path().join("refused"),
        "tag-drivers",
        &["--data-only", "--mapping", &tier],
    );
    let t = text(&o);
    assert_eq!(o.status.code(), Some(2), "{t}");
    assert!(
        t.contains("`segment_tag_prefix = Tier: ` matches no company")
            && t.contains("`Trial` (")
            && t.contains("segment_values = {"),
        "{t}"
    );
    assert!(
        !dir.path().join("refused").join("tag-drivers").exists() || {
            // Nothing half-written: no report files.
            csvs(&dir.path().join("refused")).is_empty()
        }
    );
    let o = check_in(dir.path(), &own, &["--mapping", &tier]);
    let t = text(&o);
    assert!(!o.status.success(), "{t}");
    assert!(
        t.contains("mapping: `segment_tag_prefix = Tier: ` matches no company")
            && !t.contains("ok:"),
        "{t}"
    );
    // A segment name in a group rule that is no segment: refused when read.
    let bad = mapping("bad.toml", "at_risk_segments = [\"Gold\"]\n");
    let (o, _) = run_report(
        &own,
        &dir.path().join("bad"),
        "tag-drivers",
        &["--data-only", "--mapping", &bad],
    );
    let t = text(&o);
    assert_eq!(o.status.code(), Some(2), "{t}");
    assert!(
        t.contains("`at_risk_segments`: `Gold` is not a segment"),
        "{t}"
    );
}

/// Issue 28: `conversation_assignee_type` is optional (contract): without the column
/// the run goes on, `check` says the share is not available, and no page prints a
/// team-routed share (the CSVs leave it empty), in either language.
#[test]
fn a_missing_assignee_type_leaves_the_team_share_empty() {
    let dir = tempfile::tempdir().unwrap();
    let db = demo_copy(
        dir.path(),
        "no-assignee.sqlite",
        "ALTER TABLE intercom__conversation_enhanced DROP COLUMN conversation_assignee_type;",
    );
    let (o, _) = run_report(&db, &dir.path().join("out"), "conversation-usage", &[]);
    assert!(o.status.success(), "{}", text(&o));
    let run = run_dir(&o);
    let csv = std::fs::read_to_string(run.join("panel_segment.csv")).unwrap();
    let col = csv
        .lines()
        .next()
        .unwrap()
        .split(',')
        .position(|c| c == "team_route_share")
        .unwrap();
    for line in csv.lines().skip(1) {
        assert_eq!(line.split(',').nth(col), Some(""), "{line}");
    }
    let en = squash(&pdf_text(&run.join("report.en.pdf")));
    assert!(!en.contains("team-routed."), "{en}");
    assert!(!en.contains("% team-routed"), "{en}");
    let zh = squash(&pdf_text(&run.join("report.zh.pdf")));
    assert!(!zh.contains("团队分配占"), "{zh}");
    let o = check_in(dir.path(), &db, &[]);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(
        t.contains("team-routed share: not available (no conversation_assignee_type column"),
        "{t}"
    );
}

/// Issue 28: usage events keyed by the product's own account id, with no mapping to
/// say so, match no company: the report runs (exit 0) and every conversion and
/// retention figure is empty with the reason (the events' count and key, what to
/// set), never 0 %; `check` still fails, telling the usage half will be empty; with
/// `usage_company_key` naming the column the events hold, the numbers are the demo's.
#[test]
fn events_keyed_by_another_id_leave_usage_empty_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let db = demo_copy(dir.path(), "mis-keyed.sqlite", cases::MIS_KEYED_EVENTS);
    let (o, _) = run_report(&db, &dir.path().join("out"), "conversation-usage", &[]);
    assert!(o.status.success(), "{}", text(&o));
    cases::assert_usage_empty_with_the_reason(&run_dir(&o));
    let o = check_in(dir.path(), &db, &[]);
    let t = text(&o);
    assert!(!o.status.success(), "{t}");
    assert!(cases::check_says_no_event_matches(&t), "{t}");

    let m = dir.path().join("m.toml");
    std::fs::write(&m, "usage_company_key = \"account_id\"\n").unwrap();
    let (o, _) = run_report(
        &db,
        &dir.path().join("mapped"),
        "conversation-usage",
        &["--data-only", "--mapping", m.to_str().unwrap()],
    );
    assert!(o.status.success(), "{}", text(&o));
    let mapped = common::json(&run_dir(&o).join("summary.json"));
    assert!(mapped.get("usage_empty").is_none(), "{mapped}");
    let (d, _) = run_report(
        common::demo_db(),
        &dir.path().join("demo"),
        "conversation-usage",
        &["--data-only"],
    );
    assert!(d.status.success(), "{}", text(&d));
    assert_eq!(csvs(&run_dir(&o)), csvs(&run_dir(&d)));
}

/// Issue 28: "paying" defined by the user's own column. Without a company that pays,
/// tag-drivers stops with exit 1 like conversation-usage (no report of "0 paying
/// companies" to mail), and `check` says so; `spend_column` names the column that
/// holds the monthly spend, and the numbers are the demo's.
#[test]
fn paying_comes_from_the_column_the_mapping_names() {
    let dir = tempfile::tempdir().unwrap();
    let db = demo_copy(
        dir.path(),
        "mrr.sqlite",
        "ALTER TABLE intercom__company_enhanced ADD COLUMN mrr REAL;
         UPDATE intercom__company_enhanced SET mrr = monthly_spend, monthly_spend = NULL;",
    );
    for report in ["tag-drivers", "conversation-usage"] {
        let out = dir.path().join(format!("none-{report}"));
        let (o, _) = run_report(&db, &out, report, &["--data-only"]);
        let t = text(&o);
        assert_eq!(o.status.code(), Some(1), "{report}: {t}");
        assert!(t.contains("no paying company"), "{report}: {t}");
        assert!(!out.join(report).exists(), "{report}: nothing written");
    }
    let o = check_in(dir.path(), &db, &[]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("report `tag-drivers`: cannot run: no company has monthly_spend > 0"),
        "{}",
        text(&o)
    );

    let m = dir.path().join("m.toml");
    std::fs::write(&m, "spend_column = \"mrr\"\n").unwrap();
    let o = check_in(dir.path(), &db, &["--mapping", m.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("spend_column = mrr → "), "{}", text(&o));
    let (o, _) = run_report(
        &db,
        &dir.path().join("mapped"),
        "tag-drivers",
        &["--data-only", "--mapping", m.to_str().unwrap()],
    );
    assert!(o.status.success(), "{}", text(&o));
    let (d, _) = run_report(
        common::demo_db(),
        &dir.path().join("demo"),
        "tag-drivers",
        &["--data-only"],
    );
    assert_eq!(csvs(&run_dir(&o)), csvs(&run_dir(&d)));
}

/// Issue 28: `paying = "all"` for a product without spend data: every company pays,
/// both reports of paying customers run, and ARR is not available wherever it
/// would be printed (never $0, never an empty clause); `check` says which
/// definition of paying is in force; a value it does not know is refused.
#[test]
fn paying_all_counts_every_company_and_leaves_arr_not_available() {
    let dir = tempfile::tempdir().unwrap();
    let db = demo_copy(
        dir.path(),
        "nospend.sqlite",
        "UPDATE intercom__company_enhanced SET monthly_spend = NULL;",
    );
    let m = dir.path().join("m.toml");
    std::fs::write(&m, "paying = \"all\"\n").unwrap();
    let mapping = ["--mapping", m.to_str().unwrap()];
    let o = check_in(dir.path(), &db, &mapping);
    assert!(o.status.success(), "{}", text(&o));
    let companies: i64 = rusqlite::Connection::open(&db)
        .unwrap()
        .query_row("SELECT count(*) FROM intercom__company_enhanced", [], |r| {
            r.get(0)
        })
        .unwrap();
    let said = format!("paying = all → {companies} companies pay: every company counts as paying");
    assert!(text(&o).contains(&said), "{said}: {}", text(&o));
    let o = check_in(dir.path(), common::demo_db(), &[]);
    assert!(
        text(&o).contains("paying = spend → ")
            && text(&o).contains("whose monthly_spend is above 0"),
        "{}",
        text(&o)
    );

    for (report, said_en, said_zh) in [
        (
            "tag-drivers",
            "ARRisnotavailable:themapping'spaying=\"all\"countseverycompanyaspaying",
            "ARR不可得",
        ),
        (
            "conversation-usage",
            "ARRisnotavailable:thereisnospendtomakeitfrom",
            "ARR不可得",
        ),
    ] {
        let (o, _) = run_report(&db, &dir.path().join(report), report, &mapping);
        assert!(o.status.success(), "{report}: {}", text(&o));
        let run = run_dir(&o);
        for (lang, said) in [("en", said_en), ("zh", said_zh)] {
            let pdf = squash(&pdf_text(&run.join(format!("report.{lang}.pdf"))));
            assert!(pdf.contains(said), "{report} {lang}: {said}");
            for wrong in ["$0ARR", "—ARR", "ARR—", ",ARR)", "ARR0美元", "ARR合计—"] {
                assert!(!pdf.contains(wrong), "{report} {lang}: {wrong}");
            }
        }
        let summary = json(&run.join("summary.json")).to_string();
        assert!(summary.contains("\"arr\":null"), "{report}: ARR is empty");
        assert!(!summary.contains("\"arr\":0"), "{report}: never a 0 ARR");
    }

    std::fs::write(&m, "paying = \"some\"\n").unwrap();
    let o = check_in(dir.path(), &db, &mapping);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("`paying` must be \"spend\"") && text(&o).contains("or \"all\""),
        "{}",
        text(&o)
    );
}

/// Issue 28: when every company falls to "Unknown segment" (the segment rule, the
/// default one too, matches no company), `check` fails naming the rule it tried, the
/// values found and the keys to set, and a run refuses the population as it refuses
/// a rule that matches nothing (a report of one "Unknown segment" would read as
/// "nothing stands out"). The package fixture (no tags at all) says so too.
#[test]
fn every_company_in_the_fallback_segment_fails_check_and_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let db = demo_copy(
        dir.path(),
        "stage.sqlite",
        "UPDATE intercom__company_enhanced
           SET all_company_tags = replace(all_company_tags, 'segment:', 'Stage: ');",
    );
    let o = check_in(dir.path(), &db, &[]);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(2), "{t}");
    for said in [
        "falls to \"Unknown segment\": the segment rule (tags starting with `segment:`) matched none",
        "no company has such a tag; their tags are `",
        "set segment_tag_prefix to your tags' prefix, segment_column to a company column \
         holding the segment, or segment_values",
    ] {
        assert!(t.contains(said), "{said}: {t}");
    }
    // A report the run would refuse is never listed as one that can run.
    for report in ["conversation-usage", "tag-drivers"] {
        assert!(
            !t.contains(&format!("report `{report}`: can run")),
            "{report}: {t}"
        );
        assert!(
            t.contains(&format!(
                "report `{report}`: cannot run: a run stops with exit 2"
            )),
            "{report}: {t}"
        );
    }
    for report in ["conversation-usage", "tag-drivers"] {
        let out = dir.path().join(report);
        let (o, _) = run_report(&db, &out, report, &["--data-only"]);
        let t = text(&o);
        assert_eq!(o.status.code(), Some(2), "{report}: {t}");
        assert!(t.contains("falls to \"Unknown segment\""), "{report}: {t}");
        assert!(!out.join(report).exists(), "{report}: nothing written");
    }
    // With the prefix the tags have, the same data runs.
    let m = dir.path().join("m.toml");
    std::fs::write(&m, "segment_tag_prefix = \"Stage: \"\n").unwrap();
    let o = check_in(dir.path(), &db, &["--mapping", m.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(!text(&o).contains("Unknown segment"), "{}", text(&o));

    let seed =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/dbt-intercom-seed.sqlite");
    let o = check_in(dir.path(), &seed, &[]);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(2), "{t}");
    assert!(
        t.contains("falls to \"Unknown segment\"") && t.contains("(no company has a tag)"),
        "{t}"
    );
    assert!(t.contains("no report can run"), "{t}");
}

/// Issue 28: `check` samples the values the readers cannot read as their column's
/// type (bad timestamps, a text `monthly_spend` of `n/a`, `is_core = 'maybe'`),
/// naming table, column, type, count and up to three values, and exits 1 as the run
/// does; text flags the reader reads (`true`, `f`, `yes`, `0`) are no problem; an
/// optional column's unreadable times are a note saying what is empty; the clean demo
/// is still ok.
#[test]
fn check_samples_values_that_cannot_be_read_as_their_type() {
    let dir = tempfile::tempdir().unwrap();
    let o = check_in(dir.path(), common::demo_db(), &[]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(!text(&o).contains("cannot be read as"), "{}", text(&o));

    let db = demo_copy(dir.path(), "bad-values.sqlite", cases::UNREADABLE_VALUES);
    let rows = |table: &str| -> u64 {
        rusqlite::Connection::open(&db)
            .unwrap()
            .query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
            .unwrap()
    };
    let o = check_in(dir.path(), &db, &[]);
    let t = text(&o);
    assert!(!o.status.success(), "{t}");
    assert!(!t.contains("ok:"), "{t}");
    for line in cases::unreadable_value_lines(rows) {
        assert!(t.contains(&line), "{line}\n{t}");
    }
    // The run agrees: it stops at the spend it cannot read.
    let (r, _) = run_report(
        &db,
        &dir.path().join("out"),
        "tag-drivers",
        &["--data-only"],
    );
    assert_eq!(r.status.code(), Some(1), "{}", text(&r));
    assert!(text(&r).contains("\"n/a\""), "{}", text(&r));

    // An optional column: a note of what is empty, and check is still ok.
    let db = demo_copy(
        dir.path(),
        "bad-activity.sqlite",
        cases::UNREADABLE_ACTIVITY,
    );
    let o = check_in(dir.path(), &db, &[]);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(cases::has_unreadable_activity_note(&t), "{t}");
}

/// Issue 28: a SQLite export whose tables carry their schema in the name
/// (`analytics_intercom.intercom__company_enhanced`, as some warehouse dumps write
/// them) is not read as if the table were absent: the run and `check` name the table
/// they found and how to rename it.
#[test]
fn tables_with_a_schema_prefix_in_sqlite_are_named_with_the_rename() {
    let dir = tempfile::tempdir().unwrap();
    let db = demo_copy(
        dir.path(),
        "prefixed.sqlite",
        "ALTER TABLE intercom__company_enhanced
           RENAME TO \"analytics_intercom.intercom__company_enhanced\";",
    );
    let (o, _) = run_report(
        &db,
        &dir.path().join("out"),
        "conversation-usage",
        &["--data-only"],
    );
    let t = text(&o);
    assert_eq!(o.status.code(), Some(2), "{t}");
    for said in [
        "`analytics_intercom.intercom__company_enhanced`",
        "RENAME TO",
    ] {
        assert!(t.contains(said), "run: {said}: {t}");
    }
    let o = check_in(dir.path(), &db, &[]);
    let t = text(&o);
    // The reports that need the table cannot run (check counts that as a run that
    // fails; the run itself stops with exit 2 before reading).
    assert!(!o.status.success(), "{t}");
    assert!(
        t.contains("`analytics_intercom.intercom__company_enhanced`") && t.contains("RENAME TO"),
        "check: {t}"
    );
}
