//! What cxreport writes to standard error while it works, as an operator and a log
//! collector see it: `--log-format json` (one object per line, the run's worker
//! process included), `RUST_LOG=debug` (each stage of a run with its time and rows),
//! values as users write them in the job and daemon lines, and the progress spinner:
//! on a terminal (a pseudo-terminal from util-linux `script`) past two seconds, never
//! in a pipe or a file, never with JSON.

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::service::{setup, setup_on, stop, wait_for, PLAIN, TO_CEO};
use common::{bin, demo_db, text};

/// A demo scale whose `demo-data` takes more than three seconds on a 2-core machine
/// (2.4 s at scale 8 when it is otherwise idle).
const SLOW_SCALE: &str = "20";

/// Whether `screen` shows a spinner glyph (indicatif's default ticks are Braille
/// patterns; nothing else cxreport prints is).
fn spins(screen: &str) -> bool {
    screen
        .chars()
        .any(|c| ('\u{2801}'..='\u{28ff}').contains(&c))
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// `run` of conversation-usage on the demo at a fixed time into `out`, at `rust_log`.
fn run_report(out: &Path, rust_log: &str, extra: &[&str]) -> Output {
    bin()
        .env("RUST_LOG", rust_log)
        .args([
            "run",
            "--db",
            demo_db().to_str().unwrap(),
            "--as-of",
            "2024-07-01T08:00:00Z",
            "--out",
            out.to_str().unwrap(),
        ])
        .args(extra)
        .output()
        .unwrap()
}

/// Every line of `log` as a JSON object with a level and the event's fields.
fn json_lines(log: &str) -> Vec<serde_json::Value> {
    log.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l.trim_end_matches('\r'))
                .unwrap_or_else(|e| panic!("not one JSON object ({e}): {l:?}\n{log}"));
            assert!(v["level"].is_string(), "no level: {l}");
            assert!(v["fields"]["message"].is_string(), "no message: {l}");
            v
        })
        .collect()
}

fn messages(lines: &[serde_json::Value]) -> Vec<&str> {
    lines
        .iter()
        .filter_map(|v| v["fields"]["message"].as_str())
        .collect()
}

