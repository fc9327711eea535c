//! What a report's edition says about the period it compares itself with (`compare`
//! option): both values of each compared number, the change, and whether it holds
//! under the claims rules (a rise or a fall only then, otherwise "no clear change",
//! the false discovery rate controlled over every change of the run); the records
//! the narrative prints from them and `comparison.csv`. A report computes its own
//! numbers on the comparison window and builds the [`Change`]s.
//!
//! Why this file is long: about 680 lines of code and 380 of tests, one owner (what a
//! comparison is, covers, decides and prints); every report builds its changes with it.

use serde::Serialize;
use serde_json::Value;

use crate::intercom::window::{Compare, Window};
use crate::render::narrative::Finding;
use crate::reports::{cell, CsvFile};
use crate::stats::claims::{
    benjamini_hochberg, printed_difference, two_proportion_p, Proportion, FDR_Q,
};

/// The comparison of a run, as summary.json carries it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Comparison {
    /// `previous`, `shift:<N>m` (the `compare` option) or `snapshot` (an earlier
    /// output of the same job).
    pub basis: String,
    /// The comparison window; none for a snapshot.
    pub window: Option<Window>,
    pub period: String,
    /// Why there are no numbers for the comparison window, when there are none.
    pub empty_reason: Option<EmptyReason>,
    pub changes: Vec<Change>,
    /// What the two sides cover of the data, and what of them is compared (the parts
    /// that entered and left, where the windows overlap); none for a snapshot.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub coverage: Option<Coverage>,
}

impl Comparison {
    /// The comparison of a run that compares itself with nothing (`compare = none`,
    /// or a report without comparisons): what watch rules are judged on then.
    pub fn off() -> Self {
        empty(
            Compare::None.to_string(),
            None,
            String::new(),
            EmptyReason::Off,
        )
    }

    /// The comparison with a window (`compare`), its changes decided.
    pub fn of_window(basis: Compare, window: Window, changes: Vec<Change>) -> Self {
        Self {
            basis: basis.to_string(),
            period: window.period(),
            window: Some(window),
            empty_reason: None,
            changes,
            coverage: None,
        }
    }

    /// Whether either side is only partly covered by the data: then it never leads
    /// page 1, and volumes are not compared unless the covered lengths are equal.
    pub fn partial(&self) -> bool {
        self.coverage
            .as_ref()
            .is_some_and(|c| c.current_partial || c.previous_partial)
    }
}

/// Why a comparison has no numbers. summary.json and the log carry its sentence
/// ([`std::fmt::Display`]); the "What changed" section its key ([`EmptyReason::key`]).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EmptyReason {
    /// `compare = none`: the run compares itself with nothing.
    #[error("the run has no comparison")]
    Off,
    /// The comparison window holds no conversations (the metrics' own sentence).
    #[error("{0}")]
    NoConversations(String),
    /// The comparison window's metrics could not be computed otherwise (no paying
    /// company, nothing kept): the metrics' own sentence.
    #[error("{0}")]
    NoMetrics(String),
    /// A snapshot comparison of a run that writes no output directory.
    #[error("{NO_SNAPSHOT}: the run has no output directory")]
    NoOutputDir,
    /// No earlier snapshot among the report's outputs; `before` is this run's period.
    // Not the folder's path: summary.json does not depend on where it is.
    #[error("{NO_SNAPSHOT} before {before} among this report's outputs")]
    NoSnapshot { before: String },
    /// The earlier snapshot (its period) could not be read.
    #[error("{UNREADABLE_SNAPSHOT} {snapshot}/summary.json: {error}")]
    UnreadableSnapshot { snapshot: String, error: String },
    /// The side compared against (the comparison window, or the part of it that left
    /// an overlapping window) lies wholly outside the data's dates.
    #[error("the {side} {period} lies outside the data, which starts {first} and ends {last}")]
    NotCovered {
        /// `comparison window` or `part that left`.
        side: &'static str,
        period: String,
        first: String,
        last: String,
    },
}

impl EmptyReason {
    /// The key of the "What changed" section's sentence (`why`).
    pub fn key(&self) -> &'static str {
        match self {
            Self::NoConversations(_) => "no_conversations",
            Self::NoOutputDir | Self::NoSnapshot { .. } => "no_snapshot",
            Self::UnreadableSnapshot { .. } => "unreadable_snapshot",
            Self::NotCovered { .. } => "not_covered",
            Self::Off | Self::NoMetrics(_) => "no_paying",
        }
    }
}

