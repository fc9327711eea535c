//! The run ledger: a SQLite state database (`<output_dir>/cxreport-state.sqlite`) of
//! runs keyed by (job, period), deliveries keyed by (job, period, language, recipient)
//! with deterministic Message-IDs, the messages each edition mailed (so a delivery can
//! be retried later from the same text and files), owner alerts waiting for a working
//! SMTP server, per-job schedule cursors, and the daemon's heartbeat (`cxreport
//! status` reads it). Several processes share it safely (WAL, busy timeout).
//!
//! Who runs a job is decided by an OS file lock per job (`cxreport-state.locks/<job>.lock`),
//! not by process ids: the kernel releases it when the holder dies, whatever pid the
//! next process gets (a daemon restarted as PID 1 in a container gets the same one). A
//! `running` row whose job lock is free belongs to a process that is gone; it is
//! recovered once, by whoever takes the lock first (and not a second time: a run
//! interrupted again after its recovery is recorded failed). Who sends a delivery is
//! decided the same way, by a lock per delivery
//! (`cxreport-state.locks/<job>.deliveries/<hash>.lock`) taken with a claim of its row,
//! so overlapping runs of one period never send one message twice.
//!
//! This module opens the ledger (for writing, brought up to date by the one migration
//! path in `migrate`; or read-only, changing nothing) and holds its clock, its error
//! and what its parts share: the time format, the lock files, error texts clipped.
//! Each table is a part of its own, with the statements and the tests of its owner:
//! `runs` (runs, job locks and recovery, `history`; owned by `job` and `daemon`),
//! `deliveries` (claims, outcomes, retries; `delivery` and `resend`), `messages` (what
//! each edition mailed, for a retry), `alerts` (owner alerts kept until sent;
//! `alerts`), `watch` (what a run's watch rules found; `job`), `cursors` (the
//! schedule's last fire per job; `daemon`) and `heartbeat` (`daemon`, read by
//! `status`). The types are re-exported here: the rest of `jobs/` names them
//! `ledger::…`.

mod alerts;
mod cursors;
mod deliveries;
mod editions;
mod heartbeat;
mod messages;
mod migrate;
mod runs;
mod watch;

pub use alerts::{AlertKind, AlertState, NewAlert, PendingAlert, QueuedAlert};
pub use deliveries::{
    Claim, DeliveryKey, DeliveryLock, DeliveryRecord, DeliveryState, DeliveryStatus,
    DeliveryUpdate, Expired,
};
pub use editions::EditionRecord;
pub use heartbeat::Heartbeat;
pub use runs::{Interrupted, JobLock, RunFacts, RunRecord, RunState};

use std::borrow::Cow;
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OpenFlags};

use crate::clock::SharedClock;

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("run ledger {path}: {cause}")]
    Sqlite {
        path: PathBuf,
        cause: rusqlite::Error,
    },
    #[error("run ledger {path}: {cause}")]
    Io {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error(
        "run ledger {path}: table `{table}`, {row}: unknown state `{value}` (not one this version of cxreport writes: written by a newer version, or edited by hand)"
    )]
    UnknownState {
        path: PathBuf,
        table: &'static str,
        /// Which row: its job and period (and a delivery's language and recipient).
        row: String,
        value: String,
    },
    /// Written by a newer version of cxreport: read or changed by this one, its newer
    /// tables and columns would be misread or lost.
    #[error(
        "run ledger {path}: schema version {found}, newer than the {known} this version of cxreport knows: it was written by a newer cxreport, which is the one to run with it (this one does not downgrade a ledger)"
    )]
    Newer {
        path: PathBuf,
        found: u32,
        known: u32,
    },
    #[error(
        "run ledger {path}: stored message of {job} {period} ({lang}) is unreadable: {message}"
    )]
    Message {
        path: PathBuf,
        job: String,
        period: String,
        lang: String,
        message: String,
    },
}

impl crate::exit::Classify for LedgerError {
    /// The ledger is cxreport's own file: one it cannot read or write fails the
    /// work, not the call.
    fn exit(&self) -> crate::exit::Exit {
        match self {
            Self::Sqlite { .. }
            | Self::Io { .. }
            | Self::Message { .. }
            | Self::UnknownState { .. }
            | Self::Newer { .. } => crate::exit::Exit::Failed,
        }
    }
}

/// How much of any error text the ledger keeps (and an alert quotes): a value of many
/// megabytes copied into an error must not make the failure impossible to record.
pub const MAX_ERROR_BYTES: usize = 4096;
/// An alert's whole text: its error and the log lines it quotes, each clipped.
pub const MAX_ALERT_BYTES: usize = 16 * 1024;

