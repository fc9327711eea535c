//! What the user's tags and columns mean (data contract, "Mapping"): which company
//! tags carry the segment, the seat bucket and the ARR bucket, which tags and
//! segments make a company "at risk" or an "expansion target", and which company
//! column the product-usage events' `company_id` holds, and who counts as paying.
//! Defaults are the reference dataset's conventions; a configuration changes any of
//! them. Over 600 lines: the rules, their validation and the refusals `check` and
//! the runs share read together, with their unit tests.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::slices::{
    after_prefix, classify_company, label_of, Buckets, LabelSource, Labels, ARR_BOUNDS,
    SEAT_BOUNDS, SEGMENTS,
};
use super::{split_items, CompanyRow};

/// The mapping in force for a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Mapping {
    /// Tag prefix of the segment (`segment:renewal`).
    pub segment_tag_prefix: String,
    /// A company column holding the segment name instead (it wins over the tag).
    pub segment_column: Option<String>,
    /// A company column holding the seat bucket name (`60_129`, …).
    pub seat_bucket_column: Option<String>,
    /// A company column holding the ARR bucket name (`30k_65k`, …).
    pub arr_bucket_column: Option<String>,
    /// A company column holding the monthly spend in place of `monthly_spend`
    /// (paying: above 0; ARR: 12 ×), for workspaces that keep it elsewhere.
    pub spend_column: Option<String>,
    /// Who counts as paying: `spend` (the default: a spend above 0) or `all`, for
    /// a product without spend data (every company pays; ARR is then not available).
    pub paying: Paying,
    /// Where the seat buckets start (user_count), four increasing bounds; the names
    /// follow (`[50, 100, 250, 500]` → `under_50`, `50_99`, …, `500_plus`).
    pub seat_bounds: [i64; 4],
    /// Where the ARR buckets start (12 × monthly_spend), four increasing bounds.
    pub arr_bounds: [f64; 4],
    /// Tag prefix of the seat bucket (`seat_bucket:seats:60_129`).
    pub seat_tag_prefix: String,
    /// Tag prefix of the ARR bucket (`arr_bucket:arr:30k_65k`).
    pub arr_tag_prefix: String,
    /// The user's segment names → the spec's (`"Trial" = "new_contract"`); a value
    /// not listed is read in the spec's form (`Churn Watch` is `churn_watch`).
    pub segment_values: BTreeMap<String, String>,
    /// The user's seat bucket names → the buckets in force (`"1-59" = "under_60"`).
    pub seat_bucket_values: BTreeMap<String, String>,
    /// The user's ARR bucket names → the buckets in force.
    pub arr_bucket_values: BTreeMap<String, String>,
    /// Tags that make a company at risk (compared case-insensitively).
    pub at_risk_tags: Vec<String>,
    /// Segments whose companies are at risk.
    pub at_risk_segments: Vec<String>,
    /// Tags that make a company an expansion target.
    pub expansion_tags: Vec<String>,
    /// Segments whose companies are expansion targets.
    pub expansion_segments: Vec<String>,
    /// The `intercom__company_enhanced` column whose value `usage_events.company_id`
    /// holds (`company_id`: Intercom's id; a pass-through custom attribute when the
    /// events carry the product's own account id).
    pub usage_company_key: String,
    /// The edition's scope (a job's `scope`, `run --scope`): the companies the
    /// report is restricted to. Not a key of a mapping file ([`KEYS`]): a scope
    /// says whose report it is, not what the data means.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<super::scope::Scope>,
    /// Which companies of the scope a computation describes: the scope's (every
    /// edition), or, for the edition's company-wide benchmark computed from the same
    /// rows, every company or the rest of the company. Never written by a user.
    #[serde(skip)]
    pub scope_side: super::scope::ScopeSide,
}

impl Default for Mapping {
    fn default() -> Self {
        Self {
            segment_tag_prefix: "segment:".into(),
            segment_column: None,
            seat_bucket_column: None,
            arr_bucket_column: None,
            spend_column: None,
            paying: Paying::Spend,
            seat_bounds: SEAT_BOUNDS,
            arr_bounds: ARR_BOUNDS,
            seat_tag_prefix: "seat_bucket:seats:".into(),
            arr_tag_prefix: "arr_bucket:arr:".into(),
            segment_values: BTreeMap::new(),
            seat_bucket_values: BTreeMap::new(),
            arr_bucket_values: BTreeMap::new(),
            at_risk_tags: vec!["Churn Watch".into()],
            at_risk_segments: vec!["churn_watch".into()],
            expansion_tags: vec!["Expansion Target".into()],
            expansion_segments: vec!["expansion".into()],
            usage_company_key: "company_id".into(),
            scope: None,
            scope_side: super::scope::ScopeSide::Inside,
        }
    }
}

