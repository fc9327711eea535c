//! The analysis sections of the conversation-usage report beyond its findings: the
//! diagnosis (why the numbers look like this), what-if sizes of the recommended
//! actions, a plan per segment, the pilot design and the limitations with the data
//! that would remove them. Language-neutral records (`keys.section` names the
//! section) that `analysis.tera` turns into sentences; every number is the run's own
//! and every comparison goes through the shared claims rules.

use serde_json::json;

use super::findings::{
    bot_third_counts, conversion, high_value_arr, known_segments, put_usage_empty, retention,
    seat_rows, segment_conversion_tests, slice_of, third_pattern,
};
use super::metrics::{BotMeasure, ConversationUsage, SliceRow, UsageDefinitions};
use crate::render::narrative::{Finding, Recommendation};
use crate::stats::claims::{compare, compare_many, Proportion, Verdict};

fn record(section: &'static str, id: &'static str) -> Finding {
    let mut x = Finding::new(id, 0);
    x.lead = false;
    x.keys.insert("section", section);
    x
}

/// Every analysis record of a run, in page order.
pub fn analysis(
    r: &super::Run,
    findings: &[Finding],
    recommendations: &[Recommendation],
) -> Vec<Finding> {
    let mut out = vec![stake(r)];
    if let Some(c) = &r.comparison {
        out.extend(crate::reports::comparison::section(c));
    }
    out.extend(diagnosis(r, findings));
    out.extend(what_if(recommendations));
    out.extend(plan(r, recommendations));
    out.extend(pilots(recommendations));
    out.extend(super::method::key_slice_records(r));
    out.extend(limitations(r));
    out
}

fn has<'a>(findings: &'a [Finding], id: &str) -> Option<&'a Finding> {
    findings.iter().find(|f| f.id == id)
}

/// What is at stake (page 1): the companies and ARR the report covers, and those of
/// Churn watch, in all and in the highest ARR bands.
fn stake(r: &ConversationUsage) -> Finding {
    let mut x = record("stake", "stake");
    let overall = &r.panels.overall;
    x.numbers
        .insert("companies", overall.companies_total as f64);
    x.numbers.insert("arr", overall.counts.arr);
    put_usage_empty(&mut x, r);
    if let Some(c) = r
        .panels
        .segment
        .iter()
        .find(|s| s.segment == Some("churn_watch"))
    {
        x.numbers
            .insert("churn_companies", c.companies_total as f64);
        x.numbers.insert("churn_arr", c.counts.arr);
        let high = high_value_arr(r);
        // The parts themselves, not their total: a total of rounded parts would not
        // read as their sum.
        let parts: Vec<serde_json::Value> = r
            .panels
            .segment_arr
            .iter()
            .filter(|s| {
                s.segment == Some("churn_watch")
                    && s.arr_bucket.is_some_and(|a| high.contains(&a))
                    && s.companies_total > 0
            })
            .map(|s| json!({ "arr_bucket": s.arr_bucket, "companies": s.companies_total, "arr": s.counts.arr }))
            .collect();
        x.slices.insert("high_parts", json!(parts));
    }
    x
}

// ---------------------------------------------------------------- diagnosis

