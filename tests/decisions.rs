//! Decision tables: one test per flow of SPEC §2 and per rule of SPEC §3,
//! named after it, against a fake location service.

mod common;

use common::{b, branches, message, timeout, FakeHost, B};
use push_redirect::config::{Config, ForkMode};
use push_redirect::engine::{
    service_key, Decision, Engine, FailedRound, ForwardTarget, Forwarding, ForwardingKind, Learned,
    Reason, Registration, Request, Stat, StoreAction, TargetInstance, Verdict,
};

const U1: &str = "sip:u1@example.com";
const T1: &str = "sip:t1@127.0.0.1:5071";
const T2: &str = "sip:t2@127.0.0.1:5072";
const T3: &str = "sip:t3@127.0.0.1:5073";

fn engine() -> Engine {
    Engine::new(Config::default())
}

fn engine_with(name: &str, value: &str) -> Engine {
    let mut c = Config::default();
    c.set(name, value).unwrap();
    Engine::new(c)
}

/// u1 has t1 (q=1.0, newest), t2 (q=1.0, older) and t3 (q=0.5).
fn env3() -> FakeHost {
    let mut env = FakeHost::default();
    env.register(U1, "t1", 5071, Some(1000), 300)
        .register(U1, "t2", 5072, Some(1000), 200)
        .register(U1, "t3", 5073, Some(500), 400);
    env
}

fn uris(d: &Decision) -> Vec<String> {
    d.branches
        .iter()
        .map(|b| String::from_utf8_lossy(b.uri()).into_owned())
        .collect()
}

fn redirect(e: &Engine, env: &FakeHost, list: &[B]) -> Decision {
    failure_round(e, env, list, b"", None)
}

/// A failure round with the memo the previous one left.
fn redirect_memo(e: &Engine, env: &FakeHost, list: &[B], memo: &[u8]) -> Decision {
    failure_round(e, env, list, memo, None)
}

fn redirect_mode(e: &Engine, env: &FakeHost, list: &[B], mode: ForkMode) -> Decision {
    failure_round(e, env, list, b"", Some(mode))
}

fn failure_round(
    e: &Engine,
    env: &FakeHost,
    list: &[B],
    memo: &[u8],
    mode: Option<ForkMode>,
) -> Decision {
    let branches = branches(list);
    e.push_redirect(
        env,
        &message(U1),
        &FailedRound {
            branches: &branches,
            memo,
        },
        mode,
    )
}

fn assert_branches(d: &Decision, want: &[&str], reason: Reason) {
    assert_eq!(d.verdict, Verdict::Branches, "{d:#?}");
    assert_eq!(d.script_rc(), 1);
    assert_eq!(uris(d), want, "{d:#?}");
    assert_eq!(d.reason, reason, "{d:#?}");
}

fn assert_nothing(d: &Decision, verdict: Verdict, reason: Reason) {
    assert!(d.branches.is_empty(), "{d:#?}");
    assert_eq!((d.verdict, d.reason), (verdict, reason), "{d:#?}");
}

// ---------------------------------------------------------------- lookup

#[test]
fn lookup_serial_takes_the_first_terminal_by_q_then_most_recent() {
    let d = engine().push_lookup(&env3(), &message(U1), None);
    assert_branches(&d, &[T1], Reason::Registered);
    let b = &d.branches[0];
    // Its registration has a Path: the first Path hop, as lookup().
    assert_eq!(b.dst_uri(), Some(&b"sip:edge5071@127.0.0.1;lr"[..]));
    assert_eq!(b.socket, 5071);
    assert_eq!(d.aor.as_deref(), Some(U1));
    assert_eq!(d.service.as_deref(), Some("MESSAGE:text/plain"));
}

#[test]
fn lookup_parallel_takes_every_terminal() {
    let d = engine().push_lookup(&env3(), &message(U1), Some(ForkMode::Parallel));
    assert_branches(&d, &[T1, T2, T3], Reason::Registered);
}

#[test]
fn lookup_without_contacts_is_no_target() {
    let d = engine().push_lookup(&FakeHost::default(), &message(U1), None);
    assert_nothing(&d, Verdict::NothingLeft, Reason::NoTarget);
    assert_eq!(d.script_rc(), -1);
}

#[test]
fn lookup_of_a_foreign_request_uri_is_no_target() {
    let d = engine().push_lookup(&env3(), &message("sip:u1@elsewhere.example"), None);
    assert_nothing(&d, Verdict::NothingLeft, Reason::NoTarget);
}

#[test]
fn lookup_failure_is_an_error() {
    let mut env = env3();
    env.lookup_fails = true;
    let d = engine().push_lookup(&env, &message(U1), None);
    assert_nothing(&d, Verdict::Error, Reason::LookupFailed);
    assert_eq!(d.script_rc(), -2);
}

#[test]
fn bad_request_uri_is_an_error_with_a_warning() {
    let d = engine().push_lookup(&env3(), &message("tel:+34600000000"), None);
    assert_nothing(&d, Verdict::Error, Reason::BadRequestUri);
    assert!(d.warnings[0].contains("tel:+34600000000"));
}

// ---------------------------------------------------------------- F1

#[test]
fn f1_explicit_redirect_follows_the_contact() {
    let mut env = env3();
    env.register("sip:u2@example.com", "u2t", 5082, None, 1);
    let d = redirect(
        &engine(),
        &env,
        &[b(T1, "302 Moved", &["Contact: <sip:u2@example.com>"])],
    );
    assert_branches(&d, &["sip:u2t@127.0.0.1:5082"], Reason::Redirect);
    assert_eq!(d.counters[Stat::RedirectsFollowed], 1);
    assert_eq!(
        d.store,
        StoreAction::None,
        "302 without expiry is not stored"
    );
}

#[test]
fn f1_redirect_to_another_own_terminal_uses_its_registration() {
    let d = redirect(
        &engine(),
        &env3(),
        &[b(T1, "302 Moved", &[&format!("Contact: <{T3}>")])],
    );
    assert_branches(&d, &[T3], Reason::Redirect);
    let b = &d.branches[0];
    assert_eq!(b.dst_uri(), Some(&b"sip:edge5073@127.0.0.1;lr"[..]));
    assert_eq!(b.path(), Some(&b"<sip:edge5073@127.0.0.1;lr>"[..]));
    assert_eq!(b.socket, 5073);
}

#[test]
fn f1_redirect_to_an_allowed_foreign_domain() {
    let e = engine_with("allowed_domains", "partner.example");
    let d = redirect(
        &e,
        &env3(),
        &[b(T1, "302 Moved", &["Contact: <sip:x@partner.example>"])],
    );
    assert_branches(&d, &["sip:x@partner.example"], Reason::Redirect);
    assert_eq!(d.branches[0].dst_uri(), None);
}

// ---------------------------------------------------------------- F2

#[test]
fn f2_3xx_without_contact_fails_over_to_the_next_terminal() {
    let d = redirect(&engine(), &env3(), &[b(T1, "302 Moved", &[])]);
    assert_branches(&d, &[T2], Reason::Failover);
    assert_eq!(d.counters[Stat::Failovers], 1);
}

#[test]
fn f2_failover_code_480_moves_on() {
    let d = redirect(&engine(), &env3(), &[b(T1, "480 Unavailable", &[])]);
    assert_branches(&d, &[T2], Reason::Failover);
}

