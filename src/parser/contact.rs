//! The Contact values of a reply (RFC 3261 §20.10, §25.1), one at a time.

use super::{is_lws, skip_while, token_char, Contact, ContactError, Headers, MALFORMED_EXPIRES};
use crate::chars;
use nom::{
    branch::alt,
    bytes::complete::{tag, take_while1, take_while_m_n},
    character::complete::digit1,
    combinator::opt,
    sequence::preceded,
    IResult, Parser,
};

/// Iterator over the Contact values of a reply; see
/// [`Response::contacts`](super::Response::contacts).
#[derive(Debug, Clone)]
pub struct Contacts<'a> {
    pub(super) headers: Headers<'a>,
    pub(super) current: &'a [u8],
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

/// `rec-route = name-addr *( SEMI rr-param )` (RFC 3261 §25.1; RFC 3327's
/// `path-value` is the same rule): the URI of the name-addr.
pub(super) fn rec_route(i: &[u8]) -> IResult<&[u8], &[u8]> {
    let (mut i, (_, uri)) = name_addr(i)?;
    while let Ok((rest, _)) = semi(i) {
        let (rest, _) = generic_param(rest)?;
        i = rest;
    }
    Ok((i, uri))
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
pub(super) fn qvalue(i: &[u8]) -> IResult<&[u8], u16> {
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
pub(super) fn delta_seconds(i: &[u8]) -> IResult<&[u8], u32> {
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
