//! Email delivery with lettre: SMTP with STARTTLS (required, certificate checked: no
//! silent downgrade), implicit TLS, or plain SMTP to loopback hosts only; the
//! certificate is checked against the public roots plus the job's `ca_file` (a
//! company's private CA); a timeout on every network step and a limit on a whole
//! attempt (a server that answers one byte at a time passes every step's timeout;
//! the attempt runs in a thread that is given up past its limit, or soon after
//! shutdown is asked for); retries with backoff on
//! transient failures (4xx, timeouts, connection errors) and none on permanent ones
//! (5xx, authentication, TLS: a certificate that is not trusted, a server without
//! STARTTLS). Or an outbox directory of `.eml` files. The password is read from the
//! environment when sending and never appears in logs or errors.
//!
//! Its parts: one attempt bounded as a whole (`attempt`) and the outbox (`outbox`).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use lettre::message::header::ContentType;
use lettre::message::{
    Attachment as MimeAttachment, Mailbox, MessageBuilder, MultiPart, SinglePart,
};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::transport::smtp::SmtpTransport;
use lettre::Message;

use crate::jobs::config::{Smtp, TlsMode, Transport};

mod attempt;
mod outbox;

use outbox::write_eml;

/// An attempt may last this many step timeouts (connect, greeting, EHLO, STARTTLS,
/// AUTH, MAIL, RCPT, DATA, the end of the data) ...
pub const ATTEMPT_STEPS: u32 = 4;
/// ... plus one second per this many bytes of message (a large attachment on a slow
/// link).
const BYTES_PER_SECOND: u64 = 64 * 1024;
/// After shutdown is asked for, an attempt in flight gets this long to finish before
/// it is given up (a transient failure, tried again by the next process).
pub const STOP_GRACE: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum MailError {
    #[error("SMTP password: environment variable {0} is not set")]
    MissingPassword(String),
    #[error("SMTP setup for {host}: {message}")]
    Setup { host: String, message: String },
    #[error("SMTP ca_file {path}: {message}")]
    CaFile { path: PathBuf, message: String },
    #[error("building the message to {to}: {message}")]
    Build { to: String, message: String },
}

/// Why one attempt failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// Worth retrying: 4xx, timeout, connection trouble.
    Transient(String),
    /// Not worth retrying: 5xx and the like.
    Permanent(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Transient(m) => write!(f, "transient: {m}"),
            Self::Permanent(m) => write!(f, "permanent: {m}"),
        }
    }
}

pub struct Attachment {
    pub filename: String,
    pub content_type: &'static str,
    pub bytes: Vec<u8>,
}

/// One message to one recipient.
pub struct Outgoing {
    pub message_id: String,
    pub to: Mailbox,
    pub subject: String,
    pub text: String,
    pub html: Option<String>,
    pub attachments: Vec<Attachment>,
    /// File name in an outbox.
    pub outbox_name: String,
}

enum Sender {
    Smtp(Box<SmtpTransport>),
    Outbox(PathBuf),
}

/// Sends messages through the configured transport.
pub struct Mailer {
    sender: Sender,
    from: Mailbox,
    max_attempts: u32,
    backoff: Duration,
    timeout: Duration,
    /// Host or outbox, for messages.
    pub target: String,
    /// As configured, for what `check --smtp` says passed.
    tls: TlsMode,
    username: Option<String>,
}

impl Mailer {
    pub fn new(cfg: &Smtp) -> Result<Self, MailError> {
        Self::with_transport(cfg, &cfg.transport)
    }

    /// Writes `.eml` files into `dir` instead of what the configuration says.
    pub fn outbox(cfg: &Smtp, dir: &Path) -> Result<Self, MailError> {
        Self::with_transport(cfg, &Transport::Outbox(dir.to_owned()))
    }

