//! Timestamps of the data contract: ISO-8601 text with `T` or a space, optional
//! fractional seconds and an optional offset: `Z`, `±HH:MM`, `±HHMM`, `±HH`, also after
//! a space, or a trailing ` UTC` (the text forms warehouses export: BigQuery's
//! `2024-04-17 15:15:13 UTC`, Snowflake's `2024-04-17 15:15:13.000 +0000`). Values
//! without an offset are local to the configured source timezone. Everything becomes UTC here, once,
//! so no later comparison can mix zones. Text a reader cannot parse is
//! counted per `table.column` (`TsParser`, `BadTimestamps`), not an error.

use std::collections::BTreeMap;

use chrono::{DateTime, LocalResult, NaiveDate, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;
use serde::Serialize;

/// Why a timestamp text was rejected (kept short: it goes into the data-quality count,
/// not into an error per row).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadTimestamp;

/// Parses one timestamp value; `source_tz` applies to values without an offset.
pub fn parse(text: &str, source_tz: Tz) -> Result<DateTime<Utc>, BadTimestamp> {
    let s = text.trim().as_bytes();
    if s.len() < 19 {
        return Err(BadTimestamp);
    }
    let year = digits(&s[0..4])? as i32;
    let month = digits(&s[5..7])?;
    let day = digits(&s[8..10])?;
    let hour = digits(&s[11..13])?;
    let minute = digits(&s[14..16])?;
    let second = digits(&s[17..19])?;
    if s[4] != b'-' || s[7] != b'-' || !matches!(s[10], b' ' | b'T' | b't') {
        return Err(BadTimestamp);
    }
    if s[13] != b':' || s[16] != b':' {
        return Err(BadTimestamp);
    }
    let mut rest = &s[19..];
    let mut micros = 0u32;
    if let Some((&b'.', frac)) = rest.split_first() {
        let n = frac.iter().take_while(|b| b.is_ascii_digit()).count();
        if n == 0 {
            return Err(BadTimestamp);
        }
        for (i, b) in frac[..n].iter().enumerate().take(6) {
            micros += u32::from(b - b'0') * 10u32.pow(5 - i as u32);
        }
        rest = &frac[n..];
    }
    let naive = NaiveDate::from_ymd_opt(year, month, day)
        .and_then(|d| d.and_hms_micro_opt(hour, minute, second, micros))
        .ok_or(BadTimestamp)?;
    // Warehouse exports put the zone after a space.
    if let [b' ', zone @ ..] = rest {
        if zone.is_empty() {
            return Err(BadTimestamp);
        }
        rest = zone;
    }
    match rest {
        [] => Ok(localize(naive, source_tz)),
        [b'Z' | b'z'] => Ok(Utc.from_utc_datetime(&naive)),
        [u, t, c] if [*u, *t, *c].eq_ignore_ascii_case(b"UTC") => Ok(Utc.from_utc_datetime(&naive)),
        [sign @ (b'+' | b'-'), off @ ..] => {
            let (h, m) = match off {
                [h1, h2] => (digits(&[*h1, *h2])?, 0),
                [h1, h2, b':', m1, m2] | [h1, h2, m1, m2] => {
                    (digits(&[*h1, *h2])?, digits(&[*m1, *m2])?)
                }
                _ => return Err(BadTimestamp),
            };
            if h > 23 || m > 59 {
                return Err(BadTimestamp);
            }
            let offset = i64::from(h * 60 + m) * 60;
            let signed = if *sign == b'+' { offset } else { -offset };
            let utc = naive - chrono::Duration::seconds(signed);
            Ok(Utc.from_utc_datetime(&utc))
        }
        _ => Err(BadTimestamp),
    }
}

/// A naive local time in `tz`: an ambiguous time (fall back) takes the earlier
/// instant, a skipped one (spring forward) the first valid instant after the gap.
pub fn localize(naive: NaiveDateTime, tz: Tz) -> DateTime<Utc> {
    // The common case, and millions of rows on large exports: no zone rules to consult.
    if tz == Tz::UTC {
        return Utc.from_utc_datetime(&naive);
    }
    match tz.from_local_datetime(&naive) {
        LocalResult::Single(t) => t.with_timezone(&Utc),
        LocalResult::Ambiguous(a, _) => a.with_timezone(&Utc),
        LocalResult::None => {
            // Walk forward minute by minute; DST gaps are at most a few hours.
            let mut probe = naive;
            for _ in 0..(24 * 60) {
                probe += chrono::Duration::minutes(1);
                if let Some(t) = tz.from_local_datetime(&probe).earliest() {
                    let t = t.with_timezone(&Utc);
                    // First valid instant: the start of the minute the gap ends on.
                    return t - chrono::Duration::seconds(i64::from(chrono::Timelike::second(
                        &probe,
                    )));
                }
            }
            Utc.from_utc_datetime(&naive)
        }
    }
}

fn digits(b: &[u8]) -> Result<u32, BadTimestamp> {
    b.iter().try_fold(0u32, |acc, &c| {
        if c.is_ascii_digit() {
            Ok(acc * 10 + u32::from(c - b'0'))
        } else {
            Err(BadTimestamp)
        }
    })
}

/// Formats a UTC instant the way the outputs print it: `YYYY-MM-DD HH:MM:SS`.
pub fn format_utc(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S").to_string()
}

/// Counts of timestamps that could not be parsed, per `table.column`.
#[derive(Debug, Default, Clone, Serialize, PartialEq, Eq)]
pub struct BadTimestamps(pub BTreeMap<String, u64>);

impl BadTimestamps {
    pub fn total(&self) -> u64 {
        self.0.values().sum()
    }
}

/// Parses timestamp text, counting what does not parse.
pub struct TsParser<'a> {
    pub tz: Tz,
    pub bad: &'a mut BadTimestamps,
}

