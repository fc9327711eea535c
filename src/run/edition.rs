//! One language edition of a report: the narrative rendered in that language, the
//! localized charts, the `data.json` the Typst layout reads (every number already
//! formatted for the locale; the report supplies its own part) and the PDF.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::intercom::window::Window;
use crate::render::charts::{self, ChartSpec, EngineError, RenderedChart};
use crate::render::narrative::{sentences, Narrative, Sentences};
use crate::render::pdf::{self, PdfError};
use crate::render::templates::{Language, NarrativeError, Templates};
use crate::reports::period::covered;
use crate::reports::{period_label, Computed, Plan, Report};

#[derive(Debug, thiserror::Error)]
pub enum EditionError {
    #[error(transparent)]
    Narrative(#[from] NarrativeError),
    #[error(transparent)]
    Chart(#[from] EngineError),
    #[error(transparent)]
    Pdf(#[from] PdfError),
}

impl crate::exit::Classify for EditionError {
    fn exit(&self) -> crate::exit::Exit {
        match self {
            Self::Narrative(e) => e.exit(),
            Self::Chart(e) => e.exit(),
            Self::Pdf(e) => e.exit(),
        }
    }
}

/// How much of an edition a PDF holds: the `brief` (page 1, the chart of its lead
/// message, the recommendations and the findings they follow from) for readers with
/// minutes, or the `full` report (the brief, then every chart, table and appendix). The CSVs and summary.json are the
/// same for both; Typst reads the depth from data.json.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Depth {
    Brief,
    #[default]
    Full,
}

impl Depth {
    pub const ALL: [Depth; 2] = [Depth::Brief, Depth::Full];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Brief => "brief",
            Self::Full => "full",
        }
    }

    /// The PDF of `lang` at this depth: the full report keeps `report.<lang>.pdf`
    /// (what every reader and tool has opened so far), the brief says so in its name.
    pub fn pdf_name(self, lang: &str) -> String {
        match self {
            Self::Full => format!("report.{lang}.pdf"),
            Self::Brief => format!("report.{lang}.brief.pdf"),
        }
    }
}

impl std::fmt::Display for Depth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Depth {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "brief" => Ok(Self::Brief),
            "full" => Ok(Self::Full),
            other => Err(format!("unknown depth `{other}` (brief or full)")),
        }
    }
}

/// What the reproducibility appendix prints.
#[derive(Debug, Clone, Serialize)]
pub struct Provenance {
    pub database: String,
    /// `None`: a server's tables (no file to digest).
    pub sha256: Option<String>,
    pub parameters: Vec<(String, String)>,
    pub row_counts: Vec<(String, u64)>,
}

/// Where an edition's time went.
#[derive(Debug, Clone, Copy, Default)]
pub struct EditionTimings {
    pub narrative: std::time::Duration,
    pub charts: std::time::Duration,
    pub typst_compile: std::time::Duration,
    pub pdf_write: std::time::Duration,
}

pub struct Edition {
    pub lang: String,
    pub depth: Depth,
    pub timings: EditionTimings,
    pub pdf: Vec<u8>,
    pub charts: Vec<RenderedChart>,
    pub text: Sentences,
    /// The period as this edition prints it.
    pub period_label: String,
    /// The part of the window the data covers, when only part ("(data from
    /// 2024-01-08: 5.3 of 6 months)"): printed after the period.
    pub period_covered: Option<String>,
    /// Page 1's headlines' numbers (F1…), in their order, as the PDF prints them.
    pub headline_labels: Vec<String>,
    /// Each page-1 action's "(follows from F2)", as the PDF prints it ("": none).
    pub action_follows: Vec<String>,
}

/// The layout every report's `report.typ` imports (cover, tables, sections).
pub const COMMON_LAYOUT: &str = "common.typ";

