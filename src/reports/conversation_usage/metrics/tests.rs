//! Each metric rule on small hand-built SQLite databases whose answers were worked out
//! by hand (the comments show the arithmetic).
//!
//! Why this file is long (about 900 lines): one test per rule of §2–§5, each with its
//! worked arithmetic, and the fixture builder they share.

use super::super::load::{load_conversation_usage, UsageTables};
use super::*;
use crate::intercom::is_bot_first;
use crate::intercom::mapping::Mapping;
use crate::intercom::slices::{arr_bucket_of, seat_bucket_of};
use crate::intercom::slices::{arr_name, classify, seat_name};
use crate::intercom::window::WindowSpec;
use crate::source::Database;
use crate::stats::{percentile, tertile_sizes};
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use rusqlite::{params, Connection};

const SCHEMA: &str = include_str!("../../../demo/sql/schema.sql");

/// A real SQLite file with the contract's tables, filled row by row.
struct Fixture {
    dir: tempfile::TempDir,
    conn: Connection,
    next_conv: usize,
}

/// One conversation as the fixture writes it (`conv_full`).
struct Conv<'a> {
    /// `all_contact_company_names`.
    company_names: &'a str,
    created: &'a str,
    closed: Option<&'a str>,
    resp: Option<f64>,
    author: &'a str,
    initiated: &'a str,
    assignee: Option<&'a str>,
    tags: &'a str,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let conn = Connection::open(dir.path().join("db.sqlite")).unwrap();
        conn.execute_batch(SCHEMA).unwrap();
        Self {
            dir,
            conn,
            next_conv: 0,
        }
    }

    fn company(&self, id: &str, name: &str, spend: f64, users: Option<i64>, tags: &str) -> &Self {
        self.conn
            .execute(
                "INSERT INTO intercom__company_enhanced (company_id, company_name, all_company_tags, monthly_spend, user_count) VALUES (?1,?2,?3,?4,?5)",
                params![id, name, tags, spend, users],
            )
            .unwrap();
        self
    }

    fn retention(&self, id: &str, r7: Option<f64>, r30: Option<f64>) -> &Self {
        self.conn
            .execute(
                "INSERT INTO intercom__company_metrics (company_id, registration_retention_7d, registration_retention_30d) VALUES (?1,?2,?3)",
                params![id, r7, r30],
            )
            .unwrap();
        self
    }

    /// The conversation `c`.
    fn conv_full(&mut self, c: Conv<'_>) -> &mut Self {
        let Conv {
            company_names,
            created,
            closed,
            resp,
            author,
            initiated,
            assignee,
            tags,
        } = c;
        self.next_conv += 1;
        let id = format!("v{}", self.next_conv);
        self.conn
            .execute(
                "INSERT INTO intercom__conversation_enhanced (conversation_id, conversation_created_at, conversation_initiated_type, conversation_author_type, conversation_assignee_type, all_conversation_tags, all_contact_company_names, last_close_at) VALUES (?1,?2,?3,?4,?5,?6,?7,?8)",
                params![id, created, initiated, author, assignee, tags, company_names, closed],
            )
            .unwrap();
        self.conn
            .execute(
                "INSERT INTO intercom__conversation_metrics (conversation_id, time_to_first_response_minutes) VALUES (?1,?2)",
                params![id, resp],
            )
            .unwrap();
        self
    }

    fn conv(
        &mut self,
        company: &str,
        created: &str,
        closed: Option<&str>,
        resp: Option<f64>,
    ) -> &mut Self {
        self.conv_full(Conv {
            company_names: company,
            created,
            closed,
            resp,
            author: "contact",
            initiated: "contact_inbound",
            assignee: Some("team"),
            tags: "",
        })
    }

    fn contact(&self, id: &str, companies: &str, last_activity: &str) -> &Self {
        self.conn
            .execute(
                "INSERT INTO intercom__contact_enhanced (contact_id, all_contact_company_names, last_activity_ts) VALUES (?1,?2,?3)",
                params![id, companies, last_activity],
            )
            .unwrap();
        self
    }

    fn event(&self, id: &str, company: &str, core: bool, at: &str) -> &Self {
        self.conn
            .execute(
                "INSERT INTO usage_events (event_id, company_id, event_name, is_core, occurred_at) VALUES (?1,?2,'x',?3,?4)",
                params![id, company, i64::from(core), at],
            )
            .unwrap();
        self
    }

    fn run(
        &self,
        window: &str,
        usage: UsageDefinitions,
    ) -> Result<ConversationUsage, MetricsError> {
        let db = Database::open(&self.dir.path().join("db.sqlite").into()).unwrap();
        let tables = match usage {
            UsageDefinitions::Events => UsageTables::Events,
            UsageDefinitions::Proxy => UsageTables::Proxy,
            UsageDefinitions::None => UsageTables::Neither,
        };
        let anchor = crate::reports::load::latest_conversation(&db, Tz::UTC, chrono::Utc::now())
            .unwrap()
            .at;
        let w = window
            .parse::<WindowSpec>()
            .unwrap()
            .resolve(anchor, at("2030-01-01 00:00:00"), Tz::UTC)
            .unwrap();
        let data = load_conversation_usage(&db, Tz::UTC, tables, w, &Mapping::default()).unwrap();
        compute(
            &data,
            w,
            Params {
                usage,
                ..Params::default()
            },
        )
    }
}

fn at(s: &str) -> DateTime<Utc> {
    crate::source::timestamp::parse(s, Tz::UTC).unwrap()
}

fn close(a: Option<f64>, b: f64) -> bool {
    a.is_some_and(|a| (a - b).abs() < 1e-9)
}

