//! Long because every statement of the ledger's tables lives here, beside the tests
//! that pin what each means; the tables change together.
//!
//! The run ledger: a SQLite state database (`<output_dir>/cxreport-state.sqlite`) of
//! runs keyed by (job, period), deliveries keyed by (job, period, language, recipient)
//! with deterministic Message-IDs, the messages each edition mailed (so a delivery can
//! be retried later from the same text and files), owner alerts waiting for a working
//! SMTP server, per-job schedule cursors, and the daemon's heartbeat (`cxreport
//! status` reads it). Several processes share it safely (WAL, busy timeout).
//!
//! Who runs a job is decided by an OS file lock per job (`cxreport-state.locks/<job>.lock`),
//! not by process ids: the kernel releases it when the holder dies, whatever pid the
//! next process gets (a daemon restarted as PID 1 in a container gets the same one). A
//! `running` row whose job lock is free belongs to a process that is gone; it is
//! recovered once, by whoever takes the lock first (and not a second time: a run
//! interrupted again after its recovery is recorded failed). Who sends a delivery is
//! decided the same way, by a lock per delivery
//! (`cxreport-state.locks/<job>.deliveries/<hash>.lock`) taken with a claim of its row,
//! so overlapping runs of one period never send one message twice.

use std::borrow::Cow;
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use rusqlite::{
    params, Connection, OpenFlags, OptionalExtension, Transaction, TransactionBehavior,
};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::clock::SharedClock;
use crate::reports::comparison::Unit;
use crate::run::watch::WatchResult;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS runs (
    job TEXT NOT NULL,
    period TEXT NOT NULL,
    fire_time TEXT,
    state TEXT NOT NULL,
    started_at TEXT,
    finished_at TEXT,
    pid INTEGER,
    output_dir TEXT,
    error TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (job, period)
);
CREATE TABLE IF NOT EXISTS deliveries (
    job TEXT NOT NULL,
    period TEXT NOT NULL,
    lang TEXT NOT NULL,
    recipient TEXT NOT NULL,
    message_id TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    updated_at TEXT,
    PRIMARY KEY (job, period, lang, recipient)
);
CREATE TABLE IF NOT EXISTS messages (
    job TEXT NOT NULL,
    period TEXT NOT NULL,
    lang TEXT NOT NULL,
    content TEXT NOT NULL,
    PRIMARY KEY (job, period, lang)
);
CREATE TABLE IF NOT EXISTS alerts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    job TEXT NOT NULL,
    recipient TEXT NOT NULL,
    message_id TEXT NOT NULL,
    subject TEXT NOT NULL,
    body TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    created_at TEXT NOT NULL,
    next_attempt_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS watch (
    job TEXT NOT NULL,
    period TEXT NOT NULL,
    rule TEXT NOT NULL,
    fired INTEGER NOT NULL,
    metric TEXT NOT NULL,
    slice TEXT NOT NULL,
    change REAL,
    threshold REAL NOT NULL,
    note TEXT,
    PRIMARY KEY (job, period, rule)
);
CREATE TABLE IF NOT EXISTS cursors (
    job TEXT PRIMARY KEY,
    last_fire TEXT NOT NULL
);
";
/// An owner alert to keep, about the run of `period`.
#[derive(Debug, Clone, Copy)]
pub struct NewAlert<'a> {
    pub job: &'a str,
    pub period: &'a str,
    pub kind: AlertKind,
    pub recipient: &'a str,
    pub message_id: &'a str,
    pub subject: &'a str,
    pub body: &'a str,
}

/// Columns added to `runs` after the first release (`recoveries`: how often the run
/// was found interrupted and run again since it last ended on its own).
const RUN_COLUMNS: [(&str, &str); 1] = [(
    "recoveries",
    "ALTER TABLE runs ADD COLUMN recoveries INTEGER NOT NULL DEFAULT 0",
)];
/// Columns added to `alerts` after the first release (`period`: the run an alert is
/// about, so that a retry that resolves the run can replace its alerts not sent yet).
/// `kind`: what the alert says (`failed`, `interrupted`, `resolved`); only a failure is
/// replaced or followed by a resolution.
const ALERT_COLUMNS: [(&str, &str); 2] = [
    ("period", "ALTER TABLE alerts ADD COLUMN period TEXT"),
    (
        "kind",
        "ALTER TABLE alerts ADD COLUMN kind TEXT NOT NULL DEFAULT 'failed'",
    ),
];
/// Columns added to `watch` so that it holds the whole [`WatchResult`] (the rule's
/// direction, both values and their unit), as `history` prints a fired rule.
const WATCH_COLUMNS: [(&str, &str); 4] = [
    ("rise", "ALTER TABLE watch ADD COLUMN rise INTEGER"),
    ("current", "ALTER TABLE watch ADD COLUMN current REAL"),
    ("previous", "ALTER TABLE watch ADD COLUMN previous REAL"),
    ("unit", "ALTER TABLE watch ADD COLUMN unit TEXT"),
];
/// Columns added to `deliveries` after the first release; a ledger written by an older
/// version gains them when opened.
const DELIVERY_COLUMNS: [(&str, &str); 3] = [
    (
        "possible_duplicate",
        "ALTER TABLE deliveries ADD COLUMN possible_duplicate INTEGER NOT NULL DEFAULT 0",
    ),
    (
        "next_attempt_at",
        "ALTER TABLE deliveries ADD COLUMN next_attempt_at TEXT",
    ),
    (
        "retry_until",
        "ALTER TABLE deliveries ADD COLUMN retry_until TEXT",
    ),
];
const SQL_BEGIN_RUN: &str = "INSERT INTO runs (job, period, fire_time, state, started_at, finished_at, pid, output_dir, error, attempts)
     VALUES (?1, ?2, ?3, 'running', ?4, NULL, ?5, ?6, NULL, 1)
     ON CONFLICT (job, period) DO UPDATE SET fire_time = excluded.fire_time, state = 'running',
         started_at = excluded.started_at, finished_at = NULL, pid = excluded.pid,
         output_dir = COALESCE(excluded.output_dir, runs.output_dir), error = NULL,
         attempts = runs.attempts + 1";
// A run that ends on its own (whatever its outcome) starts its count of recoveries
// afresh.
const SQL_FINISH_RUN: &str =
    "UPDATE runs SET state = ?3, finished_at = ?4, error = ?5, recoveries = 0 WHERE job = ?1 AND period = ?2";
const SQL_SET_OUTPUT: &str = "UPDATE runs SET output_dir = ?3 WHERE job = ?1 AND period = ?2";
const SQL_RUN_GET: &str =
    "SELECT fire_time, output_dir, state FROM runs WHERE job = ?1 AND period = ?2";
const SQL_RUNNING: &str =
    "SELECT job, period, fire_time, recoveries FROM runs WHERE state = 'running'";
const SQL_MARK_INTERRUPTED: &str =
    "UPDATE runs SET state = 'failed', finished_at = ?3, error = ?4, recoveries = recoveries + 1
     WHERE job = ?1 AND period = ?2 AND state = 'running'";
const SQL_DELIVERY_ENSURE: &str =
    "INSERT INTO deliveries (job, period, lang, recipient, message_id, state, attempts, updated_at)
     VALUES (?1, ?2, ?3, ?4, ?5, 'pending', 0, ?6) ON CONFLICT DO NOTHING";
const SQL_DELIVERY_GET: &str =
    "SELECT state, attempts, possible_duplicate, message_id FROM deliveries
     WHERE job = ?1 AND period = ?2 AND lang = ?3 AND recipient = ?4";
/// The claim: only from the state the claimant read, so of two processes that read
/// the same state one changes the row and the other finds it changed.
const SQL_DELIVERY_CLAIM: &str =
    "UPDATE deliveries SET state = 'sending', possible_duplicate = MAX(possible_duplicate, ?5), updated_at = ?6
     WHERE job = ?1 AND period = ?2 AND lang = ?3 AND recipient = ?4 AND state = ?7";
const SQL_DELIVERY_UPDATE: &str =
    "UPDATE deliveries SET state = ?5, attempts = attempts + ?6, last_error = ?7, updated_at = ?8,
         next_attempt_at = ?9, retry_until = COALESCE(retry_until, ?10)
     WHERE job = ?1 AND period = ?2 AND lang = ?3 AND recipient = ?4";
/// The same, from a ledger of an older version opened read-only (not migrated).
const SQL_DELIVERIES_OF_V1: &str =
    "SELECT lang, recipient, state, attempts, last_error, message_id, 0, NULL, NULL
     FROM deliveries WHERE job = ?1 AND period = ?2 ORDER BY lang, recipient";
const SQL_DELIVERIES_OF: &str =
    "SELECT lang, recipient, state, attempts, last_error, message_id, possible_duplicate, next_attempt_at, retry_until
     FROM deliveries WHERE job = ?1 AND period = ?2 ORDER BY lang, recipient";
const SQL_RETRY_DUE: &str =
    "SELECT DISTINCT job, period FROM deliveries
     WHERE state = 'failed' AND COALESCE(next_attempt_at, '') <= ?1 AND (retry_until IS NULL OR retry_until > ?1)
     ORDER BY job, period";
const SQL_RETRY_EXPIRED: &str =
    "SELECT job, period, lang, recipient, COALESCE(last_error, '') FROM deliveries
     WHERE state = 'failed' AND retry_until IS NOT NULL AND retry_until <= ?1";
const SQL_GIVE_UP: &str = "UPDATE deliveries SET state = 'gave_up', updated_at = ?5,
         last_error = 'out of retry time: ' || COALESCE(last_error, '')
     WHERE job = ?1 AND period = ?2 AND lang = ?3 AND recipient = ?4 AND state = 'failed'";
const SQL_REOPEN: &str =
    "UPDATE deliveries SET state = 'failed', next_attempt_at = NULL, retry_until = NULL, updated_at = ?3
     WHERE job = ?1 AND period = ?2 AND state IN ('gave_up', 'failed')";
const SQL_LATEST_PERIOD: &str = "SELECT r.period FROM runs r WHERE r.job = ?1
       AND EXISTS (SELECT 1 FROM deliveries d WHERE d.job = r.job AND d.period = r.period)
     ORDER BY COALESCE(r.started_at, '') DESC LIMIT 1";
const SQL_UNSENT: &str =
    "SELECT COUNT(*) FROM deliveries WHERE job = ?1 AND period = ?2 AND state <> 'sent'";
const SQL_MESSAGE_PUT: &str =
    "INSERT OR REPLACE INTO messages (job, period, lang, content) VALUES (?1, ?2, ?3, ?4)";
const SQL_MESSAGE_GET: &str =
    "SELECT content FROM messages WHERE job = ?1 AND period = ?2 AND lang = ?3";
const SQL_ALERT_PUT: &str =
    "INSERT INTO alerts (job, recipient, message_id, subject, body, state, attempts, created_at, next_attempt_at, period, kind)
     VALUES (?1, ?2, ?3, ?4, ?5, 'pending', 0, ?6, ?6, ?7, ?8)";
