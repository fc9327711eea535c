//! conversation-usage end to end: its outputs agree with each other, its comparison and
//! each trend month equal a run on that window, a planted change leads page 1 with its
//! numbers, what missing inputs (first responses, usage events) make it say, and that
//! page 1's targets can be checked and their pilots are sized for them.
//!
//! Why this file is long (about 820 lines): each test runs the report end to end on
//! its own database and reads its outputs back; they share the run and read helpers
//! at the top, which a split would duplicate.

use crate::common::{col, demo_copy, demo_db, read_csv, run, text};
use serde_json::Value;
use std::path::PathBuf;
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
    let summary = crate::common::json(&report.join("summary.json"));
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
        let pdf = crate::common::squash(&crate::common::pdf_text(
            &report.join(format!("report.{lang}.pdf")),
        ));
        assert!(pdf.contains(&crate::common::squash(said)), "{lang}");
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
    let manifest = crate::common::json(&report.join("manifest.json"));
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
    crate::common::json(&out.join(format!("conversation-usage/{from}_{to}/summary.json")))
}

/// The comparison's numbers are the numbers of a run on the comparison window itself,
/// overall and per segment; on the demo (no change planted) no rate changes. Both
/// windows inside the data (a comparison window before it is not compared at all).
#[test]
fn the_comparison_equals_a_run_on_the_comparison_window() {
    let dir = tempfile::tempdir().unwrap();
    let db = demo_db();
    let (_, _) = run_usage(
        db,
        dir.path(),
        &[
            "--data-only",
            "--window",
            "rolling:2m",
            "--compare",
            "previous",
        ],
    );
    let report = dir
        .path()
        .join("out/conversation-usage/2024-04-15_2024-06-15");
    let summary = crate::common::json(&report.join("summary.json"));
    let c = &summary["comparison"];
    assert_eq!(c["period"], "2024-02-15_2024-04-14");
    assert_eq!(c["basis"], "previous");
    assert_eq!(c["coverage"]["volumes"], true, "both sides covered");
    let earlier = summary_alone(db, &dir.path().join("earlier"), "2024-02-15", "2024-04-14");
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
    let summary = crate::common::json(&report.join("summary.json"));
    let months = summary["trend"]["months"].as_array().unwrap();
    let labels: Vec<&str> = months
        .iter()
        .map(|m| m["month"].as_str().unwrap())
        .collect();
    assert_eq!(
        labels,
        ["2023-12", "2024-01", "2024-02", "2024-03", "2024-04", "2024-05", "2024-06"],
        "every month of the window, up to its end"
    );
    assert!(months.iter().all(|m| m["in_window"] == true));
    // December 2023 is inside the window, before the data: shown, as no data.
    assert!(months[0]["conversations"].is_null() && months[0]["empty_reason"].is_string());
    assert!(months[0]["covered"].is_null());
    // January starts with the data (2024-01-08) and June ends with the window: partial.
    assert_eq!(months[1]["partial"], true);
    assert!(months[1]["covered"]["start"]
        .as_str()
        .unwrap()
        .starts_with("2024-01-08"));
    assert_eq!(months[6]["partial"], true);
    assert_eq!(months[5]["partial"], false);
    for (month, from, to) in [
        (&months[3], "2024-03-01", "2024-03-31"),
        (&months[6], "2024-06-01", "2024-06-15"),
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
    assert!(months[6]["weekly_retention"].is_null());
}

/// The generator's planted change (`demo-data --plant-change`: half the bot-first
/// conversations from April on answered by people instead; volumes as before) leads page 1 with the right numbers,
/// in both languages; `compare = none` computes nothing.
#[test]
fn a_planted_change_is_a_fall_with_its_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let db = crate::common::planted_demo(dir.path());
    let window = "range:2024-04-01..2024-05-31";
    run_usage(&db, dir.path(), &["--window", window]);
    let report = dir
        .path()
        .join("out/conversation-usage/2024-04-01_2024-05-31");
    let summary = crate::common::json(&report.join("summary.json"));
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
        let pdf = crate::common::squash(&crate::common::pdf_text(
            &report.join(format!("report.{lang}.pdf")),
        ));
        let first = pdf
            .find(&crate::common::squash(&said))
            .unwrap_or_else(|| panic!("{lang}: {said}"));
        assert!(first < pdf.len() / 10, "{lang}: on page 1");
        assert!(pdf.contains(&crate::common::squash(section)), "{lang}");
        // The table of every compared value follows the section's sentences.
        let table = if lang == "en" {
            "Every value compared, overall and per segment"
        } else {
            "整体及各客户阶段所比较的全部数值"
        };
        assert!(pdf.contains(&crate::common::squash(table)), "{lang}");
        // Then the trend, and the segment table shows each change under its value
        // with an arrow where it holds.
        let (trend, fell) = if lang == "en" {
            (
                "Month by month, 2024-01 – 2024-05",
                "Under a value: its change since 2024-01-31 – 2024-03-31",
            )
        } else {
            (
                "逐月走势（2024-01 – 2024-05）",
                "数值下方为与 2024-01-31 – 2024-03-31 相比的变化",
            )
        };
        let at = pdf
            .find(&crate::common::squash(trend))
            .unwrap_or_else(|| panic!("{lang}: trend"));
        assert!(
            at > pdf.find(&crate::common::squash(table)).unwrap(),
            "{lang}"
        );
        assert!(pdf.contains(&crate::common::squash(fell)), "{lang}");
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
            .find(&crate::common::squash(sizes))
            .unwrap_or_else(|| panic!("{lang}: sizes"));
        assert!(
            pdf[at..].contains(&crate::common::squash(fell)),
            "{lang}: the size table's note"
        );
    }
    run_usage(
        &db,
        &dir.path().join("none"),
        &["--data-only", "--window", window, "--compare", "none"],
    );
    let none = crate::common::json(
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
    let summary = crate::common::json(&report.join("summary.json"));
    assert_eq!(summary["comparison"]["period"], "2024-01-31_2024-03-31");
    assert_eq!(summary["findings"][0]["id"], "period_change");
    assert_eq!(summary["findings"][0]["keys"]["direction"], "none");
    for (lang, said) in [
        ("en", "nothing changed beyond chance"),
        ("zh", "没有超出随机波动的变化"),
    ] {
        let pdf = crate::common::squash(&crate::common::pdf_text(
            &report.join(format!("report.{lang}.pdf")),
        ));
        let at = pdf
            .find(&crate::common::squash(said))
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
    let manifest = crate::common::json(&report.join("manifest.json"));
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
    let summary = crate::common::json(&report.join("summary.json"));
    assert_eq!(summary["bot_first_measure"], "bot_initiated_proxy");
    for (lang, proxy, tagged) in [
        ("en", "Bot-initiated share (proxy)", "Bot-first share"),
        ("zh", "机器人发起占比（代理）", "机器人首答占比"),
    ] {
        let pdf = crate::common::pdf_text(&report.join(format!("report.{lang}.pdf")));
        assert!(pdf.contains(proxy), "{lang}: labelled as the proxy");
        assert!(!pdf.contains(tagged), "{lang}: never printed as bot-first");
        // Every chart that draws the share names it as the proxy (which charts are
        // drawn depends on the differences that hold).
        let charts: Vec<String> = std::fs::read_dir(report.join("charts"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.to_string_lossy().ends_with(&format!(".{lang}.svg")))
            .map(|p| std::fs::read_to_string(p).unwrap())
            .collect();
        assert!(
            charts.iter().any(|c| c.contains(proxy)),
            "{lang}: a chart's axis too"
        );
        assert!(charts
            .iter()
            .all(|c| !c.contains(tagged) || c.contains(proxy)));
    }
    // With the demo's tags, the same report says bot-first.
    let (_, report) = run_usage(demo_db(), &dir.path().join("tagged"), &["--lang", "en"]);
    assert_eq!(
        crate::common::json(&report.join("summary.json"))["bot_first_measure"],
        "first_response_tags"
    );
    let pdf = crate::common::pdf_text(&report.join("report.en.pdf"));
    assert!(pdf.contains("Bot-first share") && !pdf.contains("(proxy)"));
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
    let summary = crate::common::json(&report.join("summary.json"));
    assert_eq!(summary["usage_source"], "none");
    let overall = &summary["panels"]["overall"];
    assert!(overall["conv_to_feature_rate"].is_null());
    assert!(overall["weekly_retention"].is_null() && overall["monthly_retention"].is_null());
    // The rest is computed.
    assert_eq!(overall["conv_cnt"], summary["counts"]["conversations_kept"]);
    assert!(overall["p50_resp"].is_number());
    let (header, rows) = crate::common::read_csv(&report.join("panel_segment.csv"));
    let conv = crate::common::col(&header, "conv_to_feature_rate");
    assert!(rows.iter().all(|r| r[conv].is_empty()), "never 0");
    let pdf = crate::common::squash(&crate::common::pdf_text(&report.join("report.en.pdf")));
    assert!(
        pdf.contains(&crate::common::squash(
            "Conversion and retention are not available"
        )),
        "the report says why"
    );
}

#[test]
fn usage_events_that_match_no_company_are_counted_and_printed() {
    // Half the events keyed by the product's own account id instead of Intercom's
    // company id (all of them: conversion and retention empty with the reason,
    // `hardening_data::events_keyed_by_another_id_…`).
    let dir = tempfile::tempdir().unwrap();
    let db = demo_copy(
        dir.path(),
        "UPDATE usage_events SET company_id = 'acct-' || company_id WHERE rowid % 2 = 0",
    );
    // Events before the window cannot count for anything: only the window's are
    // weighed (the same on a server, which never sends the earlier ones).
    let events: i64 = rusqlite::Connection::open(&db)
        .unwrap()
        .query_row(
            "SELECT count(*) FROM usage_events WHERE datetime(occurred_at) >= '2023-12-15 00:00:00'
               AND company_id LIKE 'acct-%'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(events > 20_000);
    let (o, report) = run_usage(&db, dir.path(), &["--lang", "en"]);
    assert!(
        text(&o).contains("matches no company"),
        "a warning: {}",
        text(&o)
    );
    let summary = crate::common::json(&report.join("summary.json"));
    assert_eq!(
        summary["data_quality"]["usage_events_unmatched"].as_i64(),
        Some(events)
    );
    let pdf = crate::common::squash(&crate::common::pdf_text(&report.join("report.en.pdf")));
    assert!(pdf.contains(&crate::common::squash(
        "Usage events whose company_id matches no company"
    )));
    // On the demo itself every event has its company.
    let demo = tempfile::tempdir().unwrap();
    let (_, report) = run_usage(demo_db(), demo.path(), &["--data-only"]);
    let summary = crate::common::json(&report.join("summary.json"));
    assert_eq!(summary["data_quality"]["usage_events_unmatched"], 0);
}

/// Page 1 of the demo and of the planted-change database, in both languages: every
/// target names the weeks that check it (after this window, so no month of today's
/// window dilutes it) and is reachable (no higher than the peers reach); the pilot's
/// detectable change covers the target's change or the page says no pilot can show
/// it; printed changes and "about N companies" are the arithmetic of the printed
/// values; every headline has its action (or a stated no-action); and no action pulls
/// the lever a finding rules out (a faster tier next to "speed does not explain").
#[test]
fn page_one_targets_are_checkable_and_their_pilots_sized() {
    let dir = tempfile::tempdir().unwrap();
    let planted = crate::common::planted_demo(dir.path());
    for (name, db) in [("demo", demo_db().to_path_buf()), ("planted", planted)] {
        let out = dir.path().join(name);
        run_usage(&db, &out, &[]);
        let report = std::fs::read_dir(out.join("out/conversation-usage"))
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path();
        let summary = crate::common::json(&report.join("summary.json"));
        let window_end = summary["window"]["end"].as_str().unwrap()[..10].to_owned();
        let recs = summary["recommendations"].as_array().unwrap();
        let findings = summary["findings"].as_array().unwrap();
        let page = |lang: &str| {
            crate::common::squash(&crate::common::pdf_page_text(
                &report.join(format!("report.{lang}.pdf")),
                1,
            ))
        };
        let whole = |lang: &str| {
            crate::common::squash(&crate::common::pdf_text(
                &report.join(format!("report.{lang}.pdf")),
            ))
        };
        let (en, zh, en_all) = (page("en"), page("zh"), whole("en"));
        let sq = |s: String| crate::common::squash(&s);
        let printed = |v: f64| (v * 1000.0).round() / 10.0;
        let pct = |v: f64| format!("{:.1}%", printed(v));
        let brief = &recs[..recs.len().min(3)];
        let mut targets = 0;
        for r in brief.iter().filter(|r| r["numbers"]["target"].is_number()) {
            if r["keys"]["measure"] == "first_response" {
                continue;
            }
            targets += 1;
            let n = |k: &str| r["numbers"][k].as_f64().unwrap();
            let (current, target) = (n("current"), n("target"));
            let id = r["id"].as_str().unwrap();
            assert!(
                en.contains(&sq(format!("{} → {}", pct(current), pct(target)))),
                "{name} {id}: en page 1"
            );
            assert!(
                zh.contains(&sq(format!("{} 提升至 {}", pct(current), pct(target)))),
                "{name} {id}: zh page 1"
            );
            // Reachable: the peers reach it.
            assert!(target <= n("peer_rate") && target > current, "{name} {id}");
            // The checking weeks: right after this window, as long as the pilot.
            let check = r["slices"]["check"].as_str().unwrap();
            let (from, to) = check.split_once('_').unwrap();
            assert!(
                from > window_end.as_str(),
                "{name} {id}: {check} after the window"
            );
            let days = chrono::NaiveDate::parse_from_str(to, "%Y-%m-%d").unwrap()
                - chrono::NaiveDate::parse_from_str(from, "%Y-%m-%d").unwrap();
            assert_eq!(days.num_days() + 1, 7 * n("weeks") as i64, "{name} {id}");
            assert!(
                en.contains(&sq(format!("checked on {from} – {to} alone"))),
                "{name} {id}: en names its checking weeks"
            );
            assert!(
                zh.contains(&sq(format!("仅在 {from} – {to} 期间检查"))),
                "{name} {id}: zh names its checking weeks"
            );
            // The change is the difference of the printed rates.
            let effect = printed(target) - printed(current);
            assert!((n("effect") * 100.0 - effect).abs() < 1e-9, "{name} {id}");
            assert!(
                en_all.contains(&sq(format!("(+{effect:.1} pp)"))),
                "{name} {id}: printed change"
            );
            // About N companies: the printed change times the companies measured.
            let moved = (effect / 100.0 * n("current_n")).round();
            assert_eq!(n("moved"), moved.max(1.0), "{name} {id}");
            assert!(
                en_all.contains(&sq(format!("about {moved} more"))),
                "{name} {id}: about {moved}"
            );
            // The pilot can show the change, or page 1 says it cannot.
            let shows = n("detectable") * 100.0 <= effect + 1e-9;
            assert_eq!(
                r["keys"]["shows"],
                if shows { "yes" } else { "no" },
                "{name} {id}"
            );
            if shows {
                assert!(
                    en.contains(&sq("the pilot can show it".into())),
                    "{name} {id}"
                );
            } else {
                assert!(
                    en.contains(&sq(format!(
                        "no pilot on these accounts can show a change of {effect:.1} pp"
                    ))),
                    "{name} {id}: en says the pilot cannot show it"
                );
                assert!(
                    zh.contains(&sq(format!("无法检验出 {effect:.1} 个百分点的变化"))),
                    "{name} {id}: zh says the pilot cannot show it"
                );
                assert!(
                    en_all.contains(&sq(format!(
                        "show only a change of {:.1} pp or more",
                        printed(n("detectable"))
                    ))),
                    "{name} {id}: what the pilot can show"
                );
            }
        }
        assert!(targets > 0, "{name}: page 1 sets a target");
        // Every headline (but the change since the last period, the comparison's own)
        // has its action among page 1's.
        for f in findings
            .iter()
            .filter(|f| f["lead"] == true)
            .take(3)
            .filter(|f| f["id"] != "period_change")
        {
            assert!(
                brief.iter().any(|r| r["follows"] == f["id"]),
                "{name}: headline {} has no action on page 1",
                f["id"]
            );
        }
        // A faster tier never stands next to "service speed does not explain the gaps".
        let uniform = findings
            .iter()
            .any(|f| f["id"] == "service_model" && f["keys"]["response"] == "uniform");
        if uniform && en_all.contains(&sq("Service speed does not explain the gaps".into())) {
            assert!(
                !recs.iter().any(|r| r["keys"]["measure"] == "first_response"
                    && r["numbers"]["target"].is_number()),
                "{name}: a response target the diagnosis rules out"
            );
            assert!(!en_all.contains(&sq("priority tier".into())), "{name}");
        }
        // Page 1 says what retention measures.
        assert!(
            en.contains(&sq("Retention here is product activity".into())),
            "{name}"
        );
        assert!(
            zh.contains(&sq("本报告中的留存指产品活跃".into())),
            "{name}"
        );
    }
}
