//! One run of a report, stages in order: open and check the database, resolve the
//! window, load, compute, write the outputs atomically. Each stage is timed and the
//! timings go into the manifest.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Instant;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::Serialize;
use serde_json::json;

use crate::clock::Clock;
use crate::data::{self, DataError, Database, UsageTables};
use crate::demo::{self, DemoError, DemoOptions};
use crate::metrics::{self, ConversationUsage, MetricsError, SliceRow, UsageDefinitions};
use crate::output::{self, OutputError, StagedDir};
use crate::window::{WindowError, WindowSpec};

pub const CONVERSATION_USAGE: &str = "conversation-usage";

/// Option `usage_source` (spec §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum UsageSource {
    Auto,
    Events,
    Proxy,
}

impl FromStr for UsageSource {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(Self::Auto),
            "events" => Ok(Self::Events),
            "proxy" => Ok(Self::Proxy),
            other => Err(format!(
                "usage source `{other}`: expected `auto`, `events` or `proxy`"
            )),
        }
    }
}

#[derive(Debug, Clone)]
pub struct RunRequest {
    pub report: String,
    pub db: PathBuf,
    pub window: WindowSpec,
    pub usage_source: UsageSource,
    /// `<out_dir>/<name>/<period>/` receives the files.
    pub out_dir: PathBuf,
    /// Job name, or the report name for one-off runs.
    pub name: String,
    /// Timezone of naive timestamps in the database.
    pub source_tz: Tz,
    /// Timezone in which calendar windows are cut (the job's).
    pub tz: Tz,
    pub min_cell: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("unknown report `{0}` (run `cxreport reports` for the list)")]
    UnknownReport(String),
    #[error(transparent)]
    Data(#[from] DataError),
    #[error(transparent)]
    Window(#[from] WindowError),
    #[error(transparent)]
    Metrics(#[from] MetricsError),
    #[error(transparent)]
    Output(#[from] OutputError),
    #[error(transparent)]
    Demo(#[from] DemoError),
    #[error("hashing {path}: {source}")]
    Hash {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl PipelineError {
    /// 2 for what the user must fix in how cxreport is called or pointed at data,
    /// 1 for a run that failed.
    pub fn exit_code(&self) -> i32 {
        match self {
            Self::UnknownReport(_)
            | Self::Window(WindowError::Parse { .. })
            | Self::Data(DataError::Open { .. } | DataError::Schema { .. }) => 2,
            _ => 1,
        }
    }
}

#[derive(Debug)]
pub struct RunOutcome {
    pub dir: PathBuf,
    pub period: String,
    pub report: ConversationUsage,
}

/// Reports this build knows.
pub const REPORTS: &[(&str, &str)] = &[(
    CONVERSATION_USAGE,
    "Intercom conversations × product usage of paying customers, by segment × seat × ARR bucket. \
     Options: --window (rolling:<N>m | calendar:<N>m | range:<from>..<to>, default rolling:6m), \
     --usage-source (auto | events | proxy), --min-cell (default 20).",
)];

pub fn run(req: &RunRequest, clock: &dyn Clock) -> Result<RunOutcome, PipelineError> {
    if req.report != CONVERSATION_USAGE {
        return Err(PipelineError::UnknownReport(req.report.clone()));
    }
    let reference = clock.now();
    let mut timings = Vec::new();
    let t = Instant::now();
    let db = Database::open(&req.db)?;
    db.check(&req.report, data::CONVERSATION_USAGE_CORE)?;
    let usage = match req.usage_source {
        UsageSource::Events => UsageDefinitions::Events,
        UsageSource::Proxy => UsageDefinitions::Proxy,
        UsageSource::Auto if db.has_table(data::USAGE_EVENTS)? => UsageDefinitions::Events,
        UsageSource::Auto => UsageDefinitions::Proxy,
    };
    let (needs, tables) = match usage {
        UsageDefinitions::Events => (data::CONVERSATION_USAGE_EVENTS, UsageTables::Events),
        UsageDefinitions::Proxy => (data::CONVERSATION_USAGE_PROXY, UsageTables::Proxy),
    };
    db.check(&req.report, needs)?;
    let anchor = match req.window {
        WindowSpec::Rolling { .. } => db.max_conversation_created(req.source_tz)?,
        _ => None,
    };
    let window = req.window.resolve(anchor, reference, req.tz)?;
    tracing::info!(window = %req.window, period = %window.period(), usage = ?usage, "resolved window");
    let loaded = db.load_conversation_usage(req.source_tz, tables)?;
    timings.push(("load", t.elapsed()));

    let t = Instant::now();
    let report = metrics::compute(
        &loaded,
        window,
        metrics::Params {
            min_cell: req.min_cell,
            usage,
            ..metrics::Params::default()
        },
    )?;
    timings.push(("metrics", t.elapsed()));
    let bad = report.data_quality.bad_timestamps.total();
    if bad > 0 {
        tracing::warn!(
            count = bad,
            "unparseable timestamps (counted in the data-quality appendix)"
        );
    }

    let t = Instant::now();
    let period = window.period();
    let dest = req.out_dir.join(&req.name).join(&period);
    let staged = StagedDir::new(&dest)?;
    write_panels(&staged, &report)?;
    staged.write_json("summary.json", &report)?;
    timings.push(("write", t.elapsed()));
    let manifest = manifest(req, &db, &report, usage, reference, &timings)?;
    staged.write_json("manifest.json", &manifest)?;
    let dir = staged.commit()?;
    tracing::info!(dir = %dir.display(), kept = report.counts.conversations_kept, "report written");
    Ok(RunOutcome {
        dir,
        period,
        report,
    })
}

/// The four panel CSVs of §7: slice columns first, then §4's columns.
fn write_panels(staged: &StagedDir, r: &ConversationUsage) -> Result<(), OutputError> {
    let panels: [(&str, &[SliceRow], &[&str]); 4] = [
        (
            "panel_segment_seat_arr.csv",
            &r.panels.segment_seat_arr,
            &["segment", "seat_bucket", "arr_bucket"],
        ),
        (
            "panel_segment_seat.csv",
            &r.panels.segment_seat,
            &["segment", "seat_bucket"],
        ),
        (
            "panel_segment_arr.csv",
            &r.panels.segment_arr,
            &["segment", "arr_bucket"],
        ),
        ("panel_segment.csv", &r.panels.segment, &["segment"]),
    ];
    for (file, rows, slice_cols) in panels {
        let header: Vec<&str> = slice_cols
            .iter()
            .chain(metrics::METRIC_COLUMNS.iter())
            .copied()
            .collect();
        let body = rows.iter().map(|row| {
            let mut cells: Vec<String> = slice_cols
                .iter()
                .map(|c| {
                    match *c {
                        "segment" => row.segment,
                        "seat_bucket" => row.seat_bucket,
                        _ => row.arr_bucket,
                    }
                    .unwrap_or_default()
                    .to_owned()
                })
                .collect();
            cells.extend(row.metric_values().into_iter().map(output::cell));
            cells
        });
        let bytes = output::csv_bytes(&header, body).map_err(|source| OutputError::Csv {
            path: staged.path().join(file),
            source,
        })?;
        staged.write(file, &bytes)?;
    }
    Ok(())
}

fn manifest(
    req: &RunRequest,
    db: &Database,
    report: &ConversationUsage,
    usage: UsageDefinitions,
    reference: DateTime<Utc>,
    timings: &[(&str, std::time::Duration)],
) -> Result<serde_json::Value, PipelineError> {
    let sha = output::sha256_file(db.path()).map_err(|source| PipelineError::Hash {
        path: db.path().to_owned(),
        source,
    })?;
    let mut rows = serde_json::Map::new();
    for table in [
        data::COMPANY_ENHANCED,
        data::COMPANY_METRICS,
        data::CONTACT_ENHANCED,
        data::CONVERSATION_ENHANCED,
        data::CONVERSATION_METRICS,
        data::USAGE_EVENTS,
    ] {
        if db.has_table(table)? {
            rows.insert(table.to_owned(), json!(db.row_count(table)?));
        }
    }
    let timings: serde_json::Map<String, serde_json::Value> = timings
        .iter()
        .map(|(k, d)| {
            (
                (*k).to_owned(),
                json!((d.as_secs_f64() * 1e6).round() / 1e3),
            )
        })
        .collect();
    Ok(json!({
        "tool": "cxreport",
        "version": crate::VERSION,
        "report": req.report,
        "name": req.name,
        "period": report.window.period(),
        "reference_time": crate::timestamp::format_utc(reference),
        "parameters": {
            "window": req.window.to_string(),
            "usage_source": req.usage_source,
            "usage_source_used": usage,
            "min_cell": req.min_cell,
            "source_timezone": req.source_tz.name(),
            "timezone": req.tz.name(),
        },
        "database": {
            "path": db.path().display().to_string(),
            "sha256": sha,
            "row_counts": rows,
        },
        "timings_ms": timings,
    }))
}

/// Where the built-in demo database is cached: `$CXREPORT_CACHE_DIR`, else
/// `$XDG_CACHE_HOME/cxreport`, else `~/.cache/cxreport`.
pub fn cache_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("CXREPORT_CACHE_DIR") {
        return PathBuf::from(d);
    }
    if let Some(d) = std::env::var_os("XDG_CACHE_HOME") {
        return PathBuf::from(d).join("cxreport");
    }
    match std::env::var_os("HOME") {
        Some(h) => PathBuf::from(h).join(".cache").join("cxreport"),
        None => PathBuf::from(".cxreport-cache"),
    }
}

/// The demo database, generated once per generator version and reused.
pub fn demo_database(cache: &Path) -> Result<PathBuf, PipelineError> {
    let path = cache.join(format!(
        "demo-v{}-seed{}.sqlite",
        demo::GENERATOR_VERSION,
        demo::DEFAULT_SEED
    ));
    if !path.is_file() {
        tracing::info!(path = %path.display(), "generating the demo database (once)");
        demo::generate(&path, &DemoOptions::default())?;
    }
    Ok(path)
}