#[test]
fn f2_no_answer_408_moves_on() {
    let d = redirect(&engine(), &env3(), &[timeout(T1)]);
    assert_branches(&d, &[T2], Reason::Failover);
}

#[test]
fn f2_serial_walks_every_terminal_once_then_stops() {
    let e = engine();
    let env = env3();
    let d = redirect(
        &e,
        &env,
        &[b(T1, "486 Busy", &[]).earlier(), b(T2, "503 Down", &[])],
    );
    assert_branches(&d, &[T3], Reason::Failover);
    let d = redirect(
        &e,
        &env,
        &[
            b(T1, "486 Busy", &[]).earlier(),
            b(T2, "503 Down", &[]).earlier(),
            timeout(T3),
        ],
    );
    assert_nothing(&d, Verdict::NothingLeft, Reason::Exhausted);
    assert_eq!(d.script_rc(), -1);
}

#[test]
fn f2_every_default_failover_code_moves_on() {
    for code in ["408", "480", "486", "415", "488", "500", "503"] {
        let d = redirect(&engine(), &env3(), &[b(T1, &format!("{code} X"), &[])]);
        assert_branches(&d, &[T2], Reason::Failover);
    }
}

#[test]
fn f2_configured_failover_codes_replace_the_default() {
    let e = engine_with("failover_codes", "404");
    assert_branches(
        &redirect(&e, &env3(), &[b(T1, "404 Nope", &[])]),
        &[T2],
        Reason::Failover,
    );
    assert_nothing(
        &redirect(&e, &env3(), &[b(T1, "480 Unavailable", &[])]),
        Verdict::Untouched,
        Reason::NotRedirect,
    );
}

// ---------------------------------------------------------------- F3

#[test]
fn f3_parallel_failover_tries_all_remaining_terminals_at_once() {
    let d = redirect_mode(
        &engine(),
        &env3(),
        &[b(T1, "480 Unavailable", &[])],
        ForkMode::Parallel,
    );
    assert_branches(&d, &[T2, T3], Reason::Failover);
    let e = engine_with("fork_mode", "parallel");
    let d = redirect(&e, &env3(), &[b(T1, "480 Unavailable", &[])]);
    assert_eq!(d.mode, ForkMode::Parallel);
    assert_branches(&d, &[T2, T3], Reason::Failover);
}

// ---------------------------------------------------------------- F4

fn multi_300() -> B {
    b(
        T1,
        "300 Multiple Choices",
        &[
            "Contact: <sip:a@partner.example>;q=0.2, \"Bee, B.\" <sip:b@partner.example>;q=0.9",
            "m: sip:c@partner.example;q=0.5",
        ],
    )
}

#[test]
fn f4_several_contacts_serial_in_q_order() {
    let e = engine_with("allowed_domains", "partner.example");
    let env = env3();
    let round = |list: &[B], memo: &[u8]| redirect_memo(&e, &env, list, memo);
    let d1 = round(&[multi_300()], b"");
    assert_branches(&d1, &["sip:b@partner.example"], Reason::Redirect);
    // b failed: the next Contact of the same 300 (tm has dropped that reply
    // by now; the memo carries its Contacts), not a terminal.
    let d2 = round(
        &[
            multi_300().earlier(),
            b("sip:b@partner.example", "480 X", &[]),
        ],
        &d1.memo,
    );
    assert_branches(&d2, &["sip:c@partner.example"], Reason::PendingRedirect);
    let d3 = round(
        &[
            multi_300().earlier(),
            b("sip:b@partner.example", "480 X", &[]).earlier(),
            timeout("sip:c@partner.example"),
        ],
        &d2.memo,
    );
    assert_branches(&d3, &["sip:a@partner.example"], Reason::PendingRedirect);
    // Every Contact tried: on to the other registered terminals.
    let d4 = round(
        &[
            multi_300().earlier(),
            b("sip:b@partner.example", "480 X", &[]).earlier(),
            timeout("sip:c@partner.example").earlier(),
            b("sip:a@partner.example", "486 X", &[]),
        ],
        &d3.memo,
    );
    assert_branches(&d4, &[T2], Reason::Failover);
    // Without the memo the pending Contacts are unknown: straight to failover.
    let d = round(
        &[
            multi_300().earlier(),
            b("sip:b@partner.example", "480 X", &[]),
        ],
        b"",
    );
    assert_branches(&d, &[T2], Reason::Failover);
}

#[test]
fn memo_is_left_out_when_the_transaction_tells_the_same() {
    // The engine's own part of the memo: History-Info's lines are the
    // subject of tests/history.rs.
    let mut c = Config::default();
    c.set("allowed_domains", "partner.example").unwrap();
    c.set("history_info", "0").unwrap();
    let e = Engine::new(c);
    let env = env3();
    let round = |list: &[B], memo: &[u8]| redirect_memo(&e, &env, list, memo);
    let to_t2 = || b(T1, "302 M", &[&format!("Contact: <{T2}>")]);
    // F1: the one Contact is sent now, and the transaction's one 3xx is
    // the one redirect followed: nothing to keep.
    let d = round(&[to_t2()], b"");
    assert_branches(&d, &[T2], Reason::Redirect);
    assert!(d.memo.is_empty(), "{d:#?}");
    // F2: a failover leaves nothing either.
    let d = round(&[b(T1, "480 X", &[])], b"");
    assert_branches(&d, &[T2], Reason::Failover);
    assert!(d.memo.is_empty(), "{d:#?}");
    // F4 serial: the Contacts not sent yet are kept.
    let d = round(&[multi_300()], b"");
    assert_branches(&d, &["sip:b@partner.example"], Reason::Redirect);
    let text = String::from_utf8(d.memo.clone()).unwrap_or_default();
    assert!(text.starts_with("pr1 1\n"), "{text}");
    assert!(text.contains("sip:a@partner.example") && text.contains("sip:c@partner.example"));
    // A 3xx without Contact is no redirect followed, but a 3xx of the
    // transaction: the count cannot be derived, so it is kept.
    let d = round(&[b(T1, "302 M", &[])], b"");
    assert_branches(&d, &[T2], Reason::Failover);
    assert_eq!(d.memo, b"pr1 0\n");
    // Without a memo the next round counts the earlier rounds' 3xx: with
    // max_depth 1, the second redirect is not followed.
    let mut c1 = Config::default();
    c1.set("max_depth", "1").unwrap();
    c1.set("history_info", "0").unwrap();
    let e1 = Engine::new(c1);
    let d = redirect(
        &e1,
        &env,
        &[
            to_t2().earlier(),
            b(T2, "302 M", &[&format!("Contact: <{T3}>")]),
        ],
    );
    assert_eq!(d.counters[Stat::LoopsPrevented], 1, "{d:#?}");
    assert_branches(&d, &[T3], Reason::Failover);
}

#[test]
fn f4_several_contacts_parallel_all_at_once() {
    let e = engine_with("allowed_domains", "partner.example");
    let d = redirect_mode(&e, &env3(), &[multi_300()], ForkMode::Parallel);
    assert_branches(
        &d,
        &[
            "sip:b@partner.example",
            "sip:c@partner.example",
            "sip:a@partner.example",
        ],
        Reason::Redirect,
    );
    assert_eq!(
        d.branches.iter().map(|b| b.q).collect::<Vec<_>>(),
        [Some(900), Some(500), Some(200)]
    );
}

// ---------------------------------------------------------------- F5

