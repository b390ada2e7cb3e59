//! The reply parser over real SIP replies (`tests/data/*.sip`, CRLF as on the
//! wire) and hostile input, through the public API only.
//!
//! Each reply file is one row of [`CASES`]: status code, reason, `Expires`,
//! the exact list of Contact results (URI bytes, q in thousandths, expires,
//! or `Err` for a malformed value) and what `uri::parse` makes of each
//! Contact URI. Files adapted from RFC 4475 (SIP torture tests) and RFC 5118
//! (IPv6 torture tests) are named after the test they come from.
//!
//! Rows whose RFC 3261 result the parser does not give yet are the
//! `#[ignore = "parser bug: ..."]` tests at the end: they assert the correct
//! result, so they pass once the parser is fixed.

use push_redirect::parser::{
    parse_response, Contact, ContactError, ParseError, Response, MAX_MESSAGE_LEN,
};
use push_redirect::uri::{self, Scheme, UriError};
use std::fmt;

// ---------------------------------------------------------------------------
// The data files
// ---------------------------------------------------------------------------

macro_rules! files {
    ($($f:literal),* $(,)?) => {
        &[$(($f, include_bytes!(concat!("data/", $f)) as &[u8])),*]
    };
}

/// Every file under `tests/data/` (checked by `every_data_file_is_listed`).
const FILES: &[(&str, &[u8])] = files!(
    "100_rfc4475_noreason_empty_reason.sip",
    "200_rfc4475_unreason_utf8_reason.sip",
    "300_multi_mixed_forms.sip",
    "301_contact_expires_param.sip",
    "302_bare_lf_line_endings.sip",
    "302_body_starts_with_whitespace.sip",
    "302_contact_60k_value.sip",
    "302_contact_star.sip",
    "302_folded_contact.sip",
    "302_malformed_contact_expires.sip",
    "302_malformed_expires_header.sip",
    "302_missing_raquot.sip",
    "302_mixed_case_header_names.sip",
    "302_no_contact.sip",
    "302_quoted_display_angle_brackets.sip",
    "302_rfc4475_badaspec_spaces_in_brackets.sip",
    "302_rfc4475_baddn_non_token_display.sip",
    "302_rfc4475_badinv01_extra_separators.sip",
    "302_rfc4475_esc01_escaped_uri.sip",
    "302_rfc4475_esc02_percent_header_name.sip",
    "302_rfc4475_escnull_escaped_nulls.sip",
    "302_rfc4475_intmeth_wide_chars.sip",
    "302_rfc4475_longreq_long_values.sip",
    "302_rfc4475_lwsdisp_no_lws_display.sip",
    "302_rfc4475_quotbal_unterminated_quote.sip",
    "302_rfc4475_regbadct_addr_spec_headers.sip",
    "302_rfc4475_scalar02_overlarge_values.sip",
    "302_rfc4475_semiuri_user_params.sip",
    "302_rfc4475_unkscm_unknown_schemes.sip",
    "302_rfc4475_wsinv_tortuous.sip",
    "302_rfc5118_ipv6_bad_reference.sip",
    "302_rfc5118_ipv6_references.sip",
    "302_typical_ua_one_contact_expires.sip",
    "302_unknown_header_params.sip",
    "302_unusual_lws_tabs.sip",
    "302_uri_bad_escape.sip",
    "302_uri_numeric_host.sip",
    "302_utf8_display_names.sip",
    "305_use_proxy.sip",
    "380_alternative_service_body.sip",
    "401_www_authenticate_commas.sip",
    "480_retry_after.sip",
    "486_busy_retry_after.sip",
    "503_rfc4475_scalarlg_overlarge_retry_after.sip",
    "603_decline.sip",
);

/// The one file written with bare LF line endings.
const BARE_LF_FILE: &str = "302_bare_lf_line_endings.sip";

fn data(name: &str) -> &'static [u8] {
    FILES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, raw)| *raw)
        .unwrap_or_else(|| panic!("{name} is not in FILES"))
}

// ---------------------------------------------------------------------------
// Expected results, as const tables
// ---------------------------------------------------------------------------

/// What `uri::parse` should make of a Contact URI.
#[derive(Clone, Copy)]
struct T {
    scheme: Scheme,
    user: Option<&'static str>,
    host: &'static str,
    port: Option<u16>,
}

const fn sip(
    user: Option<&'static str>,
    host: &'static str,
    port: Option<u16>,
) -> Result<T, UriError> {
    Ok(T {
        scheme: Scheme::Sip,
        user,
        host,
        port,
    })
}

const fn sips(
    user: Option<&'static str>,
    host: &'static str,
    port: Option<u16>,
) -> Result<T, UriError> {
    Ok(T {
        scheme: Scheme::Sips,
        user,
        host,
        port,
    })
}

/// One expected Contact value.
#[derive(Clone, Copy)]
struct W {
    display: Option<&'static str>,
    uri: &'static str,
    q: Option<u16>,
    expires: Option<u32>,
    target: Result<T, UriError>,
}

/// A Contact with this URI (no display name, q or expires) whose URI
/// parses to `target`.
const fn c(uri: &'static str, target: Result<T, UriError>) -> W {
    W {
        display: None,
        uri,
        q: None,
        expires: None,
        target,
    }
}

impl W {
    const fn q(self, q: u16) -> W {
        W { q: Some(q), ..self }
    }
    const fn exp(self, s: u32) -> W {
        W {
            expires: Some(s),
            ..self
        }
    }
    const fn disp(self, d: &'static str) -> W {
        W {
            display: Some(d),
            ..self
        }
    }
}

type Want = Result<W, ContactError>;

/// A malformed Contact value.
const BAD: Want = Err(ContactError::Malformed);

/// One reply file and everything it should parse to.
struct Case {
    file: &'static str,
    code: u16,
    reason: &'static str,
    /// `Response::expires()`.
    expires: Option<u32>,
    /// Every Contact result, in order.
    contacts: &'static [Want],
    /// Headers whose (first) value must be exactly this.
    headers: &'static [(&'static str, &'static str)],
}

const MOVED: &str = "Moved Temporarily";
const NONE: &[(&str, &str)] = &[];

// RFC 4475 §3.1.1.7 (longreq).
const LONG_DISPLAY: &str = concat!(
    "\"I have a user name of ",
    "extremeextremeextremeextremeextremeextremeextremeextremeextremeextreme",
    " proportion\""
);
const LONG_URI: &str = concat!(
    "sip:user@example.com:6000;unknownparam1=very",
    "longlonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglong",
    "value;longparam",
    "namenamenamenamenamenamenamenamenamenamenamenamenamenamenamenamenamenamenamenamenamenamenamenamename",
    "=shortvalue;very",
    "longlonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglong",
    "ParameterNameWithNoValue"
);
const LONG_USER: &str = concat!(
    "amazinglylongcallername",
    "amazinglylongcallername",
    "amazinglylongcallername",
    "amazinglylongcallername",
    "amazinglylongcallername"
);
const LONG_CONTACT2: &str = concat!(
    "sip:",
    "amazinglylongcallername",
    "amazinglylongcallername",
    "amazinglylongcallername",
    "amazinglylongcallername",
    "amazinglylongcallername",
    "@host5.example.net"
);

// RFC 4475 §3.1.1.2 (intmeth).
const WEIRD_USER: &str = "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*";
const WEIRD_URI: &str = concat!(
    "sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*",
    ":&it+has=1,weird!*pas$wo~d_too.(doesn't-it)@example.com"
);

