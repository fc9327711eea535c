//! Reading tables where they are: a SQLite file or a PostgreSQL database ([`Location`];
//! the server side is in `pg`), read-only. Checks that every table and column a caller
//! needs is there before any work starts, and hands rows out through one typed reader
//! for both drivers whose errors name the database, table, column and row; native
//! time columns let callers put a window into SQL (`time_bounds`). Timestamps
//! (`timestamp`) and compact string storage (`interner`) live beside it. This layer
//! knows no report and no data contract: callers bring their SQL and table names.
//!
//! Long because both backends share the one typed row reader and its error
//! messages; the server-only parts are already in `pg`.

pub mod interner;
pub mod pg;
pub mod timestamp;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use ::postgres::fallible_iterator::FallibleIterator;
use chrono::{DateTime, NaiveDateTime, Utc};
use chrono_tz::Tz;
use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags};
use serde::Serialize;

use self::pg::PgValue;
pub use self::pg::{PgLocation, UrlError};
use crate::clock::Deadline;

/// Lists the columns a table has (empty when the table does not exist).
const SQL_TABLE_COLUMNS: &str = "SELECT name, type FROM pragma_table_info(?1)";
/// Whether a table or view exists.
const SQL_TABLE_EXISTS: &str =
    "SELECT count(*) FROM sqlite_master WHERE type IN ('table', 'view') AND name = ?1";
/// The largest rowid: a row count estimate that SQLite answers from the end of the
/// table's b-tree, without a scan.
const SQL_MAX_ROWID_PREFIX: &str = "SELECT max(rowid) FROM ";
/// The same three questions asked of PostgreSQL, in the session's schema (tables and
/// views alike).
const PG_TABLE_COLUMNS: &str = "SELECT column_name::text, data_type::text \
     FROM information_schema.columns \
     WHERE table_schema = current_schema() AND table_name = $1 ORDER BY ordinal_position";
const PG_TABLE_EXISTS: &str = "SELECT count(*) FROM information_schema.tables \
     WHERE table_schema = current_schema() AND table_name = $1";

/// The planner's statistics of a table and one of its columns (rows, distinct
/// values; both estimates, no scan); -1 rows: never analyzed.
const PG_COLUMN_STATS: &str = "SELECT c.reltuples::float8, s.n_distinct::float8 \
     FROM pg_class c LEFT JOIN pg_stats s ON s.schemaname = current_schema() \
       AND s.tablename = $1 AND s.attname = $2 \
     WHERE c.oid = to_regclass(quote_ident($1))";

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

/// What a database driver said, as text: the two drivers' errors in one shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DriverError(pub String);

impl fmt::Display for DriverError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for DriverError {}

impl DriverError {
    /// A driver's message, cut to [`MESSAGE_LIMIT`]: a server quotes the value it
    /// could not cast, and that value may be megabytes long.
    pub fn new(message: String) -> Self {
        Self(bounded(message, MESSAGE_LIMIT))
    }
}

impl From<rusqlite::Error> for DriverError {
    fn from(e: rusqlite::Error) -> Self {
        Self::new(e.to_string())
    }
}

impl From<::postgres::Error> for DriverError {
    fn from(e: ::postgres::Error) -> Self {
        Self::new(pg::error_text(&e))
    }
}

/// The most of a driver's message an error repeats.
const MESSAGE_LIMIT: usize = 1000;
/// The most of a value an error quotes: enough to recognise it, little enough that a
/// huge cell cannot flood stderr, the ledger and the owner's alert email.
const QUOTE_LIMIT: usize = 200;

/// `text` cut at a character boundary to at most `limit` bytes, saying how long it was.
fn bounded(text: String, limit: usize) -> String {
    if text.len() <= limit {
        return text;
    }
    let mut cut = limit;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}… ({} bytes)", &text[..cut], text.len())
}

/// A value as an error quotes it: in quotes, its first [`QUOTE_LIMIT`] bytes, with its
/// length when it is longer. Bytes that are not UTF-8 are shown as U+FFFD.
pub fn quote(value: &[u8]) -> String {
    let head = &value[..value.len().min(QUOTE_LIMIT)];
    // A multi-byte character cut at the limit is left out, not shown as U+FFFD.
    let head = match std::str::from_utf8(head) {
        Err(e) if e.error_len().is_none() && head.len() < value.len() => &head[..e.valid_up_to()],
        _ => head,
    };
    let shown = format!("{:?}", String::from_utf8_lossy(head));
    if head.len() < value.len() {
        format!("{shown}… ({} bytes)", value.len())
    } else {
        shown
    }
}

