//! The narrative of a report: findings and recommendations computed from the run's
//! numbers as language-neutral records (id, the numbers they cite, the slices they
//! name, the finding a recommendation follows from), and the per-language template
//! sets that turn records into sentences (Tera), plus each language's layout strings
//! and number formatting.
//!
//! Templates ship embedded (`templates/`) and can be overridden, file by file, from a
//! user directory; a language is a folder, so adding one needs no code change.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;

use serde::Serialize;
use serde_json::{json, Value};

use crate::metrics::{ConversationUsage, SliceRow};

/// Templates compiled into the binary, by path under `templates/`.
macro_rules! embed {
    ($($path:literal),* $(,)?) => {
        &[$(($path, include_str!(concat!("../templates/", $path)))),*]
    };
}
const EMBEDDED: &[(&str, &str)] = embed![
    "conversation-usage/report.typ",
    "conversation-usage/en/strings.toml",
    "conversation-usage/en/findings.tera",
    "conversation-usage/en/recommendations.tera",
    "conversation-usage/en/takeaways.tera",
    "conversation-usage/en/email_subject.tera",
    "conversation-usage/en/email.txt.tera",
    "conversation-usage/en/email.html",
    "conversation-usage/zh/strings.toml",
    "conversation-usage/zh/findings.tera",
    "conversation-usage/zh/recommendations.tera",
    "conversation-usage/zh/takeaways.tera",
    "conversation-usage/zh/email_subject.tera",
    "conversation-usage/zh/email.txt.tera",
    "conversation-usage/zh/email.html",
    "owner_alert.tera",
];

/// The template files of one language of a report.
const LANGUAGE_FILES: [&str; 7] = [
    "strings.toml",
    "findings.tera",
    "recommendations.tera",
    "takeaways.tera",
    "email_subject.tera",
    "email.txt.tera",
    // Autoescaped by Tera (the name ends in .html).
    "email.html",
];

#[derive(Debug, thiserror::Error)]
pub enum NarrativeError {
    #[error("no templates for language `{lang}` of report `{report}` (available: {available})")]
    UnknownLanguage {
        report: String,
        lang: String,
        available: String,
    },
    #[error("template {path} is missing")]
    Missing { path: String },
    #[error("reading template {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("template {path}: {message}")]
    Template { path: String, message: String },
    #[error("strings file {path}: {message}")]
    Strings { path: String, message: String },
}

/// Where templates come from: an optional user directory over the embedded set.
#[derive(Debug, Clone, Default)]
pub struct Templates {
    pub override_dir: Option<PathBuf>,
}

impl Templates {
    pub fn new(override_dir: Option<PathBuf>) -> Self {
        Self { override_dir }
    }

    /// A template's text and the name to show in messages (its path).
    pub fn get(&self, rel: &str) -> Result<(Cow<'static, str>, String), NarrativeError> {
        if let Some(dir) = &self.override_dir {
            let p = dir.join(rel);
            if p.is_file() {
                let text = std::fs::read_to_string(&p).map_err(|source| NarrativeError::Read {
                    path: p.clone(),
                    source,
                })?;
                return Ok((Cow::Owned(text), p.display().to_string()));
            }
        }
        EMBEDDED
            .iter()
            .find(|(path, _)| *path == rel)
            .map(|(path, text)| (Cow::Borrowed(*text), format!("templates/{path} (built in)")))
            .ok_or_else(|| NarrativeError::Missing {
                path: rel.to_owned(),
            })
    }

    /// Languages with a strings file for `report`, built in or in the user directory.
    pub fn languages(&self, report: &str) -> BTreeSet<String> {
        let mut out: BTreeSet<String> = EMBEDDED
            .iter()
            .filter_map(|(p, _)| {
                p.strip_prefix(report)?
                    .strip_prefix('/')?
                    .strip_suffix("/strings.toml")
            })
            .map(str::to_owned)
            .collect();
        if let Some(dir) = &self.override_dir {
            if let Ok(entries) = std::fs::read_dir(dir.join(report)) {
                for e in entries.flatten() {
                    if e.path().join("strings.toml").is_file() {
                        out.insert(e.file_name().to_string_lossy().into_owned());
                    }
                }
            }
        }
        out
    }

