//! Regional editions (issue 32): a scoped run is the run of a database that holds
//! only the scope's companies, apart from the data-quality lines about the rows
//! outside the scope; a scope value no company holds is refused with the values
//! found; the demo's regions leave every unscoped number as it was.

mod common;

use std::path::{Path, PathBuf};

use common::{demo_db, json, pdf_text, run, run_report, text, AS_OF};

/// The demo with only the China region's companies (`region` = `CN`): the other
/// companies, the conversations whose first company is one of theirs (a name a
/// China company carries too stays), their metrics rows and their usage events
/// deleted.
fn china_only(dir: &Path) -> PathBuf {
    let db = dir.join("cn-only.sqlite");
    std::fs::copy(demo_db(), &db).unwrap();
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute_batch(
            "CREATE TEMP TABLE inside AS SELECT company_id, lower(trim(company_name)) AS n
                 FROM intercom__company_enhanced WHERE upper(region) = 'CN';
             CREATE TEMP TABLE outside_names AS SELECT DISTINCT lower(trim(company_name)) AS n
                 FROM intercom__company_enhanced
                 WHERE upper(region) <> 'CN' AND lower(trim(company_name)) NOT IN (SELECT n FROM inside);
             DELETE FROM intercom__conversation_enhanced WHERE lower(trim(
                 CASE WHEN instr(all_contact_company_names, ',') > 0
                      THEN substr(all_contact_company_names, 1, instr(all_contact_company_names, ',') - 1)
                      ELSE all_contact_company_names END)) IN (SELECT n FROM outside_names);
             DELETE FROM intercom__conversation_metrics WHERE conversation_id NOT IN
                 (SELECT conversation_id FROM intercom__conversation_enhanced);
             DELETE FROM usage_events WHERE company_id NOT IN (SELECT company_id FROM inside);
             DELETE FROM intercom__company_enhanced WHERE company_id NOT IN (SELECT company_id FROM inside);
             DELETE FROM intercom__company_metrics WHERE company_id NOT IN (SELECT company_id FROM inside);",
        )
        .unwrap();
    db
}

/// Runs `report` on `db` in English with `extra` arguments into `out`; the folder
/// written (a scoped run's is the scope's own).
fn run_into(report: &str, db: &Path, out: &Path, extra: &[&str]) -> PathBuf {
    let mut args = vec!["--lang", "en"];
    args.extend_from_slice(extra);
    run_report(db, out, report, &args)
}

/// Every file of `dir` with this extension, by name.
fn files(dir: &Path, ext: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().into_string().unwrap();
            name.ends_with(ext).then_some(name)
        })
        .collect();
    names.sort();
    names
}

/// `summary.json` without the counts of the rows outside the scope (`null` in a
/// run without one) and the trend months' `covered` times: the part of a month the
/// data covers is the warehouse's first and last conversation, the same span for
/// every edition (a region whose first conversation came hours later is not data
/// that starts later).
fn summary_without_outside(dir: &Path) -> serde_json::Value {
    fn strip(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::Object(m) => {
                m.retain(|k, _| !k.contains("outside_scope") && k != "covered");
                m.values_mut().for_each(strip);
            }
            serde_json::Value::Array(a) => a.iter_mut().for_each(strip),
            _ => {}
        }
    }
    let mut v = json(&dir.join("summary.json"));
    strip(&mut v);
    v
}

/// A line [`pdf_without_scope_lines`] leaves out.
fn dropped(l: &str) -> bool {
    const CONTAINS: &[&str] = &[
        "outside this edition",
        "other editions",
        "not counted here",
        "Conversations of companies",
        // The cover's line naming the edition, and its wrapped end.
        "Edition ",
        "edition)",
        // A long database path wraps onto a line of its own.
        ".sqlite",
    ];
    const STARTS: &[&str] = &[
        "Database",
        "SHA-256",
        "Rows read",
        "Parameters · mapping",
        "Window anchor",
    ];
    l.is_empty()
        || (l.starts_with("Page ") && l.contains(" of "))
        || l.ends_with("cxreport")
        || CONTAINS.iter().any(|p| l.contains(p))
        || STARTS.iter().any(|p| l.starts_with(p))
}

/// The edition's text, line by line without the page breaks (page footers and
/// running heads, which move with the lines above them), the lines about rows
/// outside the scope, the cover's line naming the edition, and what differs between two databases by nature: path,
/// digest, rows read (the scoped run reads every region's rows), the mapping line
/// (which states the scope), and the window's anchor: the latest conversation of
/// the warehouse, so that every region's edition covers the same window (the
/// windows themselves are compared in `summary.json`).
fn pdf_without_scope_lines(dir: &Path) -> Vec<String> {
    let o = std::process::Command::new("pdftotext")
        .args(["-layout", "-enc", "UTF-8"])
        .arg(dir.join("report.en.pdf"))
        .arg("-")
        .output()
        .expect("pdftotext runs (poppler-utils; script/test installs it)");
    String::from_utf8(o.stdout)
        .unwrap()
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|l| !dropped(l))
        .collect()
}

