//! cxreport: customer-support and product-usage data in, decision-ready reports out.
//!
//! Layers, imports flowing one way (`docs/architecture.md` has the picture):
//! `cli → jobs → run → reports → {render, intercom, stats, source}`; `demo` generates
//! the built-in database, `clock` is the injected time every layer may read and
//! `progress` the stage of long work every layer may report, `suggest` the
//! "did you mean" every layer may offer, and `exit` the exit codes and whose move
//! an error asks for, which every layer's errors declare.

pub mod cli;
pub mod clock;
pub mod demo;
pub mod exit;
pub mod intercom;
pub mod jobs;
pub mod progress;
pub mod render;
pub mod reports;
pub mod run;
pub mod source;
pub mod stats;
pub mod suggest;

/// The tool's version, printed in manifests and reproducibility appendices.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
