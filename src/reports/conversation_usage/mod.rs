//! Report `conversation-usage` (`../shared/specs/report-conversation-usage.md`):
//! Intercom conversations × product usage of paying customers, sliced by segment ×
//! seat bucket × ARR bucket. The rows come from `load`, the numbers from `metrics` (§2–§5); the rest of
//! this folder is what the report makes of them: findings, charts, layout data and CSVs.

pub mod analysis;
pub mod charts;
pub mod comparison;
pub mod findings;
pub mod layout;
pub mod load;
pub mod metrics;
pub mod trend;

use std::str::FromStr;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;

use super::{
    parse_option, Computed, CsvFile, OptionSpec, Options, Plan, Report, ReportError, Request,
    COMPARE_OPTION, WINDOW_OPTION,
};
use crate::intercom::window::Compare;
use crate::intercom::{COMPANY_ENHANCED, CONVERSATION_ENHANCED, USAGE_EVENTS};
use crate::render::charts::ChartSpec;
use crate::render::narrative::Narrative;
use crate::render::templates::Language;
use crate::source::{DataError, Database, TableNeed};
use load::UsageTables;
use metrics::{ConversationUsage, SliceRow, UsageDefinitions};

pub const NAME: &str = "conversation-usage";

pub struct ConversationUsageReport;

const OPTIONS: &[OptionSpec] = &[
    WINDOW_OPTION,
    OptionSpec {
        name: "usage_source",
        about: "auto | events | proxy",
        default: "auto",
    },
    OptionSpec {
        name: "min_cell",
        about: "slices with fewer companies are flagged and left out of rankings",
        default: "20",
    },
    COMPARE_OPTION,
];

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

/// The options of a run, read.
#[derive(Debug, Clone, Copy)]
struct Settings {
    usage_source: UsageSource,
    min_cell: usize,
    compare: Compare,
}

impl Settings {
    fn read(options: &Options) -> Result<Self, ReportError> {
        Ok(Self {
            usage_source: parse_option(NAME, OPTIONS, options, "usage_source", str::parse)?,
            min_cell: parse_option(NAME, OPTIONS, options, "min_cell", |v| {
                v.parse()
                    .map_err(|_| format!("`{v}`: expected a whole number of companies"))
            })?,
            compare: parse_option(NAME, OPTIONS, options, "compare", str::parse)?,
        })
    }
}

/// The usage definitions a source means on this database (`auto`: events when the
/// table exists, else the proxies when their columns exist, else none: conversion and
/// retention are then empty with the reason stated, and the rest of the report runs).
fn usage_of(db: &Database, source: UsageSource) -> Result<UsageDefinitions, DataError> {
    Ok(match source {
        UsageSource::Events => UsageDefinitions::Events,
        UsageSource::Proxy => UsageDefinitions::Proxy,
        UsageSource::Auto if db.has_table(USAGE_EVENTS)? => UsageDefinitions::Events,
        UsageSource::Auto => match db.check(NAME, load::PROXY) {
            Ok(()) => UsageDefinitions::Proxy,
            Err(DataError::Schema { .. }) => UsageDefinitions::None,
            Err(e) => return Err(e),
        },
    })
}

/// For `check`: conversations carrying a first_response tag, conversations with an
/// assignee type, paying companies (LIKE and comparisons both dialects share).
const SQL_TAGGED_BOT: &str = "SELECT count(*) FROM intercom__conversation_enhanced \
     WHERE all_conversation_tags LIKE '%first_response:%'";
const SQL_ASSIGNEE_KNOWN: &str =
    "SELECT count(conversation_assignee_type) FROM intercom__conversation_enhanced";
const SQL_PAYING: &str = "SELECT count(*) FROM intercom__company_enhanced WHERE monthly_spend > 0";

