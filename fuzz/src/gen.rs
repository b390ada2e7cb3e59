//! Structured inputs: `arbitrary` types that render into the plain cases of
//! [`crate::harness`]. Random bytes rarely spell a SIP URI whose host is the
//! proxy or an allowed domain, so URIs, replies and parameters are built
//! from small dictionaries, with a raw variant at each level; target URIs
//! can also name (or slightly rewrite) a registration, an earlier branch or
//! the Request-URI, so that loops, own-terminal redirects and policy are
//! reached.

use arbitrary::Arbitrary;
use push_redirect::config::ForkMode;
use push_redirect::engine::{ForwardTarget, Forwarding, ForwardingKind, Registration};
use push_redirect::uri;

use crate::harness::{c_abi, engine};

fn pick<T: Copy>(list: &[T], i: u8) -> T {
    list[usize::from(i) % list.len()]
}

const HOSTS: &[&str] = &[
    "example.com",
    "127.0.0.1",
    "partner.example",
    "a.trusted.example",
    "EXAMPLE.COM",
    "trusted.example",
    "evil.example",
    "[::1]",
    "[2001:db8::1]",
    "10.0.0.1",
    "h",
    "sub.partner.example",
    "example.com.",
    "Partner.Example",
];
const USERS: &[&str] = &[
    "alice",
    "bob",
    "carol",
    "Alice",
    "%61lice",
    "+15551234",
    "a%2Cb",
    "u",
    "alice:secret",
    "x;y=z",
    "%",
    "a b",
];
const PORTS: &[u16] = &[5060, 5061, 5070, 0, 65535, 5062];
const METHODS: &[&str] = &[
    "MESSAGE",
    "NOTIFY",
    "message",
    "Publish",
    "OPTIONS",
    "INFO",
    "SUBSCRIBE",
    "REFER",
    "UPDATE",
];
const STATUSES: &[u16] = &[
    302, 301, 300, 380, 305, 408, 480, 486, 503, 401, 407, 603, 600, 200, 180, 0, 399, 415, 500,
    404, 699, 488,
];
const DOMAINS: &[&str] = &[
    "partner.example",
    "*.trusted.example",
    "EXAMPLE.com",
    "evil.example",
    "*.example",
    "127.0.0.1",
    "h",
    "*.com",
    "a.trusted.example",
];

// ------------------------------------------------------------------ URIs

/// A URI scheme.
#[derive(Arbitrary, Debug)]
pub enum SchemeG {
    Sip,
    Sips,
    Upper,
    Tel,
    Http,
    Raw(String),
}

/// A host.
#[derive(Arbitrary, Debug)]
pub enum HostG {
    Known(u8),
    Raw(String),
}

impl HostG {
    fn render(&self) -> String {
        match self {
            HostG::Known(i) => pick(HOSTS, *i).to_string(),
            HostG::Raw(s) => s.clone(),
        }
    }
}

/// A user part.
#[derive(Arbitrary, Debug)]
pub enum UserG {
    Known(u8),
    Raw(String),
}

/// A port.
#[derive(Arbitrary, Debug)]
pub enum PortG {
    Known(u8),
    Any(u16),
    Raw(String),
}

/// A URI parameter.
#[derive(Arbitrary, Debug)]
pub enum UriParamG {
    Transport(u8),
    Lr,
    UserPhone,
    Maddr(HostG),
    Ob,
    Raw(String),
}

/// A URI from parts.
#[derive(Arbitrary, Debug)]
pub struct UriParts {
    scheme: SchemeG,
    user: Option<UserG>,
    host: HostG,
    port: Option<PortG>,
    params: Vec<UriParamG>,
    headers: Option<String>,
}

/// A URI.
#[derive(Arbitrary, Debug)]
pub enum UriG {
    Parts(UriParts),
    Raw(Vec<u8>),
}

impl UriG {
    fn render(&self) -> Vec<u8> {
        let p = match self {
            UriG::Raw(b) => return b.clone(),
            UriG::Parts(p) => p,
        };
        let mut s = match &p.scheme {
            SchemeG::Sip => "sip:".to_string(),
            SchemeG::Sips => "sips:".to_string(),
            SchemeG::Upper => "SIP:".to_string(),
            SchemeG::Tel => "tel:".to_string(),
            SchemeG::Http => "http://".to_string(),
            SchemeG::Raw(r) => format!("{r}:"),
        };
        if let Some(u) = &p.user {
            match u {
                UserG::Known(i) => s.push_str(pick(USERS, *i)),
                UserG::Raw(r) => s.push_str(r),
            }
            s.push('@');
        }
        s.push_str(&p.host.render());
        match &p.port {
            None => {}
            Some(PortG::Known(i)) => s.push_str(&format!(":{}", pick(PORTS, *i))),
            Some(PortG::Any(n)) => s.push_str(&format!(":{n}")),
            Some(PortG::Raw(r)) => {
                s.push(':');
                s.push_str(r);
            }
        }
        for prm in &p.params {
            s.push(';');
            match prm {
                UriParamG::Transport(i) => {
                    s.push_str("transport=");
                    s.push_str(pick(&["udp", "tcp", "tls", "ws", "TCP"], *i));
                }
                UriParamG::Lr => s.push_str("lr"),
                UriParamG::UserPhone => s.push_str("user=phone"),
                UriParamG::Maddr(h) => {
                    s.push_str("maddr=");
                    s.push_str(&h.render());
                }
                UriParamG::Ob => s.push_str("ob"),
                UriParamG::Raw(r) => s.push_str(r),
            }
        }
        if let Some(h) = &p.headers {
            s.push('?');
            s.push_str(h);
        }
        s.into_bytes()
    }
}

