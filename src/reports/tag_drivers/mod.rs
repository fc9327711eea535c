//! Report `tag-drivers` (`../shared/specs/report-tag-drivers.md`): what at-risk
//! companies talk to support about, compared with companies targeted for expansion.

pub mod charts;
pub mod comparison;
pub mod findings;
pub mod load;
pub mod metrics;

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use super::{
    parse_option, Computed, CsvFile, OptionSpec, Options, Plan, Report, ReportError, Request,
    COMPARE_OPTION, WINDOW_OPTION,
};
use crate::intercom::window::Compare;
use crate::render::charts::ChartSpec;
use crate::render::narrative::Narrative;
use crate::render::templates::Language;
use crate::reports::comparison::{signed_change, Comparison, Direction, Unit};
use crate::source::{Database, RowsRead, TableNeed};
use metrics::TagDrivers;

pub const NAME: &str = "tag-drivers";

/// Tags per group listed in the appendix (the CSV has them all).
const APPENDIX_TAGS: usize = 15;

pub struct TagDriversReport;

const OPTIONS: &[OptionSpec] = &[
    WINDOW_OPTION,
    OptionSpec {
        name: "min_pp",
        about: "share difference, in percentage points, that makes a topic over-represented",
        default: "3",
    },
    COMPARE_OPTION,
];

/// Option `compare`.
fn compare_option(options: &Options) -> Result<Compare, ReportError> {
    parse_option(NAME, OPTIONS, options, "compare", str::parse)
}

