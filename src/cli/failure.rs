//! Why a command failed, and so its exit code: the one place the command line
//! turns an error into a code. A library error comes in through one `From`, which
//! asks the error's own [`Classify`] (each error enum classifies every variant
//! beside its definition); the command line builds a failure by hand only for its
//! own judgements: [`Failure::usage`] for an argument that names nothing or is
//! malformed, [`Failure::failed`] for an outcome it reads as failed (a run's state,
//! `check`'s list, `history`'s latest run, `status`'s health). The codes are
//! [`crate::exit`]'s table.

use crate::exit::{Classify, Exit};

/// Why a command failed; its exit code is [`Failure::exit_code`].
#[derive(Debug)]
pub enum Failure {
    /// How cxreport was called or configured must change.
    Usage(anyhow::Error),
    /// The work failed (or, for `history`, a job's latest run did).
    Failed(anyhow::Error),
}

impl Failure {
    /// The command line's own check of its arguments failed: the user's, by
    /// definition.
    pub fn usage(message: impl std::fmt::Display) -> Self {
        Self::Usage(anyhow::Error::msg(message.to_string()))
    }

    /// An outcome the command line reads as failed work (no library error behind it).
    pub fn failed(message: impl std::fmt::Display) -> Self {
        Self::Failed(anyhow::Error::msg(message.to_string()))
    }

    pub fn exit(&self) -> Exit {
        match self {
            Self::Usage(_) => Exit::Usage,
            Self::Failed(_) => Exit::Failed,
        }
    }

    pub fn exit_code(&self) -> u8 {
        self.exit().code()
    }

    pub fn error(&self) -> &anyhow::Error {
        match self {
            Self::Usage(e) | Self::Failed(e) => e,
        }
    }
}

impl<E> From<E> for Failure
where
    E: Classify + std::error::Error + Send + Sync + 'static,
{
    fn from(e: E) -> Self {
        match e.exit() {
            Exit::Usage => Self::Usage(e.into()),
            Exit::Failed => Self::Failed(e.into()),
        }
    }
}

