//! The Redis store (SPEC §6, `push_redirect::store::redis`) against a real
//! `redis-server` (Debian's package; `make test` installs it), which each
//! test starts on 127.0.0.1 on a free port in its own temporary folder,
//! with AOF on, and stops by PID.

#[path = "common/redis_server.rs"]
mod redis_server;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use push_redirect::forwarding::{ForwardTarget, ForwardingKind, TargetInstance};
use push_redirect::store::fault::{Write, Written, RETRY_MAX};
use push_redirect::store::{self, Cached, Entry, Store, StoreError, ANY_SERVICE};
use redis_server::{Redis, Sentinel};

const U1: &str = "sip:u1@example.com";
const U2: &str = "sip:u2@example.com";
const TEXT: &str = "MESSAGE:text/plain";
const TIMEOUT: Duration = Duration::from_millis(200);

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn entry(
    aor: &str,
    service: &str,
    kind: ForwardingKind,
    uri: &str,
    expires_at: Option<i64>,
) -> Entry {
    Entry {
        aor: aor.into(),
        service: service.into(),
        kind,
        targets: vec![ForwardTarget {
            uri: uri.into(),
            q: None,
            instance: None,
        }],
        expires_at,
        created_at: now(),
        learned_from: Some("sip:t1@127.0.0.1:5071".into()),
        learned_status: Some(301),
    }
}

fn open(url: &str) -> Cached {
    store::open_with(url, TIMEOUT).unwrap()
}

/// The node's shared page is one per process: the tests run one at a
/// time, so that one's subscriber does not make another's reads cached.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static ONE: std::sync::Mutex<()> = std::sync::Mutex::new(());
    ONE.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[test]
fn redis_put_get_fallback_list_remove_and_prefixes() {
    let _one = serial();
    let r = Redis::in_temp("crud").started();
    let s = open(&r.url("a"));
    let other = open(&r.url("b"));
    let n = now();
    assert_eq!(s.get(U1, TEXT, n).unwrap(), None);
    let e = entry(
        U1,
        TEXT,
        ForwardingKind::Permanent,
        "sip:t2@example.com",
        None,
    );
    s.put(&e).unwrap();
    assert_eq!(s.get(U1, TEXT, n).unwrap(), Some(e.clone()));
    // One key per AOR and service, under the prefix.
    let mut c = r.client();
    let keys: Vec<String> = redis::cmd("KEYS").arg("a:*").query(&mut c).unwrap();
    assert_eq!(keys, [format!("a:{U1}:{TEXT}")]);
    // Another prefix is another store.
    assert_eq!(other.get(U1, TEXT, n).unwrap(), None);
    assert_eq!(other.count(n).unwrap(), 0);
    // The method and `*` entries are the fallbacks, in that order.
    let any = entry(
        U1,
        ANY_SERVICE,
        ForwardingKind::Provisioned,
        "sip:any@example.com",
        None,
    );
    s.put(&any).unwrap();
    assert_eq!(
        s.get(U1, "NOTIFY:ua-profile", n).unwrap(),
        Some(any.clone())
    );
    let m = entry(
        U1,
        "MESSAGE",
        ForwardingKind::Permanent,
        "sip:m@example.com",
        None,
    );
    s.put(&m).unwrap();
    assert_eq!(s.get(U1, "MESSAGE:text/html", n).unwrap(), Some(m.clone()));
    assert_eq!(s.get(U1, TEXT, n).unwrap(), Some(e.clone()));
    s.put(&entry(
        U2,
        TEXT,
        ForwardingKind::Permanent,
        "sip:x@example.com",
        None,
    ))
    .unwrap();
    let all = s.list(None, n).unwrap();
    assert_eq!(all.len(), 4);
    assert!(all
        .windows(2)
        .all(|w| (&w[0].aor, &w[0].service) <= (&w[1].aor, &w[1].service)));
    assert_eq!(s.list(Some(U1), n).unwrap().len(), 3);
    assert_eq!(s.count(n).unwrap(), 4);
    assert_eq!(s.remove(U1, Some(TEXT)).unwrap(), 1);
    assert_eq!(s.remove(U1, Some(TEXT)).unwrap(), 0);
    assert_eq!(s.remove(U1, None).unwrap(), 2);
    assert_eq!(s.list(Some(U1), n).unwrap(), []);
    assert_eq!(s.count(n).unwrap(), 1);
    assert_eq!(s.faults().status().kind, "redis");
    // A value that is not ours is skipped, never a crash.
    redis::cmd("SET")
        .arg(format!("a:{U1}:{TEXT}"))
        .arg("garbage\n\u{0}")
        .query::<()>(&mut c)
        .unwrap();
    assert_eq!(s.get(U1, TEXT, n).unwrap(), None);
}

