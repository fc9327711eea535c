//! Charts of the conversation-usage report, built from its panels in one language.
//! Each chart carries its support from the claims module (the segments', cells' or
//! correlation's verdicts), so that an edition draws only what holds.
//!
//! Over 600 lines: each of the report's charts sits beside the test that decides
//! whether it is drawn, so that a chart and its support are read and changed together.

use charming::component::{Axis, Grid, Legend};
use charming::datatype::{CompositeValue, DataPoint};
use charming::element::AxisType;
use charming::series::{Bar, Scatter};
use charming::Chart;

use serde_json::{json, Value};

use super::findings::{conversion, retention, segment_conversion_tests};
use super::metrics::SliceRow;
use super::trend::{Point, Trend};
use crate::intercom::slices::{SEGMENTS, UNKNOWN};
use crate::render::charts::{
    bar_label, bar_point, pct, percent_axis, tested_heatmap, title, ChartSpec, MonthPanel, Support,
    TestedCell, GROWTH, NEUTRAL, PALETTE, RISK,
};
use crate::render::format::Strings;
use crate::render::templates::Language;
use crate::stats::claims::{
    compare_many, correlation_p, means_against_rest, printed_difference, proportions_against_rest,
    standouts, Moments, Proportion, Verdict, ALPHA,
};
use crate::stats::Correlation;

/// A column of a slice row.
type Metric = fn(&SliceRow) -> Option<f64>;

/// Each row's mean first response with its spread, for a Welch test against the
/// other rows; a row with fewer than two answered conversations has none.
fn response_moments(rows: &[&SliceRow]) -> Vec<Option<Moments>> {
    rows.iter()
        .map(|x| {
            Some(Moments {
                n: x.counts.resp_n as f64,
                mean: x.avg_resp?,
                var: x.counts.resp_var?,
            })
            .filter(|m| m.n >= 2.0)
        })
        .collect()
}

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

