//! The run ledger: a SQLite state database (`<output_dir>/cxreport-state.sqlite`) of
//! runs keyed by (job, period), deliveries keyed by (job, period, language, recipient)
//! with deterministic Message-IDs, per-job leases (no overlapping runs, also between a
//! `run --job` and the daemon) and per-job schedule cursors. Several processes share it
//! safely (WAL, busy timeout, immediate transactions for leases).

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
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
CREATE TABLE IF NOT EXISTS leases (
    job TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    pid INTEGER NOT NULL,
    acquired_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS cursors (
    job TEXT PRIMARY KEY,
    last_fire TEXT NOT NULL
);
";
const SQL_BEGIN_RUN: &str = "INSERT INTO runs (job, period, fire_time, state, started_at, finished_at, pid, output_dir, error, attempts)
     VALUES (?1, ?2, ?3, 'running', ?4, NULL, ?5, ?6, NULL, 1)
     ON CONFLICT (job, period) DO UPDATE SET fire_time = excluded.fire_time, state = 'running',
         started_at = excluded.started_at, finished_at = NULL, pid = excluded.pid,
         output_dir = excluded.output_dir, error = NULL, attempts = runs.attempts + 1";
const SQL_FINISH_RUN: &str =
    "UPDATE runs SET state = ?3, finished_at = ?4, error = ?5 WHERE job = ?1 AND period = ?2";
const SQL_SET_OUTPUT: &str = "UPDATE runs SET output_dir = ?3 WHERE job = ?1 AND period = ?2";
const SQL_RUNNING: &str = "SELECT job, period, pid FROM runs WHERE state = 'running'";
const SQL_MARK_INTERRUPTED: &str =
    "UPDATE runs SET state = 'failed', finished_at = ?3, error = ?4 WHERE job = ?1 AND period = ?2 AND state = 'running'";
const SQL_DELIVERY_ENSURE: &str =
    "INSERT INTO deliveries (job, period, lang, recipient, message_id, state, attempts, updated_at)
     VALUES (?1, ?2, ?3, ?4, ?5, 'pending', 0, ?6) ON CONFLICT DO NOTHING";
const SQL_DELIVERY_GET: &str =
    "SELECT state, attempts, message_id FROM deliveries WHERE job = ?1 AND period = ?2 AND lang = ?3 AND recipient = ?4";
const SQL_DELIVERY_UPDATE: &str =
    "UPDATE deliveries SET state = ?5, attempts = attempts + ?6, last_error = ?7, updated_at = ?8
     WHERE job = ?1 AND period = ?2 AND lang = ?3 AND recipient = ?4";
const SQL_LEASE_GET: &str = "SELECT holder, pid FROM leases WHERE job = ?1";
const SQL_LEASE_PUT: &str =
    "INSERT OR REPLACE INTO leases (job, holder, pid, acquired_at) VALUES (?1, ?2, ?3, ?4)";
const SQL_LEASE_DROP: &str = "DELETE FROM leases WHERE job = ?1 AND holder = ?2";
const SQL_CURSOR_GET: &str = "SELECT last_fire FROM cursors WHERE job = ?1";
const SQL_CURSOR_PUT: &str = "INSERT OR REPLACE INTO cursors (job, last_fire) VALUES (?1, ?2)";
const SQL_HISTORY: &str =
    "SELECT job, period, fire_time, state, started_at, finished_at, output_dir, error, attempts
     FROM runs WHERE (?1 IS NULL OR job = ?1) ORDER BY job, COALESCE(started_at, ''), period";
const SQL_HISTORY_DELIVERIES: &str =
    "SELECT lang, recipient, state, attempts, last_error, message_id
     FROM deliveries WHERE job = ?1 AND period = ?2 ORDER BY lang, recipient";

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
    Sent,
    /// Failed so far; will be tried again.
    Failed,
    /// Permanent failure, or out of attempts.
    GaveUp,
}