/// A trivial rewrite of a known URI (loop defence must see through it).
#[derive(Arbitrary, Debug)]
pub enum RewriteG {
    UpperHost,
    DefaultPort,
    Param(UriParamG),
    UpperScheme,
    ToSip,
    ToSips,
}

fn rewrite(base: &[u8], rw: &RewriteG) -> Vec<u8> {
    let s = String::from_utf8_lossy(base).into_owned();
    let at = s
        .find('@')
        .map_or_else(|| s.find(':').map_or(0, |c| c + 1), |a| a + 1);
    let end = s[at..].find([';', '?']).map_or(s.len(), |e| at + e);
    let out = match rw {
        RewriteG::UpperHost => format!("{}{}{}", &s[..at], s[at..end].to_uppercase(), &s[end..]),
        RewriteG::DefaultPort => {
            let host = &s[at..end];
            if host.contains(':') && !host.ends_with(']') {
                s.clone()
            } else {
                let port = if s.get(..5).is_some_and(|p| p.eq_ignore_ascii_case("sips:")) {
                    5061
                } else {
                    5060
                };
                format!("{}:{port}{}", &s[..end], &s[end..])
            }
        }
        RewriteG::Param(p) => {
            let extra = UriG::Parts(UriParts {
                scheme: SchemeG::Raw(String::new()),
                user: None,
                host: HostG::Raw(String::new()),
                port: None,
                params: vec![clone_param(p)],
                headers: None,
            })
            .render();
            // `:` then `;param`: keep the `;param` part.
            let extra = String::from_utf8_lossy(&extra[1..]).into_owned();
            format!("{}{extra}{}", &s[..end], &s[end..])
        }
        RewriteG::UpperScheme => match s.find(':') {
            Some(c) => format!("{}{}", s[..c].to_uppercase(), &s[c..]),
            None => s.clone(),
        },
        RewriteG::ToSip => s.replacen("sips:", "sip:", 1),
        RewriteG::ToSips => s.replacen("sip:", "sips:", 1),
    };
    out.into_bytes()
}

fn clone_param(p: &UriParamG) -> UriParamG {
    match p {
        UriParamG::Transport(i) => UriParamG::Transport(*i),
        UriParamG::Lr => UriParamG::Lr,
        UriParamG::UserPhone => UriParamG::UserPhone,
        UriParamG::Maddr(HostG::Known(i)) => UriParamG::Maddr(HostG::Known(*i)),
        UriParamG::Maddr(HostG::Raw(r)) => UriParamG::Maddr(HostG::Raw(r.clone())),
        UriParamG::Ob => UriParamG::Ob,
        UriParamG::Raw(r) => UriParamG::Raw(r.clone()),
    }
}

/// A registered terminal's contact: `sip:user@127.0.0.1:port` (the proxy
/// listens on 5060 only, so these are not the proxy), or a partner's host.
fn terminal(user: u8, port: u8) -> Vec<u8> {
    let host = match port / 64 {
        0 | 1 => "127.0.0.1",
        2 => "10.0.0.1",
        _ => "ua.partner.example",
    };
    format!(
        "sip:{}@{host}:{}",
        pick(USERS, user),
        5062 + u16::from(port % 8)
    )
    .into_bytes()
}

/// URIs already in the scenario, that a target may name.
#[derive(Default)]
pub struct Known {
    ruri: Vec<u8>,
    regs: Vec<Vec<u8>>,
    branches: Vec<Vec<u8>>,
}

/// A target URI: a new one, or one of the scenario's (maybe rewritten).
#[derive(Arbitrary, Debug)]
pub enum UriRef {
    Local(u8),
    Terminal(u8, u8),
    Reg(u8),
    Branch(u8),
    Ruri,
    Rewrite(u8, RewriteG),
    Fresh(UriG),
}

impl UriRef {
    fn render(&self, k: &Known) -> Vec<u8> {
        let from = |list: &[Vec<u8>], i: u8| {
            if list.is_empty() {
                k.ruri.clone()
            } else {
                list[usize::from(i) % list.len()].clone()
            }
        };
        match self {
            UriRef::Fresh(u) => u.render(),
            UriRef::Reg(i) => from(&k.regs, *i),
            UriRef::Branch(i) => from(&k.branches, *i),
            UriRef::Ruri => k.ruri.clone(),
            UriRef::Local(i) => format!("sip:{}@example.com", pick(USERS, *i)).into_bytes(),
            UriRef::Terminal(u, p) => terminal(*u, *p),
            UriRef::Rewrite(i, rw) => {
                let all: Vec<Vec<u8>> = k
                    .regs
                    .iter()
                    .chain(&k.branches)
                    .chain(std::iter::once(&k.ruri))
                    .cloned()
                    .collect();
                rewrite(&from(&all, *i), rw)
            }
        }
    }
}

// --------------------------------------------------------------- replies

/// A display name.
#[derive(Arbitrary, Debug)]
pub enum DisplayG {
    Known(u8),
    Quoted(String),
    Raw(String),
}

/// A Contact header parameter.
#[derive(Arbitrary, Debug)]
pub enum CParamG {
    Q(u16),
    QRaw(String),
    Expires(u32),
    ExpiresRaw(String),
    Known(u8),
    Ext(String, Option<String>),
}

