//! What the engine asks of Kamailio, through the callbacks given to
//! `pr_engine_new`: the contacts usrloc holds for an AOR (`pr_lookup_fn`,
//! handed the AOR already in usrloc's key form: C parses nothing) and
//! whether a host is the proxy itself (`pr_is_self_fn`); and the engine's
//! [`Host`] implementation over them.

use std::ffi::c_void;
use std::sync::Arc;

use super::engine::EngineBox;
use super::{ffi_boundary, pr_bytes, pr_status, try_mut, try_ref};
use crate::engine::{BranchOut, Forwarding, Host, LookupError, Registration};
use crate::log::{self, pr_log_level};
use crate::uri;

/// Opaque: the contacts a lookup callback reports (`pr_contacts_add`).
pub struct pr_contacts {
    _private: [u8; 0],
}

/// One registered contact, as the lookup callback reports it. All byte
/// strings are copied by `pr_contacts_add`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct pr_contact {
    /// The contact URI (required).
    pub uri: pr_bytes,
    /// Source address of the registration (becomes the branch's dst_uri).
    pub received: pr_bytes,
    /// Path vector.
    pub path: pr_bytes,
    /// `+sip.instance`.
    pub instance: pr_bytes,
    /// The registration's socket: an opaque pointer handed back untouched.
    pub socket: *const c_void,
    /// q in thousandths, or -1 when not set.
    pub q: i32,
    /// Time of the last registration or refresh (Unix seconds).
    pub last_modified: i64,
    /// usrloc's `cflags`: the branch flags the REGISTER had.
    pub flags: u32,
    /// usrloc's `methods`: Kamailio's `METHOD_*` bits the contact accepts
    /// (`0xffffffff`: all; 0 is read as all too, so that a zeroed
    /// `pr_contact` excludes nothing).
    pub methods: u32,
    /// RFC 5626 reg-id (0: none).
    pub reg_id: u32,
    /// usrloc's record-unique id.
    pub ruid: pr_bytes,
    /// The REGISTER's User-Agent.
    pub user_agent: pr_bytes,
    /// usrloc's `tcpconn_id` (-1 or 0: none).
    pub conn_id: i32,
}

/// An AOR of this proxy, as the lookup callback gets it.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct pr_aor {
    /// The AOR as the module keys forwardings (`sip:user@host`), for logs.
    pub uri: pr_bytes,
    /// Its usrloc key as registrar's `extract_aor()` builds it with its
    /// defaults: the user unescaped, `@`, the host, all lower case.
    pub key: pr_bytes,
    /// How many bytes of `key` are the user: the key of a usrloc without
    /// `use_domain` is `key[..user_len]`.
    pub user_len: usize,
}

/// Lists the registered contacts of `aor`: call `pr_contacts_add(out,
/// ...)` once per valid contact, then return 0; return -1 if the location
/// service failed.
pub type pr_lookup_fn = Option<
    unsafe extern "C" fn(userdata: *mut c_void, aor: *const pr_aor, out: *mut pr_contacts) -> i32,
>;

/// Returns true when `host` (with `port`; 0: none given) is the proxy
/// itself: one of its listen addresses or aliases (Kamailio's check_self).
pub type pr_is_self_fn = Option<
    unsafe extern "C" fn(
        userdata: *mut c_void,
        host: *const u8,
        host_len: usize,
        port: u16,
    ) -> bool,
>;

/// Most contacts one lookup may report; more are ignored (with a warning).
pub const PR_MAX_CONTACTS_PER_AOR: usize = 1024;

/// What a `pr_contacts` points to during a lookup.
struct ContactList<'a> {
    regs: Vec<Registration>,
    overflow: bool,
    /// Where the copies' buffers come from (`RegBuffers::bytes`).
    spare: &'a mut Vec<Vec<u8>>,
}

