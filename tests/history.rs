//! History-Info (RFC 7044, RFC 4458 `cause`) and Diversion (RFC 5806):
//! the entries each branch carries, per flow of SPEC §2, serial and
//! parallel, two rounds deep; the entries parse back (RFC 7044 ABNF); a
//! property: indexes are well-formed and each branch has only its own
//! path; hostile incoming History-Info.

mod common;

use common::{b, branches, message, timeout, FakeHost, B};
use proptest::prelude::*;
use push_redirect::config::{Config, ForkMode};
use push_redirect::engine::history::{
    last_incoming, parse_entries, HiError, Index, MAX_INCOMING_ENTRIES,
};
use push_redirect::engine::{
    Decision, Engine, FailedRound, ForwardTarget, Forwarding, ForwardingKind, Reason, Request,
    Verdict,
};

const U1: &str = "sip:u1@example.com";
const T1: &str = "sip:t1@127.0.0.1:5071";
const T2: &str = "sip:t2@127.0.0.1:5072";
const T3: &str = "sip:t3@127.0.0.1:5073";

fn engine_with(params: &[(&str, &str)]) -> Engine {
    let mut c = Config::default();
    c.set("allowed_domains", "partner.example").unwrap();
    for (n, v) in params {
        c.set(n, v).unwrap();
    }
    Engine::new(c)
}

fn engine() -> Engine {
    engine_with(&[])
}

/// u1 has t1 (q=1.0, newest), t2 (q=1.0, older) and t3 (q=0.5); u2 has s1.
fn env() -> FakeHost {
    let mut env = FakeHost::default();
    env.register(U1, "t1", 5071, Some(1000), 300)
        .register(U1, "t2", 5072, Some(1000), 200)
        .register(U1, "t3", 5073, Some(500), 400)
        .register("sip:u2@example.com", "s1", 5081, None, 100);
    env
}

/// A transaction as tm keeps it: its branches, and the memo of the last
/// round that sent some.
struct Tx {
    list: Vec<B>,
    memo: Vec<u8>,
}

impl Tx {
    fn new() -> Tx {
        Tx {
            list: Vec::new(),
            memo: Vec::new(),
        }
    }

    /// Sends a decision's branches (a new round).
    fn send(&mut self, d: &Decision) {
        assert_eq!(d.verdict, Verdict::Branches, "{d:#?}");
        for x in &mut self.list {
            x.current = false;
        }
        for br in &d.branches {
            self.list.push(B {
                uri: String::from_utf8(br.uri().to_vec()).unwrap(),
                status: 0,
                reply: None,
                current: true,
            });
        }
        self.memo = d.memo.clone();
    }

    /// The branch to `uri` answers (status line and headers), or times
    /// out (`None`).
    fn answer(&mut self, uri: &str, answer: Option<(&str, &[&str])>) {
        let x = self
            .list
            .iter_mut()
            .find(|x| x.uri == uri)
            .unwrap_or_else(|| panic!("no branch to {uri}"));
        let y = match answer {
            Some((status, headers)) => b(uri, status, headers),
            None => timeout(uri),
        };
        x.status = y.status;
        x.reply = y.reply;
    }

    fn redirect(&self, e: &Engine, env: &FakeHost, mode: Option<ForkMode>) -> Decision {
        self.redirect_req(e, env, &message(U1), mode)
    }

    fn redirect_req(
        &self,
        e: &Engine,
        env: &FakeHost,
        req: &Request<'_>,
        mode: Option<ForkMode>,
    ) -> Decision {
        let br = branches(&self.list);
        e.push_redirect(
            env,
            req,
            &FailedRound {
                branches: &br,
                memo: &self.memo,
            },
            mode,
        )
    }
}

/// Branch `uri`'s History-Info value.
fn hi(d: &Decision, uri: &str) -> String {
    let br = d
        .branches
        .iter()
        .find(|x| x.uri() == uri.as_bytes())
        .unwrap_or_else(|| panic!("no branch to {uri}: {d:#?}"));
    String::from_utf8(br.history_info.clone()).unwrap()
}

