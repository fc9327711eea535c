//! The report interface and the reports this build knows.
//!
//! A report is a folder here (load, metrics, findings, charts, layout) and a folder
//! under `templates/`: it says what it is called, which options it takes, which tables
//! and columns it reads, and how to turn a database into numbers ([`Computed`]). From
//! those numbers come its CSV files, its findings and recommendations
//! (language-neutral records), its charts and the data its Typst layout reads. The
//! run layer above this one does everything else the same way for every report. Adding a
//! report means one folder below, one under `templates/` and one line in [`ALL`].
//!
//! A report reads a run's options once ([`Report::configure`]), into the typed
//! settings of what it returns ([`Configured`]), which then plans and computes.
//!
//! This layer speaks its own types ([`Request`], [`Options`], [`ReportError`]): it knows
//! nothing of runs, jobs or the command line.

pub mod benchmark;
pub mod comparison;
pub mod conversation_usage;
pub mod customer_segmentation;
pub mod load;
pub mod options;
pub mod period;
pub mod tag_drivers;
pub mod trend;
pub mod windowed;

pub use period::{period_label, Period};

pub use options::{
    option, BadOption, BadOptions, OptionParser, OptionSpec, Options, COMPARE_OPTION,
    DEFAULT_WINDOW, WINDOW_OPTION,
};

use std::time::Duration;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde_json::Value;

use crate::intercom::mapping::Mapping;
use crate::intercom::window::{Window, WindowError, WindowSpec};
use crate::render::charts::ChartSpec;
use crate::render::format::NumberFormat;
use crate::render::narrative::Narrative;
use crate::render::templates::Language;
use crate::source::{timestamp, BadTimestamps, DataError, Database, TableNeed};

/// What a report is asked to cover.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub window: WindowSpec,
    /// Timezone of timestamps without an offset in the database.
    pub source_tz: Tz,
    /// Timezone in which calendar windows are cut.
    pub tz: Tz,
    /// What the user's tags and columns mean.
    pub mapping: &'a Mapping,
}

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error(transparent)]
    Data(#[from] DataError),
    #[error(transparent)]
    Window(#[from] WindowError),
    #[error(transparent)]
    Metrics(#[from] MetricsError),
    #[error("report `{report}`, option `{option}`: {message}")]
    Option {
        report: &'static str,
        option: String,
        message: String,
    },
}

impl crate::exit::Classify for ReportError {
    /// How the report is called or pointed at data is the user's; data that holds
    /// nothing to describe is a failed run.
    fn exit(&self) -> crate::exit::Exit {
        use crate::exit::Exit;
        match self {
            Self::Data(e) => e.exit(),
            Self::Window(e) => e.exit(),
            Self::Option { .. } => Exit::Usage,
            Self::Metrics(e) => e.exit(),
        }
    }
}

/// The data holds nothing a report can describe.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum MetricsError {
    #[error("no conversations in window {start} .. {end}")]
    EmptyWindow { start: String, end: String },
    /// [`MetricsError::EmptyWindow`] with what the data covers and what to try.
    // `data`: the data's dates and what to try, in one field (errors stay small).
    #[error("no conversations in window {start} .. {end}: {data}")]
    WindowOutsideData {
        start: String,
        end: String,
        data: String,
    },
    #[error("table {table} has no rows: report {report} has nothing to describe")]
    NoRows {
        table: &'static str,
        report: &'static str,
    },
    #[error("report {report}: no conversation in the window maps to a paying company: {cause}")]
    NothingMapped {
        report: &'static str,
        cause: &'static str,
    },
    /// Every conversation lies outside the P1–P99 bounds: with a handful of
    /// conversations the trimming leaves none (two values are both outside the
    /// percentiles between them).
    #[error(
        "report {report}: all {conversations} conversations in the window fall outside the P1–P99 bounds of first-response time and duration (too few conversations to describe)"
    )]
    NothingKept {
        report: &'static str,
        conversations: usize,
    },
}

impl crate::exit::Classify for MetricsError {
    /// The data as it is holds nothing to describe: the run failed, however it was
    /// called.
    fn exit(&self) -> crate::exit::Exit {
        match self {
            Self::EmptyWindow { .. }
            | Self::WindowOutsideData { .. }
            | Self::NoRows { .. }
            | Self::NothingMapped { .. }
            | Self::NothingKept { .. } => crate::exit::Exit::Failed,
        }
    }
}

impl MetricsError {
    pub fn empty_window(w: &Window) -> Self {
        Self::EmptyWindow {
            start: timestamp::format_utc(w.start),
            end: timestamp::format_utc(w.end),
        }
    }
}

