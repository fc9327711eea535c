//! The two depths of one edition on the demo: every report's brief (page 1, the
//! recommendations and the findings they follow from) is at most five pages in both
//! languages, with and without a comparison; the full report holds every row the
//! CSVs hold (each row's count printed in a table), the brief none of the tables.

use crate::common::{demo_db, pdf_pages, pdf_text, read_csv};

/// A brief is what a leader reads in minutes.
const BRIEF_PAGES: usize = 5;

/// The count column of each CSV that names its rows' sizes.
const COUNTS: &[&str] = &["conv_cnt", "users", "conversations"];

fn both_depths(report: &str, extra: &[&str]) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let mut args = vec!["--depth", "brief,full"];
    args.extend_from_slice(extra);
    let out = super::run_report(demo_db(), dir.path(), report, &args);
    (dir, out)
}

#[test]
fn every_brief_is_at_most_five_pages_in_both_languages() {
    for (report, extra) in [
        ("conversation-usage", &[][..]),
        ("conversation-usage", &["--compare", "shift:1m"][..]),
        ("tag-drivers", &[][..]),
        ("tag-drivers", &["--compare", "shift:1m"][..]),
        ("customer-segmentation", &[][..]),
    ] {
        let (_dir, out) = both_depths(report, extra);
        for lang in ["en", "zh"] {
            let brief = out.join(format!("report.{lang}.brief.pdf"));
            let full = out.join(format!("report.{lang}.pdf"));
            let (b, f) = (pdf_pages(&brief), pdf_pages(&full));
            assert!(
                b <= BRIEF_PAGES,
                "{report} {extra:?} {lang}: brief of {b} pages"
            );
            assert!(
                b < f,
                "{report} {extra:?} {lang}: brief {b}, full {f} pages"
            );
            // Both say which depth they are, and the brief holds every finding once.
            let (bt, ft) = (pdf_text(&brief), pdf_text(&full));
            let (brief_word, full_word) = if lang == "en" {
                ("Brief", "Full report")
            } else {
                ("简报", "完整报告")
            };
            assert!(bt.contains(brief_word), "{report} {lang}");
            assert!(ft.contains(full_word), "{report} {lang}");
            let summary = crate::common::json(&out.join("summary.json"));
            let n = summary["findings"].as_array().unwrap().len();
            for i in 1..=n {
                let label = format!("F{i} ");
                assert!(
                    bt.contains(&label),
                    "{report} {lang}: F{i} is not in the brief"
                );
            }
        }
        let manifest = crate::common::json(&out.join("manifest.json"));
        let depths: Vec<&str> = manifest["editions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["depth"].as_str().unwrap())
            .collect();
        assert_eq!(depths, ["brief", "full", "brief", "full"], "{report}");
    }
}

#[test]
fn the_full_report_holds_every_row_the_csvs_hold() {
    for report in ["conversation-usage", "tag-drivers", "customer-segmentation"] {
        let (_dir, out) = both_depths(report, &[]);
        let full = pdf_text(&out.join("report.en.pdf"));
        let brief = pdf_text(&out.join("report.en.brief.pdf"));
        let mut checked = 0;
        for entry in std::fs::read_dir(&out).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_none_or(|e| e != "csv") {
                continue;
            }
            let (header, rows) = read_csv(&path);
            let Some(col) = header.iter().position(|h| COUNTS.contains(&h.as_str())) else {
                continue;
            };
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let counts: Vec<String> = rows.iter().map(|r| count(&r[col])).collect();
            for c in &counts {
                assert!(
                    full.contains(c.as_str()),
                    "{report}: {name}'s {c} not in the full report"
                );
            }
            // The brief prints no table whole; a short one (activity_by_status.csv) its
            // findings may state row by row.
            let in_brief = counts.iter().filter(|c| brief.contains(c.as_str())).count();
            assert!(
                counts.len() < 10 || in_brief < counts.len(),
                "{report}: {name} whole in the brief"
            );
            checked += 1;
        }
        assert!(checked > 0, "{report}: no CSV with counts");
    }
}

