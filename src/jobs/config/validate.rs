//! Reading `schedules.toml` into a [`Config`]: the file as written (`Raw*`, strict:
//! unknown keys are rejected) and the validator that checks every key of it, so that
//! all problems are listed at once, each naming the key and the reason.
//!
//! Why this file is long (about 1,000 lines): one validator checks every key of the
//! file, so that all problems are listed at once, and its checks share the problem
//! list and the file's directory; about a quarter is the tests of those messages.

mod recipients;

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use chrono_tz::Tz;
use lettre::message::Mailbox;
use serde::Deserialize;

use crate::intercom::scope::{Scope, ScopeSpec};
use crate::intercom::window::WindowSpec;
use crate::jobs::schedule::{Catchup, CronExpr};
use crate::render::templates::Templates;
use crate::reports::{self, Options};
use crate::run::{Location, Mapping};

use super::{
    Burst, BurstValue, Config, ConfigError, DataSource, Defaults, Job, Overlap, Problem, Smtp,
    TlsMode, Transport, WatchRule, DEFAULT_RUN_TIMEOUT_SECS,
};

// ---------------------------------------------------------------------------
// The file as written.

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    defaults: RawDefaults,
    smtp: Option<RawSmtp>,
    #[serde(default)]
    job: Vec<RawJob>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDefaults {
    database: Option<String>,
    database_password_env: Option<String>,
    /// The mapping every job starts from (`[defaults.mapping]`).
    mapping: Option<toml::Table>,
    output_dir: Option<String>,
    timezone: Option<String>,
    languages: Option<Vec<String>>,
    source_timezone: Option<String>,
    templates: Option<String>,
    run_timeout_secs: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSmtp {
    host: Option<String>,
    port: Option<u16>,
    tls: Option<String>,
    username: Option<String>,
    password_env: Option<String>,
    ca_file: Option<String>,
    from: String,
    timeout_secs: Option<u64>,
    max_attachment_mb: Option<f64>,
    attach_csv: Option<bool>,
    max_attempts: Option<u32>,
    backoff_secs: Option<f64>,
    outbox: Option<String>,
}

// No `deny_unknown_fields`: every key that is not the job's own is a report option
// (`options`), checked against the job's report, so a misspelt key is still rejected.
#[derive(Debug, Deserialize)]
struct RawJob {
    name: String,
    report: Option<String>,
    cron: String,
    timezone: Option<String>,
    window: Option<String>,
    catchup: Option<String>,
    max_catchup: Option<usize>,
    overlap: Option<String>,
    #[serde(default)]
    owners: Vec<String>,
    /// `[job.recipients]`: language → addresses, full report unless `depth` says.
    #[serde(default)]
    recipients: recipients::RawList,
    /// `[[job.audience]]`: named lists, each with its depth.
    #[serde(default)]
    audience: Vec<recipients::RawAudience>,
    database: Option<String>,
    database_password_env: Option<String>,
    /// Keys laid over `[defaults.mapping]` for this job.
    mapping: Option<toml::Table>,
    /// The companies the job's report is restricted to (`{ column = "region",
    /// values = ["cn"] }`).
    scope: Option<toml::Value>,
    /// One edition per value found (`{ column = "region" }`), with per-value
    /// recipients (`[job.burst.recipients.<value>]`).
    burst: Option<toml::Value>,
    output: Option<String>,
    /// Named watch rules (`[job.watch]`).
    watch: Option<BTreeMap<String, RawWatch>>,
    #[serde(flatten)]
    options: BTreeMap<String, toml::Value>,
}

/// `burst = { column = "region" }` (or `tag_prefix`) and its
/// `[job.burst.recipients.<value>]` lists.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBurst {
    column: Option<String>,
    tag_prefix: Option<String>,
    #[serde(default)]
    recipients: BTreeMap<String, recipients::RawList>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWatch {
    metric: String,
    rise_by: Option<f64>,
    fall_by: Option<f64>,
    slice: Option<String>,
}

/// The file's text as a [`Config`], or every problem with it.
pub(super) fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
    let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::Toml {
        path: path.to_owned(),
        message: e.to_string().trim_end().to_owned(),
    })?;
    let mut v = Validator {
        problems: Vec::new(),
        base: path.parent().map(Path::to_owned).unwrap_or_default(),
    };
    let config = v.config(path, raw);
    if v.problems.is_empty() {
        Ok(config)
    } else {
        Err(ConfigError::Invalid {
            path: path.to_owned(),
            problems: v.problems,
        })
    }
}

struct Validator {
    problems: Vec<Problem>,
    /// Relative paths in the file are relative to the file's directory.
    base: PathBuf,
}

impl Validator {
    fn problem(&mut self, key: impl Into<String>, reason: impl Into<String>) {
        self.problems.push(Problem {
            key: key.into(),
            reason: reason.into(),
        });
    }

    fn tz(&mut self, key: &str, v: Option<&str>, default: Tz) -> Tz {
        match v {
            None => default,
            Some(s) => s.parse::<Tz>().unwrap_or_else(|_| {
                self.problem(
                    key,
                    format!("`{s}` is not an IANA timezone name (e.g. `Europe/Berlin`)"),
                );
                default
            }),
        }
    }

    /// A SQLite path (relative to the configuration file), a `postgresql://` URL, or
    /// `demo`.
    fn database(
        &mut self,
        key: &str,
        s: Option<&str>,
        password_env: Option<&str>,
    ) -> Option<DataSource> {
        let s = s?;
        if s == "demo" {
            return Some(DataSource::Demo);
        }
        match Location::parse(s, Some(&self.base), password_env) {
            Ok(l) => Some(DataSource::At(l)),
            Err(e) => {
                self.problem(key, e.to_string());
                None
            }
        }
    }

    fn path(&self, p: &str) -> PathBuf {
        let p = Path::new(p);
        if p.is_absolute() {
            p.to_owned()
        } else {
            self.base.join(p)
        }
    }

