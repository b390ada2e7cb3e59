//! `engine`: the decision engine through its Rust API (`Engine::push_lookup`,
//! `Engine::push_redirect`) on a whole scenario: a configuration, a
//! location table, a request, the transaction's branches with their
//! replies, a memo and a stored forwarding (which the host hands out
//! through `Host::stored`); then up to [`MAX_ROUNDS`] more failure rounds
//! in which the branches just decided fail in turn with replies of the
//! case, each round given the memo of the one before.
//!
//! Every decision is checked against the rules of SPEC §3 that hold
//! whatever the input (see [`check`]) and made twice (determinism); and the
//! store is read at most once per call, for the decision's own key, and
//! not at all when a redirect is simply followed.

use std::cell::RefCell;
use std::fmt::Write as _;
use std::sync::Arc;

use push_redirect::config::{Config, ForkMode};
use push_redirect::engine::memo::{Memo, MAX_PENDING};
use push_redirect::engine::{
    service_key, Branch, Decision, Engine, FailedRound, ForwardTarget, Forwarding, ForwardingKind,
    Host, Learned, LookupError, Reason, Registration, Request, Stat, StoreAction, Verdict,
    MAX_WARNINGS,
};
use push_redirect::uri::{self, Scheme, SipUri};

use super::text::{self, field};

/// Failure rounds simulated after the case's own branches.
pub const MAX_ROUNDS: usize = 8;

/// One branch of the transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BranchCase {
    /// Its Request-URI.
    pub uri: Vec<u8>,
    /// Its final status (any number: the Rust API takes any u16).
    pub status: u16,
    /// The raw reply, if any.
    pub reply: Option<Vec<u8>>,
    /// Whether it belongs to the round that just failed.
    pub current: bool,
}

/// One engine scenario.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Case {
    /// `Config::set(name, value)` calls, in order; each must succeed.
    pub params: Vec<(String, String)>,
    /// Kamailio's per-transaction branch limit.
    pub branch_limit: usize,
    /// Hosts that are the proxy, with their port (None: any).
    pub own: Vec<(Vec<u8>, Option<u16>)>,
    /// The clock.
    pub now: i64,
    /// Whether every location lookup fails.
    pub lookup_fails: bool,
    /// The location table: (AOR key, registration).
    pub location: Vec<(String, Registration)>,
    /// The request.
    pub method: String,
    /// Its Request-URI.
    pub ruri: Vec<u8>,
    /// Whether it has a To-tag.
    pub has_to_tag: bool,
    /// Its Event header.
    pub event: Option<Vec<u8>>,
    /// Its Content-Type header.
    pub content_type: Option<Vec<u8>>,
    /// The transaction's branches for the first push_redirect.
    pub branches: Vec<BranchCase>,
    /// The memo for the first push_redirect.
    pub memo: Vec<u8>,
    /// The fork mode override.
    pub mode: Option<ForkMode>,
    /// The stored forwarding for the request's (AOR, service).
    pub stored: Option<Forwarding>,
    /// How the branches of later rounds fail: (status, reply), used in turn.
    pub followups: Vec<(u16, Option<Vec<u8>>)>,
}

/// The host: a location table, the proxy's addresses, a clock, the
/// stored forwarding; it notes the keys the engine reads the store by.
pub struct CaseHost<'c> {
    case: &'c Case,
    /// The forwarding, shared as a store hands it out.
    stored: Option<Arc<Forwarding>>,
    /// The (AOR, service) of each `Host::stored` call of the current call.
    reads: RefCell<Vec<(String, String)>>,
}

impl<'c> CaseHost<'c> {
    /// The host of `case`.
    pub fn new(case: &'c Case) -> Self {
        CaseHost {
            case,
            stored: case.stored.clone().map(Arc::new),
            reads: RefCell::new(Vec::new()),
        }
    }

    /// The store reads since the last call of this function.
    pub fn take_reads(&self) -> Vec<(String, String)> {
        std::mem::take(&mut *self.reads.borrow_mut())
    }
}