#[test]
fn a_scoped_run_is_the_run_of_a_database_of_the_scopes_companies_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let copy = china_only(tmp.path());
    for report in ["conversation-usage", "tag-drivers"] {
        let scoped = run_into(
            report,
            demo_db(),
            &tmp.path().join("scoped"),
            &["--scope", "region=cn"],
        );
        let alone = run_into(report, &copy, &tmp.path().join("alone"), &[]);
        let csvs = files(&alone, ".csv");
        assert!(!csvs.is_empty(), "{report}");
        assert_eq!(files(&scoped, ".csv"), csvs, "{report}");
        for csv in &csvs {
            assert_eq!(
                std::fs::read_to_string(scoped.join(csv)).unwrap(),
                std::fs::read_to_string(alone.join(csv)).unwrap(),
                "{report}: {csv}"
            );
        }
        assert_eq!(
            summary_without_outside(&scoped),
            summary_without_outside(&alone),
            "{report}: summary.json"
        );
        // As sorted lines: the scoped cover's edition line moves page breaks, and with
        // them where a long table repeats its header.
        let (mut s, mut a) = (
            pdf_without_scope_lines(&scoped),
            pdf_without_scope_lines(&alone),
        );
        s.sort();
        a.sort();
        let differ: Vec<(&String, &String)> = s.iter().zip(&a).filter(|(x, y)| x != y).collect();
        assert!(
            differ.is_empty() && s.len() == a.len(),
            "{report}: the PDFs differ: {differ:#?}"
        );
        // The other regions' rows are counted as outside the edition, not unmatched.
        let pdf = pdf_text(&scoped.join("report.en.pdf"));
        assert!(pdf.contains("outside this edition"), "{report}: {pdf}");
    }
}

#[test]
fn a_scope_value_no_company_holds_is_refused_with_the_values_found() {
    let tmp = tempfile::tempdir().unwrap();
    let o = run(&[
        "run",
        "tag-drivers",
        "--db",
        demo_db().to_str().unwrap(),
        "--out",
        tmp.path().to_str().unwrap(),
        "--as-of",
        AS_OF,
        "--scope",
        "region=mars",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let e = text(&o);
    assert!(e.contains("`mars` matches no company"), "{e}");
    for region in ["`amer`", "`emea`", "`apac`", "`cn`", "`latam`"] {
        assert!(e.contains(region), "{e}");
    }
    // The same by tag, and a report that reads no companies takes no scope.
    let o = run(&[
        "run",
        "customer-segmentation",
        "--db",
        demo_db().to_str().unwrap(),
        "--out",
        tmp.path().to_str().unwrap(),
        "--as-of",
        AS_OF,
        "--scope-tag",
        "region:=cn",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("takes no scope"), "{}", text(&o));
}

#[test]
fn a_tag_scope_and_a_column_scope_of_one_region_agree() {
    let tmp = tempfile::tempdir().unwrap();
    let by_column = run_into(
        "tag-drivers",
        demo_db(),
        &tmp.path().join("column"),
        &["--scope", "region=CN"],
    );
    let by_tag = run_into(
        "tag-drivers",
        demo_db(),
        &tmp.path().join("tag"),
        &["--scope-tag", "Region:=cn"],
    );
    for csv in files(&by_column, ".csv") {
        assert_eq!(
            std::fs::read_to_string(by_column.join(&csv)).unwrap(),
            std::fs::read_to_string(by_tag.join(&csv)).unwrap(),
            "{csv}"
        );
    }
}

#[test]
fn check_validates_a_jobs_scope_on_the_data() {
    let tmp = tempfile::tempdir().unwrap();
    let example =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/schedules.toml")).unwrap();
    let scope = "scope = { column = \"region\", values = [\"cn\"] }";
    assert!(example.contains(scope), "the example has a China edition");
    let check = |config: &str| {
        let path = tmp.path().join("schedules.toml");
        std::fs::write(&path, config).unwrap();
        run(&[
            "check",
            "--config",
            path.to_str().unwrap(),
            "--db",
            demo_db().to_str().unwrap(),
        ])
    };
    let o = check(&example);
    let out = text(&o);
    assert!(out.contains("scope = region = cn →"), "{out}");
    assert!(!out.contains("`china-monthly` cannot run"), "{out}");
    let o = check(&example.replace(
        scope,
        "scope = { column = \"region\", values = [\"cn\", \"mars\"] }",
    ));
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("`mars` matches no company"),
        "{}",
        text(&o)
    );
    let o = check(&example.replace(scope, "scope = { colum = \"region\", values = [\"cn\"] }"));
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("unknown field `colum`"), "{}", text(&o));
}

#[test]
fn page_one_names_whose_companies_the_edition_covers_in_both_languages() {
    let tmp = tempfile::tempdir().unwrap();
    let o = run(&[
        "run",
        "tag-drivers",
        "--db",
        demo_db().to_str().unwrap(),
        "--out",
        tmp.path().to_str().unwrap(),
        "--as-of",
        AS_OF,
        "--scope-tag",
        "region:=cn",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let dir = std::fs::read_dir(tmp.path().join("tag-drivers"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path()
        .join("cn");
    let page1 = |lang: &str| {
        common::squash(&common::pdf_page_text(
            &dir.join(format!("report.{lang}.pdf")),
            1,
        ))
    };
    let (en, zh) = (page1("en"), page1("zh"));
    assert!(
        en.contains("Edition") && en.contains("thecompaniestaggedregion:cn("),
        "{en}"
    );
    assert!(
        zh.contains("版本范围") && zh.contains("带有标签region:cn的公司"),
        "{zh}"
    );
    // The data-quality line in both languages.
    let en = pdf_text(&dir.join("report.en.pdf"));
    let zh = pdf_text(&dir.join("report.zh.pdf"));
    assert!(en.contains("outside this edition"), "{en}");
    assert!(zh.contains("本版范围以外公司的会话"), "{zh}");
}
