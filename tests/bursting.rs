//! Bursting (issue 32): one job, one edition per region found in the demo data,
//! each delivered through a real SMTP server (in this process) to that region's
//! recipients only; nothing of another region's companies in any recipient's email
//! or PDF; one region's failed delivery leaves the others delivered, and `retry
//! --region` sends that region's alone; `check` and `history` list the regions.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Output;

use common::smtp::{attachment, header, plain_text, smtp_server, Received};
use common::{demo_db, squash, text, AS_OF};

/// Each region's recipients per language, as the job below gives them (LATAM has
/// none: written, not mailed).
const RECIPIENTS: &[(&str, &str, &[&str])] = &[
    (
        "CN",
        "zh",
        &["cx-china@example.com", "gm-china@example.com"],
    ),
    ("EMEA", "en", &["emea@example.com"]),
    ("APAC", "en", &["apac@example.com"]),
    ("APAC", "zh", &["apac-zh@example.com"]),
    ("AMER", "en", &["amer@example.com"]),
];

struct Setup {
    dir: tempfile::TempDir,
    config: PathBuf,
}

fn setup(port: u16, burst: &str) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("schedules.toml");
    let mut lists = String::new();
    let mut by_region: BTreeMap<&str, Vec<(&str, &[&str])>> = BTreeMap::new();
    for (region, lang, to) in RECIPIENTS {
        by_region.entry(region).or_default().push((lang, to));
    }
    for (region, langs) in by_region {
        // Written as the users would: the region in any case.
        lists.push_str(&format!(
            "[job.burst.recipients.{}]\n",
            region.to_lowercase()
        ));
        for (lang, to) in langs {
            let to: Vec<String> = to.iter().map(|a| format!("\"{a}\"")).collect();
            lists.push_str(&format!("{lang} = [{}]\n", to.join(", ")));
        }
    }
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
max_attempts = 1
backoff_secs = 0.05
[[job]]
name = "regional"
cron = "0 8 1 * *"
window = "rolling:6m"
owners = []
[job.burst]
{burst}
{lists}"#,
            db = demo_db().display()
        ),
    )
    .unwrap();
    Setup { dir, config }
}

fn cx(s: &Setup, args: &[&str]) -> Output {
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["--config", s.config.to_str().unwrap()]);
    common::run(&all)
}

fn run_job(s: &Setup) -> Output {
    cx(s, &["run", "--job", "regional", "--as-of", AS_OF, "--send"])
}

/// Every company's name by region (upper case), from the demo database.
fn names_by_region() -> BTreeMap<String, BTreeSet<String>> {
    let c = rusqlite::Connection::open(demo_db()).unwrap();
    let mut stmt = c
        .prepare("SELECT upper(trim(region)), company_name FROM intercom__company_enhanced WHERE company_name IS NOT NULL")
        .unwrap();
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for row in stmt
        .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
        .unwrap()
    {
        let (region, name) = row.unwrap();
        out.entry(region).or_default().insert(name);
    }
    out
}

/// The region an edition's subject names (`… — CN`).
fn subject_region(m: &Received) -> String {
    let subject = header(&m.raw, "Subject");
    subject
        .rsplit_once(" — ")
        .map(|(_, r)| r.trim().to_owned())
        .unwrap_or_else(|| panic!("no region in the subject {subject:?}"))
}

/// The PDF attached to a message, as text (pdftotext), without whitespace.
fn pdf_of(m: &Received, dir: &Path, n: usize) -> String {
    let mail = mailparse::parse_mail(&m.raw).unwrap();
    fn names(p: &mailparse::ParsedMail<'_>, out: &mut Vec<String>) {
        if let Some(f) = p.get_content_disposition().params.get("filename") {
            out.push(f.clone());
        }
        p.subparts.iter().for_each(|s| names(s, out));
    }
    let mut files = Vec::new();
    names(&mail, &mut files);
    let pdf = files
        .iter()
        .find(|f| f.ends_with(".pdf"))
        .unwrap_or_else(|| panic!("no PDF attached: {files:?}"));
    let bytes = attachment(&m.raw, pdf).unwrap();
    let path = dir.join(format!("m{n}.pdf"));
    std::fs::write(&path, bytes).unwrap();
    squash(&common::pdf_text(&path))
}

