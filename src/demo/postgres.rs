//! Copies a SQLite database of the contract's tables into PostgreSQL with the types
//! dbt_intercom builds them with (`sql/dbt-intercom-columns.txt`: timestamps as
//! `timestamp without time zone`, ids as `bigint`, `numeric`, `boolean`…), so a
//! warehouse can be tried, tested and benchmarked with the demo or a fixture.
//! Columns the list does not name take a type from their name (`*_at`, `*_ts`,
//! `*_time`, `*_date`: timestamps) or their SQLite type. Each table is replaced in one
//! transaction and loaded with `COPY … FROM STDIN`.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;

use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags};

use chrono_tz::Tz;

use crate::source::pg::quote_ident;
use crate::source::timestamp;
use crate::source::PgLocation;

/// `table.column type`, one per line, as the package builds them.
const DBT_INTERCOM_COLUMNS: &str = include_str!("sql/dbt-intercom-columns.txt");

const SQL_TABLES: &str =
    "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name";
const SQL_COLUMNS: &str = "SELECT name, type FROM pragma_table_info(?1)";

/// Why a copy into PostgreSQL failed.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    #[error("reading {path}: {cause}")]
    Read {
        path: std::path::PathBuf,
        cause: rusqlite::Error,
    },
    #[error("cannot connect to {url}: {message}")]
    Connect { url: String, message: String },
    #[error("writing table {table} into {url}: {message}")]
    Write {
        url: String,
        table: String,
        message: String,
    },
}

impl crate::exit::Classify for CopyError {
    /// A file that cannot be read or a server that cannot be reached is where the
    /// user pointed; a copy that fails on the way is the work's.
    fn exit(&self) -> crate::exit::Exit {
        use crate::exit::Exit;
        match self {
            Self::Read { .. } | Self::Connect { .. } => Exit::Usage,
            Self::Write { .. } => Exit::Failed,
        }
    }
}

/// Tables and rows copied.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Copied {
    pub tables: usize,
    pub rows: u64,
}

/// The PostgreSQL type of `table.column`.
fn pg_type(known: &HashMap<&str, &str>, table: &str, column: &str, sqlite_type: &str) -> String {
    if let Some(t) = known.get(format!("{table}.{column}").as_str()) {
        return (*t).to_owned();
    }
    let c = column.to_ascii_lowercase();
    if ["_at", "_ts", "_time", "_date"]
        .iter()
        .any(|s| c.ends_with(s))
    {
        return "timestamp without time zone".into();
    }
    match sqlite_type.to_ascii_uppercase().as_str() {
        t if t.contains("INT") => "bigint".into(),
        t if t.contains("REAL") || t.contains("FLOA") || t.contains("DOUB") => {
            "double precision".into()
        }
        _ => "text".into(),
    }
}

