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
                m.retain(|k, _| !k.contains("outside_scope") && k != "covered" && k != "benchmark");
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

/// The words the benchmark prints in English: its strings and the report's metric
/// names.
fn benchmark_words(report: &str) -> std::collections::HashSet<String> {
    let read = |path: &str| -> toml::Value {
        let text =
            std::fs::read_to_string(format!("{}/templates/{path}", env!("CARGO_MANIFEST_DIR")))
                .unwrap();
        toml::from_str(&text).unwrap()
    };
    let shared = read("shared/en/strings.toml");
    let own = read(&format!("{report}/en/strings.toml"));
    let mut texts: Vec<String> = shared["benchmark"]
        .as_table()
        .unwrap()
        .values()
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect();
    for (k, v) in own["change"].as_table().unwrap() {
        if k.starts_with("metric") || k.starts_with("reading") {
            texts.extend(v.as_str().map(str::to_owned));
        }
    }
    texts.iter().flat_map(|t| words_of(t)).collect()
}

/// The words of a line, without punctuation, in lower case.
fn words_of(l: &str) -> Vec<String> {
    l.split(|c: char| !c.is_alphanumeric() && c != '-' && c != '\'')
        .map(|w| {
            w.trim_matches(|c: char| c == '-' || c == '\'')
                .to_lowercase()
        })
        .filter(|w| !w.is_empty())
        .collect()
}

/// A line of the benchmark: its words are the benchmark's, numbers, the edition's
/// value or a wrapped word's part.
fn benchmark_line(l: &str, words: &std::collections::HashSet<String>) -> bool {
    words_of(l).iter().all(|w| {
        words.contains(w)
            || w.chars().any(|c| c.is_ascii_digit())
            || w == "cn"
            || w == "min"
            || w == "pp"
            || words
                .iter()
                .any(|x| x.starts_with(w.as_str()) || x.ends_with(w.as_str()))
    })
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
        // The scoped edition adds its company-wide benchmark.
        let mut with_benchmark = files(&scoped, ".csv");
        with_benchmark.retain(|f| f != "benchmark.csv");
        assert_eq!(with_benchmark, csvs, "{report}");
        assert!(scoped.join("benchmark.csv").exists(), "{report}");
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
        // them where a long table repeats its header. Every line of the database of
        // the scope's companies alone is in the scoped edition, which adds only its
        // benchmark's (page 1's sentence, the table).
        let (mut s, a) = (
            pdf_without_scope_lines(&scoped),
            pdf_without_scope_lines(&alone),
        );
        // A long table's header repeats after each page break it crosses: the pages
        // moved, so it may repeat once more or less.
        let scoped_lines = s.clone();
        let mut missing = Vec::new();
        for l in &a {
            match s.iter().position(|x| x == l) {
                Some(i) => {
                    s.swap_remove(i);
                }
                None if scoped_lines.contains(l) => {}
                None => missing.push(l.clone()),
            }
        }
        assert!(
            missing.is_empty(),
            "{report}: lines of the scope's database alone missing: {missing:#?}"
        );
        let words = benchmark_words(report);
        let foreign: Vec<&String> = s
            .iter()
            .filter(|l| !benchmark_line(l, &words) && !a.contains(l))
            .collect();
        assert!(
            foreign.is_empty(),
            "{report}: the scoped edition adds more than its benchmark: {foreign:#?}"
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

/// The demo's regions, as `--burst region` names their folders.
const REGIONS: [&str; 5] = ["amer", "emea", "apac", "cn", "latam"];

/// `cxreport run <report> --data-only --as-of … <extra>` into `out`: its output.
fn run_data_only(report: &str, out: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec![
        "run",
        report,
        "--db",
        demo_db().to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--as-of",
        AS_OF,
        "--data-only",
    ];
    args.extend_from_slice(extra);
    run(&args)
}

/// How many rows a demo table holds.
fn table_rows(table: &str) -> u64 {
    rusqlite::Connection::open(demo_db())
        .unwrap()
        .query_row(&format!("SELECT count(*) FROM {table}"), [], |r| {
            r.get::<_, i64>(0)
        })
        .unwrap() as u64
}

#[test]
fn a_burst_writes_each_regions_scoped_edition_from_one_read_of_the_database() {
    let tmp = tempfile::tempdir().unwrap();
    for report in ["conversation-usage", "tag-drivers"] {
        let burst_out = tmp.path().join(report).join("burst");
        let o = run_data_only(report, &burst_out, &["--burst", "region"]);
        assert!(o.status.success(), "{report}: {}", text(&o));
        let dirs: Vec<PathBuf> = String::from_utf8_lossy(&o.stdout)
            .lines()
            .map(PathBuf::from)
            .collect();
        let mut folders: Vec<String> = dirs
            .iter()
            .map(|d| d.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        folders.sort();
        let mut want = REGIONS.map(str::to_owned).to_vec();
        want.sort();
        assert_eq!(folders, want, "{report}: one edition per region");
        let mut reads = Vec::new();
        for dir in &dirs {
            let folder = dir.file_name().unwrap().to_str().unwrap();
            // The edition's scope is the value as the data spells it.
            let value = json(&dir.join("summary.json"))["benchmark"]["values"][0]
                .as_str()
                .unwrap()
                .to_owned();
            assert_eq!(value.to_lowercase(), folder);
            let single = run_data_only(
                report,
                &tmp.path().join(report).join(folder),
                &["--scope", &format!("region={value}")],
            );
            assert!(
                single.status.success(),
                "{report} {folder}: {}",
                text(&single)
            );
            let alone = PathBuf::from(String::from_utf8_lossy(&single.stdout).trim());
            let csvs = files(&alone, ".csv");
            assert!(csvs.contains(&"benchmark.csv".to_owned()), "{csvs:?}");
            assert_eq!(files(dir, ".csv"), csvs, "{report} {folder}");
            for f in csvs.iter().map(String::as_str).chain(["summary.json"]) {
                assert!(
                    std::fs::read(dir.join(f)).unwrap() == std::fs::read(alone.join(f)).unwrap(),
                    "{report} {folder}: {f} differs from the scoped run's"
                );
            }
            let m = json(&dir.join("manifest.json"));
            reads.push(m["database"]["rows_returned"].clone());
            // The scoped run read each table once for its edition and benchmark.
            assert_eq!(
                m["database"]["rows_returned"],
                json(&alone.join("manifest.json"))["database"]["rows_returned"],
                "{report} {folder}"
            );
        }
        // Every edition's manifest shows the burst's reads: the companies read
        // once for five editions and their benchmarks, every table once.
        assert!(reads.windows(2).all(|w| w[0] == w[1]), "{reads:#?}");
        let tables = &reads[0];
        assert_eq!(
            tables["intercom__company_enhanced"].as_u64(),
            Some(table_rows("intercom__company_enhanced")),
            "{report}: {tables}"
        );
        assert_eq!(
            tables["intercom__conversation_metrics"].as_u64(),
            Some(table_rows("intercom__conversation_metrics")),
            "{report}: {tables}"
        );
        if report == "conversation-usage" {
            assert_eq!(
                tables["usage_events"].as_u64(),
                Some(table_rows("usage_events")),
                "{tables}"
            );
        }
    }
}

#[test]
fn the_benchmarks_company_wide_values_are_the_unscoped_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let cases: [(&str, &[(&str, &str)]); 2] = [
        (
            "conversation-usage",
            &[
                ("weekly_retention", "/panels/overall/weekly_retention"),
                ("monthly_retention", "/panels/overall/monthly_retention"),
                (
                    "conv_to_feature_rate",
                    "/panels/overall/conv_to_feature_rate",
                ),
                (
                    "bot_first_resp_share",
                    "/panels/overall/bot_first_resp_share",
                ),
                ("avg_resp", "/panels/overall/avg_resp"),
            ],
        ),
        (
            "tag-drivers",
            &[
                ("share_rated_le2", "/baseline/share_rated_le2"),
                ("reopen_rate", "/baseline/reopen_rate"),
            ],
        ),
    ];
    for (report, metrics) in cases {
        let o = run_data_only(report, &tmp.path().join("all"), &[]);
        assert!(o.status.success(), "{}", text(&o));
        let all =
            json(&PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()).join("summary.json"));
        assert!(
            all.get("benchmark").is_none(),
            "an unscoped run has no benchmark"
        );
        let o = run_data_only(report, &tmp.path().join("cn"), &["--scope", "region=cn"]);
        assert!(o.status.success(), "{}", text(&o));
        let cn =
            json(&PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()).join("summary.json"));
        let rows = cn["benchmark"]["rows"].as_array().expect("a benchmark");
        assert_eq!(rows.len(), metrics.len(), "{report}");
        for (row, (metric, path)) in rows.iter().zip(metrics) {
            assert_eq!(row["metric"], *metric);
            let company = &row["company"];
            assert!(company.is_number(), "{report} {metric}: {row}");
            assert_eq!(company, all.pointer(path).unwrap(), "{report} {metric}");
            // The edition's own value is the edition's overall one.
            assert_eq!(
                &row["edition"],
                cn.pointer(path).unwrap(),
                "{report} {metric}"
            );
            assert!(row["rest_n"].as_f64().unwrap() > 0.0, "{row}");
            assert!(row["p"].is_number(), "tested against the rest: {row}");
        }
    }
}

