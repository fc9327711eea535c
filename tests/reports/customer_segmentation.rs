//! customer-segmentation end to end: its outputs agree and every Sankey names its
//! nodes; it compares with its previous snapshot; missing or empty segmentation tables
//! fail cleanly.

use std::collections::BTreeSet;

use super::{close, output_of};
use crate::common::{demo_copy, demo_db, json, pdf_pages, pdf_text, read_csv, run, squash, text};
use cxreport::render::templates::Templates;
use serde_json::Value;

/// Escapes text as ECharts writes it into SVG.
fn xml(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[test]
fn customer_segmentation_outputs_agree_and_every_sankey_names_its_nodes() {
    let dir = output_of("customer-segmentation");
    assert_eq!(
        dir.file_name().unwrap(),
        "asof-2024-06-14",
        "a snapshot, dated by the latest event"
    );
    let s = json(&dir.join("summary.json"));
    let users = s["users"].as_u64().unwrap();
    let in_portfolio = s["users_in_portfolio_groups"].as_u64().unwrap();
    assert_eq!(users, 10_000);
    assert_eq!(
        in_portfolio + s["users_without_portfolio"].as_u64().unwrap(),
        users
    );

    let (header, rows) = read_csv(&dir.join("segments.csv"));
    assert_eq!(
        header,
        [
            "portfolio_group",
            "plan_type",
            "engagement",
            "status",
            "users",
            "share",
            "total_arr",
            "avg_arr"
        ]
    );
    let n: u64 = rows.iter().map(|r| r[4].parse::<u64>().unwrap()).sum();
    assert_eq!(n, in_portfolio, "every user with a portfolio on one path");
    let shares: f64 = rows.iter().map(|r| r[5].parse::<f64>().unwrap()).sum();
    assert!(close(shares, 1.0));

    let (header, rows) = read_csv(&dir.join("dimension_tables.csv"));
    assert_eq!(
        header,
        [
            "dimension",
            "value",
            "users",
            "share",
            "total_arr",
            "avg_arr",
            "active_rate",
            "avg_nps",
            "avg_tickets"
        ]
    );
    for dim in [
        "portfolio_group",
        "plan_type",
        "engagement",
        "ticket_range",
        "diversity_group",
        "arr_group",
        "training",
    ] {
        let n: u64 = rows
            .iter()
            .filter(|r| r[0] == dim)
            .map(|r| r[2].parse::<u64>().unwrap())
            .sum();
        let want = if dim == "portfolio_group" {
            in_portfolio
        } else {
            users
        };
        assert_eq!(n, want, "{dim}");
    }
    let values: Vec<&str> = rows
        .iter()
        .filter(|r| r[0] == "portfolio_group")
        .map(|r| r[1].as_str())
        .collect();
    assert_eq!(values, ["1", "2-5", "6-10", "11+"]);

    for (lang, title) in [
        ("en", "Customer profiles and journeys"),
        ("zh", "客户画像与客户旅程"),
    ] {
        let language = Templates::default()
            .language("customer-segmentation", lang)
            .unwrap();
        let strings = &language.strings;
        for (chart, key) in [
            ("sankey_engagement", "engagement_journey"),
            ("sankey_portfolio", "portfolio_journey"),
        ] {
            let svg =
                std::fs::read_to_string(dir.join(format!("charts/{chart}.{lang}.svg"))).unwrap();
            assert!(
                svg.len() > 2_000 && svg.contains("<path"),
                "{chart}.{lang} is drawn"
            );
            let mut nodes = BTreeSet::new();
            for f in s[key].as_array().unwrap() {
                for (d, v) in [("from_dimension", "from"), ("to_dimension", "to")] {
                    nodes.insert(strings.get(&format!(
                        "sankey.{}.{}",
                        f[d].as_str().unwrap(),
                        f[v].as_str().unwrap()
                    )));
                }
            }
            assert!(nodes.len() >= 2, "{chart}");
            for node in &nodes {
                assert!(
                    !node.starts_with("sankey."),
                    "{chart}.{lang}: no label for {node}"
                );
                assert!(
                    svg.contains(&xml(node)),
                    "{chart}.{lang}: node {node} not in the SVG"
                );
            }
        }
        // Risk is red and carries its ARR: the inactive node of portfolio → status is
        // the one red node, labelled with the ARR flowing into it.
        let svg = std::fs::read_to_string(dir.join(format!("charts/sankey_portfolio.{lang}.svg")))
            .unwrap();
        let inactive_arr: f64 = s["portfolio_journey"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["to"] == "inactive")
            .map(|f| f["arr"].as_f64().unwrap())
            .sum();
        let label = format!(
            "{} · {}",
            strings.get("sankey.status.inactive"),
            language.format.money(inactive_arr)
        );
        assert!(svg.contains(&xml(&label)), "{lang}: {label}");
        assert_eq!(
            svg.matches(&format!("fill=\"{}\"", cxreport::render::charts::RISK))
                .count(),
            1,
            "{lang}: one red node"
        );
        // The lift chart's bar labels are the dimension table's figures, in whole
        // currency units (the takeaway's lift is their ratio); the active rates are
        // the findings' (no second axis aligning dollars with per cent).
        let lift = std::fs::read_to_string(dir.join(format!("charts/lift.{lang}.svg"))).unwrap();
        for r in rows
            .iter()
            .filter(|r| r[0] == "training" || r[0] == "diversity_group")
        {
            let arr = language.format.money_whole(r[5].parse().unwrap());
            assert!(lift.contains(&format!(">{arr}<")), "{lang}: lift {arr}");
            let active = format!("{:.1}%", r[6].parse::<f64>().unwrap() * 100.0);
            assert!(
                !lift.contains(&format!(">{active}<")),
                "{lang}: no active rate beside money {active}"
            );
        }
        let pdf = dir.join(format!("report.{lang}.pdf"));
        assert!(pdf_pages(&pdf) >= 6, "{lang}");
        let flat = squash(&pdf_text(&pdf));
        assert!(flat.contains(&squash(title)), "{lang}: title");
        // The ARR at risk, as the edition formats it ($7.6M / 762 万美元), is the summary's.
        let at_risk = s["arr_at_risk"].as_f64().unwrap();
        let units = |v: f64| {
            let t = if v < 100.0 {
                format!("{v:.1}")
            } else {
                format!("{v:.0}")
            };
            let t = t.strip_suffix(".0").map(str::to_owned).unwrap_or(t);
            // Thousands separators on the integer part.
            let (int, frac) = t
                .split_once('.')
                .map_or((t.as_str(), None), |(i, f)| (i, Some(f)));
            let grouped = int
                .as_bytes()
                .rchunks(3)
                .rev()
                .map(|c| std::str::from_utf8(c).unwrap())
                .collect::<Vec<_>>()
                .join(",");
            frac.map_or(grouped.clone(), |f| format!("{grouped}.{f}"))
        };
        assert!(at_risk >= 1e6, "the demo's ARR at risk is in millions");
        let expected = if lang == "en" {
            format!("${}M", units(at_risk / 1e6))
        } else {
            format!("{}万美元", units(at_risk / 1e4))
        };
        assert!(
            flat.contains(&squash(&expected)),
            "{lang}: ARR at risk {expected}"
        );
        // One ARR denominator, said once, with the users it leaves out of the cells;
        // every table carries the all-users baseline.
        let note = language.fill(
            "notes.cross",
            &serde_json::json!({
                "users": language.format.count(s["users"].as_f64().unwrap()),
                "arr": language.format.money(s["total_arr"].as_f64().unwrap()),
                "out": language
                    .format
                    .count(s["users_without_portfolio"].as_f64().unwrap()),
                "out_arr": language
                    .format
                    .money(s["arr_without_portfolio"].as_f64().unwrap()),
            }),
        );
        assert!(!note.is_empty() && !note.contains('{'), "{lang}: {note}");
        assert!(flat.contains(&squash(&note)), "{lang}: {note}");
        let baseline = squash(&strings.get("columns.all_users"));
        assert!(
            flat.matches(&baseline).count() >= 9,
            "{lang}: baseline rows and columns"
        );
        let page1 = squash(&crate::common::pdf_page_text(&pdf, 1));
        assert!(
            page1.contains(&squash(&strings.get("brief.stake")))
                && page1.contains(&squash(&expected)),
            "{lang}: what is at stake (the ARR at risk), on page 1"
        );
    }
    assert!(pdf_text(&dir.join("report.zh.pdf")).contains("不活跃"));
    let findings: Vec<&Value> = s["findings"].as_array().unwrap().iter().collect();
    for id in [
        "largest_segment",
        "top_arr_segment",
        "arr_at_risk",
        "nps_gap",
        "training_lift",
        "diversity_lift",
    ] {
        assert!(findings.iter().any(|f| f["id"] == id), "{id}");
    }
}

#[test]
fn missing_or_empty_segmentation_tables_fail_cleanly_and_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("cx.sqlite");
    std::fs::copy(demo_db(), &db).unwrap();
    let out = dir.path().join("out");
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute_batch(
        "ALTER TABLE events DROP COLUMN event_type; ALTER TABLE users DROP COLUMN nps_score;",
    )
    .unwrap();
    drop(conn);
    let args = [
        "run",
        "customer-segmentation",
        "--db",
        db.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ];
    let o = run(&args);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let t = text(&o);
    for want in [
        "`events` has no column `event_type`",
        "`users` has no column `nps_score`",
        "customer-segmentation",
    ] {
        assert!(t.contains(want), "{want}: {t}");
    }
    std::fs::copy(demo_db(), &db).unwrap();
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute_batch("DELETE FROM users;").unwrap();
    drop(conn);
    let o = run(&args);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("users has no rows"), "{}", text(&o));
    assert!(!out.exists() || std::fs::read_dir(&out).unwrap().next().is_none());
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
    let before = crate::common::json(&first.join("summary.json"));
    assert!(before["comparison"]["empty_reason"]
        .as_str()
        .unwrap()
        .starts_with("no earlier snapshot"));
    assert!(!first.join("comparison.csv").exists());
    let pdf = crate::common::squash(&crate::common::pdf_text(&first.join("report.en.pdf")));
    assert!(pdf.contains(&crate::common::squash(
        "There is no earlier snapshot of this report among its outputs to compare with"
    )));

    segmentation(demo_db());
    let next = out.join("customer-segmentation/asof-2024-06-14");
    let summary = crate::common::json(&next.join("summary.json"));
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
                "与 2024-05-14 的快照相比，参与度为“低”的用户的活跃率由 {} 下降至 {}",
                pct(&low["previous"]),
                pct(&low["current"])
            ),
        ),
    ] {
        let page1 = crate::common::squash(&crate::common::pdf_page_text(
            &next.join(format!("report.{lang}.pdf")),
            1,
        ));
        assert!(
            page1.contains(&crate::common::squash(&said)),
            "{lang}: {page1}"
        );
    }
    let (header, rows) = read_csv(&next.join("comparison.csv"));
    assert!(header.iter().any(|h| h == "item"));
    assert_eq!(rows.len(), changes.len());
}

