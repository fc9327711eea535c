//! Findings and recommendations of the tag-drivers report, under the shared claims
//! rules (`crate::stats::claims`): topics over-represented in each group (a gap of at
//! least `min_pp` that holds under a two-proportion test with Benjamini–Hochberg across
//! the topics), the rating, response, reopen and volume gaps (each tested), every one
//! read against the baseline of all paying customers. Recommendations follow what each
//! topic is (product stability, case handling, commercial, adoption), carry an owner,
//! a target other paying customers reach, and the ARR of the companies concerned
//! (an association, not a forecast). The report compares what two groups talk about;
//! it does not explain upgrades or downgrades.
//!
//! Each target names the edition that checks it and what that edition can read given
//! the months it shares with this window; each page-1 headline gets its action first
//! or says why there is none.
//!
//! Why this file is long: about 600 lines of code and 350 of tests. The findings and
//! the recommendations read the same topic verdicts, and a recommendation rests only on
//! a finding that holds (and comes with the headline it follows), so they stay together.

use serde_json::{json, Value};

use super::low_ratings::LowRatingTopic;
use super::metrics::{GroupStats, TagDrivers, TopTag};
use crate::intercom::window::Window;
use crate::render::narrative::{Finding, Recommendation};
use crate::stats::claims::{
    compare, compare_many, compare_means, peer_target, rate_in_overlapping_window, Proportion,
    Verdict,
};

/// Topics a finding names at most.
const TOPICS_NAMED: usize = 3;
/// A peer group gives a target only from this many conversations.
pub(crate) const MIN_PEERS: usize = 30;
/// Months until the edition that checks a target (the next quarter's).
const CHECK_AFTER_MONTHS: u32 = 3;

/// The edition that checks a target: this window moved on by
/// [`CHECK_AFTER_MONTHS`], how much of this window it still holds (by time), and the
/// first day whose conversations are new to it.
#[derive(Debug, Clone, PartialEq)]
pub struct Check {
    pub window: Window,
    pub overlap: f64,
    pub new_from: String,
}

pub fn check_of(w: Window) -> Check {
    let later = |t: chrono::DateTime<chrono::Utc>| {
        t.checked_add_months(chrono::Months::new(CHECK_AFTER_MONTHS))
            .unwrap_or(t)
    };
    let window = Window {
        start: later(w.start),
        end: later(w.end),
    };
    let length = (w.end - w.start).num_seconds() as f64;
    let shared = (w.end - window.start).num_seconds() as f64;
    let overlap = if length > 0.0 {
        (shared / length).clamp(0.0, 1.0)
    } else {
        0.0
    };
    Check {
        window,
        overlap,
        new_from: (w.end + chrono::Duration::seconds(1))
            .format("%Y-%m-%d")
            .to_string(),
    }
}

/// A rate target set on the new conversations (`target`, from `current`), with
/// the edition that checks it and what that edition reads if the new conversations
/// meet it (`checked`) or have none at all (`floor`): a reachable target for that
/// window, given what it shares with today's.
fn put_check(x: &mut Recommendation, c: &Check, current: Option<f64>, target: f64) {
    x.slices.insert("check_period", json!(c.window.period()));
    x.slices.insert("new_from", json!(c.new_from));
    x.numbers.insert("overlap", c.overlap);
    if let Some(now) = current {
        x.numbers.insert(
            "checked",
            rate_in_overlapping_window(now, target, c.overlap),
        );
        x.numbers
            .insert("floor", rate_in_overlapping_window(now, 0.0, c.overlap));
    }
}

/// What a topic is about, which decides who acts on it: `stability` (the product
/// failing), `handling` (how a case was handled, e.g. escalation: not stability
/// work), `commercial` (billing, plan changes), `adoption` (getting value from the
/// product), or `other` for a customer's own tags.
pub fn topic_kind(tag: &str) -> &'static str {
    match tag.trim().to_lowercase().as_str() {
        "bug" | "outage" | "data export" | "integration" | "account access" | "performance" => {
            "stability"
        }
        "escalation" | "complaint" => "handling",
        "billing" | "downgrade risk" | "upgrade" | "renewal" | "cancellation" | "pricing" => {
            "commercial"
        }
        "onboarding" | "implementation" | "how-to" | "feature feedback" | "training" => "adoption",
        _ => "other",
    }
}

/// Whether a topic restates what puts a company in the at-risk group (its own tag,
/// or a topic that names the risk of leaving, such as Downgrade Risk): more frequent
/// there by construction, so flagged as circular and never read as a driver.
pub fn restates_at_risk(tag: &str, group_tags: &[String]) -> bool {
    let t = tag.trim().to_lowercase();
    matches!(
        t.as_str(),
        "downgrade risk" | "churn risk" | "churn watch" | "cancellation"
    ) || group_tags.iter().any(|g| g.trim().to_lowercase() == t)
}

