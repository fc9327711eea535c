//! An edition's scope (issue 32, "Regional editions"): the companies a report is
//! restricted to, by a company column (`region`, `country`: dbt_intercom passes
//! custom company attributes through as columns) or a company tag prefix
//! (`region:cn`), and the values kept. Values compare as the mapping's values do
//! (`label_form`: `CN`, `cn` and ` cn ` are one value; `North America`,
//! `north-america` and `north_america` are one). What lies outside the scope is
//! the loaders' to count apart from what matches no company at all.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::mapping::counted_values;
use super::slices::{after_prefix, label_form};
use super::{normalize_name, split_items, CompanyRow, NameSplitter};

/// Where a company's scope value is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScopeRule {
    /// A company column (`region`).
    Column(String),
    /// A company tag prefix (`region:`): the value follows it.
    TagPrefix(String),
}

/// Which companies of a scope a computation describes ([`Scoped::side`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ScopeSide {
    /// The scope's companies: the edition.
    #[default]
    Inside,
    /// Every company, as an unscoped run: the company-wide benchmark.
    All,
    /// The companies outside the scope: what the edition is tested against.
    Rest,
}

/// The companies an edition covers: those whose value under `rule` is one of
/// `values`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "ScopeSpec", into = "ScopeSpec")]
pub struct Scope {
    pub rule: ScopeRule,
    /// As written; compared in [`label_form`].
    pub values: Vec<String>,
}

/// A scope as written: `{ column = "region", values = ["cn"] }` or
/// `{ tag_prefix = "region:", values = ["cn"] }`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScopeSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub column: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag_prefix: Option<String>,
    pub values: Vec<String>,
}

impl TryFrom<ScopeSpec> for Scope {
    type Error = String;
    fn try_from(s: ScopeSpec) -> Result<Self, String> {
        let rule = match (s.column, s.tag_prefix) {
            (Some(c), None) => {
                if c.is_empty() || !c.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                    return Err(format!(
                        "scope: `column` must be a column name (letters, digits, _), got {c:?}"
                    ));
                }
                ScopeRule::Column(c)
            }
            (None, Some(p)) => {
                if p.trim().is_empty() || p.contains(',') {
                    return Err(format!(
                        "scope: `tag_prefix` must be a non-empty tag prefix without a comma, \
                         got {p:?}"
                    ));
                }
                ScopeRule::TagPrefix(p)
            }
            _ => {
                return Err(
                    "scope: name exactly one of `column` (a company column such as \
                            \"region\") or `tag_prefix` (a company tag prefix such as \
                            \"region:\")"
                        .to_owned(),
                )
            }
        };
        let values: Vec<String> = s
            .values
            .into_iter()
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
            .collect();
        if values.is_empty() {
            return Err("scope: `values` lists no value (the values kept, e.g. [\"cn\"])".into());
        }
        Ok(Scope { rule, values })
    }
}

impl From<Scope> for ScopeSpec {
    fn from(s: Scope) -> Self {
        let (column, tag_prefix) = match s.rule {
            ScopeRule::Column(c) => (Some(c), None),
            ScopeRule::TagPrefix(p) => (None, Some(p)),
        };
        ScopeSpec {
            column,
            tag_prefix,
            values: s.values,
        }
    }
}

/// A value found under a rule ([`Scope::found_spelled`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundValue {
    /// As the data spells it most often (`CN`).
    pub spelling: String,
    /// Its edition's folder ([`Scope::folder`]: `cn`).
    pub folder: String,
    /// The companies holding it that were counted (the paying ones).
    pub companies: usize,
    /// Every company holding it.
    pub all: usize,
}

/// What a scope made of the companies: those inside it, in their order, and those
/// outside it (whose conversations and events are counted as outside the scope).
#[derive(Debug, Clone, Default)]
pub struct Scoped {
    pub inside: Vec<CompanyRow>,
    pub outside: Vec<CompanyRow>,
}