/// Branch `uri`'s Diversion value.
fn div(d: &Decision, uri: &str) -> String {
    let br = d
        .branches
        .iter()
        .find(|x| x.uri() == uri.as_bytes())
        .unwrap();
    String::from_utf8(br.diversion.clone()).unwrap()
}

/// Every entry of a value parses back (RFC 7044 ABNF): (uri, index, rc,
/// mp) as text.
fn parsed(v: &str) -> Vec<(String, String, Option<String>, Option<String>)> {
    let mut out = Vec::new();
    parse_entries(v.as_bytes(), 1000, |e| {
        out.push((
            String::from_utf8(e.uri.to_vec()).unwrap(),
            e.index.to_string(),
            e.rc.map(|i| i.to_string()),
            e.mp.map(|i| i.to_string()),
        ))
    })
    .unwrap_or_else(|err| panic!("{err}: {v}"));
    out
}

const ROOT: &str = "<sip:u1@example.com>;index=1";

#[test]
fn lookup_first_delivery_to_registered_terminals_adds_none() {
    let e = engine_with(&[("diversion", "1")]);
    // Serial and parallel: no value, no memo (nothing for the module to
    // keep with the transaction); the next round derives these entries.
    for mode in [None, Some(ForkMode::Parallel)] {
        let d = e.push_lookup(&env(), &message(U1), mode);
        assert_eq!(d.reason, Reason::Registered);
        assert!(!d.branches.is_empty());
        for x in &d.branches {
            assert!(x.history_info.is_empty(), "{d:#?}");
            assert!(x.diversion.is_empty(), "{d:#?}");
        }
        assert!(d.memo.is_empty(), "{d:#?}");
    }
    // With incoming History-Info and Privacy too: it passes on untouched
    // (the module adds no row), and is not even read (no warning for a
    // malformed one).
    let mut req = message(U1);
    let rows: &[&[u8]] = &[b"garbage"];
    req.history_info = rows;
    req.privacy = Some(b"history");
    let d = e.push_lookup(&env(), &req, None);
    assert!(d.branches.iter().all(|x| x.history_info.is_empty()));
    assert!(d.memo.is_empty());
    assert!(d.warnings.is_empty(), "{d:#?}");
}

#[test]
fn adds_entries_only_skips_push_lookups_registered_terminals() {
    use push_redirect::engine::history::adds_entries;
    // push_lookup: its first delivery to the registered terminals adds
    // none; a retarget by a stored forwarding does.
    assert!(!adds_entries(true, Reason::Registered));
    assert!(adds_entries(true, Reason::StoredForwarding));
    assert!(adds_entries(true, Reason::Provisioned));
    // push_redirect: every tier, the registered terminals (a failover)
    // too.
    for r in [
        Reason::Redirect,
        Reason::PendingRedirect,
        Reason::Provisioned,
        Reason::Failover,
        Reason::Registered,
    ] {
        assert!(adds_entries(false, r), "{r:?}");
    }
}

#[test]
fn lookup_parallel_then_each_3xx_derives_its_first_branch() {
    let (e, env) = (engine(), env());
    let mut tx = Tx::new();
    tx.send(&e.push_lookup(&env, &message(U1), Some(ForkMode::Parallel)));
    assert!(tx.memo.is_empty());
    // t1 and t2 redirect, t3 is busy: each Contact below its own 3xx.
    tx.answer(
        T1,
        Some(("302 Moved", &["Contact: <sip:a@partner.example>"])),
    );
    tx.answer(
        T2,
        Some(("302 Moved", &["Contact: <sip:b@partner.example>"])),
    );
    tx.answer(T3, Some(("486 Busy", &[])));
    let d = tx.redirect(&e, &env, Some(ForkMode::Parallel));
    assert_eq!(d.reason, Reason::Redirect);
    assert_eq!(
        hi(&d, "sip:a@partner.example"),
        format!(
            "{ROOT}, <{T1}?Reason=SIP%3Bcause%3D302>;index=1.1;rc=1, \
             <sip:a@partner.example;cause=302>;index=1.1.1;mp=1.1"
        )
    );
    assert_eq!(
        hi(&d, "sip:b@partner.example"),
        format!(
            "{ROOT}, <{T2}?Reason=SIP%3Bcause%3D302>;index=1.2;rc=1, \
             <sip:b@partner.example;cause=302>;index=1.2.1;mp=1.2"
        )
    );
}

