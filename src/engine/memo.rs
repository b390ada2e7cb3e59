//! What a transaction must remember between failure rounds that Kamailio's
//! tm does not keep: tm keeps every branch's Request-URI and status, but it
//! drops the replies of earlier rounds once new branches are sent
//! (`failure_reply_mode`), so the Contacts of an earlier 3xx that are still
//! to be tried, and the number of redirects already followed, would be lost.
//!
//! The engine writes this memo into a decision when the next round could
//! not derive it (an empty memo means: no Contact pending, and as many
//! redirects followed as the transaction has earlier 3xx replies, which
//! the next round counts itself; so a followed 302 or a failover keeps
//! nothing); the module keeps it in a
//! transaction XAVP (shared memory, seen by whichever process runs the next
//! failure round) and hands it back. It is a few short text lines, read
//! leniently and bounded: a damaged memo only costs the pending Contacts.
//!
//! With History-Info or Diversion on, the memo also carries their entries
//! (`h` and `p` lines after these, written and read by [`super::history`];
//! this reader skips them). Such a memo is never empty; when the engine's
//! own part could be derived it starts with [`DERIVED`] (`pr1 -`), which
//! the next round reads as an empty memo.

use crate::forwarding::ForwardTarget;
use crate::uri::MAX_URI_LEN;

/// Most pending targets a memo keeps.
pub const MAX_PENDING: usize = 256;

/// The memo of one transaction.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Memo {
    /// 3xx replies whose Contacts were taken so far (bounded by `max_depth`).
    pub redirects: u32,
    /// Contacts of earlier 3xx replies, latest reply first, best q first.
    pub pending: Vec<ForwardTarget>,
}

const MAGIC: &str = "pr1";

/// The first line of a memo that only carries History-Info lines (see
/// [`super::history`]): the engine's own part is derived from the
/// transaction, as with an empty memo.
pub(crate) const DERIVED: &[u8] = b"pr1 -\n";

/// Whether the engine's part of `memo` is to be derived from the
/// transaction (an empty memo, or one that starts with [`DERIVED`]).
pub(crate) fn is_derived(memo: &[u8]) -> bool {
    memo.is_empty() || memo.starts_with(DERIVED)
}

impl Memo {
    /// Reads a memo; empty or unreadable input gives an empty memo, and bad
    /// lines are skipped.
    pub fn decode(bytes: &[u8]) -> Memo {
        let Ok(text) = std::str::from_utf8(bytes) else {
            return Memo::default();
        };
        let mut lines = text.lines();
        let redirects = match lines.next().and_then(|l| l.split_once(' ')) {
            Some((MAGIC, n)) => n.parse().unwrap_or(0),
            _ => return Memo::default(),
        };
        let pending = lines
            .filter_map(|l| {
                let (q, uri) = l.split_once(' ')?;
                let q = match q {
                    "-" => None,
                    q => Some(q.parse::<u16>().ok().filter(|q| *q <= 1000)?),
                };
                (!uri.is_empty() && uri.len() <= MAX_URI_LEN && !uri.contains(' ')).then(|| {
                    ForwardTarget {
                        uri: uri.to_string(),
                        q,
                        instance: None,
                    }
                })
            })
            .take(MAX_PENDING)
            .collect();
        Memo { redirects, pending }
    }

    /// Writes the memo.
    pub fn encode(&self) -> Vec<u8> {
        let parts: Vec<(&[u8], Option<u16>)> = self
            .pending
            .iter()
            .map(|t| (t.uri.as_bytes(), t.q))
            .collect();
        Memo::encode_parts(self.redirects, &parts)
    }

    /// Writes a memo from borrowed parts (no intermediate copies). URIs
    /// with a space, a line break or another control character cannot be
    /// SIP URIs and are left out.
    pub fn encode_parts(redirects: u32, pending: &[(&[u8], Option<u16>)]) -> Vec<u8> {
        Memo::encode_iter(redirects, pending.iter().copied())
    }

