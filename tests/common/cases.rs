//! Data cases of issue 28 that the SQLite tests (`tests/hardening_data.rs`) and the
//! PostgreSQL tests (`tests/postgres.rs`) share: the SQL that changes a copy of the
//! demo, and what `check` or a run's outputs must then say, so that both backends are
//! held to the same sentences.

use std::path::Path;

use super::{json, pdf_page_text, pdf_text, squash};

/// Values the readers cannot read as their column's type: times that are no time,
/// a text `monthly_spend` of `n/a`, `is_core = 'maybe'`; and text flags the reader
/// does read (`true`, `f`, `yes`, `0`), which are no problem. Loaded into PostgreSQL
/// with the package's types, each changed column is `text` (its values fit no other).
pub const UNREADABLE_VALUES: &str = "
    UPDATE intercom__conversation_enhanced SET conversation_created_at = 'not a time'
      WHERE rowid IN (SELECT rowid FROM intercom__conversation_enhanced LIMIT 2);
    UPDATE intercom__conversation_enhanced SET conversation_created_at = '2024-13-45'
      WHERE rowid IN (SELECT rowid FROM intercom__conversation_enhanced LIMIT 1 OFFSET 5);
    UPDATE intercom__company_enhanced SET monthly_spend = 'n/a'
      WHERE rowid IN (SELECT rowid FROM intercom__company_enhanced LIMIT 1);
    UPDATE usage_events SET is_core = 'maybe'
      WHERE rowid IN (SELECT rowid FROM usage_events LIMIT 4);
    UPDATE usage_events SET is_core = CASE rowid % 4 WHEN 0 THEN 'true' WHEN 1 THEN 'f'
      WHEN 2 THEN 'yes' ELSE '0' END
      WHERE rowid IN (SELECT rowid FROM usage_events LIMIT 100 OFFSET 10);";

/// The lines `check` prints for [`UNREADABLE_VALUES`], given each table's rows.
pub fn unreadable_value_lines(rows: impl Fn(&str) -> u64) -> Vec<String> {
    vec![
        format!(
            "intercom__conversation_enhanced.conversation_created_at: 3 of {} values cannot \
             be read as a timestamp: \"not a time\", \"2024-13-45\"",
            rows("intercom__conversation_enhanced")
        ),
        format!(
            "intercom__company_enhanced.monthly_spend: 1 of {} values cannot be read as a \
             number: \"n/a\"",
            rows("intercom__company_enhanced")
        ),
        format!(
            "usage_events.is_core: 4 of {} values cannot be read as a flag (true/false, t/f, \
             yes/no or 1/0): \"maybe\": a run that reads it stops",
            rows("usage_events")
        ),
        // The times: a run leaves those rows out (a failure, not a note).
        "a run leaves those rows out".to_owned(),
    ]
}

/// An optional column's unreadable times (`check` notes what is empty, and is ok).
pub const UNREADABLE_ACTIVITY: &str = "
    UPDATE intercom__contact_enhanced SET last_activity_ts = 'yesterday'
      WHERE rowid IN (SELECT rowid FROM intercom__contact_enhanced LIMIT 2);";

/// Whether `check`'s text `t` has the note for [`UNREADABLE_ACTIVITY`].
pub fn has_unreadable_activity_note(t: &str) -> bool {
    t.contains("intercom__contact_enhanced.last_activity_ts: 2 of ")
        && t.contains("\"yesterday\": those contacts have no last activity")
}

/// Usage events keyed by the product's own account id (`acct-…`, also a company
/// column `account_id`), with no mapping to say so: no event matches a company.
pub const MIS_KEYED_EVENTS: &str = "
    UPDATE usage_events SET company_id = 'acct-' || company_id;
    ALTER TABLE intercom__company_enhanced ADD COLUMN account_id TEXT;
    UPDATE intercom__company_enhanced SET account_id = 'acct-' || company_id;";