/// The reply files the parser reads right (RFC 3261 §7.2, §7.3, §20.10,
/// §20.19, §25.1).
const CASES: &[Case] = &[
    // --- everyday replies ------------------------------------------------
    Case {
        file: "302_typical_ua_one_contact_expires.sip",
        code: 302,
        reason: MOVED,
        expires: Some(3600),
        contacts: &[Ok(c(
            "sip:u1@198.51.100.23:5070;transport=udp",
            sip(Some("u1"), "198.51.100.23", Some(5070)),
        ))],
        headers: &[("User-Agent", "Linphone/5.2.0 (belle-sip/5.2.0)")],
    },
    Case {
        file: "301_contact_expires_param.sip",
        code: 301,
        reason: "Moved Permanently",
        expires: None,
        contacts: &[Ok(c(
            "sip:alice@new.example.com",
            sip(Some("alice"), "new.example.com", None),
        )
        .disp("\"Alice (new phone)\"")
        .exp(7200))],
        headers: &[("Server", "Asterisk PBX 18.9.0")],
    },
    Case {
        file: "300_multi_mixed_forms.sip",
        code: 300,
        reason: "Multiple Choices",
        expires: Some(600),
        contacts: &[
            // Quoted display name with a comma and escaped quotes; URI
            // parameters stay inside <...>; q and expires are header params.
            Ok(c(
                "sip:jack@ua1.example.com:5062;transport=tcp;lr",
                sip(Some("jack"), "ua1.example.com", Some(5062)),
            )
            .disp(r#""Smith, John \"Jack\"""#)
            .q(900)
            .exp(120)),
            // Extension params, one with a quoted value holding <...>.
            Ok(c(
                "sips:jack@ua2.example.com",
                sips(Some("jack"), "ua2.example.com", None),
            )
            .q(500)),
            // Compact form `m:`; a bare addr-spec's ;params are header
            // params (§20.10).
            Ok(c(
                "sip:jack@198.51.100.7",
                sip(Some("jack"), "198.51.100.7", None),
            )
            .q(100)
            .exp(30)),
            // Token display name; URI with headers inside <...>.
            Ok(c(
                "sip:jack@ua3.example.com;user=phone?subject=hi",
                sip(Some("jack"), "ua3.example.com", None),
            )
            .disp("Jack Smith")),
            Ok(c("tel:+1-201-555-0123", Err(UriError::UnsupportedScheme)).q(50)),
            // No SP after the colon; `Q` is case-insensitive; quoted param.
            Ok(c(
                "sip:+12015550123@gw.example.com;user=phone",
                sip(Some("+12015550123"), "gw.example.com", None),
            )
            .disp(r#""Office, 2nd floor; desk \\4""#)
            .q(1000)
            .exp(0)),
            Ok(c(
                "sip:empty-display@ua4.example.com",
                sip(Some("empty-display"), "ua4.example.com", None),
            )
            .disp("\"\"")),
        ],
        headers: NONE,
    },
    Case {
        file: "302_no_contact.sip",
        code: 302,
        reason: MOVED,
        expires: None,
        contacts: &[],
        headers: &[("Server", "ExampleUA/1.0")],
    },
    Case {
        file: "480_retry_after.sip",
        code: 480,
        reason: "Temporarily Unavailable",
        expires: None,
        contacts: &[],
        headers: &[("Retry-After", "18000 (I'm in a meeting);duration=3600")],
    },
    Case {
        file: "486_busy_retry_after.sip",
        code: 486,
        reason: "Busy Here",
        expires: None,
        contacts: &[Ok(c(
            "sip:u1@198.51.100.23:5070;ob",
            sip(Some("u1"), "198.51.100.23", Some(5070)),
        ))],
        headers: &[
            ("Retry-After", "300"),
            ("Warning", "399 ua.example.com \"Busy, try later\""),
        ],
    },
    Case {
        file: "603_decline.sip",
        code: 603,
        reason: "Decline",
        expires: None,
        contacts: &[],
        headers: &[("Reason", "SIP;cause=603;text=\"Declined by user, sorry\"")],
    },
    // The WWW-Authenticate values hold commas, "Contact:" inside a quoted
    // realm and on a folded line: none of it is a Contact.
    Case {
        file: "401_www_authenticate_commas.sip",
        code: 401,
        reason: "Unauthorized",
        expires: None,
        contacts: &[],
        headers: &[(
            "WWW-Authenticate",
            "Digest realm=\"example.com, Contact: <sip:evil@attacker.example>\", \
             qop=\"auth,auth-int\",\r\n nonce=\"dcd98b7102dd2f0e8b11d0f600bfb0c093\", \
             opaque=\"5ccc069c403ebaf9f0171e9517f40e41\",\r\n\tContact: \
             <sip:evil2@attacker.example>, algorithm=MD5, stale=FALSE",
        )],
    },
    // Folding (§7.3.1) between list items, before params, inside a quoted
    // display name, right after the colon; the Expires value is folded too.
    Case {
        file: "302_folded_contact.sip",
        code: 302,
        reason: MOVED,
        expires: Some(300),
        contacts: &[
            Ok(c(
                "sip:a@ua1.example.com",
                sip(Some("a"), "ua1.example.com", None),
            )
            .q(800)),
            Ok(c(
                "sip:b@ua2.example.com",
                sip(Some("b"), "ua2.example.com", None),
            )
            .q(600)
            .exp(60)),
            Ok(c(
                "sip:c@ua3.example.com",
                sip(Some("c"), "ua3.example.com", None),
            )
            .disp("\"Folded\r\n Name\"")),
            Ok(c(
                "sip:d@ua4.example.com",
                sip(Some("d"), "ua4.example.com", None),
            )),
        ],
        headers: NONE,
    },
    Case {
        file: BARE_LF_FILE,
        code: 302,
        reason: MOVED,
        expires: Some(120),
        contacts: &[
            Ok(c(
                "sip:u1@198.51.100.23:5070",
                sip(Some("u1"), "198.51.100.23", Some(5070)),
            )
            .q(700)),
            Ok(c(
                "sip:u1@203.0.113.9:5070",
                sip(Some("u1"), "203.0.113.9", Some(5070)),
            )
            .q(300)),
        ],
        headers: NONE,
    },
    // `Contact: *` (§20.10 STAR): the wildcard, which is no URI.
    Case {
        file: "302_contact_star.sip",
        code: 302,
        reason: MOVED,
        expires: Some(0),
        contacts: &[Ok(c("*", Err(UriError::Malformed)))],
        headers: NONE,
    },
    Case {
        file: "305_use_proxy.sip",
        code: 305,
        reason: "Use Proxy",
        expires: None,
        contacts: &[Ok(c(
            "sip:proxy.example.net:5080;transport=tcp;lr",
            sip(None, "proxy.example.net", Some(5080)),
        ))],
        headers: NONE,
    },
    // The body holds "Contact:" and "Expires:" lines: never headers.
    Case {
        file: "380_alternative_service_body.sip",
        code: 380,
        reason: "Alternative Service",
        expires: None,
        contacts: &[Ok(c("urn:service:sos", Err(UriError::UnsupportedScheme)))],
        headers: &[("Content-Type", "application/3gpp-ims+xml")],
    },
    // --- RFC 4475 torture tests, as replies ------------------------------
    // §3.1.1.1 wsinv: LWS everywhere, folding, odd-case names, `m:`,
    // unknown params with folded values, SWS around ; and =.
    Case {
        file: "302_rfc4475_wsinv_tortuous.sip",
        code: 302,
        reason: MOVED,
        expires: Some(120),
        contacts: &[Ok(c(
            "sip:jdrosen@example.com",
            sip(Some("jdrosen"), "example.com", None),
        )
        .disp(r#""Quoted string \"\"""#)
        .q(330))],
        headers: &[
            ("s", ""),
            (
                "NewFangledHeader",
                "newfangled value\r\n continued newfangled value",
            ),
            ("UnknownHeaderWithUnusualValue", ";;,,;;,;"),
            ("CSeq", "0009\r\n  MESSAGE"),
        ],
    },
    // §3.1.1.2 intmeth: every legal character in user, password, display
    // names (escaped BEL, NUL, DEL), params and header names.
    Case {
        file: "302_rfc4475_intmeth_wide_chars.sip",
        code: 302,
        reason: MOVED,
        expires: None,
        contacts: &[
            Ok(c(WEIRD_URI, sip(Some(WEIRD_USER), "example.com", None))
                .disp("\"BEL:\\\x07 NUL:\\\0 DEL:\\\x7f\"")),
            Ok(c(
                "sip:mundane@example.com",
                sip(Some("mundane"), "example.com", None),
            )
            .disp("token1~` token2'+_ token3*%!.-")),
        ],
        headers: &[("extensionHeader-!.%*+_`'~", "\u{feff}大停電")],
    },
    // §3.1.1.3 esc01: escapes stay as written; "sips%3A..." is a user.
    Case {
        file: "302_rfc4475_esc01_escaped_uri.sip",
        code: 302,
        reason: MOVED,
        expires: None,
        contacts: &[
            Ok(c(
                "sip:cal%6Cer@host5.example.net;%6C%72;n%61me=v%61lue%25%34%31",
                sip(Some("cal%6Cer"), "host5.example.net", None),
            )),
            Ok(c(
                "sip:sips%3Auser%40example.com@example.net",
                sip(Some("sips%3Auser%40example.com"), "example.net", None),
            )),
            Ok(c(
                "sip:I%20have%20spaces@example.net",
                sip(Some("I%20have%20spaces"), "example.net", None),
            )
            .disp("\"I have spaces\"")
            .q(200)),
        ],
        headers: NONE,
    },
    // §3.1.1.4 escnull: %00 in the user part, two distinct Contacts.
    Case {
        file: "302_rfc4475_escnull_escaped_nulls.sip",
        code: 302,
        reason: MOVED,
        expires: None,
        contacts: &[
            Ok(c(
                "sip:%00@host5.example.com",
                sip(Some("%00"), "host5.example.com", None),
            )),
            Ok(c(
                "sip:%00%00@host5.example.com",
                sip(Some("%00%00"), "host5.example.com", None),
            )),
        ],
        headers: &[("L", "0")],
    },
    // §3.1.1.5 esc02: "C%6Fntact" is another header, not Contact.
    Case {
        file: "302_rfc4475_esc02_percent_header_name.sip",
        code: 302,
        reason: MOVED,
        expires: None,
        contacts: &[
            Ok(c(
                "sip:alias1@host1.example.com",
                sip(Some("alias1"), "host1.example.com", None),
            )),
            Ok(c(
                "sip:alias3@host3.example.com",
                sip(Some("alias3"), "host3.example.com", None),
            )),
        ],
        headers: &[("C%6Fntact", "<sip:alias2@host2.example.com>")],
    },
    // §3.1.1.6 lwsdisp: no LWS between display name and "<" (RFC 3261
    // §20.10; erratum 5598).
    Case {
        file: "302_rfc4475_lwsdisp_no_lws_display.sip",
        code: 302,
        reason: MOVED,
        expires: None,
        contacts: &[
            Ok(c(
                "sip:caller@example.com",
                sip(Some("caller"), "example.com", None),
            )
            .disp("caller")),
            Ok(c(
                "sip:caller2@example.com",
                sip(Some("caller2"), "example.com", None),
            )
            .disp("\"caller\"")
            .q(500)),
        ],
        headers: NONE,
    },
    // §3.1.1.7 longreq: long display name, URI parameters, unknown params.
    Case {
        file: "302_rfc4475_longreq_long_values.sip",
        code: 302,
        reason: MOVED,
        expires: None,
        contacts: &[
            Ok(c(LONG_URI, sip(Some("user"), "example.com", Some(6000)))
                .disp(LONG_DISPLAY)
                .q(200)),
            Ok(c(
                LONG_CONTACT2,
                sip(Some(LONG_USER), "host5.example.net", None),
            )),
        ],
        headers: &[("Max-Forwards", "70")],
    },
    // §3.1.1.9 semiuri: ";par=" in the user part is fine inside <...>; bare,
    // the ";" starts header params (§20.10) and "@example.com" is stray.
    Case {
        file: "302_rfc4475_semiuri_user_params.sip",
        code: 302,
        reason: MOVED,
        expires: None,
        contacts: &[
            Ok(c(
                "sip:user;par=u%40example.net@example.com",
                sip(Some("user;par=u%40example.net"), "example.com", None),
            )),
            BAD,
            Ok(c(
                "sip:after@example.com",
                sip(Some("after"), "example.com", None),
            )),
        ],
        headers: NONE,
    },
    // §3.1.1.12 unreason: UTF-8 and symbols in the reason phrase.
    Case {
        file: "200_rfc4475_unreason_utf8_reason.sip",
        code: 200,
        reason: "= 2**3 * 5**2 но сто девяносто девять - простое",
        expires: None,
        contacts: &[Ok(c(
            "sip:user@host198.example.com",
            sip(Some("user"), "host198.example.com", None),
        ))],
        headers: &[("Content-Type", "application/sdp")],
    },
    // §3.1.1.13 noreason: "SIP/2.0 100 " with an empty reason phrase.
    Case {
        file: "100_rfc4475_noreason_empty_reason.sip",
        code: 100,
        reason: "",
        expires: None,
        contacts: &[Ok(c(
            "sip:user@host105.example.com",
            sip(Some("user"), "host105.example.com", None),
        ))],
        headers: NONE,
    },
    // §3.1.2.1 badinv01: ";;;;" is no contact-params; the good values
    // after it (same header, next header) are kept.
    Case {
        file: "302_rfc4475_badinv01_extra_separators.sip",
        code: 302,
        reason: MOVED,
        expires: None,
        contacts: &[
            BAD,
            BAD,
            Ok(c(
                "sip:joe2@example.org",
                sip(Some("joe2"), "example.org", None),
            )
            .q(200)),
            Ok(c(
                "sip:joe@backup.example.org",
                sip(Some("joe"), "backup.example.org", None),
            )
            .q(100)),
        ],
        headers: &[("Via", "SIP/2.0/UDP 192.0.2.15;;,;,,")],
    },
    // §3.1.2.4 scalar02: expiries above 2**32-1 read as 2**32-1 (RFC 3261
    // §10.2.1.1 allows it).
    Case {
        file: "302_rfc4475_scalar02_overlarge_values.sip",
        code: 302,
        reason: MOVED,
        expires: Some(u32::MAX),
        contacts: &[
            Ok(c(
                "sip:user@host129.example.com",
                sip(Some("user"), "host129.example.com", None),
            )
            .exp(u32::MAX)),
            Ok(c(
                "sip:user@host130.example.com",
                sip(Some("user"), "host130.example.com", None),
            )
            .exp(4_294_967_295)),
        ],
        headers: NONE,
    },
    // §3.1.2.5 scalarlg: overlarge Retry-After and CSeq, Warning code 1812.
    Case {
        file: "503_rfc4475_scalarlg_overlarge_retry_after.sip",
        code: 503,
        reason: "Service Unavailable",
        expires: None,
        contacts: &[],
        headers: &[("Retry-After", "949302838503028349304023988")],
    },
    // §3.1.2.6 quotbal: the quote never closes, so the rest of that header
    // is inside it; the next Contact header is still read.
    Case {
        file: "302_rfc4475_quotbal_unterminated_quote.sip",
        code: 302,
        reason: MOVED,
        expires: None,
        contacts: &[
            BAD,
            Ok(c(
                "sip:caller@host59.example.net",
                sip(Some("caller"), "host59.example.net", None),
            )),
        ],
        headers: NONE,
    },
    // §3.1.2.14 badaspec: SP inside <...>.
    Case {
        file: "302_rfc4475_badaspec_spaces_in_brackets.sip",
        code: 302,
        reason: MOVED,
        expires: None,
        contacts: &[
            BAD,
            Ok(c(
                "sip:t.watson@backup.example.org",
                sip(Some("t.watson"), "backup.example.org", None),
            )),
        ],
        headers: NONE,
    },
    // §3.1.2.15 baddn: "Bell, Alexander <...>" is two list items, "Bell"
    // (malformed) and "Alexander <...>"; ":" is no token character.
    Case {
        file: "302_rfc4475_baddn_non_token_display.sip",
        code: 302,
        reason: MOVED,
        expires: None,
        contacts: &[
            BAD,
            Ok(c(
                "sip:a.g.bell@example.com",
                sip(Some("a.g.bell"), "example.com", None),
            )
            .disp("Alexander")
            .q(300)),
            BAD,
        ],
        headers: NONE,
    },
    // §3.3.? unkscm: unknown schemes parse as Contacts; uri::parse says
    // which.
    Case {
        file: "302_rfc4475_unkscm_unknown_schemes.sip",
        code: 302,
        reason: MOVED,
        expires: None,
        contacts: &[
            Ok(c("urn:ipaddr:122.1.2.3", Err(UriError::UnsupportedScheme)).disp("Joe Bob Briggs")),
            Ok(c("name:John_Smith", Err(UriError::UnsupportedScheme))),
            Ok(c("isbn:2983792873", Err(UriError::UnsupportedScheme)).q(100)),
            Ok(c(
                "http://www.example.com",
                Err(UriError::UnsupportedScheme),
            )),
            Ok(c("mailto:jj@example.org", Err(UriError::UnsupportedScheme))),
            Ok(c(
                "sip:known@example.com",
                sip(Some("known"), "example.com", None),
            )),
        ],
        headers: NONE,
    },
    // --- shapes of Contact values ----------------------------------------
    // "<", ">", "," and escaped quotes inside quoted display names.
    Case {
        file: "302_quoted_display_angle_brackets.sip",
        code: 302,
        reason: MOVED,
        expires: None,
        contacts: &[
            Ok(c(
                "sip:good@example.com",
                sip(Some("good"), "example.com", None),
            )
            .disp("\"<sip:evil@attacker.example>\"")
            .q(500)),
            Ok(c("sip:x@example.com", sip(Some("x"), "example.com", None))
                .disp(r#""a>b<c, \"d\"""#)),
            Ok(c("sip:y@example.com", sip(Some("y"), "example.com", None)).disp("\"<\"")),
        ],
        headers: NONE,
    },
    // A missing ">" makes the value malformed. Inside an unclosed "<" a
    // comma is part of the URI (a user part may hold ","), so in the same
    // header "<sip:b@...>" is swallowed with it; the next header, and the
    // value after a stray ">", are read.
    Case {
        file: "302_missing_raquot.sip",
        code: 302,
        reason: MOVED,
        expires: None,
        contacts: &[
            BAD,
            Ok(c(
                "sip:good@example.com",
                sip(Some("good"), "example.com", None),
            )),
            BAD,
            BAD,
            Ok(c("sip:d@example.com", sip(Some("d"), "example.com", None))),
        ],
        headers: NONE,
    },
    // Header names are case-insensitive (§7.3.1); "Contacts" and
    // "X-Contact" are other headers; the first Expires counts.
    Case {
        file: "302_mixed_case_header_names.sip",
        code: 302,
        reason: MOVED,
        expires: Some(45),
        contacts: &[
            Ok(c(
                "sip:first@example.com",
                sip(Some("first"), "example.com", None),
            )),
            Ok(c(
                "sip:second@example.com",
                sip(Some("second"), "example.com", None),
            )),
            Ok(c(
                "sip:third@example.com",
                sip(Some("third"), "example.com", None),
            )),
            Ok(c(
                "sip:fourth@example.com",
                sip(Some("fourth"), "example.com", None),
            )),
        ],
        headers: &[("cseq", "1 MESSAGE")],
    },
    // Unknown and valueless params, quoted values with ; and ,, an IPv6
    // reference as a gen-value, "X-Q" and "QUEUE" are not q.
    Case {
        file: "302_unknown_header_params.sip",
        code: 302,
        reason: MOVED,
        expires: None,
        contacts: &[
            Ok(c(
                "sip:u1@198.51.100.23:5070;transport=tcp",
                sip(Some("u1"), "198.51.100.23", Some(5070)),
            )
            .q(250)),
            Ok(
                c("sip:u2@example.com", sip(Some("u2"), "example.com", None))
                    .q(750)
                    .exp(15),
            ),
        ],
        headers: NONE,
    },
    // HTAB and SP around everything, empty list items.
    Case {
        file: "302_unusual_lws_tabs.sip",
        code: 302,
        reason: MOVED,
        expires: Some(30),
        contacts: &[
            Ok(c("sip:t1@example.com", sip(Some("t1"), "example.com", None)).q(400)),
            Ok(c("sip:t2@example.com", sip(Some("t2"), "example.com", None)).exp(10)),
            Ok(c(
                "sip:t3@example.com",
                sip(Some("t3"), "example.com", None),
            )),
            Ok(
                c("sip:t4@example.com", sip(Some("t4"), "example.com", None))
                    .disp("Tab\tSeparated \t Name"),
            ),
        ],
        headers: NONE,
    },
    // A non-ASCII display name must be a quoted-string (token is ASCII).
    Case {
        file: "302_utf8_display_names.sip",
        code: 302,
        reason: MOVED,
        expires: None,
        contacts: &[
            BAD,
            Ok(c(
                "sip:jose2@example.com",
                sip(Some("jose2"), "example.com", None),
            )
            .disp("\"José Ñandú\"")),
            Ok(c(
                "sip:nihongo@example.com",
                sip(Some("nihongo"), "example.com", None),
            )
            .disp("\"日本語 表示\"")
            .q(100)),
        ],
        headers: NONE,
    },
    // RFC 5118: IPv6 references, with and without port, the ambiguous
    // "[...:5070]" (no port: §4.3), IPv4-mapped, bare addr-spec; an
    // unbracketed IPv6 address is no host (§4.2).
    Case {
        file: "302_rfc5118_ipv6_references.sip",
        code: 302,
        reason: MOVED,
        expires: None,
        contacts: &[
            Ok(c(
                "sip:caller@[2001:db8::1]",
                sip(Some("caller"), "[2001:db8::1]", None),
            )
            .disp("\"Caller\"")),
            Ok(c(
                "sips:[2001:db8::10]:5071",
                sips(None, "[2001:db8::10]", Some(5071)),
            )),
            Ok(c(
                "sip:[2001:db8::10:5070]",
                sip(None, "[2001:db8::10:5070]", None),
            )
            .q(300)),
            Ok(c(
                "sip:user@[::ffff:192.0.2.10]",
                sip(Some("user"), "[::ffff:192.0.2.10]", None),
            )),
            Ok(c(
                "sip:user@[2001:db8::20]",
                sip(Some("user"), "[2001:db8::20]", None),
            )
            .q(100)),
            Ok(c("sip:user@2001:db8::30", Err(UriError::Malformed))),
        ],
        headers: &[(
            "Via",
            "SIP/2.0/UDP [2001:db8::9:1];branch=z9hG4bKas3-111;received=[2001:db8::9:255]",
        )],
    },
];

// ---------------------------------------------------------------------------
// Comparing
// ---------------------------------------------------------------------------

/// Bytes that print as an escaped string.
#[derive(Clone, PartialEq, Eq)]
struct B(Vec<u8>);

impl fmt::Debug for B {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.len() > 300 {
            let head = self.0.get(..120).unwrap_or(&[]);
            let tail = self.0.get(self.0.len() - 60..).unwrap_or(&[]);
            write!(
                f,
                "b\"{}\"...({} bytes)...\"{}\"",
                head.escape_ascii(),
                self.0.len(),
                tail.escape_ascii()
            )
        } else {
            write!(f, "b\"{}\"", self.0.escape_ascii())
        }
    }
}

impl From<&[u8]> for B {
    fn from(b: &[u8]) -> B {
        B(b.to_vec())
    }
}

impl From<&str> for B {
    fn from(s: &str) -> B {
        B(s.as_bytes().to_vec())
    }
}

#[derive(Debug, PartialEq)]
struct Target {
    scheme: Scheme,
    user: Option<B>,
    host: B,
    port: Option<u16>,
}

/// One Contact result, owned and comparable.
#[derive(Debug, PartialEq)]
enum Row {
    Ok {
        display: Option<B>,
        uri: B,
        q: Option<u16>,
        expires: Option<u32>,
        target: Result<Target, UriError>,
    },
    Err(ContactError),
}

fn target_of(raw_uri: &[u8]) -> Result<Target, UriError> {
    uri::parse(raw_uri).map(|u| Target {
        scheme: u.scheme,
        user: u.user.map(B::from),
        host: B::from(u.host),
        port: u.port,
    })
}

fn row(c: Result<Contact<'_>, ContactError>) -> Row {
    match c {
        Ok(c) => Row::Ok {
            display: c.display.map(B::from),
            uri: B::from(c.uri),
            q: c.q,
            expires: c.expires,
            target: target_of(c.uri),
        },
        Err(e) => Row::Err(e),
    }
}

fn rows(r: &Response<'_>) -> Vec<Row> {
    r.contacts().map(row).collect()
}

fn want_row(w: &Want) -> Row {
    match w {
        Ok(w) => Row::Ok {
            display: w.display.map(B::from),
            uri: B::from(w.uri),
            q: w.q,
            expires: w.expires,
            target: w.target.map(|t| Target {
                scheme: t.scheme,
                user: t.user.map(B::from),
                host: B::from(t.host),
                port: t.port,
            }),
        },
        Err(e) => Row::Err(*e),
    }
}

/// Whether `inner` borrows from `outer` (the parser is zero-copy).
fn within(outer: &[u8], inner: &[u8]) -> bool {
    let (o, i) = (outer.as_ptr_range(), inner.as_ptr_range());
    inner.is_empty() || (o.start <= i.start && i.end <= o.end)
}

/// The rows one a line: `=` same, `-` wanted, `+` got.
fn diff(got: &[Row], want: &[Row]) -> String {
    let mut out = String::new();
    for k in 0..got.len().max(want.len()) {
        match (got.get(k), want.get(k)) {
            (Some(g), Some(w)) if g == w => out += &format!("    = #{k} {g:?}\n"),
            (g, w) => {
                if let Some(w) = w {
                    out += &format!("    - #{k} {w:?}\n");
                }
                if let Some(g) = g {
                    out += &format!("    + #{k} {g:?}\n");
                }
            }
        }
    }
    out
}

/// Checks one file against its row; every difference is reported.
fn check_raw(case: &Case, raw: &[u8]) -> Result<(), String> {
    let r = parse_response(raw).map_err(|e| format!("{}: {e:?}", case.file))?;
    let mut errs = Vec::new();
    if r.code != case.code {
        errs.push(format!("code {} != {}", r.code, case.code));
    }
    if r.reason != case.reason.as_bytes() {
        errs.push(format!(
            "reason {:?} != {:?}",
            B::from(r.reason),
            B::from(case.reason)
        ));
    }
    if r.expires() != case.expires {
        errs.push(format!("expires {:?} != {:?}", r.expires(), case.expires));
    }
    if r.has_contact() == case.contacts.is_empty() {
        errs.push(format!("has_contact {}", r.has_contact()));
    }
    let got = rows(&r);
    let want: Vec<Row> = case.contacts.iter().map(want_row).collect();
    if got != want {
        errs.push(format!("contacts differ:\n{}", diff(&got, &want)));
    }
    for (name, value) in case.headers {
        let v = r
            .headers()
            .find(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, v)| B::from(v));
        if v != Some(B::from(*value)) {
            errs.push(format!("header {name}: {v:?} != {:?}", B::from(*value)));
        }
    }
    for c in r.contacts().flatten() {
        if c.is_wildcard() != (c.uri == b"*") {
            errs.push(format!("is_wildcard() wrong for {:?}", B::from(c.uri)));
        }
        if (!c.is_wildcard() && !within(raw, c.uri)) || !within(raw, c.display.unwrap_or(b"")) {
            errs.push(format!(
                "{:?} does not borrow from the reply",
                B::from(c.uri)
            ));
        }
    }
    if errs.is_empty() {
        Ok(())
    } else {
        Err(format!("{}:\n  {}", case.file, errs.join("\n  ")))
    }
}

fn check(case: &Case) {
    if let Err(e) = check_raw(case, data(case.file)) {
        panic!("{e}");
    }
}

// ---------------------------------------------------------------------------
// The reply files
// ---------------------------------------------------------------------------

#[test]
fn reply_files_table() {
    let failures: Vec<String> = CASES
        .iter()
        .filter_map(|c| check_raw(c, data(c.file)).err())
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} files:\n{}",
        failures.len(),
        CASES.len(),
        failures.join("\n\n")
    );
}

/// The same replies with bare LF instead of CRLF (and back, for the bare-LF
/// file) give the same results, display names of folded lines aside.
#[test]
fn crlf_and_bare_lf_read_the_same() {
    let strip = |rows: Vec<Row>| -> Vec<Row> {
        rows.into_iter()
            .map(|r| match r {
                Row::Ok {
                    uri,
                    q,
                    expires,
                    target,
                    ..
                } => Row::Ok {
                    display: None,
                    uri,
                    q,
                    expires,
                    target,
                },
                e => e,
            })
            .collect()
    };
    for case in CASES {
        let raw = data(case.file);
        let other = if case.file == BARE_LF_FILE {
            raw.split(|&b| b == b'\n')
                .collect::<Vec<_>>()
                .join(&b"\r\n"[..])
        } else {
            raw.split(|&b| b == b'\n')
                .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
                .collect::<Vec<_>>()
                .join(&b"\n"[..])
        };
        let (a, b) = (
            parse_response(raw).unwrap(),
            parse_response(&other).unwrap(),
        );
        assert_eq!((a.code, a.reason), (b.code, b.reason), "{}", case.file);
        assert_eq!(a.expires(), b.expires(), "{}", case.file);
        assert_eq!(strip(rows(&a)), strip(rows(&b)), "{}", case.file);
    }
}

#[test]
fn data_files_have_exact_line_endings() {
    for (name, raw) in FILES {
        if *name == BARE_LF_FILE {
            assert!(!raw.contains(&b'\r'), "{name} has a CR");
            assert!(
                raw.windows(2).any(|w| w == b"\n\n"),
                "{name}: no empty line"
            );
            continue;
        }
        for (i, &b) in raw.iter().enumerate() {
            if b == b'\n' {
                assert_eq!(
                    i.checked_sub(1).map(|p| raw[p]),
                    Some(b'\r'),
                    "{name}: bare LF at {i}"
                );
            }
        }
        assert!(
            raw.windows(4).any(|w| w == b"\r\n\r\n"),
            "{name}: no empty line"
        );
    }
}

/// Every file under tests/data/ is in FILES, and every one has a test.
#[test]
fn every_data_file_is_listed_and_tested() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data");
    let mut on_disk: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".sip"))
        .collect();
    on_disk.sort();
    let mut listed: Vec<String> = FILES.iter().map(|(n, _)| n.to_string()).collect();
    listed.sort();
    assert_eq!(on_disk, listed);
    let special = [FILE_60K]
        .into_iter()
        .chain(BUG_CASES.iter().map(|c| c.file));
    for (name, _) in FILES {
        let tested = CASES.iter().any(|c| c.file == *name) || special.clone().any(|s| s == *name);
        assert!(tested, "{name} has no test");
    }
}

