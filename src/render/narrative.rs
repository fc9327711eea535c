//! The narrative of a run as language-neutral records: findings (the numbers and
//! slices they cite), recommendations (the finding each follows from), and their
//! rendering into one language's sentences.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use super::templates::{Language, NarrativeError};

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

/// The findings and recommendations of a run, language-neutral (summary.json).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Narrative {
    pub findings: Vec<Finding>,
    pub recommendations: Vec<Recommendation>,
}

/// A rendered sentence with the record it came from.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Sentence {
    pub id: String,
    pub text: String,
}

/// The findings and recommendations of a run as sentences of one language.
pub fn sentences(
    story: &Narrative,
    language: &Language,
) -> Result<(Vec<Sentence>, Vec<Sentence>), NarrativeError> {
    let render = |template: &str, name: &str, id: &str, v: Value| {
        Ok(Sentence {
            id: id.to_owned(),
            text: language.render(template, name, &v)?,
        })
    };
    let findings = story
        .findings
        .iter()
        .map(|f| render("findings.tera", "f", f.id, as_value(f)))
        .collect::<Result<_, NarrativeError>>()?;
    let recommendations = story
        .recommendations
        .iter()
        .map(|x| render("recommendations.tera", "r", x.id, as_value(x)))
        .collect::<Result<_, NarrativeError>>()?;
    Ok((findings, recommendations))
}
