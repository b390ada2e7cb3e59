//! The decision engine: given a PUSH request, the transaction's branches and
//! their replies, the AOR's registrations and the stored forwarding, decide
//! the next branch set (SPEC §2 flows F1–F7 and the rules of §3).
//!
//! Every decision is derived again from the transaction: the targets
//! already tried are its branches' Request-URIs, and the Contacts of
//! earlier 3xx replies still pending and the number of redirects followed
//! come from those branches' replies, or from the [`memo`] the previous
//! round left when tm no longer holds the replies. What the engine keeps
//! between calls is buffers only (a decision filled again, a round's target
//! list, the host's spare byte buffers), never an answer.
//!
//! Targets are tried in tiers; a round takes the first tier that is not
//! empty — one target of it in serial mode, all of it (capped) in parallel:
//! 1. the Contacts of this round's 3xx replies (F1, F4);
//! 2. the Contacts of earlier 3xx replies not tried yet (F4 serial);
//! 3. the provisioned forwarding, after a 3xx without Contact (F5);
//! 4. the AOR's registered terminals not tried yet (F2, F3).
//!
//! Files: [`host`] (what the engine asks of Kamailio), [`decision`] (inputs
//! and the answer), `service` (service keys), `policy` (which targets are
//! admitted), `context` (one call's context; targets into branches),
//! `candidates` (next hops and their loop keys), `rounds` (the tiers),
//! [`memo`] (what a transaction carries between failure rounds),
//! [`history`] (each branch's History-Info and Diversion values).

mod candidates;
mod context;
pub mod decision;
pub mod history;
pub mod host;
pub mod memo;
mod packed;
mod policy;
mod rounds;
mod service;

pub use crate::forwarding::{
    same_instance, ForwardTarget, Forwarding, ForwardingKind, Learned, TargetInstance,
};
pub use crate::stats::{Counters, Stat};
pub use decision::{
    Branch, BranchOut, Decision, FailedRound, Origin, Reason, Request, StoreAction, Verdict,
    MAX_WARNINGS,
};
pub use host::{Host, LookupError, Registration};
pub use policy::{check_target, Place, Refused};
pub use service::{keyed_by_event, service_key, service_key_into, MAX_SERVICE_LEN};

use std::cell::OnceCell;

use crate::config::{Config, ForkMode};
use crate::uri::{self, SipUri};
use context::Ctx;
use service::{service_detail, service_key_of};

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

impl Engine {
    /// An engine with `config` and Kamailio's default branch limit.
    pub fn new(config: Config) -> Self {
        Engine {
            config,
            branch_limit: DEFAULT_BRANCH_LIMIT,
        }
    }

    /// `push_lookup()`: the first target(s) of a new PUSH request, from the
    /// stored forwarding (F6, F7, read through [`Host::stored`]) or the
    /// AOR's registered terminals. `mode` overrides `fork_mode`.
    pub fn push_lookup(
        &self,
        host: &dyn Host,
        req: &Request<'_>,
        mode: Option<ForkMode>,
    ) -> Decision {
        let mut d = Decision::new(ForkMode::Serial);
        self.push_lookup_into(host, req, mode, &mut d);
        d
    }

    /// [`Engine::push_lookup`] into `d`, whose buffers are reused: any
    /// decision will do (everything in it is replaced).
    pub fn push_lookup_into(
        &self,
        host: &dyn Host,
        req: &Request<'_>,
        mode: Option<ForkMode>,
        d: &mut Decision,
    ) {
        let none = FailedRound {
            branches: &[],
            memo: b"",
        };
        self.decide(host, req, &none, mode, d, |ctx, d| {
            self.lookup_round(ctx, d)
        });
    }

    /// `push_redirect()`: the next branch set after a round of branches
    /// failed. The targets tried are derived from every branch of the
    /// transaction; `failed.memo` is the previous round's
    /// [`Decision::memo`] (empty in the first failure round).
    pub fn push_redirect(
        &self,
        host: &dyn Host,
        req: &Request<'_>,
        failed: &FailedRound<'_>,
        mode: Option<ForkMode>,
    ) -> Decision {
        let mut d = Decision::new(ForkMode::Serial);
        self.push_redirect_into(host, req, failed, mode, &mut d);
        d
    }

