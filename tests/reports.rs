//! End-to-end: `cxreport run tag-drivers` and `cxreport run customer-segmentation` on
//! the demo database, checked through their CSVs, summary, charts and both PDF
//! editions read back; the report list; a job of each kind delivering to an outbox.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use common::{col, demo_db, json, pdf_pages, pdf_text, read_csv, run, squash, text};
use cxreport::render::templates::Templates;
use serde_json::Value;

const AS_OF: &str = "2024-07-01T08:00:00Z";

/// Runs `report` once on the demo database; returns its output folder.
fn output_of(report: &'static str) -> &'static Path {
    static RUNS: OnceLock<std::sync::Mutex<Vec<(&'static str, &'static Path)>>> = OnceLock::new();
    let runs = RUNS.get_or_init(Default::default);
    let mut runs = runs.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, p)) = runs.iter().find(|(r, _)| *r == report) {
        return p;
    }
    let dir: &'static tempfile::TempDir = Box::leak(Box::new(tempfile::tempdir().unwrap()));
    let o = run(&[
        "run",
        report,
        "--db",
        demo_db().to_str().unwrap(),
        "--out",
        dir.path().to_str().unwrap(),
        "--as-of",
        AS_OF,
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let out = PathBuf::from(String::from_utf8_lossy(&o.stdout).trim());
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
fn tag_drivers_outputs_agree_and_both_editions_read_as_the_analysis() {
    let dir = output_of("tag-drivers");
    assert_eq!(
        dir.file_name().unwrap(),
        "2023-12-15_2024-06-15",
        "same window rule as conversation-usage"
    );
    let summary = json(&dir.join("summary.json"));
    let manifest = json(&dir.join("manifest.json"));
    assert_eq!(manifest["report"], "tag-drivers");
    assert_eq!(manifest["parameters"]["min_pp"], 3.0);

    let (header, rows) = read_csv(&dir.join("tag_shares.csv"));
    assert_eq!(header, ["group", "tag", "conversations", "share"]);
    let (gh, groups) = read_csv(&dir.join("group_stats.csv"));
    assert_eq!(
        gh,
        [
            "group",
            "companies",
            "conversations",
            "avg_rating",
            "share_rated_le2",
            "median_resp",
            "reopen_rate"
        ]
    );
    assert_eq!(groups.len(), 2);
    for g in &groups {
        let conversations: f64 = g[col(&gh, "conversations")].parse().unwrap();
        let mine: Vec<&Vec<String>> = rows.iter().filter(|r| r[0] == g[0]).collect();
        assert!(!mine.is_empty(), "{}: topics", g[0]);
        for r in mine {
            assert!(!r[1].contains(':'), "machine tag {} kept", r[1]);
            let n: f64 = r[2].parse().unwrap();
            let share: f64 = r[3].parse().unwrap();
            assert!(close(share, n / conversations), "{r:?}");
        }
    }
    // The top table: the union of both groups' top ten, difference in pp.
    let top = summary["top"].as_array().unwrap();
    assert!((10..=20).contains(&top.len()), "{}", top.len());
    for t in top {
        let d = t["at_risk_share"].as_f64().unwrap() - t["expansion_share"].as_f64().unwrap();
        assert!(close(d * 100.0, t["difference_pp"].as_f64().unwrap()));
    }
    let finding_ids: Vec<&str> = summary["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["id"].as_str().unwrap())
        .collect();
    assert!(finding_ids.contains(&"risk_topics"), "{finding_ids:?}");
    assert!(finding_ids.contains(&"growth_topics"), "{finding_ids:?}");
    assert!(
        summary["recommendations"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["follows"] == "risk_topics"),
        "stability work follows the at-risk topics"
    );

    let rating = |g: usize| {
        format!(
            "{:.2}",
            summary["groups"][g]["avg_rating"].as_f64().unwrap()
        )
    };
    for (lang, title) in [
        // The title promises a comparison, not the causes of upgrades and downgrades.
        (
            "en",
            "What at-risk and expansion customers talk to support about",
        ),
        ("zh", "流失风险客户与扩展目标客户在咨询什么"),
    ] {
        let pdf = dir.join(format!("report.{lang}.pdf"));
        assert!(
            pdf_pages(&pdf) >= 5,
            "{lang}: a finished analysis, not a stub"
        );
        let t = pdf_text(&pdf);
        let flat = squash(&t);
        assert!(flat.contains(&squash(title)), "{lang}: title");
        assert!(
            flat.contains(&rating(0)) && flat.contains(&rating(1)),
            "{lang}: ratings"
        );
        // Topic tags print in the edition's language (the zh strings name every demo tag).
        let language = Templates::default().language("tag-drivers", lang).unwrap();
        for tag in top {
            let tag = tag["tag"].as_str().unwrap();
            let name = language.strings.topic(tag);
            assert!(
                flat.contains(&squash(&name)),
                "{lang}: topic {tag} as {name}"
            );
            if lang == "zh" {
                assert_ne!(name, tag, "zh names the demo topic {tag}");
                assert!(!flat.contains(&squash(tag)), "zh: {tag} left in English");
            }
        }
        // Every group measure and topic share is read against all paying customers,
        // and the topic table says which differences hold.
        for key in ["groups.all_paying", "topics.clear"] {
            assert!(
                flat.contains(&squash(&language.strings.get(key))),
                "{lang}: {key}"
            );
        }
        assert!(
            !flat.contains(&squash("显著")),
            "{lang}: no significance word"
        );
        assert!(
            squash(&common::pdf_page_text(&pdf, 1))
                .contains(&squash(&language.strings.get("brief.stake"))),
            "{lang}: what is at stake, on page 1"
        );
        for chart in ["top_tags", "tag_gap", "service"] {
            let svg =
                std::fs::read_to_string(dir.join(format!("charts/{chart}.{lang}.svg"))).unwrap();
            assert!(
                svg.starts_with("<svg") && svg.contains("<path"),
                "{chart}.{lang}"
            );
        }
    }
    assert!(pdf_text(&dir.join("report.zh.pdf")).contains("流失风险"));
}

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
            ("sankey_journey", "journey"),
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
        // The lift chart's bar labels are the dimension table's figures, printed as
        // the edition prints money and with one decimal for rates.
        let lift = std::fs::read_to_string(dir.join(format!("charts/lift.{lang}.svg"))).unwrap();
        for r in rows
            .iter()
            .filter(|r| r[0] == "training" || r[0] == "diversity_group")
        {
            let arr = language.format.money(r[5].parse().unwrap());
            let active = format!("{:.1}%", r[6].parse::<f64>().unwrap() * 100.0);
            assert!(lift.contains(&format!(">{arr}<")), "{lang}: lift {arr}");
            assert!(
                lift.contains(&format!(">{active}<")),
                "{lang}: lift {active}"
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
        let note = strings
            .get("notes.cross")
            .replace(
                "{users}",
                &language.format.count(s["users"].as_f64().unwrap()),
            )
            .replace(
                "{arr}",
                &language.format.money(s["total_arr"].as_f64().unwrap()),
            )
            .replace(
                "{out}",
                &language
                    .format
                    .count(s["users_without_portfolio"].as_f64().unwrap()),
            )
            .replace(
                "{out_arr}",
                &language
                    .format
                    .money(s["arr_without_portfolio"].as_f64().unwrap()),
            );
        assert!(flat.contains(&squash(&note)), "{lang}: {note}");
        let baseline = squash(&strings.get("columns.all_users"));
        assert!(
            flat.matches(&baseline).count() >= 9,
            "{lang}: baseline rows and columns"
        );
        let page1 = squash(&common::pdf_page_text(&pdf, 1));
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

[[job]]
name = "segments-monthly"
report = "customer-segmentation"
cron = "0 7 1 * *"
owners = ["cx@example.com"]
[job.recipients]
zh = ["gm-china@example.com"]
"#,
            db = demo_db().display()
        ),
    )
    .unwrap();
    let o = run(&["check", "--config", config.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    for job in ["tags-weekly", "segments-monthly"] {
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
    assert_eq!(emails.len(), 2);
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
