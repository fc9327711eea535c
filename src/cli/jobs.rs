//! The configuration-driven commands (`run --job`, `daemon`, `schedule`, `check`,
//! `history`): each loads the configuration, calls the library and prints what a
//! person at a terminal needs.

use std::path::Path;

use super::Failure;
use crate::clock::{Clock, SimulatedClock, SystemClock};
use crate::jobs::config::Config;
use crate::jobs::ledger::{clip, DeliveryState, Ledger, RunState, MAX_ERROR_BYTES};
use crate::jobs::{alerts, check, daemon, job, resend, Delivery, JobError};
use crate::run::watch::WatchResult;
use chrono::{DateTime, Utc};

fn load(path: &Path) -> Result<Config, Failure> {
    Ok(Config::load(path)?)
}

pub fn run_job(
    config: &Path,
    name: &str,
    as_of: Option<DateTime<Utc>>,
    delivery: &Delivery,
) -> Result<(), Failure> {
    let config = load(config)?;
    let job = find_job(&config, name)?;
    let fire = as_of.unwrap_or_else(|| SystemClock.now());
    let stop = daemon::stop_on_signals()?;
    let run = {
        let _spinner = super::logging::Spinner::start();
        let runner = job::Runner {
            config: &config,
            delivery,
            stop: &stop,
            clock: &crate::clock::system(),
        };
        job::run_job(runner, job, fire)?
    };
    if let Some(dir) = &run.dir {
        println!("{}", dir.display());
    }
    for line in edition_lines(&run.editions) {
        eprintln!("{line}");
    }
    let words = Words::of(&config, &job.name);
    for w in run.watch.iter().filter(|w| w.fired) {
        eprintln!("{}", fired(words.as_ref(), w));
    }
    match run.state {
        RunState::Succeeded if run.up_to_date => {
            eprintln!(
                "up to date: every delivery of {} was sent already, nothing rendered or sent \
                 (`cxreport history --job {}` shows them; run without --send to write the report again)",
                run.period.as_deref().unwrap_or("this period"),
                job.name
            );
            Ok(())
        }
        RunState::Succeeded => {
            if !matches!(delivery, Delivery::None) {
                eprintln!("{} message(s) delivered", run.sent);
            }
            Ok(())
        }
        // Cut as the ledger keeps it: a value of many megabytes in the error is not
        // printed whole.
        _ => Err(Failure::failed(run.error.map_or_else(
            || "the run failed".into(),
            |e| clip(&e, MAX_ERROR_BYTES).into_owned(),
        ))),
    }
}

pub fn daemon(config: &Path, clock_start: Option<&str>, speed: f64) -> Result<(), Failure> {
    let config = load(config)?;
    let stop = daemon::stop_on_signals()?;
    match clock_start {
        None => Ok(daemon::run_daemon(&config, crate::clock::system(), stop)?),
        Some(start) => {
            let start = DateTime::parse_from_rfc3339(start)
                .map_err(|e| {
                    Failure::usage(format!(
                        "--clock-start `{start}`: not an RFC 3339 instant ({e})"
                    ))
                })?
                .with_timezone(&Utc);
            if !(speed.is_finite() && speed > 0.0) {
                return Err(Failure::usage("--clock-speed must be > 0"));
            }
            let clock = std::sync::Arc::new(SimulatedClock::new(start, speed));
            Ok(daemon::run_daemon(&config, clock, stop)?)
        }
    }
}

