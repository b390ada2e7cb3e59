//! parse + decide: one failure round of `push_redirect()` on a 3xx reply,
//! as the module runs it (the engine parses the reply and decides).
//!
//! Cases (issue: core targets): a 302 with 3 Contacts (≤ 1 µs), a 300 with 8,
//! and a hostile 300 with 10,000 Contacts (≤ 1 ms), plus a 1,000-Contact
//! point to show the cost is linear in the Contacts. Throughput is in bytes
//! of reply.
//!
//! The `parsers` group times the reply and URI parsers alone, on the
//! inputs of one F1 request.
//!
//! Run: `make bench-core` (or `cargo bench --bench parse_decide`).

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use push_redirect::config::{Config, ForkMode};
use push_redirect::engine::{
    Branch, Engine, FailedRound, Host, LookupError, Registration, Request,
};
use push_redirect::{parser, uri};

/// A location service with u1's two terminals; example.com is the proxy.
struct BenchHost {
    regs: Vec<Registration>,
}

impl Host for BenchHost {
    fn lookup(&self, aor: &str) -> Result<Vec<Registration>, LookupError> {
        Ok(if aor == "sip:u1@example.com" {
            self.regs.clone()
        } else {
            Vec::new()
        })
    }
    fn is_self(&self, host: &[u8], _port: Option<u16>) -> bool {
        host.eq_ignore_ascii_case(b"example.com")
    }
    fn now(&self) -> i64 {
        1_000_000
    }
}

fn reply(code: &str, n: usize) -> Vec<u8> {
    let contacts: Vec<String> = (0..n)
        .map(|k| {
            format!(
                "<sip:t{k}@partner.example:5{:04}>;q=0.{}",
                k % 10_000,
                k % 10
            )
        })
        .collect();
    format!(
        "SIP/2.0 {code}\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKbench\r\n\
         From: <sip:sender@example.com>;tag=1\r\nTo: <sip:u1@example.com>;tag=2\r\n\
         Call-ID: bench@127.0.0.1\r\nCSeq: 1 MESSAGE\r\nContact: {}\r\nContent-Length: 0\r\n\r\n",
        contacts.join(", ")
    )
    .into_bytes()
}

fn bench(c: &mut Criterion) {
    let mut cfg = Config::default();
    if cfg.set("allowed_domains", "partner.example").is_err() {
        return;
    }
    let engine = Engine::new(cfg);
    let env = BenchHost {
        regs: (0..2)
            .map(|k| {
                let mut r = Registration::new(format!("sip:u1t{k}@127.0.0.1:50{k}0").as_bytes());
                r.last_modified = k;
                r
            })
            .collect(),
    };
    let req = Request {
        method: "MESSAGE",
        ruri: b"sip:u1@example.com",
        has_to_tag: false,
        event: None,
        content_type: Some(b"text/plain"),
        history_info: &[],
        privacy: None,
        method_bit: 256,
    };
    let mut group = c.benchmark_group("parse_decide");
    for (name, code, n) in [
        ("302_3_contacts", "302 Moved Temporarily", 3usize),
        ("300_8_contacts", "300 Multiple Choices", 8),
        ("300_1000_contacts", "300 Multiple Choices", 1_000),
        ("300_10000_contacts_hostile", "300 Multiple Choices", 10_000),
    ] {
        let raw = reply(code, n);
        let branches = [Branch {
            uri: b"sip:u1t0@127.0.0.1:5000",
            status: code.get(..3).and_then(|c| c.parse().ok()).unwrap_or(300),
            reply: Some(&raw),
            current_round: true,
        }];
        group.throughput(Throughput::Bytes(raw.len() as u64));
        group.bench_with_input(BenchmarkId::from_parameter(name), &branches, |b, br| {
            b.iter(|| {
                let d = engine.push_redirect(
                    &env,
                    black_box(&req),
                    &FailedRound {
                        branches: black_box(br),
                        memo: b"",
                    },
                    Some(ForkMode::Serial),
                );
                black_box(d)
            })
        });
    }
    group.finish();
}

/// sipp's 302 as the F1 scenario sends it (one Contact, no Expires).
const SIPP_302: &[u8] = b"SIP/2.0 302 Moved Temporarily\r\n\
    Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK-1-1-0\r\n\
    From: <sip:sender@example.com>;tag=1\r\nTo: <sip:u1@example.com>;tag=2\r\n\
    Call-ID: 1-123@127.0.0.1\r\nCSeq: 1 MESSAGE\r\nContact: <sip:t2@127.0.0.1:5072>\r\n\
    Content-Length: 0\r\n\r\n";

/// The parsers alone, on what one F1 request (MESSAGE, 302 to another
/// terminal) hands them: the Request-URI and contact URIs, the AOR key,
/// the 302 and its Contact. Criterion measures time; the instruction
/// counts that the module is held to come from callgrind (see the
/// commit messages of the parser changes).
fn bench_parsers(c: &mut Criterion) {
    let mut group = c.benchmark_group("parsers");
    for (name, raw) in [
        ("uri_contact", &b"sip:t2@127.0.0.1:5072"[..]),
        ("uri_aor", &b"sip:u1@example.com"[..]),
    ] {
        group.throughput(Throughput::Bytes(raw.len() as u64));
        group.bench_with_input(BenchmarkId::new("uri_parse", name), raw, |b, raw| {
            b.iter(|| black_box(uri::parse(black_box(raw))))
        });
    }
    if let Ok(u) = uri::parse(b"sip:u1@Example.COM:5060;transport=udp") {
        let mut key = String::with_capacity(64);
        group.throughput(Throughput::Bytes(u.host.len() as u64));
        group.bench_function("aor_into", |b| {
            b.iter(|| {
                black_box(&u).aor_into(&mut key);
                black_box(key.len())
            })
        });
    }
    for (name, raw) in [
        ("sipp_302", SIPP_302),
        (
            "302_typical_ua_one_contact_expires",
            &include_bytes!("../tests/data/302_typical_ua_one_contact_expires.sip")[..],
        ),
    ] {
        group.throughput(Throughput::Bytes(raw.len() as u64));
        group.bench_with_input(BenchmarkId::new("parse_response", name), raw, |b, raw| {
            b.iter(|| black_box(parser::parse_response(black_box(raw)).map(|r| r.code)))
        });
        group.bench_with_input(
            BenchmarkId::new("parse_response_and_contacts", name),
            raw,
            |b, raw| {
                b.iter(|| {
                    parser::parse_response(black_box(raw)).map(|r| {
                        r.contacts()
                            .filter_map(Result::ok)
                            .map(|c| c.uri.len())
                            .sum::<usize>()
                    })
                })
            },
        );
    }
    group.finish();
}

criterion_group!(benches, bench, bench_parsers);
criterion_main!(benches);
