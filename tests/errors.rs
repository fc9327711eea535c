//! End-to-end: errors that say what was expected and what to do next, once; and a
//! `check` whose exit code tells the truth (issue 30, "Errors that do not say what to
//! do" and "`check` says ok when the run will fail").

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::smtp::{free_port, smtp_server, starttls_login_server, tls_dir};
use common::{demo_db, run, text};

/// Exit `code`, and every one of `wants` in the output exactly once.
fn says_once(o: &Output, code: i32, wants: &[&str]) -> String {
    let t = text(o);
    assert_eq!(o.status.code(), Some(code), "{t}");
    for want in wants {
        assert_eq!(t.matches(want).count(), 1, "{want:?} once in:\n{t}");
    }
    t
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A configuration file in `dir` with `body`.
fn config(dir: &Path, body: &str) -> PathBuf {
    let path = dir.join("schedules.toml");
    std::fs::write(&path, body).unwrap();
    path
}

#[test]
fn an_as_of_that_is_a_date_alone_names_the_instant_to_write() {
    let o = run(&["run", "--as-of", "2024-07-01"]);
    let t = says_once(
        &o,
        2,
        &["not an RFC 3339 instant: a date needs a time and an offset; for midnight UTC write 2024-07-01T00:00:00Z"],
    );
    assert!(!t.contains("premature"), "{t}");
    let o = run(&["run", "--as-of", "July"]);
    says_once(&o, 2, &["write it like 2024-07-01T00:00:00Z"]);
}

#[test]
fn an_as_of_before_the_data_says_when_the_data_is() {
    let out = tempfile::tempdir().unwrap();
    let o = run(&[
        "run",
        "--db",
        s(demo_db()),
        "--out",
        s(out.path()),
        "--as-of",
        "2019-01-01T00:00:00Z",
    ]);
    let t = says_once(
        &o,
        1,
        &[
            "the data's conversations are all later: they run from ",
            " to 2024-06-15; give a reference time after ",
            "(e.g. `--as-of 2024-07-01T00:00:00Z`)",
        ],
    );
    assert!(!t.contains("no conversation has a readable"), "{t}");
}

#[test]
fn a_calendar_window_after_the_data_suggests_a_rolling_one() {
    let out = tempfile::tempdir().unwrap();
    // Cut at the real now: the demo's data ended in 2024.
    let o = run(&[
        "run",
        "--db",
        s(demo_db()),
        "--out",
        s(out.path()),
        "--window",
        "calendar:6m",
    ]);
    says_once(
        &o,
        1,
        &[
            "no conversations in window ",
            "the data's conversations run from ",
            " to 2024-06-15",
            "use the window `rolling:6m`",
            "`--as-of 2024-07-01T00:00:00Z`",
        ],
    );
}

#[test]
fn a_missing_configuration_says_so_once_and_how_to_give_one() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("schedules.toml");
    for cmd in ["schedule", "check", "history", "daemon"] {
        let o = run(&[cmd, "--config", s(&missing)]);
        says_once(
            &o,
            2,
            &[
                "No such file or directory (os error 2)",
                "give the configuration with `--config <file>`",
            ],
        );
    }
}

#[test]
fn a_file_that_is_not_a_database_is_said_once() {
    let dir = tempfile::tempdir().unwrap();
    let notes = dir.path().join("notes.sqlite");
    std::fs::write(&notes, "just some notes, not a database at all........").unwrap();
    let o = run(&["run", "--db", s(&notes)]);
    says_once(&o, 2, &["file is not a database"]);
}

#[test]
fn mistyped_commands_reports_and_options_get_the_one_meant() {
    // clap's own tip named the hidden `run-worker`.
    let o = run(&["rn"]);
    let t = says_once(&o, 2, &["unknown command `rn`; did you mean `run`?"]);
    assert!(!t.contains("run-worker"), "{t}");
    let o = run(&["run", "tag-driver", "--db", s(demo_db())]);
    says_once(
        &o,
        2,
        &["unknown report `tag-driver`; did you mean `tag-drivers`?"],
    );
    let o = run(&["run", "--min-p", "5"]);
    let t = says_once(&o, 2, &["'--min-p' found"]);
    assert!(t.contains("'--min-pp'"), "{t}");
    // An option of another report names that report.
    let out = tempfile::tempdir().unwrap();
    let o = run(&[
        "run",
        "conversation-usage",
        "--db",
        s(demo_db()),
        "--out",
        s(out.path()),
        "--min-pp",
        "5",
    ]);
    says_once(
        &o,
        2,
        &["report `conversation-usage` has no option `min_pp`; it is an option of `tag-drivers`"],
    );
}