pub fn retry(
    config_path: &Path,
    name: &str,
    period: Option<&str>,
    region: Option<&str>,
) -> Result<(), Failure> {
    let config = load(config_path)?;
    let job = find_job(&config, name)?;
    // A region is named as `history` shows it, in any case or spelling of the value.
    let region = region.map(|r| {
        crate::intercom::scope::Scope {
            rule: crate::intercom::scope::ScopeRule::Column("region".into()),
            values: vec![r.to_owned()],
        }
        .folder()
    });
    if let (Some(r), None) = (&region, &job.burst) {
        return Err(Failure::usage(format!(
            "--region {r}: job `{name}` is not bursted (it has no `burst`), so its deliveries have no region"
        )));
    }
    let path = config.state_path();
    if !path.exists() {
        return Err(Failure::usage(format!(
            "job `{name}` has no runs yet ({} does not exist)",
            path.display()
        )));
    }
    let ledger = Ledger::open(&path)?;
    let period = match period {
        Some(p) => p.to_owned(),
        None => ledger.latest_delivered_period(name)?.ok_or_else(|| {
            Failure::usage(format!("job `{name}` has no run that mailed anything"))
        })?,
    };
    if ledger.run(name, &period)?.is_none() {
        return Err(Failure::usage(format!(
            "job `{name}` has no run for period `{period}` (see `cxreport history --job {name}`)"
        )));
    }
    if let Some(r) = &region {
        let regions: Vec<String> = ledger
            .deliveries(name, &period)?
            .into_iter()
            .map(|d| d.region)
            .collect();
        if !regions.contains(r) {
            let mut known = regions;
            known.sort();
            known.dedup();
            return Err(Failure::usage(format!(
                "job `{name}` has no delivery of region `{r}` in period `{period}` (its regions with deliveries: {}; see `cxreport history --job {name}`)",
                if known.is_empty() { "none".to_owned() } else { known.join(", ") }
            )));
        }
    }
    let _lock = ledger
        .lock_job(name, true)?
        .ok_or_else(|| JobError::Busy(name.to_owned()))?;
    let reopened = ledger.reopen(name, &period, region.as_deref())?;
    let stop = daemon::stop_on_signals()?;
    let run = resend::resend(&config, job, &ledger, &period, region.as_deref(), &stop)?;
    if run.state == RunState::Succeeded && run.sent > 0 {
        // What the run's alerts warned about is delivered: the owners hear that,
        // instead of a "failed" still waiting to be sent, or after one they had.
        let fire = ledger
            .run(name, &period)?
            .and_then(|r| r.fire_time)
            .unwrap_or_else(|| SystemClock.now());
        alerts::resolved_after_retry(
            &config,
            job,
            &ledger,
            &period,
            fire,
            run.sent,
            alerts::Retrier::Command,
        )?;
    }
    // The owner alerts kept while SMTP failed go out with it.
    alerts::flush_alerts(&config, &ledger, &stop)?;
    let of_region = region.map_or(String::new(), |r| format!(" (region {r})"));
    eprintln!(
        "{period}{of_region}: {reopened} delivery(ies) to retry, {} sent, {} not",
        run.sent, run.failed
    );
    match run.state {
        RunState::Succeeded => Ok(()),
        _ => Err(Failure::failed(
            run.error.filter(|e| !e.is_empty()).map_or_else(
                || "some deliveries are not sent".into(),
                |e| clip(&e, MAX_ERROR_BYTES).into_owned(),
            ),
        )),
    }
}

fn find_job<'a>(config: &'a Config, name: &str) -> Result<&'a crate::jobs::config::Job, Failure> {
    config.job(name).ok_or_else(|| {
        let known: Vec<&str> = config.jobs.iter().map(|j| j.name.as_str()).collect();
        Failure::from(JobError::UnknownJob {
            name: name.to_owned(),
            config: config.path.clone(),
            known: known.join(", "),
        })
    })
}

pub fn schedule(config: &Path, count: usize) -> Result<(), Failure> {
    let config = load(config)?;
    let now = SystemClock.now();
    for job in &config.jobs {
        let windowed = crate::reports::find(&job.report)
            .is_some_and(|r| r.options().iter().any(|o| o.name == "window"));
        let window = if windowed {
            format!("  window={}", job.window)
        } else {
            String::new()
        };
        println!(
            "{}  report={}  cron=\"{}\"  timezone={}{window}  catchup={}",
            job.name, job.report, job.cron, job.timezone, job.catchup
        );
        for t in job.cron.upcoming(job.timezone, now, count) {
            println!(
                "    {}  ({})",
                t.with_timezone(&job.timezone).format("%Y-%m-%d %H:%M %Z"),
                t.format("%Y-%m-%d %H:%M UTC")
            );
        }
    }
    Ok(())
}

pub fn check(
    config_path: &Path,
    db: Option<&crate::run::Location>,
    mapping: Option<&crate::run::Mapping>,
    smtp: bool,
) -> Result<(), Failure> {
    let mut found = check::check(config_path, db, mapping);
    if smtp {
        check::smtp(config_path, &mut found);
    }
    for note in &found.notes {
        eprintln!("{}", visible(note));
    }
    for p in found.problems.iter().chain(&found.failures) {
        eprintln!("- {}", visible(p));
    }
    // As a run would exit: 2 when the configuration or the data's tables must change,
    // 1 when a job or report would fail on the data or the mail server as they are.
    let (problems, failures) = (found.problems.len(), found.failures.len());
    if problems > 0 {
        Err(Failure::usage(format!(
            "{} problem(s) found",
            problems + failures
        )))
    } else if failures > 0 {
        Err(Failure::failed(format!(
            "{failures} problem(s) found: a run would fail (exit 1)"
        )))
    } else {
        match db {
            Some(db) if !config_path.exists() => println!("ok: {}", visible(&db.to_string())),
            _ => println!("ok: {}", visible(&config_path.display().to_string())),
        }
        Ok(())
    }
}