fn provisioned(target: &str) -> Forwarding {
    Forwarding {
        kind: ForwardingKind::Provisioned,
        targets: vec![ForwardTarget {
            uri: target.into(),
            q: None,
            instance: None,
        }],
        expires_at: None,
    }
}

#[test]
fn f5_provisioned_forwarding_after_3xx_without_contact() {
    let mut env = env3();
    env.register("sip:u2@example.com", "u2t", 5082, None, 1);
    let f = provisioned("sip:u2@example.com");
    let list = [b(T1, "302 Moved", &[])];
    let d = redirect(&engine(), &env.storing(&f), &list);
    assert_branches(&d, &["sip:u2t@127.0.0.1:5082"], Reason::Provisioned);
    assert_eq!(d.counters[Stat::ForwardingsApplied], 1);
    // Then the other registered terminals.
    let list = [
        b(T1, "302 Moved", &[]).earlier(),
        b("sip:u2t@127.0.0.1:5082", "480 X", &[]),
    ];
    let d = redirect(&engine(), &env.storing(&f), &list);
    assert_branches(&d, &[T2], Reason::Failover);
}

#[test]
fn f5_provisioned_forwarding_stands_in_for_an_unregistered_aor() {
    let mut env = FakeHost::default();
    env.register("sip:u2@example.com", "u2t", 5082, None, 1);
    let f = provisioned("sip:u2@example.com");
    let d = engine().push_lookup(&env.storing(&f), &message(U1), None);
    assert_branches(&d, &["sip:u2t@127.0.0.1:5082"], Reason::Provisioned);
    assert_eq!(d.counters[Stat::ForwardingsApplied], 1);
    // With a terminal registered, the terminal is tried first.
    env.register(U1, "t1", 5071, None, 1);
    let d = engine().push_lookup(&env.storing(&f), &message(U1), None);
    assert_branches(&d, &[T1], Reason::Registered);
}

#[test]
fn f5_provisioned_forwarding_is_not_used_for_a_plain_failure() {
    let f = provisioned("sip:x@partner.example");
    let e = engine_with("allowed_domains", "partner.example");
    let list = [b(T1, "480 X", &[])];
    let d = redirect(&e, &env3().storing(&f), &list);
    assert_branches(&d, &[T2], Reason::Failover);
    let d = e.push_lookup(&env3().storing(&f), &message(U1), None);
    assert_branches(&d, &[T1], Reason::Registered);
}

// ---------------------------------------------------------------- F6

#[test]
fn f6_301_learns_a_permanent_forwarding() {
    let d = redirect(
        &engine(),
        &env3(),
        &[b(T1, "301 Moved", &[&format!("Contact: <{T3}>;q=0.8")])],
    );
    assert_branches(&d, &[T3], Reason::Redirect);
    assert_eq!(
        d.store,
        StoreAction::Learn(Learned {
            kind: ForwardingKind::Permanent,
            ttl: None,
            targets: vec![ForwardTarget {
                uri: T3.into(),
                q: Some(800),
                instance: None,
            }],
            learned_from: T1.into(),
            status: 301,
        })
    );
    assert_eq!(d.counters[Stat::ForwardingsLearned], 1);
}

#[test]
fn f6_301_with_an_expiry_is_permanent_until_then() {
    let d = redirect(
        &engine(),
        &env3(),
        &[b(
            T1,
            "301 Moved",
            &[&format!("Contact: <{T3}>;expires=3600")],
        )],
    );
    assert!(matches!(
        d.store,
        StoreAction::Learn(Learned {
            kind: ForwardingKind::Permanent,
            ttl: Some(3600),
            ..
        })
    ));
}

fn stored(kind: ForwardingKind, target: &str, expires_at: Option<i64>) -> Forwarding {
    Forwarding {
        kind,
        targets: vec![ForwardTarget {
            uri: target.into(),
            q: None,
            instance: None,
        }],
        expires_at,
    }
}

#[test]
fn f6_lookup_applies_the_stored_forwarding_first() {
    let f = stored(ForwardingKind::Permanent, T3, None);
    let d = engine().push_lookup(&env3().storing(&f), &message(U1), None);
    assert_branches(&d, &[T3], Reason::StoredForwarding);
    assert_eq!(
        d.branches[0].socket, 5073,
        "own terminal keeps its registration"
    );
    assert_eq!(d.counters[Stat::ForwardingsApplied], 1);
}

#[test]
fn f6_failed_stored_target_falls_back_to_the_terminals() {
    let f = stored(ForwardingKind::Permanent, T3, None);
    let list = [b(T3, "480 X", &[])];
    let d = redirect(&engine(), &env3().storing(&f), &list);
    assert_branches(&d, &[T1], Reason::Failover);
    assert_eq!(d.store, StoreAction::None, "a permanent entry stays");
    // t1 redirects again to t3, already tried: a loop, then t2.
    let list = [
        b(T3, "480 X", &[]).earlier(),
        b(T1, "301 Moved", &[&format!("Contact: <{T3}>")]),
    ];
    let d = redirect(&engine(), &env3().storing(&f), &list);
    assert_branches(&d, &[T2], Reason::Failover);
    assert_eq!(d.counters[Stat::LoopsPrevented], 1);
}

// ---------------------------------------------------------------- F7

#[test]
fn f7_302_with_expires_param_is_temporary() {
    let d = redirect(
        &engine(),
        &env3(),
        &[b(T1, "302 Moved", &[&format!("Contact: <{T3}>;expires=2")])],
    );
    assert!(matches!(
        d.store,
        StoreAction::Learn(Learned {
            kind: ForwardingKind::Temporary,
            ttl: Some(2),
            ..
        })
    ));
}

#[test]
fn f7_302_with_expires_header_is_temporary() {
    let d = redirect(
        &engine(),
        &env3(),
        &[b(
            T1,
            "302 Moved",
            &[&format!("Contact: <{T3}>"), "Expires: 60"],
        )],
    );
    assert!(matches!(
        d.store,
        StoreAction::Learn(Learned {
            kind: ForwardingKind::Temporary,
            ttl: Some(60),
            ..
        })
    ));
}

#[test]
fn f7_302_without_expiry_is_for_this_request_only() {
    let d = redirect(
        &engine(),
        &env3(),
        &[b(T1, "302 Moved", &[&format!("Contact: <{T3}>")])],
    );
    assert_branches(&d, &[T3], Reason::Redirect);
    assert_eq!(d.store, StoreAction::None);
    let d = redirect(
        &engine(),
        &env3(),
        &[b(T1, "302 Moved", &[&format!("Contact: <{T3}>;expires=0")])],
    );
    assert_eq!(d.store, StoreAction::None, "expires=0 stores nothing");
}

#[test]
fn f7_expired_entry_is_ignored() {
    let env = env3();
    let f = stored(ForwardingKind::Temporary, T3, Some(env.now - 1));
    let d = engine().push_lookup(&env.storing(&f), &message(U1), None);
    assert_branches(&d, &[T1], Reason::Registered);
    let f = stored(ForwardingKind::Temporary, T3, Some(env.now + 1));
    let d = engine().push_lookup(&env.storing(&f), &message(U1), None);
    assert_branches(&d, &[T3], Reason::StoredForwarding);
}

#[test]
fn f7_failed_temporary_entry_is_forgotten() {
    let env = env3();
    let f = stored(ForwardingKind::Temporary, T3, Some(env.now + 100));
    let list = [timeout(T3)];
    let d = redirect(&engine(), &env.storing(&f), &list);
    assert_eq!(d.store, StoreAction::Forget);
    assert_branches(&d, &[T1], Reason::Failover);
}

