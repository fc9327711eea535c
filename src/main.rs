//! The `cxreport` command: parse, dispatch, map errors to exit codes (0 ok, 1 run
//! failed, 2 usage or configuration error). The library does the work.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use cxreport::clock::{FixedClock, SystemClock};
use cxreport::daemon::Delivery;
use cxreport::demo::{self, DemoOptions};
use cxreport::narrative::Templates;

mod commands;
use cxreport::pipeline::{self, RunRequest, UsageSource};
use cxreport::window::WindowSpec;

// Large runs allocate and free millions of rows: mimalloc keeps freed memory for reuse
// where the system allocator hands it back and faults it in again (scale 100: load +
// metrics −25 %). Without transparent huge pages: each 2 MiB page is zeroed whole on
// first touch, which cost more than it saved (scale 300: metrics 2.2 s → 1.6 s).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "cxreport",
    version,
    about = "Customer-support and product-usage reports, in English and Chinese."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

// Parsed once per process: the size of the largest variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    /// Run a report now (with no --db, on the built-in demo database).
    Run {
        /// Report kind (see `cxreport reports`).
        #[arg(default_value = pipeline::DEFAULT_REPORT)]
        report: String,
        /// SQLite database shaped like the data contract.
        #[arg(long)]
        db: Option<PathBuf>,
        /// rolling:<N>m | calendar:<N>m | range:<YYYY-MM-DD>..<YYYY-MM-DD>
        #[arg(long, default_value = "rolling:6m")]
        window: WindowSpec,
        /// auto | events | proxy
        #[arg(long, default_value = "auto")]
        usage_source: UsageSource,
        /// Output root; files go to <out>/<report>/<period>/.
        #[arg(long, default_value = "out")]
        out: PathBuf,
        /// Minimum companies for a cell to enter correlations and findings.
        #[arg(long, default_value_t = 20)]
        min_cell: usize,
        /// tag-drivers: smallest share difference, in percentage points, that makes a
        /// topic over-represented in a group.
        #[arg(long, default_value_t = 3.0, value_parser = percentage_points)]
        min_pp: f64,
        /// IANA timezone of timestamps without an offset.
        #[arg(long, default_value = "UTC")]
        source_timezone: chrono_tz::Tz,
        /// IANA timezone in which calendar windows are cut.
        #[arg(long, default_value = "UTC")]
        timezone: chrono_tz::Tz,
        /// Language editions to write, comma-separated (en, zh, or a folder in --templates).
        #[arg(long, value_delimiter = ',', default_value = "en,zh")]
        lang: Vec<String>,
        /// Write the CSV/JSON outputs only, no PDF editions.
        #[arg(long)]
        data_only: bool,
        /// Directory whose files override the built-in templates (<report>/<lang>/…).
        #[arg(long)]
        templates: Option<PathBuf>,
        /// The run's reference time (RFC 3339), instead of now: reruns give identical PDFs.
        #[arg(long)]
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
    },
    /// Run the scheduler: jobs run when due, until SIGINT/SIGTERM.
    Daemon {
        #[arg(long, default_value = "schedules.toml")]
        config: PathBuf,
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
        /// Check this database instead of the configured ones.
        #[arg(long)]
        db: Option<PathBuf>,
    },
    /// Runs and deliveries from the ledger; exits 1 when a job's latest run failed.
    History {
        #[arg(long, default_value = "schedules.toml")]
        config: PathBuf,
        #[arg(long)]
        job: Option<String>,
    },
    /// Write the deterministic demo database.
    DemoData {
        #[arg(long, default_value = "demo.sqlite")]
        out: PathBuf,
        #[arg(long, default_value_t = demo::DEFAULT_SEED)]
        seed: u64,
        /// Multiply companies, contacts and conversations (benchmarks).
        #[arg(long, default_value_t = 1)]
        scale: u32,
        /// Leave out the usage_events table (reports fall back to the proxies).
        #[arg(long)]
        no_usage_events: bool,
        /// Print the calibration figures of the written database.
        #[arg(long)]
        describe: bool,
    },
    /// List the report kinds and their options.
    Reports,
    /// Benchmark helper: read the columns a report reads once, keeping nothing.
    #[command(hide = true)]
    ScanFloor {
        #[arg(long)]
        db: PathBuf,
        #[arg(long, default_value = "events")]
        usage_source: UsageSource,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    match dispatch(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err((code, e)) => {
            eprintln!("error: {e:#}");
            ExitCode::from(code)
        }
    }
}

