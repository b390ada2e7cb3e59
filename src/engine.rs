//! The decision engine: given a PUSH request, the transaction's branches and
//! their replies, the AOR's registrations and the stored forwarding, decide
//! the next branch set (SPEC §2 flows F1–F7 and the rules of §3).
//!
//! The engine is pure and deterministic: it keeps no state between calls.
//! Everything it needs to know about earlier rounds is derived again from
//! the transaction's branches (which Kamailio's tm keeps): the targets
//! already tried, the Contacts of earlier 3xx replies still pending, and the
//! number of redirects already followed.
//!
//! Targets are tried in tiers; a round takes the first tier that is not
//! empty — one target of it in serial mode, all of it (capped) in parallel:
//! 1. the Contacts of this round's 3xx replies (F1, F4);
//! 2. the Contacts of earlier 3xx replies not tried yet (F4 serial);
//! 3. the provisioned forwarding, after a 3xx without Contact (F5);
//! 4. the AOR's registered terminals not tried yet (F2, F3).

use std::cell::{Cell, OnceCell};
use std::sync::Arc;

use crate::config::{Config, ForkMode};
pub use crate::forwarding::{ForwardTarget, Forwarding, ForwardingKind, Learned};
use crate::memo::{Memo, MAX_PENDING};
use crate::parser::{self, ContactError};
use crate::uri::{self, Scheme, SipUri, TargetKey, UriError};

/// Longest service key kept (method, `:`, media type or event package).
pub const MAX_SERVICE_LEN: usize = 128;

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
}

/// A failed AOR lookup (the location service could not be read).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LookupError;

/// What the engine asks of its host (Kamailio, or a test).
pub trait Env {
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
    /// [`Env::recycle_branches`]) fills one of them. Default: a new one.
    fn bytes(&self, b: &[u8]) -> Vec<u8> {
        b.to_vec()
    }
    /// Takes the branches of a decision that is about to be filled again,
    /// leaving `branches` empty (a host may reuse their buffers for the
    /// next [`Env::bytes`] and lookups). Default: dropped.
    fn recycle_branches(&self, branches: &mut Vec<BranchOut>) {
        branches.clear();
    }
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
}

impl Verdict {
    /// The value the script function returns.
    pub fn script_rc(self) -> i32 {
        match self {
            Verdict::Branches => 1,
            Verdict::Untouched | Verdict::NothingLeft => -1,
            Verdict::Refused | Verdict::Error => -2,
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
    /// Every Contact of the 3xx was refused by policy.
    AllTargetsRefused = 30,
    /// The Request-URI is not a SIP URI.
    BadRequestUri = 40,
    /// The location service could not be read.
    LookupFailed = 41,
}

impl Reason {
    /// A static description, for log lines.
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
            Reason::AllTargetsRefused => "every target refused by policy",
            Reason::BadRequestUri => "Request-URI is not a SIP URI",
            Reason::LookupFailed => "location lookup failed",
        }
    }
}

/// One new branch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BranchOut {
    /// The Request-URI of the branch.
    pub uri: Vec<u8>,
    /// Next hop (the registration's received address), if any.
    pub dst_uri: Option<Vec<u8>>,
    /// Path vector of the registration, if any.
    pub path: Option<Vec<u8>>,
    /// `+sip.instance` of the registration, if any.
    pub instance: Option<Vec<u8>>,
    /// The registration's socket cookie (0: none).
    pub socket: usize,
    /// q in thousandths, if known.
    pub q: Option<u16>,
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

/// Counters of one decision, added to the module's statistics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// 3xx replies whose Contacts were followed.
    pub redirects_followed: u32,
    /// Rounds that moved on to the next registered terminal(s).
    pub failovers: u32,
    /// Forwardings to be stored.
    pub forwardings_learned: u32,
    /// Stored or provisioned forwardings used.
    pub forwardings_applied: u32,
    /// Contacts refused by policy (scheme, domain, sips, self, malformed).
    pub targets_refused: u32,
    /// Targets not followed because already tried, or past `max_depth`.
    pub loops_prevented: u32,
    /// Acceptable Contacts beyond `max_branches`.
    pub contacts_dropped: u32,
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
    /// (see [`crate::memo`]); empty after `push_lookup`.
    pub memo: Vec<u8>,
    /// Warnings beyond [`MAX_WARNINGS`], not kept.
    pub suppressed: u32,
    /// What `service` was made of, for the next call that fills this
    /// decision again (see [`ServiceOf`]).
    service_of: ServiceOf,
}

/// The method and media type (or event package) a decision's service key
/// was made of: a decision filled again for a request with the same ones
/// keeps its key instead of building it again (consecutive PUSH requests
/// share a handful of services). A cache, not part of the answer: it
/// compares equal to any other.
#[derive(Debug, Clone, Default)]
struct ServiceOf(Vec<u8>);

impl ServiceOf {
    /// Whether these are the inputs remembered.
    fn is(&self, method: &str, detail: Option<&[u8]>) -> bool {
        let m = method.len();
        self.0.get(..m) == Some(method.as_bytes())
            && match detail {
                None => self.0.len() == m,
                // 0xFF: a byte no method (UTF-8) holds.
                Some(d) => self.0.get(m) == Some(&0xFF) && self.0.get(m + 1..) == Some(d),
            }
    }

    fn remember(&mut self, method: &str, detail: Option<&[u8]>) {
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
        }
    }

    /// As [`Decision::new`], keeping the buffers: a decision of an earlier
    /// call can be filled again without allocating them anew. `aor` keeps
    /// its buffer as an empty string, for the engine to take; `service`
    /// keeps its key, which the engine keeps if the new request has the
    /// same method and media type (see [`ServiceOf`]).
    pub(crate) fn reset(&mut self, mode: ForkMode) {
        // Every field, by name: a new field cannot be forgotten here.
        let Decision {
            verdict,
            reason,
            mode: m,
            branches,
            store,
            counters,
            aor,
            // keeps its key for the next call (see `ServiceOf`)
            service: _,
            warnings,
            memo,
            suppressed,
            service_of: _,
        } = self;
        *verdict = Verdict::Untouched;
        *reason = Reason::NotPushMethod;
        *m = mode;
        branches.clear();
        *store = StoreAction::None;
        *counters = Counters::default();
        if let Some(a) = aor {
            a.clear();
        }
        warnings.clear();
        memo.clear();
        *suppressed = 0;
    }

    fn finish(&mut self, verdict: Verdict, reason: Reason) {
        self.verdict = verdict;
        self.reason = reason;
        if self.suppressed > 0 {
            let line = format!("... and {} more such warnings", self.suppressed);
            self.warnings.push(line);
        }
    }

    /// The value the script function returns (1, -1 or -2).
    pub fn script_rc(&self) -> i32 {
        self.verdict.script_rc()
    }
}

