//! Long because every statement of the ledger's tables lives here, beside the tests
//! that pin what each means; the tables change together.
//!
//! The run ledger: a SQLite state database (`<output_dir>/cxreport-state.sqlite`) of
//! runs keyed by (job, period), deliveries keyed by (job, period, language, recipient)
//! with deterministic Message-IDs, the messages each edition mailed (so a delivery can
//! be retried later from the same text and files), owner alerts waiting for a working
//! SMTP server, and per-job schedule cursors. Several processes share it safely (WAL,
//! busy timeout).
//!
//! Who runs a job is decided by an OS file lock per job (`cxreport-state.locks/<job>.lock`),
//! not by process ids: the kernel releases it when the holder dies, whatever pid the
//! next process gets (a daemon restarted as PID 1 in a container gets the same one). A
//! `running` row whose job lock is free belongs to a process that is gone; it is
//! recovered once, by whoever takes the lock first.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use rusqlite::{params, Connection, OpenFlags, OptionalExtension};
use serde::Serialize;
use sha2::{Digest, Sha256};

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
const SQL_FINISH_RUN: &str =
    "UPDATE runs SET state = ?3, finished_at = ?4, error = ?5 WHERE job = ?1 AND period = ?2";
const SQL_SET_OUTPUT: &str = "UPDATE runs SET output_dir = ?3 WHERE job = ?1 AND period = ?2";
const SQL_RUN_GET: &str =
    "SELECT fire_time, output_dir, state FROM runs WHERE job = ?1 AND period = ?2";
const SQL_RUNNING: &str = "SELECT job, period, fire_time FROM runs WHERE state = 'running'";
const SQL_MARK_INTERRUPTED: &str =
    "UPDATE runs SET state = 'failed', finished_at = ?3, error = ?4 WHERE job = ?1 AND period = ?2 AND state = 'running'";
const SQL_DELIVERY_ENSURE: &str =
    "INSERT INTO deliveries (job, period, lang, recipient, message_id, state, attempts, updated_at)
     VALUES (?1, ?2, ?3, ?4, ?5, 'pending', 0, ?6) ON CONFLICT DO NOTHING";
const SQL_DELIVERY_GET: &str =
    "SELECT state, attempts, possible_duplicate, message_id FROM deliveries
     WHERE job = ?1 AND period = ?2 AND lang = ?3 AND recipient = ?4";
const SQL_DELIVERY_SENDING: &str =
    "UPDATE deliveries SET state = 'sending', possible_duplicate = MAX(possible_duplicate, ?5), updated_at = ?6
     WHERE job = ?1 AND period = ?2 AND lang = ?3 AND recipient = ?4";
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
    "INSERT INTO alerts (job, recipient, message_id, subject, body, state, attempts, created_at, next_attempt_at)
     VALUES (?1, ?2, ?3, ?4, ?5, 'pending', 0, ?6, ?6)";
const SQL_ALERTS_DUE: &str =
    "SELECT id, job, recipient, message_id, subject, body, attempts FROM alerts
     WHERE state = 'pending' AND next_attempt_at <= ?1 ORDER BY id";
const SQL_ALERT_DONE: &str =
    "UPDATE alerts SET state = ?2, attempts = attempts + 1, last_error = ?3, next_attempt_at = ?4 WHERE id = ?1";
const SQL_ALERTS_PENDING: &str =
    "SELECT job, recipient, subject, attempts, COALESCE(last_error, '') FROM alerts
     WHERE state = 'pending' AND (?1 IS NULL OR job = ?1) ORDER BY id";
const SQL_WATCH_CLEAR: &str = "DELETE FROM watch WHERE job = ?1 AND period = ?2";
const SQL_WATCH_PUT: &str =
    "INSERT INTO watch (job, period, rule, fired, metric, slice, change, threshold, note)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)";
const SQL_WATCH_OF: &str = "SELECT rule, fired, metric, slice, change, threshold, note FROM watch
     WHERE job = ?1 AND period = ?2 ORDER BY fired DESC, rule";