impl Scoped {
    /// The side `side` describes, from the split of `all` (in their order): the
    /// rest of the company swaps the two sides; every company leaves none outside.
    pub fn side(self, side: ScopeSide, all: Vec<CompanyRow>) -> Self {
        match side {
            ScopeSide::Inside => self,
            ScopeSide::Rest => Self {
                inside: self.outside,
                outside: self.inside,
            },
            ScopeSide::All => Self {
                inside: all,
                outside: Vec::new(),
            },
        }
    }

    /// The names of the companies outside the scope, to tell a conversation of one
    /// of them (outside the edition) from one that names no company at all.
    pub fn outside_names(&self) -> OutsideNames {
        if self.outside.is_empty() {
            return OutsideNames::default();
        }
        let inside: std::collections::HashSet<String> = self
            .inside
            .iter()
            .filter_map(|c| c.company_name.as_deref())
            .map(normalize_name)
            .collect();
        // A name an inside company carries too stays the inside company's.
        let names = self
            .outside
            .iter()
            .filter_map(|c| c.company_name.as_deref())
            .map(normalize_name)
            .filter(|n| !n.is_empty() && !inside.contains(n))
            .collect();
        let all: Vec<CompanyRow> = self.inside.iter().chain(&self.outside).cloned().collect();
        OutsideNames {
            names,
            splitter: NameSplitter::new(&all),
            buf: String::new(),
        }
    }

    /// The usage-event keys of the companies outside the scope (the mapping's
    /// `usage_company_key`, else Intercom's company id), less those an inside
    /// company has too.
    pub fn outside_keys(&self) -> std::collections::HashSet<&str> {
        let key = |c: &'_ CompanyRow| -> String {
            c.mapped
                .usage_key
                .clone()
                .unwrap_or_else(|| c.company_id.clone())
        };
        let inside: std::collections::HashSet<String> = self.inside.iter().map(key).collect();
        self.outside
            .iter()
            .map(|c| c.mapped.usage_key.as_deref().unwrap_or(&c.company_id))
            .filter(|k| !inside.contains(*k))
            .collect()
    }
}

/// The names of the companies outside a scope, and how a conversation's company
/// names are read against every company's (comma names of either side included).
#[derive(Debug, Clone, Default)]
pub struct OutsideNames {
    names: std::collections::HashSet<String>,
    splitter: NameSplitter,
    buf: String,
}

impl OutsideNames {
    /// Whether the conversation with these `all_contact_company_names` is a
    /// company's outside the scope (its first company name is one of theirs).
    pub fn holds(&mut self, company_names: &str) -> bool {
        !self.names.is_empty()
            && self.splitter.first_into(company_names, &mut self.buf)
            && self.names.contains(&self.buf)
    }
}

impl Scope {
    /// Reads `column=v1,v2` (a company column) or, with `tag`, `prefix=v1,v2` (a
    /// company tag prefix), as `run --scope` / `--scope-tag` take them.
    pub fn parse(arg: &str, tag: bool) -> Result<Self, String> {
        let (key, values) = arg.split_once('=').ok_or_else(|| {
            if tag {
                format!("--scope-tag {arg:?}: write PREFIX=VALUE[,VALUE…], e.g. region:=cn")
            } else {
                format!("--scope {arg:?}: write COLUMN=VALUE[,VALUE…], e.g. region=cn")
            }
        })?;
        let values = split_items(values).map(str::to_owned).collect();
        let (column, tag_prefix) = if tag {
            (None, Some(key.to_owned()))
        } else {
            (Some(key.trim().to_owned()), None)
        };
        Scope::try_from(ScopeSpec {
            column,
            tag_prefix,
            values,
        })
    }

    /// The folder of the scope's edition: its values in [`label_form`], joined by
    /// `+` (`cn`, `apac+cn`); only letters, digits, `_` and `+`.
    pub fn folder(&self) -> String {
        let mut vs: Vec<String> = self
            .values
            .iter()
            .map(|v| {
                label_form(v)
                    .chars()
                    .map(|c| {
                        if c.is_alphanumeric() || c == '_' {
                            c
                        } else {
                            '_'
                        }
                    })
                    .collect()
            })
            .collect();
        vs.sort();
        vs.dedup();
        vs.join("+")
    }

