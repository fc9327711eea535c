//! The numbers of the `conversation-usage` report (spec §2–§5): population, P1/P99
//! exclusion, tag-with-fallback slices, every column of the slice panel at every level,
//! correlations, tertile groups and the data-quality counts.
//!
//! Why this file is long (about 1,200 lines): §2–§5 are one computation whose passes
//! (window, mapping, P1/P99, usage, conversion, panels, correlations, tertiles) share
//! private compact accumulators sized for millions of rows (`docs/performance.md`);
//! splitting it would make those accumulators public to other modules for no reader's
//! gain. The output types come first, then the passes in the order `compute` runs them.
//!
//! Pure functions from loaded rows to serde structs: no IO, no clock. Two independent
//! implementations of the spec must agree on these numbers, ties and edge cases
//! included, so every rule below cites the spec's wording where it is subtle.

use std::collections::BTreeMap;

// Hot maps keyed by ids and names: a fast non-cryptographic hash (the keys are data,
// not attacker-chosen per request) and a fixed iteration order.
use rustc_hash::FxHashMap as HashMap;

use serde::Serialize;

use super::load::{ConversationRow, ConversationUsageData, NoneMatched};
use crate::intercom::population::{is_paying, DuplicateName, Population};
use crate::intercom::slices::{
    classify_company, segment_name, Buckets, LabelSource, Labels, ARR_BUCKETS, SEAT_BUCKETS,
    SEGMENTS,
};
use crate::intercom::window::Window;
use crate::intercom::{normalize_name, Assignee, CompanyRow};
use crate::reports::MetricsError;
use crate::source::interner::StrColumn;
use crate::source::{BadTimestamps, RowsRead};
use crate::stats::{correlation, mean, percentiles, ratio, thirds, Correlation};

const MICROS_PER_MINUTE: f64 = 60_000_000.0;
const CONVERSION_HORIZON_MICROS: i64 = 72 * 3_600 * 1_000_000;

/// Which definitions of conversion and retention a run used (spec §4 `usage_source`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum UsageDefinitions {
    Events,
    Proxy,
    /// Neither `usage_events` nor the proxy columns exist (dbt_intercom as built):
    /// conversion and retention are empty, the rest of the report is computed.
    None,
}

/// Why conversion and retention are empty in a run (all of their values, in every
/// slice): the reason every printer states in their place, never a 0.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum UsageEmpty {
    /// Neither `usage_events` nor the proxy columns exist ([`UsageDefinitions::None`]).
    NoSource,
    /// The events were read and not one of the window's is a company's.
    NoneMatched(NoneMatched),
}

impl UsageEmpty {
    /// The key of its sentences in the strings files and templates.
    pub fn key(&self) -> &'static str {
        match self {
            Self::NoSource => "no_source",
            Self::NoneMatched(_) => "none_matched",
        }
    }
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
// Outputs

/// What the bot-first share measures: the `first_response:` tags, or, when no
/// conversation in scope carries one (dbt_intercom as built), the bot-initiated proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BotMeasure {
    FirstResponseTags,
    BotInitiatedProxy,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ConversationUsage {
    pub window: Window,
    /// The seat and ARR bucket names in force, in order (the spec's unless the
    /// mapping moved the bounds).
    #[serde(skip)]
    pub buckets: Buckets,
    pub usage_source: UsageDefinitions,
    /// Why conversion and retention are empty, when they are (summary.json: absent
    /// when they are computed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage_empty: Option<UsageEmpty>,
    /// What `bot_first_resp_share` measures in this run.
    pub bot_first_measure: BotMeasure,
    pub counts: Counts,
    pub thresholds: Thresholds,
    pub panels: Panels,
    pub correlations: Correlations,
    pub tertiles: Vec<TertileGroup>,
    pub data_quality: DataQuality,
    pub min_cell: usize,
    /// Rows read per table (the appendix and the manifest; not a summary number).
    #[serde(skip)]
    pub rows_read: RowsRead,
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
    /// The counts behind the rates, for the claims rules (not a column of §4).
    #[serde(skip)]
    pub counts: SliceCounts,
}

/// What a slice's rates rest on: the numerators (k of n), the response sample's
/// spread, the companies behind each retention and the slice's ARR.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct SliceCounts {
    /// Companies with a closed kept conversation that converted.
    pub converted: usize,
    /// Kept conversations that are bot-first / team-routed / customer-initiated.
    pub bot: usize,
    pub team: usize,
    pub inbound: usize,
    /// Non-null response minutes and their sample variance.
    pub resp_n: usize,
    pub resp_var: Option<f64>,
    /// Kept conversations not closed (no close time) by the end of the data.
    pub unclosed: usize,
    /// Companies whose weekly / monthly retention enters the rate: with events, those
    /// active in at least one period that has a next one; with proxies, those with a
    /// value. Retention is tested with these as the sample size (conservative:
    /// periods of one company are not independent).
    pub weekly_companies: usize,
    pub monthly_companies: usize,
    /// (active in p and p+1, active in p) summed over companies: the events-based
    /// retention's numerator and denominator (zero with proxies).
    pub week_pairs: (usize, usize),
    pub month_pairs: (usize, usize),
    /// P25 of the response minutes (a time the team meets for a quarter of them).
    pub p25_resp: Option<f64>,
    /// 12 × monthly spend summed over companies_total.
    pub arr: f64,
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