#[test]
fn f1_redirect_two_rounds_deep() {
    let (e, env) = (engine(), env());
    let mut tx = Tx::new();
    tx.send(&e.push_lookup(&env, &message(U1), None));
    tx.answer(
        T1,
        Some(("302 Moved", &["Contact: <sip:x@partner.example>"])),
    );
    let d = tx.redirect(&e, &env, None);
    assert_eq!(d.reason, Reason::Redirect);
    let t1 = format!("<{T1}?Reason=SIP%3Bcause%3D302>;index=1.1;rc=1");
    assert_eq!(
        hi(&d, "sip:x@partner.example"),
        format!("{ROOT}, {t1}, <sip:x@partner.example;cause=302>;index=1.1.1;mp=1.1")
    );
    tx.send(&d);
    tx.answer(
        "sip:x@partner.example",
        Some(("302 Moved", &["Contact: <sip:y@partner.example>"])),
    );
    let d = tx.redirect(&e, &env, None);
    assert_eq!(
        hi(&d, "sip:y@partner.example"),
        format!(
            "{ROOT}, {t1}, <sip:x@partner.example;cause=302?Reason=SIP%3Bcause%3D302>;index=1.1.1;mp=1.1, \
             <sip:y@partner.example;cause=302>;index=1.1.1.1;mp=1.1.1"
        )
    );
}

#[test]
fn f1_redirect_to_a_terminal_of_the_same_aor_is_rc() {
    let (e, env) = (engine(), env());
    let mut tx = Tx::new();
    tx.send(&e.push_lookup(&env, &message(U1), None));
    tx.answer(T1, Some(("302 Moved", &[&format!("Contact: <{T3}>")])));
    let d = tx.redirect(&e, &env, None);
    assert_eq!(
        hi(&d, T3),
        format!(
            "{ROOT}, <{T1}?Reason=SIP%3Bcause%3D302>;index=1.1;rc=1, <{T3};cause=302>;index=1.1.1;rc=1.1"
        )
    );
}

#[test]
fn f1_redirect_to_another_local_aor_gives_it_an_entry() {
    let (e, env) = (engine(), env());
    let mut tx = Tx::new();
    tx.send(&e.push_lookup(&env, &message(U1), None));
    tx.answer(T1, Some(("302 Moved", &["Contact: <sip:u2@example.com>"])));
    let d = tx.redirect(&e, &env, None);
    assert_eq!(
        hi(&d, "sip:s1@127.0.0.1:5081"),
        format!(
            "{ROOT}, <{T1}?Reason=SIP%3Bcause%3D302>;index=1.1;rc=1, \
             <sip:u2@example.com;cause=302>;index=1.1.1;mp=1.1, \
             <sip:s1@127.0.0.1:5081>;index=1.1.1.1;rc=1.1.1"
        )
    );
}

#[test]
fn f2_serial_failover_two_rounds_deep() {
    let e = engine_with(&[("diversion", "1")]);
    let env = env();
    let mut tx = Tx::new();
    tx.send(&e.push_lookup(&env, &message(U1), None));
    tx.answer(T1, None);
    let d = tx.redirect(&e, &env, None);
    assert_eq!(d.reason, Reason::Failover);
    let t1 = format!("<{T1}?Reason=SIP%3Bcause%3D408>;index=1.1;rc=1");
    assert_eq!(
        hi(&d, T2),
        format!("{ROOT}, {t1}, <{T2};cause=408>;index=1.2;rc=1")
    );
    assert_eq!(
        div(&d, T2),
        "<sip:u1@example.com>;reason=no-answer;counter=1"
    );
    tx.send(&d);
    tx.answer(T2, Some(("486 Busy Here", &[])));
    let d = tx.redirect(&e, &env, None);
    assert_eq!(
        hi(&d, T3),
        format!(
            "{ROOT}, {t1}, <{T2};cause=408?Reason=SIP%3Bcause%3D486>;index=1.2;rc=1, \
             <{T3};cause=486>;index=1.3;rc=1"
        )
    );
    assert_eq!(
        div(&d, T3),
        "<sip:u1@example.com>;reason=user-busy;counter=2, \
         <sip:u1@example.com>;reason=no-answer;counter=1"
    );
}

