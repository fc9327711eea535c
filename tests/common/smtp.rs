//! A real SMTP server in the test process, over TCP on loopback, whose answers each
//! test scripts: plain, STARTTLS or implicit TLS (rustls, with the test certificate);
//! plus read-back of the messages it received.
//!
//! Written here rather than taken from mailin-embedded: that crate always brings its
//! TLS, rustls with a second crypto provider (aws-lc), into the test build only, which
//! rebuilt rustls, lettre and cxreport itself after `cargo run --release` and built
//! aws-lc's C sources (67 s of a 2-core machine; docs/performance.md, "Build").

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What the sink received: one entry per accepted message.
#[derive(Default)]
pub struct SinkState {
    pub accepted: Vec<Received>,
    /// Codes to answer at the end of DATA, in order; 250 once empty.
    pub script: VecDeque<u16>,
    pub data_ends: usize,
    /// Accept this many messages, then stall every later one until released
    /// (and answer 451).
    pub stall_after: Option<usize>,
    /// Keep every message, then stall before answering 250 until released: the
    /// server has accepted it, the client does not know yet.
    pub hold_after_accept: bool,
    /// The one login (user, password) taken with AUTH PLAIN, offered after EHLO.
    pub login: Option<(String, String)>,
}

#[derive(Clone, Debug)]
pub struct Received {
    pub to: Vec<String>,
    pub raw: Vec<u8>,
}

pub struct Server {
    pub port: u16,
    pub state: Arc<Mutex<SinkState>>,
    pub release: Arc<AtomicBool>,
}

impl Server {
    pub fn accepted(&self) -> usize {
        self.state.lock().unwrap().accepted.len()
    }

    /// The Message-IDs received, in order.
    pub fn message_ids(&self) -> Vec<String> {
        self.state
            .lock()
            .unwrap()
            .accepted
            .iter()
            .map(|m| header(&m.raw, "Message-ID"))
            .collect()
    }
}

/// A free loopback port (nothing listens on it once this returns).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn smtp_server(script: &[u16], stall_after: Option<usize>) -> Server {
    serve(
        TcpListener::bind("127.0.0.1:0").unwrap(),
        script,
        stall_after,
        Wire::Plain,
    )
}

/// A server on a given port (one that was down until now).
pub fn smtp_server_on(port: u16) -> Server {
    let listener = (0..100)
        .find_map(|_| {
            TcpListener::bind(("127.0.0.1", port)).ok().or_else(|| {
                std::thread::sleep(Duration::from_millis(100));
                None
            })
        })
        .expect("port free again");
    serve(listener, &[], None, Wire::Plain)
}

/// The test certificates; also installs the process's TLS provider (ring, the one
/// the release build has: the test build must not add another, see
/// docs/performance.md, "Build").
pub fn tls_dir() -> PathBuf {
    static PROVIDER: std::sync::Once = std::sync::Once::new();
    PROVIDER.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tls")
}

/// How a connection starts.
#[derive(Clone, Copy, PartialEq)]
enum Wire {
    Plain,
    StartTls,
    Implicit,
}

/// A server that offers STARTTLS with the test certificate (signed by the test CA):
/// the plain greeting and EHLO, then the rest of the conversation inside TLS.
pub fn starttls_server() -> Server {
    serve(
        TcpListener::bind("127.0.0.1:0").unwrap(),
        &[],
        None,
        Wire::StartTls,
    )
}

/// A STARTTLS server that offers AUTH PLAIN inside TLS and takes one login.
pub fn starttls_login_server(user: &str, password: &str) -> Server {
    let server = starttls_server();
    server.state.lock().unwrap().login = Some((user.to_owned(), password.to_owned()));
    server
}

/// A server behind implicit TLS (port 465 style), with the test certificate.
pub fn implicit_tls_server() -> Server {
    serve(
        TcpListener::bind("127.0.0.1:0").unwrap(),
        &[],
        None,
        Wire::Implicit,
    )
}

