//! The claims rules of `report-writing.md`, in one place for every report: when a
//! difference between two rates holds (a two-proportion test, Benjamini–Hochberg when
//! many are compared at once), when a cell may be called best or worst (events, not only
//! members, and a Wilson interval that excludes the overall rate), when a peer group
//! gives a target (large enough, better beyond doubt, reachable, worth at least one
//! member), how a cell-level and a company-level relationship are reconciled (and
//! whether a stratifying variable explains it), and how a printed difference is
//! computed (from the printed values); how large a pilot must be to show its target
//! (detectable change, companies per arm) and which lever a finding rules out.
//!
//! Pure functions: the reports feed their counts in and print what comes out.
//!
//! Since issue 27 also: when topic moves offset (a probable relabelling) and what a
//! rate reads in a later window that overlaps today's.
//!
//! Why this file is long (about 840 lines): the rules are one document's, and every
//! report must apply them alike, so they stay together where that document can be
//! read against them (a report that tested a difference its own way would print
//! claims the others would not); a third of the file is one test per rule, several
//! against known cases computed by hand.

use serde::Serialize;
use statrs::distribution::{ContinuousCDF, Normal, StudentsT};

/// The two-sided 95 % normal quantile.
pub const Z95: f64 = 1.959_963_984_540_054;
/// Significance level of a single planned comparison.
pub const ALPHA: f64 = 0.05;
/// False discovery rate when many cells or topics are compared at once.
pub const FDR_Q: f64 = 0.10;
/// Events a best or worst cell needs (e.g. converting companies).
pub const MIN_EVENTS: f64 = 5.0;

/// k of n: a rate with the count it rests on. `k` may be an effective (fractional)
/// count when the rate is a mean of per-member rates (retention proxies).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Proportion {
    pub k: f64,
    pub n: f64,
}

impl Proportion {
    /// `None` for an empty denominator: a rate that does not exist is not 0.
    pub fn new(k: usize, n: usize) -> Option<Self> {
        (n > 0).then_some(Self {
            k: k as f64,
            n: n as f64,
        })
    }

    /// A rate over `n` members (effective k = rate × n).
    pub fn from_rate(rate: Option<f64>, n: usize) -> Option<Self> {
        let rate = rate.filter(|r| r.is_finite())?;
        (n > 0).then_some(Self {
            k: rate.clamp(0.0, 1.0) * n as f64,
            n: n as f64,
        })
    }

    pub fn rate(&self) -> f64 {
        self.k / self.n
    }

    /// Wilson score interval at 95 %.
    pub fn wilson(&self) -> (f64, f64) {
        let (n, p, z2) = (self.n, self.rate(), Z95 * Z95);
        let centre = (p + z2 / (2.0 * n)) / (1.0 + z2 / n);
        let half = Z95 / (1.0 + z2 / n) * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt();
        ((centre - half).max(0.0), (centre + half).min(1.0))
    }

    /// The union of two groups (a peer group made of several cells).
    pub fn plus(self, o: Self) -> Self {
        Self {
            k: self.k + o.k,
            n: self.n + o.n,
        }
    }
}

/// Two-sided p-value of the pooled two-proportion z-test; 1 when the pooled rate is 0
/// or 1 (no variance: nothing to tell apart).
pub fn two_proportion_p(a: Proportion, b: Proportion) -> f64 {
    let pooled = (a.k + b.k) / (a.n + b.n);
    let se = (pooled * (1.0 - pooled) * (1.0 / a.n + 1.0 / b.n)).sqrt();
    if se.is_nan() || se <= 0.0 {
        return 1.0;
    }
    let z = (a.rate() - b.rate()).abs() / se;
    2.0 * (1.0 - standard_normal().cdf(z))
}

fn standard_normal() -> Normal {
    // Mean 0, sd 1 are valid parameters: the constructor cannot fail.
    Normal::standard()
}

/// What a comparison allows a report to say.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Higher,
    Lower,
    NoClearDifference,
}

impl Verdict {
    pub fn holds(self) -> bool {
        self != Verdict::NoClearDifference
    }

    fn of(a: f64, b: f64, significant: bool) -> Self {
        match (significant, a.partial_cmp(&b)) {
            (true, Some(std::cmp::Ordering::Greater)) => Verdict::Higher,
            (true, Some(std::cmp::Ordering::Less)) => Verdict::Lower,
            _ => Verdict::NoClearDifference,
        }
    }

    /// `higher` for a difference that holds upwards, `otherwise` for any other verdict
    /// (the words a finding uses for its direction).
    pub fn if_higher<T>(self, higher: T, otherwise: T) -> T {
        if self == Verdict::Higher {
            higher
        } else {
            otherwise
        }
    }

    /// The key templates translate ("higher", "lower", "no_clear_difference").
    pub fn key(self) -> &'static str {
        match self {
            Verdict::Higher => "higher",
            Verdict::Lower => "lower",
            Verdict::NoClearDifference => "no_clear_difference",
        }
    }
}

/// One planned comparison of `a` against `b` at [`ALPHA`].
pub fn compare(a: Proportion, b: Proportion) -> Verdict {
    Verdict::of(a.rate(), b.rate(), two_proportion_p(a, b) < ALPHA)
}

/// Many comparisons at once (cells, segments, topics): each `a` against its `b`, with
/// the false discovery rate controlled at [`FDR_Q`] (Benjamini–Hochberg).
pub fn compare_many(pairs: &[(Proportion, Proportion)]) -> Vec<Verdict> {
    let p: Vec<f64> = pairs
        .iter()
        .map(|(a, b)| two_proportion_p(*a, *b))
        .collect();
    let keep = benjamini_hochberg(&p, FDR_Q);
    pairs
        .iter()
        .zip(keep)
        .map(|((a, b), k)| Verdict::of(a.rate(), b.rate(), k))
        .collect()
}

