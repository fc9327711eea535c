//! Snapshots of the narrative (findings, recommendations, chart takeaways) of every
//! report in both languages, for the default demo database: a wording change shows up
//! in review.

use std::sync::OnceLock;

use chrono_tz::Tz;
use cxreport::demo::{self, DemoOptions};
use cxreport::edition;
use cxreport::narrative::Templates;
use cxreport::pipeline::{RunRequest, UsageSource};
use cxreport::reports::{self, Computed};

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
fn computed(report: &str, usage: UsageSource) -> Box<dyn Computed> {
    let r = reports::find(report).unwrap();
    let req = RunRequest {
        report: report.to_owned(),
        db: demo_db().to_owned(),
        window: "rolling:6m".parse().unwrap(),
        usage_source: usage,
        out_dir: "unused".into(),
        name: report.to_owned(),
        source_tz: Tz::UTC,
        tz: Tz::UTC,
        min_cell: 20,
        min_pp: 3.0,
        langs: vec![],
        templates: Templates::default(),
    };
    let db = cxreport::data::Database::open(demo_db()).unwrap();
    let reference = cxreport::timestamp::parse("2024-07-01 00:00:00", Tz::UTC).unwrap();
    let plan = r.plan(&db, &req, reference).unwrap();
    r.compute(&db, &req, &plan, &mut Vec::new()).unwrap()
}

fn narrative_text(report: &str, usage: UsageSource, lang: &str) -> String {
    let c = computed(report, usage);
    let story = c.story();
    let language = Templates::default().language(report, lang).unwrap();
    let (findings, recs) = edition::sentences(&story, &language).unwrap();
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
    insta::assert_snapshot!(narrative_text(USAGE, UsageSource::Events, "en"));
}

#[test]
fn narrative_zh_events() {
    insta::assert_snapshot!(narrative_text(USAGE, UsageSource::Events, "zh"));
}

#[test]
fn narrative_en_proxy() {
    insta::assert_snapshot!(narrative_text(USAGE, UsageSource::Proxy, "en"));
}

#[test]
fn tag_drivers_en() {
    insta::assert_snapshot!(narrative_text(TAGS, UsageSource::Auto, "en"));
}

#[test]
fn tag_drivers_zh() {
    insta::assert_snapshot!(narrative_text(TAGS, UsageSource::Auto, "zh"));
}

#[test]
fn customer_segmentation_en() {
    insta::assert_snapshot!(narrative_text(SEGMENTS, UsageSource::Auto, "en"));
}

#[test]
fn customer_segmentation_zh() {
    insta::assert_snapshot!(narrative_text(SEGMENTS, UsageSource::Auto, "zh"));
}
