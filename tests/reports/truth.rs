//! What every report says about its own numbers, read back from both editions of all
//! three reports on several databases (the demo, the demo with its planted change, a
//! history that starts mid-window) and windows: a printed difference is the
//! difference of the printed values, in sentences ("57.6% → 65.8% (+8.2 pp)",
//! "from 5,261 to 6,555 (+1,294)", "由 A 上升至 B（+D）", "12.6 pp fewer …: 57.6% vs
//! 70.2%") and in tables (a row's two values and its signed difference), and every
//! recommendation follows a finding the same run printed.
//!
//! The reader here is independent of the reports' code: it parses the text poppler
//! reads out of the PDF, so a difference computed from unrounded values and printed
//! beside rounded ones is caught whichever module printed it.

use std::path::{Path, PathBuf};

use super::common::{demo_copy, demo_db, json, planted_demo};

/// A number as printed: its value in base units (dollars, percent, minutes, counts),
/// the step of its last printed digit in the same units, its sign if one was printed,
/// and its kind of unit (a difference is only read against values of the same kind).
#[derive(Debug, Clone, Copy, PartialEq)]
struct Printed {
    value: f64,
    step: f64,
    signed: bool,
    kind: Kind,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Percent,
    Points,
    Minutes,
    Money,
    Plain,
}

/// Reads a printed number at the start of `s`; returns it and the bytes it used.
fn number(s: &str) -> Option<(Printed, usize)> {
    let mut i = 0;
    let mut sign = 1.0;
    let mut signed = false;
    for (mark, neg) in [("+", false), ("−", true), ("-", true), ("±", false)] {
        if let Some(rest) = s.strip_prefix(mark) {
            if rest.starts_with(|c: char| c.is_ascii_digit() || c == '$') {
                i = mark.len();
                signed = true;
                if neg {
                    sign = -1.0;
                }
            }
            break;
        }
    }
    let mut money = false;
    if s[i..].starts_with('$') {
        money = true;
        i += 1;
    }
    let digits_start = i;
    let bytes = s.as_bytes();
    let mut j = i;
    while j < bytes.len() && bytes[j].is_ascii_digit() {
        j += 1;
    }
    if j == digits_start {
        return None;
    }
    let mut whole = s[digits_start..j].to_string();
    // Thousands separators: a comma followed by exactly three digits.
    while j + 4 <= bytes.len()
        && bytes[j] == b','
        && bytes[j + 1..j + 4].iter().all(u8::is_ascii_digit)
        && !(j + 4 < bytes.len() && bytes[j + 4].is_ascii_digit())
    {
        whole.push_str(&s[j + 1..j + 4]);
        j += 4;
    }
    let mut decimals = 0;
    if j + 1 < bytes.len() && bytes[j] == b'.' && bytes[j + 1].is_ascii_digit() {
        let start = j + 1;
        j = start;
        while j < bytes.len() && bytes[j].is_ascii_digit() {
            j += 1;
        }
        decimals = j - start;
        whole.push('.');
        whole.push_str(&s[start..j]);
    }
    let mut value: f64 = whole.parse().ok()?;
    let mut step = 10f64.powi(-(decimals as i32));
    let rest = &s[j..];
    let suffixes: [(&str, Kind, f64); 11] = [
        ("%", Kind::Percent, 1.0),
        (" pp", Kind::Points, 1.0),
        (" 个百分点", Kind::Points, 1.0),
        (" min", Kind::Minutes, 1.0),
        (" 分钟", Kind::Minutes, 1.0),
        ("M", Kind::Money, 1e6),
        ("k", Kind::Money, 1e3),
        ("B", Kind::Money, 1e9),
        (" 万美元", Kind::Money, 1e4),
        (" 亿美元", Kind::Money, 1e8),
        (" 美元", Kind::Money, 1.0),
    ];
    let mut kind = if money { Kind::Money } else { Kind::Plain };
    for (suffix, k, scale) in suffixes {
        if let Some(after) = rest.strip_prefix(suffix) {
            // "5 min" yes, "5 minutes" too; "3 pp" but not "3 ppl"; "$2M" but not "2Mb".
            let word_ends =
                !after.starts_with(|c: char| c.is_ascii_alphabetic()) || suffix.starts_with(" m");
            let money_ok = !matches!(suffix, "M" | "k" | "B") || money;
            if word_ends && money_ok {
                kind = k;
                value *= scale;
                step *= scale;
                j += suffix.len();
                break;
            }
        }
    }
    Some((
        Printed {
            value: sign * value,
            step,
            signed,
            kind,
        },
        j,
    ))
}

