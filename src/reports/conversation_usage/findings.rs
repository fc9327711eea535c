//! Findings and recommendations of the conversation-usage report (spec §6): which
//! conditions hold in this run's numbers under the shared claims rules
//! ([`crate::stats::claims`]), as language-neutral records the templates turn into
//! sentences. A comparison that does not hold is either not printed or printed as
//! "no clear difference"; it never leads page 1 and no recommendation rests on it.
//!
//! Why this file is long (about 880 lines of code): the findings and the
//! recommendations read the same tests of the segments (peers, eligible cells,
//! conversion and retention tests), and each recommendation rests on a finding that
//! holds; `analysis.rs` reads those tests too. Each target also carries the weeks that
//! check it and its pilot's sizing, and a headline no action answers gets a
//! `no_action` record with its reason.

use serde_json::{json, Value};

use super::metrics::{ConversationUsage, SliceRow, UsageDefinitions};
use crate::intercom::window::Window;
use crate::render::narrative::{Finding, Recommendation};
use crate::stats::claims::{
    benjamini_hochberg, compare, compare_many, lever_refused, peer_target, printed_difference,
    reconcile, sign_test_p, size_pilot, standouts, welch_p, within_strata_correlation, Lever,
    Moments, Proportion, Reading, Relationship, Target, Verdict, ALPHA, FDR_Q,
};

pub(super) fn slice_of(r: &SliceRow) -> Value {
    let mut m = serde_json::Map::new();
    for (k, v) in [
        ("segment", r.segment),
        ("seat_bucket", r.seat_bucket),
        ("arr_bucket", r.arr_bucket),
    ] {
        if let Some(v) = v {
            m.insert(k.into(), json!(v));
        }
    }
    Value::Object(m)
}

/// The segment panel's rows of known segments, in panel order.
pub(super) fn known_segments(r: &ConversationUsage) -> Vec<&SliceRow> {
    r.panels
        .segment
        .iter()
        .filter(|s| known_segment(s))
        .collect()
}

pub(super) fn known_segment(r: &SliceRow) -> bool {
    r.segment.is_some_and(|s| s != "unknown")
}

/// Conversion as k of n companies.
pub(super) fn conversion(r: &SliceRow) -> Option<Proportion> {
    r.conv_to_feature_rate?;
    Proportion::new(r.counts.converted, r.companies_with_closed_conv)
}

/// Weekly (or monthly) retention of several rows taken together, with the companies it
/// rests on: with events Σ retained pairs ÷ Σ pairs (the panel's own definition), with
/// proxies the mean over the pooled companies.
pub(super) fn retention(
    rows: &[&SliceRow],
    usage: UsageDefinitions,
    weekly: bool,
) -> Option<Proportion> {
    let n: usize = rows
        .iter()
        .filter(|r| rate_of(r, weekly).is_some())
        .map(|r| companies_of(r, weekly))
        .sum();
    let rate = match usage {
        UsageDefinitions::Events => {
            let (k, d) = rows.iter().fold((0, 0), |(k, d), r| {
                let p = if weekly {
                    r.counts.week_pairs
                } else {
                    r.counts.month_pairs
                };
                (k + p.0, d + p.1)
            });
            (d > 0).then(|| k as f64 / d as f64)
        }
        UsageDefinitions::Proxy => {
            let s: f64 = rows
                .iter()
                .filter_map(|r| Some(rate_of(r, weekly)? * companies_of(r, weekly) as f64))
                .sum();
            (n > 0).then(|| s / n as f64)
        }
        UsageDefinitions::None => None,
    };
    Proportion::from_rate(rate, n)
}

fn rate_of(r: &SliceRow, weekly: bool) -> Option<f64> {
    if weekly {
        r.weekly_retention
    } else {
        r.monthly_retention
    }
}

fn companies_of(r: &SliceRow, weekly: bool) -> usize {
    if weekly {
        r.counts.weekly_companies
    } else {
        r.counts.monthly_companies
    }
}

/// Why conversion and retention are empty, for a record's sentence: the reason and
/// what it names (`slices.usage_empty`, as summary.json carries it); nothing when
/// they are computed.
pub(super) fn put_usage_empty(x: &mut Finding, r: &ConversationUsage) {
    if let Some(e) = &r.usage_empty {
        x.slices.insert("usage_empty", json!(e));
    }
}

/// A proportion's numbers under `prefix`: rate, k, n (k unrounded: an effective count
/// for retention; the templates print it rounded).
pub(super) fn put(x: &mut Finding, prefix: &'static str, p: Proportion, keys: [&'static str; 2]) {
    x.numbers.insert(prefix, p.rate());
    x.numbers.insert(keys[0], p.k);
    x.numbers.insert(keys[1], p.n);
}

