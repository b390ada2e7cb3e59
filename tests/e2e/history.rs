//! History-Info (RFC 7044, RFC 4458 `cause`) and Diversion (RFC 5806)
//! through a real Kamailio (and OpenSIPS: every case is in
//! `shared-cases.txt`): the terminal that finally answers checks the
//! exact header it received (and push_lookup's first delivery to a
//! registered terminal carries none of this proxy's), for F1, F2 (no
//! answer: cause 408), F4
//! parallel (each branch its own entries), F6 (a stored 301, and its entry
//! extended by the failure rounds after it), and with
//! `history_info` = 0 (none) and `diversion` = 1; a hostile incoming
//! History-Info (1,000 entries, 60 KB, malformed) is passed on, not read.

use crate::push::proxy;
use crate::support::*;

const N: usize = 20;

/// Every request `t` received carries exactly these History-Info rows
/// (and `n` of them arrived): one History-Info header, so a later round's
/// branch that also carried an earlier round's header fails here.
fn assert_history(t: &Terminal, n: usize, want: &str) {
    assert_eq!(t.wait_received(n), n);
    let reqs = t.requests();
    assert_eq!(reqs.len(), n, "{} requests", t.uri());
    for q in &reqs {
        assert_eq!(
            q.headers_named("History-Info"),
            vec![want],
            "{} got {:?}",
            t.uri(),
            q.headers
        );
    }
}

/// Every request `t` received (`n` of them) carries exactly the
/// History-Info and Diversion rows it arrived with (`hi`, `div`): none of
/// this proxy's (push_lookup's first delivery to a registered terminal).
fn assert_untouched(t: &Terminal, n: usize, hi: &[&str], div: &[&str]) {
    assert_eq!(t.wait_received(n), n);
    let reqs = t.requests();
    assert_eq!(reqs.len(), n, "{} requests", t.uri());
    for q in &reqs {
        assert_eq!(q.headers_named("History-Info"), hi, "{}", t.uri());
        assert_eq!(q.headers_named("Diversion"), div, "{}", t.uri());
    }
}

fn root() -> String {
    format!("<{AOR}>;index=1")
}

#[test]
#[ignore = "needs Kamailio: run via make test"]
fn history_f1_redirect_302() {
    let case = Case::new("history_f1_redirect_302");
    let p = proxy(&case).start();
    let t2 = case.terminal("t2", Answer::Ok);
    let t1 = case.terminal("t1", Answer::Redirect302(t2.uri()));
    case.register(&p, AOR, &t1, 1.0, 3600);
    case.register(&p, AOR, &t2, 0.5, 3600);
    let r = case.send(&p, Send::message(AOR).count(N as u32));
    case.report(&r, &[&t1, &t2]);
    r.assert_all(200);
    let (u1, u2) = (t1.uri(), t2.uri());
    // t1 is the AOR's own registered contact: nothing was forwarded yet.
    assert_untouched(&t1, N, &[], &[]);
    // t2 is another registered contact of the same AOR: rc.
    assert_history(
        &t2,
        N,
        &format!(
            "{}, <{u1}?Reason=SIP%3Bcause%3D302>;index=1.1;rc=1, <{u2};cause=302>;index=1.1.1;rc=1.1",
            root()
        ),
    );
    assert!(t2
        .requests()
        .iter()
        .all(|q| q.header("Diversion").is_none()));
}

#[test]
#[ignore = "needs Kamailio: run via make test"]
fn history_f2_no_answer_is_cause_408() {
    let case = Case::new("history_f2_no_answer");
    let p = proxy(&case).define("BRANCH_TIMEOUT", "1000").start();
    let t1 = case.terminal("t1", Answer::NoAnswer);
    let t2 = case.terminal("t2", Answer::Ok);
    case.register(&p, AOR, &t1, 1.0, 3600);
    case.register(&p, AOR, &t2, 0.5, 3600);
    let r = case.send(&p, Send::message(AOR).count(N as u32).rate(20));
    case.report(&r, &[&t1, &t2]);
    r.assert_all(200);
    let (u1, u2) = (t1.uri(), t2.uri());
    assert_untouched(&t1, N, &[], &[]);
    assert_history(
        &t2,
        N,
        &format!(
            "{}, <{u1}?Reason=SIP%3Bcause%3D408>;index=1.1;rc=1, <{u2};cause=408>;index=1.2;rc=1",
            root()
        ),
    );
}