/// Whether two values may be subtracted and compared with `d`.
fn comparable(a: Printed, b: Printed, d: Printed) -> bool {
    let same = a.kind == b.kind;
    let fits = match a.kind {
        Kind::Percent => d.kind == Kind::Points,
        k => d.kind == k,
    };
    same && fits
}

/// `d` is the difference `b − a` of the printed values, at `d`'s printed precision
/// (or, with `either_way`, `a − b`: a table's difference column may be either).
fn holds(a: Printed, b: Printed, d: Printed, either_way: bool) -> bool {
    let close = |x: f64| ((x / d.step).round() * d.step - d.value).abs() < d.step / 2.0;
    close(b.value - a.value) || (either_way && close(a.value - b.value))
}

/// One printed difference the text claims, with where it was read.
#[derive(Debug)]
struct Claim {
    at: String,
    a: Printed,
    b: Printed,
    d: Printed,
    either_way: bool,
}

impl Claim {
    fn holds(&self) -> bool {
        holds(self.a, self.b, self.d, self.either_way)
    }
}

/// Skips spaces; then `what` if it is there.
fn eat<'a>(s: &'a str, what: &[&str]) -> Option<&'a str> {
    let s = s.trim_start();
    what.iter().find_map(|w| s.strip_prefix(w))
}

/// "A → B (±D)", "from A to B (±D)", "由 A …至 B（±D）".
fn sentence_claims(flat: &str, out: &mut Vec<Claim>) {
    let at = |i: usize| {
        let start = flat.floor_char_boundary(i.saturating_sub(60));
        let end = flat.ceil_char_boundary((i + 60).min(flat.len()));
        flat[start..end].to_string()
    };
    for (i, _) in flat.char_indices() {
        let s = &flat[i..];
        let prev = flat[..i].chars().next_back();
        if prev.is_some_and(|c| c.is_ascii_digit() || c == '.' || c == ',' || c == '$') {
            continue;
        }
        // A → B (D)
        if let Some((a, n)) = number(s) {
            if let Some(r) = eat(&s[n..], &["→"]) {
                if let Some((b, m)) = number(r.trim_start()) {
                    let r = r.trim_start();
                    if let Some(r2) = eat(&r[m..], &["(", "（"]) {
                        if let Some((d, _)) = number(r2.trim_start()) {
                            if d.signed && comparable(a, b, d) {
                                out.push(Claim {
                                    at: at(i),
                                    a,
                                    b,
                                    d,
                                    either_way: false,
                                });
                            }
                        }
                    }
                }
            }
        }
        // from A to B (D) | 由 A 上升至 B（D）
        for (open, to) in [("from ", " to "), ("由 ", "至")] {
            let Some(r) = s.strip_prefix(open) else {
                continue;
            };
            let Some((a, n)) = number(r) else { continue };
            let r = &r[n..];
            let Some(k) = r.find(to).filter(|k| *k <= 12) else {
                continue;
            };
            let r = r[k + to.len()..].trim_start();
            let Some((b, m)) = number(r) else { continue };
            let Some(r2) = eat(&r[m..], &["(", "（"]) else {
                continue;
            };
            if let Some((d, _)) = number(r2.trim_start()) {
                if d.signed && comparable(a, b, d) {
                    out.push(Claim {
                        at: at(i),
                        a,
                        b,
                        d,
                        either_way: false,
                    });
                }
            }
        }
    }
}

