//! The PostgreSQL side of the data layer: where a warehouse is (`postgresql://` URLs,
//! the password from the environment only), the read-only session every run uses,
//! and how native column types become the values the readers hand out.

use std::fmt;

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use chrono_tz::Tz;
use postgres::types::{FromSql, Type};
use postgres::{Client, NoTls, Row};
use rust_decimal::prelude::ToPrimitive;
use rust_decimal::Decimal;

use super::timestamp;

/// The environment variable a password comes from unless the job names another.
pub const DEFAULT_PASSWORD_ENV: &str = "PGPASSWORD";

/// Read-only, UTC session: nothing a report runs can write, and `date_trunc` on
/// `timestamptz` cuts UTC days (the days the usage events are grouped by).
const SQL_SESSION: &str =
    "SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY; SET TIME ZONE 'UTC'";
const SQL_SESSION_UTC: &str = "SET TIME ZONE 'UTC'; SET client_min_messages = warning";
/// Points unqualified table names at the URL's schema (a bound value: the schema
/// name never becomes SQL).
const SQL_SEARCH_PATH: &str = "SELECT set_config('search_path', $1, false)";
const SQL_SCHEMA_EXISTS: &str = "SELECT count(*) FROM pg_namespace WHERE nspname = $1";

/// A PostgreSQL database as the user names it, without a password.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PgLocation {
    /// The URL as given (it cannot carry a password: see [`PgLocation::parse`]).
    pub url: String,
    /// The URL without cxreport's own parameters, for the client.
    client_url: String,
    /// `?schema=`: where the tables are (default: the server's search path).
    pub schema: Option<String>,
    /// The environment variable holding the password.
    pub password_env: String,
}

/// Why a `postgresql://` URL cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    #[error(
        "{url}: a password in the URL is refused (it would end up in files and logs); \
         set it in the environment ({env}) instead"
    )]
    Password { url: String, env: String },
    #[error("{url}: {message}")]
    Invalid { url: String, message: String },
}

impl PgLocation {
    /// Whether `s` names a PostgreSQL database rather than a SQLite file.
    pub fn is_url(s: &str) -> bool {
        s.starts_with("postgresql://") || s.starts_with("postgres://")
    }

    /// Parses `postgresql://user@host:port/db[?schema=s&…]`; other query parameters
    /// (`sslmode`, `connect_timeout`, `application_name`, …) go to the client.
    pub fn parse(url: &str, password_env: Option<&str>) -> Result<Self, UrlError> {
        let env = password_env.unwrap_or(DEFAULT_PASSWORD_ENV).to_owned();
        let (base, query) = url.split_once('?').unwrap_or((url, ""));
        let mut schema = None;
        let mut rest = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            match pair.split_once('=') {
                Some(("schema", s)) if !s.is_empty() => schema = Some(s.to_owned()),
                Some(("schema", _)) => {
                    return Err(UrlError::Invalid {
                        url: url.to_owned(),
                        message: "`schema=` needs a schema name".into(),
                    })
                }
                Some(("password", _)) => {
                    return Err(UrlError::Password {
                        url: redact(url),
                        env,
                    })
                }
                _ => rest.push(pair),
            }
        }
        let client_url = if rest.is_empty() {
            base.to_owned()
        } else {
            format!("{base}?{}", rest.join("&"))
        };
        let config: postgres::Config =
            client_url
                .parse()
                .map_err(|e: postgres::Error| UrlError::Invalid {
                    url: redact(url),
                    message: e.to_string(),
                })?;
        if config.get_password().is_some() {
            return Err(UrlError::Password {
                url: redact(url),
                env,
            });
        }
        if config.get_dbname().is_none() {
            return Err(UrlError::Invalid {
                url: url.to_owned(),
                message: "no database name (postgresql://user@host:port/dbname)".into(),
            });
        }
        Ok(Self {
            url: url.to_owned(),
            client_url,
            schema,
            password_env: env,
        })
    }

    /// Opens the read-only session every report reads through.
    pub fn connect(&self) -> Result<Client, String> {
        self.session(true)
    }

    /// A writable session whose schema exists (created when missing): for loading
    /// data into a server (the demo, tests, the benchmark), never for a report.
    pub fn connect_for_loading(&self) -> Result<Client, String> {
        self.session(false)
    }

    /// Opens a session with the password from the environment.
    fn session(&self, read_only: bool) -> Result<Client, String> {
        let mut config: postgres::Config = self.client_url.parse().map_err(|e| format!("{e}"))?;
        if let Some(pw) = std::env::var_os(&self.password_env) {
            config.password(pw.as_encoded_bytes());
        }
        if config.get_application_name().is_none() {
            config.application_name("cxreport");
        }
        let mut client = config.connect(NoTls).map_err(|e| error_text(&e))?;
        client
            .batch_execute(if read_only {
                SQL_SESSION
            } else {
                SQL_SESSION_UTC
            })
            .map_err(|e| error_text(&e))?;
        if let (Some(schema), false) = (&self.schema, read_only) {
            // DDL takes no parameters; the name is quoted as an identifier.
            client
                .batch_execute(&format!(
                    "CREATE SCHEMA IF NOT EXISTS {}",
                    quote_ident(schema)
                ))
                .map_err(|e| error_text(&e))?;
        }
        if let Some(schema) = &self.schema {
            let n: i64 = client
                .query_one(SQL_SCHEMA_EXISTS, &[schema])
                .map_err(|e| error_text(&e))?
                .get(0);
            if n == 0 {
                return Err(format!("schema `{schema}` does not exist in this database"));
            }
            client
                .query_one(SQL_SEARCH_PATH, &[&quote_ident(schema)])
                .map_err(|e| error_text(&e))?;
        }
        Ok(client)
    }
}