// An alert being sent is `sending` until `next_attempt_at` (its claim): it counts as
// sent, and is not dropped. A claim past its time is a process that died sending: the
// alert is due again, and a resolution drops it like any waiting one.
const SQL_ALERTS_SENT_OF: &str =
    "SELECT COUNT(*) FROM alerts WHERE job = ?1 AND period = ?2 AND kind = 'failed'
     AND (state = 'sent' OR (state = 'sending' AND next_attempt_at > ?3))";
const SQL_ALERTS_DROP_PENDING: &str =
    "DELETE FROM alerts WHERE job = ?1 AND period = ?2 AND kind = 'failed'
     AND (state = 'pending' OR (state = 'sending' AND next_attempt_at <= ?3))";
const SQL_ALERTS_DUE: &str =
    "SELECT id, job, recipient, message_id, subject, body, attempts FROM alerts
     WHERE state IN ('pending', 'sending') AND next_attempt_at <= ?1 ORDER BY id";
const SQL_ALERT_CLAIM: &str = "UPDATE alerts SET state = 'sending', next_attempt_at = ?3
     WHERE id = ?1 AND state IN ('pending', 'sending') AND next_attempt_at <= ?2";
const SQL_ALERT_DONE: &str =
    "UPDATE alerts SET state = ?2, attempts = attempts + 1, last_error = ?3, next_attempt_at = ?4 WHERE id = ?1";
const SQL_ALERTS_PENDING: &str =
    "SELECT job, recipient, subject, attempts, COALESCE(last_error, '') FROM alerts
     WHERE state IN ('pending', 'sending') AND (?1 IS NULL OR job = ?1) ORDER BY id";
const SQL_WATCH_CLEAR: &str = "DELETE FROM watch WHERE job = ?1 AND period = ?2";
const SQL_WATCH_PUT: &str =
    "INSERT INTO watch (job, period, rule, fired, metric, slice, change, threshold, note, rise, current, previous, unit)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)";
const SQL_WATCH_OF: &str = "SELECT rule, fired, metric, slice, change, threshold, note, rise, current, previous, unit FROM watch
     WHERE job = ?1 AND period = ?2 ORDER BY fired DESC, rule";
/// The same, from a ledger written before [`WATCH_COLUMNS`] opened read-only (not
/// migrated): its rows hold no direction, values or unit.
const SQL_WATCH_OF_V2: &str =
    "SELECT rule, fired, metric, slice, change, threshold, note, NULL, NULL, NULL, NULL FROM watch
     WHERE job = ?1 AND period = ?2 ORDER BY fired DESC, rule";
const SQL_CURSOR_GET: &str = "SELECT last_fire FROM cursors WHERE job = ?1";
const SQL_CURSOR_PUT: &str = "INSERT OR REPLACE INTO cursors (job, last_fire) VALUES (?1, ?2)";
const SQL_HISTORY: &str =
    "SELECT job, period, fire_time, state, started_at, finished_at, output_dir, error, attempts
     FROM runs WHERE (?1 IS NULL OR job = ?1) ORDER BY job, COALESCE(started_at, ''), period";
/// The daemon's heartbeat, one row per daemon process (host and pid): added after the
/// first release, so a ledger of an older version gains it when opened for writing.
/// `ticked_at` is the real time of the latest tick, `clock_at` the daemon's own clock
/// then (a rehearsal clock runs ahead); liveness is judged on the real one.
const HEARTBEAT_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS heartbeat (
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    version TEXT NOT NULL,
    started_at TEXT NOT NULL,
    ticked_at TEXT NOT NULL,
    clock_at TEXT NOT NULL,
    stopping_at TEXT,
    stopped_at TEXT,
    last_error TEXT,
    PRIMARY KEY (host, pid)
);
";
const SQL_HEARTBEAT_PUT: &str =
    "INSERT OR REPLACE INTO heartbeat (host, pid, version, started_at, ticked_at, clock_at, stopping_at, stopped_at, last_error)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)";
const SQL_HEARTBEAT_PRUNE: &str =
    "DELETE FROM heartbeat WHERE stopped_at IS NOT NULL OR ticked_at < ?1";
const SQL_HEARTBEATS: &str =
    "SELECT host, pid, version, started_at, ticked_at, clock_at, stopping_at, stopped_at, last_error
     FROM heartbeat ORDER BY ticked_at DESC, started_at DESC";
const SQL_HAS_HEARTBEAT: &str =
    "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'heartbeat'";
/// Each job's latest run, in `history`'s order (the last one there).
const SQL_LATEST_RUNS: &str =
    "SELECT job, period, fire_time, state, started_at, finished_at, output_dir, error, attempts
     FROM runs r WHERE NOT EXISTS (
         SELECT 1 FROM runs s WHERE s.job = r.job AND (
             COALESCE(s.started_at, '') > COALESCE(r.started_at, '')
             OR (COALESCE(s.started_at, '') = COALESCE(r.started_at, '') AND s.period > r.period)))
     ORDER BY job";

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("run ledger {path}: {cause}")]
    Sqlite {
        path: PathBuf,
        cause: rusqlite::Error,
    },
    #[error("run ledger {path}: {cause}")]
    Io {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error(
        "run ledger {path}: table `{table}`, {row}: unknown state `{value}` (not one this version of cxreport writes: written by a newer version, or edited by hand)"
    )]
    UnknownState {
        path: PathBuf,
        table: &'static str,
        /// Which row: its job and period (and a delivery's language and recipient).
        row: String,
        value: String,
    },
    #[error(
        "run ledger {path}: stored message of {job} {period} ({lang}) is unreadable: {message}"
    )]
    Message {
        path: PathBuf,
        job: String,
        period: String,
        lang: String,
        message: String,
    },
}

impl crate::exit::Classify for LedgerError {
    /// The ledger is cxreport's own file: one it cannot read or write fails the
    /// work, not the call.
    fn exit(&self) -> crate::exit::Exit {
        match self {
            Self::Sqlite { .. }
            | Self::Io { .. }
            | Self::Message { .. }
            | Self::UnknownState { .. } => crate::exit::Exit::Failed,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    Running,
    Succeeded,
    Failed,
    Skipped,
}

/// As the ledger and `history` write it (`succeeded`).
impl std::fmt::Display for RunState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // `pad`: `history` lines its columns up with `{:<9}`.
        f.pad(self.as_str())
    }
}

impl RunState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Skipped => "skipped",
        }
    }

    /// The state as the ledger writes it; `None` for a value this version does not
    /// write (the caller says where it was found).
    pub fn parse(s: &str) -> Option<Self> {
        [Self::Running, Self::Succeeded, Self::Failed, Self::Skipped]
            .into_iter()
            .find(|v| v.as_str() == s)
    }
}

/// Compared with the ledger's word for it (`state == "succeeded"`).
impl PartialEq<&str> for RunState {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    Pending,
    /// Claimed by one process for its SMTP attempt ([`Ledger::claim_delivery`]),
    /// written before the conversation starts, so a row still `sending` after its
    /// process died (its delivery lock free) may or may not have been accepted.
    Sending,
    Sent,
    /// Failed for a transient reason; tried again until its retry time runs out.
    Failed,
    /// Permanent failure, or out of retry time (`cxreport retry` re-opens it).
    GaveUp,
}

impl DeliveryState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Sending => "sending",
            Self::Sent => "sent",
            Self::Failed => "failed",
            Self::GaveUp => "gave_up",
        }
    }

    /// The state as the ledger writes it; `None` for a value this version does not
    /// write (the caller says where it was found).
    pub fn parse(s: &str) -> Option<Self> {
        [
            Self::Pending,
            Self::Sending,
            Self::Sent,
            Self::Failed,
            Self::GaveUp,
        ]
        .into_iter()
        .find(|v| v.as_str() == s)
    }

    /// Sent or given up: nothing more to do for it (unless `retry` re-opens it).
    pub fn settled(self) -> bool {
        matches!(self, Self::Sent | Self::GaveUp)
    }
}

/// As the ledger and `history` write it (`gave_up`).
impl std::fmt::Display for DeliveryState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // `pad`: `history` lines its columns up with `{:<9}`.
        f.pad(self.as_str())
    }
}

/// Compared with the ledger's word for it (`state == "sent"`).
impl PartialEq<&str> for DeliveryState {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// What an owner alert tells (`alerts.kind`); `owner_alert.tera` words each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlertKind {
    /// Something needs a person: a run failed, a fire could not start, deliveries
    /// were given up.
    Failed,
    /// A planned shutdown stopped the run's deliveries; they resume by themselves.
    Interrupted,
    /// A retry sent everything an earlier alert of the run was about.
    Resolved,
}

impl AlertKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Failed => "failed",
            Self::Interrupted => "interrupted",
            Self::Resolved => "resolved",
        }
    }
}

/// Where a kept owner alert stands (`alerts.state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlertState {
    /// Waiting for its next attempt.
    Pending,
    /// Claimed by one process for sending ([`Ledger::claim_alert`]).
    Sending,
    Sent,
}

impl AlertState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Sending => "sending",
            Self::Sent => "sent",
        }
    }
}

/// The key of one delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryKey<'a> {
    pub job: &'a str,
    pub period: &'a str,
    pub lang: &'a str,
    pub recipient: &'a str,
}

impl DeliveryKey<'_> {
    /// Deterministic Message-ID: the same delivery always has the same id, so a
    /// duplicate is recognizable at the receiving end too.
    pub fn message_id(&self, domain: &str) -> String {
        format!("<{}.{}@{domain}>", self.digest(), self.job)
    }

    /// 32 hex digits that name this delivery (its Message-ID, its lock file).
    fn digest(&self) -> String {
        let mut h = Sha256::new();
        for part in [self.job, self.period, self.lang, self.recipient] {
            h.update(part.as_bytes());
            h.update([0]);
        }
        h.finalize()
            .iter()
            .take(16)
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeliveryStatus {
    pub state: DeliveryState,
    pub attempts: i64,
    pub possible_duplicate: bool,
}

/// What a change of a delivery's state records.
pub struct DeliveryUpdate<'a> {
    pub state: DeliveryState,
    pub attempts_added: i64,
    pub error: Option<&'a str>,
    /// For a retryable failure: not before this.
    pub next_attempt: Option<DateTime<Utc>>,
    /// For a retryable failure: the end of its retry time (kept from the first failure).
    pub retry_until: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RunRecord {
    pub job: String,
    pub period: String,
    pub fire_time: Option<String>,
    pub state: RunState,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub output_dir: Option<String>,
    pub error: Option<String>,
    pub attempts: i64,
    pub deliveries: Vec<DeliveryRecord>,
    /// The job's watch rules as this run judged them.
    pub watch: Vec<WatchResult>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DeliveryRecord {
    pub lang: String,
    pub recipient: String,
    pub state: DeliveryState,
    pub attempts: i64,
    pub last_error: Option<String>,
    pub message_id: String,
    /// Left `sending` by a process that died: sent again with the same Message-ID, so
    /// the recipient may hold two copies (receivers that deduplicate on it show one).
    pub possible_duplicate: bool,
    pub next_attempt_at: Option<String>,
    pub retry_until: Option<String>,
}

/// A delivery whose retry time ran out.
#[derive(Debug, Clone)]
pub struct Expired {
    pub job: String,
    pub period: String,
    pub lang: String,
    pub recipient: String,
    pub last_error: String,
}

/// An owner alert waiting to be sent.
#[derive(Debug, Clone)]
pub struct QueuedAlert {
    pub id: i64,
    pub job: String,
    pub recipient: String,
    pub message_id: String,
    pub subject: String,
    pub body: String,
    pub attempts: i64,
}

/// An alert still waiting, as `history` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct PendingAlert {
    pub job: String,
    pub recipient: String,
    pub subject: String,
    pub attempts: i64,
    pub last_error: String,
}

/// The run row's facts a retry needs.
#[derive(Debug, Clone)]
pub struct RunFacts {
    pub fire_time: Option<DateTime<Utc>>,
    pub output_dir: Option<PathBuf>,
    pub state: RunState,
}

/// A run found interrupted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interrupted {
    pub job: String,
    pub period: String,
    pub fire: Option<DateTime<Utc>>,
    /// Interrupted again after it had been run again once: recorded failed with
    /// [`Interrupted::message`] instead of being run a third time (a run that kills
    /// its process would otherwise do so at every start of the daemon).
    pub gave_up: bool,
}

