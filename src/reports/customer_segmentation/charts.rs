//! Charts of the customer-segmentation report: users and ARR by portfolio × plan
//! (stacked bars, money in the text's units), score and active rate over the same
//! grid (heatmaps coloured only where a cell differs from the others beyond chance),
//! the two short journeys (Sankey diagrams; the six-stage one was unreadable at page
//! size, its paths are in the tables), the distributions of the other dimensions and
//! the ARR of trained and diverse users (greyed where the lift does not hold).

use charming::component::{Axis, Grid, Legend};
use charming::datatype::{CompositeValue, DataPointItem};
use charming::element::{AxisType, ItemStyle, Label, LabelPosition};
use charming::series::Bar;
use charming::Chart;
use serde_json::json;

use super::metrics::{value_order, CrossRow, Flow, Segmentation};
use crate::render::charts::{
    bar_end_label, bar_point, labelled_bar_point, money_axis, percent_axis, sankey, tested_heatmap,
    title, ChartSpec, Support, TestedCell, BAR_LABEL, NEUTRAL,
};
use crate::render::format::{NumberFormat, Strings};
use crate::render::templates::Language;
use crate::stats::claims::{
    means_against_rest, printed_difference, proportions_against_rest, Proportion, Verdict,
};

/// The grey of a bar whose difference does not hold.
const NO_DIFFERENCE: &str = "#b8c2cc";

/// Values of a dimension present in `present`, in the dimension's order (others
/// after, by name).
fn ordered(dim: &str, present: impl IntoIterator<Item = String>) -> Vec<String> {
    let order = value_order(dim);
    let mut v: Vec<String> = present.into_iter().collect();
    v.sort();
    v.dedup();
    v.sort_by_key(|x| {
        (
            order.iter().position(|o| o == x).unwrap_or(usize::MAX),
            x.clone(),
        )
    });
    v
}

/// The value a stacked chart draws, and its axis with the divisor its values are
/// drawn in (money in the text's units).
struct Stacked {
    value: fn(&CrossRow) -> f64,
    axis: Axis,
    divisor: f64,
}

fn stacked(
    id: &'static str,
    s: &Strings,
    cross: &[CrossRow],
    (portfolios, plans): (&[String], &[String]),
    by: Stacked,
) -> Chart {
    let Stacked {
        value,
        axis,
        divisor,
    } = by;
    let mut chart = Chart::new()
        .title(title(s.get(&format!("charts.{id}"))))
        .color(NEUTRAL.to_vec())
        .legend(Legend::new().bottom(4))
        .grid(Grid::new().left(96).right(24).top(52).bottom(64))
        .x_axis(
            Axis::new().type_(AxisType::Category).data(
                portfolios
                    .iter()
                    .map(|p| s.label("portfolio_group", p))
                    .collect(),
            ),
        )
        .y_axis(axis);
    for plan in plans {
        chart = chart.series(
            Bar::new()
                .name(s.label("plan_type", plan))
                .stack("total")
                .data(
                    portfolios
                        .iter()
                        .map(|p| {
                            let v = cross
                                .iter()
                                .find(|c| c.portfolio_group == p && &c.plan_type == plan)
                                .map_or(0.0, value);
                            CompositeValue::from((v / divisor * 100.0).round() / 100.0)
                        })
                        .collect(),
                ),
        );
    }
    chart
}

/// Node label of a stage value: unique across stages (the Sankey joins by name).
fn node(s: &Strings, dim: &str, value: &str) -> String {
    s.get(&format!("sankey.{dim}.{value}"))
}

/// Risk nodes: inactive users and their ARR.
fn is_risk(dim: &str, value: &str) -> bool {
    value == "inactive" && (dim == "status" || dim == "arr_group")
}

