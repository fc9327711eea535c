//! cxreport: customer-support and product-usage data in, decision-ready reports out.
//!
//! One module per stage of a run, named for what it does; `pipeline` puts them in order.

pub mod charts;
pub mod clock;
pub mod config;
pub mod daemon;
pub mod data;
pub mod demo;
pub mod edition;
pub mod ledger;
pub mod mail;
pub mod metrics;
pub mod narrative;
pub mod output;
pub mod pdf;
pub mod pipeline;
pub mod reports;
pub mod schedule;
pub mod timestamp;
pub mod window;

/// The tool's version, printed in manifests and reproducibility appendices.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