#[test]
#[ignore = "needs Kamailio: run via make test"]
fn history_f4_parallel_each_branch_its_own_entries() {
    let case = Case::new("history_f4_parallel");
    let (ts, r) = crate::push::f4_run(&case, "parallel", N as u32);
    let [t1, ta, tb, tc]: [Terminal; 4] = ts
        .try_into()
        .unwrap_or_else(|_| panic!("f4_run returns four terminals"));
    assert_eq!(r.count(200), N as u64, "{:?}", r.codes);
    assert_untouched(&t1, N, &[], &[]);
    let head = format!(
        "{}, <{}?Reason=SIP%3Bcause%3D300>;index=1.1;rc=1",
        root(),
        t1.uri()
    );
    // Indexes in q order (tb 0.9, ta 0.5, tc 0.1); another AOR: mp.
    for (t, k) in [(&tb, 1), (&ta, 2), (&tc, 3)] {
        assert_history(
            t,
            N,
            &format!("{head}, <{};cause=300>;index=1.1.{k};mp=1.1", t.uri()),
        );
    }
}

#[test]
#[ignore = "needs Kamailio: run via make test"]
fn history_f6_stored_301_says_so() {
    let case = Case::new("history_f6_stored_301");
    let p = proxy(&case).define("DIVERSION", "1").start();
    let t2 = case.terminal("t2", Answer::Ok);
    let t1 = case.terminal("t1", Answer::Redirect301(t2.uri()));
    case.register(&p, AOR, &t1, 1.0, 3600);
    case.register(&p, AOR, &t2, 0.5, 3600);
    let r = case.send(&p, Send::message(AOR).count(1));
    r.assert_all(200);
    assert_eq!(t2.wait_received(1), 1);
    let r = case.send(&p, Send::message(AOR).count(N as u32));
    case.report(&r, &[&t1, &t2]);
    r.assert_all(200);
    assert_eq!(t2.wait_received(N + 1), N + 1);
    // t1 got the first request only, as the AOR's own contact: none.
    assert_untouched(&t1, 1, &[], &[]);
    let reqs = t2.requests();
    let u2 = t2.uri();
    // The later requests: retargeted by the stored (permanent) forwarding.
    let want = format!("{}, <{u2};cause=301>;index=1.1;rc=1", root());
    let stored: Vec<_> = reqs
        .iter()
        .filter(|q| q.headers_named("History-Info") == vec![want.as_str()])
        .collect();
    assert_eq!(stored.len(), N, "{:?}", reqs.first().map(|q| &q.headers));
    for q in stored {
        assert_eq!(
            q.headers_named("Diversion"),
            vec![format!("<{AOR}>;reason=unconditional;counter=1").as_str()]
        );
    }
}

#[test]
#[ignore = "needs Kamailio: run via make test"]
fn history_info_0_adds_no_header() {
    let case = Case::new("history_info_0");
    let p = proxy(&case).define("HISTORY_INFO", "0").start();
    let t2 = case.terminal("t2", Answer::Ok);
    let t1 = case.terminal("t1", Answer::Code(480));
    case.register(&p, AOR, &t1, 1.0, 3600);
    case.register(&p, AOR, &t2, 0.5, 3600);
    let r = case.send(&p, Send::message(AOR).count(N as u32));
    case.report(&r, &[&t1, &t2]);
    r.assert_all(200);
    for t in [&t1, &t2] {
        assert_eq!(t.wait_received(N), N);
        assert!(t
            .requests()
            .iter()
            .all(|q| q.header("History-Info").is_none() && q.header("Diversion").is_none()));
    }
}

