//! Reading tables where they are: a SQLite file or a PostgreSQL database
//! ([`Location`]), read-only, through one [`Database`] whatever the driver. Each
//! driver implements one interface (`backend`: open, deadline, catalogue, time
//! columns, statistics, rows, transfer counts) in its own file (`sqlite`, `pg`), and
//! `Database` asks it without knowing which one it holds. Checks that every table and
//! column a caller needs is there before any work starts, and hands rows out through
//! one typed reader (`row`) whose errors (`error`) name the database, table, column
//! and row; native time columns let callers put a window into SQL (`time_bounds`).
//! Timestamps (`timestamp`) and compact string storage (`interner`) live beside it,
//! and the sampling of values the readers cannot read (`sample`, for `check`).
//! This layer knows no report and no data contract: callers bring their SQL and
//! table names.

mod backend;
mod error;
pub mod interner;
mod kept;
pub mod pg;
mod row;
mod sample;
mod sqlite;
pub mod timestamp;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use self::backend::{Backend, Session, Transfer};
pub use self::backend::{Param, Spelling, TimeColumn};
pub use self::error::{quote, DataError, DriverError, Missing, UrlError};
pub use self::pg::PgLocation;
pub use self::row::RowReader;
pub use self::sample::{Column, Expect, MappedName, Sampled, Unreadable, SAMPLES};
pub use self::timestamp::{BadTimestamps, TsParser};
use crate::clock::Deadline;

/// Where the tables are: a SQLite file or a PostgreSQL database.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Location {
    Sqlite(PathBuf),
    Postgres(PgLocation),
}

impl Location {
    /// A `postgresql://` URL or a SQLite path (relative paths are relative to `base`);
    /// `password_env` names the variable holding a PostgreSQL password.
    pub fn parse(
        s: &str,
        base: Option<&Path>,
        password_env: Option<&str>,
    ) -> Result<Self, UrlError> {
        if PgLocation::is_url(s) {
            return PgLocation::parse(s, password_env).map(Self::Postgres);
        }
        let p = Path::new(s);
        Ok(Self::Sqlite(match base {
            Some(b) if p.is_relative() => b.join(p),
            _ => p.to_owned(),
        }))
    }

    /// The SQLite file, when it is one.
    pub fn file(&self) -> Option<&Path> {
        match self {
            Self::Sqlite(p) => Some(p),
            Self::Postgres(_) => None,
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Sqlite(p) => write!(f, "{}", p.display()),
            Self::Postgres(l) => l.fmt(f),
        }
    }
}

impl From<PathBuf> for Location {
    fn from(p: PathBuf) -> Self {
        Self::Sqlite(p)
    }
}

/// A table a report reads and the columns it needs from it.
#[derive(Debug, Clone, Copy)]
pub struct TableNeed {
    pub table: &'static str,
    pub columns: &'static [&'static str],
}

/// An open, read-only database.
pub struct Database {
    backend: Box<dyn Backend>,
    location: Location,
    session: Session,
    /// The rows read so far, replayed to a query read before
    /// ([`Database::keep_reads`]); `None`: every query reads the database.
    kept: Option<Arc<kept::Kept>>,
}

impl Database {
    /// Opens `location` with no run time limit (a server gets
    /// [`pg::DEFAULT_CONNECT_LIMIT`] to answer).
    pub fn open(location: &Location) -> Result<Self, DataError> {
        Self::open_within(location, None)
    }

    /// Opens `location` for a run that stops at `deadline`: connecting to a server
    /// waits no longer than the deadline, and every query after it is stopped there
    /// ([`Database::set_deadline`]).
    pub fn open_within(location: &Location, deadline: Option<Deadline>) -> Result<Self, DataError> {
        Self::open_counting(location, Arc::default(), deadline)
    }

    /// The one place that knows which driver a location needs.
    fn open_counting(
        location: &Location,
        transfer: Arc<Transfer>,
        deadline: Option<Deadline>,
    ) -> Result<Self, DataError> {
        let name = location.to_string();
        let backend: Result<Box<dyn Backend>, DriverError> = match location {
            Location::Sqlite(path) => {
                sqlite::Sqlite::open(path).map(|b| Box::new(b) as Box<dyn Backend>)
            }
            Location::Postgres(at) => {
                pg::Postgres::open(at, deadline).map(|b| Box::new(b) as Box<dyn Backend>)
            }
        };
        let backend = backend.map_err(|cause| DataError::Open {
            db: name.clone(),
            cause,
        })?;
        let mut db = Self {
            backend,
            location: location.clone(),
            session: Session {
                name,
                deadline: None,
                transfer,
            },
            kept: None,
        };
        if let Some(d) = deadline {
            db.set_deadline(d)?;
        }
        Ok(db)
    }