impl ConversationUsage {
    /// The definitions conversion and retention were computed with: none when they are
    /// empty ([`Self::usage_empty`]), whatever source was read.
    pub fn usage(&self) -> UsageDefinitions {
        if self.usage_empty.is_some() {
            UsageDefinitions::None
        } else {
            self.usage_source
        }
    }
}

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

impl Panels {
    /// Every row of every level, the overall row last.
    fn rows_mut(&mut self) -> impl Iterator<Item = &mut SliceRow> {
        self.segment_seat_arr
            .iter_mut()
            .chain(&mut self.segment_seat)
            .chain(&mut self.segment_arr)
            .chain(&mut self.segment)
            .chain(&mut self.seat_bucket)
            .chain(&mut self.arr_bucket)
            .chain(std::iter::once(&mut self.overall))
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
    /// Labelled by a tag of the mapping's prefix.
    pub tag: usize,
    /// Labelled by the mapping's column (absent from summary.json when none is).
    #[serde(skip_serializing_if = "is_zero")]
    pub column: usize,
    pub fallback: usize,
}

impl Coverage {
    /// Companies with a label of their own, tag or column.
    pub fn labelled(&self) -> usize {
        self.tag + self.column
    }

    pub fn total(&self) -> usize {
        self.labelled() + self.fallback
    }