/// One bar per segment of a time in minutes, labelled with one decimal ("25.0"
/// beside "25.3"); `-` where the segment has none.
fn minute_bars(segs: &[&SliceRow], of: Metric) -> Vec<CompositeValue> {
    segs.iter()
        .enumerate()
        .map(|(i, x)| of(x).map_or(CompositeValue::from("-"), |v| bar_point(i, v, "", false)))
        .collect()
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

/// The verdicts of the rate a segment bar chart shows under `key` (each known
/// segment against the others, corrected together, as the findings test them). A
/// chart draws only the rates where one holds.
fn segment_verdicts(r: &super::Run, key: &str) -> Vec<Verdict> {
    let known: Vec<&SliceRow> = super::findings::known_segments(r);
    let pairs: Vec<(Proportion, Proportion)> = match key {
        "charts.conversion" => {
            return segment_conversion_tests(r)
                .iter()
                .map(|t| t.verdict)
                .collect()
        }
        "charts.bot_share" => known
            .iter()
            .filter_map(|x| {
                let own = Proportion::new(x.counts.bot, x.conv_cnt)?;
                let (k, n) = known
                    .iter()
                    .filter(|o| !std::ptr::eq(**o, *x))
                    .fold((0, 0), |(k, n), o| (k + o.counts.bot, n + o.conv_cnt));
                Some((own, Proportion::new(k, n)?))
            })
            .collect(),
        "charts.weekly" | "charts.monthly" => {
            return retention_verdicts(r, key == "charts.weekly")
                .into_iter()
                .map(|(_, v)| v)
                .collect()
        }
        _ => return Vec::new(),
    };
    compare_many(&pairs)
}

/// Each known segment's retention (weekly or monthly) against the other segments'
/// together, corrected together, beside the segment it is of.
fn retention_verdicts(r: &super::Run, weekly: bool) -> Vec<(&SliceRow, Verdict)> {
    let known: Vec<&SliceRow> = super::findings::known_segments(r);
    let usage = r.usage_source;
    let tested: Vec<(&SliceRow, (Proportion, Proportion))> = known
        .iter()
        .filter_map(|x| {
            let rest: Vec<&SliceRow> = known
                .iter()
                .copied()
                .filter(|o| !std::ptr::eq(*o, *x))
                .collect();
            Some((
                *x,
                (
                    retention(&[x], usage, weekly)?,
                    retention(&rest, usage, weekly)?,
                ),
            ))
        })
        .collect();
    let verdicts = compare_many(&tested.iter().map(|t| t.1).collect::<Vec<_>>());
    tested.into_iter().map(|t| t.0).zip(verdicts).collect()
}

/// The verdict of each of a heatmap's rows (cells) against the other cells, all
/// corrected together: rates as proportions, the mean response with Welch's test.
/// For a rate, none holds unless the findings' standouts do (a best or worst cell
/// against the overall rate): the chart never colours what the findings call no
/// difference.
fn cell_verdicts(r: &super::Run, spec: &HeatmapSpec<'_>) -> Vec<Verdict> {
    let rows: Vec<&SliceRow> = spec.rows.iter().collect();
    let usage = r.usage_source;
    let rated = |of: &dyn Fn(&SliceRow) -> Option<Proportion>, overall: Option<Proportion>| {
        let none = vec![Verdict::NoClearDifference; rows.len()];
        let Some(overall) = overall else {
            return none;
        };
        let cells: Vec<Option<Proportion>> = rows
            .iter()
            .map(|x| of(x).filter(|_| (spec.value_of)(x).is_some()))
            .collect();
        let present: Vec<Proportion> = cells.iter().flatten().copied().collect();
        let (best, worst) = standouts(&present, overall);
        if best.is_none() && worst.is_none() {
            return none;
        }
        let mut tested = proportions_against_rest(&present).into_iter();
        cells
            .iter()
            .map(|c| match c {
                Some(_) => tested.next().unwrap_or(Verdict::NoClearDifference),
                None => Verdict::NoClearDifference,
            })
            .collect()
    };
    match spec.id {
        "heatmap_conversion_seat" | "heatmap_conversion_arr" => {
            rated(&conversion, conversion(&r.panels.overall))
        }
        "heatmap_retention_arr" => rated(
            &|x| retention(&[x], usage, true),
            retention(&[&r.panels.overall], usage, true),
        ),
        _ => means_against_rest(&response_moments(&rows)),
    }
}

/// A scatter of the bot-first share against one outcome, per cell.
struct BotScatter<'a> {
    id: &'static str,
    /// The strings key of the outcome's axis name.
    axis: &'static str,
    outcome: Metric,
    /// The cell-level correlation the diagnostics print for this pair.
    correlation: &'a Correlation,
    /// The finding whose relationship it draws.
    carries: &'static [&'static str],
}

