//! Charts of a report: built with charming's typed API from the run's numbers and a
//! language's strings (titles, axis names and category labels are localized), then
//! rendered to SVG by the process's chart engine. Each chart carries the record its
//! one-line takeaway is written from, and its support: what the claims module says
//! about the values it draws (an edition draws a chart only when that holds). The
//! chart content every report shares lives here: one-decimal labels, heatmaps
//! coloured by the tested difference from overall, money axes in the text's units,
//! Sankeys and month panels.
//!
//! Over 600 lines: the content helpers every report shares, and some 150 lines of
//! unit tests that render them; one concern, kept in one file.

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
    /// What the claims module says about what the chart draws: an edition draws a
    /// chart only when this holds ([`drawable`]).
    pub support: Support,
    /// The findings (ids) whose message the chart draws: the brief prints the chart of
    /// the first page-1 headline that has one (the run layer's edition), so which
    /// chart that is follows the run's findings, not the chart's name.
    pub carries: &'static [&'static str],
}

/// What a chart's one message rests on, typed from the claims module's results.
#[derive(Debug, Clone, PartialEq)]
pub enum Support {
    /// How a whole is made up, or how values run over time: the chart compares
    /// nothing, and its takeaway ranks nothing.
    Composition,
    /// The chart draws values as different: the verdicts of the comparisons it
    /// colours or names (each against its reference, as the findings test them).
    /// It carries a message only when one of them holds.
    Differences(Vec<crate::stats::claims::Verdict>),
}

impl Support {
    /// Whether a chart with this support may be drawn.
    pub fn holds(&self) -> bool {
        match self {
            Support::Composition => true,
            Support::Differences(v) => v.iter().any(|v| v.holds()),
        }
    }

    /// A correlation of `n` pairs as one verdict: higher (positive) or lower
    /// (negative) when it holds at [`crate::stats::claims::ALPHA`].
    pub fn correlation(r: f64, n: usize) -> Self {
        use crate::stats::claims::{correlation_p, Verdict, ALPHA};
        let verdict = match (correlation_p(r, n) < ALPHA, r > 0.0) {
            (false, _) => Verdict::NoClearDifference,
            (true, true) => Verdict::Higher,
            (true, false) => Verdict::Lower,
        };
        Support::Differences(vec![verdict])
    }
}

/// The charts an edition draws: those whose support holds (a chart of values the
/// claims module calls indistinguishable would draw chance as a pattern).
pub fn drawable(specs: Vec<ChartSpec>) -> Vec<ChartSpec> {
    specs.into_iter().filter(|s| s.support.holds()).collect()
}

/// A rendered chart.
#[derive(Debug, Clone)]
pub struct RenderedChart {
    pub id: &'static str,
    pub svg: String,
    /// Time the chart engine spent rendering it.
    pub engine_time: std::time::Duration,
    /// CPU time the chart engine spent rendering it.
    pub engine_cpu: std::time::Duration,
}

pub(crate) const PALETTE: [&str; 6] = [
    "#2f5d8a", "#e07b39", "#3f9c6d", "#c44e52", "#8172b2", "#937860",
];

/// The colour of risk in every report (inactive users, ARR at risk, churn watch):
/// red, and used for nothing else where it appears.
pub const RISK: &str = "#c44e52";
/// The colour of growth in every report (expansion): green.
pub const GROWTH: &str = "#3f9c6d";

/// Shades of blue and grey for series that are neither risk nor growth.
pub(crate) const NEUTRAL: [&str; 5] = ["#2f5d8a", "#6b93c3", "#5f6b78", "#a9c1de", "#9aa5b1"];