/// Which hypotheses Benjamini–Hochberg rejects at false discovery rate `q`.
pub fn benjamini_hochberg(p: &[f64], q: f64) -> Vec<bool> {
    let m = p.len();
    let mut order: Vec<usize> = (0..m).collect();
    order.sort_by(|&a, &b| p[a].total_cmp(&p[b]));
    // The largest rank i with p(i) ≤ i/m·q; every hypothesis up to it is rejected.
    let cut = order
        .iter()
        .enumerate()
        .rev()
        .find(|(i, &j)| p[j] <= (i + 1) as f64 / m as f64 * q)
        .map(|(i, _)| i + 1)
        .unwrap_or(0);
    let mut out = vec![false; m];
    for &j in &order[..cut] {
        out[j] = true;
    }
    out
}

/// Mean, variance and size of a sample, for Welch's test on means.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Moments {
    pub n: f64,
    pub mean: f64,
    pub var: f64,
}

impl Moments {
    /// `None` under two values (no variance estimate).
    pub fn of(values: impl IntoIterator<Item = f64>) -> Option<Self> {
        let (mut n, mut mean, mut m2) = (0.0, 0.0, 0.0);
        for v in values {
            n += 1.0;
            let d = v - mean;
            mean += d / n;
            m2 += d * (v - mean);
        }
        (n >= 2.0).then(|| Self {
            n,
            mean,
            var: m2 / (n - 1.0),
        })
    }
}

/// Two-sided p-value of Welch's t-test; 1 when both samples have no variance and equal
/// means.
pub fn welch_p(a: Moments, b: Moments) -> f64 {
    let (va, vb) = (a.var / a.n, b.var / b.n);
    let se = (va + vb).sqrt();
    if se <= 0.0 || se.is_nan() {
        return if a.mean == b.mean { 1.0 } else { 0.0 };
    }
    let t = (a.mean - b.mean).abs() / se;
    let df = (va + vb).powi(2) / (va * va / (a.n - 1.0) + vb * vb / (b.n - 1.0));
    match StudentsT::new(0.0, 1.0, df) {
        Ok(d) => 2.0 * (1.0 - d.cdf(t)),
        Err(_) => 1.0,
    }
}

/// Welch's verdict on two means at [`ALPHA`].
pub fn compare_means(a: Moments, b: Moments) -> Verdict {
    Verdict::of(a.mean, b.mean, welch_p(a, b) < ALPHA)
}

/// A difference of means that holds a third variable fixed: per stratum the two
/// groups' samples and the stratum's weight (e.g. how many members of the group an
/// action would reach). Returns the weighted difference and its two-sided p-value
/// (normal approximation); `None` when no stratum has both samples. This is how a
/// lift is checked against a confounder such as the plan a user is on.
pub fn stratified_difference(strata: &[(Moments, Moments, f64)]) -> Option<(f64, f64)> {
    let total: f64 = strata.iter().map(|s| s.2).sum();
    if strata.is_empty() || total <= 0.0 {
        return None;
    }
    let (mut diff, mut var) = (0.0, 0.0);
    for (a, b, w) in strata {
        let w = w / total;
        diff += w * (a.mean - b.mean);
        var += w * w * (a.var / a.n + b.var / b.n);
    }
    let se = var.sqrt();
    let p = if se > 0.0 {
        let z = diff.abs() / se;
        2.0 * (1.0 - Normal::new(0.0, 1.0).map_or(1.0, |d| d.cdf(z)))
    } else if diff == 0.0 {
        1.0
    } else {
        0.0
    };
    Some((diff, p))
}

/// Two-sided p-value of the sign test: `k` of `m` paired comparisons went one way,
/// against an even chance (exact binomial). How a pattern repeated across strata
/// (e.g. tertiles within each segment × ARR group) is told from chance.
pub fn sign_test_p(k: usize, m: usize) -> f64 {
    if m == 0 {
        return 1.0;
    }
    let Ok(b) = statrs::distribution::Binomial::new(0.5, m as u64) else {
        return 1.0;
    };
    use statrs::distribution::DiscreteCDF;
    let extreme = k.min(m - k) as u64;
    (2.0 * b.cdf(extreme)).min(1.0)
}

/// Two-sided p-value that two counts of events come from the same rate, given the
/// exposure each was counted over (e.g. conversations in two windows of `t1` and `t2`
/// days): the conditional binomial test, exact. 1 when there are no events.
pub fn count_rate_p(k1: usize, t1: f64, k2: usize, t2: f64) -> f64 {
    let n = (k1 + k2) as u64;
    if n == 0 || t1 <= 0.0 || t2 <= 0.0 {
        return 1.0;
    }
    let Ok(b) = statrs::distribution::Binomial::new(t1 / (t1 + t2), n) else {
        return 1.0;
    };
    use statrs::distribution::DiscreteCDF;
    let k = k1 as u64;
    let below = b.cdf(k);
    let above = if k == 0 { 1.0 } else { 1.0 - b.cdf(k - 1) };
    (2.0 * below.min(above)).min(1.0)
}

/// Two-sided p-value of a Pearson r over n pairs (t with n − 2 degrees of freedom).
pub fn correlation_p(r: f64, n: usize) -> f64 {
    if n < 3 {
        return 1.0;
    }
    if r.abs() >= 1.0 {
        return 0.0;
    }
    let df = (n - 2) as f64;
    let t = r.abs() * (df / (1.0 - r * r)).sqrt();
    match StudentsT::new(0.0, 1.0, df) {
        Ok(d) => 2.0 * (1.0 - d.cdf(t)),
        Err(_) => 1.0,
    }
}

/// The cells a report may call best and worst: among cells whose rate holds against
/// the overall rate (Wilson interval excluding it), a best cell also needs
/// [`MIN_EVENTS`] events, a worst cell a size at which the overall rate would give that
/// many. Indices into `cells`; `None` where no cell qualifies.
pub fn standouts(cells: &[Proportion], overall: Proportion) -> (Option<usize>, Option<usize>) {
    let o = overall.rate();
    let best = cells
        .iter()
        .enumerate()
        .filter(|(_, c)| c.k >= MIN_EVENTS && c.wilson().0 > o)
        .max_by(|a, b| a.1.rate().total_cmp(&b.1.rate()))
        .map(|(i, _)| i);
    let worst = cells
        .iter()
        .enumerate()
        .filter(|(_, c)| c.n * o >= MIN_EVENTS && c.wilson().1 < o)
        .min_by(|a, b| a.1.rate().total_cmp(&b.1.rate()))
        .map(|(i, _)| i);
    (best, worst)
}

