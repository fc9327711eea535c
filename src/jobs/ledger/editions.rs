//! The `editions` table: what each region's edition of a bursted job's run was (one
//! row per (job, period, region)): the value as the data spells it, its companies,
//! whether anyone is mailed it (a value found in the data without recipients is
//! written, not mailed) and the error of a region whose run failed. Its owner is
//! `job`; `history` shows it, with each edition's watch results.

use rusqlite::params;

use super::migrate::REGIONS;
use super::{clip, Ledger, LedgerError, MAX_ERROR_BYTES};
use crate::run::watch::WatchResult;

const SQL_EDITION_CLEAR: &str = "DELETE FROM editions WHERE job = ?1 AND period = ?2";
const SQL_EDITION_PUT: &str =
    "INSERT OR REPLACE INTO editions (job, period, region, label, companies, mailed, error)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)";
const SQL_EDITIONS_OF: &str = "SELECT region, label, companies, mailed, error FROM editions
     WHERE job = ?1 AND period = ?2 ORDER BY region";

/// One region's edition of a bursted job's run.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct EditionRecord {
    /// Its key in the deliveries (the value's folder, `cn`).
    pub region: String,
    /// The value as the data spells it (`CN`).
    pub label: String,
    pub companies: usize,
    /// Whether the job mails it to anyone.
    pub mailed: bool,
    /// Why its run failed.
    pub error: Option<String>,
    /// Its watch rules as its run judged them.
    pub watch: Vec<WatchResult>,
}

impl Ledger {
    /// Replaces the editions of the run (its watch results are `record_watch`'s).
    pub fn record_editions(
        &self,
        job: &str,
        period: &str,
        editions: &[EditionRecord],
    ) -> Result<(), LedgerError> {
        let tx = self.conn.unchecked_transaction().map_err(|e| self.err(e))?;
        tx.execute(SQL_EDITION_CLEAR, params![job, period])
            .map_err(|e| self.err(e))?;
        for e in editions {
            tx.execute(
                SQL_EDITION_PUT,
                params![
                    job,
                    period,
                    e.region,
                    e.label,
                    i64::try_from(e.companies).unwrap_or(i64::MAX),
                    i64::from(e.mailed),
                    e.error.as_deref().map(|x| clip(x, MAX_ERROR_BYTES))
                ],
            )
            .map_err(|e| self.err(e))?;
        }
        tx.commit().map_err(|e| self.err(e))
    }

    /// The run's region editions with their watch results; none for a job that is
    /// not bursted, or a ledger older than [`REGIONS`].
    pub fn editions(&self, job: &str, period: &str) -> Result<Vec<EditionRecord>, LedgerError> {
        if self.version < REGIONS {
            return Ok(Vec::new());
        }
        let mut stmt = self
            .conn
            .prepare_cached(SQL_EDITIONS_OF)
            .map_err(|e| self.err(e))?;
        let mut rows: Vec<EditionRecord> = stmt
            .query_map(params![job, period], |r| {
                Ok(EditionRecord {
                    region: r.get(0)?,
                    label: r.get(1)?,
                    companies: usize::try_from(r.get::<_, i64>(2)?).unwrap_or(0),
                    mailed: r.get::<_, i64>(3)? != 0,
                    error: r.get(4)?,
                    watch: Vec::new(),
                })
            })
            .map_err(|e| self.err(e))?
            .collect::<Result<_, _>>()
            .map_err(|e| self.err(e))?;
        for e in &mut rows {
            e.watch = self.watch_of(job, period, &e.region)?;
        }
        Ok(rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_region_edition_comes_back_with_its_own_watch_results() {
        let dir = tempfile::tempdir().unwrap();
        let l = Ledger::open(&dir.path().join("state.sqlite")).unwrap();
        let period = "2024-01-01_2024-06-30";
        l.begin_run("j", period, None, None).unwrap();
        let rule = |fired| WatchResult {
            rule: "r".into(),
            metric: "conv_cnt".into(),
            slice: "overall".into(),
            rise: false,
            threshold: 1.0,
            change: Some(-2.0),
            current: None,
            previous: None,
            unit: None,
            fired,
            note: None,
        };
        l.record_watch("j", period, "cn", &[rule(true)]).unwrap();
        l.record_watch("j", period, "emea", &[rule(false)]).unwrap();
        let cn = EditionRecord {
            region: "cn".into(),
            label: "CN".into(),
            companies: 12,
            mailed: true,
            error: None,
            watch: Vec::new(),
        };
        let latam = EditionRecord {
            region: "latam".into(),
            label: "LATAM".into(),
            companies: 8,
            mailed: false,
            error: Some("the run failed".into()),
            watch: Vec::new(),
        };
        l.record_editions("j", period, &[latam.clone(), cn.clone()])
            .unwrap();
        let got = l.editions("j", period).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!((got[0].label.as_str(), got[0].watch.len()), ("CN", 1));
        assert!(got[0].watch[0].fired);
        assert_eq!(got[1], latam, "no watch results of its own");
        // The unbursted edition's results are another region's ('').
        assert!(l.history(Some("j")).unwrap()[0].watch.is_empty());
        assert_eq!(l.history(Some("j")).unwrap()[0].editions.len(), 2);
    }
}
