//! The `alerts` table: owner alerts kept until sent, with the run they are about and
//! what they tell; each is claimed before it is sent, so that a "failed" never goes
//! out after its "resolved". Its owner is `jobs::alerts`; `history` shows those
//! waiting.

use chrono::{DateTime, Utc};
use rusqlite::params;
use serde::Serialize;

use super::migrate::RETRIES;
use super::{clip, format_time, Ledger, LedgerError, MAX_ALERT_BYTES, MAX_ERROR_BYTES};

/// An owner alert to keep, about the run of `period`.
#[derive(Debug, Clone, Copy)]
pub struct NewAlert<'a> {
    pub job: &'a str,
    pub period: &'a str,
    pub kind: AlertKind,
    pub recipient: &'a str,
    pub message_id: &'a str,
    pub subject: &'a str,
    pub body: &'a str,
}

const SQL_ALERT_PUT: &str =
    "INSERT INTO alerts (job, recipient, message_id, subject, body, state, attempts, created_at, next_attempt_at, period, kind)
     VALUES (?1, ?2, ?3, ?4, ?5, 'pending', 0, ?6, ?6, ?7, ?8)";
// An alert being sent is `sending` until `next_attempt_at` (its claim): it counts as
// sent, and is not dropped. A claim past its time is a process that died sending: the
// alert is due again, and a resolution drops it like any waiting one.
const SQL_ALERTS_SENT_OF: &str =
    "SELECT COUNT(*) FROM alerts WHERE job = ?1 AND period = ?2 AND kind = 'failed'
     AND (state = 'sent' OR (state = 'sending' AND next_attempt_at > ?3))";
const SQL_ALERTS_DROP_PENDING: &str =
    "DELETE FROM alerts WHERE job = ?1 AND period = ?2 AND kind = 'failed'
     AND (state = 'pending' OR (state = 'sending' AND next_attempt_at <= ?3))";
const SQL_ALERTS_DUE: &str =
    "SELECT id, job, recipient, message_id, subject, body, attempts FROM alerts
     WHERE state IN ('pending', 'sending') AND next_attempt_at <= ?1 ORDER BY id";
const SQL_ALERT_CLAIM: &str = "UPDATE alerts SET state = 'sending', next_attempt_at = ?3
     WHERE id = ?1 AND state IN ('pending', 'sending') AND next_attempt_at <= ?2";
const SQL_ALERT_DONE: &str =
    "UPDATE alerts SET state = ?2, attempts = attempts + 1, last_error = ?3, next_attempt_at = ?4 WHERE id = ?1";
const SQL_ALERTS_PENDING: &str =
    "SELECT job, recipient, subject, attempts, COALESCE(last_error, '') FROM alerts
     WHERE state IN ('pending', 'sending') AND (?1 IS NULL OR job = ?1) ORDER BY id";

/// What an owner alert tells (`alerts.kind`); `owner_alert.tera` words each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlertKind {
    /// Something needs a person: a run failed, a fire could not start, deliveries
    /// were given up.
    Failed,
    /// A planned shutdown stopped the run's deliveries; they resume by themselves.
    Interrupted,
    /// A retry sent everything an earlier alert of the run was about.
    Resolved,
}

impl AlertKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Failed => "failed",
            Self::Interrupted => "interrupted",
            Self::Resolved => "resolved",
        }
    }
}

/// Where a kept owner alert stands (`alerts.state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlertState {
    /// Waiting for its next attempt.
    Pending,
    /// Claimed by one process for sending ([`Ledger::claim_alert`]).
    Sending,
    Sent,
}

impl AlertState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Sending => "sending",
            Self::Sent => "sent",
        }
    }
}

/// An owner alert waiting to be sent.
#[derive(Debug, Clone)]
pub struct QueuedAlert {
    pub id: i64,
    pub job: String,
    pub recipient: String,
    pub message_id: String,
    pub subject: String,
    pub body: String,
    pub attempts: i64,
}

