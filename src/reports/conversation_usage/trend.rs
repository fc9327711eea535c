//! The headline metrics month by month over the last twelve months the data covers
//! up to the window's end: each month is the same report computed on that calendar
//! month (the last one cut at the window's end), so a point is what a run on that
//! month prints. Months before the first conversation are left out; a month that
//! cannot be computed keeps its place, empty, with the reason.

use serde::Serialize;

use super::load::ConversationUsageData;
use super::metrics::{self, ConversationUsage, Params};
use crate::intercom::window::Window;
use crate::reports::MetricsError;

/// How many months a trend covers at most.
pub const MONTHS: u32 = 12;

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Trend {
    pub months: Vec<Month>,
}

/// One month of the trend.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Month {
    /// `YYYY-MM`.
    pub month: String,
    pub window: Window,
    /// Whether the month overlaps the report's window.
    pub in_window: bool,
    /// Whether the month is cut short by the window's end.
    pub partial: bool,
    pub conversations: Option<usize>,
    pub p50_resp: Option<f64>,
    pub bot_first_resp_share: Option<f64>,
    /// Bot-first conversations (k of `conversations`).
    pub bot_first_k: Option<usize>,
    pub conv_to_feature_rate: Option<f64>,
    /// Converting companies of the companies with a closed conversation.
    pub conversion_k: Option<usize>,
    pub conversion_n: Option<usize>,
    pub weekly_retention: Option<f64>,
    /// Companies the weekly retention rests on.
    pub weekly_n: Option<usize>,
    /// Why the month has no numbers.
    pub empty_reason: Option<String>,
}

/// The window to load so that every trend month and `comparison` can be computed
/// from one load.
pub fn span(window: &Window, comparison: Option<&Window>) -> Window {
    window.history_span(MONTHS, comparison)
}

/// The trend of `window` from rows loaded over (at least) [`span`].
pub fn trend(data: &ConversationUsageData, window: &Window, params: Params) -> Trend {
    let mut months: Vec<Month> = Vec::new();
    for (label, w) in window.months_up_to_end(MONTHS) {
        let month = match metrics::compute(data, w, params) {
            Ok(r) => point(label, w, window, &r),
            // Months before the data begins are not part of what it covers.
            Err(MetricsError::EmptyWindow { .. }) if months.is_empty() => continue,
            Err(e) => Month {
                empty_reason: Some(e.to_string()),
                ..point_empty(label, w, window)
            },
        };
        months.push(month);
    }
    Trend { months }
}

fn point_empty(month: String, w: Window, window: &Window) -> Month {
    Month {
        month,
        in_window: w.overlaps(window),
        partial: w.cut_short_by(window),
        window: w,
        conversations: None,
        p50_resp: None,
        bot_first_resp_share: None,
        bot_first_k: None,
        conv_to_feature_rate: None,
        conversion_k: None,
        conversion_n: None,
        weekly_retention: None,
        weekly_n: None,
        empty_reason: None,
    }
}

fn point(month: String, w: Window, window: &Window, r: &ConversationUsage) -> Month {
    let o = &r.panels.overall;
    let conversion = o.conv_to_feature_rate.is_some();
    let weekly = o.weekly_retention.is_some();
    Month {
        conversations: Some(o.conv_cnt),
        p50_resp: o.p50_resp,
        bot_first_resp_share: o.bot_first_resp_share,
        bot_first_k: o.bot_first_resp_share.map(|_| o.counts.bot),
        conv_to_feature_rate: o.conv_to_feature_rate,
        conversion_k: conversion.then_some(o.counts.converted),
        conversion_n: conversion.then_some(o.companies_with_closed_conv),
        weekly_retention: o.weekly_retention,
        weekly_n: weekly.then_some(o.counts.weekly_companies),
        ..point_empty(month, w, window)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::timestamp::parse;
    use chrono_tz::Tz;

    fn w(a: &str, b: &str) -> Window {
        Window {
            start: parse(a, Tz::UTC).unwrap(),
            end: parse(b, Tz::UTC).unwrap(),
        }
    }

    #[test]
    fn the_span_reaches_back_to_the_earliest_month_or_comparison() {
        let window = w("2024-04-01 00:00:00", "2024-06-15 23:59:59");
        let s = span(&window, None);
        assert_eq!(s.start, parse("2023-07-01 00:00:00", Tz::UTC).unwrap());
        assert_eq!(s.end, window.end);
        let long = w("2021-01-01 00:00:00", "2021-12-31 23:59:59");
        let s = span(&window, Some(&long));
        assert_eq!(s.start, long.start);
        let months = window.months_up_to_end(MONTHS);
        assert_eq!(months.len(), 12);
        assert_eq!(months[0].0, "2023-07");
        assert_eq!(months[11].0, "2024-06");
        assert_eq!(months[11].1.end, window.end);
        assert_eq!(
            months[10].1,
            w("2024-05-01 00:00:00", "2024-05-31 23:59:59")
        );
        let june = point_empty(months[11].0.clone(), months[11].1, &window);
        assert!(june.partial && june.in_window);
        let may = point_empty(months[10].0.clone(), months[10].1, &window);
        assert!(!may.partial && may.in_window);
        let march = point_empty(months[8].0.clone(), months[8].1, &window);
        assert!(!march.in_window);
    }
}
