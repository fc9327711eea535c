//! The conversation-usage layout's data: every number of the scope, panel,
//! diagnostics and data-quality pages, formatted for one language.
//!
//! Why this file is long (about 620 lines): one function per table of the template's
//! pages, each formatting the same run for one language, with one owner: the data.json
//! of `report.typ`. Its output is checked where it is read, in the rendered PDFs
//! (`tests/reports/conversation_usage.rs`) and by `script/compare-outputs`.

use serde_json::{json, Value};

use super::comparison::{Comparison, Direction, Unit};
use super::findings::{
    conversion, eligible_cells, high_value_arr, known_segments, retention, slice_of,
};
use super::metrics::{Panels, SliceRow, UsageDefinitions, UsageEmpty};
use super::Run;
use crate::render::format::{NumberFormat, Strings};
use crate::render::templates::Language;
use crate::reports::comparison::signed_change;
use crate::stats::claims::{standouts, Proportion};

/// The report's part of `data.json`: scope, the slice panel, diagnostics and the
/// data-quality appendix, formatted for one language.
pub fn layout(r: &Run, lang: &Language) -> Value {
    let s = &lang.strings;
    let f = &lang.format;
    let count = |n: usize| f.count(n as f64);
    let opt_min = |v: Option<f64>| f.opt(v, |f, v| f.number(v, 1));
    let opt_pct = |v: Option<f64>| f.opt(v, |f, v| f.percent(v));
    let label = |dim: &str, v: Option<&str>| v.map(|v| s.label(dim, v)).unwrap_or_default();
    let short = |dim: &str, v: Option<&str>| {
        v.map(|v| s.label(&format!("short_{dim}"), v))
            .unwrap_or_default()
    };

    let t = &r.thresholds;
    let bounds = |b: &super::metrics::Bounds| match (b.p1, b.p99) {
        (Some(lo), Some(hi)) => format!(
            "{} – {} ({} {})",
            f.number(lo, 1),
            f.number(hi, 1),
            count(b.values),
            s.get("scope.values")
        ),
        _ => "—".to_owned(),
    };
    // The reason conversion and retention are empty, in the words of its strings.
    let usage_empty = |key: &str| {
        r.usage_empty
            .as_ref()
            .map(|e| lang.fill(&format!("{key}_{}", e.key()), &usage_empty_values(e, lang)))
    };
    let usage = usage_empty("scope.usage").unwrap_or_else(|| match r.usage_source {
        UsageDefinitions::Events => s.get("scope.usage_events"),
        UsageDefinitions::Proxy => s.get("scope.usage_proxy"),
        UsageDefinitions::None => s.get("scope.usage_no_source"),
    });
    let period_label = crate::reports::period_label(&r.window.period(), Some(lang));
    let mut scope_rows = vec![[s.get("scope.window"), r.window_row(period_label.clone(), s)]];
    scope_rows.extend(super::method::scope_rows(r, lang));
    scope_rows.extend([
        [s.get("scope.usage_source"), usage],
        [
            s.get("scope.conversations_in_window"),
            count(r.counts.conversations_in_window),
        ],
        // Mapping coverage as a share too: a count alone does not say how much of the
        // window the name join lost.
        [
            format!("  − {}", s.get("scope.unmapped")),
            match crate::stats::ratio(
                r.data_quality.unmapped_conversations,
                r.counts.conversations_in_window,
            ) {
                Some(share) => format!(
                    "{} ({})",
                    count(r.data_quality.unmapped_conversations),
                    f.percent(share)
                ),
                None => count(r.data_quality.unmapped_conversations),
            },
        ],
        [
            s.get("scope.in_scope"),
            count(r.counts.conversations_in_scope),
        ],
        [
            format!("  − {}", s.get("scope.excluded")),
            count(r.counts.conversations_excluded),
        ],
        [s.get("scope.kept"), count(r.counts.conversations_kept)],
        [s.get("scope.response_bounds"), bounds(&t.response_minutes)],
        [s.get("scope.duration_bounds"), bounds(&t.duration_minutes)],
        [
            s.get("scope.companies_paying"),
            count(r.counts.companies_paying),
        ],
        [
            s.get("scope.companies_in_scope"),
            count(r.counts.companies_in_scope),
        ],
        [
            s.get("scope.companies_kept"),
            count(r.counts.companies_kept),
        ],
        [s.get("scope.min_cell"), count(r.min_cell)],
    ]);

    let panel_header = [
        "columns.segment",
        "columns.seat_bucket",
        "columns.arr_bucket",
        "columns.companies",
        "columns.conversations",
        "columns.avg_resp",
        "columns.p90_resp",
        "columns.bot_share",
        "columns.conversion",
        "columns.weekly",
        "columns.monthly",
    ]
    .map(|k| s.get(k));
    let panel_row = |c: &SliceRow| {
        vec![
            label("segment", c.segment),
            short("seat_bucket", c.seat_bucket),
            short("arr_bucket", c.arr_bucket),
            count(c.companies_total),
            count(c.conv_cnt),
            opt_min(c.avg_resp),
            opt_min(c.p90_resp),
            opt_pct(c.bot_first_resp_share),
            opt_pct(c.conv_to_feature_rate),
            opt_pct(c.weekly_retention),
            opt_pct(c.monthly_retention),
        ]
    };
    let mut panel_rows: Vec<Vec<String>> =
        r.panels.segment_seat_arr.iter().map(panel_row).collect();
    let mut overall = panel_row(&r.panels.overall);
    overall[0] = s.get("labels.overall");
    panel_rows.push(overall);
    // The two-way panels the CSVs hold (panel_segment_seat.csv, panel_segment_arr.csv)
    // in the full report's appendix too: each row with its own cell size.
    let two_way = |rows: &[SliceRow]| {
        let small: Vec<bool> = rows
            .iter()
            .map(|c| c.companies_total < r.min_cell)
            .collect();
        json!({ "rows": rows.iter().map(panel_row).collect::<Vec<_>>(), "small": small })
    };
    let panel_seat = two_way(&r.panels.segment_seat);
    let panel_arr = two_way(&r.panels.segment_arr);
    let small: Vec<bool> = r
        .panels
        .segment_seat_arr
        .iter()
        .map(|c| c.companies_total < r.min_cell)
        .chain([false])
        .collect();

    let c = &r.correlations;
    let corr = |key: &str, x: &crate::stats::Correlation| {
        vec![s.get(key), f.opt(x.r, |f, v| f.number(v, 2)), count(x.n)]
    };
    let [by_size, by_segment] = super::findings::bot_retention_within(r);
    let within = |key: &str, x: Option<crate::stats::claims::Relationship>| {
        vec![
            s.get(key),
            f.opt(x.map(|x| x.r), |f, v| f.number(v, 2)),
            x.map_or_else(|| "—".to_owned(), |x| count(x.n)),
        ]
    };
    let correlations = vec![
        corr("diagnostics.bot_conversion", &c.bot_share_vs_conversion),
        corr("diagnostics.resp_conversion", &c.avg_resp_vs_conversion),
        corr("diagnostics.bot_weekly", &c.bot_share_vs_weekly_retention),
        within("diagnostics.bot_weekly_within_size", by_size),
        within("diagnostics.bot_weekly_within_segment", by_segment),
        corr("diagnostics.bot_monthly", &c.bot_share_vs_monthly_retention),
        corr(
            "diagnostics.company_bot_converted",
            &c.company_bot_share_vs_converted,
        ),
        corr(
            "diagnostics.company_resp_converted",
            &c.company_avg_resp_vs_converted,
        ),
    ];
    let tertiles: Vec<Vec<String>> = r
        .tertiles
        .iter()
        .map(|g| {
            vec![
                format!(
                    "{}{}{}",
                    s.label("segment", g.segment),
                    s.get("labels.separator"),
                    s.label("arr_bucket", g.arr_bucket)
                ),
                s.get(&format!("diagnostics.by_{}", g.by)),
                s.get(&format!("groups.{}", g.group)),
                count(g.n),
                opt_pct(g.mean_bot_share),
                opt_min(g.mean_avg_resp),
                opt_pct(g.conversion),
                opt_pct(g.weekly_retention),
            ]
        })
        .collect();

    let dq = &r.data_quality;
    let mut quality_rows = vec![
        [s.get("quality.unmapped"), count(dq.unmapped_conversations)],
        [
            s.get("quality.no_created"),
            count(dq.conversations_without_created_at),
        ],
        [
            s.get("quality.no_metrics"),
            count(dq.in_scope_without_metrics_row),
        ],
        [s.get("quality.non_paying"), count(dq.companies_non_paying)],
    ];
    quality_rows.push([
        s.get("quality.ambiguous_names"),
        count(dq.ambiguous_company_names as usize),
    ]);
    if let Some(n) = dq.usage_events_unmatched {
        quality_rows.push([s.get("quality.events_unmatched"), count(n as usize)]);
    }
    // Another edition's rows, not a data problem: told apart from the unmatched.
    if let Some(n) = dq.conversations_outside_scope {
        quality_rows.push([s.get("quality.outside_edition"), count(n)]);
    }
    if let Some(n) = dq.usage_events_outside_scope {
        quality_rows.push([s.get("quality.events_outside_edition"), count(n as usize)]);
    }
    // Company names are data: they travel as strings and Typst prints them as text.
    let duplicates: Vec<[String; 2]> = dq
        .duplicate_names
        .iter()
        .map(|d| {
            let companies = d
                .companies
                .iter()
                .map(|c| {
                    format!(
                        "{} ({})",
                        s.data_text(&c.company_id),
                        f.number(c.monthly_spend, 2)
                    )
                })
                .collect::<Vec<_>>()
                .join(", ");
            [
                d.companies
                    .first()
                    .map(|c| s.data_text(&c.company_name))
                    .unwrap_or_default(),
                companies,
            ]
        })
        .collect();
    let bad = crate::reports::bad_timestamp_rows(&dq.bad_timestamps, f);
    let mut limitations = s.list("quality.limitations");
    limitations.push(usage_empty("quality.limitation_usage").unwrap_or_else(
        || match r.usage_source {
            UsageDefinitions::Events => s.get("quality.limitation_events"),
            UsageDefinitions::Proxy => s.get("quality.limitation_proxy"),
            UsageDefinitions::None => s.get("quality.limitation_usage_no_source"),
        },
    ));
    if r.panels.overall.team_route_share.is_none() {
        limitations.push(s.get("quality.limitation_no_assignee"));
    }

    let service = super::method::service_panel(r, lang);
    json!({
        "changes": changes(r, lang),
        "key_slices": key_slices(r, lang),
        "deltas_note": r
            .comparison
            .as_ref()
            .filter(|c| c.empty_reason.is_none() && r.previous.is_some())
            .map(|c| {
                lang.fill(
                    "change.cells_note",
                    &json!({ "period": c.period.replace('_', " – ") }),
                )
            }),
        // Under each table with conversion and retention columns, when they are empty.
        "usage_note": usage_empty("panel.usage_note"),
        "profiles": profiles(r, lang),
        "sizes": sizes(r, lang),
        "scope": { "rows": scope_rows, "definitions": definitions(s, arr_known(r)) },
        "panel": { "header": panel_header, "rows": panel_rows, "small": small },
        "panel_seat": panel_seat,
        "panel_arr": panel_arr,
        "service_panel": { "header": service.0, "rows": service.1, "small": small },
        "correlations": correlations,
        "tertiles": tertiles,
        "quality": {
            "rows": quality_rows,
            "coverage": super::method::paying_coverage(r, lang),
            "analysed_coverage": super::method::analysed_coverage(r, lang),
            "duplicates": duplicates,
            "bad_timestamps": bad,
            "limitations": limitations,
        },
    })
}
/// What the sentences of a [`UsageEmpty`] name, formatted for `lang`: the events in the
/// window, some of their company ids, the company column they were matched against and
/// some of its values.
pub(super) fn usage_empty_values(e: &UsageEmpty, lang: &Language) -> Value {
    match e {
        UsageEmpty::NoSource => json!({}),
        UsageEmpty::NoneMatched(n) => {
            let sep = lang.strings.get("quality.list_separator");
            json!({
                "events": lang.format.count(n.events as f64),
                "event_ids": n.event_ids.iter().map(|v| lang.strings.data_text(v)).collect::<Vec<_>>().join(&sep),
                "company_key": n.company_key,
                "company_keys": n.company_keys.iter().map(|v| lang.strings.data_text(v)).collect::<Vec<_>>().join(&sep),
            })
        }
    }
}

