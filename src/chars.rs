//! Character classes of RFC 3261's grammar as one lookup table, so that the
//! parsers test a byte with one load instead of scanning a list.

/// `token` (RFC 3261 §25.1).
pub const TOKEN: u8 = 1;
/// `unreserved` = alphanum / mark.
pub const UNRESERVED: u8 = 1 << 1;
/// Characters of `user`: unreserved / escaped / user-unreserved.
pub const USER: u8 = 1 << 2;
/// Characters of `password`.
pub const PASSWORD: u8 = 1 << 3;
/// Characters of `uri-parameters`, separators included.
pub const PARAM: u8 = 1 << 4;
/// Characters of `hname` / `hvalue`, separators included.
pub const HNV: u8 = 1 << 5;
/// Characters of `hostname` (alphanumerics, `-`, `.`).
pub const HOST: u8 = 1 << 6;
/// Characters of a `domainlabel` / `toplabel` (alphanumerics, `-`).
pub(crate) const LABEL: u8 = 1 << 7;

// Indexing a [u8; 256] by a u8 (or by `c < 256`) cannot go out of bounds;
// the const fns run at compile time, where `get_mut` is not available.
#[allow(clippy::indexing_slicing)]
const fn table() -> [u8; 256] {
    let mut t = [0u8; 256];
    let mut c = 0usize;
    while c < 256 {
        let b = c as u8;
        if b.is_ascii_alphanumeric() {
            t[c] = TOKEN | UNRESERVED | USER | PASSWORD | PARAM | HNV | HOST | LABEL;
        }
        c += 1;
    }
    t = add(t, b"-.!%*_+`'~", TOKEN);
    t = add(t, b"-_.!~*'()", UNRESERVED | USER | PASSWORD | PARAM | HNV);
    t = add(t, b"%&=+$,;?/", USER);
    t = add(t, b"%&=+$,", PASSWORD);
    t = add(t, b"%[]/:&+$;=", PARAM);
    t = add(t, b"%[]/?:+$=&", HNV);
    t = add(t, b"-.", HOST);
    t = add(t, b"-", LABEL);
    t
}

#[allow(clippy::indexing_slicing)]
const fn add(mut t: [u8; 256], chars: &[u8], class: u8) -> [u8; 256] {
    let mut i = 0;
    while i < chars.len() {
        t[chars[i] as usize] |= class;
        i += 1;
    }
    t
}

static TABLE: [u8; 256] = table();

/// Whether `c` is in `class` (one of the constants above, or several or-ed:
/// then any of them).
#[inline]
#[allow(clippy::indexing_slicing)] // a u8 index into 256 entries
pub fn is(c: u8, class: u8) -> bool {
    TABLE[c as usize] & class != 0
}

/// Sixteen-byte compares with SSE2, which every x86_64 has: a header
/// line or a Contact URI costs a few instructions per sixteen bytes.
#[cfg(target_arch = "x86_64")]
mod sse2 {
    use std::arch::x86_64::{
        __m128i, _mm_and_si128, _mm_cmpeq_epi8, _mm_cmpgt_epi8, _mm_cmplt_epi8, _mm_loadu_si128,
        _mm_movemask_epi8, _mm_or_si128, _mm_set1_epi8,
    };

    /// Bit k set when byte k of `c` is `needle`.
    #[inline(always)]
    pub(super) fn eq_mask(c: &[u8; 16], needle: u8) -> u32 {
        // SAFETY: SSE2 is in the x86_64 baseline, so these instructions
        // exist on every target this is compiled for; the load reads the
        // sixteen bytes of `c` (an unaligned load is allowed).
        let m = unsafe {
            let v = _mm_loadu_si128(c.as_ptr().cast::<__m128i>());
            _mm_movemask_epi8(_mm_cmpeq_epi8(v, _mm_set1_epi8(needle as i8)))
        };
        m as u32
    }

    /// Bit k set when byte k of `c` cannot stand between angle brackets:
    /// SP or below, `<`, `>` or DEL (see [`super::angle_uri_len`]).
    #[inline(always)]
    pub(super) fn angle_stop_mask(c: &[u8; 16]) -> u32 {
        // SAFETY: as in `eq_mask`: SSE2 only, and a load of the sixteen
        // bytes of `c`.
        let m = unsafe {
            let v = _mm_loadu_si128(c.as_ptr().cast::<__m128i>());
            let is = |b: u8| _mm_cmpeq_epi8(v, _mm_set1_epi8(b as i8));
            // 0x00..=0x20: not negative as i8 (bytes from 0x80 are) and
            // below 0x21.
            let ctl = _mm_and_si128(
                _mm_cmpgt_epi8(v, _mm_set1_epi8(-1)),
                _mm_cmplt_epi8(v, _mm_set1_epi8(0x21)),
            );
            let stop = _mm_or_si128(
                _mm_or_si128(ctl, is(b'<')),
                _mm_or_si128(is(b'>'), is(0x7f)),
            );
            _mm_movemask_epi8(stop)
        };
        m as u32
    }
}

