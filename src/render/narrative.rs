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
    /// Whether it may lead page 1: a difference or relationship that holds under the
    /// claims rules. Context ("no clear difference", a uniform service) does not.
    pub lead: bool,
}

impl Finding {
    /// A finding with no numbers, slices or keys yet, leading unless told otherwise.
    pub fn new(id: &'static str, rank: u8) -> Self {
        Self {
            id,
            rank,
            numbers: BTreeMap::new(),
            slices: BTreeMap::new(),
            keys: BTreeMap::new(),
            lead: true,
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
            keys: BTreeMap::new(),
        }
    }

    /// [`Recommendation::new`] with the owner function (a key of `[owners]`).
    pub fn owned(id: &'static str, follows: &'static str, owner: &'static str) -> Self {
        let mut x = Self::new(id, follows);
        x.keys.insert("owner", owner);
        x
    }
}

/// A recommendation, always following from one finding, with a target from the data.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Recommendation {
    pub id: &'static str,
    pub follows: &'static str,
    pub numbers: BTreeMap<&'static str, f64>,
    pub slices: BTreeMap<&'static str, Value>,
    /// The owner function (`owner`) and what measures success (`measure`), as keys
    /// the language's strings translate.
    pub keys: BTreeMap<&'static str, &'static str>,
}

/// Record as the templates see it (`f.id`, `f.numbers.x`, `f.slices.y`, `f.keys.z`).
pub fn as_value(v: &impl Serialize) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

/// The findings and recommendations of a run, language-neutral (summary.json).
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Narrative {
    pub findings: Vec<Finding>,
    pub recommendations: Vec<Recommendation>,
    /// Records of a report's own analysis sections (diagnosis, what-if, plan, pilot,
    /// limitations), each naming its section in `keys.section`; rendered by
    /// `analysis.tera` (bound as `a`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub analysis: Vec<Finding>,
}

/// A rendered sentence with the record it came from.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Sentence {
    pub id: String,
    pub text: String,
    /// A finding that may lead page 1 (always false for recommendations).
    pub lead: bool,
    /// The analysis section an analysis record belongs to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub section: Option<String>,
}

/// A run's narrative in one language.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sentences {
    pub findings: Vec<Sentence>,
    pub recommendations: Vec<Sentence>,
    /// Each recommendation in its short page-1 form (`brief` set for the template).
    pub actions: Vec<Sentence>,
    /// The analysis sections' sentences, each with its section.
    pub analysis: Vec<Sentence>,
}

/// How many headlines and actions page 1 and the email carry.
pub const BRIEF_ITEMS: usize = 3;

impl Sentences {
    /// The headlines: findings that may lead, in page order, at most [`BRIEF_ITEMS`].
    pub fn headlines(&self) -> impl Iterator<Item = &Sentence> {
        self.findings.iter().filter(|f| f.lead).take(BRIEF_ITEMS)
    }
}

/// The findings and recommendations of a run as sentences of one language.
pub fn sentences(story: &Narrative, language: &Language) -> Result<Sentences, NarrativeError> {
    let render = |template: &str, name: &str, id: &str, v: Value, lead: bool| {
        Ok(Sentence {
            id: id.to_owned(),
            text: language.render(template, name, &v)?,
            lead,
            section: None,
        })
    };
    let findings = story
        .findings
        .iter()
        .map(|f| render("findings.tera", "f", f.id, as_value(f), f.lead))
        .collect::<Result<_, NarrativeError>>()?;
    let recommendations = story
        .recommendations
        .iter()
        .map(|x| render("recommendations.tera", "r", x.id, as_value(x), false))
        .collect::<Result<_, NarrativeError>>()?;
    let actions = story
        .recommendations
        .iter()
        .take(BRIEF_ITEMS)
        .map(|x| {
            let mut v = as_value(x);
            if let Value::Object(m) = &mut v {
                m.insert("brief".into(), Value::Bool(true));
            }
            render("recommendations.tera", "r", x.id, v, false)
        })
        .collect::<Result<_, NarrativeError>>()?;
    let analysis = story
        .analysis
        .iter()
        .map(|a| {
            let mut x = render("analysis.tera", "a", a.id, as_value(a), false)?;
            x.section = a.keys.get("section").map(|s| (*s).to_owned());
            Ok(x)
        })
        .collect::<Result<_, NarrativeError>>()?;
    Ok(Sentences {
        findings,
        recommendations,
        actions,
        analysis,
    })
}
