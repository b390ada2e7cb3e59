//! The two kinds of round: the first (`push_lookup`) and a failure round
//! (`push_redirect`), each a list of tiers tried in order (see the
//! module documentation of [`super`]).

use std::cell::Cell;

use super::candidates::Candidates;
use super::context::Ctx;
use super::decision::{Branch, Decision, FailedRound, Reason, StoreAction, Verdict};
use super::memo::Memo;
use super::policy::{lossy, Target, Via};
use super::Engine;
use crate::forwarding::{instance_ok, ForwardTarget, ForwardingKind, Learned, TargetInstance};
use crate::parser;
use crate::stats::Stat;

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
fn emptied<'b>(v: Vec<Target<'_>>) -> Vec<Target<'b>> {
    v.into_iter().filter_map(|_| None).collect()
}

impl Round<'_> {
    fn new() -> Self {
        Round {
            targets: emptied(SPARE_TARGETS.try_with(Cell::take).unwrap_or_default()),
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
            let _ = SPARE_TARGETS.try_with(|s| s.set(emptied(v)));
        }
    }
}

impl Engine {
    /// The body of [`Engine::push_lookup`] once the AOR is known: fills
    /// `d` and says how it ends.
    pub(super) fn lookup_round(&self, ctx: &Ctx<'_, '_>, d: &mut Decision) -> (Verdict, Reason) {
        if !ctx.aor_is_local() {
            return (Verdict::NothingLeft, Reason::NoTarget);
        }
        let live = ctx.stored().filter(|f| f.is_live(ctx.host.now()));
        if let Some(f) = live.filter(|f| f.kind != ForwardingKind::Provisioned) {
            // Else the stored target is unreachable now: the terminals.
            if let Some(outcome) = ctx.apply_forwarding(f, d, Reason::StoredForwarding) {
                return outcome;
            }
        }
        let mut c = Candidates::with_buffer(std::mem::take(&mut d.branches));
        match ctx.registered(d, &mut c) {
            Err(()) => (Verdict::Error, Reason::LookupFailed),
            Ok(_) if !c.is_empty() => ctx.round_from(c, d, Reason::Registered),
            // Terminals registered, none of them accepts the method: what
            // registrar's lookup() says then (its users answer 405).
            Ok(excluded) if excluded.seen > 0 => {
                d.branches = c.into_buffer();
                (Verdict::NotAccepted, Reason::MethodNotAccepted)
            }
            // No terminal registered: a provisioned forwarding stands in
            // for the subscriber (F5 otherwise waits for a 3xx).
            Ok(_) => {
                d.branches = c.into_buffer();
                live.filter(|f| f.kind == ForwardingKind::Provisioned)
                    .and_then(|f| ctx.apply_forwarding(f, d, Reason::Provisioned))
                    .unwrap_or((Verdict::NothingLeft, Reason::NoTarget))
            }
        }
    }