/// Who acts on a kind of topic.
fn owner_of(kind: &str) -> &'static str {
    match kind {
        "stability" => "engineering",
        "commercial" => "account_management",
        "adoption" => "customer_success",
        _ => "support_operations",
    }
}

fn both(r: &TagDrivers) -> (&GroupStats, &GroupStats) {
    (&r.groups[0], &r.groups[1])
}

/// k of n for a topic in a group (0 at-risk, 1 expansion, 2 all paying).
fn topic_share(r: &TagDrivers, t: &TopTag, g: usize) -> Option<Proportion> {
    let n = [&r.groups[0], &r.groups[1], &r.baseline][g].conversations;
    Proportion::new(t.conversations[g], n)
}

/// The other paying customers: the baseline without the at-risk group.
fn others(all: Option<Proportion>, group: Option<Proportion>) -> Option<Proportion> {
    let (all, group) = (all?, group?);
    (all.n > group.n).then_some(Proportion {
        k: (all.k - group.k).max(0.0),
        n: all.n - group.n,
    })
}

fn tag_value(r: &TagDrivers, t: &TopTag) -> Value {
    json!({
        "tag": t.tag,
        "with": t.with,
        "kind": topic_kind(&t.tag),
        "at_risk": t.at_risk_share,
        "expansion": t.expansion_share,
        "all": t.all_share,
        "at_risk_k": t.conversations[0],
        "expansion_k": t.conversations[1],
        "at_risk_n": r.groups[0].conversations,
        "expansion_n": r.groups[1].conversations,
        "pp": t.printed_pp(),
    })
}

/// The verdict of each top topic (at-risk share against expansion share), with the
/// false discovery rate controlled across the topics.
pub fn topic_verdicts(r: &TagDrivers) -> Vec<Verdict> {
    let pairs: Vec<(Proportion, Proportion)> = r
        .top
        .iter()
        .filter_map(|t| Some((topic_share(r, t, 0)?, topic_share(r, t, 1)?)))
        .collect();
    if pairs.len() != r.top.len() {
        return vec![Verdict::NoClearDifference; r.top.len()];
    }
    compare_many(&pairs)
}

/// Topics over-represented in a group: at least `min_pp` apart and the difference
/// holds; largest gap first. Among at-risk companies, the topics that restate the
/// group's definition are left out (see [`circular`]).
fn over_represented(r: &TagDrivers, min_pp: f64, at_risk: bool) -> Vec<&TopTag> {
    let mut v = gaps(r, min_pp, at_risk);
    if at_risk {
        v.retain(|t| !restates_at_risk(&t.tag, &r.at_risk_parts.tags));
    }
    v
}

/// The at-risk topics over-represented only because they restate the group's
/// definition.
pub fn circular(r: &TagDrivers, min_pp: f64) -> Vec<&TopTag> {
    let mut v = gaps(r, min_pp, true);
    v.retain(|t| restates_at_risk(&t.tag, &r.at_risk_parts.tags));
    v
}

fn gaps(r: &TagDrivers, min_pp: f64, at_risk: bool) -> Vec<&TopTag> {
    let verdicts = topic_verdicts(r);
    let mut v: Vec<&TopTag> = r
        .top
        .iter()
        .zip(verdicts)
        .filter(|(t, verdict)| {
            if at_risk {
                t.difference_pp >= min_pp && *verdict == Verdict::Higher
            } else {
                -t.difference_pp >= min_pp && *verdict == Verdict::Lower
            }
        })
        .map(|(t, _)| t)
        .collect();
    v.sort_by(|a, b| {
        b.difference_pp
            .abs()
            .total_cmp(&a.difference_pp.abs())
            .then_with(|| a.tag.cmp(&b.tag))
    });
    v
}

/// Mood's median test on first-response minutes: the share of each group's responses
/// above the two groups' pooled median, compared as proportions.
fn response_verdict(a: &[f64], b: &[f64]) -> Verdict {
    let mut pooled: Vec<f64> = a.iter().chain(b).copied().collect();
    pooled.sort_by(f64::total_cmp);
    let Some(m) = crate::stats::percentile(&pooled, 0.5) else {
        return Verdict::NoClearDifference;
    };
    let above = |v: &[f64]| Proportion::new(v.iter().filter(|x| **x > m).count(), v.len());
    match (above(a), above(b)) {
        (Some(x), Some(y)) => compare(x, y),
        _ => Verdict::NoClearDifference,
    }
}