/// What every edition of a run shares.
pub struct RunInfo<'a> {
    pub report: &'a str,
    pub period: &'a str,
    /// The window and the data's dates, for the part of it the data covers.
    pub window: Option<Window>,
    pub coverage: Option<Window>,
    pub provenance: &'a Provenance,
    pub reference: DateTime<Utc>,
    /// The run's time limit (chart rendering stops past it).
    pub deadline: Option<crate::clock::Deadline>,
    /// The watch rules that fired (each edition prints their sentence in its words).
    pub watch: &'a [super::watch::WatchResult],
    /// The edition's scope (the cover names whose companies it covers).
    pub scope: Option<&'a crate::intercom::scope::Scope>,
}

impl<'a> RunInfo<'a> {
    pub fn new(
        report: &dyn Report,
        plan: &'a Plan,
        provenance: &'a Provenance,
        reference: DateTime<Utc>,
    ) -> Self {
        Self {
            report: report.name(),
            period: &plan.period,
            window: plan.window,
            coverage: plan.coverage,
            provenance,
            reference,
            deadline: None,
            watch: &[],
            scope: None,
        }
    }
}

impl RunInfo<'_> {
    /// The part of the window the data covers, in `lang`'s words, when only part.
    fn covered(&self, lang: &Language) -> Option<String> {
        self.window
            .and_then(|w| covered(w, self.coverage))
            .map(|c| c.note(lang))
    }
}

pub fn render(
    computed: &dyn Computed,
    story: &Narrative,
    run: &RunInfo<'_>,
    templates: &Templates,
    lang: &str,
    depth: Depth,
) -> Result<Edition, EditionError> {
    let report = run.report;
    let mut timings = EditionTimings::default();
    let started = std::time::Instant::now();
    super::worker::stage(&format!("the narrative ({lang}, Tera templates)"));
    let language = templates.language_with(report, lang, &computed.variants())?;
    let text = sentences(story, &language)?;
    timings.narrative = started.elapsed();
    tracing::debug!(
        stage = "narrative",
        lang,
        elapsed_ms = super::ms(timings.narrative),
        findings = text.findings.len(),
        "stage finished"
    );
    let started = std::time::Instant::now();
    super::worker::stage(&format!("the charts ({lang})"));

    // The full report: every chart whose one message the claims module supports.
    // The brief: one, the chart of page 1's lead message, or a line saying why none.
    let (specs, lead) = match depth {
        Depth::Full => (charts::drawable(computed.charts(&language)), None),
        Depth::Brief => {
            let headlines: Vec<&str> = text.headlines().map(|x| x.id.as_str()).collect();
            match lead_chart(&headlines, computed.charts(&language)) {
                LeadChart::Drawn(spec, i) => (vec![*spec], Some(LeadNote::Drawn(i))),
                LeadChart::Untested(i) => (Vec::new(), Some(LeadNote::Untested(i))),
                LeadChart::Uncharted => (Vec::new(), Some(LeadNote::Uncharted)),
            }
        }
    };
    let mut rendered = Vec::with_capacity(specs.len());
    let mut chart_entries = Vec::with_capacity(specs.len());
    for spec in &specs {
        let chart = charts::render(spec, run.deadline)?;
        let takeaway = match &spec.takeaway {
            Some(t) => language.render("takeaways.tera", "c", t)?,
            None => String::new(),
        };
        chart_entries.push(json!({
            "id": spec.id,
            "file": format!("charts/{}.svg", spec.id),
            "takeaway": takeaway,
            "height": spec.height.unwrap_or(charts::HEIGHT),
        }));
        rendered.push(chart);
    }
    timings.charts = started.elapsed();
    tracing::debug!(
        stage = "charts",
        lang,
        elapsed_ms = super::ms(timings.charts),
        charts = rendered.len(),
        "stage finished"
    );

    let mut data = common_data(&language, &text, story, chart_entries, run, depth)?;
    if let (Value::Object(d), Some(lead)) = (&mut data, lead) {
        d.insert("lead_chart".into(), json!(lead.line(&language, &text)));
    }
    if let (Value::Object(d), Value::Object(own)) = (&mut data, computed.layout(&language)) {
        d.extend(own);
    }
    // A string with values the layout could not fill fails the edition, naming it.
    language.failure()?;
    let (template, template_name) = templates.get(&format!("{report}/report.typ"))?;
    let (common, _) = templates.get(COMMON_LAYOUT)?;
    let mut files = vec![
        (
            "data.json".to_owned(),
            serde_json::to_vec(&data).unwrap_or_default(),
        ),
        (COMMON_LAYOUT.to_owned(), common.into_owned().into_bytes()),
    ];
    for c in &rendered {
        files.push((format!("charts/{}.svg", c.id), c.svg.clone().into_bytes()));
    }
    super::worker::stage(&format!("the PDF layout ({lang}, Typst)"));
    let (pdf, t) = pdf::render_timed(&pdf::Document {
        template_name,
        template: template.into_owned(),
        files,
        reference: run.reference,
        ident: format!("cxreport/{report}/{}/{lang}/{depth}", run.period),
    })?;
    timings.typst_compile = t.compile;
    timings.pdf_write = t.export;
    tracing::debug!(
        stage = "PDF layout",
        lang,
        elapsed_ms = super::ms(t.compile),
        export_ms = super::ms(t.export),
        bytes = pdf.len(),
        "stage finished"
    );
    let headline_labels = numbered_findings(&language, &text)
        .into_iter()
        .filter(|x| x.headline)
        .map(|x| x.label)
        .collect();
    Ok(Edition {
        headline_labels,
        action_follows: action_follows(&language, &text, story),
        period_label: period_label(run.period, Some(&language)),
        period_covered: run.covered(&language),
        lang: lang.to_owned(),
        depth,
        timings,
        pdf,
        charts: rendered,
        text,
    })
}

