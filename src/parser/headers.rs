//! The status line and the header block of a reply: lines split at an LF
//! not followed by SP / HTAB, and the few headers the module reads found
//! without reading the names of the others.

use super::{skip_while, token_char, trim_lws};
use crate::chars;
use nom::IResult;

// The status line and the header scan are read by hand, not with nom:
// they run for every reply, and the combinators cost several times as
// many instructions here. Each rule still has its own function.

/// A status code and its reason phrase.
type Status<'a> = (u16, &'a [u8]);

/// `Status-Line = SIP-Version SP Status-Code SP Reason-Phrase CRLF`
/// (one or more SP after the version, as some stacks send): what follows
/// it, the code and the reason.
pub(super) fn status_line(i: &[u8]) -> Option<(&[u8], Status<'_>)> {
    let i = match version_2_0(i) {
        Some(rest) => rest,
        None => sip_version(i)?.strip_prefix(b" ")?,
    };
    let i = skip_while(i, |c| c == b' ');
    let (code, i) = status_code(i)?;
    let (reason, i) = match i.strip_prefix(b" ") {
        Some(i) => reason_phrase(i),
        None => (&b""[..], i),
    };
    Some((crlf(i)?, (code, reason)))
}

/// `SIP-Version = "SIP" "/" 1*DIGIT "." 1*DIGIT` ("SIP" in any case):
/// what follows it.
fn sip_version(i: &[u8]) -> Option<&[u8]> {
    // One word: `c | 0x20` is `s` only for `s` and `S` (likewise `i`,
    // `p`); the slash is compared as it is.
    let (&w, i) = i.split_first_chunk::<4>()?;
    if u32::from_le_bytes(w) | 0x0020_2020 != u32::from_le_bytes(*b"sip/") {
        return None;
    }
    let i = digits1(i)?.strip_prefix(b".")?;
    digits1(i)
}

/// `"SIP/2.0" SP` as nearly every reply starts ("SIP" in any case), as
/// one word: what follows it. `None` means "not that" (see
/// [`sip_version`]).
fn version_2_0(i: &[u8]) -> Option<&[u8]> {
    let (&w, rest) = i.split_first_chunk::<8>()?;
    // `c | 0x20` is `s` only for `s` and `S` (likewise `i`, `p`).
    (u64::from_le_bytes(w) | 0x20_2020 == u64::from_le_bytes(*b"sip/2.0 ")).then_some(rest)
}

/// `1*DIGIT`: what follows the digits.
fn digits1(i: &[u8]) -> Option<&[u8]> {
    let rest = skip_while(i, |c| c.is_ascii_digit());
    (rest.len() < i.len()).then_some(rest)
}

/// `Status-Code = 3DIGIT` (three digits, whatever follows them).
fn status_code(i: &[u8]) -> Option<(u16, &[u8])> {
    let (&d, rest) = i.split_first_chunk::<3>()?;
    d.iter().all(u8::is_ascii_digit).then(|| {
        let code = d
            .iter()
            .fold(0u16, |acc, &c| acc * 10 + u16::from(c - b'0'));
        (code, rest)
    })
}

/// `Reason-Phrase = *(reserved / unreserved / escaped / UTF8-NONASCII /
/// UTF8-CONT / SP / HTAB)` — read as any bytes up to the line end.
fn reason_phrase(i: &[u8]) -> (&[u8], &[u8]) {
    let lf = chars::find_byte(i, b'\n').unwrap_or(i.len());
    let line = i.get(..lf).unwrap_or(i);
    let end = chars::find_byte(line, b'\r').unwrap_or(lf);
    i.split_at(end)
}

/// `CRLF`, also accepting a bare LF as many stacks do: what follows it.
fn crlf(i: &[u8]) -> Option<&[u8]> {
    i.strip_prefix(b"\r\n").or_else(|| i.strip_prefix(b"\n"))
}

/// Iterator over `(name, value)` of a header block; see
/// [`Response::headers`](super::Response::headers).
#[derive(Debug, Clone)]
pub struct Headers<'a> {
    pub(super) rest: &'a [u8],
}

impl<'a> Iterator for Headers<'a> {
    type Item = (&'a [u8], &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let line = self.next_line()?;
            if let Ok((value, name)) = message_header_name(line) {
                return Some((name, trim_lws(value)));
            }
            // Not a header line: skip it, as a tolerant receiver does.
        }
    }
}

