//! The data layer: opens the user's SQLite file read-only, checks that every table and
//! column a report needs is there before any work starts, and loads the rows the
//! metrics read into plain row types, with timestamps already in UTC.
//!
//! SQL lives in the constants below; values are always bound parameters.

use std::collections::BTreeMap;
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
/// The largest rowid: a row count estimate that SQLite answers from the end of the
/// table's b-tree, without a scan.
const SQL_MAX_ROWID_PREFIX: &str = "SELECT max(rowid) FROM ";
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

    /// About how many rows a table holds, to size the row vectors once instead of
    /// growing (and copying) them; 0 when unknown (a view, a table without rowid).
    fn rows_hint(&self, table: &'static str) -> usize {
        // Table names cannot be bound; `table` is one of this module's constants.
        let sql = format!("{SQL_MAX_ROWID_PREFIX}\"{table}\"");
        // Rowids can be sparse: the hint is capped at one row per 32 bytes of file, so
        // a huge rowid never reserves far more memory than the data could fill (a
        // hint too low only means the vector grows).
        let most = std::fs::metadata(&self.path).map_or(0, |m| m.len() / 32);
        self.conn
            .query_row(&sql, [], |r| r.get::<_, Option<i64>>(0))
            .ok()
            .flatten()
            .map_or(0, |n| n.clamp(0, most as i64) as usize)
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
    let mut out = String::new();
    first_company_name_into(names?, &mut out).then_some(out)
}

/// [`first_company_name`] into a reused buffer; `false` when there is none.
pub fn first_company_name_into(names: &str, out: &mut String) -> bool {
    out.clear();
    if let Some(first) = split_items(names).next() {
        normalize_name_into(first, out);
    }
    !out.is_empty()
}

/// `lower(trim(name))`, the contract's name comparison.
pub fn normalize_name(s: &str) -> String {
    let mut out = String::new();
    normalize_name_into(s, &mut out);
    out
}

