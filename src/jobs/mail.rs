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

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use lettre::message::header::ContentType;
use lettre::message::{
    Attachment as MimeAttachment, Mailbox, MessageBuilder, MultiPart, SinglePart,
};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::transport::smtp::SmtpTransport;
use lettre::{Message, Transport as _};

use sha2::{Digest, Sha256};

use crate::jobs::config::{Smtp, TlsMode, Transport};

/// An attempt may last this many step timeouts (connect, greeting, EHLO, STARTTLS,
/// AUTH, MAIL, RCPT, DATA, the end of the data) ...
pub const ATTEMPT_STEPS: u32 = 4;
/// ... plus one second per this many bytes of message (a large attachment on a slow
/// link).
const BYTES_PER_SECOND: u64 = 64 * 1024;
/// After shutdown is asked for, an attempt in flight gets this long to finish before
/// it is given up (a transient failure, tried again by the next process).
pub const STOP_GRACE: Duration = Duration::from_secs(10);
/// Attempts given up but whose threads still wait on a server (the OS offers no way
/// to end a blocking read from outside); past this many no new attempt starts, so a
/// server that holds every connection open cannot make the process pile up threads.
const MAX_HUNG: usize = 16;
static IN_FLIGHT: AtomicUsize = AtomicUsize::new(0);

/// Counts an attempt's thread while it lives.
struct InFlight;

impl InFlight {
    fn enter() -> Option<Self> {
        IN_FLIGHT
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < MAX_HUNG).then_some(n + 1)
            })
            .ok()
            .map(|_| Self)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        IN_FLIGHT.fetch_sub(1, Ordering::SeqCst);
    }
}

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

    /// The attempt in a thread of its own, waited for at most `limit` (and
    /// [`STOP_GRACE`] once `stop` is set); a thread given up keeps its connection
    /// until the server or a step's timeout ends it.
    fn bounded(
        &self,
        transport: &SmtpTransport,
        message: Message,
        limit: Duration,
        stop: &AtomicBool,
    ) -> Result<(), Failure> {
        let Some(guard) = InFlight::enter() else {
            return Err(Failure::Transient(format!(
                "{MAX_HUNG} earlier SMTP attempts to {} are still waiting on the server; not starting another",
                self.target
            )));
        };
        let (tx, rx) = mpsc::channel();
        let transport = transport.clone();
        let timeout = self.timeout;
        std::thread::Builder::new()
            .name("smtp-attempt".into())
            .spawn(move || {
                let _guard = guard;
                let result = transport
                    .send(&message)
                    .map(|_| ())
                    .map_err(|e| classify(&e, timeout));
                // Nobody listens once the attempt was given up.
                let _ = tx.send(result);
            })
            .map_err(|e| Failure::Transient(format!("starting the SMTP attempt: {e}")))?;
        let started = Instant::now();
        let mut deadline = started + limit;
        let mut stopping = false;
        loop {
            let now = Instant::now();
            if now >= deadline {
                return Err(Failure::Transient(if stopping {
                    format!(
                        "SMTP attempt given up {} s after shutdown was asked for (the server may still take the message)",
                        STOP_GRACE.as_secs()
                    )
                } else {
                    format!(
                        "SMTP attempt exceeded {} s (the server answers too slowly; each step may take {} s, the whole attempt {} s)",
                        limit.as_secs(),
                        timeout.as_secs(),
                        limit.as_secs()
                    )
                }));
            }
            if !stopping && stop.load(Ordering::SeqCst) {
                stopping = true;
                deadline = deadline.min(now + STOP_GRACE);
            }
            match rx.recv_timeout((deadline - now).min(Duration::from_millis(100))) {
                Ok(result) => return result,
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    return Err(Failure::Transient(
                        "the SMTP attempt ended without a result (its thread panicked)".into(),
                    ))
                }
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

/// The longest file name stem in an outbox (file systems allow 255 bytes).
const MAX_STEM: usize = 160;

/// `name` as a file name stem: kept as it is when it is short and safe; otherwise its
/// safe characters, cut short, then `~` (which a kept name never has) and a hash of the
/// exact name, so that two recipients never share a file (`a+b@`, `a=b@`).
fn outbox_stem(name: &str) -> String {
    let safe: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '@') {
                c
            } else {
                '_'
            }
        })
        .take(MAX_STEM)
        .collect();
    if safe == name {
        return safe;
    }
    let hash: String = Sha256::digest(name.as_bytes())
        .iter()
        .take(6)
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("{safe}~{hash}")
}