    /// The company column the scope reads, if it reads one.
    pub fn column(&self) -> Option<&str> {
        match &self.rule {
            ScopeRule::Column(c) => Some(c),
            ScopeRule::TagPrefix(_) => None,
        }
    }

    /// The rule as `check` and the appendix print it: `region = cn, apac` or
    /// `tag region: = cn`.
    pub fn describe(&self) -> String {
        match &self.rule {
            ScopeRule::Column(c) => format!("{c} = {}", self.values.join(", ")),
            ScopeRule::TagPrefix(p) => format!("tag {p} = {}", self.values.join(", ")),
        }
    }

    /// The company's values under the rule (a column holds one; tags may hold
    /// several), in [`label_form`].
    fn values_of(&self, c: &CompanyRow) -> Vec<String> {
        match &self.rule {
            ScopeRule::Column(_) => c
                .mapped
                .scope
                .as_deref()
                .map(label_form)
                .filter(|v| !v.is_empty())
                .into_iter()
                .collect(),
            ScopeRule::TagPrefix(p) => c
                .tags
                .as_deref()
                .map(|t| {
                    split_items(t)
                        .filter_map(|t| after_prefix(t, p))
                        .map(label_form)
                        .filter(|v| !v.is_empty())
                        .collect()
                })
                .unwrap_or_default(),
        }
    }

    /// Whether `c` is inside the scope.
    pub fn contains(&self, c: &CompanyRow) -> bool {
        let wanted: Vec<String> = self.values.iter().map(|v| label_form(v)).collect();
        self.values_of(c).iter().any(|v| wanted.contains(v))
    }

    /// Splits `companies` into those inside and outside the scope.
    pub fn split(&self, companies: Vec<CompanyRow>) -> Scoped {
        let wanted: Vec<String> = self.values.iter().map(|v| label_form(v)).collect();
        let (inside, outside) = companies
            .into_iter()
            .partition(|c| self.values_of(c).iter().any(|v| wanted.contains(v)));
        Scoped { inside, outside }
    }

    /// The values found under the rule, each with how many companies hold it, the
    /// most frequent first (then by name): what bursting makes editions of, and
    /// what a refusal lists.
    pub fn found(rule: &ScopeRule, companies: &[CompanyRow]) -> Vec<(String, usize)> {
        let probe = Scope {
            rule: rule.clone(),
            values: Vec::new(),
        };
        let mut n: BTreeMap<String, usize> = BTreeMap::new();
        for c in companies {
            let mut vs = probe.values_of(c);
            vs.dedup();
            for v in vs {
                *n.entry(v).or_default() += 1;
            }
        }
        let mut out: Vec<(String, usize)> = n.into_iter().collect();
        out.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        out
    }

    /// [`Scope::found`] with each value as the data spells it most often (then the
    /// first spelling in order) and the companies holding it that `counted` keeps
    /// (the paying ones): what a burst makes an edition of.
    pub fn found_spelled(
        rule: &ScopeRule,
        companies: &[CompanyRow],
        counted: impl Fn(&CompanyRow) -> bool,
    ) -> Vec<FoundValue> {
        let raw = |c: &CompanyRow| -> Vec<String> {
            match rule {
                ScopeRule::Column(_) => c
                    .mapped
                    .scope
                    .as_deref()
                    .map(|v| v.trim().to_owned())
                    .into_iter()
                    .collect(),
                ScopeRule::TagPrefix(p) => c
                    .tags
                    .as_deref()
                    .map(|t| {
                        split_items(t)
                            .filter_map(|t| after_prefix(t, p))
                            .map(|v| v.trim().to_owned())
                            .collect()
                    })
                    .unwrap_or_default(),
            }
        };
        let mut spellings: BTreeMap<String, Vec<(String, usize)>> = BTreeMap::new();
        let mut kept: BTreeMap<String, usize> = BTreeMap::new();
        for c in companies {
            let mut seen: Vec<String> = Vec::new();
            for v in raw(c) {
                let label = label_form(&v);
                if label.is_empty() || seen.contains(&label) {
                    continue;
                }
                let s = spellings.entry(label.clone()).or_default();
                match s.iter_mut().find(|(w, _)| *w == v) {
                    Some((_, n)) => *n += 1,
                    None => s.push((v, 1)),
                }
                if counted(c) {
                    *kept.entry(label.clone()).or_default() += 1;
                }
                seen.push(label);
            }
        }
        Self::found(rule, companies)
            .into_iter()
            .map(|(label, all)| {
                let spelling = spellings
                    .get(&label)
                    .and_then(|s| s.iter().rev().max_by_key(|(_, n)| *n))
                    .map_or_else(|| label.clone(), |(w, _)| w.clone());
                let folder = Scope {
                    rule: rule.clone(),
                    values: vec![label.clone()],
                }
                .folder();
                FoundValue {
                    companies: kept.get(&label).copied().unwrap_or(0),
                    all,
                    spelling,
                    folder,
                }
            })
            .collect()
    }

