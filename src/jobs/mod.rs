//! Scheduled jobs: the configuration (`config`), cron and catch-up (`schedule`), the
//! run ledger (`ledger`), email (`mail`) and the daemon that runs jobs when due
//! (`daemon`).

pub mod config;
pub mod check;
pub mod daemon;
pub mod email;
pub mod job;
pub mod ledger;
pub mod mail;
pub mod schedule;
