//! conversation-usage's trend: its headline metrics month by month, each month the
//! report computed on that month alone (the months are the skeleton's,
//! [`crate::reports::windowed`]; a point is read here).

use serde::Serialize;

use super::metrics::ConversationUsage;
use crate::reports::trend::Month;

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

/// The point of one month from the report's numbers on that month.
pub fn point(r: &ConversationUsage) -> Point {
    let o = &r.panels.overall;
    let conversion = o.conv_to_feature_rate.is_some();
    let weekly = o.weekly_retention.is_some();
    Point {
        conversations: Some(o.conv_cnt),
        p50_resp: o.p50_resp,
        bot_first_resp_share: o.bot_first_resp_share,
        bot_first_k: o.bot_first_resp_share.map(|_| o.counts.bot),
        conv_to_feature_rate: o.conv_to_feature_rate,
        conversion_k: conversion.then_some(o.counts.converted),
        conversion_n: conversion.then_some(o.companies_with_closed_conv),
        weekly_retention: o.weekly_retention,
        weekly_n: weekly.then_some(o.counts.weekly_companies),
    }
}