fn journey(
    id: &'static str,
    carries: &'static [&'static str],
    s: &Strings,
    format: &NumberFormat,
    flows: &[Flow],
    users_left_out: usize,
) -> Option<ChartSpec> {
    if flows.is_empty() {
        return None;
    }
    // Nodes in stage order, values in each dimension's order.
    let mut stages: Vec<&'static str> = Vec::new();
    for f in flows {
        for d in [f.from_dimension, f.to_dimension] {
            if !stages.contains(&d) {
                stages.push(d);
            }
        }
    }
    // A risk node's label carries its ARR (what flows into it; out of it at the first
    // stage): the widths are users, the label says what they are worth.
    let node_arr = |d: &str, v: &str| -> f64 {
        let inflow: f64 = flows
            .iter()
            .filter(|f| f.to_dimension == d && f.to == v)
            .map(|f| f.arr)
            .sum();
        if inflow > 0.0 {
            inflow
        } else {
            flows
                .iter()
                .filter(|f| f.from_dimension == d && f.from == v)
                .map(|f| f.arr)
                .sum()
        }
    };
    let name = |d: &str, v: &str| -> String {
        if is_risk(d, v) {
            format!("{} · {}", node(s, d, v), format.money(node_arr(d, v)))
        } else {
            node(s, d, v)
        }
    };
    let mut nodes = Vec::new();
    for d in &stages {
        let values = flows.iter().flat_map(|f| {
            [
                (f.from_dimension == *d).then(|| f.from.clone()),
                (f.to_dimension == *d).then(|| f.to.clone()),
            ]
            .into_iter()
            .flatten()
        });
        for v in ordered(d, values) {
            nodes.push((name(d, &v), is_risk(d, &v)));
        }
    }
    let links: Vec<(String, String, f64)> = flows
        .iter()
        .map(|f| {
            (
                name(f.from_dimension, &f.from),
                name(f.to_dimension, &f.to),
                f.users as f64,
            )
        })
        .collect();
    let widest = flows
        .iter()
        .max_by(|a, b| a.users.cmp(&b.users).then_with(|| b.from.cmp(&a.from)))?;
    Some(ChartSpec {
        id,
        support: Support::Composition,
        carries,
        height: Some(420),
        chart: sankey(s.get(&format!("charts.{id}")), nodes, links),
        takeaway: Some(json!({
            "id": id,
            "numbers": {
                "users": widest.users,
                "diagram_users": flows
                    .iter()
                    .filter(|f| f.from_dimension == stages[0])
                    .map(|f| f.users)
                    .sum::<usize>(),
                "left_out": users_left_out,
            },
            "slices": {
                "from": node(s, widest.from_dimension, &widest.from),
                "to": node(s, widest.to_dimension, &widest.to),
            },
        })),
    })
}

/// One tested heatmap of the portfolio × plan grid: the cell's value (a 0–1 rate
/// is drawn in percent), the overall value it is read against and each cell's
/// verdict against the other cells.
struct GridMetric {
    id: &'static str,
    value: fn(&CrossRow) -> Option<f64>,
    overall: Option<f64>,
    verdicts: Vec<Verdict>,
    suffix: &'static str,
}

