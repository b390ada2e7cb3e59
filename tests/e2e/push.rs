//! push_redirect through a real Kamailio (children=4): flows F1–F4 and the
//! rules of SPEC §3, each with exact counts of what the sender got and what
//! every terminal received. `make test` builds `build/push_redirect.so` first.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::support::*;

const CFG: &str = "push-redirect.cfg";
const N: u32 = 50;
const U2: &str = "sip:u2@example.com";

fn module() -> PathBuf {
    let m = pr_module_path();
    assert!(
        m.exists(),
        "{} missing: run `make build` (or `make test`) first",
        m.display()
    );
    m
}

/// The push_redirect proxy with the module from build/ and a store in the
/// case's folder.
pub(crate) fn proxy(case: &Case) -> ProxyBuilder {
    case.proxy(CFG)
        .children(4)
        .define_str("PR_MODULE", &module().display().to_string())
        .define_str("PR_STORE", &format!("{}/store.sqlite", case_dir(case)))
}

fn case_dir(case: &Case) -> String {
    case.dir.display().to_string()
}

/// Every request of the case got exactly one final response: `n` of `code`.
fn assert_finals(r: &SendResult, code: u16, n: u32) {
    assert_eq!(r.count(code), u64::from(n), "{code} count: {:?}", r.codes);
    assert_eq!(
        r.finals(),
        u64::from(n),
        "one final response per request: {:?}",
        r.codes
    );
}

pub(crate) fn stat(p: &Proxy, name: &str) -> i64 {
    p.statistics("push_redirect")
        .get(name)
        .copied()
        .unwrap_or(-1)
}

#[test]
#[ignore = "needs Kamailio: run via make test"]
fn push_f1_explicit_redirect_302() {
    let case = Case::new("push_f1_explicit_redirect_302");
    let p = proxy(&case).start();
    f1_explicit_redirect_302(&case, &p);
}

/// F1 on the started proxy `p` (of the push, KEMI and stock-cfg cases):
/// t1 (q=1.0) answers 302 to t2 (q=0.5); each of N requests reaches t1,
/// then t2 with the same Call-ID, gets 200 and counts as followed.
pub(crate) fn f1_explicit_redirect_302(case: &Case, p: &Proxy) {
    let t2 = case.terminal("t2", Answer::Ok);
    let t1 = case.terminal("t1", Answer::Redirect302(t2.uri()));
    case.register(p, AOR, &t1, 1.0, 3600);
    case.register(p, AOR, &t2, 0.5, 3600);
    let r = case.send(p, Send::message(AOR).count(N));
    case.report(&r, &[&t1, &t2]);
    r.assert_all(200);
    assert_eq!(t1.wait_received(N as usize), N as usize);
    assert_eq!(t2.wait_received(N as usize), N as usize);
    assert_eq!(t1.received_call_ids(), t2.received_call_ids());
    assert_eq!(stat(p, "redirects_followed"), i64::from(N));
}

#[test]
#[ignore = "needs Kamailio: run via make test"]
fn push_f1_redirect_of_a_notify() {
    let case = Case::new("push_f1_redirect_of_a_notify");
    let p = proxy(&case).start();
    let t2 = case.terminal("t2", Answer::Ok);
    let t1 = case.terminal("t1", Answer::Redirect302(t2.uri()));
    case.register(&p, AOR, &t1, 1.0, 3600);
    case.register(&p, AOR, &t2, 0.5, 3600);
    let r = case.send(&p, Send::notify(AOR, "x").count(N));
    case.report(&r, &[&t1, &t2]);
    r.assert_all(200);
    assert_eq!(t1.wait_received(N as usize), N as usize);
    assert_eq!(t2.wait_received(N as usize), N as usize);
    assert_eq!(t2.received_by_method().get("NOTIFY"), Some(&(N as usize)));
}

