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
use crate::edition::{self, EditionError, Narrative, Provenance};
use crate::metrics::{self, ConversationUsage, MetricsError, SliceRow, UsageDefinitions};
use crate::narrative::{NarrativeError, Templates};
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
    /// Language editions to write (`report.<lang>.pdf`); empty: CSV/JSON only.
    pub langs: Vec<String>,
    pub templates: Templates,
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
    #[error(transparent)]
    Edition(#[from] EditionError),
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
            | Self::Data(DataError::Open { .. } | DataError::Schema { .. })
            | Self::Edition(EditionError::Narrative(_)) => 2,
            _ => 1,
        }
    }
}

#[derive(Debug)]
pub struct RunOutcome {
    pub dir: PathBuf,
    pub period: String,
    pub report: ConversationUsage,
    pub narrative: Narrative,
    /// The PDF files written, by language.
    pub pdfs: Vec<(String, PathBuf)>,
}

/// summary.json: the numbers and the findings they support.
#[derive(Serialize)]
struct Summary<'a> {
    #[serde(flatten)]
    report: &'a ConversationUsage,
    #[serde(flatten)]
    narrative: &'a Narrative,
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
    // Languages are configuration: check them before any work.
    let available = req.templates.languages(&req.report);
    if let Some(lang) = req.langs.iter().find(|l| !available.contains(*l)) {
        return Err(EditionError::Narrative(NarrativeError::UnknownLanguage {
            report: req.report.clone(),
            lang: lang.clone(),
            available: available.into_iter().collect::<Vec<_>>().join(", "),
        })
        .into());
    }
    let mut timings = Vec::new();
    // Load the chart engine while the data loads: it is needed only for the editions.
    let engine_warmup = (!req.langs.is_empty())
        .then(|| std::thread::spawn(|| crate::charts::engine().map(|e| e.startup)));
    let t = Instant::now();
    let (db, usage, window) = prepare(req, reference)?;
    let tables = match usage {
        UsageDefinitions::Events => UsageTables::Events,
        UsageDefinitions::Proxy => UsageTables::Proxy,
    };
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
    let narrative = Narrative::of(&report);
    timings.push(("findings", t.elapsed()));

    let period = window.period();
    let dest = req.out_dir.join(&req.name).join(&period);
    let staged = StagedDir::new(&dest)?;
    let t = Instant::now();
    write_panels(&staged, &report)?;
    staged.write_json(
        "summary.json",
        &Summary {
            report: &report,
            narrative: &narrative,
        },
    )?;
    timings.push(("write_data", t.elapsed()));

    let (mut manifest, provenance) = manifest(req, &db, &report, usage, reference)?;
    if let Some(Ok(Ok(startup))) = engine_warmup.map(|h| h.join()) {
        timings.push(("chart_engine_start", startup));
    }
    // Editions render in parallel: Typst compiles on every core while the chart
    // engine serves both.
    let t = Instant::now();
    let editions: Vec<Result<edition::Edition, EditionError>> = std::thread::scope(|scope| {
        let handles: Vec<_> = req
            .langs
            .iter()
            .map(|lang| {
                let (report, narrative, provenance) = (&report, &narrative, &provenance);
                scope.spawn(move || {
                    edition::render(
                        report,
                        narrative,
                        provenance,
                        reference,
                        &req.templates,
                        lang,
                    )
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("an edition thread does not panic"))
            .collect()
    });
    timings.push(("editions_wall", t.elapsed()));
    let mut pdfs = Vec::new();
    let mut chart_times = Vec::new();
    for ed in editions {
        let ed = ed?;
        let lang = &ed.lang;
        let file = format!("report.{lang}.pdf");
        staged.write(&file, &ed.pdf)?;
        for c in &ed.charts {
            staged.write(&format!("charts/{}.{lang}.svg", c.id), c.svg.as_bytes())?;
            chart_times.push(c.engine_time);
        }
        pdfs.push((lang.clone(), dest.join(&file)));
        timings.push(("narrative", ed.timings.narrative));
        timings.push(("charts", ed.timings.charts));
        timings.push(("typst_compile", ed.timings.typst_compile));
        timings.push(("pdf_write", ed.timings.pdf_write));
    }
    chart_times.sort();
    if let Some(median) = chart_times.get(chart_times.len() / 2) {
        timings.push(("chart_median", *median));
    }
    manifest["timings_ms"] = timings_json(&timings);
    if let Some(kb) = peak_rss_kb() {
        manifest["peak_rss_kb"] = json!(kb);
    }
    staged.write_json("manifest.json", &manifest)?;
    let dir = staged.commit()?;
    tracing::info!(dir = %dir.display(), kept = report.counts.conversations_kept, editions = req.langs.len(), "report written");
    Ok(RunOutcome {
        dir,
        period,
        report,
        narrative,
        pdfs,
    })
}

/// The process's peak resident set size so far (Linux), for the benchmark.
fn peak_rss_kb() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Stage timings in milliseconds (repeated stages add up).
fn timings_json(timings: &[(&str, std::time::Duration)]) -> serde_json::Value {
    let mut m = serde_json::Map::new();
    for (k, d) in timings {
        let ms =
            m.get(*k).and_then(serde_json::Value::as_f64).unwrap_or(0.0) + d.as_secs_f64() * 1e3;
        m.insert((*k).to_owned(), json!((ms * 1e3).round() / 1e3));
    }
    serde_json::Value::Object(m)
}

/// Opens and checks the database, picks the usage definitions and resolves the window.
fn prepare(
    req: &RunRequest,
    reference: DateTime<Utc>,
) -> Result<(Database, UsageDefinitions, crate::window::Window), PipelineError> {
    if req.report != CONVERSATION_USAGE {
        return Err(PipelineError::UnknownReport(req.report.clone()));
    }
    let db = Database::open(&req.db)?;
    let usage = check_schema(&db, &req.report, req.usage_source)?;
    let anchor = match req.window {
        WindowSpec::Rolling { .. } => db.max_conversation_created(req.source_tz)?,
        _ => None,
    };
    let window = req.window.resolve(anchor, reference, req.tz)?;
    Ok((db, usage, window))
}

/// The period a run at `reference` would cover (the ledger's key), without running it.
pub fn period_of(req: &RunRequest, reference: DateTime<Utc>) -> Result<String, PipelineError> {
    prepare(req, reference).map(|(_, _, w)| w.period())
}

/// Checks the database against what a report needs (for `cxreport check`).
pub fn check_database(report: &str, db: &Path, usage: UsageSource) -> Result<(), PipelineError> {
    check_schema(&Database::open(db)?, report, usage).map(|_| ())
}

/// Picks the usage definitions (`auto`: events when the table exists) and checks every
/// table and column the report needs with them.
fn check_schema(
    db: &Database,
    report: &str,
    source: UsageSource,
) -> Result<UsageDefinitions, PipelineError> {
    db.check(report, data::CONVERSATION_USAGE_CORE)?;
    let usage = match source {
        UsageSource::Events => UsageDefinitions::Events,
        UsageSource::Proxy => UsageDefinitions::Proxy,
        UsageSource::Auto if db.has_table(data::USAGE_EVENTS)? => UsageDefinitions::Events,
        UsageSource::Auto => UsageDefinitions::Proxy,
    };
    let needs = match usage {
        UsageDefinitions::Events => data::CONVERSATION_USAGE_EVENTS,
        UsageDefinitions::Proxy => data::CONVERSATION_USAGE_PROXY,
    };
    db.check(report, needs)?;
    Ok(usage)
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
) -> Result<(serde_json::Value, Provenance), PipelineError> {
    let sha = output::sha256_file(db.path()).map_err(|source| PipelineError::Hash {
        path: db.path().to_owned(),
        source,
    })?;
    let mut rows = serde_json::Map::new();
    let mut row_counts = Vec::new();
    for table in [
        data::COMPANY_ENHANCED,
        data::COMPANY_METRICS,
        data::CONTACT_ENHANCED,
        data::CONVERSATION_ENHANCED,
        data::CONVERSATION_METRICS,
        data::USAGE_EVENTS,
    ] {
        if db.has_table(table)? {
            let n = db.row_count(table)?;
            rows.insert(table.to_owned(), json!(n));
            row_counts.push((table.to_owned(), n));
        }
    }
    let provenance = Provenance {
        database: db.path().display().to_string(),
        sha256: sha.clone(),
        parameters: vec![
            ("window".into(), req.window.to_string()),
            (
                "usage_source".into(),
                format!("{:?} → {:?}", req.usage_source, usage).to_lowercase(),
            ),
            ("min_cell".into(), req.min_cell.to_string()),
            ("source_timezone".into(), req.source_tz.name().to_owned()),
        ],
        row_counts,
    };
    let manifest = json!({
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
            "languages": req.langs,
        },
        "database": {
            "path": db.path().display().to_string(),
            "sha256": sha,
            "row_counts": rows,
        },
        "editions": req.langs.iter().map(|l| format!("report.{l}.pdf")).collect::<Vec<_>>(),
    });
    Ok((manifest, provenance))
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
