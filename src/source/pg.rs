//! The PostgreSQL side of the data layer: where a warehouse is (`postgresql://` URLs,
//! the password from the environment only), the read-only session every run uses,
//! and how native column types become the values the readers hand out.

use std::fmt;
use std::sync::mpsc;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use chrono_tz::Tz;
use postgres::types::{FromSql, Type};
use postgres::{Client, NoTls, Row};
use rust_decimal::prelude::ToPrimitive;
use rust_decimal::Decimal;

use super::timestamp;

/// The environment variable a password comes from unless the job names another.
pub const DEFAULT_PASSWORD_ENV: &str = "PGPASSWORD";

/// How long opening a session may take when the caller sets no time limit: the
/// driver's own startup waits for the server without end.
pub const DEFAULT_CONNECT_LIMIT: Duration = Duration::from_secs(30);

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

impl crate::exit::Classify for UrlError {
    /// The URL is the one the user gave.
    fn exit(&self) -> crate::exit::Exit {
        match self {
            Self::Password { .. } | Self::Invalid { .. } => crate::exit::Exit::Usage,
        }
    }
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
                        url: redact(url),
                        message: "`schema=` needs a schema name (…?schema=dbt_intercom)".into(),
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
                url: redact(url),
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

    /// Opens the read-only session every report reads through, within
    /// [`DEFAULT_CONNECT_LIMIT`].
    pub fn connect(&self) -> Result<Client, ConnectError> {
        self.connect_within(DEFAULT_CONNECT_LIMIT)
    }

    /// Opens the read-only session, giving up after `limit`. The driver bounds only
    /// the TCP connect; a server (or a proxy) that accepts and then never answers
    /// would hold its startup forever, so the session is opened on a thread of its
    /// own that is left behind when the limit passes: it ends when the server closes
    /// the socket or the process exits, and nothing waits for it.
    pub fn connect_within(&self, limit: Duration) -> Result<Client, ConnectError> {
        let (tx, rx) = mpsc::sync_channel(1);
        let me = self.clone();
        std::thread::Builder::new()
            .name("pg-connect".into())
            .spawn(move || {
                // The receiver is gone when the limit passed first: nobody to tell.
                let _ = tx.send(me.session(true, Some(limit)));
            })
            .map_err(|e| ConnectError::Driver(format!("cannot start connecting: {e}")))?;
        match rx.recv_timeout(limit) {
            Ok(r) => r.map_err(ConnectError::Driver),
            Err(mpsc::RecvTimeoutError::Timeout) => Err(ConnectError::NoAnswer {
                server: self.server(),
                limit,
            }),
            Err(mpsc::RecvTimeoutError::Disconnected) => Err(ConnectError::Driver(format!(
                "connecting to {}: the connection attempt ended without an answer",
                self.server()
            ))),
        }
    }

    /// The host(s) and port(s) the URL names, as `host:port` (for messages).
    pub fn server(&self) -> String {
        let Ok(config) = self.client_url.parse::<postgres::Config>() else {
            return redact(&self.url);
        };
        let ports = config.get_ports();
        config
            .get_hosts()
            .iter()
            .enumerate()
            .map(|(i, h)| {
                let port = ports.get(i).or(ports.first()).copied().unwrap_or(5432);
                match h {
                    postgres::config::Host::Tcp(h) => format!("{h}:{port}"),
                    postgres::config::Host::Unix(p) => format!("{}:{port}", p.display()),
                }
            })
            .collect::<Vec<_>>()
            .join(",")
    }

    /// A writable session whose schema exists (created when missing): for loading
    /// data into a server (the demo, tests, the benchmark), never for a report.
    pub fn connect_for_loading(&self) -> Result<Client, String> {
        self.session(false, None)
    }

