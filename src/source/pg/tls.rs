//! How a session to PostgreSQL is protected: libpq's `sslmode` and `sslrootcert`
//! (from the URL, else `PGSSLMODE` / `PGSSLROOTCERT`), the rustls configuration each
//! mode needs, and the one look at the server before a session that may travel
//! unencrypted: whether it offers TLS (`prefer`), and whether it would have the
//! password sent in clear (refused: a password never crosses the network readable).
//!
//! The meanings are libpq's: `require` encrypts without checking who answers (with
//! an explicit `sslrootcert` it checks the chain, as libpq does), `verify-ca` checks
//! the certificate chain, `verify-full` the chain and the host name; `prefer` (the
//! default) encrypts when the server offers TLS and says so when it does not.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore};
use rustls::{Error as TlsError, SignatureScheme};

/// Where the system keeps its certificate authorities (Debian, Ubuntu, Alpine): read
/// when present, next to the Mozilla roots built in.
const SYSTEM_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// libpq's `sslmode` values cxreport honours (`allow` is `prefer` without the
/// preference and is not offered).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SslMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    pub const NAMES: &'static str = "disable, prefer, require, verify-ca or verify-full";

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "disable" => Self::Disable,
            "prefer" => Self::Prefer,
            "require" => Self::Require,
            "verify-ca" => Self::VerifyCa,
            "verify-full" => Self::VerifyFull,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Disable => "disable",
            Self::Prefer => "prefer",
            Self::Require => "require",
            Self::VerifyCa => "verify-ca",
            Self::VerifyFull => "verify-full",
        }
    }
}

/// A location's TLS settings, as the URL or the environment gave them.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TlsSettings {
    pub mode: SslMode,
    /// `sslrootcert=FILE`: the certificate authorities to trust, PEM (else the
    /// system's and the Mozilla roots).
    pub root_cert: Option<PathBuf>,
}

/// What protected an open session: the manifest records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Link {
    pub sslmode: SslMode,
    pub encrypted: bool,
    pub verified: Verified,
}

/// How much of the server's certificate was checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verified {
    Nothing,
    Chain,
    ChainAndHostName,
}

/// What the server answered before any password was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    /// It accepts TLS.
    Tls,
    /// It refused TLS (or was not asked) and asks for the password in clear.
    Cleartext,
    /// It refused TLS (or was not asked) and authenticates some other way (SCRAM,
    /// md5, trust), or answered with an error the real session will report.
    Plain,
}

impl TlsSettings {
    /// `sslmode` / `sslrootcert` from the URL's query, else from `PGSSLMODE` /
    /// `PGSSLROOTCERT`; `prefer` when neither says.
    pub fn from_parts(
        mode: Option<&str>,
        root_cert: Option<&str>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, String> {
        let from_env = env("PGSSLMODE");
        let (mode_text, source) = match (mode, from_env.as_deref()) {
            (Some(m), _) => (Some(m), "sslmode="),
            (None, Some(m)) => (Some(m), "PGSSLMODE"),
            (None, None) => (None, ""),
        };
        let mode = match mode_text {
            None => SslMode::Prefer,
            Some(m) => SslMode::parse(m).ok_or_else(|| {
                format!("{source} `{m}` is not an sslmode: use {}", SslMode::NAMES)
            })?,
        };
        let root_cert = root_cert
            .map(str::to_owned)
            .or_else(|| env("PGSSLROOTCERT"))
            .filter(|p| !p.is_empty())
            .map(PathBuf::from);
        Ok(Self { mode, root_cert })
    }

    /// The certificate check a TLS session of this mode makes.
    pub fn verified(&self) -> Verified {
        match (self.mode, &self.root_cert) {
            (SslMode::VerifyFull, _) => Verified::ChainAndHostName,
            (SslMode::VerifyCa, _) | (SslMode::Require, Some(_)) => Verified::Chain,
            _ => Verified::Nothing,
        }
    }

    /// The rustls configuration of this mode's TLS sessions.
    pub fn client_config(&self) -> Result<ClientConfig, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS set-up: {e}"))?;
        let config = match self.verified() {
            Verified::Nothing => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(Unverified(provider)))
                .with_no_client_auth(),
            checked => {
                let roots = Arc::new(self.roots()?);
                let webpki = WebPkiServerVerifier::builder_with_provider(roots, provider)
                    .build()
                    .map_err(|e| format!("TLS set-up: {e}"))?;
                if checked == Verified::ChainAndHostName {
                    builder.with_webpki_verifier(webpki).with_no_client_auth()
                } else {
                    builder
                        .dangerous()
                        .with_custom_certificate_verifier(Arc::new(ChainOnly(webpki)))
                        .with_no_client_auth()
                }
            }
        };
        Ok(config)
    }

    /// The authorities a verifying mode trusts: `sslrootcert`'s alone when given,
    /// else the system bundle and the Mozilla roots.
    fn roots(&self) -> Result<RootCertStore, String> {
        let mut roots = RootCertStore::empty();
        match &self.root_cert {
            Some(path) => {
                let pem = std::fs::read(path)
                    .map_err(|e| format!("sslrootcert {}: cannot read it: {e}", path.display()))?;
                let certs: Vec<CertificateDer<'static>> =
                    rustls_pemfile::certs(&mut pem.as_slice())
                        .collect::<Result<_, _>>()
                        .map_err(|e| format!("sslrootcert {}: not PEM: {e}", path.display()))?;
                let (added, _) = roots.add_parsable_certificates(certs);
                if added == 0 {
                    return Err(format!(
                        "sslrootcert {}: holds no certificate (expected PEM blocks \
                         `-----BEGIN CERTIFICATE-----`)",
                        path.display()
                    ));
                }
            }
            None => {
                roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
                if let Ok(pem) = std::fs::read(SYSTEM_BUNDLE) {
                    let mut reader = pem.as_slice();
                    roots.add_parsable_certificates(rustls_pemfile::certs(&mut reader).flatten());
                }
            }
        }
        Ok(roots)
    }
}