/// A PDF's text with its table layout kept (one table row a line).
fn layout_text(path: &std::path::Path) -> String {
    let o = std::process::Command::new("pdftotext")
        .args(["-layout", "-enc", "UTF-8"])
        .arg(path)
        .arg("-")
        .output()
        .expect("pdftotext runs (poppler-utils)");
    String::from_utf8(o.stdout).unwrap()
}

/// The amounts a line prints, in either language's money format ("$3.7k", "$942",
/// "$1.2M"; "3,695 美元", "1.2 万美元", "2.6 亿美元").
fn amounts(line: &str) -> Vec<f64> {
    let mut out = Vec::new();
    let words: Vec<&str> = line.split_whitespace().collect();
    for (i, w) in words.iter().enumerate() {
        let next = words.get(i + 1).copied().unwrap_or("");
        let number = |s: &str| s.replace(',', "").parse::<f64>().ok();
        if let Some(rest) = w.strip_prefix('$').or_else(|| w.strip_prefix("-$")) {
            let sign = if w.starts_with('-') { -1.0 } else { 1.0 };
            let (digits, unit) = match rest.chars().last() {
                Some('k') => (&rest[..rest.len() - 1], 1e3),
                Some('M') => (&rest[..rest.len() - 1], 1e6),
                _ => (rest, 1.0),
            };
            out.extend(number(digits).map(|v| sign * v * unit));
        } else if let Some(v) = number(w) {
            let unit = match next {
                "美元" => Some(1.0),
                "万美元" => Some(1e4),
                "亿美元" => Some(1e8),
                _ => None,
            };
            out.extend(unit.map(|u| v * u));
        }
    }
    out
}