/// The known seat buckets that have a weekly retention, smallest first.
pub(super) fn seat_rows(r: &ConversationUsage) -> Vec<&SliceRow> {
    r.panels
        .seat_bucket
        .iter()
        .filter(|s| s.seat_bucket != Some("unknown") && s.weekly_retention.is_some())
        .collect()
}

/// A segment × ARR row's peers: the same ARR bucket in the other known segments.
fn arr_peers<'a>(rows: &'a [SliceRow], row: &SliceRow) -> Vec<&'a SliceRow> {
    rows.iter()
        .filter(|p| p.arr_bucket == row.arr_bucket && known_segment(p) && p.segment != row.segment)
        .collect()
}

/// The smallest and largest of some values; `None` without any.
fn range(values: impl Iterator<Item = f64>) -> Option<(f64, f64)> {
    values.fold(None, |acc, v| match acc {
        None => Some((v, v)),
        Some((lo, hi)) => Some((f64::min(lo, v), f64::max(hi, v))),
    })
}

/// The two highest ARR buckets (high value).
pub(super) fn high_value_arr(r: &ConversationUsage) -> &[&'static str] {
    &r.buckets.arr[3..]
}

/// Findings whose condition holds in this data (and the reconciled statements that
/// say a relationship does not hold), in page order.
pub fn findings(r: &super::Run) -> Vec<Finding> {
    let mut out = Vec::new();
    out.extend(churn_watch_high_value(r));
    out.extend(retention_by_size(r));
    out.extend(bot_retention(r));
    out.extend(service_model(r));
    out.extend(conversion_differences(r));
    out.extend(bot_conversion(r));
    if !out.iter().any(|f| f.lead) {
        let mut x = Finding::new("nothing_stands_out", 0);
        x.numbers
            .insert("companies", r.counts.companies_kept as f64);
        x.numbers
            .insert("conversations", r.counts.conversations_kept as f64);
        put_usage_empty(&mut x, r);
        out.push(x);
    }
    out.sort_by_key(|x| x.rank);
    // The change since the comparison period leads page 1, whatever it is (also
    // "nothing changed"), unless the data covers it only in part.
    if let Some(c) = &r.comparison {
        crate::reports::comparison::place(&mut out, c);
    }
    out
}

/// High-value churn-watch rows against the same ARR bucket in the other segments: the
/// one whose weekly retention falls short by the most, when the shortfall holds.
fn churn_watch_high_value(r: &ConversationUsage) -> Option<Finding> {
    let usage = r.usage();
    let rows = &r.panels.segment_arr;
    let candidates: Vec<(&SliceRow, Proportion, Proportion)> = rows
        .iter()
        .filter(|s| {
            s.segment == Some("churn_watch")
                && s.arr_bucket.is_some_and(|a| high_value_arr(r).contains(&a))
                && s.companies_total >= r.min_cell
        })
        .filter_map(|s| {
            Some((
                s,
                retention(&[s], usage, true)?,
                retention(&arr_peers(rows, s), usage, true)?,
            ))
        })
        .collect();
    let verdicts = compare_many(
        &candidates
            .iter()
            .map(|(_, c, p)| (*c, *p))
            .collect::<Vec<_>>(),
    );
    let (row, cur, peers) = candidates
        .iter()
        .zip(verdicts)
        .filter(|(_, v)| *v == Verdict::Lower)
        .map(|(c, _)| *c)
        .max_by(|a, b| (a.2.rate() - a.1.rate()).total_cmp(&(b.2.rate() - b.1.rate())))?;
    let mut x = Finding::new("churn_watch_high_value", 1);
    put(&mut x, "weekly", cur, ["weekly_k", "weekly_n"]);
    put(&mut x, "peer_weekly", peers, ["peer_k", "peer_n"]);
    x.numbers.insert(
        "gap",
        printed_difference(peers.rate(), cur.rate(), 100.0, 1),
    );
    x.numbers.insert("companies", row.companies_total as f64);
    x.numbers.insert("arr", row.counts.arr);
    if let (Some(m), Some(pm)) = (
        retention(&[row], usage, false),
        retention(&arr_peers(rows, row), usage, false),
    ) {
        x.numbers.insert("monthly", m.rate());
        x.numbers.insert("peer_monthly", pm.rate());
        x.keys.insert("monthly_verdict", compare(m, pm).key());
    }
    x.slices.insert("cell", slice_of(row));
    x.slices
        .insert("peers", json!({ "arr_bucket": row.arr_bucket }));
    Some(x)
}