fn diagnosis(r: &ConversationUsage, findings: &[Finding]) -> Vec<Finding> {
    let mut out = Vec::new();
    // Service speed against the gaps that hold (none can be read without retention).
    if let Some(s) = has(findings, "service_model").filter(|_| r.usage_empty.is_none()) {
        let gaps = [
            "churn_watch_high_value",
            "retention_by_size",
            "bot_retention",
        ]
        .iter()
        .filter(|id| has(findings, id).is_some())
        .count();
        let mut x = record("diagnosis", "diag_service");
        x.keys.insert(
            "response",
            s.keys.get("response").copied().unwrap_or("unknown"),
        );
        x.keys.insert(
            "routing",
            s.keys.get("routing").copied().unwrap_or("unknown"),
        );
        x.numbers.insert("gaps", gaps as f64);
        if let Some(p50) = s.numbers.get("p50") {
            x.numbers.insert("p50", *p50);
        }
        out.push(x);
    }
    // Does bot-first share move with account size?
    let seats = seat_rows(r);
    if let (Some(small), Some(large)) = (seats.first(), seats.last()) {
        if let (Some(a), Some(b)) = (
            Proportion::new(large.counts.bot, large.conv_cnt),
            Proportion::new(small.counts.bot, small.conv_cnt),
        ) {
            if !std::ptr::eq(*small, *large) && r.panels.overall.bot_first_resp_share.is_some() {
                let mut x = record("diagnosis", "diag_size_bot");
                x.numbers.insert("large", a.rate());
                x.numbers.insert("large_n", a.n);
                x.numbers.insert("small", b.rate());
                x.numbers.insert("small_n", b.n);
                x.keys.insert("verdict", compare(a, b).key());
                x.keys.insert(
                    "bot_retention",
                    if has(findings, "bot_retention").is_some() {
                        "holds"
                    } else {
                        "none"
                    },
                );
                x.slices.insert("small", slice_of(small));
                x.slices.insert("large", slice_of(large));
                out.push(x);
            }
        }
    }
    out.extend(tertile_pattern(r));
    out
}

/// The tertile comparisons in one sentence: in how many segment × ARR groups the most
/// bot-first third does worse than the least, and whether that count beats chance.
fn tertile_pattern(r: &ConversationUsage) -> Option<Finding> {
    let [ret, conv] = bot_third_counts(r);
    if ret.1 == 0 && conv.1 == 0 {
        return None;
    }
    let mut x = record("diagnosis", "diag_tertiles");
    x.numbers.insert("ret_k", ret.0 as f64);
    x.numbers.insert("ret_m", ret.1 as f64);
    x.numbers.insert("conv_k", conv.0 as f64);
    x.numbers.insert("conv_m", conv.1 as f64);
    x.keys.insert("retention", third_pattern(ret));
    x.keys.insert("conversion", third_pattern(conv));
    Some(x)
}

// ---------------------------------------------------------------- what-if

/// Each sized action again, side by side: what moves if the target is reached.
fn what_if(recommendations: &[Recommendation]) -> Vec<Finding> {
    recommendations
        .iter()
        .filter(|x| x.numbers.contains_key("moved"))
        .map(|rec| {
            let mut x = record("what_if", "what_if");
            x.keys.insert("action", rec.id);
            for k in [
                "current",
                "target",
                "moved",
                "arr_moved",
                "companies",
                "arr",
            ] {
                if let Some(v) = rec.numbers.get(k) {
                    x.numbers.insert(k, *v);
                }
            }
            if let Some(c) = rec.slices.get("cell") {
                x.slices.insert("cell", c.clone());
            }
            x
        })
        .collect()
}

// ---------------------------------------------------------------- plan per segment