    /// Loads one language of a report: its strings and its Tera templates.
    pub fn language(&self, report: &str, lang: &str) -> Result<Language, NarrativeError> {
        let available = self.languages(report);
        if !available.contains(lang) {
            return Err(NarrativeError::UnknownLanguage {
                report: report.to_owned(),
                lang: lang.to_owned(),
                available: available.into_iter().collect::<Vec<_>>().join(", "),
            });
        }
        let (text, path) = self.get(&format!("{report}/{lang}/strings.toml"))?;
        let strings: toml::Table = toml::from_str(&text).map_err(|e| NarrativeError::Strings {
            path: path.clone(),
            message: e.to_string(),
        })?;
        let strings = Strings {
            table: strings,
            path,
        };
        let format = NumberFormat::from_strings(&strings)?;
        let mut tera = tera::Tera::default();
        for file in &LANGUAGE_FILES[1..] {
            let (text, path) = self.get(&format!("{report}/{lang}/{file}"))?;
            tera.add_raw_template(file, &text)
                .map_err(|e| NarrativeError::Template {
                    path,
                    message: tera_message(&e),
                })?;
        }
        register_filters(&mut tera, &format, &strings);
        Ok(Language {
            code: lang.to_owned(),
            strings,
            format,
            tera,
        })
    }
}

fn tera_message(e: &tera::Error) -> String {
    let mut msg = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        src = s.source();
    }
    msg
}

/// A language's layout strings (`strings.toml`), looked up by dotted key.
#[derive(Debug, Clone)]
pub struct Strings {
    table: toml::Table,
    path: String,
}

impl Strings {
    fn lookup(&self, key: &str) -> Option<&toml::Value> {
        let mut parts = key.split('.');
        let mut v = self.table.get(parts.next()?)?;
        for p in parts {
            v = v.get(p)?;
        }
        Some(v)
    }

    /// The string at `key`; a missing key shows as the key itself, so a gap in a
    /// translation is visible rather than fatal.
    pub fn get(&self, key: &str) -> String {
        match self.lookup(key) {
            Some(toml::Value::String(s)) => s.clone(),
            _ => {
                tracing::warn!(path = %self.path, key, "missing string");
                key.to_owned()
            }
        }
    }

    /// A slice label, e.g. `label("segment", "churn_watch")`.
    pub fn label(&self, dimension: &str, value: &str) -> String {
        self.get(&format!("labels.{dimension}.{value}"))
    }

    /// The whole table as JSON, for the Typst layout.
    pub fn to_json(&self) -> Value {
        serde_json::to_value(&self.table).unwrap_or(Value::Null)
    }

    pub fn list(&self, key: &str) -> Vec<String> {
        match self.lookup(key) {
            Some(toml::Value::Array(a)) => a
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect(),
            _ => Vec::new(),
        }
    }
}

/// Number formatting rules of a language (`[format]` in strings.toml).
#[derive(Debug, Clone)]
pub struct NumberFormat {
    pub decimal: String,
    pub thousands: String,
    pub percent_suffix: String,
    pub minutes_suffix: String,
    pub pp_suffix: String,
}

impl NumberFormat {
    fn from_strings(s: &Strings) -> Result<Self, NarrativeError> {
        let get = |k: &str| -> Result<String, NarrativeError> {
            match s.lookup(&format!("format.{k}")) {
                Some(toml::Value::String(v)) => Ok(v.clone()),
                _ => Err(NarrativeError::Strings {
                    path: s.path.clone(),
                    message: format!("missing string `format.{k}`"),
                }),
            }
        };
        Ok(Self {
            decimal: get("decimal")?,
            thousands: get("thousands")?,
            percent_suffix: get("percent_suffix")?,
            minutes_suffix: get("minutes_suffix")?,
            pp_suffix: get("pp_suffix")?,
        })
    }

