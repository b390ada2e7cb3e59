//! End-to-end harness: a real Kamailio (foreground, own process group) plus
//! sipp terminals (UAS), a sipp REGISTER UAC and a sipp sender UAC, all on
//! 127.0.0.1. std only.
//!
//! ```ignore
//! let case = Case::new("redirect_302");
//! let proxy = case.proxy("stock-uac-redirect.cfg").start();
//! let t2 = case.terminal("t2", Answer::Ok);
//! let t1 = case.terminal("t1", Answer::Redirect302(t2.uri()));
//! case.register(&proxy, AOR, &t1, 1.0, 3600);
//! let r = case.send(&proxy, Send::message(AOR).count(50));
//! case.report(&r, &[&t1, &t2]);
//! assert_eq!(r.count(200), 50);
//! assert_eq!(t1.wait_received(50), 50);
//! assert_eq!(t2.wait_received(50), 50);
//! ```
//!
//! Counting:
//! - a terminal's `received()` is the number of distinct requests (Call-ID +
//!   top Via branch) in its sipp message log (`-trace_msg`), which sipp
//!   flushes per message: the proxy's retransmissions of one branch count
//!   once, a second branch of the same transaction to the same terminal
//!   counts again. `handled()` is the number of `<log>` lines its scenario
//!   wrote (requests that started a new sipp call).
//! - the sender's result comes from its `<log>` lines (one `FINAL <code>`
//!   line per request that got a final response: exact counts per code), its
//!   final statistics file (`-trace_stat`: successful / failed / timeouts /
//!   unexpected), its exit code, and its `-trace_err` file (the status lines
//!   of responses the scenario did not list).
//!
//! Every wait is bounded; every process started is killed and reaped on Drop
//! (Kamailio: its whole process group, which it leads; sipp: the one PID).
//!
//! Environment: `E2E_DIR` (default `$CARGO_MANIFEST_DIR/tests/e2e`),
//! `E2E_TMP` (default `$TMPDIR/push_redirect-e2e`), `E2E_KEEP=1` keeps the
//! case directories of passing tests too (failing ones are always kept),
//! `KAMAILIO` / `SIPP` / `KAMCMD` (binaries, default from PATH or /usr/sbin),
//! `E2E_PR_MODULE` (the push_redirect.so, default `build/push_redirect.so`),
//! `E2E_SLOW=k` (Kamailio under valgrind): senders send k times slower and
//! wait k times longer for each final response; the counts checked stay
//! the same.
//!
//! Files, by concern: `case.rs` (a case's folder and its factory methods),
//! `proxy.rs` (the proxy under test), `terminal.rs` (sipp UAS terminals and
//! the requests they received), `sender.rs` (the sender and its results),
//! `register.rs` (REGISTERs), `tls.rs` (the test CA and the TLS terminal),
//! `net.rs` (ports, transports), `process.rs` (bounded waits, child
//! processes, process groups).
#![allow(dead_code)]

mod case;
mod mi;
mod net;
mod opensips;
mod process;
mod proxy;
mod register;
mod sender;
mod terminal;
mod tls;

pub use case::*;
pub use mi::*;
pub use net::*;
pub use opensips::*;
pub use process::{group_pids, run_bounded, write_file};
pub use proxy::*;
pub use register::*;
pub use sender::*;
pub use terminal::*;
// TlsFiles: named by no case (they call case.tls_files())
#[allow(unused_imports)]
pub use tls::*;

use std::path::{Path, PathBuf};

pub const AOR: &str = "sip:u1@example.com";

// ------------------------------------------------------------------ paths, tools

/// The path in environment variable `env`, else `rel` under the crate.
fn env_path(env: &str, rel: &str) -> PathBuf {
    match std::env::var_os(env) {
        Some(p) => PathBuf::from(p),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join(rel),
    }
}

/// `tests/e2e` (scenarios/, cfg/).
pub fn e2e_dir() -> PathBuf {
    env_path("E2E_DIR", "tests/e2e")
}

pub fn scenario(name: &str) -> PathBuf {
    e2e_dir().join("scenarios").join(name)
}

fn tool(env: &str, name: &str) -> PathBuf {
    if let Some(p) = std::env::var_os(env) {
        return PathBuf::from(p);
    }
    let path = std::env::var("PATH").unwrap_or_default();
    for dir in path
        .split(':')
        .chain(["/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin"])
    {
        let p = Path::new(dir).join(name);
        if p.is_file() {
            return p;
        }
    }
    PathBuf::from(name)
}

/// The push_redirect.so under test: `E2E_PR_MODULE`, else
/// `build/push_redirect.so` (`make test-versions` builds one per Kamailio
/// version, `build/<version>/push_redirect.so`). Under
/// `E2E_PROXY=opensips`, the OpenSIPS module: `E2E_PR_OPENSIPS_MODULE`,
/// else `build/opensips/push_redirect.so` (`make opensips`).
pub fn pr_module_path() -> PathBuf {
    match proxy_kind() {
        ProxyKind::Kamailio => env_path("E2E_PR_MODULE", "build/push_redirect.so"),
        ProxyKind::Opensips => {
            env_path("E2E_PR_OPENSIPS_MODULE", "build/opensips/push_redirect.so")
        }
    }
}

pub fn kamailio_bin() -> PathBuf {
    tool("KAMAILIO", "kamailio")
}
pub fn sipp_bin() -> PathBuf {
    tool("SIPP", "sipp")
}
pub fn kamcmd_bin() -> PathBuf {
    tool("KAMCMD", "kamcmd")
}

/// Panics with a clear message when the proxy under test or sipp is missing.
pub fn require_tools() {
    let proxy = match proxy_kind() {
        ProxyKind::Kamailio => (kamailio_bin(), "kamailio"),
        ProxyKind::Opensips => (
            opensips_bin(),
            "an OpenSIPS build (make test-opensips OPENSIPS_TARBALL=...)",
        ),
    };
    for (b, pkg) in [proxy, (sipp_bin(), "sip-tester")] {
        if !b.is_file() {
            panic!(
                "{} not found: install {pkg} (make test / make test-opensips does)",
                b.display()
            );
        }
    }
}
