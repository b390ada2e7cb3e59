//! The SIP reply parser (RFC 3261 §7.2, §20.10, §20.19, §25.1): zero-copy over
//! `&[u8]`, one function per ABNF rule, bounded work.
//!
//! [`parse_response`] reads the status line and finds the header block; the
//! Contact values are then produced one at a time by [`Contacts`], an
//! iterator that allocates nothing: a reply with 10,000 Contacts costs
//! linear time and constant memory, and a reply larger than
//! [`MAX_MESSAGE_LEN`] is refused before any work.
//!
//! A malformed Contact value yields one `Err` and the iterator resumes at the
//! next top-level comma, so the good Contacts beside it are still used.

use crate::chars;
use nom::{
    branch::alt,
    bytes::complete::{tag, take_while1, take_while_m_n},
    character::complete::digit1,
    combinator::opt,
    sequence::preceded,
    IResult, Parser,
};
use std::fmt;

/// Largest reply accepted, in bytes (Kamailio's own `BUF_SIZE` is 64 KiB; TCP
/// may carry more). Larger input is refused with [`ParseError::TooLarge`].
pub const MAX_MESSAGE_LEN: usize = 1 << 20;

/// What a malformed `expires` (Contact parameter or header) means: RFC 3261
/// §20.10 and §20.19 say such values SHOULD be read as 3600 seconds.
pub const MALFORMED_EXPIRES: u32 = 3600;

/// Why a reply could not be parsed at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParseError {
    /// The input is longer than [`MAX_MESSAGE_LEN`].
    TooLarge,
    /// The first line is not `SIP/2.0 <code> <reason>`.
    BadStatusLine,
    /// The status code is outside 100..=699.
    BadStatusCode,
}

impl ParseError {
    /// A static description, for log lines.
    pub fn message(self) -> &'static str {
        match self {
            ParseError::TooLarge => "reply larger than the parser's cap",
            ParseError::BadStatusLine => "not a SIP status line",
            ParseError::BadStatusCode => "status code outside 100..699",
        }
    }
}

/// The text of [`ParseError::message`], so a log line can print `{err}`.
impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message())
    }
}

impl std::error::Error for ParseError {}

/// Why one Contact value was skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContactError {
    /// The value does not follow the `contact-param` grammar (bad brackets,
    /// unterminated quotes, a bad `q` or `expires` value, stray bytes...).
    Malformed,
}

impl ContactError {
    /// A static description, for log lines.
    pub fn message(self) -> &'static str {
        match self {
            ContactError::Malformed => "malformed Contact value",
        }
    }
}

/// The text of [`ContactError::message`], so a log line can print `{err}`.
impl fmt::Display for ContactError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message())
    }
}

impl std::error::Error for ContactError {}

/// A parsed reply: the status line, and the headers read in one pass
/// (the Contact values are parsed later, lazily, by [`Response::contacts`]).
#[derive(Debug, Clone, Copy)]
pub struct Response<'a> {
    /// Status code, 100..=699.
    pub code: u16,
    /// Reason phrase as sent.
    pub reason: &'a [u8],
    headers: &'a [u8],
    /// The value of the first Contact header and the headers after it, up
    /// to the end of the last Contact header.
    first_contact: Option<(&'a [u8], &'a [u8])>,
    has_contact: bool,
    expires: Option<u32>,
}

/// One Contact value (`contact-param`), borrowing from the reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Contact<'a> {
    /// The display name (quotes kept for a quoted-string), if any.
    pub display: Option<&'a [u8]>,
    /// The URI as written: inside `<...>` with its URI parameters for a
    /// name-addr, or the bare addr-spec. `*` for the wildcard.
    pub uri: &'a [u8],
    /// `q` in thousandths (0..=1000), if given.
    pub q: Option<u16>,
    /// The `expires` header parameter in seconds, if given.
    pub expires: Option<u32>,
}

impl Contact<'_> {
    /// `Contact: *`, which is only meaningful in a REGISTER.
    pub fn is_wildcard(&self) -> bool {
        self.uri == b"*"
    }
}