pub(crate) type Failure = (u8, anyhow::Error);

fn dispatch(cmd: Command) -> Result<(), Failure> {
    match cmd {
        Command::Run {
            report,
            db,
            window,
            usage_source,
            out,
            min_cell,
            min_pp,
            source_timezone,
            timezone,
            lang,
            data_only,
            templates,
            as_of,
            job,
            config,
            send,
            outbox,
            to,
        } => {
            if let Some(name) = job {
                let delivery = if send {
                    Delivery::Send
                } else if let Some(dir) = outbox {
                    Delivery::Outbox(dir)
                } else if let Some(to) = to {
                    let addr = to.parse().map_err(|e| {
                        (
                            2u8,
                            anyhow::anyhow!("--to `{to}`: not a valid address ({e})"),
                        )
                    })?;
                    Delivery::TestTo(addr)
                } else {
                    Delivery::None
                };
                return commands::run_job(&config, &name, as_of, &delivery);
            }
            let db = match db {
                Some(db) => db,
                None => {
                    pipeline::demo_database(&pipeline::cache_dir()).map_err(pipeline_failure)?
                }
            };
            let req = RunRequest {
                name: report.clone(),
                report,
                db,
                window,
                usage_source,
                out_dir: out,
                source_tz: source_timezone,
                tz: timezone,
                min_cell,
                min_pp,
                langs: if data_only { Vec::new() } else { lang },
                templates: Templates::new(templates),
            };
            let outcome = match as_of {
                Some(t) => pipeline::run(&req, &FixedClock(t)),
                None => pipeline::run(&req, &SystemClock),
            }
            .map_err(pipeline_failure)?;
            println!("{}", outcome.dir.display());
            Ok(())
        }
        Command::DemoData {
            out,
            seed,
            scale,
            no_usage_events,
            describe,
        } => {
            let opts = DemoOptions {
                seed,
                scale,
                usage_events: !no_usage_events,
            };
            demo::generate(&out, &opts).map_err(|e| {
                let code = if matches!(e, demo::DemoError::Scale(_)) {
                    2
                } else {
                    1
                };
                (code, e.into())
            })?;
            eprintln!("wrote {}", out.display());
            if describe {
                let text = demo::describe(&out).map_err(pipeline_failure)?;
                print!("{text}");
            }
            Ok(())
        }
        Command::Daemon { config } => commands::daemon(&config),
        Command::Schedule { config, count } => commands::schedule(&config, count),
        Command::Check { config, db } => commands::check(&config, db.as_deref()),
        Command::History { config, job } => commands::history(&config, job.as_deref()),
        Command::ScanFloor { db, usage_source } => {
            let started = std::time::Instant::now();
            let db = cxreport::data::Database::open(&db).map_err(|e| (2, e.into()))?;
            let tables = match usage_source {
                UsageSource::Proxy => cxreport::data::UsageTables::Proxy,
                _ => cxreport::data::UsageTables::Events,
            };
            let (rows, bytes) = db.scan_floor(tables).map_err(|e| (1, e.into()))?;
            println!(
                "{{\"rows\": {rows}, \"bytes\": {bytes}, \"ms\": {:.3}}}",
                started.elapsed().as_secs_f64() * 1e3
            );
            Ok(())
        }
        Command::Reports => {
            for report in cxreport::reports::ALL {
                println!("{}\n    {}", report.name(), report.about());
                for (option, meaning) in report.options() {
                    println!("    --{}: {meaning}", option.replace('_', "-"));
                }
            }
            Ok(())
        }
    }
}

/// `--min-pp`: percentage points between 0 and 100.
fn percentage_points(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if (0.0..=100.0).contains(&v) => Ok(v),
        _ => Err(format!(
            "`{s}`: expected percentage points between 0 and 100"
        )),
    }
}

fn pipeline_failure(e: pipeline::PipelineError) -> Failure {
    (e.exit_code() as u8, e.into())
}
