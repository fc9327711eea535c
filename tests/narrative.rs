//! Snapshots of the narrative (findings, recommendations, chart takeaways) of every
//! report in both languages, for the default demo database: a wording change shows up
//! in review.

use std::sync::OnceLock;

use chrono_tz::Tz;
use cxreport::demo::{self, DemoOptions};
use cxreport::render::narrative::sentences;
use cxreport::render::templates::Templates;
use cxreport::reports::{self, Computed, Earlier, Options, Request};

fn demo_db() -> &'static std::path::Path {
    static DB: OnceLock<(tempfile::TempDir, std::path::PathBuf)> = OnceLock::new();
    let (_, p) = DB.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("demo.sqlite");
        demo::generate(&path, &DemoOptions::default()).unwrap();
        (dir, path)
    });
    p
}

/// A report's numbers on the demo database, through the report interface.
fn computed(report: &str, usage: &str) -> Box<dyn Computed> {
    computed_on(demo_db(), report, usage)
}

fn computed_on(db_path: &std::path::Path, report: &str, usage: &str) -> Box<dyn Computed> {
    let r = reports::find(report).unwrap();
    let mut options = Options::new();
    if r.options().iter().any(|o| o.name == "usage_source") {
        options.insert("usage_source".into(), usage.to_owned());
    }
    let configured = r.configure(&options).unwrap();
    let req = Request {
        window: "rolling:6m".parse().unwrap(),
        source_tz: Tz::UTC,
        tz: Tz::UTC,
        mapping: &cxreport::run::Mapping::default(),
    };
    let db = cxreport::source::Database::open(&db_path.to_owned().into()).unwrap();
    let reference = cxreport::source::timestamp::parse("2024-07-01 00:00:00", Tz::UTC).unwrap();
    let plan = configured.plan(&db, &req, reference).unwrap();
    configured
        .compute(&db, &req, &plan, &Earlier::NoOutputs, &mut Vec::new())
        .unwrap()
}

fn narrative_text(report: &str, usage: &str, lang: &str) -> String {
    narrative_of(&*computed(report, usage), report, lang)
}

fn narrative_of(c: &dyn Computed, report: &str, lang: &str) -> String {
    let story = c.story();
    let language = Templates::default().language(report, lang).unwrap();
    let text = sentences(&story, &language).unwrap();
    let mut out = String::from("## headlines\n");
    for f in text.headlines() {
        out.push_str(&format!("[{}] {}\n", f.id, f.text));
    }
    out.push_str("\n## actions\n");
    for a in &text.actions {
        out.push_str(&format!("[{}] {}\n", a.id, a.text));
    }
    out.push_str("\n## findings\n");
    for f in &text.findings {
        let lead = if f.lead { "" } else { " (context)" };
        out.push_str(&format!("[{}]{lead} {}\n", f.id, f.text));
    }
    out.push_str("\n## recommendations\n");
    for r in &text.recommendations {
        out.push_str(&format!("[{}] {}\n", r.id, r.text));
    }
    if !text.analysis.is_empty() {
        out.push_str("\n## analysis\n");
        for a in &text.analysis {
            out.push_str(&format!(
                "[{}/{}] {}\n",
                a.section.as_deref().unwrap_or("-"),
                a.id,
                a.text
            ));
        }
    }
    out.push_str("\n## chart takeaways\n");
    // The charts an edition draws.
    for spec in cxreport::render::charts::drawable(c.charts(&language)) {
        if let Some(t) = &spec.takeaway {
            out.push_str(&format!(
                "[{}] {}\n",
                spec.id,
                language.render("takeaways.tera", "c", t).unwrap()
            ));
        }
    }
    out
}

const USAGE: &str = "conversation-usage";
const TAGS: &str = "tag-drivers";
const SEGMENTS: &str = "customer-segmentation";

#[test]
fn narrative_en_events() {
    insta::assert_snapshot!(narrative_text(USAGE, "events", "en"));
}

