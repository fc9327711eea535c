//! A language's layout strings (`strings.toml`) and its number formats, and the Tera
//! filters that apply them in templates.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use serde_json::Value;

use super::NarrativeError;

/// The most characters a text of the data (a topic tag, a company name, a segment
/// value) takes where an edition lays it out: Typst spent minutes and gigabytes
/// breaking a 60,000-word tag into lines. CSVs and summary.json keep it whole.
pub const TEXT_CAP: usize = 120;

/// `text` cut to [`TEXT_CAP`] characters when longer: its start, `…`, and a short
/// code of the whole text, so that two long texts that start alike still read
/// apart (`None`: it fits as it is).
pub fn cut_text(text: &str) -> Option<String> {
    text.char_indices().nth(TEXT_CAP)?;
    let code = fnv1a(text.as_bytes()) & 0xff_ffff;
    let tail = format!("… #{code:06x}");
    let head: String = text.chars().take(TEXT_CAP - tail.chars().count()).collect();
    Some(format!("{}{tail}", head.trim_end()))
}

/// FNV-1a: a code that is the same in every run and on every machine (the PDFs
/// are reproducible), unlike the standard library's hasher.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// A language's layout strings (`strings.toml`), looked up by dotted key.
#[derive(Debug, Clone)]
pub struct Strings {
    table: toml::Table,
    path: String,
    /// Whether a text of the data was cut for this edition (shared by the clones the
    /// Tera filters hold): the data-quality notes then say so.
    cut: Arc<AtomicBool>,
}

impl Strings {
    pub(crate) fn new(table: toml::Table, path: String) -> Self {
        Self {
            table,
            path,
            cut: Arc::default(),
        }
    }

    /// A text of the data as an edition lays it out: at most [`TEXT_CAP`]
    /// characters ([`cut_text`]).
    pub fn data_text(&self, text: &str) -> String {
        match cut_text(text) {
            Some(cut) => {
                self.cut.store(true, Ordering::Relaxed);
                cut
            }
            None => text.to_owned(),
        }
    }

