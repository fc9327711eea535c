//! `cxreport check`: every problem of a configuration, its templates, the embedded
//! fonts and the databases its jobs read, listed at once.

use std::path::Path;

use super::config::{Config, Transport};
use super::job::request_on;
use crate::render::pdf;
use crate::run;

/// What `check` found: the problems, and notes that are not problems.
#[derive(Debug, Default)]
pub struct Findings {
    pub problems: Vec<String>,
    pub notes: Vec<String>,
}

/// Checks the configuration at `config_path`; `db` replaces every job's database.
pub fn check(config_path: &Path, db: Option<&Path>) -> Findings {
    let mut problems: Vec<String> = Vec::new();
    let mut notes: Vec<String> = Vec::new();
    let config = match Config::load(config_path) {
        Ok(c) => Some(c),
        Err(e) => {
            problems.push(e.to_string());
            None
        }
    };
    let families = pdf::font_families();
    for want in [pdf::LATIN_FAMILY, pdf::CJK_FAMILY] {
        if !families.iter().any(|f| f == want) {
            problems.push(format!(
                "font family `{want}` is not embedded (have: {})",
                families.join(", ")
            ));
        }
    }
    if let Some(config) = &config {
        let templates = config.templates();
        for job in &config.jobs {
            for lang in &job.languages {
                if let Err(e) = templates.language(&job.report, lang) {
                    problems.push(format!("job `{}`: {e}", job.name));
                }
            }
            if let Err(e) = templates.get(&format!("{}/report.typ", job.report)) {
                problems.push(format!("job `{}`: {e}", job.name));
            }
            let database = db
                .map(Path::to_owned)
                .or_else(|| job.database.clone())
                .or_else(|| config.defaults.database.clone());
            match database {
                Some(path) => {
                    let req = request_on(config, job, path);
                    if let Err(e) = run::check_database(&req) {
                        problems.push(format!("job `{}`: {e}", job.name));
                    }
                }
                None => notes.push(format!(
                    "job `{}`: uses the built-in demo database",
                    job.name
                )),
            }
        }
        if let Some(smtp) = &config.smtp {
            if let Transport::Smtp {
                password_env: Some(var),
                ..
            } = &smtp.transport
            {
                if std::env::var_os(var).is_none() {
                    problems.push(format!(
                        "smtp.password_env: environment variable {var} is not set"
                    ));
                }
            }
        }
    }
    Findings { problems, notes }
}