#[test]
fn header_blocks_are_split_right() {
    let count = |file: &str, names: &[&str]| {
        parse_response(data(file))
            .unwrap()
            .headers()
            .filter(|(n, _)| names.iter().any(|w| n.eq_ignore_ascii_case(w.as_bytes())))
            .count()
    };
    assert_eq!(count("302_rfc4475_wsinv_tortuous.sip", &["via", "v"]), 2);
    assert_eq!(
        count("302_rfc4475_longreq_long_values.sip", &["via", "v"]),
        34
    );
    let all = |file: &str| parse_response(data(file)).unwrap().headers().count();
    assert_eq!(all("302_rfc4475_wsinv_tortuous.sip"), 14);
    assert_eq!(all("302_rfc4475_longreq_long_values.sip"), 43);
    assert_eq!(all("401_www_authenticate_commas.sip"), 8);
    assert_eq!(
        all("380_alternative_service_body.sip"),
        8,
        "the body is no header"
    );
}

/// RFC 4475 §3.1.1.4: "%00" and "%00%00" are two targets, not one.
#[test]
fn escaped_nulls_are_distinct_targets() {
    let r = parse_response(data("302_rfc4475_escnull_escaped_nulls.sip")).unwrap();
    let uris: Vec<_> = r
        .contacts()
        .map(|c| uri::parse(c.unwrap().uri).unwrap())
        .collect();
    assert_eq!(uris.len(), 2);
    assert!(!uris[0].same_target(&uris[1]));
    assert_ne!(uris[0].key(), uris[1].key());
}

