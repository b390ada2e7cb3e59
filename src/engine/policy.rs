//! Target policy (SPEC §3): which URIs a redirect, a stored forwarding
//! or the operator may send a PUSH request to. The same rules admit a 3xx
//! Contact and a provisioned target (`push_redirect.set`).

use std::fmt;

use super::candidates::InlineVec;
use super::context::Ctx;
use super::decision::Decision;
use super::host::Host;
use super::host::Registration;
use crate::config::Config;
use crate::forwarding::{same_instance, ForwardTarget, Forwarding};
use crate::parser::{self, ContactError};
use crate::stats::Stat;
use crate::uri::{self, Scheme, SipUri, UriError};

/// Why policy refuses a well-formed target URI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Not `sip:` or `sips:`.
    UnsupportedScheme,
    /// A `sip:` target for a `sips:` request (RFC 3261 §16.7).
    SipForSips,
    /// The proxy's own address, with no user: not an AOR.
    ProxyWithoutUser,
    /// A foreign domain not in `allowed_domains`.
    DomainNotAllowed,
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Refused::UnsupportedScheme => "only sip: and sips: targets",
            Refused::SipForSips => "sip: target for a sips: request (RFC 3261 16.7)",
            Refused::ProxyWithoutUser => "the proxy itself, with no AOR",
            Refused::DomainNotAllowed => "domain not in allowed_domains",
        })
    }
}

/// Where a target that passes [`check_target`] goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    /// An AOR of this proxy: resolved through the location table.
    Local,
    /// Another host; `allowed`: its domain is in `allowed_domains`
    /// (otherwise only one of the subscriber's own registered contacts
    /// may be there).
    Foreign {
        /// Whether `allowed_domains` holds its domain.
        allowed: bool,
    },
}

/// The part of SPEC §3's target policy that needs no transaction, shared
/// by redirects, stored forwardings and provisioning: `sips`, whether the
/// request (or the AOR) is `sips:`.
pub fn check_target(
    cfg: &Config,
    host: &dyn Host,
    sips: bool,
    u: &SipUri<'_>,
) -> Result<Place, Refused> {
    if sips && u.scheme != Scheme::Sips {
        return Err(Refused::SipForSips);
    }
    let local = host.is_self(u.host, u.port);
    if local && u.user.is_none() {
        return Err(Refused::ProxyWithoutUser);
    }
    Ok(if local {
        Place::Local
    } else {
        Place::Foreign {
            allowed: cfg.domain_allowed_bytes(u.host),
        }
    })
}

/// A target chosen by policy, before resolution of local AORs. It borrows
/// from the reply (or the stored forwarding, or the memo): nothing is
/// copied for Contacts that are not followed.
#[derive(Debug, Clone)]
pub(super) struct Target<'a> {
    pub(super) uri: &'a [u8],
    pub(super) parsed: SipUri<'a>,
    pub(super) q: Option<u16>,
    /// The Contact's `expires` parameter, for learning.
    pub(super) expires: Option<u32>,
    /// How it becomes a next hop.
    pub(super) via: Via,
}

/// How a target becomes a next hop.
#[derive(Debug, Clone, Copy)]
pub(super) enum Via {
    /// A foreign URI (an allowed domain): sent as is.
    Direct,
    /// Its host is the proxy: an AOR, resolved through the location table.
    LocalAor,
    /// One of the subscriber's own registered contacts (index into
    /// [`Ctx::registrations`]): sent with that registration's destination, Path and
    /// socket.
    Own(usize),
}

/// Why a target was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Refusal {
    /// A well-formed URI that policy refuses (scheme, domain, sips, self).
    Policy,
    /// Not a URI at all.
    Malformed,
}

