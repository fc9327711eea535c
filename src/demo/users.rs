//! The customer-profile tables (`users`, `events`) of the demo database, calibrated to
//! the customer-segmentation report's reference figures.

use rand::Rng;

use super::*;

/// The customer-profile tables (`users`, `events`) of the customer-segmentation
/// report, calibrated to its reference figures.
pub(super) fn write_users_and_events(
    txn: &rusqlite::Transaction<'_>,
    seed: u64,
) -> rusqlite::Result<()> {
    let mut r = rng(seed, 9);
    let mut users = txn.prepare("INSERT INTO users VALUES (?1,?2,?3,?4,?5,?6,?7,?8)")?;
    let mut events = txn.prepare("INSERT INTO events VALUES (?1,?2,?3,?4)")?;
    let data_end = utc(2024, 6, 15);
    let mut n_events = 0usize;
    for u in 0..10_000 {
        let id = format!("u_{:05}", u + 1);
        let portfolio: i64 = match r.gen_range(0..10_000) {
            0..=198 => 0,
            199..=1090 => 1,
            1091..=4460 => r.gen_range(2..=5),
            4461..=5350 => r.gen_range(6..=10),
            _ => r.gen_range(11..=250),
        };
        let plan = match r.gen_range(0..100) {
            0..=51 => 0,
            52..=84 => 1,
            _ => 2,
        };
        // Engagement: no events (1 %), low, medium, high (≈13/73/13 %).
        let total_events: usize = match r.gen_range(0..1000) {
            0..=9 => 0,
            10..=129 => r.gen_range(3..15),
            130..=869 => r.gen_range(15..=30),
            _ => r.gen_range(31..=50),
        };
        let diversity = if total_events == 0 {
            0
        } else {
            (2 + (total_events as f64 / 5.0) as usize + r.gen_range(0..4))
                .min(11)
                .min(total_events)
        };
        let training = diversity >= 5 && r.gen_bool(0.30) || r.gen_bool(0.08) && total_events > 0;
        let engagement = match total_events {
            0..=14 => 0,
            15..=30 => 1,
            _ => 2,
        };
        let p_active: f64 = [0.5, 0.72, 0.86][engagement] + if training { 0.04 } else { -0.02 };
        let active = r.gen_bool(p_active.clamp(0.0, 1.0));
        let lift = (if training { 1.3 } else { 0.88 }) * (1.0 + 0.05 * diversity as f64) / 1.3;
        let base = [413.0, 1_819.0, 13_580.0][plan];
        let arr = (base * lift * (0.55 * normal(&mut r)).exp() / 1.26).max(50.0);
        let arr = (arr * 100.0).round() / 100.0;
        let nps = (!r.gen_bool(0.3)).then(|| {
            let mean = if active { 7.8 } else { 5.2 };
            (mean + 2.0 * normal(&mut r)).round().clamp(0.0, 10.0) as i64
        });
        let tickets: i64 = match r.gen_range(0..1000) {
            0..=489 => 0,
            490..=709 => 1,
            710..=929 => r.gen_range(2..=4),
            930..=998 => r.gen_range(5..=10),
            _ => r.gen_range(11..=15),
        };
        let signup = utc(2021, 1, 1) + Duration::days(r.gen_range(0..1_200));
        users.execute(params![
            id,
            portfolio,
            ["starter", "pro", "premium"][plan],
            arr,
            i64::from(active),
            nps,
            tickets,
            signup.format("%Y-%m-%d %H:%M:%S").to_string()
        ])?;
        // The user's event types: login always, training when trained, others to fill.
        let mut kinds: Vec<&str> = vec!["login"];
        if training {
            kinds.push("training_attended");
        }
        let mut others: Vec<&str> = USER_EVENT_TYPES
            .iter()
            .copied()
            .filter(|k| {
                *k != "login"
                    && *k != "training_attended"
                    && (*k != "subscription_cancelled" || !active)
            })
            .collect();
        others.shuffle(&mut r);
        for k in others {
            if kinds.len() >= diversity.max(1) {
                break;
            }
            kinds.push(k);
        }
        let span = (data_end - signup).num_seconds().max(86_400);
        for e in 0..total_events {
            // Every chosen kind appears at least once.
            let kind = if e < kinds.len() {
                kinds[e]
            } else {
                kinds[r.gen_range(0..kinds.len())]
            };
            let t = signup + Duration::seconds(r.gen_range(0..span));
            n_events += 1;
            events.execute(params![
                format!("e_{n_events:07}"),
                id,
                kind,
                t.format("%Y-%m-%d %H:%M:%S").to_string()
            ])?;
        }
    }
    Ok(())
}