#[test]
fn each_region_gets_its_own_edition_and_nothing_of_another_regions_companies() {
    let server = smtp_server(&[], None);
    let s = setup(server.port, "column = \"region\"");
    let o = run_job(&s);
    assert!(o.status.success(), "{}", text(&o));
    let out = text(&o);
    assert!(out.contains("written, no recipients: LATAM"), "{out}");

    let accepted = server.state.lock().unwrap().accepted.clone();
    // Exactly one message per region, language and recipient, to that recipient alone.
    let mut got: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
    for m in &accepted {
        assert_eq!(m.to.len(), 1, "one recipient per message: {:?}", m.to);
        let region = subject_region(m);
        let cjk = |c: char| ('\u{4e00}'..='\u{9fff}').contains(&c);
        let lang = if header(&m.raw, "Subject").chars().any(cjk) {
            "zh"
        } else {
            "en"
        };
        let fresh = got
            .entry((region, lang.to_owned()))
            .or_default()
            .insert(m.to[0].clone());
        assert!(fresh, "{} got two messages", m.to[0]);
    }
    let want: BTreeMap<(String, String), BTreeSet<String>> = RECIPIENTS
        .iter()
        .map(|(r, l, to)| {
            (
                ((*r).to_owned(), (*l).to_owned()),
                to.iter().map(|a| (*a).to_owned()).collect(),
            )
        })
        .collect();
    assert_eq!(got, want);
    assert_eq!(accepted.len(), 6);

    // Message-IDs differ per region and name it.
    for m in &accepted {
        let id = header(&m.raw, "Message-ID");
        let region = subject_region(m).to_lowercase();
        assert!(id.contains(&format!(".regional.{region}@")), "{id}");
    }

    // No company name of another region in any email or PDF, and some of the
    // region's own in its PDF (the report lists companies by name).
    let names = names_by_region();
    let counts = paying_counts();
    let tmp = tempfile::tempdir().unwrap();
    // The own region's company names the PDFs print (the report names few: the
    // companies its tables list), so that the check of the others' can fail.
    let mut shown = 0;
    for (n, m) in accepted.iter().enumerate() {
        let region = subject_region(m);
        let own = &names[&region];
        let email = squash(&plain_text(&m.raw));
        let pdf = pdf_of(m, tmp.path(), n);
        for (other, theirs) in names.iter().filter(|(r, _)| **r != region) {
            for name in theirs.iter().filter(|n| !own.contains(*n)) {
                let name = squash(name);
                assert!(
                    !pdf.contains(&name) && !email.contains(&name),
                    "{region}'s edition to {:?} names `{name}`, a company of {other}",
                    m.to
                );
            }
            // Another region's company count, as the method appendix states an
            // edition's ("3 of 356 paying companies", "付费公司356家中3家").
            let count = counts[other];
            if count != counts[&region] {
                for phrase in count_phrases(count) {
                    assert!(
                        !pdf.contains(&phrase),
                        "{region}'s PDF states {other}'s count: {phrase}"
                    );
                }
            }
        }
        assert!(
            count_phrases(counts[&region])
                .iter()
                .any(|p| pdf.contains(p)),
            "{region}'s PDF states its own count of paying companies"
        );
        shown += own
            .iter()
            .filter(|name| pdf.contains(&squash(name)))
            .count();
    }

    assert!(shown > 0, "no PDF names a company of its own region");

    // Written for every region found, LATAM too; history lists the regions.
    let period_dir = std::fs::read_dir(s.dir.path().join("out/regional"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.is_dir())
        .unwrap();
    for region in ["amer", "emea", "apac", "cn", "latam"] {
        assert!(
            period_dir.join(region).join("summary.json").exists(),
            "{region}"
        );
    }
    let h = cx(&s, &["history", "--job", "regional"]);
    assert!(h.status.success(), "{}", text(&h));
    let h = text(&h);
    assert!(h.contains("written, no recipients: LATAM"), "{h}");
    assert!(h.contains("cn zh cx-china@example.com"), "{h}");
    assert!(h.contains("region CN [cn]:"), "{h}");

    // Every delivery of every region sent: the next run renders nothing again.
    let again = run_job(&s);
    assert!(again.status.success(), "{}", text(&again));
    assert!(text(&again).contains("up to date"), "{}", text(&again));
    assert_eq!(server.accepted(), 6);
}

/// How an edition states its count of paying companies, in both languages,
/// without whitespace.
fn count_phrases(count: usize) -> [String; 2] {
    [
        format!("of{count}payingcompanies"),
        format!("付费公司{count}家"),
    ]
}

/// The paying companies of each region, as the editions count their population.
fn paying_counts() -> BTreeMap<String, usize> {
    let c = rusqlite::Connection::open(demo_db()).unwrap();
    let mut stmt = c
        .prepare("SELECT upper(trim(region)), count(*) FROM intercom__company_enhanced WHERE monthly_spend > 0 GROUP BY 1")
        .unwrap();
    let rows = stmt
        .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
        .unwrap()
        .map(|r| {
            let (region, n) = r.unwrap();
            (region, usize::try_from(n).unwrap())
        })
        .collect();
    rows
}

#[test]
fn one_regions_refused_delivery_leaves_the_others_delivered_and_retry_region_sends_it() {
    // The first message (the largest region's, AMER) is refused for good.
    let server = smtp_server(&[550], None);
    let s = setup(server.port, "tag_prefix = \"region:\"");
    let o = run_job(&s);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    // The tags spell the regions in lower case (`region:amer`): so do the editions.
    assert!(
        text(&o).contains("region amer: delivery of amer en to amer@example.com given up"),
        "{}",
        text(&o)
    );
    let delivered: BTreeSet<String> = server
        .state
        .lock()
        .unwrap()
        .accepted
        .iter()
        .map(|m| m.to[0].clone())
        .collect();
    let others: BTreeSet<String> = RECIPIENTS
        .iter()
        .filter(|(r, _, _)| *r != "AMER")
        .flat_map(|(_, _, to)| to.iter().map(|a| (*a).to_owned()))
        .collect();
    assert_eq!(delivered, others, "every other region delivered");

    // retry of another region has nothing to send; of AMER, its one delivery.
    let period = std::fs::read_dir(s.dir.path().join("out/regional"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .next()
        .unwrap();
    let r = cx(
        &s,
        &[
            "retry", "--job", "regional", "--period", &period, "--region", "mars",
        ],
    );
    assert_eq!(r.status.code(), Some(2), "{}", text(&r));
    assert!(
        text(&r).contains("no delivery of region `mars`"),
        "{}",
        text(&r)
    );
    let r = cx(&s, &["retry", "--job", "regional", "--region", "AMER"]);
    assert!(r.status.success(), "{}", text(&r));
    assert!(
        text(&r).contains("(region amer): 1 delivery(ies) to retry, 1 sent"),
        "{}",
        text(&r)
    );
    let state = server.state.lock().unwrap();
    assert_eq!(state.accepted.len(), others.len() + 1);
    let last = state.accepted.last().unwrap();
    assert_eq!(last.to, ["amer@example.com"]);
    assert!(header(&last.raw, "Subject").ends_with(" — amer"));
}

#[test]
fn check_lists_the_regions_found_and_refuses_recipients_no_company_holds() {
    let server = smtp_server(&[], None);
    let s = setup(server.port, "column = \"region\"");
    let o = cx(&s, &["check"]);
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(
        out.contains("burst by the column `region`: 5 value(s) found"),
        "{out}"
    );
    assert!(out.contains("cn: "), "{out}");
    assert!(out.contains("mailed: zh to 2"), "{out}");
    assert!(out.contains("written, no recipients: latam"), "{out}");

    let text_of = std::fs::read_to_string(&s.config).unwrap();
    std::fs::write(
        &s.config,
        format!("{text_of}[job.burst.recipients.mars]\nen = [\"mars@example.com\"]\n"),
    )
    .unwrap();
    let o = cx(&s, &["check"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let out = text(&o);
    assert!(
        out.contains("burst.recipients.mars: no company holds `mars` under the column `region` (the values found: `amer` ("),
        "{out}"
    );
    assert_eq!(server.accepted(), 0, "check sends nothing");
}