    fn count(&mut self, src: LabelSource) {
        match src {
            LabelSource::Tag => self.tag += 1,
            LabelSource::Column => self.column += 1,
            LabelSource::Fallback => self.fallback += 1,
        }
    }
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// Where the labels of some companies came from, per label value: one entry per
/// segment (then `unknown`), per seat bucket and per ARR bucket (each then `unknown`),
/// in the label arrays' order.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct BucketCoverage {
    pub segment: Vec<Coverage>,
    pub seat_bucket: Vec<Coverage>,
    pub arr_bucket: Vec<Coverage>,
}

/// The label sources of the companies `analysed` (indexes into `labels`), per label
/// value; a company without labels (not paying) counts nowhere.
pub fn bucket_coverage(
    labels: &[Option<Labels>],
    analysed: impl Iterator<Item = usize>,
) -> BucketCoverage {
    let mut b = BucketCoverage {
        segment: vec![Coverage::default(); SEGMENTS.len() + 1],
        seat_bucket: vec![Coverage::default(); SEAT_BUCKETS.len() + 1],
        arr_bucket: vec![Coverage::default(); ARR_BUCKETS.len() + 1],
    };
    for l in analysed.filter_map(|i| labels.get(i).copied().flatten()) {
        for (counts, value, src) in [
            (&mut b.segment, l.segment, l.segment_src),
            (&mut b.seat_bucket, l.seat, l.seat_src),
            (&mut b.arr_bucket, l.arr, l.arr_src),
        ] {
            if let Some(c) = counts.get_mut(value as usize) {
                c.count(src);
            }
        }
    }
    b
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
    /// The same per label value, on the analysed companies (those with kept
    /// conversations).
    pub analysed_coverage: BucketCoverage,
    pub duplicate_names: Vec<DuplicateName>,
    pub bad_timestamps: BadTimestamps,
    /// Usage events whose company is NULL or matches no company (`None`: the run
    /// used no events).
    pub usage_events_unmatched: Option<u64>,
    /// Conversations in the window and usage events of companies outside the
    /// edition's scope: another edition's, left out of every other count (`None`:
    /// the run has no scope; the events' also without events).
    pub conversations_outside_scope: Option<usize>,
    pub usage_events_outside_scope: Option<u64>,
    /// Conversations whose company name could be read two ways (`Acme, Inc.` when
    /// `Acme` is a company too); the longer known name was taken.
    pub ambiguous_company_names: u64,
}

// ---------------------------------------------------------------------------
// Computation

/// A conversation that passed the window, mapping and P1/P99 filters.
struct Kept {
    /// The paying company; before the population is known, the conversation's
    /// company name (its number in `company_names`).
    company: u32,
    bot: bool,
    /// `bot` came from a `first_response:` tag.
    bot_tagged: bool,
    team: Assignee,
    inbound: bool,
    /// The conversation has no `intercom__conversation_metrics` row.
    no_metrics_row: bool,
    /// NaN: none (SQLite has no NaN, and a duration is never NaN).
    resp: f64,
    duration: f64,
    /// last_close_at in micros; `i64::MIN` when the conversation is not closed.
    close: i64,
}

impl Kept {
    /// `resp`: the conversation's metrics row's response (`None`: no row).
    fn new(
        company: u32,
        resp: Option<Option<f64>>,
        duration: Option<f64>,
        row: &ConversationRow,
    ) -> Self {
        Self {
            company,
            bot: row.bot_first,
            bot_tagged: row.bot_tagged,
            team: row.assignee,
            inbound: row.contact_inbound,
            no_metrics_row: resp.is_none(),
            resp: resp.flatten().unwrap_or(f64::NAN),
            duration: duration.unwrap_or(f64::NAN),
            close: row.last_close_at.map_or(i64::MIN, |t| t.timestamp_micros()),
        }
    }
    fn company(&self) -> usize {
        self.company as usize
    }
    fn resp(&self) -> Option<f64> {
        (!self.resp.is_nan()).then_some(self.resp)
    }
    fn duration(&self) -> Option<f64> {
        (!self.duration.is_nan()).then_some(self.duration)
    }
    fn close(&self) -> Option<i64> {
        (self.close != i64::MIN).then_some(self.close)
    }
}

/// Per paying company, over its kept conversations. 64 bytes: hundreds of thousands
/// are written once, and fresh memory is what large runs pay for most.
#[derive(Clone)]
struct CompanyAgg {
    counts: KeptCounts,
    /// Proxy retentions; NaN: none (SQLite has no NaN).
    ret7: f64,
    ret30: f64,
    /// (active in p and p+1, active in p), over full weeks / months of the window.
    week_pairs: (u32, u32),
    month_pairs: (u32, u32),
    converted: bool,
}

impl Default for CompanyAgg {
    fn default() -> Self {
        Self {
            counts: KeptCounts::default(),
            ret7: f64::NAN,
            ret30: f64::NAN,
            week_pairs: (0, 0),
            month_pairs: (0, 0),
            converted: false,
        }
    }
}

const _: () = assert!(std::mem::size_of::<CompanyAgg>() <= 64);

/// A company's kept conversations, counted. Its own 24-byte record: the conversations
/// come in any company order, so counting them is random access, and a record a third
/// the size of the whole aggregate stays in cache.
#[derive(Default, Clone, Copy)]
struct KeptCounts {
    resp_sum: f64,
    kept: u32,
    closed: u32,
    bot: u32,
    resp_n: u32,
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
        let mut n = 0;
        for k in kept {
            let s = &mut slot[k.company()];
            n += usize::from(*s == u32::MAX);
            *s = 0;
        }
        let mut companies = Vec::with_capacity(n);
        for (ci, s) in slot.iter_mut().enumerate() {
            if *s == 0 {
                *s = companies.len() as u32;
                companies.push(ci);
            }
        }
        let mut counts = vec![KeptCounts::default(); companies.len()];
        for k in kept {
            let a = &mut counts[slot[k.company()] as usize];
            a.kept += 1;
            a.closed += u32::from(k.close().is_some());
            a.bot += u32::from(k.bot);
            if let Some(r) = k.resp() {
                a.resp_sum += r;
                a.resp_n += 1;
            }
        }
        let aggs = counts
            .into_iter()
            .map(|counts| CompanyAgg {
                counts,
                ..CompanyAgg::default()
            })
            .collect();
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
}

impl CompanyAgg {
    fn bot_share(&self) -> f64 {
        self.counts.bot as f64 / self.counts.kept as f64
    }
    fn avg_resp(&self) -> Option<f64> {
        let c = &self.counts;
        (c.resp_n > 0).then(|| c.resp_sum / c.resp_n as f64)
    }
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

const WEEK_MICROS: i64 = 7 * 24 * 3600 * 1_000_000;

/// (active in p and p+1, active in p) summed over consecutive periods.
fn period_pairs(active: &[bool]) -> (u32, u32) {
    active.windows(2).fold((0, 0), |(num, den), w| {
        (num + u32::from(w[0] && w[1]), den + u32::from(w[0]))
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
    let declared = params.usage;
    let usage_empty = match (&data.usage_none_matched, params.usage) {
        (_, UsageDefinitions::None) => Some(UsageEmpty::NoSource),
        (Some(n), _) => Some(UsageEmpty::NoneMatched(n.clone())),
        _ => None,
    };
    // Events that are nobody's leave conversion and retention empty, as no source does.
    let params = Params {
        usage: if usage_empty.is_some() {
            UsageDefinitions::None
        } else {
            params.usage
        },
        ..params
    };
    let companies = &data.companies;
    let buckets = data.mapping.buckets();
    // The population (names → companies) and the labels on one core; on the other,
    // the response join and the window pass, which keeps the company *name* of each
    // conversation until the population is ready.
    let mut in_window = 0usize;
    let mut unmapped = 0usize;
    let mut nameless = 0usize;
    let mut without_created = 0usize;
    // In-scope conversations, compact; filtered in place from here on (millions of
    // rows: no second vector).
    let mut kept: Vec<Kept> = Vec::new();
    let (pop, labels) = std::thread::scope(|scope| {
        // The companies' names were numbered first at load: name numbers lead to
        // companies through a vector, no string is hashed here.
        let population = scope.spawn(|| {
            let (pop, labels) = data.prepared.get_or_init(|| {
                let pop =
                    Population::numbered(companies, &data.company_name_ids, &data.company_names);
                // Dense, by company index: looked up per conversation and per company.
                let labels: Vec<Option<Labels>> = companies
                    .iter()
                    .map(|c| is_paying(c).then(|| classify_company(&data.mapping, c)))
                    .collect();
                (pop, labels)
            });
            (pop, labels.as_slice())
        });
        let response = Responses::new(
            &data.conversation_ids,
            &data.metrics_ids,
            &data.response_minutes,
        );
        for (i, conv) in data.conversations.iter().enumerate() {
            let Some(created) = conv.created_at else {
                without_created += 1;
                continue;
            };
            if !window.contains(created) {
                continue;
            }
            in_window += 1;
            let Some(name) = conv.first_company_name else {
                unmapped += 1;
                nameless += 1;
                continue;
            };
            let resp = response.get(i, data.conversation_ids.get(i));
            let duration = conv.last_close_at.map(|c| {
                (c - created).num_microseconds().unwrap_or(i64::MAX) as f64 / MICROS_PER_MINUTE
            });
            kept.push(Kept::new(name, resp, duration, conv));
        }
        drop(response);
        population
            .join()
            .expect("the population builder does not panic")
    });
    if in_window == 0 {
        return Err(MetricsError::empty_window(&window));
    }
    // Names → paying companies: what maps is in scope.
    kept.retain_mut(|k| match pop.company_of_name(k.company) {
        None => {
            unmapped += 1;
            false
        }
        Some(c) => {
            k.company = c as u32;
            true
        }
    });
    if kept.is_empty() {
        return Err(MetricsError::NothingMapped {
            report: super::NAME,
            cause: if pop.paying.is_empty() {
                "no paying company (none has monthly_spend, or the mapping's spend_column, above 0)"
            } else if nameless == in_window {
                "no conversation names a company in all_contact_company_names"
            } else {
                "the company names on the window's conversations match no paying company"
            },
        });
    }
    let without_metrics = kept.iter().filter(|k| k.no_metrics_row).count();
    let resp_values: Vec<f64> = kept.iter().filter_map(Kept::resp).collect();
    let dur_values: Vec<f64> = kept.iter().filter_map(Kept::duration).collect();
    let scoped_len = kept.len();
    let companies_in_scope = {
        let mut seen = vec![false; companies.len()];
        kept.iter()
            .filter(|k| !std::mem::replace(&mut seen[k.company()], true))
            .count()
    };

    // §2.4: P1/P99 over the in-scope conversations, non-null values only.
    let bounds = |mut v: Vec<f64>| -> Bounds {
        let [p1, p99] = percentiles(&mut v, [0.01, 0.99]);
        Bounds {
            p1,
            p99,
            values: v.len(),
        }
    };
    let resp_bounds = bounds(resp_values);
    let dur_bounds = bounds(dur_values);
    let inside = |v: Option<f64>, b: &Bounds| match (v, b.p1, b.p99) {
        (Some(v), Some(lo), Some(hi)) => lo <= v && v <= hi,
        _ => true,
    };
    kept.retain(|k| inside(k.resp(), &resp_bounds) && inside(k.duration(), &dur_bounds));
    if kept.is_empty() {
        return Err(MetricsError::NothingKept {
            report: super::NAME,
            conversations: scoped_len,
        });
    }

    // Company aggregates.
    let mut agg = Aggregates::of(&kept, companies.len());

    // Conversion: a feature event in (close, close + 72 h] after a kept closed
    // conversation. The feature events stream past the (much fewer) close times.
    if params.usage != UsageDefinitions::None {
        let converted = converted_companies(data, companies, &kept, &agg, params.usage);
        for (&ci, a) in agg.iter_mut() {
            a.converted = converted[ci];
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
                    a.ret7 = r7.unwrap_or(f64::NAN);
                    a.ret30 = r30.unwrap_or(f64::NAN);
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
            for (company, stamps) in data.usage_events.iter().flat_map(|e| e.runs()) {
                let n = slot[company as usize];
                if n == u32::MAX {
                    continue;
                }
                let (week, month) = (
                    &mut week_active[n as usize * nw..(n as usize + 1) * nw],
                    &mut month_active[n as usize * nm..(n as usize + 1) * nm],
                );
                for s in stamps.iter().filter(|s| s.is_core()) {
                    let t = s.micros();
                    if t >= week0 {
                        let i = ((t - week0) / WEEK_MICROS) as usize;
                        if i < nw {
                            week[i] = true;
                        }
                    }
                    if let Some(i) = period_index(&months, t) {
                        month[i] = true;
                    }
                }
            }
            for (n, a) in agg.aggs.iter_mut().enumerate() {
                a.week_pairs = period_pairs(&week_active[n * nw..(n + 1) * nw]);
                a.month_pairs = period_pairs(&month_active[n * nm..(n + 1) * nm]);
            }
        }
        UsageDefinitions::None => {}
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
    const _: () = assert!(CELLS < u8::MAX as usize);
    let cell_index = |l: &Labels| {
        (l.segment as usize * (SEAT_BUCKETS.len() + 1) + l.seat as usize) * (ARR_BUCKETS.len() + 1)
            + l.arr as usize
    };
    // A byte per company (there are fewer cells than 255), read per conversation.
    let mut company_cell: Vec<u8> = vec![u8::MAX; companies.len()];
    let mut cell_labels: Vec<Option<Labels>> = vec![None; CELLS];
    for (ci, l) in labels.iter().enumerate() {
        let Some(l) = l else { continue };
        company_cell[ci] = cell_index(l) as u8;
        cell_labels[cell_index(l)] = Some(*l);
    }
    let mut cell_acc: Vec<ConvAcc> = (0..CELLS).map(|_| ConvAcc::default()).collect();
    for k in &kept {
        let acc = &mut cell_acc[company_cell[k.company()] as usize];
        acc.n += 1;
        acc.bot += usize::from(k.bot);
        acc.team += usize::from(k.team == Assignee::Team);
        acc.inbound += usize::from(k.inbound);
        acc.resp_n += usize::from(k.resp().is_some());
        acc.unclosed += usize::from(k.close().is_none());
        if let Some(d) = k.duration() {
            acc.dur_sum += d;
            acc.dur_n += 1;
        }
    }
    // Sized by the count above: no growing (and copying) of million-value vectors.
    let mut cell_resp: Vec<Vec<f64>> = cell_acc
        .iter()
        .map(|a| Vec::with_capacity(a.resp_n))
        .collect();
    for k in &kept {
        if let Some(r) = k.resp() {
            cell_resp[company_cell[k.company()] as usize].push(r);
        }
    }
    // One buffer for every slice of every level.
    let mut resp: Vec<f64> = Vec::with_capacity(kept.len());
    let mut cell_comps: Vec<CompAcc> = vec![CompAcc::default(); CELLS];
    for (ci, a) in agg.iter() {
        let arr = crate::intercom::population::arr_of(&companies[*ci]);
        cell_comps[company_cell[*ci] as usize].add(a, arr);
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
                let mut comps = CompAcc::default();
                resp.clear();
                for &c in &cells {
                    acc.add(&cell_acc[c]);
                    resp.extend_from_slice(&cell_resp[c]);
                    comps.merge(&cell_comps[c]);
                }
                slice_row(key, &acc, &mut resp, &comps, params.usage, &buckets)
            })
            .collect();
        panels.push(rows);
    }
    let overall = panels[6]
        .pop()
        .expect("a non-empty kept set has an overall row");
    let mut it = panels.into_iter();
    let mut next = || it.next().expect("seven levels");
    let mut panels = Panels {
        segment_seat_arr: next(),
        segment_seat: next(),
        segment_arr: next(),
        segment: next(),
        seat_bucket: next(),
        arr_bucket: next(),
        overall,
    };
    // The assignee column is deprecated upstream: when no kept conversation has a
    // value, team routing is unknown, not 0 % (§4).
    if kept.iter().all(|k| k.team == Assignee::Unknown) {
        for row in panels.rows_mut() {
            row.team_route_share = None;
        }
    }

    // Without any first_response tag in scope, the share is the bot-initiated proxy
    // and every output says so (§4).
    let bot_first_measure = if kept.iter().any(|k| k.bot_tagged) {
        BotMeasure::FirstResponseTags
    } else {
        BotMeasure::BotInitiatedProxy
    };

    let correlations = correlations(&panels.segment_seat_arr, &agg, params.min_cell);
    let tertiles = tertiles(&agg, labels, companies, params, &buckets);

    let mut coverage = [Coverage::default(); 3];
    for l in labels.iter().flatten() {
        for (c, src) in coverage
            .iter_mut()
            .zip([l.segment_src, l.seat_src, l.arr_src])
        {
            c.count(src);
        }
    }

    Ok(ConversationUsage {
        window,
        buckets,
        usage_source: declared,
        usage_empty,
        bot_first_measure,
        counts: Counts {
            conversations_in_window: in_window,
            conversations_in_scope: scoped_len,
            conversations_kept: kept.len(),
            conversations_excluded: scoped_len - kept.len(),
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
            conversations_total: data
                .conversation_counts
                .map_or(data.conversations.len(), |c| c.total as usize),
            conversations_without_created_at: without_created
                + data
                    .conversation_counts
                    .map_or(0, |c| c.without_created_at as usize),
            unmapped_conversations: unmapped,
            in_scope_without_metrics_row: without_metrics,
            usage_events_unmatched: data.usage_events.as_ref().map(|e| e.unmatched),
            conversations_outside_scope: data
                .outside_scope
                .as_ref()
                .map(|times| times.iter().filter(|t| window.contains(**t)).count()),
            usage_events_outside_scope: data
                .usage_events
                .as_ref()
                .filter(|_| data.outside_scope.is_some())
                .map(|e| e.outside_scope),
            ambiguous_company_names: data.ambiguous_names,
            companies_total: companies.len(),
            companies_non_paying: companies.len() - pop.paying.len(),
            coverage_segment: coverage[0],
            coverage_seat_bucket: coverage[1],
            coverage_arr_bucket: coverage[2],
            analysed_coverage: bucket_coverage(labels, agg.keys().copied()),
            duplicate_names: pop.duplicate_names.clone(),
            bad_timestamps: data.bad_timestamps.clone(),
        },
        min_cell: params.min_cell,
        rows_read: data.rows_read.clone(),
    })
}

/// Each conversation's `time_to_first_response_minutes`: the first metrics row of its
/// id wins; `None` when it has no metrics row.
enum Responses<'a> {
    /// Both tables in ascending id order (as a dbt model ordered by its key, and the
    /// demo, are): one merge pass, per conversation position, instead of an index of
    /// millions of ids.
    Merged(Vec<Option<Option<f64>>>),
    /// Any other order: an index by id.
    Indexed(HashMap<&'a str, Option<f64>>),
}

impl<'a> Responses<'a> {
    fn new(
        conversation_ids: &StrColumn,
        metrics_ids: &'a StrColumn,
        response_minutes: &[Option<f64>],
    ) -> Self {
        fn ascending<'s>(mut ids: impl Iterator<Item = &'s str>) -> bool {
            let Some(mut prev) = ids.next() else {
                return true;
            };
            ids.all(|id| std::mem::replace(&mut prev, id) <= id)
        }
        let metrics = metrics_ids.iter().zip(response_minutes.iter().copied());
        if !(ascending(conversation_ids.iter()) && ascending(metrics_ids.iter())) {
            let mut index =
                HashMap::with_capacity_and_hasher(metrics_ids.len(), Default::default());
            for (id, r) in metrics {
                index.entry(id).or_insert(r);
            }
            return Self::Indexed(index);
        }
        let mut metrics = metrics.peekable();
        let merged = conversation_ids
            .iter()
            .map(|id| {
                while metrics.next_if(|&(m, _)| m < id).is_some() {}
                // Equal ids sit together, the table's first one next.
                metrics.peek().filter(|&&(m, _)| m == id).map(|&(_, r)| r)
            })
            .collect();
        Self::Merged(merged)
    }

    /// The response of conversation number `i`, whose id is `id`.
    fn get(&self, i: usize, id: &str) -> Option<Option<f64>> {
        match self {
            Self::Merged(by_position) => by_position[i],
            Self::Indexed(index) => index.get(id).copied(),
        }
    }
}

#[derive(Default)]
struct ConvAcc {
    n: usize,
    resp_n: usize,
    unclosed: usize,
    bot: usize,
    team: usize,
    inbound: usize,
    dur_sum: f64,
    dur_n: usize,
}

impl ConvAcc {
    fn add(&mut self, o: &ConvAcc) {
        self.n += o.n;
        self.resp_n += o.resp_n;
        self.unclosed += o.unclosed;
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
    resp: &mut [f64],
    comps: &CompAcc,
    usage: UsageDefinitions,
    buckets: &Buckets,
) -> SliceRow {
    let avg_resp = mean(resp.iter().copied());
    let [p25_resp, p50_resp, p90_resp] = percentiles(resp, [0.25, 0.5, 0.9]);
    let name = |i: u8, f: &dyn Fn(u8) -> &'static str| (i != u8::MAX).then(|| f(i));
    let (weekly, monthly) = comps.retention(usage);
    SliceRow {
        segment: name(key.0, &segment_name),
        seat_bucket: name(key.1, &|i| buckets.seat_name(i)),
        arr_bucket: name(key.2, &|i| buckets.arr_name(i)),
        companies_total: comps.companies,
        companies_with_closed_conv: comps.closed,
        conv_cnt: acc.n,
        avg_resp,
        p50_resp,
        p90_resp,
        avg_duration: (acc.dur_n > 0).then(|| acc.dur_sum / acc.dur_n as f64),
        bot_first_resp_share: ratio(acc.bot, acc.n),
        conv_to_feature_rate: if usage == UsageDefinitions::None {
            None
        } else {
            ratio(comps.converted, comps.closed)
        },
        weekly_retention: weekly,
        monthly_retention: monthly,
        team_route_share: ratio(acc.team, acc.n),
        contact_inbound_share: ratio(acc.inbound, acc.n),
        counts: SliceCounts {
            converted: comps.converted,
            bot: acc.bot,
            team: acc.team,
            inbound: acc.inbound,
            resp_n: resp.len(),
            unclosed: acc.unclosed,
            resp_var: avg_resp.filter(|_| resp.len() > 1).map(|m| {
                resp.iter().map(|v| (v - m) * (v - m)).sum::<f64>() / (resp.len() - 1) as f64
            }),
            weekly_companies: match usage {
                UsageDefinitions::Events => comps.week_companies,
                UsageDefinitions::Proxy => comps.ret7.1,
                UsageDefinitions::None => 0,
            },
            monthly_companies: match usage {
                UsageDefinitions::Events => comps.month_companies,
                UsageDefinitions::Proxy => comps.ret30.1,
                UsageDefinitions::None => 0,
            },
            week_pairs: comps.week_pairs,
            month_pairs: comps.month_pairs,
            p25_resp,
            arr: comps.arr,
        },
    }
}

/// Sums over a set of companies, from which their slice's company columns follow:
/// additive, so a level's slices are sums of their cells' sums.
#[derive(Default, Clone, Copy)]
struct CompAcc {
    companies: usize,
    closed: usize,
    /// Companies with a closed kept conversation that converted.
    converted: usize,
    week_pairs: (usize, usize),
    month_pairs: (usize, usize),
    /// Companies with at least one period pair (the retention's sample size).
    week_companies: usize,
    month_companies: usize,
    /// 12 × monthly spend.
    arr: f64,
    /// (sum, count) of the non-null proxy retentions.
    ret7: (f64, usize),
    ret30: (f64, usize),
}

impl CompAcc {
    fn of<'a>(comps: impl IntoIterator<Item = &'a CompanyAgg>) -> Self {
        let mut acc = Self::default();
        for c in comps {
            acc.add(c, 0.0);
        }
        acc
    }