/// Weekly retention of the smallest against the largest seat bucket, when it differs.
fn retention_by_size(r: &ConversationUsage) -> Option<Finding> {
    let usage = r.usage();
    let seats = seat_rows(r);
    let (small, large) = (*seats.first()?, *seats.last()?);
    if std::ptr::eq(small, large) {
        return None;
    }
    let (ps, pl) = (
        retention(&[small], usage, true)?,
        retention(&[large], usage, true)?,
    );
    let verdict = compare(ps, pl);
    if !verdict.holds() {
        return None;
    }
    let mut x = Finding::new("retention_by_size", 2);
    put(&mut x, "small_weekly", ps, ["small_k", "small_n"]);
    put(&mut x, "large_weekly", pl, ["large_k", "large_n"]);
    x.numbers.insert(
        "gap",
        printed_difference(ps.rate(), pl.rate(), 100.0, 1).abs(),
    );
    if let (Some(sm), Some(lm)) = (small.monthly_retention, large.monthly_retention) {
        x.numbers.insert("small_monthly", sm);
        x.numbers.insert("large_monthly", lm);
    }
    x.numbers
        .insert("large_companies", large.companies_total as f64);
    x.numbers.insert("large_arr", large.counts.arr);
    x.keys
        .insert("direction", verdict.if_higher("falls", "rises"));
    x.slices.insert("small", slice_of(small));
    x.slices.insert("large", slice_of(large));
    Some(x)
}

pub(super) fn eligible_cells(r: &ConversationUsage) -> impl Iterator<Item = &SliceRow> {
    r.panels
        .segment_seat_arr
        .iter()
        .filter(move |c| c.companies_total >= r.min_cell)
}

/// Bot-first share against weekly retention within seat buckets (account size) and
/// within segments (routing follows the segment), over the eligible cells: the
/// confounders the headline is checked against, also printed in the diagnostics.
pub(super) fn bot_retention_within(r: &ConversationUsage) -> [Option<Relationship>; 2] {
    let by = |key: fn(&SliceRow) -> Option<&'static str>| {
        let points: Vec<(Option<&str>, f64, f64)> = eligible_cells(r)
            .filter_map(|c| Some((key(c), c.bot_first_resp_share?, c.weekly_retention?)))
            .collect();
        within_strata_correlation(&points)
    };
    [by(|c| c.seat_bucket), by(|c| c.segment)]
}

/// The companies' side of the bot-first link: in how many segment × ARR groups the
/// most bot-first third retains (converts) less than the least, of the groups where
/// they differ: ((k, m) retention, (k, m) conversion).
pub(super) fn bot_third_counts(r: &ConversationUsage) -> [(usize, usize); 2] {
    let mut strata: Vec<(&'static str, &'static str)> = r
        .tertiles
        .iter()
        .filter(|t| t.by == "bot_share")
        .map(|t| (t.segment, t.arr_bucket))
        .collect();
    strata.sort_unstable();
    strata.dedup();
    let get = |s: &(&str, &str), group: &str| {
        r.tertiles
            .iter()
            .find(|t| t.by == "bot_share" && (t.segment, t.arr_bucket) == *s && t.group == group)
    };
    let (mut ret, mut conv) = ((0, 0), (0, 0));
    for s in &strata {
        let (Some(low), Some(high)) = (get(s, "low"), get(s, "high")) else {
            continue;
        };
        if let (Some(l), Some(h)) = (low.weekly_retention, high.weekly_retention) {
            if l != h {
                ret.1 += 1;
                ret.0 += usize::from(h < l);
            }
        }
        if let (Some(l), Some(h)) = (low.conversion, high.conversion) {
            if l != h {
                conv.1 += 1;
                conv.0 += usize::from(h < l);
            }
        }
    }
    [ret, conv]
}

/// Whether k of m groups going one way is a pattern (sign test): none, chance, worse
/// (most of them lower), better.
pub(super) fn third_pattern((k, m): (usize, usize)) -> &'static str {
    if m == 0 {
        "none"
    } else if sign_test_p(k, m) >= ALPHA {
        "chance"
    } else if 2 * k > m {
        "worse"
    } else {
        "better"
    }
}

