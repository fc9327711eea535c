//! Each run's work in a worker process of its own. Templates can be a user's overrides
//! and the data anyone's: a Tera recursion that overflows the stack aborts a process
//! (no panic guard can catch that), and a Typst loop cannot be interrupted from
//! inside. In a worker, either ends that one run: the caller (the command line, a
//! job, the daemon with other jobs in flight) sees a failed run naming the stage,
//! records it and alerts, and a run past its time limit is killed.
//!
//! The caller plans the run (`prepare`: the period keys the ledger), then hands the
//! request and the clock's time to `cxreport run-worker` as one JSON line on its
//! standard input, which it keeps open. The worker plans again from the same data and
//! time (the same period, or it refuses), runs, and answers on its standard output:
//! `stage <name>` lines as it goes, then one `reply <json>` line. Its log goes to the
//! same standard error as the caller's, in the caller's format ([`log_as`]; through
//! the caller while the caller draws a progress indicator, so lines and indicator do
//! not overwrite each other). The worker is the same executable, so both sides agree
//! on the protocol.
//!
//! The caller decides when a run ends: the worker ignores SIGINT and SIGTERM (a
//! service manager signals every process of the service, and a planned shutdown lets
//! the run in flight finish), and exits as soon as its standard input closes, which is
//! when the caller is gone (so no orphan writes a report after a recovery started).
//!
//! The worker configures the report's options from the request once more, in its own
//! process: the typed settings (`reports::Configured`) are the report's own type behind
//! a trait object, so what crosses the pipe is the request as the user wrote it, and
//! the worker's `prepare` reads it exactly as the caller's did (the caller already
//! refused options that do not read, so this second reading cannot fail on them). Within
//! one process the options are read once.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{RunError, RunOutcome, RunRequest};
use crate::clock::FixedClock;
use crate::exit::{self, Classify};
use crate::render::templates::{self, NarrativeError, Templates};

/// The hidden command that runs a worker.
pub const COMMAND: &str = "run-worker";

/// How long past its own time limit a worker may take before it is killed: the
/// limits inside the worker (queries, the chart engine) end those stages with their
/// own message first.
const GRACE: Duration = Duration::from_secs(2);

/// The executable that runs workers; unset (tests of the library): runs stay in the
/// calling process.
static EXECUTABLE: OnceLock<PathBuf> = OnceLock::new();
/// Whether this process is a worker (its stages are reported to the caller).
static IN_WORKER: AtomicBool = AtomicBool::new(false);
/// In a worker: what was left of the run's time limit when the caller handed it over.
static REMAINING: OnceLock<Duration> = OnceLock::new();
/// The environment that makes a worker log as this process does (format, colour).
static LOG_ENV: OnceLock<Vec<(&'static str, String)>> = OnceLock::new();

/// The run's deadline for a time limit of `budget`: from now, or in a worker what the
/// caller had left of it (messages name the limit as configured).
pub(super) fn deadline(budget: Option<Duration>) -> Option<crate::clock::Deadline> {
    let budget = budget?;
    let left = REMAINING.get().copied().unwrap_or(budget);
    Some(crate::clock::Deadline {
        at: Instant::now() + left,
        budget,
    })
}

/// From now on, runs go to worker processes of `exe` (the `cxreport` binary).
pub fn isolate_runs_in(exe: PathBuf) {
    let _ = EXECUTABLE.set(exe);
}

/// Workers started from now on get `vars` in their environment: what makes their log
/// lines look like this process's (the command line's `--log-format`, its colour).
pub fn log_as(vars: Vec<(&'static str, String)>) {
    let _ = LOG_ENV.set(vars);
}

/// The executable runs go to, when they are isolated and this is not a worker.
pub(super) fn executable() -> Option<&'static PathBuf> {
    EXECUTABLE
        .get()
        .filter(|_| !IN_WORKER.load(Ordering::Relaxed))
}

/// A worker says which stage it is in, so that a run killed or aborted names it (and
/// its caller's progress indicator shows it); in the caller's own process the stage
/// goes to the progress indicator directly.
pub fn stage(name: &str) {
    if IN_WORKER.load(Ordering::Relaxed) {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "stage {name}");
        let _ = out.flush();
    } else {
        crate::progress::stage(name);
    }
}