    fn mailbox(&mut self, key: &str, s: &str) -> Option<Mailbox> {
        if s.chars().any(char::is_control) {
            self.problem(
                key,
                format!("{s:?} contains control characters (CR/LF are not allowed in an address)"),
            );
            return None;
        }
        match s.parse::<Mailbox>() {
            Ok(m) => match deliverable(&m.email) {
                Ok(()) => Some(m),
                Err(why) => {
                    self.problem(key, format!("`{s}`: {why}"));
                    None
                }
            },
            Err(e) => {
                self.problem(key, format!("`{s}` is not a valid email address ({e})"));
                None
            }
        }
    }

    fn config(&mut self, path: &Path, raw: RawConfig) -> Config {
        let d = raw.defaults;
        let timezone = self.tz("defaults.timezone", d.timezone.as_deref(), Tz::UTC);
        let source_timezone = self.tz(
            "defaults.source_timezone",
            d.source_timezone.as_deref(),
            Tz::UTC,
        );
        let templates = d.templates.as_deref().map(|p| self.path(p));
        let defaults = Defaults {
            database: self.database(
                "defaults.database",
                d.database.as_deref(),
                d.database_password_env.as_deref(),
            ),
            database_password_env: d.database_password_env.clone(),
            mapping: d.mapping.clone(),
            output_dir: self.path(d.output_dir.as_deref().unwrap_or("out")),
            timezone,
            languages: d
                .languages
                .unwrap_or_else(|| vec!["en".into(), "zh".into()]),
            source_timezone,
            templates: templates.clone(),
            run_timeout: std::time::Duration::from_secs(match d.run_timeout_secs {
                Some(0) => {
                    self.problem("defaults.run_timeout_secs", "must be at least 1");
                    1
                }
                Some(n) => n,
                None => DEFAULT_RUN_TIMEOUT_SECS,
            }),
        };
        let smtp = raw.smtp.and_then(|s| self.smtp(s));
        let tpl = Templates::new(templates);
        let mut jobs = Vec::new();
        let names: Vec<String> = raw.job.iter().map(|j| j.name.clone()).collect();
        for (i, j) in raw.job.into_iter().enumerate() {
            let label = job_label(i, &names);
            if let Some(job) = self.job(&label, j, &defaults, &tpl) {
                if jobs.iter().any(|o: &Job| o.name == job.name) {
                    self.problem(
                        format!("{label}.name"),
                        format!("job name `{}` is used twice", job.name),
                    );
                }
                self.output_folder(&label, &job, &jobs, &defaults.output_dir);
                jobs.push(job);
            }
        }
        for l in &defaults.languages {
            if !tpl.languages(reports::DEFAULT).contains(l) {
                self.problem(
                    "defaults.languages",
                    format!("no templates for language `{l}`"),
                );
            }
        }
        Config {
            path: path.to_owned(),
            defaults,
            smtp,
            jobs,
        }
    }

    /// A job's output folder may be no other job's, nor inside or around one: a run
    /// replaces its period's folder, and a job reads its earlier runs from its own.
    /// `earlier`: the valid jobs before it.
    fn output_folder(&mut self, label: &str, job: &Job, earlier: &[Job], output_dir: &Path) {
        // Only normal components get here (checked with the job's `output`).
        let parts = |p: &Path| -> Vec<std::ffi::OsString> {
            p.components().map(|c| c.as_os_str().to_owned()).collect()
        };
        let mine = parts(&job.output);
        for other in earlier {
            let theirs = parts(&other.output);
            let same = theirs == mine;
            if same || theirs.starts_with(&mine) || mine.starts_with(&theirs) {
                self.problem(
                    format!("{label}.output"),
                    format!(
                        "jobs `{}` and `{}` write {}: {} and {}; give one of them its own `output`",
                        other.name,
                        job.name,
                        if same {
                            "the same folder"
                        } else {
                            "nested folders"
                        },
                        output_dir.join(&other.output).display(),
                        output_dir.join(&job.output).display()
                    ),
                );
            }
        }
    }

    fn smtp(&mut self, s: RawSmtp) -> Option<Smtp> {
        let from = self.mailbox("smtp.from", &s.from);
        let transport = match (s.outbox, s.host) {
            (Some(dir), None) => Transport::Outbox(self.path(&dir)),
            (Some(_), Some(_)) => {
                self.problem(
                    "smtp.outbox",
                    "give either `host` (send over SMTP) or `outbox` (write .eml files), not both",
                );
                return None;
            }
            (None, None) => {
                self.problem(
                    "smtp.host",
                    "missing: the SMTP server to send through (or `outbox` for .eml files)",
                );
                return None;
            }
            (None, Some(host)) => {
                let tls = match s.tls.as_deref().unwrap_or("starttls") {
                    "starttls" => TlsMode::StartTls,
                    "tls" => TlsMode::Tls,
                    "none" => TlsMode::None,
                    other => {
                        self.problem(
                            "smtp.tls",
                            format!("`{other}`: expected `starttls`, `tls` or `none`"),
                        );
                        TlsMode::StartTls
                    }
                };
                if tls == TlsMode::None && !is_loopback(&host) {
                    self.problem("smtp.tls", format!("`none` sends in clear text and is only allowed to a loopback host, not `{host}`"));
                }
                if let Some(env) = &s.password_env {
                    if env.is_empty() || !env.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                    {
                        self.problem(
                            "smtp.password_env",
                            format!("`{env}` is not an environment variable name"),
                        );
                    }
                }
                if s.password_env.is_some() && s.username.is_none() {
                    self.problem(
                        "smtp.username",
                        "missing: a password is configured but no username",
                    );
                }
                let ca_file = s.ca_file.as_deref().map(|p| self.path(p));
                if let Some(ca) = &ca_file {
                    if tls == TlsMode::None {
                        self.problem("smtp.ca_file", "has no effect with tls = \"none\"");
                    } else if let Err(e) = std::fs::read(ca) {
                        self.problem(
                            "smtp.ca_file",
                            format!("{}: {e} (expected a PEM CA certificate)", ca.display()),
                        );
                    }
                }
                let port = s.port.unwrap_or(match tls {
                    TlsMode::Tls => 465,
                    TlsMode::StartTls => 587,
                    TlsMode::None => 25,
                });
                Transport::Smtp {
                    host,
                    port,
                    tls,
                    username: s.username,
                    password_env: s.password_env,
                    ca_file,
                }
            }
        };
        let timeout = s.timeout_secs.unwrap_or(30);
        if timeout == 0 {
            self.problem("smtp.timeout_secs", "must be at least 1");
        }
        let mb = s.max_attachment_mb.unwrap_or(10.0);
        if !(mb >= 0.0 && mb.is_finite()) {
            self.problem(
                "smtp.max_attachment_mb",
                "must be a number of megabytes ≥ 0",
            );
        }
        let attempts = s.max_attempts.unwrap_or(4);
        if attempts == 0 {
            self.problem("smtp.max_attempts", "must be at least 1");
        }
        let backoff = s.backoff_secs.unwrap_or(2.0);
        if !(backoff >= 0.0 && backoff.is_finite()) {
            self.problem("smtp.backoff_secs", "must be ≥ 0");
        }
        Some(Smtp {
            transport,
            from: from?,
            timeout: std::time::Duration::from_secs(timeout.max(1)),
            max_attachment_bytes: (mb.max(0.0) * 1024.0 * 1024.0) as u64,
            attach_csv: s.attach_csv.unwrap_or(false),
            max_attempts: attempts.max(1),
            backoff: std::time::Duration::from_secs_f64(backoff.clamp(0.0, 3600.0)),
        })
    }

