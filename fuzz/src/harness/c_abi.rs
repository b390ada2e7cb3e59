//! `c_abi`: the `extern "C"` functions of `push_redirect::ffi`, driven from
//! Rust as the Kamailio module drives them, with arbitrary contents:
//! `pr_config_set` with any names and values (NULL, not UTF-8...),
//! `pr_push_lookup` / `pr_push_redirect` with arbitrary `pr_request` (its
//! mode included) and `pr_failure` contents, every byte string a
//! `(ptr, len)` into an owned buffer (or NULL with some length), memo bytes
//! (or the memo of the previous view); the lookup and is_self callbacks
//! answer from the case; the RPC functions; every `_free`.
//!
//! The engine has a forwarding store (`pr_config_set(cfg, "store", ..)`,
//! `pr_engine_open_store`): an SQLite file per thread, emptied for each
//! case. Before each push call the request's AOR has no entry in it, or,
//! for a call marked so, the case's stored forwarding: a provisioned one
//! for every service, written by `pr_rpc_set` when the RPC can write and
//! accepts it, else (or a learned one, for the request's service) written
//! with `SqliteStore`.
//!
//! Oracles: no status is ever `PR_STATUS_PANIC` and no panic is logged
//! (the library catches panics and reports them through the logger); each
//! status is the one the header documents for those arguments, and
//! out-parameters are untouched on failure; each `pr_decision_view` is field
//! by field the decision the Rust API makes from the same inputs with a
//! mirror host (the callbacks' answers, the forwarding the store holds),
//! which reads the store at most once, for the decision's own key; the
//! lookup callback is asked with registrar's usrloc key; and the store
//! after each call holds what the call says: the decision's store action
//! (an entry learned, the entry forgotten, nothing changed), the RPC's
//! entry written or entries removed, a list as the store has it.

use std::cell::RefCell;
use std::ffi::{c_void, CStr};
use std::fmt::Write as _;
use std::mem::MaybeUninit;
use std::path::{Path, PathBuf};
use std::ptr::{null, null_mut};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use push_redirect::config::{Config, ForkMode};
use push_redirect::engine::{
    service_key, Branch, Decision, Engine, FailedRound, ForwardTarget, Forwarding, ForwardingKind,
    Host, LookupError, Registration, Request, Stat, StoreAction,
};
use push_redirect::ffi::*;
use push_redirect::log::pr_log_level;
use push_redirect::stats::PR_STAT_COUNT;
use push_redirect::store::sqlite::SqliteStore;
use push_redirect::store::{Entry, Store, StoreError, ANY_SERVICE};
use push_redirect::uri;

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
        /// `pr_request.mode`.
        mode: Slice,
        /// Whether the store holds the case's forwarding for the call.
        stored: bool,
    },
    /// `pr_push_redirect`.
    Redirect {
        /// `pr_request.mode`.
        mode: Slice,
        /// Whether the store holds the case's forwarding for the call.
        stored: bool,
        /// `pr_failure.memo`.
        memo: MemoC,
        /// `pr_failure.branches` passed as NULL (with their count).
        null_branches: bool,
        /// 1025 branches instead (over `PR_MAX_BRANCHES_IN`).
        oversize: bool,
        /// The branches.
        branches: Vec<BranchC>,
    },
    /// `pr_rpc_set`: aor, target, service, ttl.
    RpcSet([Slice; 4]),
    /// `pr_rpc_remove`: aor, service.
    RpcRemove([Slice; 2]),
    /// `pr_rpc_list`: aor.
    RpcList(Slice),
}

/// The stored forwarding (see [`forwarding_of`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredC {
    /// Its kind: 1 permanent, 2 temporary, 3 provisioned; any other
    /// number: nothing is stored.
    pub kind: u32,
    /// When it expires (Unix time); negative: never.
    pub expires_at: i64,
    /// Its targets and their q (-1: none); a target that is not UTF-8,
    /// empty, or has a q outside -1..=1000 is left out.
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
    /// `pr_status_text` / `pr_stat_name` arguments.
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
    /// `pr_request`: method, ruri, to_tag, event, content_type, call_id
    /// (the mode is the call's).
    pub request: [Slice; 6],
    /// Pass the request as NULL.
    pub null_request: bool,
    /// The forwarding the store holds for the calls marked so.
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
struct Callbacks<'c> {
    case: &'c Case,
    /// Contract breaches seen inside callbacks (a panic there would abort).
    errors: RefCell<Vec<String>>,
}

impl Callbacks<'_> {
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
    /// `pr_contacts_add` accepts (its expected status alongside).
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
                let mut reg = Registration::new(uri);
                reg.set_received(received);
                reg.set_path(path);
                reg.set_instance(instance);
                reg.socket = c.socket;
                reg.q = u16::try_from(c.q).ok();
                reg.last_modified = c.last_modified;
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

/// The usrloc key of an AOR (`sip:user@host`) as registrar's
/// `extract_aor()` builds it with its defaults: the user with each `%XX`
/// decoded, `@`, the host, all lower case; and the user's length. `None`
/// for an AOR without a user (no record can match it).
fn usrloc_key(aor: &[u8]) -> Option<(Vec<u8>, usize)> {
    let u = uri::parse(aor).ok()?;
    let user = u.user.filter(|u| !u.is_empty())?;
    let hex = |c: Option<&u8>| c.and_then(|c| char::from(*c).to_digit(16));
    let mut key = Vec::new();
    let mut i = 0;
    while let Some(&c) = user.get(i) {
        match (c, hex(user.get(i + 1)), hex(user.get(i + 2))) {
            (b'%', Some(h), Some(l)) => {
                key.push((h * 16 + l) as u8);
                i += 3;
            }
            _ => {
                key.push(c);
                i += 1;
            }
        }
    }
    let user_len = key.len();
    key.push(b'@');
    key.extend_from_slice(u.host);
    key.make_ascii_lowercase();
    Some((key, user_len))
}