// ---------------------------------------------------------------- §3 rules

#[test]
fn rule_untouched_method_not_in_methods() {
    let mut req = message(U1);
    req.method = "OPTIONS";
    let d = engine().push_lookup(&env3(), &req, None);
    assert_nothing(&d, Verdict::Untouched, Reason::NotPushMethod);
    assert!(d.warnings.is_empty(), "untouched logs nothing above debug");
    let list = [b(T1, "302 Moved", &[&format!("Contact: <{T3}>")])];
    let d = engine().push_redirect(
        &env3(),
        &req,
        &FailedRound {
            branches: &branches(&list),
            memo: b"",
        },
        None,
    );
    assert_nothing(&d, Verdict::Untouched, Reason::NotPushMethod);
}

#[test]
fn rule_untouched_in_dialog_request() {
    let req = Request {
        method: "NOTIFY",
        ruri: U1.as_bytes(),
        has_to_tag: true,
        event: Some(b"x"),
        content_type: None,
        history_info: &[],
        privacy: None,
        method_bit: 128,
    };
    let d = engine().push_lookup(&env3(), &req, None);
    assert_nothing(&d, Verdict::Untouched, Reason::InDialog);
    assert_eq!(d.script_rc(), -1);
}

#[test]
fn rule_untouched_reply_neither_3xx_nor_failover_code() {
    for code in ["404 Not Found", "403 Forbidden", "400 Bad", "420 Bad Ext"] {
        let d = redirect(&engine(), &env3(), &[b(T1, code, &[])]);
        assert_nothing(&d, Verdict::Untouched, Reason::NotRedirect);
        assert!(d.warnings.is_empty());
    }
}

#[test]
fn rule_6xx_stops_everything() {
    for code in [
        "600 Busy Everywhere",
        "603 Decline",
        "604 Nowhere",
        "606 Not Acceptable",
    ] {
        let d = redirect(
            &engine(),
            &env3(),
            &[b(T1, code, &[&format!("Contact: <{T3}>")])],
        );
        assert_nothing(&d, Verdict::NothingLeft, Reason::GlobalFailure);
    }
    // Also when another branch of a parallel round redirected.
    let d = redirect(
        &engine(),
        &env3(),
        &[
            b(T1, "302 Moved", &[&format!("Contact: <{T3}>")]),
            b(T2, "603 Decline", &[]),
        ],
    );
    assert_nothing(&d, Verdict::NothingLeft, Reason::GlobalFailure);
}

#[test]
fn rule_305_and_380_are_never_followed() {
    for code in ["305 Use Proxy", "380 Alternative Service"] {
        let d = redirect(
            &engine(),
            &env3(),
            &[b(T1, code, &[&format!("Contact: <{T3}>")])],
        );
        assert_nothing(&d, Verdict::NothingLeft, Reason::NeverFollowed);
    }
}

#[test]
fn rule_401_and_407_do_not_fail_over() {
    for code in ["401 Unauthorized", "407 Proxy Authentication Required"] {
        let d = redirect(&engine(), &env3(), &[b(T1, code, &[])]);
        assert_nothing(&d, Verdict::NothingLeft, Reason::AuthChallenge);
    }
}

#[test]
fn rule_never_the_same_target_twice() {
    // t1 -> t2 -> t1: the way back is a loop.
    let list = [
        b(T1, "302 Moved", &[&format!("Contact: <{T2}>")]).earlier(),
        b(T2, "302 Moved", &[&format!("Contact: <{T1}>")]),
    ];
    let d = redirect(&engine(), &env3(), &list);
    assert_eq!(d.counters[Stat::LoopsPrevented], 1);
    // The loop counts as a failed target: the last untried terminal.
    assert_branches(&d, &[T3], Reason::Failover);
}

#[test]
fn rule_never_back_to_the_redirecting_contact() {
    let list = [b(
        T1,
        "302 Moved",
        &[&format!(
            "Contact: <{T1}>, <sip:T1@127.0.0.1:5071;transport=udp>"
        )],
    )];
    let d = redirect(&engine(), &env3(), &list);
    assert_eq!(d.counters[Stat::LoopsPrevented], 1, "{d:#?}");
    assert_ne!(uris(&d), [T1]);
}

#[test]
fn rule_proxy_itself_without_aor_is_refused() {
    for c in ["<sip:127.0.0.1:5060>", "<sip:example.com>"] {
        let d = redirect(
            &engine(),
            &env3(),
            &[b(T1, "302 Moved", &[&format!("Contact: {c}")])],
        );
        assert_nothing(&d, Verdict::Refused, Reason::AllTargetsRefused);
        assert_eq!(d.script_rc(), -2);
        assert_eq!(d.counters[Stat::TargetsRefused], 1);
    }
}

#[test]
fn rule_local_aor_target_is_resolved_to_its_contacts() {
    let mut env = env3();
    env.register("sip:u2@example.com", "a", 5091, Some(100), 1)
        .register("sip:u2@example.com", "b", 5092, Some(900), 1);
    let list = [b(T1, "302 Moved", &["Contact: <sip:u2@EXAMPLE.com>"])];
    let d = redirect_mode(&engine(), &env, &list, ForkMode::Parallel);
    assert_branches(
        &d,
        &["sip:b@127.0.0.1:5092", "sip:a@127.0.0.1:5091"],
        Reason::Redirect,
    );
    assert_eq!(
        d.branches[0].socket, 5092,
        "each branch keeps its own socket"
    );
    assert_eq!(d.branches[1].socket, 5091);
}

#[test]
fn rule_aor_without_contacts_is_a_failed_target() {
    let list = [b(T1, "302 Moved", &["Contact: <sip:nobody@example.com>"])];
    let d = redirect(&engine(), &env3(), &list);
    assert_branches(&d, &[T2], Reason::Failover);
}

#[test]
fn rule_max_branches_per_round_keeps_the_best_q_and_counts_the_rest() {
    let mut contacts: Vec<String> = (0..1000)
        .map(|k| format!("<sip:c{k}@partner.example>;q=0.{:03}", k % 1000))
        .collect();
    contacts.push("<sip:best@partner.example>;q=1".into());
    let header = format!("Contact: {}", contacts.join(", "));
    let e = engine_with("allowed_domains", "partner.example");
    let d = redirect_mode(
        &e,
        &env3(),
        &[b(T1, "300 Multiple", &[&header])],
        ForkMode::Parallel,
    );
    assert_eq!(d.branches.len(), 8);
    assert_eq!(uris(&d)[0], "sip:best@partner.example");
    assert_eq!(uris(&d)[1], "sip:c999@partner.example");
    assert_eq!(d.counters[Stat::ContactsDropped], 1001 - 8);
}

