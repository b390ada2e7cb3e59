//! `history_info`: raw bytes as a request's History-Info rows (split at
//! line feeds) and Privacy header (the first row, when it starts with
//! `P:`), through the History-Info parser and a transaction of three
//! rounds (push_lookup, a timeout, a 302). Checks: the parser is zero-copy
//! and bounded; whatever the rows, the routing is the same as without
//! them; every value the engine writes parses back (RFC 7044 ABNF) with
//! unique indexes, each after its parent and each `rc`/`mp` naming it.

use std::sync::Arc;

use push_redirect::config::Config;
use push_redirect::engine::history::{last_incoming, parse_entries, MAX_INCOMING_ENTRIES};
use push_redirect::engine::{
    Branch, Decision, Engine, FailedRound, Forwarding, Host, LookupError, Registration, Request,
};

struct TwoTerminals;

impl Host for TwoTerminals {
    fn lookup(&self, aor: &str) -> Result<Vec<Registration>, LookupError> {
        if aor != "sip:u1@example.com" {
            return Ok(Vec::new());
        }
        Ok([(5071u16, 1000u16), (5072, 500)]
            .iter()
            .map(|&(port, q)| {
                let mut r = Registration::new(format!("sip:t{port}@127.0.0.1:{port}").as_bytes());
                r.q = Some(q);
                r.last_modified = 1;
                r
            })
            .collect())
    }
    fn is_self(&self, host: &[u8], _port: Option<u16>) -> bool {
        host.eq_ignore_ascii_case(b"example.com")
    }
    fn now(&self) -> i64 {
        1_000
    }
    fn stored(&self, _aor: &str, _service: &str) -> Option<Arc<Forwarding>> {
        None
    }
}

/// Whether `part` is a sub-slice of `whole`.
fn within(whole: &[u8], part: &[u8]) -> bool {
    let (w, p) = (whole.as_ptr() as usize, part.as_ptr() as usize);
    part.is_empty() || (p >= w && p + part.len() <= w + whole.len())
}

/// A History-Info value the engine wrote parses back as a tree, whose
/// top entry may extend an entry of the request's own rows (`incoming`).
pub fn check_value(v: &[u8], incoming: &[&[u8]]) {
    let mut idx: Vec<String> = Vec::new();
    if last_incoming(incoming).is_ok() {
        for row in incoming {
            let _ = parse_entries(row, MAX_INCOMING_ENTRIES, |e| idx.push(e.index.to_string()));
        }
    }
    let known = idx.len();
    let n = parse_entries(v, usize::MAX, |e| {
        let index = e.index.to_string();
        assert!(!idx[known..].contains(&index), "index {index} twice");
        let parent = e.index.parent();
        if let Some(p) = parent {
            assert!(idx.contains(&p.to_string()), "{index} before its parent");
        }
        let via = e.rc.or(e.mp);
        assert_eq!(via, parent, "rc/mp of {index}");
        idx.push(index);
    })
    .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(v)));
    assert!(n >= 1);
}

fn uris(d: &Decision) -> Vec<Vec<u8>> {
    d.branches.iter().map(|b| b.uri().to_vec()).collect()
}

/// Runs one input; panics on a broken promise.
pub fn run(data: &[u8]) {
    let mut rows: Vec<&[u8]> = data.split(|&c| c == b'\n').collect();
    let privacy = match rows.first() {
        Some(r) if r.starts_with(b"P:") => {
            let p = r.get(2..).unwrap_or(&[]);
            rows.remove(0);
            Some(p)
        }
        _ => None,
    };
    // The parser: zero-copy, at most its cap of entries.
    for row in &rows {
        let mut n = 0;
        let _ = parse_entries(row, MAX_INCOMING_ENTRIES, |e| {
            assert!(within(row, e.uri));
            n += 1;
        });
        assert!(n <= MAX_INCOMING_ENTRIES);
    }
    let _ = last_incoming(&rows);

    let mut c = Config::default();
    c.set("diversion", "1").expect("diversion");
    let e = Engine::new(c);
    let host = TwoTerminals;
    let mut req = Request {
        method: "MESSAGE",
        ruri: b"sip:u1@example.com",
        has_to_tag: false,
        event: None,
        content_type: Some(b"text/plain"),
        history_info: &rows,
        privacy,
        method_bit: 0,
    };
    let plain = Request {
        history_info: &[],
        privacy: None,
        ..req
    };
    let d = e.push_lookup(&host, &req, None);
    assert_eq!(uris(&d), uris(&e.push_lookup(&host, &plain, None)));
    for b in &d.branches {
        if !b.history_info.is_empty() {
            check_value(&b.history_info, &rows);
        }
    }
    // Round two: the first terminal timed out.
    let Some(first) = d.branches.first() else {
        return;
    };
    let t1 = first.uri().to_vec();
    let one = [Branch {
        uri: &t1,
        status: 408,
        reply: None,
        current_round: true,
    }];
    let r2 = e.push_redirect(
        &host,
        &req,
        &FailedRound {
            branches: &one,
            memo: &d.memo,
        },
        None,
    );
    let p2 = e.push_redirect(
        &host,
        &plain,
        &FailedRound {
            branches: &one,
            memo: &d.memo,
        },
        None,
    );
    assert_eq!(uris(&r2), uris(&p2));
    for b in &r2.branches {
        check_value(&b.history_info, &rows);
    }
    // Round three: the second redirects to a foreign target (refused by
    // policy: none allowed) and to the first terminal (tried): nothing.
    let Some(second) = r2.branches.first() else {
        return;
    };
    let t2 = second.uri().to_vec();
    let reply =
        b"SIP/2.0 302 Moved\r\nContact: <sip:t5071@127.0.0.1:5071>\r\nContent-Length: 0\r\n\r\n";
    let two = [
        Branch {
            uri: &t1,
            status: 408,
            reply: None,
            current_round: false,
        },
        Branch {
            uri: &t2,
            status: 302,
            reply: Some(reply),
            current_round: true,
        },
    ];
    req.privacy = privacy;
    let r3 = e.push_redirect(
        &host,
        &req,
        &FailedRound {
            branches: &two,
            memo: &r2.memo,
        },
        None,
    );
    for b in &r3.branches {
        check_value(&b.history_info, &rows);
    }
}
