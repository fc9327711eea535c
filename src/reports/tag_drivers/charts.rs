//! Charts of the tag-drivers report: the share gap per topic (coloured where the
//! findings' test holds) and the trend of the leading topics.

use charming::component::{Axis, Grid};
use charming::datatype::DataPointItem;
use charming::element::{AxisType, ItemStyle};
use charming::series::Bar;
use charming::Chart;
use serde_json::json;

use super::comparison::Trend;
use super::metrics::TagDrivers;
use crate::render::charts::{bar_end_label, bar_point, title, ChartSpec, MonthPanel, Support};
use crate::render::format::Strings;
use crate::render::templates::Language;
use crate::stats::claims::Verdict;

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

    // Topics the findings call a difference (threshold and test): a topic within the
    // threshold is no difference either, whatever its test.
    let verdicts: Vec<Verdict> = super::findings::topic_verdicts(r)
        .into_iter()
        .zip(&r.top)
        .map(|(v, t)| {
            if t.difference_pp.abs() < min_pp {
                Verdict::NoClearDifference
            } else {
                v
            }
        })
        .collect();

    // One chart of the topics: at-risk share minus expansion share per topic, coloured
    // only where the findings call it a difference. (The shares side by side said the
    // same again; the shares are in the topic table.) The service comparison is not
    // charted: two bars of a rating are the rating finding's sentence.
    let colour = |v: Option<&Verdict>| match v {
        Some(Verdict::Higher) => AT_RISK_COLOR,
        Some(Verdict::Lower) => EXPANSION_COLOR,
        _ => "#b8c2cc",
    };
    let data: Vec<DataPointItem> = r
        .top
        .iter()
        .enumerate()
        .map(|(i, t)| {
            DataPointItem::new(bar_point(i, t.printed_pp(), "", true))
                .item_style(ItemStyle::new().color(colour(verdicts.get(i))))
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
    let count = |want: Verdict| verdicts.iter().filter(|v| **v == want).count();
    // The topic leaning most to each side among those that hold.
    let most = |want: Verdict| {
        r.top
            .iter()
            .zip(&verdicts)
            .filter(|(_, v)| **v == want)
            .max_by(|a, b| a.0.printed_pp().abs().total_cmp(&b.0.printed_pp().abs()))
            .map(|(t, _)| json!({ "tag": s.topic(&t.tag), "pp": t.printed_pp().abs() }))
    };
    out.push(ChartSpec {
        id: "tag_gap",
        height: Some(bars_height(tags.len(), 24)),
        chart,
        support: Support::Differences(verdicts.clone()),
        carries: &["risk_topics", "growth_topics"],
        takeaway: Some(json!({
            "id": "tag_gap",
            "numbers": {
                "risk": count(Verdict::Higher), "growth": count(Verdict::Lower),
                "min_pp": min_pp, "neutral": count(Verdict::NoClearDifference),
            },
            "slices": { "risk": most(Verdict::Higher), "growth": most(Verdict::Lower) },
        })),
    });
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