/// What the caller hands a worker.
#[derive(Serialize, Deserialize)]
enum Task {
    /// A planned run.
    Run {
        request: Box<RunRequest>,
        /// The run's reference time (the caller's clock when it planned).
        reference: DateTime<Utc>,
        /// The period the caller planned: the worker must plan the same.
        period: String,
        /// How much of the run's time limit is left for the worker.
        remaining: Option<Duration>,
    },
    /// Templates of one language of a report rendered with `value` bound as `name`
    /// (an edition's emails); `joined`: lines joined as sentences are.
    Render {
        templates: Templates,
        report: String,
        lang: String,
        name: String,
        value: Value,
        items: Vec<(String, bool)>,
    },
    /// The owners' alert.
    OwnerAlert { templates: Templates, value: Value },
}

/// What a worker answers.
#[derive(Serialize, Deserialize)]
enum Reply {
    Done(Box<RunOutcome>),
    Texts(Vec<String>),
    Failed { message: String, usage: bool },
}

/// How long rendering an email or an alert may take: the built-in ones take
/// milliseconds.
const RENDER_LIMIT: Duration = Duration::from_secs(30);

/// Why a run in a worker did not come back with an outcome.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// The run failed in the worker, with the error it would have had in process.
    #[error("{message}")]
    Failed { message: String, usage: bool },
    #[error(
        "stopped at the time limit of {} s during {stage} (a template override or very large data can make {stage} take that long; look at the templates, or raise run_timeout_secs / --timeout-secs)",
        limit.as_secs()
    )]
    TimedOut { limit: Duration, stage: String },
    #[error("the run's process ended abnormally ({how}) during {stage}{hint}")]
    Died {
        how: String,
        stage: String,
        hint: &'static str,
    },
    #[error("starting the run's worker process {exe}: {cause}", exe = exe.display())]
    Spawn { exe: PathBuf, cause: std::io::Error },
    #[error("the run's worker process: {0}")]
    Protocol(String),
}

impl crate::exit::Classify for WorkerError {
    /// A run that failed in the worker keeps the class it had there; a worker that
    /// timed out, died or could not be talked to is a failed run.
    fn exit(&self) -> crate::exit::Exit {
        use crate::exit::Exit;
        match self {
            Self::Failed { usage: true, .. } => Exit::Usage,
            Self::Failed { usage: false, .. }
            | Self::TimedOut { .. }
            | Self::Died { .. }
            | Self::Spawn { .. }
            | Self::Protocol(_) => Exit::Failed,
        }
    }
}

/// Runs the planned request in a worker process of `exe` and waits for it, killing
/// it when `limit` (what is left of the run's time limit, and the limit as
/// configured) has passed.
pub(super) fn execute_in_worker(
    exe: &Path,
    req: &RunRequest,
    reference: DateTime<Utc>,
    period: &str,
    limit: Option<(Duration, Duration)>,
) -> Result<RunOutcome, RunError> {
    let task = Task::Run {
        request: Box::new(req.clone()),
        reference,
        period: period.to_owned(),
        remaining: limit.map(|l| l.0),
    };
    match call(exe, &task, limit)? {
        Reply::Done(outcome) => Ok(*outcome),
        Reply::Failed { message, usage } => Err(WorkerError::Failed { message, usage }.into()),
        Reply::Texts(_) => Err(WorkerError::Protocol("it answered texts to a run".into()).into()),
    }
}

/// Renders `items` (template file, joined as sentences) of one language of `report`
/// with `value` bound as `name`: in a worker process when runs are isolated, since
/// an email template can be a user's override (the caller is the daemon, with other
/// jobs in flight).
pub fn render_texts(
    templates: &Templates,
    report: &str,
    lang: &str,
    name: &str,
    value: &Value,
    items: &[(&str, bool)],
) -> Result<Vec<String>, NarrativeError> {
    let Some(exe) = executable() else {
        return render_here(templates, report, lang, name, value, items);
    };
    let task = Task::Render {
        templates: templates.clone(),
        report: report.to_owned(),
        lang: lang.to_owned(),
        name: name.to_owned(),
        value: value.clone(),
        items: items.iter().map(|(t, j)| ((*t).to_owned(), *j)).collect(),
    };
    texts(call(exe, &task, Some((RENDER_LIMIT, RENDER_LIMIT))))
}

/// The owners' alert text ([`templates::owner_alert`]), in a worker process when
/// runs are isolated.
pub fn owner_alert(templates: &Templates, value: &Value) -> Result<String, NarrativeError> {
    let Some(exe) = executable() else {
        return templates::owner_alert(templates, value);
    };
    let task = Task::OwnerAlert {
        templates: templates.clone(),
        value: value.clone(),
    };
    texts(call(exe, &task, Some((RENDER_LIMIT, RENDER_LIMIT))))?
        .pop()
        .ok_or_else(|| NarrativeError::Worker("the owner alert came back empty".into()))
}

