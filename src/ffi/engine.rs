//! `pr_engine`: one per Kamailio process (made in `child_init`), holding
//! the engine, the host's callbacks, this process' store, and the one path
//! from a decision to the store ([`EngineBox::apply_store_action`]).

use std::cell::{Cell, RefCell};
use std::ffi::c_void;
use std::sync::Arc;
use std::time::Duration;

use super::host::{RegBuffers, SelfAnswer, SELF_MEMO};
use super::{
    clip, ffi_boundary, free_handle, pr_bytes, pr_config, pr_is_self_fn, pr_lookup_fn, pr_status,
    to_handle, try_handle, try_handle_mut, try_mut, write_text, Castable,
};
use crate::engine::{Decision, Engine, Host, StoreAction};
use crate::log::{self, pr_log_level};
use crate::stats::{Counters, Stat};
use crate::store::fault::{Write, Written};
use crate::store::{self, Cached, Entry, SharedEntry, Store, StoreError};

/// Opaque: a configured engine with the host's callbacks.
pub struct pr_engine {
    _private: [u8; 0],
}

impl Castable for pr_engine {
    type RustType = EngineBox;
}

/// What a `pr_engine` holds.
pub(crate) struct EngineBox {
    pub(crate) engine: Engine,
    pub(crate) lookup: pr_lookup_fn,
    pub(crate) is_self: pr_is_self_fn,
    pub(crate) userdata: *mut c_void,
    /// This process' forwarding store (`pr_engine_open_store`).
    pub(crate) store: Option<Cached>,
    /// When expired entries were last swept (Unix seconds).
    last_sweep: Cell<i64>,
    /// Why the last failed call on this engine failed (for RPC faults).
    last_error: RefCell<String>,
    /// The stored entry the engine read during the current call.
    pub(crate) read: RefCell<Option<Arc<Entry>>>,
    /// Unix time of the current call, read once (0: not read yet).
    pub(crate) now: Cell<i64>,
    /// The host's `is_self` answers of the current second: the same hosts
    /// (the AOR's, the terminals') are asked on every request, and
    /// Kamailio's check_self is costly (it tries each host as an IPv6
    /// address, then walks every socket and alias). Kept one second at most:
    /// a module such as `domain` may change what is "myself" at run time.
    pub(crate) self_hosts: RefCell<Vec<SelfAnswer>>,
    /// The second (Unix time) `self_hosts` belongs to.
    pub(crate) self_hosts_at: Cell<i64>,
    /// Buffers of registrations and branches the engine handed back
    /// (`Host::recycle`, `Host::recycle_branches`), filled again by the
    /// next lookup or branch (`Host::buffer_with`): a registration read
    /// from usrloc, or a branch decided, then costs no allocation (glibc's
    /// malloc, which nothing else in a Kamailio worker calls per message,
    /// stays cold).
    pub(crate) spare_regs: RefCell<RegBuffers>,
}

/// How often a process sweeps expired forwardings, in seconds.
const SWEEP_EVERY: i64 = 60;

impl EngineBox {
    /// Starts a call: forgets what the previous call read and asked.
    pub(crate) fn begin_call(&self) {
        self.read.replace(None);
        self.now.set(0);
    }

    /// Records why a call failed (for `pr_engine_last_error`).
    pub(crate) fn fail(&self, status: pr_status, why: String) -> pr_status {
        *self.last_error.borrow_mut() = why;
        status
    }

    /// Logs a store failure and records it.
    pub(crate) fn store_failed(&self, op: &str, e: &StoreError) -> pr_status {
        let why = format!("forwarding store ({op}): {e}");
        log::emit(pr_log_level::Error, &why);
        self.fail(pr_status::StoreError, why)
    }

    /// This process' store, or `PR_STATUS_STORE_ERROR` without one.
    pub(crate) fn store(&self) -> Result<&Cached, pr_status> {
        self.store.as_ref().ok_or_else(|| {
            self.fail(
                pr_status::StoreError,
                "no forwarding store is open in this process".into(),
            )
        })
    }

    /// The stored entry for (AOR, service), if a store is open. A store
    /// failure is logged and routing goes on without it.
    pub(crate) fn stored_for_key(&self, aor: &str, service: &str) -> Option<SharedEntry> {
        let store = self.store.as_ref()?;
        // A key too long for the store cannot have an entry: nothing to
        // read, and nothing a sender can make the log shout about.
        if aor.len() > crate::store::MAX_KEY_LEN || service.len() > crate::store::MAX_KEY_LEN {
            return None;
        }
        let now = self.now();
        // A failure is logged once per outage by the store's fault
        // handling (`store::fault`), and counted (`store_errors`).
        if now - self.last_sweep.get() >= SWEEP_EVERY {
            self.last_sweep.set(now);
            if let Err(e) = store.sweep(now) {
                self.store_unusable("sweep", &e);
            }
        }
        match store.get_shared(aor, service, now) {
            Ok(entry) => entry,
            Err(e) => {
                self.store_unusable("get", &e);
                None
            }
        }
    }

