//! The context of one call: the engine, the host, the AOR, what the
//! transaction has tried, and what is read once per call (the AOR's
//! registrations, the stored forwarding); and how targets become branches.

use std::cell::OnceCell;
use std::sync::Arc;

use super::candidates::{copy_branch, path_hop, take_branch, Candidates, Key, Tried};
use super::decision::{Branch, BranchOut, Decision, Origin, Reason, Verdict, BR_URI};
use super::host::{Host, Registration};
use super::memo::{Memo, MAX_PENDING};
use super::policy::{lossy, Target, Via};
use super::rounds::count_u32;
use super::Engine;
use crate::config::{Config, ForkMode};
use crate::forwarding::Forwarding;
use crate::log::{self, pr_log_level};
use crate::stats::Stat;
use crate::uri::{self, Scheme, SipUri};

/// How many registrations of an AOR [`Ctx::contacts_of`] passed over for
/// their methods: `seen` in all, `counted` as failovers of this round.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Excluded {
    pub(super) seen: u32,
    pub(super) counted: u32,
}

/// The warning for a registration whose Path does not parse.
fn bad_path(aor: &str, r: &Registration) -> String {
    format!(
        "registered contact {} of {aor} skipped: its Path does not parse",
        lossy(r.uri())
    )
}

/// Per-call context: configuration, host, the AOR, what the transaction
/// has tried, and what the call reads at most once (the AOR's
/// registrations, the stored forwarding).
pub(super) struct Ctx<'e, 'r> {
    pub(super) engine: &'e Engine,
    pub(super) host: &'e dyn Host,
    pub(super) aor: &'e SipUri<'r>,
    /// The AOR form of `aor` (`SipUri::aor`), computed once.
    pub(super) aor_key: &'e str,
    /// The request's service key.
    service: &'e str,
    /// The request's method as Kamailio's `METHOD_*` bit (0: unknown).
    pub(super) method_bit: u32,
    /// The transaction's branches (none for `push_lookup`).
    pub(super) branches: &'e [Branch<'e>],
    /// The Request-URIs of `branches` (those that parse), parsed when
    /// first needed.
    tried: OnceCell<Tried<'e>>,
    pub(super) ruri_sips: bool,
    /// The AOR's registrations, read once when first needed (see
    /// [`Ctx::registrations`]); owned by the caller, so that branches can
    /// borrow them.
    regs: &'e OnceCell<Vec<Registration>>,
    /// `regs` parsed (`None`: not a SIP URI), when a target needs them.
    pub(super) regs_parsed: OnceCell<Vec<Option<SipUri<'e>>>>,
    /// The stored forwarding for (AOR, service), read when first needed:
    /// a redirect that is simply followed costs no store read.
    stored: OnceCell<Option<Arc<Forwarding>>>,
    /// Whether the AOR's host is this proxy, asked once per call.
    aor_local: OnceCell<bool>,
}

