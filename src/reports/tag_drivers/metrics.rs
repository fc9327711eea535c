//! The numbers of the `tag-drivers` report (`../shared/specs/report-tag-drivers.md`):
//! what at-risk companies talk to support about compared with expansion targets.
//! Pure functions from loaded rows to serde structs, like conversation-usage's; the
//! population and window rules are conversation-usage's §1–§2 (no P1/P99 exclusion).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::Serialize;

use super::load::TagDriversData;
use super::low_ratings::{per_topic, LowRatingTopic};
use crate::intercom::population::Population;
use crate::intercom::window::Window;
use crate::reports::MetricsError;
use crate::source::BadTimestamps;
use crate::stats::claims::Moments;
use crate::stats::percentile;

pub const AT_RISK: &str = "at_risk";
pub const EXPANSION: &str = "expansion";
/// The baseline: every paying company's conversations in the window.
pub const ALL_PAYING: &str = "all_paying";
const TOP: usize = 10;

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct TagDrivers {
    pub window: Window,
    pub groups: Vec<GroupStats>,
    /// All paying customers, the baseline each group is read against.
    pub baseline: GroupStats,
    /// One row per group and topic tag seen in that group (tag_shares.csv).
    pub shares: Vec<TagShare>,
    /// The union of both groups' top-10 tags, shares side by side.
    pub top: Vec<TopTag>,
    /// Companies in both groups (counted in both): id and name.
    pub in_both_groups: Vec<(String, String)>,
    pub unmapped_conversations: usize,
    /// Conversations in the window of companies outside the edition's scope, left
    /// out of every other count (`None`: the run has no scope).
    pub outside_scope_conversations: Option<usize>,
    pub conversations_in_window: usize,
    pub bad_timestamps: BadTimestamps,
    /// How the at-risk group is made up: the other reports' Churn watch is a segment,
    /// this group a tag or a segment.
    pub at_risk_parts: AtRiskParts,
    /// Per group and topic: its rated conversations and those rated 1–2 against the
    /// group's other rated conversations (low_rating_topics.csv).
    pub low_ratings: Vec<LowRatingTopic>,
}

/// The at-risk companies with conversations by the rule that puts them in the group:
/// an at-risk segment, or an at-risk tag alone (with the rules' values).
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct AtRiskParts {
    pub by_segment: usize,
    pub by_tag_only: usize,
    pub tags: Vec<String>,
    pub segments: Vec<String>,
}