impl Serialize for EmptyReason {
    /// As its sentence: summary.json keeps the text it always had.
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// How a number is compared and printed.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Unit {
    /// A rate (0–1); its change in percentage points.
    Rate,
    Minutes,
    Count,
    /// Annual revenue, in dollars.
    Money,
}

/// How a unit's values are printed: the one table of scale, decimals and suffix.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Printing {
    /// A rate is printed in percent (×100).
    pub scale: f64,
    pub decimals: usize,
    /// Written after a bare value (a rate's `%`).
    pub suffix: &'static str,
}

impl Unit {
    /// How its values are printed: rates in percent with one decimal, minutes with
    /// one decimal, counts and money whole.
    pub fn printing(self) -> Printing {
        let (scale, decimals, suffix) = match self {
            Unit::Rate => (100.0, 1, "%"),
            Unit::Minutes => (1.0, 1, ""),
            Unit::Count | Unit::Money => (1.0, 0, ""),
        };
        Printing {
            scale,
            decimals,
            suffix,
        }
    }

    /// Its name in summary.json and the templates (`rate`, `minutes`, …).
    pub fn name(self) -> &'static str {
        match self {
            Unit::Rate => "rate",
            Unit::Minutes => "minutes",
            Unit::Count => "count",
            Unit::Money => "money",
        }
    }

    /// The unit called `name` ([`Unit::name`]).
    pub fn named(name: &str) -> Option<Self> {
        [Unit::Rate, Unit::Minutes, Unit::Count, Unit::Money]
            .into_iter()
            .find(|u| u.name() == name)
    }
}

/// What a change allows a report to say.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    Rise,
    Fall,
    NoClearChange,
    /// One of the two values does not exist.
    NotComparable,
    /// Printed for reference (a median), not tested.
    NotTested,
}

/// One metric of one slice in both windows.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Change {
    pub metric: &'static str,
    /// `overall`, a segment or a group.
    pub slice: String,
    /// What within the slice, where a metric has many (a topic tag).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub item: Option<String>,
    pub unit: Unit,
    pub current: Option<f64>,
    pub previous: Option<f64>,
    /// current − previous, in percentage points for rates.
    pub change: Option<f64>,
    /// What each value rests on: k of n for rates (k effective for retention), the
    /// sample for means, the count itself for counts.
    pub current_k: Option<f64>,
    pub current_n: f64,
    pub previous_k: Option<f64>,
    pub previous_n: f64,
    pub p: Option<f64>,
    pub direction: Direction,
}

impl Change {
    /// A change of `metric` in `slice`, not yet tested (`NotComparable` until a test
    /// is set): the change is current − previous, in percentage points for rates.
    pub fn new(
        metric: &'static str,
        slice: &str,
        unit: Unit,
        current: Option<f64>,
        previous: Option<f64>,
    ) -> Self {
        Self {
            metric,
            slice: slice.to_owned(),
            item: None,
            unit,
            current,
            previous,
            change: match (current, previous) {
                (Some(x), Some(y)) if unit == Unit::Rate => Some((x - y) * 100.0),
                (Some(x), Some(y)) => Some(x - y),
                _ => None,
            },
            current_k: None,
            current_n: 0.0,
            previous_k: None,
            previous_n: 0.0,
            p: None,
            direction: Direction::NotComparable,
        }
    }
}

impl Change {
    /// This rate change with what each value rests on (k of n), tested with the
    /// two-proportion test when both exist.
    pub fn with_counts(mut self, now: Option<Proportion>, then: Option<Proportion>) -> Self {
        if let Some(x) = now {
            self.current_k = Some(x.k);
            self.current_n = x.n;
        }
        if let Some(y) = then {
            self.previous_k = Some(y.k);
            self.previous_n = y.n;
        }
        if let (Some(x), Some(y)) = (now, then) {
            self.p = Some(two_proportion_p(x, y));
            self.direction = Direction::NoClearChange;
        }
        self
    }
}

/// The "What changed" table: `first` names the first column (slice or group), then
/// the measure, both values, the change and its reading.
pub fn table(
    s: &crate::render::format::Strings,
    first: &str,
    rows: Vec<Vec<String>>,
    intro: String,
) -> serde_json::Value {
    serde_json::json!({
        "header": [
            s.get(first),
            s.get("change.metric"),
            s.get("change.then"),
            s.get("change.now"),
            s.get("change.change"),
            s.get("change.reading"),
        ],
        "rows": rows,
        "intro": intro,
    })
}

