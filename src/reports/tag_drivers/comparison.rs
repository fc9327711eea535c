//! tag-drivers against its comparison period and month by month: the same metrics on
//! the comparison window and on each of the last twelve months
//! ([`crate::reports::windowed`] computes them), set against this window's here. Per group (at-risk, expansion) the comparison sets the
//! group's conversations (exact test over the two windows' lengths), the share of
//! each topic of either period's top lists, the share rated 1–2 and the reopen rate
//! (two-proportion tests) against the earlier period; what holds is decided over all
//! of them at once ([`crate::reports::comparison`]).

use serde::Serialize;

use super::metrics::{GroupStats, TagDrivers, AT_RISK, EXPANSION};
use crate::intercom::window::{Compare, Window};
use crate::reports::comparison::{decide, Change, Comparison, Direction, Unit};
use crate::reports::trend::Month;
use crate::stats::claims::{count_rate_p, Proportion};

/// The groups compared, in order (the metrics' `groups` order).
pub const GROUPS: [&str; 2] = [AT_RISK, EXPANSION];

/// Topics drawn month by month: those leaning most to each group in the window.
const TREND_TOPICS_PER_SIDE: usize = 2;

/// Conversations of `group` carrying `tag` (0 when the tag was not raised).
pub fn tag_count(r: &TagDrivers, group: &str, tag: &str) -> usize {
    r.shares
        .iter()
        .find(|s| s.group == group && s.tag == tag)
        .map_or(0, |s| s.conversations)
}

/// Sets `current` against `previous` (the same report on the comparison window).
pub fn compare(current: &TagDrivers, previous: &TagDrivers, basis: Compare) -> Comparison {
    let days = |w: &Window| (w.end - w.start).num_seconds() as f64 / 86_400.0;
    let (t1, t0) = (days(&current.window), days(&previous.window));
    let mut tags: Vec<&str> = current
        .top
        .iter()
        .chain(&previous.top)
        .map(|t| t.tag.as_str())
        .collect();
    tags.sort_unstable();
    tags.dedup();
    let mut changes = Vec::new();
    for (g, group) in GROUPS.into_iter().enumerate() {
        let (a, b) = (&current.groups[g], &previous.groups[g]);
        let mut c = Change::new(
            "conversations",
            group,
            Unit::Count,
            Some(a.conversations as f64),
            Some(b.conversations as f64),
        );
        c.current_n = a.conversations as f64;
        c.previous_n = b.conversations as f64;
        c.p = Some(count_rate_p(a.conversations, t1, b.conversations, t0));
        c.direction = Direction::NoClearChange;
        changes.push(c);
        for tag in &tags {
            let (k1, k0) = (
                tag_count(current, group, tag),
                tag_count(previous, group, tag),
            );
            let mut c = rate_change(
                "topic_share",
                group,
                Proportion::new(k1, a.conversations),
                Proportion::new(k0, b.conversations),
            );
            c.item = Some((*tag).to_owned());
            changes.push(c);
        }
        let rated = |s: &GroupStats| Proportion::new(s.rated_le2, s.rated);
        changes.push(rate_change("share_rated_le2", group, rated(a), rated(b)));
        let reopened = |s: &GroupStats| Proportion::new(s.samples.reopened, s.samples.with_metrics);
        changes.push(rate_change("reopen_rate", group, reopened(a), reopened(b)));
    }
    decide(&mut changes);
    Comparison::of_window(basis, previous.window, changes)
}

/// A rate in both periods with its counts, tested when both exist.
fn rate_change(
    metric: &'static str,
    group: &str,
    now: Option<Proportion>,
    then: Option<Proportion>,
) -> Change {
    Change::new(
        metric,
        group,
        Unit::Rate,
        now.map(|p| p.rate()),
        then.map(|p| p.rate()),
    )
    .with_counts(now, then)
}

/// The topics' shares per group, month by month.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Trend {
    /// The topics drawn, in the window's order (most at-risk first).
    pub topics: Vec<String>,
    pub months: Vec<Month<Shares>>,
}

/// One month's shares (all empty when the month has no numbers).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Shares {
    /// Each group's conversations that month (the shares' denominators).
    pub conversations: [Option<usize>; 2],
    /// Per topic (in `topics` order): the share in each group, empty where the group
    /// has no conversation that month.
    pub at_risk: Vec<Option<f64>>,
    pub expansion: Vec<Option<f64>>,
}

/// The topics a trend draws: those leaning most to each group in `current`'s
/// window; none when the window has no topic to draw (no trend).
pub fn trend_topics(current: &TagDrivers) -> Option<Vec<String>> {
    let mut topics: Vec<String> = Vec::new();
    for t in current.top.iter().take(TREND_TOPICS_PER_SIDE).chain(
        current
            .top
            .iter()
            .rev()
            .take(TREND_TOPICS_PER_SIDE)
            .collect::<Vec<_>>()
            .into_iter()
            .rev(),
    ) {
        if !topics.contains(&t.tag) {
            topics.push(t.tag.clone());
        }
    }
    (!topics.is_empty()).then_some(topics)
}

impl Shares {
    /// A month without numbers.
    pub fn empty(topics: &[String]) -> Self {
        Self {
            conversations: [None, None],
            at_risk: vec![None; topics.len()],
            expansion: vec![None; topics.len()],
        }
    }
}

/// One month's shares of `topics` from the report's numbers on that month.
pub fn shares(topics: &[String], r: &TagDrivers) -> Shares {
    let [at_risk, expansion] = GROUPS.map(|group| {
        let n = r.groups[usize::from(group == EXPANSION)].conversations;
        topics
            .iter()
            .map(|t| (n > 0).then(|| tag_count(r, group, t) as f64 / n as f64))
            .collect::<Vec<_>>()
    });
    Shares {
        conversations: [
            Some(r.groups[0].conversations),
            Some(r.groups[1].conversations),
        ],
        at_risk,
        expansion,
    }
}
