//! Standard 5-field cron expressions: validated and translated for the `cron` crate
//! (which wants a seconds field and numbers Sunday as 1), and their fire times in the
//! job's timezone with the spec's DST rules (a skipped local time fires at the first
//! valid instant after it; a repeated one fires once). `config` parses them; the
//! catch-up (`schedule`) walks their fire times.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Duration, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;

use crate::source::timestamp::localize;

/// A parsed, validated 5-field cron expression.
#[derive(Clone)]
pub struct CronExpr {
    text: String,
    /// One schedule; two when both day fields are restricted (standard cron fires when
    /// either matches, the `cron` crate only when both do).
    schedules: Vec<cron::Schedule>,
}

impl fmt::Debug for CronExpr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CronExpr({:?})", self.text)
    }
}

impl fmt::Display for CronExpr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cron `{text}`: {reason}")]
pub struct CronError {
    pub text: String,
    pub reason: String,
}

const MONTHS: [&str; 12] = [
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];
const DAYS: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

struct Field {
    name: &'static str,
    min: u32,
    max: u32,
    /// Names for values `min..`, if the field has them.
    names: &'static [&'static str],
}

const FIELDS: [Field; 5] = [
    Field {
        name: "minute",
        min: 0,
        max: 59,
        names: &[],
    },
    Field {
        name: "hour",
        min: 0,
        max: 23,
        names: &[],
    },
    Field {
        name: "day of month",
        min: 1,
        max: 31,
        names: &[],
    },
    Field {
        name: "month",
        min: 1,
        max: 12,
        names: &MONTHS,
    },
    // 0 and 7 are both Sunday.
    Field {
        name: "day of week",
        min: 0,
        max: 7,
        names: &DAYS,
    },
];

fn value(f: &Field, s: &str) -> Result<u32, String> {
    if let Ok(n) = s.parse::<u32>() {
        return if (f.min..=f.max).contains(&n) {
            Ok(n)
        } else {
            Err(format!(
                "{} {n} is out of range {}–{}",
                f.name, f.min, f.max
            ))
        };
    }
    f.names
        .iter()
        .position(|n| n.eq_ignore_ascii_case(s))
        .map(|i| i as u32 + f.min)
        .ok_or_else(|| format!("{} `{s}` is not a number or a name", f.name))
}

/// Expands one field into the set of values it matches; `None` for `*`.
fn expand(f: &Field, text: &str) -> Result<Option<BTreeSet<u32>>, String> {
    // `?` is accepted for the two day fields, as many cron dialects write it.
    if text == "*" || (text == "?" && f.name.starts_with("day")) {
        return Ok(None);
    }
    let mut out = BTreeSet::new();
    for item in text.split(',') {
        if item.is_empty() {
            return Err(format!("{} has an empty list item", f.name));
        }
        let (base, step) = match item.split_once('/') {
            Some((b, s)) => {
                let step: u32 = s
                    .parse()
                    .map_err(|_| format!("{} step `{s}` is not a number", f.name))?;
                if step == 0 {
                    return Err(format!("{} step must be at least 1 (`{item}`)", f.name));
                }
                (b, step)
            }
            None => (item, 1),
        };
        let (lo, hi) = if base == "*" {
            (f.min, f.max)
        } else if let Some((a, b)) = base.split_once('-') {
            let (a, b) = (value(f, a)?, value(f, b)?);
            if a > b {
                return Err(format!("{} range `{base}` runs backwards", f.name));
            }
            (a, b)
        } else {
            let a = value(f, base)?;
            // `a/step` means from a to the end, as in Vixie cron.
            (a, if item.contains('/') { f.max } else { a })
        };
        out.extend((lo..=hi).step_by(step as usize));
    }
    Ok(Some(out))
}

fn list(values: &BTreeSet<u32>) -> String {
    values
        .iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

impl FromStr for CronExpr {
    type Err = CronError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let err = |reason: String| CronError {
            text: text.to_owned(),
            reason,
        };
        if text.chars().any(|c| c.is_control() && c != '\t') {
            return Err(err("contains control characters".into()));
        }
        let parts: Vec<&str> = text.split_whitespace().collect();
        if parts.len() != 5 {
            return Err(err(format!(
                "expected 5 fields (minute hour day-of-month month day-of-week), found {}",
                parts.len()
            )));
        }
        let mut sets = Vec::with_capacity(5);
        for (f, p) in FIELDS.iter().zip(&parts) {
            sets.push(expand(f, p).map_err(err)?);
        }
        // Day of week: 7 is Sunday too; the cron crate numbers Sunday 1 … Saturday 7.
        let dow = sets[4]
            .take()
            .map(|s| s.into_iter().map(|d| d % 7).collect::<BTreeSet<u32>>());
        let dow = dow.filter(|s| s.len() < 7);
        let field = |s: &Option<BTreeSet<u32>>| s.as_ref().map_or("*".to_owned(), list);
        let (minute, hour, dom, month) = (
            field(&sets[0]),
            field(&sets[1]),
            field(&sets[2]),
            field(&sets[3]),
        );
        let dow_text = dow
            .as_ref()
            .map_or("*".to_owned(), |s| list(&s.iter().map(|d| d + 1).collect()));
        let build = |dom: &str, dow: &str| -> Result<cron::Schedule, CronError> {
            let expr = format!("0 {minute} {hour} {dom} {month} {dow}");
            cron::Schedule::from_str(&expr)
                .map_err(|e| err(format!("rejected by the scheduler: {e}")))
        };
        let schedules = match (&sets[2], &dow) {
            (Some(_), Some(_)) => vec![build(&dom, "*")?, build("*", &dow_text)?],
            _ => vec![build(&dom, &dow_text)?],
        };
        // An expression that can never fire (e.g. 30 February) is a mistake.
        let probe = Utc
            .with_ymd_and_hms(2000, 1, 1, 0, 0, 0)
            .single()
            .expect("valid");
        if schedules.iter().all(|s| s.after(&probe).next().is_none()) {
            return Err(err("never fires".into()));
        }
        Ok(Self {
            text: text.to_owned(),
            schedules,
        })
    }
}

