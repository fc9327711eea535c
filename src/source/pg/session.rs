//! Where a PostgreSQL warehouse is and the sessions opened to it: `postgresql://`
//! URLs (the password from the environment only, never shown in a message), the
//! read-only session every run uses, the writable one loading uses, and the server's
//! errors as text.
//!
//! Why this file is long: about 470 lines of code, the rest its tests (URL forms,
//! password sources, the messages of a server's errors).

use std::fmt;
use std::sync::mpsc;
use std::time::Duration;

use postgres::config::{Host, SslMode as DriverSslMode};
use postgres::{Client, NoTls};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::tls::{self, Link, Probe, SslMode, TlsSettings, Verified};
use crate::source::error::UrlError;

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
    /// `sslmode` and `sslrootcert` (kept from the client: it knows neither
    /// `verify-ca`/`verify-full` nor root files).
    pub tls: TlsSettings,
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
        let (mut sslmode, mut sslrootcert) = (None, None);
        let mut rest = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            match pair.split_once('=') {
                Some(("schema", s)) if !s.is_empty() => schema = Some(s.to_owned()),
                Some(("sslmode", m)) => sslmode = Some(m),
                Some(("sslrootcert", f)) => sslrootcert = Some(f),
                Some((k @ ("sslcert" | "sslkey" | "sslpassword"), _)) => {
                    return Err(UrlError::Invalid {
                        url: redact(url),
                        message: format!(
                            "`{k}=`: client certificates are not supported; the server \
                             is verified with sslmode=verify-full and sslrootcert=FILE, \
                             the user signs in with a password from the environment"
                        ),
                    })
                }
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
        let tls = TlsSettings::from_parts(sslmode, sslrootcert, |k| std::env::var(k).ok())
            .map_err(|message| UrlError::Invalid {
                url: redact(url),
                message,
            })?;
        Ok(Self {
            url: url.to_owned(),
            client_url,
            schema,
            password_env: env,
            tls,
        })
    }

    /// Opens the read-only session every report reads through, within
    /// [`DEFAULT_CONNECT_LIMIT`].
    pub fn connect(&self) -> Result<(Client, Link), ConnectError> {
        self.connect_within(DEFAULT_CONNECT_LIMIT)
    }

    /// Opens the read-only session, giving up after `limit`. The driver bounds only
    /// the TCP connect; a server (or a proxy) that accepts and then never answers
    /// would hold its startup forever, so the session is opened on a thread of its
    /// own that is left behind when the limit passes: it ends when the server closes
    /// the socket or the process exits, and nothing waits for it.
    pub fn connect_within(&self, limit: Duration) -> Result<(Client, Link), ConnectError> {
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
            Ok(r) => r,
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
            .map(|(client, _)| client)
            .map_err(|e| e.to_string())
    }

    /// Opens a session with the password from the environment, protected as the
    /// location's `sslmode` says; `limit` also bounds the TCP connect (unless the
    /// URL's `connect_timeout` is shorter).
    fn session(
        &self,
        read_only: bool,
        limit: Option<Duration>,
    ) -> Result<(Client, Link), ConnectError> {
        let driver = ConnectError::Driver;
        let mut config: postgres::Config = self
            .client_url
            .parse()
            .map_err(|e| driver(format!("{e}")))?;
        let password = std::env::var_os(&self.password_env);
        if let Some(pw) = &password {
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
        let encrypt = self.encrypts(&config, password.is_some(), limit)?;
        let link = Link {
            sslmode: self.tls.mode,
            encrypted: encrypt,
            verified: if encrypt {
                self.tls.verified()
            } else {
                Verified::Nothing
            },
        };
        let connected = if encrypt {
            let tls = self.tls.client_config().map_err(driver)?;
            config.ssl_mode(DriverSslMode::Require);
            config.connect(MakeRustlsConnect::new(tls))
        } else {
            config.ssl_mode(DriverSslMode::Disable);
            config.connect(NoTls)
        };
        let mut client = connected.map_err(|e| driver(self.connect_error(&e)))?;
        client
            .batch_execute(if read_only {
                SQL_SESSION
            } else {
                SQL_SESSION_UTC
            })
            .map_err(|e| driver(error_text(&e)))?;
        if let (Some(schema), false) = (&self.schema, read_only) {
            // DDL takes no parameters; the name is quoted as an identifier.
            client
                .batch_execute(&format!(
                    "CREATE SCHEMA IF NOT EXISTS {}",
                    quote_ident(schema)
                ))
                .map_err(|e| driver(error_text(&e)))?;
        }
        if let Some(schema) = &self.schema {
            let n: i64 = client
                .query_one(SQL_SCHEMA_EXISTS, &[schema])
                .map_err(|e| driver(error_text(&e)))?
                .get(0);
            if n == 0 {
                return Err(driver(format!(
                    "schema `{schema}` does not exist in this database"
                )));
            }
            client
                .query_one(SQL_SEARCH_PATH, &[&quote_ident(schema)])
                .map_err(|e| driver(error_text(&e)))?;
        }
        Ok((client, link))
    }

    /// Whether the session is to be encrypted. `prefer` asks the server first; a
    /// session that will be unencrypted and carries a password is opened only if the
    /// server will not have that password sent in clear. A socket on this machine
    /// (a Unix socket) is neither encrypted nor probed: nothing crosses a network.
    fn encrypts(
        &self,
        config: &postgres::Config,
        password: bool,
        limit: Option<Duration>,
    ) -> Result<bool, ConnectError> {
        let mode = self.tls.mode;
        if matches!(
            mode,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull
        ) {
            return Ok(true);
        }
        let Some(Host::Tcp(host)) = config.get_hosts().first() else {
            return Ok(false);
        };
        if mode == SslMode::Disable && !password {
            return Ok(false);
        }
        let port = config.get_ports().first().copied().unwrap_or(5432);
        let limit = limit.unwrap_or(DEFAULT_CONNECT_LIMIT);
        let asked = tls::probe(
            host,
            port,
            config.get_user(),
            config.get_dbname(),
            mode == SslMode::Prefer,
            limit,
        );
        match asked {
            Ok(Probe::Tls) => Ok(true),
            Ok(Probe::Cleartext) if password => Err(ConnectError::Cleartext {
                server: self.server(),
                sslmode: mode,
            }),
            Ok(_) => {
                if mode == SslMode::Prefer {
                    let loopback = host == "localhost"
                        || host
                            .parse::<std::net::IpAddr>()
                            .is_ok_and(|a| a.is_loopback());
                    if loopback {
                        tracing::info!(server = %self.server(), "the server offers no TLS: the session is unencrypted (on this machine)");
                    } else {
                        tracing::warn!(server = %self.server(), "the server offers no TLS: the session is unencrypted (sslmode=prefer; set sslmode=verify-full to refuse that)");
                    }
                }
                Ok(false)
            }
            // The real connect names the failure (refused, unknown host) as the driver
            // words it.
            Err(_) => Ok(false),
        }
    }

    /// A failed connect as the user reads it: a TLS failure names the mode and what
    /// to set.
    fn connect_error(&self, e: &postgres::Error) -> String {
        let text = error_text(e);
        if text.contains("password missing") {
            let named = if self.password_env == DEFAULT_PASSWORD_ENV {
                format!("export {DEFAULT_PASSWORD_ENV}")
            } else {
                format!(
                    "set {} (the job's database_password_env)",
                    self.password_env
                )
            };
            return format!(
                "the server asks for a password and {} is not set: {named}",
                self.password_env
            );
        }
        let tls_failed = text.contains("TLS") || text.contains("certificate");
        match self.tls.mode {
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull if tls_failed => {
                let what = match self.tls.verified() {
                    Verified::ChainAndHostName => {
                        "the server's certificate must be signed by a trusted authority \
                         (sslrootcert=FILE) and name the host of the URL"
                    }
                    Verified::Chain => {
                        "the server's certificate must be signed by a trusted authority \
                         (sslrootcert=FILE)"
                    }
                    Verified::Nothing => "the server must accept TLS",
                };
                format!("{text} (sslmode={}: {what})", self.tls.mode.name())
            }
            _ => text,
        }
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
    #[error(
        "connecting to {server}: the server asks for the password in clear on an \
         unencrypted session (sslmode={}): refused, the password would cross the network \
         readable; connect with sslmode=require (or verify-full), or have the server \
         authenticate with scram-sha-256",
        .sslmode.name()
    )]
    Cleartext { server: String, sslmode: SslMode },
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
        assert_eq!(l.client_url, "postgres://ana@h/w?connect_timeout=5");
        assert_eq!(l.tls.mode, SslMode::Disable);
        assert_eq!(l.password_env, "WAREHOUSE_PW");
        // libpq's modes the client does not know, and a root file: ours, not the
        // client's (they used to give "invalid connection string").
        let l = PgLocation::parse(
            "postgresql://ana@h/w?sslmode=verify-full&sslrootcert=/etc/ca.pem",
            None,
        )
        .unwrap();
        assert_eq!(l.client_url, "postgresql://ana@h/w");
        assert_eq!(
            (l.tls.mode, l.tls.root_cert.as_deref()),
            (
                SslMode::VerifyFull,
                Some(std::path::Path::new("/etc/ca.pem"))
            )
        );
        let e = PgLocation::parse("postgresql://ana@h/w?sslmode=on", None).unwrap_err();
        assert!(e.to_string().contains("`on` is not an sslmode"), "{e}");

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
