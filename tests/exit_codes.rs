//! End-to-end: each class of failure exits with its documented code (`cxreport::exit`:
//! 1 the work failed, 2 how cxreport was called or configured must change, 0 ok),
//! command family by command family, and says `error: ` once (issue 25, "one
//! exhaustive mapping from errors to exit codes").

mod common;

use std::path::Path;
use std::process::Output;
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::service::{setup, signal, stop_within, wait_for, Setup, PLAIN, TO_CEO};
use common::smtp::{free_port, smtp_server};
use common::{demo_db, run, text};
use cxreport::exit::{FAILED, OK, USAGE};

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Exit `code`, and exactly one line of standard error that starts `error: `.
fn exits(o: &Output, code: u8) -> String {
    assert_eq!(o.status.code(), Some(i32::from(code)), "{}", text(o));
    let e = stderr(o);
    let said = e.lines().filter(|l| l.starts_with("error: ")).count();
    assert_eq!(said, 1, "one `error: ` line in:\n{e}");
    e
}

/// [`exits`], with nothing on standard error before the error (a refusal before any
/// work).
fn refused(o: &Output, code: u8) -> String {
    let e = exits(o, code);
    assert!(e.starts_with("error: "), "{e}");
    e
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// `args` then `--config` of `setup`, as an operator types them.
fn with(setup: &Setup, args: &[&str]) -> Output {
    setup.cmd(args).output().unwrap()
}

#[test]
fn arguments_that_name_nothing_are_usage_errors_in_every_command_family() {
    let dir = tempfile::tempdir().unwrap();
    // The command line itself.
    refused(&run(&["rn"]), USAGE);
    refused(&run(&["run", "--window", "weekly"]), USAGE);
    let help = run(&["--help"]);
    assert_eq!(help.status.code(), Some(i32::from(OK)), "{}", text(&help));
    // `run` on a database.
    let e = refused(&run(&["run", "tag-driver"]), USAGE);
    assert!(e.contains("unknown report `tag-driver`"), "{e}");
    // The demo commands.
    let out = dir.path().join("demo.sqlite");
    refused(
        &run(&["demo-data", "--scale", "0", "--out", s(&out)]),
        USAGE,
    );
    assert!(!out.exists(), "nothing written");
    let e = refused(
        &run(&[
            "load-postgres",
            "--from",
            s(demo_db()),
            "--to",
            "postgresql://ana:s3cret@127.0.0.1/w",
        ]),
        USAGE,
    );
    assert!(e.contains("a password in the URL is refused"), "{e}");
    // The configuration-driven commands.
    let jobs = setup(free_port(), PLAIN, TO_CEO);
    let e = refused(&with(&jobs, &["run", "--job", "weekly"]), USAGE);
    assert!(e.contains("unknown job `weekly`"), "{e}");
    refused(&with(&jobs, &["history", "--job", "weekly"]), USAGE);
    refused(&with(&jobs, &["retry", "--job", "weekly"]), USAGE);
    let e = refused(&with(&jobs, &["retry", "--job", "monthly"]), USAGE);
    assert!(e.contains("has no runs yet"), "{e}");
    refused(
        &with(
            &jobs,
            &["run", "--job", "monthly", "--to", "not an address"],
        ),
        USAGE,
    );
    refused(
        &with(&jobs, &["daemon", "--clock-start", "yesterday"]),
        USAGE,
    );
    refused(&with(&jobs, &["status", "--max-age", "1"]), USAGE);
}

#[test]
fn a_configuration_that_does_not_load_is_a_usage_error_for_each_command_reading_it() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("schedules.toml");
    for cmd in ["schedule", "history", "status", "daemon"] {
        let e = refused(&run(&[cmd, "--config", s(&missing)]), USAGE);
        assert!(e.contains("cannot read"), "{cmd}: {e}");
    }
    std::fs::write(&missing, "[[job]]\nname = 1\n").unwrap();
    refused(&run(&["run", "--job", "x", "--config", s(&missing)]), USAGE);
    let o = run(&["check", "--config", s(&missing)]);
    exits(&o, USAGE);
}