/// Option `min_pp`: percentage points between 0 and 100.
fn min_pp(options: &Options) -> Result<f64, ReportError> {
    parse_option(NAME, OPTIONS, options, "min_pp", |s| {
        match s.parse::<f64>() {
            Ok(v) if (0.0..=100.0).contains(&v) => Ok(v),
            _ => Err(format!(
                "`{s}`: expected percentage points between 0 and 100"
            )),
        }
    })
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

    fn check_options(&self, options: &Options) -> Vec<(String, String)> {
        let mut problems = super::option_problems(min_pp(options));
        problems.extend(super::option_problems(compare_option(options)));
        problems
    }

    fn needs(&self, _db: &Database, _req: &Request<'_>) -> Result<Vec<TableNeed>, ReportError> {
        Ok(load::NEEDS.to_vec())
    }

    fn plan(
        &self,
        db: &Database,
        req: &Request<'_>,
        reference: DateTime<Utc>,
    ) -> Result<Plan, ReportError> {
        let min_pp = min_pp(req.options)?;
        let compare = compare_option(req.options)?;
        let (window, after) = super::conversation_window(db, req, reference)?;
        let mut plan = Plan {
            period: window.period(),
            window: Some(window),
            parameters: vec![
                ("window".into(), req.window.to_string()),
                ("min_pp".into(), min_pp.to_string()),
                ("compare".into(), compare.to_string()),
                ("source_timezone".into(), req.source_tz.name().to_owned()),
            ],
            manifest_parameters: json!({
                "window": req.window.to_string(),
                "min_pp": min_pp,
                "compare": compare,
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

    fn vocabulary(&self, db: &Database, _req: &Request<'_>) -> Result<Vec<String>, ReportError> {
        Ok(load::topics(db)?)
    }

    fn compute(
        &self,
        db: &Database,
        req: &Request<'_>,
        plan: &Plan,
        timings: &mut Vec<(&'static str, Duration)>,
    ) -> Result<Box<dyn Computed>, ReportError> {
        let window = plan.window.expect("tag-drivers plans a window");
        let t = Instant::now();
        let loaded = load::load(db, req.source_tz, window, req.mapping)?;
        timings.push(("load", t.elapsed()));
        let t = Instant::now();
        let numbers = metrics::compute(&loaded, window)?;
        timings.push(("metrics", t.elapsed()));
        if numbers.bad_timestamps.total() > 0 {
            tracing::warn!(
                count = numbers.bad_timestamps.total(),
                "unparseable timestamps (counted in the data-quality appendix)"
            );
        }
        // The comparison window and the trend's months from one more load over the
        // months before the window: each is the same metrics on its own window.
        let compare = compare_option(req.options)?;
        let before = window.comparison(&req.window, compare);
        let t = Instant::now();
        let span = window.history_span(crate::reports::trend::MONTHS, before.as_ref());
        let history = load::load(db, req.source_tz, span, req.mapping)?;
        let (previous, compared) = match before.map(|b| (b, metrics::compute(&history, b))) {
            None => (None, None),
            Some((_, Ok(p))) => {
                let c = comparison::compare(&numbers, &p, compare);
                (Some(p), Some(c))
            }
            Some((b, Err(e))) => (
                None,
                Some(crate::reports::comparison::empty(
                    compare.to_string(),
                    Some(b),
                    b.period(),
                    e.to_string(),
                )),
            ),
        };
        let trend = comparison::trend(&history, &numbers);
        timings.push(("history", t.elapsed()));
        Ok(Box::new(Run {
            numbers,
            min_pp: min_pp(req.options)?,
            rows_read: loaded.rows_read,
            comparison: compared,
            previous,
            trend,
        }))
    }
}

/// The numbers of a run and the threshold its findings use.
pub struct Run {
    pub numbers: TagDrivers,
    pub min_pp: f64,
    pub rows_read: RowsRead,
    /// What changed since the comparison period (`compare`).
    pub comparison: Option<Comparison>,
    /// The numbers of the comparison window (the tables print each change).
    pub previous: Option<TagDrivers>,
    /// The topics' shares month by month.
    pub trend: Option<comparison::Trend>,
}

impl Computed for Run {
    fn summary(&self) -> Value {
        let mut v = serde_json::to_value(&self.numbers).unwrap_or(Value::Null);
        v["min_pp"] = json!(self.min_pp);
        if let Some(c) = &self.comparison {
            v["comparison"] = json!(c);
        }
        if let Some(t) = &self.trend {
            v["trend"] = json!(t);
        }
        v
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
        ]
        .into_iter()
        .chain(
            self.comparison
                .as_ref()
                .map(crate::reports::comparison::csv),
        )
        .collect()
    }

    fn story(&self) -> Narrative {
        let mut findings = findings::findings(&self.numbers, self.min_pp);
        let recommendations = findings::recommendations(&self.numbers, &findings);
        let mut analysis = vec![findings::stake(&self.numbers)];
        if let Some(c) = &self.comparison {
            // The change since the comparison period leads page 1, whatever it is.
            if let Some(lead) = crate::reports::comparison::headline(c) {
                findings.insert(0, lead);
            }
            analysis.extend(crate::reports::comparison::section(c));
        }
        Narrative {
            findings,
            recommendations,
            analysis,
        }
    }

    fn charts(&self, language: &Language) -> Vec<ChartSpec> {
        let mut out = charts::charts(&self.numbers, self.min_pp, &language.strings);
        out.extend(
            self.trend
                .as_ref()
                .and_then(|t| charts::trend_chart(t, &language.strings)),
        );
        out
    }

    fn layout(&self, language: &Language) -> Value {
        let mut v = layout(self, language);
        crate::reports::note_cut_texts(&mut v, language);
        v
    }

    fn rows_read(&self) -> &[(&'static str, u64)] {
        &self.rows_read
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
    let scope = vec![
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
    let diff = |a: Option<f64>, b: Option<f64>, fmt: &dyn Fn(f64) -> String| match (a, b) {
        (Some(a), Some(b)) => fmt(a - b),
        _ => "—".to_owned(),
    };
    let base = &r.baseline;
    // Each measure for the two groups, their difference, and all paying customers.
    let row = |key: &str,
               a: Option<f64>,
               b: Option<f64>,
               all: Option<f64>,
               val: &dyn Fn(f64) -> String,
               gap: &dyn Fn(f64) -> String| {
        vec![
            s.get(key),
            a.map_or_else(|| "—".to_owned(), val),
            b.map_or_else(|| "—".to_owned(), val),
            diff(a, b, gap),
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
            &cnt,
            &|v| signed(v, f.count(v)),
        ),
        row(
            "groups.conversations",
            n(risk.conversations),
            n(expansion.conversations),
            n(base.conversations),
            &cnt,
            &|v| signed(v, f.count(v)),
        ),
        row(
            "groups.per_company",
            risk.conversations_per_company,
            expansion.conversations_per_company,
            base.conversations_per_company,
            &|v| f.number(v, 1),
            &|v| signed(v, f.number(v, 1)),
        ),
        row(
            "groups.avg_rating",
            risk.avg_rating,
            expansion.avg_rating,
            base.avg_rating,
            &|v| f.number(v, 2),
            &|v| signed(v, f.number(v, 2)),
        ),
        row(
            "groups.share_rated_le2",
            risk.share_rated_le2,
            expansion.share_rated_le2,
            base.share_rated_le2,
            &|v| f.percent(v),
            &|v| signed(v, f.points(v)),
        ),
        row(
            "groups.median_resp",
            risk.median_resp,
            expansion.median_resp,
            base.median_resp,
            &|v| f.minutes(v),
            &|v| signed(v, f.minutes(v)),
        ),
        row(
            "groups.reopen_rate",
            risk.reopen_rate,
            expansion.reopen_rate,
            base.reopen_rate,
            &|v| f.percent(v),
            &|v| signed(v, f.points(v)),
        ),
    ];
    // With comparison numbers: each group's share of a topic then, under its value.
    let compared = run
        .comparison
        .as_ref()
        .filter(|c| c.empty_reason.is_none() && run.previous.is_some());
    let delta = |value: String, group: &str, tag: &str, now: f64| -> String {
        let (Some(c), Some(p)) = (compared, run.previous.as_ref()) else {
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
                    s.get(&format!(
                        "change.reading_{}",
                        crate::reports::comparison::reading(x.direction)
                    )),
                ]
            })
            .collect();
        let mut t =
            crate::reports::comparison::table(s, "change.group", rows, s.get("change.table_intro"));
        t["cells_note"] = json!(s
            .get("change.cells_note")
            .replace("{period}", &c.period.replace('_', " – ")));
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
        "tags": { "at_risk": per_group(metrics::AT_RISK), "expansion": per_group(metrics::EXPANSION) },
        "quality": {
            "both": both,
            "bad_timestamps": bad,
            "limitations": s.list("quality.limitations"),
            "no_rating": risk.avg_rating.is_none() || expansion.avg_rating.is_none(),
        },
    })
}
