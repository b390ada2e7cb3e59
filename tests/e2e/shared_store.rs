//! The store shared by several proxies (SPEC §6) through real Kamailio
//! nodes and a real redis-server (Debian's package), which each case starts
//! on 127.0.0.1 on a free port in its folder, AOF on, and stops by PID:
//! learned on one node, applied by the other; RPC on either; Redis killed
//! and back; Kamailio started with Redis down.

use std::time::Duration;

use crate::push::stat;
use crate::redis_server::{Redis, Sentinel};
use crate::support::*;

const U2: &str = "sip:u2@example.com";
const U3: &str = "sip:u3@example.com";
/// Longest back-off of the fault handling and of the Redis connection
/// (store::fault::RETRY_MAX), plus a margin.
const PAST_BACKOFF: Duration = Duration::from_millis(5500);

/// A push_redirect node on the shared store `url`, in its own folder.
fn node(case: &Case, name: &str, url: &str) -> ProxyBuilder {
    case.proxy("push-redirect.cfg")
        .in_dir(name)
        .children(4)
        .define_str("PR_MODULE", &pr_module_path().display().to_string())
        .define_str("PR_STORE", url)
}

/// t1 answers 301 to t2; both registered on every node given.
fn pair_on(case: &Case, nodes: &[&Proxy]) -> (Terminal, Terminal) {
    let t2 = case.terminal("t2", Answer::Ok);
    let t1 = case.terminal("t1", Answer::Redirect301(t2.uri()));
    for p in nodes {
        case.register(p, AOR, &t1, 1.0, 3600);
        case.register(p, AOR, &t2, 0.5, 3600);
    }
    (t1, t2)
}

#[test]
#[ignore = "needs Kamailio and redis-server: run via make test"]
fn shared_store_learned_on_a_applied_by_b_and_rpc_on_either() {
    let case = Case::new("shared_store_two_nodes");
    let mut redis = Redis::in_dir(case.dir.join("redis"));
    redis.start();
    let url = redis.url("two");
    let a = node(&case, "node-a", &url).start();
    let b = node(&case, "node-b", &url).start();
    let (t1, t2) = pair_on(&case, &[&a, &b]);
    // Learned on A.
    case.send(&a, Send::message(AOR).count(1)).assert_all(200);
    assert_eq!(t1.wait_received(1), 1);
    assert_eq!(stat(&a, "forwardings_learned"), 1);
    // Applied by every worker of B: straight to t2.
    let r = case.send(&b, Send::message(AOR).count(20).rate(50));
    case.report(&r, &[&t1, &t2]);
    r.assert_all(200);
    assert_eq!(t2.wait_received(21), 21);
    assert_eq!(t1.settled(), 1, "B never tried the redirecting terminal");
    assert_eq!(stat(&b, "forwardings_applied"), 20);
    assert_eq!(stat(&b, "forwardings_learned"), 0);
    assert_eq!(stat(&b, "store_errors"), 0);
    // One subscriber per node, on the store's channel.
    assert_eq!(redis.subscribers("two:changes"), 2);
    // A's workers have "no forwarding for u3" in their read caches (404);
    // provisioned on B, the next request through A applies it: B's write
    // reached A's caches through Redis.
    let u2t = case.terminal("u2t", Answer::Ok);
    case.register(&a, U2, &u2t, 1.0, 3600);
    case.send(&a, Send::message(U3).count(20).rate(50))
        .assert_all(404);
    b.rpc(&["push_redirect.set", U3, U2]).expect("set on B");
    std::thread::sleep(Duration::from_millis(100));
    let r = case.send(&a, Send::message(U3).count(10));
    case.report(&r, &[&u2t]);
    r.assert_all(200);
    assert_eq!(u2t.wait_received(10), 10);
    for p in [&a, &b] {
        let list = p.rpc(&["push_redirect.list"]).expect("list");
        assert!(
            list.contains("provisioned") && list.contains("permanent"),
            "{list}"
        );
        let st = p.rpc(&["push_redirect.stats"]).expect("stats");
        assert!(
            st.contains("store: redis") && st.contains("store_state: ok"),
            "{st}"
        );
    }
    // Removed on A: gone for B.
    let out = a.rpc(&["push_redirect.remove", U3]).expect("remove on A");
    assert!(out.contains("1 forwarding"), "{out}");
    case.send(&b, Send::message(U3).count(5)).assert_all(404);
    assert_eq!(u2t.settled(), 10);
    // Stopped as kamctl does (SIGTERM to the main process): every process
    // goes, the store subscriber too.
    let mut a = a;
    let st = a.stop_main();
    println!("[e2e shared_store_two_nodes] node A stopped: {st:?}");
    assert!(st.is_some(), "node A's main process exited");
    assert!(a.child_pids().is_empty(), "left: {:?}", a.child_pids());
    assert_eq!(redis.subscribers("two:changes"), 1, "B's subscriber only");
}

