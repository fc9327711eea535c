//! The demo database generator (`cxreport demo-data`): every table of the data contract,
//! deterministic for a seed, calibrated to §8 of the conversation-usage spec and to the
//! customer-segmentation reference figures, with the awkward cases real exports have
//! (missing tags, a duplicate company name, non-paying companies, conversations never
//! closed or never answered, timestamps with offsets, contacts of two companies).
//!
//! Why this file is long (about 1,000 lines): the generator is one calibrated pass whose
//! constants (counts per segment, seat and ARR bucket, months, response times) and table
//! writers are tuned together against the calibration test; the profile tables (`users`)
//! and `--describe` (`describe`) live apart because they are independent of it.
//!
//! Each table draws from its own random stream, so changing one table's generation
//! does not move the numbers of another.

mod describe;
pub mod postgres;
mod users;

pub use describe::describe;
use std::collections::HashSet;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Datelike, Duration, NaiveDate, TimeZone, Utc};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rusqlite::{params, Connection};

use crate::intercom::slices::{ARR_BUCKETS, SEAT_BUCKETS, SEGMENTS};

const SCHEMA: &str = include_str!("sql/schema.sql");

pub const DEFAULT_SEED: u64 = 97;
/// Bumped whenever the generated content changes, so cached demo databases refresh.
pub const GENERATOR_VERSION: u32 = 4;
/// The SQLite header's `application_id` of a database this generator wrote ("cxrd"):
/// how `demo-data` knows a file it may replace without `--force`. In the header, so no
/// table the reports read changes.
pub const APPLICATION_ID: i32 = 0x6378_7264;

/// The known change `--plant-change` makes: from 2024-04-01 every second bot-first
/// conversation is answered by a person first, and the topic `Bug` of every second
/// conversation becomes `Outage`; volumes, times and every other figure stay as
/// generated, so the bot-first share falls between a period before the date and one
/// after it, overall and in every segment, and at-risk companies' Bug share falls
/// while their Outage share rises.
pub const PLANTED_CHANGE: &str = "UPDATE intercom__conversation_enhanced \
     SET all_conversation_tags = replace(all_conversation_tags, 'first_response:bot', 'first_response:human') \
     WHERE conversation_created_at >= '2024-04-01' AND rowid % 2 = 0; \
     UPDATE intercom__conversation_enhanced \
     SET all_conversation_tags = replace(all_conversation_tags, 'Bug', 'Outage') \
     WHERE conversation_created_at >= '2024-04-01' AND rowid % 2 = 0;";