    /// `v` with `decimals` digits, grouped thousands.
    pub fn number(&self, v: f64, decimals: usize) -> String {
        let s = format!("{:.*}", decimals, v.abs());
        let (int, frac) = s
            .split_once('.')
            .map_or((s.as_str(), None), |(i, f)| (i, Some(f)));
        let mut grouped = String::new();
        for (i, ch) in int.chars().enumerate() {
            if i > 0 && (int.len() - i) % 3 == 0 {
                grouped.push_str(&self.thousands);
            }
            grouped.push(ch);
        }
        let sign = if v < 0.0 && s.chars().any(|c| c.is_ascii_digit() && c != '0') {
            "-"
        } else {
            ""
        };
        match frac {
            Some(f) => format!("{sign}{grouped}{}{f}", self.decimal),
            None => format!("{sign}{grouped}"),
        }
    }

    /// A fraction as a percentage with one decimal.
    pub fn percent(&self, v: f64) -> String {
        format!("{}{}", self.number(v * 100.0, 1), self.percent_suffix)
    }

    pub fn minutes(&self, v: f64) -> String {
        format!("{}{}", self.number(v, 1), self.minutes_suffix)
    }

    /// A difference of two fractions in percentage points.
    pub fn points(&self, v: f64) -> String {
        format!("{}{}", self.number(v * 100.0, 1), self.pp_suffix)
    }

    pub fn count(&self, v: f64) -> String {
        self.number(v, 0)
    }

    /// An optional value, or an em dash.
    pub fn opt(&self, v: Option<f64>, f: impl Fn(&Self, f64) -> String) -> String {
        v.map_or_else(|| "—".to_owned(), |v| f(self, v))
    }
}

fn register_filters(tera: &mut tera::Tera, fmt: &NumberFormat, strings: &Strings) {
    fn num_filter(
        fmt: &NumberFormat,
        f: fn(&NumberFormat, f64) -> String,
    ) -> impl tera::Filter + 'static {
        let fmt = fmt.clone();
        move |v: &tera::Value, _: &HashMap<String, tera::Value>| -> tera::Result<tera::Value> {
            match v.as_f64() {
                Some(x) => Ok(tera::Value::String(f(&fmt, x))),
                None if v.is_null() => Ok(tera::Value::String("—".into())),
                None => Err(tera::Error::msg(format!("expected a number, got {v}"))),
            }
        }
    }
    tera.register_filter("pct", num_filter(fmt, NumberFormat::percent));
    tera.register_filter("mins", num_filter(fmt, NumberFormat::minutes));
    tera.register_filter("pp", num_filter(fmt, NumberFormat::points));
    tera.register_filter("num", num_filter(fmt, NumberFormat::count));
    tera.register_filter("dec2", num_filter(fmt, |f, v| f.number(v, 2)));
    let s = strings.clone();
    // `{{ slice | slice }}`: a slice record as its localized label.
    tera.register_filter(
        "slice",
        move |v: &tera::Value, _: &HashMap<String, tera::Value>| {
            Ok(tera::Value::String(slice_label(&s, v)))
        },
    );
    let s = strings.clone();
    // `{{ "strength.weak" | t }}`: any string of strings.toml.
    tera.register_filter(
        "t",
        move |v: &tera::Value, _: &HashMap<String, tera::Value>| {
            let key = v
                .as_str()
                .ok_or_else(|| tera::Error::msg("`t` takes a string key"))?;
            Ok(tera::Value::String(s.get(key)))
        },
    );
}

/// "Churn watch · 420+ seats · ≥$200k ARR" from `{segment, seat_bucket, arr_bucket}`.
pub fn slice_label(s: &Strings, v: &Value) -> String {
    let parts: Vec<String> = ["segment", "seat_bucket", "arr_bucket"]
        .iter()
        .filter_map(|d| v.get(*d).and_then(Value::as_str).map(|x| s.label(d, x)))
        .collect();
    if parts.is_empty() {
        s.get("labels.overall")
    } else {
        parts.join(&s.get("labels.separator"))
    }
}

