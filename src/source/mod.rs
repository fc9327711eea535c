//! Reading tables: opens the user's SQLite file read-only, checks that every table and
//! column a caller needs is there before any work starts, and hands rows out through a
//! typed reader whose errors name the file, table, column and row. Timestamps
//! (`timestamp`) and compact string storage (`interner`) live beside it. This layer
//! knows no report and no data contract: callers bring their SQL and table names.

pub mod interner;
pub mod timestamp;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags};
use serde::Serialize;

/// Lists the columns a table has (empty when the table does not exist).
const SQL_TABLE_COLUMNS: &str = "SELECT name FROM pragma_table_info(?1)";
/// Whether a table or view exists.
const SQL_TABLE_EXISTS: &str =
    "SELECT count(*) FROM sqlite_master WHERE type IN ('table', 'view') AND name = ?1";
/// The largest rowid: a row count estimate that SQLite answers from the end of the
/// table's b-tree, without a scan.
const SQL_MAX_ROWID_PREFIX: &str = "SELECT max(rowid) FROM ";

/// Errors of the data layer. Each names the file, table and column involved.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("cannot open database {path}: {source}")]
    Open {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("database {path} is missing what report `{report}` needs:\n{}", list_missing(.missing))]
    Schema {
        path: PathBuf,
        report: String,
        missing: Vec<Missing>,
    },
    #[error("reading {table} in {path}: {source}")]
    Query {
        path: PathBuf,
        table: &'static str,
        source: rusqlite::Error,
    },
    #[error("{table}.{column} in {path}, row {row}: expected {expected}, found {found:?}")]
    BadValue {
        path: PathBuf,
        table: &'static str,
        column: &'static str,
        row: String,
        expected: &'static str,
        found: String,
    },
}

/// One missing table or column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Missing {
    pub table: String,
    /// `None` when the whole table is missing.
    pub column: Option<String>,
}

impl fmt::Display for Missing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.column {
            None => write!(f, "  - table `{}` does not exist", self.table),
            Some(c) => write!(f, "  - table `{}` has no column `{}`", self.table, c),
        }
    }
}

