//! What a hostile template or thin data can do to a run, and that it stays that run's:
//! the templates a run refuses before they can abort a process, the worker process
//! each run's work happens in (killed at the time limit, its abort a failed run that
//! names the stage), and the daemon with a good and a bad job side by side.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::service::{stop, wait_for};
use common::smtp::{header, smtp_server};
use common::{bin, demo_db, text};

/// A templates folder with `files` (path under it, text).
fn templates(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (path, body) in files {
        let p = dir.path().join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, body).unwrap();
    }
    dir
}

/// The issue's macro: it calls itself without end, and another template imports it
/// (findings.tera is loaded before recommendations.tera, which imports it).
const RECURSIVE: [(&str, &str); 2] = [
    (
        "conversation-usage/en/findings.tera",
        "{% macro r(n) %}{{ self::r(n=n+1) }}{% endmacro r %}",
    ),
    (
        "conversation-usage/en/recommendations.tera",
        "{% import \"findings.tera\" as m %}{{ m::r(n=1) }}",
    ),
];

fn run_with(dir: &Path, extra: &[&str]) -> (std::process::Output, Duration) {
    let out = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let o = bin()
        .args([
            "run",
            "--db",
            demo_db().to_str().unwrap(),
            "--as-of",
            "2024-07-01T08:00:00Z",
            "--lang",
            "en",
            "--out",
            out.path().to_str().unwrap(),
            "--templates",
            dir.to_str().unwrap(),
        ])
        .args(extra)
        .output()
        .unwrap();
    (o, started.elapsed())
}

/// `cxreport check` of a configuration with one job on the demo and `templates`.
fn check(templates: &Path) -> std::process::Output {
    let cfg = templates.join("schedules.toml");
    std::fs::write(
        &cfg,
        format!(
            "[defaults]\ndatabase = \"{}\"\ntemplates = \"{}\"\noutput_dir = \"out\"\n[[job]]\nname = \"m\"\ncron = \"0 8 1 * *\"\n[job.recipients]\nen = [\"a@example.com\"]\n",
            demo_db().display(),
            templates.display()
        ),
    )
    .unwrap();
    bin()
        .args(["check", "--config", cfg.to_str().unwrap()])
        .output()
        .unwrap()
}

#[test]
fn a_recursive_template_is_refused_by_run_and_check_without_aborting() {
    let dir = templates(&RECURSIVE);
    let (o, _) = run_with(dir.path(), &[]);
    // Before: SIGABRT (stack overflow), no exit code at all.
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let t = text(&o);
    assert!(
        t.contains("macro `r` of findings.tera → macro `r` of findings.tera")
            && t.contains("may not recurse"),
        "{t}"
    );
    // `check` says the same and fails (it accepted the template before).
    let o = check(dir.path());
    assert!(o.status.code().is_some_and(|c| c != 0), "{}", text(&o));
    assert!(text(&o).contains("may not recurse"), "{}", text(&o));
}

#[test]
fn deeply_nested_template_text_is_refused_by_check_without_aborting() {
    let deep = format!("{{{{ {}1{} }}}}", "(".repeat(5000), ")".repeat(5000));
    let dir = templates(&[("conversation-usage/en/findings.tera", &deep)]);
    let o = check(dir.path());
    // Before: `check` itself aborted (SIGABRT in Tera's parser).
    assert!(o.status.code().is_some_and(|c| c != 0), "{}", text(&o));
    assert!(
        text(&o).contains("nest deeper than 32 levels"),
        "{}",
        text(&o)
    );
}

/// A Typst loop that runs for minutes: only killing the process stops it.
const TYPST_LOOP: &str = "#let n = 0\n#for i in range(2000000000) { n += i }\n#n\n";

#[test]
fn a_typst_loop_is_stopped_at_the_time_limit_naming_the_stage() {
    let dir = templates(&[("conversation-usage/report.typ", TYPST_LOOP)]);
    // 10 s: the stages before the layout must fit on a loaded machine (at 3 s they
    // once did not, and the limit named the charts).
    let (o, took) = run_with(dir.path(), &["--timeout-secs", "10"]);
    eprintln!("a Typst loop under --timeout-secs 10 ended after {took:?}");
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let t = text(&o);
    assert!(
        t.contains("time limit of 10 s during the PDF layout (en, Typst)"),
        "{t}"
    );
    // The limit plus the worker's grace; before, the run went on for minutes.
    assert!(took < Duration::from_secs(40), "{took:?}");
}

