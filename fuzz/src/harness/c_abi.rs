//! `c_abi`: the `extern "C"` functions of `push_redirect::ffi`, driven from
//! Rust as the Kamailio module drives them, with arbitrary contents:
//! `pr_config_set` with any names and values (NULL, not UTF-8...),
//! `pr_push_lookup` / `pr_push_redirect` with arbitrary `pr_request` /
//! `pr_branch` contents, every byte string a `(ptr, len)` into an owned
//! buffer (or NULL with some length), memo bytes (or the memo of the
//! previous decision), mode strings, a stored forwarding; then every
//! accessor of each decision and every `_free`. The lookup and is_self
//! callbacks answer from the case. The forwarding store is never opened;
//! the RPC functions are only called for their argument checks.
//!
//! Oracles: no status is ever `PR_STATUS_PANIC` and no panic is logged
//! (the library catches panics and reports them through the logger); each
//! status is the one the header documents for those arguments; and each
//! decision is field by field the one the Rust API makes from the same
//! inputs (a differential check of the C layer).

use std::cell::RefCell;
use std::ffi::{c_void, CStr};
use std::fmt::Write as _;
use std::ptr::{null, null_mut};

use push_redirect::config::{Config, ForkMode};
use push_redirect::engine::{
    Branch, Decision, Engine, Env, ForwardTarget, Forwarding, ForwardingKind, Learned, LookupError,
    Registration, Request, StoreAction,
};
use push_redirect::ffi::*;
use push_redirect::log::pr_log_level;

use super::text::{self, field};

/// A `(ptr, len)` argument.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Slice {
    /// `ptr` NULL, with this `len` (0 is the empty string; more must be
    /// refused with `PR_STATUS_NULL_PARAMETER`).
    Null(usize),
    /// `len` bytes at `off` in an owned buffer (both clamped to it).
    Buf {
        /// The buffer.
        buf: Vec<u8>,
        /// Where the bytes start.
        off: usize,
        /// How many.
        len: usize,
    },
}

impl Slice {
    /// A slice over exactly these bytes.
    pub fn of(b: &[u8]) -> Slice {
        Slice::Buf {
            buf: b.to_vec(),
            off: 0,
            len: b.len(),
        }
    }

    fn window(&self) -> Option<(&[u8], usize, usize)> {
        match self {
            Slice::Null(_) => None,
            Slice::Buf { buf, off, len } => {
                let off = (*off).min(buf.len());
                let len = (*len).min(buf.len() - off);
                Some((buf, off, len))
            }
        }
    }

    /// The argument.
    pub fn raw(&self) -> pr_bytes {
        match (self, self.window()) {
            (Slice::Null(len), _) => pr_bytes {
                ptr: null(),
                len: *len,
            },
            (_, Some((buf, off, len))) => pr_bytes {
                ptr: buf.as_ptr().wrapping_add(off),
                len,
            },
            _ => unreachable!(),
        }
    }

    /// What the library must read (the contract of `slice` in ffi.rs).
    pub fn content(&self) -> Result<&[u8], pr_status> {
        match (self, self.window()) {
            (Slice::Null(0), _) => Ok(&[]),
            (Slice::Null(_), _) => Err(pr_status::NullParameter),
            (_, Some((buf, off, len))) => Ok(&buf[off..off + len]),
            _ => unreachable!(),
        }
    }

    /// Like `content`, as UTF-8 text.
    pub fn text(&self) -> Result<&str, pr_status> {
        std::str::from_utf8(self.content()?).map_err(|_| pr_status::InvalidUtf8)
    }

    /// Like `content`, `None` for the empty string (`get_opt`).
    pub fn opt(&self) -> Result<Option<&[u8]>, pr_status> {
        self.content().map(|c| (!c.is_empty()).then_some(c))
    }

    fn to_text(&self) -> String {
        match self {
            Slice::Null(len) => format!("N{len}"),
            Slice::Buf { buf, off, len } => format!("B{off},{len}={}", text::escape(buf)),
        }
    }

    fn from_text(f: &str) -> Result<Slice, String> {
        if let Some(n) = f.strip_prefix('N') {
            return Ok(Slice::Null(text::get_num(n)?));
        }
        let rest = f.strip_prefix('B').ok_or(format!("slice {f:?}"))?;
        let (pos, data) = rest.split_once('=').ok_or(format!("slice {f:?}"))?;
        let (off, len) = pos.split_once(',').ok_or(format!("slice {f:?}"))?;
        Ok(Slice::Buf {
            buf: text::unescape(data)?,
            off: text::get_num(off)?,
            len: text::get_num(len)?,
        })
    }
}

/// One contact the lookup callback reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContactC {
    /// Reported only for this AOR (None: for every AOR).
    pub aor: Option<Vec<u8>>,
    /// `pr_contact.uri`.
    pub uri: Slice,
    /// `pr_contact.received`.
    pub received: Slice,
    /// `pr_contact.path`.
    pub path: Slice,
    /// `pr_contact.instance`.
    pub instance: Slice,
    /// `pr_contact.socket`, as a number.
    pub socket: usize,
    /// `pr_contact.q`.
    pub q: i32,
    /// `pr_contact.last_modified`.
    pub last_modified: i64,
}

/// One `pr_branch`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BranchC {
    /// `uri`.
    pub uri: Slice,
    /// `status`.
    pub status: u32,
    /// `reply`.
    pub reply: Slice,
    /// `current_round`.
    pub current: bool,
}

/// The memo argument of a `pr_push_redirect`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MemoC {
    /// These bytes.
    Bytes(Slice),
    /// The memo of the previous decision of the case.
    Previous,
}

