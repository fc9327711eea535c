//! The usage events, the largest table a report reads: held 8 bytes an event
//! ([`EventStamp`] in runs per company), read from the window start on, and where a
//! server's statistics say it pays, summarised per company, core flag and day on the
//! server. Loaded on a second connection while the conversations load.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::Serialize;

use crate::intercom::{CompanyRow, USAGE_EVENTS};
use crate::reports::load::LoadSpan;
use crate::source::interner::Interner;
use crate::source::{BadTimestamps, DataError, Database, Param, TimeColumn, TsParser};

pub(super) const SQL_USAGE_EVENTS: &str =
    "SELECT company_id, is_core, occurred_at FROM usage_events";
/// The events from the window start (`$1`) on, one row each (where day summaries
/// would not be fewer: see [`summaries_pay`]).
const SQL_USAGE_EVENTS_FROM: &str =
    "SELECT company_id, is_core, occurred_at FROM usage_events WHERE occurred_at >= $1";
/// Usage events pre-aggregated on the server where `occurred_at` is a native
/// timestamp: per company, core flag and UTC day, the first and last event time and
/// the count. The metrics need no more: retention asks whether a company has a core
/// event in a week or month (a day lies in one of each), and conversion whether an
/// event lies in (close, close + 72 h]; that interval spans four days, whole ones
/// in the middle, and an event exists in its part of the first day iff the day's last
/// event is after the close, in its part of the last day iff the day's first event
/// is within it. So memory and transfer grow with companies × days, not events.
/// `$1`: the start of the span loaded (no earlier event can count); `$2`: the
/// report's window start, where a day is cut in two (so the events from the window
/// start on are counted as a load of the window alone counts them; a part of a day
/// is a day for the metrics' argument above); the session is in UTC.
const SQL_USAGE_DAYS_ZONED: &str = "SELECT company_id, is_core, min(occurred_at), \
     max(occurred_at), count(*) FROM usage_events WHERE occurred_at >= $1 \
     GROUP BY company_id, is_core, date_trunc('day', occurred_at), occurred_at >= $2 \
     ORDER BY company_id";
/// The same for `timestamp without time zone` values, local to `$3` (the source
/// timezone), cut into UTC days.
const SQL_USAGE_DAYS_NAIVE: &str = "SELECT company_id, is_core, min(occurred_at), \
     max(occurred_at), count(*) FROM usage_events WHERE occurred_at >= $1 \
     GROUP BY company_id, is_core, date_trunc('day', occurred_at AT TIME ZONE $3), \
     occurred_at >= $2 ORDER BY company_id";

/// An event's time and core flag in one word: microseconds since the epoch shifted
/// left by one, the flag in the lowest bit (±146,000 years still fit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(transparent)]
pub struct EventStamp(i64);

impl EventStamp {
    pub fn new(micros: i64, is_core: bool) -> Self {
        Self((micros << 1) | i64::from(is_core))
    }
    pub fn micros(self) -> i64 {
        self.0 >> 1
    }
    pub fn is_core(self) -> bool {
        self.0 & 1 == 1
    }
}

/// The usage events, 8 bytes each (tens of millions are held): runs of consecutive
/// events of one company — event tables are usually grouped by company, so a run is
/// usually all of a company's events — and each event's [`EventStamp`].
#[derive(Debug, Clone, Default)]
pub struct UsageEvents {
    /// (company, end of the run in `stamps`); the company is a number of the loader's
    /// id interner until the loader points it at a company row
    /// (`u32::MAX`: an unknown company, whose events are skipped).
    runs: Vec<(u32, usize)>,
    stamps: Vec<EventStamp>,
    /// Rows of `usage_events` read, those skipped (no company, no time) included.
    pub rows_read: u64,
    /// Events whose `company_id` is NULL or matches no company (a product's own
    /// account id, say): counted in data quality, never silently dropped.
    pub unmatched: u64,
    /// Events of companies outside the mapping's scope: another edition's, left
    /// out and counted apart from the unmatched.
    pub outside_scope: u64,
}

impl UsageEvents {
    fn with_capacity(n: usize) -> Self {
        Self {
            runs: Vec::new(),
            stamps: Vec::with_capacity(n),
            rows_read: 0,
            unmatched: 0,
            outside_scope: 0,
        }
    }

    fn push(&mut self, company: u32, stamp: EventStamp) {
        self.stamps.push(stamp);
        match self.runs.last_mut() {
            Some((c, end)) if *c == company => *end = self.stamps.len(),
            _ => self.runs.push((company, self.stamps.len())),
        }
    }

