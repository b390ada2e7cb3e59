//! SIP URIs (RFC 3261 §19.1): just what the decision engine needs to judge a
//! target — scheme, user, host, port — parsed zero-copy over `&[u8]`.
//!
//! The parser is strict about the host (a terminal's reply is untrusted) and
//! lenient about parameters and headers, which are kept as raw bytes.

use crate::chars;
use std::fmt;

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

/// The text of [`UriError::message`], so a log line can print `{err}`.
impl fmt::Display for UriError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message())
    }
}

impl std::error::Error for UriError {}

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
        let user = self.user.unwrap_or(b"");
        let mut user_host = Vec::with_capacity(user.len() + self.host.len());
        user_host.extend(unescaped(user));
        let user_len = user_host.len();
        user_host.extend(self.host.iter().map(u8::to_ascii_lowercase));
        TargetKey {
            sips: self.scheme == Scheme::Sips,
            user_len,
            user_host,
            port: self.port.unwrap_or(default_port),
        }
    }

    /// The address-of-record form `scheme:user@host` (host lower-cased, no
    /// port or parameters): the key under which forwardings are stored.
    pub fn aor(&self) -> String {
        let mut s = String::new();
        self.aor_into(&mut s);
        s
    }

    /// [`SipUri::aor`] into `out` (cleared first), reusing its buffer.
    pub fn aor_into(&self, out: &mut String) {
        out.clear();
        let user = self.user.unwrap_or(b"");
        // A parsed URI is ASCII; one built by hand may not be.
        if !(user.is_ascii() && self.host.is_ascii()) {
            return self.aor_lossy_into(out);
        }
        // SAFETY: only ASCII bytes are appended (the scheme, ":", "@" and
        // the user and host, checked above, the host lower-cased), so
        // `out` stays UTF-8, also if a push panics half-way.
        let v = unsafe { out.as_mut_vec() };
        v.reserve("sips:".len() + user.len() + 1 + self.host.len());
        // One constant-length copy per scheme, no memcpy call.
        match self.scheme {
            Scheme::Sip => v.extend_from_slice(b"sip:"),
            Scheme::Sips => v.extend_from_slice(b"sips:"),
        }
        if self.user.is_some() {
            v.extend_from_slice(user);
            v.push(b'@');
        }
        chars::extend_ascii_lowercase(v, self.host);
    }

    /// [`SipUri::aor_into`] of a URI that is not ASCII (built by hand):
    /// U+FFFD for what is not UTF-8.
    #[cold]
    fn aor_lossy_into(&self, out: &mut String) {
        out.push_str(self.scheme.as_str());
        out.push(':');
        if let Some(u) = self.user {
            out.push_str(&String::from_utf8_lossy(u));
            out.push('@');
        }
        let host_at = out.len();
        out.push_str(&String::from_utf8_lossy(self.host));
        if let Some(h) = out.get_mut(host_at..) {
            h.make_ascii_lowercase();
        }
    }

    /// The host as text (it is ASCII by construction).
    pub fn host_str(&self) -> &'a str {
        // The host grammar admits ASCII only; an empty string cannot occur.
        std::str::from_utf8(self.host).unwrap_or("")
    }
}

impl SipUri<'_> {
    /// Whether two URIs are the same target (as their [`SipUri::key`]s
    /// would compare), without allocating.
    pub fn same_target(&self, other: &SipUri<'_>) -> bool {
        // Cheapest first: most pairs differ in port or host.
        self.scheme == other.scheme
            && self.effective_port() == other.effective_port()
            && chars::eq_ignore_ascii_case(self.host, other.host)
            && users_equal(self.user.unwrap_or(b""), other.user.unwrap_or(b""))
    }

    fn effective_port(&self) -> u16 {
        self.port.unwrap_or(match self.scheme {
            Scheme::Sip => 5060,
            Scheme::Sips => 5061,
        })
    }
}

impl TargetKey {
    /// Whether `u` has this key, without allocating.
    pub fn matches(&self, u: &SipUri<'_>) -> bool {
        let (user, host) = self
            .user_host
            .split_at(self.user_len.min(self.user_host.len()));
        self.sips == (u.scheme == Scheme::Sips)
            && self.port == u.effective_port()
            && users_equal(user, u.user.unwrap_or(b""))
            && chars::eq_ignore_ascii_case(host, u.host)
    }
}