/// Kamailio's default limit of branches per transaction (`max_branches` core
/// parameter); the module passes the real one.
pub const DEFAULT_BRANCH_LIMIT: usize = 12;

/// The engine: a configuration and the transaction branch limit.
#[derive(Debug, Clone)]
pub struct Engine {
    /// The module's parameters.
    pub config: Config,
    /// Kamailio's per-transaction branch limit.
    pub branch_limit: usize,
}

/// The service key of a request: the method, plus the `Event` package for
/// NOTIFY or the media type for other methods (`MESSAGE:text/plain`).
pub fn service_key(method: &str, event: Option<&[u8]>, content_type: Option<&[u8]>) -> String {
    let mut key = String::new();
    service_key_into(method, event, content_type, &mut key);
    key
}

/// What a service key is made of besides the method: the `Event` package
/// for NOTIFY, the media type for other methods.
fn service_detail<'a>(
    method: &str,
    event: Option<&'a [u8]>,
    content_type: Option<&'a [u8]>,
) -> Option<&'a [u8]> {
    if method.eq_ignore_ascii_case("NOTIFY") {
        event
    } else {
        content_type
    }
}

/// [`service_key`] into `key` (cleared first), reusing its buffer.
pub fn service_key_into(
    method: &str,
    event: Option<&[u8]>,
    content_type: Option<&[u8]>,
    key: &mut String,
) {
    service_key_of(method, service_detail(method, event, content_type), key);
}

/// [`service_key_into`] with the detail chosen already (see
/// [`service_detail`]).
fn service_key_of(method: &str, detail: Option<&[u8]>, key: &mut String) {
    key.clear();
    key.push_str(method);
    key.make_ascii_uppercase();
    // The type/subtype or package, without parameters and whitespace,
    // lower-cased, checked and copied in one pass; a value with other
    // bytes than those is not used.
    if let Some(d) = detail {
        let mark = key.len();
        key.push(':');
        let mut graphic = false;
        for &c in d.iter().take_while(|&&c| c != b';') {
            if c.is_ascii_graphic() {
                graphic = true;
                if key.len() <= MAX_SERVICE_LEN {
                    key.push(char::from(c.to_ascii_lowercase()));
                }
            } else if c != b' ' && c != b'\t' {
                graphic = false;
                break;
            }
        }
        if !graphic {
            key.truncate(mark);
        }
    }
    if key.len() > MAX_SERVICE_LEN {
        let mut cut = MAX_SERVICE_LEN;
        while !key.is_char_boundary(cut) {
            cut -= 1;
        }
        key.truncate(cut);
    }
}

/// A target chosen by policy, before resolution of local AORs. It borrows
/// from the reply (or the stored forwarding, or the memo): nothing is
/// copied for Contacts that are not followed.
#[derive(Debug, Clone)]
struct Target<'a> {
    uri: &'a [u8],
    parsed: SipUri<'a>,
    q: Option<u16>,
    /// The Contact's `expires` parameter, for learning.
    expires: Option<u32>,
    /// How it becomes a next hop.
    via: Via,
}

/// How a target becomes a next hop.
#[derive(Debug, Clone, Copy)]
enum Via {
    /// A foreign URI (an allowed domain): sent as is.
    Direct,
    /// Its host is the proxy: an AOR, resolved through the location table.
    LocalAor,
    /// One of the subscriber's own registered contacts (index into
    /// [`Ctx::own`]): sent with that registration's destination, Path and
    /// socket.
    Own(usize),
}

/// Why a target was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    /// A well-formed URI that policy refuses (scheme, domain, sips, self).
    Policy,
    /// Not a URI at all.
    Malformed,
}

/// The Request-URIs of a transaction's branches (Kamailio's default
/// branch limit is 12).
type Tried<'a> = InlineVec<SipUri<'a>, 12>;

/// Fully resolved next hops, best first: the branches and, beside them,
/// their keys.
#[derive(Debug)]
struct Candidates<'k> {
    out: Vec<BranchOut>,
    keys: InlineVec<Key<'k>, 4>,
}

impl<'k> Candidates<'k> {
    /// An empty list that fills `buf` (cleared; its capacity is reused).
    fn with_buffer(mut buf: Vec<BranchOut>) -> Self {
        buf.clear();
        Candidates {
            out: buf,
            keys: InlineVec::new(),
        }
    }

    /// Its buffer, emptied: a tier that yields nothing gives it back to
    /// the decision, for the next tier to fill (no allocation then).
    fn into_buffer(self) -> Vec<BranchOut> {
        let mut out = self.out;
        out.clear();
        out
    }

    fn len(&self) -> usize {
        self.out.len()
    }

    fn is_empty(&self) -> bool {
        self.out.is_empty()
    }

    fn push(&mut self, out: BranchOut, key: Key<'k>) {
        self.out.push(out);
        self.keys.push(key);
    }

    /// Adds a next hop unless one with the same key is there already.
    fn push_unique(&mut self, out: BranchOut, key: Key<'k>) {
        if !self.keys.iter().any(|k| k.same(&key)) {
            self.push(out, key);
        }
    }
}

/// The loop-defence identity of a candidate: a parsed URI borrowed from
/// the reply or a registration when one lives long enough (no
/// allocation), else an owned [`TargetKey`].
#[derive(Debug, Clone)]
enum Key<'k> {
    Uri(SipUri<'k>),
    Owned(TargetKey),
    /// In a list that is never merged with another (one AOR's registered
    /// terminals): matches nothing.
    Unkeyed,
}

impl Key<'_> {
    /// Whether both are the same target, as their [`TargetKey`]s would
    /// compare.
    fn same(&self, other: &Key<'_>) -> bool {
        match (self, other) {
            (Key::Uri(a), Key::Uri(b)) => a.same_target(b),
            (Key::Owned(k), Key::Uri(u)) | (Key::Uri(u), Key::Owned(k)) => k.matches(u),
            (Key::Owned(a), Key::Owned(b)) => a == b,
            (Key::Unkeyed, _) | (_, Key::Unkeyed) => false,
        }
    }
}

/// What one round's replies amount to.
struct Round<'a> {
    /// The targets of this round's 3xx replies, best first: all admitted
    /// (none tried before) and no two the same target. Its buffer is the
    /// previous round's (see [`SPARE_TARGETS`]).
    targets: Vec<Target<'a>>,
    failed: bool,
    refused_only: bool,
    not_followed: bool,
    saw_3xx_without_contact: bool,
}

thread_local! {
    /// The buffer of this thread's last round of targets, for the next
    /// round: following a 3xx allocates nothing once a worker has followed
    /// one (a Kamailio worker is one thread).
    static SPARE_TARGETS: Cell<Vec<Target<'static>>> = const { Cell::new(Vec::new()) };
}

/// Most targets' room kept in [`SPARE_TARGETS`] (a round that merged many
/// replies gives its larger buffer back to the allocator).
const SPARE_TARGETS_MAX: usize = 64;

