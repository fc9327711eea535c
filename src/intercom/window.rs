//! Report windows (`rolling:<N>m`, `calendar:<N>m`, `range:<from>..<to>`): parsing the
//! option text and resolving it to an inclusive UTC interval, given the data's anchor
//! (latest conversation) and the run's reference time (from the injected clock).

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Datelike, Months, NaiveDate, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowSpec {
    Rolling { months: u32 },
    Calendar { months: u32 },
    Range { from: NaiveDate, to: NaiveDate },
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WindowError {
    #[error("window `{text}`: {reason} (expected `rolling:<N>m`, `calendar:<N>m` or `range:YYYY-MM-DD..YYYY-MM-DD`)")]
    Parse { text: String, reason: &'static str },
    #[error("window `{0}` needs the latest conversation time, but no conversation has a readable conversation_created_at (times are read as `2024-06-30 09:00:00` or RFC 3339; `cxreport check --db <database>` counts the unreadable ones)")]
    NoAnchor(String),
    /// Every readable conversation is dated after the run's reference time.
    // `data`: the data's dates and what to try, in one field (errors stay small).
    #[error("window `{window}` ends at the latest conversation not after the run's reference time {reference}, but the data's conversations are all later: {data}")]
    BeforeData {
        window: String,
        reference: String,
        data: String,
    },
}

impl crate::exit::Classify for WindowError {
    /// A window that does not parse is the user's; one the data cannot anchor or
    /// holds nothing of is a failed run.
    fn exit(&self) -> crate::exit::Exit {
        use crate::exit::Exit;
        match self {
            Self::Parse { .. } => Exit::Usage,
            Self::NoAnchor(_) | Self::BeforeData { .. } => Exit::Failed,
        }
    }
}

impl WindowError {
    /// [`WindowError::BeforeData`] for `spec` when the data (`first` to `last`) begins
    /// after `reference`.
    pub fn before_data(
        spec: &WindowSpec,
        reference: DateTime<Utc>,
        (first, last): (DateTime<Utc>, DateTime<Utc>),
    ) -> Self {
        Self::BeforeData {
            window: spec.to_string(),
            reference: reference.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            data: format!(
                "they run from {first} to {}; give a reference time after {first} (e.g. \
                 `--as-of {}`), or none to run as of now",
                last.format("%Y-%m-%d"),
                month_after(last),
                first = first.format("%Y-%m-%d"),
            ),
        }
    }
}

/// The first instant of the month after `t`'s, as `--as-of` takes it: a calendar
/// window cut there ends with `t`'s month.
pub fn month_after(t: DateTime<Utc>) -> String {
    let first = t.date_naive().with_day(1).unwrap_or(t.date_naive());
    let next = first.checked_add_months(Months::new(1)).unwrap_or(first);
    format!("{}T00:00:00Z", next.format("%Y-%m-%d"))
}

impl FromStr for WindowSpec {
    type Err = WindowError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let err = |reason| WindowError::Parse {
            text: text.to_owned(),
            reason,
        };
        let months = |s: &str| -> Result<u32, WindowError> {
            let n = s
                .strip_suffix('m')
                .ok_or_else(|| err("the length must end in `m` (months)"))?;
            match n.parse::<u32>() {
                Ok(n) if (1..=120).contains(&n) => Ok(n),
                _ => Err(err("the number of months must be 1 to 120")),
            }
        };
        let t = text.trim();
        if let Some(rest) = t.strip_prefix("rolling:") {
            Ok(Self::Rolling {
                months: months(rest)?,
            })
        } else if let Some(rest) = t.strip_prefix("calendar:") {
            Ok(Self::Calendar {
                months: months(rest)?,
            })
        } else if let Some(rest) = t.strip_prefix("range:") {
            let (a, b) = rest
                .split_once("..")
                .ok_or_else(|| err("a range is written `from..to`"))?;
            let date = |s: &str| {
                NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d")
                    .map_err(|_| err("dates are written YYYY-MM-DD"))
            };
            let (from, to) = (date(a)?, date(b)?);
            let years = crate::clock::FIRST_YEAR..=crate::clock::LAST_YEAR;
            if !(years.contains(&from.year()) && years.contains(&to.year())) {
                // The comparison period and the trend months reach back from the
                // range, and the PDF prints its dates: both need four-digit years.
                return Err(err("dates lie between 1900-01-01 and 9999-12-31"));
            }
            if from > to {
                return Err(err("the range ends before it starts"));
            }
            Ok(Self::Range { from, to })
        } else {
            Err(err("unknown kind"))
        }
    }
}

// As written (`rolling:6m`): a run's request crosses to its worker process as JSON.
impl Serialize for WindowSpec {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for WindowSpec {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for WindowSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Rolling { months } => write!(f, "rolling:{months}m"),
            Self::Calendar { months } => write!(f, "calendar:{months}m"),
            Self::Range { from, to } => write!(f, "range:{from}..{to}"),
        }
    }
}