/// Errors of the data layer. Each names the database, table and column involved.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("cannot open database {db}: {cause}")]
    Open { db: String, cause: DriverError },
    #[error(transparent)]
    Url(#[from] UrlError),
    #[error("database {db} is missing what report `{report}` needs:\n{}", list_missing(.missing))]
    Schema {
        db: String,
        report: String,
        missing: Vec<Missing>,
    },
    #[error("reading {table} in {db}: {cause}")]
    Query {
        db: String,
        table: &'static str,
        cause: DriverError,
    },
    #[error("reading {table} in {db}: stopped at the run's time limit of {secs} s (defaults.run_timeout_secs, or --timeout-secs)")]
    Deadline {
        db: String,
        table: &'static str,
        secs: u64,
    },
    #[error("{table}.{column} in {db}, row {row}: expected {expected}, found {found}")]
    BadValue {
        db: String,
        table: &'static str,
        column: &'static str,
        row: String,
        expected: &'static str,
        /// What was found, as printed: a value is [`quote`]d, a type is named.
        found: String,
    },
}

impl crate::exit::Classify for DataError {
    /// A database that cannot be opened or lacks what the report needs is the
    /// user's to point at or build; one that fails while read is a failed run.
    fn exit(&self) -> crate::exit::Exit {
        use crate::exit::Exit;
        match self {
            Self::Open { .. } | Self::Schema { .. } => Exit::Usage,
            Self::Url(e) => e.exit(),
            Self::Query { .. } | Self::Deadline { .. } | Self::BadValue { .. } => Exit::Failed,
        }
    }
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

enum Backend {
    Sqlite(Connection),
    // One client per `Database`; a second connection is a second `Database`
    // (`reopen`), so the cell is never borrowed twice.
    Postgres(RefCell<::postgres::Client>),
}

/// An open, read-only database.
pub struct Database {
    backend: Backend,
    location: Location,
    name: String,
    /// Rows and bytes received from a server (not counted for SQLite files), shared
    /// with the connections [`Database::reopen`] makes.
    transfer: Arc<Transfer>,
    /// The run's time limit: queries stop past it.
    deadline: Option<Deadline>,
}

/// Rows and bytes received from a server.
#[derive(Debug, Default)]
struct Transfer {
    rows: AtomicU64,
    bytes: AtomicU64,
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
        let mut db = Self::open_counting(location, Arc::default(), deadline)?;
        if let Some(d) = deadline {
            db.set_deadline(d)?;
        }
        Ok(db)
    }

    fn open_counting(
        location: &Location,
        transfer: Arc<Transfer>,
        deadline: Option<Deadline>,
    ) -> Result<Self, DataError> {
        let name = location.to_string();
        let open_err = |source: DriverError| DataError::Open {
            db: name.clone(),
            cause: source,
        };
        let backend = match location {
            Location::Sqlite(path) => {
                if !path.is_file() {
                    return Err(open_err(DriverError("no such file".into())));
                }
                let conn = Connection::open_with_flags(
                    path,
                    OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                )
                .map_err(|e| open_err(e.into()))?;
                // A file that is not SQLite only fails on the first read: read now.
                conn.query_row("SELECT count(*) FROM sqlite_master", [], |_| Ok(()))
                    .map_err(|e| open_err(e.into()))?;
                Backend::Sqlite(conn)
            }
            Location::Postgres(pg) => {
                let limit = deadline.map_or(pg::DEFAULT_CONNECT_LIMIT, |d| {
                    d.at.saturating_duration_since(std::time::Instant::now())
                });
                let client = pg.connect_within(limit).map_err(|e| {
                    open_err(DriverError::new(match (e, deadline) {
                        // The run's limit, as its other messages name it.
                        (pg::ConnectError::NoAnswer { server, .. }, Some(d)) => format!(
                            "connecting to {server}: no answer within {} s (the run's time \
                             limit: defaults.run_timeout_secs, or --timeout-secs)",
                            d.budget.as_secs()
                        ),
                        (e, _) => e.to_string(),
                    }))
                })?;
                Backend::Postgres(RefCell::new(client))
            }
        };
        Ok(Self {
            backend,
            location: location.clone(),
            name,
            transfer,
            deadline: None,
        })
    }

