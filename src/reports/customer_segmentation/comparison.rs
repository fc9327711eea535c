//! customer-segmentation against its previous snapshot. Its tables keep no history,
//! so the run compares with the latest earlier snapshot among the job's own outputs
//! (`summary.json` of the latest `asof-<date>` folder before this one) and says so, or
//! says there is none. Totals (users, ARR, ARR at risk) are a census of the table,
//! printed with their change and not tested; active rates are compared with a
//! two-proportion test, overall and per plan, portfolio group and engagement level,
//! decided together ([`crate::reports::comparison`]).

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::metrics::Segmentation;
use crate::reports::comparison::{decide, empty, Change, Comparison, Direction, EmptyReason, Unit};
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

/// The latest `asof-<date>` folder under `dir` whose date is before `period`'s, and
/// its period.
fn latest_before(dir: &Path, period: &str) -> Option<(PathBuf, String)> {
    let entries = std::fs::read_dir(dir).ok()?;
    entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name().to_str()?.to_owned();
            let date = name.strip_prefix("asof-")?;
            // Only finished outputs: a folder with its summary (staging folders are
            // hidden and renamed into place whole).
            (chrono::NaiveDate::parse_from_str(date, "%Y-%m-%d").is_ok()
                && name.as_str() < period
                && e.path().join("summary.json").is_file())
            .then(|| (e.path(), name))
        })
        .max_by(|a, b| a.1.cmp(&b.1))
}

/// The comparison of `current` (period `period`) with the latest earlier snapshot in
/// `dir` (the job's outputs), or why there is none.
pub fn compare(current: &Segmentation, period: &str, dir: Option<&Path>) -> Comparison {
    let basis = "snapshot".to_owned();
    let Some(dir) = dir else {
        return empty(basis, None, String::new(), EmptyReason::NoOutputDir);
    };
    let Some((folder, earlier)) = latest_before(dir, period) else {
        return empty(
            basis,
            None,
            String::new(),
            EmptyReason::NoSnapshot {
                before: period.to_owned(),
            },
        );
    };
    let path = folder.join("summary.json");
    let snapshot: Snapshot = match std::fs::read(&path)
        .map_err(|e| e.to_string())
        .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
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

    #[test]
    fn the_latest_earlier_finished_snapshot_is_chosen() {
        let dir = tempfile::tempdir().unwrap();
        for (name, finished) in [
            ("asof-2024-03-31", true),
            ("asof-2024-05-14", true),
            ("asof-2024-05-20", false),
            ("asof-2024-06-14", true),
            ("asof-2024-07-01", true),
            ("notes", true),
        ] {
            let d = dir.path().join(name);
            std::fs::create_dir_all(&d).unwrap();
            if finished {
                std::fs::write(d.join("summary.json"), "{}").unwrap();
            }
        }
        let (path, period) = latest_before(dir.path(), "asof-2024-06-14").unwrap();
        assert_eq!(period, "asof-2024-05-14");
        assert!(path.ends_with("asof-2024-05-14"));
        assert!(latest_before(dir.path(), "asof-2024-03-31").is_none());
    }
}
