//! The rows of the conversation-usage report: SQL, row types and the loader, with
//! the usage events (`events`) on a second connection.

mod events;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use self::events::{attach_events, load_usage_events, SQL_USAGE_EVENTS};
pub use self::events::{EventStamp, NoneMatched, UsageEvents};
use crate::intercom::mapping::Mapping;
use crate::intercom::scope::OutsideNames;
use crate::intercom::{
    self, intern_company_names, Assignee, CompanyRow, NameSplitter, COMPANY_ENHANCED,
    COMPANY_METRICS, CONTACT_ENHANCED, CONVERSATION_ENHANCED, CONVERSATION_METRICS, USAGE_EVENTS,
};
use crate::reports::load::{
    self as shared, windowed_sql, LoadSpan, WindowedSql, COMPANIES_NEED, SQL_COMPANIES,
};
use crate::source::interner::{Interner, StrColumn};
use crate::source::{BadTimestamps, DataError, Database, RowsRead, TableNeed, TsParser};

const SQL_COMPANY_METRICS: &str =
    "SELECT company_id, registration_retention_7d, registration_retention_30d \
     FROM intercom__company_metrics";
const SQL_CONTACTS: &str =
    "SELECT contact_id, all_contact_company_names, last_activity_ts FROM intercom__contact_enhanced";
/// The conversations and their metrics, over a window where the server compares
/// the times itself.
const SQL_WINDOWED: WindowedSql = windowed_sql!(
    "SELECT conversation_id, conversation_created_at, conversation_initiated_type, \
     conversation_author_type, conversation_assignee_type, all_conversation_tags, \
     all_contact_company_names, last_close_at \
     FROM intercom__conversation_enhanced",
    "SELECT conversation_id, time_to_first_response_minutes FROM intercom__conversation_metrics",
);
/// The same without `conversation_assignee_type`, which the contract makes optional
/// (deprecated upstream): a table without it reads as one where it is all NULL.
const SQL_WINDOWED_NO_ASSIGNEE: WindowedSql = windowed_sql!(
    "SELECT conversation_id, conversation_created_at, conversation_initiated_type, \
     conversation_author_type, NULL AS conversation_assignee_type, all_conversation_tags, \
     all_contact_company_names, last_close_at \
     FROM intercom__conversation_enhanced",
    "SELECT conversation_id, time_to_first_response_minutes FROM intercom__conversation_metrics",
);
/// The optional column of the conversations.
pub const ASSIGNEE_TYPE: &str = "conversation_assignee_type";

/// The conversations' queries for `db`: with the optional column where it exists.
pub fn windowed_sql(db: &Database) -> Result<&'static WindowedSql, DataError> {
    let have = db.columns(CONVERSATION_ENHANCED)?;
    Ok(if have.iter().any(|(c, _)| c == ASSIGNEE_TYPE) {
        &SQL_WINDOWED
    } else {
        &SQL_WINDOWED_NO_ASSIGNEE
    })
}
/// What the window predicate leaves on the server, for the data-quality counts:
/// all conversations, and those with a creation time.
const SQL_CONVERSATION_COUNTS: &str =
    "SELECT count(*), count(conversation_created_at) FROM intercom__conversation_enhanced";

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
    /// A `first_response:` tag decided `bot_first` (not the bot-initiated proxy).
    pub bot_tagged: bool,
    /// conversation_assignee_type: team, another assignee, or not known (NULL).
    pub assignee: Assignee,
    /// conversation_initiated_type is customer-initiated (`customer_initiated` or
    /// `contact_inbound`).
    pub contact_inbound: bool,
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
    /// Not one of the window's usage events is a company's (the keying is wrong):
    /// conversion and retention are then empty with this reason, never 0 %.
    pub usage_none_matched: Option<NoneMatched>,
    /// The mapping the rows were read with (slices, the usage-events key).
    pub mapping: Mapping,
    /// The population and the paying companies' labels, made by the first metrics
    /// and shared by the rest: they depend on the companies and the mapping, not on
    /// the window, and a run computes a window, the comparison's sides and every trend
    /// month from one load (classifying every company's tags once per window was half
    /// of the comparison and trend time at scale). Empty until then; rows changed
    /// after it is made are not seen again.
    pub prepared: std::sync::OnceLock<(
        crate::intercom::population::Population,
        Vec<Option<crate::intercom::slices::Labels>>,
    )>,
    /// Conversations whose first company name matched a name with a comma while its
    /// first part is a company name too (read as the longer name).
    pub ambiguous_names: u64,
    /// The conversation counts of the whole table when only the window's rows were
    /// read (the server applied the window).
    /// The creation times of the conversations of companies outside the mapping's
    /// scope, left out of every count but this one (`None`: no scope).
    pub outside_scope: Option<Vec<DateTime<Utc>>>,
    pub conversation_counts: Option<ConversationCounts>,
    pub bad_timestamps: BadTimestamps,
    /// Rows read per table.
    pub rows_read: RowsRead,
}