/// The statements of `--history-from`: everything timed before `from` goes. Times are
/// compared as instants (`julianday` reads the mixed text forms, offsets included),
/// the metrics rows first, while their conversations still say which they are.
fn history_cut(from: NaiveDate) -> String {
    let at = from.format("%Y-%m-%d 00:00:00");
    format!(
        "DELETE FROM intercom__conversation_metrics WHERE conversation_id IN \
         (SELECT conversation_id FROM intercom__conversation_enhanced \
          WHERE julianday(conversation_created_at) < julianday('{at}')); \
         DELETE FROM intercom__conversation_enhanced \
          WHERE julianday(conversation_created_at) < julianday('{at}'); \
         DELETE FROM usage_events WHERE julianday(occurred_at) < julianday('{at}'); \
         DELETE FROM events WHERE julianday(event_time) < julianday('{at}');"
    )
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DemoOptions {
    pub seed: u64,
    pub scale: u32,
    pub usage_events: bool,
    /// Plant [`PLANTED_CHANGE`].
    pub plant_change: bool,
    /// Drop every conversation (with its metrics row) and every usage and user event
    /// before this date (UTC), as a source whose history starts there: a window
    /// reaching before it is only partly covered. Companies and contacts stay.
    pub history_from: Option<NaiveDate>,
}

impl Default for DemoOptions {
    fn default() -> Self {
        Self {
            seed: DEFAULT_SEED,
            scale: 1,
            usage_events: true,
            plant_change: false,
            history_from: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("writing the demo database {path}: {cause}")]
    Sqlite {
        path: PathBuf,
        cause: rusqlite::Error,
    },
    #[error("writing the demo database {path}: {cause}")]
    Io {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("--scale must be between 1 and 1000, got {0}")]
    Scale(u32),
}

impl crate::exit::Classify for DemoError {
    /// A scale out of range is the user's; writing the file failed otherwise.
    fn exit(&self) -> crate::exit::Exit {
        use crate::exit::Exit;
        match self {
            Self::Scale(_) => Exit::Usage,
            Self::Sqlite { .. } | Self::Io { .. } => Exit::Failed,
        }
    }
}

// Calibration targets (spec §8), per unit of scale.
const SEGMENT_COUNTS: [usize; 4] = [628, 627, 627, 627];
const SEAT_COUNTS: [usize; 5] = [378, 536, 671, 464, 460];
const ARR_COUNTS: [usize; 5] = [579, 525, 436, 630, 339];
/// Conversations per month, 2024-01 (from the 8th) to 2024-06 (to the 15th, noon).
const MONTH_CONVERSATIONS: [usize; 6] = [992, 1218, 1302, 1260, 1302, 629];
const UNTAGGED_PAYING: usize = 12;
/// The demo's regions (the `region` column's values) and their weights: each holds
/// a few hundred companies, China (`CN`) one of them.
const REGIONS: [(&str, u32); 5] = [
    ("AMER", 34),
    ("EMEA", 26),
    ("APAC", 16),
    ("CN", 14),
    ("LATAM", 10),
];
/// The random stream of the regions, apart from every other value's.
const REGION_STREAM: u64 = 32;
const NON_PAYING: usize = 70;

const SEAT_RANGES: [(i64, i64); 5] = [(5, 59), (60, 129), (130, 259), (260, 419), (420, 1200)];
const ARR_RANGES: [(f64, f64); 5] = [
    (6_000.0, 29_900.0),
    (30_100.0, 64_900.0),
    (65_100.0, 109_900.0),
    (110_100.0, 199_900.0),
    (200_100.0, 420_000.0),
];

const NAME_PREFIXES: [&str; 40] = [
    "Apex", "Blue", "Bright", "Cedar", "Clear", "Coast", "Copper", "Crest", "Delta", "East",
    "Ember", "Falcon", "First", "Granite", "Green", "Harbor", "Iron", "Juniper", "Keystone",
    "Lake", "Lumen", "Maple", "Meridian", "Nova", "Oak", "Orbit", "Pine", "Pioneer", "Quartz",
    "Red", "River", "Silver", "Solar", "Summit", "Tidal", "Union", "Vertex", "West", "Willow",
    "Zenith",
];
const NAME_NOUNS: [&str; 30] = [
    "Analytics",
    "Bank",
    "Bio",
    "Capital",
    "Cloud",
    "Data",
    "Designs",
    "Dynamics",
    "Energy",
    "Foods",
    "Freight",
    "Goods",
    "Health",
    "Homes",
    "Industries",
    "Labs",
    "Logistics",
    "Media",
    "Metals",
    "Networks",
    "Partners",
    "Pharma",
    "Robotics",
    "Retail",
    "Security",
    "Software",
    "Studios",
    "Supply",
    "Textiles",
    "Works",
];
const NAME_SUFFIXES: [&str; 8] = ["Inc", "LLC", "Ltd", "Group", "Co", "GmbH", "Corp", "PLC"];
const DUPLICATE_NAME: &str = "North Systems Ltd";

const INDUSTRIES: [&str; 8] = [
    "Software",
    "Retail",
    "Healthcare",
    "Finance",
    "Manufacturing",
    "Logistics",
    "Education",
    "Media",
];
const TEAMS: [&str; 4] = [
    "Support Tier 1",
    "Support Tier 2",
    "Onboarding",
    "Customer Success",
];
const RISK_TOPICS: [&str; 4] = ["Bug", "Outage", "Escalation", "Downgrade Risk"];
const GROWTH_TOPICS: [&str; 3] = ["Upgrade", "Feature Feedback", "Implementation"];
const COMMON_TOPICS: [&str; 6] = [
    "Billing",
    "How-to",
    "Integration",
    "Account Access",
    "Onboarding",
    "Data Export",
];
const CORE_EVENTS: [&str; 3] = ["report_created", "dashboard_viewed", "workflow_run"];
const FEATURE_EVENTS: [&str; 3] = [
    "integration_connected",
    "export_downloaded",
    "automation_enabled",
];
const USER_EVENT_TYPES: [&str; 11] = [
    "login",
    "lease_signed",
    "rent_payment_received",
    "maintenance_request_created",
    "tenant_added",
    "report_generated",
    "feature_adopted",
    "training_attended",
    "nps_response_submitted",
    "support_ticket_created",
    "subscription_cancelled",
];

struct Company {
    id: String,
    name: String,
    segment: Option<usize>,
    seat: usize,
    arr: usize,
    monthly_spend: Option<f64>,
    user_count: i64,
    tags: String,
    /// The `region` pass-through column's value (`region:` tags carry it in lower
    /// case).
    region: &'static str,
    ret7: f64,
    ret30: f64,
    churn_watch_tag: bool,
    expansion_tag: bool,
    /// Relative conversation volume.
    activity: f64,
    contacts: Vec<usize>,
}

struct Contact {
    id: String,
    company: usize,
    second_company: Option<usize>,
    name: String,
}

struct Conversation {
    company: usize,
    contact: usize,
    created: DateTime<Utc>,
    close: Option<DateTime<Utc>>,
    response: Option<i64>,
}

fn rng(seed: u64, stream: u64) -> ChaCha8Rng {
    let mut r = ChaCha8Rng::seed_from_u64(seed);
    r.set_stream(stream);
    r
}

fn normal(r: &mut ChaCha8Rng) -> f64 {
    // Box–Muller; one draw is enough here.
    let u1: f64 = r.gen_range(f64::EPSILON..1.0);
    let u2: f64 = r.gen();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

fn utc(y: i32, m: u32, d: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, m, d, 0, 0, 0)
        .single()
        .expect("valid date")
}

/// Assigns bucket indexes to items ranked by `score`, lowest scores to bucket 0,
/// with exactly `counts[b]` items per bucket.
fn rank_buckets(scores: &[f64], counts: &[usize]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    let mut out = vec![0; scores.len()];
    let mut it = order.into_iter();
    for (b, &n) in counts.iter().enumerate() {
        for i in it.by_ref().take(n) {
            out[i] = b;
        }
    }
    out
}

/// Writes the demo database to `path` atomically (a temporary file renamed at the end).
pub fn generate(path: &Path, opts: &DemoOptions) -> Result<(), DemoError> {
    if !(1..=1000).contains(&opts.scale) {
        return Err(DemoError::Scale(opts.scale));
    }
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let io = |source| DemoError::Io {
        path: path.to_owned(),
        cause: source,
    };
    std::fs::create_dir_all(dir).map_err(io)?;
    // 0666 less the umask, as any file the user writes: tempfile's own default (0600)
    // would make a demo database shared in a team folder unreadable to the team.
    let tmp = tempfile::Builder::new()
        .prefix(".cxreport-demo-")
        .suffix(".sqlite")
        .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o666))
        .tempfile_in(dir)
        .map_err(io)?;
    let sql = |source| DemoError::Sqlite {
        path: path.to_owned(),
        cause: source,
    };
    {
        let mut conn = Connection::open(tmp.path()).map_err(sql)?;
        conn.execute_batch("PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF;")
            .map_err(sql)?;
        conn.execute_batch(SCHEMA).map_err(sql)?;
        let txn = conn.transaction().map_err(sql)?;
        crate::progress::stage("generating companies, contacts and conversations");
        Generator::new(opts).write(&txn).map_err(sql)?;
        if opts.plant_change {
            txn.execute_batch(PLANTED_CHANGE).map_err(sql)?;
        }
        if let Some(from) = opts.history_from {
            txn.execute_batch(&history_cut(from)).map_err(sql)?;
        }
        txn.commit().map_err(sql)?;
        crate::progress::stage("compacting the file");
        conn.execute_batch(&format!("PRAGMA application_id = {APPLICATION_ID}; VACUUM"))
            .map_err(sql)?;
    }
    tmp.persist(path).map_err(|e| io(e.error))?;
    Ok(())
}

