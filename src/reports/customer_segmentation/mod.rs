//! Report `customer-segmentation` (`../shared/specs/report-customer-segmentation.md`):
//! how portfolio size, plan, engagement, support load and activity combine into
//! customer segments, where the revenue is and where it is at risk. A snapshot of the
//! `users` and `events` tables: its period is the date of the latest event.
//!
//! Why this file is long (about 780 lines): the `Report` impl, its CSV files and the
//! layout's tables share one `Run`; the layout formats every table for one language,
//! the activity section's (events per type, size → ARR, cancellations per segment)
//! included.

pub mod activity;
pub mod charts;
pub mod comparison;
pub mod findings;
pub mod load;
pub mod metrics;

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use super::{
    BadOptions, Computed, Configured, CsvFile, Earlier, MetricsError, OptionSpec, Options, Plan,
    Report, ReportError, Request,
};
use crate::render::charts::ChartSpec;
use crate::render::narrative::Narrative;
use crate::render::templates::Language;
use crate::source::{BadTimestamps, Database, RowsRead, TableNeed};
use crate::stats::claims::{printed, printed_difference, printed_ratio_change};
use metrics::{DimensionRow, Impact, Path, Segmentation};

pub const NAME: &str = "customer-segmentation";

/// Paths listed per table in the layout (segments.csv has them all).
const PATHS_LISTED: usize = 10;

pub struct CustomerSegmentationReport;

impl Report for CustomerSegmentationReport {
    fn name(&self) -> &'static str {
        NAME
    }

    fn about(&self) -> &'static str {
        "Customer profiles and journeys from users and events: segments by portfolio × plan, engagement, support load and activity; revenue and revenue at risk."
    }

    fn options(&self) -> &'static [OptionSpec] {
        // A snapshot as of the latest event: no window; event times without an offset
        // are read in the run's source timezone.
        &[]
    }

    fn configure(&self, _options: &Options) -> Result<Box<dyn Configured>, BadOptions> {
        Ok(Box::new(CustomerSegmentationReport))
    }
}

/// It has no settings: the report is what computes.
impl Configured for CustomerSegmentationReport {
    /// Its tables keep no history: the previous snapshot is the job's own output.
    fn compares_with_earlier_output(&self) -> bool {
        true
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
        let latest = load::latest_event(db, req.source_tz, reference)?;
        let as_of = latest.at.unwrap_or(reference);
        let mut plan = Plan {
            period: format!("asof-{}", as_of.format("%Y-%m-%d")),
            window: None,
            coverage: None,
            parameters: vec![("source_timezone".into(), req.source_tz.name().to_owned())],
            manifest_parameters: json!({ "source_timezone": req.source_tz.name() })
                .as_object()
                .cloned()
                .unwrap_or_default(),
        };
        plan.note_after_reference("events.event_time", reference, latest.after);
        Ok(plan)
    }

    fn compute(
        &self,
        db: &Database,
        req: &Request<'_>,
        plan: &Plan,
        earlier: &Earlier,
        timings: &mut Vec<(&'static str, Duration)>,
    ) -> Result<Box<dyn Computed>, ReportError> {
        let t = Instant::now();
        let (users, events, bad) = load::load(db, req.source_tz)?;
        timings.push(("load", t.elapsed()));
        if users.is_empty() {
            return Err(MetricsError::NoRows {
                table: load::USERS,
                report: NAME,
            }
            .into());
        }
        let t = Instant::now();
        let numbers = metrics::compute(&users, &events);
        let activity = activity::activity(
            &metrics::features(&users, &events),
            &events,
            numbers.paths.len(),
        );
        timings.push(("metrics", t.elapsed()));
        if bad.total() > 0 {
            tracing::warn!(
                count = bad.total(),
                "unparseable event times (counted in the data-quality appendix)"
            );
        }
        let compared = comparison::compare(&numbers, &plan.period, earlier);
        if let (Some(why), false) = (&compared.empty_reason, earlier == &Earlier::NoOutputs) {
            tracing::info!("no comparison: {why}");
        }
        Ok(Box::new(Run {
            numbers,
            activity,
            comparison: compared,
            bad_timestamps: bad,
            rows_read: vec![
                (load::USERS, users.len() as u64),
                (load::EVENTS, events.len() as u64),
            ],
        }))
    }
}

pub struct Run {
    pub numbers: Segmentation,
    /// Events per type, tickets and days since the last event by status, cancellations.
    pub activity: activity::Activity,
    /// The previous snapshot set against this one, or why there is none.
    pub comparison: crate::reports::comparison::Comparison,
    pub bad_timestamps: BadTimestamps,
    pub rows_read: RowsRead,
}

impl Computed for Run {
    fn comparison(&self) -> Option<&crate::reports::comparison::Comparison> {
        Some(&self.comparison)
    }

