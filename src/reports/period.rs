//! How a run's period reads, decided in one place: the cover, the email, the owner
//! alerts and `history` all print a period key (`2023-12-15_2024-06-15`,
//! `asof-2024-06-15`) through [`period_label`], so they cannot drift apart. A
//! window the data covers only in part says so beside it ([`Covered`]) on the cover
//! and in the email, not only in the scope table.

use chrono::{Months, NaiveDate};
use serde_json::json;

use crate::intercom::window::Window;
use crate::render::templates::Language;

/// What a period key names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Period<'a> {
    /// A window `first_last` (inclusive dates).
    Window { first: &'a str, last: &'a str },
    /// A snapshot `asof-<date>`.
    AsOf(&'a str),
    /// Any other key (a fire that never got a period): shown as it is.
    Other(&'a str),
}

impl<'a> Period<'a> {
    /// Reads a period key; only well-formed dates make a window or a snapshot.
    pub fn of_key(key: &'a str) -> Self {
        let date = |s: &str| chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").is_ok();
        if let Some(day) = key.strip_prefix("asof-").filter(|d| date(d)) {
            return Self::AsOf(day);
        }
        match key.split_once('_') {
            Some((first, last)) if date(first) && date(last) => Self::Window { first, last },
            _ => Self::Other(key),
        }
    }

    /// The kind as templates test it: `window`, `as_of` or `other` (an email says
    /// "the report for <window>" but "the report (as of <date>)").
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Window { .. } => "window",
            Self::AsOf(_) => "as_of",
            Self::Other(_) => "other",
        }
    }

    /// "2023-12-15 – 2024-06-15", "<as_of> 2024-06-15", or the key as it is.
    fn label(&self, as_of: &str) -> String {
        match self {
            Self::Window { first, last } => format!("{first} – {last}"),
            Self::AsOf(day) => format!("{as_of} {day}"),
            Self::Other(key) => (*key).to_owned(),
        }
    }
}

/// A period key as a person reads it: in `lang`'s words ("as of", "截至"), or in
/// English for the language-neutral texts (owner alerts, `history`) with `None` and
/// for a language folder of the user's that has no `document.as_of`.
pub fn period_label(key: &str, lang: Option<&Language>) -> String {
    let as_of = lang
        .and_then(|l| l.strings.get_opt("document.as_of"))
        .unwrap_or_else(|| "as of".to_owned());
    Period::of_key(key).label(&as_of)
}

/// The part of a window the data covers, when the data starts after the window's
/// first day or ends before its last: a period read without it would claim months
/// the data has nothing of.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Covered {
    pub first: NaiveDate,
    pub last: NaiveDate,
    pub starts_late: bool,
    pub ends_early: bool,
    pub length: Length,
}

/// How long the covered part is against the whole window: in months (one decimal)
/// when the window is whole calendar months long (`rolling:6m`, `calendar:3m`), else
/// in days.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Length {
    Months { covered: f64, of: u32 },
    Days { covered: i64, of: i64 },
}

/// The covered part of `window` over the data's dates `data` (its first and last
/// conversation); none when the data covers the whole window (or is unknown, or
/// misses it altogether: the run then fails on an empty window).
pub fn covered(window: Window, data: Option<Window>) -> Option<Covered> {
    let (c, partial) = super::comparison::clip(window, data)?;
    if !partial {
        return None;
    }
    let (first, last) = (c.start.date_naive(), c.end.date_naive());
    let (w_first, w_last) = (window.start.date_naive(), window.end.date_naive());
    let (w_next, next) = (w_last.succ_opt()?, last.succ_opt()?);
    let length = match whole_months(w_first, w_next) {
        Some(of) => Length::Months {
            covered: months_between(first, next),
            of,
        },
        None => Length::Days {
            covered: (next - first).num_days(),
            of: (w_next - w_first).num_days(),
        },
    };
    Some(Covered {
        first,
        last,
        starts_late: first > w_first,
        ends_early: last < w_last,
        length,
    })
}

/// The number of months from `from` to `to` (exclusive) when it is whole: `to` is
/// `from` plus that many months, or a day after it (a rolling window holds both its
/// first day and the same day N months on).
fn whole_months(from: NaiveDate, to: NaiveDate) -> Option<u32> {
    (1..=1200).find(|&n| {
        from.checked_add_months(Months::new(n))
            .is_some_and(|d| d == to || d.succ_opt() == Some(to))
    })
}

/// Calendar months from `from` to `to` (exclusive): the whole months, and the rest
/// as a share of the month after them (8 days of a 30-day month: 0.27).
fn months_between(from: NaiveDate, to: NaiveDate) -> f64 {
    let add = |n: u32| from.checked_add_months(Months::new(n));
    let whole = (0..=1200u32)
        .take_while(|&n| add(n).is_some_and(|d| d <= to))
        .last()
        .unwrap_or(0);
    let (Some(a), Some(b)) = (add(whole), add(whole + 1)) else {
        return f64::from(whole);
    };
    f64::from(whole) + (to - a).num_days() as f64 / (b - a).num_days() as f64
}