impl CronExpr {
    /// The first fire time strictly after `after`, in `tz` wall-clock terms.
    pub fn next_after(&self, tz: Tz, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        // Walk wall-clock times (as if UTC, so no DST) from a little before `after`'s
        // local time: a time in a spring-forward gap maps forward past the gap.
        let local = after.with_timezone(&tz).naive_local() - Duration::hours(4);
        let start = Utc.from_utc_datetime(&local);
        self.schedules
            .iter()
            .filter_map(|s| {
                s.after(&start)
                    .take(10_000)
                    .map(|t| to_instant(t.naive_utc(), tz))
                    .find(|t| *t > after)
            })
            .min()
    }

    /// The last fire time at or before `t`.
    pub fn last_at_or_before(&self, tz: Tz, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        // As `next_after`, backwards: from a little after `t`'s local time.
        let local = t.with_timezone(&tz).naive_local() + Duration::hours(4);
        let start = Utc.from_utc_datetime(&local);
        self.schedules
            .iter()
            .filter_map(|s| {
                s.after(&start)
                    .rev()
                    .take(10_000)
                    .map(|x| to_instant(x.naive_utc(), tz))
                    .find(|x| *x <= t)
            })
            .max()
    }

    /// Fire times in `(from, to]`, oldest first, at most `limit`.
    pub fn fires_between(
        &self,
        tz: Tz,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        limit: usize,
    ) -> Vec<DateTime<Utc>> {
        let mut out = Vec::new();
        let mut t = from;
        while out.len() < limit {
            match self.next_after(tz, t) {
                Some(n) if n <= to => {
                    out.push(n);
                    t = n;
                }
                _ => break,
            }
        }
        out
    }

    /// The next `n` fire times after `after`.
    pub fn upcoming(&self, tz: Tz, after: DateTime<Utc>, n: usize) -> Vec<DateTime<Utc>> {
        let mut out = Vec::with_capacity(n);
        let mut t = after;
        while out.len() < n {
            match self.next_after(tz, t) {
                Some(next) => {
                    out.push(next);
                    t = next;
                }
                None => break,
            }
        }
        out
    }
}

