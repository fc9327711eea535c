//! Findings and recommendations of the conversation-usage report (spec §6): which
//! conditions hold in this run's numbers, as language-neutral records the templates
//! turn into sentences.

use serde_json::{json, Value};

use super::metrics::{ConversationUsage, SliceRow};
use crate::render::narrative::{Finding, Recommendation};

fn slice_of(r: &SliceRow) -> Value {
    let mut m = serde_json::Map::new();
    for (k, v) in [
        ("segment", r.segment),
        ("seat_bucket", r.seat_bucket),
        ("arr_bucket", r.arr_bucket),
    ] {
        if let Some(v) = v {
            m.insert(k.into(), json!(v));
        }
    }
    Value::Object(m)
}

fn eligible(rows: &[SliceRow], min_cell: usize) -> impl Iterator<Item = &SliceRow> {
    rows.iter().filter(move |r| r.companies_total >= min_cell)
}

/// The row with the largest (`max`) or smallest value of `f`; the first on ties.
pub fn extreme<'a>(
    rows: impl Iterator<Item = &'a SliceRow>,
    f: impl Fn(&SliceRow) -> Option<f64>,
    max: bool,
) -> Option<(&'a SliceRow, f64)> {
    rows.filter_map(|r| f(r).map(|v| (r, v)))
        .fold(None, |acc, (r, v)| match acc {
            Some((_, a)) if (max && a >= v) || (!max && a <= v) => acc,
            _ => Some((r, v)),
        })
}

fn max_by<'a>(
    rows: impl Iterator<Item = &'a SliceRow>,
    f: impl Fn(&SliceRow) -> Option<f64>,
) -> Option<(&'a SliceRow, f64)> {
    extreme(rows, f, true)
}

fn min_by<'a>(
    rows: impl Iterator<Item = &'a SliceRow>,
    f: impl Fn(&SliceRow) -> Option<f64>,
) -> Option<(&'a SliceRow, f64)> {
    extreme(rows, f, false)
}

/// Words for |r|: the templates translate them.
pub fn strength(r: f64) -> &'static str {
    match r.abs() {
        a if a < 0.1 => "none",
        a if a < 0.3 => "weak",
        a if a < 0.5 => "moderate",
        _ => "strong",
    }
}

/// Below this spread of average response across cells, the SLA reads as uniform.
const UNIFORM_SLA_SPREAD_MINUTES: f64 = 1.0;
/// A gradient smaller than this (in retention points) is not worth a finding.
const MIN_RETENTION_GRADIENT: f64 = 0.01;

