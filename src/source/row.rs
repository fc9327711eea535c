//! The one typed reader of a row for both drivers: each driver hands out its values
//! as a [`Cell`] (`Cells`, implemented in `sqlite` and `pg`), and the reader turns
//! them into text, numbers and times with errors that name the database, table,
//! column and row.

use std::borrow::Cow;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use super::error::{quote, DataError, DriverError};
use super::timestamp::{self, TsParser};

/// A value of either driver, borrowed where the driver allows.
pub(crate) enum Cell<'a> {
    Null,
    Text(&'a [u8]),
    Int(i64),
    Real(f64),
    Bool(bool),
    Time(DateTime<Utc>),
    /// A value of a type the readers do not interpret (its type name).
    Other(&'a str),
}

/// Why a driver could not hand out a value.
pub(crate) enum CellError {
    /// The driver failed (a column out of range, a broken row).
    Driver(DriverError),
    /// The value is there but cannot be read (a server's type the driver refuses).
    Unreadable(String),
}

/// One row as a driver holds it.
pub(crate) trait Cells {
    /// Column `i`; `source_tz` places times without a zone.
    fn cell(&self, i: usize, source_tz: Tz) -> Result<Cell<'_>, CellError>;
    /// How many columns the row has.
    fn width(&self) -> usize;
}

/// Typed access to one row, with errors naming the table, column and row.
pub struct RowReader<'a> {
    row: &'a dyn Cells,
    table: &'static str,
    db: &'a str,
    n: u64,
}

impl<'a> RowReader<'a> {
    /// Row number `n` (from 1) of what was read from `table` in database `db`.
    pub(crate) fn new(row: &'a dyn Cells, table: &'static str, db: &'a str, n: u64) -> Self {
        Self { row, table, db, n }
    }
}