/// Splits the at-risk `companies` by their rule: `in_segment` says whether a company
/// is at risk by its segment (else a tag put it there).
pub fn at_risk_parts(
    companies: impl Iterator<Item = usize>,
    in_segment: impl Fn(usize) -> bool,
    mapping: &crate::intercom::mapping::Mapping,
) -> AtRiskParts {
    let (mut by_segment, mut by_tag_only) = (0, 0);
    for c in companies {
        if in_segment(c) {
            by_segment += 1;
        } else {
            by_tag_only += 1;
        }
    }
    AtRiskParts {
        by_segment,
        by_tag_only,
        tags: mapping.at_risk_tags.clone(),
        segments: mapping.at_risk_segments.clone(),
    }
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct GroupStats {
    pub group: &'static str,
    pub companies: usize,
    pub conversations: usize,
    pub conversations_per_company: Option<f64>,
    /// Conversations with a rating, and those rated 1 or 2.
    pub rated: usize,
    pub rated_le2: usize,
    pub avg_rating: Option<f64>,
    pub share_rated_le2: Option<f64>,
    pub median_resp: Option<f64>,
    pub reopen_rate: Option<f64>,
    /// Annual revenue (12 × monthly spend) of the group's companies with conversations.
    pub arr: f64,
    /// The samples the findings test (not printed as such).
    #[serde(skip)]
    pub samples: GroupSamples,
}

/// What a group's comparisons rest on.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GroupSamples {
    pub ratings: Option<Moments>,
    /// First-response minutes, sorted.
    pub responses: Vec<f64>,
    /// Conversations with a metrics row, and those reopened.
    pub with_metrics: usize,
    pub reopened: usize,
    /// Conversations per company.
    pub per_company: Option<Moments>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct TagShare {
    pub group: &'static str,
    pub tag: String,
    pub conversations: usize,
    pub share: f64,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct TopTag {
    pub tag: String,
    /// A second topic read together with `tag` (a probable relabelling; see
    /// `relabel`): counts and shares are the two topics' sums.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub with: Option<String>,
    pub at_risk_share: f64,
    pub expansion_share: f64,
    /// at_risk_share − expansion_share, in percentage points.
    pub difference_pp: f64,
    /// Share of all paying customers' conversations (the baseline).
    pub all_share: f64,
    /// Conversations carrying the tag per group: at-risk, expansion, all paying.
    pub conversations: [usize; 3],
    /// At-risk companies that raised the tag, and their ARR.
    pub at_risk_companies: usize,
    pub at_risk_arr: f64,
    /// Expansion targets that raised the tag, and their ARR.
    pub expansion_companies: usize,
    pub expansion_arr: f64,
}

impl TopTag {
    /// The gap as printed: the printed at-risk share minus the printed expansion share
    /// (one decimal), in percentage points; what every table, sentence and chart label
    /// prints.
    pub fn printed_pp(&self) -> f64 {
        let d = crate::stats::claims::printed_difference(
            self.at_risk_share,
            self.expansion_share,
            100.0,
            1,
        );
        (d * 1000.0).round() / 10.0
    }
}

#[derive(Default)]
struct Acc {
    /// Conversations per company.
    companies: BTreeMap<usize, usize>,
    conversations: usize,
    ratings: Vec<f64>,
    responses: Vec<f64>,
    with_metrics: usize,
    reopened: usize,
    tags: BTreeMap<String, usize>,
    tag_companies: BTreeMap<String, BTreeSet<usize>>,
    /// Per topic: rated conversations, and those rated 1–2.
    tag_ratings: BTreeMap<String, (usize, usize)>,
}

/// What the metrics of every window share (see [`TagDriversData::prepared`]).
#[derive(Debug, Clone)]
pub struct Prepared {
    /// Whether any company pays (the population itself is needed only here).
    any_paying: bool,
    /// Paying companies in a group: (at risk, expansion).
    member: HashMap<usize, (bool, bool)>,
    /// Paying companies in both groups (id, name), sorted.
    in_both: Vec<(String, String)>,
    /// Per company: at risk by the segment rule alone (the mapping without its
    /// at-risk tags).
    at_risk_by_segment: Vec<bool>,
    /// Per conversation, in `data.conversations` order: the paying company its first
    /// company name maps to, and its metrics row (response minutes, reopens; the
    /// table's first row of its id).
    company_of: Vec<Option<usize>>,
    metrics_of: Vec<Option<(Option<f64>, Option<i64>)>>,
}

/// `map`'s value of `key`, its default the first time: the key is copied only then
/// (a topic is seen in millions of conversations and named by a few hundred keys).
fn slot<'m, V: Default>(map: &'m mut BTreeMap<String, V>, key: &str) -> &'m mut V {
    if !map.contains_key(key) {
        map.insert(key.to_owned(), V::default());
    }
    map.get_mut(key).expect("the key was inserted above")
}

fn prepare(data: &TagDriversData) -> Prepared {
    let pop = Population::new(&data.companies);
    let mut member: HashMap<usize, (bool, bool)> = HashMap::new();
    let mut in_both = Vec::new();
    for &i in &pop.paying {
        let g = data.mapping.groups_of(&data.companies[i]);
        if g.0 || g.1 {
            member.insert(i, g);
        }
        if g.0 && g.1 {
            let c = &data.companies[i];
            in_both.push((
                c.company_id.clone(),
                c.company_name.clone().unwrap_or_default(),
            ));
        }
    }
    in_both.sort();
    // The segment rule alone: the same mapping without its at-risk tags.
    let segment_only = crate::intercom::mapping::Mapping {
        at_risk_tags: Vec::new(),
        ..data.mapping.clone()
    };
    let mut at_risk_by_segment = vec![false; data.companies.len()];
    for &i in &pop.paying {
        at_risk_by_segment[i] = segment_only.groups_of(&data.companies[i]).0;
    }
    let mut metrics: HashMap<&str, (Option<f64>, Option<i64>)> =
        HashMap::with_capacity(data.metrics.len());
    for m in &data.metrics {
        metrics
            .entry(m.conversation_id.as_str())
            .or_insert((m.response_minutes, m.reopens));
    }
    let metrics_of = data
        .conversations
        .iter()
        .map(|c| metrics.get(c.conversation_id.as_str()).copied())
        .collect();
    let company_of = data
        .conversations
        .iter()
        .map(|c| pop.company_of(c.first_company_name.as_deref()))
        .collect();
    Prepared {
        any_paying: !pop.paying.is_empty(),
        member,
        in_both,
        at_risk_by_segment,
        company_of,
        metrics_of,
    }
}

