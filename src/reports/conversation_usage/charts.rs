//! Charts of the conversation-usage report, built from its panels in one language.

use charming::component::{Axis, Grid, Legend, RadarCoordinate, RadarIndicator, Title};
use charming::datatype::{CompositeValue, DataPoint, DataPointItem};
use charming::element::{AxisType, Label, LabelPosition};
use charming::series::{Bar, Heatmap, Radar, Scatter};
use charming::Chart;
use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::metrics::SliceRow;
use super::trend::{Point, Trend};
use crate::intercom::slices::{SEGMENTS, UNKNOWN};
use crate::render::charts::{
    heatmap_cell, heatmap_label, heatmap_scale, num1, pct, percent_axis, title, ChartSpec,
    MonthPanel, GROWTH, NEUTRAL, PALETTE, RISK,
};
use crate::render::format::Strings;
use crate::render::templates::Language;

/// A column of a slice row.
type Metric = fn(&SliceRow) -> Option<f64>;

/// Whether any of `rows` has a value of `metric` (none: no usage input, no assignee,
/// and the chart leaves the metric out rather than drawing it empty).
fn has_values<'a>(rows: impl IntoIterator<Item = &'a SliceRow>, metric: Metric) -> bool {
    rows.into_iter().any(|x| metric(x).is_some())
}
/// The bucket a slice row is in.
type BucketOf = fn(&SliceRow) -> Option<&'static str>;

/// One heatmap: segments down, a bucket dimension across.
struct HeatmapSpec<'a> {
    id: &'static str,
    rows: &'a [SliceRow],
    dim: &'static str,
    buckets: &'static [&'static str],
    bucket_of: BucketOf,
    value_of: Metric,
    is_rate: bool,
}

/// A bar chart over segments: title, palette, legend, grid and the category axis.
fn segment_bars(text: String, segments: Vec<String>) -> Chart {
    Chart::new()
        .title(title(text))
        .color(PALETTE.to_vec())
        .legend(Legend::new().bottom(4))
        .grid(Grid::new().left(60).right(24).top(52).bottom(64))
        .x_axis(Axis::new().type_(AxisType::Category).data(segments))
}

fn slice_value(pairs: &[(&str, Option<&str>)]) -> Value {
    let mut m = serde_json::Map::new();
    for (k, v) in pairs {
        if let Some(v) = v {
            m.insert((*k).into(), json!(v));
        }
    }
    Value::Object(m)
}

/// The row with the largest (`max`) or smallest value of `f`; the first on ties.
fn extreme<'a>(
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

fn seg(r: &SliceRow) -> Value {
    slice_value(&[("segment", r.segment)])
}

/// One colour per segment, in the given order: Churn watch in the colour of risk and
/// Expansion in the colour of growth (the same in every report), the others in the
/// neutral blues and greys.
fn segment_colours<'a>(segments: impl Iterator<Item = Option<&'a str>>) -> Vec<&'static str> {
    let mut neutral = NEUTRAL.iter().cycle();
    segments
        .map(|x| match x {
            Some("churn_watch") => RISK,
            Some("expansion") => GROWTH,
            _ => neutral.next().copied().unwrap_or(NEUTRAL[0]),
        })
        .collect()
}

