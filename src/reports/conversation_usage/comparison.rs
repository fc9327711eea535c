//! What changed since the comparison period (`compare` option): the same metrics,
//! computed by the same code on the comparison window, set against this window's,
//! overall and per segment. A change is a rise or a fall only when it holds (counts:
//! exact conditional binomial on the two windows' lengths; rates: two-proportion test;
//! mean response: Welch), with the false discovery rate controlled over every change
//! tested at once; otherwise it is "no clear change".

use serde::Serialize;

use super::metrics::{ConversationUsage, SliceRow};
use crate::intercom::window::{Compare, Window};
use crate::render::narrative::Finding;
use crate::reports::{cell, CsvFile};
use crate::stats::claims::printed_difference;
use crate::stats::claims::{
    benjamini_hochberg, count_rate_p, two_proportion_p, welch_p, Moments, Proportion, FDR_Q,
};

/// The metrics compared, per slice, in this order.
pub const METRICS: [&str; 7] = [
    "conv_cnt",
    "avg_resp",
    "p50_resp",
    "bot_first_resp_share",
    "conv_to_feature_rate",
    "weekly_retention",
    "monthly_retention",
];

/// The slices compared: overall and every segment value (spec §3), `unknown` for
/// companies without one.
pub const SLICES: [&str; 6] = [
    "overall",
    crate::intercom::slices::SEGMENTS[0],
    crate::intercom::slices::SEGMENTS[1],
    crate::intercom::slices::SEGMENTS[2],
    crate::intercom::slices::SEGMENTS[3],
    crate::intercom::slices::UNKNOWN,
];

/// The comparison of a run, as summary.json carries it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Comparison {
    pub basis: Compare,
    pub window: Window,
    pub period: String,
    /// Why there are no numbers for the comparison window, when there are none.
    pub empty_reason: Option<String>,
    pub changes: Vec<Change>,
}

/// How a number is compared and printed.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Unit {
    /// A rate (0–1); its change in percentage points.
    Rate,
    Minutes,
    Count,
}

/// What a change allows a report to say.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    Rise,
    Fall,
    NoClearChange,
    /// One of the two values does not exist.
    NotComparable,
    /// Printed for reference (a median), not tested.
    NotTested,
}

/// A rate metric: its name, its count (k of n) and its value in a slice.
type RateMetric = (
    &'static str,
    fn(&SliceRow) -> Option<Proportion>,
    fn(&SliceRow) -> Option<f64>,
);

/// One metric of one slice in both windows.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Change {
    pub metric: &'static str,
    /// `overall`, or the segment.
    pub slice: String,
    pub unit: Unit,
    pub current: Option<f64>,
    pub previous: Option<f64>,
    /// current − previous, in percentage points for rates.
    pub change: Option<f64>,
    /// What each value rests on: k of n for rates (k effective for retention), the
    /// sample for means, the count itself for counts.
    pub current_k: Option<f64>,
    pub current_n: f64,
    pub previous_k: Option<f64>,
    pub previous_n: f64,
    pub p: Option<f64>,
    pub direction: Direction,
}

/// `comparison.csv`: one row per metric and slice, both periods and the change (the
/// spec's panel CSVs keep their columns).
pub fn csv(c: &Comparison) -> CsvFile {
    fn json(v: &impl Serialize) -> String {
        serde_json::to_value(v)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default()
    }
    CsvFile {
        name: "comparison.csv",
        header: vec![
            "comparison_period",
            "slice",
            "metric",
            "unit",
            "current",
            "previous",
            "change",
            "current_k",
            "current_n",
            "previous_k",
            "previous_n",
            "p",
            "direction",
        ],
        rows: c
            .changes
            .iter()
            .map(|x| {
                vec![
                    c.period.clone(),
                    x.slice.clone(),
                    x.metric.to_owned(),
                    json(&x.unit),
                    cell(x.current),
                    cell(x.previous),
                    cell(x.change),
                    cell(x.current_k),
                    cell(Some(x.current_n)),
                    cell(x.previous_k),
                    cell(Some(x.previous_n)),
                    cell(x.p),
                    json(&x.direction),
                ]
            })
            .collect(),
    }
}

/// A comparison window without numbers.
pub fn empty(basis: Compare, window: Window, reason: String) -> Comparison {
    Comparison {
        basis,
        period: window.period(),
        window,
        empty_reason: Some(reason),
        changes: Vec::new(),
    }
}

