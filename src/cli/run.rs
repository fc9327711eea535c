//! `cxreport run`: one report now, on a database or the built-in demo, or one job of
//! the configuration as the schedule would run it.

use std::path::PathBuf;

use super::{jobs, Failure};
use crate::clock::{FixedClock, SystemClock};
use crate::intercom::scope::Scope;
use crate::intercom::window::WindowSpec;
use crate::jobs::Delivery;
use crate::render::templates::Templates;
use crate::reports::{self, Options};
use crate::run::{self as pipeline, Mapping, RunRequest};

#[derive(clap::Args)]
pub struct RunArgs {
    /// Time limit of the run's queries and chart rendering, in seconds.
    #[arg(long, default_value_t = crate::jobs::config::DEFAULT_RUN_TIMEOUT_SECS)]
    pub timeout_secs: u64,
    /// Report kind (see `cxreport reports`).
    #[arg(default_value = reports::DEFAULT)]
    report: String,
    /// The dbt_intercom tables: a SQLite file, or a PostgreSQL database as
    /// `postgresql://user@host:port/db[?schema=name]` (password in PGPASSWORD).
    #[arg(long)]
    db: Option<String>,
    /// A TOML file of mapping keys (what tags and columns mean; see the README):
    /// segment_tag_prefix, at_risk_tags, usage_company_key, …
    #[arg(long)]
    mapping: Option<PathBuf>,
    /// Restrict the report to the companies whose company column holds one of the
    /// values: COLUMN=VALUE[,VALUE…] (`region=cn`; case, spaces, `-` and `_` do not
    /// matter). A regional edition: written to <out>/<report>/<period>/<value>/;
    /// conversations and events of other companies are counted as outside its scope.
    #[arg(long, value_name = "COLUMN=VALUES", conflicts_with_all = ["scope_tag", "job"])]
    scope: Option<String>,
    /// As --scope, by a company tag prefix: PREFIX=VALUE[,VALUE…] (`region:=cn`
    /// keeps the companies tagged `region:cn`).
    #[arg(long, value_name = "PREFIX=VALUES", conflicts_with = "job")]
    scope_tag: Option<String>,
    /// One edition per value of this company column (`region`), from one read of
    /// the database: each written as `--scope COLUMN=VALUE` writes it, with its
    /// company-wide benchmark; prints each edition's folder.
    #[arg(long, value_name = "COLUMN", conflicts_with_all = ["scope", "scope_tag", "burst_tag", "job"])]
    burst: Option<String>,
    /// As --burst, by a company tag prefix (`region:`: one edition per `region:…`
    /// value).
    #[arg(long, value_name = "PREFIX", conflicts_with_all = ["scope", "scope_tag", "job"])]
    burst_tag: Option<String>,
    /// rolling:<N>m | calendar:<N>m | range:<YYYY-MM-DD>..<YYYY-MM-DD> [default:
    /// rolling:6m] (reports that cut a window)
    // No clap default: a report that cuts no window refuses one given, which it
    // could not tell from a default.
    #[arg(long)]
    window: Option<WindowSpec>,
    /// Output root; files go to <out>/<report>/<period>/.
    #[arg(long, default_value = "out")]
    out: PathBuf,
    /// IANA timezone of timestamps without an offset.
    #[arg(long, default_value = "UTC")]
    source_timezone: chrono_tz::Tz,
    /// IANA timezone in which calendar windows are cut.
    #[arg(long, default_value = "UTC")]
    timezone: chrono_tz::Tz,
    /// Language editions to write, comma-separated (en, zh, or a folder in --templates).
    #[arg(long, value_delimiter = ',', default_value = "en,zh")]
    lang: Vec<String>,
    /// How much each PDF holds: `brief` (page 1, the recommendations and the findings
    /// they follow from: report.<lang>.brief.pdf) or `full` (the brief, then every
    /// chart, table and appendix: report.<lang>.pdf); `brief,full` writes both. The
    /// CSVs and summary.json are complete either way.
    #[arg(long, value_delimiter = ',', default_value = "full")]
    depth: Vec<pipeline::Depth>,
    /// Write the CSV/JSON outputs only, no PDF editions.
    #[arg(long)]
    data_only: bool,
    /// Directory whose files override the built-in templates (<report>/<lang>/…).
    #[arg(long)]
    templates: Option<PathBuf>,
    /// The run's reference time (RFC 3339, years 1900 to 9999), instead of now:
    /// reruns give identical PDFs.
    #[arg(long, value_parser = crate::clock::parse_instant)]
    as_of: Option<chrono::DateTime<chrono::Utc>>,
    /// Run a job of the configuration now, as the schedule would.
    #[arg(long)]
    job: Option<String>,
    #[arg(long, default_value = "schedules.toml")]
    config: PathBuf,
    /// With --job: deliver the editions to the job's recipients (recorded in the ledger).
    #[arg(long, requires = "job", conflicts_with_all = ["outbox", "to"])]
    send: bool,
    /// With --job: write the emails as .eml files into DIR instead of sending.
    #[arg(long, requires = "job", conflicts_with = "to")]
    outbox: Option<PathBuf>,
    /// With --job: send every edition to this one address only (a test).
    #[arg(long, requires = "job")]
    to: Option<String>,
}

