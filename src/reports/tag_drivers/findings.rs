//! Findings and recommendations of the tag-drivers report: over-represented topics
//! per group, the rating, response, reopen and volume gaps — each only when its
//! condition holds in the run's numbers.

use serde_json::{json, Value};

use super::metrics::{GroupStats, TagDrivers, TopTag};
use crate::render::narrative::{Finding, Recommendation};

/// Topics a finding names at most.
const TOPICS_NAMED: usize = 3;
/// Rating gaps smaller than this (points on the 1–5 scale) are not worth a finding.
const MIN_RATING_GAP: f64 = 0.05;
/// Median response gaps smaller than this (minutes) are not worth a finding.
const MIN_RESPONSE_GAP: f64 = 0.5;
/// Reopen-rate gaps smaller than this (fraction) are not worth a finding.
const MIN_REOPEN_GAP: f64 = 0.01;
/// Conversations per company must differ by this factor to be worth a finding.
const VOLUME_RATIO: f64 = 1.1;

fn tag_value(t: &TopTag) -> Value {
    json!({
        "tag": t.tag,
        "at_risk": t.at_risk_share,
        "expansion": t.expansion_share,
        "pp": t.difference_pp,
    })
}

/// Topics over-represented in a group by at least `min_pp`, largest gap first.
fn over_represented(r: &TagDrivers, min_pp: f64, at_risk: bool) -> Vec<&TopTag> {
    let mut v: Vec<&TopTag> = r
        .top
        .iter()
        .filter(|t| {
            if at_risk {
                t.difference_pp >= min_pp
            } else {
                -t.difference_pp >= min_pp
            }
        })
        .collect();
    v.sort_by(|a, b| {
        b.difference_pp
            .abs()
            .total_cmp(&a.difference_pp.abs())
            .then_with(|| a.tag.cmp(&b.tag))
    });
    v
}

fn both(r: &TagDrivers) -> (&GroupStats, &GroupStats) {
    (&r.groups[0], &r.groups[1])
}

pub fn findings(r: &TagDrivers, min_pp: f64) -> Vec<Finding> {
    let mut out = Vec::new();
    let (risk, expansion) = both(r);
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
            x.numbers.insert("top_pp", first.difference_pp.abs());
            x.numbers.insert("min_pp", min_pp);
            x.slices.insert(
                "tags",
                Value::Array(
                    tags.iter()
                        .take(TOPICS_NAMED)
                        .map(|t| tag_value(t))
                        .collect(),
                ),
            );
            out.push(x);
        }
    }
    if !out.iter().any(|f| f.id.ends_with("_topics")) {
        let mut x = Finding::new("no_topic_gap", 1);
        x.numbers.insert("min_pp", min_pp);
        x.numbers.insert(
            "largest_pp",
            r.top
                .iter()
                .map(|t| t.difference_pp.abs())
                .fold(0.0, f64::max),
        );
        out.push(x);
    }
    if let (Some(a), Some(b)) = (risk.avg_rating, expansion.avg_rating) {
        if (a - b).abs() >= MIN_RATING_GAP {
            let mut x = Finding::new("rating_gap", 3);
            x.numbers.insert("at_risk", a);
            x.numbers.insert("expansion", b);
            x.numbers.insert("gap", (a - b).abs());
            if let (Some(la), Some(lb)) = (risk.share_rated_le2, expansion.share_rated_le2) {
                x.numbers.insert("low_at_risk", la);
                x.numbers.insert("low_expansion", lb);
            }
            x.keys
                .insert("direction", if a < b { "lower" } else { "higher" });
            out.push(x);
        }
    }
    if let (Some(a), Some(b)) = (risk.median_resp, expansion.median_resp) {
        if (a - b).abs() >= MIN_RESPONSE_GAP {
            let mut x = Finding::new("response_gap", 4);
            x.numbers.insert("at_risk", a);
            x.numbers.insert("expansion", b);
            x.numbers.insert("gap", (a - b).abs());
            x.keys
                .insert("direction", if a > b { "slower" } else { "faster" });
            out.push(x);
        }
    }
    if let (Some(a), Some(b)) = (risk.reopen_rate, expansion.reopen_rate) {
        if (a - b).abs() >= MIN_REOPEN_GAP {
            let mut x = Finding::new("reopen_gap", 5);
            x.numbers.insert("at_risk", a);
            x.numbers.insert("expansion", b);
            x.numbers.insert("gap", (a - b).abs());
            x.keys
                .insert("direction", if a > b { "more" } else { "fewer" });
            out.push(x);
        }
    }
    if let (Some(a), Some(b)) = (
        risk.conversations_per_company,
        expansion.conversations_per_company,
    ) {
        if a >= b * VOLUME_RATIO || b >= a * VOLUME_RATIO {
            let mut x = Finding::new("volume_gap", 6);
            x.numbers.insert("at_risk", a);
            x.numbers.insert("expansion", b);
            x.numbers
                .insert("ratio", a.max(b) / a.min(b).max(f64::MIN_POSITIVE));
            x.numbers.insert("at_risk_companies", risk.companies as f64);
            x.numbers
                .insert("expansion_companies", expansion.companies as f64);
            x.keys
                .insert("direction", if a > b { "more" } else { "fewer" });
            out.push(x);
        }
    }
    if !r.in_both_groups.is_empty() {
        let mut x = Finding::new("overlap", 7);
        x.numbers.insert("companies", r.in_both_groups.len() as f64);
        out.push(x);
    }
    out.sort_by_key(|f| f.rank);
    out
}