#[test]
fn type7_percentiles_with_ties_and_single_values() {
    // h = (n−1)p: [1,2,3,4] at 0.5 → h=1.5 → 2 + 0.5·1 = 2.5; at 0.9 → h=2.7 → 3.7.
    assert_eq!(percentile(&[1.0, 2.0, 3.0, 4.0], 0.5), Some(2.5));
    assert!(close(percentile(&[1.0, 2.0, 3.0, 4.0], 0.9), 3.7));
    // Ties: [5,5,5,10] at 0.5 → h=1.5 between 5 and 5 → 5; at 0.9 → h=2.7 → 5 + 0.7·5 = 8.5.
    assert_eq!(percentile(&[5.0, 5.0, 5.0, 10.0], 0.5), Some(5.0));
    assert!(close(percentile(&[5.0, 5.0, 5.0, 10.0], 0.9), 8.5));
    // A single value is every percentile of itself.
    for p in [0.0, 0.01, 0.5, 0.99, 1.0] {
        assert_eq!(percentile(&[7.0], p), Some(7.0));
    }
    assert_eq!(percentile(&[], 0.5), None);
    // 1..=101: P1 at h=1 → 2, P99 at h=99 → 100.
    let v: Vec<f64> = (1..=101).map(f64::from).collect();
    assert_eq!(percentile(&v, 0.01), Some(2.0));
    assert_eq!(percentile(&v, 0.99), Some(100.0));
}

fn pearson(pairs: &[(f64, f64)]) -> Option<f64> {
    let c = correlation(|| pairs.iter().copied());
    assert_eq!(c.n, pairs.len());
    c.r
}

#[test]
fn pearson_and_tertile_sizes() {
    assert!(close(pearson(&[(1.0, 2.0), (2.0, 4.0), (3.0, 6.0)]), 1.0));
    assert!(close(pearson(&[(1.0, 3.0), (2.0, 2.0), (3.0, 1.0)]), -1.0));
    assert_eq!(pearson(&[(1.0, 2.0)]), None);
    assert_eq!(pearson(&[(1.0, 2.0), (1.0, 3.0)]), None, "no variance in x");
    assert_eq!(tertile_sizes(30), [10, 10, 10]);
    assert_eq!(tertile_sizes(31), [11, 10, 10]);
    assert_eq!(tertile_sizes(32), [11, 11, 10]);
    assert_eq!(tertile_sizes(2), [1, 1, 0]);
    assert_eq!(tertile_sizes(0), [0, 0, 0]);
}

#[test]
fn buckets_at_each_boundary() {
    let seat = |n| seat_name(seat_bucket_of(Some(n)));
    assert_eq!(
        [seat(59), seat(60), seat(129), seat(130)],
        ["under_60", "60_129", "60_129", "130_259"]
    );
    assert_eq!(
        [seat(259), seat(260), seat(419), seat(420)],
        ["130_259", "260_419", "260_419", "420_plus"]
    );
    assert_eq!(seat_name(seat_bucket_of(None)), "unknown");
    let arr = |v| arr_name(arr_bucket_of(v));
    assert_eq!([arr(29_999.99), arr(30_000.0)], ["under_30k", "30k_65k"]);
    assert_eq!([arr(64_999.99), arr(65_000.0)], ["30k_65k", "65k_110k"]);
    assert_eq!([arr(109_999.99), arr(110_000.0)], ["65k_110k", "110k_200k"]);
    assert_eq!(
        [arr(199_999.99), arr(200_000.0)],
        ["110k_200k", "200k_plus"]
    );
    // Fallback ARR is 12 × monthly spend: 2,500/month is exactly 30,000.
    let l = classify(&Mapping::default(), None, Some(59), 2_500.0);
    assert_eq!(
        (seat_name(l.seat), arr_name(l.arr), segment_name(l.segment)),
        ("under_60", "30k_65k", "unknown")
    );
    assert_eq!(
        (l.seat_src, l.arr_src, l.segment_src),
        (
            LabelSource::Fallback,
            LabelSource::Fallback,
            LabelSource::Fallback
        )
    );
}

#[test]
fn tags_win_over_fallback_and_bad_values_fall_back() {
    let l = classify(
        &Mapping::default(),
        Some("Churn Watch, segment:renewal ,seat_bucket:seats:420_plus,arr_bucket:arr:under_30k"),
        Some(10),
        50_000.0,
    );
    assert_eq!(
        (segment_name(l.segment), seat_name(l.seat), arr_name(l.arr)),
        ("renewal", "420_plus", "under_30k")
    );
    assert_eq!(
        (l.segment_src, l.seat_src, l.arr_src),
        (LabelSource::Tag, LabelSource::Tag, LabelSource::Tag)
    );
    // Unknown values do not match; the first valid tag of a kind wins; case and
    // separators do not matter (issue 28: `200K_PLUS` is `200k_plus`).
    let l = classify(&Mapping::default(),
        Some("segment:vip,segment:expansion,segment:renewal,seat_bucket:seats:huge,arr_bucket:arr:200K_PLUS"),
        Some(130),
        100.0,
    );
    assert_eq!(
        (segment_name(l.segment), seat_name(l.seat), arr_name(l.arr)),
        ("expansion", "130_259", "200k_plus")
    );
    assert_eq!(
        (l.seat_src, l.arr_src),
        (LabelSource::Fallback, LabelSource::Tag)
    );
    let l = classify(&Mapping::default(), Some("Segment:Renewal"), None, 100.0);
    assert_eq!(segment_name(l.segment), "renewal");
    let l = classify(&Mapping::default(), Some("segment:gold"), None, 100.0);
    assert_eq!(segment_name(l.segment), "unknown");
}

