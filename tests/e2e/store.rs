//! The forwarding store through a real Kamailio (children=4): F5 provisioned,
//! F6 learned 301 (in every worker, and after kill -9), F7 temporary 302,
//! and the RPC commands, each shown by what the terminals received.

use std::time::Duration;

use crate::push::{proxy, stat};
use crate::support::*;

const U2: &str = "sip:u2@example.com";

#[test]
#[ignore = "needs Kamailio: run via make test"]
fn store_f6_301_is_learned_and_applied_in_every_worker() {
    let case = Case::new("store_f6_learn_then_apply");
    let p = proxy(&case).start();
    let t2 = case.terminal("t2", Answer::Ok);
    let t1 = case.terminal("t1", Answer::Redirect301(t2.uri()));
    case.register(&p, AOR, &t1, 1.0, 3600);
    case.register(&p, AOR, &t2, 0.5, 3600);
    // The one learning request: t1 redirects permanently.
    let r = case.send(&p, Send::message(AOR).count(1));
    case.report(&r, &[&t1, &t2]);
    r.assert_all(200);
    assert_eq!(t1.wait_received(1), 1);
    assert_eq!(t2.wait_received(1), 1);
    assert_eq!(stat(&p, "forwardings_learned"), 1);
    // 200 more, served by 4 workers: straight to t2, t1 never again.
    let r = case.send(&p, Send::message(AOR).count(200).rate(100));
    case.report(&r, &[&t1, &t2]);
    r.assert_all(200);
    assert_eq!(t2.wait_received(201), 201);
    assert_eq!(
        t1.settled(),
        1,
        "the redirecting terminal got none of the 200"
    );
    assert_eq!(stat(&p, "forwardings_applied"), 200);
    let list = p.rpc(&["push_redirect.list"]).expect("list");
    println!("[e2e store_f6] push_redirect.list:\n{list}");
    assert!(
        list.contains("permanent") && list.contains(&t2.uri()),
        "{list}"
    );
    // Each worker applied it: the log says which process decided.
    let workers: std::collections::BTreeSet<String> = p
        .log_text()
        .lines()
        .filter(|l| l.contains("push_lookup(MESSAGE") && l.contains("= 1"))
        .filter_map(|l| {
            l.split('(')
                .nth(1)
                .and_then(|x| x.split(')').next())
                .map(str::to_string)
        })
        .collect();
    println!("[e2e store_f6] lookups served by processes {workers:?}");
    assert!(
        workers.len() >= 2,
        "several workers served the lookups: {workers:?}"
    );
}

#[test]
#[ignore = "needs Kamailio: run via make test"]
fn store_f6_survives_kill_9() {
    let case = Case::new("store_f6_survives_kill_9");
    let mut p = proxy(&case).start();
    let t2 = case.terminal("t2", Answer::Ok);
    let t1 = case.terminal("t1", Answer::Redirect301(t2.uri()));
    case.register(&p, AOR, &t1, 1.0, 3600);
    case.register(&p, AOR, &t2, 0.5, 3600);
    case.send(&p, Send::message(AOR).count(1)).assert_all(200);
    assert_eq!(t1.wait_received(1), 1);
    // Every Kamailio process killed at once; the location table (in memory)
    // is gone, the store is not.
    p.crash_and_restart();
    case.register(&p, AOR, &t1, 1.0, 3600);
    case.register(&p, AOR, &t2, 0.5, 3600);
    let r = case.send(&p, Send::message(AOR).count(50));
    case.report(&r, &[&t1, &t2]);
    r.assert_all(200);
    assert_eq!(t2.wait_received(51), 51);
    assert_eq!(
        t1.settled(),
        1,
        "applied from the first request after the crash"
    );
}

#[test]
#[ignore = "needs Kamailio: run via make test"]
fn store_f7_302_with_expires_forwards_for_that_long() {
    let case = Case::new("store_f7_expires");
    let p = proxy(&case).start();
    let t2 = case.terminal("t2", Answer::Ok);
    let t1 = case.terminal(
        "t1",
        Answer::Redirect302(format!("<{}>;expires=2", t2.uri())),
    );
    case.register(&p, AOR, &t1, 1.0, 3600);
    case.register(&p, AOR, &t2, 0.5, 3600);
    case.send(&p, Send::message(AOR).count(1)).assert_all(200);
    assert_eq!(t1.wait_received(1), 1);
    // Within the two seconds: straight to t2.
    let r = case.send(&p, Send::message(AOR).count(20).rate(50));
    case.report(&r, &[&t1, &t2]);
    r.assert_all(200);
    assert_eq!(t2.wait_received(21), 21);
    assert_eq!(t1.settled(), 1);
    // After it expired: the terminal again (which redirects again).
    std::thread::sleep(Duration::from_millis(2600));
    case.send(&p, Send::message(AOR).count(1)).assert_all(200);
    assert_eq!(t1.wait_received(2), 2, "expired: t1 is tried again");
}

