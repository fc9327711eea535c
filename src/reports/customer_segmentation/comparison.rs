//! customer-segmentation against its previous snapshot. Its tables keep no history,
//! so the run compares with the latest earlier snapshot among the job's own outputs
//! (the run layer finds it and hands over its period and summary: [`Earlier`]) and
//! says so, or says there is none. Totals (users, ARR, ARR at risk) are a census of the table,
//! printed with their change and not tested; active rates are compared with a
//! two-proportion test, overall and per plan, portfolio group and engagement level,
//! decided together ([`crate::reports::comparison`]).

use serde::Deserialize;

use super::metrics::Segmentation;
use crate::reports::comparison::{decide, empty, Change, Comparison, Direction, EmptyReason, Unit};
use crate::reports::Earlier;
use crate::stats::claims::Proportion;

/// The dimensions whose values' active rates are compared.
pub const DIMENSIONS: [&str; 3] = ["plan_type", "portfolio_group", "engagement"];

/// What an earlier summary.json must hold to be compared with.
#[derive(Debug, Deserialize)]
struct Snapshot {
    users: usize,
    total_arr: f64,
    active_rate: Option<f64>,
    arr_at_risk: f64,
    dimensions: Vec<SnapshotRow>,
}

#[derive(Debug, Deserialize)]
struct SnapshotRow {
    dimension: String,
    value: String,
    users: usize,
    active_rate: f64,
}

/// The comparison of `current` (period `period`) with the latest earlier snapshot
/// the run layer found among the job's outputs (`earlier`), or why there is none.
pub fn compare(current: &Segmentation, period: &str, earlier: &Earlier) -> Comparison {
    let basis = "snapshot".to_owned();
    let (earlier, summary) = match earlier {
        Earlier::NoOutputs => return empty(basis, None, String::new(), EmptyReason::NoOutputDir),
        Earlier::NoneBefore => {
            return empty(
                basis,
                None,
                String::new(),
                EmptyReason::NoSnapshot {
                    before: period.to_owned(),
                },
            );
        }
        Earlier::Found { period, summary } => (period.clone(), summary),
    };
    let snapshot: Snapshot = match summary
        .as_deref()
        .map_err(Clone::clone)
        .and_then(|b| serde_json::from_slice(b).map_err(|e| e.to_string()))
    {
        Ok(s) => s,
        Err(e) => {
            let why = EmptyReason::UnreadableSnapshot {
                snapshot: earlier.clone(),
                error: e,
            };
            return empty(basis, None, earlier, why);
        }
    };
    let mut changes = Vec::new();
    let census = |metric: &'static str, unit: Unit, now: f64, then: f64| {
        let mut c = Change::new(metric, "overall", unit, Some(now), Some(then));
        c.direction = Direction::NotTested;
        c
    };
    changes.push(census(
        "users",
        Unit::Count,
        current.users as f64,
        snapshot.users as f64,
    ));
    changes.push(census(
        "total_arr",
        Unit::Money,
        current.total_arr,
        snapshot.total_arr,
    ));
    changes.push(census(
        "arr_at_risk",
        Unit::Money,
        current.arr_at_risk,
        snapshot.arr_at_risk,
    ));
    changes.push(active_change(
        "overall",
        None,
        current.active_rate.map(|r| (r, current.users)),
        snapshot.active_rate.map(|r| (r, snapshot.users)),
    ));
    for dim in DIMENSIONS {
        for row in current.dimensions.iter().filter(|r| r.dimension == dim) {
            let before = snapshot
                .dimensions
                .iter()
                .find(|r| r.dimension == dim && r.value == row.value);
            changes.push(active_change(
                dim,
                Some(&row.value),
                Some((row.active_rate, row.users)),
                before.map(|b| (b.active_rate, b.users)),
            ));
        }
    }
    decide(&mut changes);
    Comparison {
        basis,
        window: None,
        period: earlier,
        empty_reason: None,
        changes,
        coverage: None,
    }
}

/// The active rate of a slice in both snapshots (rate and users), tested when both
/// exist.
fn active_change(
    slice: &str,
    item: Option<&str>,
    now: Option<(f64, usize)>,
    then: Option<(f64, usize)>,
) -> Change {
    let proportion = |(rate, n): (f64, usize)| Proportion::from_rate(Some(rate), n);
    let mut c = Change::new(
        "active_rate",
        slice,
        Unit::Rate,
        now.map(|x| x.0),
        then.map(|x| x.0),
    )
    .with_counts(now.and_then(proportion), then.and_then(proportion));
    c.item = item.map(str::to_owned);
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Four users, two of them active, and a login of each active one.
    fn segmentation() -> Segmentation {
        use super::super::metrics::{EventRow, UserRow};
        let user = |id: &str, plan: &str, active: bool| UserRow {
            user_id: id.into(),
            portfolio_size: Some(3),
            plan_type: Some(plan.into()),
            annual_revenue: Some(2_000.0),
            is_active: active,
            nps_score: None,
            support_tickets: Some(1),
        };
        let users = [
            user("a", "pro", true),
            user("b", "pro", false),
            user("c", "starter", true),
            user("d", "starter", false),
        ];
        let events: Vec<EventRow> = ["a", "c"]
            .iter()
            .map(|u| EventRow {
                user_id: (*u).into(),
                event_type: "login".into(),
                event_time: crate::source::timestamp::parse(
                    "2024-06-14 12:00:00",
                    chrono_tz::Tz::UTC,
                )
                .ok(),
            })
            .collect();
        super::super::metrics::compute(&users, &events)
    }

    #[test]
    fn the_handed_snapshot_is_compared_or_the_reason_there_is_none_is_said() {
        let now = segmentation();
        let period = "asof-2024-06-14";
        let why = |e: &Earlier| {
            compare(&now, period, e)
                .empty_reason
                .map(|r| r.to_string())
                .unwrap_or_default()
        };
        assert_eq!(
            why(&Earlier::NoOutputs),
            "no earlier snapshot: the run has no output directory"
        );
        assert_eq!(
            why(&Earlier::NoneBefore),
            "no earlier snapshot before asof-2024-06-14 among this report's outputs"
        );
        let found = |summary| Earlier::Found {
            period: "asof-2024-05-14".to_owned(),
            summary,
        };
        assert_eq!(
            why(&found(Err("permission denied".to_owned()))),
            "unreadable snapshot asof-2024-05-14/summary.json: permission denied"
        );
        assert!(why(&found(Ok(b"{}".to_vec())))
            .starts_with("unreadable snapshot asof-2024-05-14/summary.json: missing field"));
        // Its own summary as the earlier one: every change is nought.
        let summary = serde_json::to_vec(&now).unwrap();
        let c = compare(&now, period, &found(Ok(summary)));
        assert_eq!(
            (c.empty_reason, c.period.as_str()),
            (None, "asof-2024-05-14")
        );
        assert!(c.changes.len() > 4);
        assert!(c.changes.iter().all(|ch| ch.change.unwrap_or(0.0) == 0.0));
    }
}
