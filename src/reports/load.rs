//! What every report loads from the dbt_intercom tables the same way: the anchor of
//! a rolling window (the latest conversation), a window as bound values where the
//! database compares the times itself, and the companies with the columns a mapping
//! names. The reports' own loaders (`<name>/load.rs`) call these; `intercom` turns
//! the rows into values and reads no database itself.

use std::borrow::Cow;
use std::collections::HashSet;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use crate::intercom::mapping::{Mapping, Paying};
use crate::intercom::scope::{ScopeSide, Scoped};
use crate::intercom::window::Window;
use crate::intercom::{CompanyRow, Mapped, COMPANY_ENHANCED, CONVERSATION_ENHANCED, USAGE_EVENTS};
use crate::source::{DataError, Database, Latest, Missing, Param, TableNeed};

/// Every conversation's creation time (text times are parsed by the reader).
const SQL_ALL_CREATED: &str = "SELECT conversation_created_at FROM intercom__conversation_enhanced";
/// The anchor where the server can compare the times itself (a native timestamp):
/// the latest not after `$1`, how many are after it, the first and the last.
const SQL_MAX_CREATED: &str =
    "SELECT max(CASE WHEN conversation_created_at <= $1 THEN conversation_created_at END), \
     count(CASE WHEN conversation_created_at > $1 THEN 1 END), \
     min(conversation_created_at), max(conversation_created_at) \
     FROM intercom__conversation_enhanced";
/// The columns of [`COMPANIES_NEED`], in the order [`load_companies_mapped`] reads them.
pub const SQL_COMPANIES: &str =
    "SELECT company_id, company_name, all_company_tags, monthly_spend, user_count \
     FROM intercom__company_enhanced";

/// The two queries of a windowed report's loader, its conversations (a `SELECT …
/// FROM intercom__conversation_enhanced`) and their metrics (a `SELECT … FROM
/// intercom__conversation_metrics`), each as written and with the window's predicate:
/// `$1`, `$2` are the window, inclusive, bound as [`window_bounds`] gives them. Made
/// by [`windowed_sql!`] from the two literals, so the predicate is written once here.
#[derive(Debug, Clone, Copy)]
pub struct WindowedSql {
    pub conversations: &'static str,
    pub metrics: &'static str,
    pub conversations_in_window: &'static str,
    pub metrics_in_window: &'static str,
}

/// A loader's [`WindowedSql`] from its two `SELECT`s (string literals).
macro_rules! windowed_sql {
    ($conversations:literal, $metrics:literal $(,)?) => {
        $crate::reports::load::WindowedSql {
            conversations: $conversations,
            metrics: $metrics,
            conversations_in_window: concat!(
                $conversations,
                " WHERE conversation_created_at BETWEEN $1 AND $2"
            ),
            metrics_in_window: concat!(
                $metrics,
                " WHERE conversation_id IN (SELECT conversation_id FROM \
                 intercom__conversation_enhanced WHERE conversation_created_at BETWEEN $1 AND $2)"
            ),
        }
    };
}
pub(crate) use windowed_sql;

impl WindowedSql {
    /// The conversations' and the metrics' query of a load, and the values they
    /// bind: the window's predicate where the database compares the times itself
    /// (`bounds`, from [`window_bounds`]), else every row (the loader cuts them).
    pub fn queries<'b>(
        &self,
        bounds: &'b Option<[Param; 2]>,
    ) -> (&'static str, &'static str, &'b [Param]) {
        match bounds {
            Some(b) => (self.conversations_in_window, self.metrics_in_window, &b[..]),
            None => (self.conversations, self.metrics, &[]),
        }
    }
}

/// The latest parseable `conversation_created_at` not after `not_after` (the rolling
/// window's anchor), and how many lie after it.
pub fn latest_conversation(
    db: &Database,
    tz: Tz,
    not_after: DateTime<Utc>,
) -> Result<Latest, DataError> {
    db.latest_time(
        CONVERSATION_ENHANCED,
        "conversation_created_at",
        SQL_ALL_CREATED,
        SQL_MAX_CREATED,
        tz,
        not_after,
    )
}

/// The window as the two bound values of `conversation_created_at BETWEEN $1 AND $2`
/// when the database compares that column's times itself (a native timestamp), so
/// only the window's conversations are read; `None`: read them all and cut here.
pub fn window_bounds(
    db: &Database,
    window: &Window,
    source_tz: Tz,
) -> Result<Option<[Param; 2]>, DataError> {
    db.time_bounds(
        CONVERSATION_ENHANCED,
        "conversation_created_at",
        window.start,
        window.end,
        source_tz,
    )
}

