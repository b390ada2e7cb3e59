//! End-to-end tests: a real Kamailio + sipp terminals on 127.0.0.1.
//!
//! Run: cargo test --test e2e -- --ignored --test-threads=1 --nocapture
//! (needs kamailio, kamailio-tls-modules, sip-tester, openssl and python3; `make test` installs them).
//!
//! The `stock_*` cases run Kamailio's own modules only (cfg/stock-uac-redirect.cfg:
//! usrloc + registrar + tm + uac_redirect), or OpenSIPS's with E2E_PROXY=opensips
//! (cfg/opensips/stock-uac-redirect.cfg). They prove the harness itself (every
//! count is exact) and are the baseline push_redirect is compared with.

mod crash;
mod history;
mod hostile;
mod kemi;
mod lookup;
mod push;
#[path = "../common/redis_server.rs"]
mod redis_server;
mod service;
mod shared_store;
mod stock_cfg;
mod store;
mod support;

use std::time::Duration;
use support::*;

const STOCK: &str = "stock-uac-redirect.cfg";
const N: u32 = 50;

fn stock(case: &Case) -> Proxy {
    case.proxy(STOCK).children(4).start()
}

#[test]
#[ignore = "needs Kamailio: run via make test"]
fn stock_plain_200() {
    let case = Case::new("stock_plain_200");
    let proxy = stock(&case);
    let t1 = case.terminal("t1", Answer::Ok);
    case.register(&proxy, AOR, &t1, 1.0, 3600);
    let r = case.send(&proxy, Send::message(AOR).count(N));
    case.report(&r, &[&t1]);
    r.assert_all(200);
    assert_eq!(t1.wait_received(N as usize), N as usize);
    assert_eq!(t1.handled(), N as usize);
    assert_eq!(t1.received_by_method().get("MESSAGE"), Some(&(N as usize)));
    // the terminal got the request for the AOR's contact, from the proxy
    let req = &t1.requests()[0];
    assert_eq!(req.ruri, t1.uri());
    assert_eq!(
        req.headers_named("Via").len(),
        2,
        "proxy Via + sender Via: {:?}",
        req.headers
    );
}

#[test]
#[ignore = "needs Kamailio: run via make test"]
fn stock_two_contacts_parallel_fork() {
    // lookup("location") with two contacts: tm forks to both, the sender gets one 200 each
    let case = Case::new("stock_two_contacts_parallel_fork");
    let proxy = stock(&case);
    let t1 = case.terminal("t1", Answer::Ok);
    let t2 = case.terminal("t2", Answer::Ok);
    case.register(&proxy, AOR, &t1, 1.0, 3600);
    case.register(&proxy, AOR, &t2, 0.5, 3600);
    let r = case.send(&proxy, Send::message(AOR).count(N));
    case.report(&r, &[&t1, &t2]);
    r.assert_all(200);
    assert_eq!(t1.wait_received(N as usize), N as usize);
    assert_eq!(t2.wait_received(N as usize), N as usize);
}

#[test]
#[ignore = "needs Kamailio: run via make test"]
fn stock_redirect_302_followed_by_uac_redirect() {
    let case = Case::new("stock_redirect_302");
    let proxy = stock(&case);
    let t2 = case.terminal("t2", Answer::Ok);
    let t1 = case.terminal("t1", Answer::Redirect302(t2.uri()));
    case.register(&proxy, AOR, &t1, 1.0, 3600);
    let r = case.send(&proxy, Send::message(AOR).count(N));
    case.report(&r, &[&t1, &t2]);
    r.assert_all(200);
    assert_eq!(t1.wait_received(N as usize), N as usize);
    assert_eq!(t2.wait_received(N as usize), N as usize);
    // same Call-IDs at both terminals: t2 got the redirected requests
    assert_eq!(t1.received_call_ids(), t2.received_call_ids());
    assert!(t2.requests().iter().all(|q| q.ruri == t2.uri()));
}