pub fn compute(data: &TagDriversData, window: Window) -> Result<TagDrivers, MetricsError> {
    let Prepared {
        any_paying,
        member,
        in_both,
        at_risk_by_segment,
        company_of,
        metrics_of,
    } = data.prepared.get_or_init(|| prepare(data));
    // A report of "0 paying companies" would be mailed as if it said something.
    if !any_paying {
        return Err(MetricsError::NothingMapped {
            report: super::NAME,
            cause:
                "no paying company (none has monthly_spend, or the mapping's spend_column, above 0)",
        });
    }
    let mut acc = [Acc::default(), Acc::default(), Acc::default()];
    let (mut in_window, mut unmapped) = (0, 0);
    for (i, c) in data.conversations.iter().enumerate() {
        let Some(created) = c.created_at else {
            continue;
        };
        if !window.contains(created) {
            continue;
        }
        in_window += 1;
        let Some(company) = company_of[i] else {
            unmapped += 1;
            continue;
        };
        let (risk, expansion) = member.get(&company).copied().unwrap_or_default();
        for (g, is) in [risk, expansion, true].into_iter().enumerate() {
            if !is {
                continue;
            }
            let a = &mut acc[g];
            *a.companies.entry(company).or_default() += 1;
            a.conversations += 1;
            if let Some(r) = c.rating {
                a.ratings.push(r);
            }
            if let Some((resp, reopens)) = metrics_of[i] {
                a.with_metrics += 1;
                a.reopened += usize::from(reopens.unwrap_or(0) > 0);
                if let Some(r) = resp {
                    a.responses.push(r);
                }
            }
            for t in &c.topics {
                *slot(&mut a.tags, t) += 1;
                slot(&mut a.tag_companies, t).insert(company);
                if let Some(r) = c.rating {
                    let e = slot(&mut a.tag_ratings, t);
                    e.0 += 1;
                    e.1 += usize::from(r <= 2.0);
                }
            }
        }
    }
    if in_window == 0 {
        return Err(MetricsError::empty_window(&window));
    }
    let parts = at_risk_parts(
        acc[0].companies.keys().copied(),
        |i| at_risk_by_segment[i],
        &data.mapping,
    );
    let names = [AT_RISK, EXPANSION, ALL_PAYING];
    let mut shares = Vec::new();
    let mut top_lists: Vec<Vec<String>> = Vec::new();
    let ratio = |n: usize, d: usize| (d > 0).then(|| n as f64 / d as f64);
    let arr_of = |companies: &mut dyn Iterator<Item = &usize>| -> f64 {
        companies
            .map(|&i| crate::intercom::population::arr_of(&data.companies[i]))
            .sum()
    };
    let mut stats: Vec<GroupStats> = Vec::with_capacity(3);
    let mut low_ratings = Vec::new();
    for (g, a) in acc.iter_mut().enumerate() {
        a.responses.sort_by(f64::total_cmp);
        low_ratings.extend(per_topic(
            names[g],
            &a.tag_ratings,
            a.ratings.len(),
            a.ratings.iter().filter(|r| **r <= 2.0).count(),
        ));
        stats.push(GroupStats {
            group: names[g],
            companies: a.companies.len(),
            conversations: a.conversations,
            conversations_per_company: ratio(a.conversations, a.companies.len()),
            rated: a.ratings.len(),
            rated_le2: a.ratings.iter().filter(|r| **r <= 2.0).count(),
            avg_rating: crate::stats::mean(a.ratings.iter().copied()),
            share_rated_le2: ratio(
                a.ratings.iter().filter(|r| **r <= 2.0).count(),
                a.ratings.len(),
            ),
            median_resp: percentile(&a.responses, 0.5),
            reopen_rate: ratio(a.reopened, a.with_metrics),
            arr: arr_of(&mut a.companies.keys()),
            samples: GroupSamples {
                ratings: Moments::of(a.ratings.iter().copied()),
                responses: a.responses.clone(),
                with_metrics: a.with_metrics,
                reopened: a.reopened,
                per_company: Moments::of(a.companies.values().map(|n| *n as f64)),
            },
        });
        // The baseline has no top list and no rows in tag_shares.csv.
        if g == 2 {
            continue;
        }
        let mut ranked: Vec<(&String, usize)> = a.tags.iter().map(|(t, n)| (t, *n)).collect();
        ranked.sort_by(|x, y| y.1.cmp(&x.1).then_with(|| x.0.cmp(y.0)));
        top_lists.push(ranked.iter().take(TOP).map(|(t, _)| (*t).clone()).collect());
        for (tag, n) in &a.tags {
            shares.push(TagShare {
                group: names[g],
                tag: tag.clone(),
                conversations: *n,
                share: *n as f64 / a.conversations.max(1) as f64,
            });
        }
    }
    let baseline = stats.pop().ok_or(MetricsError::empty_window(&window))?;
    let groups = stats;
    let count_of = |g: usize, tag: &str| acc[g].tags.get(tag).copied().unwrap_or(0);
    let share_of =
        |g: usize, tag: &str| count_of(g, tag) as f64 / acc[g].conversations.max(1) as f64;
    let raised_by = |g: usize, tag: &str| {
        acc[g]
            .tag_companies
            .get(tag)
            .map_or((0, 0.0), |c| (c.len(), arr_of(&mut c.iter())))
    };
    let mut union: Vec<String> = top_lists.concat();
    union.sort();
    union.dedup();
    let mut top: Vec<TopTag> = union
        .into_iter()
        .map(|tag| {
            let (r, e) = (share_of(0, &tag), share_of(1, &tag));
            let (risk_companies, risk_arr) = raised_by(0, &tag);
            let (exp_companies, exp_arr) = raised_by(1, &tag);
            TopTag {
                at_risk_share: r,
                expansion_share: e,
                difference_pp: (r - e) * 100.0,
                all_share: share_of(2, &tag),
                conversations: [count_of(0, &tag), count_of(1, &tag), count_of(2, &tag)],
                at_risk_companies: risk_companies,
                at_risk_arr: risk_arr,
                expansion_companies: exp_companies,
                expansion_arr: exp_arr,
                tag,
                with: None,
            }
        })
        .collect();
    top.sort_by(|a, b| {
        b.difference_pp
            .total_cmp(&a.difference_pp)
            .then_with(|| a.tag.cmp(&b.tag))
    });
    Ok(TagDrivers {
        window,
        groups,
        baseline,
        shares,
        top,
        in_both_groups: in_both.clone(),
        unmapped_conversations: unmapped,
        outside_scope_conversations: data
            .outside_scope
            .as_ref()
            .map(|times| times.iter().filter(|t| window.contains(**t)).count()),
        conversations_in_window: in_window,
        bad_timestamps: data.bad_timestamps.clone(),
        at_risk_parts: parts,
        low_ratings,
    })
}