#[test]
fn first_response_tag_overrides_author_and_initiated_type() {
    assert!(is_bot_first(
        Some("Bug, first_response:bot"),
        Some("contact"),
        Some("contact_inbound")
    ));
    assert!(!is_bot_first(
        Some("first_response:human"),
        Some("bot"),
        Some("bot_follow_up")
    ));
    assert!(is_bot_first(
        Some("Bug"),
        Some("bot"),
        Some("contact_inbound")
    ));
    assert!(is_bot_first(None, Some("admin"), Some("bot_follow_up")));
    assert!(is_bot_first(
        None,
        Some("admin"),
        Some("operator_initiated")
    ));
    assert!(!is_bot_first(
        None,
        Some("user"),
        Some("customer_initiated")
    ));
    assert!(!is_bot_first(
        Some(""),
        Some("admin"),
        Some("admin_outbound")
    ));
}

#[test]
fn p1_p99_bounds_are_inclusive() {
    let mut f = Fixture::new();
    f.company("c1", "Acme", 100.0, Some(10), "segment:renewal");
    // Responses 1..=101 (no durations): P1 = 2 and P99 = 100 are kept, 1 and 101 are not.
    for r in 1..=101 {
        f.conv("Acme", "2024-06-01 10:00:00", None, Some(f64::from(r)));
    }
    let out = f.run("rolling:1m", UsageDefinitions::Proxy).unwrap();
    assert_eq!(out.thresholds.response_minutes.p1, Some(2.0));
    assert_eq!(out.thresholds.response_minutes.p99, Some(100.0));
    assert_eq!(out.thresholds.duration_minutes.p1, None);
    assert_eq!(out.counts.conversations_in_scope, 101);
    assert_eq!(out.counts.conversations_kept, 99);
    // Mean of 2..=100 is 51; P50 51; P90 at h = 98·0.9 = 88.2 → 89 + 0.2 = 90.2.
    let o = &out.panels.overall;
    assert!(close(o.avg_resp, 51.0));
    assert!(close(o.p50_resp, 51.0));
    assert!(close(o.p90_resp, 90.2));
    assert_eq!(o.companies_with_closed_conv, 0);
    assert_eq!(
        o.conv_to_feature_rate, None,
        "no closed conversation: empty denominator"
    );
}

#[test]
fn durations_filter_too_and_nulls_are_never_excluded() {
    let mut f = Fixture::new();
    f.company("c1", "Acme", 100.0, Some(10), "segment:renewal");
    // Durations 10, 20, 30 minutes plus one open conversation and one NULL response.
    f.conv(
        "Acme",
        "2024-06-01 10:00:00",
        Some("2024-06-01 10:10:00"),
        Some(5.0),
    );
    f.conv(
        "Acme",
        "2024-06-01 10:00:00",
        Some("2024-06-01 10:20:00"),
        Some(5.0),
    );
    f.conv(
        "Acme",
        "2024-06-01 10:00:00",
        Some("2024-06-01 10:30:00"),
        Some(5.0),
    );
    f.conv("Acme", "2024-06-01 10:00:00", None, None);
    let out = f.run("rolling:1m", UsageDefinitions::Proxy).unwrap();
    // P1 = 10 + 0.02·10 = 10.2, P99 = 20 + 0.98·10 = 29.8: 10 and 30 go, 20 stays.
    assert!(close(out.thresholds.duration_minutes.p1, 10.2));
    assert!(close(out.thresholds.duration_minutes.p99, 29.8));
    assert_eq!(out.counts.conversations_kept, 2);
    assert!(close(out.panels.overall.avg_duration, 20.0));
    assert!(close(out.panels.overall.avg_resp, 5.0));
}

#[test]
fn duplicate_names_go_to_the_highest_spender_then_the_smallest_id() {
    let mut f = Fixture::new();
    f.company(
        "c2",
        "North Systems Ltd",
        1737.0,
        Some(10),
        "segment:renewal",
    )
    .company(
        "c1",
        " north systems LTD",
        2045.0,
        Some(500),
        "segment:expansion",
    )
    .company("d2", "Twin", 50.0, Some(10), "segment:renewal")
    .company("d1", "Twin", 50.0, Some(10), "segment:churn_watch")
    .company("z", "Free Co", 0.0, Some(10), "segment:renewal");
    f.conv(
        "North Systems Ltd, Other",
        "2024-06-01 10:00:00",
        None,
        Some(5.0),
    );
    f.conv("twin", "2024-06-01 10:00:00", None, Some(5.0));
    f.conv("Free Co", "2024-06-01 10:00:00", None, Some(5.0));
    f.conv(
        "Other, North Systems Ltd",
        "2024-06-01 10:00:00",
        None,
        Some(5.0),
    );
    let out = f.run("rolling:1m", UsageDefinitions::Proxy).unwrap();
    let segs: Vec<_> = out
        .panels
        .segment
        .iter()
        .map(|r| (r.segment.unwrap(), r.conv_cnt))
        .collect();
    assert_eq!(segs, [("expansion", 1), ("churn_watch", 1)]);
    assert_eq!(
        out.data_quality.unmapped_conversations, 2,
        "non-paying and first name unknown"
    );
    assert_eq!(out.counts.companies_paying, 4);
    assert_eq!(out.data_quality.companies_non_paying, 1);
    let dups = &out.data_quality.duplicate_names;
    assert_eq!(dups.len(), 2);
    assert_eq!(dups[0].normalized_name, "north systems ltd");
    assert_eq!(dups[0].companies[0].company_id, "c1");
    assert_eq!(dups[1].companies[0].company_id, "d1");
}