/// Adds one contact to a lookup's result (inside a `pr_lookup_fn` only).
/// The bytes are copied. `PR_STATUS_INVALID_ARGUMENT` for an empty URI or a
/// q outside -1..1000.
#[no_mangle]
pub extern "C" fn pr_contacts_add(out: *mut pr_contacts, c: *const pr_contact) -> pr_status {
    ffi_boundary!(pr_status::Panic, {
        let list = try_mut!(out.cast::<ContactList<'_>>(), pr_status::NullParameter);
        let c = try_ref!(c, pr_status::NullParameter);
        // SAFETY: the callback passes (ptr, len) pairs per the contract.
        let fields = unsafe {
            (
                c.uri.get(),
                c.received.get_opt(),
                c.path.get_opt(),
                c.instance.get_opt(),
            )
        };
        let (uri, received, path, instance) = match fields {
            (Ok(u), Ok(r), Ok(p), Ok(i)) => (u, r, p, i),
            (Err(e), ..) | (_, Err(e), ..) | (_, _, Err(e), _) | (.., Err(e)) => return e,
        };
        // SAFETY: as above.
        let (ruid, user_agent) = match unsafe { (c.ruid.get_opt(), c.user_agent.get_opt()) } {
            (Ok(r), Ok(u)) => (r, u),
            (Err(e), _) | (_, Err(e)) => return e,
        };
        if uri.is_empty() || !(-1..=1000).contains(&c.q) {
            return pr_status::InvalidArgument;
        }
        if list.regs.len() >= PR_MAX_CONTACTS_PER_AOR {
            list.overflow = true;
            return pr_status::Ok;
        }
        let strings = [
            uri,
            received.unwrap_or_default(),
            path.unwrap_or_default(),
            instance.unwrap_or_default(),
            ruid.unwrap_or_default(),
            user_agent.unwrap_or_default(),
        ];
        // Kept as 32-bit spans of one buffer.
        if strings.iter().map(|s| s.len()).sum::<usize>() > u32::MAX as usize {
            return pr_status::InvalidArgument;
        }
        // One spare buffer for all the contact's strings.
        let mut reg = Registration::with_buffer(take(list.spare), strings);
        reg.socket = c.socket as usize;
        reg.q = u16::try_from(c.q).ok();
        reg.last_modified = c.last_modified;
        reg.flags = c.flags;
        reg.methods = match c.methods {
            0 => crate::engine::host::ALL_METHODS,
            m => m,
        };
        reg.reg_id = c.reg_id;
        reg.conn_id = c.conn_id.max(0);
        list.regs.push(reg);
        pr_status::Ok
    })
}

/// Spare buffers for lookups and branches (see `EngineBox::spare_regs`).
#[derive(Default)]
pub(crate) struct RegBuffers {
    /// An empty list, with its capacity.
    list: Vec<Registration>,
    /// Empty byte buffers, with their capacity.
    bytes: Vec<Vec<u8>>,
    /// The last usrloc key made (see [`usrloc_key`]), its buffer reused.
    key: Vec<u8>,
    /// The AOR `key` was made of, and the length of its user part (0: no
    /// key kept): the same AOR (both calls of a transaction) is not made
    /// into a key again.
    key_of: Vec<u8>,
    key_user_len: usize,
}

/// A spare buffer of `pool` (empty), or a new one.
fn take(pool: &mut Vec<Vec<u8>>) -> Vec<u8> {
    let mut v = pool.pop().unwrap_or_default();
    v.clear();
    v
}

/// Most spare byte buffers kept (one per registration or branch of a
/// few; a lookup of more allocates the rest).
const SPARE_BYTES: usize = 48;

/// Largest buffer kept: a registration's strings (URI, received, Path,
/// instance, ruid, user agent) of usual sizes.
const SPARE_BYTES_MAX: usize = 4 * uri::MAX_URI_LEN;

impl RegBuffers {
    /// `b` in a spare buffer.
    fn copy(&mut self, b: &[u8]) -> Vec<u8> {
        // One large enough if there is one (the buffers differ in size:
        // registrations, branches, header values), else the last one.
        let mut v = match self.bytes.iter().rposition(|v| v.capacity() >= b.len()) {
            Some(i) => self.bytes.swap_remove(i),
            None => take(&mut self.bytes),
        };
        v.clear();
        v.extend_from_slice(b);
        v
    }

    /// Keeps the buffer of a registration or a branch (all its strings).
    fn keep(&mut self, v: Vec<u8>) {
        if v.capacity() > 0 && v.capacity() <= SPARE_BYTES_MAX && self.bytes.len() < SPARE_BYTES {
            self.bytes.push(v);
        }
    }
}

/// The usrloc key of an AOR the engine wrote (`sip:user@host`, see
/// `SipUri::aor`) into `key`, as registrar's `extract_aor()` makes it with
/// its defaults (no realm prefix, `case_sensitive` 0): the user unescaped,
/// `@`, the host, lower-cased. Returns the user's length; `None` for an AOR
/// without a user (no record can match it).
pub(crate) fn usrloc_key(aor: &str, key: &mut Vec<u8>) -> Option<usize> {
    let a = aor.as_bytes();
    let rest = match a {
        [b's', b'i', b'p', b':', rest @ ..] => rest,
        [b's', b'i', b'p', b's', b':', rest @ ..] => rest,
        _ => return None,
    };
    let at = rest.iter().position(|&c| c == b'@')?;
    let (user, host) = (rest.get(..at)?, rest.get(at + 1..)?);
    key.clear();
    if user.contains(&b'%') {
        key.extend(uri::unescaped(user));
    } else {
        key.extend_from_slice(user);
    }
    let user_len = key.len();
    key.push(b'@');
    key.extend_from_slice(host);
    key.make_ascii_lowercase();
    (user_len > 0).then_some(user_len)
}

/// One remembered `is_self` answer (hosts up to 64 bytes; kept inline so
/// that remembering allocates nothing).
#[derive(Clone, Copy)]
pub(crate) struct SelfAnswer {
    host: [u8; 64],
    len: u8,
    port: u16,
    answer: bool,
}

/// Most `is_self` answers remembered at once.
pub(crate) const SELF_MEMO: usize = 8;

impl EngineBox {
    /// Calls the host's lookup callback for `aor` (its usrloc `key`),
    /// the contacts copied into `list` with buffers from `pool`; the
    /// callback's return code and the list.
    fn call_lookup(
        &self,
        cb: unsafe extern "C" fn(*mut c_void, *const pr_aor, *mut pr_contacts) -> i32,
        aor: &str,
        key: &[u8],
        user_len: usize,
        list: Vec<Registration>,
        pool: &mut Vec<Vec<u8>>,
    ) -> (i32, Vec<Registration>) {
        let mut list = ContactList {
            regs: list,
            overflow: false,
            spare: pool,
        };
        let pa = pr_aor {
            uri: pr_bytes::of(aor.as_bytes()),
            key: pr_bytes::of(key),
            user_len,
        };
        let out = std::ptr::addr_of_mut!(list).cast::<pr_contacts>();
        // SAFETY: `cb` is the host's lookup function registered with this
        // userdata; `pa` and its bytes are valid for the call; `out` points
        // to a live ContactList that only `pr_contacts_add` touches during
        // the call.
        let rc = unsafe { cb(self.userdata, &pa, out) };
        if list.overflow {
            log::emit(
                pr_log_level::Warn,
                &format!("{aor}: more than {PR_MAX_CONTACTS_PER_AOR} contacts, the rest ignored"),
            );
        }
        (rc, list.regs)
    }
}

impl Host for EngineBox {
    fn lookup(&self, aor: &str) -> Result<Vec<Registration>, LookupError> {
        let cb = self.lookup.ok_or(LookupError)?;
        // The spare buffers stay borrowed during the callback. A callback
        // that enters the engine again finds them so: that inner lookup
        // (and whatever else it asks of the host) makes do without them.
        let Ok(mut guard) = self.spare_regs.try_borrow_mut() else {
            let mut key = Vec::new();
            let Some(user_len) = usrloc_key(aor, &mut key) else {
                return Ok(Vec::new());
            };
            let (rc, regs) = self.call_lookup(cb, aor, &key, user_len, Vec::new(), &mut Vec::new());
            return if rc == 0 { Ok(regs) } else { Err(LookupError) };
        };
        let RegBuffers {
            list: spare_list,
            bytes,
            key,
            key_of,
            key_user_len,
        } = &mut *guard;
        if *key_user_len == 0 || key_of.as_slice() != aor.as_bytes() {
            key_of.clear();
            *key_user_len = 0;
            let Some(n) = usrloc_key(aor, key) else {
                return Ok(Vec::new());
            };
            key_of.extend_from_slice(aor.as_bytes());
            *key_user_len = n;
        }
        let list = std::mem::take(spare_list);
        let (rc, regs) = self.call_lookup(cb, aor, key, *key_user_len, list, bytes);
        drop(guard);
        if rc == 0 {
            Ok(regs)
        } else {
            self.recycle(regs);
            Err(LookupError)
        }
    }

    fn recycle(&self, mut regs: Vec<Registration>) {
        // Borrowed by an outer lookup (see `lookup`): dropped.
        let Ok(mut spare) = self.spare_regs.try_borrow_mut() else {
            return;
        };
        for r in regs.drain(..) {
            spare.keep(r.into_buffer());
        }
        if spare.list.capacity() == 0 && regs.capacity() <= PR_MAX_CONTACTS_PER_AOR {
            spare.list = regs;
        }
    }

    fn buffer_with(&self, b: &[u8]) -> Vec<u8> {
        match self.spare_regs.try_borrow_mut() {
            Ok(mut spare) => spare.copy(b),
            // Borrowed by an outer lookup (see `lookup`).
            Err(_) => b.to_vec(),
        }
    }

    fn recycle_branches(&self, branches: &mut Vec<BranchOut>) {
        // Borrowed by an outer lookup (see `lookup`): dropped.
        let Ok(mut spare) = self.spare_regs.try_borrow_mut() else {
            branches.clear();
            return;
        };
        for mut b in branches.drain(..) {
            // History-Info and Diversion values (issue 18), then the strings.
            spare.keep(std::mem::take(&mut b.history_info));
            spare.keep(std::mem::take(&mut b.diversion));
            if let crate::engine::Origin::AorOf(v) = std::mem::take(&mut b.origin) {
                spare.keep(v);
            }
            spare.keep(b.into_buffer());
        }
    }

    fn is_self(&self, host: &[u8], port: Option<u16>) -> bool {
        let Some(cb) = self.is_self else {
            return false;
        };
        let port = port.unwrap_or(0);
        let now = self.now();
        if self.self_hosts_at.replace(now) != now {
            self.self_hosts.borrow_mut().clear();
        }
        let same =
            |a: &SelfAnswer| a.port == port && a.host.get(..usize::from(a.len)) == Some(host);
        if let Some(a) = self.self_hosts.borrow().iter().find(|a| same(a)) {
            return a.answer;
        }
        // SAFETY: the host's callback, registered with this userdata;
        // `host` is valid for the call.
        let answer = unsafe { cb(self.userdata, host.as_ptr(), host.len(), port) };
        let mut memo = self.self_hosts.borrow_mut();
        if let (true, Ok(len)) = (memo.len() < SELF_MEMO, u8::try_from(host.len())) {
            let mut a = SelfAnswer {
                host: [0; 64],
                len,
                port,
                answer,
            };
            if let Some(slot) = a.host.get_mut(..host.len()) {
                slot.copy_from_slice(host);
                memo.push(a);
            }
        }
        answer
    }

    fn stored(&self, aor: &str, service: &str) -> Option<Arc<Forwarding>> {
        let shared = self.stored_for_key(aor, service)?;
        *self.read.borrow_mut() = Some(shared.entry);
        Some(shared.forwarding)
    }

    fn now(&self) -> i64 {
        match self.now.get() {
            0 => {
                let now = crate::clock::unix_seconds();
                self.now.set(now);
                now
            }
            now => now,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;
    use crate::ffi::{pr_config_free, pr_config_new, pr_engine_free, pr_engine_new};

    #[test]
    fn usrloc_keys_are_registrars() {
        let mut k = Vec::new();
        for (aor, key, user_len) in [
            ("sip:u1@example.com", "u1@example.com", Some(2)),
            ("sips:U1@Example.COM", "u1@example.com", Some(2)),
            ("sip:a%40b@example.com", "a@b@example.com", Some(3)),
            ("sip:%41lice@h", "alice@h", Some(5)),
            ("sip:example.com", "", None),
            ("tel:+1234", "", None),
        ] {
            assert_eq!(usrloc_key(aor, &mut k), user_len, "{aor}");
            if user_len.is_some() {
                assert_eq!(k, key.as_bytes(), "{aor}");
            }
        }
    }

    /// Counts the host's is_self calls; "example.com" is the proxy.
    unsafe extern "C" fn counting_is_self(
        userdata: *mut c_void,
        host: *const u8,
        len: usize,
        _port: u16,
    ) -> bool {
        // SAFETY: the test passes a live Cell<u32>; host/len per the contract.
        unsafe {
            let calls = &*userdata.cast::<Cell<u32>>();
            calls.set(calls.get() + 1);
            std::slice::from_raw_parts(host, len) == b"example.com"
        }
    }
    #[test]
    fn is_self_answers_are_kept_for_the_current_second_only() {
        let calls = Cell::new(0u32);
        let mut cfg = std::ptr::null_mut();
        assert_eq!(pr_config_new(&mut cfg), pr_status::Ok);
        let mut e = std::ptr::null_mut();
        let userdata = std::ptr::addr_of!(calls).cast_mut().cast::<c_void>();
        assert_eq!(
            pr_engine_new(cfg, None, Some(counting_is_self), userdata, &mut e),
            pr_status::Ok
        );
        // SAFETY: a live engine made just above.
        let eb = unsafe { &*e.cast::<EngineBox>() };
        eb.now.set(1_000);
        // The same host and port: asked once, answered the same each time.
        for _ in 0..3 {
            assert!(eb.is_self(b"example.com", None));
            assert!(!eb.is_self(b"partner.example", Some(5060)));
        }
        assert_eq!(calls.get(), 2);
        // Another port is another question.
        assert!(eb.is_self(b"example.com", Some(5060)));
        assert_eq!(calls.get(), 3);
        // A new call in the same second keeps the answers...
        eb.begin_call();
        eb.now.set(1_000);
        assert!(eb.is_self(b"example.com", None));
        assert_eq!(calls.get(), 3);
        // ... the next second asks again.
        eb.now.set(1_001);
        assert!(eb.is_self(b"example.com", None));
        assert_eq!(calls.get(), 4);
        // A host too long to keep inline is asked every time.
        let long = [b'a'; 65];
        assert!(!eb.is_self(&long, None));
        assert!(!eb.is_self(&long, None));
        assert_eq!(calls.get(), 6);
        // At most SELF_MEMO answers: the rest are asked every time.
        eb.now.set(1_002);
        let hosts: Vec<String> = (0..SELF_MEMO + 2)
            .map(|k| format!("h{k}.example"))
            .collect();
        for h in &hosts {
            eb.is_self(h.as_bytes(), None);
        }
        let before = calls.get();
        for h in &hosts {
            eb.is_self(h.as_bytes(), None);
        }
        assert_eq!(calls.get() - before, 2);
        pr_engine_free(e);
        pr_config_free(cfg);
    }
}
