//! The slices of a company (`report-conversation-usage.md` §3): segment from its tags,
//! seat bucket from its user count, ARR bucket from its spend, and their names.

use std::collections::BTreeMap;

use super::mapping::Mapping;
use super::{split_items, CompanyRow};

pub const SEGMENTS: [&str; 4] = ["new_contract", "renewal", "expansion", "churn_watch"];
pub const SEAT_BUCKETS: [&str; 5] = ["under_60", "60_129", "130_259", "260_419", "420_plus"];
pub const ARR_BUCKETS: [&str; 5] = ["under_30k", "30k_65k", "65k_110k", "110k_200k", "200k_plus"];
pub const UNKNOWN: &str = "unknown";

/// Where a company's label came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LabelSource {
    Tag,
    /// A company column the mapping names.
    Column,
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

/// A label value as users spell it, in the spec's form: lower case, spaces and dashes
/// as `_`, `$` and `,` dropped, a trailing `+` as `_plus` (`Churn Watch` →
/// `churn_watch`, `60-129` → `60_129`, `$30k–$65k` → `30k_65k`, `420+` → `420_plus`).
pub fn label_form(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for ch in v.trim().chars() {
        match ch {
            '$' | ',' => {}
            ' ' | '-' | '–' | '—' | '_' => {
                if !out.is_empty() && !out.ends_with('_') {
                    out.push('_');
                }
            }
            c => out.extend(c.to_lowercase()),
        }
    }
    let out = out.trim_end_matches('_');
    match out.strip_suffix('+') {
        Some(head) => format!("{}_plus", head.trim_end_matches('_')),
        None => out.to_owned(),
    }
}

/// The label a value names: the user's own name through `values` (compared without
/// case), else the value itself, both in [`label_form`] (`Churn Watch`,
/// `churn-watch` and `churn_watch` are one segment); `None` when it is none of
/// `allowed`.
pub fn label_of(v: &str, values: &BTreeMap<String, String>, allowed: &[&str]) -> Option<u8> {
    let v = v.trim();
    let named = values
        .iter()
        .find(|(from, _)| from.trim().eq_ignore_ascii_case(v))
        .map_or(v, |(_, to)| to.as_str());
    let form = label_form(named);
    allowed.iter().position(|a| *a == form).map(|i| i as u8)
}

/// The value after `prefix` (compared without case) of a tag, if it has it.
pub fn after_prefix<'t>(tag: &'t str, prefix: &str) -> Option<&'t str> {
    let head = tag.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| tag[prefix.len()..].trim())
}

fn tag_value(
    tags: Option<&str>,
    prefix: &str,
    values: &BTreeMap<String, String>,
    allowed: &[&str],
) -> Option<u8> {
    let tags = tags?;
    split_items(tags).find_map(|t| label_of(after_prefix(t, prefix)?, values, allowed))
}

/// The spec's bounds: a bucket starts at its bound (`60_129` is 60 ≤ seats < 130).
pub const SEAT_BOUNDS: [i64; 4] = [60, 130, 260, 420];
pub const ARR_BOUNDS: [f64; 4] = [30_000.0, 65_000.0, 110_000.0, 200_000.0];

pub fn seat_bucket_of(user_count: Option<i64>) -> u8 {
    seat_bucket_in(&SEAT_BOUNDS, user_count)
}

pub fn arr_bucket_of(arr: f64) -> u8 {
    arr_bucket_in(&ARR_BOUNDS, arr)
}

/// The seat bucket of `user_count` under `bounds` (`len()`: unknown).
pub fn seat_bucket_in(bounds: &[i64; 4], user_count: Option<i64>) -> u8 {
    match user_count {
        None => SEAT_BUCKETS.len() as u8,
        Some(n) => bounds.iter().take_while(|b| n >= **b).count() as u8,
    }
}

/// The ARR bucket of `arr` under `bounds`.
/// A NaN ARR (not known: `paying = "all"`) is the unknown bucket.
pub fn arr_bucket_in(bounds: &[f64; 4], arr: f64) -> u8 {
    if arr.is_nan() {
        return ARR_BUCKETS.len() as u8;
    }
    bounds.iter().take_while(|b| arr >= **b).count() as u8
}

/// The bucket names in force: the spec's, or derived from a mapping's bounds the
/// same way the spec's are (`under_50`, `50_99`, …, `500_plus`; ARR in thousands:
/// `under_25k`, `25k_50k`, …).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Buckets {
    pub seat: &'static [&'static str; 5],
    pub arr: &'static [&'static str; 5],
}

impl Default for Buckets {
    fn default() -> Self {
        Self {
            seat: &SEAT_BUCKETS,
            arr: &ARR_BUCKETS,
        }
    }
}

