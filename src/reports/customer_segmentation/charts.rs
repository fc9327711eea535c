//! Charts of the customer-segmentation report: users and ARR by portfolio × plan
//! (stacked bars), NPS and active rate over the same grid (heatmaps), the three
//! journeys (Sankey diagrams) and the distributions of the other dimensions.

use charming::component::{Axis, Grid, Legend};
use charming::datatype::{CompositeValue, DataPointItem};
use charming::element::{AxisType, ItemStyle, Label, LabelPosition};
use charming::series::Bar;
use charming::Chart;
use serde_json::json;

use super::metrics::{value_order, CrossRow, Flow, Segmentation};
use crate::render::charts::{
    bar_end_label, bar_point, labelled_bar_point, matrix_heatmap, percent_axis, sankey, title,
    ChartSpec, BAR_LABEL, NEUTRAL,
};
use crate::render::format::{NumberFormat, Strings};

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

fn stacked(
    id: &'static str,
    s: &Strings,
    cross: &[CrossRow],
    portfolios: &[String],
    plans: &[String],
    value: fn(&CrossRow) -> f64,
    axis: String,
) -> Chart {
    let mut chart = Chart::new()
        .title(title(s.get(&format!("charts.{id}"))))
        .color(NEUTRAL.to_vec())
        .legend(Legend::new().bottom(4))
        .grid(Grid::new().left(80).right(24).top(52).bottom(64))
        .x_axis(
            Axis::new().type_(AxisType::Category).data(
                portfolios
                    .iter()
                    .map(|p| s.label("portfolio_group", p))
                    .collect(),
            ),
        )
        .y_axis(Axis::new().type_(AxisType::Value).name(axis));
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
                            CompositeValue::from(v.round())
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
        height: Some(if stages.len() > 3 { 560 } else { 420 }),
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

pub fn charts(r: &Segmentation, s: &Strings, format: &NumberFormat) -> Vec<ChartSpec> {
    let mut out = Vec::new();
    let cross = &r.portfolio_plan;
    let portfolios = ordered(
        "portfolio_group",
        cross.iter().map(|c| c.portfolio_group.to_owned()),
    );
    let plans = ordered("plan_type", cross.iter().map(|c| c.plan_type.clone()));
    if !cross.is_empty() {
        let top_users = cross.iter().max_by_key(|c| c.users);
        out.push(ChartSpec {
            id: "users_by_segment",
            height: None,
            chart: stacked(
                "users_by_segment",
                s,
                cross,
                &portfolios,
                &plans,
                |c| c.users as f64,
                s.get("charts.users"),
            ),
            takeaway: top_users.map(|c| {
                json!({ "id": "users_by_segment", "numbers": { "users": c.users, "share": c.share },
                        "slices": { "portfolio_group": c.portfolio_group, "plan_type": c.plan_type } })
            }),
        });
        let top_arr = cross
            .iter()
            .max_by(|a, b| a.total_arr.total_cmp(&b.total_arr));
        out.push(ChartSpec {
            id: "arr_by_segment",
            height: None,
            chart: stacked(
                "arr_by_segment",
                s,
                cross,
                &portfolios,
                &plans,
                |c| c.total_arr,
                s.get("charts.arr"),
            ),
            takeaway: top_arr.map(|c| {
                json!({ "id": "arr_by_segment", "numbers": { "arr_share": c.arr_share, "share": c.share },
                        "slices": { "portfolio_group": c.portfolio_group, "plan_type": c.plan_type } })
            }),
        });
        let grid = |value: fn(&CrossRow) -> Option<f64>| -> Vec<(usize, usize, f64)> {
            cross
                .iter()
                .filter_map(|c| {
                    let x = plans.iter().position(|p| *p == c.plan_type)?;
                    let y = portfolios.iter().position(|p| p == c.portfolio_group)?;
                    Some((x, y, value(c)?))
                })
                .collect()
        };
        let plan_labels: Vec<String> = plans.iter().map(|p| s.label("plan_type", p)).collect();
        let portfolio_labels: Vec<String> = portfolios
            .iter()
            .map(|p| s.label("portfolio_group", p))
            .collect();
        for (id, value, suffix) in [
            (
                "heatmap_nps",
                (|c: &CrossRow| c.avg_nps) as fn(&CrossRow) -> Option<f64>,
                "",
            ),
            (
                "heatmap_active",
                |c: &CrossRow| Some(c.active_rate * 100.0),
                "%",
            ),
        ] {
            let cells = grid(value);
            if cells.is_empty() {
                continue;
            }
            let hi = cross
                .iter()
                .filter(|c| value(c).is_some())
                .max_by(|a, b| value(a).unwrap_or(0.0).total_cmp(&value(b).unwrap_or(0.0)));
            let lo = cross
                .iter()
                .filter(|c| value(c).is_some())
                .min_by(|a, b| value(a).unwrap_or(0.0).total_cmp(&value(b).unwrap_or(0.0)));
            let takeaway = match (hi, lo) {
                (Some(h), Some(l)) if cells.len() > 1 => Some(json!({
                    "id": id,
                    "numbers": { "best": value(h), "worst": value(l) },
                    "slices": {
                        "best": { "portfolio_group": h.portfolio_group, "plan_type": h.plan_type },
                        "worst": { "portfolio_group": l.portfolio_group, "plan_type": l.plan_type },
                    },
                })),
                _ => None,
            };
            out.push(ChartSpec {
                id,
                height: Some(360),
                chart: matrix_heatmap(
                    s.get(&format!("charts.{id}")),
                    plan_labels.clone(),
                    portfolio_labels.clone(),
                    &cells,
                    suffix,
                ),
                takeaway,
            });
        }
    }
    // Journeys through the portfolio stage leave out the users without a portfolio.
    let out_of_portfolio = r.users_without_portfolio;
    out.extend(journey(
        "sankey_journey",
        s,
        format,
        &r.journey,
        out_of_portfolio,
    ));
    out.extend(journey(
        "sankey_engagement",
        s,
        format,
        &r.engagement_journey,
        0,
    ));
    out.extend(journey(
        "sankey_portfolio",
        s,
        format,
        &r.portfolio_journey,
        out_of_portfolio,
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

fn lift_chart(r: &Segmentation, s: &Strings, format: &NumberFormat) -> ChartSpec {
    let mut labels = Vec::new();
    let mut arr = Vec::new();
    let mut active = Vec::new();
    for (dim, values) in [
        ("training", ["yes", "no"].as_slice()),
        ("diversity_group", ["0-4", "5-6", "7+"].as_slice()),
    ] {
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
                // Whole dollars, as the takeaway's lift divides them.
                arr.push(labelled_bar_point(
                    labels.len() - 1,
                    d.avg_arr.round(),
                    format.money_whole(d.avg_arr),
                    false,
                ));
                active.push(bar_point(
                    labels.len() - 1,
                    d.active_rate * 100.0,
                    "%",
                    false,
                ));
            }
        }
    }
    let chart = Chart::new()
        .title(title(s.get("charts.lift")))
        .legend(Legend::new().bottom(4))
        .grid(Grid::new().left(80).right(70).top(52).bottom(80))
        .x_axis(Axis::new().type_(AxisType::Category).data(labels))
        .y_axis(
            Axis::new()
                .type_(AxisType::Value)
                .name(s.get("charts.avg_arr")),
        )
        .y_axis(percent_axis(&s.get("charts.active_rate")).max(100))
        .series(
            Bar::new()
                .name(s.get("charts.avg_arr"))
                .item_style(ItemStyle::new().color(NEUTRAL[0]))
                .label(
                    Label::new()
                        .show(true)
                        .position(LabelPosition::Top)
                        .font_size(9)
                        .formatter(BAR_LABEL),
                )
                .data(arr),
        )
        .series(
            Bar::new()
                .name(s.get("charts.active_rate"))
                .y_axis_index(1)
                .item_style(ItemStyle::new().color(NEUTRAL[2]))
                .label(
                    Label::new()
                        .show(true)
                        .position(LabelPosition::Top)
                        .font_size(9)
                        .formatter(BAR_LABEL),
                )
                .data(active),
        );
    ChartSpec {
        id: "lift",
        height: Some(380),
        chart,
        takeaway: printed_lift(r, "training", ["yes", "no"])
            .zip(printed_lift(r, "diversity_group", ["7+", "0-4"]))
            .map(|(t, d)| {
                // Said as a difference only where the findings' test holds.
                let holds = |i: &super::metrics::Impact| {
                    i.arr_p.is_some_and(|p| p < crate::stats::claims::ALPHA)
                };
                json!({ "id": "lift", "numbers": {
                    "training": t.abs(), "diversity": d.abs(),
                    "training_up": t >= 0.0, "diversity_up": d >= 0.0,
                    "training_holds": holds(&r.training), "diversity_holds": holds(&r.diversity),
                } })
            }),
    }
}