/// Parses the status line and locates the headers. The body is ignored.
pub fn parse_response(input: &[u8]) -> Result<Response<'_>, ParseError> {
    if input.len() > MAX_MESSAGE_LEN {
        return Err(ParseError::TooLarge);
    }
    let (rest, (code, reason)) = status_line(input).ok_or(ParseError::BadStatusLine)?;
    if !(100..=699).contains(&code) {
        return Err(ParseError::BadStatusCode);
    }
    let mut r = Response {
        code,
        reason,
        headers: rest,
        first_contact: None,
        has_contact: false,
        expires: None,
    };
    let mut headers = r.headers();
    let mut seen_expires = false;
    // The headers after the last Contact line: what the Contacts iterator
    // needs not read again.
    let mut after_last_contact = 0;
    // Only Contact, m and Expires matter here: other lines are not parsed.
    while let Some((kind, value)) = headers.next_wanted(true) {
        if kind == Wanted::Contact {
            if r.first_contact.is_none() {
                r.first_contact = Some((value, headers.rest));
            }
            after_last_contact = headers.rest.len();
            r.has_contact |= value.iter().any(|&c| !is_lws(c) && c != b',');
        } else if !seen_expires {
            seen_expires = true;
            r.expires = Some(match delta_seconds(value) {
                Ok((&[], s)) => s,
                // RFC 3261 §20.19: a malformed value SHOULD mean 3600.
                _ => MALFORMED_EXPIRES,
            });
        }
    }
    if let Some((value, rest)) = r.first_contact {
        let span = rest.len().saturating_sub(after_last_contact);
        r.first_contact = Some((value, rest.get(..span).unwrap_or(rest)));
    }
    Ok(r)
}

impl<'a> Response<'a> {
    /// Every header as `(name, value)`, folded lines joined (the value may
    /// contain CRLF + whitespace, which the value rules read as LWS).
    pub fn headers(&self) -> Headers<'a> {
        Headers { rest: self.headers }
    }

    /// Every Contact value of every `Contact` / `m` header, in order.
    pub fn contacts(&self) -> Contacts<'a> {
        match self.first_contact {
            Some((value, rest)) => Contacts {
                headers: Headers { rest },
                current: value,
            },
            None => Contacts {
                headers: Headers { rest: b"" },
                current: b"",
            },
        }
    }

    /// Whether the reply has a Contact header with something in it (no
    /// value is parsed).
    pub fn has_contact(&self) -> bool {
        self.has_contact
    }

    /// The (first) `Expires` header in delta-seconds, if well formed.
    /// Values above `u32::MAX` are read as `u32::MAX` (RFC 3261 §20.19).
    pub fn expires(&self) -> Option<u32> {
        self.expires
    }
}

// The status line and the header scan are read by hand, not with nom:
// they run for every reply, and the combinators cost several times as
// many instructions here. Each rule still has its own function.

/// A status code and its reason phrase.
type Status<'a> = (u16, &'a [u8]);

/// `Status-Line = SIP-Version SP Status-Code SP Reason-Phrase CRLF`
/// (one or more SP after the version, as some stacks send): what follows
/// it, the code and the reason.
fn status_line(i: &[u8]) -> Option<(&[u8], Status<'_>)> {
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

/// Iterator over `(name, value)` of a header block; see [`Response::headers`].
#[derive(Debug, Clone)]
pub struct Headers<'a> {
    rest: &'a [u8],
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
    fn next_wanted(&mut self, expires: bool) -> Option<(Wanted, &'a [u8])> {
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

/// The headers that [`parse_response`] and [`Contacts`] read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wanted {
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

/// Iterator over the Contact values of a reply; see [`Response::contacts`].
#[derive(Debug, Clone)]
pub struct Contacts<'a> {
    headers: Headers<'a>,
    current: &'a [u8],
}

impl<'a> Iterator for Contacts<'a> {
    type Item = Result<Contact<'a>, ContactError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            // Between values: `COMMA = SWS "," SWS`; empty list items are
            // tolerated (RFC 7230's #rule leniency).
            let cur = skip_while(self.current, |c| is_lws(c) || c == b',');
            if cur.is_empty() {
                let (_, value) = self.headers.next_wanted(false)?;
                self.current = value;
                continue;
            }
            return Some(match contact_param(cur) {
                Ok((rest, c)) => {
                    let rest = skip_while(rest, is_lws);
                    if rest.is_empty() || rest.first() == Some(&b',') {
                        self.current = rest;
                        Ok(c)
                    } else {
                        self.current = skip_to_comma(rest);
                        Err(ContactError::Malformed)
                    }
                }
                Err(_) => {
                    self.current = skip_to_comma(cur);
                    Err(ContactError::Malformed)
                }
            });
        }
    }
}