/// One Contact value.
#[derive(Arbitrary, Debug)]
pub enum ContactG {
    Addr {
        display: Option<DisplayG>,
        angle: bool,
        uri: UriRef,
        params: Vec<CParamG>,
    },
    Star,
    Raw(String),
}

/// An Expires header value.
#[derive(Arbitrary, Debug)]
pub enum ExpiresG {
    Num(u32),
    Raw(String),
}

/// A header line.
#[derive(Arbitrary, Debug)]
pub enum HeaderG {
    Contact {
        name: u8,
        values: Vec<ContactG>,
        fold: bool,
    },
    Expires(ExpiresG),
    Via,
    Other(String, String),
    Raw(Vec<u8>),
}

/// A reply from parts.
#[derive(Arbitrary, Debug)]
pub struct ReplyParts {
    version: u8,
    code: Option<u16>,
    reason: Option<String>,
    lf_only: bool,
    headers: Vec<HeaderG>,
    body: Option<Vec<u8>>,
}

/// A reply (or none: a timeout).
#[derive(Arbitrary, Debug)]
pub enum ReplyG {
    Built(ReplyParts),
    Raw(Vec<u8>),
    Absent,
}

fn qvalue(q: u16) -> String {
    match q % 1001 {
        1000 => "1".into(),
        v if v % 100 == 0 => format!("0.{}", v / 100),
        v => format!("0.{v:03}"),
    }
}

impl ContactG {
    fn render(&self, k: &Known) -> Vec<u8> {
        let (display, angle, uri, params) = match self {
            ContactG::Star => return b"*".to_vec(),
            ContactG::Raw(r) => return r.clone().into_bytes(),
            ContactG::Addr {
                display,
                angle,
                uri,
                params,
            } => (display, angle, uri, params),
        };
        let mut s = Vec::new();
        let angle = *angle || display.is_some();
        if let Some(d) = display {
            match d {
                DisplayG::Known(i) => s.extend_from_slice(
                    pick(
                        &[
                            "Bob",
                            "Carol Ann",
                            "\"Bob, the <boss>\"",
                            "\"\"",
                            "\"a \\\" b\"",
                        ],
                        *i,
                    )
                    .as_bytes(),
                ),
                DisplayG::Quoted(q) => {
                    s.push(b'"');
                    s.extend_from_slice(q.as_bytes());
                    s.push(b'"');
                }
                DisplayG::Raw(r) => s.extend_from_slice(r.as_bytes()),
            }
            s.push(b' ');
        }
        if angle {
            s.push(b'<');
        }
        s.extend_from_slice(&uri.render(k));
        if angle {
            s.push(b'>');
        }
        for p in params {
            s.push(b';');
            let t = match p {
                CParamG::Q(q) => format!("q={}", qvalue(*q)),
                CParamG::QRaw(r) => format!("q={r}"),
                CParamG::Expires(e) => format!("expires={e}"),
                CParamG::ExpiresRaw(r) => format!("expires={r}"),
                CParamG::Known(i) => pick(
                    &[
                        "+sip.instance=\"<urn:uuid:00000000-0000-1000-8000-000A95A0E128>\"",
                        "reg-id=1",
                        "methods=\"MESSAGE, NOTIFY\"",
                        "q=1.000",
                        "q=0",
                        "expires=0",
                        "expires=4294967296",
                    ],
                    *i,
                )
                .to_string(),
                CParamG::Ext(n, v) => match v {
                    Some(v) => format!("{n}={v}"),
                    None => n.clone(),
                },
            };
            s.extend_from_slice(t.as_bytes());
        }
        s
    }
}

impl ReplyG {
    fn render(&self, status: u16, k: &Known) -> Option<Vec<u8>> {
        let p = match self {
            ReplyG::Absent => return None,
            ReplyG::Raw(b) => return Some(b.clone()),
            ReplyG::Built(p) => p,
        };
        let eol: &[u8] = if p.lf_only { b"\n" } else { b"\r\n" };
        let mut r = Vec::new();
        r.extend_from_slice(
            pick(
                &["SIP/2.0", "SIP/2.0", "sip/2.0", "SIP/2.00", "SIP/3.0"],
                p.version,
            )
            .as_bytes(),
        );
        let code = p.code.unwrap_or(status) % 1000;
        r.extend_from_slice(format!(" {code:03}").as_bytes());
        match &p.reason {
            Some(reason) => {
                r.push(b' ');
                r.extend_from_slice(reason.as_bytes());
            }
            None => r.extend_from_slice(b" Moved"),
        }
        r.extend_from_slice(eol);
        for h in &p.headers {
            match h {
                HeaderG::Contact { name, values, fold } => {
                    r.extend_from_slice(
                        pick(&["Contact", "m", "CONTACT", "contact ", "M"], *name).as_bytes(),
                    );
                    r.extend_from_slice(b": ");
                    for (i, v) in values.iter().enumerate() {
                        if i > 0 {
                            r.push(b',');
                            if *fold {
                                r.extend_from_slice(eol);
                            }
                            r.push(b' ');
                        }
                        r.extend_from_slice(&v.render(k));
                    }
                }
                HeaderG::Expires(ExpiresG::Num(n)) => {
                    r.extend_from_slice(format!("Expires: {n}").as_bytes())
                }
                HeaderG::Expires(ExpiresG::Raw(v)) => {
                    r.extend_from_slice(format!("Expires: {v}").as_bytes())
                }
                HeaderG::Via => {
                    r.extend_from_slice(b"Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK776asdhds")
                }
                HeaderG::Other(n, v) => r.extend_from_slice(format!("{n}: {v}").as_bytes()),
                HeaderG::Raw(b) => r.extend_from_slice(b),
            }
            r.extend_from_slice(eol);
        }
        r.extend_from_slice(eol);
        if let Some(b) = &p.body {
            r.extend_from_slice(b);
        }
        Some(r)
    }
}