#[test]
fn rule_max_depth_bounds_the_redirects_followed() {
    let e = engine_with("max_depth", "2");
    let mut env = env3();
    for k in 0..5 {
        env.register(U1, &format!("h{k}"), 6000 + k, None, 0);
    }
    let hop = |k: u16| format!("sip:h{k}@127.0.0.1:{}", 6000 + k);
    let contact = |k: u16| format!("Contact: <{}>", hop(k));
    let round = |list: &[B], memo: &[u8]| redirect_memo(&e, &env, list, memo);
    let d1 = round(&[b(T1, "302 M", &[&contact(0)])], b"");
    assert_branches(&d1, &[&hop(0)], Reason::Redirect);
    let d2 = round(
        &[
            b(T1, "302 M", &[&contact(0)]).earlier(),
            b(&hop(0), "302 M", &[&contact(1)]),
        ],
        &d1.memo,
    );
    assert_branches(&d2, &[&hop(1)], Reason::Redirect);
    let d3 = round(
        &[
            b(T1, "302 M", &[&contact(0)]).earlier(),
            b(&hop(0), "302 M", &[&contact(1)]).earlier(),
            b(&hop(1), "302 M", &[&contact(2)]),
        ],
        &d2.memo,
    );
    assert_eq!(d3.counters[Stat::LoopsPrevented], 1);
    assert!(
        !uris(&d3).contains(&hop(2)),
        "third redirect not followed: {d3:#?}"
    );
    assert_eq!(d3.reason, Reason::Failover);
}

#[test]
fn rule_only_sip_and_sips_targets() {
    let list = [b(
        T1,
        "300 Multiple",
        &[
            "Contact: <tel:+34600000000>, <http://evil.example/>, <mailto:a@b.c>",
            &format!("Contact: <{T2}>"),
        ],
    )];
    let d = redirect_mode(&engine(), &env3(), &list, ForkMode::Parallel);
    assert_branches(&d, &[T2], Reason::Redirect);
    assert_eq!(d.counters[Stat::TargetsRefused], 3);
    assert_eq!(d.warnings.len(), 3);
}

#[test]
fn rule_sips_request_is_never_redirected_to_sip() {
    let mut env = FakeHost::default();
    env.register("sips:u1@example.com", "t1", 5071, None, 1);
    let req = message("sips:u1@example.com");
    let list = [B {
        uri: "sips:t1@127.0.0.1:5071".into(),
        ..b(
            T1,
            "302 Moved",
            &["Contact: <sip:x@partner.example>, <sips:y@partner.example>"],
        )
    }];
    let e = engine_with("allowed_domains", "partner.example");
    let d = e.push_redirect(
        &env,
        &req,
        &FailedRound {
            branches: &branches(&list),
            memo: b"",
        },
        Some(ForkMode::Parallel),
    );
    assert_branches(&d, &["sips:y@partner.example"], Reason::Redirect);
    assert_eq!(d.counters[Stat::TargetsRefused], 1);
    // And a sip: request may go to sips:.
    let d = e.push_redirect(
        &env3(),
        &message(U1),
        &FailedRound {
            branches: &branches(&list),
            memo: b"",
        },
        Some(ForkMode::Parallel),
    );
    assert_eq!(
        uris(&d),
        ["sip:x@partner.example", "sips:y@partner.example"]
    );
}

#[test]
fn rule_foreign_domain_refused_unless_allowed() {
    let list = [b(
        T1,
        "302 Moved",
        &["Contact: <sip:evil@attacker.example>"],
    )];
    let d = redirect(&engine(), &env3(), &list);
    assert_nothing(&d, Verdict::Refused, Reason::AllTargetsRefused);
    assert_eq!(d.counters[Stat::TargetsRefused], 1);
    assert!(d.warnings[0].contains("sip:evil@attacker.example"));
    let d = redirect(
        &engine_with("allowed_domains", "attacker.example"),
        &env3(),
        &list,
    );
    assert_branches(&d, &["sip:evil@attacker.example"], Reason::Redirect);
}

#[test]
fn rule_hostile_301_to_a_foreign_domain_is_never_stored() {
    let list = [b(
        T1,
        "301 Moved",
        &["Contact: <sip:evil@attacker.example>"],
    )];
    let d = redirect(&engine(), &env3(), &list);
    assert_eq!(d.store, StoreAction::None);
    assert_eq!(d.counters[Stat::ForwardingsLearned], 0);
}

#[test]
fn rule_each_branch_carries_its_own_destination_path_and_socket() {
    let d = redirect_mode(
        &engine(),
        &env3(),
        &[b(T1, "480 X", &[])],
        ForkMode::Parallel,
    );
    for (b, port) in d.branches.iter().zip([5072u16, 5073]) {
        assert_eq!(b.socket, port as usize);
        assert_eq!(
            b.dst_uri(),
            Some(format!("sip:edge{port}@127.0.0.1;lr").as_bytes())
        );
        assert_eq!(
            b.path(),
            Some(format!("<sip:edge{port}@127.0.0.1;lr>").as_bytes())
        );
    }
}

#[test]
fn rule_malformed_contact_is_skipped_with_a_warning_and_the_rest_used() {
    let list = [b(
        T1,
        "302 Moved",
        &[&format!(
            "Contact: <sip:broken@, \"unterminated <sip:x@y>, <{T3}>;q=0.5"
        )],
    )];
    let d = redirect(&engine(), &env3(), &list);
    assert!(d.warnings.iter().any(|w| w.contains("malformed")), "{d:#?}");
    // The unterminated quote swallows the rest of that header; put the good
    // one in its own header and it is followed.
    let list = [b(
        T1,
        "302 Moved",
        &["Contact: <sip:broken@, <:>", &format!("Contact: <{T3}>")],
    )];
    let d = redirect(&engine(), &env3(), &list);
    assert_branches(&d, &[T3], Reason::Redirect);
    assert!(d.warnings.iter().any(|w| w.contains("malformed")));
}

#[test]
fn rule_3xx_with_only_malformed_contacts_fails_over() {
    let list = [b(
        T1,
        "302 Moved",
        &["Contact: <sip:broken@", "Contact: <:>, nocolon"],
    )];
    let d = redirect(&engine(), &env3(), &list);
    assert_branches(&d, &[T2], Reason::Failover);
    assert_eq!(d.counters[Stat::TargetsRefused], 3);
}

#[test]
fn rule_warnings_are_bounded() {
    let header = format!(
        "Contact: {}",
        (0..500)
            .map(|k| format!("<sip:x{k}@attacker.example>"))
            .collect::<Vec<_>>()
            .join(",")
    );
    let d = redirect(&engine(), &env3(), &[b(T1, "300 Multiple", &[&header])]);
    assert_eq!(d.counters[Stat::TargetsRefused], 500);
    assert_eq!(d.warnings.len(), push_redirect::engine::MAX_WARNINGS + 1);
    assert!(d.warnings.last().unwrap().contains("492 more"));
}

#[test]
fn rule_garbage_reply_counts_as_failed() {
    let list = [B {
        uri: T1.into(),
        status: 302,
        reply: Some(b"\x00\xffgarbage".to_vec()),
        current: true,
    }];
    let d = redirect(&engine(), &env3(), &list);
    assert_branches(&d, &[T2], Reason::Failover);
}

#[test]
fn rule_branch_limit_of_the_transaction() {
    let mut e = engine();
    e.branch_limit = 1;
    let d = redirect(&e, &env3(), &[b(T1, "480 X", &[])]);
    assert_nothing(&d, Verdict::NothingLeft, Reason::BranchLimit);
}

#[test]
fn rule_parallel_round_is_capped_by_max_branches() {
    let e = engine_with("max_branches", "1");
    let d = redirect_mode(&e, &env3(), &[b(T1, "480 X", &[])], ForkMode::Parallel);
    assert_eq!(d.branches.len(), 1);
}