/// `contact-param = (name-addr / addr-spec) *(SEMI contact-params)`, or
/// `STAR`.
fn contact_param(i: &[u8]) -> IResult<&[u8], Contact<'_>> {
    if let Ok((rest, _)) = star(i) {
        return Ok((
            rest,
            Contact {
                display: None,
                uri: b"*",
                q: None,
                expires: None,
            },
        ));
    }
    let (mut i, (display, uri)) = alt((name_addr, addr_spec.map(|u| (None, u)))).parse(i)?;
    let mut c = Contact {
        display,
        uri,
        q: None,
        expires: None,
    };
    while let Ok((rest, _)) = semi(i) {
        let (rest, p) = contact_params(rest)?;
        match p {
            ContactParam::Q(q) => c.q = Some(q),
            ContactParam::Expires(e) => c.expires = Some(e),
            ContactParam::Extension => {}
        }
        i = rest;
    }
    Ok((i, c))
}

/// `STAR = SWS "*" SWS`, alone in its value.
fn star(i: &[u8]) -> IResult<&[u8], &[u8]> {
    let (rest, ()) = byte(i, b'*')?;
    let s = i.get(..1).unwrap_or(b"*");
    let after = skip_while(rest, is_lws);
    if after.is_empty() || after.first() == Some(&b',') {
        Ok((rest, s))
    } else {
        Err(nom::Err::Error(nom::error::Error::new(
            i,
            nom::error::ErrorKind::Verify,
        )))
    }
}

/// A display name (if any) and the URI between the angle brackets.
type NameAddr<'a> = (Option<&'a [u8]>, &'a [u8]);

/// A parameter name and its value (if any).
type Param<'a> = (&'a [u8], Option<&'a [u8]>);

/// `name-addr = [ display-name ] LAQUOT addr-spec RAQUOT`
fn name_addr(i: &[u8]) -> IResult<&[u8], NameAddr<'_>> {
    // A display name starts with a token character or a quote, never "<".
    let (i, display) = if i.first() == Some(&b'<') {
        (i, None)
    } else {
        opt(display_name).parse(i)?
    };
    let (i, _) = laquot(i)?;
    let (i, uri) = angle_uri(i)?;
    let (i, _) = raquot(i)?;
    Ok((i, (display, uri)))
}

/// The `addr-spec` between `LAQUOT` and `RAQUOT`, as written (it is judged
/// later): at least one byte above SP, but DEL and angle brackets.
fn angle_uri(i: &[u8]) -> IResult<&[u8], &[u8]> {
    match chars::angle_uri_len(i) {
        0 => Err(nom::Err::Error(nom::error::Error::new(
            i,
            nom::error::ErrorKind::TakeWhile1,
        ))),
        n => Ok((i.get(n..).unwrap_or(b""), i.get(..n).unwrap_or(b""))),
    }
}

/// `display-name = *(token LWS) / quoted-string`
fn display_name(i: &[u8]) -> IResult<&[u8], &[u8]> {
    alt((quoted_string, tokens)).parse(i)
}

/// `*(token LWS)`, at least one token; must be followed by `<`.
fn tokens(i: &[u8]) -> IResult<&[u8], &[u8]> {
    let (mut rest, _) = take_while1(token_char).parse(i)?;
    loop {
        let after_ws = skip_while(rest, is_lws);
        match take_while1::<_, _, nom::error::Error<&[u8]>>(token_char).parse(after_ws) {
            Ok((r, _)) if after_ws.len() < rest.len() => rest = r,
            _ => break,
        }
    }
    let len = i.len() - rest.len();
    Ok((rest, i.get(..len).unwrap_or(b"")))
}

/// `quoted-string = SWS DQUOTE *(qdtext / quoted-pair ) DQUOTE`
fn quoted_string(i: &[u8]) -> IResult<&[u8], &[u8]> {
    let err = || nom::Err::Error(nom::error::Error::new(i, nom::error::ErrorKind::Char));
    if i.first() != Some(&b'"') {
        return Err(err());
    }
    let mut pos = 1;
    loop {
        match i.get(pos) {
            None => return Err(err()),
            Some(b'"') => {
                let (q, rest) = i.split_at(pos + 1);
                return Ok((rest, q));
            }
            // quoted-pair = "\" (%x00-09 / %x0B-0C / %x0E-7F)
            Some(b'\\') => match i.get(pos + 1) {
                Some(&c) if c <= 0x7f && c != b'\r' && c != b'\n' => pos += 2,
                _ => return Err(err()),
            },
            Some(_) => pos += 1,
        }
    }
}