/// Whether `path` holds a SQLite database this generator wrote (its header's
/// `application_id` is [`APPLICATION_ID`]). Read from the header's bytes, so a file
/// that is not SQLite at all is never opened as a database.
pub fn written_by_demo(path: &Path) -> std::io::Result<bool> {
    use std::io::Read;
    let mut header = [0u8; 72];
    let mut f = std::fs::File::open(path)?;
    let mut n = 0;
    while n < header.len() {
        match f.read(&mut header[n..])? {
            0 => return Ok(false),
            k => n += k,
        }
    }
    Ok(header.starts_with(b"SQLite format 3\0") && header[68..72] == APPLICATION_ID.to_be_bytes())
}

struct Generator {
    opts: DemoOptions,
    companies: Vec<Company>,
    contacts: Vec<Contact>,
    conversations: Vec<Conversation>,
}

impl Generator {
    fn new(opts: &DemoOptions) -> Self {
        let mut g = Self {
            opts: *opts,
            companies: Vec::new(),
            contacts: Vec::new(),
            conversations: Vec::new(),
        };
        g.make_companies();
        g.make_contacts();
        g.make_conversations();
        g
    }

    fn make_companies(&mut self) {
        let k = self.opts.scale as usize;
        let mut r = rng(self.opts.seed, 1);
        let n: usize = SEGMENT_COUNTS.iter().sum::<usize>() * k;
        // Seats and ARR both follow a latent company size, so big accounts pay more.
        let size: Vec<f64> = (0..n).map(|_| normal(&mut r)).collect();
        let seat_scores: Vec<f64> = size.iter().map(|z| z + 0.9 * normal(&mut r)).collect();
        let arr_scores: Vec<f64> = size.iter().map(|z| z + 0.9 * normal(&mut r)).collect();
        let seats = rank_buckets(&seat_scores, &SEAT_COUNTS.map(|c| c * k));
        let arrs = rank_buckets(&arr_scores, &ARR_COUNTS.map(|c| c * k));
        let mut segments: Vec<usize> = SEGMENT_COUNTS
            .iter()
            .enumerate()
            .flat_map(|(s, &c)| std::iter::repeat_n(s, c * k))
            .collect();
        segments.shuffle(&mut r);

        let mut names = NameMaker::default();
        let total = n + (UNTAGGED_PAYING + NON_PAYING) * k;
        for i in 0..total {
            let id = format!("co_{:06}", i + 1);
            let name = names.next(&mut r);
            let (segment, seat, arr, paying) = if i < n {
                (Some(segments[i]), seats[i], arrs[i], true)
            } else {
                let seat = r.gen_range(0..5);
                let arr = r.gen_range(0..5);
                (None, seat, arr, i < n + UNTAGGED_PAYING * k)
            };
            let (lo, hi) = SEAT_RANGES[seat];
            let user_count = r.gen_range(lo..=hi);
            let (alo, ahi) = ARR_RANGES[arr];
            let arr_value: f64 = r.gen_range(alo..ahi);
            let monthly_spend = if paying {
                Some((arr_value / 12.0 * 100.0).round() / 100.0)
            } else if r.gen_bool(0.5) {
                Some(0.0)
            } else {
                None
            };
            let (ret7, ret30) = retention_targets(segment, seat, &mut r);
            let churn_watch_tag = match segment {
                Some(3) => r.gen_bool(0.85),
                Some(_) => r.gen_bool(0.03),
                None => false,
            };
            let expansion_tag = match segment {
                Some(2) => r.gen_bool(0.85),
                Some(3) => r.gen_bool(0.02),
                Some(_) => r.gen_bool(0.04),
                None => false,
            };
            let mut tags = Vec::new();
            if let Some(s) = segment {
                tags.push(format!("segment:{}", SEGMENTS[s]));
                // A few companies lost a bucket tag: the fallback has to recover it.
                if !r.gen_bool(0.015) {
                    tags.push(format!("seat_bucket:seats:{}", SEAT_BUCKETS[seat]));
                }
                if !r.gen_bool(0.015) {
                    tags.push(format!("arr_bucket:arr:{}", ARR_BUCKETS[arr]));
                }
            }
            if churn_watch_tag {
                tags.push("Churn Watch".into());
            }
            if expansion_tag {
                tags.push("Expansion Target".into());
            }
            if r.gen_bool(0.1) {
                tags.push(["VIP", "Beta Program", "Partner"][r.gen_range(0..3)].into());
            }
            tags.shuffle(&mut r);
            self.companies.push(Company {
                id,
                name,
                segment,
                seat,
                arr,
                monthly_spend,
                user_count,
                tags: tags.join(", "),
                region: "",
                ret7,
                ret30,
                churn_watch_tag,
                expansion_tag,
                activity: 0.75 + r.gen::<f64>() * 0.5,
                contacts: Vec::new(),
            });
        }
        // The duplicate name of the reference data: two paying under_30k companies.
        let under_30k: Vec<usize> = (0..n).filter(|&i| self.companies[i].arr == 0).collect();
        for (&i, spend) in under_30k.iter().take(2).zip([1737.0, 2045.0]) {
            self.companies[i].name = DUPLICATE_NAME.into();
            self.companies[i].monthly_spend = Some(spend);
        }
        self.assign_regions();
    }

    /// Each company's region, from a stream of its own, so that every other value
    /// of the demo (and every unscoped report's number) is what it was before
    /// regions: the `region` column as a custom attribute arrives (`CN`, `EMEA`),
    /// and the same as a `region:` tag (`region:cn`), appended after the others.
    fn assign_regions(&mut self) {
        let mut r = rng(self.opts.seed, REGION_STREAM);
        let total: u32 = REGIONS.iter().map(|(_, w)| w).sum();
        for c in &mut self.companies {
            let mut pick = r.gen_range(0..total);
            let region = REGIONS
                .iter()
                .find(|(_, w)| {
                    let hit = pick < *w;
                    pick = pick.saturating_sub(*w);
                    hit
                })
                .map_or(REGIONS[0].0, |(name, _)| *name);
            c.region = region;
            let tag = format!("region:{}", region.to_lowercase());
            c.tags = if c.tags.is_empty() {
                tag
            } else {
                format!("{}, {tag}", c.tags)
            };
        }
    }