/// A target a group can be held to, from a peer group that reaches it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Target {
    /// The rate to aim for: the lower end of the peers' Wilson interval (higher is
    /// better) or its upper end (lower is better): a value the peers reach.
    pub value: f64,
    pub current: Proportion,
    pub peers: Proportion,
    /// Members of the group the move would change (at least one).
    pub members_moved: f64,
}

/// The target for `current` from `peers`, or `None` when the peers give none: fewer
/// than `min_peers` members, not better beyond doubt, or a move worth less than one
/// member of the group.
pub fn peer_target(
    current: Proportion,
    peers: Proportion,
    min_peers: usize,
    higher_is_better: bool,
) -> Option<Target> {
    if peers.n < min_peers as f64 {
        return None;
    }
    let better = if higher_is_better {
        Verdict::Higher
    } else {
        Verdict::Lower
    };
    if compare(peers, current) != better {
        return None;
    }
    let (lo, hi) = peers.wilson();
    let value = if higher_is_better {
        lo.max(current.rate()).min(peers.rate())
    } else {
        hi.min(current.rate()).max(peers.rate())
    };
    let members_moved = ((value - current.rate()) * current.n).abs();
    (members_moved >= 1.0).then_some(Target {
        value,
        current,
        peers,
        members_moved,
    })
}

/// How two levels of one relationship (cells and companies, or overall and within
/// strata) read together.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reading {
    /// Both hold with the same sign.
    Consistent,
    /// Only the broader (cell) level holds: a pattern across groups, not within them.
    GroupsOnly,
    /// Only the finer level holds.
    MembersOnly,
    /// Both hold with opposite signs.
    Opposite,
    /// Neither holds.
    None,
}

impl Reading {
    pub fn key(self) -> &'static str {
        match self {
            Reading::Consistent => "consistent",
            Reading::GroupsOnly => "groups_only",
            Reading::MembersOnly => "members_only",
            Reading::Opposite => "opposite",
            Reading::None => "none",
        }
    }
}

/// A correlation with what the rules allow: it holds when its p-value is under `alpha`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Relationship {
    pub r: f64,
    pub n: usize,
    pub p: f64,
    pub holds: bool,
}

impl Relationship {
    pub fn of(r: Option<f64>, n: usize) -> Option<Self> {
        let r = r?;
        let p = correlation_p(r, n);
        Some(Self {
            r,
            n,
            p,
            holds: p < ALPHA,
        })
    }
}

/// The reconciled reading of a relationship seen at two levels.
pub fn reconcile(groups: Option<Relationship>, members: Option<Relationship>) -> Reading {
    let holds = |x: Option<Relationship>| x.filter(|x| x.holds);
    match (holds(groups), holds(members)) {
        (Some(g), Some(m)) if g.r.signum() == m.r.signum() => Reading::Consistent,
        (Some(_), Some(_)) => Reading::Opposite,
        (Some(_), None) => Reading::GroupsOnly,
        (None, Some(_)) => Reading::MembersOnly,
        (None, None) => Reading::None,
    }
}

/// Pearson r after removing each stratum's means (the relationship within strata):
/// whether a confounder such as account size explains an overall correlation. Points
/// are (stratum, x, y); strata with one point carry no within-stratum information.
pub fn within_strata_correlation<S: PartialEq + Copy>(
    points: &[(S, f64, f64)],
) -> Option<Relationship> {
    let mut strata: Vec<(S, f64, f64, usize)> = Vec::new();
    for &(s, x, y) in points {
        match strata.iter_mut().find(|t| t.0 == s) {
            Some(t) => {
                t.1 += x;
                t.2 += y;
                t.3 += 1;
            }
            None => strata.push((s, x, y, 1)),
        }
    }
    let centred: Vec<(f64, f64)> = points
        .iter()
        .filter_map(|&(s, x, y)| {
            let t = strata.iter().find(|t| t.0 == s)?;
            (t.3 > 1).then(|| (x - t.1 / t.3 as f64, y - t.2 / t.3 as f64))
        })
        .collect();
    let kept_strata = strata.iter().filter(|t| t.3 > 1).count();
    let c = super::correlation(|| centred.iter().copied());
    // Each stratum's mean uses up a degree of freedom.
    let n = c.n.saturating_sub(kept_strata.saturating_sub(1));
    Relationship::of(c.r, n)
}

/// The difference of two values as printed with `decimals` after scaling by `scale`
/// (100 for percentages): a reader who subtracts the printed values gets this number.
pub fn printed_difference(a: f64, b: f64, scale: f64, decimals: i32) -> f64 {
    (printed(a, scale, decimals) - printed(b, scale, decimals)) / scale
}

/// `v × scale` rounded as the formatter prints it (`{:.N}`, on the exact binary
/// value): one rounding path for cells, labels and differences, so that 0.3315
/// prints 33.1 % everywhere (`(v * 1000).round()` would make it 33.2 % in one place).
pub fn printed(v: f64, scale: f64, decimals: i32) -> f64 {
    let d = decimals.max(0) as usize;
    let x = v * scale;
    format!("{x:.d$}").parse::<f64>().unwrap_or(x)
}

/// A count derived from two printed rates of one group of `n` ("about N more
/// active users"): `n` × the printed difference, so that a reader who multiplies
/// the printed rates gets the printed count.
pub fn derived_count(n: f64, to: f64, from: f64, scale: f64, decimals: i32) -> f64 {
    (n * printed_difference(to, from, scale, decimals)).round()
}

// Actions against findings (issue 27): a recommendation pulls a lever; a finding may
// say that lever does not explain the gap the action is meant to close.

/// What a finding says of one lever (a cause an action would act through).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeverReading {
    /// The finding's test holds through the lever (a difference that stays once the
    /// lever's confounders are held fixed).
    Explains,
    /// The finding says the lever does not explain the gap (no clear difference
    /// along it, or the gap disappears once it is held fixed).
    DoesNotExplain,
}

/// The first finding (by index into `readings`) that argues against an action
/// pulling `lever`: the pair may not stand on one page, so the action is refused.
/// `None` when no finding rejects the lever.
pub fn refusing_finding(lever: &str, readings: &[(&str, LeverReading)]) -> Option<usize> {
    readings
        .iter()
        .position(|(l, r)| *l == lever && *r == LeverReading::DoesNotExplain)
}