/// `check`'s lines quote the database (tag names, values, company and table
/// names): its control characters are shown as escapes (`\x1b`, `\u{9b}`), so
/// that no text of the data can move the cursor, clear the screen or retitle the
/// terminal. Line breaks of the messages themselves stay line breaks.
fn visible(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\n' => out.push(c),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            // C1 controls (a lone U+009B is a CSI) and the bidirectional overrides
            // that reorder what a terminal shows.
            '\u{80}'..='\u{9f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' => {
                out.push_str(&format!("\\u{{{:x}}}", c as u32));
            }
            c => out.push(c),
        }
    }
    out
}

pub fn history(config: &Path, job: Option<&str>) -> Result<(), Failure> {
    let config = load(config)?;
    let path = config.state_path();
    if !path.exists() {
        if let Some(name) = job {
            find_job(&config, name)?;
        }
        println!("no runs yet ({} does not exist)", path.display());
        return Ok(());
    }
    let ledger = Ledger::open_read_only(&path)?;
    let runs = ledger.history(job)?;
    if let (Some(name), true) = (job, runs.is_empty()) {
        // A job removed from the configuration still shows its runs; a name that is
        // neither configured nor in the ledger is a typo, not an empty history.
        find_job(&config, name)?;
        println!("{name}: no runs yet");
        return Ok(());
    }
    let mut latest_failed: Vec<String> = Vec::new();
    let mut last_job: Option<&str> = None;
    let mut words: Option<Words> = None;
    for (i, r) in runs.iter().enumerate() {
        if last_job != Some(r.job.as_str()) {
            println!("{}", r.job);
            last_job = Some(&r.job);
            words = Words::of(&config, &r.job);
        }
        println!(
            "  {} {:<9} started {}  finished {}  attempts {}{}",
            period_shown(&r.period),
            r.state,
            r.started_at.as_deref().unwrap_or("-"),
            r.finished_at.as_deref().unwrap_or("-"),
            r.attempts,
            r.error
                .as_deref()
                .map(|e| format!("\n      error: {e}"))
                .unwrap_or_default()
        );
        for line in edition_lines(&r.editions) {
            println!("      {line}");
        }
        for d in &r.deliveries {
            let retry = match (&d.next_attempt_at, &d.retry_until) {
                (Some(next), Some(until)) if d.state == DeliveryState::Failed => {
                    format!("  next try {next}, until {until}")
                }
                _ => String::new(),
            };
            println!(
                "      {}{} {:<32} {:<8} attempts {}{}{}{}",
                if d.region.is_empty() {
                    String::new()
                } else {
                    format!("{} ", d.region)
                },
                d.lang,
                d.recipient,
                d.state,
                d.attempts,
                if d.possible_duplicate {
                    "  POSSIBLE DUPLICATE: sent again after a crash, same Message-ID"
                } else {
                    ""
                },
                retry,
                d.last_error
                    .as_deref()
                    .map(|e| format!("  ({e})"))
                    .unwrap_or_default()
            );
        }
        let watched = r.watch.iter().map(|w| ("", w)).chain(
            r.editions
                .iter()
                .flat_map(|e| e.watch.iter().map(move |w| (e.region.as_str(), w))),
        );
        for (region, w) in watched {
            let region = if region.is_empty() {
                String::new()
            } else {
                format!("{region} ")
            };
            let note = w
                .note
                .as_deref()
                .map(|n| format!("  ({n})"))
                .unwrap_or_default();
            if w.fired {
                // The sentence page 1 and the email print.
                println!(
                    "      {region}watch {:<20} FIRED {}{note}",
                    w.rule,
                    fired(words.as_ref(), w)
                );
                continue;
            }
            let (metric, slice) = words.as_ref().map_or_else(
                || (w.metric.clone(), w.slice.clone()),
                |x| x.watch(&w.metric, &w.slice),
            );
            println!(
                "      {region}watch {:<20} quiet {} ({}) change {} threshold {}{note}",
                w.rule,
                metric,
                slice,
                w.change.map_or("-".to_owned(), |c| format!("{c:+.2}")),
                w.threshold,
            );
        }
        let is_latest = runs.get(i + 1).is_none_or(|n| n.job != r.job);
        if is_latest && r.state == RunState::Failed {
            latest_failed.push(r.job.clone());
        }
    }
    let alerts = ledger.pending_alerts(job)?;
    if !alerts.is_empty() {
        println!("owner alerts not sent yet (sent when the SMTP server takes them)");
        for a in &alerts {
            println!(
                "  {:<24} {:<32} attempts {}  {}  ({})",
                a.job, a.recipient, a.attempts, a.subject, a.last_error
            );
        }
    }
    if latest_failed.is_empty() {
        Ok(())
    } else {
        Err(Failure::failed(format!(
            "the latest run failed for: {}",
            latest_failed.join(", ")
        )))
    }
}