/// Asks the server at `host:port`, before any password is sent, whether it offers TLS
/// (when `ask_tls`) and, if the session would be unencrypted, how it authenticates
/// `user` on `db`. The socket is closed after its first answer.
pub fn probe(
    host: &str,
    port: u16,
    user: Option<&str>,
    db: Option<&str>,
    ask_tls: bool,
    limit: Duration,
) -> std::io::Result<Probe> {
    // Each address in turn, as the driver tries them (`localhost` may name ::1 first
    // while the server listens on 127.0.0.1 only).
    let mut last = std::io::Error::new(std::io::ErrorKind::NotFound, "the host has no address");
    let mut stream = None;
    for addr in (host, port).to_socket_addrs()? {
        match TcpStream::connect_timeout(&addr, limit) {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) => last = e,
        }
    }
    let mut s = stream.ok_or(last)?;
    s.set_read_timeout(Some(limit))?;
    s.set_write_timeout(Some(limit))?;
    if ask_tls {
        // SSLRequest: length 8, code 1234.5679.
        s.write_all(&[0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f])?;
        let mut answer = [0u8; 1];
        s.read_exact(&mut answer)?;
        match answer[0] {
            b'S' => return Ok(Probe::Tls),
            b'N' => {}
            _ => return Ok(Probe::Plain),
        }
    }
    let Some(user) = user else {
        // No user: the driver's own error says so.
        return Ok(Probe::Plain);
    };
    let mut body = 196_608u32.to_be_bytes().to_vec(); // protocol 3.0
    for (k, v) in [("user", Some(user)), ("database", db)] {
        if let Some(v) = v {
            body.extend_from_slice(k.as_bytes());
            body.push(0);
            body.extend_from_slice(v.as_bytes());
            body.push(0);
        }
    }
    body.push(0);
    let len = u32::try_from(body.len() + 4).unwrap_or(u32::MAX);
    s.write_all(&len.to_be_bytes())?;
    s.write_all(&body)?;
    let mut head = [0u8; 9];
    s.read_exact(&mut head)?;
    // 'R', length 8, AuthenticationCleartextPassword (3).
    let cleartext = head[0] == b'R' && head[5..9] == 3u32.to_be_bytes();
    Ok(if cleartext {
        Probe::Cleartext
    } else {
        Probe::Plain
    })
}

/// `require` without a root certificate: the session is encrypted, the server's
/// certificate is not checked (libpq's meaning), its handshake signatures are.
#[derive(Debug)]
struct Unverified(Arc<CryptoProvider>);

