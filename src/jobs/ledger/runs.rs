//! The `runs` table: one row per (job, period) and how it went, who runs a job now
//! (an OS lock per job, not a pid), the recovery of runs whose process is gone (once),
//! and `history`, which reads each run with its deliveries and watch results. Its
//! owners are `job` (a run's own rows) and `daemon` (recovery, skipped and failed
//! fires); `history` and `status` read it.

use std::fs::File;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use rusqlite::{params, OptionalExtension};
use serde::Serialize;

use super::deliveries::DeliveryRecord;
use super::migrate::WATCH;
use super::{
    clip, format_time, parse_time, safe_name, try_lock, Ledger, LedgerError, MAX_ERROR_BYTES,
};
use crate::run::watch::WatchResult;

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
const SQL_HISTORY: &str =
    "SELECT job, period, fire_time, state, started_at, finished_at, output_dir, error, attempts
     FROM runs WHERE (?1 IS NULL OR job = ?1) ORDER BY job, COALESCE(started_at, ''), period";
/// Each job's latest run, in `history`'s order (the last one there).
const SQL_LATEST_RUNS: &str =
    "SELECT job, period, fire_time, state, started_at, finished_at, output_dir, error, attempts
     FROM runs r WHERE NOT EXISTS (
         SELECT 1 FROM runs s WHERE s.job = r.job AND (
             COALESCE(s.started_at, '') > COALESCE(r.started_at, '')
             OR (COALESCE(s.started_at, '') = COALESCE(r.started_at, '') AND s.period > r.period)))
     ORDER BY job";

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
    /// A bursted job's region editions, each with its watch results.
    pub editions: Vec<super::editions::EditionRecord>,
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

/// A job's lock; released when dropped, or by the kernel when the process dies.
#[derive(Debug)]
pub struct JobLock {
    _file: File,
}

impl Ledger {
    fn run_state(&self, job: &str, period: &str, value: String) -> Result<RunState, LedgerError> {
        RunState::parse(&value).ok_or_else(|| {
            self.unknown_state("runs", format!("job `{job}`, period `{period}`"), value)
        })
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

    pub fn history(&self, job: Option<&str>) -> Result<Vec<RunRecord>, LedgerError> {
        if self.not_created_yet()? {
            return Ok(Vec::new());
        }
        let mut stmt = self.conn.prepare(SQL_HISTORY).map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([job], run_row)
            .map_err(|e| self.err(e))?
            .collect::<Result<_, _>>()
            .map_err(|e| self.err(e))?;
        let mut runs = self.runs_of(rows)?;
        for run in &mut runs {
            run.deliveries = self.deliveries(&run.job, &run.period)?;
            if self.version >= WATCH {
                run.watch = self.watch_of(&run.job, &run.period, "")?;
            }
            run.editions = self.editions(&run.job, &run.period)?;
        }
        Ok(runs)
    }

    /// Each job's latest run (the last of its runs in [`Ledger::history`]), with its
    /// deliveries.
    pub fn latest_runs(&self) -> Result<Vec<RunRecord>, LedgerError> {
        if self.not_created_yet()? {
            return Ok(Vec::new());
        }
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

    /// A ledger without its `runs` table: a daemon that has just created the file is
    /// migrating it in one transaction, which a reader does not see until it commits.
    /// Nothing has run yet. (A ledger of the oldest, unversioned layout has the table.)
    fn not_created_yet(&self) -> Result<bool, LedgerError> {
        if self.version > 0 {
            return Ok(false);
        }
        let n: i64 = self
            .conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'runs'",
                [],
                |r| r.get(0),
            )
            .map_err(|e| self.err(e))?;
        Ok(n == 0)
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
        editions: Vec::new(),
    };
    Ok((record, r.get(3)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobs::ledger::testing::*;
    use crate::jobs::ledger::*;

    #[test]
    fn a_ledger_whose_tables_are_not_created_yet_reads_as_no_runs() {
        // What a reader sees while a daemon's first migration is still open: the file
        // and no table.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.sqlite");
        rusqlite::Connection::open(&path)
            .unwrap()
            .execute_batch("PRAGMA journal_mode = WAL; PRAGMA user_version = 0;")
            .unwrap();
        let l = Ledger::open_read_only(&path).unwrap();
        assert!(l.history(None).unwrap().is_empty());
        assert!(l.history(Some("monthly")).unwrap().is_empty());
        assert!(l.latest_runs().unwrap().is_empty());
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
}