/// The brief's one chart: the chart of the first page-1 headline (in page order)
/// that has a chart the claims module supports, or why there is none.
pub(crate) enum LeadChart {
    /// The chart and the headline it draws (its place among page 1's headlines).
    Drawn(Box<ChartSpec>, usize),
    /// Page 1's headlines have charts, none whose differences hold: the first
    /// headline that has one.
    Untested(usize),
    /// No page-1 headline is a chart's message.
    Uncharted,
}

/// Which chart the brief draws, from the run's headlines (`headlines`: their ids in
/// page order) and the report's charts (each naming the findings it carries): the
/// run's findings decide, not a chart's name.
pub(crate) fn lead_chart(headlines: &[&str], mut specs: Vec<ChartSpec>) -> LeadChart {
    let mut untested = None;
    for (i, id) in headlines.iter().enumerate() {
        let carries = |s: &ChartSpec| s.carries.contains(id);
        if let Some(at) = specs.iter().position(|s| carries(s) && s.support.holds()) {
            return LeadChart::Drawn(Box::new(specs.swap_remove(at)), i);
        }
        if untested.is_none() && specs.iter().any(carries) {
            untested = Some(i);
        }
    }
    untested.map_or(LeadChart::Uncharted, LeadChart::Untested)
}

/// The brief's line above its chart, or in its place.
#[derive(Debug, Clone, Copy, PartialEq)]
enum LeadNote {
    Drawn(usize),
    Untested(usize),
    Uncharted,
}

impl LeadNote {
    /// In `lang`'s words, naming the headline by its number (F1…).
    fn line(self, lang: &Language, text: &Sentences) -> String {
        let label = |i: usize| {
            numbered_findings(lang, text)
                .into_iter()
                .filter(|x| x.headline)
                .nth(i)
                .map(|x| x.label)
                .unwrap_or_default()
        };
        match self {
            Self::Drawn(i) => lang.fill("depth.chart_of", &json!({ "finding": label(i) })),
            Self::Untested(i) => lang.fill("depth.chart_untested", &json!({ "finding": label(i) })),
            Self::Uncharted => lang.strings.get("depth.chart_none"),
        }
    }
}

