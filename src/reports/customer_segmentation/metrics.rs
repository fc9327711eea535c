//! The numbers of the `customer-segmentation` report
//! (`../shared/specs/report-customer-segmentation.md`): per-user features, the
//! distribution table of every dimension, training and diversity impact, journey
//! paths and the revenue at risk. Pure functions from rows to serde structs.
//!
//! Why this file is long: about 660 lines of code and 280 of tests; the spec's sections
//! are one computation over the same per-user features, each a short pure function.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::stats::claims::{stratified_difference, Moments, Proportion};
use crate::stats::{mean, percentile};

/// A `users` row.
#[derive(Debug, Clone, PartialEq)]
pub struct UserRow {
    pub user_id: String,
    pub portfolio_size: Option<i64>,
    pub plan_type: Option<String>,
    pub annual_revenue: Option<f64>,
    pub is_active: bool,
    pub nps_score: Option<f64>,
    pub support_tickets: Option<i64>,
}

/// An `events` row.
#[derive(Debug, Clone, PartialEq)]
pub struct EventRow {
    pub user_id: String,
    pub event_type: String,
    pub event_time: Option<DateTime<Utc>>,
}

/// `1`, `2-5`, `6-10`, `11+`; `None` (a data-quality row) below 1 or NULL.
pub fn portfolio_group(size: Option<i64>) -> Option<&'static str> {
    match size? {
        n if n < 1 => None,
        1 => Some("1"),
        2..=5 => Some("2-5"),
        6..=10 => Some("6-10"),
        _ => Some("11+"),
    }
}

/// `low` < 15 events, `medium` 15–30, `high` > 30.
pub fn engagement(total_events: usize) -> &'static str {
    match total_events {
        0..=14 => "low",
        15..=30 => "medium",
        _ => "high",
    }
}

/// `0`, `1`, `2-4`, `5-10`, `11+` support tickets in the last 90 days (NULL counts as 0).
pub fn ticket_range(tickets: Option<i64>) -> &'static str {
    match tickets.unwrap_or(0) {
        i64::MIN..=0 => "0",
        1 => "1",
        2..=4 => "2-4",
        5..=10 => "5-10",
        _ => "11+",
    }
}

/// `0-4`, `5-6`, `7+` distinct event types.
pub fn diversity_group(distinct_types: usize) -> &'static str {
    match distinct_types {
        0..=4 => "0-4",
        5..=6 => "5-6",
        _ => "7+",
    }
}

/// `inactive`, or by annual revenue `under_5k` < 5,000, `5k_15k` < 15,000, `15k_plus`.
pub fn arr_group(active: bool, arr: Option<f64>) -> &'static str {
    if !active {
        return "inactive";
    }
    match arr.unwrap_or(0.0) {
        a if a < 5_000.0 => "under_5k",
        a if a < 15_000.0 => "5k_15k",
        _ => "15k_plus",
    }
}

/// One user's features.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct UserFeatures {
    pub user_id: String,
    pub portfolio_group: Option<&'static str>,
    pub plan_type: String,
    pub engagement: &'static str,
    pub ticket_range: &'static str,
    pub diversity_group: &'static str,
    pub arr_group: &'static str,
    pub status: &'static str,
    pub training: &'static str,
    pub total_events: usize,
    pub distinct_types: usize,
    /// Days since the user's last event, relative to the latest event in the data;
    /// `None`: no activity.
    pub days_since_last_event: Option<i64>,
    pub annual_revenue: f64,
    pub is_active: bool,
    pub nps: Option<f64>,
    pub tickets: f64,
}