/// `text` cut to at most `max` bytes (on a character boundary) with a marker saying
/// how much was cut.
pub fn clip(text: &str, max: usize) -> Cow<'_, str> {
    if text.len() <= max {
        return Cow::Borrowed(text);
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    Cow::Owned(format!(
        "{}… [{} of {} bytes cut]",
        &text[..end],
        text.len() - end,
        text.len()
    ))
}

pub struct Ledger {
    conn: Connection,
    path: PathBuf,
    /// What every time the ledger stamps reads (`started_at`, `updated_at`, an
    /// alert's `created_at`): the caller's clock, so that on a rehearsal clock the
    /// retries and alerts are kept on the clock that judges them due.
    clock: SharedClock,
    /// The schema version the ledger holds: [`migrate::LATEST`] once opened for
    /// writing. A ledger opened read-only is not migrated: what an older one lacks
    /// (its version is below the one that added it) reads as empty.
    version: u32,
}

/// A job name as a file name (config validation allows only these characters; this
/// keeps a hand-edited ledger from naming other paths).
fn safe_name(job: &str) -> String {
    job.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// An absolute path as an SQLite `file:` URI (its `?`, `#` and `%` would otherwise
/// be read as the URI's own). A path that is not UTF-8 is not found this way, and the
/// ordinary open's error is the one reported.
fn file_uri(path: &Path) -> String {
    let mut uri = String::from("file:");
    for b in path.to_string_lossy().bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'/' | b'-' | b'_' | b'.' | b'~') {
            uri.push(char::from(b));
        } else {
            uri.push_str(&format!("%{b:02X}"));
        }
    }
    uri
}

/// Takes the OS lock of the file at `path` without waiting (exclusive or shared),
/// creating it and its folder; `None` when another process (or another handle in
/// this one) holds it.
fn try_lock(path: &Path, exclusive: bool) -> Result<Option<File>, LedgerError> {
    let dir = path.parent().unwrap_or(path);
    let io = |source| LedgerError::Io {
        path: dir.to_owned(),
        cause: source,
    };
    std::fs::create_dir_all(dir).map_err(io)?;
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(io)?;
    let taken = if exclusive {
        file.try_lock()
    } else {
        file.try_lock_shared()
    };
    match taken {
        Ok(()) => Ok(Some(file)),
        Err(std::fs::TryLockError::WouldBlock) => Ok(None),
        Err(std::fs::TryLockError::Error(e)) => Err(io(e)),
    }
}

/// How long a statement waits for another process's write to end.
const BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Puts the ledger in WAL mode (several processes read while one writes). SQLite
/// changes the journal mode without its busy handler: a process that opens the ledger
/// while another closes its last connection to it (checkpointing and removing the
/// `-wal` under an exclusive lock) is told "locked" at once, so that is tried again
/// for as long as the busy timeout would have waited.
fn wal(conn: &Connection) -> rusqlite::Result<()> {
    let until = std::time::Instant::now() + BUSY_TIMEOUT;
    loop {
        match conn.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;") {
            Err(e)
                if e.sqlite_error_code() == Some(rusqlite::ErrorCode::DatabaseBusy)
                    && std::time::Instant::now() < until =>
            {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            done => return done,
        }
    }
}

fn format_time(t: DateTime<Utc>) -> String {
    crate::source::timestamp::format_utc(t)
}

fn parse_time(t: &str) -> Option<DateTime<Utc>> {
    crate::source::timestamp::parse(t, chrono_tz::Tz::UTC).ok()
}

impl Ledger {
    /// Opens (and creates) the ledger for writing, on the real clock.
    pub fn open(path: &Path) -> Result<Self, LedgerError> {
        Self::open_with_clock(path, crate::clock::system())
    }