    /// A second connection to the same database (a loader on another thread).
    pub fn reopen(&self) -> Result<Self, DataError> {
        let mut db = Self::open_counting(
            &self.location,
            Arc::clone(&self.session.transfer),
            self.session.deadline,
        )?;
        db.kept = self.kept.clone();
        Ok(db)
    }

    /// From now on every query's rows are kept in memory as they are read, and the
    /// same query (SQL and bound values) again reads them from there, not from the
    /// database (by this connection and those [`Database::reopen`] makes): the
    /// editions of a burst, and a scoped edition's company-wide benchmark, load
    /// their rows from one read of each table. `source_tz` is the timezone the
    /// readers place times without a zone in.
    pub fn keep_reads(&mut self, source_tz: Tz) {
        if self.kept.as_ref().is_none_or(|k| k.tz() != source_tz) {
            self.kept = Some(Arc::new(kept::Kept::new(source_tz)));
        }
    }

    /// Whether queries read rows kept in memory ([`Database::keep_reads`]).
    pub fn keeps_reads(&self) -> bool {
        self.kept.is_some()
    }

    /// Stops every later query past `deadline`: SQLite through its progress handler
    /// (a recursive view cannot stall the run), a server through `statement_timeout`,
    /// set before each statement to the time left.
    pub fn set_deadline(&mut self, deadline: Deadline) -> Result<(), DataError> {
        self.backend.set_deadline(deadline);
        self.session.deadline = Some(deadline);
        Ok(())
    }

    pub fn location(&self) -> &Location {
        &self.location
    }

    /// The database as messages name it (a path, or a URL without a password).
    pub fn name(&self) -> &str {
        &self.session.name
    }

    /// Rows and bytes received from the server so far, by this connection and those
    /// [`Database::reopen`] made (0 for a SQLite file).
    pub fn transfer(&self) -> (u64, u64) {
        self.session.transfer.get()
    }

    /// The rows each table's queries returned so far (the anchor's and a count's
    /// one row included), by this connection and those [`Database::reopen`] made, in
    /// the order first read: a table loaded twice shows twice its rows.
    pub fn rows_returned(&self) -> Vec<(&'static str, u64)> {
        self.session.transfer.tables()
    }

    /// How the session to a server is protected: TLS or not, and what of the
    /// server's certificate was checked (none for a SQLite file).
    pub fn link(&self) -> Option<pg::Link> {
        self.backend.link()
    }

    pub fn has_table(&self, table: &str) -> Result<bool, DataError> {
        self.backend.has_table(&self.session, table)
    }

    /// For a table [`Database::has_table`] does not find: where the database has one
    /// like it (another schema, another case, a prefixed name) and what to set.
    pub fn absent_hint(&self, table: &str) -> Result<Option<String>, DataError> {
        self.backend.absent_hint(&self.session, table)
    }

    /// How the database spells `table` and its columns when not all in lower case:
    /// they are read all the same (names are matched in any case on both backends).
    pub fn spelling(&self, table: &'static str) -> Result<Option<Spelling>, DataError> {
        self.backend.spelling(&self.session, table)
    }

    /// The columns of a table with their declared types, lower-cased (empty when the
    /// table does not exist).
    pub fn columns(&self, table: &'static str) -> Result<Vec<(String, String)>, DataError> {
        Ok(self
            .backend
            .columns(&self.session, table)?
            .into_iter()
            .map(|(n, t)| (n.to_lowercase(), t.to_lowercase()))
            .collect())
    }

    /// How `table.column` holds times; text for SQLite (any column may hold any
    /// form) and for anything that is not a native timestamp.
    pub fn time_column(&self, table: &'static str, column: &str) -> Result<TimeColumn, DataError> {
        self.backend.time_column(&self.session, table, column)
    }

    /// `[start, end]` as bound values for `BETWEEN $1 AND $2` on `table.column`, when
    /// the database can compare that column's times itself (a native timestamp);
    /// `None` when the rows must be read and their times parsed here.
    pub fn time_bounds(
        &self,
        table: &'static str,
        column: &str,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
        source_tz: Tz,
    ) -> Result<Option<[Param; 2]>, DataError> {
        Ok(match self.time_column(table, column)? {
            TimeColumn::Text => None,
            kind => Some([
                Param::time(start, kind, source_tz),
                Param::time(end, kind, source_tz),
            ]),
        })
    }