/// "What changed": every compared value, overall and per segment, then and now, the
/// change (the difference of the printed values) and what it allows to say; null
/// without comparison numbers.
fn changes(r: &Run, lang: &Language) -> Value {
    let Some(c) = r.comparison.as_ref().filter(|c| c.empty_reason.is_none()) else {
        return Value::Null;
    };
    let (s, f) = (&lang.strings, &lang.format);
    let show = |unit: Unit, v: f64| crate::reports::comparison::show(f, unit, Some(v));
    let rows: Vec<Vec<String>> = c
        .changes
        .iter()
        .map(|x| {
            let change = match (x.current, x.previous) {
                (Some(a), Some(b)) => signed_change(f, x.unit, a, b),
                _ => "—".to_owned(),
            };
            let reading = crate::reports::comparison::reading(x.direction);
            vec![
                if x.slice == "overall" {
                    s.get("change.overall")
                } else {
                    s.label("segment", &x.slice)
                },
                s.get(&format!("change.metric_{}", x.metric)),
                x.previous
                    .map_or_else(|| "—".to_owned(), |v| show(x.unit, v)),
                x.current
                    .map_or_else(|| "—".to_owned(), |v| show(x.unit, v)),
                change,
                s.get(&format!("change.reading_{reading}")),
            ]
        })
        .collect();
    crate::reports::comparison::table(s, "columns.slice", rows, s.get("change.table_intro"))
}