fn serve(listener: TcpListener, script: &[u16], stall_after: Option<usize>, wire: Wire) -> Server {
    let port = listener.local_addr().unwrap().port();
    let state = Arc::new(Mutex::new(SinkState {
        script: script.iter().copied().collect(),
        stall_after,
        ..SinkState::default()
    }));
    let release = Arc::new(AtomicBool::new(false));
    let config = (wire != Wire::Plain).then(tls_config);
    let (st, rel) = (Arc::clone(&state), Arc::clone(&release));
    std::thread::spawn(move || {
        for mut tcp in listener.incoming().flatten() {
            let (st, rel, config) = (Arc::clone(&st), Arc::clone(&rel), config.clone());
            std::thread::spawn(move || {
                let sink = Sink {
                    state: st,
                    release: rel,
                };
                let _ = match (wire, config) {
                    (Wire::Plain, _) | (_, None) => sink.converse(tcp, true),
                    (wire, Some(config)) => {
                        if wire == Wire::StartTls && !until_starttls(&mut tcp).unwrap_or(false) {
                            return;
                        }
                        let Ok(conn) = rustls::ServerConnection::new(config) else {
                            return;
                        };
                        sink.converse(rustls::StreamOwned::new(conn, tcp), wire == Wire::Implicit)
                    }
                };
            });
        }
    });
    Server {
        port,
        state,
        release,
    }
}

fn tls_config() -> Arc<rustls::ServerConfig> {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let tls = tls_dir();
    let certs: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut BufReader::new(
        std::fs::File::open(tls.join("server.pem")).unwrap(),
    ))
    .collect::<Result<_, _>>()
    .unwrap();
    let key: PrivateKeyDer<'static> = rustls_pemfile::private_key(&mut BufReader::new(
        std::fs::File::open(tls.join("server.key")).unwrap(),
    ))
    .unwrap()
    .unwrap();
    Arc::new(
        rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .unwrap(),
    )
}

/// The plain part of a STARTTLS conversation: greeting, EHLO offering STARTTLS, and
/// the go-ahead. False when the client left or asked for anything else first.
fn until_starttls(tcp: &mut TcpStream) -> std::io::Result<bool> {
    let mut r = BufReader::new(tcp.try_clone()?);
    tcp.write_all(b"220 sink.test ESMTP\r\n")?;
    loop {
        let mut line = String::new();
        if r.read_line(&mut line)? == 0 {
            return Ok(false);
        }
        let upper = line.trim_end().to_ascii_uppercase();
        if upper.starts_with("EHLO") {
            tcp.write_all(b"250-sink.test\r\n250 STARTTLS\r\n")?;
        } else if upper == "STARTTLS" {
            tcp.write_all(b"220 ready to start TLS\r\n")?;
            return Ok(true);
        } else {
            tcp.write_all(b"530 must issue STARTTLS first\r\n")?;
            return Ok(false);
        }
    }
}

/// One connection's view of the shared state.
struct Sink {
    state: Arc<Mutex<SinkState>>,
    release: Arc<AtomicBool>,
}