/// `addr-spec = SIP-URI / SIPS-URI / absoluteURI`, bare: without `<>` it
/// cannot contain `,`, `;` or `?`-free ambiguity, so it ends at `;`, `,` or
/// whitespace (RFC 3261 §20.10). The URI itself is judged later.
fn addr_spec(i: &[u8]) -> IResult<&[u8], &[u8]> {
    let (rest, uri) = take_while1(|c: u8| {
        c > b' ' && c != 0x7f && !matches!(c, b';' | b',' | b'<' | b'>' | b'"')
    })
    .parse(i)?;
    // A URI with `?` headers (or `,` / `;`) must be in `<...>`.
    if uri.contains(&b':') && !uri.contains(&b'?') {
        Ok((rest, uri))
    } else {
        Err(nom::Err::Error(nom::error::Error::new(
            i,
            nom::error::ErrorKind::Verify,
        )))
    }
}

enum ContactParam {
    Q(u16),
    Expires(u32),
    Extension,
}

/// `contact-params = c-p-q / c-p-expires / contact-extension`
fn contact_params(i: &[u8]) -> IResult<&[u8], ContactParam> {
    let (i, (name, value)) = generic_param(i)?;
    let bad = || nom::Err::Error(nom::error::Error::new(i, nom::error::ErrorKind::Verify));
    if name.eq_ignore_ascii_case(b"q") {
        match value.map(qvalue) {
            Some(Ok((b"", q))) => Ok((i, ContactParam::Q(q))),
            _ => Err(bad()),
        }
    } else if name.eq_ignore_ascii_case(b"expires") {
        match value.map(delta_seconds) {
            Some(Ok((b"", e))) => Ok((i, ContactParam::Expires(e))),
            // RFC 3261 §20.10: a malformed value SHOULD mean 3600.
            _ => Ok((i, ContactParam::Expires(MALFORMED_EXPIRES))),
        }
    } else {
        Ok((i, ContactParam::Extension))
    }
}

/// `generic-param = token [ EQUAL gen-value ]`,
/// `gen-value = token / host / quoted-string`
fn generic_param(i: &[u8]) -> IResult<&[u8], Param<'_>> {
    let (i, name) = take_while1(token_char).parse(i)?;
    let (i, value) = opt(preceded(equal, gen_value)).parse(i)?;
    Ok((i, (name, value)))
}

/// `gen-value = token / host / quoted-string` (host adds `[`, `]`, `:`).
fn gen_value(i: &[u8]) -> IResult<&[u8], &[u8]> {
    alt((
        quoted_string,
        take_while1(|c| token_char(c) || c == b'[' || c == b']' || c == b':'),
    ))
    .parse(i)
}

/// `qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] )`, in
/// thousandths.
fn qvalue(i: &[u8]) -> IResult<&[u8], u16> {
    let (rest, int) = alt((tag(&b"0"[..]), tag(&b"1"[..]))).parse(i)?;
    let (rest, frac) = opt(preceded(
        tag(&b"."[..]),
        take_while_m_n(0, 3, |c: u8| c.is_ascii_digit()),
    ))
    .parse(rest)?;
    let frac = frac.unwrap_or(b"");
    let mut thousandths = 0u16;
    for k in 0..3 {
        thousandths = thousandths * 10 + frac.get(k).map_or(0, |&d| u16::from(d - b'0'));
    }
    let q = if int == b"1" {
        1000 + thousandths
    } else {
        thousandths
    };
    if q > 1000 {
        return Err(nom::Err::Error(nom::error::Error::new(
            i,
            nom::error::ErrorKind::Verify,
        )));
    }
    Ok((rest, q))
}

/// `delta-seconds = 1*DIGIT`, saturating at `u32::MAX`.
fn delta_seconds(i: &[u8]) -> IResult<&[u8], u32> {
    let (rest, d) = digit1(i)?;
    let v = d.iter().fold(0u32, |acc, &c| {
        acc.saturating_mul(10).saturating_add(u32::from(c - b'0'))
    });
    Ok((rest, v))
}