/// User parts compare after `%XX` decoding (RFC 3261 §19.1.4: `%62ob` is
/// `bob`), so an escaped spelling cannot evade loop defence. Byte-equal
/// parts (the usual case) are not decoded.
fn users_equal(a: &[u8], b: &[u8]) -> bool {
    a == b || ((a.contains(&b'%') || b.contains(&b'%')) && unescaped(a).eq(unescaped(b)))
}

/// The bytes of `s` with each `%XX` decoded (a malformed escape is kept).
pub fn unescaped(s: &[u8]) -> impl Iterator<Item = u8> + '_ {
    let hex = |c: u8| char::from(c).to_digit(16);
    let mut i = 0;
    std::iter::from_fn(move || {
        let c = *s.get(i)?;
        if c == b'%' {
            if let (Some(h), Some(l)) = (
                s.get(i + 1).and_then(|&c| hex(c)),
                s.get(i + 2).and_then(|&c| hex(c)),
            ) {
                i += 3;
                return u8::try_from(h * 16 + l).ok();
            }
        }
        i += 1;
        Some(c)
    })
}

/// See [`SipUri::key`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TargetKey {
    sips: bool,
    port: u16,
    /// The user part then the lower-cased host, in one allocation.
    user_host: Vec<u8>,
    user_len: usize,
}

/// Parses a whole `sip:` or `sips:` URI.
pub fn parse(input: &[u8]) -> Result<SipUri<'_>, UriError> {
    if input.len() > MAX_URI_LEN {
        return Err(UriError::TooLong);
    }
    let Some((scheme, rest)) = scheme(input) else {
        return Err(if absolute_uri_scheme(input) {
            UriError::UnsupportedScheme
        } else {
            UriError::Malformed
        });
    };
    sip_uri(scheme, rest).ok_or(UriError::Malformed)
}

/// Whether `i` starts like an absoluteURI: `scheme ":"` with
/// `scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )` (RFC 3261 §25.1).
fn absolute_uri_scheme(i: &[u8]) -> bool {
    let Some(colon) = chars::find_byte(i, b':') else {
        return false;
    };
    let s = i.get(..colon).unwrap_or(b"");
    s.first().is_some_and(u8::is_ascii_alphabetic)
        && s.iter()
            .all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'-' | b'.'))
}

// The URI rules are written by hand rather than with nom: a target URI is
// parsed for every Contact of every 3xx, and a direct scan over the
// character-class table is several times faster than the combinators here.
// Each rule still has its own function, named after RFC 3261's ABNF.

/// `SIP-URI / SIPS-URI = ("sip:" / "sips:") [ userinfo ] hostport
/// uri-parameters [ headers ]`, after the scheme.
fn sip_uri(scheme: Scheme, i: &[u8]) -> Option<SipUri<'_>> {
    let (user, i) = userinfo(i)?;
    let (host, port, i) = hostport(i)?;
    let (params, i) = uri_parameters(i)?;
    headers(i)?;
    Some(SipUri {
        scheme,
        user,
        host,
        port,
        params,
    })
}

/// `"sip:" / "sips:"`, ASCII case-insensitive.
fn scheme(i: &[u8]) -> Option<(Scheme, &[u8])> {
    // The first four bytes as one word: `c | 0x20` is `s` only for `s`
    // and `S` (likewise `i`, `p`); the colon is compared as it is.
    const SIP: u32 = u32::from_le_bytes(*b"sip:");
    const SIPS: u32 = u32::from_le_bytes(*b"sips");
    let (&w, rest) = i.split_first_chunk::<4>()?;
    let w = u32::from_le_bytes(w);
    if w | 0x0020_2020 == SIP {
        return Some((Scheme::Sip, rest));
    }
    match rest {
        [b':', rest @ ..] if w | 0x2020_2020 == SIPS => Some((Scheme::Sips, rest)),
        _ => None,
    }
}