/// An alert still waiting, as `history` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct PendingAlert {
    pub job: String,
    pub recipient: String,
    pub subject: String,
    pub attempts: i64,
    pub last_error: String,
}

impl Ledger {
    /// Keeps an owner alert until it is sent.
    pub fn queue_alert(&self, a: &NewAlert<'_>) -> Result<(), LedgerError> {
        self.conn
            .execute(
                SQL_ALERT_PUT,
                params![
                    a.job,
                    a.recipient,
                    a.message_id,
                    clip(a.subject, MAX_ERROR_BYTES),
                    clip(a.body, MAX_ALERT_BYTES),
                    self.now_text(),
                    a.period,
                    a.kind.as_str()
                ],
            )
            .map(|_| ())
            .map_err(|e| self.err(e))
    }

    /// Removes the failure alerts about one run that are not sent yet (what they warn
    /// about is resolved); returns how many, and how many about it were sent already
    /// (or are being sent).
    pub fn drop_pending_alerts(
        &self,
        job: &str,
        period: &str,
    ) -> Result<(usize, usize), LedgerError> {
        let now = self.now_text();
        let tx = self.conn.unchecked_transaction().map_err(|e| self.err(e))?;
        let sent: i64 = tx
            .query_row(SQL_ALERTS_SENT_OF, params![job, period, now], |r| r.get(0))
            .map_err(|e| self.err(e))?;
        let dropped = tx
            .execute(SQL_ALERTS_DROP_PENDING, params![job, period, now])
            .map_err(|e| self.err(e))?;
        tx.commit().map_err(|e| self.err(e))?;
        Ok((dropped, usize::try_from(sent).unwrap_or(0)))
    }

    /// Alerts waiting whose next attempt is due.
    pub fn alerts_due(&self, now: DateTime<Utc>) -> Result<Vec<QueuedAlert>, LedgerError> {
        let mut stmt = self.conn.prepare(SQL_ALERTS_DUE).map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([format_time(now)], |r| {
                Ok(QueuedAlert {
                    id: r.get(0)?,
                    job: r.get(1)?,
                    recipient: r.get(2)?,
                    message_id: r.get(3)?,
                    subject: r.get(4)?,
                    body: r.get(5)?,
                    attempts: r.get(6)?,
                })
            })
            .map_err(|e| self.err(e))?
            .collect::<Result<_, _>>()
            .map_err(|e| self.err(e));
        rows
    }

