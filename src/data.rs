//! The data layer: opens the user's SQLite file read-only, checks that every table and
//! column a report needs is there before any work starts, and loads the rows the
//! metrics read into plain row types, with timestamps already in UTC.
//!
//! SQL lives in the constants below; values are always bound parameters.

use std::collections::BTreeMap;

// Hot maps keyed by ids and names: a fast non-cryptographic hash (the keys are data,
// not attacker-chosen per request) and a fixed iteration order.
use rustc_hash::FxHashMap as HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags};
use serde::Serialize;

use crate::timestamp;

/// Lists the columns a table has (empty when the table does not exist).
const SQL_TABLE_COLUMNS: &str = "SELECT name FROM pragma_table_info(?1)";
/// Whether a table or view exists.
const SQL_TABLE_EXISTS: &str =
    "SELECT count(*) FROM sqlite_master WHERE type IN ('table', 'view') AND name = ?1";
const SQL_MAX_CREATED: &str = "SELECT conversation_created_at FROM intercom__conversation_enhanced";
const SQL_COMPANIES: &str =
    "SELECT company_id, company_name, all_company_tags, monthly_spend, user_count \
     FROM intercom__company_enhanced";
const SQL_COMPANY_METRICS: &str =
    "SELECT company_id, registration_retention_7d, registration_retention_30d \
     FROM intercom__company_metrics";
const SQL_CONTACTS: &str =
    "SELECT contact_id, all_contact_company_names, last_activity_ts FROM intercom__contact_enhanced";
const SQL_CONVERSATIONS: &str =
    "SELECT conversation_id, conversation_created_at, conversation_initiated_type, \
     conversation_author_type, conversation_assignee_type, all_conversation_tags, \
     all_contact_company_names, last_close_at \
     FROM intercom__conversation_enhanced";
const SQL_CONVERSATION_METRICS: &str =
    "SELECT conversation_id, time_to_first_response_minutes FROM intercom__conversation_metrics";
const SQL_USAGE_EVENTS: &str = "SELECT company_id, is_core, occurred_at FROM usage_events";
const SQL_ROW_COUNT_PREFIX: &str = "SELECT count(*) FROM ";
const SQL_USERS: &str =
    "SELECT user_id, portfolio_size, plan_type, annual_revenue, is_active, nps_score, \
     support_tickets_last_90d FROM users";
const SQL_EVENTS: &str = "SELECT user_id, event_type, event_time FROM events";
const SQL_EVENT_TIMES: &str = "SELECT event_time FROM events";
const SQL_TAG_CONVERSATIONS: &str =
    "SELECT conversation_id, conversation_created_at, all_conversation_tags, \
     all_contact_company_names, conversation_rating FROM intercom__conversation_enhanced";
const SQL_TAG_CONVERSATION_METRICS: &str =
    "SELECT conversation_id, time_to_first_response_minutes, count_reopens FROM intercom__conversation_metrics";

pub const COMPANY_ENHANCED: &str = "intercom__company_enhanced";
pub const COMPANY_METRICS: &str = "intercom__company_metrics";
pub const CONTACT_ENHANCED: &str = "intercom__contact_enhanced";
pub const CONVERSATION_ENHANCED: &str = "intercom__conversation_enhanced";
pub const CONVERSATION_METRICS: &str = "intercom__conversation_metrics";
pub const USAGE_EVENTS: &str = "usage_events";

/// Errors of the data layer. Each names the file, table and column involved.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("cannot open database {path}: {source}")]
    Open {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("database {path} is missing what report `{report}` needs:\n{}", list_missing(.missing))]
    Schema {
        path: PathBuf,
        report: String,
        missing: Vec<Missing>,
    },
    #[error("reading {table} in {path}: {source}")]
    Query {
        path: PathBuf,
        table: &'static str,
        source: rusqlite::Error,
    },
    #[error("{table}.{column} in {path}, row {row}: expected {expected}, found {found:?}")]
    BadValue {
        path: PathBuf,
        table: &'static str,
        column: &'static str,
        row: String,
        expected: &'static str,
        found: String,
    },
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

/// An open, read-only database.
pub struct Database {
    conn: Connection,
    path: PathBuf,
}

