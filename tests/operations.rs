//! What an operator sees of the service: its log as a file or the journal keeps it,
//! and answers that say what is wrong instead of nothing.

mod common;

use common::{bin, demo_db, text};

#[test]
fn the_log_has_no_colour_codes_off_a_terminal() {
    let out = tempfile::tempdir().unwrap();
    let o = bin()
        .env("RUST_LOG", "info")
        .env_remove("NO_COLOR")
        .args([
            "run",
            "--db",
            demo_db().to_str().unwrap(),
            "--as-of",
            "2024-07-01T08:00:00Z",
            "--data-only",
            "--out",
            out.path().to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let log = String::from_utf8_lossy(&o.stderr);
    assert!(log.contains("report written"), "{log}");
    // Before: every line carried ANSI escapes (`\x1b[2m…`) into files and journald.
    assert!(!log.contains('\u{1b}'), "{log:?}");
}

#[test]
fn history_of_a_job_that_does_not_exist_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("schedules.toml");
    std::fs::write(
        &cfg,
        format!(
            "[defaults]\ndatabase = \"{}\"\noutput_dir = \"out\"\n[[job]]\nname = \"monthly\"\ncron = \"0 8 1 * *\"\n",
            demo_db().display()
        ),
    )
    .unwrap();
    let history = |job: &str| {
        bin()
            .args(["history", "--config", cfg.to_str().unwrap(), "--job", job])
            .output()
            .unwrap()
    };
    // No ledger yet, then an (empty) ledger.
    for _ in 0..2 {
        let o = history("nope");
        // Before: nothing printed, exit 0.
        assert_eq!(o.status.code(), Some(2), "{}", text(&o));
        assert!(
            text(&o).contains("unknown job `nope`") && text(&o).contains("monthly"),
            "{}",
            text(&o)
        );
        // A configured job without runs is an empty history, not an error.
        let o = history("monthly");
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        assert!(text(&o).contains("no runs yet"), "{}", text(&o));
        std::fs::create_dir_all(dir.path().join("out")).unwrap();
        cxreport::jobs::ledger::Ledger::open(&dir.path().join("out/cxreport-state.sqlite"))
            .unwrap();
    }
}