    /// [`Engine::push_redirect`] into `d`, whose buffers are reused: any
    /// decision will do (everything in it is replaced).
    pub fn push_redirect_into(
        &self,
        host: &dyn Host,
        req: &Request<'_>,
        failed: &FailedRound<'_>,
        mode: Option<ForkMode>,
        d: &mut Decision,
    ) {
        self.decide(host, req, failed, mode, d, |ctx, d| {
            self.redirect_round(ctx, failed, d)
        });
    }

    /// The frame of both functions, around `round`: the decision reset
    /// for `mode`, the untouched and bad requests, the AOR and service keys
    /// written into the decision's own buffers, the call's context, and the
    /// registrations read during the round handed back to the host once it
    /// is done.
    fn decide(
        &self,
        host: &dyn Host,
        req: &Request<'_>,
        failed: &FailedRound<'_>,
        mode: Option<ForkMode>,
        d: &mut Decision,
        round: impl FnOnce(&Ctx<'_, '_>, &mut Decision) -> (Verdict, Reason),
    ) {
        host.recycle_branches(&mut d.branches);
        d.reset(mode.unwrap_or(self.config.fork_mode));
        let mut aor_key = d.aor.take().unwrap_or_default();
        let mut service = d.service.take().unwrap_or_default();
        let (verdict, reason) = match self.prologue(req, d, &mut aor_key, &mut service) {
            Ok(aor) => {
                let regs = OnceCell::new();
                let outcome = {
                    let branches = failed.branches;
                    let mut ctx = Ctx::new(self, host, &aor, &aor_key, &service, branches, &regs);
                    ctx.method_bit = req.method_bit;
                    let outcome = round(&ctx, d);
                    if outcome.0 == Verdict::Branches && ctx.history() {
                        let stored = match outcome.1 {
                            Reason::StoredForwarding | Reason::Provisioned => {
                                ctx.stored().map(|f| f.kind)
                            }
                            _ => None,
                        };
                        let inputs = history::Inputs {
                            cfg: &self.config,
                            host,
                            ruri: req.ruri,
                            incoming: req.history_info,
                            privacy: req.privacy,
                            branches,
                            memo: failed.memo,
                            stored,
                        };
                        history::annotate(&inputs, outcome.1, d);
                    }
                    outcome
                };
                if let Some(regs) = regs.into_inner() {
                    host.recycle(regs);
                }
                d.service = Some(service);
                d.aor = Some(aor_key);
                outcome
            }
            Err(outcome) => outcome,
        };
        d.finish(verdict, reason);
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
                    e
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
        // An empty AOR: none from the previous call (it ended before this).
        if aor_key.is_empty() || !d.aor_of.is_raw(req.ruri) {
            aor.aor_into(aor_key);
            d.aor_of.remember_raw(req.ruri);
        }
        Ok(aor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_decision_filled_again_has_the_aor_of_its_own_request() {
        let engine = Engine::new(Config::default());
        let mut d = Decision::new(ForkMode::Serial);
        for (ruri, has_to_tag) in [
            (&b"sip:u1@example.com"[..], false),
            (b"sip:u1@example.com", false),
            (b"sip:U1@Example.com;transport=tcp", false),
            (b"sip:u2@example.com", true),
            (b"sip:u2@example.com", false),
            (b"tel:+1234", false),
            (b"sip:u2@example.com", false),
            (b"sips:u2@example.com", false),
        ] {
            let req = Request {
                method: "MESSAGE",
                ruri,
                has_to_tag,
                event: None,
                content_type: Some(b"text/plain"),
                method_bit: 0,
                history_info: &[],
                privacy: None,
            };
            engine.push_lookup_into(&NoHost, &req, None, &mut d);
            let fresh = engine.push_lookup(&NoHost, &req, None);
            assert_eq!(d.aor, fresh.aor, "{}", String::from_utf8_lossy(ruri));
        }
    }

    struct NoHost;
    impl Host for NoHost {
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
                history_info: &[],
                privacy: None,
                method_bit: 0,
            };
            engine.push_lookup_into(&NoHost, &req, None, &mut d);
            let fresh = engine.push_lookup(&NoHost, &req, None);
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
