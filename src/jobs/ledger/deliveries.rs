//! The `deliveries` table: one row per (job, period, region, language, recipient)
//! (the region `''` unless the job is bursted) with its
//! deterministic Message-ID; the claim that makes one process send it (an OS lock per
//! delivery and an update only from the state read); its outcome, retries and their
//! expiry. Its owners are `delivery` (sending, each outcome) and `resend` (the
//! daemon's retries, `cxreport retry`).

use std::fs::File;
use std::path::PathBuf;

use chrono::{DateTime, Utc};
use rusqlite::{params, Connection, OptionalExtension, Transaction, TransactionBehavior};
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::migrate::{REGIONS, RETRIES};
use super::{clip, format_time, safe_name, try_lock, Ledger, LedgerError, MAX_ERROR_BYTES};

const SQL_DELIVERY_ENSURE: &str =
    "INSERT INTO deliveries (job, period, lang, recipient, message_id, state, attempts, updated_at, region)
     VALUES (?1, ?2, ?3, ?4, ?5, 'pending', 0, ?6, ?7) ON CONFLICT DO NOTHING";
const SQL_DELIVERY_GET: &str =
    "SELECT state, attempts, possible_duplicate, message_id FROM deliveries
     WHERE job = ?1 AND period = ?2 AND lang = ?3 AND recipient = ?4 AND region = ?5";
/// The claim: only from the state the claimant read, so of two processes that read
/// the same state one changes the row and the other finds it changed.
const SQL_DELIVERY_CLAIM: &str =
    "UPDATE deliveries SET state = 'sending', possible_duplicate = MAX(possible_duplicate, ?5), updated_at = ?6
     WHERE job = ?1 AND period = ?2 AND lang = ?3 AND recipient = ?4 AND state = ?7 AND region = ?8";
const SQL_DELIVERY_UPDATE: &str =
    "UPDATE deliveries SET state = ?5, attempts = attempts + ?6, last_error = ?7, updated_at = ?8,
         next_attempt_at = ?9, retry_until = COALESCE(retry_until, ?10)
     WHERE job = ?1 AND period = ?2 AND lang = ?3 AND recipient = ?4 AND region = ?11";
/// The same, from a ledger of an older version opened read-only (not migrated).
const SQL_DELIVERIES_OF_V1: &str =
    "SELECT lang, recipient, state, attempts, last_error, message_id, 0, NULL, NULL, ''
     FROM deliveries WHERE job = ?1 AND period = ?2 ORDER BY lang, recipient";
/// The same, from a ledger of a version before [`REGIONS`] opened read-only: every
/// delivery is of the job's one edition (region `''`).
const SQL_DELIVERIES_OF_BEFORE_REGIONS: &str =
    "SELECT lang, recipient, state, attempts, last_error, message_id, possible_duplicate, next_attempt_at, retry_until, ''
     FROM deliveries WHERE job = ?1 AND period = ?2 ORDER BY lang, recipient";
const SQL_DELIVERIES_OF: &str =
    "SELECT lang, recipient, state, attempts, last_error, message_id, possible_duplicate, next_attempt_at, retry_until, region
     FROM deliveries WHERE job = ?1 AND period = ?2 ORDER BY region, lang, recipient";
const SQL_RETRY_DUE: &str =
    "SELECT DISTINCT job, period FROM deliveries
     WHERE state = 'failed' AND COALESCE(next_attempt_at, '') <= ?1 AND (retry_until IS NULL OR retry_until > ?1)
     ORDER BY job, period";
const SQL_RETRY_EXPIRED: &str =
    "SELECT job, period, lang, recipient, COALESCE(last_error, ''), region FROM deliveries
     WHERE state = 'failed' AND retry_until IS NOT NULL AND retry_until <= ?1";
const SQL_GIVE_UP: &str = "UPDATE deliveries SET state = 'gave_up', updated_at = ?5,
         last_error = 'out of retry time: ' || COALESCE(last_error, '')
     WHERE job = ?1 AND period = ?2 AND lang = ?3 AND recipient = ?4 AND region = ?6 AND state = 'failed'";