    /// About how many rows `table` has and how many distinct values `column` takes,
    /// from a server's statistics (no scan); `None` for a file, or when the server
    /// has no statistics yet.
    pub fn column_stats(&self, table: &'static str, column: &str) -> Option<(f64, f64)> {
        self.backend.column_stats(&self.session, table, column)
    }

    /// Checks every need at once, so the user sees every problem in one message.
    pub fn check(&self, report: &str, needs: &[TableNeed]) -> Result<(), DataError> {
        let mut missing = Vec::new();
        for need in needs {
            let have = if self.has_table(need.table)? {
                self.columns(need.table)?
            } else {
                Vec::new()
            };
            if have.is_empty() {
                missing.push(Missing {
                    table: need.table.to_owned(),
                    column: None,
                    hint: self.backend.absent_hint(&self.session, need.table)?,
                });
                continue;
            }
            for col in need.columns {
                if !have.iter().any(|(h, _)| h.eq_ignore_ascii_case(col)) {
                    missing.push(Missing {
                        table: need.table.to_owned(),
                        column: Some((*col).to_owned()),
                        hint: None,
                    });
                }
            }
        }
        if missing.is_empty() {
            Ok(())
        } else {
            Err(DataError::Schema {
                db: self.session.name.clone(),
                report: report.to_owned(),
                missing,
            })
        }
    }

    /// About how many rows a table holds, to size the row vectors once instead of
    /// growing (and copying) them; 0 when unknown (a view, a table without rowid, a
    /// server: there the window decides how many rows come, not the table).
    pub fn rows_hint(&self, table: &'static str) -> usize {
        self.backend.rows_hint(&self.session, table)
    }

    /// A failed read of `table`, named as every other; past the run's deadline, the
    /// deadline.
    pub fn query_err(&self, table: &'static str, cause: impl Into<DriverError>) -> DataError {
        self.session.query_err(table, cause)
    }

    /// Runs `sql` and hands every row to `f` through a typed reader; returns how many
    /// rows were read.
    pub fn each_row(
        &self,
        table: &'static str,
        sql: &str,
        f: impl FnMut(&mut RowReader<'_>) -> Result<(), DataError>,
    ) -> Result<u64, DataError> {
        self.each_row_with(table, sql, &[], f)
    }

    /// [`Database::each_row`] with bound parameters.
    pub fn each_row_with(
        &self,
        table: &'static str,
        sql: &str,
        params: &[Param],
        mut f: impl FnMut(&mut RowReader<'_>) -> Result<(), DataError>,
    ) -> Result<u64, DataError> {
        let Some(kept) = &self.kept else {
            let n = self
                .backend
                .each_row(&self.session, table, sql, params, &mut f)?;
            self.session.transfer.table(table, n);
            return Ok(n);
        };
        let key = kept::Kept::key(sql, params);
        if let Some(rows) = kept.get(&key) {
            return kept::Kept::replay(&rows, table, &self.session.name, &mut f);
        }
        let (tz, mut rows) = (kept.tz(), Vec::with_capacity(self.rows_hint(table)));
        let n = self.backend.each_row(
            &self.session,
            table,
            sql,
            params,
            &mut |r: &mut RowReader<'_>| {
                rows.push(r.keep(tz));
                f(r)
            },
        )?;
        self.session.transfer.table(table, n);
        kept.put(key, rows);
        Ok(n)
    }

    /// Reads every row of `sql`, touching each value and keeping nothing: the floor
    /// the benchmark compares loading against. From a server, the rows of
    /// `COPY (sql) TO STDOUT` (the cheapest way to receive them). Returns (rows,
    /// bytes: of text in a file, on the wire from a server).
    pub fn scan(&self, table: &'static str, sql: &str) -> Result<(u64, u64), DataError> {
        self.backend.scan(&self.session, table, sql)
    }
}

/// The rows a loader read, per table, in the order it read them (the appendix and the
/// manifest print these: nothing is counted twice).
pub type RowsRead = Vec<(&'static str, u64)>;

/// The latest time of a column that is not after the reference time.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Latest {
    pub at: Option<DateTime<Utc>>,
    /// Values after the reference time, left out.
    pub after: u64,
    /// The first and last readable value, the reference time aside: what an error
    /// says the data covers when the reference time lies outside it.
    pub span: Option<(DateTime<Utc>, DateTime<Utc>)>,
}

impl Database {
    /// The latest time in `column` at or before `not_after` (the run's reference
    /// time), and how many values lie after it: a far-future timestamp must not fix
    /// the period forever. `all_sql` reads the column (text times are parsed here);
    /// `native_sql` answers both at the server, with `not_after` bound to `$1`, then
    /// the column's min and max (the [`Latest::span`]).
    pub fn latest_time(
        &self,
        table: &'static str,
        column: &'static str,
        all_sql: &str,
        native_sql: &str,
        tz: Tz,
        not_after: DateTime<Utc>,
    ) -> Result<Latest, DataError> {
        let mut out = Latest::default();
        let mut bad = BadTimestamps::default();
        let mut ts = TsParser { tz, bad: &mut bad };
        match self.time_column(table, column)? {
            TimeColumn::Text => {
                self.each_row(table, all_sql, |r| {
                    let t = r.time(0, column, &mut ts)?;
                    if let Some(t) = t {
                        out.span = Some(out.span.map_or((t, t), |(a, b)| (a.min(t), b.max(t))));
                    }
                    match t {
                        Some(t) if t > not_after => out.after += 1,
                        Some(t) => out.at = Some(out.at.map_or(t, |m| m.max(t))),
                        None => {}
                    }
                    Ok(())
                })?;
            }
            kind => {
                let bound = [Param::time(not_after, kind, tz)];
                self.each_row_with(table, native_sql, &bound, |r| {
                    out.at = r.time(0, column, &mut ts)?;
                    out.after = r.integer(1, column)?.unwrap_or(0).max(0) as u64;
                    out.span = r.time(2, column, &mut ts)?.zip(r.time(3, column, &mut ts)?);
                    Ok(())
                })?;
            }
        }
        Ok(out)
    }
}

/// A database made by `sql` in a temporary folder, for unit tests of the readers.
#[cfg(test)]
pub(crate) fn db_with(sql: &str) -> (tempfile::TempDir, Database) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.sqlite");
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute_batch(sql)
        .unwrap();
    let db = Database::open(&Location::Sqlite(path)).unwrap();
    (dir, db)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NEEDS: &[TableNeed] = &[
        TableNeed {
            table: "things",
            columns: &["id", "size", "colour"],
        },
        TableNeed {
            table: "places",
            columns: &["id"],
        },
        TableNeed {
            table: "kinds",
            columns: &["id"],
        },
    ];

