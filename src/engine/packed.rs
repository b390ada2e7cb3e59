//! A few byte strings kept in one buffer: a registration's URI, received
//! address, Path, instance, ruid and user agent, or a branch's. One buffer
//! per registration or branch instead of one per field: a lookup copies
//! each contact into one spare buffer, a branch to a registration takes
//! that buffer over (its next hop and Route set are spans of the Path
//! already in it), and the host gets one buffer back instead of six.

use std::fmt;

/// `N` byte strings, each a span of one buffer (spans may share bytes:
/// a branch's next hop lies inside its Path).
#[derive(Clone)]
pub(crate) struct Packed<const N: usize> {
    bytes: Vec<u8>,
    spans: [(u32, u32); N],
}

impl<const N: usize> Default for Packed<N> {
    fn default() -> Self {
        Packed {
            bytes: Vec::new(),
            spans: [(0, 0); N],
        }
    }
}

impl<const N: usize> Packed<N> {
    /// `strings` one after another in `buf` (emptied first; its capacity
    /// is reused). Past 4 GiB in all (no input comes near it) none is set.
    pub(crate) fn from_strings(mut buf: Vec<u8>, strings: [&[u8]; N]) -> Self {
        buf.clear();
        let mut spans = [(0, 0); N];
        let total: usize = strings.iter().map(|s| s.len()).sum();
        if u32::try_from(total).is_ok() {
            buf.reserve(total);
            let mut at = 0u32;
            for (span, s) in spans.iter_mut().zip(strings) {
                if !s.is_empty() {
                    buf.extend_from_slice(s);
                    // Fits: the total does.
                    let end = at + s.len() as u32;
                    *span = (at, end);
                    at = end;
                }
            }
        }
        Packed { bytes: buf, spans }
    }

    /// The whole of `buf` as string `k`, the others unset.
    pub(crate) fn whole(buf: Vec<u8>, k: usize) -> Self {
        let end = u32::try_from(buf.len()).unwrap_or(0);
        let mut p = Packed {
            bytes: buf,
            spans: [(0, 0); N],
        };
        p.set_span(k, (0, end));
        p
    }

    /// String `k` (empty when unset).
    pub(crate) fn get(&self, k: usize) -> &[u8] {
        match self.spans.get(k) {
            Some(&(s, e)) => self.bytes.get(s as usize..e as usize).unwrap_or_default(),
            None => &[],
        }
    }

    /// String `k`, `None` when empty.
    pub(crate) fn opt(&self, k: usize) -> Option<&[u8]> {
        match self.spans.get(k) {
            Some(&(s, e)) if e > s => self.bytes.get(s as usize..e as usize),
            _ => None,
        }
    }

    /// Where string `k` is in the buffer.
    pub(crate) fn span(&self, k: usize) -> (u32, u32) {
        self.spans.get(k).copied().unwrap_or((0, 0))
    }

    /// Points string `k` at `span` of the buffer (an empty span: unset).
    pub(crate) fn set_span(&mut self, k: usize, span: (u32, u32)) {
        if let Some(s) = self.spans.get_mut(k) {
            *s = span;
        }
    }

    /// Appends `b` to the buffer as string `k`. A buffer that would pass
    /// 4 GiB leaves `k` unset (no input comes near it: usrloc's fields
    /// and SIP messages are bounded far below).
    pub(crate) fn push(&mut self, k: usize, b: &[u8]) {
        let start = self.bytes.len();
        let span = match (u32::try_from(start), u32::try_from(start + b.len())) {
            (Ok(s), Ok(e)) if !b.is_empty() => (s, e),
            _ => (0, 0),
        };
        if span.1 > span.0 {
            self.bytes.extend_from_slice(b);
        }
        self.set_span(k, span);
    }

    /// The whole buffer, every string in it.
    pub(crate) fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The buffer, for the host to reuse.
    pub(crate) fn into_buffer(self) -> Vec<u8> {
        self.bytes
    }

    /// The same strings over `buf`, which holds a copy of this buffer.
    pub(crate) fn copied_into(&self, buf: Vec<u8>) -> Self {
        Packed {
            bytes: buf,
            spans: self.spans,
        }
    }
}

/// Equal when every string is (wherever it lies in the buffer).
impl<const N: usize> PartialEq for Packed<N> {
    fn eq(&self, other: &Self) -> bool {
        (0..N).all(|k| self.get(k) == other.get(k))
    }
}

impl<const N: usize> Eq for Packed<N> {}

impl<const N: usize> fmt::Debug for Packed<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries((0..N).map(|k| String::from_utf8_lossy(self.get(k))))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_share_one_buffer_and_compare_by_content() {
        let mut a: Packed<3> =
            Packed::from_strings(b"junk".to_vec(), [b"sip:a@h", b"", b"<sip:p;lr>"]);
        assert_eq!(a.get(0), b"sip:a@h");
        assert_eq!(a.opt(1), None);
        assert_eq!(a.get(2), b"<sip:p;lr>");
        assert_eq!(a.bytes(), b"sip:a@h<sip:p;lr>");
        // A span inside another string.
        a.set_span(1, (8, 15));
        assert_eq!(a.get(1), b"sip:p;l");
        let mut b: Packed<3> = Packed::default();
        b.push(2, b"<sip:p;lr>");
        b.push(1, b"sip:p;l");
        b.push(0, b"sip:a@h");
        assert_eq!(a, b);
        let c = a.copied_into(a.bytes().to_vec());
        assert_eq!(c, a);
        b.push(0, b"sip:b@h");
        assert_ne!(a, b);
        // Out of range: nothing, no panic.
        assert_eq!(a.get(7), b"");
        a.set_span(0, (100, 200));
        assert_eq!(a.get(0), b"");
    }
}