impl Report for ConversationUsageReport {
    fn name(&self) -> &'static str {
        NAME
    }

    fn about(&self) -> &'static str {
        "Intercom conversations × product usage of paying customers, by segment × seat × ARR bucket."
    }

    fn options(&self) -> &'static [OptionSpec] {
        OPTIONS
    }

    fn check_options(&self, options: &Options) -> Vec<(String, String)> {
        super::option_problems(Settings::read(options))
    }

    fn limits(&self, db: &Database, req: &Request<'_>) -> Result<Vec<String>, ReportError> {
        let settings = Settings::read(req.options)?;
        let count = |table: &'static str, sql: &str| -> Result<i64, DataError> {
            let mut n = 0;
            db.each_row(table, sql, |r| {
                n = r.integer(0, "count")?.unwrap_or(0);
                Ok(())
            })?;
            Ok(n)
        };
        let mut out = vec![match usage_of(db, settings.usage_source)? {
            UsageDefinitions::Events => {
                "conversion and retention: from usage_events (events definitions)".to_owned()
            }
            UsageDefinitions::Proxy => "conversion and retention: from the proxies \
                (contacts' last_activity_ts, registration_retention_7d/_30d)"
                .to_owned(),
            UsageDefinitions::None => "conversion and retention: not available (no usage_events \
                table, no proxy columns last_activity_ts / registration_retention_7d/_30d); \
                the rest of the report is produced"
                .to_owned(),
        }];
        out.push(if count(CONVERSATION_ENHANCED, SQL_TAGGED_BOT)? > 0 {
            "bot-first share: from first_response tags".to_owned()
        } else {
            "bot-first share: no first_response tags, so the bot-initiated proxy is printed, \
             labelled as such"
                .to_owned()
        });
        if count(CONVERSATION_ENHANCED, SQL_ASSIGNEE_KNOWN)? == 0 {
            out.push(
                "team-routed share: not available (conversation_assignee_type is empty, as \
                 dbt_intercom leaves it)"
                    .to_owned(),
            );
        }
        Ok(out)
    }

    fn blockers(&self, db: &Database, _req: &Request<'_>) -> Result<Vec<String>, ReportError> {
        let mut paying = 0;
        db.each_row(COMPANY_ENHANCED, SQL_PAYING, |r| {
            paying = r.integer(0, "count")?.unwrap_or(0);
            Ok(())
        })?;
        Ok(if paying == 0 {
            vec![
                "no company has monthly_spend > 0: a run stops with exit 1 (no paying company \
                  to describe; the report covers paying customers only)"
                    .to_owned(),
            ]
        } else {
            Vec::new()
        })
    }

    fn compared_metrics(&self) -> &'static [&'static str] {
        &comparison::METRICS
    }

    fn compared_slices(&self) -> &'static [&'static str] {
        &comparison::SLICES
    }

    fn needs(&self, db: &Database, req: &Request<'_>) -> Result<Vec<TableNeed>, ReportError> {
        let settings = Settings::read(req.options)?;
        let mut needs = load::CORE.to_vec();
        needs.extend_from_slice(match usage_of(db, settings.usage_source)? {
            UsageDefinitions::Events => load::EVENTS,
            UsageDefinitions::Proxy => load::PROXY,
            UsageDefinitions::None => &[],
        });
        Ok(needs)
    }

    fn plan(
        &self,
        db: &Database,
        req: &Request<'_>,
        reference: DateTime<Utc>,
    ) -> Result<Plan, ReportError> {
        let settings = Settings::read(req.options)?;
        let usage = usage_of(db, settings.usage_source)?;
        let (window, after) = super::conversation_window(db, req, reference)?;
        let mut plan = Plan {
            period: window.period(),
            window: Some(window),
            parameters: vec![
                ("window".into(), req.window.to_string()),
                (
                    "usage_source".into(),
                    format!("{:?} → {:?}", settings.usage_source, usage).to_lowercase(),
                ),
                ("min_cell".into(), settings.min_cell.to_string()),
                ("compare".into(), settings.compare.to_string()),
                ("source_timezone".into(), req.source_tz.name().to_owned()),
            ],
            manifest_parameters: serde_json::json!({
                "window": req.window.to_string(),
                "usage_source": settings.usage_source,
                "usage_source_used": usage,
                "min_cell": settings.min_cell,
                "compare": settings.compare,
                "source_timezone": req.source_tz.name(),
            })
            .as_object()
            .cloned()
            .unwrap_or_default(),
        };
        plan.note_after_reference(
            "intercom__conversation_enhanced.conversation_created_at",
            reference,
            after,
        );
        Ok(plan)
    }

    fn compute(
        &self,
        db: &Database,
        req: &Request<'_>,
        plan: &Plan,
        timings: &mut Vec<(&'static str, Duration)>,
    ) -> Result<Box<dyn Computed>, ReportError> {
        let settings = Settings::read(req.options)?;
        let usage = usage_of(db, settings.usage_source)?;
        let tables = match usage {
            UsageDefinitions::Events => UsageTables::Events,
            UsageDefinitions::Proxy => UsageTables::Proxy,
            UsageDefinitions::None => UsageTables::Neither,
        };
        let window = plan.window.expect("conversation-usage plans a window");
        let params = metrics::Params {
            min_cell: settings.min_cell,
            usage,
            ..metrics::Params::default()
        };
        let t = Instant::now();
        let loaded = load::load_conversation_usage(db, req.source_tz, tables, window, req.mapping)?;
        timings.push(("load", t.elapsed()));
        let t = Instant::now();
        let mut report = metrics::compute(&loaded, window, params)?;
        timings.push(("metrics", t.elapsed()));
        // The comparison window and the trend's months from one more load over the
        // months before the window: each is the same metrics on its own window, so
        // its numbers are what a run on that window prints.
        let before = window.comparison(&req.window, settings.compare);
        let t = Instant::now();
        let span = window.history_span(crate::reports::trend::MONTHS, before.as_ref());
        let history = load::load_conversation_usage(db, req.source_tz, tables, span, req.mapping)?;
        if let Some(before) = before {
            report.comparison = Some(match metrics::compute(&history, before, params) {
                Ok(previous) => {
                    let c = comparison::compare(&report, &previous, settings.compare);
                    report.previous_panels = Some(previous.panels);
                    c
                }
                Err(e) => crate::reports::comparison::empty(
                    settings.compare.to_string(),
                    Some(before),
                    before.period(),
                    e.to_string(),
                ),
            });
        }
        report.trend = Some(trend::trend(&history, &window, params));
        timings.push(("history", t.elapsed()));
        std::thread::spawn(move || drop(history));
        if let Some(n) = report
            .data_quality
            .usage_events_unmatched
            .filter(|n| *n > 0)
        {
            tracing::warn!(
                events = n,
                "usage events whose company_id matches no company (counted in data quality)"
            );
        }
        // Millions of rows and the companies' strings take a while to free, and
        // nothing waits for them.
        std::thread::spawn(move || drop(loaded));
        Ok(Box::new(report))
    }
}

