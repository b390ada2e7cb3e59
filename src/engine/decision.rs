//! A decision: its inputs (the request, the transaction's branches) and
//! the engine's answer (verdict, reason, branches, store action, counters,
//! memo, warnings).

use super::packed::Packed;
use crate::config::ForkMode;
use crate::forwarding::Learned;
use crate::stats::Counters;

/// The request being forwarded, as Kamailio received it.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// The method, e.g. `MESSAGE`.
    pub method: &'a str,
    /// The Request-URI as received (in failure_route, Kamailio's `$ou`):
    /// the AOR of the subscriber.
    pub ruri: &'a [u8],
    /// Whether the To header has a tag (an in-dialog request).
    pub has_to_tag: bool,
    /// The body of the `Event` header, if any.
    pub event: Option<&'a [u8]>,
    /// The body of the `Content-Type` header, if any.
    pub content_type: Option<&'a [u8]>,
    /// The method as Kamailio's `METHOD_*` bit (`msg->REQ_METHOD`), to
    /// compare with a contact's [`Registration::methods`](super::Registration::methods);
    /// 0: unknown (no contact is skipped for its methods).
    pub method_bit: u32,
    /// The bodies of the request's `History-Info` header rows, in order
    /// (read for History-Info only, never for a decision; see
    /// [`super::history`]).
    pub history_info: &'a [&'a [u8]],
    /// The body of the `Privacy` header, if any.
    pub privacy: Option<&'a [u8]>,
}

/// One branch of the transaction (Kamailio's `t->uac[i]`).
#[derive(Debug, Clone, Copy)]
pub struct Branch<'a> {
    /// The Request-URI this branch was sent to.
    pub uri: &'a [u8],
    /// Its final status; 408 for a timeout; 0 while none.
    pub status: u16,
    /// The raw reply, if one was received (none for a timeout).
    pub reply: Option<&'a [u8]>,
    /// Whether the branch belongs to the round that just failed.
    pub current_round: bool,
}

/// What `push_redirect` is given besides the request: the transaction's
/// branches, in order, and the memo the previous failure round left.
#[derive(Debug, Clone, Copy)]
pub struct FailedRound<'a> {
    /// Every branch of the transaction (Kamailio's `t->uac[]`), in order.
    pub branches: &'a [Branch<'a>],
    /// The previous round's [`Decision::memo`] (empty in the first one).
    pub memo: &'a [u8],
}

/// The script-level outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Not a PUSH request or not a reply this module acts on: -1, silent.
    Untouched,
    /// New branches: 1.
    Branches,
    /// Nothing (more) to try: -1.
    NothingLeft,
    /// Every target was refused by policy: -2.
    Refused,
    /// Bad input or a failed lookup: -2.
    Error,
    /// The AOR has registered terminals, but none accepts the request's
    /// method (registrar's `lookup()` returns -2 then, and its users answer
    /// 405): -3.
    NotAccepted,
}

impl Verdict {
    /// The value the script function returns.
    pub fn script_rc(self) -> i32 {
        match self {
            Verdict::Branches => 1,
            Verdict::Untouched | Verdict::NothingLeft => -1,
            Verdict::Refused | Verdict::Error => -2,
            Verdict::NotAccepted => -3,
        }
    }
}

