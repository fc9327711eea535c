//! Recipient lists as written: a table of language → addresses with an optional
//! `depth` (`brief` or `full`), read into a [`RecipientList`]. `[job.recipients]`
//! is one; each `[[job.audience]]` is one with a `name`. A table of this shape
//! anywhere in a job reads the same way ([`Validator::recipient_list`]).

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;

use super::Validator;
use crate::jobs::config::RecipientList;
use crate::run::Depth;

/// A list of recipients as written.
#[derive(Debug, Default, Deserialize)]
pub(in crate::jobs::config) struct RawList {
    depth: Option<String>,
    #[serde(flatten)]
    by_lang: BTreeMap<String, Vec<String>>,
}

/// A `[[job.audience]]`: a named list.
#[derive(Debug, Deserialize)]
pub(in crate::jobs::config) struct RawAudience {
    name: Option<String>,
    #[serde(flatten)]
    list: RawList,
}

impl Validator {
    /// The list at `key` (e.g. `job "a".recipients`) named `name`, its languages
    /// among `available`; every problem named by its key.
    pub(in crate::jobs::config) fn recipient_list(
        &mut self,
        key: &str,
        name: &str,
        raw: &RawList,
        available: &BTreeSet<String>,
    ) -> RecipientList {
        let depth = match raw.depth.as_deref() {
            None => Depth::Full,
            Some(d) => d.parse().unwrap_or_else(|why: String| {
                self.problem(
                    format!("{key}.depth"),
                    format!("{why}: `brief` mails page 1, the recommendations and their findings; `full` the whole report"),
                );
                Depth::Full
            }),
        };
        let mut by_lang = BTreeMap::new();
        for (lang, list) in &raw.by_lang {
            if !available.contains(lang) {
                self.problem(
                    format!("{key}.{lang}"),
                    format!(
                        "no templates for language `{lang}` (available: {})",
                        available.iter().cloned().collect::<Vec<_>>().join(", ")
                    ),
                );
            }
            let boxes = list
                .iter()
                .enumerate()
                .filter_map(|(k, r)| self.mailbox(&format!("{key}.{lang}[{k}]"), r))
                .collect();
            by_lang.insert(lang.clone(), boxes);
        }
        RecipientList {
            name: name.to_owned(),
            depth,
            by_lang,
        }
    }

    /// The job's `[[job.audience]]` lists under `label`: each needs a name of its
    /// own and at least one address.
    pub(in crate::jobs::config) fn audiences(
        &mut self,
        label: &str,
        raw: &[RawAudience],
        available: &BTreeSet<String>,
    ) -> Vec<RecipientList> {
        let mut out: Vec<RecipientList> = Vec::new();
        for (i, a) in raw.iter().enumerate() {
            let key = format!("{label}.audience[{i}]");
            let name = match a.name.as_deref().map(str::trim) {
                None | Some("") => {
                    self.problem(
                        format!("{key}.name"),
                        "missing: name the audience (e.g. `name = \"leadership\"`), as the logs and `history` print it",
                    );
                    format!("audience[{i}]")
                }
                Some(n) if n == "recipients" || out.iter().any(|x| x.name == n) => {
                    self.problem(
                        format!("{key}.name"),
                        format!("`{n}` is already the name of another list of this job"),
                    );
                    n.to_owned()
                }
                Some(n) => n.to_owned(),
            };
            let list = self.recipient_list(&key, &name, &a.list, available);
            if list.by_lang.values().all(Vec::is_empty) {
                self.problem(
                    key,
                    format!("audience `{name}` has no recipients: give a language and its addresses (`en = [\"…\"]`)"),
                );
            }
            out.push(list);
        }
        out
    }
}