impl Host for CaseHost<'_> {
    fn lookup(&self, aor: &str) -> Result<Vec<Registration>, LookupError> {
        if self.case.lookup_fails {
            return Err(LookupError);
        }
        Ok(self
            .case
            .location
            .iter()
            .filter(|(a, _)| a == aor)
            .map(|(_, r)| r.clone())
            .collect())
    }

    fn is_self(&self, host: &[u8], port: Option<u16>) -> bool {
        self.case.own.iter().any(|(h, p)| {
            host.eq_ignore_ascii_case(h)
                && match (p, port) {
                    (Some(p), Some(port)) => *p == port,
                    _ => true,
                }
        })
    }

    fn now(&self) -> i64 {
        self.case.now
    }

    fn stored(&self, aor: &str, service: &str) -> Option<Arc<Forwarding>> {
        self.reads
            .borrow_mut()
            .push((aor.to_string(), service.to_string()));
        self.stored.clone()
    }
}

fn branches_of(list: &[BranchCase]) -> Vec<Branch<'_>> {
    list.iter()
        .map(|b| Branch {
            uri: &b.uri,
            status: b.status,
            reply: b.reply.as_deref(),
            current_round: b.current,
        })
        .collect()
}

/// Runs one scenario; panics when a rule is broken.
pub fn run(case: &Case) {
    let mut config = Config::default();
    for (name, value) in &case.params {
        if let Err(e) = config.set(name, value) {
            panic!("a valid parameter value was refused: {name}={value:?}: {e}");
        }
    }
    let engine = Engine {
        config,
        branch_limit: case.branch_limit,
    };
    let host = CaseHost::new(case);
    let req = Request {
        method: &case.method,
        ruri: &case.ruri,
        has_to_tag: case.has_to_tag,
        event: case.event.as_deref(),
        content_type: case.content_type.as_deref(),
        history_info: &[],
        privacy: None,
        method_bit: 0,
    };

    let d = engine.push_lookup(&host, &req, case.mode);
    check_reads(case, None, &d, &host.take_reads());
    let again = engine.push_lookup(&host, &req, case.mode);
    host.take_reads();
    assert_eq!(d, again, "push_lookup is not deterministic");
    check(&engine, case, &req, None, &d);

    let mut all = case.branches.clone();
    let mut memo = case.memo.clone();
    let mut k = 0;
    for round in 0..=MAX_ROUNDS {
        let list = branches_of(&all);
        let failed = FailedRound {
            branches: &list,
            memo: &memo,
        };
        let d = engine.push_redirect(&host, &req, &failed, case.mode);
        check_reads(case, Some((&all, &memo)), &d, &host.take_reads());
        let again = engine.push_redirect(&host, &req, &failed, case.mode);
        host.take_reads();
        assert_eq!(
            d, again,
            "push_redirect is not deterministic (round {round})"
        );
        check(&engine, case, &req, Some((&all, &memo)), &d);

        if d.verdict != Verdict::Branches || case.followups.is_empty() {
            break;
        }
        // Next round: the branches just decided fail in turn, with the
        // case's follow-up replies.
        for b in &mut all {
            b.current = false;
        }
        for out in &d.branches {
            let (status, reply) = &case.followups[k % case.followups.len()];
            k += 1;
            all.push(BranchCase {
                uri: out.uri().to_vec(),
                status: *status,
                reply: reply.clone(),
                current: true,
            });
        }
        memo = d.memo.clone();
    }
}

/// How a call read the store (`Host::stored`): at most once, for the
/// decision's own (AOR, service); never when a redirect is simply followed
/// (the promise of `Host::stored`); and once for a forwarding applied.
fn check_reads(
    case: &Case,
    redirect: Option<(&[BranchCase], &[u8])>,
    d: &Decision,
    reads: &[(String, String)],
) {
    let ctx = || describe(case, redirect, d);
    assert!(
        reads.len() <= 1,
        "the store read {} times: {}",
        reads.len(),
        ctx()
    );
    if let Some((aor, service)) = reads.first() {
        assert_eq!(
            (Some(aor.as_str()), Some(service.as_str())),
            (d.aor.as_deref(), d.service.as_deref()),
            "the store read for another key: {}",
            ctx()
        );
    }
    if d.reason == Reason::Redirect {
        assert!(
            reads.is_empty(),
            "a redirect followed read the store: {}",
            ctx()
        );
    }
    if matches!(d.reason, Reason::StoredForwarding | Reason::Provisioned) {
        assert_eq!(reads.len(), 1, "{}", ctx());
    }
}

