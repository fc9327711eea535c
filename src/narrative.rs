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
use serde_json::Value;

/// Templates compiled into the binary, by path under `templates/`: build.rs lists
/// every file of that folder, so a new report's templates need no code here.
const EMBEDDED: &[(&str, &str)] = include!(concat!(env!("OUT_DIR"), "/templates.rs"));

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
    /// Around money amounts (ARR): `$` and nothing by default.
    pub currency_prefix: String,
    pub currency_suffix: String,
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
            currency_prefix: get("currency_prefix").unwrap_or_else(|_| "$".into()),
            currency_suffix: get("currency_suffix").unwrap_or_default(),
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

    /// A money amount, whole units.
    pub fn money(&self, v: f64) -> String {
        let sign = if v < 0.0 && v.abs() >= 0.5 { "-" } else { "" };
        format!(
            "{sign}{}{}{}",
            self.currency_prefix,
            self.number(v.abs(), 0),
            self.currency_suffix
        )
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
    tera.register_filter("dec1", num_filter(fmt, |f, v| f.number(v, 1)));
    // A value already in percentage points.
    tera.register_filter("ppv", num_filter(fmt, |f, v| f.points(v / 100.0)));
    tera.register_filter("money", num_filter(fmt, NumberFormat::money));
    let s = strings.clone();
    // `{{ slice | slice }}`: a slice record as its localized label.
    tera.register_filter(
        "slice",
        move |v: &tera::Value, _: &HashMap<String, tera::Value>| {
            Ok(tera::Value::String(slice_label(&s, v)))
        },
    );
    let s = strings.clone();
    // `{{ value | label(dim="plan_type") }}`: a dimension value's localized label.
    tera.register_filter(
        "label",
        move |v: &tera::Value, args: &HashMap<String, tera::Value>| {
            let dim = args
                .get("dim")
                .and_then(tera::Value::as_str)
                .ok_or_else(|| tera::Error::msg("`label` takes dim=\"<dimension>\""))?;
            let value = match v {
                tera::Value::String(x) => x.clone(),
                other => other.to_string(),
            };
            Ok(tera::Value::String(s.label(dim, &value)))
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

impl Finding {
    /// A finding with no numbers, slices or keys yet.
    pub fn new(id: &'static str, rank: u8) -> Self {
        Self {
            id,
            rank,
            numbers: BTreeMap::new(),
            slices: BTreeMap::new(),
            keys: BTreeMap::new(),
        }
    }
}

impl Recommendation {
    /// A recommendation following from finding `follows`, numbers and slices to add.
    pub fn new(id: &'static str, follows: &'static str) -> Self {
        Self {
            id,
            follows,
            numbers: BTreeMap::new(),
            slices: BTreeMap::new(),
        }
    }
}

/// A recommendation, always following from one finding, with a target from the data.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Recommendation {
    pub id: &'static str,
    pub follows: &'static str,
    pub numbers: BTreeMap<&'static str, f64>,
    pub slices: BTreeMap<&'static str, Value>,
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
}