/// A memo.
#[derive(Arbitrary, Debug)]
pub enum MemoG {
    Empty,
    Built {
        redirects: u8,
        pending: Vec<(UriRef, Option<u16>)>,
    },
    Raw(Vec<u8>),
}

impl MemoG {
    fn render(&self, k: &Known) -> Vec<u8> {
        match self {
            MemoG::Empty => Vec::new(),
            MemoG::Raw(b) => b.clone(),
            MemoG::Built { redirects, pending } => {
                let mut m = format!("pr1 {}\n", redirects % 20).into_bytes();
                for (u, q) in pending {
                    match q {
                        Some(q) => m.extend_from_slice((q % 1001).to_string().as_bytes()),
                        None => m.push(b'-'),
                    }
                    m.push(b' ');
                    m.extend_from_slice(&u.render(k));
                    m.push(b'\n');
                }
                m
            }
        }
    }
}

/// A status code.
#[derive(Arbitrary, Debug)]
pub enum StatusG {
    Known(u8),
    Any(u16),
}

impl StatusG {
    fn get(&self) -> u16 {
        match self {
            StatusG::Known(i) => pick(STATUSES, *i),
            StatusG::Any(n) => *n,
        }
    }
}

// ---------------------------------------------------------------- config

/// A module parameter with a valid value.
#[derive(Arbitrary, Debug)]
pub enum ParamG {
    Methods(Vec<(u8, Option<String>)>),
    FailoverCodes(Vec<u16>),
    ForkMode(bool, u8),
    MaxBranches(u8),
    MaxDepth(u8),
    AllowedDomains(Vec<(u8, Option<(bool, String)>)>),
    LocationTable(u8),
    BranchTimeout(u32),
    HistoryInfo(bool),
    Store(u8),
}

impl ParamG {
    /// `(name, value)`, a value `Config::set` must accept.
    pub fn render(&self) -> (String, String) {
        let (n, v) = match self {
            ParamG::Methods(list) => {
                let mut m: Vec<String> = list
                    .iter()
                    .map(|(i, raw)| {
                        let s = match raw {
                            Some(r) => r.chars().filter(char::is_ascii_alphabetic).collect(),
                            None => pick(METHODS, *i).to_string(),
                        };
                        let bad = ["INVITE", "ACK", "CANCEL", "BYE", "REGISTER"];
                        if s.is_empty() || bad.iter().any(|b| b.eq_ignore_ascii_case(&s)) {
                            "MESSAGE".to_string()
                        } else {
                            s
                        }
                    })
                    .collect();
                if m.is_empty() {
                    m.push("NOTIFY".into());
                }
                ("methods", m.join(", "))
            }
            ParamG::FailoverCodes(c) => {
                let c: Vec<String> = c
                    .iter()
                    .map(|c| match 400 + c % 200 {
                        401 | 407 => "408".to_string(),
                        c => c.to_string(),
                    })
                    .collect();
                ("failover_codes", c.join(","))
            }
            ParamG::ForkMode(par, case) => {
                let m = if *par { "parallel" } else { "serial" };
                let m = match case % 3 {
                    0 => m.to_string(),
                    1 => m.to_uppercase(),
                    _ => format!(" {}{} ", m[..1].to_uppercase(), &m[1..]),
                };
                ("fork_mode", m)
            }
            ParamG::MaxBranches(n) => ("max_branches", (1 + u32::from(*n) % 64).to_string()),
            ParamG::MaxDepth(n) => ("max_depth", (1 + u32::from(*n) % 16).to_string()),
            ParamG::AllowedDomains(list) => {
                let d: Vec<String> = list
                    .iter()
                    .map(|(i, raw)| match raw {
                        None => pick(DOMAINS, *i).to_string(),
                        Some((star, r)) => {
                            let h: String = r
                                .chars()
                                .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '.')
                                .collect();
                            let h = if h.is_empty() { "x".to_string() } else { h };
                            if *star {
                                format!("*.{h}")
                            } else {
                                h
                            }
                        }
                    })
                    .collect();
                ("allowed_domains", d.join(", "))
            }
            ParamG::LocationTable(i) => (
                "location_table",
                pick(&["location", "location_push", "loc2"], *i).to_string(),
            ),
            ParamG::BranchTimeout(n) => ("branch_timeout", (100 + n % 599_901).to_string()),
            ParamG::HistoryInfo(b) => ("history_info", if *b { "1" } else { "0" }.to_string()),
            ParamG::Store(i) => (
                "store",
                pick(&["/tmp/push_redirect_fuzz.sqlite", "x"], *i).to_string(),
            ),
        };
        (n.to_string(), v)
    }
}

// ---------------------------------------------------------------- engine

/// `allowed_domains` of the baseline.
const BASE_DOMAINS: &str = "*.partner.example, partner.example, 10.0.0.1";
/// Registrations of the baseline: (AOR, contact, q); "" is the
/// Request-URI's AOR.
const BASE_REGS: &[(&str, &str, Option<u16>)] = &[
    ("", "sip:alice@127.0.0.1:5062", Some(1000)),
    ("", "sip:alice@127.0.0.1:5063;transport=tcp", Some(500)),
    ("", "sips:alice@127.0.0.1:5064", None),
    ("sip:bob@example.com", "sip:bob@127.0.0.1:5065", None),
    (
        "sip:bob@example.com",
        "sip:bob@ua.partner.example",
        Some(100),
    ),
    ("sips:carol@example.com", "sips:carol@127.0.0.1:5066", None),
];