    /// `label`: how problems name the job ([`job_label`]).
    fn job(&mut self, label: &str, j: RawJob, d: &Defaults, tpl: &Templates) -> Option<Job> {
        let key = |k: &str| format!("{label}.{k}");
        let before = self.problems.len();
        if !valid_job_name(&j.name) {
            self.problem(key("name"), format!("`{}`: use letters, digits, `-`, `_` and `.` (it names the job's output folder)", j.name));
        }
        let report = j.report.unwrap_or_else(|| reports::DEFAULT.to_owned());
        let mut options = Options::new();
        for (name, value) in &j.options {
            match value {
                toml::Value::String(v) => Some(v.clone()),
                toml::Value::Integer(v) => Some(v.to_string()),
                toml::Value::Float(v) => Some(v.to_string()),
                toml::Value::Boolean(v) => Some(v.to_string()),
                _ => {
                    self.problem(key(name), "expected a string, number or boolean".to_owned());
                    None
                }
            }
            .map(|v| options.insert(name.clone(), v));
        }
        match crate::reports::find(&report) {
            None => self.problem(
                key("report"),
                format!(
                    "unknown report `{report}`{} (known: {})",
                    reports::report_hint(&report),
                    crate::reports::names().join(", ")
                ),
            ),
            Some(r) => {
                // A report option set on a job whose report does not read it is a mistake.
                if j.window.is_some() && !r.options().iter().any(|o| o.name == "window") {
                    self.problem(
                        key("window"),
                        format!(
                            "report `{report}` has no option `window`; {}",
                            reports::no_window()
                        ),
                    );
                }
                for option in reports::unknown_options(r, &options) {
                    // An option of another report says so; else a near job key.
                    let elsewhere = reports::ALL
                        .iter()
                        .any(|o| o.options().iter().any(|s| s.name == option));
                    let hint = match crate::suggest::closest(option, JOB_KEYS.iter().copied()) {
                        Some(k) if !elsewhere => format!("; did you mean the job key `{k}`?"),
                        _ => reports::option_hint(r, option),
                    };
                    self.problem(
                        key(option),
                        format!(
                            "`{option}` is not a job key, and report `{report}` has no option `{option}`{hint}"
                        ),
                    );
                }
                for bad in reports::option_problems(r, &options) {
                    self.problem(key(&bad.option), bad.message);
                }
            }
        }
        let watch = self.watch(&report, &options, j.watch, &key);
        let cron = match j.cron.parse::<CronExpr>() {
            Ok(c) => Some(c),
            Err(e) => {
                self.problem(key("cron"), e.reason);
                None
            }
        };
        let timezone = self.tz(&key("timezone"), j.timezone.as_deref(), d.timezone);
        let window = match j
            .window
            .as_deref()
            .unwrap_or(reports::DEFAULT_WINDOW)
            .parse::<WindowSpec>()
        {
            Ok(w) => Some(w),
            Err(e) => {
                self.problem(key("window"), e.to_string());
                None
            }
        };
        let catchup = match j.catchup.as_deref().unwrap_or("latest") {
            "skip" => Catchup::Skip,
            "latest" => Catchup::Latest,
            "all" => Catchup::All,
            other => {
                self.problem(
                    key("catchup"),
                    format!("`{other}`: expected `skip`, `latest` or `all`"),
                );
                Catchup::Latest
            }
        };
        let overlap = match j.overlap.as_deref().unwrap_or("forbid") {
            "forbid" => Overlap::Forbid,
            "allow" => Overlap::Allow,
            other => {
                self.problem(
                    key("overlap"),
                    format!("`{other}`: expected `forbid` or `allow`"),
                );
                Overlap::Forbid
            }
        };
        let owners: Vec<Mailbox> = j
            .owners
            .iter()
            .enumerate()
            .filter_map(|(k, o)| self.mailbox(&format!("{label}.owners[{k}]"), o))
            .collect();
        let available = tpl.languages(&report);
        let mut lists = vec![self.recipient_list(
            &format!("{label}.recipients"),
            "recipients",
            &j.recipients,
            &available,
        )];
        lists.extend(self.audiences(label, &j.audience, &available));
        let burst = j
            .burst
            .clone()
            .and_then(|b| self.burst(label, b, &available));
        if let Some(b) = &burst {
            if j.scope.is_some() {
                self.problem(
                    key("burst"),
                    "a job takes `burst` (one edition per value found) or `scope` (one edition \
                     of the values it names), not both",
                );
            }
            if lists
                .iter()
                .any(|l| l.by_lang.values().any(|v| !v.is_empty()))
            {
                self.problem(
                    key("recipients"),
                    format!(
                        "a bursted job mails each value's edition to that value's recipients only: \
                         give them as [job.burst.recipients.<value>] (e.g. [job.burst.recipients.{}]), \
                         not in [job.recipients] or [[job.audience]]",
                        b.values.first().map_or("cn", |v| v.written.as_str())
                    ),
                );
            }
            lists.clear();
        }
        let named: std::collections::BTreeSet<String> = lists
            .iter()
            .chain(
                burst
                    .iter()
                    .flat_map(|b| b.values.iter().flat_map(|v| &v.lists)),
            )
            .flat_map(|l| l.by_lang.keys().cloned())
            .collect();
        let languages: Vec<String> = if named.is_empty() {
            d.languages.clone()
        } else {
            named.into_iter().collect()
        };
        let output = match j.output.as_deref() {
            None => PathBuf::from(&j.name),
            Some(o) => {
                let p = Path::new(o);
                if p.is_absolute()
                    || p.components().any(|c| !matches!(c, Component::Normal(_)))
                    || o.is_empty()
                {
                    self.problem(key("output"), format!("`{o}` must be a relative path inside defaults.output_dir (no `..`, no leading `/`)"));
                }
                p.to_owned()
            }
        };
        let mut mapping = match Mapping::from_tables(
            d.mapping.as_ref(),
            j.mapping.as_ref(),
            &format!("{label}.mapping (over defaults.mapping)"),
        ) {
            Ok(m) => m,
            Err(e) => {
                self.problem(key("mapping"), e.message);
                Mapping::default()
            }
        };
        if let Some(scope) = j.scope.clone() {
            let read = scope
                .try_into::<ScopeSpec>()
                .map_err(|e| format!("scope: {}", e.message()))
                .and_then(Scope::try_from);
            match read {
                Ok(scope) => mapping.scope = Some(scope),
                Err(why) => self.problem(
                    key("scope"),
                    format!(
                        "{why} (write scope = {{ column = \"region\", values = [\"cn\"] }} \
                         or scope = {{ tag_prefix = \"region:\", values = [\"cn\"] }})"
                    ),
                ),
            }
        }
        let database = match j.database.as_deref() {
            Some(db) => self.database(
                &key("database"),
                Some(db),
                j.database_password_env
                    .as_deref()
                    .or(d.database_password_env.as_deref()),
            ),
            None => {
                if d.database.is_none() {
                    self.problem(
                        key("database"),
                        "missing, and [defaults] has none: name the SQLite file or PostgreSQL URL the job reads (`database = \"demo\"` for the built-in demo data)",
                    );
                }
                d.database.clone()
            }
        };
        if self.problems.len() > before {
            return None;
        }
        let database = database?;
        Some(Job {
            name: j.name,
            report,
            cron: cron?,
            timezone,
            window: window?,
            catchup,
            max_catchup: j.max_catchup.unwrap_or(12),
            overlap,
            owners,
            lists,
            languages,
            mapping,
            database,
            output,
            options,
            watch,
            burst,
        })
    }

