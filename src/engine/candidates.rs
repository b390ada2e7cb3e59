//! Next hops being gathered for a round, their loop-defence keys, and the
//! small inline list the engine's per-call lists use.

use super::decision::{
    BranchOut, Origin, BR_DST, BR_INSTANCE, BR_PATH, BR_RUID, BR_URI, BR_USER_AGENT,
};
use super::host::{
    Host, Registration, REG_INSTANCE, REG_PATH, REG_RECEIVED, REG_RUID, REG_URI, REG_USER_AGENT,
};
use super::packed::Packed;
use crate::parser::{self, PathError};
use crate::uri::{self, SipUri, TargetKey};

/// The Request-URIs of a transaction's branches: four in place (a
/// transaction of serial rounds or a small fork; Kamailio's default
/// branch limit, 12, spills the rest), small enough to move cheaply.
pub(super) type Tried<'a> = InlineVec<SipUri<'a>, 4>;

/// Fully resolved next hops, best first: the branches and, beside them,
/// their keys.
#[derive(Debug)]
pub(super) struct Candidates<'k> {
    pub(super) out: Vec<BranchOut>,
    keys: InlineVec<Key<'k>, 4>,
}

impl<'k> Candidates<'k> {
    /// An empty list that fills `buf` (cleared; its capacity is reused).
    pub(super) fn with_buffer(mut buf: Vec<BranchOut>) -> Self {
        buf.clear();
        Candidates {
            out: buf,
            keys: InlineVec::new(),
        }
    }

    /// Its buffer, emptied: a tier that yields nothing gives it back to
    /// the decision, for the next tier to fill (no allocation then).
    pub(super) fn into_buffer(self) -> Vec<BranchOut> {
        let mut out = self.out;
        out.clear();
        out
    }

    pub(super) fn len(&self) -> usize {
        self.out.len()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.out.is_empty()
    }

    pub(super) fn push(&mut self, out: BranchOut, key: Key<'k>) {
        self.out.push(out);
        self.keys.push(key);
    }

    /// Adds a next hop unless one with the same key is there already.
    pub(super) fn push_unique(&mut self, out: BranchOut, key: Key<'k>) {
        if !self.keys.iter().any(|k| k.same(&key)) {
            self.push(out, key);
        }
    }
}

/// The loop-defence identity of a candidate: a parsed URI borrowed from
/// the reply or a registration when one lives long enough (no
/// allocation), else an owned [`TargetKey`].
#[derive(Debug, Clone)]
pub(super) enum Key<'k> {
    Uri(SipUri<'k>),
    Owned(TargetKey),
    /// In a list that is never merged with another (one AOR's registered
    /// terminals): matches nothing.
    Unkeyed,
}

impl Key<'_> {
    /// Whether both are the same target, as their [`TargetKey`]s would
    /// compare.
    pub(super) fn same(&self, other: &Key<'_>) -> bool {
        match (self, other) {
            (Key::Uri(a), Key::Uri(b)) => a.same_target(b),
            (Key::Owned(k), Key::Uri(u)) | (Key::Uri(u), Key::Owned(k)) => k.matches(u),
            (Key::Owned(a), Key::Owned(b)) => a == b,
            (Key::Unkeyed, _) | (_, Key::Unkeyed) => false,
        }
    }
}

/// Where a branch to a registration goes when it has a Path hop, as
/// byte ranges of its Path: the next hop (the URI of the first Path hop,
/// or of the second when the first is this proxy and registrar's
/// `path_check_local` is on) and the Path from that hop on, the branch's
/// Route set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct PathHop {
    dst: std::ops::Range<usize>,
    route: std::ops::Range<usize>,
}

/// The next hop `lookup()` picks for registration `r` (registrar's
/// `lookup_helper()`): `Ok(Some)` a Path hop; `Ok(None)` no Path, or
/// only a local hop (the received address, if any, then); `Err` a Path
/// that does not parse (registrar skips such a contact).
pub(super) fn path_hop(
    r: &Registration,
    path_check_local: bool,
    host: &dyn Host,
) -> Result<Option<PathHop>, PathError> {
    let Some(path) = r.path() else {
        return Ok(None);
    };
    let at = |part: &[u8]| {
        let start = part.as_ptr() as usize - path.as_ptr() as usize;
        start..start + part.len()
    };
    let (first, rest) = parser::path_first_hop(path)?;
    if path_check_local {
        let u = uri::parse(first).map_err(|_| PathError)?;
        // check_self(host, 0, 0): any port of ours.
        if host.is_self(u.host, None) {
            if rest.is_empty() {
                return Ok(None);
            }
            let (second, _) = parser::path_first_hop(rest)?;
            return Ok(Some(PathHop {
                dst: at(second),
                route: at(rest),
            }));
        }
    }
    Ok(Some(PathHop {
        dst: at(first),
        route: 0..path.len(),
    }))
}