    fn make_contacts(&mut self) {
        let mut r = rng(self.opts.seed, 2);
        let n_companies = self.companies.len();
        for ci in 0..n_companies {
            for _ in 0..r.gen_range(1..=4) {
                let idx = self.contacts.len();
                let second = r
                    .gen_bool(0.03)
                    .then(|| r.gen_range(0..n_companies))
                    .filter(|&o| o != ci);
                self.contacts.push(Contact {
                    id: format!("ct_{:07}", idx + 1),
                    company: ci,
                    second_company: second,
                    name: format!(
                        "{} {}",
                        [
                            "Alex", "Sam", "Jordan", "Taylor", "Morgan", "Casey", "Riley", "Jamie",
                            "Wei", "Li Na"
                        ][r.gen_range(0..10)],
                        [
                            "Smith", "Chen", "Garcia", "Müller", "Khan", "Okafor", "Silva", "Wang",
                            "Novak", "Sato"
                        ][r.gen_range(0..10)]
                    ),
                });
                self.companies[ci].contacts.push(idx);
            }
        }
    }

    fn make_conversations(&mut self) {
        let k = self.opts.scale as usize;
        let mut r = rng(self.opts.seed, 3);
        // Cumulative activity weights for picking a company per conversation.
        let mut cum = Vec::with_capacity(self.companies.len());
        let mut acc = 0.0;
        for c in &self.companies {
            acc += c.activity
                * if c.monthly_spend.is_some_and(|s| s > 0.0) {
                    1.0
                } else {
                    0.25
                };
            cum.push(acc);
        }
        let month_starts = [
            utc(2024, 1, 8),
            utc(2024, 2, 1),
            utc(2024, 3, 1),
            utc(2024, 4, 1),
            utc(2024, 5, 1),
            utc(2024, 6, 1),
        ];
        let last = Utc
            .with_ymd_and_hms(2024, 6, 15, 12, 0, 0)
            .single()
            .expect("valid");
        for (m, &count) in MONTH_CONVERSATIONS.iter().enumerate() {
            let start = month_starts[m];
            let end = if m + 1 < 6 { month_starts[m + 1] } else { last };
            let span = (end - start).num_seconds();
            for j in 0..count * k {
                let created = if m == 5 && j == 0 {
                    last
                } else {
                    start + Duration::seconds(r.gen_range(0..span))
                };
                let x = r.gen::<f64>() * acc;
                let company = cum
                    .partition_point(|&c| c < x)
                    .min(self.companies.len() - 1);
                let contacts = &self.companies[company].contacts;
                let contact = contacts[r.gen_range(0..contacts.len())];
                let closed = r.gen_bool(0.91);
                let response = (!r.gen_bool(0.02)).then(|| response_minutes(&mut r));
                // Whole minutes; the inbox auto-closes at 20 h, and nothing closes in
                // under 20 minutes (ties at both ends, as in real exports).
                let close = closed.then(|| {
                    let minutes =
                        (140.0 * normal(&mut r).exp()).round().clamp(20.0, 1_200.0) as i64;
                    created + Duration::minutes(minutes)
                });
                self.conversations.push(Conversation {
                    company,
                    contact,
                    created,
                    close,
                    response,
                });
            }
        }
        self.conversations.sort_by_key(|c| c.created);
    }

    fn write(&self, txn: &rusqlite::Transaction<'_>) -> rusqlite::Result<()> {
        let converted = self.pick_converted();
        let writing = |n: usize, what: &str| crate::progress::stage(&format!("writing {n} {what}"));
        writing(self.companies.len(), "companies");
        self.write_companies(txn)?;
        writing(self.contacts.len(), "contacts");
        self.write_contacts(txn, &converted)?;
        writing(self.conversations.len(), "conversations");
        self.write_conversations(txn)?;
        if self.opts.usage_events {
            crate::progress::stage("writing usage events");
            self.write_usage_events(txn, &converted)?;
        } else {
            // The schema creates it; an empty table would still make `auto` choose
            // the events source.
            txn.execute_batch("DROP TABLE usage_events")?;
        }
        crate::progress::stage("writing users and events");
        users::write_users_and_events(txn, self.opts.seed)?;
        Ok(())
    }

    /// Companies whose conversations lead to a feature event within 72 h, with the
    /// conversation (index) that does. Quotas per cell follow §8's conversion range.
    fn pick_converted(&self) -> Vec<Option<usize>> {
        let mut r = rng(self.opts.seed, 4);
        let mut closed_by_company: Vec<Vec<usize>> = vec![Vec::new(); self.companies.len()];
        for (i, c) in self.conversations.iter().enumerate() {
            // Only typical conversations, so the P1/P99 exclusion does not undo the pick.
            let typical = c.response.is_some_and(|m| (16..=36).contains(&m))
                && c.close
                    .is_some_and(|cl| (cl - c.created).num_minutes() < 600);
            if typical {
                closed_by_company[c.company].push(i);
            }
        }
        let mut out = vec![None; self.companies.len()];
        let mut cells: std::collections::BTreeMap<(usize, usize, usize), Vec<usize>> =
            Default::default();
        for (ci, c) in self.companies.iter().enumerate() {
            if let (Some(s), true) = (c.segment, !closed_by_company[ci].is_empty()) {
                cells.entry((s, c.seat, c.arr)).or_default().push(ci);
            }
        }
        for ((s, seat, arr), mut members) in cells {
            let rate = match (s, seat, arr) {
                (0, 3, 3) => 0.06,
                (3, 4, 4) => 0.022,
                _ => [0.034, 0.03, 0.026, 0.028][s] + [0.002, 0.0, 0.002, 0.006, -0.006][seat],
            };
            let quota = (rate * members.len() as f64).round() as usize;
            members.shuffle(&mut r);
            for &ci in members.iter().take(quota) {
                let convs = &closed_by_company[ci];
                out[ci] = Some(convs[r.gen_range(0..convs.len())]);
            }
        }
        out
    }