// ---------------------------------------------------------------------------
// Hostile input
// ---------------------------------------------------------------------------

/// Runs every public entry point over `raw` and checks the invariants that
/// hold for any input; returns the number of Contact results.
fn exercise(raw: &[u8]) -> Result<usize, ParseError> {
    let r = parse_response(raw)?;
    assert!((100..=699).contains(&r.code));
    assert!(within(raw, r.reason));
    for (n, v) in r.headers() {
        assert!(!n.is_empty() && within(raw, n) && within(raw, v));
    }
    let _ = r.expires();
    let mut n = 0;
    for c in r.contacts() {
        n += 1;
        if let Ok(c) = c {
            assert!(c.is_wildcard() || within(raw, c.uri));
            assert!(within(raw, c.display.unwrap_or(b"")));
            assert!(c.q.is_none_or(|q| q <= 1000));
            if let Ok(u) = uri::parse(c.uri) {
                assert!(within(c.uri, u.host) && !u.host.is_empty());
                let _ = (u.key(), u.aor());
            }
        }
    }
    assert_eq!(r.has_contact(), n > 0);
    Ok(n)
}

/// xorshift64*: deterministic bytes, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[test]
fn garbage_is_a_parse_error() {
    let rows: &[(&[u8], ParseError)] = &[
        (b"", ParseError::BadStatusLine),
        (b"\0\0\0\0\0\0\0\0", ParseError::BadStatusLine),
        (b"\xff\xfe\xfd\xfc\r\n\r\n", ParseError::BadStatusLine),
        (b"SIP/2.0", ParseError::BadStatusLine),
        (b"SIP/2.0 302", ParseError::BadStatusLine),
        (b"SIP/2.0 302 Moved Temporarily", ParseError::BadStatusLine),
        (
            b"SIP/2.0 302 Moved\rTemporarily\r\n\r\n",
            ParseError::BadStatusLine,
        ),
        (b" SIP/2.0 302 Moved\r\n\r\n", ParseError::BadStatusLine),
        (b"SIP/2.0\t302 Moved\r\n\r\n", ParseError::BadStatusLine),
        (b"SIP/2.0 3O2 Moved\r\n\r\n", ParseError::BadStatusLine),
        (b"SIP/2.0 -302 Moved\r\n\r\n", ParseError::BadStatusLine),
        (b"SIP/ 302 Moved\r\n\r\n", ParseError::BadStatusLine),
        // RFC 4475 §3.1.2.19 bigcode.
        (
            b"SIP/2.0 4294967301 better not break the receiver\r\n\r\n",
            ParseError::BadStatusLine,
        ),
        (b"SIP/2.0 000 Zero\r\n\r\n", ParseError::BadStatusCode),
        (b"SIP/2.0 099 Low\r\n\r\n", ParseError::BadStatusCode),
        (b"SIP/2.0 700 High\r\n\r\n", ParseError::BadStatusCode),
        (b"SIP/2.0 999 High\r\n\r\n", ParseError::BadStatusCode),
        (b"HTTP/1.1 302 Found\r\n\r\n", ParseError::BadStatusLine),
        (
            b"MESSAGE sip:u1@example.com SIP/2.0\r\nContact: <sip:a@b>\r\n\r\n",
            ParseError::BadStatusLine,
        ),
        (b"<sip:a@b>, <sip:c@d>\r\n", ParseError::BadStatusLine),
    ];
    for (raw, want) in rows {
        assert_eq!(
            parse_response(raw).map(|r| r.code),
            Err(*want),
            "{:?}",
            B::from(*raw)
        );
    }
}