/// What `run --job` and `history` say of a bursted run's region editions: each
/// value with its companies and how its edition ended, then the values written for
/// no one (`written, no recipients: LATAM`).
fn edition_lines(editions: &[crate::jobs::ledger::EditionRecord]) -> Vec<String> {
    let mut lines: Vec<String> = editions
        .iter()
        .map(|e| {
            let how = match (&e.error, e.mailed) {
                (Some(err), _) => format!("run failed: {}", clip(err, MAX_ERROR_BYTES)),
                (None, true) => "written, mailed".to_owned(),
                (None, false) => "written, no recipients".to_owned(),
            };
            format!(
                "region {} [{}]: {} companies, {how}",
                e.label, e.region, e.companies
            )
        })
        .collect();
    let unmailed: Vec<&str> = editions
        .iter()
        .filter(|e| !e.mailed && e.error.is_none())
        .map(|e| e.label.as_str())
        .collect();
    if !unmailed.is_empty() {
        lines.push(format!(
            "written, no recipients: {} (give them [job.burst.recipients.<value>] to mail them)",
            unmailed.join(", ")
        ));
    }
    lines
}

/// A run's period in `history`: as the report's cover prints it, then the key that
/// `retry --period` takes ("2023-12-15 – 2024-06-15  [2023-12-15_2024-06-15]").
fn period_shown(key: &str) -> String {
    let label = crate::reports::period_label(key, None);
    if label == key {
        format!("{key:<24}")
    } else {
        format!("{label:<23}  [{key}]")
    }
}

/// The English words of a job's report, for the metric and slice names `history`
/// prints (the configuration may no longer have the job: then the names as stored).
struct Words(crate::render::templates::Language);

/// A fired rule as page 1 and the email say it ([`WatchResult::sentence`]), in
/// English; the rule's names and change as stored when the job's words cannot be
/// read (the configuration no longer has the job, or its templates do not load) or
/// the ledger kept no values.
fn fired(words: Option<&Words>, w: &WatchResult) -> String {
    // A rule kept by a ledger older than its values has no numbers to say.
    let said = words.filter(|_| w.current.is_some() && w.previous.is_some());
    match said.map(|x| w.sentence(&x.0)) {
        Some(Ok(sentence)) => sentence,
        Some(Err(e)) => format!("{} ({e})", stored(w)),
        None => stored(w),
    }
}

fn stored(w: &WatchResult) -> String {
    format!(
        "watch rule `{}` fired: {} ({}) changed by {}",
        w.rule,
        w.metric,
        w.slice,
        w.change.map_or("-".to_owned(), |c| format!("{c:+.2}"))
    )
}

impl Words {
    fn of(config: &Config, job: &str) -> Option<Self> {
        let report = &config.job(job)?.report;
        config.templates().language(report, "en").ok().map(Self)
    }

    /// A watch rule's metric and slice as the cover names them.
    fn watch(&self, metric: &str, slice: &str) -> (String, String) {
        let s = &self.0.strings;
        let metric = s
            .get_opt(&format!("change.metric_{metric}"))
            .unwrap_or_else(|| metric.to_owned());
        let slice = if slice == "overall" {
            s.get_opt("labels.overall")
                .unwrap_or_else(|| slice.to_owned())
        } else {
            s.get_opt(&format!("labels.segment.{slice}"))
                .unwrap_or_else(|| slice.to_owned())
        };
        (metric, slice)
    }
}

#[cfg(test)]
mod tests {
    use super::visible;

    #[test]
    fn history_shows_the_period_as_read_and_the_key_to_type() {
        assert_eq!(
            super::period_shown("2023-12-15_2024-06-15").trim_end(),
            "2023-12-15 – 2024-06-15  [2023-12-15_2024-06-15]"
        );
        assert_eq!(
            super::period_shown("fire-2024-07-01T08:00:00Z").trim_end(),
            "fire-2024-07-01T08:00:00Z"
        );
    }

    #[test]
    fn database_text_cannot_drive_the_terminal() {
        assert_eq!(
            visible("tags: Bug\x1b[2J, \u{9b}31m, a\rb, tab\there, \u{202e}fdp, \x7f"),
            "tags: Bug\\x1b[2J, \\u{9b}31m, a\\x0db, tab\\x09here, \\u{202e}fdp, \\x7f"
        );
        assert_eq!(
            visible("line one\nline two: 北京"),
            "line one\nline two: 北京"
        );
    }
}