#[test]
#[ignore = "needs Kamailio: run via make test"]
fn stock_redirect_301_notify_followed() {
    let case = Case::new("stock_redirect_301_notify");
    let proxy = stock(&case);
    let t2 = case.terminal("t2", Answer::Ok);
    let t1 = case.terminal("t1", Answer::Redirect301(t2.uri()));
    case.register(&proxy, AOR, &t1, 1.0, 3600);
    let r = case.send(&proxy, Send::notify(AOR, "x").count(N));
    case.report(&r, &[&t1, &t2]);
    r.assert_all(200);
    assert_eq!(t1.wait_received(N as usize), N as usize);
    assert_eq!(t2.wait_received(N as usize), N as usize);
    assert!(t2
        .requests()
        .iter()
        .all(|q| q.method == "NOTIFY" && q.header("Event") == Some("x")));
}

#[test]
#[ignore = "needs Kamailio: run via make test"]
fn stock_300_three_contacts_comma_and_headers() {
    // 300: <t2>;q=0.5, <t3>;q=1.0 in one header, <t4>;q=0.1 in another: uac_redirect
    // takes all three (both header forms) and tm forks them in parallel.
    let case = Case::new("stock_300_multi");
    let proxy = stock(&case);
    let t2 = case.terminal("t2", Answer::Ok);
    let t3 = case.terminal("t3", Answer::Ok);
    let t4 = case.terminal("t4", Answer::Ok);
    let t1 = case.terminal(
        "t1",
        Answer::Multiple300([
            (t2.uri(), "0.5".into()),
            (t3.uri(), "1.0".into()),
            (t4.uri(), "0.1".into()),
        ]),
    );
    case.register(&proxy, AOR, &t1, 1.0, 3600);
    let r = case.send(&proxy, Send::message(AOR).count(N));
    case.report(&r, &[&t1, &t2, &t3, &t4]);
    r.assert_all(200);
    for t in [&t1, &t2, &t3, &t4] {
        assert_eq!(t.wait_received(N as usize), N as usize, "{}", t.name);
    }
}

#[test]
#[ignore = "needs Kamailio: run via make test"]
fn stock_redirect_loop_is_followed_back() {
    // The baseline push_redirect must beat: t1 -> 302 t2 -> 302 back to t1's address.
    // uac_redirect follows it, so t1 gets each request twice (2nd branch, same
    // Call-ID); its sipp leaves that copy unanswered (dead call) and tm times out: 408.
    let case = Case::new("stock_redirect_loop");
    let proxy = case
        .proxy(STOCK)
        .children(4)
        .define("FR_TIMER", "1000")
        .start();
    let p1 = free_udp_port();
    let t2 = case.terminal("t2", Answer::Redirect302(terminal_uri("t1b", p1)));
    let t1 = case.terminal_at(p1, "t1", Answer::Redirect302(t2.uri()), &[], Duration::ZERO);
    case.register(&proxy, AOR, &t1, 1.0, 3600);
    let r = case.send(&proxy, Send::message(AOR).count(N).rate(200));
    case.report(&r, &[&t1, &t2]);
    r.assert_all(408);
    assert_eq!(t1.wait_received(2 * N as usize), 2 * N as usize);
    assert_eq!(t1.handled(), N as usize);
    assert_eq!(t1.received_call_ids().len(), N as usize);
    assert_eq!(t2.wait_received(N as usize), N as usize);
    let back = t1
        .requests()
        .iter()
        .filter(|q| q.ruri == terminal_uri("t1b", p1))
        .count();
    assert_eq!(back, N as usize);
}

#[test]
#[ignore = "needs Kamailio: run via make test"]
fn stock_302_without_contact_reaches_sender() {
    let case = Case::new("stock_302_nocontact");
    let proxy = stock(&case);
    let t1 = case.terminal("t1", Answer::Redirect302NoContact);
    case.register(&proxy, AOR, &t1, 1.0, 3600);
    let r = case.send(&proxy, Send::message(AOR).count(N));
    case.report(&r, &[&t1]);
    r.assert_all(302);
    assert_eq!(t1.wait_received(N as usize), N as usize);
}

