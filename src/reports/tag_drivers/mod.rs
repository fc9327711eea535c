//! Report `tag-drivers` (`../shared/specs/report-tag-drivers.md`): what at-risk
//! companies talk to support about, compared with companies targeted for expansion.
//!
//! Why this file is long (about 720 lines): the `Report` impl, its options, the
//! windowed hooks and the layout's tables share one `Run`; the layout alone is half
//! the file, and every table in it prints its differences from its printed values.

pub mod charts;
pub mod comparison;
pub mod findings;
pub mod load;
pub mod low_ratings;
pub mod metrics;
pub mod relabel;

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use super::options::{self, OptionParser};
use super::trend::Month;
use super::windowed::{self, Parameters, Span, Windowed, WindowedReport};
use super::{
    BadOptions, Computed, Configured, CsvFile, Earlier, MetricsError, OptionSpec, Options, Plan,
    Report, ReportError, Request, COMPARE_OPTION, WINDOW_OPTION,
};
use crate::intercom::scope::ScopeSide;
use crate::intercom::window::{Compare, Window};
use crate::render::charts::ChartSpec;
use crate::render::narrative::Narrative;
use crate::render::templates::Language;
use crate::reports::comparison::{signed_change, Comparison, Direction, Unit};
use crate::source::{Database, RowsRead, TableNeed};
use load::TagDriversData;
use metrics::TagDrivers;

pub const NAME: &str = "tag-drivers";

/// Tags per group listed in the appendix (the CSV has them all).
const APPENDIX_TAGS: usize = 15;

pub struct TagDriversReport;

/// The options, each with how it is read into [`Settings`].
const PARSERS: [OptionParser<Settings>; 3] = [
    OptionParser::read_by_run(WINDOW_OPTION),
    OptionParser::new(
        OptionSpec {
            name: "min_pp",
            about: "share difference, in percentage points, that makes a topic over-represented",
            default: "3",
        },
        // Percentage points between 0 and 100.
        |s, v| match v.parse::<f64>() {
            Ok(pp) if (0.0..=100.0).contains(&pp) => {
                s.min_pp = pp;
                Ok(())
            }
            _ => Err(format!(
                "`{v}`: expected percentage points between 0 and 100"
            )),
        },
    ),
    OptionParser::new(COMPARE_OPTION, |s, v| {
        s.compare = v.parse()?;
        Ok(())
    }),
];

const OPTIONS: &[OptionSpec] = &options::specs(&PARSERS);

/// The options of a run, read.
#[derive(Debug, Clone, Copy)]
struct Settings {
    min_pp: f64,
    compare: Compare,
}

/// Where reading starts: every field is then set by its option's parser, from the
/// option's default when it is not given ([`PARSERS`] holds the defaults).
impl Default for Settings {
    fn default() -> Self {
        Self {
            min_pp: 0.0,
            compare: Compare::None,
        }
    }
}

impl Report for TagDriversReport {
    fn name(&self) -> &'static str {
        NAME
    }

    fn about(&self) -> &'static str {
        "What at-risk companies talk to support about, compared with expansion targets: topic tag shares, rating and response gaps."
    }

    fn options(&self) -> &'static [OptionSpec] {
        OPTIONS
    }

    fn configure(&self, options: &Options) -> Result<Box<dyn Configured>, BadOptions> {
        Ok(Box::new(options::read(&PARSERS, options)?))
    }

    fn vocabulary(&self, db: &Database, _req: &Request<'_>) -> Result<Vec<String>, ReportError> {
        Ok(load::topics(db)?)
    }
}

/// The report with a run's options read.
impl Configured for Settings {
    fn needs(&self, _db: &Database, _req: &Request<'_>) -> Result<Vec<TableNeed>, ReportError> {
        Ok(load::NEEDS.to_vec())
    }

    /// Like conversation-usage: the report is of paying companies only.
    fn blockers(&self, db: &Database, req: &Request<'_>) -> Result<Vec<String>, ReportError> {
        Ok(super::load::population_blockers(db, req.mapping)?)
    }

    /// The peer-group minimum of its targets ([`findings::MIN_PEERS`]).
    fn min_companies(&self) -> Option<(usize, &'static str)> {
        Some((
            findings::MIN_PEERS,
            "the peer-group minimum, the companies a target from peers needs",
        ))
    }

