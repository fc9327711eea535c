//! The `heartbeat` table: one row per daemon process (host and pid), written by
//! `daemon` at each tick and judged by `cxreport status` (`status`). `ticked_at` is
//! the real time of the latest tick, `clock_at` the daemon's own clock then (a
//! rehearsal clock runs ahead); liveness is judged on the real one.

use chrono::{DateTime, Utc};
use rusqlite::params;

use super::migrate::HEARTBEAT;
use super::{clip, format_time, parse_time, Ledger, LedgerError, MAX_ERROR_BYTES};

const SQL_HEARTBEAT_PUT: &str =
    "INSERT OR REPLACE INTO heartbeat (host, pid, version, started_at, ticked_at, clock_at, stopping_at, stopped_at, last_error)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)";
const SQL_HEARTBEAT_PRUNE: &str =
    "DELETE FROM heartbeat WHERE stopped_at IS NOT NULL OR ticked_at < ?1";
const SQL_HEARTBEATS: &str =
    "SELECT host, pid, version, started_at, ticked_at, clock_at, stopping_at, stopped_at, last_error
     FROM heartbeat ORDER BY ticked_at DESC, started_at DESC";

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

impl Ledger {
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
        if self.version < HEARTBEAT {
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobs::ledger::testing::*;
    use rusqlite::Connection;

    #[test]
    fn heartbeats_round_trip_prune_and_read_from_an_older_ledger() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.sqlite");
        // A ledger written before heartbeats: read-only, there are none.
        Connection::open(&path)
            .unwrap()
            .execute_batch(&crate::jobs::ledger::migrate::tests::historic(&[
                0, 1, 2, 3,
            ]))
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
}
