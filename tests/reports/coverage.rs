//! Comparisons that know their coverage (issue 27), read back from page 1 of both
//! editions: a comparison the data covers only in part never leads and states its
//! limit; a window starting before the data is labelled partial.

use std::path::{Path, PathBuf};

use crate::common::{demo_db, json, pdf_page_text, run, squash, text};

/// Runs `report` on `db` with `extra` into `dir`; returns its output folder.
fn run_on(db: &Path, dir: &Path, report: &str, extra: &[&str]) -> PathBuf {
    crate::run_report(db, &dir.join("out"), report, extra)
}

/// Page 1 of an edition, squashed (line breaks and spaces as one).
fn page1(report: &Path, lang: &str) -> String {
    squash(&pdf_page_text(
        &report.join(format!("report.{lang}.pdf")),
        1,
    ))
}

/// The shipped leadership job's `compare = "shift:1m"` on the demo: the windows share
/// five of six months and the month that left lies before the data, so no change is
/// claimed (no volume "rise"), page 1 says why, and it does not lead.
#[test]
fn the_shipped_shift_job_claims_no_change_from_a_window_before_the_data() {
    for report in ["conversation-usage", "tag-drivers"] {
        let dir = tempfile::tempdir().unwrap();
        let out = run_on(demo_db(), dir.path(), report, &["--compare", "shift:1m"]);
        let summary = json(&out.join("summary.json"));
        let c = &summary["comparison"];
        assert!(c["changes"].as_array().unwrap().is_empty(), "{report}: {c}");
        assert!(
            c["empty_reason"]
                .as_str()
                .unwrap()
                .starts_with("the part that left 2023-11-15 – 2023-12-14 lies outside the data"),
            "{report}: {c}"
        );
        assert_ne!(summary["findings"][0]["id"], "period_change", "{report}");
        let en = page1(&out, "en");
        assert!(!en.contains("rosefrom"), "{report}: {en}");
        assert!(
            en.contains(&squash(
                "No change since 2023-11-15 – 2024-05-15 is claimed"
            )),
            "{report}: {en}"
        );
        assert!(
            en.contains(&squash("the data starts 2024-01-08")),
            "{report}: {en}"
        );
        let zh = page1(&out, "zh");
        assert!(
            zh.contains(&squash("不与 2023-11-15 – 2024-05-15 作变化判断")),
            "{report}: {zh}"
        );
        assert!(
            zh.contains(&squash("数据从 2024-01-08 才开始")),
            "{report}: {zh}"
        );
        assert!(!zh.contains("上升至"), "{report}: {zh}");
    }
}

/// `--window rolling:3m` (compared with the three months before, half of them
/// before the data): volumes are not compared, the comparison is labelled partial
/// with its covered dates and does not lead page 1.
#[test]
fn a_partial_previous_window_compares_no_volumes_and_does_not_lead() {
    for report in ["conversation-usage", "tag-drivers"] {
        let dir = tempfile::tempdir().unwrap();
        let out = run_on(demo_db(), dir.path(), report, &["--window", "rolling:3m"]);
        let summary = json(&out.join("summary.json"));
        let c = &summary["comparison"];
        assert_eq!(c["coverage"]["previous_partial"], true, "{report}: {c}");
        assert_eq!(c["coverage"]["volumes"], false, "{report}");
        for x in c["changes"].as_array().unwrap() {
            if x["unit"] == "count" {
                assert_eq!(x["direction"], "not_comparable", "{report}: {x}");
            }
        }
        assert_ne!(summary["findings"][0]["id"], "period_change", "{report}");
        let en = page1(&out, "en");
        assert!(!en.contains("conversationsrosefrom"), "{report}: {en}");
        assert!(!en.contains("Conversationsrosefrom"), "{report}: {en}");
        assert!(
            en.contains(&squash(
                "Partial comparison: the data covers only 2024-01-08 – 2024-03-14"
            )),
            "{report}: {en}"
        );
        assert!(
            en.contains(&squash("volumes are not compared")),
            "{report}: {en}"
        );
        let zh = page1(&out, "zh");
        assert!(
            zh.contains(&squash(
                "部分覆盖的比较：数据只覆盖较早一侧的 2024-01-08 – 2024-03-14"
            )),
            "{report}: {zh}"
        );
        assert!(zh.contains("不比较会话量"), "{report}: {zh}");
    }
}

