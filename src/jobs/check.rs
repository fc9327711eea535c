//! `cxreport check`: every problem of a configuration, its templates, the embedded
//! fonts and the databases its jobs read, listed at once. With `--db` and no
//! configuration file, the database alone: which report can run on it, and why not.
//! With `--smtp`, the SMTP server too: connected to, TLS and login as configured,
//! nothing sent. What it finds is split as the runs would fail: `problems` are how
//! cxreport is configured or pointed at data (a run exits 2), `failures` what makes
//! a run fail on the data or the mail server as they are (a run exits 1).

use std::path::{Path, PathBuf};

use super::config::{Burst, Config, DataSource, Transport};
use super::job::request_on;
use super::mail::{MailError, Mailer};
use crate::clock::{Clock, SystemClock};
use crate::exit::Classify;
use crate::intercom::window::WindowSpec;
use crate::intercom::{self, mapping::Paying};
use crate::render::pdf;
use crate::render::templates::Templates;
use crate::reports;
use crate::run::{self, Location, Mapping, RunError, RunRequest};
use crate::source::{Column, DataError, Database, Expect, MappedName, Sampled, Unreadable};

/// What `check` found: the problems, the failures, and notes that are neither.
#[derive(Debug, Default)]
pub struct Findings {
    /// The configuration, a template or the data's tables must change (exit 2).
    pub problems: Vec<String>,
    /// A job or report would fail on the data or mail server as they are (exit 1).
    pub failures: Vec<String>,
    pub notes: Vec<String>,
}

/// Checks the configuration at `config_path`; `db` replaces every job's database.
/// With `db` and no file at `config_path`, checks the database for every report.
pub fn check(config_path: &Path, db: Option<&Location>, mapping: Option<&Mapping>) -> Findings {
    let mut problems: Vec<String> = Vec::new();
    let mut failures: Vec<String> = Vec::new();
    let mut notes: Vec<String> = Vec::new();
    // Windows are cut as a run now would cut them.
    let now = SystemClock.now();
    check_fonts(&mut problems);
    if let (Some(db), false) = (db, config_path.exists()) {
        notes.push(format!(
            "no {}: checking {} for every report",
            config_path.display(),
            db
        ));
        let mapping = mapping.cloned().unwrap_or_default();
        check_database_alone(db, &mapping, now, &mut problems, &mut failures, &mut notes);
        spelling_notes(db, "", &mut notes);
        value_checks(
            db,
            &mapping,
            (chrono_tz::Tz::UTC, None),
            "",
            &mut failures,
            &mut notes,
        );
        mapping_notes(db, &mapping, "", &mut problems, &mut notes);
        return Findings {
            problems,
            failures,
            notes,
        };
    }
    let config = match Config::load(config_path) {
        Ok(c) => Some(c),
        Err(e) => {
            problems.push(e.to_string());
            None
        }
    };
    if let Some(config) = &config {
        let templates = config.templates();
        for job in &config.jobs {
            for lang in &job.languages {
                if let Err(e) = templates.language(&job.report, lang) {
                    problems.push(format!("job `{}`: {e}", job.name));
                }
            }
            if let Err(e) = templates.get(&format!("{}/report.typ", job.report)) {
                problems.push(format!("job `{}`: {e}", job.name));
            }
            let database = db.cloned().or_else(|| match &job.database {
                DataSource::At(l) => Some(l.clone()),
                DataSource::Demo => None,
            });
            if let Some(burst) = &job.burst {
                // The values a bursted job makes editions of are the data's: read
                // from the database a run would read, the demo's too.
                let at = database.clone().map(Ok).unwrap_or_else(|| {
                    crate::demo::demo_database(&crate::demo::cache_dir())
                        .map(Location::from)
                        .map_err(|e| e.to_string())
                });
                let prefix = format!("job `{}`: ", job.name);
                match at {
                    Ok(at) => {
                        let mapping = mapping.cloned().unwrap_or_else(|| job.mapping.clone());
                        burst_notes(
                            &at,
                            &mapping,
                            burst,
                            config.defaults.run_timeout,
                            &prefix,
                            &mut problems,
                            &mut notes,
                        );
                    }
                    Err(e) => failures.push(format!("{prefix}burst: {e}")),
                }
            }
            match database {
                Some(path) => {
                    let mut req = request_on(config, job, path);
                    if let Some(m) = mapping {
                        req.mapping = m.clone();
                    }
                    match run::check_database(&req, now) {
                        Ok(found) => {
                            for l in found.limits {
                                notes.push(format!("job `{}`: {l}", job.name));
                            }
                            for b in found.blockers {
                                failures.push(format!("job `{}` cannot run: {b}", job.name));
                            }
                        }
                        // As the run would: exit 2 for what the user must change,
                        // exit 1 for a database that fails as it is.
                        Err(e) if e.is_usage() => {
                            problems.push(format!("job `{}`: {e}", job.name));
                        }
                        Err(e) => failures.push(format!("job `{}` cannot run: {e}", job.name)),
                    }
                    let prefix = format!("job `{}`: ", job.name);
                    for lang in &job.languages {
                        untranslated_notes(&req, lang, &prefix, &mut notes);
                    }
                    mapping_notes(&req.db, &req.mapping, &prefix, &mut problems, &mut notes);
                    spelling_notes(&req.db, &prefix, &mut notes);
                    value_checks(
                        &req.db,
                        &req.mapping,
                        (req.source_tz, req.time_limit),
                        &prefix,
                        &mut failures,
                        &mut notes,
                    );
                }
                None => notes.push(format!(
                    "job `{}`: uses the built-in demo database",
                    job.name
                )),
            }
        }
        if let Some(smtp) = &config.smtp {
            if let Transport::Smtp {
                password_env: Some(var),
                ..
            } = &smtp.transport
            {
                if std::env::var_os(var).is_none() {
                    problems.push(format!(
                        "smtp.password_env: environment variable {var} is not set"
                    ));
                }
            }
        }
    }
    Findings {
        problems,
        failures,
        notes,
    }
}