/// Decides each tested change over the whole family (Benjamini–Hochberg at
/// [`FDR_Q`]): a rise or a fall where it holds, else no clear change.
pub fn decide(changes: &mut [Change]) {
    let tested: Vec<usize> = changes
        .iter()
        .enumerate()
        .filter(|(_, c)| c.p.is_some())
        .map(|(i, _)| i)
        .collect();
    let p: Vec<f64> = tested.iter().filter_map(|&i| changes[i].p).collect();
    let keep = benjamini_hochberg(&p, FDR_Q);
    for (&i, holds) in tested.iter().zip(keep) {
        let c = &mut changes[i];
        c.direction = match (holds, c.change) {
            (true, Some(d)) if d > 0.0 => Direction::Rise,
            (true, Some(d)) if d < 0.0 => Direction::Fall,
            _ => Direction::NoClearChange,
        };
    }
}

/// `comparison.csv`: one row per metric and slice, both periods and the change (the
/// spec's panel CSVs keep their columns).
pub fn csv(c: &Comparison) -> CsvFile {
    fn json(v: &impl Serialize) -> String {
        serde_json::to_value(v)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default()
    }
    CsvFile {
        name: "comparison.csv",
        header: vec![
            "comparison_period",
            "slice",
            "metric",
            "item",
            "unit",
            "current",
            "previous",
            "change",
            "current_k",
            "current_n",
            "previous_k",
            "previous_n",
            "p",
            "direction",
        ],
        rows: c
            .changes
            .iter()
            .map(|x| {
                vec![
                    c.period.clone(),
                    x.slice.clone(),
                    x.metric.to_owned(),
                    x.item.clone().unwrap_or_default(),
                    json(&x.unit),
                    cell(x.current),
                    cell(x.previous),
                    cell(x.change),
                    cell(x.current_k),
                    cell(Some(x.current_n)),
                    cell(x.previous_k),
                    cell(Some(x.previous_n)),
                    cell(x.p),
                    json(&x.direction),
                ]
            })
            .collect(),
    }
}

/// `current − previous` as printed from the printed values: `+1.2 pp`, `−3.0 min`.
pub fn signed_change(
    f: &crate::render::format::NumberFormat,
    unit: Unit,
    current: f64,
    previous: f64,
) -> String {
    let p = unit.printing();
    let d = printed_difference(current, previous, p.scale, p.decimals as i32);
    let sign = if d > 0.0 {
        "+"
    } else if d < 0.0 {
        "−"
    } else {
        "±"
    };
    let size = match unit {
        Unit::Rate => f.points(d.abs()),
        Unit::Minutes => f.minutes(d.abs()),
        Unit::Count => f.count(d.abs()),
        Unit::Money => f.money(d.abs()),
    };
    format!("{sign}{size}")
}

/// A compared value as the tables print it.
pub fn show(f: &crate::render::format::NumberFormat, unit: Unit, v: Option<f64>) -> String {
    match v {
        None => "—".to_owned(),
        Some(v) => match unit {
            Unit::Rate => f.percent(v),
            Unit::Minutes => f.minutes(v),
            Unit::Count => f.count(v),
            Unit::Money => f.money(v),
        },
    }
}

/// The key of a change's reading in the language's strings (`change.reading_<key>`).
pub fn reading(d: Direction) -> &'static str {
    match d {
        Direction::Rise => "rise",
        Direction::Fall => "fall",
        Direction::NoClearChange => "no_clear_change",
        Direction::NotTested => "not_tested",
        Direction::NotComparable => "not_comparable",
    }
}

/// [`EmptyReason::NotCovered`]'s side when the windows overlap.
const LEFT_SIDE: &str = "part that left";

/// What a comparison's two sides cover of the data (summary.json's
/// `comparison.coverage`): the windows as compared, whether each is partial, the
/// overlap taken out, and whether volumes (counts) are compared.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Coverage {
    /// This side as compared: the window, or the part that entered, cut to the data.
    pub current: Window,
    /// The other side: the comparison window, or the part that left, cut to the data.
    pub previous: Window,
    pub current_partial: bool,
    pub previous_partial: bool,
    /// What both windows share, when they overlap (`shift:` shorter than the window).
    pub shared: Option<Shared>,
    /// Counts are compared only when neither side is partial: a count over fewer
    /// covered days is a coverage gap, not a change.
    pub volumes: bool,
}