#[test]
fn configuration_problems_name_the_job_and_the_key_meant() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        r#"[defaults]
database = "demo"
[[job]]
name = "monthly-brief"
cron = "0 8 1 * *"
window = "weekly"
catchpu = "all"
[[job]]
name = "segments"
report = "customer-segmentation"
cron = "0 8 1 * *"
window = "rolling:6m"
[job.mapping]
at_risk_tag = ["Red Flag"]
"#,
    );
    let o = run(&["check", "--config", s(&cfg)]);
    let t = says_once(
        &o,
        2,
        &[
            "`job \"monthly-brief\".window`: window `weekly`",
            "`job \"monthly-brief\".catchpu`: `catchpu` is not a job key, and report `conversation-usage` has no option `catchpu`; did you mean the job key `catchup`?",
            "`job \"segments\".window`: report `customer-segmentation` has no option `window`; it describes the data as of the run's reference time",
            "unknown key `at_risk_tag`; did you mean `at_risk_tags`?",
        ],
    );
    assert!(!t.contains("job[0]") && !t.contains("job[1]"), "{t}");
}

#[test]
fn customer_segmentation_refuses_a_window_it_would_ignore() {
    let out = tempfile::tempdir().unwrap();
    let o = run(&[
        "run",
        "customer-segmentation",
        "--db",
        s(demo_db()),
        "--out",
        s(out.path()),
        "--window",
        "rolling:3m",
    ]);
    says_once(
        &o,
        2,
        &["report `customer-segmentation` takes no --window: it describes the data as of the run's reference time (a snapshot: `--as-of`"],
    );
    assert_eq!(std::fs::read_dir(out.path()).unwrap().count(), 0);
    // Without --window it runs.
    let o = run(&[
        "run",
        "customer-segmentation",
        "--db",
        s(demo_db()),
        "--out",
        s(out.path()),
        "--data-only",
    ]);
    assert!(o.status.success(), "{}", text(&o));
}

#[test]
fn addresses_without_a_dot_in_the_domain_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let body = |to: &str| {
        format!(
            "[defaults]\ndatabase = \"demo\"\n[smtp]\noutbox = \"mail\"\nfrom = \"r@example.com\"\n\
             [[job]]\nname = \"monthly\"\ncron = \"0 8 1 * *\"\n[job.recipients]\nen = [\"{to}\"]\n"
        )
    };
    let cfg = config(dir.path(), &body("ceo@example"));
    let o = run(&["check", "--config", s(&cfg)]);
    says_once(
        &o,
        2,
        &["`job \"monthly\".recipients.en[0]`: `ceo@example`: the domain `example` has no dot"],
    );
    let cfg = config(dir.path(), &body("ceo@example.com"));
    let o = run(&[
        "run",
        "--job",
        "monthly",
        "--config",
        s(&cfg),
        "--to",
        "me@laptop",
    ]);
    says_once(&o, 2, &["--to `me@laptop`: the domain `laptop` has no dot"]);
}