#[test]
fn json_log_is_one_object_per_line_also_from_the_worker() {
    let out = tempfile::tempdir().unwrap();
    let o = run_report(out.path(), "info", &["--log-format", "json", "--data-only"]);
    assert!(o.status.success(), "{}", text(&o));
    let lines = json_lines(&stderr(&o));
    let said = messages(&lines);
    // Both are logged in the run's worker process: it logs as its caller does.
    assert!(said.contains(&"resolved what the run covers"), "{said:?}");
    let written = lines
        .iter()
        .find(|v| v["fields"]["message"] == "report written")
        .unwrap_or_else(|| panic!("{said:?}"));
    assert_eq!(written["level"], "INFO");
    assert_eq!(written["fields"]["report"], "conversation-usage");

    // The same from the environment (a service sets it once), and for an error line.
    let o = bin()
        .env("RUST_LOG", "info")
        .env("CXREPORT_LOG_FORMAT", "json")
        .args(["run", "--db", "/nonexistent/x.sqlite", "--out"])
        .arg(out.path())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let log = stderr(&o);
    // The error itself is the command's, not a log line; every log line is JSON.
    let (errors, log_lines): (Vec<&str>, Vec<&str>) =
        log.lines().partition(|l| l.starts_with("error: "));
    assert_eq!(errors.len(), 1, "{log}");
    json_lines(&log_lines.join("\n"));

    let o = bin()
        .args(["--log-format", "xml", "reports"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(stderr(&o).contains("json"), "{}", text(&o));
}

#[test]
fn debug_shows_each_stage_of_a_run_with_its_time_and_rows() {
    let out = tempfile::tempdir().unwrap();
    let o = run_report(out.path(), "debug", &["--lang", "en"]);
    assert!(o.status.success(), "{}", text(&o));
    let log = stderr(&o);
    let stage = |name: &str| -> String {
        log.lines()
            .find(|l| l.contains("stage finished") && l.contains(&format!("stage=\"{name}\"")))
            .or_else(|| {
                log.lines()
                    .find(|l| l.contains("stage finished") && l.contains(&format!("stage={name} ")))
            })
            .unwrap_or_else(|| panic!("no debug line for the stage `{name}`:\n{log}"))
            .to_owned()
    };
    for name in [
        "open the database",
        "plan",
        "load",
        "metrics",
        "comparison and trend",
        "findings",
        "csv",
        "narrative",
        "charts",
        "PDF layout",
        "editions",
        "write",
    ] {
        let line = stage(name);
        assert!(line.contains("DEBUG"), "{line}");
        assert!(line.contains("elapsed_ms="), "{line}");
    }
    let load = stage("load");
    assert!(load.contains("rows="), "{load}");
    assert!(
        load.contains("conversation_enhanced="),
        "rows per table: {load}"
    );
    assert!(stage("metrics").contains("rows="));
    assert!(stage("csv").contains("rows="));
    assert!(stage("PDF layout").contains("lang=\"en\"") || stage("PDF layout").contains("lang=en"));

    // At the default level the run stays as quiet as it was.
    let o = run_report(out.path(), "info", &["--lang", "en"]);
    assert!(o.status.success(), "{}", text(&o));
    let log = stderr(&o);
    assert!(
        !log.contains("stage finished") && !log.contains("DEBUG"),
        "{log}"
    );
    assert!(log.lines().count() <= 4, "{log}");
}

/// The words that would show Rust's debug formatting instead of what a user writes.
fn assert_user_written(log: &str) {
    for debug in ["Some(", "None", "Succeeded", "Failed", "Latest", " UTC"] {
        assert!(!log.contains(debug), "`{debug}` in the log:\n{log}");
    }
}

#[test]
fn job_and_daemon_lines_carry_values_as_users_write_them() {
    let s = setup(1, PLAIN, TO_CEO);
    let outbox = s.dir.path().join("outbox");
    let o = s.run(&["--outbox", outbox.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    let log = stderr(&o);
    let started = log
        .lines()
        .find(|l| l.contains("run started"))
        .unwrap_or_else(|| panic!("{log}"));
    assert!(started.contains("fire=2024-07-01T08:00:00Z"), "{started}");
    assert!(log.contains("run succeeded"), "{log}");
    assert_user_written(&log);

    // The daemon's line of a finished run: its state and period as `history` shows them.
    let s = setup_on("missing.sqlite", 1, "", "");
    std::fs::write(
        &s.config,
        std::fs::read_to_string(&s.config)
            .unwrap()
            .replace("cron = \"0 8 1 1 *\"", "cron = \"* * * * *\""),
    )
    .unwrap();
    let log = s.dir.path().join("daemon.log");
    let mut d = s.spawn_logged(&["daemon", "--clock-start", "2024-06-13T08:59:58Z"], &log);
    wait_for("the run's line", 60, || {
        std::fs::read_to_string(&log).is_ok_and(|l| l.contains("run finished"))
    });
    assert_eq!(stop(&mut d).code(), Some(0));
    let log = std::fs::read_to_string(&log).unwrap();
    let finished = log
        .lines()
        .find(|l| l.contains("run finished"))
        .unwrap_or_else(|| panic!("{log}"));
    assert!(
        finished.contains("state=failed") && finished.contains("period=fire-2024-06-13T09:00:00Z"),
        "{finished}"
    );
    assert_user_written(&log);
}

/// `cmd` (a shell command line) under a pseudo-terminal; what the terminal showed and
/// how long it took.
fn on_a_terminal(cmd: &str) -> (String, Duration) {
    on_a_terminal_with(cmd, &[])
}

fn on_a_terminal_with(cmd: &str, env: &[(&str, &str)]) -> (String, Duration) {
    let started = Instant::now();
    let o = Command::new("script")
        .args(["-qfec", cmd, "/dev/null"])
        .env("RUST_LOG", "info")
        .env_remove("NO_COLOR")
        .env("TERM", "xterm")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run util-linux `script` ({e}): on Debian it is in bsdutils")
        });
    assert!(o.status.success(), "{}", text(&o));
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        started.elapsed(),
    )
}

fn demo_data_cmd(out: &Path, scale: &str) -> String {
    format!(
        "'{}' demo-data --scale {scale} --out '{}'",
        env!("CARGO_BIN_EXE_cxreport"),
        out.display()
    )
}

#[test]
fn a_terminal_gets_a_spinner_with_the_stage_past_two_seconds() {
    let dir = tempfile::tempdir().unwrap();
    let (screen, took) = on_a_terminal(&demo_data_cmd(&dir.path().join("a.sqlite"), SLOW_SCALE));
    assert!(
        took > Duration::from_secs(3),
        "demo-data --scale {SLOW_SCALE} took {took:?}: raise SLOW_SCALE"
    );
    assert!(spins(&screen), "no spinner glyph:\n{screen:?}");
    assert!(screen.contains("writing"), "no stage:\n{screen:?}");
    assert!(
        screen.contains("(2s)") || screen.contains("(3s)"),
        "no elapsed time:\n{screen:?}"
    );
    // Cleared at the end: the last thing on the terminal is the command's own line.
    let last = screen.trim_end().rsplit(['\r', '\n']).next().unwrap_or("");
    assert!(last.contains("wrote "), "{screen:?}");

    // Work that ends sooner leaves no trace of one.
    let (screen, took) = on_a_terminal(&demo_data_cmd(&dir.path().join("b.sqlite"), "1"));
    if took < Duration::from_millis(1800) {
        assert!(!spins(&screen), "{screen:?}");
    } else {
        eprintln!("demo-data --scale 1 took {took:?} here: the short case is not judged");
    }

    // JSON on a terminal: log lines only.
    let (screen, _) = on_a_terminal(&format!(
        "{} --log-format json",
        demo_data_cmd(&dir.path().join("c.sqlite"), SLOW_SCALE)
    ));
    assert!(!spins(&screen), "{screen:?}");
    let log: Vec<&str> = screen
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with("wrote "))
        .collect();
    json_lines(&log.join("\n"));
}

