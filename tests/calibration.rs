//! The default demo database reproduces the structure of the reference dataset
//! (conversation-usage spec §8). Prints the figures it checks.

use chrono::Datelike;
use chrono_tz::Tz;
use cxreport::demo::{self, DemoOptions};
use cxreport::intercom::window::WindowSpec;
use cxreport::reports::conversation_usage::load::{load_conversation_usage, UsageTables};
use cxreport::reports::conversation_usage::metrics::{self, Params, UsageDefinitions};
use cxreport::source::Database;

fn near(name: &str, got: f64, want: f64, rel: f64) {
    println!("{name}: {got:.4} (reference {want})");
    assert!(
        (got - want).abs() <= rel * want.abs(),
        "{name}: got {got}, want {want} ± {:.0}%",
        rel * 100.0
    );
}

#[test]
fn default_demo_matches_the_reference_figures() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("demo.sqlite");
    demo::generate(&path, &DemoOptions::default()).unwrap();
    println!("{}", demo::describe(&path).unwrap());
    let db = Database::open(&path.clone().into()).unwrap();
    let anchor = cxreport::reports::load::latest_conversation(&db, Tz::UTC, chrono::Utc::now())
        .unwrap()
        .at
        .unwrap();
    assert_eq!(anchor.to_string(), "2024-06-15 12:00:00 UTC");
    let window = "rolling:6m"
        .parse::<WindowSpec>()
        .unwrap()
        .resolve(Some(anchor), anchor, Tz::UTC)
        .unwrap();
    let data = load_conversation_usage(
        &db,
        Tz::UTC,
        UsageTables::Proxy,
        window,
        &Default::default(),
    )
    .unwrap();
    let mut per_month = [0usize; 6];
    for c in &data.conversations {
        let t = c.created_at.unwrap();
        assert!(t >= cxreport::source::timestamp::parse("2024-01-08 00:00:00", Tz::UTC).unwrap());
        per_month[t.month0() as usize] += 1;
    }
    assert_eq!(per_month, [992, 1218, 1302, 1260, 1302, 629]);
    let p = metrics::compute(
        &data,
        window,
        Params {
            usage: UsageDefinitions::Proxy,
            ..Params::default()
        },
    )
    .unwrap();
    assert_eq!(p.counts.conversations_in_window, 6703);
    near(
        "paying companies",
        p.counts.companies_paying as f64,
        2500.0,
        0.03,
    );
    let seg: Vec<usize> = p.panels.segment.iter().map(|r| r.companies_total).collect();
    println!("kept companies per segment: {seg:?}");
    near(
        "kept conversations",
        p.counts.conversations_kept as f64,
        6578.0,
        0.03,
    );
    near(
        "kept companies",
        p.counts.companies_kept as f64,
        2311.0,
        0.03,
    );
    let o = &p.panels.overall;
    near("mean response", o.avg_resp.unwrap(), 26.0, 0.04);
    near("P50 response", o.p50_resp.unwrap(), 25.0, 0.02);
    near(
        "P1 response",
        p.thresholds.response_minutes.p1.unwrap(),
        11.0,
        0.05,
    );
    near(
        "P99 response",
        p.thresholds.response_minutes.p99.unwrap(),
        42.0,
        0.05,
    );
    near(
        "bot-first share",
        o.bot_first_resp_share.unwrap(),
        0.332,
        0.03,
    );
    near(
        "contact_inbound share",
        o.contact_inbound_share.unwrap(),
        0.65,
        0.05,
    );
    let by_seg = |s: &str| {
        p.panels
            .segment
            .iter()
            .find(|r| r.segment == Some(s))
            .unwrap()
    };
    for (s, w, m) in [
        ("renewal", 0.71, 0.64),
        ("new_contract", 0.66, 0.55),
        ("churn_watch", 0.60, 0.455),
    ] {
        near(
            &format!("{s} weekly retention"),
            by_seg(s).weekly_retention.unwrap(),
            w,
            0.03,
        );
        near(
            &format!("{s} monthly retention"),
            by_seg(s).monthly_retention.unwrap(),
            m,
            0.03,
        );
    }
    for s in ["new_contract", "churn_watch"] {
        assert!(
            by_seg(s).team_route_share.unwrap() > 0.8,
            "{s} is team-routed"
        );
    }
    for s in ["renewal", "expansion"] {
        assert!(
            by_seg(s).team_route_share.unwrap() < 0.2,
            "{s} is admin-routed"
        );
    }
    let by_seat = |s: &str| {
        p.panels
            .seat_bucket
            .iter()
            .find(|r| r.seat_bucket == Some(s))
            .unwrap()
    };
    near(
        "420_plus weekly retention",
        by_seat("420_plus").weekly_retention.unwrap(),
        0.60,
        0.03,
    );
    near(
        "420_plus monthly retention",
        by_seat("420_plus").monthly_retention.unwrap(),
        0.45,
        0.04,
    );
    near(
        "under_60 weekly retention",
        by_seat("under_60").weekly_retention.unwrap(),
        0.76,
        0.03,
    );
    near(
        "under_60 monthly retention",
        by_seat("under_60").monthly_retention.unwrap(),
        0.71,
        0.03,
    );
    // Conversion 2–5 % by cell among the cells that convert; the named cells.
    let cell = |s: &str, seat: &str, a: &str| {
        p.panels
            .segment_seat_arr
            .iter()
            .find(|r| {
                r.segment == Some(s) && r.seat_bucket == Some(seat) && r.arr_bucket == Some(a)
            })
            .unwrap()
    };
    let best = cell("new_contract", "260_419", "110k_200k")
        .conv_to_feature_rate
        .unwrap();
    let cw = cell("churn_watch", "420_plus", "200k_plus")
        .conv_to_feature_rate
        .unwrap();
    println!("conversion new_contract|260_419|110k_200k {best:.3}, churn_watch|420_plus|200k_plus {cw:.3}");
    let max = p
        .panels
        .segment_seat_arr
        .iter()
        .filter(|r| r.companies_total >= 20)
        .filter_map(|r| r.conv_to_feature_rate)
        .fold(0.0, f64::max);
    assert_eq!(
        best, max,
        "new_contract | 260_419 | 110k_200k converts best"
    );
    assert!((0.015..=0.03).contains(&cw), "{cw}");
    near(
        "overall conversion",
        o.conv_to_feature_rate.unwrap(),
        0.03,
        0.34,
    );
    let dup = &p.data_quality.duplicate_names;
    assert_eq!(dup.len(), 1);
    assert_eq!(
        dup[0]
            .companies
            .iter()
            .map(|c| c.monthly_spend)
            .collect::<Vec<_>>(),
        [2045.0, 1737.0]
    );
    assert!(p.data_quality.unmapped_conversations > 0);
    assert!(
        p.data_quality.coverage_seat_bucket.fallback > 0
            && p.data_quality.coverage_arr_bucket.fallback > 0
    );
}