#[test]
fn random_garbage_never_panics() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    // Bytes that matter to the grammar, so that random input reaches deep.
    let alphabet: &[u8] =
        b"<>\";,:=*@[]\\ \t\r\n\r\n%?sipSIP/2.0 302Contact:m:q=0.5expires=1\x00\xff";
    for round in 0..30_000 {
        let len = rng.below(600);
        let mut raw = match round % 3 {
            0 => Vec::new(),
            1 => b"SIP/2.0 302 Moved Temporarily\r\n".to_vec(),
            _ => b"SIP/2.0 300 Multiple Choices\r\nContact: ".to_vec(),
        };
        for _ in 0..len {
            let b = if round % 5 == 0 {
                rng.next() as u8
            } else {
                alphabet[rng.below(alphabet.len())]
            };
            raw.push(b);
        }
        let got = exercise(&raw);
        if round % 3 != 0 {
            assert!(got.is_ok(), "{:?}", B(raw));
        }
    }
}

/// Every prefix of every reply: `Err(BadStatusLine)` until the status line
/// is complete, then `Ok` with the same code and reason; never a panic.
#[test]
fn every_prefix_of_every_reply_is_ok_or_a_parse_error() {
    for (name, raw) in FILES {
        let full = parse_response(raw).unwrap();
        let line_end = raw.iter().position(|&b| b == b'\n').unwrap() + 1;
        for len in 0..=raw.len() {
            let prefix = &raw[..len];
            match exercise(prefix) {
                Ok(_) => {
                    assert!(len >= line_end, "{name}: Ok at {len}");
                    let r = parse_response(prefix).unwrap();
                    assert_eq!(
                        (r.code, r.reason),
                        (full.code, full.reason),
                        "{name} at {len}"
                    );
                }
                Err(e) => {
                    assert!(len < line_end, "{name}: {e:?} at {len}");
                    assert_eq!(e, ParseError::BadStatusLine, "{name} at {len}");
                }
            }
        }
    }
}