/// Every chart of the conversation-usage report in one language.
pub fn conversation_usage(r: &super::Run, lang: &Language) -> Vec<ChartSpec> {
    let s = &lang.strings;
    // Slices with fewer companies than min_cell would only add noise to the pictures.
    let segs: Vec<&SliceRow> = r
        .panels
        .segment
        .iter()
        .filter(|x| x.companies_total >= r.min_cell)
        .collect();
    let seg_labels: Vec<String> = segs
        .iter()
        .map(|x| s.label("segment", x.segment.unwrap_or(UNKNOWN)))
        .collect();
    let mut out = Vec::new();
    // Where conversion and retention are empty, a chart that would draw them says so
    // instead, with the reason (`usage_not_drawn`).
    let not_drawn = |what: &str| {
        r.usage_empty.as_ref().map(|e| {
            json!({ "id": "usage_not_drawn", "numbers": {}, "slices": {},
                    "keys": { "what": what, "reason": e.key() } })
        })
    };

    // 1. Response p50/p90 per segment; when every segment has the same median and P90
    // the bars would all be equal: the service-model finding
    // says it in a sentence instead.
    // (a P90 within one minute counts as the same).
    let printed = |v: Option<f64>| v.map(|v| (v * 10.0).round() as i64);
    let p90s: Vec<f64> = segs.iter().filter_map(|x| x.p90_resp).collect();
    let p90_spread = p90s.iter().copied().fold(f64::MIN, f64::max)
        - p90s.iter().copied().fold(f64::MAX, f64::min);
    let uniform = segs
        .windows(2)
        .all(|w| printed(w[0].p50_resp) == printed(w[1].p50_resp))
        && p90_spread <= 1.0;
    if !uniform {
        let chart = segment_bars(s.get("charts.segment_response"), seg_labels.clone())
            .y_axis(
                Axis::new()
                    .type_(AxisType::Value)
                    .name(s.get("charts.minutes")),
            )
            .series(
                Bar::new()
                    .name(s.get("charts.p50"))
                    .label(Label::new().show(true).position(LabelPosition::Top))
                    .data(segs.iter().map(|x| num1(x.p50_resp)).collect()),
            )
            .series(
                Bar::new()
                    .name(s.get("charts.p90"))
                    .label(Label::new().show(true).position(LabelPosition::Top))
                    .data(segs.iter().map(|x| num1(x.p90_resp)).collect()),
            );
        let hi = extreme(segs.iter().copied(), |x| x.p90_resp, true);
        let lo = extreme(segs.iter().copied(), |x| x.p90_resp, false);
        let p50s: Vec<f64> = segs.iter().filter_map(|x| x.p50_resp).collect();
        let takeaway = match (hi, lo) {
            (Some((h, hv)), Some((l, lv))) if segs.len() > 1 => Some(json!({
                "id": "segment_response",
                "numbers": {
                    "max_p90": hv, "min_p90": lv,
                    "p50_spread": p50s.iter().copied().fold(f64::MIN, f64::max) - p50s.iter().copied().fold(f64::MAX, f64::min),
                    "p50_min": p50s.iter().copied().fold(f64::MAX, f64::min),
                },
                "slices": { "max_p90": seg(h), "min_p90": seg(l) },
            })),
            _ => None,
        };
        out.push(ChartSpec {
            id: "segment_response",
            height: None,
            chart,
            takeaway,
        });
    }

    // 2. Rates per segment, conversion on its own axis: a rate of a few per cent
    // beside retentions of 50–80 % would read as zero.
    for (id, metrics) in [
        (
            "segment_conversion",
            &[("charts.conversion", (|x| x.conv_to_feature_rate) as Metric)][..],
        ),
        (
            "segment_rates",
            &[
                ("charts.bot_share", (|x| x.bot_first_resp_share) as Metric),
                ("charts.weekly", |x| x.weekly_retention),
                ("charts.monthly", |x| x.monthly_retention),
            ][..],
        ),
    ] {
        // A rate no segment has (no usage input) gets no legend entry.
        let shown: Vec<&(&str, Metric)> = metrics
            .iter()
            .filter(|(_, f)| has_values(segs.iter().copied(), *f))
            .collect();
        if shown.is_empty() {
            continue;
        }
        let mut chart = segment_bars(s.get(&format!("charts.{id}")), seg_labels.clone())
            .y_axis(percent_axis(&s.get("charts.share")));
        for (key, f) in shown {
            chart = chart.series(
                Bar::new()
                    .name(s.get(key))
                    .label(
                        Label::new()
                            .show(true)
                            .position(LabelPosition::Top)
                            .formatter("{c}"),
                    )
                    .data(segs.iter().map(|x| pct(f(x))).collect()),
            );
        }
        let takeaway = if id == "segment_conversion" {
            // The known segments, as the conversion finding reads them.
            let known = || segs.iter().copied().filter(|x| x.segment != Some(UNKNOWN));
            let bc = extreme(known(), |x| x.conv_to_feature_rate, true);
            let wc = extreme(known(), |x| x.conv_to_feature_rate, false);
            match (bc, wc) {
                (Some((_, hi)), Some((_, lo))) => Some(json!({
                    "id": id,
                    "numbers": { "max": hi, "min": lo },
                    "slices": {},
                })),
                _ => None,
            }
        } else {
            let bw = extreme(segs.iter().copied(), |x| x.weekly_retention, true);
            bw.map(|(w, wv)| {
                json!({
                    "id": id,
                    "numbers": { "best_weekly": wv },
                    "slices": { "best_weekly": seg(w) },
                })
            })
            .or_else(|| not_drawn("retention"))
        };
        out.push(ChartSpec {
            id,
            height: None,
            chart,
            takeaway,
        });
    }

    // 3–6. Heatmaps.
    let seat_rows: Vec<SliceRow> = r
        .panels
        .segment_seat
        .iter()
        .filter(|x| x.companies_total >= r.min_cell)
        .cloned()
        .collect();
    let arr_rows: Vec<SliceRow> = r
        .panels
        .segment_arr
        .iter()
        .filter(|x| x.companies_total >= r.min_cell)
        .cloned()
        .collect();
    let by_seat = |id, value_of, is_rate| HeatmapSpec {
        id,
        rows: &seat_rows,
        dim: "seat_bucket",
        buckets: r.buckets.seat,
        bucket_of: |x| x.seat_bucket,
        value_of,
        is_rate,
    };
    let by_arr = |id, value_of, is_rate| HeatmapSpec {
        id,
        rows: &arr_rows,
        dim: "arr_bucket",
        buckets: r.buckets.arr,
        bucket_of: |x| x.arr_bucket,
        value_of,
        is_rate,
    };
    for spec in [
        by_seat("heatmap_conversion_seat", |x| x.conv_to_feature_rate, true),
        by_seat("heatmap_response_seat", |x| x.avg_resp, false),
        by_arr("heatmap_conversion_arr", |x| x.conv_to_feature_rate, true),
        by_arr("heatmap_retention_arr", |x| x.weekly_retention, true),
    ] {
        // Without a usage input, conversion and retention are empty everywhere: no
        // empty grid (the limitations say why).
        if has_values(spec.rows, spec.value_of) {
            out.push(heatmap(&spec, s));
        }
    }

    // 7. Radar: one polygon per segment, each axis scaled to its highest segment; an
    // axis no segment has a value for (no usage input, no assignee) is left out.
    {
        let all_axes: [(&str, Metric); 6] = [
            ("charts.bot_share", |x| x.bot_first_resp_share),
            ("charts.conversion", |x| x.conv_to_feature_rate),
            ("charts.weekly", |x| x.weekly_retention),
            ("charts.monthly", |x| x.monthly_retention),
            ("charts.team_route", |x| x.team_route_share),
            ("charts.inbound", |x| x.contact_inbound_share),
        ];
        let axes: Vec<(&str, Metric)> = all_axes
            .into_iter()
            .filter(|(_, f)| has_values(segs.iter().copied(), *f))
            .collect();
        let coord = RadarCoordinate::new()
            .radius("62%")
            .center(vec!["50%", "54%"])
            .indicator(
                axes.iter()
                    .map(|(key, f)| {
                        let max = segs.iter().filter_map(|x| f(x)).fold(0.0, f64::max);
                        RadarIndicator::new()
                            .name(s.get(key))
                            .max(((max * 1000.0).ceil() / 10.0).max(0.1))
                            .min(0)
                    })
                    .collect(),
            );
        let data: Vec<DataPointItem> = segs
            .iter()
            .zip(&seg_labels)
            .map(|(x, label)| {
                let values: Vec<CompositeValue> = axes.iter().map(|(_, f)| pct(f(x))).collect();
                DataPointItem::new(CompositeValue::from(values)).name(label.clone())
            })
            .collect();
        let chart = Chart::new()
            .title(title(s.get("charts.radar_segments")))
            .color(segment_colours(segs.iter().map(|x| x.segment)))
            .legend(Legend::new().bottom(4))
            .radar(coord)
            .series(Radar::new().data(data));
        let bw = extreme(segs.iter().copied(), |x| x.weekly_retention, true);
        let mb = extreme(segs.iter().copied(), |x| x.bot_first_resp_share, true);
        let takeaway = match (bw, mb) {
            (Some((w, _)), Some((b, _))) if segs.len() > 1 => Some(json!({
                "id": "radar_segments",
                "numbers": {},
                "slices": { "best_weekly": seg(w), "most_bot": seg(b) },
            })),
            _ => not_drawn("conversion_retention"),
        };
        out.push(ChartSpec {
            id: "radar_segments",
            height: None,
            chart,
            takeaway,
        });
    }

    // 8. Bot-first share vs conversion, one point per cell, one series per segment.
    {
        let cells: Vec<&SliceRow> = r
            .panels
            .segment_seat_arr
            .iter()
            .filter(|c| {
                c.companies_total >= r.min_cell
                    && c.bot_first_resp_share.is_some()
                    && c.conv_to_feature_rate.is_some()
            })
            .collect();
        let mut chart = Chart::new()
            .title(title(s.get("charts.scatter_bot_conversion")))
            .legend(Legend::new().bottom(4))
            .grid(Grid::new().left(64).right(28).top(52).bottom(72))
            .x_axis(
                Axis::new()
                    .type_(AxisType::Value)
                    .scale(true)
                    .name(format!("{} (%)", s.get("charts.bot_share")))
                    .name_location(charming::element::NameLocation::Middle)
                    .name_gap(26),
            )
            .y_axis(percent_axis(&s.get("charts.conversion")));
        // Series colours follow the segments drawn (Churn watch in red).
        let drawn: Vec<&str> = SEGMENTS
            .iter()
            .chain([&UNKNOWN])
            .copied()
            .filter(|x| cells.iter().any(|c| c.segment == Some(*x)))
            .collect();
        chart = chart.color(segment_colours(drawn.iter().map(|x| Some(*x))));
        for segment in SEGMENTS.iter().chain([&UNKNOWN]) {
            let points: Vec<DataPoint> = cells
                .iter()
                .filter(|c| c.segment == Some(segment))
                .map(|c| {
                    DataPoint::from(CompositeValue::from(vec![
                        pct(c.bot_first_resp_share),
                        pct(c.conv_to_feature_rate),
                    ]))
                })
                .collect();
            if !points.is_empty() {
                chart = chart.series(
                    Scatter::new()
                        .name(s.label("segment", segment))
                        .symbol_size(9)
                        .data(points),
                );
            }
        }
        if cells.is_empty() {
            let why = r.usage_empty.as_ref().map_or_else(
                || s.get("charts.no_data"),
                |e| s.get(&format!("charts.usage_empty_{}", e.key())),
            );
            chart = chart.title(Title::new().text(why).left("center").top("middle"));
        }
        let mut numbers = BTreeMap::new();
        numbers.insert("n", json!(cells.len()));
        numbers.insert("min_cell", json!(r.min_cell));
        if let Some(rv) = r.correlations.bot_share_vs_conversion.r {
            numbers.insert("r", json!(rv));
            // Whether the correlation holds, as the findings test it.
            let p =
                crate::stats::claims::correlation_p(rv, r.correlations.bot_share_vs_conversion.n);
            numbers.insert("holds", json!(p < crate::stats::claims::ALPHA));
        }
        let takeaway = (!cells.is_empty())
            .then(|| json!({ "id": "scatter_bot_conversion", "numbers": numbers, "slices": {} }));
        out.push(ChartSpec {
            id: "scatter_bot_conversion",
            height: None,
            chart,
            takeaway,
        });
    }
    if let Some(mut t) = r.trend.as_ref().and_then(|t| trend_chart(t, lang)) {
        // Its note then says why conversion and retention are missing from it.
        if let (Some(Value::Object(m)), Some(e)) = (&mut t.takeaway, &r.usage_empty) {
            m.insert("usage_empty".into(), json!(e.key()));
        }
        out.push(t);
    }
    out
}

