//! Findings and recommendations of the customer-segmentation report, under the
//! shared claims rules (`crate::stats::claims`): the revenue at risk and its main
//! inactive path, where revenue concentrates, the NPS gap between active and inactive
//! users, training and diversity lift (tested, and checked with the plan held fixed,
//! since the plan sets most of a user's ARR), support load and activity by
//! engagement. A comparison is called a difference only when it holds; every share of
//! ARR is of all users' ARR; opportunities are sized in dollars and labelled as
//! associations (upper bounds). An action whose lever a finding rejects is refused
//! (`claims::refusing_finding`), and each page-1 headline gets its action or a stated
//! no-action.
//!
//! Why this file is over 600 lines: a third of it is the tests, which build small
//! user sets by hand for each rule; the findings and the actions they license are one
//! argument and read best side by side.

use serde_json::json;

use super::metrics::{CrossRow, Impact, Path, Segmentation};
use crate::render::narrative::{Finding, Recommendation};
use crate::stats::claims::{
    compare, compare_means, derived_count, peer_target, refusing_finding, LeverReading, Proportion,
    Verdict, ALPHA,
};

/// How long the re-engagement pilot runs before the edition that checks it.
const PILOT_WEEKS: i64 = 8;

/// A peer group gives a target only from this many users.
const MIN_PEERS: usize = 30;

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

/// Active users of a cell (k of n).
fn active(c: &CrossRow) -> Option<Proportion> {
    Proportion::from_rate(Some(c.active_rate), c.users)
}

/// A lift that holds: the raw ARR difference passes Welch's test. `within` says
/// whether it also holds with the plan fixed (`holds`) or is the plan mix (`mix`).
fn lift_finding(id: &'static str, rank: u8, i: &Impact) -> Option<Finding> {
    let (lift, pct) = (i.arr_lift?, i.arr_lift_pct?);
    if i.arr_p? >= ALPHA {
        return None;
    }
    let mut x = Finding::new(id, rank);
    x.numbers.insert("lift", lift);
    x.numbers.insert("lift_pct", pct);
    x.numbers.insert("with_arr", i.with_avg_arr?);
    x.numbers.insert("without_arr", i.without_avg_arr?);
    x.numbers.insert("with_users", i.with_users as f64);
    x.numbers.insert("without_users", i.without_users as f64);
    x.keys
        .insert("direction", if lift > 0.0 { "up" } else { "down" });
    let within_holds = i.within_plan_p.is_some_and(|p| p < ALPHA)
        && i.within_plan_lift
            .is_some_and(|w| w.signum() == lift.signum());
    match i.within_plan_lift {
        Some(w) if within_holds => {
            x.numbers.insert("within_lift", w);
            x.keys.insert("within", "holds");
        }
        _ => {
            x.keys.insert("within", "mix");
            x.lead = false;
        }
    }
    if let (Some(a), Some(b)) = (i.with_active, i.without_active) {
        x.numbers.insert("with_active", a.rate());
        x.numbers.insert("without_active", b.rate());
        x.keys.insert("active", compare(a, b).key());
    }
    Some(x)
}