/// The part two overlapping windows share.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct Shared {
    pub window: Window,
    /// (months shared, months in the window), for windows written in months.
    pub months: Option<(u32, u32)>,
}

/// The two sides a comparison sets against each other, before the data cuts them:
/// `window` against `before`, or, when they overlap (a `shift:` shorter than the
/// window), the part of `window` that entered against the part of `before` that
/// left, the shared part taken out (both windows hold it: testing them as two
/// samples would count it twice). `months`: the window's length in months, when
/// written in months, and the shift.
pub fn sides(
    window: Window,
    before: Window,
    months: Option<(u32, u32)>,
) -> (Window, Window, Option<Shared>) {
    if before.start < window.start && before.end >= window.start && before.end < window.end {
        let second = chrono::Duration::seconds(1);
        let entered = Window {
            start: before.end + second,
            end: window.end,
        };
        let left = Window {
            start: before.start,
            end: window.start - second,
        };
        let shared = Shared {
            window: Window {
                start: window.start,
                end: before.end,
            },
            months: months
                .filter(|(n, shift)| shift < n)
                .map(|(n, shift)| (n - shift, n)),
        };
        return (entered, left, Some(shared));
    }
    (window, before, None)
}

/// The part of `w` inside the data's dates (`data`: its first and last record);
/// partial when at least a day of `w` lies outside them; none when nothing does.
pub fn clip(w: Window, data: Option<Window>) -> Option<(Window, bool)> {
    let Some(d) = data else {
        return Some((w, false));
    };
    let c = Window {
        start: w.start.max(d.start),
        end: w.end.min(d.end),
    };
    if c.start > c.end {
        return None;
    }
    let day = chrono::Duration::days(1);
    Some((c, c.start - w.start >= day || w.end - c.end >= day))
}

/// The coverage of a comparison of `window` with `before` over the data's dates,
/// or why there is nothing to compare (the side compared against lies outside).
pub fn coverage(
    window: Window,
    before: Window,
    months: Option<(u32, u32)>,
    data: Option<Window>,
) -> Result<Coverage, EmptyReason> {
    let (now, then, shared) = sides(window, before, months);
    let outside = |side: &'static str, w: Window| {
        let date = |t: chrono::DateTime<chrono::Utc>| t.format("%Y-%m-%d").to_string();
        EmptyReason::NotCovered {
            side,
            period: w.period().replace('_', " – "),
            first: data.map(|d| date(d.start)).unwrap_or_default(),
            last: data.map(|d| date(d.end)).unwrap_or_default(),
        }
    };
    let then_side = if shared.is_some() {
        LEFT_SIDE
    } else {
        "comparison window"
    };
    let (previous, previous_partial) = clip(then, data).ok_or_else(|| outside(then_side, then))?;
    let (current, current_partial) =
        clip(now, data).ok_or_else(|| outside("part that entered", now))?;
    Ok(Coverage {
        current,
        previous,
        current_partial,
        previous_partial,
        shared,
        volumes: !current_partial && !previous_partial,
    })
}

/// Applies a comparison's coverage: counts over unequal covered lengths become not
/// comparable (untested), and the family is decided again without them.
pub fn cover(c: &mut Comparison, coverage: Coverage) {
    if !coverage.volumes {
        for x in c.changes.iter_mut().filter(|x| x.unit == Unit::Count) {
            x.p = None;
            x.direction = Direction::NotComparable;
        }
        decide(&mut c.changes);
    }
    c.coverage = Some(coverage);
}

/// The beginnings of a snapshot comparison's empty reasons.
const NO_SNAPSHOT: &str = "no earlier snapshot";
const UNREADABLE_SNAPSHOT: &str = "unreadable snapshot";

/// A comparison without numbers, and why.
pub fn empty(
    basis: String,
    window: Option<Window>,
    period: String,
    reason: EmptyReason,
) -> Comparison {
    Comparison {
        basis,
        period,
        window,
        empty_reason: Some(reason),
        changes: Vec::new(),
        coverage: None,
    }
}

/// Changes that hold, most certain first (smallest p), then the largest relative
/// change: how the report ranks them.
pub fn holding(c: &Comparison) -> Vec<&Change> {
    let mut v: Vec<&Change> = c
        .changes
        .iter()
        .filter(|x| matches!(x.direction, Direction::Rise | Direction::Fall))
        .collect();
    let relative = |x: &Change| match (x.change, x.previous) {
        (Some(d), Some(p)) if p != 0.0 && x.unit != Unit::Rate => (d / p).abs(),
        (Some(d), Some(p)) if p != 0.0 => (d / 100.0 / p).abs(),
        _ => 0.0,
    };
    v.sort_by(|a, b| {
        a.p.unwrap_or(1.0)
            .total_cmp(&b.p.unwrap_or(1.0))
            .then(relative(b).total_cmp(&relative(a)))
    });
    v
}

