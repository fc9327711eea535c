//! One SMTP attempt bounded as a whole: it runs in a thread of its own that is given
//! up past its limit, or soon after shutdown is asked for (a server that answers one
//! byte at a time passes every step's timeout). Its owner is the SMTP transport
//! (`mail`), whose `send_once` calls it.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use lettre::transport::smtp::SmtpTransport;
use lettre::{Message, Transport as _};

use super::{classify, Failure, Mailer, STOP_GRACE};

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

impl Mailer {
    /// The attempt in a thread of its own, waited for at most `limit` (and
    /// [`STOP_GRACE`] once `stop` is set); a thread given up keeps its connection
    /// until the server or a step's timeout ends it.
    pub(super) fn bounded(
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
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::super::testing::{cfg, message};
    use super::*;
    use crate::jobs::config::{Smtp, TlsMode, Transport};

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
}