/// Why the engine decided what it did. The numbers are part of the C ABI and
/// are never reused.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// The method is not in `methods`.
    NotPushMethod = 1,
    /// The request has a To-tag.
    InDialog = 2,
    /// The replies are neither 3xx nor a failover code.
    NotRedirect = 3,
    /// A 6xx: no further branches (RFC 3261 §16.7).
    GlobalFailure = 4,
    /// 401/407: the sender must authenticate; no failover.
    AuthChallenge = 5,
    /// 305 and 380 are never followed.
    NeverFollowed = 6,
    /// Lookup: the AOR's registered terminals.
    Registered = 10,
    /// Lookup: a stored (learned) forwarding (F6, F7).
    StoredForwarding = 11,
    /// The Contacts of this round's 3xx (F1, F4).
    Redirect = 12,
    /// Contacts of an earlier 3xx not tried yet (F4 serial).
    PendingRedirect = 13,
    /// The provisioned forwarding, after a 3xx without Contact (F5).
    Provisioned = 14,
    /// The next registered terminal(s) (F2, F3).
    Failover = 15,
    /// Lookup: the AOR has no registered terminal (or is not ours).
    NoTarget = 20,
    /// Every target has been tried.
    Exhausted = 21,
    /// Kamailio's per-transaction branch limit is reached.
    BranchLimit = 22,
    /// Lookup: the AOR's registered terminals all exclude the method
    /// (their registered `methods`).
    MethodNotAccepted = 23,
    /// Every Contact of the 3xx was refused by policy.
    AllTargetsRefused = 30,
    /// The Request-URI is not a SIP URI.
    BadRequestUri = 40,
    /// The location service could not be read.
    LookupFailed = 41,
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.message())
    }
}

impl Reason {
    /// A static description, for log lines (also its `Display`).
    pub fn message(self) -> &'static str {
        match self {
            Reason::NotPushMethod => "method is not a PUSH method",
            Reason::InDialog => "in-dialog request",
            Reason::NotRedirect => "reply is neither 3xx nor a failover code",
            Reason::GlobalFailure => "6xx global failure: no further branches",
            Reason::AuthChallenge => "authentication challenge: no failover",
            Reason::NeverFollowed => "305/380 are never followed",
            Reason::Registered => "registered terminals",
            Reason::StoredForwarding => "stored forwarding applied",
            Reason::Redirect => "redirect followed",
            Reason::PendingRedirect => "next Contact of an earlier redirect",
            Reason::Provisioned => "provisioned forwarding applied",
            Reason::Failover => "failover to the next registered terminal",
            Reason::NoTarget => "no registered terminal",
            Reason::Exhausted => "every target has been tried",
            Reason::BranchLimit => "transaction branch limit reached",
            Reason::MethodNotAccepted => "no registered terminal accepts the method",
            Reason::AllTargetsRefused => "every target refused by policy",
            Reason::BadRequestUri => "Request-URI is not a SIP URI",
            Reason::LookupFailed => "location lookup failed",
        }
    }
}

/// One new branch. Its byte strings (URI, next hop, Path, instance, ruid,
/// user agent) are kept in one buffer: read them with [`BranchOut::uri`]
/// and the like.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BranchOut {
    /// The strings, indexed by the `BR_*` constants.
    pub(super) parts: Packed<6>,
    /// The registration's socket cookie (0: none).
    pub socket: usize,
    /// q in thousandths, if known.
    pub q: Option<u16>,
    /// Branch flags to OR into the branch's (the registration's
    /// [`Registration::flags`](super::Registration::flags); 0 for a target
    /// that is not a registration).
    pub flags: u32,
    /// RFC 5626 `reg-id`; 0 unless the branch has an instance.
    pub reg_id: u32,
    /// The registration's TCP/TLS connection id (0: none).
    pub conn_id: i32,
    /// What the branch's target is to the request's AOR (for
    /// History-Info's `rc` / `mp`).
    pub origin: Origin,
    /// The History-Info header value the branch carries (empty: none).
    pub history_info: Vec<u8>,
    /// The Diversion header value the branch carries (empty: none).
    pub diversion: Vec<u8>,
}

/// Where each string of a [`BranchOut`] is in its buffer.
pub(super) const BR_URI: usize = 0;
pub(super) const BR_DST: usize = 1;
pub(super) const BR_PATH: usize = 2;
pub(super) const BR_INSTANCE: usize = 3;
pub(super) const BR_RUID: usize = 4;
pub(super) const BR_USER_AGENT: usize = 5;