/// `SEMI = SWS ";" SWS`
fn semi(i: &[u8]) -> IResult<&[u8], ()> {
    let (i, ()) = byte(skip_while(i, is_lws), b';')?;
    Ok((skip_while(i, is_lws), ()))
}

/// `EQUAL = SWS "=" SWS`
fn equal(i: &[u8]) -> IResult<&[u8], ()> {
    let (i, ()) = byte(skip_while(i, is_lws), b'=')?;
    Ok((skip_while(i, is_lws), ()))
}

/// `LAQUOT = SWS "<"`
fn laquot(i: &[u8]) -> IResult<&[u8], ()> {
    byte(skip_while(i, is_lws), b'<')
}

/// `RAQUOT = ">" SWS`
fn raquot(i: &[u8]) -> IResult<&[u8], ()> {
    let (i, ()) = byte(i, b'>')?;
    Ok((skip_while(i, is_lws), ()))
}

/// One byte `b`, as nom's `tag` would read it (a single-byte tag is the
/// most common rule here, and this is several times cheaper).
fn byte(i: &[u8], b: u8) -> IResult<&[u8], ()> {
    match i.split_first() {
        Some((&c, rest)) if c == b => Ok((rest, ())),
        _ => Err(nom::Err::Error(nom::error::Error::new(
            i,
            nom::error::ErrorKind::Tag,
        ))),
    }
}

/// `token = 1*(alphanum / "-" / "." / "!" / "%" / "*" / "_" / "+" / "`" /
/// "'" / "~" )`
fn token_char(c: u8) -> bool {
    chars::is(c, chars::TOKEN)
}

/// Whitespace inside a (possibly folded) header value.
fn is_lws(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\r' | b'\n')
}

fn skip_while(i: &[u8], f: impl Fn(u8) -> bool) -> &[u8] {
    let n = i.iter().position(|&c| !f(c)).unwrap_or(i.len());
    i.get(n..).unwrap_or(b"")
}

fn trim_lws(v: &[u8]) -> &[u8] {
    let v = skip_while(v, is_lws);
    let end = v.iter().rposition(|&c| !is_lws(c)).map_or(0, |p| p + 1);
    v.get(..end).unwrap_or(b"")
}

/// Resynchronises after a bad value: the rest from the next comma that is
/// outside quotes and angle brackets (or the empty slice).
fn skip_to_comma(i: &[u8]) -> &[u8] {
    let (mut in_quote, mut in_angle, mut escaped) = (false, false, false);
    for (pos, &c) in i.iter().enumerate() {
        if in_quote {
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_quote = false,
                _ => {}
            }
            continue;
        }
        match c {
            b'"' => in_quote = true,
            b'<' => in_angle = true,
            b'>' => in_angle = false,
            b',' if !in_angle => return i.get(pos..).unwrap_or(b""),
            _ => {}
        }
    }
    b""
}

#[cfg(test)]
#[allow(clippy::type_complexity)]
mod tests {
    use super::*;

    fn reply(headers: &str) -> Vec<u8> {
        format!("SIP/2.0 302 Moved Temporarily\r\n{headers}\r\n").into_bytes()
    }

    fn contacts(raw: &[u8]) -> Vec<Result<(String, Option<u16>, Option<u32>), ContactError>> {
        parse_response(raw)
            .unwrap()
            .contacts()
            .map(|c| c.map(|c| (String::from_utf8_lossy(c.uri).into_owned(), c.q, c.expires)))
            .collect()
    }

    #[test]
    fn header_names_match_whole_names_only() {
        // Names that start like Contact, m or Expires are other headers;
        // whitespace before the colon and any case are the same header.
        let raw = reply(
            "Contacts: <sip:no1@h>\r\nContact-X: <sip:no2@h>\r\nMax-Forwards: 70\r\n\
             mx: <sip:no3@h>\r\nExpiresX: 9\r\nM \t: <sip:yes1@h>\r\nCONTACT:<sip:yes2@h>\r\n\
             eXpIrEs : 42\r\nContent-Length: 0\r\n",
        );
        let uris: Vec<String> = contacts(&raw).into_iter().map(|c| c.unwrap().0).collect();
        assert_eq!(uris, ["sip:yes1@h", "sip:yes2@h"]);
        assert_eq!(parse_response(&raw).unwrap().expires(), Some(42));
        // A line that is only a name, or a name and no colon, is no header.
        let raw = reply("Contact\r\nm <sip:no@h>\r\nContact: <sip:yes@h>\r\n");
        let uris: Vec<String> = contacts(&raw).into_iter().map(|c| c.unwrap().0).collect();
        assert_eq!(uris, ["sip:yes@h"]);
    }