/// Bot-first share against weekly retention across cells, checked where it could be
/// a confounder's: within seat buckets (size), within segments (routing) and among the
/// companies of each segment × ARR group (the thirds). It leads page 1 only when it
/// holds at every one of these levels; otherwise it is one reconciled statement of
/// where it stops holding.
fn bot_retention(r: &ConversationUsage) -> Option<Finding> {
    let c = &r.correlations.bot_share_vs_weekly_retention;
    let across = Relationship::of(c.r, c.n)?;
    if !across.holds {
        return None;
    }
    let [by_size, by_segment] = bot_retention_within(r);
    let same_way = |w: &Relationship| w.holds && w.r.signum() == across.r.signum();
    let mut x = Finding::new("bot_retention", 3);
    x.numbers.insert("r", across.r);
    x.numbers.insert("cells", across.n as f64);
    x.keys.insert(
        "direction",
        if across.r < 0.0 {
            "negative"
        } else {
            "positive"
        },
    );
    let mut holds = true;
    for (w, key, yes, no) in [
        (by_size, "size", "holds_within_size", "explained_by_size"),
        (
            by_segment,
            "segment",
            "holds_within_segment",
            "explained_by_segment",
        ),
    ] {
        match w {
            Some(w) => {
                x.numbers.insert(
                    if key == "size" {
                        "r_within"
                    } else {
                        "r_segment"
                    },
                    w.r,
                );
                x.keys.insert(key, if same_way(&w) { yes } else { no });
                holds &= same_way(&w);
            }
            None => {
                x.keys.insert(key, "not_checked");
            }
        }
    }
    let [ret, _] = bot_third_counts(r);
    let pattern = third_pattern(ret);
    x.numbers.insert("thirds_k", ret.0 as f64);
    x.numbers.insert("thirds_m", ret.1 as f64);
    x.keys.insert("thirds", pattern);
    let expected = if across.r < 0.0 { "worse" } else { "better" };
    holds &= pattern == expected;
    x.keys
        .insert("reading", if holds { "holds" } else { "cells_only" });
    // A pattern of the cells that their companies or a confounder does not carry is
    // context, not a lead.
    x.lead = holds;
    Some(x)
}

/// The service model: does first response differ by segment at all (Welch, corrected),
/// and how conversations are routed (team vs admin, corrected), with counts.
fn service_model(r: &ConversationUsage) -> Option<Finding> {
    let segs = known_segments(r);
    if segs.is_empty() {
        return None;
    }
    let overall = &r.panels.overall;
    let mut x = Finding::new("service_model", 4);
    // Response: each segment's mean against the others'.
    let moments = |s: &SliceRow| {
        Some(Moments {
            n: s.counts.resp_n as f64,
            mean: s.avg_resp?,
            var: s.counts.resp_var?,
        })
    };
    let p: Vec<f64> = segs
        .iter()
        .filter_map(|s| {
            let rest = rest_moments(&segs, s)?;
            Some(welch_p(moments(s)?, rest))
        })
        .collect();
    let differs = benjamini_hochberg(&p, FDR_Q).into_iter().any(|k| k);
    if let Some((lo, hi)) = range(segs.iter().filter_map(|s| s.p50_resp)) {
        x.numbers.insert("p50_min", lo);
        x.numbers.insert("p50_max", hi);
    }
    if let (Some(p50), Some(p90)) = (overall.p50_resp, overall.p90_resp) {
        x.numbers.insert("p50", p50);
        x.numbers.insert("p90", p90);
    }
    x.numbers.insert(
        "unanswered",
        (overall.conv_cnt - overall.counts.resp_n) as f64,
    );
    x.numbers.insert("unclosed", overall.counts.unclosed as f64);
    x.numbers.insert("conversations", overall.conv_cnt as f64);
    // Without any first-response time there is no service speed to describe.
    x.keys.insert(
        "response",
        if overall.p50_resp.is_none() {
            "unknown"
        } else if differs {
            "differs"
        } else {
            "uniform"
        },
    );
    // Routing: segments whose team share is clearly above / below the rest.
    if overall.team_route_share.is_some() {
        let pairs: Vec<(Proportion, Proportion)> = segs
            .iter()
            .filter_map(|s| {
                let me = Proportion::new(s.counts.team, s.conv_cnt)?;
                let rest = Proportion::new(
                    overall.counts.team - s.counts.team,
                    overall.conv_cnt - s.conv_cnt,
                )?;
                Some((me, rest))
            })
            .collect();
        let verdicts = compare_many(&pairs);
        let group = |v: Verdict| {
            let rows: Vec<&SliceRow> = segs
                .iter()
                .zip(&verdicts)
                .filter(|(_, x)| **x == v)
                .map(|(s, _)| *s)
                .collect();
            let k: usize = rows.iter().map(|s| s.counts.team).sum();
            let n: usize = rows.iter().map(|s| s.conv_cnt).sum();
            (rows, Proportion::new(k, n))
        };
        let (team, team_p) = group(Verdict::Higher);
        let (admin, admin_p) = group(Verdict::Lower);
        if let (Some(tp), Some(ap)) = (team_p, admin_p) {
            x.keys.insert("routing", "split");
            put(&mut x, "team_share", tp, ["team_k", "team_n"]);
            put(&mut x, "admin_team_share", ap, ["admin_k", "admin_n"]);
            x.slices.insert(
                "team_segments",
                json!(team.iter().filter_map(|s| s.segment).collect::<Vec<_>>()),
            );
            x.slices.insert(
                "admin_segments",
                json!(admin.iter().filter_map(|s| s.segment).collect::<Vec<_>>()),
            );
        } else {
            x.keys.insert("routing", "uniform");
        }
        if let Some(t) = overall.team_route_share {
            x.numbers.insert("team_overall", t);
        }
    } else {
        x.keys.insert("routing", "unknown");
    }
    if let Some(i) = overall.contact_inbound_share {
        x.numbers.insert("inbound", i);
    }
    if let Some(b) = overall.bot_first_resp_share {
        x.numbers.insert("bot", b);
    }
    // The service model is context for the reader: it leads only when something differs.
    x.lead = differs;
    Some(x)
}