pub fn features(users: &[UserRow], events: &[EventRow]) -> Vec<UserFeatures> {
    let latest = events.iter().filter_map(|e| e.event_time).max();
    // Per user: events, distinct types, latest event.
    type Activity<'a> = (usize, HashSet<&'a str>, Option<DateTime<Utc>>);
    let mut per_user: HashMap<&str, Activity<'_>> = HashMap::new();
    for e in events {
        let entry = per_user.entry(e.user_id.as_str()).or_default();
        entry.0 += 1;
        entry.1.insert(e.event_type.as_str());
        if let Some(t) = e.event_time {
            entry.2 = Some(entry.2.map_or(t, |x| x.max(t)));
        }
    }
    users
        .iter()
        .map(|u| {
            let (total, types, last) = per_user
                .get(u.user_id.as_str())
                .map(|(n, t, l)| (*n, t.len(), *l))
                .unwrap_or((0, 0, None));
            let trained = per_user
                .get(u.user_id.as_str())
                .is_some_and(|(_, t, _)| t.contains("training_attended"));
            UserFeatures {
                user_id: u.user_id.clone(),
                portfolio_group: portfolio_group(u.portfolio_size),
                plan_type: plan_of(u.plan_type.as_deref()),
                engagement: engagement(total),
                ticket_range: ticket_range(u.support_tickets),
                diversity_group: diversity_group(types),
                arr_group: arr_group(u.is_active, u.annual_revenue),
                status: if u.is_active { "active" } else { "inactive" },
                training: if trained { "yes" } else { "no" },
                total_events: total,
                distinct_types: types,
                days_since_last_event: match (latest, last) {
                    (Some(a), Some(b)) => Some((a - b).num_days()),
                    _ => None,
                },
                annual_revenue: u.annual_revenue.unwrap_or(0.0),
                is_active: u.is_active,
                nps: u.nps_score,
                tickets: u.support_tickets.unwrap_or(0) as f64,
            }
        })
        .collect()
}

/// One row of `dimension_tables.csv`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct DimensionRow {
    pub dimension: &'static str,
    pub value: String,
    pub users: usize,
    pub share: f64,
    pub total_arr: f64,
    pub avg_arr: f64,
    pub active_rate: f64,
    pub avg_nps: Option<f64>,
    pub avg_tickets: f64,
}

/// A user's plan as the report groups it: the contract's three plans (compared
/// trimmed and lower-cased), `unknown` without one, `other` for any other value (a
/// table with thousands of plan names still makes one readable chart; the data
/// quality counts them).
fn plan_of(plan: Option<&str>) -> String {
    match plan.map(|p| p.trim().to_lowercase()) {
        None => "unknown".into(),
        Some(p) if p.is_empty() => "unknown".into(),
        Some(p) if value_order("plan_type").contains(&p.as_str()) => p,
        Some(_) => "other".into(),
    }
}

/// Order of each dimension's values in tables and charts.
pub fn value_order(dimension: &str) -> &'static [&'static str] {
    match dimension {
        "portfolio_group" => &["1", "2-5", "6-10", "11+"],
        "plan_type" => &["starter", "pro", "premium"],
        "engagement" => &["low", "medium", "high"],
        "ticket_range" => &["0", "1", "2-4", "5-10", "11+"],
        "diversity_group" => &["0-4", "5-6", "7+"],
        "arr_group" => &["inactive", "under_5k", "5k_15k", "15k_plus"],
        "training" => &["yes", "no"],
        _ => &[],
    }
}

fn summarize(
    dimension: &'static str,
    value: String,
    rows: &[&UserFeatures],
    population: usize,
) -> DimensionRow {
    let n = rows.len();
    let total: f64 = rows.iter().map(|u| u.annual_revenue).sum();
    DimensionRow {
        dimension,
        value,
        users: n,
        share: n as f64 / population.max(1) as f64,
        total_arr: total,
        avg_arr: total / n.max(1) as f64,
        active_rate: rows.iter().filter(|u| u.is_active).count() as f64 / n.max(1) as f64,
        avg_nps: mean(rows.iter().filter_map(|u| u.nps)),
        avg_tickets: rows.iter().map(|u| u.tickets).sum::<f64>() / n.max(1) as f64,
    }
}

