//! `pr_push_lookup` / `pr_push_redirect`: a decision, and the one view of
//! it the module reads (`pr_decision_view`): the script's return value,
//! the reason, the branches, the memo and the statistics, in one struct.

use std::cell::Cell;
use std::ffi::c_void;

use super::engine::EngineBox;
use super::{
    ffi_boundary, free_handle, pr_bytes, pr_engine, pr_status, slice, to_handle, try_ref, Castable,
};
use crate::config::ForkMode;
use crate::engine::{Branch, Decision, FailedRound, Request};
use crate::log::{self, pr_log_level};
use crate::stats::PR_STAT_COUNT;

/// The request being forwarded, and the script function's `mode`
/// argument. Byte strings are borrowed for the call.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct pr_request {
    /// The method (UTF-8), e.g. `MESSAGE`.
    pub method: pr_bytes,
    /// The Request-URI as received (failure_route: Kamailio's `$ou`).
    pub ruri: pr_bytes,
    /// The To-tag; empty: none (out of dialog).
    pub to_tag: pr_bytes,
    /// The `Event` header body; empty: none.
    pub event: pr_bytes,
    /// The `Content-Type` header body; empty: none.
    pub content_type: pr_bytes,
    /// The Call-ID, for log lines.
    pub call_id: pr_bytes,
    /// `serial` or `parallel` (UTF-8) to override `fork_mode`; empty: the
    /// configured one.
    pub mode: pr_bytes,
    /// The method as Kamailio's `METHOD_*` bit (`msg->REQ_METHOD`): a
    /// registered contact whose `methods` lack it is not a target (0:
    /// unknown, no contact is skipped for its methods).
    pub method_bit: u32,
    /// The bodies of the request's `History-Info` header rows, in order
    /// (`n_history_info` of them; NULL only when that is 0). More than
    /// `PR_MAX_HISTORY_INFO_ROWS` rows: only the count is read, and the
    /// incoming History-Info is not trusted.
    pub history_info: *const pr_bytes,
    /// How many `History-Info` rows the request has.
    pub n_history_info: usize,
    /// The body of the `Privacy` header; empty: none.
    pub privacy: pr_bytes,
}

/// Most `History-Info` rows of a request that are read (see
/// `pr_request.history_info`).
pub const PR_MAX_HISTORY_INFO_ROWS: usize = 8;

// The rows the module passes are the rows the engine reads.
const _: () = assert!(PR_MAX_HISTORY_INFO_ROWS == crate::engine::history::MAX_INCOMING_ROWS);

/// One branch of the transaction (`t->uac[i]`).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct pr_branch {
    /// The Request-URI the branch was sent to.
    pub uri: pr_bytes,
    /// Its final status; 408 for a timeout; 0 while none.
    pub status: u32,
    /// The raw reply received; empty (NULL) for a local or faked reply.
    pub reply: pr_bytes,
    /// Whether the branch is of the round that just failed
    /// (index >= `t->first_branch`).
    pub current_round: bool,
}

/// What `pr_push_redirect` gets besides the request: every branch of the
/// transaction in order (`n_branches` of them, at most
/// `PR_MAX_BRANCHES_IN`), and the memo the previous failure round's view
/// gave (empty in the first one).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct pr_failure {
    /// The branches (NULL only when `n_branches` is 0).
    pub branches: *const pr_branch,
    /// How many.
    pub n_branches: usize,
    /// The previous round's `pr_decision_view.memo`.
    pub memo: pr_bytes,
}

/// Most branches one call may describe.
pub const PR_MAX_BRANCHES_IN: usize = 1024;

/// One new branch. Empty byte strings mean "none".
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct pr_branch_out {
    /// The branch's Request-URI.
    pub uri: pr_bytes,
    /// Its next hop (the registration's received address).
    pub dst_uri: pr_bytes,
    /// Its Path vector.
    pub path: pr_bytes,
    /// Its `+sip.instance`.
    pub instance: pr_bytes,
    /// Its socket, as given by the lookup callback (NULL: none).
    pub socket: *const c_void,
    /// q in thousandths, -1 when unset.
    pub q: i32,
    /// Branch flags to OR into the branch's (the registration's contact
    /// flags, e.g. nathelper's NAT flag; 0 for a target that is not a
    /// registration).
    pub flags: u32,
    /// RFC 5626 reg-id (0 unless `instance` is set).
    pub reg_id: u32,
    /// The registration's usrloc ruid.
    pub ruid: pr_bytes,
    /// The User-Agent of the registration.
    pub user_agent: pr_bytes,
    /// The registration's TCP/TLS connection id, for the branch's `otcpid`
    /// (0: none).
    pub conn_id: i32,
    /// The value of the `History-Info` header row to add to this branch
    /// (RFC 7044; empty: none, e.g. on push_lookup's first delivery to the
    /// AOR's own contacts; when no branch has a value or a Diversion, the
    /// module adds nothing to the transaction). The request's own rows
    /// stay.
    pub history_info: pr_bytes,
    /// The value of the `Diversion` header to add to this branch
    /// (RFC 5806; empty: none).
    pub diversion: pr_bytes,
}