fn write_eml(dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let safe = outbox_stem(name);
    // 0666 less the umask: a preview is for whoever reads the outbox, not only this
    // process's user (tempfile's default is 0600).
    let mut tmp = tempfile::Builder::new()
        .prefix(".eml-")
        .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o666))
        .tempfile_in(dir)?;
    std::io::Write::write_all(&mut tmp, bytes)?;
    tmp.persist(dir.join(format!("{safe}.eml")))
        .map_err(|e| e.error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(dir: &Path) -> Smtp {
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

    #[test]
    fn outbox_writes_a_complete_message() {
        let dir = tempfile::tempdir().unwrap();
        let m = Mailer::new(&cfg(dir.path())).unwrap();
        let msg = Outgoing {
            message_id: "<abc.job@example.com>".into(),
            to: "CEO <ceo@example.com>".parse().unwrap(),
            subject: "Report · 2024".into(),
            text: "Hello".into(),
            html: Some("<p>Hello</p>".into()),
            attachments: vec![Attachment {
                filename: "report.en.pdf".into(),
                content_type: "application/pdf",
                bytes: b"%PDF-1.7 test".to_vec(),
            }],
            outbox_name: "job/en ceo@example.com".into(),
        };
        assert_eq!(m.send(&msg, &AtomicBool::new(false), |_, _| {}), (1, None));
        // Its name had unsafe characters: made safe, with a hash of the exact name.
        let stem = outbox_stem("job/en ceo@example.com");
        assert!(stem.starts_with("job_en_ceo@example.com~"), "{stem}");
        let file = dir.path().join(format!("{stem}.eml"));
        let eml = std::fs::read_to_string(file).unwrap();
        assert!(eml.contains("Message-ID: <abc.job@example.com>"), "{eml}");
        assert!(eml.contains("report.en.pdf") && eml.contains("text/html"));
    }

    fn message(to: &str) -> Outgoing {
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

    #[test]
    fn recipients_whose_names_sanitise_alike_get_files_of_their_own() {
        let dir = tempfile::tempdir().unwrap();
        let m = Mailer::new(&cfg(dir.path())).unwrap();
        for to in [
            "a+b@example.com",
            "a=b@example.com",
            "a&b@example.com",
            "ab@example.com",
        ] {
            assert_eq!(
                m.send(&message(to), &AtomicBool::new(false), |_, _| {}),
                (1, None)
            );
        }
        let mut names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names.len(), 4, "{names:?}");
        assert!(
            names.contains(&"job_2024_en_ab@example.com.eml".to_owned()),
            "{names:?}"
        );
        assert!(names.iter().all(|n| n.len() <= MAX_STEM + 20), "{names:?}");
        // Long names are cut, still unique.
        let long = format!("{}@example.com", "a".repeat(300));
        assert_eq!(outbox_stem(&long).len(), MAX_STEM + 13);
        assert_ne!(outbox_stem(&long), outbox_stem(&format!("{long}x")));
    }

    /// A server that answers one byte every 2 s and never finishes its greeting:
    /// every read gets something within the step timeout.
    fn dribbling_server() -> u16 {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { return };
                std::thread::spawn(move || {
                    let _ = std::io::Write::write_all(&mut conn, b"220 ");
                    while std::io::Write::write_all(&mut conn, b"x").is_ok() {
                        std::thread::sleep(Duration::from_secs(2));
                    }
                });
            }
        });
        port
    }

    fn smtp_to(port: u16) -> Smtp {
        let mut c = cfg(Path::new("/nonexistent"));
        c.transport = Transport::Smtp {
            host: "127.0.0.1".into(),
            port,
            tls: TlsMode::None,
            username: None,
            password_env: None,
            ca_file: None,
        };
        c.timeout = Duration::from_secs(3);
        c.max_attempts = 1;
        c
    }

    /// Runs one send in a thread; `None` when it has not ended after a minute.
    fn send_bounded(
        m: Mailer,
        stop: std::sync::Arc<AtomicBool>,
    ) -> Option<(Duration, (u32, Option<Failure>))> {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let started = Instant::now();
            let r = m.send(&message("ceo@example.com"), &stop, |_, _| {});
            let _ = tx.send((started.elapsed(), r));
        });
        rx.recv_timeout(Duration::from_secs(60)).ok()
    }

    #[test]
    fn an_attempt_a_server_dribbles_is_given_up_at_its_limit() {
        let m = Mailer::new(&smtp_to(dribbling_server())).unwrap();
        let limit = m.attempt_limit(0);
        assert_eq!(limit, Duration::from_secs(12));
        let (took, (attempts, failure)) =
            send_bounded(m, std::sync::Arc::default()).expect("the attempt ends");
        eprintln!("a dribbling server's attempt was given up after {took:?} (limit {limit:?})");
        assert_eq!(attempts, 1);
        let Some(Failure::Transient(why)) = failure else {
            panic!("{failure:?}");
        };
        assert!(why.contains("SMTP attempt exceeded 12 s"), "{why}");
        assert!(
            took >= limit && took < limit + Duration::from_secs(5),
            "{took:?}"
        );
    }

    #[test]
    fn stopping_ends_the_wait_for_an_attempt_in_flight() {
        let mut c = smtp_to(dribbling_server());
        c.timeout = Duration::from_secs(30);
        let m = Mailer::new(&c).unwrap();
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let flag = std::sync::Arc::clone(&stop);
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_secs(1));
            flag.store(true, Ordering::SeqCst);
        });
        let (took, (_, failure)) = send_bounded(m, stop).expect("the attempt ends");
        eprintln!("stopped {took:?} after the attempt began (1 s + grace {STOP_GRACE:?})");
        assert!(
            took < Duration::from_secs(1) + STOP_GRACE + Duration::from_secs(3),
            "{took:?}"
        );
        assert!(
            matches!(&failure, Some(Failure::Transient(w)) if w.contains("shutdown")),
            "{failure:?}"
        );
    }

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