/// The distribution table of every dimension; `portfolio_group` over users with
/// portfolio_size ≥ 1, the others over all users.
pub fn dimension_tables(users: &[UserFeatures]) -> Vec<DimensionRow> {
    type Key = fn(&UserFeatures) -> Option<String>;
    let dims: [(&'static str, Key); 7] = [
        ("portfolio_group", |u| u.portfolio_group.map(str::to_owned)),
        ("plan_type", |u| Some(u.plan_type.clone())),
        ("engagement", |u| Some(u.engagement.to_owned())),
        ("ticket_range", |u| Some(u.ticket_range.to_owned())),
        ("diversity_group", |u| Some(u.diversity_group.to_owned())),
        ("arr_group", |u| Some(u.arr_group.to_owned())),
        ("training", |u| Some(u.training.to_owned())),
    ];
    let mut out = Vec::new();
    for (dim, key) in dims {
        let mut groups: BTreeMap<String, Vec<&UserFeatures>> = BTreeMap::new();
        for u in users {
            if let Some(k) = key(u) {
                groups.entry(k).or_default().push(u);
            }
        }
        let population: usize = groups.values().map(Vec::len).sum();
        let order = value_order(dim);
        let mut keys: Vec<String> = groups.keys().cloned().collect();
        keys.sort_by_key(|k| {
            (
                order.iter().position(|o| o == k).unwrap_or(usize::MAX),
                k.clone(),
            )
        });
        for k in keys {
            out.push(summarize(dim, k.clone(), &groups[&k], population));
        }
    }
    out
}

/// With vs without training (or any yes/no split): averages, median and lift.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Impact {
    pub with_users: usize,
    pub without_users: usize,
    pub with_avg_arr: Option<f64>,
    pub without_avg_arr: Option<f64>,
    pub with_median_arr: Option<f64>,
    pub without_median_arr: Option<f64>,
    pub with_active_rate: Option<f64>,
    pub without_active_rate: Option<f64>,
    /// with_avg_arr − without_avg_arr, and as a fraction of without_avg_arr.
    pub arr_lift: Option<f64>,
    pub arr_lift_pct: Option<f64>,
    /// The ARR difference with the plan held fixed (per-plan differences weighted by
    /// the "without" group's plan mix: the users an action would reach), and its
    /// two-sided p-value. Plan sets most of a user's ARR, so a raw lift can be the plan
    /// mix alone.
    pub within_plan_lift: Option<f64>,
    pub within_plan_p: Option<f64>,
    /// p-value of the raw ARR difference (Welch).
    pub arr_p: Option<f64>,
    #[serde(skip)]
    pub with_active: Option<Proportion>,
    #[serde(skip)]
    pub without_active: Option<Proportion>,
}

pub fn impact(with: &[&UserFeatures], without: &[&UserFeatures]) -> Impact {
    let arr = |v: &[&UserFeatures]| {
        let mut a: Vec<f64> = v.iter().map(|u| u.annual_revenue).collect();
        a.sort_by(f64::total_cmp);
        (mean(a.iter().copied()), percentile(&a, 0.5))
    };
    let active = |v: &[&UserFeatures]| mean(v.iter().map(|u| if u.is_active { 1.0 } else { 0.0 }));
    let ((wa, wm), (oa, om)) = (arr(with), arr(without));
    let lift = wa.zip(oa).map(|(w, o)| w - o).filter(|l| l.is_finite());
    let moments = |v: &[&UserFeatures]| Moments::of(v.iter().map(|u| u.annual_revenue));
    let active_k = |v: &[&UserFeatures]| v.iter().filter(|u| u.is_active).count();
    let mut plans: BTreeMap<&str, (Vec<&UserFeatures>, Vec<&UserFeatures>)> = BTreeMap::new();
    for u in with {
        plans.entry(u.plan_type.as_str()).or_default().0.push(u);
    }
    for u in without {
        plans.entry(u.plan_type.as_str()).or_default().1.push(u);
    }
    let strata: Vec<(Moments, Moments, f64)> = plans
        .values()
        .filter_map(|(w, o)| Some((moments(w)?, moments(o)?, o.len() as f64)))
        .collect();
    let within = stratified_difference(&strata);
    Impact {
        with_users: with.len(),
        without_users: without.len(),
        with_avg_arr: wa,
        without_avg_arr: oa,
        with_median_arr: wm,
        without_median_arr: om,
        with_active_rate: active(with),
        without_active_rate: active(without),
        arr_lift: lift,
        arr_lift_pct: lift
            .zip(oa)
            .and_then(|(l, o)| (o != 0.0).then(|| l / o))
            .filter(|p| p.is_finite()),
        within_plan_lift: within.map(|w| w.0),
        within_plan_p: within.map(|w| w.1),
        arr_p: moments(with)
            .zip(moments(without))
            .map(|(a, b)| crate::stats::claims::welch_p(a, b)),
        with_active: Proportion::new(active_k(with), with.len()),
        without_active: Proportion::new(active_k(without), without.len()),
    }
}