/// What a windowed report loads: the rows over `span`, which holds `window`,
/// counted (rows read, data-quality counts) as a load of `window` alone counts them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoadSpan {
    pub span: Window,
    pub window: Window,
}

impl From<Window> for LoadSpan {
    /// The window alone.
    fn from(window: Window) -> Self {
        Self {
            span: window,
            window,
        }
    }
}

/// Of `rows` (id, creation time) loaded over a span longer than `window`, what a
/// load of the window alone reads (`created_at BETWEEN` its ends): how many rows,
/// and their ids (the metrics rows it reads are those of these ids).
pub fn in_window<'a>(
    rows: impl Iterator<Item = (&'a str, Option<DateTime<Utc>>)>,
    window: Window,
) -> (u64, HashSet<&'a str>) {
    let mut n = 0;
    let ids = rows
        .filter(|(_, at)| at.is_some_and(|t| window.contains(t)))
        .map(|(id, _)| {
            n += 1;
            id
        })
        .collect();
    (n, ids)
}

/// The columns [`load_companies`] reads.
pub const COMPANIES_NEED: TableNeed = TableNeed {
    table: COMPANY_ENHANCED,
    columns: &[
        "company_id",
        "company_name",
        "all_company_tags",
        "monthly_spend",
        "user_count",
    ],
};

/// Why a run on this database would stop on its companies, for `check` (a report
/// printed as "can run" must run): no paying company (exit 1), a rule the user set
/// that matches no company, or no paying company with a segment (exit 2, as
/// [`load_companies_mapped`] refuses them).
pub fn population_blockers(db: &Database, mapping: &Mapping) -> Result<Vec<String>, DataError> {
    let mut companies = load_companies_as_mapped(db, mapping)?;
    if let Some(scope) = &mapping.scope {
        if let Some(why) = scope.refusal(&companies) {
            return Ok(vec![format!("a run stops with exit 2: {why}")]);
        }
        companies = scope.split(companies).inside;
    }
    let column = mapping.spend_column.as_deref().unwrap_or("monthly_spend");
    if !companies.iter().any(crate::intercom::population::is_paying) {
        return Ok(vec![format!(
            "no company has {column} > 0: a run stops with exit 1 (no paying company to \
             describe; the report covers paying customers only; a column of your own that \
             holds the monthly spend is named with spend_column in the mapping; a product \
             without spend data sets paying = \"all\")"
        )]);
    }
    Ok(mapping
        .refusals(&companies)
        .into_iter()
        .chain(mapping.no_segment_among(&companies, crate::intercom::population::is_paying))
        .map(|why| format!("a run stops with exit 2: {why}"))
        .collect())
}

/// How many usage events each company id of `usage_events` has.
const SQL_USAGE_KEYS: &str = "SELECT company_id, count(*) FROM usage_events GROUP BY company_id";

/// Of the usage events, how many are a company's under `mapping`'s
/// `usage_company_key`, and how many there are (`None`: no `usage_events` table).
pub fn usage_key_matches(
    db: &Database,
    companies: &[CompanyRow],
) -> Result<Option<(u64, u64)>, DataError> {
    if !db.has_table(USAGE_EVENTS)? {
        return Ok(None);
    }
    let keys: std::collections::HashSet<&str> = companies
        .iter()
        .map(|c| c.mapped.usage_key.as_deref().unwrap_or(&c.company_id))
        .collect();
    let (mut matched, mut total) = (0u64, 0u64);
    db.each_row(USAGE_EVENTS, SQL_USAGE_KEYS, |r| {
        let n = r.integer(1, "count(*)")?.unwrap_or(0).max(0) as u64;
        total += n;
        if r.cow_text(0, "company_id")?
            .is_some_and(|k| keys.contains(k.as_ref()))
        {
            matched += n;
        }
        Ok(())
    })?;
    Ok(Some((matched, total)))
}

/// The companies of `intercom__company_enhanced`.
pub fn load_companies(db: &Database) -> Result<Vec<CompanyRow>, DataError> {
    load_companies_mapped(db, &Mapping::default())
}