/// The engine's answer, as the module applies it. Everything borrows from
/// the decision it came with and stays valid until `pr_decision_free`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct pr_decision_view {
    /// What the script function returns: 1 (branches set), -1 (nothing to
    /// do or nothing left), -2 (error or every target refused), -3
    /// (`push_lookup`: registered terminals, none accepts the method).
    pub script_rc: i32,
    /// Why (the engine's `Reason` number, for tests and tools).
    pub reason: u32,
    /// Whether the branches are to be sent at once (true) or one per
    /// round (false).
    pub parallel: bool,
    /// The new branches, in order (`n_branches` of them): in a request
    /// route the first becomes the Request-URI.
    pub branches: *const pr_branch_out,
    /// How many (0 unless `script_rc` is 1).
    pub n_branches: usize,
    /// The memo to keep with the transaction for its next failure round
    /// (empty: keep none, and drop a memo kept earlier).
    pub memo: pr_bytes,
    /// What the decision adds to each statistic, indexed by `pr_stat`.
    pub counters: [u32; PR_STAT_COUNT],
}

/// Whether the service key of a request with this method (`len` bytes,
/// not NUL-terminated) is made of its `Event` header (true: NOTIFY) rather
/// than its `Content-Type` (false): the module parses only the header
/// that `pr_request` needs. false for NULL. Thread-safe.
#[no_mangle]
pub extern "C" fn pr_service_by_event(method: *const u8, len: usize) -> bool {
    ffi_boundary!(false, {
        // SAFETY: (ptr, len) per the contract.
        unsafe { slice(method, len) }.is_ok_and(crate::engine::keyed_by_event)
    })
}

/// Opaque: the engine's answer; read through the `pr_decision_view` the
/// call gave, free with `pr_decision_free`.
pub struct pr_decision {
    _private: [u8; 0],
}

/// What a `pr_decision` holds: the decision, and the branches as C reads
/// them (borrowing from it).
pub(crate) struct DecisionBox {
    pub(crate) decision: Decision,
    view_branches: Vec<pr_branch_out>,
}

impl Castable for pr_decision {
    type RustType = DecisionBox;
}

impl DecisionBox {
    fn view(&mut self) -> pr_decision_view {
        let d = &self.decision;
        self.view_branches.clear();
        self.view_branches
            .extend(d.branches.iter().map(|b| pr_branch_out {
                uri: pr_bytes::of(b.uri()),
                dst_uri: pr_bytes::of_opt(b.dst_uri()),
                path: pr_bytes::of_opt(b.path()),
                instance: pr_bytes::of_opt(b.instance()),
                socket: b.socket as *const c_void,
                q: b.q.map_or(-1, i32::from),
                flags: b.flags,
                reg_id: b.reg_id,
                ruid: pr_bytes::of_opt(b.ruid()),
                user_agent: pr_bytes::of_opt(b.user_agent()),
                conn_id: b.conn_id,
                history_info: pr_bytes::of(&b.history_info),
                diversion: pr_bytes::of(&b.diversion),
            }));
        pr_decision_view {
            script_rc: d.script_rc(),
            reason: d.reason as u32,
            parallel: d.mode == ForkMode::Parallel,
            branches: if self.view_branches.is_empty() {
                std::ptr::null()
            } else {
                self.view_branches.as_ptr()
            },
            n_branches: self.view_branches.len(),
            memo: pr_bytes::of(&d.memo),
            counters: d.counters.0,
        }
    }
}

/// Room for the History-Info rows of one request: one more than are
/// read, so that a request with too many shows it.
type HistoryRows<'a> = [&'a [u8]; PR_MAX_HISTORY_INFO_ROWS + 1];

