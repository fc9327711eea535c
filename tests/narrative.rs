//! Snapshots of the narrative (findings, recommendations, chart takeaways) in both
//! languages, for the default demo database: a wording change shows up in review.

use chrono_tz::Tz;
use cxreport::data::{Database, UsageTables};
use cxreport::demo::{self, DemoOptions};
use cxreport::edition;
use cxreport::metrics::{self, Params, UsageDefinitions};
use cxreport::narrative::Templates;
use cxreport::reports::conversation_usage::NAME as REPORT;
use cxreport::reports::Computed;
use cxreport::window::WindowSpec;

fn narrative_text(usage: UsageDefinitions, lang: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("demo.sqlite");
    demo::generate(&path, &DemoOptions::default()).unwrap();
    let db = Database::open(&path).unwrap();
    let tables = match usage {
        UsageDefinitions::Events => UsageTables::Events,
        UsageDefinitions::Proxy => UsageTables::Proxy,
    };
    let data = db.load_conversation_usage(Tz::UTC, tables).unwrap();
    let anchor = db.max_conversation_created(Tz::UTC).unwrap();
    let window = "rolling:6m"
        .parse::<WindowSpec>()
        .unwrap()
        .resolve(anchor, anchor.unwrap(), Tz::UTC)
        .unwrap();
    let report = metrics::compute(
        &data,
        window,
        Params {
            usage,
            ..Params::default()
        },
    )
    .unwrap();
    let story = report.story();
    let language = Templates::default().language(REPORT, lang).unwrap();
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
    for spec in report.charts(&language) {
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

#[test]
fn narrative_en_events() {
    insta::assert_snapshot!(narrative_text(UsageDefinitions::Events, "en"));
}

#[test]
fn narrative_zh_events() {
    insta::assert_snapshot!(narrative_text(UsageDefinitions::Events, "zh"));
}

#[test]
fn narrative_en_proxy() {
    insta::assert_snapshot!(narrative_text(UsageDefinitions::Proxy, "en"));
}
