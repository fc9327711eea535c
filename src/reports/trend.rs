//! What every report's trend shares: the last twelve calendar months up to the
//! window's end, each computed by the report on that month alone (the last one cut
//! at the window's end), so a point is what a run on that month prints. Months
//! before the window and before the data's first conversation are left out; every
//! month of the window is shown, one without data as no data; a month the window's
//! end or the data's dates cut short is partial (its covered dates kept). The chart
//! shades the window's months and is titled by the months it shows.

use serde::Serialize;

use super::MetricsError;
use crate::intercom::window::Window;
use crate::render::charts::{trend_spec, ChartSpec, MonthPanel};

/// How many months a trend covers at most.
pub const MONTHS: u32 = 12;

/// One month of a trend: where it lies against the report's window, and the
/// report's own values (`T`, flattened into the month's record).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Month<T> {
    /// `YYYY-MM`.
    pub month: String,
    pub window: Window,
    /// Whether the month overlaps the report's window.
    pub in_window: bool,
    /// Whether the month is cut short by the window's end or the data's dates.
    pub partial: bool,
    /// The part of the month the data covers; none when it covers none of it.
    pub covered: Option<Window>,
    #[serde(flatten)]
    pub values: T,
    /// Why the month has no numbers.
    pub empty_reason: Option<String>,
}

/// The months of `window`'s trend: `compute` on each month, `empty` for a month it
/// cannot compute.
pub fn months<T>(
    window: &Window,
    data: Option<Window>,
    empty: impl Fn() -> T,
    mut compute: impl FnMut(Window) -> Result<T, MetricsError>,
) -> Vec<Month<T>> {
    let mut out = Vec::new();
    for (month, w) in window.months_up_to_end(MONTHS) {
        let in_window = w.overlaps(window);
        let covered = super::comparison::clip(w, data);
        // Months before the window and before the data are not part of what it
        // covers; the window's own months are all shown.
        if covered.is_none() && !in_window && out.is_empty() {
            continue;
        }
        let (values, empty_reason) = match compute(w) {
            Ok(v) => (v, None),
            Err(MetricsError::EmptyWindow { .. }) if out.is_empty() && !in_window => continue,
            Err(e) => (empty(), Some(e.to_string())),
        };
        out.push(Month {
            month,
            window: w,
            in_window,
            partial: w.cut_short_by(window) || covered.is_some_and(|(_, p)| p),
            covered: covered.map(|(c, _)| c),
            values,
            empty_reason,
        });
    }
    out
}

/// The trend chart (id `trend`) of `months` with the report's panels, its title
/// the language's `title` of the months shown (`2023-12 – 2024-06`), and
/// `window_label`.
pub(crate) fn chart<T>(
    title: &dyn Fn(&str) -> String,
    window_label: String,
    months: &[Month<T>],
    panels: Vec<MonthPanel>,
) -> Option<ChartSpec> {
    let labels: Vec<(String, bool)> = months
        .iter()
        .map(|m| (m.month.clone(), m.in_window))
        .collect();
    let (first, last) = (months.first()?, months.last()?);
    let day = |t: chrono::DateTime<chrono::Utc>| t.format("%Y-%m-%d").to_string();
    let mut spec = trend_spec(
        title(&format!("{} – {}", first.month, last.month)),
        window_label,
        &labels,
        last.partial
            .then(|| day(last.covered.map_or(last.window.end, |c| c.end))),
        panels,
    )?;
    if let Some(t) = spec.takeaway.as_mut() {
        // Months the data covers only in part (its first month) and months with no
        // data: the takeaway names them; their moves are no rise or fall.
        let partial: Vec<serde_json::Value> = months
            .iter()
            .filter(|m| m.partial && m.covered.is_some_and(|c| c.start > m.window.start))
            .map(|m| serde_json::json!({ "month": m.month, "from": m.covered.map(|c| day(c.start)) }))
            .collect();
        let empty: Vec<&str> = months
            .iter()
            .filter(|m| m.in_window && m.empty_reason.is_some())
            .map(|m| m.month.as_str())
            .collect();
        t["slices"]["partial_from"] = serde_json::json!(partial);
        t["slices"]["no_data"] = serde_json::json!(empty);
    }
    Some(spec)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::timestamp::parse;
    use chrono_tz::Tz;

    fn w(a: &str, b: &str) -> Window {
        Window {
            start: parse(a, Tz::UTC).unwrap(),
            end: parse(b, Tz::UTC).unwrap(),
        }
    }

    #[test]
    fn the_span_reaches_back_to_the_earliest_month_or_comparison() {
        let window = w("2024-04-01 00:00:00", "2024-06-15 23:59:59");
        let s = window.history_span(MONTHS, None);
        assert_eq!(s.start, parse("2023-07-01 00:00:00", Tz::UTC).unwrap());
        assert_eq!(s.end, window.end);
        let long = w("2021-01-01 00:00:00", "2021-12-31 23:59:59");
        let s = window.history_span(MONTHS, Some(&long));
        assert_eq!(s.start, long.start);
        // Every month computed (nothing before the data here): all twelve, in order.
        let months = months(&window, None, || (), |_| Ok(()));
        assert_eq!(months.len(), 12);
        assert_eq!(months[0].month, "2023-07");
        assert_eq!(months[11].month, "2024-06");
        assert_eq!(months[11].window.end, window.end);
        assert_eq!(
            months[10].window,
            w("2024-05-01 00:00:00", "2024-05-31 23:59:59")
        );
        assert!(months[11].partial && months[11].in_window);
        assert!(!months[10].partial && months[10].in_window);
        assert!(!months[8].in_window);
    }

    #[test]
    fn months_before_the_data_are_left_out_and_later_gaps_keep_their_place() {
        let window = w("2024-04-01 00:00:00", "2024-06-15 23:59:59");
        let empty = |w: &Window| MetricsError::empty_window(w);
        let got = months(
            &window,
            None,
            || None,
            |m| match m.start.format("%Y-%m").to_string().as_str() {
                "2024-03" | "2024-05" | "2024-06" => Ok(Some(1)),
                _ => Err(empty(&m)),
            },
        );
        let labels: Vec<&str> = got.iter().map(|m| m.month.as_str()).collect();
        assert_eq!(labels, ["2024-03", "2024-04", "2024-05", "2024-06"]);
        assert_eq!(got[1].values, None);
        assert!(got[1]
            .empty_reason
            .as_deref()
            .unwrap()
            .starts_with("no conversations"));
    }
}