/// Renders a spec: the typed chart plus the engine-level options every chart shares;
/// stopped at `deadline`.
pub fn render(
    spec: &ChartSpec,
    deadline: Option<crate::clock::Deadline>,
) -> Result<RenderedChart, EngineError> {
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
    let (svg, cost) = engine()?.render_timed(
        spec.id,
        option.to_string(),
        WIDTH,
        spec.height.unwrap_or(HEIGHT),
        deadline,
    )?;
    Ok(RenderedChart {
        id: spec.id,
        svg,
        engine_time: cost.wall,
        engine_cpu: cost.cpu,
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

/// The small value label at the end of a horizontal bar made of [`bar_point`]s.
pub(crate) fn bar_end_label() -> charming::element::Label {
    use charming::element::{Label, LabelPosition};
    Label::new()
        .show(true)
        .position(LabelPosition::Right)
        .font_size(9)
        .formatter(BAR_LABEL)
}

/// Where a [`bar_point`] carries its printed label.
pub(crate) const BAR_LABEL: &str = "{@[2]}";

/// A bar's data point: the value on its category's row and the value's printed label
/// with one decimal, so 11 reads "11.0%" beside "11.7%" (ECharts' `{c}` prints the bare
/// number). `horizontal`: the value runs along x.
pub(crate) fn bar_point(row: usize, value: f64, suffix: &str, horizontal: bool) -> CompositeValue {
    let (v, label) = one_decimal(value, suffix);
    labelled_bar_point(row, v, label, horizontal)
}

/// A value rounded to one decimal and printed with it: the label always shows the
/// decimal ("3.0"), and the value drawn is the value printed.
fn one_decimal(value: f64, suffix: &str) -> (f64, String) {
    // Rounded as the tables' formatter rounds (`{:.1}`), so that a chart label and
    // the table cell of the same value agree (33.15 % is 33.1 % in both, not 33.2 %
    // here from `(v * 10).round()`).
    let printed = format!("{value:.1}");
    let v = printed.parse::<f64>().unwrap_or(value);
    (v, format!("{printed}{suffix}"))
}

/// A bar's data point with a label written by the caller (money, counts).
pub(crate) fn labelled_bar_point(
    row: usize,
    value: f64,
    label: String,
    horizontal: bool,
) -> CompositeValue {
    let (x, y) = if horizontal {
        (
            CompositeValue::from(value),
            CompositeValue::from(row as i64),
        )
    } else {
        (
            CompositeValue::from(row as i64),
            CompositeValue::from(value),
        )
    };
    CompositeValue::from(vec![x, y, CompositeValue::from(label)])
}

/// The value's position in a heatmap cell: the colour scale reads it (not the last
/// dimension, ECharts' default, which is the label).
const HEATMAP_VALUE: i64 = 2;

/// The colour scale of every heatmap: the difference of a cell from the overall
/// value, on a range symmetric around zero (`range`: the largest difference
/// coloured, rounded up), so that the centre colour means "as overall" and 0.9 min
/// over 25.1–26.0 never gets the full contrast a 0–10 score's 6.3–7.2 got before.
/// Better than overall is green, worse red (`higher_is_better` says which way);
/// the handles print the two ends, a colour bar with its numbers. Cells the claims
/// module cannot tell apart from the rest are given 0 by [`tested_cell`]: grey.
pub(crate) fn difference_scale(
    range: f64,
    higher_is_better: bool,
) -> charming::component::VisualMap {
    use charming::component::{VisualMap, VisualMapChannel};
    use charming::element::Orient;
    let r = (range.abs().max(0.1) * 10.0).ceil() / 10.0;
    let colours = if higher_is_better {
        vec![RISK, "#eef1f4", GROWTH]
    } else {
        vec![GROWTH, "#eef1f4", RISK]
    };
    VisualMap::new()
        .dimension(HEATMAP_VALUE)
        .min(-r)
        .max(r)
        .calculable(true)
        .precision(1)
        .orient(Orient::Horizontal)
        .left("center")
        .bottom(22)
        .item_height(240)
        .item_width(12)
        .in_range(VisualMapChannel::new().color(colours))
}

/// The small line under a heatmap's colour bar that says what its colours are.
pub(crate) fn scale_note(text: String) -> Title {
    Title::new()
        .text(text)
        .left("center")
        .bottom(2)
        .text_style(TextStyle::new().font_size(10).color("#5f6b78"))
}

/// One heatmap cell coloured by its tested difference from the overall value:
/// position, the colour's value (`difference` when the cell's comparison holds, 0
/// — the scale's grey centre — when it does not, `-` without data) and the cell's
/// own value printed with one decimal.
pub(crate) fn tested_cell(
    x: usize,
    y: usize,
    value: Option<f64>,
    suffix: &str,
    difference: Option<f64>,
) -> Vec<charming::datatype::DataPoint> {
    use charming::datatype::DataPoint;
    let label = value.map_or(String::new(), |v| one_decimal(v, suffix).1);
    let colour = value.map(|_| difference.unwrap_or(0.0));
    vec![
        DataPoint::from(x as i64),
        DataPoint::from(y as i64),
        DataPoint::from(num1(colour)),
        DataPoint::from(label),
    ]
}

/// A heatmap cell for [`tested_heatmap`]: its place, value and, when its
/// comparison with the rest holds, its difference from the overall value.
pub(crate) struct TestedCell {
    pub x: usize,
    pub y: usize,
    pub value: f64,
    pub difference: Option<f64>,
}

/// A heatmap of a value over two category axes, coloured by [`difference_scale`]
/// (cells whose difference holds; the others grey), every cell labelled with its
/// value (`label_suffix` `%` for percentages) and `note` under the colour bar.
pub(crate) fn tested_heatmap(
    text: String,
    axes: (Vec<String>, Vec<String>),
    cells: &[TestedCell],
    label_suffix: &'static str,
    higher_is_better: bool,
    note: String,
) -> Chart {
    use charming::component::{Axis, Grid};
    use charming::element::AxisType;
    use charming::series::Heatmap;
    let range = cells
        .iter()
        .filter_map(|c| c.difference)
        .fold(0.0, |a: f64, d| a.max(d.abs()));
    Chart::new()
        .title(title(text))
        .title(scale_note(note))
        .grid(Grid::new().left(120).right(30).top(52).bottom(96))
        .x_axis(Axis::new().type_(AxisType::Category).data(axes.0))
        .y_axis(
            Axis::new()
                .type_(AxisType::Category)
                .inverse(true)
                .data(axes.1),
        )
        .visual_map(difference_scale(range, higher_is_better))
        .series(
            Heatmap::new().label(heatmap_label()).data(
                cells
                    .iter()
                    .map(|c| tested_cell(c.x, c.y, Some(c.value), label_suffix, c.difference))
                    .collect(),
            ),
        )
}

/// A value axis of money in the language's unit for amounts up to `max` (`$15M`,
/// `1,500 万美元`, as the text prints them): the values drawn on it are divided by
/// the returned divisor.
pub(crate) fn money_axis(
    format: &crate::render::format::NumberFormat,
    name: String,
    max: f64,
) -> (charming::component::Axis, f64) {
    use charming::element::{AxisLabel, AxisType};
    let (divisor, mask) = format
        .money_units
        .iter()
        .find(|(from, _)| max.abs() >= *from)
        .map(|(from, text)| (*from, text.replacen("{}", "{value}", 1)))
        .unwrap_or_else(|| {
            (
                1.0,
                format!(
                    "{}{{value}}{}",
                    format.currency_prefix, format.currency_suffix
                ),
            )
        });
    // The zero tick reads as the text prints zero ("$0", "0 美元"), not in the unit
    // of the others ("$0k"): the engine reads this form (`ZERO_TICK`).
    let formatter = format!("{ZERO_TICK}{}{ZERO_TICK}{mask}", format.money(0.0));
    (
        charming::component::Axis::new()
            .type_(AxisType::Value)
            .name(name)
            .axis_label(AxisLabel::new().formatter(formatter.as_str())),
        divisor,
    )
}

/// Opens an axis label formatter whose zero tick has its own text:
/// `ZERO_TICK + zero + ZERO_TICK + mask` (the engine makes it a function).
pub(crate) const ZERO_TICK: char = '\u{1}';

/// The label of a [`bar_point`]: its printed label, above the bar.
pub(crate) fn bar_label() -> charming::element::Label {
    charming::element::Label::new()
        .show(true)
        .position(charming::element::LabelPosition::Top)
        .formatter(BAR_LABEL)
}

/// The cell label of every heatmap: the cell's own printed label (after the value).
pub(crate) fn heatmap_label() -> charming::element::Label {
    charming::element::Label::new()
        .show(true)
        .font_size(12)
        .formatter("{@[3]}")
}

/// A Sankey diagram: nodes by unique label, in stage order, each flagged when it is a
/// risk node (drawn in [`RISK`]; the others take the neutral palette), and weighted
/// links.
pub fn sankey(
    text: String,
    nodes: Vec<(String, bool)>,
    links: Vec<(String, String, f64)>,
) -> Chart {
    use charming::element::{ItemStyle, Label, LineStyle};
    use charming::series::{Sankey, SankeyNode};
    let nodes: Vec<SankeyNode> = nodes
        .into_iter()
        .enumerate()
        .map(|(i, (name, risk))| {
            let colour = if risk {
                RISK
            } else {
                NEUTRAL[i % NEUTRAL.len()]
            };
            SankeyNode::new(name).item_style(ItemStyle::new().color(colour))
        })
        .collect();
    Chart::new().title(title(text)).series(
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

/// One panel of [`month_panels`]: a title and its series (name, colour, values by
/// month; `None`: no value that month), on a percent axis or a plain one.
pub(crate) struct MonthPanel {
    pub title: String,
    pub percent: bool,
    pub series: Vec<(String, &'static str, Vec<Option<f64>>)>,
}

/// Small multiples over months, two panels a row, each on its own axis (a count, a
/// time and rates would squash each other on one), the months of the report's window
/// shaded in each (`marked`: first and last month label). Rates are given as 0–1.
pub(crate) fn month_panels(
    text: String,
    months: &[String],
    marked: Option<(String, String)>,
    marked_label: String,
    panels: Vec<MonthPanel>,
) -> (charming::Chart, u32) {
    use charming::component::{Axis, Grid, Legend};
    use charming::element::{
        AxisLabel, AxisType, ItemStyle, Label, LabelPosition, LineStyle, MarkArea, MarkAreaData,
        Symbol,
    };
    use charming::series::Line;
    let rows = panels.len().div_ceil(2) as u32;
    // Pixels: the chart title, then per row a panel title and its grid, the legend.
    let (head, row_h, grid_h) = (40u32, 190u32, 130u32);
    let height = head + rows * row_h + 36;
    let mut chart = charming::Chart::new()
        .title(title(text))
        .legend(Legend::new().bottom(4));
    for (i, panel) in panels.into_iter().enumerate() {
        let (row, col) = ((i / 2) as u32, i % 2);
        let top = head + row * row_h + 26;
        let left = if col == 0 { 56 } else { 56 + WIDTH / 2 };
        let width = WIDTH / 2 - 84;
        chart = chart
            .title(
                Title::new()
                    .text(panel.title)
                    .left(left as i64)
                    .top((top - 24) as i64)
                    .text_style(TextStyle::new().font_size(11).color("#1f2d3d")),
            )
            .grid(
                Grid::new()
                    .left(left as i64)
                    .top(top as i64)
                    .width(width as i64)
                    .height(grid_h as i64),
            )
            .x_axis(
                Axis::new()
                    .type_(AxisType::Category)
                    .grid_index(i as f64)
                    .axis_label(AxisLabel::new().font_size(8))
                    .data(months.to_vec()),
            );
        let y = Axis::new()
            .type_(AxisType::Value)
            .grid_index(i as f64)
            .axis_label(AxisLabel::new().font_size(8).formatter(if panel.percent {
                "{value}%"
            } else {
                "{value}"
            }));
        chart = chart.y_axis(y);
        for (k, (name, colour, values)) in panel.series.into_iter().enumerate() {
            let data: Vec<CompositeValue> = values
                .iter()
                .map(|v| if panel.percent { pct(*v) } else { num1(*v) })
                .collect();
            let area = (k == 0)
                .then(|| marked.clone())
                .flatten()
                .map(|(from, to)| {
                    MarkArea::new()
                        .silent(true)
                        .item_style(ItemStyle::new().color("rgba(47,93,138,0.08)"))
                        .label(
                            Label::new()
                                .show(i == 0)
                                .position(LabelPosition::Top)
                                .font_size(8)
                                .color("#6b7785")
                                .formatter(marked_label.as_str()),
                        )
                        .data(vec![(
                            MarkAreaData::new().x_axis(from),
                            MarkAreaData::new().x_axis(to),
                        )])
                });
            let mut line = Line::new()
                .name(name)
                .x_axis_index(i as f64)
                .y_axis_index(i as f64)
                .symbol(Symbol::Circle)
                .symbol_size(5)
                .item_style(ItemStyle::new().color(colour))
                .line_style(LineStyle::new().color(colour).width(2))
                .data(data);
            if let Some(a) = area {
                line = line.mark_area(a);
            }
            chart = chart.series(line);
        }
    }
    (chart, height)
}

/// A trend chart (id `trend`): [`month_panels`] over `months` (label, whether in
/// the report's window), the window's months shaded, with the takeaway record every
/// report's `trend` takeaway reads (`first`, `last`, `partial_to`: the date the last
/// month is cut at, when it is). `title` and `window_label` are the language's.
pub(crate) fn trend_spec(
    title: String,
    window_label: String,
    months: &[(String, bool)],
    partial_to: Option<String>,
    panels: Vec<MonthPanel>,
) -> Option<ChartSpec> {
    let labels: Vec<String> = months.iter().map(|m| m.0.clone()).collect();
    let inside: Vec<&String> = months.iter().filter(|m| m.1).map(|m| &m.0).collect();
    let marked = inside
        .first()
        .zip(inside.last())
        .map(|(a, b)| ((*a).clone(), (*b).clone()));
    let (first, last) = (labels.first()?.clone(), labels.last()?.clone());
    let (chart, height) = month_panels(title, &labels, marked, window_label, panels);
    Some(ChartSpec {
        id: "trend",
        height: Some(height),
        chart,
        support: Support::Composition,
        carries: &[],
        takeaway: Some(json!({
            "id": "trend",
            "numbers": { "months": labels.len() },
            "slices": { "first": first, "last": last, "partial_to": partial_to },
        })),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use charming::datatype::DataPoint;

    /// The SVG of `chart` drawn as a plain chart (no takeaway, no claims).
    fn svg_of(id: &'static str, chart: Chart) -> String {
        let spec = ChartSpec {
            id,
            chart,
            takeaway: None,
            height: None,
            support: Support::Composition,
            carries: &[],
        };
        render(&spec, None).expect("renders").svg
    }

    #[test]
    fn option_values_round_for_labels() {
        assert_eq!(serde_json::to_string(&pct(Some(0.03456))).unwrap(), "3.5");
        assert_eq!(serde_json::to_string(&pct(None)).unwrap(), "\"-\"");
        assert_eq!(serde_json::to_string(&num1(Some(25.26))).unwrap(), "25.3");
    }

    #[test]
    fn bar_labels_print_one_decimal_on_their_own_rows() {
        use charming::component::Axis;
        use charming::element::AxisType;
        use charming::series::Bar;
        assert_eq!(
            serde_json::to_string(&bar_point(2, 11.0, "%", true)).unwrap(),
            r#"[11.0,2,"11.0%"]"#
        );
        assert_eq!(
            serde_json::to_string(&bar_point(0, -12.96, "", false)).unwrap(),
            r#"[0,-13.0,"-13.0"]"#
        );
        let chart = Chart::new()
            .x_axis(Axis::new().type_(AxisType::Value))
            .y_axis(
                Axis::new()
                    .type_(AxisType::Category)
                    .data(vec!["first", "second"]),
            )
            .series(Bar::new().label(bar_end_label()).data(vec![
                bar_point(0, 11.0, "%", true),
                bar_point(1, 3.46, "%", true),
            ]));
        let svg = svg_of("bars", chart);
        assert!(svg.contains(">11.0%<") && svg.contains(">3.5%<"), "{svg}");
    }

    #[test]
    fn heatmap_cells_print_one_decimal_and_colour_by_their_tested_difference() {
        let cell = |x, y, value, difference| TestedCell {
            x,
            y,
            value,
            difference,
        };
        // Overall 10 %: 20 % holds above it, 2 % below, 3.64 % and 3 % do not hold.
        let cells = [
            cell(0, 0, 3.0, None),
            cell(1, 0, 3.64, None),
            cell(0, 1, 20.0, Some(10.0)),
            cell(1, 1, 2.04, Some(-8.0)),
        ];
        let chart = tested_heatmap(
            "t".into(),
            (vec!["a".into(), "b".into()], vec!["x".into(), "y".into()]),
            &cells,
            "%",
            true,
            "note".into(),
        );
        let svg = svg_of("heatmap", chart);
        for label in ["3.0%", "3.6%", "20.0%", "2.0%", "note"] {
            assert!(svg.contains(&format!(">{label}<")), "{label} in the SVG");
        }
        // The largest difference above takes the green end, the one below the red
        // end, the cells that do not hold the grey centre: the colour reads the tested
        // difference, not the value.
        let fills: Vec<&str> = svg
            .split("fill=\"")
            .skip(1)
            .filter_map(|f| f.split('"').next())
            .collect();
        for colour in [
            ["rgb(63,156,109)", GROWTH],
            ["rgb(196,78,82)", RISK],
            ["rgb(238,241,244)", "#eef1f4"],
        ] {
            assert!(
                colour.iter().any(|c| fills.contains(c)),
                "{colour:?} in {fills:?}"
            );
        }
        // The colour bar prints its two ends: ±10.0, symmetric around "as overall".
        assert!(svg.contains(">10.0<") && svg.contains(">-10.0<"), "{svg}");
        assert_eq!(
            tested_cell(0, 0, None, "%", None)[2..],
            [DataPoint::from("-"), DataPoint::from("")]
        );
    }

    #[test]
    fn a_chart_is_drawable_only_when_a_comparison_it_draws_holds() {
        use crate::stats::claims::Verdict;
        assert!(Support::Composition.holds());
        assert!(!Support::Differences(vec![Verdict::NoClearDifference]).holds());
        assert!(!Support::Differences(Vec::new()).holds());
        assert!(Support::Differences(vec![Verdict::NoClearDifference, Verdict::Lower]).holds());
        assert!(!Support::correlation(0.18, 30).holds());
        assert_eq!(
            Support::correlation(-0.78, 30),
            Support::Differences(vec![Verdict::Lower])
        );
    }

    fn money_format(units: Vec<(f64, String)>) -> crate::render::format::NumberFormat {
        crate::render::format::NumberFormat {
            decimal: ".".into(),
            thousands: ",".into(),
            percent_suffix: "%".into(),
            minutes_suffix: " min".into(),
            pp_suffix: " pp".into(),
            currency_prefix: "$".into(),
            currency_suffix: String::new(),
            money_units: units,
        }
    }

    #[test]
    fn money_axes_print_amounts_in_the_text_s_units_and_zero_as_the_text_does() {
        use charming::component::Axis;
        use charming::element::AxisType;
        use charming::series::Bar;
        let en = money_format(vec![(1e6, "${}M".into()), (1e3, "${}k".into())]);
        let (axis, divisor) = money_axis(&en, "ARR".into(), 15_000_000.0);
        assert_eq!(divisor, 1e6);
        assert!(serde_json::to_string(&axis)
            .unwrap()
            .contains(r#""formatter":"\u0001$0\u0001${value}M""#));
        let mut zh = money_format(vec![(1e8, "{} 亿美元".into()), (1e4, "{} 万美元".into())]);
        zh.currency_prefix = String::new();
        zh.currency_suffix = " 美元".into();
        let (axis, divisor) = money_axis(&zh, "ARR".into(), 15_000_000.0);
        assert_eq!(divisor, 1e4);
        assert!(serde_json::to_string(&axis)
            .unwrap()
            .contains("{value} 万美元"));
        // Drawn: the zero tick is "$0" / "0 美元", the others in the unit, with
        // thousands separators.
        for (format, zero, other, wrong) in [
            (&en, ">$0<", ">$10M<", ">$0M<"),
            (&zh, ">0 美元<", ">1,000 万美元<", ">0 万美元<"),
        ] {
            let (axis, divisor) = money_axis(format, "ARR".into(), 15_000_000.0);
            let chart = Chart::new()
                .x_axis(Axis::new().type_(AxisType::Category).data(vec!["a", "b"]))
                .y_axis(axis)
                .series(Bar::new().data(vec![10_000_000.0 / divisor, 4_000_000.0 / divisor]));
            let svg = svg_of("money", chart);
            assert!(svg.contains(zero) && svg.contains(other), "{svg}");
            assert!(!svg.contains(wrong), "{svg}");
        }
    }
}