    /// Opens (and creates) the ledger for writing; the times it stamps are `clock`'s.
    pub fn open_with_clock(path: &Path, clock: SharedClock) -> Result<Self, LedgerError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|source| LedgerError::Io {
                path: path.to_owned(),
                cause: source,
            })?;
        }
        let err = |source| LedgerError::Sqlite {
            path: path.to_owned(),
            cause: source,
        };
        // The ledger's mode is SQLite's (0644 less the umask), like every other file
        // cxreport writes: it holds recipients and kept messages, so what keeps it
        // private is its directory (the unit's StateDirectory is 0700), not a mode of
        // its own that a monitoring user in the same group could not read `history` by.
        // Not the default flags: they fall back to read-only when the file cannot be
        // written, and the first write would fail far from here.
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(err)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(err)?;
        wal(&conn).map_err(err)?;
        migrate::migrate(&conn, path)?;
        Ok(Self {
            conn,
            path: path.to_owned(),
            clock,
            version: migrate::LATEST,
        })
    }

    /// Opens an existing ledger for reading only (`history`): works in a read-only
    /// directory and changes nothing.
    ///
    /// A WAL database opened read-only the ordinary way needs its `-shm` file, which
    /// it creates, and fails in a directory it cannot write. When there is no `-wal`
    /// with anything in it, everything is in the file itself (a writer would have to
    /// create one to change it): the file is then read as immutable, creating nothing.
    pub fn open_read_only(path: &Path) -> Result<Self, LedgerError> {
        let first = match Self::open_read_only_with(path, false) {
            Ok(l) => return Ok(l),
            Err(e) => e,
        };
        let cannot_write = matches!(
            &first,
            LedgerError::Sqlite { cause: source, .. } if matches!(
                source.sqlite_error_code(),
                Some(rusqlite::ErrorCode::ReadOnly | rusqlite::ErrorCode::CannotOpen)
            )
        );
        // With a `-wal` that holds anything, the file alone is not the whole ledger
        // (and a busy or broken ledger is reported as it is).
        let mut wal = path.as_os_str().to_owned();
        wal.push("-wal");
        let wal_empty = std::fs::metadata(PathBuf::from(wal)).map_or(true, |m| m.len() == 0);
        if cannot_write && wal_empty {
            Self::open_read_only_with(path, true).map_err(|_| first)
        } else {
            Err(first)
        }
    }

    fn open_read_only_with(path: &Path, immutable: bool) -> Result<Self, LedgerError> {
        let err = |source| LedgerError::Sqlite {
            path: path.to_owned(),
            cause: source,
        };
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = if immutable {
            let absolute = std::path::absolute(path).map_err(|source| LedgerError::Io {
                path: path.to_owned(),
                cause: source,
            })?;
            Connection::open_with_flags(
                format!("{}?immutable=1", file_uri(&absolute)),
                flags | OpenFlags::SQLITE_OPEN_URI,
            )
        } else {
            Connection::open_with_flags(path, flags)
        }
        .map_err(err)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(err)?;
        let version = migrate::version_of(&conn, path)?;
        Ok(Self {
            conn,
            path: path.to_owned(),
            clock: crate::clock::system(),
            version,
        })
    }

    /// Now, on the ledger's clock.
    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// The ledger's clock, for what is timed along with its rows.
    pub fn clock(&self) -> &SharedClock {
        &self.clock
    }

    fn now_text(&self) -> String {
        format_time(self.now())
    }

    /// A state read from `table` this version does not know: an error naming where.
    fn unknown_state(&self, table: &'static str, row: String, value: String) -> LedgerError {
        LedgerError::UnknownState {
            path: self.path.clone(),
            table,
            row,
            value,
        }
    }

    fn err(&self, source: rusqlite::Error) -> LedgerError {
        LedgerError::Sqlite {
            path: self.path.clone(),
            cause: source,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The directory of the per-job lock files.
    fn lock_dir(&self) -> PathBuf {
        self.path.with_extension("locks")
    }
}

/// What the parts' tests share.
#[cfg(test)]
mod testing {
    use chrono::{DateTime, Utc};

    use super::{parse_time, DeliveryKey, DeliveryState, DeliveryUpdate};

    pub(super) fn at(s: &str) -> DateTime<Utc> {
        parse_time(s).unwrap()
    }

    pub(super) fn key<'a>(lang: &'a str) -> DeliveryKey<'a> {
        DeliveryKey {
            job: "j",
            period: "2024-01-01_2024-06-30",
            region: "",
            lang,
            recipient: "ceo@example.com",
        }
    }

    pub(super) fn update(state: DeliveryState, error: Option<&str>) -> DeliveryUpdate<'_> {
        DeliveryUpdate {
            state,
            attempts_added: 1,
            error,
            next_attempt: None,
            retry_until: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::{Clock, SystemClock};
    use crate::jobs::ledger::testing::*;

    /// A state this version does not write (a newer version's, an edit by hand) is an
    /// error naming the ledger, the table, the row and the value, not a silent
    /// `pending` that would send the delivery again.
    #[test]
    fn a_state_the_ledger_holds_that_this_version_does_not_know_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.sqlite");
        let l = Ledger::open(&path).unwrap();
        let key = key("en");
        let id = key.message_id("example.com");
        l.begin_run("j", "2024-01-01_2024-06-30", None, None)
            .unwrap();
        l.delivery(&key, &id).unwrap();
        let edit = |sql: &str| {
            rusqlite::Connection::open(&path)
                .unwrap()
                .execute(sql, [])
                .unwrap()
        };

        edit("UPDATE deliveries SET state = 'bounced'");
        for e in [
            l.deliveries("j", "2024-01-01_2024-06-30").unwrap_err(),
            l.history(None).unwrap_err(),
            l.delivery(&key, &id).unwrap_err(),
        ] {
            assert!(
                matches!(&e, LedgerError::UnknownState { table: "deliveries", value, .. } if value == "bounced"),
                "{e:?}"
            );
            let text = e.to_string();
            for part in [
                path.display().to_string().as_str(),
                "`deliveries`",
                "job `j`",
                "period `2024-01-01_2024-06-30`",
                "en to ceo@example.com",
                "unknown state `bounced`",
            ] {
                assert!(text.contains(part), "{part}: {text}");
            }
        }
        assert!(matches!(
            l.claim_delivery(&key, &id),
            Err(LedgerError::UnknownState { .. })
        ));

        edit("UPDATE deliveries SET state = 'sent'");
        edit("UPDATE runs SET state = 'paused'");
        for e in [
            l.history(Some("j")).unwrap_err(),
            l.latest_runs().unwrap_err(),
            l.run("j", "2024-01-01_2024-06-30").unwrap_err(),
        ] {
            let text = e.to_string();
            assert!(
                text.contains(
                    "table `runs`, job `j`, period `2024-01-01_2024-06-30`: unknown state `paused`"
                ) && text.contains(&path.display().to_string()),
                "{text}"
            );
        }
        // Every state this version writes reads back as itself.
        for s in [
            RunState::Running,
            RunState::Succeeded,
            RunState::Failed,
            RunState::Skipped,
        ] {
            assert_eq!(RunState::parse(s.as_str()), Some(s));
        }
        for s in [
            DeliveryState::Pending,
            DeliveryState::Sending,
            DeliveryState::Sent,
            DeliveryState::Failed,
            DeliveryState::GaveUp,
        ] {
            assert_eq!(DeliveryState::parse(s.as_str()), Some(s));
        }
    }

    #[test]
    fn read_only_history_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.sqlite");
        let l = Ledger::open(&path).unwrap();
        l.begin_run("j", "p", None, None).unwrap();
        drop(l);
        let bytes = std::fs::read(&path).unwrap();
        let r = Ledger::open_read_only(&path).unwrap();
        assert_eq!(r.history(None).unwrap().len(), 1);
        assert!(r.begin_run("j", "q", None, None).is_err());
        drop(r);
        assert_eq!(bytes, std::fs::read(&path).unwrap());
        assert!(
            !dir.path().join("state.locks").exists(),
            "no lock directory either"
        );
    }

    #[test]
    fn a_failure_of_fifty_megabytes_is_recorded_cut() {
        let dir = tempfile::tempdir().unwrap();
        let l = Ledger::open(&dir.path().join("state.sqlite")).unwrap();
        let huge = format!("bad value `{}`", "x".repeat(50 << 20));
        l.begin_run("j", "p", None, None).unwrap();
        l.record_failed("j", "p", at("2024-06-01 08:00:00"), &huge)
            .unwrap();
        let k = key("en");
        l.delivery(&k, "<id@x>").unwrap();
        l.update_delivery(&k, &update(DeliveryState::Failed, Some(&huge)))
            .unwrap();
        l.queue_alert(&NewAlert {
            job: "j",
            period: "p",
            kind: AlertKind::Failed,
            recipient: "owner@example.com",
            message_id: "<a@x>",
            subject: &huge,
            body: &huge,
        })
        .unwrap();
        let due = l.alerts_due(SystemClock.now()).unwrap();
        l.alert_attempted(due[0].id, Some(&huge), SystemClock.now())
            .unwrap();
        let run = &l.history(Some("j")).unwrap()[0];
        assert_eq!(run.state, "failed");
        let kept = run.error.as_deref().unwrap();
        eprintln!(
            "a {} byte error is kept as {} bytes",
            huge.len(),
            kept.len()
        );
        assert!(kept.len() < MAX_ERROR_BYTES + 100, "{}", kept.len());
        assert!(kept.starts_with("bad value `xxx"));
        assert!(
            kept.ends_with(&format!("of {} bytes cut]", huge.len())),
            "{}",
            &kept[kept.len() - 60..]
        );
        let d = &l.deliveries(k.job, k.period).unwrap()[0];
        assert!(d.last_error.as_deref().unwrap().len() < MAX_ERROR_BYTES + 100);
        let a = &l.alerts_due(SystemClock.now()).unwrap()[0];
        assert!(a.subject.len() < MAX_ERROR_BYTES + 100);
        assert!(a.body.len() < MAX_ALERT_BYTES + 100);
        let pending = &l.pending_alerts(None).unwrap()[0];
        assert!(pending.last_error.len() < MAX_ERROR_BYTES + 100);
        drop(l);
        let size = std::fs::metadata(dir.path().join("state.sqlite"))
            .unwrap()
            .len();
        assert!(size < 1 << 20, "ledger of {size} bytes");
        // Cut on a character boundary.
        assert_eq!(clip("ééé", 3), "é… [4 of 6 bytes cut]");
        assert_eq!(clip("short", 10), "short");
    }
}