    #[test]
    fn header_lines_edges() {
        // Names of seven bytes and shorter ones, at the end of the block or
        // of the input; a lone CR ends the headers like the empty line.
        let rows: &[(&[u8], &[&str], Option<u32>)] = &[
            (b"Contact\r\nm\r\nExpires\r\n\r\n", &[], None),
            (
                b"m:<sip:a@h>\r\nE:1\r\nexpires\t:2\r\n",
                &["sip:a@h"],
                Some(2),
            ),
            (b"Contac: <sip:no@h>\r\nContactt: <sip:no@h>\r\n", &[], None),
            (b"Contact:<sip:a@h>", &["sip:a@h"], None),
            (b"Contact:<sip:a@h>\r", &["sip:a@h"], None),
            (b"Via: x\r\r\nContact: <sip:a@h>\r\n", &["sip:a@h"], None),
            (b"Via: x\n\rContact: <sip:no@h>\r\n", &[], None),
            (b"Via: x\n\r", &[], None),
            (b"Via: x\n\r\n", &[], None),
            (b"\rX: y\r\nContact: <sip:a@h>\r\n", &["sip:a@h"], None),
            (
                b"Contact: <sip:a@h>,\n\t<sip:b@h>\n",
                &["sip:a@h", "sip:b@h"],
                None,
            ),
            (
                b"Contact: <sip:a@h>,\r\n\r\n <sip:body@h>\r\n",
                &["sip:a@h"],
                None,
            ),
            (
                b"CONTACT\x00: <sip:no@h>\r\nC\x0fNTACT: <sip:no@h>\r\n",
                &[],
                None,
            ),
            (b"Expires: 5\r\nExpires: 6\r\n", &[], Some(5)),
        ];
        for (headers, uris, expires) in rows {
            let mut raw = b"SIP/2.0 302 Moved\r\n".to_vec();
            raw.extend_from_slice(headers);
            let r = parse_response(&raw).unwrap();
            let got: Vec<String> = r
                .contacts()
                .map(|c| String::from_utf8_lossy(c.unwrap().uri).into_owned())
                .collect();
            assert_eq!(got, *uris, "{:?}", String::from_utf8_lossy(headers));
            assert_eq!(
                r.expires(),
                *expires,
                "{:?}",
                String::from_utf8_lossy(headers)
            );
            assert_eq!(r.has_contact(), !uris.is_empty());
        }
    }

    #[test]
    fn contacts_after_other_headers_and_folded() {
        // Contact values in several headers, one folded over two lines,
        // other headers between and after them.
        let raw = reply(
            "Contact: <sip:a@h>\r\nCSeq: 1 MESSAGE\r\nm: <sip:b@h>,\r\n <sip:c@h>\r\n\
             Call-ID: x\r\nContent-Length: 0\r\n",
        );
        let uris: Vec<String> = contacts(&raw).into_iter().map(|c| c.unwrap().0).collect();
        assert_eq!(uris, ["sip:a@h", "sip:b@h", "sip:c@h"]);
    }