/// A count as the English edition prints it (`1,639`).
fn count(v: &str) -> String {
    let n: f64 = v.parse().unwrap();
    let digits = format!("{}", n.round() as i64);
    let mut out = String::new();
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

/// The findings each chart carries, as the reports declare them (`ChartSpec::carries`).
const CARRIES: &[(&str, &[&str])] = &[
    ("scatter_bot_retention", &["bot_retention"]),
    ("scatter_bot_conversion", &["bot_conversion"]),
    ("heatmap_retention_arr", &["churn_watch_high_value"]),
    ("segment_response", &["service_model"]),
    ("segment_conversion", &["conversion"]),
    ("heatmap_conversion_seat", &["conversion"]),
    ("heatmap_conversion_arr", &["conversion"]),
    ("tag_gap", &["risk_topics", "growth_topics"]),
    ("sankey_portfolio", &["arr_at_risk"]),
    ("sankey_engagement", &["support_by_engagement"]),
    ("arr_by_segment", &["top_arr_segment"]),
    ("users_by_segment", &["largest_segment"]),
    ("lift", &["training_lift", "diversity_lift"]),
];

/// Each brief carries one chart, right after page 1: the chart of a page-1 headline
/// (on the demo: the high-value churn-watch cells, the at-risk topics, where the inactive
/// users' revenue is), with its takeaway and a line naming the headline by its
/// number; the chart is one the full report draws too (its support holds).
#[test]
fn each_brief_draws_the_chart_of_a_page_one_headline() {
    for (report, expected) in [
        ("conversation-usage", "heatmap_retention_arr"),
        ("tag-drivers", "tag_gap"),
        ("customer-segmentation", "sankey_portfolio"),
    ] {
        let (_dir, out) = both_depths(report, &[]);
        let summary = crate::common::json(&out.join("summary.json"));
        let findings = summary["findings"].as_array().unwrap();
        // Page 1's headlines: the findings that may lead, in order, at most three.
        let headlines: Vec<(usize, &str)> = findings
            .iter()
            .enumerate()
            .filter(|(_, f)| f["lead"] == true)
            .map(|(i, f)| (i + 1, f["id"].as_str().unwrap()))
            .take(3)
            .collect();
        let carried = CARRIES
            .iter()
            .find(|(id, _)| *id == expected)
            .map(|(_, f)| *f)
            .unwrap();
        let (number, _) = *headlines
            .iter()
            .find(|(_, id)| carried.contains(id))
            .unwrap_or_else(|| panic!("{report}: {expected} carries no headline {headlines:?}"));
        // No earlier headline has a chart the full report draws (its charts/ files).
        for (n, id) in headlines.iter().filter(|(n, _)| *n < number) {
            for (chart, _) in CARRIES.iter().filter(|(_, f)| f.contains(id)) {
                assert!(
                    !out.join(format!("charts/{chart}.en.svg")).exists(),
                    "{report}: F{n} ({id}) leads and its chart {chart} is drawn"
                );
            }
        }
        for lang in ["en", "zh"] {
            let brief = out.join(format!("report.{lang}.brief.pdf"));
            let text = crate::common::squash(&pdf_text(&brief));
            let language = cxreport::render::templates::Templates::default()
                .language(report, lang)
                .unwrap();
            let s = &language.strings;
            assert!(
                text.contains(&crate::common::squash(&s.get("depth.chart_title"))),
                "{report} {lang}: no chart page"
            );
            let line = language.fill(
                "depth.chart_of",
                &serde_json::json!({ "finding": format!("F{number}") }),
            );
            assert!(
                text.contains(&crate::common::squash(&line)),
                "{report} {lang}: `{line}` not in the brief"
            );
            // The chart page is page 2, right after page 1.
            let page2 = crate::common::squash(&crate::common::pdf_page_text(&brief, 2));
            assert!(
                page2.contains(&crate::common::squash(&line)),
                "{report} {lang}: the chart is not on page 2"
            );
            // The brief's chart is the one the full report draws (same file).
            let svg = out.join(format!("charts/{expected}.{lang}.svg"));
            assert!(svg.exists(), "{report} {lang}: {}", svg.display());
        }
    }
}