    fn write_companies(&self, txn: &rusqlite::Transaction<'_>) -> rusqlite::Result<()> {
        let mut r = rng(self.opts.seed, 5);
        let mut closed = vec![0i64; self.companies.len()];
        for c in &self.conversations {
            closed[c.company] += i64::from(c.close.is_some());
        }
        let mut enhanced = txn.prepare(
            "INSERT INTO intercom__company_enhanced (company_id, company_name, created_at, all_company_tags, monthly_spend, user_count, session_count, plan_name, industry, region) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10)",
        )?;
        let mut metrics = txn.prepare(
            "INSERT INTO intercom__company_metrics (company_id, company_name, created_at, all_company_tags, monthly_spend, user_count, session_count, plan_name, industry, total_conversations_closed, average_conversation_rating, median_time_to_first_response_time_minutes, registration_retention_7d, registration_retention_30d) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14)",
        )?;
        for (i, c) in self.companies.iter().enumerate() {
            let created = utc(2019, 1, 1) + Duration::seconds(r.gen_range(0..5 * 365 * 86_400));
            let plan = ["Starter", "Growth", "Pro", "Business", "Enterprise"][c.arr];
            let industry = INDUSTRIES[r.gen_range(0..INDUSTRIES.len())];
            let sessions = c.user_count * r.gen_range(5..40);
            let created = created.format("%Y-%m-%d %H:%M:%S").to_string();
            enhanced.execute(params![
                c.id,
                c.name,
                created,
                c.tags,
                c.monthly_spend,
                c.user_count,
                sessions,
                plan,
                industry,
                c.region
            ])?;
            let rating = (3.2 + r.gen::<f64>() * 1.6 * 100.0).round() / 100.0;
            let median_resp = 20.0 + r.gen_range(0..12) as f64;
            // One company's retention cells are empty: the proxy mean skips NULLs.
            let (r7, r30) = if i == 7 {
                (None, None)
            } else {
                (Some(c.ret7), Some(c.ret30))
            };
            metrics.execute(params![
                c.id,
                c.name,
                created,
                c.tags,
                c.monthly_spend,
                c.user_count,
                sessions,
                plan,
                industry,
                closed[i],
                rating,
                median_resp,
                r7,
                r30
            ])?;
        }
        Ok(())
    }

    fn write_contacts(
        &self,
        txn: &rusqlite::Transaction<'_>,
        converted: &[Option<usize>],
    ) -> rusqlite::Result<()> {
        let mut r = rng(self.opts.seed, 6);
        // Each company's closes, to keep non-converting activity clear of the 72 h windows.
        let mut last_close: Vec<Option<DateTime<Utc>>> = vec![None; self.companies.len()];
        let mut first_created: Vec<Option<DateTime<Utc>>> = vec![None; self.companies.len()];
        for c in &self.conversations {
            if let Some(cl) = c.close {
                last_close[c.company] = Some(last_close[c.company].map_or(cl, |l| l.max(cl)));
            }
            first_created[c.company].get_or_insert(c.created);
        }
        let mut stmt =
            txn.prepare("INSERT INTO intercom__contact_enhanced (contact_id, contact_name, contact_email, created_at, signed_up_at, all_contact_company_names, last_activity_ts, all_contact_tags) VALUES (?1,?2,?3,?4,?5,?6,?7,?8)")?;
        let mut converter_written = vec![false; self.companies.len()];
        for ct in &self.contacts {
            let co = &self.companies[ct.company];
            let names = match ct.second_company {
                Some(o) => format!("{}, {}", co.name, self.companies[o].name),
                None => co.name.clone(),
            };
            let last_activity = match converted[ct.company] {
                Some(conv) if !converter_written[ct.company] => {
                    converter_written[ct.company] = true;
                    let close = self.conversations[conv]
                        .close
                        .expect("converted conversations are closed");
                    close + Duration::seconds(r.gen_range(3_600..70 * 3_600))
                }
                _ => match (first_created[ct.company], last_close[ct.company]) {
                    // Either before the first conversation or well after the last close.
                    (Some(first), Some(last)) => {
                        if r.gen_bool(0.5) {
                            first - Duration::hours(r.gen_range(1..2_000))
                        } else {
                            last + Duration::hours(r.gen_range(80..2_000))
                        }
                    }
                    (Some(first), None) => first - Duration::hours(r.gen_range(1..2_000)),
                    _ => utc(2023, 6, 1) + Duration::seconds(r.gen_range(0..360 * 86_400)),
                },
            };
            let created = utc(2020, 1, 1) + Duration::seconds(r.gen_range(0..3 * 365 * 86_400));
            let email = format!("{}@{}.example", ct.id, co.id.replace('_', ""));
            let tags = if r.gen_bool(0.2) {
                "Admin, Champion"
            } else {
                ""
            };
            stmt.execute(params![
                ct.id,
                ct.name,
                email,
                fmt_ts(created, &mut r),
                fmt_ts(created + Duration::days(r.gen_range(0..30)), &mut r),
                names,
                fmt_ts(last_activity, &mut r),
                tags
            ])?;
        }
        Ok(())
    }