/// Recommendations keyed to the findings that hold.
pub fn recommendations(r: &TagDrivers, findings: &[Finding]) -> Vec<Recommendation> {
    let (risk, expansion) = both(r);
    let has = |id: &str| findings.iter().find(|f| f.id == id);
    let tag_conversations = |group: &str, tag: &str| {
        r.shares
            .iter()
            .find(|s| s.group == group && s.tag == tag)
            .map_or(0, |s| s.conversations)
    };
    let mut out = Vec::new();
    if let Some(f) = has("risk_topics") {
        if let Some(first) = f.slices.get("tags").and_then(|t| t.get(0)) {
            let tag = first["tag"].as_str().unwrap_or_default();
            let mut x = Recommendation::new("stabilize_risk_topics", "risk_topics");
            let a = first["at_risk"].as_f64().unwrap_or(0.0);
            let b = first["expansion"].as_f64().unwrap_or(0.0);
            x.numbers.insert("at_risk_share", a);
            x.numbers.insert("expansion_share", b);
            x.numbers.insert(
                "conversations",
                tag_conversations(super::metrics::AT_RISK, tag) as f64,
            );
            // Conversations fewer if the tag's at-risk share fell to the expansion level.
            x.numbers
                .insert("avoidable", ((a - b) * risk.conversations as f64).round());
            x.slices.insert("tag", json!(tag));
            x.slices.insert(
                "others",
                Value::Array(
                    f.slices["tags"]
                        .as_array()
                        .map(|v| v.iter().skip(1).map(|t| t["tag"].clone()).collect())
                        .unwrap_or_default(),
                ),
            );
            out.push(x);
        }
    }
    if let Some(f) = has("growth_topics") {
        if let Some(first) = f.slices.get("tags").and_then(|t| t.get(0)) {
            let tag = first["tag"].as_str().unwrap_or_default();
            let mut x = Recommendation::new("outreach_growth_topics", "growth_topics");
            x.numbers.insert(
                "conversations",
                tag_conversations(super::metrics::EXPANSION, tag) as f64,
            );
            x.numbers.insert(
                "expansion_share",
                first["expansion"].as_f64().unwrap_or(0.0),
            );
            x.numbers.insert("companies", expansion.companies as f64);
            x.slices.insert("tag", json!(tag));
            out.push(x);
        }
    }
    if let Some(f) = has("response_gap") {
        if f.keys.get("direction") == Some(&"slower") {
            let mut x = Recommendation::new("match_response_time", "response_gap");
            x.numbers.insert("target", f.numbers["expansion"]);
            x.numbers.insert("current", f.numbers["at_risk"]);
            out.push(x);
        }
    }
    if let Some(f) = has("rating_gap") {
        if f.keys.get("direction") == Some(&"lower") {
            let mut x = Recommendation::new("review_low_ratings", "rating_gap");
            x.numbers.insert("low_rated", risk.rated_le2 as f64);
            if let Some(t) = expansion.share_rated_le2 {
                x.numbers.insert("target_share", t);
            }
            if let Some(c) = risk.share_rated_le2 {
                x.numbers.insert("current_share", c);
            }
            out.push(x);
        }
    }
    if let Some(f) = has("reopen_gap") {
        if f.keys.get("direction") == Some(&"more") {
            let mut x = Recommendation::new("first_contact_resolution", "reopen_gap");
            x.numbers.insert("current", f.numbers["at_risk"]);
            x.numbers.insert("target", f.numbers["expansion"]);
            out.push(x);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::intercom::window::Window;
    use crate::reports::tag_drivers::metrics::{TagShare, AT_RISK, EXPANSION};
    use crate::source::BadTimestamps;

    fn group(name: &'static str, rating: f64, resp: f64) -> GroupStats {
        GroupStats {
            group: name,
            companies: 10,
            conversations: 100,
            conversations_per_company: Some(10.0),
            rated: 50,
            rated_le2: 10,
            avg_rating: Some(rating),
            share_rated_le2: Some(0.2),
            median_resp: Some(resp),
            reopen_rate: Some(0.1),
        }
    }

    fn numbers(top: Vec<(&str, f64, f64)>, risk: GroupStats, exp: GroupStats) -> TagDrivers {
        let t = |s: &str| crate::source::timestamp::parse(s, chrono_tz::Tz::UTC).unwrap();
        TagDrivers {
            window: Window {
                start: t("2024-01-01 00:00:00"),
                end: t("2024-06-30 23:59:59"),
            },
            groups: vec![risk, exp],
            shares: top
                .iter()
                .flat_map(|(t, a, b)| {
                    [
                        TagShare {
                            group: AT_RISK,
                            tag: (*t).into(),
                            conversations: (a * 100.0) as usize,
                            share: *a,
                        },
                        TagShare {
                            group: EXPANSION,
                            tag: (*t).into(),
                            conversations: (b * 100.0) as usize,
                            share: *b,
                        },
                    ]
                })
                .collect(),
            top: top
                .iter()
                .map(|(t, a, b)| TopTag {
                    tag: (*t).into(),
                    at_risk_share: *a,
                    expansion_share: *b,
                    difference_pp: (a - b) * 100.0,
                })
                .collect(),
            in_both_groups: vec![],
            unmapped_conversations: 0,
            conversations_in_window: 200,
            bad_timestamps: BadTimestamps::default(),
        }
    }

    #[test]
    fn topics_need_the_threshold_and_findings_their_condition() {
        let r = numbers(
            vec![
                ("Bug", 0.30, 0.10),
                ("Billing", 0.20, 0.19),
                ("Upgrade", 0.05, 0.25),
            ],
            group(AT_RISK, 3.5, 30.0),
            group(EXPANSION, 4.2, 30.2),
        );
        let f = findings(&r, 3.0);
        let ids: Vec<&str> = f.iter().map(|x| x.id).collect();
        // The response gap of 0.2 min and the equal reopen rates say nothing.
        assert_eq!(ids, ["risk_topics", "growth_topics", "rating_gap"]);
        assert_eq!(f[0].slices["tags"][0]["tag"], "Bug");
        assert_eq!(f[0].numbers["count"], 1.0, "Billing differs by 1 pp only");
        let recs = recommendations(&r, &f);
        let ids: Vec<&str> = recs.iter().map(|x| x.id).collect();
        assert_eq!(
            ids,
            [
                "stabilize_risk_topics",
                "outreach_growth_topics",
                "review_low_ratings"
            ]
        );
        assert_eq!(recs[0].numbers["avoidable"], 20.0);
        // A higher threshold leaves nothing over-represented: the finding says so.
        let f = findings(&r, 25.0);
        assert_eq!(f[0].id, "no_topic_gap");
    }

    #[test]
    fn an_empty_group_is_said_and_nothing_else() {
        let mut risk = group(AT_RISK, 3.0, 30.0);
        risk.conversations = 0;
        let r = numbers(vec![], risk, group(EXPANSION, 4.0, 20.0));
        let f = findings(&r, 3.0);
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].keys["group"], "at_risk");
        assert!(recommendations(&r, &f).is_empty());
    }
}