/// The scatter of `c`, when its correlation holds at [`ALPHA`]; none otherwise (the
/// diagnostics table prints every r, holding or not).
fn bot_scatter(r: &super::Run, c: &BotScatter<'_>, s: &Strings) -> Option<ChartSpec> {
    let rv = c.correlation.r?;
    let holds = correlation_p(rv, c.correlation.n) < ALPHA;
    if !holds {
        return None;
    }
    let cells: Vec<&SliceRow> = r
        .panels
        .segment_seat_arr
        .iter()
        .filter(|x| {
            x.companies_total >= r.min_cell
                && x.bot_first_resp_share.is_some()
                && (c.outcome)(x).is_some()
        })
        .collect();
    if cells.is_empty() {
        return None;
    }
    let mut chart = Chart::new()
        .title(title(s.get(&format!("charts.{}", c.id))))
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
        .y_axis(percent_axis(&s.get(c.axis)));
    // Series colours follow the segments drawn (Churn watch in red).
    let drawn: Vec<&str> = SEGMENTS
        .iter()
        .chain([&UNKNOWN])
        .copied()
        .filter(|x| cells.iter().any(|c| c.segment == Some(*x)))
        .collect();
    chart = chart.color(segment_colours(drawn.iter().map(|x| Some(*x))));
    for segment in &drawn {
        let points: Vec<DataPoint> = cells
            .iter()
            .filter(|x| x.segment == Some(segment))
            .map(|x| {
                DataPoint::from(CompositeValue::from(vec![
                    pct(x.bot_first_resp_share),
                    pct((c.outcome)(x)),
                ]))
            })
            .collect();
        chart = chart.series(
            Scatter::new()
                .name(s.label("segment", segment))
                .symbol_size(9)
                .data(points),
        );
    }
    let takeaway = json!({
        "id": c.id,
        "numbers": { "n": cells.len(), "min_cell": r.min_cell, "r": rv, "holds": holds },
        "slices": {},
    });
    Some(ChartSpec {
        id: c.id,
        height: None,
        chart,
        support: Support::correlation(rv, c.correlation.n),
        carries: c.carries,
        takeaway: Some(takeaway),
    })
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
                    .label(bar_label())
                    .data(minute_bars(&segs, |x| x.p50_resp)),
            )
            .series(
                Bar::new()
                    .name(s.get("charts.p90"))
                    .label(bar_label())
                    .data(minute_bars(&segs, |x| x.p90_resp)),
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
        // The segments' mean response, each against the others' (Welch, corrected
        // together): bars that differ only by chance are a sentence.
        let moments = response_moments(&segs);
        out.push(ChartSpec {
            id: "segment_response",
            height: None,
            chart,
            support: Support::Differences(means_against_rest(&moments)),
            carries: &["service_model"],
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
        // A rate no segment has (no usage input) gets no legend entry, and neither
        // does one whose segments do not differ beyond chance: equal-looking bars with
        // "no clear difference" beside them would be drawn as a pattern.
        let tested: Vec<(&(&str, Metric), Vec<Verdict>)> = metrics
            .iter()
            .filter(|(_, f)| has_values(segs.iter().copied(), *f))
            .map(|m| (m, segment_verdicts(r, m.0)))
            .filter(|(_, v)| v.iter().any(|v| v.holds()))
            .collect();
        let shown: Vec<&(&str, Metric)> = tested.iter().map(|t| t.0).collect();
        let verdicts: Vec<Verdict> = tested.iter().flat_map(|t| t.1.clone()).collect();
        if shown.is_empty() {
            continue;
        }
        // Titled by what it shows: without the bot-first share, retention alone.
        let title_key =
            if id == "segment_rates" && !shown.iter().any(|(k, _)| *k == "charts.bot_share") {
                "charts.segment_retention".to_owned()
            } else {
                format!("charts.{id}")
            };
        let mut chart = segment_bars(s.get(&title_key), seg_labels.clone())
            .y_axis(percent_axis(&s.get("charts.share")));
        for (key, f) in shown {
            chart = chart.series(
                Bar::new().name(s.get(key)).label(bar_label()).data(
                    segs.iter()
                        .enumerate()
                        .map(|(i, x)| {
                            f(x).map_or(CompositeValue::from("-"), |v| {
                                bar_point(i, v * 100.0, "", false)
                            })
                        })
                        .collect(),
                ),
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
        } else if has_values(segs.iter().copied(), |x| x.weekly_retention) {
            // The segment that retains best is named only where its retention is
            // above the other segments' beyond chance (the highest of those).
            let above: Vec<&SliceRow> = retention_verdicts(r, true)
                .into_iter()
                .filter(|(_, v)| *v == Verdict::Higher)
                .map(|(x, _)| x)
                .collect();
            let bw = extreme(above.into_iter(), |x| x.weekly_retention, true);
            Some(match bw {
                Some((w, wv)) => json!({
                    "id": id,
                    "numbers": { "best_weekly": wv },
                    "slices": { "best_weekly": seg(w) },
                }),
                None => json!({ "id": id, "numbers": {}, "slices": {} }),
            })
        } else {
            not_drawn("retention")
        };
        out.push(ChartSpec {
            id,
            height: None,
            chart,
            support: Support::Differences(verdicts),
            carries: if id == "segment_conversion" {
                &["conversion"]
            } else {
                &[]
            },
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
        // Nor a grid whose cells the tests cannot tell apart (a few dozen companies
        // with 0–2 converters each): its colours would be chance drawn as a pattern.
        if has_values(spec.rows, spec.value_of) {
            let verdicts = cell_verdicts(r, &spec);
            if verdicts.iter().any(|v| v.holds()) {
                out.push(heatmap(&spec, &verdicts, r, lang));
            }
        }
    }

    // No radar of the segment profiles: it would repeat the profile table below it
    // without its values or counts.

    // 8. Bot-first share against each outcome, one point per cell, one series per
    // segment: drawn only where the correlation holds, so the chart shows the
    // relationship the findings name (bot-first × retention on the demo) and not a
    // null one.
    for scatter in [
        BotScatter {
            id: "scatter_bot_retention",
            axis: "charts.weekly",
            outcome: |x| x.weekly_retention,
            correlation: &r.correlations.bot_share_vs_weekly_retention,
            carries: &["bot_retention"],
        },
        BotScatter {
            id: "scatter_bot_conversion",
            axis: "charts.conversion",
            outcome: |x| x.conv_to_feature_rate,
            correlation: &r.correlations.bot_share_vs_conversion,
            carries: &["bot_conversion"],
        },
    ] {
        if let Some(chart) = bot_scatter(r, &scatter, s) {
            out.push(chart);
        }
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

/// A heatmap of `h`, each cell coloured by its difference from the overall value
/// where its verdict (in `h.rows`' order) holds, grey where it does not.
fn heatmap(
    h: &HeatmapSpec<'_>,
    verdicts: &[Verdict],
    r: &super::Run,
    lang: &Language,
) -> ChartSpec {
    let s = &lang.strings;
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
    let scale = if is_rate { 100.0 } else { 1.0 };
    let overall = value_of(&r.panels.overall).map(|v| crate::stats::claims::printed(v, scale, 1));
    let mut cells = Vec::new();
    for (yi, g) in present_segments.iter().enumerate() {
        for (xi, b) in present_buckets.iter().enumerate() {
            let Some((i, v)) = rows
                .iter()
                .enumerate()
                .find(|(_, r)| r.segment == Some(g) && bucket_of(r) == Some(b))
                .and_then(|(i, r)| Some((i, value_of(r)?)))
            else {
                continue;
            };
            let holds = verdicts.get(i).is_some_and(|v| v.holds());
            cells.push(TestedCell {
                x: xi,
                y: yi,
                value: v * scale,
                difference: overall
                    .filter(|_| holds)
                    .map(|o| printed_difference(v, o / scale, scale, 1) * scale),
            });
        }
    }
    let chart = tested_heatmap(
        s.get(&format!("charts.{id}")),
        (
            present_buckets
                .iter()
                .map(|b| s.label(&format!("short_{dim}"), b))
                .collect(),
            present_segments
                .iter()
                .map(|g| s.label("segment", g))
                .collect(),
        ),
        &cells,
        if is_rate { "%" } else { "" },
        // A faster response is the better one.
        is_rate,
        lang.fill(
            if is_rate {
                "charts.heatmap_scale_pp"
            } else {
                "charts.heatmap_scale_min"
            },
            &json!({ "overall": overall }),
        ),
    );

    // Takeaway: how many cells differ from the others beyond chance, each way, and
    // the highest and lowest of those that do.
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
    let tested: Vec<(&SliceRow, f64, Verdict)> = rows
        .iter()
        .zip(verdicts)
        .filter_map(|(r, v)| Some((r, value_of(r)?, *v)))
        .collect();
    let count = |want: Verdict| tested.iter().filter(|t| t.2 == want).count();
    let pick = |want: Verdict, max: bool| {
        tested
            .iter()
            .filter(|t| t.2 == want)
            .max_by(|a, b| {
                if max {
                    a.1.total_cmp(&b.1)
                } else {
                    b.1.total_cmp(&a.1)
                }
            })
            .map(|(r, v, _)| json!({ "value": v, "slice": slice(r) }))
    };
    let takeaway = (tested.len() > 1).then(|| {
        json!({
            "id": id,
            "numbers": {
                "overall": overall.map(|o| o / scale), "is_rate": is_rate, "cells": tested.len(),
                "above": count(Verdict::Higher), "below": count(Verdict::Lower),
                "grey": count(Verdict::NoClearDifference),
            },
            "slices": { "highest": pick(Verdict::Higher, true), "lowest": pick(Verdict::Lower, false) },
        })
    });
    ChartSpec {
        id,
        height: None,
        chart,
        support: Support::Differences(verdicts.to_vec()),
        // The high-value churn-watch cells against their ARR peers are this grid's;
        // conversion's cells when its segment bars are not drawn.
        carries: match id {
            "heatmap_retention_arr" => &["churn_watch_high_value"],
            "heatmap_conversion_seat" | "heatmap_conversion_arr" => &["conversion"],
            _ => &[],
        },
        takeaway,
    }
}