/// One observed journey path (`segments.csv`).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Path {
    pub portfolio_group: &'static str,
    pub plan_type: String,
    pub engagement: &'static str,
    pub status: &'static str,
    pub users: usize,
    pub share: f64,
    pub total_arr: f64,
    pub avg_arr: f64,
}

/// Every observed portfolio → plan → engagement → status path, users with
/// portfolio_size ≥ 1 only, by users descending (ties: the path text).
pub fn journey_paths(users: &[UserFeatures]) -> Vec<Path> {
    let mut groups: BTreeMap<(&'static str, String, &'static str, &'static str), (usize, f64)> =
        BTreeMap::new();
    let mut population = 0;
    for u in users {
        let Some(p) = u.portfolio_group else { continue };
        population += 1;
        let e = groups
            .entry((p, u.plan_type.clone(), u.engagement, u.status))
            .or_default();
        e.0 += 1;
        e.1 += u.annual_revenue;
    }
    let mut out: Vec<Path> = groups
        .into_iter()
        .map(|((p, plan, eng, status), (n, arr))| Path {
            portfolio_group: p,
            plan_type: plan,
            engagement: eng,
            status,
            users: n,
            share: n as f64 / population.max(1) as f64,
            total_arr: arr,
            avg_arr: arr / n as f64,
        })
        .collect();
    out.sort_by(|a, b| {
        b.users.cmp(&a.users).then_with(|| {
            (a.portfolio_group, &a.plan_type, a.engagement, a.status).cmp(&(
                b.portfolio_group,
                &b.plan_type,
                b.engagement,
                b.status,
            ))
        })
    });
    out
}

/// ARR of inactive users (all users).
pub fn arr_at_risk(users: &[UserFeatures]) -> f64 {
    users
        .iter()
        .filter(|u| !u.is_active)
        .map(|u| u.annual_revenue)
        .sum()
}

/// One cell of portfolio group × plan (users with portfolio_size ≥ 1).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CrossRow {
    pub portfolio_group: &'static str,
    pub plan_type: String,
    pub users: usize,
    /// Of all users (the PDF's one denominator; users without a portfolio are in no
    /// cell and are counted beside the table).
    pub share: f64,
    /// Of all users' ARR.
    pub arr_share: f64,
    pub total_arr: f64,
    pub avg_arr: f64,
    pub active_rate: f64,
    pub avg_nps: Option<f64>,
    pub avg_tickets: f64,
    /// The cell's scores as a sample (under two: none), for testing it against the
    /// other cells.
    #[serde(skip)]
    pub nps: Option<Moments>,
}

/// Portfolio group × plan: every observed cell, in the dimensions' order; shares of
/// all users and of all ARR.
pub fn portfolio_by_plan(users: &[UserFeatures]) -> Vec<CrossRow> {
    let mut cells: BTreeMap<(usize, String), Vec<&UserFeatures>> = BTreeMap::new();
    let portfolio = value_order("portfolio_group");
    for u in users {
        let Some(p) = u.portfolio_group else { continue };
        let pi = portfolio.iter().position(|x| *x == p).unwrap_or(usize::MAX);
        cells.entry((pi, u.plan_type.clone())).or_default().push(u);
    }
    let population = users.len();
    let total: f64 = users.iter().map(|u| u.annual_revenue).sum();
    let plans = value_order("plan_type");
    let mut out: Vec<CrossRow> = cells
        .into_iter()
        .map(|((_, plan), rows)| {
            let d = summarize("portfolio_plan", plan.clone(), &rows, population);
            CrossRow {
                portfolio_group: rows[0].portfolio_group.unwrap_or_default(),
                plan_type: plan,
                users: d.users,
                share: d.share,
                arr_share: if total > 0.0 {
                    d.total_arr / total
                } else {
                    0.0
                },
                total_arr: d.total_arr,
                avg_arr: d.avg_arr,
                active_rate: d.active_rate,
                avg_nps: d.avg_nps,
                avg_tickets: d.avg_tickets,
                nps: Moments::of(rows.iter().filter_map(|u| u.nps)),
            }
        })
        .collect();
    out.sort_by_key(|c| {
        (
            portfolio.iter().position(|x| *x == c.portfolio_group),
            plans
                .iter()
                .position(|x| *x == c.plan_type)
                .unwrap_or(usize::MAX),
            c.plan_type.clone(),
        )
    });
    out
}

