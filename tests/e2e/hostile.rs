//! Hostile terminals (SPEC §3) through a real Kamailio: every redirect is
//! input from whoever answers. Each case asserts the sender's final status,
//! what every terminal received, and the module's counters.

use std::time::Duration;

use crate::push::{proxy, stat};
use crate::support::*;

const N: u32 = 50;

/// A Contact of a name at `localhost` (resolves to 127.0.0.1, and is no
/// alias of the proxy): a foreign domain whose requests still reach a local
/// terminal when allowed.
fn at_localhost(t: &Terminal) -> String {
    format!("sip:{}@localhost:{}", t.name, t.port)
}

#[test]
#[ignore = "needs Kamailio: run via make test"]
fn hostile_foreign_domain_is_refused() {
    let case = Case::new("hostile_foreign_domain_refused");
    let p = proxy(&case).start();
    let tx = case.terminal("tx", Answer::Ok);
    let t1 = case.terminal("t1", Answer::Redirect302(at_localhost(&tx)));
    case.register(&p, AOR, &t1, 1.0, 3600);
    let r = case.send(&p, Send::message(AOR).count(N));
    case.report(&r, &[&t1, &tx]);
    r.assert_all(302);
    assert_eq!(t1.wait_received(N as usize), N as usize);
    assert_eq!(tx.settled(), 0, "never sent to the foreign domain");
    assert_eq!(stat(&p, "targets_refused"), i64::from(N));
}

#[test]
#[ignore = "needs Kamailio: run via make test"]
fn hostile_foreign_domain_allowed_by_allowed_domains() {
    let case = Case::new("hostile_foreign_domain_allowed");
    let p = proxy(&case)
        .define_str("ALLOWED_DOMAINS", "localhost")
        .start();
    let tx = case.terminal("tx", Answer::Ok);
    let t1 = case.terminal("t1", Answer::Redirect302(at_localhost(&tx)));
    case.register(&p, AOR, &t1, 1.0, 3600);
    let r = case.send(&p, Send::message(AOR).count(N));
    case.report(&r, &[&t1, &tx]);
    r.assert_all(200);
    assert_eq!(tx.wait_received(N as usize), N as usize);
    assert_eq!(stat(&p, "targets_refused"), 0);
}

#[test]
#[ignore = "needs Kamailio: run via make test"]
fn hostile_300_with_1000_contacts_follows_max_branches() {
    let case = Case::new("hostile_300_1000_contacts");
    let p = proxy(&case)
        .define_str("ALLOWED_DOMAINS", "localhost")
        .define_str("REDIRECT_MODE", "parallel")
        .start();
    // The 8 best (q=1) are real terminals; 992 more (q=0.1) go nowhere.
    let best: Vec<Terminal> = (0..8)
        .map(|k| case.terminal(&format!("b{k}"), Answer::Ok))
        .collect();
    let mut contacts: Vec<String> = (0..992)
        .map(|k| format!("<sip:x{k}@localhost:9>;q=0.1"))
        .collect();
    for (k, t) in best.iter().enumerate() {
        contacts.insert(k * 100, format!("<{}>;q=1", at_localhost(t)));
    }
    let header = format!("Contact: {}", contacts.join(","));
    let t1 = case.terminal_with("t1", Answer::Code(300), &[&header]);
    case.register(&p, AOR, &t1, 1.0, 3600);
    let r = case.send(&p, Send::message(AOR).count(N));
    let all: Vec<&Terminal> = std::iter::once(&t1).chain(best.iter()).collect();
    case.report(&r, &all);
    assert_eq!(r.count(200), u64::from(N), "{:?}", r.codes);
    assert_eq!(r.finals(), u64::from(N));
    for t in &best {
        assert_eq!(t.wait_received(N as usize), N as usize, "{}", t.name);
    }
    assert_eq!(stat(&p, "contacts_dropped"), i64::from(N) * 992);
}

#[test]
#[ignore = "needs Kamailio: run via make test"]
fn hostile_terminals_redirecting_to_each_other_end_with_one_final() {
    let case = Case::new("hostile_redirect_loop");
    let p = proxy(&case).start();
    let (pa, pb) = (free_udp_port(), free_udp_port());
    let ta = case.terminal_at(
        pa,
        "ta",
        Answer::Redirect302(terminal_uri("tb", pb)),
        &[],
        Duration::ZERO,
    );
    let tb = case.terminal_at(
        pb,
        "tb",
        Answer::Redirect302(terminal_uri("ta", pa)),
        &[],
        Duration::ZERO,
    );
    case.register(&p, AOR, &ta, 1.0, 3600);
    case.register(&p, AOR, &tb, 0.5, 3600);
    let r = case.send(&p, Send::message(AOR).count(N));
    case.report(&r, &[&ta, &tb]);
    // A -> B -> (A: already tried) : nothing left, one final each.
    assert_eq!(r.count(302), u64::from(N), "{:?}", r.codes);
    assert_eq!(r.finals(), u64::from(N));
    assert_eq!(ta.wait_received(N as usize), N as usize);
    assert_eq!(tb.wait_received(N as usize), N as usize);
    assert_eq!(ta.settled(), N as usize, "A never tried twice");
    assert_eq!(stat(&p, "loops_prevented"), i64::from(N));
}

