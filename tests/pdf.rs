//! The PDF editions read back with poppler (pdfinfo for the structure, pdftotext for the
//! text layer):
//! page count, text layer per language, numbers that match
//! summary.json, database text printed literally, byte-identical reruns.

mod common;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use common::{pdf_page_text, pdf_text, run, text};

use serde_json::Value;

const AS_OF: &str = "2024-07-01T08:00:00Z";
const EVIL: &str = "#read(\"/etc/passwd\") $x$ ] <b> *bold*";

struct Fixture {
    _dir: tempfile::TempDir,
    db: PathBuf,
    out: PathBuf,
}

/// A demo database where two paying companies carry a hostile name, run once.
fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("demo.sqlite");
        let o = run(&["demo-data", "--out", db.to_str().unwrap()]);
        assert!(o.status.success(), "{}", text(&o));
        let conn = rusqlite::Connection::open(&db).unwrap();
        conn.execute(
            "UPDATE intercom__company_enhanced SET company_name = ?1 WHERE company_id IN ('co_000100', 'co_000101')",
            [EVIL],
        )
        .unwrap();
        drop(conn);
        let out = dir.path().join("out");
        let o = run(&["run", "--db", db.to_str().unwrap(), "--out", out.to_str().unwrap(), "--as-of", AS_OF]);
        assert!(o.status.success(), "{}", text(&o));
        Fixture { _dir: dir, db, out }
    })
}

fn report_dir(out: &Path) -> PathBuf {
    out.join("conversation-usage/2023-12-15_2024-06-15")
}

fn pages(path: &Path) -> usize {
    common::pdf_pages(path)
}
fn has_cjk(s: &str) -> bool {
    s.chars().any(|c| ('\u{4e00}'..='\u{9fff}').contains(&c))
}