    /// Opens a session with the password from the environment; `limit` also bounds
    /// the TCP connect (unless the URL's `connect_timeout` is shorter).
    fn session(&self, read_only: bool, limit: Option<Duration>) -> Result<Client, String> {
        let mut config: postgres::Config = self.client_url.parse().map_err(|e| format!("{e}"))?;
        if let Some(pw) = std::env::var_os(&self.password_env) {
            config.password(pw.as_encoded_bytes());
        }
        if let Some(limit) = limit {
            if config.get_connect_timeout().is_none_or(|t| *t > limit) {
                config.connect_timeout(limit.max(Duration::from_millis(1)));
            }
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
        f.write_str(&redact(&self.url))
    }
}

/// The URL as every message shows it: a password masked wherever it was written
/// (`user:***@host`, `password=***`). The credentials end at the last `@`, so a raw `@`
/// in a user name or password cannot push part of the password into the host; a URL
/// whose query holds an `@` may be masked more than needed, never less.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (authority, tail) = match rest.rfind('@') {
        Some(at) => {
            let (userinfo, host) = (&rest[..at], &rest[at + 1..]);
            let user = match userinfo.split_once(':') {
                Some((user, _)) => format!("{user}:***"),
                None => userinfo.to_owned(),
            };
            (format!("{user}@"), host)
        }
        None => (String::new(), rest),
    };
    let tail = match tail.split_once('?') {
        Some((path, query)) => {
            let query: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
                    _ => pair.to_owned(),
                })
                .collect();
            format!("{path}?{}", query.join("&"))
        }
        None => tail.to_owned(),
    };
    format!("{scheme}://{authority}{tail}")
}

/// Why a session could not be opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnectError {
    #[error("connecting to {server}: no answer within {} s", secs(*.limit))]
    NoAnswer { server: String, limit: Duration },
    #[error("{0}")]
    Driver(String),
}