/// The other segments' response sample, pooled from their means and variances.
pub(super) fn rest_moments(segs: &[&SliceRow], me: &SliceRow) -> Option<Moments> {
    let rest: Vec<(f64, f64, f64)> = segs
        .iter()
        .filter(|s| !std::ptr::eq(**s, me))
        .filter_map(|s| Some((s.counts.resp_n as f64, s.avg_resp?, s.counts.resp_var?)))
        .collect();
    let n: f64 = rest.iter().map(|x| x.0).sum();
    if n < 2.0 {
        return None;
    }
    let mean = rest.iter().map(|x| x.0 * x.1).sum::<f64>() / n;
    // Within- plus between-group sums of squares.
    let ss: f64 = rest
        .iter()
        .map(|(k, m, v)| (k - 1.0) * v + k * (m - mean) * (m - mean))
        .sum();
    Some(Moments {
        n,
        mean,
        var: ss / (n - 1.0),
    })
}

/// Conversion: segments against the rest (corrected), and the best and worst cells
/// under the events rule; one finding saying which differences hold, or that none do.
/// A segment's conversion against the rest of the paying companies, and the verdict.
pub(super) struct SegmentTest<'a> {
    pub row: &'a SliceRow,
    pub own: Proportion,
    pub rest: Proportion,
    pub verdict: Verdict,
}

/// Each known segment's 72-hour conversion against everyone else's (overall minus the
/// segment), tested together (Benjamini–Hochberg): the one comparison the conversion
/// finding and the plan per segment both read.
pub(super) fn segment_conversion_tests(r: &ConversationUsage) -> Vec<SegmentTest<'_>> {
    let Some(overall) = conversion(&r.panels.overall) else {
        return Vec::new();
    };
    let tested: Vec<(&SliceRow, Proportion, Proportion)> = known_segments(r)
        .into_iter()
        .filter_map(|s| {
            let own = conversion(s)?;
            let rest = Proportion {
                k: overall.k - own.k,
                n: overall.n - own.n,
            };
            (rest.n > 0.0).then_some((s, own, rest))
        })
        .collect();
    let pairs: Vec<(Proportion, Proportion)> = tested.iter().map(|t| (t.1, t.2)).collect();
    tested
        .into_iter()
        .zip(compare_many(&pairs))
        .map(|((row, own, rest), verdict)| SegmentTest {
            row,
            own,
            rest,
            verdict,
        })
        .collect()
}

fn conversion_differences(r: &ConversationUsage) -> Option<Finding> {
    let overall = conversion(&r.panels.overall)?;
    let cells: Vec<&SliceRow> = eligible_cells(r)
        .filter(|c| conversion(c).is_some())
        .collect();
    let props: Vec<Proportion> = cells.iter().filter_map(|c| conversion(c)).collect();
    let (best, worst) = standouts(&props, overall);
    let tests = segment_conversion_tests(r);
    let mut x = Finding::new("conversion", 5);
    put(&mut x, "overall", overall, ["overall_k", "overall_n"]);
    x.numbers.insert("cells", cells.len() as f64);
    x.numbers.insert("min_cell", r.min_cell as f64);
    let mut any = false;
    if let Some(i) = best {
        put(&mut x, "best", props[i], ["best_k", "best_n"]);
        x.slices.insert("best", slice_of(cells[i]));
        any = true;
    }
    if let Some(i) = worst {
        put(&mut x, "worst", props[i], ["worst_k", "worst_n"]);
        x.slices.insert("worst", slice_of(cells[i]));
        any = true;
    }
    // The segment that differs most from the rest, among those that differ.
    let gap = |t: &SegmentTest| (t.own.rate() - t.rest.rate()).abs();
    if let Some(t) = tests
        .iter()
        .filter(|t| t.verdict.holds())
        .min_by(|a, b| gap(b).total_cmp(&gap(a)))
    {
        put(&mut x, "segment", t.own, ["segment_k", "segment_n"]);
        put(&mut x, "segment_rest", t.rest, ["rest_k", "rest_n"]);
        x.slices.insert("segment", slice_of(t.row));
        x.keys.insert("segment_verdict", t.verdict.key());
        any = true;
    }
    let rates = known_segments(r)
        .into_iter()
        .filter(|s| conversion(s).is_some())
        .filter_map(|s| s.conv_to_feature_rate);
    if let Some((lo, hi)) = range(rates) {
        x.numbers.insert("segment_min", lo);
        x.numbers.insert("segment_max", hi);
    }
    x.keys.insert("holds", if any { "some" } else { "none" });
    x.lead = any;
    Some(x)
}

