//! `cxreport status`: whether the daemon is alive and the jobs' latest runs
//! succeeded, for a person, a liveness or readiness probe or a cron monitor. Exit 0
//! healthy, 1 not (each reason and the next step on stderr), 2 the configuration.

use std::path::Path;
use std::time::Duration;

use super::Failure;
use crate::clock::{Clock, SystemClock};
use crate::jobs::config::Config;
use crate::jobs::status::{self, Ask};

pub fn status(config: &Path, max_age_secs: u64, daemon_only: bool) -> Result<(), Failure> {
    let config = Config::load(config)?;
    let ask = Ask {
        now: SystemClock.now(),
        max_age: Duration::from_secs(max_age_secs),
        daemon_only,
    };
    let report = status::status(&config, ask)?;
    for line in &report.lines {
        println!("{line}");
    }
    if report.healthy() {
        println!("ok: healthy");
        return Ok(());
    }
    Err(Failure::failed(format!(
        "not healthy ({} problem(s)):\n{}",
        report.problems.len(),
        report
            .problems
            .iter()
            .map(|p| format!("  - {p}"))
            .collect::<Vec<_>>()
            .join("\n")
    )))
}
