//! `schedules.toml`: defaults, SMTP and jobs. Strict: unknown keys are rejected, and
//! every problem names the file, the key and the reason, all of them at once. Secrets
//! never live in the file: the SMTP password comes from the environment variable the
//! file names.
//!
//! This module holds the validated configuration the rest of `jobs/` reads (`Config`,
//! `Job`, `Smtp`, …) and its errors; `validate` reads the file into it (the file as
//! written, and the validator that checks every key).

mod validate;

pub use validate::deliverable;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use chrono_tz::Tz;
use lettre::message::Mailbox;

use crate::intercom::window::WindowSpec;
use crate::jobs::schedule::{Catchup, CronExpr};
use crate::render::templates::Templates;
use crate::reports::Options;
use crate::run::{Depth, Location, Mapping};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    // The cause is in the message and not also a `source`: printed with its chain
    // (`{:#}`) it would be said twice.
    #[error("cannot read {path}: {cause}{}", read_hint(.path, .cause))]
    Read {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("{path}: {message}")]
    Toml { path: PathBuf, message: String },
    #[error("{path} has {} problem(s):\n{}", .problems.len(), .problems.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n"))]
    Invalid {
        path: PathBuf,
        problems: Vec<Problem>,
    },
}

impl crate::exit::Classify for ConfigError {
    /// The configuration is the user's.
    fn exit(&self) -> crate::exit::Exit {
        match self {
            Self::Read { .. } | Self::Toml { .. } | Self::Invalid { .. } => {
                crate::exit::Exit::Usage
            }
        }
    }
}

/// What to do about a configuration file that cannot be read.
fn read_hint(path: &Path, e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => format!(
            "; give the configuration with `--config <file>`, or create {} (the README's \
             \"Scheduling and delivery\" describes it; schedules.toml at the top of the \
             repository is a working example)",
            path.display()
        ),
        std::io::ErrorKind::PermissionDenied => {
            "; run as a user who may read it, or make it readable to this one".to_owned()
        }
        _ => String::new(),
    }
}