/// A loaded language.
pub struct Language {
    pub code: String,
    pub strings: Strings,
    pub format: NumberFormat,
    tera: tera::Tera,
}

impl Language {
    /// Renders `template` with `value` bound as `name`; whitespace is collapsed so
    /// template line breaks do not leak into sentences.
    pub fn render(
        &self,
        template: &str,
        name: &str,
        value: &Value,
    ) -> Result<String, NarrativeError> {
        let mut ctx = tera::Context::new();
        ctx.insert(name, value);
        let text = self
            .tera
            .render(template, &ctx)
            .map_err(|e| NarrativeError::Template {
                path: format!("{}/{template}", self.code),
                message: tera_message(&e),
            })?;
        Ok(join_lines(
            &text,
            self.strings.get("document.line_join").as_str(),
        ))
    }
}

impl Language {
    /// Renders `template` as written (emails keep their line breaks).
    pub fn render_raw(
        &self,
        template: &str,
        name: &str,
        value: &Value,
    ) -> Result<String, NarrativeError> {
        let mut ctx = tera::Context::new();
        ctx.insert(name, value);
        self.tera
            .render(template, &ctx)
            .map_err(|e| NarrativeError::Template {
                path: format!("{}/{template}", self.code),
                message: tera_message(&e),
            })
    }
}

/// Renders the built-in owner alert (language-neutral, plain text).
pub fn owner_alert(templates: &Templates, value: &Value) -> Result<String, NarrativeError> {
    let (text, path) = templates.get("owner_alert.tera")?;
    let mut ctx = tera::Context::new();
    ctx.insert("a", value);
    tera::Tera::one_off(&text, &ctx, false).map_err(|e| NarrativeError::Template {
        path,
        message: tera_message(&e),
    })
}

/// Collapses each whitespace run that contains a line break (template layout) into
/// `joiner`; spaces inside a line are the template's own and stay.
fn join_lines(text: &str, joiner: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut run = String::new();
    for ch in text.trim().chars() {
        if ch.is_whitespace() {
            run.push(ch);
            continue;
        }
        if !run.is_empty() {
            out.push_str(if run.contains('\n') { joiner } else { &run });
            run.clear();
        }
        out.push(ch);
    }
    out
}

// ---------------------------------------------------------------------------
// Records

/// A finding: what the data shows, with the numbers and slices it cites.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Finding {
    pub id: &'static str,
    /// Order on the cover: lower first.
    pub rank: u8,
    pub numbers: BTreeMap<&'static str, f64>,
    pub slices: BTreeMap<&'static str, Value>,
    /// Qualitative keys the templates translate (e.g. correlation strength).
    pub keys: BTreeMap<&'static str, &'static str>,
}

/// A recommendation, always following from one finding, with a target from the data.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Recommendation {
    pub id: &'static str,
    pub follows: &'static str,
    pub numbers: BTreeMap<&'static str, f64>,
    pub slices: BTreeMap<&'static str, Value>,
}

fn slice_of(r: &SliceRow) -> Value {
    let mut m = serde_json::Map::new();
    for (k, v) in [
        ("segment", r.segment),
        ("seat_bucket", r.seat_bucket),
        ("arr_bucket", r.arr_bucket),
    ] {
        if let Some(v) = v {
            m.insert(k.into(), json!(v));
        }
    }
    Value::Object(m)
}

fn eligible(rows: &[SliceRow], min_cell: usize) -> impl Iterator<Item = &SliceRow> {
    rows.iter().filter(move |r| r.companies_total >= min_cell)
}

/// The row with the largest (`max`) or smallest value of `f`; the first on ties.
pub fn extreme<'a>(
    rows: impl Iterator<Item = &'a SliceRow>,
    f: impl Fn(&SliceRow) -> Option<f64>,
    max: bool,
) -> Option<(&'a SliceRow, f64)> {
    rows.filter_map(|r| f(r).map(|v| (r, v)))
        .fold(None, |acc, (r, v)| match acc {
            Some((_, a)) if (max && a >= v) || (!max && a <= v) => acc,
            _ => Some((r, v)),
        })
}