#[test]
fn service_keys() {
    assert_eq!(
        service_key("MESSAGE", None, Some(b"Text/Plain; charset=utf-8")),
        "MESSAGE:text/plain"
    );
    assert_eq!(
        service_key("notify", Some(b"ua-profile;id=3"), None),
        "NOTIFY:ua-profile"
    );
    assert_eq!(service_key("NOTIFY", None, Some(b"text/plain")), "NOTIFY");
    assert_eq!(service_key("MESSAGE", None, None), "MESSAGE");
    assert_eq!(service_key("MESSAGE", None, Some(b"\xff\xfe")), "MESSAGE");
    assert!(service_key("MESSAGE", None, Some(&[b'a'; 4000])).len() <= 128);
}

/// The store is read through the host only, at most once per call, and
/// not at all for a redirect that is simply followed (F1).
#[test]
fn the_store_is_read_once_per_lookup_and_not_for_a_followed_redirect() {
    let env = env3();
    let d = redirect(
        &engine(),
        &env,
        &[b(T1, "302 Moved", &["Contact: <sip:t2@127.0.0.1:5072>"])],
    );
    assert_branches(&d, &[T2], Reason::Redirect);
    assert_eq!(env.stored_reads.get(), 0, "a followed 302 reads no store");
    let d = engine().push_lookup(&env, &message(U1), None);
    assert_branches(&d, &[T1], Reason::Registered);
    assert_eq!(env.stored_reads.get(), 1, "push_lookup reads it once");
}

/// Never a target twice: one contact registered twice (registrar matches
/// registrations by Call-ID) is one branch, in parallel mode too.
#[test]
fn a_contact_registered_twice_is_one_target() {
    let mut env = env3();
    env.register(U1, "t1", 5071, Some(900), 50);
    let d = engine().push_lookup(&env, &message(U1), Some(ForkMode::Parallel));
    assert_branches(&d, &[T1, T2, T3], Reason::Registered);
}

// ------------------------------------------- branches as lookup() builds them

/// One registration of u1 at `sip:t1@127.0.0.1:5071`, with `path`,
/// `received` and what `f` sets.
fn env_one(path: Option<&str>, received: Option<&str>, f: impl Fn(&mut Registration)) -> FakeHost {
    let mut env = FakeHost::default();
    let mut r = Registration::new(T1.as_bytes());
    r.set_received(received.map(str::as_bytes));
    r.set_path(path.map(str::as_bytes));
    r.socket = 7;
    r.q = Some(1000);
    r.last_modified = 300;
    f(&mut r);
    env.location.insert(U1.to_string(), vec![r]);
    env
}

/// (row, path_check_local, path, received, want dst, want path)
type HopRow = (
    &'static str,
    bool,
    Option<&'static str>,
    Option<&'static str>,
    Option<&'static str>,
    Option<&'static str>,
);

/// SPEC §3: the next hop and Route set of a branch are lookup()'s
/// (registrar's lookup_helper): the first Path hop when there is a Path
/// (past a local first hop with path_check_local), the Path as the Route
/// set only then, else the received address.
#[test]
fn rule_branch_next_hop_and_route_set_are_lookups() {
    const RCV: &str = "sip:192.0.2.7:40000";
    // (row, path_check_local, path, received, want dst, want path)
    let rows: &[HopRow] = &[
        ("no path: received", false, None, Some(RCV), Some(RCV), None),
        ("no path, no received: none", false, None, None, None, None),
        (
            "path and received: the first Path hop",
            false,
            Some("<sip:edge.example:5070;lr;received=sip:192.0.2.7:40000>"),
            Some(RCV),
            Some("sip:edge.example:5070;lr;received=sip:192.0.2.7:40000"),
            Some("<sip:edge.example:5070;lr;received=sip:192.0.2.7:40000>"),
        ),
        (
            "two hops: the first, the whole Path",
            false,
            Some("<sip:e1.example;lr>,<sip:e2.example;lr>"),
            None,
            Some("sip:e1.example;lr"),
            Some("<sip:e1.example;lr>,<sip:e2.example;lr>"),
        ),
        (
            "display names, params and spaces",
            false,
            Some(" \"Edge\" <sip:e1.example;lr> ;x=\"a,b\" , <sip:e2.example;lr>"),
            None,
            Some("sip:e1.example;lr"),
            Some(" \"Edge\" <sip:e1.example;lr> ;x=\"a,b\" , <sip:e2.example;lr>"),
        ),
        (
            "path_check_local off: a local first hop is the next hop",
            false,
            Some("<sip:example.com;lr>,<sip:e2.example;lr>"),
            Some(RCV),
            Some("sip:example.com;lr"),
            Some("<sip:example.com;lr>,<sip:e2.example;lr>"),
        ),
        (
            "path_check_local: past a local first hop",
            true,
            Some("<sip:example.com;lr>,<sip:e2.example;lr>"),
            Some(RCV),
            Some("sip:e2.example;lr"),
            Some("<sip:e2.example;lr>"),
        ),
        (
            "path_check_local: only a local hop: received, no Route set",
            true,
            Some("<sip:example.com:5060;lr>"),
            Some(RCV),
            Some(RCV),
            None,
        ),
        (
            "path_check_local: a foreign first hop is kept",
            true,
            Some("<sip:e1.example;lr>"),
            Some(RCV),
            Some("sip:e1.example;lr"),
            Some("<sip:e1.example;lr>"),
        ),
        (
            "an empty Path is none",
            false,
            Some(""),
            Some(RCV),
            Some(RCV),
            None,
        ),
    ];
    for &(row, local, path, received, dst, route) in rows {
        let e = engine_with("registrar.path_check_local", if local { "1" } else { "0" });
        let env = env_one(path, received, |_| {});
        let check = |d: &Decision, what: &str| {
            assert_eq!(uris(d), [T1], "{row} ({what}): {d:#?}");
            let b = &d.branches[0];
            assert_eq!(b.dst_uri(), dst.map(str::as_bytes), "{row} ({what})");
            assert_eq!(b.path(), route.map(str::as_bytes), "{row} ({what})");
            assert_eq!(b.socket, 7, "{row} ({what})");
        };
        check(&e.push_lookup(&env, &message(U1), None), "lookup");
        // The same in a failover round, and for a redirect to the contact.
        let mut env2 = env.clone();
        env2.register(U1, "t0", 5070, Some(1000), 900);
        let d = failure_round(&e, &env2, &[timeout("sip:t0@127.0.0.1:5070")], b"", None);
        check(&d, "failover");
        let d = failure_round(
            &e,
            &env2,
            &[b(
                "sip:t0@127.0.0.1:5070",
                "302 Moved",
                &[&format!("Contact: <{T1}>")],
            )],
            b"",
            None,
        );
        check(&d, "redirect to an own contact");
    }
}

/// A registration whose Path does not parse is skipped (registrar's
/// lookup() skips it too); the others are used. (Like a registered
/// contact that is not a SIP URI, it is skipped without a warning per
/// round: the registration is the registrar's to refuse.)
#[test]
fn rule_a_registration_with_a_malformed_path_is_skipped() {
    for bad in [
        "sip:no-angles;lr",
        "<sip:a;lr",
        "<sip:a;lr>,",
        "<sip:a;lr> junk",
        "<>",
    ] {
        let mut env = env_one(Some(bad), Some("sip:192.0.2.7:1"), |_| {});
        env.register(U1, "t2", 5072, Some(500), 10);
        let d = engine().push_lookup(&env, &message(U1), None);
        assert_branches(&d, &[T2], Reason::Registered);
    }
    let huge = format!("<sip:{}.example;lr>", "a".repeat(10_000));
    let env = env_one(Some(&huge), None, |_| {});
    let d = engine().push_lookup(&env, &message(U1), None);
    assert_nothing(&d, Verdict::NothingLeft, Reason::NoTarget);
}

