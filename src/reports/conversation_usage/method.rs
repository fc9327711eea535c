//! The method appendix of conversation-usage beyond its counts (spec §1–§3): the
//! window's anchor and the part of it the data covers, the segment fallback, the
//! labels' coverage per bucket on the analysed companies, the three key slices the
//! spec names (each set against its peers with the claims rules, or "not in this
//! data") and the panel's service and routing columns. Language-neutral records and
//! table cells; the words are the strings' and `analysis.tera`'s.

use serde_json::json;

use super::findings::{conversion, known_segment, retention, slice_of};
use super::metrics::{Coverage, SliceRow};
use crate::intercom::slices::UNKNOWN;
use crate::render::narrative::Finding;
use crate::render::templates::Language;
use crate::stats::claims::{compare_many, Proportion};

/// The slices `report-conversation-usage.md` §5 names: the reference analyses watch
/// them whatever stands out.
pub const SPEC_KEY_SLICES: [(&str, &str, &str); 3] = [
    ("new_contract", "260_419", "110k_200k"),
    ("churn_watch", "420_plus", "200k_plus"),
    ("renewal", "60_129", "30k_65k"),
];

/// One of [`SPEC_KEY_SLICES`] as the run found it: its row (none when no kept
/// conversation falls in it) and its peers, the same seats and ARR in the other
/// known segments.
struct KeySlice<'a> {
    named: (&'static str, &'static str, &'static str),
    row: Option<&'a SliceRow>,
    peers: Vec<&'a SliceRow>,
}

fn key_slices(r: &super::Run) -> Vec<KeySlice<'_>> {
    let cells = &r.panels.segment_seat_arr;
    SPEC_KEY_SLICES
        .iter()
        .map(|&(segment, seat, arr)| {
            let row = cells.iter().find(|c| {
                c.segment == Some(segment)
                    && c.seat_bucket == Some(seat)
                    && c.arr_bucket == Some(arr)
            });
            let peers = cells
                .iter()
                .filter(|c| {
                    c.seat_bucket == Some(seat)
                        && c.arr_bucket == Some(arr)
                        && known_segment(c)
                        && c.segment != Some(segment)
                })
                .collect();
            KeySlice {
                named: (segment, seat, arr),
                row,
                peers,
            }
        })
        .collect()
}

/// The pooled conversion of several cells (k of n companies with a closed
/// conversation).
fn pooled_conversion(rows: &[&SliceRow]) -> Option<Proportion> {
    rows.iter()
        .filter_map(|r| conversion(r))
        .reduce(Proportion::plus)
}