/// The Request-URI.
#[derive(Arbitrary, Debug)]
pub enum RuriG {
    Local { sips: bool, user: u8 },
    Other(UriG),
}

impl RuriG {
    fn render(&self) -> Vec<u8> {
        match self {
            RuriG::Local { sips, user } => format!(
                "{}:{}@example.com",
                if *sips { "sips" } else { "sip" },
                pick(USERS, *user)
            )
            .into_bytes(),
            RuriG::Other(u) => u.render(),
        }
    }
}

/// A header body from a short list, or raw.
#[derive(Arbitrary, Debug)]
pub enum TextPick {
    Known(u8),
    Raw(Vec<u8>),
}

impl TextPick {
    fn render(&self, list: &[&str]) -> Vec<u8> {
        match self {
            TextPick::Known(i) => pick(list, *i).as_bytes().to_vec(),
            TextPick::Raw(b) => b.clone(),
        }
    }
}

const EVENTS: &[&str] = &[
    "ua-profile",
    "message-summary",
    "presence;id=1",
    "conference",
    "",
];
const CTYPES: &[&str] = &[
    "text/plain",
    "application/im-iscomposing+xml",
    "TEXT/Plain; charset=utf-8",
    "message/cpim",
    " ",
];

/// The request.
#[derive(Arbitrary, Debug)]
pub struct RequestG {
    method: TextPick,
    ruri: RuriG,
    to_tag: u8,
    event: Option<TextPick>,
    content_type: Option<TextPick>,
}

/// Whose AOR a registration is.
#[derive(Arbitrary, Debug)]
pub enum AorG {
    Ruri,
    Local(u8),
    Other(UriG),
}

impl AorG {
    fn render(&self, ruri: &[u8]) -> Vec<u8> {
        match self {
            AorG::Ruri => ruri.to_vec(),
            AorG::Local(i) => format!("sip:{}@example.com", pick(USERS, *i)).into_bytes(),
            AorG::Other(u) => u.render(),
        }
    }
}

/// The key the engine looks an AOR up by.
fn aor_key(raw: &[u8]) -> String {
    uri::parse(raw).map_or_else(|_| String::from_utf8_lossy(raw).into_owned(), |u| u.aor())
}

/// A registration.
#[derive(Arbitrary, Debug)]
pub struct RegG {
    aor: AorG,
    uri: UriRef,
    received: Option<u8>,
    path: Option<u8>,
    instance: Option<String>,
    socket: u8,
    q: Option<u16>,
    age: u8,
}

/// A branch.
#[derive(Arbitrary, Debug)]
pub struct BranchG {
    uri: UriRef,
    status: StatusG,
    reply: ReplyG,
    current: bool,
}

/// A stored forwarding.
#[derive(Arbitrary, Debug)]
pub struct StoredG {
    kind: u8,
    targets: Vec<(UriRef, Option<u16>)>,
    expires: Option<i16>,
}

/// Everything the `engine` target needs.
#[derive(Arbitrary, Debug)]
pub struct EngineInput {
    baseline: u8,
    params: Vec<ParamG>,
    branch_limit: Option<u8>,
    own_default: u8,
    own: Vec<(HostG, Option<u16>)>,
    lookup_fails: u8,
    regs: Vec<RegG>,
    request: RequestG,
    branches: Vec<BranchG>,
    memo: MemoG,
    mode: Option<bool>,
    stored: Option<StoredG>,
    followups: Vec<(StatusG, ReplyG)>,
}