    /// Whether [`Strings::data_text`] cut a text so far.
    pub fn cut_any(&self) -> bool {
        self.cut.load(Ordering::Relaxed)
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

    /// The string at `key`, `None` (and no warning) when the strings do not have it:
    /// for texts with a fallback of their own (a language folder of the user's that
    /// predates the key).
    pub fn get_opt(&self, key: &str) -> Option<String> {
        match self.lookup(key) {
            Some(toml::Value::String(s)) => Some(s.clone()),
            _ => None,
        }
    }

    /// A slice label, e.g. `label("segment", "churn_watch")`.
    pub fn label(&self, dimension: &str, value: &str) -> String {
        let label = self.label_uncut(dimension, value);
        self.data_text(&label)
    }

    fn label_uncut(&self, dimension: &str, value: &str) -> String {
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
        match self.topic_name(tag) {
            Some(name) => self.data_text(&name),
            None => self.data_text(tag),
        }
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

/// From this magnitude on a number prints in scientific notation (`1.00e308`):
/// grouped digits would be hundreds wide.
pub const SCIENTIFIC_FROM: f64 = 1e15;

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

    /// `v` with `decimals` digits, grouped thousands; from [`SCIENTIFIC_FROM`] on in
    /// scientific notation, and an em dash for a value that is not a number (an
    /// overflowed sum), so that no value of the data makes a cell hundreds of
    /// digits wide.
    pub fn number(&self, v: f64, decimals: usize) -> String {
        if !v.is_finite() {
            return "—".to_owned();
        }
        if v.abs() >= SCIENTIFIC_FROM {
            return format!("{v:.2e}").replace('.', &self.decimal);
        }
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
        self.with_unit(v * 100.0, 1, &self.percent_suffix)
    }

    pub fn minutes(&self, v: f64) -> String {
        self.with_unit(v, 1, &self.minutes_suffix)
    }

    /// A difference of two fractions in percentage points.
    pub fn points(&self, v: f64) -> String {
        self.with_unit(v * 100.0, 1, &self.pp_suffix)
    }

    /// A number and its unit; a value that is not a number has no unit.
    fn with_unit(&self, v: f64, decimals: usize, unit: &str) -> String {
        if v.is_finite() {
            format!("{}{unit}", self.number(v, decimals))
        } else {
            "—".to_owned()
        }
    }

    /// A money amount: in the language's units when large (one decimal under 100 of
    /// the unit, a trailing ".0" dropped), else whole units.
    pub fn money(&self, v: f64) -> String {
        if !v.is_finite() {
            return "—".to_owned();
        }
        let sign = if v < 0.0 && v.abs() >= 0.5 { "-" } else { "" };
        if let Some((from, text)) = self.money_units.iter().find(|(f, _)| v.abs() >= *f) {
            let x = v.abs() / from;
            let decimals = usize::from((x * 10.0).round() < 1000.0);
            let mut n = self.number(x, decimals);
            if let Some(stripped) = n.strip_suffix(&format!("{}0", self.decimal)) {
                n = stripped.to_owned();
            }
            // `{}` is the value's place in the unit's mask (`${}M`), as in a label's.
            return format!("{sign}{}", text.replacen("{}", &n, 1));
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

    /// The amount [`Self::money`] prints for `v`, as a number ("$3.7k" is 3,700,
    /// "3,695 美元" is 3,695): a printed difference of two amounts is the
    /// difference of these, which depends on the language's units.
    pub fn printed_money(&self, v: f64) -> f64 {
        if !v.is_finite() {
            return v;
        }
        let rounded =
            |x: f64, decimals: usize| format!("{x:.decimals$}").parse::<f64>().unwrap_or(x);
        let abs = match self.money_units.iter().find(|(f, _)| v.abs() >= *f) {
            Some((from, _)) => {
                let x = v.abs() / from;
                let decimals = usize::from((x * 10.0).round() < 1000.0);
                rounded(x, decimals) * from
            }
            None => rounded(v.abs(), 0),
        };
        abs.copysign(v)
    }

    /// An amount in whole currency units, never in thousands or millions (`$2,914`,
    /// `2,914 美元`): where a reader divides two amounts, the units' rounding would
    /// make the ratio differ between languages ($2.9k against 2,914 美元).
    pub fn money_whole(&self, v: f64) -> String {
        if !v.is_finite() {
            return "—".to_owned();
        }
        let sign = if v < 0.0 && v.abs() >= 0.5 { "-" } else { "" };
        format!(
            "{sign}{}{}{}",
            self.currency_prefix,
            self.number(v.abs(), 0),
            self.currency_suffix
        )
    }

    /// `a − b` as the reader computes it from the two printed amounts.
    pub fn money_gap(&self, a: f64, b: f64) -> String {
        self.money(self.printed_money(a) - self.printed_money(b))
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
    fn a_money_gap_is_the_gap_of_the_printed_amounts() {
        let en = format_with(vec![(1e6, "${}M".into()), (1e3, "${}k".into())], "$", "");
        // The median row: $942 and $627 printed, $316 from the raw values.
        assert_eq!(en.money_gap(942.4, 626.6), "$315");
        assert_eq!(en.money_gap(3_695.4, 2_397.0), "$1.3k");
        assert_eq!(en.printed_money(3_695.4), 3_700.0);
        let zh = format_with(
            vec![(1e8, "{} 亿美元".into()), (1e4, "{} 万美元".into())],
            "",
            " 美元",
        );
        // zh printed 3,695 and 2,397 with a gap of 1,299.
        assert_eq!(zh.money_gap(3_695.4, 2_396.6), "1,298 美元");
        assert_eq!(zh.printed_money(-25_400.0), -25_000.0);
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
    fn long_texts_of_the_data_are_cut_and_stay_apart() {
        let s = Strings::new(toml::Table::new(), "t".into());
        assert_eq!(s.topic("Billing"), "Billing");
        assert!(!s.cut_any());
        let words = |last: &str| format!("{}{last}", "lorem ipsum ".repeat(5_000));
        let (a, b) = (s.topic(&words("alpha")), s.topic(&words("beta")));
        assert!(s.cut_any());
        for cut in [&a, &b] {
            assert_eq!(cut.chars().count(), TEXT_CAP, "{cut}");
            assert!(
                cut.starts_with("lorem ipsum lorem") && cut.contains("… #"),
                "{cut}"
            );
        }
        assert_ne!(a, b, "two tags that start alike still read apart");
        assert_eq!(cut_text(&words("alpha")).as_deref(), Some(a.as_str()));
        let exact = "é".repeat(TEXT_CAP);
        assert_eq!(cut_text(&exact), None);
        assert_eq!(
            cut_text(&format!("{exact}!")).map(|c| c.chars().count()),
            Some(TEXT_CAP)
        );
        // A label of a value the strings do not name is the value: cut the same way.
        let label = s.label("segment", &words("x"));
        assert!(
            label.chars().count() <= TEXT_CAP && label.contains("… #"),
            "{label}"
        );
        // The flag is shared with the clones the Tera filters hold.
        let fresh = Strings::new(toml::Table::new(), "t".into());
        let clone = fresh.clone();
        clone.data_text(&words("y"));
        assert!(fresh.cut_any());
    }

    #[test]
    fn huge_and_infinite_numbers_print_short() {
        let en = format_with(vec![(1e6, "${}M".into()), (1e3, "${}k".into())], "$", "");
        assert_eq!(en.number(1e308, 1), "1.00e308");
        assert_eq!(en.number(-1e308, 0), "-1.00e308");
        assert_eq!(en.number(123_456_789_012_345.0, 0), "123,456,789,012,345");
        assert_eq!(en.minutes(1e308), "1.00e308 min");
        for v in [f64::INFINITY, f64::NEG_INFINITY, f64::NAN] {
            assert_eq!(en.number(v, 1), "—");
            assert_eq!(en.percent(v), "—");
            assert_eq!(en.minutes(v), "—");
            assert_eq!(en.points(v), "—");
            assert_eq!(en.money(v), "—");
        }
        assert_eq!(en.money(1e308), "$1.00e302M");
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
