//! Helpers the end-to-end tests share: the binary, a demo database built once per
//! build, CSV and PDF read-back.
#![allow(dead_code)]

pub mod cases;
pub mod service;
pub mod smtp;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

pub fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_cxreport"));
    c.env("RUST_LOG", "warn");
    c
}

pub fn run(args: &[&str]) -> Output {
    bin().args(args).output().expect("binary runs")
}

/// stdout and stderr, for assertion messages.
pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The default demo database (`cxreport demo-data`), written once per build of the
/// binary and shared by every test process (nextest runs each test in its own):
/// under the target's temporary folder, named by the binary's size and time, put in
/// place by a rename so that processes writing it at once never see half a file.
pub fn demo_db() -> &'static Path {
    static DB: OnceLock<PathBuf> = OnceLock::new();
    DB.get_or_init(|| {
        let meta = std::fs::metadata(env!("CARGO_BIN_EXE_cxreport")).unwrap();
        let stamp = meta
            .modified()
            .unwrap()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("demo-db");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("demo-{}-{stamp}.sqlite", meta.len()));
        if !path.exists() {
            let tmp = dir.join(format!("writing-{}.sqlite", std::process::id()));
            let _ = std::fs::remove_file(&tmp);
            let o = run(&["demo-data", "--out", tmp.to_str().unwrap()]);
            assert!(o.status.success(), "{}", text(&o));
            std::fs::rename(&tmp, &path).unwrap();
        }
        path
    })
}

/// The demo with its known change planted (`demo-data --plant-change`), written
/// into `dir`.
pub fn planted_demo(dir: &Path) -> PathBuf {
    let path = dir.join("planted.sqlite");
    let o = run(&[
        "demo-data",
        "--plant-change",
        "--out",
        path.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    path
}

pub fn read_csv(path: &Path) -> (Vec<String>, Vec<Vec<String>>) {
    let mut r = csv::Reader::from_path(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let header = r.headers().unwrap().iter().map(str::to_owned).collect();
    let rows = r
        .records()
        .map(|rec| rec.unwrap().iter().map(str::to_owned).collect())
        .collect();
    (header, rows)
}

pub fn col(header: &[String], name: &str) -> usize {
    header
        .iter()
        .position(|h| h == name)
        .unwrap_or_else(|| panic!("column {name}"))
}

pub fn json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(
        &std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
    )
    .unwrap()
}

/// Runs one of poppler's tools (Debian `poppler-utils`), failing with the command that
/// installs it when it is missing.
fn poppler(tool: &str, args: &[&std::ffi::OsStr]) -> Output {
    let o = Command::new(tool).args(args).output().unwrap_or_else(|e| {
        panic!(
            "cannot run {tool} ({e}): the PDF tests read PDFs back with poppler-utils. \
             Run the tests with `script/test`, which installs it, or install it with \
             `sudo apt-get install poppler-utils`"
        )
    });
    assert!(
        o.status.success(),
        "{tool} {:?}: {}",
        args,
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

/// The page count, from poppler's `pdfinfo`.
pub fn pdf_pages(path: &Path) -> usize {
    let o = poppler("pdfinfo", &[path.as_os_str()]);
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("Pages:"))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("pdfinfo {}: no page count", path.display()))
}

/// The text layer, read back by poppler's `pdftotext` (Debian `poppler-utils`, which
/// `script/test` installs): it also reads the text inside the charts' form XObjects.
pub fn pdf_text(path: &Path) -> String {
    let o = poppler(
        "pdftotext",
        &[
            "-enc".as_ref(),
            "UTF-8".as_ref(),
            path.as_os_str(),
            "-".as_ref(),
        ],
    );
    String::from_utf8(o.stdout).unwrap()
}

/// The names of the fonts a PDF embeds, from poppler's `pdffonts`, without the subset
/// prefix (`NotoSansCJKsc-Regular-Identity-H`).
pub fn pdf_fonts(path: &Path) -> Vec<String> {
    let o = poppler("pdffonts", &[path.as_os_str()]);
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .skip(2)
        .filter_map(|l| l.split_whitespace().next())
        .map(|n| n.split_once('+').map_or(n, |(_, name)| name).to_owned())
        .collect()
}

/// The text of one page.
pub fn pdf_page_text(path: &Path, page: usize) -> String {
    let page = page.to_string();
    let o = poppler(
        "pdftotext",
        &[
            "-enc".as_ref(),
            "UTF-8".as_ref(),
            "-f".as_ref(),
            page.as_ref(),
            "-l".as_ref(),
            page.as_ref(),
            path.as_os_str(),
            "-".as_ref(),
        ],
    );
    String::from_utf8(o.stdout).unwrap()
}

/// `pdftotext` breaks lines and may drop spaces at breaks: compare without whitespace.
pub fn squash(s: &str) -> String {
    s.chars().filter(|c| !c.is_whitespace()).collect()
}

/// A copy of the demo database in `dir`, changed by `sql`.
pub fn demo_copy(dir: &Path, sql: &str) -> PathBuf {
    let db = dir.join("changed.sqlite");
    std::fs::copy(demo_db(), &db).unwrap();
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute_batch(sql)
        .unwrap();
    db
}

/// The instant the end-to-end runs are made at: the demo data ends in June 2024.
pub const AS_OF: &str = "2024-07-01T08:00:00Z";

/// Runs `report` on `db` into `out` at [`AS_OF`] with the options `extra`; returns the
/// folder it wrote (the run must succeed).
pub fn run_report(db: &Path, out: &Path, report: &str, extra: &[&str]) -> PathBuf {
    let mut args = vec![
        "run",
        report,
        "--db",
        db.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--as-of",
        AS_OF,
    ];
    args.extend_from_slice(extra);
    let o = run(&args);
    assert!(
        o.status.success(),
        "{report} {extra:?} on {}: {}",
        db.display(),
        text(&o)
    );
    PathBuf::from(String::from_utf8_lossy(&o.stdout).trim())
}