#[cfg(test)]
mod tests {
    use super::super::load::{TagConversationRow, TagMetricsRow};
    use super::*;
    use crate::intercom::mapping::Mapping;
    use crate::intercom::CompanyRow;
    use chrono_tz::Tz;

    fn groups_of(c: &CompanyRow) -> (bool, bool) {
        Mapping::default().groups_of(c)
    }

    fn company(id: &str, name: &str, tags: &str) -> CompanyRow {
        CompanyRow {
            company_id: id.into(),
            company_name: Some(name.into()),
            tags: Some(tags.into()),
            monthly_spend: Some(100.0),
            user_count: Some(10),
            mapped: Default::default(),
        }
    }

    fn conv(
        id: &str,
        company: &str,
        when: &str,
        tags: &str,
        rating: Option<f64>,
    ) -> TagConversationRow {
        TagConversationRow {
            conversation_id: id.into(),
            created_at: crate::source::timestamp::parse(when, Tz::UTC).ok(),
            first_company_name: Some(company.to_lowercase()),
            topics: crate::intercom::topic_tags(tags),
            rating,
        }
    }

    fn window() -> Window {
        "range:2024-01-01..2024-06-30"
            .parse::<crate::intercom::window::WindowSpec>()
            .unwrap()
            .resolve(None, chrono::Utc::now(), Tz::UTC)
            .unwrap()
    }

