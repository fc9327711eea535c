//! Which stage long work is in, for whoever watches it: the command line's progress
//! indicator on a terminal. Like [`crate::clock`], every layer may report to it
//! without knowing who draws it (or whether anyone does): a run's stages
//! (the run layer's worker stages, also those a worker process sends back),
//! the demo generator's steps. Nothing watches unless the command line installed a
//! [`Progress`] ([`watch`]), so the daemon and the library's tests report into nothing.

use std::sync::{Arc, RwLock};

/// What draws the progress of the work in flight.
pub trait Progress: Send + Sync {
    /// The work entered the stage `name` (a few words, as a person reads them).
    fn stage(&self, name: &str);
    /// Runs `write` with the indicator out of the way, so that a line written to the
    /// same terminal (a log line, a worker's log line) is not drawn over.
    fn suspend(&self, write: &mut dyn FnMut());
}

static WATCHER: RwLock<Option<Arc<dyn Progress>>> = RwLock::new(None);

/// While the returned guard lives, stages are reported to `progress`.
pub fn watch(progress: Arc<dyn Progress>) -> Watching {
    *WATCHER.write().unwrap_or_else(|e| e.into_inner()) = Some(progress);
    Watching(())
}

/// Stops reporting to the installed [`Progress`] when dropped.
#[must_use = "stages are reported only while the guard lives"]
pub struct Watching(());

impl Drop for Watching {
    fn drop(&mut self) {
        *WATCHER.write().unwrap_or_else(|e| e.into_inner()) = None;
    }
}

fn current() -> Option<Arc<dyn Progress>> {
    WATCHER.read().unwrap_or_else(|e| e.into_inner()).clone()
}

/// Reports that the work entered the stage `name`.
pub fn stage(name: &str) {
    if let Some(p) = current() {
        p.stage(name);
    }
}

/// Whether anything draws progress (a worker's log is then passed through
/// [`suspend`] instead of written straight to the terminal).
pub fn is_watched() -> bool {
    current().is_some()
}

/// Runs `write` with the progress indicator (if any) out of the way.
pub fn suspend(mut write: impl FnMut()) {
    match current() {
        Some(p) => p.suspend(&mut write),
        None => write(),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    #[derive(Default)]
    struct Recorder {
        stages: Mutex<Vec<String>>,
        suspended: Mutex<usize>,
    }

    impl Progress for Recorder {
        fn stage(&self, name: &str) {
            self.stages.lock().unwrap().push(name.to_owned());
        }
        fn suspend(&self, write: &mut dyn FnMut()) {
            *self.suspended.lock().unwrap() += 1;
            write();
        }
    }

    #[test]
    fn stages_reach_the_watcher_only_while_it_is_installed() {
        let recorder = Arc::new(Recorder::default());
        stage("before");
        {
            let _w = watch(recorder.clone());
            assert!(is_watched());
            stage("load");
            let mut wrote = false;
            suspend(|| wrote = true);
            assert!(wrote, "the line is written while suspended");
        }
        assert!(!is_watched());
        stage("after");
        let mut wrote = false;
        suspend(|| wrote = true);
        assert!(wrote, "with no watcher the line is written directly");
        // Other tests of the library may report stages meanwhile: only ours are judged.
        let stages = recorder.stages.lock().unwrap();
        assert!(stages.iter().any(|s| s == "load"), "{stages:?}");
        assert!(
            !stages.iter().any(|s| s == "before" || s == "after"),
            "{stages:?}"
        );
        assert!(*recorder.suspended.lock().unwrap() >= 1);
    }
}
