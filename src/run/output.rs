//! Writing a run's files: everything goes into a staging directory next to the final
//! one and appears under its final name only when complete (a crash leaves no
//! half-written report), plus the CSV and JSON encodings the outputs share, and a
//! report's earlier output found among the finished ones ([`earlier_output`]). A staging
//! directory is marked by a locked file beside it; what a killed process left behind
//! (its lock released by the kernel) is swept by the next run in the same place.

use std::io::Read;
use std::path::{Path, PathBuf};

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::reports::Earlier;

#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    #[error("writing {path}: {cause}")]
    Io {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("encoding {path}: {cause}")]
    Csv { path: PathBuf, cause: csv::Error },
    #[error("encoding {path}: {cause}")]
    Json {
        path: PathBuf,
        cause: serde_json::Error,
    },
}

impl crate::exit::Classify for OutputError {
    /// Writing the outputs failed on the disk: a failed run.
    fn exit(&self) -> crate::exit::Exit {
        match self {
            Self::Io { .. } | Self::Csv { .. } | Self::Json { .. } => crate::exit::Exit::Failed,
        }
    }
}

/// A directory being filled; [`StagedDir::commit`] moves it into place.
pub struct StagedDir {
    tmp: tempfile::TempDir,
    dest: PathBuf,
    _marker: Marker,
}

/// `<staging>.lock`, locked while the staging directory is in use; removed after it.
struct Marker {
    path: PathBuf,
    _file: std::fs::File,
}

impl Drop for Marker {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Leftovers younger than this without a marker may be another process's, between
/// creating its directory and its marker, or within a commit.
const UNMARKED_GRACE: std::time::Duration = std::time::Duration::from_secs(3600);

/// Removes what killed runs left in `parent`: staging directories whose marker is no
/// longer locked, and unmarked leftovers older than an hour. Returns how many.
pub fn sweep_stale(parent: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return 0;
    };
    let mut swept = 0;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        let leftover = name.starts_with(".staging-") || name.starts_with(".replaced-");
        if !leftover {
            continue;
        }
        if let Some(dir_name) = name.strip_suffix(".lock") {
            // A marker whose directory is gone.
            if !parent.join(dir_name).exists() && lock_is_free(&path) {
                let _ = std::fs::remove_file(&path);
            }
            continue;
        }
        let marker = parent.join(format!("{name}.lock"));
        let stale = if marker.exists() {
            lock_is_free(&marker)
        } else {
            entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age > UNMARKED_GRACE)
        };
        if stale && std::fs::remove_dir_all(&path).is_ok() {
            let _ = std::fs::remove_file(&marker);
            tracing::info!(path = %path.display(), "removed what an interrupted run left");
            swept += 1;
        }
    }
    swept
}

fn lock_is_free(path: &Path) -> bool {
    std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .is_ok_and(|f| f.try_lock().is_ok())
}