/// The worker processes of `parent`.
fn workers_of(parent: u32) -> Vec<u32> {
    let o = Command::new("pgrep")
        .args(["-P", &parent.to_string(), "-f", "run-worker"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

#[test]
fn a_run_whose_worker_aborts_fails_that_run_naming_the_stage() {
    let dir = templates(&[("conversation-usage/report.typ", TYPST_LOOP)]);
    let out = tempfile::tempdir().unwrap();
    let child: Child = bin()
        .args([
            "run",
            "--db",
            demo_db().to_str().unwrap(),
            "--as-of",
            "2024-07-01T08:00:00Z",
            "--lang",
            "en",
            "--out",
            out.path().to_str().unwrap(),
            "--templates",
            dir.path().to_str().unwrap(),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut worker = Vec::new();
    wait_for("the worker", 60, || {
        worker = workers_of(child.id());
        !worker.is_empty()
    });
    // Let it reach the layout, then abort it as a stack overflow would.
    std::thread::sleep(Duration::from_secs(3));
    assert!(Command::new("kill")
        .args(["-ABRT", &worker[0].to_string()])
        .status()
        .unwrap()
        .success());
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let t = text(&o);
    assert!(
        t.contains("ended abnormally (SIGABRT)") && t.contains("during the PDF layout (en, Typst)"),
        "{t}"
    );
    // Nothing half-written is left in place.
    assert!(
        !out.path().join("conversation-usage").exists()
            || std::fs::read_dir(out.path().join("conversation-usage"))
                .unwrap()
                .flatten()
                .all(|e| e.file_name().to_string_lossy().starts_with('.'))
    );
}

struct Daemon {
    dir: tempfile::TempDir,
    config: PathBuf,
}

impl Daemon {
    fn spawn(&self, clock_start: &str) -> Child {
        bin()
            .env("RUST_LOG", "info")
            .args([
                "daemon",
                "--config",
                self.config.to_str().unwrap(),
                "--clock-start",
                clock_start,
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    }

    fn runs(&self) -> Vec<cxreport::jobs::ledger::RunRecord> {
        let state = self.dir.path().join("out/cxreport-state.sqlite");
        if !state.exists() {
            return Vec::new();
        }
        cxreport::jobs::ledger::Ledger::open_read_only(&state)
            .and_then(|l| l.history(None))
            .unwrap_or_default()
    }
}

/// The issue's case in the daemon: a bad job (the recursive template) beside a good
/// one. Before, the first fire aborted the daemon with both runs in flight, their rows
/// stayed `running`, and every restart ran them again and aborted again.
#[test]
fn in_the_daemon_a_bad_job_fails_and_alerts_once_and_the_good_one_delivers() {
    let server = smtp_server(&[], None);
    let dir = templates(&[
        (
            "tag-drivers/en/findings.tera",
            "{% macro r(n) %}{{ self::r(n=n+1) }}{% endmacro r %}",
        ),
        (
            "tag-drivers/en/recommendations.tera",
            "{% import \"findings.tera\" as m %}{{ m::r(n=1) }}",
        ),
    ]);
    let config = dir.path().join("schedules.toml");
    std::fs::write(
        &config,
        format!(
            r#"[defaults]
database = "{db}"
output_dir = "out"
templates = "{tpl}"
[smtp]
host = "127.0.0.1"
port = {port}
tls = "none"
from = "CX Reports <reports@example.com>"
timeout_secs = 5
max_attempts = 2
backoff_secs = 0.05
[[job]]
name = "good"
cron = "0 8 * * *"
owners = ["owner@example.com"]
[job.recipients]
en = ["ceo@example.com"]
[[job]]
name = "bad"
report = "tag-drivers"
cron = "0 8 * * *"
owners = ["owner@example.com"]
[job.recipients]
en = ["vp@example.com"]
"#,
            db = demo_db().display(),
            tpl = dir.path().display(),
            port = server.port
        ),
    )
    .unwrap();
    let d = Daemon { dir, config };
    let mut daemon = d.spawn("2024-07-01T07:59:57Z");
    wait_for("both runs", 120, || {
        let runs = d.runs();
        runs.len() == 2 && runs.iter().all(|r| r.state != "running")
    });
    wait_for("the report and the alert", 60, || server.accepted() >= 2);
    std::thread::sleep(Duration::from_secs(2));
    assert!(daemon.try_wait().unwrap().is_none(), "the daemon runs on");
    assert_eq!(stop(&mut daemon).code(), Some(0));
    let runs = d.runs();
    let good = runs.iter().find(|r| r.job == "good").unwrap();
    let bad = runs.iter().find(|r| r.job == "bad").unwrap();
    assert_eq!(good.state, "succeeded", "{good:?}");
    assert_eq!(bad.state, "failed", "{bad:?}");
    assert!(
        bad.error
            .as_deref()
            .unwrap_or("")
            .contains("may not recurse"),
        "{bad:?}"
    );
    let mails: Vec<(Vec<String>, String)> = server
        .state
        .lock()
        .unwrap()
        .accepted
        .iter()
        .map(|m| (m.to.clone(), header(&m.raw, "Subject")))
        .collect();
    assert_eq!(mails.len(), 2, "{mails:?}");
    assert!(mails.iter().any(|(to, _)| to == &["ceo@example.com"]));
    assert_eq!(
        mails
            .iter()
            .filter(|(to, _)| to == &["owner@example.com"])
            .count(),
        1,
        "one alert: {mails:?}"
    );
    assert!(!mails.iter().any(|(to, _)| to == &["vp@example.com"]));
    // A restart runs nothing again: the bad run is failed, not left `running`.
    let mut daemon = d.spawn("2024-07-01T08:05:00Z");
    std::thread::sleep(Duration::from_secs(5));
    assert!(daemon.try_wait().unwrap().is_none(), "the daemon runs on");
    assert_eq!(stop(&mut daemon).code(), Some(0));
    assert_eq!(d.runs().len(), 2);
    assert_eq!(server.accepted(), 2, "no second alert, no second report");
}

/// The issue's repro of the panic: data that starts with a trickle (two conversations
/// before February) has a trend month in which the P1/P99 trim keeps nothing. Before,
/// conversation-usage panicked there (exit 101), also with `--compare none`.
#[test]
fn a_trend_month_the_trim_empties_is_empty_with_its_reason() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("trickle.sqlite");
    std::fs::copy(demo_db(), &db).unwrap();
    let conn = rusqlite::Connection::open(&db).unwrap();
    // Keep two January conversations whose first-response times differ (both lie
    // outside the percentiles between them).
    let kept: Vec<String> = conn
        .prepare(
            "SELECT e.conversation_id FROM intercom__conversation_enhanced e \
             JOIN intercom__conversation_metrics m USING (conversation_id) \
             WHERE e.conversation_created_at < '2024-02-01' \
               AND m.time_to_first_response_minutes IS NOT NULL \
             ORDER BY m.time_to_first_response_minutes LIMIT 2 OFFSET 10",
        )
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(kept.len(), 2);
    conn.execute(
        "DELETE FROM intercom__conversation_enhanced \
         WHERE conversation_created_at < '2024-02-01' AND conversation_id NOT IN (?1, ?2)",
        [&kept[0], &kept[1]],
    )
    .unwrap();
    drop(conn);
    for compare in ["previous", "none"] {
        let out = tempfile::tempdir().unwrap();
        let o = bin()
            .args([
                "run",
                "--db",
                db.to_str().unwrap(),
                "--as-of",
                "2024-07-01T08:00:00Z",
                "--data-only",
                "--compare",
                compare,
                "--out",
                out.path().to_str().unwrap(),
            ])
            .output()
            .unwrap();
        assert_eq!(
            o.status.code(),
            Some(0),
            "--compare {compare}: {}",
            text(&o)
        );
        let summary = std::fs::read_dir(out.path().join("conversation-usage"))
            .unwrap()
            .flatten()
            .map(|e| e.path().join("summary.json"))
            .find(|p| p.exists())
            .unwrap();
        let s = common::json(&summary);
        let jan = s["trend"]["months"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["month"] == "2024-01")
            .unwrap_or_else(|| panic!("{}", s["trend"]));
        let reason = jan["empty_reason"].as_str().unwrap_or("");
        assert!(reason.contains("outside the P1–P99 bounds"), "{jan}");
    }
}

/// An email template override that would loop for hours: rendered in a worker, it
/// is stopped at the rendering limit and the run fails saying so. Before, it held the
/// job's process (the daemon's worker thread) forever.
#[test]
fn a_runaway_email_template_is_stopped_and_fails_the_run() {
    let looping = "{% for a in range(end=10000) %}{% for b in range(end=10000) %}{% for c in range(end=10000) %}{% endfor %}{% endfor %}{% endfor %}";
    let dir = templates(&[("conversation-usage/en/email.txt.tera", looping)]);
    let cfg = dir.path().join("schedules.toml");
    std::fs::write(
        &cfg,
        format!(
            "[defaults]\ndatabase = \"{}\"\ntemplates = \"{}\"\noutput_dir = \"out\"\n[smtp]\nhost = \"127.0.0.1\"\nfrom = \"r@example.com\"\n[[job]]\nname = \"m\"\ncron = \"0 8 1 * *\"\n[job.recipients]\nen = [\"a@example.com\"]\n",
            demo_db().display(),
            dir.path().display()
        ),
    )
    .unwrap();
    let outbox = dir.path().join("outbox");
    let started = Instant::now();
    let mut child = bin()
        .args([
            "run",
            "--config",
            cfg.to_str().unwrap(),
            "--job",
            "m",
            "--as-of",
            "2024-07-01T08:00:00Z",
            "--outbox",
            outbox.to_str().unwrap(),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for("the run to end", 180, || {
        child.try_wait().unwrap().is_some()
    });
    let took = started.elapsed();
    let o = child.wait_with_output().unwrap();
    eprintln!("a runaway email template ended the run after {took:?}");
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let t = text(&o);
    assert!(
        t.contains("time limit of 30 s during the templates of conversation-usage/en"),
        "{t}"
    );
    assert!(!outbox.exists() || std::fs::read_dir(&outbox).unwrap().count() == 0);
}