/// Each library error's variants, with the exit code each had before the
/// classification moved beside the enums.
#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::Failure;
    use crate::demo::postgres::CopyError;
    use crate::demo::DemoError;
    use crate::intercom::mapping::MappingError;
    use crate::intercom::window::WindowError;
    use crate::jobs::config::ConfigError;
    use crate::jobs::ledger::LedgerError;
    use crate::jobs::JobError;
    use crate::render::charts::engine::EngineError;
    use crate::render::pdf::PdfError;
    use crate::render::templates::NarrativeError;
    use crate::reports::{MetricsError, ReportError};
    use crate::run::edition::EditionError;
    use crate::run::output::OutputError;
    use crate::run::worker::WorkerError;
    use crate::run::RunError;
    use crate::source::{DataError, DriverError, UrlError};

    const USAGE: u8 = 2;
    const FAILED: u8 = 1;

    fn code(e: impl Into<Failure>) -> u8 {
        e.into().exit_code()
    }

    fn io() -> std::io::Error {
        std::io::Error::other("disk full")
    }

    fn path() -> PathBuf {
        PathBuf::from("x")
    }

    fn url() -> UrlError {
        UrlError::Invalid {
            url: "postgresql://h".into(),
            message: "bad".into(),
        }
    }

    fn data_errors() -> Vec<(DataError, u8)> {
        let db = || "demo.sqlite".to_owned();
        vec![
            (
                DataError::Open {
                    db: db(),
                    cause: DriverError("no such file".into()),
                },
                USAGE,
            ),
            (
                DataError::Schema {
                    db: db(),
                    report: "tag-drivers".into(),
                    missing: Vec::new(),
                },
                USAGE,
            ),
            (
                DataError::Query {
                    db: db(),
                    table: "conversations",
                    cause: DriverError("disk I/O error".into()),
                },
                FAILED,
            ),
            (
                DataError::Deadline {
                    db: db(),
                    table: "conversations",
                    secs: 1,
                },
                FAILED,
            ),
            (
                DataError::BadValue {
                    db: db(),
                    table: "conversations",
                    column: "state",
                    row: "1".into(),
                    expected: "text",
                    found: "a blob".into(),
                },
                FAILED,
            ),
        ]
    }

    fn narrative_errors() -> Vec<(NarrativeError, u8)> {
        let p = || "tag-drivers/en/findings.tera".to_owned();
        let m = || "boom".to_owned();
        vec![
            (
                NarrativeError::UnknownLanguage {
                    report: "tag-drivers".into(),
                    lang: "fr".into(),
                    available: "en, zh".into(),
                },
                USAGE,
            ),
            (NarrativeError::Missing { path: p() }, USAGE),
            (
                NarrativeError::Read {
                    path: path(),
                    cause: io(),
                },
                USAGE,
            ),
            (
                NarrativeError::Template {
                    path: p(),
                    message: m(),
                },
                USAGE,
            ),
            (
                NarrativeError::Strings {
                    path: p(),
                    message: m(),
                },
                USAGE,
            ),
            (
                NarrativeError::Render {
                    path: p(),
                    message: m(),
                },
                FAILED,
            ),
            (NarrativeError::Worker(m()), FAILED),
        ]
    }

    fn metrics_errors() -> Vec<MetricsError> {
        let (start, end) = ("2024-01-01".to_owned(), "2024-07-01".to_owned());
        vec![
            MetricsError::EmptyWindow {
                start: start.clone(),
                end: end.clone(),
            },
            MetricsError::WindowOutsideData {
                start,
                end,
                data: "later".into(),
            },
            MetricsError::NoRows {
                table: "conversations",
                report: "tag-drivers",
            },
            MetricsError::NothingMapped {
                report: "conversation-usage",
                cause: "no paying company",
            },
            MetricsError::NothingKept {
                report: "tag-drivers",
                conversations: 2,
            },
        ]
    }

    fn window_errors() -> Vec<(WindowError, u8)> {
        vec![
            (
                WindowError::Parse {
                    text: "weekly".into(),
                    reason: "unknown kind",
                },
                USAGE,
            ),
            (WindowError::NoAnchor("rolling:6m".into()), FAILED),
            (
                WindowError::BeforeData {
                    window: "rolling:6m".into(),
                    reference: "2019-01-01T00:00:00Z".into(),
                    data: "later".into(),
                },
                FAILED,
            ),
        ]
    }

    fn edition_errors() -> Vec<(EditionError, u8)> {
        let mut out: Vec<(EditionError, u8)> = narrative_errors()
            .into_iter()
            .map(|(e, c)| (e.into(), c))
            .collect();
        for e in [
            EngineError::Start("x".into()),
            EngineError::Render {
                chart: "trend".into(),
                message: "x".into(),
            },
            EngineError::Stopped,
            EngineError::Deadline {
                chart: "trend".into(),
                secs: 1,
            },
        ] {
            out.push((e.into(), FAILED));
        }
        let messages = || vec!["x".to_owned()];
        for e in [
            PdfError::Compile {
                template: "report.typ".into(),
                messages: messages(),
            },
            PdfError::Export {
                template: "report.typ".into(),
                messages: messages(),
            },
            PdfError::Path {
                path: "../x".into(),
            },
        ] {
            out.push((e.into(), FAILED));
        }
        out
    }

    #[test]
    fn a_database_that_is_not_there_or_lacks_tables_is_the_users() {
        for (e, want) in data_errors() {
            let said = e.to_string();
            assert_eq!(code(e), want, "{said}");
        }
        assert_eq!(code(DataError::Url(url())), USAGE);
        assert_eq!(code(url()), USAGE);
        let password = UrlError::Password {
            url: "postgresql://a:b@h".into(),
            env: "PGPASSWORD".into(),
        };
        assert_eq!(code(password), USAGE);
    }

    #[test]
    fn a_report_is_the_users_when_called_wrong_and_failed_on_data_that_holds_nothing() {
        for (e, want) in data_errors() {
            let said = e.to_string();
            assert_eq!(code(ReportError::from(e)), want, "{said}");
        }
        for (e, want) in window_errors() {
            let said = e.to_string();
            assert_eq!(code(ReportError::from(e)), want, "{said}");
        }
        for e in metrics_errors() {
            let said = e.to_string();
            assert_eq!(code(ReportError::from(e)), FAILED, "{said}");
        }
        let option = ReportError::Option {
            report: "tag-drivers",
            option: "min_pp".into(),
            message: "not a number".into(),
        };
        assert_eq!(code(option), USAGE);
    }

    #[test]
    fn a_template_that_does_not_load_is_the_users_one_failing_on_the_data_is_not() {
        for (e, want) in edition_errors() {
            let said = e.to_string();
            assert_eq!(code(RunError::from(e)), want, "{said}");
        }
    }

    #[test]
    fn a_run_keeps_the_class_of_what_failed_in_it() {
        assert_eq!(code(RunError::UnknownReport("tag-driver".into())), USAGE);
        let option = RunError::UnknownOption {
            report: "tag-drivers".into(),
            option: "min-pp".into(),
        };
        assert_eq!(code(option), USAGE);
        for (e, want) in data_errors() {
            let said = e.to_string();
            assert_eq!(code(RunError::from(e)), want, "{said}");
        }
        let window = ReportError::from(window_errors().remove(0).0);
        assert_eq!(code(RunError::from(window)), USAGE);
        for e in [
            OutputError::Io {
                path: path(),
                cause: io(),
            },
            OutputError::Csv {
                path: path(),
                cause: csv::Error::from(io()),
            },
            OutputError::Json {
                path: path(),
                cause: serde_json::from_str::<u8>("x").unwrap_err(),
            },
        ] {
            assert_eq!(code(RunError::from(e)), FAILED);
        }
        let hash = RunError::Hash {
            path: path(),
            cause: io(),
        };
        assert_eq!(code(hash), FAILED);
    }

    #[test]
    fn a_run_in_a_worker_keeps_its_class_and_a_worker_that_fails_is_a_failed_run() {
        for (usage, want) in [(true, USAGE), (false, FAILED)] {
            let e = WorkerError::Failed {
                message: "x".into(),
                usage,
            };
            assert_eq!(code(RunError::from(e)), want);
        }
        for e in [
            WorkerError::TimedOut {
                limit: std::time::Duration::from_secs(1),
                stage: "plan".into(),
            },
            WorkerError::Died {
                how: "signal 9".into(),
                stage: "plan".into(),
                hint: "",
            },
            WorkerError::Spawn {
                exe: path(),
                cause: io(),
            },
            WorkerError::Protocol("x".into()),
        ] {
            let said = e.to_string();
            assert_eq!(code(RunError::from(e)), FAILED, "{said}");
        }
    }

    #[test]
    fn the_configuration_and_a_job_name_are_the_users_the_ledger_is_not() {
        for e in [
            ConfigError::Read {
                path: path(),
                cause: io(),
            },
            ConfigError::Toml {
                path: path(),
                message: "x".into(),
            },
            ConfigError::Invalid {
                path: path(),
                problems: Vec::new(),
            },
        ] {
            assert_eq!(code(e), USAGE);
        }
        let mapping = MappingError {
            source_name: "--mapping m.toml".into(),
            message: "x".into(),
        };
        assert_eq!(code(mapping), USAGE);
        let unknown = JobError::UnknownJob {
            name: "weekly".into(),
            config: path(),
            known: "daily".into(),
        };
        assert_eq!(code(unknown), USAGE);
        let ledger = || {
            [
                LedgerError::Sqlite {
                    path: path(),
                    cause: rusqlite::Error::QueryReturnedNoRows,
                },
                LedgerError::Io {
                    path: path(),
                    cause: io(),
                },
                LedgerError::Message {
                    path: path(),
                    job: "daily".into(),
                    period: "p".into(),
                    lang: "en".into(),
                    message: "x".into(),
                },
                LedgerError::Newer {
                    path: path(),
                    found: 8,
                    known: 7,
                },
            ]
        };
        for e in ledger() {
            assert_eq!(code(e), FAILED);
        }
        for e in ledger() {
            assert_eq!(code(JobError::from(e)), FAILED);
        }
        assert_eq!(code(JobError::Busy("daily".into())), FAILED);
        assert_eq!(code(JobError::Signal(io())), FAILED);
    }

    #[test]
    fn a_demo_scale_and_where_a_copy_points_are_the_users() {
        assert_eq!(code(DemoError::Scale(0)), USAGE);
        let sqlite = DemoError::Sqlite {
            path: path(),
            cause: rusqlite::Error::QueryReturnedNoRows,
        };
        assert_eq!(code(sqlite), FAILED);
        let io = DemoError::Io {
            path: path(),
            cause: io(),
        };
        assert_eq!(code(io), FAILED);
        let read = CopyError::Read {
            path: path(),
            cause: rusqlite::Error::QueryReturnedNoRows,
        };
        assert_eq!(code(read), USAGE);
        let connect = CopyError::Connect {
            url: "postgresql://h".into(),
            message: "refused".into(),
        };
        assert_eq!(code(connect), USAGE);
        let write = CopyError::Write {
            url: "postgresql://h".into(),
            table: "conversations".into(),
            message: "x".into(),
        };
        assert_eq!(code(write), FAILED);
    }

    #[test]
    fn the_command_lines_own_judgements_have_one_constructor_each() {
        assert_eq!(Failure::usage("--to: not an address").exit_code(), USAGE);
        assert_eq!(Failure::failed("the run failed").exit_code(), FAILED);
        assert_eq!(
            Failure::usage("--clock-speed must be > 0")
                .error()
                .to_string(),
            "--clock-speed must be > 0"
        );
    }
}