pub fn findings(r: &TagDrivers, min_pp: f64) -> Vec<Finding> {
    let mut out = Vec::new();
    let (risk, expansion) = both(r);
    let base = &r.baseline;
    if risk.conversations == 0 || expansion.conversations == 0 {
        let mut x = Finding::new("group_missing", 0);
        x.keys.insert(
            "group",
            if risk.conversations == 0 {
                "at_risk"
            } else {
                "expansion"
            },
        );
        out.push(x);
        return out;
    }
    for (id, at_risk, rank) in [("risk_topics", true, 1), ("growth_topics", false, 2)] {
        let tags = over_represented(r, min_pp, at_risk);
        if let Some(first) = tags.first() {
            let mut x = Finding::new(id, rank);
            x.numbers.insert("count", tags.len() as f64);
            x.numbers.insert("top_pp", first.printed_pp().abs());
            x.numbers.insert("min_pp", min_pp);
            x.slices.insert(
                "tags",
                Value::Array(
                    tags.iter()
                        .take(TOPICS_NAMED)
                        .map(|t| tag_value(r, t))
                        .collect(),
                ),
            );
            out.push(x);
        }
    }
    let restating = circular(r, min_pp);
    if !restating.is_empty() {
        let mut x = Finding::new("circular", 2);
        x.lead = false;
        x.slices.insert(
            "tags",
            Value::Array(restating.iter().map(|t| tag_value(r, t)).collect()),
        );
        x.slices.insert("group_tags", json!(r.at_risk_parts.tags));
        out.push(x);
    }
    if !out.iter().any(|f| f.id.ends_with("_topics")) {
        let mut x = Finding::new("no_topic_gap", 1);
        x.lead = false;
        x.numbers.insert("min_pp", min_pp);
        x.numbers.insert(
            "largest_pp",
            r.top
                .iter()
                .map(|t| t.printed_pp().abs())
                .fold(0.0, f64::max),
        );
        out.push(x);
    }
    if let (Some(a), Some(b)) = (risk.samples.ratings, expansion.samples.ratings) {
        let verdict = compare_means(a, b);
        if verdict.holds() {
            let mut x = Finding::new("rating_gap", 3);
            x.numbers.insert("at_risk", a.mean);
            x.numbers.insert("expansion", b.mean);
            x.numbers.insert("at_risk_n", a.n);
            x.numbers.insert("expansion_n", b.n);
            // The gap as the difference of the printed values (two decimals).
            x.numbers.insert(
                "gap",
                crate::stats::claims::printed_difference(a.mean, b.mean, 1.0, 2).abs(),
            );
            if let Some(all) = base.avg_rating {
                x.numbers.insert("all", all);
            }
            let low = |g: &GroupStats| Proportion::new(g.rated_le2, g.rated);
            if let (Some(la), Some(lb)) = (low(risk), low(expansion)) {
                x.numbers.insert("low_at_risk", la.rate());
                x.numbers.insert("low_expansion", lb.rate());
                x.numbers.insert("low_at_risk_k", la.k);
                x.keys.insert("low_verdict", compare(la, lb).key());
            }
            x.keys
                .insert("direction", verdict.if_higher("higher", "lower"));
            out.push(x);
        }
    }
    out.extend(low_rating_topics(r));
    if let (Some(a), Some(b)) = (risk.median_resp, expansion.median_resp) {
        let verdict = response_verdict(&risk.samples.responses, &expansion.samples.responses);
        if verdict.holds() && a != b {
            let mut x = Finding::new("response_gap", 4);
            x.numbers.insert("at_risk", a);
            x.numbers.insert("expansion", b);
            // Minutes print with one decimal: the gap is that of the printed medians.
            x.numbers.insert(
                "gap",
                crate::stats::claims::printed_difference(a, b, 1.0, 1).abs(),
            );
            if let Some(all) = base.median_resp {
                x.numbers.insert("all", all);
            }
            x.keys
                .insert("direction", verdict.if_higher("slower", "faster"));
            out.push(x);
        }
    }
    let reopened = |g: &GroupStats| Proportion::new(g.samples.reopened, g.samples.with_metrics);
    if let (Some(a), Some(b)) = (reopened(risk), reopened(expansion)) {
        let verdict = compare(a, b);
        if verdict.holds() {
            let mut x = Finding::new("reopen_gap", 5);
            x.numbers.insert("at_risk", a.rate());
            x.numbers.insert("expansion", b.rate());
            x.numbers.insert("at_risk_k", a.k);
            x.numbers.insert("at_risk_n", a.n);
            x.numbers.insert("expansion_n", b.n);
            if let Some(all) = base.reopen_rate {
                x.numbers.insert("all", all);
            }
            x.keys
                .insert("direction", verdict.if_higher("more", "fewer"));
            out.push(x);
        }
    }
    if let (Some(a), Some(b)) = (risk.samples.per_company, expansion.samples.per_company) {
        let verdict = compare_means(a, b);
        if verdict.holds() {
            let mut x = Finding::new("volume_gap", 6);
            x.numbers.insert("at_risk", a.mean);
            x.numbers.insert("expansion", b.mean);
            x.numbers.insert(
                "ratio",
                a.mean.max(b.mean) / a.mean.min(b.mean).max(f64::MIN_POSITIVE),
            );
            x.numbers.insert("at_risk_companies", risk.companies as f64);
            x.numbers
                .insert("expansion_companies", expansion.companies as f64);
            if let Some(all) = base.conversations_per_company {
                x.numbers.insert("all", all);
            }
            x.keys
                .insert("direction", verdict.if_higher("more", "fewer"));
            out.push(x);
        }
    }
    if !r.in_both_groups.is_empty() {
        let mut x = Finding::new("overlap", 7);
        x.lead = false;
        x.numbers.insert("companies", r.in_both_groups.len() as f64);
        out.push(x);
    }
    if !out.iter().any(|f| f.lead) {
        let mut x = Finding::new("nothing_stands_out", 0);
        x.numbers.insert(
            "conversations",
            (risk.conversations + expansion.conversations) as f64,
        );
        x.numbers
            .insert("companies", (risk.companies + expansion.companies) as f64);
        out.push(x);
    }
    out.sort_by_key(|f| f.rank);
    out
}