const EMITTING: [Reason; 6] = [
    Reason::Registered,
    Reason::StoredForwarding,
    Reason::Redirect,
    Reason::PendingRedirect,
    Reason::Provisioned,
    Reason::Failover,
];

/// The rules every decision keeps. `redirect`: the branches and memo given
/// to `push_redirect` (None for `push_lookup`).
pub fn check(
    engine: &Engine,
    case: &Case,
    req: &Request<'_>,
    redirect: Option<(&[BranchCase], &[u8])>,
    d: &Decision,
) {
    let cfg = &engine.config;
    let ctx = || describe(case, redirect, d);

    // Mode, verdict, reason and branches agree.
    assert_eq!(d.mode, case.mode.unwrap_or(cfg.fork_mode), "{}", ctx());
    let emitting = EMITTING.contains(&d.reason);
    assert_eq!(d.verdict == Verdict::Branches, emitting, "{}", ctx());
    assert_eq!(
        d.verdict == Verdict::Branches,
        !d.branches.is_empty(),
        "verdict/branches mismatch: {}",
        ctx()
    );
    let want_verdict = match d.reason {
        Reason::NotPushMethod | Reason::InDialog | Reason::NotRedirect => Verdict::Untouched,
        Reason::GlobalFailure
        | Reason::AuthChallenge
        | Reason::NeverFollowed
        | Reason::NoTarget
        | Reason::Exhausted
        | Reason::BranchLimit => Verdict::NothingLeft,
        Reason::AllTargetsRefused => Verdict::Refused,
        Reason::BadRequestUri | Reason::LookupFailed => Verdict::Error,
        _ => Verdict::Branches,
    };
    assert_eq!(d.verdict, want_verdict, "{}", ctx());
    assert!(matches!(d.script_rc(), 1 | -1 | -2));
    assert!(!d.reason.message().is_empty());
    assert!(d.warnings.len() <= MAX_WARNINGS + 1, "{}", ctx());

    // The prologue.
    let ruri = uri::parse(req.ruri).ok();
    if !cfg.is_push_method(req.method) {
        assert_eq!(d.reason, Reason::NotPushMethod, "{}", ctx());
    } else if req.has_to_tag {
        assert_eq!(d.reason, Reason::InDialog, "{}", ctx());
    } else if ruri.is_none() {
        assert_eq!(d.reason, Reason::BadRequestUri, "{}", ctx());
    }
    let past_prologue = cfg.is_push_method(req.method) && !req.has_to_tag && ruri.is_some();
    match (&ruri, past_prologue) {
        (Some(u), true) => {
            assert_eq!(d.aor.as_deref(), Some(u.aor().as_str()));
            assert_eq!(
                d.service.as_deref(),
                Some(service_key(req.method, req.event, req.content_type).as_str())
            );
        }
        _ => {
            assert!(d.aor.is_none() && d.branches.is_empty() && d.memo.is_empty());
            assert_eq!(d.store, StoreAction::None);
        }
    }
    if let Some(s) = &d.service {
        assert!(s.len() <= push_redirect::engine::MAX_SERVICE_LEN);
    }

    // What was tried: every branch of the transaction.
    let given: &[BranchCase] = redirect.map_or(&[], |(b, _)| b);
    let tried: Vec<SipUri<'_>> = given
        .iter()
        .filter_map(|b| uri::parse(&b.uri).ok())
        .collect();

    // How many.
    let cap = match d.mode {
        ForkMode::Serial => 1,
        ForkMode::Parallel => cfg.max_branches as usize,
    };
    assert!(
        d.branches.len() <= cap,
        "{} branches > {cap}: {}",
        d.branches.len(),
        ctx()
    );
    // (The transaction may be past the limit already: then nothing is added.)
    assert!(
        d.branches.is_empty() || tried.len() + d.branches.len() <= engine.branch_limit,
        "past the branch limit {}: {}",
        engine.branch_limit,
        ctx()
    );
    // Kamailio counts every branch of the transaction, SIP URI or not.
    assert!(
        d.branches.is_empty() || given.len() + d.branches.len() <= engine.branch_limit,
        "{} branches + {} new > limit {}: {}",
        given.len(),
        d.branches.len(),
        engine.branch_limit,
        ctx()
    );

    // Which: SIP URIs only, sips for sips, never tried, never twice, allowed.
    let ruri_sips = ruri.as_ref().is_some_and(|u| u.scheme == Scheme::Sips);
    let regs: Vec<SipUri<'_>> = case
        .location
        .iter()
        .filter_map(|(_, r)| uri::parse(&r.uri()).ok())
        .collect();
    let mut out: Vec<SipUri<'_>> = Vec::new();
    for b in &d.branches {
        let u = match uri::parse(&b.uri()) {
            Ok(u) => u,
            Err(e) => panic!(
                "branch to {:?}, not a sip:/sips: URI ({}): {}",
                lossy(&b.uri()),
                e.message(),
                ctx()
            ),
        };
        if ruri_sips {
            assert_eq!(
                u.scheme,
                Scheme::Sips,
                "sip: branch for a sips: request: {}",
                ctx()
            );
        }
        assert!(
            !tried.iter().any(|t| t.same_target(&u)),
            "branch to {:?}, already tried: {}",
            lossy(&b.uri()),
            ctx()
        );
        let registered = regs.iter().any(|r| r.same_target(&u));
        assert!(
            registered || cfg.domain_allowed_bytes(u.host),
            "branch to {:?}: neither a registered contact nor an allowed domain: {}",
            lossy(&b.uri()),
            ctx()
        );
        if !matches!(d.reason, Reason::Registered | Reason::Failover) {
            // Registered terminals come as the location table has them;
            // every other source is de-duplicated.
            assert!(
                !out.iter().any(|o| o.same_target(&u)),
                "two branches to {:?}: {}",
                lossy(&b.uri()),
                ctx()
            );
        }
        // The same, with URIs compared as RFC 3261 §19.1.4 does (escapes).
        let key = rfc_key(&u);
        assert!(
            !tried.iter().any(|t| rfc_key(t) == key)
                && (matches!(d.reason, Reason::Registered | Reason::Failover)
                    || !out.iter().any(|o| rfc_key(o) == key)),
            "branch to {:?} is a target tried or taken already: {}",
            lossy(&b.uri()),
            ctx()
        );
        if let Some(q) = b.q {
            assert!(q <= 1000);
        }
        for v in [&b.dst_uri(), &b.path(), &b.instance()]
            .into_iter()
            .flatten()
        {
            assert!(!v.is_empty(), "an empty dst_uri/path/instance: {}", ctx());
        }
        out.push(u);
    }

    // Counters.
    let c = &d.counters;
    assert!(c[Stat::ForwardingsLearned] <= 1 && c[Stat::ForwardingsApplied] <= 1);
    // (A forwarding learned and forgotten at once was a bug the fuzzer found.)
    assert_eq!(
        c[Stat::ForwardingsLearned] == 1,
        matches!(d.store, StoreAction::Learn(_)),
        "forwardings_learned vs the store action: {}",
        ctx()
    );
    if c[Stat::ForwardingsApplied] == 1 {
        assert!(
            matches!(d.reason, Reason::StoredForwarding | Reason::Provisioned),
            "{}",
            ctx()
        );
    }

    match redirect {
        None => {
            // (History-Info's lines only: the engine's part is derived)
            let own = engine_part(&d.memo);
            assert!(
                own.is_empty() || own == b"pr1 -\n",
                "push_lookup wrote a memo: {}",
                ctx()
            );
            assert_eq!(d.store, StoreAction::None);
            assert!(
                !matches!(
                    d.reason,
                    Reason::Redirect | Reason::PendingRedirect | Reason::Failover
                ),
                "{}",
                ctx()
            );
            assert_eq!(c[Stat::RedirectsFollowed] + c[Stat::Failovers], 0);
        }
        Some((given, memo_in)) => {
            assert!(
                !matches!(d.reason, Reason::Registered | Reason::StoredForwarding),
                "{}",
                ctx()
            );
            let current: Vec<&BranchCase> = if given.iter().any(|b| b.current) {
                given.iter().filter(|b| b.current).collect()
            } else {
                given.last().into_iter().collect()
            };
            let followable = current
                .iter()
                .filter(|b| (300..=399).contains(&b.status) && !matches!(b.status, 305 | 380))
                .count();
            let followed = c[Stat::RedirectsFollowed];
            assert!(followed as usize <= followable, "{}", ctx());
            assert!(followed <= cfg.max_depth, "{}", ctx());
            assert!(c[Stat::Failovers] <= 1);
            check_memo(&tried, memo_in, d, &ctx);
            check_store(case, &current, d, &ctx);
        }
    }
}