#[test]
fn a_database_that_is_missing_or_lacks_tables_is_the_users_one_that_holds_nothing_is_not() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let missing = dir.path().join("missing.sqlite");
    let o = run(&["run", "--db", s(&missing), "--out", s(&out)]);
    let e = exits(&o, USAGE);
    assert!(e.contains("cannot open database"), "{e}");
    let empty = dir.path().join("empty.sqlite");
    rusqlite::Connection::open(&empty)
        .unwrap()
        .execute_batch("CREATE TABLE unrelated (a TEXT);")
        .unwrap();
    let o = run(&["run", "tag-drivers", "--db", s(&empty), "--out", s(&out)]);
    let e = exits(&o, USAGE);
    assert!(
        e.contains("is missing what report `tag-drivers` needs"),
        "{e}"
    );
    // The data as it is: every conversation after the reference time.
    let o = run(&[
        "run",
        "--db",
        s(demo_db()),
        "--out",
        s(&out),
        "--as-of",
        "2019-01-01T00:00:00Z",
    ]);
    let e = exits(&o, FAILED);
    assert!(e.contains("the data's conversations are all later"), "{e}");
}

#[test]
fn check_exits_as_the_runs_would() {
    let dir = tempfile::tempdir().unwrap();
    let jobs = setup(free_port(), PLAIN, TO_CEO);
    let o = with(&jobs, &["check"]);
    assert_eq!(o.status.code(), Some(i32::from(OK)), "{}", text(&o));
    // The mail server refuses: a run would fail on it as it is.
    let o = with(&jobs, &["check", "--smtp"]);
    let e = exits(&o, FAILED);
    assert!(e.contains("a run would fail"), "{e}");
    // A database without the report's tables: it must change.
    let empty = dir.path().join("empty.sqlite");
    rusqlite::Connection::open(&empty)
        .unwrap()
        .execute_batch("CREATE TABLE unrelated (a TEXT);")
        .unwrap();
    let o = with(&jobs, &["check", "--db", s(&empty)]);
    exits(&o, USAGE);
}

/// A delivery that fails is a failed run (1), and so is the `history` whose latest
/// run it is and the `retry` that cannot send either; the daemon never ran, so
/// `status` is not healthy (1).
#[test]
fn a_delivery_that_fails_and_what_reads_it_afterwards_exit_1() {
    let jobs = setup(free_port(), PLAIN, TO_CEO);
    let o = jobs.run(&["--send"]);
    exits(&o, FAILED);
    let o = with(&jobs, &["history"]);
    let e = exits(&o, FAILED);
    assert!(e.contains("the latest run failed for: monthly"), "{e}");
    let o = with(&jobs, &["retry", "--job", "monthly"]);
    exits(&o, FAILED);
    let o = with(&jobs, &["retry", "--job", "monthly", "--period", "1999"]);
    let e = refused(&o, USAGE);
    assert!(e.contains("has no run for period `1999`"), "{e}");
    let o = with(&jobs, &["status"]);
    let e = exits(&o, FAILED);
    assert!(e.contains("not healthy"), "{e}");
}

/// The first SIGTERM lets the delivery in flight finish (up to the stop grace of
/// 10 s); a second one ends the process at once, with 1.
#[test]
fn a_second_signal_ends_the_process_at_once_with_1() {
    let server = smtp_server(&[], Some(0));
    let jobs = setup(server.port, PLAIN, TO_CEO);
    let mut child = jobs.spawn(&[
        "run",
        "--job",
        "monthly",
        "--as-of",
        "2024-07-01T08:00:00Z",
        "--send",
    ]);
    wait_for("the delivery to start", 120, || {
        server.state.lock().unwrap().data_ends >= 1
    });
    signal(&child, "TERM");
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        child.try_wait().unwrap().is_none(),
        "the first signal waits for the delivery in flight"
    );
    let (status, took) = stop_within(&mut child, 30);
    server.release.store(true, Ordering::SeqCst);
    assert_eq!(status.code(), Some(i32::from(FAILED)), "{status:?}");
    assert!(
        took < Duration::from_secs(5),
        "at once, not after the grace: {took:?}"
    );
}
