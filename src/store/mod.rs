//! The forwarding store (SPEC §2 flows F5–F7, §4 `store`).
//!
//! Being split into one file per concern; for now everything is in
//! [`sqlite`] and re-exported here.

pub mod generation;
pub mod sqlite;

pub use sqlite::*;