/// Findings of §6 whose condition holds in this data, in cover order.
pub fn findings(r: &ConversationUsage) -> Vec<Finding> {
    let mut out = Vec::new();
    let cells = &r.panels.segment_seat_arr;
    let min_cell = r.min_cell;
    let overall = &r.panels.overall;
    let f = Finding::new;

    // Best and worst conversion cells.
    let best = max_by(eligible(cells, min_cell), |c| c.conv_to_feature_rate);
    let worst = min_by(eligible(cells, min_cell), |c| c.conv_to_feature_rate);
    if let (Some((b, bv)), Some((w, wv))) = (best, worst) {
        if bv > wv {
            let mut x = f("conversion_best_worst", 1);
            x.numbers.insert("best_rate", bv);
            x.numbers
                .insert("best_companies", b.companies_with_closed_conv as f64);
            x.numbers.insert("worst_rate", wv);
            x.numbers
                .insert("worst_companies", w.companies_with_closed_conv as f64);
            x.numbers.insert(
                "cells",
                eligible(cells, min_cell)
                    .filter(|c| c.conv_to_feature_rate.is_some())
                    .count() as f64,
            );
            x.numbers.insert("min_cell", min_cell as f64);
            if let Some(o) = overall.conv_to_feature_rate {
                x.numbers.insert("overall_rate", o);
            }
            x.slices.insert("best", slice_of(b));
            x.slices.insert("worst", slice_of(w));
            out.push(x);
        }
    }

    // Segment conversion ranking.
    let segs = &r.panels.segment;
    if let (Some((b, bv)), Some((w, wv))) = (
        max_by(segs.iter().filter(|s| s.segment != Some("unknown")), |s| {
            s.conv_to_feature_rate
        }),
        min_by(segs.iter().filter(|s| s.segment != Some("unknown")), |s| {
            s.conv_to_feature_rate
        }),
    ) {
        if bv > wv {
            let mut x = f("segment_conversion", 2);
            x.numbers.insert("best_rate", bv);
            x.numbers.insert("worst_rate", wv);
            x.numbers.insert("gap", bv - wv);
            x.slices.insert("best", slice_of(b));
            x.slices.insert("worst", slice_of(w));
            out.push(x);
        }
    }

    // Response delay spread across cells.
    let fast = min_by(eligible(cells, min_cell), |c| c.avg_resp);
    let slow = max_by(eligible(cells, min_cell), |c| c.avg_resp);
    if let (Some((fc, fv)), Some((sc, sv))) = (fast, slow) {
        let spread = sv - fv;
        let mut x = f(
            if spread < UNIFORM_SLA_SPREAD_MINUTES {
                "response_uniform"
            } else {
                "response_spread"
            },
            3,
        );
        x.numbers.insert("fastest", fv);
        x.numbers.insert("slowest", sv);
        x.numbers.insert("spread", spread);
        if let (Some(p50), Some(p90)) = (overall.p50_resp, overall.p90_resp) {
            x.numbers.insert("p50", p50);
            x.numbers.insert("p90", p90);
        }
        x.slices.insert("fastest", slice_of(fc));
        x.slices.insert("slowest", slice_of(sc));
        out.push(x);
    }

    // Bot-first share range and its correlations.
    let lo = min_by(eligible(cells, min_cell), |c| c.bot_first_resp_share);
    let hi = max_by(eligible(cells, min_cell), |c| c.bot_first_resp_share);
    if let (Some((lc, lv)), Some((hc, hv)), Some(rv)) =
        (lo, hi, r.correlations.bot_share_vs_conversion.r)
    {
        let mut x = f("bot_share", 4);
        x.numbers.insert("min", lv);
        x.numbers.insert("max", hv);
        if let Some(o) = overall.bot_first_resp_share {
            x.numbers.insert("overall", o);
        }
        x.numbers.insert("r_conversion", rv);
        x.numbers
            .insert("n", r.correlations.bot_share_vs_conversion.n as f64);
        if let Some(rw) = r.correlations.bot_share_vs_weekly_retention.r {
            x.numbers.insert("r_weekly", rw);
        }
        x.keys.insert("strength", strength(rv));
        x.keys
            .insert("direction", if rv < 0.0 { "negative" } else { "positive" });
        x.slices.insert("min", slice_of(lc));
        x.slices.insert("max", slice_of(hc));
        out.push(x);
    }

    // Retention gradient across seat buckets.
    let seats: Vec<&SliceRow> = r
        .panels
        .seat_bucket
        .iter()
        .filter(|s| s.seat_bucket != Some("unknown") && s.weekly_retention.is_some())
        .collect();
    if let (Some(small), Some(large)) = (seats.first(), seats.last()) {
        let (sw, lw) = (
            small.weekly_retention.unwrap_or(0.0),
            large.weekly_retention.unwrap_or(0.0),
        );
        if seats.len() >= 2 && (sw - lw).abs() >= MIN_RETENTION_GRADIENT {
            let mut x = f("retention_gradient", 5);
            x.numbers.insert("small_weekly", sw);
            x.numbers.insert("large_weekly", lw);
            x.numbers.insert("weekly_gap", sw - lw);
            if let (Some(sm), Some(lm)) = (small.monthly_retention, large.monthly_retention) {
                x.numbers.insert("small_monthly", sm);
                x.numbers.insert("large_monthly", lm);
            }
            x.keys
                .insert("direction", if sw > lw { "falls" } else { "rises" });
            x.slices.insert("small", slice_of(small));
            x.slices.insert("large", slice_of(large));
            out.push(x);
        }
    }

    // High-value churn-watch accounts against the whole panel.
    let high_value: Vec<&SliceRow> = r
        .panels
        .segment_arr
        .iter()
        .filter(|s| {
            // The two highest ARR buckets (`110k_200k`, `200k_plus` by default).
            s.segment == Some("churn_watch")
                && s.arr_bucket
                    .is_some_and(|a| r.buckets.arr[3..].contains(&a))
        })
        .filter(|s| s.companies_total >= min_cell)
        .collect();
    if let Some(worst) = min_by(high_value.iter().copied(), |s| s.weekly_retention) {
        let (row, weekly) = worst;
        if let (Some(ow), Some(oc), Some(conv)) = (
            overall.weekly_retention,
            overall.conv_to_feature_rate,
            row.conv_to_feature_rate,
        ) {
            if weekly < ow || conv < oc {
                let mut x = f("high_value_churn_watch", 6);
                x.numbers.insert("weekly", weekly);
                x.numbers.insert("overall_weekly", ow);
                x.numbers.insert("conversion", conv);
                x.numbers.insert("overall_conversion", oc);
                x.numbers.insert("companies", row.companies_total as f64);
                if let (Some(m), Some(om)) = (row.monthly_retention, overall.monthly_retention) {
                    x.numbers.insert("monthly", m);
                    x.numbers.insert("overall_monthly", om);
                }
                x.slices.insert("cell", slice_of(row));
                out.push(x);
            }
        }
    }

    // Tertiles: conversion of the highest vs the lowest bot-share third.
    let mean_of = |group: &str| {
        let v: Vec<f64> = r
            .tertiles
            .iter()
            .filter(|t| t.by == "bot_share" && t.group == group)
            .filter_map(|t| t.conversion)
            .collect();
        (!v.is_empty()).then(|| (v.iter().sum::<f64>() / v.len() as f64, v.len()))
    };
    if let (Some((high, n)), Some((low, _))) = (mean_of("high"), mean_of("low")) {
        let mut x = f("bot_tertiles", 7);
        x.numbers.insert("high", high);
        x.numbers.insert("low", low);
        x.numbers.insert("groups", n as f64);
        x.keys.insert(
            "direction",
            if high < low {
                "lower"
            } else if high > low {
                "higher"
            } else {
                "same"
            },
        );
        out.push(x);
    }
    out.sort_by_key(|x| x.rank);
    out
}

