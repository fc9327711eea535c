//! When jobs fire: the cron expressions (`cron`: parsing, fire times in the job's
//! timezone with the spec's DST rules) and the catch-up policies after downtime
//! (here). Time always comes in as an argument: the clock is injected by callers.

mod cron;

pub use cron::{CronError, CronExpr};

use std::fmt;

use chrono::{DateTime, Duration, Utc};
use chrono_tz::Tz;
use serde::Serialize;

/// What happens to fire times missed while nothing was running.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Catchup {
    /// Missed fire times are dropped; only on-time ones run.
    Skip,
    /// Only the most recent missed fire time runs.
    Latest,
    /// The most recent `max_catchup` missed fire times run, oldest first.
    All,
}

/// As schedules.toml writes it (`catchup = "latest"`).
impl fmt::Display for Catchup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Skip => "skip",
            Self::Latest => "latest",
            Self::All => "all",
        })
    }
}

/// A fire time no older than this is on time, not missed.
pub const ON_TIME_GRACE: Duration = Duration::minutes(5);
/// The fire times to run now, given the last instant already considered (`cursor`).
/// Walks back from `now`, so a long downtime with a frequent cron costs nothing and
/// `latest` is the latest fire, found directly.
pub fn due(
    expr: &CronExpr,
    tz: Tz,
    cursor: DateTime<Utc>,
    now: DateTime<Utc>,
    policy: Catchup,
    max_catchup: usize,
) -> Vec<DateTime<Utc>> {
    let mut back = Vec::new();
    let mut late_taken = 0;
    let mut t = now;
    while let Some(fire) = expr.last_at_or_before(tz, t) {
        if fire <= cursor {
            break;
        }
        let late = now - fire > ON_TIME_GRACE;
        let take = match policy {
            Catchup::Skip => !late,
            // The newest fire only: an on-time one supersedes the missed ones.
            Catchup::Latest => back.is_empty(),
            Catchup::All => !late || late_taken < max_catchup,
        };
        if !take {
            break;
        }
        late_taken += usize::from(late);
        back.push(fire);
        t = fire - Duration::seconds(1);
    }
    back.reverse();
    back
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        crate::source::timestamp::parse(s, Tz::UTC).unwrap()
    }

    fn cron(s: &str) -> CronExpr {
        s.parse().unwrap()
    }

    /// Logs and messages name a policy as schedules.toml writes it.
    #[test]
    fn a_catchup_policy_prints_as_written_in_the_configuration() {
        let printed: Vec<String> = [Catchup::Skip, Catchup::Latest, Catchup::All]
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(printed, ["skip", "latest", "all"]);
    }

    /// A daily 08:00 job, down from Monday 09:00 to Thursday 09:00 (3 missed runs).
    #[test]
    fn catchup_policies_after_three_days_down() {
        let c = cron("0 8 * * *");
        let (cursor, now) = (at("2024-06-10 09:00:00"), at("2024-06-13 09:00:00"));
        assert_eq!(
            due(&c, Tz::UTC, cursor, now, Catchup::Skip, 12),
            Vec::<DateTime<Utc>>::new()
        );
        assert_eq!(
            due(&c, Tz::UTC, cursor, now, Catchup::Latest, 12),
            [at("2024-06-13 08:00:00")]
        );
        assert_eq!(
            due(&c, Tz::UTC, cursor, now, Catchup::All, 12),
            [
                at("2024-06-11 08:00:00"),
                at("2024-06-12 08:00:00"),
                at("2024-06-13 08:00:00")
            ]
        );
        assert_eq!(
            due(&c, Tz::UTC, cursor, now, Catchup::All, 2),
            [at("2024-06-12 08:00:00"), at("2024-06-13 08:00:00")]
        );
        // Back up right at 08:01 on Thursday: Thursday's run is on time for every policy.
        let now = at("2024-06-13 08:01:00");
        assert_eq!(
            due(&c, Tz::UTC, cursor, now, Catchup::Skip, 12),
            [at("2024-06-13 08:00:00")]
        );
        assert_eq!(
            due(&c, Tz::UTC, cursor, now, Catchup::Latest, 12),
            [at("2024-06-13 08:00:00")]
        );
        assert_eq!(due(&c, Tz::UTC, cursor, now, Catchup::All, 12).len(), 3);
        // Nothing due between two fire times.
        assert!(due(
            &c,
            Tz::UTC,
            at("2024-06-13 08:00:00"),
            at("2024-06-13 20:00:00"),
            Catchup::All,
            12
        )
        .is_empty());
    }

    /// Every minute, down for two years: `latest` is the last minute, found directly
    /// (a forward scan from the cursor stopped after 100 000 fires, a wrong one).
    #[test]
    fn latest_after_a_long_downtime_is_the_last_fire() {
        let c = cron("* * * * *");
        let (cursor, now) = (at("2022-01-01 00:00:30"), at("2024-01-01 12:34:56"));
        assert_eq!(
            due(&c, Tz::UTC, cursor, now, Catchup::Latest, 12),
            [at("2024-01-01 12:34:00")]
        );
        let all = due(&c, Tz::UTC, cursor, now, Catchup::All, 3);
        // Three missed and the five on-time minutes of the grace period.
        assert_eq!(all.len(), 3 + 5, "{all:?}");
        assert_eq!(all.last(), Some(&at("2024-01-01 12:34:00")));
        assert_eq!(due(&c, Tz::UTC, cursor, now, Catchup::Skip, 12).len(), 5);
    }
}