    /// Each run of a known company: the company row and its events' stamps.
    pub fn runs(&self) -> impl Iterator<Item = (u32, &[EventStamp])> {
        let mut start = 0;
        self.runs
            .iter()
            .map(move |&(c, end)| (c, &self.stamps[std::mem::replace(&mut start, end)..end]))
            .filter(|&(c, _)| c != u32::MAX)
    }
}

/// Whether the server's day summaries cut the rows that cross the network: at
/// least two events per company and day of the window on average, by the server's
/// statistics. Where companies have about one event a day (the demo), grouping costs
/// the server more than it saves, and the events come one row each — then there are
/// fewer than two per company-day, so the transfer still grows with companies × days.
/// Without statistics, summaries (memory stays bounded either way).
fn summaries_pay(db: &Database, from: DateTime<Utc>, to: DateTime<Utc>) -> bool {
    let Some((rows, companies)) = db.column_stats(USAGE_EVENTS, "company_id") else {
        return true;
    };
    let days = ((to - from).num_days() + 1).max(1) as f64;
    rows >= 2.0 * companies.max(1.0) * days
}

/// What [`load_usage_events`] read: the events, their company ids (numbered), how
/// many events each id has from the window's start on (rows of a server's day
/// summaries stand for many), and the times that could not be read.
pub(super) struct LoadedEvents {
    pub(super) events: UsageEvents,
    ids: Interner,
    counts: Vec<u64>,
    pub(super) bad: BadTimestamps,
}

/// The usage events from the span's start on (no earlier event can count:
/// conversions follow closes of conversations created in a window, retention
/// periods lie inside it), each with its company id as a number in the returned
/// interner (the company rows may still be loading), and their own unparseable-time
/// counts. Rows read and unmatched events are counted from the window's start on,
/// as a load of the window alone counts them. Where the server can, it sends one
/// row per company, core flag and day instead of every event
/// (`SQL_USAGE_DAYS_ZONED`).
pub(super) fn load_usage_events(
    db: &Database,
    source_tz: Tz,
    span: LoadSpan,
) -> Result<LoadedEvents, DataError> {
    let (from, to) = (span.span.start, span.span.end);
    let window_start = span.window.start;
    let mut bad = BadTimestamps::default();
    let mut ts = TsParser {
        tz: source_tz,
        bad: &mut bad,
    };
    let mut ids = Interner::default();
    let kind = db.time_column(USAGE_EVENTS, "occurred_at")?;
    let by_day = kind != TimeColumn::Text && summaries_pay(db, from, to);
    let mut events = UsageEvents::with_capacity(if by_day {
        0
    } else {
        db.rows_hint(USAGE_EVENTS)
    });
    let (sql, params) = match kind {
        TimeColumn::Text => (SQL_USAGE_EVENTS, vec![]),
        _ if !by_day => (
            SQL_USAGE_EVENTS_FROM,
            vec![Param::time(from, kind, source_tz)],
        ),
        TimeColumn::Zoned => (
            SQL_USAGE_DAYS_ZONED,
            vec![
                Param::time(from, kind, source_tz),
                Param::time(window_start, kind, source_tz),
            ],
        ),
        TimeColumn::Naive => (
            SQL_USAGE_DAYS_NAIVE,
            vec![
                Param::time(from, kind, source_tz),
                Param::time(window_start, kind, source_tz),
                Param::Text(source_tz.name().to_owned()),
            ],
        ),
    };
    // Event tables are usually grouped by company: a run of the same id is looked
    // up once.
    let mut last: Option<(String, u32)> = None;
    let mut rows_read = 0u64;
    let mut counts: Vec<u64> = Vec::new();
    db.each_row_with(USAGE_EVENTS, sql, &params, |r| {
        let company = r.cow_text(0, "company_id")?.map(|id| match &last {
            Some((l, n)) if *l == *id => *n,
            _ => {
                let n = ids.intern(&id);
                last = Some((id.into_owned(), n));
                n
            }
        });
        let is_core = r.boolean(1, "is_core")?.unwrap_or(false);
        let (first, latest, count) = if by_day {
            let first = r.time(2, "occurred_at", &mut ts)?;
            let latest = r.time(3, "occurred_at", &mut ts)?;
            (first, latest, r.integer(4, "count(*)")?.unwrap_or(0) as u64)
        } else {
            let t = r.time(2, "occurred_at", &mut ts)?;
            (t, None, 1)
        };
        // A window's load reads every row of text times, and from the window start
        // on where the server compares them (a value it passes that reads as no
        // time, `infinity`, included).
        let windowed = kind == TimeColumn::Text || first.is_none_or(|t| t >= window_start);
        if windowed {
            rows_read += count;
        }
        // Events before the span (the server already left them out).
        let Some(first) = first.filter(|t| *t >= from) else {
            return Ok(());
        };
        let windowed = first >= window_start;
        let Some(company) = company else {
            if windowed {
                events.unmatched += count;
            }
            return Ok(());
        };
        events.push(company, EventStamp::new(first.timestamp_micros(), is_core));
        if let Some(latest) = latest.filter(|l| *l != first) {
            events.push(company, EventStamp::new(latest.timestamp_micros(), is_core));
        }
        let c = company as usize;
        if counts.len() <= c {
            counts.resize(c + 1, 0);
        }
        if windowed {
            counts[c] += count;
        }
        Ok(())
    })?;
    events.rows_read = rows_read;
    Ok(LoadedEvents {
        events,
        ids,
        counts,
        bad,
    })
}

