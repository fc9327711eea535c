//! Turning a report's numbers into a document, knowing no report: the template sets
//! per language (`templates`), locale formats and Tera filters (`format`), the
//! language-neutral findings and their sentences (`narrative`), charts rendered by
//! ECharts in an embedded engine (`charts`) and the Typst `World` that lays out the
//! PDF from data (`pdf`).

pub mod charts;
pub mod format;
pub mod narrative;
pub mod pdf;
pub mod template_guard;
pub mod templates;

use std::path::PathBuf;

/// What can go wrong with a template set: a language, a file, a template or strings.
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
    #[error("reading template {path}: {cause}")]
    Read {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("template {path}: {message}")]
    Template { path: String, message: String },
    /// A template that loaded failed on the run's data (the run failed; nothing
    /// about how cxreport was called must change).
    #[error("rendering template {path}: {message}")]
    Render { path: String, message: String },
    #[error("strings file {path}: {message}")]
    Strings { path: String, message: String },
    /// Rendering in a worker process failed, or the worker did not answer (its message
    /// says which, with the template's path).
    #[error("{0}")]
    Worker(String),
}

impl crate::exit::Classify for NarrativeError {
    /// A template set that does not load is the user's to fix; one that loads and
    /// fails on the data (or whose worker failed) is a failed run.
    fn exit(&self) -> crate::exit::Exit {
        use crate::exit::Exit;
        match self {
            Self::UnknownLanguage { .. }
            | Self::Missing { .. }
            | Self::Read { .. }
            | Self::Template { .. }
            | Self::Strings { .. } => Exit::Usage,
            Self::Render { .. } | Self::Worker(_) => Exit::Failed,
        }
    }
}