#[test]
#[ignore = "needs Kamailio: run via make test"]
fn history_diversion_1_and_incoming_entries_kept() {
    let case = Case::new("history_diversion_1");
    let p = proxy(&case).define("DIVERSION", "1").start();
    let t1 = case.terminal("t1", Answer::Code(486));
    let t2 = case.terminal("t2", Answer::Ok);
    case.register(&p, AOR, &t1, 1.0, 3600);
    case.register(&p, AOR, &t2, 0.5, 3600);
    // The request arrives with History-Info and a Diversion of its own.
    let r = case.send(
        &p,
        Send::message(AOR)
            .count(N as u32)
            .header(&format!(
                "History-Info: <sip:alice@a.example>;index=1, <{AOR}>;index=1.1;mp=1"
            ))
            .header("Diversion: <sip:bob@b.example>;reason=unconditional;counter=1"),
    );
    case.report(&r, &[&t1, &t2]);
    r.assert_all(200);
    let (u1, u2) = (t1.uri(), t2.uri());
    // The first delivery, to t1: the request's own rows, untouched.
    assert_untouched(
        &t1,
        N,
        &[&format!(
            "<sip:alice@a.example>;index=1, <{AOR}>;index=1.1;mp=1"
        )],
        &["<sip:bob@b.example>;reason=unconditional;counter=1"],
    );
    assert_eq!(t2.wait_received(N), N);
    for q in t2.requests() {
        // The request's own row first, untouched; then this proxy's.
        assert_eq!(
            q.headers_named("History-Info"),
            vec![
                format!("<sip:alice@a.example>;index=1, <{AOR}>;index=1.1;mp=1").as_str(),
                format!(
                    "<{u1}?Reason=SIP%3Bcause%3D486>;index=1.1.1;rc=1.1, <{u2};cause=486>;index=1.1.2;rc=1.1"
                )
                .as_str(),
            ]
        );
        // The most recent diversion first.
        assert_eq!(
            q.headers_named("Diversion"),
            vec![
                format!("<{AOR}>;reason=user-busy;counter=1").as_str(),
                "<sip:bob@b.example>;reason=unconditional;counter=1",
            ]
        );
    }
}

#[test]
#[ignore = "needs Kamailio: run via make test"]
fn history_hostile_incoming_is_passed_on_but_not_read() {
    let case = Case::new("history_hostile_incoming");
    let p = proxy(&case).start();
    let t1 = case.terminal("t1", Answer::Code(480));
    let t2 = case.terminal("t2", Answer::Ok);
    case.register(&p, AOR, &t1, 1.0, 3600);
    case.register(&p, AOR, &t2, 0.5, 3600);
    let thousand: String = (0..1000)
        .map(|k| format!("<sip:x{k}@h.example>;index=1.{k}"))
        .collect::<Vec<_>>()
        .join(",");
    let huge = format!("<sip:{}@h.example>;index=1", "a".repeat(60_000));
    let (u1, u2) = (t1.uri(), t2.uri());
    let ours = format!(
        "{}, <{u1}?Reason=SIP%3Bcause%3D480>;index=1.1;rc=1, <{u2};cause=480>;index=1.2;rc=1",
        root()
    );
    let mut sent = 0;
    for row in [
        thousand.as_str(),
        huge.as_str(),
        "<sip:u1@example.com;index=1",
        "garbage;;;,,,<<<>>>",
    ] {
        let r = case.send(
            &p,
            Send::message(AOR)
                .count(5)
                .header(&format!("History-Info: {row}")),
        );
        case.report(&r, &[&t1, &t2]);
        // The same routing as without it; this proxy's entries start at 1.
        r.assert_all(200);
        sent += 5;
        assert_eq!(t2.wait_received(sent), sent);
        let reqs = t2.requests();
        for q in reqs.iter().skip(sent - 5) {
            assert_eq!(q.headers_named("History-Info"), vec![row, ours.as_str()]);
        }
        // The first delivery, to t1: passed on as it came.
        assert_eq!(t1.wait_received(sent), sent);
        for q in t1.requests().iter().skip(sent - 5) {
            assert_eq!(q.headers_named("History-Info"), vec![row]);
        }
    }
    assert!(
        p.log_count("History-Info") >= 1,
        "the proxy says why it did not read them"
    );
}