/// Sets `current` against `previous` (the same report on the comparison window).
pub fn compare(
    current: &ConversationUsage,
    previous: &ConversationUsage,
    basis: Compare,
) -> Comparison {
    let days = |w: &Window| (w.end - w.start).num_seconds() as f64 / 86_400.0;
    let (t1, t0) = (days(&current.window), days(&previous.window));
    let mut changes = Vec::new();
    let mut pairs: Vec<(String, &SliceRow, Option<&SliceRow>)> = vec![(
        "overall".to_owned(),
        &current.panels.overall,
        Some(&previous.panels.overall),
    )];
    for row in &current.panels.segment {
        let Some(seg) = row.segment else { continue };
        let before = previous
            .panels
            .segment
            .iter()
            .find(|r| r.segment == Some(seg));
        pairs.push((seg.to_owned(), row, before));
    }
    for (slice, a, b) in pairs {
        changes.extend(slice_changes(&slice, a, b, t1, t0));
    }
    // One family: every tested change of the run.
    let tested: Vec<usize> = changes
        .iter()
        .enumerate()
        .filter(|(_, c)| c.p.is_some())
        .map(|(i, _)| i)
        .collect();
    let p: Vec<f64> = tested.iter().filter_map(|&i| changes[i].p).collect();
    let keep = benjamini_hochberg(&p, FDR_Q);
    for (&i, holds) in tested.iter().zip(keep) {
        let c = &mut changes[i];
        c.direction = match (holds, c.change) {
            (true, Some(d)) if d > 0.0 => Direction::Rise,
            (true, Some(d)) if d < 0.0 => Direction::Fall,
            _ => Direction::NoClearChange,
        };
    }
    Comparison {
        basis,
        window: previous.window,
        period: previous.window.period(),
        empty_reason: None,
        changes,
    }
}

fn slice_changes(slice: &str, a: &SliceRow, b: Option<&SliceRow>, t1: f64, t0: f64) -> Vec<Change> {
    let change = |metric: &'static str, unit: Unit, cur: Option<f64>, prev: Option<f64>| Change {
        metric,
        slice: slice.to_owned(),
        unit,
        current: cur,
        previous: prev,
        change: match (cur, prev) {
            (Some(x), Some(y)) if unit == Unit::Rate => Some((x - y) * 100.0),
            (Some(x), Some(y)) => Some(x - y),
            _ => None,
        },
        current_k: None,
        current_n: 0.0,
        previous_k: None,
        previous_n: 0.0,
        p: None,
        direction: Direction::NotComparable,
    };
    let mut out = Vec::new();
    // Conversations: a count over each window's length.
    let (k1, k0) = (a.conv_cnt, b.map_or(0, |b| b.conv_cnt));
    let mut c = change(
        "conv_cnt",
        Unit::Count,
        Some(k1 as f64),
        b.map(|b| b.conv_cnt as f64),
    );
    c.current_n = k1 as f64;
    c.previous_n = k0 as f64;
    if b.is_some() {
        c.p = Some(count_rate_p(k1, t1, k0, t0));
        c.direction = Direction::NoClearChange;
    }
    out.push(c);
    // Mean and median first response.
    let moments = |r: &SliceRow| {
        Some(Moments {
            n: r.counts.resp_n as f64,
            mean: r.avg_resp?,
            var: r.counts.resp_var?,
        })
    };
    let mut c = change(
        "avg_resp",
        Unit::Minutes,
        a.avg_resp,
        b.and_then(|b| b.avg_resp),
    );
    c.current_n = a.counts.resp_n as f64;
    c.previous_n = b.map_or(0.0, |b| b.counts.resp_n as f64);
    if let (Some(x), Some(y)) = (moments(a), b.and_then(moments)) {
        if x.n >= 2.0 && y.n >= 2.0 {
            c.p = Some(welch_p(x, y));
            c.direction = Direction::NoClearChange;
        }
    }
    out.push(c);
    let mut c = change(
        "p50_resp",
        Unit::Minutes,
        a.p50_resp,
        b.and_then(|b| b.p50_resp),
    );
    c.current_n = a.counts.resp_n as f64;
    c.previous_n = b.map_or(0.0, |b| b.counts.resp_n as f64);
    if c.change.is_some() {
        c.direction = Direction::NotTested;
    }
    out.push(c);
    // Rates with their counts.
    let rates: [RateMetric; 4] = [
        (
            "bot_first_resp_share",
            |r| Proportion::new(r.counts.bot, r.conv_cnt),
            |r| r.bot_first_resp_share,
        ),
        (
            "conv_to_feature_rate",
            |r| Proportion::new(r.counts.converted, r.companies_with_closed_conv),
            |r| r.conv_to_feature_rate,
        ),
        (
            "weekly_retention",
            |r| Proportion::from_rate(r.weekly_retention, r.counts.weekly_companies),
            |r| r.weekly_retention,
        ),
        (
            "monthly_retention",
            |r| Proportion::from_rate(r.monthly_retention, r.counts.monthly_companies),
            |r| r.monthly_retention,
        ),
    ];
    for (metric, proportion, value) in rates {
        let mut c = change(metric, Unit::Rate, value(a), b.and_then(value));
        let (x, y) = (
            value(a).and(proportion(a)),
            b.and_then(|b| value(b).and(proportion(b))),
        );
        if let Some(x) = x {
            c.current_k = Some(x.k);
            c.current_n = x.n;
        }
        if let Some(y) = y {
            c.previous_k = Some(y.k);
            c.previous_n = y.n;
        }
        if let (Some(x), Some(y)) = (x, y) {
            c.p = Some(two_proportion_p(x, y));
            c.direction = Direction::NoClearChange;
        }
        out.push(c);
    }
    out
}