/// The at-risk topics whose conversations are rated 1 or 2 more often than the
/// group's other rated conversations (the test holds), highest share first; where
/// none holds, a stated limit with the highest share. Nothing without ratings.
fn low_rating_topics(r: &TagDrivers) -> Option<Finding> {
    let rows: Vec<&LowRatingTopic> = r
        .low_ratings
        .iter()
        .filter(|x| x.group == super::metrics::AT_RISK)
        .collect();
    let first = rows.first()?;
    let value = |x: &LowRatingTopic| {
        json!({
            "tag": x.tag,
            "rated": x.rated,
            "low": x.rated_le2,
            "share": x.share_rated_le2,
            "rest_share": x.rest_share_rated_le2,
            "rest_rated": x.rest_rated,
        })
    };
    let higher: Vec<&&LowRatingTopic> = rows
        .iter()
        .filter(|x| x.verdict == Verdict::Higher)
        .collect();
    let mut x = if higher.is_empty() {
        let mut x = Finding::new("no_low_rating_topic", 3);
        x.lead = false;
        x.slices.insert("tags", json!([value(first)]));
        x
    } else {
        let mut x = Finding::new("low_rating_topics", 3);
        x.slices.insert(
            "tags",
            Value::Array(higher.iter().take(TOPICS_NAMED).map(|t| value(t)).collect()),
        );
        x
    };
    x.numbers.insert("count", higher.len() as f64);
    x.numbers.insert("topics", rows.len() as f64);
    Some(x)
}

/// What is at stake (page 1): the at-risk companies that talked to support and
/// their ARR, against all paying companies with conversations.
pub fn stake(r: &TagDrivers) -> Finding {
    let mut x = Finding::new("stake", 0);
    x.lead = false;
    x.keys.insert("section", "stake");
    let (risk, base) = (&r.groups[0], &r.baseline);
    x.numbers.insert("companies", risk.companies as f64);
    x.numbers.insert("arr", risk.arr);
    x.numbers.insert("all_companies", base.companies as f64);
    x.numbers.insert("all_arr", base.arr);
    x
}

/// The at-risk group against the other reports' (appendix): its rules and how many
/// of its companies each puts there, and why the others count differently.
pub fn at_risk_note(r: &TagDrivers) -> Finding {
    let mut x = Finding::new("at_risk_note", 0);
    x.lead = false;
    x.keys.insert("section", "reconcile");
    let p = &r.at_risk_parts;
    x.numbers.insert("companies", r.groups[0].companies as f64);
    x.numbers.insert("arr", r.groups[0].arr);
    x.numbers.insert("by_segment", p.by_segment as f64);
    x.numbers.insert("by_tag_only", p.by_tag_only as f64);
    x.slices.insert("tags", json!(p.tags));
    x.slices.insert("segments", json!(p.segments));
    x
}

