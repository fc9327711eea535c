//! tag-drivers end to end: its outputs agree and both editions read as the analysis;
//! on the planted demo it names the topic change, each value a run on the comparison
//! window.

use std::path::PathBuf;

use super::{close, output_of};
use crate::common::{col, json, pdf_pages, pdf_text, read_csv, run, squash, text};
use cxreport::render::templates::Templates;

#[test]
fn tag_drivers_outputs_agree_and_both_editions_read_as_the_analysis() {
    let dir = output_of("tag-drivers");
    assert_eq!(
        dir.file_name().unwrap(),
        "2023-12-15_2024-06-15",
        "same window rule as conversation-usage"
    );
    let summary = json(&dir.join("summary.json"));
    let manifest = json(&dir.join("manifest.json"));
    assert_eq!(manifest["report"], "tag-drivers");
    assert_eq!(manifest["parameters"]["min_pp"], 3.0);

    let (header, rows) = read_csv(&dir.join("tag_shares.csv"));
    assert_eq!(header, ["group", "tag", "conversations", "share"]);
    let (gh, groups) = read_csv(&dir.join("group_stats.csv"));
    assert_eq!(
        gh,
        [
            "group",
            "companies",
            "conversations",
            "avg_rating",
            "share_rated_le2",
            "median_resp",
            "reopen_rate"
        ]
    );
    assert_eq!(groups.len(), 2);
    for g in &groups {
        let conversations: f64 = g[col(&gh, "conversations")].parse().unwrap();
        let mine: Vec<&Vec<String>> = rows.iter().filter(|r| r[0] == g[0]).collect();
        assert!(!mine.is_empty(), "{}: topics", g[0]);
        for r in mine {
            assert!(!r[1].contains(':'), "machine tag {} kept", r[1]);
            let n: f64 = r[2].parse().unwrap();
            let share: f64 = r[3].parse().unwrap();
            assert!(close(share, n / conversations), "{r:?}");
        }
    }
    // The top table: the union of both groups' top ten, difference in pp.
    let top = summary["top"].as_array().unwrap();
    assert!((10..=20).contains(&top.len()), "{}", top.len());
    for t in top {
        let d = t["at_risk_share"].as_f64().unwrap() - t["expansion_share"].as_f64().unwrap();
        assert!(close(d * 100.0, t["difference_pp"].as_f64().unwrap()));
    }
    let finding_ids: Vec<&str> = summary["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["id"].as_str().unwrap())
        .collect();
    assert!(finding_ids.contains(&"risk_topics"), "{finding_ids:?}");
    assert!(finding_ids.contains(&"growth_topics"), "{finding_ids:?}");
    assert!(
        summary["recommendations"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["follows"] == "risk_topics"),
        "stability work follows the at-risk topics"
    );

    let rating = |g: usize| {
        format!(
            "{:.2}",
            summary["groups"][g]["avg_rating"].as_f64().unwrap()
        )
    };
    for (lang, title) in [
        // The title promises a comparison, not the causes of upgrades and downgrades.
        (
            "en",
            "What at-risk and expansion customers talk to support about",
        ),
        ("zh", "流失风险客户与扩展目标客户在咨询什么"),
    ] {
        let pdf = dir.join(format!("report.{lang}.pdf"));
        assert!(
            pdf_pages(&pdf) >= 5,
            "{lang}: a finished analysis, not a stub"
        );
        let t = pdf_text(&pdf);
        let flat = squash(&t);
        assert!(flat.contains(&squash(title)), "{lang}: title");
        assert!(
            flat.contains(&rating(0)) && flat.contains(&rating(1)),
            "{lang}: ratings"
        );
        // Topic tags print in the edition's language (the zh strings name every demo tag).
        let language = Templates::default().language("tag-drivers", lang).unwrap();
        for tag in top {
            let tag = tag["tag"].as_str().unwrap();
            let name = language.strings.topic(tag);
            assert!(
                flat.contains(&squash(&name)),
                "{lang}: topic {tag} as {name}"
            );
            if lang == "zh" {
                assert_ne!(name, tag, "zh names the demo topic {tag}");
                assert!(!flat.contains(&squash(tag)), "zh: {tag} left in English");
            }
        }
        // Every group measure and topic share is read against all paying customers,
        // and the topic table says which differences hold.
        for key in ["groups.all_paying", "topics.clear"] {
            assert!(
                flat.contains(&squash(&language.strings.get(key))),
                "{lang}: {key}"
            );
        }
        assert!(
            !flat.contains(&squash("显著")),
            "{lang}: no significance word"
        );
        assert!(
            squash(&crate::common::pdf_page_text(&pdf, 1))
                .contains(&squash(&language.strings.get("brief.stake"))),
            "{lang}: what is at stake, on page 1"
        );
        // One chart of the topics (the gap, coloured where it holds); the shares side
        // by side and the two service bars are sentences, not charts.
        let svg = std::fs::read_to_string(dir.join(format!("charts/tag_gap.{lang}.svg"))).unwrap();
        assert!(
            svg.starts_with("<svg") && svg.contains("<path"),
            "tag_gap.{lang}"
        );
        for gone in ["top_tags", "service"] {
            assert!(
                !dir.join(format!("charts/{gone}.{lang}.svg")).exists(),
                "{gone}.{lang}"
            );
        }
    }
    assert!(pdf_text(&dir.join("report.zh.pdf")).contains("流失风险"));
}

/// tag-drivers compares itself too: on the planted demo the at-risk group's Bug share
/// falls and its Outage share rises (the planted topic move), each value equal to a
/// run of the report on the comparison window itself; page 1 reads the two together as
/// a probable relabelling in both languages (neither as a fall or a rise), and the
/// trend draws the topics month by month.
#[test]
fn tag_drivers_names_the_planted_topic_change() {
    let dir = tempfile::tempdir().unwrap();
    let db = crate::common::planted_demo(dir.path());
    let tag_run = |out: &str, window: &str, extra: &[&str]| -> PathBuf {
        let out = dir.path().join(out);
        let mut args = vec![
            "run",
            "tag-drivers",
            "--db",
            db.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--window",
            window,
        ];
        args.extend_from_slice(extra);
        let o = run(&args);
        assert!(o.status.success(), "{}", text(&o));
        let period = window.trim_start_matches("range:").replace("..", "_");
        out.join("tag-drivers").join(period)
    };
    let report = tag_run("now", "range:2024-04-01..2024-05-31", &[]);
    let summary = crate::common::json(&report.join("summary.json"));
    let c = &summary["comparison"];
    assert_eq!(c["period"], "2024-01-31_2024-03-31");
    let change = |group: &str, metric: &str, item: Option<&str>| {
        c["changes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["slice"] == group && x["metric"] == metric && x["item"].as_str() == item)
            .unwrap_or_else(|| panic!("{group} {metric} {item:?}"))
            .clone()
    };
    let bug = change("at_risk", "topic_share", Some("Bug"));
    let outage = change("at_risk", "topic_share", Some("Outage"));
    assert_eq!(bug["direction"], "fall", "{bug}");
    assert_eq!(outage["direction"], "rise", "{outage}");
    assert_ne!(
        change("at_risk", "conversations", None)["direction"],
        "fall"
    );
    // The earlier values are those of a run on the comparison window.
    let earlier = tag_run(
        "then",
        "range:2024-01-31..2024-03-31",
        &["--data-only", "--compare", "none"],
    );
    let alone = crate::common::json(&earlier.join("summary.json"));
    assert!(alone.get("comparison").is_none());
    let group_n = alone["groups"][0]["conversations"].as_f64().unwrap();
    let (_, rows) = read_csv(&earlier.join("tag_shares.csv"));
    let bug_then = rows
        .iter()
        .find(|r| r[0] == "at_risk" && r[1] == "Bug")
        .map(|r| r[2].parse::<f64>().unwrap())
        .unwrap();
    assert_eq!(bug["previous_n"].as_f64(), Some(group_n));
    assert_eq!(bug["previous_k"].as_f64(), Some(bug_then));
    assert_eq!(bug["previous"].as_f64(), Some(bug_then / group_n));
    // Bug's fall and Outage's rise offset (the planted re-tagging): page 1 leads with
    // the pair read together, never with Bug's fall or Outage's rise on its own, and
    // the first action is to check the tagging rules.
    let findings = summary["findings"].as_array().unwrap();
    assert_eq!(findings[0]["id"], "relabel", "{:?}", findings[0]);
    let pair = &findings[0]["slices"]["pairs"][0];
    assert_eq!(pair["group"], "at_risk");
    assert_eq!(
        (pair["fall"]["tag"].as_str(), pair["rise"]["tag"].as_str()),
        (Some("Bug"), Some("Outage"))
    );
    let recs = summary["recommendations"].as_array().unwrap();
    assert_eq!(recs[0]["id"], "check_tagging");
    for r in recs.iter().filter(|r| r["id"] == "address_risk_topic") {
        let tag = r["slices"]["tag"].as_str().unwrap();
        if ["Bug", "Outage"].contains(&tag) {
            assert!(
                r["slices"]["with"].is_string(),
                "no action on one topic of the pair alone: {r}"
            );
        }
    }
    let pct = |v: &serde_json::Value| format!("{:.1}%", v.as_f64().unwrap() * 100.0);
    // Together is the sum of the printed shares; its change the difference of those.
    let printed = |v: &serde_json::Value| (v.as_f64().unwrap() * 1000.0).round();
    assert_eq!(
        printed(&pair["previous"]),
        printed(&pair["fall"]["previous"]) + printed(&pair["rise"]["previous"])
    );
    assert_eq!(
        printed(&pair["change"]),
        (printed(&pair["current"]) - printed(&pair["previous"])).abs()
    );
    for (lang, said, fell, rose, trend) in [
        (
            "en",
            format!(
                "At-risk conversations about Bug (−{} pp, {} → {}) and Outage (+{} pp, {} → {}) offset: together {} → {}",
                pct(&pair["fall"]["change"]).trim_end_matches('%'),
                pct(&bug["previous"]),
                pct(&bug["current"]),
                pct(&pair["rise"]["change"]).trim_end_matches('%'),
                pct(&outage["previous"]),
                pct(&outage["current"]),
                pct(&pair["previous"]),
                pct(&pair["current"]),
            ),
            "about Bug fell",
            "about Outage rose",
            "Topics month by month",
        ),
        (
            "zh",
            format!(
                "流失风险组会话中“故障”（−{} 个百分点，{} → {}）与“服务中断”（+{} 个百分点，{} → {}）相互抵消：两者合计 {} → {}",
                pct(&pair["fall"]["change"]).trim_end_matches('%'),
                pct(&bug["previous"]),
                pct(&bug["current"]),
                pct(&pair["rise"]["change"]).trim_end_matches('%'),
                pct(&outage["previous"]),
                pct(&outage["current"]),
                pct(&pair["previous"]),
                pct(&pair["current"]),
            ),
            "涉及“故障”的占比由",
            "涉及“服务中断”的占比由",
            "话题逐月走势",
        ),
    ] {
        let page1 = crate::common::squash(&crate::common::pdf_page_text(
            &report.join(format!("report.{lang}.pdf")),
            1,
        ));
        assert!(
            page1.contains(&crate::common::squash(&said)),
            "{lang}: {said}\n{page1}"
        );
        for alone in [fell, rose] {
            assert!(
                !page1.contains(&crate::common::squash(alone)),
                "{lang}: {alone} on page 1"
            );
        }
        let pdf = crate::common::squash(&crate::common::pdf_text(
            &report.join(format!("report.{lang}.pdf")),
        ));
        assert!(pdf.contains(&crate::common::squash(trend)), "{lang}: trend");
    }
    let (header, _) = read_csv(&report.join("comparison.csv"));
    assert!(header.iter().any(|h| h == "item"));
    // The trend's topics, month by month; April as a run on April prints it.
    let months = summary["trend"]["months"].as_array().unwrap();
    let april = months.iter().find(|m| m["month"] == "2024-04").unwrap();
    let topics = summary["trend"]["topics"].as_array().unwrap();
    let alone = crate::common::json(
        &tag_run(
            "april",
            "range:2024-04-01..2024-04-30",
            &["--data-only", "--compare", "none"],
        )
        .join("summary.json"),
    );
    let n = alone["groups"][0]["conversations"].as_f64().unwrap();
    assert_eq!(april["conversations"][0].as_f64(), Some(n));
    for (i, topic) in topics.iter().enumerate() {
        let k = alone["shares"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["group"] == "at_risk" && x["tag"] == *topic)
            .map_or(0.0, |x| x["conversations"].as_f64().unwrap());
        assert_eq!(april["at_risk"][i].as_f64(), Some(k / n), "{topic}");
    }
}

/// Targets the next edition can check, on the demo's rolling six months: each names
/// the edition that checks it (a quarter later), and what that edition reads when the
/// new conversations meet the target is today's rate on the months it shares plus the
/// target on the rest; page 1 prints that number. Every chart label of the gap chart is
/// the difference of the printed shares, as the topic table prints it.
#[test]
fn tag_drivers_targets_are_reachable_in_their_checking_edition_and_labels_agree() {
    let dir = output_of("tag-drivers");
    let summary = json(&dir.join("summary.json"));
    let pct = |v: f64| format!("{:.1}%", v * 100.0);
    let recs = summary["recommendations"].as_array().unwrap();
    let mut checked_any = false;
    for r in recs {
        let n = &r["numbers"];
        let Some(checked) = n["checked"].as_f64() else {
            continue;
        };
        checked_any = true;
        let (o, target) = (n["overlap"].as_f64().unwrap(), {
            let t = n.get("target").or_else(|| n.get("target_share"));
            t.and_then(|t| t.as_f64()).unwrap()
        });
        let current = n
            .get("current")
            .or_else(|| n.get("current_share"))
            .and_then(|v| v.as_f64())
            .unwrap();
        // 2023-12-15 – 2024-06-15 checked by 2024-03-15 – 2024-09-15: 93 of 183 days.
        assert_eq!(r["slices"]["check_period"], "2024-03-15_2024-09-15", "{r}");
        assert!((o - 93.0 / 183.0).abs() < 0.01, "{o}");
        assert!(close(checked, o * current + (1.0 - o) * target), "{r}");
        assert!(checked >= o * current - 1e-12, "reachable: {r}");
        assert!(close(n["floor"].as_f64().unwrap(), o * current));
        for lang in ["en", "zh"] {
            let t = crate::common::squash(&pdf_text(&dir.join(format!("report.{lang}.pdf"))));
            assert!(
                t.contains(&squash(&pct(checked)))
                    && t.contains(&squash("2024-03-15 – 2024-09-15")),
                "{lang}: {} and the checking edition",
                pct(checked)
            );
        }
    }
    assert!(checked_any, "the demo sets rate targets");
    let page1 = squash(&crate::common::pdf_page_text(&dir.join("report.en.pdf"), 1));
    assert!(
        !page1.contains(&squash("next quarter's edition")),
        "{page1}"
    );
    // The gap chart's labels are the table's differences.
    let round1 = |v: f64| (v * 1000.0).round() / 10.0;
    let svg = std::fs::read_to_string(dir.join("charts/tag_gap.en.svg")).unwrap();
    let labels: Vec<String> = svg
        .split("</text>")
        .filter_map(|x| x.rsplit_once('>').map(|(_, t)| t.to_owned()))
        .collect();
    let table = pdf_text(&dir.join("report.en.pdf"));
    for t in summary["top"].as_array().unwrap() {
        let (a, b) = (
            round1(t["at_risk_share"].as_f64().unwrap()),
            round1(t["expansion_share"].as_f64().unwrap()),
        );
        let d = format!("{:.1}", a - b);
        assert!(labels.contains(&d), "{}: label {d} in {labels:?}", t["tag"]);
        let signed = if a - b > 0.0 {
            format!("+{d} pp")
        } else {
            format!("{d} pp")
        };
        assert!(
            table.contains(&signed) || table.contains(&signed.replace('-', "−")),
            "{}: table {signed}",
            t["tag"]
        );
    }
}

/// Seed 003's analyses: which topics the low ratings come from (low_rating_topics.csv,
/// each at-risk row equal to a recount from the database), an action for every named
/// at-risk topic, and Downgrade Risk, which restates the at-risk group, flagged as
/// circular instead of read as a driver; both editions print the section.
#[test]
fn tag_drivers_low_rated_topics_recount_and_the_circular_topic_is_no_driver() {
    let dir = output_of("tag-drivers");
    let (h, rows) = read_csv(&dir.join("low_rating_topics.csv"));
    assert_eq!(
        h,
        [
            "group",
            "tag",
            "rated",
            "rated_le2",
            "share_rated_le2",
            "rest_rated",
            "rest_rated_le2",
            "rest_share_rated_le2",
            "verdict"
        ]
    );
    // The window of the demo edition, 2023-12-15 – 2024-06-15, and the at-risk rule.
    let conn = rusqlite::Connection::open(crate::common::demo_db()).unwrap();
    let recount = |tag: &str| -> (i64, i64, i64, i64) {
        conn.query_row(
            "WITH risk AS (
               SELECT DISTINCT lower(trim(company_name)) AS n FROM intercom__company_enhanced
               WHERE monthly_spend > 0
                 AND (',' || lower(replace(all_company_tags, ', ', ',')) || ',' LIKE '%,churn watch,%'
                   OR ',' || lower(replace(all_company_tags, ', ', ',')) || ',' LIKE '%,segment:churn_watch,%')),
             conv AS (
               SELECT ',' || replace(coalesce(all_conversation_tags, ''), ', ', ',') || ',' AS tags,
                      conversation_rating AS r
               FROM intercom__conversation_enhanced
               WHERE conversation_created_at >= '2023-12-15' AND conversation_created_at < '2024-06-16'
                 AND lower(trim(substr(all_contact_company_names, 1,
                       instr(all_contact_company_names || ',', ',') - 1))) IN (SELECT n FROM risk))
             SELECT sum(r IS NOT NULL), sum(r <= 2),
                    sum(r IS NOT NULL AND instr(tags, ',' || ?1 || ',') > 0),
                    sum(r <= 2 AND instr(tags, ',' || ?1 || ',') > 0)
             FROM conv",
            [tag],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .unwrap()
    };
    let at_risk: Vec<&Vec<String>> = rows.iter().filter(|r| r[0] == "at_risk").collect();
    assert!(at_risk.len() >= 10, "{}", at_risk.len());
    let num = |r: &Vec<String>, c: &str| -> i64 { r[col(&h, c)].parse().unwrap() };
    for r in &at_risk {
        let (rated, low, tag_rated, tag_low) = recount(&r[1]);
        assert_eq!(
            (num(r, "rated"), num(r, "rated_le2")),
            (tag_rated, tag_low),
            "{r:?}"
        );
        assert_eq!(
            (num(r, "rest_rated"), num(r, "rest_rated_le2")),
            (rated - tag_rated, low - tag_low),
            "{r:?}"
        );
        let share: f64 = r[col(&h, "share_rated_le2")].parse().unwrap();
        assert!(close(share, tag_low as f64 / tag_rated as f64), "{r:?}");
    }
    let summary = json(&dir.join("summary.json"));
    let findings = summary["findings"].as_array().unwrap();
    let by_id = |id: &str| findings.iter().find(|f| f["id"] == id);
    // The section is a finding or its stated limit, from the same rows.
    let low = by_id("low_rating_topics")
        .or_else(|| by_id("no_low_rating_topic"))
        .expect("the low-rated topics are read");
    let holds = at_risk.iter().filter(|r| r[8] == "higher").count();
    assert_eq!(low["numbers"]["count"].as_f64(), Some(holds as f64));
    assert_eq!(
        low["id"] == "low_rating_topics",
        holds > 0,
        "named only where the test holds"
    );
    // Downgrade Risk restates the at-risk group: flagged, no driver, no action.
    let circular = by_id("circular").expect("Downgrade Risk flagged as circular");
    assert_eq!(circular["slices"]["tags"][0]["tag"], "Downgrade Risk");
    let risk = by_id("risk_topics").unwrap();
    let named: Vec<&str> = risk["slices"]["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["tag"].as_str().unwrap())
        .collect();
    assert!(!named.contains(&"Downgrade Risk"), "{named:?}");
    let recs = summary["recommendations"].as_array().unwrap();
    for tag in &named {
        assert!(
            recs.iter()
                .any(|x| x["id"] == "address_risk_topic" && x["slices"]["tag"] == *tag),
            "an action for {tag}"
        );
    }
    assert!(!recs.iter().any(|x| x["slices"]["tag"] == "Downgrade Risk"));
    for lang in ["en", "zh"] {
        let flat = squash(&pdf_text(&dir.join(format!("report.{lang}.pdf"))));
        let language = Templates::default().language("tag-drivers", lang).unwrap();
        assert!(
            flat.contains(&squash(&language.strings.get("sections.low_ratings"))),
            "{lang}: the low-rated topics section"
        );
        let word = if lang == "en" {
            "circular"
        } else {
            "循环论证"
        };
        assert!(flat.contains(word), "{lang}: the circular topic");
    }
}
