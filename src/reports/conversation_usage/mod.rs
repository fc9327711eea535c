//! Report `conversation-usage` (`../shared/specs/report-conversation-usage.md`):
//! Intercom conversations × product usage of paying customers, sliced by segment ×
//! seat bucket × ARR bucket. The numbers are `crate::metrics` (§2–§5); this folder
//! holds what the report makes of them: findings, charts, layout data and CSVs.

pub mod charts;
pub mod findings;
pub mod layout;

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::{Computed, CsvFile, Plan, Report};
use crate::charts::ChartSpec;
use crate::data::{self, DataError, Database, TableNeed, UsageTables};
use crate::edition::Narrative;
use crate::metrics::{self, ConversationUsage, SliceRow, UsageDefinitions};
use crate::narrative::Language;
use crate::output;
use crate::pipeline::{PipelineError, RunRequest, UsageSource};

pub const NAME: &str = "conversation-usage";

pub struct ConversationUsageReport;

/// The usage definitions a source means on this database (`auto`: events when the
/// table exists).
fn usage_of(db: &Database, source: UsageSource) -> Result<UsageDefinitions, DataError> {
    Ok(match source {
        UsageSource::Events => UsageDefinitions::Events,
        UsageSource::Proxy => UsageDefinitions::Proxy,
        UsageSource::Auto if db.has_table(data::USAGE_EVENTS)? => UsageDefinitions::Events,
        UsageSource::Auto => UsageDefinitions::Proxy,
    })
}

impl Report for ConversationUsageReport {
    fn name(&self) -> &'static str {
        NAME
    }

    fn about(&self) -> &'static str {
        "Intercom conversations × product usage of paying customers, by segment × seat × ARR bucket."
    }

    fn options(&self) -> &'static [(&'static str, &'static str)] {
        &[
            (
                "window",
                "rolling:<N>m | calendar:<N>m | range:<from>..<to> (default rolling:6m)",
            ),
            ("usage_source", "auto | events | proxy (default auto)"),
            (
                "min_cell",
                "slices with fewer companies are flagged and left out of rankings (default 20)",
            ),
        ]
    }

    fn needs(&self, db: &Database, req: &RunRequest) -> Result<Vec<TableNeed>, DataError> {
        let mut needs = data::CONVERSATION_USAGE_CORE.to_vec();
        needs.extend_from_slice(match usage_of(db, req.usage_source)? {
            UsageDefinitions::Events => data::CONVERSATION_USAGE_EVENTS,
            UsageDefinitions::Proxy => data::CONVERSATION_USAGE_PROXY,
        });
        Ok(needs)
    }

    fn plan(
        &self,
        db: &Database,
        req: &RunRequest,
        reference: DateTime<Utc>,
    ) -> Result<Plan, PipelineError> {
        let usage = usage_of(db, req.usage_source)?;
        let window = super::conversation_window(db, req, reference)?;
        Ok(Plan {
            period: window.period(),
            window: Some(window),
            parameters: vec![
                ("window".into(), req.window.to_string()),
                (
                    "usage_source".into(),
                    format!("{:?} → {:?}", req.usage_source, usage).to_lowercase(),
                ),
                ("min_cell".into(), req.min_cell.to_string()),
                ("source_timezone".into(), req.source_tz.name().to_owned()),
            ],
            manifest_parameters: serde_json::json!({
                "window": req.window.to_string(),
                "usage_source": req.usage_source,
                "usage_source_used": usage,
                "min_cell": req.min_cell,
                "source_timezone": req.source_tz.name(),
            })
            .as_object()
            .cloned()
            .unwrap_or_default(),
            tables: vec![
                data::COMPANY_ENHANCED,
                data::COMPANY_METRICS,
                data::CONTACT_ENHANCED,
                data::CONVERSATION_ENHANCED,
                data::CONVERSATION_METRICS,
                data::USAGE_EVENTS,
            ],
        })
    }

    fn compute(
        &self,
        db: &Database,
        req: &RunRequest,
        plan: &Plan,
        timings: &mut Vec<(&'static str, Duration)>,
    ) -> Result<Box<dyn Computed>, PipelineError> {
        let usage = usage_of(db, req.usage_source)?;
        let tables = match usage {
            UsageDefinitions::Events => UsageTables::Events,
            UsageDefinitions::Proxy => UsageTables::Proxy,
        };
        let t = Instant::now();
        let loaded = db.load_conversation_usage(req.source_tz, tables)?;
        timings.push(("load", t.elapsed()));
        let t = Instant::now();
        let window = plan.window.expect("conversation-usage plans a window");
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
        panel_files(self)
    }

    fn story(&self) -> Narrative {
        let findings = findings::findings(self);
        let recommendations = findings::recommendations(self, &findings);
        Narrative {
            findings,
            recommendations,
        }
    }

    fn charts(&self, language: &Language) -> Vec<ChartSpec> {
        charts::conversation_usage(self, &language.strings)
    }

    fn layout(&self, language: &Language) -> Value {
        layout::layout(self, language)
    }

    fn size(&self) -> (&'static str, usize) {
        ("conversations_kept", self.counts.conversations_kept)
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
                    cells.extend(row.metric_values().into_iter().map(output::cell));
                    cells
                })
                .collect(),
        })
        .collect()
}