/// The conversations of the whole table: all, and those without a creation time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConversationCounts {
    pub total: u64,
    pub without_created_at: u64,
}

/// Which tables of the usage side to load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UsageTables {
    /// `usage_events` (events definitions).
    Events,
    /// contacts' `last_activity_ts` and company retention columns (proxy definitions).
    Proxy,
    /// Neither (the database has no usage input).
    Neither,
}

pub const CORE: &[TableNeed] = &[
    COMPANIES_NEED,
    TableNeed {
        table: CONVERSATION_ENHANCED,
        columns: &[
            "conversation_id",
            "conversation_created_at",
            "conversation_initiated_type",
            "conversation_author_type",
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

pub const PROXY: &[TableNeed] = &[
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

pub const EVENTS: &[TableNeed] = &[TableNeed {
    table: USAGE_EVENTS,
    columns: &["company_id", "is_core", "occurred_at"],
}];

/// Reads every column the conversation-usage report reads, once, keeping nothing:
/// the floor the benchmark compares loading against. Returns (rows, bytes of text).
pub fn scan_floor(db: &Database, usage: UsageTables) -> Result<(u64, u64), DataError> {
    let mut queries = vec![
        (COMPANY_ENHANCED, SQL_COMPANIES),
        (CONVERSATION_ENHANCED, windowed_sql(db)?.conversations),
        (CONVERSATION_METRICS, SQL_WINDOWED.metrics),
    ];
    match usage {
        UsageTables::Events => queries.push((USAGE_EVENTS, SQL_USAGE_EVENTS)),
        UsageTables::Proxy => {
            queries.push((COMPANY_METRICS, SQL_COMPANY_METRICS));
            queries.push((CONTACT_ENHANCED, SQL_CONTACTS));
        }
        UsageTables::Neither => {}
    }
    let (mut rows, mut bytes) = (0u64, 0u64);
    for (table, sql) in queries {
        let (r, b) = db.scan(table, sql)?;
        rows += r;
        bytes += b;
    }
    Ok((rows, bytes))
}

/// Loads the rows of the conversation-usage report over `span.span`, each table
/// once; rows read and the data-quality counts are those of a load of `span.window`
/// alone.
pub fn load_conversation_usage(
    db: &Database,
    source_tz: Tz,
    usage: UsageTables,
    span: impl Into<LoadSpan>,
    mapping: &Mapping,
) -> Result<ConversationUsageData, DataError> {
    let span = span.into();
    let mut d = ConversationUsageData {
        mapping: mapping.clone(),
        ..ConversationUsageData::default()
    };
    let mut bad = BadTimestamps::default();
    let mut ts = TsParser {
        tz: source_tz,
        bad: &mut bad,
    };
    // The usage events are the largest table: they load on a second connection,
    // on another core, while this one reads the companies and the conversations.
    let second = (usage == UsageTables::Events)
        .then(|| db.reopen())
        .transpose()?;
    let mut outside_keys: std::collections::HashSet<String> = Default::default();
    let events = std::thread::scope(|scope| {
        let events = second.map(|db| scope.spawn(move || load_usage_events(&db, source_tz, span)));
        let scoped = shared::load_companies_scoped(db, mapping)?;
        let mut outside_names = scoped.outside_names();
        if mapping.scope.is_some() {
            d.outside_scope = Some(Vec::new());
            outside_keys = scoped
                .outside_keys()
                .into_iter()
                .map(str::to_owned)
                .collect();
        }
        d.companies = scoped.inside;
        d.company_name_ids = intern_company_names(&d.companies, &mut d.company_names);
        // Company names with a comma are matched before splitting, in both tables.
        let splitter = NameSplitter::new(&d.companies);
        let on_server =
            load_conversations(db, &mut d, &splitter, &mut outside_names, &mut ts, span)?;
        // The server applied a span longer than the window, and rows outside the
        // window came: count the window's (a set of its ids only then).
        let outside = || {
            d.conversations
                .iter()
                .any(|c| !c.created_at.is_some_and(|t| span.window.contains(t)))
        };
        let (conversations, metrics) = if on_server && span.span != span.window && outside() {
            let (n, ids) = shared::in_window(
                d.conversation_ids
                    .iter()
                    .zip(d.conversations.iter().map(|c| c.created_at)),
                span.window,
            );
            let metrics = d.metrics_ids.iter().filter(|id| ids.contains(id)).count();
            (n, metrics as u64)
        } else {
            (
                d.conversations.len() as u64,
                d.response_minutes.len() as u64,
            )
        };
        d.rows_read = vec![
            (COMPANY_ENHANCED, d.companies.len() as u64),
            (CONVERSATION_ENHANCED, conversations),
            (CONVERSATION_METRICS, metrics),
        ];
        if usage == UsageTables::Proxy {
            load_proxy_usage(
                db,
                &mut d.company_metrics,
                &mut d.contacts,
                &splitter,
                &mut ts,
            )?;
            d.rows_read
                .push((COMPANY_METRICS, d.company_metrics.len() as u64));
            d.rows_read
                .push((CONTACT_ENHANCED, d.contacts.len() as u64));
        }
        events
            .map(|h| h.join().expect("the events loader does not panic"))
            .transpose()
    })?;
    if let Some(mut loaded) = events {
        d.rows_read.push((USAGE_EVENTS, loaded.events.rows_read));
        d.usage_none_matched = attach_events(
            &d.companies,
            &outside_keys,
            &mapping.usage_company_key,
            &mut loaded,
        );
        d.usage_events = Some(loaded.events);
        for (k, v) in loaded.bad.0 {
            *bad.0.entry(k).or_default() += v;
        }
    }
    d.bad_timestamps = bad;
    Ok(d)
}

/// The conversations and their metrics rows of `span.span`; whether the server
/// applied the span (else every row was read).
fn load_conversations(
    db: &Database,
    d: &mut ConversationUsageData,
    splitter: &NameSplitter,
    outside_names: &mut OutsideNames,
    ts: &mut TsParser<'_>,
    span: LoadSpan,
) -> Result<bool, DataError> {
    let mut name = String::new();
    // Outside rows' times are read apart: their bad values are not this edition's.
    let mut outside_bad = BadTimestamps::default();
    let mut outside_ts = TsParser {
        tz: ts.tz,
        bad: &mut outside_bad,
    };
    // The span as a predicate where the server can compare the times itself.
    let bounds = shared::window_bounds(db, &span.span, ts.tz)?;
    // What the data-quality counts cover: the window's rows where the server cuts
    // them, else every row, as a load of the window alone counts them.
    let window = bounds.is_some().then_some(span.window);
    let (sql, sql_metrics, params) = windowed_sql(db)?.queries(&bounds);
    if bounds.is_some() {
        db.each_row(CONVERSATION_ENHANCED, SQL_CONVERSATION_COUNTS, |r| {
            let total = r.integer(0, "count(*)")?.unwrap_or(0) as u64;
            let with = r.integer(1, "conversation_created_at")?.unwrap_or(0) as u64;
            d.conversation_counts = Some(ConversationCounts {
                total,
                without_created_at: total.saturating_sub(with),
            });
            Ok(())
        })?;
    }
    let n = db.rows_hint(CONVERSATION_ENHANCED);
    d.conversations.reserve(n);
    d.conversation_ids.reserve(n, 16);
    db.each_row_with(CONVERSATION_ENHANCED, sql, params, |r| {
        if let Some(times) = d.outside_scope.as_mut() {
            if r.cow_text(6, "all_contact_company_names")?
                .is_some_and(|names| outside_names.holds(&names))
            {
                times.extend(r.time(1, "conversation_created_at", &mut outside_ts)?);
                return Ok(());
            }
        }
        let created_at = r.time(1, "conversation_created_at", ts)?;
        let last_close_at = r.time(7, "last_close_at", ts)?;
        let initiated = r.cow_text(2, "conversation_initiated_type")?;
        let author = r.cow_text(3, "conversation_author_type")?;
        let assignee = r.cow_text(4, "conversation_assignee_type")?;
        let tags = r.cow_text(5, "all_conversation_tags")?;
        let names = r.cow_text(6, "all_contact_company_names")?;
        let first_name = match names.as_deref() {
            Some(names) if splitter.first_into(names, &mut name) => {
                let counted = window.is_none_or(|w| created_at.is_some_and(|t| w.contains(t)));
                if counted && splitter.is_ambiguous(&name) {
                    d.ambiguous_names += 1;
                }
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
            created_at,
            first_company_name: first_name,
            last_close_at,
            bot_first: intercom::is_bot_first(
                tags.as_deref(),
                author.as_deref(),
                initiated.as_deref(),
            ),
            bot_tagged: intercom::first_response_tag(tags.as_deref()).is_some(),
            assignee: Assignee::of(assignee.as_deref()),
            contact_inbound: intercom::is_customer_initiated(initiated.as_deref()),
        });
        Ok(())
    })?;
    let n = db.rows_hint(CONVERSATION_METRICS);
    d.metrics_ids.reserve(n, 16);
    d.response_minutes.reserve(n);
    db.each_row_with(CONVERSATION_METRICS, sql_metrics, params, |r| {
        d.metrics_ids.push(
            r.cow_text(0, "conversation_id")?
                .as_deref()
                .unwrap_or_default(),
        );
        d.response_minutes
            .push(r.real(1, "time_to_first_response_minutes")?);
        Ok(())
    })?;
    Ok(bounds.is_some())
}

fn load_proxy_usage(
    db: &Database,
    company_metrics: &mut Vec<CompanyMetricsRow>,
    contacts: &mut Vec<ContactRow>,
    splitter: &NameSplitter,
    ts: &mut TsParser<'_>,
) -> Result<(), DataError> {
    db.each_row(COMPANY_METRICS, SQL_COMPANY_METRICS, |r| {
        company_metrics.push(CompanyMetricsRow {
            company_id: r.text(0, "company_id")?.unwrap_or_default(),
            retention_7d: r.real(1, "registration_retention_7d")?,
            retention_30d: r.real(2, "registration_retention_30d")?,
        });
        Ok(())
    })?;
    db.each_row(CONTACT_ENHANCED, SQL_CONTACTS, |r| {
        let names = r.cow_text(1, "all_contact_company_names")?;
        contacts.push(ContactRow {
            company_names: names
                .as_deref()
                .map(|s| splitter.items(s))
                .unwrap_or_default(),
            last_activity: r.time(2, "last_activity_ts", ts)?,
        });
        Ok(())
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::intercom::window::Window;
    use crate::source::db_with;

    /// A window no test time falls outside.
    fn all_time() -> Window {
        Window {
            start: DateTime::<Utc>::MIN_UTC,
            end: DateTime::<Utc>::MAX_UTC,
        }
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
        let d = load_conversation_usage(
            &db,
            chrono_tz::UTC,
            UsageTables::Events,
            all_time(),
            &Mapping::default(),
        )
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
        // co_x matches no company, the NULL company nothing: counted, not used.
        assert_eq!(d.usage_events.as_ref().map(|e| e.unmatched), Some(2));
        assert_eq!(d.bad_timestamps.0.get("usage_events.occurred_at"), Some(&1));
    }

    #[test]
    fn non_numeric_spend_names_table_column_and_row() {
        let (_d, db) = db_with(
            "CREATE TABLE intercom__company_enhanced (company_id TEXT, company_name TEXT, all_company_tags TEXT, monthly_spend, user_count);
             INSERT INTO intercom__company_enhanced VALUES ('c1','A',NULL,'12.5',3), ('c2','B',NULL,'lots',3);
             CREATE TABLE intercom__conversation_enhanced (x);
             CREATE TABLE intercom__conversation_metrics (x);",
        );
        let err = load_conversation_usage(
            &db,
            Tz::UTC,
            UsageTables::Proxy,
            all_time(),
            &Mapping::default(),
        )
        .unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("intercom__company_enhanced.monthly_spend"),
            "{msg}"
        );
        assert!(msg.contains("row #2"), "{msg}");
        assert!(msg.contains("\"lots\""), "{msg}");
    }
}