/// `v`, emptied, as a list of targets of another lifetime: the same
/// allocation (`Vec`'s in-place collect; no item is kept, and targets own
/// nothing).
// A filter_map that keeps nothing is the point: the items' type changes,
// which `filter` cannot do.
#[allow(clippy::unnecessary_filter_map)]
fn relife<'b>(v: Vec<Target<'_>>) -> Vec<Target<'b>> {
    v.into_iter().filter_map(|_| None).collect()
}

impl Round<'_> {
    fn new() -> Self {
        Round {
            targets: relife(SPARE_TARGETS.try_with(Cell::take).unwrap_or_default()),
            failed: false,
            refused_only: false,
            not_followed: false,
            saw_3xx_without_contact: false,
        }
    }
}

impl Drop for Round<'_> {
    fn drop(&mut self) {
        let v = std::mem::take(&mut self.targets);
        if v.capacity() <= SPARE_TARGETS_MAX {
            let _ = SPARE_TARGETS.try_with(|s| s.set(relife(v)));
        }
    }
}

/// Most warnings one decision logs; the rest are counted in one line, so a
/// reply with thousands of bad Contacts cannot flood the log.
pub const MAX_WARNINGS: usize = 8;

impl Decision {
    fn warn(&mut self, msg: impl FnOnce() -> String) {
        if self.warnings.len() < MAX_WARNINGS {
            self.warnings.push(msg());
        } else {
            self.suppressed += 1;
        }
    }
}

impl Engine {
    /// An engine with `config` and Kamailio's default branch limit.
    pub fn new(config: Config) -> Self {
        Engine {
            config,
            branch_limit: DEFAULT_BRANCH_LIMIT,
        }
    }

    /// `push_lookup()`: the first target(s) of a new PUSH request, from the
    /// stored forwarding (F6, F7) or the AOR's registered terminals.
    pub fn push_lookup(
        &self,
        env: &dyn Env,
        req: &Request<'_>,
        mode: Option<ForkMode>,
        stored: Option<&Forwarding>,
    ) -> Decision {
        let mut d = Decision::new(ForkMode::Serial);
        self.push_lookup_into(env, req, mode, stored, &mut d);
        d
    }

    /// [`Engine::push_lookup`] into `d`, whose buffers are reused: any
    /// decision will do (everything in it is replaced).
    pub fn push_lookup_into(
        &self,
        env: &dyn Env,
        req: &Request<'_>,
        mode: Option<ForkMode>,
        stored: Option<&Forwarding>,
        d: &mut Decision,
    ) {
        self.call(env, req, mode, d, |aor, aor_key, service, regs, d| {
            self.lookup_round(env, aor, aor_key, service, stored, regs, d)
        });
    }

    /// The frame of both functions, around `round`: the decision reset
    /// for `mode`, the untouched and bad requests, the AOR and service keys
    /// written into the decision's own buffers, and the registrations read
    /// during the round handed back to `env` once it is done.
    fn call(
        &self,
        env: &dyn Env,
        req: &Request<'_>,
        mode: Option<ForkMode>,
        d: &mut Decision,
        round: impl FnOnce(
            &SipUri<'_>,
            &str,
            &str,
            &OnceCell<Vec<Registration>>,
            &mut Decision,
        ) -> (Verdict, Reason),
    ) {
        env.recycle_branches(&mut d.branches);
        d.reset(mode.unwrap_or(self.config.fork_mode));
        let mut aor_key = d.aor.take().unwrap_or_default();
        let mut service = d.service.take().unwrap_or_default();
        let (verdict, reason) = match self.prologue(req, d, &mut aor_key, &mut service) {
            Ok(aor) => {
                let regs = OnceCell::new();
                let outcome = round(&aor, &aor_key, &service, &regs, d);
                if let Some(regs) = regs.into_inner() {
                    env.recycle(regs);
                }
                d.service = Some(service);
                d.aor = Some(aor_key);
                outcome
            }
            Err(outcome) => outcome,
        };
        d.finish(verdict, reason);
    }

    /// The body of [`Engine::push_lookup`] once the AOR is known: fills
    /// `d` and says how it ends.
    #[allow(clippy::too_many_arguments)]
    fn lookup_round(
        &self,
        env: &dyn Env,
        aor: &SipUri<'_>,
        aor_key: &str,
        service: &str,
        stored: Option<&Forwarding>,
        regs: &OnceCell<Vec<Registration>>,
        d: &mut Decision,
    ) -> (Verdict, Reason) {
        if !env.is_self(aor.host, aor.port) {
            return (Verdict::NothingLeft, Reason::NoTarget);
        }
        let tried = Tried::new();
        let ctx = Ctx::new(self, env, aor, aor_key, &tried, 0, regs);
        // The host's forwarding, else the one in the store.
        let read;
        let stored = match stored {
            Some(f) => Some(f),
            None => {
                read = env.stored(aor_key, service);
                read.as_deref()
            }
        };
        let live = stored.filter(|f| f.is_live(env.now()));
        if let Some(f) = live.filter(|f| f.kind != ForwardingKind::Provisioned) {
            let targets = ctx.forwarding_targets(f, d);
            match ctx.resolve(targets.iter(), d) {
                Err(()) => return (Verdict::Error, Reason::LookupFailed),
                Ok(c) if !c.is_empty() => {
                    d.counters.forwardings_applied += 1;
                    return ctx.emit(c, d, Reason::StoredForwarding);
                }
                // The stored target is unreachable now: the terminals.
                Ok(c) => d.branches = c.into_buffer(),
            }
        }
        match ctx.registered(d.mode, std::mem::take(&mut d.branches)) {
            Err(()) => (Verdict::Error, Reason::LookupFailed),
            Ok(c) if !c.is_empty() => ctx.emit(c, d, Reason::Registered),
            // No terminal registered: a provisioned forwarding stands in
            // for the subscriber (F5 otherwise waits for a 3xx).
            Ok(_) => match live.filter(|f| f.kind == ForwardingKind::Provisioned) {
                Some(f) => {
                    let targets = ctx.forwarding_targets(f, d);
                    match ctx.resolve(targets.iter(), d) {
                        Err(()) => (Verdict::Error, Reason::LookupFailed),
                        Ok(c) if !c.is_empty() => {
                            d.counters.forwardings_applied += 1;
                            ctx.emit(c, d, Reason::Provisioned)
                        }
                        Ok(_) => (Verdict::NothingLeft, Reason::NoTarget),
                    }
                }
                None => (Verdict::NothingLeft, Reason::NoTarget),
            },
        }
    }

