//! conversation-usage's comparison: the same metrics, computed by the same code on
//! the comparison window, set against this window's, overall and per segment (counts:
//! exact conditional binomial on the two windows' lengths; rates: two-proportion
//! test; mean response: Welch). What a change allows a report to say is shared
//! ([`crate::reports::comparison`]).

use super::metrics::{ConversationUsage, SliceRow};
use crate::intercom::window::{Compare, Window};
use crate::reports::comparison::decide;
pub use crate::reports::comparison::{Change, Comparison, Direction, Unit};
use crate::stats::claims::{count_rate_p, welch_p, Moments, Proportion};

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

/// A rate metric: its name, its count (k of n) and its value in a slice.
type RateMetric = (
    &'static str,
    fn(&SliceRow) -> Option<Proportion>,
    fn(&SliceRow) -> Option<f64>,
);

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
    decide(&mut changes);
    Comparison::of_window(basis, previous.window, changes)
}

fn slice_changes(slice: &str, a: &SliceRow, b: Option<&SliceRow>, t1: f64, t0: f64) -> Vec<Change> {
    let change = |metric: &'static str, unit: Unit, cur: Option<f64>, prev: Option<f64>| {
        Change::new(metric, slice, unit, cur, prev)
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
        let (x, y) = (
            value(a).and(proportion(a)),
            b.and_then(|b| value(b).and(proportion(b))),
        );
        out.push(change(metric, Unit::Rate, value(a), b.and_then(value)).with_counts(x, y));
    }
    out
}