/// `userinfo = ( user / telephone-subscriber ) [ ":" password ] "@"`:
/// `Some((None, i))` when there is none, `None` when it is malformed.
fn userinfo(i: &[u8]) -> Option<(Option<&[u8]>, &[u8])> {
    // There is a userinfo when the run of user / password characters and
    // ":" from the start ends at "@". The password characters are user
    // characters too, so the user ends at the first byte outside `user`.
    let (u, escaped) = span(i, chars::USER);
    let (user, after) = i.split_at(u);
    match after.first() {
        Some(b'@') => {
            (u > 0 && (!escaped || escapes_ok(user))).then_some((Some(user), after.get(1..)?))
        }
        Some(b':') => {
            let rest = after.get(1..)?;
            // The password runs to the "@"; a second ":" makes it malformed,
            // a run that does not end at "@" means there is no userinfo.
            let p = rest
                .iter()
                .position(|&c| !(chars::is(c, chars::USER) || c == b':'))
                .unwrap_or(rest.len());
            if rest.get(p) != Some(&b'@') {
                return Some((None, i));
            }
            let password = rest.get(..p)?;
            let ok = u > 0
                && password.iter().all(|&c| chars::is(c, chars::PASSWORD))
                && escapes_ok(user)
                && escapes_ok(password);
            ok.then_some((Some(user), rest.get(p + 1..)?))
        }
        _ => Some((None, i)),
    }
}

/// The length of the run of `class` characters at the start of `i`, and
/// whether it holds a `%` (only then are its escapes checked).
#[inline]
fn span(i: &[u8], class: u8) -> (usize, bool) {
    let mut escaped = false;
    let n = i
        .iter()
        .position(|&c| {
            escaped |= c == b'%';
            !chars::is(c, class)
        })
        .unwrap_or(i.len());
    // `%` is in every class spanned, so the byte that ends the run is none.
    (n, escaped)
}

/// `hostport = host [ ":" port ]`
fn hostport(i: &[u8]) -> Option<(&[u8], Option<u16>, &[u8])> {
    let (host, i) = host(i)?;
    match i.split_first() {
        Some((b':', rest)) => {
            let (port, rest) = port(rest)?;
            Some((host, Some(port), rest))
        }
        _ => Some((host, None, i)),
    }
}

/// `host = hostname / IPv4address / IPv6reference`
fn host(i: &[u8]) -> Option<(&[u8], &[u8])> {
    match i.first() {
        Some(b'[') => return ipv6_reference(i),
        // The host of most registered contacts.
        Some(c) if c.is_ascii_digit() => {
            if let Some(r) = ipv4_address(i) {
                return Some(r);
            }
        }
        _ => {}
    }
    hostname(i)
}

/// `IPv4address = dec-octet "." dec-octet "." dec-octet "." dec-octet`
/// where no hostname character follows (the host is the longest run of
/// them). `None` means "not that", not "malformed": a host such as
/// `1and1.example` or `256.example` is a [`hostname`].
fn ipv4_address(i: &[u8]) -> Option<(&[u8], &[u8])> {
    let rest = dec_octet(i)?;
    let rest = dec_octet(rest.strip_prefix(b".")?)?;
    let rest = dec_octet(rest.strip_prefix(b".")?)?;
    let rest = dec_octet(rest.strip_prefix(b".")?)?;
    if rest.first().is_some_and(|&c| chars::is(c, chars::HOST)) {
        return None;
    }
    Some(i.split_at(i.len() - rest.len()))
}

/// `1*3DIGIT`, at most 255, and not followed by another digit: what is
/// after it.
fn dec_octet(i: &[u8]) -> Option<&[u8]> {
    let digit = |c: &u8| c.is_ascii_digit();
    match i {
        [a, b, c, rest @ ..] if digit(a) && digit(b) && digit(c) => {
            ((*a, *b, *c) <= (b'2', b'5', b'5') && !rest.first().is_some_and(digit)).then_some(rest)
        }
        [a, b, rest @ ..] if digit(a) && digit(b) => Some(rest),
        [a, rest @ ..] if digit(a) => Some(rest),
        _ => None,
    }
}