/// One call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallC {
    /// `pr_push_lookup`.
    Lookup {
        /// `mode`.
        mode: Slice,
        /// Whether the case's forwarding is passed as `stored`.
        stored: bool,
    },
    /// `pr_push_redirect`.
    Redirect {
        /// `mode`.
        mode: Slice,
        /// Whether the case's forwarding is passed as `stored`.
        stored: bool,
        /// `memo`.
        memo: MemoC,
        /// `branches` passed as NULL (with their count).
        null_branches: bool,
        /// 1025 branches instead (over `PR_MAX_BRANCHES_IN`).
        oversize: bool,
        /// The branches.
        branches: Vec<BranchC>,
    },
    /// `pr_rpc_set` (argument checks: no store is open).
    RpcSet([Slice; 4]),
    /// `pr_rpc_remove` (argument checks).
    RpcRemove([Slice; 2]),
    /// `pr_rpc_list` (argument checks).
    RpcList(Slice),
}

/// The stored forwarding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredC {
    /// `kind` for `pr_forwarding_new`.
    pub kind: u32,
    /// `expires_at`.
    pub expires_at: i64,
    /// `pr_forwarding_add_target` calls.
    pub targets: Vec<(Slice, i32)>,
}

/// Whether a callback is NULL, answers, or (lookup) fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Callback {
    /// NULL.
    Null,
    /// Set, answering from the case.
    Answer,
    /// Set, failing (lookup: reports contacts, then returns -1).
    Fail,
}

/// One C ABI scenario.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Case {
    /// `pr_set_logger` level.
    pub log_level: u32,
    /// Size of the caller buffers for text (`pr_*_text`, `_last_error`).
    pub text_len: usize,
    /// `pr_status_text` / `pr_reason_text` arguments.
    pub probes: Vec<u32>,
    /// `pr_config_set` calls.
    pub config: Vec<(Slice, Slice)>,
    /// Free the configuration right after `pr_engine_new`.
    pub free_config_early: bool,
    /// The lookup callback.
    pub lookup: Callback,
    /// What it reports.
    pub contacts: Vec<ContactC>,
    /// It reports this many contacts per lookup, cycling through the
    /// matching ones (0: each once).
    pub contact_repeat: usize,
    /// The is_self callback (`Fail` is read as `Answer`).
    pub is_self: Callback,
    /// Its hosts and ports (0: any port).
    pub own: Vec<(Vec<u8>, u16)>,
    /// `pr_engine_set_branch_limit`, if called.
    pub branch_limit: Option<u32>,
    /// `pr_request`: method, ruri, to_tag, event, content_type, call_id.
    pub request: [Slice; 6],
    /// Pass the request as NULL.
    pub null_request: bool,
    /// The stored forwarding, made before the calls.
    pub stored: Option<StoredC>,
    /// The calls, in order.
    pub calls: Vec<CallC>,
}

// ------------------------------------------------------------ callbacks

thread_local! {
    /// Panic messages the library logged on this thread.
    static PANICS: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
    /// Log messages that were not UTF-8 (the logger's contract says UTF-8).
    static BAD_LOGS: RefCell<usize> = const { RefCell::new(0) };
}

unsafe extern "C" fn log_cb(_ud: *mut c_void, _level: pr_log_level, msg: *const u8, len: usize) {
    let m = if len == 0 {
        &[][..]
    } else {
        // SAFETY: the library passes a (ptr, len) message valid for the call.
        unsafe { std::slice::from_raw_parts(msg, len) }
    };
    let Ok(m) = std::str::from_utf8(m) else {
        BAD_LOGS.with(|b| *b.borrow_mut() += 1);
        return;
    };
    if m.contains("panic caught") {
        eprintln!("push_redirect log: {m}");
        PANICS.with(|p| p.borrow_mut().push(m.to_string()));
    }
}

/// Fails if the library caught (and logged) a panic since the last call.
fn no_caught_panic(what: &str) {
    let p = PANICS.with(|p| std::mem::take(&mut *p.borrow_mut()));
    assert!(p.is_empty(), "{what}: the library caught a panic: {p:?}");
    let bad = BAD_LOGS.with(|b| std::mem::take(&mut *b.borrow_mut()));
    assert_eq!(bad, 0, "{what}: a log message was not UTF-8");
}

/// The callbacks' user data.
struct Host<'c> {
    case: &'c Case,
    /// Contract breaches seen inside callbacks (a panic there would abort).
    errors: RefCell<Vec<String>>,
}

impl Host<'_> {
    /// The contacts reported for `aor`, in order.
    fn reported(&self, aor: &[u8]) -> Vec<&ContactC> {
        let matching: Vec<&ContactC> = self
            .case
            .contacts
            .iter()
            .filter(|c| c.aor.as_deref().is_none_or(|a| a == aor))
            .collect();
        if matching.is_empty() || self.case.contact_repeat == 0 {
            return matching;
        }
        matching
            .iter()
            .cycle()
            .take(self.case.contact_repeat)
            .copied()
            .collect()
    }

    /// The registrations the engine must see for `aor`: what
    /// `pr_contact_sink_add` accepts (its expected status alongside).
    fn accepted(&self, aor: &[u8]) -> Vec<(pr_status, Option<Registration>)> {
        let mut n = 0;
        self.reported(aor)
            .into_iter()
            .map(|c| {
                let fields = (
                    c.uri.content(),
                    c.received.opt(),
                    c.path.opt(),
                    c.instance.opt(),
                );
                let (uri, received, path, instance) = match fields {
                    (Ok(u), Ok(r), Ok(p), Ok(i)) => (u, r, p, i),
                    (Err(e), ..) | (_, Err(e), ..) | (_, _, Err(e), _) | (.., Err(e)) => {
                        return (e, None)
                    }
                };
                if uri.is_empty() || !(-1..=1000).contains(&c.q) {
                    return (pr_status::InvalidArgument, None);
                }
                if n >= PR_MAX_CONTACTS_PER_AOR {
                    return (pr_status::Ok, None);
                }
                n += 1;
                let reg = Registration {
                    uri: uri.to_vec(),
                    received: received.map(<[u8]>::to_vec),
                    path: path.map(<[u8]>::to_vec),
                    instance: instance.map(<[u8]>::to_vec),
                    socket: c.socket,
                    q: u16::try_from(c.q).ok(),
                    last_modified: c.last_modified,
                };
                (pr_status::Ok, Some(reg))
            })
            .collect()
    }

    fn is_self(&self, host: &[u8], port: u16) -> bool {
        self.case
            .own
            .iter()
            .any(|(h, p)| host.eq_ignore_ascii_case(h) && (*p == 0 || port == 0 || *p == port))
    }
}

