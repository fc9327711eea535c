//! Charts of the tag-drivers report: the top topics of both groups side by side,
//! the share gap per topic, and the service comparison (rating and response).

use charming::component::{Axis, Grid, Legend};
use charming::datatype::{CompositeValue, DataPointItem};
use charming::element::{AxisType, ItemStyle, Label, LabelPosition};
use charming::series::Bar;
use charming::Chart;
use serde_json::json;

use super::comparison::Trend;
use super::metrics::TagDrivers;
use crate::render::charts::{
    bar_end_label, bar_point, num1, percent_axis, title, ChartSpec, MonthPanel,
};
use crate::render::format::Strings;
use crate::render::templates::Language;

/// Horizontal bars of shares (fractions), one per row, labelled in percent.
fn share_points(shares: impl Iterator<Item = f64>) -> Vec<CompositeValue> {
    shares
        .enumerate()
        .map(|(i, v)| bar_point(i, v * 100.0, "%", true))
        .collect()
}

/// Colours of the two groups, used the same way in every chart.
pub const AT_RISK_COLOR: &str = crate::render::charts::RISK;
pub const EXPANSION_COLOR: &str = crate::render::charts::GROWTH;

/// Canvas height for `n` horizontal bar categories.
fn bars_height(n: usize, per: u32) -> u32 {
    (110 + per * n as u32).clamp(260, 900)
}

pub fn charts(r: &TagDrivers, min_pp: f64, s: &Strings) -> Vec<ChartSpec> {
    let mut out = Vec::new();
    if r.top.is_empty() {
        return out;
    }
    let tags: Vec<String> = r.top.iter().map(|t| s.topic(&t.tag)).collect();
    let groups = [s.get("groups.at_risk"), s.get("groups.expansion")];

    // Topics the findings call a difference (threshold and test), for every chart.
    let verdicts = super::findings::topic_verdicts(r);
    let clear = r
        .top
        .iter()
        .zip(&verdicts)
        .filter(|(t, v)| v.holds() && t.difference_pp.abs() >= min_pp)
        .count();

    // 1. Grouped horizontal bars: the union of both top-10 lists, largest at-risk
    // over-representation first.
    {
        let chart = Chart::new()
            .title(title(s.get("charts.top_tags")))
            .color(vec![AT_RISK_COLOR, EXPANSION_COLOR])
            .legend(Legend::new().bottom(4))
            .grid(Grid::new().left(150).right(72).top(48).bottom(56))
            .x_axis(percent_axis(&s.get("charts.share")))
            .y_axis(
                Axis::new()
                    .type_(AxisType::Category)
                    .inverse(true)
                    .data(tags.clone()),
            )
            .series(
                Bar::new()
                    .name(groups[0].clone())
                    .label(bar_end_label())
                    .data(share_points(r.top.iter().map(|t| t.at_risk_share))),
            )
            .series(
                Bar::new()
                    .name(groups[1].clone())
                    .label(bar_end_label())
                    .data(share_points(r.top.iter().map(|t| t.expansion_share))),
            );
        let first = &r.top[0];
        let last = &r.top[r.top.len() - 1];
        out.push(ChartSpec {
            id: "top_tags",
            height: Some(bars_height(tags.len(), 34)),
            chart,
            takeaway: Some(json!({
                "id": "top_tags",
                "numbers": {
                    "risk_pp": first.printed_pp(), "growth_pp": -last.printed_pp(),
                    "tags": tags.len(), "clear": clear,
                    "largest_pp": r.top.iter().map(|t| t.printed_pp().abs()).fold(0.0, f64::max),
                },
                "slices": { "risk_tag": s.topic(&first.tag), "growth_tag": s.topic(&last.tag) },
            })),
        });
    }

    // 2. Diverging bars: at-risk share minus expansion share, per topic; coloured only
    // where the findings call it a difference (threshold and test).
    {
        let kind = |i: usize, t: &super::metrics::TopTag| {
            if t.difference_pp.abs() < min_pp || !verdicts.get(i).is_some_and(|v| v.holds()) {
                0
            } else if t.difference_pp > 0.0 {
                1
            } else {
                2
            }
        };
        let data: Vec<DataPointItem> = r
            .top
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let color = match kind(i, t) {
                    0 => "#b8c2cc",
                    1 => AT_RISK_COLOR,
                    _ => EXPANSION_COLOR,
                };
                DataPointItem::new(bar_point(i, t.printed_pp(), "", true))
                    .item_style(ItemStyle::new().color(color))
            })
            .collect();
        let chart = Chart::new()
            .title(title(s.get("charts.tag_gap")))
            .grid(Grid::new().left(150).right(50).top(48).bottom(40))
            .x_axis(
                Axis::new()
                    .type_(AxisType::Value)
                    .name(s.get("charts.pp_axis")),
            )
            .y_axis(
                Axis::new()
                    .type_(AxisType::Category)
                    .inverse(true)
                    .data(tags.clone()),
            )
            .series(Bar::new().label(bar_end_label()).data(data));
        let kinds: Vec<u8> = r.top.iter().enumerate().map(|(i, t)| kind(i, t)).collect();
        let risk = kinds.iter().filter(|k| **k == 1).count();
        let growth = kinds.iter().filter(|k| **k == 2).count();
        out.push(ChartSpec {
            id: "tag_gap",
            height: Some(bars_height(tags.len(), 24)),
            chart,
            takeaway: Some(json!({
                "id": "tag_gap",
                "numbers": { "risk": risk, "growth": growth, "min_pp": min_pp, "neutral": tags.len() - risk - growth },
            })),
        });
    }

    // 3. Service comparison: rating on the left axis, median response on the right.
    {
        let (risk, expansion) = (&r.groups[0], &r.groups[1]);
        // Equal medians (as printed) are a sentence, not two equal bars.
        let same_resp = match (risk.median_resp, expansion.median_resp) {
            (Some(a), Some(b)) => (a * 10.0).round() == (b * 10.0).round(),
            _ => false,
        };
        let mut chart = Chart::new()
            .title(title(s.get("charts.service")))
            .legend(Legend::new().bottom(4))
            .grid(Grid::new().left(60).right(70).top(52).bottom(64))
            .x_axis(Axis::new().type_(AxisType::Category).data(groups.to_vec()))
            .y_axis(
                Axis::new()
                    .type_(AxisType::Value)
                    .name(s.get("charts.rating_axis"))
                    .min(0)
                    .max(5),
            )
            .series(
                Bar::new()
                    .name(s.get("charts.avg_rating"))
                    .label(Label::new().show(true).position(LabelPosition::Top))
                    .item_style(ItemStyle::new().color("#2f5d8a"))
                    .data(vec![num2(risk.avg_rating), num2(expansion.avg_rating)]),
            );
        if !same_resp {
            chart = chart
                .y_axis(
                    Axis::new()
                        .type_(AxisType::Value)
                        .name(s.get("charts.minutes")),
                )
                .series(
                    Bar::new()
                        .name(s.get("charts.median_resp"))
                        .y_axis_index(1)
                        .label(Label::new().show(true).position(LabelPosition::Top))
                        .item_style(ItemStyle::new().color("#e07b39"))
                        .data(vec![num1(risk.median_resp), num1(expansion.median_resp)]),
                );
        }
        let takeaway = match (
            risk.avg_rating,
            expansion.avg_rating,
            risk.median_resp,
            expansion.median_resp,
        ) {
            (Some(ra), Some(ea), Some(rr), Some(er)) => Some(json!({
                "id": "service",
                "numbers": { "risk_rating": ra, "expansion_rating": ea, "risk_resp": rr, "expansion_resp": er, "same_resp": same_resp },
            })),
            _ => None,
        };
        out.push(ChartSpec {
            id: "service",
            height: Some(340),
            chart,
            takeaway,
        });
    }
    out
}