/// An inclusive UTC interval `[start, end]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Window {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

impl Window {
    pub fn contains(&self, t: DateTime<Utc>) -> bool {
        self.start <= t && t <= self.end
    }

    /// The canonical period text: directory name and ledger key.
    pub fn period(&self) -> String {
        format!(
            "{}_{}",
            self.start.format("%Y-%m-%d"),
            self.end.format("%Y-%m-%d")
        )
    }

    fn from_dates(first: NaiveDate, last: NaiveDate) -> Self {
        let end_of_day = NaiveTime::from_hms_opt(23, 59, 59).expect("valid time");
        Self {
            start: Utc.from_utc_datetime(&first.and_time(NaiveTime::MIN)),
            end: Utc.from_utc_datetime(&last.and_time(end_of_day)),
        }
    }
}

impl Window {
    /// The last `n` calendar months (UTC) up to this window's end, oldest first, the
    /// last one cut at the end: the months of a trend. Each carries its `YYYY-MM`.
    pub fn months_up_to_end(&self, n: u32) -> Vec<(String, Window)> {
        let last = self.end.date_naive();
        let this_month = last.with_day(1).expect("day 1 exists");
        (0..n)
            .rev()
            .map(|back| {
                let first = sub_months(this_month, back);
                let month_last = (first + Months::new(1))
                    .pred_opt()
                    .expect("a day before the 1st exists")
                    .min(last);
                (
                    first.format("%Y-%m").to_string(),
                    Window::from_dates(first, month_last),
                )
            })
            .collect()
    }

    /// The window to load so that the last `months` months up to this window's end
    /// and `comparison` can all be computed from one load: from the earliest of them
    /// to this window's end.
    pub fn history_span(&self, months: u32, comparison: Option<&Window>) -> Window {
        let first = self
            .months_up_to_end(months)
            .first()
            .map_or(self.start, |(_, w)| w.start);
        Window {
            start: comparison
                .map_or(first, |c| c.start.min(first))
                .min(self.start),
            end: self.end,
        }
    }

    /// Whether this month of a trend is cut short by `window`'s end (the window ends
    /// before the month's last day).
    pub fn cut_short_by(&self, window: &Window) -> bool {
        self.end == window.end && self.end.date_naive().succ_opt().map(|d| d.day()) != Some(1)
    }

    /// Whether the two windows share a moment.
    pub fn overlaps(&self, other: &Window) -> bool {
        self.start <= other.end && other.start <= self.end
    }
}

impl WindowSpec {
    /// Resolves the spec. `anchor` is MAX(conversation_created_at), needed by rolling
    /// windows only; `reference` is the run's reference time, seen in `tz` (the job's
    /// timezone) to decide which calendar months are "before" it.
    pub fn resolve(
        &self,
        anchor: Option<DateTime<Utc>>,
        reference: DateTime<Utc>,
        tz: Tz,
    ) -> Result<Window, WindowError> {
        Ok(match *self {
            Self::Rolling { months } => {
                let day = anchor
                    .ok_or_else(|| WindowError::NoAnchor(self.to_string()))?
                    .date_naive();
                Window::from_dates(sub_months(day, months), day)
            }
            Self::Calendar { months } => {
                let local = reference.with_timezone(&tz).date_naive();
                let this_month = local.with_day(1).expect("day 1 exists");
                let first = sub_months(this_month, months);
                let last = this_month.pred_opt().expect("a day before the 1st exists");
                Window::from_dates(first, last)
            }
            Self::Range { from, to } => Window::from_dates(from, to),
        })
    }
}