/// Changes that hold, most certain first (smallest p), then the largest relative
/// change: how the report ranks them.
pub fn holding(c: &Comparison) -> Vec<&Change> {
    let mut v: Vec<&Change> = c
        .changes
        .iter()
        .filter(|x| matches!(x.direction, Direction::Rise | Direction::Fall))
        .collect();
    let relative = |x: &Change| match (x.change, x.previous) {
        (Some(d), Some(p)) if p != 0.0 && x.unit != Unit::Rate => (d / p).abs(),
        (Some(d), Some(p)) if p != 0.0 => (d / 100.0 / p).abs(),
        _ => 0.0,
    };
    v.sort_by(|a, b| {
        a.p.unwrap_or(1.0)
            .total_cmp(&b.p.unwrap_or(1.0))
            .then(relative(b).total_cmp(&relative(a)))
    });
    v
}

/// A change as a narrative record: the two values, the change as the reader can
/// check it from the printed values, the counts, the slice.
pub fn record(id: &'static str, x: &Change) -> Finding {
    let mut f = Finding::new(id, 0);
    f.keys.insert("metric", x.metric);
    f.keys.insert(
        "unit",
        match x.unit {
            Unit::Rate => "rate",
            Unit::Minutes => "minutes",
            Unit::Count => "count",
        },
    );
    f.keys.insert(
        "direction",
        match x.direction {
            Direction::Rise => "rise",
            Direction::Fall => "fall",
            _ => "none",
        },
    );
    if x.slice != "overall" {
        f.slices
            .insert("segment", serde_json::Value::from(x.slice.clone()));
    }
    if let (Some(now), Some(before)) = (x.current, x.previous) {
        f.numbers.insert("current", now);
        f.numbers.insert("previous", before);
        let (scale, decimals) = match x.unit {
            Unit::Rate => (100.0, 1),
            Unit::Minutes => (1.0, 1),
            Unit::Count => (1.0, 0),
        };
        f.numbers.insert(
            "change",
            printed_difference(now, before, scale, decimals).abs(),
        );
    }
    f.numbers.insert("current_n", x.current_n);
    f.numbers.insert("previous_n", x.previous_n);
    if let Some(k) = x.current_k {
        f.numbers.insert("current_k", k);
    }
    if let Some(k) = x.previous_k {
        f.numbers.insert("previous_k", k);
    }
    f
}

/// Page 1's change headline: the change that holds most surely, or that nothing
/// changed beyond chance; none without comparison numbers.
pub fn headline(c: &Comparison) -> Option<Finding> {
    if c.empty_reason.is_some() {
        return None;
    }
    let mut f = match holding(c).first() {
        Some(x) => record("period_change", x),
        None => {
            let mut f = Finding::new("period_change", 0);
            f.keys.insert("direction", "none");
            f
        }
    };
    f.slices
        .insert("period", serde_json::Value::from(c.period.clone()));
    f.numbers.insert("holding", holding(c).len() as f64);
    Some(f)
}

/// The "What changed" section: each change that holds (at most eight), or that
/// nothing did, or why there is nothing to compare with.
pub fn section(c: &Comparison) -> Vec<Finding> {
    let tag = |mut f: Finding| {
        f.keys.insert("section", "change");
        f.slices
            .insert("period", serde_json::Value::from(c.period.clone()));
        f.lead = false;
        f
    };
    if let Some(why) = &c.empty_reason {
        let mut f = Finding::new("change_empty", 0);
        f.keys.insert(
            "why",
            if why.starts_with("no conversations") {
                "no_conversations"
            } else {
                "no_paying"
            },
        );
        return vec![tag(f)];
    }
    let held = holding(c);
    if held.is_empty() {
        let mut f = Finding::new("change_quiet", 0);
        f.numbers.insert(
            "tested",
            c.changes.iter().filter(|x| x.p.is_some()).count() as f64,
        );
        return vec![tag(f)];
    }
    held.into_iter()
        .take(8)
        .map(|x| tag(record("change", x)))
        .collect()
}