#[test]
fn narrative_zh_events() {
    insta::assert_snapshot!(narrative_text(USAGE, "events", "zh"));
}

#[test]
fn narrative_en_proxy() {
    insta::assert_snapshot!(narrative_text(USAGE, "proxy", "en"));
}

#[test]
fn tag_drivers_en() {
    insta::assert_snapshot!(narrative_text(TAGS, "auto", "en"));
}

#[test]
fn tag_drivers_zh() {
    insta::assert_snapshot!(narrative_text(TAGS, "auto", "zh"));
}

#[test]
fn customer_segmentation_en() {
    insta::assert_snapshot!(narrative_text(SEGMENTS, "auto", "en"));
}

#[test]
fn customer_segmentation_zh() {
    insta::assert_snapshot!(narrative_text(SEGMENTS, "auto", "zh"));
}

/// The demo database with the company tags and seat counts shuffled among companies:
/// every slice is then a random sample of companies, so no segment, size or cell
/// differs beyond chance.
fn shuffled_db() -> &'static std::path::Path {
    use rand::seq::SliceRandom;
    use rand::SeedableRng;
    static DB: OnceLock<(tempfile::TempDir, std::path::PathBuf)> = OnceLock::new();
    let (_, p) = DB.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("flat.sqlite");
        std::fs::copy(demo_db(), &path).unwrap();
        let db = rusqlite::Connection::open(&path).unwrap();
        let mut rows: Vec<(String, Option<String>, Option<i64>)> = db
            .prepare("SELECT company_id, all_company_tags, user_count FROM intercom__company_enhanced ORDER BY company_id")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let mut labels: Vec<(Option<String>, Option<i64>)> =
            rows.iter().map(|r| (r.1.clone(), r.2)).collect();
        labels.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(7));
        let tx = db.unchecked_transaction().unwrap();
        for (row, (tags, users)) in rows.iter_mut().zip(labels) {
            tx.execute(
                "UPDATE intercom__company_enhanced SET all_company_tags = ?1, user_count = ?2 WHERE company_id = ?3",
                rusqlite::params![tags, users, row.0],
            )
            .unwrap();
        }
        // Users: revenue, activity, satisfaction and tickets each shuffled on its own,
        // so no plan, engagement or training level differs beyond chance.
        let ids: Vec<String> = tx
            .prepare("SELECT user_id FROM users ORDER BY user_id")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        for (seed, column) in [
            (11u64, "annual_revenue"),
            (12, "is_active"),
            (13, "nps_score"),
            (14, "support_tickets_last_90d"),
        ] {
            let mut values: Vec<rusqlite::types::Value> = tx
                .prepare(&format!("SELECT {column} FROM users ORDER BY user_id"))
                .unwrap()
                .query_map([], |r| r.get(0))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            values.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(seed));
            for (id, v) in ids.iter().zip(values) {
                tx.execute(
                    &format!("UPDATE users SET {column} = ?1 WHERE user_id = ?2"),
                    rusqlite::params![v, id],
                )
                .unwrap();
            }
        }
        tx.commit().unwrap();
        (dir, path)
    });
    p
}