impl BranchOut {
    /// A branch to a target that is not a registration: its URI (the
    /// whole of `uri`, a buffer of the host's) and q, no next hop, Path,
    /// socket or flags.
    pub(crate) fn direct(uri: Vec<u8>, q: Option<u16>) -> Self {
        BranchOut {
            parts: Packed::whole(uri, BR_URI),
            socket: 0,
            q,
            flags: 0,
            reg_id: 0,
            conn_id: 0,
            origin: Origin::Target,
            history_info: Vec::new(),
            diversion: Vec::new(),
        }
    }

    /// The buffer of its strings, for a host to reuse.
    pub fn into_buffer(self) -> Vec<u8> {
        self.parts.into_buffer()
    }

    /// The Request-URI of the branch.
    pub fn uri(&self) -> &[u8] {
        self.parts.get(BR_URI)
    }

    /// Next hop, as `lookup()` picks it: the first Path hop (past a local
    /// one with registrar's `path_check_local`), else the registration's
    /// received address; if any.
    pub fn dst_uri(&self) -> Option<&[u8]> {
        self.parts.opt(BR_DST)
    }

    /// The registration's Path, to become the branch's Route set; only
    /// when its next hop is a Path hop (as `lookup()`).
    pub fn path(&self) -> Option<&[u8]> {
        self.parts.opt(BR_PATH)
    }

    /// `+sip.instance` of the registration, if any.
    pub fn instance(&self) -> Option<&[u8]> {
        self.parts.opt(BR_INSTANCE)
    }

    /// usrloc's record-unique id of the registration, if any.
    pub fn ruid(&self) -> Option<&[u8]> {
        self.parts.opt(BR_RUID)
    }

    /// The User-Agent the registration came with, if any.
    pub fn user_agent(&self) -> Option<&[u8]> {
        self.parts.opt(BR_USER_AGENT)
    }
}

/// What a branch's target is to the request's AOR.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Origin {
    /// A registered contact of the request's own AOR (History-Info `rc`).
    #[default]
    Registered,
    /// A target sent as it is, another AOR (History-Info `mp`).
    Target,
    /// A registered contact of another local AOR, whose target URI (as
    /// the 3xx or the forwarding named it) is here: the AOR gets an entry
    /// of its own (`mp`), the contact one below it (`rc`).
    AorOf(Vec<u8>),
}

/// What the store should do after this decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreAction {
    /// Nothing.
    None,
    /// Store a learned forwarding for (AOR, service).
    Learn(Learned),
    /// Drop the (temporary) entry for (AOR, service): its target failed.
    Forget,
}

/// The engine's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// The outcome for the script.
    pub verdict: Verdict,
    /// Why.
    pub reason: Reason,
    /// How the branches are to be sent.
    pub mode: ForkMode,
    /// The new branches (one in serial mode).
    pub branches: Vec<BranchOut>,
    /// What to store.
    pub store: StoreAction,
    /// Counters to add to the statistics.
    pub counters: Counters,
    /// The AOR (`sip:user@host`) when the Request-URI is a SIP URI.
    pub aor: Option<String>,
    /// The service key, e.g. `MESSAGE:text/plain`, `NOTIFY:ua-profile`.
    pub service: Option<String>,
    /// Warnings to log (malformed Contacts, refused targets...).
    pub warnings: Vec<String>,
    /// What the next failure round of this transaction must be given back
    /// (see [`super::memo`]); empty after `push_lookup`.
    pub memo: Vec<u8>,
    /// Warnings beyond [`MAX_WARNINGS`], not kept.
    pub suppressed: u32,
    /// What `service` was made of, for the next call that fills this
    /// decision again (see [`ServiceOf`]).
    pub(super) service_of: ServiceOf,
    /// The Request-URI `aor` was made of, for the next call that fills
    /// this decision again: the same bytes make the same AOR (both calls
    /// of a transaction have the same `$ou`). A cache, not part of the
    /// answer, like `service_of`.
    pub(super) aor_of: ServiceOf,
}

