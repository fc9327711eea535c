//! Scheduled jobs: the configuration (`config`), cron and catch-up (`schedule`), the
//! run ledger (`ledger`), the SMTP transport (`mail`), one job's run (`job`), what it
//! mails (`email`), delivers (`delivery`) and sends again (`resend`) and tells its owners (`alerts`), the daemon that runs jobs when due (`daemon`),
//! `cxreport check` (`check`) and `cxreport status` (`status`, from the daemon's heartbeat). The types below are what those parts share about a job's run.

pub mod alerts;
pub mod check;
pub mod config;
pub mod daemon;
pub mod delivery;
pub mod email;
pub mod job;
pub mod ledger;
pub mod mail;
pub mod resend;
pub mod schedule;
pub mod status;

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;

use chrono::{DateTime, Utc};
use lettre::message::Mailbox;

use crate::clock::SharedClock;
use config::{Config, Job};
use ledger::{Ledger, LedgerError, RunState};

#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error("job `{0}` has a run in flight (overlap = \"forbid\"); not starting another")]
    Busy(String),
    #[error("unknown job `{name}` in {config} (jobs: {known})")]
    UnknownJob {
        name: String,
        config: PathBuf,
        known: String,
    },
    #[error("installing the signal handler: {0}")]
    Signal(std::io::Error),
}

impl crate::exit::Classify for JobError {
    /// A job name the configuration does not have is the user's; the rest is the
    /// work's.
    fn exit(&self) -> crate::exit::Exit {
        use crate::exit::Exit;
        match self {
            Self::UnknownJob { .. } => Exit::Usage,
            Self::Ledger(e) => e.exit(),
            Self::Busy(_) | Self::Signal(_) => Exit::Failed,
        }
    }
}

/// What a job's run does with its editions.
#[derive(Debug, Clone)]
pub enum Delivery {
    /// Write the report only.
    None,
    /// Deliver through the configured transport, recorded in the ledger.
    Send,
    /// Write `.eml` files into a directory (a preview: the ledger is not touched).
    Outbox(PathBuf),
    /// Send every edition to one address (a test: the ledger is not touched).
    TestTo(Mailbox),
}

/// What every step of one job's run needs to know.
pub struct Context<'a> {
    pub config: &'a Config,
    pub job: &'a Job,
    pub fire: DateTime<Utc>,
    pub delivery: &'a Delivery,
    /// The ledger of record; `None` for previews and test sends.
    pub ledger: Option<&'a Ledger>,
    /// Set when the process is asked to stop: no new delivery starts.
    pub stop: &'a AtomicBool,
    /// The process's clock (the daemon's rehearsal clock, or the real one): what the
    /// ledger stamps, when a retry is due, an alert's times. The report itself is
    /// about `fire`.
    pub clock: &'a SharedClock,
}

/// How a job's run ended.
#[derive(Debug, Clone)]
pub struct JobRun {
    pub job: String,
    pub period: Option<String>,
    pub state: RunState,
    pub error: Option<String>,
    pub dir: Option<PathBuf>,
    pub sent: usize,
    pub failed: usize,
    /// Deliveries not started because the process was asked to stop (a planned
    /// shutdown): they wait for the next start, they did not fail.
    pub interrupted: usize,
    /// Not rendered again: the ledger already had every delivery of this period sent.
    pub up_to_date: bool,
    /// The job's watch rules as the run judged them.
    pub watch: Vec<crate::run::watch::WatchResult>,
    /// A bursted job's region editions: each value found, its companies, whether it
    /// is mailed, why its run failed.
    pub editions: Vec<ledger::EditionRecord>,
}