    #[test]
    fn status_line_table() {
        let rows: &[(&[u8], Result<(u16, &[u8]), ParseError>)] = &[
            (
                b"SIP/2.0 302 Moved Temporarily\r\n\r\n",
                Ok((302, b"Moved Temporarily")),
            ),
            (b"sip/2.0 200 OK\n\n", Ok((200, b"OK"))),
            (b"SIP/2.0 480 \r\n\r\n", Ok((480, b""))),
            (b"SIP/2.0 480\r\n\r\n", Ok((480, b""))),
            (
                b"SIP/2.0 300 Multiple \xc3\xa9\r\n",
                Ok((300, b"Multiple \xc3\xa9")),
            ),
            (b"SIP/2.0 099 Low\r\n\r\n", Err(ParseError::BadStatusCode)),
            (b"SIP/2.0 700 High\r\n\r\n", Err(ParseError::BadStatusCode)),
            (b"SIP/2.0 30 Short\r\n", Err(ParseError::BadStatusLine)),
            (b"SIP/2.0 3020 Long\r\n", Err(ParseError::BadStatusLine)),
            (b"HTTP/1.1 200 OK\r\n", Err(ParseError::BadStatusLine)),
            (
                b"MESSAGE sip:a@b SIP/2.0\r\n",
                Err(ParseError::BadStatusLine),
            ),
            (b"SIP/2.0 200 OK", Err(ParseError::BadStatusLine)),
            (b"", Err(ParseError::BadStatusLine)),
            (b"\xff\xfe\x00", Err(ParseError::BadStatusLine)),
            // The edges of the hand-written rules.
            (b"sIp/2.0 200 OK\r\n", Ok((200, b"OK"))),
            (b"SIP/2.0  200 OK\r\n", Ok((200, b"OK"))),
            (b"SIP/2.0\t200 OK\r\n", Err(ParseError::BadStatusLine)),
            (b"SIP/2.00 200 OK\r\n", Ok((200, b"OK"))),
            (b"SIP/2.0 ", Err(ParseError::BadStatusLine)),
            (b"SIP/2,0 200 OK\r\n", Err(ParseError::BadStatusLine)),
            (b"SIP\x0f2.0 200 OK\r\n", Err(ParseError::BadStatusLine)),
            (b"SIPS/2.0 200 OK\r\n", Err(ParseError::BadStatusLine)),
            (b"SIP/20 200 OK\r\n", Err(ParseError::BadStatusLine)),
            (b"SIP/2. 200 OK\r\n", Err(ParseError::BadStatusLine)),
            (b"SIP/.0 200 OK\r\n", Err(ParseError::BadStatusLine)),
            (b"SIP/12.345   200 OK\r\n", Ok((200, b"OK"))),
            (b"SIP/2.0200 OK\r\n", Err(ParseError::BadStatusLine)),
            (b"SIP/2.0 200\n", Ok((200, b""))),
            (
                b"SIP/2.0 200  two  spaces \r\n",
                Ok((200, b" two  spaces ")),
            ),
            (b"SIP/2.0 200 O\rK\r\n", Err(ParseError::BadStatusLine)),
            (b"SIP/2.0 200 OK\r", Err(ParseError::BadStatusLine)),
            (b"SIP/2.0 200 OK\rX\n", Err(ParseError::BadStatusLine)),
            (b"SIP/2.0 2x0 OK\r\n", Err(ParseError::BadStatusLine)),
            (b"SIP/2.0 200\tOK\r\n", Err(ParseError::BadStatusLine)),
            (
                b"SIP/2.0 302 A long reason phrase, longer than sixteen bytes\r\n",
                Ok((302, b"A long reason phrase, longer than sixteen bytes")),
            ),
        ];
        for (input, want) in rows {
            let got = parse_response(input).map(|r| (r.code, r.reason));
            assert_eq!(&got, want, "{:?}", String::from_utf8_lossy(input));
        }
        let huge = vec![b'a'; MAX_MESSAGE_LEN + 1];
        assert_eq!(parse_response(&huge).err(), Some(ParseError::TooLarge));
    }

    #[test]
    fn headers_fold_and_stop_at_body() {
        let raw = b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h\r\nSubject: a\r\n  b\r\n\r\nContact: <sip:body@x>\r\n";
        let r = parse_response(raw).unwrap();
        let h: Vec<_> = r.headers().collect();
        assert_eq!(h.len(), 2);
        assert_eq!(h[1], (&b"Subject"[..], &b"a\r\n  b"[..]));
        assert_eq!(
            r.contacts().count(),
            0,
            "a Contact in the body is not a header"
        );
    }

    #[test]
    fn contact_name_addr_and_addr_spec() {
        let raw = reply(
            "Contact: \"Bob, \\\"the\\\" <boss>\" <sip:bob@h1;transport=tcp>;q=0.7;expires=60\r\n\
             m: sip:c@h2;q=1, Carol Ann <sips:carol@h3:5061>\r\n\
             CONTACT : <sip:d@h4>;foo=bar;x;q=0.05\r\n",
        );
        assert_eq!(
            contacts(&raw),
            vec![
                Ok(("sip:bob@h1;transport=tcp".into(), Some(700), Some(60))),
                Ok(("sip:c@h2".into(), Some(1000), None)),
                Ok(("sips:carol@h3:5061".into(), None, None)),
                Ok(("sip:d@h4".into(), Some(50), None)),
            ]
        );
        let r = parse_response(&raw).unwrap();
        let first = r.contacts().next().unwrap().unwrap();
        assert_eq!(first.display, Some(&b"\"Bob, \\\"the\\\" <boss>\""[..]));
        let third = r.contacts().nth(2).unwrap().unwrap();
        assert_eq!(third.display, Some(&b"Carol Ann"[..]));
    }