/// # Safety
/// The (ptr, len) pairs of `req` must be valid for the call.
unsafe fn request<'a>(
    req: &pr_request,
    rows: &'a mut HistoryRows<'a>,
) -> Result<(Request<'a>, Option<ForkMode>, &'a [u8]), pr_status> {
    // SAFETY: forwarded to the caller's promise.
    unsafe {
        let n = req.n_history_info;
        if req.history_info.is_null() && n > 0 {
            return Err(pr_status::NullParameter);
        }
        let read = n.min(rows.len());
        if read > 0 {
            let raw = std::slice::from_raw_parts(req.history_info, read);
            for (slot, b) in rows.iter_mut().zip(raw) {
                *slot = b.get()?;
            }
        }
        let history_info: &'a [&'a [u8]] = rows.get(..read).unwrap_or(&[]);
        // Usually none given: nothing to check as UTF-8.
        let mode = match req.mode.len {
            0 => None,
            _ => match req.mode.text()? {
                "" => None,
                m => Some(ForkMode::parse(m).ok_or(pr_status::InvalidArgument)?),
            },
        };
        Ok((
            Request {
                method: req.method.text()?,
                ruri: req.ruri.get()?,
                has_to_tag: !req.to_tag.get()?.is_empty(),
                event: req.event.get_opt()?,
                content_type: req.content_type.get_opt()?,
                method_bit: req.method_bit,
                history_info,
                privacy: req.privacy.get_opt()?,
            },
            mode,
            req.call_id.get()?,
        ))
    }
}

/// Logs a decision's warnings and reason, naming the transaction.
fn log_decision(d: &Decision, call_id: &[u8]) {
    if d.warnings.is_empty() && !log::enabled(pr_log_level::Debug) {
        return;
    }
    let cid = String::from_utf8_lossy(call_id.get(..128).unwrap_or(call_id));
    for w in &d.warnings {
        log::emit(pr_log_level::Warn, &format!("Call-ID {cid}: {w}"));
    }
    if log::enabled(pr_log_level::Debug) {
        log::emit(
            pr_log_level::Debug,
            &format!(
                "Call-ID {cid}: aor={} service={} rc={} reason={} branches={}",
                d.aor.as_deref().unwrap_or("-"),
                d.service.as_deref().unwrap_or("-"),
                d.script_rc(),
                d.reason,
                d.branches.len()
            ),
        );
    }
}

/// The pointers both calls take, checked: the engine and the request
/// (borrowed), out-pointers that are not NULL.
fn pointers<'a>(
    engine: *const pr_engine,
    req: *const pr_request,
    out: *mut *mut pr_decision,
    view: *mut pr_decision_view,
) -> Result<(&'a EngineBox, &'a pr_request), pr_status> {
    // SAFETY: a non-NULL handle is live and not used elsewhere during the
    // call, a non-NULL request is live for the call (the header's contract).
    let (e, req) = unsafe { (super::handle_ref(engine), req.as_ref()) };
    match (e, req) {
        (Some(e), Some(req)) if !out.is_null() && !view.is_null() => Ok((e, req)),
        _ => Err(pr_status::NullParameter),
    }
}

/// One engine call once the pointers are checked: reads the request, runs
/// `run` into this thread's spare decision (`run` may refuse the rest of
/// its inputs), commits the decision's store action, logs it, and hands it
/// out with its view.
fn decide(
    e: &EngineBox,
    req: &pr_request,
    out: *mut *mut pr_decision,
    view: *mut pr_decision_view,
    run: impl FnOnce(&EngineBox, &Request<'_>, Option<ForkMode>, &mut Decision) -> Result<(), pr_status>,
) -> pr_status {
    let mut rows: HistoryRows<'_> = [&[]; PR_MAX_HISTORY_INFO_ROWS + 1];
    // SAFETY: the request's (ptr, len) pairs are valid per the contract.
    let (req, mode, call_id) = match unsafe { request(req, &mut rows) } {
        Ok(r) => r,
        Err(st) => return st,
    };
    e.begin_call();
    let mut b = spare_decision();
    if let Err(st) = run(e, &req, mode, &mut b.decision) {
        keep_spare(b);
        return st;
    }
    e.apply_store_action(&mut b.decision);
    log_decision(&b.decision, call_id);
    let v = b.view();
    // SAFETY: checked non-NULL by `pointers`; writable by contract.
    unsafe { *view = v };
    to_handle(b, out);
    pr_status::Ok
}

/// `push_lookup()`: the first target(s) for a new PUSH request, from the
/// forwarding stored for the request's (AOR, service) or the AOR's
/// registered terminals. On success `*out` receives a decision to free
/// with `pr_decision_free` and `*view` what it says. Calls the engine's
/// callbacks synchronously, and commits the decision's store action
/// before it returns.
#[no_mangle]
pub extern "C" fn pr_push_lookup(
    engine: *const pr_engine,
    req: *const pr_request,
    out: *mut *mut pr_decision,
    view: *mut pr_decision_view,
) -> pr_status {
    ffi_boundary!(pr_status::Panic, {
        let (e, req) = match pointers(engine, req, out, view) {
            Ok(p) => p,
            Err(st) => return st,
        };
        decide(e, req, out, view, |e, req, mode, d| {
            e.engine.push_lookup_into(e, req, mode, d);
            Ok(())
        })
    })
}

/// `push_redirect()`: the next branch set after a round failed, from the
/// transaction's branches and replies (`failure`). Keep the view's memo
/// with the transaction when branches are added. Otherwise as
/// `pr_push_lookup`.
#[no_mangle]
pub extern "C" fn pr_push_redirect(
    engine: *const pr_engine,
    req: *const pr_request,
    failure: *const pr_failure,
    out: *mut *mut pr_decision,
    view: *mut pr_decision_view,
) -> pr_status {
    ffi_boundary!(pr_status::Panic, {
        // Every pointer is checked before any content is read, and the
        // branches before the request.
        let (e, req) = match pointers(engine, req, out, view) {
            Ok(p) => p,
            Err(st) => return st,
        };
        let failure = try_ref!(failure, pr_status::NullParameter);
        let mut stack = [EMPTY_BRANCH; ON_STACK];
        let mut heap = Vec::new();
        let branches = match read_branches(failure, &mut stack, &mut heap) {
            Ok(b) => b,
            Err(st) => return st,
        };
        decide(e, req, out, view, |e, req, mode, d| {
            // SAFETY: (ptr, len) per the contract.
            let memo = unsafe { slice(failure.memo.ptr, failure.memo.len) }?;
            e.engine
                .push_redirect_into(e, req, &FailedRound { branches, memo }, mode, d);
            Ok(())
        })
    })
}

/// Most transactions have a few branches: described without an
/// allocation.
const ON_STACK: usize = 8;

const EMPTY_BRANCH: Branch<'static> = Branch {
    uri: &[],
    status: 0,
    reply: None,
    current_round: false,
};