    fn with_transport(cfg: &Smtp, transport: &Transport) -> Result<Self, MailError> {
        let (sender, target) = match transport {
            Transport::Outbox(dir) => (
                Sender::Outbox(dir.clone()),
                format!("outbox {}", dir.display()),
            ),
            Transport::Smtp {
                host,
                port,
                tls,
                username,
                password_env,
                ca_file,
            } => {
                let setup = |e: lettre::transport::smtp::Error| MailError::Setup {
                    host: host.clone(),
                    message: e.to_string(),
                };
                let parameters = || -> Result<TlsParameters, MailError> {
                    let mut b = TlsParameters::builder(host.clone());
                    if let Some(path) = ca_file {
                        let ca = |message: String| MailError::CaFile {
                            path: path.clone(),
                            message,
                        };
                        let pem = std::fs::read(path).map_err(|e| ca(e.to_string()))?;
                        let cert = Certificate::from_pem(&pem)
                            .map_err(|e| ca(format!("not a PEM certificate ({e})")))?;
                        b = b.add_root_certificate(cert);
                    }
                    b.build().map_err(setup)
                };
                let builder = SmtpTransport::builder_dangerous(host);
                let builder = match tls {
                    TlsMode::StartTls => builder.tls(Tls::Required(parameters()?)),
                    TlsMode::Tls => builder.tls(Tls::Wrapper(parameters()?)),
                    TlsMode::None => builder,
                };
                let mut builder = builder.port(*port).timeout(Some(cfg.timeout));
                if let Some(user) = username {
                    let password = match password_env {
                        Some(var) => std::env::var(var)
                            .map_err(|_| MailError::MissingPassword(var.clone()))?,
                        None => String::new(),
                    };
                    builder = builder.credentials(Credentials::new(user.clone(), password));
                }
                (
                    Sender::Smtp(Box::new(builder.build())),
                    format!("{host}:{port}"),
                )
            }
        };
        let (tls, username) = match transport {
            Transport::Smtp { tls, username, .. } => (*tls, username.clone()),
            Transport::Outbox(_) => (TlsMode::None, None),
        };
        Ok(Self {
            sender,
            from: cfg.from.clone(),
            max_attempts: cfg.max_attempts,
            backoff: cfg.backoff,
            timeout: cfg.timeout,
            target,
            tls,
            username,
        })
    }

    pub fn from_domain(&self) -> String {
        self.from.email.domain().to_owned()
    }

    fn build(&self, m: &Outgoing) -> Result<Message, MailError> {
        let err = |e: &dyn std::fmt::Display| MailError::Build {
            to: m.to.to_string(),
            message: e.to_string(),
        };
        let body = match &m.html {
            Some(html) => MultiPart::alternative_plain_html(m.text.clone(), html.clone()),
            None => MultiPart::mixed().singlepart(SinglePart::plain(m.text.clone())),
        };
        let mut mixed = MultiPart::mixed().multipart(body);
        for a in &m.attachments {
            let ct = ContentType::parse(a.content_type).map_err(|e| err(&e))?;
            mixed =
                mixed.singlepart(MimeAttachment::new(a.filename.clone()).body(a.bytes.clone(), ct));
        }
        let builder: MessageBuilder = Message::builder()
            .from(self.from.clone())
            .to(m.to.clone())
            .subject(m.subject.clone())
            .message_id(Some(m.message_id.clone()));
        builder.multipart(mixed).map_err(|e| err(&e))
    }

    /// The limit of one SMTP attempt of a message of `bytes`.
    pub fn attempt_limit(&self, bytes: u64) -> Duration {
        self.timeout * ATTEMPT_STEPS + Duration::from_secs(bytes / BYTES_PER_SECOND)
    }

    /// One attempt; `stop` ends the wait for it [`STOP_GRACE`] after it is set.
    pub fn send_once(&self, m: &Outgoing, stop: &AtomicBool) -> Result<(), Failure> {
        let message = self
            .build(m)
            .map_err(|e| Failure::Permanent(e.to_string()))?;
        match &self.sender {
            Sender::Smtp(t) => {
                let bytes = m.attachments.iter().map(|a| a.bytes.len()).sum::<usize>()
                    + m.text.len()
                    + m.html.as_ref().map_or(0, String::len);
                // Base64 makes attachments a third larger.
                let limit = self.attempt_limit(bytes as u64 * 4 / 3);
                self.bounded(t, message, limit, stop)
            }
            Sender::Outbox(dir) => {
                write_eml(dir, &m.outbox_name, &message.formatted()).map_err(|e| {
                    Failure::Transient(format!("writing to the outbox {}: {e}", dir.display()))
                })
            }
        }
    }

