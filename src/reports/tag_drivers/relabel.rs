//! Probable re-tagging in tag-drivers: topics of one group whose shares move in
//! opposite directions between the comparison period and this window while their sum
//! stays put (the rule is [`crate::stats::claims::offsetting_pairs`]). Such a pair is
//! reported together, never as an improvement or a worsening: neither topic leads
//! page 1 on its own, the group comparison reads the two topics as one, and the action
//! is to check the tagging rules.

use serde_json::{json, Value};

use super::comparison::GROUPS;
use super::metrics::{TagDrivers, TopTag};
use crate::render::narrative::{Finding, Recommendation};
use crate::reports::comparison::{Change, Comparison, Direction};
use crate::stats::claims::{offsetting_pairs, printed_difference, Move, Offset, Proportion};

/// One offsetting pair of topics in one group.
#[derive(Debug, Clone, PartialEq)]
pub struct Relabel {
    pub group: &'static str,
    /// The topic whose share fell, and the one whose share rose.
    pub fall: Change,
    pub rise: Change,
}

impl Relabel {
    fn tags(&self) -> [&str; 2] {
        [
            self.fall.item.as_deref().unwrap_or_default(),
            self.rise.item.as_deref().unwrap_or_default(),
        ]
    }
}

fn proportion(k: Option<f64>, n: f64) -> Option<Proportion> {
    let k = k?;
    (n > 0.0).then_some(Proportion { k, n })
}

/// A group's topic changes, each with its move (both periods' counts).
type Topics<'a> = Vec<(&'a Change, Move)>;

/// The topic changes of `group` in `c` with their moves (both periods' counts).
fn moves<'a>(c: &'a Comparison, group: &str) -> Topics<'a> {
    c.changes
        .iter()
        .filter(|x| x.metric == "topic_share" && x.slice == group)
        .filter_map(|x| {
            Some((
                x,
                Move {
                    now: proportion(x.current_k, x.current_n)?,
                    then: proportion(x.previous_k, x.previous_n)?,
                    holds: matches!(x.direction, Direction::Rise | Direction::Fall),
                },
            ))
        })
        .collect()
}

/// The offsetting topic pairs of each group in `c`. A tagging rule applies to every
/// group: a pair whose two moves both hold in one group is preferred in the others
/// wherever it offsets there too, before a group's own closest offsets.
pub fn relabels(c: &Comparison) -> Vec<Relabel> {
    if c.empty_reason.is_some() {
        return Vec::new();
    }
    let own: Vec<(&'static str, Topics<'_>, Vec<Offset>)> = GROUPS
        .into_iter()
        .map(|group| {
            let topics = moves(c, group);
            let pairs = offsetting_pairs(&topics.iter().map(|t| t.1).collect::<Vec<_>>());
            (group, topics, pairs)
        })
        .collect();
    let tag = |topics: &[(&Change, Move)], i: usize| topics[i].0.item.clone();
    let strong: Vec<[Option<String>; 2]> = own
        .iter()
        .flat_map(|(_, topics, pairs)| {
            pairs
                .iter()
                .filter(|p| topics[p.fall].1.holds && topics[p.rise].1.holds)
                .map(|p| [tag(topics, p.fall), tag(topics, p.rise)])
                .collect::<Vec<_>>()
        })
        .collect();
    let mut out = Vec::new();
    for (group, topics, pairs) in &own {
        let mut chosen: Vec<(usize, usize)> = Vec::new();
        for [a, b] in &strong {
            let find = |t: &Option<String>| topics.iter().position(|x| x.0.item == *t);
            let (Some(i), Some(j)) = (find(a), find(b)) else {
                continue;
            };
            if let Some(p) = offsetting_pairs(&[topics[i].1, topics[j].1]).first() {
                let (fall, rise) = if p.fall == 0 { (i, j) } else { (j, i) };
                if !chosen
                    .iter()
                    .any(|(x, y)| [*x, *y].iter().any(|v| *v == i || *v == j))
                {
                    chosen.push((fall, rise));
                }
            }
        }
        for p in pairs {
            if !chosen
                .iter()
                .any(|(x, y)| [*x, *y].iter().any(|v| *v == p.fall || *v == p.rise))
            {
                chosen.push((p.fall, p.rise));
            }
        }
        for (fall, rise) in chosen {
            out.push(Relabel {
                group,
                fall: topics[fall].0.clone(),
                rise: topics[rise].0.clone(),
            });
        }
    }
    out
}

