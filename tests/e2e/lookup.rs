//! Branches as registrar's `lookup()` builds them (SPEC §3): terminals on
//! TCP and IPv6, a NATed registration (received address and nathelper's
//! branch flag), an edge proxy with Path in front of the registrar,
//! contacts whose registered methods exclude MESSAGE, and
//! `branch_timeout` on a silent TCP terminal. Exact counts of what the
//! sender got, what each terminal and the edge received.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::push::{proxy, stat};
use crate::support::*;

const N: u32 = 20;

/// Every request got exactly one final response: `n` of `code`.
fn assert_finals(r: &SendResult, code: u16, n: u32) {
    assert_eq!(r.count(code), u64::from(n), "{code} count: {:?}", r.codes);
    assert_eq!(r.finals(), u64::from(n), "finals: {:?}", r.codes);
}

/// Seconds since midnight of a request's arrival ("YYYY-MM-DD HH:MM:SS.micros").
fn secs(at: &str) -> f64 {
    let t = at.split_whitespace().nth(1).unwrap_or("0:0:0");
    let mut f = t.split(':').map(|x| x.parse::<f64>().unwrap_or(0.0));
    let (h, m, s) = (
        f.next().unwrap_or(0.0),
        f.next().unwrap_or(0.0),
        f.next().unwrap_or(0.0),
    );
    h * 3600.0 + m * 60.0 + s
}

/// Per Call-ID, how long after `first` got the request `next` got it
/// (seconds): the time to fail over. (min, max, how many).
fn failover_times(first: &Terminal, next: &Terminal) -> (f64, f64, usize) {
    let at = |t: &Terminal| -> Vec<(String, f64)> {
        t.requests()
            .iter()
            .map(|r| (r.call_id().to_string(), secs(&r.at)))
            .collect()
    };
    let (a, b) = (at(first), at(next));
    let d: Vec<f64> = a
        .iter()
        .filter_map(|(c, t)| b.iter().find(|(c2, _)| c2 == c).map(|(_, t2)| t2 - t))
        .collect();
    let min = d.iter().copied().fold(f64::MAX, f64::min);
    let max = d.iter().copied().fold(f64::MIN, f64::max);
    (min, max, d.len())
}

/// t1 (q=1.0) answers 480, t2 (q=0.5) 200, both on TCP: the first branch
/// and the failover branch are sent over TCP to the registered contacts.
#[test]
#[ignore = "needs Kamailio: run via make test"]
fn lookup_tcp_terminals_fail_over() {
    let case = Case::new("lookup_tcp_terminals_fail_over");
    let p = proxy(&case).flag("WITH_TCP").start();
    let t1 = case.terminal_on(Transport::Tcp, "t1", Answer::Code(480));
    let t2 = case.terminal_on(Transport::Tcp, "t2", Answer::Ok);
    case.register(&p, AOR, &t1, 1.0, 3600);
    case.register(&p, AOR, &t2, 0.5, 3600);
    let r = case.send(&p, Send::message(AOR).count(N).rate(20));
    case.report(&r, &[&t1, &t2]);
    assert_finals(&r, 200, N);
    assert_eq!(t1.wait_received(N as usize), N as usize);
    assert_eq!(t2.wait_received(N as usize), N as usize);
    for req in t2.requests() {
        assert_eq!(req.ruri, t2.uri());
        assert!(
            req.header("Via").is_some_and(|v| v.contains("SIP/2.0/TCP")),
            "{req:?}"
        );
    }
    assert_eq!(stat(&p, "failovers"), i64::from(N));
}