/// `check --smtp`: connects to the configured SMTP server, with TLS and the login as
/// configured, and sends nothing. A server that cannot be reached or refuses the
/// login is a failure (every delivery would fail); an outbox is a note.
pub fn smtp(config_path: &Path, found: &mut Findings) {
    let Ok(config) = Config::load(config_path) else {
        // The configuration's own problems are listed already.
        return;
    };
    let Some(smtp) = &config.smtp else {
        found
            .notes
            .push("smtp: not configured, so no SMTP server to try".to_owned());
        return;
    };
    let mailer = match Mailer::new(smtp) {
        Ok(m) => m,
        // Listed with the configuration's problems.
        Err(MailError::MissingPassword(_)) => return,
        Err(e) => {
            found.failures.push(format!("smtp: {e}"));
            return;
        }
    };
    match mailer.test_connection() {
        Ok(None) => found.notes.push(format!(
            "smtp: {}: nothing to connect to (messages are written as .eml files)",
            mailer.target
        )),
        Ok(Some(done)) => found.notes.push(format!("smtp: {}: {done}", mailer.target)),
        Err(why) => found
            .failures
            .push(format!("SMTP {}: {why}", mailer.target)),
    }
}

/// Topic tags of the data that an edition in `lang` prints as written, for want of a
/// name in its strings (a note: the edition still renders).
fn untranslated_notes(req: &RunRequest, lang: &str, prefix: &str, notes: &mut Vec<String>) {
    match run::untranslated(req, lang) {
        Ok(tags) if !tags.is_empty() => notes.push(format!(
            "{prefix}{lang}: {} topic tag(s) have no translation and print as written: {} \
             (add them under [topic_names] in {}/{lang}/strings.toml of the templates directory)",
            tags.len(),
            tags.join(", "),
            req.report
        )),
        Ok(_) => {}
        Err(e) => notes.push(format!("{prefix}{lang}: topic names not checked: {e}")),
    }
}

