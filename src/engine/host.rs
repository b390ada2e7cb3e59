//! What the engine asks of its host: the location service, "is this host
//! me", the clock, the stored forwarding, and buffers to reuse. Kamailio
//! is one host (`crate::ffi::host`); the tests' fake location service is
//! another.

use std::sync::Arc;

use super::decision::BranchOut;
use super::packed::Packed;
use crate::forwarding::Forwarding;

/// One registered contact of an AOR (a usrloc record). Its byte strings
/// (URI, received address, Path, instance, ruid, user agent) are kept in
/// one buffer: read them with [`Registration::uri`] and the like, set them
/// with [`Registration::set_received`] and the like.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    /// The strings, indexed by the `REG_*` constants.
    pub(super) parts: Packed<6>,
    /// The listening socket the registration arrived on: an opaque cookie of
    /// the caller's, handed back untouched (0: none).
    pub socket: usize,
    /// q in thousandths, `None` when not given.
    pub q: Option<u16>,
    /// When it was registered or refreshed (Unix time).
    pub last_modified: i64,
    /// The contact's flags (usrloc's `cflags`: the branch flags the
    /// REGISTER had, e.g. nathelper's NAT flag); `lookup()` ORs them into
    /// the branch's flags.
    pub flags: u32,
    /// The methods the contact accepts (usrloc's `methods`: Kamailio's
    /// `METHOD_*` bits, from the contact's `methods` parameter or the
    /// REGISTER's Allow header; [`ALL_METHODS`] when neither was given).
    pub methods: u32,
    /// RFC 5626 `reg-id` (0: none).
    pub reg_id: u32,
    /// The TCP/TLS connection the registration came over (usrloc's
    /// `tcpconn_id`; -1 or 0: none), for the branch's `otcpid`.
    pub conn_id: i32,
}

/// Where each string of a [`Registration`] is in its buffer.
pub(super) const REG_URI: usize = 0;
pub(super) const REG_RECEIVED: usize = 1;
pub(super) const REG_PATH: usize = 2;
pub(super) const REG_INSTANCE: usize = 3;
pub(super) const REG_RUID: usize = 4;
pub(super) const REG_USER_AGENT: usize = 5;

/// usrloc's `methods` of a contact that named none: every method.
pub const ALL_METHODS: u32 = u32::MAX;

impl Default for Registration {
    /// An empty registration that accepts every method.
    fn default() -> Self {
        Registration {
            parts: Packed::default(),
            socket: 0,
            q: None,
            last_modified: 0,
            flags: 0,
            methods: ALL_METHODS,
            reg_id: 0,
            conn_id: 0,
        }
    }
}

impl Registration {
    /// A registration of `uri` that accepts every method, with nothing else
    /// set.
    pub fn new(uri: &[u8]) -> Self {
        let mut r = Registration::default();
        r.parts.push(REG_URI, uri);
        r
    }

    /// A registration whose strings are copied into `buf` (emptied first;
    /// its capacity is reused), all of them at once: `[uri, received,
    /// path, instance, ruid, user_agent]` (empty: none).
    pub fn with_buffer(buf: Vec<u8>, strings: [&[u8]; 6]) -> Self {
        Registration {
            parts: Packed::from_strings(buf, strings),
            ..Registration::default()
        }
    }

    /// The buffer of its strings, for a host to reuse.
    pub fn into_buffer(self) -> Vec<u8> {
        self.parts.into_buffer()
    }

    /// The contact URI.
    pub fn uri(&self) -> &[u8] {
        self.parts.get(REG_URI)
    }

    /// Where the registration came from (becomes the branch's dst_uri).
    pub fn received(&self) -> Option<&[u8]> {
        self.parts.opt(REG_RECEIVED)
    }

    /// The Path vector of the registration.
    pub fn path(&self) -> Option<&[u8]> {
        self.parts.opt(REG_PATH)
    }

    /// `+sip.instance`.
    pub fn instance(&self) -> Option<&[u8]> {
        self.parts.opt(REG_INSTANCE)
    }

    /// usrloc's record-unique id.
    pub fn ruid(&self) -> Option<&[u8]> {
        self.parts.opt(REG_RUID)
    }

    /// The User-Agent of the REGISTER.
    pub fn user_agent(&self) -> Option<&[u8]> {
        self.parts.opt(REG_USER_AGENT)
    }

    /// Sets the contact URI.
    pub fn set_uri(&mut self, uri: &[u8]) {
        self.parts.push(REG_URI, uri);
    }

    /// Sets (or, `None`, clears) the received address.
    pub fn set_received(&mut self, v: Option<&[u8]>) {
        self.parts.push(REG_RECEIVED, v.unwrap_or_default());
    }

    /// Sets (or clears) the Path.
    pub fn set_path(&mut self, v: Option<&[u8]>) {
        self.parts.push(REG_PATH, v.unwrap_or_default());
    }

    /// Sets (or clears) the instance.
    pub fn set_instance(&mut self, v: Option<&[u8]>) {
        self.parts.push(REG_INSTANCE, v.unwrap_or_default());
    }

    /// Sets (or clears) the ruid.
    pub fn set_ruid(&mut self, v: Option<&[u8]>) {
        self.parts.push(REG_RUID, v.unwrap_or_default());
    }

    /// Sets (or clears) the user agent.
    pub fn set_user_agent(&mut self, v: Option<&[u8]>) {
        self.parts.push(REG_USER_AGENT, v.unwrap_or_default());
    }
}

/// A failed AOR lookup (the location service could not be read).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LookupError;

/// What the engine asks of its host (Kamailio, or a test).
pub trait Host {
    /// The registered contacts of a local AOR (`sip:user@host`), in any order.
    fn lookup(&self, aor: &str) -> Result<Vec<Registration>, LookupError>;
    /// Whether `host` (and `port`, if given) is this proxy (Kamailio's
    /// `check_self`: listen addresses and aliases).
    fn is_self(&self, host: &[u8], port: Option<u16>) -> bool;
    /// The current Unix time in seconds.
    fn now(&self) -> i64;
    /// Registrations that `lookup` returned, handed back once the engine is
    /// done with them (a host may reuse their buffers). Default: dropped.
    fn recycle(&self, _regs: Vec<Registration>) {}
    /// The stored forwarding for (`aor`, `service`), if any. `push_redirect`
    /// asks only when it needs it (a 3xx without Contact, or a failed round
    /// that may have been a stored target's), so a redirect that is simply
    /// followed costs no store read. Default: no store.
    /// Shared: the host may hand out the copy it keeps (no copy per call).
    fn stored(&self, _aor: &str, _service: &str) -> Option<Arc<Forwarding>> {
        None
    }
    /// `b` in a buffer for a branch: a host that keeps spare buffers (see
    /// [`Host::recycle_branches`]) fills one of them. Default: a new one.
    fn buffer_with(&self, b: &[u8]) -> Vec<u8> {
        b.to_vec()
    }
    /// Takes the branches of a decision that is about to be filled again,
    /// leaving `branches` empty (a host may reuse their buffers for the
    /// next [`Host::buffer_with`] and lookups). Default: dropped.
    fn recycle_branches(&self, branches: &mut Vec<BranchOut>) {
        branches.clear();
    }
}