#[test]
fn check_fails_when_a_report_or_job_would_fail_on_the_data() {
    let dir = tempfile::tempdir().unwrap();
    // dbt_intercom as built: no company pays, so conversation-usage and tag-drivers
    // stop with exit 1; no users/events tables, so customer-segmentation cannot run.
    let seed =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/dbt-intercom-seed.sqlite");
    let o = common::bin()
        .current_dir(dir.path())
        .args(["check", "--db", s(&seed)])
        .output()
        .unwrap();
    // No report can run there: the data (or the mapping's spend_column) must change.
    let t = says_once(
        &o,
        2,
        &[
            "- report `conversation-usage`: cannot run: no company has monthly_spend > 0",
            "- report `tag-drivers`: cannot run: no company has monthly_spend > 0",
            "no report can run",
        ],
    );
    assert!(!t.contains("ok:"), "{t}");
    // The demo: every report can run, and check says ok.
    let o = common::bin()
        .current_dir(dir.path())
        .args(["check", "--db", s(demo_db())])
        .output()
        .unwrap();
    says_once(&o, 0, &[&format!("ok: {}", demo_db().display())]);
    // A job on the seed names itself.
    let cfg = config(
        dir.path(),
        &format!(
            "[defaults]\ndatabase = \"{}\"\n[[job]]\nname = \"leadership\"\ncron = \"0 8 1 * *\"\n",
            seed.display()
        ),
    );
    let o = run(&["check", "--config", s(&cfg)]);
    // The seed's companies have no segment either: a mapping to set (exit 2).
    let t = says_once(
        &o,
        2,
        &[
            "- job `leadership` cannot run: no company has monthly_spend > 0",
            "- job `leadership`: mapping: every one of the 9 companies falls to \"Unknown segment\"",
        ],
    );
    assert!(!t.contains("ok:"), "{t}");
    // A calendar window cut now, on data that ended in 2024: the run would find no
    // conversation, and check says so with the window to use.
    let cfg = config(
        dir.path(),
        &format!(
            "[defaults]\ndatabase = \"{}\"\n[[job]]\nname = \"leadership\"\ncron = \"0 8 1 * *\"\nwindow = \"calendar:6m\"\n",
            demo_db().display()
        ),
    );
    let o = run(&["check", "--config", s(&cfg)]);
    says_once(
        &o,
        1,
        &[
            "- job `leadership` cannot run: a run at ",
            "the data's conversations run from ",
            "use the window `rolling:6m`",
        ],
    );
    let cfg = config(
        dir.path(),
        &format!(
            "[defaults]\ndatabase = \"{}\"\n[[job]]\nname = \"leadership\"\ncron = \"0 8 1 * *\"\nwindow = \"rolling:6m\"\n",
            demo_db().display()
        ),
    );
    let o = run(&["check", "--config", s(&cfg)]);
    says_once(&o, 0, &[&format!("ok: {}", cfg.display())]);
}

/// A configuration with SMTP to 127.0.0.1:`port` and `smtp` lines.
fn smtp_config(dir: &Path, port: u16, smtp: &str) -> PathBuf {
    config(
        dir,
        &format!(
            "[defaults]\ndatabase = \"demo\"\n[smtp]\nhost = \"127.0.0.1\"\nport = {port}\n\
             from = \"r@example.com\"\ntimeout_secs = 5\n{smtp}\n\
             [[job]]\nname = \"monthly\"\ncron = \"0 8 1 * *\"\n"
        ),
    )
}

#[test]
fn check_smtp_connects_without_sending() {
    let dir = tempfile::tempdir().unwrap();
    // Nothing listens: refused, named by host and port.
    let port = free_port();
    let cfg = smtp_config(dir.path(), port, "tls = \"none\"");
    let o = run(&["check", "--config", s(&cfg), "--smtp"]);
    says_once(
        &o,
        1,
        &[&format!(
            "SMTP 127.0.0.1:{port}: connection refused — is the server running, and is the port right?"
        )],
    );
    // Without --smtp the server is not tried.
    let o = run(&["check", "--config", s(&cfg)]);
    assert!(o.status.success(), "{}", text(&o));
    // A server that answers: connected, and nothing was sent.
    let server = smtp_server(&[], None);
    let cfg = smtp_config(dir.path(), server.port, "tls = \"none\"");
    let o = run(&["check", "--config", s(&cfg), "--smtp"]);
    says_once(
        &o,
        0,
        &[&format!(
            "smtp: 127.0.0.1:{}: connected, nothing sent",
            server.port
        )],
    );
    assert_eq!(server.state.lock().unwrap().data_ends, 0);
}