/// `hostname = *( domainlabel "." ) toplabel [ "." ]`, the longest run of
/// hostname characters: labels of alphanumerics and inner hyphens, none
/// empty, none longer than 63, at most 253 bytes in all (a final "."
/// included). The last label must start with a letter (`toplabel`), so
/// `127.1`, `2130706433` or `0x7f.1` (which inet_aton would read as
/// addresses) are no hostnames; a host that is an IPv4 address is one
/// only as [`ipv4_address`], which [`host`] tries first.
fn hostname(i: &[u8]) -> Option<(&[u8], &[u8])> {
    let mut rest = i;
    let mut top;
    loop {
        let len = rest
            .iter()
            .position(|&c| !chars::is(c, chars::LABEL))
            .unwrap_or(rest.len());
        let (label, after) = rest.split_at(len);
        // An empty label (an empty host, "..", a leading ".") ends it all.
        let (&first, &last) = (label.first()?, label.last()?);
        if len > 63 || first == b'-' || last == b'-' {
            return None;
        }
        top = first;
        match after {
            [b'.', next @ ..] => {
                rest = next;
                // A final ".": the host may end after it.
                if !next.first().is_some_and(|&c| chars::is(c, chars::HOST)) {
                    break;
                }
            }
            // The end of the host: the label run is maximal, so the next
            // byte is no hostname character.
            _ => {
                rest = after;
                break;
            }
        }
    }
    let n = i.len() - rest.len();
    (n <= 253 && top.is_ascii_alphabetic()).then(|| i.split_at(n))
}

/// `escaped = "%" HEXDIG HEXDIG`: every `%` in `s` starts one.
fn escapes_ok(s: &[u8]) -> bool {
    let mut rest = s;
    while let Some(p) = chars::find_byte(rest, b'%') {
        let hex = rest.get(p + 1..p + 3);
        if !hex.is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)) {
            return false;
        }
        rest = rest.get(p + 3..).unwrap_or(b"");
    }
    true
}

/// `IPv6reference = "[" IPv6address "]"` (the brackets are kept).
fn ipv6_reference(i: &[u8]) -> Option<(&[u8], &[u8])> {
    let close = chars::find_byte(i, b']')?;
    let inner = i.get(1..close)?;
    let ok = std::str::from_utf8(inner)
        .ok()
        .is_some_and(|a| a.parse::<std::net::Ipv6Addr>().is_ok());
    ok.then(|| i.split_at(close + 1))
}

/// `port = 1*DIGIT`, 1..=65535.
fn port(i: &[u8]) -> Option<(u16, &[u8])> {
    let mut n = 0;
    let mut v = 0u32;
    // Six digits are too many whatever their value: look no further.
    for &d in i.iter().take(6) {
        if !d.is_ascii_digit() {
            break;
        }
        v = v * 10 + u32::from(d - b'0');
        n += 1;
    }
    if !(1..=5).contains(&n) {
        return None;
    }
    u16::try_from(v)
        .ok()
        .filter(|&p| p != 0)
        .map(|p| (p, i.get(n..).unwrap_or(b"")))
}

/// `uri-parameters = *( ";" uri-parameter)`, kept as written: a run of
/// parameter characters from a ";" up to the headers or the end.
fn uri_parameters(i: &[u8]) -> Option<(&[u8], &[u8])> {
    if i.first() != Some(&b';') {
        return Some((b"", i));
    }
    // "?" is no parameter character: the run stops at the headers.
    let (n, escaped) = span(i, chars::PARAM);
    let (params, rest) = i.split_at(n);
    let ok = matches!(rest.first(), None | Some(b'?')) && (!escaped || escapes_ok(params));
    ok.then_some((params, rest))
}