/// `c` with the pairs' own changes read as no clear change: they are reported
/// together (page 1 and "What changed"), so neither leads on its own.
pub fn without(c: &Comparison, pairs: &[Relabel]) -> Comparison {
    let mut c = c.clone();
    for x in &mut c.changes {
        if pairs.iter().any(|r| *x == r.fall || *x == r.rise) {
            x.direction = Direction::NoClearChange;
        }
    }
    c
}

/// The topic a change of `x` offsets, when `x` is one of a pair's.
pub fn partner<'a>(pairs: &'a [Relabel], x: &Change) -> Option<&'a str> {
    pairs.iter().find_map(|r| {
        if *x == r.fall {
            r.rise.item.as_deref()
        } else if *x == r.rise {
            r.fall.item.as_deref()
        } else {
            None
        }
    })
}

/// A rate as printed (one decimal of a percentage), as a fraction.
fn printed(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

/// The sign a printed difference carries.
fn sign(d: f64) -> &'static str {
    if d > 0.0 {
        "+"
    } else if d < 0.0 {
        "−"
    } else {
        "±"
    }
}

/// One pair as the templates read it: both topics' printed values and changes, and
/// their sum (the sum of the printed shares, so every printed difference is the
/// difference of printed values).
fn pair_value(r: &Relabel) -> Value {
    let side = |x: &Change| {
        let (now, then) = (x.current.unwrap_or(0.0), x.previous.unwrap_or(0.0));
        json!({
            "tag": x.item,
            "previous": printed(then),
            "current": printed(now),
            "change": printed_difference(now, then, 100.0, 1).abs(),
            "sign": sign(printed_difference(now, then, 100.0, 1)),
        })
    };
    let sum =
        |a: Option<f64>, b: Option<f64>| printed(a.unwrap_or(0.0)) + printed(b.unwrap_or(0.0));
    let (now, then) = (
        sum(r.fall.current, r.rise.current),
        sum(r.fall.previous, r.rise.previous),
    );
    json!({
        "group": r.group,
        "fall": side(&r.fall),
        "rise": side(&r.rise),
        "previous": then,
        "current": now,
        "change": (((now - then) * 1000.0).round() / 1000.0).abs(),
        "sign": sign(((now - then) * 1000.0).round()),
    })
}

/// Page 1's record of the pairs (leads: a relabelling changes how every topic
/// figure reads), or none.
pub fn finding(pairs: &[Relabel], period: &str) -> Option<Finding> {
    if pairs.is_empty() {
        return None;
    }
    let mut f = Finding::new("relabel", 0);
    f.slices.insert(
        "pairs",
        Value::Array(pairs.iter().map(pair_value).collect()),
    );
    f.slices.insert("period", json!(period));
    Some(f)
}

/// The same record for the "What changed" section.
pub fn section_record(pairs: &[Relabel], period: &str) -> Option<Finding> {
    let mut f = finding(pairs, period)?;
    f.lead = false;
    f.keys.insert("section", "change");
    Some(f)
}

/// The action a relabelling asks for: check the tagging rules for the topics since
/// the comparison period began.
pub fn recommendation(pairs: &[Relabel], since: &str) -> Option<Recommendation> {
    let first = pairs.first()?;
    let mut x = Recommendation::owned("check_tagging", "relabel", "support_operations");
    let [fall, rise] = first.tags();
    x.slices.insert("fall", json!(fall));
    x.slices.insert("rise", json!(rise));
    x.slices.insert("since", json!(since));
    x.numbers.insert("pairs", pairs.len() as f64);
    Some(x)
}

/// The topic pairs to read as one in the group comparison (each topic once).
pub fn tag_pairs(pairs: &[Relabel]) -> Vec<[String; 2]> {
    let mut out: Vec<[String; 2]> = Vec::new();
    for r in pairs {
        let [a, b] = r.tags();
        if !out.iter().flatten().any(|t| t == a || t == b) {
            out.push([a.to_owned(), b.to_owned()]);
        }
    }
    out
}