#[test]
fn conversion_72h_boundary_with_contact_activity() {
    let mut f = Fixture::new();
    for (id, name) in [
        ("a", "Exactly"),
        ("b", "Late"),
        ("c", "Same"),
        ("d", "Never"),
    ] {
        f.company(id, name, 100.0, Some(10), "segment:renewal");
        f.conv(
            name,
            "2024-06-01 10:00:00",
            Some("2024-06-02 10:00:00"),
            Some(5.0),
        );
    }
    // Exactly 72 h after the close counts; 72 h + 1 s does not; the close instant does not.
    f.contact("k1", "Exactly", "2024-06-05 10:00:00")
        .contact("k2", "Late", "2024-06-05T10:00:01Z")
        .contact("k3", "Other, same", "2024-06-02 10:00:00")
        .contact("k4", "Never", "not a time");
    let out = f.run("rolling:1m", UsageDefinitions::Proxy).unwrap();
    let o = &out.panels.overall;
    assert_eq!(o.companies_with_closed_conv, 4);
    assert!(close(o.conv_to_feature_rate, 0.25));
    assert_eq!(
        out.data_quality.bad_timestamps.0["intercom__contact_enhanced.last_activity_ts"],
        1
    );
}

#[test]
fn conversion_with_usage_events_uses_any_event_of_the_company() {
    let mut f = Fixture::new();
    f.company("a", "A", 100.0, Some(10), "segment:renewal")
        .company("b", "B", 100.0, Some(10), "segment:renewal");
    f.conv(
        "A",
        "2024-06-01 10:00:00",
        Some("2024-06-01 12:00:00"),
        Some(5.0),
    );
    f.conv(
        "B",
        "2024-06-01 10:00:00",
        Some("2024-06-01 12:00:00"),
        Some(5.0),
    );
    // +08:00 offset: 2024-06-04 20:00+08 = 12:00 UTC, exactly 72 h after A's close.
    f.event("e1", "a", false, "2024-06-04T20:00:00+08:00")
        .event("e2", "b", true, "2024-06-04 12:00:01");
    let out = f.run("rolling:1m", UsageDefinitions::Events).unwrap();
    assert!(close(out.panels.overall.conv_to_feature_rate, 0.5));
    assert_eq!(out.usage_source, UsageDefinitions::Events);
}

#[test]
fn events_of_no_company_leave_conversion_and_retention_empty_with_the_reason() {
    let mut f = Fixture::new();
    f.company("a", "A", 100.0, Some(10), "segment:renewal")
        .company("b", "B", 100.0, Some(10), "segment:renewal");
    for name in ["A", "B"] {
        f.conv(
            name,
            "2024-06-01 10:00:00",
            Some("2024-06-01 12:00:00"),
            Some(5.0),
        );
    }
    // Keyed by the product's account id: right after each close, every week, and
    // still not one of them is a company's.
    for (i, at) in [
        "2024-06-01 13:00:00",
        "2024-06-08 13:00:00",
        "2024-06-15 13:00:00",
    ]
    .iter()
    .enumerate()
    {
        f.event(&format!("a{i}"), "acct-a", true, at)
            .event(&format!("b{i}"), "acct-b", true, at);
    }
    let out = f.run("rolling:1m", UsageDefinitions::Events).unwrap();
    assert_eq!(out.usage_source, UsageDefinitions::Events);
    assert_eq!(out.usage(), UsageDefinitions::None);
    let Some(UsageEmpty::NoneMatched(n)) = &out.usage_empty else {
        panic!("no reason: {:?}", out.usage_empty);
    };
    assert_eq!((n.events, n.company_key.as_str()), (6, "company_id"));
    assert_eq!(n.event_ids, ["acct-a", "acct-b"]);
    assert_eq!(n.company_keys, ["a", "b"]);
    let rows = out
        .panels
        .segment_seat_arr
        .iter()
        .chain(&out.panels.segment)
        .chain(std::iter::once(&out.panels.overall));
    for r in rows {
        assert_eq!(
            (
                r.conv_to_feature_rate,
                r.weekly_retention,
                r.monthly_retention
            ),
            (None, None, None),
            "never 0: {r:?}"
        );
        assert_eq!(
            (r.counts.weekly_companies, r.counts.monthly_companies),
            (0, 0)
        );
    }
    // The rest is computed; one company's event is enough for the reason to go.
    assert_eq!(out.panels.overall.conv_cnt, 2);
    f.event("a9", "a", true, "2024-06-01 13:00:00");
    let out = f.run("rolling:1m", UsageDefinitions::Events).unwrap();
    assert_eq!(out.usage_empty, None);
    assert!(out.panels.overall.conv_to_feature_rate.is_some());
}

