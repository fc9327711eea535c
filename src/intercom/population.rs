//! The paying population (`report-conversation-usage.md` §2) and the mapping of
//! conversations to companies by normalized name, duplicates resolved by the
//! contract's rule.

use rustc_hash::FxHashMap as HashMap;
use serde::Serialize;

use super::{intern_company_names, CompanyRow};
use crate::source::interner::Interner;

/// Paying companies and the name → company mapping of §2, shared by every report
/// that maps conversations to companies.
#[derive(Debug, Clone)]
pub struct Population {
    /// Indexes into the company rows of paying companies (`monthly_spend > 0`).
    pub paying: Vec<usize>,
    /// Name number → winning paying company (highest spend, then smallest id);
    /// `u32::MAX`: no paying company carries the name.
    winner: Vec<u32>,
    /// The names, when the population numbered them itself ([`Population::new`]).
    names: Interner,
    pub duplicate_names: Vec<DuplicateName>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct DuplicateName {
    pub normalized_name: String,
    /// Every paying company with that name, the winner first.
    pub companies: Vec<DuplicateCompany>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct DuplicateCompany {
    pub company_id: String,
    pub company_name: String,
    pub monthly_spend: f64,
}

/// Whether `c` pays: a monthly spend above 0, or every company under the mapping's
/// `paying = "all"`.
pub fn is_paying(c: &CompanyRow) -> bool {
    c.mapped.paying_all || c.monthly_spend.is_some_and(|s| s > 0.0)
}

/// The company's ARR (12 × monthly spend); NaN where it is not known (`paying =
/// "all"`), so that every sum it enters is not known either and prints as not
/// available, never as $0.
pub fn arr_of(c: &CompanyRow) -> f64 {
    if c.mapped.paying_all {
        f64::NAN
    } else {
        12.0 * c.monthly_spend.unwrap_or(0.0)
    }
}

impl Population {
    /// The paying company a conversation belongs to, from the first (normalized)
    /// name of its `all_contact_company_names`. For a population from
    /// [`Population::new`]; one from [`Population::numbered`] is asked by number
    /// ([`Population::company_of_name`]).
    pub fn company_of(&self, first_name: Option<&str>) -> Option<usize> {
        self.company_of_name(self.names.lookup(first_name?)?)
    }

    /// The paying company carrying name number `name` of the interner the population
    /// was built on.
    pub fn company_of_name(&self, name: u32) -> Option<usize> {
        match self.winner.get(name as usize) {
            Some(&c) if c != u32::MAX => Some(c as usize),
            _ => None,
        }
    }

    pub fn new(companies: &[CompanyRow]) -> Self {
        let mut names = Interner::default();
        let name_ids = intern_company_names(companies, &mut names);
        let mut pop = Self::numbered(companies, &name_ids, &names);
        pop.names = names;
        pop
    }

    /// The population over names numbered already: `name_ids[i]` is company `i`'s
    /// normalized name in `names` (`u32::MAX`: none), as the loader interns them
    /// before the conversations' names, so that a conversation's name number leads
    /// to its company without hashing a string again.
    pub fn numbered(companies: &[CompanyRow], name_ids: &[u32], names: &Interner) -> Self {
        let paying: Vec<usize> = (0..companies.len())
            .filter(|&i| is_paying(&companies[i]))
            .collect();
        // Highest spend first, then the smallest id.
        let order = |a: &usize, b: &usize| {
            let (ca, cb) = (&companies[*a], &companies[*b]);
            let (sa, sb) = (
                ca.monthly_spend.unwrap_or(0.0),
                cb.monthly_spend.unwrap_or(0.0),
            );
            sb.total_cmp(&sa)
                .then_with(|| ca.company_id.cmp(&cb.company_id))
        };
        let mut winner = vec![u32::MAX; names.len()];
        // Names carried by more than one paying company (rare): all of them.
        let mut shared: HashMap<u32, Vec<usize>> = HashMap::default();
        debug_assert_eq!(name_ids.len(), companies.len());
        for &i in &paying {
            let id = name_ids.get(i).copied().unwrap_or(u32::MAX);
            if id == u32::MAX {
                continue;
            }
            let w = &mut winner[id as usize];
            if *w == u32::MAX {
                *w = i as u32;
            } else {
                let prev = *w as usize;
                shared.entry(id).or_insert_with(|| vec![prev]).push(i);
                if order(&i, &prev).is_lt() {
                    *w = i as u32;
                }
            }
        }
        let mut duplicate_names: Vec<DuplicateName> = shared
            .into_iter()
            .map(|(name, mut idx)| {
                idx.sort_by(order);
                DuplicateName {
                    normalized_name: names.get(name).to_owned(),
                    companies: idx
                        .iter()
                        .map(|&i| DuplicateCompany {
                            company_id: companies[i].company_id.clone(),
                            company_name: companies[i].company_name.clone().unwrap_or_default(),
                            monthly_spend: companies[i].monthly_spend.unwrap_or(0.0),
                        })
                        .collect(),
                }
            })
            .collect();
        duplicate_names.sort_by(|a: &DuplicateName, b| a.normalized_name.cmp(&b.normalized_name));
        Self {
            paying,
            winner,
            names: Interner::default(),
            duplicate_names,
        }
    }
}
