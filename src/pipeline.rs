//! One run of a report, stages in order: open and check the database against what
//! the report needs, plan what the run covers, load and compute, write the outputs
//! atomically. Each stage is timed and the
//! timings go into the manifest.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Instant;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::Serialize;
use serde_json::{json, Value};

use crate::clock::Clock;
use crate::data::{DataError, Database};
use crate::demo::{self, DemoError, DemoOptions};
use crate::edition::{self, EditionError, Narrative, Provenance, RunInfo};
use crate::metrics::MetricsError;
use crate::narrative::{NarrativeError, Templates};
use crate::output::{self, OutputError, StagedDir};
use crate::reports::{self, Computed, Plan, Report};
use crate::window::{Window, WindowError, WindowSpec};

/// The report a run makes when none is named.
pub const DEFAULT_REPORT: &str = crate::reports::conversation_usage::NAME;

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
    /// tag-drivers: the share difference (percentage points) that makes a topic
    /// over-represented.
    pub min_pp: f64,
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

pub struct RunOutcome {
    pub dir: PathBuf,
    pub period: String,
    /// The window, for reports that cut one.
    pub window: Option<Window>,
    pub computed: Box<dyn Computed>,
    pub narrative: Narrative,
    /// The CSV file an email may attach (the report's first).
    pub main_csv: Option<&'static str>,
    /// The PDF files written, by language.
    pub pdfs: Vec<(String, PathBuf)>,
}

impl std::fmt::Debug for RunOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunOutcome")
            .field("dir", &self.dir)
            .field("period", &self.period)
            .field("pdfs", &self.pdfs)
            .finish_non_exhaustive()
    }
}

/// The report a request names.
pub fn report_of(req: &RunRequest) -> Result<&'static dyn Report, PipelineError> {
    reports::find(&req.report).ok_or_else(|| PipelineError::UnknownReport(req.report.clone()))
}

pub fn run(req: &RunRequest, clock: &dyn Clock) -> Result<RunOutcome, PipelineError> {
    let report = report_of(req)?;
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
    let (db, plan) = prepare(report, req, reference)?;
    tracing::info!(report = report.name(), period = %plan.period, "resolved what the run covers");
    let computed = report.compute(&db, req, &plan, &mut timings)?;

    let t = Instant::now();
    let story = computed.story();
    timings.push(("findings", t.elapsed()));

    let dest = req.out_dir.join(&req.name).join(&plan.period);
    let staged = StagedDir::new(&dest)?;
    let t = Instant::now();
    let csv_files = computed.csv_files();
    for file in &csv_files {
        let bytes =
            output::csv_bytes(&file.header, &file.rows).map_err(|source| OutputError::Csv {
                path: staged.path().join(file.name),
                source,
            })?;
        staged.write(file.name, &bytes)?;
    }
    let mut summary = computed.summary();
    if let Value::Object(m) = &mut summary {
        m.insert("findings".into(), json!(story.findings));
        m.insert("recommendations".into(), json!(story.recommendations));
    }
    staged.write_json("summary.json", &summary)?;
    timings.push(("write_data", t.elapsed()));

    let (mut manifest, provenance) = manifest(req, &db, &plan, reference)?;
    if let Some(Ok(Ok(startup))) = engine_warmup.map(|h| h.join()) {
        timings.push(("chart_engine_start", startup));
    }
    let info = RunInfo {
        report: report.name(),
        period: &plan.period,
        window: plan.window,
        provenance: &provenance,
        reference,
    };
    // Editions render in parallel: Typst compiles on every core while the chart
    // engine serves both.
    let t = Instant::now();
    let editions: Vec<Result<edition::Edition, EditionError>> = std::thread::scope(|scope| {
        let handles: Vec<_> = req
            .langs
            .iter()
            .map(|lang| {
                let (computed, story, info) = (computed.as_ref(), &story, &info);
                scope.spawn(move || edition::render(computed, story, info, &req.templates, lang))
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
    let (what, n) = computed.size();
    tracing::info!(dir = %dir.display(), report = report.name(), what, n, editions = req.langs.len(), "report written");
    Ok(RunOutcome {
        dir,
        period: plan.period,
        window: plan.window,
        computed,
        narrative: story,
        main_csv: csv_files.first().map(|f| f.name),
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

/// Opens the database, checks every table and column the report needs and plans
/// the run.
fn prepare(
    report: &dyn Report,
    req: &RunRequest,
    reference: DateTime<Utc>,
) -> Result<(Database, Plan), PipelineError> {
    let db = Database::open(&req.db)?;
    db.check(report.name(), &report.needs(&db, req)?)?;
    let plan = report.plan(&db, req, reference)?;
    Ok((db, plan))
}

/// The period a run at `reference` would cover (the ledger's key), without running it.
pub fn period_of(req: &RunRequest, reference: DateTime<Utc>) -> Result<String, PipelineError> {
    prepare(report_of(req)?, req, reference).map(|(_, plan)| plan.period)
}

/// Checks the database against what a report needs (for `cxreport check`).
pub fn check_database(req: &RunRequest) -> Result<(), PipelineError> {
    let report = report_of(req)?;
    let db = Database::open(&req.db)?;
    Ok(db.check(report.name(), &report.needs(&db, req)?)?)
}

fn manifest(
    req: &RunRequest,
    db: &Database,
    plan: &Plan,
    reference: DateTime<Utc>,
) -> Result<(serde_json::Value, Provenance), PipelineError> {
    let sha = output::sha256_file(db.path()).map_err(|source| PipelineError::Hash {
        path: db.path().to_owned(),
        source,
    })?;
    let mut rows = serde_json::Map::new();
    let mut row_counts = Vec::new();
    for table in &plan.tables {
        if db.has_table(table)? {
            let n = db.row_count(table)?;
            rows.insert((*table).to_owned(), json!(n));
            row_counts.push(((*table).to_owned(), n));
        }
    }
    let provenance = Provenance {
        database: db.path().display().to_string(),
        sha256: sha.clone(),
        parameters: plan.parameters.clone(),
        row_counts,
    };
    let mut parameters = plan.manifest_parameters.clone();
    parameters.insert("timezone".into(), json!(req.tz.name()));
    parameters.insert("languages".into(), json!(req.langs));
    let manifest = json!({
        "tool": "cxreport",
        "version": crate::VERSION,
        "report": req.report,
        "name": req.name,
        "period": plan.period,
        "reference_time": crate::timestamp::format_utc(reference),
        "parameters": parameters,
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
