//! Charts of a report: built with charming's typed API from the run's numbers and a
//! language's strings (titles, axis names and category labels are localized), then
//! rendered to SVG by the process's chart engine. Each chart carries the record its
//! one-line takeaway is written from.

pub mod engine;

use charming::component::Title;
use charming::datatype::CompositeValue;
use charming::element::TextStyle;
use charming::Chart;
use serde_json::{json, Value};

pub use engine::{engine, EngineError, ECHARTS_VERSION};

/// Width and height of every chart, in SVG pixels.
pub const WIDTH: u32 = 760;
pub const HEIGHT: u32 = 400;

/// The fonts chart text asks for; the PDF embeds the same faces.
pub const FONT_FAMILY: &str = "Noto Sans, Noto Sans CJK SC, sans-serif";

/// A built chart, before rendering.
pub struct ChartSpec {
    pub id: &'static str,
    pub chart: Chart,
    /// The numbers its takeaway cites (`None`: nothing to say).
    pub takeaway: Option<Value>,
    /// Canvas height when the default does not fit (tall Sankeys, long bar lists).
    pub height: Option<u32>,
}

/// A rendered chart.
#[derive(Debug, Clone)]
pub struct RenderedChart {
    pub id: &'static str,
    pub svg: String,
    /// Time the chart engine spent rendering it.
    pub engine_time: std::time::Duration,
}

pub(crate) const PALETTE: [&str; 6] = [
    "#2f5d8a", "#e07b39", "#3f9c6d", "#c44e52", "#8172b2", "#937860",
];

/// Renders a spec: the typed chart plus the engine-level options every chart shares.
pub fn render(spec: &ChartSpec) -> Result<RenderedChart, EngineError> {
    let mut option: Value =
        serde_json::from_str(&spec.chart.to_string()).map_err(|e| EngineError::Render {
            chart: spec.id.to_owned(),
            message: e.to_string(),
        })?;
    if let Value::Object(o) = &mut option {
        o.insert("animation".into(), json!(false));
        o.insert("backgroundColor".into(), json!("#ffffff"));
        o.insert("textStyle".into(), json!({ "fontFamily": FONT_FAMILY }));
    }
    let (svg, engine_time) = engine()?.render_timed(
        spec.id,
        option.to_string(),
        WIDTH,
        spec.height.unwrap_or(HEIGHT),
    )?;
    Ok(RenderedChart {
        id: spec.id,
        svg,
        engine_time,
    })
}

pub(crate) fn pct(v: Option<f64>) -> CompositeValue {
    v.map_or_else(
        || CompositeValue::from("-"),
        |v| CompositeValue::from((v * 1000.0).round() / 10.0),
    )
}

pub(crate) fn num1(v: Option<f64>) -> CompositeValue {
    v.map_or_else(
        || CompositeValue::from("-"),
        |v| CompositeValue::from((v * 10.0).round() / 10.0),
    )
}

pub(crate) fn title(text: String) -> Title {
    Title::new()
        .text(text)
        .left("center")
        .top(6)
        .text_style(TextStyle::new().font_size(15).color("#1f2d3d"))
}

/// A value axis of percentages, named `<name> (%)`, ticks labelled `10%`.
pub(crate) fn percent_axis(name: &str) -> charming::component::Axis {
    use charming::element::{AxisLabel, AxisType};
    charming::component::Axis::new()
        .type_(AxisType::Value)
        .name(format!("{name} (%)"))
        .axis_label(AxisLabel::new().formatter("{value}%"))
}

/// The small value label at the end of a horizontal bar (`{c}` or `{c}%`).
pub(crate) fn bar_end_label(formatter: &'static str) -> charming::element::Label {
    use charming::element::{Label, LabelPosition};
    Label::new()
        .show(true)
        .position(LabelPosition::Right)
        .font_size(9)
        .formatter(formatter)
}

/// A heatmap of a value over two category axes; `cells` are (x, y, value), labelled
/// as numbers or (`label_suffix` `%`) percentages.
pub fn matrix_heatmap(
    text: String,
    x: Vec<String>,
    y: Vec<String>,
    cells: &[(usize, usize, f64)],
    label_suffix: &'static str,
) -> Chart {
    use charming::component::{Axis, Grid, VisualMap, VisualMapChannel};
    use charming::datatype::DataPoint;
    use charming::element::{AxisType, Label, Orient};
    use charming::series::Heatmap;
    let (min, max) = cells
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), c| {
            (a.min(c.2), b.max(c.2))
        });
    let (min, max) = match (min.is_finite(), min == max) {
        (false, _) => (0.0, 1.0),
        (true, true) => (min - 1.0, max + 1.0),
        (true, false) => (min, max),
    };
    Chart::new()
        .title(title(text))
        .grid(Grid::new().left(110).right(30).top(52).bottom(84))
        .x_axis(Axis::new().type_(AxisType::Category).data(x))
        .y_axis(Axis::new().type_(AxisType::Category).inverse(true).data(y))
        .visual_map(
            VisualMap::new()
                .min((min * 10.0).floor() / 10.0)
                .max((max * 10.0).ceil() / 10.0)
                .calculable(false)
                .orient(Orient::Horizontal)
                .left("center")
                .bottom(8)
                .item_height(240)
                .item_width(12)
                .in_range(VisualMapChannel::new().color(vec!["#f1f5fb", "#6b9bd1", "#1f4e79"])),
        )
        .series(
            Heatmap::new()
                .label(
                    Label::new()
                        .show(true)
                        .font_size(12)
                        .formatter(if label_suffix == "%" {
                            "{@[2]}%"
                        } else {
                            "{@[2]}"
                        }),
                )
                .data(
                    cells
                        .iter()
                        .map(|(xi, yi, v)| {
                            vec![
                                DataPoint::from(*xi as i64),
                                DataPoint::from(*yi as i64),
                                DataPoint::from((v * 10.0).round() / 10.0),
                            ]
                        })
                        .collect(),
                ),
        )
}

/// A Sankey diagram: nodes by unique label, in stage order, and weighted links.
pub fn sankey(text: String, nodes: Vec<String>, links: Vec<(String, String, f64)>) -> Chart {
    use charming::element::{Label, LineStyle};
    use charming::series::Sankey;
    Chart::new()
        .title(title(text))
        .color(PALETTE.to_vec())
        .series(
            Sankey::new()
                .left(12)
                .right(110)
                .top(48)
                .bottom(16)
                // Keep the nodes in the given (stage value) order.
                .layout_iterations(0u64)
                .label(Label::new().font_size(10).color("#1f2d3d"))
                .line_style(LineStyle::new().color("source").opacity(0.35))
                .nodes(nodes)
                .links(links),
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn option_values_round_for_labels() {
        assert_eq!(serde_json::to_string(&pct(Some(0.03456))).unwrap(), "3.5");
        assert_eq!(serde_json::to_string(&pct(None)).unwrap(), "\"-\"");
        assert_eq!(serde_json::to_string(&num1(Some(25.26))).unwrap(), "25.3");
    }
}