/// The period an edition compares itself with (`compare` option of the windowed
/// reports).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(into = "String")]
pub enum Compare {
    /// The window of the same length immediately before.
    Previous,
    /// The same window moved back N months (what the previous edition of a monthly
    /// job with a rolling window showed).
    Shift(u32),
    None,
}

impl From<Compare> for String {
    fn from(c: Compare) -> Self {
        c.to_string()
    }
}

impl FromStr for Compare {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || format!("`{s}`: expected `previous`, `shift:<N>m` (N = 1 to 120) or `none`");
        match s.trim() {
            "previous" => Ok(Self::Previous),
            "none" => Ok(Self::None),
            t => {
                let n = t
                    .strip_prefix("shift:")
                    .and_then(|r| r.strip_suffix('m'))
                    .and_then(|n| n.parse::<u32>().ok())
                    .filter(|n| (1..=120).contains(n))
                    .ok_or_else(bad)?;
                Ok(Self::Shift(n))
            }
        }
    }
}

impl fmt::Display for Compare {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Previous => write!(f, "previous"),
            Self::Shift(n) => write!(f, "shift:{n}m"),
            Self::None => write!(f, "none"),
        }
    }
}

impl Window {
    /// The comparison window of this window (cut by `spec`), or `None` for
    /// `compare = none`. `previous` for a window of N months is the N months before
    /// its first day; for a range, as many days before it.
    pub fn comparison(&self, spec: &WindowSpec, compare: Compare) -> Option<Window> {
        let first = self.start.date_naive();
        let last = self.end.date_naive();
        let day_before = first.pred_opt()?;
        Some(match (compare, spec) {
            (Compare::None, _) => return None,
            (
                Compare::Previous,
                WindowSpec::Rolling { months } | WindowSpec::Calendar { months },
            ) => Window::from_dates(sub_months(first, *months), day_before),
            (Compare::Previous, WindowSpec::Range { .. }) => {
                let days = (last - first).num_days() + 1;
                Window::from_dates(first - chrono::Duration::days(days), day_before)
            }
            (Compare::Shift(n), _) => Window::from_dates(sub_months(first, n), sub_months(last, n)),
        })
    }
}