pub fn findings(r: &Segmentation) -> Vec<Finding> {
    let mut out = Vec::new();
    if r.arr_at_risk > 0.0 {
        let mut x = Finding::new("arr_at_risk", 1);
        x.numbers.insert("arr", r.arr_at_risk);
        x.numbers.insert("users", r.inactive_users as f64);
        x.numbers.insert("all_users", r.users as f64);
        x.numbers.insert("total_arr", r.total_arr);
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
    if let Some(c) = r
        .portfolio_plan
        .iter()
        .filter(|c| c.total_arr > 0.0)
        .max_by(|a, b| a.total_arr.total_cmp(&b.total_arr))
    {
        let mut x = Finding::new("top_arr_segment", 2);
        x.numbers.insert("total_arr", c.total_arr);
        x.numbers.insert("arr_share", c.arr_share);
        x.numbers.insert("users", c.users as f64);
        x.numbers.insert("share", c.share);
        x.numbers.insert("active_rate", c.active_rate);
        // Its activity against everyone else's.
        let rest = r.active_rate.and_then(|all| {
            let all = Proportion::from_rate(Some(all), r.users)?;
            let own = active(c)?;
            (all.n > own.n).then_some(Proportion {
                k: all.k - own.k,
                n: all.n - own.n,
            })
        });
        if let (Some(own), Some(rest)) = (active(c), rest) {
            x.numbers.insert("rest_active", rest.rate());
            x.numbers.insert("rest_users", rest.n);
            x.keys.insert("activity", compare(own, rest).key());
        }
        x.slices.insert("cell", cell(c));
        out.push(x);
    }
    if let (Some(a), Some(i)) = (r.samples.nps_active, r.samples.nps_inactive) {
        let verdict = compare_means(a, i);
        if verdict.holds() {
            let mut x = Finding::new("nps_gap", 3);
            x.numbers.insert("active", a.mean);
            x.numbers.insert("inactive", i.mean);
            x.numbers.insert("active_n", a.n);
            x.numbers.insert("inactive_n", i.n);
            x.keys.insert("direction", verdict.key());
            out.push(x);
        }
    }
    out.extend(lift_finding("training_lift", 4, &r.training));
    out.extend(lift_finding("diversity_lift", 5, &r.diversity));
    let s = &r.samples;
    if let (Some(lt), Some(ht), Some(la), Some(ha)) = (
        s.tickets_by_engagement.get("low"),
        s.tickets_by_engagement.get("high"),
        s.active_by_engagement.get("low"),
        s.active_by_engagement.get("high"),
    ) {
        let mut x = Finding::new("support_by_engagement", 6);
        x.numbers.insert("low_tickets", lt.mean);
        x.numbers.insert("high_tickets", ht.mean);
        if let Some(m) = s.tickets_by_engagement.get("medium") {
            x.numbers.insert("medium_tickets", m.mean);
        }
        x.numbers.insert("low_active", la.rate());
        x.numbers.insert("high_active", ha.rate());
        x.numbers.insert("low_users", la.n);
        x.numbers.insert("high_users", ha.n);
        x.keys.insert(
            "direction",
            match compare_means(*lt, *ht) {
                Verdict::Higher => "low_more",
                Verdict::Lower => "high_more",
                Verdict::NoClearDifference => "flat",
            },
        );
        let activity = compare(*la, *ha);
        x.keys.insert("active", activity.key());
        x.lead = x.keys["direction"] != "flat" || activity.holds();
        out.push(x);
    }
    if let Some(c) = r.portfolio_plan.iter().max_by(|a, b| {
        a.users
            .cmp(&b.users)
            .then_with(|| b.plan_type.cmp(&a.plan_type))
    }) {
        // Context: the most users, not a decision.
        let mut x = Finding::new("largest_segment", 7);
        x.lead = false;
        x.numbers.insert("users", c.users as f64);
        x.numbers.insert("share", c.share);
        x.numbers.insert("avg_arr", c.avg_arr);
        x.numbers.insert("arr_share", c.arr_share);
        x.slices.insert("cell", cell(c));
        out.push(x);
    }
    // No tested difference holds: say so plainly, before the context.
    let differences = [
        "nps_gap",
        "training_lift",
        "diversity_lift",
        "support_by_engagement",
    ];
    if !out.iter().any(|f| f.lead && differences.contains(&f.id)) {
        let mut x = Finding::new("nothing_stands_out", 3);
        x.numbers.insert("users", r.users as f64);
        out.push(x);
    }
    out.sort_by_key(|f| f.rank);
    out
}

/// What is at stake (page 1): the ARR of inactive users against all users' ARR.
pub fn stake(r: &Segmentation) -> Finding {
    let mut x = Finding::new("stake", 0);
    x.lead = false;
    x.keys.insert("section", "stake");
    x.numbers.insert("arr", r.arr_at_risk);
    x.numbers.insert("users", r.inactive_users as f64);
    x.numbers.insert("all_users", r.users as f64);
    x.numbers.insert("total_arr", r.total_arr);
    if r.total_arr > 0.0 {
        x.numbers.insert("share", r.arr_at_risk / r.total_arr);
    }
    x
}

/// A lift recommendation: only when the lift holds with the plan fixed; sized as
/// users reached × the within-plan lift (an association, an upper bound).
fn lift_recommendation(
    f: Option<&Finding>,
    id: &'static str,
    (owner, lever): (&'static str, &'static str),
    users: f64,
) -> Option<Recommendation> {
    let f = f?;
    if f.keys.get("within") != Some(&"holds") || f.keys.get("direction") != Some(&"up") {
        return None;
    }
    let lift = *f.numbers.get("within_lift")?;
    let mut x = Recommendation::owned(id, f.id, owner);
    x.keys.insert("lever", lever);
    x.numbers.insert("users", users.round());
    x.numbers.insert("lift", lift);
    x.numbers.insert("upper_arr", lift * users.round());
    Some(x)
}

/// What the findings say of each lever an action could pull: the claims rules refuse
/// an action whose lever a finding rejects.
pub fn lever_readings(findings: &[Finding]) -> Vec<(&'static str, LeverReading)> {
    let reading = |holds: bool| {
        if holds {
            LeverReading::Explains
        } else {
            LeverReading::DoesNotExplain
        }
    };
    let mut out = Vec::new();
    for f in findings {
        match f.id {
            "support_by_engagement" => {
                out.push((
                    "support_load",
                    reading(f.keys.get("direction") != Some(&"flat")),
                ));
                out.push((
                    "engagement",
                    reading(f.keys.get("active") == Some(&"lower")),
                ));
            }
            "training_lift" | "diversity_lift" => {
                let lever = if f.id == "training_lift" {
                    "training"
                } else {
                    "feature_breadth"
                };
                let within = f.keys.get("within") == Some(&"holds");
                out.push((
                    lever,
                    reading(within && f.keys.get("direction") == Some(&"up")),
                ));
                // The gap stays within the same plan: the plan mix does not explain it.
                if within {
                    out.push(("plan_mix", LeverReading::DoesNotExplain));
                }
            }
            _ => {}
        }
    }
    out
}

pub fn recommendations(r: &Segmentation, findings: &[Finding]) -> Vec<Recommendation> {
    let mut out = candidate_recommendations(r, findings);
    let readings = lever_readings(findings);
    out.retain(|x| {
        x.keys
            .get("lever")
            .is_none_or(|l| refusing_finding(l, &readings).is_none())
    });
    out
}

/// Page 1 pairs each headline with an action: the recommendations that follow the
/// headlines come first, in headline order, and a headline no recommendation follows
/// gets an explicit "no action, because …" record in its place.
pub fn follow_headlines(findings: &[Finding], recs: Vec<Recommendation>) -> Vec<Recommendation> {
    let mut rest = recs;
    let mut out = Vec::new();
    for f in findings
        .iter()
        .filter(|f| f.lead)
        .take(crate::render::narrative::BRIEF_ITEMS)
    {
        match rest.iter().position(|x| x.follows == f.id) {
            Some(i) => out.push(rest.remove(i)),
            None => {
                // Owned by whoever reads the finding in the next edition.
                out.push(Recommendation::owned("no_action", f.id, "customer_success"));
            }
        }
    }
    out.extend(rest);
    out
}

fn candidate_recommendations(r: &Segmentation, findings: &[Finding]) -> Vec<Recommendation> {
    let has = |id: &str| findings.iter().find(|f| f.id == id);
    let mut out = Vec::new();
    if has("arr_at_risk").is_some() {
        if let Some(p) = main_inactive_path(r) {
            let mut x = Recommendation::owned("win_back", "arr_at_risk", "customer_success");
            x.keys.insert("lever", "reactivation");
            x.numbers.insert("users", p.users as f64);
            x.numbers.insert("arr", p.total_arr);
            x.numbers.insert("avg_arr", p.avg_arr);
            x.slices.insert("path", path(p));
            out.push(x);
        }
    }
    if let Some(f) = has("support_by_engagement") {
        let s = &r.samples;
        if f.keys.get("active") == Some(&"lower") {
            // Low engagement held to what medium engagement (the bulk of users) reaches.
            if let (Some(low), Some(medium)) = (
                s.active_by_engagement.get("low"),
                s.active_by_engagement.get("medium"),
            ) {
                if let Some(t) = peer_target(*low, *medium, MIN_PEERS, true) {
                    let avg_arr = r
                        .dimensions
                        .iter()
                        .find(|d| d.dimension == "engagement" && d.value == "low")
                        .map_or(0.0, |d| d.avg_arr);
                    let mut x = Recommendation::owned(
                        "reengage_low_engagement",
                        "support_by_engagement",
                        "customer_success",
                    );
                    x.keys.insert("lever", "engagement");
                    x.numbers.insert("users", low.n);
                    x.numbers.insert("current", low.rate());
                    x.numbers.insert("target", t.value);
                    x.numbers.insert("peer_rate", medium.rate());
                    x.numbers.insert("peer_n", medium.n);
                    // From the printed rates, so that users × (target − current)
                    // as printed gives the printed count.
                    let moved = derived_count(low.n, t.value, low.rate(), 100.0, 1);
                    x.numbers.insert("moved", moved);
                    x.numbers.insert("upper_arr", moved * avg_arr);
                    x.numbers.insert("pilot_users", (low.n / 2.0).floor());
                    // The edition that checks it: the first one at least the pilot's
                    // 8 weeks after this data's latest event (a snapshot report: the
                    // users' status then is all it needs).
                    if let Some(t) = r.as_of {
                        let check = t + chrono::Duration::weeks(PILOT_WEEKS);
                        x.slices.insert(
                            "check_date",
                            serde_json::Value::String(check.format("%Y-%m-%d").to_string()),
                        );
                    }
                    out.push(x);
                }
            }
        }
        if f.keys.get("direction") == Some(&"low_more") {
            let mut x = Recommendation::owned(
                "onboard_low_engagement",
                "support_by_engagement",
                "support_enablement",
            );
            x.keys.insert("lever", "support_load");
            x.numbers.insert("users", f.numbers["low_users"]);
            x.numbers.insert("low_tickets", f.numbers["low_tickets"]);
            x.numbers.insert("high_tickets", f.numbers["high_tickets"]);
            out.push(x);
        }
    }
    let t = &r.training;
    let untrained_active = t.without_active.map_or(0.0, |p| p.k);
    out.extend(lift_recommendation(
        has("training_lift"),
        "extend_training",
        ("customer_success", "training"),
        untrained_active,
    ));
    out.extend(lift_recommendation(
        has("diversity_lift"),
        "broaden_usage",
        ("product_marketing", "feature_breadth"),
        r.diversity.without_users as f64,
    ));
    if let Some(f) = has("top_arr_segment") {
        let mut x = Recommendation::owned(
            "protect_top_segment",
            "top_arr_segment",
            "account_management",
        );
        x.keys.insert("lever", "account_management");
        x.numbers.insert("arr_share", f.numbers["arr_share"]);
        x.numbers.insert("total_arr", f.numbers["total_arr"]);
        x.numbers.insert("users", f.numbers["users"]);
        x.numbers.insert("active_rate", f.numbers["active_rate"]);
        if let Some(c) = f.slices.get("cell") {
            x.slices.insert("cell", c.clone());
        }
        out.push(x);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::metrics::{compute, EventRow, UserRow};
    use super::*;

    struct U {
        plan: &'static str,
        arr: f64,
        active: bool,
        nps: f64,
        tickets: i64,
        events: usize,
        trained: bool,
    }

    fn build(spec: &[U]) -> Segmentation {
        let mut users = Vec::new();
        let mut events = Vec::new();
        for (i, u) in spec.iter().enumerate() {
            let id = format!("u{i}");
            users.push(UserRow {
                user_id: id.clone(),
                portfolio_size: Some(if u.plan == "premium" { 12 } else { 3 }),
                plan_type: Some(u.plan.into()),
                annual_revenue: Some(u.arr),
                is_active: u.active,
                nps_score: Some(u.nps),
                support_tickets: Some(u.tickets),
            });
            for k in 0..u.events {
                let kind = if u.trained && k == 0 {
                    "training_attended"
                } else {
                    "login"
                };
                events.push(EventRow {
                    user_id: id.clone(),
                    event_type: kind.into(),
                    event_time: crate::source::timestamp::parse(
                        "2024-06-01 00:00:00",
                        chrono_tz::Tz::UTC,
                    )
                    .ok(),
                });
            }
        }
        compute(&users, &events)
    }

    /// 480 users: trained users earn more within each plan, inactive users score
    /// lower, low-engagement users are less often active.
    fn population(lift_within_plan: bool) -> Segmentation {
        let mut spec = Vec::new();
        for i in 0..480 {
            let plan = if i % 4 == 0 { "premium" } else { "starter" };
            let base = if plan == "premium" { 13_000.0 } else { 400.0 };
            // Mix: trained users sit mostly on premium when the lift is the plan's.
            let trained = if lift_within_plan {
                i % 2 == 0
            } else {
                plan == "premium"
            };
            let wobble = f64::from(i % 7) * 10.0;
            let arr = base
                + wobble
                + if lift_within_plan && trained {
                    300.0
                } else {
                    0.0
                };
            let events = match i % 3 {
                0 => 5,
                1 => 20,
                _ => 40,
            };
            let active = if events == 5 { i % 10 < 4 } else { i % 10 < 9 };
            spec.push(U {
                plan,
                arr,
                active,
                nps: if active { 8.0 } else { 4.0 } + f64::from(i % 3),
                tickets: i64::from(i % 3 == 0),
                events,
                trained,
            });
        }
        build(&spec)
    }

    #[test]
    fn findings_follow_the_data_and_hold() {
        let r = population(true);
        let f = findings(&r);
        let ids: Vec<&str> = f.iter().map(|x| x.id).collect();
        assert_eq!(
            ids,
            [
                "arr_at_risk",
                "top_arr_segment",
                "nps_gap",
                "training_lift",
                "support_by_engagement",
                "largest_segment"
            ],
            "diversity is equal for everyone: no lift to print"
        );
        let by = |id: &str| f.iter().find(|x| x.id == id).unwrap();
        assert_eq!(by("training_lift").keys["within"], "holds");
        assert!((by("training_lift").numbers["within_lift"] - 300.0).abs() < 1e-6);
        assert_eq!(by("nps_gap").keys["direction"], "higher");
        let s = by("support_by_engagement");
        assert_eq!(s.keys["active"], "lower");
        assert_eq!(
            s.keys["direction"], "low_more",
            "low engagement files a ticket each"
        );
        assert!(!by("largest_segment").lead);
        // Shares of ARR are of all users' ARR.
        let top = by("top_arr_segment");
        assert!((top.numbers["arr_share"] - top.numbers["total_arr"] / r.total_arr).abs() < 1e-12);
        let recs = recommendations(&r, &f);
        let ids: Vec<&str> = recs.iter().map(|x| x.id).collect();
        assert_eq!(
            ids,
            [
                "win_back",
                "reengage_low_engagement",
                "onboard_low_engagement",
                "extend_training",
                "protect_top_segment"
            ]
        );
        for x in &recs {
            assert!(x.keys.contains_key("owner"), "{}", x.id);
        }
        let re = &recs[1];
        // The target is reachable: inside what medium engagement reaches.
        assert!(re.numbers["target"] <= re.numbers["peer_rate"]);
        assert!(re.numbers["target"] > re.numbers["current"]);
        let ext = &recs[3];
        assert_eq!(
            ext.numbers["upper_arr"],
            ext.numbers["lift"] * ext.numbers["users"]
        );
    }

    #[test]
    fn a_lift_the_plan_mix_explains_is_said_so_and_not_acted_on() {
        let r = population(false);
        let f = findings(&r);
        let t = f.iter().find(|x| x.id == "training_lift").unwrap();
        assert_eq!(t.keys["within"], "mix");
        assert!(!t.lead, "a mix effect never leads page 1");
        let recs = recommendations(&r, &f);
        assert!(!recs.iter().any(|x| x.id == "extend_training"));
    }

    #[test]
    fn conditions_that_do_not_hold_are_not_printed() {
        // Everyone active, nobody trained, equal usage: no risk, no lifts, no gaps.
        let spec: Vec<U> = (0..40)
            .map(|i| U {
                plan: "pro",
                arr: 2_000.0 + f64::from(i),
                active: true,
                nps: 7.0 + f64::from(i % 2),
                tickets: 1,
                events: if i % 2 == 0 { 5 } else { 40 },
                trained: false,
            })
            .collect();
        let r = build(&spec);
        let f = findings(&r);
        let ids: Vec<&str> = f.iter().map(|x| x.id).collect();
        assert_eq!(
            ids,
            [
                "top_arr_segment",
                "nothing_stands_out",
                "support_by_engagement",
                "largest_segment"
            ]
        );
        let s = &f[2];
        assert_eq!(s.keys["direction"], "flat");
        assert_eq!(s.keys["active"], "no_clear_difference");
        assert!(!s.lead);
        let recs = recommendations(&r, &f);
        let ids: Vec<&str> = recs.iter().map(|x| x.id).collect();
        assert_eq!(
            ids,
            ["protect_top_segment"],
            "no target without a difference"
        );
    }

    #[test]
    fn each_headline_gets_its_action_or_a_stated_no_action_and_rejected_levers_are_refused() {
        let mut risk = Finding::new("arr_at_risk", 1);
        risk.lead = true;
        let mut gap = Finding::new("nps_gap", 3);
        gap.lead = true;
        let mut support = Finding::new("support_by_engagement", 6);
        support.lead = false;
        support.keys.insert("direction", "flat");
        support.keys.insert("active", "lower");
        let findings = vec![risk, gap, support];
        let readings = lever_readings(&findings);
        assert!(refusing_finding("support_load", &readings).is_some());
        assert!(refusing_finding("engagement", &readings).is_none());

        let mut reengage =
            Recommendation::owned("reengage_low_engagement", "support_by_engagement", "x");
        reengage.keys.insert("lever", "engagement");
        let win_back = Recommendation::owned("win_back", "arr_at_risk", "x");
        let out = follow_headlines(&findings, vec![reengage, win_back]);
        let ids: Vec<_> = out.iter().map(|x| (x.id, x.follows)).collect();
        assert_eq!(
            ids,
            [
                ("win_back", "arr_at_risk"),
                ("no_action", "nps_gap"),
                ("reengage_low_engagement", "support_by_engagement")
            ]
        );
    }
}