/// Replies with bytes flipped, deleted, duplicated: never a panic.
#[test]
fn mutated_replies_never_panic() {
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let nasty: &[u8] = b"<>\",;:\\\r\n \t\0\xff*%[]=";
    for (_, raw) in FILES {
        for _ in 0..300 {
            let mut m = raw.to_vec();
            for _ in 0..1 + rng.below(8) {
                let at = rng.below(m.len());
                match rng.below(4) {
                    0 => m[at] = nasty[rng.below(nasty.len())],
                    1 => {
                        m.remove(at);
                    }
                    2 => m.insert(at, nasty[rng.below(nasty.len())]),
                    _ => {
                        let end = (at + rng.below(64)).min(m.len());
                        let dup = m[at..end].to_vec();
                        m.splice(at..at, dup);
                    }
                }
            }
            let _ = exercise(&m);
        }
    }
}

#[test]
fn reply_over_one_mib_is_too_large() {
    let raw = data("302_typical_ua_one_contact_expires.sip");
    let mut at_cap = raw.to_vec();
    at_cap.resize(MAX_MESSAGE_LEN, b'x'); // a body of 'x'
    let r = parse_response(&at_cap).expect("exactly MAX_MESSAGE_LEN is accepted");
    assert_eq!(rows(&r), rows(&parse_response(raw).unwrap()));
    let mut over = at_cap.clone();
    over.push(b'x');
    assert_eq!(parse_response(&over).err(), Some(ParseError::TooLarge));
    let garbage = vec![0xffu8; MAX_MESSAGE_LEN + 1];
    assert_eq!(parse_response(&garbage).err(), Some(ParseError::TooLarge));
    let huge = vec![b','; 4 * MAX_MESSAGE_LEN];
    assert_eq!(parse_response(&huge).err(), Some(ParseError::TooLarge));
}

fn reply(headers: &[u8]) -> Vec<u8> {
    let mut raw = b"SIP/2.0 302 Moved Temporarily\r\n".to_vec();
    raw.extend_from_slice(headers);
    raw.extend_from_slice(b"Content-Length: 0\r\n\r\n");
    raw
}

/// A Contact's URI, or why the value was refused.
type UriResult = Result<B, ContactError>;

/// A Contact's URI, q and expires.
type UriQExp = (String, Option<u16>, Option<u32>);

fn uris(raw: &[u8]) -> Vec<UriResult> {
    parse_response(raw)
        .unwrap()
        .contacts()
        .map(|c| c.map(|c| B::from(c.uri)))
        .collect()
}

