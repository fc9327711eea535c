//! The ledger's one migration path: the schema as an ordered list of versions, each
//! what one release added, applied in one write transaction and recorded in
//! `PRAGMA user_version`. A ledger of any earlier version opens and is brought up to
//! date; one of a newer version is refused, never downgraded.
//!
//! Ledgers written before the version was recorded hold `user_version` 0: what each
//! of them has is read from its tables and columns (every earlier version added what
//! it lacked at each open, so any of them is one of the layouts listed here), and
//! only what it lacks is added.
//!
//! Why this file is long: about 290 lines of code; the rest are its tests, which build
//! every earlier release's layout by SQL and open it.

use std::path::Path;

use rusqlite::{Connection, Transaction, TransactionBehavior};

use super::LedgerError;

/// What one statement adds, and so how to tell a ledger that records no version
/// already has it.
#[derive(Debug, Clone, Copy)]
enum Adds {
    Table(&'static str),
    Column(&'static str, &'static str),
}

struct Step {
    adds: Adds,
    sql: &'static str,
}

/// Version `n` is `VERSIONS[n - 1]`: what one release added. Append only: a version
/// once released is never changed, since ledgers hold it.
const VERSIONS: [&[Step]; 9] = [
    // 1. The first release: runs, deliveries and the schedule's cursors.
    &[
        Step {
            adds: Adds::Table("runs"),
            sql: "CREATE TABLE runs (
                job TEXT NOT NULL,
                period TEXT NOT NULL,
                fire_time TEXT,
                state TEXT NOT NULL,
                started_at TEXT,
                finished_at TEXT,
                pid INTEGER,
                output_dir TEXT,
                error TEXT,
                attempts INTEGER NOT NULL DEFAULT 0,
                PRIMARY KEY (job, period)
            )",
        },
        Step {
            adds: Adds::Table("deliveries"),
            sql: "CREATE TABLE deliveries (
                job TEXT NOT NULL,
                period TEXT NOT NULL,
                lang TEXT NOT NULL,
                recipient TEXT NOT NULL,
                message_id TEXT NOT NULL,
                state TEXT NOT NULL,
                attempts INTEGER NOT NULL DEFAULT 0,
                last_error TEXT,
                updated_at TEXT,
                PRIMARY KEY (job, period, lang, recipient)
            )",
        },
        Step {
            adds: Adds::Table("cursors"),
            sql: "CREATE TABLE cursors (
                job TEXT PRIMARY KEY,
                last_fire TEXT NOT NULL
            )",
        },
    ],
    // 2. Retries: the messages each edition mailed, owner alerts kept until sent, and
    // a delivery's possible duplicate, next attempt and end of its retry time.
    &[
        Step {
            adds: Adds::Table("messages"),
            sql: "CREATE TABLE messages (
                job TEXT NOT NULL,
                period TEXT NOT NULL,
                lang TEXT NOT NULL,
                content TEXT NOT NULL,
                PRIMARY KEY (job, period, lang)
            )",
        },
        Step {
            adds: Adds::Table("alerts"),
            sql: "CREATE TABLE alerts (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                job TEXT NOT NULL,
                recipient TEXT NOT NULL,
                message_id TEXT NOT NULL,
                subject TEXT NOT NULL,
                body TEXT NOT NULL,
                state TEXT NOT NULL,
                attempts INTEGER NOT NULL DEFAULT 0,
                last_error TEXT,
                created_at TEXT NOT NULL,
                next_attempt_at TEXT NOT NULL
            )",
        },
        Step {
            adds: Adds::Column("deliveries", "possible_duplicate"),
            sql: "ALTER TABLE deliveries ADD COLUMN possible_duplicate INTEGER NOT NULL DEFAULT 0",
        },
        Step {
            adds: Adds::Column("deliveries", "next_attempt_at"),
            sql: "ALTER TABLE deliveries ADD COLUMN next_attempt_at TEXT",
        },
        Step {
            adds: Adds::Column("deliveries", "retry_until"),
            sql: "ALTER TABLE deliveries ADD COLUMN retry_until TEXT",
        },
    ],
    // 3. What the watch rules found.
    &[Step {
        adds: Adds::Table("watch"),
        sql: "CREATE TABLE watch (
            job TEXT NOT NULL,
            period TEXT NOT NULL,
            rule TEXT NOT NULL,
            fired INTEGER NOT NULL,
            metric TEXT NOT NULL,
            slice TEXT NOT NULL,
            change REAL,
            threshold REAL NOT NULL,
            note TEXT,
            PRIMARY KEY (job, period, rule)
        )",
    }],
    // 4. How often a run was found interrupted and run again since it last ended on
    // its own.
    &[Step {
        adds: Adds::Column("runs", "recoveries"),
        sql: "ALTER TABLE runs ADD COLUMN recoveries INTEGER NOT NULL DEFAULT 0",
    }],
    // 5. The daemon's heartbeat, one row per daemon process.
    &[Step {
        adds: Adds::Table("heartbeat"),
        sql: "CREATE TABLE heartbeat (
            host TEXT NOT NULL,
            pid INTEGER NOT NULL,
            version TEXT NOT NULL,
            started_at TEXT NOT NULL,
            ticked_at TEXT NOT NULL,
            clock_at TEXT NOT NULL,
            stopping_at TEXT,
            stopped_at TEXT,
            last_error TEXT,
            PRIMARY KEY (host, pid)
        )",
    }],
    // 6. The run an alert is about, so that a retry that resolves the run can replace
    // its alerts not sent yet. (Released beside 5, in either order: a ledger that
    // records no version may have either.)
    &[Step {
        adds: Adds::Column("alerts", "period"),
        sql: "ALTER TABLE alerts ADD COLUMN period TEXT",
    }],
    // 7. What an alert tells (`failed`, `interrupted`, `resolved`): only a failure is
    // replaced or followed by a resolution.
    &[Step {
        adds: Adds::Column("alerts", "kind"),
        sql: "ALTER TABLE alerts ADD COLUMN kind TEXT NOT NULL DEFAULT 'failed'",
    }],
    // 8. A watch result whole, as the run layer judged it: the rule's direction, both
    // values and their unit.
    &[
        Step {
            adds: Adds::Column("watch", "rise"),
            sql: "ALTER TABLE watch ADD COLUMN rise INTEGER",
        },
        Step {
            adds: Adds::Column("watch", "current"),
            sql: "ALTER TABLE watch ADD COLUMN current REAL",
        },
        Step {
            adds: Adds::Column("watch", "previous"),
            sql: "ALTER TABLE watch ADD COLUMN previous REAL",
        },
        Step {
            adds: Adds::Column("watch", "unit"),
            sql: "ALTER TABLE watch ADD COLUMN unit TEXT",
        },
    ],
    // 9. Bursted jobs (one edition per region): a delivery, a kept message and a
    // watch result per region edition (`''` for a job that is not bursted, which
    // every earlier row is), and what each region's edition was. SQLite cannot change
    // a primary key, so the three tables are copied into ones keyed with the region.
    &[
        Step {
            adds: Adds::Column("deliveries", "region"),
            sql: "CREATE TABLE deliveries_v9 (
                job TEXT NOT NULL,
                period TEXT NOT NULL,
                region TEXT NOT NULL DEFAULT '',
                lang TEXT NOT NULL,
                recipient TEXT NOT NULL,
                message_id TEXT NOT NULL,
                state TEXT NOT NULL,
                attempts INTEGER NOT NULL DEFAULT 0,
                last_error TEXT,
                updated_at TEXT,
                possible_duplicate INTEGER NOT NULL DEFAULT 0,
                next_attempt_at TEXT,
                retry_until TEXT,
                PRIMARY KEY (job, period, region, lang, recipient)
            );
            INSERT INTO deliveries_v9 (job, period, lang, recipient, message_id, state, attempts,
                    last_error, updated_at, possible_duplicate, next_attempt_at, retry_until)
                SELECT job, period, lang, recipient, message_id, state, attempts, last_error,
                    updated_at, possible_duplicate, next_attempt_at, retry_until FROM deliveries;
            DROP TABLE deliveries;
            ALTER TABLE deliveries_v9 RENAME TO deliveries;",
        },
        Step {
            adds: Adds::Column("messages", "region"),
            sql: "CREATE TABLE messages_v9 (
                job TEXT NOT NULL,
                period TEXT NOT NULL,
                region TEXT NOT NULL DEFAULT '',
                lang TEXT NOT NULL,
                content TEXT NOT NULL,
                PRIMARY KEY (job, period, region, lang)
            );
            INSERT INTO messages_v9 (job, period, lang, content)
                SELECT job, period, lang, content FROM messages;
            DROP TABLE messages;
            ALTER TABLE messages_v9 RENAME TO messages;",
        },
        Step {
            adds: Adds::Column("watch", "region"),
            sql: "CREATE TABLE watch_v9 (
                job TEXT NOT NULL,
                period TEXT NOT NULL,
                region TEXT NOT NULL DEFAULT '',
                rule TEXT NOT NULL,
                fired INTEGER NOT NULL,
                metric TEXT NOT NULL,
                slice TEXT NOT NULL,
                change REAL,
                threshold REAL NOT NULL,
                note TEXT,
                rise INTEGER,
                current REAL,
                previous REAL,
                unit TEXT,
                PRIMARY KEY (job, period, region, rule)
            );
            INSERT INTO watch_v9 (job, period, rule, fired, metric, slice, change, threshold,
                    note, rise, current, previous, unit)
                SELECT job, period, rule, fired, metric, slice, change, threshold, note, rise,
                    current, previous, unit FROM watch;
            DROP TABLE watch;
            ALTER TABLE watch_v9 RENAME TO watch;",
        },
        Step {
            adds: Adds::Table("editions"),
            sql: "CREATE TABLE editions (
                job TEXT NOT NULL,
                period TEXT NOT NULL,
                region TEXT NOT NULL,
                label TEXT NOT NULL,
                companies INTEGER NOT NULL,
                mailed INTEGER NOT NULL,
                error TEXT,
                PRIMARY KEY (job, period, region)
            )",
        },
    ],
];

