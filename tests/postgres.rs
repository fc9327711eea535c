//! Reading the tables straight from PostgreSQL, against a real server: the same
//! fixture loaded into SQLite and into PostgreSQL (with dbt_intercom's native types)
//! gives the same numbers, file for file; URLs, schemas and passwords behave.
//!
//! The server is `$CXREPORT_TEST_POSTGRES` (`script/test` starts a throwaway one).
//! Without it the tests print a notice and pass, except under CI
//! (`CXREPORT_REQUIRE_POSTGRES` or `CI` set), where they fail.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use common::{demo_db, run, text};

/// Whether this is CI, where the PostgreSQL tests may not skip.
fn ci_requires_postgres() -> bool {
    ["CXREPORT_REQUIRE_POSTGRES", "CI"]
        .iter()
        .any(|v| std::env::var_os(v).is_some_and(|x| !x.is_empty()))
}

/// The server's URL, or `None` (with a notice) when there is none outside CI.
fn server() -> Option<String> {
    match std::env::var("CXREPORT_TEST_POSTGRES") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            assert!(
                !ci_requires_postgres(),
                "CXREPORT_TEST_POSTGRES is not set, and CI requires the PostgreSQL tests \
                 (script/test starts a throwaway server when the postgresql package is installed)"
            );
            eprintln!(
                "NOTICE: PostgreSQL tests skipped: CXREPORT_TEST_POSTGRES is not set \
                 (run them with script/test)"
            );
            None
        }
    }
}

/// `url` pointing at `schema`.
fn with_schema(url: &str, schema: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}schema={schema}")
}

/// Loads a SQLite file into a fresh schema with `cxreport load-postgres`.
fn load(url: &str, file: &Path, schema: &str, extra: &[&str]) -> String {
    let to = with_schema(url, schema);
    let mut args = vec![
        "load-postgres",
        "--from",
        file.to_str().unwrap(),
        "--to",
        &to,
    ];
    args.extend_from_slice(extra);
    let o = run(&args);
    assert!(o.status.success(), "{}", text(&o));
    to
}

fn client(url: &str) -> postgres::Client {
    postgres::Client::connect(url, postgres::NoTls).expect("test server reachable")
}

