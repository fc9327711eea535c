//! The numbers of the `conversation-usage` report (spec §2–§5): population, P1/P99
//! exclusion, tag-with-fallback slices, every column of the slice panel at every level,
//! correlations, tertile groups and the data-quality counts.
//!
//! Pure functions from loaded rows to serde structs: no IO, no clock. Two independent
//! implementations of the spec must agree on these numbers, ties and edge cases
//! included, so every rule below cites the spec's wording where it is subtle.

use std::collections::BTreeMap;

// Hot maps keyed by ids and names: a fast non-cryptographic hash (the keys are data,
// not attacker-chosen per request) and a fixed iteration order.
use rustc_hash::FxHashMap as HashMap;

use serde::Serialize;

use crate::data::{normalize_name, split_items, BadTimestamps, CompanyRow, ConversationUsageData};
use crate::window::Window;

pub const SEGMENTS: [&str; 4] = ["new_contract", "renewal", "expansion", "churn_watch"];
pub const SEAT_BUCKETS: [&str; 5] = ["under_60", "60_129", "130_259", "260_419", "420_plus"];
pub const ARR_BUCKETS: [&str; 5] = ["under_30k", "30k_65k", "65k_110k", "110k_200k", "200k_plus"];
pub const UNKNOWN: &str = "unknown";

const MICROS_PER_MINUTE: f64 = 60_000_000.0;
const CONVERSION_HORIZON_MICROS: i64 = 72 * 3_600 * 1_000_000;

/// Which definitions of conversion and retention a run used (spec §4 `usage_source`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum UsageDefinitions {
    Events,
    Proxy,
}

#[derive(Debug, Clone, Copy)]
pub struct Params {
    pub min_cell: usize,
    pub tertile_min_companies: usize,
    pub usage: UsageDefinitions,
}

impl Default for Params {
    fn default() -> Self {
        Self {
            min_cell: 20,
            tertile_min_companies: 30,
            usage: UsageDefinitions::Proxy,
        }
    }
}

// ---------------------------------------------------------------------------
// Statistics helpers

/// Percentile of sorted values, linear interpolation between closest ranks
/// (Hyndman–Fan type 7, numpy's default), computed the way numpy does so that
/// threshold comparisons agree to the last bit.
pub fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    let n = sorted.len();
    if n == 0 {
        return None;
    }
    let h = (n - 1) as f64 * p;
    let lo = (h.floor() as usize).min(n - 1);
    let hi = (lo + 1).min(n - 1);
    let t = h - lo as f64;
    let (a, b) = (sorted[lo], sorted[hi]);
    let d = b - a;
    Some(if t >= 0.5 {
        b - d * (1.0 - t)
    } else {
        a + d * t
    })
}

pub fn mean(values: impl IntoIterator<Item = f64>) -> Option<f64> {
    let (mut s, mut n) = (0.0, 0usize);
    for v in values {
        s += v;
        n += 1;
    }
    (n > 0).then(|| s / n as f64)
}

fn ratio(num: usize, den: usize) -> Option<f64> {
    (den > 0).then(|| num as f64 / den as f64)
}

/// Pearson r; `None` under two pairs or when either side has no variance.
pub fn pearson(pairs: &[(f64, f64)]) -> Option<f64> {
    if pairs.len() < 2 {
        return None;
    }
    let n = pairs.len() as f64;
    let mx = pairs.iter().map(|p| p.0).sum::<f64>() / n;
    let my = pairs.iter().map(|p| p.1).sum::<f64>() / n;
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for &(x, y) in pairs {
        sxy += (x - mx) * (y - my);
        sxx += (x - mx) * (x - mx);
        syy += (y - my) * (y - my);
    }
    (sxx > 0.0 && syy > 0.0).then(|| (sxy / (sxx.sqrt() * syy.sqrt())).clamp(-1.0, 1.0))
}

// ---------------------------------------------------------------------------
// Slices (§3)

/// Where a company's label came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LabelSource {
    Tag,
    Fallback,
}

/// A company's three labels, as indexes into the label arrays (`len()` = unknown).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Labels {
    pub segment: u8,
    pub seat: u8,
    pub arr: u8,
    pub segment_src: LabelSource,
    pub seat_src: LabelSource,
    pub arr_src: LabelSource,
}

fn tag_value(tags: Option<&str>, prefix: &str, allowed: &[&str]) -> Option<u8> {
    let tags = tags?;
    split_items(tags).find_map(|t| {
        let v = t.strip_prefix(prefix)?;
        allowed.iter().position(|a| *a == v).map(|i| i as u8)
    })
}

pub fn seat_bucket_of(user_count: Option<i64>) -> u8 {
    match user_count {
        None => SEAT_BUCKETS.len() as u8,
        Some(n) if n < 60 => 0,
        Some(n) if n < 130 => 1,
        Some(n) if n < 260 => 2,
        Some(n) if n < 420 => 3,
        Some(_) => 4,
    }
}

pub fn arr_bucket_of(arr: f64) -> u8 {
    if arr < 30_000.0 {
        0
    } else if arr < 65_000.0 {
        1
    } else if arr < 110_000.0 {
        2
    } else if arr < 200_000.0 {
        3
    } else {
        4
    }
}

