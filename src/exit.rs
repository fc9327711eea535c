//! Whose move an error asks for, and the process's exit codes: every layer may
//! read it, it reads no other module.
//!
//! Each library error enum implements [`Classify`] beside its definition, with a
//! `match` over all its variants (no catch-all arm: a new variant does not compile
//! until someone decides whose it is). The command line turns the class into the
//! code (`cli::Failure`); a run's worker sends the class back with its message.
//!
//! | code | constant | meaning |
//! |---|---|---|
//! | 0 | [`OK`] | done; `check` found nothing, `status` is healthy |
//! | 1 | [`FAILED`] | the work failed: a run, a delivery, `check` says a run would fail on the data or mail server as they are, `history`'s latest run of a job failed, `status` is not healthy; a second SIGINT/SIGTERM ended the process at once |
//! | 2 | [`USAGE`] | how cxreport was called or configured must change: an argument, the configuration, a template that does not load, a database or table that is missing |
//! | 3 | [`WORKER_ORPHANED`] | a run's worker process whose caller is gone (nobody reads its answer) |

/// Done.
pub const OK: u8 = 0;
/// The work failed.
pub const FAILED: u8 = 1;
/// How cxreport was called or configured must change.
pub const USAGE: u8 = 2;
/// A run's worker process ends with this when its caller has gone away.
pub const WORKER_ORPHANED: u8 = 3;

/// Whose move an error asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// The user's: how cxreport is called, configured or pointed at data must change.
    Usage,
    /// Nobody's mistake in the call: the work failed on the data, the disk, the
    /// network or a bug.
    Failed,
}

impl Exit {
    /// The process's exit code for an error of this class.
    pub const fn code(self) -> u8 {
        match self {
            Self::Usage => USAGE,
            Self::Failed => FAILED,
        }
    }
}

/// An error that knows whose move it asks for.
pub trait Classify {
    fn exit(&self) -> Exit;

    fn is_usage(&self) -> bool {
        self.exit() == Exit::Usage
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_class_has_its_documented_code() {
        assert_eq!(Exit::Usage.code(), 2);
        assert_eq!(Exit::Failed.code(), 1);
        assert_eq!((OK, WORKER_ORPHANED), (0, 3));
    }
}
