//! What a Kamailio worker's call into the core allocates once it has run a
//! few: nothing, for the flows the benchmarks measure (F1: a 302 followed
//! to another terminal of the subscriber; F2: a 480, then the next
//! terminal; F6: a learned 301 applied at lookup), History-Info values
//! included. Every heap allocation counted, through the C ABI as the module
//! calls it (a decision freed and the next one filled again, registrations
//! handed over by the lookup callback, the store opened).
//!
//! glibc's malloc is cold in a worker (Kamailio has its own allocators): an
//! allocation per message costs its code's cache lines as well as its
//! instructions. This test fails on the first one that comes back.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::ffi::c_void;
use std::ptr;

use push_redirect::ffi::*;
use push_redirect::stats::PR_STAT_COUNT;

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: forwards every call to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
        // SAFETY: the caller's layout, as GlobalAlloc requires.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, p: *mut u8, layout: Layout) {
        // SAFETY: `p` came from `alloc`/`realloc` above with this layout.
        unsafe { System.dealloc(p, layout) }
    }
    unsafe fn realloc(&self, p: *mut u8, layout: Layout, new: usize) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
        // SAFETY: as `GlobalAlloc::realloc` requires, passed on.
        unsafe { System.realloc(p, layout, new) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

fn bytes(b: &[u8]) -> pr_bytes {
    pr_bytes {
        ptr: b.as_ptr(),
        len: b.len(),
    }
}

const T1: &[u8] = b"sip:u1t1@127.0.0.1:5071";
const T2: &[u8] = b"sip:u1t2@127.0.0.1:5072";
/// Where t2 registered from (behind NAT): its branches go there.
const NAT: &[u8] = b"sip:192.0.2.7:40000";

/// t1 registered through an edge proxy: its branches go to the edge.
const EDGE_PATH: &[u8] = b"<sip:edge.example:5070;lr;received=sip:192.0.2.8:5060>";
const EDGE_HOP: &[u8] = b"sip:edge.example:5070;lr;received=sip:192.0.2.8:5060";

/// usrloc of the test: u1 has t1 (q=1.0, through an edge proxy with a
/// Path) and t2 (q=0.5, behind NAT).
unsafe extern "C" fn lookup(
    _userdata: *mut c_void,
    aor: *const pr_aor,
    out: *mut pr_contacts,
) -> i32 {
    // SAFETY: the engine passes a valid pr_aor whose key is a (ptr, len)
    // pair, never empty (it is asked about AORs with a user only).
    let key = unsafe { std::slice::from_raw_parts((*aor).key.ptr, (*aor).key.len) };
    if key != b"u1@example.com" {
        return 0;
    }
    for (uri, received, path, q) in [(T1, &b""[..], EDGE_PATH, 1000), (T2, NAT, &b""[..], 500)] {
        let c = pr_contact {
            uri: bytes(uri),
            received: bytes(received),
            path: bytes(path),
            instance: bytes(b""),
            socket: ptr::null(),
            q,
            last_modified: 1,
            // As usrloc has them: a ruid and a User-Agent per contact,
            // the NAT flag on the NATed one, every method.
            flags: if received.is_empty() { 0 } else { 1 << 6 },
            methods: u32::MAX,
            reg_id: 0,
            ruid: bytes(b"uloc-5f3a-1b2c-1"),
            user_agent: bytes(b"PushPhone/1.0"),
            conn_id: 0,
        };
        assert_eq!(pr_contacts_add(out, &c), pr_status::Ok);
    }
    0
}

unsafe extern "C" fn is_self(_: *mut c_void, host: *const u8, len: usize, _port: u16) -> bool {
    // SAFETY: the engine passes a valid (ptr, len) host.
    unsafe { std::slice::from_raw_parts(host, len) }.eq_ignore_ascii_case(b"example.com")
}

/// An engine, and the directory of its store (removed after it).
struct Engine(*mut pr_engine, #[allow(dead_code)] tempdir::Dir);

mod tempdir {
    /// A directory removed when dropped.
    pub struct Dir(pub std::path::PathBuf);
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

fn engine(name: &str) -> Engine {
    let dir = std::env::temp_dir().join(format!("pr-alloc-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let store = dir.join("store.sqlite");
    let mut cfg = ptr::null_mut();
    assert_eq!(pr_config_new(&mut cfg), pr_status::Ok);
    let (name, value) = (b"store", store.to_str().unwrap().as_bytes());
    assert_eq!(
        pr_config_set(cfg, name.as_ptr(), name.len(), value.as_ptr(), value.len()),
        pr_status::Ok
    );
    let mut e = ptr::null_mut();
    assert_eq!(
        pr_engine_new(cfg, Some(lookup), Some(is_self), ptr::null_mut(), &mut e),
        pr_status::Ok
    );
    pr_config_free(cfg);
    assert_eq!(pr_engine_open_store(e), pr_status::Ok);
    Engine(e, tempdir::Dir(dir))
}

impl Drop for Engine {
    fn drop(&mut self) {
        pr_engine_free(self.0);
    }
}

fn message() -> pr_request {
    pr_request {
        method: bytes(b"MESSAGE"),
        ruri: bytes(b"sip:u1@example.com"),
        to_tag: bytes(b""),
        event: bytes(b""),
        content_type: bytes(b"text/plain"),
        call_id: bytes(b"alloc-test"),
        mode: bytes(b""),
        history_info: std::ptr::null(),
        n_history_info: 0,
        privacy: bytes(b""),
        method_bit: 256,
    }
}

fn reply(status: &str, contact: &[u8]) -> Vec<u8> {
    let mut r = format!(
        "SIP/2.0 {status}\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK1\r\n\
         From: <sip:a@example.com>;tag=1\r\nTo: <sip:u1@example.com>;tag=2\r\n\
         Call-ID: alloc-test\r\nCSeq: 1 MESSAGE\r\nContact: <"
    )
    .into_bytes();
    r.extend_from_slice(contact);
    r.extend_from_slice(b">\r\nContent-Length: 0\r\n\r\n");
    r
}

/// A decision and its view.
struct Decided(*mut pr_decision, pr_decision_view);

/// Checks that the decision sends its first branch to `uri` via `dst`
/// (empty: none), with History-Info or (`history` false: push_lookup's
/// first delivery to a registered terminal) none, then frees it. Compares
/// in place: the check allocates nothing itself.
fn expect_branch(Decided(d, v): Decided, uri: &[u8], dst: &[u8], history: bool) {
    assert_eq!(v.script_rc, 1);
    assert!(v.n_branches >= 1);
    // SAFETY: the view holds `n_branches` (>= 1) branches, owned by the
    // decision, which is freed below.
    let o = unsafe { &*v.branches };
    // SAFETY: the decision's own bytes, valid until it is freed below.
    let view = |b: pr_bytes| unsafe {
        if b.ptr.is_null() {
            &[][..]
        } else {
            std::slice::from_raw_parts(b.ptr, b.len)
        }
    };
    assert!(view(o.uri) == uri && view(o.dst_uri) == dst);
    // History-Info (on by default) is written without allocating too.
    let hi = view(o.history_info);
    if history {
        assert!(hi.starts_with(b"<sip:u1@example.com>;index=1, <"));
    } else {
        assert!(hi.is_empty());
    }
    pr_decision_free(d);
}

/// An empty view for a call to fill.
fn blank_view() -> pr_decision_view {
    pr_decision_view {
        script_rc: 0,
        reason: 0,
        parallel: false,
        branches: ptr::null(),
        n_branches: 0,
        memo: bytes(b""),
        counters: [0; PR_STAT_COUNT],
    }
}

/// push_lookup: a new MESSAGE for u1.
fn lookup_once(e: &Engine) -> Decided {
    let (mut d, mut v) = (ptr::null_mut(), blank_view());
    let st = pr_push_lookup(e.0, &message(), &mut d, &mut v);
    assert_eq!(st, pr_status::Ok);
    Decided(d, v)
}

/// push_redirect: t1 answered `reply`.
fn redirect_once(e: &Engine, reply: &[u8]) -> Decided {
    let br = [pr_branch {
        uri: bytes(T1),
        status: reply[8..11]
            .iter()
            .fold(0, |a, c| a * 10 + u32::from(c - b'0')),
        reply: bytes(reply),
        current_round: true,
    }];
    let failure = pr_failure {
        branches: br.as_ptr(),
        n_branches: br.len(),
        memo: bytes(b""),
    };
    let (mut d, mut v) = (ptr::null_mut(), blank_view());
    let st = pr_push_redirect(e.0, &message(), &failure, &mut d, &mut v);
    assert_eq!(st, pr_status::Ok);
    Decided(d, v)
}

/// Calls before counting: the host's spare buffers settle within a few
/// transactions (a spare buffer goes to the first value it fits, so a
/// longer one, a failure round's History-Info, may find only short ones
/// and grow one until the pool holds enough long ones; F2 needs more than
/// 6 since push_lookup's first delivery stopped writing one).
const WARM: usize = 10;

/// Runs `call` [`WARM`] times to warm the buffers up, then counts what 100
/// more calls allocate.
fn steady(mut call: impl FnMut()) -> u64 {
    for _ in 0..WARM {
        call();
    }
    let before = allocations();
    for _ in 0..100 {
        call();
    }
    let n = allocations() - before;
    // The core's panic hook sends panic messages to its logger, none here:
    // the count is printed for the failure report.
    eprintln!("{n} allocations in 100 calls");
    n
}

/// A push_lookup() to t1, then push_redirect() after t1 answered `reply`,
/// which must send the request on to t2 via its registration.
fn transaction_allocations(name: &str, reply: &[u8]) -> u64 {
    let e = engine(name);
    steady(|| {
        expect_branch(lookup_once(&e), T1, EDGE_HOP, false);
        expect_branch(redirect_once(&e, reply), T2, NAT, true);
    })
}

#[test]
fn f1_a_302_to_another_terminal_allocates_nothing_once_warm() {
    let n = transaction_allocations("f1", &reply("302 Moved Temporarily", T2));
    assert_eq!(n, 0, "allocations in 100 F1 transactions");
}

#[test]
fn f2_a_failover_to_the_next_terminal_allocates_nothing_once_warm() {
    let n = transaction_allocations("f2", &reply("480 Temporarily Unavailable", b""));
    assert_eq!(n, 0, "allocations in 100 F2 transactions");
}

#[test]
fn f6_a_learned_301_allocates_nothing_once_warm() {
    let e = engine("f6");
    expect_branch(
        redirect_once(&e, &reply("301 Moved Permanently", T2)),
        T2,
        NAT,
        true,
    );
    let n = steady(|| expect_branch(lookup_once(&e), T2, NAT, true));
    assert_eq!(n, 0, "allocations in 100 F6 lookups");
}
