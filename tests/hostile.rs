//! No input makes cxreport panic: every report on databases made hostile in the ways
//! real exports are (empty tables, all-NULL columns, no paying company, nothing
//! mapped, ±Inf in REAL columns, negative money, non-UTF-8 text, ids as integers and
//! text mixed, 10,000 distinct plans and tags, views instead of tables, absurd
//! times), one by one and in seeded random combinations. Each run ends with exit 0,
//! or 1/2 with an `error:` line; never a panic (exit 101), never a half-written
//! output folder.

mod common;

use std::path::Path;

use common::{demo_db, run, text};
use rand::{Rng, SeedableRng};

/// The ways a database can be hostile, as SQL over a copy of the demo.
const HOSTILE: &[(&str, &str)] = &[
    (
        "empty tables",
        "DELETE FROM intercom__company_enhanced; DELETE FROM intercom__company_metrics;
         DELETE FROM intercom__contact_enhanced; DELETE FROM intercom__conversation_enhanced;
         DELETE FROM intercom__conversation_metrics; DELETE FROM usage_events;
         DELETE FROM users; DELETE FROM events;",
    ),
    (
        "all-NULL columns",
        "UPDATE intercom__company_enhanced SET company_name = NULL, all_company_tags = NULL,
           monthly_spend = NULL, user_count = NULL;
         UPDATE intercom__conversation_enhanced SET conversation_initiated_type = NULL,
           conversation_author_type = NULL, conversation_assignee_type = NULL,
           all_conversation_tags = NULL, last_close_at = NULL, conversation_rating = NULL;
         UPDATE intercom__conversation_metrics SET time_to_first_response_minutes = NULL,
           count_reopens = NULL;
         UPDATE usage_events SET is_core = NULL, company_id = NULL;
         UPDATE users SET portfolio_size = NULL, plan_type = NULL, annual_revenue = NULL,
           is_active = NULL, nps_score = NULL, support_tickets_last_90d = NULL;
         UPDATE events SET event_type = NULL;",
    ),
    (
        "no paying company",
        "UPDATE intercom__company_enhanced SET monthly_spend = 0;",
    ),
    (
        "no mapped conversation",
        "UPDATE intercom__conversation_enhanced SET all_contact_company_names = 'Nobody At All';",
    ),
    (
        "infinities",
        "UPDATE intercom__company_enhanced SET monthly_spend = 9e999 WHERE rowid % 3 = 0;
         UPDATE intercom__company_enhanced SET monthly_spend = -9e999 WHERE rowid % 3 = 1;
         UPDATE intercom__conversation_metrics SET time_to_first_response_minutes = 9e999
           WHERE rowid % 5 = 0;
         UPDATE intercom__company_metrics SET registration_retention_7d = -9e999;
         UPDATE users SET annual_revenue = 9e999 WHERE rowid % 4 = 0;",
    ),
    (
        "NaN as text",
        "UPDATE intercom__company_enhanced SET monthly_spend = 'NaN' WHERE rowid % 3 = 0;",
    ),
    (
        "negative money and sizes",
        "UPDATE intercom__company_enhanced SET monthly_spend = -monthly_spend,
           user_count = -user_count WHERE rowid % 2 = 0;
         UPDATE users SET annual_revenue = -annual_revenue, portfolio_size = -portfolio_size
           WHERE rowid % 2 = 0;",
    ),
    (
        "non-UTF-8 text",
        "UPDATE intercom__company_enhanced SET company_name = CAST(x'ff41fe' AS TEXT)
           WHERE rowid % 7 = 0;
         UPDATE intercom__conversation_enhanced SET all_conversation_tags = CAST(x'c3' AS TEXT)
           WHERE rowid % 5 = 0;
         UPDATE intercom__conversation_enhanced SET all_contact_company_names = CAST(x'80' AS TEXT)
           WHERE rowid % 11 = 0;",
    ),
    (
        "ids as integers and text mixed",
        "UPDATE intercom__conversation_enhanced SET conversation_id = rowid WHERE rowid % 2 = 0;
         UPDATE intercom__conversation_metrics SET conversation_id = rowid WHERE rowid % 3 = 0;
         UPDATE intercom__company_enhanced SET company_id = rowid WHERE rowid % 2 = 0;
         UPDATE usage_events SET company_id = 12345 WHERE rowid % 9 = 0;
         UPDATE users SET user_id = rowid WHERE rowid % 2 = 0;",
    ),
    (
        "10,000 distinct plans and tags",
        "UPDATE intercom__company_enhanced SET all_company_tags =
           coalesce(all_company_tags, '') || ', tag ' || rowid || ', segment:s' || rowid;
         UPDATE intercom__conversation_enhanced SET all_conversation_tags =
           coalesce(all_conversation_tags, '') || ', topic ' || rowid;
         UPDATE users SET plan_type = 'plan ' || rowid;",
    ),
    (
        "absurd and unreadable times",
        "UPDATE intercom__conversation_enhanced SET conversation_created_at = 'yesterday'
           WHERE rowid % 13 = 0;
         UPDATE intercom__conversation_enhanced SET last_close_at = '0001-01-01 00:00:00'
           WHERE rowid % 7 = 0;
         UPDATE intercom__conversation_enhanced SET last_close_at = '9999-12-31 23:59:59'
           WHERE rowid % 17 = 0;
         UPDATE usage_events SET occurred_at = '2024-02-30 25:61:61' WHERE rowid % 5 = 0;
         UPDATE events SET event_time = 42 WHERE rowid % 5 = 0;",
    ),
    (
        "huge integers and duplicates",
        "UPDATE intercom__company_enhanced SET user_count = 9223372036854775807 WHERE rowid % 3 = 0;
         UPDATE intercom__company_enhanced SET monthly_spend = 1e300 WHERE rowid % 5 = 0;
         CREATE TABLE conv_copy AS SELECT * FROM intercom__conversation_enhanced;
         DROP TABLE intercom__conversation_enhanced;
         ALTER TABLE conv_copy RENAME TO intercom__conversation_enhanced;
         INSERT INTO intercom__conversation_enhanced SELECT * FROM intercom__conversation_enhanced;
         CREATE TABLE company_copy AS SELECT * FROM intercom__company_enhanced;
         DROP TABLE intercom__company_enhanced;
         ALTER TABLE company_copy RENAME TO intercom__company_enhanced;
         INSERT INTO intercom__company_enhanced SELECT * FROM intercom__company_enhanced;",
    ),
    // Last: the views stand for the tables from here on (a view takes no UPDATE).
    (
        "views instead of tables",
        "ALTER TABLE intercom__company_enhanced RENAME TO company_t;
         CREATE VIEW intercom__company_enhanced AS SELECT * FROM company_t;
         ALTER TABLE intercom__conversation_enhanced RENAME TO conversation_t;
         CREATE VIEW intercom__conversation_enhanced AS SELECT * FROM conversation_t;
         ALTER TABLE users RENAME TO users_t;
         CREATE VIEW users AS SELECT * FROM users_t;",
    ),
];

