//! PDF rendering with Typst as a library: a [`World`] that serves the report's layout
//! template, its `data.json` and the chart SVGs from memory (nothing else, so a
//! template cannot read outside what it is given), the fonts embedded from `fonts/`,
//! and `today()` pinned to the run's reference date. Typst diagnostics become errors
//! naming the template file and line.
//!
//! Text from the database reaches Typst only inside `data.json`, as string values:
//! it is printed, never evaluated.

use std::collections::HashMap;
use std::sync::OnceLock;

use chrono::{DateTime, Datelike, Timelike, Utc};
use typst::diag::{FileError, FileResult, Severity, SourceDiagnostic};
use typst::foundations::{Bytes, Datetime, Duration, Smart};
use typst::syntax::{FileId, RootedPath, Source, VirtualPath, VirtualRoot};
use typst::text::{Font, FontBook};
use typst::utils::LazyHash;
use typst::{Library, LibraryExt, World, WorldExt};
use typst_layout::PagedDocument;

/// The embedded font files (open-licensed, see `fonts/COPYRIGHT-*`).
const FONT_FILES: [&[u8]; 4] = [
    include_bytes!("../../fonts/NotoSans-Regular.ttf"),
    include_bytes!("../../fonts/NotoSans-Bold.ttf"),
    include_bytes!("../../fonts/NotoSansCJK-Regular.ttc"),
    include_bytes!("../../fonts/NotoSansCJK-Bold.ttc"),
];

/// The font families the layouts and charts use, Latin first, CJK fallback.
pub const LATIN_FAMILY: &str = "Noto Sans";
pub const CJK_FAMILY: &str = "Noto Sans CJK SC";

#[derive(Debug, thiserror::Error)]
pub enum PdfError {
    #[error("Typst layout {template} failed:\n{}", .messages.join("\n"))]
    Compile {
        template: String,
        messages: Vec<String>,
    },
    #[error("writing the PDF of {template}:\n{}", .messages.join("\n"))]
    Export {
        template: String,
        messages: Vec<String>,
    },
    #[error("invalid path {path:?} for a file served to Typst")]
    Path { path: String },
}

impl crate::exit::Classify for PdfError {
    /// A layout that fails on the run's data, or a PDF that cannot be written, is a
    /// failed run.
    fn exit(&self) -> crate::exit::Exit {
        match self {
            Self::Compile { .. } | Self::Export { .. } | Self::Path { .. } => {
                crate::exit::Exit::Failed
            }
        }
    }
}

/// Fonts parsed once per process.
struct Fonts {
    book: LazyHash<FontBook>,
    fonts: Vec<Font>,
}

fn fonts() -> &'static Fonts {
    static FONTS: OnceLock<Fonts> = OnceLock::new();
    FONTS.get_or_init(|| {
        // Only the faces that may be served are parsed into Typst fonts (which reads
        // each face's whole character map): the CJK collections hold ten faces each.
        let fonts: Vec<Font> = FONT_FILES
            .iter()
            .flat_map(|data| {
                let bytes = Bytes::new(*data);
                (0..ttf_parser::fonts_in_collection(data).unwrap_or(1))
                    .filter(|&index| may_be_served(data, index))
                    .filter_map(move |index| Font::new(bytes.clone(), index))
            })
            .filter(|f| served(&f.info().family))
            .collect();
        Fonts {
            book: LazyHash::new(FontBook::from_fonts(&fonts)),
            fonts,
        }
    })
}

/// Whether a face of the embedded files is served to Typst: the Latin family and the
/// Simplified Chinese face of the CJK collection only. The collection also holds the
/// JP, KR, TC and HK faces (same glyph data, regional shapes); a chart's SVG names
/// "Noto Sans" first, and for a Chinese character usvg asks Typst's fallback, which
/// among equally good CJK faces picks the collection's first, Japanese one. With only
/// the SC face in the book, every fallback, in charts and text, is SC.
fn served(family: &str) -> bool {
    family == LATIN_FAMILY || family == CJK_FAMILY
}