    #[test]
    fn schema_check_lists_every_missing_table_and_column() {
        let (_d, db) = db_with(
            "CREATE TABLE things (id TEXT, SIZE REAL);
             CREATE TABLE kinds (id TEXT);",
        );
        let msg = db.check("some-report", NEEDS).unwrap_err().to_string();
        assert!(msg.contains("report `some-report`"), "{msg}");
        assert!(
            msg.contains("table `things` has no column `colour`"),
            "{msg}"
        );
        assert!(!msg.contains("no column `size`"), "case-insensitive: {msg}");
        assert!(msg.contains("table `places` does not exist"), "{msg}");
        assert!(!msg.contains("kinds"), "{msg}");
    }

    #[test]
    fn a_bad_value_names_table_column_row_and_value() {
        let (_d, db) = db_with(
            "CREATE TABLE things (id TEXT, size);
             INSERT INTO things VALUES ('a', '12.5'), ('b', 'lots');",
        );
        let mut sizes = Vec::new();
        let err = db
            .each_row("things", "SELECT id, size FROM things", |r| {
                sizes.push(r.real(1, "size")?);
                Ok(())
            })
            .unwrap_err();
        assert_eq!(sizes, [Some(12.5)]);
        let msg = err.to_string();
        assert!(msg.contains("things.size"), "{msg}");
        assert!(msg.contains("row #2"), "{msg}");
        assert!(msg.contains("\"lots\""), "{msg}");
    }

    #[test]
    fn a_huge_bad_value_is_quoted_in_part_with_its_length() {
        let (_d, db) = db_with(
            "CREATE TABLE things (id TEXT, size, label);
             INSERT INTO things VALUES ('a', 'x' || hex(zeroblob(500000)), NULL);
             -- `||` makes text: text that is not UTF-8.
             INSERT INTO things VALUES ('b', NULL, x'ff' || zeroblob(300000));
             INSERT INTO things VALUES ('c', NULL, zeroblob(300000));",
        );
        let mut errors = Vec::new();
        db.each_row("things", "SELECT id, size, label FROM things", |r| {
            errors.extend(r.real(1, "size").err());
            errors.extend(r.text(2, "label").err());
            Ok(())
        })
        .unwrap();
        let msg = errors[0].to_string();
        assert!(msg.len() < 400, "{} bytes: {}", msg.len(), &msg[..400]);
        assert!(msg.contains("things.size"), "{msg}");
        assert!(msg.contains("found \"x0000"), "{msg}");
        assert!(msg.ends_with("… (1000001 bytes)"), "{msg}");
        let msg = errors[1].to_string();
        assert!(msg.len() < 1000, "{} bytes", msg.len());
        assert!(msg.contains("expected UTF-8 text"), "{msg}");
        assert!(msg.ends_with("… (300001 bytes)"), "{msg}");
        // A blob is named by its type, not quoted.
        assert!(
            errors[2].to_string().ends_with("found \"a blob value\""),
            "{}",
            errors[2]
        );
    }