    #[test]
    fn contact_comma_list_with_folding() {
        let raw = reply("Contact: <sip:a@h>;q=0.1 ,\r\n <sip:b@h>;q=0.9,,<sip:c@h>\r\n");
        let got: Vec<_> = contacts(&raw).into_iter().map(|c| c.unwrap().0).collect();
        assert_eq!(got, ["sip:a@h", "sip:b@h", "sip:c@h"]);
    }

    #[test]
    fn malformed_contacts_are_skipped_and_the_rest_kept() {
        let raw = reply(
            "Contact: <sip:a@h;q=0.5, <sip:b@h>\r\n\
             Contact: <sip:c@h>;q=2, \"unterminated <sip:x@h>, <sip:y@h>\r\n\
             Contact: <sip:d@h>;expires=abc, nocolon, <sip:e@h> junk, <sip:f@h>\r\n",
        );
        let got: Vec<_> = contacts(&raw)
            .into_iter()
            .map(|c| c.map(|c| c.0).map_err(|e| e.message()))
            .collect();
        assert_eq!(
            got,
            vec![
                Err("malformed Contact value"), // unclosed '<' swallows to the comma inside
                Err("malformed Contact value"), // q=2 is no qvalue
                Err("malformed Contact value"), // unterminated quote eats the rest
                Ok("sip:d@h".to_string()),      // expires=abc means 3600
                Err("malformed Contact value"), // no scheme
                Err("malformed Contact value"), // stray bytes after the URI
                Ok("sip:f@h".to_string()),
            ]
        );
    }

    #[test]
    fn errors_display_their_message() {
        for e in [
            ParseError::TooLarge,
            ParseError::BadStatusLine,
            ParseError::BadStatusCode,
        ] {
            assert_eq!(e.to_string(), e.message());
        }
        assert_eq!(
            ParseError::BadStatusLine.to_string(),
            "not a SIP status line"
        );
        assert_eq!(
            ContactError::Malformed.to_string(),
            "malformed Contact value"
        );
    }

    #[test]
    fn wildcard_is_recognised() {
        let raw = reply("Contact: *\r\n");
        let r = parse_response(&raw).unwrap();
        assert!(r.contacts().next().unwrap().unwrap().is_wildcard());
    }

    #[test]
    fn qvalue_table() {
        let rows: &[(&[u8], Option<u16>)] = &[
            (b"0", Some(0)),
            (b"0.", Some(0)),
            (b"0.5", Some(500)),
            (b"0.123", Some(123)),
            (b"1", Some(1000)),
            (b"1.000", Some(1000)),
            (b"1.001", None),
            (b"2", None),
            (b".5", None),
        ];
        for (input, want) in rows {
            let got = match qvalue(input) {
                Ok((b"", q)) => Some(q),
                _ => None,
            };
            assert_eq!(got, *want, "{:?}", String::from_utf8_lossy(input));
        }
    }

    #[test]
    fn expires_header() {
        let r = |h: &str| parse_response(&reply(h)).unwrap().expires();
        assert_eq!(r("Expires: 120\r\n"), Some(120));
        assert_eq!(r("expires:  7 \r\n"), Some(7));
        assert_eq!(r("Expires: 99999999999999\r\n"), Some(u32::MAX));
        assert_eq!(r("Expires: soon\r\n"), Some(MALFORMED_EXPIRES));
        assert_eq!(r("Via: x\r\n"), None);
    }

    #[test]
    fn huge_comma_list_is_linear_and_complete() {
        let list: Vec<String> = (0..10_000)
            .map(|k| format!("<sip:t{k}@h>;q=0.{}", k % 10))
            .collect();
        let raw = reply(&format!("Contact: {}\r\n", list.join(",")));
        let r = parse_response(&raw).unwrap();
        assert_eq!(r.contacts().filter(Result::is_ok).count(), 10_000);
    }
}