/// A database whose history starts mid-window (`demo-data --history-from`): the
/// window is labelled partial with the dates the data covers, in both languages,
/// and the trend shows the window's months before the data as no data.
#[test]
fn a_window_starting_before_the_history_is_labelled_partial() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("history.sqlite");
    let o = run(&[
        "demo-data",
        "--history-from",
        "2024-03-01",
        "--out",
        db.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let out = run_on(&db, dir.path(), "conversation-usage", &[]);
    let summary = json(&out.join("summary.json"));
    let labels: Vec<&str> = summary["trend"]["months"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["month"].as_str().unwrap())
        .collect();
    assert_eq!(labels.first(), Some(&"2023-12"), "{labels:?}");
    let pdf = |lang: &str| {
        squash(&crate::common::pdf_text(
            &out.join(format!("report.{lang}.pdf")),
        ))
    };
    let en = pdf("en");
    assert!(
        en.contains(&squash(
            "2023-12-15 – 2024-06-15 (partial: the data covers 2024-03-01 – 2024-06-15)"
        )),
        "{en}"
    );
    assert!(
        en.contains(&squash("Month by month, 2023-12 – 2024-06")),
        "en trend title"
    );
    let zh = pdf("zh");
    assert!(
        zh.contains(&squash(
            "2023-12-15 – 2024-06-15 (部分覆盖：数据覆盖 2024-03-01 – 2024-06-15)"
        )),
        "{zh}"
    );
    assert!(
        zh.contains(&squash("逐月走势（2023-12 – 2024-06）")),
        "zh trend title"
    );
}

/// A demo database whose history starts at 2024-03-01 (in `dir`).
fn history_from_march(dir: &Path) -> PathBuf {
    let db = dir.join("history.sqlite");
    let o = run(&[
        "demo-data",
        "--history-from",
        "2024-03-01",
        "--out",
        db.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    db
}

/// Page 1's period line says how much of the window the data covers, with the
/// covered dates and length, on the demo (conversations from 2024-01-08) and on a
/// history from 2024-03-01, in both languages, for the reports that cut a window;
/// customer-segmentation (a snapshot) prints its date alone.
#[test]
fn page_one_states_the_part_of_the_window_the_data_covers() {
    let dir = tempfile::tempdir().unwrap();
    let march = history_from_march(dir.path());
    let cases = [
        (demo_db(), "2024-01-08", "5.3"),
        (march.as_path(), "2024-03-01", "3.5"),
    ];
    for (db, first, months) in cases {
        for report in ["conversation-usage", "tag-drivers"] {
            let out = run_on(db, &dir.path().join(first), report, &[]);
            let en = page1(&out, "en");
            let want = format!("2023-12-15 – 2024-06-15 (data from {first}: {months} of 6 months)");
            assert!(en.contains(&squash(&want)), "{report} {first}: {en}");
            let zh = page1(&out, "zh");
            let want = format!(
                "2023-12-15 – 2024-06-15（数据从 {first} 开始：仅覆盖 6 个月中的 {months} 个月）"
            );
            assert!(zh.contains(&squash(&want)), "{report} {first}: {zh}");
        }
    }
    // A window the data covers whole says nothing more.
    let out = run_on(
        demo_db(),
        &dir.path().join("3m"),
        "tag-drivers",
        &["--window", "rolling:3m"],
    );
    let en = page1(&out, "en");
    assert!(en.contains(&squash("2024-03-15 – 2024-06-15")), "{en}");
    assert!(!en.contains("(data"), "{en}");
    let out = run_on(
        demo_db(),
        &dir.path().join("cs"),
        "customer-segmentation",
        &[],
    );
    for lang in ["en", "zh"] {
        let p = page1(&out, lang);
        assert!(!p.contains("(data") && !p.contains("数据从"), "{lang}: {p}");
    }
}

/// The email of a job on the March history says the same after its period, in both
/// languages (its subject keeps the period alone).
#[test]
fn the_email_states_the_part_of_the_window_the_data_covers() {
    let dir = tempfile::tempdir().unwrap();
    let db = history_from_march(dir.path());
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
name = "usage-monthly"
report = "conversation-usage"
cron = "0 7 1 * *"
owners = ["cx@example.com"]
[job.recipients]
en = ["vp@example.com"]
zh = ["gm-china@example.com"]
"#,
            db = db.display()
        ),
    )
    .unwrap();
    let o = run(&[
        "run",
        "--job",
        "usage-monthly",
        "--config",
        config.to_str().unwrap(),
        "--send",
        "--as-of",
        crate::AS_OF,
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let emails: Vec<crate::Email> = std::fs::read_dir(dir.path().join("out/outbox"))
        .unwrap()
        .map(|e| crate::Email::read(&e.unwrap().path()))
        .collect();
    let to = |who: &str| emails.iter().find(|e| e.to.contains(who)).unwrap();
    let en = to("vp@example.com");
    assert!(
        squash(&en.text).contains(&squash(
            "report for 2023-12-15 – 2024-06-15 (data from 2024-03-01: 3.5 of 6 months) is ready"
        )),
        "{}",
        en.text
    );
    assert!(!en.subject.contains("(data"), "{}", en.subject);
    let zh = to("gm-china@example.com");
    assert!(
        squash(&zh.text).contains(&squash(
            "2023-12-15 – 2024-06-15（数据从 2024-03-01 开始：仅覆盖 6 个月中的 3.5 个月） 的"
        )),
        "{}",
        zh.text
    );
}