impl<'e, 'r> Ctx<'e, 'r> {
    pub(super) fn new(
        engine: &'e Engine,
        host: &'e dyn Host,
        aor: &'e SipUri<'r>,
        aor_key: &'e str,
        service: &'e str,
        branches: &'e [Branch<'e>],
        regs: &'e OnceCell<Vec<Registration>>,
    ) -> Self {
        Ctx {
            engine,
            host,
            aor,
            aor_key,
            service,
            method_bit: 0,
            branches,
            tried: OnceCell::new(),
            ruri_sips: aor.scheme == Scheme::Sips,
            regs,
            regs_parsed: OnceCell::new(),
            stored: OnceCell::new(),
            aor_local: OnceCell::new(),
        }
    }

    /// Whether the AOR's host is this proxy (`Host::is_self`), asked once.
    pub(super) fn aor_is_local(&self) -> bool {
        *self
            .aor_local
            .get_or_init(|| self.host.is_self(self.aor.host, self.aor.port))
    }

    pub(super) fn cfg(&self) -> &Config {
        &self.engine.config
    }

    pub(super) fn is_tried(&self, u: &SipUri<'_>) -> bool {
        // push_lookup has no branches: nothing to parse or to build.
        if self.branches.is_empty() {
            return false;
        }
        self.tried
            .get_or_init(|| {
                let mut tried = Tried::new();
                for u in self.branches.iter().filter_map(|b| uri::parse(b.uri).ok()) {
                    tried.push(u);
                }
                tried
            })
            .iter()
            .any(|k| k.same_target(u))
    }

    /// The AOR's registrations, read once when first needed.
    pub(super) fn registrations(&self) -> &'e [Registration] {
        self.regs.get_or_init(|| {
            if !self.aor_is_local() {
                return Vec::new();
            }
            self.host.lookup(self.aor_key).unwrap_or_default()
        })
    }

    /// The forwarding stored for the call's (AOR, service), read once when
    /// first needed.
    pub(super) fn stored(&self) -> Option<&Forwarding> {
        self.stored
            .get_or_init(|| self.host.stored(self.aor_key, self.service))
            .as_deref()
    }

    /// The branches of a stored or provisioned forwarding, when any of its
    /// targets passes today's policy and resolves: `Some` with how the
    /// call ends; `None` when none does (the decision keeps its buffer for
    /// the next tier).
    pub(super) fn apply_forwarding(
        &self,
        f: &Forwarding,
        d: &mut Decision,
        reason: Reason,
    ) -> Option<(Verdict, Reason)> {
        let targets = self.forwarding_targets(f, d);
        let mut c = Candidates::with_buffer(std::mem::take(&mut d.branches));
        match self.resolve(targets.iter(), d, &mut c) {
            Err(()) => Some((Verdict::Error, Reason::LookupFailed)),
            Ok(()) if !c.is_empty() => {
                d.counters.bump(Stat::ForwardingsApplied);
                Some(self.round_from(c, d, reason))
            }
            Ok(()) => {
                d.branches = c.into_buffer();
                None
            }
        }
    }

    /// Turns targets into next hops, added to `out` (filled in place: the
    /// list is not moved around): a local AOR becomes its registered
    /// contacts (an AOR without contacts yields nothing: a failed target).
    pub(super) fn resolve<'c, 't>(
        &self,
        targets: impl IntoIterator<Item = &'t Target<'c>>,
        d: &mut Decision,
        out: &mut Candidates<'c>,
    ) -> Result<(), ()>
    where
        'e: 'c,
        'c: 't,
    {
        let limit = self.room(d.mode);
        for t in targets {
            if out.len() >= limit {
                break;
            }
            match t.via {
                Via::Direct => out.push_unique(
                    BranchOut::direct(self.host.buffer_with(t.uri), t.q),
                    Key::Uri(t.parsed),
                ),
                Via::Own(i) => {
                    let Some(r) = self.registrations().get(i) else {
                        continue;
                    };
                    if !self.accepts(r) {
                        self.skip_for_methods(self.aor_key, r, d);
                        continue;
                    }
                    match self.branch_of(t.uri, r, t.q.or(r.q)) {
                        Some(b) => out.push_unique(b, Key::Uri(t.parsed)),
                        None => d.warn(|| bad_path(self.aor_key, r)),
                    }
                }
                Via::LocalAor => {
                    let aor = t.parsed.aor();
                    let before = out.len();
                    self.contacts_of(&aor, d, out, true, limit)?;
                    // Contacts of another AOR than the request's: History-Info
                    // gives that AOR an entry of its own.
                    if aor != self.aor_key && self.history() {
                        for b in out.out.iter_mut().skip(before) {
                            b.origin = Origin::AorOf(self.host.buffer_with(t.uri));
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// Adds the contacts of a local AOR to `out`, best first, minus those
    /// already tried and those that do not pass policy (a registration is
    /// input too), until `out` holds `limit` (what the round can take: the
    /// rest would be cut by [`Ctx::round_from`], so it is not examined);
    /// `unique`: only those not in `out` yet, else `out` holds this AOR's
    /// contacts alone and they get no loop key (nothing is merged into
    /// it). On a failed lookup `out` is left as it was.
    pub(super) fn contacts_of(
        &self,
        aor: &str,
        d: &mut Decision,
        out: &mut Candidates<'_>,
        unique: bool,
        limit: usize,
    ) -> Result<Excluded, ()> {
        let mut regs = self.host.lookup(aor).map_err(|_| {
            d.warn(|| format!("location lookup of {aor} failed"));
        })?;
        let mut excluded = Excluded::default();
        // q high first (unset q ranks as 1.0), then the most recent.
        regs.sort_by(|a, b| {
            b.q.unwrap_or(1000)
                .cmp(&a.q.unwrap_or(1000))
                .then(b.last_modified.cmp(&a.last_modified))
        });
        out.out.reserve(regs.len().min(limit));
        for k in 0..regs.len() {
            if out.len() >= limit {
                break;
            }
            let Some(r) = regs.get(k) else { break };
            if !self.accepts(r) {
                excluded.seen += 1;
                // Passed over once per transaction: in the first round
                // that reaches it (no contact after it tried yet).
                let later = regs.get(k + 1..).unwrap_or_default();
                if !later
                    .iter()
                    .any(|l| uri::parse(l.uri()).is_ok_and(|lu| self.is_tried(&lu)))
                {
                    self.skip_for_methods(aor, r, d);
                    excluded.counted += 1;
                }
                continue;
            }
            let Ok(u) = uri::parse(r.uri()) else {
                d.warn(|| {
                    format!(
                        "registered contact {} of {aor} skipped: not a SIP URI",
                        lossy(r.uri())
                    )
                });
                continue;
            };
            if (self.ruri_sips && u.scheme != Scheme::Sips) || self.is_tried(&u) {
                continue;
            }
            let hop = match path_hop(r, self.cfg().path_check_local, self.host) {
                Ok(hop) => hop,
                Err(_) => {
                    d.warn(|| bad_path(aor, r));
                    continue;
                }
            };
            let key = unique.then(|| Key::Owned(u.key()));
            // The same contact registered twice (registrar matches by
            // Call-ID) is one target.
            if key.is_none() && out.out.iter().any(|b| b.uri() == r.uri()) {
                continue;
            }
            // The registration's buffers move into the branch (`regs` is
            // not read again).
            let Some(r) = regs.get_mut(k) else { break };
            let b = take_branch(r, hop);
            match key {
                Some(key) => out.push_unique(b, key),
                None => out.push(b, Key::Unkeyed),
            }
        }
        self.host.recycle(regs);
        Ok(excluded)
    }

    /// Whether a registration accepts the request's method (registrar's
    /// `allowed_method()`: its `methods` has the method's bit; an unknown
    /// method, bit 0, is not filtered).
    pub(super) fn accepts(&self, r: &Registration) -> bool {
        self.method_bit == 0 || r.methods & self.method_bit != 0
    }

    /// A registration passed over because its methods exclude the
    /// request's: a failover, not a branch (SPEC §3), logged at debug.
    fn skip_for_methods(&self, aor: &str, r: &Registration, d: &mut Decision) {
        d.counters.bump(Stat::Failovers);
        if log::enabled(pr_log_level::Debug) {
            log::emit(
                pr_log_level::Debug,
                &format!(
                    "contact {} of {aor} skipped: its methods (0x{:x}) exclude the request's (0x{:x})",
                    lossy(r.uri()),
                    r.methods,
                    self.method_bit
                ),
            );
        }
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
    pub(super) fn next_memo(
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
            Some(sent) => fresh.iter().all(|t| sent.iter().any(|b| b.uri() == t.uri)),
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

    /// The AOR's own registered terminals not tried yet, into `out`
    /// (filled in place: the list is not moved around).
    /// `d` gets the failovers of contacts whose methods exclude the
    /// request's (its warnings stay unsaid: each round would say them
    /// again).
    pub(super) fn registered(
        &self,
        d: &mut Decision,
        out: &mut Candidates<'_>,
    ) -> Result<Excluded, ()> {
        // Its warnings are taken back (`contacts_of` adds nothing else
        // than them and the failovers).
        let (warnings, suppressed) = (d.warnings.len(), d.suppressed);
        let excluded = self.contacts_of(
            self.aor_key,
            d,
            out,
            false,
            // One even at the branch limit: `round_from` then says why none goes.
            self.room(d.mode).max(1),
        );
        d.warnings.truncate(warnings);
        d.suppressed = suppressed;
        excluded
    }

    /// Whether a branch of this round that failed was sent to a target of
    /// the stored forwarding (or to a contact of it, for a local AOR).
    pub(super) fn stored_target_failed<'b>(
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
            // A target named by its instance failed if its registration did.
            if self
                .registration_of(t)
                .is_some_and(|r| uri::parse(r.uri()).is_ok_and(|ru| hit(&ru)))
            {
                return true;
            }
            let Ok(u) = uri::parse(t.uri.as_bytes()) else {
                return false;
            };
            if hit(&u) {
                return true;
            }
            self.host.is_self(u.host, u.port)
                && self.host.lookup(&u.aor()).is_ok_and(|regs| {
                    regs.iter()
                        .any(|r| uri::parse(r.uri()).is_ok_and(|ru| hit(&ru)))
                })
        })
    }

    /// A branch to `uri` built from registration `r` as `lookup()`
    /// builds it (see [`take_branch`]); its bytes in a buffer of the
    /// host's. `None`: `r`'s Path does not parse.
    pub(super) fn branch_of(
        &self,
        uri: &[u8],
        r: &Registration,
        q: Option<u16>,
    ) -> Option<BranchOut> {
        let hop = path_hop(r, self.cfg().path_check_local, self.host).ok()?;
        let mut b = copy_branch(r, hop.as_ref(), self.host);
        // Usually the same bytes: the registration's URI is in the buffer.
        if uri != r.uri() {
            b.parts.push(BR_URI, uri);
        }
        b.q = q;
        Some(b)
    }

    /// Whether branches get History-Info or Diversion.
    pub(super) fn history(&self) -> bool {
        self.cfg().history_info || self.cfg().diversion
    }

    /// How many branches a round may add: one in serial mode, up to
    /// `max_branches` in parallel, never past Kamailio's branch limit.
    pub(super) fn room(&self, mode: ForkMode) -> usize {
        let room = self.engine.branch_limit.saturating_sub(self.branches.len());
        match mode {
            ForkMode::Serial => 1,
            ForkMode::Parallel => self.cfg().max_branches as usize,
        }
        .min(room)
    }

    /// Builds the round from the first tier that is not empty.
    pub(super) fn round_from(
        &self,
        candidates: Candidates<'_>,
        d: &mut Decision,
        reason: Reason,
    ) -> (Verdict, Reason) {
        let take = self.room(d.mode);
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