/// The trend's topics month by month, one panel per topic with both groups' shares,
/// the window's months shaded; none with fewer than two months of numbers.
pub fn trend_chart(t: &Trend, lang: &Language) -> Option<ChartSpec> {
    let s = &lang.strings;
    let with_numbers = t
        .months
        .iter()
        .filter(|m| m.values.conversations.iter().any(Option::is_some))
        .count();
    if with_numbers < 2 {
        return None;
    }
    let groups = [s.get("groups.at_risk"), s.get("groups.expansion")];
    let panels = t
        .topics
        .iter()
        .enumerate()
        .map(|(i, tag)| MonthPanel {
            title: s.topic(tag),
            percent: true,
            series: vec![
                (
                    groups[0].clone(),
                    AT_RISK_COLOR,
                    t.months.iter().map(|m| m.values.at_risk[i]).collect(),
                ),
                (
                    groups[1].clone(),
                    EXPANSION_COLOR,
                    t.months.iter().map(|m| m.values.expansion[i]).collect(),
                ),
            ],
        })
        .collect();
    crate::reports::trend::chart(
        &|months| lang.fill("charts.trend", &serde_json::json!({ "months": months })),
        s.get("charts.trend_window"),
        &t.months,
        panels,
    )
}

fn num2(v: Option<f64>) -> charming::datatype::CompositeValue {
    v.map_or_else(
        || charming::datatype::CompositeValue::from("-"),
        |v| charming::datatype::CompositeValue::from((v * 100.0).round() / 100.0),
    )
}
