//! Delivery end to end: the binary talks over TCP to a real SMTP server running in this
//! test process (`common::smtp`), whose answers each test scripts.

mod common;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::Ordering;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::smtp::{attachment, header, plain_text, smtp_server};

fn demo_db() -> &'static Path {
    static DB: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    let (_, p) = DB.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("demo.sqlite");
        cxreport::demo::generate(&path, &cxreport::demo::DemoOptions::default()).unwrap();
        (dir, path)
    });
    p
}

struct Setup {
    dir: tempfile::TempDir,
    config: PathBuf,
}

fn setup(port: u16, recipients: &str, smtp_extra: &str) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("schedules.toml");
    std::fs::write(
        &config,
        format!(
            r#"[defaults]
database = "{db}"
output_dir = "out"
[smtp]
host = "127.0.0.1"
port = {port}
tls = "none"
from = "CX Reports <reports@example.com>"
timeout_secs = 5
max_attempts = 3
backoff_secs = 0.05
{smtp_extra}
[[job]]
name = "monthly"
cron = "0 8 1 * *"
window = "rolling:6m"
owners = []
[job.recipients]
{recipients}
"#,
            db = demo_db().display()
        ),
    )
    .unwrap();
    Setup { dir, config }
}

fn cxreport(args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_cxreport"));
    c.env("RUST_LOG", "info").args(args);
    c
}