/// The position of the first `needle` in `hay`: sixteen bytes at a time
/// with SSE2 on x86_64; `find_byte_swar` elsewhere and for inputs
/// shorter than sixteen bytes.
#[cfg(target_arch = "x86_64")]
#[inline]
pub fn find_byte(hay: &[u8], needle: u8) -> Option<usize> {
    let mut blocks = hay.chunks_exact(16);
    let mut base = 0;
    for c in &mut blocks {
        if let Ok(c) = <&[u8; 16]>::try_from(c) {
            let m = sse2::eq_mask(c, needle);
            if m != 0 {
                return Some(base + m.trailing_zeros() as usize);
            }
        }
        base += 16;
    }
    let left = blocks.remainder().len();
    if left == 0 {
        return None;
    }
    // Fewer than sixteen bytes left: the last sixteen of `hay`, without
    // the bytes already searched.
    match hay.last_chunk::<16>() {
        Some(last) => {
            let m = sse2::eq_mask(last, needle) >> (16 - left);
            (m != 0).then(|| base + m.trailing_zeros() as usize)
        }
        None => find_byte_swar(hay, needle),
    }
}

/// See the x86_64 [`find_byte`].
#[cfg(not(target_arch = "x86_64"))]
#[inline]
pub fn find_byte(hay: &[u8], needle: u8) -> Option<usize> {
    find_byte_swar(hay, needle)
}

/// The position of the first `needle` in `hay`, eight bytes at a time
/// (SWAR): long header lines are scanned at memory speed, with no
/// dependency on a memchr crate.
fn find_byte_swar(hay: &[u8], needle: u8) -> Option<usize> {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    let pattern = LO.wrapping_mul(u64::from(needle));
    // A zero byte in x is a match; this is exact for the lowest one.
    let found = |c: &[u8]| {
        let x = word(c) ^ pattern;
        x.wrapping_sub(LO) & !x & HI
    };
    // Two words per step, for instruction-level parallelism.
    let mut pairs = hay.chunks_exact(16);
    let mut base = 0;
    for pair in &mut pairs {
        let (a, b) = pair.split_at(8);
        let (fa, fb) = (found(a), found(b));
        if fa | fb != 0 {
            let (off, f) = if fa != 0 { (0, fa) } else { (8, fb) };
            return Some(base + off + (f.trailing_zeros() / 8) as usize);
        }
        base += 16;
    }
    let mut chunks = pairs.remainder().chunks_exact(8);
    for chunk in &mut chunks {
        let f = found(chunk);
        if f != 0 {
            return Some(base + (f.trailing_zeros() / 8) as usize);
        }
        base += 8;
    }
    chunks
        .remainder()
        .iter()
        .position(|&c| c == needle)
        .map(|p| base + p)
}

/// The length of the run at the start of `i` of bytes that may stand
/// between the angle brackets of a `name-addr`: anything above SP but DEL,
/// `<` and `>`. Sixteen bytes at a time with SSE2 on x86_64 (Contact URIs
/// are scanned for every Contact of every 3xx), `angle_uri_len_swar`
/// elsewhere and for inputs shorter than sixteen bytes.
#[cfg(target_arch = "x86_64")]
pub fn angle_uri_len(i: &[u8]) -> usize {
    let mut rest = i;
    let mut base = 0;
    while let Some((c, tail)) = rest.split_first_chunk::<16>() {
        let m = sse2::angle_stop_mask(c);
        if m != 0 {
            return base + m.trailing_zeros() as usize;
        }
        base += 16;
        rest = tail;
    }
    if rest.is_empty() {
        return base;
    }
    match i.last_chunk::<16>() {
        Some(last) => {
            let m = sse2::angle_stop_mask(last) >> (16 - rest.len());
            if m != 0 {
                base + m.trailing_zeros() as usize
            } else {
                i.len()
            }
        }
        None => angle_uri_len_swar(i),
    }
}