/// Recommendations keyed to the findings that hold and to what each topic is.
pub fn recommendations(r: &TagDrivers, findings: &[Finding]) -> Vec<Recommendation> {
    let (risk, _) = both(r);
    let base = &r.baseline;
    let has = |id: &str| findings.iter().find(|f| f.id == id);
    let top = |tag: &str| r.top.iter().find(|t| t.tag == tag);
    let check = check_of(r.window);
    let mut out = Vec::new();
    if let Some(f) = has("risk_topics") {
        // One action per named topic, in the order of the largest gap.
        for v in f
            .slices
            .get("tags")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let Some(t) = v["tag"].as_str().and_then(top) else {
                continue;
            };
            let kind = topic_kind(&t.tag);
            let current = topic_share(r, t, 0);
            let peers = others(topic_share(r, t, 2), current);
            let (Some(current), Some(peers)) = (current, peers) else {
                continue;
            };
            let Some(target) = peer_target(current, peers, MIN_PEERS, false) else {
                continue;
            };
            let mut x = Recommendation::owned("address_risk_topic", "risk_topics", owner_of(kind));
            x.keys.insert("kind", kind);
            x.slices.insert("tag", json!(t.tag));
            if let Some(w) = &t.with {
                x.slices.insert("with", json!(w));
            }
            x.numbers.insert("conversations", current.k);
            x.numbers.insert("current", current.rate());
            x.numbers.insert("target", target.value);
            x.numbers.insert("peer_rate", peers.rate());
            x.numbers.insert("peer_n", peers.n);
            x.numbers.insert("avoided", target.members_moved.round());
            x.numbers.insert("companies", t.at_risk_companies as f64);
            x.numbers.insert("arr", t.at_risk_arr);
            put_check(&mut x, &check, Some(current.rate()), target.value);
            out.push(x);
        }
    }
    if let Some(f) = has("growth_topics") {
        if let Some(t) = f
            .slices
            .get("tags")
            .and_then(|v| v.get(0))
            .and_then(|v| v["tag"].as_str())
            .and_then(top)
        {
            let mut x = Recommendation::owned(
                "outreach_growth_topics",
                "growth_topics",
                "account_management",
            );
            x.keys.insert("kind", topic_kind(&t.tag));
            x.numbers.insert("conversations", t.conversations[1] as f64);
            x.numbers.insert("expansion_share", t.expansion_share);
            x.numbers.insert("companies", t.expansion_companies as f64);
            x.numbers.insert("arr", t.expansion_arr);
            x.slices.insert("tag", json!(t.tag));
            out.push(x);
        }
    }
    if let Some(f) = has("response_gap") {
        if f.keys.get("direction") == Some(&"slower") {
            let mut x =
                Recommendation::owned("match_response_time", "response_gap", "support_operations");
            x.numbers.insert("target", f.numbers["expansion"]);
            x.numbers.insert("current", f.numbers["at_risk"]);
            x.numbers.insert("companies", risk.companies as f64);
            x.numbers.insert("arr", risk.arr);
            // A median does not blend: the target is set on the new conversations.
            put_check(&mut x, &check, None, f.numbers["expansion"]);
            out.push(x);
        }
    }
    if let Some(f) = has("rating_gap") {
        if f.keys.get("direction") == Some(&"lower") {
            let low = |g: &GroupStats| Proportion::new(g.rated_le2, g.rated);
            let current = low(risk);
            if let Some(t) = current
                .zip(others(low(base), current))
                .and_then(|(c, p)| peer_target(c, p, MIN_PEERS, false))
            {
                let mut x =
                    Recommendation::owned("review_low_ratings", "rating_gap", "support_operations");
                x.numbers.insert("low_rated", risk.rated_le2 as f64);
                x.numbers.insert("current_share", t.current.rate());
                x.numbers.insert("target_share", t.value);
                x.numbers.insert("peer_rate", t.peers.rate());
                x.numbers.insert("companies", risk.companies as f64);
                x.numbers.insert("arr", risk.arr);
                put_check(&mut x, &check, Some(t.current.rate()), t.value);
                out.push(x);
            }
        }
    }
    if let Some(f) = has("reopen_gap") {
        if f.keys.get("direction") == Some(&"more") {
            let reopened =
                |g: &GroupStats| Proportion::new(g.samples.reopened, g.samples.with_metrics);
            let current = reopened(risk);
            if let Some(t) = current
                .zip(others(reopened(base), current))
                .and_then(|(c, p)| peer_target(c, p, MIN_PEERS, false))
            {
                let mut x = Recommendation::owned(
                    "first_contact_resolution",
                    "reopen_gap",
                    "support_enablement",
                );
                x.numbers.insert("current", t.current.rate());
                x.numbers.insert("target", t.value);
                x.numbers.insert("avoided", t.members_moved.round());
                put_check(&mut x, &check, Some(t.current.rate()), t.value);
                out.push(x);
            }
        }
    }
    out
}