/// Whose companies a scoped edition covers, in `lang`'s words (the cover's line).
fn edition_line(lang: &Language, scope: &crate::intercom::scope::Scope) -> String {
    use crate::intercom::scope::ScopeRule;
    let or = lang.strings.get("document.edition_or");
    match &scope.rule {
        ScopeRule::Column(column) => lang.fill(
            "document.edition_column",
            &json!({ "column": column, "values": scope.values.join(&or) }),
        ),
        ScopeRule::TagPrefix(prefix) => {
            let tags: Vec<String> = scope
                .values
                .iter()
                .map(|v| format!("{prefix}{v}"))
                .collect();
            lang.fill("document.edition_tag", &json!({ "tags": tags.join(&or) }))
        }
    }
}

/// A finding with its number, and whether page 1 prints it as a headline.
struct Numbered<'a> {
    id: &'a str,
    label: String,
    text: &'a str,
    headline: bool,
}

/// The findings numbered in their order (F1…), the headlines among them marked.
fn numbered_findings<'a>(lang: &Language, text: &'a Sentences) -> Vec<Numbered<'a>> {
    let headlines: Vec<&str> = text.headlines().map(|x| x.id.as_str()).collect();
    text.findings
        .iter()
        .enumerate()
        .map(|(i, x)| Numbered {
            id: &x.id,
            label: lang.fill("depth.finding", &json!({ "n": i + 1 })),
            text: &x.text,
            headline: headlines.contains(&x.id.as_str()),
        })
        .collect()
}

/// Each page-1 action's reference to the finding it follows from, by number ("(follows
/// from F2)"; "" where that finding is not printed).
fn action_follows(lang: &Language, text: &Sentences, story: &Narrative) -> Vec<String> {
    let numbered = numbered_findings(lang, text);
    story
        .recommendations
        .iter()
        .take(text.actions.len())
        .map(|rec| {
            numbered
                .iter()
                .find(|x| x.id == rec.follows)
                .map(|x| lang.fill("depth.action_follows", &json!({ "finding": x.label })))
                .unwrap_or_default()
        })
        .collect()
}