/// The percentages of a line ("76.3%"), and its points ("8.1 pp", "8.1 个百分点").
fn percents(line: &str) -> (Vec<f64>, Vec<f64>) {
    let words: Vec<&str> = line.split_whitespace().collect();
    let mut pct = Vec::new();
    let mut pp = Vec::new();
    for (i, w) in words.iter().enumerate() {
        let w =
            w.trim_matches(|c: char| matches!(c, ',' | ';' | ':' | '(' | ')' | '，' | '（' | '）'));
        if let Some(v) = w.strip_suffix('%').and_then(|v| v.parse::<f64>().ok()) {
            pct.push(v);
        } else if let Ok(v) = w.parse::<f64>() {
            if matches!(words.get(i + 1), Some(&"pp") | Some(&"个百分点")) {
                pp.push(v);
            }
        }
    }
    (pct, pp)
}

/// Reads page 1 and the tables behind it as a leader would, in both languages, on
/// the demo and on the planted demo: every printed difference is the difference of
/// the printed values; the derived count comes from the printed rates; no action
/// stands beside a finding that rejects its lever; each headline has an action or
/// a stated no-action; the target names the edition that checks it and its 95 %
/// bound.
#[test]
fn customer_segmentation_says_only_what_its_printed_numbers_hold() {
    let dir = tempfile::tempdir().unwrap();
    let planted = crate::common::planted_demo(dir.path());
    let planted_dir = crate::run_report(
        &planted,
        &dir.path().join("planted-out"),
        "customer-segmentation",
        &[],
    );
    for base in [output_of("customer-segmentation"), planted_dir.as_path()] {
        for lang in ["en", "zh"] {
            let t = layout_text(&base.join(format!("report.{lang}.pdf")));
            let rows = |label: &str| {
                t.lines()
                    .filter(|l| l.trim_start().starts_with(label))
                    .map(str::to_owned)
                    .collect::<Vec<_>>()
            };
            // Training and diversity tables: with, without, difference, all.
            let (avg, median, active) = if lang == "en" {
                ("Average ARR ", "Median ARR ", "Active rate ")
            } else {
                ("平均 ARR ", "ARR 中位数 ", "活跃率 ")
            };
            let money_rows: Vec<String> = [rows(avg), rows(median)].concat();
            let gaps: Vec<Vec<f64>> = money_rows
                .iter()
                .map(|l| amounts(l))
                .filter(|a| a.len() == 4)
                .collect();
            assert!(gaps.len() >= 4, "{lang}: {money_rows:?}");
            for a in &gaps {
                assert!(
                    (a[0] - a[1] - a[2]).abs() < 0.5,
                    "{lang}: {a:?} in {money_rows:?}"
                );
            }
            let rate_rows: Vec<(Vec<f64>, Vec<f64>)> = rows(active)
                .iter()
                .map(|l| percents(l))
                .filter(|(p, d)| p.len() == 3 && d.len() == 1)
                .collect();
            assert_eq!(rate_rows.len(), 2, "{lang}");
            for (p, d) in &rate_rows {
                assert!((p[0] - p[1] - d[0]).abs() < 1e-6, "{lang}: {p:?} {d:?}");
            }

            let flat = t.split_whitespace().collect::<Vec<_>>().join(" ");
            // A derived count from the printed rates: n × (target − current).
            if lang == "en" {
                if let Some(i) = flat.find("Target: active rate from ") {
                    let s = &flat[i..];
                    let (p, _) = percents(&s[..s.find(", the lower").unwrap()]);
                    assert_eq!(p.len(), 2, "{s}");
                    let n: f64 = s
                        .split("For all ")
                        .nth(1)
                        .and_then(|r| r.split_whitespace().next())
                        .map(|v| v.replace(',', "").parse().unwrap())
                        .unwrap();
                    let moved: f64 = s
                        .split("about ")
                        .nth(1)
                        .and_then(|r| r.split_whitespace().next())
                        .map(|v| v.replace(',', "").parse().unwrap())
                        .unwrap();
                    assert_eq!(moved, (n * (p[1] - p[0]) / 100.0).round(), "{s}");
                    assert!(s.contains("lower 95% bound"), "{s}");
                    assert!(
                        s.contains("checked by the first edition of this report from 2024-08-09"),
                        "the target names the edition that checks it: {s}"
                    );
                }
                // The finding that rejects a lever, and the action that would pull it.
                let rejects = [
                    ("Support load does not follow engagement", "Re-onboard"),
                    ("so the plan mix explains it", "Offer training"),
                ];
                for (finding, action) in rejects {
                    assert!(
                        !(flat.contains(finding) && flat.contains(action)),
                        "{action} stands beside {finding}"
                    );
                }
            } else {
                assert!(flat.contains("95% 置信下限") || !flat.contains("目标：活跃率"));
            }
            // Page 1: each headline has an action or a stated no-action.
            let page1 = t.split('\u{c}').next().unwrap();
            let (head, actions) = if lang == "en" {
                ("Headline findings", "Top actions")
            } else {
                ("核心结论", "优先行动")
            };
            if let (Some(h), Some(a)) = (page1.find(head), page1.find(actions)) {
                let headlines = page1[h..a].matches('•').count();
                let acts = page1[a..]
                    .lines()
                    .filter(|l| {
                        let l = l.trim_start();
                        l.len() > 2 && l.as_bytes()[0].is_ascii_digit() && l[1..].starts_with(". ")
                    })
                    .count();
                assert_eq!(headlines, acts, "{lang}: {page1}");
            } else {
                panic!("{lang}: page 1 without headlines or actions: {page1}");
            }
            assert!(
                !t.contains("NPS 5.") && !t.contains("Avg NPS"),
                "{lang}: mean score called NPS"
            );
        }
    }
}