#[test]
fn window_edges_respect_offsets() {
    let mut f = Fixture::new();
    f.company("a", "A", 100.0, Some(10), "segment:renewal");
    f.conv("A", "2024-06-15 12:00:00", None, Some(1.0));
    // 2024-06-16 01:00 +08:00 is 06-15 17:00 UTC: the anchor, inside the window.
    f.conv("A", "2024-06-16T01:00:00+08:00", None, Some(2.0));
    // Window 2024-05-15 00:00:00 .. 2024-06-15 23:59:59 UTC.
    // 2024-05-14 20:00 −05:00 is 05-15 01:00 UTC: inside.
    f.conv("A", "2024-05-14 20:00:00-05:00", None, Some(3.0));
    // One second before the start, and 05-15 05:00 +08:00 = 05-14 21:00 UTC: outside.
    f.conv("A", "2024-05-14T23:59:59Z", None, Some(4.0));
    f.conv("A", "2024-05-15 05:00:00+08:00", None, Some(4.0));
    f.conv("A", "garbage", None, Some(5.0));
    let out = f.run("rolling:1m", UsageDefinitions::Proxy).unwrap();
    assert_eq!(out.window.period(), "2024-05-15_2024-06-15");
    assert_eq!(out.counts.conversations_in_window, 3);
    assert_eq!(out.data_quality.conversations_without_created_at, 1);
    assert_eq!(
        out.data_quality.bad_timestamps.0
            ["intercom__conversation_enhanced.conversation_created_at"],
        1
    );
}

#[test]
fn empty_window_is_a_clean_error() {
    let mut f = Fixture::new();
    f.company("a", "A", 100.0, Some(10), "segment:renewal");
    f.conv("A", "2024-06-15 12:00:00", None, Some(1.0));
    let err = f
        .run("range:2020-01-01..2020-12-31", UsageDefinitions::Proxy)
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "no conversations in window 2020-01-01 00:00:00 .. 2020-12-31 23:59:59"
    );
}

#[test]
fn a_trim_that_leaves_nothing_is_a_clean_error() {
    // Two responses, 1 and 9 min: P1 = 1.08 and P99 = 8.92 (type 7), so both lie
    // outside and the trim keeps no conversation. This was a panic ("a non-empty
    // kept set has an overall row") in every trend month of data starting with a
    // trickle.
    let mut f = Fixture::new();
    f.company("a", "A", 100.0, Some(10), "segment:renewal");
    f.conv("A", "2024-06-10 12:00:00", None, Some(1.0));
    f.conv("A", "2024-06-11 12:00:00", None, Some(9.0));
    match f.run("rolling:1m", UsageDefinitions::Proxy) {
        Err(MetricsError::NothingKept { conversations, .. }) => assert_eq!(conversations, 2),
        other => panic!("{other:?}"),
    }
    // Three values keep the middle one: the report is computed.
    f.conv("A", "2024-06-12 12:00:00", None, Some(5.0));
    let out = f.run("rolling:1m", UsageDefinitions::Proxy).unwrap();
    assert_eq!(out.panels.overall.conv_cnt, 1);
}

#[test]
fn a_company_name_with_a_comma_maps_its_conversations() {
    let mut f = Fixture::new();
    f.company("a", "Acme, Inc.", 100.0, Some(10), "segment:renewal")
        .company("b", "Beta", 100.0, Some(10), "segment:renewal");
    f.conv("Acme, Inc., Beta", "2024-06-01 10:00:00", None, Some(1.0));
    f.conv("ACME, INC.", "2024-06-01 10:00:00", None, Some(1.0));
    f.conv("Beta, Acme, Inc.", "2024-06-01 10:00:00", None, Some(1.0));
    let out = f.run("rolling:1m", UsageDefinitions::Proxy).unwrap();
    assert_eq!(out.panels.overall.conv_cnt, 3);
    assert_eq!(out.panels.overall.companies_total, 2);
    assert_eq!(out.data_quality.unmapped_conversations, 0);
}

#[test]
fn nothing_mapped_fails_cleanly_naming_the_cause() {
    let cause = |f: &mut Fixture| match f.run("rolling:1m", UsageDefinitions::Proxy) {
        Err(MetricsError::NothingMapped { cause, .. }) => cause,
        other => panic!("{other:?}"),
    };
    // The package's own seeds: every monthly_spend is 0.
    let mut f = Fixture::new();
    f.company("a", "A", 0.0, Some(10), "segment:renewal");
    f.conv("A", "2024-06-01 10:00:00", None, Some(1.0));
    assert!(cause(&mut f).contains("no paying company"));
    let mut f = Fixture::new();
    f.company("a", "A", 100.0, Some(10), "segment:renewal");
    f.conv("", "2024-06-01 10:00:00", None, Some(1.0));
    assert!(cause(&mut f).contains("no conversation names a company"));
    let mut f = Fixture::new();
    f.company("a", "A", 100.0, Some(10), "segment:renewal");
    f.conv("Somebody Else", "2024-06-01 10:00:00", None, Some(1.0));
    assert!(cause(&mut f).contains("match no paying company"));
}

#[test]
fn real_intercom_vocabulary_and_an_empty_assignee_column() {
    // dbt_intercom's own values: `customer_initiated` is customer-initiated,
    // `operator_initiated` counts towards the bot-initiated proxy, and an assignee
    // column with no value anywhere makes team routing unknown (NULL), never 0 %.
    let mut f = Fixture::new();
    f.company("a", "A", 100.0, Some(10), "segment:renewal");
    f.retention("a", Some(0.5), Some(0.2));
    for (author, initiated) in [
        ("user", "customer_initiated"),
        ("user", "customer_initiated"),
        ("admin", "operator_initiated"),
        ("admin", "admin_initiated"),
    ] {
        f.conv_full(Conv {
            company_names: "A",
            created: "2024-06-01 10:00:00",
            closed: None,
            resp: Some(1.0),
            author,
            initiated,
            assignee: None,
            tags: "",
        });
    }
    let out = f.run("rolling:1m", UsageDefinitions::Proxy).unwrap();
    let o = &out.panels.overall;
    assert_eq!(o.conv_cnt, 4);
    assert!(close(o.contact_inbound_share, 0.5));
    assert!(close(o.bot_first_resp_share, 0.25));
    // No first_response tag anywhere: the share is the bot-initiated proxy.
    assert_eq!(out.bot_first_measure, BotMeasure::BotInitiatedProxy);
    assert_eq!(o.team_route_share, None);
    assert!(out
        .panels
        .segment
        .iter()
        .all(|r| r.team_route_share.is_none()));
    // One known assignee anywhere in scope: the NULLs count as not routed to a team.
    f.conv_full(Conv {
        company_names: "A",
        created: "2024-06-01 10:00:00",
        closed: None,
        resp: Some(1.0),
        author: "user",
        initiated: "customer_initiated",
        assignee: Some("team"),
        tags: "",
    });
    let out = f.run("rolling:1m", UsageDefinitions::Proxy).unwrap();
    assert!(close(out.panels.overall.team_route_share, 0.2));
}