    fn plan(
        &self,
        db: &Database,
        req: &Request<'_>,
        reference: DateTime<Utc>,
    ) -> Result<Plan, ReportError> {
        let own = Parameters {
            printed: vec![("min_pp".into(), self.min_pp.to_string())],
            manifest: vec![("min_pp".into(), json!(self.min_pp))],
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
        let window = plan.window.expect("tag-drivers plans a window");
        let span = Span {
            window,
            spec: &req.window,
            compare: self.compare,
            data: plan.coverage,
        };
        let mut numbers = windowed::compute(&Windows { db, req: *req }, span, timings)?;
        // A scoped edition against the whole company: the same window's metrics on
        // every company and on the rest, from the rows this run read.
        if let Some(scope) = &req.mapping.scope {
            let t = std::time::Instant::now();
            let side = |side| {
                let mapping = super::benchmark::side_mapping(req.mapping, side);
                let other = Windows {
                    db,
                    req: Request {
                        mapping: &mapping,
                        ..*req
                    },
                };
                windowed::window_metrics(&other, span)
            };
            let company = side(ScopeSide::All)?;
            let rest = side(ScopeSide::Rest).map_err(|e| e.to_string());
            numbers.benchmark = Some(super::benchmark::benchmark(
                scope,
                &BENCHMARK,
                &numbers.current,
                &company,
                rest.as_ref().map_err(String::clone),
            ));
            timings.push(("benchmark", t.elapsed()));
        }
        if numbers.bad_timestamps.total() > 0 {
            tracing::warn!(
                count = numbers.bad_timestamps.total(),
                "unparseable timestamps (counted in the data-quality appendix)"
            );
        }
        Ok(Box::new(Run {
            numbers,
            min_pp: self.min_pp,
        }))
    }
}

/// The headline metrics a scoped edition sets against the whole company: the
/// paying companies' (the baseline's) low ratings and reopens.
const BENCHMARK: [super::benchmark::Metric<TagDrivers>; 2] = [
    super::benchmark::Metric {
        name: "share_rated_le2",
        unit: Unit::Rate,
        side: |m| {
            let b = &m.baseline;
            super::benchmark::Side {
                value: b.share_rated_le2,
                rate: b
                    .share_rated_le2
                    .and(crate::stats::claims::Proportion::new(b.rated_le2, b.rated)),
                moments: None,
            }
        },
    },
    super::benchmark::Metric {
        name: "reopen_rate",
        unit: Unit::Rate,
        side: |m| {
            let b = &m.baseline;
            super::benchmark::Side {
                value: b.reopen_rate,
                rate: b.reopen_rate.and(crate::stats::claims::Proportion::new(
                    b.samples.reopened,
                    b.samples.with_metrics,
                )),
                moments: None,
            }
        },
    },
];

/// What tag-drivers loads and computes on each window of a run.
struct Windows<'a> {
    db: &'a Database,
    req: Request<'a>,
}

impl WindowedReport for Windows<'_> {
    type Data = TagDriversData;
    type Metrics = TagDrivers;
    /// The topics drawn month by month.
    type Lens = Vec<String>;
    type Point = comparison::Shares;
    type Trend = comparison::Trend;

    fn load(&self, span: Window, window: Window) -> Result<TagDriversData, ReportError> {
        Ok(load::load(
            self.db,
            self.req.source_tz,
            crate::reports::load::LoadSpan { span, window },
            self.req.mapping,
        )?)
    }

    fn rows_read(&self, data: &TagDriversData) -> RowsRead {
        data.rows_read.clone()
    }

    fn metrics(&self, data: &TagDriversData, window: Window) -> Result<TagDrivers, MetricsError> {
        metrics::compute(data, window)
    }

    fn compare(&self, current: &TagDrivers, previous: &TagDrivers, basis: Compare) -> Comparison {
        comparison::compare(current, previous, basis)
    }

    fn lens(&self, current: &TagDrivers) -> Option<Vec<String>> {
        comparison::trend_topics(current)
    }

    fn point(&self, topics: &Vec<String>, month: &TagDrivers) -> comparison::Shares {
        comparison::shares(topics, month)
    }

    fn empty_point(&self, topics: &Vec<String>) -> comparison::Shares {
        comparison::Shares::empty(topics)
    }

    fn trend(
        &self,
        topics: Vec<String>,
        months: Vec<Month<comparison::Shares>>,
    ) -> comparison::Trend {
        comparison::Trend { topics, months }
    }
}

