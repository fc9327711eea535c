//! Findings and recommendations of the customer-segmentation report: the largest and
//! highest-ARR segments, the revenue at risk and its main inactive paths, training
//! and diversity lift, support load by engagement — each only when its condition
//! holds in the run's numbers.

use serde_json::json;

use super::metrics::{CrossRow, Path, Segmentation};
use crate::render::narrative::{Finding, Recommendation};

/// A lift smaller than this (fraction of the baseline's average ARR) is not a finding.
const MIN_LIFT: f64 = 0.05;
/// Average tickets must differ by this much between low and high engagement to read
/// as more (or less) support load; below it the load is flat.
const MIN_TICKET_GAP: f64 = 0.2;

/// Low-engagement users less active than this (fraction) below highly engaged ones are
/// worth re-engaging.
const MIN_ACTIVE_GAP: f64 = 0.05;

fn cell(c: &CrossRow) -> serde_json::Value {
    json!({ "portfolio_group": c.portfolio_group, "plan_type": c.plan_type })
}

fn path(p: &Path) -> serde_json::Value {
    json!({
        "portfolio_group": p.portfolio_group,
        "plan_type": p.plan_type,
        "engagement": p.engagement,
        "status": p.status,
    })
}

/// The inactive path holding the most ARR.
fn main_inactive_path(r: &Segmentation) -> Option<&Path> {
    r.paths
        .iter()
        .filter(|p| p.status == "inactive")
        .max_by(|a, b| a.total_arr.total_cmp(&b.total_arr))
}

fn dimension<'a>(
    r: &'a Segmentation,
    dim: &str,
    value: &str,
) -> Option<&'a super::metrics::DimensionRow> {
    r.dimensions
        .iter()
        .find(|d| d.dimension == dim && d.value == value)
}

pub fn findings(r: &Segmentation) -> Vec<Finding> {
    let mut out = Vec::new();
    if let Some(c) = r.portfolio_plan.iter().max_by(|a, b| {
        a.users
            .cmp(&b.users)
            .then_with(|| b.plan_type.cmp(&a.plan_type))
    }) {
        let mut x = Finding::new("largest_segment", 1);
        x.numbers.insert("users", c.users as f64);
        x.numbers.insert("share", c.share);
        x.numbers.insert("avg_arr", c.avg_arr);
        x.numbers.insert("arr_share", c.arr_share);
        x.slices.insert("cell", cell(c));
        out.push(x);
    }
    if let Some(c) = r
        .portfolio_plan
        .iter()
        .filter(|c| c.total_arr > 0.0)
        .max_by(|a, b| a.total_arr.total_cmp(&b.total_arr))
    {
        let mut x = Finding::new("top_arr_segment", 2);
        x.numbers.insert("total_arr", c.total_arr);
        x.numbers.insert("arr_share", c.arr_share);
        x.numbers.insert("share", c.share);
        x.numbers.insert("active_rate", c.active_rate);
        x.slices.insert("cell", cell(c));
        out.push(x);
    }
    if r.arr_at_risk > 0.0 {
        let mut x = Finding::new("arr_at_risk", 3);
        x.numbers.insert("arr", r.arr_at_risk);
        x.numbers.insert("users", r.inactive_users as f64);
        if r.total_arr > 0.0 {
            x.numbers.insert("share", r.arr_at_risk / r.total_arr);
        }
        if let Some(p) = main_inactive_path(r) {
            x.numbers.insert("path_arr", p.total_arr);
            x.numbers.insert("path_users", p.users as f64);
            x.slices.insert("path", path(p));
        }
        out.push(x);
    }
    let t = &r.training;
    if let (Some(lift), Some(pct)) = (t.arr_lift, t.arr_lift_pct) {
        if pct.abs() >= MIN_LIFT && t.with_users > 0 && t.without_users > 0 {
            let mut x = Finding::new("training_lift", 4);
            x.numbers.insert("lift", lift);
            x.numbers.insert("lift_pct", pct);
            x.numbers.insert("with_arr", t.with_avg_arr.unwrap_or(0.0));
            x.numbers
                .insert("without_arr", t.without_avg_arr.unwrap_or(0.0));
            if let (Some(a), Some(b)) = (t.with_active_rate, t.without_active_rate) {
                x.numbers.insert("with_active", a);
                x.numbers.insert("without_active", b);
            }
            x.keys
                .insert("direction", if lift > 0.0 { "up" } else { "down" });
            out.push(x);
        }
    }
    let d = &r.diversity;
    if let (Some(lift), Some(pct)) = (d.arr_lift, d.arr_lift_pct) {
        if pct.abs() >= MIN_LIFT && d.with_users > 0 && d.without_users > 0 {
            let mut x = Finding::new("diversity_lift", 5);
            x.numbers.insert("lift", lift);
            x.numbers.insert("lift_pct", pct);
            x.numbers.insert("high_arr", d.with_avg_arr.unwrap_or(0.0));
            x.numbers
                .insert("low_arr", d.without_avg_arr.unwrap_or(0.0));
            x.numbers.insert("high_users", d.with_users as f64);
            x.numbers.insert("low_users", d.without_users as f64);
            if let (Some(a), Some(b)) = (d.with_active_rate, d.without_active_rate) {
                x.numbers.insert("high_active", a);
                x.numbers.insert("low_active", b);
            }
            x.keys
                .insert("direction", if lift > 0.0 { "up" } else { "down" });
            out.push(x);
        }
    }
    if let (Some(low), Some(high)) = (
        dimension(r, "engagement", "low"),
        dimension(r, "engagement", "high"),
    ) {
        let mut x = Finding::new("support_by_engagement", 6);
        x.numbers.insert("low_tickets", low.avg_tickets);
        x.numbers.insert("high_tickets", high.avg_tickets);
        if let Some(medium) = dimension(r, "engagement", "medium") {
            x.numbers.insert("medium_tickets", medium.avg_tickets);
        }
        x.numbers.insert("low_active", low.active_rate);
        x.numbers.insert("high_active", high.active_rate);
        x.numbers.insert("low_users", low.users as f64);
        let gap = low.avg_tickets - high.avg_tickets;
        x.keys.insert(
            "direction",
            if gap.abs() < MIN_TICKET_GAP {
                "flat"
            } else if gap > 0.0 {
                "low_more"
            } else {
                "high_more"
            },
        );
        out.push(x);
    }
    out.sort_by_key(|f| f.rank);
    out
}

