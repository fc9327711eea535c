//! The service end to end: a configuration folder with one job, the binary run and
//! signalled as an operator would, and what the SMTP server in the test received.
//! `CXREPORT_BIN=/path/to/cxreport` runs the tests against another build (to see them
//! fail on an older one).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use super::demo_db;
use super::smtp::{header, Server};
use cxreport::jobs::ledger::{Ledger, RunRecord};

/// Plain SMTP to the loopback test server.
pub const PLAIN: &str = "tls = \"none\"";
pub const TO_CEO: &str =
    "owners = [\"owner@example.com\"]\n[job.recipients]\nen = [\"ceo@example.com\"]";

pub fn bin() -> PathBuf {
    std::env::var_os("CXREPORT_BIN").map_or_else(
        || PathBuf::from(env!("CARGO_BIN_EXE_cxreport")),
        PathBuf::from,
    )
}

pub struct Setup {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
}

impl Setup {
    pub fn state(&self) -> PathBuf {
        self.dir.path().join("out/cxreport-state.sqlite")
    }

    pub fn history(&self) -> Vec<RunRecord> {
        Ledger::open_read_only(&self.state())
            .unwrap()
            .history(None)
            .unwrap()
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(bin());
        c.env("RUST_LOG", "info")
            .args(args)
            .args(["--config", self.config.to_str().unwrap()]);
        c
    }

    pub fn run(&self, extra: &[&str]) -> Output {
        let mut args = vec!["run", "--job", "monthly", "--as-of", "2024-07-01T08:00:00Z"];
        args.extend_from_slice(extra);
        self.cmd(&args).output().unwrap()
    }

    /// `run` as [`Setup::run`], given up (a failure) after `secs`: for what may hang.
    pub fn run_within(&self, extra: &[&str], secs: u64) -> (Output, Duration) {
        let mut args = vec!["run", "--job", "monthly", "--as-of", "2024-07-01T08:00:00Z"];
        args.extend_from_slice(extra);
        let (out, err) = (
            self.dir.path().join("run.out"),
            self.dir.path().join("run.err"),
        );
        let mut child = self
            .cmd(&args)
            .stdout(std::fs::File::create(&out).unwrap())
            .stderr(std::fs::File::create(&err).unwrap())
            .spawn()
            .unwrap();
        let started = Instant::now();
        let status = loop {
            if let Some(st) = child.try_wait().unwrap() {
                break st;
            }
            if started.elapsed() > Duration::from_secs(secs) {
                kill(&mut child);
                panic!("`run` did not end within {secs} s");
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        let output = Output {
            status,
            stdout: std::fs::read(&out).unwrap(),
            stderr: std::fs::read(&err).unwrap(),
        };
        (output, started.elapsed())
    }

    pub fn spawn(&self, args: &[&str]) -> Child {
        self.cmd(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    }

    /// The process with its stderr in `log`.
    pub fn spawn_logged(&self, args: &[&str], log: &Path) -> Child {
        self.cmd(args)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .unwrap()
    }
}

/// One job, `monthly`, on the demo data, mailing to a loopback port; `smtp` and `job`
/// are extra lines of their sections ([`PLAIN`] for plain SMTP).
pub fn setup(port: u16, smtp: &str, job: &str) -> Setup {
    setup_on(&demo_db().display().to_string(), port, smtp, job)
}

pub fn setup_on(database: &str, port: u16, smtp: &str, job: &str) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("schedules.toml");
    std::fs::write(
        &config,
        format!(
            r#"[defaults]
database = "{database}"
output_dir = "out"
[smtp]
host = "127.0.0.1"
port = {port}
from = "CX Reports <reports@example.com>"
timeout_secs = 5
max_attempts = 2
backoff_secs = 0.05
{smtp}
[[job]]
name = "monthly"
cron = "0 8 1 1 *"
window = "rolling:6m"
{job}
"#
        ),
    )
    .unwrap();
    Setup { dir, config }
}

pub fn wait_for(what: &str, secs: u64, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub fn signal(child: &Child, sig: &str) {
    assert!(Command::new("kill")
        .args([&format!("-{sig}"), &child.id().to_string()])
        .status()
        .unwrap()
        .success());
}

/// SIGTERM, then the time until the process ended (at most `secs`).
pub fn stop_within(child: &mut Child, secs: u64) -> (std::process::ExitStatus, Duration) {
    signal(child, "TERM");
    let started = Instant::now();
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return (st, started.elapsed());
        }
        if started.elapsed() > Duration::from_secs(secs) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("did not stop within {secs} s of SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub fn stop(child: &mut Child) -> std::process::ExitStatus {
    stop_within(child, 60).0
}

pub fn kill(child: &mut Child) {
    child.kill().unwrap();
    child.wait().unwrap();
}

pub fn subjects(server: &Server) -> Vec<String> {
    server
        .state
        .lock()
        .unwrap()
        .accepted
        .iter()
        .map(|m| header(&m.raw, "Subject"))
        .collect()
}
