//! The company-wide benchmark of a scoped edition (issue 32, "Benchmark"): the
//! edition's headline metrics set against the whole company over the same window,
//! each computed by the report's own metrics on the same rows (the run keeps the
//! rows it read: `source::Database::keep_reads`), and tested with the claims rules
//! against the rest of the company (rates: two-proportion test with their counts;
//! means: Welch's test; the false discovery rate controlled over the table). An
//! unscoped run has none. What it prints: one sentence on page 1, the table "This
//! edition vs company-wide" in the full report, `benchmark` in summary.json and
//! `benchmark.csv`.

use serde::Serialize;
use serde_json::{json, Value};

use super::comparison::{decide, show, signed_change, Change, Direction, Unit};
use super::CsvFile;
use crate::intercom::scope::{Scope, ScopeSide};
use crate::render::templates::Language;
use crate::stats::claims::{welch_p, Moments, Proportion};

/// One side's value of a metric and what it rests on: a rate's count (k of n) or a
/// mean's sample.
#[derive(Debug, Clone, Copy, Default)]
pub struct Side {
    pub value: Option<f64>,
    pub rate: Option<Proportion>,
    pub moments: Option<Moments>,
}

/// A headline metric as a report reads it off its metrics.
pub struct Metric<M> {
    /// The metric's name (`change.metric_<name>` in the strings).
    pub name: &'static str,
    pub unit: Unit,
    pub side: fn(&M) -> Side,
}

/// One metric of the benchmark.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Row {
    pub metric: &'static str,
    pub unit: Unit,
    /// This edition's value, and what it rests on (k of n; n alone for a mean).
    pub edition: Option<f64>,
    pub edition_k: Option<f64>,
    pub edition_n: f64,
    /// The whole company's (an unscoped run's value).
    pub company: Option<f64>,
    pub company_k: Option<f64>,
    pub company_n: f64,
    /// The rest of the company's: what the edition is tested against.
    pub rest: Option<f64>,
    pub rest_k: Option<f64>,
    pub rest_n: f64,
    /// Edition − company-wide, in percentage points for rates.
    pub difference: Option<f64>,
    /// The test of the edition against the rest of the company.
    pub p: Option<f64>,
    /// `rise`: the edition above the rest of the company, where that holds.
    pub direction: Direction,
}

/// A scoped edition's headline metrics against the whole company.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Benchmark {
    /// The edition's scope (`region = cn`).
    pub edition: String,
    /// Its values, as the cover names them (`cn`).
    pub values: Vec<String>,
    pub rows: Vec<Row>,
    /// Why the rest of the company has no numbers (nothing is then tested).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rest_empty: Option<String>,
}

/// The mapping of `scope`'s other side: every company, or the rest of the company.
pub fn side_mapping(
    mapping: &crate::intercom::mapping::Mapping,
    side: ScopeSide,
) -> crate::intercom::mapping::Mapping {
    let mut m = mapping.clone();
    m.scope_side = side;
    m
}

/// The benchmark of the edition of `scope` from its metrics, the whole company's
/// and the rest of the company's (or why the rest has none).
pub fn benchmark<M>(
    scope: &Scope,
    metrics: &[Metric<M>],
    edition: &M,
    company: &M,
    rest: Result<&M, String>,
) -> Benchmark {
    let mut tests: Vec<Change> = Vec::new();
    let mut rows: Vec<Row> = metrics
        .iter()
        .map(|m| {
            let (e, c) = ((m.side)(edition), (m.side)(company));
            let r = rest.as_ref().map(|r| (m.side)(r)).unwrap_or_default();
            let mut t = Change::new(m.name, "overall", m.unit, e.value, r.value);
            if m.unit == Unit::Rate {
                t = t.with_counts(e.value.and(e.rate), r.value.and(r.rate));
            } else if let (Some(x), Some(y)) = (e.moments, r.moments) {
                if x.n >= 2.0 && y.n >= 2.0 {
                    t.p = Some(welch_p(x, y));
                    t.direction = Direction::NoClearChange;
                }
            }
            tests.push(t);
            let kn = |s: &Side| match (s.rate, s.moments) {
                (Some(p), _) => (Some(p.k), p.n),
                (None, Some(x)) => (None, x.n),
                _ => (None, 0.0),
            };
            let ((ek, en), (ck, cn), (rk, rn)) = (kn(&e), kn(&c), kn(&r));
            Row {
                metric: m.name,
                unit: m.unit,
                edition: e.value,
                edition_k: ek,
                edition_n: en,
                company: c.value,
                company_k: ck,
                company_n: cn,
                rest: r.value,
                rest_k: rk,
                rest_n: rn,
                difference: Change::new(m.name, "overall", m.unit, e.value, c.value).change,
                p: None,
                direction: Direction::NotComparable,
            }
        })
        .collect();
    decide(&mut tests);
    for (row, t) in rows.iter_mut().zip(&tests) {
        row.p = t.p;
        row.direction = t.direction;
    }
    Benchmark {
        edition: scope.describe(),
        values: scope.values.clone(),
        rows,
        rest_empty: rest.err(),
    }
}