/// A stage of a journey diagram: a dimension and how a user's value is read.
#[derive(Debug, Clone, Copy)]
pub struct Stage {
    pub dimension: &'static str,
    pub value: fn(&UserFeatures) -> Option<String>,
}

pub const PORTFOLIO: Stage = Stage {
    dimension: "portfolio_group",
    value: |u| u.portfolio_group.map(str::to_owned),
};
pub const PLAN: Stage = Stage {
    dimension: "plan_type",
    value: |u| Some(u.plan_type.clone()),
};
pub const ENGAGEMENT: Stage = Stage {
    dimension: "engagement",
    value: |u| Some(u.engagement.to_owned()),
};
pub const TICKETS: Stage = Stage {
    dimension: "ticket_range",
    value: |u| Some(u.ticket_range.to_owned()),
};
pub const STATUS: Stage = Stage {
    dimension: "status",
    value: |u| Some(u.status.to_owned()),
};
pub const ARR_GROUP: Stage = Stage {
    dimension: "arr_group",
    value: |u| Some(u.arr_group.to_owned()),
};

/// Users flowing from one stage's value to the next stage's value.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Flow {
    pub from_dimension: &'static str,
    pub from: String,
    pub to_dimension: &'static str,
    pub to: String,
    pub users: usize,
    /// Their annual revenue (risk nodes carry it in their label).
    pub arr: f64,
}

/// The links of a journey through `stages`: users who have a value at every stage
/// (portfolio_size ≥ 1 when the portfolio is one), counted per consecutive pair.
pub fn flows(users: &[UserFeatures], stages: &[Stage]) -> Vec<Flow> {
    let mut counts: BTreeMap<(usize, String, String), (usize, f64)> = BTreeMap::new();
    for u in users {
        let values: Option<Vec<String>> = stages.iter().map(|s| (s.value)(u)).collect();
        let Some(values) = values else { continue };
        for (i, pair) in values.windows(2).enumerate() {
            let e = counts
                .entry((i, pair[0].clone(), pair[1].clone()))
                .or_default();
            e.0 += 1;
            e.1 += u.annual_revenue;
        }
    }
    counts
        .into_iter()
        .map(|((i, from, to), (n, arr))| Flow {
            from_dimension: stages[i].dimension,
            from,
            to_dimension: stages[i + 1].dimension,
            to,
            users: n,
            arr,
        })
        .collect()
}

/// Everything the customer-segmentation report prints.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Segmentation {
    /// The latest event in the data (days since last event count from here).
    pub as_of: Option<DateTime<Utc>>,
    pub users: usize,
    pub users_in_portfolio_groups: usize,
    /// portfolio_size < 1 or NULL: kept out of portfolio groups and journeys.
    pub users_without_portfolio: usize,
    /// Their ARR: in the totals, in no portfolio cell or journey.
    pub arr_without_portfolio: f64,
    /// Users with no events ("no activity").
    pub users_without_events: usize,
    pub events: usize,
    pub event_types: usize,
    /// Events whose user_id is not in `users`.
    pub events_of_unknown_users: usize,
    pub total_arr: f64,
    pub active_rate: Option<f64>,
    /// Every user in one row: the baseline beside each table.
    pub overall: DimensionRow,
    /// The users with a portfolio in one row: the baseline of the portfolio-group
    /// table, whose shares are of them (one denominator per table).
    pub portfolio_overall: DimensionRow,
    /// Median annual revenue of all users.
    pub median_arr: Option<f64>,
    pub dimensions: Vec<DimensionRow>,
    pub portfolio_plan: Vec<CrossRow>,
    pub training: Impact,
    /// 7+ distinct event types against 0–4.
    pub diversity: Impact,
    pub paths: Vec<Path>,
    pub arr_at_risk: f64,
    pub inactive_users: usize,
    pub journey: Vec<Flow>,
    pub engagement_journey: Vec<Flow>,
    pub portfolio_journey: Vec<Flow>,
    /// The samples the findings test.
    #[serde(skip)]
    pub samples: Samples,
}