#[test]
fn redis_temporary_entries_expire_in_redis_itself() {
    let _one = serial();
    let r = Redis::in_temp("ttl").started();
    let s = open(&r.url("t"));
    let n = now();
    let e = entry(
        U1,
        TEXT,
        ForwardingKind::Temporary,
        "sip:t2@example.com",
        Some(n + 2),
    );
    s.put(&e).unwrap();
    let mut c = r.client();
    let key = format!("t:{U1}:{TEXT}");
    let ttl: i64 = redis::cmd("TTL").arg(&key).query(&mut c).unwrap();
    assert!((1..=2).contains(&ttl), "native TTL: {ttl}");
    assert_eq!(s.get(U1, TEXT, n).unwrap(), Some(e));
    // Past it: gone from Redis, with no sweep.
    std::thread::sleep(Duration::from_millis(3100));
    let exists: i64 = redis::cmd("EXISTS").arg(&key).query(&mut c).unwrap();
    assert_eq!(exists, 0);
    assert_eq!(s.get(U1, TEXT, now()).unwrap(), None);
    assert_eq!(s.sweep(now()).unwrap(), 0);
    // An expiry already past deletes the key.
    s.put(&entry(
        U1,
        TEXT,
        ForwardingKind::Temporary,
        "sip:t2@example.com",
        Some(n - 5),
    ))
    .unwrap();
    let exists: i64 = redis::cmd("EXISTS").arg(&key).query(&mut c).unwrap();
    assert_eq!(exists, 0);
}

#[test]
fn redis_down_then_back_the_queued_write_lands_and_aof_kept_the_rest() {
    let _one = serial();
    let mut r = Redis::in_temp("down").started();
    let s = open(&r.url("d"));
    let a = entry(
        U1,
        TEXT,
        ForwardingKind::Permanent,
        "sip:a@example.com",
        None,
    );
    s.put(&a).unwrap();
    // Killed: every call fails within the timeout, a decision's write is
    // queued.
    r.kill9();
    let t = Instant::now();
    assert!(s.get(U1, TEXT, now()).is_err());
    let b = entry(
        U2,
        TEXT,
        ForwardingKind::Permanent,
        "sip:b@example.com",
        None,
    );
    for _ in 0..10 {
        assert_eq!(s.write_or_queue(Write::Put(b.clone())), Written::Queued);
        assert!(s.get(U2, TEXT, now()).is_err());
    }
    let took = t.elapsed();
    println!("21 calls with Redis down: {took:?}");
    assert!(took < 21 * TIMEOUT, "{took:?}");
    assert!(s.faults().in_outage());
    let c = s.take_counts();
    assert_eq!((c.errors, c.learned), (21, 0));
    // Back, from its AOF: what was written before the kill -9 is there,
    // and the queued write lands at the first use past the back-off.
    r.start();
    std::thread::sleep(RETRY_MAX + Duration::from_millis(200));
    assert_eq!(s.get(U1, TEXT, now()).unwrap(), Some(a));
    assert_eq!(s.get(U2, TEXT, now()).unwrap(), Some(b));
    let c = s.take_counts();
    assert_eq!((c.errors, c.learned), (0, 1));
    assert!(!s.faults().in_outage());
}

/// A learned forwarding that follows a registered terminal (SPEC §3): its
/// targets name the terminal by AOR and `+sip.instance`.
fn instance_entry(aor: &str, service: &str) -> Entry {
    let mut e = entry(
        aor,
        service,
        ForwardingKind::Permanent,
        "sip:t2@127.0.0.1:5072;transport=tcp",
        None,
    );
    e.targets[0].q = Some(900);
    e.targets[0].instance = Some(TargetInstance {
        aor: aor.into(),
        instance: "\"<urn:uuid:00000000-0000-1000-8000-000a95a0e128>\"".into(),
    });
    e.targets.push(ForwardTarget {
        uri: "sip:plain@example.com".into(),
        q: None,
        instance: None,
    });
    e.targets.push(ForwardTarget {
        uri: "sip:t3@127.0.0.1:5073".into(),
        q: Some(100),
        instance: Some(TargetInstance {
            aor: U2.into(),
            instance: "<urn:uuid:t3>".into(),
        }),
    });
    e
}