#[test]
fn f3_parallel_failover_each_branch_its_own_entry() {
    let (e, env) = (engine(), env());
    let mut tx = Tx::new();
    tx.send(&e.push_lookup(&env, &message(U1), None));
    tx.answer(T1, Some(("480 Unavailable", &[])));
    let d = tx.redirect(&e, &env, Some(ForkMode::Parallel));
    let t1 = format!("<{T1}?Reason=SIP%3Bcause%3D480>;index=1.1;rc=1");
    assert_eq!(
        hi(&d, T2),
        format!("{ROOT}, {t1}, <{T2};cause=480>;index=1.2;rc=1")
    );
    assert_eq!(
        hi(&d, T3),
        format!("{ROOT}, {t1}, <{T3};cause=480>;index=1.3;rc=1")
    );
}

#[test]
fn f4_several_contacts_parallel_then_a_second_round() {
    let (e, env) = (engine(), env());
    let mut tx = Tx::new();
    tx.send(&e.push_lookup(&env, &message(U1), None));
    tx.answer(
        T1,
        Some((
            "300 Multiple Choices",
            &["Contact: <sip:a@partner.example>;q=0.9, <sip:b@partner.example>;q=0.5"],
        )),
    );
    let d = tx.redirect(&e, &env, Some(ForkMode::Parallel));
    let t1 = format!("<{T1}?Reason=SIP%3Bcause%3D300>;index=1.1;rc=1");
    assert_eq!(
        hi(&d, "sip:a@partner.example"),
        format!("{ROOT}, {t1}, <sip:a@partner.example;cause=300>;index=1.1.1;mp=1.1")
    );
    assert_eq!(
        hi(&d, "sip:b@partner.example"),
        format!("{ROOT}, {t1}, <sip:b@partner.example;cause=300>;index=1.1.2;mp=1.1")
    );
    // Round two: a redirects again, b is busy; a's Contact carries a's
    // path, not b's.
    tx.send(&d);
    tx.answer(
        "sip:a@partner.example",
        Some(("302 Moved", &["Contact: <sip:c@partner.example>"])),
    );
    tx.answer("sip:b@partner.example", Some(("486 Busy", &[])));
    let d = tx.redirect(&e, &env, Some(ForkMode::Parallel));
    assert_eq!(
        hi(&d, "sip:c@partner.example"),
        format!(
            "{ROOT}, {t1}, <sip:a@partner.example;cause=300?Reason=SIP%3Bcause%3D302>;index=1.1.1;mp=1.1, \
             <sip:c@partner.example;cause=302>;index=1.1.1.1;mp=1.1.1"
        )
    );
}

#[test]
fn f4_several_contacts_serial_the_pending_one_remembers_its_3xx() {
    let (e, env) = (engine(), env());
    let mut tx = Tx::new();
    tx.send(&e.push_lookup(&env, &message(U1), None));
    tx.answer(
        T1,
        Some((
            "300 Multiple Choices",
            &["Contact: <sip:a@partner.example>;q=0.9, <sip:b@partner.example>;q=0.5"],
        )),
    );
    let d = tx.redirect(&e, &env, None);
    assert_eq!(d.branches.len(), 1);
    tx.send(&d);
    tx.answer("sip:a@partner.example", Some(("480 Unavailable", &[])));
    let d = tx.redirect(&e, &env, None);
    assert_eq!(d.reason, Reason::PendingRedirect);
    let t1 = format!("<{T1}?Reason=SIP%3Bcause%3D300>;index=1.1;rc=1");
    assert_eq!(
        hi(&d, "sip:b@partner.example"),
        format!(
            "{ROOT}, {t1}, <sip:a@partner.example;cause=300?Reason=SIP%3Bcause%3D480>;index=1.1.1;mp=1.1, \
             <sip:b@partner.example;cause=300>;index=1.1.2;mp=1.1"
        )
    );
}