/// `benchmark.csv`: one row per metric, the three sides and the test.
pub fn csv(b: &Benchmark) -> CsvFile {
    let cell = super::cell;
    let n = |v: f64| super::cell(Some(v));
    CsvFile {
        name: "benchmark.csv",
        header: vec![
            "metric",
            "unit",
            "edition",
            "edition_k",
            "edition_n",
            "company_wide",
            "company_wide_k",
            "company_wide_n",
            "rest_of_company",
            "rest_of_company_k",
            "rest_of_company_n",
            "difference",
            "p_vs_rest",
            "reading",
        ],
        rows: b
            .rows
            .iter()
            .map(|r| {
                vec![
                    r.metric.to_owned(),
                    r.unit.name().to_owned(),
                    cell(r.edition),
                    cell(r.edition_k),
                    n(r.edition_n),
                    cell(r.company),
                    cell(r.company_k),
                    n(r.company_n),
                    cell(r.rest),
                    cell(r.rest_k),
                    n(r.rest_n),
                    cell(r.difference),
                    cell(r.p),
                    reading(r.direction).to_owned(),
                ]
            })
            .collect(),
    }
}

/// A row's reading: the key of `benchmark.reading_<key>`.
fn reading(d: Direction) -> &'static str {
    match d {
        Direction::Rise => "above",
        Direction::Fall => "below",
        Direction::NoClearChange => "no_clear_difference",
        Direction::NotTested => "not_tested",
        Direction::NotComparable => "not_comparable",
    }
}

