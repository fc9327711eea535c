//! The rows of the tag-drivers report: SQL, row types and the loader.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use crate::intercom::mapping::Mapping;
use crate::intercom::{
    topic_tags, CompanyRow, NameSplitter, COMPANY_ENHANCED, CONVERSATION_ENHANCED,
    CONVERSATION_METRICS,
};
use crate::reports::load::{self as shared, windowed_sql, LoadSpan, WindowedSql, COMPANIES_NEED};
use crate::source::{BadTimestamps, DataError, Database, RowsRead, TableNeed, TsParser};

/// The conversations and their metrics, over a window where the server compares
/// the times itself.
const SQL_WINDOWED: WindowedSql = windowed_sql!(
    "SELECT conversation_id, conversation_created_at, all_conversation_tags, \
     all_contact_company_names, conversation_rating FROM intercom__conversation_enhanced",
    "SELECT conversation_id, time_to_first_response_minutes, count_reopens \
     FROM intercom__conversation_metrics",
);

/// Every distinct tag list (the topics the editions name come from these).
const SQL_TAG_LISTS: &str =
    "SELECT DISTINCT all_conversation_tags FROM intercom__conversation_enhanced";

/// Every topic tag in the data, sorted, each once.
pub fn topics(db: &Database) -> Result<Vec<String>, DataError> {
    let mut out = std::collections::BTreeSet::new();
    db.each_row_with(CONVERSATION_ENHANCED, SQL_TAG_LISTS, &[], |r| {
        if let Some(t) = r.cow_text(0, "all_conversation_tags")? {
            out.extend(topic_tags(&t));
        }
        Ok(())
    })?;
    Ok(out.into_iter().collect())
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
    /// Rows read per table.
    pub rows_read: RowsRead,
    /// The mapping of the groups (at risk, expansion).
    pub mapping: Mapping,
    /// The creation times of the conversations of companies outside the mapping's
    /// scope, left out of every count but this one (`None`: no scope).
    pub outside_scope: Option<Vec<DateTime<Utc>>>,
    /// The population and each paying company's groups, made by the first metrics
    /// and shared by the rest: they depend on the companies and the mapping, not on
    /// the window, and a run computes a window, the comparison's sides and every trend
    /// month from one load. Empty until then; rows changed after it is made are not
    /// seen again.
    pub prepared: std::sync::OnceLock<super::metrics::Prepared>,
}

pub const NEEDS: &[TableNeed] = &[
    COMPANIES_NEED,
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

/// Loads the rows of the tag-drivers report over `span.span`; rows read are counted
/// as a load of `span.window` alone reads them (a window the server applies: the
/// window's conversations and their metrics rows; else every row).
pub fn load(
    db: &Database,
    source_tz: Tz,
    span: impl Into<LoadSpan>,
    mapping: &Mapping,
) -> Result<TagDriversData, DataError> {
    let LoadSpan { span, window } = span.into();
    let mut d = TagDriversData {
        mapping: mapping.clone(),
        ..TagDriversData::default()
    };
    let mut bad = BadTimestamps::default();
    let mut ts = TsParser {
        tz: source_tz,
        bad: &mut bad,
    };
    let scoped = shared::load_companies_scoped(db, mapping)?;
    let mut outside_names = scoped.outside_names();
    d.companies = scoped.inside;
    let mut outside = mapping.scope.is_some().then(Vec::new);
    // Outside rows' times are read apart: their bad values are not this edition's.
    let mut outside_bad = BadTimestamps::default();
    let mut outside_ts = TsParser {
        tz: source_tz,
        bad: &mut outside_bad,
    };
    let splitter = NameSplitter::new(&d.companies);
    let mut name = String::new();
    let bounds = shared::window_bounds(db, &span, source_tz)?;
    let (sql, sql_metrics, params) = SQL_WINDOWED.queries(&bounds);
    db.each_row_with(CONVERSATION_ENHANCED, sql, params, |r| {
        if let Some(times) = outside.as_mut() {
            if r.cow_text(3, "all_contact_company_names")?
                .is_some_and(|names| outside_names.holds(&names))
            {
                times.extend(r.time(1, "conversation_created_at", &mut outside_ts)?);
                return Ok(());
            }
        }
        d.conversations.push(TagConversationRow {
            conversation_id: r.text(0, "conversation_id")?.unwrap_or_default(),
            created_at: r.time(1, "conversation_created_at", &mut ts)?,
            topics: r
                .cow_text(2, "all_conversation_tags")?
                .map(|t| topic_tags(&t))
                .unwrap_or_default(),
            first_company_name: r
                .cow_text(3, "all_contact_company_names")?
                .filter(|names| splitter.first_into(names, &mut name))
                .map(|_| name.clone()),
            rating: r.real(4, "conversation_rating")?,
        });
        Ok(())
    })?;
    db.each_row_with(CONVERSATION_METRICS, sql_metrics, params, |r| {
        d.metrics.push(TagMetricsRow {
            conversation_id: r.text(0, "conversation_id")?.unwrap_or_default(),
            response_minutes: r.real(1, "time_to_first_response_minutes")?,
            reopens: r.integer(2, "count_reopens")?,
        });
        Ok(())
    })?;
    d.bad_timestamps = bad;
    d.outside_scope = outside;
    let outside = || {
        d.conversations
            .iter()
            .any(|c| !c.created_at.is_some_and(|t| window.contains(t)))
    };
    let (conversations, metrics) = if bounds.is_some() && span != window && outside() {
        let (n, ids) = shared::in_window(
            d.conversations
                .iter()
                .map(|c| (c.conversation_id.as_str(), c.created_at)),
            window,
        );
        let metrics = d
            .metrics
            .iter()
            .filter(|m| ids.contains(m.conversation_id.as_str()))
            .count();
        (n as usize, metrics)
    } else {
        (d.conversations.len(), d.metrics.len())
    };
    d.rows_read = vec![
        (COMPANY_ENHANCED, d.companies.len() as u64),
        (CONVERSATION_ENHANCED, conversations as u64),
        (CONVERSATION_METRICS, metrics as u64),
    ];
    Ok(d)
}