/// The version this build writes.
pub(super) const LATEST: u32 = VERSIONS.len() as u32;
/// Since this version: a delivery's retry columns, kept messages and owner alerts.
pub(super) const RETRIES: u32 = 2;
/// Since this version: the `watch` table.
pub(super) const WATCH: u32 = 3;
/// Since this version: the `heartbeat` table.
pub(super) const HEARTBEAT: u32 = 5;
/// Since this version: a watch result's direction, values and unit.
pub(super) const WATCH_VALUES: u32 = 8;
/// Since this version: the region of a delivery, message and watch result, and the
/// `editions` of a bursted job.
pub(super) const REGIONS: u32 = 9;

/// Brings the ledger open on `conn` up to [`LATEST`].
///
/// One write transaction, taken at once (`BEGIN IMMEDIATE`): processes that open a
/// new or older ledger at once (two runs started together) would otherwise both find
/// a table or column missing, and the second one's statement fail on it. Whatever
/// fails leaves the ledger as it was.
pub(super) fn migrate(conn: &Connection, path: &Path) -> Result<(), LedgerError> {
    let err = |cause| LedgerError::Sqlite {
        path: path.to_owned(),
        cause,
    };
    let tx = Transaction::new_unchecked(conn, TransactionBehavior::Immediate).map_err(err)?;
    let found = recorded(&tx).map_err(err)?;
    if found > LATEST {
        return Err(newer(path, found));
    }
    for (number, steps) in (1..).zip(VERSIONS) {
        if number <= found {
            continue;
        }
        for step in steps {
            if found == 0 && has(&tx, step.adds).map_err(err)? {
                continue;
            }
            tx.execute_batch(step.sql).map_err(err)?;
        }
    }
    if found != LATEST {
        tx.pragma_update(None, "user_version", LATEST)
            .map_err(err)?;
    }
    tx.commit().map_err(err)
}