/// Copies every table of the SQLite file `from` into `to` (its `?schema=`, created
/// when missing), replacing tables of the same names.
pub fn copy_to_postgres(from: &Path, to: &PgLocation, tz: Tz) -> Result<Copied, CopyError> {
    let read = |source| CopyError::Read {
        path: from.to_owned(),
        cause: source,
    };
    let src = Connection::open_with_flags(from, OpenFlags::SQLITE_OPEN_READ_ONLY).map_err(read)?;
    let url = to.url.clone();
    let mut client = to
        .connect_for_loading()
        .map_err(|message| CopyError::Connect {
            url: url.clone(),
            message,
        })?;
    let known: HashMap<&str, &str> = DBT_INTERCOM_COLUMNS
        .lines()
        .filter_map(|l| l.split_once(' '))
        .collect();
    let tables: Vec<String> = src
        .prepare(SQL_TABLES)
        .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
        .map_err(read)?;
    let mut copied = Copied::default();
    for table in tables {
        let columns: Vec<(String, String)> = src
            .prepare(SQL_COLUMNS)
            .and_then(|mut s| {
                s.query_map([&table], |r| Ok((r.get(0)?, r.get(1)?)))?
                    .collect()
            })
            .map_err(read)?;
        let mut types: Vec<String> = columns
            .iter()
            .map(|(c, t)| pg_type(&known, &table, c, t))
            .collect();
        let cols: Vec<String> = columns.iter().map(|(c, _)| quote_ident(c)).collect();
        // Identifiers cannot be bound; they come from the file's own schema, quoted.
        let select = format!("SELECT {} FROM {}", cols.join(", "), quote_ident(&table));
        // The package's type, unless this file holds a value it cannot take (the
        // demo's `cv_00000001` conversation ids): then text, as stored.
        {
            let mut stmt = src.prepare(&select).map_err(read)?;
            let mut rows = stmt.query([]).map_err(read)?;
            let mut scratch = Vec::new();
            while let Some(row) = rows.next().map_err(read)? {
                for (i, ty) in types.iter_mut().enumerate() {
                    scratch.clear();
                    if !copy_value(&mut scratch, row.get_ref(i).map_err(read)?, ty, tz) {
                        *ty = "text".into();
                    }
                }
            }
        }
        let write = |message: String| CopyError::Write {
            url: url.clone(),
            table: table.clone(),
            message,
        };
        let pg = |e: postgres::Error| write(crate::source::pg::error_text(&e));
        // DDL and COPY take no parameters: every name is quoted as an identifier.
        let name = quote_ident(&table);
        let defs: Vec<String> = columns
            .iter()
            .zip(&types)
            .map(|((c, _), t)| format!("{} {t}", quote_ident(c)))
            .collect();
        let mut tx = client.transaction().map_err(pg)?;
        tx.batch_execute(&format!(
            "DROP TABLE IF EXISTS {name}; CREATE TABLE {name} ({})",
            defs.join(", ")
        ))
        .map_err(pg)?;
        let mut writer = tx
            .copy_in(&format!("COPY {name} ({}) FROM STDIN", cols.join(", ")))
            .map_err(pg)?;
        let mut stmt = src.prepare(&select).map_err(read)?;
        let mut rows = stmt.query([]).map_err(read)?;
        let mut line = Vec::with_capacity(256);
        while let Some(row) = rows.next().map_err(read)? {
            line.clear();
            for (i, ty) in types.iter().enumerate() {
                if i > 0 {
                    line.push(b'\t');
                }
                copy_value(&mut line, row.get_ref(i).map_err(read)?, ty, tz);
            }
            line.push(b'\n');
            writer.write_all(&line).map_err(|e| write(e.to_string()))?;
            copied.rows += 1;
        }
        writer.finish().map_err(pg)?;
        tx.batch_execute(&format!("ANALYZE {name}")).map_err(pg)?;
        tx.commit().map_err(pg)?;
        copied.tables += 1;
    }
    Ok(copied)
}

/// Writes one value in COPY's text format for a column of PostgreSQL type `ty`;
/// `false` when the type cannot take it. Timestamp texts are read as the reports
/// read them (any contract form; without an offset, in `tz`) and written as `tz`'s
/// local time, which is what a `timestamp without time zone` holds.
fn copy_value(out: &mut Vec<u8>, v: ValueRef<'_>, ty: &str, tz: Tz) -> bool {
    let integer = matches!(ty, "bigint" | "integer" | "smallint");
    let number = integer || matches!(ty, "numeric" | "double precision" | "real");
    let time = ty.starts_with("timestamp");
    match v {
        ValueRef::Null => out.extend_from_slice(b"\\N"),
        ValueRef::Integer(n) if ty == "boolean" => {
            out.extend_from_slice(if n != 0 { b"t" } else { b"f" })
        }
        ValueRef::Integer(_) | ValueRef::Real(_) if time => return false,
        ValueRef::Integer(n) => out.extend_from_slice(n.to_string().as_bytes()),
        // pandas writes integer columns with NULLs as floats (`3.0`).
        ValueRef::Real(f) if integer && f.fract() == 0.0 && f.abs() < 9.0e15 => {
            out.extend_from_slice((f as i64).to_string().as_bytes())
        }
        ValueRef::Real(f) if integer || ty == "boolean" || (number && !f.is_finite()) => {
            return false
        }
        ValueRef::Real(f) => out.extend_from_slice(f.to_string().as_bytes()),
        ValueRef::Blob(_) if ty != "text" => return false,
        ValueRef::Text(t) | ValueRef::Blob(t) => {
            // An empty text is NULL to every typed column.
            if t.is_empty() && ty != "text" {
                out.extend_from_slice(b"\\N");
                return true;
            }
            let Ok(s) = std::str::from_utf8(t) else {
                // A UTF-8 server takes no other bytes: replaced, visibly (U+FFFD).
                return ty == "text" && escape(out, String::from_utf8_lossy(t).as_bytes());
            };
            let s_trim = s.trim();
            if time {
                let Ok(at) = timestamp::parse(s, tz) else {
                    return false;
                };
                let local = at.with_timezone(&tz).naive_local();
                out.extend_from_slice(local.format("%Y-%m-%d %H:%M:%S%.6f").to_string().as_bytes());
            } else if integer {
                if s_trim.parse::<i64>().is_err() {
                    return false;
                }
                out.extend_from_slice(s_trim.as_bytes());
            } else if number {
                if !s_trim.parse::<f64>().is_ok_and(f64::is_finite) {
                    return false;
                }
                out.extend_from_slice(s_trim.as_bytes());
            } else if ty == "boolean" {
                match s_trim.to_ascii_lowercase().as_str() {
                    "1" | "t" | "true" => out.push(b't'),
                    "0" | "f" | "false" => out.push(b'f'),
                    _ => return false,
                }
            } else {
                escape(out, t);
            }
        }
    }
    true
}