/// The key-slice records (section `key_slices`), one per slice the spec names:
/// weekly retention and conversion against the peers', each tested with the other
/// slices' tests (false discovery rate), only where the slice has `min_cell`
/// companies; "not in this data" where no kept conversation falls in it.
pub fn key_slice_records<'a>(r: &'a super::Run) -> Vec<Finding> {
    let usage = r.usage_source;
    let slices = key_slices(r);
    let min_cell = r.min_cell;
    let comparable = move |k: &KeySlice<'a>| -> Option<&'a SliceRow> {
        k.row.filter(|c| c.companies_total >= min_cell)
    };
    // Every test first, so that the correction counts them all.
    let mut tests: Vec<(usize, &'static str, Proportion, Proportion)> = Vec::new();
    for (i, k) in slices.iter().enumerate() {
        let Some(row) = comparable(k) else { continue };
        if let (Some(a), Some(b)) = (
            retention(&[row], usage, true),
            retention(&k.peers, usage, true),
        ) {
            tests.push((i, "weekly", a, b));
        }
        if let (Some(a), Some(b)) = (conversion(row), pooled_conversion(&k.peers)) {
            tests.push((i, "conversion", a, b));
        }
    }
    let verdicts = compare_many(&tests.iter().map(|t| (t.2, t.3)).collect::<Vec<_>>());
    slices
        .iter()
        .enumerate()
        .map(|(i, k)| {
            let mut x = Finding::new("key_slice", 0);
            x.lead = false;
            x.keys.insert("section", "key_slices");
            let (segment, seat, arr) = k.named;
            x.slices.insert(
                "cell",
                k.row.map_or_else(
                    || json!({ "segment": segment, "seat_bucket": seat, "arr_bucket": arr }),
                    slice_of,
                ),
            );
            let Some(row) = k.row else {
                x.keys.insert("present", "no");
                return x;
            };
            x.keys.insert("present", "yes");
            // "none": not tested (too few companies, or no rate to test).
            x.keys.insert("weekly_verdict", "none");
            x.keys.insert("conversion_verdict", "none");
            x.numbers.insert("companies", row.companies_total as f64);
            x.numbers.insert("arr", row.counts.arr);
            x.numbers.insert("min_cell", r.min_cell as f64);
            x.numbers.insert(
                "peer_companies",
                k.peers.iter().map(|p| p.companies_total).sum::<usize>() as f64,
            );
            x.keys.insert(
                "compared",
                if comparable(k).is_some() { "yes" } else { "no" },
            );
            let weekly = retention(&[row], usage, true);
            let peer_weekly = retention(&k.peers, usage, true);
            for (name, p) in [("weekly", weekly), ("peer_weekly", peer_weekly)] {
                if let Some(p) = p {
                    x.numbers.insert(name, p.rate());
                    x.numbers.insert(
                        if name == "weekly" {
                            "weekly_n"
                        } else {
                            "peer_weekly_n"
                        },
                        p.n,
                    );
                }
            }
            for (name, p) in [
                ("conversion", conversion(row)),
                ("peer_conversion", pooled_conversion(&k.peers)),
            ] {
                if let Some(p) = p {
                    x.numbers.insert(name, p.rate());
                    let (kk, nn) = if name == "conversion" {
                        ("conv_k", "conv_n")
                    } else {
                        ("peer_conv_k", "peer_conv_n")
                    };
                    x.numbers.insert(kk, p.k);
                    x.numbers.insert(nn, p.n);
                }
            }
            for ((j, metric, _, _), v) in tests.iter().zip(&verdicts) {
                if *j == i {
                    x.keys.insert(
                        if *metric == "weekly" {
                            "weekly_verdict"
                        } else {
                            "conversion_verdict"
                        },
                        v.key(),
                    );
                }
            }
            x
        })
        .collect()
}

/// Labels' sources over some companies as table cells: count and share of each.
fn coverage_cells(lang: &Language, c: Coverage) -> [String; 3] {
    let f = &lang.format;
    let total = c.total();
    let cell = |n: usize| match crate::stats::ratio(n, total) {
        Some(share) => format!("{} ({})", f.count(n as f64), f.percent(share)),
        None => f.count(n as f64),
    };
    [cell(c.tag), cell(c.column), cell(c.fallback)]
}

/// The slice-label coverage table of every paying company, each count with its
/// share.
pub fn paying_coverage(r: &super::Run, lang: &Language) -> Vec<[String; 4]> {
    let s = &lang.strings;
    let dq = &r.data_quality;
    [
        ("columns.segment", dq.coverage_segment),
        ("columns.seat_bucket", dq.coverage_seat_bucket),
        ("columns.arr_bucket", dq.coverage_arr_bucket),
    ]
    .map(|(key, c)| {
        let [tag, column, fallback] = coverage_cells(lang, c);
        [s.get(key), tag, column, fallback]
    })
    .into()
}

/// The same per bucket, on the analysed companies (those with kept conversations,
/// the panels' population): where the fallback decides a bucket, its figures rest
/// on seats and spend, not on the account team's label.
pub fn analysed_coverage(r: &super::Run, lang: &Language) -> Vec<[String; 4]> {
    let s = &lang.strings;
    let b = &r.data_quality.analysed_coverage;
    let names = |dim: &str, values: &[&'static str]| -> Vec<String> {
        values
            .iter()
            .chain([&UNKNOWN])
            .map(|v| s.label(dim, v))
            .collect()
    };
    let dims = [
        (
            "segment",
            names("segment", &crate::intercom::slices::SEGMENTS),
            &b.segment,
        ),
        (
            "seat_bucket",
            names("seat_bucket", r.buckets.seat),
            &b.seat_bucket,
        ),
        (
            "arr_bucket",
            names("arr_bucket", r.buckets.arr),
            &b.arr_bucket,
        ),
    ];
    let mut rows = Vec::new();
    for (dim, labels, counts) in dims {
        for (label, c) in labels.iter().zip(counts.iter()) {
            if c.total() == 0 {
                continue;
            }
            let [tag, column, fallback] = coverage_cells(lang, *c);
            rows.push([
                format!(
                    "{}{}{label}",
                    s.get(&format!("columns.{dim}")),
                    s.get("labels.separator")
                ),
                tag,
                column,
                fallback,
            ]);
        }
    }
    rows
}

/// The scope rows of the window's anchor, the part of it the data covers and the
/// segment fallback.
pub fn scope_rows(r: &super::Run, lang: &Language) -> Vec<[String; 2]> {
    let (s, f) = (&lang.strings, &lang.format);
    let mut rows = Vec::new();
    if let Some(d) = r.data {
        rows.push([
            s.get("method.anchor"),
            crate::source::timestamp::format_utc(d.end) + " UTC",
        ]);
    }
    let covered = crate::reports::period::covered(r.window, r.data);
    rows.push([
        s.get("method.covered"),
        match covered {
            Some(c) => {
                // The parts of the window without data, as dates.
                let day = |d: chrono::NaiveDate| d.format("%Y-%m-%d").to_string();
                let (w_first, w_last) = (r.window.start.date_naive(), r.window.end.date_naive());
                let mut v = c.values(lang);
                if let Some(before) = c.first.pred_opt().filter(|_| c.starts_late) {
                    v["before"] = json!(format!("{} – {}", day(w_first), day(before)));
                }
                if let Some(after) = c.last.succ_opt().filter(|_| c.ends_early) {
                    v["after"] = json!(format!("{} – {}", day(after), day(w_last)));
                }
                lang.fill("method.covered_part", &v)
            }
            None => s.get("method.covered_whole"),
        },
    ]);
    let paying = r.data_quality.coverage_segment;
    let analysed =
        r.data_quality
            .analysed_coverage
            .segment
            .iter()
            .fold(Coverage::default(), |a, c| Coverage {
                tag: a.tag + c.tag,
                column: a.column + c.column,
                fallback: a.fallback + c.fallback,
            });
    rows.push([
        s.get("method.segment_fallback"),
        lang.fill(
            "method.segment_fallback_value",
            &json!({
                "paying": f.count(paying.fallback as f64),
                "paying_of": f.count(paying.total() as f64),
                "analysed": f.count(analysed.fallback as f64),
                "analysed_of": f.count(analysed.total() as f64),
            }),
        ),
    ]);
    rows
}

/// The panel's second table: per cell, the columns of §4 the first one has no room
/// for (companies with a closed conversation of all, P50 response, mean duration,
/// team-routed and customer-initiated shares).
pub fn service_panel(r: &super::Run, lang: &Language) -> (Vec<String>, Vec<Vec<String>>) {
    let (s, f) = (&lang.strings, &lang.format);
    let header = [
        "columns.segment",
        "columns.seat_bucket",
        "columns.arr_bucket",
        "method.closed_kn",
        "method.p50_resp",
        "method.avg_duration",
        "columns.team_route",
        "columns.inbound",
    ]
    .map(|k| s.get(k))
    .to_vec();
    let opt_min = |v: Option<f64>| f.opt(v, |f, v| f.number(v, 1));
    let opt_pct = |v: Option<f64>| f.opt(v, |f, v| f.percent(v));
    let short = |dim: &str, v: Option<&str>| {
        v.map(|v| s.label(&format!("short_{dim}"), v))
            .unwrap_or_default()
    };
    let row = |c: &SliceRow| {
        vec![
            c.segment.map(|v| s.label("segment", v)).unwrap_or_default(),
            short("seat_bucket", c.seat_bucket),
            short("arr_bucket", c.arr_bucket),
            format!(
                "{}/{}",
                f.count(c.companies_with_closed_conv as f64),
                f.count(c.companies_total as f64)
            ),
            opt_min(c.p50_resp),
            opt_min(c.avg_duration),
            opt_pct(c.team_route_share),
            opt_pct(c.contact_inbound_share),
        ]
    };
    let mut rows: Vec<Vec<String>> = r.panels.segment_seat_arr.iter().map(row).collect();
    let mut overall = row(&r.panels.overall);
    overall[0] = s.get("labels.overall");
    rows.push(overall);
    (header, rows)
}