impl ServerCertVerifier for Unverified {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, TlsError> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// `verify-ca`: the chain must lead to a trusted authority; the name the certificate
/// is for is not compared with the host (rustls checks the name after the chain, so a
/// name mismatch means the chain held).
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, TlsError> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            Err(TlsError::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn modes_come_from_the_url_then_the_environment() {
        let t = TlsSettings::from_parts(None, None, no_env).unwrap();
        assert_eq!(t.mode, SslMode::Prefer);
        assert_eq!(t.verified(), Verified::Nothing);
        let env = |k: &str| match k {
            "PGSSLMODE" => Some("verify-full".to_owned()),
            "PGSSLROOTCERT" => Some("/etc/ca.pem".to_owned()),
            _ => None,
        };
        let t = TlsSettings::from_parts(None, None, env).unwrap();
        assert_eq!(t.mode, SslMode::VerifyFull);
        assert_eq!(t.root_cert, Some(PathBuf::from("/etc/ca.pem")));
        assert_eq!(t.verified(), Verified::ChainAndHostName);
        // The URL wins over the environment.
        let t = TlsSettings::from_parts(Some("require"), Some("ca.pem"), env).unwrap();
        assert_eq!((t.mode, t.verified()), (SslMode::Require, Verified::Chain));
        let t = TlsSettings::from_parts(Some("require"), None, no_env).unwrap();
        assert_eq!(t.verified(), Verified::Nothing);
        let t = TlsSettings::from_parts(Some("verify-ca"), None, no_env).unwrap();
        assert_eq!(t.verified(), Verified::Chain);

        let e = TlsSettings::from_parts(Some("strict"), None, no_env).unwrap_err();
        assert!(
            e.contains("sslmode= `strict`") && e.contains("verify-full"),
            "{e}"
        );
        let bad_env = |k: &str| (k == "PGSSLMODE").then(|| "on".to_owned());
        let e = TlsSettings::from_parts(None, None, bad_env).unwrap_err();
        assert!(e.starts_with("PGSSLMODE `on`"), "{e}");
    }

    #[test]
    fn a_root_certificate_file_must_hold_certificates() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("none.pem");
        let t = TlsSettings {
            mode: SslMode::VerifyFull,
            root_cert: Some(missing.clone()),
        };
        let e = t.client_config().err().unwrap();
        assert!(
            e.contains(&missing.display().to_string()) && e.contains("cannot read"),
            "{e}"
        );
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let t = TlsSettings {
            mode: SslMode::VerifyCa,
            root_cert: Some(empty),
        };
        let e = t.client_config().err().unwrap();
        assert!(e.contains("holds no certificate"), "{e}");
        // Without a file: the built-in roots.
        let t = TlsSettings {
            mode: SslMode::VerifyFull,
            root_cert: None,
        };
        assert!(t.client_config().is_ok());
    }

    /// A fake server that answers the startup with the request for a cleartext
    /// password, after refusing TLS.
    #[test]
    fn the_probe_sees_a_request_for_a_cleartext_password() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            for conn in listener.incoming().take(2) {
                let mut c = conn.unwrap();
                let mut req = [0u8; 8];
                c.read_exact(&mut req).unwrap();
                if req[4..8] == [0x04, 0xd2, 0x16, 0x2f] {
                    c.write_all(b"N").unwrap();
                    c.read_exact(&mut req[..4]).unwrap();
                    let len = u32::from_be_bytes(req[..4].try_into().unwrap()) as usize;
                    let mut rest = vec![0u8; len - 4];
                    c.read_exact(&mut rest).unwrap();
                } else {
                    let len = u32::from_be_bytes(req[..4].try_into().unwrap()) as usize;
                    let mut rest = vec![0u8; len - 8];
                    c.read_exact(&mut rest).unwrap();
                }
                c.write_all(&[b'R', 0, 0, 0, 8, 0, 0, 0, 3]).unwrap();
            }
        });
        let limit = Duration::from_secs(5);
        let p = probe("127.0.0.1", port, Some("ana"), Some("w"), true, limit).unwrap();
        assert_eq!(p, Probe::Cleartext);
        let p = probe("127.0.0.1", port, Some("ana"), Some("w"), false, limit).unwrap();
        assert_eq!(p, Probe::Cleartext);
    }
}