/// Every file under `dir`, by relative path (manifest.json parsed: it names the
/// database and its timings, which differ by nature).
fn files(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                out.insert(
                    p.strip_prefix(root).unwrap().to_owned(),
                    std::fs::read(&p).unwrap(),
                );
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// Runs `args` on both databases and asserts the same outcome: the same files with
/// the same bytes (manifest: the same except the database and timings), or the same
/// failure. Returns the PostgreSQL run's manifest (`null` after a failure).
fn same_outputs(sqlite: &Path, pg: &str, args: &[&str]) -> serde_json::Value {
    let tmp = tempfile::tempdir().unwrap();
    let mut outs = Vec::new();
    for (i, db) in [sqlite.to_str().unwrap(), pg].into_iter().enumerate() {
        let out = tmp.path().join(i.to_string());
        let mut a = vec!["run"];
        a.extend_from_slice(args);
        a.extend_from_slice(&[
            "--db",
            db,
            "--out",
            out.to_str().unwrap(),
            "--data-only",
            "--as-of",
            "2024-07-01T00:00:00Z",
        ]);
        let o = run(&a);
        outs.push((o, out));
    }
    let ((a, a_dir), (b, b_dir)) = (&outs[0], &outs[1]);
    assert_eq!(
        a.status.code(),
        b.status.code(),
        "{args:?}\n{}\n{}",
        text(a),
        text(b)
    );
    if !a.status.success() {
        // The same refusal, naming the database each time.
        let strip = |o: &std::process::Output, db: &str| text(o).replace(db, "<db>");
        assert_eq!(strip(a, sqlite.to_str().unwrap()), strip(b, pg), "{args:?}");
        return serde_json::Value::Null;
    }
    let (fa, fb) = (files(a_dir), files(b_dir));
    assert_eq!(
        fa.keys().collect::<Vec<_>>(),
        fb.keys().collect::<Vec<_>>(),
        "{args:?}"
    );
    assert!(fa.len() > 2, "{args:?}: {:?}", fa.keys());
    let mut manifest = serde_json::Value::Null;
    for (path, bytes) in &fa {
        if path.ends_with("manifest.json") {
            let parse = |b: &[u8]| serde_json::from_slice::<serde_json::Value>(b).unwrap();
            let (ma, mb) = (parse(bytes), parse(&fb[path]));
            for key in [
                "report",
                "period",
                "parameters",
                "reference_time",
                "editions",
            ] {
                assert_eq!(ma[key], mb[key], "{args:?} manifest {key}");
            }
            assert_eq!(mb["database"]["path"], serde_json::json!(pg));
            assert!(mb["database"]["sha256"].is_null());
            manifest = mb;
            continue;
        }
        assert!(
            bytes == &fb[path],
            "{args:?}: {} differs:\n--- sqlite\n{}\n--- postgresql\n{}",
            path.display(),
            String::from_utf8_lossy(bytes),
            String::from_utf8_lossy(&fb[path])
        );
    }
    manifest
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// A schema name of this test run.
fn schema(name: &str) -> String {
    format!("cxreport_test_{name}_{}", std::process::id())
}

#[test]
fn every_report_gives_the_same_numbers_from_postgresql_as_from_sqlite() {
    let Some(url) = server() else { return };
    let demo = demo_db();
    let pg = load(&url, demo, &schema("demo"), &[]);
    for args in [
        &["conversation-usage"][..],
        &["conversation-usage", "--usage-source", "proxy"],
        &[
            "conversation-usage",
            "--window",
            "range:2024-02-01..2024-04-30",
        ],
        &["tag-drivers"],
        &["customer-segmentation"],
    ] {
        same_outputs(demo, &pg, args);
    }
    // Timestamps with a zone and a boolean core flag (native types either way): the
    // same numbers again.
    let tz_schema = schema("demo_tz");
    let pg_tz = load(&url, demo, &tz_schema, &[]);
    client(&url)
        .batch_execute(&format!(
            "SET search_path = {tz_schema};
             ALTER TABLE usage_events ALTER occurred_at TYPE timestamptz
               USING occurred_at AT TIME ZONE 'UTC',
               ALTER is_core TYPE boolean USING is_core = 1;
             ALTER TABLE intercom__conversation_enhanced
               ALTER conversation_created_at TYPE timestamptz
                 USING conversation_created_at AT TIME ZONE 'UTC',
               ALTER last_close_at TYPE timestamptz USING last_close_at AT TIME ZONE 'UTC'"
        ))
        .unwrap();
    same_outputs(demo, &pg_tz, &["conversation-usage"]);
    // Naive times in another zone: loaded and read as that zone's local time.
    let pg_sh = load(
        &url,
        demo,
        &schema("demo_sh"),
        &["--source-timezone", "Asia/Shanghai"],
    );
    same_outputs(
        demo,
        &pg_sh,
        &["conversation-usage", "--source-timezone", "Asia/Shanghai"],
    );
}

/// The server sends one row per company, core flag and day; conversion still sees an
/// event right after a close (the day's last) and one right at close + 72 h (the
/// day's first) while the day's other event lies outside the interval. Every close
/// gets such a pair: an event a minute before it and one a minute after, or one at
/// exactly 72 h after it and one a minute later.
#[test]
fn day_summaries_keep_the_events_at_the_edges_of_the_72_hours() {
    let Some(url) = server() else { return };
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("edges.sqlite");
    std::fs::copy(demo_db(), &db).unwrap();
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute_batch(
            "DELETE FROM usage_events;
             CREATE TEMP TABLE closes AS
               SELECT co.company_id, datetime(cv.last_close_at) AS closed, cv.rowid AS n
               FROM intercom__conversation_enhanced cv
               JOIN intercom__company_enhanced co
                 ON lower(trim(co.company_name)) = lower(trim(substr(
                      cv.all_contact_company_names, 1,
                      instr(cv.all_contact_company_names || ',', ',') - 1)))
               WHERE cv.last_close_at IS NOT NULL
                 AND time(cv.last_close_at) BETWEEN '00:05:00' AND '23:50:00';
             INSERT INTO usage_events (event_id, contact_id, company_id, event_name, is_core, occurred_at)
               SELECT 'b' || rowid, NULL, company_id, 'x', 1, datetime(closed, '-1 minute')
               FROM closes WHERE n % 2 = 0
               UNION ALL SELECT 'a' || rowid, NULL, company_id, 'x', 1, datetime(closed, '+1 minute')
               FROM closes WHERE n % 2 = 0
               UNION ALL SELECT 'c' || rowid, NULL, company_id, 'x', 0, datetime(closed, '+72 hours')
               FROM closes WHERE n % 2 = 1
               UNION ALL SELECT 'd' || rowid, NULL, company_id, 'x', 0,
                 datetime(closed, '+72 hours', '+1 minute')
               FROM closes WHERE n % 2 = 1;",
        )
        .unwrap();
    let name = schema("edges");
    let pg = load(&url, &db, &name, &[]);
    // Without statistics the server summarizes (as on a warehouse table nobody has
    // analyzed); the copy keeps autovacuum from analyzing it during the test.
    client(&url)
        .batch_execute(&format!(
            "SET search_path = {name};
             CREATE TABLE ev (LIKE usage_events) WITH (autovacuum_enabled = false);
             INSERT INTO ev SELECT * FROM usage_events;
             DROP TABLE usage_events; ALTER TABLE ev RENAME TO usage_events;"
        ))
        .unwrap();
    // Without a comparison, and the data starting inside the window: one load of
    // the window, the events summarised per day.
    let m = same_outputs(&db, &pg, &["conversation-usage", "--compare", "none"]);
    let read: u64 = m["database"]["row_counts"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    let sent = m["database"]["transfer"]["rows"].as_u64().unwrap();
    assert!(
        sent < read,
        "day summaries: {sent} rows sent for {read} read"
    );
}

#[test]
fn the_package_fixtures_read_the_same_from_both() {
    let Some(url) = server() else { return };
    for (name, file) in [
        ("seed", "dbt-intercom-seed.sqlite"),
        ("seed_ev", "dbt-intercom-seed-with-usage-events.sqlite"),
    ] {
        let file = fixture(file);
        let pg = load(&url, &file, &schema(name), &[]);
        // dbt_intercom's native types, not text.
        let mut c = client(&url);
        let types: Vec<(String, String)> = c
            .query(
                "SELECT column_name::text, data_type::text FROM information_schema.columns \
                 WHERE table_schema = $1 AND table_name = 'intercom__conversation_enhanced' \
                 AND column_name IN ('conversation_id', 'conversation_created_at')",
                &[&schema(name)],
            )
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        assert!(
            types.contains(&("conversation_id".into(), "bigint".into())),
            "{types:?}"
        );
        assert!(
            types.contains(&(
                "conversation_created_at".into(),
                "timestamp without time zone".into()
            )),
            "{types:?}"
        );
        for args in [
            &["tag-drivers", "--window", "range:2020-01-01..2020-12-31"][..],
            // No paying company in the package's seeds: the same clean failure.
            &[
                "conversation-usage",
                "--window",
                "range:2020-01-01..2020-12-31",
            ],
        ] {
            same_outputs(&file, &pg, args);
        }
    }
}

#[test]
fn urls_schemas_and_passwords() {
    let Some(url) = server() else { return };
    let dir = tempfile::tempdir().unwrap();
    let pg = load(&url, demo_db(), &schema("check"), &[]);

    // check --db with no configuration, anywhere: every report, from the server.
    let o = common::bin()
        .current_dir(dir.path())
        .args(["check", "--db", &pg])
        .output()
        .unwrap();
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    for r in ["conversation-usage", "tag-drivers", "customer-segmentation"] {
        assert!(t.contains(&format!("report `{r}`: can run")), "{t}");
    }

    // A password in the URL is refused before any connection, and never echoed.
    let with_pw = url.replacen("postgres@", "postgres:hunter2@", 1);
    let o = run(&["run", "--db", &with_pw, "--data-only"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(!text(&o).contains("hunter2"), "{}", text(&o));
    assert!(text(&o).contains("PGPASSWORD"), "{}", text(&o));

    // A schema that does not exist, a table that is missing: named.
    let o = run(&[
        "run",
        "--db",
        &with_schema(&url, "no_such_schema"),
        "--data-only",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("schema `no_such_schema` does not exist"),
        "{}",
        text(&o)
    );
    client(&url)
        .batch_execute(&format!(
            "DROP TABLE {}.intercom__conversation_metrics",
            schema("check")
        ))
        .unwrap();
    let o = run(&["run", "--db", &pg, "--data-only"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("table `intercom__conversation_metrics` does not exist"),
        "{}",
        text(&o)
    );

    // Nothing a run does writes: the session is read-only (a report cannot change
    // the warehouse even by mistake).
    let mut c = client(&pg.replace(&format!("?schema={}", schema("check")), ""));
    c.batch_execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
        .unwrap();
    assert!(c
        .batch_execute("CREATE TABLE cxreport_should_fail (x int)")
        .is_err());
}

#[test]
fn a_job_reads_its_warehouse_with_the_password_from_the_variable_it_names() {
    let Some(url) = server() else { return };
    let dir = tempfile::tempdir().unwrap();
    let pg = load(&url, demo_db(), &schema("job"), &[]);
    std::fs::write(
        dir.path().join("schedules.toml"),
        format!(
            "[defaults]\noutput_dir = \"out\"\nlanguages = [\"en\"]\n\
             database = \"{pg}\"\ndatabase_password_env = \"WAREHOUSE_PASSWORD\"\n\n\
             [[job]]\nname = \"usage\"\nreport = \"conversation-usage\"\ncron = \"0 7 1 * *\"\n"
        ),
    )
    .unwrap();
    let o = common::bin()
        .current_dir(dir.path())
        .env("WAREHOUSE_PASSWORD", "not-needed-on-trust")
        .args(["run", "--job", "usage", "--as-of", "2024-07-01T07:00:00Z"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let pdfs: Vec<_> = std::fs::read_dir(dir.path().join("out/usage"))
        .unwrap()
        .flat_map(|p| std::fs::read_dir(p.unwrap().path()).unwrap())
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".pdf"))
        .collect();
    assert_eq!(pdfs, ["report.en.pdf"]);
    let all = std::fs::read_dir(dir.path().join("out/usage"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let pdf_text = common::pdf_text(&all.join("report.en.pdf"));
    assert!(
        common::squash(&pdf_text).contains(&common::squash("read from a PostgreSQL server")),
        "the appendix says where the tables came from"
    );
    assert!(!pdf_text.contains("not-needed-on-trust"));
}

/// Hostile tables from a server too: no panic, a clean exit with the reason.
#[test]
fn hostile_tables_on_the_server_never_panic() {
    let Some(url) = server() else { return };
    let dir = tempfile::tempdir().unwrap();
    for (i, sql) in [
        // Empty tables.
        "DELETE FROM intercom__company_enhanced; DELETE FROM intercom__conversation_enhanced;
         DELETE FROM intercom__conversation_metrics; DELETE FROM usage_events;
         DELETE FROM users; DELETE FROM events;",
        // All-NULL columns, no paying company.
        "UPDATE intercom__company_enhanced SET company_name = NULL, all_company_tags = NULL,
           monthly_spend = NULL, user_count = NULL;
         UPDATE intercom__conversation_enhanced SET conversation_initiated_type = NULL,
           all_conversation_tags = NULL, last_close_at = NULL;
         UPDATE usage_events SET is_core = NULL, company_id = NULL;",
        // Nothing mapped, negative money, absurd times.
        "UPDATE intercom__conversation_enhanced SET all_contact_company_names = 'Nobody';
         UPDATE intercom__company_enhanced SET monthly_spend = -monthly_spend;
         UPDATE intercom__conversation_enhanced SET last_close_at = '0001-01-01 00:00:00'
           WHERE rowid % 7 = 0;",
    ]
    .iter()
    .enumerate()
    {
        let db = dir.path().join(format!("h{i}.sqlite"));
        std::fs::copy(demo_db(), &db).unwrap();
        rusqlite::Connection::open(&db)
            .unwrap()
            .execute_batch(sql)
            .unwrap();
        let pg = load(&url, &db, &schema(&format!("hostile{i}")), &[]);
        for report in ["conversation-usage", "tag-drivers", "customer-segmentation"] {
            let out = dir.path().join(format!("out{i}"));
            let o = run(&[
                "run",
                report,
                "--db",
                &pg,
                "--out",
                out.to_str().unwrap(),
                "--data-only",
            ]);
            let t = text(&o);
            assert!(
                matches!(o.status.code(), Some(0..=2)),
                "case {i}, {report}: {t}"
            );
            assert!(!t.contains("panicked"), "case {i}, {report}: {t}");
            if !o.status.success() {
                assert!(t.contains("error:"), "case {i}, {report}: {t}");
            }
        }
        // The same outcome as from the file.
        same_outputs(&db, &pg, &["conversation-usage"]);
    }
}

/// The throwaway server's certificate authority (script/postgres.sh makes it when the
/// openssl CLI is there), or `None` with a notice; under CI it is required.
fn server_ca() -> Option<String> {
    match std::env::var("CXREPORT_TEST_POSTGRES_CA") {
        Ok(ca) if !ca.is_empty() => Some(ca),
        _ => {
            assert!(
                !ci_requires_postgres(),
                "CXREPORT_TEST_POSTGRES_CA is not set: the TLS tests need the throwaway \
                 server script/test starts (with the openssl CLI)"
            );
            eprintln!("NOTICE: TLS tests skipped: CXREPORT_TEST_POSTGRES_CA is not set");
            None
        }
    }
}

/// A `--data-only` run as `user@host` with `query` (and `PGPASSWORD` when given):
/// the output, and the manifest's `database.tls` after a success.
fn run_as(
    url: &str,
    user_host: &str,
    query: &str,
    password: Option<&str>,
) -> (std::process::Output, serde_json::Value) {
    let at = url.replacen("postgres@127.0.0.1", user_host, 1);
    let db = format!("{at}?{query}");
    let out = tempfile::tempdir().unwrap();
    let mut c = common::bin();
    c.args(["run", "--data-only", "--as-of", "2024-07-01T00:00:00Z"])
        .args(["--db", &db, "--out", out.path().to_str().unwrap()])
        .env_remove("PGPASSWORD")
        .env_remove("PGSSLMODE")
        .env_remove("PGSSLROOTCERT");
    if let Some(pw) = password {
        c.env("PGPASSWORD", pw);
    }
    let o = c.output().unwrap();
    let mut tls = serde_json::Value::Null;
    if o.status.success() {
        let manifest = files(out.path())
            .into_iter()
            .find(|(p, _)| p.ends_with("manifest.json"))
            .expect("a manifest")
            .1;
        let m: serde_json::Value = serde_json::from_slice(&manifest).unwrap();
        tls = m["database"]["tls"].clone();
    }
    (o, tls)
}

#[test]
fn sessions_are_protected_as_sslmode_says() {
    let Some(url) = server() else { return };
    let Some(ca) = server_ca() else { return };
    let s = schema("tls");
    load(&url, demo_db(), &s, &[]);
    // The two roles script/postgres.sh's pg_hba.conf names.
    client(&url)
        .batch_execute(&format!(
            "DO $$ BEGIN CREATE ROLE cxreport_tls_only LOGIN; \
             EXCEPTION WHEN duplicate_object THEN NULL; END $$; \
             DO $$ BEGIN CREATE ROLE cxreport_cleartext LOGIN; \
             EXCEPTION WHEN duplicate_object THEN NULL; END $$; \
             ALTER ROLE cxreport_cleartext PASSWORD 'clear-pw'; \
             GRANT USAGE ON SCHEMA {s} TO cxreport_tls_only, cxreport_cleartext; \
             GRANT SELECT ON ALL TABLES IN SCHEMA {s} TO cxreport_tls_only, cxreport_cleartext"
        ))
        .unwrap();
    let q = |extra: &str| format!("schema={s}{extra}");
    let tls = |encrypted: bool, verified: &str, mode: &str| serde_json::json!({ "sslmode": mode, "encrypted": encrypted, "verified": verified });

    // verify-full: the certificate names `localhost`, signed by the test CA.
    let (o, t) = run_as(
        &url,
        "postgres@localhost",
        &q(&format!("&sslmode=verify-full&sslrootcert={ca}")),
        None,
    );
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(t, tls(true, "chain_and_host_name", "verify-full"));
    // ... and does not name 127.0.0.1: refused under verify-full, fine under verify-ca.
    let (o, _) = run_as(
        &url,
        "postgres@127.0.0.1",
        &q(&format!("&sslmode=verify-full&sslrootcert={ca}")),
        None,
    );
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("sslmode=verify-full") && text(&o).contains("name the host"),
        "{}",
        text(&o)
    );
    let (o, t) = run_as(
        &url,
        "postgres@127.0.0.1",
        &q(&format!("&sslmode=verify-ca&sslrootcert={ca}")),
        None,
    );
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(t, tls(true, "chain", "verify-ca"));
    // A CA the certificate is not from (the system's and the built-in roots).
    let (o, _) = run_as(&url, "postgres@localhost", &q("&sslmode=verify-ca"), None);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("sslmode=verify-ca") && text(&o).contains("trusted authority"),
        "{}",
        text(&o)
    );
    // require: encrypted, nothing checked; the default (prefer) encrypts when offered.
    let (o, t) = run_as(&url, "postgres@127.0.0.1", &q("&sslmode=require"), None);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(t, tls(true, "nothing", "require"));
    let (o, t) = run_as(&url, "postgres@127.0.0.1", &q(""), None);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(t, tls(true, "nothing", "prefer"));
    let (o, t) = run_as(&url, "postgres@127.0.0.1", &q("&sslmode=disable"), None);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(t, tls(false, "nothing", "disable"));

    // A role the server accepts only over TLS.
    let (o, _) = run_as(
        &url,
        "cxreport_tls_only@127.0.0.1",
        &q("&sslmode=disable"),
        None,
    );
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("no encryption"), "{}", text(&o));
    let (o, t) = run_as(
        &url,
        "cxreport_tls_only@127.0.0.1",
        &q("&sslmode=require"),
        None,
    );
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(t["encrypted"], true);

    // A server that asks for the password in clear: never on an unencrypted session.
    let (o, _) = run_as(
        &url,
        "cxreport_cleartext@127.0.0.1",
        &q("&sslmode=disable"),
        Some("clear-pw"),
    );
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("asks for the password in clear") && !text(&o).contains("clear-pw"),
        "{}",
        text(&o)
    );
    let (o, t) = run_as(
        &url,
        "cxreport_cleartext@127.0.0.1",
        &q("&sslmode=require"),
        Some("clear-pw"),
    );
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(t["encrypted"], true);
    // ... and with no password set: the variable to set is named.
    let (o, _) = run_as(
        &url,
        "cxreport_cleartext@127.0.0.1",
        &q("&sslmode=require"),
        None,
    );
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("the server asks for a password and PGPASSWORD is not set"),
        "{}",
        text(&o)
    );
    // ... and from a job that names its own variable: that variable.
    let dir = tempfile::tempdir().unwrap();
    let at = url.replacen("postgres@127.0.0.1", "cxreport_cleartext@127.0.0.1", 1);
    std::fs::write(
        dir.path().join("schedules.toml"),
        format!(
            "[defaults]\noutput_dir = \"out\"\nlanguages = [\"en\"]\n\
             database = \"{at}?{}\"\ndatabase_password_env = \"WAREHOUSE_PASSWORD\"\n\n\
             [[job]]\nname = \"usage\"\nreport = \"conversation-usage\"\ncron = \"0 7 1 * *\"\n",
            q("&sslmode=require")
        ),
    )
    .unwrap();
    let o = common::bin()
        .current_dir(dir.path())
        .env_remove("WAREHOUSE_PASSWORD")
        .env_remove("PGPASSWORD")
        .args(["run", "--job", "usage", "--as-of", "2024-07-01T07:00:00Z"])
        .output()
        .unwrap();
    // A job's run that cannot open its database fails (exit 1), naming what to set.
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains(
            "the server asks for a password and WAREHOUSE_PASSWORD is not set: \
             set WAREHOUSE_PASSWORD (the job's database_password_env)"
        ),
        "{}",
        text(&o)
    );

    // Modes it does not know, and client certificates: named before connecting.
    let (o, _) = run_as(&url, "postgres@127.0.0.1", &q("&sslmode=strict"), None);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("`strict` is not an sslmode"),
        "{}",
        text(&o)
    );
    let (o, _) = run_as(&url, "postgres@127.0.0.1", &q("&sslcert=me.crt"), None);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("client certificates are not supported"),
        "{}",
        text(&o)
    );
}

/// A role that may not read a table, tables in another schema or spelled in upper
/// case, a password that is not set: each named with what to set, never "does not
/// exist" alone, never a silent fallback.
#[test]
fn permissions_schemas_and_spellings_are_named() {
    let Some(url) = server() else { return };
    let s = schema("grants");
    let pg = load(&url, demo_db(), &s, &[]);
    let pid = std::process::id();
    let (no_metrics, no_events) = (
        format!("cxreport_nometrics_{pid}"),
        format!("cxreport_noevents_{pid}"),
    );
    let mut c = client(&url);
    for (role, revoked) in [
        (&no_metrics, "intercom__conversation_metrics"),
        (&no_events, "usage_events"),
    ] {
        c.batch_execute(&format!(
            "CREATE ROLE {role} LOGIN; GRANT USAGE ON SCHEMA {s} TO {role}; \
             GRANT SELECT ON ALL TABLES IN SCHEMA {s} TO {role}; \
             REVOKE SELECT ON {s}.{revoked} FROM {role}"
        ))
        .unwrap();
    }
    let as_role = |role: &str| pg.replacen("postgres@", &format!("{role}@"), 1);
    for (role, table) in [
        (&no_metrics, "intercom__conversation_metrics"),
        (&no_events, "usage_events"),
    ] {
        let o = run(&["run", "--db", &as_role(role), "--data-only"]);
        let t = text(&o);
        assert_eq!(o.status.code(), Some(2), "{t}");
        assert!(
            t.contains(&format!(
                "table `{s}.{table}` is there but role `{role}` may not read it"
            )) && t.contains(&format!("GRANT SELECT ON \"{s}\".\"{table}\"")),
            "{t}"
        );
        // check tells the same, and fails as the run would.
        let dir = tempfile::tempdir().unwrap();
        let o = check_in(dir.path(), &as_role(role), &[]);
        let t = text(&o);
        // (check counts a report that cannot run as a run that fails: exit 1.)
        assert!(!o.status.success(), "check: {t}");
        assert!(
            t.contains(&format!(
                "table `{s}.{table}` is there but role `{role}` may not read it"
            )) && t.contains(&format!("GRANT SELECT ON \"{s}\".\"{table}\""))
                && !t.contains("ok:"),
            "check: {t}"
        );
    }

    // No ?schema=: the tables are elsewhere, and the message says where.
    let o = run(&["run", "--db", &url, "--data-only"]);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(2), "{t}");
    assert!(
        t.contains("table `intercom__conversation_enhanced` does not exist (it is in schema `")
            && t.contains("?schema="),
        "{t}"
    );

    // usage_events spelled in upper case (quoted, as some exports create it): check
    // says it reads it, under that name.
    c.batch_execute(&format!(
        "ALTER TABLE {s}.usage_events RENAME TO \"USAGE_EVENTS\""
    ))
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let o = common::bin()
        .current_dir(dir.path())
        .args(["check", "--db", &pg])
        .output()
        .unwrap();
    let t = text(&o);
    assert!(
        t.contains("table `usage_events` is read as `USAGE_EVENTS`")
            && t.contains("from usage_events (events definitions)")
            && !t.contains("usage_events: not read"),
        "{t}"
    );

    c.batch_execute(&format!(
        "ALTER TABLE {s}.\"USAGE_EVENTS\" RENAME TO usage_events"
    ))
    .unwrap();
    let _ = c.batch_execute(&format!(
        "DROP OWNED BY {no_metrics}, {no_events}; DROP ROLE {no_metrics}; DROP ROLE {no_events}"
    ));
}