fn to_instant(local: NaiveDateTime, tz: Tz) -> DateTime<Utc> {
    localize(local, tz)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        crate::source::timestamp::parse(s, Tz::UTC).unwrap()
    }

    fn cron(s: &str) -> CronExpr {
        s.parse().unwrap()
    }

    #[test]
    fn five_fields_translate_seconds_and_sunday() {
        let ny: Tz = "America/New_York".parse().unwrap();
        // 08:00 on the 1st of every month, New York time.
        let c = cron("0 8 1 * *");
        assert_eq!(
            c.next_after(ny, at("2024-06-15 00:00:00")),
            Some(at("2024-07-01 12:00:00"))
        );
        // Day of week 0 and 7 are Sunday; 2024-06-16 is a Sunday.
        for text in ["0 9 * * 0", "0 9 * * 7", "0 9 * * SUN", "0 9 * * sun"] {
            assert_eq!(
                cron(text).next_after(Tz::UTC, at("2024-06-15 00:00:00")),
                Some(at("2024-06-16 09:00:00")),
                "{text}"
            );
        }
        // Monday to Friday: from Saturday the next is Monday.
        assert_eq!(
            cron("30 7 * * 1-5").next_after(Tz::UTC, at("2024-06-15 00:00:00")),
            Some(at("2024-06-17 07:30:00"))
        );
        // Steps and lists.
        assert_eq!(
            cron("*/15 * * * *").upcoming(Tz::UTC, at("2024-06-15 00:01:00"), 3),
            [
                at("2024-06-15 00:15:00"),
                at("2024-06-15 00:30:00"),
                at("2024-06-15 00:45:00")
            ]
        );
        assert_eq!(
            cron("0 0 * * 5-7").upcoming(Tz::UTC, at("2024-06-13 12:00:00"), 4),
            [
                at("2024-06-14 00:00:00"),
                at("2024-06-15 00:00:00"),
                at("2024-06-16 00:00:00"),
                at("2024-06-21 00:00:00")
            ]
        );
    }

    #[test]
    fn day_of_month_or_day_of_week_as_standard_cron() {
        // The 13th, or any Friday: 2024-09-06 (Fri), 2024-09-13 (Fri and the 13th), 2024-09-20.
        let c = cron("0 0 13 * 5");
        assert_eq!(
            c.upcoming(Tz::UTC, at("2024-09-01 00:00:00"), 3),
            [
                at("2024-09-06 00:00:00"),
                at("2024-09-13 00:00:00"),
                at("2024-09-20 00:00:00")
            ]
        );
    }

    #[test]
    fn bad_expressions_say_why() {
        for (text, why) in [
            ("*/0 * * * *", "step must be at least 1"),
            ("0 8 * *", "expected 5 fields"),
            ("0 8 * * * *", "expected 5 fields"),
            ("60 * * * *", "minute 60 is out of range"),
            ("0 24 * * *", "hour 24"),
            ("0 0 0 * *", "day of month 0"),
            ("0 0 * 13 *", "month 13"),
            ("0 0 * * 8", "day of week 8"),
            ("0 0 * * FUNDAY", "not a number or a name"),
            ("5-1 * * * *", "runs backwards"),
            ("0 0 30 2 *", "never fires"),
            ("0 0 1,,2 * *", "empty list item"),
            ("0 8 1 * *\r\nX", "control characters"),
        ] {
            let e = text.parse::<CronExpr>().unwrap_err().to_string();
            assert!(e.contains(why), "{text:?}: {e}");
        }
    }

    /// Daily 02:30 in New York through the spring-forward week of 2024 (March 10).
    #[test]
    fn dst_spring_forward_runs_at_the_first_valid_instant() {
        let ny: Tz = "America/New_York".parse().unwrap();
        let fires = cron("30 2 * * *").fires_between(
            ny,
            at("2024-03-07 12:00:00"),
            at("2024-03-13 12:00:00"),
            100,
        );
        assert_eq!(
            fires,
            [
                at("2024-03-08 07:30:00"), // 02:30 EST
                at("2024-03-09 07:30:00"),
                at("2024-03-10 07:00:00"), // 02:30 does not exist: 03:00 EDT
                at("2024-03-11 06:30:00"), // 02:30 EDT
                at("2024-03-12 06:30:00"),
                at("2024-03-13 06:30:00"),
            ]
        );
    }

    /// Daily 01:30 and 02:30 in New York through the fall-back week (November 3).
    #[test]
    fn dst_fall_back_runs_a_repeated_time_once() {
        let ny: Tz = "America/New_York".parse().unwrap();
        let fires = cron("30 2 * * *").fires_between(
            ny,
            at("2024-11-01 12:00:00"),
            at("2024-11-05 12:00:00"),
            100,
        );
        assert_eq!(
            fires,
            [
                at("2024-11-02 06:30:00"),
                at("2024-11-03 07:30:00"),
                at("2024-11-04 07:30:00"),
                at("2024-11-05 07:30:00")
            ]
        );
        // 01:30 happens twice on November 3rd: it fires once, at the first one (EDT).
        let fires = cron("30 1 * * *").fires_between(
            ny,
            at("2024-11-02 12:00:00"),
            at("2024-11-04 12:00:00"),
            100,
        );
        assert_eq!(
            fires,
            [at("2024-11-03 05:30:00"), at("2024-11-04 06:30:00")]
        );
        // Every 30 minutes across the repeated hour: no time fires twice.
        let fires = cron("*/30 1 * * *").fires_between(
            ny,
            at("2024-11-03 04:00:00"),
            at("2024-11-03 08:00:00"),
            100,
        );
        assert_eq!(
            fires,
            [at("2024-11-03 05:00:00"), at("2024-11-03 05:30:00")]
        );
    }

    #[test]
    fn backward_and_forward_walks_agree_across_dst() {
        let tz: Tz = "Europe/Berlin".parse().unwrap();
        for expr in ["30 2 * * *", "0 * * * *", "*/30 1-3 * * *"] {
            let c = cron(expr);
            for (from, to) in [
                (at("2024-03-29 00:00:00"), at("2024-04-02 00:00:00")),
                (at("2024-10-25 00:00:00"), at("2024-10-29 00:00:00")),
            ] {
                let forward = c.fires_between(tz, from, to, 1000);
                let mut back = Vec::new();
                let mut t = to;
                while let Some(f) = c.last_at_or_before(tz, t) {
                    if f <= from {
                        break;
                    }
                    back.push(f);
                    t = f - Duration::seconds(1);
                }
                back.reverse();
                assert_eq!(forward, back, "{expr} {from}");
            }
        }
    }
}
