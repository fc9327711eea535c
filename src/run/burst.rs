//! A burst (issue 32): one edition of a report per value found in the data under a
//! company column or tag prefix (`region`: `amer`, `cn`, …), each written as the
//! scoped run of that value writes it (`<period>/<value>/`, its own manifest), from
//! one read of the database: the database is opened once, its rows kept in memory
//! as the first edition reads them ([`Database::keep_reads`]), and every later
//! edition — and each edition's company-wide benchmark — reads them from there
//! through the same loaders, so an edition's numbers are those of its scoped run by
//! construction. One value's failure never stops another's; a value with fewer
//! paying companies than the report's minimum ([`Configured::min_companies`]) gets
//! no edition of thin numbers but an error that says so.
//!
//! A burst runs in this process (its editions share the rows in memory): the run's
//! time limit applies to each edition (the database stops its queries, the chart
//! engine its scripts), but a crash is not contained in a worker.

use std::collections::BTreeMap;

use super::{
    check_request, execute_on, plan_on, reads_companies, report_of, worker, Depth, Planned,
    RunError, RunOutcome, RunRequest,
};
use crate::clock::Clock;
use crate::intercom::population::is_paying;
use crate::intercom::scope::{FoundValue, Scope, ScopeRule};
use crate::source::Database;

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

/// The rule as messages name it: `region` or `tag region:`.
fn rule_name(by: &ScopeRule) -> String {
    match by {
        ScopeRule::Column(c) => c.clone(),
        ScopeRule::TagPrefix(p) => format!("tag {p}"),
    }
}

/// The scope of one value.
fn scope_of(by: &ScopeRule, value: &str) -> Scope {
    Scope {
        rule: by.clone(),
        values: vec![value.to_owned()],
    }
}

/// Every value found in the data under `by`, each run as a scoped edition.
pub fn run_burst(req: &BurstRequest, clock: &dyn Clock) -> Result<Vec<BurstEdition>, RunError> {
    let base = &req.run;
    let report = report_of(base)?;
    let configured = check_request(report, base)?;
    let reference = clock.now();
    worker::stage("open the database");
    let mut db = Database::open_within(&base.db, worker::deadline(base.time_limit))?;
    db.keep_reads(base.source_tz);
    // The companies as every edition reads them: with the column the rule reads.
    let mut probe = base.mapping.clone();
    probe.scope = Some(scope_of(&req.by, "*"));
    let needs = configured.needs(&db, &base.report_request())?;
    if !reads_companies(&needs) {
        return Err(RunError::ScopeWithoutCompanies {
            report: base.report.clone(),
            scope: format!("burst by {}", rule_name(&req.by)),
        });
    }
    db.check(report.name(), &needs)?;
    let companies = crate::reports::load::load_companies_as_mapped(&db, &probe)?;
    let found = Scope::found_spelled(&req.by, &companies, is_paying);
    if found.is_empty() {
        return Err(RunError::BurstFindsNoValue {
            rule: rule_name(&req.by),
        });
    }
    drop(companies);
    let minimum = configured.min_companies();
    let mut out = Vec::with_capacity(found.len());
    for value in found {
        let outcome = edition(req, &mut db, reference, &value, minimum);
        if let Err(e) = &outcome {
            tracing::warn!(value = %value.spelling, folder = %value.folder, error = %e, "a burst edition was not written");
        }
        out.push(BurstEdition {
            value: value.spelling,
            folder: value.folder,
            companies: value.companies,
            outcome,
        });
    }
    Ok(out)
}

/// The edition of one value on the burst's database.
fn edition(
    req: &BurstRequest,
    db: &mut Database,
    reference: chrono::DateTime<chrono::Utc>,
    value: &FoundValue,
    minimum: Option<(usize, &'static str)>,
) -> Result<RunOutcome, RunError> {
    let mut run = req.run.clone();
    run.mapping.scope = Some(scope_of(&req.by, &value.spelling));
    if let Some((langs, depths)) = req.per_value.get(&value.folder) {
        run.langs = langs.clone();
        run.depths = depths.clone();
    }
    if let Some((min, what)) = minimum.filter(|(min, _)| value.companies < *min) {
        return Err(RunError::TooFewCompanies {
            report: run.report.clone(),
            rule: rule_name(&req.by),
            value: value.spelling.clone(),
            companies: value.companies,
            minimum: min,
            threshold: what,
        });
    }
    let report = report_of(&run)?;
    let configured = check_request(report, &run)?;
    // Each edition has the run's time limit.
    let deadline = worker::deadline(run.time_limit);
    if let Some(d) = deadline {
        db.set_deadline(d)?;
    }
    let plan = plan_on(configured.as_ref(), db, &run, reference)?;
    execute_on(
        Planned {
            report,
            configured: configured.as_ref(),
            db,
            reference,
            deadline,
            plan,
        },
        &run,
    )
}