// ---------------------------------------------------------------- targets and pilots (issue 27)

/// z of a two-sided 5 % test plus z of 80 % power.
pub const Z_TEST_POWER: f64 = Z95 + 0.841_621_233_572_914;

/// The smallest difference from a rate near `p` that a two-sided 5 % test between
/// groups of `n1` and `n2` members detects with 80 % power (normal approximation);
/// `None` for an empty group.
pub fn detectable_difference(p: f64, n1: f64, n2: f64) -> Option<f64> {
    (n1 > 0.0 && n2 > 0.0).then(|| Z_TEST_POWER * (p * (1.0 - p) * (1.0 / n1 + 1.0 / n2)).sqrt())
}

/// Members each of two equal arms needs for a 5 % test to detect `from` → `to` with
/// 80 % power; `None` when the rates do not differ.
pub fn members_per_arm(from: f64, to: f64) -> Option<f64> {
    let d = (to - from).abs();
    (d > 0.0).then(|| {
        (Z_TEST_POWER * Z_TEST_POWER * (from * (1.0 - from) + to * (1.0 - to)) / (d * d)).ceil()
    })
}

/// How a pilot compares the accounts that receive an action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PilotDesign {
    /// Half the accounts at random, the other half as comparison group.
    Halves,
    /// Every account receives the action; matched peers are the comparison group.
    AllAgainstPeers,
}

impl PilotDesign {
    pub fn key(self) -> &'static str {
        match self {
            PilotDesign::Halves => "halves",
            PilotDesign::AllAgainstPeers => "all_against_peers",
        }
    }
}

/// A pilot sized for its target: the design, its groups, the change it can detect and
/// whether that covers the target's change.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct PilotSizing {
    pub design: PilotDesign,
    pub treated: f64,
    pub comparison: f64,
    /// The target's change (target − current, as a magnitude).
    pub effect: f64,
    pub detectable: f64,
    /// The design can show the target's change (detectable ≤ effect).
    pub shows: bool,
    /// Members per arm two equal arms would need to show the target's change.
    pub needed_per_arm: f64,
}

/// The pilot for moving `group` members from `current` to `target`: random halves when
/// they can show the change, else every member against `peers` matched members (the
/// larger comparison the data offers), which may still be too small (`shows` false).
/// `effect` is the change as printed, so that the text and the test read one number.
pub fn size_pilot(current: f64, effect: f64, group: f64, peers: f64) -> Option<PilotSizing> {
    let effect = effect.abs();
    if effect <= 0.0 || group < 2.0 {
        return None;
    }
    let target = if current + effect <= 1.0 {
        current + effect
    } else {
        current - effect
    };
    let needed_per_arm = members_per_arm(current, target)?;
    let arm = (group / 2.0).floor();
    let halves = detectable_difference(current, arm, arm)?;
    let sizing = |design, treated, comparison, detectable: f64| PilotSizing {
        design,
        treated,
        comparison,
        effect,
        detectable,
        shows: detectable <= effect,
        needed_per_arm,
    };
    if halves <= effect || peers <= 0.0 {
        return Some(sizing(PilotDesign::Halves, arm, arm, halves));
    }
    let all = detectable_difference(current, group, peers)?;
    Some(if all < halves {
        sizing(PilotDesign::AllAgainstPeers, group, peers, all)
    } else {
        sizing(PilotDesign::Halves, arm, arm, halves)
    })
}

/// The lever a recommendation pulls, and the levers a finding says do not explain
/// the gap it targets: a recommendation is refused when its lever is among them (the
/// report would argue against its own action).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Lever {
    ResponseSpeed,
    BotHandling,
    AccountCare,
    NextStep,
}

pub fn lever_refused(lever: Lever, not_explaining: &[Lever]) -> bool {
    not_explaining.contains(&lever)
}

#[cfg(test)]
mod sizing_tests {
    use super::*;

    #[test]
    fn detectable_difference_of_two_arms_of_seventy() {
        // 2.8016 × √(0.25 × 2 / 70) = 0.2368.
        let d = detectable_difference(0.5, 70.0, 70.0).unwrap();
        assert!((d - 0.2368).abs() < 1e-3, "{d}");
        assert_eq!(detectable_difference(0.5, 0.0, 70.0), None);
    }

    #[test]
    fn members_per_arm_by_hand() {
        // 0.576 → 0.658: 7.849 × (0.2442 + 0.2250) / 0.082² = 548 per arm.
        assert_eq!(members_per_arm(0.576, 0.658), Some(548.0));
        assert_eq!(members_per_arm(0.5, 0.5), None);
        // The rule is symmetric.
        assert_eq!(members_per_arm(0.658, 0.576), Some(548.0));
    }

    #[test]
    fn a_pilot_too_small_for_its_target_says_so() {
        let s = size_pilot(0.576, 0.082, 140.0, 436.0).unwrap();
        assert_eq!(s.design, PilotDesign::AllAgainstPeers);
        assert!(!s.shows);
        assert!(s.detectable > s.effect);
        assert_eq!(s.needed_per_arm, 548.0);
        // √(0.2442 × (1/140 + 1/436)) × 2.8016 ≈ 0.134.
        assert!((s.detectable - 0.134).abs() < 1e-3, "{}", s.detectable);
    }

    #[test]
    fn halves_are_kept_when_they_show_the_change() {
        let s = size_pilot(0.5, 0.2, 400.0, 1000.0).unwrap();
        assert_eq!(s.design, PilotDesign::Halves);
        assert!(s.shows && s.detectable <= s.effect);
        assert_eq!(s.treated, 200.0);
        assert!(size_pilot(0.5, 0.0, 400.0, 10.0).is_none());
        assert!(size_pilot(0.5, 0.1, 1.0, 10.0).is_none());
    }

    #[test]
    fn a_lever_the_findings_rule_out_is_refused() {
        assert!(lever_refused(Lever::ResponseSpeed, &[Lever::ResponseSpeed]));
        assert!(!lever_refused(Lever::AccountCare, &[Lever::ResponseSpeed]));
        assert!(!lever_refused(Lever::ResponseSpeed, &[]));
    }
}