/// The transaction's branches as the engine reads them, checked: in
/// `stack` when they fit, else in `heap`.
fn read_branches<'a>(
    failure: &'a pr_failure,
    stack: &'a mut [Branch<'a>; ON_STACK],
    heap: &'a mut Vec<Branch<'a>>,
) -> Result<&'a [Branch<'a>], pr_status> {
    let n = failure.n_branches;
    if failure.branches.is_null() && n > 0 {
        return Err(pr_status::NullParameter);
    }
    if n > PR_MAX_BRANCHES_IN {
        return Err(pr_status::InvalidArgument);
    }
    let raw: &[pr_branch] = if n == 0 {
        &[]
    } else {
        // SAFETY: non-NULL and the caller promises `n_branches` items.
        unsafe { std::slice::from_raw_parts(failure.branches, n) }
    };
    if raw.len() > ON_STACK {
        heap.reserve_exact(raw.len());
    }
    for (i, b) in raw.iter().enumerate() {
        // SAFETY: (ptr, len) pairs per the contract.
        let (uri, reply) = match unsafe { (b.uri.get(), b.reply.get_opt()) } {
            (Ok(u), Ok(r)) => (u, r),
            (Err(st), _) | (_, Err(st)) => return Err(st),
        };
        let Ok(status) = u16::try_from(b.status) else {
            return Err(pr_status::InvalidArgument);
        };
        if status != 0 && !(100..=699).contains(&status) {
            return Err(pr_status::InvalidArgument);
        }
        let branch = Branch {
            uri,
            status,
            reply,
            current_round: b.current_round,
        };
        match stack.get_mut(i) {
            Some(slot) if raw.len() <= ON_STACK => *slot = branch,
            _ => heap.push(branch),
        }
    }
    Ok(if raw.len() <= ON_STACK {
        stack.get(..raw.len()).unwrap_or(&[])
    } else {
        heap
    })
}

/// Frees a decision (its view goes with it). NULL is ignored.
#[no_mangle]
pub extern "C" fn pr_decision_free(d: *mut pr_decision) {
    ffi_boundary!((), {
        if let Some(b) = free_handle(d) {
            keep_spare(b);
        }
    })
}

thread_local! {
    /// The decision this thread freed last, filled again by its next call:
    /// its buffers (the AOR and service strings, the branch lists, the
    /// memo) and its box spare a handful of allocations per call. One per
    /// thread; a Kamailio worker is one thread.
    static SPARE: Cell<Option<Box<DecisionBox>>> = const { Cell::new(None) };
}

/// A decision to fill: this thread's spare one, else a new one.
fn spare_decision() -> Box<DecisionBox> {
    SPARE
        .try_with(Cell::take)
        .ok()
        .flatten()
        .unwrap_or_else(|| {
            Box::new(DecisionBox {
                decision: Decision::new(ForkMode::Serial),
                view_branches: Vec::new(),
            })
        })
}

/// Keeps a freed decision for the next call (a decision kept already, or
/// one freed while the thread ends, is dropped).
fn keep_spare(d: Box<DecisionBox>) {
    let _ = SPARE.try_with(move |s| drop(s.replace(Some(d))));
}
