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
use std::fmt;

mod contact;
mod headers;

use contact::delta_seconds;
pub use contact::Contacts;
pub use headers::Headers;
use headers::{status_line, Wanted};

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

/// A Path that does not parse as `path-value *(COMMA path-value)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PathError;

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("malformed Path")
    }
}

/// Largest Path read, in bytes (usrloc keeps a few hundred).
pub const MAX_PATH_LEN: usize = 8192;

/// The first hop of a registration's Path (RFC 3327: `path-value
/// *(COMMA path-value)`, `path-value = name-addr *(SEMI rr-param)`), as
/// Kamailio's `get_path_dst_uri()` reads it: the URI inside its first
/// name-addr, and the Path values after it (empty: none). The whole Path
/// must parse, as Kamailio's `parse_rr_body()` requires; longer than
/// [`MAX_PATH_LEN`] is refused.
pub fn path_first_hop(path: &[u8]) -> Result<(&[u8], &[u8]), PathError> {
    if path.len() > MAX_PATH_LEN {
        return Err(PathError);
    }
    let (mut i, first) = contact::rec_route(skip_while(path, is_lws)).map_err(|_| PathError)?;
    let mut rest: &[u8] = b"";
    loop {
        i = skip_while(i, is_lws);
        match i.split_first() {
            None => return Ok((first, rest)),
            Some((b',', after)) => {
                let after = skip_while(after, is_lws);
                if rest.is_empty() {
                    rest = after;
                }
                let (next, _) = contact::rec_route(after).map_err(|_| PathError)?;
                i = next;
            }
            Some(_) => return Err(PathError),
        }
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

#[cfg(test)]
#[allow(clippy::type_complexity)]
mod tests {
    use super::contact::qvalue;
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