/// `headers = "?" header *( "&" header )`, to the end of the input.
fn headers(i: &[u8]) -> Option<()> {
    match i.split_first() {
        None => Some(()),
        Some((b'?', h)) => {
            let (n, escaped) = span(h, chars::HNV);
            (n == h.len() && (!escaped || escapes_ok(h))).then_some(())
        }
        Some(_) => None,
    }
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

    /// Edges of the one-pass rules: escapes, IPv6, case, what follows the
    /// host, user parameters, and hosts that start like an IPv4 address.
    #[test]
    fn sip_uri_edges_table() {
        type Row = (
            &'static str,
            Option<(
                Scheme,
                Option<&'static str>,
                &'static str,
                Option<u16>,
                &'static str,
            )>,
        );
        let rows: &[Row] = &[
            (
                "sip:%75%31@example.com",
                Some((Scheme::Sip, Some("%75%31"), "example.com", None, "")),
            ),
            (
                "sip:u%2c1:p%41ss@h.example",
                Some((Scheme::Sip, Some("u%2c1"), "h.example", None, "")),
            ),
            ("sip:u%4@h", None),
            ("sip:u%zz@h", None),
            ("sip:u:p%4@h", None),
            (
                "sip:u@[::1]:5060",
                Some((Scheme::Sip, Some("u"), "[::1]", Some(5060), "")),
            ),
            (
                "sip:[2001:db8::1];lr",
                Some((Scheme::Sip, None, "[2001:db8::1]", None, ";lr")),
            ),
            (
                "sip:u@[::ffff:192.0.2.1]",
                Some((Scheme::Sip, Some("u"), "[::ffff:192.0.2.1]", None, "")),
            ),
            ("sip:u@[::1", None),
            ("sip:u@[1::2::3]", None),
            ("sip:u@[::1]x", None),
            (
                "SIPS:U@HOST.EXAMPLE",
                Some((Scheme::Sips, Some("U"), "HOST.EXAMPLE", None, "")),
            ),
            ("sIp:u@h", Some((Scheme::Sip, Some("u"), "h", None, ""))),
            ("sipx:u@h", None),
            ("sip\x1au@h", None),
            ("sips;u@h", None),
            (
                "sip:u@h;transport=tcp;lr?subject=a&x=%41",
                Some((Scheme::Sip, Some("u"), "h", None, ";transport=tcp;lr")),
            ),
            (
                "sip:u@h:5070?x=y",
                Some((Scheme::Sip, Some("u"), "h", Some(5070), "")),
            ),
            ("sip:u@h?x=%4", None),
            ("sip:u@h;x=%4", None),
            (
                "sip:u@h;a=b?c=d?e",
                Some((Scheme::Sip, Some("u"), "h", None, ";a=b")),
            ),
            ("sip:u@h#x", None),
            (
                "sip:+1555;npdi;rn=+1666@h",
                Some((Scheme::Sip, Some("+1555;npdi;rn=+1666"), "h", None, "")),
            ),
            ("sip:alice;p=%zz@h", None),
            (
                "sip:127.0.0.1",
                Some((Scheme::Sip, None, "127.0.0.1", None, "")),
            ),
            (
                "sip:u@01.002.255.0:1",
                Some((Scheme::Sip, Some("u"), "01.002.255.0", Some(1), "")),
            ),
            ("sip:u@1.2.3.256", None),
            ("sip:u@1.2.3.1234", None),
            ("sip:u@1.2.3", None),
            ("sip:u@1.2.3.4.", None),
            ("sip:u@1.2.3.4.5", None),
            ("sip:u@1.2.3.4a", None),
            ("sip:u@1.2.3.4-", None),
            (
                "sip:u@256.example.com",
                Some((Scheme::Sip, Some("u"), "256.example.com", None, "")),
            ),
            (
                "sip:u@1.2.3.4.example",
                Some((Scheme::Sip, Some("u"), "1.2.3.4.example", None, "")),
            ),
            (
                "sip:u@1and1.example.",
                Some((Scheme::Sip, Some("u"), "1and1.example.", None, "")),
            ),
            (
                "sip:u@1.2.3.4;lr",
                Some((Scheme::Sip, Some("u"), "1.2.3.4", None, ";lr")),
            ),
            (
                "sip:u@h:05060",
                Some((Scheme::Sip, Some("u"), "h", Some(5060), "")),
            ),
            ("sip:u@h:005060", None),
            (
                "sip:u@h:65535",
                Some((Scheme::Sip, Some("u"), "h", Some(65535), "")),
            ),
            ("sip:u@h:", None),
            (
                "sip:u@a-b.c-d",
                Some((Scheme::Sip, Some("u"), "a-b.c-d", None, "")),
            ),
            ("sip:u@a.-b", None),
            ("sip:u@a-.b", None),
            ("sip:u@.a", None),
        ];
        for (input, want) in rows {
            let got = parse(input.as_bytes())
                .ok()
                .map(|u| (u.scheme, u.user, u.host, u.port, u.params));
            let want = want
                .map(|(s, u, h, p, q)| (s, u.map(str::as_bytes), h.as_bytes(), p, q.as_bytes()));
            assert_eq!(got, want, "{input}");
        }
        // Labels of 63 bytes are hostnames, of 64 not; 253 bytes are the most.
        let label = |n: usize| "a".repeat(n);
        assert!(parse(format!("sip:{}.com", label(63)).as_bytes()).is_ok());
        assert!(parse(format!("sip:{}.com", label(64)).as_bytes()).is_err());
        let host = [label(63), label(63), label(63), label(61)].join(".");
        assert_eq!(host.len(), 253);
        assert!(parse(format!("sip:{host}").as_bytes()).is_ok());
        assert!(parse(format!("sip:{host}.").as_bytes()).is_err());
        assert!(parse(format!("sip:{host}a").as_bytes()).is_err());
    }

    #[test]
    fn refused_uris() {
        let bad: &[(&[u8], UriError)] = &[
            (b"tel:+34600000000", UriError::UnsupportedScheme),
            (b"http://evil.example/", UriError::UnsupportedScheme),
            (b"", UriError::Malformed),
            (b":", UriError::Malformed),
            (b"1tel:+34", UriError::Malformed),
            (b"urn:service:sos", UriError::UnsupportedScheme),
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
        let rows = [
            (
                "sip:u@EXAMPLE.com",
                "sip:u@example.com:5060;transport=udp",
                true,
            ),
            ("sip:u@example.com", "sips:u@example.com", false),
            ("sips:u@example.com:5061", "sips:u@example.com", true),
            ("sip:U@example.com", "sip:u@example.com", false),
            ("sip:example.com", "sip:example.com:5060", true),
        ];
        for (a, b, same) in rows {
            let (ua, ub) = (parse(a.as_bytes()).unwrap(), parse(b.as_bytes()).unwrap());
            assert_eq!(ua.same_target(&ub), same, "{a} {b}");
            assert_eq!(ua.key().matches(&ub), same, "{a} {b}");
            assert_eq!(ua.key() == ub.key(), same, "{a} {b}");
        }
    }

    #[test]
    fn errors_display_their_message() {
        for e in [
            UriError::UnsupportedScheme,
            UriError::TooLong,
            UriError::Malformed,
        ] {
            assert_eq!(e.to_string(), e.message());
        }
        assert_eq!(UriError::TooLong.to_string(), "URI too long");
    }

    #[test]
    fn aor_form() {
        let u = parse(b"sip:u1@Example.COM:5060;transport=udp").unwrap();
        assert_eq!(u.aor(), "sip:u1@example.com");
        let rows = [
            ("SIPS:U1@Example.COM:5061;x", "sips:U1@example.com"),
            ("sip:EXAMPLE.COM", "sip:example.com"),
            ("sip:%41b@[::A]", "sip:%41b@[::a]"),
            ("sip:u:pw@1.2.3.4", "sip:u@1.2.3.4"),
            (
                "sip:u@ABCDEFGHIJKLMNOPQRSTUVWXYZ.example",
                "sip:u@abcdefghijklmnopqrstuvwxyz.example",
            ),
        ];
        // The buffer is cleared and reused.
        let mut out = String::from("left over");
        for (uri, aor) in rows {
            parse(uri.as_bytes()).unwrap().aor_into(&mut out);
            assert_eq!(out, aor, "{uri}");
        }
        // One built by hand need not be ASCII: lossy, host lower-cased.
        let hand = SipUri {
            scheme: Scheme::Sip,
            user: Some(b"\xc3\xa9T"),
            host: b"H\xffX",
            port: None,
            params: b"",
        };
        hand.aor_into(&mut out);
        assert_eq!(out, "sip:\u{e9}T@h\u{fffd}x");
    }
}