/// The mapping in force and how many companies each rule matched.
fn mapping_notes(
    db: &Location,
    mapping: &Mapping,
    prefix: &str,
    problems: &mut Vec<String>,
    notes: &mut Vec<String>,
) {
    match run::mapping_matches(db, mapping) {
        Ok(found) if found.rules.is_empty() => {}
        Ok(found) => {
            notes.push(format!("{prefix}mapping in force ({}):", mapping.summary()));
            for (rule, value, n) in found.rules {
                // A job without a scope covers every company: nothing to list.
                if rule == "scope" && mapping.scope.is_none() {
                    continue;
                }
                let count = n.map_or(String::new(), |n| {
                    if rule == "usage_company_key" {
                        format!(" → {n} companies have a value")
                    } else if rule == "spend_column" {
                        format!(" → {n} companies pay (above 0)")
                    } else if rule == "paying" && mapping.paying == Paying::All {
                        format!(
                            " → {n} companies pay: every company counts as paying; ARR is \
                             not available (no spend data)"
                        )
                    } else if rule == "paying" {
                        format!(
                            " → {n} companies pay: those whose {} is above 0",
                            mapping.spend_column.as_deref().unwrap_or("monthly_spend")
                        )
                    } else {
                        format!(" → {n} companies")
                    }
                });
                notes.push(format!("{prefix}  {rule} = {value}{count}"));
            }
            for (rule, values) in found.unrecognised {
                notes.push(format!(
                    "{prefix}  {rule}: values the report does not know (those companies \
                     take the label of the next rule: the tag, then the count or the spend; \
                     a segment is unknown): {}",
                    crate::intercom::mapping::counted_values(&values, 8)
                ));
            }
            for r in found.refusals {
                problems.push(format!("{prefix}mapping: {r}"));
            }
            match found.usage_events {
                Some((0, total)) if total > 0 => problems.push(format!(
                    "{prefix}mapping: none of the {total} usage events is a company's under \
                     usage_company_key = {}: conversion and retention would read 0 %; set \
                     usage_company_key to the company column the events' company_id holds",
                    mapping.usage_company_key
                )),
                Some((matched, total)) => notes.push(format!(
                    "{prefix}  usage_events: {matched} of {total} events are a company's"
                )),
                None => {}
            }
        }
        Err(e) => problems.push(format!("{prefix}mapping: {e}")),
    }
}