    /// Up to the configured attempts, sleeping `backoff × 2^n` between transient
    /// failures; stops early when `stop` is set (shutdown). Returns the attempts used,
    /// with the last failure when it did not get through.
    pub fn send(
        &self,
        m: &Outgoing,
        stop: &AtomicBool,
        mut on_failure: impl FnMut(u32, &Failure),
    ) -> (u32, Option<Failure>) {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.send_once(m, stop) {
                Ok(()) => return (attempt, None),
                Err(f) => {
                    on_failure(attempt, &f);
                    if matches!(f, Failure::Permanent(_)) || attempt >= self.max_attempts {
                        return (attempt, Some(f));
                    }
                    let until =
                        std::time::Instant::now() + self.backoff * 2u32.saturating_pow(attempt - 1);
                    while std::time::Instant::now() < until {
                        if stop.load(Ordering::SeqCst) {
                            return (attempt, Some(f));
                        }
                        std::thread::sleep(
                            Duration::from_millis(100)
                                .min(until.saturating_duration_since(std::time::Instant::now())),
                        );
                    }
                }
            }
        }
    }

    /// The pause before the next try of a delivery that failed `attempts` times in
    /// all, across runs: the configured backoff doubling per attempt, at most an hour.
    pub fn retry_delay(&self, attempts: i64) -> Duration {
        let factor = 2u32.saturating_pow(u32::try_from(attempts.clamp(0, 20)).unwrap_or(20));
        (self.backoff.max(Duration::from_secs(1)) * factor).min(Duration::from_secs(3600))
    }
}

impl Mailer {
    /// `check --smtp`: connects, negotiates TLS and logs in as configured, then says
    /// NOOP and QUIT: nothing is sent. Bounded like one attempt of an empty message.
    /// `Ok(None)`: an outbox, nothing to connect to; `Ok(Some(what))`: what passed;
    /// `Err`: why a delivery would fail, and what to look at.
    pub fn test_connection(&self) -> Result<Option<String>, String> {
        let Sender::Smtp(transport) = &self.sender else {
            return Ok(None);
        };
        let (tx, rx) = mpsc::channel();
        let transport = transport.clone();
        std::thread::Builder::new()
            .name("smtp-check".into())
            .spawn(move || {
                // Nobody listens once the check was given up.
                let _ = tx.send(transport.test_connection());
            })
            .map_err(|e| format!("starting the SMTP check: {e}"))?;
        let limit = self.attempt_limit(0);
        match rx.recv_timeout(limit) {
            Ok(Ok(true)) => Ok(Some(format!(
                "connected{}, nothing sent",
                match (&self.tls, &self.username) {
                    (TlsMode::None, None) => String::new(),
                    (TlsMode::None, Some(u)) => format!(", logged in as `{u}`"),
                    (tls, None) => format!(", {} negotiated", tls_name(*tls)),
                    (tls, Some(u)) => {
                        format!(", {} negotiated, logged in as `{u}`", tls_name(*tls))
                    }
                }
            ))),
            Ok(Ok(false)) => {
                Err("connected, but the server did not answer NOOP: is it an SMTP server?".into())
            }
            Ok(Err(e)) => Err(self.explain(&e)),
            Err(_) => Err(format!(
                "no answer within {} s — is the host right, or a firewall in the way? \
                 (smtp.timeout_secs is {} s a step)",
                limit.as_secs(),
                self.timeout.as_secs()
            )),
        }
    }