fn max_by<'a>(
    rows: impl Iterator<Item = &'a SliceRow>,
    f: impl Fn(&SliceRow) -> Option<f64>,
) -> Option<(&'a SliceRow, f64)> {
    extreme(rows, f, true)
}

fn min_by<'a>(
    rows: impl Iterator<Item = &'a SliceRow>,
    f: impl Fn(&SliceRow) -> Option<f64>,
) -> Option<(&'a SliceRow, f64)> {
    extreme(rows, f, false)
}

/// Words for |r|: the templates translate them.
pub fn strength(r: f64) -> &'static str {
    match r.abs() {
        a if a < 0.1 => "none",
        a if a < 0.3 => "weak",
        a if a < 0.5 => "moderate",
        _ => "strong",
    }
}

/// Below this spread of average response across cells, the SLA reads as uniform.
const UNIFORM_SLA_SPREAD_MINUTES: f64 = 1.0;
/// A gradient smaller than this (in retention points) is not worth a finding.
const MIN_RETENTION_GRADIENT: f64 = 0.01;

/// Findings of §6 whose condition holds in this data, in cover order.
pub fn findings(r: &ConversationUsage) -> Vec<Finding> {
    let mut out = Vec::new();
    let cells = &r.panels.segment_seat_arr;
    let min_cell = r.min_cell;
    let overall = &r.panels.overall;
    let f = |id, rank| Finding {
        id,
        rank,
        numbers: BTreeMap::new(),
        slices: BTreeMap::new(),
        keys: BTreeMap::new(),
    };

    // Best and worst conversion cells.
    let best = max_by(eligible(cells, min_cell), |c| c.conv_to_feature_rate);
    let worst = min_by(eligible(cells, min_cell), |c| c.conv_to_feature_rate);
    if let (Some((b, bv)), Some((w, wv))) = (best, worst) {
        if bv > wv {
            let mut x = f("conversion_best_worst", 1);
            x.numbers.insert("best_rate", bv);
            x.numbers
                .insert("best_companies", b.companies_with_closed_conv as f64);
            x.numbers.insert("worst_rate", wv);
            x.numbers
                .insert("worst_companies", w.companies_with_closed_conv as f64);
            x.numbers.insert(
                "cells",
                eligible(cells, min_cell)
                    .filter(|c| c.conv_to_feature_rate.is_some())
                    .count() as f64,
            );
            x.numbers.insert("min_cell", min_cell as f64);
            if let Some(o) = overall.conv_to_feature_rate {
                x.numbers.insert("overall_rate", o);
            }
            x.slices.insert("best", slice_of(b));
            x.slices.insert("worst", slice_of(w));
            out.push(x);
        }
    }

    // Segment conversion ranking.
    let segs = &r.panels.segment;
    if let (Some((b, bv)), Some((w, wv))) = (
        max_by(segs.iter().filter(|s| s.segment != Some("unknown")), |s| {
            s.conv_to_feature_rate
        }),
        min_by(segs.iter().filter(|s| s.segment != Some("unknown")), |s| {
            s.conv_to_feature_rate
        }),
    ) {
        if bv > wv {
            let mut x = f("segment_conversion", 2);
            x.numbers.insert("best_rate", bv);
            x.numbers.insert("worst_rate", wv);
            x.numbers.insert("gap", bv - wv);
            x.slices.insert("best", slice_of(b));
            x.slices.insert("worst", slice_of(w));
            out.push(x);
        }
    }

    // Response delay spread across cells.
    let fast = min_by(eligible(cells, min_cell), |c| c.avg_resp);
    let slow = max_by(eligible(cells, min_cell), |c| c.avg_resp);
    if let (Some((fc, fv)), Some((sc, sv))) = (fast, slow) {
        let spread = sv - fv;
        let mut x = f(
            if spread < UNIFORM_SLA_SPREAD_MINUTES {
                "response_uniform"
            } else {
                "response_spread"
            },
            3,
        );
        x.numbers.insert("fastest", fv);
        x.numbers.insert("slowest", sv);
        x.numbers.insert("spread", spread);
        if let (Some(p50), Some(p90)) = (overall.p50_resp, overall.p90_resp) {
            x.numbers.insert("p50", p50);
            x.numbers.insert("p90", p90);
        }
        x.slices.insert("fastest", slice_of(fc));
        x.slices.insert("slowest", slice_of(sc));
        out.push(x);
    }

    // Bot-first share range and its correlations.
    let lo = min_by(eligible(cells, min_cell), |c| c.bot_first_resp_share);
    let hi = max_by(eligible(cells, min_cell), |c| c.bot_first_resp_share);
    if let (Some((lc, lv)), Some((hc, hv)), Some(rv)) =
        (lo, hi, r.correlations.bot_share_vs_conversion.r)
    {
        let mut x = f("bot_share", 4);
        x.numbers.insert("min", lv);
        x.numbers.insert("max", hv);
        if let Some(o) = overall.bot_first_resp_share {
            x.numbers.insert("overall", o);
        }
        x.numbers.insert("r_conversion", rv);
        x.numbers
            .insert("n", r.correlations.bot_share_vs_conversion.n as f64);
        if let Some(rw) = r.correlations.bot_share_vs_weekly_retention.r {
            x.numbers.insert("r_weekly", rw);
        }
        x.keys.insert("strength", strength(rv));
        x.keys
            .insert("direction", if rv < 0.0 { "negative" } else { "positive" });
        x.slices.insert("min", slice_of(lc));
        x.slices.insert("max", slice_of(hc));
        out.push(x);
    }

    // Retention gradient across seat buckets.
    let seats: Vec<&SliceRow> = r
        .panels
        .seat_bucket
        .iter()
        .filter(|s| s.seat_bucket != Some("unknown") && s.weekly_retention.is_some())
        .collect();
    if let (Some(small), Some(large)) = (seats.first(), seats.last()) {
        let (sw, lw) = (
            small.weekly_retention.unwrap_or(0.0),
            large.weekly_retention.unwrap_or(0.0),
        );
        if seats.len() >= 2 && (sw - lw).abs() >= MIN_RETENTION_GRADIENT {
            let mut x = f("retention_gradient", 5);
            x.numbers.insert("small_weekly", sw);
            x.numbers.insert("large_weekly", lw);
            x.numbers.insert("weekly_gap", sw - lw);
            if let (Some(sm), Some(lm)) = (small.monthly_retention, large.monthly_retention) {
                x.numbers.insert("small_monthly", sm);
                x.numbers.insert("large_monthly", lm);
            }
            x.keys
                .insert("direction", if sw > lw { "falls" } else { "rises" });
            x.slices.insert("small", slice_of(small));
            x.slices.insert("large", slice_of(large));
            out.push(x);
        }
    }

    // High-value churn-watch accounts against the whole panel.
    let high_value: Vec<&SliceRow> = r
        .panels
        .segment_arr
        .iter()
        .filter(|s| {
            s.segment == Some("churn_watch")
                && matches!(s.arr_bucket, Some("110k_200k") | Some("200k_plus"))
        })
        .filter(|s| s.companies_total >= min_cell)
        .collect();
    if let Some(worst) = min_by(high_value.iter().copied(), |s| s.weekly_retention) {
        let (row, weekly) = worst;
        if let (Some(ow), Some(oc), Some(conv)) = (
            overall.weekly_retention,
            overall.conv_to_feature_rate,
            row.conv_to_feature_rate,
        ) {
            if weekly < ow || conv < oc {
                let mut x = f("high_value_churn_watch", 6);
                x.numbers.insert("weekly", weekly);
                x.numbers.insert("overall_weekly", ow);
                x.numbers.insert("conversion", conv);
                x.numbers.insert("overall_conversion", oc);
                x.numbers.insert("companies", row.companies_total as f64);
                if let (Some(m), Some(om)) = (row.monthly_retention, overall.monthly_retention) {
                    x.numbers.insert("monthly", m);
                    x.numbers.insert("overall_monthly", om);
                }
                x.slices.insert("cell", slice_of(row));
                out.push(x);
            }
        }
    }

    // Tertiles: conversion of the highest vs the lowest bot-share third.
    let mean_of = |group: &str| {
        let v: Vec<f64> = r
            .tertiles
            .iter()
            .filter(|t| t.by == "bot_share" && t.group == group)
            .filter_map(|t| t.conversion)
            .collect();
        (!v.is_empty()).then(|| (v.iter().sum::<f64>() / v.len() as f64, v.len()))
    };
    if let (Some((high, n)), Some((low, _))) = (mean_of("high"), mean_of("low")) {
        let mut x = f("bot_tertiles", 7);
        x.numbers.insert("high", high);
        x.numbers.insert("low", low);
        x.numbers.insert("groups", n as f64);
        x.keys.insert(
            "direction",
            if high < low {
                "lower"
            } else if high > low {
                "higher"
            } else {
                "same"
            },
        );
        out.push(x);
    }
    out.sort_by_key(|x| x.rank);
    out
}