fn forwarding(kind: ForwardingKind, uri: &str) -> Forwarding {
    Forwarding {
        kind,
        targets: vec![ForwardTarget {
            uri: uri.into(),
            q: None,
            instance: None,
        }],
        expires_at: None,
    }
}

#[test]
fn f5_provisioned_forwarding_after_a_3xx_without_contact() {
    let e = engine();
    let env = env().storing(&forwarding(
        ForwardingKind::Provisioned,
        "sip:vm@partner.example",
    ));
    let mut tx = Tx::new();
    tx.send(&e.push_lookup(&env, &message(U1), None));
    tx.answer(T1, Some(("302 Moved", &[])));
    let d = tx.redirect(&e, &env, None);
    assert_eq!(d.reason, Reason::Provisioned);
    assert_eq!(
        hi(&d, "sip:vm@partner.example"),
        format!(
            "{ROOT}, <{T1}?Reason=SIP%3Bcause%3D302>;index=1.1;rc=1, \
             <sip:vm@partner.example;cause=302>;index=1.1.1;mp=1.1"
        )
    );
}

#[test]
fn f6_learned_301_says_a_stored_forwarding_retargeted_it() {
    let e = engine_with(&[("diversion", "1")]);
    let env = env().storing(&forwarding(
        ForwardingKind::Permanent,
        "sip:x@partner.example",
    ));
    let mut tx = Tx::new();
    let d = e.push_lookup(&env, &message(U1), None);
    assert_eq!(d.reason, Reason::StoredForwarding);
    let x = "<sip:x@partner.example;cause=301>;index=1.1;mp=1";
    assert_eq!(hi(&d, "sip:x@partner.example"), format!("{ROOT}, {x}"));
    assert_eq!(
        div(&d, "sip:x@partner.example"),
        "<sip:u1@example.com>;reason=unconditional;counter=1"
    );
    // The target fails: the terminals, with the forwarding's entry first.
    tx.send(&d);
    tx.answer("sip:x@partner.example", Some(("480 Unavailable", &[])));
    let d = tx.redirect(&e, &env, None);
    assert_eq!(d.reason, Reason::Failover);
    assert_eq!(
        hi(&d, T1),
        format!(
            "{ROOT}, <sip:x@partner.example;cause=301?Reason=SIP%3Bcause%3D480>;index=1.1;mp=1, \
             <{T1};cause=480>;index=1.2;rc=1"
        )
    );
    assert_eq!(
        div(&d, T1),
        "<sip:u1@example.com>;reason=unavailable;counter=2, \
         <sip:u1@example.com>;reason=unconditional;counter=1"
    );
}

#[test]
fn f7_stored_302_has_cause_302() {
    let e = engine_with(&[("diversion", "1")]);
    let env = env().storing(&forwarding(
        ForwardingKind::Temporary,
        "sip:x@partner.example",
    ));
    let d = e.push_lookup(&env, &message(U1), None);
    assert_eq!(
        hi(&d, "sip:x@partner.example"),
        format!("{ROOT}, <sip:x@partner.example;cause=302>;index=1.1;mp=1")
    );
    assert_eq!(
        div(&d, "sip:x@partner.example"),
        "<sip:u1@example.com>;reason=deflection;counter=1"
    );
}

#[test]
fn lookup_stored_forwarding_to_a_local_aor_gives_it_and_its_contacts_entries() {
    let e = engine();
    let env = env().storing(&forwarding(ForwardingKind::Permanent, "sip:u2@example.com"));
    let d = e.push_lookup(&env, &message(U1), None);
    assert_eq!(d.reason, Reason::StoredForwarding);
    assert_eq!(
        hi(&d, "sip:s1@127.0.0.1:5081"),
        format!(
            "{ROOT}, <sip:u2@example.com;cause=301>;index=1.1;mp=1, \
             <sip:s1@127.0.0.1:5081>;index=1.1.1;rc=1.1"
        )
    );
    assert!(!d.memo.is_empty(), "the next round reads these entries");
}