    /// An SMTP error as `check` says it: what failed and what to look at.
    fn explain(&self, e: &lettre::transport::smtp::Error) -> String {
        let msg = e.to_string();
        let kind = io_kind(e)
            .filter(|_| !e.is_timeout())
            .or(e.is_timeout().then_some(std::io::ErrorKind::TimedOut));
        match kind {
            Some(std::io::ErrorKind::ConnectionRefused) => {
                return "connection refused — is the server running, and is the port right?".into()
            }
            Some(std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock) => {
                return format!(
                    "no answer within {} s — is the host right, or a firewall in the way? ({msg})",
                    self.timeout.as_secs()
                )
            }
            _ => {}
        }
        if e.status().is_some_and(|c| c.to_string() == "535") || msg.contains("authentication") {
            return format!(
                "the server refused the login{} ({msg}) — check smtp.username and the password \
                 in smtp.password_env",
                self.username
                    .as_deref()
                    .map_or_else(String::new, |u| format!(" of `{u}`"))
            );
        }
        if e.is_tls() || io_kind(e) == Some(std::io::ErrorKind::InvalidData) {
            return format!(
                "TLS failed ({msg}) — is smtp.tls right for this port (`starttls` on 587, \
                 `tls` on 465), and is the server's certificate trusted (smtp.ca_file for a \
                 private CA)?"
            );
        }
        msg
    }
}

fn tls_name(tls: TlsMode) -> &'static str {
    match tls {
        TlsMode::StartTls => "STARTTLS",
        TlsMode::Tls => "TLS",
        TlsMode::None => "no TLS",
    }
}

fn classify(e: &lettre::transport::smtp::Error, timeout: Duration) -> Failure {
    let msg = e.to_string();
    if e.is_timeout()
        || io_kind(e).is_some_and(|k| {
            matches!(
                k,
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            )
        })
    {
        Failure::Transient(format!(
            "timed out after {}s waiting for the server ({msg})",
            timeout.as_secs()
        ))
    } else if e.is_permanent() {
        Failure::Permanent(msg)
    } else if e.is_tls() || e.is_client() || io_kind(e) == Some(std::io::ErrorKind::InvalidData) {
        // An untrusted certificate (rustls reports it as invalid data on the first
        // read), a server without the STARTTLS the configuration requires, no common
        // authentication mechanism: trying again changes nothing.
        Failure::Permanent(msg)
    } else {
        // 4xx, timeouts, refused or dropped connections: the next attempt may work.
        Failure::Transient(msg)
    }
}

/// The kind of the I/O error behind an SMTP error, if any.
fn io_kind(e: &(dyn std::error::Error + 'static)) -> Option<std::io::ErrorKind> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            return Some(io.kind());
        }
        cur = err.source();
    }
    None
}

/// What the parts' tests share.
#[cfg(test)]
mod testing {
    use std::path::Path;
    use std::time::Duration;

    use super::{Outgoing, Smtp, Transport};

    pub(super) fn cfg(dir: &Path) -> Smtp {
        Smtp {
            transport: Transport::Outbox(dir.to_owned()),
            from: "CX Reports <reports@example.com>".parse().unwrap(),
            timeout: Duration::from_secs(5),
            max_attachment_bytes: 1 << 20,
            attach_csv: false,
            max_attempts: 3,
            backoff: Duration::ZERO,
        }
    }

    pub(super) fn message(to: &str) -> Outgoing {
        Outgoing {
            message_id: "<abc.job@example.com>".into(),
            to: to.parse().unwrap(),
            subject: "Report".into(),
            text: "Hello".into(),
            html: None,
            attachments: Vec::new(),
            outbox_name: format!("job_2024_en_{to}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testing::cfg;
    use super::*;

    #[test]
    fn missing_password_env_is_named() {
        let mut c = cfg(Path::new("/tmp"));
        c.transport = Transport::Smtp {
            host: "127.0.0.1".into(),
            port: 2525,
            tls: TlsMode::None,
            username: Some("u".into()),
            password_env: Some("CXREPORT_TEST_SURELY_UNSET_VAR".into()),
            ca_file: None,
        };
        let e = Mailer::new(&c).err().unwrap().to_string();
        assert!(e.contains("CXREPORT_TEST_SURELY_UNSET_VAR"), "{e}");
    }
}
