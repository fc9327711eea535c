//! End-to-end: the `cxreport` binary's command line across the reports: arguments and
//! report options checked before any work, `check`, what bad or missing input gives
//! (missing columns, empty windows, unreadable timestamps), a mapping of other names,
//! and the demo's columns. Each report's own semantics are in `tests/reports/`.

mod common;

use common::{col, demo_copy, demo_db, read_csv, run, text};
use serde_json::Value;
use std::path::{Path, PathBuf};

#[test]
fn missing_column_is_a_usage_error_naming_table_column_and_report() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("broken.sqlite");
    std::fs::copy(demo_db(), &db).unwrap();
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute_batch("ALTER TABLE intercom__conversation_enhanced DROP COLUMN last_close_at; DROP TABLE usage_events;")
        .unwrap();
    let out = dir.path().join("out");
    let o = run(&[
        "run",
        "--db",
        db.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let msg = text(&o);
    assert!(msg.contains("intercom__conversation_enhanced"), "{msg}");
    assert!(msg.contains("last_close_at"), "{msg}");
    assert!(msg.contains("conversation-usage"), "{msg}");
    assert!(!msg.contains("panicked"), "{msg}");
    assert!(!out.exists(), "nothing written");

    // Without usage_events: asking for events is the same kind of error; auto uses the proxies.
    let db = dir.path().join("no-events.sqlite");
    std::fs::copy(demo_db(), &db).unwrap();
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute_batch("DROP TABLE usage_events;")
        .unwrap();
    let o = run(&[
        "run",
        "--db",
        db.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--usage-source",
        "events",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("table `usage_events` does not exist"),
        "{}",
        text(&o)
    );
    let o = run(&[
        "run",
        "--db",
        db.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let summary: Value = serde_json::from_slice(
        &std::fs::read(out.join("conversation-usage/2023-12-15_2024-06-15/summary.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(summary["usage_source"], "proxy");
}

#[test]
fn empty_window_fails_cleanly_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let o = run(&[
        "run",
        "--db",
        demo_db().to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--window",
        "range:2019-01-01..2019-12-31",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let msg = text(&o);
    assert!(
        msg.contains("no conversations in window 2019-01-01 00:00:00 .. 2019-12-31 23:59:59"),
        "{msg}"
    );
    assert!(!out
        .join("conversation-usage/2019-01-01_2019-12-31")
        .exists());
}

#[test]
fn garbage_timestamps_are_counted_or_reported_never_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("garbage.sqlite");
    std::fs::copy(demo_db(), &db).unwrap();
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute_batch(
        "UPDATE intercom__conversation_enhanced SET conversation_created_at = 'yesterday-ish' WHERE rowid % 10 = 0;
         UPDATE intercom__conversation_enhanced SET last_close_at = '2024-02-30 10:00:00' WHERE rowid % 10 = 1;",
    )
    .unwrap();
    let out = dir.path().join("out");
    let o = run(&[
        "run",
        "--db",
        db.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let summary: Value = serde_json::from_slice(
        &std::fs::read(out.join("conversation-usage/2023-12-15_2024-06-15/summary.json")).unwrap(),
    )
    .unwrap();
    let bad = &summary["data_quality"]["bad_timestamps"];
    assert_eq!(
        bad["intercom__conversation_enhanced.conversation_created_at"],
        670
    );
    assert!(
        bad["intercom__conversation_enhanced.last_close_at"]
            .as_u64()
            .unwrap()
            > 500
    );

    // Every created_at unreadable: no anchor for the rolling window, a clear failure.
    conn.execute_batch(
        "UPDATE intercom__conversation_enhanced SET conversation_created_at = 'garbage'",
    )
    .unwrap();
    let o = run(&[
        "run",
        "--db",
        db.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("no conversation has a readable conversation_created_at"),
        "{}",
        text(&o)
    );
    assert!(!text(&o).contains("panicked"));
}

#[test]
fn bad_arguments_are_usage_errors() {
    let o = run(&["run", "--window", "weekly"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("expected `rolling:<N>m`"), "{}", text(&o));
    let o = run(&["run", "no-such-report", "--db", demo_db().to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("unknown report `no-such-report`"));
    let o = run(&["run", "--db", "/nonexistent/x.sqlite"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("/nonexistent/x.sqlite"));
    let dir = tempfile::tempdir().unwrap();
    let not_db = dir.path().join("notes.sqlite");
    std::fs::write(&not_db, "just some notes, not a database at all........").unwrap();
    let o = run(&["run", "--db", not_db.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
}

/// Runs cxreport with `args`, expecting exit `code` and every one of `wants` in its
/// output.
fn fails_with(args: &[&str], code: i32, wants: &[&str]) {
    let o = run(args);
    assert_eq!(o.status.code(), Some(code), "{}", text(&o));
    for want in wants {
        assert!(text(&o).contains(want), "{want:?} in {}", text(&o));
    }
}

#[test]
fn report_options_are_checked_by_their_report_before_any_work() {
    let out = tempfile::tempdir().unwrap();
    let db = demo_db().to_str().unwrap();
    let outp = out.path().to_str().unwrap();
    let run_with = |report: &'static str, option: &'static str, value: &'static str| {
        ["run", report, "--db", db, "--out", outp, option, value]
    };
    // An option another report takes is refused, naming the report and the option.
    fails_with(
        &run_with("conversation-usage", "--min-pp", "5"),
        2,
        &["report `conversation-usage` has no option `min_pp`"],
    );
    // A value the report cannot read names the option and what was expected.
    fails_with(
        &run_with("tag-drivers", "--min-pp", "500"),
        2,
        &["option `min_pp`", "between 0 and 100"],
    );
    fails_with(
        &run_with("conversation-usage", "--usage-source", "telepathy"),
        2,
        &["option `usage_source`"],
    );
    fails_with(
        &run_with("conversation-usage", "--compare", "last-month"),
        2,
        &["option `compare`", "shift:<N>m"],
    );
    assert_eq!(
        std::fs::read_dir(out.path()).unwrap().count(),
        0,
        "nothing written"
    );
    // `reports` lists every report's options with their defaults.
    let o = run(&["reports"]);
    assert!(o.status.success());
    let listed = String::from_utf8_lossy(&o.stdout);
    assert!(
        listed.contains("--min-pp") && listed.contains("(default 3)"),
        "{listed}"
    );
    assert!(
        listed.contains("--usage-source") && listed.contains("(default auto)"),
        "{listed}"
    );
}

#[test]
fn check_with_a_database_works_anywhere_and_says_what_each_report_can_do() {
    let elsewhere = tempfile::tempdir().unwrap();
    let o = common::bin()
        .current_dir(elsewhere.path())
        .args(["check", "--db", demo_db().to_str().unwrap()])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    for report in ["conversation-usage", "tag-drivers", "customer-segmentation"] {
        assert!(
            text(&o).contains(&format!("report `{report}`: can run")),
            "{}",
            text(&o)
        );
    }
    // A database with only the Intercom companies: every report says why it cannot run.
    let db = demo_copy(
        elsewhere.path(),
        "DROP TABLE intercom__company_metrics; DROP TABLE intercom__contact_enhanced;
         DROP TABLE intercom__conversation_enhanced; DROP TABLE intercom__conversation_metrics;
         DROP TABLE usage_events; DROP TABLE users; DROP TABLE events;",
    );
    let o = common::bin()
        .current_dir(elsewhere.path())
        .args(["check", "--db", db.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let t = text(&o);
    assert!(
        t.contains("report `tag-drivers`: cannot run")
            && t.contains("intercom__conversation_enhanced"),
        "{t}"
    );
    assert!(
        t.contains("report `customer-segmentation`: cannot run"),
        "{t}"
    );
    assert!(t.contains("no report can run"), "{t}");

    // dbt_intercom as built (the package's own data): what can be computed and why not.
    let seed =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/dbt-intercom-seed.sqlite");
    let o = common::bin()
        .current_dir(elsewhere.path())
        .args(["check", "--db", seed.to_str().unwrap()])
        .output()
        .unwrap();
    let t = text(&o);
    // No company pays there, so conversation-usage and tag-drivers runs stop, and
    // customer-segmentation misses its tables: no report can run, so check says the
    // data (or the mapping's spend_column) must change (it said `ok` before).
    assert_eq!(o.status.code(), Some(2), "{t}");
    for line in [
        "conversion and retention: not available (no usage_events table",
        "bot-first share: no first_response tags, so the bot-initiated proxy is printed",
        "no company has monthly_spend > 0",
        "mapping in force (default)",
    ] {
        assert!(t.contains(line), "{line}: {t}");
    }
    assert!(!t.contains("ok: "), "{t}");
}

#[test]
fn check_lists_topic_tags_without_a_translation() {
    let dir = tempfile::tempdir().unwrap();
    let check = |db: &Path| {
        let o = common::bin()
            .current_dir(dir.path())
            .args(["check", "--db", db.to_str().unwrap()])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", text(&o));
        text(&o)
    };
    // The demo's own topics all have a Chinese name.
    assert!(!check(demo_db()).contains("no translation"));
    let db = demo_copy(
        dir.path(),
        "UPDATE intercom__conversation_enhanced
         SET all_conversation_tags = all_conversation_tags || ', Widget Crash'
         WHERE rowid IN (SELECT rowid FROM intercom__conversation_enhanced LIMIT 3);",
    );
    let t = check(&db);
    assert!(
        t.contains("zh: 1 topic tag(s) have no translation and print as written: Widget Crash"),
        "{t}"
    );
    assert!(!t.contains("  en: "), "English prints tags as written: {t}");
}

/// Runs `report` on `db` (CSV/JSON only) into `out`, with `mapping` when given,
/// expecting success; returns the report's folder.
fn run_mapped(report: &str, db: &Path, mapping: Option<&Path>, out: &Path) -> PathBuf {
    let mut args = vec![
        "run",
        report,
        "--db",
        db.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--data-only",
    ];
    if let Some(m) = mapping {
        args.extend(["--mapping", m.to_str().unwrap()]);
    }
    let r = run(&args);
    assert!(r.status.success(), "{}", text(&r));
    PathBuf::from(String::from_utf8_lossy(&r.stdout).trim())
}

#[test]
fn a_mapping_reads_other_tag_names_and_an_account_key_as_the_defaults_read_the_demo() {
    // The demo with its conventions renamed, and events keyed by the product's
    // account id (a company column), as a user's warehouse may have them.
    let dir = tempfile::tempdir().unwrap();
    let db = demo_copy(
        dir.path(),
        "UPDATE intercom__company_enhanced SET all_company_tags =
           replace(replace(all_company_tags, 'segment:', 'stage:'), 'Churn Watch', 'Red Flag');
         ALTER TABLE intercom__company_enhanced ADD COLUMN account_id TEXT;
         UPDATE intercom__company_enhanced SET account_id = 'acct-' || company_id;
         UPDATE usage_events SET company_id = 'acct-' || company_id;",
    );
    let mapping = dir.path().join("mapping.toml");
    std::fs::write(
        &mapping,
        "segment_tag_prefix = \"stage:\"\nat_risk_tags = [\"Red Flag\"]\nusage_company_key = \"account_id\"\n",
    )
    .unwrap();
    let m = mapping.to_str().unwrap();
    for (report, file) in [
        ("conversation-usage", "panel_segment_seat_arr.csv"),
        ("tag-drivers", "tag_shares.csv"),
    ] {
        let out = |name: &str| dir.path().join(name);
        let runs = [
            (db.as_path(), Some(m), out("mapped")),
            (demo_db(), None, out("demo")),
        ];
        // Without the mapping no company has a segment: refused, never a report of
        // "Unknown segment" companies (issue 28).
        let unmapped = out("unmapped");
        let r = run(&[
            "run",
            report,
            "--db",
            db.to_str().unwrap(),
            "--out",
            unmapped.to_str().unwrap(),
            "--data-only",
        ]);
        assert_eq!(r.status.code(), Some(2), "{}", text(&r));
        assert!(
            text(&r).contains("falls to \"Unknown segment\""),
            "{}",
            text(&r)
        );
        if report == "conversation-usage" {
            // With the tags read but without the key, no event is a company's:
            // conversion and retention are empty with the reason, never 0 % (issue 28).
            let no_key = dir.path().join("no_key.toml");
            std::fs::write(
                &no_key,
                "segment_tag_prefix = \"stage:\"\nat_risk_tags = [\"Red Flag\"]\n",
            )
            .unwrap();
            let r = run(&[
                "run",
                report,
                "--db",
                db.to_str().unwrap(),
                "--mapping",
                no_key.to_str().unwrap(),
                "--out",
                unmapped.to_str().unwrap(),
                "--data-only",
            ]);
            assert_eq!(r.status.code(), Some(0), "{}", text(&r));
            assert!(text(&r).contains("usage_company_key"), "{}", text(&r));
        }
        let mut csvs = Vec::new();
        for (d, mapping, o) in &runs {
            let folder = run_mapped(report, d, mapping.map(Path::new), o);
            csvs.push(std::fs::read_to_string(folder.join(file)).unwrap());
            if mapping.is_some() {
                let manifest = common::json(&folder.join("manifest.json"));
                assert_eq!(
                    manifest["parameters"]["mapping"]["usage_company_key"],
                    "account_id"
                );
            }
        }
        assert_eq!(
            csvs[0], csvs[1],
            "{report}: the mapping reads the renamed data as the defaults read the demo"
        );
    }
    // A company column instead of the segment tags.
    std::fs::create_dir_all(dir.path().join("column")).unwrap();
    let col_db = demo_copy(
        &dir.path().join("column"),
        "ALTER TABLE intercom__company_enhanced ADD COLUMN crm_segment TEXT;
         UPDATE intercom__company_enhanced SET crm_segment = CASE
           WHEN instr(all_company_tags, 'segment:') > 0 THEN trim(substr(
             substr(all_company_tags, instr(all_company_tags, 'segment:') + 8) || ',', 1,
             instr(substr(all_company_tags, instr(all_company_tags, 'segment:') + 8) || ',', ',') - 1))
           END;
         UPDATE intercom__company_enhanced SET all_company_tags = replace(all_company_tags, 'segment:', 'old:');",
    );
    let col_mapping = dir.path().join("column.toml");
    std::fs::write(&col_mapping, "segment_column = \"crm_segment\"\n").unwrap();
    let panel = |db: &Path, mapping: Option<&Path>, out: &str| {
        let folder = run_mapped("conversation-usage", db, mapping, &dir.path().join(out));
        std::fs::read_to_string(folder.join("panel_segment.csv")).unwrap()
    };
    assert_eq!(
        panel(&col_db, Some(&col_mapping), "col-mapped"),
        panel(demo_db(), None, "col-demo"),
        "segments from a column read as from the tags"
    );

    // Bucket bounds of one's own: the buckets and their names follow.
    let bounds = dir.path().join("bounds.toml");
    std::fs::write(&bounds, "seat_bounds = [50, 100, 250, 500]\n").unwrap();
    let folder = run_mapped(
        "conversation-usage",
        demo_db(),
        Some(&bounds),
        &dir.path().join("bounds-out"),
    );
    let (header, rows) = read_csv(&folder.join("panel_segment_seat.csv"));
    let seat = col(&header, "seat_bucket");
    let mut names: Vec<&str> = rows.iter().map(|r| r[seat].as_str()).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(
        names,
        ["100_249", "250_499", "500_plus", "50_99", "under_50"]
    );

    // check shows the mapping in force and what each rule matched.
    let o = common::bin()
        .current_dir(dir.path())
        .args(["check", "--db", db.to_str().unwrap(), "--mapping", m])
        .output()
        .unwrap();
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(t.contains("mapping in force"), "{t}");
    assert!(t.contains("at_risk_tags = Red Flag →"), "{t}");
    assert!(t.contains("usage_company_key = account_id →"), "{t}");
    // A mapping file with a typo is refused, naming the file and the key.
    std::fs::write(&mapping, "at_risk_tag = [\"x\"]\n").unwrap();
    let o = run(&[
        "run",
        "--db",
        db.to_str().unwrap(),
        "--mapping",
        m,
        "--data-only",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("at_risk_tag") && text(&o).contains("mapping.toml"),
        "{}",
        text(&o)
    );
}

#[test]
fn the_demo_has_every_dbt_intercom_column_and_intercoms_own_vocabulary() {
    let conn = rusqlite::Connection::open(demo_db()).unwrap();
    let columns = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("src/demo/sql/dbt-intercom-columns.txt"),
    )
    .unwrap();
    let mut checked = 0;
    for line in columns.lines().filter(|l| !l.is_empty()) {
        let (table, column) = line.split(' ').next().unwrap().split_once('.').unwrap();
        let n: i64 = conn
            .query_row(
                "SELECT count(*) FROM pragma_table_info(?1) WHERE name = ?2",
                [table, column],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(n, 1, "{table}.{column}");
        checked += 1;
    }
    assert!(checked > 140, "{checked}");
    let values: Vec<String> = conn
        .prepare("SELECT DISTINCT conversation_initiated_type FROM intercom__conversation_enhanced ORDER BY 1")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(
        values,
        [
            "admin_initiated",
            "customer_initiated",
            "operator_initiated"
        ]
    );
}