impl fmt::Display for PgLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.url)
    }
}

/// The URL with anything after `user:` up to `@` masked, for messages about a URL
/// that carried a password.
fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    match rest.split_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split(':').next().unwrap_or_default();
            let host = match host.split_once('?') {
                Some((h, _)) => h,
                None => host,
            };
            format!("{scheme}://{user}:***@{host}")
        }
        None => url.split('?').next().unwrap_or(url).to_owned(),
    }
}

/// A search-path entry for `name`, quoted (a name with capitals or spaces stays
/// itself).
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The server's message, with its detail and hint when it sent them.
pub fn error_text(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => {
            let mut s = db.message().to_owned();
            if let Some(d) = db.detail() {
                s.push_str(&format!(" ({d})"));
            }
            if let Some(h) = db.hint() {
                s.push_str(&format!("; hint: {h}"));
            }
            s
        }
        None => {
            let mut s = e.to_string();
            let mut source = std::error::Error::source(e);
            while let Some(inner) = source {
                s.push_str(&format!(": {inner}"));
                source = inner.source();
            }
            s
        }
    }
}

/// One value as PostgreSQL sent it, in the few shapes the readers need.
pub enum PgValue<'a> {
    Null,
    Text(&'a str),
    Int(i64),
    Real(f64),
    Bool(bool),
    Time(DateTime<Utc>),
    /// A value of a type the readers do not interpret (its type name).
    Other(&'a str),
}

/// Reads column `i` of `row` by its native type; `source_tz` places `timestamp`
/// (without time zone) and `date` values.
pub fn value<'a>(row: &'a Row, i: usize, source_tz: Tz) -> Result<PgValue<'a>, String> {
    let ty = row.columns()[i].type_();
    fn get<'a, T: FromSql<'a>>(row: &'a Row, i: usize) -> Result<Option<T>, String> {
        row.try_get::<_, Option<T>>(i).map_err(|e| error_text(&e))
    }
    let v = match *ty {
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN => {
            get::<&str>(row, i)?.map(PgValue::Text)
        }
        Type::INT2 => get::<i16>(row, i)?.map(|v| PgValue::Int(v.into())),
        Type::INT4 => get::<i32>(row, i)?.map(|v| PgValue::Int(v.into())),
        Type::INT8 => get::<i64>(row, i)?.map(PgValue::Int),
        Type::OID => get::<u32>(row, i)?.map(|v| PgValue::Int(v.into())),
        Type::FLOAT4 => get::<f32>(row, i)?.map(|v| PgValue::Real(v.into())),
        Type::FLOAT8 => get::<f64>(row, i)?.map(PgValue::Real),
        Type::NUMERIC => match get::<Decimal>(row, i) {
            Ok(v) => v.map(|d| PgValue::Real(d.to_f64().unwrap_or(f64::NAN))),
            // NaN, ±Infinity or beyond 96 bits: not a number a report can use.
            Err(e) => return Err(format!("a numeric value the reader cannot hold: {e}")),
        },
        Type::BOOL => get::<bool>(row, i)?.map(PgValue::Bool),
        Type::TIMESTAMPTZ => get::<DateTime<Utc>>(row, i)?.map(PgValue::Time),
        Type::TIMESTAMP => {
            get::<NaiveDateTime>(row, i)?.map(|t| PgValue::Time(timestamp::localize(t, source_tz)))
        }
        Type::DATE => get::<NaiveDate>(row, i)?.map(|d| {
            PgValue::Time(timestamp::localize(
                d.and_time(Default::default()),
                source_tz,
            ))
        }),
        _ => {
            // Any other type: NULL is NULL; a value is named by its type.
            if get::<Raw>(row, i)?.is_none() {
                None
            } else {
                Some(PgValue::Other(ty.name()))
            }
        }
    };
    Ok(v.unwrap_or(PgValue::Null))
}

