//! The `loa` command: one binary that runs any Loa service, or all of them in one
//! process (like Loki's monolithic mode), plus operational commands.
//!
//! # Layout
//!
//! - [`production`]: what production mode refuses, and its loopback binds.
//! - [`settings`]: the composite [`Settings`](settings::Settings) of every service.
//! - [`cli`]: command-line parsing and dispatch.
//! - [`runner`]: starting one or all services until a shutdown signal.
//! - [`demo`]: realistic events pushed through intake, and what citizens received.
//! - [`bench`]: `loa bench`, the benchmark harness.
//! - [`chaos`]: `loa chaos`, the fault-injection run and its audit.
//! - [`broadcasts`]: `loa broadcasts …` and `loa subscribers import`, through the
//!   notifier's API.
//! - [`dead_letters`]: `loa dead-letters list|replay`.
//! - [`stats`]: `loa stats`, the province's report through the tracker's API.
//! - [`subjects`]: `loa subjects erase`, a citizen's erasure request to the tracker and
//!   the notifier.
//! - [`console`]: `loa console add-user`.
//! - [`tokens`]: `loa tokens new|hash`.
//! - [`secrets`]: `loa secrets new-key|rotate-key`, the keys of the Zalo tokens at rest.

pub mod bench;
pub mod broadcasts;
pub mod chaos;
pub mod cli;
pub mod console;
pub mod dead_letters;
pub mod demo;
pub mod production;
pub mod runner;
pub mod secrets;
pub mod settings;
pub mod stats;
pub mod subjects;
pub mod tokens;