    /// [`Memo::encode_parts`] over any (cloneable) iterator of parts, so
    /// that the engine needs no intermediate vector.
    pub(crate) fn encode_iter<'u>(
        redirects: u32,
        pending: impl Iterator<Item = (&'u [u8], Option<u16>)> + Clone,
    ) -> Vec<u8> {
        let mut out = Vec::new();
        Memo::encode_into(&mut out, redirects, pending);
        out
    }

    /// [`Memo::encode_iter`] into `out` (cleared first), reusing its buffer.
    pub(crate) fn encode_into<'u>(
        out: &mut Vec<u8>,
        redirects: u32,
        pending: impl Iterator<Item = (&'u [u8], Option<u16>)> + Clone,
    ) {
        let size: usize = pending
            .clone()
            .take(MAX_PENDING)
            .map(|(u, _)| u.len() + 6)
            .sum();
        out.clear();
        out.reserve(16 + size);
        out.extend_from_slice(MAGIC.as_bytes());
        out.push(b' ');
        push_decimal(out, redirects);
        out.push(b'\n');
        for (uri, q) in pending.take(MAX_PENDING) {
            // A fold without early exit, one comparison a byte: the
            // compiler vectorises it. (Space, CR, LF and the other
            // controls are in no SIP URI.)
            let bad = uri.iter().fold(false, |bad, &c| bad | (c <= b' '));
            if uri.is_empty() || bad {
                continue;
            }
            match q {
                Some(q) => push_decimal(out, u32::from(q)),
                None => out.push(b'-'),
            }
            out.push(b' ');
            out.extend_from_slice(uri);
            out.push(b'\n');
        }
    }
}

/// Appends `v` in decimal (no formatting machinery on this path).
pub(crate) fn push_decimal(out: &mut Vec<u8>, mut v: u32) {
    // Written from the end of the array, then copied at once (no byte-
    // by-byte extend: History-Info writes several per request).
    let mut digits = [0u8; 10];
    let mut n = digits.len();
    loop {
        n -= 1;
        if let Some(d) = digits.get_mut(n) {
            *d = b'0' + (v % 10) as u8;
        }
        v /= 10;
        if v == 0 || n == 0 {
            break;
        }
    }
    out.extend_from_slice(digits.get(n..).unwrap_or(&[]));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_decimal_writes_every_u32() {
        for v in [0, 1, 9, 10, 99, 100, 302, 65535, 1_000_000, u32::MAX] {
            let mut out = b"x".to_vec();
            push_decimal(&mut out, v);
            assert_eq!(out, format!("x{v}").into_bytes());
        }
    }

    #[test]
    fn round_trip() {
        let m = Memo {
            redirects: 2,
            pending: vec![
                ForwardTarget {
                    uri: "sip:a@h;lr".into(),
                    q: Some(500),
                    instance: None,
                },
                ForwardTarget {
                    uri: "sips:b@h".into(),
                    q: None,
                    instance: None,
                },
            ],
        };
        assert_eq!(Memo::decode(&m.encode()), m);
    }

    #[test]
    fn damaged_memos_are_read_leniently() {
        assert_eq!(Memo::decode(b""), Memo::default());
        assert_eq!(Memo::decode(b"\xff\xfe"), Memo::default());
        assert_eq!(Memo::decode(b"xx 3\n- sip:a@h\n"), Memo::default());
        let m = Memo::decode(b"pr1 x\n2000 sip:a@h\n- \nfoo\n- sip:b@h\n");
        assert_eq!(m.redirects, 0);
        assert_eq!(m.pending.len(), 1);
        let many: String = (0..1000).map(|k| format!("- sip:{k}@h\n")).collect();
        assert_eq!(
            Memo::decode(format!("pr1 1\n{many}").as_bytes())
                .pending
                .len(),
            MAX_PENDING
        );
    }
}