    /// `push_redirect()`: the next branch set after a round of branches
    /// failed. The targets tried are derived from every branch of the
    /// transaction; `memo` is the previous round's [`Decision::memo`] (empty
    /// in the first failure round).
    pub fn push_redirect(
        &self,
        env: &dyn Env,
        req: &Request<'_>,
        branches: &[Branch<'_>],
        memo: &[u8],
        mode: Option<ForkMode>,
        stored: Option<&Forwarding>,
    ) -> Decision {
        let mut d = Decision::new(ForkMode::Serial);
        self.push_redirect_into(env, req, branches, memo, mode, stored, &mut d);
        d
    }

    /// [`Engine::push_redirect`] into `d`, whose buffers are reused: any
    /// decision will do (everything in it is replaced).
    #[allow(clippy::too_many_arguments)]
    pub fn push_redirect_into(
        &self,
        env: &dyn Env,
        req: &Request<'_>,
        branches: &[Branch<'_>],
        memo: &[u8],
        mode: Option<ForkMode>,
        stored: Option<&Forwarding>,
        d: &mut Decision,
    ) {
        self.call(env, req, mode, d, |aor, aor_key, service, regs, d| {
            // The store is read only if the round needs it.
            let lazy = OnceCell::new();
            let stored = || match stored {
                Some(f) => Some(f),
                None => lazy.get_or_init(|| env.stored(aor_key, service)).as_deref(),
            };
            self.redirect_round(env, aor, aor_key, branches, memo, &stored, regs, d)
        });
    }

    /// The body of [`Engine::push_redirect`] once the AOR is known: fills
    /// `d` and says how it ends.
    #[allow(clippy::too_many_arguments)]
    fn redirect_round<'s>(
        &self,
        env: &dyn Env,
        aor: &SipUri<'_>,
        aor_key: &str,
        branches: &[Branch<'_>],
        memo: &[u8],
        stored: &dyn Fn() -> Option<&'s Forwarding>,
        regs: &OnceCell<Vec<Registration>>,
        d: &mut Decision,
    ) -> (Verdict, Reason) {
        let Some(last) = branches.len().checked_sub(1) else {
            return (Verdict::NothingLeft, Reason::Exhausted);
        };
        // Which branches failed in this round (the last one if none is marked).
        let any_marked = branches.iter().any(|b| b.current_round);
        let current = || {
            branches
                .iter()
                .enumerate()
                .filter(move |(i, b)| b.current_round || (!any_marked && *i == last))
                .map(|(_, b)| b)
        };
        if current().any(|b| (600..=699).contains(&b.status)) {
            return (Verdict::NothingLeft, Reason::GlobalFailure);
        }
        if current().any(|b| matches!(b.status, 401 | 407)) {
            return (Verdict::NothingLeft, Reason::AuthChallenge);
        }

        let mut tried = Tried::new();
        for u in branches.iter().filter_map(|b| uri::parse(b.uri).ok()) {
            tried.push(u);
        }
        let ctx = Ctx::new(self, env, aor, aor_key, &tried, branches.len(), regs);
        // An empty memo: the previous round left nothing to keep, and the
        // redirects followed so far are the earlier rounds' 3xx (see
        // `Ctx::next_memo`).
        let memo = if memo.is_empty() {
            Memo {
                redirects: count_u32(
                    branches
                        .iter()
                        .enumerate()
                        .filter(|(i, b)| !(b.current_round || (!any_marked && *i == last)))
                        .filter(|(_, b)| followable_3xx(b.status))
                        .count(),
                ),
                pending: Vec::new(),
            }
        } else {
            Memo::decode(memo)
        };
        let all_3xx = branches.iter().filter(|b| followable_3xx(b.status)).count();
        let initial_budget =
            (self.config.max_depth as usize).saturating_sub(memo.redirects as usize);
        let mut budget = initial_budget;

        let mut round = Round::new();
        for b in current() {
            let resp = redirect_reply(b);
            self.judge(&ctx, b, resp.as_ref(), &mut budget, &mut round, d);
        }
        let redirects_now = initial_budget - budget;

        // Tier 1: this round's redirect targets.
        let first = match ctx.resolve(&round.targets, d) {
            Err(()) => return (Verdict::Error, Reason::LookupFailed),
            Ok(c) => c,
        };
        if !first.is_empty() {
            let outcome = ctx.emit(first, d, Reason::Redirect);
            ctx.next_memo(
                &memo,
                &round.targets,
                redirects_now,
                Some(&d.branches),
                all_3xx,
                &mut d.memo,
            );
            return outcome;
        }
        d.branches = first.into_buffer();
        // Targets that resolve to nothing (an AOR without contacts) count as
        // failed.
        let failed = round.failed || !round.targets.is_empty();
        if !failed {
            return if round.refused_only {
                (Verdict::Refused, Reason::AllTargetsRefused)
            } else if round.not_followed {
                (Verdict::NothingLeft, Reason::NeverFollowed)
            } else {
                (Verdict::Untouched, Reason::NotRedirect)
            };
        }
        ctx.next_memo(
            &memo,
            &round.targets,
            redirects_now,
            None,
            all_3xx,
            &mut d.memo,
        );
        // A temporary forwarding whose target just failed is dropped.
        // (A forwarding learned in this round replaces it anyway.)
        if d.store == StoreAction::None {
            if let Some(f) = stored().filter(|f| f.kind == ForwardingKind::Temporary) {
                if ctx.stored_target_failed(f, current()) {
                    d.store = StoreAction::Forget;
                }
            }
        }

        // Tier 2: Contacts of earlier redirects, latest first (depth-first).
        let mut quiet = Decision::new(d.mode);
        let pending: Vec<Target<'_>> = memo
            .pending
            .iter()
            .filter_map(|t| match ctx.admit(t.uri.as_bytes(), &mut quiet) {
                Ok(Some(mut target)) => {
                    target.q = t.q;
                    Some(target)
                }
                _ => None,
            })
            .collect();
        match ctx.resolve(&pending, &mut quiet) {
            Err(()) => return (Verdict::Error, Reason::LookupFailed),
            Ok(c) if !c.is_empty() => return ctx.emit(c, d, Reason::PendingRedirect),
            Ok(_) => {}
        }

        // Tier 3: the provisioned forwarding after a 3xx without Contact.
        let provisioned =
            || stored().filter(|f| f.kind == ForwardingKind::Provisioned && f.is_live(env.now()));
        if let Some(f) = round.saw_3xx_without_contact.then(provisioned).flatten() {
            let targets = ctx.forwarding_targets(f, d);
            match ctx.resolve(targets.iter(), d) {
                Err(()) => return (Verdict::Error, Reason::LookupFailed),
                Ok(c) if !c.is_empty() => {
                    d.counters.forwardings_applied += 1;
                    return ctx.emit(c, d, Reason::Provisioned);
                }
                Ok(c) => d.branches = c.into_buffer(),
            }
        }

        // Tier 4: the AOR's registered terminals not tried yet.
        if !env.is_self(aor.host, aor.port) {
            return (Verdict::NothingLeft, Reason::Exhausted);
        }
        match ctx.registered(d.mode, std::mem::take(&mut d.branches)) {
            Err(()) => (Verdict::Error, Reason::LookupFailed),
            Ok(c) if c.is_empty() => (Verdict::NothingLeft, Reason::Exhausted),
            Ok(c) => {
                d.counters.failovers += 1;
                ctx.emit(c, d, Reason::Failover)
            }
        }
    }

    /// Common start of both functions: untouched requests, the AOR, the
    /// service. Returns the parsed Request-URI, and writes its AOR form and
    /// the service key into the caller's buffers (the caller puts them
    /// into the decision once it is made); `Err`: how the call ends.
    fn prologue<'r>(
        &self,
        req: &Request<'r>,
        d: &mut Decision,
        aor_key: &mut String,
        service: &mut String,
    ) -> Result<SipUri<'r>, (Verdict, Reason)> {
        if !self.config.is_push_method(req.method) {
            return Err((Verdict::Untouched, Reason::NotPushMethod));
        }
        if req.has_to_tag {
            return Err((Verdict::Untouched, Reason::InDialog));
        }
        let aor = uri::parse(req.ruri).map_err(|e| {
            d.warn(|| {
                format!(
                    "Request-URI {:?} refused: {}",
                    String::from_utf8_lossy(req.ruri.get(..128).unwrap_or(req.ruri)),
                    e.message()
                )
            });
            (Verdict::Error, Reason::BadRequestUri)
        })?;
        let detail = service_detail(req.method, req.event, req.content_type);
        // An empty key: none from the previous call (it ended before this).
        if service.is_empty() || !d.service_of.is(req.method, detail) {
            service_key_of(req.method, detail, service);
            d.service_of.remember(req.method, detail);
        }
        aor.aor_into(aor_key);
        Ok(aor)
    }