    /// A second connection to the same database (a loader on another thread).
    pub fn reopen(&self) -> Result<Self, DataError> {
        let mut db =
            Self::open_counting(&self.location, Arc::clone(&self.transfer), self.deadline)?;
        if let Some(d) = self.deadline {
            db.set_deadline(d)?;
        }
        Ok(db)
    }

    /// Stops every later query past `deadline`: SQLite through its progress handler
    /// (a recursive view cannot stall the run), a server through `statement_timeout`,
    /// set before each statement to the time left ([`Database::client`]).
    pub fn set_deadline(&mut self, deadline: Deadline) -> Result<(), DataError> {
        if let Backend::Sqlite(conn) = &self.backend {
            conn.progress_handler(20_000, Some(move || deadline.passed()));
        }
        self.deadline = Some(deadline);
        Ok(())
    }

    /// The server session, its `statement_timeout` set to what is left of the run's
    /// time limit, so that the statements of a run together stop at the deadline (one
    /// timeout of the whole budget per statement would let many slow ones add up far
    /// past it). Past the deadline no statement is sent.
    fn client<'c>(
        &self,
        client: &'c RefCell<::postgres::Client>,
        table: &'static str,
    ) -> Result<std::cell::RefMut<'c, ::postgres::Client>, DataError> {
        let mut client = client.borrow_mut();
        if let Some(d) = self.deadline {
            let left = d.at.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return Err(self.deadline_err(table, d));
            }
            client
                .batch_execute(&format!(
                    "SET statement_timeout = {}",
                    left.as_millis().max(1)
                ))
                .map_err(|e| self.pg_err(table, e))?;
        }
        Ok(client)
    }

    fn deadline_err(&self, table: &'static str, d: Deadline) -> DataError {
        DataError::Deadline {
            db: self.name.clone(),
            table,
            secs: d.budget.as_secs(),
        }
    }

    /// A server's error; a statement it cancelled at the `statement_timeout` the run's
    /// deadline set is the deadline, even when the server's clock ran a little ahead.
    fn pg_err(&self, table: &'static str, e: ::postgres::Error) -> DataError {
        match self.deadline {
            Some(d) if e.code() == Some(&::postgres::error::SqlState::QUERY_CANCELED) => {
                self.deadline_err(table, d)
            }
            _ => self.query_err(table, e),
        }
    }

    pub fn location(&self) -> &Location {
        &self.location
    }

    /// The database as messages name it (a path, or a URL without a password).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Rows and bytes received from the server so far (0 for a SQLite file).
    pub fn transfer(&self) -> (u64, u64) {
        (
            self.transfer.rows.load(Ordering::Relaxed),
            self.transfer.bytes.load(Ordering::Relaxed),
        )
    }

    pub fn has_table(&self, table: &str) -> Result<bool, DataError> {
        let n = match &self.backend {
            Backend::Sqlite(c) => c
                .query_row(SQL_TABLE_EXISTS, [table], |r| r.get::<_, i64>(0))
                .map_err(|e| self.query_err("sqlite_master", e))?,
            Backend::Postgres(c) => self
                .client(c, "information_schema.tables")?
                .query_one(PG_TABLE_EXISTS, &[&table])
                .map_err(|e| self.pg_err("information_schema.tables", e))?
                .get::<_, i64>(0),
        };
        Ok(n > 0)
    }

    /// The columns of a table with their declared types, lower-cased (empty when the
    /// table does not exist).
    pub fn columns(&self, table: &'static str) -> Result<Vec<(String, String)>, DataError> {
        let out: Vec<(String, String)> = match &self.backend {
            Backend::Sqlite(c) => {
                let mut stmt = c
                    .prepare(SQL_TABLE_COLUMNS)
                    .map_err(|e| self.query_err(table, e))?;
                let rows = stmt
                    .query_map([table], |r| {
                        Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
                    })
                    .map_err(|e| self.query_err(table, e))?;
                rows.collect::<Result<_, _>>()
                    .map_err(|e| self.query_err(table, e))?
            }
            Backend::Postgres(c) => self
                .client(c, table)?
                .query(PG_TABLE_COLUMNS, &[&table])
                .map_err(|e| self.pg_err(table, e))?
                .iter()
                .map(|r| (r.get::<_, String>(0), r.get::<_, String>(1)))
                .collect(),
        };
        Ok(out
            .into_iter()
            .map(|(n, t)| (n.to_lowercase(), t.to_lowercase()))
            .collect())
    }

    /// How `table.column` holds times; text for SQLite (any column may hold any
    /// form) and for anything that is not a native timestamp.
    pub fn time_column(&self, table: &'static str, column: &str) -> Result<TimeColumn, DataError> {
        if matches!(self.backend, Backend::Sqlite(_)) {
            return Ok(TimeColumn::Text);
        }
        let kind = self
            .columns(table)?
            .into_iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(column))
            .map(|(_, t)| t);
        Ok(match kind.as_deref() {
            Some("timestamp without time zone") => TimeColumn::Naive,
            Some("timestamp with time zone") => TimeColumn::Zoned,
            _ => TimeColumn::Text,
        })
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
        let Backend::Postgres(client) = &self.backend else {
            return None;
        };
        let row = self
            .client(client, table)
            .ok()?
            .query_opt(PG_COLUMN_STATS, &[&table, &column])
            .ok()??;
        let rows: f64 = row.get::<_, Option<f64>>(0).filter(|r| *r >= 0.0)?;
        let distinct: f64 = row.get::<_, Option<f64>>(1)?;
        // A negative n_distinct is a fraction of the rows.
        Some((
            rows,
            if distinct < 0.0 {
                -distinct * rows
            } else {
                distinct
            },
        ))
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
                if !have.iter().any(|(h, _)| h.eq_ignore_ascii_case(col)) {
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
                db: self.name.clone(),
                report: report.to_owned(),
                missing,
            })
        }
    }

    /// About how many rows a table holds, to size the row vectors once instead of
    /// growing (and copying) them; 0 when unknown (a view, a table without rowid, a
    /// server: there the window decides how many rows come, not the table).
    pub fn rows_hint(&self, table: &'static str) -> usize {
        let Backend::Sqlite(conn) = &self.backend else {
            return 0;
        };
        // Table names cannot be bound; `table` is one of the callers' constants.
        let sql = format!("{SQL_MAX_ROWID_PREFIX}\"{table}\"");
        // Rowids can be sparse: the hint is capped at one row per 32 bytes of file, so
        // a huge rowid never reserves far more memory than the data could fill (a
        // hint too low only means the vector grows).
        let most = self
            .location
            .file()
            .and_then(|p| std::fs::metadata(p).ok())
            .map_or(0, |m| m.len() / 32);
        conn.query_row(&sql, [], |r| r.get::<_, Option<i64>>(0))
            .ok()
            .flatten()
            .map_or(0, |n| n.clamp(0, most as i64) as usize)
    }

    pub fn query_err(&self, table: &'static str, source: impl Into<DriverError>) -> DataError {
        if let Some(d) = self.deadline.filter(Deadline::passed) {
            return self.deadline_err(table, d);
        }
        DataError::Query {
            db: self.name.clone(),
            table,
            cause: source.into(),
        }
    }

    /// Runs `sql` and hands every row to `f` through a typed reader; returns how many
    /// rows were read.
    pub fn each_row(
        &self,
        table: &'static str,
        sql: &str,
        f: impl FnMut(&mut RowReader<'_, '_>) -> Result<(), DataError>,
    ) -> Result<u64, DataError> {
        self.each_row_with(table, sql, &[], f)
    }

    /// [`Database::each_row`] with bound parameters.
    pub fn each_row_with(
        &self,
        table: &'static str,
        sql: &str,
        params: &[Param],
        mut f: impl FnMut(&mut RowReader<'_, '_>) -> Result<(), DataError>,
    ) -> Result<u64, DataError> {
        let mut n = 0u64;
        match &self.backend {
            Backend::Sqlite(conn) => {
                let mut stmt = conn.prepare(sql).map_err(|e| self.query_err(table, e))?;
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
                    .map_err(|e| self.query_err(table, e))?;
                while let Some(row) = rows.next().map_err(|e| self.query_err(table, e))? {
                    n += 1;
                    f(&mut RowReader {
                        row: RowRef::Sqlite(row),
                        table,
                        db: &self.name,
                        n,
                    })?;
                }
            }
            Backend::Postgres(client) => {
                let mut client = self.client(client, table)?;
                let bound: Vec<&(dyn ::postgres::types::ToSql + Sync)> = params
                    .iter()
                    .map(|p| match p {
                        Param::Zoned(t) => t as &(dyn ::postgres::types::ToSql + Sync),
                        Param::Naive(t) => t,
                        Param::Text(s) => s,
                    })
                    .collect();
                let mut rows = client
                    .query_raw(sql, bound)
                    .map_err(|e| self.pg_err(table, e))?;
                while let Some(row) = rows.next().map_err(|e| self.pg_err(table, e))? {
                    n += 1;
                    let bytes = (0..row.len()).map(|i| pg::bytes(&row, i)).sum::<u64>();
                    self.transfer.rows.fetch_add(1, Ordering::Relaxed);
                    self.transfer.bytes.fetch_add(bytes, Ordering::Relaxed);
                    f(&mut RowReader {
                        row: RowRef::Postgres(&row),
                        table,
                        db: &self.name,
                        n,
                    })?;
                }
            }
        }
        Ok(n)
    }
}