#[test]
fn a_region_with_fewer_companies_than_the_minimum_gets_no_thin_edition() {
    let tmp = tempfile::tempdir().unwrap();
    let o = run_data_only(
        "conversation-usage",
        tmp.path(),
        &["--burst", "region", "--min-cell", "400"],
    );
    let out = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    let written: Vec<String> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| {
            Path::new(l)
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    assert!(written.contains(&"amer".to_owned()), "{out}");
    assert!(!written.contains(&"latam".to_owned()), "{out}");
    assert!(
        out.contains("edition region = LATAM") || out.contains("edition region = latam"),
        "{out}"
    );
    assert!(
        out.contains("fewer than the report's minimum of 400 (min_cell"),
        "{out}"
    );
    let period = std::fs::read_dir(tmp.path().join("conversation-usage"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    assert!(!period.join("latam").exists(), "no thin edition is written");
}

#[test]
fn page_one_and_the_full_report_set_the_edition_against_the_whole_company() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = run_report(
        demo_db(),
        tmp.path(),
        "conversation-usage",
        &["--scope", "region=cn"],
    );
    let page1 = |lang: &str| {
        common::squash(&common::pdf_page_text(
            &dir.join(format!("report.{lang}.pdf")),
            1,
        ))
    };
    let (en, zh) = (page1("en"), page1("zh"));
    assert!(en.contains("cn:weeklyretention"), "{en}");
    assert!(en.contains("company-wide("), "{en}");
    assert!(en.contains("againsttherestofthecompany."), "{en}");
    assert!(zh.contains("全公司为"), "{zh}");
    assert!(zh.contains("经检验"), "{zh}");
    let en = pdf_text(&dir.join("report.en.pdf"));
    assert!(en.contains("This edition vs company-wide"), "{en}");
    let zh = pdf_text(&dir.join("report.zh.pdf"));
    assert!(zh.contains("本版与全公司对比"), "{zh}");
}