impl EngineInput {
    /// The plain case.
    pub fn build(&self) -> engine::Case {
        const NOW: i64 = 1_000_000;
        let mut k = Known {
            ruri: self.request.ruri.render(),
            ..Known::default()
        };
        let mut own = Vec::new();
        if self.own_default < 224 {
            own.push((b"example.com".to_vec(), None));
            own.push((b"127.0.0.1".to_vec(), Some(5060)));
        }
        own.extend(self.own.iter().map(|(h, p)| (h.render().into_bytes(), *p)));
        let mut location = Vec::new();
        let mut params = Vec::new();
        if self.baseline < 224 {
            // A usual deployment: partners allowed, a few terminals
            // registered (the input can switch it off, or override it).
            params.push(("allowed_domains".to_string(), BASE_DOMAINS.to_string()));
            for (aor, uri, q) in BASE_REGS {
                let aor = if aor.is_empty() {
                    aor_key(&k.ruri)
                } else {
                    aor.to_string()
                };
                k.regs.push(uri.as_bytes().to_vec());
                location.push((
                    aor,
                    Registration {
                        uri: uri.as_bytes().to_vec(),
                        received: None,
                        path: Some(b"<sip:edge@127.0.0.1;lr>".to_vec()),
                        instance: None,
                        socket: 7,
                        q: *q,
                        last_modified: NOW - 10,
                        ..Registration::default()
                    },
                ));
            }
        }
        params.extend(self.params.iter().map(ParamG::render));
        for r in &self.regs {
            let aor = aor_key(&r.aor.render(&k.ruri));
            let uri = r.uri.render(&k);
            k.regs.push(uri.clone());
            location.push((
                aor,
                Registration {
                    uri,
                    received: r.received.map(|i| {
                        pick(&["sip:127.0.0.1:5062;received", "", "sip:[::1]:5070"], i)
                            .as_bytes()
                            .to_vec()
                    }),
                    path: r.path.map(|i| {
                        pick(&["<sip:edge@127.0.0.1;lr>", "", "<sip:a;lr>,<sip:b;lr>"], i)
                            .as_bytes()
                            .to_vec()
                    }),
                    instance: r.instance.as_ref().map(|s| s.clone().into_bytes()),
                    socket: usize::from(r.socket),
                    q: r.q.map(|q| q % 1001),
                    last_modified: NOW - i64::from(r.age),
                    ..Registration::default()
                },
            ));
        }
        let mut branches = Vec::new();
        for b in &self.branches {
            let uri = b.uri.render(&k);
            let status = b.status.get();
            let reply = b.reply.render(status, &k);
            k.branches.push(uri.clone());
            branches.push(engine::BranchCase {
                uri,
                status,
                reply,
                current: b.current,
            });
        }
        let memo = self.memo.render(&k);
        let stored = self.stored.as_ref().map(|s| Forwarding {
            kind: match s.kind % 3 {
                0 => ForwardingKind::Permanent,
                1 => ForwardingKind::Temporary,
                _ => ForwardingKind::Provisioned,
            },
            targets: s
                .targets
                .iter()
                .map(|(u, q)| ForwardTarget {
                    uri: String::from_utf8_lossy(&u.render(&k)).into_owned(),
                    q: q.map(|q| q % 1001),
                    instance: None,
                })
                .collect(),
            expires_at: s.expires.map(|d| NOW + i64::from(d)),
        });
        let followups = self
            .followups
            .iter()
            .map(|(s, r)| {
                let status = s.get();
                (status, r.render(status, &k))
            })
            .collect();
        let req = &self.request;
        engine::Case {
            params,
            branch_limit: self.branch_limit.map_or(12, |n| 1 + usize::from(n % 24)),
            own,
            now: NOW,
            lookup_fails: self.lookup_fails >= 240,
            location,
            method: String::from_utf8_lossy(&req.method.render(&[
                "MESSAGE", "NOTIFY", "notify", "OPTIONS", "PUBLISH", "INVITE",
            ]))
            .into_owned(),
            ruri: k.ruri.clone(),
            has_to_tag: req.to_tag >= 240,
            event: req.event.as_ref().map(|e| e.render(EVENTS)),
            content_type: req.content_type.as_ref().map(|c| c.render(CTYPES)),
            branches,
            memo,
            mode: self.mode.map(|p| {
                if p {
                    ForkMode::Parallel
                } else {
                    ForkMode::Serial
                }
            }),
            stored,
            followups,
        }
    }
}

// ----------------------------------------------------------------- C ABI

/// A `(ptr, len)` argument around some content: usually the exact bytes,
/// sometimes inside a larger buffer, sometimes NULL.
#[derive(Arbitrary, Debug)]
pub struct SliceG<T> {
    kind: u8,
    pad: u8,
    content: T,
}

impl<T> SliceG<T> {
    fn wrap(&self, content: Vec<u8>) -> c_abi::Slice {
        match self.kind {
            0..=199 => c_abi::Slice::Buf {
                len: content.len(),
                buf: content,
                off: 0,
            },
            200..=239 => {
                let (pre, post) = (usize::from(self.pad % 16), usize::from(self.pad / 16));
                let mut buf = vec![b'X'; pre];
                buf.extend_from_slice(&content);
                buf.extend(std::iter::repeat_n(b'\0', post));
                c_abi::Slice::Buf {
                    buf,
                    off: pre,
                    len: content.len(),
                }
            }
            240..=249 => c_abi::Slice::Null(0),
            _ => c_abi::Slice::Null(1 + usize::from(self.pad)),
        }
    }
}

/// Content that renders to bytes.
pub trait Render {
    /// The bytes.
    fn bytes(&self, k: &Known) -> Vec<u8>;
}

impl Render for Vec<u8> {
    fn bytes(&self, _: &Known) -> Vec<u8> {
        self.clone()
    }
}

impl Render for UriG {
    fn bytes(&self, _: &Known) -> Vec<u8> {
        self.render()
    }
}

impl Render for UriRef {
    fn bytes(&self, k: &Known) -> Vec<u8> {
        self.render(k)
    }
}

impl Render for RuriG {
    fn bytes(&self, _: &Known) -> Vec<u8> {
        self.render()
    }
}

/// A method name.
#[derive(Arbitrary, Debug)]
pub struct MethodC(TextPick);

impl Render for MethodC {
    fn bytes(&self, _: &Known) -> Vec<u8> {
        self.0
            .render(&["MESSAGE", "NOTIFY", "message", "INVITE", "OPTIONS"])
    }
}

/// A fork mode string.
#[derive(Arbitrary, Debug)]
pub struct ModeC(TextPick);

impl Render for ModeC {
    fn bytes(&self, _: &Known) -> Vec<u8> {
        self.0
            .render(&["", "serial", "parallel", "Parallel", "SERIAL", "random"])
    }
}

/// An optional header body (Event / Content-Type / To-tag / Call-ID).
#[derive(Arbitrary, Debug)]
pub struct HeaderC(Option<TextPick>);

impl Render for HeaderC {
    fn bytes(&self, _: &Known) -> Vec<u8> {
        self.0.as_ref().map_or_else(Vec::new, |t| {
            t.render(&["text/plain", "ua-profile", "abc123", "x"])
        })
    }
}

