//! How a run's period reads, decided in one place: the cover, the email, the owner
//! alerts and `history` all print a period key (`2023-12-15_2024-06-15`,
//! `asof-2024-06-15`) through [`period_label`], so they cannot drift apart.

use crate::render::templates::Language;

/// What a period key names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Period<'a> {
    /// A window `first_last` (inclusive dates).
    Window { first: &'a str, last: &'a str },
    /// A snapshot `asof-<date>`.
    AsOf(&'a str),
    /// Any other key (a fire that never got a period): shown as it is.
    Other(&'a str),
}

impl<'a> Period<'a> {
    /// Reads a period key; only well-formed dates make a window or a snapshot.
    pub fn of_key(key: &'a str) -> Self {
        let date = |s: &str| chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").is_ok();
        if let Some(day) = key.strip_prefix("asof-").filter(|d| date(d)) {
            return Self::AsOf(day);
        }
        match key.split_once('_') {
            Some((first, last)) if date(first) && date(last) => Self::Window { first, last },
            _ => Self::Other(key),
        }
    }

    /// The kind as templates test it: `window`, `as_of` or `other` (an email says
    /// "the report for <window>" but "the report (as of <date>)").
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Window { .. } => "window",
            Self::AsOf(_) => "as_of",
            Self::Other(_) => "other",
        }
    }

    /// "2023-12-15 – 2024-06-15", "<as_of> 2024-06-15", or the key as it is.
    fn label(&self, as_of: &str) -> String {
        match self {
            Self::Window { first, last } => format!("{first} – {last}"),
            Self::AsOf(day) => format!("{as_of} {day}"),
            Self::Other(key) => (*key).to_owned(),
        }
    }
}

/// A period key as a person reads it: in `lang`'s words ("as of", "截至"), or in
/// English for the language-neutral texts (owner alerts, `history`) with `None` and
/// for a language folder of the user's that has no `document.as_of`.
pub fn period_label(key: &str, lang: Option<&Language>) -> String {
    let as_of = lang
        .and_then(|l| l.strings.get_opt("document.as_of"))
        .unwrap_or_else(|| "as of".to_owned());
    Period::of_key(key).label(&as_of)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::templates::Templates;

    #[test]
    fn period_keys_read_the_same_wherever_they_are_printed() {
        assert_eq!(
            period_label("2023-12-15_2024-06-15", None),
            "2023-12-15 – 2024-06-15"
        );
        assert_eq!(period_label("asof-2024-06-15", None), "as of 2024-06-15");
        let zh = Templates::default()
            .language("customer-segmentation", "zh")
            .unwrap();
        assert_eq!(
            period_label("asof-2024-06-15", Some(&zh)),
            "截至 2024-06-15"
        );
        // conversation-usage's strings have no `document.as_of`: the English words.
        let cu = Templates::default()
            .language("conversation-usage", "zh")
            .unwrap();
        assert_eq!(
            period_label("asof-2024-06-15", Some(&cu)),
            "as of 2024-06-15"
        );
        for other in ["fire-2024-07-01T08:00:00Z", "asof-x", "a_b", ""] {
            assert_eq!(period_label(other, None), other);
            assert_eq!(Period::of_key(other).kind(), "other");
        }
        assert_eq!(Period::of_key("asof-2024-06-15").kind(), "as_of");
        assert_eq!(Period::of_key("2024-01-01_2024-06-30").kind(), "window");
    }
}