/// Recommendations, each following from a finding that holds, with a data target.
pub fn recommendations(r: &ConversationUsage, findings: &[Finding]) -> Vec<Recommendation> {
    let mut out = Vec::new();
    let by_id = |id: &str| findings.iter().find(|f| f.id == id);
    let cells = &r.panels.segment_seat_arr;
    let rec = |id, follows| Recommendation {
        id,
        follows,
        numbers: BTreeMap::new(),
        slices: BTreeMap::new(),
    };

    if let Some(f) = by_id("conversion_best_worst") {
        // Target: the best cell of the same segment as the worst one, else the best overall.
        let worst_seg = f.slices["worst"].get("segment").and_then(Value::as_str);
        let target = max_by(
            eligible(cells, r.min_cell).filter(|c| c.segment == worst_seg),
            |c| c.conv_to_feature_rate,
        )
        .filter(|(_, v)| *v > f.numbers["worst_rate"])
        .map(|(c, v)| (slice_of(c), v))
        .unwrap_or_else(|| (f.slices["best"].clone(), f.numbers["best_rate"]));
        let mut x = rec("lift_worst_conversion", f.id);
        x.numbers.insert("current", f.numbers["worst_rate"]);
        x.numbers.insert("target", target.1);
        x.slices.insert("cell", f.slices["worst"].clone());
        x.slices.insert("benchmark", target.0);
        out.push(x);
    }
    if let Some(f) = by_id("response_uniform") {
        let mut x = rec("tiered_sla", f.id);
        x.numbers.insert("target", f.numbers["fastest"]);
        x.numbers.insert(
            "current",
            f.numbers
                .get("p50")
                .copied()
                .unwrap_or(f.numbers["slowest"]),
        );
        x.slices.insert("benchmark", f.slices["fastest"].clone());
        out.push(x);
    }
    if let Some(f) = by_id("response_spread") {
        let mut x = rec("close_response_gap", f.id);
        x.numbers.insert("current", f.numbers["slowest"]);
        x.numbers.insert(
            "target",
            r.panels.overall.avg_resp.unwrap_or(f.numbers["fastest"]),
        );
        x.slices.insert("cell", f.slices["slowest"].clone());
        out.push(x);
    }
    if let Some(f) = by_id("bot_share") {
        let rv = f.numbers["r_conversion"];
        // Only a moderate or stronger association justifies moving the share.
        let (id, cell, bench, current, target) = if rv <= -0.3 {
            (
                "human_first_high_value",
                "max",
                "min",
                f.numbers["max"],
                f.numbers["min"],
            )
        } else if rv >= 0.3 {
            (
                "extend_bot_first",
                "min",
                "max",
                f.numbers["min"],
                f.numbers["max"],
            )
        } else {
            (
                "bot_content_not_share",
                "max",
                "min",
                f.numbers["max"],
                f.numbers["min"],
            )
        };
        let mut x = rec(id, f.id);
        x.numbers.insert("current", current);
        x.numbers.insert("target", target);
        x.numbers.insert("r", rv);
        x.slices.insert("cell", f.slices[cell].clone());
        x.slices.insert("benchmark", f.slices[bench].clone());
        out.push(x);
    }
    if let Some(f) = by_id("retention_gradient") {
        let falls = f.keys.get("direction") == Some(&"falls");
        let mut x = rec("large_account_cadence", f.id);
        x.numbers.insert(
            "current",
            if falls {
                f.numbers["large_weekly"]
            } else {
                f.numbers["small_weekly"]
            },
        );
        x.numbers.insert(
            "target",
            r.panels
                .overall
                .weekly_retention
                .unwrap_or(f.numbers["small_weekly"]),
        );
        x.slices.insert(
            "cell",
            f.slices[if falls { "large" } else { "small" }].clone(),
        );
        out.push(x);
    }
    if let Some(f) = by_id("high_value_churn_watch") {
        let mut x = rec("save_desk", f.id);
        x.numbers
            .insert("current_conversion", f.numbers["conversion"]);
        x.numbers
            .insert("target_conversion", f.numbers["overall_conversion"]);
        x.numbers.insert("current_weekly", f.numbers["weekly"]);
        x.numbers
            .insert("target_weekly", f.numbers["overall_weekly"]);
        x.slices.insert("cell", f.slices["cell"].clone());
        out.push(x);
    }
    out
}