#[test]
fn shares_and_proxy_retention_per_slice() {
    let mut f = Fixture::new();
    f.company("a", "A", 100.0, Some(10), "segment:renewal")
        .company("b", "B", 100.0, Some(500), "segment:renewal")
        .company("c", "C", 100.0, Some(500), "segment:renewal");
    f.retention("a", Some(0.5), Some(0.2))
        .retention("b", None, Some(0.4));
    f.conv_full(Conv {
        company_names: "A",
        created: "2024-06-01 10:00:00",
        closed: None,
        resp: Some(1.0),
        author: "bot",
        initiated: "contact_inbound",
        assignee: Some("team"),
        tags: "",
    });
    f.conv_full(Conv {
        company_names: "A",
        created: "2024-06-01 10:00:00",
        closed: None,
        resp: Some(1.0),
        author: "contact",
        initiated: "admin_outbound",
        assignee: Some("admin"),
        tags: "first_response:bot",
    });
    f.conv_full(Conv {
        company_names: "B",
        created: "2024-06-01 10:00:00",
        closed: None,
        resp: Some(1.0),
        author: "contact",
        initiated: "contact_inbound",
        assignee: None,
        tags: "",
    });
    f.conv_full(Conv {
        company_names: "B",
        created: "2024-06-01 10:00:00",
        closed: None,
        resp: Some(1.0),
        author: "bot",
        initiated: "bot_follow_up",
        assignee: Some("team"),
        tags: "first_response:human",
    });
    let out = f.run("rolling:1m", UsageDefinitions::Proxy).unwrap();
    let o = &out.panels.overall;
    assert_eq!(out.bot_first_measure, BotMeasure::FirstResponseTags);
    assert_eq!((o.companies_total, o.conv_cnt), (2, 4));
    assert!(close(o.bot_first_resp_share, 0.5));
    assert!(close(o.team_route_share, 0.5));
    assert!(close(o.contact_inbound_share, 0.5));
    // Proxy retention: mean over companies with kept conversations, NULLs skipped
    // (C has no conversation, B has no 7-day value).
    assert!(close(o.weekly_retention, 0.5));
    assert!(close(o.monthly_retention, 0.3));
    let seats: Vec<_> = out
        .panels
        .seat_bucket
        .iter()
        .map(|r| (r.seat_bucket.unwrap(), r.conv_cnt))
        .collect();
    assert_eq!(seats, [("under_60", 2), ("420_plus", 2)]);
    assert_eq!(out.panels.segment_seat_arr.len(), 2);
    assert!(out
        .panels
        .segment_seat_arr
        .iter()
        .all(|r| r.segment == Some("renewal") && r.arr_bucket == Some("under_30k")));
    assert_eq!(
        out.data_quality.coverage_segment,
        Coverage {
            tag: 3,
            column: 0,
            fallback: 0
        }
    );
    assert_eq!(
        out.data_quality.coverage_seat_bucket,
        Coverage {
            tag: 0,
            column: 0,
            fallback: 3
        }
    );
}

#[test]
fn events_retention_counts_full_weeks_and_months_inside_the_window() {
    let mut f = Fixture::new();
    f.company("a", "A", 100.0, Some(10), "segment:renewal")
        .company("b", "B", 100.0, Some(10), "segment:renewal");
    f.conv("A", "2024-03-01 10:00:00", None, Some(1.0));
    f.conv("B", "2024-03-01 10:00:00", None, Some(1.0));
    // Window 2024-01-03 .. 2024-03-31 (Wed .. Sun). Full weeks start Mon 01-08 …
    // the last full one is Mon 03-25. Full months: February and March only
    // (January starts before the window).
    // A: active weeks of 01-08 and 01-15 (pair: 1 of 2 active weeks has a successor
    //    among the pairs), and in February and March (1 month pair of 1).
    // B: active the week of 01-08 and in January (not a full month) and March.
    f.event("1", "a", true, "2024-01-08 00:00:00")
        .event("2", "a", true, "2024-01-21 23:59:59")
        .event("3", "a", true, "2024-02-10 00:00:00")
        .event("4", "a", true, "2024-03-31 23:59:59")
        .event("5", "a", false, "2024-03-04 00:00:00")
        .event("6", "b", true, "2024-01-09 12:00:00")
        .event("7", "b", true, "2024-01-02 12:00:00")
        .event("8", "b", true, "2024-03-05 12:00:00");
    let out = f
        .run("range:2024-01-03..2024-03-31", UsageDefinitions::Events)
        .unwrap();
    // Week pairs: A active 01-08, 01-15, 02-05, 03-25(last, no successor pair):
    //   p=01-08 → next active (1/1), p=01-15 → next 01-22 inactive (0/1),
    //   p=02-05 → 02-12 inactive (0/1). B: p=01-08 → 01-15 inactive (0/1),
    //   p=03-04 → 03-11 inactive (0/1). Weekly = 1 / 5.
    assert!(close(out.panels.overall.weekly_retention, 0.2));
    // Month pairs (Feb→Mar only): A active Feb and Mar (1/1); B inactive in Feb (0/0).
    assert!(close(out.panels.overall.monthly_retention, 1.0));
}