fn texts(reply: Result<Reply, WorkerError>) -> Result<Vec<String>, NarrativeError> {
    match reply {
        Ok(Reply::Texts(t)) => Ok(t),
        Ok(Reply::Failed { message, .. }) => Err(NarrativeError::Worker(message)),
        Ok(Reply::Done(_)) => Err(NarrativeError::Worker(
            "the worker answered a run to a rendering".into(),
        )),
        Err(e) => Err(NarrativeError::Worker(format!(
            "rendering the templates: {e}"
        ))),
    }
}

fn render_here(
    templates: &Templates,
    report: &str,
    lang: &str,
    name: &str,
    value: &Value,
    items: &[(&str, bool)],
) -> Result<Vec<String>, NarrativeError> {
    let language = templates.language(report, lang)?;
    items
        .iter()
        .map(|(template, joined)| {
            if *joined {
                language.render(template, name, value)
            } else {
                language.render_raw(template, name, value)
            }
        })
        .collect()
}

/// Hands `task` to a worker process of `exe` and waits for its reply, killing it
/// when `limit` (what is left, and the limit as configured) has passed.
fn call(
    exe: &Path,
    task: &Task,
    limit: Option<(Duration, Duration)>,
) -> Result<Reply, WorkerError> {
    let input = serde_json::to_vec(task)
        .map_err(|e| WorkerError::Protocol(format!("the request cannot be written: {e}")))?;
    // While a progress indicator is drawn, the worker's log lines pass through this
    // process, which writes them around it; otherwise they go straight to the same
    // standard error.
    let relay = crate::progress::is_watched();
    let mut child = Command::new(exe)
        .arg(COMMAND)
        .envs(
            LOG_ENV
                .get()
                .into_iter()
                .flatten()
                .map(|(k, v)| (*k, v.as_str())),
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(if relay {
            Stdio::piped()
        } else {
            Stdio::inherit()
        })
        .spawn()
        .map_err(|source| WorkerError::Spawn {
            exe: exe.to_owned(),
            cause: source,
        })?;
    let relayed = child.stderr.take().map(|err| {
        std::thread::spawn(move || {
            for line in BufReader::new(err).split(b'\n') {
                let Ok(mut line) = line else { break };
                line.push(b'\n');
                crate::progress::suspend(|| {
                    let _ = std::io::stderr().lock().write_all(&line);
                });
            }
        })
    });
    let started = Instant::now();
    // Kept open until the worker ends: its closing tells the worker the caller is gone.
    // The request is a few KiB, within a pipe's buffer.
    let mut stdin = child.stdin.take();
    if let Some(s) = stdin.as_mut() {
        let sent = s
            .write_all(&input)
            .and_then(|()| s.write_all(b"\n"))
            .and_then(|()| s.flush());
        if let Err(e) = sent {
            let _ = child.kill();
            let _ = child.wait();
            return Err(WorkerError::Protocol(format!(
                "handing it the request: {e}"
            )));
        }
    }
    let stage = Arc::new(Mutex::new(String::from("start")));
    let reply: Arc<Mutex<Option<String>>> = Arc::new(Mutex::new(None));
    let reader = child.stdout.take().map(|out| {
        let (stage, reply) = (Arc::clone(&stage), Arc::clone(&reply));
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if let Some(s) = line.strip_prefix("stage ") {
                    crate::progress::stage(s);
                    *lock(&stage) = s.to_owned();
                } else if let Some(r) = line.strip_prefix("reply ") {
                    *lock(&reply) = Some(r.to_owned());
                }
            }
        })
    });
    let kill_at = limit.map(|l| started + l.0 + GRACE);
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Ok(status),
            Ok(None) => {}
            Err(e) => break Err(e),
        }
        if kill_at.is_some_and(|k| Instant::now() >= k) {
            let _ = child.kill();
            let _ = child.wait();
            drop(stdin);
            for t in [reader, relayed].into_iter().flatten() {
                let _ = t.join();
            }
            let stage = lock(&stage).clone();
            tracing::error!(%stage, "worker killed at its time limit");
            return Err(WorkerError::TimedOut {
                limit: limit.map(|l| l.1).unwrap_or_default(),
                stage,
            });
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    drop(stdin);
    for t in [reader, relayed].into_iter().flatten() {
        let _ = t.join();
    }
    let status = status.map_err(|e| WorkerError::Protocol(format!("waiting for it: {e}")))?;
    let stage = lock(&stage).clone();
    let Some(text) = lock(&reply).take() else {
        let (how, hint) = describe(&status);
        return Err(WorkerError::Died { how, stage, hint });
    };
    serde_json::from_str::<Reply>(&text)
        .map_err(|e| WorkerError::Protocol(format!("its answer cannot be read: {e}")))
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// How a worker that did not answer ended, and what that usually means.
fn describe(status: &std::process::ExitStatus) -> (String, &'static str) {
    use std::os::unix::process::ExitStatusExt;
    match status.signal() {
        Some(6) => (
            "SIGABRT".into(),
            ": most often a stack overflow, e.g. a template whose macros call each other without end",
        ),
        Some(11) => ("SIGSEGV".into(), ": most often a stack overflow"),
        Some(9) => (
            "SIGKILL".into(),
            ": killed from outside, e.g. by the system when memory ran out",
        ),
        Some(n) => (format!("signal {n}"), ""),
        None => (
            format!("exit status {}", status.code().unwrap_or(-1)),
            " without an answer",
        ),
    }
}

/// The worker's side (`cxreport run-worker`): reads the task from standard input,
/// runs it and answers on standard output. Returns the process's exit code.
pub fn serve() -> u8 {
    IN_WORKER.store(true, Ordering::Relaxed);
    // Registering a handler replaces the default action (terminate): the caller decides.
    let ignored = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        let _ = signal_hook::flag::register(sig, Arc::clone(&ignored));
    }
    let mut stdin = BufReader::new(std::io::stdin());
    let mut input = String::new();
    let read = stdin.read_line(&mut input);
    // The caller keeps standard input open while it waits: end of file means it is
    // gone, and nobody will read what this worker writes.
    std::thread::spawn(move || {
        let mut rest = Vec::new();
        let _ = stdin.read_to_end(&mut rest);
        std::process::exit(exit::WORKER_ORPHANED.into());
    });
    let reply = match read {
        Err(e) => Reply::Failed {
            message: format!("the run's worker cannot read its request: {e}"),
            usage: false,
        },
        Ok(_) => match serde_json::from_str::<Task>(&input) {
            Err(e) => Reply::Failed {
                message: format!("the run's worker cannot read its request: {e}"),
                usage: false,
            },
            Ok(Task::Run {
                request,
                reference,
                period,
                remaining,
            }) => run_task(*request, reference, period, remaining),
            Ok(Task::Render {
                templates,
                report,
                lang,
                name,
                value,
                items,
            }) => {
                stage(&format!("the templates of {report}/{lang}"));
                let items: Vec<(&str, bool)> =
                    items.iter().map(|(t, j)| (t.as_str(), *j)).collect();
                rendered(render_here(
                    &templates, &report, &lang, &name, &value, &items,
                ))
            }
            Ok(Task::OwnerAlert { templates, value }) => {
                stage("the owner alert template");
                rendered(templates::owner_alert(&templates, &value).map(|t| vec![t]))
            }
        },
    };
    let text = match serde_json::to_string(&reply) {
        Ok(t) => t,
        Err(e) => {
            // An outcome always serializes; this would be a bug, said as such.
            serde_json::to_string(&Reply::Failed {
                message: format!("internal error: the run's outcome cannot be written: {e}"),
                usage: false,
            })
            .unwrap_or_default()
        }
    };
    let mut out = std::io::stdout().lock();
    let ok = writeln!(out, "reply {text}").and_then(|()| out.flush());
    if ok.is_ok() {
        exit::OK
    } else {
        exit::FAILED
    }
}