/// Seed 004's activity analyses: events per type (event_types.csv), tickets and
/// cancellations of active and inactive users (activity_by_status.csv) equal a
/// recount from the database; the findings carry the same numbers and both editions
/// print the section and the count of distinct journeys.
#[test]
fn customer_segmentation_activity_recounts_from_the_database() {
    let dir = output_of("customer-segmentation");
    let conn = rusqlite::Connection::open(demo_db()).unwrap();
    let (h, rows) = read_csv(&dir.join("event_types.csv"));
    assert_eq!(
        h,
        [
            "event_type",
            "events",
            "users",
            "events_active",
            "events_inactive"
        ]
    );
    let mut q = conn
        .prepare(
            "SELECT e.event_type, count(*), count(DISTINCT e.user_id),
                    coalesce(sum(u.is_active = 1), 0), coalesce(sum(u.is_active = 0), 0)
             FROM events e LEFT JOIN users u USING (user_id)
             GROUP BY e.event_type ORDER BY count(*) DESC, e.event_type",
        )
        .unwrap();
    let want: Vec<Vec<String>> = q
        .query_map([], |r| {
            Ok(vec![
                r.get::<_, String>(0)?,
                r.get::<_, i64>(1)?.to_string(),
                r.get::<_, i64>(2)?.to_string(),
                r.get::<_, i64>(3)?.to_string(),
                r.get::<_, i64>(4)?.to_string(),
            ])
        })
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(rows, want);
    let (h, rows) = read_csv(&dir.join("activity_by_status.csv"));
    assert_eq!(h, ["measure", "status", "users", "total", "mean", "median"]);
    let row = |m: &str, s: &str| {
        rows.iter()
            .find(|r| r[0] == m && r[1] == s)
            .unwrap_or_else(|| panic!("{m} {s}"))
            .clone()
    };
    for (status, active) in [("active", 1), ("inactive", 0)] {
        let (users, tickets, cancelled): (i64, i64, i64) = conn
            .query_row(
                "SELECT count(*), coalesce(sum(support_tickets_last_90d), 0),
                        coalesce(sum(user_id IN (SELECT user_id FROM events
                                                 WHERE event_type = 'subscription_cancelled')), 0)
                 FROM users WHERE is_active = ?1",
                [active],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .unwrap();
        let t = row("support_tickets_last_90d", status);
        assert_eq!(t[2], users.to_string(), "{status}");
        assert!(close(t[3].parse().unwrap(), tickets as f64), "{t:?}");
        let c = row("subscription_cancelled", status);
        assert_eq!(
            (c[2].clone(), c[3].clone()),
            (users.to_string(), cancelled.to_string())
        );
    }
    // Portfolio size → ARR group: each cell a recount (groups as metrics defines them).
    let (h, cells) = read_csv(&dir.join("size_arr.csv"));
    assert_eq!(
        h,
        [
            "portfolio_group",
            "arr_group",
            "users",
            "share_of_group",
            "total_arr"
        ]
    );
    let mut q = conn
        .prepare(
            "SELECT CASE WHEN portfolio_size = 1 THEN '1' WHEN portfolio_size <= 5 THEN '2-5'
                         WHEN portfolio_size <= 10 THEN '6-10' ELSE '11+' END,
                    CASE WHEN is_active = 0 THEN 'inactive'
                         WHEN coalesce(annual_revenue, 0) < 5000 THEN 'under_5k'
                         WHEN annual_revenue < 15000 THEN '5k_15k' ELSE '15k_plus' END,
                    count(*)
             FROM users WHERE portfolio_size >= 1 GROUP BY 1, 2",
        )
        .unwrap();
    let want: BTreeSet<(String, String, String)> = q
        .query_map([], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get::<_, i64>(2)?.to_string()))
        })
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let got: BTreeSet<(String, String, String)> = cells
        .iter()
        .map(|c| (c[0].clone(), c[1].clone(), c[2].clone()))
        .collect();
    assert_eq!(got, want);
    let summary = json(&dir.join("summary.json"));
    let findings = summary["findings"].as_array().unwrap();
    let by_id = |id: &str| {
        findings
            .iter()
            .find(|f| f["id"] == id)
            .unwrap_or_else(|| panic!("{id}"))
    };
    let tickets = by_id("activity_tickets");
    let t = row("support_tickets_last_90d", "inactive");
    assert!(close(
        tickets["numbers"]["inactive_total"].as_f64().unwrap(),
        t[3].parse().unwrap()
    ));
    let cancelled = by_id("activity_cancelled");
    let c = row("subscription_cancelled", "inactive");
    assert_eq!(
        cancelled["numbers"]["inactive"].as_f64(),
        Some(c[3].parse().unwrap())
    );
    let days = by_id("activity_days");
    assert!(days["keys"]["verdict"].is_string());
    for f in [tickets, cancelled, days] {
        assert_eq!(f["lead"], false, "key findings, not headlines");
    }
    for lang in ["en", "zh"] {
        let flat = squash(&pdf_text(&dir.join(format!("report.{lang}.pdf"))));
        let language = Templates::default()
            .language("customer-segmentation", lang)
            .unwrap();
        for key in [
            "sections.activity",
            "sections.event_types",
            "sections.size_arr",
            "scope.journeys",
        ] {
            assert!(
                flat.contains(&squash(&language.strings.get(key))),
                "{lang}: {key}"
            );
        }
        assert!(
            flat.contains(&squash(
                &language
                    .strings
                    .label("event_type", "subscription_cancelled")
            )),
            "{lang}: the event types by name"
        );
    }
}