// Offsetting moves (issue 27): two topics whose shares move in opposite directions
// while their sum stays put are one relabelling, not two pieces of news.

/// One item's share (a topic's conversations of a group's) in both periods, and
/// whether its own change holds under the report's rules.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Move {
    pub now: Proportion,
    pub then: Proportion,
    pub holds: bool,
}

impl Move {
    fn change(&self) -> f64 {
        self.now.rate() - self.then.rate()
    }
}

/// Two moves that offset: indices into the moves, the falling one first, with their
/// sum in both periods and the p-value of the sum's change.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Offset {
    pub fall: usize,
    pub rise: usize,
    pub now: Proportion,
    pub then: Proportion,
    pub p: f64,
}

/// The pairs of `moves` (of one group, over the same denominators) that offset: one
/// move holds, the other goes the opposite way, their summed change is at most half
/// of the larger move, and the sum, tested as one proportion, does not change beyond
/// chance (Benjamini–Hochberg at [`FDR_Q`] across the pairs tested: a pair whose sum
/// is a discovery is a real change, not an offset). Each item belongs to one pair at
/// most, the closest offsets first. A sum is capped at its denominator (an item
/// counted under both topics counts twice).
pub fn offsetting_pairs(moves: &[Move]) -> Vec<Offset> {
    let sum = |a: Proportion, b: Proportion| Proportion {
        k: (a.k + b.k).min(a.n),
        n: a.n,
    };
    let mut candidates: Vec<Offset> = Vec::new();
    for (i, a) in moves.iter().enumerate() {
        for (j, b) in moves.iter().enumerate().skip(i + 1) {
            let (da, db) = (a.change(), b.change());
            let opposite = da * db < 0.0;
            if !opposite || !(a.holds || b.holds) || (da + db).abs() > da.abs().max(db.abs()) / 2.0
            {
                continue;
            }
            let (fall, rise) = if da < 0.0 { (i, j) } else { (j, i) };
            let (now, then) = (sum(a.now, b.now), sum(a.then, b.then));
            candidates.push(Offset {
                fall,
                rise,
                now,
                then,
                p: two_proportion_p(now, then),
            });
        }
    }
    let p: Vec<f64> = candidates.iter().map(|c| c.p).collect();
    let changed = benjamini_hochberg(&p, FDR_Q);
    let mut kept: Vec<Offset> = candidates
        .into_iter()
        .zip(changed)
        .filter(|(_, changed)| !changed)
        .map(|(c, _)| c)
        .collect();
    let drift = |c: &Offset| (c.now.rate() - c.then.rate()).abs();
    kept.sort_by(|a, b| drift(a).total_cmp(&drift(b)));
    let mut out: Vec<Offset> = Vec::new();
    for c in kept {
        if !out.iter().any(|o| {
            [o.fall, o.rise]
                .iter()
                .any(|x| *x == c.fall || *x == c.rise)
        }) {
            out.push(c);
        }
    }
    out
}

