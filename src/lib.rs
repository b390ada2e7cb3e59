//! # push_redirect
//!
//! Forwarding of SIP PUSH requests (out-of-dialog `MESSAGE` / `NOTIFY`)
//! between the terminals of one subscriber, when a terminal answers 3xx,
//! 4xx or nothing (patent EP 2091191; see `SPEC.md`).
//!
//! - [`parser`]: the SIP reply parser (status line, Contact, Expires).
//! - [`uri`]: SIP URIs, as far as target policy needs them.
//! - [`config`]: the module parameters of SPEC §4.
//! - [`engine`]: the pure decision engine (flows F1–F7, rules of §3).
//! - [`ffi`]: the C ABI used by the Kamailio module (`include/push_redirect.h`).
//! - [`log`]: logging through the host (Kamailio's `LM_*`).
//! - [`memo`]: what a transaction carries from one failure round to the next.

#![deny(missing_docs)]
#![deny(clippy::undocumented_unsafe_blocks)]
#![warn(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
#![cfg_attr(
    test,
    allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)
)]

pub mod chars;
pub mod config;
pub mod engine;
pub mod ffi;
pub mod log;
pub mod memo;
pub mod parser;
pub mod uri;