/// Calendar months back, clamping to the month's last day (Aug 31 − 6m = Feb 29/28).
fn sub_months(d: NaiveDate, n: u32) -> NaiveDate {
    d.checked_sub_months(Months::new(n)).expect("date in range")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        crate::source::timestamp::parse(s, Tz::UTC).unwrap()
    }

    #[test]
    fn rolling_uses_the_anchor_date() {
        let w: WindowSpec = "rolling:6m".parse().unwrap();
        let r = w
            .resolve(
                Some(at("2024-06-15 12:00:00")),
                at("2030-01-01 00:00:00"),
                Tz::UTC,
            )
            .unwrap();
        assert_eq!(r.start, at("2023-12-15 00:00:00"));
        assert_eq!(r.end, at("2024-06-15 23:59:59"));
        assert_eq!(r.period(), "2023-12-15_2024-06-15");
        let r = w
            .resolve(
                Some(at("2024-08-31 01:00:00")),
                at("2030-01-01 00:00:00"),
                Tz::UTC,
            )
            .unwrap();
        assert_eq!(r.start, at("2024-02-29 00:00:00"));
        assert!(matches!(
            w.resolve(None, at("2030-01-01 00:00:00"), Tz::UTC),
            Err(WindowError::NoAnchor(_))
        ));
    }

    #[test]
    fn calendar_takes_full_months_before_the_reference_in_the_job_timezone() {
        let w: WindowSpec = "calendar:6m".parse().unwrap();
        let r = w.resolve(None, at("2024-07-01 12:00:00"), Tz::UTC).unwrap();
        assert_eq!(r.start, at("2024-01-01 00:00:00"));
        assert_eq!(r.end, at("2024-06-30 23:59:59"));
        // 02:00 UTC on July 1st is still June 30th in New York.
        let ny: Tz = "America/New_York".parse().unwrap();
        let r = w.resolve(None, at("2024-07-01 02:00:00"), ny).unwrap();
        assert_eq!(r.start, at("2023-12-01 00:00:00"));
        assert_eq!(r.end, at("2024-05-31 23:59:59"));
    }

    #[test]
    fn range_is_inclusive() {
        let w: WindowSpec = "range:2024-01-01..2024-03-31".parse().unwrap();
        let r = w.resolve(None, at("2030-01-01 00:00:00"), Tz::UTC).unwrap();
        assert!(r.contains(at("2024-03-31 23:59:59")));
        assert!(!r.contains(at("2024-04-01 00:00:00")));
        assert!(r.contains(at("2024-01-01 00:00:00")));
        assert!(!r.contains(at("2023-12-31 23:59:59")));
        assert_eq!(w.to_string(), "range:2024-01-01..2024-03-31");
    }

    #[test]
    fn bad_specs_say_why() {
        for bad in [
            "",
            "rolling",
            "rolling:6",
            "rolling:0m",
            "calendar:xm",
            "range:2024-01-01",
            "range:2024-02-01..2024-01-01",
            "weekly:2w",
            "range:-262000-01-01..2024-01-01",
            "range:2024-01-01..+262142-12-31",
            "range:1899-12-31..2024-01-01",
        ] {
            let e = bad.parse::<WindowSpec>().unwrap_err();
            assert!(
                e.to_string().contains("expected `rolling:<N>m`"),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn range_dates_keep_to_four_digit_years() {
        for bad in [
            "range:-262000-01-01..2024-01-01",
            "range:2024-01-01..+262142-12-31",
        ] {
            let e = bad.parse::<WindowSpec>().unwrap_err().to_string();
            assert!(
                e.contains(bad) && e.contains("between 1900-01-01 and 9999-12-31"),
                "{e}"
            );
        }
        let w: WindowSpec = "range:1900-01-01..9999-12-31".parse().unwrap();
        let r = w.resolve(None, at("2030-01-01 00:00:00"), Tz::UTC).unwrap();
        assert!(r.comparison(&w, Compare::Previous).is_some());
        assert_eq!(r.months_up_to_end(12).len(), 12);
    }

    #[test]
    fn comparison_windows() {
        let w: WindowSpec = "rolling:6m".parse().unwrap();
        let r = w
            .resolve(
                Some(at("2024-06-15 12:00:00")),
                at("2030-01-01 00:00:00"),
                Tz::UTC,
            )
            .unwrap();
        let p = r.comparison(&w, Compare::Previous).unwrap();
        assert_eq!(p.period(), "2023-06-15_2023-12-14");
        let s = r.comparison(&w, Compare::Shift(1)).unwrap();
        assert_eq!(s.period(), "2023-11-15_2024-05-15");
        assert_eq!(r.comparison(&w, Compare::None), None);
        let range: WindowSpec = "range:2024-03-01..2024-03-10".parse().unwrap();
        let r = range
            .resolve(None, at("2030-01-01 00:00:00"), Tz::UTC)
            .unwrap();
        assert_eq!(
            r.comparison(&range, Compare::Previous).unwrap().period(),
            "2024-02-20_2024-02-29"
        );
        assert_eq!("shift:3m".parse::<Compare>(), Ok(Compare::Shift(3)));
        assert!("shift:0m".parse::<Compare>().is_err());
        assert!("last".parse::<Compare>().unwrap_err().contains("previous"));
        assert_eq!(Compare::Shift(12).to_string(), "shift:12m");
    }
}