/// The numbers of a run and the threshold its findings use.
pub struct Run {
    /// This window's numbers, the comparison window's (the tables print each
    /// change), what changed and the topics' shares month by month.
    pub numbers: Windowed<TagDrivers, comparison::Trend>,
    pub min_pp: f64,
}

impl Computed for Run {
    fn comparison(&self) -> Option<&Comparison> {
        self.numbers.comparison.as_ref()
    }

    fn summary(&self) -> Value {
        let mut v = serde_json::to_value(&self.numbers.current).unwrap_or(Value::Null);
        v["min_pp"] = json!(self.min_pp);
        self.numbers.summary_with(v)
    }

    fn csv_files(&self) -> Vec<CsvFile> {
        let r = &self.numbers;
        vec![
            CsvFile {
                name: "tag_shares.csv",
                header: vec!["group", "tag", "conversations", "share"],
                rows: r
                    .shares
                    .iter()
                    .map(|s| {
                        vec![
                            s.group.to_owned(),
                            s.tag.clone(),
                            s.conversations.to_string(),
                            super::cell(Some(s.share)),
                        ]
                    })
                    .collect(),
            },
            CsvFile {
                name: "group_stats.csv",
                header: vec![
                    "group",
                    "companies",
                    "conversations",
                    "avg_rating",
                    "share_rated_le2",
                    "median_resp",
                    "reopen_rate",
                ],
                rows: r
                    .groups
                    .iter()
                    .map(|g| {
                        vec![
                            g.group.to_owned(),
                            g.companies.to_string(),
                            g.conversations.to_string(),
                            super::cell(g.avg_rating),
                            super::cell(g.share_rated_le2),
                            super::cell(g.median_resp),
                            super::cell(g.reopen_rate),
                        ]
                    })
                    .collect(),
            },
            CsvFile {
                name: "low_rating_topics.csv",
                header: vec![
                    "group",
                    "tag",
                    "rated",
                    "rated_le2",
                    "share_rated_le2",
                    "rest_rated",
                    "rest_rated_le2",
                    "rest_share_rated_le2",
                    "verdict",
                ],
                rows: r
                    .low_ratings
                    .iter()
                    .map(|x| {
                        vec![
                            x.group.to_owned(),
                            x.tag.clone(),
                            x.rated.to_string(),
                            x.rated_le2.to_string(),
                            super::cell(Some(x.share_rated_le2)),
                            x.rest_rated.to_string(),
                            x.rest_rated_le2.to_string(),
                            super::cell(x.rest_share_rated_le2),
                            x.verdict.key().to_owned(),
                        ]
                    })
                    .collect(),
            },
        ]
        .into_iter()
        .chain(
            self.numbers
                .comparison
                .as_ref()
                .map(crate::reports::comparison::csv),
        )
        .chain(self.numbers.benchmark.as_ref().map(super::benchmark::csv))
        .collect()
    }