/// The rows of each of the demo's tables (SQLite), by name.
fn table_rows(db: &Path) -> BTreeMap<String, u64> {
    let conn = rusqlite::Connection::open(db).unwrap();
    let names: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table'")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    names
        .into_iter()
        .map(|t| {
            let n: u64 = conn
                .query_row(&format!("SELECT count(*) FROM \"{t}\""), [], |r| r.get(0))
                .unwrap();
            (t, n)
        })
        .collect()
}

/// A run reads each table once: the window, the comparison window and the trend's
/// months all come from one load, so the rows a table's queries return are at most
/// its rows (and a count's or the anchor's one row); with `--compare none` over data
/// that starts inside the window, only the window's rows. SQLite through the
/// library (its reads counted by the database), PostgreSQL through the manifest's
/// `database.transfer.tables`, with the same outputs as SQLite.
#[test]
fn a_run_reads_each_table_once_on_both_backends() {
    use cxreport::reports::{find, Earlier, Options, Request};
    use cxreport::source::Database;
    let demo = demo_db();
    let rows = table_rows(demo);
    let at = |s: &str| chrono::DateTime::parse_from_rfc3339(s).unwrap().to_utc();
    // A window after the data's first months: the trend and the comparison lie
    // before it.
    let cases: [(&str, &str, &str); 4] = [
        (
            "conversation-usage",
            "range:2024-04-01..2024-06-30",
            "previous",
        ),
        (
            "conversation-usage",
            "range:2024-04-01..2024-06-30",
            "shift:1m",
        ),
        ("conversation-usage", "range:2024-04-01..2024-06-30", "none"),
        ("tag-drivers", "range:2024-04-01..2024-06-30", "previous"),
    ];
    for (name, window, compare) in cases {
        let db = Database::open(&demo.to_path_buf().into()).unwrap();
        let report = find(name).unwrap();
        let options: Options = [("compare".to_owned(), compare.to_owned())].into();
        let configured = report.configure(&options).unwrap();
        let mapping = Default::default();
        let req = Request {
            window: window.parse().unwrap(),
            source_tz: chrono_tz::Tz::UTC,
            tz: chrono_tz::Tz::UTC,
            mapping: &mapping,
        };
        let plan = configured
            .plan(&db, &req, at("2024-07-01T00:00:00Z"))
            .unwrap();
        let before: BTreeMap<&str, u64> = db.rows_returned().into_iter().collect();
        let computed = configured
            .compute(&db, &req, &plan, &Earlier::NoOutputs, &mut Vec::new())
            .unwrap();
        let loaded: Vec<(&str, u64)> = db
            .rows_returned()
            .into_iter()
            .map(|(t, n)| (t, n - before.get(t).copied().unwrap_or(0)))
            .collect();
        assert!(loaded.len() >= 3, "{name} {compare}: {loaded:?}");
        for (table, n) in &loaded {
            // SQLite's text times are cut after reading: every row, once.
            assert_eq!(*n, rows[*table], "{name} {compare}: {table} read {n} rows");
        }
        // The appendix's rows read are still the window's (here: every row, as a
        // load of the window alone reads text times).
        for (table, n) in computed.rows_read() {
            assert_eq!(*n, rows[*table], "{name} {compare}: rows read of {table}");
        }
    }

    let Some(url) = server() else { return };
    let pg = load(&url, demo, &schema("once"), &[]);
    let tag_lists: u64 = rusqlite::Connection::open(demo)
        .unwrap()
        .query_row(
            "SELECT count(DISTINCT all_conversation_tags) + 1 FROM intercom__conversation_enhanced",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let returned = |m: &serde_json::Value, table: &str| {
        m["database"]["transfer"]["tables"][table]
            .as_u64()
            .unwrap_or_else(|| panic!("{table} in {}", m["database"]))
    };
    for (name, window, compare) in cases {
        let m = same_outputs(demo, &pg, &[name, "--window", window, "--compare", compare]);
        let read = &m["database"]["row_counts"];
        for (table, n) in m["database"]["transfer"]["tables"].as_object().unwrap() {
            let n = n.as_u64().unwrap();
            // The span's rows once, and the anchor's and the counts' single rows
            // (tag-drivers also reads the distinct tag lists, for its vocabulary).
            let lists = if name == "tag-drivers" && table == "intercom__conversation_enhanced" {
                tag_lists
            } else {
                0
            };
            assert!(
                n <= rows[table.as_str()] + 3 + lists,
                "{name} {compare}: {table} returned {n} of {} rows",
                rows[table.as_str()]
            );
        }
        // The window (April to June) holds about half the conversations: its own
        // rows read, not the span's.
        let window_rows = read["intercom__conversation_enhanced"].as_u64().unwrap();
        assert!(
            window_rows < rows["intercom__conversation_enhanced"] * 3 / 4,
            "{name} {compare}: {window_rows}"
        );
        assert!(returned(&m, "intercom__conversation_enhanced") > window_rows);
    }
    // With no comparison and the data starting inside the window (the demo's
    // default six months), the run reads the window's conversations alone, and the
    // events from the start of the window's first month on (the trend's month,
    // computed whole).
    let m = same_outputs(demo, &pg, &["conversation-usage", "--compare", "none"]);
    let read = &m["database"]["row_counts"];
    for table in [
        "intercom__conversation_enhanced",
        "intercom__conversation_metrics",
    ] {
        let window = read[table].as_u64().unwrap();
        let n = returned(&m, table);
        assert!(
            n >= window && n <= window + 3,
            "--compare none: {table} returned {n}, the window's {window}"
        );
    }
    let month = format!("{}-01", &m["period"].as_str().unwrap()[..7]);
    let from_month: u64 = rusqlite::Connection::open(demo)
        .unwrap()
        .query_row(
            "SELECT count(*) FROM usage_events WHERE occurred_at >= ?1",
            [&month],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(returned(&m, "usage_events"), from_month, "from {month}");
}

/// Every table and column of `schema` renamed to upper case, quoted, as a Snowflake
/// export creates them (`"USAGE_EVENTS"."COMPANY_ID"`).
fn upper_case_everything(url: &str, schema: &str) {
    client(url)
        .batch_execute(&format!(
            "DO $$ DECLARE r record; BEGIN
               FOR r IN SELECT table_name::text AS t, column_name::text AS c
                   FROM information_schema.columns WHERE table_schema = '{schema}' LOOP
                 EXECUTE format('ALTER TABLE %I.%I RENAME COLUMN %I TO %I',
                   '{schema}', r.t, r.c, upper(r.c));
               END LOOP;
               FOR r IN SELECT table_name::text AS t FROM information_schema.tables
                   WHERE table_schema = '{schema}' LOOP
                 EXECUTE format('ALTER TABLE %I.%I RENAME TO %I', '{schema}', r.t, upper(r.t));
               END LOOP;
             END $$"
        ))
        .unwrap();
}

/// Tables and columns in upper case (a warehouse export's spelling) are read, not
/// only hinted at: every report gives the same files, byte for byte, as the same
/// rows in lower case, and `check` says it reads them under their own names.
#[test]
fn upper_case_tables_and_columns_read_the_same_as_lower_case() {
    let Some(url) = server() else { return };
    let demo = demo_db();
    let s = schema("upper");
    let pg = load(&url, demo, &s, &[]);
    upper_case_everything(&url, &s);
    let names: Vec<String> = client(&url)
        .query(
            "SELECT table_name::text FROM information_schema.tables WHERE table_schema = $1",
            &[&s],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(names.contains(&"USAGE_EVENTS".to_owned()), "{names:?}");
    assert!(!names.iter().any(|n| *n != n.to_uppercase()), "{names:?}");
    for args in [
        &["conversation-usage"][..],
        &["conversation-usage", "--compare", "shift:1m"],
        &["tag-drivers"],
        &["customer-segmentation"],
    ] {
        same_outputs(demo, &pg, args);
    }
    let dir = tempfile::tempdir().unwrap();
    let o = common::bin()
        .current_dir(dir.path())
        .args(["check", "--db", &pg])
        .output()
        .unwrap();
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    for table in [
        "usage_events",
        "intercom__company_enhanced",
        "intercom__conversation_metrics",
    ] {
        assert!(
            t.contains(&format!(
                "table `{table}` is read as `{}`",
                table.to_uppercase()
            )),
            "{t}"
        );
    }
    assert!(t.contains("`COMPANY_ID`"), "{t}");
    assert!(!t.contains("not read"), "{t}");
    let _ = client(&url).batch_execute(&format!("DROP SCHEMA {s} CASCADE"));
}

/// Every column of every table of `schema` as `text`, as a warehouse export that
/// writes every column as text (a CSV dump loaded without types) holds them.
fn every_column_text(url: &str, schema: &str) {
    client(url)
        .batch_execute(&format!(
            "DO $$ DECLARE r record; BEGIN
               FOR r IN SELECT table_name::text AS t, column_name::text AS c
                   FROM information_schema.columns
                   WHERE table_schema = '{schema}' AND data_type <> 'text' LOOP
                 EXECUTE format('ALTER TABLE %I.%I ALTER COLUMN %I TYPE text USING %I::text',
                   '{schema}', r.t, r.c, r.c);
               END LOOP;
             END $$"
        ))
        .unwrap();
    let typed: i64 = client(url)
        .query_one(
            "SELECT count(*) FROM information_schema.columns \
             WHERE table_schema = $1 AND data_type <> 'text'",
            &[&schema],
        )
        .unwrap()
        .get(0);
    assert_eq!(typed, 0, "every column of {schema} is text");
}

/// A copy of the demo changed by `sql` in `dir` (SQLite), and the same rows loaded
/// into schema `name` of the server (PostgreSQL, the package's types): its URL.
fn both_copies(url: &str, dir: &Path, name: &str, sql: &str) -> (PathBuf, String) {
    let file = dir.join(format!("{name}.sqlite"));
    std::fs::copy(demo_db(), &file).unwrap();
    rusqlite::Connection::open(&file)
        .unwrap()
        .execute_batch(sql)
        .unwrap();
    let pg = load(url, &file, &schema(name), &[]);
    (file, pg)
}

/// `cxreport check --db db` with `extra`, run in `dir` (no schedules.toml there).
fn check_in(dir: &Path, db: &str, extra: &[&str]) -> std::process::Output {
    common::bin()
        .current_dir(dir)
        .args(["check", "--db", db])
        .args(extra)
        .output()
        .unwrap()
}

/// `check` on both databases with `extra`: the same exit and the same problems and
/// failures (its `- ` lines, the database's name aside). Returns PostgreSQL's text.
fn same_check(dir: &Path, sqlite: &Path, pg: &str, extra: &[&str]) -> (Option<i32>, String) {
    let sqlite = sqlite.to_str().unwrap();
    let (a, b) = (check_in(dir, sqlite, extra), check_in(dir, pg, extra));
    let lines = |o: &std::process::Output, db: &str| -> Vec<String> {
        text(o)
            .replace(db, "<db>")
            .lines()
            .filter(|l| l.starts_with("- "))
            .map(str::to_owned)
            .collect()
    };
    assert_eq!(
        a.status.code(),
        b.status.code(),
        "{extra:?}\n--- sqlite\n{}\n--- postgresql\n{}",
        text(&a),
        text(&b)
    );
    assert_eq!(lines(&a, sqlite), lines(&b, pg), "{extra:?}");
    (b.status.code(), text(&b))
}

/// The CSVs of a `--data-only` run of `args` on `db` (it must succeed), by name.
fn data_only_csvs(db: &str, args: &[&str]) -> Vec<(String, String)> {
    let out = tempfile::tempdir().unwrap();
    let mut a = vec!["run"];
    a.extend_from_slice(args);
    a.extend_from_slice(&[
        "--db",
        db,
        "--out",
        out.path().to_str().unwrap(),
        "--data-only",
        "--as-of",
        "2024-07-01T00:00:00Z",
    ]);
    let o = run(&a);
    assert!(o.status.success(), "{args:?} on {db}: {}", text(&o));
    let dir = String::from_utf8_lossy(&o.stdout)
        .lines()
        .last()
        .unwrap_or_default()
        .trim()
        .to_owned();
    let csvs = common::cases::csvs(Path::new(&dir));
    assert!(!csvs.is_empty(), "{args:?}: no CSV in {dir}");
    csvs
}

/// Issue 28, `check`'s value sampling on PostgreSQL: a warehouse export with every
/// column as text. The demo's own values are all read as their types (check is ok,
/// nothing "cannot be read"); the values the SQLite test breaks (times that are no
/// time, a spend of `n/a`, `is_core = 'maybe'`, text flags that are fine) give the
/// same lines, counts and samples; a run stops where check said; an optional
/// column's unreadable times are a note.
#[test]
fn check_samples_values_that_cannot_be_read_as_their_type_from_postgresql() {
    let Some(url) = server() else { return };
    let dir = tempfile::tempdir().unwrap();
    let s = schema("text_export");
    let pg = load(&url, demo_db(), &s, &[]);
    every_column_text(&url, &s);
    let o = check_in(dir.path(), &pg, &[]);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(!t.contains("cannot be read as"), "{t}");

    let (file, pg) = both_copies(
        &url,
        dir.path(),
        "bad_values",
        common::cases::UNREADABLE_VALUES,
    );
    let s = schema("bad_values");
    every_column_text(&url, &s);
    let rows = |table: &str| -> u64 {
        let n: i64 = client(&url)
            .query_one(&format!("SELECT count(*) FROM {s}.{table}"), &[])
            .unwrap()
            .get(0);
        n as u64
    };
    let o = check_in(dir.path(), &pg, &[]);
    let t = text(&o);
    assert!(!o.status.success(), "{t}");
    assert!(!t.contains("ok:"), "{t}");
    for line in common::cases::unreadable_value_lines(rows) {
        assert!(t.contains(&line), "{line}\n{t}");
    }
    assert!(!t.contains("values not checked"), "{t}");
    // The same truths as from the file.
    same_check(dir.path(), &file, &pg, &[]);
    // The run agrees: it stops at the spend it cannot read.
    let o = run(&[
        "run",
        "tag-drivers",
        "--db",
        &pg,
        "--out",
        dir.path().join("out").to_str().unwrap(),
        "--data-only",
        "--as-of",
        "2024-07-01T00:00:00Z",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("\"n/a\""), "{}", text(&o));

    // An optional column: a note of what is empty, and check is still ok.
    let (_, pg) = both_copies(
        &url,
        dir.path(),
        "bad_activity",
        common::cases::UNREADABLE_ACTIVITY,
    );
    every_column_text(&url, &schema("bad_activity"));
    let o = check_in(dir.path(), &pg, &[]);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(common::cases::has_unreadable_activity_note(&t), "{t}");
    for name in ["text_export", "bad_values", "bad_activity"] {
        let _ = client(&url).batch_execute(&format!("DROP SCHEMA {} CASCADE", schema(name)));
    }
}

/// Issue 28, empty never 0 % on PostgreSQL: usage events keyed by the product's own
/// account id, read from the server, leave conversion and retention empty with the
/// reason in summary.json, the CSVs and both PDFs (no "(0 of", no 0.0 % on a usage
/// line, no empty clause), exit 0; `check` fails saying no event matches; with
/// `usage_company_key` the numbers are the demo's.
#[test]
fn events_keyed_by_another_id_leave_usage_empty_with_the_reason_from_postgresql() {
    let Some(url) = server() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (file, pg) = both_copies(
        &url,
        dir.path(),
        "mis_keyed",
        common::cases::MIS_KEYED_EVENTS,
    );
    let o = run(&[
        "run",
        "conversation-usage",
        "--db",
        &pg,
        "--out",
        dir.path().join("out").to_str().unwrap(),
        "--as-of",
        "2024-07-01T00:00:00Z",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let run_dir = PathBuf::from(
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .last()
            .unwrap_or_default()
            .trim(),
    );
    common::cases::assert_usage_empty_with_the_reason(&run_dir);
    let (code, t) = same_check(dir.path(), &file, &pg, &[]);
    assert_ne!(code, Some(0), "{t}");
    assert!(common::cases::check_says_no_event_matches(&t), "{t}");

    let m = dir.path().join("m.toml");
    std::fs::write(&m, "usage_company_key = \"account_id\"\n").unwrap();
    let m = m.to_str().unwrap();
    same_outputs(&file, &pg, &["conversation-usage", "--mapping", m]);
    assert_eq!(
        data_only_csvs(&pg, &["conversation-usage", "--mapping", m]),
        data_only_csvs(demo_db().to_str().unwrap(), &["conversation-usage"]),
        "mapped, the server's rows give the demo's numbers"
    );
    let _ = client(&url).batch_execute(&format!("DROP SCHEMA {} CASCADE", schema("mis_keyed")));
}

/// Issue 28 on PostgreSQL, bullet by bullet where the server reads the rows: segments
/// as `Stage: Churn Watch` tags with a prefix, as a `lifecycle_stage` column, as names
/// of one's own through `segment_values`, bucket columns in the users' spelling; a rule
/// that matches nothing and every company in the fallback (refused); a missing
/// optional `conversation_assignee_type`; paying by `spend_column` and `paying =
/// "all"`, and no paying company (refused by both reports); `is_core` as the text
/// flags warehouses write. Each gives the same files, byte for byte, or the same
/// refusal as the same rows in SQLite, and `check` the same problems and exit; where
/// the rows are the demo's spelled another way, the numbers are the demo's.
#[test]
fn the_users_spellings_and_definitions_read_the_same_from_postgresql() {
    let Some(url) = server() else { return };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let demo = demo_db().to_str().unwrap();
    let mapping = |name: &str, text: &str| {
        let p = d.join(name);
        std::fs::write(&p, text).unwrap();
        p.to_str().unwrap().to_owned()
    };
    let mut schemas = Vec::new();

    // Segments the users' way: tags with a prefix of their own and a column.
    let (file, pg) = both_copies(
        &url,
        d,
        "staged",
        "ALTER TABLE intercom__company_enhanced ADD COLUMN lifecycle_stage TEXT;
         UPDATE intercom__company_enhanced SET lifecycle_stage = CASE
             WHEN all_company_tags LIKE '%segment:renewal%' THEN 'Renewal'
             WHEN all_company_tags LIKE '%segment:churn_watch%' THEN 'Churn Watch'
             WHEN all_company_tags LIKE '%segment:expansion%' THEN 'Expansion'
             WHEN all_company_tags LIKE '%segment:new_contract%' THEN 'New Contract' END;
         UPDATE intercom__company_enhanced SET all_company_tags =
             replace(replace(replace(replace(all_company_tags,
               'segment:renewal', 'Stage: Renewal'), 'segment:churn_watch', 'Stage: Churn Watch'),
               'segment:expansion', 'Stage: Expansion'), 'segment:new_contract', 'Stage: New Contract');",
    );
    schemas.push("staged");
    let by_tag = mapping(
        "tag.toml",
        "segment_tag_prefix = \"Stage: \"\nat_risk_segments = [\"Churn Watch\"]\n",
    );
    let by_column = mapping("column.toml", "segment_column = \"lifecycle_stage\"\n");
    let tag_drivers = data_only_csvs(demo, &["tag-drivers"]);
    let usage = data_only_csvs(demo, &["conversation-usage"]);
    for m in [&by_tag, &by_column] {
        for report in ["tag-drivers", "conversation-usage"] {
            same_outputs(&file, &pg, &[report, "--mapping", m]);
        }
        assert_eq!(
            data_only_csvs(&pg, &["tag-drivers", "--mapping", m]),
            tag_drivers,
            "{m}"
        );
        assert_eq!(
            data_only_csvs(&pg, &["conversation-usage", "--mapping", m]),
            usage,
            "{m}"
        );
        let (code, t) = same_check(d, &file, &pg, &["--mapping", m]);
        assert_eq!(code, Some(0), "{m}: {t}");
    }
    // Without a mapping every company falls to the fallback: refused by the runs and
    // by check, the rule tried and the keys to set named.
    for report in ["conversation-usage", "tag-drivers"] {
        same_outputs(&file, &pg, &[report]);
    }
    let (code, t) = same_check(d, &file, &pg, &[]);
    assert_eq!(code, Some(2), "{t}");
    assert!(
        t.contains("falls to \"Unknown segment\"") && t.contains("set segment_tag_prefix"),
        "{t}"
    );

    // Names of one's own, mapped to the four; unmapped, the rule matches nothing.
    let (file, pg) = both_copies(
        &url,
        d,
        "tiers",
        "UPDATE intercom__company_enhanced SET all_company_tags =
             replace(replace(replace(replace(all_company_tags,
               'segment:renewal', 'Tier: Gold'), 'segment:churn_watch', 'Tier: Bronze'),
               'segment:expansion', 'Tier: Silver'), 'segment:new_contract', 'Tier: Trial');",
    );
    schemas.push("tiers");
    let named = mapping(
        "tier-named.toml",
        "segment_tag_prefix = \"Tier: \"\n[segment_values]\nGold = \"renewal\"\n\
         Bronze = \"churn_watch\"\nSilver = \"expansion\"\nTrial = \"new_contract\"\n",
    );
    same_outputs(&file, &pg, &["tag-drivers", "--mapping", &named]);
    assert_eq!(
        data_only_csvs(&pg, &["tag-drivers", "--mapping", &named]),
        tag_drivers
    );
    let tier = mapping("tier.toml", "segment_tag_prefix = \"Tier: \"\n");
    same_outputs(&file, &pg, &["tag-drivers", "--mapping", &tier]);
    let (code, t) = same_check(d, &file, &pg, &["--mapping", &tier]);
    assert_ne!(code, Some(0), "{t}");
    assert!(
        t.contains("`segment_tag_prefix = Tier: ` matches no company") && t.contains("`Trial` ("),
        "{t}"
    );

    // Bucket columns spelled as a CRM does, the bucket tags gone: the demo's buckets.
    let (file, pg) = both_copies(
        &url,
        d,
        "bands",
        "ALTER TABLE intercom__company_enhanced ADD COLUMN seats_band TEXT;
         ALTER TABLE intercom__company_enhanced ADD COLUMN arr_band TEXT;
         ALTER TABLE intercom__company_enhanced ADD COLUMN seats_other TEXT;
         UPDATE intercom__company_enhanced SET seats_other = '1-49';
         UPDATE intercom__company_enhanced SET seats_band = CASE
             WHEN all_company_tags LIKE '%seat_bucket:seats:under~_60%' ESCAPE '~' THEN 'Under 60'
             WHEN all_company_tags LIKE '%seat_bucket:seats:60~_129%' ESCAPE '~' THEN '60-129'
             WHEN all_company_tags LIKE '%seat_bucket:seats:130~_259%' ESCAPE '~' THEN '130 - 259'
             WHEN all_company_tags LIKE '%seat_bucket:seats:260~_419%' ESCAPE '~' THEN '260–419'
             WHEN all_company_tags LIKE '%seat_bucket:seats:420~_plus%' ESCAPE '~' THEN '420+' END,
           arr_band = CASE
             WHEN all_company_tags LIKE '%arr_bucket:arr:under~_30k%' ESCAPE '~' THEN 'Under $30k'
             WHEN all_company_tags LIKE '%arr_bucket:arr:30k~_65k%' ESCAPE '~' THEN '$30k–$65k'
             WHEN all_company_tags LIKE '%arr_bucket:arr:65k~_110k%' ESCAPE '~' THEN '$65K-$110K'
             WHEN all_company_tags LIKE '%arr_bucket:arr:110k~_200k%' ESCAPE '~' THEN '110k - 200k'
             WHEN all_company_tags LIKE '%arr_bucket:arr:200k~_plus%' ESCAPE '~' THEN '$200k+' END;
         UPDATE intercom__company_enhanced SET all_company_tags =
             replace(replace(all_company_tags, 'seat_bucket:seats:', 'crm_seats:'),
               'arr_bucket:arr:', 'crm_arr:');",
    );
    schemas.push("bands");
    let bands = mapping(
        "bands.toml",
        "seat_bucket_column = \"seats_band\"\narr_bucket_column = \"arr_band\"\n",
    );
    same_outputs(&file, &pg, &["conversation-usage", "--mapping", &bands]);
    assert_eq!(
        data_only_csvs(&pg, &["conversation-usage", "--mapping", &bands]),
        usage,
        "bucket columns in the users' spelling read as the demo's tags"
    );
    // A bucket column holding values of no bucket: refused, never a silent fallback.
    let other = mapping("other.toml", "seat_bucket_column = \"seats_other\"\n");
    same_outputs(&file, &pg, &["conversation-usage", "--mapping", &other]);
    let (code, t) = same_check(d, &file, &pg, &["--mapping", &other]);
    assert_ne!(code, Some(0), "{t}");
    assert!(
        t.contains("`seat_bucket_column = seats_other` matches no company") && t.contains("`1-49`"),
        "{t}"
    );

    // An optional column missing: the run goes on, check says what is not available.
    let (file, pg) = both_copies(
        &url,
        d,
        "no_assignee",
        "ALTER TABLE intercom__conversation_enhanced DROP COLUMN conversation_assignee_type;",
    );
    schemas.push("no_assignee");
    same_outputs(&file, &pg, &["conversation-usage"]);
    let (code, t) = same_check(d, &file, &pg, &[]);
    assert_eq!(code, Some(0), "{t}");
    assert!(
        t.contains("team-routed share: not available (no conversation_assignee_type column"),
        "{t}"
    );

    // Paying by the user's own column; without it no company pays and both reports
    // stop (exit 1) as check says.
    let (file, pg) = both_copies(
        &url,
        d,
        "mrr",
        "ALTER TABLE intercom__company_enhanced ADD COLUMN mrr REAL;
         UPDATE intercom__company_enhanced SET mrr = monthly_spend, monthly_spend = NULL;",
    );
    schemas.push("mrr");
    for report in ["tag-drivers", "conversation-usage"] {
        same_outputs(&file, &pg, &[report]);
        let out = d.join(format!("none-{report}"));
        let o = run(&[
            "run",
            report,
            "--db",
            &pg,
            "--out",
            out.to_str().unwrap(),
            "--data-only",
        ]);
        assert_eq!(o.status.code(), Some(1), "{report}: {}", text(&o));
        assert!(!out.join(report).exists(), "{report}: nothing written");
        assert!(text(&o).contains("no paying company"), "{}", text(&o));
    }
    let (code, t) = same_check(d, &file, &pg, &[]);
    assert_eq!(code, Some(1), "{t}");
    assert!(
        t.contains("report `tag-drivers`: cannot run: no company has monthly_spend > 0"),
        "{t}"
    );
    let spend = mapping("spend.toml", "spend_column = \"mrr\"\n");
    for report in ["tag-drivers", "conversation-usage"] {
        same_outputs(&file, &pg, &[report, "--mapping", &spend]);
    }
    assert_eq!(
        data_only_csvs(&pg, &["tag-drivers", "--mapping", &spend]),
        tag_drivers
    );
    let (code, t) = same_check(d, &file, &pg, &["--mapping", &spend]);
    assert_eq!(code, Some(0), "{t}");
    assert!(t.contains("spend_column = mrr → "), "{t}");

    // paying = "all" for a product without spend data.
    let (file, pg) = both_copies(
        &url,
        d,
        "no_spend",
        "UPDATE intercom__company_enhanced SET monthly_spend = NULL;",
    );
    schemas.push("no_spend");
    let all = mapping("all.toml", "paying = \"all\"\n");
    for report in ["tag-drivers", "conversation-usage"] {
        same_outputs(&file, &pg, &[report, "--mapping", &all]);
    }
    let (code, t) = same_check(d, &file, &pg, &["--mapping", &all]);
    assert_eq!(code, Some(0), "{t}");
    assert!(
        t.contains("companies pay: every company counts as paying"),
        "{t}"
    );

    // is_core as the text flags warehouses write (the column is text on the server):
    // the demo's own files.
    let (_, pg) = both_copies(
        &url,
        d,
        "text_flags",
        "UPDATE usage_events SET is_core = CASE rowid % 4
             WHEN 0 THEN CASE is_core WHEN 1 THEN 'true' WHEN 0 THEN 'false' END
             WHEN 1 THEN CASE is_core WHEN 1 THEN 't' WHEN 0 THEN 'f' END
             WHEN 2 THEN CASE is_core WHEN 1 THEN 'yes' WHEN 0 THEN 'no' END
             ELSE CASE is_core WHEN 1 THEN '1' WHEN 0 THEN '0' END END;",
    );
    schemas.push("text_flags");
    let ty: String = client(&url)
        .query_one(
            "SELECT data_type::text FROM information_schema.columns \
             WHERE table_schema = $1 AND table_name = 'usage_events' AND column_name = 'is_core'",
            &[&schema("text_flags")],
        )
        .unwrap()
        .get(0);
    assert_eq!(ty, "text");
    same_outputs(demo_db(), &pg, &["conversation-usage"]);

    for name in schemas {
        let _ = client(&url).batch_execute(&format!("DROP SCHEMA {} CASCADE", schema(name)));
    }
}