/// The headline metrics month by month, the window's months shaded; none with fewer
/// than two months of numbers.
fn trend_chart(t: &Trend, lang: &Language) -> Option<ChartSpec> {
    let s = &lang.strings;
    let with_numbers = t
        .months
        .iter()
        .filter(|m| m.values.conversations.is_some())
        .count();
    if with_numbers < 2 {
        return None;
    }
    let of =
        |f: fn(&Point) -> Option<f64>| t.months.iter().map(|m| f(&m.values)).collect::<Vec<_>>();
    let mut panels = vec![
        MonthPanel {
            title: s.get("charts.trend_conversations"),
            percent: false,
            series: vec![(
                s.get("charts.trend_conversations"),
                NEUTRAL[0],
                // A partial month's count is a coverage gap, not a fall: not drawn.
                t.months
                    .iter()
                    .map(|m| {
                        m.values
                            .conversations
                            .filter(|_| !m.partial)
                            .map(|n| n as f64)
                    })
                    .collect(),
            )],
        },
        MonthPanel {
            title: s.get("charts.trend_p50"),
            percent: false,
            series: vec![(s.get("charts.p50"), NEUTRAL[2], of(|m| m.p50_resp))],
        },
    ];
    let mut rates = vec![(
        s.get("charts.bot_share"),
        PALETTE[1],
        of(|m| m.bot_first_resp_share),
    )];
    if t.months.iter().any(|m| m.values.weekly_retention.is_some()) {
        rates.push((s.get("charts.weekly"), GROWTH, of(|m| m.weekly_retention)));
    }
    let rates_title = rates
        .iter()
        .map(|x| x.0.clone())
        .collect::<Vec<_>>()
        .join(" · ");
    panels.push(MonthPanel {
        title: format!("{rates_title} (%)"),
        percent: true,
        series: rates,
    });
    // Conversion on its own axis: a few per cent beside retention would read as zero.
    if t.months
        .iter()
        .any(|m| m.values.conv_to_feature_rate.is_some())
    {
        panels.push(MonthPanel {
            title: format!("{} (%)", s.get("charts.conversion")),
            percent: true,
            series: vec![(
                s.get("charts.conversion"),
                PALETTE[4],
                of(|m| m.conv_to_feature_rate),
            )],
        });
    }
    crate::reports::trend::chart(
        &|months| lang.fill("charts.trend", &serde_json::json!({ "months": months })),
        s.get("charts.trend_window"),
        &t.months,
        panels,
    )
}