    fn story(&self) -> Narrative {
        let pairs = self
            .numbers
            .comparison
            .as_ref()
            .map(relabel::relabels)
            .unwrap_or_default();
        // A probable relabelling is read as one topic in the group comparison too, so
        // neither of its topics leads or sets an action on its own.
        let merged;
        let r: &TagDrivers = if pairs.is_empty() {
            &self.numbers
        } else {
            merged = relabel::merged(&self.numbers, &relabel::tag_pairs(&pairs));
            &merged
        };
        let mut findings = findings::findings(r, self.min_pp);
        let mut recommendations = findings::recommendations(r, &findings);
        let mut analysis = vec![
            findings::stake(&self.numbers),
            findings::at_risk_note(&self.numbers),
        ];
        if let Some(c) = &self.numbers.comparison {
            let rest = relabel::without(c, &pairs);
            // The change since the comparison period leads page 1 unless the data
            // covers it only in part (`place`); "nothing else changed" is no headline
            // next to a relabelling, which leads.
            let quiet = crate::reports::comparison::headline(&rest)
                .is_some_and(|f| f.keys.get("direction") == Some(&"none"));
            if pairs.is_empty() || !quiet {
                crate::reports::comparison::place(&mut findings, &rest);
            }
            if let Some(f) = relabel::finding(&pairs, &c.period) {
                findings.insert(0, f);
                let since = c.window.map(|w| w.start.format("%Y-%m-%d").to_string());
                recommendations.extend(relabel::recommendation(
                    &pairs,
                    since.as_deref().unwrap_or(&c.period),
                ));
            }
            analysis.extend(relabel::section_record(&pairs, &c.period));
            analysis.extend(crate::reports::comparison::section(&rest));
        }
        findings::pair_actions(
            &mut findings,
            &mut recommendations,
            crate::render::narrative::BRIEF_ITEMS,
        );
        Narrative {
            findings,
            recommendations,
            analysis,
        }
    }

    fn charts(&self, language: &Language) -> Vec<ChartSpec> {
        let mut out = charts::charts(&self.numbers, self.min_pp, &language.strings);
        out.extend(
            self.numbers
                .trend
                .as_ref()
                .and_then(|t| charts::trend_chart(t, language)),
        );
        out
    }

    fn layout(&self, language: &Language) -> Value {
        let mut v = layout(self, language);
        crate::reports::note_cut_texts(&mut v, language);
        if let Some(b) = &self.numbers.benchmark {
            v["benchmark"] = super::benchmark::layout(b, language);
        }
        v
    }

