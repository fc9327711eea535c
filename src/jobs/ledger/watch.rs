//! The `watch` table: what a run's watch rules found, one row per (job, period,
//! rule), replaced whole at each run; `history` shows it. Its owner is `job`, which
//! records what the run judged.

use rusqlite::params;
use serde::Serialize;

use super::{Ledger, LedgerError};

const SQL_WATCH_CLEAR: &str = "DELETE FROM watch WHERE job = ?1 AND period = ?2";
const SQL_WATCH_PUT: &str =
    "INSERT INTO watch (job, period, rule, fired, metric, slice, change, threshold, note)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)";
const SQL_WATCH_OF: &str = "SELECT rule, fired, metric, slice, change, threshold, note FROM watch
     WHERE job = ?1 AND period = ?2 ORDER BY fired DESC, rule";

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

impl Ledger {
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

    pub(super) fn watch_of(
        &self,
        job: &str,
        period: &str,
    ) -> Result<Vec<WatchRecord>, LedgerError> {
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