impl StagedDir {
    pub fn new(dest: &Path) -> Result<Self, OutputError> {
        let parent = dest.parent().unwrap_or(Path::new("."));
        let io = |source| OutputError::Io {
            path: parent.to_owned(),
            cause: source,
        };
        std::fs::create_dir_all(parent).map_err(io)?;
        sweep_stale(parent);
        // 0777 less the umask, asked for rather than left to tempfile's default: the
        // run's directory is renamed into place as it is, so its mode is the one a
        // reader of the outputs meets (files inside follow the umask too).
        let tmp = tempfile::Builder::new()
            .prefix(".staging-")
            .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o777))
            .tempdir_in(parent)
            .map_err(io)?;
        let mut marker_path = tmp.path().as_os_str().to_owned();
        marker_path.push(".lock");
        let marker_path = PathBuf::from(marker_path);
        let file = std::fs::File::create(&marker_path).map_err(io)?;
        file.lock().map_err(io)?;
        Ok(Self {
            tmp,
            dest: dest.to_owned(),
            _marker: Marker {
                path: marker_path,
                _file: file,
            },
        })
    }

    pub fn path(&self) -> &Path {
        self.tmp.path()
    }

    pub fn write(&self, rel: &str, bytes: &[u8]) -> Result<(), OutputError> {
        let path = self.tmp.path().join(rel);
        let io = |source| OutputError::Io {
            path: self.dest.join(rel),
            cause: source,
        };
        if let Some(p) = path.parent() {
            std::fs::create_dir_all(p).map_err(io)?;
        }
        std::fs::write(&path, bytes).map_err(io)
    }

    pub fn write_json(&self, rel: &str, value: &impl Serialize) -> Result<(), OutputError> {
        let mut bytes = serde_json::to_vec_pretty(value).map_err(|source| OutputError::Json {
            path: self.dest.join(rel),
            cause: source,
        })?;
        bytes.push(b'\n');
        self.write(rel, &bytes)
    }

    /// Replaces any previous run of the same period in one rename; the previous
    /// files stay until the new ones are in place.
    pub fn commit(self) -> Result<PathBuf, OutputError> {
        let io = |source| OutputError::Io {
            path: self.dest.clone(),
            cause: source,
        };
        let staged = self.tmp.keep();
        if self.dest.exists() {
            let parent = self.dest.parent().unwrap_or(Path::new("."));
            let old = tempfile::Builder::new()
                .prefix(".replaced-")
                .tempdir_in(parent)
                .map_err(io)?
                .keep();
            std::fs::rename(&self.dest, old.join("previous")).map_err(io)?;
            if let Err(e) = std::fs::rename(&staged, &self.dest) {
                // Put the previous run back rather than lose it.
                let _ = std::fs::rename(old.join("previous"), &self.dest);
                let _ = std::fs::remove_dir_all(&staged);
                return Err(io(e));
            }
            keep_editions(&old.join("previous"), &self.dest);
            let _ = std::fs::remove_dir_all(&old);
        } else if let Err(e) = std::fs::rename(&staged, &self.dest) {
            let _ = std::fs::remove_dir_all(&staged);
            return Err(io(e));
        }
        Ok(self.dest)
    }
}

/// The scoped editions of the period (`<period>/<value>/`, each a run's folder with
/// its manifest) that the previous folder held and the new one does not: another
/// run's, not this one's to replace.
fn keep_editions(previous: &Path, dest: &Path) {
    let Ok(entries) = std::fs::read_dir(previous) else {
        return;
    };
    for e in entries.flatten() {
        let from = e.path();
        let to = dest.join(e.file_name());
        if from.is_dir() && from.join("manifest.json").is_file() && !to.exists() {
            let _ = std::fs::rename(&from, &to);
        }
    }
}

/// A CSV table: header and rows of already-formatted cells.
pub fn csv_bytes<R, C>(
    header: &[&str],
    rows: impl IntoIterator<Item = R>,
) -> Result<Vec<u8>, csv::Error>
where
    R: IntoIterator<Item = C>,
    C: AsRef<[u8]>,
{
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(header)?;
    for row in rows {
        w.write_record(row)?;
    }
    w.into_inner().map_err(|e| csv::Error::from(e.into_error()))
}

/// SHA-256 of a file, hex.
pub fn sha256_file(path: &Path) -> Result<String, std::io::Error> {
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// A report's latest finished output before `period` in `dir` (the job's folder of
/// the output directory, one folder per period), as the report compares with it
/// ([`Earlier`]): its period and its `summary.json`, read here (or why not).
pub fn earlier_output(dir: &Path, period: &str) -> Earlier {
    match latest_before(dir, period) {
        None => Earlier::NoneBefore,
        Some((folder, earlier)) => Earlier::Found {
            summary: std::fs::read(folder.join("summary.json")).map_err(|e| e.to_string()),
            period: earlier,
        },
    }
}

/// The latest folder under `dir` named a period of the same kind as `period` and
/// before it, that holds its summary (a finished output: staging folders are hidden
/// and renamed into place whole), and its period.
fn latest_before(dir: &Path, period: &str) -> Option<(PathBuf, String)> {
    let kind = period_kind(period)?;
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name().to_str()?.to_owned();
            (period_kind(&name) == Some(kind)
                && name.as_str() < period
                && e.path().join("summary.json").is_file())
            .then(|| (e.path(), name))
        })
        .max_by(|a, b| a.1.cmp(&b.1))
}

/// The two kinds of period key a run writes: a snapshot's `asof-<date>` and a
/// window's `<from>_<to>`; `None` for any other name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PeriodKind {
    Snapshot,
    Window,
}