/// See the x86_64 [`angle_uri_len`].
#[cfg(not(target_arch = "x86_64"))]
pub fn angle_uri_len(i: &[u8]) -> usize {
    angle_uri_len_swar(i)
}

/// [`angle_uri_len`] eight bytes at a time (SWAR).
fn angle_uri_len_swar(i: &[u8]) -> usize {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    // A zero byte of `x` flagged, exact for the lowest one.
    let zero = |x: u64| x.wrapping_sub(LO) & !x & HI;
    let mut chunks = i.chunks_exact(8);
    let mut base = 0;
    for chunk in &mut chunks {
        let x = word(chunk);
        // Bytes below 0x21 (exact for the lowest one: no borrow comes from
        // a byte at or above 0x21, and bytes from 0x80 are never flagged).
        let ctl = x.wrapping_sub(LO * 0x21) & !x & HI;
        let stop = ctl
            | zero(x ^ (LO * u64::from(b'<')))
            | zero(x ^ (LO * u64::from(b'>')))
            | zero(x ^ (LO * 0x7f));
        if stop != 0 {
            return base + (stop.trailing_zeros() / 8) as usize;
        }
        base += 8;
    }
    base + chunks
        .remainder()
        .iter()
        .position(|&c| c <= b' ' || matches!(c, b'<' | b'>' | 0x7f))
        .unwrap_or(chunks.remainder().len())
}

/// `a.eq_ignore_ascii_case(b)`, eight bytes at a time (SWAR): host names
/// are compared on every policy check.
pub fn eq_ignore_ascii_case(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    if a.len() < 8 {
        return a.eq_ignore_ascii_case(b);
    }
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    for (x, y) in ca.zip(cb) {
        if lower8(word(x)) != lower8(word(y)) {
            return false;
        }
    }
    // The last eight bytes, overlapping the last whole chunk: no byte loop.
    let tail = a.len() - 8;
    match (a.get(tail..), b.get(tail..)) {
        (Some(x), Some(y)) => lower8(word(x)) == lower8(word(y)),
        _ => false,
    }
}

/// Eight bytes as a little-endian word (`c` has eight bytes).
fn word(c: &[u8]) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(c);
    u64::from_le_bytes(w)
}

/// Appends `b` to `v` ASCII-lower-cased (the host of an AOR key, on
/// every request): one copy, then eight bytes at a time in place (SWAR),
/// the last eight overlapping the last whole word rather than a byte
/// loop (lower-casing twice changes nothing).
pub fn extend_ascii_lowercase(v: &mut Vec<u8>, b: &[u8]) {
    let at = v.len();
    v.extend_from_slice(b);
    let Some(h) = v.get_mut(at..) else {
        return;
    };
    if h.len() < 8 {
        h.make_ascii_lowercase();
        return;
    }
    let lower = |c: &mut [u8]| {
        let w = lower8(word(c)).to_le_bytes();
        c.copy_from_slice(&w);
    };
    let tail = h.len() - 8;
    for c in h.chunks_exact_mut(8) {
        lower(c);
    }
    if let Some(c) = h.get_mut(tail..) {
        lower(c);
    }
}