impl Database {
    pub fn open(path: &Path) -> Result<Self, DataError> {
        if !path.is_file() {
            return Err(DataError::Open {
                path: path.to_owned(),
                source: rusqlite::Error::InvalidPath(path.to_owned()),
            });
        }
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|source| DataError::Open {
            path: path.to_owned(),
            source,
        })?;
        // A file that is not SQLite only fails on the first read: read now.
        conn.query_row("SELECT count(*) FROM sqlite_master", [], |_| Ok(()))
            .map_err(|source| DataError::Open {
                path: path.to_owned(),
                source,
            })?;
        Ok(Self {
            conn,
            path: path.to_owned(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn has_table(&self, table: &str) -> Result<bool, DataError> {
        self.conn
            .query_row(SQL_TABLE_EXISTS, [table], |r| r.get::<_, i64>(0))
            .map(|n| n > 0)
            .map_err(|source| self.query_err("sqlite_master", source))
    }

    fn columns(&self, table: &'static str) -> Result<Vec<String>, DataError> {
        let mut stmt = self
            .conn
            .prepare(SQL_TABLE_COLUMNS)
            .map_err(|e| self.query_err(table, e))?;
        let rows = stmt
            .query_map([table], |r| r.get::<_, String>(0))
            .map_err(|e| self.query_err(table, e))?;
        rows.collect::<Result<_, _>>()
            .map_err(|e| self.query_err(table, e))
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
                if !have.iter().any(|h| h.eq_ignore_ascii_case(col)) {
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
                path: self.path.clone(),
                report: report.to_owned(),
                missing,
            })
        }
    }

    pub fn row_count(&self, table: &'static str) -> Result<i64, DataError> {
        // Table names cannot be bound; `table` is one of this module's constants.
        let sql = format!("{SQL_ROW_COUNT_PREFIX}\"{table}\"");
        self.conn
            .query_row(&sql, [], |r| r.get(0))
            .map_err(|e| self.query_err(table, e))
    }

    fn query_err(&self, table: &'static str, source: rusqlite::Error) -> DataError {
        DataError::Query {
            path: self.path.clone(),
            table,
            source,
        }
    }

    /// Runs `sql` and hands every row to `f` through a typed reader.
    fn each_row(
        &self,
        table: &'static str,
        sql: &str,
        mut f: impl FnMut(&mut RowReader<'_, '_>) -> Result<(), DataError>,
    ) -> Result<(), DataError> {
        let mut stmt = self
            .conn
            .prepare(sql)
            .map_err(|e| self.query_err(table, e))?;
        let mut rows = stmt.query([]).map_err(|e| self.query_err(table, e))?;
        let mut n = 0u64;
        while let Some(row) = rows.next().map_err(|e| self.query_err(table, e))? {
            n += 1;
            let mut reader = RowReader {
                row,
                table,
                path: &self.path,
                n,
            };
            f(&mut reader)?;
        }
        Ok(())
    }
}

/// Typed access to one row, with errors naming the table, column and row.
struct RowReader<'a, 'b> {
    row: &'a rusqlite::Row<'b>,
    table: &'static str,
    path: &'a Path,
    n: u64,
}

impl RowReader<'_, '_> {
    fn raw(&self, i: usize) -> Result<ValueRef<'_>, DataError> {
        self.row.get_ref(i).map_err(|source| DataError::Query {
            path: self.path.to_owned(),
            table: self.table,
            source,
        })
    }

    fn bad(&self, column: &'static str, expected: &'static str, found: String) -> DataError {
        DataError::BadValue {
            path: self.path.to_owned(),
            table: self.table,
            column,
            row: format!("#{}", self.n),
            expected,
            found,
        }
    }