/// Per-group samples behind the report's comparisons (not printed as such).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Samples {
    /// NPS of active and of inactive users (non-NULL scores).
    pub nps_active: Option<Moments>,
    pub nps_inactive: Option<Moments>,
    /// Tickets in the last 90 days per engagement level.
    pub tickets_by_engagement: BTreeMap<&'static str, Moments>,
    /// Active users of each engagement level.
    pub active_by_engagement: BTreeMap<&'static str, Proportion>,
}

fn samples(f: &[UserFeatures]) -> Samples {
    let nps = |active: bool| {
        Moments::of(
            f.iter()
                .filter(|u| u.is_active == active)
                .filter_map(|u| u.nps),
        )
    };
    let mut tickets = BTreeMap::new();
    let mut active = BTreeMap::new();
    for level in value_order("engagement") {
        let rows: Vec<&UserFeatures> = f.iter().filter(|u| u.engagement == *level).collect();
        if let Some(m) = Moments::of(rows.iter().map(|u| u.tickets)) {
            tickets.insert(*level, m);
        }
        if let Some(p) = Proportion::new(rows.iter().filter(|u| u.is_active).count(), rows.len()) {
            active.insert(*level, p);
        }
    }
    Samples {
        nps_active: nps(true),
        nps_inactive: nps(false),
        tickets_by_engagement: tickets,
        active_by_engagement: active,
    }
}