/// The strings of a branch to registration `r` (as spans of `r`'s
/// buffer), as `lookup()` builds it: the registration's URI; its next
/// hop, `hop` (see [`path_hop`]) or else its received address; its Path
/// as the Route set only with a Path hop; its instance, ruid and user
/// agent.
fn branch_parts(r: &Registration, hop: Option<&PathHop>) -> Packed<6> {
    let at = |range: &std::ops::Range<usize>| {
        let (start, _) = r.parts.span(REG_PATH);
        let s = start as usize;
        match (u32::try_from(s + range.start), u32::try_from(s + range.end)) {
            (Ok(a), Ok(b)) => (a, b),
            _ => (0, 0),
        }
    };
    let (dst, route) = match hop {
        None => (r.parts.span(REG_RECEIVED), (0, 0)),
        Some(h) => (at(&h.dst), at(&h.route)),
    };
    let mut out = r.parts.copied_into(Vec::new());
    out.set_span(BR_URI, r.parts.span(REG_URI));
    out.set_span(BR_DST, dst);
    out.set_span(BR_PATH, route);
    out.set_span(BR_INSTANCE, r.parts.span(REG_INSTANCE));
    out.set_span(BR_RUID, r.parts.span(REG_RUID));
    out.set_span(BR_USER_AGENT, r.parts.span(REG_USER_AGENT));
    out
}

/// A branch to registration `r`, its strings in `parts`.
fn branch(r: &Registration, parts: Packed<6>) -> BranchOut {
    let has_instance = parts.opt(BR_INSTANCE).is_some();
    BranchOut {
        parts,
        reg_id: if has_instance { r.reg_id } else { 0 },
        socket: r.socket,
        q: r.q,
        flags: r.flags,
        conn_id: r.conn_id,
        origin: Origin::Registered,
        history_info: Vec::new(),
        diversion: Vec::new(),
    }
}

/// As [`take_branch`], copying the registration's bytes into a buffer of
/// the host's (the registration stays as it was).
pub(super) fn copy_branch(r: &Registration, hop: Option<&PathHop>, host: &dyn Host) -> BranchOut {
    let parts = branch_parts(r, hop).copied_into(host.buffer_with(r.parts.bytes()));
    branch(r, parts)
}

/// A branch to a registration's URI built as `lookup()` builds it: its
/// next hop (`hop`, see [`path_hop`], else its received address), its
/// Path as the Route set only with a Path hop, its socket, q, flags,
/// instance (reg-id only with one), ruid, user agent and connection. Its
/// buffer is taken (it is left without strings): every string of the
/// branch is in it already.
pub(super) fn take_branch(r: &mut Registration, hop: Option<PathHop>) -> BranchOut {
    let spans = branch_parts(r, hop.as_ref());
    let parts = spans.copied_into(std::mem::take(&mut r.parts).into_buffer());
    branch(r, parts)
}

/// A list that keeps its first `N` items in place (on the stack) and only
/// allocates beyond them: the engine's per-call lists are short (a few
/// branches, registrations, candidates), and an allocation costs more than
/// the rest of their handling.
#[derive(Debug)]
pub(super) struct InlineVec<T, const N: usize> {
    inline: [Option<T>; N],
    len: usize,
    spill: Vec<T>,
}

impl<T, const N: usize> InlineVec<T, N> {
    pub(super) fn new() -> Self {
        InlineVec {
            inline: std::array::from_fn(|_| None),
            len: 0,
            spill: Vec::new(),
        }
    }

    pub(super) fn push(&mut self, v: T) {
        match self.inline.get_mut(self.len) {
            Some(slot) => {
                *slot = Some(v);
                self.len += 1;
            }
            None => self.spill.push(v),
        }
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.len + self.spill.len()
    }

    /// The items in the order they were pushed.
    pub(super) fn iter(&self) -> impl Iterator<Item = &T> + Clone {
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
    use crate::uri;

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
}