    fn summary(&self) -> Value {
        let mut v = serde_json::to_value(&self.numbers).unwrap_or(Value::Null);
        v["bad_timestamps"] = json!(self.bad_timestamps);
        v["comparison"] = json!(self.comparison);
        v["activity"] = json!(self.activity);
        v
    }

    fn csv_files(&self) -> Vec<CsvFile> {
        let r = &self.numbers;
        vec![
            CsvFile {
                name: "segments.csv",
                header: vec![
                    "portfolio_group",
                    "plan_type",
                    "engagement",
                    "status",
                    "users",
                    "share",
                    "total_arr",
                    "avg_arr",
                ],
                rows: r
                    .paths
                    .iter()
                    .map(|p| {
                        vec![
                            p.portfolio_group.to_owned(),
                            p.plan_type.clone(),
                            p.engagement.to_owned(),
                            p.status.to_owned(),
                            p.users.to_string(),
                            super::cell(Some(p.share)),
                            super::cell(Some(p.total_arr)),
                            super::cell(Some(p.avg_arr)),
                        ]
                    })
                    .collect(),
            },
            CsvFile {
                name: "dimension_tables.csv",
                header: vec![
                    "dimension",
                    "value",
                    "users",
                    "share",
                    "total_arr",
                    "avg_arr",
                    "active_rate",
                    "avg_nps",
                    "avg_tickets",
                ],
                rows: r
                    .dimensions
                    .iter()
                    .map(|d| {
                        vec![
                            d.dimension.to_owned(),
                            d.value.clone(),
                            d.users.to_string(),
                            super::cell(Some(d.share)),
                            super::cell(Some(d.total_arr)),
                            super::cell(Some(d.avg_arr)),
                            super::cell(Some(d.active_rate)),
                            super::cell(d.avg_nps),
                            super::cell(Some(d.avg_tickets)),
                        ]
                    })
                    .collect(),
            },
            CsvFile {
                name: "event_types.csv",
                header: vec![
                    "event_type",
                    "events",
                    "users",
                    "events_active",
                    "events_inactive",
                ],
                rows: self
                    .activity
                    .event_types
                    .iter()
                    .map(|e| {
                        vec![
                            e.event_type.clone(),
                            e.events.to_string(),
                            e.users.to_string(),
                            e.events_active.to_string(),
                            e.events_inactive.to_string(),
                        ]
                    })
                    .collect(),
            },
            CsvFile {
                name: "size_arr.csv",
                header: vec![
                    "portfolio_group",
                    "arr_group",
                    "users",
                    "share_of_group",
                    "total_arr",
                ],
                rows: self
                    .activity
                    .size_arr
                    .iter()
                    .map(|c| {
                        vec![
                            c.portfolio_group.to_owned(),
                            c.arr_group.to_owned(),
                            c.users.to_string(),
                            super::cell(Some(c.share_of_group)),
                            super::cell(Some(c.total_arr)),
                        ]
                    })
                    .collect(),
            },
            CsvFile {
                name: "cancellations_by_segment.csv",
                header: vec![
                    "portfolio_group",
                    "plan_type",
                    "users",
                    "cancelled_users",
                    "cancelled_share",
                    "events",
                    "verdict",
                ],
                rows: self
                    .activity
                    .cancelled
                    .by_segment
                    .iter()
                    .map(|c| {
                        vec![
                            c.portfolio_group.to_owned(),
                            c.plan_type.clone(),
                            c.users.to_string(),
                            c.cancelled_users.to_string(),
                            super::cell(Some(c.rate)),
                            c.events.to_string(),
                            c.verdict.key().to_owned(),
                        ]
                    })
                    .collect(),
            },
            CsvFile {
                name: "activity_by_status.csv",
                header: vec!["measure", "status", "users", "total", "mean", "median"],
                rows: activity_rows(&self.activity),
            },
        ]
        .into_iter()
        .chain(
            self.comparison
                .empty_reason
                .is_none()
                .then(|| crate::reports::comparison::csv(&self.comparison)),
        )
        .collect()
    }