impl DeliveryState {
    fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Sent => "sent",
            Self::Failed => "failed",
            Self::GaveUp => "gave_up",
        }
    }

    fn parse(s: &str) -> Self {
        match s {
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
}

#[derive(Debug, Clone, Serialize)]
pub struct DeliveryRecord {
    pub lang: String,
    pub recipient: String,
    pub state: String,
    pub attempts: i64,
    pub last_error: Option<String>,
    pub message_id: String,
}

pub struct Ledger {
    conn: Connection,
    path: PathBuf,
    /// Distinguishes this process's leases from another's with a reused pid.
    holder: String,
}

fn now_text() -> String {
    crate::source::timestamp::format_utc(Utc::now())
}

/// Whether a process id is alive (Linux: /proc; elsewhere assume it is).
pub fn pid_alive(pid: i64) -> bool {
    if pid <= 0 {
        return false;
    }
    if cfg!(target_os = "linux") {
        Path::new("/proc").join(pid.to_string()).exists()
    } else {
        true
    }
}

impl Ledger {
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
        let conn = Connection::open(path).map_err(err)?;
        conn.busy_timeout(std::time::Duration::from_secs(30))
            .map_err(err)?;
        conn.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;")
            .map_err(err)?;
        conn.execute_batch(SCHEMA).map_err(err)?;
        let holder = format!(
            "{}-{:x}",
            std::process::id(),
            Utc::now().timestamp_nanos_opt().unwrap_or(0)
        );
        Ok(Self {
            conn,
            path: path.to_owned(),
            holder,
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

    /// Runs left `running` by a process that is gone: marked failed ("interrupted")
    /// and returned so the caller runs them again.
    pub fn recover_interrupted(&self) -> Result<Vec<(String, String)>, LedgerError> {
        let mut stmt = self.conn.prepare(SQL_RUNNING).map_err(|e| self.err(e))?;
        let rows: Vec<(String, String, i64)> = stmt
            .query_map([], |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get::<_, Option<i64>>(2)?.unwrap_or(0),
                ))
            })
            .map_err(|e| self.err(e))?
            .collect::<Result<_, _>>()
            .map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for (job, period, pid) in rows {
            if pid == i64::from(std::process::id()) || pid_alive(pid) {
                continue;
            }
            self.conn
                .execute(
                    SQL_MARK_INTERRUPTED,
                    params![
                        job,
                        period,
                        now_text(),
                        format!("interrupted: process {pid} ended while the run was in flight")
                    ],
                )
                .map_err(|e| self.err(e))?;
            out.push((job, period));
        }
        Ok(out)
    }

    /// Takes the job's lease; `false` when a live process holds it.
    pub fn acquire_lease(&mut self, job: &str) -> Result<bool, LedgerError> {
        let holder = self.holder.clone();
        let path = self.path.clone();
        let err = |source| LedgerError::Sqlite {
            path: path.clone(),
            source,
        };
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(err)?;
        let current: Option<(String, i64)> = tx
            .query_row(SQL_LEASE_GET, [job], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()
            .map_err(err)?;
        if let Some((h, pid)) = current {
            if h != holder && pid_alive(pid) {
                return Ok(false);
            }
        }
        tx.execute(
            SQL_LEASE_PUT,
            params![job, holder, i64::from(std::process::id()), now_text()],
        )
        .map_err(err)?;
        tx.commit().map_err(err)?;
        Ok(true)
    }

    pub fn release_lease(&self, job: &str) -> Result<(), LedgerError> {
        self.conn
            .execute(SQL_LEASE_DROP, params![job, self.holder])
            .map(|_| ())
            .map_err(|e| self.err(e))
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
                    fire.map(crate::source::timestamp::format_utc),
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

    /// The delivery's state, creating it as pending with its Message-ID if new.
    pub fn delivery(
        &self,
        key: &DeliveryKey<'_>,
        message_id: &str,
    ) -> Result<(DeliveryState, i64), LedgerError> {
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
                |r| Ok((DeliveryState::parse(&r.get::<_, String>(0)?), r.get(1)?)),
            )
            .map_err(|e| self.err(e))
    }

    pub fn update_delivery(
        &self,
        key: &DeliveryKey<'_>,
        state: DeliveryState,
        attempts_added: i64,
        error: Option<&str>,
    ) -> Result<(), LedgerError> {
        self.conn
            .execute(
                SQL_DELIVERY_UPDATE,
                params![
                    key.job,
                    key.period,
                    key.lang,
                    key.recipient,
                    state.as_str(),
                    attempts_added,
                    error,
                    now_text()
                ],
            )
            .map(|_| ())
            .map_err(|e| self.err(e))
    }

    pub fn cursor(&self, job: &str) -> Result<Option<DateTime<Utc>>, LedgerError> {
        let t: Option<String> = self
            .conn
            .query_row(SQL_CURSOR_GET, [job], |r| r.get(0))
            .optional()
            .map_err(|e| self.err(e))?;
        Ok(t.and_then(|t| crate::source::timestamp::parse(&t, chrono_tz::Tz::UTC).ok()))
    }

    pub fn set_cursor(&self, job: &str, t: DateTime<Utc>) -> Result<(), LedgerError> {
        self.conn
            .execute(
                SQL_CURSOR_PUT,
                params![job, crate::source::timestamp::format_utc(t)],
            )
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
                })
            })
            .map_err(|e| self.err(e))?
            .collect::<Result<_, _>>()
            .map_err(|e| self.err(e))?;
        let mut d = self
            .conn
            .prepare(SQL_HISTORY_DELIVERIES)
            .map_err(|e| self.err(e))?;
        for run in &mut runs {
            run.deliveries = d
                .query_map(params![run.job, run.period], |r| {
                    Ok(DeliveryRecord {
                        lang: r.get(0)?,
                        recipient: r.get(1)?,
                        state: r.get(2)?,
                        attempts: r.get(3)?,
                        last_error: r.get(4)?,
                        message_id: r.get(5)?,
                    })
                })
                .map_err(|e| self.err(e))?
                .collect::<Result<_, _>>()
                .map_err(|e| self.err(e))?;
        }
        Ok(runs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_deliveries_and_message_ids() {
        let dir = tempfile::tempdir().unwrap();
        let l = Ledger::open(&dir.path().join("s/state.sqlite")).unwrap();
        l.begin_run("j", "2024-01-01_2024-06-30", None, None)
            .unwrap();
        let key = DeliveryKey {
            job: "j",
            period: "2024-01-01_2024-06-30",
            lang: "en",
            recipient: "ceo@example.com",
        };
        let id = key.message_id("example.com");
        assert_eq!(id, key.message_id("example.com"), "deterministic");
        assert_ne!(
            id,
            DeliveryKey {
                lang: "zh",
                ..key.clone()
            }
            .message_id("example.com")
        );
        assert!(id.starts_with('<') && id.ends_with("@example.com>"));
        assert_eq!(l.delivery(&key, &id).unwrap(), (DeliveryState::Pending, 0));
        l.update_delivery(&key, DeliveryState::Failed, 2, Some("451 try later"))
            .unwrap();
        l.update_delivery(&key, DeliveryState::Sent, 1, None)
            .unwrap();
        assert_eq!(l.delivery(&key, &id).unwrap(), (DeliveryState::Sent, 3));
        l.finish_run("j", "2024-01-01_2024-06-30", RunState::Succeeded, None)
            .unwrap();
        let h = l.history(Some("j")).unwrap();
        assert_eq!(h.len(), 1);
        assert_eq!(h[0].state, "succeeded");
        assert_eq!(h[0].deliveries[0].state, "sent");
        assert_eq!(h[0].deliveries[0].attempts, 3);
        assert!(l.history(Some("other")).unwrap().is_empty());
    }

    #[test]
    fn a_run_left_by_a_dead_process_is_recovered() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.sqlite");
        let l = Ledger::open(&path).unwrap();
        l.begin_run("j", "p", None, None).unwrap();
        // Our own running rows are not stale.
        assert!(l.recover_interrupted().unwrap().is_empty());
        // Pretend the row belongs to a process that no longer exists.
        l.conn
            .execute("UPDATE runs SET pid = 999999999", [])
            .unwrap();
        assert_eq!(
            l.recover_interrupted().unwrap(),
            [("j".to_owned(), "p".to_owned())]
        );
        let h = l.history(None).unwrap();
        assert_eq!(h[0].state, "failed");
        assert!(h[0].error.as_deref().unwrap().contains("interrupted"));
    }

    #[test]
    fn leases_exclude_a_second_holder_while_alive() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.sqlite");
        let mut a = Ledger::open(&path).unwrap();
        let mut b = Ledger::open(&path).unwrap();
        b.holder = "someone-else".into();
        assert!(a.acquire_lease("j").unwrap());
        // Same pid (alive), other holder: refused.
        assert!(!b.acquire_lease("j").unwrap());
        a.release_lease("j").unwrap();
        assert!(b.acquire_lease("j").unwrap());
        // A lease of a dead process is taken over.
        b.conn
            .execute("UPDATE leases SET pid = 999999999", [])
            .unwrap();
        assert!(a.acquire_lease("j").unwrap());
    }

    #[test]
    fn cursors_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let l = Ledger::open(&dir.path().join("state.sqlite")).unwrap();
        assert_eq!(l.cursor("j").unwrap(), None);
        let t = crate::source::timestamp::parse("2024-06-15 12:00:00", chrono_tz::Tz::UTC).unwrap();
        l.set_cursor("j", t).unwrap();
        assert_eq!(l.cursor("j").unwrap(), Some(t));
    }
}