fn grid_heatmap(
    m: &GridMetric,
    cross: &[CrossRow],
    (portfolios, plans): (&[String], &[String]),
    lang: &Language,
) -> Option<ChartSpec> {
    let s = &lang.strings;
    let overall = m.overall?;
    let printed = |v: f64| crate::stats::claims::printed(v, 1.0, 1);
    let mut cells = Vec::new();
    // The cells in the grid's order with their verdicts: (row, value, verdict).
    let mut tested: Vec<(&CrossRow, f64, Verdict)> = Vec::new();
    for (c, verdict) in cross.iter().zip(&m.verdicts) {
        let (Some(x), Some(y), Some(v)) = (
            plans.iter().position(|p| *p == c.plan_type),
            portfolios.iter().position(|p| p == c.portfolio_group),
            (m.value)(c),
        ) else {
            continue;
        };
        cells.push(TestedCell {
            x,
            y,
            value: v,
            difference: verdict
                .holds()
                .then(|| printed_difference(v, overall, 1.0, 1)),
        });
        tested.push((c, v, *verdict));
    }
    if cells.len() < 2 {
        return None;
    }
    let extreme = |want: Verdict, max: bool| {
        tested
            .iter()
            .filter(|t| t.2 == want)
            .max_by(|a, b| if max { a.1.total_cmp(&b.1) } else { b.1.total_cmp(&a.1) })
            .map(|(c, v, _)| {
                json!({ "value": printed(*v), "portfolio_group": c.portfolio_group, "plan_type": c.plan_type })
            })
    };
    let count = |want: Verdict| tested.iter().filter(|t| t.2 == want).count();
    let numbers = json!({
        "overall": printed(overall), "cells": tested.len(),
        "above": count(Verdict::Higher), "below": count(Verdict::Lower),
        "grey": count(Verdict::NoClearDifference),
    });
    let chart = tested_heatmap(
        s.get(&format!("charts.{}", m.id)),
        (
            plans.iter().map(|p| s.label("plan_type", p)).collect(),
            portfolios
                .iter()
                .map(|p| s.label("portfolio_group", p))
                .collect(),
        ),
        &cells,
        m.suffix,
        true,
        lang.fill(
            &format!("charts.{}_scale", m.id),
            &json!({ "overall": printed(overall) }),
        ),
    );
    Some(ChartSpec {
        id: m.id,
        height: Some(380),
        chart,
        support: Support::Differences(m.verdicts.clone()),
        carries: &[],
        takeaway: Some(json!({
            "id": m.id,
            "numbers": numbers,
            "slices": {
                "best": extreme(Verdict::Higher, true),
                "worst": extreme(Verdict::Lower, false),
            },
        })),
    })
}

pub fn charts(r: &Segmentation, lang: &Language) -> Vec<ChartSpec> {
    let (s, format) = (&lang.strings, &lang.format);
    let mut out = Vec::new();
    let cross = &r.portfolio_plan;
    let portfolios = ordered(
        "portfolio_group",
        cross.iter().map(|c| c.portfolio_group.to_owned()),
    );
    let plans = ordered("plan_type", cross.iter().map(|c| c.plan_type.clone()));
    let grid = (portfolios.as_slice(), plans.as_slice());
    if !cross.is_empty() {
        let top_users = cross.iter().max_by_key(|c| c.users);
        out.push(ChartSpec {
            id: "users_by_segment",
            height: None,
            support: Support::Composition,
            carries: &["largest_segment"],
            chart: stacked(
                "users_by_segment",
                s,
                cross,
                grid,
                Stacked {
                    value: |c| c.users as f64,
                    axis: Axis::new()
                        .type_(AxisType::Value)
                        .name(s.get("charts.users")),
                    divisor: 1.0,
                },
            ),
            takeaway: top_users.map(|c| {
                json!({ "id": "users_by_segment", "numbers": { "users": c.users, "share": c.share },
                        "slices": { "portfolio_group": c.portfolio_group, "plan_type": c.plan_type } })
            }),
        });
        let top_arr = cross
            .iter()
            .max_by(|a, b| a.total_arr.total_cmp(&b.total_arr));
        // The tallest stack sets the axis' unit.
        let tallest = portfolios
            .iter()
            .map(|p| {
                cross
                    .iter()
                    .filter(|c| c.portfolio_group == p)
                    .map(|c| c.total_arr)
                    .sum::<f64>()
            })
            .fold(0.0, f64::max);
        let (axis, divisor) = money_axis(format, s.get("charts.arr"), tallest);
        out.push(ChartSpec {
            id: "arr_by_segment",
            height: None,
            support: Support::Composition,
            carries: &["top_arr_segment"],
            chart: stacked(
                "arr_by_segment",
                s,
                cross,
                grid,
                Stacked {
                    value: |c| c.total_arr,
                    axis,
                    divisor,
                },
            ),
            takeaway: top_arr.map(|c| {
                json!({ "id": "arr_by_segment", "numbers": { "arr_share": c.arr_share, "share": c.share },
                        "slices": { "portfolio_group": c.portfolio_group, "plan_type": c.plan_type } })
            }),
        });
        // Each cell against the other cells, all cells corrected together: only a
        // cell that differs beyond chance is coloured, and a grid where none does is
        // not drawn (the tables print every cell).
        let nps: Vec<_> = cross.iter().map(|c| c.nps).collect();
        let active: Vec<Proportion> = cross
            .iter()
            .map(|c| Proportion {
                k: (c.active_rate * c.users as f64).round(),
                n: c.users as f64,
            })
            .collect();
        for metric in [
            GridMetric {
                id: "heatmap_nps",
                value: |c| c.avg_nps,
                overall: r.portfolio_overall.avg_nps,
                verdicts: means_against_rest(&nps),
                suffix: "",
            },
            GridMetric {
                id: "heatmap_active",
                value: |c| Some(c.active_rate * 100.0),
                overall: Some(r.portfolio_overall.active_rate * 100.0),
                verdicts: proportions_against_rest(&active),
                suffix: "%",
            },
        ] {
            out.extend(grid_heatmap(&metric, cross, grid, lang));
        }
    }
    // Journeys through the portfolio stage leave out the users without a portfolio.
    // The six-stage journey is not drawn: unreadable at page size, and its paths are
    // the inactive-path table's rows.
    out.extend(journey(
        "sankey_engagement",
        &["support_by_engagement"],
        s,
        format,
        &r.engagement_journey,
        0,
    ));
    // Portfolio → active status: where the inactive users and their ARR are.
    out.extend(journey(
        "sankey_portfolio",
        &["arr_at_risk"],
        s,
        format,
        &r.portfolio_journey,
        r.users_without_portfolio,
    ));
    out.push(distributions(r, s));
    out.push(lift_chart(r, s, format));
    out
}

