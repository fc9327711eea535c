//! A language's layout strings (`strings.toml`) and its number formats, and the Tera
//! filters that apply them in templates.

use std::collections::HashMap;

use serde_json::Value;

use super::NarrativeError;

/// A language's layout strings (`strings.toml`), looked up by dotted key.
#[derive(Debug, Clone)]
pub struct Strings {
    table: toml::Table,
    path: String,
}

impl Strings {
    pub(crate) fn new(table: toml::Table, path: String) -> Self {
        Self { table, path }
    }

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
        let key = format!("labels.{dimension}.{value}");
        match self.lookup(&key) {
            Some(toml::Value::String(s)) => s.clone(),
            // Buckets a mapping made (its own bounds) have no label in the strings:
            // their name reads as a range (`50_99` → `50–99`, `under_25k` → `< 25k`).
            _ if dimension.ends_with("_bucket") && value != "unknown" => {
                let range = bucket_range(value);
                match self.lookup(&format!("labels.{dimension}_range")) {
                    Some(toml::Value::String(words)) => words.replacen("{}", &range, 1),
                    _ => range,
                }
            }
            _ => self.get(&key),
        }
    }

    /// A topic tag in this language: `[topic_names]` maps a tag as written (or its
    /// lower-case form) to its name; a customer's own tags are added by overriding the
    /// strings. A tag without a name prints as written (`check` lists them).
    pub fn topic(&self, tag: &str) -> String {
        self.topic_name(tag).unwrap_or_else(|| tag.to_owned())
    }

    /// The tag's name in this language, when the strings have one.
    pub fn topic_name(&self, tag: &str) -> Option<String> {
        let names = self.table.get("topic_names")?.as_table()?;
        names
            .get(tag.trim())
            .or_else(|| names.get(&tag.trim().to_lowercase()))
            .and_then(|v| v.as_str())
            .map(str::to_owned)
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
    /// Units for large amounts, largest first: (from, pattern with `{}`), e.g.
    /// (1,000,000, "${}M") or (10,000, "{} 万美元"). Empty: whole units.
    pub money_units: Vec<(f64, String)>,
}

impl NumberFormat {
    pub(crate) fn from_strings(s: &Strings) -> Result<Self, NarrativeError> {
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
            money_units: match s.lookup("format.money_units") {
                Some(toml::Value::Array(units)) => units
                    .iter()
                    .map(|u| {
                        let pair = u.as_array().filter(|a| a.len() == 2);
                        let from = pair.and_then(|a| match &a[0] {
                            toml::Value::Integer(i) => Some(*i as f64),
                            toml::Value::Float(f) => Some(*f),
                            _ => None,
                        });
                        let text = pair
                            .and_then(|a| a[1].as_str())
                            .filter(|t| t.contains("{}"));
                        match (from, text) {
                            (Some(f), Some(t)) if f > 0.0 => Ok((f, t.to_owned())),
                            _ => Err(NarrativeError::Strings {
                                path: s.path.clone(),
                                message:
                                    "`format.money_units` takes pairs [amount, \"text with {}\"]"
                                        .into(),
                            }),
                        }
                    })
                    .collect::<Result<_, _>>()?,
                _ => Vec::new(),
            },
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

    /// A money amount: in the language's units when large (one decimal under 100 of
    /// the unit, a trailing ".0" dropped), else whole units.
    pub fn money(&self, v: f64) -> String {
        let sign = if v < 0.0 && v.abs() >= 0.5 { "-" } else { "" };
        if let Some((from, text)) = self.money_units.iter().find(|(f, _)| v.abs() >= *f) {
            let x = v.abs() / from;
            let decimals = usize::from((x * 10.0).round() < 1000.0);
            let mut n = self.number(x, decimals);
            if let Some(stripped) = n.strip_suffix(&format!("{}0", self.decimal)) {
                n = stripped.to_owned();
            }
            return format!("{sign}{}", text.replace("{}", &n));
        }
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

pub(crate) fn register_filters(tera: &mut tera::Tera, fmt: &NumberFormat, strings: &Strings) {
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
    // `{{ tag | topic }}`: a topic tag's name in the language.
    tera.register_filter("topic", string_filter(strings, "a tag", Strings::topic));
    // `{{ "strength.weak" | t }}`: any string of strings.toml.
    tera.register_filter("t", string_filter(strings, "a string key", Strings::get));
}

/// A filter from a string value to what `f` makes of it in these strings.
fn string_filter(
    strings: &Strings,
    takes: &'static str,
    f: fn(&Strings, &str) -> String,
) -> impl tera::Filter + 'static {
    let s = strings.clone();
    move |v: &tera::Value, _: &HashMap<String, tera::Value>| {
        let text = v
            .as_str()
            .ok_or_else(|| tera::Error::msg(format!("expected {takes}, got {v}")))?;
        Ok(tera::Value::String(f(&s, text)))
    }
}

/// A bucket name as a range: `under_50` → `< 50`, `50_99` → `50–99`, `500_plus` → `500+`.
fn bucket_range(name: &str) -> String {
    if let Some(v) = name.strip_prefix("under_") {
        format!("< {v}")
    } else if let Some(v) = name.strip_suffix("_plus") {
        format!("{v}+")
    } else {
        name.replacen('_', "–", 1)
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn format_with(units: Vec<(f64, String)>, prefix: &str, suffix: &str) -> NumberFormat {
        NumberFormat {
            decimal: ".".into(),
            thousands: ",".into(),
            percent_suffix: "%".into(),
            minutes_suffix: " min".into(),
            pp_suffix: " pp".into(),
            currency_prefix: prefix.into(),
            currency_suffix: suffix.into(),
            money_units: units,
        }
    }

    #[test]
    fn money_in_the_language_units() {
        let en = format_with(vec![(1e6, "${}M".into()), (1e3, "${}k".into())], "$", "");
        assert_eq!(en.money(27_700_000.0), "$27.7M");
        assert_eq!(en.money(1_200_000.0), "$1.2M");
        assert_eq!(en.money(45_000.0), "$45k");
        assert_eq!(en.money(450_400.0), "$450k");
        assert_eq!(en.money(999.0), "$999");
        let zh = format_with(
            vec![(1e8, "{} 亿美元".into()), (1e4, "{} 万美元".into())],
            "",
            " 美元",
        );
        assert_eq!(zh.money(7_624_950.0), "762 万美元");
        assert_eq!(zh.money(27_700_000.0), "2,770 万美元");
        assert_eq!(zh.money(85_000.0), "8.5 万美元");
        assert_eq!(zh.money(320_000_000.0), "3.2 亿美元");
        assert_eq!(zh.money(8_500.0), "8,500 美元");
    }

    #[test]
    fn buckets_without_a_label_read_as_ranges() {
        let table: toml::Table = toml::from_str(
            "[labels]\nseat_bucket_range = \"{} seats\"\n\
             [labels.seat_bucket]\nunder_60 = \"Under 60 seats\"\nunknown = \"Unknown\"",
        )
        .unwrap();
        let s = Strings::new(table, "t".into());
        assert_eq!(s.label("seat_bucket", "under_60"), "Under 60 seats");
        assert_eq!(s.label("seat_bucket", "under_50"), "< 50 seats");
        assert_eq!(s.label("short_seat_bucket", "50_99"), "50–99");
        assert_eq!(s.label("arr_bucket", "250k_plus"), "250k+");
        assert_eq!(s.label("seat_bucket", "unknown"), "Unknown");
    }
}