    /// Reads one failed branch of the current round into `round`.
    fn judge<'a>(
        &self,
        ctx: &Ctx<'_, '_>,
        b: &Branch<'a>,
        resp: Option<&parser::Response<'a>>,
        budget: &mut usize,
        round: &mut Round<'a>,
        d: &mut Decision,
    ) {
        match b.status {
            305 | 380 => round.not_followed = true,
            300..=399 => {
                let Some(resp) = resp.filter(|r| r.has_contact()) else {
                    round.failed = true;
                    round.saw_3xx_without_contact = true;
                    return;
                };
                if *budget == 0 {
                    d.counters.loops_prevented += 1;
                    d.warn(|| {
                        format!(
                            "redirect from {} not followed: max_depth ({}) reached",
                            lossy(b.uri),
                            self.config.max_depth
                        )
                    });
                    round.failed = true;
                    return;
                }
                *budget -= 1;
                let before = d.counters;
                // The round's (spare) buffer, while it holds no target.
                let buf = if round.targets.is_empty() {
                    std::mem::take(&mut round.targets)
                } else {
                    Vec::new()
                };
                let (sel, malformed) = ctx.select(resp, d, buf);
                if sel.is_empty() {
                    // Only a policy refusal stops here (the sender gets the
                    // 3xx); Contacts that were garbage, loops or AORs
                    // without contacts count as a failed target.
                    let refused = d.counters.targets_refused - before.targets_refused > malformed;
                    let looped = d.counters.loops_prevented > before.loops_prevented;
                    if refused && !looped {
                        round.refused_only = true;
                    } else {
                        round.failed = true;
                    }
                    return;
                }
                d.counters.redirects_followed += 1;
                if d.store == StoreAction::None {
                    d.store = learn(b, resp, &sel);
                    if d.store != StoreAction::None {
                        d.counters.forwardings_learned += 1;
                    }
                }
                if round.targets.is_empty() {
                    // `select` keeps no two targets that are the same.
                    round.targets = sel;
                    return;
                }
                for t in sel {
                    if !round
                        .targets
                        .iter()
                        .any(|o| o.parsed.same_target(&t.parsed))
                    {
                        round.targets.push(t);
                    }
                }
            }
            code if self.config.is_failover_code(code) => round.failed = true,
            _ => {}
        }
    }
}

/// A 3xx that may be followed (not 305 or 380).
fn followable_3xx(status: u16) -> bool {
    (300..=399).contains(&status) && !matches!(status, 305 | 380)
}

fn count_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// The parsed reply of a 3xx branch that may be followed.
fn redirect_reply<'a>(b: &Branch<'a>) -> Option<parser::Response<'a>> {
    if !followable_3xx(b.status) {
        return None;
    }
    parser::parse_response(b.reply?).ok()
}

/// The store action a followed 3xx asks for (F6, F7).
fn learn(b: &Branch<'_>, resp: &parser::Response<'_>, sel: &[Target<'_>]) -> StoreAction {
    let kind = match b.status {
        301 => ForwardingKind::Permanent,
        302 => ForwardingKind::Temporary,
        _ => return StoreAction::None,
    };
    // The expiry of the followed Contacts (the shortest), else the Expires
    // header (RFC 3261 §20.19).
    let ttl = sel
        .iter()
        .filter_map(|t| t.expires)
        .min()
        .or_else(|| resp.expires());
    match (kind, ttl) {
        (_, Some(0)) => StoreAction::None,
        // RFC 3261 §21.3.3: a 302 without an expiry is for this request only.
        (ForwardingKind::Temporary, None) => StoreAction::None,
        (kind, ttl) => StoreAction::Learn(Learned {
            kind,
            ttl,
            targets: sel
                .iter()
                .map(|t| ForwardTarget {
                    uri: lossy(t.uri),
                    q: t.q,
                })
                .collect(),
            learned_from: lossy(b.uri),
            status: b.status,
        }),
    }
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b.get(..256).unwrap_or(b)).into_owned()
}

/// Per-call context: configuration, host callbacks, the AOR and what has
/// been tried.
struct Ctx<'e, 'r> {
    engine: &'e Engine,
    env: &'e dyn Env,
    aor: &'e SipUri<'r>,
    /// The AOR form of `aor` (`SipUri::aor`), computed once.
    aor_key: &'e str,
    /// The Request-URIs of the transaction's branches (those that parse).
    tried: &'e Tried<'e>,
    /// How many branches the transaction has (parsable or not): Kamailio
    /// counts them all against its branch limit.
    branch_count: usize,
    ruri_sips: bool,
    /// The AOR's registrations, read once when first needed (see
    /// [`Ctx::own`]); owned by the caller, so that branches can borrow them.
    regs: &'e OnceCell<Vec<Registration>>,
    /// `regs` parsed (`None`: not a SIP URI), when a target needs them.
    own_parsed: OnceCell<Vec<Option<SipUri<'e>>>>,
}