#[test]
#[ignore = "needs Kamailio: run via make test"]
fn stock_failures_reach_sender() {
    // 480, 603, 401 (with a challenge) and a bare 486: no failover in the stock cfg
    for (answer, code) in [
        (Answer::Code(480), 480),
        (Answer::Code(603), 603),
        (Answer::Unauthorized401, 401),
        (Answer::Code(486), 486),
    ] {
        let case = Case::new(&format!("stock_failure_{code}"));
        let proxy = stock(&case);
        let t1 = case.terminal("t1", answer);
        case.register(&proxy, AOR, &t1, 1.0, 3600);
        let r = case.send(&proxy, Send::message(AOR).count(N));
        case.report(&r, &[&t1]);
        r.assert_all(code);
        assert_eq!(t1.wait_received(N as usize), N as usize);
    }
}

#[test]
#[ignore = "needs Kamailio: run via make test"]
fn stock_no_answer_times_out_408() {
    // The terminal never replies: tm retransmits (UDP) until fr_timer (1 s here)
    // and sends 408. Each request counts once at the terminal.
    let case = Case::new("stock_no_answer");
    let proxy = case
        .proxy(STOCK)
        .children(4)
        .define("FR_TIMER", "1000")
        .start();
    let t1 = case.terminal("t1", Answer::NoAnswer);
    case.register(&proxy, AOR, &t1, 1.0, 3600);
    let r = case.send(&proxy, Send::message(AOR).count(N).rate(200));
    case.report(&r, &[&t1]);
    r.assert_all(408);
    assert_eq!(t1.wait_received(N as usize), N as usize);
    assert_eq!(t1.handled(), N as usize);
    assert!(
        t1.requests_raw().len() > N as usize,
        "the proxy retransmitted to the silent terminal"
    );
    assert!(r.elapsed.as_secs_f64() < 10.0, "{r}");
}

#[test]
#[ignore = "needs Kamailio: run via make test"]
fn stock_in_dialog_notify_untouched_404() {
    let case = Case::new("stock_in_dialog_notify");
    let proxy = stock(&case);
    let t2 = case.terminal("t2", Answer::Ok);
    let t1 = case.terminal("t1", Answer::Redirect302(t2.uri()));
    case.register(&proxy, AOR, &t1, 1.0, 3600);
    let r = case.send(&proxy, Send::notify_in_dialog(AOR, "x").count(N));
    case.report(&r, &[&t1, &t2]);
    r.assert_all(404);
    assert_eq!(t1.settled(), 0);
    assert_eq!(t2.settled(), 0);
}

#[test]
#[ignore = "needs Kamailio: run via make test"]
fn stock_options_redirect_not_followed() {
    // OPTIONS is not a PUSH method: relayed without failure_route, its 302 reaches the sender
    let case = Case::new("stock_options");
    let proxy = stock(&case);
    let t2 = case.terminal("t2", Answer::Ok);
    let t1 = case.terminal("t1", Answer::Redirect302(t2.uri()));
    case.register(&proxy, AOR, &t1, 1.0, 3600);
    let r = case.send(&proxy, Send::options(AOR).count(N));
    case.report(&r, &[&t1, &t2]);
    r.assert_all(302);
    assert_eq!(t1.wait_received(N as usize), N as usize);
    assert_eq!(t1.received_by_method().get("OPTIONS"), Some(&(N as usize)));
    assert_eq!(t2.settled(), 0);
}

#[test]
#[ignore = "needs Kamailio: run via make test"]
fn stock_unregistered_aor_404_and_unregister() {
    let case = Case::new("stock_unregistered");
    let proxy = stock(&case);
    let t1 = case.terminal("t1", Answer::Ok);
    let r = case.send(&proxy, Send::message("sip:nobody@example.com").count(N));
    case.report(&r, &[&t1]);
    r.assert_all(404);
    // register, then remove (expires=0): 404 again, nothing delivered
    case.register(&proxy, AOR, &t1, 1.0, 3600);
    case.register(&proxy, AOR, &t1, 1.0, 0);
    let r = case.send(&proxy, Send::message(AOR).count(N));
    case.report(&r, &[&t1]);
    r.assert_all(404);
    assert_eq!(t1.settled(), 0);
}