/// One line per known segment: where it stands (retention and conversion against the
/// other segments, tested together) and what to do about it.
fn plan(r: &ConversationUsage, recommendations: &[Recommendation]) -> Vec<Finding> {
    let usage = r.usage();
    let segs = known_segments(r);
    // Retention: each segment against the other known segments, tested together.
    let ret: Vec<Option<(Proportion, Proportion)>> = segs
        .iter()
        .map(|s| {
            let rest: Vec<&SliceRow> = segs
                .iter()
                .copied()
                .filter(|o| o.segment != s.segment)
                .collect();
            Some((
                retention(&[s], usage, true)?,
                retention(&rest, usage, true)?,
            ))
        })
        .collect();
    let tested: Vec<(Proportion, Proportion)> = ret.iter().flatten().copied().collect();
    let mut verdicts = compare_many(&tested).into_iter();
    let ret_v: Vec<Verdict> = ret
        .iter()
        .map(|x| match x {
            Some(_) => verdicts.next().unwrap_or(Verdict::NoClearDifference),
            None => Verdict::NoClearDifference,
        })
        .collect();
    // Conversion: the verdicts the conversion finding reads.
    let conversion_tests = segment_conversion_tests(r);
    let conv_v: Vec<Verdict> = segs
        .iter()
        .map(|s| {
            conversion_tests
                .iter()
                .find(|t| std::ptr::eq(t.row, *s))
                .map_or(Verdict::NoClearDifference, |t| t.verdict)
        })
        .collect();
    let team = |s: &SliceRow| Proportion::new(s.counts.team, s.conv_cnt);
    let overall_team = Proportion::new(r.panels.overall.counts.team, r.panels.overall.conv_cnt);
    // The best-retaining segment that retains above the rest: a segment that does not
    // fall below the others together may still fall below it.
    let reference = (0..segs.len())
        .filter(|&i| ret_v[i] == Verdict::Higher)
        .filter_map(|i| Some((i, ret[i]?.0)))
        .max_by(|a, b| a.1.rate().total_cmp(&b.1.rate()));
    let mut out = Vec::new();
    for (i, s) in segs.iter().enumerate() {
        let mut x = record("plan", "segment_plan");
        x.slices.insert("segment", json!(s.segment));
        x.numbers.insert("companies", s.companies_total as f64);
        x.numbers.insert("arr", s.counts.arr);
        put_usage_empty(&mut x, r);
        if let Some((p, _)) = ret[i] {
            x.numbers.insert("weekly", p.rate());
            x.numbers.insert("weekly_n", p.n);
        }
        if let Some(p) = conversion(s) {
            x.numbers.insert("conversion", p.rate());
            x.numbers.insert("conv_k", p.k);
            x.numbers.insert("conv_n", p.n);
        }
        // Only where the share is known: an assignee type that is missing or empty
        // leaves it empty (contract), never 0 %.
        if let (Some(t), Some(o), Some(_)) = (team(s), overall_team, s.team_route_share) {
            x.numbers.insert("team", t.rate());
            x.keys.insert("routing", compare(t, o).key());
        }
        x.keys.insert("retention", ret_v[i].key());
        x.keys.insert("conversion", conv_v[i].key());
        let below_reference = match (reference, ret[i]) {
            (Some((j, best)), Some((own, _))) if j != i => {
                (compare(own, best) == Verdict::Lower).then_some((j, best))
            }
            _ => None,
        };
        let action = if ret_v[i] == Verdict::Lower {
            "retain"
        } else if conv_v[i] == Verdict::Lower {
            "next_step"
        } else if ret_v[i] == Verdict::Higher {
            "reference"
        } else if let Some((j, best)) = below_reference {
            x.slices.insert("reference", json!(segs[j].segment));
            x.numbers.insert("reference_weekly", best.rate());
            x.numbers.insert("reference_n", best.n);
            "close_gap"
        } else {
            "watch"
        };
        x.keys.insert("action", action);
        x.keys.insert(
            "owner",
            match action {
                "retain" | "close_gap" => "customer_success",
                "next_step" => "product_marketing",
                _ => "support_operations",
            },
        );
        // The recommendation that already acts on this segment, if any.
        if let Some(rec) = recommendations.iter().find(|rec| {
            rec.id != "no_action"
                && rec
                    .slices
                    .get("cell")
                    .and_then(|c| c.get("segment"))
                    .and_then(|v| v.as_str())
                    == s.segment
        }) {
            x.keys.insert("see", rec.id);
        }
        out.push(x);
    }
    out
}

// ---------------------------------------------------------------- pilot