/// The same over IPv6: terminals on [::1], registered over [::1] (the
/// registration's socket is the proxy's [::1] one, as lookup() uses it).
#[test]
#[ignore = "needs Kamailio: run via make test"]
fn lookup_ipv6_terminals_fail_over() {
    let case = Case::new("lookup_ipv6_terminals_fail_over");
    let p = proxy(&case).flag("WITH_IPV6").start();
    let v6 = format!("[::1]:{}", p.port);
    let t1 = case.terminal_on_at(
        Transport::Udp,
        ("::1", free_udp_port()),
        "t1",
        Answer::Code(480),
    );
    let t2 = case.terminal_on_at(Transport::Udp, ("::1", free_udp_port()), "t2", Answer::Ok);
    for (t, q) in [(&t1, 1.0), (&t2, 0.5)] {
        let reg = Register {
            aor: AOR,
            contact: &t.uri(),
            q,
            expires: 3600,
            from: ("::1", free_udp_port()),
            extra: &[],
            cparams: "",
        };
        assert_eq!(
            case.try_register_from(&v6, &reg),
            Some(200),
            "REGISTER {}",
            t.uri()
        );
    }
    let r = case.send(&p, Send::message(AOR).count(N).rate(20));
    case.report(&r, &[&t1, &t2]);
    assert_finals(&r, 200, N);
    assert_eq!(t1.wait_received(N as usize), N as usize);
    assert_eq!(t2.wait_received(N as usize), N as usize);
    for req in t1.requests().iter().chain(t2.requests().iter()) {
        assert!(req.ruri.contains("[::1]"), "{req:?}");
        assert!(
            req.header("Via").is_some_and(|v| v.contains("[::1]")),
            "{req:?}"
        );
    }
}

/// A NATed registration: the contact names a private address
/// (sip:t1@10.0.0.5:5060), the REGISTER comes from 127.0.0.1:X; the cfg's
/// nathelper saves received = X and sets the NAT branch flag (6). t0 (not
/// NATed, q=1.0) answers 480; the failover branch to t1 goes to X with the
/// contact as R-URI and carries flag 6 (the cfg's branch_route adds
/// X-PR-NAT); t0's branch does not. The flagged branch carries t0's and
/// its own History-Info entries.
#[test]
#[ignore = "needs Kamailio: run via make test"]
fn lookup_nated_registration_keeps_received_and_nat_flag() {
    let case = Case::new("lookup_nated_registration_keeps_received_and_nat_flag");
    let p = proxy(&case).flag("WITH_NAT").start();
    let t0 = case.terminal("t0", Answer::Code(480));
    case.register(&p, AOR, &t0, 1.0, 3600);
    let x = free_udp_port();
    let private = "sip:t1@10.0.0.5:5060";
    let reg = Register {
        aor: AOR,
        contact: private,
        q: 0.5,
        expires: 3600,
        from: ("127.0.0.1", x),
        extra: &[],
        cparams: "",
    };
    assert_eq!(case.try_register_from(&p.addr(), &reg), Some(200));
    // the terminal behind the NAT listens where its REGISTER came from
    let t1 = case.terminal_on_at(Transport::Udp, ("127.0.0.1", x), "t1", Answer::Ok);
    let r = case.send(&p, Send::message(AOR).count(N).rate(20));
    case.report(&r, &[&t0, &t1]);
    assert_finals(&r, 200, N);
    assert_eq!(t0.wait_received(N as usize), N as usize);
    assert_eq!(t1.wait_received(N as usize), N as usize);
    for req in t1.requests() {
        assert_eq!(req.ruri, private, "R-URI is the contact");
        assert_eq!(
            req.header("X-PR-NAT"),
            Some("yes"),
            "NAT flag on the branch"
        );
    }
    for req in t0.requests() {
        assert_eq!(req.header("X-PR-NAT"), None, "{req:?}");
    }
    // History-Info (RFC 7044) on the flagged failover branch: t0's 480,
    // then t1's own entry.
    let root = format!("<{AOR}>;index=1");
    assert_history_info(
        &t1,
        &format!(
            "{root}, <{}?Reason=SIP%3Bcause%3D480>;index=1.1;rc=1, <{private};cause=480>;index=1.2;rc=1",
            t0.uri()
        ),
    );
    // push_lookup's own branch (R-URI) alone, to t1: the NAT flag, and no
    // History-Info (a first delivery carries none).
    let t0_gone = Register {
        aor: AOR,
        contact: &t0.uri(),
        q: 1.0,
        expires: 0,
        from: ("127.0.0.1", free_udp_port()),
        extra: &[],
        cparams: "",
    };
    assert_eq!(case.try_register_from(&p.addr(), &t0_gone), Some(200));
    let r = case.send(&p, Send::message(AOR).count(N).rate(20));
    case.report(&r, &[&t0, &t1]);
    assert_finals(&r, 200, N);
    assert_eq!(t1.wait_received(2 * N as usize), 2 * N as usize);
    assert_eq!(t0.settled(), N as usize);
    assert!(t1
        .requests()
        .iter()
        .all(|q| q.header("X-PR-NAT") == Some("yes")));
    assert!(t1
        .requests()
        .iter()
        .skip(N as usize)
        .all(|q| q.headers_named("History-Info").is_empty()));
}