/// [`bytes_of`] inside a callback, where a panic would abort: `None` for
/// NULL with a length.
fn callback_bytes(b: pr_bytes) -> Option<Vec<u8>> {
    (b.len == 0 || !b.ptr.is_null()).then(|| bytes_of(b))
}

unsafe extern "C" fn lookup_cb(ud: *mut c_void, aor: *const pr_aor, out: *mut pr_contacts) -> i32 {
    // SAFETY: `ud` is the `Callbacks` given to pr_engine_new, alive for the
    // run.
    let cbs = unsafe { &*(ud as *const Callbacks<'_>) };
    let err = |m: String| cbs.errors.borrow_mut().push(m);
    // SAFETY: the library passes a pr_aor valid for the call (checked
    // non-NULL first).
    let Some(a) = (unsafe { aor.as_ref() }) else {
        err("lookup with a NULL pr_aor".into());
        return -1;
    };
    let (Some(uri), Some(key)) = (callback_bytes(a.uri), callback_bytes(a.key)) else {
        err(format!("lookup with a NULL pointer and a length: {a:?}"));
        return -1;
    };
    if std::str::from_utf8(&uri).is_err() {
        err(format!("lookup of an AOR that is not UTF-8: {uri:?}"));
    }
    // The key is registrar's, and the callback is only asked about AORs
    // that have one.
    match usrloc_key(&uri) {
        Some((k, n)) if k == key && n == a.user_len => {}
        want => err(format!(
            "lookup of {:?}: key {:?} (user {} bytes), want {want:?}",
            lossy(&uri),
            lossy(&key),
            a.user_len
        )),
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
        flags: 0,
        methods: u32::MAX,
        reg_id: 0,
        ruid: Slice::Null(0).raw(),
        user_agent: Slice::Null(0).raw(),
        conn_id: 0,
    };
    if pr_contacts_add(out, null()) != pr_status::NullParameter
        || pr_contacts_add(null_mut(), &empty) != pr_status::NullParameter
    {
        err("pr_contacts_add accepted a NULL argument".into());
    }
    let reported = cbs.reported(&uri);
    let want = cbs.accepted(&uri);
    for (c, (want, _)) in reported.iter().zip(want) {
        let raw = pr_contact {
            uri: c.uri.raw(),
            received: c.received.raw(),
            path: c.path.raw(),
            instance: c.instance.raw(),
            socket: c.socket as *const c_void,
            q: c.q,
            last_modified: c.last_modified,
            flags: 0,
            methods: u32::MAX,
            reg_id: 0,
            ruid: Slice::Null(0).raw(),
            user_agent: Slice::Null(0).raw(),
            conn_id: 0,
        };
        let got = pr_contacts_add(out, &raw);
        if got != want {
            err(format!("pr_contacts_add({c:?}) = {got:?}, want {want:?}"));
        }
    }
    match cbs.case.lookup {
        Callback::Fail => -1,
        _ => 0,
    }
}

unsafe extern "C" fn is_self_cb(ud: *mut c_void, host: *const u8, len: usize, port: u16) -> bool {
    // SAFETY: as in lookup_cb.
    let h = unsafe { &*(ud as *const Callbacks<'_>) };
    // SAFETY: the library passes a (ptr, len) host valid for the call.
    let name = unsafe { std::slice::from_raw_parts(host, len) };
    h.is_self(name, port)
}

/// The same host for the Rust API: the callbacks' answers, and what the
/// store holds for the call's (AOR, service).
struct Mirror<'h, 'c> {
    cbs: &'h Callbacks<'c>,
    /// The key the store was prepared for, and what it answers for it.
    stored: RefCell<Option<(String, String, Arc<Forwarding>)>>,
    /// The keys `Host::stored` was asked for since the last look.
    reads: RefCell<Vec<(String, String)>>,
}

impl Host for Mirror<'_, '_> {
    fn lookup(&self, aor: &str) -> Result<Vec<Registration>, LookupError> {
        match self.cbs.case.lookup {
            Callback::Null => Err(LookupError),
            // An AOR without a user has no usrloc key: nothing to ask.
            _ if usrloc_key(aor.as_bytes()).is_none() => Ok(Vec::new()),
            Callback::Answer => Ok(self
                .cbs
                .accepted(aor.as_bytes())
                .into_iter()
                .filter_map(|(_, r)| r)
                .collect()),
            Callback::Fail => Err(LookupError),
        }
    }

    fn is_self(&self, host: &[u8], port: Option<u16>) -> bool {
        match self.cbs.case.is_self {
            Callback::Null => false,
            _ => self.cbs.is_self(host, port.unwrap_or(0)),
        }
    }

    fn now(&self) -> i64 {
        now()
    }

    fn stored(&self, aor: &str, service: &str) -> Option<Arc<Forwarding>> {
        self.reads
            .borrow_mut()
            .push((aor.to_string(), service.to_string()));
        match &*self.stored.borrow() {
            Some((a, s, f)) if a == aor && s == service => Some(f.clone()),
            _ => None,
        }
    }
}

/// The clock the library reads (Unix seconds).
fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

// --------------------------------------------------------------- store

/// The forwarding store of the cases a thread runs: an SQLite file in a
/// directory of its own (removed with it), emptied for each case. Each
/// case's engine opens it (`pr_engine_open_store`); this harness keeps a
/// connection to provision it and to read what the calls left in it. (A
/// new file per case costs tens of milliseconds on a disk: creating it,
/// and the checkpoint when the last connection closes.)
struct CaseStore {
    dir: PathBuf,
    path: String,
    store: SqliteStore,
}

const STORE_DIR: &str = "pr-fuzz-c_abi-";

thread_local! {
    static STORE: Rc<CaseStore> = Rc::new(CaseStore::new());
}

impl CaseStore {
    /// This thread's store, empty.
    fn for_case() -> Rc<CaseStore> {
        let cs = STORE.with(Rc::clone);
        for e in cs.all() {
            let _ = cs.store.remove(&e.aor, None);
        }
        assert_eq!(cs.all(), [], "the store cannot be emptied");
        cs
    }

    fn new() -> CaseStore {
        let tmp = std::env::temp_dir();
        // The directories of processes gone: a fuzz process exits without
        // running its main thread's destructors.
        let proc = Path::new("/proc");
        if let (true, Ok(list)) = (proc.is_dir(), std::fs::read_dir(&tmp)) {
            for e in list.flatten() {
                let name = e.file_name();
                let pid = name
                    .to_str()
                    .and_then(|n| n.strip_prefix(STORE_DIR))
                    .and_then(|rest| rest.split('-').next());
                if pid.is_some_and(|p| !proc.join(p).exists()) {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
        static N: AtomicU64 = AtomicU64::new(0);
        let dir = tmp.join(format!(
            "{STORE_DIR}{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        let file = dir.join("store.sqlite");
        let path = file.to_str().expect("a UTF-8 temp dir").to_string();
        let store = SqliteStore::open(&file).unwrap_or_else(|e| panic!("{path}: {e}"));
        CaseStore { dir, path, store }
    }

    /// Every entry, expired or not.
    fn all(&self) -> Vec<Entry> {
        self.store
            .list(None, i64::MIN)
            .unwrap_or_else(|e| panic!("store list: {e}"))
    }
}

impl Drop for CaseStore {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The case's forwarding, as it would be stored: its kind, and the targets
/// with a UTF-8, non-empty URI and a q in -1..=1000 (-1: none), as the
/// removed `pr_forwarding_*` calls accepted them; `None` for an unknown
/// kind.
fn forwarding_of(s: &StoredC) -> Option<Forwarding> {
    let kind = match s.kind {
        1 => ForwardingKind::Permanent,
        2 => ForwardingKind::Temporary,
        3 => ForwardingKind::Provisioned,
        _ => return None,
    };
    let targets = s
        .targets
        .iter()
        .filter(|(_, q)| (-1..=1000).contains(q))
        .filter_map(|(uri, q)| {
            let uri = uri.text().ok().filter(|u| !u.is_empty())?;
            Some(ForwardTarget {
                uri: uri.to_string(),
                q: u16::try_from(*q).ok(),
                instance: None,
            })
        })
        .collect();
    Some(Forwarding {
        kind,
        targets,
        expires_at: (s.expires_at >= 0).then_some(s.expires_at),
    })
}

/// The (AOR, service) the engine keys the request's forwarding by, when
/// its Request-URI is a SIP URI.
fn store_key(r: &Request<'_>) -> Option<(String, String)> {
    let u = uri::parse(r.ruri).ok()?;
    Some((u.aor(), service_key(r.method, r.event, r.content_type)))
}

/// Prepares the store for a push call keyed `key`: no entry of the AOR,
/// then `f` if given: a provisioned forwarding for every service (`*`),
/// through `pr_rpc_set` when it is one the RPC can write (one target, no
/// q, no expiry) and accepts; else, or a learned one for the request's
/// service, written directly. Returns what the store answers for the key
/// now (none if `f` does not fit the store, or has expired).
fn prepare(
    cs: &CaseStore,
    eng: *const pr_engine,
    key: &(String, String),
    f: Option<&Forwarding>,
) -> Option<Arc<Forwarding>> {
    let (aor, service) = key;
    // A key the store refuses holds nothing.
    let _ = cs.store.remove(aor, None);
    let f = f?;
    let entry = Entry {
        aor: aor.clone(),
        service: if f.kind == ForwardingKind::Provisioned {
            ANY_SERVICE.to_string()
        } else {
            service.clone()
        },
        kind: f.kind,
        targets: f.targets.clone(),
        expires_at: f.expires_at,
        created_at: now(),
        learned_from: None,
        learned_status: None,
    };
    let fits = entry.validate().is_ok();
    let by_rpc = match f.targets.as_slice() {
        [t] if f.kind == ForwardingKind::Provisioned
            && t.q.is_none()
            && f.expires_at.is_none()
            && t.uri.trim() == t.uri =>
        {
            let st = pr_rpc_set(
                eng,
                aor.as_ptr(),
                aor.len(),
                t.uri.as_ptr(),
                t.uri.len(),
                null(),
                0,
                null(),
                0,
            );
            no_caught_panic("pr_rpc_set (provisioning)");
            assert!(
                matches!(st, pr_status::Ok | pr_status::InvalidArgument),
                "pr_rpc_set({aor}, {}) = {st:?}",
                t.uri
            );
            assert!(
                fits || st != pr_status::Ok,
                "pr_rpc_set stored {entry:?}, which does not fit the store"
            );
            st == pr_status::Ok
        }
        _ => false,
    };
    if !fits {
        return None;
    }
    if !by_rpc {
        cs.store
            .put(&entry)
            .unwrap_or_else(|e| panic!("store put {entry:?}: {e}"));
    }
    let t = now();
    let got = match cs.store.get(aor, service, t) {
        Ok(got) => got,
        // A key the store refuses (an empty service: an empty method)
        // cannot be read: the engine goes on without.
        Err(StoreError::Invalid(_) | StoreError::TooBig { .. }) => return None,
        Err(e) => panic!("store get: {e}"),
    };
    match got {
        Some(e) => {
            assert!(
                f.is_live(t),
                "the store answers with an expired {e:?} at {t}"
            );
            assert_eq!(
                (e.aor.as_str(), e.service.as_str(), e.forwarding()),
                (aor.as_str(), entry.service.as_str(), f.clone()),
                "the store does not answer with what was stored"
            );
            Some(Arc::new(e.forwarding()))
        }
        None => {
            assert!(!f.is_live(t), "the store lost {entry:?} at {t}");
            None
        }
    }
}

/// An entry the store must hold after a call: exactly `entry`, or (`fresh`
/// with its TTL) one written during the call: `created_at` within the call
/// and `expires_at` = `created_at` + TTL.
struct Want {
    entry: Entry,
    fresh: Option<Option<u32>>,
}

impl Want {
    fn exact(entry: Entry) -> Want {
        Want { entry, fresh: None }
    }

    fn key(&self) -> (&str, &str) {
        (&self.entry.aor, &self.entry.service)
    }
}

/// Checks the store after a call against what it must hold; `t0`..`t1`:
/// the call's time. An entry expired by then may have been swept.
fn check_store(what: &str, want: &[Want], after: &[Entry], t0: i64, t1: i64) {
    for w in want {
        let Some(got) = after
            .iter()
            .find(|e| (e.aor.as_str(), e.service.as_str()) == w.key())
        else {
            assert!(
                w.fresh.is_none() && w.entry.expires_at.is_some_and(|x| x <= t1),
                "{what}: the store lost {:?}; it holds {after:#?}",
                w.entry
            );
            continue;
        };
        match w.fresh {
            None => assert_eq!(got, &w.entry, "{what}"),
            Some(ttl) => {
                let c = got.created_at;
                assert!((t0..=t1).contains(&c), "{what}: created at {c}: {got:?}");
                let want = Entry {
                    created_at: c,
                    expires_at: ttl.map(|t| c.saturating_add(i64::from(t))),
                    ..w.entry.clone()
                };
                assert_eq!(got, &want, "{what}");
            }
        }
    }
    for e in after {
        assert!(
            want.iter()
                .any(|w| w.key() == (e.aor.as_str(), e.service.as_str())),
            "{what}: the store holds {e:?}, which it should not"
        );
    }
}

/// What the store must hold after a push call that decided `d` (`None`:
/// the call failed) on a store that held `before`.
fn after_decision(before: Vec<Entry>, d: Option<&Decision>) -> Vec<Want> {
    let mut want: Vec<Want> = before.into_iter().map(Want::exact).collect();
    let Some(d) = d else {
        return want;
    };
    let (Some(aor), Some(service)) = (d.aor.as_deref(), d.service.as_deref()) else {
        assert_eq!(d.store, StoreAction::None);
        return want;
    };
    match &d.store {
        StoreAction::None => {}
        StoreAction::Forget => {
            // The entry the call read: the AOR's only one (see `prepare`).
            let n = want.len();
            want.retain(|w| w.entry.aor != aor);
            assert_eq!(n - want.len(), 1, "Forget, but not one entry of {aor}");
        }
        StoreAction::Learn(l) => {
            let entry = Entry::learned(aor, service, l, 0);
            // A learned forwarding that does not fit the store is not kept.
            if entry.validate().is_ok() {
                want.retain(|w| w.key() != (aor, service));
                want.push(Want {
                    entry,
                    fresh: Some(l.ttl),
                });
            }
        }
    }
    want
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

/// The byte every field of a view the library has not written holds.
const UNWRITTEN: u8 = 0xA5;

/// A view for the library to write, every byte [`UNWRITTEN`].
fn blank_view() -> MaybeUninit<pr_decision_view> {
    let mut v = MaybeUninit::<pr_decision_view>::uninit();
    // SAFETY: writes the bytes of the MaybeUninit's own storage.
    unsafe {
        v.as_mut_ptr()
            .cast::<u8>()
            .write_bytes(UNWRITTEN, size_of::<pr_decision_view>())
    };
    v
}

/// Whether the library left a [`blank_view`] alone.
fn unwritten(v: &MaybeUninit<pr_decision_view>) -> bool {
    // SAFETY: every byte was written by `blank_view`; a failed call writes
    // none (a typed write, the bug looked for, would leave padding bytes
    // undefined: this only reads them then).
    let b = unsafe {
        std::slice::from_raw_parts(v.as_ptr().cast::<u8>(), size_of::<pr_decision_view>())
    };
    b.iter().all(|&c| c == UNWRITTEN)
}

/// The view against the decision the Rust API made.
fn check_view(v: &pr_decision_view, want: &Decision) {
    let ctx = || format!("decision {want:#?}");
    assert_eq!(v.script_rc, want.script_rc(), "{}", ctx());
    assert_eq!(v.reason, want.reason as u32, "{}", ctx());
    assert_eq!(v.parallel, want.mode == ForkMode::Parallel, "{}", ctx());
    assert_eq!(v.n_branches, want.branches.len(), "{}", ctx());
    assert_eq!(v.branches.is_null(), want.branches.is_empty(), "{}", ctx());
    for (i, w) in want.branches.iter().enumerate() {
        // SAFETY: the view promises `n_branches` branches at `branches`,
        // borrowed from the decision, not freed yet.
        let out = unsafe { &*v.branches.add(i) };
        assert_eq!(bytes_of(out.uri), w.uri(), "branch {i}: {}", ctx());
        let opt = |b: pr_bytes| Some(bytes_of(b)).filter(|v| !v.is_empty());
        assert_eq!(
            opt(out.dst_uri),
            w.dst_uri().map(<[u8]>::to_vec),
            "branch {i}: {}",
            ctx()
        );
        assert_eq!(
            opt(out.path),
            w.path().map(<[u8]>::to_vec),
            "branch {i}: {}",
            ctx()
        );
        assert_eq!(
            opt(out.instance),
            w.instance().map(<[u8]>::to_vec),
            "branch {i}: {}",
            ctx()
        );
        assert_eq!(out.socket as usize, w.socket, "branch {i}: {}", ctx());
        assert_eq!(out.q, w.q.map_or(-1, i32::from), "branch {i}: {}", ctx());
        assert_eq!(
            bytes_of(out.history_info),
            w.history_info,
            "branch {i}: {}",
            ctx()
        );
        assert_eq!(
            bytes_of(out.diversion),
            w.diversion,
            "branch {i}: {}",
            ctx()
        );
        assert_eq!(
            (out.flags, out.reg_id, out.conn_id),
            (w.flags, w.reg_id, w.conn_id),
            "branch {i}: {}",
            ctx()
        );
        assert_eq!(
            opt(out.ruid),
            w.ruid().map(<[u8]>::to_vec),
            "branch {i}: {}",
            ctx()
        );
        assert_eq!(
            opt(out.user_agent),
            w.user_agent().map(<[u8]>::to_vec),
            "branch {i}: {}",
            ctx()
        );
    }
    assert_eq!(bytes_of(v.memo), want.memo, "{}", ctx());
    assert_eq!(v.counters, want.counters.0, "{}", ctx());
}

/// How the store was read during a call: at most once, for the decision's
/// own key.
fn check_reads(what: &str, reads: &[(String, String)], want: &Decision) {
    assert!(
        reads.len() <= 1,
        "{what}: the store read {} times",
        reads.len()
    );
    if let Some((aor, service)) = reads.first() {
        assert_eq!(
            (Some(aor.as_str()), Some(service.as_str())),
            (want.aor.as_deref(), want.service.as_deref()),
            "{what}: the store read for another key"
        );
    }
}

/// What `pr_push_*` must say about the request and its mode, in the order
/// the library reads them (`Ok`: both fine).
fn request_and_mode<'a>(
    req: &'a [Slice; 6],
    mode: &Slice,
) -> Result<(Request<'a>, Option<ForkMode>), pr_status> {
    let m = match mode.text()? {
        "" => None,
        m => Some(ForkMode::parse(m).ok_or(pr_status::InvalidArgument)?),
    };
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
        history_info: &[],
        privacy: None,
        method_bit: 0,
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
            &status_text(p),
            &|b, l, n| pr_status_text(p, b, l, n),
        );
        let name = pr_stat_name(p);
        match Stat::try_from(p) {
            Ok(s) => {
                assert!(!name.is_null(), "pr_stat_name({p})");
                // SAFETY: a static NUL-terminated string, as promised.
                assert_eq!(unsafe { CStr::from_ptr(name) }, s.c_name());
            }
            Err(_) => assert!(name.is_null(), "pr_stat_name({p}) past PR_STAT_COUNT"),
        }
    }
    assert!(pr_stat_name(PR_STAT_COUNT as u32).is_null());

    // Configuration, with this case's store last.
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
    let cs = CaseStore::for_case();
    let (n, v) = (b"store", cs.path.as_bytes());
    assert_eq!(
        pr_config_set(cfg, n.as_ptr(), n.len(), v.as_ptr(), v.len()),
        pr_status::Ok
    );
    config.set("store", &cs.path).expect("a store path");
    assert_eq!(pr_config_check_store(cfg), pr_status::Ok);
    assert_eq!(pr_config_check_store(null()), pr_status::NullParameter);

    // Engine.
    let cbs = Callbacks {
        case,
        errors: RefCell::new(Vec::new()),
    };
    let ud = std::ptr::addr_of!(cbs) as *mut c_void;
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
    assert_eq!(pr_engine_open_store(null_mut()), pr_status::NullParameter);
    assert_eq!(pr_engine_open_store(eng), pr_status::Ok);
    no_caught_panic("pr_engine_*");

    // The calls.
    let forwarding = case.stored.as_ref().and_then(forwarding_of);
    let r = &case.request;
    let mirror = Mirror {
        cbs: &cbs,
        stored: RefCell::new(None),
        reads: RefCell::new(Vec::new()),
    };
    let mut prev_memo: Vec<u8> = Vec::new();
    for (k, call) in case.calls.iter().enumerate() {
        let what = format!("call {k}: {call:?}");
        let (mode, stored) = match call {
            CallC::Lookup { mode, stored } | CallC::Redirect { mode, stored, .. } => {
                (mode, *stored)
            }
            CallC::RpcSet(a) => {
                rpc_set(&what, eng, &cs, a, case.text_len);
                continue;
            }
            CallC::RpcRemove(a) => {
                rpc_remove(&what, eng, &cs, a, case.text_len);
                continue;
            }
            CallC::RpcList(a) => {
                rpc_list(&what, eng, &cs, a, case.text_len);
                continue;
            }
        };
        let req = pr_request {
            method: r[0].raw(),
            ruri: r[1].raw(),
            to_tag: r[2].raw(),
            event: r[3].raw(),
            content_type: r[4].raw(),
            call_id: r[5].raw(),
            mode: mode.raw(),
            history_info: null(),
            n_history_info: 0,
            privacy: pr_bytes {
                ptr: null(),
                len: 0,
            },
            method_bit: 0,
        };
        let req_ptr: *const pr_request = if case.null_request { null() } else { &req };
        let parsed = if case.null_request {
            Err(pr_status::NullParameter)
        } else {
            request_and_mode(r, mode)
        };
        // The store as this call finds it.
        let key = parsed.as_ref().ok().and_then(|(rq, _)| store_key(rq));
        *mirror.stored.borrow_mut() = key.as_ref().and_then(|key| {
            let f = prepare(&cs, eng, key, forwarding.as_ref().filter(|_| stored))?;
            Some((key.0.clone(), key.1.clone(), f))
        });
        let before = cs.all();

        let mut d: *mut pr_decision = null_mut();
        let mut view = blank_view();
        let t0 = now();
        let (got, want): (pr_status, Result<Decision, pr_status>) = match call {
            CallC::Lookup { .. } => {
                assert_eq!(
                    pr_push_lookup(eng, req_ptr, null_mut(), view.as_mut_ptr()),
                    pr_status::NullParameter
                );
                assert_eq!(
                    pr_push_lookup(eng, req_ptr, &mut d, null_mut()),
                    pr_status::NullParameter
                );
                assert_eq!(
                    pr_push_lookup(null(), req_ptr, &mut d, view.as_mut_ptr()),
                    pr_status::NullParameter
                );
                let got = pr_push_lookup(eng, req_ptr, &mut d, view.as_mut_ptr());
                let want = parsed.map(|(rq, md)| engine.push_lookup(&mirror, &rq, md));
                (got, want)
            }
            CallC::Redirect {
                memo,
                null_branches,
                oversize,
                branches,
                ..
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
                let memo_slice = match memo {
                    MemoC::Bytes(s) => s.clone(),
                    MemoC::Previous => Slice::of(&prev_memo),
                };
                let failure = pr_failure {
                    branches: if *null_branches { null() } else { raw.as_ptr() },
                    n_branches: raw.len(),
                    memo: memo_slice.raw(),
                };
                assert_eq!(
                    pr_push_redirect(eng, req_ptr, null(), &mut d, view.as_mut_ptr()),
                    pr_status::NullParameter
                );
                assert_eq!(
                    pr_push_redirect(eng, req_ptr, &failure, null_mut(), view.as_mut_ptr()),
                    pr_status::NullParameter
                );
                assert_eq!(
                    pr_push_redirect(eng, req_ptr, &failure, &mut d, null_mut()),
                    pr_status::NullParameter
                );
                let got = pr_push_redirect(eng, req_ptr, &failure, &mut d, view.as_mut_ptr());
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
                    let (rq, md) = parsed?;
                    let failed = FailedRound {
                        branches: &bs,
                        memo: memo_slice.content()?,
                    };
                    Ok(engine.push_redirect(&mirror, &rq, &failed, md))
                })();
                (got, want)
            }
            _ => unreachable!("RPC calls are run above"),
        };
        let t1 = now();
        no_caught_panic(&what);
        let errors = std::mem::take(&mut *cbs.errors.borrow_mut());
        assert!(errors.is_empty(), "{what}: {errors:#?}");
        let reads = std::mem::take(&mut *mirror.reads.borrow_mut());
        match &want {
            Err(e) => {
                assert_eq!(got, *e, "{what}");
                assert!(d.is_null(), "{what}: a decision handed out on failure");
                assert!(unwritten(&view), "{what}: the view written on failure");
            }
            Ok(want) => {
                assert_eq!(got, pr_status::Ok, "{what}");
                assert!(!d.is_null());
                check_reads(&what, &reads, want);
                // SAFETY: written by the call, which succeeded.
                let view = unsafe { view.assume_init() };
                check_view(&view, want);
                prev_memo = bytes_of(view.memo);
                pr_decision_free(d);
            }
        }
        let want = after_decision(before, want.as_ref().ok());
        check_store(&what, &want, &cs.all(), t0, t1);
    }

    // The store's count, frees with NULL.
    let (mut n, t0) = (usize::MAX, now());
    assert_eq!(pr_engine_store_count(eng, &mut n), pr_status::Ok);
    let count = |t| cs.store.count(t).expect("store count");
    let (early, late) = (count(t0), count(now()));
    assert!(
        (late..=early).contains(&n),
        "pr_engine_store_count: {n}, the store holds {late}..={early}"
    );
    assert_eq!(
        pr_engine_store_count(eng, null_mut()),
        pr_status::NullParameter
    );
    assert_eq!(
        pr_engine_store_count(null(), &mut n),
        pr_status::NullParameter
    );
    pr_decision_free(null_mut());
    pr_engine_free(null_mut());
    pr_config_free(null_mut());
    pr_entries_free(null_mut());
    assert_eq!(pr_entries_count(null()), 0);

    pr_engine_free(eng);
    pr_config_free(cfg);
    no_caught_panic("frees");
    let errors = cbs.errors.into_inner();
    assert!(errors.is_empty(), "{errors:#?}");
}

// ----------------------------------------------------------------- RPC

/// The reason an RPC call that failed kept for its reply
/// (`pr_engine_last_error`): there for a bad argument or a store error (a
/// NULL or non-UTF-8 argument is kept by some RPC functions only).
fn check_rpc_error(what: &str, got: pr_status, eng: *const pr_engine, text_len: usize) {
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

/// The stored form of an RPC's AOR argument (as `rpc_aor` in ffi/admin.rs
/// makes it), if it is a SIP URI.
fn rpc_aor(arg: &Slice) -> Option<String> {
    arg.content()
        .ok()
        .and_then(|a| uri::parse(a).ok())
        .map(|u| u.aor())
}

/// `pr_rpc_set`: a bad argument changes nothing; success provisions (or
/// replaces) one entry, of the AOR, kind provisioned, to the target.
fn rpc_set(what: &str, eng: *const pr_engine, cs: &CaseStore, a: &[Slice; 4], text_len: usize) {
    let [x, y, z, w] = [a[0].raw(), a[1].raw(), a[2].raw(), a[3].raw()];
    let before = cs.all();
    let t0 = now();
    let got = pr_rpc_set(eng, x.ptr, x.len, y.ptr, y.len, z.ptr, z.len, w.ptr, w.len);
    let t1 = now();
    no_caught_panic(what);
    let after = cs.all();
    if got != pr_status::Ok {
        assert!(
            matches!(
                got,
                pr_status::NullParameter | pr_status::InvalidUtf8 | pr_status::InvalidArgument
            ),
            "{what}: {got:?}"
        );
        check_rpc_error(what, got, eng, text_len);
        assert_eq!(after, before, "{what}: refused, yet the store changed");
        return;
    }
    let aor = rpc_aor(&a[0]).unwrap_or_else(|| panic!("{what}: accepted a bad AOR"));
    let target = a[1].text().expect("an accepted target").trim();
    let service = rpc_service(a[2].text().expect("an accepted service"));
    let ttl = a[3].text().expect("an accepted TTL").trim();
    let ttl: Option<i64> = (!ttl.is_empty()).then(|| {
        ttl.parse()
            .unwrap_or_else(|_| panic!("{what}: TTL {ttl:?}"))
    });
    let written = |e: &Entry| {
        e.aor == aor
            && e.service == service
            && e.kind == ForwardingKind::Provisioned
            && e.targets.len() == 1
            && e.targets[0].uri == target
            && e.targets[0].q.is_none()
            && (t0..=t1).contains(&e.created_at)
            && e.expires_at == ttl.map(|t| e.created_at + t)
            && e.learned_from.is_none()
            && e.learned_status.is_none()
    };
    let changed: Vec<&Entry> = after.iter().filter(|e| !before.contains(e)).collect();
    match changed.as_slice() {
        // The same entry written again within the second.
        [] => assert!(
            after == before && after.iter().any(written),
            "{what}: accepted, not written: {after:#?}"
        ),
        [e] => {
            assert!(written(e), "{what}: wrote {e:?}");
            let wants: Vec<Want> = before
                .into_iter()
                .filter(|b| (&b.aor, &b.service) != (&e.aor, &e.service))
                .map(Want::exact)
                .chain(std::iter::once(Want::exact((*e).clone())))
                .collect();
            check_store(what, &wants, &after, t0, t1);
        }
        _ => panic!("{what}: wrote {changed:#?}"),
    }
}

/// The service key an RPC's service argument names (as `rpc_service` in
/// ffi/admin.rs makes it, for an argument it accepts): `*` for none.
fn rpc_service(arg: &str) -> String {
    match arg.trim() {
        "" | "*" => ANY_SERVICE.to_string(),
        s => {
            let (m, d) = match s.split_once(':') {
                Some((m, d)) => (m, Some(d.as_bytes())),
                None => (s, None),
            };
            service_key(m, d, d)
        }
    }
}

/// `pr_rpc_remove`: a bad argument changes nothing; success removes the
/// entries of one AOR (of one service if given), as many as it says.
fn rpc_remove(what: &str, eng: *const pr_engine, cs: &CaseStore, a: &[Slice; 2], text_len: usize) {
    let [x, y] = [a[0].raw(), a[1].raw()];
    let before = cs.all();
    let mut n = usize::MAX;
    let got = pr_rpc_remove(eng, x.ptr, x.len, y.ptr, y.len, &mut n);
    no_caught_panic(what);
    let after = cs.all();
    if got != pr_status::Ok {
        assert!(
            matches!(
                got,
                pr_status::NullParameter | pr_status::InvalidUtf8 | pr_status::InvalidArgument
            ),
            "{what}: {got:?}"
        );
        assert_eq!(n, usize::MAX, "{what}: out_removed written on failure");
        check_rpc_error(what, got, eng, text_len);
        assert_eq!(after, before, "{what}: refused, yet the store changed");
        return;
    }
    let aor = rpc_aor(&a[0]).unwrap_or_else(|| panic!("{what}: accepted a bad AOR"));
    let service = a[1].text().expect("an accepted service");
    let gone: Vec<&Entry> = before.iter().filter(|e| !after.contains(e)).collect();
    assert_eq!(gone.len(), n, "{what}: removed {gone:#?}, says {n}");
    assert!(
        after.iter().all(|e| before.contains(e)),
        "{what}: the store gained an entry"
    );
    assert!(gone.iter().all(|e| e.aor == aor), "{what}: {gone:#?}");
    if service.trim().is_empty() {
        // Every entry of the AOR.
        assert!(after.iter().all(|e| e.aor != aor), "{what}: {after:#?}");
    } else {
        let service = rpc_service(service);
        let all_of = |e: &&Entry| e.aor == aor && e.service == service;
        assert!(gone.iter().all(all_of), "{what}: {gone:#?}");
        assert!(!after.iter().any(|e| all_of(&e)), "{what}: {after:#?}");
    }
}

/// `pr_rpc_list`: a bad argument gives no list; a list holds the live
/// entries (of the AOR if given), in order, each as the store has it.
fn rpc_list(what: &str, eng: *const pr_engine, cs: &CaseStore, a: &Slice, text_len: usize) {
    let x = a.raw();
    let mut list: *mut pr_entries = null_mut();
    let t0 = now();
    let got = pr_rpc_list(eng, x.ptr, x.len, &mut list);
    let t1 = now();
    no_caught_panic(what);
    if got != pr_status::Ok {
        assert!(
            matches!(
                got,
                pr_status::NullParameter | pr_status::InvalidUtf8 | pr_status::InvalidArgument
            ),
            "{what}: {got:?}"
        );
        assert!(list.is_null(), "{what}: a list on failure");
        check_rpc_error(what, got, eng, text_len);
        return;
    }
    assert!(!list.is_null());
    let filter = match a.content().expect("an accepted AOR") {
        [] => None,
        _ => Some(rpc_aor(a).unwrap_or_else(|| panic!("{what}: accepted a bad AOR"))),
    };
    let all = cs.all();
    let live = |t: i64| -> Vec<&Entry> {
        all.iter()
            .filter(|e| filter.as_ref().is_none_or(|f| *f == e.aor) && e.is_live(t))
            .collect()
    };
    let n = pr_entries_count(list);
    assert!(
        (live(t1).len()..=live(t0).len()).contains(&n),
        "{what}: {n} entries listed, {:#?} live",
        live(t0)
    );
    let mut prev: Option<(Vec<u8>, Vec<u8>)> = None;
    for i in 0..=n {
        let none = pr_bytes {
            ptr: null(),
            len: 0,
        };
        let mut out = pr_entry {
            aor: none,
            service: none,
            kind: none,
            targets: none,
            learned_from: none,
            expires_at: i64::MIN,
            expires_in: i64::MIN,
            created_at: i64::MIN,
            learned_status: u32::MAX,
        };
        let st = pr_entries_get(list, i, &mut out);
        if i == n {
            assert_eq!(st, pr_status::OutOfRange, "{what}");
            assert_eq!(out.expires_at, i64::MIN, "{what}: written past the end");
            break;
        }
        assert_eq!(st, pr_status::Ok, "{what}");
        let (aor, service) = (bytes_of(out.aor), bytes_of(out.service));
        let e = live(t0)
            .into_iter()
            .find(|e| e.aor.as_bytes() == aor && e.service.as_bytes() == service)
            .unwrap_or_else(|| panic!("{what}: listed {:?} {:?}", lossy(&aor), lossy(&service)));
        let key = (aor, service);
        assert!(
            prev.as_ref().is_none_or(|p| *p < key),
            "{what}: out of order"
        );
        prev = Some(key);
        let targets: Vec<String> = e
            .targets
            .iter()
            .map(|t| match t.q {
                Some(q) => format!("{};q={}.{:03}", t.uri, q / 1000, q % 1000),
                None => t.uri.clone(),
            })
            .collect();
        assert_eq!(bytes_of(out.kind), e.kind.name().as_bytes(), "{what}");
        assert_eq!(
            bytes_of(out.targets),
            targets.join(", ").as_bytes(),
            "{what}"
        );
        assert_eq!(
            bytes_of(out.learned_from),
            e.learned_from.as_deref().unwrap_or("").as_bytes(),
            "{what}"
        );
        assert_eq!(out.expires_at, e.expires_at.unwrap_or(-1), "{what}");
        match e.expires_at {
            None => assert_eq!(out.expires_in, -1, "{what}"),
            Some(x) => assert!(
                ((x - t1).max(0)..=(x - t0).max(0)).contains(&out.expires_in),
                "{what}: expires in {} at {t0}..{t1}: {e:?}",
                out.expires_in
            ),
        }
        assert_eq!(out.created_at, e.created_at, "{what}");
        assert_eq!(
            out.learned_status,
            e.learned_status.map_or(0, u32::from),
            "{what}"
        );
    }
    assert_eq!(
        pr_entries_get(list, 0, null_mut()),
        pr_status::NullParameter
    );
    assert_eq!(pr_entries_count(null()), 0);
    pr_entries_free(list);
    no_caught_panic(what);
}

/// `pr_status_text` of a number.
fn status_text(s: u32) -> String {
    let text = match s {
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
        _ => return format!("unknown status {s}"),
    };
    text.to_string()
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
