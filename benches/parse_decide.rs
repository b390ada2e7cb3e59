//! parse + decide: one failure round of `push_redirect()` on a 3xx reply,
//! as the module runs it (the engine parses the reply and decides).
//!
//! Cases (issue: core targets): a 302 with 3 Contacts (≤ 1 µs), a 300 with 8,
//! and a hostile 300 with 10,000 Contacts (≤ 1 ms), plus a 1,000-Contact
//! point to show the cost is linear in the Contacts. Throughput is in bytes
//! of reply.
//!
//! Run: `make bench-core` (or `cargo bench --bench parse_decide`).

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use push_redirect::config::{Config, ForkMode};
use push_redirect::engine::{
    Branch, Engine, FailedRound, Host, LookupError, Registration, Request,
};

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
            .map(|k| Registration {
                uri: format!("sip:u1t{k}@127.0.0.1:50{k}0").into_bytes(),
                received: None,
                path: None,
                instance: None,
                socket: 0,
                q: None,
                last_modified: k,
            })
            .collect(),
    };
    let req = Request {
        method: "MESSAGE",
        ruri: b"sip:u1@example.com",
        has_to_tag: false,
        event: None,
        content_type: Some(b"text/plain"),
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

criterion_group!(benches, bench);
criterion_main!(benches);