const REPORTS: &[&str] = &["conversation-usage", "tag-drivers", "customer-segmentation"];

/// Runs every report on `db` and checks that none panicked and every failure says why.
fn no_panic(db: &Path, out: &Path, case: &str, pdf: bool) {
    for report in REPORTS {
        let mut args = vec![
            "run",
            report,
            "--db",
            db.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--as-of",
            "2024-07-01T00:00:00Z",
        ];
        if pdf {
            args.extend(["--lang", "en,zh"]);
        } else {
            args.push("--data-only");
        }
        let o = run(&args);
        let t = text(&o);
        let code = o.status.code();
        assert!(
            matches!(code, Some(0..=2)),
            "{case}, {report}: exit {code:?}\n{t}"
        );
        assert!(!t.contains("panicked"), "{case}, {report}: {t}");
        if code != Some(0) {
            assert!(
                t.contains("error:"),
                "{case}, {report}: a failure says why: {t}"
            );
        }
        eprintln!(
            "{case} · {report}: exit {} {}",
            code.unwrap_or(-1),
            t.lines().find(|l| l.starts_with("error:")).unwrap_or("")
        );
    }
    // No staging folder left behind by a failed run.
    if let Ok(entries) = std::fs::read_dir(out) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            assert!(!name.starts_with('.'), "{case}: left {name}");
        }
    }
}

fn hostile_copy(dir: &Path, name: &str, sql: &[&str]) -> std::path::PathBuf {
    let db = dir.join(format!("{name}.sqlite"));
    std::fs::copy(demo_db(), &db).unwrap();
    let conn = rusqlite::Connection::open(&db).unwrap();
    for s in sql {
        conn.execute_batch(s)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    db
}

#[test]
fn each_hostile_database_alone() {
    let dir = tempfile::tempdir().unwrap();
    for (i, (case, sql)) in HOSTILE.iter().enumerate() {
        let db = hostile_copy(dir.path(), &format!("case{i}"), &[sql]);
        // The editions too: charts and layout meet the odd numbers.
        no_panic(&db, &dir.path().join(format!("out{i}")), case, true);
    }
}

#[test]
fn seeded_combinations_of_hostile_databases() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(13);
    for round in 0..12 {
        let picked: Vec<usize> = (0..HOSTILE.len()).filter(|_| rng.gen_bool(0.3)).collect();
        let case = picked
            .iter()
            .map(|&i| HOSTILE[i].0)
            .collect::<Vec<_>>()
            .join(" + ");
        let sql: Vec<&str> = picked.iter().map(|&i| HOSTILE[i].1).collect();
        let db = hostile_copy(dir.path(), &format!("mix{round}"), &sql);
        no_panic(
            &db,
            &dir.path().join(format!("mix-out{round}")),
            &case,
            false,
        );
    }
}