impl Sink {
    fn wait_for_release(&self) {
        while !self.release.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// What to answer at the end of DATA: stall (then 451), the next scripted code, or
    /// keep the message and answer 250 (after a hold when the test asked for one).
    fn data_end(&self, to: &[String], raw: Vec<u8>) -> String {
        let (stall, hold) = {
            let mut s = self.state.lock().unwrap();
            s.data_ends += 1;
            (
                s.stall_after.is_some_and(|n| s.accepted.len() >= n),
                s.hold_after_accept,
            )
        };
        if stall {
            self.wait_for_release();
            return "451 stalled".into();
        }
        let mut s = self.state.lock().unwrap();
        match s.script.pop_front().unwrap_or(250) {
            250 => {
                s.accepted.push(Received {
                    to: to.to_vec(),
                    raw,
                });
                drop(s);
                if hold {
                    self.wait_for_release();
                }
                "250 OK queued".into()
            }
            code => format!("{code} scripted {code}"),
        }
    }

    /// One SMTP conversation; `greet` is false after STARTTLS, where the client speaks
    /// first (EHLO again).
    fn converse<S: Read + Write>(&self, stream: S, greet: bool) -> std::io::Result<()> {
        let mut r = BufReader::new(stream);
        let say = |r: &mut BufReader<S>, line: &str| -> std::io::Result<()> {
            r.get_mut().write_all(format!("{line}\r\n").as_bytes())?;
            r.get_mut().flush()
        };
        if greet {
            say(&mut r, "220 sink.test ESMTP")?;
        }
        let mut to = Vec::new();
        loop {
            let mut line = String::new();
            if r.read_line(&mut line)? == 0 {
                return Ok(());
            }
            let upper = line.trim_end().to_ascii_uppercase();
            let login = self.state.lock().unwrap().login.clone();
            if upper.starts_with("EHLO") && login.is_some() {
                say(&mut r, "250-sink.test\r\n250 AUTH PLAIN")?;
            } else if upper.starts_with("EHLO") || upper.starts_with("HELO") {
                say(&mut r, "250 sink.test")?;
            } else if let (Some((user, password)), true) = (login, upper.starts_with("AUTH PLAIN"))
            {
                let mut given = line.trim_end()["AUTH PLAIN".len()..].trim().to_owned();
                if given.is_empty() {
                    say(&mut r, "334 ")?;
                    given.clear();
                    r.read_line(&mut given)?;
                }
                let decoded = base64_decode(given.trim());
                let parts: Vec<&[u8]> = decoded.split(|b| *b == 0).collect();
                if parts.len() == 3
                    && parts[1] == user.as_bytes()
                    && parts[2] == password.as_bytes()
                {
                    say(&mut r, "235 2.7.0 Authentication successful")?;
                } else {
                    say(&mut r, "535 5.7.8 Authentication credentials invalid")?;
                }
            } else if upper.starts_with("MAIL") {
                to.clear();
                say(&mut r, "250 OK")?;
            } else if upper.starts_with("RCPT") {
                let addr = line.split(['<', '>']).nth(1).unwrap_or_default().to_owned();
                to.push(addr);
                say(&mut r, "250 OK")?;
            } else if upper == "DATA" {
                say(&mut r, "354 go ahead")?;
                let mut raw = Vec::new();
                loop {
                    let mut l = Vec::new();
                    if r.read_until(b'\n', &mut l)? == 0 {
                        return Ok(());
                    }
                    if l == b".\r\n" {
                        break;
                    }
                    raw.extend_from_slice(l.strip_prefix(b".").unwrap_or(&l));
                }
                let answer = self.data_end(&to, raw);
                say(&mut r, &answer)?;
            } else if upper == "QUIT" {
                say(&mut r, "221 bye")?;
                return Ok(());
            } else {
                say(&mut r, "250 OK")?;
            }
        }
    }
}

/// Standard base64 (AUTH PLAIN's encoding); what is not base64 decodes to nothing.
fn base64_decode(text: &str) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in text.bytes().take_while(|c| *c != b'=') {
        let Some(v) = ALPHABET.iter().position(|a| *a == c) else {
            return Vec::new();
        };
        acc = (acc << 6) | v as u32;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    out
}

pub fn attachment(raw: &[u8], name: &str) -> Option<Vec<u8>> {
    let mail = mailparse::parse_mail(raw).unwrap();
    fn walk(p: &mailparse::ParsedMail<'_>, name: &str) -> Option<Vec<u8>> {
        let disposition = p.get_content_disposition();
        if disposition.params.get("filename").map(String::as_str) == Some(name) {
            return p.get_body_raw().ok();
        }
        p.subparts.iter().find_map(|s| walk(s, name))
    }
    walk(&mail, name)
}

/// The first text/plain part, decoded.
pub fn plain_text(raw: &[u8]) -> String {
    fn walk(p: &mailparse::ParsedMail<'_>) -> Option<String> {
        if p.ctype.mimetype == "text/plain" {
            return p.get_body().ok();
        }
        p.subparts.iter().find_map(walk)
    }
    walk(&mailparse::parse_mail(raw).unwrap()).unwrap_or_default()
}

pub fn header(raw: &[u8], name: &str) -> String {
    use mailparse::MailHeaderMap;
    mailparse::parse_mail(raw)
        .unwrap()
        .headers
        .get_first_value(name)
        .unwrap_or_default()
}
