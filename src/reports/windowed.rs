//! The skeleton every windowed report runs (conversation-usage, tag-drivers): its
//! plan (the window cut at the reference time, the parameters it records), then one
//! load over every window the run computes (the window, the comparison's sides, the
//! trend's months: each table read once), the window's metrics, the same metrics on
//! the comparison window set against this one's, or the reason there are none, and
//! the report's point of each trend month, all from those rows. A report implements
//! [`WindowedReport`]: only its own load, metrics, comparison and per-month point;
//! [`compute`] does the rest and returns [`Windowed`]: this window's numbers with the
//! comparison and the trend beside them.
//!
//! Over 600 lines: half of the file is its tests, a fourth windowed report run
//! through the whole skeleton (its loads, comparison, trend and empty windows).

use std::ops::Deref;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::comparison::{self, Comparison, EmptyReason};
use super::trend::{months, Month, MONTHS};
use super::{MetricsError, Plan, ReportError, Request};
use crate::intercom::window::{Compare, Window, WindowSpec};
use crate::source::{Database, RowsRead};

/// What a windowed report computes itself; the order of the work is [`compute`]'s.
pub trait WindowedReport {
    /// The rows loaded over one span of time.
    type Data: Send + 'static;
    /// The report's numbers on one window.
    type Metrics;
    /// What its trend draws, chosen from this window's numbers (tag-drivers: the
    /// topics leaning most to each group).
    type Lens;
    /// The report's values of one trend month.
    type Point;
    /// The trend as the report's summary and charts carry it.
    type Trend;

    /// The rows of `span`, which covers `window` and every other window the run
    /// computes (the comparison's sides, the trend's months). Rows read and the
    /// data-quality counts are `window`'s, as a load of it alone counts them.
    fn load(&self, span: Window, window: Window) -> Result<Self::Data, ReportError>;
    /// Rows read per table of the window (the appendix and the manifest print them).
    fn rows_read(&self, data: &Self::Data) -> RowsRead;
    /// The numbers of `window` from rows loaded over (at least) it.
    fn metrics(&self, data: &Self::Data, window: Window) -> Result<Self::Metrics, MetricsError>;
    /// `current` set against `previous` (the same metrics on the comparison window).
    fn compare(
        &self,
        current: &Self::Metrics,
        previous: &Self::Metrics,
        basis: Compare,
    ) -> Comparison;
    /// What the trend draws; none when this window has nothing to draw (no trend).
    fn lens(&self, current: &Self::Metrics) -> Option<Self::Lens>;
    /// One month's values from the metrics of that month.
    fn point(&self, lens: &Self::Lens, month: &Self::Metrics) -> Self::Point;
    /// A month without numbers (its reason is the month's `empty_reason`).
    fn empty_point(&self, lens: &Self::Lens) -> Self::Point;
    /// The trend from its months.
    fn trend(&self, lens: Self::Lens, months: Vec<Month<Self::Point>>) -> Self::Trend;
}

/// A windowed report's numbers: this window's metrics, and beside them what the
/// skeleton made of the history (dereferences to this window's metrics).
pub struct Windowed<M, T> {
    pub current: M,
    /// The metrics of the comparison window, when they could be computed.
    pub previous: Option<M>,
    /// What changed since the comparison period; none with `compare = none`, empty
    /// (with its reason) when the comparison window has no numbers.
    pub comparison: Option<Comparison>,
    pub trend: Option<T>,
    /// Rows read per table by the window's load.
    pub rows_read: RowsRead,
    /// The part of the window the data covers, when that is only part of it (the
    /// window starts before the first conversation or ends after the last): the
    /// scope prints it beside the window, labelled partial.
    pub partial: Option<Window>,
    /// The data's dates ([`Span::data`]): the method names the window's anchor, the
    /// latest conversation.
    pub data: Option<Window>,
    /// A scoped edition's headline metrics against the whole company (none without a
    /// scope): the report sets it from [`window_metrics`] on the other sides.
    pub benchmark: Option<super::benchmark::Benchmark>,
}