fn list_missing(m: &[Missing]) -> String {
    m.iter()
        .map(|m| m.to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

/// A table a report reads and the columns it needs from it.
#[derive(Debug, Clone, Copy)]
pub struct TableNeed {
    pub table: &'static str,
    pub columns: &'static [&'static str],
}

/// An open, read-only database.
pub struct Database {
    conn: Connection,
    path: PathBuf,
}

impl Database {
    pub fn open(path: &Path) -> Result<Self, DataError> {
        if !path.is_file() {
            return Err(DataError::Open {
                path: path.to_owned(),
                source: rusqlite::Error::InvalidPath(path.to_owned()),
            });
        }
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|source| DataError::Open {
            path: path.to_owned(),
            source,
        })?;
        // A file that is not SQLite only fails on the first read: read now.
        conn.query_row("SELECT count(*) FROM sqlite_master", [], |_| Ok(()))
            .map_err(|source| DataError::Open {
                path: path.to_owned(),
                source,
            })?;
        Ok(Self {
            conn,
            path: path.to_owned(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn has_table(&self, table: &str) -> Result<bool, DataError> {
        self.conn
            .query_row(SQL_TABLE_EXISTS, [table], |r| r.get::<_, i64>(0))
            .map(|n| n > 0)
            .map_err(|source| self.query_err("sqlite_master", source))
    }

    fn columns(&self, table: &'static str) -> Result<Vec<String>, DataError> {
        let mut stmt = self
            .conn
            .prepare(SQL_TABLE_COLUMNS)
            .map_err(|e| self.query_err(table, e))?;
        let rows = stmt
            .query_map([table], |r| r.get::<_, String>(0))
            .map_err(|e| self.query_err(table, e))?;
        rows.collect::<Result<_, _>>()
            .map_err(|e| self.query_err(table, e))
    }

    /// Checks every need at once, so the user sees every problem in one message.
    pub fn check(&self, report: &str, needs: &[TableNeed]) -> Result<(), DataError> {
        let mut missing = Vec::new();
        for need in needs {
            let have = self.columns(need.table)?;
            if have.is_empty() {
                missing.push(Missing {
                    table: need.table.to_owned(),
                    column: None,
                });
                continue;
            }
            for col in need.columns {
                if !have.iter().any(|h| h.eq_ignore_ascii_case(col)) {
                    missing.push(Missing {
                        table: need.table.to_owned(),
                        column: Some((*col).to_owned()),
                    });
                }
            }
        }
        if missing.is_empty() {
            Ok(())
        } else {
            Err(DataError::Schema {
                path: self.path.clone(),
                report: report.to_owned(),
                missing,
            })
        }
    }

    /// About how many rows a table holds, to size the row vectors once instead of
    /// growing (and copying) them; 0 when unknown (a view, a table without rowid).
    pub fn rows_hint(&self, table: &'static str) -> usize {
        // Table names cannot be bound; `table` is one of this module's constants.
        let sql = format!("{SQL_MAX_ROWID_PREFIX}\"{table}\"");
        // Rowids can be sparse: the hint is capped at one row per 32 bytes of file, so
        // a huge rowid never reserves far more memory than the data could fill (a
        // hint too low only means the vector grows).
        let most = std::fs::metadata(&self.path).map_or(0, |m| m.len() / 32);
        self.conn
            .query_row(&sql, [], |r| r.get::<_, Option<i64>>(0))
            .ok()
            .flatten()
            .map_or(0, |n| n.clamp(0, most as i64) as usize)
    }

    pub fn query_err(&self, table: &'static str, source: rusqlite::Error) -> DataError {
        DataError::Query {
            path: self.path.clone(),
            table,
            source,
        }
    }

    /// Runs `sql` and hands every row to `f` through a typed reader; returns how many
    /// rows were read.
    pub fn each_row(
        &self,
        table: &'static str,
        sql: &str,
        mut f: impl FnMut(&mut RowReader<'_, '_>) -> Result<(), DataError>,
    ) -> Result<u64, DataError> {
        let mut stmt = self
            .conn
            .prepare(sql)
            .map_err(|e| self.query_err(table, e))?;
        let mut rows = stmt.query([]).map_err(|e| self.query_err(table, e))?;
        let mut n = 0u64;
        while let Some(row) = rows.next().map_err(|e| self.query_err(table, e))? {
            n += 1;
            let mut reader = RowReader {
                row,
                table,
                path: &self.path,
                n,
            };
            f(&mut reader)?;
        }
        Ok(n)
    }
}

/// Typed access to one row, with errors naming the table, column and row.
pub struct RowReader<'a, 'b> {
    row: &'a rusqlite::Row<'b>,
    table: &'static str,
    path: &'a Path,
    n: u64,
}

impl RowReader<'_, '_> {
    pub fn raw(&self, i: usize) -> Result<ValueRef<'_>, DataError> {
        self.row.get_ref(i).map_err(|source| DataError::Query {
            path: self.path.to_owned(),
            table: self.table,
            source,
        })
    }

    pub fn bad(&self, column: &'static str, expected: &'static str, found: String) -> DataError {
        DataError::BadValue {
            path: self.path.to_owned(),
            table: self.table,
            column,
            row: format!("#{}", self.n),
            expected,
            found,
        }
    }

    /// Text, borrowed when SQLite holds it as text (no copy), owned otherwise.
    pub fn cow_text(
        &self,
        i: usize,
        column: &'static str,
    ) -> Result<Option<std::borrow::Cow<'_, str>>, DataError> {
        match self.raw(i)? {
            ValueRef::Text(t) => std::str::from_utf8(t)
                .map(|s| Some(std::borrow::Cow::Borrowed(s)))
                .map_err(|_| self.bad(column, "UTF-8 text", String::from_utf8_lossy(t).into())),
            _ => Ok(self.text(i, column)?.map(std::borrow::Cow::Owned)),
        }
    }

    pub fn text(&self, i: usize, column: &'static str) -> Result<Option<String>, DataError> {
        Ok(match self.raw(i)? {
            ValueRef::Null => None,
            ValueRef::Integer(v) => Some(v.to_string()),
            ValueRef::Real(v) => Some(v.to_string()),
            ValueRef::Text(t) => Some(
                std::str::from_utf8(t)
                    .map_err(|_| self.bad(column, "UTF-8 text", String::from_utf8_lossy(t).into()))?
                    .to_owned(),
            ),
            ValueRef::Blob(_) => return Err(self.bad(column, "text", "a blob".into())),
        })
    }

    pub fn real(&self, i: usize, column: &'static str) -> Result<Option<f64>, DataError> {
        Ok(match self.raw(i)? {
            ValueRef::Null => None,
            ValueRef::Integer(v) => Some(v as f64),
            ValueRef::Real(v) => Some(v),
            ValueRef::Text(t) => {
                let s = String::from_utf8_lossy(t);
                if s.trim().is_empty() {
                    None
                } else {
                    Some(
                        s.trim()
                            .parse::<f64>()
                            .ok()
                            .filter(|v| v.is_finite())
                            .ok_or_else(|| self.bad(column, "a number", s.to_string()))?,
                    )
                }
            }
            ValueRef::Blob(_) => return Err(self.bad(column, "a number", "a blob".into())),
        })
    }

    pub fn integer(&self, i: usize, column: &'static str) -> Result<Option<i64>, DataError> {
        match self.real(i, column)? {
            None => Ok(None),
            Some(v) if v.fract() == 0.0 && v.abs() < 9.0e15 => Ok(Some(v as i64)),
            Some(v) => Err(self.bad(column, "an integer", v.to_string())),
        }
    }
}

/// The rows a loader read, per table, in the order it read them (the appendix and the
/// manifest print these: nothing is counted twice).
pub type RowsRead = Vec<(&'static str, u64)>;

/// Counts of timestamps that could not be parsed, per `table.column`.
#[derive(Debug, Default, Clone, Serialize, PartialEq, Eq)]
pub struct BadTimestamps(pub BTreeMap<String, u64>);

impl BadTimestamps {
    pub fn total(&self) -> u64 {
        self.0.values().sum()
    }
}

/// Parses timestamp text, counting what does not parse.
pub struct TsParser<'a> {
    pub tz: Tz,
    pub bad: &'a mut BadTimestamps,
}

impl TsParser<'_> {
    pub fn parse(&mut self, table: &str, column: &str, v: Option<&str>) -> Option<DateTime<Utc>> {
        let v = v?;
        if v.trim().is_empty() {
            return None;
        }
        match timestamp::parse(v, self.tz) {
            Ok(t) => Some(t),
            Err(_) => {
                *self.bad.0.entry(format!("{table}.{column}")).or_default() += 1;
                None
            }
        }
    }
}

impl Database {
    /// The latest parseable timestamp of the one column `sql` selects.
    pub fn max_time(
        &self,
        table: &'static str,
        sql: &str,
        column: &'static str,
        tz: Tz,
    ) -> Result<Option<DateTime<Utc>>, DataError> {
        let mut max: Option<DateTime<Utc>> = None;
        self.each_row(table, sql, |r| {
            if let Some(t) = r
                .cow_text(0, column)?
                .and_then(|s| timestamp::parse(&s, tz).ok())
            {
                max = Some(max.map_or(t, |m| m.max(t)));
            }
            Ok(())
        })?;
        Ok(max)
    }

    /// Reads every row of `sql`, touching each value and keeping nothing: the floor
    /// the benchmark compares loading against. Returns (rows, bytes of text).
    pub fn scan(&self, table: &'static str, sql: &str) -> Result<(u64, u64), DataError> {
        let (mut rows, mut bytes) = (0u64, 0u64);
        let mut stmt = self
            .conn
            .prepare(sql)
            .map_err(|e| self.query_err(table, e))?;
        let n = stmt.column_count();
        let mut it = stmt.query([]).map_err(|e| self.query_err(table, e))?;
        while let Some(row) = it.next().map_err(|e| self.query_err(table, e))? {
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

/// A database made by `sql` in a temporary folder, for unit tests of the readers.
#[cfg(test)]
pub(crate) fn db_with(sql: &str) -> (tempfile::TempDir, Database) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.sqlite");
    Connection::open(&path).unwrap().execute_batch(sql).unwrap();
    let db = Database::open(&path).unwrap();
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
    fn not_a_database_is_an_open_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.sqlite");
        std::fs::write(
            &path,
            b"this is not sqlite at all, just some text padding it out",
        )
        .unwrap();
        assert!(matches!(Database::open(&path), Err(DataError::Open { .. })));
        assert!(matches!(
            Database::open(&dir.path().join("missing.sqlite")),
            Err(DataError::Open { .. })
        ));
    }

    #[test]
    fn row_hints_follow_rowids_and_stay_within_the_file() {
        let (_d, db) = db_with(
            "CREATE TABLE things (id TEXT);
             INSERT INTO things VALUES ('a'), ('b'), ('c');
             CREATE TABLE sparse (id TEXT);
             INSERT INTO sparse (rowid, id) VALUES (1000000000000, 'x');",
        );
        assert_eq!(db.rows_hint("things"), 3);
        let file = std::fs::metadata(db.path()).unwrap().len() as usize;
        assert_eq!(db.rows_hint("sparse"), file / 32);
        assert_eq!(db.rows_hint("missing"), 0, "no such table");
    }
}
