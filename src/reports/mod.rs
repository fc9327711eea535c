//! The report interface and the reports this build knows.
//!
//! A report is a folder here and a folder under `templates/`: it says what it is
//! called, which tables and columns it reads, which options it takes, and how to turn
//! a database into numbers ([`Computed`]). From those numbers come its CSV files, its
//! findings and recommendations (language-neutral records), its charts and the data its
//! Typst layout reads. The pipeline does everything else the same way for every
//! report: checks, timings, the staged output directory, manifest, editions in
//! parallel, delivery. Adding a report means one module below and one line in
//! [`ALL`].

pub mod conversation_usage;
pub mod customer_segmentation;
pub mod tag_drivers;

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::charts::ChartSpec;
use crate::data::{DataError, Database, TableNeed};
use crate::edition::Narrative;
use crate::narrative::Language;
use crate::pipeline::{PipelineError, RunRequest};
use crate::window::Window;

/// What a report is and how it computes.
pub trait Report: Sync {
    /// The name analysts type (`cxreport run <name>`) and the templates folder.
    fn name(&self) -> &'static str;
    /// One line for `cxreport reports`.
    fn about(&self) -> &'static str;
    /// The options it reads from a run request or job, with their meaning.
    fn options(&self) -> &'static [(&'static str, &'static str)];
    /// Every table and column it reads with these options (all checked before work).
    fn needs(&self, db: &Database, req: &RunRequest) -> Result<Vec<TableNeed>, DataError>;
    /// Resolves what a run covers (its period) and the parameters it records,
    /// without loading rows; the ledger keys deliveries by the period.
    fn plan(
        &self,
        db: &Database,
        req: &RunRequest,
        reference: DateTime<Utc>,
    ) -> Result<Plan, PipelineError>;
    /// Loads the rows and computes the numbers; `timings` receives `load` and
    /// `metrics`.
    fn compute(
        &self,
        db: &Database,
        req: &RunRequest,
        plan: &Plan,
        timings: &mut Vec<(&'static str, Duration)>,
    ) -> Result<Box<dyn Computed>, PipelineError>;
}

/// What a run covers, decided before any rows are loaded.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The output folder and ledger key (`2024-01-01_2024-06-30`, `asof-2024-06-30`).
    pub period: String,
    /// The window, for reports that cut one.
    pub window: Option<Window>,
    /// Parameters as used (after `auto` choices), as the appendix prints them.
    pub parameters: Vec<(String, String)>,
    /// The same for `manifest.json`, typed.
    pub manifest_parameters: serde_json::Map<String, Value>,
    /// Tables whose row counts the appendix lists.
    pub tables: Vec<&'static str>,
}

/// A CSV file of a run: header and formatted cells.
pub struct CsvFile {
    pub name: &'static str,
    pub header: Vec<&'static str>,
    pub rows: Vec<Vec<String>>,
}

/// A report's numbers for one run, and what can be made of them.
pub trait Computed: Send + Sync {
    /// summary.json (the findings are added next to these numbers).
    fn summary(&self) -> Value;
    /// The CSV files; the first is the one an email may attach.
    fn csv_files(&self) -> Vec<CsvFile>;
    /// Findings and recommendations whose conditions hold.
    fn story(&self) -> Narrative;
    /// Every chart in one language.
    fn charts(&self, language: &Language) -> Vec<ChartSpec>;
    /// The report-specific part of `data.json`, every number formatted for the
    /// language (the common part — strings, period, findings, charts, appendix — is
    /// added by the edition).
    fn layout(&self, language: &Language) -> Value;
    /// A count for the log line of a finished run (`kept`, `users`).
    fn size(&self) -> (&'static str, usize);
}

/// Every report of this build, in the order `cxreport reports` lists them.
pub const ALL: &[&dyn Report] = &[
    &conversation_usage::ConversationUsageReport,
    &tag_drivers::TagDriversReport,
    &customer_segmentation::CustomerSegmentationReport,
];

/// The report called `name`.
pub fn find(name: &str) -> Option<&'static dyn Report> {
    ALL.iter().copied().find(|r| r.name() == name)
}

/// The names of every report.
pub fn names() -> Vec<&'static str> {
    ALL.iter().map(|r| r.name()).collect()
}

/// The window of a report over Intercom conversations: rolling windows end at the
/// latest conversation in the data, calendar windows at the reference time.
pub(crate) fn conversation_window(
    db: &Database,
    req: &RunRequest,
    reference: DateTime<Utc>,
) -> Result<Window, PipelineError> {
    let anchor = match req.window {
        crate::window::WindowSpec::Rolling { .. } => db.max_conversation_created(req.source_tz)?,
        _ => None,
    };
    Ok(req.window.resolve(anchor, reference, req.tz)?)
}