/// What a table cell adds under its value when the run has comparison numbers: the
/// change since the comparison period, with an arrow when the comparison finds that
/// it holds (`metric` of `slice` in its changes); nothing without a previous value.
struct Deltas<'a> {
    comparison: Option<&'a Comparison>,
    previous: Option<&'a Panels>,
}

impl<'a> Deltas<'a> {
    fn of(r: &'a Run) -> Self {
        let comparison = r.comparison.as_ref().filter(|c| c.empty_reason.is_none());
        Self {
            comparison,
            previous: comparison.and(r.previous.as_ref().map(|p| &p.panels)),
        }
    }

    /// The same slice in the comparison window.
    fn before(&self, row: &SliceRow) -> Option<&'a SliceRow> {
        let p = self.previous?;
        [
            &p.segment_seat_arr,
            &p.segment_seat,
            &p.segment_arr,
            &p.segment,
            &p.seat_bucket,
            &p.arr_bucket,
        ]
        .into_iter()
        .flatten()
        .find(|x| {
            x.segment == row.segment
                && x.seat_bucket == row.seat_bucket
                && x.arr_bucket == row.arr_bucket
        })
    }

    /// `value`, then on a second line the change of `metric` since the comparison
    /// window (`tested`: the comparison's metric name, for the arrow).
    fn cell(
        &self,
        f: &NumberFormat,
        value: String,
        unit: Unit,
        now: Option<f64>,
        then: Option<f64>,
        tested: Option<(&str, &str)>,
    ) -> String {
        let (Some(a), Some(b)) = (now, then) else {
            return value;
        };
        let arrow = tested
            .and_then(|(metric, slice)| {
                self.comparison?
                    .changes
                    .iter()
                    .find(|c| c.metric == metric && c.slice == slice)
            })
            .map_or("", |c| match c.direction {
                Direction::Rise => " ▲",
                Direction::Fall => " ▼",
                _ => "",
            });
        format!("{value}\n{}{arrow}", signed_change(f, unit, a, b))
    }
}