#[test]
#[ignore = "needs Kamailio: run via make test"]
fn store_f7_302_without_expiry_is_not_stored() {
    let case = Case::new("store_f7_no_expiry");
    let p = proxy(&case).start();
    let t2 = case.terminal("t2", Answer::Ok);
    let t1 = case.terminal("t1", Answer::Redirect302(t2.uri()));
    case.register(&p, AOR, &t1, 1.0, 3600);
    case.register(&p, AOR, &t2, 0.5, 3600);
    let r = case.send(&p, Send::message(AOR).count(50));
    case.report(&r, &[&t1, &t2]);
    r.assert_all(200);
    assert_eq!(t1.wait_received(50), 50, "every request tries t1 first");
    assert_eq!(t2.wait_received(50), 50);
    assert_eq!(stat(&p, "forwardings_learned"), 0);
    let list = p.rpc(&["push_redirect.list"]).expect("list");
    assert!(!list.contains("sip:"), "nothing stored: {list}");
}

#[test]
#[ignore = "needs Kamailio: run via make test"]
fn store_f5_rpc_set_list_remove_change_routing() {
    let case = Case::new("store_f5_rpc");
    let p = proxy(&case).start();
    let t1 = case.terminal("t1", Answer::Redirect302NoContact);
    let t2 = case.terminal("t2", Answer::Ok);
    let u2t = case.terminal("u2t", Answer::Ok);
    case.register(&p, AOR, &t1, 1.0, 3600);
    case.register(&p, AOR, &t2, 0.5, 3600);
    case.register(&p, U2, &u2t, 1.0, 3600);
    let n = 20;
    // No forwarding: a 3xx without Contact fails over to t2 (F2).
    let r = case.send(&p, Send::message(AOR).count(n));
    case.report(&r, &[&t1, &t2, &u2t]);
    r.assert_all(200);
    assert_eq!(t2.wait_received(n as usize), n as usize);
    // Provisioned: the same 3xx now goes to u2 first (F5).
    let out = p.rpc(&["push_redirect.set", AOR, U2]).expect("set");
    println!("[e2e store_f5] push_redirect.set: {}", out.trim());
    let list = p.rpc(&["push_redirect.list"]).expect("list");
    println!("[e2e store_f5] push_redirect.list:\n{list}");
    assert!(list.contains("provisioned") && list.contains(U2), "{list}");
    let got = p.rpc(&["push_redirect.get", AOR]).expect("get");
    assert!(got.contains(U2), "{got}");
    let r = case.send(&p, Send::message(AOR).count(n));
    case.report(&r, &[&t1, &t2, &u2t]);
    r.assert_all(200);
    assert_eq!(u2t.wait_received(n as usize), n as usize);
    assert_eq!(t1.wait_received(2 * n as usize), 2 * n as usize);
    assert_eq!(
        t2.settled(),
        n as usize,
        "t2 got nothing while u2 was provisioned"
    );
    // Removed: back to t2.
    let out = p.rpc(&["push_redirect.remove", AOR]).expect("remove");
    assert!(out.contains("1 forwarding"), "{out}");
    let r = case.send(&p, Send::message(AOR).count(n));
    case.report(&r, &[&t1, &t2, &u2t]);
    r.assert_all(200);
    assert_eq!(t2.wait_received(2 * n as usize), 2 * n as usize);
    assert_eq!(u2t.settled(), n as usize);
    let s = p.statistics("push_redirect");
    println!("[e2e store_f5] statistics {s:?}");
    assert_eq!(s.get("forwardings_applied"), Some(&i64::from(n)));
    assert!(s.get("failovers").copied().unwrap_or(0) > 0);
}

#[test]
#[ignore = "needs Kamailio: run via make test"]
fn store_rpc_set_forwards_an_unregistered_aor() {
    let case = Case::new("store_rpc_unregistered_aor");
    let p = proxy(&case).start();
    let u2t = case.terminal("u2t", Answer::Ok);
    case.register(&p, U2, &u2t, 1.0, 3600);
    let r = case.send(&p, Send::message(AOR).count(10));
    r.assert_all(404);
    p.rpc(&["push_redirect.set", AOR, U2, "MESSAGE", "600"])
        .expect("set");
    let r = case.send(&p, Send::message(AOR).count(50));
    case.report(&r, &[&u2t]);
    r.assert_all(200);
    assert_eq!(u2t.wait_received(50), 50);
}

#[test]
#[ignore = "needs Kamailio: run via make test"]
fn store_rpc_bad_arguments_are_faults_and_write_nothing() {
    let case = Case::new("store_rpc_bad_arguments");
    let p = proxy(&case).start();
    let bad: &[&[&str]] = &[
        &["push_redirect.set", "tel:+34600", U2],
        &["push_redirect.set", AOR, "http://evil.example/"],
        &["push_redirect.set", AOR, "sip:x@attacker.example"],
        &["push_redirect.set", AOR, U2, "MESSAGE", "0"],
        &["push_redirect.set", AOR, U2, "MESSAGE", "99999999999"],
        &["push_redirect.set", AOR, U2, "MESSAGE", "soon"],
        &["push_redirect.set", AOR, U2, "bad service!"],
        &["push_redirect.set", "sip:u1@elsewhere.example", U2],
        &["push_redirect.remove", "garbage"],
        &["push_redirect.get", "sip:@"],
    ];
    for args in bad {
        let e = p.rpc(args).expect_err(&format!("{args:?} must fail"));
        println!(
            "[e2e store_rpc_bad] {args:?}: {}",
            e.lines().last().unwrap_or("")
        );
    }
    let list = p.rpc(&["push_redirect.list"]).expect("list");
    assert!(!list.contains("sip:"), "nothing written: {list}");
    let stats = p.rpc(&["push_redirect.stats"]).expect("stats");
    assert!(stats.contains("stored_forwardings"), "{stats}");
}