    fn write_conversations(&self, txn: &rusqlite::Transaction<'_>) -> rusqlite::Result<()> {
        let mut r = rng(self.opts.seed, 7);
        // Bot-first decided per cell by an accumulator (share ≈ target ± 1/n), from a
        // random phase, so small cells do not scatter far from the target.
        let mut bot_acc: std::collections::HashMap<(Option<usize>, usize, usize), f64> =
            Default::default();
        let mut conv = txn.prepare(
            "INSERT INTO intercom__conversation_enhanced (conversation_id, conversation_created_at, conversation_last_updated_at, conversation_type, conversation_initiated_type, conversation_author_type, conversation_assignee_type, conversation_state, conversation_subject, all_conversation_tags, all_conversation_contacts, all_contact_company_names, first_close_at, last_close_at, conversation_rating, first_team_name, last_team_name) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15,?16,?17)",
        )?;
        let mut metrics = txn
            .prepare("INSERT INTO intercom__conversation_metrics (conversation_id, first_admin_response_at, time_to_first_response_minutes, time_to_last_close_minutes, count_reopens, count_total_parts, count_assignments) VALUES (?1,?2,?3,?4,?5,?6,?7)")?;
        for (i, c) in self.conversations.iter().enumerate() {
            let id = format!("cv_{:08}", i + 1);
            let co = &self.companies[c.company];
            let ct = &self.contacts[c.contact];
            // Bot-first share by segment (§8: ≈0.332 overall), nudged by seat bucket.
            let seg_bot = co.segment.map_or(0.33, |s| [0.333, 0.315, 0.317, 0.343][s]);
            let target = seg_bot + [-0.02, -0.005, 0.0, 0.02, 0.01][co.seat];
            let phase: f64 = r.gen();
            let acc = bot_acc
                .entry((co.segment, co.seat, co.arr))
                .or_insert(phase);
            *acc += target;
            let bot = *acc >= 1.0;
            if bot {
                *acc -= 1.0;
            }
            // Intercom's own vocabulary, as dbt_intercom builds it (the reference
            // dataset's `contact_inbound`, `bot_follow_up`, `admin_outbound` and author
            // `contact` mean the same to the reports).
            let via_tag = r.gen_bool(0.4);
            let (initiated, author) = if bot && !via_tag {
                if r.gen_bool(0.45) {
                    (
                        "operator_initiated",
                        if r.gen_bool(0.5) { "bot" } else { "user" },
                    )
                } else {
                    ("customer_initiated", "bot")
                }
            } else {
                // Human-first (or decided by the tag): any non-bot shape; with the tag,
                // the fields sometimes disagree, and the tag must win.
                let roll: f64 = r.gen();
                if via_tag && roll < 0.08 {
                    ("operator_initiated", "bot")
                } else if roll < 0.74 {
                    (
                        "customer_initiated",
                        ["user", "user", "lead"][r.gen_range(0..3)],
                    )
                } else {
                    ("admin_initiated", "admin")
                }
            };
            let team_routed = matches!(co.segment, Some(0) | Some(3));
            let assignee = match r.gen::<f64>() {
                x if x < 0.86 => Some(if team_routed { "team" } else { "admin" }),
                x if x < 0.96 => Some(if team_routed { "admin" } else { "team" }),
                _ => None,
            };
            let state = match c.close {
                Some(_) => "closed",
                None if r.gen_bool(0.7) => "open",
                None => "snoozed",
            };
            let mut tags = topic_tags(co, &mut r);
            if via_tag {
                tags.push(
                    if bot {
                        "first_response:bot"
                    } else {
                        "first_response:human"
                    }
                    .to_owned(),
                );
            }
            tags.shuffle(&mut r);
            let tags = if tags.is_empty() && r.gen_bool(0.5) {
                None
            } else {
                Some(tags.join(", "))
            };
            let subject = tags
                .as_deref()
                .and_then(|t| t.split(", ").find(|t| !t.contains(':')))
                .map_or("Question".to_owned(), |t| format!("{t} question"));
            let names = match ct.second_company {
                Some(o) => format!("{}, {}", co.name, self.companies[o].name),
                None => co.name.clone(),
            };
            let reopens = if c.close.is_some() && r.gen_bool(0.08) {
                r.gen_range(1..3)
            } else {
                0
            };
            let first_close = c.close.map(|cl| {
                if reopens > 0 {
                    c.created + (cl - c.created) / 2
                } else {
                    cl
                }
            });
            let rating = (c.close.is_some() && r.gen_bool(0.55)).then(|| rating(co, &mut r));
            let team = TEAMS[r.gen_range(0..TEAMS.len())];
            let updated = c.close.unwrap_or(c.created) + Duration::minutes(r.gen_range(0..120));
            conv.execute(params![
                id,
                fmt_ts(c.created, &mut r),
                fmt_ts(updated, &mut r),
                "conversation",
                initiated,
                author,
                assignee,
                state,
                subject,
                tags,
                format!("contact:{}", ct.id),
                names,
                first_close.map(|t| fmt_ts(t, &mut r)),
                c.close.map(|t| fmt_ts(t, &mut r)),
                rating,
                team,
                if reopens > 0 {
                    TEAMS[r.gen_range(0..TEAMS.len())]
                } else {
                    team
                },
            ])?;
            let first_response = c
                .response
                .map(|m| fmt_ts(c.created + Duration::minutes(m), &mut r));
            metrics.execute(params![
                id,
                first_response,
                c.response.map(|m| m as f64),
                c.close.map(|cl| (cl - c.created).num_minutes() as f64),
                reopens,
                r.gen_range(2..20),
                r.gen_range(1..4),
            ])?;
        }
        Ok(())
    }