/// Bot-first share and conversion, read at the cell and the company level and across
/// the tertile groups, as one reconciled statement.
fn bot_conversion(r: &ConversationUsage) -> Option<Finding> {
    let c = &r.correlations;
    let cells = Relationship::of(c.bot_share_vs_conversion.r, c.bot_share_vs_conversion.n);
    let companies = Relationship::of(
        c.company_bot_share_vs_converted.r,
        c.company_bot_share_vs_converted.n,
    );
    if cells.is_none() && companies.is_none() {
        return None;
    }
    let reading = reconcile(cells, companies);
    let mut x = Finding::new("bot_conversion", 6);
    if let Some(c) = cells {
        x.numbers.insert("r_cells", c.r);
        x.numbers.insert("n_cells", c.n as f64);
    }
    if let Some(c) = companies {
        x.numbers.insert("r_companies", c.r);
        x.numbers.insert("n_companies", c.n as f64);
    }
    // The tertiles, pooled: converted companies of the high and low thirds.
    let pooled = |group: &str| {
        let (k, n) = r
            .tertiles
            .iter()
            .filter(|t| t.by == "bot_share" && t.group == group)
            .filter_map(|t| Some(((t.conversion? * t.n as f64).round(), t.n as f64)))
            .fold((0.0, 0.0), |(a, b), (k, n)| (a + k, b + n));
        (n > 0.0).then_some(Proportion { k, n })
    };
    if let (Some(high), Some(low)) = (pooled("high"), pooled("low")) {
        put(&mut x, "high_third", high, ["high_k", "high_n"]);
        put(&mut x, "low_third", low, ["low_k", "low_n"]);
        x.keys.insert("thirds", compare(high, low).key());
    }
    x.keys.insert("reading", reading.key());
    let direction = match reading {
        Reading::Consistent | Reading::MembersOnly => companies.map(|c| c.r),
        Reading::GroupsOnly => cells.map(|c| c.r),
        _ => None,
    };
    x.keys.insert(
        "direction",
        match direction {
            Some(v) if v < 0.0 => "negative",
            Some(_) => "positive",
            None => "none",
        },
    );
    x.lead = reading == Reading::Consistent;
    Some(x)
}

