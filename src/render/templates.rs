//! Where the words come from: the template sets per report and language (Tera), embedded
//! from `templates/` and overridable file by file from a user directory. A language is
//! a folder, so adding one needs no code change. Overrides are read as text only: Tera
//! runs without access to the environment or the file system.
//!
//! Why this file is long: about 460 lines of code (the file lookup, a language's
//! load, its templated strings); the rest are its tests.

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::path::PathBuf;

use serde_json::Value;

use super::format::{register_filters, NumberFormat, Strings};
use super::template_guard;
pub use super::NarrativeError;

/// Templates compiled into the binary, by path under `templates/`: build.rs lists
/// every file of that folder, so a new report's templates need no code here.
const EMBEDDED: &[(&str, &str)] = include!(concat!(env!("OUT_DIR"), "/templates.rs"));

/// The folder of what every report shares (`shared/<lang>/…`, `shared/…`).
const SHARED: &str = "shared";

/// Puts `over` into `base`, table by table: `over`'s keys win.
fn merge(base: &mut toml::Table, over: toml::Table) {
    for (k, v) in over {
        match (base.get_mut(&k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
}

/// The template files of one language of a report (each may come from `shared/`).
const LANGUAGE_FILES: [&str; 11] = [
    "strings.toml",
    // The sentence of a fired watch rule (a macro): before the templates importing it.
    "watch_rule.tera",
    // A change between two periods, worded once for every report (macros): before
    // the findings and analyses importing them.
    "change.tera",
    "findings.tera",
    "recommendations.tera",
    // A report's own analysis sections; reports without any use the shared empty one.
    "analysis.tera",
    "takeaways.tera",
    "email_subject.tera",
    "email.txt.tera",
    // Autoescaped by Tera (the name ends in .html).
    "email.html",
    // A watch rule that fired, as page 1 prints it.
    "watch.tera",
];

/// Where templates come from: an optional user directory over the embedded set.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct Templates {
    pub override_dir: Option<PathBuf>,
}

impl Templates {
    pub fn new(override_dir: Option<PathBuf>) -> Self {
        Self { override_dir }
    }

    /// A template's text and the name to show in messages (its path).
    pub fn get(&self, rel: &str) -> Result<(Cow<'static, str>, String), NarrativeError> {
        self.find(rel)?.ok_or_else(|| NarrativeError::Missing {
            path: rel.to_owned(),
        })
    }

    /// A template's text and name, `None` when neither the user directory nor the
    /// built-in set has it.
    fn find(&self, rel: &str) -> Result<Option<(Cow<'static, str>, String)>, NarrativeError> {
        if let Some(dir) = &self.override_dir {
            let p = dir.join(rel);
            if p.is_file() {
                let text = std::fs::read_to_string(&p).map_err(|source| NarrativeError::Read {
                    path: p.clone(),
                    cause: source,
                })?;
                return Ok(Some((Cow::Owned(text), p.display().to_string())));
            }
        }
        Ok(EMBEDDED
            .iter()
            .find(|(path, _)| *path == rel)
            .map(|(path, text)| (Cow::Borrowed(*text), format!("templates/{path} (built in)"))))
    }

    /// A file of one language of a report: the report's own
    /// (`<report>/<lang>/<file>`), else the language's shared one
    /// (`shared/<lang>/<file>`), else the one every language shares (`shared/<file>`).
    pub fn language_file(
        &self,
        report: &str,
        lang: &str,
        file: &str,
    ) -> Result<(Cow<'static, str>, String), NarrativeError> {
        for rel in [
            format!("{report}/{lang}/{file}"),
            format!("{SHARED}/{lang}/{file}"),
            format!("{SHARED}/{file}"),
        ] {
            if let Some(found) = self.find(&rel)? {
                return Ok(found);
            }
        }
        Err(NarrativeError::Missing {
            path: format!("{report}/{lang}/{file}"),
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
        self.language_with(report, lang, &[])
    }

    /// [`Templates::language`] with the strings of the named variants laid over the
    /// others: a strings file's `[variant.<name>]` table holds the keys that read
    /// differently when a run measured something another way (the bot-initiated
    /// proxy instead of bot-first tags), so every label, chart and sentence that uses
    /// the key changes with it.
    pub fn language_with(
        &self,
        report: &str,
        lang: &str,
        variants: &[&str],
    ) -> Result<Language, NarrativeError> {
        let available = self.languages(report);
        if !available.contains(lang) {
            return Err(NarrativeError::UnknownLanguage {
                report: report.to_owned(),
                lang: lang.to_owned(),
                available: available.into_iter().collect::<Vec<_>>().join(", "),
            });
        }
        let parse = |text: &str, path: &str| -> Result<toml::Table, NarrativeError> {
            toml::from_str(text).map_err(|e| NarrativeError::Strings {
                path: path.to_owned(),
                message: e.to_string(),
            })
        };
        let (text, path) = self.get(&format!("{report}/{lang}/strings.toml"))?;
        let mut table = parse(&text, &path)?;
        refuse_old_placeholders(&table, &path)?;
        if let Some((shared, shared_path)) = self.find(&format!("{SHARED}/{lang}/strings.toml"))? {
            let mut base = parse(&shared, &shared_path)?;
            refuse_old_placeholders(&base, &shared_path)?;
            merge(&mut base, table);
            table = base;
        }
        if let Some(toml::Value::Table(mut all)) = table.remove("variant") {
            for v in variants {
                if let Some(toml::Value::Table(over)) = all.remove(*v) {
                    merge(&mut table, over);
                }
            }
        }
        let mut tera = sandboxed_tera();
        // A string with values put in is a Tera template of its own ([`Language::fill`]).
        for (key, text) in templated_strings(&table) {
            add_guarded(
                &mut tera,
                &format!("{STRING_TEMPLATE}{key}"),
                text,
                &format!("{path} (`{key}`)"),
            )?;
        }
        let strings = Strings::new(table, path.clone());
        let format = NumberFormat::from_strings(&strings)?;
        let mut paths = std::collections::BTreeMap::new();
        for file in &LANGUAGE_FILES[1..] {
            let (text, path) = self.language_file(report, lang, file)?;
            add_guarded(&mut tera, file, &text, &path)?;
            paths.insert((*file).to_owned(), path);
        }
        template_guard::check_recursion(&tera, &paths).map_err(|e| NarrativeError::Template {
            path: format!("{report}/{lang}"),
            message: e.to_string(),
        })?;
        register_filters(&mut tera, &format, &strings);
        Ok(Language {
            code: lang.to_owned(),
            strings,
            strings_path: path,
            format,
            tera,
            failure: std::sync::Mutex::new(None),
        })
    }
}

/// The name a templated string has in a language's Tera (`strings:notes.cross`).
const STRING_TEMPLATE: &str = "strings:";

/// The strings (dotted keys) that are Tera templates: values are put into them.
fn templated_strings(table: &toml::Table) -> Vec<(String, &str)> {
    let mut out = Vec::new();
    let mut stack: Vec<(String, &toml::Value)> =
        table.iter().map(|(k, v)| (k.clone(), v)).collect();
    while let Some((key, v)) = stack.pop() {
        match v {
            toml::Value::String(s) if s.contains("{{") || s.contains("{%") => {
                out.push((key, s.as_str()));
            }
            toml::Value::Table(t) => {
                stack.extend(t.iter().map(|(k, v)| (format!("{key}.{k}"), v)));
            }
            _ => {}
        }
    }
    out
}

/// Refuses a string with a `{name}` placeholder, the form cxreport filled before its
/// strings were Tera templates: kept, it would print its braces. The error names the
/// file, the key and the form expected. (`{}` alone is a value mask of `[format]`
/// and the labels, not a placeholder.)
fn refuse_old_placeholders(table: &toml::Table, path: &str) -> Result<(), NarrativeError> {
    let mut stack: Vec<(String, &toml::Value)> =
        table.iter().map(|(k, v)| (k.clone(), v)).collect();
    while let Some((key, v)) = stack.pop() {
        match v {
            toml::Value::String(s) => {
                if let Some(name) = old_placeholder(s) {
                    return Err(NarrativeError::Strings {
                        path: path.to_owned(),
                        message: format!(
                            "`{key}` has the placeholder `{{{name}}}`, a form cxreport no longer fills: \
                             a string with values is a Tera template, write `{{{{ {name} }}}}`"
                        ),
                    });
                }
            }
            toml::Value::Table(t) => {
                stack.extend(t.iter().map(|(k, v)| (format!("{key}.{k}"), v)));
            }
            _ => {}
        }
    }
    Ok(())
}

/// The first `{name}` of `s` outside Tera's own `{{ … }}`, `{% … %}` and `{# … #}`.
fn old_placeholder(s: &str) -> Option<&str> {
    let mut rest = s;
    while let Some(at) = rest.find('{') {
        let after = &rest[at + 1..];
        let close = match after.chars().next() {
            Some('{') => Some("}}"),
            Some('%') => Some("%}"),
            Some('#') => Some("#}"),
            _ => None,
        };
        if let Some(close) = close {
            rest = after
                .find(close)
                .map_or("", |end| &after[end + close.len()..]);
            continue;
        }
        let name = &after[..after.find('}')?];
        let word = name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if word {
            return Some(name);
        }
        rest = after;
    }
    None
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

/// A loaded language.
pub struct Language {
    pub code: String,
    pub strings: Strings,
    /// The strings file, for a templated string's error.
    strings_path: String,
    pub format: NumberFormat,
    tera: tera::Tera,
    /// The first templated string that did not render ([`Language::fill`]).
    failure: std::sync::Mutex<Option<NarrativeError>>,
}

impl Language {
    /// The string at `key` with `values` (an object) put in: a string of
    /// strings.toml with values is a Tera template (`{{ users }}`), checked when the
    /// language loaded. One that fails to render gives "" here and its error at
    /// [`Language::failure`], which the caller asks when its texts are done (a
    /// layout makes many strings and returns none of their errors).
    pub fn fill(&self, key: &str, values: &Value) -> String {
        let name = format!("{STRING_TEMPLATE}{key}");
        if !self.tera.get_template_names().any(|n| n == name) {
            return self.strings.get(key);
        }
        let ctx = tera::Context::from_value(values.clone()).unwrap_or_default();
        self.tera.render(&name, &ctx).unwrap_or_else(|e| {
            let mut failure = self.failure.lock().unwrap_or_else(|p| p.into_inner());
            failure.get_or_insert(NarrativeError::Render {
                path: format!("{} (`{key}`)", self.strings_path),
                message: tera_message(&e),
            });
            String::new()
        })
    }

    /// The error of the first string [`Language::fill`] could not render, if any.
    pub fn failure(&self) -> Result<(), NarrativeError> {
        let mut failure = self.failure.lock().unwrap_or_else(|p| p.into_inner());
        failure.take().map_or(Ok(()), Err)
    }

    /// Renders `template` with `value` bound as `name`; whitespace is collapsed so
    /// template line breaks do not leak into sentences.
    pub fn render(
        &self,
        template: &str,
        name: &str,
        value: &Value,
    ) -> Result<String, NarrativeError> {
        let text = self.render_raw(template, name, value)?;
        Ok(join_lines(
            &text,
            self.strings.get("document.line_join").as_str(),
        ))
    }

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
            .map_err(|e| NarrativeError::Render {
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
    let mut tera = sandboxed_tera();
    tera.autoescape_on(Vec::new());
    add_guarded(&mut tera, "owner_alert.tera", &text, &path)?;
    let paths = std::collections::BTreeMap::from([("owner_alert.tera".to_owned(), path.clone())]);
    template_guard::check_recursion(&tera, &paths).map_err(|e| NarrativeError::Template {
        path: path.clone(),
        message: e.to_string(),
    })?;
    tera.render("owner_alert.tera", &ctx)
        .map_err(|e| NarrativeError::Template {
            path,
            message: tera_message(&e),
        })
}

/// Adds a template after [`template_guard::check_text`]: Tera's parser recurses per
/// nesting level, so text that nests without end would overflow the stack.
fn add_guarded(
    tera: &mut tera::Tera,
    name: &str,
    text: &str,
    path: &str,
) -> Result<(), NarrativeError> {
    let refused = |message: String| NarrativeError::Template {
        path: path.to_owned(),
        message,
    };
    template_guard::check_text(text).map_err(|e| refused(e.to_string()))?;
    tera.add_raw_template(name, text)
        .map_err(|e| refused(tera_message(&e)))
}

/// The built-in template files, by path under `templates/`.
pub fn embedded() -> &'static [(&'static str, &'static str)] {
    EMBEDDED
}

/// A Tera without access to the process: templates can be a user's overrides, and
/// Tera's built-in `get_env` would print any environment variable (the SMTP password
/// among them) into every email. Templates read only what they are given.
fn sandboxed_tera() -> tera::Tera {
    let mut tera = tera::Tera::default();
    tera.register_function(
        "get_env",
        |_: &std::collections::HashMap<String, tera::Value>| -> tera::Result<tera::Value> {
            Err(tera::Error::msg(
                "`get_env` is not available: cxreport templates read only the report's data",
            ))
        },
    );
    tera.register_function("range", template_guard::bounded_range);
    tera
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
                .language_file("conversation-usage", "en", f)
                .unwrap();
            std::fs::write(de.join(f), text.replace("Segment", "Segment (de)")).unwrap();
        }
        // What every report of a language shares (number formats, appendix labels).
        let shared = dir.path().join("shared/de");
        std::fs::create_dir_all(&shared).unwrap();
        let (text, _) = Templates::default().get("shared/en/strings.toml").unwrap();
        std::fs::write(
            shared.join("strings.toml"),
            text.replace("thousands = \",\"", "thousands = \".\"")
                .replace("decimal = \".\"", "decimal = \",\""),
        )
        .unwrap();
        let t = Templates::new(Some(dir.path().to_owned()));
        assert!(t.languages("conversation-usage").contains("de"));
        let de = t.language("conversation-usage", "de").unwrap();
        assert_eq!(de.code, "de");
        assert_eq!(de.format.number(1234.5, 1), "1.234,5");
        assert_eq!(de.strings.get("appendix.database"), "Database");
    }

    #[test]
    fn templates_cannot_read_the_environment() {
        std::env::set_var("CXREPORT_TEST_SECRET", "hunter2");
        let dir = tempfile::tempdir().unwrap();
        let en = dir.path().join("conversation-usage/en");
        std::fs::create_dir_all(&en).unwrap();
        std::fs::write(
            en.join("email.txt.tera"),
            "{{ get_env(name=\"CXREPORT_TEST_SECRET\") }}",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("owner_alert.tera"),
            "{{ get_env(name=\"CXREPORT_TEST_SECRET\", default=\"x\") }}",
        )
        .unwrap();
        let t = Templates::new(Some(dir.path().to_owned()));
        let lang = t.language("conversation-usage", "en").unwrap();
        let e = lang
            .render_raw("email.txt.tera", "e", &Value::Null)
            .unwrap_err()
            .to_string();
        assert!(e.contains("get_env") && !e.contains("hunter2"), "{e}");
        let e = owner_alert(&t, &Value::Null).unwrap_err().to_string();
        assert!(e.contains("get_env") && !e.contains("hunter2"), "{e}");
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
    fn strings_with_values_are_tera_and_the_old_placeholders_are_refused() {
        let en = Templates::default()
            .language("customer-segmentation", "en")
            .unwrap();
        let values =
            serde_json::json!({ "users": "2,299", "arr": "$255M", "out": "3", "out_arr": "$1.2M" });
        assert_eq!(
            en.fill("notes.cross", &values),
            "Shares are of all 2,299 users and of all $255M ARR, the one denominator of this table; the 3 users without a portfolio ($1.2M ARR) are in no cell."
        );
        assert!(en.failure().is_ok());
        // A string without values reads as it is; a value missing fails, naming the key.
        assert_eq!(en.fill("appendix.database", &Value::Null), "Database");
        assert_eq!(
            en.fill("notes.cross", &serde_json::json!({ "users": 1 })),
            ""
        );
        let e = en.failure().unwrap_err().to_string();
        assert!(
            e.contains("customer-segmentation/en/strings.toml") && e.contains("`notes.cross`"),
            "{e}"
        );
        assert!(en.failure().is_ok(), "taken once");

        let dir = tempfile::tempdir().unwrap();
        let write = |rel: &str, text: &str| {
            let p = dir.path().join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        };
        write(
            "customer-segmentation/en/strings.toml",
            "[notes]\ncross = \"Shares of all {users} users.\"\n",
        );
        write(
            "shared/zh/strings.toml",
            "[email]\ntest_note = \"只发给了 {{ to }}，任务 {job}。\"\n",
        );
        let t = Templates::new(Some(dir.path().to_owned()));
        let e = t
            .language("customer-segmentation", "en")
            .err()
            .unwrap()
            .to_string();
        let file = dir.path().join("customer-segmentation/en/strings.toml");
        assert!(
            e.contains(&file.display().to_string())
                && e.contains("`notes.cross` has the placeholder `{users}`")
                && e.contains("write `{{ users }}`"),
            "{e}"
        );
        let e = t.language("tag-drivers", "zh").err().unwrap().to_string();
        assert!(
            e.contains("shared/zh/strings.toml") && e.contains("`{job}`"),
            "{e}"
        );
        // `{}` is a value mask, and Tera's own braces are not placeholders.
        assert_eq!(
            old_placeholder("ARR {} and {{ x }} {% if a %}{b}{% endif %}"),
            Some("b")
        );
        assert_eq!(old_placeholder("${}M {{ users }} {# {c} #} {1}"), None);
    }

    #[test]
    fn template_line_breaks_join_per_language() {
        assert_eq!(join_lines(" a  b\n   c\n", " "), "a  b c");
        assert_eq!(join_lines("甲\n  乙 3 分钟", ""), "甲乙 3 分钟");
    }

    /// The unit `if` chain of a change sentence lives once per language, in
    /// `shared/<lang>/change.tera`: no report's template words it again.
    #[test]
    fn change_sentences_are_worded_once_per_language() {
        for (path, text) in EMBEDDED {
            if path.ends_with(".tera") && !path.starts_with("shared/") {
                assert!(
                    !text.contains("keys.unit =="),
                    "{path} words a change by its unit itself: use change.tera's macros"
                );
            }
        }
    }

    /// Each report's change sentence, in each unit and language, is the shared
    /// macro's, with its counts and the number of further changes that hold.
    #[test]
    fn every_report_prints_a_change_through_the_shared_macro() {
        let cases = [
            ("conversation-usage", "avg_resp", "minutes", json!({})),
            ("conversation-usage", "weekly_retention", "rate", json!({})),
            ("conversation-usage", "conv_cnt", "count", json!({})),
            (
                "tag-drivers",
                "share_rated_le2",
                "rate",
                json!({"segment": "at_risk"}),
            ),
            (
                "tag-drivers",
                "conversations",
                "count",
                json!({"segment": "at_risk"}),
            ),
            ("customer-segmentation", "total_arr", "money", json!({})),
            ("customer-segmentation", "active_rate", "rate", json!({})),
        ];
        for (report, metric, unit, slices) in cases {
            for lang in ["en", "zh"] {
                let language = Templates::default().language(report, lang).unwrap();
                let mut slices = slices.clone();
                slices["period"] = json!("2024-01-01_2024-03-31");
                let f = json!({
                    "id": "period_change",
                    "keys": {"metric": metric, "unit": unit, "direction": "fall"},
                    "slices": slices,
                    "numbers": {
                        "previous": 0.625, "current": 0.5, "change": -0.125,
                        "previous_k": 50, "previous_n": 80, "current_k": 40, "current_n": 80,
                        "holding": 3,
                    },
                });
                let mut tera = language.tera.clone();
                tera.add_raw_template(
                    "probe",
                    "{% import \"change.tera\" as change %}{{ change::rose_from_to(c=f) }}|{{ change::counts(c=f, noun=noun) }}|{{ change::more(f=f) }}",
                )
                .unwrap();
                let mut ctx = tera::Context::new();
                ctx.insert("f", &f);
                // customer-segmentation's rates are of users, and say so.
                let noun = match (report, lang) {
                    ("customer-segmentation", "en") => "users",
                    ("customer-segmentation", _) => "名用户",
                    _ => "",
                };
                ctx.insert("noun", noun);
                let probe = tera.render("probe", &ctx).unwrap();
                let parts: Vec<&str> = probe.split('|').collect();
                let sentence = language.render("findings.tera", "f", &f).unwrap();
                assert!(
                    sentence.contains(parts[0]) && sentence.contains(parts[2]),
                    "{report}/{lang} {unit}: {sentence:?} lacks {probe:?}"
                );
                let counts = parts[1].trim();
                assert!(
                    sentence.contains(counts),
                    "{report}/{lang} {unit}: {sentence:?} lacks the counts {counts:?}"
                );
                assert_eq!(counts.is_empty(), unit == "count" || unit == "money");
            }
        }
    }
}
