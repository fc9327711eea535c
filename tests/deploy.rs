//! Deploying and watching the daemon: the systemd unit and the container image of
//! `docs/deployment/` (verified with the tools where they exist), and `cxreport
//! status` against a real daemon on the rehearsal clock, before, while and after it
//! runs.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use common::service::{bin, setup, signal, stop, wait_for, Setup, PLAIN, TO_CEO};
use common::smtp::smtp_server;
use cxreport::jobs::ledger::Ledger;

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Whether `cmd` can be run here at all.
fn have(cmd: &str, arg: &str) -> bool {
    Command::new(cmd)
        .arg(arg)
        .output()
        .is_ok_and(|o| o.status.success())
}

// ---------------------------------------------------------------------------------
// The systemd unit.

/// The unit's `key=value` lines (a key given twice keeps both values).
fn unit_values(text: &str, key: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .filter(|(k, _)| k.trim() == key)
        .map(|(_, v)| v.trim().to_owned())
        .collect()
}

fn unit_value(text: &str, key: &str) -> String {
    let v = unit_values(text, key);
    assert_eq!(v.len(), 1, "{key}: {v:?}");
    v[0].clone()
}

#[test]
fn the_unit_is_hardened_runs_the_daemon_and_outlasts_its_stop() {
    let unit = std::fs::read_to_string(repo("docs/deployment/cxreport.service")).unwrap();
    assert_eq!(
        unit_value(&unit, "ExecStart"),
        "/usr/local/bin/cxreport daemon --config /etc/cxreport/schedules.toml"
    );
    assert!(
        unit_value(&unit, "DynamicUser") == "yes" || !unit_values(&unit, "User").is_empty(),
        "its own user"
    );
    for (key, value) in [
        ("StateDirectory", "cxreport"),
        ("WorkingDirectory", "/var/lib/cxreport"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("NoNewPrivileges", "yes"),
        ("Restart", "on-failure"),
        // SIGTERM to the daemon alone: its run workers finish under it.
        ("KillMode", "mixed"),
    ] {
        assert_eq!(unit_value(&unit, key), value, "{key}");
    }
    assert!(unit_value(&unit, "EnvironmentFile").ends_with("/etc/cxreport/env"));
    assert!(unit_value(&unit, "RestartSec").parse::<u64>().unwrap() > 0);
    // Long enough for a delivery's grace and a report being written.
    let stop: u64 = unit_value(&unit, "TimeoutStopSec").parse().unwrap();
    assert!(
        Duration::from_secs(stop) > cxreport::jobs::mail::STOP_GRACE * 10,
        "TimeoutStopSec={stop}"
    );
}

/// `systemd-analyze verify` of the unit, its ExecStart pointed at the binary under
/// test (verify wants the executable to exist). Where the tool is missing the test
/// says it skipped.
#[test]
fn systemd_analyze_verifies_the_unit() {
    if !have("systemd-analyze", "--version") {
        eprintln!("SKIPPED: systemd-analyze is not installed here");
        return;
    }
    let unit = std::fs::read_to_string(repo("docs/deployment/cxreport.service")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let verify = |text: &str| -> Output {
        let path = dir.path().join("cxreport.service");
        std::fs::write(&path, text).unwrap();
        Command::new("systemd-analyze")
            .args(["verify", "--man=no"])
            .arg(&path)
            .output()
            .unwrap()
    };
    let exe = bin().display().to_string();
    let ours = unit.replace("/usr/local/bin/cxreport", &exe);
    assert_ne!(ours, unit);
    let o = verify(&ours);
    eprintln!("systemd-analyze verify: {}{}", out(&o), err(&o));
    assert!(o.status.success(), "{}", err(&o));
    assert!(
        err(&o).trim().is_empty() && out(&o).trim().is_empty(),
        "verify has something to say: {}{}",
        out(&o),
        err(&o)
    );
    // The check can fail: a misspelt directive and a bad value are reported.
    let bad = ours
        .replace("ProtectSystem=strict", "ProtectSystm=strict")
        .replace("Restart=on-failure", "Restart=sometimes");
    let o = verify(&bad);
    let said = format!("{}{}", out(&o), err(&o));
    assert!(
        said.contains("ProtectSystm") && said.contains("sometimes"),
        "verify did not notice: {said}"
    );
    // Hardened: systemd's own exposure score (0 safest to 10) stays under 2; the unit
    // as shipped scores 1.4, the same without its five main directives 5.5.
    let security = |path: &Path| {
        Command::new("systemd-analyze")
            .args(["security", "--offline=yes", "--threshold=20", "--no-pager"])
            .arg(path)
            .output()
            .unwrap()
    };
    let good = dir.path().join("cxreport.service");
    std::fs::write(&good, &ours).unwrap();
    let o = security(&good);
    if err(&o).contains("unrecognized option") {
        eprintln!("SKIPPED the exposure score: this systemd-analyze has no --offline/--threshold (systemd < 250)");
        return;
    }
    let said = out(&o);
    let score = said
        .lines()
        .find(|l| l.contains("Overall exposure level"))
        .unwrap_or("");
    eprintln!("systemd-analyze security: {score}");
    assert!(o.status.success(), "exposure above 2.0: {said}{}", err(&o));
    let weak: String = ours
        .lines()
        .filter(|l| {
            ![
                "NoNewPrivileges=",
                "ProtectSystem=",
                "DynamicUser=",
                "CapabilityBoundingSet=",
                "SystemCallFilter=",
            ]
            .iter()
            .any(|k| l.starts_with(k))
        })
        .map(|l| format!("{l}\n"))
        .collect();
    let weak_path = dir.path().join("weak.service");
    std::fs::write(&weak_path, weak).unwrap();
    assert!(!security(&weak_path).status.success(), "the score can fail");
}

// ---------------------------------------------------------------------------------
// The container image.

/// One stage of a Containerfile: its `FROM` line and its instructions (continuation
/// lines joined).
#[derive(Debug)]
struct Stage {
    from: String,
    steps: Vec<(String, String)>,
}

fn stages(text: &str) -> Vec<Stage> {
    let mut joined: Vec<String> = Vec::new();
    let mut open = false;
    for line in text.lines() {
        let t = line.trim();
        if t.starts_with('#') || (t.is_empty() && !open) {
            continue;
        }
        let (body, cont) = match t.strip_suffix('\\') {
            Some(b) => (b.trim_end(), true),
            None => (t, false),
        };
        if open {
            let last = joined.last_mut().unwrap();
            last.push(' ');
            last.push_str(body);
        } else {
            joined.push(body.to_owned());
        }
        open = cont;
    }
    let mut out: Vec<Stage> = Vec::new();
    for line in joined {
        let (op, rest) = line.split_once(' ').unwrap_or((&line, ""));
        let op = op.to_ascii_uppercase();
        if op == "FROM" {
            out.push(Stage {
                from: rest.trim().to_owned(),
                steps: Vec::new(),
            });
        } else {
            out.last_mut()
                .expect("an instruction before FROM")
                .steps
                .push((op, rest.trim().to_owned()));
        }
    }
    out
}

impl Stage {
    fn all(&self, op: &str) -> Vec<&str> {
        self.steps
            .iter()
            .filter(|(o, _)| o == op)
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

#[test]
fn the_containerfile_builds_locked_and_runs_unprivileged_on_a_volume() {
    let text = std::fs::read_to_string(repo("docs/deployment/Containerfile")).unwrap();
    let stages = stages(&text);
    assert_eq!(stages.len(), 2, "{stages:#?}");
    let (build, runtime) = (&stages[0], &stages[1]);
    assert!(
        build.from.starts_with("rust:") && build.from.ends_with(" AS build"),
        "{}",
        build.from
    );
    assert!(
        build
            .all("RUN")
            .iter()
            .any(|r| r.contains("cargo build --release --locked")),
        "{build:#?}"
    );
    assert!(
        runtime.from.starts_with("debian:bookworm-slim"),
        "{}",
        runtime.from
    );
    assert!(runtime
        .all("RUN")
        .iter()
        .any(|r| r.contains("ca-certificates")));
    assert!(
        runtime
            .all("COPY")
            .iter()
            .any(|c| c.starts_with("--from=build") && c.ends_with("/usr/local/bin/cxreport")),
        "{runtime:#?}"
    );
    // The runtime stage's last USER, which the daemon runs as: neither root nor uid 0.
    let users = runtime.all("USER");
    let user = users.last().expect("a USER in the runtime stage");
    assert!(
        !["root", "0"].contains(&user.split(':').next().unwrap()),
        "{user}"
    );
    let user_at = runtime
        .steps
        .iter()
        .rposition(|(o, _)| o == "USER")
        .unwrap();
    let entry_at = runtime
        .steps
        .iter()
        .position(|(o, _)| o == "ENTRYPOINT")
        .unwrap();
    assert!(user_at < entry_at, "USER before ENTRYPOINT");
    assert!(
        runtime
            .all("RUN")
            .iter()
            .any(|r| r.contains("useradd") && r.contains(user)),
        "the user {user} is created"
    );
    assert_eq!(runtime.all("VOLUME"), ["/var/lib/cxreport"]);
    assert_eq!(runtime.all("ENTRYPOINT"), [r#"["cxreport"]"#]);
    assert_eq!(
        runtime.all("CMD"),
        [r#"["daemon", "--config", "/etc/cxreport/schedules.toml"]"#]
    );
    let health = runtime.all("HEALTHCHECK");
    assert!(
        health.len() == 1 && health[0].contains(r#"CMD ["cxreport", "status""#),
        "{health:?}"
    );
    // Secrets come at run time, never from the image.
    for (op, v) in &runtime.steps {
        if op == "ENV" || op == "ARG" {
            let v = v.to_ascii_uppercase();
            assert!(!v.contains("PASSWORD") && !v.contains("SECRET"), "{op} {v}");
        }
    }
    // What the build context leaves out, beside the file (Docker reads it by name).
    let ignore =
        std::fs::read_to_string(repo("docs/deployment/Containerfile.dockerignore")).unwrap();
    assert!(ignore.lines().any(|l| l.trim() == "target/"), "{ignore}");
}

/// Builds the image and runs `status` in it, where a container engine with a
/// running daemon is at hand; otherwise says it skipped.
#[test]
fn the_image_builds_where_an_engine_runs() {
    if !have("docker", "info") {
        eprintln!("SKIPPED: no container engine with a running daemon here (`docker info` fails)");
        return;
    }
    let tag = "cxreport-deploy-test:latest";
    let o = Command::new("docker")
        .args([
            "build",
            "-f",
            "docs/deployment/Containerfile",
            "-t",
            tag,
            ".",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", err(&o));
    let o = Command::new("docker")
        .args(["run", "--rm", tag, "--version"])
        .output()
        .unwrap();
    assert!(
        o.status.success() && out(&o).contains("cxreport"),
        "{}",
        err(&o)
    );
    let o = Command::new("docker")
        .args(["run", "--rm", "--entrypoint", "id", tag, "-u"])
        .output()
        .unwrap();
    assert_ne!(out(&o).trim(), "0", "runs as root");
}

// ---------------------------------------------------------------------------------
// `cxreport status` against a daemon.

fn status(s: &Setup, extra: &[&str]) -> Output {
    let mut args = vec!["status"];
    args.extend_from_slice(extra);
    s.cmd(&args).output().unwrap()
}

fn heartbeat_written(s: &Setup) -> bool {
    s.state().exists()
        && Ledger::open_read_only(&s.state())
            .and_then(|l| l.heartbeats())
            .is_ok_and(|h| !h.is_empty())
}

#[test]
fn status_before_any_daemon_says_it_never_ran_and_what_to_do() {
    let s = setup(9, PLAIN, TO_CEO);
    let o = status(&s, &[]);
    assert_eq!(o.status.code(), Some(1), "{}{}", out(&o), err(&o));
    let e = err(&o);
    assert!(e.contains("the daemon has never run here"), "{e}");
    assert!(
        e.contains(&format!("cxreport daemon --config {}", s.config.display())),
        "{e}"
    );
    assert_eq!(e.matches("never run here").count(), 1, "once: {e}");
    assert!(!s.state().exists(), "status wrote nothing");
    // Below a few heartbeats a live daemon would look silent: refused.
    let o = status(&s, &["--max-age", "1"]);
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    // A configuration that does not load is a usage error, not "unhealthy".
    std::fs::write(&s.config, "[[job]]\nname = 1\n").unwrap();
    let o = status(&s, &[]);
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
}

/// The daemon on the rehearsal clock (its first fire a second after the start): alive
/// while it runs, its run succeeded, next fire told on its clock; after SIGTERM,
/// stopped.
#[test]
fn status_follows_a_daemon_on_the_rehearsal_clock_and_after_it_stops() {
    let server = smtp_server(&[], None);
    let s = setup(server.port, PLAIN, TO_CEO);
    let log = s.dir.path().join("daemon.log");
    let mut daemon = s.spawn_logged(&["daemon", "--clock-start", "2025-01-01T07:59:59Z"], &log);
    wait_for("the daemon's heartbeat", 60, || heartbeat_written(&s));
    let o = status(&s, &[]);
    let host = cxreport::jobs::status::host_name();
    assert_eq!(o.status.code(), Some(0), "{}{}", out(&o), err(&o));
    let text = out(&o);
    assert!(
        text.contains(&format!("daemon: host {host}, pid {},", daemon.id())),
        "{text}"
    );
    assert!(
        text.contains("rehearsal clock: it read 2025-01-01 "),
        "{text}"
    );
    assert!(text.contains("ok: healthy"), "{text}");
    wait_for("the run to succeed", 240, || {
        s.history().first().is_some_and(|r| r.state == "succeeded")
    });
    let o = status(&s, &[]);
    assert_eq!(o.status.code(), Some(0), "{}{}", out(&o), err(&o));
    let text = out(&o);
    let line = text
        .lines()
        .find(|l| l.starts_with("monthly: "))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(line.contains(" succeeded (finished "), "{line}");
    // The next fire after the daemon's clock (2025-01-01 08:00 and a little), not
    // after the real one.
    assert!(line.ends_with("next fire 2026-01-01 08:00 UTC"), "{line}");

    assert_eq!(stop(&mut daemon).code(), Some(0));
    let o = status(&s, &[]);
    assert_eq!(o.status.code(), Some(1), "{}{}", out(&o), err(&o));
    let e = err(&o);
    assert!(e.contains("the daemon stopped at "), "{e}");
    assert!(
        e.contains("as asked (SIGTERM or SIGINT)") && e.contains("start it"),
        "{e}"
    );
    let o = status(&s, &["--daemon-only"]);
    assert_eq!(o.status.code(), Some(1), "stopped is stopped: {}", err(&o));
}

/// A job whose latest run failed (its window has no conversations) makes status say
/// so, naming the job and the command to run it again; the daemon alone is healthy.
#[test]
fn status_names_a_job_whose_latest_run_failed() {
    let server = smtp_server(&[], None);
    let s = setup(server.port, PLAIN, TO_CEO);
    std::fs::write(
        &s.config,
        std::fs::read_to_string(&s.config)
            .unwrap()
            .replace("rolling:6m", "range:2030-01-01..2030-01-31"),
    )
    .unwrap();
    let mut daemon = s.spawn(&["daemon", "--clock-start", "2025-01-01T07:59:59Z"]);
    wait_for("the daemon's heartbeat", 60, || heartbeat_written(&s));
    wait_for("the run to fail", 240, || {
        s.history().first().is_some_and(|r| r.state == "failed")
    });
    let o = status(&s, &[]);
    assert_eq!(o.status.code(), Some(1), "{}{}", out(&o), err(&o));
    let e = err(&o);
    assert!(e.contains("job `monthly`: its latest run ("), "{e}");
    assert!(e.contains(") failed: "), "{e}");
    assert!(
        e.contains("`cxreport run --job monthly --as-of 2025-01-01T08:00:00Z --send`"),
        "{e}"
    );
    assert!(!e.contains("the daemon stopped"), "{e}");
    let o = status(&s, &["--daemon-only"]);
    assert_eq!(o.status.code(), Some(0), "{}{}", out(&o), err(&o));
    assert_eq!(stop(&mut daemon).code(), Some(0));
}

/// A daemon killed outright cannot mark itself stopped: its heartbeat ages, and
/// past --max-age status says its process is gone.
#[test]
fn status_notices_a_killed_daemon_by_its_silent_heartbeat() {
    let s = setup(9, PLAIN, TO_CEO);
    // No fire within the test: the clock starts long after the yearly one.
    let mut daemon = s.spawn(&["daemon", "--clock-start", "2025-03-01T00:00:00Z"]);
    wait_for("the daemon's heartbeat", 60, || heartbeat_written(&s));
    // Several heartbeats within the least --max-age: alive all along.
    for _ in 0..4 {
        let o = status(&s, &["--max-age", "5"]);
        assert_eq!(o.status.code(), Some(0), "{}{}", out(&o), err(&o));
        std::thread::sleep(Duration::from_millis(1500));
    }
    let pid = daemon.id();
    signal(&daemon, "KILL");
    daemon.wait().unwrap();
    wait_for("the heartbeat to age past --max-age", 30, || {
        status(&s, &["--max-age", "5"]).status.code() == Some(1)
    });
    let o = status(&s, &["--max-age", "5"]);
    let e = err(&o);
    assert!(e.contains("the daemon's last tick was "), "{e}");
    assert!(
        e.contains(&format!("its process (pid {pid}) is gone")),
        "{e}"
    );
    // The default --max-age still takes it for alive: it ticked seconds ago.
    assert_eq!(status(&s, &[]).status.code(), Some(0));
}