#[test]
fn lookup_provisioned_forwarding_without_a_terminal_has_cause_480() {
    let e = engine_with(&[("diversion", "1")]);
    let mut env = FakeHost::default();
    env.register("sip:u2@example.com", "s1", 5081, None, 100);
    let env = env.storing(&forwarding(
        ForwardingKind::Provisioned,
        "sip:vm@partner.example",
    ));
    let d = e.push_lookup(&env, &message(U1), None);
    assert_eq!(d.reason, Reason::Provisioned);
    assert_eq!(
        hi(&d, "sip:vm@partner.example"),
        format!("{ROOT}, <sip:vm@partner.example;cause=480>;index=1.1;mp=1")
    );
    assert_eq!(
        div(&d, "sip:vm@partner.example"),
        "<sip:u1@example.com>;reason=unavailable;counter=1"
    );
}

#[test]
fn history_info_0_adds_nothing_and_keeps_no_memo_for_it() {
    let e = engine_with(&[("history_info", "0")]);
    let env = env();
    let d = e.push_lookup(&env, &message(U1), None);
    assert!(d
        .branches
        .iter()
        .all(|x| x.history_info.is_empty() && x.diversion.is_empty()));
    assert!(d.memo.is_empty());
    let mut tx = Tx::new();
    tx.send(&d);
    tx.answer(T1, None);
    let d = tx.redirect(&e, &env, None);
    assert!(d.branches.iter().all(|x| x.history_info.is_empty()));
    assert!(d.memo.is_empty());
    // Diversion alone.
    let e = engine_with(&[("history_info", "0"), ("diversion", "1")]);
    let d = tx.redirect(&e, &env, None);
    assert!(d.branches[0].history_info.is_empty());
    assert_eq!(
        div(&d, T2),
        "<sip:u1@example.com>;reason=no-answer;counter=1"
    );
}

#[test]
fn incoming_entries_are_kept_and_extended() {
    let e = engine();
    let env = env();
    // The request arrived with an entry for its Request-URI: extended.
    let rows: &[&[u8]] = &[b"<sip:alice@a.example>;index=1, <sip:u1@example.com>;index=1.2;mp=1"];
    let mut req = message(U1);
    req.history_info = rows;
    let d = e.push_lookup(&env, &req, None);
    // The first delivery adds none: the request's own entries go on as
    // they are.
    assert_eq!(hi(&d, T1), "");
    let mut tx = Tx::new();
    tx.send(&d);
    tx.answer(T1, None);
    let d = tx.redirect_req(&e, &env, &req, None);
    assert_eq!(
        hi(&d, T2),
        format!(
            "<{T1}?Reason=SIP%3Bcause%3D408>;index=1.2.1;rc=1.2, \
             <{T2};cause=408>;index=1.2.2;rc=1.2"
        )
    );
    // The last entry is another target: the Request-URI gets one below it.
    let rows: &[&[u8]] = &[
        b"<sip:alice@a.example>;index=1",
        b"<sip:bob@b.example>;index=1.1",
    ];
    req.history_info = rows;
    let d = e.push_lookup(&env, &req, None);
    assert_eq!(hi(&d, T1), "");
    let mut tx = Tx::new();
    tx.send(&d);
    tx.answer(T1, None);
    let d = tx.redirect_req(&e, &env, &req, None);
    assert_eq!(
        hi(&d, T2),
        format!(
            "<sip:u1@example.com>;index=1.1.1, <{T1}?Reason=SIP%3Bcause%3D408>;index=1.1.1.1;rc=1.1.1, \
             <{T2};cause=408>;index=1.1.1.2;rc=1.1.1"
        )
    );
}

