//! The PostgreSQL side of the data layer: the backend a `postgresql://` location
//! opens (its catalogue asked through `information_schema`, the planner's statistics,
//! native time columns, `statement_timeout` set to what is left of the run's time
//! limit before each statement, rows and bytes received counted); table and column
//! names matched case-insensitively and the callers' SQL spelled as the catalogue
//! spells them (`names`); where a warehouse is and the sessions opened to it
//! (`session`); how native column types become the reader's cells (`value`). Every `postgres` call of the data layer is under here.

mod names;
mod session;
mod tls;
mod value;

use std::cell::{RefCell, RefMut};
use std::collections::HashMap;

use ::postgres::fallible_iterator::FallibleIterator;
use ::postgres::Client;

use self::names::{Relation, Resolution};
pub use self::session::{
    error_text, quote_ident, redact, ConnectError, PgLocation, DEFAULT_CONNECT_LIMIT,
    DEFAULT_PASSWORD_ENV,
};
pub use self::tls::{Link, SslMode, TlsSettings, Verified};
use super::backend::{Backend, Param, RowFn, Session, Spelling, TimeColumn};
use super::error::{DataError, DriverError};
use super::row::RowReader;
use crate::clock::Deadline;

/// The columns of a table or view in the session's schema, with their types.
const SQL_TABLE_COLUMNS: &str = "SELECT column_name::text, data_type::text \
     FROM information_schema.columns \
     WHERE table_schema = current_schema() AND table_name = $1 ORDER BY ordinal_position";
/// A table or view of the session's schema, and whether this role may read it (the
/// catalogue, not `information_schema`: that one hides what the role may not read,
/// and a missing grant would look like a missing table).
const SQL_TABLE_ACCESS: &str = "SELECT has_schema_privilege(n.oid, 'USAGE') \
       AND has_table_privilege(c.oid, 'SELECT'), current_user::text, n.nspname::text \
     FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
     WHERE c.relname = $1 AND c.relkind IN ('r', 'v', 'm', 'p', 'f') \
       AND n.nspname = current_schema()";
/// Tables and views of the session's schema named `$1` but for case, with their
/// columns (`pg_catalog`: readable by every role, whatever it may select).
const SQL_TABLE_SPELLINGS: &str = "SELECT c.relname::text, \
       coalesce(array_agg(a.attname::text ORDER BY a.attnum) \
         FILTER (WHERE a.attnum IS NOT NULL), '{}') \
     FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
     LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped \
     WHERE lower(c.relname) = lower($1) AND c.relkind IN ('r', 'v', 'm', 'p', 'f') \
       AND n.nspname = current_schema() \
     GROUP BY c.relname ORDER BY c.relname";
/// Tables of that name, in any case, in other schemas.
const SQL_TABLE_ELSEWHERE: &str = "SELECT DISTINCT n.nspname::text \
     FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
     WHERE lower(c.relname) = lower($1) AND c.relkind IN ('r', 'v', 'm', 'p', 'f') \
       AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
       AND n.nspname IS DISTINCT FROM current_schema() \
     ORDER BY 1 LIMIT 5";
/// The planner's statistics of a table and one of its columns (rows, distinct
/// values; both estimates, no scan); -1 rows: never analyzed.
const SQL_COLUMN_STATS: &str = "SELECT c.reltuples::float8, s.n_distinct::float8 \
     FROM pg_class c LEFT JOIN pg_stats s ON s.schemaname = current_schema() \
       AND s.tablename = $1 AND s.attname = $2 \
     WHERE c.oid = to_regclass(quote_ident($1))";
/// The catalogue's names of the two native time types.
const TYPE_NAIVE: &str = "timestamp without time zone";
const TYPE_ZONED: &str = "timestamp with time zone";

impl From<::postgres::Error> for DriverError {
    fn from(e: ::postgres::Error) -> Self {
        Self::new(error_text(&e))
    }
}

/// An open read-only session. One client per `Database`; a second connection is a
/// second `Database` (`reopen`), so the cell is never borrowed twice.
pub(crate) struct Postgres {
    client: RefCell<Client>,
    link: Link,
    /// Each table looked up in the catalogue, by the name the callers use, once.
    names: RefCell<HashMap<String, Resolution>>,
}

impl Postgres {
    /// Opens the read-only session, waiting no longer than the run's deadline (or
    /// [`DEFAULT_CONNECT_LIMIT`] without one).
    pub(crate) fn open(at: &PgLocation, deadline: Option<Deadline>) -> Result<Self, DriverError> {
        let limit = deadline.map_or(DEFAULT_CONNECT_LIMIT, |d| {
            d.at.saturating_duration_since(std::time::Instant::now())
        });
        let (client, link) = at.connect_within(limit).map_err(|e| {
            DriverError::new(match (e, deadline) {
                // The run's limit, as its other messages name it.
                (ConnectError::NoAnswer { server, .. }, Some(d)) => format!(
                    "connecting to {server}: no answer within {} s (the run's time \
                     limit: defaults.run_timeout_secs, or --timeout-secs)",
                    d.budget.as_secs()
                ),
                (e, _) => e.to_string(),
            })
        })?;
        Ok(Self {
            client: RefCell::new(client),
            link,
            names: RefCell::default(),
        })
    }

