//! The data contract's shared rules (`../shared/specs/data-contract.md`), pure:
//! functions from rows already read to values, no database, no SQL (the reports'
//! loaders read the tables these names name). The dbt_intercom table names, the
//! company row, how aggregate texts split and names compare, topic tags, the
//! bot-first rule, the slices of a company (`slices`), what the user's tags and
//! columns mean (`mapping`), the paying population and the name mapping
//! (`population`), and report windows (`window`).

pub mod mapping;
pub mod population;
pub mod scope;
pub mod slices;
pub mod window;

use crate::source::interner::Interner;

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
/// normalized, into a reused buffer; `false` when there is none (without the company
/// names that contain a comma: see [`NameSplitter`]).
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

/// Splits name aggregates knowing the company names that contain a comma
/// (`Acme, Inc.`): such a name is matched before splitting, longest first (contract,
/// "Conventions"). Without such names it is the plain split.
#[derive(Debug, Clone, Default)]
pub struct NameSplitter {
    /// Normalized company names with a comma, longest first.
    comma_names: Vec<String>,
    /// First items of comma names that are company names themselves (`acme` when
    /// both `Acme` and `Acme, Inc.` exist): a match there is ambiguous.
    ambiguous_prefixes: Vec<String>,
}

impl NameSplitter {
    pub fn new(companies: &[CompanyRow]) -> Self {
        let mut comma_names: Vec<String> = companies
            .iter()
            .filter_map(|c| c.company_name.as_deref())
            .filter(|n| n.contains(','))
            .map(normalize_name)
            .collect();
        comma_names.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        comma_names.dedup();
        let mut ambiguous_prefixes: Vec<String> = if comma_names.is_empty() {
            Vec::new()
        } else {
            let plain: std::collections::HashSet<String> = companies
                .iter()
                .filter_map(|c| c.company_name.as_deref())
                .filter(|n| !n.contains(','))
                .map(normalize_name)
                .collect();
            comma_names
                .iter()
                .filter_map(|n| split_items(n).next())
                .filter(|first| plain.contains(*first))
                .map(str::to_owned)
                .collect()
        };
        ambiguous_prefixes.sort();
        ambiguous_prefixes.dedup();
        Self {
            comma_names,
            ambiguous_prefixes,
        }
    }

    /// Whether `name`, a first name [`NameSplitter::first_into`] returned, could
    /// also have been read as a shorter company name (both `Acme` and `Acme, Inc.`
    /// exist): the longer one was taken, and the conversation is counted as
    /// ambiguous in data quality.
    pub fn is_ambiguous(&self, name: &str) -> bool {
        !self.ambiguous_prefixes.is_empty()
            && name.contains(',')
            && split_items(name).next().is_some_and(|first| {
                self.ambiguous_prefixes
                    .binary_search_by(|p| p.as_str().cmp(first))
                    .is_ok()
            })
    }

    /// The known comma name `rest` (normalized, trimmed) starts with, ending at the
    /// end of `rest` or at a `,`.
    fn comma_name_at(&self, rest: &str) -> Option<&str> {
        self.comma_names
            .iter()
            .find(|n| {
                rest.starts_with(n.as_str())
                    && rest[n.len()..]
                        .trim_start()
                        .chars()
                        .next()
                        .is_none_or(|c| c == ',')
            })
            .map(String::as_str)
    }

    /// The first name of an aggregate, normalized, into `out`; `false` when none.
    pub fn first_into(&self, names: &str, out: &mut String) -> bool {
        if self.comma_names.is_empty() || !names.contains(',') {
            return first_company_name_into(names, out);
        }
        let all = normalize_name(names);
        match self.comma_name_at(&all) {
            Some(n) => {
                out.clear();
                out.push_str(n);
                true
            }
            None => first_company_name_into(names, out),
        }
    }