/// Share of users per value of each behavioural dimension, one colour per dimension.
fn distributions(r: &Segmentation, s: &Strings) -> ChartSpec {
    let dims = [
        "engagement",
        "ticket_range",
        "diversity_group",
        "arr_group",
        "training",
    ];
    let mut labels = Vec::new();
    let mut data = Vec::new();
    for (i, dim) in dims.iter().enumerate() {
        for d in r.dimensions.iter().filter(|d| d.dimension == *dim) {
            labels.push(format!(
                "{} · {}",
                s.get(&format!("dimensions.short_{dim}")),
                s.label(dim, &d.value)
            ));
            data.push(
                DataPointItem::new(bar_point(labels.len() - 1, d.share * 100.0, "%", true))
                    .item_style(ItemStyle::new().color(NEUTRAL[i % NEUTRAL.len()])),
            );
        }
    }
    let chart = Chart::new()
        .title(title(s.get("charts.distributions")))
        .grid(Grid::new().left(190).right(72).top(48).bottom(36))
        .x_axis(percent_axis(&s.get("charts.share")))
        .y_axis(
            Axis::new()
                .type_(AxisType::Category)
                .inverse(true)
                .data(labels.clone()),
        )
        .series(Bar::new().label(bar_end_label()).data(data));
    let medium = r
        .dimensions
        .iter()
        .filter(|d| d.dimension == "engagement")
        .max_by(|a, b| a.share.total_cmp(&b.share));
    ChartSpec {
        id: "distributions",
        support: Support::Composition,
        carries: &[],
        height: Some((90 + 22 * labels.len() as u32).clamp(300, 900)),
        chart,
        takeaway: medium.map(|d| {
            json!({ "id": "distributions", "numbers": { "share": d.share }, "slices": { "engagement": d.value } })
        }),
    }
}