fn run_job(s: &Setup, extra: &[&str]) -> Output {
    let mut args = vec![
        "run",
        "--job",
        "monthly",
        "--config",
        s.config.to_str().unwrap(),
        "--as-of",
        "2024-07-01T08:00:00Z",
    ];
    args.extend_from_slice(extra);
    cxreport(&args).output().unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn ledger(s: &Setup) -> Vec<cxreport::jobs::ledger::RunRecord> {
    cxreport::jobs::ledger::Ledger::open(&s.dir.path().join("out/cxreport-state.sqlite"))
        .unwrap()
        .history(None)
        .unwrap()
}

#[test]
fn each_language_reaches_its_recipients_with_the_pdf_intact() {
    let server = smtp_server(&[], None);
    let s = setup(
        server.port,
        "en = [\"ceo@example.com\", \"coo@example.com\"]\nzh = [\"gm-china@example.com\"]",
        "",
    );
    let o = run_job(&s, &["--send"]);
    assert!(o.status.success(), "{}", text(&o));
    let state = server.state.lock().unwrap();
    assert_eq!(state.accepted.len(), 3);
    let report_dir = s.dir.path().join("out/monthly/2023-12-15_2024-06-15");
    for (to, lang) in [
        ("ceo@example.com", "en"),
        ("coo@example.com", "en"),
        ("gm-china@example.com", "zh"),
    ] {
        let m = state
            .accepted
            .iter()
            .find(|m| m.to == [to])
            .unwrap_or_else(|| panic!("{to}"));
        // Named after the report, period and language in the email; on disk as before.
        let name = format!("conversation-usage_2023-12-15..2024-06-15_{lang}.pdf");
        let sent = attachment(&m.raw, &name).unwrap_or_else(|| panic!("{to} has {name}"));
        assert_eq!(
            sent,
            std::fs::read(report_dir.join(format!("report.{lang}.pdf"))).unwrap(),
            "{to}: attachment bytes"
        );
        assert!(header(&m.raw, "Message-ID").contains("@example.com>"));
        let subject = header(&m.raw, "Subject");
        // The body carries page 1: the headlines and the top actions with their owner.
        let body = plain_text(&m.raw);
        if lang == "zh" {
            assert!(subject.contains("客户会话"), "{subject}");
            assert!(
                body.contains("优先行动") && body.contains("客户成功团队"),
                "{body}"
            );
        } else {
            assert!(subject.contains("Customer conversations"), "{subject}");
            assert!(
                body.contains("Top actions:") && body.contains("1. Customer success:"),
                "{body}"
            );
        }
    }
    // Only the depths some list gets are rendered: here the full report alone.
    assert!(!report_dir.join("report.en.brief.pdf").exists());
    drop(state);
    // Sending again delivers nothing twice.
    let o = run_job(&s, &["--send"]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(server.state.lock().unwrap().accepted.len(), 3);
    let runs = ledger(&s);
    assert_eq!(runs[0].state, "succeeded");
    assert!(runs[0]
        .deliveries
        .iter()
        .all(|d| d.state == "sent" && d.attempts == 1));
}

#[test]
fn a_451_is_retried_and_delivered_once() {
    let server = smtp_server(&[451], None);
    let s = setup(server.port, "en = [\"ceo@example.com\"]", "");
    let o = run_job(&s, &["--send"]);
    assert!(o.status.success(), "{}", text(&o));
    let state = server.state.lock().unwrap();
    assert_eq!(state.accepted.len(), 1);
    assert_eq!(state.data_ends, 2);
    let d = &ledger(&s)[0].deliveries[0];
    assert_eq!((d.state.as_str(), d.attempts), ("sent", 2));
}

#[test]
fn a_550_is_not_retried_and_fails_the_run() {
    let server = smtp_server(&[550], None);
    let s = setup(server.port, "en = [\"nobody@example.com\"]", "");
    // The job's owners hear about the failure.
    let cfg = std::fs::read_to_string(&s.config)
        .unwrap()
        .replace("owners = []", "owners = [\"owner@example.com\"]");
    std::fs::write(&s.config, cfg).unwrap();
    let o = run_job(&s, &["--send"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("550"), "{}", text(&o));
    let state = server.state.lock().unwrap();
    // One refused report (550, not retried) and one alert to the owner.
    assert_eq!((state.accepted.len(), state.data_ends), (1, 2));
    let alert = &state.accepted[0];
    assert_eq!(alert.to, ["owner@example.com"]);
    assert!(
        header(&alert.raw, "Subject").contains("job monthly failed"),
        "{}",
        header(&alert.raw, "Subject")
    );
    let body = plain_text(&alert.raw);
    assert!(
        body.contains("550") && body.contains("2023-12-15_2024-06-15"),
        "{body}"
    );
    let runs = ledger(&s);
    assert_eq!(runs[0].state, "failed");
    assert_eq!(
        (
            runs[0].deliveries[0].state.as_str(),
            runs[0].deliveries[0].attempts
        ),
        ("gave_up", 1)
    );
    // history shows it and exits non-zero.
    let h = cxreport(&["history", "--config", s.config.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(h.status.code(), Some(1));
    assert!(
        text(&h).contains("gave_up") && text(&h).contains("nobody@example.com"),
        "{}",
        text(&h)
    );
}

#[test]
fn a_server_that_never_answers_times_out() {
    // Accepts TCP connections and says nothing.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in listener.incoming() {
            held.push(conn);
        }
    });
    let s = setup(port, "en = [\"ceo@example.com\"]", "");
    std::fs::write(
        &s.config,
        std::fs::read_to_string(&s.config)
            .unwrap()
            .replace("timeout_secs = 5", "timeout_secs = 2")
            .replace("max_attempts = 3", "max_attempts = 1"),
    )
    .unwrap();
    let started = Instant::now();
    let o = run_job(&s, &["--send"]);
    let took = started.elapsed();
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    // Rendering the report comes first and may be slow on a busy machine; the message
    // proves the configured 2 s timeout ended the wait.
    assert!(took < Duration::from_secs(90), "took {took:?}");
    assert!(text(&o).contains("timed out after 2s"), "{}", text(&o));
}

#[test]
fn killed_after_some_deliveries_then_restarted_sends_only_the_missing_ones() {
    let server = smtp_server(&[], Some(2));
    let s = setup(
        server.port,
        "en = [\"a@example.com\", \"b@example.com\", \"c@example.com\"]\nzh = [\"d@example.com\"]",
        "",
    );
    let mut child = cxreport(&[
        "run",
        "--job",
        "monthly",
        "--config",
        s.config.to_str().unwrap(),
        "--as-of",
        "2024-07-01T08:00:00Z",
        "--send",
    ])
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let s = server.state.lock().unwrap();
        if s.accepted.len() >= 2 && s.data_ends >= 3 {
            break;
        }
        drop(s);
        assert!(
            Instant::now() < deadline,
            "the first deliveries never arrived"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // The third message is in flight (the server stalls): kill the process now.
    child.kill().unwrap();
    child.wait().unwrap();
    server.release.store(true, Ordering::SeqCst);
    server.state.lock().unwrap().stall_after = None;

    let o = run_job(&s, &["--send"]);
    assert!(o.status.success(), "{}", text(&o));
    let state = server.state.lock().unwrap();
    let ids: Vec<String> = state
        .accepted
        .iter()
        .map(|m| header(&m.raw, "Message-ID"))
        .collect();
    let mut unique = ids.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(ids.len(), 4, "{ids:?}");
    assert_eq!(unique.len(), 4, "no Message-ID twice at the sink: {ids:?}");
    let runs = ledger(&s);
    assert_eq!(runs[0].state, "succeeded");
    assert!(runs[0].attempts >= 2);
}

#[test]
fn a_job_in_flight_elsewhere_is_not_started_again() {
    let server = smtp_server(&[], None);
    let s = setup(server.port, "en = [\"ceo@example.com\"]", "");
    // This test process holds the job's lock, as a daemon running it would.
    let l = cxreport::jobs::ledger::Ledger::open(&s.dir.path().join("out/cxreport-state.sqlite"))
        .unwrap();
    let lock = l.lock_job("monthly", true).unwrap().expect("free");
    let o = run_job(&s, &["--send"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("run in flight"), "{}", text(&o));
    drop(lock);
    let o = run_job(&s, &["--send"]);
    assert!(o.status.success(), "{}", text(&o));
}

#[test]
fn outbox_and_test_sends_leave_the_real_deliveries_alone() {
    let server = smtp_server(&[], None);
    let s = setup(
        server.port,
        "en = [\"ceo@example.com\"]\nzh = [\"gm@example.com\"]",
        "",
    );
    let outbox = s.dir.path().join("preview");
    let o = run_job(&s, &["--outbox", outbox.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(std::fs::read_dir(&outbox).unwrap().count(), 2);
    let o = run_job(&s, &["--to", "tester@example.com"]);
    assert!(o.status.success(), "{}", text(&o));
    {
        let state = server.state.lock().unwrap();
        assert_eq!(state.accepted.len(), 2);
        assert!(state
            .accepted
            .iter()
            .all(|m| m.to == ["tester@example.com"]));
    }
    assert!(ledger(&s).iter().all(|r| r.deliveries.is_empty()));
    // The real send still goes to everyone.
    let o = run_job(&s, &["--send"]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(server.state.lock().unwrap().accepted.len(), 4);
}

#[test]
fn an_oversized_report_is_linked_not_attached() {
    let server = smtp_server(&[], None);
    let s = setup(
        server.port,
        "en = [\"ceo@example.com\"]",
        "max_attachment_mb = 0.01",
    );
    let o = run_job(&s, &["--send"]);
    assert!(o.status.success(), "{}", text(&o));
    let state = server.state.lock().unwrap();
    let raw = &state.accepted[0].raw;
    assert!(attachment(raw, "conversation-usage_2023-12-15..2024-06-15_en.pdf").is_none());
    let text_part = plain_text(raw);
    assert!(
        text_part.contains("larger than the attachment limit"),
        "{text_part}"
    );
    assert!(text_part.contains("report.en.pdf"), "{text_part}");
}

#[test]
fn the_daemon_runs_a_due_job_into_the_outbox_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("schedules.toml");
    std::fs::write(
        &config,
        format!(
            "[defaults]\ndatabase = \"{}\"\noutput_dir = \"out\"\n[smtp]\noutbox = \"out/outbox\"\nfrom = \"r@example.com\"\n[[job]]\nname = \"daily\"\ncron = \"0 8 * * *\"\ncatchup = \"latest\"\n[job.recipients]\nen = [\"ceo@example.com\"]\nzh = [\"gm@example.com\"]\n",
            demo_db().display()
        ),
    )
    .unwrap();
    // The daemon was last up two days ago: "latest" catches up the most recent fire.
    let ledger =
        cxreport::jobs::ledger::Ledger::open(&dir.path().join("out/cxreport-state.sqlite"))
            .unwrap();
    ledger
        .set_cursor("daily", chrono::Utc::now() - chrono::Duration::days(2))
        .unwrap();
    drop(ledger);
    let mut child = cxreport(&["daemon", "--config", config.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let outbox = dir.path().join("out/outbox");
    let deadline = Instant::now() + Duration::from_secs(120);
    while std::fs::read_dir(&outbox)
        .map(|d| {
            d.filter(|e| {
                e.as_ref()
                    .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "eml"))
            })
            .count()
        })
        .unwrap_or(0)
        < 2
    {
        assert!(Instant::now() < deadline, "no report in the outbox");
        std::thread::sleep(Duration::from_millis(100));
    }
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let started = Instant::now();
    let exit = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "daemon did not stop"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(exit.success(), "{exit:?}");
    let runs = cxreport::jobs::ledger::Ledger::open(&dir.path().join("out/cxreport-state.sqlite"))
        .unwrap()
        .history(Some("daily"))
        .unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].state, "succeeded");
    assert_eq!(runs[0].deliveries.len(), 2);
}

/// A watch rule leads the subject of every edition when the change it names holds and
/// reaches its threshold (here a planted fall of the bot-first share), and is recorded
/// with the run; on the demo as generated (no change) it stays quiet.
#[test]
fn a_watch_rule_leads_the_subject_when_its_change_holds() {
    let server = smtp_server(&[], None);
    let changed_dir = tempfile::tempdir().unwrap();
    let changed = common::planted_demo(changed_dir.path());
    let watched = |db: &Path| {
        let s = setup(
            server.port,
            "en = [\"ceo@example.com\"]\nzh = [\"gm@example.com\"]\n[job.watch]\nbot_drop = { metric = \"bot_first_resp_share\", fall_by = 3 }\nslow_renewal = { metric = \"avg_resp\", rise_by = 5, slice = \"renewal\" }",
            "",
        );
        let cfg = std::fs::read_to_string(&s.config)
            .unwrap()
            .replace("rolling:6m", "rolling:3m")
            .replace(&demo_db().display().to_string(), &db.display().to_string());
        std::fs::write(&s.config, cfg).unwrap();
        s
    };
    let s = watched(&changed);
    let o = run_job(&s, &["--send"]);
    assert!(o.status.success(), "{}", text(&o));
    // One sentence says a rule fired, word for word, wherever it is printed: `history`
    // and `run` here, the email and page 1 below (in each edition's language).
    let h = cxreport(&["history", "--config", s.config.to_str().unwrap()])
        .output()
        .unwrap();
    let history = text(&h);
    let en = history
        .lines()
        .find_map(|l| l.trim().strip_prefix("watch bot_drop"))
        .and_then(|l| l.trim().strip_prefix("FIRED "))
        .unwrap_or_else(|| panic!("{history}"))
        .to_owned();
    assert!(
        en.starts_with("Watch rule “bot_drop” fired: bot-first share fell by ")
            && en.ends_with(" pp)."),
        "{en}"
    );
    assert!(text(&o).contains(&format!("\n{en}\n")), "{}", text(&o));
    let mut zh = String::new();
    {
        let state = server.state.lock().unwrap();
        assert_eq!(state.accepted.len(), 2);
        for m in &state.accepted {
            let subject = header(&m.raw, "Subject");
            let body = plain_text(&m.raw);
            if m.to == ["gm@example.com"] {
                assert!(subject.starts_with("[预警: bot_drop]"), "{subject}");
                assert!(
                    body.contains("触发的预警规则（对比期 2024-01-08 – 2024-03-14）："),
                    "{body}"
                );
                zh = body
                    .lines()
                    .find_map(|l| l.strip_prefix("- 预警规则“bot_drop”已触发："))
                    .map(|l| format!("预警规则“bot_drop”已触发：{l}"))
                    .unwrap_or_else(|| panic!("{body}"));
                assert!(zh.contains("机器人首答占比下降"), "{zh}");
            } else {
                assert!(subject.starts_with("[Watch: bot_drop] "), "{subject}");
                assert!(
                    body.contains(
                        "Watch rules that fired (compared with 2024-01-08 – 2024-03-14):"
                    ) && body.lines().any(|l| l == format!("- {en}")),
                    "{body}"
                );
            }
        }
    }
    let runs = ledger(&s);
    let fired: Vec<(&str, bool)> = runs[0]
        .watch
        .iter()
        .map(|w| (w.rule.as_str(), w.fired))
        .collect();
    assert_eq!(fired, [("bot_drop", true), ("slow_renewal", false)]);
    // The breach leads page 1 of both editions, above the headlines.
    let dir = PathBuf::from(runs[0].output_dir.as_deref().unwrap());
    for (lang, box_title, said, headlines) in [
        ("en", "Watch rules that fired", &en, "Headline findings"),
        ("zh", "已触发的预警规则", &zh, "核心结论"),
    ] {
        let page1 = common::squash(&common::pdf_page_text(
            &dir.join(format!("report.{lang}.pdf")),
            1,
        ));
        let at = page1
            .find(&common::squash(box_title))
            .unwrap_or_else(|| panic!("{lang}: {page1}"));
        assert!(page1.contains(&common::squash(said)), "{lang}: {page1}");
        assert!(!page1.contains("slow_renewal"), "{lang}: {page1}");
        assert!(
            at < page1.find(&common::squash(headlines)).unwrap(),
            "{lang}"
        );
    }
    assert!(
        history.contains("watch slow_renewal         quiet mean first response (Renewal)"),
        "{history}"
    );

    // Nothing changed: no rule fires, the subjects are as always.
    let quiet = watched(demo_db());
    let o = run_job(&quiet, &["--send"]);
    assert!(o.status.success(), "{}", text(&o));
    let state = server.state.lock().unwrap();
    assert_eq!(state.accepted.len(), 4);
    for m in &state.accepted[2..] {
        let subject = header(&m.raw, "Subject");
        assert!(!subject.starts_with('['), "{subject}");
    }
    drop(state);
    assert!(ledger(&quiet)[0].watch.iter().all(|w| !w.fired));
}

/// A job with two lists: the leadership list gets the brief (≤ 5 pages), the analysts
/// the full report, each its own PDF as attached; a second send delivers nothing
/// twice, and the ledger keeps one delivery per (language, depth, recipient).
#[test]
fn each_list_gets_its_depth_the_brief_to_leadership_the_full_report_to_analysts() {
    let server = smtp_server(&[], None);
    let s = setup(
        server.port,
        "en = [\"analyst@example.com\"]\n\
         [[job.audience]]\nname = \"leadership\"\ndepth = \"brief\"\n\
         en = [\"ceo@example.com\", \"analyst@example.com\"]\nzh = [\"gm-china@example.com\"]",
        "",
    );
    let o = run_job(&s, &["--send"]);
    assert!(o.status.success(), "{}", text(&o));
    let report_dir = s.dir.path().join("out/monthly/2023-12-15_2024-06-15");
    let state = server.state.lock().unwrap();
    // The analyst is on both lists: the brief and the full report, once each.
    assert_eq!(state.accepted.len(), 4, "{}", text(&o));
    let pages = |bytes: &[u8], name: &str| {
        let f = s.dir.path().join(name);
        std::fs::write(&f, bytes).unwrap();
        common::pdf_pages(&f)
    };
    let period = "conversation-usage_2023-12-15..2024-06-15";
    for (to, lang, brief) in [
        ("ceo@example.com", "en", true),
        ("gm-china@example.com", "zh", true),
        ("analyst@example.com", "en", true),
        ("analyst@example.com", "en", false),
    ] {
        let (name, on_disk) = if brief {
            (
                format!("{period}_{lang}-brief.pdf"),
                format!("report.{lang}.brief.pdf"),
            )
        } else {
            (format!("{period}_{lang}.pdf"), format!("report.{lang}.pdf"))
        };
        let m = state
            .accepted
            .iter()
            .find(|m| m.to == [to] && attachment(&m.raw, &name).is_some())
            .unwrap_or_else(|| panic!("{to} has no {name}"));
        let sent = attachment(&m.raw, &name).unwrap();
        assert_eq!(
            sent,
            std::fs::read(report_dir.join(&on_disk)).unwrap(),
            "{to}: {name}"
        );
        let n = pages(&sent, &name);
        if brief {
            assert!(n <= 5, "{to}: the brief has {n} pages");
            // One attachment: the brief mail carries no full report beside it.
            assert!(attachment(&m.raw, &format!("{period}_{lang}.pdf")).is_none());
        } else {
            assert!(n > 5, "{to}: the full report has {n} pages");
        }
    }
    // Both depths are rendered, since lists get both, in each of the job's languages.
    assert!(report_dir.join("report.zh.brief.pdf").exists());
    drop(state);
    let o = run_job(&s, &["--send"]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(server.state.lock().unwrap().accepted.len(), 4);
    let runs = ledger(&s);
    let mut keys: Vec<(String, String)> = runs[0]
        .deliveries
        .iter()
        .map(|d| (d.lang.clone(), d.recipient.clone()))
        .collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            ("en".to_owned(), "analyst@example.com".to_owned()),
            ("en.brief".to_owned(), "analyst@example.com".to_owned()),
            ("en.brief".to_owned(), "ceo@example.com".to_owned()),
            ("zh.brief".to_owned(), "gm-china@example.com".to_owned()),
        ]
    );
    assert!(runs[0].deliveries.iter().all(|d| d.state == "sent"));
}