/// Whether face `index` of a font file names a served family ([`served`] decides on
/// the family Typst reads): a name record of the family (ID 1) or the typographic
/// family (ID 16) that starts with a served family's name. Cheap: the name table only.
fn may_be_served(data: &[u8], index: u32) -> bool {
    let Ok(face) = ttf_parser::Face::parse(data, index) else {
        return false;
    };
    face.names().into_iter().any(|name| {
        (name.name_id == ttf_parser::name_id::FAMILY
            || name.name_id == ttf_parser::name_id::TYPOGRAPHIC_FAMILY)
            && name.to_string().is_some_and(|n| {
                n.starts_with(CJK_FAMILY) || (n.starts_with(LATIN_FAMILY) && !n.contains("CJK"))
            })
    })
}

fn library() -> &'static LazyHash<Library> {
    static LIBRARY: OnceLock<LazyHash<Library>> = OnceLock::new();
    LIBRARY.get_or_init(|| LazyHash::new(Library::default()))
}

/// Names of the embedded font families (for `check` and tests).
pub fn font_families() -> Vec<String> {
    let mut names: Vec<String> = fonts()
        .fonts
        .iter()
        .map(|f| f.info().family.clone())
        .collect();
    names.sort();
    names.dedup();
    names
}

/// One document to render.
pub struct Document {
    /// How the template is named in error messages (its path for the user).
    pub template_name: String,
    pub template: String,
    /// Files the template may read or import, by path (`common.typ`, `data.json`,
    /// `charts/x.svg`).
    pub files: Vec<(String, Vec<u8>)>,
    /// The run's reference time: Typst's `today()` and the PDF creation date.
    pub reference: DateTime<Utc>,
    /// A stable identifier of the document (same report, period and language).
    pub ident: String,
}

struct ReportWorld {
    main: FileId,
    source: Source,
    files: HashMap<FileId, Bytes>,
    today: Datetime,
}

fn file_id(path: &str) -> Result<FileId, PdfError> {
    let vpath = VirtualPath::new(path).map_err(|_| PdfError::Path {
        path: path.to_owned(),
    })?;
    Ok(RootedPath::new(VirtualRoot::Project, vpath).intern())
}

impl World for ReportWorld {
    fn library(&self) -> &LazyHash<Library> {
        library()
    }

    fn book(&self) -> &LazyHash<FontBook> {
        &fonts().book
    }

    fn main(&self) -> FileId {
        self.main
    }

    fn source(&self, id: FileId) -> FileResult<Source> {
        if id == self.main {
            return Ok(self.source.clone());
        }
        // Modules the template imports (`common.typ`) are served like any file.
        let bytes = self.file(id)?;
        let text = std::str::from_utf8(&bytes).map_err(|_| FileError::InvalidUtf8)?;
        Ok(Source::new(id, text.to_owned()))
    }

    fn file(&self, id: FileId) -> FileResult<Bytes> {
        if id == self.main {
            return Ok(Bytes::from_string(self.source.text().to_owned()));
        }
        self.files.get(&id).cloned().ok_or_else(|| {
            FileError::NotFound(id.vpath().get_with_slash().trim_start_matches('/').into())
        })
    }

    fn font(&self, index: usize) -> Option<Font> {
        fonts().fonts.get(index).cloned()
    }

    fn today(&self, _offset: Option<Duration>) -> Option<Datetime> {
        Some(self.today)
    }
}

fn datetime(t: DateTime<Utc>) -> Datetime {
    Datetime::from_ymd_hms(
        t.year(),
        t.month() as u8,
        t.day() as u8,
        t.hour() as u8,
        t.minute() as u8,
        t.second() as u8,
    )
    .expect("a valid UTC time")
}

/// Time spent in Typst's two steps.
#[derive(Debug, Clone, Copy, Default)]
pub struct PdfTimings {
    pub compile: std::time::Duration,
    pub export: std::time::Duration,
}

/// Compiles the template and writes the PDF bytes.
pub fn render(doc: &Document) -> Result<Vec<u8>, PdfError> {
    render_timed(doc).map(|(pdf, _)| pdf)
}