/// The engine's own part of a memo: the lines before History-Info's `h`
/// and `p` lines (see `engine::history`).
fn engine_part(memo: &[u8]) -> &[u8] {
    let mut end = 0;
    for line in memo.split_inclusive(|&c| c == b'\n') {
        if line.starts_with(b"h ") || line.starts_with(b"p ") {
            break;
        }
        end += line.len();
    }
    memo.get(..end).unwrap_or(memo)
}

fn check_memo(tried: &[SipUri<'_>], memo_in: &[u8], d: &Decision, ctx: &dyn Fn() -> String) {
    let own = engine_part(&d.memo);
    // Nothing of the engine's, or derived from the transaction.
    if own.is_empty() || own == b"pr1 -\n" {
        return;
    }
    let old = Memo::decode(memo_in);
    let m = Memo::decode(own);
    assert_eq!(
        m.encode(),
        own,
        "the memo does not read back as written: {}",
        ctx()
    );
    assert!(m.pending.len() <= MAX_PENDING);
    assert!(
        m.redirects >= old.redirects,
        "the memo lost redirects: {}",
        ctx()
    );
    let mut seen: Vec<SipUri<'_>> = Vec::new();
    for t in &m.pending {
        let u = match uri::parse(t.uri.as_bytes()) {
            Ok(u) => u,
            Err(_) => panic!("memo keeps {:?}, not a SIP URI: {}", t.uri, ctx()),
        };
        assert!(
            !tried.iter().any(|k| k.same_target(&u)),
            "memo keeps {:?}, already tried: {}",
            t.uri,
            ctx()
        );
        assert!(
            !seen.iter().any(|k| k.same_target(&u)),
            "memo keeps {:?} twice: {}",
            t.uri,
            ctx()
        );
        seen.push(u);
    }
}

fn check_store(case: &Case, current: &[&BranchCase], d: &Decision, ctx: &dyn Fn() -> String) {
    match &d.store {
        StoreAction::None => {}
        StoreAction::Forget => assert!(
            case.stored
                .as_ref()
                .is_some_and(|f| f.kind == ForwardingKind::Temporary),
            "Forget without a temporary forwarding: {}",
            ctx()
        ),
        StoreAction::Learn(Learned {
            kind,
            ttl,
            targets,
            learned_from,
            status,
        }) => {
            assert!(
                matches!(
                    (kind, status),
                    (ForwardingKind::Permanent, 301) | (ForwardingKind::Temporary, 302)
                ),
                "learned {kind:?} from a {status}: {}",
                ctx()
            );
            assert_ne!(*ttl, Some(0), "{}", ctx());
            if *kind == ForwardingKind::Temporary {
                assert!(ttl.is_some(), "a 302 learned without expiry: {}", ctx());
            }
            assert!(!targets.is_empty(), "{}", ctx());
            assert!(
                targets
                    .iter()
                    .all(|t| uri::parse(t.uri.as_bytes()).is_ok() && t.q.is_none_or(|q| q <= 1000)),
                "{}",
                ctx()
            );
            assert!(
                current.iter().any(|b| b.status == *status
                    && lossy(b.uri.get(..256).unwrap_or(&b.uri)) == *learned_from),
                "learned from {learned_from:?}, not a branch of this round: {}",
                ctx()
            );
        }
    }
}

/// The identity of a target as RFC 3261 §19.1.4 compares URIs (user with
/// escapes of non-reserved characters decoded, host case-insensitive, the
/// scheme's default port), coarsened like the engine's key (parameters
/// ignored).
fn rfc_key(u: &SipUri<'_>) -> (bool, Vec<u8>, Vec<u8>, u16) {
    let mut user = Vec::new();
    let raw = u.user.unwrap_or(b"");
    let mut i = 0;
    while i < raw.len() {
        let hex = raw
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok());
        match (raw[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(c)) if !b";/?:@&=+$,".contains(&c) => {
                user.push(c);
                i += 3;
            }
            (b'%', Some(c)) => {
                user.extend_from_slice(format!("%{c:02X}").as_bytes());
                i += 3;
            }
            (c, _) => {
                user.push(c);
                i += 1;
            }
        }
    }
    let sips = u.scheme == Scheme::Sips;
    let port = u.port.unwrap_or(if sips { 5061 } else { 5060 });
    (sips, user, u.host.to_ascii_lowercase(), port)
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The case and decision, for a failure message.
fn describe(case: &Case, redirect: Option<(&[BranchCase], &[u8])>, d: &Decision) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "\n--- decision ---\n{d:#?}");
    if let Some((b, m)) = redirect {
        let _ = writeln!(s, "--- branches given ---");
        for b in b {
            let _ = writeln!(s, "  {} {} current={}", b.status, lossy(&b.uri), b.current);
        }
        let _ = writeln!(s, "--- memo given ---\n{}", lossy(m));
    }
    let _ = writeln!(s, "--- case ---\n{}", case.to_text());
    s
}