impl RowReader<'_> {
    /// Every cell of the row, kept in memory (`kept`).
    pub(crate) fn keep(&self, tz: Tz) -> super::kept::KeptRow {
        super::kept::KeptRow::of(self.row, tz)
    }

    fn value(&self, i: usize, column: &'static str, tz: Tz) -> Result<Cell<'_>, DataError> {
        self.row.cell(i, tz).map_err(|e| match e {
            CellError::Driver(cause) => DataError::Query {
                db: self.db.to_owned(),
                table: self.table,
                cause,
            },
            CellError::Unreadable(e) => self.bad(column, "a readable value", e),
        })
    }

    pub fn bad(&self, column: &'static str, expected: &'static str, found: String) -> DataError {
        self.bad_value(column, expected, found.as_bytes())
    }

    /// [`RowReader::bad`] quoting the value straight from the driver's bytes (a huge
    /// cell is not copied to be cut).
    fn bad_value(&self, column: &'static str, expected: &'static str, found: &[u8]) -> DataError {
        DataError::BadValue {
            db: self.db.to_owned(),
            table: self.table,
            column,
            row: format!("#{}", self.n),
            expected,
            found: quote(found),
        }
    }

    /// Text, borrowed when the driver holds it as text (no copy), owned otherwise.
    pub fn cow_text(
        &self,
        i: usize,
        column: &'static str,
    ) -> Result<Option<Cow<'_, str>>, DataError> {
        Ok(match self.value(i, column, Tz::UTC)? {
            Cell::Null => None,
            Cell::Text(t) => Some(Cow::Borrowed(
                std::str::from_utf8(t).map_err(|_| self.bad_value(column, "UTF-8 text", t))?,
            )),
            Cell::Int(v) => Some(Cow::Owned(v.to_string())),
            Cell::Real(v) => Some(Cow::Owned(v.to_string())),
            Cell::Bool(v) => Some(Cow::Borrowed(if v { "true" } else { "false" })),
            Cell::Time(t) => Some(Cow::Owned(t.format("%Y-%m-%d %H:%M:%S%.fZ").to_string())),
            Cell::Other(ty) => return Err(self.bad(column, "text", format!("a {ty} value"))),
        })
    }

    pub fn text(&self, i: usize, column: &'static str) -> Result<Option<String>, DataError> {
        Ok(self.cow_text(i, column)?.map(Cow::into_owned))
    }

    pub fn real(&self, i: usize, column: &'static str) -> Result<Option<f64>, DataError> {
        Ok(match self.value(i, column, Tz::UTC)? {
            Cell::Null => None,
            Cell::Int(v) => Some(v as f64),
            // ±Inf (SQLite stores 9e999 so) is no amount a report can use.
            Cell::Real(v) if !v.is_finite() => {
                return Err(self.bad(column, "a finite number", v.to_string()))
            }
            Cell::Real(v) => Some(v),
            Cell::Bool(v) => Some(f64::from(u8::from(v))),
            Cell::Text(t) => {
                let s = String::from_utf8_lossy(t);
                if s.trim().is_empty() {
                    None
                } else {
                    Some(
                        s.trim()
                            .parse::<f64>()
                            .ok()
                            .filter(|v| v.is_finite())
                            .ok_or_else(|| self.bad_value(column, "a number", t))?,
                    )
                }
            }
            Cell::Time(t) => return Err(self.bad(column, "a number", timestamp::format_utc(t))),
            Cell::Other(ty) => return Err(self.bad(column, "a number", format!("a {ty} value"))),
        })
    }

    pub fn integer(&self, i: usize, column: &'static str) -> Result<Option<i64>, DataError> {
        if let Cell::Int(v) = self.value(i, column, Tz::UTC)? {
            return Ok(Some(v));
        }
        match self.real(i, column)? {
            None => Ok(None),
            Some(v) if v.fract() == 0.0 && v.abs() < 9.0e15 => Ok(Some(v as i64)),
            Some(v) => Err(self.bad(column, "an integer", v.to_string())),
        }
    }

    /// A flag: a native boolean, 0/1, or text as warehouses export flags (`true`/
    /// `false`, `t`/`f`, `yes`/`no`, `1`/`0`, any case); empty text is no value.
    pub fn boolean(&self, i: usize, column: &'static str) -> Result<Option<bool>, DataError> {
        const EXPECTED: &str = "a flag (true/false, t/f, yes/no or 1/0)";
        Ok(match self.value(i, column, Tz::UTC)? {
            Cell::Null => None,
            Cell::Bool(v) => Some(v),
            Cell::Int(0) => Some(false),
            Cell::Int(1) => Some(true),
            Cell::Real(v) if v == 0.0 || v == 1.0 => Some(v == 1.0),
            Cell::Text(t) => match String::from_utf8_lossy(t)
                .trim()
                .to_ascii_lowercase()
                .as_str()
            {
                "" => None,
                "true" | "t" | "yes" | "y" | "1" => Some(true),
                "false" | "f" | "no" | "n" | "0" => Some(false),
                _ => return Err(self.bad_value(column, EXPECTED, t)),
            },
            Cell::Int(v) => return Err(self.bad(column, EXPECTED, v.to_string())),
            Cell::Real(v) => return Err(self.bad(column, EXPECTED, v.to_string())),
            Cell::Time(t) => return Err(self.bad(column, EXPECTED, timestamp::format_utc(t))),
            Cell::Other(ty) => return Err(self.bad(column, EXPECTED, format!("a {ty} value"))),
        })
    }

    /// A time: native values as they are (naive ones in the parser's timezone), text
    /// parsed; anything unreadable is counted in the parser's data quality, not an
    /// error.
    pub fn time(
        &self,
        i: usize,
        column: &'static str,
        ts: &mut TsParser<'_>,
    ) -> Result<Option<DateTime<Utc>>, DataError> {
        Ok(match self.value(i, column, ts.tz)? {
            Cell::Null => None,
            Cell::Time(t) => Some(t),
            Cell::Text(t) => match std::str::from_utf8(t) {
                Ok(s) => ts.parse(self.table, column, Some(s)),
                Err(_) => ts.count_bad(self.table, column),
            },
            Cell::Int(_) | Cell::Real(_) | Cell::Bool(_) | Cell::Other(_) => {
                ts.count_bad(self.table, column)
            }
        })
    }
}