    #[test]
    fn groups_come_from_free_tags_or_the_segment() {
        assert_eq!(
            groups_of(&company("a", "A", " churn watch ")),
            (true, false)
        );
        assert_eq!(
            groups_of(&company("a", "A", "segment:churn_watch")),
            (true, false)
        );
        assert_eq!(
            groups_of(&company("a", "A", "Expansion Target")),
            (false, true)
        );
        assert_eq!(
            groups_of(&company("a", "A", "segment:expansion, VIP")),
            (false, true)
        );
        assert_eq!(
            groups_of(&company("a", "A", "Churn Watch, Expansion Target")),
            (true, true)
        );
        assert_eq!(
            groups_of(&company("a", "A", "Churn Watcher, segment:renewal")),
            (false, false)
        );
    }

    #[test]
    fn shares_top_tags_and_gaps_by_hand() {
        let data = TagDriversData {
            companies: vec![
                company("r", "Risky", "Churn Watch"),
                company("e", "Grow", "Expansion Target"),
                company("b", "Both", "Churn Watch, Expansion Target"),
                company("n", "Neutral", "segment:renewal"),
            ],
            conversations: vec![
                conv(
                    "1",
                    "Risky",
                    "2024-02-01 10:00:00",
                    "Bug, Outage, first_response:bot",
                    Some(1.0),
                ),
                conv("2", "Risky", "2024-02-02 10:00:00", "Bug, Bug", Some(4.0)),
                conv("3", "Both", "2024-02-03 10:00:00", "Upgrade", None),
                conv(
                    "4",
                    "Grow",
                    "2024-02-04 10:00:00",
                    "Upgrade, Implementation",
                    Some(5.0),
                ),
                conv("5", "Neutral", "2024-02-05 10:00:00", "Bug", Some(1.0)),
                conv("6", "Risky", "2023-12-31 23:59:59", "Bug", Some(1.0)),
                conv("7", "Nobody", "2024-02-06 10:00:00", "Bug", None),
            ],
            metrics: vec![
                TagMetricsRow {
                    conversation_id: "1".into(),
                    response_minutes: Some(10.0),
                    reopens: Some(1),
                },
                TagMetricsRow {
                    conversation_id: "2".into(),
                    response_minutes: Some(20.0),
                    reopens: Some(0),
                },
                TagMetricsRow {
                    conversation_id: "3".into(),
                    response_minutes: None,
                    reopens: None,
                },
                TagMetricsRow {
                    conversation_id: "4".into(),
                    response_minutes: Some(40.0),
                    reopens: Some(2),
                },
            ],
            bad_timestamps: BadTimestamps::default(),
            rows_read: Vec::new(),
            mapping: Mapping::default(),
            outside_scope: None,
            prepared: Default::default(),
        };
        let r = compute(&data, window()).unwrap();
        assert_eq!(r.in_both_groups.len(), 1);
        assert_eq!(r.in_both_groups[0].0, "b");
        assert_eq!(
            (r.conversations_in_window, r.unmapped_conversations),
            (6, 1)
        );
        // At risk: Risky (2 conversations) + Both (1) = 3 conversations, 2 companies.
        let risk = &r.groups[0];
        assert_eq!((risk.companies, risk.conversations), (2, 3));
        assert_eq!(risk.conversations_per_company, Some(1.5));
        assert_eq!(
            risk.avg_rating,
            Some(2.5),
            "ratings 1 and 4; conversation 3 unrated"
        );
        assert_eq!(risk.share_rated_le2, Some(0.5));
        assert_eq!(
            risk.median_resp,
            Some(15.0),
            "10 and 20; conversation 3 has NULL"
        );
        assert_eq!(
            risk.reopen_rate,
            Some(1.0 / 3.0),
            "1 reopened of 3 with a metrics row"
        );
        // Expansion: Grow (1) + Both (1).
        let exp = &r.groups[1];
        assert_eq!((exp.companies, exp.conversations), (2, 2));
        assert_eq!(exp.reopen_rate, Some(0.5));
        // Bug is counted once per conversation; machine tags are not topics.
        let bug = r
            .shares
            .iter()
            .find(|s| s.group == AT_RISK && s.tag == "Bug")
            .unwrap();
        assert_eq!((bug.conversations, bug.share), (2, 2.0 / 3.0));
        assert!(!r.shares.iter().any(|s| s.tag.contains(':')));
        let upgrade = r.top.iter().find(|t| t.tag == "Upgrade").unwrap();
        assert_eq!(
            (upgrade.at_risk_share, upgrade.expansion_share),
            (1.0 / 3.0, 1.0)
        );
        assert!((upgrade.difference_pp - (-200.0 / 3.0)).abs() < 1e-9);
        assert_eq!(
            r.top.first().unwrap().tag,
            "Bug",
            "most over-represented at risk first"
        );
        // What the first window prepared serves the next: another window of the same
        // rows equals that window computed from rows nothing was prepared on.
        assert!(data.prepared.get().is_some());
        let early_february = "range:2024-02-01..2024-02-03"
            .parse::<crate::intercom::window::WindowSpec>()
            .unwrap()
            .resolve(None, chrono::Utc::now(), Tz::UTC)
            .unwrap();
        let fresh = TagDriversData {
            prepared: Default::default(),
            ..data.clone()
        };
        let shared = compute(&data, early_february).unwrap();
        assert_eq!(shared, compute(&fresh, early_february).unwrap());
        assert_ne!(shared, r, "a different window gives different numbers");
    }

