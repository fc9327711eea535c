//! One run of a report, stages in order: open and check the database against what
//! the report needs, plan what the run covers (once: a job keys its ledger by the
//! plan's period and then runs that same plan), load and compute, render the
//! language editions (`edition`), write the outputs atomically (`output`). Each stage
//! is timed and the timings go into the manifest.
//!
//! Why this file is long (about 670 lines of code): the stages of one run in order,
//! and beside them the database checks `check` asks for (`check_database`,
//! `untranslated`, `mapping_matches`), which open and check the database exactly as a
//! run does.

pub mod burst;
pub mod edition;
pub mod output;
pub mod watch;
pub mod worker;

use std::path::PathBuf;
use std::time::Instant;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::clock::Clock;
pub use crate::intercom::mapping::Mapping;
use crate::intercom::window::{Window, WindowSpec};
use crate::render::templates::{NarrativeError, Templates};
use crate::reports::comparison::Comparison;
use crate::reports::{
    self, BadOption, Configured, Earlier, Options, Plan, Report, ReportError, Request,
};
pub use crate::source::Location;
use crate::source::{DataError, Database};
pub use edition::Depth;
use edition::{EditionError, Provenance, RunInfo};

/// The depths a request without any renders: the full report alone.
pub fn full_only() -> Vec<Depth> {
    vec![Depth::Full]
}
use output::{OutputError, StagedDir};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunRequest {
    pub report: String,
    pub db: Location,
    /// What the user's tags and columns mean (defaults: the reference conventions).
    pub mapping: Mapping,
    pub window: WindowSpec,
    /// The report's own options, as given (the report reads and checks them).
    pub options: Options,
    /// `<out_dir>/<name>/<period>/` receives the files.
    pub out_dir: PathBuf,
    /// Job name, or the report name for one-off runs.
    pub name: String,
    /// Timezone of naive timestamps in the database.
    #[serde(with = "tz_name")]
    pub source_tz: Tz,
    /// Timezone in which calendar windows are cut (the job's).
    #[serde(with = "tz_name")]
    pub tz: Tz,
    /// Language editions to write (`report.<lang>.pdf`); empty: CSV/JSON only.
    pub langs: Vec<String>,
    /// The depths each language edition is written at (`Depth::pdf_name`): the
    /// brief, the full report or both; the CSVs and summary.json are the same for all.
    #[serde(default = "full_only")]
    pub depths: Vec<Depth>,
    pub templates: Templates,
    /// The run's time limit for queries and chart rendering; `None`: none.
    pub time_limit: Option<std::time::Duration>,
    /// The job's watch rules, judged against the run's comparison (a breach leads
    /// page 1).
    pub watch: Vec<watch::WatchRule>,
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("unknown report `{0}`{hint} (run `cxreport reports` for the list: {names})", hint = reports::report_hint(.0), names = reports::names().join(", "))]
    UnknownReport(String),
    #[error("report `{report}` has no option `{option}`{}", reports::find(.report).map_or_else(String::new, |r| reports::option_hint(r, .option)))]
    UnknownOption { report: String, option: String },
    #[error(transparent)]
    Data(#[from] DataError),
    #[error(transparent)]
    Report(#[from] ReportError),
    #[error(transparent)]
    Output(#[from] OutputError),
    #[error(transparent)]
    Edition(#[from] EditionError),
    #[error("hashing {path}: {cause}")]
    Hash {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error(transparent)]
    Worker(#[from] worker::WorkerError),
    #[error("report `{report}` reads no Intercom companies, so it takes no scope (`{scope}`): a scope restricts the reports that describe companies (tag-drivers, conversation-usage)")]
    ScopeWithoutCompanies { report: String, scope: String },
}

/// A timezone as its IANA name (the request crosses to a worker as JSON).
mod tz_name {
    use chrono_tz::Tz;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(tz: &Tz, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(tz.name())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Tz, D::Error> {
        let name = String::deserialize(d)?;
        name.parse()
            .map_err(|_| serde::de::Error::custom(format!("unknown timezone `{name}`")))
    }
}

impl crate::exit::Classify for RunError {
    /// Whether the user must fix how cxreport is called or pointed at data, or the
    /// run failed: each part of the run classifies its own errors.
    fn exit(&self) -> crate::exit::Exit {
        use crate::exit::Exit;
        match self {
            Self::UnknownReport(_)
            | Self::UnknownOption { .. }
            | Self::ScopeWithoutCompanies { .. } => Exit::Usage,
            Self::Data(e) => e.exit(),
            Self::Report(e) => e.exit(),
            Self::Output(e) => e.exit(),
            Self::Edition(e) => e.exit(),
            Self::Hash { .. } => Exit::Failed,
            Self::Worker(e) => e.exit(),
        }
    }
}

/// What a run wrote and what a job needs of it (it crosses back from a worker
/// process as JSON).
#[derive(Debug, Serialize, Deserialize)]
pub struct RunOutcome {
    pub dir: PathBuf,
    pub period: String,
    /// The window, for reports that cut one.
    pub window: Option<Window>,
    /// The period the run compared itself with (none when it compares itself with
    /// nothing).
    pub comparison_period: Option<String>,
    /// What each edition printed that an email repeats, by language.
    pub editions: Vec<EditionText>,
    /// The CSV file an email may attach (the report's first).
    pub main_csv: Option<String>,
    /// The PDF files written, by language and depth.
    pub pdfs: Vec<(String, Depth, PathBuf)>,
    /// The watch rules as the run judged them.
    pub watch: Vec<watch::WatchResult>,
}

/// The sentences of one edition, as printed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EditionText {
    pub lang: String,
    pub period_label: String,
    /// The part of the window the data covers, when only part (after the period).
    #[serde(default)]
    pub period_covered: Option<String>,
    pub findings: Vec<String>,
    /// Page 1: the findings that lead and the top actions.
    pub headlines: Vec<String>,
    pub actions: Vec<String>,
}

impl RunOutcome {
    /// The edition of `lang`, when one was written.
    pub fn edition(&self, lang: &str) -> Option<&EditionText> {
        self.editions.iter().find(|e| e.lang == lang)
    }
}

/// The report a request names.
pub fn report_of(req: &RunRequest) -> Result<&'static dyn Report, RunError> {
    reports::find(&req.report).ok_or_else(|| RunError::UnknownReport(req.report.clone()))
}

impl RunRequest {
    /// Where the run of `period` writes: `<out_dir>/<name>/<period>/`, and a scoped
    /// edition in its own folder inside, `<period>/<value>/` (`cn`).
    pub fn period_dir(&self, period: &str) -> PathBuf {
        let dir = self.out_dir.join(&self.name).join(period);
        match &self.mapping.scope {
            Some(scope) => dir.join(scope.folder()),
            None => dir,
        }
    }

    /// What the report sees of the request.
    pub fn report_request(&self) -> Request<'_> {
        Request {
            window: self.window,
            source_tz: self.source_tz,
            tz: self.tz,
            mapping: &self.mapping,
        }
    }
}

/// A run that is planned: the options read, the database open and checked, the
/// period known.
pub struct Prepared {
    report: &'static dyn Report,
    /// The report with the request's options read, once: it needs, plans and computes.
    configured: Box<dyn Configured>,
    db: Database,
    reference: DateTime<Utc>,
    deadline: Option<crate::clock::Deadline>,
    pub plan: Plan,
}

/// Checks the request (report, options, languages), opens and checks the database
/// and plans what a run at the clock's time covers, without loading rows.
pub fn prepare(req: &RunRequest, clock: &dyn Clock) -> Result<Prepared, RunError> {
    let report = report_of(req)?;
    let configured = check_request(report, req)?;
    let reference = clock.now();
    let deadline = worker::deadline(req.time_limit);
    worker::stage("open the database");
    let t = Instant::now();
    let db = Database::open_within(&req.db, deadline)?;
    let rr = req.report_request();
    let needs = configured.needs(&db, &rr)?;
    if let Some(scope) = &req.mapping.scope {
        if !needs
            .iter()
            .any(|n| n.table == crate::intercom::COMPANY_ENHANCED)
        {
            return Err(RunError::ScopeWithoutCompanies {
                report: req.report.clone(),
                scope: scope.describe(),
            });
        }
    }
    db.check(report.name(), &needs)?;
    stage_done("open the database", t.elapsed(), None);
    worker::stage("plan");
    let t = Instant::now();
    let mut plan = configured.plan(&db, &rr, reference)?;
    tracing::debug!(stage = "plan", elapsed_ms = ms(t.elapsed()), period = %plan.period, "stage finished");
    // Every report states the mapping it used: the appendix a line (what differs
    // from the defaults), the manifest every rule.
    plan.parameters
        .push(("mapping".to_owned(), req.mapping.summary()));
    plan.manifest_parameters.insert(
        "mapping".into(),
        serde_json::to_value(&req.mapping).unwrap_or_default(),
    );
    Ok(Prepared {
        report,
        configured,
        db,
        reference,
        deadline,
        plan,
    })
}

/// What is wrong with a request before any data is read: options the report does not
/// take or cannot read, languages it has no templates for. Returns the report with
/// the options read: the one place a run reads them.
fn check_request(report: &dyn Report, req: &RunRequest) -> Result<Box<dyn Configured>, RunError> {
    if let Some(option) = reports::unknown_options(report, &req.options).first() {
        return Err(RunError::UnknownOption {
            report: req.report.clone(),
            option: (*option).to_owned(),
        });
    }
    let configured = report.configure(&req.options).map_err(|bad| {
        // The first is the run's error; `check` and a job's check list them all.
        let BadOption { option, message } = bad.into_first();
        ReportError::Option {
            report: report.name(),
            option,
            message,
        }
    })?;
    let available = req.templates.languages(&req.report);
    if let Some(lang) = req.langs.iter().find(|l| !available.contains(*l)) {
        return Err(EditionError::Narrative(NarrativeError::UnknownLanguage {
            report: req.report.clone(),
            lang: lang.clone(),
            available: available.into_iter().collect::<Vec<_>>().join(", "),
        })
        .into());
    }
    Ok(configured)
}

/// Plans and runs a report at the clock's time.
pub fn run(req: &RunRequest, clock: &dyn Clock) -> Result<RunOutcome, RunError> {
    execute(prepare(req, clock)?, req)
}

/// Runs a prepared plan: loads, computes, renders and writes the outputs, in a worker
/// process when runs are isolated ([`worker::isolate_runs_in`]).
pub fn execute(prepared: Prepared, req: &RunRequest) -> Result<RunOutcome, RunError> {
    let Some(exe) = worker::executable() else {
        return execute_here(prepared, req);
    };
    let Prepared {
        db,
        reference,
        deadline,
        plan,
        ..
    } = prepared;
    // The worker opens the database itself.
    drop(db);
    let remaining = deadline.map(|d| (d.at.saturating_duration_since(Instant::now()), d.budget));
    worker::execute_in_worker(exe, req, reference, &plan.period, remaining)
}

/// [`execute`] in this process.
fn execute_here(prepared: Prepared, req: &RunRequest) -> Result<RunOutcome, RunError> {
    let Prepared {
        report,
        configured,
        db,
        reference,
        deadline,
        plan,
    } = prepared;
    let mut timings = Vec::new();
    // CPU per stage (`cpu_*` in the timings): the process's, between stage ends, and
    // the chart engine's own threads'.
    let cpu = Cpu::start();
    // Load the chart engine while the data loads: it is needed only for the editions.
    let engine_warmup = (!req.langs.is_empty()).then(|| {
        std::thread::spawn(|| crate::render::charts::engine().map(|e| (e.startup, e.startup_cpu)))
    });
    tracing::info!(report = report.name(), period = %plan.period, "resolved what the run covers");
    worker::stage("load and metrics");
    // A report whose tables keep no history compares with its own latest output.
    let earlier = if configured.compares_with_earlier_output() {
        output::earlier_output(&req.out_dir.join(&req.name), &plan.period)
    } else {
        Earlier::NoOutputs
    };
    let computed = configured
        .compute(&db, &req.report_request(), &plan, &earlier, &mut timings)
        .map_err(|e| reports::explain_empty(&db, &req.report_request(), &plan, e))?;
    computed_stages(&timings, computed.as_ref());

    worker::stage("findings");
    let t = Instant::now();
    let story = computed.story();
    timings.push(("findings", t.elapsed()));
    tracing::debug!(
        stage = "findings",
        elapsed_ms = ms(t.elapsed()),
        findings = story.findings.len(),
        recommendations = story.recommendations.len(),
        "stage finished"
    );

    let dest = req.period_dir(&plan.period);
    let staged = StagedDir::new(&dest)?;
    worker::stage("the CSV files");
    let t = Instant::now();
    let csv_files = computed.csv_files();
    for file in &csv_files {
        let bytes =
            output::csv_bytes(&file.header, &file.rows).map_err(|source| OutputError::Csv {
                path: staged.path().join(file.name),
                cause: source,
            })?;
        staged.write(file.name, &bytes)?;
    }
    let csv_rows: usize = csv_files.iter().map(|f| f.rows.len()).sum();
    tracing::debug!(
        stage = "csv",
        elapsed_ms = ms(t.elapsed()),
        files = csv_files.len(),
        rows = csv_rows,
        "stage finished"
    );
    let mut summary = computed.summary();
    if let Value::Object(m) = &mut summary {
        m.insert("findings".into(), json!(story.findings));
        m.insert("recommendations".into(), json!(story.recommendations));
    }
    let off = Comparison::off();
    let comparison = computed.comparison().unwrap_or(&off);
    let watch = watch::evaluate(&req.watch, comparison);
    if let (Value::Object(m), false) = (&mut summary, watch.is_empty()) {
        m.insert("watch".into(), json!(watch));
    }
    staged.write_json("summary.json", &summary)?;
    let comparison_period = computed.comparison().map(|c| c.period.clone());
    timings.push(("write_data", t.elapsed()));

    let (mut manifest, provenance) = manifest(req, &db, &plan, computed.rows_read(), reference)?;
    let mut engine_start_cpu = None;
    if let Some(Ok(Ok((startup, startup_cpu)))) = engine_warmup.map(|h| h.join()) {
        timings.push(("chart_engine_start", startup));
        engine_start_cpu = Some(startup_cpu);
        stage_done("chart engine start", startup, None);
    }
    let mut info = RunInfo::new(report, &plan, &provenance, reference);
    info.deadline = deadline;
    info.scope = req.mapping.scope.as_ref();
    let fired: Vec<watch::WatchResult> = watch.iter().filter(|w| w.fired).cloned().collect();
    info.watch = &fired;
    // Editions render in parallel: Typst compiles on every core while the chart
    // engine serves both.
    worker::stage("the editions (narrative, charts, Typst)");
    let data_cpu = cpu.so_far();
    let t = Instant::now();
    let editions: Vec<Result<edition::Edition, EditionError>> = std::thread::scope(|scope| {
        let handles: Vec<_> = req
            .langs
            .iter()
            .flat_map(|lang| depths(req).into_iter().map(move |depth| (lang, depth)))
            .map(|(lang, depth)| {
                let (computed, story, info) = (computed.as_ref(), &story, &info);
                scope.spawn(move || {
                    edition::render(computed, story, info, &req.templates, lang, depth)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("an edition thread does not panic"))
            .collect()
    });
    timings.push(("editions_wall", t.elapsed()));
    let editions_cpu = cpu.so_far();
    stage_done("editions", t.elapsed(), None);
    worker::stage("write the files");
    let written = Instant::now();
    let mut pdfs = Vec::new();
    let mut texts = Vec::new();
    let mut chart_times = Vec::new();
    let mut charts_cpu = std::time::Duration::ZERO;
    for ed in editions {
        let ed = ed?;
        // The depths of one language print the same sentences: the email reads one.
        if !texts.iter().any(|t: &EditionText| t.lang == ed.lang) {
            texts.push(EditionText {
                lang: ed.lang.clone(),
                period_label: ed.period_label.clone(),
                period_covered: ed.period_covered.clone(),
                findings: ed.text.findings.iter().map(|f| f.text.clone()).collect(),
                headlines: ed.text.headlines().map(|f| f.text.clone()).collect(),
                actions: ed.text.actions.iter().map(|f| f.text.clone()).collect(),
            });
        }
        let lang = &ed.lang;
        let file = ed.depth.pdf_name(lang);
        staged.write(&file, &ed.pdf)?;
        for c in &ed.charts {
            staged.write(&format!("charts/{}.{lang}.svg", c.id), c.svg.as_bytes())?;
            chart_times.push(c.engine_time);
            charts_cpu += c.engine_cpu;
        }
        pdfs.push((lang.clone(), ed.depth, dest.join(&file)));
        timings.push(("narrative", ed.timings.narrative));
        timings.push(("charts", ed.timings.charts));
        timings.push(("typst_compile", ed.timings.typst_compile));
        timings.push(("pdf_write", ed.timings.pdf_write));
    }
    chart_times.sort();
    if let Some(median) = chart_times.get(chart_times.len() / 2) {
        timings.push(("chart_median", *median));
    }
    // The data stages (with the manifest's digest of the database) include the
    // engine's start, which runs beside them; `cpu_typst` holds the narrative (a few
    // ms) and the PDF export.
    if let (Some(data), Some(editions)) = (data_cpu, editions_cpu) {
        let engine = engine_start_cpu.unwrap_or_default();
        timings.push(("cpu_data", data.saturating_sub(engine)));
        timings.push(("cpu_chart_engine_start", engine));
        timings.push(("cpu_charts", charts_cpu));
        timings.push((
            "cpu_typst",
            editions.saturating_sub(data).saturating_sub(charts_cpu),
        ));
    }
    if let Some(total) = cpu.so_far() {
        timings.push(("cpu_total", total));
    }
    manifest["timings_ms"] = timings_json(&timings);
    if let Some(kb) = peak_rss_kb() {
        manifest["peak_rss_kb"] = json!(kb);
    }
    staged.write_json("manifest.json", &manifest)?;
    let dir = staged.commit()?;
    stage_done("write", written.elapsed(), None);
    let (what, n) = computed.size();
    tracing::info!(dir = %dir.display(), report = report.name(), what, n, editions = req.langs.len(), "report written");
    Ok(RunOutcome {
        dir,
        period: plan.period,
        window: plan.window,
        comparison_period,
        editions: texts,
        main_csv: csv_files.first().map(|f| f.name.to_owned()),
        pdfs,
        watch,
    })
}

/// The depths a request renders, each once, brief first; none given: the full report.
fn depths(req: &RunRequest) -> Vec<Depth> {
    let mut d: Vec<Depth> = Depth::ALL
        .into_iter()
        .filter(|x| req.depths.contains(x))
        .collect();
    if d.is_empty() {
        d.push(Depth::Full);
    }
    d
}

/// Milliseconds to a tenth, as `RUST_LOG=debug` prints a stage's time.
pub(crate) fn ms(d: std::time::Duration) -> f64 {
    (d.as_secs_f64() * 1e4).round() / 10.0
}

/// A stage's end, as `RUST_LOG=debug` shows it: its time, and its rows where it has
/// rows.
fn stage_done(stage: &str, took: std::time::Duration, rows: Option<u64>) {
    tracing::debug!(stage, elapsed_ms = ms(took), rows, "stage finished");
}

/// The stages the report timed while it computed, at debug level: loading (rows per
/// table), metrics (over how many of what), the comparison and the trend.
fn computed_stages(timings: &[(&str, std::time::Duration)], computed: &dyn reports::Computed) {
    if !tracing::enabled!(tracing::Level::DEBUG) {
        return;
    }
    let rows_read = computed.rows_read();
    let (what, n) = computed.size();
    for (stage, took) in timings {
        match *stage {
            "load" => {
                let tables = rows_read
                    .iter()
                    .map(|(t, n)| format!("{t}={n}"))
                    .collect::<Vec<_>>()
                    .join(" ");
                let rows: u64 = rows_read.iter().map(|(_, n)| n).sum();
                tracing::debug!(stage = "load", elapsed_ms = ms(*took), rows, tables = %tables, "stage finished");
            }
            "metrics" => {
                tracing::debug!(
                    stage = "metrics",
                    elapsed_ms = ms(*took),
                    rows = n,
                    of = what,
                    "stage finished"
                );
            }
            "history" => stage_done("comparison and trend", *took, None),
            other => stage_done(other, *took, None),
        }
    }
}

/// The process's CPU time since a stage began.
struct Cpu(Option<std::time::Duration>);

impl Cpu {
    fn start() -> Self {
        Self(crate::clock::process_cpu())
    }

    fn so_far(&self) -> Option<std::time::Duration> {
        Some(crate::clock::process_cpu()?.saturating_sub(self.0?))
    }
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

/// A run's time limit unless the request sets one (`defaults.run_timeout_secs` and
/// `run --timeout-secs` default to it); also the limit of `check`'s database checks.
pub const DEFAULT_TIME_LIMIT: std::time::Duration = std::time::Duration::from_secs(1800);

/// Opens a database for one of `check`'s looks at it, within `limit` (or
/// [`DEFAULT_TIME_LIMIT`]): a view that never ends stops there as a run would.
pub fn open_for_check(
    db: &Location,
    limit: Option<std::time::Duration>,
) -> Result<Database, DataError> {
    let deadline = crate::clock::Deadline::after(limit.unwrap_or(DEFAULT_TIME_LIMIT));
    Database::open_within(db, Some(deadline))
}

/// Checks the database against what a report needs (for `cxreport check`), within
/// the request's time limit ([`open_for_check`]). Returns what the report can and
/// cannot compute from it ([`Report::limits`]) and why a run at `reference` would
/// fail on it all the same ([`Report::blockers`], a window outside the data; a plan
/// that fails is the error).
pub fn check_database(
    req: &RunRequest,
    reference: DateTime<Utc>,
) -> Result<DatabaseCheck, RunError> {
    let report = report_of(req)?;
    let configured = check_request(report, req)?;
    let db = open_for_check(&req.db, req.time_limit)?;
    let rr = req.report_request();
    db.check(report.name(), &configured.needs(&db, &rr)?)?;
    let mut blockers = configured.blockers(&db, &rr)?;
    // A window cut at `reference` that misses the data (a calendar window after it
    // ended) fails the run as surely as a missing table.
    if let Some(w) = configured.plan(&db, &rr, reference)?.window {
        if let Some((outside, true)) = reports::window_against_data(&db, &rr, &w) {
            blockers.push(format!("a run at {}: {outside}", timestamp_text(reference)));
        }
    }
    Ok(DatabaseCheck {
        limits: configured.limits(&db, &rr)?,
        blockers,
    })
}

fn timestamp_text(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// What [`check_database`] found on a database whose tables a report has.
#[derive(Debug, Default)]
pub struct DatabaseCheck {
    /// What the report computes another way or not at all (the run goes on).
    pub limits: Vec<String>,
    /// Why a run would fail on this data all the same.
    pub blockers: Vec<String>,
}

/// The data's topic tags without a name in the language `lang` (they print as
/// written). English editions print tags as written by design: none is listed.
pub fn untranslated(req: &RunRequest, lang: &str) -> Result<Vec<String>, RunError> {
    let report = report_of(req)?;
    let language = req
        .templates
        .language(report.name(), lang)
        .map_err(EditionError::from)?;
    if language.strings.get("document.lang") == "en" {
        return Ok(Vec::new());
    }
    let db = open_for_check(&req.db, req.time_limit)?;
    let words = report.vocabulary(&db, &req.report_request())?;
    Ok(words
        .into_iter()
        .filter(|w| language.strings.topic_name(w).is_none())
        .collect())
}

/// A mapping rule, its value, and how many companies it matched.
pub type RuleMatch = (&'static str, String, Option<usize>);

/// What `check` says of a mapping on a database.
#[derive(Debug, Default)]
pub struct MappingCheck {
    pub rules: Vec<RuleMatch>,
    /// Values where a rule looks that name nothing the report knows, per rule:
    /// the value and how many companies hold it.
    pub unrecognised: Vec<(&'static str, Vec<(String, usize)>)>,
    /// Why a run would refuse the mapping ([`Mapping::refusals`]).
    pub refusals: Vec<String>,
    /// Usage events that are a company's under `usage_company_key`, of all (`None`:
    /// no `usage_events` table).
    pub usage_events: Option<(u64, u64)>,
}

/// The mapping's rules as `check` prints them: each rule, its value and how many
/// companies of the database it matched (`None`: the rule is not counted per
/// company). Empty when the database has no company table. Within
/// [`DEFAULT_TIME_LIMIT`], like every database check.
pub fn mapping_matches(db: &Location, mapping: &Mapping) -> Result<MappingCheck, RunError> {
    let db = open_for_check(db, None)?;
    if !db.has_table(crate::intercom::COMPANY_ENHANCED)? {
        return Ok(MappingCheck::default());
    }
    let companies = crate::reports::load::load_companies_as_mapped(&db, mapping)?;
    let n = mapping.matches(&companies);
    let with_key = companies
        .iter()
        .filter(|c| {
            mapping.usage_company_key == "company_id"
                || c.mapped.usage_key.as_deref().is_some_and(|k| !k.is_empty())
        })
        .count();
    let paying = companies
        .iter()
        .filter(|c| crate::intercom::population::is_paying(c))
        .count();
    let rules = mapping
        .rules()
        .into_iter()
        .map(|(rule, value)| {
            let count = match rule {
                "usage_company_key" => Some(with_key),
                "paying" => Some(paying),
                "spend_column" if mapping.spend_column.is_some() => Some(paying),
                "scope" => mapping
                    .scope
                    .as_ref()
                    .map(|s| companies.iter().filter(|c| s.contains(c)).count()),
                r => n.get(r).copied(),
            };
            (rule, value, count)
        })
        .collect();
    let usage_events = crate::reports::load::usage_key_matches(&db, &companies)?;
    Ok(MappingCheck {
        usage_events,
        rules,
        unrecognised: mapping.unrecognised(&companies).into_iter().collect(),
        refusals: mapping
            .scope
            .as_ref()
            .and_then(|s| s.refusal(&companies))
            .into_iter()
            .chain(mapping.refusals(&companies))
            .chain(mapping.no_segment(&companies))
            .collect(),
    })
}

fn manifest(
    req: &RunRequest,
    db: &Database,
    plan: &Plan,
    rows_read: &[(&'static str, u64)],
    reference: DateTime<Utc>,
) -> Result<(serde_json::Value, Provenance), RunError> {
    // A file is identified by its content; a server's tables have no such digest
    // (the manifest names the URL, without a password).
    let sha = match db.location().file() {
        Some(path) => Some(output::sha256_file(path).map_err(|source| RunError::Hash {
            path: path.to_owned(),
            cause: source,
        })?),
        None => None,
    };
    // The rows the loader read: the tables are not counted a second time.
    let rows: serde_json::Map<String, Value> = rows_read
        .iter()
        .map(|(table, n)| ((*table).to_owned(), json!(n)))
        .collect();
    let provenance = Provenance {
        database: db.name().to_owned(),
        sha256: sha.clone(),
        parameters: plan.parameters.clone(),
        row_counts: rows_read
            .iter()
            .map(|(table, n)| ((*table).to_owned(), *n))
            .collect(),
    };
    let mut database = json!({
        "path": db.name(),
        "sha256": sha,
        "row_counts": rows,
    });
    if db.location().file().is_none() {
        // What crossed the network: rows (the span's, the events' day summaries),
        // the bytes of their messages, and the rows per table (a table read twice
        // would show twice its rows).
        let (rows, bytes) = db.transfer();
        let tables: serde_json::Map<String, serde_json::Value> = db
            .rows_returned()
            .into_iter()
            .map(|(t, n)| (t.to_owned(), json!(n)))
            .collect();
        database["transfer"] = json!({ "rows": rows, "bytes": bytes, "tables": tables });
        if let Some(link) = db.link() {
            database["tls"] = json!(link);
        }
    }
    let mut parameters = plan.manifest_parameters.clone();
    parameters.insert("timezone".into(), json!(req.tz.name()));
    parameters.insert("languages".into(), json!(req.langs));
    parameters.insert("depths".into(), json!(depths(req)));
    let manifest = json!({
        "tool": "cxreport",
        "version": crate::VERSION,
        "report": req.report,
        "name": req.name,
        "period": plan.period,
        "reference_time": crate::source::timestamp::format_utc(reference),
        "parameters": parameters,
        "database": database,
        "editions": req
            .langs
            .iter()
            .flat_map(|l| depths(req).into_iter().map(move |d| json!({ "file": d.pdf_name(l), "lang": l, "depth": d })))
            .collect::<Vec<_>>(),
    });
    Ok((manifest, provenance))
}

#[cfg(test)]
mod tests {
    //! A report that is not in `reports::ALL`, written only against the report
    //! interface, rendered into a PDF edition by the run layer: adding a report needs
    //! nothing beyond its folder, its templates and a line in `ALL`.

    use std::time::Duration;

    use chrono::TimeZone;

    use super::*;
    use crate::exit::Classify;
    use crate::render::charts::ChartSpec;
    use crate::render::narrative::Finding;
    use crate::render::narrative::Narrative;
    use crate::render::templates::Language;
    use crate::reports::{Computed, CsvFile, OptionSpec};
    use crate::source::TableNeed;

    struct Skeleton;

    const TABLE: &str = "things";
    const NEEDS: &[TableNeed] = &[TableNeed {
        table: TABLE,
        columns: &["id"],
    }];

    struct Counted(i64, Vec<(&'static str, u64)>);

    impl Report for Skeleton {
        fn name(&self) -> &'static str {
            "skeleton"
        }
        fn about(&self) -> &'static str {
            "Counts things."
        }
        fn options(&self) -> &'static [OptionSpec] {
            &[]
        }
        fn configure(&self, _: &Options) -> Result<Box<dyn Configured>, reports::BadOptions> {
            Ok(Box::new(Skeleton))
        }
    }

    impl Configured for Skeleton {
        fn needs(&self, _: &Database, _: &Request<'_>) -> Result<Vec<TableNeed>, ReportError> {
            Ok(NEEDS.to_vec())
        }
        fn plan(
            &self,
            _: &Database,
            _: &Request<'_>,
            reference: DateTime<Utc>,
        ) -> Result<Plan, ReportError> {
            Ok(Plan {
                period: format!("asof-{}", reference.format("%Y-%m-%d")),
                window: None,
                coverage: None,
                parameters: Vec::new(),
                manifest_parameters: serde_json::Map::new(),
            })
        }
        fn compute(
            &self,
            db: &Database,
            _: &Request<'_>,
            _: &Plan,
            _: &Earlier,
            _: &mut Vec<(&'static str, Duration)>,
        ) -> Result<Box<dyn Computed>, ReportError> {
            let n = db.each_row(TABLE, "SELECT id FROM things", |_| Ok(()))?;
            Ok(Box::new(Counted(n as i64, vec![(TABLE, n)])))
        }
    }

    impl Computed for Counted {
        fn comparison(&self) -> Option<&crate::reports::comparison::Comparison> {
            None
        }
        fn summary(&self) -> Value {
            json!({ "things": self.0 })
        }
        fn csv_files(&self) -> Vec<CsvFile> {
            vec![CsvFile {
                name: "things.csv",
                header: vec!["things"],
                rows: vec![vec![self.0.to_string()]],
            }]
        }
        fn story(&self) -> Narrative {
            let mut f = Finding::new("count", 1);
            f.numbers.insert("things", self.0 as f64);
            Narrative {
                findings: vec![f],
                recommendations: Vec::new(),
                analysis: Vec::new(),
            }
        }
        fn charts(&self, _: &Language) -> Vec<ChartSpec> {
            Vec::new()
        }
        fn layout(&self, _: &Language) -> Value {
            json!({ "things": self.0 })
        }
        fn size(&self) -> (&'static str, usize) {
            ("things", self.0 as usize)
        }
        fn rows_read(&self) -> &[(&'static str, u64)] {
            &self.1
        }
    }

    /// A template that does not load is the user's to fix (exit 2); one that loads
    /// and fails on the run's data is a failed run (exit 1).
    #[test]
    fn a_template_failing_on_the_data_is_not_a_usage_error() {
        let dir = tempfile::tempdir().unwrap();
        let own = dir.path().join("tag-drivers/en");
        std::fs::create_dir_all(&own).unwrap();
        std::fs::write(own.join("findings.tera"), "{{ f.numbers.share * 100 }}").unwrap();
        let templates = Templates::new(Some(dir.path().to_owned()));
        let lang = templates.language("tag-drivers", "en").unwrap();
        let failed = lang
            .render(
                "findings.tera",
                "f",
                &json!({ "numbers": { "share": null } }),
            )
            .unwrap_err();
        assert!(!RunError::from(EditionError::from(failed)).is_usage());
        std::fs::write(own.join("findings.tera"), "{% if %}").unwrap();
        let broken = match templates.language("tag-drivers", "en") {
            Err(e) => e,
            Ok(_) => panic!("a template that does not parse loads"),
        };
        assert!(RunError::from(EditionError::from(broken)).is_usage());
    }

    #[test]
    fn a_report_outside_all_renders_through_the_interface() {
        let dir = tempfile::tempdir().unwrap();
        let db_path = dir.path().join("t.sqlite");
        rusqlite::Connection::open(&db_path)
            .unwrap()
            .execute_batch("CREATE TABLE things (id TEXT); INSERT INTO things VALUES ('a'), ('b');")
            .unwrap();
        let tpl = dir.path().join("templates/skeleton");
        std::fs::create_dir_all(tpl.join("en")).unwrap();
        std::fs::write(
            tpl.join("report.typ"),
            "#let d = json(\"data.json\")\n= #d.strings.document.title\n#for f in d.findings [ - #f ]\n",
        )
        .unwrap();
        std::fs::write(
            tpl.join("en/strings.toml"),
            "[document]\ntitle = \"Things\"\nline_join = \" \"\n",
        )
        .unwrap();
        std::fs::write(
            tpl.join("en/findings.tera"),
            "{{ f.numbers.things | num }} things.",
        )
        .unwrap();
        for file in [
            "recommendations.tera",
            "takeaways.tera",
            "email.txt.tera",
            "email.html",
        ] {
            std::fs::write(tpl.join("en").join(file), "").unwrap();
        }
        let templates = Templates::new(Some(dir.path().join("templates")));

        let report: &dyn Report = &Skeleton;
        let configured = report.configure(&Options::new()).unwrap();
        let req = Request {
            window: "rolling:6m".parse().unwrap(),
            source_tz: Tz::UTC,
            tz: Tz::UTC,
            mapping: &crate::intercom::mapping::Mapping::default(),
        };
        let db = Database::open(&db_path.clone().into()).unwrap();
        db.check(report.name(), &configured.needs(&db, &req).unwrap())
            .unwrap();
        let reference = Utc.with_ymd_and_hms(2024, 7, 1, 0, 0, 0).unwrap();
        let plan = configured.plan(&db, &req, reference).unwrap();
        let computed = configured
            .compute(&db, &req, &plan, &Earlier::NoOutputs, &mut Vec::new())
            .unwrap();
        let story = computed.story();
        let provenance = Provenance {
            database: db_path.display().to_string(),
            sha256: None,
            parameters: Vec::new(),
            row_counts: Vec::new(),
        };
        let info = RunInfo::new(report, &plan, &provenance, reference);
        let ed = edition::render(
            computed.as_ref(),
            &story,
            &info,
            &templates,
            "en",
            Depth::Full,
        )
        .unwrap();
        assert_eq!(plan.period, "asof-2024-07-01");
        assert_eq!(ed.text.findings[0].text, "2 things.");
        assert!(ed.pdf.starts_with(b"%PDF"), "a PDF");
    }
}
