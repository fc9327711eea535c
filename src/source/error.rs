//! The data layer's errors, one shape for both drivers: what went wrong names the
//! database, table, column and row, and a value or a driver's message is quoted only
//! in part (a cell can be megabytes long). Each driver turns its own errors into a
//! [`DriverError`] in its file (`sqlite`, `pg`).

use std::fmt;

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
    #[error(
        "database {db}: table `{table}` is there but role `{role}` may not read it \
         (permission denied); grant it: {grant}"
    )]
    NoPrivilege {
        db: String,
        table: String,
        role: String,
        grant: String,
    },
    #[error("database {db}: the mapping matches nothing here:\n{}", list_lines(.problems))]
    Unmatched { db: String, problems: Vec<String> },
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

impl crate::exit::Classify for UrlError {
    /// The URL is the one the user gave.
    fn exit(&self) -> crate::exit::Exit {
        match self {
            Self::Password { .. } | Self::Invalid { .. } => crate::exit::Exit::Usage,
        }
    }
}

impl crate::exit::Classify for DataError {
    /// A database that cannot be opened or lacks what the report needs is the
    /// user's to point at or build; one that fails while read is a failed run.
    fn exit(&self) -> crate::exit::Exit {
        use crate::exit::Exit;
        match self {
            Self::Open { .. }
            | Self::Schema { .. }
            | Self::NoPrivilege { .. }
            | Self::Unmatched { .. } => Exit::Usage,
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
    /// Where the database has something like it (another schema, another case, a
    /// prefixed name): what to set.
    pub hint: Option<String>,
}

impl fmt::Display for Missing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.column {
            None => write!(f, "  - table `{}` does not exist", self.table)?,
            Some(c) => write!(f, "  - table `{}` has no column `{}`", self.table, c)?,
        }
        match &self.hint {
            Some(h) => write!(f, " ({h})"),
            None => Ok(()),
        }
    }
}

fn list_lines(lines: &[String]) -> String {
    lines
        .iter()
        .map(|l| format!("  - {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn list_missing(m: &[Missing]) -> String {
    m.iter()
        .map(|m| m.to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_and_messages_are_cut_with_their_length() {
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
        assert_eq!(DriverError::new("e".repeat(5000)).0, long);
    }
}
