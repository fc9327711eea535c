//! conversation-usage's trend: its headline metrics month by month
//! ([`crate::reports::trend`]), each month the report computed on that month alone.

use serde::Serialize;

use super::load::ConversationUsageData;
use super::metrics::{self, Params};
use crate::intercom::window::Window;
use crate::reports::trend::{months, Month};

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Trend {
    pub months: Vec<Month<Point>>,
}

/// The headline metrics of one month (all empty when it has no numbers).
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Point {
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
}

/// The trend of `window` from rows loaded over (at least) its history span.
pub fn trend(data: &ConversationUsageData, window: &Window, params: Params) -> Trend {
    Trend {
        months: months(window, Point::default, |w| {
            let r = metrics::compute(data, w, params)?;
            let o = &r.panels.overall;
            let conversion = o.conv_to_feature_rate.is_some();
            let weekly = o.weekly_retention.is_some();
            Ok(Point {
                conversations: Some(o.conv_cnt),
                p50_resp: o.p50_resp,
                bot_first_resp_share: o.bot_first_resp_share,
                bot_first_k: o.bot_first_resp_share.map(|_| o.counts.bot),
                conv_to_feature_rate: o.conv_to_feature_rate,
                conversion_k: conversion.then_some(o.counts.converted),
                conversion_n: conversion.then_some(o.companies_with_closed_conv),
                weekly_retention: o.weekly_retention,
                weekly_n: weekly.then_some(o.counts.weekly_companies),
            })
        }),
    }
}