impl Case {
    /// The text form (see [`super::text`]).
    pub fn to_text(&self) -> String {
        use text::{bytes, flag, opt_bytes, opt_num};
        let mut s = String::from("# push_redirect engine fuzz case v1\n");
        for (n, v) in &self.params {
            let _ = writeln!(s, "param {} {}", bytes(n.as_bytes()), bytes(v.as_bytes()));
        }
        let _ = writeln!(s, "branch_limit {}", self.branch_limit);
        for (h, p) in &self.own {
            let _ = writeln!(s, "self {} {}", bytes(h), opt_num(*p));
        }
        let _ = writeln!(s, "now {}", self.now);
        let _ = writeln!(s, "lookup_fails {}", flag(self.lookup_fails));
        for (aor, r) in &self.location {
            let _ = writeln!(
                s,
                "reg {} {} {} {} {} {} {} {}",
                bytes(aor.as_bytes()),
                bytes(&r.uri()),
                opt_bytes(r.received()),
                opt_bytes(r.path()),
                opt_bytes(r.instance()),
                r.socket,
                opt_num(r.q),
                r.last_modified
            );
        }
        let _ = writeln!(
            s,
            "request {} {} {} {} {}",
            bytes(self.method.as_bytes()),
            bytes(&self.ruri),
            flag(self.has_to_tag),
            opt_bytes(self.event.as_deref()),
            opt_bytes(self.content_type.as_deref())
        );
        for b in &self.branches {
            let _ = writeln!(
                s,
                "branch {} {} {} {}",
                bytes(&b.uri),
                b.status,
                flag(b.current),
                opt_bytes(b.reply.as_deref())
            );
        }
        let _ = writeln!(s, "memo {}", bytes(&self.memo));
        let _ = writeln!(
            s,
            "mode {}",
            match self.mode {
                None => "-",
                Some(ForkMode::Serial) => "serial",
                Some(ForkMode::Parallel) => "parallel",
            }
        );
        if let Some(f) = &self.stored {
            let kind = match f.kind {
                ForwardingKind::Permanent => "permanent",
                ForwardingKind::Temporary => "temporary",
                ForwardingKind::Provisioned => "provisioned",
            };
            let _ = writeln!(s, "stored {kind} {}", opt_num(f.expires_at));
            for t in &f.targets {
                let _ = writeln!(s, "target {} {}", bytes(t.uri.as_bytes()), opt_num(t.q));
            }
        }
        for (status, reply) in &self.followups {
            let _ = writeln!(s, "followup {status} {}", opt_bytes(reply.as_deref()));
        }
        s
    }