/// What a rate reads in a later window that still holds `overlap` (0–1) of today's:
/// today's rate on the part it shares, `new` on the rest (volumes assumed steady). A
/// target for that window is reachable only at or above this with `new` = 0.
pub fn rate_in_overlapping_window(current: f64, new: f64, overlap: f64) -> f64 {
    let o = overlap.clamp(0.0, 1.0);
    o * current + (1.0 - o) * new
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(k: usize, n: usize) -> Proportion {
        Proportion::new(k, n).unwrap()
    }

    #[test]
    fn one_of_fifty_against_one_of_twenty_is_no_difference() {
        // The "lift conversion from 2.0 % to 5.0 %".
        assert_eq!(compare(p(1, 20), p(1, 50)), Verdict::NoClearDifference);
        assert!(peer_target(p(1, 50), p(1, 20), 20, true).is_none());
    }

    #[test]
    fn large_differences_hold_and_direction_is_kept() {
        assert_eq!(compare(p(80, 100), p(50, 100)), Verdict::Higher);
        assert_eq!(compare(p(50, 100), p(80, 100)), Verdict::Lower);
        // Known value: 45/100 vs 30/100, pooled z = 2.183, p = 0.029.
        assert!((two_proportion_p(p(45, 100), p(30, 100)) - 0.029).abs() < 0.001);
    }

    #[test]
    fn wilson_matches_a_known_interval() {
        // 2 of 27 (the "best" 7.4 % cell): 95 % Wilson [0.0205, 0.2334].
        let (lo, hi) = p(2, 27).wilson();
        assert!((lo - 0.0205).abs() < 0.0005, "{lo}");
        assert!((hi - 0.2334).abs() < 0.0005, "{hi}");
        let (lo, hi) = p(0, 10).wilson();
        assert_eq!(lo, 0.0);
        assert!(hi > 0.2);
    }

    #[test]
    fn a_best_cell_needs_events_and_an_interval_excluding_overall() {
        let overall = p(69, 2_299); // 3.0 %
                                    // 2 of 27 (7.4 %): too few events. 12 of 60 (20 %): holds. 1 of 20: neither.
        let cells = [p(2, 27), p(12, 60), p(1, 20), p(0, 400)];
        let (best, worst) = standouts(&cells, overall);
        assert_eq!(best, Some(1));
        // 0 of 400 excludes 3 % from above and 400 × 3 % ≥ 5 expected events.
        assert_eq!(worst, Some(3));
        let (best, worst) = standouts(&cells[..1], overall);
        assert_eq!((best, worst), (None, None));
    }

    #[test]
    fn benjamini_hochberg_known_case() {
        // m = 5, q = 0.10: thresholds 0.02, 0.04, 0.06, 0.08, 0.10.
        // Sorted 0.01, 0.03, 0.07, 0.2, 0.5: 0.07 > 0.06 stops at rank 2.
        let keep = benjamini_hochberg(&[0.01, 0.5, 0.03, 0.07, 0.2], FDR_Q);
        assert_eq!(keep, [true, false, true, false, false]);
        // Step-up: 0.075 at rank 4 (≤ 0.08) carries rank 3's 0.07 with it.
        let keep = benjamini_hochberg(&[0.01, 0.5, 0.03, 0.07, 0.075], FDR_Q);
        assert_eq!(keep, [true, false, true, true, true]);
        assert!(benjamini_hochberg(&[0.2, 0.3], FDR_Q).iter().all(|k| !k));
        assert!(benjamini_hochberg(&[], FDR_Q).is_empty());
    }

    #[test]
    fn many_small_differences_do_not_survive_the_correction() {
        // Each 36/100 vs 30/100 alone is p ≈ 0.37: none holds, corrected or not.
        let pairs = vec![(p(36, 100), p(30, 100)); 10];
        assert!(compare_many(&pairs).iter().all(|v| !v.holds()));
        let mut pairs = pairs;
        pairs.push((p(90, 100), p(30, 100)));
        let v = compare_many(&pairs);
        assert_eq!(v.last(), Some(&Verdict::Higher));
        assert_eq!(v.iter().filter(|v| v.holds()).count(), 1);
    }

    #[test]
    fn targets_come_from_trustworthy_peers_and_are_reachable() {
        let current = p(400, 700); // 57.1 %
                                   // Peers too small: none.
        assert!(peer_target(current, p(15, 19), 20, true).is_none());
        // Peers large and better: the lower end of their interval, not above their rate.
        let t = peer_target(current, p(700, 1_000), 20, true).unwrap();
        let (lo, _) = p(700, 1_000).wilson();
        assert!((t.value - lo).abs() < 1e-12 && t.value <= 0.7 && t.value > current.rate());
        assert!(t.members_moved >= 1.0);
        // Peers no better: none (never the average applied to a group no peer reaches).
        assert!(peer_target(current, p(560, 1_000), 20, true).is_none());
        // Lower is better (response-like rates): the upper end of the peers' interval.
        let t = peer_target(p(300, 700), p(300, 1_000), 20, false).unwrap();
        assert!(t.value < 300.0 / 700.0 && t.value >= 0.3);
    }

    #[test]
    fn a_target_worth_less_than_one_member_is_none() {
        // +0.1 pp on 20 companies is 0.02 of a company.
        let current = Proportion::from_rate(Some(0.575), 20).unwrap();
        let peers = Proportion::from_rate(Some(0.576), 100_000).unwrap();
        assert!(peer_target(current, peers, 20, true).is_none());
    }

    #[test]
    fn printed_differences_equal_the_difference_of_printed_values() {
        // 3.33 % and 2.66 % print as 3.3 % and 2.7 %: the gap prints as 0.6, not 0.7.
        let d = printed_difference(0.0333, 0.0266, 100.0, 1);
        assert!((d * 100.0 - 0.6).abs() < 1e-9, "{d}");
        // Minutes with one decimal.
        assert!((printed_difference(26.94, 24.66, 1.0, 1) - 2.2).abs() < 1e-9);
    }

    #[test]
    fn welch_on_means() {
        let a = Moments::of([25.0, 26.0, 24.0, 25.5, 24.5]).unwrap();
        let b = Moments::of([25.2, 25.8, 24.1, 25.0, 24.9]).unwrap();
        assert_eq!(compare_means(a, b), Verdict::NoClearDifference);
        let c = Moments::of([35.0, 36.0, 34.0, 35.5, 34.5]).unwrap();
        assert_eq!(compare_means(c, a), Verdict::Higher);
        assert!(Moments::of([1.0]).is_none());
    }

    #[test]
    fn correlations_and_their_reconciliation() {
        // r = 0.18 over 58 cells: p ≈ 0.18, does not hold; r = −0.78 over 58 holds.
        let weak = Relationship::of(Some(0.18), 58).unwrap();
        assert!(!weak.holds && (weak.p - 0.176).abs() < 0.01, "{}", weak.p);
        let strong = Relationship::of(Some(-0.78), 58).unwrap();
        assert!(strong.holds);
        let companies = Relationship::of(Some(0.0), 2_000);
        // The contradiction: cells +0.18, companies 0.00 → nothing holds.
        assert_eq!(reconcile(Some(weak), companies), Reading::None);
        assert_eq!(reconcile(Some(strong), companies), Reading::GroupsOnly);
        let opposite = Relationship::of(Some(0.2), 2_000);
        assert_eq!(reconcile(Some(strong), opposite), Reading::Opposite);
        let same = Relationship::of(Some(-0.2), 2_000);
        assert_eq!(reconcile(Some(strong), same), Reading::Consistent);
        assert_eq!(reconcile(None, same), Reading::MembersOnly);
    }

    #[test]
    fn stratifying_removes_a_confounded_correlation() {
        // y depends on the stratum only; x too: overall r is strong, within strata 0.
        let mut pts = Vec::new();
        for s in 0..4u8 {
            for i in 0..10 {
                let noise = if i % 2 == 0 { 0.01 } else { -0.01 };
                let noise2 = if i % 3 == 0 { 0.01 } else { -0.005 };
                pts.push((s, f64::from(s) + noise, -f64::from(s) + noise2));
            }
        }
        let all = crate::stats::correlation(|| pts.iter().map(|p| (p.1, p.2)));
        assert!(all.r.unwrap() < -0.9);
        let within = within_strata_correlation(&pts).unwrap();
        assert!(!within.holds, "{within:?}");
        // A real within-stratum relationship survives.
        let pts: Vec<(u8, f64, f64)> = (0..40)
            .map(|i| {
                (
                    (i % 4) as u8,
                    f64::from(i),
                    -f64::from(i) * 2.0 + f64::from(i % 3),
                )
            })
            .collect();
        assert!(within_strata_correlation(&pts).unwrap().holds);
    }

    #[test]
    fn a_lift_made_by_the_mix_vanishes_within_strata() {
        let m = |n: f64, mean: f64, var: f64| Moments { n, mean, var };
        // Cheap plan: both groups average 400; dear plan: both 13,000. Trained users sit
        // mostly on the dear plan, so the raw means differ by thousands.
        let strata = [
            (m(100.0, 400.0, 1e4), m(900.0, 400.0, 1e4), 900.0),
            (m(300.0, 13_000.0, 1e6), m(100.0, 13_000.0, 1e6), 100.0),
        ];
        let (diff, p) = stratified_difference(&strata).unwrap();
        assert_eq!(diff, 0.0);
        assert!(p > ALPHA);
        // A lift inside every stratum holds, weighted by the strata's weights.
        let strata = [
            (m(100.0, 500.0, 1e4), m(900.0, 400.0, 1e4), 900.0),
            (m(300.0, 13_500.0, 1e6), m(100.0, 13_000.0, 1e6), 100.0),
        ];
        let (diff, p) = stratified_difference(&strata).unwrap();
        assert!((diff - (0.9 * 100.0 + 0.1 * 500.0)).abs() < 1e-9);
        assert!(p < ALPHA);
        assert_eq!(stratified_difference(&[]), None);
    }

    #[test]
    fn sign_test_by_hand() {
        // 9 of 10 one way: 2 × 11/1024.
        assert!((sign_test_p(9, 10) - 22.0 / 1024.0).abs() < 1e-12);
        assert!((sign_test_p(1, 10) - 22.0 / 1024.0).abs() < 1e-12);
        assert_eq!(sign_test_p(5, 10), 1.0);
        assert_eq!(sign_test_p(0, 0), 1.0);
        assert!(sign_test_p(14, 20) > ALPHA, "14 of 20 can be chance");
        assert!(sign_test_p(16, 20) < ALPHA);
    }

    #[test]
    fn count_rates_over_equal_and_unequal_exposure() {
        // 100 against 100 over equal time: no difference.
        assert!(count_rate_p(100, 30.0, 100, 30.0) > 0.9);
        // 150 against 100: holds.
        assert!(count_rate_p(150, 30.0, 100, 30.0) < 0.01);
        // The same 150 against 100 over 45 against 30 days is the same rate.
        assert!(count_rate_p(150, 45.0, 100, 30.0) > 0.9);
        assert_eq!(count_rate_p(0, 30.0, 0, 30.0), 1.0);
    }

    #[test]
    fn an_action_whose_lever_a_finding_rejects_is_refused() {
        // The issue's pair: a faster-first-response tier beside "service speed does
        // not explain the gaps".
        let readings = [
            ("engagement", LeverReading::Explains),
            ("service_speed", LeverReading::DoesNotExplain),
        ];
        assert_eq!(refusing_finding("service_speed", &readings), Some(1));
        assert_eq!(refusing_finding("engagement", &readings), None);
        assert_eq!(refusing_finding("training", &readings), None);
        assert_eq!(refusing_finding("training", &[]), None);
    }

    #[test]
    fn one_rounding_path_for_cells_and_differences() {
        // 3,315 of 10,000 prints 33.1 % (the binary value is just under 33.15).
        assert_eq!(format!("{:.1}", 0.3315 * 100.0), "33.1");
        assert_eq!(printed(0.3315, 100.0, 1), 33.1);
        // 76.3 % − 68.2 % is 8.1 pp, though the raw gap rounds to 8.2.
        let d = printed_difference(0.76259, 0.68183, 100.0, 1);
        assert!((d * 100.0 - 8.1).abs() < 1e-9, "{d}");
        // 1,286 users from 46.7 % to 71.1 %: 1,286 × 24.4 % = 313.8.
        assert_eq!(derived_count(1_286.0, 0.7108, 0.4673, 100.0, 1), 314.0);
        assert_eq!(derived_count(100.0, 0.5, 0.5, 100.0, 1), 0.0);
    }

    fn mv(now: (usize, usize), then: (usize, usize)) -> Move {
        let (a, b) = (p(now.0, now.1), p(then.0, then.1));
        Move {
            now: a,
            then: b,
            holds: two_proportion_p(a, b) < ALPHA,
        }
    }

    #[test]
    fn an_offsetting_pair_is_one_relabelling() {
        // The planted demo: Bug 16.3 % → 9.5 %, Outage 14.7 % → 20.3 %, together
        // 31.0 % → 29.8 %; Billing steady.
        let moves = [
            mv((95, 1_000), (163, 1_000)),
            mv((109, 1_000), (121, 1_000)),
            mv((203, 1_000), (147, 1_000)),
        ];
        assert!(moves[0].holds && moves[2].holds);
        let pairs = offsetting_pairs(&moves);
        assert_eq!(pairs.len(), 1, "{pairs:?}");
        assert_eq!((pairs[0].fall, pairs[0].rise), (0, 2));
        assert_eq!((pairs[0].then.k, pairs[0].now.k), (310.0, 298.0));
        assert!(pairs[0].p > ALPHA);
    }

    #[test]
    fn a_real_fall_with_no_offset_stays_a_fall() {
        // Bug falls; the other topics move by noise only.
        let moves = [
            mv((90, 1_000), (160, 1_000)),
            mv((125, 1_000), (121, 1_000)),
            mv((150, 1_000), (147, 1_000)),
        ];
        assert!(offsetting_pairs(&moves).is_empty());
        // Two moves that do not hold offset nothing either.
        let moves = [
            mv((110, 1_000), (120, 1_000)),
            mv((130, 1_000), (121, 1_000)),
        ];
        assert!(offsetting_pairs(&moves).is_empty());
    }

    #[test]
    fn an_offset_is_told_from_chance_by_the_size_of_the_sample() {
        // Bug −7 pp, Outage +4 pp: the sum falls 3 pp. Over 1,000 conversations that is
        // chance (an offset); over 5,000 the sum itself falls: two real moves.
        let at = |n: usize| {
            [
                mv((90 * n, 1_000 * n), (160 * n, 1_000 * n)),
                mv((187 * n, 1_000 * n), (147 * n, 1_000 * n)),
            ]
        };
        assert_eq!(offsetting_pairs(&at(1)).len(), 1);
        assert!(offsetting_pairs(&at(5)).is_empty());
    }

    #[test]
    fn a_target_in_an_overlapping_window_keeps_what_it_shares() {
        // Escalation 16.8 % on a rolling 6-month window, checked a quarter later: half
        // the window is today's, so even no escalation from today leaves 8.4 %.
        assert!((rate_in_overlapping_window(0.168, 0.0, 0.5) - 0.084).abs() < 1e-12);
        assert!((rate_in_overlapping_window(0.168, 0.046, 0.5) - 0.107).abs() < 1e-12);
        // No overlap: the target on the new months is the window's.
        assert_eq!(rate_in_overlapping_window(0.168, 0.046, 0.0), 0.046);
    }
}

