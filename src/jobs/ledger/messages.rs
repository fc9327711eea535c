//! The `messages` table: what each edition mailed (its text and files, serialized
//! by the caller), so that a later retry sends the same message. Its owners are
//! `delivery` (keeps it) and `resend` (reads it back).

use rusqlite::{params, OptionalExtension};
use serde::Serialize;

use super::{Ledger, LedgerError};

const SQL_MESSAGE_PUT: &str =
    "INSERT OR REPLACE INTO messages (job, period, lang, content, region) VALUES (?1, ?2, ?3, ?4, ?5)";
const SQL_MESSAGE_GET: &str =
    "SELECT content FROM messages WHERE job = ?1 AND period = ?2 AND lang = ?3 AND region = ?4";

impl Ledger {
    /// Keeps what an edition mails, so a later retry sends the same message.
    /// `region`: the region edition of a bursted job, `''` otherwise.
    pub fn save_message<T: Serialize>(
        &self,
        job: &str,
        period: &str,
        region: &str,
        lang: &str,
        content: &T,
    ) -> Result<(), LedgerError> {
        let text = serde_json::to_string(content).map_err(|e| LedgerError::Message {
            path: self.path.clone(),
            job: job.to_owned(),
            period: period.to_owned(),
            lang: lang.to_owned(),
            message: e.to_string(),
        })?;
        self.conn
            .execute(SQL_MESSAGE_PUT, params![job, period, lang, text, region])
            .map(|_| ())
            .map_err(|e| self.err(e))
    }

    pub fn message<T: serde::de::DeserializeOwned>(
        &self,
        job: &str,
        period: &str,
        region: &str,
        lang: &str,
    ) -> Result<Option<T>, LedgerError> {
        let text: Option<String> = self
            .conn
            .query_row(SQL_MESSAGE_GET, params![job, period, lang, region], |r| {
                r.get(0)
            })
            .optional()
            .map_err(|e| self.err(e))?;
        text.map(|t| {
            serde_json::from_str(&t).map_err(|e| LedgerError::Message {
                path: self.path.clone(),
                job: job.to_owned(),
                period: period.to_owned(),
                lang: lang.to_owned(),
                message: e.to_string(),
            })
        })
        .transpose()
    }
}
