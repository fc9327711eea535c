//! Turning a report's numbers into a document, knowing no report: the template sets
//! per language (`templates`), locale formats and Tera filters (`format`), the
//! language-neutral findings and their sentences (`narrative`), charts rendered by
//! ECharts in an embedded engine (`charts`) and the Typst `World` that lays out the
//! PDF from data (`pdf`).

pub mod charts;
pub mod format;
pub mod narrative;
pub mod pdf;
pub mod templates;
