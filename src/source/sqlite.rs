//! The SQLite side of the data layer: a file opened read-only, stopped at the run's
//! deadline through SQLite's progress handler, its catalogue asked through
//! `pragma_table_info`, row counts estimated from rowids, and its five storage
//! classes handed to the row reader. Every rusqlite call of the data layer is here.

use std::path::{Path, PathBuf};

use chrono_tz::Tz;
use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags};

use super::backend::{Backend, Param, RowFn, Session, Spelling, TimeColumn};
use super::error::{DataError, DriverError};
use super::row::{Cell, CellError, Cells, RowReader};
use super::timestamp;
use crate::clock::Deadline;

/// Lists the columns a table has (empty when the table does not exist).
const SQL_TABLE_COLUMNS: &str = "SELECT name, type FROM pragma_table_info(?1)";
/// Whether a table or view exists.
/// (SQLite's names are case-insensitive, in queries too: `USAGE_EVENTS` as a
/// warehouse export spells it is `usage_events`.)
const SQL_TABLE_EXISTS: &str = "SELECT count(*) FROM sqlite_master \
     WHERE type IN ('table', 'view') AND name = ?1 COLLATE NOCASE";
/// A table's or view's name as the file spells it.
const SQL_TABLE_NAME: &str = "SELECT name FROM sqlite_master \
     WHERE type IN ('table', 'view') AND name = ?1 COLLATE NOCASE ORDER BY name LIMIT 1";
/// Tables whose name ends in the one looked for (`analytics.intercom__…`, as a schema
/// prefix ends up in a file's table names).
const SQL_TABLE_LIKE: &str = "SELECT name FROM sqlite_master \
     WHERE type IN ('table', 'view') AND lower(name) LIKE '%' || lower(?1) \
       AND name <> ?1 COLLATE NOCASE ORDER BY name LIMIT 3";
/// A first read: a file that is not SQLite only fails there.
const SQL_FIRST_READ: &str = "SELECT count(*) FROM sqlite_master";
/// The largest rowid: a row count estimate that SQLite answers from the end of the
/// table's b-tree, without a scan.
const SQL_MAX_ROWID_PREFIX: &str = "SELECT max(rowid) FROM ";
/// How many virtual machine steps run between two looks at the deadline.
const DEADLINE_STEPS: i32 = 20_000;

impl From<rusqlite::Error> for DriverError {
    fn from(e: rusqlite::Error) -> Self {
        Self::new(e.to_string())
    }
}

/// A SQLite file, open read-only.
pub(crate) struct Sqlite {
    conn: Connection,
    path: PathBuf,
}

impl Sqlite {
    /// Opens `path` read-only and reads from it once, so that a file that is not
    /// SQLite fails here rather than in the first query.
    pub(crate) fn open(path: &Path) -> Result<Self, DriverError> {
        if !path.is_file() {
            return Err(DriverError("no such file".into()));
        }
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.query_row(SQL_FIRST_READ, [], |_| Ok(()))?;
        Ok(Self {
            conn,
            path: path.to_owned(),
        })
    }
}

impl Backend for Sqlite {
    /// The progress handler looks at the deadline every [`DEADLINE_STEPS`] steps, so
    /// a recursive view cannot stall the run; the interrupted query's error becomes
    /// the deadline's ([`Session::query_err`]).
    fn set_deadline(&mut self, deadline: Deadline) {
        self.conn
            .progress_handler(DEADLINE_STEPS, Some(move || deadline.passed()));
    }

    fn has_table(&self, s: &Session, table: &str) -> Result<bool, DataError> {
        let n = self
            .conn
            .query_row(SQL_TABLE_EXISTS, [table], |r| r.get::<_, i64>(0))
            .map_err(|e| s.query_err("sqlite_master", e))?;
        Ok(n > 0)
    }

    fn absent_hint(&self, s: &Session, table: &str) -> Result<Option<String>, DataError> {
        let mut stmt = self
            .conn
            .prepare(SQL_TABLE_LIKE)
            .map_err(|e| s.query_err("sqlite_master", e))?;
        let like: Vec<String> = stmt
            .query_map([table], |r| r.get::<_, String>(0))
            .and_then(|rows| rows.collect())
            .map_err(|e| s.query_err("sqlite_master", e))?;
        Ok((!like.is_empty()).then(|| {
            let names: Vec<String> = like.iter().map(|n| format!("`{n}`")).collect();
            format!(
                "the file has {}: cxreport reads the table by its own name; rename it \
                 (ALTER TABLE \"{}\" RENAME TO {table}) or add a view of that name",
                names.join(", "),
                like[0]
            )
        }))
    }