impl Computed for ConversationUsage {
    fn summary(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }

    fn csv_files(&self) -> Vec<CsvFile> {
        let mut files = panel_files(self);
        if let Some(c) = &self.comparison {
            files.push(crate::reports::comparison::csv(c));
        }
        files
    }

    fn story(&self) -> Narrative {
        let findings = findings::findings(self);
        let recommendations = findings::recommendations(self, &findings);
        let analysis = analysis::analysis(self, &findings, &recommendations);
        Narrative {
            findings,
            recommendations,
            analysis,
        }
    }

    fn charts(&self, language: &Language) -> Vec<ChartSpec> {
        charts::conversation_usage(self, &language.strings)
    }

    fn layout(&self, language: &Language) -> Value {
        let mut v = layout::layout(self, language);
        crate::reports::note_cut_texts(&mut v, language);
        v
    }

    fn variants(&self) -> Vec<&'static str> {
        match self.bot_first_measure {
            metrics::BotMeasure::FirstResponseTags => Vec::new(),
            metrics::BotMeasure::BotInitiatedProxy => vec!["bot_proxy"],
        }
    }

    fn size(&self) -> (&'static str, usize) {
        ("conversations_kept", self.counts.conversations_kept)
    }

    fn rows_read(&self) -> &[(&'static str, u64)] {
        &self.rows_read
    }
}

/// The four panel CSVs of §7: slice columns first, then §4's columns.
fn panel_files(r: &ConversationUsage) -> Vec<CsvFile> {
    let panels: [(&'static str, &[SliceRow], &[&'static str]); 4] = [
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
    panels
        .into_iter()
        .map(|(name, rows, slice_cols)| CsvFile {
            name,
            header: slice_cols
                .iter()
                .chain(metrics::METRIC_COLUMNS.iter())
                .copied()
                .collect(),
            rows: rows
                .iter()
                .map(|row| {
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
                    cells.extend(row.metric_values().into_iter().map(super::cell));
                    cells
                })
                .collect(),
        })
        .collect()
}