/// SPEC §3: the registration's branch flags, instance, reg-id (only with
/// an instance), ruid, user agent and connection go with the branch.
#[test]
fn rule_branch_carries_flags_instance_reg_id_ruid_user_agent() {
    const INST: &str = "\"<urn:uuid:00000000-0000-1000-8000-000a95a0e128>\"";
    // (row, flags, instance, reg_id, want reg_id)
    for &(row, flags, instance, reg_id, want_reg_id) in &[
        (
            "NAT flag and an outbound flow",
            1u32 << 6,
            Some(INST),
            2u32,
            2u32,
        ),
        ("reg-id without instance is dropped", 3, None, 2, 0),
        ("nothing", 0, None, 0, 0),
    ] {
        let env = env_one(None, Some("sip:192.0.2.7:1"), |r| {
            r.flags = flags;
            r.set_instance(instance.map(str::as_bytes));
            r.reg_id = reg_id;
            r.set_ruid(Some(b"uloc-1"));
            r.set_user_agent(Some(b"Phone/1"));
            r.conn_id = 42;
        });
        for d in [engine().push_lookup(&env, &message(U1), None), {
            let mut env2 = env.clone();
            env2.register(U1, "t0", 5070, Some(1000), 900);
            failure_round(
                &engine(),
                &env2,
                &[timeout("sip:t0@127.0.0.1:5070")],
                b"",
                None,
            )
        }] {
            assert_eq!(uris(&d), [T1], "{row}");
            let b = &d.branches[0];
            assert_eq!(b.flags, flags, "{row}");
            assert_eq!(b.instance(), instance.map(str::as_bytes), "{row}");
            assert_eq!(b.reg_id, want_reg_id, "{row}");
            assert_eq!(b.ruid(), Some(&b"uloc-1"[..]), "{row}");
            assert_eq!(b.user_agent(), Some(&b"Phone/1"[..]), "{row}");
            assert_eq!(b.conn_id, 42, "{row}");
        }
    }
    // A target that is not a registration has none of them.
    let d = redirect(
        &engine(),
        &env3(),
        &[b(T1, "302 Moved", &["Contact: <sip:u9@partner.example>"])],
    );
    let e = engine_with("allowed_domains", "partner.example");
    let d2 = redirect(
        &e,
        &env3(),
        &[b(T1, "302 Moved", &["Contact: <sip:u9@partner.example>"])],
    );
    assert!(d.branches.is_empty());
    let b = &d2.branches[0];
    assert_eq!(
        (
            b.flags,
            b.reg_id,
            b.conn_id,
            &b.ruid(),
            &b.user_agent(),
            &b.dst_uri(),
            &b.path()
        ),
        (0, 0, 0, &None, &None, &None, &None)
    );
}

/// SPEC §3: a contact whose registered methods exclude the request's is
/// not a target; it counts as a failover (once per transaction); when no
/// contact accepts the method, push_lookup says so (-3, registrar's -2).
#[test]
fn rule_a_service_the_terminal_does_not_accept_is_not_sent_to_it() {
    use common::{METHOD_MESSAGE, METHOD_NOTIFY};
    let notify_only = |env: &mut FakeHost, name: &str| {
        for r in env.location.get_mut(U1).unwrap() {
            if r.uri().starts_with(format!("sip:{name}@").as_bytes()) {
                r.methods = METHOD_NOTIFY | 1;
            }
        }
    };
    // t1 (first by q/recency) takes NOTIFY only: MESSAGE goes to t2.
    let mut env = env3();
    notify_only(&mut env, "t1");
    let d = engine().push_lookup(&env, &message(U1), None);
    assert_branches(&d, &[T2], Reason::Registered);
    assert_eq!(d.counters[Stat::Failovers], 1);
    // In parallel: t2 and t3, t1 skipped.
    let d = engine().push_lookup(&env, &message(U1), Some(ForkMode::Parallel));
    assert_branches(&d, &[T2, T3], Reason::Registered);
    assert_eq!(d.counters[Stat::Failovers], 1);
    // The failover round after t2 goes to t3, and t1 is not counted again.
    let d = redirect(&engine(), &env, &[timeout(T2)]);
    assert_branches(&d, &[T3], Reason::Failover);
    assert_eq!(d.counters[Stat::Failovers], 1, "the failover round itself");
    // NOTIFY still reaches t1.
    let notify = Request {
        method: "NOTIFY",
        event: Some(b"ua-profile"),
        content_type: None,
        method_bit: METHOD_NOTIFY,
        ..message(U1)
    };
    let d = engine().push_lookup(&env, &notify, None);
    assert_branches(&d, &[T1], Reason::Registered);
    assert_eq!(d.counters[Stat::Failovers], 0);
    // An unknown method bit (0) filters nothing.
    let d = engine().push_lookup(
        &env,
        &Request {
            method_bit: 0,
            ..message(U1)
        },
        None,
    );
    assert_branches(&d, &[T1], Reason::Registered);
    // Every contact excludes MESSAGE: -3, nothing sent.
    notify_only(&mut env, "t2");
    notify_only(&mut env, "t3");
    let d = engine().push_lookup(&env, &message(U1), Some(ForkMode::Parallel));
    assert_nothing(&d, Verdict::NotAccepted, Reason::MethodNotAccepted);
    assert_eq!(d.script_rc(), -3);
    assert_eq!(d.counters[Stat::Failovers], 3);
    // ... and in a failure round: nothing left (the sender gets the reply).
    let d = redirect(&engine(), &env, &[b(T1, "480 Away", &[])]);
    assert_nothing(&d, Verdict::NothingLeft, Reason::Exhausted);
    // A redirect to a contact of the AOR that excludes MESSAGE: skipped.
    let d = redirect(
        &engine(),
        &env,
        &[b(
            "sip:x@127.0.0.1:5099",
            "302 Moved",
            &[&format!("Contact: <{T2}>")],
        )],
    );
    assert!(!uris(&d).contains(&T2.to_string()), "{d:#?}");
    assert!(d.counters[Stat::Failovers] >= 1);
    // Methods given as MESSAGE only: MESSAGE passes.
    for r in env.location.get_mut(U1).unwrap() {
        r.methods = METHOD_MESSAGE;
    }
    let d = engine().push_lookup(&env, &message(U1), None);
    assert_branches(&d, &[T1], Reason::Registered);
}

// ------------------------------- a learned forwarding follows the terminal

const INST3: &str = "\"<urn:uuid:00000000-0000-1000-8000-000000000003>\"";

/// env3 with t3 registered with an instance.
fn env3_instance() -> FakeHost {
    let mut env = env3();
    for r in env.location.get_mut(U1).unwrap() {
        if r.uri() == T3.as_bytes() {
            r.set_instance(Some(INST3.as_bytes()));
        }
    }
    env
}

