//! Property tests: invariants of SPEC §3 that must hold for any transaction
//! a hostile set of terminals can produce.

mod common;

use common::{reply, FakeHost};
use proptest::prelude::*;
use push_redirect::config::{Config, ForkMode};
use push_redirect::engine::{Branch, Engine, FailedRound, Reason, Request, Stat, Verdict};
use push_redirect::{parser, uri};

const AOR: &str = "sip:u1@example.com";

/// Contact URIs a terminal may answer with: own terminals, local AORs
/// (with and without contacts), the proxy itself, allowed and foreign
/// domains, sips, other schemes and garbage.
const POOL: &[&str] = &[
    "sip:t0@127.0.0.1:5070",
    "sip:t1@127.0.0.1:5071",
    "sip:t2@127.0.0.1:5072",
    "sip:t3@127.0.0.1:5073",
    "sip:u2@example.com",
    "sip:nobody@example.com",
    "sip:127.0.0.1:5060",
    "sip:a@partner.example",
    "sip:b@partner.example;transport=tcp",
    "sips:c@partner.example",
    "sip:evil@attacker.example",
    "sips:evil@attacker.example",
    "tel:+34600000000",
    "http://x.example/",
    "sip:@",
    "sip:T1@127.0.0.1:5071;lr",
];

fn env() -> FakeHost {
    let mut env = FakeHost::default();
    for k in 0..4u16 {
        env.register(
            AOR,
            &format!("t{k}"),
            5070 + k,
            Some(1000 - k * 100),
            i64::from(k),
        );
    }
    env.register("sip:u2@example.com", "u2a", 5080, None, 1)
        .register("sip:u2@example.com", "u2b", 5081, Some(300), 2);
    env.register("sips:u1@example.com", "s1", 5090, None, 1);
    env
}

#[derive(Debug, Clone)]
struct Br {
    target: usize,
    status: u16,
    contacts: Vec<(usize, Option<u16>)>,
    expires: Option<u32>,
    timeout: bool,
}

fn status() -> impl Strategy<Value = u16> {
    prop_oneof![
        Just(300u16),
        Just(301),
        Just(302),
        Just(305),
        Just(380),
        Just(401),
        Just(404),
        Just(408),
        Just(480),
        Just(486),
        Just(503),
        Just(603),
        Just(200),
        300u16..700,
    ]
}

fn branch() -> impl Strategy<Value = Br> {
    (
        0..POOL.len(),
        status(),
        prop::collection::vec((0..POOL.len(), prop::option::of(0u16..=1000)), 0..12),
        prop::option::of(0u32..100),
        any::<bool>(),
    )
        .prop_map(|(target, status, contacts, expires, timeout)| Br {
            target,
            status,
            contacts,
            expires,
            timeout: timeout && status == 408,
        })
}

fn build(list: &[Br]) -> Vec<(String, u16, Option<Vec<u8>>)> {
    list.iter()
        .map(|b| {
            let mut headers: Vec<String> = Vec::new();
            if !b.contacts.is_empty() {
                let values: Vec<String> = b
                    .contacts
                    .iter()
                    .map(|(i, q)| match q {
                        Some(q) => format!("<{}>;q={}.{:03}", POOL[*i], q / 1000, q % 1000),
                        None => format!("<{}>", POOL[*i]),
                    })
                    .collect();
                headers.push(format!("Contact: {}", values.join(", ")));
            }
            if let Some(e) = b.expires {
                headers.push(format!("Expires: {e}"));
            }
            let refs: Vec<&str> = headers.iter().map(String::as_str).collect();
            let raw = (!b.timeout).then(|| reply(&format!("{} X", b.status), &refs));
            (POOL[b.target].to_string(), b.status, raw)
        })
        .collect()
}

