//! A fake Kamailio for the engine: a location table, the proxy's own
//! addresses, a clock.
#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::Arc;

use push_redirect::engine::{Branch, Forwarding, Host, LookupError, Registration, Request};

#[derive(Clone)]
pub struct FakeHost {
    /// AOR (`sip:user@host`) -> registrations.
    pub location: HashMap<String, Vec<Registration>>,
    /// Hosts that are the proxy, with the port each listens on (None: any).
    pub own: Vec<(&'static str, Option<u16>)>,
    pub now: i64,
    pub lookup_fails: bool,
    /// The forwarding stored for any (AOR, service) it is asked about.
    pub stored: Option<Forwarding>,
    /// How many times the engine read the store.
    pub stored_reads: std::cell::Cell<u32>,
}

impl Default for FakeHost {
    fn default() -> Self {
        FakeHost {
            location: HashMap::new(),
            own: vec![("example.com", None), ("127.0.0.1", Some(5060))],
            now: 1_000_000,
            lookup_fails: false,
            stored: None,
            stored_reads: std::cell::Cell::new(0),
        }
    }
}

impl FakeHost {
    /// This host with `f` stored for every (AOR, service).
    pub fn storing(&self, f: &Forwarding) -> FakeHost {
        FakeHost {
            stored: Some(f.clone()),
            ..self.clone()
        }
    }

    /// Registers a terminal `sip:<name>@127.0.0.1:<port>` for `aor` with
    /// q (thousandths) and a registration time; its socket cookie is the port.
    pub fn register(
        &mut self,
        aor: &str,
        name: &str,
        port: u16,
        q: Option<u16>,
        at: i64,
    ) -> &mut Self {
        self.location.entry(aor.to_string()).or_default().push({
            let mut r = Registration::new(format!("sip:{name}@127.0.0.1:{port}").as_bytes());
            r.set_received(Some(format!("sip:127.0.0.1:{port};received").as_bytes()));
            r.set_path(Some(format!("<sip:edge{port}@127.0.0.1;lr>").as_bytes()));
            r.socket = port as usize;
            r.q = q;
            r.last_modified = at;
            r
        });
        self
    }
}

impl Host for FakeHost {
    fn lookup(&self, aor: &str) -> Result<Vec<Registration>, LookupError> {
        if self.lookup_fails {
            return Err(LookupError);
        }
        Ok(self.location.get(aor).cloned().unwrap_or_default())
    }

    fn is_self(&self, host: &[u8], port: Option<u16>) -> bool {
        self.own.iter().any(|(h, p)| {
            host.eq_ignore_ascii_case(h.as_bytes())
                && match (p, port) {
                    (Some(p), Some(port)) => *p == port,
                    _ => true,
                }
        })
    }

    fn now(&self) -> i64 {
        self.now
    }

    fn stored(&self, _aor: &str, _service: &str) -> Option<Arc<Forwarding>> {
        self.stored_reads.set(self.stored_reads.get() + 1);
        self.stored.clone().map(Arc::new)
    }
}

pub fn message(ruri: &str) -> Request<'_> {
    Request {
        method: "MESSAGE",
        ruri: ruri.as_bytes(),
        has_to_tag: false,
        event: None,
        content_type: Some(b"text/plain"),
        history_info: &[],
        privacy: None,
        method_bit: METHOD_MESSAGE,
    }
}

/// Kamailio's `METHOD_MESSAGE` and `METHOD_NOTIFY` bits.
pub const METHOD_MESSAGE: u32 = 256;
pub const METHOD_NOTIFY: u32 = 128;

/// A reply with the given status line and header lines.
pub fn reply(status: &str, headers: &[&str]) -> Vec<u8> {
    let mut r = format!("SIP/2.0 {status}\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK1\r\nCall-ID: c1\r\nCSeq: 1 MESSAGE\r\n");
    for h in headers {
        r.push_str(h);
        r.push_str("\r\n");
    }
    r.push_str("Content-Length: 0\r\n\r\n");
    r.into_bytes()
}

/// A finished branch with an owned URI and reply.
pub struct B {
    pub uri: String,
    pub status: u16,
    pub reply: Option<Vec<u8>>,
    pub current: bool,
}

pub fn b(uri: &str, status: &str, headers: &[&str]) -> B {
    let code = status.get(..3).and_then(|c| c.parse().ok()).unwrap_or(0);
    B {
        uri: uri.to_string(),
        status: code,
        reply: Some(reply(status, headers)),
        current: true,
    }
}

/// A branch that timed out (tm's local 408, no reply bytes).
pub fn timeout(uri: &str) -> B {
    B {
        uri: uri.to_string(),
        status: 408,
        reply: None,
        current: true,
    }
}

impl B {
    pub fn earlier(mut self) -> Self {
        self.current = false;
        self
    }
}

pub fn branches(list: &[B]) -> Vec<Branch<'_>> {
    list.iter()
        .map(|x| Branch {
            uri: x.uri.as_bytes(),
            status: x.status,
            reply: x.reply.as_deref(),
            current_round: x.current,
        })
        .collect()
}
