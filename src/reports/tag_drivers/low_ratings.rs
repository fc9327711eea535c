//! Which topics produce the low ratings (seed 003): for each topic of a group, its
//! rated conversations and those rated 1 or 2, against the group's other rated
//! conversations, tested as two proportions with Benjamini–Hochberg across the
//! group's topics. A pure function of the counts `metrics` gathers.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::stats::claims::{compare_many, Proportion, Verdict};

/// One topic of one group: its rated conversations against the rest of the group's.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LowRatingTopic {
    pub group: &'static str,
    pub tag: String,
    /// Rated conversations carrying the topic, and those rated 1 or 2.
    pub rated: usize,
    pub rated_le2: usize,
    pub share_rated_le2: f64,
    /// The group's rated conversations without the topic, and those rated 1 or 2.
    pub rest_rated: usize,
    pub rest_rated_le2: usize,
    pub rest_share_rated_le2: Option<f64>,
    /// The topic's low-rated share against the rest's, corrected across the topics.
    pub verdict: Verdict,
}

/// The topics of `group` from `per_tag` (topic → (rated, rated 1–2)) and the group's
/// totals (`rated`, `rated_le2`); topics without a rated conversation are left out.
/// Highest low-rated share first (ties: more low ratings, then the name).
pub fn per_topic(
    group: &'static str,
    per_tag: &BTreeMap<String, (usize, usize)>,
    rated: usize,
    rated_le2: usize,
) -> Vec<LowRatingTopic> {
    let rows: Vec<(&String, usize, usize)> = per_tag
        .iter()
        .filter(|(_, (n, _))| *n > 0)
        .map(|(t, (n, k))| (t, *n, *k))
        .collect();
    let pairs: Vec<Option<(Proportion, Proportion)>> = rows
        .iter()
        .map(|(_, n, k)| {
            Some((
                Proportion::new(*k, *n)?,
                Proportion::new(rated_le2.saturating_sub(*k), rated.saturating_sub(*n))?,
            ))
        })
        .collect();
    // A topic carried by every rated conversation has no rest to be compared with.
    let testable: Vec<(Proportion, Proportion)> = pairs.iter().flatten().copied().collect();
    let mut verdicts = compare_many(&testable).into_iter();
    let mut out: Vec<LowRatingTopic> = rows
        .iter()
        .zip(&pairs)
        .map(|((tag, n, k), pair)| {
            let rest_rated = rated.saturating_sub(*n);
            let rest_rated_le2 = rated_le2.saturating_sub(*k);
            LowRatingTopic {
                group,
                tag: (*tag).clone(),
                rated: *n,
                rated_le2: *k,
                share_rated_le2: *k as f64 / *n as f64,
                rest_rated,
                rest_rated_le2,
                rest_share_rated_le2: (rest_rated > 0)
                    .then(|| rest_rated_le2 as f64 / rest_rated as f64),
                verdict: match pair {
                    Some(_) => verdicts.next().unwrap_or(Verdict::NoClearDifference),
                    None => Verdict::NoClearDifference,
                },
            }
        })
        .collect();
    out.sort_by(|a, b| {
        b.share_rated_le2
            .total_cmp(&a.share_rated_le2)
            .then_with(|| b.rated_le2.cmp(&a.rated_le2))
            .then_with(|| a.tag.cmp(&b.tag))
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(rows: &[(&str, usize, usize)]) -> BTreeMap<String, (usize, usize)> {
        rows.iter()
            .map(|(t, n, k)| ((*t).to_owned(), (*n, *k)))
            .collect()
    }

    #[test]
    fn each_topic_is_read_against_the_rest_of_its_group() {
        // 1,000 rated, 200 low: Bug 100 rated with 60 low against 140 of 900.
        let r = per_topic(
            "at_risk",
            &tags(&[("Bug", 100, 60), ("Billing", 100, 21), ("Unrated", 0, 0)]),
            1000,
            200,
        );
        assert_eq!(r.len(), 2, "a topic without ratings is left out");
        assert_eq!(r[0].tag, "Bug");
        assert_eq!((r[0].rated, r[0].rated_le2), (100, 60));
        assert_eq!((r[0].rest_rated, r[0].rest_rated_le2), (900, 140));
        assert!((r[0].share_rated_le2 - 0.6).abs() < 1e-12);
        assert!((r[0].rest_share_rated_le2.unwrap() - 140.0 / 900.0).abs() < 1e-12);
        assert_eq!(r[0].verdict, Verdict::Higher);
        // 21% against 19.9%: chance.
        assert_eq!(r[1].tag, "Billing");
        assert_eq!(r[1].verdict, Verdict::NoClearDifference);
    }

    #[test]
    fn a_topic_on_every_rated_conversation_has_nothing_to_be_compared_with() {
        let r = per_topic("at_risk", &tags(&[("All", 50, 40), ("Bug", 10, 9)]), 50, 40);
        let all = r.iter().find(|x| x.tag == "All").unwrap();
        assert_eq!(all.rest_rated, 0);
        assert_eq!(all.rest_share_rated_le2, None);
        assert_eq!(all.verdict, Verdict::NoClearDifference);
    }
}