    /// Why a run refuses the scope on `companies` (all of them, before the split):
    /// a value no company holds, with the values found.
    pub fn refusal(&self, companies: &[CompanyRow]) -> Option<String> {
        let found = Self::found(&self.rule, companies);
        let missing: Vec<&str> = self
            .values
            .iter()
            .filter(|v| {
                let v = label_form(v);
                !found.iter().any(|(f, _)| *f == v)
            })
            .map(String::as_str)
            .collect();
        if missing.is_empty() {
            return None;
        }
        let listed = if found.is_empty() {
            match &self.rule {
                ScopeRule::Column(c) => format!("no company has a value in `{c}`"),
                ScopeRule::TagPrefix(p) => format!("no company has a tag starting `{p}`"),
            }
        } else {
            format!("the values found: {}", counted_values(&found, 8))
        };
        Some(format!(
            "scope `{}`: {} matches no company ({listed})",
            self.describe(),
            missing
                .iter()
                .map(|v| format!("`{v}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::intercom::Mapped;

    fn company(id: &str, tags: Option<&str>, region: Option<&str>) -> CompanyRow {
        CompanyRow {
            company_id: id.into(),
            company_name: Some(format!("Co {id}")),
            tags: tags.map(str::to_owned),
            monthly_spend: Some(100.0),
            user_count: Some(10),
            mapped: Mapped {
                scope: region.map(str::to_owned),
                ..Mapped::default()
            },
        }
    }

    #[test]
    fn a_column_scope_matches_values_without_case_or_separators() {
        let s = Scope::parse("region=CN, north-america", false).unwrap();
        assert_eq!(s.column(), Some("region"));
        assert_eq!(s.folder(), "cn+north_america");
        assert!(s.contains(&company("1", None, Some("cn"))));
        assert!(s.contains(&company("2", None, Some(" North America "))));
        assert!(!s.contains(&company("3", None, Some("emea"))));
        assert!(!s.contains(&company("4", None, None)));
        let split = s.split(vec![
            company("1", None, Some("Cn")),
            company("3", None, Some("emea")),
        ]);
        assert_eq!(split.inside.len(), 1);
        assert_eq!(split.outside[0].company_id, "3");
    }

    #[test]
    fn a_tag_scope_reads_the_value_after_the_prefix() {
        let s = Scope::parse("Region:=cn", true).unwrap();
        assert_eq!(s.column(), None);
        assert!(s.contains(&company("1", Some("segment:renewal, region:CN"), None)));
        assert!(!s.contains(&company("2", Some("region:emea"), None)));
        assert!(!s.contains(&company("3", Some("cn"), None)));
    }

    #[test]
    fn values_found_carry_their_commonest_spelling_folder_and_counted_companies() {
        let mut unpaid = company("4", None, Some("emea"));
        unpaid.monthly_spend = None;
        let companies = vec![
            company("1", None, Some("cn")),
            company("2", None, Some("EMEA")),
            company("3", None, Some(" EMEA ")),
            unpaid,
            company("5", None, Some("North America")),
            company("6", None, None),
        ];
        let found = Scope::found_spelled(&ScopeRule::Column("region".into()), &companies, |c| {
            c.monthly_spend.is_some()
        });
        let got: Vec<(&str, &str, usize, usize)> = found
            .iter()
            .map(|f| (f.spelling.as_str(), f.folder.as_str(), f.companies, f.all))
            .collect();
        assert_eq!(
            got,
            [
                ("EMEA", "emea", 2, 3),
                ("cn", "cn", 1, 1),
                ("North America", "north_america", 1, 1)
            ]
        );
    }

    #[test]
    fn the_other_sides_of_a_scope_are_every_company_or_the_rest_in_their_order() {
        let all = vec![
            company("1", None, Some("cn")),
            company("2", None, Some("emea")),
            company("3", None, Some("cn")),
            company("4", None, None),
        ];
        let s = Scope::parse("region=cn", false).unwrap();
        let ids = |v: &[CompanyRow]| v.iter().map(|c| c.company_id.clone()).collect::<Vec<_>>();
        let rest = s.split(all.clone()).side(ScopeSide::Rest, Vec::new());
        assert_eq!(ids(&rest.inside), ["2", "4"]);
        assert_eq!(ids(&rest.outside), ["1", "3"]);
        let every = Scoped::default().side(ScopeSide::All, all.clone());
        assert_eq!(ids(&every.inside), ["1", "2", "3", "4"]);
        assert!(every.outside.is_empty());
        let inside = s.split(all).side(ScopeSide::Inside, Vec::new());
        assert_eq!(ids(&inside.inside), ["1", "3"]);
    }

    #[test]
    fn a_value_no_company_holds_is_refused_with_the_values_found() {
        let companies = vec![
            company("1", None, Some("cn")),
            company("2", None, Some("emea")),
            company("3", None, Some("EMEA")),
        ];
        let s = Scope::parse("region=cn,latam", false).unwrap();
        let why = s.refusal(&companies).unwrap();
        assert!(why.contains("`latam` matches no company"), "{why}");
        assert!(why.contains("`emea` (2), `cn` (1)"), "{why}");
        assert_eq!(
            Scope::parse("region=cn", false)
                .unwrap()
                .refusal(&companies),
            None
        );
        let none = Scope::parse("region:=cn", true)
            .unwrap()
            .refusal(&companies)
            .unwrap();
        assert!(
            none.contains("no company has a tag starting `region:`"),
            "{none}"
        );
    }

    #[test]
    fn conversations_and_events_of_outside_companies_are_told_apart() {
        let s = Scope::parse("region=cn", false).unwrap();
        let mut shared = company("9", None, Some("emea"));
        shared.company_name = Some("Co 1".into());
        let scoped = s.split(vec![
            company("1", None, Some("cn")),
            company("2", None, Some("emea")),
            shared,
        ]);
        let mut names = scoped.outside_names();
        assert!(names.holds(" co 2 , Co 1"));
        assert!(!names.holds("Co 1, Co 2"));
        assert!(
            !names.holds("Unknown Ltd"),
            "no company at all is not outside"
        );
        let keys = scoped.outside_keys();
        assert!(keys.contains("2") && keys.contains("9") && !keys.contains("1"));
        let mut none = Scoped::default().outside_names();
        assert!(!none.holds("Co 2"));
    }

    #[test]
    fn a_scope_is_written_with_one_rule_and_some_values() {
        for bad in ["=cn", "region=", "re gion=cn", "region"] {
            assert!(Scope::parse(bad, false).is_err(), "{bad}");
        }
        let both: Result<Scope, _> = toml::from_str::<ScopeSpec>(
            "column = \"region\"\ntag_prefix = \"region:\"\nvalues = [\"cn\"]",
        )
        .map_err(|e| e.to_string())
        .and_then(Scope::try_from);
        assert!(both.unwrap_err().contains("exactly one"));
        let s: Scope = toml::from_str("tag_prefix = \"region:\"\nvalues = [\"cn\"]").unwrap();
        assert_eq!(s.rule, ScopeRule::TagPrefix("region:".into()));
        let back = toml::to_string(&s).unwrap();
        assert_eq!(toml::from_str::<Scope>(&back).unwrap(), s);
    }
}