/// A limit in whole seconds as messages print it (a part of a second counts as one).
fn secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
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
            // The driver's own text may already end with its cause ("error connecting
            // to server: Connection refused"): each cause is said once.
            let mut s = e.to_string();
            let mut source = std::error::Error::source(e);
            while let Some(inner) = source {
                let text = inner.to_string();
                if !s.contains(&text) {
                    s.push_str(&format!(": {text}"));
                }
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
    // The values no number or time can hold (`NaN`, `infinity`, …) come out as the
    // text PostgreSQL prints for them: the readers then treat them exactly as the same
    // text in a SQLite file (an unreadable time is counted, not an error).
    if let Some(text) = special(ty, row, i) {
        return Ok(PgValue::Text(text));
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
            // Beyond rust_decimal's 96 bits: still a number, read from its digits.
            Err(_) => match get::<Raw>(row, i)? {
                None => None,
                Some(_) => Some(PgValue::Real(
                    numeric_f64(row, i).ok_or("a numeric value that cannot be decoded")?,
                )),
            },
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

/// The text PostgreSQL prints for a value of `ty` that is no finite number or time
/// (`NaN`, `Infinity`, `-Infinity`, `infinity`, `-infinity`), from the binary form the
/// server sent; `None` for every other value.
fn special(ty: &Type, row: &Row, i: usize) -> Option<&'static str> {
    let raw = || {
        row.try_get::<_, Option<Bytes<'_>>>(i)
            .ok()
            .flatten()
            .map(|b| b.0)
    };
    match *ty {
        // The sign word of a numeric: NaN, +Infinity, -Infinity.
        Type::NUMERIC => match raw()?.get(4..6)? {
            [0xC0, 0x00] => Some("NaN"),
            [0xD0, 0x00] => Some("Infinity"),
            [0xF0, 0x00] => Some("-Infinity"),
            _ => None,
        },
        Type::TIMESTAMP | Type::TIMESTAMPTZ => match i64::from_be_bytes(raw()?.try_into().ok()?) {
            i64::MAX => Some("infinity"),
            i64::MIN => Some("-infinity"),
            _ => None,
        },
        Type::DATE => match i32::from_be_bytes(raw()?.try_into().ok()?) {
            i32::MAX => Some("infinity"),
            i32::MIN => Some("-infinity"),
            _ => None,
        },
        _ => None,
    }
}

/// A finite numeric too large for rust_decimal, from its base-10000 digits
/// (`ndigits`, `weight`, `sign`, `dscale`, then the digits).
fn numeric_f64(row: &Row, i: usize) -> Option<f64> {
    let raw = row.try_get::<_, Option<Bytes<'_>>>(i).ok()??.0;
    let word = |k: usize| raw.get(k..k + 2).map(|b| u16::from_be_bytes([b[0], b[1]]));
    let ndigits = usize::from(word(0)?);
    let weight = i32::from(word(2)? as i16);
    let negative = match word(4)? {
        0x0000 => false,
        0x4000 => true,
        _ => return None,
    };
    // Digits printed in decimal and parsed once: correctly rounded, as SQLite would
    // read the same number from text.
    let mut text = String::with_capacity(ndigits * 4 + 8);
    if negative {
        text.push('-');
    }
    for k in 0..ndigits {
        text.push_str(&format!("{:04}", word(8 + 2 * k)?));
    }
    if ndigits == 0 {
        text.push('0');
    }
    let exponent = 4 * (weight + 1 - ndigits as i32);
    text.push_str(&format!("e{exponent}"));
    text.parse().ok()
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

/// Any value, as the bytes on the wire.
struct Bytes<'a>(&'a [u8]);

impl<'a> FromSql<'a> for Bytes<'a> {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Bytes(raw))
    }
    fn accepts(_: &Type) -> bool {
        true
    }
}

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
    fn no_message_shows_a_password_wherever_the_url_put_it() {
        for (url, shown) in [
            // A raw `@` in the password: the credentials end at the last `@`.
            (
                "postgresql://ana:p@ss@h:5432/w",
                "postgresql://ana:***@h:5432/w",
            ),
            // A raw `@` in the user name, and the password after it.
            (
                "postgresql://ana@corp:s3cret@h/w?schema=s",
                "postgresql://ana@corp:***@h/w?schema=s",
            ),
            // Percent-encoded, as a URL should carry them.
            (
                "postgres://ana%40corp:s3%40cret@h/w",
                "postgres://ana%40corp:***@h/w",
            ),
            (
                "postgresql://ana@h/w?sslmode=disable&password=s3cret",
                "postgresql://ana@h/w?sslmode=disable&password=***",
            ),
            // Nothing to hide: shown as written.
            (
                "postgresql://ana@h:5432/w?schema=s",
                "postgresql://ana@h:5432/w?schema=s",
            ),
            ("postgresql://h/w", "postgresql://h/w"),
        ] {
            assert_eq!(redact(url), shown, "{url}");
        }
        // Every refusal of a URL with a password, whatever else is wrong with it.
        for url in [
            "postgresql://ana:s3cret@h/w?schema=",
            "postgresql://ana:s3cret@h",
            "postgresql://ana@corp:s3cret@h/w",
            "postgresql://ana:s3@cret@h/w",
            "postgresql://ana:s3cret@h/w?nonsense=1",
            "postgresql://ana@h/w?schema=s&password=s3cret",
        ] {
            let e = PgLocation::parse(url, None).unwrap_err().to_string();
            assert!(!e.contains("s3") && !e.contains("cret"), "{url}: {e}");
        }
        let e = PgLocation::parse("postgresql://ana:s3cret@h/w?schema=", None).unwrap_err();
        assert!(
            e.to_string().contains("`schema=` needs a schema name"),
            "{e}"
        );
        // A location that was accepted is shown through the same function.
        let l = PgLocation::parse("postgresql://ana%40corp@h/w?schema=s", None).unwrap();
        assert_eq!(l.to_string(), redact(&l.url));
        assert_eq!(l.server(), "h:5432");
    }

    #[test]
    fn a_server_that_accepts_and_never_answers_is_given_up_on() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        // Accepts and holds every connection without a byte in reply.
        std::thread::spawn(move || {
            let held: Vec<_> = listener.incoming().collect();
            drop(held);
        });
        let l = PgLocation::parse(&format!("postgresql://ana@127.0.0.1:{port}/w"), None).unwrap();
        let e = l
            .connect_within(Duration::from_millis(300))
            .err()
            .expect("no session from a silent server");
        assert_eq!(
            e,
            ConnectError::NoAnswer {
                server: format!("127.0.0.1:{port}"),
                limit: Duration::from_millis(300)
            }
        );
        assert_eq!(
            e.to_string(),
            format!("connecting to 127.0.0.1:{port}: no answer within 1 s")
        );
    }

    #[test]
    fn search_path_names_are_quoted() {
        assert_eq!(quote_ident("dbt_intercom"), "\"dbt_intercom\"");
        assert_eq!(quote_ident("we\"ird, name"), "\"we\"\"ird, name\"");
    }
}