// Ratios of printed values (issue 27): a lift printed beside two amounts is the ratio
// of the amounts as printed, so that a reader who divides them gets the printed lift.

/// `a / b − 1` of two values as printed: the relative change a reader computes from
/// them; none when `b` is zero or either is not a number.
pub fn printed_ratio_change(a: f64, b: f64) -> Option<f64> {
    (b != 0.0 && a.is_finite() && b.is_finite()).then(|| a / b - 1.0)
}

#[cfg(test)]
mod printed_ratio_tests {
    use super::*;

    #[test]
    fn a_lift_is_the_ratio_of_the_printed_amounts() {
        // $2.9k against $2.1k (raw 2,890 and 2,122: 36.2 %) reads as 38.1 %.
        let lift = printed_ratio_change(2_900.0, 2_100.0).unwrap();
        assert_eq!(printed(lift, 100.0, 1), 38.1);
        assert_eq!(printed_ratio_change(1.0, 0.0), None);
        assert_eq!(printed_ratio_change(f64::NAN, 2.0), None);
        assert!(printed_ratio_change(1.0, 2.0).unwrap() < 0.0);
    }
}

// Cells against the rest (issue 29, charts): a chart colours a cell only where its
// value differs from the other cells' beyond chance, all cells corrected together.

/// Two samples' moments as one sample's (the union's size, mean and variance).
pub fn pooled_moments(a: Moments, b: Moments) -> Moments {
    let n = a.n + b.n;
    let mean = (a.n * a.mean + b.n * b.mean) / n;
    let ss = (a.n - 1.0) * a.var
        + (b.n - 1.0) * b.var
        + a.n * (a.mean - mean).powi(2)
        + b.n * (b.mean - mean).powi(2);
    Moments {
        n,
        mean,
        var: ss / (n - 1.0),
    }
}