impl Render for Option<u8> {
    fn bytes(&self, _: &Known) -> Vec<u8> {
        self.map_or_else(Vec::new, |i| {
            pick(
                &[
                    "sip:127.0.0.1:5062;received",
                    "<sip:edge@127.0.0.1;lr>",
                    "sip:[::1]",
                ],
                i,
            )
            .as_bytes()
            .to_vec()
        })
    }
}

/// A reply for a branch of the C ABI (status taken from the reply's own
/// status line, or 302).
#[derive(Arbitrary, Debug)]
pub struct ReplyC(ReplyG);

impl Render for ReplyC {
    fn bytes(&self, k: &Known) -> Vec<u8> {
        self.0.render(302, k).unwrap_or_default()
    }
}

/// A memo.
#[derive(Arbitrary, Debug)]
pub struct MemoCG(MemoG);

impl Render for MemoCG {
    fn bytes(&self, k: &Known) -> Vec<u8> {
        self.0.render(k)
    }
}

impl<T: Render> SliceG<T> {
    fn build(&self, k: &Known) -> c_abi::Slice {
        self.wrap(self.content.bytes(k))
    }
}

/// A `pr_config_set` call.
#[derive(Arbitrary, Debug)]
pub enum ConfigOpG {
    Valid(ParamG, u8),
    Value(u8, SliceG<Vec<u8>>),
    Raw(SliceG<Vec<u8>>, SliceG<Vec<u8>>),
}

const PARAM_NAMES: &[&str] = &[
    "methods",
    "failover_codes",
    "fork_mode",
    "max_branches",
    "max_depth",
    "allowed_domains",
    "location_table",
    "branch_timeout",
    "history_info",
    "store",
    "no_such_param",
];

/// A q argument.
#[derive(Arbitrary, Debug)]
pub enum QG {
    Valid(Option<u16>),
    Raw(i32),
}

impl QG {
    fn get(&self) -> i32 {
        match self {
            QG::Valid(q) => q.map_or(-1, |q| i32::from(q % 1001)),
            QG::Raw(q) => *q,
        }
    }
}

/// A contact the lookup callback reports.
#[derive(Arbitrary, Debug)]
pub struct ContactCG {
    aor: Option<AorG>,
    uri: SliceG<UriRef>,
    received: SliceG<Option<u8>>,
    path: SliceG<Option<u8>>,
    instance: SliceG<Vec<u8>>,
    socket: u8,
    q: QG,
    last_modified: i64,
}

/// A `pr_branch`.
#[derive(Arbitrary, Debug)]
pub struct BranchCG {
    uri: SliceG<UriRef>,
    status: StatusCG,
    reply: SliceG<ReplyC>,
    current: bool,
}

/// A `pr_branch.status`.
#[derive(Arbitrary, Debug)]
pub enum StatusCG {
    Known(u8),
    Raw(u32),
}

/// The memo argument.
#[derive(Arbitrary, Debug)]
pub enum MemoArgG {
    Previous,
    Bytes(SliceG<MemoCG>),
}

/// A call.
#[derive(Arbitrary, Debug)]
pub enum CallG {
    Lookup {
        mode: SliceG<ModeC>,
        stored: bool,
    },
    Redirect {
        mode: SliceG<ModeC>,
        stored: bool,
        memo: MemoArgG,
        misuse: u8,
        branches: Vec<BranchCG>,
    },
    RpcSet(
        SliceG<AorC>,
        SliceG<UriRef>,
        SliceG<Vec<u8>>,
        SliceG<Vec<u8>>,
    ),
    RpcRemove(SliceG<AorC>, SliceG<Vec<u8>>),
    RpcList(SliceG<AorC>),
}

/// An AOR argument.
#[derive(Arbitrary, Debug)]
pub struct AorC(AorG);

impl Render for AorC {
    fn bytes(&self, k: &Known) -> Vec<u8> {
        self.0.render(&k.ruri)
    }
}

/// The expiry of the stored forwarding.
#[derive(Arbitrary, Debug)]
pub enum ExpG {
    Never,
    Past,
    Future,
    Raw(i64),
}

/// The stored forwarding.
#[derive(Arbitrary, Debug)]
pub struct StoredCG {
    kind: u8,
    expires: ExpG,
    targets: Vec<(SliceG<UriRef>, QG)>,
}

/// Everything the `c_abi` target needs.
#[derive(Arbitrary, Debug)]
pub struct CAbiInput {
    baseline: u8,
    log_level: u8,
    text_len: u8,
    probes: Vec<u8>,
    config: Vec<ConfigOpG>,
    free_config_early: bool,
    lookup: u8,
    contacts: Vec<ContactCG>,
    contact_repeat: u8,
    is_self: u8,
    own_default: u8,
    own: Vec<(HostG, u16)>,
    branch_limit: Option<u8>,
    method: SliceG<MethodC>,
    ruri: SliceG<RuriG>,
    to_tag: SliceG<HeaderC>,
    event: SliceG<HeaderC>,
    content_type: SliceG<HeaderC>,
    call_id: SliceG<HeaderC>,
    null_request: u8,
    stored: Option<StoredCG>,
    calls: Vec<CallG>,
}