/// `r` with each pair's two topics read as one: their counts and shares summed
/// (`with` names the second topic), so that neither leads a finding or sets an
/// action on its own. Companies and ARR are the larger of the two (at least that
/// many raised either topic); the templates say "at least".
pub fn merged(r: &TagDrivers, pairs: &[[String; 2]]) -> TagDrivers {
    let mut out = r.clone();
    for [a, b] in pairs {
        let (Some(x), Some(y)) = (
            out.top.iter().position(|t| t.tag == *a),
            out.top.iter().position(|t| t.tag == *b),
        ) else {
            continue;
        };
        let (ta, tb) = (&out.top[x], &out.top[y]);
        let ns = [
            r.groups[0].conversations,
            r.groups[1].conversations,
            r.baseline.conversations,
        ];
        let k = |g: usize| (ta.conversations[g] + tb.conversations[g]).min(ns[g]);
        let share = |g: usize| {
            if ns[g] == 0 {
                0.0
            } else {
                k(g) as f64 / ns[g] as f64
            }
        };
        let one = TopTag {
            tag: a.clone(),
            with: Some(b.clone()),
            at_risk_share: share(0),
            expansion_share: share(1),
            difference_pp: (share(0) - share(1)) * 100.0,
            all_share: share(2),
            conversations: [k(0), k(1), k(2)],
            at_risk_companies: ta.at_risk_companies.max(tb.at_risk_companies),
            at_risk_arr: ta.at_risk_arr.max(tb.at_risk_arr),
            expansion_companies: ta.expansion_companies.max(tb.expansion_companies),
            expansion_arr: ta.expansion_arr.max(tb.expansion_arr),
        };
        out.top[x] = one;
        out.top.remove(y);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reports::comparison::{decide, Unit};

    fn topic(group: &str, tag: &str, now: usize, then: usize) -> Change {
        let n = 1_000;
        let mut c = Change::new(
            "topic_share",
            group,
            Unit::Rate,
            Some(now as f64 / n as f64),
            Some(then as f64 / n as f64),
        )
        .with_counts(Proportion::new(now, n), Proportion::new(then, n));
        c.item = Some(tag.to_owned());
        c
    }

    #[test]
    fn the_planted_move_is_one_pair_and_leads_nothing_on_its_own() {
        let mut changes = vec![
            topic("at_risk", "Bug", 95, 163),
            topic("at_risk", "Outage", 203, 147),
            topic("at_risk", "Billing", 109, 121),
            topic("expansion", "Bug", 16, 37),
            topic("expansion", "Integration", 123, 107),
            topic("expansion", "Outage", 43, 27),
            topic("expansion", "Billing", 105, 122),
            topic("expansion", "Upgrade", 300, 200),
        ];
        decide(&mut changes);
        let c = Comparison {
            basis: "previous".into(),
            window: None,
            period: "2023-12-15_2024-03-15".into(),
            empty_reason: None,
            changes,
            coverage: None,
        };
        let pairs = relabels(&c);
        // Integration offsets expansion's Bug as closely as Outage does; the pair that
        // holds for at-risk companies is the one read.
        let tags: Vec<(&str, [&str; 2])> = pairs.iter().map(|p| (p.group, p.tags())).collect();
        assert_eq!(
            tags,
            [
                ("at_risk", ["Bug", "Outage"]),
                ("expansion", ["Bug", "Outage"])
            ]
        );
        let rest = without(&c, &pairs);
        assert_eq!(rest.changes[0].direction, Direction::NoClearChange);
        assert_eq!(
            rest.changes[7].direction,
            Direction::Rise,
            "a real rise stays"
        );
        let f = finding(&pairs, &c.period).unwrap();
        let p = &f.slices["pairs"][0];
        // Printed: 16.3 + 14.7 = 31.0 → 9.5 + 20.3 = 29.8, −1.2 pp.
        assert!((p["change"].as_f64().unwrap() - 0.012).abs() < 1e-12, "{p}");
        assert_eq!(p["sign"], "−");
        assert!((p["fall"]["change"].as_f64().unwrap() - 0.068).abs() < 1e-12);
        assert_eq!(p["rise"]["sign"], "+");
        assert_eq!(partner(&pairs, &c.changes[1]), Some("Bug"));
    }
}