/// The usage metrics a reader would compare, which no event of [`MIS_KEYED_EVENTS`]
/// can give.
const USAGE_METRICS: [&str; 3] = [
    "conv_to_feature_rate",
    "weekly_retention",
    "monthly_retention",
];

/// The CSVs of a run's directory, by name.
pub fn csvs(dir: &Path) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "csv"))
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read_to_string(&p).unwrap(),
            )
        })
        .collect();
    out.sort();
    out
}

/// A conversation-usage run (with both PDFs) of [`MIS_KEYED_EVENTS`] data in `run`:
/// conversion and retention are empty with the reason (its key, the events' count and
/// ids) in summary.json, empty in every CSV cell, and the PDFs of both languages give
/// the reason on page 1 and in the data-quality appendix, print no 0 % for
/// conversion or retention, no "0 of", and no sentence with an empty clause.
pub fn assert_usage_empty_with_the_reason(run: &Path) {
    let summary = json(&run.join("summary.json"));
    let empty = &summary["usage_empty"];
    assert_eq!(empty["reason"], "none_matched", "{summary}");
    assert_eq!(empty["company_key"], "company_id");
    assert!(empty["events"].as_u64().is_some_and(|n| n > 0), "{empty}");
    assert!(
        empty["event_ids"][0]
            .as_str()
            .is_some_and(|id| id.starts_with("acct-")),
        "{empty}"
    );
    let panels = summary["panels"].as_object().unwrap();
    let rows = panels.values().flat_map(|level| match level.as_array() {
        Some(rows) => rows.iter().collect::<Vec<_>>(),
        None => vec![level],
    });
    let mut seen = 0;
    for row in rows {
        for metric in USAGE_METRICS {
            assert!(row[metric].is_null(), "{metric}: {row}");
            seen += 1;
        }
    }
    assert!(seen > 0, "panels in summary.json: {summary}");
    let mut cells = 0;
    for (name, csv) in csvs(run) {
        let header: Vec<&str> = csv.lines().next().unwrap_or_default().split(',').collect();
        for (i, col) in header.iter().enumerate() {
            if USAGE_METRICS.contains(col) {
                for line in csv.lines().skip(1) {
                    assert_eq!(line.split(',').nth(i), Some(""), "{name}: {line}");
                    cells += 1;
                }
            }
        }
    }
    assert!(cells > 0, "no CSV has a conversion or retention column");
    for (lang, quality, said, metrics, zero_of) in [
        (
            "en",
            "Appendix: data quality",
            "usage events in the window is a company's",
            &["onversion", "etention"][..],
            "(0 of",
        ),
        (
            "zh",
            "附录：数据质量",
            "条使用事件没有一条属于任何公司",
            &["转化", "留存"][..],
            "家中 0 家",
        ),
    ] {
        let pdf = run.join(format!("report.{lang}.pdf"));
        let page1 = squash(&pdf_page_text(&pdf, 1));
        assert!(
            page1.contains(&squash(said)) && page1.contains("usage_company_key"),
            "{lang} page 1: {page1}"
        );
        let all = pdf_text(&pdf);
        let flat = squash(&all);
        let (_, dq) = flat
            .split_once(&squash(quality))
            .expect("a data-quality section");
        assert!(
            dq.contains(&squash(said)) && dq.contains("usage_company_key"),
            "{lang} data quality: {dq}"
        );
        assert!(!flat.contains(&squash(zero_of)), "{lang}: {zero_of}");
        for clause in [":;", "（）", ",,", "：；", "（；", "(;"] {
            assert!(!flat.contains(clause), "{lang}: an empty clause `{clause}`");
        }
        for line in all.lines() {
            if metrics.iter().any(|m| line.contains(m)) {
                assert!(
                    !line.contains("0.0%") && !line.contains("0.0 %"),
                    "{lang}: {line}"
                );
            }
        }
    }
}

/// Whether `check`'s text says the usage half will be empty for
/// [`MIS_KEYED_EVENTS`] data (and does not end `ok`).
pub fn check_says_no_event_matches(t: &str) -> bool {
    t.contains("none of the") && !t.contains("ok:")
}