impl<'e, 'r> Ctx<'e, 'r> {
    fn new(
        engine: &'e Engine,
        env: &'e dyn Env,
        aor: &'e SipUri<'r>,
        aor_key: &'e str,
        tried: &'e Tried<'e>,
        branch_count: usize,
        regs: &'e OnceCell<Vec<Registration>>,
    ) -> Self {
        Ctx {
            engine,
            env,
            aor,
            aor_key,
            tried,
            branch_count,
            ruri_sips: aor.scheme == Scheme::Sips,
            regs,
            own_parsed: OnceCell::new(),
        }
    }

    fn cfg(&self) -> &Config {
        &self.engine.config
    }

    fn is_tried(&self, u: &SipUri<'_>) -> bool {
        self.tried.iter().any(|k| k.same_target(u))
    }

    /// The AOR's registrations, read once when first needed.
    fn own(&self) -> &'e [Registration] {
        self.regs.get_or_init(|| {
            if !self.env.is_self(self.aor.host, self.aor.port) {
                return Vec::new();
            }
            self.env.lookup(self.aor_key).unwrap_or_default()
        })
    }

    /// The index of the subscriber's own registration that is `u` (written
    /// `raw`), if any: a redirect to another terminal of the same
    /// subscriber needs no allowed domain.
    fn own_registration(&self, raw: &[u8], u: &SipUri<'_>) -> Option<usize> {
        let regs = self.own();
        // The same bytes are the same target, and the usual case (a
        // terminal names another's registered Contact): nothing to parse.
        if let Some(i) = regs.iter().position(|r| r.uri == raw) {
            return Some(i);
        }
        // Else compare as targets; the registrations are parsed once per
        // call, however many targets ask.
        self.own_parsed
            .get_or_init(|| regs.iter().map(|r| uri::parse(&r.uri).ok()).collect())
            .iter()
            .position(|k| k.is_some_and(|k| k.same_target(u)))
    }

    /// Policy for one target URI (SPEC §3). `Ok(None)`: already tried.
    fn admit<'a>(&self, raw: &'a [u8], d: &mut Decision) -> Result<Option<Target<'a>>, Refusal> {
        let refuse = |d: &mut Decision, why: &str| {
            d.counters.targets_refused += 1;
            d.warn(|| format!("target {} refused: {why}", lossy(raw)));
            Err(Refusal::Policy)
        };
        let u = match uri::parse(raw) {
            Ok(u) => u,
            Err(UriError::UnsupportedScheme) => return refuse(d, "only sip: and sips: targets"),
            Err(e) => {
                let _ = refuse(d, e.message());
                return Err(Refusal::Malformed);
            }
        };
        if self.ruri_sips && u.scheme != Scheme::Sips {
            return refuse(d, "sip: target for a sips: request (RFC 3261 16.7)");
        }
        let local = self.env.is_self(u.host, u.port);
        if local && u.user.is_none() {
            return refuse(d, "the proxy itself, with no AOR");
        }
        if self.is_tried(&u) {
            d.counters.loops_prevented += 1;
            return Ok(None);
        }
        let via = if local {
            Via::LocalAor
        } else if let Some(i) = self.own_registration(raw, &u) {
            Via::Own(i)
        } else if self.cfg().domain_allowed_bytes(u.host) {
            Via::Direct
        } else {
            return refuse(d, "domain not in allowed_domains");
        };
        Ok(Some(Target {
            uri: raw,
            parsed: u,
            q: None,
            expires: None,
            via,
        }))
    }

    /// The accepted Contacts of a 3xx: the `max_branches` best by q (stable
    /// for equal q), the rest counted as dropped. A Contact whose q cannot
    /// rank among the best kept so far is dropped unexamined. Memory stays
    /// O(`max_branches`) whatever the number of Contacts, and nothing is
    /// copied from the reply.
    /// Also returns how many Contacts were malformed (and counted refused).
    /// `best`: a buffer for the result (emptied first).
    fn select<'a>(
        &self,
        resp: &parser::Response<'a>,
        d: &mut Decision,
        mut best: Vec<Target<'a>>,
    ) -> (Vec<Target<'a>>, u32) {
        let cap = self.cfg().max_branches as usize;
        best.clear();
        best.reserve(cap + 1);
        let mut accepted = 0usize;
        let mut malformed = 0u32;
        for c in resp.contacts() {
            let c = match c {
                Ok(c) if !c.is_wildcard() => c,
                Ok(_) | Err(ContactError::Malformed) => {
                    d.counters.targets_refused += 1;
                    malformed += 1;
                    d.warn(|| "malformed Contact skipped".into());
                    continue;
                }
            };
            let q = c.q.unwrap_or(1000);
            if best.len() == cap && best.last().is_some_and(|w| w.q.unwrap_or(1000) >= q) {
                accepted += 1;
                continue;
            }
            let mut t = match self.admit(c.uri, d) {
                Ok(Some(t)) => t,
                Ok(None) | Err(Refusal::Policy) => continue,
                Err(Refusal::Malformed) => {
                    malformed += 1;
                    continue;
                }
            };
            if best.iter().any(|o| o.parsed.same_target(&t.parsed)) {
                continue;
            }
            accepted += 1;
            t.q = c.q;
            t.expires = c.expires;
            let pos = best.partition_point(|o| o.q.unwrap_or(1000) >= q);
            if pos < cap {
                if best.len() == cap {
                    best.pop();
                }
                best.insert(pos, t);
            }
        }
        let dropped = accepted.saturating_sub(best.len());
        if dropped > 0 {
            d.counters.contacts_dropped += u32::try_from(dropped).unwrap_or(u32::MAX);
            d.warn(|| format!("{dropped} Contacts beyond the max_branches ({cap}) best dropped"));
        }
        (best, malformed)
    }

    /// The targets of a stored forwarding that pass today's policy.
    /// One target as a rule: kept in place, no allocation.
    fn forwarding_targets<'a>(
        &self,
        f: &'a Forwarding,
        d: &mut Decision,
    ) -> InlineVec<Target<'a>, 1> {
        let mut out: InlineVec<Target<'a>, 1> = InlineVec::new();
        for ft in &f.targets {
            if let Ok(Some(mut t)) = self.admit(ft.uri.as_bytes(), d) {
                if !out.iter().any(|o| o.parsed.same_target(&t.parsed)) {
                    t.q = ft.q;
                    out.push(t);
                }
            }
        }
        out
    }

    /// Turns targets into next hops: a local AOR becomes its registered
    /// contacts (an AOR without contacts yields nothing: a failed target).
    fn resolve<'c, 't>(
        &self,
        targets: impl IntoIterator<Item = &'t Target<'c>>,
        d: &mut Decision,
    ) -> Result<Candidates<'c>, ()>
    where
        'e: 'c,
        'c: 't,
    {
        let limit = self.take(d.mode);
        // The decision's own branch buffer (`emit` hands it back).
        let mut out = Candidates::with_buffer(std::mem::take(&mut d.branches));
        for t in targets {
            if out.len() >= limit {
                break;
            }
            match t.via {
                Via::Direct => out.push_unique(
                    BranchOut {
                        uri: self.env.bytes(t.uri),
                        dst_uri: None,
                        path: None,
                        instance: None,
                        socket: 0,
                        q: t.q,
                    },
                    Key::Uri(t.parsed),
                ),
                Via::Own(i) => {
                    if let Some(r) = self.own().get(i) {
                        out.push_unique(
                            self.branch_of(self.env.bytes(t.uri), r, t.q.or(r.q)),
                            Key::Uri(t.parsed),
                        );
                    }
                }
                Via::LocalAor => {
                    self.contacts_of(&t.parsed.aor(), d, &mut out, true, limit)?;
                }
            }
        }
        Ok(out)
    }

    /// Adds the contacts of a local AOR to `out`, best first, minus those
    /// already tried and those that do not pass policy (a registration is
    /// input too), until `out` holds `limit` (what the round can take: the
    /// rest would be cut by [`Ctx::emit`], so it is not examined);
    /// `unique`: only those not in `out` yet, else `out` holds this AOR's
    /// contacts alone and they get no loop key (nothing is merged into
    /// it). On a failed lookup `out` is left as it was.
    fn contacts_of(
        &self,
        aor: &str,
        d: &mut Decision,
        out: &mut Candidates<'_>,
        unique: bool,
        limit: usize,
    ) -> Result<(), ()> {
        let mut regs = self.env.lookup(aor).map_err(|_| {
            d.warn(|| format!("location lookup of {aor} failed"));
        })?;
        // q high first (unset q ranks as 1.0), then the most recent.
        regs.sort_by(|a, b| {
            b.q.unwrap_or(1000)
                .cmp(&a.q.unwrap_or(1000))
                .then(b.last_modified.cmp(&a.last_modified))
        });
        out.out.reserve(regs.len().min(limit));
        for r in regs.iter_mut() {
            if out.len() >= limit {
                break;
            }
            let Ok(u) = uri::parse(&r.uri) else {
                d.warn(|| {
                    format!(
                        "registered contact {} of {aor} skipped: not a SIP URI",
                        lossy(&r.uri)
                    )
                });
                continue;
            };
            if (self.ruri_sips && u.scheme != Scheme::Sips) || self.is_tried(&u) {
                continue;
            }
            // The registration's buffers move into the branch (`regs` is
            // not read again).
            if unique {
                let key = Key::Owned(u.key());
                out.push_unique(take_branch(r), key);
            } else {
                out.push(take_branch(r), Key::Unkeyed);
            }
        }
        self.env.recycle(regs);
        Ok(())
    }

    /// The memo for the next round, into `out`: this round's redirect
    /// targets, then the earlier ones, minus what has been tried; `sent`:
    /// the branches this round sends, when known.
    ///
    /// Empty when the next round can derive it from the transaction: no
    /// target left that is not being sent now (those are tried by then),
    /// and as many redirects followed as the transaction has 3xx replies
    /// (`all_3xx`, which the next round counts among its earlier rounds).
    /// The module then keeps nothing with the transaction: a followed 302,
    /// or a failover, costs no memo.
    fn next_memo(
        &self,
        old: &Memo,
        targets: &[Target<'_>],
        redirects_now: usize,
        sent: Option<&[BranchOut]>,
        all_3xx: usize,
        out: &mut Vec<u8>,
    ) {
        // This round's targets were admitted (so not tried) and are all
        // different targets (see `Round::targets`): they are kept as they
        // are, up to the cap.
        debug_assert!(targets.iter().enumerate().all(|(k, t)| {
            !self.is_tried(&t.parsed)
                && !targets
                    .iter()
                    .take(k)
                    .any(|o| o.parsed.same_target(&t.parsed))
        }));
        let fresh = targets.get(..MAX_PENDING).unwrap_or(targets);
        let mut earlier: Vec<(SipUri<'_>, &[u8], Option<u16>)> = Vec::new();
        for t in &old.pending {
            if fresh.len() + earlier.len() >= MAX_PENDING {
                break;
            }
            let Ok(u) = uri::parse(t.uri.as_bytes()) else {
                continue;
            };
            if !self.is_tried(&u)
                && !fresh.iter().any(|f| f.parsed.same_target(&u))
                && !earlier.iter().any(|(k, _, _)| k.same_target(&u))
            {
                earlier.push((u, t.uri.as_bytes(), t.q));
            }
        }
        let redirects = old.redirects.saturating_add(count_u32(redirects_now));
        let all_sent = match sent {
            Some(sent) => fresh
                .iter()
                .all(|t| sent.iter().any(|b| b.uri.as_slice() == t.uri)),
            None => fresh.is_empty(),
        };
        if earlier.is_empty() && all_sent && redirects == count_u32(all_3xx) {
            out.clear();
            return;
        }
        Memo::encode_into(
            out,
            redirects,
            fresh
                .iter()
                .map(|t| (t.uri, t.q))
                .chain(earlier.iter().map(|&(_, raw, q)| (raw, q))),
        )
    }

    /// The AOR's own registered terminals not tried yet.
    /// `buf`: a buffer for the result (the decision's branch buffer).
    fn registered(&self, mode: ForkMode, buf: Vec<BranchOut>) -> Result<Candidates<'static>, ()> {
        let mut out = Candidates::with_buffer(buf);
        self.contacts_of(
            self.aor_key,
            &mut Decision::new(ForkMode::Serial),
            &mut out,
            false,
            // One even at the branch limit: `emit` then says why none goes.
            self.take(mode).max(1),
        )?;
        Ok(out)
    }

    /// Whether a branch of this round that failed was sent to a target of
    /// the stored forwarding (or to a contact of it, for a local AOR).
    fn stored_target_failed<'b>(
        &self,
        f: &Forwarding,
        current: impl Iterator<Item = &'b Branch<'b>>,
    ) -> bool {
        let failed: Vec<SipUri<'_>> = current
            .filter(|b| b.status >= 300)
            .filter_map(|b| uri::parse(b.uri).ok())
            .collect();
        let hit = |u: &SipUri<'_>| failed.iter().any(|f| f.same_target(u));
        f.targets.iter().any(|t| {
            let Ok(u) = uri::parse(t.uri.as_bytes()) else {
                return false;
            };
            if hit(&u) {
                return true;
            }
            self.env.is_self(u.host, u.port)
                && self.env.lookup(&u.aor()).is_ok_and(|regs| {
                    regs.iter()
                        .any(|r| uri::parse(&r.uri).is_ok_and(|ru| hit(&ru)))
                })
        })
    }

    /// A branch to `uri` with the registration's own destination, Path,
    /// socket; its bytes in buffers of the host's.
    fn branch_of(&self, uri: Vec<u8>, r: &Registration, q: Option<u16>) -> BranchOut {
        let copy = |v: &Option<Vec<u8>>| {
            v.as_deref()
                .filter(|v| !v.is_empty())
                .map(|v| self.env.bytes(v))
        };
        BranchOut {
            uri,
            dst_uri: copy(&r.received),
            path: copy(&r.path),
            instance: copy(&r.instance),
            socket: r.socket,
            q,
        }
    }

    /// How many branches a round may add: one in serial mode, up to
    /// `max_branches` in parallel, never past Kamailio's branch limit.
    fn take(&self, mode: ForkMode) -> usize {
        let room = self.engine.branch_limit.saturating_sub(self.branch_count);
        match mode {
            ForkMode::Serial => 1,
            ForkMode::Parallel => self.cfg().max_branches as usize,
        }
        .min(room)
    }

    /// Builds the round from the first tier that is not empty.
    fn emit(
        &self,
        candidates: Candidates<'_>,
        d: &mut Decision,
        reason: Reason,
    ) -> (Verdict, Reason) {
        let take = self.take(d.mode);
        if take == 0 {
            d.warn(|| {
                format!(
                    "branch limit ({}) of the transaction reached",
                    self.engine.branch_limit
                )
            });
            return (Verdict::NothingLeft, Reason::BranchLimit);
        }
        let mut branches = candidates.out;
        branches.truncate(take);
        d.branches = branches;
        (Verdict::Branches, reason)
    }
}