/// Every report on the shuffled database: the plain statement leads, and no
/// recommendation carries a target (a target needs a difference that holds).
#[test]
fn where_no_difference_holds_every_report_says_so_in_both_languages() {
    for report in [TAGS, SEGMENTS] {
        let c = computed_on(shuffled_db(), report, "events");
        let story = c.story();
        let leads: Vec<&str> = story
            .findings
            .iter()
            .filter(|f| f.lead)
            .map(|f| f.id)
            .collect();
        assert!(leads.contains(&"nothing_stands_out"), "{report}: {leads:?}");
        for id in [
            "nps_gap",
            "training_lift",
            "diversity_lift",
            "risk_topics",
            "growth_topics",
            "rating_gap",
        ] {
            assert!(
                !story.findings.iter().any(|f| f.id == id),
                "{report}: {id} printed on shuffled data"
            );
        }
        for r in &story.recommendations {
            assert!(
                !r.numbers.contains_key("target") && !r.numbers.contains_key("upper_arr"),
                "{report}: {} sets a target: {r:?}",
                r.id
            );
        }
        for lang in ["en", "zh"] {
            let language = Templates::default().language(report, lang).unwrap();
            let text = sentences(&story, &language).unwrap();
            let first = &text.headlines().next().unwrap().text;
            let plain = if lang == "en" {
                "Nothing stands out"
            } else {
                "没有"
            };
            assert!(
                text.findings.iter().any(|f| f.text.contains(plain)),
                "{report} {lang}: {first}"
            );
            if lang == "zh" {
                let all: String = text.findings.iter().map(|f| f.text.as_str()).collect();
                assert!(!all.contains("显著"), "{all}");
            }
            insta::assert_snapshot!(
                format!("no_difference_{report}_{lang}"),
                narrative_of(&*c, report, lang)
            );
        }
    }
}

#[test]
fn where_no_difference_holds_the_report_says_so_and_sets_no_target() {
    let c = computed_on(shuffled_db(), USAGE, "events");
    let story = c.story();
    let ids: Vec<&str> = story.findings.iter().map(|f| f.id).collect();
    assert!(ids.contains(&"nothing_stands_out"), "{ids:?}");
    let leads: Vec<&str> = story
        .findings
        .iter()
        .filter(|f| f.lead)
        .map(|f| f.id)
        .collect();
    assert_eq!(
        leads,
        ["nothing_stands_out"],
        "only the plain statement leads"
    );
    assert!(
        story.recommendations.is_empty(),
        "no target without a difference: {:?}",
        story.recommendations
    );
    for lang in ["en", "zh"] {
        let language = Templates::default().language(USAGE, lang).unwrap();
        let text = sentences(&story, &language).unwrap();
        let all: String = text.findings.iter().map(|f| f.text.as_str()).collect();
        if lang == "en" {
            assert!(all.contains("Nothing stands out"), "{all}");
            assert!(
                all.contains("no clear difference") || all.contains("no clear link"),
                "{all}"
            );
        } else {
            assert!(all.contains("本期没有突出的变化"), "{all}");
            assert!(
                !all.contains("显著"),
                "no significance word without a named test: {all}"
            );
        }
        insta::assert_snapshot!(
            format!("no_difference_{lang}"),
            narrative_of(&*c, USAGE, lang)
        );
    }
}

/// A chart is drawn only for what the claims module tells apart (report-writing.md:
/// nothing drawn as a pattern the tests call chance). A scatter is drawn exactly when
/// its correlation holds; no conversion chart stands beside a conversion finding that
/// finds no difference; and where no slice differs (the shuffled database) only the
/// trend is drawn.
#[test]
fn charts_are_drawn_only_for_differences_that_hold() {
    use cxreport::stats::claims::{correlation_p, ALPHA};
    let language = Templates::default().language(USAGE, "en").unwrap();
    for (db, label) in [(demo_db(), "demo"), (shuffled_db(), "shuffled")] {
        let c = computed_on(db, USAGE, "events");
        let summary = c.summary();
        let specs = c.charts(&language);
        let drawn: Vec<&str> = specs.iter().map(|s| s.id).collect();
        for (id, key) in [
            ("scatter_bot_conversion", "bot_share_vs_conversion"),
            ("scatter_bot_retention", "bot_share_vs_weekly_retention"),
        ] {
            let corr = &summary["correlations"][key];
            let n = corr["n"].as_u64().unwrap() as usize;
            let holds = corr["r"]
                .as_f64()
                .is_some_and(|r| correlation_p(r, n) < ALPHA);
            assert_eq!(drawn.contains(&id), holds, "{label}: {id} ({corr})");
        }
        let story = c.story();
        let conversion = story.findings.iter().find(|f| f.id == "conversion");
        if conversion.is_none_or(|f| f.keys.get("holds") == Some(&"none")) {
            for id in [
                "segment_conversion",
                "heatmap_conversion_seat",
                "heatmap_conversion_arr",
            ] {
                assert!(
                    !drawn.contains(&id),
                    "{label}: {id} drawn for no difference"
                );
            }
        }
        assert!(
            !drawn.contains(&"radar_segments"),
            "{label}: the radar repeats a table"
        );
        if label == "shuffled" {
            assert_eq!(drawn, ["trend"], "no slice differs: only the trend");
        } else {
            assert!(
                drawn.contains(&"scatter_bot_retention"),
                "the headline relationship is charted"
            );
        }
    }
}