/// Tag wins, fallback otherwise; the first tag of a kind with an allowed value wins.
pub fn classify(tags: Option<&str>, user_count: Option<i64>, monthly_spend: f64) -> Labels {
    let seg = tag_value(tags, "segment:", &SEGMENTS);
    let seat = tag_value(tags, "seat_bucket:seats:", &SEAT_BUCKETS);
    let arr = tag_value(tags, "arr_bucket:arr:", &ARR_BUCKETS);
    let src = |o: Option<u8>| {
        if o.is_some() {
            LabelSource::Tag
        } else {
            LabelSource::Fallback
        }
    };
    Labels {
        segment: seg.unwrap_or(SEGMENTS.len() as u8),
        seat: seat.unwrap_or_else(|| seat_bucket_of(user_count)),
        arr: arr.unwrap_or_else(|| arr_bucket_of(12.0 * monthly_spend)),
        segment_src: src(seg),
        seat_src: src(seat),
        arr_src: src(arr),
    }
}

pub fn segment_name(i: u8) -> &'static str {
    SEGMENTS.get(i as usize).copied().unwrap_or(UNKNOWN)
}
pub fn seat_name(i: u8) -> &'static str {
    SEAT_BUCKETS.get(i as usize).copied().unwrap_or(UNKNOWN)
}
pub fn arr_name(i: u8) -> &'static str {
    ARR_BUCKETS.get(i as usize).copied().unwrap_or(UNKNOWN)
}

// ---------------------------------------------------------------------------
// Population (§2)

