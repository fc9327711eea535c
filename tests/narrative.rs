//! Snapshots of the narrative (findings, recommendations, chart takeaways) of every
//! report in both languages, for the default demo database: a wording change shows up
//! in review.

use std::sync::OnceLock;

use chrono_tz::Tz;
use cxreport::demo::{self, DemoOptions};
use cxreport::render::narrative::sentences;
use cxreport::render::templates::Templates;
use cxreport::reports::{self, Computed, Options, Request};

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
    let r = reports::find(report).unwrap();
    let mut options = Options::new();
    if r.options().iter().any(|o| o.name == "usage_source") {
        options.insert("usage_source".into(), usage.to_owned());
    }
    let req = Request {
        window: "rolling:6m".parse().unwrap(),
        source_tz: Tz::UTC,
        tz: Tz::UTC,
        options: &options,
        mapping: &cxreport::run::Mapping::default(),
    };
    let db = cxreport::source::Database::open(&demo_db().to_owned().into()).unwrap();
    let reference = cxreport::source::timestamp::parse("2024-07-01 00:00:00", Tz::UTC).unwrap();
    let plan = r.plan(&db, &req, reference).unwrap();
    r.compute(&db, &req, &plan, &mut Vec::new()).unwrap()
}

fn narrative_text(report: &str, usage: &str, lang: &str) -> String {
    let c = computed(report, usage);
    let story = c.story();
    let language = Templates::default().language(report, lang).unwrap();
    let (findings, recs) = sentences(&story, &language).unwrap();
    let mut out = String::from("## findings\n");
    for f in findings {
        out.push_str(&format!("[{}] {}\n", f.id, f.text));
    }
    out.push_str("\n## recommendations\n");
    for r in recs {
        out.push_str(&format!("[{}] {}\n", r.id, r.text));
    }
    out.push_str("\n## chart takeaways\n");
    for spec in c.charts(&language) {
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