/// `?4`: the region whose deliveries are re-opened, `NULL` for every region's.
const SQL_REOPEN: &str =
    "UPDATE deliveries SET state = 'failed', next_attempt_at = NULL, retry_until = NULL, updated_at = ?3
     WHERE job = ?1 AND period = ?2 AND state IN ('gave_up', 'failed') AND (?4 IS NULL OR region = ?4)";
const SQL_LATEST_PERIOD: &str = "SELECT r.period FROM runs r WHERE r.job = ?1
       AND EXISTS (SELECT 1 FROM deliveries d WHERE d.job = r.job AND d.period = r.period)
     ORDER BY COALESCE(r.started_at, '') DESC LIMIT 1";
const SQL_UNSENT: &str =
    "SELECT COUNT(*) FROM deliveries WHERE job = ?1 AND period = ?2 AND state <> 'sent'";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    Pending,
    /// Claimed by one process for its SMTP attempt ([`Ledger::claim_delivery`]),
    /// written before the conversation starts, so a row still `sending` after its
    /// process died (its delivery lock free) may or may not have been accepted.
    Sending,
    Sent,
    /// Failed for a transient reason; tried again until its retry time runs out.
    Failed,
    /// Permanent failure, or out of retry time (`cxreport retry` re-opens it).
    GaveUp,
}

impl DeliveryState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Sending => "sending",
            Self::Sent => "sent",
            Self::Failed => "failed",
            Self::GaveUp => "gave_up",
        }
    }

    /// The state as the ledger writes it; `None` for a value this version does not
    /// write (the caller says where it was found).
    pub fn parse(s: &str) -> Option<Self> {
        [
            Self::Pending,
            Self::Sending,
            Self::Sent,
            Self::Failed,
            Self::GaveUp,
        ]
        .into_iter()
        .find(|v| v.as_str() == s)
    }

    /// Sent or given up: nothing more to do for it (unless `retry` re-opens it).
    pub fn settled(self) -> bool {
        matches!(self, Self::Sent | Self::GaveUp)
    }
}

/// As the ledger and `history` write it (`gave_up`).
impl std::fmt::Display for DeliveryState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // `pad`: `history` lines its columns up with `{:<9}`.
        f.pad(self.as_str())
    }
}

/// Compared with the ledger's word for it (`state == "sent"`).
impl PartialEq<&str> for DeliveryState {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// The key of one delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryKey<'a> {
    pub job: &'a str,
    pub period: &'a str,
    /// The region edition of a bursted job (its folder, `cn`); `''` otherwise.
    pub region: &'a str,
    pub lang: &'a str,
    pub recipient: &'a str,
}

