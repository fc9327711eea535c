//! The method appendix and the words that name populations (issue 27, items 7 and
//! 8), read back from both editions on the demo: conversation-usage names its
//! window's anchor and covered part, the segment fallback, label coverage on the
//! analysed companies, the spec's three key slices and the panel's service columns;
//! tag-drivers names company ARR and sets its at-risk group against the others'.
//! Counts and rates expected are taken from the run's own summary.json.

use serde_json::Value;

use crate::common::{json, pdf_text, squash};

fn text_of(out: &std::path::Path, lang: &str) -> String {
    squash(&pdf_text(&out.join(format!("report.{lang}.pdf"))))
}

fn n(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("a count: {v}"))
}

/// A count as the editions print it (`2,299`).
fn count(v: u64) -> String {
    let s = v.to_string();
    let mut out = String::new();
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

#[test]
fn the_usage_method_names_anchor_coverage_fallback_key_slices_and_service_columns() {
    let out = crate::output_of("conversation-usage");
    let summary = json(&out.join("summary.json"));
    let (en, zh) = (text_of(out, "en"), text_of(out, "zh"));
    // The anchor: the latest conversation of the demo, and the part of the window the
    // data covers (conversations from 2024-01-08).
    for t in [&en, &zh] {
        assert!(t.contains(&squash("2024-06-15 12:00:00 UTC")), "anchor");
    }
    assert!(en.contains(&squash("Window anchor: the latest conversation")));
    assert!(en.contains(&squash(
        "2024-01-08 – 2024-06-15, 5.3 of 6 months; no data 2023-12-15 – 2024-01-07"
    )));
    assert!(zh.contains(&squash(
        "2024-01-08 – 2024-06-15，6 个月中的 5.3 个月；2023-12-15 – 2024-01-07 没有数据"
    )));
    // The segment fallback among paying and analysed companies; the analysed
    // companies' coverage per bucket adds up to the companies kept.
    let dq = &summary["data_quality"];
    let paying = &dq["coverage_segment"];
    let per_bucket = dq["analysed_coverage"]["segment"].as_array().unwrap();
    let analysed: u64 = per_bucket
        .iter()
        .map(|c| n(&c["tag"]) + n(&c["fallback"]))
        .sum();
    assert_eq!(analysed, n(&summary["counts"]["companies_kept"]));
    let fallback: u64 = per_bucket.iter().map(|c| n(&c["fallback"])).sum();
    let paying_all = n(&paying["tag"]) + n(&paying["fallback"]);
    assert!(
        en.contains(&squash(&format!(
            "{} of {} paying companies; {} of {} analysed",
            count(n(&paying["fallback"])),
            count(paying_all),
            count(fallback),
            count(analysed)
        ))),
        "{en}"
    );
    assert!(zh.contains(&squash(&format!(
        "付费公司 {} 家中 {} 家；参与分析的 {} 家中 {} 家",
        count(paying_all),
        count(n(&paying["fallback"])),
        count(analysed),
        count(fallback)
    ))));
    assert!(en.contains(&squash(
        "Slice labels of the analysed companies (kept conversations), per bucket"
    )));
    // Mapping coverage as a percentage.
    assert!(
        en.contains(&squash("(0.8%; 99.2% mapped) match no paying company")),
        "{en}"
    );
    assert!(zh.contains(&squash("（0.8%；已关联 99.2%）匹配不到付费公司")));
    // The three key slices of the spec, each with its companies and its peers.
    let cells = summary["panels"]["segment_seat_arr"].as_array().unwrap();
    for (segment, seat, arr, en_name, zh_name) in [
        (
            "new_contract",
            "260_419",
            "110k_200k",
            "New contract · 260–419 seats · ARR $110–200k",
            "新签约 · 260–419 席 · ARR 11–20 万美元",
        ),
        (
            "churn_watch",
            "420_plus",
            "200k_plus",
            "Churn watch · 420+ seats · ARR ≥$200k",
            "流失预警 · 420 席及以上 · ARR 20 万美元及以上",
        ),
        (
            "renewal",
            "60_129",
            "30k_65k",
            "Renewal · 60–129 seats · ARR $30–65k",
            "续约 · 60–129 席 · ARR 3–6.5 万美元",
        ),
    ] {
        let cell = cells
            .iter()
            .find(|c| c["segment"] == segment && c["seat_bucket"] == seat && c["arr_bucket"] == arr)
            .unwrap_or_else(|| panic!("{segment} {seat} {arr} is in the demo"));
        let companies = count(n(&cell["companies_total"]));
        assert!(
            en.contains(&squash(&format!("{en_name}: {companies} companies,"))),
            "{en_name}: {en}"
        );
        assert!(
            zh.contains(&squash(&format!("{zh_name}：{companies} 家公司"))),
            "{zh_name}"
        );
    }
    assert!(en.contains(&squash("The three slices the reference analyses watch")));
    assert!(en.contains("foritspeers,nocleardifference"), "{en}");
    // The panel's service and routing columns, from the panel's own overall row.
    let overall = &summary["panels"]["overall"];
    let closed = format!(
        "{}/{}",
        count(n(&overall["companies_with_closed_conv"])),
        count(n(&overall["companies_total"]))
    );
    let p50 = format!("{:.1}", overall["p50_resp"].as_f64().unwrap());
    for t in [&en, &zh] {
        assert!(
            t.contains(&squash(&format!("{closed} {p50}"))),
            "overall {closed} {p50}"
        );
    }
    for (t, heads) in [
        (&en, ["Closed (k/n)", "P50 resp.", "Avg duration"]),
        (&zh, ["已关闭（k/n）", "响应中位数", "平均时长"]),
    ] {
        for h in heads {
            assert!(t.contains(&squash(h)), "{h}");
        }
    }
}

#[test]
fn tag_drivers_names_company_arr_and_reconciles_its_at_risk_group() {
    let out = crate::output_of("tag-drivers");
    let summary = json(&out.join("summary.json"));
    let parts = &summary["at_risk_parts"];
    let companies = n(&summary["groups"][0]["companies"]);
    let (seg, tag) = (n(&parts["by_segment"]), n(&parts["by_tag_only"]));
    assert_eq!(seg + tag, companies);
    assert!(
        tag > 0,
        "the demo tags some companies Churn Watch outside the segment"
    );
    let page1 = |lang: &str| {
        squash(&crate::common::pdf_page_text(
            &out.join(format!("report.{lang}.pdf")),
            1,
        ))
    };
    assert!(page1("en").contains(&squash(&format!(
        "{} at-risk companies contacted support this period, holding $71.1M company ARR (12 × monthly spend)",
        count(companies)
    ))));
    assert!(page1("zh").contains(&squash("公司 ARR（月支出 × 12）合计 7,106 万美元")));
    let (en, zh) = (text_of(out, "en"), text_of(out, "zh"));
    assert!(
        en.contains(&squash(&format!(
            "tagged Churn Watch or in the Churn watch segment, with a conversation in the window: {} companies holding $71.1M company ARR (12 × monthly spend), {} of them in the segment and {} by the tag alone",
            count(companies),
            count(seg),
            count(tag)
        ))),
        "{en}"
    );
    assert!(en.contains(&squash(
        "Conversation-usage's Churn watch is the segment alone"
    )));
    assert!(en.contains(&squash(
        "Customer-segmentation's revenue is users' annual revenue"
    )));
    assert!(zh.contains(&squash(&format!(
        "共 {} 家，公司 ARR（月支出 × 12）合计 7,106 万美元，其中 {} 家属于该阶段，{} 家仅因标签列入",
        count(companies),
        count(seg),
        count(tag)
    ))));
    // customer-segmentation says whose revenue its ARR is, on page 1.
    let cs = crate::output_of("customer-segmentation");
    let p = |lang: &str| {
        squash(&crate::common::pdf_page_text(
            &cs.join(format!("report.{lang}.pdf")),
            1,
        ))
    };
    assert!(p("en").contains(&squash(
        "(here users' annual revenue, not companies' 12 × monthly spend)"
    )));
    assert!(p("zh").contains(&squash("（此处为用户年收入，而非公司月支出 × 12）")));
}

/// A key slice of the spec without any company in this data is said to be missing,
/// not left out: the demo with every New contract company of 260–419 seats (or
/// without a seat tag) moved to Renewal.
#[test]
fn a_key_slice_missing_from_the_data_is_said_to_be_missing() {
    let dir = tempfile::tempdir().unwrap();
    let db = crate::common::demo_copy(
        dir.path(),
        "UPDATE intercom__company_enhanced
            SET all_company_tags = replace(all_company_tags, 'segment:new_contract', 'segment:renewal')
          WHERE all_company_tags LIKE '%segment:new_contract%'
            AND (all_company_tags LIKE '%seats:260_419%'
                 OR all_company_tags NOT LIKE '%seat_bucket:seats:%');",
    );
    let out = crate::run_report(&db, &dir.path().join("out"), "conversation-usage", &[]);
    let summary = json(&out.join("summary.json"));
    let cells = summary["panels"]["segment_seat_arr"].as_array().unwrap();
    assert!(!cells
        .iter()
        .any(|c| c["segment"] == "new_contract" && c["seat_bucket"] == "260_419"));
    let (en, zh) = (text_of(&out, "en"), text_of(&out, "zh"));
    assert!(
        en.contains(&squash(
            "New contract · 260–419 seats · ARR $110–200k: not in this data"
        )),
        "{en}"
    );
    assert!(zh.contains(&squash(
        "新签约 · 260–419 席 · ARR 11–20 万美元：本数据中没有"
    )));
    // The other two are still discussed with their numbers.
    assert!(en.contains(&squash(
        "Churn watch · 420+ seats · ARR ≥$200k: 42 companies"
    )));
}