#[test]
#[ignore = "needs Kamailio: run via make test"]
fn push_f2_3xx_without_contact_fails_over() {
    let case = Case::new("push_f2_3xx_without_contact_fails_over");
    let p = proxy(&case).start();
    let t1 = case.terminal("t1", Answer::Redirect302NoContact);
    let t2 = case.terminal("t2", Answer::Ok);
    case.register(&p, AOR, &t1, 1.0, 3600);
    case.register(&p, AOR, &t2, 0.5, 3600);
    let r = case.send(&p, Send::message(AOR).count(N));
    case.report(&r, &[&t1, &t2]);
    r.assert_all(200);
    assert_eq!(t1.wait_received(N as usize), N as usize);
    assert_eq!(t2.wait_received(N as usize), N as usize);
    assert_eq!(stat(&p, "failovers"), i64::from(N));
}

#[test]
#[ignore = "needs Kamailio: run via make test"]
fn push_f2_480_fails_over_serially() {
    let case = Case::new("push_f2_480_fails_over_serially");
    let p = proxy(&case).start();
    let t1 = case.terminal("t1", Answer::Code(480));
    let t2 = case.terminal("t2", Answer::Code(486));
    let t3 = case.terminal("t3", Answer::Ok);
    case.register(&p, AOR, &t1, 1.0, 3600);
    case.register(&p, AOR, &t2, 0.7, 3600);
    case.register(&p, AOR, &t3, 0.5, 3600);
    let r = case.send(&p, Send::message(AOR).count(N));
    case.report(&r, &[&t1, &t2, &t3]);
    r.assert_all(200);
    for t in [&t1, &t2, &t3] {
        assert_eq!(t.wait_received(N as usize), N as usize);
    }
    // Serial: t3 only ever got a request after t2 had answered it.
    let t2_first = t2.requests().iter().map(|q| q.at.clone()).min();
    let t3_first = t3.requests().iter().map(|q| q.at.clone()).min();
    assert!(t2_first <= t3_first, "{t2_first:?} {t3_first:?}");
}

#[test]
#[ignore = "needs Kamailio: run via make test"]
fn push_f2_no_answer_fails_over_after_branch_timeout() {
    let case = Case::new("push_f2_no_answer_fails_over");
    let p = proxy(&case).define("BRANCH_TIMEOUT", "1000").start();
    let t1 = case.terminal("t1", Answer::NoAnswer);
    let t2 = case.terminal("t2", Answer::Ok);
    case.register(&p, AOR, &t1, 1.0, 3600);
    case.register(&p, AOR, &t2, 0.5, 3600);
    let t0 = Instant::now();
    let r = case.send(&p, Send::message(AOR).count(N).rate(25));
    case.report(&r, &[&t1, &t2]);
    r.assert_all(200);
    assert_eq!(t1.wait_received(N as usize), N as usize);
    assert_eq!(t2.wait_received(N as usize), N as usize);
    // branch_timeout (1 s), not tm's 30 s default, let t2 answer in time.
    assert!(t0.elapsed() < Duration::from_secs(20), "{:?}", t0.elapsed());
}

#[test]
#[ignore = "needs Kamailio: run via make test"]
fn push_f3_parallel_failover() {
    let case = Case::new("push_f3_parallel_failover");
    let p = proxy(&case)
        .define_str("LOOKUP_MODE", "serial")
        .define_str("REDIRECT_MODE", "parallel")
        .start();
    let t1 = case.terminal("t1", Answer::Code(480));
    let t2 = case.terminal("t2", Answer::Ok);
    let t3 = case.terminal("t3", Answer::Ok);
    case.register(&p, AOR, &t1, 1.0, 3600);
    case.register(&p, AOR, &t2, 0.7, 3600);
    case.register(&p, AOR, &t3, 0.5, 3600);
    let r = case.send(&p, Send::message(AOR).count(N));
    case.report(&r, &[&t1, &t2, &t3]);
    // Two branches answer 200: the sender still gets exactly one final.
    assert_finals(&r, 200, N);
    for t in [&t1, &t2, &t3] {
        assert_eq!(t.wait_received(N as usize), N as usize);
    }
}

