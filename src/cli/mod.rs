//! The command line: argument types, one file per group of commands, and the one
//! place errors become exit codes ([`Failure`]: 0 ok, 1 the work failed, 2 how
//! cxreport was called or configured must change; the table is [`crate::exit`]'s).
//! Report options are not listed here: each report's
//! [`OptionSpec`](crate::reports::OptionSpec)s become `run` flags.

mod demo;
mod failure;
mod jobs;
pub mod logging;
mod run;
mod status;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{ArgMatches, CommandFactory, FromArgMatches, Parser, Subcommand};

pub use self::failure::Failure;
use crate::exit;
use crate::reports;

#[derive(Parser)]
#[command(
    name = "cxreport",
    version,
    about = "Customer-support and product-usage reports, in English and Chinese."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Log lines on standard error as text, or as one JSON object per line (for a log
    /// collector). Levels: RUST_LOG (default info; debug: each stage of a run with its
    /// time and rows). No colour unless standard error is a terminal, nor with NO_COLOR.
    #[arg(long, global = true, value_enum, env = logging::FORMAT_ENV, default_value = "text")]
    log_format: logging::LogFormat,
}

// Parsed once per process: the size of the largest variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    /// Run a report now (with no --db, on the built-in demo database).
    Run(run::RunArgs),
    /// Run the scheduler: jobs run when due, until SIGINT/SIGTERM.
    Daemon {
        #[arg(long, default_value = "schedules.toml")]
        config: PathBuf,
        /// Rehearsal: the daemon's clock starts at this instant (RFC 3339) instead
        /// of now, and runs `--clock-speed` times as fast as the real one.
        #[arg(long, hide = true)]
        clock_start: Option<String>,
        #[arg(long, hide = true, default_value = "1", requires = "clock_start",
              value_parser = crate::clock::parse_speed)]
        clock_speed: f64,
    },
    /// Send again what a job's run could not deliver: given-up and waiting deliveries
    /// of the job's latest run (or of --period), from the files of that run.
    Retry {
        #[arg(long, default_value = "schedules.toml")]
        config: PathBuf,
        #[arg(long)]
        job: String,
        /// The run's period, as `history` shows it.
        #[arg(long)]
        period: Option<String>,
        /// Only this region's deliveries (a bursted job's value, as `history` shows
        /// it: `cn`; `CN` is the same value).
        #[arg(long)]
        region: Option<String>,
    },
    /// Each job, its cron, timezone and next fire times.
    Schedule {
        #[arg(long, default_value = "schedules.toml")]
        config: PathBuf,
        #[arg(long, default_value_t = 5)]
        count: usize,
    },
    /// Validate configuration, templates, fonts and database schema; list every problem.
    Check {
        #[arg(long, default_value = "schedules.toml")]
        config: PathBuf,
        /// Check this database (SQLite file or postgresql:// URL) instead of the
        /// configured ones.
        #[arg(long)]
        db: Option<String>,
        /// Check with this mapping file instead of the configured mappings.
        #[arg(long)]
        mapping: Option<PathBuf>,
        /// Also connect to the configured SMTP server: TLS and login as configured,
        /// nothing sent.
        #[arg(long)]
        smtp: bool,
    },
    /// Runs and deliveries from the ledger; exits 1 when a job's latest run failed.
    History {
        #[arg(long, default_value = "schedules.toml")]
        config: PathBuf,
        #[arg(long)]
        job: Option<String>,
    },
    /// Whether the daemon is alive and each job's latest run succeeded: exit 0 when
    /// so, 1 with the reasons otherwise (a liveness/readiness probe, a cron monitor).
    Status {
        #[arg(long, default_value = "schedules.toml")]
        config: PathBuf,
        /// The daemon is alive when its last tick is at most this many seconds old
        /// (real time, also for a rehearsal clock; it records one every 2 s).
        #[arg(long, value_name = "SECS", default_value_t = crate::jobs::status::DEFAULT_MAX_AGE.as_secs(),
              value_parser = clap::value_parser!(u64).range(crate::jobs::status::MIN_MAX_AGE_SECS..))]
        max_age: u64,
        /// Judge the daemon alone, not the jobs' runs (a liveness probe: restarting
        /// the daemon does not mend a failed run).
        #[arg(long)]
        daemon_only: bool,
    },
    /// Write the deterministic demo database (a SQLite file, or into PostgreSQL).
    DemoData(demo::DemoArgs),
    /// Copy a SQLite database of the contract's tables into PostgreSQL, with the
    /// column types dbt_intercom builds (to try a warehouse run on your own file).
    LoadPostgres {
        /// The SQLite file.
        #[arg(long)]
        from: PathBuf,
        /// `postgresql://user@host:port/db[?schema=name]` (password in PGPASSWORD);
        /// tables of the same names there are replaced.
        #[arg(long)]
        to: String,
        /// IANA timezone of the file's timestamps without an offset; they are
        /// written as this zone's local time (`timestamp without time zone`).
        #[arg(long, default_value = "UTC")]
        source_timezone: chrono_tz::Tz,
    },
    /// List the report kinds and their options.
    Reports,
    /// The process one run's work happens in (started by cxreport itself; the
    /// request comes on standard input).
    #[command(hide = true, name = "run-worker")]
    RunWorker,
    /// Benchmark helper: read the columns a report reads once, keeping nothing.
    #[command(hide = true)]
    ScanFloor {
        #[arg(long)]
        db: String,
        #[arg(long, default_value = "events")]
        usage_source: String,
    },
}