/// Average ARR with and without training, and by event diversity.
/// The lift of `dim`'s first value over its second as the bars' labels print their
/// average ARR (whole dollars): the takeaway's percentage is the one a reader
/// computes from them.
fn printed_lift(r: &Segmentation, dim: &str, [with, without]: [&str; 2]) -> Option<f64> {
    let avg = |v: &str| {
        r.dimensions
            .iter()
            .find(|d| d.dimension == dim && d.value == v)
            .map(|d| crate::stats::claims::printed(d.avg_arr, 1.0, 0))
    };
    crate::stats::claims::printed_ratio_change(avg(with)?, avg(without)?)
}

/// A lift's verdict as the findings read it: the raw ARR difference passes Welch's
/// test, upwards or downwards.
fn lift_verdict(i: &super::metrics::Impact) -> Verdict {
    match (i.arr_p, i.arr_lift) {
        (Some(p), Some(lift)) if p < crate::stats::claims::ALPHA => {
            if lift >= 0.0 {
                Verdict::Higher
            } else {
                Verdict::Lower
            }
        }
        _ => Verdict::NoClearDifference,
    }
}

/// Average ARR by training and by event diversity, one axis of money (the active
/// rates are in the findings' sentences: a second axis would align dollars with
/// per cent); a group's bars are grey where its lift does not hold.
fn lift_chart(r: &Segmentation, s: &Strings, format: &NumberFormat) -> ChartSpec {
    let verdicts = [lift_verdict(&r.training), lift_verdict(&r.diversity)];
    let mut labels = Vec::new();
    let mut rows: Vec<(f64, f64, &'static str)> = Vec::new();
    for ((dim, values), verdict) in [
        ("training", ["yes", "no"].as_slice()),
        ("diversity_group", ["0-4", "5-6", "7+"].as_slice()),
    ]
    .into_iter()
    .zip(verdicts)
    {
        for v in values {
            if let Some(d) = r
                .dimensions
                .iter()
                .find(|d| d.dimension == dim && d.value == *v)
            {
                labels.push(format!(
                    "{}\n{}",
                    s.get(&format!("dimensions.short_{dim}")),
                    s.label(dim, v)
                ));
                let colour = if verdict.holds() {
                    NEUTRAL[0]
                } else {
                    NO_DIFFERENCE
                };
                rows.push((d.avg_arr, d.avg_arr.round(), colour));
            }
        }
    }
    let tallest = rows.iter().map(|r| r.1).fold(0.0, f64::max);
    let (axis, divisor) = money_axis(format, s.get("charts.avg_arr"), tallest);
    let data: Vec<DataPointItem> = rows
        .iter()
        .enumerate()
        .map(|(i, (raw, whole, colour))| {
            // Labelled in whole dollars, as the takeaway's lift divides them.
            DataPointItem::new(labelled_bar_point(
                i,
                whole / divisor,
                format.money_whole(*raw),
                false,
            ))
            .item_style(ItemStyle::new().color(*colour))
        })
        .collect();
    let chart = Chart::new()
        .title(title(s.get("charts.lift")))
        .grid(Grid::new().left(80).right(30).top(52).bottom(64))
        .x_axis(Axis::new().type_(AxisType::Category).data(labels))
        .y_axis(axis)
        .series(
            Bar::new()
                .name(s.get("charts.avg_arr"))
                .label(
                    Label::new()
                        .show(true)
                        .position(LabelPosition::Top)
                        .font_size(9)
                        .formatter(BAR_LABEL),
                )
                .data(data),
        );
    ChartSpec {
        id: "lift",
        height: Some(360),
        chart,
        support: Support::Differences(verdicts.to_vec()),
        carries: &["training_lift", "diversity_lift"],
        takeaway: printed_lift(r, "training", ["yes", "no"])
            .zip(printed_lift(r, "diversity_group", ["7+", "0-4"]))
            .map(|(t, d)| {
                json!({ "id": "lift", "numbers": {
                    "training": t.abs(), "diversity": d.abs(),
                    "training_up": t >= 0.0, "diversity_up": d >= 0.0,
                    "training_holds": verdicts[0].holds(), "diversity_holds": verdicts[1].holds(),
                } })
            }),
    }
}