fn rendered(texts: Result<Vec<String>, NarrativeError>) -> Reply {
    match texts {
        Ok(t) => Reply::Texts(t),
        Err(e) => Reply::Failed {
            message: e.to_string(),
            usage: false,
        },
    }
}

fn run_task(
    request: RunRequest,
    reference: DateTime<Utc>,
    period: String,
    remaining: Option<Duration>,
) -> Reply {
    if let Some(r) = remaining {
        let _ = REMAINING.set(r);
    }
    let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let clock = FixedClock(reference);
        stage("plan");
        let prepared = super::prepare(&request, &clock)?;
        if prepared.plan.period != period {
            return Err(WorkerError::Protocol(format!(
                "the data changed between planning and running: period {} then {period}",
                prepared.plan.period
            ))
            .into());
        }
        super::execute_here(prepared, &request)
    }));
    match run {
        Ok(Ok(outcome)) => Reply::Done(Box::new(outcome)),
        Ok(Err(e)) => Reply::Failed {
            usage: e.is_usage(),
            message: e.to_string(),
        },
        Err(panic) => Reply::Failed {
            message: panic_message(panic.as_ref()),
            usage: false,
        },
    }
}

/// What a caught panic says, as a run's error.
pub fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    let what = panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown".into());
    format!("internal error (a bug in cxreport, please report it): {what}")
}
