//! `cxreport demo-data` and the benchmark's `scan-floor`.

use std::path::{Path, PathBuf};

use super::Failure;
use crate::demo::{self, DemoOptions};
use crate::reports::conversation_usage::load::{self, UsageTables};
use crate::source::{Database, Location, PgLocation};

#[derive(clap::Args)]
pub struct DemoArgs {
    /// A SQLite file, or `postgresql://user@host:port/db[?schema=name]` (password in
    /// PGPASSWORD). An existing file is replaced only when it is a demo database
    /// cxreport wrote (or with --force). In PostgreSQL, tables of the contract's names
    /// in that schema are replaced whoever wrote them: give the demo a schema of its
    /// own (`?schema=cx_demo`).
    #[arg(long, default_value = "demo.sqlite")]
    out: String,
    /// Replace --out even when it is not a demo database cxreport wrote.
    #[arg(long)]
    force: bool,
    #[arg(long, default_value_t = demo::DEFAULT_SEED)]
    seed: u64,
    /// Multiply companies, contacts and conversations (benchmarks).
    #[arg(long, default_value_t = 1)]
    scale: u32,
    /// Leave out the usage_events table (reports fall back to the proxies).
    #[arg(long)]
    no_usage_events: bool,
    /// Plant a known change: from 2024-04-01 every second bot-first conversation is
    /// answered by a person first and the topic Bug of every second conversation
    /// becomes Outage (volumes unchanged), so the bot-first share and the Bug share
    /// fall between the periods before and after (a test of `compare` and watch rules).
    #[arg(long)]
    plant_change: bool,
    /// Start the history at this date (YYYY-MM-DD, UTC): every conversation (and its
    /// metrics row) and every usage and user event before it is dropped; companies
    /// and contacts stay. A database whose data begins inside a report's window.
    #[arg(long, value_name = "DATE")]
    history_from: Option<chrono::NaiveDate>,
    /// Print the calibration figures of the written database.
    #[arg(long)]
    describe: bool,
}

pub fn demo_data(args: DemoArgs) -> Result<(), Failure> {
    let opts = DemoOptions {
        seed: args.seed,
        scale: args.scale,
        usage_events: !args.no_usage_events,
        plant_change: args.plant_change,
        history_from: args.history_from,
    };
    if PgLocation::is_url(&args.out) {
        // Generated as a file first (the generator writes SQLite), then copied.
        let dir = tempfile::tempdir().map_err(|e| {
            Failure::failed(format!("a temporary folder for the demo database: {e}"))
        })?;
        let file = dir.path().join("demo.sqlite");
        generate(&file, &opts)?;
        if args.describe {
            print!("{}", demo::describe(&file)?);
        }
        return load_postgres(&file, &args.out, chrono_tz::Tz::UTC);
    }
    let out = PathBuf::from(&args.out);
    if !args.force {
        refuse_to_overwrite(&out)?;
    }
    generate(&out, &opts)?;
    eprintln!("wrote {}", out.display());
    if args.describe {
        print!("{}", demo::describe(&out)?);
    }
    Ok(())
}

/// [`demo::generate`] with a progress indicator on a terminal (cleared before the
/// caller prints).
fn generate(path: &Path, opts: &DemoOptions) -> Result<(), Failure> {
    let _spinner = super::logging::Spinner::start();
    Ok(demo::generate(path, opts)?)
}

/// An existing `out` that is not a demo database this generator wrote (a CSV, the
/// user's own SQLite file, an older demo) is a usage error: replacing it loses data.
fn refuse_to_overwrite(out: &Path) -> Result<(), Failure> {
    match std::fs::symlink_metadata(out) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => {
            return Err(Failure::usage(format!(
                "--out {}: cannot look at the existing file ({e}); choose another path",
                out.display()
            )))
        }
        Ok(m) if m.is_dir() => {
            return Err(Failure::usage(format!(
                "--out {} is a directory; give a file path such as {}",
                out.display(),
                out.join("demo.sqlite").display()
            )))
        }
        Ok(_) => {}
    }
    match demo::written_by_demo(out) {
        Ok(true) => Ok(()),
        Ok(false) => Err(Failure::usage(format!(
            "--out {} exists and is not a demo database cxreport wrote; not replacing it. \
             Choose another path, or add --force to replace it",
            out.display()
        ))),
        Err(e) => Err(Failure::usage(format!(
            "--out {} exists and cannot be read ({e}); not replacing it. Choose another \
             path, or add --force to replace it",
            out.display()
        ))),
    }
}

/// Copies a SQLite file's tables into PostgreSQL with dbt_intercom's types.
pub fn load_postgres(from: &Path, to: &str, source_tz: chrono_tz::Tz) -> Result<(), Failure> {
    let to = PgLocation::parse(to, None)?;
    let copied = demo::postgres::copy_to_postgres(from, &to, source_tz)?;
    eprintln!(
        "copied {} tables ({} rows) into {}",
        copied.tables, copied.rows, to
    );
    Ok(())
}

/// Reads the columns conversation-usage reads, once, keeping nothing; prints rows,
/// bytes and milliseconds as JSON.
pub fn scan_floor(db: &Location, usage_source: &str) -> Result<(), Failure> {
    let started = std::time::Instant::now();
    let db = Database::open(db)?;
    let tables = match usage_source {
        "proxy" => UsageTables::Proxy,
        _ => UsageTables::Events,
    };
    let (rows, bytes) = load::scan_floor(&db, tables)?;
    println!(
        "{{\"rows\": {rows}, \"bytes\": {bytes}, \"ms\": {:.3}}}",
        started.elapsed().as_secs_f64() * 1e3
    );
    Ok(())
}