unsafe extern "C" fn lookup_cb(
    ud: *mut c_void,
    aor: *const u8,
    aor_len: usize,
    sink: *mut pr_contact_sink,
) -> i32 {
    // SAFETY: `ud` is the `Host` given to pr_engine_new, alive for the run.
    let host = unsafe { &*(ud as *const Host<'_>) };
    // SAFETY: the library passes a (ptr, len) AOR valid for the call.
    let aor = unsafe { std::slice::from_raw_parts(aor, aor_len) };
    let err = |m: String| host.errors.borrow_mut().push(m);
    if std::str::from_utf8(aor).is_err() {
        err(format!("lookup of an AOR that is not UTF-8: {aor:?}"));
    }
    // Misuse is refused, not crashed on.
    let empty = pr_contact {
        uri: Slice::Null(0).raw(),
        received: Slice::Null(0).raw(),
        path: Slice::Null(0).raw(),
        instance: Slice::Null(0).raw(),
        socket: null(),
        q: -1,
        last_modified: 0,
    };
    if pr_contact_sink_add(sink, null()) != pr_status::NullParameter
        || pr_contact_sink_add(null_mut(), &empty) != pr_status::NullParameter
    {
        err("pr_contact_sink_add accepted a NULL argument".into());
    }
    let reported = host.reported(aor);
    let want = host.accepted(aor);
    for (c, (want, _)) in reported.iter().zip(want) {
        let raw = pr_contact {
            uri: c.uri.raw(),
            received: c.received.raw(),
            path: c.path.raw(),
            instance: c.instance.raw(),
            socket: c.socket as *const c_void,
            q: c.q,
            last_modified: c.last_modified,
        };
        let got = pr_contact_sink_add(sink, &raw);
        if got != want {
            err(format!(
                "pr_contact_sink_add({c:?}) = {got:?}, want {want:?}"
            ));
        }
    }
    match host.case.lookup {
        Callback::Fail => -1,
        _ => 0,
    }
}

unsafe extern "C" fn is_self_cb(ud: *mut c_void, host: *const u8, len: usize, port: u16) -> bool {
    // SAFETY: as in lookup_cb.
    let h = unsafe { &*(ud as *const Host<'_>) };
    // SAFETY: the library passes a (ptr, len) host valid for the call.
    let name = unsafe { std::slice::from_raw_parts(host, len) };
    h.is_self(name, port)
}

/// The same host, for the Rust API.
struct Mirror<'h, 'c>(&'h Host<'c>);

impl Env for Mirror<'_, '_> {
    fn lookup(&self, aor: &str) -> Result<Vec<Registration>, LookupError> {
        match self.0.case.lookup {
            Callback::Answer => Ok(self
                .0
                .accepted(aor.as_bytes())
                .into_iter()
                .filter_map(|(_, r)| r)
                .collect()),
            Callback::Null | Callback::Fail => Err(LookupError),
        }
    }

    fn is_self(&self, host: &[u8], port: Option<u16>) -> bool {
        match self.0.case.is_self {
            Callback::Null => false,
            _ => self.0.is_self(host, port.unwrap_or(0)),
        }
    }

    fn now(&self) -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
    }
}

// --------------------------------------------------------------- checks

/// The bytes of a `pr_bytes` the library handed out (every byte is read,
/// so that a dangling or short buffer shows under ASan).
fn bytes_of(b: pr_bytes) -> Vec<u8> {
    if b.len == 0 {
        return Vec::new();
    }
    assert!(!b.ptr.is_null(), "NULL pointer with length {}", b.len);
    // SAFETY: the library promises `len` bytes at `ptr`, borrowed from a
    // live object.
    unsafe { std::slice::from_raw_parts(b.ptr, b.len) }.to_vec()
}

/// Checks a `write_text` style function (`buf`, `len`, `out_n`): exact
/// text, NUL only when there is room, nothing past `len`, errors for NULL.
fn check_text(
    what: &str,
    len: usize,
    want: &str,
    f: &dyn Fn(*mut u8, usize, *mut usize) -> pr_status,
) {
    const FILL: u8 = 0xAA;
    let mut buf = vec![FILL; len];
    let mut n = usize::MAX;
    let st = f(buf.as_mut_ptr(), len, &mut n);
    if want.len() > len {
        assert_eq!(st, pr_status::BufferTooSmall, "{what}");
        assert_eq!(n, usize::MAX, "{what}: out_n written on failure");
        assert!(
            buf.iter().all(|&c| c == FILL),
            "{what}: buffer written on failure"
        );
    } else {
        assert_eq!(st, pr_status::Ok, "{what}");
        assert_eq!(n, want.len(), "{what}");
        assert_eq!(&buf[..n], want.as_bytes(), "{what}");
        if n < len {
            assert_eq!(buf[n], 0, "{what}: no NUL although there is room");
            assert!(
                buf[n + 1..].iter().all(|&c| c == FILL),
                "{what}: wrote past the NUL"
            );
        }
    }
    assert_eq!(
        f(null_mut(), len, &mut n),
        pr_status::NullParameter,
        "{what}"
    );
    assert_eq!(
        f(buf.as_mut_ptr(), len, null_mut()),
        pr_status::NullParameter,
        "{what}"
    );
    no_caught_panic(what);
}

fn kind_of(k: u32) -> Option<ForwardingKind> {
    match k {
        1 => Some(ForwardingKind::Permanent),
        2 => Some(ForwardingKind::Temporary),
        3 => Some(ForwardingKind::Provisioned),
        _ => None,
    }
}

/// Every accessor of `d` against the decision the Rust API made.
fn check_decision(d: *const pr_decision, want: &Decision, text_len: usize) {
    let ctx = || format!("decision {want:#?}");
    assert_eq!(pr_decision_script_rc(d), want.script_rc(), "{}", ctx());
    let reason = pr_decision_reason(d);
    assert_eq!(reason, want.reason as u32, "{}", ctx());
    check_text(
        "pr_reason_text",
        text_len,
        want.reason.message(),
        &|b, l, n| pr_reason_text(reason, b, l, n),
    );
    assert_eq!(
        pr_decision_is_parallel(d),
        want.mode == ForkMode::Parallel,
        "{}",
        ctx()
    );
    let count = pr_decision_branch_count(d);
    assert_eq!(count, want.branches.len(), "{}", ctx());
    let none = pr_bytes {
        ptr: null(),
        len: 0,
    };
    for i in 0..=count {
        let mut out = pr_branch_out {
            uri: none,
            dst_uri: none,
            path: none,
            instance: none,
            socket: null(),
            q: i32::MIN,
        };
        let st = pr_decision_branch(d, i, &mut out);
        let Some(w) = want.branches.get(i) else {
            assert_eq!(st, pr_status::OutOfRange);
            continue;
        };
        assert_eq!(st, pr_status::Ok);
        assert_eq!(bytes_of(out.uri), w.uri, "branch {i}: {}", ctx());
        let opt = |b: pr_bytes| Some(bytes_of(b)).filter(|v| !v.is_empty());
        assert_eq!(opt(out.dst_uri), w.dst_uri, "branch {i}: {}", ctx());
        assert_eq!(opt(out.path), w.path, "branch {i}: {}", ctx());
        assert_eq!(opt(out.instance), w.instance, "branch {i}: {}", ctx());
        assert_eq!(out.socket as usize, w.socket, "branch {i}: {}", ctx());
        assert_eq!(out.q, w.q.map_or(-1, i32::from), "branch {i}: {}", ctx());
    }
    assert_eq!(
        pr_decision_branch(d, 0, null_mut()),
        pr_status::NullParameter
    );

    let mut c = pr_counters::default();
    assert_eq!(pr_decision_counters(d, &mut c), pr_status::Ok);
    let w = &want.counters;
    assert_eq!(
        [
            c.redirects_followed,
            c.failovers,
            c.forwardings_learned,
            c.forwardings_applied,
            c.targets_refused,
            c.loops_prevented,
            c.contacts_dropped
        ],
        [
            w.redirects_followed,
            w.failovers,
            w.forwardings_learned,
            w.forwardings_applied,
            w.targets_refused,
            w.loops_prevented,
            w.contacts_dropped
        ],
        "{}",
        ctx()
    );
    assert_eq!(
        pr_decision_counters(d, null_mut()),
        pr_status::NullParameter
    );

    let op = pr_decision_store_op(d);
    let mut ttl = i64::MIN;
    let mut f: *mut pr_forwarding = null_mut();
    let st = pr_decision_learned(d, &mut ttl, &mut f);
    match &want.store {
        StoreAction::None => assert_eq!(op, pr_store_op::None, "{}", ctx()),
        StoreAction::Forget => assert_eq!(op, pr_store_op::Forget, "{}", ctx()),
        StoreAction::Learn(Learned { ttl: t, .. }) => {
            assert_eq!(op, pr_store_op::Learn, "{}", ctx());
            assert_eq!(st, pr_status::Ok);
            assert_eq!(ttl, t.map_or(-1, i64::from));
            assert!(!f.is_null());
        }
    }
    if !matches!(want.store, StoreAction::Learn(_)) {
        assert_eq!(st, pr_status::InvalidArgument, "{}", ctx());
        assert!(
            f.is_null() && ttl == i64::MIN,
            "out-parameters written on failure"
        );
    }
    pr_forwarding_free(f);
    assert_eq!(
        pr_decision_learned(d, null_mut(), &mut f),
        pr_status::NullParameter
    );

    let (mut aor, mut service) = (none, none);
    assert_eq!(pr_decision_key(d, &mut aor, &mut service), pr_status::Ok);
    assert_eq!(
        bytes_of(aor),
        want.aor.as_deref().unwrap_or("").as_bytes(),
        "{}",
        ctx()
    );
    assert_eq!(
        bytes_of(service),
        want.service.as_deref().unwrap_or("").as_bytes(),
        "{}",
        ctx()
    );
    let mut m = none;
    assert_eq!(pr_decision_memo(d, &mut m), pr_status::Ok);
    assert_eq!(bytes_of(m), want.memo, "{}", ctx());
    assert_eq!(pr_decision_memo(d, null_mut()), pr_status::NullParameter);
    no_caught_panic("pr_decision_*");
}

/// What `pr_push_*` must say about the request and mode, in the order the
/// library reads them (`Ok`: both fine).
fn request_and_mode<'a>(
    req: &'a [Slice; 6],
    mode: &Slice,
) -> Result<(Request<'a>, Option<ForkMode>), pr_status> {
    let method = req[0].text()?;
    let ruri = req[1].content()?;
    let has_to_tag = !req[2].content()?.is_empty();
    let event = req[3].opt()?;
    let content_type = req[4].opt()?;
    req[5].content()?;
    let r = Request {
        method,
        ruri,
        has_to_tag,
        event,
        content_type,
    };
    let m = mode.text()?;
    let m = if m.is_empty() {
        None
    } else {
        Some(ForkMode::parse(m).ok_or(pr_status::InvalidArgument)?)
    };
    Ok((r, m))
}

/// Runs one scenario; panics when a promise of the C ABI is broken.
pub fn run(case: &Case) {
    // SAFETY: a static NUL-terminated string.
    let v = unsafe { CStr::from_ptr(pr_version()) };
    assert!(v.to_str().is_ok_and(|v| v.starts_with("push_redirect/")));

    pr_set_logger(Some(log_cb), null_mut(), 0);
    pr_set_logger(Some(log_cb), null_mut(), case.log_level.max(1));

    for &p in &case.probes {
        check_text(
            "pr_status_text",
            case.text_len,
            status_text(p),
            &|b, l, n| pr_status_text(p, b, l, n),
        );
        let r = reason_text(p);
        check_text("pr_reason_text", case.text_len, r, &|b, l, n| {
            pr_reason_text(p, b, l, n)
        });
    }

    // Configuration.
    assert_eq!(pr_config_new(null_mut()), pr_status::NullParameter);
    let mut cfg: *mut pr_config = null_mut();
    assert_eq!(pr_config_new(&mut cfg), pr_status::Ok);
    assert!(!cfg.is_null());
    let mut config = Config::default();
    let mut last_error = String::new();
    for (name, value) in &case.config {
        let (n, v) = (name.raw(), value.raw());
        let got = pr_config_set(cfg, n.ptr, n.len, v.ptr, v.len);
        let want = match (name.text(), value.text()) {
            (Ok(n), Ok(v)) => match config.set(n, v) {
                Ok(()) => {
                    last_error.clear();
                    pr_status::Ok
                }
                Err(e) => {
                    last_error = e.to_string();
                    pr_status::InvalidConfig
                }
            },
            (Err(e), _) | (_, Err(e)) => e,
        };
        assert_eq!(got, want, "pr_config_set({name:?}, {value:?})");
        no_caught_panic("pr_config_set");
        check_text(
            "pr_config_last_error",
            case.text_len,
            &last_error,
            &|b, l, o| pr_config_last_error(cfg, b, l, o),
        );
    }
    assert_eq!(
        pr_config_set(null_mut(), null(), 0, null(), 0),
        pr_status::NullParameter
    );

    // Engine.
    let host = Host {
        case,
        errors: RefCell::new(Vec::new()),
    };
    let ud = std::ptr::addr_of!(host) as *mut c_void;
    let lookup: pr_lookup_fn = match case.lookup {
        Callback::Null => None,
        _ => Some(lookup_cb),
    };
    let is_self: pr_is_self_fn = match case.is_self {
        Callback::Null => None,
        _ => Some(is_self_cb),
    };
    let mut eng: *mut pr_engine = null_mut();
    assert_eq!(
        pr_engine_new(null(), lookup, is_self, ud, &mut eng),
        pr_status::NullParameter
    );
    assert_eq!(
        pr_engine_new(cfg, lookup, is_self, ud, null_mut()),
        pr_status::NullParameter
    );
    assert_eq!(
        pr_engine_new(cfg, lookup, is_self, ud, &mut eng),
        pr_status::Ok
    );
    if case.free_config_early {
        pr_config_free(cfg);
        cfg = null_mut();
    }
    let mut engine = Engine::new(config.clone());
    if let Some(limit) = case.branch_limit {
        let want = if limit == 0 {
            pr_status::InvalidArgument
        } else {
            engine.branch_limit = limit as usize;
            pr_status::Ok
        };
        assert_eq!(pr_engine_set_branch_limit(eng, limit), want);
    }
    assert_eq!(
        pr_engine_set_branch_limit(null_mut(), 1),
        pr_status::NullParameter
    );
    assert_eq!(pr_engine_branch_timeout_ms(eng), config.branch_timeout_ms);
    assert_eq!(pr_engine_branch_timeout_ms(null()), 0);
    check_text("pr_engine_last_error", case.text_len, "", &|b, l, o| {
        pr_engine_last_error(eng, b, l, o)
    });

    // The stored forwarding.
    let mut fwd: *mut pr_forwarding = null_mut();
    let mut forwarding: Option<Forwarding> = None;
    if let Some(s) = &case.stored {
        let st = pr_forwarding_new(s.kind, s.expires_at, &mut fwd);
        match kind_of(s.kind) {
            Some(kind) => {
                assert_eq!(st, pr_status::Ok);
                forwarding = Some(Forwarding {
                    kind,
                    targets: Vec::new(),
                    expires_at: (s.expires_at >= 0).then_some(s.expires_at),
                });
            }
            None => {
                assert_eq!(st, pr_status::InvalidArgument);
                assert!(fwd.is_null());
            }
        }
        assert_eq!(
            pr_forwarding_new(1, 0, null_mut()),
            pr_status::NullParameter
        );
        for (uri, q) in &s.targets {
            let r = uri.raw();
            let got = pr_forwarding_add_target(fwd, r.ptr, r.len, *q);
            let want = match (&mut forwarding, uri.text()) {
                (None, _) => pr_status::NullParameter,
                (_, Err(e)) => e,
                (_, Ok("")) => pr_status::InvalidArgument,
                (Some(f), Ok(u)) => {
                    if !(-1..=1000).contains(q) || f.targets.len() >= PR_MAX_FORWARDING_TARGETS {
                        pr_status::InvalidArgument
                    } else {
                        f.targets.push(ForwardTarget {
                            uri: u.to_string(),
                            q: u16::try_from(*q).ok(),
                        });
                        pr_status::Ok
                    }
                }
            };
            assert_eq!(got, want, "pr_forwarding_add_target({uri:?}, {q})");
        }
        no_caught_panic("pr_forwarding_*");
    }

    // The calls.
    let r = &case.request;
    let req = pr_request {
        method: r[0].raw(),
        ruri: r[1].raw(),
        to_tag: r[2].raw(),
        event: r[3].raw(),
        content_type: r[4].raw(),
        call_id: r[5].raw(),
    };
    let req_ptr: *const pr_request = if case.null_request { null() } else { &req };
    let env = Mirror(&host);
    let mut prev_memo: Vec<u8> = Vec::new();
    for (k, call) in case.calls.iter().enumerate() {
        let what = format!("call {k}: {call:?}");
        let mut d: *mut pr_decision = null_mut();
        let (got, want): (pr_status, Result<Decision, pr_status>) = match call {
            CallC::Lookup { mode, stored } => {
                let m = mode.raw();
                let sp = if *stored { fwd.cast_const() } else { null() };
                assert_eq!(
                    pr_push_lookup(eng, req_ptr, m.ptr, m.len, sp, null_mut()),
                    pr_status::NullParameter
                );
                assert_eq!(
                    pr_push_lookup(null(), req_ptr, m.ptr, m.len, sp, &mut d),
                    pr_status::NullParameter
                );
                let got = pr_push_lookup(eng, req_ptr, m.ptr, m.len, sp, &mut d);
                let want = if case.null_request {
                    Err(pr_status::NullParameter)
                } else {
                    request_and_mode(r, mode).map(|(rq, md)| {
                        let st = if *stored { forwarding.as_ref() } else { None };
                        engine.push_lookup(&env.storing_opt(st), &rq, md)
                    })
                };
                (got, want)
            }
            CallC::Redirect {
                mode,
                stored,
                memo,
                null_branches,
                oversize,
                branches,
            } => {
                let list: Vec<BranchC> = if *oversize {
                    let b = branches.first().cloned().unwrap_or(BranchC {
                        uri: Slice::of(b"sip:x@example.com"),
                        status: 302,
                        reply: Slice::Null(0),
                        current: true,
                    });
                    vec![b; PR_MAX_BRANCHES_IN + 1]
                } else {
                    branches.clone()
                };
                let raw: Vec<pr_branch> = list
                    .iter()
                    .map(|b| pr_branch {
                        uri: b.uri.raw(),
                        status: b.status,
                        reply: b.reply.raw(),
                        current_round: b.current,
                    })
                    .collect();
                let bp = if *null_branches { null() } else { raw.as_ptr() };
                let memo_slice = match memo {
                    MemoC::Bytes(s) => s.clone(),
                    MemoC::Previous => Slice::of(&prev_memo),
                };
                let (m, mm) = (mode.raw(), memo_slice.raw());
                let sp = if *stored { fwd.cast_const() } else { null() };
                let got = pr_push_redirect(
                    eng,
                    req_ptr,
                    bp,
                    raw.len(),
                    mm.ptr,
                    mm.len,
                    m.ptr,
                    m.len,
                    sp,
                    &mut d,
                );
                let want = (|| {
                    if case.null_request || (*null_branches && !raw.is_empty()) {
                        return Err(pr_status::NullParameter);
                    }
                    if raw.len() > PR_MAX_BRANCHES_IN {
                        return Err(pr_status::InvalidArgument);
                    }
                    let mut bs = Vec::new();
                    for b in &list {
                        let (uri, reply) = match (b.uri.content(), b.reply.opt()) {
                            (Ok(u), Ok(r)) => (u, r),
                            (Err(e), _) | (_, Err(e)) => return Err(e),
                        };
                        let status = u16::try_from(b.status)
                            .ok()
                            .filter(|s| *s == 0 || (100..=699).contains(s))
                            .ok_or(pr_status::InvalidArgument)?;
                        bs.push(Branch {
                            uri,
                            status,
                            reply,
                            current_round: b.current,
                        });
                    }
                    let (rq, md) = request_and_mode(r, mode)?;
                    let memo_bytes = memo_slice.content()?;
                    let st = if *stored { forwarding.as_ref() } else { None };
                    Ok(engine.push_redirect(
                        &env.storing_opt(st),
                        &rq,
                        &FailedRound {
                            branches: &bs,
                            memo: memo_bytes,
                        },
                        md,
                    ))
                })();
                (got, want)
            }
            CallC::RpcSet(a) => {
                let [x, y, z, w] = [a[0].raw(), a[1].raw(), a[2].raw(), a[3].raw()];
                let got = pr_rpc_set(eng, x.ptr, x.len, y.ptr, y.len, z.ptr, z.len, w.ptr, w.len);
                check_rpc(&what, got, eng, case.text_len);
                continue;
            }
            CallC::RpcRemove(a) => {
                let [x, y] = [a[0].raw(), a[1].raw()];
                let mut n = usize::MAX;
                let got = pr_rpc_remove(eng, x.ptr, x.len, y.ptr, y.len, &mut n);
                assert_eq!(n, usize::MAX, "{what}: out_removed written without a store");
                check_rpc(&what, got, eng, case.text_len);
                continue;
            }
            CallC::RpcList(a) => {
                let x = a.raw();
                let mut list: *mut pr_entries = null_mut();
                let got = pr_rpc_list(eng, x.ptr, x.len, &mut list);
                assert!(list.is_null(), "{what}: a list without a store");
                check_rpc(&what, got, eng, case.text_len);
                continue;
            }
        };
        no_caught_panic(&what);
        let errors = std::mem::take(&mut *host.errors.borrow_mut());
        assert!(errors.is_empty(), "{what}: {errors:#?}");
        match want {
            Err(e) => {
                assert_eq!(got, e, "{what}");
                assert!(d.is_null(), "{what}: a decision handed out on failure");
            }
            Ok(want) => {
                assert_eq!(got, pr_status::Ok, "{what}");
                assert!(!d.is_null());
                check_decision(d, &want, case.text_len);
                prev_memo = want.memo.clone();
                pr_decision_free(d);
            }
        }
    }

    // Accessors and frees with NULL.
    assert_eq!(pr_decision_script_rc(null()), -2);
    assert_eq!(pr_decision_reason(null()), 0);
    assert!(!pr_decision_is_parallel(null()));
    assert_eq!(pr_decision_branch_count(null()), 0);
    assert_eq!(pr_decision_store_op(null()), pr_store_op::None);
    pr_decision_free(null_mut());
    pr_forwarding_free(null_mut());
    pr_engine_free(null_mut());
    pr_config_free(null_mut());
    pr_entries_free(null_mut());
    assert_eq!(pr_entries_count(null()), 0);

    pr_forwarding_free(fwd);
    pr_engine_free(eng);
    pr_config_free(cfg);
    no_caught_panic("frees");
    let errors = host.errors.into_inner();
    assert!(errors.is_empty(), "{errors:#?}");
}

/// An RPC call without a store: refused, and the reason kept.
fn check_rpc(what: &str, got: pr_status, eng: *const pr_engine, text_len: usize) {
    no_caught_panic(what);
    assert!(
        matches!(
            got,
            pr_status::NullParameter
                | pr_status::InvalidUtf8
                | pr_status::InvalidArgument
                | pr_status::StoreError
        ),
        "{what}: {got:?}"
    );
    // The reason is kept for the RPC reply (`pr_engine_last_error`): the
    // header promises it for a bad argument and a store error (a NULL or
    // non-UTF-8 argument is kept by some RPC functions only).
    let mut buf = vec![0u8; 4096];
    let mut n = 0usize;
    assert_eq!(
        pr_engine_last_error(eng, buf.as_mut_ptr(), buf.len(), &mut n),
        pr_status::Ok
    );
    let text = String::from_utf8(buf[..n].to_vec()).expect("last error is not UTF-8");
    if matches!(got, pr_status::InvalidArgument | pr_status::StoreError) {
        assert!(!text.is_empty(), "{what}: {got:?} with no reason kept");
    }
    check_text("pr_engine_last_error", text_len, &text, &|b, l, o| {
        pr_engine_last_error(eng, b, l, o)
    });
}

/// `pr_status_text` of a number.
fn status_text(s: u32) -> &'static str {
    match s {
        0 => "ok",
        1 => "a required pointer argument was NULL",
        2 => "text argument is not UTF-8",
        3 => "invalid configuration value",
        4 => "invalid argument",
        5 => "internal error (panic caught)",
        6 => "index out of range",
        7 => "buffer too small",
        8 => "host callback failed",
        9 => "forwarding store error",
        _ => "unknown status",
    }
}

/// `pr_reason_text` of a number.
fn reason_text(r: u32) -> &'static str {
    use push_redirect::engine::Reason::*;
    [
        NotPushMethod,
        InDialog,
        NotRedirect,
        GlobalFailure,
        AuthChallenge,
        NeverFollowed,
        Registered,
        StoredForwarding,
        Redirect,
        PendingRedirect,
        Provisioned,
        Failover,
        NoTarget,
        Exhausted,
        BranchLimit,
        AllTargetsRefused,
        BadRequestUri,
        LookupFailed,
    ]
    .into_iter()
    .find(|x| *x as u32 == r)
    .map_or("unknown reason", |x| x.message())
}