#[test]
fn tertiles_split_companies_by_bot_share_with_id_ties() {
    let mut f = Fixture::new();
    // 31 companies in renewal × under_30k, each with one closed conversation;
    // the first 11 by id are bot-first. Sizes: 11, 10, 10.
    for i in 0..31 {
        let (id, name) = (format!("c{i:02}"), format!("Co {i:02}"));
        f.company(&id, &name, 100.0, Some(10), "segment:renewal");
        let author = if i < 11 { "bot" } else { "contact" };
        f.conv_full(Conv {
            company_names: &name,
            created: "2024-06-01 10:00:00",
            closed: Some("2024-06-01 11:00:00"),
            resp: Some(5.0),
            author,
            initiated: "contact_inbound",
            assignee: None,
            tags: "",
        });
    }
    let out = f.run("rolling:1m", UsageDefinitions::Proxy).unwrap();
    let bot: Vec<_> = out
        .tertiles
        .iter()
        .filter(|t| t.by == "bot_share")
        .map(|t| (t.group, t.n, t.mean_bot_share.unwrap()))
        .collect();
    // Ascending bot share: the 20 human-first companies (c11..c30) are low and mid.
    assert_eq!(bot, [("low", 11, 0.0), ("mid", 10, 0.1), ("high", 10, 1.0)]);
    let resp: Vec<_> = out
        .tertiles
        .iter()
        .filter(|t| t.by == "avg_resp")
        .map(|t| (t.group, t.n))
        .collect();
    assert_eq!(resp, [("fast", 11), ("mid", 10), ("slow", 10)]);
    assert_eq!(out.counts.conversations_kept, 31);
}

/// Seeded random values with many ties (rounded to a few distinct values).
fn tied_values(rng: &mut rand_chacha::ChaCha8Rng, n: usize) -> Vec<f64> {
    use rand::Rng;
    (0..n)
        .map(|_| (rng.gen_range(0.0..20.0f64)).round() / 2.0)
        .collect()
}

#[test]
fn selected_percentiles_equal_sorted_percentiles_to_the_bit() {
    use rand::SeedableRng;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    let ps = [0.0, 0.01, 0.5, 0.9, 0.99, 1.0];
    assert_eq!(percentiles(&mut [], ps), [None; 6]);
    for n in (1..60).chain([101, 999, 4_000]) {
        let mut v = tied_values(&mut rng, n);
        let mut sorted = v.clone();
        sorted.sort_by(f64::total_cmp);
        let want = ps.map(|p| percentile(&sorted, p).map(f64::to_bits));
        let got = percentiles(&mut v, ps).map(|x| x.map(f64::to_bits));
        assert_eq!(got, want, "n = {n}");
    }
}

/// The response of each conversation by the rule itself: the first metrics row of its id.
fn first_row_responses(
    convs: &[&str],
    metrics: &[(&str, Option<f64>)],
) -> Vec<Option<Option<f64>>> {
    convs
        .iter()
        .map(|c| metrics.iter().find(|(m, _)| m == c).map(|(_, r)| *r))
        .collect()
}

fn column(ids: &[&str]) -> StrColumn {
    let mut c = StrColumn::default();
    for id in ids {
        c.push(id);
    }
    c
}

#[test]
fn merged_and_indexed_responses_follow_the_first_row_rule() {
    // Sorted tables (merge): a duplicate id in each table, an id without metrics, a
    // metrics row without conversation, an empty id.
    let convs = ["", "a", "b", "b", "c", "e"];
    let metrics = [
        ("", Some(0.5)),
        ("a", Some(1.0)),
        ("b", Some(2.0)),
        ("b", Some(9.0)),
        ("d", Some(4.0)),
        ("e", None),
    ];
    // The same rows in another order (index).
    let shuffled = [
        metrics[3], metrics[0], metrics[5], metrics[2], metrics[4], metrics[1],
    ];
    for (metrics, merged) in [(&metrics, true), (&shuffled, false)] {
        let ids: Vec<&str> = metrics.iter().map(|(id, _)| *id).collect();
        let minutes: Vec<Option<f64>> = metrics.iter().map(|(_, r)| *r).collect();
        let (conv_col, metric_col) = (column(&convs), column(&ids));
        let r = Responses::new(&conv_col, &metric_col, &minutes);
        assert_eq!(matches!(r, Responses::Merged(_)), merged);
        let got: Vec<_> = (0..convs.len()).map(|i| r.get(i, convs[i])).collect();
        assert_eq!(
            got,
            first_row_responses(&convs, metrics),
            "merged: {merged}"
        );
    }
    // Conversations out of order fall back to the index.
    let (conv_col, metric_col) = (column(&["b", "a"]), column(&["a", "b"]));
    let r = Responses::new(&conv_col, &metric_col, &[Some(1.0), Some(2.0)]);
    assert!(matches!(r, Responses::Indexed(_)));
    assert_eq!(r.get(0, "b"), Some(Some(2.0)));
}

