//! Issue 30, "no surprises": what cxreport does to files, owners and recipients that
//! an operator would not expect. The binary end to end, with the SMTP server of
//! `common::smtp` in this process and the daemon on a rehearsal clock.

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Output};
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::service::{self, setup, stop, subjects, wait_for, PLAIN};
use common::smtp::{attachment, free_port, header, plain_text, smtp_server, smtp_server_on};
use common::text;
use cxreport::jobs::ledger::Ledger;

/// The binary under `umask` (a shell sets it, then becomes cxreport).
fn under_umask(umask: &str, args: &[&str]) -> Output {
    Command::new("sh")
        .arg("-c")
        .arg(format!("umask {umask} && exec \"$0\" \"$@\""))
        .arg(service::bin())
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap()
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

fn host() -> String {
    hostname::get().unwrap().into_string().unwrap()
}

/// Point 1: `demo-data` replaces only a demo database it wrote; anything else needs
/// `--force`; what it writes follows the umask.
#[test]
fn demo_data_does_not_overwrite_what_it_did_not_write() {
    let dir = tempfile::tempdir().unwrap();
    let precious = dir.path().join("precious.sqlite");
    std::fs::write(&precious, "id,amount\n1,100\n").unwrap();
    let foreign = dir.path().join("mine.sqlite");
    rusqlite::Connection::open(&foreign)
        .unwrap()
        .execute_batch("CREATE TABLE ledger (x); INSERT INTO ledger VALUES (42);")
        .unwrap();
    let foreign_bytes = std::fs::read(&foreign).unwrap();
    for (file, before) in [
        (&precious, b"id,amount\n1,100\n".to_vec()),
        (&foreign, foreign_bytes),
    ] {
        let o = under_umask("022", &["demo-data", "--out", file.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(2), "{}", text(&o));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            err.starts_with("error: ")
                && err.contains(&file.display().to_string())
                && err.contains("--force"),
            "{err}"
        );
        assert_eq!(std::fs::read(file).unwrap(), before, "left as it was");
    }
    // A demo database it wrote is replaced without asking, under the umask's mode.
    let demo = dir.path().join("demo.sqlite");
    for _ in 0..2 {
        let o = under_umask("027", &["demo-data", "--out", demo.to_str().unwrap()]);
        assert!(o.status.success(), "{}", text(&o));
        assert_eq!(mode(&demo), 0o640);
    }
    // --force replaces the CSV.
    let o = under_umask(
        "022",
        &["demo-data", "--force", "--out", precious.to_str().unwrap()],
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(std::fs::read(&precious)
        .unwrap()
        .starts_with(b"SQLite format 3\0"));
    assert_eq!(mode(&precious), 0o644);
}

/// Point 2: A run's directory, its files and the outbox's `.eml` files get the mode the
/// umask gives, not 0600/0700.
#[test]
fn outputs_and_outbox_files_follow_the_umask() {
    let s = setup(free_port(), PLAIN, service::TO_CEO);
    let outbox = s.dir.path().join("outbox");
    let cfg = s.config.to_str().unwrap();
    let o = under_umask(
        "027",
        &[
            "run",
            "--job",
            "monthly",
            "--config",
            cfg,
            "--as-of",
            "2024-07-01T08:00:00Z",
            "--outbox",
            outbox.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    let run = s.dir.path().join("out/monthly/2023-12-15_2024-06-15");
    assert_eq!(mode(&run), 0o750, "{}", run.display());
    let mut files = 0;
    for e in std::fs::read_dir(&run).unwrap() {
        let p = e.unwrap().path();
        let want = if p.is_dir() { 0o750 } else { 0o640 };
        assert_eq!(mode(&p), want, "{}", p.display());
        files += 1;
    }
    assert!(files >= 4, "{files} files in {}", run.display());
    let emls: Vec<_> = std::fs::read_dir(&outbox)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(emls.len(), 1, "{emls:?}");
    assert_eq!(mode(&emls[0]), 0o640, "{}", emls[0].display());
}

/// Point 3a: A planned shutdown during the deliveries: the owners hear that the run was
/// interrupted and resumes (not that it failed), with the host name; the next start
/// sends what was left.
#[test]
fn a_planned_shutdown_is_reported_as_interrupted_and_resumes() {
    let server = smtp_server(&[], None);
    server.state.lock().unwrap().hold_after_accept = true;
    let s = setup(
        server.port,
        PLAIN,
        "owners = [\"owner@example.com\"]\n[job.recipients]\nen = [\"ceo@example.com\", \"coo@example.com\"]",
    );
    let mut daemon = s.spawn(&["daemon", "--clock-start", "2025-01-01T07:59:59Z"]);
    wait_for("the first delivery", 120, || server.accepted() >= 1);
    service::signal(&daemon, "TERM");
    std::thread::sleep(Duration::from_millis(500));
    server.release.store(true, Ordering::SeqCst);
    // One signal: the daemon ends the delivery in flight, then stops by itself.
    wait_for("the daemon to stop", 60, || {
        daemon.try_wait().unwrap().is_some()
    });
    assert_eq!(daemon.wait().unwrap().code(), Some(0));
    assert_eq!(server.accepted(), 1, "the second one waits");
    // Kept for the next start, saying what happened.
    let kept: Vec<(String, String)> = {
        let db = rusqlite::Connection::open(s.state()).unwrap();
        let mut q = db
            .prepare("SELECT subject, body FROM alerts WHERE state = 'pending'")
            .unwrap();
        q.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert!(kept[0].0.contains("interrupted by shutdown"), "{kept:?}");
    // The next start, on the rehearsal clock a minute on: the deliveries and the
    // alert wait on the clock that kept them; the schedule has nothing due.
    let mut daemon = s.spawn(&["daemon", "--clock-start", "2025-01-01T08:01:00Z"]);
    wait_for("the rest and the alert", 120, || server.accepted() >= 3);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(stop(&mut daemon).code(), Some(0));
    let state = server.state.lock().unwrap();
    assert_eq!(state.accepted.len(), 3);
    let alert = state
        .accepted
        .iter()
        .find(|m| m.to == ["owner@example.com"])
        .expect("an alert");
    let subject = header(&alert.raw, "Subject");
    assert!(
        subject.contains("interrupted by shutdown") && !subject.contains("failed"),
        "{subject}"
    );
    let body = plain_text(&alert.raw);
    assert!(
        body.contains("planned shutdown")
            && body.contains("coo@example.com")
            && body.contains(&format!("Host: {}", host()))
            && !body.contains("failed for period"),
        "{body}"
    );
    assert!(state.accepted.iter().any(|m| m.to == ["coo@example.com"]));
    drop(state);
    assert_eq!(s.history()[0].state, "succeeded");
}

/// Point 3b: A failure alert still waiting when `cxreport retry` delivers everything is
/// replaced by one saying the run was resolved after retry.
#[test]
fn a_retry_that_delivers_resolves_the_waiting_failure_alert() {
    let port = free_port();
    let s = setup(port, PLAIN, service::TO_CEO);
    // Nothing listens: the delivery and the owner's alert both wait.
    let o = s.run(&["--send"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let server = smtp_server_on(port);
    let o = s.cmd(&["retry", "--job", "monthly"]).output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let subjects = subjects(&server);
    assert_eq!(subjects.len(), 2, "the report and one alert: {subjects:?}");
    let state = server.state.lock().unwrap();
    let alert = state
        .accepted
        .iter()
        .find(|m| m.to == ["owner@example.com"])
        .expect("an alert");
    let subject = header(&alert.raw, "Subject");
    assert!(
        subject.contains("resolved after retry")
            && subject.contains("2023-12-15 – 2024-06-15")
            && !subject.contains("failed"),
        "{subject}"
    );
    let body = plain_text(&alert.raw);
    assert!(
        body.contains("every delivery of the run is now sent")
            && body.contains(&format!("Host: {}", host())),
        "{body}"
    );
    drop(state);
    let h = s.cmd(&["history"]).output().unwrap();
    assert!(
        !text(&h).contains("owner alerts not sent yet"),
        "{}",
        text(&h)
    );
}

/// Point 3c: When the daemon's own retry delivers after an outage, the owners' last
/// word is "resolved after retry": the waiting "failed" is replaced by it or, when it
/// went out first, followed by it; never a "failed" after the "resolved".
#[test]
fn the_daemons_own_retry_that_delivers_resolves_the_failure_alert() {
    let port = free_port();
    let s = setup(port, PLAIN, service::TO_CEO);
    let o = s.run(&["--send"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let server = smtp_server_on(port);
    // The daemon on the real clock (the retries wait in real time); nothing is due.
    Ledger::open(&s.state())
        .unwrap()
        .set_cursor("monthly", chrono::Utc::now())
        .unwrap();
    let mut daemon = s.spawn(&["daemon"]);
    let owner_subjects = || -> Vec<String> {
        let state = server.state.lock().unwrap();
        state
            .accepted
            .iter()
            .filter(|m| m.to == ["owner@example.com"])
            .map(|m| header(&m.raw, "Subject"))
            .collect()
    };
    wait_for("the report and a resolution", 120, || {
        owner_subjects()
            .iter()
            .any(|s| s.contains("resolved after retry"))
    });
    // Whatever was still on its way arrives now.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(stop(&mut daemon).code(), Some(0));
    let alerts = owner_subjects();
    let last = alerts.last().unwrap();
    assert!(last.contains("resolved after retry"), "{alerts:?}");
    assert_eq!(
        alerts.iter().filter(|s| s.contains("resolved")).count(),
        1,
        "{alerts:?}"
    );
    let state = server.state.lock().unwrap();
    let resolved = state
        .accepted
        .iter()
        .rfind(|m| m.to == ["owner@example.com"])
        .unwrap();
    let body = plain_text(&resolved.raw);
    assert!(
        body.contains("The daemon's retry")
            && body.contains("every delivery of the run is now sent"),
        "{body}"
    );
    let reports = state
        .accepted
        .iter()
        .filter(|m| m.to == ["ceo@example.com"])
        .count();
    assert_eq!(reports, 1);
    drop(state);
    assert_eq!(s.history()[0].state, "succeeded");
    let h = s.cmd(&["history"]).output().unwrap();
    assert!(
        !text(&h).contains("owner alerts not sent yet"),
        "{}",
        text(&h)
    );
}

/// Point 4: A test send (`--to`) is marked in the subject and the body, in each language.
#[test]
fn test_mails_are_marked_as_tests() {
    let server = smtp_server(&[], None);
    let s = setup(
        server.port,
        PLAIN,
        "[job.recipients]\nen = [\"ceo@example.com\"]\nzh = [\"gm@example.com\"]",
    );
    let o = s.run(&["--to", "me@example.com"]);
    assert!(o.status.success(), "{}", text(&o));
    let state = server.state.lock().unwrap();
    assert_eq!(state.accepted.len(), 2);
    let mut prefixes = Vec::new();
    for m in &state.accepted {
        assert_eq!(m.to, ["me@example.com"]);
        let subject = header(&m.raw, "Subject");
        let body = plain_text(&m.raw);
        if subject.contains("客户会话") {
            assert!(subject.starts_with("[测试] "), "{subject}");
            assert!(body.starts_with("这是一封测试邮件"), "{body}");
        } else {
            assert!(subject.starts_with("[TEST] "), "{subject}");
            assert!(body.starts_with("This is a test"), "{body}");
        }
        assert!(body.contains("me@example.com"), "{body}");
        prefixes.push(subject.split(' ').next().unwrap().to_owned());
    }
    prefixes.sort();
    assert_eq!(prefixes, ["[TEST]", "[测试]"]);
    drop(state);
    // A real send is not marked.
    let o = s.run(&["--send"]);
    assert!(o.status.success(), "{}", text(&o));
    let subjects = subjects(&server);
    assert!(
        subjects[2..].iter().all(|s| !s.starts_with('[')),
        "{subjects:?}"
    );
}

/// Point 5: Attachments are named after the report, the period and the language; the
/// files on disk keep their names.
#[test]
fn attachments_are_named_after_report_period_and_language() {
    let server = smtp_server(&[], None);
    let s = setup(
        server.port,
        PLAIN,
        "[job.recipients]\nen = [\"ceo@example.com\"]\nzh = [\"gm@example.com\"]",
    );
    let o = s.run(&["--send"]);
    assert!(o.status.success(), "{}", text(&o));
    let run = s.dir.path().join("out/monthly/2023-12-15_2024-06-15");
    let state = server.state.lock().unwrap();
    for (to, lang) in [("ceo@example.com", "en"), ("gm@example.com", "zh")] {
        let m = state.accepted.iter().find(|m| m.to == [to]).unwrap();
        let name = format!("conversation-usage_2023-12-15..2024-06-15_{lang}.pdf");
        let bytes = attachment(&m.raw, &name).unwrap_or_else(|| panic!("{to}: {name}"));
        assert_eq!(
            bytes,
            std::fs::read(run.join(format!("report.{lang}.pdf"))).unwrap()
        );
        assert!(attachment(&m.raw, &format!("report.{lang}.pdf")).is_none());
        assert!(plain_text(&m.raw).contains(&name));
    }
}

/// Point 6: A due fire whose period is delivered in full renders nothing again: over
/// several fires of a minutely job the report is not rewritten.
#[test]
fn a_fire_with_nothing_left_to_send_does_not_render() {
    let server = smtp_server(&[], None);
    let s = setup(
        server.port,
        PLAIN,
        "[job.recipients]\nen = [\"ceo@example.com\"]",
    );
    std::fs::write(
        &s.config,
        std::fs::read_to_string(&s.config)
            .unwrap()
            .replace("cron = \"0 8 1 1 *\"", "cron = \"* * * * *\""),
    )
    .unwrap();
    let log = s.dir.path().join("daemon.log");
    // A minute every 10 s.
    let mut daemon = s.spawn_logged(
        &[
            "daemon",
            "--clock-start",
            "2025-01-01T07:59:58Z",
            "--clock-speed",
            "6",
        ],
        &log,
    );
    let pdf = s
        .dir
        .path()
        .join("out/monthly/2023-12-15_2024-06-15/report.en.pdf");
    wait_for("the first delivery", 120, || server.accepted() >= 1);
    wait_for("the report in place", 30, || pdf.exists());
    let first = std::fs::metadata(&pdf).unwrap();
    let up_to_date = || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .matches("up to date")
            .count()
    };
    wait_for("two more fires", 90, || up_to_date() >= 2);
    assert_eq!(stop(&mut daemon).code(), Some(0));
    let now = std::fs::metadata(&pdf).unwrap();
    assert_eq!(
        (now.ino(), now.mtime_nsec(), now.mtime()),
        (first.ino(), first.mtime_nsec(), first.mtime()),
        "the report was written again"
    );
    assert_eq!(server.accepted(), 1);
    let h = s.history();
    let run = h
        .iter()
        .find(|r| r.period == "2023-12-15_2024-06-15")
        .unwrap();
    assert_eq!(
        (run.state.as_str(), run.attempts),
        ("succeeded", 1),
        "{h:?}"
    );
    // A run by hand says so, and renders nothing either.
    let o = s.run(&["--send"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("up to date"), "{}", text(&o));
    assert_eq!(std::fs::metadata(&pdf).unwrap().ino(), first.ino());
}

/// Point 7: Emails and `history` name metrics and periods as the report does, in each
/// language; `history` keeps the key `retry --period` takes.
#[test]
fn emails_and_history_use_the_reports_words() {
    let server = smtp_server(&[], None);
    let changed_dir = tempfile::tempdir().unwrap();
    let changed = common::planted_demo(changed_dir.path());
    let s = service::setup_on(
        &changed.display().to_string(),
        server.port,
        PLAIN,
        "[job.recipients]\nen = [\"ceo@example.com\"]\nzh = [\"gm@example.com\"]\n[job.watch]\nbot_drop = { metric = \"bot_first_resp_share\", fall_by = 3 }",
    );
    std::fs::write(
        &s.config,
        std::fs::read_to_string(&s.config)
            .unwrap()
            .replace("rolling:6m", "rolling:3m"),
    )
    .unwrap();
    let o = s.run(&["--send"]);
    assert!(o.status.success(), "{}", text(&o));
    {
        let state = server.state.lock().unwrap();
        assert_eq!(state.accepted.len(), 2);
        for m in &state.accepted {
            let body = plain_text(&m.raw);
            assert!(
                !body.contains("bot_first_resp_share")
                    && !body.contains("(overall)")
                    && !body.contains("2023-12-15_2024-03-14"),
                "{body}"
            );
            if m.to == ["gm@example.com"] {
                assert!(
                    body.contains("预警规则“bot_drop”已触发：机器人首答占比下降")
                        && body.contains("对比期 2024-01-08 – 2024-03-14"),
                    "{body}"
                );
            } else {
                assert!(
                    body.contains("Watch rule “bot_drop” fired: bot-first share fell by")
                        && body.contains("compared with 2024-01-08 – 2024-03-14"),
                    "{body}"
                );
            }
        }
    }
    let h = s.cmd(&["history"]).output().unwrap();
    assert!(h.status.success(), "{}", text(&h));
    let out = String::from_utf8_lossy(&h.stdout);
    assert!(
        out.contains("2024-03-15 – 2024-06-15  [2024-03-15_2024-06-15]"),
        "{out}"
    );
    let watch = out.lines().find(|l| l.contains("watch bot_drop")).unwrap();
    assert!(
        watch.contains("FIRED Watch rule “bot_drop” fired: bot-first share fell by"),
        "{watch}"
    );
}

/// Every report, both editions, on the demo: the built-in templates have every string
/// they look up (a run used to warn about `labels.all.all` of its own templates).
#[test]
fn the_built_in_templates_miss_no_string() {
    let dir = tempfile::tempdir().unwrap();
    for report in ["conversation-usage", "tag-drivers", "customer-segmentation"] {
        let o = Command::new(env!("CARGO_BIN_EXE_cxreport"))
            .args(["run", report, "--db"])
            .arg(common::demo_db())
            .args(["--as-of", "2024-07-03T08:00:00Z", "--out"])
            .arg(dir.path())
            .env("RUST_LOG", "warn")
            .output()
            .unwrap();
        assert!(o.status.success(), "{report}: {}", text(&o));
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert!(!stderr.contains("missing string"), "{report}:\n{stderr}");
    }
}