/// registrar's reg_cmp_instances(): one pair of <> stripped, then bytes.
#[test]
fn instances_compare_as_registrar_compares_them() {
    use push_redirect::engine::same_instance;
    for (a, b, same) in [
        ("<urn:uuid:1>", "<urn:uuid:1>", true),
        ("<urn:uuid:1>", "urn:uuid:1", true),
        ("urn:uuid:1", "<urn:uuid:1>", true),
        ("<urn:uuid:1>", "<urn:uuid:2>", false),
        ("<urn:uuid:1>", "<URN:uuid:1>", false),
        ("\"<urn:uuid:1>\"", "\"<urn:uuid:1>\"", true),
        ("\"<urn:uuid:1>\"", "<urn:uuid:1>", false),
        ("<>", "<>", true),
        ("<>", "", false),
        ("", "", false),
        ("<<x>>", "<x>", false),
        ("<<x>>", "<<x>>", true),
    ] {
        assert_eq!(same_instance(a.as_bytes(), b.as_bytes()), same, "{a} {b}");
        assert_eq!(same_instance(b.as_bytes(), a.as_bytes()), same, "{b} {a}");
    }
}

/// SPEC §3: a 301 to a registered terminal of the subscriber with a
/// +sip.instance stores that instance (and the AOR).
#[test]
fn rule_a_301_to_a_registered_terminal_stores_its_instance() {
    let d = redirect(
        &engine(),
        &env3_instance(),
        &[b(T1, "301 Moved", &[&format!("Contact: <{T3}>;q=0.8")])],
    );
    assert_branches(&d, &[T3], Reason::Redirect);
    let StoreAction::Learn(l) = &d.store else {
        panic!("{:?}", d.store)
    };
    assert_eq!(
        l.targets,
        [ForwardTarget {
            uri: T3.into(),
            q: Some(800),
            instance: Some(TargetInstance {
                aor: U1.into(),
                instance: INST3.into(),
            }),
        }]
    );
    // A terminal without an instance, or a foreign target: its URI only.
    let d = redirect(
        &engine(),
        &env3_instance(),
        &[b(T1, "301 Moved", &[&format!("Contact: <{T2}>")])],
    );
    let StoreAction::Learn(l) = &d.store else {
        panic!("{:?}", d.store)
    };
    assert_eq!(l.targets[0].instance, None);
    // An instance that cannot be kept on a line: its URI only.
    let mut env = env3();
    for r in env.location.get_mut(U1).unwrap() {
        r.set_instance(Some(b"<urn:uuid:a b>"));
    }
    let d = redirect(
        &engine(),
        &env,
        &[b(T1, "301 Moved", &[&format!("Contact: <{T3}>")])],
    );
    let StoreAction::Learn(l) = &d.store else {
        panic!("{:?}", d.store)
    };
    assert_eq!(l.targets[0].instance, None);
}

/// SPEC §3: a registrar that keeps the terminal's old contact beside the
/// one it registered from since (OpenSIPS's matches contacts by URI) has
/// two registrations of one instance: the stored forwarding goes to the
/// one registered last, wherever it is in the record; in the same second,
/// the later in the record (usrloc appends a newer contact after the
/// older ones of its q).
#[test]
fn rule_a_learned_forwarding_follows_the_newest_registration_of_its_instance() {
    let inst = "<urn:uuid:00000000-0000-1000-8000-000000000003>";
    let f = Forwarding {
        kind: ForwardingKind::Permanent,
        targets: vec![ForwardTarget {
            uri: T3.into(),
            q: None,
            instance: Some(TargetInstance {
                aor: U1.into(),
                instance: inst.into(),
            }),
        }],
        expires_at: None,
    };
    let moved = "sip:t3@127.0.0.1:5083";
    for (old_at, new_at, want) in [(100, 200, moved), (200, 100, T3), (100, 100, moved)] {
        let mut env = env3();
        env.register(U1, "t3", 5083, Some(500), 500);
        for r in env.location.get_mut(U1).unwrap() {
            if r.uri() == T3.as_bytes() {
                r.set_instance(Some(inst.as_bytes()));
                r.last_modified = old_at;
            } else if r.uri() == moved.as_bytes() {
                r.set_instance(Some(inst.as_bytes()));
                r.last_modified = new_at;
            }
        }
        let d = engine().push_lookup(&env.storing(&f), &message(U1), None);
        assert_branches(&d, &[want], Reason::StoredForwarding);
    }
}

/// SPEC §3: the stored forwarding reaches the terminal at the contact it
/// registered from since (another port), with that registration's next
/// hop and socket; without the instance registered any more, the stored
/// URI as before (refused: a foreign address no longer registered).
#[test]
fn rule_a_learned_forwarding_follows_the_terminal_not_its_address() {
    let f = Forwarding {
        kind: ForwardingKind::Permanent,
        targets: vec![ForwardTarget {
            uri: T3.into(),
            q: Some(800),
            instance: Some(TargetInstance {
                aor: U1.into(),
                instance: "<urn:uuid:00000000-0000-1000-8000-000000000003>".into(),
            }),
        }],
        expires_at: None,
    };
    // t3 re-registered from port 5083 (the old contact is gone).
    let moved = "sip:t3@127.0.0.1:5083";
    let mut env = env3();
    env.location
        .get_mut(U1)
        .unwrap()
        .retain(|r| r.uri() != T3.as_bytes());
    env.register(U1, "t3", 5083, Some(500), 500);
    for r in env.location.get_mut(U1).unwrap() {
        if r.uri() == moved.as_bytes() {
            r.set_instance(Some(b"\"<urn:uuid:00000000-0000-1000-8000-000000000003>\""));
        }
    }
    // (the stored instance is written without quotes: no match)
    let d = engine().push_lookup(&env.storing(&f), &message(U1), None);
    assert_branches(&d, &[T1], Reason::Registered);
    for r in env.location.get_mut(U1).unwrap() {
        if r.uri() == moved.as_bytes() {
            r.set_instance(Some(b"<urn:uuid:00000000-0000-1000-8000-000000000003>"));
        }
    }
    let d = engine().push_lookup(&env.storing(&f), &message(U1), None);
    assert_branches(&d, &[moved], Reason::StoredForwarding);
    assert_eq!(d.branches[0].socket, 5083);
    assert_eq!(d.branches[0].q, Some(800));
    assert_eq!(
        d.branches[0].dst_uri(),
        Some(&b"sip:edge5083@127.0.0.1;lr"[..])
    );
    assert_eq!(d.counters[Stat::ForwardingsApplied], 1);
    // Already tried in this transaction: not again (failover to t1).
    let d = redirect(&engine(), &env.storing(&f), &[timeout(moved)]);
    assert!(!uris(&d).contains(&moved.to_string()), "{d:#?}");
    // A temporary one whose terminal failed is forgotten.
    let temp = Forwarding {
        kind: ForwardingKind::Temporary,
        expires_at: Some(2_000_000),
        ..f.clone()
    };
    let d = redirect(&engine(), &env.storing(&temp), &[b(moved, "480 Away", &[])]);
    assert_eq!(d.store, StoreAction::Forget, "{d:#?}");
    // The instance no longer registered: the stored URI, refused as
    // before (a foreign address), so the terminals.
    env.location
        .get_mut(U1)
        .unwrap()
        .retain(|r| r.uri() != moved.as_bytes());
    let d = engine().push_lookup(&env.storing(&f), &message(U1), None);
    assert_branches(&d, &[T1], Reason::Registered);
    // Stored for another AOR: not resolved here (the stored URI).
    let mut other = f.clone();
    other.targets[0].instance.as_mut().unwrap().aor = "sip:u9@example.com".into();
    env.register(U1, "t3", 5073, Some(500), 400);
    let d = engine().push_lookup(&env.storing(&other), &message(U1), None);
    assert_branches(&d, &[T3], Reason::StoredForwarding);
}