    /// Records a store failure that the store's fault handling logs once
    /// per outage (an input error, or a store of another process, is
    /// logged here).
    fn store_unusable(&self, op: &str, e: &StoreError) {
        match e {
            StoreError::TooBig { .. }
            | StoreError::Invalid(_)
            | StoreError::WrongProcess { .. } => {
                self.store_failed(op, e);
            }
            _ => {
                self.fail(
                    pr_status::StoreError,
                    format!("forwarding store ({op}): {e}"),
                );
            }
        }
    }

    /// Commits a decision's store action before its branches go to tm:
    /// the one path from a decision to the store. A forgotten entry is the
    /// one the decision read (`read`: it may be the `*` one). While the
    /// store fails the write is queued ([`store::fault`]); the decision's
    /// counters then say what the store did: `forwardings_learned` only
    /// for what was stored (now, or from the queue), `store_errors`,
    /// `store_writes_dropped`.
    pub(crate) fn apply_store_action(&self, d: &mut Decision) {
        let applied = self.read.take();
        let Some(store) = self.store.as_ref() else {
            if matches!(d.store, StoreAction::Learn(_)) {
                // No store in this process: nothing was learned.
                d.counters.sub(Stat::ForwardingsLearned, 1);
            }
            return;
        };
        if let (Some(aor), Some(service)) = (d.aor.as_deref(), d.service.as_deref()) {
            let (write, learn) = match &d.store {
                StoreAction::None => (None, false),
                StoreAction::Learn(learned) => (
                    Some(Write::Put(Entry::learned(
                        aor,
                        service,
                        learned,
                        self.now(),
                    ))),
                    true,
                ),
                StoreAction::Forget => (
                    Some(Write::Remove {
                        aor: aor.to_string(),
                        service: Some(
                            applied
                                .as_deref()
                                .map_or(service, |e| e.service.as_str())
                                .to_string(),
                        ),
                    }),
                    false,
                ),
            };
            let written = write.map(|w| store.write_or_queue(w));
            if learn && written != Some(Written::Stored) {
                // Counted when it lands, if it does.
                d.counters.sub(Stat::ForwardingsLearned, 1);
            }
            match written {
                // Input from a terminal that does not fit: not learned,
                // and no store failure.
                Some(Written::Refused(
                    e @ (StoreError::TooBig { .. } | StoreError::Invalid(_)),
                )) => log::emit(
                    pr_log_level::Warn,
                    &format!(
                        "forwarding of {} not {}: {e}",
                        clip(aor),
                        if learn { "learned" } else { "forgotten" }
                    ),
                ),
                Some(Written::Refused(e)) => self.store_unusable("write", &e),
                _ => {}
            }
        }
        self.count_store_faults(&mut d.counters);
    }

    /// Adds what the store's fault handling counted since the last call.
    pub(crate) fn count_store_faults(&self, c: &mut Counters) {
        let Some(store) = self.store.as_ref() else {
            return;
        };
        let f = store.take_counts();
        if f.is_empty() {
            return;
        }
        c.add(Stat::StoreErrors, f.errors);
        c.add(Stat::ForwardingsLearned, f.learned);
        c.add(Stat::StoreWritesDropped, f.dropped);
    }
}

/// Creates an engine from `cfg` (copied: `cfg` may be freed afterwards) and
/// the host's callbacks, which receive `userdata`. `lookup` NULL: no AOR has
/// contacts; `is_self` NULL: no host is the proxy. Free with
/// `pr_engine_free`. Make one per process, after the fork.
#[no_mangle]
pub extern "C" fn pr_engine_new(
    cfg: *const pr_config,
    lookup: pr_lookup_fn,
    is_self: pr_is_self_fn,
    userdata: *mut c_void,
    out: *mut *mut pr_engine,
) -> pr_status {
    ffi_boundary!(pr_status::Panic, {
        let cfg = try_handle!(cfg, pr_status::NullParameter);
        if out.is_null() {
            return pr_status::NullParameter;
        }
        log::install_panic_hook();
        to_handle(
            Box::new(EngineBox {
                engine: Engine::new(cfg.config.clone()),
                lookup,
                is_self,
                userdata,
                store: None,
                last_sweep: Cell::new(0),
                last_error: RefCell::new(String::new()),
                read: RefCell::new(None),
                now: Cell::new(0),
                self_hosts: RefCell::new(Vec::with_capacity(SELF_MEMO)),
                spare_regs: RefCell::default(),
                self_hosts_at: Cell::new(0),
            }),
            out,
        );
        pr_status::Ok
    })
}

/// Tells the engine Kamailio's per-transaction branch limit (core
/// `max_branches`, 12 by default). 0 is refused.
#[no_mangle]
pub extern "C" fn pr_engine_set_branch_limit(engine: *mut pr_engine, limit: u32) -> pr_status {
    ffi_boundary!(pr_status::Panic, {
        let e = try_handle_mut!(engine, pr_status::NullParameter);
        if limit == 0 {
            return pr_status::InvalidArgument;
        }
        e.engine.branch_limit = limit as usize;
        pr_status::Ok
    })
}