/// Each cell's rate against the other cells' together, with the false discovery
/// rate controlled over all cells ([`compare_many`]). A single cell has no rest: no
/// clear difference.
pub fn proportions_against_rest(cells: &[Proportion]) -> Vec<Verdict> {
    let (k, n) = cells
        .iter()
        .fold((0.0, 0.0), |(k, n), c| (k + c.k, n + c.n));
    let pairs: Vec<Option<(Proportion, Proportion)>> = cells
        .iter()
        .map(|c| {
            (n - c.n > 0.0).then_some((
                *c,
                Proportion {
                    k: k - c.k,
                    n: n - c.n,
                },
            ))
        })
        .collect();
    let tested: Vec<(Proportion, Proportion)> = pairs.iter().flatten().copied().collect();
    let mut verdicts = compare_many(&tested).into_iter();
    pairs
        .iter()
        .map(|p| match p {
            Some(_) => verdicts.next().unwrap_or(Verdict::NoClearDifference),
            None => Verdict::NoClearDifference,
        })
        .collect()
}

/// Each cell's mean against the other cells' pooled (Welch), with the false
/// discovery rate controlled over all cells; `None` cells (under two values) are
/// not tested and have no clear difference.
pub fn means_against_rest(cells: &[Option<Moments>]) -> Vec<Verdict> {
    let rest = |i: usize| {
        cells
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .filter_map(|(_, c)| *c)
            .reduce(pooled_moments)
    };
    let pairs: Vec<Option<(Moments, Moments)>> = cells
        .iter()
        .enumerate()
        .map(|(i, c)| Some(((*c)?, rest(i)?)))
        .collect();
    let p: Vec<f64> = pairs
        .iter()
        .flatten()
        .map(|(a, b)| welch_p(*a, *b))
        .collect();
    let mut keep = benjamini_hochberg(&p, FDR_Q).into_iter();
    pairs
        .iter()
        .map(|pair| match pair {
            Some((a, b)) => Verdict::of(a.mean, b.mean, keep.next().unwrap_or(false)),
            None => Verdict::NoClearDifference,
        })
        .collect()
}

#[cfg(test)]
mod against_rest_tests {
    use super::*;

    #[test]
    fn pooled_moments_are_the_union_s() {
        let a = Moments::of([1.0, 2.0, 3.0]).unwrap();
        let b = Moments::of([10.0, 11.0]).unwrap();
        let all = Moments::of([1.0, 2.0, 3.0, 10.0, 11.0]).unwrap();
        let p = pooled_moments(a, b);
        assert_eq!(p.n, all.n);
        assert!((p.mean - all.mean).abs() < 1e-12 && (p.var - all.var).abs() < 1e-9);
    }

    #[test]
    fn only_a_cell_that_differs_from_the_rest_beyond_chance_holds() {
        let p = |k, n| Proportion::new(k, n).unwrap();
        // 60 % of 500 against cells near 30 %: it holds; 31 % of 100 does not.
        let v = proportions_against_rest(&[p(300, 500), p(31, 100), p(290, 1000), p(150, 500)]);
        assert_eq!(v[0], Verdict::Higher);
        assert_eq!(v[1], Verdict::NoClearDifference);
        // Equal rates everywhere: nothing holds.
        let flat = proportions_against_rest(&[p(30, 100), p(31, 100), p(29, 100)]);
        assert!(flat.iter().all(|v| !v.holds()));
        assert_eq!(
            proportions_against_rest(&[p(3, 10)]),
            [Verdict::NoClearDifference]
        );
    }

    #[test]
    fn means_against_the_rest_are_corrected_together() {
        let m = |mean, n| Some(Moments { n, mean, var: 4.0 });
        // 6.3 to 7.2 on a 0–10 score with a few dozen scores each: chance.
        let few = means_against_rest(&[m(6.3, 30.0), m(7.2, 30.0), m(6.8, 30.0), None]);
        assert!(few.iter().all(|v| !v.holds()), "{few:?}");
        // The same gap over thousands of scores holds for the extreme cells.
        let many = means_against_rest(&[m(6.3, 3000.0), m(7.2, 3000.0), m(6.75, 3000.0)]);
        assert_eq!(many[0], Verdict::Lower);
        assert_eq!(many[1], Verdict::Higher);
    }
}