/// Record as the templates see it (`f.id`, `f.numbers.x`, `f.slices.y`, `f.keys.z`).
pub fn as_value(v: &impl Serialize) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_format_per_locale() {
        let en = Templates::default()
            .language("conversation-usage", "en")
            .unwrap();
        assert_eq!(en.format.count(6703.0), "6,703");
        assert_eq!(en.format.count(1234567.0), "1,234,567");
        assert_eq!(en.format.percent(0.0345), "3.5%");
        assert_eq!(en.format.minutes(25.26), "25.3 min");
        assert_eq!(en.format.points(-0.021), "-2.1 pp");
        assert_eq!(en.format.number(-0.04, 1), "0.0");
        let zh = Templates::default()
            .language("conversation-usage", "zh")
            .unwrap();
        assert_eq!(zh.format.minutes(25.26), "25.3 分钟");
        assert_eq!(zh.format.count(6703.0), "6,703");
    }

    #[test]
    fn unknown_language_lists_the_available_ones() {
        let e = Templates::default()
            .language("conversation-usage", "fr")
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("`fr`") && e.contains("en, zh"), "{e}");
    }

    #[test]
    fn a_new_language_is_a_folder() {
        let dir = tempfile::tempdir().unwrap();
        let de = dir.path().join("conversation-usage/de");
        std::fs::create_dir_all(&de).unwrap();
        for f in LANGUAGE_FILES {
            let (text, _) = Templates::default()
                .get(&format!("conversation-usage/en/{f}"))
                .unwrap();
            std::fs::write(de.join(f), text.replace("Segment", "Segment (de)")).unwrap();
        }
        let t = Templates::new(Some(dir.path().to_owned()));
        assert!(t.languages("conversation-usage").contains("de"));
        let de = t.language("conversation-usage", "de").unwrap();
        assert_eq!(de.code, "de");
    }

    #[test]
    fn broken_override_template_names_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let en = dir.path().join("conversation-usage/en");
        std::fs::create_dir_all(&en).unwrap();
        std::fs::write(en.join("findings.tera"), "{% if %}").unwrap();
        let e = Templates::new(Some(dir.path().to_owned()))
            .language("conversation-usage", "en")
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("findings.tera"), "{e}");
    }

    #[test]
    fn template_line_breaks_join_per_language() {
        assert_eq!(join_lines(" a  b\n   c\n", " "), "a  b c");
        assert_eq!(join_lines("甲\n  乙 3 分钟", ""), "甲乙 3 分钟");
    }

    #[test]
    fn strength_words() {
        assert_eq!(
            [
                strength(0.05),
                strength(-0.2),
                strength(0.4),
                strength(-0.9)
            ],
            ["none", "weak", "moderate", "strong"]
        );
    }
}