    /// Text, borrowed when SQLite holds it as text (no copy), owned otherwise.
    fn cow_text(
        &self,
        i: usize,
        column: &'static str,
    ) -> Result<Option<std::borrow::Cow<'_, str>>, DataError> {
        match self.raw(i)? {
            ValueRef::Text(t) => std::str::from_utf8(t)
                .map(|s| Some(std::borrow::Cow::Borrowed(s)))
                .map_err(|_| self.bad(column, "UTF-8 text", String::from_utf8_lossy(t).into())),
            _ => Ok(self.text(i, column)?.map(std::borrow::Cow::Owned)),
        }
    }

    /// Text without copying (the hot columns of large tables).
    fn str_ref(&self, i: usize, column: &'static str) -> Result<Option<&str>, DataError> {
        match self.raw(i)? {
            ValueRef::Null => Ok(None),
            ValueRef::Text(t) => std::str::from_utf8(t)
                .map(Some)
                .map_err(|_| self.bad(column, "UTF-8 text", String::from_utf8_lossy(t).into())),
            // Numbers stored in a text column: rare, so the copying path handles them.
            _ => Err(self.bad(column, "text", "a number or blob".into())),
        }
    }

    fn text(&self, i: usize, column: &'static str) -> Result<Option<String>, DataError> {
        Ok(match self.raw(i)? {
            ValueRef::Null => None,
            ValueRef::Integer(v) => Some(v.to_string()),
            ValueRef::Real(v) => Some(v.to_string()),
            ValueRef::Text(t) => Some(
                std::str::from_utf8(t)
                    .map_err(|_| self.bad(column, "UTF-8 text", String::from_utf8_lossy(t).into()))?
                    .to_owned(),
            ),
            ValueRef::Blob(_) => return Err(self.bad(column, "text", "a blob".into())),
        })
    }

    fn real(&self, i: usize, column: &'static str) -> Result<Option<f64>, DataError> {
        Ok(match self.raw(i)? {
            ValueRef::Null => None,
            ValueRef::Integer(v) => Some(v as f64),
            ValueRef::Real(v) => Some(v),
            ValueRef::Text(t) => {
                let s = String::from_utf8_lossy(t);
                if s.trim().is_empty() {
                    None
                } else {
                    Some(
                        s.trim()
                            .parse::<f64>()
                            .ok()
                            .filter(|v| v.is_finite())
                            .ok_or_else(|| self.bad(column, "a number", s.to_string()))?,
                    )
                }
            }
            ValueRef::Blob(_) => return Err(self.bad(column, "a number", "a blob".into())),
        })
    }

    fn integer(&self, i: usize, column: &'static str) -> Result<Option<i64>, DataError> {
        match self.real(i, column)? {
            None => Ok(None),
            Some(v) if v.fract() == 0.0 && v.abs() < 9.0e15 => Ok(Some(v as i64)),
            Some(v) => Err(self.bad(column, "an integer", v.to_string())),
        }
    }
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
struct TsParser<'a> {
    tz: Tz,
    bad: &'a mut BadTimestamps,
}

impl TsParser<'_> {
    fn parse(&mut self, table: &str, column: &str, v: Option<&str>) -> Option<DateTime<Utc>> {
        let v = v?;
        if v.trim().is_empty() {
            return None;
        }
        match timestamp::parse(v, self.tz) {
            Ok(t) => Some(t),
            Err(_) => {
                *self.bad.0.entry(format!("{table}.{column}")).or_default() += 1;
                None
            }
        }
    }
}

/// Splits an aggregate text (`a, b,c`) into trimmed items.
pub fn split_items(s: &str) -> impl Iterator<Item = &str> {
    s.split(',').map(str::trim)
}

/// The conversation's company: the first name of `all_contact_company_names`,
/// normalized; `None` when there is none.
pub fn first_company_name(names: Option<&str>) -> Option<String> {
    names
        .and_then(|s| split_items(s).next().map(normalize_name))
        .filter(|s| !s.is_empty())
}

/// `lower(trim(name))`, the contract's name comparison.
pub fn normalize_name(s: &str) -> String {
    s.trim().to_lowercase()
}

