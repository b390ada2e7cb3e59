//! Next hops being gathered for a round, their loop-defence keys, and the
//! small inline list the engine's per-call lists use.

use super::decision::{BranchOut, Origin};
use super::host::Registration;
use crate::uri::{SipUri, TargetKey};

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

/// A branch to a registration's URI with its own destination, Path,
/// socket and q, its buffers taken (it is left without them).
pub(super) fn take_branch(r: &mut Registration) -> BranchOut {
    let some = |v: Option<Vec<u8>>| v.filter(|v| !v.is_empty());
    BranchOut {
        uri: std::mem::take(&mut r.uri),
        dst_uri: some(r.received.take()),
        path: some(r.path.take()),
        instance: some(r.instance.take()),
        socket: r.socket,
        q: r.q,
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