impl Covered {
    /// " (data from 2024-01-08: 5.3 of 6 months)" in `lang`'s words
    /// (`period.covered`, with the separator it needs after the period).
    pub fn note(&self, lang: &Language) -> String {
        lang.fill("period.covered", &self.values(lang))
    }

    /// The values its sentences are filled with: `first`, `last`, `starts_late`,
    /// `ends_early`, and the length as `covered` of `total` in `unit` (`months` or
    /// `days`), formatted for `lang`.
    pub fn values(&self, lang: &Language) -> serde_json::Value {
        let f = &lang.format;
        let (covered, total, unit) = match self.length {
            Length::Months { covered, of } => {
                (f.number(covered, 1), f.count(f64::from(of)), "months")
            }
            Length::Days { covered, of } => (f.count(covered as f64), f.count(of as f64), "days"),
        };
        json!({
            "first": self.first.format("%Y-%m-%d").to_string(),
            "last": self.last.format("%Y-%m-%d").to_string(),
            "starts_late": self.starts_late,
            "ends_early": self.ends_early,
            "covered": covered,
            "total": total,
            "unit": unit,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::templates::Templates;

    fn day(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    fn window(first: &str, last: &str) -> Window {
        Window {
            start: day(first).and_hms_opt(0, 0, 0).unwrap().and_utc(),
            end: day(last).and_hms_opt(23, 59, 59).unwrap().and_utc(),
        }
    }

    #[test]
    fn a_window_the_data_covers_in_part_names_the_covered_dates_and_length() {
        let w = window("2023-12-15", "2024-06-15");
        let data = Window {
            start: day("2024-01-08").and_hms_opt(9, 30, 0).unwrap().and_utc(),
            end: day("2024-06-15").and_hms_opt(17, 0, 0).unwrap().and_utc(),
        };
        let c = covered(w, Some(data)).unwrap();
        assert_eq!((c.first, c.last), (day("2024-01-08"), day("2024-06-15")));
        assert!(c.starts_late && !c.ends_early);
        let Length::Months { covered: m, of } = c.length else {
            panic!("{c:?}")
        };
        // 2024-01-08 → 2024-06-08 five months, then 8 of the 30 days to 2024-07-08.
        assert_eq!(of, 6);
        assert!((m - (5.0 + 8.0 / 30.0)).abs() < 1e-9, "{m}");
        for (lang, want) in [
            ("en", " (data from 2024-01-08: 5.3 of 6 months)"),
            (
                "zh",
                "（数据从 2024-01-08 开始：仅覆盖 6 个月中的 5.3 个月）",
            ),
        ] {
            let l = Templates::default().language("tag-drivers", lang).unwrap();
            assert_eq!(c.note(&l), want);
            l.failure().unwrap();
        }
        // The whole window covered, or no data known: nothing to say.
        assert_eq!(covered(w, Some(window("2023-01-01", "2024-06-30"))), None);
        assert_eq!(covered(w, None), None);
        // A range that is not whole months, the data ending early: in days.
        let r = window("2024-01-01", "2024-01-20");
        let c = covered(r, Some(window("2024-01-05", "2024-01-10"))).unwrap();
        assert!(c.starts_late && c.ends_early);
        assert_eq!(c.length, Length::Days { covered: 6, of: 20 });
        let en = Templates::default()
            .language("conversation-usage", "en")
            .unwrap();
        assert_eq!(c.note(&en), " (data 2024-01-05 – 2024-01-10: 6 of 20 days)");
        let zh = Templates::default()
            .language("conversation-usage", "zh")
            .unwrap();
        assert_eq!(
            c.note(&zh),
            "（数据范围 2024-01-05 – 2024-01-10：仅覆盖 20 天中的 6 天）"
        );
    }

    #[test]
    fn period_keys_read_the_same_wherever_they_are_printed() {
        assert_eq!(
            period_label("2023-12-15_2024-06-15", None),
            "2023-12-15 – 2024-06-15"
        );
        assert_eq!(period_label("asof-2024-06-15", None), "as of 2024-06-15");
        let zh = Templates::default()
            .language("customer-segmentation", "zh")
            .unwrap();
        assert_eq!(
            period_label("asof-2024-06-15", Some(&zh)),
            "截至 2024-06-15"
        );
        // conversation-usage's strings have no `document.as_of`: the English words.
        let cu = Templates::default()
            .language("conversation-usage", "zh")
            .unwrap();
        assert_eq!(
            period_label("asof-2024-06-15", Some(&cu)),
            "as of 2024-06-15"
        );
        for other in ["fire-2024-07-01T08:00:00Z", "asof-x", "a_b", ""] {
            assert_eq!(period_label(other, None), other);
            assert_eq!(Period::of_key(other).kind(), "other");
        }
        assert_eq!(Period::of_key("asof-2024-06-15").kind(), "as_of");
        assert_eq!(Period::of_key("2024-01-01_2024-06-30").kind(), "window");
    }
}