/// Text without line breaks or double spaces, so sentences wrapped in the PDF match.
fn flat(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[test]
fn both_editions_have_pages_and_their_language() {
    let dir = report_dir(&fixture().out);
    let (en, zh) = (dir.join("report.en.pdf"), dir.join("report.zh.pdf"));
    assert!(pages(&en) >= 8, "{} pages", pages(&en));
    // The same sections in both; Chinese sets denser, so the appendix may end a page
    // earlier (today en 14, zh 13).
    assert!(
        pages(&en).abs_diff(pages(&zh)) <= 1,
        "{} vs {} pages",
        pages(&en),
        pages(&zh)
    );
    let en_text = pdf_text(&en);
    let zh_text = pdf_text(&zh);
    assert!(!has_cjk(&en_text), "the English edition has no Chinese");
    // The brief first, the analysis after the findings, the workbook in the appendix.
    let order = [
        "Recommendations",
        "Plan by segment",
        "Key findings",
        "Why the numbers look like this",
        "Visual summary",
        "Segment profiles",
        "Appendix: scope and method",
        "Appendix: key slices",
        "Appendix: segment × seat × ARR panel",
        "Appendix: limitations and data improvements",
        "Appendix: data quality",
        "Appendix: reproducibility",
    ];
    // Numbered headings ("3. Key slices"), in this order.
    let at: Vec<usize> = order
        .iter()
        .map(|h| {
            en_text
                .find(&format!(". {h}"))
                .unwrap_or_else(|| panic!("en: no heading {h}"))
        })
        .collect();
    assert!(
        at.windows(2).all(|w| w[0] < w[1]),
        "en: section order {at:?}"
    );
    for heading in [
        "主要发现",
        "行动建议",
        "原因分析",
        "附录：关键切片",
        "分客户阶段计划",
        "客户阶段画像",
        "附录：局限与数据改进",
        "附录：范围与方法",
        "附录：数据质量",
        "附录：可复现信息",
    ] {
        assert!(zh_text.contains(heading), "zh: {heading}");
    }
    // Chart titles and category labels live inside the chart SVGs: they must be text too.
    for label in [
        "机器人首答占比与周留存率（按细分组合）",
        "流失预警",
        "新签约",
    ] {
        assert!(zh_text.contains(label), "zh chart label {label}");
    }
    for label in [
        "Bot-first share vs weekly retention, per cell",
        "Weekly retention by segment and ARR bucket",
        "Churn watch",
    ] {
        assert!(en_text.contains(label), "en chart label {label}");
    }
    assert!(
        !en_text.contains("{{") && !en_text.contains("{%") && !zh_text.contains("{{"),
        "no raw template syntax"
    );
    // Every chart of the PDF is also written as SVG, per language.
    let charts: Vec<_> = std::fs::read_dir(dir.join("charts")).unwrap().collect();
    assert_eq!(
        charts.len(),
        8,
        "four charts (those whose differences hold, and the trend), in two languages"
    );
}

#[test]
fn narrative_numbers_equal_summary_json() {
    let dir = report_dir(&fixture().out);
    let summary: Value =
        serde_json::from_slice(&std::fs::read(dir.join("summary.json")).unwrap()).unwrap();
    let findings = summary["findings"].as_array().unwrap();
    assert!(findings.len() >= 3, "{findings:?}");
    let en = flat(&pdf_text(&dir.join("report.en.pdf")));
    let zh = flat(&pdf_text(&dir.join("report.zh.pdf")));
    let pct = |v: f64| format!("{:.1}%", v * 100.0);
    let find = |id: &str| {
        findings
            .iter()
            .find(|f| f["id"] == id)
            .unwrap_or_else(|| panic!("finding {id} in {findings:?}"))
    };
    let n = |f: &Value, key: &str| f["numbers"][key].as_f64().unwrap();
    // Conversion with its count (k of n), in both editions.
    let conv = find("conversion");
    let v = pct(n(conv, "overall"));
    let thousands = |v: f64| {
        let v = v.round() as u64;
        if v >= 1000 {
            format!("{},{:03}", v / 1000, v % 1000)
        } else {
            v.to_string()
        }
    };
    let k_of_n = format!(
        "({} of {} companies)",
        thousands(n(conv, "overall_k")),
        thousands(n(conv, "overall_n"))
    );
    assert!(
        en.contains(&format!("{v} overall {k_of_n}")),
        "{v} {k_of_n}"
    );
    assert!(zh.contains(&v), "{v}");
    // The lead finding's gap is the difference of its printed rates.
    let cw = find("churn_watch_high_value");
    let (a, b) = (pct(n(cw, "peer_weekly")), pct(n(cw, "weekly")));
    let printed = |s: &str| s.trim_end_matches('%').parse::<f64>().unwrap();
    let gap = format!("{:.1} pp", printed(&a) - printed(&b));
    assert!(en.contains(&format!("{b} vs {a}")), "{b} vs {a}");
    assert!(en.contains(&format!("retain {gap} fewer")), "{gap}");
    // Page 1 leads with it, in both languages, and carries the actions.
    let first_page = |lang: &str| flat(&pdf_page_text(&dir.join(format!("report.{lang}.pdf")), 1));
    let (p1_en, p1_zh) = (first_page("en"), first_page("zh"));
    assert!(
        p1_en.contains("Top actions") && p1_en.contains(&b),
        "{p1_en}"
    );
    assert!(p1_zh.contains("优先行动") && p1_zh.contains(&b), "{p1_zh}");
    // What is at stake: the companies the report covers, on page 1.
    let companies = summary["panels"]["overall"]["companies_total"]
        .as_u64()
        .unwrap();
    let companies = format!("{},{:03}", companies / 1000, companies % 1000);
    assert!(
        p1_en.contains("What is at stake")
            && p1_en.contains(&format!("covers {companies} paying companies")),
        "{p1_en}"
    );
    let p1_zh_tight: String = p1_zh.split_whitespace().collect();
    assert!(
        p1_zh_tight.contains("涉及的客户与收入")
            && p1_zh_tight.contains(&format!("覆盖{companies}家付费公司")),
        "{p1_zh}"
    );
    // Counts of the scope table come from the same run.
    let kept = summary["counts"]["conversations_kept"].as_u64().unwrap();
    let kept = format!("{},{:03}", kept / 1000, kept % 1000);
    assert!(en.contains(&kept) && zh.contains(&kept), "{kept}");
    // Every recommendation follows from a finding of this run.
    let ids: Vec<&str> = findings.iter().map(|f| f["id"].as_str().unwrap()).collect();
    for r in summary["recommendations"].as_array().unwrap() {
        assert!(ids.contains(&r["follows"].as_str().unwrap()), "{r}");
    }
}

#[test]
fn database_text_prints_literally() {
    let dir = report_dir(&fixture().out);
    for lang in ["en", "zh"] {
        let t = flat(&pdf_text(&dir.join(format!("report.{lang}.pdf"))));
        assert!(
            t.contains(EVIL),
            "{lang}: the hostile company name is printed as written"
        );
        assert!(
            !t.contains("root:x:0:0"),
            "{lang}: nothing outside the template was read"
        );
    }
}

#[test]
fn the_same_run_twice_gives_identical_pdfs() {
    let f = fixture();
    let dir = tempfile::tempdir().unwrap();
    let o = run(&[
        "run",
        "--db",
        f.db.to_str().unwrap(),
        "--out",
        dir.path().to_str().unwrap(),
        "--as-of",
        AS_OF,
    ]);
    assert!(o.status.success(), "{}", text(&o));
    for lang in ["en", "zh"] {
        let file = format!("report.{lang}.pdf");
        let a = std::fs::read(report_dir(&f.out).join(&file)).unwrap();
        let b = std::fs::read(report_dir(dir.path()).join(&file)).unwrap();
        assert!(a == b, "{file} differs between two runs of the same data");
    }
}

#[test]
fn languages_are_chosen_and_checked() {
    let f = fixture();
    let dir = tempfile::tempdir().unwrap();
    let o = run(&[
        "run",
        "--db",
        f.db.to_str().unwrap(),
        "--out",
        dir.path().to_str().unwrap(),
        "--lang",
        "zh",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let d = report_dir(dir.path());
    assert!(d.join("report.zh.pdf").exists() && !d.join("report.en.pdf").exists());
    let o = run(&[
        "run",
        "--db",
        f.db.to_str().unwrap(),
        "--out",
        dir.path().to_str().unwrap(),
        "--lang",
        "en,fr",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("`fr`") && text(&o).contains("en, zh"),
        "{}",
        text(&o)
    );
}

#[test]
fn templates_override_from_a_directory_and_stay_sandboxed() {
    let f = fixture();
    let tpl = tempfile::tempdir().unwrap();
    let en = tpl.path().join("conversation-usage/en");
    std::fs::create_dir_all(&en).unwrap();
    let original = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/templates/conversation-usage/en/strings.toml"
    ))
    .unwrap();
    std::fs::write(
        en.join("strings.toml"),
        original.replace("Key findings", "What we found"),
    )
    .unwrap();
    let out = tempfile::tempdir().unwrap();
    let o = run(&[
        "run",
        "--db",
        f.db.to_str().unwrap(),
        "--out",
        out.path().to_str().unwrap(),
        "--lang",
        "en",
        "--templates",
        tpl.path().to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let t = pdf_text(&report_dir(out.path()).join("report.en.pdf"));
    assert!(t.contains("What we found") && !t.contains("Key findings"));

    // A layout that tries to read a file it was not given fails, naming file and line.
    let layout = tpl.path().join("conversation-usage/report.typ");
    std::fs::write(&layout, "= Title\n#read(\"/etc/passwd\")\n").unwrap();
    let o = run(&[
        "run",
        "--db",
        f.db.to_str().unwrap(),
        "--out",
        out.path().to_str().unwrap(),
        "--lang",
        "en",
        "--templates",
        tpl.path().to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let msg = text(&o);
    assert!(msg.contains(&format!("{}:2:", layout.display())), "{msg}");
    assert!(!msg.contains("root:x:0:0"), "{msg}");
    assert!(!msg.contains("panicked"), "{msg}");
}
