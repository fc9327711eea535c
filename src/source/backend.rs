//! The one interface each driver implements (`sqlite`, `pg`), as sqlx's `Any` keeps
//! its drivers apart: `Database` holds one [`Backend`] and asks it, never which one
//! it is. What every driver shares travels with each call as the [`Session`]: the
//! database's name for messages, the run's deadline and the transfer counters.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, NaiveDateTime, Utc};
use chrono_tz::Tz;

use super::error::{DataError, DriverError};
use super::row::RowReader;
use crate::clock::Deadline;

/// How a column holds its times: text the readers parse, or a native type the
/// database compares itself (so a window can be a SQL predicate).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeColumn {
    Text,
    /// `timestamp without time zone`: local to the source timezone.
    Naive,
    /// `timestamp with time zone`.
    Zoned,
}

/// A value bound to a query parameter (`$1`, `$2`, … in both dialects).
#[derive(Debug, Clone, PartialEq)]
pub enum Param {
    Zoned(DateTime<Utc>),
    Naive(NaiveDateTime),
    Text(String),
}

impl Param {
    /// `t` as a bound value comparable with a column of kind `kind`.
    pub fn time(t: DateTime<Utc>, kind: TimeColumn, source_tz: Tz) -> Self {
        match kind {
            TimeColumn::Naive => Self::Naive(t.with_timezone(&source_tz).naive_local()),
            TimeColumn::Zoned | TimeColumn::Text => Self::Zoned(t),
        }
    }
}

/// Rows and bytes received from a server, shared by the connections of one database,
/// and the rows each table's queries returned (from a file too): how often a run
/// read a table shows there.
#[derive(Debug, Default)]
pub(crate) struct Transfer {
    rows: AtomicU64,
    bytes: AtomicU64,
    tables: Mutex<Vec<(&'static str, u64)>>,
}

impl Transfer {
    pub(crate) fn add(&self, rows: u64, bytes: u64) {
        self.rows.fetch_add(rows, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    /// `rows` more rows returned by a query of `table`.
    pub(crate) fn table(&self, table: &'static str, rows: u64) {
        let mut tables = self.tables.lock().unwrap_or_else(|e| e.into_inner());
        match tables.iter_mut().find(|(t, _)| *t == table) {
            Some((_, n)) => *n += rows,
            None => tables.push((table, rows)),
        }
    }

    /// The rows each table's queries returned, in the order first read.
    pub(crate) fn tables(&self) -> Vec<(&'static str, u64)> {
        self.tables
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub(crate) fn get(&self) -> (u64, u64) {
        (
            self.rows.load(Ordering::Relaxed),
            self.bytes.load(Ordering::Relaxed),
        )
    }
}

/// What a driver needs of the database it reads beyond its connection.
pub(crate) struct Session {
    /// The database as messages name it (a path, or a URL without a password).
    pub name: String,
    /// The run's time limit: queries stop past it.
    pub deadline: Option<Deadline>,
    /// Rows and bytes received from a server (a file counts none).
    pub transfer: Arc<Transfer>,
}

impl Session {
    pub(crate) fn deadline_err(&self, table: &'static str, d: Deadline) -> DataError {
        DataError::Deadline {
            db: self.name.clone(),
            table,
            secs: d.budget.as_secs(),
        }
    }

    /// A failed query; past the deadline, whatever the driver said, the deadline.
    pub(crate) fn query_err(
        &self,
        table: &'static str,
        cause: impl Into<DriverError>,
    ) -> DataError {
        if let Some(d) = self.deadline.filter(Deadline::passed) {
            return self.deadline_err(table, d);
        }
        DataError::Query {
            db: self.name.clone(),
            table,
            cause: cause.into(),
        }
    }
}

/// A table whose name or columns the database spells other than in lower case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spelling {
    pub table: String,
    /// The columns not spelled in lower case.
    pub columns: Vec<String>,
}

impl Spelling {
    /// `None` when `table` and every column are in lower case.
    pub(crate) fn of(asked: &str, table: String, columns: &[String]) -> Option<Self> {
        let columns: Vec<String> = columns
            .iter()
            .filter(|c| **c != c.to_lowercase())
            .cloned()
            .collect();
        (table != asked || !columns.is_empty()).then_some(Self { table, columns })
    }
}

/// What a row handler is given: each row through the typed reader.
pub(crate) type RowFn<'f> = dyn FnMut(&mut RowReader<'_>) -> Result<(), DataError> + 'f;

/// One driver's answers. Table names are the callers' constants, never input.
pub(crate) trait Backend: Send {
    /// Stops every later query past `deadline` where the driver can interrupt itself
    /// (the session's deadline is set as well; a server reads it per statement).
    fn set_deadline(&mut self, deadline: Deadline);

    /// How the session to a server is protected (none for a file).
    fn link(&self) -> Option<super::pg::Link> {
        None
    }

    /// Whether a table or view exists where the session reads (a server's: and may be
    /// read; one that is there but not readable is [`DataError::NoPrivilege`], not
    /// absence).
    fn has_table(&self, s: &Session, table: &str) -> Result<bool, DataError>;

    /// For a table that [`Backend::has_table`] does not find: where the database has
    /// one like it (another schema, another case, a prefixed name), as a hint of what
    /// to set.
    fn absent_hint(&self, s: &Session, table: &str) -> Result<Option<String>, DataError>;

    /// How the database spells a table it holds and its columns, when some name is
    /// not in lower case (`USAGE_EVENTS`, `COMPANY_ID`): read all the same, names
    /// being matched in any case; `None` when all are lower case or there is no table.
    fn spelling(&self, s: &Session, table: &'static str) -> Result<Option<Spelling>, DataError>;

    /// The columns of a table with their declared types as the driver names them
    /// (empty when the table does not exist).
    fn columns(&self, s: &Session, table: &'static str)
        -> Result<Vec<(String, String)>, DataError>;

    /// How `table.column` holds its times.
    fn time_column(
        &self,
        s: &Session,
        table: &'static str,
        column: &str,
    ) -> Result<TimeColumn, DataError>;

    /// About how many rows `table` has and how many distinct values `column` takes,
    /// without a scan; `None` when the driver cannot tell.
    fn column_stats(&self, s: &Session, table: &'static str, column: &str) -> Option<(f64, f64)>;

    /// About how many rows `table` holds, without a scan; 0 when unknown.
    fn rows_hint(&self, s: &Session, table: &'static str) -> usize;

    /// Runs `sql` with `params` bound and hands every row to `f`; how many rows.
    fn each_row(
        &self,
        s: &Session,
        table: &'static str,
        sql: &str,
        params: &[Param],
        f: &mut RowFn<'_>,
    ) -> Result<u64, DataError>;

    /// Reads every row of `sql` keeping nothing: (rows, bytes received).
    fn scan(&self, s: &Session, table: &'static str, sql: &str) -> Result<(u64, u64), DataError>;
}