/// What a report is; [`Report::configure`] reads a run's options into what it
/// computes with ([`Configured`]).
pub trait Report: Sync {
    /// The name analysts type (`cxreport run <name>`) and the templates folder.
    fn name(&self) -> &'static str;
    /// One line for `cxreport reports`.
    fn about(&self) -> &'static str;
    /// The options it takes ([`WINDOW_OPTION`] among them when it cuts a window).
    fn options(&self) -> &'static [OptionSpec];
    /// The report with its option values read into its typed settings, once per run:
    /// every later step of the run is a method of what this returns. The error is
    /// every problem of the option values; options it does not take are the caller's
    /// to reject (see [`unknown_options`]).
    fn configure(&self, options: &Options) -> Result<Box<dyn Configured>, BadOptions>;
    /// The data's values an edition prints through the language's strings (topic
    /// tags), so that `check` can list those without a translation; they do not
    /// depend on the options (`check` lists them when the options are wrong too).
    fn vocabulary(&self, _db: &Database, _req: &Request<'_>) -> Result<Vec<String>, ReportError> {
        Ok(Vec::new())
    }
    /// The metrics its comparison with an earlier period carries (`summary.json`'s
    /// `comparison.changes`), which a job's watch rules may name; none when the report
    /// does not compare periods.
    fn compared_metrics(&self) -> &'static [&'static str] {
        &[]
    }
    /// The slices its comparison carries (`overall` and the slice values).
    fn compared_slices(&self) -> &'static [&'static str] {
        &[]
    }
}

/// A report with a run's options read ([`Report::configure`]): what it reads, plans
/// and computes with those settings.
pub trait Configured: Send + Sync {
    /// Every table and column it reads with these options (all checked before work).
    fn needs(&self, db: &Database, req: &Request<'_>) -> Result<Vec<TableNeed>, ReportError>;
    /// Resolves what a run covers (its period) and the parameters it records,
    /// without loading rows; the ledger keys deliveries by the period.
    fn plan(
        &self,
        db: &Database,
        req: &Request<'_>,
        reference: DateTime<Utc>,
    ) -> Result<Plan, ReportError>;
    /// What the report can and cannot compute from this database and why, one line
    /// each (for `check`), beyond the tables and columns `needs` checks.
    fn limits(&self, _db: &Database, _req: &Request<'_>) -> Result<Vec<String>, ReportError> {
        Ok(Vec::new())
    }
    /// What makes a run on this database fail although its tables are there (no
    /// paying company to describe), one line each, for `check` to fail on.
    fn blockers(&self, _db: &Database, _req: &Request<'_>) -> Result<Vec<String>, ReportError> {
        Ok(Vec::new())
    }
    /// Whether it compares itself with its own earlier output (its tables keep no
    /// history): the run layer then finds that output and hands it to
    /// [`Configured::compute`].
    fn compares_with_earlier_output(&self) -> bool {
        false
    }
    /// The fewest paying companies an edition of one scope value (a burst's) may
    /// describe, from the report's own thresholds, with the threshold in words; a
    /// value with fewer gets no edition of thin numbers. `None`: no minimum.
    fn min_companies(&self) -> Option<(usize, &'static str)> {
        None
    }
    /// Loads the rows and computes the numbers; `earlier` is what the run layer found
    /// of the report's earlier outputs (when it asks for them); `timings` receives
    /// `load` and `metrics`.
    fn compute(
        &self,
        db: &Database,
        req: &Request<'_>,
        plan: &Plan,
        earlier: &Earlier,
        timings: &mut Vec<(&'static str, Duration)>,
    ) -> Result<Box<dyn Computed>, ReportError>;
}

/// What the run layer found of a report's earlier outputs, for a report that compares
/// itself with them ([`Configured::compares_with_earlier_output`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Earlier {
    /// The run keeps no outputs to look in (or the report does not ask for them).
    NoOutputs,
    /// No finished output of this report before this run's period.
    NoneBefore,
    /// The latest finished output before this run's period: its period, and its
    /// `summary.json` as read, or why it could not be read.
    Found {
        period: String,
        summary: Result<Vec<u8>, String>,
    },
}

/// Every problem of `options` for `report`, as [`Report::configure`] finds them (for
/// the checks that list them all without running).
pub fn option_problems(report: &dyn Report, options: &Options) -> Vec<BadOption> {
    report
        .configure(options)
        .err()
        .map_or_else(Vec::new, BadOptions::into_vec)
}

/// What a run covers, decided before any rows are loaded.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The output folder and ledger key (`2024-01-01_2024-06-30`, `asof-2024-06-30`).
    pub period: String,
    /// The window, for reports that cut one.
    pub window: Option<Window>,
    /// The data's dates: its first and last conversation not after the reference time
    /// (reports over conversations), what a window, a comparison or a trend month can
    /// cover ([`comparison::coverage`]).
    pub coverage: Option<Window>,
    /// Parameters as used (after `auto` choices), as the appendix prints them
    /// (`usage_source: auto → events`).
    pub parameters: Vec<(String, String)>,
    /// The same for `manifest.json`, typed, each choice in its own field
    /// (`usage_source: "auto"`, `usage_source_used: "events"`).
    pub manifest_parameters: serde_json::Map<String, Value>,
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
    /// Rows the loader read, per table (the appendix and the manifest print these).
    fn rows_read(&self) -> &[(&'static str, u64)];
    /// The comparison the run made, as the report decided it (none when the run
    /// compares itself with nothing): the run layer judges watch rules on it.
    fn comparison(&self) -> Option<&comparison::Comparison>;
    /// The string variants this run's editions use (`[variant.<name>]` in the
    /// strings files): a measure taken another way is labelled as such everywhere.
    fn variants(&self) -> Vec<&'static str> {
        Vec::new()
    }
}

/// Every report of this build, in the order `cxreport reports` lists them.
pub const ALL: &[&dyn Report] = &[
    &conversation_usage::ConversationUsageReport,
    &tag_drivers::TagDriversReport,
    &customer_segmentation::CustomerSegmentationReport,
];

/// The report a run makes when none is named.
pub const DEFAULT: &str = conversation_usage::NAME;

/// The report called `name`.
pub fn find(name: &str) -> Option<&'static dyn Report> {
    ALL.iter().copied().find(|r| r.name() == name)
}