    /// Takes a due alert for sending until `until`: `false` when it is no longer due
    /// (a resolution dropped it, or another process is sending it). Sending only what
    /// was claimed is what keeps a "failed" from going out after its "resolved".
    pub fn claim_alert(
        &self,
        id: i64,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<bool, LedgerError> {
        self.conn
            .execute(
                SQL_ALERT_CLAIM,
                params![id, format_time(now), format_time(until)],
            )
            .map(|n| n == 1)
            .map_err(|e| self.err(e))
    }

    /// Records one attempt at an alert: sent, or tried again after `retry_at`.
    pub fn alert_attempted(
        &self,
        id: i64,
        error: Option<&str>,
        retry_at: DateTime<Utc>,
    ) -> Result<(), LedgerError> {
        let state = if error.is_some() {
            AlertState::Pending
        } else {
            AlertState::Sent
        };
        self.conn
            .execute(
                SQL_ALERT_DONE,
                params![
                    id,
                    state.as_str(),
                    error.map(|e| clip(e, MAX_ERROR_BYTES)),
                    format_time(retry_at)
                ],
            )
            .map(|_| ())
            .map_err(|e| self.err(e))
    }

    /// Alerts not sent yet, for `history`.
    pub fn pending_alerts(&self, job: Option<&str>) -> Result<Vec<PendingAlert>, LedgerError> {
        if self.version < RETRIES {
            return Ok(Vec::new());
        }
        let mut stmt = self
            .conn
            .prepare(SQL_ALERTS_PENDING)
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([job], |r| {
                Ok(PendingAlert {
                    job: r.get(0)?,
                    recipient: r.get(1)?,
                    subject: r.get(2)?,
                    attempts: r.get(3)?,
                    last_error: r.get(4)?,
                })
            })
            .map_err(|e| self.err(e))?
            .collect::<Result<_, _>>()
            .map_err(|e| self.err(e));
        rows
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::{Clock, SystemClock};

    #[test]
    fn a_resolution_drops_only_waiting_failures_and_counts_those_being_sent() {
        let dir = tempfile::tempdir().unwrap();
        let l = Ledger::open(&dir.path().join("state.sqlite")).unwrap();
        let alert = |kind, recipient| NewAlert {
            job: "j",
            period: "p",
            kind,
            recipient,
            message_id: "<a@x>",
            subject: "s",
            body: "b",
        };
        l.queue_alert(&alert(AlertKind::Failed, "a@x.com")).unwrap();
        l.queue_alert(&alert(AlertKind::Failed, "b@x.com")).unwrap();
        l.queue_alert(&alert(AlertKind::Failed, "c@x.com")).unwrap();
        l.queue_alert(&alert(AlertKind::Interrupted, "a@x.com"))
            .unwrap();
        let now = SystemClock.now();
        let minutes = chrono::Duration::minutes;
        let due = l.alerts_due(now).unwrap();
        assert_eq!(due.len(), 4);
        // One failure is being sent (claimed): it counts as told, and stays.
        assert!(l.claim_alert(due[0].id, now, now + minutes(15)).unwrap());
        assert!(
            !l.claim_alert(due[0].id, now, now + minutes(15)).unwrap(),
            "claimed once"
        );
        // One was claimed by a sender that died: its claim has run out.
        assert!(l.claim_alert(due[2].id, now, now - minutes(1)).unwrap());
        assert_eq!(
            l.alerts_due(now).unwrap().len(),
            3,
            "the live claim is not due"
        );
        assert_eq!(l.drop_pending_alerts("j", "p").unwrap(), (2, 1));
        let left = l.alerts_due(now).unwrap();
        assert_eq!(left.len(), 1, "the interrupted alert stays: {left:?}");
        assert_eq!(left[0].id, due[3].id);
        // A dropped alert cannot be claimed any more.
        assert!(!l.claim_alert(due[1].id, now, now + minutes(15)).unwrap());
        assert_eq!(
            l.pending_alerts(None).unwrap().len(),
            2,
            "being sent, and waiting"
        );
    }

    #[test]
    fn alerts_and_messages_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let l = Ledger::open(&dir.path().join("state.sqlite")).unwrap();
        let alert = NewAlert {
            job: "j",
            period: "p",
            kind: AlertKind::Failed,
            recipient: "owner@example.com",
            message_id: "<a@x>",
            subject: "job j failed",
            body: "body",
        };
        l.queue_alert(&alert).unwrap();
        let due = l.alerts_due(SystemClock.now()).unwrap();
        assert_eq!(due.len(), 1);
        l.alert_attempted(
            due[0].id,
            Some("refused"),
            SystemClock.now() + chrono::Duration::hours(1),
        )
        .unwrap();
        assert!(l.alerts_due(SystemClock.now()).unwrap().is_empty());
        assert_eq!(l.pending_alerts(None).unwrap()[0].last_error, "refused");
        l.alert_attempted(due[0].id, None, SystemClock.now())
            .unwrap();
        assert!(l.pending_alerts(None).unwrap().is_empty());
        l.save_message("j", "p", "", "en", &vec!["subject".to_owned()])
            .unwrap();
        let m: Option<Vec<String>> = l.message("j", "p", "", "en").unwrap();
        assert_eq!(m.unwrap(), ["subject"]);
    }
}