    /// Every non-empty name of an aggregate, normalized.
    pub fn items(&self, names: &str) -> Vec<String> {
        if self.comma_names.is_empty() || !names.contains(',') {
            return split_items(names)
                .filter(|s| !s.is_empty())
                .map(normalize_name)
                .collect();
        }
        let all = normalize_name(names);
        let mut out = Vec::new();
        let mut rest = all.as_str();
        while !rest.is_empty() {
            let (item, next) = match self.comma_name_at(rest) {
                Some(n) => (n, &rest[n.len()..]),
                None => rest.split_once(',').unwrap_or((rest, "")),
            };
            let item = item.trim();
            if !item.is_empty() {
                out.push(item.to_owned());
            }
            rest = next
                .trim_start()
                .strip_prefix(',')
                .unwrap_or(next)
                .trim_start();
        }
        out
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct CompanyRow {
    pub company_id: String,
    pub company_name: Option<String>,
    pub tags: Option<String>,
    pub monthly_spend: Option<f64>,
    pub user_count: Option<i64>,
    /// The values of the columns the mapping names (none by default).
    pub mapped: Mapped,
}

/// A company's values of the columns a mapping names.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Mapped {
    /// `usage_company_key` when it is not `company_id`: what the usage events'
    /// `company_id` holds.
    pub usage_key: Option<String>,
    /// `segment_column`, `seat_bucket_column`, `arr_bucket_column`.
    pub segment: Option<String>,
    pub seat_bucket: Option<String>,
    pub arr_bucket: Option<String>,
    /// The scope's column (`region`), when the run's scope reads one.
    pub scope: Option<String>,
    /// The mapping's `paying = "all"`: the company pays whatever its spend, and its
    /// ARR is not known.
    pub paying_all: bool,
}

/// Topic tags of a tag aggregate: machine tags (any item with `:`) and empty items
/// left out, each tag once.
pub fn topic_tags(tags: &str) -> Vec<String> {
    // A set of what was seen keeps this linear in the number of items: one
    // conversation can carry a hundred thousand tags, and a scan of the list per
    // item made that minutes. The list keeps the order the tags are written in.
    let mut seen: std::collections::HashSet<&str> = std::collections::HashSet::new();
    let mut out: Vec<String> = Vec::new();
    for t in split_items(tags) {
        if !t.is_empty() && !t.contains(':') && seen.insert(t) {
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

/// Bot-first rule of §4: the first_response tag decides, else the proxy "bot-initiated"
/// (author `bot`, or initiated `bot_follow_up` / `operator_initiated`).
pub fn is_bot_first(tags: Option<&str>, author: Option<&str>, initiated: Option<&str>) -> bool {
    first_response_tag(tags).unwrap_or_else(|| {
        author == Some("bot") || matches!(initiated, Some("bot_follow_up" | "operator_initiated"))
    })
}

/// What a `first_response:` tag says: `Some(true)` bot, `Some(false)` human (`bot`
/// wins when both are there), `None` no such tag (the proxy decides).
pub fn first_response_tag(tags: Option<&str>) -> Option<bool> {
    let (mut bot, mut human) = (false, false);
    for item in split_items(tags?) {
        bot |= item == "first_response:bot";
        human |= item == "first_response:human";
    }
    (bot || human).then_some(bot)
}

/// Customer-initiated (contract table "Vocabulary"): Intercom's `customer_initiated`,
/// or the reference dataset's `contact_inbound`.
pub fn is_customer_initiated(initiated: Option<&str>) -> bool {
    matches!(initiated, Some("customer_initiated" | "contact_inbound"))
}

/// What `conversation_assignee_type` says of routing. The column is deprecated upstream
/// and may be all NULL: a NULL is "not known", never "not routed to a team".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Assignee {
    Unknown,
    Team,
    Other,
}

impl Assignee {
    pub fn of(assignee_type: Option<&str>) -> Self {
        match assignee_type.map(str::trim) {
            None | Some("") => Self::Unknown,
            Some("team") => Self::Team,
            Some(_) => Self::Other,
        }
    }
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

    #[test]
    fn topic_tags_keep_first_seen_order_and_drop_machine_tags() {
        assert_eq!(
            topic_tags("Bug, first_response:bot, ,Billing, Bug ,segment:x,Outage,Billing"),
            ["Bug", "Billing", "Outage"]
        );
    }

    /// 120,000 distinct tags on one conversation (plus each once more): every tag
    /// once, in the order written. The scan of the list per item this replaced took
    /// 45 s here.
    #[test]
    fn topic_tags_of_a_huge_aggregate() {
        let n = 120_000;
        let mut text: Vec<String> = (0..n).map(|i| format!("tag{i}")).collect();
        text.extend((0..n).rev().map(|i| format!("tag{i}")));
        text.push("status:open".into());
        let started = std::time::Instant::now();
        let tags = topic_tags(&text.join(","));
        eprintln!(
            "topic_tags of {} items: {:?}",
            text.len(),
            started.elapsed()
        );
        assert_eq!(tags.len(), n);
        assert!(tags
            .iter()
            .enumerate()
            .all(|(i, t)| *t == format!("tag{i}")));
    }

    #[test]
    fn company_names_with_a_comma_are_matched_before_splitting() {
        let company = |name: &str| CompanyRow {
            company_id: name.to_owned(),
            company_name: Some(name.to_owned()),
            tags: None,
            monthly_spend: Some(1.0),
            user_count: None,
            mapped: Mapped::default(),
        };
        let s = NameSplitter::new(&[company("Acme, Inc."), company("Acme"), company("Beta")]);
        let mut out = String::new();
        assert!(s.first_into("Acme, Inc., Beta", &mut out));
        assert_eq!(out, "acme, inc.");
        // `Acme` is a company too: read as the longer name, counted as ambiguous.
        assert!(s.is_ambiguous(&out));
        assert!(!s.is_ambiguous("acme") && !s.is_ambiguous("beta"));
        let only_long = NameSplitter::new(&[company("Acme, Inc."), company("Beta")]);
        assert!(only_long.first_into("Acme, Inc.", &mut out));
        assert!(
            !only_long.is_ambiguous(&out),
            "no shorter company to confuse it with"
        );
        assert!(s.first_into(" ACME, INC.", &mut out));
        assert_eq!(out, "acme, inc.");
        assert!(s.first_into("Acme, Beta", &mut out));
        assert_eq!(out, "acme");
        assert!(s.first_into("Acme, Incorporated", &mut out));
        assert_eq!(out, "acme", "a comma name matches only up to a separator");
        assert_eq!(
            s.items("Beta, Acme, Inc.,Acme"),
            ["beta", "acme, inc.", "acme"]
        );
        assert_eq!(s.items("Beta,, Acme"), ["beta", "acme"]);
        let plain = NameSplitter::new(&[company("Beta")]);
        assert_eq!(plain.items("Acme, Inc."), ["acme", "inc."]);
    }
}