/// Cancellations per segment (portfolio × plan): each row of
/// cancellations_by_segment.csv is a recount of the database (users, users with a
/// `subscription_cancelled` event, their events), its verdict the claims module's
/// test of those counts against the other segments', and both editions print the
/// table with its counts beside the rates.
#[test]
fn cancellations_per_segment_recount_from_the_database_and_are_tested_against_the_rest() {
    use cxreport::stats::claims::{proportions_against_rest, Proportion};
    let dir = output_of("customer-segmentation");
    let conn = rusqlite::Connection::open(demo_db()).unwrap();
    let (h, rows) = read_csv(&dir.join("cancellations_by_segment.csv"));
    assert_eq!(
        h,
        [
            "portfolio_group",
            "plan_type",
            "users",
            "cancelled_users",
            "cancelled_share",
            "events",
            "verdict"
        ]
    );
    let mut q = conn
        .prepare(
            "SELECT CASE WHEN u.portfolio_size = 1 THEN '1' WHEN u.portfolio_size <= 5 THEN '2-5'
                         WHEN u.portfolio_size <= 10 THEN '6-10' ELSE '11+' END,
                    u.plan_type, count(*), count(c.n), coalesce(sum(c.n), 0)
             FROM users u
             LEFT JOIN (SELECT user_id, count(*) AS n FROM events
                        WHERE event_type = 'subscription_cancelled' GROUP BY user_id) c
                    USING (user_id)
             WHERE u.portfolio_size >= 1 GROUP BY 1, 2",
        )
        .unwrap();
    let want: BTreeSet<[String; 5]> = q
        .query_map([], |r| {
            Ok([
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)?.to_string(),
                r.get::<_, i64>(3)?.to_string(),
                r.get::<_, i64>(4)?.to_string(),
            ])
        })
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let got: BTreeSet<[String; 5]> = rows
        .iter()
        .map(|r| {
            [
                r[0].clone(),
                r[1].clone(),
                r[2].clone(),
                r[3].clone(),
                r[5].clone(),
            ]
        })
        .collect();
    assert_eq!(got, want);
    let cancelled: i64 = want.iter().map(|r| r[3].parse::<i64>().unwrap()).sum();
    assert!(cancelled > 0, "the demo has cancellations");
    // The rate is k of n, and the verdicts the claims module's over these counts.
    let cells: Vec<Proportion> = rows
        .iter()
        .map(|r| Proportion {
            k: r[3].parse().unwrap(),
            n: r[2].parse().unwrap(),
        })
        .collect();
    for (r, c) in rows.iter().zip(&cells) {
        assert!(close(r[4].parse().unwrap(), c.k / c.n), "{r:?}");
    }
    let verdicts: Vec<String> = proportions_against_rest(&cells)
        .iter()
        .map(|v| v.key().to_owned())
        .collect();
    let printed: Vec<String> = rows.iter().map(|r| r[6].clone()).collect();
    assert_eq!(printed, verdicts);
    // The finding names a segment only where its difference holds.
    let summary = json(&dir.join("summary.json"));
    let finding = summary["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["id"] == "activity_cancelled")
        .expect("the cancellations finding");
    let higher = verdicts.iter().filter(|v| *v == "higher").count();
    assert_eq!(
        finding["numbers"]["segments_higher"].as_f64(),
        Some(higher as f64)
    );
    assert_eq!(finding["slices"].get("highest").is_some(), higher > 0);
    for lang in ["en", "zh"] {
        let full = squash(&pdf_text(&dir.join(format!("report.{lang}.pdf"))));
        let language = Templates::default()
            .language("customer-segmentation", lang)
            .unwrap();
        let s = &language.strings;
        for key in [
            "sections.cancellations",
            "columns.cancelled_users",
            "columns.vs_rest",
        ] {
            assert!(full.contains(&squash(&s.get(key))), "{lang}: {key}");
        }
        // Every segment's row: its users beside its cancelling users and the verdict.
        let layout = layout_text(&dir.join(format!("report.{lang}.pdf")));
        for r in &rows {
            let fmt = |v: &str| language.format.count(v.parse().unwrap());
            let verdict = s.get(&format!("cancel.{}", r[6]));
            let row = format!("{} {} ", fmt(&r[2]), fmt(&r[3]));
            assert!(
                layout
                    .lines()
                    .any(|l| squash(l).contains(&squash(&row))
                        && squash(l).contains(&squash(&verdict))),
                "{lang}: no row `{row}… {verdict}`"
            );
        }
    }
}