/// The keys of a mapping, as written (the fields of [`Mapping`]).
pub const KEYS: &[&str] = &[
    "segment_tag_prefix",
    "segment_column",
    "seat_bucket_column",
    "arr_bucket_column",
    "spend_column",
    "paying",
    "seat_bounds",
    "arr_bounds",
    "seat_tag_prefix",
    "arr_tag_prefix",
    "segment_values",
    "seat_bucket_values",
    "arr_bucket_values",
    "at_risk_tags",
    "at_risk_segments",
    "expansion_tags",
    "expansion_segments",
    "usage_company_key",
];

/// Who counts as paying (the mapping's `paying`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Paying {
    /// A monthly spend above 0 (`monthly_spend`, or the mapping's `spend_column`).
    #[default]
    Spend,
    /// Every company: a product without spend data. ARR is not available then.
    All,
}

impl Paying {
    /// The values `paying` accepts, as written.
    pub const VALUES: &'static [&'static str] = &["spend", "all"];

    pub fn as_str(self) -> &'static str {
        match self {
            Paying::Spend => "spend",
            Paying::All => "all",
        }
    }
}

/// A mapping that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{source_name}: {message}")]
pub struct MappingError {
    /// Where the mapping came from (`--mapping m.toml`, `job[0].mapping`).
    pub source_name: String,
    pub message: String,
}

impl crate::exit::Classify for MappingError {
    /// The mapping file is the user's.
    fn exit(&self) -> crate::exit::Exit {
        crate::exit::Exit::Usage
    }
}

impl Mapping {
    /// The defaults with `over`'s keys laid over `base`'s (a job's over
    /// `[defaults.mapping]`); unknown keys and wrong types are refused.
    pub fn from_tables(
        base: Option<&toml::Table>,
        over: Option<&toml::Table>,
        source_name: &str,
    ) -> Result<Self, MappingError> {
        let mut t = base.cloned().unwrap_or_default();
        for (k, v) in over.cloned().unwrap_or_default() {
            t.insert(k, v);
        }
        if let Some(k) = t.keys().find(|k| !KEYS.contains(&k.as_str())) {
            return Err(MappingError {
                source_name: source_name.to_owned(),
                message: format!(
                    "unknown key `{k}`{} (the mapping keys: {})",
                    crate::suggest::did_you_mean(k, KEYS.iter().copied()),
                    KEYS.join(", ")
                ),
            });
        }
        if let Some(v) = t.get("paying") {
            if !v.as_str().is_some_and(|v| Paying::VALUES.contains(&v)) {
                return Err(MappingError {
                    source_name: source_name.to_owned(),
                    message: format!(
                        "`paying` must be \"spend\" (a company pays when its monthly spend, \
                         `monthly_spend` or `spend_column`, is above 0) or \"all\" (every \
                         company pays: a product without spend data; ARR is then not \
                         available), got {v}"
                    ),
                });
            }
        }
        let m: Mapping = toml::Value::Table(t)
            .try_into()
            .map_err(|e: toml::de::Error| MappingError {
                source_name: source_name.to_owned(),
                message: e.message().to_owned(),
            })?;
        m.check().map_err(|message| MappingError {
            source_name: source_name.to_owned(),
            message,
        })?;
        Ok(m)
    }

    /// Reads a `--mapping` file: the keys at the top level (or under `[mapping]`).
    pub fn from_file(path: &std::path::Path) -> Result<Self, MappingError> {
        let name = path.display().to_string();
        let err = |message: String| MappingError {
            source_name: name.clone(),
            message,
        };
        let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
        let mut table: toml::Table = toml::from_str(&text).map_err(|e| err(e.to_string()))?;
        let table = match table.remove("mapping") {
            Some(toml::Value::Table(t)) if table.is_empty() => t,
            Some(_) => return Err(err("`mapping` must be the file's only table".into())),
            None => table,
        };
        Self::from_tables(None, Some(&table), &name)
    }

    /// The bucket names in force (the spec's unless the bounds moved).
    pub fn buckets(&self) -> Buckets {
        Buckets::for_bounds(&self.seat_bounds, &self.arr_bounds)
    }