impl CAbiInput {
    /// The plain case.
    pub fn build(&self) -> c_abi::Case {
        let cb = |v: u8| match v {
            0..=223 => c_abi::Callback::Answer,
            224..=239 => c_abi::Callback::Fail,
            _ => c_abi::Callback::Null,
        };
        let mut k = Known::default();
        let ruri = self.ruri.build(&k);
        k.ruri = ruri.content().map(<[u8]>::to_vec).unwrap_or_default();
        let base = self.baseline < 224;
        let mut config: Vec<(c_abi::Slice, c_abi::Slice)> = Vec::new();
        let mut contacts = Vec::new();
        if base {
            config.push((
                c_abi::Slice::of(b"allowed_domains"),
                c_abi::Slice::of(BASE_DOMAINS.as_bytes()),
            ));
            for (aor, uri, q) in BASE_REGS {
                let aor = if aor.is_empty() {
                    aor_key(&k.ruri)
                } else {
                    aor.to_string()
                };
                k.regs.push(uri.as_bytes().to_vec());
                contacts.push(c_abi::ContactC {
                    aor: Some(aor.into_bytes()),
                    uri: c_abi::Slice::of(uri.as_bytes()),
                    received: c_abi::Slice::of(b"sip:127.0.0.1:5062;received"),
                    path: c_abi::Slice::Null(0),
                    instance: c_abi::Slice::Null(0),
                    socket: 7,
                    q: q.map_or(-1, i32::from),
                    last_modified: 1_000_000,
                });
            }
        }
        config.extend(self.config.iter().map(|op| match op {
            ConfigOpG::Valid(p, pad) => {
                let (n, v) = p.render();
                let wrap = SliceG {
                    kind: pad % 2 * 200,
                    pad: *pad,
                    content: (),
                };
                (wrap.wrap(n.into_bytes()), wrap.wrap(v.into_bytes()))
            }
            ConfigOpG::Value(i, v) => (
                c_abi::Slice::of(pick(PARAM_NAMES, *i).as_bytes()),
                v.build(&k),
            ),
            ConfigOpG::Raw(n, v) => (n.build(&k), v.build(&k)),
        }));
        for c in &self.contacts {
            let uri = c.uri.build(&k);
            if let Ok(u) = uri.content() {
                k.regs.push(u.to_vec());
            }
            contacts.push(c_abi::ContactC {
                aor: c
                    .aor
                    .as_ref()
                    .map(|a| aor_key(&a.render(&k.ruri)).into_bytes()),
                uri,
                received: c.received.build(&k),
                path: c.path.build(&k),
                instance: c.instance.build(&k),
                socket: usize::from(c.socket),
                q: c.q.get(),
                last_modified: c.last_modified,
            });
        }
        let mut own = Vec::new();
        if self.own_default < 224 {
            own.push((b"example.com".to_vec(), 0));
            own.push((b"127.0.0.1".to_vec(), 5060));
        }
        own.extend(self.own.iter().map(|(h, p)| (h.render().into_bytes(), *p)));
        let stored = self.stored.as_ref().map(|s| c_abi::StoredC {
            kind: match s.kind {
                0..=249 => 1 + u32::from(s.kind % 3),
                k => u32::from(k) * 1000,
            },
            expires_at: match s.expires {
                ExpG::Never => -1,
                ExpG::Past => 1_000_000,
                ExpG::Future => 4_000_000_000,
                ExpG::Raw(t) => t,
            },
            targets: s
                .targets
                .iter()
                .map(|(u, q)| (u.build(&k), q.get()))
                .collect(),
        });
        let mut calls = Vec::new();
        for c in &self.calls {
            calls.push(match c {
                CallG::Lookup { mode, stored } => c_abi::CallC::Lookup {
                    mode: mode.build(&k),
                    stored: *stored,
                },
                CallG::Redirect {
                    mode,
                    stored,
                    memo,
                    misuse,
                    branches,
                } => {
                    let mut bs = Vec::new();
                    for b in branches {
                        let uri = b.uri.build(&k);
                        if let Ok(u) = uri.content() {
                            k.branches.push(u.to_vec());
                        }
                        bs.push(c_abi::BranchC {
                            uri,
                            status: match b.status {
                                StatusCG::Known(i) => u32::from(pick(STATUSES, i)),
                                StatusCG::Raw(s) => s,
                            },
                            reply: b.reply.build(&k),
                            current: b.current,
                        });
                    }
                    c_abi::CallC::Redirect {
                        mode: mode.build(&k),
                        stored: *stored,
                        memo: match memo {
                            MemoArgG::Previous => c_abi::MemoC::Previous,
                            MemoArgG::Bytes(m) => c_abi::MemoC::Bytes(m.build(&k)),
                        },
                        null_branches: *misuse == 255,
                        oversize: *misuse == 254,
                        branches: bs,
                    }
                }
                CallG::RpcSet(a, t, s, l) => {
                    c_abi::CallC::RpcSet([a.build(&k), t.build(&k), s.build(&k), l.build(&k)])
                }
                CallG::RpcRemove(a, s) => c_abi::CallC::RpcRemove([a.build(&k), s.build(&k)]),
                CallG::RpcList(a) => c_abi::CallC::RpcList(a.build(&k)),
            });
        }
        c_abi::Case {
            log_level: u32::from(self.log_level % 6),
            text_len: usize::from(self.text_len),
            probes: self.probes.iter().map(|p| u32::from(*p % 48)).collect(),
            config,
            free_config_early: self.free_config_early,
            lookup: cb(self.lookup),
            contacts,
            contact_repeat: if self.contact_repeat == 255 { 1100 } else { 0 },
            is_self: cb(self.is_self),
            own,
            branch_limit: self.branch_limit.map(|n| u32::from(n % 24)),
            request: [
                self.method.build(&k),
                ruri,
                self.to_tag.build(&k),
                self.event.build(&k),
                self.content_type.build(&k),
                self.call_id.build(&k),
            ],
            null_request: self.null_request == 255,
            stored,
            calls,
        }
    }
}
