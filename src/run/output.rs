//! Writing a run's files: everything goes into a staging directory next to the final
//! one and appears under its final name only when complete (a crash leaves no
//! half-written report), plus the CSV and JSON encodings the outputs share.

use std::io::Read;
use std::path::{Path, PathBuf};

use serde::Serialize;
use sha2::{Digest, Sha256};

#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    #[error("writing {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("encoding {path}: {source}")]
    Csv { path: PathBuf, source: csv::Error },
    #[error("encoding {path}: {source}")]
    Json {
        path: PathBuf,
        source: serde_json::Error,
    },
}

/// A directory being filled; [`StagedDir::commit`] moves it into place.
pub struct StagedDir {
    tmp: tempfile::TempDir,
    dest: PathBuf,
}

impl StagedDir {
    pub fn new(dest: &Path) -> Result<Self, OutputError> {
        let parent = dest.parent().unwrap_or(Path::new("."));
        let io = |source| OutputError::Io {
            path: parent.to_owned(),
            source,
        };
        std::fs::create_dir_all(parent).map_err(io)?;
        let tmp = tempfile::Builder::new()
            .prefix(".staging-")
            .tempdir_in(parent)
            .map_err(io)?;
        Ok(Self {
            tmp,
            dest: dest.to_owned(),
        })
    }

    pub fn path(&self) -> &Path {
        self.tmp.path()
    }

    pub fn write(&self, rel: &str, bytes: &[u8]) -> Result<(), OutputError> {
        let path = self.tmp.path().join(rel);
        let io = |source| OutputError::Io {
            path: self.dest.join(rel),
            source,
        };
        if let Some(p) = path.parent() {
            std::fs::create_dir_all(p).map_err(io)?;
        }
        std::fs::write(&path, bytes).map_err(io)
    }

    pub fn write_json(&self, rel: &str, value: &impl Serialize) -> Result<(), OutputError> {
        let mut bytes = serde_json::to_vec_pretty(value).map_err(|source| OutputError::Json {
            path: self.dest.join(rel),
            source,
        })?;
        bytes.push(b'\n');
        self.write(rel, &bytes)
    }

    /// Replaces any previous run of the same period in one rename; the previous
    /// files stay until the new ones are in place.
    pub fn commit(self) -> Result<PathBuf, OutputError> {
        let io = |source| OutputError::Io {
            path: self.dest.clone(),
            source,
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
            let _ = std::fs::remove_dir_all(&old);
        } else if let Err(e) = std::fs::rename(&staged, &self.dest) {
            let _ = std::fs::remove_dir_all(&staged);
            return Err(io(e));
        }
        Ok(self.dest)
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

#[cfg(test)]
mod tests {
    use super::*;

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
    fn csv_quotes_what_needs_it() {
        let b = csv_bytes(&["a", "b"], [["x,y", "1"]]).unwrap();
        assert_eq!(String::from_utf8(b).unwrap(), "a,b\n\"x,y\",1\n");
    }
}
