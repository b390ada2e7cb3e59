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

// Indexing a [u8; 256] by a u8 (or by `c < 256`) cannot go out of bounds;
// the const fns run at compile time, where `get_mut` is not available.
#[allow(clippy::indexing_slicing)]
const fn table() -> [u8; 256] {
    let mut t = [0u8; 256];
    let mut c = 0usize;
    while c < 256 {
        let b = c as u8;
        if b.is_ascii_alphanumeric() {
            t[c] = TOKEN | UNRESERVED | USER | PASSWORD | PARAM | HNV | HOST;
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

/// The position of the first `needle` in `hay`, eight bytes at a time
/// (SWAR): long header lines are scanned at memory speed, with no
/// dependency on a memchr crate.
pub fn find_byte(hay: &[u8], needle: u8) -> Option<usize> {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    let pattern = LO.wrapping_mul(u64::from(needle));
    let mut chunks = hay.chunks_exact(8);
    let mut base = 0;
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let x = u64::from_le_bytes(word) ^ pattern;
        // A zero byte in x is a match; this is exact for the lowest one.
        let found = x.wrapping_sub(LO) & !x & HI;
        if found != 0 {
            return Some(base + (found.trailing_zeros() / 8) as usize);
        }
        base += 8;
    }
    chunks
        .remainder()
        .iter()
        .position(|&c| c == needle)
        .map(|p| base + p)
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
                assert_eq!(find_byte(h, needle), h.iter().position(|&c| c == needle));
            }
        }
        assert_eq!(find_byte(b"", b'x'), None);
        assert_eq!(
            find_byte(b"\x80\x80\x80\x80\x80\x80\x80\x80\x81\n", b'\n'),
            Some(9)
        );
    }

    #[test]
    fn classes_match_the_grammar() {
        for c in 0..=255u8 {
            let alnum = c.is_ascii_alphanumeric();
            assert_eq!(is(c, TOKEN), alnum || b"-.!%*_+`'~".contains(&c), "{c}");
            assert_eq!(is(c, UNRESERVED), alnum || b"-_.!~*'()".contains(&c), "{c}");
            assert_eq!(is(c, HOST), alnum || c == b'-' || c == b'.', "{c}");
            assert_eq!(
                is(c, USER),
                is(c, UNRESERVED) || b"%&=+$,;?/".contains(&c),
                "{c}"
            );
        }
    }
}