#[test]
fn a_run_on_a_terminal_keeps_its_log_lines_whole_around_the_spinner() {
    let dir = tempfile::tempdir().unwrap();
    let (screen, took) = on_a_terminal(&format!(
        "'{}' run --db '{}' --as-of 2024-07-01T08:00:00Z --out '{}'",
        env!("CARGO_BIN_EXE_cxreport"),
        demo_db().display(),
        dir.path().display()
    ));
    // The worker's lines pass through the caller, which writes them around the spinner.
    let whole = |what: &str| {
        screen
            .split(['\r', '\n'])
            .any(|l| l.contains(what) && l.contains("INFO"))
    };
    assert!(whole("resolved what the run covers"), "{screen:?}");
    assert!(whole("report written"), "{screen:?}");
    if took > Duration::from_secs(3) {
        assert!(
            spins(&screen),
            "a {took:?} run without a spinner:\n{screen:?}"
        );
    }
}

#[test]
fn a_pipe_or_a_file_gets_no_progress() {
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let o = bin()
        .env("RUST_LOG", "info")
        .args(["demo-data", "--scale", SLOW_SCALE, "--out"])
        .arg(dir.path().join("a.sqlite"))
        .output()
        .unwrap();
    let took = started.elapsed();
    assert!(o.status.success(), "{}", text(&o));
    assert!(took > Duration::from_secs(3), "{took:?}: raise SLOW_SCALE");
    let log = stderr(&o);
    assert!(!log.contains('\r') && !spins(&log), "{log:?}");
    assert!(
        !log.contains('\x1b'),
        "colour or cursor codes in a pipe: {log:?}"
    );
    assert!(log.contains("wrote "), "{log}");
}

/// The worker's line on a terminal carries its caller's colour, and `NO_COLOR` takes it
/// from both.
#[test]
fn colour_on_a_terminal_unless_no_color() {
    let dir = tempfile::tempdir().unwrap();
    let cmd = format!(
        "'{}' run --db '{}' --as-of 2024-07-01T08:00:00Z --data-only --out '{}'",
        env!("CARGO_BIN_EXE_cxreport"),
        demo_db().display(),
        dir.path().display()
    );
    // The escape codes the text log colours with (the spinner's cursor codes aside).
    let coloured = |screen: &str| screen.contains("\u{1b}[32m") || screen.contains("\u{1b}[2m");
    let (screen, _) = on_a_terminal(&cmd);
    let line = screen
        .split(['\r', '\n'])
        .find(|l| l.contains("resolved what the run covers"))
        .unwrap_or_else(|| panic!("{screen:?}"));
    assert!(coloured(line), "the worker's line without colour: {line:?}");
    let (screen, _) = on_a_terminal_with(&cmd, &[("NO_COLOR", "1")]);
    assert!(
        screen.contains("resolved what the run covers"),
        "{screen:?}"
    );
    assert!(!coloured(&screen), "{screen:?}");
}

/// `schedule` names the catch-up policy as schedules.toml writes it.
#[test]
fn schedule_prints_the_catchup_policy_as_configured() {
    let s = setup(1, PLAIN, "catchup = \"all\"");
    let o = s.cmd(&["schedule", "--count", "1"]).output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let shown = String::from_utf8_lossy(&o.stdout);
    assert!(shown.contains("catchup=all"), "{shown}");
}