/// The bytes of one column as sent, for the transfer count.
pub fn bytes(row: &Row, i: usize) -> u64 {
    row.try_get::<_, Option<Raw>>(i)
        .ok()
        .flatten()
        .map_or(0, |r| r.0 as u64)
}

/// Any value, as its length on the wire.
struct Raw(usize);

impl<'a> FromSql<'a> for Raw {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Raw(raw.len()))
    }
    fn accepts(_: &Type) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_take_a_schema_and_refuse_passwords() {
        let l = PgLocation::parse(
            "postgresql://ana@db.internal:5433/warehouse?schema=dbt_intercom",
            None,
        )
        .unwrap();
        assert_eq!(l.schema.as_deref(), Some("dbt_intercom"));
        assert_eq!(l.password_env, "PGPASSWORD");
        assert_eq!(l.client_url, "postgresql://ana@db.internal:5433/warehouse");
        let l = PgLocation::parse(
            "postgres://ana@h/w?sslmode=disable&schema=s&connect_timeout=5",
            Some("WAREHOUSE_PW"),
        )
        .unwrap();
        assert_eq!(
            l.client_url,
            "postgres://ana@h/w?sslmode=disable&connect_timeout=5"
        );
        assert_eq!(l.password_env, "WAREHOUSE_PW");

        let e = PgLocation::parse("postgresql://ana:s3cret@h:5432/w", None).unwrap_err();
        let msg = e.to_string();
        assert!(!msg.contains("s3cret"), "{msg}");
        assert!(msg.contains("PGPASSWORD"), "{msg}");
        let e = PgLocation::parse("postgresql://ana@h/w?password=s3cret", Some("X")).unwrap_err();
        assert!(!e.to_string().contains("s3cret"), "{e}");
        assert!(e.to_string().contains("(X)"), "{e}");

        for bad in [
            "postgresql://ana@h",
            "postgresql://ana@h/w?schema=",
            "postgresql://ana@h/w?nonsense=1",
        ] {
            assert!(
                matches!(PgLocation::parse(bad, None), Err(UrlError::Invalid { .. })),
                "{bad}"
            );
        }
        assert!(PgLocation::is_url("postgres://x@y/z"));
        assert!(!PgLocation::is_url("data/cx.sqlite"));
    }

    #[test]
    fn search_path_names_are_quoted() {
        assert_eq!(quote_ident("dbt_intercom"), "\"dbt_intercom\"");
        assert_eq!(quote_ident("we\"ird, name"), "\"we\"\"ird, name\"");
    }
}