/// Tag-drivers story of the demo data: at-risk companies over-index on stability
/// topics, expansion targets on growth topics.
#[test]
fn demo_tag_drivers_tell_the_expected_story() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("demo.sqlite");
    demo::generate(&path, &DemoOptions::default()).unwrap();
    let db = Database::open(&path.clone().into()).unwrap();
    db.check("tag-drivers", cxreport::reports::tag_drivers::load::NEEDS)
        .unwrap();
    let anchor = cxreport::reports::load::latest_conversation(&db, Tz::UTC, chrono::Utc::now())
        .unwrap()
        .at;
    let window = "rolling:6m"
        .parse::<WindowSpec>()
        .unwrap()
        .resolve(anchor, anchor.unwrap(), Tz::UTC)
        .unwrap();
    let data =
        cxreport::reports::tag_drivers::load::load(&db, Tz::UTC, window, &Default::default())
            .unwrap();
    let r = cxreport::reports::tag_drivers::metrics::compute(&data, window).unwrap();
    for t in &r.top {
        println!(
            "{:<18} at-risk {:.3}  expansion {:.3}  {:+.1} pp",
            t.tag, t.at_risk_share, t.expansion_share, t.difference_pp
        );
    }
    let diff = |tag: &str| {
        r.top
            .iter()
            .find(|t| t.tag == tag)
            .map(|t| t.difference_pp)
            .unwrap_or(0.0)
    };
    for tag in ["Bug", "Outage", "Escalation", "Downgrade Risk"] {
        assert!(diff(tag) >= 3.0, "{tag}: {:+.1} pp", diff(tag));
    }
    for tag in ["Upgrade", "Feature Feedback", "Implementation"] {
        assert!(diff(tag) <= -3.0, "{tag}: {:+.1} pp", diff(tag));
    }
    assert!(
        !r.in_both_groups.is_empty(),
        "the demo plants companies in both groups"
    );
    let (risk, exp) = (&r.groups[0], &r.groups[1]);
    assert!(
        risk.avg_rating.unwrap() < exp.avg_rating.unwrap(),
        "at-risk companies rate support lower"
    );
}