enum RowRef<'a, 'b> {
    Sqlite(&'a rusqlite::Row<'b>),
    Postgres(&'a ::postgres::Row),
}

/// Typed access to one row, with errors naming the table, column and row.
pub struct RowReader<'a, 'b> {
    row: RowRef<'a, 'b>,
    table: &'static str,
    db: &'a str,
    n: u64,
}

/// A value of either driver, borrowed where the driver allows.
enum Cell2<'a> {
    Null,
    Text(&'a [u8]),
    Int(i64),
    Real(f64),
    Bool(bool),
    Time(DateTime<Utc>),
    Other(&'a str),
}

impl RowReader<'_, '_> {
    fn value(&self, i: usize, column: &'static str, tz: Tz) -> Result<Cell2<'_>, DataError> {
        Ok(match &self.row {
            RowRef::Sqlite(row) => match row.get_ref(i).map_err(|source| DataError::Query {
                db: self.db.to_owned(),
                table: self.table,
                cause: source.into(),
            })? {
                ValueRef::Null => Cell2::Null,
                ValueRef::Integer(v) => Cell2::Int(v),
                ValueRef::Real(v) => Cell2::Real(v),
                ValueRef::Text(t) => Cell2::Text(t),
                ValueRef::Blob(_) => Cell2::Other("blob"),
            },
            RowRef::Postgres(row) => {
                match pg::value(row, i, tz).map_err(|e| self.bad(column, "a readable value", e))? {
                    PgValue::Null => Cell2::Null,
                    PgValue::Text(t) => Cell2::Text(t.as_bytes()),
                    PgValue::Int(v) => Cell2::Int(v),
                    PgValue::Real(v) => Cell2::Real(v),
                    PgValue::Bool(v) => Cell2::Bool(v),
                    PgValue::Time(t) => Cell2::Time(t),
                    PgValue::Other(ty) => Cell2::Other(ty),
                }
            }
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
    ) -> Result<Option<std::borrow::Cow<'_, str>>, DataError> {
        use std::borrow::Cow;
        Ok(match self.value(i, column, Tz::UTC)? {
            Cell2::Null => None,
            Cell2::Text(t) => Some(Cow::Borrowed(
                std::str::from_utf8(t).map_err(|_| self.bad_value(column, "UTF-8 text", t))?,
            )),
            Cell2::Int(v) => Some(Cow::Owned(v.to_string())),
            Cell2::Real(v) => Some(Cow::Owned(v.to_string())),
            Cell2::Bool(v) => Some(Cow::Borrowed(if v { "true" } else { "false" })),
            Cell2::Time(t) => Some(Cow::Owned(t.format("%Y-%m-%d %H:%M:%S%.fZ").to_string())),
            Cell2::Other(ty) => return Err(self.bad(column, "text", format!("a {ty} value"))),
        })
    }

    pub fn text(&self, i: usize, column: &'static str) -> Result<Option<String>, DataError> {
        Ok(self.cow_text(i, column)?.map(std::borrow::Cow::into_owned))
    }

    pub fn real(&self, i: usize, column: &'static str) -> Result<Option<f64>, DataError> {
        Ok(match self.value(i, column, Tz::UTC)? {
            Cell2::Null => None,
            Cell2::Int(v) => Some(v as f64),
            // ±Inf (SQLite stores 9e999 so) is no amount a report can use.
            Cell2::Real(v) if !v.is_finite() => {
                return Err(self.bad(column, "a finite number", v.to_string()))
            }
            Cell2::Real(v) => Some(v),
            Cell2::Bool(v) => Some(f64::from(u8::from(v))),
            Cell2::Text(t) => {
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
            Cell2::Time(t) => return Err(self.bad(column, "a number", timestamp::format_utc(t))),
            Cell2::Other(ty) => return Err(self.bad(column, "a number", format!("a {ty} value"))),
        })
    }

    pub fn integer(&self, i: usize, column: &'static str) -> Result<Option<i64>, DataError> {
        if let Cell2::Int(v) = self.value(i, column, Tz::UTC)? {
            return Ok(Some(v));
        }
        match self.real(i, column)? {
            None => Ok(None),
            Some(v) if v.fract() == 0.0 && v.abs() < 9.0e15 => Ok(Some(v as i64)),
            Some(v) => Err(self.bad(column, "an integer", v.to_string())),
        }
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
            Cell2::Null => None,
            Cell2::Time(t) => Some(t),
            Cell2::Text(t) => match std::str::from_utf8(t) {
                Ok(s) => ts.parse(self.table, column, Some(s)),
                Err(_) => ts.count_bad(self.table, column),
            },
            Cell2::Int(_) | Cell2::Real(_) | Cell2::Bool(_) | Cell2::Other(_) => {
                ts.count_bad(self.table, column)
            }
        })
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
            Err(_) => self.count_bad(table, column),
        }
    }

    /// Counts one unreadable value of `table.column`.
    pub fn count_bad(&mut self, table: &str, column: &str) -> Option<DateTime<Utc>> {
        *self.bad.0.entry(format!("{table}.{column}")).or_default() += 1;
        None
    }
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

    /// Reads every row of `sql`, touching each value and keeping nothing: the floor
    /// the benchmark compares loading against. From a server, the rows of
    /// `COPY (sql) TO STDOUT` (the cheapest way to receive them). Returns (rows,
    /// bytes: of text in a file, on the wire from a server).
    pub fn scan(&self, table: &'static str, sql: &str) -> Result<(u64, u64), DataError> {
        let (mut rows, mut bytes) = (0u64, 0u64);
        match &self.backend {
            Backend::Sqlite(conn) => {
                let mut stmt = conn.prepare(sql).map_err(|e| self.query_err(table, e))?;
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
            }
            Backend::Postgres(client) => {
                use std::io::Read;
                // `sql` is one of the callers' constants (COPY takes no parameters).
                let copy = format!("COPY ({sql}) TO STDOUT");
                let mut client = self.client(client, table)?;
                let mut reader = client
                    .copy_out(copy.as_str())
                    .map_err(|e| self.pg_err(table, e))?;
                let mut buf = vec![0u8; 1 << 16];
                loop {
                    let n = reader
                        .read(&mut buf)
                        .map_err(|e| self.query_err(table, DriverError::new(e.to_string())))?;
                    if n == 0 {
                        break;
                    }
                    bytes += n as u64;
                    rows += buf[..n].iter().filter(|&&b| b == b'\n').count() as u64;
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
        // Cut inside a character: no half character shown.
        assert_eq!(
            quote("é".repeat(150).as_bytes()),
            format!("{:?}… (300 bytes)", "é".repeat(100))
        );
        assert_eq!(quote(b"lots"), "\"lots\"");
        let long = bounded("e".repeat(5000), MESSAGE_LIMIT);
        assert!(
            long.len() < MESSAGE_LIMIT + 20 && long.ends_with("… (5000 bytes)"),
            "{long}"
        );
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
        assert!(matches!(
            Database::open(&path.clone().into()),
            Err(DataError::Open { .. })
        ));
        assert!(matches!(
            Database::open(&dir.path().join("missing.sqlite").into()),
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
        let file = std::fs::metadata(db.location().file().unwrap())
            .unwrap()
            .len() as usize;
        assert_eq!(db.rows_hint("sparse"), file / 32);
        assert_eq!(db.rows_hint("missing"), 0, "no such table");
    }

    #[test]
    fn a_query_past_the_run_deadline_stops_with_a_clear_error() {
        // A recursive view that never ends on its own.
        let (_dir, mut db) = db_with(
            "CREATE VIEW forever AS WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) SELECT i FROM n;",
        );
        db.set_deadline(Deadline::after(std::time::Duration::from_millis(200)))
            .unwrap();
        let started = std::time::Instant::now();
        let e = db
            .each_row("forever", "SELECT count(*) FROM forever", |_| Ok(()))
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
