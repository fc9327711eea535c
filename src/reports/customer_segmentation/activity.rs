//! The activity section of customer-segmentation (seed 004): events per event type
//! (all users, active and inactive), support tickets of active against inactive
//! users, days since the last event as a churn signal (inactive users against
//! active ones) and the `subscription_cancelled` events, overall and per segment
//! (portfolio × plan, each against the other segments). Pure functions of the
//! loaded rows and the user features, and the findings they support, each tested
//! under the shared claims rules (`crate::stats::claims`).

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::Serialize;
use serde_json::json;

use super::metrics::{value_order, EventRow, UserFeatures};
use crate::render::narrative::Finding;
use crate::stats::claims::{
    compare, compare_means, proportions_against_rest, Moments, Proportion, Verdict,
};
use crate::stats::percentile;

pub const CANCELLED: &str = "subscription_cancelled";

/// One event type: its events, the users with at least one, and its events split by
/// the user's status (events of users not in `users` are in `events` only).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct EventTypeRow {
    pub event_type: String,
    pub events: usize,
    pub users: usize,
    pub events_active: usize,
    pub events_inactive: usize,
}

/// One measure of active against inactive users.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct StatusSplit {
    pub active_users: usize,
    pub active_total: f64,
    pub active_mean: Option<f64>,
    pub active_median: Option<f64>,
    pub inactive_users: usize,
    pub inactive_total: f64,
    pub inactive_mean: Option<f64>,
    pub inactive_median: Option<f64>,
    /// Active users' mean against inactive users' (Welch).
    pub verdict: Verdict,
}

/// The users with a `subscription_cancelled` event.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Cancelled {
    pub events: usize,
    pub users: usize,
    pub inactive: usize,
    /// Inactive among the users without a cancellation.
    pub others: usize,
    pub others_inactive: usize,
    /// Cancelling users per plan type.
    pub by_plan: BTreeMap<String, usize>,
    /// The cancellers' inactive share against the other users'.
    pub verdict: Verdict,
    /// Per segment (portfolio group × plan), in the groups' order.
    pub by_segment: Vec<SegmentCancellations>,
    /// Cancelling users without a portfolio: in no segment (counted beside them).
    pub outside_segments: usize,
}

/// One segment's cancellations: its users, how many of them have a
/// `subscription_cancelled` event (k of n) and those users' events, with the
/// segment's rate tested against the other segments' together (two-proportion test,
/// Benjamini–Hochberg over the segments).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SegmentCancellations {
    pub portfolio_group: &'static str,
    pub plan_type: String,
    pub users: usize,
    pub cancelled_users: usize,
    pub events: usize,
    /// cancelled_users / users.
    pub rate: f64,
    pub verdict: Verdict,
}

/// The segments' cancellations (users without a portfolio are in none), from each
/// user's cancellation events.
fn by_segment(
    users: &[UserFeatures],
    cancel_events: &HashMap<&str, usize>,
) -> Vec<SegmentCancellations> {
    // (portfolio rank, plan rank, portfolio, plan) → (users, cancelling users, events).
    type Key<'a> = (usize, usize, &'static str, &'a str);
    let mut cells: BTreeMap<Key<'_>, (usize, usize, usize)> = BTreeMap::new();
    let rank = |order: &[&str], v: &str| order.iter().position(|o| *o == v).unwrap_or(usize::MAX);
    for u in users {
        let Some(p) = u.portfolio_group else {
            continue;
        };
        let key = (
            rank(value_order("portfolio_group"), p),
            rank(value_order("plan_type"), &u.plan_type),
            p,
            u.plan_type.as_str(),
        );
        let cell = cells.entry(key).or_default();
        cell.0 += 1;
        if let Some(n) = cancel_events.get(u.user_id.as_str()) {
            cell.1 += 1;
            cell.2 += n;
        }
    }
    let rows: Vec<SegmentCancellations> = cells
        .into_iter()
        .map(|((_, _, p, plan), (n, k, events))| SegmentCancellations {
            portfolio_group: p,
            plan_type: plan.to_owned(),
            users: n,
            cancelled_users: k,
            events,
            rate: k as f64 / n as f64,
            verdict: Verdict::NoClearDifference,
        })
        .collect();
    let tested = proportions_against_rest(
        &rows
            .iter()
            .map(|r| Proportion {
                k: r.cancelled_users as f64,
                n: r.users as f64,
            })
            .collect::<Vec<_>>(),
    );
    rows.into_iter()
        .zip(tested)
        .map(|(r, verdict)| SegmentCancellations { verdict, ..r })
        .collect()
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Activity {
    pub event_types: Vec<EventTypeRow>,
    /// support_tickets_last_90d per user.
    pub tickets: StatusSplit,
    /// Days since the user's last event, users with an event only.
    pub days_since_last_event: StatusSplit,
    pub cancelled: Cancelled,
    /// Distinct portfolio → plan → engagement → status paths.
    pub journeys: usize,
    /// Portfolio group → ARR group (a table: the six-stage flow is unreadable).
    pub size_arr: Vec<SizeArr>,
}

/// Users of one portfolio group in one ARR group (inactive users are their own
/// group), and the share of the portfolio group's users.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SizeArr {
    pub portfolio_group: &'static str,
    pub arr_group: &'static str,
    pub users: usize,
    pub share_of_group: f64,
    pub total_arr: f64,
}