pub fn run(args: RunArgs, options: Options) -> Result<(), Failure> {
    if let Some(name) = &args.job {
        let delivery = if args.send {
            Delivery::Send
        } else if let Some(dir) = args.outbox {
            Delivery::Outbox(dir)
        } else if let Some(to) = &args.to {
            let addr: lettre::message::Mailbox = to
                .parse()
                .map_err(|e| Failure::usage(format!("--to `{to}`: not a valid address ({e})")))?;
            crate::jobs::config::deliverable(&addr.email)
                .map_err(|why| Failure::usage(format!("--to `{to}`: {why}")))?;
            Delivery::TestTo(addr)
        } else {
            Delivery::None
        };
        return jobs::run_job(&args.config, name, args.as_of, &delivery);
    }
    // Before the built-in demo database is made: a mistyped name should not wait.
    let Some(report) = reports::find(&args.report) else {
        return Err(pipeline::RunError::UnknownReport(args.report).into());
    };
    let windowed = report
        .options()
        .iter()
        .any(|o| o.name == reports::WINDOW_OPTION.name);
    if args.window.is_some() && !windowed {
        return Err(Failure::usage(format!(
            "report `{}` takes no --window: {}",
            report.name(),
            reports::no_window()
        )));
    }
    // Cleared when the run ends, before its directory or its error is printed.
    let spinner = super::logging::Spinner::start();
    let db = match args.db {
        Some(db) => super::location(&db)?,
        None => crate::demo::demo_database(&crate::demo::cache_dir())?.into(),
    };
    let mut mapping = match &args.mapping {
        Some(path) => Mapping::from_file(path)?,
        None => Mapping::default(),
    };
    mapping.scope = match (&args.scope, &args.scope_tag) {
        (Some(arg), _) => Some(Scope::parse(arg, false).map_err(Failure::usage)?),
        (None, Some(arg)) => Some(Scope::parse(arg, true).map_err(Failure::usage)?),
        (None, None) => None,
    };
    let req = RunRequest {
        mapping,
        name: args.report.clone(),
        report: args.report,
        db,
        window: args.window.unwrap_or(WindowSpec::Rolling { months: 6 }),
        options,
        out_dir: args.out,
        source_tz: args.source_timezone,
        tz: args.timezone,
        langs: if args.data_only {
            Vec::new()
        } else {
            args.lang
        },
        depths: args.depth,
        templates: Templates::new(args.templates),
        time_limit: Some(std::time::Duration::from_secs(args.timeout_secs.max(1))),
        watch: Vec::new(),
    };
    let by = match (&args.burst, &args.burst_tag) {
        (Some(column), _) => Some(burst_rule(column, false)?),
        (None, Some(prefix)) => Some(burst_rule(prefix, true)?),
        (None, None) => None,
    };
    if let Some(by) = by {
        let burst = pipeline::burst::BurstRequest {
            run: req,
            by,
            per_value: Default::default(),
        };
        let editions = match args.as_of {
            Some(t) => pipeline::burst::run_burst(&burst, &FixedClock(t)),
            None => pipeline::burst::run_burst(&burst, &SystemClock),
        }?;
        drop(spinner);
        let mut failed = Vec::new();
        for e in &editions {
            match &e.outcome {
                Ok(outcome) => println!("{}", outcome.dir.display()),
                Err(why) => failed.push(format!("{}: {why:#}", e.folder)),
            }
        }
        if failed.is_empty() {
            return Ok(());
        }
        return Err(Failure::failed(format!(
            "{} of {} editions not written: {}",
            failed.len(),
            editions.len(),
            failed.join("; ")
        )));
    }
    let outcome = match args.as_of {
        Some(t) => pipeline::run(&req, &FixedClock(t)),
        None => pipeline::run(&req, &SystemClock),
    }?;
    drop(spinner);
    println!("{}", outcome.dir.display());
    Ok(())
}

/// `--burst COLUMN` / `--burst-tag PREFIX`, checked as a scope's rule is.
fn burst_rule(arg: &str, tag: bool) -> Result<crate::intercom::scope::ScopeRule, Failure> {
    let flag = if tag { "--burst-tag" } else { "--burst" };
    Scope::parse(&format!("{arg}=*"), tag)
        .map(|s| s.rule)
        .map_err(|e| Failure::usage(format!("{flag} {arg:?}: {e}")))
}