// ---------------------------------------------------------------- text

impl Case {
    /// The text form (see [`super::text`]).
    pub fn to_text(&self) -> String {
        use text::{bytes, flag, opt_bytes, opt_num};
        let cb = |c: Callback| match c {
            Callback::Null => "null",
            Callback::Answer => "answer",
            Callback::Fail => "fail",
        };
        let mut s = String::from("# push_redirect c_abi fuzz case v1\n");
        let _ = writeln!(s, "log_level {}", self.log_level);
        let _ = writeln!(s, "text_len {}", self.text_len);
        for p in &self.probes {
            let _ = writeln!(s, "probe {p}");
        }
        for (n, v) in &self.config {
            let _ = writeln!(s, "config {} {}", n.to_text(), v.to_text());
        }
        let _ = writeln!(s, "free_config_early {}", flag(self.free_config_early));
        let _ = writeln!(s, "lookup {}", cb(self.lookup));
        for c in &self.contacts {
            let _ = writeln!(
                s,
                "contact {} {} {} {} {} {} {} {}",
                opt_bytes(c.aor.as_deref()),
                c.uri.to_text(),
                c.received.to_text(),
                c.path.to_text(),
                c.instance.to_text(),
                c.socket,
                c.q,
                c.last_modified
            );
        }
        let _ = writeln!(s, "contact_repeat {}", self.contact_repeat);
        let _ = writeln!(s, "is_self {}", cb(self.is_self));
        for (h, p) in &self.own {
            let _ = writeln!(s, "self {} {p}", bytes(h));
        }
        let _ = writeln!(s, "branch_limit {}", opt_num(self.branch_limit));
        let _ = writeln!(
            s,
            "request {}",
            self.request
                .iter()
                .map(Slice::to_text)
                .collect::<Vec<_>>()
                .join(" ")
        );
        let _ = writeln!(s, "null_request {}", flag(self.null_request));
        if let Some(f) = &self.stored {
            let _ = writeln!(s, "stored {} {}", f.kind, f.expires_at);
            for (u, q) in &f.targets {
                let _ = writeln!(s, "target {} {q}", u.to_text());
            }
        }
        for c in &self.calls {
            match c {
                CallC::Lookup { mode, stored } => {
                    let _ = writeln!(s, "lookup_call {} {}", mode.to_text(), flag(*stored));
                }
                CallC::Redirect {
                    mode,
                    stored,
                    memo,
                    null_branches,
                    oversize,
                    branches,
                } => {
                    let memo = match memo {
                        MemoC::Previous => "prev".to_string(),
                        MemoC::Bytes(b) => b.to_text(),
                    };
                    let _ = writeln!(
                        s,
                        "redirect_call {} {} {memo} {} {}",
                        mode.to_text(),
                        flag(*stored),
                        flag(*null_branches),
                        flag(*oversize)
                    );
                    for b in branches {
                        let _ = writeln!(
                            s,
                            "branch {} {} {} {}",
                            b.uri.to_text(),
                            b.status,
                            b.reply.to_text(),
                            flag(b.current)
                        );
                    }
                }
                CallC::RpcSet(a) => {
                    let f: Vec<String> = a.iter().map(Slice::to_text).collect();
                    let _ = writeln!(s, "rpc_set {}", f.join(" "));
                }
                CallC::RpcRemove(a) => {
                    let f: Vec<String> = a.iter().map(Slice::to_text).collect();
                    let _ = writeln!(s, "rpc_remove {}", f.join(" "));
                }
                CallC::RpcList(a) => {
                    let _ = writeln!(s, "rpc_list {}", a.to_text());
                }
            }
        }
        s
    }