/// A change as a narrative record: the two values, the change as the reader can
/// check it from the printed values, the counts, the slice.
pub fn record(id: &'static str, x: &Change) -> Finding {
    let mut f = Finding::new(id, 0);
    f.keys.insert("metric", x.metric);
    f.keys.insert("unit", x.unit.name());
    f.keys.insert(
        "direction",
        match x.direction {
            Direction::Rise => "rise",
            Direction::Fall => "fall",
            _ => "none",
        },
    );
    if x.slice != "overall" {
        f.slices
            .insert("segment", serde_json::Value::from(x.slice.clone()));
    }
    if let Some(item) = &x.item {
        f.slices
            .insert("item", serde_json::Value::from(item.clone()));
    }
    if let (Some(now), Some(before)) = (x.current, x.previous) {
        f.numbers.insert("current", now);
        f.numbers.insert("previous", before);
        let p = x.unit.printing();
        f.numbers.insert(
            "change",
            printed_difference(now, before, p.scale, p.decimals as i32).abs(),
        );
    }
    f.numbers.insert("current_n", x.current_n);
    f.numbers.insert("previous_n", x.previous_n);
    if let Some(k) = x.current_k {
        f.numbers.insert("current_k", k);
    }
    if let Some(k) = x.previous_k {
        f.numbers.insert("previous_k", k);
    }
    f
}

/// Page 1's change headline: the change that holds most surely, or that nothing
/// changed beyond chance; none without comparison numbers. A comparison the data
/// covers only in part, or an overlapping one whose part that left lies outside the
/// data, says so and does not lead (`lead` false: [`place`] puts it after the
/// report's own headlines); a comparison window wholly outside the data is said in
/// "What changed" only, as any empty comparison.
pub fn headline(c: &Comparison) -> Option<Finding> {
    if let Some(
        why @ EmptyReason::NotCovered {
            side: LEFT_SIDE,
            period,
            first,
            ..
        },
    ) = &c.empty_reason
    {
        let mut f = Finding::new("period_change", 0);
        f.keys.insert("direction", "none");
        f.keys.insert("why", why.key());
        f.keys.insert("side", "left");
        f.slices.insert("uncovered", Value::from(period.clone()));
        f.slices.insert("data_from", Value::from(first.clone()));
        f.slices.insert("period", Value::from(c.period.clone()));
        coverage_slices(&mut f, c);
        f.lead = false;
        return Some(f);
    }
    if c.empty_reason.is_some() {
        return None;
    }
    let mut f = match holding(c).first() {
        Some(x) => record("period_change", x),
        None => {
            let mut f = Finding::new("period_change", 0);
            f.keys.insert("direction", "none");
            f
        }
    };
    f.slices
        .insert("period", serde_json::Value::from(c.period.clone()));
    f.numbers.insert("holding", holding(c).len() as f64);
    coverage_slices(&mut f, c);
    if c.partial() {
        f.lead = false;
    }
    Some(f)
}

/// Puts page 1's change headline among a report's findings (already in page order):
/// first when it may lead, else as the last of page 1's headlines (a partial
/// comparison is stated, never the lead).
pub fn place(findings: &mut Vec<Finding>, c: &Comparison) {
    let Some(f) = headline(c) else { return };
    if f.lead {
        findings.insert(0, f);
        return;
    }
    let leads: Vec<usize> = findings
        .iter()
        .enumerate()
        .filter(|(_, x)| x.lead)
        .map(|(i, _)| i)
        .collect();
    let keep = crate::render::narrative::BRIEF_ITEMS - 1;
    let at = leads.get(keep).copied().unwrap_or(findings.len());
    let mut f = f;
    // On page 1 (a headline), but after the report's own.
    f.lead = true;
    findings.insert(at, f);
}