impl<'a> Headers<'a> {
    /// The next header line, folded lines joined (None at the empty line
    /// or the end).
    #[inline(always)]
    fn next_line(&mut self) -> Option<&'a [u8]> {
        let rest = self.rest;
        if let [] | [b'\n', ..] | [b'\r', b'\n', ..] = rest {
            // The empty line: the body follows, not headers (and a body
            // that starts with whitespace is no folded continuation).
            self.rest = b"";
            return None;
        }
        // A header line ends at an LF not followed by SP / HTAB (folding).
        let mut from = 0;
        let end = loop {
            let Some(lf) = rest
                .get(from..)
                .and_then(|s| chars::find_byte(s, b'\n'))
                .map(|p| from + p)
            else {
                break rest.len();
            };
            match rest.get(lf + 1) {
                Some(b' ' | b'\t') => from = lf + 1,
                _ => break lf,
            }
        };
        let (line, after) = rest.split_at(end);
        // (The line is not empty: `rest` starts with no LF.) A lone CR at
        // the end is the empty line too.
        if line == b"\r" {
            self.rest = b"";
            return None;
        }
        self.rest = after.get(1..).unwrap_or(b"");
        Some(line)
    }

    /// The next `Contact` / `m` header, or `Expires` too if `expires`:
    /// which one and its value. Lines are split as [`Headers::next_line`]
    /// does, but only the wanted ones: the name is judged at the line
    /// start ([`wanted_name`]), and any other line, or a folded
    /// continuation of one, is skipped to the byte after its next LF.
    pub(super) fn next_wanted(&mut self, expires: bool) -> Option<(Wanted, &'a [u8])> {
        let hay = self.rest;
        let mut rest = hay;
        loop {
            // A line start, or the continuation of a line not wanted.
            // The empty line (or a lone CR at the end): the body follows.
            if let [] | [b'\n', ..] | [b'\r', b'\n', ..] | [b'\r'] = rest {
                break;
            }
            if let Some((kind, value_at)) = wanted_name(rest, expires) {
                // The colon is on this line (no LF before it), so the value
                // runs from it to the line end.
                let (line, after) = split_line(rest);
                self.rest = after;
                return Some((kind, trim_lws(line.get(value_at..).unwrap_or(b""))));
            }
            // A continuation (after LF SP / HTAB) starts with no name, so
            // it is skipped like the line it continues.
            match chars::find_byte(rest, b'\n') {
                Some(lf) => rest = rest.get(lf + 1..).unwrap_or(b""),
                None => break,
            }
        }
        self.rest = b"";
        None
    }
}

/// The first line of `rest` (which is not empty and starts with no LF),
/// folded lines joined, and what follows its LF: the line ends at an LF
/// not followed by SP / HTAB.
#[inline(always)]
fn split_line(rest: &[u8]) -> (&[u8], &[u8]) {
    let mut from = 0;
    loop {
        let Some(lf) = chars::find_byte(rest.get(from..).unwrap_or(b""), b'\n') else {
            return (rest, b"");
        };
        let lf = from + lf;
        let (line, after) = rest.split_at(lf.min(rest.len()));
        match after {
            [_, b' ' | b'\t', ..] => from = lf + 1,
            [_, after @ ..] => return (line, after),
            [] => return (line, after),
        }
    }
}

/// The headers that [`parse_response`](super::parse_response) and
/// [`Contacts`](super::Contacts) read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Wanted {
    /// `Contact` or its compact form `m`.
    Contact,
    /// `Expires`.
    Expires,
}

/// The line that starts `rest` as a `Contact` / `m` header, or an
/// `Expires` one if `expires`: which one, and where its value starts
/// (after the colon). A line is the header `n` when it starts with `n`
/// (any case) followed by `*(SP / HTAB) ":"`, which is what reading its
/// token name and comparing would conclude, without reading the names of
/// the other lines (most do not start with `c`, `m` or `e`). None of the
/// bytes looked at is an LF, so they are all on this line.
fn wanted_name(rest: &[u8], expires: bool) -> Option<(Wanted, usize)> {
    // `c | 0x20` is the lower case of a letter, and equals a lower-case
    // letter only for that letter in either case.
    let (kind, after) = match rest.first()? | 0x20 {
        b'm' => (Wanted::Contact, rest.get(1..)?),
        b'c' => (Wanted::Contact, strip_name7(rest, b"contact")?),
        b'e' if expires => (Wanted::Expires, strip_name7(rest, b"expires")?),
        _ => return None,
    };
    match skip_while(after, |c| c == b' ' || c == b'\t') {
        [b':', value @ ..] => Some((kind, rest.len() - value.len())),
        _ => None,
    }
}

/// What follows `name` (seven lower-case letters) at the start of `line`
/// in any case, if something does: the name is compared as one word (so
/// `line` needs eight bytes; one of seven is no header anyway).
fn strip_name7<'a>(line: &'a [u8], name: &[u8; 7]) -> Option<&'a [u8]> {
    let (&head, _) = line.split_first_chunk::<8>()?;
    let [a, b, c, d, e, f, g] = *name;
    let want = u64::from_le_bytes([a, b, c, d, e, f, g, 0]);
    // Seven letters to lower case, the eighth byte left out.
    let got = (u64::from_le_bytes(head) | 0x0020_2020_2020_2020) & 0x00ff_ffff_ffff_ffff;
    (got == want).then(|| line.get(7..).unwrap_or(b""))
}

/// `header-name HCOLON`, returning the name. `HCOLON = *( SP / HTAB ) ":" SWS`
fn message_header_name(i: &[u8]) -> IResult<&[u8], &[u8]> {
    // By hand: this runs for every header line of every reply.
    let n = i.iter().position(|&c| !token_char(c)).unwrap_or(i.len());
    let (name, rest) = i.split_at(n);
    match skip_while(rest, |c| c == b' ' || c == b'\t').split_first() {
        Some((b':', value)) if n > 0 => Ok((value, name)),
        _ => Err(nom::Err::Error(nom::error::Error::new(
            i,
            nom::error::ErrorKind::Tag,
        ))),
    }
}