fn key(u: &[u8]) -> Option<uri::TargetKey> {
    uri::parse(u).ok().map(|u| u.key())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, .. ProptestConfig::default() })]

    /// A whole transaction, round after round, against terminals that
    /// answer from a random table: the rules hold in every round and across
    /// the transaction.
    #[test]
    fn transactions_keep_every_safety_rule(
        answers in prop::collection::vec(branch(), 1..24),
        max_branches in 1u32..10,
        max_depth in 1u32..5,
        parallel in any::<bool>(),
        sips in any::<bool>(),
    ) {
        let mut cfg = Config::default();
        cfg.set("max_branches", &max_branches.to_string()).unwrap();
        cfg.set("max_depth", &max_depth.to_string()).unwrap();
        cfg.set("allowed_domains", "partner.example").unwrap();
        let engine = Engine::new(cfg);
        let env = env();
        let ruri = if sips { "sips:u1@example.com" } else { AOR };
        let req = Request { method: "MESSAGE", ruri: ruri.as_bytes(), has_to_tag: false, event: None, content_type: None, history_info: &[], privacy: None, method_bit: 0 };
        let mode = if parallel { ForkMode::Parallel } else { ForkMode::Serial };

        let first = engine.push_lookup(&env, &req, Some(mode));
        // A decision filled again (the module reuses the one it freed
        // last) is the same as a new one: nothing of the earlier call stays.
        let reply = b"SIP/2.0 301 Moved\r\nContact: <sip:x@partner.example>;expires=60, <sip:y@partner.example>\r\n\r\n";
        let dirty = [Branch { uri: b"sip:t1@127.0.0.1:5071", status: 301, reply: Some(reply), current_round: true }];
        let mut spare = engine.push_redirect(&env, &req, &FailedRound { branches: &dirty, memo: b"pr1 1\n- sip:z@partner.example\n" }, Some(mode));
        engine.push_lookup_into(&env, &req, Some(mode), &mut spare);
        prop_assert_eq!(&first, &spare);
        let mut sent: Vec<String> = first.branches.iter().map(|b| String::from_utf8_lossy(b.uri()).into_owned()).collect();
        let mut round_start = 0;
        let mut memo = Vec::new();
        let mut redirects = 0;
        for _round in 0..16 {
            if sent.len() == round_start { break; }
            // Every branch of the round answers from the table.
            let owned: Vec<(String, u16, Option<Vec<u8>>)> = sent
                .iter()
                .map(|u| {
                    let k = u.bytes().fold(7usize, |h, c| h.wrapping_mul(31).wrapping_add(c as usize));
                    let mut a = build(std::slice::from_ref(&answers[k % answers.len()]));
                    let (_, s, r) = a.remove(0);
                    (u.clone(), s, r)
                })
                .collect();
            let branches: Vec<Branch<'_>> = owned
                .iter()
                .enumerate()
                .map(|(i, (u, s, r))| Branch { uri: u.as_bytes(), status: *s, reply: r.as_deref(), current_round: i >= round_start })
                .collect();
            let d = engine.push_redirect(&env, &req, &FailedRound { branches: &branches, memo: &memo }, Some(mode));
            // Deterministic, and the same in a reused decision.
            prop_assert_eq!(&d, &engine.push_redirect(&env, &req, &FailedRound { branches: &branches, memo: &memo }, Some(mode)));
            engine.push_redirect_into(&env, &req, &FailedRound { branches: &branches, memo: &memo }, Some(mode), &mut spare);
            prop_assert_eq!(&d, &spare);
            prop_assert!(d.branches.len() <= max_branches as usize);
            if !parallel { prop_assert!(d.branches.len() <= 1); }
            prop_assert!(d.branches.len() + branches.len() <= engine.branch_limit.max(branches.len()));
            prop_assert_eq!(d.verdict == Verdict::Branches, !d.branches.is_empty());
            if owned[round_start..].iter().any(|(_, s, _)| (600..700).contains(s)) {
                prop_assert!(d.branches.is_empty());
            }
            redirects += d.counters[Stat::RedirectsFollowed];
            prop_assert!(redirects <= max_depth, "{} redirects followed, max_depth {}", redirects, max_depth);
            let tried: Vec<_> = branches.iter().filter_map(|b| key(b.uri)).collect();
            let mut seen = Vec::new();
            for b in &d.branches {
                let u = uri::parse(b.uri());
                prop_assert!(u.is_ok(), "only sip:/sips: targets: {:?}", String::from_utf8_lossy(b.uri()));
                let u = u.unwrap();
                prop_assert!(!tried.contains(&u.key()), "tried again: {:?}", String::from_utf8_lossy(b.uri()));
                prop_assert!(!seen.contains(&u.key()));
                seen.push(u.key());
                if sips { prop_assert_eq!(u.scheme, uri::Scheme::Sips); }
                let host = u.host_str();
                prop_assert!(host == "127.0.0.1" || host == "partner.example", "refused host {}", host);
                prop_assert!(host != "127.0.0.1" || u.port != Some(5060), "the proxy itself");
            }
            if d.reason == Reason::Redirect { prop_assert!(d.counters[Stat::RedirectsFollowed] > 0); }
            round_start = sent.len();
            sent.extend(d.branches.iter().map(|b| String::from_utf8_lossy(b.uri()).into_owned()));
            memo = d.memo;
        }
    }

    #[test]
    fn parser_never_panics_and_terminates(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        if let Ok(r) = parser::parse_response(&bytes) {
            let n = r.contacts().take(10_000).count();
            prop_assert!(n < 10_000);
            let _ = r.expires();
        }
        let _ = uri::parse(&bytes);
    }

    #[test]
    fn parser_on_mangled_replies(
        contacts in prop::collection::vec("[ -~]{0,40}", 0..20),
        cut in any::<prop::sample::Index>(),
    ) {
        let raw = reply("300 Multiple", &[&format!("Contact: {}", contacts.join(","))]);
        let cut = cut.index(raw.len() + 1);
        if let Ok(r) = parser::parse_response(&raw[..cut]) {
            // Each value yields at most one item: the iterator always advances.
            prop_assert!(r.contacts().count() <= contacts.len() + 1 + raw.iter().filter(|&&c| c == b',').count());
        }
    }
}