/// Paying companies and the name → company mapping of §2, shared by every report
/// that maps conversations to companies.
#[derive(Debug, Clone)]
pub struct Population {
    /// Indexes into the company rows of paying companies (`monthly_spend > 0`).
    pub paying: Vec<usize>,
    /// Normalized name → winning paying company (highest spend, then smallest id).
    pub by_name: HashMap<String, usize>,
    pub duplicate_names: Vec<DuplicateName>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct DuplicateName {
    pub normalized_name: String,
    /// Every paying company with that name, the winner first.
    pub companies: Vec<DuplicateCompany>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct DuplicateCompany {
    pub company_id: String,
    pub company_name: String,
    pub monthly_spend: f64,
}

pub fn is_paying(c: &CompanyRow) -> bool {
    c.monthly_spend.is_some_and(|s| s > 0.0)
}

impl Population {
    /// The paying company a conversation belongs to, from the first (normalized)
    /// name of its `all_contact_company_names`.
    pub fn company_of(&self, first_name: Option<&str>) -> Option<usize> {
        first_name.and_then(|n| self.by_name.get(n)).copied()
    }

    pub fn new(companies: &[CompanyRow]) -> Self {
        let paying: Vec<usize> = (0..companies.len())
            .filter(|&i| is_paying(&companies[i]))
            .collect();
        let mut groups: HashMap<String, Vec<usize>> =
            HashMap::with_capacity_and_hasher(paying.len(), Default::default());
        for &i in &paying {
            if let Some(name) = companies[i].company_name.as_deref() {
                let n = normalize_name(name);
                if !n.is_empty() {
                    groups.entry(n).or_default().push(i);
                }
            }
        }
        let mut by_name = HashMap::with_capacity_and_hasher(groups.len(), Default::default());
        let mut duplicate_names = Vec::new();
        for (name, mut idx) in groups {
            if idx.len() == 1 {
                by_name.insert(name, idx[0]);
                continue;
            }
            idx.sort_by(|&a, &b| {
                let (ca, cb) = (&companies[a], &companies[b]);
                let (sa, sb) = (
                    ca.monthly_spend.unwrap_or(0.0),
                    cb.monthly_spend.unwrap_or(0.0),
                );
                sb.total_cmp(&sa)
                    .then_with(|| ca.company_id.cmp(&cb.company_id))
            });
            if idx.len() > 1 {
                duplicate_names.push(DuplicateName {
                    normalized_name: name.clone(),
                    companies: idx
                        .iter()
                        .map(|&i| DuplicateCompany {
                            company_id: companies[i].company_id.clone(),
                            company_name: companies[i].company_name.clone().unwrap_or_default(),
                            monthly_spend: companies[i].monthly_spend.unwrap_or(0.0),
                        })
                        .collect(),
                });
            }
            by_name.insert(name, idx[0]);
        }
        duplicate_names.sort_by(|a: &DuplicateName, b| a.normalized_name.cmp(&b.normalized_name));
        Self {
            paying,
            by_name,
            duplicate_names,
        }
    }
}

// ---------------------------------------------------------------------------
// Outputs

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ConversationUsage {
    pub window: Window,
    pub usage_source: UsageDefinitions,
    pub counts: Counts,
    pub thresholds: Thresholds,
    pub panels: Panels,
    pub correlations: Correlations,
    pub tertiles: Vec<TertileGroup>,
    pub data_quality: DataQuality,
    pub min_cell: usize,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Counts {
    pub conversations_in_window: usize,
    pub conversations_in_scope: usize,
    pub conversations_kept: usize,
    pub conversations_excluded: usize,
    pub companies_paying: usize,
    pub companies_in_scope: usize,
    pub companies_kept: usize,
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct Bounds {
    pub p1: Option<f64>,
    pub p99: Option<f64>,
    /// Non-null values the percentiles were taken over.
    pub values: usize,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Thresholds {
    pub response_minutes: Bounds,
    pub duration_minutes: Bounds,
}

/// One row of a panel; a slice column is `None` at levels that do not split by it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SliceRow {
    pub segment: Option<&'static str>,
    pub seat_bucket: Option<&'static str>,
    pub arr_bucket: Option<&'static str>,
    pub companies_total: usize,
    pub companies_with_closed_conv: usize,
    pub conv_cnt: usize,
    pub avg_resp: Option<f64>,
    pub p50_resp: Option<f64>,
    pub p90_resp: Option<f64>,
    pub avg_duration: Option<f64>,
    pub bot_first_resp_share: Option<f64>,
    pub conv_to_feature_rate: Option<f64>,
    pub weekly_retention: Option<f64>,
    pub monthly_retention: Option<f64>,
    pub team_route_share: Option<f64>,
    pub contact_inbound_share: Option<f64>,
}

/// The metric columns of §4, in order (after the slice columns).
pub const METRIC_COLUMNS: [&str; 13] = [
    "companies_total",
    "companies_with_closed_conv",
    "conv_cnt",
    "avg_resp",
    "p50_resp",
    "p90_resp",
    "avg_duration",
    "bot_first_resp_share",
    "conv_to_feature_rate",
    "weekly_retention",
    "monthly_retention",
    "team_route_share",
    "contact_inbound_share",
];

impl SliceRow {
    /// The metric values in [`METRIC_COLUMNS`] order.
    pub fn metric_values(&self) -> [Option<f64>; 13] {
        [
            Some(self.companies_total as f64),
            Some(self.companies_with_closed_conv as f64),
            Some(self.conv_cnt as f64),
            self.avg_resp,
            self.p50_resp,
            self.p90_resp,
            self.avg_duration,
            self.bot_first_resp_share,
            self.conv_to_feature_rate,
            self.weekly_retention,
            self.monthly_retention,
            self.team_route_share,
            self.contact_inbound_share,
        ]
    }
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Panels {
    pub segment_seat_arr: Vec<SliceRow>,
    pub segment_seat: Vec<SliceRow>,
    pub segment_arr: Vec<SliceRow>,
    pub segment: Vec<SliceRow>,
    pub seat_bucket: Vec<SliceRow>,
    pub arr_bucket: Vec<SliceRow>,
    pub overall: SliceRow,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Correlation {
    pub r: Option<f64>,
    pub n: usize,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Correlations {
    /// Cell level: segment × seat × arr rows with companies_total ≥ min_cell.
    pub cells_used: usize,
    pub bot_share_vs_conversion: Correlation,
    pub avg_resp_vs_conversion: Correlation,
    pub bot_share_vs_weekly_retention: Correlation,
    pub bot_share_vs_monthly_retention: Correlation,
    /// Company level, over companies with a kept closed conversation.
    pub company_bot_share_vs_converted: Correlation,
    pub company_avg_resp_vs_converted: Correlation,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct TertileGroup {
    pub segment: &'static str,
    pub arr_bucket: &'static str,
    /// `bot_share` (groups low/mid/high) or `avg_resp` (groups fast/mid/slow).
    pub by: &'static str,
    pub group: &'static str,
    pub n: usize,
    pub mean_bot_share: Option<f64>,
    pub mean_avg_resp: Option<f64>,
    pub conversion: Option<f64>,
    pub weekly_retention: Option<f64>,
}

#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct Coverage {
    pub tag: usize,
    pub fallback: usize,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct DataQuality {
    pub conversations_total: usize,
    pub conversations_without_created_at: usize,
    pub unmapped_conversations: usize,
    pub in_scope_without_metrics_row: usize,
    pub companies_total: usize,
    pub companies_non_paying: usize,
    pub coverage_segment: Coverage,
    pub coverage_seat_bucket: Coverage,
    pub coverage_arr_bucket: Coverage,
    pub duplicate_names: Vec<DuplicateName>,
    pub bad_timestamps: BadTimestamps,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum MetricsError {
    #[error("no conversations in window {start} .. {end}")]
    EmptyWindow { start: String, end: String },
    #[error("table {table} has no rows: report {report} has nothing to describe")]
    NoRows {
        table: &'static str,
        report: &'static str,
    },
}

impl MetricsError {
    pub fn empty_window(w: &Window) -> Self {
        Self::EmptyWindow {
            start: crate::timestamp::format_utc(w.start),
            end: crate::timestamp::format_utc(w.end),
        }
    }
}

// ---------------------------------------------------------------------------
// Computation

/// A conversation that passed the window, mapping and P1/P99 filters.
struct Kept {
    company: usize,
    resp: Option<f64>,
    duration: Option<f64>,
    /// last_close_at in micros, when the conversation was closed.
    close: Option<i64>,
    bot: bool,
    team: bool,
    inbound: bool,
}

/// Per paying company, over its kept conversations.
#[derive(Default, Clone)]
struct CompanyAgg {
    kept: usize,
    closed: usize,
    bot: usize,
    resp_sum: f64,
    resp_n: usize,
    converted: bool,
    ret7: Option<f64>,
    ret30: Option<f64>,
    /// (active in p and p+1, active in p), over full weeks / months of the window.
    week_pairs: (usize, usize),
    month_pairs: (usize, usize),
}

/// The aggregates of the companies with kept conversations, dense and in company
/// order: sequential scans instead of hash lookups on millions of rows.
struct Aggregates {
    /// Company indices, ascending.
    companies: Vec<usize>,
    aggs: Vec<CompanyAgg>,
    /// Company index → position in `aggs` (`u32::MAX`: none).
    slot: Vec<u32>,
}

impl Aggregates {
    fn of(kept: &[Kept], n_companies: usize) -> Self {
        let mut slot = vec![u32::MAX; n_companies];
        for k in kept {
            slot[k.company] = 0;
        }
        let mut companies = Vec::new();
        for (ci, s) in slot.iter_mut().enumerate() {
            if *s == 0 {
                *s = companies.len() as u32;
                companies.push(ci);
            }
        }
        let mut aggs = vec![CompanyAgg::default(); companies.len()];
        for k in kept {
            let a = &mut aggs[slot[k.company] as usize];
            a.kept += 1;
            a.closed += usize::from(k.close.is_some());
            a.bot += usize::from(k.bot);
            if let Some(r) = k.resp {
                a.resp_sum += r;
                a.resp_n += 1;
            }
        }
        Self {
            companies,
            aggs,
            slot,
        }
    }

    fn len(&self) -> usize {
        self.companies.len()
    }

    fn keys(&self) -> impl Iterator<Item = &usize> {
        self.companies.iter()
    }

    fn iter(&self) -> impl Iterator<Item = (&usize, &CompanyAgg)> {
        self.companies.iter().zip(&self.aggs)
    }

    fn iter_mut(&mut self) -> impl Iterator<Item = (&usize, &mut CompanyAgg)> {
        self.companies.iter().zip(&mut self.aggs)
    }

    fn get_mut(&mut self, company: usize) -> Option<&mut CompanyAgg> {
        let s = *self.slot.get(company)?;
        self.aggs.get_mut(s as usize)
    }
}

impl CompanyAgg {
    fn bot_share(&self) -> f64 {
        self.bot as f64 / self.kept as f64
    }
    fn avg_resp(&self) -> Option<f64> {
        (self.resp_n > 0).then(|| self.resp_sum / self.resp_n as f64)
    }
}

/// Bot-first rule of §4: the first_response tag decides, else author/initiated type.
pub fn is_bot_first(tags: Option<&str>, author: Option<&str>, initiated: Option<&str>) -> bool {
    if let Some(t) = tags {
        let (mut bot, mut human) = (false, false);
        for item in split_items(t) {
            bot |= item == "first_response:bot";
            human |= item == "first_response:human";
        }
        if bot {
            return true;
        }
        if human {
            return false;
        }
    }
    author == Some("bot") || initiated == Some("bot_follow_up")
}

/// `[start, end)` in micros.
type Period = (i64, i64);

/// Full ISO weeks (Monday starts) and calendar months inside the window, as
/// `(start, end_exclusive)` micros.
fn full_periods(w: &Window) -> (Vec<Period>, Vec<Period>) {
    use chrono::{Datelike, Duration, NaiveTime, TimeZone, Utc};
    let first = w.start.date_naive() + Duration::days(i64::from(w.start.time() != NaiveTime::MIN));
    let last_excl = (w.end + Duration::seconds(1)).date_naive();
    let micros = |d: chrono::NaiveDate| {
        Utc.from_utc_datetime(&d.and_time(NaiveTime::MIN))
            .timestamp_micros()
    };
    let mut weeks = Vec::new();
    let mut d = first + Duration::days((7 - i64::from(first.weekday().num_days_from_monday())) % 7);
    while d + Duration::days(7) <= last_excl {
        weeks.push((micros(d), micros(d + Duration::days(7))));
        d += Duration::days(7);
    }
    let mut months = Vec::new();
    let mut m = first.with_day(1).expect("day 1");
    if m < first {
        m = m
            .checked_add_months(chrono::Months::new(1))
            .expect("in range");
    }
    loop {
        let next = m
            .checked_add_months(chrono::Months::new(1))
            .expect("in range");
        if next > last_excl {
            break;
        }
        months.push((micros(m), micros(next)));
        m = next;
    }
    (weeks, months)
}

/// (active in p and p+1, active in p) summed over consecutive periods.
const WEEK_MICROS: i64 = 7 * 24 * 3600 * 1_000_000;

fn period_pairs(active: &[bool]) -> (usize, usize) {
    active.windows(2).fold((0, 0), |(num, den), w| {
        (num + usize::from(w[0] && w[1]), den + usize::from(w[0]))
    })
}

fn period_index(periods: &[Period], t: i64) -> Option<usize> {
    let i = periods.partition_point(|p| p.1 <= t);
    (i < periods.len() && periods[i].0 <= t).then_some(i)
}

/// Computes the whole report. Fails only when the window holds no conversation.
pub fn compute(
    data: &ConversationUsageData,
    window: Window,
    params: Params,
) -> Result<ConversationUsage, MetricsError> {
    let companies = &data.companies;
    // The companies (population, labels) and the conversations' response index are
    // independent: built on two cores.
    let ((pop, labels), response) = std::thread::scope(|scope| {
        let population = scope.spawn(|| {
            let pop = Population::new(companies);
            let labels: HashMap<usize, Labels> = pop
                .paying
                .iter()
                .map(|&i| {
                    let c = &companies[i];
                    (
                        i,
                        classify(
                            c.tags.as_deref(),
                            c.user_count,
                            c.monthly_spend.unwrap_or(0.0),
                        ),
                    )
                })
                .collect();
            (pop, labels)
        });
        let mut response: HashMap<&str, Option<f64>> =
            HashMap::with_capacity_and_hasher(data.response_minutes.len(), Default::default());
        for (id, r) in &data.response_minutes {
            response.entry(id.as_str()).or_insert(*r);
        }
        let population = population
            .join()
            .expect("the population builder does not panic");
        (population, response)
    });

    // Window, mapping, and the two measures of every in-scope conversation.
    let mut in_window = 0usize;
    let mut unmapped = 0usize;
    let mut without_created = 0usize;
    let mut without_metrics = 0usize;
    struct Scoped<'a> {
        row: &'a crate::data::ConversationRow,
        company: usize,
        resp: Option<f64>,
        duration: Option<f64>,
    }
    let mut scoped = Vec::new();
    for conv in &data.conversations {
        let Some(created) = conv.created_at else {
            without_created += 1;
            continue;
        };
        if !window.contains(created) {
            continue;
        }
        in_window += 1;
        let Some(company) = pop.company_of(conv.first_company_name.as_deref()) else {
            unmapped += 1;
            continue;
        };
        let resp = match response.get(conv.conversation_id.as_str()) {
            Some(r) => *r,
            None => {
                without_metrics += 1;
                None
            }
        };
        let duration = conv.last_close_at.map(|c| {
            (c - created).num_microseconds().unwrap_or(i64::MAX) as f64 / MICROS_PER_MINUTE
        });
        scoped.push(Scoped {
            row: conv,
            company,
            resp,
            duration,
        });
    }
    if in_window == 0 {
        return Err(MetricsError::empty_window(&window));
    }

    // §2.4: P1/P99 over the in-scope conversations, non-null values only.
    let bounds = |vals: Vec<f64>| -> Bounds {
        let mut v = vals;
        v.sort_by(f64::total_cmp);
        Bounds {
            p1: percentile(&v, 0.01),
            p99: percentile(&v, 0.99),
            values: v.len(),
        }
    };
    let resp_bounds = bounds(scoped.iter().filter_map(|s| s.resp).collect());
    let dur_bounds = bounds(scoped.iter().filter_map(|s| s.duration).collect());
    let inside = |v: Option<f64>, b: &Bounds| match (v, b.p1, b.p99) {
        (Some(v), Some(lo), Some(hi)) => lo <= v && v <= hi,
        _ => true,
    };
    let kept: Vec<Kept> = scoped
        .iter()
        .filter(|s| inside(s.resp, &resp_bounds) && inside(s.duration, &dur_bounds))
        .map(|s| Kept {
            company: s.company,
            resp: s.resp,
            duration: s.duration,
            close: s.row.last_close_at.map(|t| t.timestamp_micros()),
            bot: s.row.bot_first,
            team: s.row.team_routed,
            inbound: s.row.contact_inbound,
        })
        .collect();

    // Company aggregates.
    let mut agg = Aggregates::of(&kept, companies.len());
    let companies_in_scope = {
        let mut s: Vec<usize> = scoped.iter().map(|s| s.company).collect();
        s.sort_unstable();
        s.dedup();
        s.len()
    };

    // Conversion: a feature event in (close, close + 72 h] after a kept closed conversation.
    let feature_times = feature_event_times(data, companies, &agg, params.usage);
    for k in &kept {
        let Some(c) = k.close else { continue };
        let a = agg.get_mut(k.company).expect("aggregated above");
        if a.converted {
            continue;
        }
        if let Some(times) = feature_times.get(k.company) {
            let i = times.partition_point(|&t| t <= c);
            a.converted = times
                .get(i)
                .is_some_and(|&t| t <= c + CONVERSION_HORIZON_MICROS);
        }
    }

    // Retention inputs.
    match params.usage {
        UsageDefinitions::Proxy => {
            let mut by_id: HashMap<&str, (Option<f64>, Option<f64>)> = HashMap::default();
            for m in &data.company_metrics {
                by_id
                    .entry(m.company_id.as_str())
                    .or_insert((m.retention_7d, m.retention_30d));
            }
            for (&ci, a) in agg.iter_mut() {
                if let Some(&(r7, r30)) = by_id.get(companies[ci].company_id.as_str()) {
                    a.ret7 = r7;
                    a.ret30 = r30;
                }
            }
        }
        UsageDefinitions::Events => {
            let (weeks, months) = full_periods(&window);
            let (nw, nm) = (weeks.len(), months.len());
            // Flat per-company activity rows (no allocation per company), and the week
            // of an event by arithmetic: the full weeks are consecutive.
            let slot = &agg.slot;
            let mut week_active = vec![false; agg.len() * nw];
            let mut month_active = vec![false; agg.len() * nm];
            let week0 = weeks.first().map_or(i64::MAX, |w| w.0);
            for e in data.usage_events.iter().flatten() {
                let n = slot[e.company];
                if !e.is_core || n == u32::MAX {
                    continue;
                }
                let n = n as usize;
                let t = e.occurred_at;
                if t >= week0 {
                    let i = ((t - week0) / WEEK_MICROS) as usize;
                    if i < nw {
                        week_active[n * nw + i] = true;
                    }
                }
                if let Some(i) = period_index(&months, t) {
                    month_active[n * nm + i] = true;
                }
            }
            for (n, a) in agg.aggs.iter_mut().enumerate() {
                a.week_pairs = period_pairs(&week_active[n * nw..(n + 1) * nw]);
                a.month_pairs = period_pairs(&month_active[n * nm..(n + 1) * nm]);
            }
        }
    }

    // Panels at every level.
    type Key = (u8, u8, u8);
    const ALL: u8 = u8::MAX;
    let levels: [fn(&Labels) -> Key; 7] = [
        |l| (l.segment, l.seat, l.arr),
        |l| (l.segment, l.seat, ALL),
        |l| (l.segment, ALL, l.arr),
        |l| (l.segment, ALL, ALL),
        |l| (ALL, l.seat, ALL),
        |l| (ALL, ALL, l.arr),
        |_| (ALL, ALL, ALL),
    ];
    // One pass into the finest cells (segment × seat × arr), then every level is a
    // roll-up of those cells: no per-level pass over the conversations.
    const CELLS: usize = (SEGMENTS.len() + 1) * (SEAT_BUCKETS.len() + 1) * (ARR_BUCKETS.len() + 1);
    let cell_index = |l: &Labels| {
        (l.segment as usize * (SEAT_BUCKETS.len() + 1) + l.seat as usize) * (ARR_BUCKETS.len() + 1)
            + l.arr as usize
    };
    let mut company_cell: Vec<usize> = vec![usize::MAX; companies.len()];
    let mut cell_labels: Vec<Option<Labels>> = vec![None; CELLS];
    for (&ci, l) in &labels {
        company_cell[ci] = cell_index(l);
        cell_labels[cell_index(l)] = Some(*l);
    }
    let mut cell_acc: Vec<ConvAcc> = (0..CELLS).map(|_| ConvAcc::default()).collect();
    let mut cell_resp: Vec<Vec<f64>> = vec![Vec::new(); CELLS];
    for k in &kept {
        let c = company_cell[k.company];
        let acc = &mut cell_acc[c];
        acc.n += 1;
        acc.bot += usize::from(k.bot);
        acc.team += usize::from(k.team);
        acc.inbound += usize::from(k.inbound);
        if let Some(d) = k.duration {
            acc.dur_sum += d;
            acc.dur_n += 1;
        }
        if let Some(r) = k.resp {
            cell_resp[c].push(r);
        }
    }
    let mut cell_comps: Vec<Vec<&CompanyAgg>> = vec![Vec::new(); CELLS];
    for (ci, a) in agg.iter() {
        cell_comps[company_cell[*ci]].push(a);
    }
    let mut panels: Vec<Vec<SliceRow>> = Vec::with_capacity(levels.len());
    for key_of in levels {
        let mut groups: BTreeMap<Key, Vec<usize>> = BTreeMap::new();
        for (c, l) in cell_labels.iter().enumerate() {
            if let Some(l) = l {
                if cell_acc[c].n > 0 {
                    groups.entry(key_of(l)).or_default().push(c);
                }
            }
        }
        let rows = groups
            .into_iter()
            .map(|(key, cells)| {
                let mut acc = ConvAcc::default();
                let mut resp = Vec::new();
                let mut comps: Vec<&CompanyAgg> = Vec::new();
                for &c in &cells {
                    acc.add(&cell_acc[c]);
                    resp.extend_from_slice(&cell_resp[c]);
                    comps.extend_from_slice(&cell_comps[c]);
                }
                resp.sort_unstable_by(f64::total_cmp);
                slice_row(key, &acc, &resp, &comps, params.usage)
            })
            .collect();
        panels.push(rows);
    }
    let overall = panels[6]
        .pop()
        .expect("a non-empty kept set has an overall row");
    let mut it = panels.into_iter();
    let mut next = || it.next().expect("seven levels");
    let panels = Panels {
        segment_seat_arr: next(),
        segment_seat: next(),
        segment_arr: next(),
        segment: next(),
        seat_bucket: next(),
        arr_bucket: next(),
        overall,
    };

    let correlations = correlations(&panels.segment_seat_arr, &agg, params.min_cell);
    let tertiles = tertiles(&agg, &labels, companies, params);

    let mut coverage = [Coverage::default(); 3];
    for l in labels.values() {
        for (c, src) in coverage
            .iter_mut()
            .zip([l.segment_src, l.seat_src, l.arr_src])
        {
            match src {
                LabelSource::Tag => c.tag += 1,
                LabelSource::Fallback => c.fallback += 1,
            }
        }
    }

    Ok(ConversationUsage {
        window,
        usage_source: params.usage,
        counts: Counts {
            conversations_in_window: in_window,
            conversations_in_scope: scoped.len(),
            conversations_kept: kept.len(),
            conversations_excluded: scoped.len() - kept.len(),
            companies_paying: pop.paying.len(),
            companies_in_scope,
            companies_kept: agg.len(),
        },
        thresholds: Thresholds {
            response_minutes: resp_bounds,
            duration_minutes: dur_bounds,
        },
        panels,
        correlations,
        tertiles,
        data_quality: DataQuality {
            conversations_total: data.conversations.len(),
            conversations_without_created_at: without_created,
            unmapped_conversations: unmapped,
            in_scope_without_metrics_row: without_metrics,
            companies_total: companies.len(),
            companies_non_paying: companies.len() - pop.paying.len(),
            coverage_segment: coverage[0],
            coverage_seat_bucket: coverage[1],
            coverage_arr_bucket: coverage[2],
            duplicate_names: pop.duplicate_names,
            bad_timestamps: data.bad_timestamps.clone(),
        },
        min_cell: params.min_cell,
    })
}

#[derive(Default)]
struct ConvAcc {
    n: usize,
    bot: usize,
    team: usize,
    inbound: usize,
    dur_sum: f64,
    dur_n: usize,
}

impl ConvAcc {
    fn add(&mut self, o: &ConvAcc) {
        self.n += o.n;
        self.bot += o.bot;
        self.team += o.team;
        self.inbound += o.inbound;
        self.dur_sum += o.dur_sum;
        self.dur_n += o.dur_n;
    }
}

fn slice_row(
    key: (u8, u8, u8),
    acc: &ConvAcc,
    sorted_resp: &[f64],
    comps: &[&CompanyAgg],
    usage: UsageDefinitions,
) -> SliceRow {
    let name = |i: u8, f: fn(u8) -> &'static str| (i != u8::MAX).then(|| f(i));
    let closed = comps.iter().filter(|c| c.closed > 0).count();
    let converted = comps.iter().filter(|c| c.closed > 0 && c.converted).count();
    let (weekly, monthly) = retention(comps, usage);
    SliceRow {
        segment: name(key.0, segment_name),
        seat_bucket: name(key.1, seat_name),
        arr_bucket: name(key.2, arr_name),
        companies_total: comps.len(),
        companies_with_closed_conv: closed,
        conv_cnt: acc.n,
        avg_resp: mean(sorted_resp.iter().copied()),
        p50_resp: percentile(sorted_resp, 0.5),
        p90_resp: percentile(sorted_resp, 0.9),
        avg_duration: (acc.dur_n > 0).then(|| acc.dur_sum / acc.dur_n as f64),
        bot_first_resp_share: ratio(acc.bot, acc.n),
        conv_to_feature_rate: ratio(converted, closed),
        weekly_retention: weekly,
        monthly_retention: monthly,
        team_route_share: ratio(acc.team, acc.n),
        contact_inbound_share: ratio(acc.inbound, acc.n),
    }
}

/// Weekly and monthly retention of a set of companies under the run's definitions.
fn retention(comps: &[&CompanyAgg], usage: UsageDefinitions) -> (Option<f64>, Option<f64>) {
    match usage {
        UsageDefinitions::Proxy => (
            mean(comps.iter().filter_map(|c| c.ret7)),
            mean(comps.iter().filter_map(|c| c.ret30)),
        ),
        UsageDefinitions::Events => {
            let sum = |f: fn(&CompanyAgg) -> (usize, usize)| {
                let (n, d) = comps
                    .iter()
                    .fold((0, 0), |(n, d), c| (n + f(c).0, d + f(c).1));
                ratio(n, d)
            };
            (sum(|c| c.week_pairs), sum(|c| c.month_pairs))
        }
    }
}

/// Sorted feature-event times per paying company with kept conversations.
fn feature_event_times(
    data: &ConversationUsageData,
    companies: &[CompanyRow],
    agg: &Aggregates,
    usage: UsageDefinitions,
) -> Vec<Vec<i64>> {
    let mut out: Vec<Vec<i64>> = vec![Vec::new(); companies.len()];
    match usage {
        UsageDefinitions::Events => {
            let mut wanted = vec![false; companies.len()];
            for &ci in agg.keys() {
                wanted[ci] = true;
            }
            for e in data.usage_events.iter().flatten() {
                if wanted[e.company] {
                    out[e.company].push(e.occurred_at);
                }
            }
        }
        UsageDefinitions::Proxy => {
            // Every company carrying a name gets the contacts of that name.
            let mut by_name: HashMap<String, Vec<usize>> = HashMap::default();
            for &ci in agg.keys() {
                if let Some(n) = companies[ci].company_name.as_deref() {
                    by_name.entry(normalize_name(n)).or_default().push(ci);
                }
            }
            for contact in &data.contacts {
                let Some(t) = contact.last_activity else {
                    continue;
                };
                let mut names: Vec<&str> =
                    contact.company_names.iter().map(String::as_str).collect();
                names.sort_unstable();
                names.dedup();
                for n in names {
                    for &ci in by_name.get(n).into_iter().flatten() {
                        out[ci].push(t.timestamp_micros());
                    }
                }
            }
        }
    }
    for v in &mut out {
        v.sort_unstable();
    }
    out
}

fn correlations(cells: &[SliceRow], agg: &Aggregates, min_cell: usize) -> Correlations {
    let used: Vec<&SliceRow> = cells
        .iter()
        .filter(|r| r.companies_total >= min_cell)
        .collect();
    let corr = |x: fn(&SliceRow) -> Option<f64>, y: fn(&SliceRow) -> Option<f64>| {
        let pairs: Vec<(f64, f64)> = used.iter().filter_map(|r| Some((x(r)?, y(r)?))).collect();
        Correlation {
            r: pearson(&pairs),
            n: pairs.len(),
        }
    };
    // In company order already.
    let closed: Vec<(&usize, &CompanyAgg)> = agg.iter().filter(|(_, a)| a.closed > 0).collect();
    let conv = |a: &CompanyAgg| if a.converted { 1.0 } else { 0.0 };
    let bot_pairs: Vec<(f64, f64)> = closed
        .iter()
        .map(|(_, a)| (a.bot_share(), conv(a)))
        .collect();
    let resp_pairs: Vec<(f64, f64)> = closed
        .iter()
        .filter_map(|(_, a)| Some((a.avg_resp()?, conv(a))))
        .collect();
    Correlations {
        cells_used: used.len(),
        bot_share_vs_conversion: corr(|r| r.bot_first_resp_share, |r| r.conv_to_feature_rate),
        avg_resp_vs_conversion: corr(|r| r.avg_resp, |r| r.conv_to_feature_rate),
        bot_share_vs_weekly_retention: corr(|r| r.bot_first_resp_share, |r| r.weekly_retention),
        bot_share_vs_monthly_retention: corr(|r| r.bot_first_resp_share, |r| r.monthly_retention),
        company_bot_share_vs_converted: Correlation {
            r: pearson(&bot_pairs),
            n: bot_pairs.len(),
        },
        company_avg_resp_vs_converted: Correlation {
            r: pearson(&resp_pairs),
            n: resp_pairs.len(),
        },
    }
}

/// Sizes ⌈n/3⌉, ⌈(n−⌈n/3⌉)/2⌉, rest.
pub fn tertile_sizes(n: usize) -> [usize; 3] {
    let a = n.div_ceil(3);
    let b = (n - a).div_ceil(2);
    [a, b, n - a - b]
}

fn tertiles(
    agg: &Aggregates,
    labels: &HashMap<usize, Labels>,
    companies: &[CompanyRow],
    params: Params,
) -> Vec<TertileGroup> {
    // Sort keys computed once per company, not in every comparison.
    struct Member<'a> {
        bot: f64,
        resp: Option<f64>,
        /// The id's first 16 bytes, big-endian: orders like the id itself, without a
        /// pointer chase per comparison (shares have many ties).
        prefix: u128,
        id: &'a str,
        agg: &'a CompanyAgg,
    }
    impl Member<'_> {
        fn by_id(&self, other: &Self) -> std::cmp::Ordering {
            self.prefix
                .cmp(&other.prefix)
                .then_with(|| self.id.cmp(other.id))
        }
    }
    fn prefix(id: &str) -> u128 {
        let mut b = [0u8; 16];
        let n = id.len().min(16);
        b[..n].copy_from_slice(&id.as_bytes()[..n]);
        u128::from_be_bytes(b)
    }
    let mut groups: BTreeMap<(u8, u8), Vec<Member<'_>>> = BTreeMap::new();
    for (&ci, a) in agg.iter() {
        if a.closed > 0 {
            let l = &labels[&ci];
            groups.entry((l.segment, l.arr)).or_default().push(Member {
                bot: a.bot_share(),
                resp: a.avg_resp(),
                prefix: prefix(&companies[ci].company_id),
                id: companies[ci].company_id.as_str(),
                agg: a,
            });
        }
    }
    let mut out = Vec::new();
    for ((seg, arr), mut members) in groups {
        if members.len() < params.tertile_min_companies {
            continue;
        }
        members.sort_unstable_by(|a, b| a.bot.total_cmp(&b.bot).then_with(|| a.by_id(b)));
        let by_bot: Vec<&CompanyAgg> = members.iter().map(|m| m.agg).collect();
        members.retain(|m| m.resp.is_some());
        members.sort_unstable_by(|a, b| {
            let (x, y) = (a.resp.unwrap_or(0.0), b.resp.unwrap_or(0.0));
            x.total_cmp(&y).then_with(|| a.by_id(b))
        });
        let by_resp: Vec<&CompanyAgg> = members.iter().map(|m| m.agg).collect();
        for (by, names, ordered) in [
            ("bot_share", ["low", "mid", "high"], by_bot),
            ("avg_resp", ["fast", "mid", "slow"], by_resp),
        ] {
            let mut rest = ordered.as_slice();
            for (size, name) in tertile_sizes(ordered.len()).into_iter().zip(names) {
                let (part, tail) = rest.split_at(size);
                rest = tail;
                let comps: &[&CompanyAgg] = part;
                out.push(TertileGroup {
                    segment: segment_name(seg),
                    arr_bucket: arr_name(arr),
                    by,
                    group: name,
                    n: comps.len(),
                    mean_bot_share: mean(comps.iter().map(|c| c.bot_share())),
                    mean_avg_resp: mean(comps.iter().filter_map(|c| c.avg_resp())),
                    conversion: mean(comps.iter().map(|c| if c.converted { 1.0 } else { 0.0 })),
                    weekly_retention: retention(comps, params.usage).0,
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests;