    /// A job's `burst`: its rule and each value's recipients, values compared in
    /// label form (`CN` = `cn`).
    fn burst(
        &mut self,
        label: &str,
        raw: toml::Value,
        available: &std::collections::BTreeSet<String>,
    ) -> Option<Burst> {
        const EXAMPLE: &str =
            "write burst = { column = \"region\" } or burst = { tag_prefix = \"region:\" }, \
             and each value's recipients as [job.burst.recipients.cn] zh = [\"…\"]";
        let key = format!("{label}.burst");
        let raw: RawBurst = match raw.try_into() {
            Ok(r) => r,
            Err(e) => {
                self.problem(key, format!("{} ({EXAMPLE})", e.message().trim_end()));
                return None;
            }
        };
        // The rule is read as a scope's is (its checks and their words).
        let rule = match Scope::try_from(ScopeSpec {
            column: raw.column,
            tag_prefix: raw.tag_prefix,
            values: vec!["-".into()],
        }) {
            Ok(s) => s.rule,
            Err(why) => {
                self.problem(
                    key,
                    format!("{} ({EXAMPLE})", why.replacen("scope: ", "", 1)),
                );
                return None;
            }
        };
        let mut values: Vec<BurstValue> = Vec::new();
        for (value, list) in &raw.recipients {
            let vkey = format!("{key}.recipients.{value}");
            let folder = Scope {
                rule: rule.clone(),
                values: vec![value.clone()],
            }
            .folder();
            if folder.is_empty() {
                self.problem(
                    vkey,
                    "not a value: give the value as the data holds it (e.g. `cn`)",
                );
                continue;
            }
            if let Some(other) = values.iter().find(|v| v.folder == folder) {
                self.problem(
                    vkey,
                    format!(
                        "`{value}` and `{}` are one value (values compare without case or separators): \
                         give its recipients once",
                        other.written
                    ),
                );
                continue;
            }
            let list = self.recipient_list(&vkey, value, list, available);
            if list.by_lang.values().all(Vec::is_empty) {
                self.problem(
                    vkey,
                    format!("value `{value}` has no recipients: give a language and its addresses (`zh = [\"…\"]`), or leave the value out (its edition is written, not mailed)"),
                );
            }
            values.push(BurstValue {
                written: value.clone(),
                folder,
                lists: vec![list],
            });
        }
        Some(Burst { by: rule, values })
    }
}