/// A sentence holding exactly one unsigned difference in points and exactly two
/// percentages ("retain 12.6 pp fewer … : 57.6% vs 70.2%"): the points are the gap.
fn gap_claims(flat: &str, out: &mut Vec<Claim>) {
    let mut start = 0;
    let cuts: Vec<usize> = flat
        .char_indices()
        .filter(|&(i, c)| {
            matches!(c, '。' | '；' | ';')
                || (c == '.'
                    && flat[i + 1..]
                        .chars()
                        .next()
                        .is_none_or(|n| n.is_whitespace()))
        })
        .map(|(i, c)| i + c.len_utf8())
        .chain([flat.len()])
        .collect();
    for end in cuts {
        let sentence = &flat[start..end];
        start = end;
        let mut points = Vec::new();
        let mut percents = Vec::new();
        let mut i = 0;
        while i < sentence.len() {
            if !sentence.is_char_boundary(i) {
                i += 1;
                continue;
            }
            let prev = sentence[..i].chars().next_back();
            if prev.is_some_and(|c| c.is_ascii_digit() || c == '.' || c == ',') {
                i += 1;
                continue;
            }
            match number(&sentence[i..]) {
                Some((p, n)) => {
                    match (p.kind, p.signed) {
                        (Kind::Points, false) => points.push(p),
                        (Kind::Percent, false) => percents.push(p),
                        _ => {}
                    }
                    i += n;
                }
                None => i += 1,
            }
        }
        // "over-represented by 3.0 pp or more" is a threshold, not a gap.
        let threshold = [
            "or more",
            "or larger",
            "at least",
            "以上",
            "至少",
            "或更大",
            "或更多",
        ]
        .iter()
        .any(|w| sentence.contains(w));
        if let ([d], [a, b], false) = (points.as_slice(), percents.as_slice(), threshold) {
            out.push(Claim {
                at: sentence.trim().chars().take(160).collect(),
                a: *a,
                b: *b,
                d: *d,
                either_way: true,
            });
        }
    }
}

/// Table rows: two unsigned values followed by a signed difference of the same kind,
/// with only spaces between them; under a header that names a difference column
/// ("Difference", "差值"), an unsigned one too (a gap printed without its sign).
fn table_claims(layout: &str, out: &mut Vec<Claim>) {
    let mut under_difference = false;
    for line in layout.lines() {
        if line.trim().is_empty() {
            under_difference = false;
            continue;
        }
        if !line.contains(|c: char| c.is_ascii_digit()) {
            under_difference = ["Difference", "Gap", "差值", "差距"]
                .iter()
                .any(|w| line.split_whitespace().any(|cell| cell == *w));
            continue;
        }
        // The numbers standing alone on the line, with where they start and end.
        let mut found: Vec<(usize, usize, Printed)> = Vec::new();
        let mut i = 0;
        while i < line.len() {
            if !line.is_char_boundary(i) {
                i += 1;
                continue;
            }
            let alone_before = line[..i]
                .chars()
                .next_back()
                .is_none_or(char::is_whitespace);
            if alone_before {
                if let Some((p, n)) = number(&line[i..]) {
                    let alone_after = line[i + n..].chars().next().is_none_or(char::is_whitespace);
                    if alone_after {
                        found.push((i, i + n, p));
                    }
                    i += n.max(1);
                    continue;
                }
            }
            i += 1;
        }
        for (k, w) in found.windows(3).enumerate() {
            let spaced = |x: &(usize, usize, Printed), y: &(usize, usize, Printed)| {
                line[x.1..y.0].trim().is_empty()
            };
            let (a, b, d) = (w[0].2, w[1].2, w[2].2);
            // Unsigned, only the row's first three values: "Trained, Not trained,
            // Difference, All users".
            let signed_or_named = d.signed || (under_difference && k == 0 && d.kind != Kind::Plain);
            if spaced(&w[0], &w[1])
                && spaced(&w[1], &w[2])
                && !a.signed
                && !b.signed
                && signed_or_named
                && comparable(a, b, d)
            {
                out.push(Claim {
                    at: line.trim().to_string(),
                    a,
                    b,
                    d,
                    either_way: true,
                });
            }
        }
    }
}

/// The money amounts of a line, in order.
fn amounts(line: &str) -> Vec<f64> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < line.len() {
        if !line.is_char_boundary(i) {
            i += 1;
            continue;
        }
        let alone = line[..i]
            .chars()
            .next_back()
            .is_none_or(char::is_whitespace);
        if alone {
            if let Some((p, n)) = number(&line[i..]) {
                if p.kind == Kind::Money {
                    out.push(p.value);
                }
                i += n.max(1);
                continue;
            }
        }
        i += 1;
    }
    out
}