#[test]
fn redis_keeps_the_instances_of_targets_as_sqlite_v2_does() {
    let _one = serial();
    let mut r = Redis::in_temp("inst").started();
    let s = open(&r.url("i"));
    let dir = std::env::temp_dir().join(format!("push_redirect-inst-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let sqlite = store::open_with(dir.join("store.sqlite").to_str().unwrap(), TIMEOUT).unwrap();
    let e = instance_entry(U1, TEXT);
    s.put(&e).unwrap();
    sqlite.put(&e).unwrap();
    let n = now();
    assert_eq!(s.get(U1, TEXT, n).unwrap(), Some(e.clone()));
    assert_eq!(
        s.get(U1, TEXT, n).unwrap(),
        sqlite.get(U1, TEXT, n).unwrap()
    );
    assert_eq!(s.list(Some(U1), n).unwrap(), std::slice::from_ref(&e));
    assert_eq!(s.list(None, n).unwrap(), sqlite.list(None, n).unwrap());
    assert_eq!(e.forwarding().targets, e.targets);
    // In Redis: a pr2 value, the terminal after the URI.
    let v: String = redis::cmd("GET")
        .arg(format!("i:{U1}:{TEXT}"))
        .query(&mut r.client())
        .unwrap();
    assert!(v.starts_with("pr2\n"), "{v}");
    assert!(
        v.ends_with(&format!("\n100 sip:t3@127.0.0.1:5073 {U2} <urn:uuid:t3>")),
        "{v}"
    );
    // A bad instance is refused before anything reaches Redis.
    let mut bad = instance_entry(U2, TEXT);
    bad.targets[0].instance.as_mut().unwrap().instance = "has space".into();
    assert!(s.put(&bad).is_err());
    assert_eq!(s.get(U2, TEXT, n).unwrap(), None);
    // Queued while Redis is down, it lands whole.
    r.kill9();
    let q = instance_entry(U2, "NOTIFY:ua-profile");
    assert_eq!(s.write_or_queue(Write::Put(q.clone())), Written::Queued);
    r.start();
    std::thread::sleep(RETRY_MAX + Duration::from_millis(200));
    assert_eq!(s.get(U2, "NOTIFY:ua-profile", now()).unwrap(), Some(q));
    assert_eq!(s.get(U1, TEXT, now()).unwrap(), Some(e), "AOF kept it");
    assert_eq!(s.take_counts().learned, 1);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn redis_down_at_start_is_no_reason_not_to_start() {
    let _one = serial();
    let mut r = Redis::in_temp("late").started();
    r.kill9();
    let s = open(&r.url("l"));
    assert!(matches!(
        s.get(U1, TEXT, now()),
        Err(StoreError::Redis { op: "connect", .. }) | Err(StoreError::Unavailable)
    ));
    r.start();
    std::thread::sleep(RETRY_MAX + Duration::from_millis(200));
    assert_eq!(s.get(U1, TEXT, now()).unwrap(), None);
    s.put(&entry(
        U1,
        TEXT,
        ForwardingKind::Permanent,
        "sip:a@example.com",
        None,
    ))
    .unwrap();
    assert!(s.get(U1, TEXT, now()).unwrap().is_some());
}

#[test]
fn redis_password_is_never_in_an_error() {
    let _one = serial();
    // Nothing listens on port 1.
    let s = open("redis://user:s3cret@127.0.0.1:1/0");
    let e = s.get(U1, TEXT, now()).unwrap_err();
    assert!(!e.to_string().contains("s3cret"), "{e}");
    assert!(!format!("{e:?}").contains("s3cret"), "{e:?}");
}

#[test]
fn redis_a_write_by_another_node_reaches_the_read_cache_through_the_subscriber() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let _one = serial();
    let r = Redis::in_temp("pubsub").started();
    let url = r.url("ps");
    let s = open(&url);
    let page = push_redirect::store::redis::host_page().unwrap();
    // Without a subscription nothing is cached.
    assert!(!s.has_read_cache());
    let stop = Arc::new(AtomicBool::new(false));
    let sub = {
        let (url, stop) = (url.clone(), stop.clone());
        std::thread::spawn(move || {
            push_redirect::store::redis::run_subscriber(&url, TIMEOUT, &|| {
                stop.load(Ordering::SeqCst)
            })
        })
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    while !s.has_read_cache() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(s.has_read_cache(), "subscribed");
    // "No forwarding" is cached: the next reads do not go to Redis.
    let mut c = r.client();
    let mgets = |c: &mut redis::Connection| -> u64 {
        let info: String = redis::cmd("INFO").arg("commandstats").query(c).unwrap();
        info.lines()
            .find(|l| l.starts_with("cmdstat_mget:"))
            .and_then(|l| l.split("calls=").nth(1))
            .and_then(|v| v.split(',').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    assert_eq!(s.get(U1, TEXT, now()).unwrap(), None);
    let before = mgets(&mut c);
    for _ in 0..100 {
        assert_eq!(s.get(U1, TEXT, now()).unwrap(), None);
    }
    assert_eq!(mgets(&mut c), before, "answered from the cache");
    // Another node writes (its own connection, no local bump): the
    // published change reaches this cache.
    let other = push_redirect::store::redis::RedisStore::open(&url, TIMEOUT).unwrap();
    let g = page.current();
    let e = entry(
        U1,
        TEXT,
        ForwardingKind::Permanent,
        "sip:b@example.com",
        None,
    );
    let t = Instant::now();
    // (The other node's write bumps this process' page too, as they share
    // it here; wait for the subscriber's own bump as well.)
    other.put(&e).unwrap();
    while page.current() < g + 2 && t.elapsed() < Duration::from_secs(2) {
        std::thread::sleep(Duration::from_micros(200));
    }
    println!("change seen by the subscriber after {:?}", t.elapsed());
    assert!(
        page.current() >= g + 2,
        "the subscriber counted the message"
    );
    assert_eq!(s.get(U1, TEXT, now()).unwrap(), Some(e));
    // The subscriber stops: nothing is cached any more.
    drop(other);
    stop.store(true, Ordering::SeqCst);
    assert!(sub.join().unwrap().is_ok());
    assert!(!s.has_read_cache(), "no subscriber, no cache");
}

#[test]
fn redis_sentinel_failover_learning_and_applying_go_on_with_the_new_master() {
    let _one = serial();
    let mut master = Redis::in_temp("failover-master").started();
    let replica = Redis::in_temp("failover-replica")
        .replica_of(&master)
        .started();
    let sentinel = Sentinel::in_temp("failover", master.port);
    let url = format!(
        "redis+sentinel://127.0.0.1:{}/mymaster/0?prefix=f",
        sentinel.port
    );
    let s = open(&url);
    let a = entry(
        U1,
        TEXT,
        ForwardingKind::Permanent,
        "sip:a@example.com",
        None,
    );
    s.put(&a).unwrap();
    assert_eq!(s.get(U1, TEXT, now()).unwrap(), Some(a.clone()));
    // The replica has it before the master goes.
    replica.wait_replicated(&format!("f:{U1}:{TEXT}"));
    // The master is killed; learning goes on (queued) meanwhile.
    master.kill9();
    let b = entry(
        U2,
        TEXT,
        ForwardingKind::Permanent,
        "sip:b@example.com",
        None,
    );
    assert_eq!(s.write_or_queue(Write::Put(b.clone())), Written::Queued);
    let took = sentinel.wait_master(replica.port);
    println!("replica promoted after {took:?}");
    // The next connection goes to the new master: the old forwarding is
    // applied, the queued one lands.
    std::thread::sleep(RETRY_MAX + Duration::from_millis(200));
    assert_eq!(s.get(U1, TEXT, now()).unwrap(), Some(a));
    assert_eq!(s.get(U2, TEXT, now()).unwrap(), Some(b));
    assert_eq!(s.take_counts().learned, 1);
    assert!(!s.faults().in_outage());
}