    #[test]
    fn empty_denominators_are_null_and_empty_windows_fail() {
        let data = TagDriversData {
            companies: vec![company("r", "Risky", "Churn Watch")],
            conversations: vec![conv("1", "Risky", "2024-02-01 10:00:00", "", None)],
            metrics: vec![],
            bad_timestamps: BadTimestamps::default(),
            rows_read: Vec::new(),
            mapping: Mapping::default(),
            outside_scope: None,
            prepared: Default::default(),
        };
        let r = compute(&data, window()).unwrap();
        let exp = &r.groups[1];
        assert_eq!((exp.companies, exp.conversations), (0, 0));
        assert_eq!(
            (
                exp.avg_rating,
                exp.share_rated_le2,
                exp.median_resp,
                exp.reopen_rate
            ),
            (None, None, None, None)
        );
        assert_eq!(r.groups[0].reopen_rate, None, "no metrics row");
        let empty = "range:2020-01-01..2020-01-31"
            .parse::<crate::intercom::window::WindowSpec>()
            .unwrap()
            .resolve(None, chrono::Utc::now(), Tz::UTC)
            .unwrap();
        assert!(compute(&data, empty).is_err());
    }

    #[test]
    fn the_at_risk_group_splits_into_its_segment_and_its_tag_alone() {
        let p = at_risk_parts(
            [1, 2, 5, 7].into_iter(),
            |c| c % 2 == 1,
            &Mapping::default(),
        );
        assert_eq!((p.by_segment, p.by_tag_only), (3, 1));
        assert_eq!(p.tags, ["Churn Watch"]);
        assert_eq!(p.segments, ["churn_watch"]);
        // With the demo's rules: a company tagged Churn Watch in another segment is
        // at risk by the tag alone.
        let segment_only = Mapping {
            at_risk_tags: Vec::new(),
            ..Mapping::default()
        };
        assert!(
            !segment_only
                .groups_of(&company("a", "A", "Churn Watch, segment:renewal"))
                .0
        );
        assert!(
            segment_only
                .groups_of(&company("b", "B", "segment:churn_watch"))
                .0
        );
        assert!(groups_of(&company("a", "A", "Churn Watch, segment:renewal")).0);
    }
}