#[test]
#[ignore = "needs Kamailio: run via make test"]
fn hostile_redirect_to_the_proxy_itself_is_refused() {
    let case = Case::new("hostile_redirect_to_proxy");
    let p = proxy(&case).start();
    let t1 = case.terminal("t1", Answer::Redirect302(format!("sip:{}", p.addr())));
    case.register(&p, AOR, &t1, 1.0, 3600);
    let r = case.send(&p, Send::message(AOR).count(N));
    case.report(&r, &[&t1]);
    r.assert_all(302);
    assert_eq!(stat(&p, "targets_refused"), i64::from(N));
}

#[test]
#[ignore = "needs Kamailio: run via make test"]
fn hostile_bad_contacts_skipped_good_one_followed() {
    let case = Case::new("hostile_bad_contacts_skipped");
    let p = proxy(&case).start();
    let t2 = case.terminal("t2", Answer::Ok);
    let t1 = case.terminal_with(
        "t1",
        Answer::Code(300),
        &[
            "Contact: <tel:+34600000000>, <http://evil.example/>, \"x\" <sip:broken@",
            &format!("Contact: <{}>;q=0.5", t2.uri()),
        ],
    );
    case.register(&p, AOR, &t1, 1.0, 3600);
    case.register(&p, AOR, &t2, 0.1, 3600);
    let r = case.send(&p, Send::message(AOR).count(N));
    case.report(&r, &[&t1, &t2]);
    r.assert_all(200);
    assert_eq!(t2.wait_received(N as usize), N as usize);
    assert_eq!(stat(&p, "targets_refused"), 3 * i64::from(N));
    assert_eq!(stat(&p, "redirects_followed"), i64::from(N));
}

#[test]
#[ignore = "needs Kamailio: run via make test"]
fn hostile_305_and_380_are_not_followed() {
    for code in [305u16, 380] {
        let case = Case::new(&format!("hostile_{code}_not_followed"));
        let p = proxy(&case).start();
        let t2 = case.terminal("t2", Answer::Ok);
        let t1 = case.terminal_with(
            "t1",
            Answer::Code(code),
            &[&format!("Contact: <{}>", t2.uri())],
        );
        case.register(&p, AOR, &t1, 1.0, 3600);
        let r = case.send(&p, Send::message(AOR).count(N));
        case.report(&r, &[&t1, &t2]);
        r.assert_all(code);
        assert_eq!(t2.settled(), 0);
    }
}

#[test]
#[ignore = "needs Kamailio: run via make test"]
fn hostile_60kb_contact_header_is_handled() {
    let case = Case::new("hostile_60kb_contact");
    let p = proxy(&case).start();
    let t2 = case.terminal("t2", Answer::Ok);
    // One Contact header of ~60 KB: the good target (q=1) among filler.
    let mut values = vec![format!("<{}>;q=1", t2.uri())];
    let mut len = values[0].len();
    let mut k = 0;
    while len < 60 * 1024 {
        let v = format!("<sip:filler{k}@attacker.example>;q=0.01");
        len += v.len() + 1;
        values.push(v);
        k += 1;
    }
    let header = format!("Contact: {}", values.join(","));
    assert!(header.len() >= 60 * 1024);
    let t1 = case.terminal_with("t1", Answer::Code(302), &[&header]);
    case.register(&p, AOR, &t1, 1.0, 3600);
    case.register(&p, AOR, &t2, 0.5, 3600);
    let r = case.send(&p, Send::message(AOR).count(N));
    case.report(&r, &[&t1, &t2]);
    r.assert_all(200);
    assert_eq!(t2.wait_received(N as usize), N as usize);
    println!(
        "[e2e hostile_60kb_contact] {} filler Contacts per reply; dropped {} refused {}",
        k,
        stat(&p, "contacts_dropped"),
        stat(&p, "targets_refused")
    );
}

#[test]
#[ignore = "needs Kamailio: run via make test"]
fn hostile_sips_request_never_goes_to_sip() {
    let case = Case::new("hostile_sips_never_sip");
    let p = proxy(&case).start();
    let t1 = case.terminal("t1", Answer::Ok);
    case.register(&p, AOR, &t1, 1.0, 3600);
    // The only contacts are sip:; a sips: request must not be sent to them.
    let r = case.send(&p, Send::message("sips:u1@example.com").count(N));
    case.report(&r, &[&t1]);
    r.assert_all(404);
    assert_eq!(t1.settled(), 0);
}

#[test]
#[ignore = "needs Kamailio: run via make test"]
fn hostile_301_to_a_foreign_domain_is_never_stored() {
    let case = Case::new("hostile_301_foreign_not_stored");
    let p = proxy(&case).start();
    let t1 = case.terminal("t1", Answer::Redirect301("sip:evil@localhost:9".into()));
    case.register(&p, AOR, &t1, 1.0, 3600);
    let r = case.send(&p, Send::message(AOR).count(N));
    case.report(&r, &[&t1]);
    r.assert_all(301);
    assert_eq!(
        t1.wait_received(N as usize),
        N as usize,
        "every request tried t1"
    );
    assert_eq!(stat(&p, "forwardings_learned"), 0);
    let list = p.rpc(&["push_redirect.list"]).expect("list");
    assert!(!list.contains("evil"), "{list}");
}
