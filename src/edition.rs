//! One language edition of the conversation-usage report: the narrative rendered in
//! that language, the localized charts, the `data.json` the Typst layout reads (every
//! number already formatted for the locale), and the PDF.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{json, Value};

use crate::charts::{self, EngineError, RenderedChart};
use crate::metrics::{ConversationUsage, SliceRow, UsageDefinitions};
use crate::narrative::{self, Finding, Language, NarrativeError, Recommendation, Templates};
use crate::pdf::{self, PdfError};

pub const REPORT: &str = "conversation-usage";

#[derive(Debug, thiserror::Error)]
pub enum EditionError {
    #[error(transparent)]
    Narrative(#[from] NarrativeError),
    #[error(transparent)]
    Chart(#[from] EngineError),
    #[error(transparent)]
    Pdf(#[from] PdfError),
}

/// The findings and recommendations of a run, language-neutral (summary.json).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Narrative {
    pub findings: Vec<Finding>,
    pub recommendations: Vec<Recommendation>,
}

impl Narrative {
    pub fn of(r: &ConversationUsage) -> Self {
        let findings = narrative::findings(r);
        let recommendations = narrative::recommendations(r, &findings);
        Self {
            findings,
            recommendations,
        }
    }
}

/// A rendered sentence with the record it came from.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Sentence {
    pub id: String,
    pub text: String,
}

/// What the reproducibility appendix prints.
#[derive(Debug, Clone, Serialize)]
pub struct Provenance {
    pub database: String,
    pub sha256: String,
    pub parameters: Vec<(String, String)>,
    pub row_counts: Vec<(String, i64)>,
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
    pub timings: EditionTimings,
    pub pdf: Vec<u8>,
    pub charts: Vec<RenderedChart>,
    pub findings: Vec<Sentence>,
    pub recommendations: Vec<Sentence>,
}

/// Number of findings on the cover.
const HEADLINES: usize = 5;

pub fn render(
    r: &ConversationUsage,
    story: &Narrative,
    provenance: &Provenance,
    reference: DateTime<Utc>,
    templates: &Templates,
    lang: &str,
) -> Result<Edition, EditionError> {
    let mut timings = EditionTimings::default();
    let started = std::time::Instant::now();
    let language = templates.language(REPORT, lang)?;
    let (findings, recommendations) = sentences(story, &language)?;
    timings.narrative = started.elapsed();
    let started = std::time::Instant::now();

    let specs = charts::conversation_usage(r, &language.strings);
    let mut rendered = Vec::with_capacity(specs.len());
    let mut chart_entries = Vec::with_capacity(specs.len());
    for spec in &specs {
        let chart = charts::render(spec)?;
        let takeaway = match &spec.takeaway {
            Some(t) => language.render("takeaways.tera", "c", t)?,
            None => String::new(),
        };
        chart_entries
            .push(json!({ "file": format!("charts/{}.svg", spec.id), "takeaway": takeaway }));
        rendered.push(chart);
    }

    timings.charts = started.elapsed();
    let data = data_json(
        r,
        &language,
        &findings,
        &recommendations,
        story,
        chart_entries,
        provenance,
        reference,
    );
    let (template, template_name) = templates.get(&format!("{REPORT}/report.typ"))?;
    let mut files = vec![(
        "data.json".to_owned(),
        serde_json::to_vec(&data).unwrap_or_default(),
    )];
    for c in &rendered {
        files.push((format!("charts/{}.svg", c.id), c.svg.clone().into_bytes()));
    }
    let (pdf, t) = pdf::render_timed(&pdf::Document {
        template_name,
        template: template.into_owned(),
        files,
        reference,
        ident: format!("cxreport/{REPORT}/{}/{lang}", r.window.period()),
    })?;
    timings.typst_compile = t.compile;
    timings.pdf_write = t.export;
    Ok(Edition {
        lang: lang.to_owned(),
        timings,
        pdf,
        charts: rendered,
        findings,
        recommendations,
    })
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
        .map(|f| render("findings.tera", "f", f.id, narrative::as_value(f)))
        .collect::<Result<_, NarrativeError>>()?;
    let recommendations = story
        .recommendations
        .iter()
        .map(|x| render("recommendations.tera", "r", x.id, narrative::as_value(x)))
        .collect::<Result<_, NarrativeError>>()?;
    Ok((findings, recommendations))
}

#[allow(clippy::too_many_arguments)]
fn data_json(
    r: &ConversationUsage,
    lang: &Language,
    findings: &[Sentence],
    recommendations: &[Sentence],
    story: &Narrative,
    charts: Vec<Value>,
    provenance: &Provenance,
    reference: DateTime<Utc>,
) -> Value {
    let s = &lang.strings;
    let f = &lang.format;
    let count = |n: usize| f.count(n as f64);
    let opt_min = |v: Option<f64>| f.opt(v, |f, v| f.number(v, 1));
    let opt_pct = |v: Option<f64>| f.opt(v, |f, v| f.percent(v));
    let label = |dim: &str, v: Option<&str>| v.map(|v| s.label(dim, v)).unwrap_or_default();
    let short = |dim: &str, v: Option<&str>| {
        v.map(|v| s.label(&format!("short_{dim}"), v))
            .unwrap_or_default()
    };

    let t = &r.thresholds;
    let bounds = |b: &crate::metrics::Bounds| match (b.p1, b.p99) {
        (Some(lo), Some(hi)) => format!(
            "{} – {} ({} {})",
            f.number(lo, 1),
            f.number(hi, 1),
            count(b.values),
            s.get("scope.values")
        ),
        _ => "—".to_owned(),
    };
    let usage = match r.usage_source {
        UsageDefinitions::Events => s.get("scope.usage_events"),
        UsageDefinitions::Proxy => s.get("scope.usage_proxy"),
    };
    let period_label = format!(
        "{} – {}",
        r.window.start.format("%Y-%m-%d"),
        r.window.end.format("%Y-%m-%d")
    );
    let scope_rows = vec![
        [s.get("scope.window"), period_label.clone()],
        [s.get("scope.usage_source"), usage],
        [
            s.get("scope.conversations_in_window"),
            count(r.counts.conversations_in_window),
        ],
        [
            format!("  − {}", s.get("scope.unmapped")),
            count(r.data_quality.unmapped_conversations),
        ],
        [
            s.get("scope.in_scope"),
            count(r.counts.conversations_in_scope),
        ],
        [
            format!("  − {}", s.get("scope.excluded")),
            count(r.counts.conversations_excluded),
        ],
        [s.get("scope.kept"), count(r.counts.conversations_kept)],
        [s.get("scope.response_bounds"), bounds(&t.response_minutes)],
        [s.get("scope.duration_bounds"), bounds(&t.duration_minutes)],
        [
            s.get("scope.companies_paying"),
            count(r.counts.companies_paying),
        ],
        [
            s.get("scope.companies_kept"),
            count(r.counts.companies_kept),
        ],
        [s.get("scope.min_cell"), count(r.min_cell)],
    ];

    let panel_header = [
        "columns.segment",
        "columns.seat_bucket",
        "columns.arr_bucket",
        "columns.companies",
        "columns.conversations",
        "columns.avg_resp",
        "columns.p90_resp",
        "columns.bot_share",
        "columns.conversion",
        "columns.weekly",
        "columns.monthly",
    ]
    .map(|k| s.get(k));
    let panel_row = |c: &SliceRow| {
        vec![
            label("segment", c.segment),
            short("seat_bucket", c.seat_bucket),
            short("arr_bucket", c.arr_bucket),
            count(c.companies_total),
            count(c.conv_cnt),
            opt_min(c.avg_resp),
            opt_min(c.p90_resp),
            opt_pct(c.bot_first_resp_share),
            opt_pct(c.conv_to_feature_rate),
            opt_pct(c.weekly_retention),
            opt_pct(c.monthly_retention),
        ]
    };
    let mut panel_rows: Vec<Vec<String>> =
        r.panels.segment_seat_arr.iter().map(panel_row).collect();
    let mut overall = panel_row(&r.panels.overall);
    overall[0] = s.get("labels.overall");
    panel_rows.push(overall);
    let small: Vec<bool> = r
        .panels
        .segment_seat_arr
        .iter()
        .map(|c| c.companies_total < r.min_cell)
        .chain([false])
        .collect();

    let c = &r.correlations;
    let corr = |key: &str, x: &crate::metrics::Correlation| {
        vec![s.get(key), f.opt(x.r, |f, v| f.number(v, 2)), count(x.n)]
    };
    let correlations = vec![
        corr("diagnostics.bot_conversion", &c.bot_share_vs_conversion),
        corr("diagnostics.resp_conversion", &c.avg_resp_vs_conversion),
        corr("diagnostics.bot_weekly", &c.bot_share_vs_weekly_retention),
        corr("diagnostics.bot_monthly", &c.bot_share_vs_monthly_retention),
        corr(
            "diagnostics.company_bot_converted",
            &c.company_bot_share_vs_converted,
        ),
        corr(
            "diagnostics.company_resp_converted",
            &c.company_avg_resp_vs_converted,
        ),
    ];
    let tertiles: Vec<Vec<String>> = r
        .tertiles
        .iter()
        .map(|g| {
            vec![
                format!(
                    "{}{}{}",
                    s.label("segment", g.segment),
                    s.get("labels.separator"),
                    s.label("arr_bucket", g.arr_bucket)
                ),
                s.get(&format!("diagnostics.by_{}", g.by)),
                s.get(&format!("groups.{}", g.group)),
                count(g.n),
                opt_pct(g.mean_bot_share),
                opt_min(g.mean_avg_resp),
                opt_pct(g.conversion),
                opt_pct(g.weekly_retention),
            ]
        })
        .collect();

    let dq = &r.data_quality;
    let quality_rows = vec![
        [s.get("quality.unmapped"), count(dq.unmapped_conversations)],
        [
            s.get("quality.no_created"),
            count(dq.conversations_without_created_at),
        ],
        [
            s.get("quality.no_metrics"),
            count(dq.in_scope_without_metrics_row),
        ],
        [s.get("quality.non_paying"), count(dq.companies_non_paying)],
    ];
    let coverage = vec![
        [
            s.get("columns.segment"),
            count(dq.coverage_segment.tag),
            count(dq.coverage_segment.fallback),
        ],
        [
            s.get("columns.seat_bucket"),
            count(dq.coverage_seat_bucket.tag),
            count(dq.coverage_seat_bucket.fallback),
        ],
        [
            s.get("columns.arr_bucket"),
            count(dq.coverage_arr_bucket.tag),
            count(dq.coverage_arr_bucket.fallback),
        ],
    ];
    // Company names are data: they travel as strings and Typst prints them as text.
    let duplicates: Vec<[String; 2]> = dq
        .duplicate_names
        .iter()
        .map(|d| {
            let companies = d
                .companies
                .iter()
                .map(|c| format!("{} ({})", c.company_id, f.number(c.monthly_spend, 2)))
                .collect::<Vec<_>>()
                .join(", ");
            [
                d.companies
                    .first()
                    .map(|c| c.company_name.clone())
                    .unwrap_or_default(),
                companies,
            ]
        })
        .collect();
    let bad: Vec<[String; 2]> = dq
        .bad_timestamps
        .0
        .iter()
        .map(|(k, v)| [k.clone(), f.count(*v as f64)])
        .collect();
    let mut limitations = s.list("quality.limitations");
    limitations.push(match r.usage_source {
        UsageDefinitions::Events => s.get("quality.limitation_events"),
        UsageDefinitions::Proxy => s.get("quality.limitation_proxy"),
    });

    let follows: Vec<String> = story
        .recommendations
        .iter()
        .map(|rec| {
            findings
                .iter()
                .find(|x| x.id == rec.follows)
                .map(|x| x.text.clone())
                .unwrap_or_default()
        })
        .collect();

    let mut appendix = vec![
        [s.get("appendix.database"), provenance.database.clone()],
        [s.get("appendix.sha256"), provenance.sha256.clone()],
        [s.get("appendix.version"), crate::VERSION.to_owned()],
        [
            s.get("appendix.charts_engine"),
            format!("ECharts {} (QuickJS)", charts::ECHARTS_VERSION),
        ],
        [
            s.get("appendix.reference_time"),
            crate::timestamp::format_utc(reference) + " UTC",
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

    json!({
        "strings": s.to_json(),
        "period": { "label": period_label },
        "generated": reference.format("%Y-%m-%d").to_string(),
        "headlines": findings.iter().take(HEADLINES).map(|x| &x.text).collect::<Vec<_>>(),
        "findings": findings.iter().map(|x| &x.text).collect::<Vec<_>>(),
        "recommendations": recommendations.iter().zip(&follows).map(|(x, f)| json!({ "text": x.text, "follows": f })).collect::<Vec<_>>(),
        "charts": charts,
        "scope": { "rows": scope_rows, "definitions": s.list("scope.definitions") },
        "panel": { "header": panel_header, "rows": panel_rows, "small": small },
        "correlations": correlations,
        "tertiles": tertiles,
        "quality": {
            "rows": quality_rows,
            "coverage": coverage,
            "duplicates": duplicates,
            "bad_timestamps": bad,
            "limitations": limitations,
        },
        "appendix": appendix,
    })
}