/// Recommendations, each following from a finding that holds, with a data target.
pub fn recommendations(r: &ConversationUsage, findings: &[Finding]) -> Vec<Recommendation> {
    let mut out = Vec::new();
    let by_id = |id: &str| findings.iter().find(|f| f.id == id);
    let cells = &r.panels.segment_seat_arr;
    let rec = Recommendation::new;

    if let Some(f) = by_id("conversion_best_worst") {
        // Target: the best cell of the same segment as the worst one, else the best overall.
        let worst_seg = f.slices["worst"].get("segment").and_then(Value::as_str);
        let target = max_by(
            eligible(cells, r.min_cell).filter(|c| c.segment == worst_seg),
            |c| c.conv_to_feature_rate,
        )
        .filter(|(_, v)| *v > f.numbers["worst_rate"])
        .map(|(c, v)| (slice_of(c), v))
        .unwrap_or_else(|| (f.slices["best"].clone(), f.numbers["best_rate"]));
        let mut x = rec("lift_worst_conversion", f.id);
        x.numbers.insert("current", f.numbers["worst_rate"]);
        x.numbers.insert("target", target.1);
        x.slices.insert("cell", f.slices["worst"].clone());
        x.slices.insert("benchmark", target.0);
        out.push(x);
    }
    if let Some(f) = by_id("response_uniform") {
        let mut x = rec("tiered_sla", f.id);
        x.numbers.insert("target", f.numbers["fastest"]);
        x.numbers.insert(
            "current",
            f.numbers
                .get("p50")
                .copied()
                .unwrap_or(f.numbers["slowest"]),
        );
        x.slices.insert("benchmark", f.slices["fastest"].clone());
        out.push(x);
    }
    if let Some(f) = by_id("response_spread") {
        let mut x = rec("close_response_gap", f.id);
        x.numbers.insert("current", f.numbers["slowest"]);
        x.numbers.insert(
            "target",
            r.panels.overall.avg_resp.unwrap_or(f.numbers["fastest"]),
        );
        x.slices.insert("cell", f.slices["slowest"].clone());
        out.push(x);
    }
    if let Some(f) = by_id("bot_share") {
        let rv = f.numbers["r_conversion"];
        // Only a moderate or stronger association justifies moving the share.
        let (id, cell, bench, current, target) = if rv <= -0.3 {
            (
                "human_first_high_value",
                "max",
                "min",
                f.numbers["max"],
                f.numbers["min"],
            )
        } else if rv >= 0.3 {
            (
                "extend_bot_first",
                "min",
                "max",
                f.numbers["min"],
                f.numbers["max"],
            )
        } else {
            (
                "bot_content_not_share",
                "max",
                "min",
                f.numbers["max"],
                f.numbers["min"],
            )
        };
        let mut x = rec(id, f.id);
        x.numbers.insert("current", current);
        x.numbers.insert("target", target);
        x.numbers.insert("r", rv);
        x.slices.insert("cell", f.slices[cell].clone());
        x.slices.insert("benchmark", f.slices[bench].clone());
        out.push(x);
    }
    if let Some(f) = by_id("retention_gradient") {
        let falls = f.keys.get("direction") == Some(&"falls");
        let mut x = rec("large_account_cadence", f.id);
        x.numbers.insert(
            "current",
            if falls {
                f.numbers["large_weekly"]
            } else {
                f.numbers["small_weekly"]
            },
        );
        x.numbers.insert(
            "target",
            r.panels
                .overall
                .weekly_retention
                .unwrap_or(f.numbers["small_weekly"]),
        );
        x.slices.insert(
            "cell",
            f.slices[if falls { "large" } else { "small" }].clone(),
        );
        out.push(x);
    }
    if let Some(f) = by_id("high_value_churn_watch") {
        let mut x = rec("save_desk", f.id);
        x.numbers
            .insert("current_conversion", f.numbers["conversion"]);
        x.numbers
            .insert("target_conversion", f.numbers["overall_conversion"]);
        x.numbers.insert("current_weekly", f.numbers["weekly"]);
        x.numbers
            .insert("target_weekly", f.numbers["overall_weekly"]);
        x.slices.insert("cell", f.slices["cell"].clone());
        out.push(x);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strength_words() {
        assert_eq!(
            [
                strength(0.05),
                strength(-0.2),
                strength(0.4),
                strength(-0.9)
            ],
            ["none", "weak", "moderate", "strong"]
        );
    }
}