    #[test]
    fn a_database_that_cannot_be_opened_is_an_open_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.sqlite");
        std::fs::write(
            &path,
            b"this is not sqlite at all, just some text padding it out",
        )
        .unwrap();
        let e = Database::open(&path.clone().into()).err().unwrap();
        assert!(
            matches!(&e, DataError::Open { db, .. } if *db == path.display().to_string()),
            "{e}"
        );
        assert!(matches!(
            Database::open(&dir.path().join("missing.sqlite").into()),
            Err(DataError::Open { .. })
        ));
    }

    #[test]
    fn kept_reads_replay_every_cell_and_count_one_read() {
        let (_d, mut db) = db_with(
            "CREATE TABLE things (id TEXT, size, at TEXT, b BLOB);
             INSERT INTO things VALUES ('a', 1.5, '2024-01-02 03:04:05', NULL),
                 ('b', 7, 'garbage', x'00'), (NULL, 'lots', NULL, NULL);",
        );
        db.keep_reads(Tz::UTC);
        assert!(db.keeps_reads());
        let read = |db: &Database| {
            let mut bad = BadTimestamps::default();
            let mut ts = TsParser {
                tz: Tz::UTC,
                bad: &mut bad,
            };
            let mut seen = Vec::new();
            db.each_row("things", "SELECT id, size, at, b FROM things", |r| {
                seen.push((
                    r.text(0, "id")?,
                    r.time(2, "at", &mut ts)?,
                    r.text(3, "b").map_err(|e| e.to_string()),
                    r.real(1, "size").map_err(|e| e.to_string()),
                ));
                Ok(())
            })
            .unwrap();
            (seen, bad.0.get("things.at").copied())
        };
        let first = read(&db);
        assert!(
            matches!(&first.0[2].3, Err(e) if e.contains("row #3")),
            "{first:?}"
        );
        assert_eq!(first.1, Some(1));
        assert_eq!(db.rows_returned(), [("things", 3)]);
        let again = db.reopen().unwrap();
        assert_eq!(read(&again), first, "a replay reads what the database gave");
        assert_eq!(read(&db), first);
        assert_eq!(
            db.rows_returned(),
            [("things", 3)],
            "a replay reads nothing"
        );
        // Another query reads the database; a read stopped by an error keeps nothing.
        let stop = |db: &Database| {
            db.each_row("things", "SELECT size FROM things", |r| {
                r.real(0, "size").map(|_| ())
            })
        };
        assert!(stop(&db).is_err());
        assert!(stop(&db).is_err());
        let n = db
            .each_row("things", "SELECT id FROM things", |_| Ok(()))
            .unwrap();
        assert_eq!(n, 3);
        assert_eq!(db.rows_returned(), [("things", 6)]);
    }

    #[test]
    fn the_latest_time_leaves_out_what_is_after_the_reference() {
        let (_dir, db) = db_with(
            "CREATE TABLE events (event_time TEXT);
             INSERT INTO events VALUES ('2024-06-01 10:00:00'), ('2024-06-30 09:00:00'),
                 ('2099-01-01 00:00:00'), ('garbage'), (NULL);",
        );
        let reference = timestamp::parse("2024-07-01 00:00:00", Tz::UTC).unwrap();
        let latest = db
            .latest_time(
                "events",
                "event_time",
                "SELECT event_time FROM events",
                "unused",
                Tz::UTC,
                reference,
            )
            .unwrap();
        assert_eq!(
            latest.at,
            Some(timestamp::parse("2024-06-30 09:00:00", Tz::UTC).unwrap())
        );
        assert_eq!(latest.after, 1);
        assert_eq!(
            latest.span,
            Some((
                timestamp::parse("2024-06-01 10:00:00", Tz::UTC).unwrap(),
                timestamp::parse("2099-01-01 00:00:00", Tz::UTC).unwrap()
            ))
        );
    }
}