/// Lifts printed under two average amounts ("Average ARR $2,914 $2,139 …" then
/// "ARR lift 36.2%"): each must be the ratio of the two amounts as printed, minus
/// one, rounded as printed. Returns the lifts read and the wrong ones.
fn lift_errors(layout: &str) -> (usize, Vec<String>) {
    let (mut read, mut wrong) = (0, Vec::new());
    let mut last: Option<(f64, f64)> = None;
    for line in layout.lines() {
        let t = line.trim();
        if t.starts_with("Average ARR") || t.starts_with("平均 ARR") {
            let a = amounts(t);
            if a.len() >= 2 {
                last = Some((a[0], a[1]));
            }
        } else if t.starts_with("ARR lift") || t.starts_with("ARR 提升") {
            let Some((a, b)) = last.take() else { continue };
            let lift = t
                .split_whitespace()
                .filter_map(|w| number(w).map(|(p, _)| p))
                .find(|p| p.kind == Kind::Percent);
            let Some(lift) = lift else { continue };
            read += 1;
            let want = format!("{:.1}", (a / b - 1.0) * 100.0);
            if format!("{:.1}", lift.value) != want {
                wrong.push(format!("{} / {} − 1 is {want}%, printed: {t}", a, b));
            }
        }
    }
    (read, wrong)
}

/// Every difference `layout` (pdftotext -layout) prints.
fn claims(layout: &str) -> Vec<Claim> {
    let flat = layout.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut out = Vec::new();
    sentence_claims(&flat, &mut out);
    gap_claims(&flat, &mut out);
    table_claims(layout, &mut out);
    out
}

fn layout_text(pdf: &Path) -> String {
    let o = std::process::Command::new("pdftotext")
        .args(["-enc", "UTF-8", "-layout"])
        .arg(pdf)
        .arg("-")
        .output()
        .expect("pdftotext runs (script/test installs poppler-utils)");
    assert!(o.status.success(), "pdftotext {}", pdf.display());
    String::from_utf8(o.stdout).unwrap()
}

/// The databases and windows every report is read on.
fn cases(dir: &Path) -> Vec<(&'static str, PathBuf, Vec<&'static str>)> {
    let planted = planted_demo(dir);
    // Conversations (and what hangs off them) only from 2024-03-01: the default
    // window starts before the data.
    let late = demo_copy(
        dir,
        "DELETE FROM intercom__conversation_metrics WHERE conversation_created_at < '2024-03-01';
         DELETE FROM intercom__conversation_enhanced WHERE conversation_created_at < '2024-03-01';
         DELETE FROM usage_events WHERE occurred_at < '2024-03-01';",
    );
    vec![
        ("demo", demo_db().to_path_buf(), vec![]),
        (
            "demo shift:1m",
            demo_db().to_path_buf(),
            vec!["--compare", "shift:1m"],
        ),
        (
            "planted 3m vs 3m",
            planted,
            vec!["--window", "rolling:3m", "--compare", "shift:3m"],
        ),
        ("history from 2024-03", late, vec![]),
    ]
}

