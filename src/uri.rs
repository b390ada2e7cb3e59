//! SIP URIs (RFC 3261 §19.1): just what the decision engine needs to judge a
//! target — scheme, user, host, port — parsed zero-copy over `&[u8]`.
//!
//! The parser is strict about the host (a terminal's reply is untrusted) and
//! lenient about parameters and headers, which are kept as raw bytes.

use nom::{
    branch::alt,
    bytes::complete::{tag_no_case, take_while, take_while1},
    character::complete::digit1,
    combinator::{all_consuming, map_res, opt, recognize},
    sequence::{delimited, preceded},
    IResult, Parser,
};

/// Longest URI accepted, in bytes: longer ones are refused, not parsed.
pub const MAX_URI_LEN: usize = 2048;

/// The scheme of a URI.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    /// `sip:`
    Sip,
    /// `sips:`
    Sips,
}

impl Scheme {
    /// The scheme as written in a URI, without the colon.
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Sip => "sip",
            Scheme::Sips => "sips",
        }
    }
}

/// Why a URI was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UriError {
    /// Not `sip:` or `sips:` (for example `tel:`, `http:`, `mailto:`).
    UnsupportedScheme,
    /// Longer than [`MAX_URI_LEN`].
    TooLong,
    /// The bytes do not follow RFC 3261's SIP-URI grammar.
    Malformed,
}

impl UriError {
    /// A static description, for log lines.
    pub fn message(self) -> &'static str {
        match self {
            UriError::UnsupportedScheme => "scheme is not sip: or sips:",
            UriError::TooLong => "URI too long",
            UriError::Malformed => "malformed SIP URI",
        }
    }
}

/// A parsed `sip:`/`sips:` URI, borrowing from its input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SipUri<'a> {
    /// `sip` or `sips`.
    pub scheme: Scheme,
    /// The user part, without password, if any.
    pub user: Option<&'a [u8]>,
    /// The host: a domain name, an IPv4 address or a bracketed IPv6 reference.
    pub host: &'a [u8],
    /// The port, if one is written.
    pub port: Option<u16>,
    /// `;param...` as written (may be empty).
    pub params: &'a [u8],
}

impl<'a> SipUri<'a> {
    /// The comparison key of this URI: two URIs with the same key are the
    /// same target for loop defence. It is deliberately coarser than RFC 3261
    /// §19.1.4 (parameters are ignored, a missing port is the scheme's
    /// default), so that trivial rewrites of a URI cannot evade the
    /// "never the same target twice" rule.
    pub fn key(&self) -> TargetKey {
        let default_port = match self.scheme {
            Scheme::Sip => 5060,
            Scheme::Sips => 5061,
        };
        TargetKey {
            sips: self.scheme == Scheme::Sips,
            user: self.user.map(<[u8]>::to_vec).unwrap_or_default(),
            host: self.host.to_ascii_lowercase(),
            port: self.port.unwrap_or(default_port),
        }
    }

    /// The address-of-record form `scheme:user@host` (host lower-cased, no
    /// port or parameters): the key under which forwardings are stored.
    pub fn aor(&self) -> String {
        let mut s = String::with_capacity(self.host.len() + 32);
        s.push_str(self.scheme.as_str());
        s.push(':');
        if let Some(u) = self.user {
            s.push_str(&String::from_utf8_lossy(u));
            s.push('@');
        }
        s.push_str(&String::from_utf8_lossy(self.host).to_ascii_lowercase());
        s
    }

    /// The host as text (it is ASCII by construction).
    pub fn host_str(&self) -> &'a str {
        // The host grammar admits ASCII only; an empty string cannot occur.
        std::str::from_utf8(self.host).unwrap_or("")
    }
}

/// See [`SipUri::key`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TargetKey {
    sips: bool,
    user: Vec<u8>,
    host: Vec<u8>,
    port: u16,
}

/// Parses a whole `sip:` or `sips:` URI.
pub fn parse(input: &[u8]) -> Result<SipUri<'_>, UriError> {
    if input.len() > MAX_URI_LEN {
        return Err(UriError::TooLong);
    }
    match all_consuming(sip_uri).parse(input) {
        Ok((_, uri)) => Ok(uri),
        Err(_) if !has_sip_scheme(input) => Err(UriError::UnsupportedScheme),
        Err(_) => Err(UriError::Malformed),
    }
}

