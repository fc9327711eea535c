//! The Chinese words of all three reports against `templates/shared/glossary.toml`: one
//! English term has one Chinese term in every report's strings (same key, en vs zh),
//! labels and topic names are the glossary's, and no zh strings value or template uses
//! a word the glossary marks as wrong. Read from the source tree: these are the
//! built-in templates (a user's overrides are theirs).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

const REPORTS: [&str; 3] = ["tag-drivers", "customer-segmentation", "conversation-usage"];
/// The folders whose `<lang>/strings.toml` pair up: each report's and the shared one.
const FOLDERS: [&str; 4] = [
    "tag-drivers",
    "customer-segmentation",
    "conversation-usage",
    "shared",
];

fn templates() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("templates")
}

#[derive(serde::Deserialize)]
struct Glossary {
    term: Vec<Pair>,
    label: Vec<Pair>,
    topics: BTreeMap<String, String>,
    wrong: Vec<Wrong>,
}

#[derive(serde::Deserialize)]
struct Pair {
    en: String,
    zh: String,
}

#[derive(serde::Deserialize)]
struct Wrong {
    zh: String,
    #[serde(rename = "use")]
    instead: String,
    #[serde(default)]
    within: Vec<String>,
}

fn glossary() -> Glossary {
    let text = std::fs::read_to_string(templates().join("shared/glossary.toml")).unwrap();
    toml::from_str(&text).expect("glossary.toml parses")
}

/// Every string of a strings file by its dotted key (`change.then`, `scope.definitions.2`).
fn strings(folder: &str, lang: &str) -> BTreeMap<String, String> {
    fn walk(prefix: &str, v: &toml::Value, out: &mut BTreeMap<String, String>) {
        match v {
            toml::Value::String(s) => {
                out.insert(prefix.to_owned(), s.clone());
            }
            toml::Value::Array(a) => {
                for (i, v) in a.iter().enumerate() {
                    walk(&format!("{prefix}.{i}"), v, out);
                }
            }
            toml::Value::Table(t) => {
                for (k, v) in t {
                    let key = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    walk(&key, v, out);
                }
            }
            _ => {}
        }
    }
    let path = templates().join(folder).join(lang).join("strings.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let table: toml::Value = toml::from_str(&text).unwrap();
    let mut out = BTreeMap::new();
    walk("", &table, &mut out);
    out
}

/// Whether `word` occurs in `text` as a whole word, in any case.
fn has_word(text: &str, word: &str) -> bool {
    let text = text.to_lowercase();
    let word = word.to_lowercase();
    let is_word = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '-');
    text.match_indices(&word).any(|(i, _)| {
        !is_word(text[..i].chars().next_back()) && !is_word(text[i + word.len()..].chars().next())
    })
}

/// The places `wrong.zh` occurs in `text` outside every one of its `within` words.
fn misuses(text: &str, wrong: &Wrong) -> Vec<String> {
    text.match_indices(&wrong.zh)
        .filter(|(i, _)| {
            !wrong.within.iter().any(|w| {
                w.match_indices(&wrong.zh).any(|(o, _)| {
                    i.checked_sub(o)
                        .and_then(|start| text.get(start..start + w.len()))
                        .is_some_and(|s| s == w)
                })
            })
        })
        .map(|(i, _)| {
            let from = text[..i].char_indices().rev().nth(12).map_or(0, |(j, _)| j);
            let to = text[i..]
                .char_indices()
                .nth(14)
                .map_or(text.len(), |(j, _)| i + j);
            text[from..to].to_owned()
        })
        .collect()
}

/// A template's text without its Tera tags (`{{ … }}`, `{% … %}`, `{# … #}`): the
/// words it prints.
fn printed_words(template: &str) -> String {
    let mut out = String::new();
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        let close = match rest[start..].chars().nth(1) {
            Some('{') => "}}",
            Some('%') => "%}",
            Some('#') => "#}",
            _ => {
                out.push_str(&rest[..=start]);
                rest = &rest[start + 1..];
                continue;
            }
        };
        out.push_str(&rest[..start]);
        out.push(' ');
        rest = rest[start..]
            .find(close)
            .map_or("", |end| &rest[start + end + close.len()..]);
    }
    out.push_str(rest);
    out
}