/// One problem with one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub key: String,
    pub reason: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}`: {}", self.key, self.reason)
    }
}

// ---------------------------------------------------------------------------
// The validated configuration.

#[derive(Debug, Clone)]
pub struct Config {
    pub path: PathBuf,
    pub defaults: Defaults,
    pub smtp: Option<Smtp>,
    pub jobs: Vec<Job>,
}

/// A run's time limit unless `defaults.run_timeout_secs` says otherwise.
pub const DEFAULT_RUN_TIMEOUT_SECS: u64 = crate::run::DEFAULT_TIME_LIMIT.as_secs();

#[derive(Debug, Clone)]
pub struct Defaults {
    /// The database jobs read unless they name their own.
    pub database: Option<DataSource>,
    /// The environment variable with the PostgreSQL password (default `PGPASSWORD`).
    pub database_password_env: Option<String>,
    /// `[defaults.mapping]` as written (each job lays its own keys over it).
    pub mapping: Option<toml::Table>,
    pub output_dir: PathBuf,
    pub timezone: Tz,
    pub languages: Vec<String>,
    pub source_timezone: Tz,
    pub templates: Option<PathBuf>,
    /// Queries and chart rendering of one run stop past this.
    pub run_timeout: std::time::Duration,
}

/// Where a job's data is: a database, or the built-in demo data when the
/// configuration says so (`database = "demo"`): never by default, so a job whose
/// database was forgotten cannot mail numbers that are not the customer's.
#[derive(Debug, Clone, PartialEq)]
pub enum DataSource {
    Demo,
    At(Location),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    StartTls,
    Tls,
    None,
}

#[derive(Debug, Clone)]
pub enum Transport {
    Smtp {
        host: String,
        port: u16,
        tls: TlsMode,
        username: Option<String>,
        /// Name of the environment variable holding the password.
        password_env: Option<String>,
        /// A CA certificate (PEM) trusted besides the public roots.
        ca_file: Option<PathBuf>,
    },
    /// Messages are written as `.eml` files into this directory.
    Outbox(PathBuf),
}

#[derive(Debug, Clone)]
pub struct Smtp {
    pub transport: Transport,
    pub from: Mailbox,
    pub timeout: std::time::Duration,
    pub max_attachment_bytes: u64,
    pub attach_csv: bool,
    pub max_attempts: u32,
    pub backoff: std::time::Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overlap {
    Forbid,
    Allow,
}

#[derive(Debug, Clone)]
pub struct Job {
    pub name: String,
    pub report: String,
    pub cron: CronExpr,
    pub timezone: Tz,
    pub window: WindowSpec,
    pub catchup: Catchup,
    pub max_catchup: usize,
    pub overlap: Overlap,
    pub owners: Vec<Mailbox>,
    /// `[job.recipients]`, then each `[[job.audience]]`: who gets which language at
    /// which depth; the job's editions are these languages.
    pub lists: Vec<RecipientList>,
    pub languages: Vec<String>,
    pub database: DataSource,
    /// The mapping in force for the job (`[defaults.mapping]`, then the job's).
    pub mapping: Mapping,
    /// Where the job's reports go: `output_dir/<output or name>/<period>/`.
    pub output: PathBuf,
    /// The report's own options, as written (the report checks them at load).
    pub options: Options,
    /// Changes that lead the email subject and are recorded with the run.
    pub watch: Vec<WatchRule>,
    /// `burst = { column = "region" }`: one edition per value found in the data,
    /// each mailed to its value's recipients (`lists` is then empty).
    pub burst: Option<Burst>,
}

/// A bursted job's editions: one per value the data holds under `by`, each to its
/// own recipients (`[job.burst.recipients.<value>]`); a value found without
/// recipients is written, not mailed.
#[derive(Debug, Clone, PartialEq)]
pub struct Burst {
    pub by: crate::intercom::scope::ScopeRule,
    /// The values given recipients, by folder.
    pub values: Vec<BurstValue>,
}

/// One value of a [`Burst`] and who gets its edition.
#[derive(Debug, Clone, PartialEq)]
pub struct BurstValue {
    /// As written (`CN`).
    pub written: String,
    /// The value in label form, its edition's folder and ledger key (`cn`).
    pub folder: String,
    pub lists: Vec<RecipientList>,
}

impl Burst {
    /// The value whose folder is `folder`, if it has recipients.
    pub fn value(&self, folder: &str) -> Option<&BurstValue> {
        self.values.iter().find(|v| v.folder == folder)
    }

    /// The rule as `check` and the logs print it: `column region`, `tag prefix region:`.
    pub fn describe(&self) -> String {
        match &self.by {
            crate::intercom::scope::ScopeRule::Column(c) => format!("column `{c}`"),
            crate::intercom::scope::ScopeRule::TagPrefix(p) => format!("tag prefix `{p}`"),
        }
    }
}

impl BurstValue {
    /// The editions its recipients get ([`Job::mailed`] of its lists).
    pub fn mailed(&self) -> Vec<MailedEdition> {
        mailed_of(&self.lists)
    }

    /// The languages it is mailed in.
    pub fn languages(&self) -> Vec<String> {
        let mut l: Vec<String> = self.mailed().into_iter().map(|e| e.lang).collect();
        l.sort();
        l.dedup();
        l
    }

    /// The depths its run renders ([`Job::depths`] of its lists).
    pub fn depths(&self) -> Vec<Depth> {
        depths_of(&self.lists)
    }
}

pub use crate::run::watch::WatchRule;

/// One list of recipients: language → addresses, and the depth its PDFs are
/// (`[job.recipients]`: full unless it says `depth`; a `[[job.audience]]` names
/// itself). Any table of languages that takes an optional `depth` reads into it.
#[derive(Debug, Clone, PartialEq)]
pub struct RecipientList {
    /// `recipients` for `[job.recipients]`, else the audience's `name`.
    pub name: String,
    pub depth: Depth,
    pub by_lang: BTreeMap<String, Vec<Mailbox>>,
}

/// What one edition of a job's run is mailed as: a language at a depth, its
/// recipients gathered from every list (each address once), and its ledger key.
#[derive(Debug, Clone, PartialEq)]
pub struct MailedEdition {
    pub lang: String,
    pub depth: Depth,
    pub recipients: Vec<Mailbox>,
}

impl MailedEdition {
    /// The edition's key in the ledger's deliveries and messages: the language for
    /// the full report (as every ledger before depths recorded it), `<lang>.brief`
    /// for the brief, so each (language, depth, recipient) is one delivery.
    pub fn key(&self) -> String {
        edition_key(&self.lang, self.depth)
    }
}

/// [`MailedEdition::key`] of `lang` at `depth`.
pub fn edition_key(lang: &str, depth: Depth) -> String {
    match depth {
        Depth::Full => lang.to_owned(),
        Depth::Brief => format!("{lang}.{depth}"),
    }
}

impl Job {
    /// The editions the job mails, in language then depth order, each with the
    /// addresses of every list that asks for it.
    pub fn mailed(&self) -> Vec<MailedEdition> {
        mailed_of(&self.lists)
    }

    /// The depths a run of the job renders: those some list mails, the full
    /// report when none mails anything.
    pub fn depths(&self) -> Vec<Depth> {
        match &self.burst {
            Some(b) => {
                let mut d: Vec<Depth> = b.values.iter().flat_map(BurstValue::depths).collect();
                d.sort();
                d.dedup();
                if d.is_empty() {
                    d.push(Depth::Full);
                }
                d
            }
            None => depths_of(&self.lists),
        }
    }
}

/// The editions `lists` mail, in language then depth order, each with the addresses
/// of every list that asks for it (each once).
fn mailed_of(lists: &[RecipientList]) -> Vec<MailedEdition> {
    let mut out: BTreeMap<(String, Depth), Vec<Mailbox>> = BTreeMap::new();
    for list in lists {
        for (lang, boxes) in &list.by_lang {
            let to = out.entry((lang.clone(), list.depth)).or_default();
            for b in boxes {
                if !to.iter().any(|x| x.email == b.email) {
                    to.push(b.clone());
                }
            }
        }
    }
    out.into_iter()
        .filter(|(_, to)| !to.is_empty())
        .map(|((lang, depth), recipients)| MailedEdition {
            lang,
            depth,
            recipients,
        })
        .collect()
}

/// The depths some list of `lists` mails; the full report when none mails anything.
fn depths_of(lists: &[RecipientList]) -> Vec<Depth> {
    let mut d: Vec<Depth> = mailed_of(lists).iter().map(|e| e.depth).collect();
    d.sort();
    d.dedup();
    if d.is_empty() {
        d.push(Depth::Full);
    }
    d
}

impl Config {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|cause| ConfigError::Read {
            path: path.to_owned(),
            cause,
        })?;
        Self::parse(path, &text)
    }

    pub fn parse(path: &Path, text: &str) -> Result<Self, ConfigError> {
        validate::parse(path, text)
    }

    pub fn job(&self, name: &str) -> Option<&Job> {
        self.jobs.iter().find(|j| j.name == name)
    }

    /// The run ledger's file.
    pub fn state_path(&self) -> PathBuf {
        self.defaults.output_dir.join("cxreport-state.sqlite")
    }

    pub fn templates(&self) -> Templates {
        Templates::new(self.defaults.templates.clone())
    }
}