/// The part of `data.json` every report's layout reads the same way.
fn common_data(
    lang: &Language,
    text: &Sentences,
    story: &Narrative,
    charts: Vec<Value>,
    run: &RunInfo<'_>,
    depth: Depth,
) -> Result<Value, EditionError> {
    let s = &lang.strings;
    let f = &lang.format;
    // Each finding is printed once, numbered F1…: a headline on page 1, the others
    // under the key findings; a recommendation names the number it follows from.
    let numbered = numbered_findings(lang, text);
    let follows: Vec<String> = story
        .recommendations
        .iter()
        .map(|rec| {
            numbered
                .iter()
                .find(|x| x.id == rec.follows)
                .map(|x| {
                    lang.fill(
                        "depth.follows",
                        &json!({ "finding": x.label, "headline": x.headline, "section": s.get("sections.findings") }),
                    )
                })
                .unwrap_or_default()
        })
        .collect();
    let provenance = run.provenance;
    let mut appendix = vec![
        [s.get("appendix.database"), provenance.database.clone()],
        [
            s.get("appendix.sha256"),
            provenance
                .sha256
                .clone()
                .unwrap_or_else(|| s.get("appendix.sha256_server")),
        ],
        [s.get("appendix.version"), crate::VERSION.to_owned()],
        [
            s.get("appendix.charts_engine"),
            format!("ECharts {} (QuickJS)", charts::ECHARTS_VERSION),
        ],
        [
            s.get("appendix.reference_time"),
            crate::source::timestamp::format_utc(run.reference) + " UTC",
        ],
    ];
    for (k, v) in &provenance.parameters {
        appendix.push([format!("{} · {k}", s.get("appendix.parameters")), v.clone()]);
    }
    for (k, v) in &provenance.row_counts {
        appendix.push([
            format!("{} · {k}", s.get("appendix.rows")),
            f.count(*v as f64),
        ]);
    }
    let label = period_label(run.period, Some(lang));
    let watch = run
        .watch
        .iter()
        .map(|w| w.sentence(lang))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(json!({
        "strings": s.to_json(),
        "period": { "label": label, "covered": run.covered(lang) },
        "generated": run.reference.format("%Y-%m-%d").to_string(),
        "edition": run.scope.map(|scope| edition_line(lang, scope)),
        "depth": depth.as_str(),
        "headlines": numbered.iter().filter(|x| x.headline).map(|x| json!({ "label": x.label, "text": x.text })).collect::<Vec<_>>(),
        "numbered": numbered.iter().filter(|x| !x.headline).map(|x| json!({ "label": x.label, "text": x.text })).collect::<Vec<_>>(),
        "headline_labels": lang.fill("depth.headlines_listed", &json!({ "findings": numbered.iter().filter(|x| x.headline).map(|x| x.label.as_str()).collect::<Vec<_>>() })),
        "actions": text.actions.iter().map(|x| &x.text).collect::<Vec<_>>(),
        "action_follows": action_follows(lang, text, story),
        "findings": text.findings.iter().map(|x| &x.text).collect::<Vec<_>>(),
        "analysis": text.analysis.iter().map(|x| json!({ "section": x.section, "id": x.id, "text": x.text })).collect::<Vec<_>>(),
        "recommendations": text.recommendations.iter().zip(&follows).map(|(x, f)| json!({ "text": x.text, "follows": f })).collect::<Vec<_>>(),
        "charts": charts,
        "appendix": appendix,
        "watch": watch,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::charts::Support;
    use crate::stats::claims::Verdict;

    fn spec(id: &'static str, carries: &'static [&'static str], holds: bool) -> ChartSpec {
        let verdict = if holds {
            Verdict::Higher
        } else {
            Verdict::NoClearDifference
        };
        ChartSpec {
            id,
            chart: charming::Chart::new(),
            takeaway: None,
            height: None,
            support: Support::Differences(vec![verdict]),
            carries,
        }
    }

    fn drawn(c: LeadChart) -> Option<(&'static str, usize)> {
        match c {
            LeadChart::Drawn(s, i) => Some((s.id, i)),
            _ => None,
        }
    }

    #[test]
    fn the_brief_draws_the_chart_of_the_first_headline_that_has_one_that_holds() {
        let specs = || {
            vec![
                spec("rates", &["conversion"], false),
                spec("scatter", &["bot_retention"], true),
                spec("bars", &["conversion"], true),
            ]
        };
        // The run's headlines decide: whichever leads gets its chart.
        assert_eq!(
            drawn(lead_chart(&["bot_retention", "conversion"], specs())),
            Some(("scatter", 0))
        );
        // A finding's first chart that holds (its untested one is passed over).
        assert_eq!(
            drawn(lead_chart(&["conversion", "bot_retention"], specs())),
            Some(("bars", 0))
        );
        // A headline without a chart gives way to the next one that has one.
        assert_eq!(
            drawn(lead_chart(&["period_change", "bot_retention"], specs())),
            Some(("scatter", 1))
        );
        // Charts whose differences do not hold are not drawn: the line says why.
        assert!(matches!(
            lead_chart(
                &["period_change", "conversion"],
                vec![spec("rates", &["conversion"], false)]
            ),
            LeadChart::Untested(1)
        ));
        assert!(matches!(
            lead_chart(&["nothing_stands_out"], specs()),
            LeadChart::Uncharted
        ));
        assert!(matches!(lead_chart(&[], specs()), LeadChart::Uncharted));
    }
}