/// A host as a terminal may write it: an IPv4 address, or a domain name
/// of one to four labels in mixed case (the top label starts with a
/// letter), as (text, lower-cased).
fn host() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::array::uniform4(any::<u8>())
            .prop_map(|o| format!("{}.{}.{}.{}", o[0], o[1], o[2], o[3])),
        prop::collection::vec("[a-zA-Z0-9]([a-zA-Z0-9-]{0,8}[a-zA-Z0-9])?", 0..3)
            .prop_flat_map(|labels| { ("[a-zA-Z]([a-zA-Z0-9-]{0,8}[a-zA-Z0-9])?", Just(labels)) })
            .prop_map(|(top, mut labels)| {
                labels.push(top);
                labels.join(".")
            }),
    ]
}

/// Header lines that are neither Contact nor Expires, some starting like
/// them, in any case, with SP / HTAB before the colon and folded values.
fn other_header() -> impl Strategy<Value = String> {
    let names = prop::sample::select(vec![
        "Via",
        "From",
        "To",
        "Call-ID",
        "CSeq",
        "Content-Length",
        "Content-Type",
        "Contacts",
        "Contact-X",
        "Max-Forwards",
        "mx",
        "Event",
        "Expiresx",
        "e",
        "c",
        "User-Agent",
    ]);
    (
        names,
        "[ \t]{0,2}",
        "[ -~]{0,30}",
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(name, ws, value, upper, fold)| {
            let name = if upper {
                name.to_uppercase()
            } else {
                name.to_string()
            };
            let fold = if fold { "\r\n\t<sip:fold@h>" } else { "" };
            format!("{name}{ws}: {value}{fold}")
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, .. ProptestConfig::default() })]

    /// A URI built from parts parses back to them; its AOR key is the
    /// lower-cased host, and case in the scheme or host changes no key.
    #[test]
    fn built_uris_parse_back(
        sips in any::<bool>(),
        upper_scheme in any::<bool>(),
        user in prop::option::of("[a-zA-Z0-9._~+-]{1,12}"),
        host in host(),
        port in prop::option::of(1u16..),
        params in "(;[a-z]{1,5}(=[a-zA-Z0-9]{1,5})?){0,2}",
    ) {
        let scheme = if sips { "sips" } else { "sip" };
        let written = if upper_scheme { scheme.to_uppercase() } else { scheme.to_string() };
        let mut raw = format!("{written}:");
        if let Some(u) = &user {
            raw.push_str(u);
            raw.push('@');
        }
        raw.push_str(&host);
        if let Some(p) = port {
            raw.push_str(&format!(":{p}"));
        }
        raw.push_str(&params);
        let u = uri::parse(raw.as_bytes()).map_err(|e| TestCaseError::fail(format!("{raw}: {e}")))?;
        prop_assert_eq!(u.scheme == uri::Scheme::Sips, sips);
        prop_assert_eq!(u.user, user.as_deref().map(str::as_bytes));
        prop_assert_eq!(u.host, host.as_bytes());
        prop_assert_eq!(u.port, port);
        prop_assert_eq!(u.params, params.as_bytes());
        let user_at = user.map(|u| format!("{u}@")).unwrap_or_default();
        prop_assert_eq!(u.aor(), format!("{scheme}:{user_at}{}", host.to_ascii_lowercase()));
        let lower = raw.to_ascii_lowercase();
        let same = uri::parse(lower.as_bytes()).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(u.host.to_ascii_lowercase(), same.host.to_vec());
        prop_assert!(u.same_target(&same) == (u.user.map(<[u8]>::to_ascii_lowercase) == u.user.map(<[u8]>::to_vec)));
    }

    /// The Contact values of a reply are those of its Contact / m headers,
    /// in order, whatever other headers stand between them.
    #[test]
    fn contacts_are_found_among_other_headers(
        lines in prop::collection::vec(
            prop_oneof![
                other_header().prop_map(|h| (h, None)),
                ("(Contact|contact|CONTACT|m|M)", "[ \t]{0,2}", 0u16..100).prop_map(|(n, ws, k)| {
                    (format!("{n}{ws}: <sip:t{k}@h>"), Some(format!("sip:t{k}@h")))
                }),
                (0u32..100_000).prop_map(|e| (format!("Expires: {e}"), None)),
            ],
            0..12,
        ),
    ) {
        let headers: Vec<&str> = lines.iter().map(|(h, _)| h.as_str()).collect();
        let raw = reply("302 Moved Temporarily", &headers);
        let r = parser::parse_response(&raw).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let got: Vec<String> = r
            .contacts()
            .filter_map(Result::ok)
            .map(|c| String::from_utf8_lossy(c.uri).into_owned())
            .collect();
        let want: Vec<String> = lines.iter().filter_map(|(_, c)| c.clone()).collect();
        prop_assert_eq!(got, want);
        let expires = lines.iter().find_map(|(h, _)| h.strip_prefix("Expires: ")?.parse::<u32>().ok());
        prop_assert_eq!(r.expires(), expires);
    }
}

