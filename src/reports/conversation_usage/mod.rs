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
pub mod method;
pub mod metrics;
pub mod trend;

use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;

use super::options::{self, OptionParser};
use super::windowed::{self, Parameters, Span, Windowed, WindowedReport};
use super::{
    BadOptions, Computed, Configured, CsvFile, Earlier, MetricsError, OptionSpec, Options, Plan,
    Report, ReportError, Request, COMPARE_OPTION, WINDOW_OPTION,
};
use crate::intercom::scope::ScopeSide;
use crate::intercom::window::{Compare, Window};
use crate::intercom::{CONVERSATION_ENHANCED, USAGE_EVENTS};
use crate::render::charts::ChartSpec;
use crate::render::narrative::Narrative;
use crate::render::templates::Language;
use crate::reports::benchmark;
use crate::reports::comparison::Comparison;
use crate::reports::comparison::Unit;
use crate::reports::trend::Month;
use crate::source::{DataError, Database, RowsRead, TableNeed};
use crate::stats::claims::{Moments, Proportion};
use load::{ConversationUsageData, UsageTables};
use metrics::{ConversationUsage, SliceRow, UsageDefinitions};

pub const NAME: &str = "conversation-usage";

pub struct ConversationUsageReport;

/// The options, each with how it is read into [`Settings`].
const PARSERS: [OptionParser<Settings>; 4] = [
    OptionParser::read_by_run(WINDOW_OPTION),
    OptionParser::new(
        OptionSpec {
            name: "usage_source",
            about: "auto | events | proxy",
            default: "auto",
        },
        |s, v| {
            s.usage_source = v.parse()?;
            Ok(())
        },
    ),
    OptionParser::new(
        OptionSpec {
            name: "min_cell",
            about: "slices with fewer companies are flagged and left out of rankings",
            default: "20",
        },
        |s, v| {
            s.min_cell = v
                .parse()
                .map_err(|_| format!("`{v}`: expected a whole number of companies"))?;
            Ok(())
        },
    ),
    OptionParser::new(COMPARE_OPTION, |s, v| {
        s.compare = v.parse()?;
        Ok(())
    }),
];

const OPTIONS: &[OptionSpec] = &options::specs(&PARSERS);

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

/// Where reading starts: every field is then set by its option's parser, from the
/// option's default when it is not given ([`PARSERS`] holds the defaults).
impl Default for Settings {
    fn default() -> Self {
        Self {
            usage_source: UsageSource::Auto,
            min_cell: 0,
            compare: Compare::None,
        }
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

    fn configure(&self, options: &Options) -> Result<Box<dyn Configured>, BadOptions> {
        Ok(Box::new(options::read(&PARSERS, options)?))
    }

    fn compared_metrics(&self) -> &'static [&'static str] {
        &comparison::METRICS
    }

    fn compared_slices(&self) -> &'static [&'static str] {
        &comparison::SLICES
    }
}

