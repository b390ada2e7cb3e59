//! `reply_parser`: raw bytes through `parse_response`, every Contact, the
//! Expires header and `uri::parse` of every Contact URI, with the parser's
//! own promises checked (zero-copy results inside the input, bounded work,
//! q in 0..=1000, URIs that the engine can key and store); and the same
//! bytes as a registration's Path and as two `+sip.instance` values.

use push_redirect::parser::{self, ParseError, MAX_MESSAGE_LEN};
use push_redirect::uri::{self, Scheme, SipUri, MAX_URI_LEN};

/// Whether `part` is a sub-slice of `whole` (the parser is zero-copy).
fn within(whole: &[u8], part: &[u8]) -> bool {
    let (w, p) = (whole.as_ptr() as usize, part.as_ptr() as usize);
    part.is_empty() || (p >= w && p + part.len() <= w + whole.len())
}

/// Runs one input; panics on a broken promise.
pub fn run(data: &[u8]) {
    path(data);
    let r = match parser::parse_response(data) {
        Ok(r) => r,
        Err(e) => {
            assert!(!e.message().is_empty());
            assert_eq!(
                e == ParseError::TooLarge,
                data.len() > MAX_MESSAGE_LEN,
                "TooLarge iff the input is over the cap"
            );
            return;
        }
    };
    assert!((100..=699).contains(&r.code), "status {} accepted", r.code);
    assert!(
        within(data, r.reason),
        "reason is not borrowed from the input"
    );
    assert!(
        !r.reason.contains(&b'\n'),
        "reason phrase runs past its line"
    );
    let _ = r.expires();

    for (name, value) in r.headers() {
        assert!(!name.is_empty(), "empty header name");
        assert!(within(data, name) && within(data, value));
    }

    let mut ok = 0usize;
    let mut items = 0usize;
    for c in r.contacts() {
        items += 1;
        // Every item (good or bad) consumes at least one byte.
        assert!(items <= data.len(), "Contacts iterator makes no progress");
        let c = match c {
            Ok(c) => c,
            Err(e) => {
                assert!(!e.message().is_empty());
                continue;
            }
        };
        ok += 1;
        assert!(!c.uri.is_empty(), "empty Contact URI");
        assert!(c.is_wildcard() || within(data, c.uri));
        if let Some(d) = c.display {
            assert!(within(data, d));
        }
        if let Some(q) = c.q {
            assert!(q <= 1000, "q={q} above 1.0");
        }
        if !c.is_wildcard() {
            check_uri(c.uri);
        }
    }
    if ok > 0 {
        assert!(
            r.has_contact(),
            "Contacts parsed but has_contact() is false"
        );
    }
    // The iterator is a pure function of the reply.
    assert_eq!(
        r.contacts().count(),
        items,
        "Contacts differ on a second pass"
    );
}

/// `uri::parse` of one target URI (from a reply, a registration, a memo or
/// a stored forwarding), and what the engine derives from it: its key, its
/// AOR form (stored and looked up, so it must parse again as the same user
/// and host).
pub fn check_uri(raw: &[u8]) {
    let u = match uri::parse(raw) {
        Ok(u) => u,
        Err(e) => {
            assert!(!e.message().is_empty());
            return;
        }
    };
    assert!(raw.len() <= MAX_URI_LEN);
    assert!(
        within(raw, u.host) && !u.host.is_empty(),
        "host {:?}",
        u.host
    );
    assert!(!u.host_str().is_empty(), "host is not ASCII");
    if let Some(user) = u.user {
        assert!(within(raw, user) && !user.is_empty());
    }
    assert!(within(raw, u.params));
    assert!(u.key().matches(&u) && u.same_target(&u));

    let aor = u.aor();
    assert!(aor.starts_with(u.scheme.as_str()));
    match uri::parse(aor.as_bytes()) {
        Ok(a) => {
            assert_eq!(a.scheme, u.scheme);
            assert_eq!(a.user, u.user, "AOR {aor:?} of {:?}", lossy(raw));
            assert!(a.host.eq_ignore_ascii_case(u.host));
            // Without the port, the AOR is the same target exactly when the
            // URI has the scheme's default port (or none).
            let default = match u.scheme {
                Scheme::Sip => 5060,
                Scheme::Sips => 5061,
            };
            assert_eq!(
                a.same_target(&u),
                u.port.unwrap_or(default) == default,
                "AOR {aor:?} of {:?}",
                lossy(raw)
            );
            assert_eq!(a.key() == u.key(), a.same_target(&u));
        }
        Err(e) => panic!(
            "the AOR form {aor:?} of {:?} does not parse: {}",
            lossy(raw),
            e.message()
        ),
    }
}

/// Whether two parsed URIs agree on [`SipUri::same_target`] and their keys.
pub fn keys_agree(a: &SipUri<'_>, b: &SipUri<'_>) -> bool {
    let same = a.same_target(b);
    same == (a.key() == b.key()) && same == a.key().matches(b) && same == b.key().matches(a)
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The same bytes as a registration's Path (`parser::path_first_hop`, the
/// next hop of a branch as registrar's lookup() picks it): no panic; the
/// hop and the rest are inside the input, the rest a strict suffix, so
/// reading hop after hop ends; past the cap, refused. And as two
/// `+sip.instance` values (`engine::same_instance`): symmetric.
fn path(data: &[u8]) {
    let mut cur = data;
    let mut hops = 0usize;
    while let Ok((hop, rest)) = parser::path_first_hop(cur) {
        assert!(
            data.len() <= parser::MAX_PATH_LEN,
            "a Path over the cap read"
        );
        assert!(
            within(data, hop) && !hop.is_empty(),
            "hop outside the input"
        );
        assert!(
            cur.ends_with(rest) && rest.len() < cur.len(),
            "rest not a strict suffix"
        );
        hops += 1;
        if rest.is_empty() {
            break;
        }
        cur = rest;
    }
    assert!(hops <= data.len(), "more hops than bytes");
    let (a, b) = data.split_at(data.len() / 2);
    assert_eq!(
        push_redirect::engine::same_instance(a, b),
        push_redirect::engine::same_instance(b, a)
    );
}