/// F4's terminals: t1 answers a 300 whose Contacts are ta (q=0.5, answers
/// 200), tb (q=0.9, answers 480) and tc (q=0.1, answers 200); then `n`
/// MESSAGEs. Returns [t1, ta, tb, tc] and what the sender got.
pub(crate) fn f4_run(case: &Case, redirect_mode: &str, n: u32) -> (Vec<Terminal>, SendResult) {
    let p = proxy(case)
        .define_str("ALLOWED_DOMAINS", "127.0.0.1")
        .define_str("REDIRECT_MODE", redirect_mode)
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
    let r = case.send(&p, Send::message(AOR).count(n));
    case.report(&r, &[&t1, &ta, &tb, &tc]);
    (vec![t1, ta, tb, tc], r)
}

#[test]
#[ignore = "needs Kamailio: run via make test"]
fn push_f4_several_contacts_serial_in_q_order() {
    let case = Case::new("push_f4_several_contacts_serial");
    let (ts, r) = f4_run(&case, "serial", N);
    let [t1, ta, tb, tc] = [&ts[0], &ts[1], &ts[2], &ts[3]];
    r.assert_all(200);
    assert_eq!(t1.wait_received(N as usize), N as usize);
    assert_eq!(tb.wait_received(N as usize), N as usize, "q=0.9 first");
    assert_eq!(ta.wait_received(N as usize), N as usize, "then q=0.5");
    assert_eq!(tc.settled(), 0, "q=0.1 never needed");
}

#[test]
#[ignore = "needs Kamailio: run via make test"]
fn push_f4_several_contacts_parallel() {
    let case = Case::new("push_f4_several_contacts_parallel");
    let (ts, r) = f4_run(&case, "parallel", N);
    assert_finals(&r, 200, N);
    for t in &ts {
        assert_eq!(t.wait_received(N as usize), N as usize);
    }
}

#[test]
#[ignore = "needs Kamailio: run via make test"]
fn push_local_aor_target_is_resolved_to_its_contacts() {
    let case = Case::new("push_local_aor_target");
    let p = proxy(&case).start();
    let u2t = case.terminal("u2t", Answer::Ok);
    let t1 = case.terminal("t1", Answer::Redirect302(U2.into()));
    case.register(&p, AOR, &t1, 1.0, 3600);
    case.register(&p, U2, &u2t, 1.0, 3600);
    let r = case.send(&p, Send::message(AOR).count(N));
    case.report(&r, &[&t1, &u2t]);
    r.assert_all(200);
    assert_eq!(t1.wait_received(N as usize), N as usize);
    assert_eq!(u2t.wait_received(N as usize), N as usize);
    // The branch went to u2's registered contact, not to the AOR.
    assert!(u2t.requests().iter().all(|q| q.ruri == u2t.uri()));
}

#[test]
#[ignore = "needs Kamailio: run via make test"]
fn push_603_stops() {
    let case = Case::new("push_603_stops");
    let p = proxy(&case).start();
    let t1 = case.terminal("t1", Answer::Code(603));
    let t2 = case.terminal("t2", Answer::Ok);
    case.register(&p, AOR, &t1, 1.0, 3600);
    case.register(&p, AOR, &t2, 0.5, 3600);
    let r = case.send(&p, Send::message(AOR).count(N));
    case.report(&r, &[&t1, &t2]);
    assert_finals(&r, 603, N);
    assert_eq!(t1.wait_received(N as usize), N as usize);
    assert_eq!(t2.settled(), 0);
}

#[test]
#[ignore = "needs Kamailio: run via make test"]
fn push_401_does_not_fail_over() {
    let case = Case::new("push_401_does_not_fail_over");
    let p = proxy(&case).start();
    let t1 = case.terminal("t1", Answer::Unauthorized401);
    let t2 = case.terminal("t2", Answer::Ok);
    case.register(&p, AOR, &t1, 1.0, 3600);
    case.register(&p, AOR, &t2, 0.5, 3600);
    let r = case.send(&p, Send::message(AOR).count(N));
    case.report(&r, &[&t1, &t2]);
    assert_finals(&r, 401, N);
    assert_eq!(t1.wait_received(N as usize), N as usize);
    assert_eq!(t2.settled(), 0);
}