impl TsParser<'_> {
    pub fn parse(&mut self, table: &str, column: &str, v: Option<&str>) -> Option<DateTime<Utc>> {
        let v = v?;
        if v.trim().is_empty() {
            return None;
        }
        match parse(v, self.tz) {
            Ok(t) => Some(t),
            Err(_) => self.count_bad(table, column),
        }
    }

    /// Counts one unreadable value of `table.column`.
    pub fn count_bad(&mut self, table: &str, column: &str) -> Option<DateTime<Utc>> {
        *self.bad.0.entry(format!("{table}.{column}")).or_default() += 1;
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        Utc.from_utc_datetime(&NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f").unwrap())
    }

    #[test]
    fn plain_space_and_t_forms_are_utc_by_default() {
        assert_eq!(
            parse("2024-06-15 12:00:00", Tz::UTC),
            Ok(utc("2024-06-15 12:00:00"))
        );
        assert_eq!(
            parse("2024-06-15T12:00:00", Tz::UTC),
            Ok(utc("2024-06-15 12:00:00"))
        );
        assert_eq!(
            parse(" 2024-06-15 12:00:00 ", Tz::UTC),
            Ok(utc("2024-06-15 12:00:00"))
        );
    }

    #[test]
    fn z_and_offsets_convert_to_utc() {
        assert_eq!(
            parse("2024-06-15T12:00:00Z", Tz::UTC),
            Ok(utc("2024-06-15 12:00:00"))
        );
        assert_eq!(
            parse("2024-06-15T20:00:00+08:00", Tz::UTC),
            Ok(utc("2024-06-15 12:00:00"))
        );
        assert_eq!(
            parse("2024-06-15 07:30:00-04:30", Tz::UTC),
            Ok(utc("2024-06-15 12:00:00"))
        );
        assert_eq!(
            parse("2024-06-16T02:00:00+1400", Tz::UTC),
            Ok(utc("2024-06-15 12:00:00"))
        );
        // The offset wins over the source timezone.
        assert_eq!(
            parse("2024-06-15T12:00:00Z", "Asia/Shanghai".parse().unwrap()),
            Ok(utc("2024-06-15 12:00:00"))
        );
    }

    #[test]
    fn warehouse_text_forms_are_understood() {
        let tz: Tz = "Asia/Shanghai".parse().unwrap();
        for text in [
            // BigQuery
            "2024-04-17 15:15:13 UTC",
            "2024-04-17 15:15:13.000000 UTC",
            // Snowflake
            "2024-04-17 15:15:13.000 +0000",
            "2024-04-17 23:15:13.000 +0800",
            // PostgreSQL's text form of timestamptz
            "2024-04-17 15:15:13+00",
            "2024-04-17 17:15:13+02",
            "2024-04-17 15:15:13 Z",
        ] {
            // An explicit zone wins over the source timezone.
            assert_eq!(parse(text, tz), Ok(utc("2024-04-17 15:15:13")), "{text:?}");
        }
    }

    #[test]
    fn fractional_seconds_are_kept() {
        assert_eq!(
            parse("2024-06-15 12:00:00.250", Tz::UTC),
            Ok(utc("2024-06-15 12:00:00.250"))
        );
        assert_eq!(
            parse("2024-06-15T12:00:00.123456789Z", Tz::UTC),
            Ok(utc("2024-06-15 12:00:00.123456"))
        );
    }

    #[test]
    fn naive_values_use_the_source_timezone() {
        let shanghai: Tz = "Asia/Shanghai".parse().unwrap();
        assert_eq!(
            parse("2024-06-15 20:00:00", shanghai),
            Ok(utc("2024-06-15 12:00:00"))
        );
        let ny: Tz = "America/New_York".parse().unwrap();
        // 02:30 does not exist on 2024-03-10 in New York: first valid instant is 03:00 EDT.
        assert_eq!(
            parse("2024-03-10 02:30:00", ny),
            Ok(utc("2024-03-10 07:00:00"))
        );
        // 01:30 happens twice on 2024-11-03: the earlier (EDT) one.
        assert_eq!(
            parse("2024-11-03 01:30:00", ny),
            Ok(utc("2024-11-03 05:30:00"))
        );
    }

    #[test]
    fn garbage_is_rejected() {
        for bad in [
            "",
            "not a date",
            "2024-13-01 00:00:00",
            "2024-02-30 00:00:00",
            "2024-06-15",
            "2024/06/15 12:00:00",
            "2024-06-15 25:00:00",
            "2024-06-15 12:00:00+",
            "2024-06-15 12:00:00.",
            "2024-06-15 12:00:00 PST",
            "2024-06-15 12:00:00 UTC+1",
            "2024-06-15 12:00:00 +08:00x",
            "2024-06-15 12:00:00+24:00",
        ] {
            assert_eq!(parse(bad, Tz::UTC), Err(BadTimestamp), "{bad:?}");
        }
    }
}
