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