/// [`render`], also reporting how long compiling and exporting took.
pub fn render_timed(doc: &Document) -> Result<(Vec<u8>, PdfTimings), PdfError> {
    let started = std::time::Instant::now();
    let main = file_id("report.typ")?;
    let mut files = HashMap::new();
    for (path, bytes) in &doc.files {
        files.insert(file_id(path)?, Bytes::new(bytes.clone()));
    }
    let world = ReportWorld {
        main,
        source: Source::new(main, doc.template.clone()),
        files,
        today: datetime(doc.reference),
    };
    let warned = typst::compile::<PagedDocument>(&world);
    for w in &warned.warnings {
        tracing::debug!(template = %doc.template_name, "typst: {}", describe(&world, &doc.template_name, w));
    }
    let document = warned.output.map_err(|errors| PdfError::Compile {
        template: doc.template_name.clone(),
        messages: describe_all(&world, &doc.template_name, &errors),
    })?;
    let compile = started.elapsed();
    let started = std::time::Instant::now();
    let options = typst_pdf::PdfOptions {
        ident: Smart::Custom(doc.ident.clone()),
        creator: Smart::Custom(Some(format!("cxreport {}", crate::VERSION))),
        timestamp: Some(typst_pdf::Timestamp::new_utc(datetime(doc.reference))),
        ..Default::default()
    };
    let pdf = typst_pdf::pdf(&document, &options).map_err(|errors| PdfError::Export {
        template: doc.template_name.clone(),
        messages: describe_all(&world, &doc.template_name, &errors),
    })?;
    Ok((
        pdf,
        PdfTimings {
            compile,
            export: started.elapsed(),
        },
    ))
}

fn describe_all(
    world: &ReportWorld,
    template_name: &str,
    errors: &[SourceDiagnostic],
) -> Vec<String> {
    errors
        .iter()
        .map(|e| describe(world, template_name, e))
        .collect()
}

/// `template:line:column: error: message (hint: …)`.
fn describe(world: &ReportWorld, template_name: &str, d: &SourceDiagnostic) -> String {
    let severity = match d.severity {
        Severity::Error => "error",
        Severity::Warning => "warning",
    };
    let at = d
        .span
        .id()
        .filter(|id| *id == world.main)
        .and_then(|_| world.range(d.span))
        .and_then(|r| world.source.lines().byte_to_line_column(r.start))
        .map(|(line, col)| format!("{template_name}:{}:{}: ", line + 1, col + 1))
        .unwrap_or_else(|| format!("{template_name}: "));
    let mut s = format!("{at}{severity}: {}", d.message);
    for h in &d.hints {
        s.push_str(&format!(" (hint: {})", h.v));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(template: &str) -> Document {
        Document {
            template_name: "test.typ".into(),
            template: template.into(),
            files: vec![(
                "data.json".into(),
                br#"{"name": "\u0023read(\"/etc/passwd\") $x$ ] <b> *bold*"}"#.to_vec(),
            )],
            reference: "2024-07-01T08:00:00Z".parse().unwrap(),
            ident: "test".into(),
        }
    }

    #[test]
    fn embedded_fonts_include_latin_and_cjk() {
        let families = font_families();
        assert!(families.iter().any(|f| f == LATIN_FAMILY), "{families:?}");
        assert!(families.iter().any(|f| f == CJK_FAMILY), "{families:?}");
    }

    #[test]
    fn only_the_simplified_chinese_face_of_the_cjk_collection_is_served() {
        assert_eq!(
            font_families(),
            vec![LATIN_FAMILY.to_owned(), CJK_FAMILY.to_owned()]
        );
        // Regular and bold of each.
        assert_eq!(fonts().fonts.len(), 4);
    }

    #[test]
    fn renders_data_literally_and_pins_today() {
        let pdf = render(&doc(r#"#let d = json("data.json")
#set text(font: ("Noto Sans", "Noto Sans CJK SC"))
#d.name — 中文 — #datetime.today().display()"#))
        .unwrap();
        assert!(pdf.starts_with(b"%PDF-"));
        // The same input gives the same bytes.
        assert_eq!(
            pdf,
            render(&doc(r#"#let d = json("data.json")
#set text(font: ("Noto Sans", "Noto Sans CJK SC"))
#d.name — 中文 — #datetime.today().display()"#))
            .unwrap()
        );
    }

    #[test]
    fn files_outside_what_is_served_are_not_readable_and_errors_name_the_line() {
        let err = render(&doc("Hello\n#read(\"/etc/passwd\")"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("test.typ:2:"), "{err}");
        assert!(err.contains("not found"), "{err}");
        let err = render(&doc("#let x = \n#nonsense("))
            .unwrap_err()
            .to_string();
        assert!(err.contains("test.typ:"), "{err}");
    }
}
