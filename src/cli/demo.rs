//! `cxreport demo-data` and the benchmark's `scan-floor`.

use std::path::{Path, PathBuf};

use super::Failure;
use crate::demo::{self, DemoOptions};
use crate::reports::conversation_usage::load::{self, UsageTables};
use crate::source::Database;

#[derive(clap::Args)]
pub struct DemoArgs {
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
}

pub fn demo_data(args: DemoArgs) -> Result<(), Failure> {
    let opts = DemoOptions {
        seed: args.seed,
        scale: args.scale,
        usage_events: !args.no_usage_events,
    };
    demo::generate(&args.out, &opts)?;
    eprintln!("wrote {}", args.out.display());
    if args.describe {
        print!(
            "{}",
            demo::describe(&args.out).map_err(|e| Failure::Failed(e.into()))?
        );
    }
    Ok(())
}

/// Reads the columns conversation-usage reads, once, keeping nothing; prints rows,
/// bytes and milliseconds as JSON.
pub fn scan_floor(db: &Path, usage_source: &str) -> Result<(), Failure> {
    let started = std::time::Instant::now();
    let db = Database::open(db).map_err(|e| Failure::Usage(e.into()))?;
    let tables = match usage_source {
        "proxy" => UsageTables::Proxy,
        _ => UsageTables::Events,
    };
    let (rows, bytes) = load::scan_floor(&db, tables).map_err(|e| Failure::Failed(e.into()))?;
    println!(
        "{{\"rows\": {rows}, \"bytes\": {bytes}, \"ms\": {:.3}}}",
        started.elapsed().as_secs_f64() * 1e3
    );
    Ok(())
}