impl Interrupted {
    /// What the ledger records for a run that is not run again.
    pub fn message(job: &str, fire: Option<DateTime<Utc>>) -> String {
        let as_of = fire.map_or_else(String::new, |f| {
            format!(" --as-of {}", f.format("%Y-%m-%dT%H:%M:%SZ"))
        });
        format!(
            "interrupted twice: the process running it ended before the run finished, also when it was run again after the first interruption; it is not run again by itself. Find out why in the log, then run it by hand: `cxreport run --job {job}{as_of} --send`"
        )
    }
}

/// How much of any error text the ledger keeps (and an alert quotes): a value of many
/// megabytes copied into an error must not make the failure impossible to record.
pub const MAX_ERROR_BYTES: usize = 4096;
/// An alert's whole text: its error and the log lines it quotes, each clipped.
pub const MAX_ALERT_BYTES: usize = 16 * 1024;

/// `text` cut to at most `max` bytes (on a character boundary) with a marker saying
/// how much was cut.
pub fn clip(text: &str, max: usize) -> Cow<'_, str> {
    if text.len() <= max {
        return Cow::Borrowed(text);
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    Cow::Owned(format!(
        "{}… [{} of {} bytes cut]",
        &text[..end],
        text.len() - end,
        text.len()
    ))
}

/// How claiming a delivery ended ([`Ledger::claim_delivery`]).
#[derive(Debug)]
pub enum Claim {
    /// This process sends it, holding the lock until the lock is dropped or
    /// [`DeliveryLock::release`]d. `again`: the row was left `sending` by a process
    /// that is gone, so the server may already hold a copy.
    Won {
        again: bool,
        attempts: i64,
        lock: DeliveryLock,
    },
    /// Another process is sending it right now.
    Taken,
    /// Nothing to send: sent, or given up.
    Settled(DeliveryState),
}

/// The lock of one delivery while it is being sent; released when dropped, or by the
/// kernel when the process dies.
#[derive(Debug)]
pub struct DeliveryLock {
    file: File,
    path: PathBuf,
}

impl DeliveryLock {
    /// Releases the lock; once the delivery is `sent` for good its lock file is
    /// removed (whoever opened it before finds the row sent and does nothing).
    pub fn release(self, sent: bool) {
        if sent {
            // A file left behind costs nothing but a directory entry.
            let _ = std::fs::remove_file(&self.path);
        }
        drop(self.file);
    }
}

/// A job's lock; released when dropped, or by the kernel when the process dies.
#[derive(Debug)]
pub struct JobLock {
    _file: File,
}

/// One daemon process's heartbeat ([`Ledger::put_heartbeat`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heartbeat {
    pub host: String,
    pub pid: u32,
    pub version: String,
    /// Real time of the daemon's start.
    pub started_at: DateTime<Utc>,
    /// Real time of its latest tick.
    pub ticked_at: DateTime<Utc>,
    /// The daemon's own clock at that tick (`--clock-start` for a rehearsal).
    pub clock_at: DateTime<Utc>,
    /// When it was asked to stop (SIGINT/SIGTERM) and began waiting for its work.
    pub stopping_at: Option<DateTime<Utc>>,
    /// When it stopped after that wait.
    pub stopped_at: Option<DateTime<Utc>>,
    /// Why its latest tick failed, if it did.
    pub last_error: Option<String>,
}

pub struct Ledger {
    conn: Connection,
    path: PathBuf,
    /// What every time the ledger stamps reads (`started_at`, `updated_at`, an
    /// alert's `created_at`): the caller's clock, so that on a rehearsal clock the
    /// retries and alerts are kept on the clock that judges them due.
    clock: SharedClock,
    /// Written by an older version and opened read-only: without the columns and
    /// tables added since.
    v1: bool,
}

/// A job name as a file name (config validation allows only these characters; this
/// keeps a hand-edited ledger from naming other paths).
fn safe_name(job: &str) -> String {
    job.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// An absolute path as an SQLite `file:` URI (its `?`, `#` and `%` would otherwise
/// be read as the URI's own). A path that is not UTF-8 is not found this way, and the
/// ordinary open's error is the one reported.
fn file_uri(path: &Path) -> String {
    let mut uri = String::from("file:");
    for b in path.to_string_lossy().bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'/' | b'-' | b'_' | b'.' | b'~') {
            uri.push(char::from(b));
        } else {
            uri.push_str(&format!("%{b:02X}"));
        }
    }
    uri
}

/// Takes the OS lock of the file at `path` without waiting (exclusive or shared),
/// creating it and its folder; `None` when another process (or another handle in
/// this one) holds it.
fn try_lock(path: &Path, exclusive: bool) -> Result<Option<File>, LedgerError> {
    let dir = path.parent().unwrap_or(path);
    let io = |source| LedgerError::Io {
        path: dir.to_owned(),
        cause: source,
    };
    std::fs::create_dir_all(dir).map_err(io)?;
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(io)?;
    let taken = if exclusive {
        file.try_lock()
    } else {
        file.try_lock_shared()
    };
    match taken {
        Ok(()) => Ok(Some(file)),
        Err(std::fs::TryLockError::WouldBlock) => Ok(None),
        Err(std::fs::TryLockError::Error(e)) => Err(io(e)),
    }
}

/// The delivery's row, created `pending` with its Message-ID if new (a transaction
/// derefs to its connection).
fn ensure_delivery(
    conn: &Connection,
    key: &DeliveryKey<'_>,
    message_id: &str,
    now: &str,
) -> rusqlite::Result<usize> {
    conn.execute(
        SQL_DELIVERY_ENSURE,
        params![
            key.job,
            key.period,
            key.lang,
            key.recipient,
            message_id,
            now
        ],
    )
}

fn format_time(t: DateTime<Utc>) -> String {
    crate::source::timestamp::format_utc(t)
}

fn parse_time(t: &str) -> Option<DateTime<Utc>> {
    crate::source::timestamp::parse(t, chrono_tz::Tz::UTC).ok()
}

impl Ledger {
    /// Opens (and creates) the ledger for writing, on the real clock.
    pub fn open(path: &Path) -> Result<Self, LedgerError> {
        Self::open_with_clock(path, crate::clock::system())
    }