/// The names of every report.
pub fn names() -> Vec<&'static str> {
    ALL.iter().map(|r| r.name()).collect()
}

/// The options set in `options` that `report` does not take.
pub fn unknown_options<'a>(report: &dyn Report, options: &'a Options) -> Vec<&'a str> {
    options
        .keys()
        .filter(|k| !report.options().iter().any(|o| o.name == k.as_str()))
        .map(String::as_str)
        .collect()
}

/// What to say after "report X has no option Y": the reports that take it, else the
/// option of X it is closest to, and X's options.
pub fn option_hint(report: &dyn Report, option: &str) -> String {
    let takers: Vec<&str> = ALL
        .iter()
        .filter(|r| r.options().iter().any(|o| o.name == option))
        .map(|r| r.name())
        .collect();
    let own: Vec<&str> = report.options().iter().map(|o| o.name).collect();
    let listed = if own.is_empty() {
        format!("`{}` takes no options", report.name())
    } else {
        format!("`{}` takes: {}", report.name(), own.join(", "))
    };
    if !takers.is_empty() {
        return format!(
            "; it is an option of {} ({listed})",
            takers
                .iter()
                .map(|t| format!("`{t}`"))
                .collect::<Vec<_>>()
                .join(" and ")
        );
    }
    if option == WINDOW_OPTION.name {
        return format!("; {}", no_window());
    }
    format!(
        "{} ({listed})",
        crate::suggest::did_you_mean(option, own.iter().copied())
    )
}

/// Why a report that cuts no window refuses one, and what sets its period instead.
pub fn no_window() -> &'static str {
    "it describes the data as of the run's reference time (a snapshot: `--as-of`, or a \
     job's fire time), not over a window; leave `window` out"
}

/// `; did you mean …?` for a report name that is not one.
pub fn report_hint(name: &str) -> String {
    crate::suggest::did_you_mean(name, names())
}

/// The window of a report over Intercom conversations: rolling windows end at the
/// latest conversation in the data not after the reference time, calendar windows at
/// the reference time. Also returns how many conversations are dated after it and
/// the dates the conversations cover (first to latest not after the reference time).
pub(crate) fn conversation_window(
    db: &Database,
    req: &Request<'_>,
    reference: DateTime<Utc>,
) -> Result<(Window, u64, Option<Window>), ReportError> {
    let latest = load::latest_conversation(db, req.source_tz, reference)?;
    let window = req
        .window
        .resolve(latest.at, reference, req.tz)
        .map_err(|e| match (e, latest.span) {
            // Readable conversations, all after the reference time: say when they are.
            (WindowError::NoAnchor(_), Some(span)) => {
                WindowError::before_data(&req.window, reference, span)
            }
            (e, _) => e,
        })?;
    let coverage = match (latest.span, latest.at) {
        (Some((first, _)), Some(last)) if first <= last => Some(Window {
            start: first,
            end: last,
        }),
        _ => None,
    };
    Ok((window, latest.after, coverage))
}

/// A run's [`MetricsError::EmptyWindow`] said with the dates the data's conversations
/// cover and the window to use instead; any other error as it is. Asked only once a
/// run has failed, so a run that works reads no more.
pub fn explain_empty(db: &Database, req: &Request<'_>, plan: &Plan, e: ReportError) -> ReportError {
    let (ReportError::Metrics(MetricsError::EmptyWindow { .. }), Some(w)) = (&e, plan.window)
    else {
        return e;
    };
    window_against_data(db, req, &w).map_or(e, |(explained, _)| explained.into())
}

