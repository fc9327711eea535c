//! The rows of the customer-segmentation report: SQL and the loader.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use super::metrics::{EventRow, UserRow};
use crate::source::{BadTimestamps, DataError, Database, Latest, TableNeed, TsParser};

const SQL_USERS: &str =
    "SELECT user_id, portfolio_size, plan_type, annual_revenue, is_active, nps_score, \
     support_tickets_last_90d FROM users";
const SQL_EVENTS: &str = "SELECT user_id, event_type, event_time FROM events";
const SQL_EVENT_TIMES: &str = "SELECT event_time FROM events";
const SQL_LATEST_EVENT: &str = "SELECT max(CASE WHEN event_time <= $1 THEN event_time END), \
     count(CASE WHEN event_time > $1 THEN 1 END), min(event_time), max(event_time) FROM events";

pub const USERS: &str = "users";
pub const EVENTS: &str = "events";

pub const NEEDS: &[TableNeed] = &[
    TableNeed {
        table: USERS,
        columns: &[
            "user_id",
            "portfolio_size",
            "plan_type",
            "annual_revenue",
            "is_active",
            "nps_score",
            "support_tickets_last_90d",
        ],
    },
    TableNeed {
        table: EVENTS,
        columns: &["user_id", "event_type", "event_time"],
    },
];

/// The latest parseable `events.event_time` (the snapshot's date).
pub fn latest_event(db: &Database, tz: Tz, not_after: DateTime<Utc>) -> Result<Latest, DataError> {
    db.latest_time(
        EVENTS,
        "event_time",
        SQL_EVENT_TIMES,
        SQL_LATEST_EVENT,
        tz,
        not_after,
    )
}

/// Loads the rows of the customer-segmentation report.
pub fn load(
    db: &Database,
    source_tz: Tz,
) -> Result<(Vec<UserRow>, Vec<EventRow>, BadTimestamps), DataError> {
    let mut bad = BadTimestamps::default();
    let mut ts = TsParser {
        tz: source_tz,
        bad: &mut bad,
    };
    let mut users = Vec::new();
    db.each_row(USERS, SQL_USERS, |r| {
        users.push(UserRow {
            user_id: r.text(0, "user_id")?.unwrap_or_default(),
            portfolio_size: r.integer(1, "portfolio_size")?,
            plan_type: r.text(2, "plan_type")?,
            annual_revenue: r.real(3, "annual_revenue")?,
            is_active: r.integer(4, "is_active")?.unwrap_or(0) == 1,
            nps_score: r.real(5, "nps_score")?,
            support_tickets: r.integer(6, "support_tickets_last_90d")?,
        });
        Ok(())
    })?;
    let mut events = Vec::new();
    db.each_row(EVENTS, SQL_EVENTS, |r| {
        events.push(EventRow {
            user_id: r.text(0, "user_id")?.unwrap_or_default(),
            event_type: r.text(1, "event_type")?.unwrap_or_default(),
            event_time: r.time(2, "event_time", &mut ts)?,
        });
        Ok(())
    })?;
    Ok((users, events, bad))
}