impl Validator {
    fn watch(
        &mut self,
        report: &str,
        options: &Options,
        raw: Option<BTreeMap<String, RawWatch>>,
        key: &dyn Fn(&str) -> String,
    ) -> Vec<WatchRule> {
        let Some(raw) = raw else {
            return Vec::new();
        };
        let metrics = crate::reports::find(report).map_or(&[][..], |r| r.compared_metrics());
        let slices = crate::reports::find(report).map_or(&[][..], |r| r.compared_slices());
        if metrics.is_empty() {
            self.problem(
                key("watch"),
                format!("report `{report}` does not compare periods, so it has nothing to watch"),
            );
            return Vec::new();
        }
        if options.get("compare").is_some_and(|c| c == "none") {
            self.problem(
                key("watch"),
                "watch rules need a comparison, and this job has compare = \"none\"",
            );
        }
        let mut out = Vec::new();
        for (name, w) in raw {
            let k = key(&format!("watch.{name}"));
            if !metrics.contains(&w.metric.as_str()) {
                self.problem(
                    format!("{k}.metric"),
                    format!(
                        "`{}` is not a metric report `{report}` compares (it compares: {})",
                        w.metric,
                        metrics.join(", ")
                    ),
                );
                continue;
            }
            let (rise, threshold) = match (w.rise_by, w.fall_by) {
                (Some(t), None) => (true, t),
                (None, Some(t)) => (false, t),
                _ => {
                    self.problem(
                        k,
                        "needs exactly one of `rise_by` and `fall_by` (percentage points for rates, minutes, counts)",
                    );
                    continue;
                }
            };
            if !(threshold.is_finite() && threshold >= 0.0) {
                self.problem(k, "the threshold must be a number ≥ 0");
                continue;
            }
            let slice = w.slice.unwrap_or_else(|| "overall".into());
            if !slices.contains(&slice.as_str()) {
                self.problem(
                    format!("{k}.slice"),
                    format!(
                        "`{slice}` is not a slice report `{report}` compares (it compares: {})",
                        slices.join(", ")
                    ),
                );
                continue;
            }
            out.push(WatchRule {
                name,
                metric: w.metric,
                rise,
                threshold,
                slice,
            });
        }
        out
    }
}

/// The keys of a `[[job]]` that are not report options (the fields of `RawJob`).
const JOB_KEYS: &[&str] = &[
    "name",
    "report",
    "cron",
    "timezone",
    "window",
    "catchup",
    "max_catchup",
    "overlap",
    "owners",
    "recipients",
    "audience",
    "database",
    "database_password_env",
    "mapping",
    "scope",
    "burst",
    "output",
    "watch",
];

/// How problems name the job at `i`: `job "monthly-brief"`, by the name people
/// know it by; `job[1]` when the name cannot tell it apart (empty, not a valid
/// name, or used twice).
fn job_label(i: usize, names: &[String]) -> String {
    let name = &names[i];
    if valid_job_name(name) && names.iter().filter(|n| *n == name).count() == 1 {
        format!("job \"{name}\"")
    } else {
        format!("job[{i}]")
    }
}

/// Whether mail to `address` can reach anyone: `ceo@example` is valid syntax, but a
/// domain without a dot names no host on the Internet (the report would bounce or
/// vanish on the day it matters). `localhost` and address literals (`[10.0.0.1]`)
/// stay allowed, for a local relay.
pub fn deliverable(address: &lettre::Address) -> Result<(), String> {
    let domain = address.domain();
    if domain.contains('.') || domain.eq_ignore_ascii_case("localhost") || domain.starts_with('[') {
        Ok(())
    } else {
        Err(format!(
            "the domain `{domain}` has no dot, so no mail server can be found for it; \
             write the full domain (e.g. `{}@{domain}.com`)",
            address.user()
        ))
    }
}

/// Letters, digits, `-`, `_` and `.`, not first: a job's name is its output folder.
fn valid_job_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[defaults]
database = "data/cx.sqlite"
output_dir = "out"
timezone = "UTC"
languages = ["en", "zh"]
source_timezone = "UTC"

[smtp]
host = "smtp.example.com"
port = 587
tls = "starttls"
username = "reports@example.com"
password_env = "CXREPORT_SMTP_PASSWORD"
from = "CX Reports <reports@example.com>"
timeout_secs = 30
max_attachment_mb = 10