#[test]
#[ignore = "needs Kamailio: run via make test"]
fn push_in_dialog_notify_is_untouched() {
    let case = Case::new("push_in_dialog_notify_untouched");
    let p = proxy(&case).start();
    let t2 = case.terminal("t2", Answer::Ok);
    let t1 = case.terminal("t1", Answer::Redirect302(t2.uri()));
    case.register(&p, AOR, &t1, 1.0, 3600);
    case.register(&p, AOR, &t2, 0.5, 3600);
    let r = case.send(&p, Send::notify_in_dialog(AOR, "x").count(N));
    case.report(&r, &[&t1, &t2]);
    // Routed as plain proxying would (both contacts), nothing followed.
    assert_eq!(t1.wait_received(N as usize), N as usize);
    assert_eq!(t2.wait_received(N as usize), N as usize);
    assert_eq!(r.finals(), u64::from(N));
    assert_eq!(stat(&p, "redirects_followed"), 0);
    assert_eq!(stat(&p, "failovers"), 0);
}

#[test]
#[ignore = "needs Kamailio: run via make test"]
fn push_method_outside_methods_is_untouched() {
    let case = Case::new("push_method_outside_methods_untouched");
    let p = proxy(&case).start();
    let t2 = case.terminal("t2", Answer::Ok);
    let t1 = case.terminal("t1", Answer::Redirect302(t2.uri()));
    case.register(&p, AOR, &t1, 1.0, 3600);
    let r = case.send(&p, Send::options(AOR).count(N));
    case.report(&r, &[&t1, &t2]);
    // The 302 reaches the sender: OPTIONS is not a PUSH method.
    assert_finals(&r, 302, N);
    assert_eq!(t1.wait_received(N as usize), N as usize);
    assert_eq!(t2.settled(), 0);
}

#[test]
#[ignore = "needs Kamailio: run via make test"]
fn push_unregistered_aor_gets_404() {
    let case = Case::new("push_unregistered_aor_404");
    let p = proxy(&case).start();
    let r = case.send(&p, Send::message(AOR).count(N));
    case.report(&r, &[]);
    assert_finals(&r, 404, N);
}

/// Starts the proxy with one bad modparam value (a number, else a
/// string): it must refuse to start (exit by itself, not 0), its log
/// naming the parameter.
fn refuses(case: &Case, name: &str, value: &str) {
    let param = match name {
        "FORK_MODE" => "fork_mode",
        "MAX_BRANCHES" => "max_branches",
        "ALLOWED_DOMAINS" => "allowed_domains",
        "BRANCH_TIMEOUT" => "branch_timeout",
        other => other,
    };
    let b = proxy(case).in_dir(&format!("bad-{param}"));
    let b = if value.parse::<i64>().is_ok() {
        b.define(name, value)
    } else {
        b.define_str(name, value)
    };
    let (status, log) = b.start_expecting_exit(Duration::from_secs(10));
    println!(
        "[e2e bad_modparam] {name}={value}: exit {:?}, {}",
        status.and_then(|s| s.code()),
        log.lines()
            .find(|l| l.contains("push_redirect") && l.contains("ERROR"))
            .unwrap_or("(no push_redirect error line)")
    );
    assert!(
        status.is_some_and(|s| !s.success()),
        "the proxy with {name}={value} kept running or exited 0: {status:?}\n{log}"
    );
    assert!(
        log.contains(param),
        "the error names the parameter {param}:\n{log}"
    );
}

#[test]
#[ignore = "needs Kamailio: run via make test"]
fn push_bad_modparam_refuses_to_start() {
    let case = Case::new("push_bad_modparam");
    refuses(&case, "FORK_MODE", "random");
    refuses(&case, "MAX_BRANCHES", "0");
    refuses(&case, "ALLOWED_DOMAINS", "bad domain");
    refuses(&case, "BRANCH_TIMEOUT", "5");
}