fn period_kind(name: &str) -> Option<PeriodKind> {
    let date = |s: &str| chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").is_ok();
    if let Some(day) = name.strip_prefix("asof-") {
        return date(day).then_some(PeriodKind::Snapshot);
    }
    let (from, to) = name.split_once('_')?;
    (date(from) && date(to)).then_some(PeriodKind::Window)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_earlier_output_is_the_latest_finished_one_before_the_period() {
        let dir = tempfile::tempdir().unwrap();
        for (name, summary) in [
            ("asof-2024-03-31", Some("{\"users\": 3}")),
            ("asof-2024-05-14", Some("{\"users\": 5}")),
            // Unfinished: no summary.
            ("asof-2024-05-20", None),
            // Staging names and a window's period are not this report's snapshots.
            (".staging-asof-2024-05-30", Some("{}")),
            ("2024-05-01_2024-05-31", Some("{}")),
            ("asof-2024-06-14", Some("{}")),
            // Later than the period.
            ("asof-2024-07-01", Some("{}")),
            ("notes", Some("{}")),
        ] {
            let d = dir.path().join(name);
            std::fs::create_dir_all(&d).unwrap();
            if let Some(s) = summary {
                std::fs::write(d.join("summary.json"), s).unwrap();
            }
        }
        assert_eq!(
            earlier_output(dir.path(), "asof-2024-06-14"),
            Earlier::Found {
                period: "asof-2024-05-14".to_owned(),
                summary: Ok(b"{\"users\": 5}".to_vec()),
            }
        );
        assert_eq!(
            earlier_output(dir.path(), "asof-2024-03-31"),
            Earlier::NoneBefore
        );
        assert_eq!(
            earlier_output(&dir.path().join("missing"), "asof-2024-06-14"),
            Earlier::NoneBefore
        );
        // A window's period finds the windows before it, not the snapshots.
        let Earlier::Found { period, .. } = earlier_output(dir.path(), "2024-06-01_2024-06-30")
        else {
            panic!("the window before is found");
        };
        assert_eq!(period, "2024-05-01_2024-05-31");
    }

    #[test]
    fn staged_files_appear_only_on_commit_and_replace_the_previous_run() {
        let root = tempfile::tempdir().unwrap();
        let dest = root.path().join("report/2024");
        let s = StagedDir::new(&dest).unwrap();
        s.write("a.csv", b"x").unwrap();
        assert!(!dest.exists());
        s.commit().unwrap();
        assert_eq!(std::fs::read(dest.join("a.csv")).unwrap(), b"x");
        let s = StagedDir::new(&dest).unwrap();
        s.write("b.csv", b"y").unwrap();
        s.commit().unwrap();
        assert!(!dest.join("a.csv").exists());
        assert_eq!(std::fs::read(dest.join("b.csv")).unwrap(), b"y");
        // Nothing left behind beside the final directory.
        let names: Vec<_> = std::fs::read_dir(root.path().join("report"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["2024"]);
    }

    #[test]
    fn dropped_staging_leaves_nothing() {
        let root = tempfile::tempdir().unwrap();
        let dest = root.path().join("r");
        {
            let s = StagedDir::new(&dest).unwrap();
            s.write("a.csv", b"x").unwrap();
        }
        assert_eq!(std::fs::read_dir(root.path()).unwrap().count(), 0);
    }

    #[test]
    fn what_a_killed_run_left_is_swept_by_the_next_one() {
        let root = tempfile::tempdir().unwrap();
        let dest = root.path().join("r");
        // A live staging directory (its marker locked) is left alone.
        let live = StagedDir::new(&dest).unwrap();
        live.write("a.csv", b"x").unwrap();
        // A killed one: directory and marker, the lock released.
        let dead = root.path().join(".staging-dead");
        std::fs::create_dir(&dead).unwrap();
        std::fs::write(dead.join("report.en.pdf"), b"%PDF").unwrap();
        std::fs::write(root.path().join(".staging-dead.lock"), b"").unwrap();
        // A young unmarked one (between creation and marker): left alone.
        std::fs::create_dir(root.path().join(".staging-young")).unwrap();
        assert_eq!(sweep_stale(root.path()), 1);
        assert!(!dead.exists() && !root.path().join(".staging-dead.lock").exists());
        assert!(live.path().exists() && root.path().join(".staging-young").exists());
        live.commit().unwrap();
        let mut names: Vec<_> = std::fs::read_dir(root.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, [".staging-young", "r"]);
    }

    #[test]
    fn csv_quotes_what_needs_it() {
        let b = csv_bytes(&["a", "b"], [["x,y", "1"]]).unwrap();
        assert_eq!(String::from_utf8(b).unwrap(), "a,b\n\"x,y\",1\n");
    }
}