#[test]
fn privacy_history_tags_the_entries() {
    let e = engine();
    let mut req = message(U1);
    req.privacy = Some(b"id; history");
    let d = e.push_lookup(&env(), &req, None);
    assert_eq!(hi(&d, T1), "");
    let mut tx = Tx::new();
    tx.send(&d);
    tx.answer(T1, None);
    let d = tx.redirect_req(&e, &env(), &req, None);
    assert_eq!(
        hi(&d, T2),
        format!(
            "{ROOT}, <{T1}?Reason=SIP%3Bcause%3D408&Privacy=history>;index=1.1;rc=1, \
             <{T2};cause=408?Privacy=history>;index=1.2;rc=1"
        )
    );
}

#[test]
fn hostile_incoming_history_info_is_not_trusted() {
    let e = engine();
    let env = env();
    let thousand: String = (0..1000)
        .map(|k| format!("<sip:x{k}@h.example>;index=1.{k}"))
        .collect::<Vec<_>>()
        .join(", ");
    let huge = format!("<sip:{}@h.example>;index=1", "a".repeat(60_000));
    let deep = format!("<sip:u1@example.com>;index=1{}", ".1".repeat(40));
    let nine: Vec<&[u8]> = vec![b"<sip:a@h>;index=1"; 9];
    let cases: Vec<(Vec<&[u8]>, HiError)> = vec![
        (vec![thousand.as_bytes()], HiError::TooLarge),
        (vec![huge.as_bytes()], HiError::TooLarge),
        (vec![deep.as_bytes()], HiError::TooDeep),
        (nine, HiError::TooLarge),
        (vec![b"garbage"], HiError::Malformed),
        (vec![b"<sip:u1@example.com>"], HiError::Malformed),
        (
            vec![b"<sip:u1@example.com>;index=1;index"],
            HiError::Malformed,
        ),
        (vec![b"<sip:u1@example.com>;index=1.x"], HiError::Malformed),
        (vec![b"<sip:u1@example.com;index=1"], HiError::Malformed),
        (
            vec![b"<sip:u1@example.com>;index=99999999"],
            HiError::Malformed,
        ),
        (vec![b"<sip:a@h>;index=1,,"], HiError::Malformed),
        (
            vec![b"\"unterminated <sip:a@h>;index=1"],
            HiError::Malformed,
        ),
        (vec![b""], HiError::Malformed),
        (
            vec![b"<sip:a@h>;index=1 <sip:b@h>;index=2"],
            HiError::Malformed,
        ),
    ];
    for (rows, why) in cases {
        assert_eq!(
            last_incoming(&rows).map(|_| ()),
            Err(why),
            "{:.80?}",
            rows.first()
        );
        let mut req = message(U1);
        req.history_info = &rows;
        let d = e.push_lookup(&env, &req, None);
        // The first delivery neither reads nor adds any.
        assert_eq!(d.branches.len(), 1);
        assert!(d.warnings.is_empty(), "{d:#?}");
        let mut tx = Tx::new();
        tx.send(&d);
        tx.answer(T1, None);
        let d = tx.redirect_req(&e, &env, &req, None);
        // Not read: this proxy's entries start again at 1; the decision
        // is the same as without it.
        assert_eq!(
            hi(&d, T2),
            format!(
                "{ROOT}, <{T1}?Reason=SIP%3Bcause%3D408>;index=1.1;rc=1, \
                 <{T2};cause=408>;index=1.2;rc=1"
            )
        );
        assert_eq!(d.branches.len(), 1);
        assert!(
            d.warnings.iter().any(|w| w.contains("History-Info")),
            "{d:#?}"
        );
    }
    // Within the caps: read.
    let many: String = (1..=MAX_INCOMING_ENTRIES)
        .map(|k| format!("<sip:x{k}@h.example>;index=1.{k}"))
        .collect::<Vec<_>>()
        .join(",");
    let rows: &[&[u8]] = &[many.as_bytes()];
    let last = last_incoming(rows).unwrap().unwrap();
    assert_eq!(last.index.to_string(), format!("1.{MAX_INCOMING_ENTRIES}"));
}