    fn spelling(&self, s: &Session, table: &'static str) -> Result<Option<Spelling>, DataError> {
        use rusqlite::OptionalExtension;
        let name = self
            .conn
            .query_row(SQL_TABLE_NAME, [table], |r| r.get::<_, String>(0))
            .optional()
            .map_err(|e| s.query_err("sqlite_master", e))?;
        let Some(name) = name else { return Ok(None) };
        let columns: Vec<String> = self.columns(s, table)?.into_iter().map(|c| c.0).collect();
        Ok(Spelling::of(table, name, &columns))
    }

    fn columns(
        &self,
        s: &Session,
        table: &'static str,
    ) -> Result<Vec<(String, String)>, DataError> {
        let mut stmt = self
            .conn
            .prepare(SQL_TABLE_COLUMNS)
            .map_err(|e| s.query_err(table, e))?;
        let rows = stmt
            .query_map([table], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
            })
            .map_err(|e| s.query_err(table, e))?;
        rows.collect::<Result<_, _>>()
            .map_err(|e| s.query_err(table, e))
    }

    /// Text always: any SQLite column may hold any form, so times are parsed here.
    fn time_column(&self, _: &Session, _: &'static str, _: &str) -> Result<TimeColumn, DataError> {
        Ok(TimeColumn::Text)
    }

    /// SQLite keeps no statistics the planner could lend.
    fn column_stats(&self, _: &Session, _: &'static str, _: &str) -> Option<(f64, f64)> {
        None
    }

    /// The largest rowid (0 for a view, a table without rowid or a missing table),
    /// capped at one row per 32 bytes of file: rowids can be sparse, and a huge one
    /// must not reserve far more memory than the data could fill (a hint too low only
    /// means the vector grows).
    fn rows_hint(&self, _: &Session, table: &'static str) -> usize {
        // Table names cannot be bound; `table` is one of the callers' constants.
        let sql = format!("{SQL_MAX_ROWID_PREFIX}\"{table}\"");
        let most = std::fs::metadata(&self.path).map_or(0, |m| m.len() / 32);
        self.conn
            .query_row(&sql, [], |r| r.get::<_, Option<i64>>(0))
            .ok()
            .flatten()
            .map_or(0, |n| n.clamp(0, most as i64) as usize)
    }

    fn each_row(
        &self,
        s: &Session,
        table: &'static str,
        sql: &str,
        params: &[Param],
        f: &mut RowFn<'_>,
    ) -> Result<u64, DataError> {
        let mut stmt = self.conn.prepare(sql).map_err(|e| s.query_err(table, e))?;
        let bound: Vec<rusqlite::types::Value> = params
            .iter()
            .map(|p| match p {
                Param::Zoned(t) => timestamp::format_utc(*t).into(),
                Param::Naive(t) => t.format("%Y-%m-%d %H:%M:%S").to_string().into(),
                Param::Text(s) => s.clone().into(),
            })
            .collect();
        let mut rows = stmt
            .query(rusqlite::params_from_iter(bound))
            .map_err(|e| s.query_err(table, e))?;
        let mut n = 0u64;
        while let Some(row) = rows.next().map_err(|e| s.query_err(table, e))? {
            n += 1;
            f(&mut RowReader::new(row, table, &s.name, n))?;
        }
        Ok(n)
    }

    /// Bytes are those of the text values (a file sends nothing over a wire).
    fn scan(&self, s: &Session, table: &'static str, sql: &str) -> Result<(u64, u64), DataError> {
        let (mut rows, mut bytes) = (0u64, 0u64);
        let mut stmt = self.conn.prepare(sql).map_err(|e| s.query_err(table, e))?;
        let n = stmt.column_count();
        let mut it = stmt.query([]).map_err(|e| s.query_err(table, e))?;
        while let Some(row) = it.next().map_err(|e| s.query_err(table, e))? {
            rows += 1;
            for i in 0..n {
                if let Ok(ValueRef::Text(t)) = row.get_ref(i) {
                    bytes += t.len() as u64;
                }
            }
        }
        Ok((rows, bytes))
    }
}

