//! The values of a table that the readers cannot read as their column's type,
//! counted and sampled, for `check`: a number or flag a run would stop at, a time it
//! would leave out. "Cannot be read" is decided by the row reader itself (the same
//! `real`, `integer`, `boolean` and `time` the loaders call), never by rules of its
//! own, so that `check` and a run agree on every value.

use chrono_tz::Tz;

use super::error::{quote, DataError};
use super::row::RowReader;
use super::timestamp::{BadTimestamps, TsParser};
use super::Database;

/// How many unreadable values of a column are quoted.
pub const SAMPLES: usize = 3;

/// Each sampled query: `SELECT` the columns (quoted) `FROM` the table (quoted). The
/// names are the callers' (the data contract's, or a mapping's validated column),
/// never a value; PostgreSQL spells them as its catalogue does.
const SQL_SELECT: &str = "SELECT ";
const SQL_FROM: &str = " FROM ";

/// The type a column is read as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    Time,
    Number,
    Integer,
    Flag,
}

impl Expect {
    /// The type as messages name it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Time => "a timestamp",
            Self::Number => "a number",
            Self::Integer => "an integer",
            Self::Flag => "a flag (true/false, t/f, yes/no or 1/0)",
        }
    }
}

/// One column to sample: its name in the table, the name the reader's messages use,
/// and its type.
#[derive(Debug, Clone)]
pub struct Sampled {
    pub column: String,
    pub label: &'static str,
    pub expect: Expect,
}

/// A column with values its reader cannot read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unreadable {
    pub column: String,
    pub expect: Expect,
    /// Values that cannot be read, of `rows`.
    pub bad: u64,
    pub rows: u64,
    /// Up to [`SAMPLES`] distinct unreadable values, quoted.
    pub samples: Vec<String>,
    /// Whether other unreadable values were not quoted.
    pub more: bool,
}

impl Database {
    /// Reads `columns` of every row of `table` in one query, through the readers the
    /// loaders use, and returns the columns that hold values those cannot read
    /// (NULL and empty text are no value, not unreadable). `source_tz` places times
    /// without a zone, as a run's does.
    pub fn unreadable(
        &self,
        table: &'static str,
        columns: &[Sampled],
        source_tz: Tz,
    ) -> Result<Vec<Unreadable>, DataError> {
        if columns.is_empty() {
            return Ok(Vec::new());
        }
        let list: Vec<String> = columns.iter().map(|c| quote_name(&c.column)).collect();
        let sql = format!(
            "{SQL_SELECT}{}{SQL_FROM}{}",
            list.join(", "),
            quote_name(table)
        );
        let mut found: Vec<Unreadable> = columns
            .iter()
            .map(|c| Unreadable {
                column: c.column.clone(),
                expect: c.expect,
                bad: 0,
                rows: 0,
                samples: Vec::new(),
                more: false,
            })
            .collect();
        let mut bad_times = BadTimestamps::default();
        let rows = self.each_row(table, &sql, |r| {
            for (i, c) in columns.iter().enumerate() {
                if let Some(value) = unreadable_value(r, i, c, source_tz, &mut bad_times)? {
                    let f = &mut found[i];
                    f.bad += 1;
                    if !f.samples.contains(&value) {
                        if f.samples.len() < SAMPLES {
                            f.samples.push(value);
                        } else {
                            f.more = true;
                        }
                    }
                }
            }
            Ok(())
        })?;
        found.retain(|f| f.bad > 0);
        for f in &mut found {
            f.rows = rows;
        }
        Ok(found)
    }
}

/// The value of column `i` quoted when the reader of its type cannot read it; a
/// driver's failure is the query's error.
fn unreadable_value(
    r: &RowReader<'_>,
    i: usize,
    c: &Sampled,
    tz: Tz,
    bad_times: &mut BadTimestamps,
) -> Result<Option<String>, DataError> {
    let read = match c.expect {
        Expect::Number => r.real(i, c.label).map(drop),
        Expect::Integer => r.integer(i, c.label).map(drop),
        Expect::Flag => r.boolean(i, c.label).map(drop),
        Expect::Time => {
            let before = bad_times.total();
            let mut ts = TsParser { tz, bad: bad_times };
            r.time(i, c.label, &mut ts)?;
            if bad_times.total() == before {
                return Ok(None);
            }
            return Ok(Some(match r.cow_text(i, c.label) {
                Ok(Some(t)) => quote(t.as_bytes()),
                Ok(None) => quote(b""),
                Err(DataError::BadValue { found, .. }) => found,
                Err(e) => return Err(e),
            }));
        }
    };
    match read {
        Ok(()) => Ok(None),
        Err(DataError::BadValue { found, .. }) => Ok(Some(found)),
        Err(e) => Err(e),
    }
}

/// A name as an SQL identifier, in double quotes.
fn quote_name(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::db_with;

    fn col(column: &'static str, expect: Expect) -> Sampled {
        Sampled {
            column: column.into(),
            label: column,
            expect,
        }
    }

    #[test]
    fn values_the_readers_cannot_read_are_counted_and_sampled() {
        let (_d, db) = db_with(
            "CREATE TABLE things (at TEXT, spend, flag, n);
             INSERT INTO things VALUES
               ('2024-06-01 10:00:00', '12.5', 'true', 3),
               ('garbage', 'n/a', 'maybe', 2.5),
               ('2024-13-01', 'n/a', 'yes', NULL),
               ('soon', '', 'F', '4'),
               ('later', 'lots', 2, 'x'),
               (NULL, NULL, NULL, NULL);",
        );
        let got = db
            .unreadable(
                "things",
                &[
                    col("at", Expect::Time),
                    col("spend", Expect::Number),
                    col("flag", Expect::Flag),
                    col("n", Expect::Integer),
                ],
                Tz::UTC,
            )
            .unwrap();
        let by = |c: &str| got.iter().find(|u| u.column == c).cloned().unwrap();
        let at = by("at");
        assert_eq!((at.bad, at.rows), (4, 6));
        assert_eq!(at.samples, ["\"garbage\"", "\"2024-13-01\"", "\"soon\""]);
        assert!(at.more, "\"later\" is not quoted");
        let spend = by("spend");
        assert!(!spend.more);
        assert_eq!(
            (spend.bad, spend.samples),
            (3, vec!["\"n/a\"".into(), "\"lots\"".into()])
        );
        let flag = by("flag");
        assert_eq!(
            (flag.bad, flag.samples),
            (2, vec!["\"maybe\"".into(), "\"2\"".into()])
        );
        let n = by("n");
        assert_eq!(
            (n.bad, n.samples),
            (2, vec!["\"2.5\"".into(), "\"x\"".into()])
        );
        // A clean column is not listed.
        let (_d, db) = db_with("CREATE TABLE t (a TEXT); INSERT INTO t VALUES ('1'), ('0');");
        assert!(db
            .unreadable("t", &[col("a", Expect::Flag)], Tz::UTC)
            .unwrap()
            .is_empty());
    }
}