/// Every portfolio group × ARR group with users, in the groups' order; users without
/// a portfolio are left out (as in the journeys).
pub fn size_to_arr(users: &[UserFeatures]) -> Vec<SizeArr> {
    let mut out = Vec::new();
    for p in value_order("portfolio_group") {
        let of: Vec<&UserFeatures> = users
            .iter()
            .filter(|u| u.portfolio_group == Some(*p))
            .collect();
        for a in value_order("arr_group") {
            let cell: Vec<&&UserFeatures> = of.iter().filter(|u| u.arr_group == *a).collect();
            if cell.is_empty() {
                continue;
            }
            out.push(SizeArr {
                portfolio_group: p,
                arr_group: a,
                users: cell.len(),
                share_of_group: cell.len() as f64 / of.len() as f64,
                total_arr: cell.iter().map(|u| u.annual_revenue).sum(),
            });
        }
    }
    out
}

/// `values` as (is_active, value) split by status.
pub fn split(values: impl Iterator<Item = (bool, f64)>) -> StatusSplit {
    let (mut a, mut i): (Vec<f64>, Vec<f64>) = (Vec::new(), Vec::new());
    for (active, v) in values {
        if active { &mut a } else { &mut i }.push(v);
    }
    a.sort_by(f64::total_cmp);
    i.sort_by(f64::total_cmp);
    let verdict = match (
        Moments::of(a.iter().copied()),
        Moments::of(i.iter().copied()),
    ) {
        (Some(x), Some(y)) => compare_means(x, y),
        _ => Verdict::NoClearDifference,
    };
    StatusSplit {
        active_users: a.len(),
        active_total: a.iter().sum(),
        active_mean: crate::stats::mean(a.iter().copied()),
        active_median: percentile(&a, 0.5),
        inactive_users: i.len(),
        inactive_total: i.iter().sum(),
        inactive_mean: crate::stats::mean(i.iter().copied()),
        inactive_median: percentile(&i, 0.5),
        verdict,
    }
}

