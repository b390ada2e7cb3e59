//! # push_redirect
//!
//! Forwarding of SIP PUSH requests (out-of-dialog `MESSAGE` / `NOTIFY`)
//! between the terminals of one subscriber, when a terminal answers 3xx,
//! 4xx or nothing (patent EP 2091191; see `SPEC.md`).
//!
//! - [`parser`]: the SIP reply parser (status line, Contact, Expires).
//! - [`uri`]: SIP URIs, as far as target policy needs them.
//! - [`config`]: the module parameters of SPEC §4.
//! - [`forwarding`]: forwardings (kinds, targets, expiry), shared by the
//!   engine, the memo and the store.
//! - [`engine`]: the pure decision engine (flows F1–F7, rules of §3).
//! - [`ffi`]: the C ABI used by the Kamailio module (`include/push_redirect.h`).
//! - [`stats`]: the statistics, declared once (Rust, C ABI, Kamailio).
//! - [`log`]: logging through the host (Kamailio's `LM_*`).
//! - [`store`]: the forwarding store (F5–F7), per (AOR, service): the
//!   [`store::Store`] trait and [`store::open`], the per-process read cache
//!   in front of any backend ([`store::cache`]), the SQLite backend
//!   ([`store::sqlite`]) and its change counter ([`store::generation`]).

#![deny(missing_docs)]
#![deny(clippy::undocumented_unsafe_blocks)]
#![warn(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
#![cfg_attr(
    test,
    allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)
)]

// The C header is generated from `ffi` and `log` only: the other modules are
// the Rust API, and their constants must not leak into the C namespace.

/// cbindgen:ignore
pub mod chars;
mod clock;
/// cbindgen:ignore
pub mod config;
/// cbindgen:ignore
pub mod engine;
/// cbindgen:ignore
mod enums;
pub mod ffi;
/// cbindgen:ignore
pub mod forwarding;
pub mod log;
/// cbindgen:ignore
pub mod parser;
pub mod stats;
/// cbindgen:ignore
pub mod store;
/// cbindgen:ignore
pub mod uri;
