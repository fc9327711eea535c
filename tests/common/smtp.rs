//! A real SMTP server in the test process (mailin-embedded over TCP, optionally with
//! STARTTLS), whose answers each test scripts, and a minimal implicit-TLS one; plus
//! read-back of the messages it received.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mailin_embedded::response::{Response, OK};
use mailin_embedded::{Handler, SslConfig};

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
}

#[derive(Clone, Debug)]
pub struct Received {
    pub to: Vec<String>,
    pub raw: Vec<u8>,
}

#[derive(Clone)]
struct Sink {
    state: Arc<Mutex<SinkState>>,
    release: Arc<AtomicBool>,
    to: Vec<String>,
    buf: Vec<u8>,
}

impl Handler for Sink {
    fn mail(&mut self, _ip: IpAddr, _domain: &str, _from: &str) -> Response {
        self.to.clear();
        self.buf.clear();
        OK
    }
    fn rcpt(&mut self, to: &str) -> Response {
        self.to.push(to.to_owned());
        OK
    }
    fn data(&mut self, buf: &[u8]) -> std::io::Result<()> {
        self.buf.extend_from_slice(buf);
        Ok(())
    }
    fn data_end(&mut self) -> Response {
        let (stall, hold) = {
            let mut s = self.state.lock().unwrap();
            s.data_ends += 1;
            (
                s.stall_after.is_some_and(|n| s.accepted.len() >= n),
                s.hold_after_accept,
            )
        };
        let wait = || {
            while !self.release.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(50));
            }
        };
        if stall {
            wait();
            return Response::custom(451, "stalled".into());
        }
        let mut s = self.state.lock().unwrap();
        match s.script.pop_front().unwrap_or(250) {
            250 => {
                s.accepted.push(Received {
                    to: self.to.clone(),
                    raw: std::mem::take(&mut self.buf),
                });
                drop(s);
                if hold {
                    wait();
                }
                OK
            }
            code => Response::custom(code, format!("scripted {code}")),
        }
    }
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
        None,
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
    serve(listener, &[], None, None)
}

/// A server that offers STARTTLS with the test certificate (signed by the test CA).
pub fn starttls_server() -> Server {
    let tls = tls_dir();
    serve(
        TcpListener::bind("127.0.0.1:0").unwrap(),
        &[],
        None,
        Some(SslConfig::SelfSigned {
            cert_path: tls.join("server.pem").display().to_string(),
            key_path: tls.join("server.key").display().to_string(),
        }),
    )
}

/// The test certificates; also installs the process's TLS provider (the test build
/// has two, and rustls then wants to be told which).
pub fn tls_dir() -> PathBuf {
    static PROVIDER: std::sync::Once = std::sync::Once::new();
    PROVIDER.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tls")
}

fn serve(
    listener: TcpListener,
    script: &[u16],
    stall_after: Option<usize>,
    ssl: Option<SslConfig>,
) -> Server {
    let port = listener.local_addr().unwrap().port();
    let state = Arc::new(Mutex::new(SinkState {
        script: script.iter().copied().collect(),
        stall_after,
        ..SinkState::default()
    }));
    let release = Arc::new(AtomicBool::new(false));
    let handler = Sink {
        state: Arc::clone(&state),
        release: Arc::clone(&release),
        to: Vec::new(),
        buf: Vec::new(),
    };
    let mut server = mailin_embedded::Server::new(handler);
    server
        .with_name("sink.test")
        .with_num_threads(4)
        .with_tcp_listener(listener);
    if let Some(ssl) = ssl {
        server.with_ssl(ssl).unwrap();
    }
    std::thread::spawn(move || {
        let _ = server.serve();
    });
    Server {
        port,
        state,
        release,
    }
}

/// A minimal SMTP server behind implicit TLS (port 465 style), with the test
/// certificate: enough of the protocol for one message per connection.
pub fn implicit_tls_server() -> Server {
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
    let config = Arc::new(
        rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .unwrap(),
    );
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let state: Arc<Mutex<SinkState>> = Arc::default();
    let st = Arc::clone(&state);
    std::thread::spawn(move || {
        for tcp in listener.incoming().flatten() {
            let (config, st) = (Arc::clone(&config), Arc::clone(&st));
            std::thread::spawn(move || {
                let Ok(conn) = rustls::ServerConnection::new(config) else {
                    return;
                };
                let stream = rustls::StreamOwned::new(conn, tcp);
                let _ = converse(stream, &st);
            });
        }
    });
    Server {
        port,
        state,
        release: Arc::new(AtomicBool::new(false)),
    }
}

fn converse<S: std::io::Read + Write>(stream: S, state: &Mutex<SinkState>) -> std::io::Result<()> {
    let mut r = BufReader::new(stream);
    let say = |r: &mut BufReader<S>, line: &str| -> std::io::Result<()> {
        r.get_mut().write_all(format!("{line}\r\n").as_bytes())?;
        r.get_mut().flush()
    };
    say(&mut r, "220 sink.test ESMTP")?;
    let mut to = Vec::new();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let upper = line.trim_end().to_ascii_uppercase();
        if upper.starts_with("EHLO") || upper.starts_with("HELO") {
            say(&mut r, "250 sink.test")?;
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
                let mut l = String::new();
                if r.read_line(&mut l)? == 0 {
                    return Ok(());
                }
                if l == ".\r\n" {
                    break;
                }
                raw.extend_from_slice(l.strip_prefix('.').unwrap_or(&l).as_bytes());
            }
            let mut s = state.lock().unwrap();
            s.data_ends += 1;
            s.accepted.push(Received {
                to: to.clone(),
                raw,
            });
            drop(s);
            say(&mut r, "250 OK queued")?;
        } else if upper == "QUIT" {
            say(&mut r, "221 bye")?;
            return Ok(());
        } else {
            say(&mut r, "250 OK")?;
        }
    }
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