/// Every report's charts carry their support typed from the claims module, and an
/// edition draws a chart only when it holds: on the demo and on the shuffled
/// database (where nothing differs beyond chance) no drawn chart compares values the
/// module calls indistinguishable. Checked against the reports' own summaries, so
/// that a chart whose support is built wrong (always holding) fails too.
#[test]
fn no_report_draws_a_chart_for_values_the_claims_module_calls_indistinguishable() {
    use cxreport::render::charts::{drawable, Support};
    for (db, label) in [(demo_db(), "demo"), (shuffled_db(), "shuffled")] {
        for report in [TAGS, SEGMENTS, USAGE] {
            let c = computed_on(db, report, "events");
            for lang in ["en", "zh"] {
                let language = Templates::default().language(report, lang).unwrap();
                let all = c.charts(&language);
                let tested: Vec<&str> = all
                    .iter()
                    .filter(|s| matches!(s.support, Support::Differences(_)))
                    .map(|s| s.id)
                    .collect();
                let drawn = drawable(c.charts(&language));
                for spec in &drawn {
                    assert!(spec.support.holds(), "{label} {report}: {}", spec.id);
                    assert!(
                        spec.takeaway.is_some(),
                        "{label} {report}: {} has its one-line takeaway",
                        spec.id
                    );
                }
                let drawn_ids: Vec<&str> = drawn.iter().map(|s| s.id).collect();
                // Charts that compare are typed so, whatever the data.
                for id in ["tag_gap", "lift", "heatmap_nps", "heatmap_active"] {
                    if all.iter().any(|s| s.id == id) {
                        assert!(tested.contains(&id), "{label} {report}: {id} is tested");
                    }
                }
                let summary = c.summary();
                if report == TAGS {
                    // The gap chart is drawn exactly when a topic's difference holds
                    // (the findings of over-represented topics).
                    let any_topic = c.story().findings.iter().any(|f| {
                        ["risk_topics", "growth_topics"].contains(&f.id)
                            && f.numbers.get("count").is_some_and(|n| *n > 0.0)
                    });
                    assert_eq!(
                        drawn_ids.contains(&"tag_gap"),
                        any_topic,
                        "{label}: tag_gap"
                    );
                    assert!(!drawn_ids.contains(&"top_tags") && !drawn_ids.contains(&"service"));
                }
                if report == SEGMENTS {
                    let holds = |k: &str| {
                        summary[k]["arr_p"]
                            .as_f64()
                            .is_some_and(|p| p < cxreport::stats::claims::ALPHA)
                    };
                    assert_eq!(
                        drawn_ids.contains(&"lift"),
                        holds("training") || holds("diversity"),
                        "{label}: lift"
                    );
                    assert!(!drawn_ids.contains(&"sankey_journey"), "six stages");
                }
                if label == "shuffled" {
                    let compared: Vec<&&str> =
                        drawn_ids.iter().filter(|id| tested.contains(id)).collect();
                    assert!(
                        compared.is_empty(),
                        "{report} {lang}: nothing differs, yet {compared:?} drawn"
                    );
                }
            }
        }
    }
}