impl<M, T> Windowed<M, T> {
    /// The scope's window row: the period, and the dates the data covers of a
    /// partial window (`scope.window_partial` in the language's words).
    pub fn window_row(&self, period: String, s: &crate::render::format::Strings) -> String {
        match self.partial {
            Some(c) => format!(
                "{period} ({} {})",
                s.get("scope.window_partial"),
                c.period().replace('_', " – ")
            ),
            None => period,
        }
    }
}

impl<M, T> Deref for Windowed<M, T> {
    type Target = M;
    fn deref(&self) -> &M {
        &self.current
    }
}

impl<M, T: serde::Serialize> Windowed<M, T> {
    /// summary.json: this window's numbers (`current`, already a JSON object), then
    /// `comparison` when there is one and `trend` when there is one, last.
    pub fn summary_with(&self, mut current: Value) -> Value {
        if let Some(c) = &self.comparison {
            current["comparison"] = serde_json::json!(c);
        }
        if let Some(t) = &self.trend {
            current["trend"] = serde_json::json!(t);
        }
        if let Some(b) = &self.benchmark {
            current["benchmark"] = serde_json::json!(b);
        }
        current
    }
}

/// The time a report's numbers span: its window, how the window option was written
/// (a comparison window is cut the same way) and the comparison asked for.
#[derive(Debug, Clone, Copy)]
pub struct Span<'a> {
    pub window: Window,
    pub spec: &'a WindowSpec,
    pub compare: Compare,
    /// The data's dates ([`Plan::coverage`]): what each side and month can cover.
    pub data: Option<Window>,
}