/// Text with COPY's escapes.
fn escape(out: &mut Vec<u8>, t: &[u8]) -> bool {
    for &b in t {
        match b {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\t' => out.extend_from_slice(b"\\t"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            _ => out.push(b),
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_come_from_the_package_then_names_then_sqlite() {
        let known: HashMap<&str, &str> = DBT_INTERCOM_COLUMNS
            .lines()
            .filter_map(|l| l.split_once(' '))
            .collect();
        let t = |table, column, sqlite| pg_type(&known, table, column, sqlite);
        assert_eq!(
            t("intercom__conversation_enhanced", "conversation_id", "TEXT"),
            "bigint"
        );
        assert_eq!(
            t(
                "intercom__conversation_metrics",
                "time_to_first_response_minutes",
                "REAL"
            ),
            "numeric"
        );
        assert_eq!(
            t(
                "intercom__conversation_enhanced",
                "conversation_created_at",
                "TEXT"
            ),
            "timestamp without time zone"
        );
        assert_eq!(
            t("usage_events", "occurred_at", "TEXT"),
            "timestamp without time zone"
        );
        assert_eq!(t("usage_events", "is_core", "INTEGER"), "bigint");
        assert_eq!(t("users", "annual_revenue", "REAL"), "double precision");
        assert_eq!(t("users", "plan_type", ""), "text");
    }

    #[test]
    fn copy_text_escapes_and_types() {
        let utc = Tz::UTC;
        let mut out = Vec::new();
        assert!(copy_value(
            &mut out,
            ValueRef::Text(b"a\tb\\c\nd"),
            "text",
            utc
        ));
        assert_eq!(out, b"a\\tb\\\\c\\nd");
        let ts = "timestamp without time zone";
        for (v, ty, tz, want) in [
            (ValueRef::Null, "text", utc, Some("\\N")),
            (ValueRef::Text(b""), "bigint", utc, Some("\\N")),
            (ValueRef::Text(b""), "text", utc, Some("")),
            (ValueRef::Integer(1), "boolean", utc, Some("t")),
            (ValueRef::Real(3.0), "integer", utc, Some("3")),
            (ValueRef::Real(2.5), "numeric", utc, Some("2.5")),
            (ValueRef::Text(b"cv_01"), "bigint", utc, None),
            (ValueRef::Text(b"12"), "bigint", utc, Some("12")),
            (
                ValueRef::Text(b"2024-01-09T09:54:03+08:00"),
                ts,
                utc,
                Some("2024-01-09 01:54:03.000000"),
            ),
            (
                ValueRef::Text(b"2024-01-09 09:54:03"),
                ts,
                Tz::Asia__Shanghai,
                Some("2024-01-09 09:54:03.000000"),
            ),
            (
                ValueRef::Text(b"2024-01-09T01:54:03Z"),
                ts,
                Tz::Asia__Shanghai,
                Some("2024-01-09 09:54:03.000000"),
            ),
            (ValueRef::Text(b"soon"), ts, utc, None),
            (ValueRef::Integer(5), ts, utc, None),
        ] {
            let mut out = Vec::new();
            let ok = copy_value(&mut out, v, ty, tz);
            assert_eq!(
                ok.then(|| String::from_utf8(out).unwrap()).as_deref(),
                want,
                "{ty}"
            );
        }
    }
}