#[test]
fn every_printed_difference_is_the_difference_of_the_printed_values() {
    let dir = tempfile::tempdir().unwrap();
    let mut wrong = Vec::new();
    let mut read = 0;
    let mut lifts = 0;
    for (case, db, extra) in cases(dir.path()) {
        for report in ["conversation-usage", "tag-drivers", "customer-segmentation"] {
            let out = dir
                .path()
                .join(format!("{}-{report}", case.replace([' ', ':'], "_")));
            // customer-segmentation has no window to set.
            let options: &[&str] = if report == "customer-segmentation" {
                &[]
            } else {
                &extra
            };
            let folder = crate::run_report(&db, &out, report, options);
            for lang in ["en", "zh"] {
                let layout = layout_text(&folder.join(format!("report.{lang}.pdf")));
                let (n, bad) = lift_errors(&layout);
                lifts += n;
                wrong.extend(
                    bad.into_iter()
                        .map(|b| format!("{case} · {report} · {lang}: {b}")),
                );
                for c in claims(&layout) {
                    read += 1;
                    if !c.holds() {
                        wrong.push(format!(
                            "{case} · {report} · {lang}: {:?} − {:?} ≠ {:?}\n    in: {}",
                            c.b.value, c.a.value, c.d.value, c.at
                        ));
                    }
                }
            }
            let summary = json(&folder.join("summary.json"));
            let ids: Vec<&str> = summary["findings"]
                .as_array()
                .map(|f| f.iter().filter_map(|f| f["id"].as_str()).collect())
                .unwrap_or_default();
            for r in summary["recommendations"].as_array().into_iter().flatten() {
                let follows = r["follows"].as_str().unwrap_or("");
                assert!(
                    ids.contains(&follows),
                    "{case} · {report}: recommendation {} follows {follows:?}, \
                     which is not among the findings {ids:?}",
                    r["id"]
                );
            }
        }
    }
    // The reader must have found the reports' differences, or it checks nothing.
    assert!(read > 200, "only {read} printed differences read");
    // customer-segmentation's two lifts, in both languages, on each database.
    assert!(lifts >= 4, "only {lifts} printed lifts read");
    assert!(
        wrong.is_empty(),
        "{} printed differences are not the difference of the printed values:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}

#[test]
fn the_reader_finds_and_judges_printed_differences() {
    let text = "Conversations rose from 5,261 to 6,555 (+1,294) compared with last time. \
                retention 57.6% → 65.8% (+8.1 pp) within 8 weeks; \
                retain 12.6 pp fewer companies: 57.6% vs 70.2% (134 vs 436). \
                会话量由 5,261 上升至 6,555（+1,294）；\
                median 25.0 min → 21.0 min (−4.0 min); ARR $21.7M → $26.3M (+$4.6M).";
    let table = "Rated 1–2 (of rated)      22.1%      11.2%   +10.8 pp      14.2%\n\
                 Conversations             1,078      1,077          +1    3,876\n\
                 \n\
                 Measure         Trained   Not trained   Difference   All users\n\
                 Median ARR         $942          $627         $316        $730\n\
                 活跃率                 76.3%        68.2% 8.2 个百分点              70.9%\n";
    let lifts = "Average ARR      $2.9k     $2.1k      $800     $2.8k\n\
                 ARR lift                           36.2%\n\
                 平均 ARR      2,914 美元     2,139 美元      775 美元\n\
                 ARR 提升                           36.2%\n";
    let (n, bad) = lift_errors(lifts);
    assert_eq!(n, 2, "{bad:?}");
    assert_eq!(bad.len(), 1, "$2.9k / $2.1k is 38.1 %: {bad:?}");
    let mut found = claims(text);
    found.extend(claims(table).into_iter().filter(|c| c.either_way));
    let verdicts: Vec<(bool, f64)> = found.iter().map(|c| (c.holds(), c.d.value)).collect();
    assert!(verdicts.contains(&(true, 1294.0)), "{verdicts:?}");
    assert!(
        verdicts.contains(&(false, 8.1)),
        "8.2 printed as 8.1: {verdicts:?}"
    );
    assert!(verdicts.contains(&(true, 12.6)), "{verdicts:?}");
    assert!(verdicts.contains(&(true, -4.0)), "{verdicts:?}");
    assert!(verdicts.contains(&(true, 4.6e6)), "{verdicts:?}");
    assert!(
        verdicts.contains(&(false, 10.8)),
        "22.1 − 11.2 is 10.9: {verdicts:?}"
    );
    assert!(
        verdicts.contains(&(false, 316.0)),
        "942 − 627: {verdicts:?}"
    );
    assert!(
        verdicts.contains(&(false, 8.2)),
        "76.3 − 68.2 is 8.1: {verdicts:?}"
    );
    assert!(
        verdicts.contains(&(true, 1.0)),
        "the counts' +1: {verdicts:?}"
    );
    assert_eq!(
        found.iter().filter(|c| c.d.value == 1294.0).count(),
        2,
        "en and zh: {found:?}"
    );
}