/// Events that match no company at all, told apart from a few strays: the reason
/// conversion and retention are empty (never 0 %), with what the report prints of
/// it: the events in the window, some of their own company ids, the company column
/// they were matched against (the mapping's `usage_company_key`) and some of its
/// values.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NoneMatched {
    pub events: u64,
    pub event_ids: Vec<String>,
    pub company_key: String,
    pub company_keys: Vec<String>,
}

/// Numbers the events' companies as company rows (the first row of an id); the
/// events of unknown companies are counted and skipped from then on. When there are
/// events and not one of them is a company's, the keying is wrong (the events carry
/// the product's own account id and no `usage_company_key` says which column holds
/// it): the events are attached all the same and the caller gets the reason.
pub(super) fn attach_events(
    companies: &[CompanyRow],
    outside_keys: &std::collections::HashSet<String>,
    company_key: &str,
    loaded: &mut LoadedEvents,
) -> Option<NoneMatched> {
    let LoadedEvents {
        events,
        ids,
        counts,
        ..
    } = loaded;
    // Event company number → company row, by looking each company's id up among
    // the events' ids (no second table of ids).
    let mut rows = vec![u32::MAX; ids.len()];
    for (i, c) in companies.iter().enumerate() {
        // The mapping's key column when it names one, else Intercom's company id.
        let key = c.mapped.usage_key.as_deref().unwrap_or(&c.company_id);
        if let Some(n) = ids.lookup(key) {
            let row = &mut rows[n as usize];
            if *row == u32::MAX {
                *row = i as u32;
            }
        }
    }
    // An id of a company outside the scope is another edition's, not unmatched.
    let outside: Vec<bool> = if outside_keys.is_empty() {
        Vec::new()
    } else {
        ids.iter()
            .map(|(_, id)| outside_keys.contains(id))
            .collect()
    };
    let (mut unmatched, mut outside_scope) = (0u64, 0u64);
    for (n, (row, count)) in rows.iter().zip(counts.iter()).enumerate() {
        if *row != u32::MAX {
            continue;
        }
        if outside.get(n).copied().unwrap_or(false) {
            outside_scope += count;
        } else {
            unmatched += count;
        }
    }
    events.unmatched += unmatched;
    events.outside_scope += outside_scope;
    for (company, _) in &mut events.runs {
        *company = rows[*company as usize];
    }
    let total: u64 = counts.iter().sum::<u64>() - outside_scope;
    (total > 0 && unmatched == total && !companies.is_empty()).then(|| NoneMatched {
        events: total,
        event_ids: ids.iter().take(3).map(|(_, id)| id.to_owned()).collect(),
        company_key: company_key.to_owned(),
        company_keys: companies
            .iter()
            .take(3)
            .map(|c| {
                c.mapped
                    .usage_key
                    .clone()
                    .unwrap_or_else(|| c.company_id.clone())
            })
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_events_keep_time_flag_and_company_runs() {
        for (micros, core) in [(0, false), (1, true), (-1, true), (-86_400_000_001, false)] {
            let s = EventStamp::new(micros, core);
            assert_eq!((s.micros(), s.is_core()), (micros, core));
        }
        // Companies in any order: a run per change of company; unknown companies skipped.
        let mut e = UsageEvents::default();
        for (c, t) in [(0, 10), (0, 11), (1, 12), (0, 13), (u32::MAX, 14), (2, 15)] {
            e.push(c, EventStamp::new(t, t % 2 == 0));
        }
        let runs: Vec<(u32, Vec<i64>)> = e
            .runs()
            .map(|(c, s)| (c, s.iter().map(|s| s.micros()).collect()))
            .collect();
        assert_eq!(
            runs,
            [
                (0, vec![10, 11]),
                (1, vec![12]),
                (0, vec![13]),
                (2, vec![15])
            ]
        );
        let first = e.runs().next().expect("a run");
        assert_eq!(
            first.1.iter().map(|s| s.is_core()).collect::<Vec<_>>(),
            [true, false]
        );
    }
}