pub fn recommendations(r: &Segmentation, findings: &[Finding]) -> Vec<Recommendation> {
    let has = |id: &str| findings.iter().find(|f| f.id == id);
    let mut out = Vec::new();
    if has("arr_at_risk").is_some() {
        if let Some(p) = main_inactive_path(r) {
            let mut x = Recommendation::new("win_back", "arr_at_risk");
            x.numbers.insert("users", p.users as f64);
            x.numbers.insert("arr", p.total_arr);
            x.numbers.insert("avg_arr", p.avg_arr);
            x.slices.insert("path", path(p));
            out.push(x);
        }
    }
    if let Some(f) = has("training_lift") {
        if f.keys.get("direction") == Some(&"up") {
            let mut x = Recommendation::new("extend_training", "training_lift");
            let untrained_active =
                r.training.without_users as f64 * r.training.without_active_rate.unwrap_or(0.0);
            x.numbers.insert("users", untrained_active.round());
            x.numbers.insert("lift", f.numbers["lift"]);
            out.push(x);
        }
    }
    if let Some(f) = has("diversity_lift") {
        if f.keys.get("direction") == Some(&"up") {
            let mut x = Recommendation::new("broaden_usage", "diversity_lift");
            x.numbers.insert("users", r.diversity.without_users as f64);
            x.numbers.insert("lift", f.numbers["lift"]);
            out.push(x);
        }
    }
    if let Some(f) = has("top_arr_segment") {
        let mut x = Recommendation::new("protect_top_segment", "top_arr_segment");
        x.numbers.insert("arr_share", f.numbers["arr_share"]);
        x.numbers.insert("active_rate", f.numbers["active_rate"]);
        if let Some(c) = f.slices.get("cell") {
            x.slices.insert("cell", c.clone());
        }
        out.push(x);
    }
    if let Some(f) = has("support_by_engagement") {
        if f.keys.get("direction") == Some(&"low_more") {
            let mut x = Recommendation::new("onboard_low_engagement", "support_by_engagement");
            x.numbers.insert("users", f.numbers["low_users"]);
            x.numbers.insert("low_tickets", f.numbers["low_tickets"]);
            x.numbers.insert("high_tickets", f.numbers["high_tickets"]);
            out.push(x);
        } else if f.numbers["low_active"] + MIN_ACTIVE_GAP <= f.numbers["high_active"] {
            let mut x = Recommendation::new("reengage_low_engagement", "support_by_engagement");
            x.numbers.insert("users", f.numbers["low_users"]);
            x.numbers.insert("low_active", f.numbers["low_active"]);
            x.numbers.insert("high_active", f.numbers["high_active"]);
            out.push(x);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::metrics::{compute, EventRow, UserRow};
    use super::*;

    fn user(id: &str, portfolio: i64, plan: &str, arr: f64, active: bool, tickets: i64) -> UserRow {
        UserRow {
            user_id: id.into(),
            portfolio_size: Some(portfolio),
            plan_type: Some(plan.into()),
            annual_revenue: Some(arr),
            is_active: active,
            nps_score: Some(8.0),
            support_tickets: Some(tickets),
        }
    }

    fn events(user: &str, kinds: &[&str], n: usize) -> Vec<EventRow> {
        (0..n)
            .map(|i| EventRow {
                user_id: user.into(),
                event_type: kinds[i % kinds.len()].into(),
                event_time: crate::source::timestamp::parse(
                    "2024-06-01 00:00:00",
                    chrono_tz::Tz::UTC,
                )
                .ok(),
            })
            .collect()
    }

    #[test]
    fn findings_follow_the_data() {
        let users = vec![
            user("a", 3, "pro", 2_000.0, true, 0),
            user("b", 3, "pro", 2_000.0, false, 6),
            user("c", 12, "premium", 30_000.0, true, 0),
            user("d", 1, "starter", 500.0, true, 1),
        ];
        let kinds = ["login", "training_attended", "a", "b", "c", "d", "e"];
        let mut ev = events("c", &kinds, 40);
        ev.extend(events("a", &["login"], 20));
        let r = compute(&users, &ev);
        let f = findings(&r);
        let ids: Vec<&str> = f.iter().map(|x| x.id).collect();
        assert_eq!(
            ids,
            [
                "largest_segment",
                "top_arr_segment",
                "arr_at_risk",
                "training_lift",
                "diversity_lift",
                "support_by_engagement"
            ]
        );
        assert_eq!(f[0].slices["cell"]["plan_type"], "pro");
        assert_eq!(f[2].numbers["arr"], 2_000.0);
        assert_eq!(
            f[5].keys["direction"], "low_more",
            "b: low engagement, 6 tickets"
        );
        let recs = recommendations(&r, &f);
        let ids: Vec<&str> = recs.iter().map(|x| x.id).collect();
        assert_eq!(
            ids,
            [
                "win_back",
                "extend_training",
                "broaden_usage",
                "protect_top_segment",
                "onboard_low_engagement"
            ]
        );
    }

    #[test]
    fn conditions_that_do_not_hold_are_not_printed() {
        // Everyone active, nobody trained, equal usage: no risk, no lifts.
        let users = vec![
            user("a", 3, "pro", 2_000.0, true, 1),
            user("b", 3, "pro", 2_000.0, true, 1),
        ];
        let r = compute(&users, &[]);
        let ids: Vec<&str> = findings(&r).iter().map(|x| x.id).collect();
        assert_eq!(ids, ["largest_segment", "top_arr_segment"]);
    }

    #[test]
    fn flat_support_load_is_said_and_inactive_low_engagement_is_re_engaged() {
        let users = vec![
            user("low", 3, "pro", 2_000.0, false, 2),
            user("high", 3, "pro", 2_000.0, true, 2),
        ];
        let r = compute(&users, &events("high", &["login"], 40));
        let f = findings(&r);
        let s = f.iter().find(|x| x.id == "support_by_engagement").unwrap();
        assert_eq!(s.keys["direction"], "flat");
        let recs = recommendations(&r, &f);
        assert!(recs.iter().any(|x| x.id == "reengage_low_engagement"));
        assert!(!recs.iter().any(|x| x.id == "onboard_low_engagement"));
    }
}