#[test]
fn thirds_by_selection_match_thirds_by_sorting() {
    use rand::SeedableRng;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
    for n in [0, 1, 2, 3, 4, 30, 31, 32, 100, 1_001] {
        // Values with ties, made a total order by the position as tie-break.
        let aggs: Vec<CompanyAgg> = tied_values(&mut rng, n)
            .into_iter()
            .map(|v| CompanyAgg {
                counts: KeptCounts {
                    resp_sum: v,
                    ..KeptCounts::default()
                },
                ..CompanyAgg::default()
            })
            .collect();
        let cmp = |a: &(usize, &CompanyAgg), b: &(usize, &CompanyAgg)| {
            a.1.counts
                .resp_sum
                .total_cmp(&b.1.counts.resp_sum)
                .then(a.0.cmp(&b.0))
        };
        let mut members: Vec<(usize, &CompanyAgg)> = aggs.iter().enumerate().collect();
        let got = thirds(&mut members, cmp);
        let mut sorted: Vec<(usize, &CompanyAgg)> = aggs.iter().enumerate().collect();
        sorted.sort_by(cmp);
        let [a, b, _] = tertile_sizes(n);
        let want = [&sorted[..a], &sorted[a..a + b], &sorted[a + b..]];
        for (g, w) in got.iter().zip(want) {
            let mut g: Vec<*const CompanyAgg> = g.iter().map(|m| m.1 as *const _).collect();
            let mut w: Vec<*const CompanyAgg> = w.iter().map(|m| m.1 as *const _).collect();
            g.sort();
            w.sort();
            assert_eq!(g, w, "n = {n}");
        }
    }
}

#[test]
fn times_group_by_company_sorted_with_empty_companies() {
    let pairs = [(2, 30), (0, 5), (2, 10), (2, 20), (0, 1)];
    let t = TimesByCompany::group(4, || pairs.iter().copied());
    assert_eq!(t.of(0), [1, 5]);
    assert_eq!(t.of(1), [] as [i64; 0]);
    assert_eq!(t.of(2), [10, 20, 30]);
    assert_eq!(t.of(3), [] as [i64; 0]);
}

#[test]
fn bucket_coverage_counts_each_analysed_company_once_per_label_value() {
    let l = |segment: u8, segment_src, seat: u8, seat_src| {
        Some(Labels {
            segment,
            seat,
            arr: 4,
            segment_src,
            seat_src,
            arr_src: LabelSource::Column,
        })
    };
    let (tag, fb) = (LabelSource::Tag, LabelSource::Fallback);
    let labels = vec![
        l(0, tag, 1, fb),
        l(4, fb, 1, tag),
        None, // not paying
        l(0, tag, 5, fb),
        l(3, tag, 0, tag), // not analysed
    ];
    let b = bucket_coverage(&labels, [0, 1, 2, 3].into_iter());
    assert_eq!(
        b.segment[0],
        Coverage {
            tag: 2,
            column: 0,
            fallback: 0
        }
    );
    // Segment index 4 is `unknown`: the fallback.
    assert_eq!(
        b.segment[4],
        Coverage {
            tag: 0,
            column: 0,
            fallback: 1
        }
    );
    assert_eq!(b.segment[3], Coverage::default());
    assert_eq!(
        b.seat_bucket[1],
        Coverage {
            tag: 1,
            column: 0,
            fallback: 1
        }
    );
    assert_eq!(
        b.seat_bucket[5],
        Coverage {
            tag: 0,
            column: 0,
            fallback: 1
        }
    );
    assert_eq!(
        b.arr_bucket[4],
        // Every ARR label here came from the mapped column: counted apart from tags.
        Coverage {
            tag: 0,
            column: 3,
            fallback: 0
        }
    );
    let total: usize = b.segment.iter().map(|c| c.total()).sum();
    assert_eq!(total, 3);
}

#[test]
fn what_the_first_window_prepares_serves_the_next_as_a_load_of_its_own_would() {
    let mut f = Fixture::new();
    f.company("c1", "Acme", 100.0, Some(10), "segment:renewal");
    f.company("c2", "Beta", 50.0, Some(300), "segment:new_contract");
    f.company("c3", "Gamma", 0.0, Some(5), "segment:renewal");
    // One response time and one duration throughout: P1 and P99 keep every one.
    for (company, day) in [
        ("Acme", "2024-05-03"),
        ("Beta", "2024-05-10"),
        ("Acme", "2024-06-04"),
        ("Beta", "2024-06-12"),
        ("Gamma", "2024-06-13"),
    ] {
        let created = format!("{day} 10:00:00");
        let closed = format!("{day} 10:30:00");
        f.conv(company, &created, Some(&closed), Some(5.0));
    }
    let db = Database::open(&f.dir.path().join("db.sqlite").into()).unwrap();
    let window = |spec: &str| {
        spec.parse::<WindowSpec>()
            .unwrap()
            .resolve(None, at("2030-01-01 00:00:00"), Tz::UTC)
            .unwrap()
    };
    let (may_june, june) = (
        window("range:2024-05-01..2024-06-30"),
        window("range:2024-06-01..2024-06-30"),
    );
    let params = Params {
        usage: UsageDefinitions::Proxy,
        ..Params::default()
    };
    let load = || {
        load_conversation_usage(
            &db,
            Tz::UTC,
            UsageTables::Proxy,
            may_june,
            &Mapping::default(),
        )
        .unwrap()
    };
    let data = load();
    let both = compute(&data, may_june, params).unwrap();
    assert!(data.prepared.get().is_some(), "the first window prepares");
    let shared = compute(&data, june, params).unwrap();
    assert_eq!(shared, compute(&load(), june, params).unwrap());
    assert_eq!(
        (
            both.counts.conversations_kept,
            shared.counts.conversations_kept
        ),
        (4, 2),
        "Gamma pays nothing; each window counts its own conversations"
    );
}