/// The version of a ledger opened read-only (not migrated): the one it records, or,
/// when it records none, the last version it has every part of.
pub(super) fn version_of(conn: &Connection, path: &Path) -> Result<u32, LedgerError> {
    let err = |cause| LedgerError::Sqlite {
        path: path.to_owned(),
        cause,
    };
    let found = recorded(conn).map_err(err)?;
    if found > LATEST {
        return Err(newer(path, found));
    }
    if found > 0 {
        return Ok(found);
    }
    let mut have = 0;
    for (number, steps) in (1..).zip(VERSIONS) {
        for step in steps {
            if !has(conn, step.adds).map_err(err)? {
                return Ok(have);
            }
        }
        have = number;
    }
    Ok(have)
}

fn recorded(conn: &Connection) -> rusqlite::Result<u32> {
    conn.query_row("PRAGMA user_version", [], |r| r.get(0))
}

fn newer(path: &Path, found: u32) -> LedgerError {
    LedgerError::Newer {
        path: path.to_owned(),
        found,
        known: LATEST,
    }
}

fn has(conn: &Connection, adds: Adds) -> rusqlite::Result<bool> {
    let n: i64 = match adds {
        Adds::Table(table) => conn.query_row(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?1",
            [table],
            |r| r.get(0),
        )?,
        Adds::Column(table, column) => conn.query_row(
            "SELECT count(*) FROM pragma_table_info(?1) WHERE name = ?2",
            [table, column],
            |r| r.get(0),
        )?,
    };
    Ok(n > 0)
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::jobs::ledger::testing::*;
    use crate::jobs::ledger::*;

    /// What each earlier release created, as it wrote it (`git log -p` of the
    /// ledger): a ledger of an earlier version is the first few of these, in order
    /// (5 and 6 were released side by side, so either may be missing).
    const HISTORY: [&str; 7] = [
        // The first release, with the `leases` of the pid-based locking since removed.
        "CREATE TABLE IF NOT EXISTS runs (job TEXT NOT NULL, period TEXT NOT NULL,
            fire_time TEXT, state TEXT NOT NULL, started_at TEXT, finished_at TEXT,
            pid INTEGER, output_dir TEXT, error TEXT, attempts INTEGER NOT NULL DEFAULT 0,
            PRIMARY KEY (job, period));
         CREATE TABLE IF NOT EXISTS deliveries (job TEXT NOT NULL, period TEXT NOT NULL,
            lang TEXT NOT NULL, recipient TEXT NOT NULL, message_id TEXT NOT NULL,
            state TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, last_error TEXT,
            updated_at TEXT, PRIMARY KEY (job, period, lang, recipient));
         CREATE TABLE IF NOT EXISTS leases (job TEXT PRIMARY KEY, holder TEXT NOT NULL,
            pid INTEGER NOT NULL, acquired_at TEXT NOT NULL);
         CREATE TABLE IF NOT EXISTS cursors (job TEXT PRIMARY KEY, last_fire TEXT NOT NULL);",
        "CREATE TABLE IF NOT EXISTS messages (job TEXT NOT NULL, period TEXT NOT NULL,
            lang TEXT NOT NULL, content TEXT NOT NULL, PRIMARY KEY (job, period, lang));
         CREATE TABLE IF NOT EXISTS alerts (id INTEGER PRIMARY KEY AUTOINCREMENT,
            job TEXT NOT NULL, recipient TEXT NOT NULL, message_id TEXT NOT NULL,
            subject TEXT NOT NULL, body TEXT NOT NULL, state TEXT NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0, last_error TEXT, created_at TEXT NOT NULL,
            next_attempt_at TEXT NOT NULL);
         ALTER TABLE deliveries ADD COLUMN possible_duplicate INTEGER NOT NULL DEFAULT 0;
         ALTER TABLE deliveries ADD COLUMN next_attempt_at TEXT;
         ALTER TABLE deliveries ADD COLUMN retry_until TEXT;",
        "CREATE TABLE IF NOT EXISTS watch (job TEXT NOT NULL, period TEXT NOT NULL,
            rule TEXT NOT NULL, fired INTEGER NOT NULL, metric TEXT NOT NULL,
            slice TEXT NOT NULL, change REAL, threshold REAL NOT NULL, note TEXT,
            PRIMARY KEY (job, period, rule));",
        "ALTER TABLE runs ADD COLUMN recoveries INTEGER NOT NULL DEFAULT 0;",
        "CREATE TABLE IF NOT EXISTS heartbeat (host TEXT NOT NULL, pid INTEGER NOT NULL,
            version TEXT NOT NULL, started_at TEXT NOT NULL, ticked_at TEXT NOT NULL,
            clock_at TEXT NOT NULL, stopping_at TEXT, stopped_at TEXT, last_error TEXT,
            PRIMARY KEY (host, pid));",
        "ALTER TABLE alerts ADD COLUMN period TEXT;",
        "ALTER TABLE alerts ADD COLUMN kind TEXT NOT NULL DEFAULT 'failed';",
    ];

    /// The SQL of a ledger an earlier version left: the releases `parts` of
    /// [`HISTORY`].
    pub(in crate::jobs::ledger) fn historic(parts: &[usize]) -> String {
        parts.iter().map(|&i| HISTORY[i]).collect()
    }

    /// Each table's columns (name, type, not null, default, key), as the ledger at
    /// `path` has them.
    fn layout(path: &Path) -> Vec<(String, Vec<String>)> {
        let c = Connection::open(path).unwrap();
        let tables: Vec<String> = c
            .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        tables
            .into_iter()
            .map(|t| {
                let columns = c
                    .prepare("SELECT name, type, \"notnull\", COALESCE(dflt_value, ''), pk FROM pragma_table_info(?1)")
                    .unwrap()
                    .query_map([&t], |r| {
                        Ok(format!(
                            "{} {} {} {} {}",
                            r.get::<_, String>(0)?,
                            r.get::<_, String>(1)?,
                            r.get::<_, i64>(2)?,
                            r.get::<_, String>(3)?,
                            r.get::<_, i64>(4)?
                        ))
                    })
                    .unwrap()
                    .collect::<Result<_, _>>()
                    .unwrap();
                (t, columns)
            })
            .collect()
    }

    fn user_version(path: &Path) -> u32 {
        recorded(&Connection::open(path).unwrap()).unwrap()
    }

    /// A ledger as each earlier release left it (none recorded a version) opens for
    /// writing with its rows intact, and with the tables and columns of a new one;
    /// read-only before that, it reads what it has.
    #[test]
    fn a_ledger_of_every_earlier_layout_opens_with_its_rows_and_is_brought_up_to_date() {
        let dir = tempfile::tempdir().unwrap();
        let fresh = dir.path().join("fresh.sqlite");
        drop(Ledger::open(&fresh).unwrap());
        assert_eq!(user_version(&fresh), LATEST);
        let new = layout(&fresh);
        let layouts: [&[usize]; 8] = [
            &[0],
            &[0, 1],
            &[0, 1, 2],
            &[0, 1, 2, 3],
            &[0, 1, 2, 3, 4],
            &[0, 1, 2, 3, 5],
            &[0, 1, 2, 3, 4, 5],
            &[0, 1, 2, 3, 4, 5, 6],
        ];
        for (n, parts) in layouts.into_iter().enumerate() {
            let path = dir.path().join(format!("old-{n}.sqlite"));
            let has = |part| parts.contains(&part);
            let mut rows = historic(parts);
            rows.push_str(
                "INSERT INTO runs (job, period, state, started_at, attempts)
                   VALUES ('j', 'p', 'succeeded', '2024-06-01 08:00:00', 1);
                 INSERT INTO deliveries (job, period, lang, recipient, message_id, state, attempts, last_error)
                   VALUES ('j', 'p', 'en', 'a@example.com', '<x@y>', 'gave_up', 4, '451');
                 INSERT INTO cursors VALUES ('j', '2024-06-01 08:00:00');
                 INSERT INTO leases VALUES ('j', 'h', 1, '2024-06-01 08:00:00');",
            );
            if has(1) {
                rows.push_str(
                    "INSERT INTO messages VALUES ('j', 'p', 'en', '[\"subject\"]');
                     INSERT INTO alerts (job, recipient, message_id, subject, body, state, created_at, next_attempt_at)
                       VALUES ('j', 'o@example.com', '<a@x>', 'job j failed', 'b', 'pending',
                               '2024-06-01 08:00:00', '2024-06-01 08:00:00');",
                );
            }
            if has(2) {
                rows.push_str(
                    "INSERT INTO watch VALUES ('j', 'p', 'r', 1, 'm', 'all', 0.5, 0.2, NULL);",
                );
            }
            if has(4) {
                rows.push_str(
                    "INSERT INTO heartbeat VALUES ('h', 7, '0.1.0', '2024-06-01 08:00:00',
                       '2024-06-01 08:00:05', '2024-06-01 08:00:05', NULL, NULL, NULL);",
                );
            }
            Connection::open(&path)
                .unwrap()
                .execute_batch(&rows)
                .unwrap();
            let check = |l: &Ledger, upgraded: bool| {
                let h = l.history(None).unwrap();
                assert_eq!((h.len(), h[0].state), (1, RunState::Succeeded), "{parts:?}");
                let d = &h[0].deliveries[0];
                assert_eq!(
                    (d.state, d.attempts, d.last_error.as_deref()),
                    (DeliveryState::GaveUp, 4, Some("451")),
                    "{parts:?}"
                );
                assert_eq!(d.region, "", "a delivery of the job's one edition");
                assert_eq!(h[0].watch.len(), usize::from(has(2)), "{parts:?}");
                let alerts = l.pending_alerts(None).unwrap();
                assert_eq!(alerts.len(), usize::from(has(1)), "{parts:?}");
                assert_eq!(
                    l.heartbeats().unwrap().len(),
                    usize::from(has(4)),
                    "{parts:?}"
                );
                if upgraded {
                    assert_eq!(l.cursor("j").unwrap(), Some(at("2024-06-01 08:00:00")));
                    let m: Option<Vec<String>> = l.message("j", "p", "", "en").unwrap();
                    assert_eq!(m.is_some(), has(1), "{parts:?}");
                }
            };
            check(&Ledger::open_read_only(&path).unwrap(), false);
            assert_eq!(user_version(&path), 0, "read-only changes nothing");
            let l = Ledger::open(&path).unwrap();
            check(&l, true);
            drop(l);
            assert_eq!(user_version(&path), LATEST, "{parts:?}");
            let mut got = layout(&path);
            let leases = got.iter().position(|(t, _)| t == "leases");
            assert!(
                leases.is_some(),
                "a table it does not use is left as it was"
            );
            got.retain(|(t, _)| t != "leases");
            assert_eq!(got, new, "{parts:?}");
            // Opened again, at its version now, it changes nothing more.
            let l = Ledger::open(&path).unwrap();
            check(&l, true);
            assert_eq!(l.version, LATEST);
        }
    }

    /// A ledger that records its version gains the later versions only, read from
    /// the list and not from its tables.
    #[test]
    fn a_ledger_that_records_an_earlier_version_gains_the_later_ones() {
        let dir = tempfile::tempdir().unwrap();
        let fresh = dir.path().join("fresh.sqlite");
        drop(Ledger::open(&fresh).unwrap());
        let path = dir.path().join("v4.sqlite");
        Connection::open(&path)
            .unwrap()
            .execute_batch(&format!(
                "{} PRAGMA user_version = 4;
                 INSERT INTO runs (job, period, state, attempts) VALUES ('j', 'p', 'failed', 1);",
                historic(&[0, 1, 2, 3])
            ))
            .unwrap();
        assert_eq!(Ledger::open_read_only(&path).unwrap().version, 4);
        let l = Ledger::open(&path).unwrap();
        assert_eq!(l.history(None).unwrap()[0].state, RunState::Failed);
        drop(l);
        assert_eq!(user_version(&path), LATEST);
        let mut got = layout(&path);
        got.retain(|(t, _)| t != "leases");
        assert_eq!(got, layout(&fresh));
    }

    /// A ledger of a newer version is refused, naming it and both versions, for
    /// writing and for reading, and left as it was.
    #[test]
    fn a_ledger_of_a_newer_version_is_refused_not_downgraded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.sqlite");
        Ledger::open(&path)
            .unwrap()
            .begin_run("j", "p", None, None)
            .unwrap();
        Connection::open(&path)
            .unwrap()
            .pragma_update(None, "user_version", LATEST + 1)
            .unwrap();
        for e in [
            Ledger::open(&path).err().unwrap(),
            Ledger::open_read_only(&path).err().unwrap(),
        ] {
            assert!(
                matches!(e, LedgerError::Newer { found, known, .. } if found == LATEST + 1 && known == LATEST),
                "{e:?}"
            );
            let text = e.to_string();
            for part in [
                path.display().to_string(),
                format!("schema version {}", LATEST + 1),
                format!("the {LATEST} this version"),
            ] {
                assert!(text.contains(&part), "{part}: {text}");
            }
        }
        assert_eq!(user_version(&path), LATEST + 1, "left as it was");
    }

    /// The versions the readers check for add what they read.
    #[test]
    fn the_readers_versions_are_those_that_added_what_they_read() {
        let adds = |v: u32| {
            VERSIONS[usize::try_from(v - 1).unwrap()]
                .iter()
                .map(|s| s.adds)
        };
        assert!(
            adds(RETRIES).any(|a| matches!(a, Adds::Column("deliveries", "possible_duplicate")))
        );
        assert!(adds(RETRIES).any(|a| matches!(a, Adds::Table("alerts"))));
        assert!(adds(WATCH).any(|a| matches!(a, Adds::Table("watch"))));
        assert!(adds(HEARTBEAT).any(|a| matches!(a, Adds::Table("heartbeat"))));
        assert!(adds(WATCH_VALUES).any(|a| matches!(a, Adds::Column("watch", "unit"))));
        assert!(adds(REGIONS).any(|a| matches!(a, Adds::Column("deliveries", "region"))));
        assert!(adds(REGIONS).any(|a| matches!(a, Adds::Table("editions"))));
    }

    #[test]
    fn processes_that_open_a_new_ledger_at_once_all_open_it() {
        for _ in 0..5 {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("state.sqlite");
            let start = std::sync::Barrier::new(8);
            std::thread::scope(|s| {
                let opened: Vec<_> = (0..8)
                    .map(|_| {
                        s.spawn(|| {
                            start.wait();
                            Ledger::open(&path).map(|_| ())
                        })
                    })
                    .collect();
                for o in opened {
                    o.join().unwrap().unwrap();
                }
            });
        }
    }

    #[test]
    fn a_ledger_of_the_previous_version_reads_and_upgrades() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.sqlite");
        Connection::open(&path)
            .unwrap()
            .execute_batch(
                "CREATE TABLE runs (job TEXT NOT NULL, period TEXT NOT NULL, fire_time TEXT,
                    state TEXT NOT NULL, started_at TEXT, finished_at TEXT, pid INTEGER,
                    output_dir TEXT, error TEXT, attempts INTEGER NOT NULL DEFAULT 0,
                    PRIMARY KEY (job, period));
                 CREATE TABLE deliveries (job TEXT NOT NULL, period TEXT NOT NULL,
                    lang TEXT NOT NULL, recipient TEXT NOT NULL, message_id TEXT NOT NULL,
                    state TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, last_error TEXT,
                    updated_at TEXT, PRIMARY KEY (job, period, lang, recipient));
                 CREATE TABLE leases (job TEXT PRIMARY KEY, holder TEXT NOT NULL,
                    pid INTEGER NOT NULL, acquired_at TEXT NOT NULL);
                 INSERT INTO runs VALUES ('j', 'p', NULL, 'succeeded', NULL, NULL, 1, NULL, NULL, 1);
                 INSERT INTO deliveries VALUES ('j', 'p', 'en', 'a@example.com', '<x@y>', 'gave_up', 4, '451', NULL);",
            )
            .unwrap();
        let r = Ledger::open_read_only(&path).unwrap();
        let h = r.history(None).unwrap();
        assert_eq!(h[0].deliveries[0].state, "gave_up");
        assert!(r.pending_alerts(None).unwrap().is_empty());
        drop(r);
        let w = Ledger::open(&path).unwrap();
        assert_eq!(w.reopen("j", "p", None).unwrap(), 1);
        assert_eq!(w.history(None).unwrap()[0].deliveries[0].state, "failed");
    }
}