    /// `table` (any case) as the session's schema holds it, looked up once.
    fn resolve(&self, s: &Session, table: &str) -> Result<Resolution, DataError> {
        const TABLES: &str = "pg_class";
        let key = table.to_lowercase();
        if let Some(r) = self.names.borrow().get(&key) {
            return Ok(r.clone());
        }
        let found = self
            .client(s, TABLES)?
            .query(SQL_TABLE_SPELLINGS, &[&key])
            .map_err(|e| pg_err(s, TABLES, e))?
            .iter()
            .map(|r| Relation {
                name: r.get(0),
                columns: r.get(1),
            })
            .collect();
        let r = Resolution::choose(&key, found);
        self.names.borrow_mut().insert(key, r.clone());
        Ok(r)
    }

    /// The catalogue's name of `table`, or the name as given when it has none.
    fn spelled(&self, s: &Session, table: &str) -> Result<String, DataError> {
        Ok(match self.resolve(s, table)? {
            Resolution::Found(r) => r.name,
            _ => table.to_owned(),
        })
    }

    /// `sql` with its names as the catalogue spells them ([`names::rewrite`]).
    fn spell<'q>(&self, s: &Session, sql: &'q str) -> Result<std::borrow::Cow<'q, str>, DataError> {
        names::rewrite(sql, |t| Ok(self.resolve(s, t)?.found().cloned()))
    }

    /// The session, its `statement_timeout` set to what is left of the run's time
    /// limit, so that the statements of a run together stop at the deadline (one
    /// timeout of the whole budget per statement would let many slow ones add up far
    /// past it). Past the deadline no statement is sent.
    fn client(&self, s: &Session, table: &'static str) -> Result<RefMut<'_, Client>, DataError> {
        let mut client = self.client.borrow_mut();
        if let Some(d) = s.deadline {
            let left = d.at.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return Err(s.deadline_err(table, d));
            }
            client
                .batch_execute(&format!(
                    "SET statement_timeout = {}",
                    left.as_millis().max(1)
                ))
                .map_err(|e| pg_err(s, table, e))?;
        }
        Ok(client)
    }
}

/// A server's error; a statement it cancelled at the `statement_timeout` the run's
/// deadline set is the deadline, even when the server's clock ran a little ahead.
fn pg_err(s: &Session, table: &'static str, e: ::postgres::Error) -> DataError {
    match s.deadline {
        Some(d) if e.code() == Some(&::postgres::error::SqlState::QUERY_CANCELED) => {
            s.deadline_err(table, d)
        }
        _ => s.query_err(table, e),
    }
}

impl Backend for Postgres {
    /// Nothing to install: [`Postgres::client`] reads the session's deadline before
    /// each statement.
    fn set_deadline(&mut self, _: Deadline) {}

    fn link(&self) -> Option<Link> {
        Some(self.link)
    }

    fn has_table(&self, s: &Session, table: &str) -> Result<bool, DataError> {
        const TABLES: &str = "pg_class";
        let Resolution::Found(rel) = self.resolve(s, table)? else {
            return Ok(false);
        };
        let row = self
            .client(s, TABLES)?
            .query_opt(SQL_TABLE_ACCESS, &[&rel.name])
            .map_err(|e| pg_err(s, TABLES, e))?;
        let Some(row) = row else { return Ok(false) };
        if row.get::<_, Option<bool>>(0) == Some(true) {
            return Ok(true);
        }
        let (role, schema): (String, String) = (row.get(1), row.get(2));
        let (r, sc) = (quote_ident(&role), quote_ident(&schema));
        Err(DataError::NoPrivilege {
            db: s.name.clone(),
            table: format!("{schema}.{}", rel.name),
            grant: format!(
                "GRANT USAGE ON SCHEMA {sc} TO {r}; GRANT SELECT ON {sc}.{} TO {r}",
                quote_ident(&rel.name)
            ),
            role,
        })
    }