    fn write_usage_events(
        &self,
        txn: &rusqlite::Transaction<'_>,
        converted: &[Option<usize>],
    ) -> rusqlite::Result<()> {
        let mut r = rng(self.opts.seed, 8);
        let mut closes: Vec<Vec<i64>> = vec![Vec::new(); self.companies.len()];
        for c in &self.conversations {
            if let Some(cl) = c.close {
                closes[c.company].push(cl.timestamp());
            }
        }
        for v in &mut closes {
            v.sort_unstable();
        }
        let in_conversion_window = |ci: usize, t: i64| {
            let v = &closes[ci];
            let i = v.partition_point(|&c| c < t);
            i > 0 && t - v[i - 1] <= 72 * 3_600
        };
        let mut stmt = txn.prepare("INSERT INTO usage_events VALUES (?1,?2,?3,?4,?5,?6)")?;
        let mut n = 0usize;
        let mut emit = |stmt: &mut rusqlite::Statement<'_>,
                        r: &mut ChaCha8Rng,
                        contact: &str,
                        company: &str,
                        name: &str,
                        core: bool,
                        t: DateTime<Utc>| {
            n += 1;
            stmt.execute(params![
                format!("ev_{n:09}"),
                contact,
                company,
                name,
                i64::from(core),
                fmt_ts(t, r)
            ])
        };
        let first_week = utc(2023, 11, 27); // a Monday
        let weeks = 29;
        for (ci, co) in self.companies.iter().enumerate() {
            if !co.monthly_spend.is_some_and(|s| s > 0.0) {
                continue;
            }
            // Month-level activity (monthly retention), then weeks inside active
            // months (weekly retention); an event lands only in an active month.
            let mut month_active = [false; 8]; // 2023-11 .. 2024-06
            month_active[0] = r.gen_bool(0.85);
            for m in 1..month_active.len() {
                month_active[m] = if month_active[m - 1] {
                    r.gen_bool(co.ret30.clamp(0.05, 0.98))
                } else {
                    r.gen_bool(0.5)
                };
            }
            let month_of = |t: DateTime<Utc>| {
                (t.year() as usize * 12 + t.month0() as usize).checked_sub(2023 * 12 + 10)
            };
            let mut week_active = false;
            for w in 0..weeks {
                let start = first_week + Duration::weeks(w);
                week_active = if week_active {
                    r.gen_bool((co.ret7 + 0.12).min(0.97))
                } else {
                    r.gen_bool(0.6)
                };
                if !week_active {
                    continue;
                }
                for _ in 0..r.gen_range(1..=2) {
                    let t = start + Duration::seconds(r.gen_range(0..7 * 86_400));
                    let month_ok = month_of(t)
                        .and_then(|m| month_active.get(m))
                        .copied()
                        .unwrap_or(false);
                    if !month_ok
                        || t > utc(2024, 6, 16)
                        || (converted[ci].is_none() && in_conversion_window(ci, t.timestamp()))
                    {
                        continue;
                    }
                    let contact = &self.contacts[co.contacts[r.gen_range(0..co.contacts.len())]].id;
                    let name = CORE_EVENTS[r.gen_range(0..3)];
                    emit(&mut stmt, &mut r, contact, &co.id, name, true, t)?;
                }
            }
            if let Some(conv) = converted[ci] {
                let c = &self.conversations[conv];
                let t =
                    c.close.expect("closed") + Duration::seconds(r.gen_range(3_600..70 * 3_600));
                let contact = &self.contacts[c.contact].id;
                let name = FEATURE_EVENTS[r.gen_range(0..3)];
                emit(&mut stmt, &mut r, contact, &co.id, name, false, t)?;
            }
        }
        Ok(())
    }
}

/// Whole minutes, as dbt_intercom computes them: median 25, P1 ≈ 11, P99 ≈ 42.
fn response_minutes(r: &mut ChaCha8Rng) -> i64 {
    let z = normal(r);
    let v = if z < 0.0 {
        25.0 + 5.9 * z
    } else {
        25.0 + 7.4 * z
    };
    v.round().max(1.0) as i64
}

/// Weekly and monthly retention proxies (§8): segment and seat effects add up.
fn retention_targets(segment: Option<usize>, seat: usize, r: &mut ChaCha8Rng) -> (f64, f64) {
    let seg7 = segment.map_or(0.0, |s| [-0.01, 0.04, 0.03, -0.07][s]);
    let seg30 = segment.map_or(0.0, |s| [-0.03, 0.06, 0.05, -0.125][s]);
    let seat7 = [0.09, 0.04, 0.0, -0.03, -0.07][seat];
    let seat30 = [0.13, 0.06, 0.0, -0.05, -0.13][seat];
    let w = (0.67 + seg7 + seat7 + 0.06 * (r.gen::<f64>() - 0.5)).clamp(0.0, 1.0);
    let m = (0.58 + seg30 + seat30 + 0.06 * (r.gen::<f64>() - 0.5)).clamp(0.0, 1.0);
    ((w * 1000.0).round() / 1000.0, (m * 1000.0).round() / 1000.0)
}

/// Topic tags: at-risk companies over-index on stability topics, expansion targets on
/// growth topics.
fn topic_tags(co: &Company, r: &mut ChaCha8Rng) -> Vec<String> {
    if r.gen_bool(0.05) {
        return Vec::new();
    }
    let risk = co.churn_watch_tag || co.segment == Some(3);
    let growth = co.expansion_tag || co.segment == Some(2);
    let (p_risk, p_growth) = match (risk, growth) {
        (true, false) => (0.45, 0.08),
        (false, true) => (0.08, 0.42),
        (true, true) => (0.3, 0.3),
        (false, false) => (0.15, 0.15),
    };
    let mut out: Vec<String> = Vec::new();
    for _ in 0..r.gen_range(1..=2) {
        let x: f64 = r.gen();
        let t = if x < p_risk {
            RISK_TOPICS[r.gen_range(0..RISK_TOPICS.len())]
        } else if x < p_risk + p_growth {
            GROWTH_TOPICS[r.gen_range(0..GROWTH_TOPICS.len())]
        } else {
            COMMON_TOPICS[r.gen_range(0..COMMON_TOPICS.len())]
        };
        if !out.iter().any(|o| o == t) {
            out.push(t.to_owned());
        }
    }
    out
}

fn rating(co: &Company, r: &mut ChaCha8Rng) -> i64 {
    let risk = co.churn_watch_tag || co.segment == Some(3);
    let weights: [f64; 5] = if risk {
        [0.12, 0.13, 0.25, 0.28, 0.22]
    } else {
        [0.04, 0.06, 0.18, 0.34, 0.38]
    };
    let x: f64 = r.gen();
    let mut acc = 0.0;
    for (i, w) in weights.iter().enumerate() {
        acc += w;
        if x < acc {
            return i as i64 + 1;
        }
    }
    5
}

/// Timestamp text as real exports mix it: mostly plain UTC, some ISO `T…Z`, some with
/// a +08:00 offset (the same instant).
fn fmt_ts(t: DateTime<Utc>, r: &mut ChaCha8Rng) -> String {
    match r.gen_range(0..100) {
        0..=2 => t.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        3..=5 => (t + Duration::hours(8))
            .format("%Y-%m-%dT%H:%M:%S+08:00")
            .to_string(),
        _ => t.format("%Y-%m-%d %H:%M:%S").to_string(),
    }
}

#[derive(Default)]
struct NameMaker {
    used: HashSet<String>,
}