pub fn activity(users: &[UserFeatures], events: &[EventRow], journeys: usize) -> Activity {
    let status: HashMap<&str, &UserFeatures> =
        users.iter().map(|u| (u.user_id.as_str(), u)).collect();
    let mut per_type: BTreeMap<&str, (EventTypeRow, HashSet<&str>)> = BTreeMap::new();
    let mut cancellers: HashSet<&str> = HashSet::new();
    // Each known user's cancellation events.
    let mut cancels_of: HashMap<&str, usize> = HashMap::new();
    let mut cancel_events = 0;
    for e in events {
        let (row, who) = per_type.entry(e.event_type.as_str()).or_insert_with(|| {
            (
                EventTypeRow {
                    event_type: e.event_type.clone(),
                    events: 0,
                    users: 0,
                    events_active: 0,
                    events_inactive: 0,
                },
                HashSet::new(),
            )
        });
        row.events += 1;
        who.insert(e.user_id.as_str());
        match status.get(e.user_id.as_str()) {
            Some(u) if u.is_active => row.events_active += 1,
            Some(_) => row.events_inactive += 1,
            None => {}
        }
        if e.event_type == CANCELLED {
            cancel_events += 1;
            if status.contains_key(e.user_id.as_str()) {
                cancellers.insert(e.user_id.as_str());
                *cancels_of.entry(e.user_id.as_str()).or_default() += 1;
            }
        }
    }
    let mut event_types: Vec<EventTypeRow> = per_type
        .into_values()
        .map(|(mut row, who)| {
            row.users = who.len();
            row
        })
        .collect();
    event_types.sort_by(|a, b| {
        b.events
            .cmp(&a.events)
            .then_with(|| a.event_type.cmp(&b.event_type))
    });
    let inactive = |mut it: Box<dyn Iterator<Item = &UserFeatures> + '_>| {
        let (mut n, mut k) = (0, 0);
        for u in &mut it {
            n += 1;
            k += usize::from(!u.is_active);
        }
        (n, k)
    };
    let (users_c, inactive_c) = inactive(Box::new(
        users
            .iter()
            .filter(|u| cancellers.contains(u.user_id.as_str())),
    ));
    let (others, others_inactive) = inactive(Box::new(
        users
            .iter()
            .filter(|u| !cancellers.contains(u.user_id.as_str())),
    ));
    let mut by_plan = BTreeMap::new();
    for u in users
        .iter()
        .filter(|u| cancellers.contains(u.user_id.as_str()))
    {
        *by_plan.entry(u.plan_type.clone()).or_default() += 1;
    }
    let verdict = match (
        Proportion::new(inactive_c, users_c),
        Proportion::new(others_inactive, others),
    ) {
        (Some(a), Some(b)) => compare(a, b),
        _ => Verdict::NoClearDifference,
    };
    Activity {
        event_types,
        tickets: split(users.iter().map(|u| (u.is_active, u.tickets))),
        days_since_last_event: split(
            users
                .iter()
                .filter_map(|u| Some((u.is_active, u.days_since_last_event? as f64))),
        ),
        cancelled: Cancelled {
            events: cancel_events,
            users: users_c,
            inactive: inactive_c,
            others,
            others_inactive,
            by_plan,
            verdict,
            by_segment: by_segment(users, &cancels_of),
            outside_segments: users
                .iter()
                .filter(|u| {
                    u.portfolio_group.is_none() && cancels_of.contains_key(u.user_id.as_str())
                })
                .count(),
        },
        journeys,
        size_arr: size_to_arr(users),
    }
}

fn split_finding(id: &'static str, s: &StatusSplit) -> Option<Finding> {
    let (Some(a), Some(i)) = (s.active_mean, s.inactive_mean) else {
        return None;
    };
    let mut x = Finding::new(id, 8);
    x.lead = false;
    x.numbers.insert("active_users", s.active_users as f64);
    x.numbers.insert("active_total", s.active_total);
    x.numbers.insert("active_mean", a);
    x.numbers.insert("inactive_users", s.inactive_users as f64);
    x.numbers.insert("inactive_total", s.inactive_total);
    x.numbers.insert("inactive_mean", i);
    x.numbers.insert("total", s.active_total + s.inactive_total);
    if let (Some(a), Some(i)) = (s.active_median, s.inactive_median) {
        x.numbers.insert("active_median", a);
        x.numbers.insert("inactive_median", i);
    }
    x.keys.insert("verdict", s.verdict.key());
    Some(x)
}