/// The method and media type (or event package) a decision's service key
/// was made of: a decision filled again for a request with the same ones
/// keeps its key instead of building it again (consecutive PUSH requests
/// share a handful of services). A cache, not part of the answer: it
/// compares equal to any other.
#[derive(Debug, Clone, Default)]
pub(super) struct ServiceOf(Vec<u8>);

impl ServiceOf {
    /// Whether these are the inputs remembered.
    pub(super) fn is(&self, method: &str, detail: Option<&[u8]>) -> bool {
        let m = method.len();
        self.0.get(..m) == Some(method.as_bytes())
            && match detail {
                None => self.0.len() == m,
                // 0xFF: a byte no method (UTF-8) holds.
                Some(d) => self.0.get(m) == Some(&0xFF) && self.0.get(m + 1..) == Some(d),
            }
    }

    /// Whether `b` is the input remembered (see [`ServiceOf::remember_raw`]).
    pub(super) fn is_raw(&self, b: &[u8]) -> bool {
        self.0 == b
    }

    /// Remembers one byte string as the input.
    pub(super) fn remember_raw(&mut self, b: &[u8]) {
        self.0.clear();
        self.0.extend_from_slice(b);
    }

    pub(super) fn remember(&mut self, method: &str, detail: Option<&[u8]>) {
        self.0.clear();
        self.0.extend_from_slice(method.as_bytes());
        if let Some(d) = detail {
            self.0.push(0xFF);
            self.0.extend_from_slice(d);
        }
    }
}

impl PartialEq for ServiceOf {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for ServiceOf {}

impl Decision {
    /// Nothing decided yet.
    pub(crate) fn new(mode: ForkMode) -> Self {
        Decision {
            verdict: Verdict::Untouched,
            reason: Reason::NotPushMethod,
            mode,
            branches: Vec::new(),
            store: StoreAction::None,
            counters: Counters::default(),
            aor: None,
            service: None,
            warnings: Vec::new(),
            memo: Vec::new(),
            suppressed: 0,
            service_of: ServiceOf::default(),
            aor_of: ServiceOf::default(),
        }
    }

    /// As [`Decision::new`], keeping the buffers: a decision of an earlier
    /// call can be filled again without allocating them anew. `aor` keeps
    /// its AOR, which the engine keeps if the new request has the same
    /// Request-URI (`aor_of`); `service` keeps its key, which the engine
    /// keeps if the new request has the same method and media type (see
    /// [`ServiceOf`]).
    pub(crate) fn reset(&mut self, mode: ForkMode) {
        // Every field, by name: a new field cannot be forgotten here.
        let Decision {
            verdict,
            reason,
            mode: m,
            branches,
            store,
            counters,
            // keeps its AOR for the next call (see `aor_of`)
            aor: _,
            // keeps its key for the next call (see `ServiceOf`)
            service: _,
            warnings,
            memo,
            suppressed,
            service_of: _,
            aor_of: _,
        } = self;
        *verdict = Verdict::Untouched;
        *reason = Reason::NotPushMethod;
        *m = mode;
        branches.clear();
        *store = StoreAction::None;
        *counters = Counters::default();
        warnings.clear();
        memo.clear();
        *suppressed = 0;
    }

    pub(super) fn finish(&mut self, verdict: Verdict, reason: Reason) {
        self.verdict = verdict;
        self.reason = reason;
        if self.suppressed > 0 {
            let line = format!("... and {} more such warnings", self.suppressed);
            self.warnings.push(line);
        }
    }

    /// The value the script function returns (1, -1, -2 or -3).
    pub fn script_rc(&self) -> i32 {
        self.verdict.script_rc()
    }
}

/// Most warnings one decision logs; the rest are counted in one line, so a
/// reply with thousands of bad Contacts cannot flood the log.
pub const MAX_WARNINGS: usize = 8;

impl Decision {
    pub(super) fn warn(&mut self, msg: impl FnOnce() -> String) {
        if self.warnings.len() < MAX_WARNINGS {
            self.warnings.push(msg());
        } else {
            self.suppressed += 1;
        }
    }
}