    /// Reads the text form.
    pub fn from_text(t: &str) -> Result<Case, String> {
        use text::{get_bytes, get_flag, get_num, get_opt_bytes, get_opt_num};
        let cb = |f: &str| match f {
            "null" => Ok(Callback::Null),
            "answer" => Ok(Callback::Answer),
            "fail" => Ok(Callback::Fail),
            _ => Err(format!("callback {f:?}")),
        };
        let empty = || Slice::Null(0);
        let mut c = Case {
            log_level: 4,
            text_len: 64,
            probes: Vec::new(),
            config: Vec::new(),
            free_config_early: false,
            lookup: Callback::Null,
            contacts: Vec::new(),
            contact_repeat: 0,
            is_self: Callback::Null,
            own: Vec::new(),
            branch_limit: None,
            request: [empty(), empty(), empty(), empty(), empty(), empty()],
            null_request: false,
            stored: None,
            calls: Vec::new(),
        };
        for (line, tag, f) in text::records(t) {
            let g = |i| field(&f, i, tag);
            let sl = |i| Slice::from_text(field(&f, i, tag)?);
            let r: Result<(), String> = (|| {
                match tag {
                    "log_level" => c.log_level = get_num(g(0)?)?,
                    "text_len" => c.text_len = get_num(g(0)?)?,
                    "probe" => c.probes.push(get_num(g(0)?)?),
                    "config" => c.config.push((sl(0)?, sl(1)?)),
                    "free_config_early" => c.free_config_early = get_flag(g(0)?)?,
                    "lookup" => c.lookup = cb(g(0)?)?,
                    "contact" => c.contacts.push(ContactC {
                        aor: get_opt_bytes(g(0)?)?,
                        uri: sl(1)?,
                        received: sl(2)?,
                        path: sl(3)?,
                        instance: sl(4)?,
                        socket: get_num(g(5)?)?,
                        q: get_num(g(6)?)?,
                        last_modified: get_num(g(7)?)?,
                    }),
                    "contact_repeat" => c.contact_repeat = get_num(g(0)?)?,
                    "is_self" => c.is_self = cb(g(0)?)?,
                    "self" => c.own.push((get_bytes(g(0)?)?, get_num(g(1)?)?)),
                    "branch_limit" => c.branch_limit = get_opt_num(g(0)?)?,
                    "request" => c.request = [sl(0)?, sl(1)?, sl(2)?, sl(3)?, sl(4)?, sl(5)?],
                    "null_request" => c.null_request = get_flag(g(0)?)?,
                    "stored" => {
                        c.stored = Some(StoredC {
                            kind: get_num(g(0)?)?,
                            expires_at: get_num(g(1)?)?,
                            targets: Vec::new(),
                        })
                    }
                    "target" => c
                        .stored
                        .as_mut()
                        .ok_or("target before stored")?
                        .targets
                        .push((sl(0)?, get_num(g(1)?)?)),
                    "lookup_call" => c.calls.push(CallC::Lookup {
                        mode: sl(0)?,
                        stored: get_flag(g(1)?)?,
                    }),
                    "redirect_call" => c.calls.push(CallC::Redirect {
                        mode: sl(0)?,
                        stored: get_flag(g(1)?)?,
                        memo: match g(2)? {
                            "prev" => MemoC::Previous,
                            _ => MemoC::Bytes(sl(2)?),
                        },
                        null_branches: get_flag(g(3)?)?,
                        oversize: get_flag(g(4)?)?,
                        branches: Vec::new(),
                    }),
                    "branch" => match c.calls.last_mut() {
                        Some(CallC::Redirect { branches, .. }) => branches.push(BranchC {
                            uri: sl(0)?,
                            status: get_num(g(1)?)?,
                            reply: sl(2)?,
                            current: get_flag(g(3)?)?,
                        }),
                        _ => return Err("branch outside a redirect_call".into()),
                    },
                    "rpc_set" => c
                        .calls
                        .push(CallC::RpcSet([sl(0)?, sl(1)?, sl(2)?, sl(3)?])),
                    "rpc_remove" => c.calls.push(CallC::RpcRemove([sl(0)?, sl(1)?])),
                    "rpc_list" => c.calls.push(CallC::RpcList(sl(0)?)),
                    _ => return Err(format!("unknown record {tag:?}")),
                }
                Ok(())
            })();
            r.map_err(|e| format!("line {line}: {e}"))?;
        }
        Ok(c)
    }
}