/// The configured `branch_timeout` in milliseconds (0 for NULL).
#[no_mangle]
pub extern "C" fn pr_engine_branch_timeout_ms(engine: *const pr_engine) -> u32 {
    ffi_boundary!(0, {
        let e = try_handle!(engine, 0);
        e.engine.config.branch_timeout_ms
    })
}

/// Opens this process' forwarding store at the configured `store` path
/// (SQLite, WAL mode; the parent folder is created if missing). Call it in
/// each process after Kamailio forks (child_init): a store is never used
/// across a fork. Without a store, forwardings are neither learned nor
/// applied. `PR_STATUS_STORE_ERROR` (reason logged, and in
/// `pr_engine_last_error`) if it cannot be opened or written.
#[no_mangle]
pub extern "C" fn pr_engine_open_store(engine: *mut pr_engine) -> pr_status {
    ffi_boundary!(pr_status::Panic, {
        let e = try_handle_mut!(engine, pr_status::NullParameter);
        let timeout = Duration::from_millis(u64::from(e.engine.config.store_timeout_ms));
        match store::open_with(&e.engine.config.store, timeout) {
            Ok(s) => {
                e.store = Some(s);
                // The first sweep a minute from now, not in the first
                // request: a store that fails at start is not written to
                // by a request that learned nothing.
                e.begin_call();
                e.last_sweep.set(e.now());
                pr_status::Ok
            }
            Err(err) => e.store_failed("open", &err),
        }
    })
}

/// Copies why the last failed call on `engine` failed (empty if none) into
/// `buf` (`len` bytes); `*out_n` receives its length.
#[no_mangle]
pub extern "C" fn pr_engine_last_error(
    engine: *const pr_engine,
    buf: *mut u8,
    len: usize,
    out_n: *mut usize,
) -> pr_status {
    ffi_boundary!(pr_status::Panic, {
        let e = try_handle!(engine, pr_status::NullParameter);
        let text = e.last_error.borrow();
        write_text(&text, buf, len, out_n)
    })
}

/// Adds to `counters` (`n` numbers, indexed by `pr_stat`; `n` must be
/// `PR_STAT_COUNT`) what this process' store counted outside a decision
/// since the last call (`store_errors` of the RPC commands, queued writes
/// that landed or were dropped), and resets those counts. For the RPC
/// process, which makes no decisions: a decision's view already carries
/// them.
#[no_mangle]
pub extern "C" fn pr_engine_take_counters(
    engine: *const pr_engine,
    counters: *mut u32,
    n: usize,
) -> pr_status {
    ffi_boundary!(pr_status::Panic, {
        let e = try_handle!(engine, pr_status::NullParameter);
        if counters.is_null() {
            return pr_status::NullParameter;
        }
        if n != crate::stats::PR_STAT_COUNT {
            return pr_status::InvalidArgument;
        }
        let mut c = Counters::default();
        e.count_store_faults(&mut c);
        // SAFETY: non-NULL, and the caller promises `n` writable numbers.
        let out = unsafe { std::slice::from_raw_parts_mut(counters, n) };
        for (o, v) in out.iter_mut().zip(c.0) {
            *o = o.saturating_add(v);
        }
        pr_status::Ok
    })
}

/// The forwarding store as this process sees it, for `push_redirect.stats`
/// (`pr_engine_store_state`). The byte strings are static.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct pr_store_state {
    /// The kind of store: `sqlite`; `none` without a store.
    pub backend: pr_bytes,
    /// `ok`; `failing` (an outage: this process's, or one another process
    /// of the host logged); `closed` (this process could not open it
    /// again yet).
    pub state: pr_bytes,
    /// Unix time the host's current outage began; 0: none.
    pub failing_since: i64,
    /// Writes this process keeps queued until the store works again.
    pub queued: usize,
}

/// Describes this process' store into `*out`.
#[no_mangle]
pub extern "C" fn pr_engine_store_state(
    engine: *const pr_engine,
    out: *mut pr_store_state,
) -> pr_status {
    ffi_boundary!(pr_status::Panic, {
        let e = try_handle!(engine, pr_status::NullParameter);
        let out = try_mut!(out, pr_status::NullParameter);
        let st = e.store.as_ref().map(|s| s.faults().status());
        let state = match st {
            None => "closed",
            Some(s) if !s.open => "closed",
            Some(s) if s.outage || s.host_outage_since != 0 => "failing",
            Some(_) => "ok",
        };
        *out = pr_store_state {
            backend: pr_bytes::of(st.map_or("none", |s| s.kind).as_bytes()),
            state: pr_bytes::of(state.as_bytes()),
            failing_since: st.map_or(0, |s| i64::try_from(s.host_outage_since).unwrap_or(0)),
            queued: st.map_or(0, |s| s.queued),
        };
        pr_status::Ok
    })
}

/// Frees an engine. NULL is ignored.
#[no_mangle]
pub extern "C" fn pr_engine_free(engine: *mut pr_engine) {
    ffi_boundary!((), {
        drop(free_handle(engine));
    })
}