#[test]
#[ignore = "needs Kamailio and redis-server: run via make test"]
fn shared_store_redis_killed_and_back() {
    let case = Case::new("shared_store_redis_killed");
    let mut redis = Redis::in_dir(case.dir.join("redis"));
    redis.start();
    let url = redis.url("");
    let a = node(&case, "node-a", &url).start();
    let b = node(&case, "node-b", &url).start();
    let (t1, t2) = pair_on(&case, &[&a, &b]);
    case.send(&a, Send::message(AOR).count(1)).assert_all(200);
    assert_eq!(stat(&a, "forwardings_learned"), 1);
    // kill -9: B goes on delivering through t1's redirect; each request is
    // a lookup that fails and a learned write queued.
    redis.kill9();
    let r = case.send(&b, Send::message(AOR).count(10).rate(20));
    case.report(&r, &[&t1, &t2]);
    r.assert_all(200);
    assert_eq!(t1.wait_received(11), 11);
    assert_eq!(t2.wait_received(11), 11);
    assert_eq!(stat(&b, "store_errors"), 20);
    assert_eq!(stat(&b, "forwardings_learned"), 0);
    assert!(b.log_count("forwarding store unusable") >= 1);
    // Back from its AOF: the forwarding learned on A survived; B's queued
    // write finds it there (not written nor counted again); applied.
    redis.start();
    std::thread::sleep(PAST_BACKOFF);
    let r = case.send(&b, Send::message(AOR).count(10).rate(20));
    case.report(&r, &[&t1, &t2]);
    r.assert_all(200);
    assert_eq!(t2.wait_received(21), 21);
    assert_eq!(t1.settled(), 11, "applied again after Redis came back");
    assert_eq!(stat(&b, "forwardings_applied"), 10);
    assert_eq!(stat(&b, "forwardings_learned"), 0);
    assert_eq!(stat(&b, "store_errors"), 20);
    // Each node's subscriber noticed the loss once, and subscribed again.
    for p in [&a, &b] {
        assert_eq!(p.log_count("no subscription to"), 1);
        assert_eq!(p.log_count("subscribed to push_redirect:changes again"), 1);
    }
    assert_eq!(redis.subscribers("push_redirect:changes"), 2);
}

#[test]
#[ignore = "needs Kamailio and redis-server: run via make test"]
fn shared_store_kamailio_started_with_redis_down() {
    let case = Case::new("shared_store_redis_down_at_start");
    let mut redis = Redis::in_dir(case.dir.join("redis"));
    let a = node(&case, "node-a", &redis.url("")).start();
    let (t1, t2) = pair_on(&case, &[&a]);
    let r = case.send(&a, Send::message(AOR).count(5).rate(20));
    r.assert_all(200);
    assert_eq!(t1.wait_received(5), 5);
    assert_eq!(stat(&a, "store_errors"), 10);
    assert_eq!(stat(&a, "forwardings_learned"), 0);
    // Redis comes: the queued forwarding lands, and is applied.
    redis.start();
    std::thread::sleep(PAST_BACKOFF);
    let r = case.send(&a, Send::message(AOR).count(10).rate(20));
    case.report(&r, &[&t1, &t2]);
    r.assert_all(200);
    assert_eq!(t2.wait_received(15), 15);
    assert_eq!(t1.settled(), 5);
    assert_eq!(stat(&a, "forwardings_learned"), 1);
    assert_eq!(stat(&a, "forwardings_applied"), 10);
}