    /// The body of [`Engine::push_redirect`] once the AOR is known: fills
    /// `d` and says how it ends. Tier 1 here, the others in
    /// [`Engine::later_tiers`].
    pub(super) fn redirect_round(
        &self,
        ctx: &Ctx<'_, '_>,
        failed: &FailedRound<'_>,
        d: &mut Decision,
    ) -> (Verdict, Reason) {
        let branches = failed.branches;
        let Some(last) = branches.len().checked_sub(1) else {
            return (Verdict::NothingLeft, Reason::Exhausted);
        };
        // Which branches failed in this round (the last one if none is marked).
        let any_marked = branches.iter().any(|b| b.current_round);
        let in_round =
            move |i: usize, b: &Branch<'_>| b.current_round || (!any_marked && i == last);
        let current = || {
            branches
                .iter()
                .enumerate()
                .filter(move |(i, b)| in_round(*i, b))
                .map(|(_, b)| b)
        };
        if current().any(|b| (600..=699).contains(&b.status)) {
            return (Verdict::NothingLeft, Reason::GlobalFailure);
        }
        if current().any(|b| matches!(b.status, 401 | 407)) {
            return (Verdict::NothingLeft, Reason::AuthChallenge);
        }
        // An empty memo: the previous round left nothing to keep, and the
        // redirects followed so far are the earlier rounds' 3xx (see
        // `Ctx::next_memo`).
        let memo = if super::memo::is_derived(failed.memo) {
            Memo {
                redirects: count_u32(
                    branches
                        .iter()
                        .enumerate()
                        .filter(|(i, b)| !in_round(*i, b) && followable_3xx(b.status))
                        .count(),
                ),
                pending: Vec::new(),
            }
        } else {
            Memo::decode(failed.memo)
        };
        let all_3xx = branches.iter().filter(|b| followable_3xx(b.status)).count();
        let initial_budget =
            (self.config.max_depth as usize).saturating_sub(memo.redirects as usize);
        let mut budget = initial_budget;

        let mut round = Round::new();
        for b in current() {
            let resp = redirect_reply(b);
            self.read_failed_branch(ctx, b, resp.as_ref(), &mut budget, &mut round, d);
        }
        let redirects_now = initial_budget - budget;

        // Tier 1: this round's redirect targets.
        // Filled in place, in the decision's own branch buffer
        // (`round_from` hands it back).
        let mut first = Candidates::with_buffer(std::mem::take(&mut d.branches));
        if ctx.resolve(&round.targets, d, &mut first).is_err() {
            return (Verdict::Error, Reason::LookupFailed);
        }
        if !first.is_empty() {
            let outcome = ctx.round_from(first, d, Reason::Redirect);
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
        let failed_round = round.failed || !round.targets.is_empty();
        if !failed_round {
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
            if let Some(f) = ctx.stored().filter(|f| f.kind == ForwardingKind::Temporary) {
                if ctx.stored_target_failed(f, current()) {
                    d.store = StoreAction::Forget;
                }
            }
        }
        self.later_tiers(ctx, &memo, round.saw_3xx_without_contact, d)
    }

    /// Tiers 2 to 4 of a failure round whose own redirects gave nothing.
    fn later_tiers(
        &self,
        ctx: &Ctx<'_, '_>,
        memo: &Memo,
        saw_3xx_without_contact: bool,
        d: &mut Decision,
    ) -> (Verdict, Reason) {
        // Tier 2: Contacts of earlier redirects, latest first (depth-first).
        // They were judged (and their refusals logged and counted) when
        // their 3xx came: judged again here without a word.
        let mut unlogged = Decision::new(d.mode);
        let pending: Vec<Target<'_>> = memo
            .pending
            .iter()
            .filter_map(|t| match ctx.admit(t.uri.as_bytes(), &mut unlogged) {
                Ok(Some(mut target)) => {
                    target.q = t.q;
                    Some(target)
                }
                _ => None,
            })
            .collect();
        let mut c = Candidates::with_buffer(Vec::new());
        match ctx.resolve(&pending, &mut unlogged, &mut c) {
            Err(()) => return (Verdict::Error, Reason::LookupFailed),
            Ok(()) if !c.is_empty() => return ctx.round_from(c, d, Reason::PendingRedirect),
            Ok(()) => {}
        }

        // Tier 3: the provisioned forwarding after a 3xx without Contact.
        if saw_3xx_without_contact {
            let provisioned = ctx
                .stored()
                .filter(|f| f.kind == ForwardingKind::Provisioned && f.is_live(ctx.host.now()));
            if let Some(outcome) =
                provisioned.and_then(|f| ctx.apply_forwarding(f, d, Reason::Provisioned))
            {
                return outcome;
            }
        }

        // Tier 4: the AOR's registered terminals not tried yet.
        if !ctx.aor_is_local() {
            return (Verdict::NothingLeft, Reason::Exhausted);
        }
        let mut c = Candidates::with_buffer(std::mem::take(&mut d.branches));
        match ctx.registered(d, &mut c) {
            Err(()) => (Verdict::Error, Reason::LookupFailed),
            Ok(_) if c.is_empty() => {
                d.branches = c.into_buffer();
                (Verdict::NothingLeft, Reason::Exhausted)
            }
            Ok(_) => {
                d.counters.bump(Stat::Failovers);
                ctx.round_from(c, d, Reason::Failover)
            }
        }
    }

    /// Reads one failed branch of the current round into `round`.
    fn read_failed_branch<'a>(
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
                    d.counters.bump(Stat::LoopsPrevented);
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
                    let refused =
                        d.counters[Stat::TargetsRefused] - before[Stat::TargetsRefused] > malformed;
                    let looped = d.counters[Stat::LoopsPrevented] > before[Stat::LoopsPrevented];
                    if refused && !looped {
                        round.refused_only = true;
                    } else {
                        round.failed = true;
                    }
                    return;
                }
                d.counters.bump(Stat::RedirectsFollowed);
                if d.store == StoreAction::None {
                    d.store = learn(ctx, b, resp, &sel);
                    if d.store != StoreAction::None {
                        d.counters.bump(Stat::ForwardingsLearned);
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

pub(super) fn count_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// The parsed reply of a 3xx branch that may be followed.
fn redirect_reply<'a>(b: &Branch<'a>) -> Option<parser::Response<'a>> {
    if !followable_3xx(b.status) {
        return None;
    }
    parser::parse_response(b.reply?).ok()
}

/// The store action a followed 3xx asks for (F6, F7). A target that is
/// one of the subscriber's registered terminals with a `+sip.instance` is
/// stored with it (SPEC §3: the forwarding follows the terminal).
fn learn(
    ctx: &Ctx<'_, '_>,
    b: &Branch<'_>,
    resp: &parser::Response<'_>,
    sel: &[Target<'_>],
) -> StoreAction {
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
                    instance: match t.via {
                        Via::Own(i) => ctx
                            .registrations()
                            .get(i)
                            .and_then(|r| r.instance())
                            .filter(|i| instance_ok(i))
                            .map(|i| TargetInstance {
                                aor: ctx.aor_key.to_string(),
                                instance: lossy(i),
                            }),
                        _ => None,
                    },
                })
                .collect(),
            learned_from: lossy(b.uri),
            status: b.status,
        }),
    }
}