impl DeliveryKey<'_> {
    /// Deterministic Message-ID: the same delivery always has the same id, so a
    /// duplicate is recognizable at the receiving end too. A region edition's names
    /// its region after the job (`<….monthly.cn@example.com>`).
    pub fn message_id(&self, domain: &str) -> String {
        if self.region.is_empty() {
            format!("<{}.{}@{domain}>", self.digest(), self.job)
        } else {
            format!("<{}.{}.{}@{domain}>", self.digest(), self.job, self.region)
        }
    }

    /// 32 hex digits that name this delivery (its Message-ID, its lock file). The
    /// region enters only when there is one, so a delivery of a job that is not
    /// bursted keeps the digest every earlier version gave it.
    fn digest(&self) -> String {
        let mut h = Sha256::new();
        for part in [self.job, self.period, self.lang, self.recipient] {
            h.update(part.as_bytes());
            h.update([0]);
        }
        if !self.region.is_empty() {
            h.update(b"region\0");
            h.update(self.region.as_bytes());
            h.update([0]);
        }
        h.finalize()
            .iter()
            .take(16)
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeliveryStatus {
    pub state: DeliveryState,
    pub attempts: i64,
    pub possible_duplicate: bool,
}

/// What a change of a delivery's state records.
pub struct DeliveryUpdate<'a> {
    pub state: DeliveryState,
    pub attempts_added: i64,
    pub error: Option<&'a str>,
    /// For a retryable failure: not before this.
    pub next_attempt: Option<DateTime<Utc>>,
    /// For a retryable failure: the end of its retry time (kept from the first failure).
    pub retry_until: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DeliveryRecord {
    /// The region edition (`''` unless the job is bursted).
    pub region: String,
    pub lang: String,
    pub recipient: String,
    pub state: DeliveryState,
    pub attempts: i64,
    pub last_error: Option<String>,
    pub message_id: String,
    /// Left `sending` by a process that died: sent again with the same Message-ID, so
    /// the recipient may hold two copies (receivers that deduplicate on it show one).
    pub possible_duplicate: bool,
    pub next_attempt_at: Option<String>,
    pub retry_until: Option<String>,
}

/// A delivery whose retry time ran out.
#[derive(Debug, Clone)]
pub struct Expired {
    pub job: String,
    pub period: String,
    pub region: String,
    pub lang: String,
    pub recipient: String,
    pub last_error: String,
}

/// How claiming a delivery ended ([`Ledger::claim_delivery`]).
#[derive(Debug)]
pub enum Claim {
    /// This process sends it, holding the lock until the lock is dropped or
    /// [`DeliveryLock::release`]d. `again`: the row was left `sending` by a process
    /// that is gone, so the server may already hold a copy.
    Won {
        again: bool,
        attempts: i64,
        lock: DeliveryLock,
    },
    /// Another process is sending it right now.
    Taken,
    /// Nothing to send: sent, or given up.
    Settled(DeliveryState),
}

/// The lock of one delivery while it is being sent; released when dropped, or by the
/// kernel when the process dies.
#[derive(Debug)]
pub struct DeliveryLock {
    file: File,
    path: PathBuf,
}

impl DeliveryLock {
    /// Releases the lock; once the delivery is `sent` for good its lock file is
    /// removed (whoever opened it before finds the row sent and does nothing).
    pub fn release(self, sent: bool) {
        if sent {
            // A file left behind costs nothing but a directory entry.
            let _ = std::fs::remove_file(&self.path);
        }
        drop(self.file);
    }
}

/// The delivery's row, created `pending` with its Message-ID if new (a transaction
/// derefs to its connection).
fn ensure_delivery(
    conn: &Connection,
    key: &DeliveryKey<'_>,
    message_id: &str,
    now: &str,
) -> rusqlite::Result<usize> {
    conn.execute(
        SQL_DELIVERY_ENSURE,
        params![
            key.job,
            key.period,
            key.lang,
            key.recipient,
            message_id,
            now,
            key.region
        ],
    )
}

impl Ledger {
    fn delivery_state(
        &self,
        job: &str,
        period: &str,
        lang: &str,
        recipient: &str,
        value: String,
    ) -> Result<DeliveryState, LedgerError> {
        DeliveryState::parse(&value).ok_or_else(|| {
            self.unknown_state(
                "deliveries",
                format!("job `{job}`, period `{period}`, {lang} to {recipient}"),
                value,
            )
        })
    }

    /// The delivery's state, creating it as pending with its Message-ID if new.
    pub fn delivery(
        &self,
        key: &DeliveryKey<'_>,
        message_id: &str,
    ) -> Result<DeliveryStatus, LedgerError> {
        ensure_delivery(&self.conn, key, message_id, &self.now_text()).map_err(|e| self.err(e))?;
        let (state, attempts, possible_duplicate): (String, i64, i64) = self
            .conn
            .query_row(
                SQL_DELIVERY_GET,
                params![key.job, key.period, key.lang, key.recipient, key.region],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .map_err(|e| self.err(e))?;
        Ok(DeliveryStatus {
            state: self.delivery_state(key.job, key.period, key.lang, key.recipient, state)?,
            attempts,
            possible_duplicate: possible_duplicate != 0,
        })
    }

    /// Claims one delivery for this process before its SMTP attempt: of the
    /// processes that get here at the same time (overlapping runs of one job and
    /// period), one sends it and the others are told it is `Taken`. The delivery's
    /// OS lock says who is sending it now, so a row `sending` whose lock is free was
    /// left by a process that is gone; the row then changes only from the state
    /// read, inside one write transaction.
    pub fn claim_delivery(
        &self,
        key: &DeliveryKey<'_>,
        message_id: &str,
    ) -> Result<Claim, LedgerError> {
        let path = self
            .lock_dir()
            .join(format!("{}.deliveries", safe_name(key.job)))
            .join(format!("{}.lock", key.digest()));
        let Some(file) = try_lock(&path, true)? else {
            return Ok(Claim::Taken);
        };
        let lock = DeliveryLock { file, path };
        // Immediate: taken as a writer at once, so the read below and the claim are
        // one step for every process sharing the ledger.
        let tx = Transaction::new_unchecked(&self.conn, TransactionBehavior::Immediate)
            .map_err(|e| self.err(e))?;
        ensure_delivery(&tx, key, message_id, &self.now_text()).map_err(|e| self.err(e))?;
        let (state, attempts): (String, i64) = tx
            .query_row(
                SQL_DELIVERY_GET,
                params![key.job, key.period, key.lang, key.recipient, key.region],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .map_err(|e| self.err(e))?;
        let state = self.delivery_state(key.job, key.period, key.lang, key.recipient, state)?;
        let again = match state {
            s @ (DeliveryState::Sent | DeliveryState::GaveUp) => {
                return Ok(Claim::Settled(s));
            }
            DeliveryState::Sending => true,
            DeliveryState::Pending | DeliveryState::Failed => false,
        };
        let changed = tx
            .execute(
                SQL_DELIVERY_CLAIM,
                params![
                    key.job,
                    key.period,
                    key.lang,
                    key.recipient,
                    i64::from(again),
                    self.now_text(),
                    state.as_str(),
                    key.region
                ],
            )
            .map_err(|e| self.err(e))?;
        tx.commit().map_err(|e| self.err(e))?;
        Ok(if changed == 1 {
            Claim::Won {
                again,
                attempts,
                lock,
            }
        } else {
            Claim::Taken
        })
    }

    pub fn update_delivery(
        &self,
        key: &DeliveryKey<'_>,
        u: &DeliveryUpdate<'_>,
    ) -> Result<(), LedgerError> {
        self.conn
            .execute(
                SQL_DELIVERY_UPDATE,
                params![
                    key.job,
                    key.period,
                    key.lang,
                    key.recipient,
                    u.state.as_str(),
                    u.attempts_added,
                    u.error.map(|e| clip(e, MAX_ERROR_BYTES)),
                    self.now_text(),
                    u.next_attempt.map(format_time),
                    u.retry_until.map(format_time),
                    key.region
                ],
            )
            .map(|_| ())
            .map_err(|e| self.err(e))
    }

    /// Every delivery of one run.
    pub fn deliveries(&self, job: &str, period: &str) -> Result<Vec<DeliveryRecord>, LedgerError> {
        let mut d = self
            .conn
            .prepare_cached(if self.version < RETRIES {
                SQL_DELIVERIES_OF_V1
            } else if self.version < REGIONS {
                SQL_DELIVERIES_OF_BEFORE_REGIONS
            } else {
                SQL_DELIVERIES_OF
            })
            .map_err(|e| self.err(e))?;
        let rows: Vec<(DeliveryRecord, String)> = d
            .query_map(params![job, period], |r| {
                Ok((
                    DeliveryRecord {
                        region: r.get(9)?,
                        lang: r.get(0)?,
                        recipient: r.get(1)?,
                        // Read below, where a value this version does not know is an
                        // error that names the row.
                        state: DeliveryState::Pending,
                        attempts: r.get(3)?,
                        last_error: r.get(4)?,
                        message_id: r.get(5)?,
                        possible_duplicate: r.get::<_, i64>(6)? != 0,
                        next_attempt_at: r.get(7)?,
                        retry_until: r.get(8)?,
                    },
                    r.get(2)?,
                ))
            })
            .map_err(|e| self.err(e))?
            .collect::<Result<_, _>>()
            .map_err(|e| self.err(e))?;
        rows.into_iter()
            .map(|(mut d, state)| {
                d.state = self.delivery_state(job, period, &d.lang, &d.recipient, state)?;
                Ok(d)
            })
            .collect()
    }

    /// Runs with a retryable delivery whose next attempt is due.
    pub fn retries_due(&self, now: DateTime<Utc>) -> Result<Vec<(String, String)>, LedgerError> {
        let mut stmt = self.conn.prepare(SQL_RETRY_DUE).map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([format_time(now)], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(|e| self.err(e))?
            .collect::<Result<_, _>>()
            .map_err(|e| self.err(e));
        rows
    }

    /// Gives up the retryable deliveries whose retry time has run out; returns them.
    pub fn expire_retries(&self, now: DateTime<Utc>) -> Result<Vec<Expired>, LedgerError> {
        let mut stmt = self
            .conn
            .prepare(SQL_RETRY_EXPIRED)
            .map_err(|e| self.err(e))?;
        let rows: Vec<Expired> = stmt
            .query_map([format_time(now)], |r| {
                Ok(Expired {
                    job: r.get(0)?,
                    period: r.get(1)?,
                    lang: r.get(2)?,
                    recipient: r.get(3)?,
                    last_error: r.get(4)?,
                    region: r.get(5)?,
                })
            })
            .map_err(|e| self.err(e))?
            .collect::<Result<_, _>>()
            .map_err(|e| self.err(e))?;
        for e in &rows {
            self.conn
                .execute(
                    SQL_GIVE_UP,
                    params![
                        e.job,
                        e.period,
                        e.lang,
                        e.recipient,
                        self.now_text(),
                        e.region
                    ],
                )
                .map_err(|e| self.err(e))?;
        }
        Ok(rows)
    }

    /// `cxreport retry`: the run's given-up and failed deliveries become retryable
    /// now, with a fresh retry time (only `region`'s when given: `retry --region`).
    /// Returns how many.
    pub fn reopen(
        &self,
        job: &str,
        period: &str,
        region: Option<&str>,
    ) -> Result<usize, LedgerError> {
        self.conn
            .execute(SQL_REOPEN, params![job, period, self.now_text(), region])
            .map_err(|e| self.err(e))
    }

    /// The job's most recent run that mailed anything.
    pub fn latest_delivered_period(&self, job: &str) -> Result<Option<String>, LedgerError> {
        self.conn
            .query_row(SQL_LATEST_PERIOD, [job], |r| r.get(0))
            .optional()
            .map_err(|e| self.err(e))
    }

    /// Whether every delivery of the run is sent.
    pub fn all_sent(&self, job: &str, period: &str) -> Result<bool, LedgerError> {
        let unsent: i64 = self
            .conn
            .query_row(SQL_UNSENT, params![job, period], |r| r.get(0))
            .map_err(|e| self.err(e))?;
        Ok(unsent == 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobs::ledger::testing::*;

    #[test]
    fn transient_failures_wait_expire_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let l = Ledger::open(&dir.path().join("state.sqlite")).unwrap();
        let k = key("en");
        l.begin_run(k.job, k.period, None, None).unwrap();
        l.delivery(&k, &k.message_id("example.com")).unwrap();
        l.update_delivery(
            &k,
            &DeliveryUpdate {
                state: DeliveryState::Failed,
                attempts_added: 3,
                error: Some("connection refused"),
                next_attempt: Some(at("2024-07-01 09:00:00")),
                retry_until: Some(at("2024-07-02 08:00:00")),
            },
        )
        .unwrap();
        assert!(l.retries_due(at("2024-07-01 08:30:00")).unwrap().is_empty());
        assert_eq!(
            l.retries_due(at("2024-07-01 09:00:00")).unwrap(),
            [(k.job.to_owned(), k.period.to_owned())]
        );
        assert!(l
            .expire_retries(at("2024-07-01 12:00:00"))
            .unwrap()
            .is_empty());
        let gone = l.expire_retries(at("2024-07-02 08:00:00")).unwrap();
        assert_eq!(gone.len(), 1);
        assert_eq!(gone[0].last_error, "connection refused");
        let d = &l.deliveries(k.job, k.period).unwrap()[0];
        assert_eq!(d.state, "gave_up");
        assert!(l.retries_due(at("2024-07-03 00:00:00")).unwrap().is_empty());
        assert_eq!(l.reopen(k.job, k.period, None).unwrap(), 1);
        assert_eq!(
            l.retries_due(at("2024-07-03 00:00:00")).unwrap().len(),
            1,
            "re-opened deliveries are due at once"
        );
        assert_eq!(
            l.latest_delivered_period(k.job).unwrap().as_deref(),
            Some(k.period)
        );
    }

    /// A region's delivery is one of its own: its Message-ID names the region and
    /// differs from the same recipient's in another region; without a region the
    /// Message-ID is the one earlier versions gave, and `reopen` of one region
    /// leaves the others alone.
    #[test]
    fn each_region_has_its_own_deliveries_and_message_ids() {
        let plain = key("zh");
        // Fixed: the digest earlier versions sent this delivery with.
        assert_eq!(
            plain.message_id("example.com"),
            "<cb1b92c4c1f65e9711c97dc40997d8b3.j@example.com>"
        );
        let cn = DeliveryKey {
            region: "cn",
            ..plain.clone()
        };
        let emea = DeliveryKey {
            region: "emea",
            ..plain.clone()
        };
        let id = cn.message_id("example.com");
        assert!(id.ends_with(".j.cn@example.com>"), "{id}");
        assert_ne!(id, emea.message_id("example.com"));
        let dir = tempfile::tempdir().unwrap();
        let l = Ledger::open(&dir.path().join("state.sqlite")).unwrap();
        for k in [&cn, &emea] {
            l.delivery(k, &k.message_id("example.com")).unwrap();
            l.update_delivery(k, &update(DeliveryState::GaveUp, Some("550")))
                .unwrap();
        }
        let regions: Vec<String> = l
            .deliveries(plain.job, plain.period)
            .unwrap()
            .into_iter()
            .map(|d| d.region)
            .collect();
        assert_eq!(regions, ["cn", "emea"]);
        assert_eq!(l.reopen(plain.job, plain.period, Some("cn")).unwrap(), 1);
        let d = l.deliveries(plain.job, plain.period).unwrap();
        assert_eq!(
            (d[0].state, d[1].state),
            (DeliveryState::Failed, DeliveryState::GaveUp)
        );
    }

    #[test]
    fn a_delivery_left_sending_is_flagged_when_sent_again() {
        let dir = tempfile::tempdir().unwrap();
        let l = Ledger::open(&dir.path().join("state.sqlite")).unwrap();
        let k = key("zh");
        let id = k.message_id("example.com");
        l.delivery(&k, &id).unwrap();
        // Claimed, then the process dies (its lock released with it).
        drop(l.claim_delivery(&k, &id).unwrap());
        let s = l.delivery(&k, &id).unwrap();
        assert_eq!(
            (s.state, s.possible_duplicate),
            (DeliveryState::Sending, false)
        );
        let Claim::Won { again: true, .. } = l.claim_delivery(&k, &id).unwrap() else {
            panic!("claimed again, flagged");
        };
        l.update_delivery(&k, &update(DeliveryState::Sent, None))
            .unwrap();
        let d = &l.deliveries(k.job, k.period).unwrap()[0];
        assert!(d.possible_duplicate && d.state == "sent" && d.message_id == id);
    }

    #[test]
    fn one_of_two_processes_claims_a_delivery() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.sqlite");
        let (a, b) = (Ledger::open(&path).unwrap(), Ledger::open(&path).unwrap());
        let k = key("en");
        let Claim::Won { again, lock, .. } = a.claim_delivery(&k, "<id@x>").unwrap() else {
            panic!("the first claim wins");
        };
        assert!(!again);
        assert!(matches!(
            b.claim_delivery(&k, "<id@x>").unwrap(),
            Claim::Taken
        ));
        assert_eq!(b.deliveries(k.job, k.period).unwrap()[0].state, "sending");
        // The holder dies while sending (its lock released, the row still `sending`).
        drop(lock);
        let Claim::Won { again, lock, .. } = b.claim_delivery(&k, "<id@x>").unwrap() else {
            panic!("a claim of a process that is gone is taken over");
        };
        assert!(again, "flagged: the server may hold a copy");
        b.update_delivery(&k, &update(DeliveryState::Sent, None))
            .unwrap();
        lock.release(true);
        assert!(matches!(
            a.claim_delivery(&k, "<id@x>").unwrap(),
            Claim::Settled(DeliveryState::Sent)
        ));
        let d = &a.deliveries(k.job, k.period).unwrap()[0];
        assert!(d.possible_duplicate && d.state == "sent");
    }
}
