//! The Chinese editions as a Chinese reader sees them, on the demo: every Chinese glyph
//! in its Simplified Chinese form (charts included), units written once, money never
//! broken across lines. The English editions alongside: their text is in the Latin face.

use std::path::PathBuf;

use crate::common::pdf_fonts;
use crate::output_of;

const REPORTS: [&str; 3] = ["tag-drivers", "customer-segmentation", "conversation-usage"];

fn edition(report: &'static str, lang: &str) -> PathBuf {
    output_of(report).join(format!("report.{lang}.pdf"))
}

#[test]
fn zh_editions_draw_chinese_in_the_sc_face_only_and_en_editions_in_the_latin_face() {
    for report in REPORTS {
        let zh = pdf_fonts(&edition(report, "zh"));
        for regional in ["CJKjp", "CJKkr", "CJKtc", "CJKhk"] {
            assert!(
                !zh.iter().any(|f| f.contains(regional)),
                "{report} zh embeds a {regional} face: {zh:?}"
            );
        }
        assert!(
            zh.iter().any(|f| f.starts_with("NotoSansCJKsc-Regular")),
            "{report} zh: {zh:?}"
        );
        let en = pdf_fonts(&edition(report, "en"));
        assert!(
            en.iter().any(|f| f == "NotoSans-Regular"),
            "{report} en: {en:?}"
        );
        assert!(
            !en.iter()
                .any(|f| f.contains("CJKjp") || f.contains("CJKkr")),
            "{report} en: {en:?}"
        );
    }
}

/// A money value `text` prints, as the byte range of `1,237 美元`, `2,827 万美元`: the
/// digits (with separators) before an optional space and 万 or 亿, then 美元.
fn money_values(text: &str) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    for (i, _) in text.match_indices("美元") {
        let before = &text[..i];
        let before = before
            .strip_suffix('万')
            .or_else(|| before.strip_suffix('亿'))
            .unwrap_or(before);
        let before = before.strip_suffix(' ').unwrap_or(before);
        let number = before
            .chars()
            .rev()
            .take_while(|c| c.is_ascii_digit() || *c == ',' || *c == '.')
            .count();
        if before[before.len() - number..]
            .chars()
            .any(|c| c.is_ascii_digit())
        {
            out.push((before.len() - number, i + "美元".len()));
        }
    }
    out
}

/// The money values broken across two lines of `text` (pdftotext's lines).
fn split_money(text: &str) -> Vec<String> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    for pair in lines.windows(2) {
        let tail = pair[0].trim_end();
        let tail = &tail[tail.char_indices().rev().nth(14).map_or(0, |(i, _)| i)..];
        let head = pair[1].trim_start();
        let head = &head[..head.char_indices().nth(6).map_or(head.len(), |(i, _)| i)];
        let joined = format!("{tail}{head}");
        for (start, end) in money_values(&joined) {
            if start < tail.len() && end > tail.len() {
                out.push(format!("“{tail}” / “{head}”"));
            }
        }
    }
    out
}

#[test]
fn no_money_value_of_a_zh_edition_is_broken_across_lines() {
    assert_eq!(
        split_money("人均 1,237\n美元，套餐\n为 2,139 美\n元。\n2,827 万美元\n共 3 万美元"),
        vec!["“人均 1,237” / “美元，套餐”", "“为 2,139 美” / “元。”"]
    );
    assert_eq!(
        split_money("合计 2,827 万美\n元"),
        vec!["“合计 2,827 万美” / “元”"]
    );
    for report in REPORTS {
        let text = crate::common::pdf_text(&edition(report, "zh"));
        assert!(!money_values(&text).is_empty() || report == "tag-drivers");
        let split = split_money(&text);
        assert!(split.is_empty(), "{report} zh: {}", split.join("\n"));
    }
}

/// The units a zh label names in brackets and its value repeats: “差异阈值（百分点）
/// 3.0 个百分点”. Units are written once, in the label or beside the value.
fn doubled_units(text: &str) -> Vec<String> {
    const UNITS: [&str; 8] = ["百分点", "分钟", "万美元", "美元", "%", "小时", "天", "人"];
    let mut out = Vec::new();
    for unit in UNITS {
        let label = format!("（{unit}）");
        for (i, _) in text.match_indices(&label) {
            let rest = &text[i + label.len()..];
            let line = rest.lines().next().unwrap_or_default();
            let value = line.trim_start();
            let number = value
                .chars()
                .take_while(|c| c.is_ascii_digit() || matches!(c, ',' | '.' | '−' | '-' | '+'))
                .map(char::len_utf8)
                .sum::<usize>();
            if number == 0 || !value[..number].chars().any(|c| c.is_ascii_digit()) {
                continue;
            }
            let after = value[number..].trim_start();
            let after = after.strip_prefix('个').unwrap_or(after);
            if after.starts_with(unit) {
                out.push(format!("{label}{}", &line[..line.len().min(40)]));
            }
        }
    }
    out
}

#[test]
fn no_zh_edition_writes_a_unit_twice() {
    assert_eq!(
        doubled_units("差异阈值（百分点）   3.0 个百分点\n首次响应（分钟） 25.1\n"),
        vec!["（百分点）   3.0 个百分点"]
    );
    for report in REPORTS {
        let pdf = edition(report, "zh");
        let doubled = doubled_units(&crate::common::pdf_text(&pdf));
        assert!(doubled.is_empty(), "{report} zh: {}", doubled.join("\n"));
        let o = std::process::Command::new("pdftotext")
            .args(["-layout", "-enc", "UTF-8"])
            .arg(&pdf)
            .arg("-")
            .output()
            .expect("pdftotext runs");
        let doubled = doubled_units(&String::from_utf8_lossy(&o.stdout));
        assert!(
            doubled.is_empty(),
            "{report} zh (layout): {}",
            doubled.join("\n")
        );
    }
}