/// Recommendations, each following from a finding that holds, with a target from a
/// peer group that reaches it, in the order of the headlines they answer: every
/// headline gets its action, or a record saying why there is none.
pub fn recommendations(r: &ConversationUsage, findings: &[Finding]) -> Vec<Recommendation> {
    let mut out = Vec::new();
    let by_id = |id: &str| findings.iter().find(|f| f.id == id);
    let check = check_period(r);

    if let Some(f) = by_id("churn_watch_high_value") {
        let cur = Proportion {
            k: f.numbers["weekly_k"],
            n: f.numbers["weekly_n"],
        };
        let peers = Proportion {
            k: f.numbers["peer_k"],
            n: f.numbers["peer_n"],
        };
        match peer_target(cur, peers, r.min_cell, true) {
            Some(t) => {
                let mut x = Recommendation::new("save_desk", f.id);
                target_numbers(&mut x, &t, f.numbers["companies"], f.numbers["arr"], &check);
                x.keys.insert("owner", "customer_success");
                x.keys.insert("measure", "weekly_retention");
                x.slices.insert("cell", f.slices["cell"].clone());
                x.slices.insert("peers", f.slices["peers"].clone());
                out.push(x);
            }
            None => out.push(no_action(f, "no_peer_level")),
        }
    }
    if let Some(f) = by_id("retention_by_size") {
        let seats = seat_rows(r);
        let action = (f.keys.get("direction") == Some(&"falls"))
            .then(|| large_account_cadence(r, &seats, &check))
            .flatten();
        match action {
            Some(x) => out.push(x),
            None if f.lead => out.push(no_action(f, "no_peer_level")),
            None => {}
        }
    }
    if let Some(f) = by_id("bot_retention").filter(|f| f.lead) {
        // An association across cells, even one that holds at every level checked,
        // names no lever whose effect is known: the action is to test it, not to
        // change the bot.
        out.push(no_action(f, "association"));
    }
    // Service speed: a faster tier pulls a lever the diagnosis rules out when the
    // response is the same everywhere while retention gaps hold.
    if let Some(f) = by_id("service_model") {
        let gaps = [
            "churn_watch_high_value",
            "retention_by_size",
            "bot_retention",
        ]
        .iter()
        .any(|id| by_id(id).is_some());
        let ruled_out: &[Lever] = if f.keys.get("response") == Some(&"uniform") && gaps {
            &[Lever::ResponseSpeed]
        } else {
            &[]
        };
        if lever_refused(Lever::ResponseSpeed, ruled_out) {
            if let Some(x) = keep_service_levels(r, f) {
                out.push(x);
            }
        }
    }
    if let Some(f) = by_id("conversion") {
        if let (Some(worst), Some(seg)) = (
            f.slices.get("worst"),
            f.slices
                .get("worst")
                .and_then(|w| w.get("segment"))
                .and_then(Value::as_str),
        ) {
            // Peers: the same segment at other sizes.
            let cur = Proportion {
                k: f.numbers["worst_k"],
                n: f.numbers["worst_n"],
            };
            let peers = eligible_cells(r)
                .filter(|c| c.segment == Some(seg) && slice_of(c) != *worst)
                .filter_map(conversion)
                .reduce(Proportion::plus);
            if let Some(t) = peers.and_then(|p| peer_target(cur, p, r.min_cell, true)) {
                let mut x = Recommendation::new("lift_worst_conversion", f.id);
                target_numbers(&mut x, &t, cur.n, 0.0, &check);
                x.keys.insert("owner", "support_enablement");
                x.keys.insert("measure", "conversion");
                x.slices.insert("cell", worst.clone());
                x.slices.insert("peers", json!({ "segment": seg }));
                out.push(x);
            }
        }
    }
    out
}

/// The largest seat bucket held to the nearest smaller bucket that retains better
/// beyond doubt (the next size down first): the closest comparable size that gives a
/// target.
fn large_account_cadence(
    r: &ConversationUsage,
    seats: &[&SliceRow],
    check: &str,
) -> Option<Recommendation> {
    let usage = r.usage();
    let (large, smaller) = seats.split_last()?;
    let cur = retention(&[large], usage, true)?;
    let (peer, t) = smaller.iter().rev().find_map(|peer| {
        let pp = retention(&[peer], usage, true)?;
        Some((*peer, peer_target(cur, pp, r.min_cell, true)?))
    })?;
    let mut x = Recommendation::new("large_account_cadence", "retention_by_size");
    target_numbers(
        &mut x,
        &t,
        large.companies_total as f64,
        large.counts.arr,
        check,
    );
    x.keys.insert("owner", "account_management");
    x.keys.insert("measure", "weekly_retention");
    x.slices.insert("cell", slice_of(large));
    x.slices.insert("peers", slice_of(peer));
    Some(x)
}

/// A headline without an action, and why (`keys.why`): page 1 says so instead of
/// leaving the headline unanswered.
fn no_action(f: &Finding, why: &'static str) -> Recommendation {
    let mut x = Recommendation::new("no_action", f.id);
    x.keys.insert("why", why);
    x.keys.insert("owner", "support_operations");
    x.keys.insert("finding", f.id);
    for key in ["cell", "large"] {
        if let Some(c) = f.slices.get(key) {
            x.slices.insert("cell", c.clone());
        }
    }
    x
}

/// The period a target is checked on: the pilot's weeks right after this window,
/// alone. A rolling edition that still holds months of this window would dilute any
/// change, so the target is not set on one.
fn check_period(r: &ConversationUsage) -> String {
    let start = r.window.end + chrono::Duration::seconds(1);
    Window {
        start,
        end: r.window.end + chrono::Duration::weeks(PILOT_WEEKS as i64),
    }
    .period()
}