#[test]
fn the_parser_reads_rfc_7044_examples() {
    let v = "\"Bob\" <sip:bob@example.com?Reason=SIP%3Bcause%3D302>;index=1.1;rc=1 , \
             <sip:carol@example.com;cause=486>;index=1.2;mp=1;foo=\"a;b\";np=1.1";
    let p = parsed(v);
    assert_eq!(
        p,
        vec![
            (
                "sip:bob@example.com?Reason=SIP%3Bcause%3D302".into(),
                "1.1".into(),
                Some("1".into()),
                None
            ),
            (
                "sip:carol@example.com;cause=486".into(),
                "1.2".into(),
                None,
                Some("1".into())
            ),
        ]
    );
    assert_eq!(Index::parse(b"1.2.3", 16).unwrap().to_string(), "1.2.3");
    assert!(Index::parse(b"1..2", 16).is_none());
    assert!(Index::parse(b"", 16).is_none());
}

/// Every value a flow produces parses back, and its indexes are a tree:
/// unique, each `rc`/`mp` the index it extends, each parent present.
fn check_value(v: &str) {
    let p = parsed(v);
    let idx: Vec<&String> = p.iter().map(|x| &x.1).collect();
    for (k, (_, index, rc, mp)) in p.iter().enumerate() {
        assert!(!idx[..k].contains(&index), "index {index} twice in {v}");
        let parent = index.rsplit_once('.').map(|(p, _)| p.to_string());
        if let Some(parent) = &parent {
            assert!(
                idx[..k].contains(&parent),
                "{index} before its parent in {v}"
            );
        }
        let via = rc.as_ref().or(mp.as_ref());
        assert_eq!(via, parent.as_ref(), "rc/mp of {index} in {v}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    /// Random rounds of random answers, serial or parallel: every value
    /// is well-formed, and a branch's entries are its own path: none of a
    /// branch sent in the same round, and each entry's index extends one
    /// of the branch's own ancestors.
    #[test]
    fn each_branch_carries_only_its_own_path(
        answers in proptest::collection::vec(0usize..5, 1..6),
        parallel in any::<bool>(),
    ) {
        let e = engine_with(&[("max_depth", "8")]);
        let env = env();
        let mode = Some(if parallel { ForkMode::Parallel } else { ForkMode::Serial });
        let mut tx = Tx::new();
        let mut d = e.push_lookup(&env, &message(U1), mode);
        let mut hop = 0;
        for a in answers {
            if d.verdict != Verdict::Branches {
                break;
            }
            if tx.list.is_empty() {
                // The first delivery (the registered terminals) carries
                // none and keeps no memo.
                prop_assert!(d.branches.iter().all(|x| x.history_info.is_empty()));
                prop_assert!(d.memo.is_empty());
            } else {
                let values: Vec<String> = d.branches.iter()
                    .map(|x| String::from_utf8(x.history_info.clone()).unwrap())
                    .collect();
                for v in &values {
                    check_value(v);
                }
                // Siblings of this round: no branch has another's own entry.
                let owns: Vec<String> = values.iter()
                    .map(|v| parsed(v).last().unwrap().1.clone())
                    .collect();
                for (i, v) in values.iter().enumerate() {
                    for (k, own) in owns.iter().enumerate() {
                        if k != i {
                            prop_assert!(!parsed(v).iter().any(|x| &x.1 == own), "{} in {}", own, v);
                        }
                    }
                }
            }
            tx.send(&d);
            let sent: Vec<String> = tx.list.iter().filter(|x| x.current).map(|x| x.uri.clone()).collect();
            for uri in sent {
                hop += 1;
                let contact = format!("Contact: <sip:h{hop}@partner.example>, <sip:g{hop}@partner.example>");
                match a {
                    0 => tx.answer(&uri, None),
                    1 => tx.answer(&uri, Some(("486 Busy", &[]))),
                    2 => tx.answer(&uri, Some(("302 Moved", &[contact.as_str()]))),
                    3 => tx.answer(&uri, Some(("300 Multiple", &[contact.as_str()]))),
                    _ => tx.answer(&uri, Some(("480 Unavailable", &[]))),
                }
            }
            d = tx.redirect(&e, &env, mode);
        }
    }
}