#[test]
#[ignore = "needs Kamailio: run via make test"]
fn stock_rpc_restart_and_crash() {
    // the machinery F6 needs: RPC over ctl, a graceful restart and a kill -9 + restart
    // on the same port. Stock usrloc is in memory (db_mode 0): both lose the contact.
    let case = Case::new("stock_rpc_restart_crash");
    let mut proxy = stock(&case);
    let t1 = case.terminal("t1", Answer::Ok);
    case.register(&proxy, AOR, &t1, 1.0, 3600);
    let dump = proxy.rpc(&["ul.dump"]).expect("kamcmd ul.dump");
    assert!(dump.contains(&t1.uri()), "ul.dump: {dump}");
    let ul = proxy.statistics("usrloc");
    assert_eq!(ul.get("location_contacts"), Some(&1), "{ul:?}");
    let port = proxy.port;

    let first = proxy.pid();
    proxy.restart();
    assert_eq!(proxy.port, port);
    assert_ne!(proxy.pid(), first);
    let r = case.send(&proxy, Send::message(AOR).count(N));
    case.report(&r, &[&t1]);
    r.assert_all(404);

    case.register(&proxy, AOR, &t1, 1.0, 3600);
    let r = case.send(&proxy, Send::message(AOR).count(N));
    case.report(&r, &[&t1]);
    r.assert_all(200);

    proxy.crash_and_restart();
    let r = case.send(&proxy, Send::message(AOR).count(N));
    case.report(&r, &[&t1]);
    r.assert_all(404);
    assert_eq!(t1.settled(), N as usize);
    assert!(!proxy
        .rpc(&["ul.dump"])
        .expect("kamcmd ul.dump")
        .contains(&t1.uri()));
}

#[test]
#[ignore = "needs sipp: run via make test"]
fn harness_counts_without_proxy() {
    // sender -> terminal directly: the counting does not depend on Kamailio
    let case = Case::new("harness_direct");
    let t1 = case.terminal("t1", Answer::Code(480));
    let addr = format!("127.0.0.1:{}", t1.port);
    let r = case.send_to(&addr, Send::message(AOR).count(N));
    case.report(&r, &[&t1]);
    r.assert_all(480);
    assert_eq!(t1.wait_received(N as usize), N as usize);

    // a terminal that answers 400 ms late
    let t3 = case.terminal_ext(
        "t3",
        Answer::Ok,
        &["X-Late: yes"],
        Duration::from_millis(400),
    );
    let addr = format!("127.0.0.1:{}", t3.port);
    let r = case.send_to(&addr, Send::message(AOR).count(5).rate(200));
    case.report(&r, &[&t3]);
    r.assert_all(200);
    assert!(r.elapsed >= Duration::from_millis(400), "{r}");
    assert_eq!(t3.wait_received(5), 5);

    // a silent terminal: every request times out at the sender, counted once at the terminal
    let t2 = case.terminal("t2", Answer::NoAnswer);
    let addr = format!("127.0.0.1:{}", t2.port);
    let r = case.send_to(
        &addr,
        Send::message(AOR)
            .count(20)
            .rate(200)
            .recv_timeout(Duration::from_millis(1200)),
    );
    case.report(&r, &[&t2]);
    assert_eq!(r.finals(), 0);
    assert_eq!(r.timeouts, 20, "{r}");
    assert_eq!(r.exit_code, Some(1));
    assert_eq!(t2.wait_received(20), 20);
    assert!(
        t2.requests_raw().len() > 20,
        "sipp retransmitted to the silent terminal"
    );
    // arrival order is recorded
    let reqs = t2.requests();
    assert!(reqs.windows(2).all(|w| w[0].at <= w[1].at));
}