#[test]
fn nul_bytes_and_invalid_utf8_in_headers() {
    let good = || Ok(B::from("sip:good@h.example.com"));
    // A NUL is no URI character: that value is malformed, the next is read.
    let raw = reply(b"Contact: <sip:a\0b@h.example.com>, <sip:good@h.example.com>\r\n");
    assert_eq!(uris(&raw), vec![Err(ContactError::Malformed), good()]);
    // A NUL in a header name: the line is no header at all.
    let raw = reply(
        b"Cont\0act: <sip:x@h.example.com>\r\nExp\0ires: 5\r\n\
          Contact: <sip:good@h.example.com>\r\n",
    );
    assert_eq!(uris(&raw), vec![good()]);
    assert_eq!(parse_response(&raw).unwrap().expires(), None);
    // Garbage in other headers does not leak into Contact or Expires.
    let raw = reply(
        b"Subject: \xff\xfe\xfd\0\x01\r\nVia: SIP/2.0/UDP \xc3\x28;branch=\0\r\n\
          Contact: <sip:good@h.example.com>\r\nX-Bin: \0,\0<\"\r\nExpires: 5\r\n",
    );
    assert_eq!(uris(&raw), vec![good()]);
    assert_eq!(parse_response(&raw).unwrap().expires(), Some(5));
    // Non-ASCII in a URI: the Contact grammar leaves it to uri::parse, which
    // refuses it.
    let raw = reply(b"Contact: <sip:\xc3\xa9@h.example.com>, <sip:\xff@h.example.com>\r\n");
    let r = parse_response(&raw).unwrap();
    let got: Vec<_> = r.contacts().map(|c| target_of(c.unwrap().uri)).collect();
    assert_eq!(
        got,
        vec![Err(UriError::Malformed), Err(UriError::Malformed)]
    );
    // Invalid UTF-8 as a param value: malformed; the next value is read.
    let raw = reply(b"Contact: <sip:a@h.example.com>;x=\xff, <sip:good@h.example.com>\r\n");
    assert_eq!(uris(&raw), vec![Err(ContactError::Malformed), good()]);
    // Whatever is made of NUL / invalid UTF-8 inside a quoted display name,
    // the closing quote ends it and the next value is read.
    for display in [&b"\"\xff\xfe\0\""[..], b"\"\0\"", b"\"\\\0\xc3\""] {
        let mut h = b"Contact: ".to_vec();
        h.extend_from_slice(display);
        h.extend_from_slice(b" <sip:a@h.example.com>, <sip:good@h.example.com>\r\n");
        let got = uris(&reply(&h));
        assert_eq!(got.len(), 2, "{:?}", B(h.clone()));
        assert_eq!(got[1], good(), "{:?}", B(h.clone()));
    }
    // NUL and invalid UTF-8 in the reason phrase: no panic, the rest reads.
    let raw = b"SIP/2.0 302 Mo\0ved \xff\r\nContact: <sip:good@h.example.com>\r\n\r\n";
    assert_eq!(parse_response(raw).map(|r| r.code), Ok(302));
    assert_eq!(uris(raw), vec![good()]);
}

/// A 300 with 10,000 Contacts in every form, over 100 headers (plain,
/// compact, upper case; some values folded): all read, in order, exactly.
#[test]
fn ten_thousand_contacts_are_all_read() {
    let names = ["Contact", "m", "CONTACT", "contact "];
    let mut raw =
        b"SIP/2.0 300 Multiple Choices\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK.x\r\n".to_vec();
    let mut want = Vec::new();
    for h in 0..100 {
        raw.extend_from_slice(format!("{}: ", names[h % names.len()]).as_bytes());
        for j in 0..100 {
            let k = h * 100 + j;
            if j > 0 {
                raw.extend_from_slice(if k % 7 == 0 { b",\r\n\t" } else { b", " });
            }
            let (text, uri, q, exp) = match k % 5 {
                0 => {
                    let uri = format!("sip:t{k}@ua{}.example.com:{}", k % 7, 5000 + k % 1000);
                    let q = (k % 10) as u16;
                    (format!("<{uri}>;q=0.{q}"), uri, Some(q * 100), None)
                }
                1 => {
                    let uri = format!("sip:t{k}@198.51.100.{}", k % 250 + 1);
                    (
                        format!(
                            "\"Terminal {k}, desk \\\"{}\\\"\" <{uri}>;expires={k}",
                            k % 3
                        ),
                        uri,
                        None,
                        Some(k as u32),
                    )
                }
                2 => {
                    let uri = format!("sip:t{k}@h{k}.example.net");
                    (format!("{uri};q=1"), uri, Some(1000), None)
                }
                3 => {
                    let uri = format!("sips:t{k}@example.org;transport=tls");
                    (
                        format!("T{k} Name <{uri}>;+sip.instance=\"<urn:uuid:{k}>\""),
                        uri,
                        None,
                        None,
                    )
                }
                _ => {
                    let uri = format!("sip:t{k}@[2001:db8::{k:x}]");
                    let q = (k % 1000) as u16;
                    (format!("<{uri}>;q=0.{q:03}"), uri, Some(q), None)
                }
            };
            raw.extend_from_slice(text.as_bytes());
            want.push(Ok((uri, q, exp)));
        }
        raw.extend_from_slice(b"\r\n");
    }
    raw.extend_from_slice(b"Content-Length: 0\r\n\r\n");
    assert!(raw.len() <= MAX_MESSAGE_LEN, "{} bytes", raw.len());

    let r = parse_response(&raw).unwrap();
    assert_eq!(r.contacts().count(), 10_000);
    let got: Vec<Result<UriQExp, ContactError>> = r
        .contacts()
        .map(|c| c.map(|c| (String::from_utf8_lossy(c.uri).into_owned(), c.q, c.expires)))
        .collect();
    for (k, (g, w)) in got.iter().zip(&want).enumerate() {
        assert_eq!(g, w, "Contact #{k}");
    }
    assert!(r.contacts().all(|c| uri::parse(c.unwrap().uri).is_ok()));
    assert_eq!(exercise(&raw), Ok(10_000));
}

/// 10,000 good Contacts with 1,000 malformed ones between them: exactly
/// 10,000 Ok and 1,000 Err, in order.
#[test]
fn ten_thousand_contacts_among_malformed_ones() {
    let bad = [
        "<sip:bad@h.example.com>;q=2",
        "nocolon",
        "<sip:bad@h.example.com> junk",
        "\"Quoted\" sip:bad@h.example.com",
        "<sip:b a d@h.example.com>",
        "<sip:bad@h.example.com>;;",
        "sip:bad@h.example.com>",
    ];
    let mut raw = b"SIP/2.0 300 Multiple Choices\r\n".to_vec();
    let mut want = Vec::new();
    let mut good = 0;
    for k in 0..11_000 {
        if k % 50 == 0 {
            if k > 0 {
                raw.extend_from_slice(b"\r\n");
            }
            raw.extend_from_slice(b"Contact: ");
        } else {
            raw.extend_from_slice(b", ");
        }
        if k % 11 == 10 {
            raw.extend_from_slice(bad[k % bad.len()].as_bytes());
            want.push(None);
        } else {
            raw.extend_from_slice(format!("<sip:g{good}@h.example.com>").as_bytes());
            want.push(Some(format!("sip:g{good}@h.example.com")));
            good += 1;
        }
    }
    raw.extend_from_slice(b"\r\n\r\n");
    let r = parse_response(&raw).unwrap();
    let got: Vec<Option<String>> = r
        .contacts()
        .map(|c| c.ok().map(|c| String::from_utf8_lossy(c.uri).into_owned()))
        .collect();
    assert_eq!(got.iter().filter(|c| c.is_some()).count(), 10_000);
    assert_eq!(got.iter().filter(|c| c.is_none()).count(), 1_000);
    assert_eq!(got, want);
}

const FILE_60K: &str = "302_contact_60k_value.sip";

/// A Contact value of 60 KiB (a 20 KiB display name, a 20 KiB URI, a 20
/// KiB param): read whole; the URI is over uri::MAX_URI_LEN; the next
/// Contact is read.
#[test]
fn contact_value_of_60_kib() {
    let raw = data(FILE_60K);
    let r = parse_response(raw).unwrap();
    let (_, value) = r.headers().find(|(n, _)| *n == b"Contact").unwrap();
    assert!(value.len() >= 60 * 1024, "{}", value.len());
    let phrase = "A long display name, with commas; and semicolons. ".repeat(500);
    let display = format!("\"{}\"", &phrase[..20480]);
    let long_uri = format!("sip:long@ua1.example.com;x={}", "p".repeat(20480));
    assert_eq!(
        rows(&r),
        vec![
            Row::Ok {
                display: Some(B::from(display.as_str())),
                uri: B::from(long_uri.as_str()),
                q: Some(400),
                expires: None,
                target: Err(UriError::TooLong),
            },
            want_row(&Ok(c(
                "sip:after-long@ua2.example.com",
                sip(Some("after-long"), "ua2.example.com", None)
            ))),
        ]
    );
}