[[job]]
name = "leadership-monthly"
report = "conversation-usage"
cron = "0 8 1 * *"
timezone = "America/New_York"
window = "calendar:6m"
catchup = "latest"
max_catchup = 12
overlap = "forbid"
owners = ["cx-analytics@example.com"]
[job.recipients]
en = ["ceo@example.com", "coo@example.com"]
zh = ["gm-china@example.com"]
"#;

    fn parse(text: &str) -> Result<Config, String> {
        Config::parse(Path::new("/etc/cx/schedules.toml"), text).map_err(|e| e.to_string())
    }

    #[test]
    fn two_jobs_may_not_write_the_same_or_nested_folders() {
        let job = |name: &str, output: &str| {
            format!("[[job]]\nname = \"{name}\"\ncron = \"0 8 * * *\"\n{output}\n")
        };
        let head = "[defaults]\ndatabase = \"demo\"\noutput_dir = \"out\"\n";
        let e = parse(&format!(
            "{head}{}{}{}{}",
            job("weekly", ""),
            job("daily", "output = \"weekly\""),
            job("eu", "output = \"weekly/eu\""),
            job("apac", "output = \"apac\""),
        ))
        .unwrap_err();
        assert!(
            e.contains("`job \"daily\".output`: jobs `weekly` and `daily` write the same folder: /etc/cx/out/weekly and /etc/cx/out/weekly"),
            "{e}"
        );
        assert!(
            e.contains("`job \"eu\".output`: jobs `weekly` and `eu` write nested folders"),
            "{e}"
        );
        assert!(!e.contains("apac"), "{e}");
        assert!(parse(&format!(
            "{head}{}{}",
            job("a", ""),
            job("b", "output = \"a2\"")
        ))
        .is_ok());
    }

    #[test]
    fn mappings_and_warehouses_per_job_over_the_defaults() {
        let c = parse(
            "[defaults]
             database = \"postgresql://reports@wh.internal:5432/analytics?schema=dbt_intercom\"
             database_password_env = \"WAREHOUSE_PASSWORD\"
             [defaults.mapping]
             at_risk_tags = [\"Red Flag\"]
             segment_tag_prefix = \"stage:\"
             [[job]]
             name = \"a\"
             cron = \"0 8 1 * *\"
             [job.mapping]
             usage_company_key = \"account_id\"
             [[job]]
             name = \"b\"
             cron = \"0 8 1 * *\"
             database = \"local.sqlite\"",
        )
        .unwrap();
        let (a, b) = (&c.jobs[0], &c.jobs[1]);
        assert_eq!(a.mapping.at_risk_tags, ["Red Flag"]);
        assert_eq!(a.mapping.segment_tag_prefix, "stage:");
        assert_eq!(a.mapping.usage_company_key, "account_id");
        assert_eq!(b.mapping.usage_company_key, "company_id");
        assert_eq!(b.mapping.at_risk_tags, ["Red Flag"]);
        match &c.defaults.database {
            Some(DataSource::At(Location::Postgres(pg))) => {
                assert_eq!(pg.schema.as_deref(), Some("dbt_intercom"));
                assert_eq!(pg.password_env, "WAREHOUSE_PASSWORD");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            b.database,
            DataSource::At(Location::Sqlite(PathBuf::from("/etc/cx/local.sqlite")))
        );

        let e = parse(
            "[[job]]
             name = \"a\"
             cron = \"0 8 1 * *\"
             database = \"postgresql://u:secret@h/db\"
             [job.mapping]
             at_risk_tag = [\"x\"]",
        )
        .unwrap_err();
        assert!(
            e.contains("job \"a\".mapping") && e.contains("at_risk_tag"),
            "{e}"
        );
        assert!(
            e.contains("job \"a\".database") && !e.contains("secret"),
            "{e}"
        );
    }

    #[test]
    fn the_spec_example_loads() {
        let c = parse(GOOD).unwrap();
        let j = &c.jobs[0];
        assert_eq!(j.name, "leadership-monthly");
        assert_eq!(j.timezone.name(), "America/New_York");
        assert_eq!(j.languages, ["en", "zh"]);
        assert_eq!(j.lists[0].by_lang["en"].len(), 2);
        assert_eq!(
            c.defaults.database,
            Some(DataSource::At(Location::Sqlite(PathBuf::from(
                "/etc/cx/data/cx.sqlite"
            ))))
        );
        assert_eq!(
            c.state_path(),
            PathBuf::from("/etc/cx/out/cxreport-state.sqlite")
        );
        assert!(matches!(
            c.smtp.as_ref().unwrap().transport,
            Transport::Smtp {
                tls: TlsMode::StartTls,
                port: 587,
                ..
            }
        ));
    }

    #[test]
    fn every_bad_input_is_a_clear_error_never_a_panic() {
        let cases: &[(&str, &str, &str)] = &[
            ("[defaults\n", "", "TOML parse error"),
            ("cron = \"0 8 1 * *\"", "", "unknown field `cron`"),
            ("", "[[job]]\nname = \"a\"\ncron = \"*/0 * * * *\"", "`job \"a\".cron`: minute step must be at least 1"),
            ("", "[[job]]\nname = \"a\"\ncron = \"0 0 * * 8\"", "`job \"a\".cron`: day of week 8 is out of range"),
            ("", "[[job]]\nname = \"a\"\ncron = \"0 8 * * *\"\nrecipients = { en = [\"ceo@example.com\\r\\nBcc: evil@example.com\"] }", "`job \"a\".recipients.en[0]`"),
            ("", "[[job]]\nname = \"a\"\ncron = \"0 8 * * *\"\nowners = [\"not an address\"]", "`job \"a\".owners[0]`: `not an address` is not a valid email address"),
            ("", "[[job]]\nname = \"a\"\ncron = \"0 8 * * *\"\noutput = \"../../etc\"", "`job \"a\".output`: `../../etc` must be a relative path inside defaults.output_dir"),
            ("", "[[job]]\nname = \"../a\"\ncron = \"0 8 * * *\"", "`job[0].name`"),
            ("", "[[job]]\nname = \"a\"\ncron = \"0 8 * * *\"\ncolour = \"blue\"", "`job \"a\".colour`: `colour` is not a job key"),
            ("", "[[job]]\nname = \"a\"\ncron = \"0 8 * * *\"\ntimezone = \"Mars/Olympus\"", "`job \"a\".timezone`: `Mars/Olympus` is not an IANA timezone"),
            ("", "[[job]]\nname = \"a\"\ncron = \"0 8 * * *\"\nwindow = \"weekly\"", "`job \"a\".window`"),
            ("", "[[job]]\nname = \"a\"\ncron = \"0 8 * * *\"\nrecipients = { fr = [\"a@example.com\"] }", "no templates for language `fr`"),
            ("", "[[job]]\nname = \"a\"\ncron = \"0 8 * * *\"\ncatchup = \"sometimes\"", "`job \"a\".catchup`"),
            ("", "[[job]]\nname = \"a\"\ncron = \"0 8 * * *\"\n[[job]]\nname = \"a\"\ncron = \"0 9 * * *\"", "used twice"),
            ("", "[[job]]\nname = \"a\"\ncron = \"0 8 * * *\"\nreport = \"nope\"", "unknown report `nope` (known: "),
            ("", "[[job]]\nname = \"a\"\ncron = \"0 8 * * *\"\nreport = \"tag-driver\"", "`job \"a\".report`: unknown report `tag-driver`; did you mean `tag-drivers`?"),
            ("", "[[job]]\nname = \"a\"\ncron = \"0 8 * * *\"\nreport = \"customer-segmentation\"\nwindow = \"rolling:6m\"", "`job \"a\".window`: report `customer-segmentation` has no option `window`"),
            ("", "[[job]]\nname = \"a\"\ncron = \"0 8 * * *\"\nmin_pp = 5", "report `conversation-usage` has no option `min_pp`; it is an option of `tag-drivers`"),
            ("", "[[job]]\nname = \"a\"\ncron = \"0 8 * * *\"\ncatchpu = \"all\"", "`job \"a\".catchpu`: `catchpu` is not a job key, and report `conversation-usage` has no option `catchpu`; did you mean the job key `catchup`?"),
            ("", "[[job]]\nname = \"a\"\ncron = \"0 8 * * *\"\ncompere = \"none\"", "has no option `compere`; did you mean `compare`?"),
            ("", "[[job]]\nname = \"a\"\ncron = \"0 8 * * *\"\n[job.mapping]\nat_risk_tag = [\"x\"]", "unknown key `at_risk_tag`; did you mean `at_risk_tags`?"),
            ("", "[[job]]\nname = \"a\"\ncron = \"0 8 * * *\"\nowners = [\"ceo@example\"]", "`job \"a\".owners[0]`: `ceo@example`: the domain `example` has no dot"),
            ("", "[[job]]\nname = \"a\"\ncron = \"0 8 * * *\"\n[job.recipients]\nen = [\"ceo@example.com\", \"cfo@corp\"]", "`job \"a\".recipients.en[1]`: `cfo@corp`: the domain `corp` has no dot"),
            ("", "[[job]]\nname = \"a\"\ncron = \"0 8 * * *\"\nreport = \"tag-drivers\"\nmin_pp = 500", "`job \"a\".min_pp`"),
            ("", "[[job]]\nname = \"a\"\ncron = \"0 8 * * *\"\n[job.watch]\nx = { metric = \"nps\", fall_by = 1 }", "`job \"a\".watch.x.metric`: `nps` is not a metric report `conversation-usage` compares"),
            ("", "[[job]]\nname = \"a\"\ncron = \"0 8 * * *\"\n[job.watch]\nx = { metric = \"conv_cnt\", fall_by = 1, rise_by = 2 }", "`job \"a\".watch.x`: needs exactly one of `rise_by` and `fall_by`"),
            ("", "[[job]]\nname = \"a\"\ncron = \"0 8 * * *\"\ncompare = \"none\"\n[job.watch]\nx = { metric = \"conv_cnt\", fall_by = 1 }", "compare = \"none\""),
            ("", "[[job]]\nname = \"a\"\ncron = \"0 8 * * *\"\nreport = \"tag-drivers\"\n[job.watch]\nx = { metric = \"conv_cnt\", fall_by = 1 }", "report `tag-drivers` does not compare periods"),
            ("", "[[job]]\nname = \"a\"\ncron = \"0 8 * * *\"\ncompare = \"yesterday\"", "`job \"a\".compare`"),
            ("", "[[job]]\nname = \"a\"\ncron = \"0 8 * * *\"\n[job.watch]\nx = { metric = \"conv_cnt\", fall_by = 1, slice = \"churn-watch\" }", "`job \"a\".watch.x.slice`: `churn-watch` is not a slice report `conversation-usage` compares (it compares: overall, new_contract, renewal, expansion, churn_watch, unknown)"),
            // Without a database a job would mail numbers that are not the customer's.
            ("[defaults]", "[[job]]\nname = \"a\"\ncron = \"0 8 * * *\"", "`job \"a\".database`: missing, and [defaults] has none"),
        ];
        for (top, job, want) in cases {
            let top = if top.is_empty() {
                "[defaults]\ndatabase = \"demo\""
            } else {
                top
            };
            let text = format!("{top}\n{job}");
            let e = parse(&text).unwrap_err();
            assert!(e.contains("/etc/cx/schedules.toml"), "{text:?}: {e}");
            assert!(e.contains(want), "{text:?}: {e}");
        }
    }

    #[test]
    fn addresses_must_name_a_domain_mail_can_reach() {
        let ok = |a: &str| deliverable(&a.parse().unwrap());
        assert_eq!(ok("ceo@example.com"), Ok(()));
        assert_eq!(ok("ops@localhost"), Ok(()));
        assert_eq!(ok("ops@[127.0.0.1]"), Ok(()));
        let e = ok("ceo@example").unwrap_err();
        assert!(
            e.contains("`example` has no dot") && e.contains("`ceo@example.com`"),
            "{e}"
        );
        let e = parse("[smtp]\nfrom = \"reports@corp\"\noutbox = \"mail\"").unwrap_err();
        assert!(e.contains("`smtp.from`: `reports@corp`: the domain"), "{e}");
    }

    #[test]
    fn smtp_rules() {
        let base = "[smtp]\nfrom = \"r@example.com\"\n";
        let e = parse(&format!(
            "{base}host = \"smtp.example.com\"\ntls = \"none\""
        ))
        .unwrap_err();
        assert!(e.contains("only allowed to a loopback host"), "{e}");
        assert!(parse(&format!("{base}host = \"127.0.0.1\"\ntls = \"none\"")).is_ok());
        assert!(parse(&format!("{base}host = \"localhost\"\ntls = \"none\"")).is_ok());
        let e = parse(&format!("{base}host = \"h\"\npassword = \"hunter2\"")).unwrap_err();
        assert!(e.contains("unknown field `password`"), "{e}");
        let e = parse(base).unwrap_err();
        assert!(e.contains("`smtp.host`"), "{e}");
        let c = parse(&format!("{base}outbox = \"mail\"")).unwrap();
        assert!(
            matches!(&c.smtp.unwrap().transport, Transport::Outbox(p) if p == Path::new("/etc/cx/mail"))
        );
        // Several problems are listed together.
        let e = parse("[smtp]\nfrom = \"bad\"\nhost = \"h\"\ntls = \"maybe\"\ntimeout_secs = 0")
            .unwrap_err();
        assert!(
            e.contains("smtp.from") && e.contains("smtp.tls") && e.contains("smtp.timeout_secs"),
            "{e}"
        );
    }

    #[test]
    fn a_bursted_job_has_recipients_per_value_in_label_form() {
        use crate::intercom::scope::ScopeRule;
        use crate::run::Depth;
        let base = "[defaults]\ndatabase = \"demo\"\n[[job]]\nname = \"a\"\ncron = \"0 8 * * *\"\n";
        let c = parse(&format!(
            "{base}[job.burst]\ncolumn = \"region\"\n\
             [job.burst.recipients.CN]\nzh = [\"cn@example.com\"]\n\
             [job.burst.recipients.\"North America\"]\ndepth = \"brief\"\nen = [\"na@example.com\"]"
        ))
        .unwrap();
        let j = &c.jobs[0];
        let b = j.burst.as_ref().unwrap();
        assert_eq!(b.by, ScopeRule::Column("region".into()));
        let folders: Vec<&str> = b.values.iter().map(|v| v.folder.as_str()).collect();
        assert_eq!(folders, ["cn", "north_america"]);
        assert_eq!(b.value("cn").unwrap().languages(), ["zh"]);
        assert_eq!(b.value("north_america").unwrap().depths(), [Depth::Brief]);
        assert!(j.lists.is_empty() && j.mailed().is_empty());
        assert_eq!(j.languages, ["en", "zh"]);
        assert_eq!(j.depths(), [Depth::Brief, Depth::Full]);
        let c = parse(&format!("{base}burst = {{ tag_prefix = \"region:\" }}")).unwrap();
        assert_eq!(
            c.jobs[0].burst.as_ref().unwrap().by,
            ScopeRule::TagPrefix("region:".into())
        );

        let e = parse(&format!(
            "{base}scope = {{ column = \"region\", values = [\"cn\"] }}\n\
             [job.recipients]\nen = [\"x@example.com\"]\n\
             [job.burst]\ncolumn = \"region\"\n\
             [job.burst.recipients.CN]\nzh = [\"cn@example.com\"]\n\
             [job.burst.recipients.cn]\nzh = [\"other@example.com\"]\n\
             [job.burst.recipients.emea]\nfr = [\"e@example.com\"]\n\
             [job.burst.recipients.latam]\ndepth = \"brief\""
        ))
        .unwrap_err();
        for want in [
            "`job \"a\".burst`: a job takes `burst`",
            "`job \"a\".recipients`: a bursted job mails each value's edition",
            "`job \"a\".burst.recipients.cn`: `cn` and `CN` are one value",
            "`job \"a\".burst.recipients.emea.fr`: no templates for language `fr`",
            "`job \"a\".burst.recipients.latam`: value `latam` has no recipients",
        ] {
            assert!(e.contains(want), "{want}\n{e}");
        }
        for (burst, want) in [
            ("burst = { colum = \"region\" }", "unknown field `colum`"),
            ("burst = { }", "name exactly one of `column`"),
            (
                "burst = { column = \"re gion\" }",
                "`column` must be a column name",
            ),
            ("burst = \"region\"", "`job \"a\".burst`"),
        ] {
            let e = parse(&format!("{base}{burst}")).unwrap_err();
            assert!(
                e.contains(want) && e.contains("write burst = {"),
                "{burst}: {e}"
            );
        }
    }

    /// The example in the repository loads, its bursted job among the jobs.
    #[test]
    fn the_repositorys_example_loads_with_its_bursted_job() {
        let c = Config::parse(
            Path::new("schedules.toml"),
            include_str!("../../../schedules.toml"),
        )
        .unwrap();
        let b = c
            .jobs
            .iter()
            .find_map(|j| j.burst.as_ref())
            .expect("a bursted job");
        assert_eq!(b.value("cn").unwrap().languages(), ["zh"]);
    }

    #[test]
    fn recipient_lists_carry_their_depth_and_bad_ones_name_their_key() {
        use crate::run::Depth;
        let base = "[defaults]\ndatabase = \"demo\"\n[[job]]\nname = \"a\"\ncron = \"0 8 * * *\"\n";
        let c = parse(&format!(
            "{base}[job.recipients]\nen = [\"analyst@example.com\"]\n\
             [[job.audience]]\nname = \"leadership\"\ndepth = \"brief\"\n\
             en = [\"ceo@example.com\", \"analyst@example.com\"]\nzh = [\"gm@example.com\"]"
        ))
        .unwrap();
        let j = &c.jobs[0];
        assert_eq!(j.languages, ["en", "zh"]);
        assert_eq!(j.depths(), [Depth::Brief, Depth::Full]);
        let mailed: Vec<(String, usize)> = j
            .mailed()
            .iter()
            .map(|e| (e.key(), e.recipients.len()))
            .collect();
        assert_eq!(
            mailed,
            [
                ("en.brief".into(), 2),
                ("en".into(), 1),
                ("zh.brief".into(), 1)
            ]
        );
        // No list, no brief: the full report alone, as before depths.
        let c = parse(&format!("{base}[job.recipients]\nen = [\"a@example.com\"]")).unwrap();
        assert_eq!(c.jobs[0].depths(), [Depth::Full]);

        let e = parse(&format!(
            "{base}[job.recipients]\ndepth = \"short\"\nen = [\"a@example.com\"]\n\
             [[job.audience]]\ndepth = \"brief\"\nen = [\"b@example.com\"]\n\
             [[job.audience]]\nname = \"leadership\"\n\
             [[job.audience]]\nname = \"leadership\"\nfr = [\"c@example.com\"]"
        ))
        .unwrap_err();
        for want in [
            "`job \"a\".recipients.depth`: unknown depth `short`",
            "`job \"a\".audience[0].name`: missing",
            "`job \"a\".audience[1]`: audience `leadership` has no recipients",
            "`job \"a\".audience[2].name`: `leadership` is already the name",
            "`job \"a\".audience[2].fr`: no templates for language `fr`",
        ] {
            assert!(e.contains(want), "{want}\n{e}");
        }
    }
}