fn has_sip_scheme(input: &[u8]) -> bool {
    let lower = |n: usize| input.get(..n).map(<[u8]>::to_ascii_lowercase);
    lower(4).as_deref() == Some(b"sip:") || lower(5).as_deref() == Some(b"sips:")
}

/// `SIP-URI / SIPS-URI = ("sip:" / "sips:") [ userinfo ] hostport
/// uri-parameters [ headers ]`
fn sip_uri(i: &[u8]) -> IResult<&[u8], SipUri<'_>> {
    let (i, scheme) = scheme(i)?;
    let (i, user) = opt(userinfo).parse(i)?;
    let (i, (host, port)) = hostport(i)?;
    let (i, params) = recognize(take_while(|c| c != b'?')).parse(i)?;
    if !params.is_empty() && params.first() != Some(&b';') || !params.iter().all(|&c| param_char(c))
    {
        return Err(nom::Err::Error(nom::error::Error::new(
            i,
            nom::error::ErrorKind::Verify,
        )));
    }
    let (i, _headers) = opt(preceded(
        nom::bytes::complete::tag(&b"?"[..]),
        take_while(hnv_char),
    ))
    .parse(i)?;
    Ok((
        i,
        SipUri {
            scheme,
            user,
            host,
            port,
            params,
        },
    ))
}

fn scheme(i: &[u8]) -> IResult<&[u8], Scheme> {
    alt((
        tag_no_case(&b"sips:"[..]).map(|_| Scheme::Sips),
        tag_no_case(&b"sip:"[..]).map(|_| Scheme::Sip),
    ))
    .parse(i)
}

/// `userinfo = ( user / telephone-subscriber ) [ ":" password ] "@"`;
/// returns the user.
fn userinfo(i: &[u8]) -> IResult<&[u8], &[u8]> {
    let (i, user) = take_while1(user_char).parse(i)?;
    let (i, _password) = opt(preceded(
        nom::bytes::complete::tag(&b":"[..]),
        take_while(password_char),
    ))
    .parse(i)?;
    let (i, _) = nom::bytes::complete::tag(&b"@"[..]).parse(i)?;
    Ok((i, user))
}

/// `hostport = host [ ":" port ]`
fn hostport(i: &[u8]) -> IResult<&[u8], (&[u8], Option<u16>)> {
    (
        host,
        opt(preceded(nom::bytes::complete::tag(&b":"[..]), port)),
    )
        .parse(i)
}

/// `host = hostname / IPv4address / IPv6reference`
fn host(i: &[u8]) -> IResult<&[u8], &[u8]> {
    alt((ipv6_reference, hostname)).parse(i)
}

/// `hostname = *( domainlabel "." ) toplabel [ "." ]` — labels of
/// alphanumerics and inner hyphens; IPv4 addresses fit the same shape.
fn hostname(i: &[u8]) -> IResult<&[u8], &[u8]> {
    let (rest, h) =
        take_while1(|c: u8| c.is_ascii_alphanumeric() || c == b'-' || c == b'.').parse(i)?;
    let ok = h.len() <= 253
        && h.first() != Some(&b'.')
        && !h.windows(2).any(|w| w == b"..")
        && h.split(|&c| c == b'.')
            .filter(|l| !l.is_empty())
            .all(|l| l.len() <= 63 && l.first() != Some(&b'-') && l.last() != Some(&b'-'));
    if ok {
        Ok((rest, h))
    } else {
        Err(nom::Err::Error(nom::error::Error::new(
            i,
            nom::error::ErrorKind::Verify,
        )))
    }
}

/// `IPv6reference = "[" IPv6address "]"` (the brackets are kept).
fn ipv6_reference(i: &[u8]) -> IResult<&[u8], &[u8]> {
    recognize(delimited(
        nom::bytes::complete::tag(&b"["[..]),
        take_while1(|c: u8| c.is_ascii_hexdigit() || c == b':' || c == b'.'),
        nom::bytes::complete::tag(&b"]"[..]),
    ))
    .parse(i)
}

/// `port = 1*DIGIT`, 1..=65535.
fn port(i: &[u8]) -> IResult<&[u8], u16> {
    map_res(digit1, |d: &[u8]| {
        std::str::from_utf8(d)
            .ok()
            .and_then(|s| s.parse::<u16>().ok())
            .filter(|&p| p != 0)
            .ok_or(())
    })
    .parse(i)
}

fn unreserved(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"-_.!~*'()".contains(&c)
}

