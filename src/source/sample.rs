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

/// The fragments of a table's sampling query, `SELECT "a", "b" FROM "t"`.
///
/// Not one constant per table: the columns a table is sampled for are the contract's
/// typed columns that this table has (an optional one may be missing, and a query
/// naming it would fail the whole table) plus the mapping's `spend_column`, so a
/// fixed text per table would need one constant per subset. The query is put
/// together by [`sample_query`] from these constants and from names of two kinds
/// only ([`Column`]): the contract's static list (`&'static str`) and a mapping's
/// column, checked to be letters, digits and `_` ([`MappedName`]); each is quoted.
/// No value of the data or of the user ever enters the text, and there is nothing to
/// bind: the query has no condition. PostgreSQL spells the names as its catalogue
/// does (the backend's rewrite of quoted names).
const SQL_SELECT: &str = "SELECT ";
const SQL_NEXT_COLUMN: &str = ", ";
const SQL_FROM: &str = " FROM ";
const SQL_QUOTE: char = '"';

/// A mapping's column name, known to be letters, digits and `_` (what the mapping's
/// validation accepts), so that it can stand in a query as a quoted identifier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MappedName(String);

impl MappedName {
    /// `name` when it is letters, digits and `_` only; `None` otherwise.
    pub fn new(name: &str) -> Option<Self> {
        let ok = !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        ok.then(|| Self(name.to_owned()))
    }
}

/// A sampled column's name: the data contract's, or a mapping's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Column {
    Contract(&'static str),
    Mapped(MappedName),
}

impl Column {
    pub fn as_str(&self) -> &str {
        match self {
            Self::Contract(c) => c,
            Self::Mapped(MappedName(c)) => c,
        }
    }
}

/// `SELECT "c1", "c2" FROM "table"` from the fragments above (see there why not a
/// constant per table).
fn sample_query(table: &'static str, columns: &[Sampled]) -> String {
    let mut sql = String::from(SQL_SELECT);
    for (i, c) in columns.iter().enumerate() {
        if i > 0 {
            sql.push_str(SQL_NEXT_COLUMN);
        }
        push_quoted(&mut sql, c.column.as_str());
    }
    sql.push_str(SQL_FROM);
    push_quoted(&mut sql, table);
    sql
}

/// `name` as a quoted identifier. The names are the contract's or validated (letters,
/// digits, `_`); a quote would still be doubled.
fn push_quoted(sql: &mut String, name: &str) {
    sql.push(SQL_QUOTE);
    for ch in name.chars() {
        if ch == SQL_QUOTE {
            sql.push(SQL_QUOTE);
        }
        sql.push(ch);
    }
    sql.push(SQL_QUOTE);
}

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
    pub column: Column,
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
        let sql = sample_query(table, columns);
        let mut found: Vec<Unreadable> = columns
            .iter()
            .map(|c| Unreadable {
                column: c.column.as_str().to_owned(),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::db_with;

    fn col(column: &'static str, expect: Expect) -> Sampled {
        Sampled {
            column: Column::Contract(column),
            label: column,
            expect,
        }
    }

    #[test]
    fn the_query_names_each_column_once_quoted_and_a_mapped_name_is_checked() {
        let spend = MappedName::new("Mrr_2024").unwrap();
        let cols = [
            col("conversation_created_at", Expect::Time),
            Sampled {
                column: Column::Mapped(spend),
                label: "spend_column",
                expect: Expect::Number,
            },
        ];
        assert_eq!(
            sample_query("intercom__company_enhanced", &cols),
            "SELECT \"conversation_created_at\", \"Mrr_2024\" FROM \"intercom__company_enhanced\""
        );
        for bad in ["", "mrr; DROP TABLE x", "a\"b", "spend col", "mrr--"] {
            assert_eq!(MappedName::new(bad), None, "{bad}");
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