    fn absent_hint(&self, s: &Session, table: &str) -> Result<Option<String>, DataError> {
        const TABLES: &str = "pg_class";
        if let Resolution::Ambiguous(names) = self.resolve(s, table)? {
            let listed: Vec<String> = names.iter().map(|n| format!("`{n}`")).collect();
            return Ok(Some(format!(
                "{} are here, differing only in case, and none is `{table}`: name the one \
                 to read with a view, CREATE VIEW {} AS SELECT * FROM {}",
                listed.join(", "),
                quote_ident(table),
                quote_ident(&names[0])
            )));
        }
        let schemas: Vec<String> = self
            .client(s, TABLES)?
            .query(SQL_TABLE_ELSEWHERE, &[&table])
            .map_err(|e| pg_err(s, TABLES, e))?
            .iter()
            .map(|r| r.get(0))
            .collect();
        Ok((!schemas.is_empty()).then(|| {
            let listed: Vec<String> = schemas.iter().map(|n| format!("`{n}`")).collect();
            format!(
                "it is in schema {}: name it in the URL (…?schema={})",
                listed.join(", "),
                schemas[0]
            )
        }))
    }

    fn spelling(&self, s: &Session, table: &'static str) -> Result<Option<Spelling>, DataError> {
        Ok(match self.resolve(s, table)? {
            Resolution::Found(r) => Spelling::of(table, r.name, &r.columns),
            _ => None,
        })
    }

    fn columns(
        &self,
        s: &Session,
        table: &'static str,
    ) -> Result<Vec<(String, String)>, DataError> {
        let name = self.spelled(s, table)?;
        Ok(self
            .client(s, table)?
            .query(SQL_TABLE_COLUMNS, &[&name])
            .map_err(|e| pg_err(s, table, e))?
            .iter()
            .map(|r| (r.get::<_, String>(0), r.get::<_, String>(1)))
            .collect())
    }

    /// Native for the two timestamp types, text for anything else.
    fn time_column(
        &self,
        s: &Session,
        table: &'static str,
        column: &str,
    ) -> Result<TimeColumn, DataError> {
        let kind = self
            .columns(s, table)?
            .into_iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(column))
            .map(|(_, t)| t.to_lowercase());
        Ok(match kind.as_deref() {
            Some(TYPE_NAIVE) => TimeColumn::Naive,
            Some(TYPE_ZONED) => TimeColumn::Zoned,
            _ => TimeColumn::Text,
        })
    }

    /// `None` too when the table was never analyzed.
    fn column_stats(&self, s: &Session, table: &'static str, column: &str) -> Option<(f64, f64)> {
        let rel = self.resolve(s, table).ok()?.found()?.clone();
        let column = rel.column(column)?;
        let row = self
            .client(s, table)
            .ok()?
            .query_opt(SQL_COLUMN_STATS, &[&rel.name, &column])
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

    /// Unknown: from a server the window decides how many rows come, not the table.
    fn rows_hint(&self, _: &Session, _: &'static str) -> usize {
        0
    }

    fn each_row(
        &self,
        s: &Session,
        table: &'static str,
        sql: &str,
        params: &[Param],
        f: &mut RowFn<'_>,
    ) -> Result<u64, DataError> {
        let sql = self.spell(s, sql)?;
        let mut client = self.client(s, table)?;
        let bound: Vec<&(dyn ::postgres::types::ToSql + Sync)> = params
            .iter()
            .map(|p| match p {
                Param::Zoned(t) => t as &(dyn ::postgres::types::ToSql + Sync),
                Param::Naive(t) => t,
                Param::Text(s) => s,
            })
            .collect();
        let mut rows = client
            .query_raw(sql.as_ref(), bound)
            .map_err(|e| pg_err(s, table, e))?;
        let mut n = 0u64;
        while let Some(row) = rows.next().map_err(|e| pg_err(s, table, e))? {
            n += 1;
            s.transfer.add(1, value::row_bytes(&row));
            f(&mut RowReader::new(&row, table, &s.name, n))?;
        }
        Ok(n)
    }

    /// The rows of `COPY (sql) TO STDOUT`, the cheapest way to receive them; bytes
    /// as they came over the wire: each row's text and its `CopyData` message's type
    /// and length (5 bytes; the server sends a message per row), as a run's rows
    /// are counted with their `DataRow` framing.
    fn scan(&self, s: &Session, table: &'static str, sql: &str) -> Result<(u64, u64), DataError> {
        use std::io::Read;
        let (mut rows, mut bytes) = (0u64, 0u64);
        // `sql` is one of the callers' constants (COPY takes no parameters).
        let copy = format!("COPY ({}) TO STDOUT", self.spell(s, sql)?);
        let mut client = self.client(s, table)?;
        let mut reader = client
            .copy_out(copy.as_str())
            .map_err(|e| pg_err(s, table, e))?;
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = reader
                .read(&mut buf)
                .map_err(|e| s.query_err(table, DriverError::new(e.to_string())))?;
            if n == 0 {
                break;
            }
            bytes += n as u64;
            rows += buf[..n].iter().filter(|&&b| b == b'\n').count() as u64;
        }
        Ok((rows, bytes + 5 * rows))
    }
}