/// Every request `t` received so far carries exactly this History-Info
/// row.
fn assert_history_info(t: &Terminal, want: &str) {
    let reqs = t.requests();
    assert!(!reqs.is_empty(), "{} got nothing", t.uri());
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

/// The edge's relayed requests (distinct Call-ID + Via).
fn edge_in(edge: &Proxy, method: &str) -> usize {
    let needle = format!("EDGE-IN {method} ");
    edge.log_text()
        .lines()
        .filter_map(|l| l.find(&needle).map(|i| l[i..].to_string()))
        .collect::<BTreeSet<_>>()
        .len()
}

/// An edge proxy (path module, add_path_received) in front of the
/// registrar: both terminals register through it. t1 redirects (302) to
/// t2: push_lookup's branch to t1 and the followed branch to t2 both go
/// to the first Path hop (the edge), which relays them to the received
/// addresses; the registrar never sends to the terminals itself. The
/// followed branch carries its History-Info entries through the edge.
#[test]
#[ignore = "needs Kamailio: run via make test"]
fn lookup_edge_proxy_path_carries_every_branch() {
    let case = Case::new("lookup_edge_proxy_path_carries_every_branch");
    let p = proxy(&case).flag("WITH_PATH").start();
    let edge = case
        .proxy_in("edge-path.cfg", "edge")
        .children(2)
        .define_str("REGISTRAR", &format!("sip:127.0.0.1:{}", p.port))
        .start();
    let (x1, x2) = (free_udp_port(), free_udp_port());
    let (u1, u2) = (terminal_uri("t1", x1), terminal_uri("t2", x2));
    for (contact, q, x) in [(&u1, 1.0, x1), (&u2, 0.5, x2)] {
        let reg = Register {
            aor: AOR,
            contact,
            q,
            expires: 3600,
            from: ("127.0.0.1", x),
            // registrar's path_mode 2 (its default) keeps a Path only
            // from a UA that supports it, else 420
            extra: &["Supported: path"],
            cparams: "",
        };
        assert_eq!(
            case.try_register_from(&edge.addr(), &reg),
            Some(200),
            "{contact}"
        );
    }
    let t2 = case.terminal_on_at(Transport::Udp, ("127.0.0.1", x2), "t2", Answer::Ok);
    let t1 = case.terminal_on_at(
        Transport::Udp,
        ("127.0.0.1", x1),
        "t1",
        Answer::Redirect302(u2.clone()),
    );
    let r = case.send(&p, Send::message(AOR).count(N).rate(20));
    case.report(&r, &[&t1, &t2]);
    assert_finals(&r, 200, N);
    assert_eq!(t1.wait_received(N as usize), N as usize);
    assert_eq!(t2.wait_received(N as usize), N as usize);
    let at_edge = edge_in(&edge, "MESSAGE");
    println!(
        "[e2e lookup_edge] edge relayed {at_edge} MESSAGE (want {})",
        2 * N
    );
    assert_eq!(
        at_edge,
        2 * N as usize,
        "both branches of each request via the edge"
    );
    for req in t1.requests().iter().chain(t2.requests().iter()) {
        let vias = req.headers_named("Via");
        assert_eq!(vias.len(), 3, "edge, registrar, sender: {req:?}");
        assert!(
            vias[0].contains(&format!("127.0.0.1:{}", edge.port))
                && vias[1].contains(&format!("127.0.0.1:{}", p.port)),
            "through the edge: {vias:?}"
        );
    }
    // History-Info (RFC 7044) on branches that go through the Path hop:
    // none on push_lookup's first delivery to t1 (nothing forwarded yet),
    // the 302's entries on t2's branch.
    let root = format!("<{AOR}>;index=1");
    assert!(t1
        .requests()
        .iter()
        .all(|q| q.headers_named("History-Info").is_empty()));
    assert_history_info(
        &t2,
        &format!(
            "{root}, <{u1}?Reason=SIP%3Bcause%3D302>;index=1.1;rc=1, <{u2};cause=302>;index=1.1.1;rc=1.1"
        ),
    );
    assert_eq!(stat(&p, "redirects_followed"), i64::from(N));
}

/// SPEC §3: t1 registered with `Allow: NOTIFY, OPTIONS` and t3 with the
/// contact parameter `;methods="NOTIFY"` (registrar keeps either as the
/// contact's methods) get no MESSAGE; MESSAGE goes to t2, both skips
/// counted as failovers; NOTIFY still goes to t1 (first by q). With t2
/// gone, every contact excludes MESSAGE: push_lookup returns -3 and the
/// sender gets 405 (README).
#[test]
#[ignore = "needs Kamailio: run via make test"]
fn lookup_terminal_without_message_in_its_methods() {
    let case = Case::new("lookup_terminal_without_message_in_its_methods");
    let p = proxy(&case).start();
    let t1 = case.terminal("t1", Answer::Ok);
    let t2 = case.terminal("t2", Answer::Ok);
    let t3 = case.terminal("t3", Answer::Ok);
    for (t, q, extra, cparams) in [
        (&t1, 1.0, &["Allow: NOTIFY, OPTIONS"][..], ""),
        (&t3, 0.8, &[][..], ";methods=\"NOTIFY\""),
    ] {
        let reg = Register {
            aor: AOR,
            contact: &t.uri(),
            q,
            expires: 3600,
            from: ("127.0.0.1", free_udp_port()),
            extra,
            cparams,
        };
        assert_eq!(case.try_register_from(&p.addr(), &reg), Some(200));
    }
    case.register(&p, AOR, &t2, 0.5, 3600);
    let r = case.send(&p, Send::message(AOR).count(N).rate(20));
    case.report(&r, &[&t1, &t2, &t3]);
    assert_finals(&r, 200, N);
    assert_eq!(t2.wait_received(N as usize), N as usize);
    assert_eq!(
        t1.settled(),
        0,
        "no MESSAGE to a terminal that does not take it"
    );
    assert_eq!(
        t3.settled(),
        0,
        "no MESSAGE to a terminal that does not take it"
    );
    assert_eq!(stat(&p, "failovers"), 2 * i64::from(N));
    let r = case.send(&p, Send::notify(AOR, "ua-profile").count(N).rate(20));
    case.report(&r, &[&t1, &t2, &t3]);
    assert_finals(&r, 200, N);
    assert_eq!(t1.wait_received(N as usize), N as usize);
    assert_eq!(t2.settled(), N as usize);
    assert_eq!(t3.settled(), 0);
    // t2 gone: nobody takes MESSAGE.
    case.register(&p, AOR, &t2, 0.5, 0);
    let r = case.send(&p, Send::message(AOR).count(N).rate(20));
    case.report(&r, &[&t1, &t2, &t3]);
    assert_finals(&r, 405, N);
    assert_eq!(t1.settled(), N as usize);
    assert_eq!(t2.settled(), N as usize);
    assert_eq!(t3.settled(), 0);
}

/// `branch_timeout` (1000 ms) on a silent TCP terminal: each request
/// fails over to t2. The time to fail over (t1's arrival to t2's, per
/// request) is reported; only a generous sanity window is asserted.
#[test]
#[ignore = "needs Kamailio: run via make test"]
fn lookup_branch_timeout_on_a_silent_tcp_terminal() {
    let case = Case::new("lookup_branch_timeout_on_a_silent_tcp_terminal");
    let p = proxy(&case)
        .flag("WITH_TCP")
        .define("BRANCH_TIMEOUT", "1000")
        .start();
    let t1 = case.terminal_on(Transport::Tcp, "t1", Answer::NoAnswer);
    let t2 = case.terminal_on(Transport::Tcp, "t2", Answer::Ok);
    case.register(&p, AOR, &t1, 1.0, 3600);
    case.register(&p, AOR, &t2, 0.5, 3600);
    let n = 5u32;
    let r = case.send(
        &p,
        Send::message(AOR)
            .count(n)
            .rate(5)
            .recv_timeout(Duration::from_secs(10)),
    );
    case.report(&r, &[&t1, &t2]);
    assert_finals(&r, 200, n);
    assert_eq!(t1.wait_received(n as usize), n as usize);
    assert_eq!(t2.wait_received(n as usize), n as usize);
    let (min, max, k) = failover_times(&t1, &t2);
    println!("[e2e lookup_branch_timeout tcp] time to fail over: min {min:.3}s max {max:.3}s over {k} requests (branch_timeout 1.000s)");
    assert_eq!(k, n as usize);
    assert!(min > 0.5 && max < 10.0, "sanity window: {min} .. {max}");
}

/// The proxy with TLS on its SIP port (the registration's UDP socket has a
/// TLS twin on the same port, which Kamailio sends from).
fn tls_proxy(case: &Case, branch_timeout_ms: u32) -> Proxy {
    let tls = case.tls_files();
    proxy(case)
        .flag("WITH_TLS")
        .define_str("TLS_CFG", &tls.tls_cfg.display().to_string())
        .define("BRANCH_TIMEOUT", &branch_timeout_ms.to_string())
        .start()
}

/// Terminals on TLS (certificates of a CA the test makes with openssl,
/// verified by the proxy): t1 (q=1.0) answers 480, t2 (q=0.5) 200; the
/// first branch and the failover branch go over TLS.
#[test]
#[ignore = "needs Kamailio: run via make test"]
fn lookup_tls_terminals_fail_over() {
    let case = Case::new("lookup_tls_terminals_fail_over");
    let p = tls_proxy(&case, 1000);
    let t1 = case.terminal_on(Transport::Tls, "t1", Answer::Code(480));
    let t2 = case.terminal_on(Transport::Tls, "t2", Answer::Ok);
    case.register(&p, AOR, &t1, 1.0, 3600);
    case.register(&p, AOR, &t2, 0.5, 3600);
    let r = case.send(&p, Send::message(AOR).count(N).rate(20));
    case.report(&r, &[&t1, &t2]);
    assert_finals(&r, 200, N);
    assert_eq!(t1.wait_received(N as usize), N as usize);
    assert_eq!(t2.wait_received(N as usize), N as usize);
    for req in t1.requests().iter().chain(t2.requests().iter()) {
        assert!(
            req.header("Via").is_some_and(|v| v.contains("SIP/2.0/TLS")),
            "{req:?}"
        );
    }
    assert_eq!(stat(&p, "failovers"), i64::from(N));
}

/// `branch_timeout` (1000 ms) on a silent TLS terminal: each request fails
/// over to t2; the time to fail over is reported.
#[test]
#[ignore = "needs Kamailio: run via make test"]
fn lookup_branch_timeout_on_a_silent_tls_terminal() {
    let case = Case::new("lookup_branch_timeout_on_a_silent_tls_terminal");
    let p = tls_proxy(&case, 1000);
    let t1 = case.terminal_on(Transport::Tls, "t1", Answer::NoAnswer);
    let t2 = case.terminal_on(Transport::Tls, "t2", Answer::Ok);
    case.register(&p, AOR, &t1, 1.0, 3600);
    case.register(&p, AOR, &t2, 0.5, 3600);
    let n = 5u32;
    let r = case.send(
        &p,
        Send::message(AOR)
            .count(n)
            .rate(5)
            .recv_timeout(Duration::from_secs(10)),
    );
    case.report(&r, &[&t1, &t2]);
    assert_finals(&r, 200, n);
    assert_eq!(t1.wait_received(n as usize), n as usize);
    assert_eq!(t2.wait_received(n as usize), n as usize);
    let (min, max, k) = failover_times(&t1, &t2);
    println!("[e2e lookup_branch_timeout tls] time to fail over: min {min:.3}s max {max:.3}s over {k} requests (branch_timeout 1.000s)");
    assert_eq!(k, n as usize);
    assert!(min > 0.5 && max < 10.0, "sanity window: {min} .. {max}");
}

/// SPEC §3: a learned forwarding follows the terminal. t1 (q=1.0)
/// answers 301 to t2's contact; t2 registered with a +sip.instance. The
/// first request goes t1 -> t2 and the 301 is learned with t2's instance.
/// t2 then re-registers from another port (same instance: registrar
/// replaces the contact); the next requests go straight to the new port
/// (the stored forwarding, resolved through usrloc), none to t1 or the
/// old port.
#[test]
#[ignore = "needs Kamailio: run via make test"]
fn lookup_301_follows_the_terminal_after_it_re_registers() {
    let case = Case::new("lookup_301_follows_the_terminal_after_it_re_registers");
    let p = proxy(&case).start();
    let instance = ";+sip.instance=\"<urn:uuid:6f1e2a3b-0000-1000-8000-00000000e2e2>\"";
    let (p1, p2) = (free_udp_port(), free_udp_port());
    let (old, new) = (terminal_uri("t2", p1), terminal_uri("t2", p2));
    let t2_old = case.terminal_on_at(Transport::Udp, ("127.0.0.1", p1), "t2old", Answer::Ok);
    let t1 = case.terminal("t1", Answer::Redirect301(old.clone()));
    case.register(&p, AOR, &t1, 1.0, 3600);
    let register = |contact: &str| {
        let reg = Register {
            aor: AOR,
            contact,
            q: 0.5,
            expires: 3600,
            from: ("127.0.0.1", free_udp_port()),
            extra: &[],
            cparams: instance,
        };
        case.try_register_from(&p.addr(), &reg)
    };
    assert_eq!(register(&old), Some(200));
    let r = case.send(&p, Send::message(AOR).count(1));
    case.report(&r, &[&t1, &t2_old]);
    assert_finals(&r, 200, 1);
    assert_eq!(t1.wait_received(1), 1);
    assert_eq!(t2_old.wait_received(1), 1);
    assert_eq!(stat(&p, "forwardings_learned"), 1);
    let list = p.rpc(&["push_redirect.list"]).unwrap_or_else(|e| e);
    println!(
        "[e2e lookup_301_instance] push_redirect.list: {}",
        list.replace('\n', " ")
    );
    assert!(list.contains("(instance"), "{list}");

    // t2 moves to another port and registers again with its instance.
    let t2_new = case.terminal_on_at(Transport::Udp, ("127.0.0.1", p2), "t2new", Answer::Ok);
    assert_eq!(register(&new), Some(200));
    let r = case.send(&p, Send::message(AOR).count(N).rate(20));
    case.report(&r, &[&t1, &t2_old, &t2_new]);
    assert_finals(&r, 200, N);
    assert_eq!(t2_new.wait_received(N as usize), N as usize);
    assert!(t2_new.requests().iter().all(|q| q.ruri == new));
    assert_eq!(t1.settled(), 1, "t1 is not asked again");
    assert_eq!(t2_old.settled(), 1, "the old address is not used");
    assert_eq!(stat(&p, "forwardings_applied"), i64::from(N));
}

/// The proxy verifies TLS terminals against the test CA: a terminal with a
/// self-signed certificate (q=1.0) gets no request over the refused
/// connection; every request fails over to t2 (of the CA).
#[test]
#[ignore = "needs Kamailio: run via make test"]
fn lookup_tls_untrusted_terminal_is_failed_over() {
    let case = Case::new("lookup_tls_untrusted_terminal_is_failed_over");
    let p = tls_proxy(&case, 1000);
    let rogue = case.terminal_on(Transport::Tls, "rogue", Answer::Ok);
    let t2 = case.terminal_on(Transport::Tls, "t2", Answer::Ok);
    case.register(&p, AOR, &rogue, 1.0, 3600);
    case.register(&p, AOR, &t2, 0.5, 3600);
    let n = 5u32;
    let r = case.send(
        &p,
        Send::message(AOR)
            .count(n)
            .rate(5)
            .recv_timeout(Duration::from_secs(10)),
    );
    case.report(&r, &[&rogue, &t2]);
    assert_finals(&r, 200, n);
    assert_eq!(t2.wait_received(n as usize), n as usize);
    assert_eq!(
        rogue.settled(),
        0,
        "nothing sent over an untrusted connection"
    );
}