#[derive(Debug, Clone, PartialEq)]
pub struct CompanyRow {
    pub company_id: String,
    pub company_name: Option<String>,
    pub tags: Option<String>,
    pub monthly_spend: Option<f64>,
    pub user_count: Option<i64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CompanyMetricsRow {
    pub company_id: String,
    pub retention_7d: Option<f64>,
    pub retention_30d: Option<f64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ContactRow {
    /// Normalized company names the contact belongs to.
    pub company_names: Vec<String>,
    pub last_activity: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ConversationRow {
    pub conversation_id: String,
    /// `None` when NULL or unparseable (the latter is counted).
    pub created_at: Option<DateTime<Utc>>,
    /// The first item of `all_contact_company_names`, normalized.
    pub first_company_name: Option<String>,
    pub last_close_at: Option<DateTime<Utc>>,
    /// The bot-first rule (`metrics::is_bot_first`) applied to the row's tags,
    /// author and initiated type while the text is at hand: large tables keep no
    /// per-row strings they do not need.
    pub bot_first: bool,
    /// conversation_assignee_type = 'team'
    pub team_routed: bool,
    /// conversation_initiated_type = 'contact_inbound'
    pub contact_inbound: bool,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct UsageEventRow {
    /// Index into the company rows (events of unknown companies are not kept).
    pub company: usize,
    pub is_core: bool,
    /// Microseconds since the epoch, UTC.
    pub occurred_at: i64,
}

/// A conversation as the tag-drivers report reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct TagConversationRow {
    pub conversation_id: String,
    pub created_at: Option<DateTime<Utc>>,
    pub first_company_name: Option<String>,
    /// Topic tags: items of `all_conversation_tags` without machine tags (with `:`),
    /// trimmed, each once.
    pub topics: Vec<String>,
    pub rating: Option<f64>,
}

/// A conversation's metrics row as the tag-drivers report reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct TagMetricsRow {
    pub conversation_id: String,
    pub response_minutes: Option<f64>,
    pub reopens: Option<i64>,
}

/// Everything the tag-drivers metrics read.
#[derive(Debug, Clone, Default)]
pub struct TagDriversData {
    pub companies: Vec<CompanyRow>,
    pub conversations: Vec<TagConversationRow>,
    pub metrics: Vec<TagMetricsRow>,
    pub bad_timestamps: BadTimestamps,
}

pub const TAG_DRIVERS: &[TableNeed] = &[
    TableNeed {
        table: COMPANY_ENHANCED,
        columns: &[
            "company_id",
            "company_name",
            "all_company_tags",
            "monthly_spend",
            "user_count",
        ],
    },
    TableNeed {
        table: CONVERSATION_ENHANCED,
        columns: &[
            "conversation_id",
            "conversation_created_at",
            "all_conversation_tags",
            "all_contact_company_names",
            "conversation_rating",
        ],
    },
    TableNeed {
        table: CONVERSATION_METRICS,
        columns: &[
            "conversation_id",
            "time_to_first_response_minutes",
            "count_reopens",
        ],
    },
];

pub const USERS: &str = "users";
pub const EVENTS: &str = "events";

pub const CUSTOMER_SEGMENTATION: &[TableNeed] = &[
    TableNeed {
        table: USERS,
        columns: &[
            "user_id",
            "portfolio_size",
            "plan_type",
            "annual_revenue",
            "is_active",
            "nps_score",
            "support_tickets_last_90d",
        ],
    },
    TableNeed {
        table: EVENTS,
        columns: &["user_id", "event_type", "event_time"],
    },
];

/// Topic tags of a tag aggregate: machine tags (any item with `:`) and empty items
/// left out, each tag once.
pub fn topic_tags(tags: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for t in split_items(tags) {
        if !t.is_empty() && !t.contains(':') && !out.iter().any(|o| o == t) {
            out.push(t.to_owned());
        }
    }
    out
}

/// Everything the conversation-usage metrics read.
#[derive(Debug, Clone, Default)]
pub struct ConversationUsageData {
    pub companies: Vec<CompanyRow>,
    pub company_metrics: Vec<CompanyMetricsRow>,
    pub contacts: Vec<ContactRow>,
    pub conversations: Vec<ConversationRow>,
    /// conversation_id → time_to_first_response_minutes, in table order.
    pub response_minutes: Vec<(String, Option<f64>)>,
    /// `None` when the events source is not used.
    pub usage_events: Option<Vec<UsageEventRow>>,
    pub bad_timestamps: BadTimestamps,
}

/// Which tables of the usage side to load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UsageTables {
    /// `usage_events` (events definitions).
    Events,
    /// contacts' `last_activity_ts` and company retention columns (proxy definitions).
    Proxy,
}

pub const CONVERSATION_USAGE_CORE: &[TableNeed] = &[
    TableNeed {
        table: COMPANY_ENHANCED,
        columns: &[
            "company_id",
            "company_name",
            "all_company_tags",
            "monthly_spend",
            "user_count",
        ],
    },
    TableNeed {
        table: CONVERSATION_ENHANCED,
        columns: &[
            "conversation_id",
            "conversation_created_at",
            "conversation_initiated_type",
            "conversation_author_type",
            "conversation_assignee_type",
            "all_conversation_tags",
            "all_contact_company_names",
            "last_close_at",
        ],
    },
    TableNeed {
        table: CONVERSATION_METRICS,
        columns: &["conversation_id", "time_to_first_response_minutes"],
    },
];

pub const CONVERSATION_USAGE_PROXY: &[TableNeed] = &[
    TableNeed {
        table: COMPANY_METRICS,
        columns: &[
            "company_id",
            "registration_retention_7d",
            "registration_retention_30d",
        ],
    },
    TableNeed {
        table: CONTACT_ENHANCED,
        columns: &[
            "contact_id",
            "all_contact_company_names",
            "last_activity_ts",
        ],
    },
];

pub const CONVERSATION_USAGE_EVENTS: &[TableNeed] = &[TableNeed {
    table: USAGE_EVENTS,
    columns: &["company_id", "is_core", "occurred_at"],
}];

impl Database {
    /// The latest parseable `conversation_created_at` (the rolling window's anchor).
    pub fn max_conversation_created(&self, tz: Tz) -> Result<Option<DateTime<Utc>>, DataError> {
        self.max_time(
            CONVERSATION_ENHANCED,
            SQL_MAX_CREATED,
            "conversation_created_at",
            tz,
        )
    }