impl Cells for rusqlite::Row<'_> {
    /// SQLite's storage classes; a blob is named by its type, never read as text.
    fn cell(&self, i: usize, _: Tz) -> Result<Cell<'_>, CellError> {
        Ok(
            match self.get_ref(i).map_err(|e| CellError::Driver(e.into()))? {
                ValueRef::Null => Cell::Null,
                ValueRef::Integer(v) => Cell::Int(v),
                ValueRef::Real(v) => Cell::Real(v),
                ValueRef::Text(t) => Cell::Text(t),
                ValueRef::Blob(_) => Cell::Other("blob"),
            },
        )
    }

    fn width(&self) -> usize {
        self.as_ref().column_count()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::source::timestamp::{BadTimestamps, TsParser};

    /// A file made by `sql`, opened through the interface, with its session.
    fn sqlite_with(sql: &str) -> (tempfile::TempDir, Sqlite, Session) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.sqlite");
        Connection::open(&path).unwrap().execute_batch(sql).unwrap();
        let db = Sqlite::open(&path).unwrap();
        let session = Session {
            name: path.display().to_string(),
            deadline: None,
            transfer: Arc::default(),
        };
        (dir, db, session)
    }

    #[test]
    fn a_table_its_columns_and_how_it_holds_times() {
        let (_d, db, s) = sqlite_with(
            "CREATE TABLE events (id TEXT, Size REAL, occurred_at TIMESTAMP);
             CREATE VIEW recent AS SELECT id FROM events;",
        );
        assert!(db.has_table(&s, "events").unwrap());
        assert!(
            db.has_table(&s, "recent").unwrap(),
            "a view is a table here"
        );
        assert!(!db.has_table(&s, "missing").unwrap());
        assert_eq!(
            db.columns(&s, "events").unwrap(),
            [
                ("id".to_owned(), "TEXT".to_owned()),
                ("Size".to_owned(), "REAL".to_owned()),
                ("occurred_at".to_owned(), "TIMESTAMP".to_owned())
            ]
        );
        assert!(db.columns(&s, "missing").unwrap().is_empty());
        // Declared TIMESTAMP or not, SQLite may hold any form: the readers parse.
        assert_eq!(
            db.time_column(&s, "events", "occurred_at").unwrap(),
            TimeColumn::Text
        );
        assert_eq!(db.column_stats(&s, "events", "id"), None);
    }

    #[test]
    fn names_as_warehouse_exports_spell_them() {
        let (_d, db, s) = sqlite_with(
            "CREATE TABLE USAGE_EVENTS (COMPANY_ID TEXT, IS_CORE TEXT);
             INSERT INTO USAGE_EVENTS VALUES ('a', 'true'), ('b', 'F'), ('c', ''), ('d', 'yes'),
                 ('e', 'maybe');
             CREATE TABLE \"analytics.intercom__company_enhanced\" (company_id TEXT);",
        );
        // Any case: SQLite's names are case-insensitive, in the queries as well.
        assert!(db.has_table(&s, "usage_events").unwrap());
        assert_eq!(db.absent_hint(&s, "usage_events").unwrap(), None);
        // A schema prefix in the table's name: found, and named in the hint.
        assert!(!db.has_table(&s, "intercom__company_enhanced").unwrap());
        let hint = db
            .absent_hint(&s, "intercom__company_enhanced")
            .unwrap()
            .expect("a hint");
        assert!(
            hint.contains("`analytics.intercom__company_enhanced`") && hint.contains("RENAME TO"),
            "{hint}"
        );
        assert_eq!(
            db.absent_hint(&s, "intercom__contact_enhanced").unwrap(),
            None
        );
        // Text flags as warehouses write them.
        let mut flags = Vec::new();
        let e = db
            .each_row(
                &s,
                "usage_events",
                "SELECT company_id, is_core FROM usage_events ORDER BY company_id",
                &[],
                &mut |r| {
                    flags.push(r.boolean(1, "is_core")?);
                    Ok(())
                },
            )
            .unwrap_err();
        assert_eq!(flags, [Some(true), Some(false), None, Some(true)]);
        let e = e.to_string();
        assert!(
            e.contains("is_core") && e.contains("\"maybe\"") && e.contains("t/f"),
            "{e}"
        );
    }

    #[test]
    fn rows_are_read_typed_with_bound_values_and_bad_times_counted() {
        let (_d, db, s) = sqlite_with(
            "CREATE TABLE events (id TEXT, n, at TEXT);
             INSERT INTO events VALUES ('a', 1, '2024-06-01 10:00:00'), ('b', '2.5', 'garbage'),
                 ('c', NULL, NULL), ('d', 'lots', '2024-06-02');",
        );
        let mut bad = BadTimestamps::default();
        let mut ts = TsParser {
            tz: Tz::UTC,
            bad: &mut bad,
        };
        let mut seen = Vec::new();
        let n = db
            .each_row(
                &s,
                "events",
                "SELECT id, n, at FROM events WHERE id < $1 ORDER BY id",
                &[Param::Text("d".into())],
                &mut |r| {
                    seen.push((r.text(0, "id")?, r.real(1, "n")?, r.time(2, "at", &mut ts)?));
                    Ok(())
                },
            )
            .unwrap();
        assert_eq!(n, 3);
        let at = timestamp::parse("2024-06-01 10:00:00", Tz::UTC).unwrap();
        assert_eq!(
            seen,
            [
                (Some("a".to_owned()), Some(1.0), Some(at)),
                (Some("b".to_owned()), Some(2.5), None),
                (Some("c".to_owned()), None, None),
            ]
        );
        assert_eq!(bad.0.get("events.at"), Some(&1), "{bad:?}");
        assert_eq!(bad.total(), 1, "a NULL is no bad value");

        let e = db
            .each_row(
                &s,
                "events",
                "SELECT n FROM events ORDER BY id",
                &[],
                &mut |r| r.real(0, "n").map(drop),
            )
            .unwrap_err();
        assert!(
            matches!(&e, DataError::BadValue { column: "n", row, .. } if row == "#4"),
            "{e}"
        );
        assert_eq!(
            db.scan(&s, "events", "SELECT id FROM events").unwrap(),
            (4, 4),
            "four rows of one byte of text each"
        );
        assert_eq!(s.transfer.get(), (0, 0), "a file counts no transfer");
    }

    #[test]
    fn not_a_database_cannot_be_opened() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.sqlite");
        std::fs::write(
            &path,
            b"this is not sqlite at all, just some text padding it out",
        )
        .unwrap();
        assert!(Sqlite::open(&path).is_err());
        assert_eq!(
            Sqlite::open(&dir.path().join("missing.sqlite")).err(),
            Some(DriverError("no such file".into()))
        );
    }

    #[test]
    fn row_hints_follow_rowids_and_stay_within_the_file() {
        let (_d, db, s) = sqlite_with(
            "CREATE TABLE things (id TEXT);
             INSERT INTO things VALUES ('a'), ('b'), ('c');
             CREATE TABLE sparse (id TEXT);
             INSERT INTO sparse (rowid, id) VALUES (1000000000000, 'x');",
        );
        assert_eq!(db.rows_hint(&s, "things"), 3);
        let file = std::fs::metadata(&db.path).unwrap().len() as usize;
        assert_eq!(db.rows_hint(&s, "sparse"), file / 32);
        assert_eq!(db.rows_hint(&s, "missing"), 0, "no such table");
    }

    #[test]
    fn a_query_past_the_run_deadline_stops_with_a_clear_error() {
        // A recursive view that never ends on its own.
        let (_dir, mut db, mut s) = sqlite_with(
            "CREATE VIEW forever AS WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) SELECT i FROM n;",
        );
        let deadline = Deadline::after(std::time::Duration::from_millis(200));
        db.set_deadline(deadline);
        s.deadline = Some(deadline);
        let started = std::time::Instant::now();
        let e = db
            .each_row(
                &s,
                "forever",
                "SELECT count(*) FROM forever",
                &[],
                &mut |_| Ok(()),
            )
            .unwrap_err();
        assert!(started.elapsed() < std::time::Duration::from_secs(10));
        assert!(
            matches!(
                e,
                DataError::Deadline {
                    table: "forever",
                    ..
                }
            ),
            "{e}"
        );
        assert!(e.to_string().contains("run_timeout_secs"), "{e}");
    }
}