/// The companies, each with the values of the columns `mapping` names; refused when
/// a rule the user set matches none of them ([`Mapping::refusals`]) or no paying
/// company has a segment ([`Mapping::no_segment_among`]). The scope's alone when the
/// mapping carries one ([`load_companies_scoped`]).
pub fn load_companies_mapped(
    db: &Database,
    mapping: &Mapping,
) -> Result<Vec<CompanyRow>, DataError> {
    Ok(load_companies_scoped(db, mapping)?.inside)
}

/// [`load_companies_mapped`], and the companies outside the mapping's scope apart
/// (none without a scope): a loader counts their conversations and events as
/// outside the edition's scope, never as matching no company. A scope value no
/// company holds is refused with the values found; the mapping's own refusals are
/// judged on the scope's companies, the population the report describes.
pub fn load_companies_scoped(db: &Database, mapping: &Mapping) -> Result<Scoped, DataError> {
    let companies = load_companies_as_mapped(db, mapping)?;
    let scoped = match &mapping.scope {
        Some(scope) => {
            if let Some(why) = scope.refusal(&companies) {
                return Err(DataError::Unmatched {
                    db: db.name().to_owned(),
                    problems: vec![why],
                });
            }
            match mapping.scope_side {
                ScopeSide::All => Scoped::default().side(ScopeSide::All, companies),
                side => scope.split(companies).side(side, Vec::new()),
            }
        }
        None => Scoped {
            inside: companies,
            outside: Vec::new(),
        },
    };
    let mut problems = mapping.refusals(&scoped.inside);
    // A population with no segment is refused like a rule that matches nothing: a
    // report sliced by segment would read "nothing stands out" of one "Unknown
    // segment". Where nobody pays, the run stops on that first (exit 1).
    problems
        .extend(mapping.no_segment_among(&scoped.inside, crate::intercom::population::is_paying));
    if problems.is_empty() {
        Ok(scoped)
    } else {
        Err(DataError::Unmatched {
            db: db.name().to_owned(),
            problems,
        })
    }
}