    fn check(&self) -> Result<(), String> {
        if !self.seat_bounds.windows(2).all(|w| w[0] < w[1]) || self.seat_bounds[0] <= 0 {
            return Err(format!(
                "`seat_bounds` must be four increasing positive numbers, got {:?}",
                self.seat_bounds
            ));
        }
        if !self.arr_bounds.windows(2).all(|w| w[0] < w[1])
            || !self.arr_bounds.iter().all(|a| a.is_finite() && *a > 0.0)
        {
            return Err(format!(
                "`arr_bounds` must be four increasing positive numbers, got {:?}",
                self.arr_bounds
            ));
        }
        for (key, v) in [
            ("segment_tag_prefix", &self.segment_tag_prefix),
            ("seat_tag_prefix", &self.seat_tag_prefix),
            ("arr_tag_prefix", &self.arr_tag_prefix),
        ] {
            if v.trim().is_empty() || v.contains(',') {
                return Err(format!(
                    "`{key}` must be a non-empty tag prefix without a comma, got {v:?}"
                ));
            }
        }
        let buckets = self.buckets();
        for (key, values, allowed) in [
            ("segment_values", &self.segment_values, &SEGMENTS[..]),
            (
                "seat_bucket_values",
                &self.seat_bucket_values,
                &buckets.seat[..],
            ),
            (
                "arr_bucket_values",
                &self.arr_bucket_values,
                &buckets.arr[..],
            ),
        ] {
            for (from, to) in values {
                if label_of(to, &BTreeMap::new(), allowed).is_none() {
                    return Err(format!(
                        "`{key}`: `{from}` = `{to}`, but `{to}` is not one of {}",
                        allowed.join(", ")
                    ));
                }
            }
        }
        for (key, names) in [
            ("at_risk_segments", &self.at_risk_segments),
            ("expansion_segments", &self.expansion_segments),
        ] {
            if let Some(n) = names
                .iter()
                .find(|n| label_of(n, &self.segment_values, &SEGMENTS).is_none())
            {
                return Err(format!(
                    "`{key}`: `{n}` is not a segment (the segments: {}; a name of your \
                     own is mapped to one with segment_values = {{ \"{n}\" = \"…\" }})",
                    SEGMENTS.join(", ")
                ));
            }
        }
        if self.paying == Paying::All {
            if let Some(c) = &self.spend_column {
                return Err(format!(
                    "`paying = \"all\"` counts every company as paying, so `spend_column = \
                     {c:?}` would be read for nothing: set one of them"
                ));
            }
        }
        for (rule, column) in self.columns_named() {
            if column.is_empty()
                || !column
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_')
            {
                return Err(format!(
                    "`{rule}` must be a column name (letters, digits, _), got {column:?}"
                ));
            }
        }
        Ok(())
    }

    fn columns_named(&self) -> Vec<(&'static str, &str)> {
        let mut out = vec![("usage_company_key", self.usage_company_key.as_str())];
        for (rule, c) in [
            ("segment_column", &self.segment_column),
            ("seat_bucket_column", &self.seat_bucket_column),
            ("arr_bucket_column", &self.arr_bucket_column),
            ("spend_column", &self.spend_column),
        ] {
            if let Some(c) = c {
                out.push((rule, c.as_str()));
            }
        }
        if let Some(c) = self.scope.as_ref().and_then(|s| s.column()) {
            out.push(("scope_column", c));
        }
        out
    }

    /// The company columns to read besides the contract's, by rule
    /// (`usage_company_key` only when it is not `company_id`).
    pub fn columns(&self) -> Vec<(&'static str, &str)> {
        self.columns_named()
            .into_iter()
            .filter(|(rule, c)| !(*rule == "usage_company_key" && *c == "company_id"))
            .collect()
    }

    /// Whether `c` is at risk and whether it is an expansion target.
    pub fn groups_of(&self, c: &CompanyRow) -> (bool, bool) {
        self.group_rules(c, &classify_company(self, c)).groups()
    }

    /// Which group rules `c` (labelled `l`) meets: a tag or a segment of each group.
    fn group_rules(&self, c: &CompanyRow, l: &Labels) -> GroupRules {
        let tagged = |names: &[String]| {
            c.tags.as_deref().is_some_and(|t| {
                split_items(t).any(|x| names.iter().any(|n| x.eq_ignore_ascii_case(n)))
            })
        };
        let in_segments = |names: &[String]| {
            l.segment_src != LabelSource::Fallback
                && names
                    .iter()
                    .any(|n| label_of(n, &self.segment_values, &SEGMENTS) == Some(l.segment))
        };
        GroupRules {
            at_risk_tags: tagged(&self.at_risk_tags),
            at_risk_segments: in_segments(&self.at_risk_segments),
            expansion_tags: tagged(&self.expansion_tags),
            expansion_segments: in_segments(&self.expansion_segments),
        }
    }