    /// The latest parseable `events.event_time` (the segmentation snapshot's date).
    pub fn max_event_time(&self, tz: Tz) -> Result<Option<DateTime<Utc>>, DataError> {
        self.max_time(EVENTS, SQL_EVENT_TIMES, "event_time", tz)
    }

    /// The latest parseable timestamp of the one column `sql` selects.
    fn max_time(
        &self,
        table: &'static str,
        sql: &str,
        column: &'static str,
        tz: Tz,
    ) -> Result<Option<DateTime<Utc>>, DataError> {
        let mut max: Option<DateTime<Utc>> = None;
        self.each_row(table, sql, |r| {
            if let Some(t) = r
                .cow_text(0, column)?
                .and_then(|s| timestamp::parse(&s, tz).ok())
            {
                max = Some(max.map_or(t, |m| m.max(t)));
            }
            Ok(())
        })?;
        Ok(max)
    }

    /// Reads every column the conversation-usage report reads, once, touching each
    /// value and keeping nothing: the floor the benchmark compares loading against.
    /// Returns (rows, bytes of text).
    pub fn scan_floor(&self, usage: UsageTables) -> Result<(u64, u64), DataError> {
        let mut queries = vec![
            (COMPANY_ENHANCED, SQL_COMPANIES),
            (CONVERSATION_ENHANCED, SQL_CONVERSATIONS),
            (CONVERSATION_METRICS, SQL_CONVERSATION_METRICS),
        ];
        match usage {
            UsageTables::Events => queries.push((USAGE_EVENTS, SQL_USAGE_EVENTS)),
            UsageTables::Proxy => {
                queries.push((COMPANY_METRICS, SQL_COMPANY_METRICS));
                queries.push((CONTACT_ENHANCED, SQL_CONTACTS));
            }
        }
        let (mut rows, mut bytes) = (0u64, 0u64);
        for (table, sql) in queries {
            let mut stmt = self
                .conn
                .prepare(sql)
                .map_err(|e| self.query_err(table, e))?;
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
        Ok((rows, bytes))
    }

    /// Loads the rows of the tag-drivers report.
    pub fn load_tag_drivers(&self, source_tz: Tz) -> Result<TagDriversData, DataError> {
        let mut d = TagDriversData::default();
        let mut bad = BadTimestamps::default();
        let mut ts = TsParser {
            tz: source_tz,
            bad: &mut bad,
        };
        d.companies = self.load_companies()?;
        self.each_row(CONVERSATION_ENHANCED, SQL_TAG_CONVERSATIONS, |r| {
            let created = r.cow_text(1, "conversation_created_at")?;
            d.conversations.push(TagConversationRow {
                conversation_id: r.text(0, "conversation_id")?.unwrap_or_default(),
                created_at: ts.parse(
                    CONVERSATION_ENHANCED,
                    "conversation_created_at",
                    created.as_deref(),
                ),
                topics: r
                    .cow_text(2, "all_conversation_tags")?
                    .map(|t| topic_tags(&t))
                    .unwrap_or_default(),
                first_company_name: first_company_name(
                    r.cow_text(3, "all_contact_company_names")?.as_deref(),
                ),
                rating: r.real(4, "conversation_rating")?,
            });
            Ok(())
        })?;
        self.each_row(CONVERSATION_METRICS, SQL_TAG_CONVERSATION_METRICS, |r| {
            d.metrics.push(TagMetricsRow {
                conversation_id: r.text(0, "conversation_id")?.unwrap_or_default(),
                response_minutes: r.real(1, "time_to_first_response_minutes")?,
                reopens: r.integer(2, "count_reopens")?,
            });
            Ok(())
        })?;
        d.bad_timestamps = bad;
        Ok(d)
    }

    fn load_conversations(
        &self,
        conversations: &mut Vec<ConversationRow>,
        response_minutes: &mut Vec<(String, Option<f64>)>,
        ts: &mut TsParser<'_>,
    ) -> Result<(), DataError> {
        self.each_row(CONVERSATION_ENHANCED, SQL_CONVERSATIONS, |r| {
            let created = r.cow_text(1, "conversation_created_at")?;
            let closed = r.cow_text(7, "last_close_at")?;
            let initiated = r.cow_text(2, "conversation_initiated_type")?;
            let author = r.cow_text(3, "conversation_author_type")?;
            let assignee = r.cow_text(4, "conversation_assignee_type")?;
            let tags = r.cow_text(5, "all_conversation_tags")?;
            conversations.push(ConversationRow {
                conversation_id: r.text(0, "conversation_id")?.unwrap_or_default(),
                created_at: ts.parse(
                    CONVERSATION_ENHANCED,
                    "conversation_created_at",
                    created.as_deref(),
                ),
                first_company_name: first_company_name(
                    r.cow_text(6, "all_contact_company_names")?.as_deref(),
                ),
                last_close_at: ts.parse(CONVERSATION_ENHANCED, "last_close_at", closed.as_deref()),
                bot_first: crate::metrics::is_bot_first(
                    tags.as_deref(),
                    author.as_deref(),
                    initiated.as_deref(),
                ),
                team_routed: assignee.as_deref() == Some("team"),
                contact_inbound: initiated.as_deref() == Some("contact_inbound"),
            });
            Ok(())
        })?;
        self.each_row(CONVERSATION_METRICS, SQL_CONVERSATION_METRICS, |r| {
            response_minutes.push((
                r.text(0, "conversation_id")?.unwrap_or_default(),
                r.real(1, "time_to_first_response_minutes")?,
            ));
            Ok(())
        })
    }

    fn load_proxy_usage(
        &self,
        company_metrics: &mut Vec<CompanyMetricsRow>,
        contacts: &mut Vec<ContactRow>,
        ts: &mut TsParser<'_>,
    ) -> Result<(), DataError> {
        self.each_row(COMPANY_METRICS, SQL_COMPANY_METRICS, |r| {
            company_metrics.push(CompanyMetricsRow {
                company_id: r.text(0, "company_id")?.unwrap_or_default(),
                retention_7d: r.real(1, "registration_retention_7d")?,
                retention_30d: r.real(2, "registration_retention_30d")?,
            });
            Ok(())
        })?;
        self.each_row(CONTACT_ENHANCED, SQL_CONTACTS, |r| {
            let names = r.text(1, "all_contact_company_names")?;
            let last = r.text(2, "last_activity_ts")?;
            contacts.push(ContactRow {
                company_names: names
                    .as_deref()
                    .map(|s| {
                        split_items(s)
                            .filter(|s| !s.is_empty())
                            .map(normalize_name)
                            .collect()
                    })
                    .unwrap_or_default(),
                last_activity: ts.parse(CONTACT_ENHANCED, "last_activity_ts", last.as_deref()),
            });
            Ok(())
        })
    }

    /// The usage events of known companies, with their own unparseable-time counts.
    fn load_usage_events(
        &self,
        companies: &[CompanyRow],
        source_tz: Tz,
    ) -> Result<(Vec<UsageEventRow>, BadTimestamps), DataError> {
        let mut bad = BadTimestamps::default();
        let mut ts = TsParser {
            tz: source_tz,
            bad: &mut bad,
        };
        let mut ids: HashMap<&str, usize> =
            HashMap::with_capacity_and_hasher(companies.len(), Default::default());
        for (i, c) in companies.iter().enumerate() {
            ids.entry(c.company_id.as_str()).or_insert(i);
        }
        let mut events = Vec::new();
        self.each_row(USAGE_EVENTS, SQL_USAGE_EVENTS, |r| {
            let company = match r.str_ref(0, "company_id") {
                Ok(Some(id)) => ids.get(id).copied(),
                Ok(None) => None,
                Err(_) => r
                    .text(0, "company_id")?
                    .and_then(|id| ids.get(id.as_str()).copied()),
            };
            let is_core = r.integer(1, "is_core")?.unwrap_or(0) == 1;
            let occurred = match r.str_ref(2, "occurred_at") {
                Ok(v) => ts.parse(USAGE_EVENTS, "occurred_at", v),
                Err(_) => {
                    let v = r.text(2, "occurred_at")?;
                    ts.parse(USAGE_EVENTS, "occurred_at", v.as_deref())
                }
            };
            if let (Some(company), Some(t)) = (company, occurred) {
                events.push(UsageEventRow {
                    company,
                    is_core,
                    occurred_at: t.timestamp_micros(),
                });
            }
            Ok(())
        })?;
        Ok((events, bad))
    }

    /// Loads the rows of the customer-segmentation report.
    pub fn load_segmentation(
        &self,
        source_tz: Tz,
    ) -> Result<
        (
            Vec<crate::reports::customer_segmentation::metrics::UserRow>,
            Vec<crate::reports::customer_segmentation::metrics::EventRow>,
            BadTimestamps,
        ),
        DataError,
    > {
        let mut bad = BadTimestamps::default();
        let mut ts = TsParser {
            tz: source_tz,
            bad: &mut bad,
        };
        let mut users = Vec::new();
        self.each_row(USERS, SQL_USERS, |r| {
            users.push(crate::reports::customer_segmentation::metrics::UserRow {
                user_id: r.text(0, "user_id")?.unwrap_or_default(),
                portfolio_size: r.integer(1, "portfolio_size")?,
                plan_type: r.text(2, "plan_type")?,
                annual_revenue: r.real(3, "annual_revenue")?,
                is_active: r.integer(4, "is_active")?.unwrap_or(0) == 1,
                nps_score: r.real(5, "nps_score")?,
                support_tickets: r.integer(6, "support_tickets_last_90d")?,
            });
            Ok(())
        })?;
        let mut events = Vec::new();
        self.each_row(EVENTS, SQL_EVENTS, |r| {
            let t = r.cow_text(2, "event_time")?;
            events.push(crate::reports::customer_segmentation::metrics::EventRow {
                user_id: r.text(0, "user_id")?.unwrap_or_default(),
                event_type: r.text(1, "event_type")?.unwrap_or_default(),
                event_time: ts.parse(EVENTS, "event_time", t.as_deref()),
            });
            Ok(())
        })?;
        Ok((users, events, bad))
    }

    fn load_companies(&self) -> Result<Vec<CompanyRow>, DataError> {
        let mut out = Vec::new();
        self.each_row(COMPANY_ENHANCED, SQL_COMPANIES, |r| {
            let company_id = r
                .text(0, "company_id")?
                .ok_or_else(|| r.bad("company_id", "a company id", "NULL".into()))?;
            out.push(CompanyRow {
                company_id,
                company_name: r.text(1, "company_name")?,
                tags: r.text(2, "all_company_tags")?,
                monthly_spend: r.real(3, "monthly_spend")?,
                user_count: r.integer(4, "user_count")?,
            });
            Ok(())
        })?;
        Ok(out)
    }

    /// Loads the rows of the conversation-usage report.
    pub fn load_conversation_usage(
        &self,
        source_tz: Tz,
        usage: UsageTables,
    ) -> Result<ConversationUsageData, DataError> {
        let mut d = ConversationUsageData::default();
        let mut bad = BadTimestamps::default();
        let mut ts = TsParser {
            tz: source_tz,
            bad: &mut bad,
        };
        d.companies = self.load_companies()?;
        // The usage events are the largest table: they load on a second connection,
        // on another core, while this one reads the conversations.
        let companies = &d.companies;
        let path = self.path.as_path();
        let events = std::thread::scope(|scope| {
            let events = (usage == UsageTables::Events).then(|| {
                scope.spawn(move || Database::open(path)?.load_usage_events(companies, source_tz))
            });
            self.load_conversations(&mut d.conversations, &mut d.response_minutes, &mut ts)?;
            if usage == UsageTables::Proxy {
                self.load_proxy_usage(&mut d.company_metrics, &mut d.contacts, &mut ts)?;
            }
            events
                .map(|h| h.join().expect("the events loader does not panic"))
                .transpose()
        })?;
        if let Some((rows, events_bad)) = events {
            d.usage_events = Some(rows);
            for (k, v) in events_bad.0 {
                *bad.0.entry(k).or_default() += v;
            }
        }
        d.bad_timestamps = bad;
        Ok(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db_with(sql: &str) -> (tempfile::TempDir, Database) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.sqlite");
        Connection::open(&path).unwrap().execute_batch(sql).unwrap();
        let db = Database::open(&path).unwrap();
        (dir, db)
    }

    #[test]
    fn schema_check_lists_every_missing_table_and_column() {
        let (_d, db) = db_with(
            "CREATE TABLE intercom__company_enhanced (company_id TEXT, company_name TEXT);
             CREATE TABLE intercom__conversation_metrics (conversation_id TEXT, time_to_first_response_minutes REAL);",
        );
        let err = db
            .check("conversation-usage", CONVERSATION_USAGE_CORE)
            .unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("report `conversation-usage`"), "{msg}");
        assert!(
            msg.contains("table `intercom__company_enhanced` has no column `monthly_spend`"),
            "{msg}"
        );
        assert!(
            msg.contains("table `intercom__company_enhanced` has no column `user_count`"),
            "{msg}"
        );
        assert!(
            msg.contains("table `intercom__conversation_enhanced` does not exist"),
            "{msg}"
        );
        assert!(!msg.contains("intercom__conversation_metrics"), "{msg}");
    }

    #[test]
    fn non_numeric_spend_names_table_column_and_row() {
        let (_d, db) = db_with(
            "CREATE TABLE intercom__company_enhanced (company_id TEXT, company_name TEXT, all_company_tags TEXT, monthly_spend, user_count);
             INSERT INTO intercom__company_enhanced VALUES ('c1','A',NULL,'12.5',3), ('c2','B',NULL,'lots',3);
             CREATE TABLE intercom__conversation_enhanced (x);
             CREATE TABLE intercom__conversation_metrics (x);",
        );
        let err = db
            .load_conversation_usage(Tz::UTC, UsageTables::Events)
            .unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("intercom__company_enhanced.monthly_spend"),
            "{msg}"
        );
        assert!(msg.contains("row #2"), "{msg}");
        assert!(msg.contains("\"lots\""), "{msg}");
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
        assert!(matches!(Database::open(&path), Err(DataError::Open { .. })));
        assert!(matches!(
            Database::open(&dir.path().join("missing.sqlite")),
            Err(DataError::Open { .. })
        ));
    }

    #[test]
    fn items_split_and_names_normalize() {
        assert_eq!(split_items("a, b ,c").collect::<Vec<_>>(), ["a", "b", "c"]);
        assert_eq!(normalize_name("  North Systems LTD "), "north systems ltd");
    }
}
