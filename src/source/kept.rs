//! Rows kept in memory as they are read, for a burst of editions (issue 32): the
//! first query of a (SQL, bound values) pair reads the database and keeps every
//! cell of every row; the same query again replays those rows through the same
//! typed reader, so each edition's loader reads what it would have read from the
//! database, and the database is read once. A replay is no read: it is not counted
//! in [`super::Database::rows_returned`] nor in the transfer.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use super::backend::Param;
use super::error::{DataError, DriverError};
use super::row::{Cell, CellError, Cells, RowReader};

/// One cell as a driver handed it out.
#[derive(Debug, Clone)]
enum KeptCell {
    Null,
    Text(Box<[u8]>),
    Int(i64),
    Real(f64),
    Bool(bool),
    /// A time, read in UTC and in the source timezone (a time without a zone is
    /// placed by the timezone the reader passes).
    Time {
        utc: DateTime<Utc>,
        local: DateTime<Utc>,
    },
    Other(Box<str>),
    Unreadable(String),
    Driver(DriverError),
}

/// One row, every column.
#[derive(Debug, Clone)]
pub(crate) struct KeptRow {
    cells: Box<[KeptCell]>,
    /// The source timezone `Time::local` was read in.
    tz: Tz,
}

impl KeptRow {
    /// Every column of `row`.
    pub(crate) fn of(row: &dyn Cells, tz: Tz) -> Self {
        let cells = (0..row.width())
            .map(|i| match row.cell(i, Tz::UTC) {
                Ok(Cell::Null) => KeptCell::Null,
                Ok(Cell::Text(t)) => KeptCell::Text(t.into()),
                Ok(Cell::Int(v)) => KeptCell::Int(v),
                Ok(Cell::Real(v)) => KeptCell::Real(v),
                Ok(Cell::Bool(v)) => KeptCell::Bool(v),
                Ok(Cell::Other(ty)) => KeptCell::Other(ty.into()),
                Ok(Cell::Time(utc)) => KeptCell::Time {
                    utc,
                    local: match row.cell(i, tz) {
                        Ok(Cell::Time(t)) => t,
                        _ => utc,
                    },
                },
                Err(CellError::Unreadable(e)) => KeptCell::Unreadable(e),
                Err(CellError::Driver(e)) => KeptCell::Driver(e),
            })
            .collect();
        Self { cells, tz }
    }
}

impl Cells for KeptRow {
    fn cell(&self, i: usize, source_tz: Tz) -> Result<Cell<'_>, CellError> {
        let Some(c) = self.cells.get(i) else {
            return Err(CellError::Driver(DriverError::new(format!(
                "column {i} out of range (the row has {})",
                self.cells.len()
            ))));
        };
        Ok(match c {
            KeptCell::Null => Cell::Null,
            KeptCell::Text(t) => Cell::Text(t),
            KeptCell::Int(v) => Cell::Int(*v),
            KeptCell::Real(v) => Cell::Real(*v),
            KeptCell::Bool(v) => Cell::Bool(*v),
            KeptCell::Other(ty) => Cell::Other(ty),
            // The readers pass UTC, or the run's source timezone for times.
            KeptCell::Time { utc, local } => {
                Cell::Time(if source_tz == self.tz { *local } else { *utc })
            }
            KeptCell::Unreadable(e) => return Err(CellError::Unreadable(e.clone())),
            KeptCell::Driver(e) => return Err(CellError::Driver(e.clone())),
        })
    }

    fn width(&self) -> usize {
        self.cells.len()
    }
}

/// The rows kept so far, by query and bound values, shared by a database's
/// connections ([`super::Database::reopen`]).
#[derive(Debug)]
pub(crate) struct Kept {
    tz: Tz,
    queries: Mutex<HashMap<String, Arc<Vec<KeptRow>>>>,
}

impl Kept {
    pub(crate) fn new(tz: Tz) -> Self {
        Self {
            tz,
            queries: Mutex::default(),
        }
    }

    pub(crate) fn tz(&self) -> Tz {
        self.tz
    }

    /// The key of a query with its bound values.
    pub(crate) fn key(sql: &str, params: &[Param]) -> String {
        format!("{sql}\u{0}{params:?}")
    }

    pub(crate) fn get(&self, key: &str) -> Option<Arc<Vec<KeptRow>>> {
        self.queries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(key)
            .cloned()
    }

    /// Keeps the rows a query read whole (a read stopped by an error keeps none).
    pub(crate) fn put(&self, key: String, rows: Vec<KeptRow>) {
        self.queries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, Arc::new(rows));
    }

    /// The kept rows through the typed reader, numbered as when they were read.
    pub(crate) fn replay(
        rows: &[KeptRow],
        table: &'static str,
        db: &str,
        f: &mut dyn FnMut(&mut RowReader<'_>) -> Result<(), DataError>,
    ) -> Result<u64, DataError> {
        for (i, row) in rows.iter().enumerate() {
            f(&mut RowReader::new(row, table, db, i as u64 + 1))?;
        }
        Ok(rows.len() as u64)
    }
}