    /// Each rule and the value it has, as `check` and the reports print them.
    pub fn rules(&self) -> Vec<(&'static str, String)> {
        let opt = |v: &Option<String>| v.clone().unwrap_or_else(|| "—".to_owned());
        let list = |v: &[String]| {
            if v.is_empty() {
                "—".to_owned()
            } else {
                v.join(", ")
            }
        };
        let pairs = |v: &BTreeMap<String, String>| {
            if v.is_empty() {
                "—".to_owned()
            } else {
                v.iter()
                    .map(|(a, b)| format!("{a} → {b}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        };
        vec![
            ("segment_tag_prefix", self.segment_tag_prefix.clone()),
            ("segment_column", opt(&self.segment_column)),
            ("seat_bucket_column", opt(&self.seat_bucket_column)),
            ("arr_bucket_column", opt(&self.arr_bucket_column)),
            ("spend_column", opt(&self.spend_column)),
            ("paying", self.paying.as_str().to_owned()),
            ("seat_bounds", format!("{:?}", self.seat_bounds)),
            ("arr_bounds", format!("{:?}", self.arr_bounds)),
            ("seat_tag_prefix", self.seat_tag_prefix.clone()),
            ("arr_tag_prefix", self.arr_tag_prefix.clone()),
            ("segment_values", pairs(&self.segment_values)),
            ("seat_bucket_values", pairs(&self.seat_bucket_values)),
            ("arr_bucket_values", pairs(&self.arr_bucket_values)),
            ("at_risk_tags", list(&self.at_risk_tags)),
            ("at_risk_segments", list(&self.at_risk_segments)),
            ("expansion_tags", list(&self.expansion_tags)),
            ("expansion_segments", list(&self.expansion_segments)),
            ("usage_company_key", self.usage_company_key.clone()),
            (
                "scope",
                self.scope
                    .as_ref()
                    .map_or_else(|| "—".to_owned(), |s| s.describe()),
            ),
        ]
    }

    /// One line for an appendix: the rules that differ from the defaults, or
    /// `default`.
    pub fn summary(&self) -> String {
        let d = Mapping::default().rules();
        let changed: Vec<String> = self
            .rules()
            .into_iter()
            .zip(d)
            .filter(|(a, b)| a.1 != b.1)
            .map(|((k, v), _)| format!("{k} = {v}"))
            .collect();
        if changed.is_empty() {
            "default".into()
        } else {
            changed.join("; ")
        }
    }

    /// How many companies each rule matched (for `check`).
    pub fn matches(&self, companies: &[CompanyRow]) -> BTreeMap<&'static str, usize> {
        let mut n: BTreeMap<&'static str, usize> = BTreeMap::new();
        for c in companies {
            let l = classify_company(self, c);
            let g = self.group_rules(c, &l);
            let (risk, expansion) = g.groups();
            for (rule, hit) in [
                ("segment_tag_prefix", l.segment_src == LabelSource::Tag),
                ("seat_tag_prefix", l.seat_src == LabelSource::Tag),
                ("arr_tag_prefix", l.arr_src == LabelSource::Tag),
                ("segment_column", l.segment_src == LabelSource::Column),
                ("seat_bucket_column", l.seat_src == LabelSource::Column),
                ("arr_bucket_column", l.arr_src == LabelSource::Column),
                ("at_risk_tags", g.at_risk_tags),
                ("at_risk_segments", g.at_risk_segments),
                ("expansion_tags", g.expansion_tags),
                ("expansion_segments", g.expansion_segments),
                ("at_risk", risk),
                ("expansion", expansion),
            ] {
                *n.entry(rule).or_default() += usize::from(hit);
            }
        }
        n
    }

    /// Values found where a label rule looks that name no label (after the value
    /// maps and the spec's form): per rule, each value and how many companies hold
    /// it, the most frequent first.
    pub fn unrecognised(
        &self,
        companies: &[CompanyRow],
    ) -> BTreeMap<&'static str, Vec<(String, usize)>> {
        let buckets = self.buckets();
        let tag_rules = [
            (
                "segment_tag_prefix",
                &self.segment_tag_prefix,
                &self.segment_values,
                &SEGMENTS[..],
            ),
            (
                "seat_tag_prefix",
                &self.seat_tag_prefix,
                &self.seat_bucket_values,
                &buckets.seat[..],
            ),
            (
                "arr_tag_prefix",
                &self.arr_tag_prefix,
                &self.arr_bucket_values,
                &buckets.arr[..],
            ),
        ];
        let mut found: BTreeMap<&'static str, BTreeMap<String, usize>> = BTreeMap::new();
        for c in companies {
            let mut note = |rule: &'static str, v: &str| {
                if !v.is_empty() {
                    *found
                        .entry(rule)
                        .or_default()
                        .entry(v.to_owned())
                        .or_default() += 1;
                }
            };
            if let Some(tags) = c.tags.as_deref() {
                for (rule, prefix, values, allowed) in tag_rules {
                    for v in split_items(tags).filter_map(|t| after_prefix(t, prefix)) {
                        if label_of(v, values, allowed).is_none() {
                            note(rule, v);
                        }
                    }
                }
            }
            for (rule, v, values, allowed) in [
                (
                    "segment_column",
                    &c.mapped.segment,
                    &self.segment_values,
                    &SEGMENTS[..],
                ),
                (
                    "seat_bucket_column",
                    &c.mapped.seat_bucket,
                    &self.seat_bucket_values,
                    &buckets.seat[..],
                ),
                (
                    "arr_bucket_column",
                    &c.mapped.arr_bucket,
                    &self.arr_bucket_values,
                    &buckets.arr[..],
                ),
            ] {
                if let Some(v) = v.as_deref() {
                    if label_of(v, values, allowed).is_none() {
                        note(rule, v.trim());
                    }
                }
            }
        }
        found
            .into_iter()
            .map(|(rule, values)| {
                let mut v: Vec<(String, usize)> = values.into_iter().collect();
                v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
                (rule, v)
            })
            .collect()
    }

    /// The rules the user set that match no company: a run refuses them (a slice or
    /// a group that silently holds nobody would read as "nothing stands out"), each
    /// named with the values found there and the key that maps them.
    pub fn refusals(&self, companies: &[CompanyRow]) -> Vec<String> {
        // Only a rule the user set can be refused: with every rule at its default
        // (most runs) the companies are not classified again for nothing.
        let set = |(_, value): &(&str, String), (_, default): &(&str, String)| {
            value != default && value != "—"
        };
        let defaults = Mapping::default().rules();
        if companies.is_empty() || !self.rules().iter().zip(&defaults).any(|(r, d)| set(r, d)) {
            return Vec::new();
        }
        let mut n = self.matches(companies);
        // A tag rule counts the companies whose tags it reads, also where a mapped
        // column wins over the tag.
        for c in companies {
            let l = super::slices::classify(
                self,
                c.tags.as_deref(),
                c.user_count,
                c.monthly_spend.unwrap_or(0.0),
            );
            for (rule, src) in [
                ("segment_tag_prefix", l.segment_src),
                ("seat_tag_prefix", l.seat_src),
                ("arr_tag_prefix", l.arr_src),
            ] {
                if src == LabelSource::Tag {
                    *n.entry(rule).or_default() += 1;
                }
            }
        }
        let unknown = self.unrecognised(companies);
        let mut out = Vec::new();
        for (r, d) in self.rules().into_iter().zip(&defaults) {
            if !set(&r, d) || n.get(r.0).is_none_or(|hits| *hits > 0) {
                continue;
            }
            let (rule, value) = r;
            let found = match (unknown.get(rule), values_key(rule)) {
                (Some(values), Some(key)) if !values.is_empty() => format!(
                    ": the values there are {} — none is a name the report knows; map \
                     them with {key} = {{ \"{}\" = \"…\" }}",
                    counted_values(values, 5),
                    values[0].0
                ),
                _ => " (no company has it)".to_owned(),
            };
            out.push(format!("`{rule} = {value}` matches no company{found}"));
        }
        out
    }
}

impl Mapping {
    /// Why `companies` have no segment: every one falls to "Unknown segment" (the
    /// segment rule, tag or column, matched none), with what the rule tried, the
    /// values found and the keys to set; `None` when one company has a segment (or
    /// there are none). A report sliced by segments would read as "nothing stands
    /// out" on such a population, so `check` fails and a run refuses it.
    pub fn no_segment(&self, companies: &[CompanyRow]) -> Option<String> {
        self.no_segment_among(companies, |_| true)
    }