/// The numbers every targeted recommendation prints: current, target, the peers' rate
/// and size, the what-if (members who would move, and their ARR at the group's
/// average) labelled in the templates as an association-based estimate, and the
/// pilot sized for the target's change over the period that checks it.
fn target_numbers(x: &mut Recommendation, t: &Target, companies: f64, arr: f64, check: &str) {
    x.numbers.insert("current", t.current.rate());
    x.numbers.insert("current_n", t.current.n);
    x.numbers.insert("target", t.value);
    x.numbers.insert("peer_rate", t.peers.rate());
    x.numbers.insert("peer_n", t.peers.n);
    // The companies a reader gets from the printed rates: the printed change times the
    // companies measured.
    let effect = printed_difference(t.value, t.current.rate(), 100.0, 1);
    let moved = (effect.abs() * t.current.n).round().max(1.0);
    x.numbers.insert("moved", moved);
    x.numbers.insert("companies", companies);
    // NaN where ARR is not known (`paying = "all"`): the templates leave it out.
    x.numbers.insert("arr", arr);
    if arr > 0.0 && companies > 0.0 {
        x.numbers
            .insert("arr_moved", moved * arr / companies.max(t.current.n));
    }
    x.numbers.insert("weeks", PILOT_WEEKS);
    x.numbers.insert("effect", effect.abs());
    if let Some(p) = size_pilot(t.current.rate(), effect, t.current.n, t.peers.n) {
        x.numbers.insert("detectable", p.detectable);
        x.numbers.insert("needed_per_arm", p.needed_per_arm);
        x.numbers.insert("treated", p.treated);
        x.numbers.insert("comparison", p.comparison);
        x.keys.insert("design", p.design.key());
        x.keys.insert("shows", if p.shows { "yes" } else { "no" });
    }
    x.slices.insert("check", json!(check));
}

/// How long the pilots run: two monthly editions see them.
pub(super) const PILOT_WEEKS: f64 = 8.0;

/// The service levels kept when speed is ruled out as the lever: today's median and
/// P90 for every account, watched, instead of a faster tier the findings argue against.
fn keep_service_levels(r: &ConversationUsage, f: &Finding) -> Option<Recommendation> {
    let overall = &r.panels.overall;
    let (p50, p90) = (overall.p50_resp?, overall.p90_resp?);
    let mut x = Recommendation::new("keep_service_levels", f.id);
    x.numbers.insert("p50", p50);
    x.numbers.insert("p90", p90);
    x.keys.insert("owner", "support_operations");
    x.keys.insert("measure", "first_response");
    Some(x)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reports::conversation_usage::metrics::SliceCounts;

    fn row(segment: &'static str, seat: Option<&'static str>, weekly: f64, n: usize) -> SliceRow {
        SliceRow {
            segment: Some(segment),
            seat_bucket: seat,
            arr_bucket: None,
            companies_total: n,
            companies_with_closed_conv: n,
            conv_cnt: 3 * n,
            avg_resp: Some(25.0),
            p50_resp: Some(25.0),
            p90_resp: Some(34.0),
            avg_duration: None,
            bot_first_resp_share: Some(0.3),
            conv_to_feature_rate: Some(0.03),
            weekly_retention: Some(weekly),
            monthly_retention: Some(weekly - 0.1),
            team_route_share: None,
            contact_inbound_share: None,
            counts: SliceCounts {
                weekly_companies: n,
                monthly_companies: n,
                ..SliceCounts::default()
            },
        }
    }

    #[test]
    fn pooled_proxy_retention_is_the_mean_over_companies() {
        let a = row("renewal", None, 0.8, 100);
        let b = row("expansion", None, 0.5, 300);
        let p = retention(&[&a, &b], UsageDefinitions::Proxy, true).unwrap();
        assert!((p.rate() - (0.8 * 100.0 + 0.5 * 300.0) / 400.0).abs() < 1e-12);
        assert_eq!(p.n, 400.0);
    }

    #[test]
    fn pooled_event_retention_is_pairs_over_pairs() {
        let mut a = row("renewal", None, 0.5, 10);
        a.counts.week_pairs = (50, 100);
        let mut b = row("expansion", None, 0.9, 30);
        b.counts.week_pairs = (90, 100);
        let p = retention(&[&a, &b], UsageDefinitions::Events, true).unwrap();
        assert!((p.rate() - 0.7).abs() < 1e-12);
        // Companies, not company-weeks, are the sample size.
        assert_eq!(p.n, 40.0);
    }

    #[test]
    fn rest_moments_pool_means_and_variances() {
        let mut a = row("renewal", None, 0.5, 10);
        a.counts.resp_n = 3;
        a.avg_resp = Some(2.0);
        a.counts.resp_var = Some(1.0); // 1, 2, 3
        let mut b = row("expansion", None, 0.5, 10);
        b.counts.resp_n = 3;
        b.avg_resp = Some(5.0);
        b.counts.resp_var = Some(1.0); // 4, 5, 6
        let me = row("new_contract", None, 0.5, 10);
        let m = rest_moments(&[&a, &b, &me], &me).unwrap();
        let direct = Moments::of([1.0, 2.0, 3.0, 4.0, 5.0, 6.0]).unwrap();
        assert!((m.mean - direct.mean).abs() < 1e-12);
        assert!((m.var - direct.var).abs() < 1e-12);
    }
}