    /// Reads the text form.
    pub fn from_text(t: &str) -> Result<Case, String> {
        use text::{get_bytes, get_flag, get_num, get_opt_bytes, get_opt_num, get_string};
        let mut c = Case {
            params: Vec::new(),
            branch_limit: 12,
            own: Vec::new(),
            now: 1_000_000,
            lookup_fails: false,
            location: Vec::new(),
            method: "MESSAGE".into(),
            ruri: Vec::new(),
            has_to_tag: false,
            event: None,
            content_type: None,
            branches: Vec::new(),
            memo: Vec::new(),
            mode: None,
            stored: None,
            followups: Vec::new(),
        };
        for (line, tag, f) in text::records(t) {
            let g = |i| field(&f, i, tag);
            let r: Result<(), String> = (|| {
                match tag {
                    "param" => c.params.push((get_string(g(0)?)?, get_string(g(1)?)?)),
                    "branch_limit" => c.branch_limit = get_num(g(0)?)?,
                    "self" => c.own.push((get_bytes(g(0)?)?, get_opt_num(g(1)?)?)),
                    "now" => c.now = get_num(g(0)?)?,
                    "lookup_fails" => c.lookup_fails = get_flag(g(0)?)?,
                    "reg" => c.location.push((get_string(g(0)?)?, {
                        let mut r = Registration::new(&get_bytes(g(1)?)?);
                        r.set_received(get_opt_bytes(g(2)?)?.as_deref());
                        r.set_path(get_opt_bytes(g(3)?)?.as_deref());
                        r.set_instance(get_opt_bytes(g(4)?)?.as_deref());
                        r.socket = get_num(g(5)?)?;
                        r.q = get_opt_num(g(6)?)?;
                        r.last_modified = get_num(g(7)?)?;
                        r
                    })),
                    "request" => {
                        c.method = get_string(g(0)?)?;
                        c.ruri = get_bytes(g(1)?)?;
                        c.has_to_tag = get_flag(g(2)?)?;
                        c.event = get_opt_bytes(g(3)?)?;
                        c.content_type = get_opt_bytes(g(4)?)?;
                    }
                    "branch" => c.branches.push(BranchCase {
                        uri: get_bytes(g(0)?)?,
                        status: get_num(g(1)?)?,
                        current: get_flag(g(2)?)?,
                        reply: get_opt_bytes(g(3)?)?,
                    }),
                    "memo" => c.memo = get_bytes(g(0)?)?,
                    "mode" => {
                        c.mode = match g(0)? {
                            "-" => None,
                            m => Some(ForkMode::parse(m).ok_or(format!("mode {m:?}"))?),
                        }
                    }
                    "stored" => {
                        c.stored = Some(Forwarding {
                            kind: match g(0)? {
                                "permanent" => ForwardingKind::Permanent,
                                "temporary" => ForwardingKind::Temporary,
                                "provisioned" => ForwardingKind::Provisioned,
                                k => return Err(format!("kind {k:?}")),
                            },
                            targets: Vec::new(),
                            expires_at: get_opt_num(g(1)?)?,
                        })
                    }
                    "target" => c
                        .stored
                        .as_mut()
                        .ok_or("target before stored")?
                        .targets
                        .push(ForwardTarget {
                            uri: get_string(g(0)?)?,
                            q: get_opt_num(g(1)?)?,
                            instance: None,
                        }),
                    "followup" => c.followups.push((get_num(g(0)?)?, get_opt_bytes(g(1)?)?)),
                    _ => return Err(format!("unknown record {tag:?}")),
                }
                Ok(())
            })();
            r.map_err(|e| format!("line {line}: {e}"))?;
        }
        Ok(c)
    }
}
