//! The daemon's rehearsal clock (`--clock-start`) drives more than the schedule: a
//! delivery that failed is kept for its retry at a time on that clock and retried
//! when that clock reaches it, and an owner alert the server did not take is kept,
//! retried and stamped on it too. On the real clock beside a rehearsal one, the retry
//! would wait for a real time the rehearsal never reaches (or months of it).

mod common;

use common::service::{setup, stop, subjects, wait_for, Setup, PLAIN, TO_CEO};
use common::smtp::{header, plain_text, smtp_server};

/// The rehearsal starts a second before the yearly fire (2025-01-01 08:00 UTC).
const CLOCK_START: &str = "2025-01-01T07:59:59Z";
/// Every time the rehearsal stamps lies in its first minutes.
const REHEARSAL: &str = "2025-01-01 08:0";

/// `(state, attempts, updated_at)` of the one delivery, and `(kind, state, attempts,
/// created_at, next_attempt_at)` of each alert, as the ledger holds them.
type Delivery = (String, i64, String);
type Alert = (String, String, i64, String, String);

fn ledger_rows(s: &Setup) -> (Vec<Delivery>, Vec<Alert>) {
    let c = rusqlite::Connection::open_with_flags(
        s.state(),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    let deliveries = c
        .prepare("SELECT state, attempts, updated_at FROM deliveries")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let alerts = c
        .prepare(
            "SELECT kind, state, attempts, created_at, next_attempt_at FROM alerts ORDER BY id",
        )
        .unwrap()
        .query_map([], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
        })
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    (deliveries, alerts)
}

/// The report's delivery fails three times (451), and so does the owner alert about
/// it; both are kept for later on the rehearsal clock. The alert goes out when that
/// clock reaches its retry (2 s on), the delivery at its own (8 s on), and the retry
/// that delivered it tells the owners the run is resolved, at a rehearsal time.
#[test]
fn a_failed_delivery_and_its_owner_alert_are_retried_on_the_rehearsal_clock() {
    // Three attempts of the delivery, then three of the alert, all refused for now.
    let server = smtp_server(&[451; 6], None);
    let s = setup(server.port, PLAIN, TO_CEO);
    std::fs::write(
        &s.config,
        std::fs::read_to_string(&s.config)
            .unwrap()
            .replace("max_attempts = 2", "max_attempts = 3"),
    )
    .unwrap();
    let mut daemon = s.spawn(&["daemon", "--clock-start", CLOCK_START]);

    // The failed delivery waits for its retry at a rehearsal time, until the job's
    // next fire on the rehearsal clock.
    let mut waiting = None;
    wait_for("the delivery to fail and wait for its retry", 120, || {
        if !s.state().exists() {
            return false;
        }
        waiting = s
            .history()
            .first()
            .and_then(|r| r.deliveries.first().cloned())
            .filter(|d| d.state == "failed" && d.attempts == 3);
        waiting.is_some()
    });
    let waiting = waiting.unwrap();
    let next = waiting.next_attempt_at.clone().unwrap();
    assert!(next.starts_with(REHEARSAL), "next attempt at {next}");
    assert_eq!(
        waiting.retry_until.as_deref(),
        Some("2026-01-01 08:00:00"),
        "retried until the next fire on the rehearsal clock"
    );

    wait_for("the retry and the resolved alert", 120, || {
        subjects(&server)
            .iter()
            .any(|s| s.contains("resolved after retry"))
    });
    assert_eq!(stop(&mut daemon).code(), Some(0));

    // What the server took, in order: the alert (retried first), the report, the
    // resolution.
    let got = subjects(&server);
    assert_eq!(got.len(), 3, "{got:?}");
    assert!(got[0].contains("job monthly failed"), "{got:?}");
    assert!(got[2].contains("resolved after retry"), "{got:?}");
    let state = server.state.lock().unwrap();
    assert_eq!(state.accepted[1].to, ["ceo@example.com"]);
    let resolved = state
        .accepted
        .iter()
        .find(|m| header(&m.raw, "Subject").contains("resolved"))
        .map(|m| plain_text(&m.raw))
        .unwrap();
    assert!(
        resolved.contains(&format!("sent 1 delivery(ies) at {REHEARSAL}")),
        "{resolved}"
    );
    drop(state);

    let (deliveries, alerts) = ledger_rows(&s);
    // Sent by the retry, once the rehearsal clock had reached its time.
    let (d_state, attempts, updated) = &deliveries[0];
    assert_eq!((d_state.as_str(), *attempts), ("sent", 4), "{deliveries:?}");
    assert!(
        updated.starts_with(REHEARSAL) && updated.as_str() >= next.as_str(),
        "sent at {updated}, due at {next}"
    );
    let h = s.history();
    assert_eq!(h[0].state, "succeeded");
    assert!(h[0].finished_at.as_deref().unwrap().starts_with(REHEARSAL));
    // The failure alert: kept after its first try, sent by the second; the
    // resolution after it. Each kept and timed on the rehearsal clock.
    let kinds: Vec<(&str, &str, i64)> = alerts
        .iter()
        .map(|(k, st, n, _, _)| (k.as_str(), st.as_str(), *n))
        .collect();
    assert_eq!(
        kinds,
        [("failed", "sent", 2), ("resolved", "sent", 1)],
        "{alerts:?}"
    );
    for (_, _, _, created, next) in &alerts {
        assert!(
            created.starts_with(REHEARSAL) && next.starts_with(REHEARSAL),
            "{alerts:?}"
        );
    }
}