    /// [`Mapping::no_segment`] of the companies `among` keeps (a run: the paying
    /// ones), the values and the count from all of them.
    pub fn no_segment_among(
        &self,
        companies: &[CompanyRow],
        among: impl Fn(&CompanyRow) -> bool,
    ) -> Option<String> {
        let mut kept = companies.iter().filter(|c| among(c)).peekable();
        if kept.peek().is_none()
            || kept.any(|c| classify_company(self, c).segment_src != LabelSource::Fallback)
        {
            return None;
        }
        let mut tried = format!("tags starting with `{}`", self.segment_tag_prefix);
        if let Some(col) = &self.segment_column {
            tried.push_str(&format!(" and the column `{col}`"));
        }
        let unknown = self.unrecognised(companies);
        let found: Vec<(String, usize)> = ["segment_tag_prefix", "segment_column"]
            .iter()
            .filter_map(|r| unknown.get(r))
            .flatten()
            .cloned()
            .collect();
        let values = if !found.is_empty() {
            format!(
                "the values there are {}, none a segment",
                counted_values(&found, 5)
            )
        } else {
            let mut tags: BTreeMap<&str, usize> = BTreeMap::new();
            for t in companies.iter().filter_map(|c| c.tags.as_deref()) {
                for x in split_items(t).filter(|x| !x.is_empty()) {
                    *tags.entry(x).or_default() += 1;
                }
            }
            let mut tags: Vec<(String, usize)> =
                tags.into_iter().map(|(t, n)| (t.to_owned(), n)).collect();
            tags.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
            if tags.is_empty() {
                "no company has a tag".to_owned()
            } else {
                format!(
                    "no company has such a tag; their tags are {}",
                    counted_values(&tags, 5)
                )
            }
        };
        Some(format!(
            "every one of the {} companies falls to \"Unknown segment\": the segment rule \
             ({tried}) matched none ({values}); set segment_tag_prefix to your tags' prefix, \
             segment_column to a company column holding the segment, or segment_values to map \
             your names to the report's ({})",
            companies.len(),
            SEGMENTS.join(", ")
        ))
    }
}

/// The first `shown` of `values` with their company counts, and how many more
/// (`` `Gold` (627), `Silver` (3) and 2 more ``): how `check` and the refusals list
/// the values a rule found.
pub fn counted_values(values: &[(String, usize)], shown: usize) -> String {
    let listed: Vec<String> = values
        .iter()
        .take(shown)
        .map(|(v, n)| format!("`{v}` ({n})"))
        .collect();
    match values.len().saturating_sub(shown) {
        0 => listed.join(", "),
        more => format!("{} and {more} more", listed.join(", ")),
    }
}

/// The key that maps the user's values of a label rule to the report's names.
fn values_key(rule: &str) -> Option<&'static str> {
    match rule {
        "segment_tag_prefix" | "segment_column" => Some("segment_values"),
        "seat_tag_prefix" | "seat_bucket_column" => Some("seat_bucket_values"),
        "arr_tag_prefix" | "arr_bucket_column" => Some("arr_bucket_values"),
        _ => None,
    }
}