    fn add(&mut self, c: &CompanyAgg, arr: f64) {
        let one = |v: f64| if v.is_nan() { (0.0, 0) } else { (v, 1) };
        let wide = |(a, b): (u32, u32)| (a as usize, b as usize);
        let closed = c.counts.closed > 0;
        self.merge(&CompAcc {
            companies: 1,
            closed: usize::from(closed),
            converted: usize::from(closed && c.converted),
            week_pairs: wide(c.week_pairs),
            month_pairs: wide(c.month_pairs),
            week_companies: usize::from(c.week_pairs.1 > 0),
            month_companies: usize::from(c.month_pairs.1 > 0),
            arr,
            ret7: one(c.ret7),
            ret30: one(c.ret30),
        });
    }

    fn merge(&mut self, o: &CompAcc) {
        self.companies += o.companies;
        self.closed += o.closed;
        self.converted += o.converted;
        self.week_pairs.0 += o.week_pairs.0;
        self.week_pairs.1 += o.week_pairs.1;
        self.month_pairs.0 += o.month_pairs.0;
        self.month_pairs.1 += o.month_pairs.1;
        self.week_companies += o.week_companies;
        self.month_companies += o.month_companies;
        self.arr += o.arr;
        self.ret7 = (self.ret7.0 + o.ret7.0, self.ret7.1 + o.ret7.1);
        self.ret30 = (self.ret30.0 + o.ret30.0, self.ret30.1 + o.ret30.1);
    }