#[test]
#[ignore = "needs Kamailio and redis-server: run via make test"]
fn shared_store_f7_temporary_expires_through_redis_ttl() {
    let case = Case::new("shared_store_f7_ttl");
    let mut redis = Redis::in_dir(case.dir.join("redis"));
    redis.start();
    let url = redis.url("ttl");
    let a = node(&case, "node-a", &url).start();
    let b = node(&case, "node-b", &url).start();
    let t2 = case.terminal("t2", Answer::Ok);
    let t1 = case.terminal(
        "t1",
        Answer::Redirect302(format!("<{}>;expires=2", t2.uri())),
    );
    for p in [&a, &b] {
        case.register(p, AOR, &t1, 1.0, 3600);
        case.register(p, AOR, &t2, 0.5, 3600);
    }
    case.send(&a, Send::message(AOR).count(1)).assert_all(200);
    assert_eq!(t1.wait_received(1), 1);
    // The key carries Redis' own expiry.
    let mut c = redis.client();
    let ttl: i64 = redis::cmd("TTL")
        .arg(format!("ttl:{AOR}:MESSAGE:text/plain"))
        .query(&mut c)
        .unwrap();
    assert!((1..=2).contains(&ttl), "TTL {ttl}");
    // Within it, B applies it.
    let r = case.send(&b, Send::message(AOR).count(10).rate(50));
    r.assert_all(200);
    assert_eq!(t2.wait_received(11), 11);
    assert_eq!(t1.settled(), 1);
    // Past it, gone from Redis: B tries t1 again.
    std::thread::sleep(Duration::from_millis(2600));
    let exists: i64 = redis::cmd("EXISTS")
        .arg(format!("ttl:{AOR}:MESSAGE:text/plain"))
        .query(&mut c)
        .unwrap();
    assert_eq!(exists, 0);
    case.send(&b, Send::message(AOR).count(1)).assert_all(200);
    assert_eq!(t1.wait_received(2), 2, "expired: t1 is tried again");
}

#[test]
#[ignore = "needs Kamailio, redis-server and redis-sentinel: run via make test"]
fn shared_store_sentinel_failover_learning_and_applying_go_on() {
    let case = Case::new("shared_store_sentinel_failover");
    let mut master = Redis::in_dir(case.dir.join("master"));
    master.start();
    let replica = Redis::in_dir(case.dir.join("replica"))
        .replica_of(&master)
        .started();
    let sentinel = Sentinel::start(case.dir.join("sentinel"), master.port);
    let url = format!("redis+sentinel://127.0.0.1:{}/mymaster/0", sentinel.port);
    let a = node(&case, "node-a", &url).start();
    let b = node(&case, "node-b", &url).start();
    let (t1, t2) = pair_on(&case, &[&a, &b]);
    case.send(&a, Send::message(AOR).count(1)).assert_all(200);
    assert_eq!(stat(&a, "forwardings_learned"), 1);
    // Replicated before the master goes.
    replica.wait_replicated(&format!("push_redirect:{AOR}:MESSAGE:text/plain"));
    // The master is killed: B goes on delivering through t1's redirect.
    master.kill9();
    let r = case.send(&b, Send::message(AOR).count(10).rate(20));
    case.report(&r, &[&t1, &t2]);
    r.assert_all(200);
    assert_eq!(t1.wait_received(11), 11);
    let took = sentinel.wait_master(replica.port);
    println!("[e2e] replica promoted {took:?} after the requests");
    // The new master: B applies the forwarding learned on A before the
    // failover; A learns and B applies a new one.
    std::thread::sleep(PAST_BACKOFF);
    let r = case.send(&b, Send::message(AOR).count(10).rate(20));
    case.report(&r, &[&t1, &t2]);
    r.assert_all(200);
    assert_eq!(t2.wait_received(21), 21);
    assert_eq!(t1.settled(), 11, "applied from the new master");
    assert_eq!(stat(&b, "forwardings_applied"), 10);
    assert_eq!(stat(&b, "forwardings_learned"), 0);
    let u2t = case.terminal("u2t", Answer::Ok);
    case.register(&b, U2, &u2t, 1.0, 3600);
    a.rpc(&["push_redirect.set", U3, U2])
        .expect("set on A, new master");
    std::thread::sleep(Duration::from_millis(100));
    case.send(&b, Send::message(U3).count(5)).assert_all(200);
    assert_eq!(u2t.wait_received(5), 5);
}