/// [`normalize_name`] into a reused buffer (no allocation per row for ASCII names).
pub fn normalize_name_into(s: &str, out: &mut String) {
    out.clear();
    let s = s.trim();
    if s.is_ascii() {
        out.push_str(s);
        out.make_ascii_lowercase();
    } else {
        out.push_str(&s.to_lowercase());
    }
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
    /// `None` when NULL or unparseable (the latter is counted).
    pub created_at: Option<DateTime<Utc>>,
    /// The first item of `all_contact_company_names`, normalized, as an index into
    /// [`ConversationUsageData::company_names`] (`None`: no name).
    pub first_company_name: Option<u32>,
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

/// An event's time and core flag in one word: microseconds since the epoch shifted
/// left by one, the flag in the lowest bit (±146,000 years still fit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(transparent)]
pub struct EventStamp(i64);

impl EventStamp {
    pub fn new(micros: i64, is_core: bool) -> Self {
        Self((micros << 1) | i64::from(is_core))
    }
    pub fn micros(self) -> i64 {
        self.0 >> 1
    }
    pub fn is_core(self) -> bool {
        self.0 & 1 == 1
    }
}

/// The usage events, 8 bytes each (tens of millions are held): runs of consecutive
/// events of one company — event tables are usually grouped by company, so a run is
/// usually all of a company's events — and each event's [`EventStamp`].
#[derive(Debug, Clone, Default)]
pub struct UsageEvents {
    /// (company, end of the run in `stamps`); the company is a number of the loader's
    /// id interner until the loader points it at a company row
    /// (`u32::MAX`: an unknown company, whose events are skipped).
    runs: Vec<(u32, usize)>,
    stamps: Vec<EventStamp>,
}

impl UsageEvents {
    fn with_capacity(n: usize) -> Self {
        Self {
            runs: Vec::new(),
            stamps: Vec::with_capacity(n),
        }
    }

    fn push(&mut self, company: u32, stamp: EventStamp) {
        self.stamps.push(stamp);
        match self.runs.last_mut() {
            Some((c, end)) if *c == company => *end = self.stamps.len(),
            _ => self.runs.push((company, self.stamps.len())),
        }
    }

    /// Each run of a known company: the company row and its events' stamps.
    pub fn runs(&self) -> impl Iterator<Item = (u32, &[EventStamp])> {
        let mut start = 0;
        self.runs
            .iter()
            .map(move |&(c, end)| (c, &self.stamps[std::mem::replace(&mut start, end)..end]))
            .filter(|&(c, _)| c != u32::MAX)
    }
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

/// Millions of short strings (ids) in one buffer: one allocation instead of one per
/// row, and read back in order from contiguous memory.
#[derive(Debug, Clone, Default)]
pub struct StrColumn {
    bytes: String,
    /// End of string `i` in `bytes`.
    ends: Vec<usize>,
}

impl StrColumn {
    pub fn push(&mut self, s: &str) {
        self.bytes.push_str(s);
        self.ends.push(self.bytes.len());
    }

    /// Room for `n` more strings of about `bytes_each` bytes.
    pub fn reserve(&mut self, n: usize, bytes_each: usize) {
        self.ends.reserve(n);
        self.bytes.reserve(n.saturating_mul(bytes_each));
    }

    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    pub fn get(&self, i: usize) -> &str {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.bytes[start..self.ends[i]]
    }

    pub fn iter(&self) -> impl Iterator<Item = &str> {
        let mut start = 0;
        self.ends.iter().map(move |&end| {
            let s = &self.bytes[start..end];
            start = end;
            s
        })
    }
}

/// Distinct strings, each stored once and referred to by number: the hundreds of
/// thousands of company names and ids of millions of rows.
///
/// Looking strings up is the hot step of loading (millions of rows against a table
/// larger than the caches), so each slot of the hash table carries the string's first
/// bytes itself: a lookup of a short string reads the control bytes and one slot, two
/// cache misses, where a set of boxed strings follows an index to an entry and the
/// entry to its heap string, four.
#[derive(Debug, Clone, Default)]
pub struct Interner {
    table: hashbrown::HashTable<Slot>,
    /// String number `i`.
    strings: StrColumn,
}

/// Bytes of a string kept in its slot (company names are mostly shorter).
const SLOT_HEAD: usize = 24;

#[derive(Debug, Clone, Copy)]
#[repr(align(32))]
struct Slot {
    id: u32,
    len: u32,
    head: [u8; SLOT_HEAD],
}

impl Slot {
    fn matches(&self, s: &str, strings: &StrColumn) -> bool {
        let b = s.as_bytes();
        self.len as usize == b.len()
            && if b.len() <= SLOT_HEAD {
                self.head[..b.len()] == *b
            } else {
                self.head == b[..SLOT_HEAD] && strings.get(self.id as usize) == s
            }
    }
}

/// A fast non-cryptographic hash: the keys are data, not attacker-chosen per request.
fn str_hash(s: &str) -> u64 {
    use std::hash::BuildHasher;
    rustc_hash::FxBuildHasher.hash_one(s)
}

impl Interner {
    pub fn intern(&mut self, s: &str) -> u32 {
        let strings = &self.strings;
        let entry = self.table.entry(
            str_hash(s),
            |slot| slot.matches(s, strings),
            |slot| str_hash(strings.get(slot.id as usize)),
        );
        match entry {
            hashbrown::hash_table::Entry::Occupied(e) => e.get().id,
            hashbrown::hash_table::Entry::Vacant(v) => {
                let id = u32::try_from(self.strings.len()).expect("fewer than 2^32 strings");
                let mut head = [0u8; SLOT_HEAD];
                let n = s.len().min(SLOT_HEAD);
                head[..n].copy_from_slice(&s.as_bytes()[..n]);
                v.insert(Slot {
                    id,
                    len: u32::try_from(s.len()).expect("strings under 4 GiB"),
                    head,
                });
                self.strings.push(s);
                id
            }
        }
    }

    /// The number of `s`, if it was interned.
    pub fn lookup(&self, s: &str) -> Option<u32> {
        self.table
            .find(str_hash(s), |slot| slot.matches(s, &self.strings))
            .map(|slot| slot.id)
    }

    pub fn get(&self, i: u32) -> &str {
        self.strings.get(i as usize)
    }

    /// Every string with its number, in number order.
    pub fn iter(&self) -> impl Iterator<Item = (u32, &str)> {
        self.strings.iter().enumerate().map(|(i, n)| (i as u32, n))
    }

    pub fn len(&self) -> usize {
        self.strings.len()
    }

    pub fn is_empty(&self) -> bool {
        self.strings.is_empty()
    }
}

/// Interns each company's normalized name (`lower(trim(company_name))`); the
/// company's name number, `u32::MAX` when it has no (non-blank) name.
pub fn intern_company_names(companies: &[CompanyRow], names: &mut Interner) -> Vec<u32> {
    let mut n = String::new();
    companies
        .iter()
        .map(|c| match c.company_name.as_deref() {
            Some(name) => {
                normalize_name_into(name, &mut n);
                if n.is_empty() {
                    u32::MAX
                } else {
                    names.intern(&n)
                }
            }
            None => u32::MAX,
        })
        .collect()
}

/// Everything the conversation-usage metrics read.
#[derive(Debug, Clone, Default)]
pub struct ConversationUsageData {
    pub companies: Vec<CompanyRow>,
    pub company_metrics: Vec<CompanyMetricsRow>,
    pub contacts: Vec<ContactRow>,
    pub conversations: Vec<ConversationRow>,
    /// The conversations' ids, in the same order.
    pub conversation_ids: StrColumn,
    /// Normalized company names: first the companies' (in company order), then the
    /// conversations' first company names that no company carries.
    pub company_names: Interner,
    /// Each company's name number in `company_names` (`u32::MAX`: no name).
    pub company_name_ids: Vec<u32>,
    /// `intercom__conversation_metrics` in table order: the ids, and the
    /// time_to_first_response_minutes of each.
    pub metrics_ids: StrColumn,
    pub response_minutes: Vec<Option<f64>>,
    /// `None` when the events source is not used.
    pub usage_events: Option<UsageEvents>,
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
        d: &mut ConversationUsageData,
        ts: &mut TsParser<'_>,
    ) -> Result<(), DataError> {
        let mut name = String::new();
        let n = self.rows_hint(CONVERSATION_ENHANCED);
        d.conversations.reserve(n);
        d.conversation_ids.reserve(n, 16);
        self.each_row(CONVERSATION_ENHANCED, SQL_CONVERSATIONS, |r| {
            let created = r.cow_text(1, "conversation_created_at")?;
            let closed = r.cow_text(7, "last_close_at")?;
            let initiated = r.cow_text(2, "conversation_initiated_type")?;
            let author = r.cow_text(3, "conversation_author_type")?;
            let assignee = r.cow_text(4, "conversation_assignee_type")?;
            let tags = r.cow_text(5, "all_conversation_tags")?;
            let names = r.cow_text(6, "all_contact_company_names")?;
            let first_name = match names.as_deref() {
                Some(names) if first_company_name_into(names, &mut name) => {
                    Some(d.company_names.intern(&name))
                }
                _ => None,
            };
            d.conversation_ids.push(
                r.cow_text(0, "conversation_id")?
                    .as_deref()
                    .unwrap_or_default(),
            );
            d.conversations.push(ConversationRow {
                created_at: ts.parse(
                    CONVERSATION_ENHANCED,
                    "conversation_created_at",
                    created.as_deref(),
                ),
                first_company_name: first_name,
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
        let n = self.rows_hint(CONVERSATION_METRICS);
        d.metrics_ids.reserve(n, 16);
        d.response_minutes.reserve(n);
        self.each_row(CONVERSATION_METRICS, SQL_CONVERSATION_METRICS, |r| {
            d.metrics_ids.push(
                r.cow_text(0, "conversation_id")?
                    .as_deref()
                    .unwrap_or_default(),
            );
            d.response_minutes
                .push(r.real(1, "time_to_first_response_minutes")?);
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

    /// The usage events, each with its company id as a number in the returned
    /// interner (the company rows may still be loading), and their own unparseable-time
    /// counts.
    fn load_usage_events(
        &self,
        source_tz: Tz,
    ) -> Result<(UsageEvents, Interner, BadTimestamps), DataError> {
        let mut bad = BadTimestamps::default();
        let mut ts = TsParser {
            tz: source_tz,
            bad: &mut bad,
        };
        let mut ids = Interner::default();
        let mut events = UsageEvents::with_capacity(self.rows_hint(USAGE_EVENTS));
        // Event tables are usually grouped by company: a run of the same id is looked
        // up once.
        let mut last: Option<(String, u32)> = None;
        self.each_row(USAGE_EVENTS, SQL_USAGE_EVENTS, |r| {
            let company = r.cow_text(0, "company_id")?.map(|id| match &last {
                Some((l, n)) if *l == *id => *n,
                _ => {
                    let n = ids.intern(&id);
                    last = Some((id.into_owned(), n));
                    n
                }
            });
            let is_core = r.integer(1, "is_core")?.unwrap_or(0) == 1;
            let occurred = r.cow_text(2, "occurred_at")?;
            let occurred = ts.parse(USAGE_EVENTS, "occurred_at", occurred.as_deref());
            if let (Some(company), Some(t)) = (company, occurred) {
                events.push(company, EventStamp::new(t.timestamp_micros(), is_core));
            }
            Ok(())
        })?;
        Ok((events, ids, bad))
    }

    /// Points the events at company rows (the first row of an id); the events of
    /// unknown companies are skipped from then on.
    fn attach_events(companies: &[CompanyRow], events: &mut UsageEvents, ids: &Interner) {
        // Event company number → company row, by looking each company's id up among
        // the events' ids (no second table of ids).
        let mut rows = vec![u32::MAX; ids.len()];
        for (i, c) in companies.iter().enumerate() {
            if let Some(n) = ids.lookup(&c.company_id) {
                let row = &mut rows[n as usize];
                if *row == u32::MAX {
                    *row = i as u32;
                }
            }
        }
        for (company, _) in &mut events.runs {
            *company = rows[*company as usize];
        }
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
        let mut out = Vec::with_capacity(self.rows_hint(COMPANY_ENHANCED));
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
        // The usage events are the largest table: they load on a second connection,
        // on another core, while this one reads the companies and the conversations.
        let path = self.path.as_path();
        let events = std::thread::scope(|scope| {
            let events = (usage == UsageTables::Events)
                .then(|| scope.spawn(move || Database::open(path)?.load_usage_events(source_tz)));
            d.companies = self.load_companies()?;
            d.company_name_ids = intern_company_names(&d.companies, &mut d.company_names);
            self.load_conversations(&mut d, &mut ts)?;
            if usage == UsageTables::Proxy {
                self.load_proxy_usage(&mut d.company_metrics, &mut d.contacts, &mut ts)?;
            }
            events
                .map(|h| h.join().expect("the events loader does not panic"))
                .transpose()
        })?;
        if let Some((mut rows, ids, events_bad)) = events {
            Self::attach_events(&d.companies, &mut rows, &ids);
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
    fn interner_numbers_short_long_and_alike_strings_once() {
        let mut i = Interner::default();
        let long_a = "a company name longer than the slot head, part a";
        let long_b = "a company name longer than the slot head, part b";
        let words = [
            "",
            "x",
            "acme inc",
            long_a,
            long_b,
            "exactly twenty-four byte",
        ];
        for (n, w) in words.iter().enumerate() {
            assert_eq!(i.intern(w), n as u32, "{w:?}");
        }
        // Again, after the table has grown past its first size.
        for n in 0..10_000 {
            i.intern(&format!("filler {n}"));
        }
        for (n, w) in words.iter().enumerate() {
            assert_eq!(i.intern(w), n as u32, "{w:?}");
            assert_eq!(i.lookup(w), Some(n as u32));
            assert_eq!(i.get(n as u32), *w);
        }
        assert_eq!(
            i.lookup("a company name longer than the slot head, part c"),
            None
        );
        assert_eq!(i.lookup("acme in"), None);
        assert_eq!(i.len(), words.len() + 10_000);
        assert_eq!(i.iter().nth(3), Some((3, long_a)));
    }

    #[test]
    fn usage_events_keep_time_flag_and_company_runs() {
        for (micros, core) in [(0, false), (1, true), (-1, true), (-86_400_000_001, false)] {
            let s = EventStamp::new(micros, core);
            assert_eq!((s.micros(), s.is_core()), (micros, core));
        }
        // Companies in any order: a run per change of company; unknown companies skipped.
        let mut e = UsageEvents::default();
        for (c, t) in [(0, 10), (0, 11), (1, 12), (0, 13), (u32::MAX, 14), (2, 15)] {
            e.push(c, EventStamp::new(t, t % 2 == 0));
        }
        let runs: Vec<(u32, Vec<i64>)> = e
            .runs()
            .map(|(c, s)| (c, s.iter().map(|s| s.micros()).collect()))
            .collect();
        assert_eq!(
            runs,
            [
                (0, vec![10, 11]),
                (1, vec![12]),
                (0, vec![13]),
                (2, vec![15])
            ]
        );
        let first = e.runs().next().expect("a run");
        assert_eq!(
            first.1.iter().map(|s| s.is_core()).collect::<Vec<_>>(),
            [true, false]
        );
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
        let mut buf = String::from("left over");
        for name in ["  North Systems LTD ", " ÖSTRA Ångström AB", "", "   "] {
            normalize_name_into(name, &mut buf);
            assert_eq!(buf, normalize_name(name), "{name:?}");
        }
    }

    #[test]
    fn row_hints_follow_rowids_and_stay_within_the_file() {
        let (_d, db) = db_with(
            "CREATE TABLE usage_events (company_id TEXT);
             INSERT INTO usage_events VALUES ('a'), ('b'), ('c');
             CREATE TABLE intercom__conversation_metrics (conversation_id TEXT);
             INSERT INTO intercom__conversation_metrics (rowid, conversation_id) VALUES (1000000000000, 'x');",
        );
        assert_eq!(db.rows_hint(USAGE_EVENTS), 3);
        let file = std::fs::metadata(db.path()).unwrap().len() as usize;
        assert_eq!(db.rows_hint(CONVERSATION_METRICS), file / 32);
        assert_eq!(db.rows_hint(CONVERSATION_ENHANCED), 0, "no such table");
    }

    #[test]
    fn string_column_and_interner_give_back_what_went_in() {
        let mut c = StrColumn::default();
        assert!(c.is_empty());
        c.reserve(3, 4);
        for s in ["cv_1", "", "cv_12 ü"] {
            c.push(s);
        }
        assert_eq!(c.len(), 3);
        assert_eq!((c.get(0), c.get(1), c.get(2)), ("cv_1", "", "cv_12 ü"));
        assert_eq!(c.iter().collect::<Vec<_>>(), ["cv_1", "", "cv_12 ü"]);

        let mut names = Interner::default();
        let (a, b, a2) = (
            names.intern("acme"),
            names.intern("beta"),
            names.intern("acme"),
        );
        assert_eq!((a, b, a2), (0, 1, 0));
        assert_eq!((names.len(), names.get(b)), (2, "beta"));
        assert_eq!(names.iter().collect::<Vec<_>>(), [(0, "acme"), (1, "beta")]);
    }

    #[test]
    fn conversations_load_with_ids_in_order_and_names_interned() {
        let (_d, db) = db_with(
            "CREATE TABLE intercom__company_enhanced (company_id TEXT, company_name TEXT, \
               all_company_tags TEXT, monthly_spend REAL, user_count INTEGER);
             CREATE TABLE intercom__conversation_enhanced (conversation_id TEXT, \
               conversation_created_at TEXT, conversation_initiated_type TEXT, \
               conversation_author_type TEXT, conversation_assignee_type TEXT, \
               all_conversation_tags TEXT, all_contact_company_names TEXT, last_close_at TEXT);
             CREATE TABLE intercom__conversation_metrics (conversation_id TEXT, \
               time_to_first_response_minutes REAL);
             INSERT INTO intercom__conversation_enhanced (conversation_id, all_contact_company_names) VALUES
               ('c1', ' Acme Inc , Beta'), ('c2', 'beta'), ('c3', 'ACME INC'), ('c4', NULL), ('c5', ' , x');
             CREATE TABLE usage_events (company_id TEXT, is_core INTEGER, occurred_at TEXT);
             INSERT INTO intercom__conversation_metrics VALUES ('c2', 4.5), ('c1', NULL);
             INSERT INTO intercom__company_enhanced (company_id, company_name) VALUES
               ('co_b', ' BETA'), ('co_a', NULL), ('co_b', ' ');
             INSERT INTO usage_events VALUES ('co_a', 1, '2024-01-02 00:00:00'),
               ('co_a', 0, '2024-01-03 00:00:00'), ('co_x', 1, '2024-01-04 00:00:00'),
               ('co_b', 1, '2024-01-05 00:00:00'), (NULL, 1, '2024-01-06 00:00:00'),
               ('co_a', 1, 'not a time');",
        );
        let d = db
            .load_conversation_usage(chrono_tz::UTC, UsageTables::Events)
            .unwrap();
        assert_eq!(
            d.conversation_ids.iter().collect::<Vec<_>>(),
            ["c1", "c2", "c3", "c4", "c5"]
        );
        let names: Vec<Option<&str>> = d
            .conversations
            .iter()
            .map(|c| c.first_company_name.map(|n| d.company_names.get(n)))
            .collect();
        assert_eq!(
            names,
            [Some("acme inc"), Some("beta"), Some("acme inc"), None, None]
        );
        assert_eq!(d.company_names.len(), 2);
        // The companies' names are numbered first; a conversation carrying one gets
        // the company's number.
        assert_eq!(d.company_name_ids, [0, u32::MAX, u32::MAX]);
        assert_eq!(d.conversations[1].first_company_name, Some(0));
        assert_eq!(d.metrics_ids.iter().collect::<Vec<_>>(), ["c2", "c1"]);
        assert_eq!(d.response_minutes, [Some(4.5), None]);
        // Events point at company rows (a repeated id: its first row); unknown and
        // NULL companies and unparseable times are dropped, the latter counted.
        let events: Vec<(u32, bool)> = d
            .usage_events
            .as_ref()
            .expect("events loaded")
            .runs()
            .flat_map(|(c, stamps)| stamps.iter().map(move |s| (c, s.is_core())))
            .collect();
        assert_eq!(events, [(1, true), (1, false), (0, true)]);
        assert_eq!(d.bad_timestamps.0.get("usage_events.occurred_at"), Some(&1));
    }
}