fn heatmap(h: &HeatmapSpec<'_>, s: &Strings) -> ChartSpec {
    let HeatmapSpec {
        id,
        rows,
        dim,
        buckets,
        bucket_of,
        value_of,
        is_rate,
    } = *h;
    let present_segments: Vec<&str> = SEGMENTS
        .iter()
        .chain([&UNKNOWN])
        .copied()
        .filter(|g| rows.iter().any(|r| r.segment == Some(g)))
        .collect();
    let present_buckets: Vec<&str> = buckets
        .iter()
        .chain([&UNKNOWN])
        .copied()
        .filter(|b| rows.iter().any(|r| bucket_of(r) == Some(b)))
        .collect();
    let mut data = Vec::new();
    let mut values = Vec::new();
    for (yi, g) in present_segments.iter().enumerate() {
        for (xi, b) in present_buckets.iter().enumerate() {
            let v = rows
                .iter()
                .find(|r| r.segment == Some(g) && bucket_of(r) == Some(b))
                .and_then(value_of)
                .map(|v| if is_rate { v * 100.0 } else { v });
            values.extend(v);
            data.push(heatmap_cell(xi, yi, v, if is_rate { "%" } else { "" }));
        }
    }
    let chart = Chart::new()
        .title(title(s.get(&format!("charts.{id}"))))
        .grid(Grid::new().left(120).right(30).top(52).bottom(84))
        .x_axis(
            Axis::new().type_(AxisType::Category).data(
                present_buckets
                    .iter()
                    .map(|b| s.label(&format!("short_{dim}"), b))
                    .collect(),
            ),
        )
        .y_axis(
            Axis::new().type_(AxisType::Category).inverse(true).data(
                present_segments
                    .iter()
                    .map(|g| s.label("segment", g))
                    .collect(),
            ),
        )
        .visual_map(heatmap_scale(values))
        .series(Heatmap::new().label(heatmap_label()).data(data));

    // Takeaway: best and worst cells of this map.
    let cells: Vec<&SliceRow> = rows.iter().filter(|r| value_of(r).is_some()).collect();
    let hi = extreme(cells.iter().copied(), value_of, true);
    let lo = extreme(cells.iter().copied(), value_of, false);
    let slice = |r: &SliceRow| {
        slice_value(&[
            ("segment", r.segment),
            (
                if dim == "seat_bucket" {
                    "seat_bucket"
                } else {
                    "arr_bucket"
                },
                bucket_of(r),
            ),
        ])
    };
    let takeaway = match (hi, lo) {
        (Some((h, hv)), Some((l, lv))) if cells.len() > 1 => {
            Some(if id == "heatmap_response_seat" {
                json!({ "id": id, "numbers": { "min": lv, "max": hv }, "slices": { "fastest": slice(l), "slowest": slice(h) } })
            } else {
                json!({ "id": id, "numbers": { "best": hv, "worst": lv }, "slices": { "best": slice(h), "worst": slice(l) } })
            })
        }
        _ => None,
    };
    ChartSpec {
        id,
        height: None,
        chart,
        takeaway,
    }
}