/// The window set against the dates of the data's conversations, as
/// [`MetricsError::WindowOutsideData`] would say it, and whether it lies wholly
/// before or after them (a run finds nothing in it: `check` fails on that). `None`
/// when no conversation has a readable date.
pub fn window_against_data(
    db: &Database,
    req: &Request<'_>,
    w: &Window,
) -> Option<(MetricsError, bool)> {
    let span = load::latest_conversation(db, req.source_tz, crate::clock::latest());
    let (first, last) = span.ok().and_then(|l| l.span)?;
    let hint = if last < w.start {
        match req.window {
            WindowSpec::Calendar { months } => format!(
                "; a calendar window is the months before the run's reference time, and the data ended before them: use the window `rolling:{months}m` (it ends at the latest conversation) or a reference time after the data (`--as-of {}`)",
                crate::intercom::window::month_after(last)
            ),
            _ => "; give a window within the data's dates".to_owned(),
        }
    } else if first > w.end {
        "; the window ends before the data begins: give a later reference time (`--as-of`) or a window within the data's dates".to_owned()
    } else {
        String::new()
    };
    let outside = !hint.is_empty();
    let MetricsError::EmptyWindow { start, end } = MetricsError::empty_window(w) else {
        return None;
    };
    Some((
        MetricsError::WindowOutsideData {
            start,
            end,
            data: format!(
                "the data's conversations run from {} to {}{hint}",
                first.format("%Y-%m-%d"),
                last.format("%Y-%m-%d")
            ),
        },
        outside,
    ))
}

impl Plan {
    /// Records values dated after the reference time that were left out of the
    /// period's anchor: in the appendix's parameters and in `manifest.json`.
    pub fn note_after_reference(&mut self, column: &str, reference: DateTime<Utc>, n: u64) {
        self.manifest_parameters
            .insert("timestamps_after_reference".into(), Value::from(n));
        if n > 0 {
            tracing::warn!(
                column,
                n,
                "values dated after the reference time are left out of the period's anchor"
            );
            self.parameters.push((
                "timestamps_after_reference".into(),
                format!(
                    "{n} ({column} after {})",
                    crate::source::timestamp::format_utc(reference)
                ),
            ));
        }
    }
}

/// A number as the CSVs print it: shortest round-trip form, `.` decimal, empty for NULL.
pub fn cell(v: Option<f64>) -> String {
    v.map_or_else(String::new, |v| v.to_string())
}

/// A layout's data-quality notes (`quality.limitations`) with the note that texts of
/// the data were cut ([`crate::render::format::TEXT_CAP`]) when this edition cut
/// any. Called last in a layout, when every label of the edition has been made.
pub fn note_cut_texts(layout: &mut Value, lang: &Language) {
    if !lang.strings.cut_any() {
        return;
    }
    let note = lang.fill(
        "quality.texts_cut",
        &serde_json::json!({ "cap": crate::render::format::TEXT_CAP }),
    );
    if let Some(Value::Array(notes)) = layout
        .get_mut("quality")
        .and_then(|q| q.get_mut("limitations"))
    {
        notes.push(Value::String(note));
    }
}

/// The data-quality table of unparseable timestamps: `table.column`, count.
pub fn bad_timestamp_rows(bad: &BadTimestamps, f: &NumberFormat) -> Vec<[String; 2]> {
    bad.0
        .iter()
        .map(|(k, v)| [k.clone(), f.count(*v as f64)])
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_print_numbers_shortest_and_none_empty() {
        assert_eq!(cell(None), "");
        assert_eq!(cell(Some(0.25)), "0.25");
        assert_eq!(cell(Some(3.0)), "3");
    }

    #[test]
    fn options_take_their_defaults_and_unknown_ones_are_named() {
        let report = find("tag-drivers").unwrap();
        let mut options = Options::new();
        assert_eq!(option(report.options(), &options, "min_pp"), "3");
        options.insert("min_pp".into(), "500".into());
        options.insert("usage_source".into(), "events".into());
        assert_eq!(unknown_options(report, &options), ["usage_source"]);
        let problems = option_problems(report, &options);
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].option, "min_pp");
        assert!(
            problems[0].message.contains("between 0 and 100"),
            "{problems:?}"
        );
        let cu = find(conversation_usage::NAME).unwrap();
        let bad: Options = [("usage_source".to_owned(), "telepathy".to_owned())].into();
        assert_eq!(option_problems(cu, &bad)[0].option, "usage_source");
    }
}
