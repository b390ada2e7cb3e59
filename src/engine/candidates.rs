//! Next hops being gathered for a round, their loop-defence keys, and the
//! small inline list the engine's per-call lists use.

use super::decision::{BranchOut, Origin};
use super::host::{Host, Registration};
use crate::parser::{self, PathError};
use crate::uri::{self, SipUri, TargetKey};

/// The Request-URIs of a transaction's branches (Kamailio's default
/// branch limit is 12).
pub(super) type Tried<'a> = InlineVec<SipUri<'a>, 12>;

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
    let Some(path) = r.path.as_deref().filter(|p| !p.is_empty()) else {
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

impl PathHop {
    /// The next hop and the Route set, out of `path` (the registration's
    /// Path the hop was found in).
    fn parts<'p>(&self, path: &'p [u8]) -> (Option<&'p [u8]>, Option<&'p [u8]>) {
        (path.get(self.dst.clone()), path.get(self.route.clone()))
    }
}

/// As [`take_branch`], copying the registration's bytes into the host's
/// buffers (the registration stays as it was); the URI is left empty,
/// for the caller's.
pub(super) fn copy_branch(r: &Registration, hop: Option<&PathHop>, host: &dyn Host) -> BranchOut {
    let copy = |v: Option<&[u8]>| v.filter(|v| !v.is_empty()).map(|v| host.buffer_with(v));
    let (dst_uri, path) = match hop {
        None => (copy(r.received.as_deref()), None),
        Some(h) => {
            let (dst, route) = h.parts(r.path.as_deref().unwrap_or_default());
            (copy(dst), copy(route))
        }
    };
    let instance = copy(r.instance.as_deref());
    BranchOut {
        uri: Vec::new(),
        dst_uri,
        path,
        reg_id: if instance.is_some() { r.reg_id } else { 0 },
        instance,
        socket: r.socket,
        q: r.q,
        flags: r.flags,
        ruid: copy(r.ruid.as_deref()),
        user_agent: copy(r.user_agent.as_deref()),
        conn_id: r.conn_id,
        origin: Origin::Registered,
        history_info: Vec::new(),
        diversion: Vec::new(),
    }
}

/// A branch to a registration's URI built as `lookup()` builds it: its
/// next hop (`hop`, see [`path_hop`], else its received address), its
/// Path as the Route set only with a Path hop, its socket, q, flags,
/// instance (reg-id only with one), ruid, user agent and connection. Its
/// buffers are taken (it is left without them); parts of its Path are
/// copied into the host's buffers.
pub(super) fn take_branch(
    r: &mut Registration,
    hop: Option<PathHop>,
    host: &dyn Host,
) -> BranchOut {
    let some = |v: Option<Vec<u8>>| v.filter(|v| !v.is_empty());
    let (dst_uri, path) = match hop {
        None => (some(r.received.take()), None),
        Some(h) => {
            let p = r.path.as_deref().unwrap_or_default();
            let whole = h.route.start == 0 && h.route.end == p.len();
            let (dst, route) = h.parts(p);
            let dst = dst.map(|d| host.buffer_with(d));
            let route = if whole {
                r.path.take()
            } else {
                route.map(|d| host.buffer_with(d))
            };
            (dst, route)
        }
    };
    let instance = some(r.instance.take());
    BranchOut {
        uri: std::mem::take(&mut r.uri),
        dst_uri,
        path,
        reg_id: if instance.is_some() { r.reg_id } else { 0 },
        instance,
        socket: r.socket,
        q: r.q,
        flags: r.flags,
        ruid: some(r.ruid.take()),
        user_agent: some(r.user_agent.take()),
        conn_id: r.conn_id,
        origin: Origin::Registered,
        history_info: Vec::new(),
        diversion: Vec::new(),
    }
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
