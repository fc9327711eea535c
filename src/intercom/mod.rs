//! The data contract's shared rules (`../shared/specs/data-contract.md`), pure: the
//! dbt_intercom table names, how aggregate texts split and names compare, topic tags,
//! the bot-first rule, the slices of a company (`slices`), the paying population and
//! the name mapping (`population`), and report windows (`window`).

pub mod population;
pub mod slices;
pub mod window;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use crate::source::interner::Interner;
use crate::source::{DataError, Database, TableNeed};

const SQL_MAX_CREATED: &str = "SELECT conversation_created_at FROM intercom__conversation_enhanced";
pub const SQL_COMPANIES: &str =
    "SELECT company_id, company_name, all_company_tags, monthly_spend, user_count \
     FROM intercom__company_enhanced";

pub const COMPANY_ENHANCED: &str = "intercom__company_enhanced";
pub const COMPANY_METRICS: &str = "intercom__company_metrics";
pub const CONTACT_ENHANCED: &str = "intercom__contact_enhanced";
pub const CONVERSATION_ENHANCED: &str = "intercom__conversation_enhanced";
pub const CONVERSATION_METRICS: &str = "intercom__conversation_metrics";
pub const USAGE_EVENTS: &str = "usage_events";

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

/// Bot-first rule of §4: the first_response tag decides, else author/initiated type.
pub fn is_bot_first(tags: Option<&str>, author: Option<&str>, initiated: Option<&str>) -> bool {
    if let Some(t) = tags {
        let (mut bot, mut human) = (false, false);
        for item in split_items(t) {
            bot |= item == "first_response:bot";
            human |= item == "first_response:human";
        }
        if bot {
            return true;
        }
        if human {
            return false;
        }
    }
    author == Some("bot") || initiated == Some("bot_follow_up")
}

/// The latest parseable `conversation_created_at` (the rolling window's anchor).
pub fn latest_conversation(db: &Database, tz: Tz) -> Result<Option<DateTime<Utc>>, DataError> {
    db.max_time(
        CONVERSATION_ENHANCED,
        SQL_MAX_CREATED,
        "conversation_created_at",
        tz,
    )
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

/// The companies of `intercom__company_enhanced`.
pub fn load_companies(db: &Database) -> Result<Vec<CompanyRow>, DataError> {
    let mut out = Vec::with_capacity(db.rows_hint(COMPANY_ENHANCED));
    db.each_row(COMPANY_ENHANCED, SQL_COMPANIES, |r| {
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