/// 60 KiB header values built to make a parser backtrack or loop: each is
/// read in one pass and the Contact after it is still returned.
#[test]
fn hostile_60_kib_headers() {
    const N: usize = 60 * 1024;
    let good = || Ok(B::from("sip:good@h.example.com"));
    let malformed = || Err(ContactError::Malformed);
    let rows: Vec<(Vec<u8>, Vec<UriResult>)> = vec![
        ("<".repeat(N).into_bytes(), vec![malformed()]),
        ("\"".repeat(N + 1).into_bytes(), vec![malformed()]),
        ("\\\"".repeat(N / 2).into_bytes(), vec![malformed()]),
        (",".repeat(N).into_bytes(), vec![]),
        (" \t".repeat(N / 2).into_bytes(), vec![]),
        (";".repeat(N).into_bytes(), vec![malformed()]),
        (
            format!("<sip:a@h.example.com>{}", ";p".repeat(N / 2)).into_bytes(),
            vec![Ok(B::from("sip:a@h.example.com"))],
        ),
        (
            format!("{}<sip:x@h.example.com>", "a ".repeat(N / 2)).into_bytes(),
            vec![Ok(B::from("sip:x@h.example.com"))],
        ),
        (
            format!("<sip:a@h.example.com>;q=0.{}", "0".repeat(N)).into_bytes(),
            vec![malformed()],
        ),
        (
            format!("<sip:a@h.example.com>;x=\"{}", "y".repeat(N)).into_bytes(),
            vec![malformed()],
        ),
        (
            format!("sip:{}", "a".repeat(N)).into_bytes(),
            vec![Ok(B(format!("sip:{}", "a".repeat(N)).into_bytes()))],
        ),
        ("<sip:a@h.example.com>,".repeat(N / 22).into_bytes(), {
            vec![Ok(B::from("sip:a@h.example.com")); N / 22]
        }),
    ];
    for (value, mut want) in rows {
        let mut h = b"Contact: ".to_vec();
        h.extend_from_slice(&value);
        h.extend_from_slice(b"\r\nContact: <sip:good@h.example.com>\r\n");
        let raw = reply(&h);
        want.push(good());
        let got = uris(&raw);
        assert!(
            got == want,
            "{:?}: got {} results",
            B(value[..40].to_vec()),
            got.len()
        );
        exercise(&raw).unwrap();
    }
    // The expires param saturates rather than overflowing.
    let raw = reply(
        format!(
            "Contact: <sip:a@h.example.com>;expires={}\r\n",
            "9".repeat(N)
        )
        .as_bytes(),
    );
    let r = parse_response(&raw).unwrap();
    assert_eq!(
        r.contacts().next().unwrap().unwrap().expires,
        Some(u32::MAX)
    );
}

// ---------------------------------------------------------------------------
// Parser bugs: these assert the RFC 3261 result and fail today.
// ---------------------------------------------------------------------------

const BUG_CASES: &[Case] = &[
    BODY_STARTS_WITH_WSP,
    REGBADCT,
    MALFORMED_CONTACT_EXPIRES,
    MALFORMED_EXPIRES_HEADER,
    URI_BAD_ESCAPE,
    URI_BAD_IPV6,
    URI_NUMERIC_HOST,
];

/// The empty line ends the headers (§7, §7.3.1): a body whose first line
/// starts with SP is not a folded continuation of it.
const BODY_STARTS_WITH_WSP: Case = Case {
    file: "302_body_starts_with_whitespace.sip",
    code: 302,
    reason: MOVED,
    expires: None,
    contacts: &[Ok(c(
        "sip:u1@198.51.100.23:5070",
        sip(Some("u1"), "198.51.100.23", Some(5070)),
    ))],
    headers: &[("Content-Type", "text/plain")],
};

/// RFC 3261 §20.10: an addr-spec with "?" (or "," / ";") MUST be a
/// name-addr; RFC 4475 §3.1.2.13 (regbadct) is this malformed Contact.
const REGBADCT: Case = Case {
    file: "302_rfc4475_regbadct_addr_spec_headers.sip",
    code: 302,
    reason: MOVED,
    expires: None,
    contacts: &[
        BAD,
        Ok(c(
            "sip:user@example.com?Route=%3Csip:sip.example.com%3E",
            sip(Some("user"), "example.com", None),
        )
        .q(300)),
    ],
    headers: NONE,
};

/// RFC 3261 §20.10: a malformed "expires" param SHOULD be read as 3600
/// (an RFC 2543 date is malformed); the Contact itself stays usable.
const MALFORMED_CONTACT_EXPIRES: Case = Case {
    file: "302_malformed_contact_expires.sip",
    code: 302,
    reason: MOVED,
    expires: None,
    contacts: &[
        Ok(c(
            "sip:a@ua1.example.com",
            sip(Some("a"), "ua1.example.com", None),
        )
        .exp(3600)),
        Ok(c(
            "sip:b@ua2.example.com",
            sip(Some("b"), "ua2.example.com", None),
        )
        .exp(3600)),
        Ok(c(
            "sip:c@ua3.example.com",
            sip(Some("c"), "ua3.example.com", None),
        )
        .exp(3600)),
    ],
    headers: NONE,
};

/// RFC 3261 §20.19: a malformed Expires header SHOULD be read as 3600.
const MALFORMED_EXPIRES_HEADER: Case = Case {
    file: "302_malformed_expires_header.sip",
    code: 302,
    reason: MOVED,
    expires: Some(3600),
    contacts: &[Ok(c(
        "sip:u1@198.51.100.23:5070",
        sip(Some("u1"), "198.51.100.23", Some(5070)),
    ))],
    headers: NONE,
};

/// RFC 3261 §25.1: `escaped = "%" HEXDIG HEXDIG`.
const URI_BAD_ESCAPE: Case = Case {
    file: "302_uri_bad_escape.sip",
    code: 302,
    reason: MOVED,
    expires: None,
    contacts: &[
        Ok(c("sip:%ZZ@example.com", Err(UriError::Malformed))),
        Ok(c(
            "sip:ok%41@example.com",
            sip(Some("ok%41"), "example.com", None),
        )),
        Ok(c("sip:u%4@example.com", Err(UriError::Malformed))),
    ],
    headers: NONE,
};

/// RFC 3261 §25.1 `IPv6reference = "[" IPv6address "]"` (hexpart with at
/// most one "::", at most 8 groups); RFC 5118.
const URI_BAD_IPV6: Case = Case {
    file: "302_rfc5118_ipv6_bad_reference.sip",
    code: 302,
    reason: MOVED,
    expires: None,
    contacts: &[
        Ok(c("sip:t@[2001:db8:::1]", Err(UriError::Malformed))),
        Ok(c("sip:t@[1:2:3:4:5:6:7:8:9]", Err(UriError::Malformed))),
        Ok(c("sip:t@[192.0.2.1]", Err(UriError::Malformed))),
        Ok(c("sip:t@[:]", Err(UriError::Malformed))),
        Ok(c(
            "sip:t@[2001:db8::1]",
            sip(Some("t"), "[2001:db8::1]", None),
        )),
    ],
    headers: NONE,
};

/// RFC 3261 §25.1: `toplabel = ALPHA / ALPHA *( alphanum / "-" ) alphanum`
/// and `IPv4address` has four parts, so "0x7f.1", "2130706433" and "127.1"
/// are no host (inet_aton() reads each as 127.0.0.1).
const URI_NUMERIC_HOST: Case = Case {
    file: "302_uri_numeric_host.sip",
    code: 302,
    reason: MOVED,
    expires: None,
    contacts: &[
        Ok(c("sip:t@0x7f.1", Err(UriError::Malformed))),
        Ok(c("sip:t@2130706433", Err(UriError::Malformed))),
        Ok(c("sip:t@127.1", Err(UriError::Malformed))),
        Ok(c("sip:t@127.0.0.1", sip(Some("t"), "127.0.0.1", None))),
        Ok(c(
            "sip:t@ua-1.example.com",
            sip(Some("t"), "ua-1.example.com", None),
        )),
    ],
    headers: NONE,
};

#[test]

fn regression_body_starting_with_whitespace_is_read_as_headers() {
    check(&BODY_STARTS_WITH_WSP);
}

#[test]

fn regression_bare_addr_spec_with_headers_is_accepted() {
    check(&REGBADCT);
}

#[test]

fn regression_malformed_contact_expires_drops_the_contact() {
    check(&MALFORMED_CONTACT_EXPIRES);
}

#[test]

fn regression_malformed_expires_header_is_not_3600() {
    check(&MALFORMED_EXPIRES_HEADER);
}

#[test]

fn regression_uri_accepts_bad_escapes() {
    check(&URI_BAD_ESCAPE);
}

#[test]

fn regression_uri_accepts_invalid_ipv6_references() {
    check(&URI_BAD_IPV6);
}

#[test]

fn regression_uri_accepts_numeric_toplabel_hosts() {
    check(&URI_NUMERIC_HOST);
}