pub fn compute(users: &[UserRow], events: &[EventRow]) -> Segmentation {
    let f = features(users, events);
    let known: HashSet<&str> = users.iter().map(|u| u.user_id.as_str()).collect();
    let types: HashSet<&str> = events.iter().map(|e| e.event_type.as_str()).collect();
    let (trained, untrained): (Vec<&UserFeatures>, Vec<&UserFeatures>) =
        f.iter().partition(|u| u.training == "yes");
    let high: Vec<&UserFeatures> = f.iter().filter(|u| u.diversity_group == "7+").collect();
    let low: Vec<&UserFeatures> = f.iter().filter(|u| u.diversity_group == "0-4").collect();
    Segmentation {
        as_of: events.iter().filter_map(|e| e.event_time).max(),
        users: f.len(),
        users_in_portfolio_groups: f.iter().filter(|u| u.portfolio_group.is_some()).count(),
        users_without_portfolio: f.iter().filter(|u| u.portfolio_group.is_none()).count(),
        arr_without_portfolio: f
            .iter()
            .filter(|u| u.portfolio_group.is_none())
            .map(|u| u.annual_revenue)
            .sum(),
        users_without_events: f.iter().filter(|u| u.total_events == 0).count(),
        events: events.len(),
        event_types: types.len(),
        events_of_unknown_users: events
            .iter()
            .filter(|e| !known.contains(e.user_id.as_str()))
            .count(),
        total_arr: f.iter().map(|u| u.annual_revenue).sum(),
        active_rate: mean(f.iter().map(|u| if u.is_active { 1.0 } else { 0.0 })),
        median_arr: {
            let mut a: Vec<f64> = f.iter().map(|u| u.annual_revenue).collect();
            a.sort_by(f64::total_cmp);
            percentile(&a, 0.5)
        },
        overall: summarize(
            "all",
            "all".to_owned(),
            &f.iter().collect::<Vec<_>>(),
            f.len(),
        ),
        portfolio_overall: {
            let with: Vec<&UserFeatures> =
                f.iter().filter(|u| u.portfolio_group.is_some()).collect();
            summarize("portfolio_all", "all".to_owned(), &with, with.len())
        },
        dimensions: dimension_tables(&f),
        portfolio_plan: portfolio_by_plan(&f),
        training: impact(&trained, &untrained),
        diversity: impact(&high, &low),
        paths: journey_paths(&f),
        arr_at_risk: arr_at_risk(&f),
        inactive_users: f.iter().filter(|u| !u.is_active).count(),
        journey: flows(
            &f,
            &[PORTFOLIO, PLAN, ENGAGEMENT, TICKETS, STATUS, ARR_GROUP],
        ),
        engagement_journey: flows(&f, &[ENGAGEMENT, TICKETS, STATUS]),
        portfolio_journey: flows(&f, &[PORTFOLIO, STATUS]),
        samples: samples(&f),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grouping_boundaries() {
        let p: Vec<_> = [
            Some(-1),
            Some(0),
            None,
            Some(1),
            Some(2),
            Some(5),
            Some(6),
            Some(10),
            Some(11),
        ]
        .into_iter()
        .map(portfolio_group)
        .collect();
        assert_eq!(
            p,
            [
                None,
                None,
                None,
                Some("1"),
                Some("2-5"),
                Some("2-5"),
                Some("6-10"),
                Some("6-10"),
                Some("11+")
            ]
        );
        assert_eq!(
            [
                engagement(0),
                engagement(14),
                engagement(15),
                engagement(30),
                engagement(31)
            ],
            ["low", "low", "medium", "medium", "high"]
        );
        let t: Vec<_> = [0, 1, 4, 5, 10, 11]
            .into_iter()
            .map(|n| ticket_range(Some(n)))
            .collect();
        assert_eq!(t, ["0", "1", "2-4", "5-10", "5-10", "11+"]);
        assert_eq!(ticket_range(None), "0");
        assert_eq!(
            [
                diversity_group(4),
                diversity_group(5),
                diversity_group(6),
                diversity_group(7)
            ],
            ["0-4", "5-6", "5-6", "7+"]
        );
        assert_eq!(
            [
                arr_group(false, Some(1e6)),
                arr_group(true, Some(4_999.99)),
                arr_group(true, Some(5_000.0)),
                arr_group(true, Some(14_999.0)),
                arr_group(true, Some(15_000.0))
            ],
            ["inactive", "under_5k", "5k_15k", "5k_15k", "15k_plus"]
        );
    }

    fn user(id: &str, portfolio: i64, plan: &str, arr: f64, active: bool) -> UserRow {
        UserRow {
            user_id: id.into(),
            portfolio_size: Some(portfolio),
            plan_type: Some(plan.into()),
            annual_revenue: Some(arr),
            is_active: active,
            nps_score: None,
            support_tickets: Some(1),
        }
    }

    fn ev(user: &str, kind: &str, day: u32) -> EventRow {
        EventRow {
            user_id: user.into(),
            event_type: kind.into(),
            event_time: crate::source::timestamp::parse(
                &format!("2024-06-{day:02} 12:00:00"),
                chrono_tz::Tz::UTC,
            )
            .ok(),
        }
    }

    #[test]
    fn features_tables_paths_and_impact_by_hand() {
        let users = vec![
            user("a", 1, "pro", 1_000.0, true),
            user("b", 3, "pro", 3_000.0, false),
            user("c", 0, "starter", 500.0, true),
            user("d", 12, "premium", 20_000.0, true),
        ];
        let mut events = vec![
            ev("a", "login", 1),
            ev("a", "training_attended", 10),
            ev("d", "login", 14),
        ];
        events.extend((0..20).map(|i| {
            ev(
                "b",
                if i % 2 == 0 {
                    "login"
                } else {
                    "report_generated"
                },
                5,
            )
        }));
        let f = features(&users, &events);
        let by = |id: &str| f.iter().find(|u| u.user_id == id).unwrap();
        assert_eq!(by("a").training, "yes");
        assert_eq!(
            by("a").days_since_last_event,
            Some(4),
            "latest event 06-14, a's last 06-10"
        );
        assert_eq!(
            by("c").days_since_last_event,
            None,
            "no events: no activity, not 999"
        );
        assert_eq!(
            (
                by("c").engagement,
                by("c").diversity_group,
                by("c").total_events
            ),
            ("low", "0-4", 0)
        );
        assert_eq!(by("b").engagement, "medium");
        assert_eq!(
            by("c").portfolio_group,
            None,
            "portfolio 0 is a data-quality row"
        );
        let dims = dimension_tables(&f);
        let port: Vec<_> = dims
            .iter()
            .filter(|r| r.dimension == "portfolio_group")
            .map(|r| (r.value.as_str(), r.users))
            .collect();
        assert_eq!(
            port,
            [("1", 1), ("2-5", 1), ("11+", 1)],
            "users with portfolio ≥ 1 only"
        );
        let pro = dims
            .iter()
            .find(|r| r.dimension == "plan_type" && r.value == "pro")
            .unwrap();
        assert_eq!(
            (
                pro.users,
                pro.share,
                pro.total_arr,
                pro.avg_arr,
                pro.active_rate
            ),
            (2, 0.5, 4_000.0, 2_000.0, 0.5)
        );
        assert_eq!(pro.avg_nps, None);
        let paths = journey_paths(&f);
        assert_eq!(paths.len(), 3);
        assert!((paths.iter().map(|p| p.share).sum::<f64>() - 1.0).abs() < 1e-12);
        assert_eq!(arr_at_risk(&f), 3_000.0);
        let (with, without): (Vec<&UserFeatures>, Vec<&UserFeatures>) =
            f.iter().partition(|u| u.training == "yes");
        let i = impact(&with, &without);
        assert_eq!((i.with_users, i.without_users), (1, 3));
        assert_eq!(i.without_avg_arr, Some((3_000.0 + 500.0 + 20_000.0) / 3.0));
        assert_eq!(i.without_median_arr, Some(3_000.0));
    }

    #[test]
    fn cross_table_flows_and_summary_by_hand() {
        let users = vec![
            user("a", 1, "pro", 1_000.0, true),
            user("b", 3, "pro", 3_000.0, false),
            user("c", 0, "starter", 500.0, true),
            user("d", 12, "premium", 20_000.0, true),
            user("e", 4, "starter", 400.0, true),
        ];
        let events = vec![ev("a", "login", 1), ev("zz", "login", 2)];
        let r = compute(&users, &events);
        assert_eq!(
            (
                r.users,
                r.users_in_portfolio_groups,
                r.users_without_portfolio
            ),
            (5, 4, 1)
        );
        assert_eq!((r.users_without_events, r.events_of_unknown_users), (4, 1));
        assert_eq!((r.arr_at_risk, r.inactive_users), (3_000.0, 1));
        let cells: Vec<(&str, &str, usize)> = r
            .portfolio_plan
            .iter()
            .map(|c| (c.portfolio_group, c.plan_type.as_str(), c.users))
            .collect();
        assert_eq!(
            cells,
            [
                ("1", "pro", 1),
                ("2-5", "starter", 1),
                ("2-5", "pro", 1),
                ("11+", "premium", 1)
            ],
            "portfolio order, then plan order; user c (portfolio 0) left out"
        );
        let two_five_pro = &r.portfolio_plan[2];
        // One denominator: all five users and all their ARR, user c included.
        assert_eq!(two_five_pro.share, 0.2);
        assert!((two_five_pro.arr_share - 3_000.0 / 24_900.0).abs() < 1e-12);
        assert_eq!(
            (r.users_without_portfolio, r.arr_without_portfolio),
            (1, 500.0)
        );
        assert_eq!((r.overall.users, r.overall.total_arr), (5, 24_900.0));
        assert_eq!(r.median_arr, Some(1_000.0));
        // Links carry their users' ARR (the risk nodes' labels).
        let inactive: f64 = r
            .portfolio_journey
            .iter()
            .filter(|f| f.to == "inactive")
            .map(|f| f.arr)
            .sum();
        assert_eq!(inactive, 3_000.0);
        // portfolio → status: one link per observed pair, user c left out.
        let links: Vec<(&str, &str, usize)> = r
            .portfolio_journey
            .iter()
            .map(|f| (f.from.as_str(), f.to.as_str(), f.users))
            .collect();
        assert_eq!(
            links,
            [
                ("1", "active", 1),
                ("11+", "active", 1),
                ("2-5", "active", 1),
                ("2-5", "inactive", 1)
            ]
        );
        // The full journey has five link layers and every user with a portfolio in each.
        for layer in [
            "portfolio_group",
            "plan_type",
            "engagement",
            "ticket_range",
            "status",
        ] {
            let n: usize = r
                .journey
                .iter()
                .filter(|f| f.from_dimension == layer)
                .map(|f| f.users)
                .sum();
            assert_eq!(n, 4, "{layer}");
        }
        // Engagement → tickets → status covers all five users.
        let n: usize = r
            .engagement_journey
            .iter()
            .filter(|f| f.from_dimension == "engagement")
            .map(|f| f.users)
            .sum();
        assert_eq!(n, 5);
    }
}