/// The benchmark in `data.json`: page 1's sentence (the first metric both sides
/// have) and the full report's table, in the edition's language.
pub fn layout(b: &Benchmark, lang: &Language) -> Value {
    let s = &lang.strings;
    let f = &lang.format;
    let or = s.get("document.edition_or");
    let edition = b.values.join(&or);
    let count = |k: Option<f64>, n: f64| match k {
        Some(k) => lang.fill(
            "benchmark.k_of_n",
            &json!({ "k": f.count(k.round()), "n": f.count(n) }),
        ),
        None => lang.fill("benchmark.n", &json!({ "n": f.count(n) })),
    };
    let metric = |r: &Row| s.get(&format!("change.metric_{}", r.metric));
    let sentence = b
        .rows
        .iter()
        .find(|r| r.edition.is_some() && r.company.is_some())
        .map(|r| {
            let verdict = match r.direction {
                Direction::Rise | Direction::Fall => "benchmark.holds",
                Direction::NoClearChange => "benchmark.does_not_hold",
                _ => "benchmark.untested",
            };
            let said = lang.fill(
                "benchmark.sentence",
                &json!({
                    "edition": edition,
                    "metric": metric(r),
                    "value": show(f, r.unit, r.edition),
                    "company": show(f, r.unit, r.company),
                    "here": count(r.edition_k, r.edition_n),
                    "company_counts": count(r.company_k, r.company_n),
                }),
            );
            format!("{said}{}", s.get(verdict))
        });
    let rows: Vec<Vec<String>> = b
        .rows
        .iter()
        .map(|r| {
            let with = |v: Option<f64>, k: Option<f64>, n: f64| match v {
                Some(_) => format!("{} ({})", show(f, r.unit, v), count(k, n)),
                None => show(f, r.unit, v),
            };
            vec![
                metric(r),
                with(r.edition, r.edition_k, r.edition_n),
                with(r.company, r.company_k, r.company_n),
                match (r.edition, r.company) {
                    (Some(e), Some(c)) => signed_change(f, r.unit, e, c),
                    _ => "—".to_owned(),
                },
                with(r.rest, r.rest_k, r.rest_n),
                s.get(&format!("benchmark.reading_{}", reading(r.direction))),
            ]
        })
        .collect();
    json!({
        "sentence": sentence,
        "title": s.get("benchmark.title"),
        "intro": match &b.rest_empty {
            Some(why) => format!("{} {}", s.get("benchmark.intro"), lang.fill("benchmark.rest_empty", &json!({ "why": why }))),
            None => s.get("benchmark.intro"),
        },
        "header": [
            s.get("change.metric"),
            s.get("benchmark.edition"),
            s.get("benchmark.company"),
            s.get("benchmark.difference"),
            s.get("benchmark.rest"),
            s.get("change.reading"),
        ],
        "rows": rows,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::intercom::scope::Scope;

    struct M {
        rate: (usize, usize),
        mean: (f64, f64, f64),
    }

    const METRICS: [Metric<M>; 2] = [
        Metric {
            name: "weekly_retention",
            unit: Unit::Rate,
            side: |m| Side {
                value: Proportion::new(m.rate.0, m.rate.1).map(|p| p.k / p.n),
                rate: Proportion::new(m.rate.0, m.rate.1),
                moments: None,
            },
        },
        Metric {
            name: "avg_resp",
            unit: Unit::Minutes,
            side: |m| Side {
                value: Some(m.mean.1),
                rate: None,
                moments: Some(Moments {
                    n: m.mean.0,
                    mean: m.mean.1,
                    var: m.mean.2,
                }),
            },
        },
    ];

    #[test]
    fn an_edition_is_tested_against_the_rest_and_printed_against_the_company() {
        let scope = Scope::parse("region=cn", false).unwrap();
        let edition = M {
            rate: (55, 100),
            mean: (400.0, 30.0, 100.0),
        };
        let company = M {
            rate: (755, 1100),
            mean: (4400.0, 30.2, 100.0),
        };
        let rest = M {
            rate: (700, 1000),
            mean: (4000.0, 30.22, 100.0),
        };
        let b = benchmark(&scope, &METRICS, &edition, &company, Ok(&rest));
        assert_eq!(b.edition, "region = cn");
        let r = &b.rows[0];
        assert_eq!((r.edition_k, r.edition_n), (Some(55.0), 100.0));
        assert_eq!((r.company_k, r.company_n), (Some(755.0), 1100.0));
        assert_eq!((r.rest_k, r.rest_n), (Some(700.0), 1000.0));
        let d = r.difference.unwrap();
        assert!((d - (55.0 - 75_500.0 / 1100.0)).abs() < 1e-9, "{d}");
        // 55 % of 100 against 70 % of 1,000: p ≈ 0.002, which holds in its family of
        // two (the means do not differ).
        assert!(r.p.unwrap() < 0.01, "{:?}", r.p);
        assert_eq!(r.direction, Direction::Fall);
        assert_eq!(b.rows[1].direction, Direction::NoClearChange);
        assert_eq!(b.rows[1].edition_k, None);
        assert_eq!(b.rows[1].edition_n, 400.0);
        let csv = csv(&b);
        assert_eq!(csv.rows[0][13], "below");
        assert_eq!(csv.rows[1][13], "no_clear_difference");
    }

    #[test]
    fn without_the_rest_of_the_company_nothing_is_tested_and_the_reason_is_kept() {
        let scope = Scope::parse("region=cn", false).unwrap();
        let m = M {
            rate: (1, 2),
            mean: (3.0, 1.0, 1.0),
        };
        let b = benchmark(&scope, &METRICS, &m, &m, Err("no company outside".into()));
        assert!(b
            .rows
            .iter()
            .all(|r| r.p.is_none() && matches!(r.direction, Direction::NotComparable)));
        assert_eq!(b.rest_empty.as_deref(), Some("no company outside"));
        assert_eq!(b.rows[0].difference, Some(0.0));
    }
}
