//! The slices of a company (`report-conversation-usage.md` §3): segment from its tags,
//! seat bucket from its user count, ARR bucket from its spend, and their names.

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
/// The tag prefixes are the mapping's.
pub fn classify(
    mapping: &Mapping,
    tags: Option<&str>,
    user_count: Option<i64>,
    monthly_spend: f64,
) -> Labels {
    let seg = tag_value(tags, &mapping.segment_tag_prefix, &SEGMENTS);
    let seat = tag_value(tags, &mapping.seat_tag_prefix, &SEAT_BUCKETS);
    let arr = tag_value(tags, &mapping.arr_tag_prefix, &ARR_BUCKETS);
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

/// A company's labels under `mapping`: a mapped column's value wins (when it is one of
/// the names), then the tag, then the fallback.
pub fn classify_company(mapping: &Mapping, c: &CompanyRow) -> Labels {
    let mut l = classify(
        mapping,
        c.tags.as_deref(),
        c.user_count,
        c.monthly_spend.unwrap_or(0.0),
    );
    let value = |v: &Option<String>, allowed: &[&str]| {
        let v = v.as_deref()?.trim();
        allowed.iter().position(|a| *a == v).map(|i| i as u8)
    };
    if let Some(i) = value(&c.mapped.segment, &SEGMENTS) {
        (l.segment, l.segment_src) = (i, LabelSource::Column);
    }
    if let Some(i) = value(&c.mapped.seat_bucket, &SEAT_BUCKETS) {
        (l.seat, l.seat_src) = (i, LabelSource::Column);
    }
    if let Some(i) = value(&c.mapped.arr_bucket, &ARR_BUCKETS) {
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
