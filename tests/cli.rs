//! End-to-end: the `cxreport` binary on real SQLite files, checked through its outputs
//! and exit codes.

mod common;

use common::{col, demo_db, read_csv, run, text};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Output;

fn sum(rows: &[Vec<String>], i: usize) -> u64 {
    rows.iter().map(|r| r[i].parse::<u64>().unwrap()).sum()
}

#[test]
fn run_writes_outputs_that_agree_with_each_other() {
    let out = tempfile::tempdir().unwrap();
    let o = run(&[
        "run",
        "--db",
        demo_db().to_str().unwrap(),
        "--out",
        out.path().to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let dir = out.path().join("conversation-usage/2023-12-15_2024-06-15");
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        dir.display().to_string()
    );
    let summary: Value =
        serde_json::from_slice(&std::fs::read(dir.join("summary.json")).unwrap()).unwrap();
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["period"], "2023-12-15_2024-06-15");
    assert_eq!(
        manifest["parameters"]["usage_source_used"],
        summary["usage_source"]
    );
    assert_eq!(manifest["parameters"]["usage_source_used"], "events");
    assert_eq!(manifest["database"]["sha256"].as_str().unwrap().len(), 64);
    assert_eq!(
        manifest["database"]["row_counts"]["intercom__conversation_enhanced"],
        6703
    );
    // The rows the run read, table by table: the proxy tables are not read with the
    // events source, and each count is the table's.
    let read = manifest["database"]["row_counts"].as_object().unwrap();
    assert_eq!(
        read.keys().map(String::as_str).collect::<Vec<_>>(),
        [
            "intercom__company_enhanced",
            "intercom__conversation_enhanced",
            "intercom__conversation_metrics",
            "usage_events"
        ]
    );
    let conn = rusqlite::Connection::open(demo_db()).unwrap();
    for (table, n) in read {
        let count: i64 = conn
            .query_row(&format!("SELECT count(*) FROM \"{table}\""), [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(n.as_i64(), Some(count), "{table}");
    }

    let overall = &summary["panels"]["overall"];
    let conv = overall["conv_cnt"].as_u64().unwrap();
    let companies = overall["companies_total"].as_u64().unwrap();
    let closed = overall["companies_with_closed_conv"].as_u64().unwrap();
    assert_eq!(
        conv,
        summary["counts"]["conversations_kept"].as_u64().unwrap()
    );
    assert_eq!(
        companies,
        summary["counts"]["companies_kept"].as_u64().unwrap()
    );
    let expected_header = [
        "companies_total",
        "companies_with_closed_conv",
        "conv_cnt",
        "avg_resp",
        "p50_resp",
        "p90_resp",
        "avg_duration",
        "bot_first_resp_share",
        "conv_to_feature_rate",
        "weekly_retention",
        "monthly_retention",
        "team_route_share",
        "contact_inbound_share",
    ];
    for (file, slices) in [
        (
            "panel_segment_seat_arr.csv",
            &["segment", "seat_bucket", "arr_bucket"][..],
        ),
        ("panel_segment_seat.csv", &["segment", "seat_bucket"][..]),
        ("panel_segment_arr.csv", &["segment", "arr_bucket"][..]),
        ("panel_segment.csv", &["segment"][..]),
    ] {
        let (header, rows) = read_csv(&dir.join(file));
        let want: Vec<&str> = slices
            .iter()
            .chain(expected_header.iter())
            .copied()
            .collect();
        assert_eq!(header, want, "{file}");
        // Every company sits in exactly one slice of a level: totals add up.
        assert_eq!(sum(&rows, col(&header, "conv_cnt")), conv, "{file}");
        assert_eq!(
            sum(&rows, col(&header, "companies_total")),
            companies,
            "{file}"
        );
        assert_eq!(
            sum(&rows, col(&header, "companies_with_closed_conv")),
            closed,
            "{file}"
        );
        // Conversation-weighted bot share of the slices equals the overall share.
        let (b, n) = rows.iter().fold((0.0, 0.0), |(b, n), r| {
            let c: f64 = r[col(&header, "conv_cnt")].parse().unwrap();
            let s: f64 = r[col(&header, "bot_first_resp_share")].parse().unwrap();
            (b + s * c, n + c)
        });
        let overall_bot = overall["bot_first_resp_share"].as_f64().unwrap();
        assert!((b / n - overall_bot).abs() < 1e-9, "{file}");
    }
    // The panel CSV row and the summary's row of the same slice are the same numbers.
    let (header, rows) = read_csv(&dir.join("panel_segment.csv"));
    let renewal = rows.iter().find(|r| r[0] == "renewal").unwrap();
    let s = summary["panels"]["segment"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["segment"] == "renewal")
        .unwrap();
    let p50: f64 = renewal[col(&header, "p50_resp")].parse().unwrap();
    assert_eq!(p50, s["p50_resp"].as_f64().unwrap());
    // No staging directory is left behind.
    let siblings: Vec<_> = std::fs::read_dir(out.path().join("conversation-usage"))
        .unwrap()
        .collect();
    assert_eq!(siblings.len(), 1);
}

#[test]
fn proxy_source_and_range_window() {
    let out = tempfile::tempdir().unwrap();
    let o = run(&[
        "run",
        "conversation-usage",
        "--db",
        demo_db().to_str().unwrap(),
        "--out",
        out.path().to_str().unwrap(),
        "--usage-source",
        "proxy",
        "--window",
        "range:2024-02-01..2024-04-30",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let dir = out.path().join("conversation-usage/2024-02-01_2024-04-30");
    let summary: Value =
        serde_json::from_slice(&std::fs::read(dir.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["usage_source"], "proxy");
    // February, March, April of the demo data: 1218 + 1302 + 1260.
    assert_eq!(summary["counts"]["conversations_in_window"], 3780);
}

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
    // No company pays there, so a conversation-usage run stops with exit 1: so does
    // check (it said `ok` before).
    assert_eq!(o.status.code(), Some(1), "{t}");
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

/// A copy of the demo database in `dir`, changed by `sql`.
fn demo_copy(dir: &std::path::Path, sql: &str) -> PathBuf {
    let db = dir.join("changed.sqlite");
    std::fs::copy(demo_db(), &db).unwrap();
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute_batch(sql)
        .unwrap();
    db
}

/// Runs conversation-usage on `db` into `dir/out` with `extra` arguments, expecting
/// success; returns the output and the report's folder.
fn run_usage(db: &std::path::Path, dir: &std::path::Path, extra: &[&str]) -> (Output, PathBuf) {
    let out = dir.join("out");
    let mut args = vec![
        "run",
        "--db",
        db.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let o = run(&args);
    assert!(o.status.success(), "{}", text(&o));
    (o, out.join("conversation-usage/2023-12-15_2024-06-15"))
}

#[test]
fn without_any_first_response_time_the_report_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let db = demo_copy(
        dir.path(),
        "UPDATE intercom__conversation_metrics SET time_to_first_response_minutes = NULL;",
    );
    let (_, report) = run_usage(&db, dir.path(), &[]);
    let summary = common::json(&report.join("summary.json"));
    let service = summary["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["id"] == "service_model")
        .unwrap();
    assert_eq!(service["keys"]["response"], "unknown");
    for (lang, said) in [
        ("en", "No first-response time is recorded"),
        ("zh", "没有记录任何首次响应时间"),
    ] {
        let pdf = common::squash(&common::pdf_text(
            &report.join(format!("report.{lang}.pdf")),
        ));
        assert!(pdf.contains(&common::squash(said)), "{lang}");
    }
}

/// One conversation dated far in the future would otherwise anchor the rolling window
/// (and name the period) forever: it is left out of the anchor and counted.
#[test]
fn a_far_future_timestamp_does_not_move_the_window() {
    let dir = tempfile::tempdir().unwrap();
    let db = demo_copy(
        dir.path(),
        "UPDATE intercom__conversation_enhanced SET conversation_created_at = '2099-01-01 00:00:00'
         WHERE conversation_id = (SELECT min(conversation_id) FROM intercom__conversation_enhanced);",
    );
    let (_, report) = run_usage(
        &db,
        dir.path(),
        &["--data-only", "--as-of", "2024-07-01T08:00:00Z"],
    );
    let manifest = common::json(&report.join("manifest.json"));
    assert_eq!(manifest["period"], "2023-12-15_2024-06-15");
    assert_eq!(manifest["parameters"]["timestamps_after_reference"], 1);
}

/// summary.json of conversation-usage run alone on `from..to` (no comparison) into
/// `out`.
fn summary_alone(
    db: &std::path::Path,
    out: &std::path::Path,
    from: &str,
    to: &str,
) -> serde_json::Value {
    let window = format!("range:{from}..{to}");
    let o = run(&[
        "run",
        "--db",
        db.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--data-only",
        "--window",
        &window,
        "--compare",
        "none",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    common::json(&out.join(format!("conversation-usage/{from}_{to}/summary.json")))
}

/// The comparison's numbers are the numbers of a run on the comparison window itself,
/// overall and per segment; on the demo (no change planted) no rate changes.
#[test]
fn the_comparison_equals_a_run_on_the_comparison_window() {
    let dir = tempfile::tempdir().unwrap();
    let db = demo_db();
    let (_, report) = run_usage(db, dir.path(), &["--data-only", "--compare", "shift:1m"]);
    let summary = common::json(&report.join("summary.json"));
    let c = &summary["comparison"];
    assert_eq!(c["period"], "2023-11-15_2024-05-15");
    assert_eq!(c["basis"], "shift:1m");
    let earlier = summary_alone(db, &dir.path().join("earlier"), "2023-11-15", "2024-05-15");
    assert!(earlier.get("comparison").is_none());
    let changes = c["changes"].as_array().unwrap();
    let mut checked = 0;
    for ch in changes {
        let metric = ch["metric"].as_str().unwrap();
        let row = match ch["slice"].as_str().unwrap() {
            "overall" => earlier["panels"]["overall"].clone(),
            seg => earlier["panels"]["segment"]
                .as_array()
                .unwrap()
                .iter()
                .find(|r| r["segment"] == seg)
                .unwrap()
                .clone(),
        };
        assert_eq!(ch["previous"].as_f64(), row[metric].as_f64(), "{ch}");
        let now = if ch["slice"] == "overall" {
            summary["panels"]["overall"].clone()
        } else {
            summary["panels"]["segment"]
                .as_array()
                .unwrap()
                .iter()
                .find(|r| r["segment"] == ch["slice"])
                .unwrap()
                .clone()
        };
        assert_eq!(ch["current"].as_f64(), now[metric].as_f64(), "{ch}");
        checked += 1;
        // Nothing was planted: no rate or mean changes.
        if metric != "conv_cnt" {
            assert_ne!(ch["direction"], "rise", "{ch}");
            assert_ne!(ch["direction"], "fall", "{ch}");
        }
    }
    let segments = summary["panels"]["segment"].as_array().unwrap().len();
    assert_eq!(
        checked,
        (1 + segments) * 7,
        "overall and each segment, seven metrics"
    );
    let (header, rows) = read_csv(&report.join("comparison.csv"));
    assert_eq!(rows.len(), checked);
    assert!(header.iter().any(|h| h == "previous") && header.iter().any(|h| h == "direction"));
}

/// Every month of the trend is what a run on that month prints: the demo's months
/// from its first (January 2024) to the window's end, the last one cut at the end.
#[test]
fn each_trend_month_equals_a_run_on_that_month() {
    let dir = tempfile::tempdir().unwrap();
    let db = demo_db();
    let (_, report) = run_usage(db, dir.path(), &["--data-only", "--compare", "none"]);
    let summary = common::json(&report.join("summary.json"));
    let months = summary["trend"]["months"].as_array().unwrap();
    let labels: Vec<&str> = months
        .iter()
        .map(|m| m["month"].as_str().unwrap())
        .collect();
    assert_eq!(
        labels,
        ["2024-01", "2024-02", "2024-03", "2024-04", "2024-05", "2024-06"],
        "the months the data covers, up to the window's end"
    );
    assert!(months.iter().all(|m| m["in_window"] == true));
    assert_eq!(months[5]["partial"], true);
    assert_eq!(months[4]["partial"], false);
    for (month, from, to) in [
        (&months[2], "2024-03-01", "2024-03-31"),
        (&months[5], "2024-06-01", "2024-06-15"),
    ] {
        let out = dir.path().join(month["month"].as_str().unwrap());
        let alone = summary_alone(db, &out, from, to);
        let overall = &alone["panels"]["overall"];
        for (trend_key, metric) in [
            ("conversations", "conv_cnt"),
            ("p50_resp", "p50_resp"),
            ("bot_first_resp_share", "bot_first_resp_share"),
            ("conv_to_feature_rate", "conv_to_feature_rate"),
            ("weekly_retention", "weekly_retention"),
        ] {
            assert_eq!(
                month[trend_key].as_f64(),
                overall[metric].as_f64(),
                "{trend_key} {month}"
            );
        }
        assert!(month["conversations"].as_f64().unwrap() > 500.0, "{month}");
    }
    // June has one full week with a next one inside the cut: no weekly retention,
    // empty rather than 0.
    assert!(months[5]["weekly_retention"].is_null());
}

/// The generator's planted change (`demo-data --plant-change`: half the bot-first
/// conversations from April on answered by people instead; volumes as before) leads page 1 with the right numbers,
/// in both languages; `compare = none` computes nothing.
#[test]
fn a_planted_change_is_a_fall_with_its_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let db = common::planted_demo(dir.path());
    let window = "range:2024-04-01..2024-05-31";
    run_usage(&db, dir.path(), &["--window", window]);
    let report = dir
        .path()
        .join("out/conversation-usage/2024-04-01_2024-05-31");
    let summary = common::json(&report.join("summary.json"));
    let c = &summary["comparison"];
    assert_eq!(c["period"], "2024-01-31_2024-03-31");
    let bot = c["changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["slice"] == "overall" && x["metric"] == "bot_first_resp_share")
        .unwrap();
    assert_eq!(bot["direction"], "fall", "{bot}");
    let (now, before) = (
        bot["current"].as_f64().unwrap(),
        bot["previous"].as_f64().unwrap(),
    );
    assert!(now < before - 0.04 && before > 0.3, "{bot}");
    assert!((bot["change"].as_f64().unwrap() - (now - before) * 100.0).abs() < 1e-9);
    assert_eq!(
        bot["current_k"].as_f64().unwrap() / bot["current_n"].as_f64().unwrap(),
        now
    );
    // Page 1 leads with it: the printed values, their printed difference, the counts.
    let lead = &summary["findings"][0];
    assert_eq!(lead["id"], "period_change");
    assert_eq!(lead["keys"]["metric"], "bot_first_resp_share");
    let pct = |v: f64| format!("{:.1}%", v * 100.0);
    let diff = ((now * 1000.0).round() - (before * 1000.0).round()).abs() / 10.0;
    for (lang, said, section) in [
        (
            "en",
            format!(
                "Bot-first share fell from {} to {} (−{diff:.1} pp)",
                pct(before),
                pct(now)
            ),
            "What changed",
        ),
        (
            "zh",
            format!(
                "机器人首答占比由 {} 下降至 {}（−{diff:.1} 个百分点）",
                pct(before),
                pct(now)
            ),
            "本期变化",
        ),
    ] {
        let pdf = common::squash(&common::pdf_text(
            &report.join(format!("report.{lang}.pdf")),
        ));
        let first = pdf
            .find(&common::squash(&said))
            .unwrap_or_else(|| panic!("{lang}: {said}"));
        assert!(first < pdf.len() / 10, "{lang}: on page 1");
        assert!(pdf.contains(&common::squash(section)), "{lang}");
        // The table of every compared value follows the section's sentences.
        let table = if lang == "en" {
            "Every value compared, overall and per segment"
        } else {
            "整体及各客户阶段所比较的全部数值"
        };
        assert!(pdf.contains(&common::squash(table)), "{lang}");
        // Then the trend, and the segment table shows each change under its value
        // with an arrow where it holds.
        let (trend, fell) = if lang == "en" {
            (
                "The last twelve months, month by month",
                "Under a value: its change since 2024-01-31 – 2024-03-31",
            )
        } else {
            (
                "近十二个月逐月走势",
                "数值下方为与 2024-01-31 – 2024-03-31 相比的变化",
            )
        };
        let at = pdf
            .find(&common::squash(trend))
            .unwrap_or_else(|| panic!("{lang}: trend"));
        assert!(at > pdf.find(&common::squash(table)).unwrap(), "{lang}");
        assert!(pdf.contains(&common::squash(fell)), "{lang}");
        assert!(
            pdf.contains('▼'),
            "{lang}: the fall is marked in the tables"
        );
        // The size table (seat and ARR buckets) carries the changes too.
        let sizes = if lang == "en" {
            "By account size"
        } else {
            "按客户规模"
        };
        let at = pdf
            .find(&common::squash(sizes))
            .unwrap_or_else(|| panic!("{lang}: sizes"));
        assert!(
            pdf[at..].contains(&common::squash(fell)),
            "{lang}: the size table's note"
        );
    }
    run_usage(
        &db,
        &dir.path().join("none"),
        &["--data-only", "--window", window, "--compare", "none"],
    );
    let none = common::json(
        &dir.path()
            .join("none/out/conversation-usage/2024-04-01_2024-05-31/summary.json"),
    );
    assert!(none.get("comparison").is_none());
    assert!(none["findings"]
        .as_array()
        .unwrap()
        .iter()
        .all(|f| f["id"] != "period_change"));
}

/// tag-drivers compares itself too: on the planted demo the at-risk group's Bug share
/// falls and its Outage share rises (the planted topic move), each value equal to a
/// run of the report on the comparison window itself; the fall leads page 1 in both
/// languages and the trend draws the topics month by month.
#[test]
fn tag_drivers_names_the_planted_topic_change() {
    let dir = tempfile::tempdir().unwrap();
    let db = common::planted_demo(dir.path());
    let tag_run = |out: &str, window: &str, extra: &[&str]| -> PathBuf {
        let out = dir.path().join(out);
        let mut args = vec![
            "run",
            "tag-drivers",
            "--db",
            db.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--window",
            window,
        ];
        args.extend_from_slice(extra);
        let o = run(&args);
        assert!(o.status.success(), "{}", text(&o));
        let period = window.trim_start_matches("range:").replace("..", "_");
        out.join("tag-drivers").join(period)
    };
    let report = tag_run("now", "range:2024-04-01..2024-05-31", &[]);
    let summary = common::json(&report.join("summary.json"));
    let c = &summary["comparison"];
    assert_eq!(c["period"], "2024-01-31_2024-03-31");
    let change = |group: &str, metric: &str, item: Option<&str>| {
        c["changes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["slice"] == group && x["metric"] == metric && x["item"].as_str() == item)
            .unwrap_or_else(|| panic!("{group} {metric} {item:?}"))
            .clone()
    };
    let bug = change("at_risk", "topic_share", Some("Bug"));
    let outage = change("at_risk", "topic_share", Some("Outage"));
    assert_eq!(bug["direction"], "fall", "{bug}");
    assert_eq!(outage["direction"], "rise", "{outage}");
    assert_ne!(
        change("at_risk", "conversations", None)["direction"],
        "fall"
    );
    // The earlier values are those of a run on the comparison window.
    let earlier = tag_run(
        "then",
        "range:2024-01-31..2024-03-31",
        &["--data-only", "--compare", "none"],
    );
    let alone = common::json(&earlier.join("summary.json"));
    assert!(alone.get("comparison").is_none());
    let group_n = alone["groups"][0]["conversations"].as_f64().unwrap();
    let (_, rows) = read_csv(&earlier.join("tag_shares.csv"));
    let bug_then = rows
        .iter()
        .find(|r| r[0] == "at_risk" && r[1] == "Bug")
        .map(|r| r[2].parse::<f64>().unwrap())
        .unwrap();
    assert_eq!(bug["previous_n"].as_f64(), Some(group_n));
    assert_eq!(bug["previous_k"].as_f64(), Some(bug_then));
    assert_eq!(bug["previous"].as_f64(), Some(bug_then / group_n));
    // Page 1 leads with the change that holds most surely, the fall of Bug.
    assert_eq!(summary["findings"][0]["id"], "period_change");
    let pct = |v: &serde_json::Value| format!("{:.1}%", v.as_f64().unwrap() * 100.0);
    for (lang, said, trend) in [
        (
            "en",
            format!(
                "The share of at-risk conversations about Bug fell from {} to {}",
                pct(&bug["previous"]),
                pct(&bug["current"])
            ),
            "Topics month by month",
        ),
        (
            "zh",
            format!(
                "流失风险组会话中涉及“故障”的占比由 {} 下降至 {}",
                pct(&bug["previous"]),
                pct(&bug["current"])
            ),
            "话题逐月走势",
        ),
    ] {
        let page1 = common::squash(&common::pdf_page_text(
            &report.join(format!("report.{lang}.pdf")),
            1,
        ));
        assert!(page1.contains(&common::squash(&said)), "{lang}: {page1}");
        let pdf = common::squash(&common::pdf_text(
            &report.join(format!("report.{lang}.pdf")),
        ));
        assert!(pdf.contains(&common::squash(trend)), "{lang}: trend");
        assert!(
            pdf.contains('▼') && pdf.contains('▲'),
            "{lang}: arrows in the topic table"
        );
    }
    let (header, _) = read_csv(&report.join("comparison.csv"));
    assert!(header.iter().any(|h| h == "item"));
    // The trend's topics, month by month; April as a run on April prints it.
    let months = summary["trend"]["months"].as_array().unwrap();
    let april = months.iter().find(|m| m["month"] == "2024-04").unwrap();
    let topics = summary["trend"]["topics"].as_array().unwrap();
    let alone = common::json(
        &tag_run(
            "april",
            "range:2024-04-01..2024-04-30",
            &["--data-only", "--compare", "none"],
        )
        .join("summary.json"),
    );
    let n = alone["groups"][0]["conversations"].as_f64().unwrap();
    assert_eq!(april["conversations"][0].as_f64(), Some(n));
    for (i, topic) in topics.iter().enumerate() {
        let k = alone["shares"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["group"] == "at_risk" && x["tag"] == *topic)
            .map_or(0.0, |x| x["conversations"].as_f64().unwrap());
        assert_eq!(april["at_risk"][i].as_f64(), Some(k / n), "{topic}");
    }
}

/// customer-segmentation has no history in its tables: its first snapshot says there
/// is nothing to compare with; the next one compares with it (found among the
/// report's own outputs), its earlier values those that snapshot printed, and leads
/// page 1 with the active rate that fell (the events after 2024-05-14 are what the
/// earlier snapshot lacks).
#[test]
fn customer_segmentation_compares_with_its_previous_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let early = demo_copy(
        dir.path(),
        "DELETE FROM events WHERE event_time >= '2024-05-15';",
    );
    let out = dir.path().join("out");
    let segmentation = |db: &std::path::Path| {
        let o = run(&[
            "run",
            "customer-segmentation",
            "--db",
            db.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{}", text(&o));
    };
    segmentation(&early);
    let first = out.join("customer-segmentation/asof-2024-05-14");
    let before = common::json(&first.join("summary.json"));
    assert!(before["comparison"]["empty_reason"]
        .as_str()
        .unwrap()
        .starts_with("no earlier snapshot"));
    assert!(!first.join("comparison.csv").exists());
    let pdf = common::squash(&common::pdf_text(&first.join("report.en.pdf")));
    assert!(pdf.contains(&common::squash(
        "There is no earlier snapshot of this report among its outputs to compare with"
    )));

    segmentation(demo_db());
    let next = out.join("customer-segmentation/asof-2024-06-14");
    let summary = common::json(&next.join("summary.json"));
    let c = &summary["comparison"];
    assert_eq!(c["basis"], "snapshot");
    assert_eq!(c["period"], "asof-2024-05-14");
    let changes = c["changes"].as_array().unwrap();
    let find = |metric: &str, slice: &str, item: Option<&str>| {
        changes
            .iter()
            .find(|x| x["metric"] == metric && x["slice"] == slice && x["item"].as_str() == item)
            .unwrap_or_else(|| panic!("{metric} {slice} {item:?}"))
    };
    assert_eq!(
        find("users", "overall", None)["previous"].as_f64(),
        before["users"].as_f64()
    );
    assert_eq!(find("users", "overall", None)["direction"], "not_tested");
    assert_eq!(
        find("active_rate", "overall", None)["previous"],
        before["active_rate"]
    );
    let low = find("active_rate", "engagement", Some("low"));
    let low_then = before["dimensions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["dimension"] == "engagement" && r["value"] == "low")
        .unwrap();
    assert_eq!(low["previous"], low_then["active_rate"]);
    assert_eq!(low["direction"], "fall", "{low}");
    let pct = |v: &Value| format!("{:.1}%", v.as_f64().unwrap() * 100.0);
    for (lang, said) in [
        (
            "en",
            format!(
                "The active rate of users with low engagement fell from {} to {}",
                pct(&low["previous"]),
                pct(&low["current"])
            ),
        ),
        (
            "zh",
            format!(
                "与 2024-05-14 的快照相比，活跃度为“低”的用户的活跃率由 {} 下降至 {}",
                pct(&low["previous"]),
                pct(&low["current"])
            ),
        ),
    ] {
        let page1 = common::squash(&common::pdf_page_text(
            &next.join(format!("report.{lang}.pdf")),
            1,
        ));
        assert!(page1.contains(&common::squash(&said)), "{lang}: {page1}");
    }
    let (header, rows) = read_csv(&next.join("comparison.csv"));
    assert!(header.iter().any(|h| h == "item"));
    assert_eq!(rows.len(), changes.len());
}

/// Where nothing changed beyond chance (two 61-day windows of the demo), page 1 says
/// so plainly, in both languages.
#[test]
fn where_nothing_changed_page_one_says_so() {
    let dir = tempfile::tempdir().unwrap();
    run_usage(
        demo_db(),
        dir.path(),
        &["--window", "range:2024-04-01..2024-05-31"],
    );
    let report = dir
        .path()
        .join("out/conversation-usage/2024-04-01_2024-05-31");
    let summary = common::json(&report.join("summary.json"));
    assert_eq!(summary["comparison"]["period"], "2024-01-31_2024-03-31");
    assert_eq!(summary["findings"][0]["id"], "period_change");
    assert_eq!(summary["findings"][0]["keys"]["direction"], "none");
    for (lang, said) in [
        ("en", "nothing changed beyond chance"),
        ("zh", "没有超出随机波动的变化"),
    ] {
        let pdf = common::squash(&common::pdf_text(
            &report.join(format!("report.{lang}.pdf")),
        ));
        let at = pdf
            .find(&common::squash(said))
            .unwrap_or_else(|| panic!("{lang}"));
        assert!(at < pdf.len() / 10, "{lang}: on page 1");
    }
}

#[test]
fn demo_without_usage_events_falls_back_to_the_proxies() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("proxy.sqlite");
    let o = run(&[
        "demo-data",
        "--out",
        db.to_str().unwrap(),
        "--no-usage-events",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let (_, report) = run_usage(&db, dir.path(), &["--data-only"]);
    let manifest = common::json(&report.join("manifest.json"));
    assert_eq!(manifest["parameters"]["usage_source_used"], "proxy");
    let read = manifest["database"]["row_counts"].as_object().unwrap();
    assert!(read.contains_key("intercom__contact_enhanced"), "{read:?}");
    assert!(!read.contains_key("usage_events"), "{read:?}");
}

#[test]
fn without_first_response_tags_the_bot_share_is_labelled_a_proxy_everywhere() {
    let dir = tempfile::tempdir().unwrap();
    let db = demo_copy(
        dir.path(),
        "UPDATE intercom__conversation_enhanced SET all_conversation_tags =
           replace(replace(all_conversation_tags, 'first_response:bot', 'Bug'),
                   'first_response:human', 'Bug');",
    );
    let (_, report) = run_usage(&db, dir.path(), &[]);
    let summary = common::json(&report.join("summary.json"));
    assert_eq!(summary["bot_first_measure"], "bot_initiated_proxy");
    for (lang, proxy, tagged) in [
        ("en", "Bot-initiated share (proxy)", "Bot-first share"),
        ("zh", "机器人发起占比（代理）", "机器人首答占比"),
    ] {
        let pdf = common::pdf_text(&report.join(format!("report.{lang}.pdf")));
        assert!(pdf.contains(proxy), "{lang}: labelled as the proxy");
        assert!(!pdf.contains(tagged), "{lang}: never printed as bot-first");
        let chart = std::fs::read_to_string(
            report.join(format!("charts/scatter_bot_conversion.{lang}.svg")),
        )
        .unwrap();
        assert!(chart.contains(proxy), "{lang}: the chart's axis too");
    }
    // With the demo's tags, the same report says bot-first.
    let (_, report) = run_usage(demo_db(), &dir.path().join("tagged"), &["--lang", "en"]);
    assert_eq!(
        common::json(&report.join("summary.json"))["bot_first_measure"],
        "first_response_tags"
    );
    let pdf = common::pdf_text(&report.join("report.en.pdf"));
    assert!(pdf.contains("Bot-first share") && !pdf.contains("(proxy)"));
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
            (db.as_path(), None, out("unmapped")),
        ];
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
        assert_ne!(
            csvs[2], csvs[1],
            "{report}: without it the renamed tags are not understood"
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
fn without_any_usage_input_conversion_and_retention_are_empty_and_said_so() {
    // dbt_intercom as built: no usage_events, no proxy columns.
    let dir = tempfile::tempdir().unwrap();
    let db = demo_copy(
        dir.path(),
        "DROP TABLE usage_events;
         ALTER TABLE intercom__contact_enhanced DROP COLUMN last_activity_ts;
         ALTER TABLE intercom__company_metrics DROP COLUMN registration_retention_7d;
         ALTER TABLE intercom__company_metrics DROP COLUMN registration_retention_30d;",
    );
    let (_, report) = run_usage(&db, dir.path(), &["--lang", "en"]);
    let summary = common::json(&report.join("summary.json"));
    assert_eq!(summary["usage_source"], "none");
    let overall = &summary["panels"]["overall"];
    assert!(overall["conv_to_feature_rate"].is_null());
    assert!(overall["weekly_retention"].is_null() && overall["monthly_retention"].is_null());
    // The rest is computed.
    assert_eq!(overall["conv_cnt"], summary["counts"]["conversations_kept"]);
    assert!(overall["p50_resp"].is_number());
    let (header, rows) = common::read_csv(&report.join("panel_segment.csv"));
    let conv = common::col(&header, "conv_to_feature_rate");
    assert!(rows.iter().all(|r| r[conv].is_empty()), "never 0");
    let pdf = common::squash(&common::pdf_text(&report.join("report.en.pdf")));
    assert!(
        pdf.contains(&common::squash(
            "Conversion and retention are not available"
        )),
        "the report says why"
    );
}

#[test]
fn usage_events_that_match_no_company_are_counted_and_printed() {
    // Events keyed by the product's own account id instead of Intercom's company id.
    let dir = tempfile::tempdir().unwrap();
    let db = demo_copy(
        dir.path(),
        "UPDATE usage_events SET company_id = 'acct-' || company_id",
    );
    // Events before the window cannot count for anything: only the window's are
    // weighed (the same on a server, which never sends the earlier ones).
    let events: i64 = rusqlite::Connection::open(&db)
        .unwrap()
        .query_row(
            "SELECT count(*) FROM usage_events WHERE datetime(occurred_at) >= '2023-12-15 00:00:00'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(events > 40_000);
    let (o, report) = run_usage(&db, dir.path(), &["--lang", "en"]);
    assert!(
        text(&o).contains("matches no company"),
        "a warning: {}",
        text(&o)
    );
    let summary = common::json(&report.join("summary.json"));
    assert_eq!(
        summary["data_quality"]["usage_events_unmatched"].as_i64(),
        Some(events)
    );
    let pdf = common::squash(&common::pdf_text(&report.join("report.en.pdf")));
    assert!(pdf.contains(&common::squash(
        "Usage events whose company_id matches no company"
    )));
    // On the demo itself every event has its company.
    let demo = tempfile::tempdir().unwrap();
    let (_, report) = run_usage(demo_db(), demo.path(), &["--data-only"]);
    let summary = common::json(&report.join("summary.json"));
    assert_eq!(summary["data_quality"]["usage_events_unmatched"], 0);
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
