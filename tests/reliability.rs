//! The service promise under real faults, with real processes: the binary is killed at
//! chosen moments, talks over TCP to an SMTP server in this test process that fails on
//! purpose (or is not there), and the daemon runs with a rehearsal clock
//! (`--clock-start`) through DST changes and downtime.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::service::{kill, setup, signal, stop, subjects, wait_for, Setup, PLAIN, TO_CEO};
use common::smtp::{
    free_port, header, implicit_tls_server, smtp_server, smtp_server_on, starttls_server, tls_dir,
};
use common::text;
use cxreport::jobs::ledger::Ledger;

/// Promise 1: a run whose process died is run again by the next daemon, whatever pid
/// its row carries (here a live process's, as after a container restart where the
/// daemon is PID 1 again).
#[test]
fn a_run_whose_process_died_is_recovered_though_its_pid_is_alive() {
    let server = smtp_server(&[], Some(0));
    let s = setup(server.port, PLAIN, TO_CEO);
    let mut child = s.spawn(&[
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
    kill(&mut child);
    server.state.lock().unwrap().stall_after = None;
    server.release.store(true, Ordering::SeqCst);
    // The row names a process that is alive.
    let mut alive = Command::new("sleep").arg("300").spawn().unwrap();
    assert_eq!(s.history()[0].state, "running");
    assert_eq!(set_running_pid(&s.state(), alive.id()), 1);
    let mut daemon = s.spawn(&["daemon"]);
    wait_for("the recovered run to deliver", 120, || {
        s.history().first().is_some_and(|r| r.state == "succeeded")
    });
    assert_eq!(stop(&mut daemon).code(), Some(0));
    kill(&mut alive);
    let h = s.history();
    assert_eq!(h.len(), 1, "{h:?}");
    assert_eq!(h[0].attempts, 2, "run once more, once");
    let ids = server.message_ids();
    assert_eq!(ids.len(), 1, "{ids:?}");
    assert_eq!(h[0].deliveries[0].message_id, ids[0]);
}

/// Sets every running row's pid (what the ledger once trusted).
fn set_running_pid(state: &Path, pid: u32) -> usize {
    rusqlite::Connection::open(state)
        .unwrap()
        .execute("UPDATE runs SET pid = ?1 WHERE state = 'running'", [pid])
        .unwrap()
}

/// Promise 2: a preview (`--to`, `--outbox`) killed mid-run leaves nothing a daemon
/// could recover: nothing reaches the real recipients; and a preview never hides a
/// failed real run from `history`.
#[test]
fn a_killed_preview_is_never_mailed_and_never_hides_a_failure() {
    let server = smtp_server(&[], Some(0));
    let s = setup(server.port, PLAIN, TO_CEO);
    let mut child = s.spawn(&[
        "run",
        "--job",
        "monthly",
        "--as-of",
        "2024-07-01T08:00:00Z",
        "--to",
        "tester@example.com",
    ]);
    wait_for("the test send to start", 120, || {
        server.state.lock().unwrap().data_ends >= 1
    });
    kill(&mut child);
    server.state.lock().unwrap().stall_after = None;
    server.release.store(true, Ordering::SeqCst);
    assert!(
        !s.state().exists() || s.history().is_empty(),
        "a preview writes no run"
    );
    // A daemon starting now finds nothing to recover.
    let mut daemon = s.spawn(&["daemon"]);
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(stop(&mut daemon).code(), Some(0));
    assert_eq!(server.accepted(), 0, "nothing reached anyone");
    assert!(s.history().is_empty());

    // A real run that fails (550), then a preview that works: history still says
    // the real run failed.
    server.state.lock().unwrap().script.push_back(550);
    let o = s.run(&["--send"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let o = s.run(&["--outbox", s.dir.path().join("preview").to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    let h = s.cmd(&["history"]).output().unwrap();
    assert_eq!(h.status.code(), Some(1), "{}", text(&h));
    assert!(text(&h).contains("gave_up"), "{}", text(&h));
}

/// Promise 3: an outage longer than every attempt loses nothing. The deliveries stay
/// retryable (not given up), the owner alert is kept, and once the server is back the
/// daemon delivers both, as the same messages.
#[test]
fn an_smtp_outage_longer_than_all_attempts_is_delivered_when_the_server_is_back() {
    let port = free_port();
    let s = setup(
        port,
        PLAIN,
        "owners = [\"owner@example.com\"]\n[job.recipients]\nen = [\"ceo@example.com\", \"coo@example.com\"]\nzh = [\"gm@example.com\"]",
    );
    // Nothing listens: connection refused on every attempt.
    let o = s.run(&["--send"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("tried again from"), "{}", text(&o));
    let h = s.history();
    assert_eq!(h[0].deliveries.len(), 3);
    for d in &h[0].deliveries {
        assert_eq!(d.state, "failed", "{d:?}");
        assert!(d.retry_until.is_some() && d.next_attempt_at.is_some());
    }
    let hist = s.cmd(&["history"]).output().unwrap();
    assert!(
        text(&hist).contains("owner alerts not sent yet"),
        "{}",
        text(&hist)
    );
    // Sending again during the outage says it will be tried again, not "given up".
    let o = s.run(&["--send"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(!text(&o).contains("given up"), "{}", text(&o));

    // The server is back: the daemon's retry delivers all three, and the owner hears
    // it is resolved. The two runs' "failed" alerts kept until now go out before it or
    // are replaced by it: which one is a race between the retry and the alert sender.
    let server = smtp_server_on(port);
    let mut daemon = s.spawn(&["daemon"]);
    wait_for("the retries and the resolution", 90, || {
        subjects(&server)
            .iter()
            .any(|s| s.contains("resolved after retry"))
    });
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(stop(&mut daemon).code(), Some(0));
    let subjects = subjects(&server);
    let editions = subjects.iter().filter(|s| !s.starts_with("[cxreport]"));
    assert_eq!(editions.count(), 3, "{subjects:?}");
    let alerts: Vec<_> = subjects
        .iter()
        .filter(|s| s.starts_with("[cxreport]"))
        .collect();
    let (last, before) = alerts.split_last().unwrap();
    assert!(
        last.contains("job monthly resolved after retry"),
        "{subjects:?}"
    );
    assert!(
        before.len() <= 2 && before.iter().all(|s| s.contains("job monthly failed")),
        "{subjects:?}"
    );
    let h = s.history();
    assert_eq!(h[0].state, "succeeded", "{h:?}");
    let mut ids = server.message_ids();
    for d in &h[0].deliveries {
        assert_eq!(d.state, "sent");
        assert!(ids.contains(&d.message_id), "the same message: {d:?}");
    }
    let n = ids.len();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), n, "no copy twice");
    let hist = s.cmd(&["history"]).output().unwrap();
    assert!(hist.status.success(), "{}", text(&hist));
    assert!(!text(&hist).contains("owner alerts not sent yet"));
}

/// After an outage, what waits is delivered by the next fire of the job (a run of the
/// same period) and by `cxreport retry`, each only what is missing.
#[test]
fn after_an_outage_the_next_fire_and_retry_deliver_what_waits() {
    let port = free_port();
    let recipients = "[job.recipients]\nen = [\"ceo@example.com\"]";
    let a = setup(port, PLAIN, recipients);
    let b = setup(port, PLAIN, recipients);
    for s in [&a, &b] {
        let o = s.run(&["--send"]);
        assert_eq!(o.status.code(), Some(1), "{}", text(&o));
        assert_eq!(s.history()[0].deliveries[0].state, "failed");
    }
    let server = smtp_server_on(port);
    // The next fire.
    let o = a.run(&["--send"]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(server.accepted(), 1);
    assert_eq!(a.history()[0].state, "succeeded");
    // `retry`.
    let o = b.cmd(&["retry", "--job", "monthly"]).output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(server.accepted(), 2);
    assert_eq!(b.history()[0].state, "succeeded");
    // Nothing is sent twice afterwards.
    assert!(a.run(&["--send"]).status.success());
    assert!(b
        .cmd(&["retry", "--job", "monthly"])
        .output()
        .unwrap()
        .status
        .success());
    assert_eq!(server.accepted(), 2);
}

/// `cxreport retry` sends again what was given up (here a permanent 550), from the
/// files of that run.
#[test]
fn retry_sends_what_was_given_up() {
    let server = smtp_server(&[550], None);
    let s = setup(
        server.port,
        PLAIN,
        "[job.recipients]\nen = [\"ceo@example.com\"]",
    );
    let o = s.run(&["--send"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert_eq!(s.history()[0].deliveries[0].state, "gave_up");
    let o = s.run(&["--send"]);
    assert!(text(&o).contains("given up earlier"), "{}", text(&o));
    assert!(
        text(&o).contains("cxreport retry --job monthly"),
        "{}",
        text(&o)
    );
    let pdf_before = std::fs::read(
        s.dir
            .path()
            .join("out/monthly/2023-12-15_2024-06-15/report.en.pdf"),
    )
    .unwrap();
    let o = s.cmd(&["retry", "--job", "monthly"]).output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("1 sent"), "{}", text(&o));
    let h = s.history();
    assert_eq!(h[0].state, "succeeded");
    assert_eq!(h[0].deliveries[0].state, "sent");
    let state = server.state.lock().unwrap();
    assert_eq!(state.accepted.len(), 1);
    assert_eq!(
        common::smtp::attachment(
            &state.accepted[0].raw,
            "conversation-usage_2023-12-15..2024-06-15_en.pdf"
        )
        .unwrap(),
        pdf_before
    );
    drop(state);
    let o = s
        .cmd(&[
            "retry",
            "--job",
            "monthly",
            "--period",
            "1999-01-01_1999-02-01",
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("no run for period"), "{}", text(&o));
}

/// Promise 4: killed after the server accepted the message but before the ledger
/// knew: the next run sends it once more with the same Message-ID, and `history`
/// flags it.
#[test]
fn a_kill_after_the_server_accepted_sends_one_more_copy_with_the_same_id_flagged() {
    let server = smtp_server(&[], None);
    server.state.lock().unwrap().hold_after_accept = true;
    let s = setup(server.port, PLAIN, TO_CEO);
    let mut child = s.spawn(&[
        "run",
        "--job",
        "monthly",
        "--as-of",
        "2024-07-01T08:00:00Z",
        "--send",
    ]);
    wait_for("the server to accept", 120, || server.accepted() >= 1);
    kill(&mut child);
    {
        let mut st = server.state.lock().unwrap();
        st.hold_after_accept = false;
    }
    server.release.store(true, Ordering::SeqCst);
    assert_eq!(s.history()[0].deliveries[0].state, "sending");
    let o = s.run(&["--send"]);
    assert!(o.status.success(), "{}", text(&o));
    let ids = server.message_ids();
    assert_eq!(ids.len(), 2, "at most one extra copy: {ids:?}");
    assert_eq!(ids[0], ids[1], "with the same Message-ID");
    let d = &s.history()[0].deliveries[0];
    assert!(d.possible_duplicate && d.state == "sent", "{d:?}");
    let h = s.cmd(&["history"]).output().unwrap();
    assert!(text(&h).contains("POSSIBLE DUPLICATE"), "{}", text(&h));
    // A third run sends nothing.
    let o = s.run(&["--send"]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(server.accepted(), 2);
}

/// Shutdown: the first SIGTERM waits for the delivery in flight (here stalled), the
/// second ends the process at once; the run is recovered by the next start.
#[test]
fn a_second_sigterm_stops_the_daemon_at_once() {
    let server = smtp_server(&[], Some(0));
    let s = setup(server.port, PLAIN, TO_CEO);
    // A slow server: one attempt may last two minutes.
    std::fs::write(
        &s.config,
        std::fs::read_to_string(&s.config)
            .unwrap()
            .replace("timeout_secs = 5", "timeout_secs = 120"),
    )
    .unwrap();
    // Due one second after the daemon starts (a rehearsal clock).
    let mut daemon = s.spawn(&["daemon", "--clock-start", "2025-01-01T07:59:59Z"]);
    wait_for("the delivery to start", 120, || {
        server.state.lock().unwrap().data_ends >= 1
    });
    signal(&daemon, "TERM");
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        daemon.try_wait().unwrap().is_none(),
        "waits for the delivery"
    );
    signal(&daemon, "TERM");
    let started = Instant::now();
    let st = loop {
        if let Some(st) = daemon.try_wait().unwrap() {
            break st;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the second signal did not stop the daemon"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(!st.success());
    server.state.lock().unwrap().stall_after = None;
    server.release.store(true, Ordering::SeqCst);
    // The ledger is consistent; the next start finishes the run.
    assert_eq!(s.history()[0].state, "running");
    let mut daemon = s.spawn(&["daemon", "--clock-start", "2025-01-01T08:00:30Z"]);
    wait_for("the run to be finished by the next start", 120, || {
        s.history()[0].state == "succeeded"
    });
    assert_eq!(stop(&mut daemon).code(), Some(0));
    assert_eq!(server.accepted(), 1);
}

/// A ledger that can no longer be used while the daemon runs (here its file replaced
/// by a directory, which stops even root): the fire that cannot start reaches the
/// owners, and the daemon keeps running.
#[test]
fn a_ledger_that_cannot_be_written_while_the_daemon_runs_alerts_the_owners() {
    let server = smtp_server(&[], None);
    let s = setup(server.port, PLAIN, TO_CEO);
    let mut daemon = s.spawn(&["daemon", "--clock-start", "2025-01-01T07:59:55Z"]);
    wait_for("the ledger", 30, || s.state().exists());
    std::thread::sleep(Duration::from_millis(1500));
    let aside = s.dir.path().join("aside");
    std::fs::create_dir(&aside).unwrap();
    for suffix in ["", "-wal", "-shm"] {
        let from = PathBuf::from(format!("{}{suffix}", s.state().display()));
        if from.exists() {
            std::fs::rename(&from, aside.join(format!("state{suffix}"))).unwrap();
        }
    }
    std::fs::create_dir(s.state()).unwrap();
    wait_for("the owner alert", 60, || {
        subjects(&server)
            .iter()
            .any(|s| s.contains("job monthly cannot run"))
    });
    assert!(
        daemon.try_wait().unwrap().is_none(),
        "the daemon keeps running"
    );
    assert_eq!(stop(&mut daemon).code(), Some(0));
    let state = server.state.lock().unwrap();
    let alert = state
        .accepted
        .iter()
        .find(|m| header(&m.raw, "Subject").contains("cannot run"))
        .unwrap();
    assert_eq!(alert.to, ["owner@example.com"]);
    let body = common::smtp::plain_text(&alert.raw);
    assert!(
        body.contains("2025-01-01 08:00:00") && body.contains("cxreport-state.sqlite"),
        "{body}"
    );
    // No report was mailed: the run never started.
    assert_eq!(state.accepted.len(), 1);
}

/// A job configured to fail before it has a period (its database is missing), so each
/// fire leaves its own row keyed by the fire time: the schedule, end to end.
fn schedule_setup(jobs: &str) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("schedules.toml");
    std::fs::write(
        &config,
        format!("[defaults]\ndatabase = \"missing.sqlite\"\noutput_dir = \"out\"\n{jobs}"),
    )
    .unwrap();
    Setup { dir, config }
}

fn fires(s: &Setup, job: &str) -> Vec<String> {
    if !s.state().exists() {
        return Vec::new();
    }
    let mut v: Vec<String> = s
        .history()
        .into_iter()
        .filter(|r| r.job == job)
        .map(|r| r.period)
        .collect();
    v.sort();
    v
}

/// DST through the daemon: Europe/Berlin at 02:30 local. On the spring-forward day
/// 02:30 does not exist and the job runs at 03:00 CEST (01:00 UTC); on the fall-back
/// day 02:30 happens twice and the job runs once (00:30 UTC).
#[test]
fn dst_changes_through_the_daemon() {
    let s = schedule_setup(
        "[[job]]\nname = \"berlin\"\ncron = \"30 2 * * *\"\ntimezone = \"Europe/Berlin\"\n",
    );
    // Spring: from 02:59:58 CET (00:59:58 UTC), real speed.
    let mut d = s.spawn(&["daemon", "--clock-start", "2024-03-31T00:59:58Z"]);
    wait_for("the spring fire", 60, || !fires(&s, "berlin").is_empty());
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(stop(&mut d).code(), Some(0));
    assert_eq!(fires(&s, "berlin"), ["fire-2024-03-31T01:00:00Z"]);

    // Fall: from 02:00 CEST (00:00 UTC) to after the second 02:30 (01:30 UTC), at
    // 240× (about 23 s). The half hour before the first 02:30 (7.5 s) leaves room
    // for a late first tick on a loaded machine: the daemon's schedule starts at its
    // first tick, and a fire before it would not count.
    let s = schedule_setup(
        "[[job]]\nname = \"berlin\"\ncron = \"30 2 * * *\"\ntimezone = \"Europe/Berlin\"\ncatchup = \"all\"\n",
    );
    let mut d = s.spawn(&[
        "daemon",
        "--clock-start",
        "2024-10-27T00:00:00Z",
        "--clock-speed",
        "240",
    ]);
    // Stopped once the daemon's own clock (its heartbeat) is past the second 02:30,
    // not after a fixed time: on a loaded machine the daemon may start late.
    wait_for("the daemon's clock past the second 02:30", 120, || {
        daemon_clock(&s).is_some_and(|t| t.as_str() >= "2024-10-27 01:35:00")
    });
    assert_eq!(stop(&mut d).code(), Some(0));
    assert_eq!(fires(&s, "berlin"), ["fire-2024-10-27T00:30:00Z"]);
}

/// The daemon's own clock at its latest heartbeat (`YYYY-MM-DD HH:MM:SS`, UTC).
fn daemon_clock(s: &Setup) -> Option<String> {
    // Read-only: never creates the ledger before the daemon does.
    let db = rusqlite::Connection::open_with_flags(
        s.state(),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .ok()?;
    db.query_row("SELECT max(clock_at) FROM heartbeat", [], |r| r.get(0))
        .ok()
        .flatten()
}

/// Each catch-up policy through the daemon, back after three days down (a daily
/// 08:00 job, cursor Monday 09:00, back Thursday 09:00): `all` runs the three missed
/// fires, `latest` the last one, `skip` none.
#[test]
fn catchup_policies_through_the_daemon() {
    let job = |name: &str, policy: &str| {
        format!("[[job]]\nname = \"{name}\"\ncron = \"0 8 * * *\"\ncatchup = \"{policy}\"\n")
    };
    let s = schedule_setup(&format!(
        "{}{}{}",
        job("all", "all"),
        job("latest", "latest"),
        job("skip", "skip")
    ));
    let monday = chrono::DateTime::parse_from_rfc3339("2024-06-10T09:00:00Z")
        .unwrap()
        .with_timezone(&chrono::Utc);
    {
        let l = Ledger::open(&s.state()).unwrap();
        for name in ["all", "latest", "skip"] {
            l.set_cursor(name, monday).unwrap();
        }
    }
    let mut d = s.spawn(&["daemon", "--clock-start", "2024-06-13T09:00:00Z"]);
    wait_for("the catch-up", 60, || {
        fires(&s, "all").len() == 3 && fires(&s, "latest").len() == 1
    });
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(stop(&mut d).code(), Some(0));
    assert_eq!(
        fires(&s, "all"),
        [
            "fire-2024-06-11T08:00:00Z",
            "fire-2024-06-12T08:00:00Z",
            "fire-2024-06-13T08:00:00Z"
        ]
    );
    assert_eq!(fires(&s, "latest"), ["fire-2024-06-13T08:00:00Z"]);
    assert!(fires(&s, "skip").is_empty());
    // Each failed fire says why.
    let h = s.history();
    assert!(h
        .iter()
        .all(|r| r.error.as_deref().unwrap_or("").contains("missing.sqlite")));
}

/// TLS against real TLS servers with a certificate of a private CA: refused without
/// trust (a permanent failure, nothing sent), accepted with `ca_file`; a server that
/// does not offer STARTTLS when it is required gets nothing (no downgrade).
#[test]
fn tls_and_starttls_need_the_ca_and_never_downgrade() {
    let ca = tls_dir().join("ca.pem");
    for (server, mode) in [
        (starttls_server(), "starttls"),
        (implicit_tls_server(), "tls"),
    ] {
        let s = setup(server.port, &format!("tls = \"{mode}\""), TO_CEO);
        let o = s.run(&["--send"]);
        assert_eq!(o.status.code(), Some(1), "{mode}: {}", text(&o));
        let d = &s.history()[0].deliveries[0];
        assert_eq!(
            d.state, "gave_up",
            "{mode}: an untrusted certificate is permanent"
        );
        assert_eq!(server.accepted(), 0, "{mode}");
        let s = setup(
            server.port,
            &format!("tls = \"{mode}\"\nca_file = \"{}\"", ca.display()),
            "[job.recipients]\nen = [\"ceo@example.com\"]",
        );
        let o = s.run(&["--send"]);
        assert!(o.status.success(), "{mode}: {}", text(&o));
        assert_eq!(server.accepted(), 1, "{mode}");
    }
    // A plain server, STARTTLS required: refused before anything is sent.
    let plain = smtp_server(&[], None);
    let s = setup(
        plain.port,
        &format!("tls = \"starttls\"\nca_file = \"{}\"", ca.display()),
        "[job.recipients]\nen = [\"ceo@example.com\"]",
    );
    let o = s.run(&["--send"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).to_lowercase().contains("starttls"), "{}", text(&o));
    assert_eq!(s.history()[0].deliveries[0].state, "gave_up");
    assert_eq!(plain.state.lock().unwrap().data_ends, 0);
}
