//! What the engine asks of its host: the location service, "is this host
//! me", the clock, the stored forwarding, and buffers to reuse. Kamailio
//! is one host (`crate::ffi::host`); the tests' fake location service is
//! another.

use std::sync::Arc;

use super::decision::BranchOut;
use crate::forwarding::Forwarding;

/// One registered contact of an AOR (a usrloc record).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    /// The contact URI.
    pub uri: Vec<u8>,
    /// Where the registration came from (becomes the branch's dst_uri).
    pub received: Option<Vec<u8>>,
    /// The Path vector of the registration.
    pub path: Option<Vec<u8>>,
    /// `+sip.instance`.
    pub instance: Option<Vec<u8>>,
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
    /// usrloc's record-unique id.
    pub ruid: Option<Vec<u8>>,
    /// The User-Agent of the REGISTER.
    pub user_agent: Option<Vec<u8>>,
    /// The TCP/TLS connection the registration came over (usrloc's
    /// `tcpconn_id`; -1 or 0: none), for the branch's `otcpid`.
    pub conn_id: i32,
}

/// usrloc's `methods` of a contact that named none: every method.
pub const ALL_METHODS: u32 = u32::MAX;

impl Default for Registration {
    /// An empty registration that accepts every method.
    fn default() -> Self {
        Registration {
            uri: Vec::new(),
            received: None,
            path: None,
            instance: None,
            socket: 0,
            q: None,
            last_modified: 0,
            flags: 0,
            methods: ALL_METHODS,
            reg_id: 0,
            ruid: None,
            user_agent: None,
            conn_id: 0,
        }
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