impl NameMaker {
    fn next(&mut self, r: &mut ChaCha8Rng) -> String {
        loop {
            let base = format!(
                "{} {} {}",
                NAME_PREFIXES[r.gen_range(0..NAME_PREFIXES.len())],
                NAME_NOUNS[r.gen_range(0..NAME_NOUNS.len())],
                NAME_SUFFIXES[r.gen_range(0..NAME_SUFFIXES.len())]
            );
            // Past the 9,600 plain combinations (large scales), add a number.
            let name = if self.used.len() >= 9_000 {
                format!("{base} {}", r.gen_range(2..100_000))
            } else {
                base
            };
            if name != DUPLICATE_NAME && self.used.insert(name.clone()) {
                return name;
            }
        }
    }
}

/// First day of the demo data's months, for `--describe`.
pub fn demo_months() -> [NaiveDate; 6] {
    [1, 2, 3, 4, 5, 6].map(|m| NaiveDate::from_ymd_opt(2024, m, 1).expect("valid"))
}

/// Where the built-in demo database is cached: `$CXREPORT_CACHE_DIR`, else
/// `$XDG_CACHE_HOME/cxreport`, else `~/.cache/cxreport`.
pub fn cache_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("CXREPORT_CACHE_DIR") {
        return PathBuf::from(d);
    }
    if let Some(d) = std::env::var_os("XDG_CACHE_HOME") {
        return PathBuf::from(d).join("cxreport");
    }
    match std::env::var_os("HOME") {
        Some(h) => PathBuf::from(h).join(".cache").join("cxreport"),
        None => PathBuf::from(".cxreport-cache"),
    }
}

/// The demo database, generated once per generator version and reused.
pub fn demo_database(cache: &Path) -> Result<PathBuf, DemoError> {
    let path = cache.join(format!(
        "demo-v{}-seed{}.sqlite",
        GENERATOR_VERSION, DEFAULT_SEED
    ));
    if !path.is_file() {
        tracing::info!(path = %path.display(), "generating the demo database (once)");
        generate(&path, &DemoOptions::default())?;
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rank_buckets_hits_exact_counts_in_score_order() {
        let b = rank_buckets(&[0.5, 0.1, 0.9, 0.3, 0.7], &[2, 1, 2]);
        assert_eq!(b, [1, 0, 2, 0, 2]);
    }

    #[test]
    fn response_minutes_are_whole_and_centered_on_25() {
        let mut r = rng(1, 0);
        let mut v: Vec<i64> = (0..20_000).map(|_| response_minutes(&mut r)).collect();
        v.sort_unstable();
        assert_eq!(v[10_000], 25);
        assert!((9..=13).contains(&v[200]), "P1 {}", v[200]);
        assert!((40..=44).contains(&v[19_800]), "P99 {}", v[19_800]);
    }

    #[test]
    fn only_a_database_the_generator_wrote_is_recognised() {
        let dir = tempfile::tempdir().unwrap();
        let demo = dir.path().join("demo.sqlite");
        generate(&demo, &DemoOptions::default()).unwrap();
        assert!(written_by_demo(&demo).unwrap());
        let other = dir.path().join("other.sqlite");
        Connection::open(&other)
            .unwrap()
            .execute_batch("CREATE TABLE t (x); INSERT INTO t VALUES (1);")
            .unwrap();
        assert!(!written_by_demo(&other).unwrap());
        let csv = dir.path().join("precious.csv");
        std::fs::write(&csv, "a,b\n1,2\n").unwrap();
        assert!(!written_by_demo(&csv).unwrap());
        assert!(written_by_demo(&dir.path().join("missing")).is_err());
    }

    #[test]
    fn same_seed_same_content() {
        let dir = tempfile::tempdir().unwrap();
        let opts = DemoOptions::default();
        let (a, b) = (dir.path().join("a.sqlite"), dir.path().join("b.sqlite"));
        generate(&a, &opts).unwrap();
        generate(&b, &opts).unwrap();
        assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
        let c = dir.path().join("c.sqlite");
        generate(&c, &DemoOptions { seed: 5, ..opts }).unwrap();
        assert_ne!(std::fs::read(&a).unwrap(), std::fs::read(&c).unwrap());
    }

    #[test]
    fn history_from_drops_everything_timed_before_the_date_and_keeps_the_companies() {
        let dir = tempfile::tempdir().unwrap();
        let (full, cut) = (
            dir.path().join("full.sqlite"),
            dir.path().join("cut.sqlite"),
        );
        generate(&full, &DemoOptions::default()).unwrap();
        let from = NaiveDate::from_ymd_opt(2024, 3, 1).unwrap();
        let opts = DemoOptions {
            history_from: Some(from),
            ..DemoOptions::default()
        };
        generate(&cut, &opts).unwrap();
        let count = |path: &Path, sql: &str| -> i64 {
            Connection::open(path)
                .unwrap()
                .query_row(sql, [], |r| r.get(0))
                .unwrap()
        };
        const BEFORE: &str = "SELECT count(*) FROM intercom__conversation_enhanced \
             WHERE julianday(conversation_created_at) < julianday('2024-03-01')";
        const AFTER: &str = "SELECT count(*) FROM intercom__conversation_enhanced \
             WHERE julianday(conversation_created_at) >= julianday('2024-03-01')";
        assert!(count(&full, BEFORE) > 0);
        assert_eq!(count(&cut, BEFORE), 0);
        assert_eq!(count(&cut, AFTER), count(&full, AFTER));
        // Every metrics row keeps its conversation; no usage or user event before.
        assert_eq!(
            count(
                &cut,
                "SELECT count(*) FROM intercom__conversation_metrics WHERE conversation_id \
                 NOT IN (SELECT conversation_id FROM intercom__conversation_enhanced)"
            ),
            0
        );
        for sql in [
            "SELECT count(*) FROM usage_events WHERE julianday(occurred_at) < julianday('2024-03-01')",
            "SELECT count(*) FROM events WHERE julianday(event_time) < julianday('2024-03-01')",
        ] {
            assert!(count(&full, sql) > 0, "{sql}");
            assert_eq!(count(&cut, sql), 0, "{sql}");
        }
        for table in ["intercom__company_enhanced", "intercom__contact_enhanced"] {
            let sql = format!("SELECT count(*) FROM {table}");
            assert_eq!(count(&cut, &sql), count(&full, &sql), "{table}");
        }
    }
}