/// Customer-segmentation reference figures of the demo data (spec "Demo calibration").
#[test]
fn demo_users_and_events_match_the_segmentation_figures() {
    use cxreport::reports::customer_segmentation::metrics as seg;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("demo.sqlite");
    demo::generate(&path, &DemoOptions::default()).unwrap();
    let db = Database::open(&path.clone().into()).unwrap();
    db.check(
        "customer-segmentation",
        cxreport::reports::customer_segmentation::load::NEEDS,
    )
    .unwrap();
    let (users, events, bad) =
        cxreport::reports::customer_segmentation::load::load(&db, Tz::UTC).unwrap();
    assert_eq!(bad.total(), 0);
    assert_eq!(users.len(), 10_000);
    near("events", events.len() as f64, 228_700.0, 0.05);
    let kinds: std::collections::BTreeSet<&str> =
        events.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(kinds.len(), 11, "{kinds:?}");
    let f = seg::features(&users, &events);
    let dims = seg::dimension_tables(&f);
    let row = |d: &str, v: &str| {
        dims.iter()
            .find(|r| r.dimension == d && r.value == v)
            .unwrap()
            .clone()
    };
    for (plan, share, arr) in [
        ("starter", 0.52, 413.0),
        ("pro", 0.33, 1_819.0),
        ("premium", 0.15, 13_580.0),
    ] {
        near(
            &format!("{plan} share"),
            row("plan_type", plan).share,
            share,
            0.08,
        );
        near(
            &format!("{plan} average ARR"),
            row("plan_type", plan).avg_arr,
            arr,
            0.15,
        );
    }
    near(
        "active rate",
        f.iter().filter(|u| u.is_active).count() as f64 / 1e4,
        0.704,
        0.04,
    );
    for (g, share) in [("1", 0.09), ("2-5", 0.34), ("6-10", 0.09), ("11+", 0.48)] {
        near(
            &format!("portfolio {g}"),
            row("portfolio_group", g).share,
            share,
            0.1,
        );
    }
    near(
        "portfolio 0",
        f.iter().filter(|u| u.portfolio_group.is_none()).count() as f64,
        199.0,
        0.2,
    );
    for (g, share) in [("low", 0.13), ("medium", 0.73), ("high", 0.13)] {
        near(
            &format!("engagement {g}"),
            row("engagement", g).share,
            share,
            0.15,
        );
    }
    for (g, share) in [("0", 0.49), ("1", 0.22), ("2-4", 0.22), ("5-10", 0.07)] {
        near(
            &format!("tickets {g}"),
            row("ticket_range", g).share,
            share,
            0.1,
        );
    }
    near("training", row("training", "yes").share, 0.32, 0.1);
    // The story: training and event diversity lift ARR.
    let (with, without): (Vec<_>, Vec<_>) = f.iter().partition(|u| u.training == "yes");
    assert!(seg::impact(&with, &without).arr_lift.unwrap() > 0.0);
    assert!(row("diversity_group", "7+").avg_arr > row("diversity_group", "0-4").avg_arr);
    assert!(seg::arr_at_risk(&f) > 0.0);
}