    fn story(&self) -> Narrative {
        let mut findings = findings::findings(&self.numbers);
        let recommendations = findings::recommendations(&self.numbers, &findings);
        // The change since the previous snapshot leads page 1, whatever it is.
        if let Some(lead) = crate::reports::comparison::headline(&self.comparison) {
            findings.insert(0, lead);
        }
        let recommendations = findings::follow_headlines(&findings, recommendations);
        findings.extend(activity::findings(
            &self.activity,
            self.numbers
                .as_of
                .map(|t| t.format("%Y-%m-%d").to_string())
                .as_deref(),
        ));
        let mut analysis = vec![findings::stake(&self.numbers)];
        analysis.extend(crate::reports::comparison::section(&self.comparison));
        Narrative {
            findings,
            recommendations,
            analysis,
        }
    }

    fn charts(&self, language: &Language) -> Vec<ChartSpec> {
        charts::charts(&self.numbers, language)
    }

    fn layout(&self, language: &Language) -> Value {
        let mut v = layout(self, language);
        crate::reports::note_cut_texts(&mut v, language);
        v
    }

    fn size(&self) -> (&'static str, usize) {
        ("users", self.numbers.users)
    }

    fn rows_read(&self) -> &[(&'static str, u64)] {
        &self.rows_read
    }
}

/// activity_by_status.csv: each measure of active and of inactive users (the
/// cancellations: the cancelling users by status, their share of the status's users).
fn activity_rows(a: &activity::Activity) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    for (measure, s) in [
        ("support_tickets_last_90d", &a.tickets),
        ("days_since_last_event", &a.days_since_last_event),
    ] {
        for (status, users, total, mean, median) in [
            (
                "active",
                s.active_users,
                s.active_total,
                s.active_mean,
                s.active_median,
            ),
            (
                "inactive",
                s.inactive_users,
                s.inactive_total,
                s.inactive_mean,
                s.inactive_median,
            ),
        ] {
            rows.push(vec![
                measure.to_owned(),
                status.to_owned(),
                users.to_string(),
                super::cell(Some(total)),
                super::cell(mean),
                super::cell(median),
            ]);
        }
    }
    let c = &a.cancelled;
    let active_users = c.others + c.users - c.others_inactive - c.inactive;
    for (status, k, n) in [
        ("active", c.users - c.inactive, active_users),
        ("inactive", c.inactive, c.inactive + c.others_inactive),
    ] {
        rows.push(vec![
            activity::CANCELLED.to_owned(),
            status.to_owned(),
            n.to_string(),
            k.to_string(),
            super::cell((n > 0).then(|| k as f64 / n as f64)),
            String::new(),
        ]);
    }
    rows
}

/// The layout's data, every number formatted for one language.
fn layout(run: &Run, lang: &Language) -> Value {
    let r = &run.numbers;
    let s = &lang.strings;
    let f = &lang.format;
    let count = |n: usize| f.count(n as f64);
    let money = |v: f64| f.money(v);
    // A printed difference is the difference of the printed values, in the
    // language's units (zh prints 3,695 where en prints $3.7k).
    let money_gap = |a: f64, b: f64| f.money_gap(a, b);
    let opt = |v: Option<f64>, d: usize| f.opt(v, |f, v| f.number(v, d));
    let label = |dim: &str, v: &str| s.label(dim, v);
    let scope = vec![
        [
            s.get("scope.as_of"),
            r.as_of
                .map_or_else(|| "—".to_owned(), |t| t.format("%Y-%m-%d").to_string()),
        ],
        [s.get("scope.users"), count(r.users)],
        [
            s.get("scope.users_in_portfolio"),
            count(r.users_in_portfolio_groups),
        ],
        [
            s.get("scope.users_without_portfolio"),
            count(r.users_without_portfolio),
        ],
        [
            s.get("scope.users_without_events"),
            count(r.users_without_events),
        ],
        [s.get("scope.events"), count(r.events)],
        [s.get("scope.event_types"), count(r.event_types)],
        [s.get("scope.total_arr"), money(r.total_arr)],
        [
            s.get("scope.active_rate"),
            f.opt(r.active_rate, |f, v| f.percent(v)),
        ],
        [s.get("scope.arr_at_risk"), money(r.arr_at_risk)],
        [s.get("scope.journeys"), count(run.activity.journeys)],
    ];
    let event_types: Vec<Vec<String>> = run
        .activity
        .event_types
        .iter()
        .map(|e| {
            vec![
                label("event_type", &e.event_type),
                count(e.events),
                count(e.users),
                count(e.events_active),
                count(e.events_inactive),
            ]
        })
        .collect();
    let dim_row = |name: String, d: &DimensionRow| {
        vec![
            name,
            count(d.users),
            f.percent(d.share),
            money(d.total_arr),
            money(d.avg_arr),
            f.percent(d.active_rate),
            opt(d.avg_nps, 1),
            f.number(d.avg_tickets, 2),
        ]
    };
    // The baseline row: all users, under every table.
    // (Named by its column, not looked up as a slice label: "all" is no dimension.)
    let all_row = dim_row(s.get("columns.all_users"), &r.overall);
    let portfolio_row = dim_row(s.get("columns.portfolio_users"), &r.portfolio_overall);
    let dimensions: Vec<Value> = [
        "portfolio_group",
        "plan_type",
        "engagement",
        "ticket_range",
        "diversity_group",
        "arr_group",
        "training",
    ]
    .iter()
    .map(|dim| {
        json!({
            "title": s.get(&format!("dimensions.{dim}")),
            "rows": r.dimensions.iter().filter(|d| d.dimension == *dim).map(|d| dim_row(label(d.dimension, &d.value), d)).collect::<Vec<_>>(),
            "baseline": if *dim == "portfolio_group" { portfolio_row.clone() } else { all_row.clone() },
        })
    })
    .collect();
    let o = &r.overall;
    let mut cross: Vec<Vec<String>> = r
        .portfolio_plan
        .iter()
        .map(|c| {
            vec![
                label("portfolio_group", c.portfolio_group),
                label("plan_type", &c.plan_type),
                count(c.users),
                f.percent(c.share),
                money(c.total_arr),
                f.percent(c.arr_share),
                money(c.avg_arr),
                f.percent(c.active_rate),
                opt(c.avg_nps, 1),
                f.number(c.avg_tickets, 2),
            ]
        })
        .collect();
    cross.push(vec![
        s.get("columns.all_users"),
        String::new(),
        count(o.users),
        f.percent(1.0),
        money(o.total_arr),
        f.percent(1.0),
        money(o.avg_arr),
        f.percent(o.active_rate),
        opt(o.avg_nps, 1),
        f.number(o.avg_tickets, 2),
    ]);
    let cross_note = lang.fill(
        "notes.cross",
        &json!({
            "users": count(r.users),
            "arr": money(r.total_arr),
            "out": count(r.users_without_portfolio),
            "out_arr": money(r.arr_without_portfolio),
        }),
    );
    let whole = |v: f64| printed(v, 1.0, 0);
    let impact_rows = |i: &Impact| {
        let pair = |a: Option<f64>,
                    b: Option<f64>,
                    fmt: &dyn Fn(f64) -> String,
                    gap: &dyn Fn(f64, f64) -> String| {
            vec![
                a.map_or_else(|| "—".to_owned(), fmt),
                b.map_or_else(|| "—".to_owned(), fmt),
                a.zip(b).map_or_else(|| "—".to_owned(), |(a, b)| gap(a, b)),
            ]
        };
        let dash = || "—".to_owned();
        let mut rows = vec![
            [
                vec![s.get("impact.users")],
                vec![count(i.with_users), count(i.without_users), dash()],
                vec![count(r.users)],
            ]
            .concat(),
            // Whole dollars: the lift below is their ratio, the same in every language.
            [
                vec![s.get("impact.avg_arr")],
                pair(
                    i.with_avg_arr,
                    i.without_avg_arr,
                    &|v| f.money_whole(v),
                    &|a, b| f.money_whole(whole(a) - whole(b)),
                ),
                vec![f.money_whole(o.avg_arr)],
            ]
            .concat(),
            [
                vec![s.get("impact.within_plan")],
                vec![String::new(), String::new()],
                vec![f.opt(i.within_plan_lift, |f, v| f.money(v)), String::new()],
            ]
            .concat(),
            [
                vec![s.get("impact.median_arr")],
                pair(i.with_median_arr, i.without_median_arr, &money, &money_gap),
                vec![f.opt(r.median_arr, |f, v| f.money(v))],
            ]
            .concat(),
            [
                vec![s.get("impact.active_rate")],
                pair(
                    i.with_active_rate,
                    i.without_active_rate,
                    &|v| f.percent(v),
                    &|a, b| f.points(printed_difference(a, b, 100.0, 1)),
                ),
                vec![f.percent(o.active_rate)],
            ]
            .concat(),
        ];
        rows.push(vec![
            s.get("impact.lift_pct"),
            String::new(),
            String::new(),
            // The lift a reader computes from the two averages printed above it.
            f.opt(
                i.with_avg_arr
                    .zip(i.without_avg_arr)
                    .and_then(|(a, b)| printed_ratio_change(whole(a), whole(b))),
                |f, v| f.percent(v),
            ),
            String::new(),
        ]);
        rows
    };
    let path_row = |p: &Path| {
        vec![
            format!(
                "{} → {} → {} → {}",
                label("portfolio_group", p.portfolio_group),
                label("plan_type", &p.plan_type),
                label("engagement", p.engagement),
                label("status", p.status)
            ),
            count(p.users),
            f.percent(p.share),
            money(p.total_arr),
            money(p.avg_arr),
        ]
    };
    let by_users: Vec<Vec<String>> = r.paths.iter().take(PATHS_LISTED).map(path_row).collect();
    let mut by_arr: Vec<&Path> = r.paths.iter().collect();
    by_arr.sort_by(|a, b| b.total_arr.total_cmp(&a.total_arr));
    let inactive: Vec<Vec<String>> = by_arr
        .iter()
        .filter(|p| p.status == "inactive")
        .take(PATHS_LISTED)
        .map(|p| path_row(p))
        .collect();
    let by_arr: Vec<Vec<String>> = by_arr
        .iter()
        .take(PATHS_LISTED)
        .map(|p| path_row(p))
        .collect();
    let bad = super::bad_timestamp_rows(&run.bad_timestamps, f);
    let plan_users = |plan: &str| -> usize {
        r.dimensions
            .iter()
            .filter(|d| d.dimension == "plan_type" && d.value == plan)
            .map(|d| d.users)
            .sum()
    };
    let quality = vec![
        [
            s.get("quality.without_portfolio"),
            count(r.users_without_portfolio),
        ],
        [
            s.get("quality.without_events"),
            count(r.users_without_events),
        ],
        [
            s.get("quality.unknown_users"),
            count(r.events_of_unknown_users),
        ],
        [s.get("quality.other_plan"), count(plan_users("other"))],
        [s.get("quality.unknown_plan"), count(plan_users("unknown"))],
    ];
    let size_arr: Vec<Vec<String>> = run
        .activity
        .size_arr
        .iter()
        .map(|c| {
            vec![
                label("portfolio_group", c.portfolio_group),
                label("arr_group", c.arr_group),
                count(c.users),
                f.percent(c.share_of_group),
                money(c.total_arr),
            ]
        })
        .collect();
    // Each segment's cancelling users beside its users, the rate and its test.
    let cancellations: Vec<Vec<String>> = run
        .activity
        .cancelled
        .by_segment
        .iter()
        .map(|c| {
            vec![
                label("portfolio_group", c.portfolio_group),
                label("plan_type", &c.plan_type),
                count(c.users),
                count(c.cancelled_users),
                f.percent(c.rate),
                count(c.events),
                s.get(&format!("cancel.{}", c.verdict.key())),
            ]
        })
        .collect();
    let cancellations_note = lang.fill(
        "notes.cancellations",
        &json!({
            "segments": count(run.activity.cancelled.by_segment.len()),
            "outside": count(run.activity.cancelled.outside_segments),
        }),
    );
    let changes = changes_table(&run.comparison, lang);
    json!({
        "changes": changes,
        "scope": { "rows": scope, "definitions": s.list("scope.definitions") },
        "dimensions": dimensions,
        "cross": cross,
        "cross_note": cross_note,
        "training": impact_rows(&r.training),
        "diversity": impact_rows(&r.diversity),
        "event_types": event_types,
        "size_arr": size_arr,
        "cancellations": { "rows": cancellations, "note": cancellations_note },
        // Every journey segments.csv holds, for the full report's appendix.
        "paths": { "by_users": by_users, "by_arr": by_arr, "inactive": inactive, "all": r.paths.iter().map(path_row).collect::<Vec<_>>(), "total": count(r.paths.len()) },
        "quality": { "rows": quality, "bad_timestamps": bad, "limitations": s.list("quality.limitations") },
    })
}

/// Every value set against the previous snapshot, as the "What changed" table prints
/// it; none without one.
fn changes_table(c: &crate::reports::comparison::Comparison, lang: &Language) -> Value {
    use crate::reports::comparison::{reading, show, signed_change};
    if c.empty_reason.is_some() {
        return Value::Null;
    }
    let (s, f) = (&lang.strings, &lang.format);
    let rows: Vec<Vec<String>> = c
        .changes
        .iter()
        .map(|x| {
            vec![
                match &x.item {
                    Some(v) => format!(
                        "{} · {}",
                        s.get(&format!("dimensions.short_{}", x.slice)),
                        s.label(&x.slice, v)
                    ),
                    None => s.get("change.overall"),
                },
                s.get(&format!("change.metric_{}", x.metric)),
                show(f, x.unit, x.previous),
                show(f, x.unit, x.current),
                match (x.current, x.previous) {
                    (Some(a), Some(b)) => signed_change(f, x.unit, a, b),
                    _ => "—".to_owned(),
                },
                s.get(&format!("change.reading_{}", reading(x.direction))),
            ]
        })
        .collect();
    crate::reports::comparison::table(
        s,
        "change.slice",
        rows,
        lang.fill(
            "change.table_intro",
            &json!({ "period": c.period.trim_start_matches("asof-") }),
        ),
    )
}