/// The group rules one company meets.
struct GroupRules {
    at_risk_tags: bool,
    at_risk_segments: bool,
    expansion_tags: bool,
    expansion_segments: bool,
}

impl GroupRules {
    /// (at risk, expansion target).
    fn groups(&self) -> (bool, bool) {
        (
            self.at_risk_tags || self.at_risk_segments,
            self.expansion_tags || self.expansion_segments,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_keys_are_the_fields_and_a_misspelt_one_is_named_with_the_one_meant() {
        let all = Mapping {
            segment_column: Some("a".into()),
            seat_bucket_column: Some("b".into()),
            arr_bucket_column: Some("c".into()),
            spend_column: Some("d".into()),
            ..Mapping::default()
        };
        let toml::Value::Table(t) = toml::Value::try_from(&all).unwrap() else {
            panic!("a mapping is a table");
        };
        let mut fields: Vec<&str> = t.keys().map(String::as_str).collect();
        let mut keys = KEYS.to_vec();
        fields.sort_unstable();
        keys.sort_unstable();
        assert_eq!(fields, keys);

        let over: toml::Table = toml::from_str("at_risk_tag = [\"x\"]").unwrap();
        let e = Mapping::from_tables(None, Some(&over), "m.toml").unwrap_err();
        assert!(
            e.to_string()
                .starts_with("m.toml: unknown key `at_risk_tag`; did you mean `at_risk_tags`?"),
            "{e}"
        );
    }

    fn company(tags: &str) -> CompanyRow {
        CompanyRow {
            company_id: "c".into(),
            company_name: Some("C".into()),
            tags: Some(tags.into()),
            monthly_spend: Some(100.0),
            user_count: Some(10),
            mapped: Default::default(),
        }
    }

    #[test]
    fn a_job_overrides_the_defaults_key_by_key_and_typos_are_refused() {
        let base: toml::Table = toml::from_str("at_risk_tags = ['At Risk']").unwrap();
        let over: toml::Table =
            toml::from_str("segment_tag_prefix = 'stage:'\nusage_company_key = 'account_id'")
                .unwrap();
        let m = Mapping::from_tables(Some(&base), Some(&over), "job[0].mapping").unwrap();
        assert_eq!(m.at_risk_tags, ["At Risk"]);
        assert_eq!(m.segment_tag_prefix, "stage:");
        assert_eq!(m.usage_company_key, "account_id");
        assert_eq!(
            m.expansion_tags,
            ["Expansion Target"],
            "untouched keys keep the default"
        );
        assert!(
            m.summary().contains("segment_tag_prefix = stage:"),
            "{}",
            m.summary()
        );
        assert_eq!(Mapping::default().summary(), "default");

        let typo: toml::Table = toml::from_str("segment_prefix = 'x'").unwrap();
        let e = Mapping::from_tables(None, Some(&typo), "m.toml").unwrap_err();
        assert!(
            e.to_string().contains("m.toml") && e.to_string().contains("segment_prefix"),
            "{e}"
        );
        let bad: toml::Table = toml::from_str("usage_company_key = 'x; drop table'").unwrap();
        assert!(Mapping::from_tables(None, Some(&bad), "m.toml").is_err());
    }

    #[test]
    fn a_mapped_column_wins_over_the_tag_when_it_holds_a_known_name() {
        let m = Mapping {
            segment_column: Some("crm_segment".into()),
            ..Mapping::default()
        };
        assert_eq!(m.columns(), [("segment_column", "crm_segment")]);
        let mut c = company("segment:expansion");
        c.mapped.segment = Some(" renewal ".into());
        let l = classify_company(&m, &c);
        assert_eq!(
            (super::super::slices::segment_name(l.segment), l.segment_src),
            ("renewal", LabelSource::Column)
        );
        c.mapped.segment = Some("gold".into());
        let l = classify_company(&m, &c);
        assert_eq!(
            (super::super::slices::segment_name(l.segment), l.segment_src),
            ("expansion", LabelSource::Tag),
            "not a segment name: the tag decides"
        );
        let bad: toml::Table = toml::from_str("segment_column = 'a b'").unwrap();
        assert!(Mapping::from_tables(None, Some(&bad), "m.toml").is_err());
    }

    #[test]
    fn bucket_bounds_move_the_buckets_and_name_them_alike() {
        let d = Mapping::default();
        assert_eq!(
            d.buckets(),
            Buckets::default(),
            "the spec's names by default"
        );
        let t: toml::Table = toml::from_str(
            "seat_bounds = [50, 100, 250, 500]\narr_bounds = [25000, 50000, 100000, 250000.5]",
        )
        .unwrap();
        let m = Mapping::from_tables(None, Some(&t), "m.toml").unwrap();
        let b = m.buckets();
        assert_eq!(
            *b.seat,
            ["under_50", "50_99", "100_249", "250_499", "500_plus"]
        );
        assert_eq!(
            *b.arr,
            [
                "under_25k",
                "25k_50k",
                "50k_100k",
                "100k_250000.5",
                "250000.5_plus"
            ]
        );
        assert_eq!(m.buckets(), b, "made once, the same names again");
        let mut c = company("");
        c.user_count = Some(99);
        c.monthly_spend = Some(50_000.0 / 12.0);
        let l = classify_company(&m, &c);
        assert_eq!(
            (b.seat_name(l.seat), b.arr_name(l.arr)),
            ("50_99", "50k_100k")
        );
        // A tag names a bucket of the buckets in force.
        let c = company("seat_bucket:seats:500_plus, seat_bucket:seats:60_129");
        assert_eq!(b.seat_name(classify_company(&m, &c).seat), "500_plus");
        for bad in [
            "seat_bounds = [50, 40, 250, 500]",
            "arr_bounds = [0, 1, 2, 3]",
            "seat_bounds = [1, 2, 3]",
        ] {
            let t: toml::Table = toml::from_str(bad).unwrap();
            assert!(
                Mapping::from_tables(None, Some(&t), "m.toml").is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn labels_are_read_in_the_users_spelling() {
        use super::super::slices::label_form;
        for (given, form) in [
            ("Churn Watch", "churn_watch"),
            ("  churn-watch ", "churn_watch"),
            ("NEW_CONTRACT", "new_contract"),
            ("60-129", "60_129"),
            ("130 - 259", "130_259"),
            ("$30k–$65k", "30k_65k"),
            ("420+", "420_plus"),
            ("200k +", "200k_plus"),
            ("1,000+", "1000_plus"),
        ] {
            assert_eq!(label_form(given), form, "{given}");
        }
        let m = Mapping {
            segment_tag_prefix: "Stage: ".into(),
            at_risk_segments: vec!["Churn Watch".into()],
            segment_values: [("Trial".to_owned(), "new_contract".to_owned())].into(),
            ..Mapping::default()
        };
        // The prefix without case, the value in the spec's form or through the map.
        assert_eq!(m.groups_of(&company("stage: churn watch")), (true, false));
        assert_eq!(m.groups_of(&company("Stage: Renewal")), (false, false));
        let l = classify_company(&m, &company("Stage: trial"));
        assert_eq!(
            super::super::slices::segment_name(l.segment),
            "new_contract"
        );
        let unknown = m.unrecognised(&[company("Stage: Gold"), company("Stage: Gold, x")]);
        assert_eq!(unknown["segment_tag_prefix"], [("Gold".to_owned(), 2)]);
        // Nothing matches: refused with the values found (and the group rule that
        // matches nobody); everything matches somebody: not.
        let r = m.refusals(&[company("Stage: Gold")]);
        assert_eq!(r.len(), 2, "{r:?}");
        assert!(
            r[0].contains("`Gold` (1)") && r[0].contains("segment_values"),
            "{r:?}"
        );
        assert!(
            r[1].starts_with("`at_risk_segments = Churn Watch` matches no company"),
            "{r:?}"
        );
        assert!(m
            .refusals(&[company("Stage: Gold"), company("stage: churn-watch")])
            .is_empty());
        assert!(
            Mapping::default().refusals(&[company("")]).is_empty(),
            "defaults are not refused"
        );
        // The default rules read the users' spellings too.
        let l = classify_company(&Mapping::default(), &company("Segment:Churn Watch"));
        assert_eq!(super::super::slices::segment_name(l.segment), "churn_watch");

        for bad in [
            "at_risk_segments = ['Gold']",
            "[segment_values]\nGold = 'platinum'",
            "[seat_bucket_values]\n'1-59' = 'under_50'",
        ] {
            let t: toml::Table = toml::from_str(bad).unwrap();
            let e = Mapping::from_tables(None, Some(&t), "m.toml").unwrap_err();
            assert!(e.to_string().contains("m.toml: `"), "{bad}: {e}");
        }
        let t: toml::Table =
            toml::from_str("at_risk_segments = ['Gold']\n[segment_values]\nGold = 'churn_watch'")
                .unwrap();
        assert!(Mapping::from_tables(None, Some(&t), "m.toml").is_ok());
    }

    #[test]
    fn groups_and_slices_follow_the_mapping() {
        let m = Mapping {
            segment_tag_prefix: "stage:".into(),
            at_risk_tags: vec!["red flag".into()],
            at_risk_segments: vec!["renewal".into()],
            ..Mapping::default()
        };
        assert_eq!(m.groups_of(&company("Red Flag")), (true, false));
        assert_eq!(m.groups_of(&company("stage:renewal")), (true, false));
        assert_eq!(m.groups_of(&company("segment:renewal")), (false, false));
        assert_eq!(m.groups_of(&company("stage:expansion")), (false, true));
        let n = m.matches(&[
            company("stage:renewal, Red Flag"),
            company("segment:renewal"),
        ]);
        assert_eq!(n["segment_tag_prefix"], 1);
        assert_eq!(n["at_risk"], 1);
    }

    #[test]
    fn paying_is_spend_or_all_and_all_makes_arr_unknown() {
        let t: toml::Table = toml::from_str("paying = 'all'").unwrap();
        let m = Mapping::from_tables(None, Some(&t), "m.toml").unwrap();
        assert_eq!(m.paying, Paying::All);
        assert_eq!(m.summary(), "paying = all");
        assert_eq!(Mapping::default().paying, Paying::Spend);
        for bad in ["paying = 'paid'", "paying = true", "paying = 'ALL'"] {
            let t: toml::Table = toml::from_str(bad).unwrap();
            let e = Mapping::from_tables(None, Some(&t), "m.toml")
                .unwrap_err()
                .to_string();
            assert!(
                e.starts_with("m.toml: `paying` must be \"spend\"") && e.contains("or \"all\""),
                "{bad}: {e}"
            );
        }
        let t: toml::Table = toml::from_str("paying = 'all'\nspend_column = 'mrr'").unwrap();
        let e = Mapping::from_tables(None, Some(&t), "m.toml").unwrap_err();
        assert!(e.to_string().contains("set one of them"), "{e}");

        let mut c = company("");
        c.monthly_spend = None;
        assert!(!super::super::population::is_paying(&c));
        c.mapped.paying_all = true;
        assert!(super::super::population::is_paying(&c));
        assert!(super::super::population::arr_of(&c).is_nan());
        let l = classify_company(&m, &c);
        assert_eq!(
            m.buckets().arr_name(l.arr),
            "unknown",
            "no ARR: no ARR bucket"
        );
    }
}