/// The pilot of each sized action, as the findings sized it for its target: design,
/// groups, duration, the period that checks it, the smallest change it can detect and
/// whether that covers the target's change.
fn pilots(recommendations: &[Recommendation]) -> Vec<Finding> {
    recommendations
        .iter()
        .filter(|x| x.keys.contains_key("design"))
        .map(|rec| {
            let mut x = record("pilot", "pilot");
            x.keys.insert("action", rec.id);
            for k in ["design", "shows"] {
                if let Some(v) = rec.keys.get(k) {
                    x.keys.insert(k, v);
                }
            }
            for k in [
                "treated",
                "comparison",
                "weeks",
                "current",
                "target",
                "effect",
                "detectable",
                "needed_per_arm",
            ] {
                if let Some(v) = rec.numbers.get(k) {
                    x.numbers.insert(k, *v);
                }
            }
            for k in ["cell", "check"] {
                if let Some(c) = rec.slices.get(k) {
                    x.slices.insert(k, c.clone());
                }
            }
            x
        })
        .collect()
}

// ---------------------------------------------------------------- limitations

fn limitations(r: &ConversationUsage) -> Vec<Finding> {
    let mut out = Vec::new();
    let q = &r.data_quality;
    let overall = &r.panels.overall;
    let mut x = record("limitations", "lim_usage");
    x.keys.insert(
        "source",
        match r.usage_source {
            UsageDefinitions::Events => "events",
            UsageDefinitions::Proxy => "proxy",
            UsageDefinitions::None => "none",
        },
    );
    put_usage_empty(&mut x, r);
    out.push(x);
    let mut x = record("limitations", "lim_bot");
    x.keys.insert(
        "measure",
        match r.bot_first_measure {
            BotMeasure::FirstResponseTags => "tags",
            BotMeasure::BotInitiatedProxy => "proxy",
        },
    );
    out.push(x);
    let mut x = record("limitations", "lim_mapping");
    x.numbers
        .insert("unmapped", q.unmapped_conversations as f64);
    x.numbers
        .insert("in_window", r.counts.conversations_in_window as f64);
    if let Some(share) =
        crate::stats::ratio(q.unmapped_conversations, r.counts.conversations_in_window)
    {
        x.numbers.insert("unmapped_share", share);
        x.numbers.insert("mapped_share", 1.0 - share);
    }
    x.numbers
        .insert("ambiguous", q.ambiguous_company_names as f64);
    x.numbers
        .insert("duplicates", q.duplicate_names.len() as f64);
    out.push(x);
    let cells = &r.panels.segment_seat_arr;
    let mut x = record("limitations", "lim_samples");
    x.numbers.insert("cells", cells.len() as f64);
    x.numbers.insert(
        "small_cells",
        cells
            .iter()
            .filter(|c| c.companies_total < r.min_cell)
            .count() as f64,
    );
    x.numbers.insert("min_cell", r.min_cell as f64);
    if overall.conv_to_feature_rate.is_some() {
        x.numbers
            .insert("converted", overall.counts.converted as f64);
    }
    out.push(x);
    let unanswered = overall.conv_cnt.saturating_sub(overall.counts.resp_n);
    if unanswered > 0 || overall.counts.unclosed > 0 {
        let mut x = record("limitations", "lim_open");
        x.numbers.insert("unanswered", unanswered as f64);
        x.numbers.insert("unclosed", overall.counts.unclosed as f64);
        x.numbers.insert("conversations", overall.conv_cnt as f64);
        out.push(x);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_sized_action_gets_its_pilot() {
        let mut rec = Recommendation::new("save_desk", "churn_watch_high_value");
        rec.numbers.insert("treated", 140.0);
        rec.numbers.insert("detectable", 0.134);
        rec.numbers.insert("effect", 0.082);
        rec.keys.insert("design", "all_against_peers");
        rec.keys.insert("shows", "no");
        rec.slices.insert("check", json!("2024-06-16_2024-08-10"));
        let no_action = Recommendation::new("no_action", "bot_retention");
        let p = pilots(&[rec, no_action]);
        assert_eq!(p.len(), 1, "a record without an action has no pilot");
        assert_eq!(p[0].numbers["treated"], 140.0);
        assert_eq!(p[0].keys["shows"], "no");
        assert_eq!(p[0].slices["check"], json!("2024-06-16_2024-08-10"));
    }
}
