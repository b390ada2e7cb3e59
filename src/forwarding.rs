//! Forwardings: what a subscriber's terminal asked for (a 301, a 302 with an
//! expiry) or the operator provisioned, shared by the engine (which applies
//! and learns them), the memo (which carries targets between rounds) and
//! the store (which keeps them).

/// How a stored forwarding came to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForwardingKind {
    /// Learned from a 301: applied at lookup.
    Permanent,
    /// Learned from a 302 with an expiry: applied at lookup until it expires.
    Temporary,
    /// Set by the operator: used when a terminal answers 3xx without Contact.
    Provisioned,
}

impl ForwardingKind {
    /// Every kind, in the order of their numbers (1, 2, 3).
    pub const ALL: [ForwardingKind; 3] = [
        ForwardingKind::Permanent,
        ForwardingKind::Temporary,
        ForwardingKind::Provisioned,
    ];

    /// The name the store and the RPC commands use.
    pub fn name(self) -> &'static str {
        match self {
            ForwardingKind::Permanent => "permanent",
            ForwardingKind::Temporary => "temporary",
            ForwardingKind::Provisioned => "provisioned",
        }
    }

    /// The kind of a name (see [`ForwardingKind::name`]).
    pub fn from_name(s: &str) -> Option<ForwardingKind> {
        Self::ALL.into_iter().find(|k| k.name() == s)
    }
}

/// One target of a forwarding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardTarget {
    /// The target URI.
    pub uri: String,
    /// q in thousandths, if given.
    pub q: Option<u16>,
    /// The terminal the target is, when it was a registered contact of the
    /// subscriber with a `+sip.instance` (SPEC §3: a learned forwarding
    /// follows the terminal): applied, it is that terminal's current
    /// registration, wherever it registered from since; `uri` only when
    /// none of the AOR's registrations has the instance any more.
    pub instance: Option<TargetInstance>,
}

/// A registered terminal, as a forwarding names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetInstance {
    /// The AOR it is registered under (`sip:user@host`, as the module keys
    /// AORs).
    pub aor: String,
    /// Its `+sip.instance`, as usrloc holds it.
    pub instance: String,
}

/// Longest `+sip.instance` a forwarding keeps (a longer one is not kept:
/// the target is then its URI).
pub const MAX_INSTANCE_LEN: usize = 256;

/// Whether an instance may be kept: 1 to [`MAX_INSTANCE_LEN`] bytes,
/// printable ASCII without spaces (the store keeps it on a line).
pub fn instance_ok(i: &[u8]) -> bool {
    !i.is_empty() && i.len() <= MAX_INSTANCE_LEN && i.iter().all(|c| c.is_ascii_graphic())
}

/// Whether two `+sip.instance` values name the same terminal, as
/// registrar's `reg_cmp_instances()` compares them: each without one pair
/// of enclosing `<>` (when longer than 2), byte for byte; an empty one
/// matches nothing.
pub fn same_instance(a: &[u8], b: &[u8]) -> bool {
    fn bare(i: &[u8]) -> &[u8] {
        match i {
            [b'<', inner @ .., b'>'] if i.len() > 2 => inner,
            _ => i,
        }
    }
    !a.is_empty() && !b.is_empty() && {
        let (a, b) = (bare(a), bare(b));
        !a.is_empty() && a == b
    }
}

/// A forwarding for (AOR, service), as the engine applies it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forwarding {
    /// Permanent, temporary or provisioned.
    pub kind: ForwardingKind,
    /// Targets in order of preference.
    pub targets: Vec<ForwardTarget>,
    /// Unix time after which the entry is dead; `None`: never.
    pub expires_at: Option<i64>,
}

impl Forwarding {
    /// Whether the entry is still in force at `now`.
    pub fn is_live(&self, now: i64) -> bool {
        is_live(self.expires_at, now)
    }
}

/// Whether something that expires at `expires_at` (`None`: never) is in
/// force at `now` (Unix seconds): live while `now < expires_at`.
pub fn is_live(expires_at: Option<i64>, now: i64) -> bool {
    expires_at.is_none_or(|t| now < t)
}

/// A forwarding a decision learned from a followed 301 or 302 (F6, F7),
/// for the store to keep.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Learned {
    /// Permanent (301) or temporary (302 with expiry).
    pub kind: ForwardingKind,
    /// Lifetime in seconds; `None`: no expiry.
    pub ttl: Option<u32>,
    /// The accepted targets, best first.
    pub targets: Vec<ForwardTarget>,
    /// The contact that answered.
    pub learned_from: String,
    /// Its status code.
    pub status: u16,
}