#[test]
fn the_glossary_gives_each_english_term_one_chinese_term() {
    let g = glossary();
    let mut seen: BTreeMap<String, &str> = BTreeMap::new();
    for p in g.term.iter().chain(&g.label) {
        if let Some(zh) = seen.insert(p.en.clone(), &p.zh) {
            assert_eq!(zh, p.zh, "`{}` has two Chinese terms", p.en);
        }
    }
    for w in &g.wrong {
        assert!(!w.instead.is_empty(), "`{}`: say what to write", w.zh);
        for p in g.term.iter().chain(&g.label) {
            assert!(
                misuses(&p.zh, w).is_empty(),
                "the glossary's own `{}` uses the wrong `{}`",
                p.zh,
                w.zh
            );
        }
    }
}

#[test]
fn every_report_writes_each_glossary_term_with_its_one_chinese_term() {
    let g = glossary();
    let mut problems = Vec::new();
    for folder in FOLDERS {
        let en = strings(folder, "en");
        let zh = strings(folder, "zh");
        for (key, en_value) in &en {
            let Some(zh_value) = zh.get(key) else {
                continue;
            };
            for t in &g.term {
                if has_word(en_value, &t.en) && !zh_value.contains(&t.zh) {
                    problems.push(format!(
                        "{folder} {key}: “{en_value}” has `{}`, “{zh_value}” lacks `{}`",
                        t.en, t.zh
                    ));
                }
            }
            for l in &g.label {
                if en_value.eq_ignore_ascii_case(&l.en) && zh_value != &l.zh {
                    problems.push(format!(
                        "{folder} {key}: the label “{en_value}” is `{}`, not “{zh_value}”",
                        l.zh
                    ));
                }
            }
        }
    }
    let zh = strings("tag-drivers", "zh");
    let topics: BTreeMap<&str, &str> = zh
        .iter()
        .filter_map(|(k, v)| Some((k.strip_prefix("topic_names.")?, v.as_str())))
        .collect();
    let glossary_topics: BTreeMap<&str, &str> = g
        .topics
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    if topics != glossary_topics {
        problems.push(format!(
            "tag-drivers zh [topic_names] {topics:?} is not the glossary's {glossary_topics:?}"
        ));
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn no_zh_strings_or_template_uses_a_word_the_glossary_marks_wrong() {
    let g = glossary();
    let mut texts: Vec<(String, String)> = Vec::new();
    for folder in FOLDERS {
        for (key, value) in strings(folder, "zh") {
            texts.push((format!("{folder}/zh/strings.toml {key}"), value));
        }
        let dir = templates().join(folder).join("zh");
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e != "toml") {
                let text = std::fs::read_to_string(&path).unwrap();
                texts.push((path.display().to_string(), printed_words(&text)));
            }
        }
    }
    assert!(texts.len() > REPORTS.len() * 50, "{}", texts.len());
    let mut problems = Vec::new();
    for (place, text) in &texts {
        for w in &g.wrong {
            for at in misuses(text, w) {
                problems.push(format!(
                    "{place}: `{}` in “{at}”: write {}",
                    w.zh, w.instead
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_checks_find_what_they_look_for() {
    let wrong = Wrong {
        zh: "升级".into(),
        instead: "工单升级".into(),
        within: vec!["工单升级".into(), "升级套餐".into()],
    };
    assert!(misuses("转交工单升级，推荐升级套餐", &wrong).is_empty());
    assert_eq!(misuses("客户要求升级。", &wrong).len(), 1);
    assert!(has_word("Bot-first share × conversion (cells)", "cells"));
    assert!(!has_word("inactive users", "active"));
    assert!(!has_word("Minimum companies per cell", "cells"));
    assert_eq!(
        printed_words("{# 注释 #}由 {{ a | pct }} 上升{% if x %}至{% endif %}"),
        " 由   上升 至 "
    );
}

#[test]
fn no_zh_edition_prints_a_word_the_glossary_marks_wrong() {
    // What reaches the PDF from Rust (labels of a mapping's own buckets, table
    // headers) as well as from the templates; pdftotext breaks lines anywhere in
    // Chinese text, so the words are matched with the whitespace taken out.
    let g = glossary();
    let mut problems = Vec::new();
    for report in REPORTS {
        let pdf = crate::output_of(report).join("report.zh.pdf");
        let text = crate::common::squash(&crate::common::pdf_text(&pdf));
        for w in &g.wrong {
            for at in misuses(&text, w) {
                problems.push(format!(
                    "{report} zh: `{}` in “{at}”: write {}",
                    w.zh, w.instead
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
