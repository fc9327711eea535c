//! `demo-data --describe`: the calibration figures of a demo database, computed from
//! the file with the report's own loader and metrics.

use std::path::Path;

use chrono::{DateTime, Datelike, Utc};

use super::demo_months;
use crate::reports::ReportError;

/// The calibration figures of a demo database (§8), computed from the file itself
/// with the report's own metrics, for `demo-data --describe`.
pub fn describe(path: &Path) -> Result<String, ReportError> {
    use crate::intercom::mapping::Mapping;
    use crate::reports::conversation_usage::load::{load_conversation_usage, UsageTables};
    use crate::reports::conversation_usage::metrics::{self, Params, UsageDefinitions};
    use crate::source::Database;
    use std::fmt::Write;

    let db = Database::open(&path.to_owned().into())?;
    let tz = chrono_tz::Tz::UTC;
    let now = crate::clock::Clock::now(&crate::clock::SystemClock);
    let latest = crate::reports::load::latest_conversation(&db, tz, now)?;
    let anchor = latest.at;
    let window = crate::reports::DEFAULT_WINDOW
        .parse::<crate::intercom::window::WindowSpec>()?
        .resolve(anchor, now, tz)?;
    let mut out = String::new();
    let w = &mut out;
    let proxy = load_conversation_usage(&db, tz, UsageTables::Proxy, window, &Mapping::default())?;
    let _ = writeln!(w, "demo database {}", path.display());
    let _ = writeln!(
        w,
        "MAX(conversation_created_at) = {}",
        anchor
            .map(crate::source::timestamp::format_utc)
            .unwrap_or_default()
    );
    let created: Vec<DateTime<Utc>> = proxy
        .conversations
        .iter()
        .filter_map(|c| c.created_at)
        .collect();
    let months = demo_months();
    let per_month: Vec<String> = months
        .iter()
        .map(|m| {
            let n = created
                .iter()
                .filter(|t| t.year() == m.year() && t.month() == m.month())
                .count();
            format!("{}: {n}", m.format("%Y-%m"))
        })
        .collect();
    let _ = writeln!(w, "conversations per month: {}", per_month.join(", "));
    let _ = writeln!(
        w,
        "earliest conversation: {}",
        created
            .iter()
            .min()
            .map(|t| crate::source::timestamp::format_utc(*t))
            .unwrap_or_default()
    );

    // What the data covers (a `--history-from` database starts at its cut).
    let _ = writeln!(
        w,
        "history: conversations {}",
        latest
            .span
            .map(|(first, last)| format!(
                "{} – {}",
                crate::source::timestamp::format_utc(first),
                crate::source::timestamp::format_utc(last)
            ))
            .unwrap_or_else(|| "none".to_owned())
    );

    let run = |data, usage| {
        metrics::compute(
            data,
            window,
            Params {
                usage,
                ..Params::default()
            },
        )
    };
    let p = run(&proxy, UsageDefinitions::Proxy)?;
    let _ = writeln!(
        w,
        "conversations in the default window ({}): {}",
        window.period(),
        p.counts.conversations_in_window
    );
    let pop = crate::intercom::population::Population::new(&proxy.companies);
    let mut seg = [0usize; 5];
    let mut seat = [0usize; 6];
    let mut arr = [0usize; 6];
    for &i in &pop.paying {
        let c = &proxy.companies[i];
        let l = crate::intercom::slices::classify(
            &Mapping::default(),
            c.tags.as_deref(),
            c.user_count,
            c.monthly_spend.unwrap_or(0.0),
        );
        seg[l.segment as usize] += 1;
        seat[l.seat as usize] += 1;
        arr[l.arr as usize] += 1;
    }
    let _ = writeln!(
        w,
        "paying companies: {} (non-paying: {})",
        pop.paying.len(),
        p.data_quality.companies_non_paying
    );
    let _ = writeln!(
        w,
        "segments: {}",
        labelled(&seg, crate::intercom::slices::segment_name)
    );
    let _ = writeln!(
        w,
        "seat buckets: {}",
        labelled(&seat, crate::intercom::slices::seat_name)
    );
    let _ = writeln!(
        w,
        "ARR buckets: {}",
        labelled(&arr, crate::intercom::slices::arr_name)
    );
    let _ = writeln!(
        w,
        "coverage tag/fallback: segment {}/{}, seat {}/{}, arr {}/{}",
        p.data_quality.coverage_segment.labelled(),
        p.data_quality.coverage_segment.fallback,
        p.data_quality.coverage_seat_bucket.labelled(),
        p.data_quality.coverage_seat_bucket.fallback,
        p.data_quality.coverage_arr_bucket.labelled(),
        p.data_quality.coverage_arr_bucket.fallback
    );
    for d in &p.data_quality.duplicate_names {
        let spends: Vec<String> = d
            .companies
            .iter()
            .map(|c| c.monthly_spend.to_string())
            .collect();
        let _ = writeln!(
            w,
            "duplicate name {:?}: monthly spend {}",
            d.companies[0].company_name,
            spends.join(" and ")
        );
    }
    let o = &p.panels.overall;
    let t = &p.thresholds.response_minutes;
    let _ = writeln!(
        w,
        "response minutes (kept): mean {:.1}, P50 {:.1}; thresholds P1 {:.1}, P99 {:.1}",
        o.avg_resp.unwrap_or(f64::NAN),
        o.p50_resp.unwrap_or(f64::NAN),
        t.p1.unwrap_or(f64::NAN),
        t.p99.unwrap_or(f64::NAN)
    );
    let _ = writeln!(
        w,
        "kept after P1/P99: {} conversations, {} companies (in scope {}, unmapped {})",
        p.counts.conversations_kept,
        p.counts.companies_kept,
        p.counts.conversations_in_scope,
        p.data_quality.unmapped_conversations
    );
    let cells: Vec<&metrics::SliceRow> = p
        .panels
        .segment_seat_arr
        .iter()
        .filter(|r| r.companies_total >= p.min_cell)
        .collect();
    let range = |f: fn(&metrics::SliceRow) -> Option<f64>| {
        let v: Vec<f64> = cells.iter().filter_map(|r| f(r)).collect();
        (
            v.iter().copied().fold(f64::INFINITY, f64::min),
            v.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        )
    };
    let (lo, hi) = range(|r| r.bot_first_resp_share);
    let _ = writeln!(
        w,
        "bot-first share: overall {:.3}, cells (≥{} companies) {lo:.3}–{hi:.3}",
        o.bot_first_resp_share.unwrap_or(f64::NAN),
        p.min_cell
    );
    let routing: Vec<String> = p
        .panels
        .segment
        .iter()
        .map(|r| {
            format!(
                "{} team {:.2}",
                r.segment.unwrap_or_default(),
                r.team_route_share.unwrap_or(f64::NAN)
            )
        })
        .collect();
    let _ = writeln!(w, "routing: {}", routing.join(", "));
    let _ = writeln!(
        w,
        "contact_inbound share: {:.3}",
        o.contact_inbound_share.unwrap_or(f64::NAN)
    );
    let named = |r: &metrics::ConversationUsage, s: &str, seat: &str, a: &str| {
        r.panels
            .segment_seat_arr
            .iter()
            .find(|c| {
                c.segment == Some(s) && c.seat_bucket == Some(seat) && c.arr_bucket == Some(a)
            })
            .map_or("n/a".to_owned(), |c| {
                format!(
                    "{:.3} of {}",
                    c.conv_to_feature_rate.unwrap_or(f64::NAN),
                    c.companies_with_closed_conv
                )
            })
    };
    let (lo, hi) = range(|r| r.conv_to_feature_rate.filter(|v| *v > 0.0));
    let _ = writeln!(w, "proxy conversion: overall {:.3}; non-zero cells {lo:.3}–{hi:.3}; new_contract|260_419|110k_200k {}; churn_watch|420_plus|200k_plus {}",
        o.conv_to_feature_rate.unwrap_or(f64::NAN), named(&p, "new_contract", "260_419", "110k_200k"), named(&p, "churn_watch", "420_plus", "200k_plus"));
    let ret = |rows: &[metrics::SliceRow], name: fn(&metrics::SliceRow) -> Option<&'static str>| {
        rows.iter()
            .map(|r| {
                format!(
                    "{} {:.3}/{:.3}",
                    name(r).unwrap_or_default(),
                    r.weekly_retention.unwrap_or(f64::NAN),
                    r.monthly_retention.unwrap_or(f64::NAN)
                )
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    let _ = writeln!(
        w,
        "proxy retention weekly/monthly by segment: {}",
        ret(&p.panels.segment, |r| r.segment)
    );
    let _ = writeln!(
        w,
        "proxy retention weekly/monthly by seat: {}",
        ret(&p.panels.seat_bucket, |r| r.seat_bucket)
    );
    if db.has_table(crate::intercom::USAGE_EVENTS)? {
        let ev =
            load_conversation_usage(&db, tz, UsageTables::Events, window, &Mapping::default())?;
        let e = run(&ev, UsageDefinitions::Events)?;
        let _ = writeln!(w, "events conversion: overall {:.3}; new_contract|260_419|110k_200k {}; churn_watch|420_plus|200k_plus {}",
            e.panels.overall.conv_to_feature_rate.unwrap_or(f64::NAN), named(&e, "new_contract", "260_419", "110k_200k"), named(&e, "churn_watch", "420_plus", "200k_plus"));
        let _ = writeln!(
            w,
            "events retention weekly/monthly by segment: {}",
            ret(&e.panels.segment, |r| r.segment)
        );
        let _ = writeln!(
            w,
            "events retention weekly/monthly by seat: {}",
            ret(&e.panels.seat_bucket, |r| r.seat_bucket)
        );
    }
    Ok(out)
}

fn labelled(counts: &[usize], name: fn(u8) -> &'static str) -> String {
    counts
        .iter()
        .enumerate()
        .filter(|(_, n)| **n > 0)
        .map(|(i, n)| format!("{} {n}", name(i as u8)))
        .collect::<Vec<_>>()
        .join(", ")
}