/// What `check` says of a bursted job: the values found under its rule, each with
/// its companies and who gets its edition (a value without recipients is written,
/// not mailed), and a problem for recipients of a value no company holds.
fn burst_notes(
    db: &Location,
    mapping: &Mapping,
    burst: &Burst,
    limit: std::time::Duration,
    prefix: &str,
    problems: &mut Vec<String>,
    notes: &mut Vec<String>,
) {
    let found = match burst_values(db, mapping, burst, limit) {
        Ok(f) => f,
        Err(e) => {
            problems.push(format!("{prefix}burst: {e}"));
            return;
        }
    };
    let listed: Vec<String> = found
        .iter()
        .map(|(v, _, n)| format!("`{v}` ({n})"))
        .collect();
    notes.push(format!(
        "{prefix}burst by the {}: {} value(s) found, one edition each:",
        burst.describe(),
        found.len()
    ));
    for (value, folder, n) in &found {
        let to = match burst.value(folder) {
            Some(v) => format!(
                "mailed: {}",
                v.mailed()
                    .iter()
                    .map(|e| format!("{} to {}", e.key(), e.recipients.len()))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            None => "written, no recipients".to_owned(),
        };
        notes.push(format!("{prefix}  {value}: {n} paying companies, {to}"));
    }
    let unmailed: Vec<&str> = found
        .iter()
        .filter(|(_, f, _)| burst.value(f).is_none())
        .map(|(v, _, _)| v.as_str())
        .collect();
    if !unmailed.is_empty() {
        notes.push(format!(
            "{prefix}  written, no recipients: {}",
            unmailed.join(", ")
        ));
    }
    for v in &burst.values {
        if !found.iter().any(|(_, f, _)| *f == v.folder) {
            problems.push(format!(
                "{prefix}burst.recipients.{}: no company holds `{}` under the {} (the values found: {}); \
                 spell the value as the data does, or remove its recipients",
                v.written,
                v.written,
                burst.describe(),
                if listed.is_empty() {
                    "none".to_owned()
                } else {
                    listed.join(", ")
                }
            ));
        }
    }
}

/// The values companies hold under the burst's rule, in label form, each with its
/// folder and its paying companies (the population an edition describes), the
/// most companies first.
fn burst_values(
    db: &Location,
    mapping: &Mapping,
    burst: &Burst,
    limit: std::time::Duration,
) -> Result<Vec<(String, String, usize)>, RunError> {
    let database = run::open_for_check(db, Some(limit))?;
    let mut mapping = mapping.clone();
    // A probe scope names the rule's column to the loader.
    mapping.scope = Some(intercom::scope::Scope {
        rule: burst.by.clone(),
        values: Vec::new(),
    });
    let companies = reports::load::load_companies_as_mapped(&database, &mapping)?;
    let mut out: Vec<(String, String, usize)> =
        intercom::scope::Scope::found(&burst.by, &companies)
            .into_iter()
            .map(|(value, _)| {
                let scope = intercom::scope::Scope {
                    rule: burst.by.clone(),
                    values: vec![value.clone()],
                };
                let paying = companies
                    .iter()
                    .filter(|c| intercom::population::is_paying(c) && scope.contains(c))
                    .count();
                (value, scope.folder(), paying)
            })
            .collect();
    out.sort_by(|a, b| b.2.cmp(&a.2).then_with(|| a.1.cmp(&b.1)));
    Ok(out)
}

/// The tables the reports read, as a database may spell them in another case.
const TABLES_READ: [&str; 8] = [
    intercom::COMPANY_ENHANCED,
    intercom::COMPANY_METRICS,
    intercom::CONTACT_ENHANCED,
    intercom::CONVERSATION_ENHANCED,
    intercom::CONVERSATION_METRICS,
    intercom::USAGE_EVENTS,
    reports::customer_segmentation::load::USERS,
    reports::customer_segmentation::load::EVENTS,
];

/// The tables a database spells other than in lower case (a warehouse export's
/// `"USAGE_EVENTS"`), which the runs read all the same: said, so that a user who
/// sees the names in the catalogue knows they are found. A database that cannot be
/// opened is listed by the checks before.
fn spelling_notes(db: &Location, prefix: &str, notes: &mut Vec<String>) {
    let Ok(db) = Database::open(db) else { return };
    for table in TABLES_READ {
        match db.spelling(table) {
            Ok(Some(s)) => {
                let shown: Vec<String> =
                    s.columns.iter().take(4).map(|c| format!("`{c}`")).collect();
                let more = match s.columns.len().saturating_sub(shown.len()) {
                    0 => String::new(),
                    n => format!(" and {n} more"),
                };
                let columns = format!("columns {}{more}", shown.join(", "));
                let note = match (s.table == table, shown.is_empty()) {
                    (true, _) => format!("{prefix}table `{table}`: its {columns} are read"),
                    (false, true) => format!("{prefix}table `{table}` is read as `{}`", s.table),
                    (false, false) => format!(
                        "{prefix}table `{table}` is read as `{}`, its {columns} likewise",
                        s.table
                    ),
                };
                notes.push(format!("{note} (names are matched in any case)"));
            }
            Ok(None) => {}
            Err(e) => notes.push(format!(
                "{prefix}table `{table}`: spelling not checked: {e}"
            )),
        }
    }
}

/// The typed columns the reports read, with the type their loaders read them as, and
/// for an optional time, what is empty for a value a run cannot read. A number, an
/// integer or a flag that cannot be read stops a run; a time that cannot be read is
/// left out of every count.
const TYPED_COLUMNS: &[(&str, &str, Expect, Option<&str>)] = &[
    (
        intercom::COMPANY_ENHANCED,
        "monthly_spend",
        Expect::Number,
        None,
    ),
    (
        intercom::COMPANY_ENHANCED,
        "user_count",
        Expect::Integer,
        None,
    ),
    (
        intercom::COMPANY_METRICS,
        "registration_retention_7d",
        Expect::Number,
        None,
    ),
    (
        intercom::COMPANY_METRICS,
        "registration_retention_30d",
        Expect::Number,
        None,
    ),
    (
        intercom::CONTACT_ENHANCED,
        "last_activity_ts",
        Expect::Time,
        Some("those contacts have no last activity for the feature-usage proxy"),
    ),
    (
        intercom::CONVERSATION_ENHANCED,
        "conversation_created_at",
        Expect::Time,
        None,
    ),
    (
        intercom::CONVERSATION_ENHANCED,
        "last_close_at",
        Expect::Time,
        None,
    ),
    (
        intercom::CONVERSATION_ENHANCED,
        "conversation_rating",
        Expect::Number,
        None,
    ),
    (
        intercom::CONVERSATION_METRICS,
        "time_to_first_response_minutes",
        Expect::Number,
        None,
    ),
    (
        intercom::CONVERSATION_METRICS,
        "count_reopens",
        Expect::Integer,
        None,
    ),
    (intercom::USAGE_EVENTS, "is_core", Expect::Flag, None),
    (intercom::USAGE_EVENTS, "occurred_at", Expect::Time, None),
    (
        reports::customer_segmentation::load::USERS,
        "portfolio_size",
        Expect::Integer,
        None,
    ),
    (
        reports::customer_segmentation::load::USERS,
        "annual_revenue",
        Expect::Number,
        None,
    ),
    (
        reports::customer_segmentation::load::USERS,
        "is_active",
        Expect::Integer,
        None,
    ),
    (
        reports::customer_segmentation::load::USERS,
        "nps_score",
        Expect::Number,
        None,
    ),
    (
        reports::customer_segmentation::load::USERS,
        "support_tickets_last_90d",
        Expect::Integer,
        None,
    ),
    (
        reports::customer_segmentation::load::EVENTS,
        "event_time",
        Expect::Time,
        None,
    ),
];

/// Values of the typed columns that the readers cannot read as their type, sampled
/// in one query per table ([`Database::unreadable`]): a failure for a column a run
/// stops at or silently leaves rows out of, a note saying what will be empty for an
/// optional one. The tables and columns that are missing are listed by the checks of
/// each report; a database that cannot be opened by the checks before.
///
/// `(source_tz, time_limit)` are the run's: times are placed as it places them, and a
/// view that never ends stops at its limit as the run would.
fn value_checks(
    db: &Location,
    mapping: &Mapping,
    (source_tz, time_limit): (chrono_tz::Tz, Option<std::time::Duration>),
    prefix: &str,
    failures: &mut Vec<String>,
    notes: &mut Vec<String>,
) {
    let Ok(db) = run::open_for_check(db, time_limit) else {
        return;
    };
    let mut tables: Vec<&'static str> = TYPED_COLUMNS.iter().map(|c| c.0).collect();
    tables.dedup();
    for table in tables {
        let have = match db.has_table(table).and_then(|_| db.columns(table)) {
            Ok(have) => have,
            Err(_) => continue,
        };
        let has = |c: &str| have.iter().any(|(h, _)| h.eq_ignore_ascii_case(c));
        let mut wanted: Vec<(Sampled, Option<&str>)> = TYPED_COLUMNS
            .iter()
            .filter(|c| c.0 == table && has(c.1))
            .map(|&(_, column, expect, optional)| {
                let s = Sampled {
                    column: Column::Contract(column),
                    label: column,
                    expect,
                };
                (s, optional)
            })
            .collect();
        if table == intercom::COMPANY_ENHANCED {
            // The mapping validated the name (letters, digits, _) when it was read.
            if let Some(c) = mapping
                .spend_column
                .as_deref()
                .filter(|c| has(c))
                .and_then(MappedName::new)
            {
                let s = Sampled {
                    column: Column::Mapped(c),
                    label: "spend_column",
                    expect: Expect::Number,
                };
                wanted.push((s, None));
            }
        }
        let sampled: Vec<Sampled> = wanted.iter().map(|w| w.0.clone()).collect();
        let found = match db.unreadable(table, &sampled, source_tz) {
            Ok(found) => found,
            Err(e) => {
                failures.push(format!("{prefix}{table}: values not checked: {e}"));
                continue;
            }
        };
        for u in found {
            let optional = wanted
                .iter()
                .find(|w| w.0.column.as_str() == u.column)
                .and_then(|w| w.1);
            let line = unreadable_line(prefix, table, &u);
            match (u.expect, optional) {
                (Expect::Time, Some(empty)) => notes.push(format!("{line}: {empty}")),
                (Expect::Time, None) => failures.push(format!(
                    "{line}: a run leaves those rows out of every count and rate"
                )),
                _ => failures.push(format!(
                    "{line}: a run that reads it stops at the first (exit 1)"
                )),
            }
        }
    }
}

/// `table.column: N of M values cannot be read as a T: "a", "b", "c"`.
fn unreadable_line(prefix: &str, table: &str, u: &Unreadable) -> String {
    format!(
        "{prefix}{table}.{}: {} of {} values cannot be read as {}: {}{}",
        u.column,
        u.bad,
        u.rows,
        u.expect.name(),
        u.samples.join(", "),
        if u.more { ", …" } else { "" }
    )
}

fn check_fonts(problems: &mut Vec<String>) {
    let families = pdf::font_families();
    for want in [pdf::LATIN_FAMILY, pdf::CJK_FAMILY] {
        if !families.iter().any(|f| f == want) {
            problems.push(format!(
                "font family `{want}` is not embedded (have: {})",
                families.join(", ")
            ));
        }
    }
}

/// Every report against one database with its default options: the reports that
/// can run are notes, each that cannot is a failure; it is a problem when the
/// database cannot be read or no report can run on it.
fn check_database_alone(
    db: &Location,
    mapping: &Mapping,
    now: chrono::DateTime<chrono::Utc>,
    problems: &mut Vec<String>,
    failures: &mut Vec<String>,
    notes: &mut Vec<String>,
) {
    let mut runnable = 0;
    for report in reports::ALL {
        let req = RunRequest {
            report: report.name().to_owned(),
            db: db.clone(),
            mapping: mapping.clone(),
            window: WindowSpec::Rolling { months: 6 },
            options: reports::Options::new(),
            out_dir: PathBuf::new(),
            name: report.name().to_owned(),
            source_tz: chrono_tz::Tz::UTC,
            tz: chrono_tz::Tz::UTC,
            langs: Vec::new(),
            depths: crate::run::full_only(),
            templates: Templates::default(),
            time_limit: None,
            watch: Vec::new(),
        };
        match run::check_database(&req, now) {
            Ok(found) if !found.blockers.is_empty() => {
                for l in found.limits {
                    notes.push(format!("report `{}`: {l}", report.name()));
                }
                for b in found.blockers {
                    failures.push(format!("report `{}`: cannot run: {b}", report.name()));
                }
            }
            Ok(found) => {
                runnable += 1;
                notes.push(format!("report `{}`: can run", report.name()));
                for l in found.limits {
                    notes.push(format!("  {l}"));
                }
                for lang in req.templates.languages(report.name()) {
                    untranslated_notes(&req, &lang, "  ", notes);
                }
            }
            Err(e @ RunError::Data(DataError::Open { .. })) => {
                problems.push(e.to_string());
                return;
            }
            Err(e) => failures.push(format!("report `{}`: cannot run: {e}", report.name())),
        }
    }
    if runnable == 0 {
        problems.push(format!("no report can run on {}", db));
    }
}
