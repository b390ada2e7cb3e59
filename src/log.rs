//! Logging through the host: Rust never writes to stdout or stderr. The
//! module registers a callback that forwards to Kamailio's `LM_*` macros;
//! with no callback, messages are dropped.
//!
//! The callback is kept in a process-wide slot. Kamailio forks its workers
//! after `mod_init`, so each process has its own copy of the slot; the
//! callback is a plain function pointer and stays valid in every child.

use std::ffi::c_void;
use std::sync::{Once, RwLock};

/// Log levels, as in Kamailio (`L_ERR` ... `L_DBG`). Part of the C ABI.
#[allow(non_camel_case_types)]
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum pr_log_level {
    /// LM_ERR
    Error = 1,
    /// LM_WARN
    Warn = 2,
    /// LM_INFO
    Info = 3,
    /// LM_DBG
    Debug = 4,
}

/// The host's log function: `userdata` as registered, the level, and the
/// message (UTF-8, not NUL-terminated, valid only during the call).
#[allow(non_camel_case_types)]
pub type pr_log_fn = Option<
    unsafe extern "C" fn(userdata: *mut c_void, level: pr_log_level, msg: *const u8, len: usize),
>;

#[derive(Clone, Copy)]
struct Sink {
    cb: unsafe extern "C" fn(*mut c_void, pr_log_level, *const u8, usize),
    userdata: *mut c_void,
    max: pr_log_level,
}

// SAFETY: the host promises (see `pr_set_logger`) that the callback may be
// called from any thread with this userdata; the pointer itself is only
// passed back to the host, never dereferenced by Rust.
unsafe impl Send for Sink {}
// SAFETY: as above; the sink is immutable once stored.
unsafe impl Sync for Sink {}

static SINK: RwLock<Option<Sink>> = RwLock::new(None);
static HOOK: Once = Once::new();

/// Installs (or, with `None`, removes) the host's log callback.
pub fn set(cb: pr_log_fn, userdata: *mut c_void, max: pr_log_level) {
    install_panic_hook();
    let sink = cb.map(|cb| Sink { cb, userdata, max });
    match SINK.write() {
        Ok(mut g) => *g = sink,
        Err(p) => *p.into_inner() = sink,
    }
}

/// Routes panic messages to the log instead of stderr. Idempotent.
pub fn install_panic_hook() {
    HOOK.call_once(|| {
        std::panic::set_hook(Box::new(|info| {
            let at = info
                .location()
                .map(|l| format!(" at {}:{}", l.file(), l.line()))
                .unwrap_or_default();
            let what = info
                .payload()
                .downcast_ref::<&str>()
                .copied()
                .or_else(|| info.payload().downcast_ref::<String>().map(String::as_str))
                .unwrap_or("(no message)");
            emit(
                pr_log_level::Error,
                &format!("internal error (panic caught): {what}{at}"),
            );
        }));
    });
}

/// Whether a message at `level` would be delivered.
pub fn enabled(level: pr_log_level) -> bool {
    let g = match SINK.read() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    };
    g.is_some_and(|s| level <= s.max)
}

/// Sends one message to the host, if a callback is set and the level is on.
pub fn emit(level: pr_log_level, msg: &str) {
    let sink = match SINK.read() {
        Ok(g) => *g,
        Err(p) => *p.into_inner(),
    };
    if let Some(s) = sink.filter(|s| level <= s.max) {
        // SAFETY: `cb` was registered by the host through `pr_set_logger`,
        // whose contract is that it accepts this userdata and a (ptr, len)
        // message valid for the duration of the call, which `msg` is.
        unsafe { (s.cb)(s.userdata, level, msg.as_ptr(), msg.len()) }
    }
}