/// A branch to a registration's URI with its own destination, Path,
/// socket and q, its buffers taken (it is left without them).
fn take_branch(r: &mut Registration) -> BranchOut {
    let some = |v: Option<Vec<u8>>| v.filter(|v| !v.is_empty());
    BranchOut {
        uri: std::mem::take(&mut r.uri),
        dst_uri: some(r.received.take()),
        path: some(r.path.take()),
        instance: some(r.instance.take()),
        socket: r.socket,
        q: r.q,
    }
}

/// A list that keeps its first `N` items in place (on the stack) and only
/// allocates beyond them: the engine's per-call lists are short (a few
/// branches, registrations, candidates), and an allocation costs more than
/// the rest of their handling.
#[derive(Debug)]
struct InlineVec<T, const N: usize> {
    inline: [Option<T>; N],
    len: usize,
    spill: Vec<T>,
}

impl<T, const N: usize> InlineVec<T, N> {
    fn new() -> Self {
        InlineVec {
            inline: std::array::from_fn(|_| None),
            len: 0,
            spill: Vec::new(),
        }
    }

    fn push(&mut self, v: T) {
        match self.inline.get_mut(self.len) {
            Some(slot) => {
                *slot = Some(v);
                self.len += 1;
            }
            None => self.spill.push(v),
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.len + self.spill.len()
    }

    /// The items in the order they were pushed.
    fn iter(&self) -> impl Iterator<Item = &T> + Clone {
        self.inline
            .iter()
            .take(self.len)
            .flatten()
            .chain(self.spill.iter())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inline_vec_keeps_order_across_the_spill() {
        for n in [0usize, 1, 3, 4, 5, 20] {
            let mut v: InlineVec<String, 4> = InlineVec::new();
            for k in 0..n {
                v.push(k.to_string());
            }
            let want: Vec<String> = (0..n).map(|k| k.to_string()).collect();
            assert_eq!(v.len(), n);
            assert_eq!(v.iter().cloned().collect::<Vec<_>>(), want);
        }
    }

    #[test]
    fn keys_compare_like_target_keys() {
        let uris = [
            "sip:u@example.com",
            "sip:u@EXAMPLE.com:5060;transport=tcp",
            "sip:U@example.com",
            "sips:u@example.com",
            "sips:u@example.com:5061",
            "sip:u@example.com:5070",
            "sip:example.com",
        ];
        for a in uris {
            for b in uris {
                let (ua, ub) = (
                    uri::parse(a.as_bytes()).unwrap(),
                    uri::parse(b.as_bytes()).unwrap(),
                );
                let want = ua.key() == ub.key();
                for ka in [Key::Uri(ua), Key::Owned(ua.key())] {
                    for kb in [Key::Uri(ub), Key::Owned(ub.key())] {
                        assert_eq!(ka.same(&kb), want, "{a} {b} {ka:?} {kb:?}");
                    }
                }
            }
        }
    }

    struct NoEnv;
    impl Env for NoEnv {
        fn lookup(&self, _aor: &str) -> Result<Vec<Registration>, LookupError> {
            Ok(Vec::new())
        }
        fn is_self(&self, _host: &[u8], _port: Option<u16>) -> bool {
            false
        }
        fn now(&self) -> i64 {
            1_000
        }
    }

    #[test]
    fn a_decision_filled_again_has_the_service_key_of_its_own_request() {
        let engine = Engine::new(Config::default());
        // method, Event, Content-Type, has a To-tag
        type Req<'a> = (&'a str, Option<&'a [u8]>, Option<&'a [u8]>, bool);
        let requests: Vec<Req<'_>> = vec![
            ("MESSAGE", None, Some(b"text/plain"), false),
            ("MESSAGE", None, Some(b"text/plain"), false),
            ("MESSAGE", None, Some(b"text/plain;charset=utf-8"), false),
            ("MESSAGE", None, Some(b"Text/Plain"), false),
            ("MESSAGE", Some(b"presence"), None, false),
            ("NOTIFY", Some(b"presence"), Some(b"text/plain"), false),
            (
                "NOTIFY",
                Some(b"presence"),
                Some(b"application/pidf+xml"),
                false,
            ),
            ("NOTIFY", None, Some(b"presence"), false),
            ("NOTIFY", Some(b""), None, false),
            ("NOTIFY", None, None, false),
            ("notify", Some(b"presence"), None, false),
            // An in-dialog request ends the call before the keys...
            ("MESSAGE", None, Some(b"text/html"), true),
            // ... and the next one still gets its own.
            ("MESSAGE", None, Some(b"text/html"), false),
            ("MESSAGE", None, Some(b"text/plain"), false),
            ("OPTIONS", None, Some(b"text/plain"), false),
            ("MESSAGE", None, Some(b"text/plain"), false),
        ];
        let mut d = Decision::new(ForkMode::Serial);
        for (method, event, content_type, has_to_tag) in requests {
            let req = Request {
                method,
                ruri: b"sip:u1@example.com",
                has_to_tag,
                event,
                content_type,
            };
            engine.push_lookup_into(&NoEnv, &req, None, None, &mut d);
            let fresh = engine.push_lookup(&NoEnv, &req, None, None);
            assert_eq!(
                d.service, fresh.service,
                "{method} {event:?} {content_type:?}"
            );
            if fresh.service.is_some() {
                assert_eq!(
                    d.service.as_deref(),
                    Some(service_key(method, event, content_type).as_str())
                );
            }
        }
    }
}