#[test]
#[ignore = "needs Kamailio: run via make test"]
fn history_f4_serial_the_next_contact_remembers_its_300() {
    // Three rounds, the entries carried by the transaction's memo: t1's
    // 300, tb (q=0.9) answers 480, then ta (q=0.5) answers 200.
    let case = Case::new("history_f4_serial");
    let p = proxy(&case)
        .define_str("ALLOWED_DOMAINS", "127.0.0.1")
        .start();
    let ta = case.terminal("ta", Answer::Ok);
    let tb = case.terminal("tb", Answer::Code(480));
    let tc = case.terminal("tc", Answer::Ok);
    let t1 = case.terminal(
        "t1",
        Answer::Multiple300([
            (ta.uri(), "0.5".into()),
            (tb.uri(), "0.9".into()),
            (tc.uri(), "0.1".into()),
        ]),
    );
    case.register(&p, AOR, &t1, 1.0, 3600);
    let r = case.send(&p, Send::message(AOR).count(N as u32));
    case.report(&r, &[&t1, &ta, &tb, &tc]);
    r.assert_all(200);
    assert_untouched(&t1, N, &[], &[]);
    let head = format!(
        "{}, <{}?Reason=SIP%3Bcause%3D300>;index=1.1;rc=1",
        root(),
        t1.uri()
    );
    assert_history(
        &tb,
        N,
        &format!("{head}, <{};cause=300>;index=1.1.1;mp=1.1", tb.uri()),
    );
    assert_history(
        &ta,
        N,
        &format!(
            "{head}, <{};cause=300?Reason=SIP%3Bcause%3D480>;index=1.1.1;mp=1.1, <{};cause=300>;index=1.1.2;mp=1.1",
            tb.uri(),
            ta.uri()
        ),
    );
}

#[test]
#[ignore = "needs Kamailio: run via make test"]
fn history_f6_stored_301_then_failover_extends_its_entry() {
    // push_lookup() retargets by the stored 301 (its entry and diversion
    // travel in the memo the request route keeps for the transaction), t2
    // answers 480, and the failure rounds extend that entry: what a proxy
    // that dropped push_lookup()'s memo would get wrong (1.1 without its
    // cause=301, a Diversion counter from 1).
    let case = Case::new("history_f6_then_failover");
    let p = proxy(&case).define("DIVERSION", "1").start();
    let t3 = case.terminal("t3", Answer::Ok);
    let t2 = case.terminal("t2", Answer::Code(480));
    let t1 = case.terminal("t1", Answer::Redirect301(t2.uri()));
    case.register(&p, AOR, &t1, 1.0, 3600);
    case.register(&p, AOR, &t2, 0.5, 3600);
    case.register(&p, AOR, &t3, 0.3, 3600);
    // The first request: t1's 301 is learned (t2 480, then t3).
    let r = case.send(&p, Send::message(AOR).count(1));
    r.assert_all(200);
    assert_eq!(t3.wait_received(1), 1);
    // The later ones: t2 by the stored 301, then t1 (480), then t3 (t1's
    // 301 names t2, tried already).
    let r = case.send(&p, Send::message(AOR).count(N as u32));
    case.report(&r, &[&t1, &t2, &t3]);
    r.assert_all(200);
    let (u1, u2, u3) = (t1.uri(), t2.uri(), t3.uri());
    let stored = format!("{}, <{u2};cause=301>;index=1.1;rc=1", root());
    let t2_480 = format!(
        "{}, <{u2};cause=301?Reason=SIP%3Bcause%3D480>;index=1.1;rc=1",
        root()
    );
    let div1 = format!("<{AOR}>;reason=unconditional;counter=1");
    let div2 = format!("<{AOR}>;reason=unavailable;counter=2, {div1}");
    for (t, hi, div) in [
        (&t2, stored, div1.clone()),
        (&t1, format!("{t2_480}, <{u1};cause=480>;index=1.2;rc=1"), div2.clone()),
        (
            &t3,
            format!(
                "{t2_480}, <{u1};cause=480?Reason=SIP%3Bcause%3D301>;index=1.2;rc=1, <{u3};cause=301>;index=1.3;rc=1"
            ),
            format!("<{AOR}>;reason=unconditional;counter=3, {div2}"),
        ),
    ] {
        assert_eq!(t.wait_received(N + 1), N + 1);
        for q in t.requests().iter().skip(1) {
            assert_eq!(q.headers_named("History-Info"), vec![hi.as_str()], "{}", t.uri());
            assert_eq!(q.headers_named("Diversion"), vec![div.as_str()], "{}", t.uri());
        }
    }
}
