//! A report's options: what each is called and means ([`OptionSpec`], which the
//! command line and the job keys are made from), the values given ([`Options`]), and
//! how a report reads them into its own typed settings, once per run, from a list of
//! [`OptionParser`]s that each carry their parser (as a ripgrep flag does): a
//! report's options and how they are read are written in one place.

use std::collections::BTreeMap;

/// The window a windowed report covers when none is given (command line or job).
pub const DEFAULT_WINDOW: &str = "rolling:6m";

/// One option a report takes: its name (a job key; `--name-with-dashes` on the
/// command line), what it means, and its value when none is given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OptionSpec {
    pub name: &'static str,
    pub about: &'static str,
    pub default: &'static str,
}

/// The window option, for the reports that cut one (the run resolves it).
pub const WINDOW_OPTION: OptionSpec = OptionSpec {
    name: "window",
    about: "rolling:<N>m | calendar:<N>m | range:<from>..<to>",
    default: DEFAULT_WINDOW,
};

/// The comparison period of the windowed reports (a job key too).
pub const COMPARE_OPTION: OptionSpec = OptionSpec {
    name: "compare",
    about: "previous | shift:<N>m | none: the period the edition compares itself with",
    default: "previous",
};

/// A report's own option values as given (command line or job), by name; the report
/// reads them once into its settings ([`super::Report::configure`]).
pub type Options = BTreeMap<String, String>;

/// How an option's value is read into a report's settings `S`; the error is the
/// message after "option `name`:".
pub type Parse<S> = fn(&mut S, &str) -> Result<(), String>;

/// An option with the parser that sets its value in a report's settings `S`.
pub struct OptionParser<S> {
    pub spec: OptionSpec,
    /// Reads a value (given, else the spec's default) into the settings. None for an
    /// option the run reads itself (the window, which the request carries resolved).
    pub parse: Option<Parse<S>>,
}

impl<S> OptionParser<S> {
    /// An option the report reads with `parse`.
    pub const fn new(spec: OptionSpec, parse: Parse<S>) -> Self {
        Self {
            spec,
            parse: Some(parse),
        }
    }

    /// An option the run reads (the report lists it, parses nothing).
    pub const fn read_by_run(spec: OptionSpec) -> Self {
        Self { spec, parse: None }
    }
}

/// The specs of `parsers`, in order: what [`super::Report::options`] returns, so the
/// list a report shows and the list it reads are one.
pub const fn specs<S, const N: usize>(parsers: &[OptionParser<S>; N]) -> [OptionSpec; N] {
    let mut out = [WINDOW_OPTION; N];
    let mut i = 0;
    while i < N {
        out[i] = parsers[i].spec;
        i += 1;
    }
    out
}

/// An option value that does not read: the option and the message after "option
/// `name`:" (the same texts wherever they are printed: a run's error, `check`, a job's
/// problems).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadOption {
    pub option: String,
    pub message: String,
}

/// Every option value that does not read: one at least, so that an error of the
/// options always has a first problem to name (an empty list is no error).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadOptions {
    first: BadOption,
    rest: Vec<BadOption>,
}

impl BadOptions {
    /// The problems of `all`, none when it is empty.
    pub fn of(all: Vec<BadOption>) -> Option<Self> {
        let mut all = all.into_iter();
        let first = all.next()?;
        Some(Self {
            first,
            rest: all.collect(),
        })
    }

    /// The first problem: the one a run's error names.
    pub fn into_first(self) -> BadOption {
        self.first
    }

    /// Every problem, in order (what `check` and a job's problems list).
    pub fn into_vec(self) -> Vec<BadOption> {
        std::iter::once(self.first).chain(self.rest).collect()
    }
}

/// The report's settings from `options`, read once: every parser on its value (given,
/// else its default), starting from `S::default()`, whose values every parser then
/// replaces. The error is every option that does not read, in the parsers' order.
pub fn read<S: Default>(parsers: &[OptionParser<S>], options: &Options) -> Result<S, BadOptions> {
    let mut settings = S::default();
    let mut bad = Vec::new();
    for p in parsers {
        if let Some(parse) = p.parse {
            let value = options
                .get(p.spec.name)
                .map_or(p.spec.default, String::as_str);
            if let Err(message) = parse(&mut settings, value) {
                bad.push(BadOption {
                    option: p.spec.name.to_owned(),
                    message,
                });
            }
        }
    }
    BadOptions::of(bad).map_or(Ok(settings), Err)
}

/// The value of option `name`: as given, else the default the report declares.
pub fn option<'a>(report: &'static [OptionSpec], options: &'a Options, name: &str) -> &'a str {
    match options.get(name) {
        Some(v) => v,
        None => report
            .iter()
            .find(|o| o.name == name)
            .map_or("", |o| o.default),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Settings {
        size: u32,
        label: String,
    }

    const PARSERS: [OptionParser<Settings>; 3] = [
        OptionParser::read_by_run(WINDOW_OPTION),
        OptionParser::new(
            OptionSpec {
                name: "size",
                about: "a size",
                default: "7",
            },
            |s, v| {
                s.size = v.parse().map_err(|_| format!("`{v}`: expected a size"))?;
                Ok(())
            },
        ),
        OptionParser::new(
            OptionSpec {
                name: "label",
                about: "a label",
                default: "none",
            },
            |s, v| {
                if v.is_empty() {
                    return Err("expected a label".to_owned());
                }
                s.label = v.to_owned();
                Ok(())
            },
        ),
    ];
    const SPECS: &[OptionSpec] = &specs(&PARSERS);

    #[test]
    fn settings_read_defaults_and_values_and_name_every_bad_option() {
        assert_eq!(
            SPECS.iter().map(|s| s.name).collect::<Vec<_>>(),
            ["window", "size", "label"]
        );
        let s = read(&PARSERS, &Options::new()).unwrap();
        assert_eq!((s.size, s.label.as_str()), (7, "none"));
        let given: Options = [("label".to_owned(), "x".to_owned())].into();
        assert_eq!(read(&PARSERS, &given).unwrap().label, "x");
        let bad: Options = [
            ("size".to_owned(), "big".to_owned()),
            ("label".to_owned(), String::new()),
            ("window".to_owned(), "whatever: the run reads it".to_owned()),
        ]
        .into();
        let Err(all) = read(&PARSERS, &bad) else {
            panic!("a bad size reads");
        };
        let bad = |option: &str, message: &str| BadOption {
            option: option.to_owned(),
            message: message.to_owned(),
        };
        assert_eq!(
            all.clone().into_vec(),
            [
                bad("size", "`big`: expected a size"),
                bad("label", "expected a label")
            ]
        );
        assert_eq!(all.into_first(), bad("size", "`big`: expected a size"));
        assert_eq!(BadOptions::of(Vec::new()), None);
    }
}
