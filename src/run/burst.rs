//! Bursting (issue 32): one run of a report per value found in the data under a
//! company column or tag prefix (`region`), each a scoped edition written to
//! `<period>/<value>/`, each with its own languages and depths. What is mailed to
//! whom is the job's; this module only runs the editions.
//!
//! This body is the straightforward one: the values are listed from the companies,
//! then every value is one scoped [`super::run`].

use std::collections::BTreeMap;

use crate::clock::Clock;
use crate::intercom::scope::{Scope, ScopeRule};
use crate::intercom::slices::{after_prefix, label_form};
use crate::intercom::{split_items, CompanyRow};

use super::{Depth, RunError, RunOutcome, RunRequest};

pub struct BurstRequest {
    /// The run every edition shares; its `mapping.scope` is None.
    pub run: RunRequest,
    /// Where each company's value is read.
    pub by: ScopeRule,
    /// Languages and depths per value folder (the value's label form, as `Scope::folder`
    /// names it); a value found in the data but absent here gets `run.langs` / `run.depths`.
    pub per_value: BTreeMap<String, (Vec<String>, Vec<Depth>)>,
}

pub struct BurstEdition {
    /// The value as the data spells it (most common spelling), and its folder name.
    pub value: String,
    pub folder: String,
    /// Companies of this value in the population.
    pub companies: usize,
    /// This value's run; one value's failure never stops another's.
    pub outcome: Result<RunOutcome, RunError>,
}

/// Every value found in the data under `by`, each run as a scoped edition.
pub fn run_burst(req: &BurstRequest, clock: &dyn Clock) -> Result<Vec<BurstEdition>, RunError> {
    let db = super::open_for_check(&req.run.db, req.run.time_limit)?;
    // The companies with the rule's column read (a probe scope names it).
    let mut mapping = req.run.mapping.clone();
    mapping.scope = Some(Scope {
        rule: req.by.clone(),
        values: Vec::new(),
    });
    let companies = crate::reports::load::load_companies_as_mapped(&db, &mapping)?;
    drop(db);
    let mut editions = Vec::new();
    for found in values_found(&req.by, &companies) {
        let mut run = req.run.clone();
        run.mapping.scope = Some(Scope {
            rule: req.by.clone(),
            values: vec![found.spelling.clone()],
        });
        if let Some((langs, depths)) = req.per_value.get(&found.folder) {
            run.langs.clone_from(langs);
            run.depths.clone_from(depths);
        }
        editions.push(BurstEdition {
            outcome: super::run(&run, clock),
            value: found.spelling,
            folder: found.folder,
            companies: found.paying,
        });
    }
    Ok(editions)
}

/// One value found under a rule.
struct Found {
    spelling: String,
    folder: String,
    /// The paying companies holding it (the report's population).
    paying: usize,
}

/// The values companies hold under `rule` (in label form, each once), with their
/// most common spelling, most companies first.
fn values_found(rule: &ScopeRule, companies: &[CompanyRow]) -> Vec<Found> {
    // label → (spelling → companies, paying companies)
    let mut by_label: BTreeMap<String, (BTreeMap<String, usize>, usize, usize)> = BTreeMap::new();
    for c in companies {
        let mut spelled: Vec<String> = match rule {
            ScopeRule::Column(_) => c
                .mapped
                .scope
                .as_deref()
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(str::to_owned)
                .into_iter()
                .collect(),
            ScopeRule::TagPrefix(p) => c
                .tags
                .as_deref()
                .map(|t| {
                    split_items(t)
                        .filter_map(|t| after_prefix(t, p))
                        .filter(|v| !v.is_empty())
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default(),
        };
        spelled.retain(|v| !label_form(v).is_empty());
        spelled.sort_by_key(|v| label_form(v));
        spelled.dedup_by_key(|v| label_form(v));
        for v in spelled {
            let e = by_label.entry(label_form(&v)).or_default();
            *e.0.entry(v).or_default() += 1;
            e.1 += 1;
            if crate::intercom::population::is_paying(c) {
                e.2 += 1;
            }
        }
    }
    let mut out: Vec<(usize, Found)> = by_label
        .into_values()
        .map(|(spellings, all, paying)| {
            let spelling = spellings
                .iter()
                .max_by(|a, b| a.1.cmp(b.1).then_with(|| b.0.cmp(a.0)))
                .map(|(s, _)| s.clone())
                .unwrap_or_default();
            let folder = Scope {
                rule: rule.clone(),
                values: vec![spelling.clone()],
            }
            .folder();
            (
                all,
                Found {
                    spelling,
                    folder,
                    paying,
                },
            )
        })
        .collect();
    out.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.folder.cmp(&b.1.folder)));
    out.into_iter().map(|(_, f)| f).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::intercom::Mapped;

    fn company(id: &str, tags: Option<&str>, region: Option<&str>, spend: f64) -> CompanyRow {
        CompanyRow {
            company_id: id.into(),
            company_name: Some(format!("Co {id}")),
            tags: tags.map(str::to_owned),
            monthly_spend: Some(spend),
            user_count: Some(10),
            mapped: Mapped {
                scope: region.map(str::to_owned),
                ..Mapped::default()
            },
        }
    }

    #[test]
    fn values_are_found_once_in_their_most_common_spelling() {
        let companies = [
            company("1", None, Some("CN"), 100.0),
            company("2", None, Some("cn"), 0.0),
            company("3", None, Some("CN "), 100.0),
            company("4", None, Some("EMEA"), 100.0),
            company("5", None, None, 100.0),
        ];
        let found = values_found(&ScopeRule::Column("region".into()), &companies);
        let got: Vec<(&str, &str, usize)> = found
            .iter()
            .map(|f| (f.spelling.as_str(), f.folder.as_str(), f.paying))
            .collect();
        assert_eq!(got, [("CN", "cn", 2), ("EMEA", "emea", 1)]);
        let tagged = [
            company("1", Some("region:APAC, segment:renewal"), None, 1.0),
            company("2", Some("Region:apac, region:APAC"), None, 1.0),
        ];
        let found = values_found(&ScopeRule::TagPrefix("region:".into()), &tagged);
        assert_eq!(found.len(), 1);
        assert_eq!((found[0].folder.as_str(), found[0].paying), ("apac", 2));
    }
}
