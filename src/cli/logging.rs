//! What cxreport writes to standard error while it works: the log, as text for a
//! person (colour only on a terminal, never with `NO_COLOR`) or as one JSON object per
//! line for a collector (`--log-format json`), and the progress indicator of long
//! commands on a terminal ([`Spinner`]). A run's worker process logs as its caller
//! does: the caller hands it the format and the colour decision in its environment.

use std::io::{IsTerminal, Write};
use std::sync::mpsc;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::progress::{self, Progress};

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// `2024-07-01T08:00:00Z  INFO run started job=monthly …`, for a person.
    #[default]
    Text,
    /// One JSON object per line (timestamp, level, fields), for a log collector.
    Json,
}

impl LogFormat {
    fn name(self) -> &'static str {
        match self {
            Self::Text => "text",
            Self::Json => "json",
        }
    }
}

/// The environment variable of `--log-format` (also how a worker learns it).
pub const FORMAT_ENV: &str = "CXREPORT_LOG_FORMAT";
/// Set by a caller for its worker processes: whether their log lines are coloured
/// (`1`) or not (`0`), as the caller's are. A worker's standard error may be a pipe
/// to its caller (while a progress indicator is drawn), so it cannot look for itself.
const WORKER_ANSI_ENV: &str = "CXREPORT_WORKER_LOG_ANSI";

/// How long work runs before its progress indicator appears: a run that ends sooner
/// leaves no trace of one.
pub const SHOW_AFTER: Duration = Duration::from_secs(2);

static FORMAT: OnceLock<LogFormat> = OnceLock::new();

/// Starts the process's log on standard error at `RUST_LOG`'s levels (default
/// `info`), in `format`.
pub fn init(format: LogFormat) {
    let _ = FORMAT.set(format);
    let ansi = match std::env::var(WORKER_ANSI_ENV).as_deref() {
        Ok("1") => true,
        Ok("0") => false,
        // Colour codes only on a terminal: in a file or the journal they are noise.
        _ => std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none(),
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(|| LogWriter)
        .with_target(false);
    // Fails only when a subscriber is already set (a second init): that one stays.
    let _ = match format {
        LogFormat::Text => builder.with_ansi(ansi).try_init(),
        LogFormat::Json => builder
            .with_ansi(false)
            .json()
            .with_current_span(false)
            .with_span_list(false)
            .try_init(),
    };
    crate::run::worker::log_as(vec![
        (FORMAT_ENV, format.name().to_owned()),
        (WORKER_ANSI_ENV, if ansi { "1" } else { "0" }.to_owned()),
    ]);
}

/// Standard error, with the progress indicator out of the way of each line.
struct LogWriter;

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut wrote = Ok(());
        progress::suspend(|| wrote = std::io::stderr().lock().write_all(buf));
        wrote.map(|()| buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

/// A spinner on standard error with the work's current stage and its elapsed time,
/// shown once the work has run [`SHOW_AFTER`] and cleared when dropped. There is
/// none unless standard error is a terminal and the log is text: a file, a pipe or a
/// collector gets log lines only.
pub struct Spinner {
    bar: ProgressBar,
    /// Dropped first: tells the thread that would show the spinner that the work ended.
    ended: Option<mpsc::Sender<()>>,
    shows: Option<std::thread::JoinHandle<()>>,
    watching: Option<progress::Watching>,
}

/// The stages as the spinner's message.
struct Stages(ProgressBar);

impl Progress for Stages {
    fn stage(&self, name: &str) {
        self.0.set_message(name.to_owned());
    }

    fn suspend(&self, write: &mut dyn FnMut()) {
        self.0.suspend(write);
    }
}

impl Spinner {
    /// The progress indicator of the work that starts now, when there is one to draw.
    pub fn start() -> Option<Self> {
        let text = FORMAT.get().copied().unwrap_or_default() == LogFormat::Text;
        (text && std::io::stderr().is_terminal()).then(Self::shown_after_a_while)
    }

    fn shown_after_a_while() -> Self {
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::hidden());
        if let Ok(style) = ProgressStyle::with_template("{spinner} {msg} ({elapsed})") {
            bar.set_style(style);
        }
        bar.set_message("starting");
        let watching = progress::watch(Arc::new(Stages(bar.clone())));
        let (ended, wait) = mpsc::channel::<()>();
        let shown = bar.clone();
        let shows = std::thread::spawn(move || {
            if let Err(mpsc::RecvTimeoutError::Timeout) = wait.recv_timeout(SHOW_AFTER) {
                shown.set_draw_target(ProgressDrawTarget::stderr());
                shown.enable_steady_tick(Duration::from_millis(100));
            }
        });
        Self {
            bar,
            ended: Some(ended),
            shows: Some(shows),
            watching: Some(watching),
        }
    }
}

impl Drop for Spinner {
    fn drop(&mut self) {
        drop(self.ended.take());
        if let Some(t) = self.shows.take() {
            let _ = t.join();
        }
        drop(self.watching.take());
        self.bar.finish_and_clear();
    }
}