/// What a change sentence says about the sides' coverage: covered dates of a
/// partial side, the overlap's shared months and the parts compared.
fn coverage_slices(f: &mut Finding, c: &Comparison) {
    let Some(cov) = &c.coverage else { return };
    let day = |w: &Window| w.period().replace('_', " – ");
    f.keys
        .insert("partial", if c.partial() { "yes" } else { "no" });
    f.keys.insert(
        "volumes",
        if cov.volumes {
            "compared"
        } else {
            "not_compared"
        },
    );
    f.slices
        .insert("current_covered", Value::from(day(&cov.current)));
    f.slices
        .insert("previous_covered", Value::from(day(&cov.previous)));
    if let Some(sh) = &cov.shared {
        f.keys.insert("overlap", "yes");
        f.slices.insert("shared", Value::from(day(&sh.window)));
        if let Some((k, n)) = sh.months {
            f.numbers.insert("shared_months", k as f64);
            f.numbers.insert("window_months", n as f64);
        }
    }
}

/// The "What changed" section: each change that holds (at most eight), or that
/// nothing did, or why there is nothing to compare with.
pub fn section(c: &Comparison) -> Vec<Finding> {
    let tag = |mut f: Finding| {
        f.keys.insert("section", "change");
        f.slices
            .insert("period", serde_json::Value::from(c.period.clone()));
        f.lead = false;
        f
    };
    if let Some(why) = &c.empty_reason {
        let mut f = Finding::new("change_empty", 0);
        f.keys.insert("why", why.key());
        if let EmptyReason::NotCovered {
            side,
            period,
            first,
            ..
        } = why
        {
            f.slices.insert("side", Value::from(*side));
            f.slices.insert("uncovered", Value::from(period.clone()));
            f.slices.insert("data_from", Value::from(first.clone()));
        }
        return vec![tag(f)];
    }
    let held = holding(c);
    if held.is_empty() {
        let mut f = Finding::new("change_quiet", 0);
        f.numbers.insert(
            "tested",
            c.changes.iter().filter(|x| x.p.is_some()).count() as f64,
        );
        return vec![tag(f)];
    }
    held.into_iter()
        .take(8)
        .map(|x| tag(record("change", x)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(k: usize, n: usize) -> Option<Proportion> {
        Proportion::new(k, n)
    }

    /// A rate change of `slice` from k₀ of n₀ to k₁ of n₁, tested.
    fn rate(slice: &str, (k1, n1): (usize, usize), (k0, n0): (usize, usize)) -> Change {
        let (now, then) = (k1 as f64 / n1 as f64, k0 as f64 / n0 as f64);
        Change::new(
            "conv_to_feature_rate",
            slice,
            Unit::Rate,
            Some(now),
            Some(then),
        )
        .with_counts(p(k1, n1), p(k0, n0))
    }

    fn comparison(mut changes: Vec<Change>) -> Comparison {
        decide(&mut changes);
        Comparison {
            basis: "previous".into(),
            window: None,
            period: "2024-01-01_2024-03-31".into(),
            empty_reason: None,
            changes,
            coverage: None,
        }
    }

    #[test]
    fn each_empty_reason_prints_its_sentence_and_names_its_section_key() {
        let cases = [
            (EmptyReason::Off, "the run has no comparison", "no_paying"),
            (
                EmptyReason::NoConversations("no conversations in window a .. b".into()),
                "no conversations in window a .. b",
                "no_conversations",
            ),
            (
                EmptyReason::NoMetrics("table t has no rows".into()),
                "table t has no rows",
                "no_paying",
            ),
            (
                EmptyReason::NoOutputDir,
                "no earlier snapshot: the run has no output directory",
                "no_snapshot",
            ),
            (
                EmptyReason::NoSnapshot {
                    before: "asof-2024-06-01".into(),
                },
                "no earlier snapshot before asof-2024-06-01 among this report's outputs",
                "no_snapshot",
            ),
            (
                EmptyReason::UnreadableSnapshot {
                    snapshot: "asof-2024-05-01".into(),
                    error: "EOF".into(),
                },
                "unreadable snapshot asof-2024-05-01/summary.json: EOF",
                "unreadable_snapshot",
            ),
        ];
        for (why, text, key) in cases {
            assert_eq!(why.to_string(), text);
            assert_eq!(why.key(), key);
            // summary.json keeps the sentence as a plain string.
            assert_eq!(serde_json::to_value(&why).unwrap(), text);
            let c = empty("previous".into(), None, String::new(), why);
            assert_eq!(headline(&c), None);
            let s = section(&c);
            assert_eq!((s.len(), s[0].id), (1, "change_empty"));
            assert_eq!(s[0].keys["why"], key);
        }
    }

    #[test]
    fn a_difference_that_holds_is_a_rise_or_a_fall_and_one_that_does_not_is_no_clear_change() {
        let c = comparison(vec![
            // 20% → 40% of 500: holds, a rise.
            rate("overall", (200, 500), (100, 500)),
            // 40% → 20% of 500: holds, a fall.
            rate("renewal", (100, 500), (200, 500)),
            // 10% → 12% of 50: within chance.
            rate("expansion", (6, 50), (5, 50)),
            // One value missing: not comparable, not tested.
            Change::new(
                "conv_to_feature_rate",
                "unknown",
                Unit::Rate,
                Some(0.1),
                None,
            ),
        ]);
        let d: Vec<Direction> = c.changes.iter().map(|x| x.direction).collect();
        assert_eq!(
            d,
            [
                Direction::Rise,
                Direction::Fall,
                Direction::NoClearChange,
                Direction::NotComparable
            ]
        );
        assert!((c.changes[0].change.unwrap() - 20.0).abs() < 1e-9);
        assert_eq!(c.changes[3].p, None);
    }

    #[test]
    fn holding_keeps_the_changes_that_hold_most_certain_first() {
        let c = comparison(vec![
            rate("expansion", (6, 50), (5, 50)),
            // Both hold; the larger sample is the more certain.
            rate("renewal", (60, 200), (30, 200)),
            rate("overall", (600, 2000), (300, 2000)),
        ]);
        let held: Vec<&str> = holding(&c).iter().map(|x| x.slice.as_str()).collect();
        assert_eq!(held, ["overall", "renewal"]);
    }

    #[test]
    fn the_headline_is_the_surest_change_or_that_none_held() {
        let c = comparison(vec![
            rate("renewal", (60, 200), (30, 200)),
            rate("overall", (600, 2000), (300, 2000)),
        ]);
        let h = headline(&c).unwrap();
        assert_eq!(h.id, "period_change");
        assert_eq!(h.keys["direction"], "rise");
        assert_eq!(h.keys["unit"], "rate");
        assert!(!h.slices.contains_key("segment"), "overall has no segment");
        assert_eq!(h.slices["period"], "2024-01-01_2024-03-31");
        assert_eq!(h.numbers["holding"], 2.0);
        // 15.0% → 30.0%: the change as printed, in points.
        assert!((h.numbers["change"] - 0.15).abs() < 1e-9);

        let quiet = comparison(vec![rate("expansion", (6, 50), (5, 50))]);
        let h = headline(&quiet).unwrap();
        assert_eq!(h.keys["direction"], "none");
        assert_eq!(h.numbers["holding"], 0.0);
        let s = section(&quiet);
        assert_eq!((s[0].id, s[0].numbers["tested"]), ("change_quiet", 1.0));
    }

    #[test]
    fn the_one_unit_table_prints_rates_in_percent_and_counts_whole() {
        assert_eq!(Unit::Rate.printing().scale, 100.0);
        assert_eq!(Unit::Rate.printing().suffix, "%");
        assert_eq!(Unit::Minutes.printing().decimals, 1);
        assert_eq!(Unit::Money.printing().decimals, 0);
        for u in [Unit::Rate, Unit::Minutes, Unit::Count, Unit::Money] {
            assert_eq!(Unit::named(u.name()), Some(u));
            assert_eq!(serde_json::to_value(u).unwrap(), u.name());
        }
        assert_eq!(Unit::named("furlongs"), None);
    }

    fn at(s: &str) -> chrono::DateTime<chrono::Utc> {
        crate::source::timestamp::parse(s, chrono_tz::Tz::UTC).unwrap()
    }

    fn w(a: &str, b: &str) -> Window {
        Window {
            start: at(a),
            end: at(b),
        }
    }

    /// The demo's data: 2024-01-08 09:00 to 2024-06-15 12:00.
    fn demo_data() -> Option<Window> {
        Some(w("2024-01-08 09:00:00", "2024-06-15 12:00:00"))
    }

    #[test]
    fn a_window_reaching_outside_the_data_is_clipped_and_partial() {
        let six = w("2023-12-15 00:00:00", "2024-06-15 23:59:59");
        let (c, partial) = clip(six, demo_data()).unwrap();
        assert!(partial);
        assert_eq!(c, w("2024-01-08 09:00:00", "2024-06-15 12:00:00"));
        // Ending hours after the last record is not partial (a rolling window's end).
        let three = w("2024-03-15 00:00:00", "2024-06-15 23:59:59");
        assert!(!clip(three, demo_data()).unwrap().1);
        // Wholly before the data: nothing covered.
        assert_eq!(
            clip(w("2023-06-15 00:00:00", "2023-12-14 23:59:59"), demo_data()),
            None
        );
        // Without the data's dates, a window is taken as covered.
        assert_eq!(clip(six, None), Some((six, false)));
    }

    #[test]
    fn volumes_are_compared_only_over_equal_covered_lengths() {
        let three = w("2024-03-15 00:00:00", "2024-06-15 23:59:59");
        let before = w("2023-12-15 00:00:00", "2024-03-14 23:59:59");
        let cov = coverage(three, before, None, demo_data()).unwrap();
        assert!(cov.previous_partial && !cov.current_partial && !cov.volumes);
        assert_eq!(cov.previous.start, at("2024-01-08 09:00:00"));
        let counted = |c: &Coverage| {
            let mut x = comparison(vec![
                Change::new(
                    "conv_cnt",
                    "overall",
                    Unit::Count,
                    Some(3817.0),
                    Some(2738.0),
                ),
                rate("overall", (200, 500), (100, 500)),
            ]);
            x.changes[0].p = Some(1e-9);
            decide(&mut x.changes);
            cover(&mut x, c.clone());
            x
        };
        let x = counted(&cov);
        assert_eq!(x.changes[0].direction, Direction::NotComparable);
        assert_eq!(x.changes[0].p, None);
        assert_eq!(
            x.changes[1].direction,
            Direction::Rise,
            "rates on the covered parts"
        );
        assert!(x.partial());
        // A partial comparison is stated on page 1, after the report's own headlines.
        let h = headline(&x).unwrap();
        assert!(!h.lead);
        assert_eq!(h.keys["volumes"], "not_compared");
        let mut page: Vec<Finding> = (0..4).map(|_| Finding::new("own", 1)).collect();
        place(&mut page, &x);
        assert_eq!(page[2].id, "period_change");
        assert!(page[..2].iter().all(|f| f.id == "own"));
        // Both sides covered: counts compared, and the change may lead.
        let full = coverage(
            three,
            before,
            None,
            Some(w("2023-01-01 00:00:00", "2024-06-15 12:00:00")),
        )
        .unwrap();
        assert!(full.volumes);
        let x = counted(&full);
        assert_eq!(x.changes[0].direction, Direction::Rise);
        let mut page = vec![Finding::new("own", 1)];
        place(&mut page, &x);
        assert_eq!(page[0].id, "period_change");
    }

    #[test]
    fn overlapping_windows_compare_what_entered_with_what_left() {
        let six = w("2023-12-15 00:00:00", "2024-06-15 23:59:59");
        let shifted = w("2023-11-15 00:00:00", "2024-05-15 23:59:59");
        let (entered, left, shared) = sides(six, shifted, Some((6, 1)));
        assert_eq!(entered, w("2024-05-16 00:00:00", "2024-06-15 23:59:59"));
        assert_eq!(left, w("2023-11-15 00:00:00", "2023-12-14 23:59:59"));
        let shared = shared.unwrap();
        assert_eq!(shared.months, Some((5, 6)));
        assert_eq!(
            shared.window,
            w("2023-12-15 00:00:00", "2024-05-15 23:59:59")
        );
        // The part that left is before the data: no comparison, and why.
        let why = coverage(six, shifted, Some((6, 1)), demo_data()).unwrap_err();
        assert_eq!(why.key(), "not_covered");
        assert_eq!(
            why.to_string(),
            "the part that left 2023-11-15 – 2023-12-14 lies outside the data, \
             which starts 2024-01-08 and ends 2024-06-15"
        );
        let c = empty("shift:1m".into(), Some(shifted), shifted.period(), why);
        let h = headline(&c).unwrap();
        assert_eq!((h.keys["side"], h.lead), ("left", false));
        assert_eq!(h.slices["data_from"], "2024-01-08");
        // Covered on both sides: the parts compared, the shared months stated.
        let cov = coverage(
            six,
            shifted,
            Some((6, 1)),
            Some(w("2023-01-01 00:00:00", "2024-06-15 12:00:00")),
        )
        .unwrap();
        assert!(cov.volumes && cov.shared.is_some());
        assert_eq!(cov.previous, left);
        // Windows that do not overlap are compared whole.
        let before = w("2023-06-15 00:00:00", "2023-12-14 23:59:59");
        assert_eq!(sides(six, before, None), (six, before, None));
    }
}