    fn rows_read(&self) -> &[(&'static str, u64)] {
        &self.numbers.rows_read
    }

    fn size(&self) -> (&'static str, usize) {
        (
            "conversations_in_window",
            self.numbers.conversations_in_window,
        )
    }
}

/// The layout's data: scope, group comparison, the top-tag table, each group's
/// topics and the data-quality notes, formatted for one language.
fn layout(run: &Run, lang: &Language) -> Value {
    let r = &run.numbers;
    let s = &lang.strings;
    let f = &lang.format;
    let count = |n: usize| f.count(n as f64);
    let [risk, expansion] = [&r.groups[0], &r.groups[1]];
    let in_groups = r.groups.iter().map(|g| g.conversations).sum::<usize>();
    let mut scope = vec![
        [
            s.get("scope.window"),
            r.window_row(
                crate::reports::period_label(&r.window.period(), Some(lang)),
                s,
            ),
        ],
        [
            s.get("scope.conversations_in_window"),
            count(r.conversations_in_window),
        ],
        [s.get("scope.unmapped"), count(r.unmapped_conversations)],
        [s.get("scope.in_groups"), count(in_groups)],
        [s.get("scope.in_both"), count(r.in_both_groups.len())],
        [
            s.get("scope.min_pp"),
            f.points(run.min_pp / 100.0).to_string(),
        ],
    ];
    // Another edition's conversations, not a data problem: told apart from the
    // unmapped ones, after them.
    if let Some(n) = r.outside_scope_conversations {
        scope.insert(3, [s.get("scope.outside_edition"), count(n)]);
    }
    // The difference of the printed values: `(scale, decimals)` is how a value prints.
    let diff = |a: Option<f64>,
                b: Option<f64>,
                (scale, decimals): (f64, i32),
                fmt: &dyn Fn(f64) -> String| match (a, b) {
        (Some(a), Some(b)) => fmt(crate::stats::claims::printed_difference(
            a, b, scale, decimals,
        )),
        _ => "—".to_owned(),
    };
    let base = &r.baseline;
    // Each measure for the two groups, their difference, and all paying customers.
    let row = |key: &str,
               a: Option<f64>,
               b: Option<f64>,
               all: Option<f64>,
               printing: (f64, i32),
               val: &dyn Fn(f64) -> String,
               gap: &dyn Fn(f64) -> String| {
        vec![
            s.get(key),
            a.map_or_else(|| "—".to_owned(), val),
            b.map_or_else(|| "—".to_owned(), val),
            diff(a, b, printing, gap),
            all.map_or_else(|| "—".to_owned(), val),
        ]
    };
    let n = |v: usize| Some(v as f64);
    let cnt = |v: f64| f.count(v);
    let signed = |v: f64, s: String| if v > 0.0 { format!("+{s}") } else { s };
    let groups = vec![
        row(
            "groups.companies",
            n(risk.companies),
            n(expansion.companies),
            n(base.companies),
            (1.0, 0),
            &cnt,
            &|v| signed(v, f.count(v)),
        ),
        row(
            "groups.conversations",
            n(risk.conversations),
            n(expansion.conversations),
            n(base.conversations),
            (1.0, 0),
            &cnt,
            &|v| signed(v, f.count(v)),
        ),
        row(
            "groups.per_company",
            risk.conversations_per_company,
            expansion.conversations_per_company,
            base.conversations_per_company,
            (1.0, 1),
            &|v| f.number(v, 1),
            &|v| signed(v, f.number(v, 1)),
        ),
        row(
            "groups.avg_rating",
            risk.avg_rating,
            expansion.avg_rating,
            base.avg_rating,
            (1.0, 2),
            &|v| f.number(v, 2),
            &|v| signed(v, f.number(v, 2)),
        ),
        row(
            "groups.share_rated_le2",
            risk.share_rated_le2,
            expansion.share_rated_le2,
            base.share_rated_le2,
            (100.0, 1),
            &|v| f.percent(v),
            &|v| signed(v, f.points(v)),
        ),
        row(
            "groups.median_resp",
            risk.median_resp,
            expansion.median_resp,
            base.median_resp,
            (1.0, 1),
            &|v| f.minutes(v),
            &|v| signed(v, f.minutes(v)),
        ),
        row(
            "groups.reopen_rate",
            risk.reopen_rate,
            expansion.reopen_rate,
            base.reopen_rate,
            (100.0, 1),
            &|v| f.percent(v),
            &|v| signed(v, f.points(v)),
        ),
    ];
    // With comparison numbers: each group's share of a topic then, under its value.
    let compared = run
        .numbers
        .comparison
        .as_ref()
        .filter(|c| c.empty_reason.is_none() && run.numbers.previous.is_some());
    // Topics of a probable relabelling: read together, neither marked as a move.
    let pairs = compared.map(relabel::relabels).unwrap_or_default();
    let delta = |value: String, group: &str, tag: &str, now: f64| -> String {
        let (Some(c), Some(p)) = (compared, run.numbers.previous.as_ref()) else {
            return value;
        };
        let g = usize::from(group == metrics::EXPANSION);
        let n = p.groups[g].conversations;
        if n == 0 {
            return value;
        }
        let then = comparison::tag_count(p, group, tag) as f64 / n as f64;
        let arrow = c
            .changes
            .iter()
            .find(|x| {
                x.metric == "topic_share" && x.slice == group && x.item.as_deref() == Some(tag)
            })
            .filter(|x| relabel::partner(&pairs, x).is_none())
            .map_or("", |x| match x.direction {
                Direction::Rise => " ▲",
                Direction::Fall => " ▼",
                _ => "",
            });
        format!(
            "{value}\n{}{arrow}",
            signed_change(f, Unit::Rate, now, then)
        )
    };
    let changes = compared.map(|c| {
        let show = |unit: Unit, v: Option<f64>| crate::reports::comparison::show(f, unit, v);
        let rows: Vec<Vec<String>> = c
            .changes
            .iter()
            .map(|x| {
                vec![
                    s.get(&format!("groups.{}", x.slice)),
                    match &x.item {
                        Some(tag) => lang.strings.topic(tag),
                        None => s.get(&format!("change.metric_{}", x.metric)),
                    },
                    show(x.unit, x.previous),
                    show(x.unit, x.current),
                    match (x.current, x.previous) {
                        (Some(a), Some(b)) => signed_change(f, x.unit, a, b),
                        _ => "—".to_owned(),
                    },
                    match relabel::partner(&pairs, x) {
                        Some(other) => lang.fill(
                            "change.reading_offset",
                            &serde_json::json!({ "topic": lang.strings.topic(other) }),
                        ),
                        None => s.get(&format!(
                            "change.reading_{}",
                            crate::reports::comparison::reading(x.direction)
                        )),
                    },
                ]
            })
            .collect();
        let mut t =
            crate::reports::comparison::table(s, "change.group", rows, s.get("change.table_intro"));
        t["cells_note"] = json!(lang.fill(
            "change.cells_note",
            &json!({ "period": c.period.replace('_', " – ") })
        ));
        t
    });
    let verdicts = findings::topic_verdicts(r);
    let top: Vec<Vec<String>> = r
        .top
        .iter()
        .zip(&verdicts)
        .map(|(t, verdict)| {
            // The printed gap is the difference of the printed shares.
            let gap = crate::stats::claims::printed_difference(
                t.at_risk_share,
                t.expansion_share,
                100.0,
                1,
            );
            vec![
                lang.strings.topic(&t.tag),
                delta(
                    f.percent(t.at_risk_share),
                    metrics::AT_RISK,
                    &t.tag,
                    t.at_risk_share,
                ),
                delta(
                    f.percent(t.expansion_share),
                    metrics::EXPANSION,
                    &t.tag,
                    t.expansion_share,
                ),
                signed(gap, f.points(gap)),
                s.get(if verdict.holds() && t.difference_pp.abs() >= run.min_pp {
                    "topics.holds"
                } else {
                    "topics.does_not_hold"
                }),
                f.percent(t.all_share),
            ]
        })
        .collect();
    let notable: Vec<bool> = r
        .top
        .iter()
        .zip(&verdicts)
        .map(|(t, v)| t.difference_pp.abs() < run.min_pp || !v.holds())
        .collect();
    let per_group = |group: &str| -> Vec<Vec<String>> {
        let mut rows: Vec<&metrics::TagShare> =
            r.shares.iter().filter(|x| x.group == group).collect();
        rows.sort_by(|a, b| {
            b.conversations
                .cmp(&a.conversations)
                .then_with(|| a.tag.cmp(&b.tag))
        });
        rows.iter()
            .take(APPENDIX_TAGS)
            .map(|x| {
                vec![
                    lang.strings.topic(&x.tag),
                    count(x.conversations),
                    f.percent(x.share),
                ]
            })
            .collect()
    };
    // The at-risk group's topics by their share of 1–2 ratings; the gap is that of the
    // printed shares.
    let low: Vec<&low_ratings::LowRatingTopic> = r
        .low_ratings
        .iter()
        .filter(|x| x.group == metrics::AT_RISK)
        .take(APPENDIX_TAGS)
        .collect();
    let low_rows: Vec<Vec<String>> = low
        .iter()
        .map(|x| {
            vec![
                lang.strings.topic(&x.tag),
                count(x.rated),
                count(x.rated_le2),
                f.percent(x.share_rated_le2),
                x.rest_share_rated_le2
                    .map_or_else(|| "—".to_owned(), |v| f.percent(v)),
                diff(
                    Some(x.share_rated_le2),
                    x.rest_share_rated_le2,
                    (100.0, 1),
                    &|v| signed(v, f.points(v)),
                ),
                s.get(if x.verdict.holds() {
                    "topics.holds"
                } else {
                    "topics.does_not_hold"
                }),
            ]
        })
        .collect();
    let low_muted: Vec<bool> = low.iter().map(|x| !x.verdict.holds()).collect();
    let both: Vec<[String; 2]> = r
        .in_both_groups
        .iter()
        .map(|(id, name)| [s.data_text(name), s.data_text(id)])
        .collect();
    let bad = super::bad_timestamp_rows(&r.bad_timestamps, f);
    json!({
        "scope": { "rows": scope, "definitions": s.list("scope.definitions") },
        "groups": groups,
        "changes": changes,
        "top": { "rows": top, "muted": notable },
        "low_ratings": { "rows": low_rows, "muted": low_muted },
        "tags": { "at_risk": per_group(metrics::AT_RISK), "expansion": per_group(metrics::EXPANSION) },
        "quality": {
            "both": both,
            "bad_timestamps": bad,
            "limitations": s.list("quality.limitations"),
            "no_rating": risk.avg_rating.is_none() || expansion.avg_rating.is_none(),
        },
    })
}
