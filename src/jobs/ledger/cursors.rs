//! The `cursors` table: each job's last handled fire, so the daemon's schedule
//! resumes where it stopped (its catch-up walks back from now to it). Its owner is
//! `daemon`.

use chrono::{DateTime, Utc};
use rusqlite::{params, OptionalExtension};

use super::{format_time, parse_time, Ledger, LedgerError};

const SQL_CURSOR_GET: &str = "SELECT last_fire FROM cursors WHERE job = ?1";
const SQL_CURSOR_PUT: &str = "INSERT OR REPLACE INTO cursors (job, last_fire) VALUES (?1, ?2)";

impl Ledger {
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobs::ledger::testing::*;

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