/// [`load_companies_mapped`] without the refusal (`check` lists the rules and their
/// counts, then the refusals).
pub fn load_companies_as_mapped(
    db: &Database,
    mapping: &Mapping,
) -> Result<Vec<CompanyRow>, DataError> {
    let extra = mapping.columns();
    let sql = if extra.is_empty() {
        Cow::Borrowed(SQL_COMPANIES)
    } else {
        // Column names cannot be bound: each is checked against the table's own
        // columns (the mapping allows letters, digits and `_` only) and quoted.
        let have = db.columns(COMPANY_ENHANCED)?;
        let missing: Vec<Missing> = extra
            .iter()
            .filter(|(_, c)| !have.iter().any(|(h, _)| h.eq_ignore_ascii_case(c)))
            .map(|(_, c)| Missing {
                table: COMPANY_ENHANCED.to_owned(),
                column: Some((*c).to_owned()),
                hint: None,
            })
            .collect();
        if !missing.is_empty() {
            return Err(DataError::Schema {
                db: db.name().to_owned(),
                report: "(the mapping)".to_owned(),
                missing,
            });
        }
        let cols: Vec<String> = extra.iter().map(|(_, c)| format!("\"{c}\"")).collect();
        Cow::Owned(format!(
            "SELECT company_id, company_name, all_company_tags, monthly_spend, user_count, {} \
             FROM intercom__company_enhanced",
            cols.join(", ")
        ))
    };
    let mut out = Vec::with_capacity(db.rows_hint(COMPANY_ENHANCED));
    db.each_row(COMPANY_ENHANCED, &sql, |r| {
        let company_id = r
            .text(0, "company_id")?
            .ok_or_else(|| r.bad("company_id", "a company id", "NULL".into()))?;
        let mut mapped = Mapped {
            paying_all: mapping.paying == Paying::All,
            ..Mapped::default()
        };
        let mut spend = r.real(3, "monthly_spend")?;
        for (i, (rule, _)) in extra.iter().enumerate() {
            if *rule == "spend_column" {
                spend = r.real(5 + i, rule)?;
                continue;
            }
            let v = r.text(5 + i, rule)?;
            match *rule {
                "usage_company_key" => mapped.usage_key = v,
                "segment_column" => mapped.segment = v,
                "seat_bucket_column" => mapped.seat_bucket = v,
                "scope_column" => mapped.scope = v,
                _ => mapped.arr_bucket = v,
            }
        }
        out.push(CompanyRow {
            company_id,
            company_name: r.text(1, "company_name")?,
            tags: r.text(2, "all_company_tags")?,
            monthly_spend: spend,
            user_count: r.integer(4, "user_count")?,
            mapped,
        });
        Ok(())
    })?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::{db_with, timestamp};

    const COMPANIES: &str = "CREATE TABLE intercom__company_enhanced (company_id TEXT,
             company_name TEXT, all_company_tags TEXT, monthly_spend REAL, user_count INTEGER,
             Plan TEXT);
         INSERT INTO intercom__company_enhanced VALUES
             ('c1', 'Acme', 'segment:renewal', 2500.0, 80, 'expansion'),
             ('c2', NULL, NULL, NULL, NULL, NULL);";

    #[test]
    fn a_windowed_query_binds_the_window_only_where_the_server_compares_times() {
        const SQL: WindowedSql = windowed_sql!(
            "SELECT conversation_id FROM intercom__conversation_enhanced",
            "SELECT conversation_id FROM intercom__conversation_metrics",
        );
        let (all, metrics, params) = SQL.queries(&None);
        assert_eq!(
            (all, metrics, params.len()),
            (SQL.conversations, SQL.metrics, 0)
        );
        let at = timestamp::parse("2024-01-01 00:00:00", Tz::UTC).unwrap();
        let bounds = Some([Param::Zoned(at), Param::Zoned(at)]);
        let (all, metrics, params) = SQL.queries(&bounds);
        assert_eq!(
            all,
            "SELECT conversation_id FROM intercom__conversation_enhanced \
             WHERE conversation_created_at BETWEEN $1 AND $2"
        );
        assert_eq!(
            metrics,
            "SELECT conversation_id FROM intercom__conversation_metrics \
             WHERE conversation_id IN (SELECT conversation_id FROM \
             intercom__conversation_enhanced WHERE conversation_created_at BETWEEN $1 AND $2)"
        );
        assert_eq!(params.len(), 2);
    }

    #[test]
    fn companies_are_read_with_the_columns_a_mapping_names() {
        let (_d, db) = db_with(COMPANIES);
        let plain = load_companies(&db).unwrap();
        assert_eq!(plain.len(), 2);
        assert_eq!(plain[0].company_name.as_deref(), Some("Acme"));
        assert_eq!(plain[0].monthly_spend, Some(2500.0));
        assert_eq!(plain[0].user_count, Some(80));
        assert_eq!(plain[0].mapped, Mapped::default());
        assert_eq!(plain[1].company_name, None);

        let mapping = Mapping {
            segment_column: Some("plan".into()),
            ..Mapping::default()
        };
        let mapped = load_companies_mapped(&db, &mapping).unwrap();
        assert_eq!(mapped[0].mapped.segment.as_deref(), Some("expansion"));
        assert_eq!(mapped[1].mapped.segment, None);

        let missing = Mapping {
            seat_bucket_column: Some("seats".into()),
            ..Mapping::default()
        };
        let e = load_companies_mapped(&db, &missing)
            .unwrap_err()
            .to_string();
        assert!(e.contains("(the mapping)"), "{e}");
        assert!(e.contains("has no column `seats`"), "{e}");
    }

    #[test]
    fn a_company_without_an_id_is_a_bad_value() {
        let (_d, db) = db_with(&format!(
            "{COMPANIES} INSERT INTO intercom__company_enhanced (company_id) VALUES (NULL);"
        ));
        let e = load_companies(&db).unwrap_err();
        assert!(
            matches!(&e, DataError::BadValue { column: "company_id", row, .. } if row == "#3"),
            "{e}"
        );
    }

    #[test]
    fn the_anchor_and_a_text_window_from_the_conversations() {
        let (_d, db) = db_with(
            "CREATE TABLE intercom__conversation_enhanced (conversation_created_at TEXT);
             INSERT INTO intercom__conversation_enhanced VALUES
                 ('2024-06-01 10:00:00'), ('2024-06-30 09:00:00'), ('2030-01-01 00:00:00');",
        );
        let t = |s: &str| timestamp::parse(s, Tz::UTC).unwrap();
        let latest = latest_conversation(&db, Tz::UTC, t("2024-07-01 00:00:00")).unwrap();
        assert_eq!(latest.at, Some(t("2024-06-30 09:00:00")));
        assert_eq!(latest.after, 1);
        let window = Window {
            start: t("2024-06-01 00:00:00"),
            end: t("2024-07-01 00:00:00"),
        };
        assert_eq!(
            window_bounds(&db, &window, Tz::UTC).unwrap(),
            None,
            "SQLite's text times are cut after reading"
        );
    }
}