impl<'e, 'r> Ctx<'e, 'r> {
    /// The index of the subscriber's own registration that is `u` (written
    /// `raw`), if any: a redirect to another terminal of the same
    /// subscriber needs no allowed domain.
    pub(super) fn own_registration(&self, raw: &[u8], u: &SipUri<'_>) -> Option<usize> {
        let regs = self.registrations();
        // The same bytes are the same target, and the usual case (a
        // terminal names another's registered Contact): nothing to parse.
        if let Some(i) = regs.iter().position(|r| r.uri == raw) {
            return Some(i);
        }
        // Else compare as targets; the registrations are parsed once per
        // call, however many targets ask.
        self.regs_parsed
            .get_or_init(|| regs.iter().map(|r| uri::parse(&r.uri).ok()).collect())
            .iter()
            .position(|k| k.is_some_and(|k| k.same_target(u)))
    }

    /// Policy for one target URI (SPEC §3). `Ok(None)`: already tried.
    pub(super) fn admit<'a>(
        &self,
        raw: &'a [u8],
        d: &mut Decision,
    ) -> Result<Option<Target<'a>>, Refusal> {
        let refuse = |d: &mut Decision, why: &dyn fmt::Display| {
            d.counters.bump(Stat::TargetsRefused);
            d.warn(|| format!("target {} refused: {why}", lossy(raw)));
            Err(Refusal::Policy)
        };
        let u = match uri::parse(raw) {
            Ok(u) => u,
            Err(UriError::UnsupportedScheme) => return refuse(d, &Refused::UnsupportedScheme),
            Err(e) => {
                let _ = refuse(d, &e);
                return Err(Refusal::Malformed);
            }
        };
        let place = match check_target(self.cfg(), self.host, self.ruri_sips, &u) {
            Ok(p) => p,
            Err(why) => return refuse(d, &why),
        };
        if self.is_tried(&u) {
            d.counters.bump(Stat::LoopsPrevented);
            return Ok(None);
        }
        let via = match place {
            Place::Local => Via::LocalAor,
            Place::Foreign { allowed } => match self.own_registration(raw, &u) {
                Some(i) => Via::Own(i),
                None if allowed => Via::Direct,
                None => return refuse(d, &Refused::DomainNotAllowed),
            },
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
    pub(super) fn select<'a>(
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
                    d.counters.bump(Stat::TargetsRefused);
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
            d.counters.add(
                Stat::ContactsDropped,
                u32::try_from(dropped).unwrap_or(u32::MAX),
            );
            d.warn(|| format!("{dropped} Contacts beyond the max_branches ({cap}) best dropped"));
        }
        (best, malformed)
    }

    /// The targets of a stored forwarding that pass today's policy.
    /// One target as a rule: kept in place, no allocation.
    pub(super) fn forwarding_targets<'a>(
        &self,
        f: &'a Forwarding,
        d: &mut Decision,
    ) -> InlineVec<Target<'a>, 1>
    where
        'e: 'a,
    {
        let mut out: InlineVec<Target<'a>, 1> = InlineVec::new();
        for ft in &f.targets {
            // A terminal named by its instance is its registration now,
            // wherever it registered from since the forwarding was
            // learned; else (no longer registered) the stored URI.
            let raw = match self.registration_of(ft) {
                Some(r) => r.uri.as_slice(),
                None => ft.uri.as_bytes(),
            };
            if let Ok(Some(mut t)) = self.admit(raw, d) {
                if !out.iter().any(|o| o.parsed.same_target(&t.parsed)) {
                    t.q = ft.q;
                    out.push(t);
                }
            }
        }
        out
    }
}

impl<'e> Ctx<'e, '_> {
    /// The subscriber's registration that is the terminal a forwarding
    /// target names by its instance, if it is registered (under the AOR of
    /// this call, the one the forwarding is stored for).
    pub(super) fn registration_of(&self, ft: &ForwardTarget) -> Option<&'e Registration> {
        let ti = ft.instance.as_ref()?;
        if ti.aor != self.aor_key {
            return None;
        }
        self.registrations().iter().find(|r| {
            r.instance
                .as_deref()
                .is_some_and(|i| same_instance(i, ti.instance.as_bytes()))
        })
    }
}

/// At most 256 bytes of `b`, as text, for messages that quote input.
pub(super) fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b.get(..256).unwrap_or(b)).into_owned()
}