impl Buckets {
    pub fn seat_name(&self, i: u8) -> &'static str {
        self.seat.get(i as usize).copied().unwrap_or(UNKNOWN)
    }
    pub fn arr_name(&self, i: u8) -> &'static str {
        self.arr.get(i as usize).copied().unwrap_or(UNKNOWN)
    }

    /// Names for `seat` and `arr` bounds. Names of moved bounds are made once per
    /// process and kept (a few strings per distinct mapping), so rows can carry
    /// `&'static str` names like the spec's.
    pub fn for_bounds(seat: &[i64; 4], arr: &[f64; 4]) -> Self {
        use std::collections::HashMap;
        use std::sync::{Mutex, OnceLock};
        type Key = (Vec<i64>, Vec<u64>);
        static MADE: OnceLock<Mutex<HashMap<Key, Buckets>>> = OnceLock::new();
        if *seat == SEAT_BOUNDS && *arr == ARR_BOUNDS {
            return Self::default();
        }
        let key = (seat.to_vec(), arr.iter().map(|a| a.to_bits()).collect());
        let mut made = MADE
            .get_or_init(Default::default)
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        *made.entry(key).or_insert_with(|| {
            let leak = |names: Vec<String>| -> &'static [&'static str; 5] {
                let v: Vec<&'static str> = names
                    .into_iter()
                    .map(|n| &*Box::leak(n.into_boxed_str()))
                    .collect();
                Box::leak(Box::new([v[0], v[1], v[2], v[3], v[4]]))
            };
            let k = |a: f64| {
                if a % 1000.0 == 0.0 {
                    format!("{}k", a / 1000.0)
                } else {
                    format!("{a}")
                }
            };
            Buckets {
                seat: leak(vec![
                    format!("under_{}", seat[0]),
                    format!("{}_{}", seat[0], seat[1] - 1),
                    format!("{}_{}", seat[1], seat[2] - 1),
                    format!("{}_{}", seat[2], seat[3] - 1),
                    format!("{}_plus", seat[3]),
                ]),
                arr: leak(vec![
                    format!("under_{}", k(arr[0])),
                    format!("{}_{}", k(arr[0]), k(arr[1])),
                    format!("{}_{}", k(arr[1]), k(arr[2])),
                    format!("{}_{}", k(arr[2]), k(arr[3])),
                    format!("{}_plus", k(arr[3])),
                ]),
            }
        })
    }
}

/// Tag wins, fallback otherwise; the first tag of a kind with an allowed value wins.
/// The tag prefixes are the mapping's.
pub fn classify(
    mapping: &Mapping,
    tags: Option<&str>,
    user_count: Option<i64>,
    monthly_spend: f64,
) -> Labels {
    let buckets = mapping.buckets();
    let seg = tag_value(
        tags,
        &mapping.segment_tag_prefix,
        &mapping.segment_values,
        &SEGMENTS,
    );
    let seat = tag_value(
        tags,
        &mapping.seat_tag_prefix,
        &mapping.seat_bucket_values,
        buckets.seat,
    );
    let arr = tag_value(
        tags,
        &mapping.arr_tag_prefix,
        &mapping.arr_bucket_values,
        buckets.arr,
    );
    let src = |o: Option<u8>| {
        if o.is_some() {
            LabelSource::Tag
        } else {
            LabelSource::Fallback
        }
    };
    Labels {
        segment: seg.unwrap_or(SEGMENTS.len() as u8),
        seat: seat.unwrap_or_else(|| seat_bucket_in(&mapping.seat_bounds, user_count)),
        arr: arr.unwrap_or_else(|| arr_bucket_in(&mapping.arr_bounds, 12.0 * monthly_spend)),
        segment_src: src(seg),
        seat_src: src(seat),
        arr_src: src(arr),
    }
}

/// A company's labels under `mapping`: a mapped column's value wins (when it is one of
/// the names), then the tag, then the fallback.
pub fn classify_company(mapping: &Mapping, c: &CompanyRow) -> Labels {
    let mut l = classify(
        mapping,
        c.tags.as_deref(),
        c.user_count,
        super::population::arr_of(c) / 12.0,
    );
    let value = |v: &Option<String>, values: &BTreeMap<String, String>, allowed: &[&str]| {
        label_of(v.as_deref()?, values, allowed)
    };
    if let Some(i) = value(&c.mapped.segment, &mapping.segment_values, &SEGMENTS) {
        (l.segment, l.segment_src) = (i, LabelSource::Column);
    }
    let buckets = mapping.buckets();
    if let Some(i) = value(
        &c.mapped.seat_bucket,
        &mapping.seat_bucket_values,
        buckets.seat,
    ) {
        (l.seat, l.seat_src) = (i, LabelSource::Column);
    }
    if let Some(i) = value(
        &c.mapped.arr_bucket,
        &mapping.arr_bucket_values,
        buckets.arr,
    ) {
        (l.arr, l.arr_src) = (i, LabelSource::Column);
    }
    l
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