proptest! {
    /// The Path reader takes any bytes without panicking; what it finds
    /// is the URI inside the first `<...>` and a suffix of the Path, and a
    /// Path it built from hops reads back hop by hop.
    #[test]
    fn path_first_hop_never_panics_and_reads_what_was_written(
        junk in proptest::collection::vec(any::<u8>(), 0..300),
        hops in proptest::collection::vec("[a-z]{1,8}(\\.[a-z]{1,5})?(:[0-9]{1,4})?", 1..5),
    ) {
        if let Ok((first, rest)) = parser::path_first_hop(&junk) {
            prop_assert!(junk.windows(first.len()).any(|w| w == first));
            prop_assert!(junk.ends_with(rest));
        }
        let path = hops
            .iter()
            .map(|h| format!("<sip:{h};lr>"))
            .collect::<Vec<_>>()
            .join(",");
        let mut cur = path.as_bytes();
        for h in &hops {
            let (first, rest) = parser::path_first_hop(cur).unwrap();
            let want = format!("sip:{h};lr");
            prop_assert_eq!(first, want.as_bytes());
            cur = rest;
        }
        prop_assert!(cur.is_empty());
    }
}

proptest! {
    /// Instance comparison (registrar's reg_cmp_instances) takes any
    /// bytes, is symmetric, and a non-empty instance matches itself and
    /// its `<...>`-wrapped form.
    #[test]
    fn same_instance_is_symmetric_and_reflexive(
        a in proptest::collection::vec(any::<u8>(), 0..80),
        b in proptest::collection::vec(any::<u8>(), 0..80),
    ) {
        use push_redirect::engine::same_instance;
        prop_assert_eq!(same_instance(&a, &b), same_instance(&b, &a));
        prop_assert_eq!(same_instance(&a, &a), !a.is_empty());
        if !a.is_empty() {
            let wrapped = [&b"<"[..], &a, b">"].concat();
            prop_assert!(same_instance(&a, &wrapped) || a.first() == Some(&b'<'));
        }
    }
}