#[test]
fn check_smtp_negotiates_tls_and_logs_in() {
    let dir = tempfile::tempdir().unwrap();
    // Takes one login, `reports` / `right`, over STARTTLS.
    let port = starttls_login_server("reports", "right").port;
    let smtp = format!(
        "tls = \"starttls\"\nca_file = \"{}\"\nusername = \"reports\"\npassword_env = \"CX_TEST_SMTP_PASSWORD\"",
        tls_dir().join("ca.pem").display()
    );
    let cfg = smtp_config(dir.path(), port, &smtp);
    let check = |password: &str| {
        common::bin()
            .args(["check", "--config", s(&cfg), "--smtp"])
            .env("CX_TEST_SMTP_PASSWORD", password)
            .output()
            .unwrap()
    };
    says_once(
        &check("right"),
        0,
        &["connected, STARTTLS negotiated, logged in as `reports`, nothing sent"],
    );
    says_once(
        &check("wrong"),
        1,
        &[&format!(
            "SMTP 127.0.0.1:{port}: the server refused the login of `reports`"
        )],
    );
    // Without the CA the certificate is not trusted: a TLS failure, said as such.
    let cfg = smtp_config(
        dir.path(),
        port,
        "tls = \"starttls\"\nusername = \"reports\"\npassword_env = \"CX_TEST_SMTP_PASSWORD\"",
    );
    let o = common::bin()
        .args(["check", "--config", s(&cfg), "--smtp"])
        .env("CX_TEST_SMTP_PASSWORD", "right")
        .output()
        .unwrap();
    says_once(&o, 1, &["TLS failed", "smtp.ca_file"]);
}

/// Every error that carries an I/O or driver cause says it once when printed with its
/// chain, as the CLI prints errors (`{:#}`): the cause is in the message and is not
/// also the error's `source`.
#[test]
fn errors_printed_with_their_chain_say_the_cause_once() {
    use cxreport::demo::postgres::CopyError;
    use cxreport::demo::DemoError;
    use cxreport::jobs::config::ConfigError;
    use cxreport::jobs::ledger::LedgerError;
    use cxreport::render::NarrativeError;
    use cxreport::run::output::OutputError;
    use cxreport::run::worker::WorkerError;
    use cxreport::run::RunError;
    use cxreport::source::{DataError, DriverError};

    let io = || std::io::Error::new(std::io::ErrorKind::NotFound, "the io tail");
    let sqlite = || rusqlite::Error::InvalidQuery;
    let driver = || DriverError("the driver tail".into());
    let p = || PathBuf::from("p");
    let cases: Vec<(anyhow::Error, String)> = vec![
        (
            ConfigError::Read {
                path: p(),
                cause: io(),
            }
            .into(),
            io().to_string(),
        ),
        (
            LedgerError::Io {
                path: p(),
                cause: io(),
            }
            .into(),
            io().to_string(),
        ),
        (
            LedgerError::Sqlite {
                path: p(),
                cause: sqlite(),
            }
            .into(),
            sqlite().to_string(),
        ),
        (
            RunError::from(DataError::Open {
                db: "d".into(),
                cause: driver(),
            })
            .into(),
            driver().to_string(),
        ),
        (
            DataError::Query {
                db: "d".into(),
                table: "t",
                cause: driver(),
            }
            .into(),
            driver().to_string(),
        ),
        (
            NarrativeError::Read {
                path: p(),
                cause: io(),
            }
            .into(),
            io().to_string(),
        ),
        (
            CopyError::Read {
                path: p(),
                cause: sqlite(),
            }
            .into(),
            sqlite().to_string(),
        ),
        (
            DemoError::Io {
                path: p(),
                cause: io(),
            }
            .into(),
            io().to_string(),
        ),
        (
            DemoError::Sqlite {
                path: p(),
                cause: sqlite(),
            }
            .into(),
            sqlite().to_string(),
        ),
        (
            OutputError::Io {
                path: p(),
                cause: io(),
            }
            .into(),
            io().to_string(),
        ),
        (
            WorkerError::Spawn {
                exe: p(),
                cause: io(),
            }
            .into(),
            io().to_string(),
        ),
        (
            RunError::Hash {
                path: p(),
                cause: io(),
            }
            .into(),
            io().to_string(),
        ),
    ];
    for (e, tail) in cases {
        let printed = format!("{e:#}");
        assert_eq!(printed.matches(&tail).count(), 1, "{printed}");
    }
}
