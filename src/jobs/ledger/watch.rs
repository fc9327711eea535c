//! The `watch` table: what a run's watch rules found, one row per (job, period,
//! region, rule) (the region `''` unless the job is bursted: each region's edition
//! is judged on its own), replaced whole at each run; `history` shows it. Its owner is `job`, which
//! records what the run judged.

use rusqlite::params;

use super::migrate::{REGIONS, WATCH_VALUES};
use super::{Ledger, LedgerError};
use crate::reports::comparison::Unit;
use crate::run::watch::WatchResult;

const SQL_WATCH_CLEAR: &str = "DELETE FROM watch WHERE job = ?1 AND period = ?2 AND region = ?3";
const SQL_WATCH_PUT: &str =
    "INSERT INTO watch (job, period, rule, fired, metric, slice, change, threshold, note, rise, current, previous, unit, region)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)";
const SQL_WATCH_OF: &str = "SELECT rule, fired, metric, slice, change, threshold, note, rise, current, previous, unit FROM watch
     WHERE job = ?1 AND period = ?2 AND region = ?3 ORDER BY fired DESC, rule";
/// The same, from a ledger of a version before [`REGIONS`] opened read-only: every
/// row is of the job's one edition.
const SQL_WATCH_OF_BEFORE_REGIONS: &str = "SELECT rule, fired, metric, slice, change, threshold, note, rise, current, previous, unit FROM watch
     WHERE job = ?1 AND period = ?2 AND ?3 = '' ORDER BY fired DESC, rule";
/// The same, from a ledger of a version before [`WATCH_VALUES`] opened read-only (not
/// migrated): its rows hold no direction, values or unit.
const SQL_WATCH_OF_BEFORE_VALUES: &str =
    "SELECT rule, fired, metric, slice, change, threshold, note, NULL, NULL, NULL, NULL FROM watch
     WHERE job = ?1 AND period = ?2 AND ?3 = '' ORDER BY fired DESC, rule";

impl Ledger {
    /// Replaces what the run's watch rules found, as the run layer judged them, for
    /// the `region` edition (`''`: the job's one edition).
    pub fn record_watch(
        &self,
        job: &str,
        period: &str,
        region: &str,
        results: &[WatchResult],
    ) -> Result<(), LedgerError> {
        let tx = self.conn.unchecked_transaction().map_err(|e| self.err(e))?;
        tx.execute(SQL_WATCH_CLEAR, params![job, period, region])
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
                    w.unit.map(Unit::name),
                    region
                ],
            )
            .map_err(|e| self.err(e))?;
        }
        tx.commit().map_err(|e| self.err(e))
    }

    /// What the run's watch rules found, as the run layer judged them. A row written
    /// before [`WATCH_VALUES`] has no values or unit; its rule's direction was not
    /// kept and reads as a fall (`history` prints no direction).
    pub(super) fn watch_of(
        &self,
        job: &str,
        period: &str,
        region: &str,
    ) -> Result<Vec<WatchResult>, LedgerError> {
        let sql = if self.version >= REGIONS {
            SQL_WATCH_OF
        } else if self.version >= WATCH_VALUES {
            SQL_WATCH_OF_BEFORE_REGIONS
        } else {
            SQL_WATCH_OF_BEFORE_VALUES
        };
        let mut stmt = self.conn.prepare_cached(sql).map_err(|e| self.err(e))?;
        let rows: Vec<(WatchResult, Option<String>)> = stmt
            .query_map(params![job, period, region], |r| {
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

#[cfg(test)]
mod tests {
    use super::*;

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
        l.record_watch("j", period, "", &[quiet.clone(), fired.clone()])
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
}