/// ASCII lower-casing of the eight bytes of `x` at once: `A`..=`Z` get
/// 0x20 added, every other byte (non-ASCII included) is left alone.
fn lower8(x: u64) -> u64 {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    // The low seven bits of each byte; adding below 0x81 cannot carry out.
    let low7 = x & !HI;
    let ge_a = low7 + LO * u64::from(0x80 - b'A');
    let gt_z = low7 + LO * u64::from(0x7f - b'Z');
    let upper = ge_a & !gt_z & !x & HI;
    x | (upper >> 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn find_byte_matches_position() {
        let hay: Vec<u8> = (0..300u32).map(|k| (k * 7 % 251) as u8).collect();
        for needle in [0u8, b'\n', 7, 250, 255, 0x80] {
            for start in 0..20 {
                let h = &hay[start..];
                let want = h.iter().position(|&c| c == needle);
                assert_eq!(find_byte(h, needle), want);
                assert_eq!(find_byte_swar(h, needle), want);
            }
        }
        // The needle at every position of every length (pairs, words, bytes).
        for len in 0..70 {
            for at in 0..len {
                let mut h = vec![b'a'; len];
                h[at] = b'\n';
                if at + 3 < len {
                    h[at + 3] = b'\n';
                }
                assert_eq!(find_byte(&h, b'\n'), Some(at), "{len} {at}");
                assert_eq!(find_byte_swar(&h, b'\n'), Some(at), "{len} {at}");
            }
            assert_eq!(find_byte(&vec![b'a'; len], b'\n'), None);
            assert_eq!(find_byte_swar(&vec![b'a'; len], b'\n'), None);
        }
        assert_eq!(find_byte(b"", b'x'), None);
        assert_eq!(
            find_byte(b"\x80\x80\x80\x80\x80\x80\x80\x80\x81\n", b'\n'),
            Some(9)
        );
    }

    #[test]
    fn angle_uri_len_matches_a_scan() {
        let slow = |i: &[u8]| {
            i.iter()
                .position(|&c| c <= b' ' || matches!(c, b'<' | b'>' | 0x7f))
                .unwrap_or(i.len())
        };
        // Every byte at every position of a 20-byte run, after any prefix.
        for stop in 0..=255u8 {
            for at in 0..20 {
                let mut v = b"sip:t0@partner.exam\xc3\xa9".to_vec();
                v[at] = stop;
                for start in 0..4 {
                    let h = &v[start..];
                    assert_eq!(angle_uri_len(h), slow(h), "{stop} {at} {start}");
                    assert_eq!(angle_uri_len_swar(h), slow(h), "{stop} {at} {start}");
                }
            }
        }
        // Runs of every length, with and without a stop after them.
        for len in 0..70 {
            let mut v = vec![b'x'; len];
            assert_eq!(angle_uri_len(&v), len);
            assert_eq!(angle_uri_len_swar(&v), len);
            v.extend_from_slice(b">;q=1 junk");
            assert_eq!(angle_uri_len(&v), len);
            assert_eq!(angle_uri_len_swar(&v), len);
        }
        assert_eq!(angle_uri_len(b""), 0);
        assert_eq!(angle_uri_len(b"sip:a@b>;q=1"), 7);
        let long = [b'a'; 100];
        assert_eq!(angle_uri_len(&long), 100);
    }

    #[test]
    fn extend_ascii_lowercase_matches_std() {
        // Every byte at every lane of whole words and of the remainder,
        // after what `v` held.
        for len in [0, 1, 7, 8, 9, 15, 16, 17, 24] {
            for at in 0..len {
                for c in 0..=255u8 {
                    let mut a = b"MiXeD.CaSe-HOST.Example.C"[..len].to_vec();
                    a[at] = c;
                    let mut want = b"Keep:".to_vec();
                    want.extend(a.iter().map(u8::to_ascii_lowercase));
                    let mut v = b"Keep:".to_vec();
                    extend_ascii_lowercase(&mut v, &a);
                    assert_eq!(v, want, "{len} {at} {c}");
                }
            }
        }
    }

    #[test]
    fn eq_ignore_ascii_case_matches_std() {
        // Every byte against every byte, at lanes of the whole words, of
        // the overlapping tail and of the short path.
        for x in 0..=255u8 {
            for y in 0..=255u8 {
                for (len, lane) in [(16, 0), (16, 7), (16, 8), (13, 12), (13, 4), (9, 8), (5, 2)] {
                    let mut a = b"pArtner.exAmple!"[..len].to_vec();
                    let mut b = b"PaRTNER.EXaMPLE!"[..len].to_vec();
                    a[lane] = x;
                    b[lane] = y;
                    assert_eq!(
                        eq_ignore_ascii_case(&a, &b),
                        a.eq_ignore_ascii_case(&b),
                        "{x} {y} {len} {lane}"
                    );
                }
            }
        }
        assert!(eq_ignore_ascii_case(b"", b""));
        assert!(!eq_ignore_ascii_case(b"a", b"ab"));
        assert!(eq_ignore_ascii_case(b"EXAMPLE.COM", b"example.com"));
    }

    #[test]
    fn classes_match_the_grammar() {
        for c in 0..=255u8 {
            let alnum = c.is_ascii_alphanumeric();
            assert_eq!(is(c, TOKEN), alnum || b"-.!%*_+`'~".contains(&c), "{c}");
            assert_eq!(is(c, UNRESERVED), alnum || b"-_.!~*'()".contains(&c), "{c}");
            assert_eq!(is(c, HOST), alnum || c == b'-' || c == b'.', "{c}");
            assert_eq!(is(c, LABEL), alnum || c == b'-', "{c}");
            assert_eq!(
                is(c, USER),
                is(c, UNRESERVED) || b"%&=+$,;?/".contains(&c),
                "{c}"
            );
        }
    }
}
