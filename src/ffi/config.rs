//! `pr_config`: the module parameters, collected from `modparam` in the
//! main process before the engines are made.

use super::{
    ffi_boundary, free_handle, pr_status, text, to_handle, try_handle, try_handle_mut, write_text,
    Castable,
};
use crate::config::Config;
use crate::log::{self, pr_log_level};
use crate::store;

/// Opaque: the module's parameters being collected (`modparam`).
pub struct pr_config {
    _private: [u8; 0],
}

/// What a `pr_config` holds.
pub(crate) struct ConfigBox {
    pub(crate) config: Config,
    last_error: String,
}

impl Castable for pr_config {
    type RustType = ConfigBox;
}

/// Creates a configuration with SPEC §4 defaults into `*out`. Free it with
/// `pr_config_free`.
#[no_mangle]
pub extern "C" fn pr_config_new(out: *mut *mut pr_config) -> pr_status {
    ffi_boundary!(pr_status::Panic, {
        if out.is_null() {
            return pr_status::NullParameter;
        }
        log::install_panic_hook();
        to_handle(
            Box::new(ConfigBox {
                config: Config::default(),
                last_error: String::new(),
            }),
            out,
        );
        pr_status::Ok
    })
}

/// Sets parameter `name` (UTF-8, as in `modparam`) from its textual value
/// (integers as decimal text). On `PR_STATUS_INVALID_CONFIG` nothing changes
/// and `pr_config_last_error` says which parameter and why.
#[no_mangle]
pub extern "C" fn pr_config_set(
    cfg: *mut pr_config,
    name: *const u8,
    name_len: usize,
    value: *const u8,
    value_len: usize,
) -> pr_status {
    ffi_boundary!(pr_status::Panic, {
        let cfg = try_handle_mut!(cfg, pr_status::NullParameter);
        // SAFETY: (ptr, len) pairs per the header's contract.
        let (name, value) = match unsafe { (text(name, name_len), text(value, value_len)) } {
            (Ok(n), Ok(v)) => (n, v),
            (Err(e), _) | (_, Err(e)) => return e,
        };
        match cfg.config.set(name, value) {
            Ok(()) => {
                cfg.last_error.clear();
                pr_status::Ok
            }
            Err(e) => {
                cfg.last_error = e.to_string();
                pr_status::InvalidConfig
            }
        }
    })
}

/// Copies why the most recent `pr_config_set` on `cfg` was refused (empty
/// when it succeeded) into `buf` (`len` bytes); `*out_n` receives its
/// length.
#[no_mangle]
pub extern "C" fn pr_config_last_error(
    cfg: *const pr_config,
    buf: *mut u8,
    len: usize,
    out_n: *mut usize,
) -> pr_status {
    ffi_boundary!(pr_status::Panic, {
        let cfg = try_handle!(cfg, pr_status::NullParameter);
        write_text(&cfg.last_error, buf, len, out_n)
    })
}

/// Checks, in the main process before the fork, that the `store` of `cfg`
/// can be opened and written (creating and migrating it), then closes it.
/// `PR_STATUS_STORE_ERROR` with the reason logged at error level.
#[no_mangle]
pub extern "C" fn pr_config_check_store(cfg: *const pr_config) -> pr_status {
    ffi_boundary!(pr_status::Panic, {
        let cfg = try_handle!(cfg, pr_status::NullParameter);
        match store::open(&cfg.config.store) {
            Ok(s) => {
                drop(s);
                pr_status::Ok
            }
            Err(e) => {
                // who Kamailio runs as, and the command that lets it in
                let hint = store::access::hint(&cfg.config.store)
                    .map(|h| format!("; {h}"))
                    .unwrap_or_default();
                log::emit(
                    pr_log_level::Error,
                    &format!(
                        "modparam \"store\": cannot use {}: {e}{hint}",
                        cfg.config.store
                    ),
                );
                pr_status::StoreError
            }
        }
    })
}

/// Whether the `store` of `cfg` needs a subscriber process per node (a
/// Redis store: the cross-node invalidation of the read caches). false
/// for NULL. Ask it in `mod_init`, to register the process.
#[no_mangle]
pub extern "C" fn pr_config_store_subscriber(cfg: *const pr_config) -> bool {
    ffi_boundary!(false, {
        let cfg = try_handle!(cfg, false);
        wants_subscriber(&cfg.config.store)
    })
}

fn wants_subscriber(store: &str) -> bool {
    store.split_once("://").is_some_and(|(scheme, _)| {
        scheme.eq_ignore_ascii_case("redis") || scheme.eq_ignore_ascii_case("redis+sentinel")
    })
}

/// The node's subscriber process (`pr_config_store_subscriber`): in the
/// process the module forks for it from Kamailio's main process (after
/// the store was checked in `mod_init`, so that the node's shared page
/// exists). Runs until the parent process is gone; returns
/// `PR_STATUS_INVALID_ARGUMENT` at once for a store that needs none,
/// `PR_STATUS_STORE_ERROR` (logged) when it cannot run.
#[no_mangle]
pub extern "C" fn pr_config_run_subscriber(cfg: *const pr_config) -> pr_status {
    ffi_boundary!(pr_status::Panic, {
        let cfg = try_handle!(cfg, pr_status::NullParameter);
        if !wants_subscriber(&cfg.config.store) {
            return pr_status::InvalidArgument;
        }
        let parent = std::os::unix::process::parent_id();
        let timeout = std::time::Duration::from_millis(u64::from(cfg.config.store_timeout_ms));
        let stop = || std::os::unix::process::parent_id() != parent;
        match store::redis::run_subscriber(&cfg.config.store, timeout, &stop) {
            Ok(()) => pr_status::Ok,
            Err(e) => {
                log::emit(
                    pr_log_level::Error,
                    &format!("forwarding store subscriber cannot run: {e}"),
                );
                pr_status::StoreError
            }
        }
    })
}

/// Frees a configuration. NULL is ignored.
#[no_mangle]
pub extern "C" fn pr_config_free(cfg: *mut pr_config) {
    ffi_boundary!((), {
        drop(free_handle(cfg));
    })
}