/// Runs `report` over `span`: one load over every window its numbers are computed
/// on — the window, the comparison sides and the trend months ([`load_span`]) —
/// (`load` in `timings`), the window's metrics (`metrics`), then the comparison and
/// the trend from the same rows (`history`). With `compare = none` and no trend
/// month before the window inside the data, that load is the window's alone (from
/// the start of its first month: a trend month is computed whole). The
/// loaded rows are freed on another thread: millions of rows take a while to free,
/// and nothing waits for them.
pub fn compute<R: WindowedReport>(
    report: &R,
    span: Span<'_>,
    timings: &mut Vec<(&'static str, Duration)>,
) -> Result<Windowed<R::Metrics, R::Trend>, ReportError> {
    let window = span.window;
    let before = window.comparison(span.spec, span.compare);
    let cover = before.map(|b| (b, coverage(span, b)));
    let t = Instant::now();
    let loaded = report.load(load_span(span, cover.as_ref()), window)?;
    timings.push(("load", t.elapsed()));
    let rows_read = report.rows_read(&loaded);
    let t = Instant::now();
    let current = match report.metrics(&loaded, window) {
        Ok(m) => m,
        Err(e) => {
            std::thread::spawn(move || drop(loaded));
            return Err(e.into());
        }
    };
    timings.push(("metrics", t.elapsed()));
    // The comparison window and the trend's months from the same rows: each is the
    // same metrics on its own window, so its numbers are what a run on that window
    // prints.
    let t = Instant::now();
    let (previous, comparison) = match cover {
        None => (None, None),
        Some((b, cov)) => compared(report, &current, &loaded, b, cov, span),
    };
    let trend = report.lens(&current).map(|lens| {
        let points = months(
            &window,
            span.data,
            || report.empty_point(&lens),
            |w| Ok(report.point(&lens, &report.metrics(&loaded, w)?)),
        );
        report.trend(lens, points)
    });
    timings.push(("history", t.elapsed()));
    std::thread::spawn(move || drop(loaded));
    Ok(Windowed {
        current,
        previous,
        comparison,
        trend,
        rows_read,
        partial: comparison::clip(window, span.data).and_then(|(c, p)| p.then_some(c)),
        data: span.data,
        benchmark: None,
    })
}

/// `report`'s metrics of the window alone, from a load over the same span as
/// [`compute`]'s (so a database that keeps its reads serves them from memory): the
/// other sides of a scoped edition's benchmark.
pub fn window_metrics<R: WindowedReport>(
    report: &R,
    span: Span<'_>,
) -> Result<R::Metrics, ReportError> {
    let window = span.window;
    let before = window.comparison(span.spec, span.compare);
    let cover = before.map(|b| (b, coverage(span, b)));
    let loaded = report.load(load_span(span, cover.as_ref()), window)?;
    let metrics = report.metrics(&loaded, window);
    std::thread::spawn(move || drop(loaded));
    Ok(metrics?)
}

/// The two sides of the comparison with `before` as [`comparison::coverage`] cuts
/// them (the parts that entered and left where the windows overlap, each cut to the
/// data), or why there is nothing to compare.
fn coverage(span: Span<'_>, before: Window) -> Result<comparison::Coverage, EmptyReason> {
    let months = match (span.spec, span.compare) {
        (WindowSpec::Rolling { months } | WindowSpec::Calendar { months }, Compare::Shift(n)) => {
            Some((*months, n))
        }
        _ => None,
    };
    comparison::coverage(span.window, before, months, span.data)
}

/// The one span a run loads: the window, the comparison's sides when there are any
/// to compute, and the trend's months that [`months`] computes (those before the
/// window and the data are left out, so with the data starting inside the window
/// and no comparison the span is the window from the start of its first month).
fn load_span(
    span: Span<'_>,
    cover: Option<&(Window, Result<comparison::Coverage, EmptyReason>)>,
) -> Window {
    let window = span.window;
    let mut start = window.start;
    if let Some((_, Ok(cov))) = cover {
        start = start.min(cov.previous.start).min(cov.current.start);
    }
    if let Some((_, w)) = window
        .months_up_to_end(MONTHS)
        .into_iter()
        .find(|(_, w)| w.overlaps(&window) || comparison::clip(*w, span.data).is_some())
    {
        start = start.min(w.start);
    }
    Window {
        start,
        end: window.end,
    }
}

/// The comparison with `before` on its sides `cov`: the same metrics on each, set
/// against each other; empty, with the reason, when the side compared against lies
/// outside the data or has no numbers.
fn compared<R: WindowedReport>(
    report: &R,
    current: &R::Metrics,
    loaded: &R::Data,
    before: Window,
    cov: Result<comparison::Coverage, EmptyReason>,
    span: Span<'_>,
) -> (Option<R::Metrics>, Option<Comparison>) {
    let window = span.window;
    let empty = |why| {
        Some(comparison::empty(
            span.compare.to_string(),
            Some(before),
            before.period(),
            why,
        ))
    };
    let cov = match cov {
        Ok(c) => c,
        Err(why) => return (None, empty(why)),
    };
    let now = if cov.current == window {
        None
    } else {
        match report.metrics(loaded, cov.current) {
            Ok(m) => Some(m),
            Err(e) => return (None, empty(empty_reason(&e))),
        }
    };
    let previous = match report.metrics(loaded, cov.previous) {
        Ok(p) => p,
        Err(e) => return (None, empty(empty_reason(&e))),
    };
    let mut c = report.compare(now.as_ref().unwrap_or(current), &previous, span.compare);
    comparison::cover(&mut c, cov);
    (Some(previous), Some(c))
}

/// A windowed report's plan: the window over the conversations at `reference`, the
/// parameters as the appendix prints them (`window`, the report's own, `compare`,
/// `source_timezone`) and the same for the manifest, typed.
pub fn plan(
    db: &Database,
    req: &Request<'_>,
    reference: DateTime<Utc>,
    compare: Compare,
    own: Parameters,
) -> Result<Plan, ReportError> {
    let (window, after, coverage) = super::conversation_window(db, req, reference)?;
    let mut parameters = vec![("window".to_owned(), req.window.to_string())];
    parameters.extend(own.printed);
    parameters.push(("compare".into(), compare.to_string()));
    parameters.push(("source_timezone".into(), req.source_tz.name().to_owned()));
    let mut manifest = serde_json::Map::new();
    manifest.insert("window".into(), Value::from(req.window.to_string()));
    manifest.extend(own.manifest);
    manifest.insert("compare".into(), serde_json::json!(compare));
    manifest.insert("source_timezone".into(), Value::from(req.source_tz.name()));
    let mut plan = Plan {
        period: window.period(),
        window: Some(window),
        coverage,
        parameters,
        manifest_parameters: manifest,
    };
    plan.note_after_reference(
        "intercom__conversation_enhanced.conversation_created_at",
        reference,
        after,
    );
    Ok(plan)
}

/// A report's own parameters of a plan, in its options' order.
#[derive(Debug, Default)]
pub struct Parameters {
    /// As the appendix prints them.
    pub printed: Vec<(String, String)>,
    /// As `manifest.json` carries them, typed.
    pub manifest: Vec<(String, Value)>,
}

/// Why the comparison window has no numbers, from its metrics' error: an empty
/// window is told apart from every other failure.
fn empty_reason(e: &MetricsError) -> EmptyReason {
    match e {
        MetricsError::EmptyWindow { .. } | MetricsError::WindowOutsideData { .. } => {
            EmptyReason::NoConversations(e.to_string())
        }
        _ => EmptyReason::NoMetrics(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reports::comparison::{decide, Change, Unit};
    use crate::source::timestamp::parse;
    use chrono_tz::Tz;
    use std::cell::RefCell;

    /// A fourth windowed report, all of it: its rows are tickets (a day each, a
    /// weight), its metric their total weight, its point that total per month.
    struct Tickets {
        rows: Vec<(DateTime<Utc>, f64)>,
        /// Every span loaded, to check the skeleton loads once.
        loads: RefCell<Vec<Window>>,
    }

    /// The tickets of a span, and how many of them lie in the window.
    struct Loaded {
        rows: Vec<(DateTime<Utc>, f64)>,
        in_window: u64,
    }

    struct Total {
        window: Window,
        weight: f64,
    }

    impl WindowedReport for Tickets {
        type Data = Loaded;
        type Metrics = Total;
        type Lens = &'static str;
        type Point = Option<f64>;
        type Trend = (&'static str, Vec<Month<Option<f64>>>);

        fn load(&self, span: Window, window: Window) -> Result<Self::Data, ReportError> {
            self.loads.borrow_mut().push(span);
            let inside = |w: Window, at: DateTime<Utc>| at >= w.start && at <= w.end;
            let rows: Vec<_> = self
                .rows
                .iter()
                .copied()
                .filter(|(at, _)| inside(span, *at))
                .collect();
            let in_window = rows.iter().filter(|(at, _)| inside(window, *at)).count();
            Ok(Loaded {
                rows,
                in_window: in_window as u64,
            })
        }

        fn rows_read(&self, data: &Self::Data) -> RowsRead {
            vec![("tickets", data.in_window)]
        }

        fn metrics(&self, data: &Self::Data, window: Window) -> Result<Total, MetricsError> {
            let inside: Vec<f64> = data
                .rows
                .iter()
                .filter(|(at, _)| *at >= window.start && *at <= window.end)
                .map(|(_, w)| *w)
                .collect();
            if inside.is_empty() {
                return Err(MetricsError::empty_window(&window));
            }
            Ok(Total {
                window,
                weight: inside.iter().sum(),
            })
        }

        fn compare(&self, current: &Total, previous: &Total, basis: Compare) -> Comparison {
            let mut changes = vec![Change::new(
                "weight",
                "overall",
                Unit::Count,
                Some(current.weight),
                Some(previous.weight),
            )];
            decide(&mut changes);
            Comparison::of_window(basis, previous.window, changes)
        }

        fn lens(&self, _current: &Total) -> Option<&'static str> {
            Some("weight")
        }

        fn point(&self, _lens: &&'static str, month: &Total) -> Option<f64> {
            Some(month.weight)
        }

        fn empty_point(&self, _lens: &&'static str) -> Option<f64> {
            None
        }

        fn trend(&self, lens: &'static str, months: Vec<Month<Option<f64>>>) -> Self::Trend {
            (lens, months)
        }
    }

    fn at(s: &str) -> DateTime<Utc> {
        parse(s, Tz::UTC).unwrap()
    }

    fn window(a: &str, b: &str) -> Window {
        Window {
            start: at(a),
            end: at(b),
        }
    }

    /// Tickets on the 10th of every month from 2023-09 to 2024-06 but 2024-02, of
    /// weight 1, 2, 3, … in month order.
    fn tickets() -> Tickets {
        let months = [
            "2023-09", "2023-10", "2023-11", "2023-12", "2024-01", "2024-03", "2024-04", "2024-05",
            "2024-06",
        ];
        Tickets {
            rows: months
                .iter()
                .enumerate()
                .map(|(i, m)| (at(&format!("{m}-10 12:00:00")), (i + 1) as f64))
                .collect(),
            loads: RefCell::new(Vec::new()),
        }
    }

    #[test]
    fn a_fourth_windowed_report_gets_its_loads_comparison_and_trend_from_the_skeleton() {
        let report = tickets();
        let spec: WindowSpec = "calendar:3m".parse().unwrap();
        let w = window("2024-04-01 00:00:00", "2024-06-30 23:59:59");
        let mut timings = Vec::new();
        let span = Span {
            window: w,
            spec: &spec,
            compare: Compare::Previous,
            data: None,
        };
        let out = compute(&report, span, &mut timings).unwrap();
        // Loaded once, over the trend's twelve months (the data's dates unknown),
        // which hold the comparison window too.
        let loads = report.loads.borrow();
        assert_eq!(loads.len(), 1);
        assert_eq!(loads[0].start, at("2023-07-01 00:00:00"));
        assert_eq!(loads[0].end, w.end);
        let stages: Vec<&str> = timings.iter().map(|(s, _)| *s).collect();
        assert_eq!(stages, ["load", "metrics", "history"]);
        // This window: April–June, weights 7 + 8 + 9; rows read are the window's.
        assert_eq!(out.weight, 24.0);
        assert_eq!(out.rows_read, [("tickets", 3)]);
        // The previous three months (January–March): weights 5 and 6.
        let c = out.comparison.as_ref().unwrap();
        assert_eq!(c.empty_reason, None);
        assert_eq!(c.period, "2024-01-01_2024-03-31");
        assert_eq!(c.changes[0].change, Some(24.0 - 11.0));
        assert_eq!(out.previous.as_ref().unwrap().weight, 11.0);
        // The trend: from the data's first month (before it: left out) to June, the
        // month without tickets kept in its place, empty, with its reason.
        let (lens, months) = out.trend.as_ref().unwrap();
        assert_eq!(*lens, "weight");
        let labels: Vec<&str> = months.iter().map(|m| m.month.as_str()).collect();
        assert_eq!(
            labels,
            [
                "2023-09", "2023-10", "2023-11", "2023-12", "2024-01", "2024-02", "2024-03",
                "2024-04", "2024-05", "2024-06"
            ]
        );
        assert_eq!(months[0].values, Some(1.0));
        assert_eq!(months[5].values, None);
        assert!(months[5]
            .empty_reason
            .as_deref()
            .unwrap()
            .starts_with("no conversations"));
        assert_eq!(months[9].values, Some(9.0));
        assert!(months[9].in_window && !months[4].in_window);
    }

    #[test]
    fn an_empty_comparison_window_says_why_and_none_asks_for_none() {
        let report = tickets();
        let spec: WindowSpec = "calendar:1m".parse().unwrap();
        // March's previous month, February, has no tickets.
        let span = Span {
            window: window("2024-03-01 00:00:00", "2024-03-31 23:59:59"),
            spec: &spec,
            compare: Compare::Previous,
            data: None,
        };
        let out = compute(&report, span, &mut Vec::new()).unwrap();
        let c = out.comparison.as_ref().unwrap();
        assert_eq!(c.period, "2024-02-01_2024-02-29");
        assert!(c.changes.is_empty() && out.previous.is_none());
        let why = c.empty_reason.as_ref().unwrap();
        assert!(matches!(why, EmptyReason::NoConversations(_)), "{why:?}");
        assert!(why
            .to_string()
            .starts_with("no conversations in window 2024-02-01"));
        let none = compute(
            &report,
            Span {
                compare: Compare::None,
                ..span
            },
            &mut Vec::new(),
        )
        .unwrap();
        assert!(none.comparison.is_none() && none.previous.is_none());
        assert!(none.trend.is_some());
    }

    #[test]
    fn compare_none_over_data_that_starts_in_the_window_loads_the_window_alone() {
        let report = tickets();
        let spec: WindowSpec = "calendar:3m".parse().unwrap();
        let w = window("2024-04-01 00:00:00", "2024-06-30 23:59:59");
        // The data's first ticket inside the window: no trend month before it.
        let span = Span {
            window: w,
            spec: &spec,
            compare: Compare::None,
            data: Some(window("2024-04-10 12:00:00", "2024-06-10 12:00:00")),
        };
        let out = compute(&report, span, &mut Vec::new()).unwrap();
        assert_eq!(*report.loads.borrow(), [w]);
        assert_eq!(out.rows_read, [("tickets", 3)]);
        let (_, months) = out.trend.as_ref().unwrap();
        assert_eq!(months.len(), 3);
        // A comparison widens the one load to its side; nothing is loaded twice.
        let shifted = compute(
            &report,
            Span {
                compare: Compare::Shift(1),
                data: Some(window("2023-09-10 12:00:00", "2024-06-10 12:00:00")),
                ..span
            },
            &mut Vec::new(),
        )
        .unwrap();
        let loads = report.loads.borrow();
        assert_eq!(loads.len(), 2);
        // The trend from the data's first month (September), before it nothing.
        assert_eq!(loads[1].start, at("2023-09-01 00:00:00"));
        assert_eq!(shifted.rows_read, [("tickets", 3)]);
        // The windows overlap: what left (March) is compared with what entered.
        assert_eq!(shifted.comparison.unwrap().period, "2024-03-01_2024-03-31");
    }

    #[test]
    fn an_empty_window_fails_the_run_after_its_one_load() {
        let report = tickets();
        let spec: WindowSpec = "calendar:1m".parse().unwrap();
        let span = Span {
            window: window("2024-02-01 00:00:00", "2024-02-29 23:59:59"),
            spec: &spec,
            compare: Compare::Previous,
            data: None,
        };
        let e = compute(&report, span, &mut Vec::new()).err().unwrap();
        assert!(matches!(
            e,
            ReportError::Metrics(MetricsError::EmptyWindow { .. })
        ));
        assert_eq!(report.loads.borrow().len(), 1);
    }

    #[test]
    fn the_plan_is_the_window_at_the_reference_time_with_the_parameters_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite");
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(
            "CREATE TABLE intercom__conversation_enhanced (conversation_created_at TEXT);
             INSERT INTO intercom__conversation_enhanced VALUES
               ('2024-01-20 09:00:00'), ('2024-06-15 12:00:00'), ('2024-07-02 08:00:00');",
        )
        .unwrap();
        drop(conn);
        let db = Database::open(&path.into()).unwrap();
        let mapping = Default::default();
        let req = Request {
            window: "rolling:6m".parse().unwrap(),
            source_tz: chrono_tz::Tz::UTC,
            tz: chrono_tz::Tz::UTC,
            mapping: &mapping,
        };
        let own = Parameters {
            printed: vec![("size".into(), "7".into())],
            manifest: vec![("size".into(), Value::from(7))],
        };
        // The reference time is before the last conversation: the window ends at the
        // latest one not after it, and the one after it is noted.
        let reference = at("2024-06-30 00:00:00");
        let plan = plan(&db, &req, reference, Compare::Shift(12), own).unwrap();
        assert_eq!(plan.period, "2023-12-15_2024-06-15");
        assert_eq!(
            plan.window,
            Some(window("2023-12-15 00:00:00", "2024-06-15 23:59:59"))
        );
        let printed: Vec<(&str, &str)> = plan
            .parameters
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            printed[..4],
            [
                ("window", "rolling:6m"),
                ("size", "7"),
                ("compare", "shift:12m"),
                ("source_timezone", "UTC"),
            ]
        );
        assert!(printed[4]
            .1
            .starts_with("1 (intercom__conversation_enhanced"));
        let keys: Vec<&str> = plan
            .manifest_parameters
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            keys,
            [
                "window",
                "size",
                "compare",
                "source_timezone",
                "timestamps_after_reference"
            ]
        );
        assert_eq!(plan.manifest_parameters["size"], 7);
    }
}