    /// Weekly and monthly retention under the run's definitions.
    fn retention(&self, usage: UsageDefinitions) -> (Option<f64>, Option<f64>) {
        let mean = |(s, n): (f64, usize)| (n > 0).then(|| s / n as f64);
        match usage {
            UsageDefinitions::Proxy => (mean(self.ret7), mean(self.ret30)),
            UsageDefinitions::Events => (
                ratio(self.week_pairs.0, self.week_pairs.1),
                ratio(self.month_pairs.0, self.month_pairs.1),
            ),
            UsageDefinitions::None => (None, None),
        }
    }
}

/// Times per company, each company's run sorted: one flat array with offsets
/// (counted, then filled) rather than a vector per company.
struct TimesByCompany {
    /// Company `c`'s times are `times[start[c]..start[c + 1]]` (32-bit: looked up in
    /// company order per event, the smaller the better).
    start: Vec<u32>,
    times: Vec<i64>,
}

impl TimesByCompany {
    fn of(&self, company: usize) -> &[i64] {
        &self.times[self.start[company] as usize..self.start[company + 1] as usize]
    }

    /// Groups `(company, time)` pairs; `pairs` is called twice (count, then fill).
    /// Fewer than 2³² pairs (they are kept conversations).
    fn group<I: Iterator<Item = (usize, i64)>>(n_companies: usize, pairs: impl Fn() -> I) -> Self {
        let mut start = vec![0u32; n_companies + 1];
        for (c, _) in pairs() {
            start[c + 1] += 1;
        }
        for c in 0..n_companies {
            start[c + 1] += start[c];
        }
        let mut next = start.clone();
        let mut times = vec![0i64; start[n_companies] as usize];
        for (c, t) in pairs() {
            times[next[c] as usize] = t;
            next[c] += 1;
        }
        for c in 0..n_companies {
            times[start[c] as usize..start[c + 1] as usize].sort_unstable();
        }
        Self { start, times }
    }
}

/// Per company: whether a feature event follows one of its kept closed conversations
/// within 72 hours. Feature events: with `usage_events` any event of the company;
/// without it, the `last_activity_ts` of the contacts carrying the company's name.
fn converted_companies(
    data: &ConversationUsageData,
    companies: &[CompanyRow],
    kept: &[Kept],
    agg: &Aggregates,
    usage: UsageDefinitions,
) -> Vec<bool> {
    let closes = TimesByCompany::group(companies.len(), || {
        kept.iter().filter_map(|k| Some((k.company(), k.close()?)))
    });
    let mut converted = vec![false; companies.len()];
    // An event at `t` converts iff a close lies in [t − 72 h, t).
    let mut feature_event = |c: usize, t: i64| {
        if converted[c] {
            return;
        }
        let cs = closes.of(c);
        let i = cs.partition_point(|&x| x < t.saturating_sub(CONVERSION_HORIZON_MICROS));
        converted[c] = cs.get(i).is_some_and(|&x| x < t);
    };
    match usage {
        UsageDefinitions::Events => {
            for (company, stamps) in data.usage_events.iter().flat_map(|e| e.runs()) {
                for s in stamps {
                    feature_event(company as usize, s.micros());
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
            let mut names: Vec<&str> = Vec::new();
            for contact in &data.contacts {
                let Some(t) = contact.last_activity else {
                    continue;
                };
                names.clear();
                names.extend(contact.company_names.iter().map(String::as_str));
                names.sort_unstable();
                names.dedup();
                for n in &names {
                    for &ci in by_name.get(*n).into_iter().flatten() {
                        feature_event(ci, t.timestamp_micros());
                    }
                }
            }
        }
        UsageDefinitions::None => {}
    }
    converted
}

fn correlations(cells: &[SliceRow], agg: &Aggregates, min_cell: usize) -> Correlations {
    let used: Vec<&SliceRow> = cells
        .iter()
        .filter(|r| r.companies_total >= min_cell)
        .collect();
    let corr = |x: fn(&SliceRow) -> Option<f64>, y: fn(&SliceRow) -> Option<f64>| {
        correlation(|| used.iter().filter_map(move |r| Some((x(r)?, y(r)?))))
    };
    let conv = |a: &CompanyAgg| if a.converted { 1.0 } else { 0.0 };
    let closed = || agg.aggs.iter().filter(|a| a.counts.closed > 0);
    Correlations {
        cells_used: used.len(),
        bot_share_vs_conversion: corr(|r| r.bot_first_resp_share, |r| r.conv_to_feature_rate),
        avg_resp_vs_conversion: corr(|r| r.avg_resp, |r| r.conv_to_feature_rate),
        bot_share_vs_weekly_retention: corr(|r| r.bot_first_resp_share, |r| r.weekly_retention),
        bot_share_vs_monthly_retention: corr(|r| r.bot_first_resp_share, |r| r.monthly_retention),
        company_bot_share_vs_converted: correlation(|| closed().map(|a| (a.bot_share(), conv(a)))),
        company_avg_resp_vs_converted: correlation(|| {
            closed().filter_map(|a| Some((a.avg_resp()?, conv(a))))
        }),
    }
}

fn tertiles(
    agg: &Aggregates,
    labels: &[Option<Labels>],
    companies: &[CompanyRow],
    params: Params,
    buckets: &Buckets,
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
    // Counted first, so that each group's members are allocated once, at their number.
    let in_group = || {
        agg.iter()
            .filter(|(_, a)| a.counts.closed > 0)
            .map(|(&ci, a)| {
                let l = labels[ci].expect("kept conversations belong to paying companies");
                ((l.segment, l.arr), ci, a)
            })
    };
    let mut sizes: BTreeMap<(u8, u8), usize> = BTreeMap::new();
    for (key, _, _) in in_group() {
        *sizes.entry(key).or_default() += 1;
    }
    let mut groups: BTreeMap<(u8, u8), Vec<Member<'_>>> = sizes
        .into_iter()
        .map(|(key, n)| (key, Vec::with_capacity(n)))
        .collect();
    for (key, ci, a) in in_group() {
        if let Some(members) = groups.get_mut(&key) {
            members.push(Member {
                bot: a.bot_share(),
                resp: a.avg_resp(),
                prefix: prefix(&companies[ci].company_id),
                id: companies[ci].company_id.as_str(),
                agg: a,
            });
        }
    }
    let row = |(seg, arr): (u8, u8), by, group, part: &[Member<'_>]| TertileGroup {
        segment: segment_name(seg),
        arr_bucket: buckets.arr_name(arr),
        by,
        group,
        n: part.len(),
        mean_bot_share: mean(part.iter().map(|m| m.agg.bot_share())),
        mean_avg_resp: mean(part.iter().filter_map(|m| m.agg.avg_resp())),
        conversion: if params.usage == UsageDefinitions::None {
            None
        } else {
            mean(part.iter().map(|m| if m.agg.converted { 1.0 } else { 0.0 }))
        },
        weekly_retention: CompAcc::of(part.iter().map(|m| m.agg))
            .retention(params.usage)
            .0,
    };
    let mut out = Vec::new();
    for (key, mut members) in groups {
        if members.len() < params.tertile_min_companies {
            continue;
        }
        // Only the split into thirds matters, not the order inside a third: two
        // selections per ordering instead of a sort.
        let by_bot = thirds(&mut members, |a, b| {
            a.bot.total_cmp(&b.bot).then_with(|| a.by_id(b))
        });
        for (part, name) in by_bot.into_iter().zip(["low", "mid", "high"]) {
            out.push(row(key, "bot_share", name, part));
        }
        members.retain(|m| m.resp.is_some());
        let by_resp = thirds(&mut members, |a, b| {
            let (x, y) = (a.resp.unwrap_or(0.0), b.resp.unwrap_or(0.0));
            x.total_cmp(&y).then_with(|| a.by_id(b))
        });
        for (part, name) in by_resp.into_iter().zip(["fast", "mid", "slow"]) {
            out.push(row(key, "avg_resp", name, part));
        }
    }
    out
}

#[cfg(test)]
mod tests;