/// The report options every report declares, as `run` flags (`--min-pp`), once each.
fn with_report_options(cmd: clap::Command) -> clap::Command {
    cmd.mut_subcommand("run", |mut run| {
        let mut seen: Vec<&str> = vec![reports::WINDOW_OPTION.name];
        for report in reports::ALL {
            for o in report.options() {
                if seen.contains(&o.name) {
                    continue;
                }
                seen.push(o.name);
                let flag: &'static str = Box::leak(o.name.replace('_', "-").into_boxed_str());
                let help: &'static str = Box::leak(
                    format!("{}: {} (default {})", report.name(), o.about, o.default)
                        .into_boxed_str(),
                );
                run = run.arg(
                    clap::Arg::new(o.name)
                        .long(flag)
                        .value_name("VALUE")
                        .help(help),
                );
            }
        }
        run
    })
}

/// The report options given on the command line, by name.
fn report_options(m: &ArgMatches) -> reports::Options {
    let mut out = reports::Options::new();
    for report in reports::ALL {
        for o in report.options() {
            if o.name == reports::WINDOW_OPTION.name {
                continue;
            }
            if let Ok(Some(v)) = m.try_get_one::<String>(o.name) {
                out.insert(o.name.to_owned(), v.clone());
            }
        }
    }
    out
}

/// Parses the arguments, runs the command, prints the error and returns the exit code.
pub fn main() -> ExitCode {
    let matches = match with_report_options(Cli::command()).try_get_matches() {
        Ok(m) => m,
        Err(e) => {
            if let Some(said) = unknown_command(&e) {
                eprintln!("{said}");
                return ExitCode::from(exit::USAGE);
            }
            let _ = e.print();
            // `--help` and `--version` are clap "errors" printed on standard output.
            return ExitCode::from(if e.use_stderr() {
                exit::USAGE
            } else {
                exit::OK
            });
        }
    };
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(exit::USAGE);
        }
    };
    logging::init(cli.log_format);
    let options = matches
        .subcommand_matches("run")
        .map(report_options)
        .unwrap_or_default();
    if matches!(cli.command, Command::RunWorker) {
        return ExitCode::from(crate::run::worker::serve());
    }
    // Each run's work in a process of its own: a template or data that aborts a
    // process (a stack overflow) or outlasts the time limit ends that run only.
    match std::env::current_exe() {
        Ok(exe) => crate::run::worker::isolate_runs_in(exe),
        Err(e) => tracing::warn!("runs stay in this process (its executable cannot be found: {e})"),
    }
    match dispatch(cli.command, options) {
        Ok(()) => ExitCode::from(exit::OK),
        Err(f) => {
            eprintln!("error: {:#}", f.error());
            ExitCode::from(f.exit_code())
        }
    }
}

/// A mistyped command, answered with the visible command meant: clap's own tip
/// also offers the hidden ones (`rn` → `run-worker`, a process cxreport starts
/// itself).
fn unknown_command(e: &clap::Error) -> Option<String> {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    if e.kind() != ErrorKind::InvalidSubcommand {
        return None;
    }
    let Some(ContextValue::String(typed)) = e.get(ContextKind::InvalidSubcommand) else {
        return None;
    };
    let cmd = Cli::command();
    let visible: Vec<&str> = cmd
        .get_subcommands()
        .filter(|c| !c.is_hide_set())
        .map(|c| c.get_name())
        .collect();
    Some(format!(
        "error: unknown command `{typed}`{} (`cxreport --help` lists them: {})",
        crate::suggest::did_you_mean(typed, visible.iter().copied()),
        visible.join(", ")
    ))
}

/// `--db`: a SQLite path or a `postgresql://` URL (password from PGPASSWORD).
fn location(db: &str) -> Result<crate::run::Location, Failure> {
    Ok(crate::run::Location::parse(db, None, None)?)
}

fn dispatch(cmd: Command, options: reports::Options) -> Result<(), Failure> {
    match cmd {
        Command::Run(args) => run::run(args, options),
        Command::DemoData(args) => demo::demo_data(args),
        Command::LoadPostgres {
            from,
            to,
            source_timezone,
        } => demo::load_postgres(&from, &to, source_timezone),
        Command::Daemon {
            config,
            clock_start,
            clock_speed,
        } => jobs::daemon(&config, clock_start.as_deref(), clock_speed),
        Command::Retry {
            config,
            job,
            period,
            region,
        } => jobs::retry(&config, &job, period.as_deref(), region.as_deref()),
        Command::Schedule { config, count } => jobs::schedule(&config, count),
        Command::Check {
            config,
            db,
            mapping,
            smtp,
        } => {
            let db = db.as_deref().map(location).transpose()?;
            let mapping = mapping
                .as_deref()
                .map(crate::run::Mapping::from_file)
                .transpose()?;
            jobs::check(&config, db.as_ref(), mapping.as_ref(), smtp)
        }
        Command::History { config, job } => jobs::history(&config, job.as_deref()),
        Command::Status {
            config,
            max_age,
            daemon_only,
        } => status::status(&config, max_age, daemon_only),
        Command::ScanFloor { db, usage_source } => demo::scan_floor(&location(&db)?, &usage_source),
        Command::RunWorker => Ok(()),
        Command::Reports => {
            for report in reports::ALL {
                println!("{}\n    {}", report.name(), report.about());
                for o in report.options() {
                    println!(
                        "    --{}: {} (default {})",
                        o.name.replace('_', "-"),
                        o.about,
                        o.default
                    );
                }
            }
            Ok(())
        }
    }
}