/// The report with a run's options read.
impl Configured for Settings {
    fn limits(&self, db: &Database, _req: &Request<'_>) -> Result<Vec<String>, ReportError> {
        let count = |table: &'static str, sql: &str| -> Result<i64, DataError> {
            let mut n = 0;
            db.each_row(table, sql, |r| {
                n = r.integer(0, "count")?.unwrap_or(0);
                Ok(())
            })?;
            Ok(n)
        };
        let mut out = vec![];
        if !db.has_table(USAGE_EVENTS)? {
            if let Some(hint) = db.absent_hint(USAGE_EVENTS)? {
                out.push(format!("usage_events: not read ({hint})"));
            }
        }
        out.push(match usage_of(db, self.usage_source)? {
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
        });
        out.push(if count(CONVERSATION_ENHANCED, SQL_TAGGED_BOT)? > 0 {
            "bot-first share: from first_response tags".to_owned()
        } else {
            "bot-first share: no first_response tags, so the bot-initiated proxy is printed, \
             labelled as such"
                .to_owned()
        });
        let has_assignee = db
            .columns(CONVERSATION_ENHANCED)?
            .iter()
            .any(|(c, _)| c == load::ASSIGNEE_TYPE);
        if !has_assignee {
            out.push(
                "team-routed share: not available (no conversation_assignee_type column; \
                 the contract makes it optional)"
                    .to_owned(),
            );
        } else if count(CONVERSATION_ENHANCED, SQL_ASSIGNEE_KNOWN)? == 0 {
            out.push(
                "team-routed share: not available (conversation_assignee_type is empty, as \
                 dbt_intercom leaves it)"
                    .to_owned(),
            );
        }
        Ok(out)
    }

    fn blockers(&self, db: &Database, req: &Request<'_>) -> Result<Vec<String>, ReportError> {
        Ok(super::load::population_blockers(db, req.mapping)?)
    }

    /// A cell's minimum (`min_cell`): an edition with fewer companies than one cell
    /// needs has no slice to rank.
    fn min_companies(&self) -> Option<(usize, &'static str)> {
        Some((
            self.min_cell,
            "min_cell, the companies a slice needs to be ranked",
        ))
    }

    fn needs(&self, db: &Database, _req: &Request<'_>) -> Result<Vec<TableNeed>, ReportError> {
        let mut needs = load::CORE.to_vec();
        needs.extend_from_slice(match usage_of(db, self.usage_source)? {
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
        let usage = usage_of(db, self.usage_source)?;
        let own = Parameters {
            printed: vec![
                (
                    "usage_source".into(),
                    format!("{:?} → {:?}", self.usage_source, usage).to_lowercase(),
                ),
                ("min_cell".into(), self.min_cell.to_string()),
            ],
            manifest: vec![
                ("usage_source".into(), serde_json::json!(self.usage_source)),
                ("usage_source_used".into(), serde_json::json!(usage)),
                ("min_cell".into(), serde_json::json!(self.min_cell)),
            ],
        };
        windowed::plan(db, req, reference, self.compare, own)
    }

    fn compute(
        &self,
        db: &Database,
        req: &Request<'_>,
        plan: &Plan,
        _earlier: &Earlier,
        timings: &mut Vec<(&'static str, Duration)>,
    ) -> Result<Box<dyn Computed>, ReportError> {
        let usage = usage_of(db, self.usage_source)?;
        let tables = match usage {
            UsageDefinitions::Events => UsageTables::Events,
            UsageDefinitions::Proxy => UsageTables::Proxy,
            UsageDefinitions::None => UsageTables::Neither,
        };
        let window = plan.window.expect("conversation-usage plans a window");
        let windows = Windows {
            db,
            req: *req,
            tables,
            params: metrics::Params {
                min_cell: self.min_cell,
                usage,
                ..metrics::Params::default()
            },
        };
        let span = Span {
            window,
            spec: &req.window,
            compare: self.compare,
            data: plan.coverage,
        };
        let mut run = windowed::compute(&windows, span, timings)?;
        // A scoped edition against the whole company: the same window's metrics on
        // every company and on the rest, from the rows this run read.
        if let Some(scope) = &req.mapping.scope {
            let t = std::time::Instant::now();
            let side = |side| {
                let mapping = benchmark::side_mapping(req.mapping, side);
                let other = Windows {
                    db,
                    req: Request {
                        mapping: &mapping,
                        ..*req
                    },
                    tables,
                    params: windows.params,
                };
                windowed::window_metrics(&other, span)
            };
            let company = side(ScopeSide::All)?;
            let rest = side(ScopeSide::Rest).map_err(|e| e.to_string());
            run.benchmark = Some(benchmark::benchmark(
                scope,
                &BENCHMARK,
                &run.current,
                &company,
                rest.as_ref().map_err(String::clone),
            ));
            timings.push(("benchmark", t.elapsed()));
        }
        if let Some(metrics::UsageEmpty::NoneMatched(n)) = &run.usage_empty {
            tracing::warn!(
                events = n.events,
                company_key = %n.company_key,
                "no usage event of the window is a company's: conversion and retention are \
                 empty; set usage_company_key (mapping) to the company column the events' \
                 company_id holds, or use the proxies (--usage-source proxy, or usage_source = proxy in a job)"
            );
        } else if let Some(n) = run.data_quality.usage_events_unmatched.filter(|n| *n > 0) {
            tracing::warn!(
                events = n,
                "usage events whose company_id matches no company (counted in data quality)"
            );
        }
        Ok(Box::new(run))
    }
}

/// The headline metrics a scoped edition sets against the whole company: the
/// overall panel's retention, conversion, bot-first share and mean first response.
const BENCHMARK: [benchmark::Metric<ConversationUsage>; 5] = [
    benchmark::Metric {
        name: "weekly_retention",
        unit: Unit::Rate,
        side: |m| {
            let r = &m.panels.overall;
            rate(
                r.weekly_retention,
                Proportion::from_rate(r.weekly_retention, r.counts.weekly_companies),
            )
        },
    },
    benchmark::Metric {
        name: "monthly_retention",
        unit: Unit::Rate,
        side: |m| {
            let r = &m.panels.overall;
            rate(
                r.monthly_retention,
                Proportion::from_rate(r.monthly_retention, r.counts.monthly_companies),
            )
        },
    },
    benchmark::Metric {
        name: "conv_to_feature_rate",
        unit: Unit::Rate,
        side: |m| {
            let r = &m.panels.overall;
            rate(
                r.conv_to_feature_rate,
                Proportion::new(r.counts.converted, r.companies_with_closed_conv),
            )
        },
    },
    benchmark::Metric {
        name: "bot_first_resp_share",
        unit: Unit::Rate,
        side: |m| {
            let r = &m.panels.overall;
            rate(
                r.bot_first_resp_share,
                Proportion::new(r.counts.bot, r.conv_cnt),
            )
        },
    },
    benchmark::Metric {
        name: "avg_resp",
        unit: Unit::Minutes,
        side: |m| {
            let r = &m.panels.overall;
            benchmark::Side {
                value: r.avg_resp,
                rate: None,
                moments: r
                    .avg_resp
                    .zip(r.counts.resp_var)
                    .map(|(mean, var)| Moments {
                        n: r.counts.resp_n as f64,
                        mean,
                        var,
                    }),
            }
        },
    },
];

/// A rate's side: its value and its count (none without the value).
fn rate(value: Option<f64>, count: Option<Proportion>) -> benchmark::Side {
    benchmark::Side {
        value,
        rate: value.and(count),
        moments: None,
    }
}

/// A run's numbers: this window's, the comparison window's and the trend
/// ([`windowed::compute`]).
pub type Run = Windowed<ConversationUsage, trend::Trend>;

/// What conversation-usage loads and computes on each window of a run.
struct Windows<'a> {
    db: &'a Database,
    req: Request<'a>,
    tables: UsageTables,
    params: metrics::Params,
}

impl WindowedReport for Windows<'_> {
    type Data = ConversationUsageData;
    type Metrics = ConversationUsage;
    /// Always the same headline metrics.
    type Lens = ();
    type Point = trend::Point;
    type Trend = trend::Trend;

    fn load(&self, span: Window, window: Window) -> Result<ConversationUsageData, ReportError> {
        Ok(load::load_conversation_usage(
            self.db,
            self.req.source_tz,
            self.tables,
            crate::reports::load::LoadSpan { span, window },
            self.req.mapping,
        )?)
    }

    fn rows_read(&self, data: &ConversationUsageData) -> RowsRead {
        data.rows_read.clone()
    }

    fn metrics(
        &self,
        data: &ConversationUsageData,
        window: Window,
    ) -> Result<ConversationUsage, MetricsError> {
        metrics::compute(data, window, self.params)
    }

    fn compare(
        &self,
        current: &ConversationUsage,
        previous: &ConversationUsage,
        basis: Compare,
    ) -> Comparison {
        comparison::compare(current, previous, basis)
    }

    fn lens(&self, _current: &ConversationUsage) -> Option<()> {
        Some(())
    }

    fn point(&self, _lens: &(), month: &ConversationUsage) -> trend::Point {
        trend::point(month)
    }

    fn empty_point(&self, _lens: &()) -> trend::Point {
        trend::Point::default()
    }

    fn trend(&self, _lens: (), months: Vec<Month<trend::Point>>) -> trend::Trend {
        trend::Trend { months }
    }
}

impl Computed for Run {
    fn comparison(&self) -> Option<&Comparison> {
        self.comparison.as_ref()
    }

    fn summary(&self) -> Value {
        self.summary_with(serde_json::to_value(&self.current).unwrap_or(Value::Null))
    }

    fn csv_files(&self) -> Vec<CsvFile> {
        let mut files = panel_files(self);
        if let Some(c) = &self.comparison {
            files.push(crate::reports::comparison::csv(c));
        }
        if let Some(b) = &self.benchmark {
            files.push(benchmark::csv(b));
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
        charts::conversation_usage(self, language)
    }

    fn layout(&self, language: &Language) -> Value {
        let mut v = layout::layout(self, language);
        crate::reports::note_cut_texts(&mut v, language);
        if let Some(b) = &self.benchmark {
            v["benchmark"] = benchmark::layout(b, language);
        }
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