/// Each page-1 headline with its action: the first action following each of the
/// first `brief` headlines comes first, in the headlines' order; a headline that no
/// action follows says why (`keys.no_action`, a reason the templates translate).
pub fn pair_actions(findings: &mut [Finding], recs: &mut Vec<Recommendation>, brief: usize) {
    let mut first: Vec<Recommendation> = Vec::new();
    for f in findings.iter_mut().filter(|f| f.lead).take(brief) {
        // "Nothing stands out" already says that no target is set.
        if f.id == "nothing_stands_out" {
            continue;
        }
        match recs.iter().position(|x| x.follows == f.id) {
            Some(i) => first.push(recs.remove(i)),
            None => {
                let reason = match (f.id, f.keys.get("direction").copied()) {
                    ("period_change", _) => "period_change",
                    ("rating_gap", Some("higher"))
                    | ("response_gap", Some("faster"))
                    | ("reopen_gap", Some("fewer")) => "not_worse",
                    ("risk_topics" | "rating_gap" | "response_gap" | "reopen_gap", _) => {
                        "no_peer_target"
                    }
                    ("volume_gap", _) => "volume",
                    ("group_missing", _) => "nothing",
                    _ => "no_lever",
                };
                f.keys.insert("no_action", reason);
            }
        }
    }
    first.append(recs);
    *recs = first;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::intercom::window::Window;
    use crate::reports::tag_drivers::metrics::{
        GroupSamples, TagShare, ALL_PAYING, AT_RISK, EXPANSION,
    };
    use crate::source::BadTimestamps;
    use crate::stats::claims::Moments;

    /// A group of `n` conversations from `n / 10` companies, rated `rating` on average
    /// (variance 1, half of them rated), `low` of the rated at 1–2, every response
    /// `resp` minutes.
    fn group(name: &'static str, n: usize, rating: f64, low: usize, resp: f64) -> GroupStats {
        let rated = n / 2;
        GroupStats {
            group: name,
            companies: n / 10,
            conversations: n,
            conversations_per_company: Some(10.0),
            rated,
            rated_le2: low,
            avg_rating: Some(rating),
            share_rated_le2: Some(low as f64 / rated as f64),
            median_resp: Some(resp),
            reopen_rate: Some(0.1),
            arr: 1_000_000.0,
            samples: GroupSamples {
                ratings: Some(Moments {
                    n: rated as f64,
                    mean: rating,
                    var: 1.0,
                }),
                responses: vec![resp; n],
                with_metrics: n,
                reopened: n / 10,
                per_company: Some(Moments {
                    n: (n / 10) as f64,
                    mean: 10.0,
                    var: 4.0,
                }),
            },
        }
    }

    /// Topics as (tag, at-risk k, expansion k) of 100 conversations each; the
    /// baseline is 400 conversations holding both groups and 200 others with `k`
    /// equal to the expansion count.
    fn numbers(top: Vec<(&str, usize, usize)>, risk: GroupStats, exp: GroupStats) -> TagDrivers {
        let t = |s: &str| crate::source::timestamp::parse(s, chrono_tz::Tz::UTC).unwrap();
        let (nr, ne) = (risk.conversations, exp.conversations);
        let base = group(ALL_PAYING, nr + ne + 200, 3.9, 25, 30.0);
        let nb = base.conversations;
        TagDrivers {
            window: Window {
                start: t("2024-01-01 00:00:00"),
                end: t("2024-06-30 23:59:59"),
            },
            groups: vec![risk, exp],
            baseline: base,
            shares: top
                .iter()
                .flat_map(|(t, a, b)| {
                    [
                        TagShare {
                            group: AT_RISK,
                            tag: (*t).into(),
                            conversations: *a,
                            share: *a as f64 / nr as f64,
                        },
                        TagShare {
                            group: EXPANSION,
                            tag: (*t).into(),
                            conversations: *b,
                            share: *b as f64 / ne as f64,
                        },
                    ]
                })
                .collect(),
            top: top
                .iter()
                .map(|(t, a, b)| {
                    let (ra, eb) = (*a as f64 / nr as f64, *b as f64 / ne as f64);
                    let all = a + b + 2 * b;
                    TopTag {
                        tag: (*t).into(),
                        with: None,
                        at_risk_share: ra,
                        expansion_share: eb,
                        difference_pp: (ra - eb) * 100.0,
                        all_share: all as f64 / nb as f64,
                        conversations: [*a, *b, all],
                        at_risk_companies: a / 2,
                        at_risk_arr: 50_000.0 * (*a as f64),
                        expansion_companies: b / 2,
                        expansion_arr: 60_000.0 * (*b as f64),
                    }
                })
                .collect(),
            in_both_groups: vec![],
            unmapped_conversations: 0,
            outside_scope_conversations: None,
            conversations_in_window: 400,
            bad_timestamps: BadTimestamps::default(),
            at_risk_parts: Default::default(),
            low_ratings: Vec::new(),
        }
    }

    #[test]
    fn topics_need_the_threshold_and_a_test_and_actions_a_reachable_target() {
        let r = numbers(
            vec![
                ("Bug", 30, 10),
                ("Billing", 20, 19),
                // 4 pp apart but 12 of 100 against 8 of 100 is chance.
                ("Escalation", 12, 8),
                ("Upgrade", 5, 25),
            ],
            group(AT_RISK, 100, 3.5, 10, 30.0),
            group(EXPANSION, 100, 4.2, 10, 30.0),
        );
        let f = findings(&r, 3.0);
        let ids: Vec<&str> = f.iter().map(|x| x.id).collect();
        // Equal responses, reopen rates and volumes say nothing.
        assert_eq!(ids, ["risk_topics", "growth_topics", "rating_gap"]);
        assert_eq!(f[0].slices["tags"][0]["tag"], "Bug");
        assert_eq!(
            f[0].numbers["count"], 1.0,
            "Billing: 1 pp; Escalation: no test holds"
        );
        assert_eq!(f[0].slices["tags"][0]["at_risk_k"], 30);
        assert!((f[2].numbers["gap"] - 0.7).abs() < 1e-12);
        let recs = recommendations(&r, &f);
        let ids: Vec<&str> = recs.iter().map(|x| x.id).collect();
        // Low ratings: 10 of 50 against other paying customers' 5 of 50 is not
        // better beyond doubt, so no target and no action.
        assert_eq!(ids, ["address_risk_topic", "outreach_growth_topics"]);
        let a = &recs[0];
        assert_eq!(a.keys["kind"], "stability");
        assert_eq!(a.keys["owner"], "engineering");
        assert!(a.numbers["target"] >= a.numbers["peer_rate"], "reachable");
        assert!(a.numbers["target"] < a.numbers["current"]);
        assert_eq!(a.numbers["arr"], 1_500_000.0);
        for x in &recs {
            assert!(x.keys.contains_key("owner"));
        }
        // A higher threshold leaves nothing over-represented: the finding says so.
        let f = findings(&r, 25.0);
        assert_eq!(f[0].id, "no_topic_gap");
    }

    #[test]
    fn how_a_case_was_handled_is_not_stability_work() {
        assert_eq!(topic_kind("Escalation"), "handling");
        assert_eq!(topic_kind(" outage "), "stability");
        assert_eq!(topic_kind("Downgrade Risk"), "commercial");
        assert_eq!(topic_kind("Implementation"), "adoption");
        assert_eq!(topic_kind("Our Own Tag"), "other");
        let r = numbers(
            vec![("Escalation", 30, 5), ("Bug", 28, 5), ("Outage", 26, 5)],
            group(AT_RISK, 100, 4.0, 10, 30.0),
            group(EXPANSION, 100, 4.0, 10, 30.0),
        );
        let f = findings(&r, 3.0);
        let recs = recommendations(&r, &f);
        let kinds: Vec<(&str, &str)> = recs
            .iter()
            .map(|x| (x.keys["kind"], x.keys["owner"]))
            .collect();
        assert_eq!(
            kinds,
            [
                ("handling", "support_operations"),
                ("stability", "engineering"),
                ("stability", "engineering")
            ],
            "an action for every named topic; Outage is stability work like Bug"
        );
        let tags: Vec<&Value> = recs.iter().map(|x| &x.slices["tag"]).collect();
        assert_eq!(
            tags,
            [&json!("Escalation"), &json!("Bug"), &json!("Outage")]
        );
    }

    #[test]
    fn a_topic_that_restates_the_at_risk_group_is_flagged_not_a_driver() {
        let group_tags = ["Churn Watch".to_owned()];
        assert!(restates_at_risk(" Downgrade Risk ", &group_tags));
        assert!(restates_at_risk("churn watch", &group_tags));
        assert!(!restates_at_risk("Bug", &group_tags));
        let mut r = numbers(
            vec![
                ("Downgrade Risk", 40, 5),
                ("Bug", 30, 5),
                ("Billing", 10, 10),
            ],
            group(AT_RISK, 100, 4.0, 10, 30.0),
            group(EXPANSION, 100, 4.0, 10, 30.0),
        );
        r.at_risk_parts.tags = group_tags.to_vec();
        let f = findings(&r, 3.0);
        let risk = f.iter().find(|x| x.id == "risk_topics").unwrap();
        assert_eq!(risk.numbers["count"], 1.0, "Bug only");
        assert_eq!(risk.slices["tags"][0]["tag"], "Bug");
        let circular = f.iter().find(|x| x.id == "circular").unwrap();
        assert!(!circular.lead, "never a headline");
        assert_eq!(circular.slices["tags"][0]["tag"], "Downgrade Risk");
        assert_eq!(circular.slices["tags"][0]["at_risk_k"], 40);
        let recs = recommendations(&r, &f);
        assert!(recs
            .iter()
            .all(|x| x.slices.get("tag") != Some(&json!("Downgrade Risk"))));
        // Where only the restating topic stands out, no topic gap is named.
        let r = numbers(
            vec![("Downgrade Risk", 40, 5), ("Billing", 10, 10)],
            group(AT_RISK, 100, 4.0, 10, 30.0),
            group(EXPANSION, 100, 4.0, 10, 30.0),
        );
        let ids: Vec<&str> = findings(&r, 3.0).iter().map(|x| x.id).collect();
        assert!(
            ids.contains(&"no_topic_gap") && ids.contains(&"circular"),
            "{ids:?}"
        );
    }

    #[test]
    fn the_low_rated_topics_are_named_only_when_the_test_holds() {
        use crate::reports::tag_drivers::low_ratings::per_topic;
        let mut r = numbers(
            vec![("Bug", 30, 10)],
            group(AT_RISK, 100, 4.0, 10, 30.0),
            group(EXPANSION, 100, 4.0, 10, 30.0),
        );
        let per =
            |rows: &[(&str, usize, usize)]| -> std::collections::BTreeMap<String, (usize, usize)> {
                rows.iter()
                    .map(|(t, n, k)| ((*t).to_owned(), (*n, *k)))
                    .collect()
            };
        r.low_ratings = per_topic(
            AT_RISK,
            &per(&[("Bug", 100, 60), ("Billing", 100, 21)]),
            1000,
            200,
        );
        let f = findings(&r, 3.0);
        let low = f.iter().find(|x| x.id == "low_rating_topics").unwrap();
        assert_eq!(low.slices["tags"].as_array().unwrap().len(), 1);
        assert_eq!(low.slices["tags"][0]["tag"], "Bug");
        assert_eq!(
            (
                low.slices["tags"][0]["low"].as_u64(),
                low.slices["tags"][0]["rated"].as_u64()
            ),
            (Some(60), Some(100))
        );
        r.low_ratings = per_topic(AT_RISK, &per(&[("Billing", 100, 21)]), 1000, 200);
        let f = findings(&r, 3.0);
        let limit = f.iter().find(|x| x.id == "no_low_rating_topic").unwrap();
        assert!(!limit.lead);
        assert!(!f.iter().any(|x| x.id == "low_rating_topics"));
        r.low_ratings.clear();
        assert!(
            !findings(&r, 3.0)
                .iter()
                .any(|x| x.id.contains("low_rating")),
            "no ratings: nothing"
        );
    }

    #[test]
    fn where_nothing_differs_the_report_says_so() {
        let r = numbers(
            vec![("Bug", 20, 20), ("Billing", 10, 11)],
            group(AT_RISK, 100, 4.0, 10, 30.0),
            group(EXPANSION, 100, 4.0, 10, 30.0),
        );
        let f = findings(&r, 3.0);
        let ids: Vec<&str> = f.iter().map(|x| x.id).collect();
        assert_eq!(ids, ["nothing_stands_out", "no_topic_gap"]);
        assert!(recommendations(&r, &f).is_empty());
    }

    #[test]
    fn an_empty_group_is_said_and_nothing_else() {
        let mut risk = group(AT_RISK, 100, 3.0, 10, 30.0);
        risk.conversations = 0;
        let r = numbers(vec![], risk, group(EXPANSION, 100, 4.0, 10, 20.0));
        let f = findings(&r, 3.0);
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].keys["group"], "at_risk");
        assert!(recommendations(&r, &f).is_empty());
    }

    #[test]
    fn each_headline_gets_its_action_first_or_says_why_not() {
        let r = numbers(
            vec![("Bug", 30, 10), ("Upgrade", 5, 25)],
            group(AT_RISK, 100, 4.0, 10, 20.0),
            group(EXPANSION, 100, 4.0, 10, 30.0),
        );
        let mut f = findings(&r, 3.0);
        let mut recs = recommendations(&r, &f);
        let mut change = Finding::new("period_change", 0);
        change.keys.insert("direction", "rise");
        f.insert(0, change);
        pair_actions(&mut f, &mut recs, 3);
        let leads: Vec<&Finding> = f.iter().filter(|x| x.lead).take(3).collect();
        assert_eq!(leads[0].keys["no_action"], "period_change");
        // Each other headline's action comes in the headlines' order.
        let follows: Vec<&str> = recs.iter().map(|x| x.follows).collect();
        assert_eq!(&follows[..2], [leads[1].id, leads[2].id]);
        assert!(leads[1..].iter().all(|x| !x.keys.contains_key("no_action")));
    }
}