    /// Opens (and creates) the ledger for writing; the times it stamps are `clock`'s.
    pub fn open_with_clock(path: &Path, clock: SharedClock) -> Result<Self, LedgerError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|source| LedgerError::Io {
                path: path.to_owned(),
                cause: source,
            })?;
        }
        let err = |source| LedgerError::Sqlite {
            path: path.to_owned(),
            cause: source,
        };
        // The ledger's mode is SQLite's (0644 less the umask), like every other file
        // cxreport writes: it holds recipients and kept messages, so what keeps it
        // private is its directory (the unit's StateDirectory is 0700), not a mode of
        // its own that a monitoring user in the same group could not read `history` by.
        // Not the default flags: they fall back to read-only when the file cannot be
        // written, and the first write would fail far from here.
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(err)?;
        conn.busy_timeout(std::time::Duration::from_secs(30))
            .map_err(err)?;
        conn.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;")
            .map_err(err)?;
        // The schema and its additions in one write transaction: two processes that
        // open a new ledger at once (two runs started together) would otherwise both
        // see a column missing, and the second one's ALTER fail on a duplicate column.
        let tx = Transaction::new_unchecked(&conn, TransactionBehavior::Immediate).map_err(err)?;
        conn.execute_batch(SCHEMA).map_err(err)?;
        conn.execute_batch(HEARTBEAT_SCHEMA).map_err(err)?;
        // Columns a newer version added, on a ledger an older one wrote.
        let added: [(&str, &[(&str, &str)]); 4] = [
            ("deliveries", &DELIVERY_COLUMNS),
            ("runs", &RUN_COLUMNS),
            ("alerts", &ALERT_COLUMNS),
            ("watch", &WATCH_COLUMNS),
        ];
        for (table, columns) in added {
            let mut have = conn
                .prepare("SELECT name FROM pragma_table_info(?1)")
                .map_err(err)?;
            let names: Vec<String> = have
                .query_map([table], |r| r.get(0))
                .map_err(err)?
                .collect::<Result<_, _>>()
                .map_err(err)?;
            drop(have);
            for (column, sql) in columns {
                if !names.iter().any(|n| n == column) {
                    conn.execute_batch(sql).map_err(err)?;
                }
            }
        }
        tx.commit().map_err(err)?;
        Ok(Self {
            conn,
            path: path.to_owned(),
            clock,
            v1: false,
        })
    }

    /// Opens an existing ledger for reading only (`history`): works in a read-only
    /// directory and changes nothing.
    ///
    /// A WAL database opened read-only the ordinary way needs its `-shm` file, which
    /// it creates, and fails in a directory it cannot write. When there is no `-wal`
    /// with anything in it, everything is in the file itself (a writer would have to
    /// create one to change it): the file is then read as immutable, creating nothing.
    pub fn open_read_only(path: &Path) -> Result<Self, LedgerError> {
        let first = match Self::open_read_only_with(path, false) {
            Ok(l) => return Ok(l),
            Err(e) => e,
        };
        let cannot_write = matches!(
            &first,
            LedgerError::Sqlite { cause: source, .. } if matches!(
                source.sqlite_error_code(),
                Some(rusqlite::ErrorCode::ReadOnly | rusqlite::ErrorCode::CannotOpen)
            )
        );
        // With a `-wal` that holds anything, the file alone is not the whole ledger
        // (and a busy or broken ledger is reported as it is).
        let mut wal = path.as_os_str().to_owned();
        wal.push("-wal");
        let wal_empty = std::fs::metadata(PathBuf::from(wal)).map_or(true, |m| m.len() == 0);
        if cannot_write && wal_empty {
            Self::open_read_only_with(path, true).map_err(|_| first)
        } else {
            Err(first)
        }
    }

    fn open_read_only_with(path: &Path, immutable: bool) -> Result<Self, LedgerError> {
        let err = |source| LedgerError::Sqlite {
            path: path.to_owned(),
            cause: source,
        };
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = if immutable {
            let absolute = std::path::absolute(path).map_err(|source| LedgerError::Io {
                path: path.to_owned(),
                cause: source,
            })?;
            Connection::open_with_flags(
                format!("{}?immutable=1", file_uri(&absolute)),
                flags | OpenFlags::SQLITE_OPEN_URI,
            )
        } else {
            Connection::open_with_flags(path, flags)
        }
        .map_err(err)?;
        conn.busy_timeout(std::time::Duration::from_secs(30))
            .map_err(err)?;
        let v1 = !conn
            .query_row(
                "SELECT count(*) FROM pragma_table_info('deliveries') WHERE name = 'possible_duplicate'",
                [],
                |r| r.get::<_, i64>(0),
            )
            .map_err(err)?
            .is_positive();
        Ok(Self {
            conn,
            path: path.to_owned(),
            clock: crate::clock::system(),
            v1,
        })
    }

    /// Now, on the ledger's clock.
    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// The ledger's clock, for what is timed along with its rows.
    pub fn clock(&self) -> &SharedClock {
        &self.clock
    }

    fn now_text(&self) -> String {
        format_time(self.now())
    }

    /// A state read from `table` this version does not know: an error naming where.
    fn unknown_state(&self, table: &'static str, row: String, value: String) -> LedgerError {
        LedgerError::UnknownState {
            path: self.path.clone(),
            table,
            row,
            value,
        }
    }

    fn run_state(&self, job: &str, period: &str, value: String) -> Result<RunState, LedgerError> {
        RunState::parse(&value).ok_or_else(|| {
            self.unknown_state("runs", format!("job `{job}`, period `{period}`"), value)
        })
    }

    fn delivery_state(
        &self,
        job: &str,
        period: &str,
        lang: &str,
        recipient: &str,
        value: String,
    ) -> Result<DeliveryState, LedgerError> {
        DeliveryState::parse(&value).ok_or_else(|| {
            self.unknown_state(
                "deliveries",
                format!("job `{job}`, period `{period}`, {lang} to {recipient}"),
                value,
            )
        })
    }

    fn err(&self, source: rusqlite::Error) -> LedgerError {
        LedgerError::Sqlite {
            path: self.path.clone(),
            cause: source,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The directory of the per-job lock files.
    fn lock_dir(&self) -> PathBuf {
        self.path.with_extension("locks")
    }

    /// Takes the job's lock without waiting: exclusive for a job that forbids
    /// overlapping runs (and for recovery), shared for one that allows them. `None`
    /// when another process (or another run in this one) holds it.
    pub fn lock_job(&self, job: &str, exclusive: bool) -> Result<Option<JobLock>, LedgerError> {
        let path = self.lock_dir().join(format!("{}.lock", safe_name(job)));
        Ok(try_lock(&path, exclusive)?.map(|file| JobLock { _file: file }))
    }

    /// Runs left `running` by a process that is gone (their job's lock is free):
    /// marked failed ("interrupted") and returned with their fire time so the caller
    /// runs them again; one already run again after an interruption is given up
    /// instead (`gave_up`, recorded with [`Interrupted::message`]). Exactly one
    /// process gets each: the row is changed under the job's lock, and only while it
    /// is still `running`.
    pub fn recover_interrupted(&self) -> Result<Vec<Interrupted>, LedgerError> {
        let mut stmt = self.conn.prepare(SQL_RUNNING).map_err(|e| self.err(e))?;
        let rows: Vec<(String, String, Option<String>, i64)> = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .map_err(|e| self.err(e))?
            .collect::<Result<_, _>>()
            .map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for (job, period, fire, recoveries) in rows {
            let Some(_lock) = self.lock_job(&job, true)? else {
                continue;
            };
            let fire = fire.as_deref().and_then(parse_time);
            let gave_up = recoveries > 0;
            let why = if gave_up {
                Interrupted::message(&job, fire)
            } else {
                "interrupted: the process running it ended before the run finished".to_owned()
            };
            let changed = self
                .conn
                .execute(
                    SQL_MARK_INTERRUPTED,
                    params![job, period, self.now_text(), why],
                )
                .map_err(|e| self.err(e))?;
            if changed == 1 {
                out.push(Interrupted {
                    job,
                    period,
                    fire,
                    gave_up,
                });
            }
        }
        Ok(out)
    }

    pub fn begin_run(
        &self,
        job: &str,
        period: &str,
        fire: Option<DateTime<Utc>>,
        output_dir: Option<&Path>,
    ) -> Result<(), LedgerError> {
        self.conn
            .execute(
                SQL_BEGIN_RUN,
                params![
                    job,
                    period,
                    fire.map(format_time),
                    self.now_text(),
                    i64::from(std::process::id()),
                    output_dir.map(|p| p.display().to_string())
                ],
            )
            .map(|_| ())
            .map_err(|e| self.err(e))
    }

    pub fn set_output(&self, job: &str, period: &str, dir: &Path) -> Result<(), LedgerError> {
        self.conn
            .execute(
                SQL_SET_OUTPUT,
                params![job, period, dir.display().to_string()],
            )
            .map(|_| ())
            .map_err(|e| self.err(e))
    }

    pub fn finish_run(
        &self,
        job: &str,
        period: &str,
        state: RunState,
        error: Option<&str>,
    ) -> Result<(), LedgerError> {
        self.conn
            .execute(
                SQL_FINISH_RUN,
                params![
                    job,
                    period,
                    state.as_str(),
                    self.now_text(),
                    error.map(|e| clip(e, MAX_ERROR_BYTES))
                ],
            )
            .map(|_| ())
            .map_err(|e| self.err(e))
    }

    /// The run's fire time, output directory and state.
    pub fn run(&self, job: &str, period: &str) -> Result<Option<RunFacts>, LedgerError> {
        let row: Option<(Option<String>, Option<String>, String)> = self
            .conn
            .query_row(SQL_RUN_GET, params![job, period], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .optional()
            .map_err(|e| self.err(e))?;
        row.map(|(fire, dir, state)| {
            Ok(RunFacts {
                fire_time: fire.as_deref().and_then(parse_time),
                output_dir: dir.map(PathBuf::from),
                state: self.run_state(job, period, state)?,
            })
        })
        .transpose()
    }

    /// Records a fire that did not run (e.g. the previous run was still in flight).
    pub fn record_skipped(
        &self,
        job: &str,
        period: &str,
        fire: DateTime<Utc>,
        why: &str,
    ) -> Result<(), LedgerError> {
        self.begin_run(job, period, Some(fire), None)?;
        self.finish_run(job, period, RunState::Skipped, Some(why))
    }

    /// Records a fire that could not start, or a run that ended in a panic.
    pub fn record_failed(
        &self,
        job: &str,
        period: &str,
        fire: DateTime<Utc>,
        why: &str,
    ) -> Result<(), LedgerError> {
        self.begin_run(job, period, Some(fire), None)?;
        self.finish_run(job, period, RunState::Failed, Some(why))
    }

    /// The delivery's state, creating it as pending with its Message-ID if new.
    pub fn delivery(
        &self,
        key: &DeliveryKey<'_>,
        message_id: &str,
    ) -> Result<DeliveryStatus, LedgerError> {
        ensure_delivery(&self.conn, key, message_id, &self.now_text()).map_err(|e| self.err(e))?;
        let (state, attempts, possible_duplicate): (String, i64, i64) = self
            .conn
            .query_row(
                SQL_DELIVERY_GET,
                params![key.job, key.period, key.lang, key.recipient],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .map_err(|e| self.err(e))?;
        Ok(DeliveryStatus {
            state: self.delivery_state(key.job, key.period, key.lang, key.recipient, state)?,
            attempts,
            possible_duplicate: possible_duplicate != 0,
        })
    }

    /// Claims one delivery for this process before its SMTP attempt: of the
    /// processes that get here at the same time (overlapping runs of one job and
    /// period), one sends it and the others are told it is `Taken`. The delivery's
    /// OS lock says who is sending it now, so a row `sending` whose lock is free was
    /// left by a process that is gone; the row then changes only from the state
    /// read, inside one write transaction.
    pub fn claim_delivery(
        &self,
        key: &DeliveryKey<'_>,
        message_id: &str,
    ) -> Result<Claim, LedgerError> {
        let path = self
            .lock_dir()
            .join(format!("{}.deliveries", safe_name(key.job)))
            .join(format!("{}.lock", key.digest()));
        let Some(file) = try_lock(&path, true)? else {
            return Ok(Claim::Taken);
        };
        let lock = DeliveryLock { file, path };
        // Immediate: taken as a writer at once, so the read below and the claim are
        // one step for every process sharing the ledger.
        let tx = Transaction::new_unchecked(&self.conn, TransactionBehavior::Immediate)
            .map_err(|e| self.err(e))?;
        ensure_delivery(&tx, key, message_id, &self.now_text()).map_err(|e| self.err(e))?;
        let (state, attempts): (String, i64) = tx
            .query_row(
                SQL_DELIVERY_GET,
                params![key.job, key.period, key.lang, key.recipient],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .map_err(|e| self.err(e))?;
        let state = self.delivery_state(key.job, key.period, key.lang, key.recipient, state)?;
        let again = match state {
            s @ (DeliveryState::Sent | DeliveryState::GaveUp) => {
                return Ok(Claim::Settled(s));
            }
            DeliveryState::Sending => true,
            DeliveryState::Pending | DeliveryState::Failed => false,
        };
        let changed = tx
            .execute(
                SQL_DELIVERY_CLAIM,
                params![
                    key.job,
                    key.period,
                    key.lang,
                    key.recipient,
                    i64::from(again),
                    self.now_text(),
                    state.as_str()
                ],
            )
            .map_err(|e| self.err(e))?;
        tx.commit().map_err(|e| self.err(e))?;
        Ok(if changed == 1 {
            Claim::Won {
                again,
                attempts,
                lock,
            }
        } else {
            Claim::Taken
        })
    }

    pub fn update_delivery(
        &self,
        key: &DeliveryKey<'_>,
        u: &DeliveryUpdate<'_>,
    ) -> Result<(), LedgerError> {
        self.conn
            .execute(
                SQL_DELIVERY_UPDATE,
                params![
                    key.job,
                    key.period,
                    key.lang,
                    key.recipient,
                    u.state.as_str(),
                    u.attempts_added,
                    u.error.map(|e| clip(e, MAX_ERROR_BYTES)),
                    self.now_text(),
                    u.next_attempt.map(format_time),
                    u.retry_until.map(format_time)
                ],
            )
            .map(|_| ())
            .map_err(|e| self.err(e))
    }

    /// Every delivery of one run.
    pub fn deliveries(&self, job: &str, period: &str) -> Result<Vec<DeliveryRecord>, LedgerError> {
        let mut d = self
            .conn
            .prepare_cached(if self.v1 {
                SQL_DELIVERIES_OF_V1
            } else {
                SQL_DELIVERIES_OF
            })
            .map_err(|e| self.err(e))?;
        let rows: Vec<(DeliveryRecord, String)> = d
            .query_map(params![job, period], |r| {
                Ok((
                    DeliveryRecord {
                        lang: r.get(0)?,
                        recipient: r.get(1)?,
                        // Read below, where a value this version does not know is an
                        // error that names the row.
                        state: DeliveryState::Pending,
                        attempts: r.get(3)?,
                        last_error: r.get(4)?,
                        message_id: r.get(5)?,
                        possible_duplicate: r.get::<_, i64>(6)? != 0,
                        next_attempt_at: r.get(7)?,
                        retry_until: r.get(8)?,
                    },
                    r.get(2)?,
                ))
            })
            .map_err(|e| self.err(e))?
            .collect::<Result<_, _>>()
            .map_err(|e| self.err(e))?;
        rows.into_iter()
            .map(|(mut d, state)| {
                d.state = self.delivery_state(job, period, &d.lang, &d.recipient, state)?;
                Ok(d)
            })
            .collect()
    }

    /// Runs with a retryable delivery whose next attempt is due.
    pub fn retries_due(&self, now: DateTime<Utc>) -> Result<Vec<(String, String)>, LedgerError> {
        let mut stmt = self.conn.prepare(SQL_RETRY_DUE).map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([format_time(now)], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(|e| self.err(e))?
            .collect::<Result<_, _>>()
            .map_err(|e| self.err(e));
        rows
    }

    /// Gives up the retryable deliveries whose retry time has run out; returns them.
    pub fn expire_retries(&self, now: DateTime<Utc>) -> Result<Vec<Expired>, LedgerError> {
        let mut stmt = self
            .conn
            .prepare(SQL_RETRY_EXPIRED)
            .map_err(|e| self.err(e))?;
        let rows: Vec<Expired> = stmt
            .query_map([format_time(now)], |r| {
                Ok(Expired {
                    job: r.get(0)?,
                    period: r.get(1)?,
                    lang: r.get(2)?,
                    recipient: r.get(3)?,
                    last_error: r.get(4)?,
                })
            })
            .map_err(|e| self.err(e))?
            .collect::<Result<_, _>>()
            .map_err(|e| self.err(e))?;
        for e in &rows {
            self.conn
                .execute(
                    SQL_GIVE_UP,
                    params![e.job, e.period, e.lang, e.recipient, self.now_text()],
                )
                .map_err(|e| self.err(e))?;
        }
        Ok(rows)
    }

    /// `cxreport retry`: the run's given-up and failed deliveries become retryable
    /// now, with a fresh retry time. Returns how many.
    pub fn reopen(&self, job: &str, period: &str) -> Result<usize, LedgerError> {
        self.conn
            .execute(SQL_REOPEN, params![job, period, self.now_text()])
            .map_err(|e| self.err(e))
    }

    /// The job's most recent run that mailed anything.
    pub fn latest_delivered_period(&self, job: &str) -> Result<Option<String>, LedgerError> {
        self.conn
            .query_row(SQL_LATEST_PERIOD, [job], |r| r.get(0))
            .optional()
            .map_err(|e| self.err(e))
    }

    /// Whether every delivery of the run is sent.
    pub fn all_sent(&self, job: &str, period: &str) -> Result<bool, LedgerError> {
        let unsent: i64 = self
            .conn
            .query_row(SQL_UNSENT, params![job, period], |r| r.get(0))
            .map_err(|e| self.err(e))?;
        Ok(unsent == 0)
    }

    /// Keeps what an edition mails, so a later retry sends the same message.
    pub fn save_message<T: Serialize>(
        &self,
        job: &str,
        period: &str,
        lang: &str,
        content: &T,
    ) -> Result<(), LedgerError> {
        let text = serde_json::to_string(content).map_err(|e| LedgerError::Message {
            path: self.path.clone(),
            job: job.to_owned(),
            period: period.to_owned(),
            lang: lang.to_owned(),
            message: e.to_string(),
        })?;
        self.conn
            .execute(SQL_MESSAGE_PUT, params![job, period, lang, text])
            .map(|_| ())
            .map_err(|e| self.err(e))
    }

    pub fn message<T: serde::de::DeserializeOwned>(
        &self,
        job: &str,
        period: &str,
        lang: &str,
    ) -> Result<Option<T>, LedgerError> {
        let text: Option<String> = self
            .conn
            .query_row(SQL_MESSAGE_GET, params![job, period, lang], |r| r.get(0))
            .optional()
            .map_err(|e| self.err(e))?;
        text.map(|t| {
            serde_json::from_str(&t).map_err(|e| LedgerError::Message {
                path: self.path.clone(),
                job: job.to_owned(),
                period: period.to_owned(),
                lang: lang.to_owned(),
                message: e.to_string(),
            })
        })
        .transpose()
    }

    /// Keeps an owner alert until it is sent.
    pub fn queue_alert(&self, a: &NewAlert<'_>) -> Result<(), LedgerError> {
        self.conn
            .execute(
                SQL_ALERT_PUT,
                params![
                    a.job,
                    a.recipient,
                    a.message_id,
                    clip(a.subject, MAX_ERROR_BYTES),
                    clip(a.body, MAX_ALERT_BYTES),
                    self.now_text(),
                    a.period,
                    a.kind.as_str()
                ],
            )
            .map(|_| ())
            .map_err(|e| self.err(e))
    }

    /// Removes the failure alerts about one run that are not sent yet (what they warn
    /// about is resolved); returns how many, and how many about it were sent already
    /// (or are being sent).
    pub fn drop_pending_alerts(
        &self,
        job: &str,
        period: &str,
    ) -> Result<(usize, usize), LedgerError> {
        let now = self.now_text();
        let tx = self.conn.unchecked_transaction().map_err(|e| self.err(e))?;
        let sent: i64 = tx
            .query_row(SQL_ALERTS_SENT_OF, params![job, period, now], |r| r.get(0))
            .map_err(|e| self.err(e))?;
        let dropped = tx
            .execute(SQL_ALERTS_DROP_PENDING, params![job, period, now])
            .map_err(|e| self.err(e))?;
        tx.commit().map_err(|e| self.err(e))?;
        Ok((dropped, usize::try_from(sent).unwrap_or(0)))
    }

    /// Alerts waiting whose next attempt is due.
    pub fn alerts_due(&self, now: DateTime<Utc>) -> Result<Vec<QueuedAlert>, LedgerError> {
        let mut stmt = self.conn.prepare(SQL_ALERTS_DUE).map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([format_time(now)], |r| {
                Ok(QueuedAlert {
                    id: r.get(0)?,
                    job: r.get(1)?,
                    recipient: r.get(2)?,
                    message_id: r.get(3)?,
                    subject: r.get(4)?,
                    body: r.get(5)?,
                    attempts: r.get(6)?,
                })
            })
            .map_err(|e| self.err(e))?
            .collect::<Result<_, _>>()
            .map_err(|e| self.err(e));
        rows
    }

    /// Takes a due alert for sending until `until`: `false` when it is no longer due
    /// (a resolution dropped it, or another process is sending it). Sending only what
    /// was claimed is what keeps a "failed" from going out after its "resolved".
    pub fn claim_alert(
        &self,
        id: i64,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<bool, LedgerError> {
        self.conn
            .execute(
                SQL_ALERT_CLAIM,
                params![id, format_time(now), format_time(until)],
            )
            .map(|n| n == 1)
            .map_err(|e| self.err(e))
    }

    /// Records one attempt at an alert: sent, or tried again after `retry_at`.
    pub fn alert_attempted(
        &self,
        id: i64,
        error: Option<&str>,
        retry_at: DateTime<Utc>,
    ) -> Result<(), LedgerError> {
        let state = if error.is_some() {
            AlertState::Pending
        } else {
            AlertState::Sent
        };
        self.conn
            .execute(
                SQL_ALERT_DONE,
                params![
                    id,
                    state.as_str(),
                    error.map(|e| clip(e, MAX_ERROR_BYTES)),
                    format_time(retry_at)
                ],
            )
            .map(|_| ())
            .map_err(|e| self.err(e))
    }

    /// Alerts not sent yet, for `history`.
    pub fn pending_alerts(&self, job: Option<&str>) -> Result<Vec<PendingAlert>, LedgerError> {
        if self.v1 {
            return Ok(Vec::new());
        }
        let mut stmt = self
            .conn
            .prepare(SQL_ALERTS_PENDING)
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([job], |r| {
                Ok(PendingAlert {
                    job: r.get(0)?,
                    recipient: r.get(1)?,
                    subject: r.get(2)?,
                    attempts: r.get(3)?,
                    last_error: r.get(4)?,
                })
            })
            .map_err(|e| self.err(e))?
            .collect::<Result<_, _>>()
            .map_err(|e| self.err(e));
        rows
    }

    pub fn cursor(&self, job: &str) -> Result<Option<DateTime<Utc>>, LedgerError> {
        let t: Option<String> = self
            .conn
            .query_row(SQL_CURSOR_GET, [job], |r| r.get(0))
            .optional()
            .map_err(|e| self.err(e))?;
        Ok(t.as_deref().and_then(parse_time))
    }

    pub fn set_cursor(&self, job: &str, t: DateTime<Utc>) -> Result<(), LedgerError> {
        self.conn
            .execute(SQL_CURSOR_PUT, params![job, format_time(t)])
            .map(|_| ())
            .map_err(|e| self.err(e))
    }

    pub fn history(&self, job: Option<&str>) -> Result<Vec<RunRecord>, LedgerError> {
        let mut stmt = self.conn.prepare(SQL_HISTORY).map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([job], run_row)
            .map_err(|e| self.err(e))?
            .collect::<Result<_, _>>()
            .map_err(|e| self.err(e))?;
        let mut runs = self.runs_of(rows)?;
        for run in &mut runs {
            run.deliveries = self.deliveries(&run.job, &run.period)?;
            if !self.v1 {
                run.watch = self.watch_of(&run.job, &run.period)?;
            }
        }
        Ok(runs)
    }

    /// Replaces what the run's watch rules found.
    pub fn record_watch(
        &self,
        job: &str,
        period: &str,
        results: &[WatchResult],
    ) -> Result<(), LedgerError> {
        let tx = self.conn.unchecked_transaction().map_err(|e| self.err(e))?;
        tx.execute(SQL_WATCH_CLEAR, params![job, period])
            .map_err(|e| self.err(e))?;
        for w in results {
            tx.execute(
                SQL_WATCH_PUT,
                params![
                    job,
                    period,
                    w.rule,
                    i64::from(w.fired),
                    w.metric,
                    w.slice,
                    w.change,
                    w.threshold,
                    w.note,
                    w.rise,
                    w.current,
                    w.previous,
                    w.unit.map(Unit::name)
                ],
            )
            .map_err(|e| self.err(e))?;
        }
        tx.commit().map_err(|e| self.err(e))
    }

    /// Records a daemon's heartbeat (its row replaced whole: one statement, cheap).
    pub fn put_heartbeat(&self, h: &Heartbeat) -> Result<(), LedgerError> {
        self.conn
            .execute(
                SQL_HEARTBEAT_PUT,
                params![
                    h.host,
                    i64::from(h.pid),
                    h.version,
                    format_time(h.started_at),
                    format_time(h.ticked_at),
                    format_time(h.clock_at),
                    h.stopping_at.map(format_time),
                    h.stopped_at.map(format_time),
                    h.last_error.as_deref().map(|e| clip(e, MAX_ERROR_BYTES))
                ],
            )
            .map(|_| ())
            .map_err(|e| self.err(e))
    }

    /// Forgets the heartbeats of daemons that stopped, and of those silent since
    /// `before` (a daemon starting clears what earlier ones left).
    pub fn prune_heartbeats(&self, before: DateTime<Utc>) -> Result<(), LedgerError> {
        self.conn
            .execute(SQL_HEARTBEAT_PRUNE, [format_time(before)])
            .map(|_| ())
            .map_err(|e| self.err(e))
    }

    /// The daemons' heartbeats, the latest tick first; none in a ledger of a version
    /// before heartbeats (opened read-only, not migrated).
    pub fn heartbeats(&self) -> Result<Vec<Heartbeat>, LedgerError> {
        let has: i64 = self
            .conn
            .query_row(SQL_HAS_HEARTBEAT, [], |r| r.get(0))
            .map_err(|e| self.err(e))?;
        if has == 0 {
            return Ok(Vec::new());
        }
        let mut stmt = self.conn.prepare(SQL_HEARTBEATS).map_err(|e| self.err(e))?;
        let rows: Vec<Option<Heartbeat>> = stmt
            .query_map([], |r| {
                let time = |i: usize| -> rusqlite::Result<Option<DateTime<Utc>>> {
                    Ok(r.get::<_, Option<String>>(i)?
                        .as_deref()
                        .and_then(parse_time))
                };
                let (started, ticked, clock) = (time(3)?, time(4)?, time(5)?);
                let pid = u32::try_from(r.get::<_, i64>(1)?).ok();
                Ok(match (pid, started, ticked, clock) {
                    (Some(pid), Some(started_at), Some(ticked_at), Some(clock_at)) => {
                        Some(Heartbeat {
                            host: r.get(0)?,
                            pid,
                            version: r.get(2)?,
                            started_at,
                            ticked_at,
                            clock_at,
                            stopping_at: time(6)?,
                            stopped_at: time(7)?,
                            last_error: r.get(8)?,
                        })
                    }
                    _ => None,
                })
            })
            .map_err(|e| self.err(e))?
            .collect::<Result<_, _>>()
            .map_err(|e| self.err(e))?;
        // A row whose times do not read (edited by hand) is left out rather than
        // taken for a daemon that ticked at some made-up time.
        Ok(rows.into_iter().flatten().collect())
    }

    /// Each job's latest run (the last of its runs in [`Ledger::history`]), with its
    /// deliveries.
    pub fn latest_runs(&self) -> Result<Vec<RunRecord>, LedgerError> {
        let mut stmt = self
            .conn
            .prepare(SQL_LATEST_RUNS)
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([], run_row)
            .map_err(|e| self.err(e))?
            .collect::<Result<_, _>>()
            .map_err(|e| self.err(e))?;
        let mut runs = self.runs_of(rows)?;
        for run in &mut runs {
            run.deliveries = self.deliveries(&run.job, &run.period)?;
        }
        Ok(runs)
    }

    /// The rows [`run_row`] read, their states read strictly.
    fn runs_of(&self, rows: Vec<(RunRecord, String)>) -> Result<Vec<RunRecord>, LedgerError> {
        rows.into_iter()
            .map(|(mut run, state)| {
                run.state = self.run_state(&run.job, &run.period, state)?;
                Ok(run)
            })
            .collect()
    }

    /// What the run's watch rules found, as the run layer judged them. A row written
    /// before [`WATCH_COLUMNS`] has no values or unit; its rule's direction was not
    /// kept and reads as a fall (`history` prints no direction).
    fn watch_of(&self, job: &str, period: &str) -> Result<Vec<WatchResult>, LedgerError> {
        let typed = self
            .conn
            .prepare_cached("SELECT 1 FROM pragma_table_info('watch') WHERE name = 'unit'")
            .and_then(|mut s| s.exists([]))
            .map_err(|e| self.err(e))?;
        let mut stmt = self
            .conn
            .prepare_cached(if typed { SQL_WATCH_OF } else { SQL_WATCH_OF_V2 })
            .map_err(|e| self.err(e))?;
        let rows: Vec<(WatchResult, Option<String>)> = stmt
            .query_map(params![job, period], |r| {
                Ok((
                    WatchResult {
                        rule: r.get(0)?,
                        fired: r.get::<_, i64>(1)? != 0,
                        metric: r.get(2)?,
                        slice: r.get(3)?,
                        change: r.get(4)?,
                        threshold: r.get(5)?,
                        note: r.get(6)?,
                        rise: r.get::<_, Option<bool>>(7)?.unwrap_or(false),
                        current: r.get(8)?,
                        previous: r.get(9)?,
                        // Read below, where a unit this version does not know is an
                        // error that names the row.
                        unit: None,
                    },
                    r.get::<_, Option<String>>(10)?,
                ))
            })
            .map_err(|e| self.err(e))?
            .collect::<Result<_, _>>()
            .map_err(|e| self.err(e))?;
        rows.into_iter()
            .map(|(mut w, unit)| {
                w.unit = match unit.as_deref() {
                    None | Some("") => None,
                    Some(name) => Some(Unit::named(name).ok_or_else(|| {
                        self.unknown_state(
                            "watch",
                            format!("job `{job}`, period `{period}`, rule `{}`", w.rule),
                            name.to_owned(),
                        )
                    })?),
                };
                Ok(w)
            })
            .collect()
    }
}

/// A `runs` row as SQL_HISTORY and SQL_LATEST_RUNS select it (job, period, fire_time,
/// state, started_at, finished_at, output_dir, error, attempts), before its deliveries
/// and watch results are read.
/// The state is returned as read, beside the record: [`Ledger::runs_of`] reads it.
fn run_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<(RunRecord, String)> {
    let record = RunRecord {
        job: r.get(0)?,
        period: r.get(1)?,
        fire_time: r.get(2)?,
        state: RunState::Running,
        started_at: r.get(4)?,
        finished_at: r.get(5)?,
        output_dir: r.get(6)?,
        error: r.get(7)?,
        attempts: r.get(8)?,
        deliveries: Vec::new(),
        watch: Vec::new(),
    };
    Ok((record, r.get(3)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::{Clock, SystemClock};

    fn at(s: &str) -> DateTime<Utc> {
        parse_time(s).unwrap()
    }

    fn key<'a>(lang: &'a str) -> DeliveryKey<'a> {
        DeliveryKey {
            job: "j",
            period: "2024-01-01_2024-06-30",
            lang,
            recipient: "ceo@example.com",
        }
    }

    fn update(state: DeliveryState, error: Option<&str>) -> DeliveryUpdate<'_> {
        DeliveryUpdate {
            state,
            attempts_added: 1,
            error,
            next_attempt: None,
            retry_until: None,
        }
    }

    #[test]
    fn runs_deliveries_and_message_ids() {
        let dir = tempfile::tempdir().unwrap();
        let l = Ledger::open(&dir.path().join("s/state.sqlite")).unwrap();
        l.begin_run("j", "2024-01-01_2024-06-30", None, None)
            .unwrap();
        let key = key("en");
        let id = key.message_id("example.com");
        assert_eq!(id, key.message_id("example.com"), "deterministic");
        assert_ne!(id, self::key("zh").message_id("example.com"));
        assert!(id.starts_with('<') && id.ends_with("@example.com>"));
        let status = l.delivery(&key, &id).unwrap();
        assert_eq!((status.state, status.attempts), (DeliveryState::Pending, 0));
        l.update_delivery(&key, &update(DeliveryState::Failed, Some("451 try later")))
            .unwrap();
        l.update_delivery(&key, &update(DeliveryState::Sent, None))
            .unwrap();
        let status = l.delivery(&key, &id).unwrap();
        assert_eq!((status.state, status.attempts), (DeliveryState::Sent, 2));
        l.finish_run("j", "2024-01-01_2024-06-30", RunState::Succeeded, None)
            .unwrap();
        let h = l.history(Some("j")).unwrap();
        assert_eq!(h.len(), 1);
        assert_eq!(h[0].state, "succeeded");
        assert_eq!(h[0].deliveries[0].state, "sent");
        assert!(l.history(Some("other")).unwrap().is_empty());
        assert!(l.all_sent("j", "2024-01-01_2024-06-30").unwrap());
    }

    /// The ledger keeps what the run layer judged, whole: `history` reads back the
    /// same results (fired first), and a unit it does not know is an error naming it.
    #[test]
    fn watch_results_come_back_as_the_run_judged_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.sqlite");
        let l = Ledger::open(&path).unwrap();
        let period = "2024-01-01_2024-06-30";
        l.begin_run("j", period, None, None).unwrap();
        let quiet = WatchResult {
            rule: "a-quiet".into(),
            metric: "conv_cnt".into(),
            slice: "renewal".into(),
            rise: false,
            threshold: 5.0,
            change: None,
            current: None,
            previous: None,
            unit: None,
            fired: false,
            note: Some("no slice `renewal` in this run's data".into()),
        };
        let fired = WatchResult {
            rule: "b-fired".into(),
            metric: "conv_to_feature_rate".into(),
            slice: "overall".into(),
            rise: true,
            threshold: 0.5,
            change: Some(1.25),
            current: Some(0.0325),
            previous: Some(0.02),
            unit: Some(Unit::Rate),
            fired: true,
            note: None,
        };
        l.record_watch("j", period, &[quiet.clone(), fired.clone()])
            .unwrap();
        assert_eq!(l.history(Some("j")).unwrap()[0].watch, [fired, quiet]);

        rusqlite::Connection::open(&path)
            .unwrap()
            .execute("UPDATE watch SET unit = 'furlongs' WHERE fired = 1", [])
            .unwrap();
        let e = l.history(Some("j")).unwrap_err();
        assert!(
            matches!(&e, LedgerError::UnknownState { table: "watch", value, .. } if value == "furlongs"),
            "{e:?}"
        );
        assert!(e.to_string().contains("rule `b-fired`"), "{e}");
    }

    /// A state this version does not write (a newer version's, an edit by hand) is an
    /// error naming the ledger, the table, the row and the value, not a silent
    /// `pending` that would send the delivery again.
    #[test]
    fn a_state_the_ledger_holds_that_this_version_does_not_know_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.sqlite");
        let l = Ledger::open(&path).unwrap();
        let key = key("en");
        let id = key.message_id("example.com");
        l.begin_run("j", "2024-01-01_2024-06-30", None, None)
            .unwrap();
        l.delivery(&key, &id).unwrap();
        let edit = |sql: &str| {
            rusqlite::Connection::open(&path)
                .unwrap()
                .execute(sql, [])
                .unwrap()
        };

        edit("UPDATE deliveries SET state = 'bounced'");
        for e in [
            l.deliveries("j", "2024-01-01_2024-06-30").unwrap_err(),
            l.history(None).unwrap_err(),
            l.delivery(&key, &id).unwrap_err(),
        ] {
            assert!(
                matches!(&e, LedgerError::UnknownState { table: "deliveries", value, .. } if value == "bounced"),
                "{e:?}"
            );
            let text = e.to_string();
            for part in [
                path.display().to_string().as_str(),
                "`deliveries`",
                "job `j`",
                "period `2024-01-01_2024-06-30`",
                "en to ceo@example.com",
                "unknown state `bounced`",
            ] {
                assert!(text.contains(part), "{part}: {text}");
            }
        }
        assert!(matches!(
            l.claim_delivery(&key, &id),
            Err(LedgerError::UnknownState { .. })
        ));

        edit("UPDATE deliveries SET state = 'sent'");
        edit("UPDATE runs SET state = 'paused'");
        for e in [
            l.history(Some("j")).unwrap_err(),
            l.latest_runs().unwrap_err(),
            l.run("j", "2024-01-01_2024-06-30").unwrap_err(),
        ] {
            let text = e.to_string();
            assert!(
                text.contains(
                    "table `runs`, job `j`, period `2024-01-01_2024-06-30`: unknown state `paused`"
                ) && text.contains(&path.display().to_string()),
                "{text}"
            );
        }
        // Every state this version writes reads back as itself.
        for s in [
            RunState::Running,
            RunState::Succeeded,
            RunState::Failed,
            RunState::Skipped,
        ] {
            assert_eq!(RunState::parse(s.as_str()), Some(s));
        }
        for s in [
            DeliveryState::Pending,
            DeliveryState::Sending,
            DeliveryState::Sent,
            DeliveryState::Failed,
            DeliveryState::GaveUp,
        ] {
            assert_eq!(DeliveryState::parse(s.as_str()), Some(s));
        }
    }

    /// The times the ledger stamps are its clock's (the daemon's rehearsal clock),
    /// not the real time.
    #[test]
    fn the_ledger_stamps_the_time_of_the_clock_it_was_given() {
        let dir = tempfile::tempdir().unwrap();
        let t = at("2031-03-04 05:06:07");
        let l = Ledger::open_with_clock(
            &dir.path().join("state.sqlite"),
            std::sync::Arc::new(crate::clock::FixedClock(t)),
        )
        .unwrap();
        l.begin_run("j", "p", None, None).unwrap();
        l.finish_run("j", "p", RunState::Succeeded, None).unwrap();
        let h = &l.history(None).unwrap()[0];
        assert_eq!(h.started_at.as_deref(), Some("2031-03-04 05:06:07"));
        assert_eq!(h.finished_at.as_deref(), Some("2031-03-04 05:06:07"));
        assert_eq!(l.now(), t);
    }

    #[test]
    fn a_run_is_recovered_once_when_its_lock_is_free_whatever_its_pid() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.sqlite");
        let a = Ledger::open(&path).unwrap();
        let b = Ledger::open(&path).unwrap();
        let lock = a.lock_job("j", true).unwrap().expect("free");
        a.begin_run("j", "p", Some(at("2024-06-01 08:00:00")), None)
            .unwrap();
        // Held (this process's pid, alive): not stale, whoever asks.
        assert!(b.lock_job("j", true).unwrap().is_none());
        assert!(b.lock_job("j", false).unwrap().is_none());
        assert!(b.recover_interrupted().unwrap().is_empty());
        drop(lock);
        // The holder is gone (its lock released); the pid in the row is still alive.
        let got = b.recover_interrupted().unwrap();
        assert_eq!(
            got,
            [Interrupted {
                job: "j".to_owned(),
                period: "p".to_owned(),
                fire: Some(at("2024-06-01 08:00:00")),
                gave_up: false,
            }]
        );
        assert!(a.recover_interrupted().unwrap().is_empty(), "only once");
        let h = a.history(None).unwrap();
        assert_eq!(h[0].state, "failed");
        assert!(h[0].error.as_deref().unwrap().contains("interrupted"));
    }

    #[test]
    fn shared_locks_allow_overlap_but_not_recovery() {
        let dir = tempfile::tempdir().unwrap();
        let l = Ledger::open(&dir.path().join("state.sqlite")).unwrap();
        let one = l.lock_job("j", false).unwrap().expect("free");
        let two = l.lock_job("j", false).unwrap();
        assert!(two.is_some(), "overlap = \"allow\" runs share the lock");
        assert!(l.lock_job("j", true).unwrap().is_none());
        drop((one, two));
        assert!(l.lock_job("j", true).unwrap().is_some());
    }

    #[test]
    fn transient_failures_wait_expire_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let l = Ledger::open(&dir.path().join("state.sqlite")).unwrap();
        let k = key("en");
        l.begin_run(k.job, k.period, None, None).unwrap();
        l.delivery(&k, &k.message_id("example.com")).unwrap();
        l.update_delivery(
            &k,
            &DeliveryUpdate {
                state: DeliveryState::Failed,
                attempts_added: 3,
                error: Some("connection refused"),
                next_attempt: Some(at("2024-07-01 09:00:00")),
                retry_until: Some(at("2024-07-02 08:00:00")),
            },
        )
        .unwrap();
        assert!(l.retries_due(at("2024-07-01 08:30:00")).unwrap().is_empty());
        assert_eq!(
            l.retries_due(at("2024-07-01 09:00:00")).unwrap(),
            [(k.job.to_owned(), k.period.to_owned())]
        );
        assert!(l
            .expire_retries(at("2024-07-01 12:00:00"))
            .unwrap()
            .is_empty());
        let gone = l.expire_retries(at("2024-07-02 08:00:00")).unwrap();
        assert_eq!(gone.len(), 1);
        assert_eq!(gone[0].last_error, "connection refused");
        let d = &l.deliveries(k.job, k.period).unwrap()[0];
        assert_eq!(d.state, "gave_up");
        assert!(l.retries_due(at("2024-07-03 00:00:00")).unwrap().is_empty());
        assert_eq!(l.reopen(k.job, k.period).unwrap(), 1);
        assert_eq!(
            l.retries_due(at("2024-07-03 00:00:00")).unwrap().len(),
            1,
            "re-opened deliveries are due at once"
        );
        assert_eq!(
            l.latest_delivered_period(k.job).unwrap().as_deref(),
            Some(k.period)
        );
    }

    #[test]
    fn a_delivery_left_sending_is_flagged_when_sent_again() {
        let dir = tempfile::tempdir().unwrap();
        let l = Ledger::open(&dir.path().join("state.sqlite")).unwrap();
        let k = key("zh");
        let id = k.message_id("example.com");
        l.delivery(&k, &id).unwrap();
        // Claimed, then the process dies (its lock released with it).
        drop(l.claim_delivery(&k, &id).unwrap());
        let s = l.delivery(&k, &id).unwrap();
        assert_eq!(
            (s.state, s.possible_duplicate),
            (DeliveryState::Sending, false)
        );
        let Claim::Won { again: true, .. } = l.claim_delivery(&k, &id).unwrap() else {
            panic!("claimed again, flagged");
        };
        l.update_delivery(&k, &update(DeliveryState::Sent, None))
            .unwrap();
        let d = &l.deliveries(k.job, k.period).unwrap()[0];
        assert!(d.possible_duplicate && d.state == "sent" && d.message_id == id);
    }

    #[test]
    fn processes_that_open_a_new_ledger_at_once_all_open_it() {
        for _ in 0..5 {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("state.sqlite");
            let start = std::sync::Barrier::new(8);
            std::thread::scope(|s| {
                let opened: Vec<_> = (0..8)
                    .map(|_| {
                        s.spawn(|| {
                            start.wait();
                            Ledger::open(&path).map(|_| ())
                        })
                    })
                    .collect();
                for o in opened {
                    o.join().unwrap().unwrap();
                }
            });
        }
    }

    #[test]
    fn a_resolution_drops_only_waiting_failures_and_counts_those_being_sent() {
        let dir = tempfile::tempdir().unwrap();
        let l = Ledger::open(&dir.path().join("state.sqlite")).unwrap();
        let alert = |kind, recipient| NewAlert {
            job: "j",
            period: "p",
            kind,
            recipient,
            message_id: "<a@x>",
            subject: "s",
            body: "b",
        };
        l.queue_alert(&alert(AlertKind::Failed, "a@x.com")).unwrap();
        l.queue_alert(&alert(AlertKind::Failed, "b@x.com")).unwrap();
        l.queue_alert(&alert(AlertKind::Failed, "c@x.com")).unwrap();
        l.queue_alert(&alert(AlertKind::Interrupted, "a@x.com"))
            .unwrap();
        let now = SystemClock.now();
        let minutes = chrono::Duration::minutes;
        let due = l.alerts_due(now).unwrap();
        assert_eq!(due.len(), 4);
        // One failure is being sent (claimed): it counts as told, and stays.
        assert!(l.claim_alert(due[0].id, now, now + minutes(15)).unwrap());
        assert!(
            !l.claim_alert(due[0].id, now, now + minutes(15)).unwrap(),
            "claimed once"
        );
        // One was claimed by a sender that died: its claim has run out.
        assert!(l.claim_alert(due[2].id, now, now - minutes(1)).unwrap());
        assert_eq!(
            l.alerts_due(now).unwrap().len(),
            3,
            "the live claim is not due"
        );
        assert_eq!(l.drop_pending_alerts("j", "p").unwrap(), (2, 1));
        let left = l.alerts_due(now).unwrap();
        assert_eq!(left.len(), 1, "the interrupted alert stays: {left:?}");
        assert_eq!(left[0].id, due[3].id);
        // A dropped alert cannot be claimed any more.
        assert!(!l.claim_alert(due[1].id, now, now + minutes(15)).unwrap());
        assert_eq!(
            l.pending_alerts(None).unwrap().len(),
            2,
            "being sent, and waiting"
        );
    }

    #[test]
    fn alerts_and_messages_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let l = Ledger::open(&dir.path().join("state.sqlite")).unwrap();
        let alert = NewAlert {
            job: "j",
            period: "p",
            kind: AlertKind::Failed,
            recipient: "owner@example.com",
            message_id: "<a@x>",
            subject: "job j failed",
            body: "body",
        };
        l.queue_alert(&alert).unwrap();
        let due = l.alerts_due(SystemClock.now()).unwrap();
        assert_eq!(due.len(), 1);
        l.alert_attempted(
            due[0].id,
            Some("refused"),
            SystemClock.now() + chrono::Duration::hours(1),
        )
        .unwrap();
        assert!(l.alerts_due(SystemClock.now()).unwrap().is_empty());
        assert_eq!(l.pending_alerts(None).unwrap()[0].last_error, "refused");
        l.alert_attempted(due[0].id, None, SystemClock.now())
            .unwrap();
        assert!(l.pending_alerts(None).unwrap().is_empty());
        l.save_message("j", "p", "en", &vec!["subject".to_owned()])
            .unwrap();
        let m: Option<Vec<String>> = l.message("j", "p", "en").unwrap();
        assert_eq!(m.unwrap(), ["subject"]);
    }

    #[test]
    fn read_only_history_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.sqlite");
        let l = Ledger::open(&path).unwrap();
        l.begin_run("j", "p", None, None).unwrap();
        drop(l);
        let bytes = std::fs::read(&path).unwrap();
        let r = Ledger::open_read_only(&path).unwrap();
        assert_eq!(r.history(None).unwrap().len(), 1);
        assert!(r.begin_run("j", "q", None, None).is_err());
        drop(r);
        assert_eq!(bytes, std::fs::read(&path).unwrap());
        assert!(
            !dir.path().join("state.locks").exists(),
            "no lock directory either"
        );
    }

    #[test]
    fn a_ledger_of_the_previous_version_reads_and_upgrades() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.sqlite");
        Connection::open(&path)
            .unwrap()
            .execute_batch(
                "CREATE TABLE runs (job TEXT NOT NULL, period TEXT NOT NULL, fire_time TEXT,
                    state TEXT NOT NULL, started_at TEXT, finished_at TEXT, pid INTEGER,
                    output_dir TEXT, error TEXT, attempts INTEGER NOT NULL DEFAULT 0,
                    PRIMARY KEY (job, period));
                 CREATE TABLE deliveries (job TEXT NOT NULL, period TEXT NOT NULL,
                    lang TEXT NOT NULL, recipient TEXT NOT NULL, message_id TEXT NOT NULL,
                    state TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, last_error TEXT,
                    updated_at TEXT, PRIMARY KEY (job, period, lang, recipient));
                 CREATE TABLE leases (job TEXT PRIMARY KEY, holder TEXT NOT NULL,
                    pid INTEGER NOT NULL, acquired_at TEXT NOT NULL);
                 INSERT INTO runs VALUES ('j', 'p', NULL, 'succeeded', NULL, NULL, 1, NULL, NULL, 1);
                 INSERT INTO deliveries VALUES ('j', 'p', 'en', 'a@example.com', '<x@y>', 'gave_up', 4, '451', NULL);",
            )
            .unwrap();
        let r = Ledger::open_read_only(&path).unwrap();
        let h = r.history(None).unwrap();
        assert_eq!(h[0].deliveries[0].state, "gave_up");
        assert!(r.pending_alerts(None).unwrap().is_empty());
        drop(r);
        let w = Ledger::open(&path).unwrap();
        assert_eq!(w.reopen("j", "p").unwrap(), 1);
        assert_eq!(w.history(None).unwrap()[0].deliveries[0].state, "failed");
    }

    #[test]
    fn a_run_interrupted_again_after_its_rerun_is_given_up() {
        let dir = tempfile::tempdir().unwrap();
        let l = Ledger::open(&dir.path().join("state.sqlite")).unwrap();
        let fire = Some(at("2024-06-01 08:00:00"));
        // Interrupted (no process holds the lock), run again, interrupted again.
        l.begin_run("j", "p", fire, None).unwrap();
        assert!(!l.recover_interrupted().unwrap()[0].gave_up);
        l.begin_run("j", "p", fire, None).unwrap();
        let got = l.recover_interrupted().unwrap();
        assert_eq!(got.len(), 1);
        assert!(got[0].gave_up, "{got:?}");
        let h = &l.history(None).unwrap()[0];
        assert_eq!(h.state, "failed");
        let e = h.error.as_deref().unwrap();
        assert!(e.contains("interrupted twice"), "{e}");
        assert!(
            e.contains("cxreport run --job j --as-of 2024-06-01T08:00:00Z --send"),
            "{e}"
        );
        assert!(l.recover_interrupted().unwrap().is_empty(), "once");
        // A run that then ends on its own starts the count afresh.
        l.begin_run("j", "p", fire, None).unwrap();
        l.finish_run("j", "p", RunState::Succeeded, None).unwrap();
        l.begin_run("j", "p", fire, None).unwrap();
        assert!(!l.recover_interrupted().unwrap()[0].gave_up);
    }

    #[test]
    fn a_failure_of_fifty_megabytes_is_recorded_cut() {
        let dir = tempfile::tempdir().unwrap();
        let l = Ledger::open(&dir.path().join("state.sqlite")).unwrap();
        let huge = format!("bad value `{}`", "x".repeat(50 << 20));
        l.begin_run("j", "p", None, None).unwrap();
        l.record_failed("j", "p", at("2024-06-01 08:00:00"), &huge)
            .unwrap();
        let k = key("en");
        l.delivery(&k, "<id@x>").unwrap();
        l.update_delivery(&k, &update(DeliveryState::Failed, Some(&huge)))
            .unwrap();
        l.queue_alert(&NewAlert {
            job: "j",
            period: "p",
            kind: AlertKind::Failed,
            recipient: "owner@example.com",
            message_id: "<a@x>",
            subject: &huge,
            body: &huge,
        })
        .unwrap();
        let due = l.alerts_due(SystemClock.now()).unwrap();
        l.alert_attempted(due[0].id, Some(&huge), SystemClock.now())
            .unwrap();
        let run = &l.history(Some("j")).unwrap()[0];
        assert_eq!(run.state, "failed");
        let kept = run.error.as_deref().unwrap();
        eprintln!(
            "a {} byte error is kept as {} bytes",
            huge.len(),
            kept.len()
        );
        assert!(kept.len() < MAX_ERROR_BYTES + 100, "{}", kept.len());
        assert!(kept.starts_with("bad value `xxx"));
        assert!(
            kept.ends_with(&format!("of {} bytes cut]", huge.len())),
            "{}",
            &kept[kept.len() - 60..]
        );
        let d = &l.deliveries(k.job, k.period).unwrap()[0];
        assert!(d.last_error.as_deref().unwrap().len() < MAX_ERROR_BYTES + 100);
        let a = &l.alerts_due(SystemClock.now()).unwrap()[0];
        assert!(a.subject.len() < MAX_ERROR_BYTES + 100);
        assert!(a.body.len() < MAX_ALERT_BYTES + 100);
        let pending = &l.pending_alerts(None).unwrap()[0];
        assert!(pending.last_error.len() < MAX_ERROR_BYTES + 100);
        drop(l);
        let size = std::fs::metadata(dir.path().join("state.sqlite"))
            .unwrap()
            .len();
        assert!(size < 1 << 20, "ledger of {size} bytes");
        // Cut on a character boundary.
        assert_eq!(clip("ééé", 3), "é… [4 of 6 bytes cut]");
        assert_eq!(clip("short", 10), "short");
    }

    #[test]
    fn one_of_two_processes_claims_a_delivery() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.sqlite");
        let (a, b) = (Ledger::open(&path).unwrap(), Ledger::open(&path).unwrap());
        let k = key("en");
        let Claim::Won { again, lock, .. } = a.claim_delivery(&k, "<id@x>").unwrap() else {
            panic!("the first claim wins");
        };
        assert!(!again);
        assert!(matches!(
            b.claim_delivery(&k, "<id@x>").unwrap(),
            Claim::Taken
        ));
        assert_eq!(b.deliveries(k.job, k.period).unwrap()[0].state, "sending");
        // The holder dies while sending (its lock released, the row still `sending`).
        drop(lock);
        let Claim::Won { again, lock, .. } = b.claim_delivery(&k, "<id@x>").unwrap() else {
            panic!("a claim of a process that is gone is taken over");
        };
        assert!(again, "flagged: the server may hold a copy");
        b.update_delivery(&k, &update(DeliveryState::Sent, None))
            .unwrap();
        lock.release(true);
        assert!(matches!(
            a.claim_delivery(&k, "<id@x>").unwrap(),
            Claim::Settled(DeliveryState::Sent)
        ));
        let d = &a.deliveries(k.job, k.period).unwrap()[0];
        assert!(d.possible_duplicate && d.state == "sent");
    }

    #[test]
    fn heartbeats_round_trip_prune_and_read_from_an_older_ledger() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.sqlite");
        // A ledger written before heartbeats: read-only, there are none.
        Connection::open(&path)
            .unwrap()
            .execute_batch(SCHEMA)
            .unwrap();
        assert!(Ledger::open_read_only(&path)
            .unwrap()
            .heartbeats()
            .unwrap()
            .is_empty());
        let l = Ledger::open(&path).unwrap();
        let mut h = Heartbeat {
            host: "web-1".into(),
            pid: 42,
            version: "0.1.0".into(),
            started_at: at("2024-06-01 08:00:00"),
            ticked_at: at("2024-06-01 08:00:05"),
            clock_at: at("2030-01-01 00:00:00"),
            stopping_at: None,
            stopped_at: None,
            last_error: None,
        };
        l.put_heartbeat(&h).unwrap();
        let older = Heartbeat {
            pid: 7,
            ticked_at: at("2024-05-01 08:00:00"),
            ..h.clone()
        };
        l.put_heartbeat(&older).unwrap();
        h.ticked_at = at("2024-06-01 08:00:10");
        h.last_error = Some("disk full".into());
        l.put_heartbeat(&h).unwrap();
        let r = Ledger::open_read_only(&path).unwrap();
        assert_eq!(r.heartbeats().unwrap(), [h.clone(), older.clone()]);
        l.prune_heartbeats(at("2024-05-15 00:00:00")).unwrap();
        assert_eq!(r.heartbeats().unwrap(), [h.clone()], "silent since: gone");
        h.stopped_at = Some(at("2024-06-01 09:00:00"));
        l.put_heartbeat(&h).unwrap();
        assert_eq!(r.heartbeats().unwrap()[0].stopped_at, h.stopped_at);
        l.prune_heartbeats(at("2024-05-15 00:00:00")).unwrap();
        assert!(r.heartbeats().unwrap().is_empty(), "stopped: gone");
    }

    #[test]
    fn latest_runs_are_the_last_of_each_job_in_history() {
        let dir = tempfile::tempdir().unwrap();
        let l = Ledger::open(&dir.path().join("state.sqlite")).unwrap();
        l.conn
            .execute_batch(
                "INSERT INTO runs (job, period, state, started_at, attempts) VALUES
                   ('a', 'p1', 'failed', '2024-06-01 08:00:00', 1),
                   ('a', 'p2', 'succeeded', '2024-07-01 08:00:00', 1),
                   ('b', 'p1', 'succeeded', '2024-06-01 08:00:00', 1),
                   ('b', 'p2', 'failed', '2024-06-01 08:00:00', 1),
                   ('c', 'p1', 'skipped', NULL, 1);",
            )
            .unwrap();
        let latest: Vec<(String, String)> = l
            .latest_runs()
            .unwrap()
            .into_iter()
            .map(|r| (r.job, r.period))
            .collect();
        let history = l.history(None).unwrap();
        let expected: Vec<(String, String)> = ["a", "b", "c"]
            .iter()
            .map(|j| {
                let r = history.iter().rev().find(|r| r.job == *j).unwrap();
                (r.job.clone(), r.period.clone())
            })
            .collect();
        assert_eq!(latest, expected);
        let pair = |j: &str, p: &str| (j.to_owned(), p.to_owned());
        assert_eq!(latest, [pair("a", "p2"), pair("b", "p2"), pair("c", "p1")]);
    }

    #[test]
    fn cursors_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let l = Ledger::open(&dir.path().join("state.sqlite")).unwrap();
        assert_eq!(l.cursor("j").unwrap(), None);
        let t = at("2024-06-15 12:00:00");
        l.set_cursor("j", t).unwrap();
        assert_eq!(l.cursor("j").unwrap(), Some(t));
    }
}