const SQL_CURSOR_GET: &str = "SELECT last_fire FROM cursors WHERE job = ?1";
const SQL_CURSOR_PUT: &str = "INSERT OR REPLACE INTO cursors (job, last_fire) VALUES (?1, ?2)";
const SQL_HISTORY: &str =
    "SELECT job, period, fire_time, state, started_at, finished_at, output_dir, error, attempts
     FROM runs WHERE (?1 IS NULL OR job = ?1) ORDER BY job, COALESCE(started_at, ''), period";

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("run ledger {path}: {source}")]
    Sqlite {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("run ledger {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    Running,
    Succeeded,
    Failed,
    Skipped,
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
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    Pending,
    /// Handed to the SMTP server; written before the conversation starts, so a row
    /// still `sending` after its process died may or may not have been accepted.
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

    fn parse(s: &str) -> Self {
        match s {
            "sending" => Self::Sending,
            "sent" => Self::Sent,
            "failed" => Self::Failed,
            "gave_up" => Self::GaveUp,
            _ => Self::Pending,
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
        let mut h = Sha256::new();
        for part in [self.job, self.period, self.lang, self.recipient] {
            h.update(part.as_bytes());
            h.update([0]);
        }
        let hex: String = h
            .finalize()
            .iter()
            .take(16)
            .map(|b| format!("{b:02x}"))
            .collect();
        format!("<{hex}.{}@{domain}>", self.job)
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
    pub state: String,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub output_dir: Option<String>,
    pub error: Option<String>,
    pub attempts: i64,
    pub deliveries: Vec<DeliveryRecord>,
    /// The job's watch rules as this run judged them.
    pub watch: Vec<WatchRecord>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct WatchRecord {
    pub rule: String,
    pub fired: bool,
    pub metric: String,
    pub slice: String,
    pub change: Option<f64>,
    pub threshold: f64,
    pub note: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DeliveryRecord {
    pub lang: String,
    pub recipient: String,
    pub state: String,
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
    pub state: String,
}

/// A run found interrupted: job, period and fire time.
pub type Interrupted = (String, String, Option<DateTime<Utc>>);

/// A job's lock; released when dropped, or by the kernel when the process dies.
#[derive(Debug)]
pub struct JobLock {
    _file: File,
}

pub struct Ledger {
    conn: Connection,
    path: PathBuf,
    /// Written by an older version and opened read-only: without the columns and
    /// tables added since.
    v1: bool,
}

fn now_text() -> String {
    format_time(Utc::now())
}

fn format_time(t: DateTime<Utc>) -> String {
    crate::source::timestamp::format_utc(t)
}

fn parse_time(t: &str) -> Option<DateTime<Utc>> {
    crate::source::timestamp::parse(t, chrono_tz::Tz::UTC).ok()
}

impl Ledger {
    /// Opens (and creates) the ledger for writing.
    pub fn open(path: &Path) -> Result<Self, LedgerError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|source| LedgerError::Io {
                path: path.to_owned(),
                source,
            })?;
        }
        let err = |source| LedgerError::Sqlite {
            path: path.to_owned(),
            source,
        };
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
        conn.execute_batch(SCHEMA).map_err(err)?;
        let mut have = conn
            .prepare("SELECT name FROM pragma_table_info('deliveries')")
            .map_err(err)?;
        let names: Vec<String> = have
            .query_map([], |r| r.get(0))
            .map_err(err)?
            .collect::<Result<_, _>>()
            .map_err(err)?;
        drop(have);
        for (column, sql) in DELIVERY_COLUMNS {
            if !names.iter().any(|n| n == column) {
                conn.execute_batch(sql).map_err(err)?;
            }
        }
        Ok(Self {
            conn,
            path: path.to_owned(),
            v1: false,
        })
    }

    /// Opens an existing ledger for reading only (`history`): works in a read-only
    /// directory and changes nothing.
    pub fn open_read_only(path: &Path) -> Result<Self, LedgerError> {
        let err = |source| LedgerError::Sqlite {
            path: path.to_owned(),
            source,
        };
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
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
            v1,
        })
    }

    fn err(&self, source: rusqlite::Error) -> LedgerError {
        LedgerError::Sqlite {
            path: self.path.clone(),
            source,
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
        let dir = self.lock_dir();
        let io = |source| LedgerError::Io {
            path: dir.clone(),
            source,
        };
        std::fs::create_dir_all(&dir).map_err(io)?;
        let name: String = job
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join(format!("{name}.lock")))
            .map_err(io)?;
        let taken = if exclusive {
            file.try_lock()
        } else {
            file.try_lock_shared()
        };
        match taken {
            Ok(()) => Ok(Some(JobLock { _file: file })),
            Err(std::fs::TryLockError::WouldBlock) => Ok(None),
            Err(std::fs::TryLockError::Error(e)) => Err(io(e)),
        }
    }

    /// Runs left `running` by a process that is gone (their job's lock is free):
    /// marked failed ("interrupted") and returned with their fire time so the caller
    /// runs them again. Exactly one process gets each: the row is changed under the
    /// job's lock, and only while it is still `running`.
    pub fn recover_interrupted(&self) -> Result<Vec<Interrupted>, LedgerError> {
        let mut stmt = self.conn.prepare(SQL_RUNNING).map_err(|e| self.err(e))?;
        let rows: Vec<(String, String, Option<String>)> = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .map_err(|e| self.err(e))?
            .collect::<Result<_, _>>()
            .map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for (job, period, fire) in rows {
            let Some(_lock) = self.lock_job(&job, true)? else {
                continue;
            };
            let changed = self
                .conn
                .execute(
                    SQL_MARK_INTERRUPTED,
                    params![
                        job,
                        period,
                        now_text(),
                        "interrupted: the process running it ended before the run finished"
                    ],
                )
                .map_err(|e| self.err(e))?;
            if changed == 1 {
                out.push((job, period, fire.as_deref().and_then(parse_time)));
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
                    now_text(),
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
                params![job, period, state.as_str(), now_text(), error],
            )
            .map(|_| ())
            .map_err(|e| self.err(e))
    }

    /// The run's fire time, output directory and state.
    pub fn run(&self, job: &str, period: &str) -> Result<Option<RunFacts>, LedgerError> {
        self.conn
            .query_row(SQL_RUN_GET, params![job, period], |r| {
                Ok(RunFacts {
                    fire_time: r
                        .get::<_, Option<String>>(0)?
                        .as_deref()
                        .and_then(parse_time),
                    output_dir: r.get::<_, Option<String>>(1)?.map(PathBuf::from),
                    state: r.get(2)?,
                })
            })
            .optional()
            .map_err(|e| self.err(e))
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
        self.conn
            .execute(
                SQL_DELIVERY_ENSURE,
                params![
                    key.job,
                    key.period,
                    key.lang,
                    key.recipient,
                    message_id,
                    now_text()
                ],
            )
            .map_err(|e| self.err(e))?;
        self.conn
            .query_row(
                SQL_DELIVERY_GET,
                params![key.job, key.period, key.lang, key.recipient],
                |r| {
                    Ok(DeliveryStatus {
                        state: DeliveryState::parse(&r.get::<_, String>(0)?),
                        attempts: r.get(1)?,
                        possible_duplicate: r.get::<_, i64>(2)? != 0,
                    })
                },
            )
            .map_err(|e| self.err(e))
    }

    /// Written before the SMTP conversation starts. `again`: the previous attempt was
    /// left `sending` by a process that died, so this one may deliver a second copy.
    pub fn mark_sending(&self, key: &DeliveryKey<'_>, again: bool) -> Result<(), LedgerError> {
        self.conn
            .execute(
                SQL_DELIVERY_SENDING,
                params![
                    key.job,
                    key.period,
                    key.lang,
                    key.recipient,
                    i64::from(again),
                    now_text()
                ],
            )
            .map(|_| ())
            .map_err(|e| self.err(e))
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
                    u.error,
                    now_text(),
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
        let rows = d
            .query_map(params![job, period], |r| {
                Ok(DeliveryRecord {
                    lang: r.get(0)?,
                    recipient: r.get(1)?,
                    state: r.get(2)?,
                    attempts: r.get(3)?,
                    last_error: r.get(4)?,
                    message_id: r.get(5)?,
                    possible_duplicate: r.get::<_, i64>(6)? != 0,
                    next_attempt_at: r.get(7)?,
                    retry_until: r.get(8)?,
                })
            })
            .map_err(|e| self.err(e))?
            .collect::<Result<_, _>>()
            .map_err(|e| self.err(e));
        rows
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
                    params![e.job, e.period, e.lang, e.recipient, now_text()],
                )
                .map_err(|e| self.err(e))?;
        }
        Ok(rows)
    }

    /// `cxreport retry`: the run's given-up and failed deliveries become retryable
    /// now, with a fresh retry time. Returns how many.
    pub fn reopen(&self, job: &str, period: &str) -> Result<usize, LedgerError> {
        self.conn
            .execute(SQL_REOPEN, params![job, period, now_text()])
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
    pub fn queue_alert(
        &self,
        job: &str,
        recipient: &str,
        message_id: &str,
        subject: &str,
        body: &str,
    ) -> Result<(), LedgerError> {
        self.conn
            .execute(
                SQL_ALERT_PUT,
                params![job, recipient, message_id, subject, body, now_text()],
            )
            .map(|_| ())
            .map_err(|e| self.err(e))
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

    /// Records one attempt at an alert: sent, or tried again after `retry_at`.
    pub fn alert_attempted(
        &self,
        id: i64,
        error: Option<&str>,
        retry_at: DateTime<Utc>,
    ) -> Result<(), LedgerError> {
        let state = if error.is_some() { "pending" } else { "sent" };
        self.conn
            .execute(
                SQL_ALERT_DONE,
                params![id, state, error, format_time(retry_at)],
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
        let mut runs: Vec<RunRecord> = stmt
            .query_map([job], |r| {
                Ok(RunRecord {
                    job: r.get(0)?,
                    period: r.get(1)?,
                    fire_time: r.get(2)?,
                    state: r.get(3)?,
                    started_at: r.get(4)?,
                    finished_at: r.get(5)?,
                    output_dir: r.get(6)?,
                    error: r.get(7)?,
                    attempts: r.get(8)?,
                    deliveries: Vec::new(),
                    watch: Vec::new(),
                })
            })
            .map_err(|e| self.err(e))?
            .collect::<Result<_, _>>()
            .map_err(|e| self.err(e))?;
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
        results: &[WatchRecord],
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
                    w.note
                ],
            )
            .map_err(|e| self.err(e))?;
        }
        tx.commit().map_err(|e| self.err(e))
    }

    fn watch_of(&self, job: &str, period: &str) -> Result<Vec<WatchRecord>, LedgerError> {
        let mut stmt = self
            .conn
            .prepare_cached(SQL_WATCH_OF)
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![job, period], |r| {
                Ok(WatchRecord {
                    rule: r.get(0)?,
                    fired: r.get::<_, i64>(1)? != 0,
                    metric: r.get(2)?,
                    slice: r.get(3)?,
                    change: r.get(4)?,
                    threshold: r.get(5)?,
                    note: r.get(6)?,
                })
            })
            .map_err(|e| self.err(e))?
            .collect::<Result<_, _>>()
            .map_err(|e| self.err(e));
        rows
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
            [(
                "j".to_owned(),
                "p".to_owned(),
                Some(at("2024-06-01 08:00:00"))
            )]
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
        l.mark_sending(&k, false).unwrap();
        let s = l.delivery(&k, &id).unwrap();
        assert_eq!(
            (s.state, s.possible_duplicate),
            (DeliveryState::Sending, false)
        );
        l.mark_sending(&k, true).unwrap();
        l.update_delivery(&k, &update(DeliveryState::Sent, None))
            .unwrap();
        let d = &l.deliveries(k.job, k.period).unwrap()[0];
        assert!(d.possible_duplicate && d.state == "sent" && d.message_id == id);
    }

    #[test]
    fn alerts_and_messages_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let l = Ledger::open(&dir.path().join("state.sqlite")).unwrap();
        l.queue_alert("j", "owner@example.com", "<a@x>", "job j failed", "body")
            .unwrap();
        let due = l.alerts_due(Utc::now()).unwrap();
        assert_eq!(due.len(), 1);
        l.alert_attempted(
            due[0].id,
            Some("refused"),
            Utc::now() + chrono::Duration::hours(1),
        )
        .unwrap();
        assert!(l.alerts_due(Utc::now()).unwrap().is_empty());
        assert_eq!(l.pending_alerts(None).unwrap()[0].last_error, "refused");
        l.alert_attempted(due[0].id, None, Utc::now()).unwrap();
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
    fn cursors_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let l = Ledger::open(&dir.path().join("state.sqlite")).unwrap();
        assert_eq!(l.cursor("j").unwrap(), None);
        let t = at("2024-06-15 12:00:00");
        l.set_cursor("j", t).unwrap();
        assert_eq!(l.cursor("j").unwrap(), Some(t));
    }
}