/// `user = 1*( unreserved / escaped / user-unreserved )`
fn user_char(c: u8) -> bool {
    unreserved(c) || b"%&=+$,;?/".contains(&c)
}

fn password_char(c: u8) -> bool {
    unreserved(c) || b"%&=+$,".contains(&c)
}

/// Characters of `uri-parameters` (including the `;` and `=` separators).
fn param_char(c: u8) -> bool {
    unreserved(c) || b"%[]/:&+$;=".contains(&c)
}

/// Characters of `hname` / `hvalue` (including `=` and `&`).
fn hnv_char(c: u8) -> bool {
    unreserved(c) || b"%[]/?:+$=&".contains(&c)
}

#[cfg(test)]
#[allow(clippy::type_complexity)]
mod tests {
    use super::*;

    #[test]
    fn sip_uri_table() {
        let ok: &[(&str, Scheme, Option<&str>, &str, Option<u16>, &str)] = &[
            (
                "sip:u2@example.com",
                Scheme::Sip,
                Some("u2"),
                "example.com",
                None,
                "",
            ),
            (
                "SIP:u2@Example.COM:5070",
                Scheme::Sip,
                Some("u2"),
                "Example.COM",
                Some(5070),
                "",
            ),
            (
                "sips:a@b.c;transport=tls",
                Scheme::Sips,
                Some("a"),
                "b.c",
                None,
                ";transport=tls",
            ),
            (
                "sip:127.0.0.1:5071",
                Scheme::Sip,
                None,
                "127.0.0.1",
                Some(5071),
                "",
            ),
            (
                "sip:u@[::1]:5060;lr",
                Scheme::Sip,
                Some("u"),
                "[::1]",
                Some(5060),
                ";lr",
            ),
            ("sip:alice:pw@h", Scheme::Sip, Some("alice"), "h", None, ""),
            (
                "sip:a;day=tue@h?subject=x",
                Scheme::Sip,
                Some("a;day=tue"),
                "h",
                None,
                "",
            ),
        ];
        for (input, scheme, user, host, port, params) in ok {
            let u = parse(input.as_bytes()).unwrap_or_else(|e| panic!("{input}: {e:?}"));
            assert_eq!(u.scheme, *scheme, "{input}");
            assert_eq!(u.user, user.map(str::as_bytes), "{input}");
            assert_eq!(u.host, host.as_bytes(), "{input}");
            assert_eq!(u.port, *port, "{input}");
            assert_eq!(u.params, params.as_bytes(), "{input}");
        }
    }

    #[test]
    fn refused_uris() {
        let bad: &[(&[u8], UriError)] = &[
            (b"tel:+34600000000", UriError::UnsupportedScheme),
            (b"http://evil.example/", UriError::UnsupportedScheme),
            (b"", UriError::UnsupportedScheme),
            (b"sip:", UriError::Malformed),
            (b"sip:u@", UriError::Malformed),
            (b"sip:u@h:0", UriError::Malformed),
            (b"sip:u@h:65536", UriError::Malformed),
            (b"sip:u@-h", UriError::Malformed),
            (b"sip:u@a..b", UriError::Malformed),
            (b"sip:u@h p", UriError::Malformed),
            (b"sip:u@h\x00", UriError::Malformed),
            (b"sip:u@[::1", UriError::Malformed),
            (b"sip:u@h;a=\xff", UriError::Malformed),
        ];
        for (input, err) in bad {
            assert_eq!(
                parse(input).err(),
                Some(*err),
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
        let long = format!("sip:u@{}.com", "a".repeat(MAX_URI_LEN));
        assert_eq!(parse(long.as_bytes()).err(), Some(UriError::TooLong));
    }

    #[test]
    fn key_ignores_params_case_and_default_port() {
        let k = |s: &str| parse(s.as_bytes()).map(|u| u.key()).ok();
        assert_eq!(
            k("sip:u@EXAMPLE.com"),
            k("sip:u@example.com:5060;transport=udp")
        );
        assert_ne!(k("sip:u@example.com"), k("sips:u@example.com"));
        assert_ne!(k("sip:U@example.com"), k("sip:u@example.com"));
        assert_ne!(k("sip:u@example.com:5070"), k("sip:u@example.com"));
    }

    #[test]
    fn aor_form() {
        let u = parse(b"sip:u1@Example.COM:5060;transport=udp").unwrap();
        assert_eq!(u.aor(), "sip:u1@example.com");
    }
}