/// A rate with the count it rests on, as the tables print it: `57.6% (134)`.
fn rate_of_n(f: &crate::render::format::NumberFormat, p: Option<Proportion>) -> String {
    p.map_or_else(
        || "—".to_owned(),
        |p| format!("{} ({})", f.percent(p.rate()), f.count(p.n)),
    )
}

/// A rate with both counts: `2.9% (4/137)`.
fn k_of_n(f: &crate::render::format::NumberFormat, p: Option<Proportion>) -> String {
    p.map_or_else(
        || "—".to_owned(),
        |p| {
            format!(
                "{} ({}/{})",
                f.percent(p.rate()),
                f.count(p.k),
                f.count(p.n)
            )
        },
    )
}

/// How a slice's rate is read (k of n).
type RateOf<'a> = dyn Fn(&SliceRow) -> Option<Proportion> + 'a;

/// The slices a reader should know by name: the best and worst cells that stand out
/// beyond chance (weekly retention and conversion, against the overall rate) and the
/// high-value Churn watch accounts. Empty when none qualifies.
fn key_slices(r: &Run, lang: &Language) -> Vec<Vec<String>> {
    let (s, f) = (&lang.strings, &lang.format);
    let usage = r.usage();
    let cells: Vec<&SliceRow> = eligible_cells(r).collect();
    let weekly = |c: &SliceRow| retention(&[c], usage, true);
    let mut picked: Vec<(&SliceRow, &'static str)> = Vec::new();
    let overall = &r.panels.overall;
    let tests: [(&RateOf, Option<Proportion>, [&'static str; 2]); 2] = [
        (
            &weekly,
            weekly(overall),
            ["best_retention", "worst_retention"],
        ),
        (
            &conversion,
            conversion(overall),
            ["best_conversion", "worst_conversion"],
        ),
    ];
    for (rate, all, why) in tests {
        let Some(all) = all else { continue };
        let with: Vec<(&SliceRow, Proportion)> =
            cells.iter().filter_map(|c| Some((*c, rate(c)?))).collect();
        let props: Vec<Proportion> = with.iter().map(|x| x.1).collect();
        let (best, worst) = standouts(&props, all);
        for (i, w) in [(best, why[0]), (worst, why[1])] {
            if let Some(i) = i {
                picked.push((with[i].0, w));
            }
        }
    }
    let high = high_value_arr(r);
    for row in &r.panels.segment_arr {
        if row.segment == Some("churn_watch")
            && row.arr_bucket.is_some_and(|a| high.contains(&a))
            && row.companies_total > 0
        {
            picked.push((row, "high_value_at_risk"));
        }
    }
    let deltas = Deltas::of(r);
    let rate = |p: Option<Proportion>| p.map(|p| p.rate());
    picked
        .into_iter()
        .map(|(c, why)| {
            let before = deltas.before(c);
            vec![
                crate::render::format::slice_label(s, &slice_of(c)),
                s.get(&format!("key_slices.{why}")),
                deltas.cell(
                    f,
                    f.count(c.companies_total as f64),
                    Unit::Count,
                    Some(c.companies_total as f64),
                    before.map(|b| b.companies_total as f64),
                    None,
                ),
                f.money(c.counts.arr),
                deltas.cell(
                    f,
                    rate_of_n(f, weekly(c)),
                    Unit::Rate,
                    rate(weekly(c)),
                    before.and_then(|b| rate(weekly(b))),
                    None,
                ),
                deltas.cell(
                    f,
                    k_of_n(f, conversion(c)),
                    Unit::Rate,
                    rate(conversion(c)),
                    before.and_then(|b| rate(conversion(b))),
                    None,
                ),
            ]
        })
        .collect()
}

/// Every seat bucket, then every ARR bucket, across segments: the size tables, each
/// value with its change since the comparison period under it (not tested one by
/// one: no arrow).
fn sizes(r: &Run, lang: &Language) -> Vec<Vec<String>> {
    let (s, f) = (&lang.strings, &lang.format);
    let usage = r.usage();
    let deltas = Deltas::of(r);
    let rate = |p: Option<Proportion>| p.map(|p| p.rate());
    let share = |k: usize, n: usize| {
        Proportion::new(k, n).map_or_else(|| "—".to_owned(), |p| f.percent(p.rate()))
    };
    r.panels
        .seat_bucket
        .iter()
        .chain(&r.panels.arr_bucket)
        .map(|x| {
            let before = deltas.before(x);
            let cell = |value: String, unit: Unit, of: &dyn Fn(&SliceRow) -> Option<f64>| {
                deltas.cell(f, value, unit, of(x), before.and_then(of), None)
            };
            vec![
                crate::render::format::slice_label(s, &slice_of(x)),
                cell(f.count(x.companies_total as f64), Unit::Count, &|r| {
                    Some(r.companies_total as f64)
                }),
                cell(f.count(x.conv_cnt as f64), Unit::Count, &|r| {
                    Some(r.conv_cnt as f64)
                }),
                cell(share(x.counts.bot, x.conv_cnt), Unit::Rate, &|r| {
                    rate(Proportion::new(r.counts.bot, r.conv_cnt))
                }),
                cell(k_of_n(f, conversion(x)), Unit::Rate, &|r| {
                    rate(conversion(r))
                }),
                cell(
                    rate_of_n(f, retention(&[x], usage, true)),
                    Unit::Rate,
                    &|r| rate(retention(&[r], usage, true)),
                ),
            ]
        })
        .collect()
}

/// The segment profiles, as numbers with their counts.
fn profiles(r: &Run, lang: &Language) -> Vec<Vec<String>> {
    let (s, f) = (&lang.strings, &lang.format);
    let usage = r.usage();
    let share = |k: usize, n: usize| {
        Proportion::new(k, n).map_or_else(|| "—".to_owned(), |p| f.percent(p.rate()))
    };
    let deltas = Deltas::of(r);
    let rate = |p: Option<Proportion>| p.map(|p| p.rate());
    known_segments(r)
        .into_iter()
        .map(|x| {
            let before = deltas.before(x);
            let slice = x.segment.unwrap_or_default();
            let cell = |value: String,
                        unit: Unit,
                        of: &dyn Fn(&SliceRow) -> Option<f64>,
                        metric: Option<&str>| {
                deltas.cell(
                    f,
                    value,
                    unit,
                    of(x),
                    before.and_then(of),
                    metric.map(|m| (m, slice)),
                )
            };
            vec![
                s.label("segment", slice),
                cell(
                    f.count(x.conv_cnt as f64),
                    Unit::Count,
                    &|r| Some(r.conv_cnt as f64),
                    Some("conv_cnt"),
                ),
                cell(
                    share(x.counts.bot, x.conv_cnt),
                    Unit::Rate,
                    &|r| rate(Proportion::new(r.counts.bot, r.conv_cnt)),
                    Some("bot_first_resp_share"),
                ),
                cell(
                    k_of_n(f, conversion(x)),
                    Unit::Rate,
                    &|r| rate(conversion(r)),
                    Some("conv_to_feature_rate"),
                ),
                cell(
                    rate_of_n(f, retention(&[x], usage, true)),
                    Unit::Rate,
                    &|r| rate(retention(&[r], usage, true)),
                    Some("weekly_retention"),
                ),
                cell(
                    rate_of_n(f, retention(&[x], usage, false)),
                    Unit::Rate,
                    &|r| rate(retention(&[r], usage, false)),
                    Some("monthly_retention"),
                ),
                cell(
                    share(x.counts.inbound, x.conv_cnt),
                    Unit::Rate,
                    &|r| rate(Proportion::new(r.counts.inbound, r.conv_cnt)),
                    None,
                ),
                cell(
                    share(x.counts.team, x.conv_cnt),
                    Unit::Rate,
                    &|r| rate(Proportion::new(r.counts.team, r.conv_cnt)),
                    None,
                ),
            ]
        })
        .collect()
}

/// Whether the companies' ARR is known: not under the mapping's `paying = "all"`,
/// where every ARR sum is NaN.
fn arr_known(r: &Run) -> bool {
    !r.panels.segment.iter().any(|row| row.counts.arr.is_nan())
}

/// The definitions, with the bot-first one (or its proxy variant) fourth, and the
/// paying one of `paying = "all"` first where ARR is not known.
fn definitions(s: &Strings, arr_known: bool) -> Vec<String> {
    let mut list = s.list("scope.definitions");
    if !arr_known && !list.is_empty() {
        list[0] = s.get("scope.definition_paying_all");
    }
    list.insert(3.min(list.len()), s.get("scope.definition_bot"));
    list
}