/// The section's findings (key findings, never headlines): tickets and days since
/// the last event of active against inactive users, and the cancellations, or the
/// limit where the data has none.
pub fn findings(a: &Activity, as_of: Option<&str>) -> Vec<Finding> {
    let mut out = Vec::new();
    out.extend(split_finding("activity_tickets", &a.tickets));
    if let Some(mut x) = split_finding("activity_days", &a.days_since_last_event) {
        if let Some(d) = as_of {
            x.slices.insert("as_of", json!(d));
        }
        out.push(x);
    }
    let c = &a.cancelled;
    let mut x = if c.events == 0 {
        Finding::new("activity_no_cancellations", 8)
    } else {
        let mut x = Finding::new("activity_cancelled", 8);
        x.numbers.insert("events", c.events as f64);
        x.numbers.insert("users", c.users as f64);
        x.numbers.insert("inactive", c.inactive as f64);
        if c.users > 0 {
            x.numbers
                .insert("inactive_share", c.inactive as f64 / c.users as f64);
        }
        if c.others > 0 {
            x.numbers
                .insert("others_share", c.others_inactive as f64 / c.others as f64);
        }
        x.numbers.insert("others", c.others as f64);
        x.slices.insert(
            "by_plan",
            json!(c
                .by_plan
                .iter()
                .map(|(p, n)| json!({ "plan": p, "users": n }))
                .collect::<Vec<_>>()),
        );
        x.keys.insert("verdict", c.verdict.key());
        // Per segment: how many cancel more (less) often than the others beyond
        // chance, and the highest of those that do.
        let count = |v: Verdict| c.by_segment.iter().filter(|s| s.verdict == v).count();
        x.numbers.insert("segments", c.by_segment.len() as f64);
        x.numbers
            .insert("segments_higher", count(Verdict::Higher) as f64);
        x.numbers
            .insert("segments_lower", count(Verdict::Lower) as f64);
        x.numbers
            .insert("outside_segments", c.outside_segments as f64);
        if let Some(s) = c
            .by_segment
            .iter()
            .filter(|s| s.verdict == Verdict::Higher)
            .max_by(|a, b| a.rate.total_cmp(&b.rate))
        {
            x.slices.insert(
                "highest",
                json!({ "portfolio_group": s.portfolio_group, "plan_type": s.plan_type,
                        "k": s.cancelled_users, "n": s.users, "rate": s.rate }),
            );
        }
        x
    };
    x.lead = false;
    out.push(x);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reports::customer_segmentation::metrics::{features, UserRow};

    fn user(id: &str, active: bool, tickets: i64) -> UserRow {
        UserRow {
            user_id: id.into(),
            portfolio_size: Some(10),
            plan_type: Some("pro".into()),
            annual_revenue: Some(1000.0),
            is_active: active,
            nps_score: None,
            support_tickets: Some(tickets),
        }
    }

    fn event(user: &str, kind: &str, day: u32) -> EventRow {
        EventRow {
            user_id: user.into(),
            event_type: kind.into(),
            event_time: chrono::NaiveDate::from_ymd_opt(2024, 6, day)
                .and_then(|d| d.and_hms_opt(0, 0, 0))
                .map(|t| t.and_utc()),
        }
    }

    #[test]
    fn event_types_tickets_days_and_cancellations_by_hand() {
        let users = [user("a", true, 3), user("b", true, 1), user("c", false, 0)];
        let events = [
            event("a", "login", 30),
            event("a", "login", 29),
            event("b", "login", 20),
            event("c", "login", 10),
            event("c", CANCELLED, 11),
            event("z", "login", 1),
        ];
        let f = features(&users, &events);
        let a = activity(&f, &events, 2);
        assert_eq!(a.journeys, 2);
        // All three hold 10 units at $1,000: two active under 5k, one inactive.
        let cells: Vec<(&str, &str, usize)> = a
            .size_arr
            .iter()
            .map(|c| (c.portfolio_group, c.arr_group, c.users))
            .collect();
        assert_eq!(cells, [("6-10", "inactive", 1), ("6-10", "under_5k", 2)]);
        assert!((a.size_arr[1].share_of_group - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(a.size_arr[1].total_arr, 2000.0);
        let login = &a.event_types[0];
        assert_eq!(login.event_type, "login");
        assert_eq!(
            (
                login.events,
                login.users,
                login.events_active,
                login.events_inactive
            ),
            (5, 4, 3, 1),
            "z is no known user: in events only"
        );
        assert_eq!(a.tickets.active_total, 4.0);
        assert_eq!(a.tickets.active_mean, Some(2.0));
        assert_eq!(a.tickets.inactive_users, 1);
        // Days from the latest event (June 30): a 0, b 10, c 19.
        assert_eq!(a.days_since_last_event.active_median, Some(5.0));
        assert_eq!(a.days_since_last_event.inactive_median, Some(19.0));
        let c = &a.cancelled;
        assert_eq!((c.events, c.users, c.inactive), (1, 1, 1));
        assert_eq!((c.others, c.others_inactive), (2, 0));
        assert_eq!(c.by_plan.get("pro"), Some(&1));
        assert_eq!(c.verdict, Verdict::NoClearDifference, "1 user is chance");
        let ids: Vec<&str> = findings(&a, None).iter().map(|x| x.id).collect();
        assert_eq!(
            ids,
            ["activity_tickets", "activity_days", "activity_cancelled"]
        );
        assert!(findings(&a, None).iter().all(|x| !x.lead));
    }

    #[test]
    fn a_clear_gap_holds_and_no_cancellation_is_a_stated_limit() {
        let s =
            split((0..200).map(|i| (i < 100, if i < 100 { 1.0 } else { 9.0 } + (i % 3) as f64)));
        assert_eq!(
            s.verdict,
            Verdict::Lower,
            "active users below inactive ones"
        );
        let s = split((0..200).map(|i| (i % 2 == 0, (i % 5) as f64)));
        assert_eq!(s.verdict, Verdict::NoClearDifference);
        let users = [user("a", true, 3), user("c", false, 0)];
        let events = [event("a", "login", 30)];
        let a = activity(&features(&users, &events), &events, 1);
        let f = findings(&a, Some("2024-06-30"));
        assert_eq!(f.last().unwrap().id, "activity_no_cancellations");
        assert!(
            !f.iter().any(|x| x.id == "activity_days"),
            "one user with events: no inactive sample"
        );
    }

    #[test]
    fn cancellations_per_segment_count_users_and_events_and_test_each_against_the_rest() {
        let mut users = Vec::new();
        let mut events = Vec::new();
        for i in 0..200 {
            let id = format!("u{i}");
            let (size, plan) = if i < 100 { (10, "pro") } else { (1, "starter") };
            users.push(UserRow {
                portfolio_size: Some(size),
                plan_type: Some(plan.into()),
                ..user(&id, i % 2 == 0, 0)
            });
            events.push(event(&id, "login", 1));
            // 40 of the first segment cancel, 5 of the second; one of them twice.
            if (i < 40) || (100..105).contains(&i) {
                events.push(event(&id, CANCELLED, 2));
            }
            if i == 0 {
                events.push(event(&id, CANCELLED, 3));
            }
        }
        // A user without a portfolio who cancels is in no segment.
        users.push(UserRow {
            portfolio_size: Some(0),
            ..user("out", false, 0)
        });
        events.push(event("out", CANCELLED, 4));
        let a = activity(&features(&users, &events), &events, 2);
        let c = &a.cancelled;
        assert_eq!(c.outside_segments, 1);
        let cells: Vec<(&str, &str, usize, usize, usize, Verdict)> = c
            .by_segment
            .iter()
            .map(|s| {
                (
                    s.portfolio_group,
                    s.plan_type.as_str(),
                    s.users,
                    s.cancelled_users,
                    s.events,
                    s.verdict,
                )
            })
            .collect();
        assert_eq!(
            cells,
            [
                ("1", "starter", 100, 5, 5, Verdict::Lower),
                ("6-10", "pro", 100, 40, 41, Verdict::Higher),
            ]
        );
        assert!((c.by_segment[1].rate - 0.4).abs() < 1e-12);
        let f = findings(&a, None);
        let x = f.iter().find(|x| x.id == "activity_cancelled").unwrap();
        assert_eq!(x.numbers["segments_higher"], 1.0);
        assert_eq!(x.numbers["segments_lower"], 1.0);
        assert_eq!(x.slices["highest"]["k"], 40);
        assert_eq!(x.slices["highest"]["portfolio_group"], "6-10");
        // Rates no test tells apart: no segment is named.
        let even: Vec<UserRow> = (0..40)
            .map(|i| UserRow {
                portfolio_size: Some(if i < 20 { 10 } else { 1 }),
                ..user(&format!("e{i}"), true, 0)
            })
            .collect();
        let ev: Vec<EventRow> = (0..40)
            .filter(|i| i % 4 == 0)
            .map(|i| event(&format!("e{i}"), CANCELLED, 1))
            .collect();
        let a = activity(&features(&even, &ev), &ev, 1);
        assert!(a
            .cancelled
            .by_segment
            .iter()
            .all(|s| s.verdict == Verdict::NoClearDifference));
        let f = findings(&a, None);
        let x = f.iter().find(|x| x.id == "activity_cancelled").unwrap();
        assert!(!x.slices.contains_key("highest"));
    }
}
