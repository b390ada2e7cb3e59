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

// --- The store failing under a running Kamailio (store::fault) -----------
//
// Each case: the fault, 30 PUSH requests whose terminal answers 301 (all
// delivered; nothing stored, so each tries t1 first), then the fault
// cleared and, once the fault handling's back-off has passed, 10 more that
// the forwarding written from the queue sends straight to t2.

/// The log line that starts an outage (store::fault).
const OUTAGE_LINE: &str = "forwarding store unusable";
/// The one that ends it.
const BACK_LINE: &str = "forwarding store works again";
/// Longest back-off of the fault handling (store::fault::RETRY_MAX), plus
/// a margin.
const PAST_BACKOFF: Duration = Duration::from_millis(5500);

/// The push_redirect proxy with its store at `store`.
fn proxy_with_store(case: &Case, store: &std::path::Path) -> ProxyBuilder {
    case.proxy("push-redirect.cfg")
        .children(4)
        .define_str("PR_MODULE", &pr_module_path().display().to_string())
        .define_str("PR_STORE", &store.display().to_string())
}

/// A mount made by the test, undone when dropped (lazily if still busy).
struct Mount(std::path::PathBuf);

impl Mount {
    fn run(args: &[&str]) {
        let st = std::process::Command::new("mount")
            .args(args)
            .status()
            .unwrap_or_else(|e| panic!("mount {args:?}: {e}"));
        assert!(
            st.success(),
            "mount {args:?}: {st} (the store's fault cases need root)"
        );
    }

    /// A tmpfs of `size` at `dir`.
    fn tmpfs(dir: &std::path::Path, size: &str) -> Mount {
        std::fs::create_dir_all(dir).unwrap();
        let d = dir.display().to_string();
        Mount::run(&["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs", &d]);
        Mount(dir.to_path_buf())
    }

    /// `dir` made read-only: a read-only bind mount of itself on itself.
    fn read_only(dir: &std::path::Path) -> Mount {
        let d = dir.display().to_string();
        Mount::run(&["--bind", "-o", "ro", &d, &d]);
        Mount(dir.to_path_buf())
    }

    fn undo(&mut self) {
        if self.0.as_os_str().is_empty() {
            return;
        }
        let d = self.0.display().to_string();
        let ok = std::process::Command::new("umount")
            .arg(&d)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            let _ = std::process::Command::new("umount")
                .args(["-l", &d])
                .status();
        }
        self.0 = std::path::PathBuf::new();
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        self.undo();
    }
}

/// Fills the file system of `dir` (a file `filler`, written until the
/// system says no space is left); returns its path.
fn fill(dir: &std::path::Path) -> std::path::PathBuf {
    use std::io::Write;
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).unwrap();
    let chunk = vec![0u8; 4096];
    for _ in 0..(1 << 20) {
        if f.write_all(&chunk).and_then(|()| f.sync_all()).is_err() {
            return path;
        }
    }
    panic!("{} never filled up", dir.display());
}

/// The 301 terminal and its target, registered.
fn redirecting_pair(case: &Case, p: &Proxy) -> (Terminal, Terminal) {
    let t2 = case.terminal("t2", Answer::Ok);
    let t1 = case.terminal("t1", Answer::Redirect301(t2.uri()));
    case.register(p, AOR, &t1, 1.0, 3600);
    case.register(p, AOR, &t2, 0.5, 3600);
    (t1, t2)
}

/// 30 PUSH requests while the store fails: every one delivered through
/// t1's redirect, one outage line, nothing learned; `store_errors` as given.
fn thirty_during_the_fault(
    case: &Case,
    p: &Proxy,
    t1: &Terminal,
    t2: &Terminal,
    before: usize,
    store_errors: i64,
) {
    let r = case.send(p, Send::message(AOR).count(30).rate(20));
    case.report(&r, &[t1, t2]);
    r.assert_all(200);
    assert_eq!(t1.wait_received(before + 30), before + 30, "each tried t1");
    assert_eq!(t2.wait_received(before + 30), before + 30);
    let s = p.statistics("push_redirect");
    println!("[e2e {}] during the fault: {s:?}", case.dir.display());
    assert_eq!(p.log_count(OUTAGE_LINE), 1, "one line per outage");
    assert_eq!(s.get("store_errors"), Some(&store_errors));
    assert_eq!(s.get("redirects_followed"), Some(&(before as i64 + 30)));
    assert_eq!(
        s.get("forwardings_learned"),
        Some(&(before as i64)),
        "nothing stored, nothing learned"
    );
    assert_eq!(s.get("store_writes_dropped"), Some(&0));
    // push_redirect.stats tells the operator (the RPC process sees the
    // host's outage mark, or fails itself).
    let st = p.rpc(&["push_redirect.stats"]).expect("stats");
    println!("[e2e {}] push_redirect.stats:\n{st}", case.dir.display());
    assert!(st.contains("store: sqlite"), "{st}");
    assert!(
        st.contains("store_state: failing") || st.contains("store_state: closed"),
        "{st}"
    );
}

/// After the fault: the queued forwarding lands, and is applied by every
/// worker; once learned in all.
fn ten_after_the_fault(case: &Case, p: &Proxy, t1: &Terminal, t2: &Terminal, t1_before: usize) {
    std::thread::sleep(PAST_BACKOFF);
    let t2_before = t2.received();
    let r = case.send(p, Send::message(AOR).count(10).rate(20));
    case.report(&r, &[t1, t2]);
    r.assert_all(200);
    assert_eq!(t2.wait_received(t2_before + 10), t2_before + 10);
    assert_eq!(
        t1.settled(),
        t1_before,
        "straight to t2: the queued write landed"
    );
    let s = p.statistics("push_redirect");
    println!("[e2e {}] after the fault: {s:?}", case.dir.display());
    assert_eq!(s.get("forwardings_applied"), Some(&10));
    assert_eq!(p.log_count(BACK_LINE), 1);
    let list = p.rpc(&["push_redirect.list"]).expect("list");
    assert!(
        list.contains("permanent") && list.contains(&t2.uri()),
        "{list}"
    );
    let st = p.rpc(&["push_redirect.stats"]).expect("stats");
    assert!(st.contains("store_state: ok"), "{st}");
    assert!(st.contains("store_failing_since: 0"), "{st}");
}

#[test]
#[ignore = "needs Kamailio and root (a tmpfs): run via make test"]
fn store_fault_disk_full() {
    let case = Case::new("store_fault_disk_full");
    let mut disk = Mount::tmpfs(&case.dir.join("disk"), "512k");
    let store = case.dir.join("disk/store.sqlite");
    let mut p = proxy_with_store(&case, &store).start();
    let (t1, t2) = redirecting_pair(&case, &p);
    let filler = fill(&case.dir.join("disk"));
    // Each of the 30 redirects is a write not stored: 30 store errors
    // (reads work on a full disk).
    thirty_during_the_fault(&case, &p, &t1, &t2, 0, 30);
    std::fs::remove_file(&filler).unwrap();
    ten_after_the_fault(&case, &p, &t1, &t2, 30);
    assert_eq!(stat(&p, "forwardings_learned"), 1, "stored once");
    assert_eq!(stat(&p, "store_errors"), 30);
    p.stop();
    disk.undo();
}

#[test]
#[ignore = "needs Kamailio: run via make test"]
fn store_fault_lock_held_by_another_program() {
    let case = Case::new("store_fault_lock_held");
    let store = case.dir.join("store.sqlite");
    let mut p = proxy_with_store(&case, &store)
        .define("STORE_TIMEOUT", "100")
        .start();
    let (t1, t2) = redirecting_pair(&case, &p);
    // Another program takes the write lock and keeps it (past the
    // store_timeout of 100 ms: the whole 30 requests).
    let other = rusqlite::Connection::open(&store).unwrap();
    other.execute_batch("BEGIN IMMEDIATE").unwrap();
    thirty_during_the_fault(&case, &p, &t1, &t2, 0, 30);
    other.execute_batch("ROLLBACK").unwrap();
    drop(other);
    ten_after_the_fault(&case, &p, &t1, &t2, 30);
    assert_eq!(stat(&p, "forwardings_learned"), 1, "stored once");
    p.stop();
}

/// Learns the forwarding once (t1 redirects), then 5 requests apply it.
fn learn_once(case: &Case, p: &Proxy, t1: &Terminal, t2: &Terminal) {
    let r = case.send(p, Send::message(AOR).count(1));
    r.assert_all(200);
    let r = case.send(p, Send::message(AOR).count(5).rate(20));
    r.assert_all(200);
    assert_eq!(t2.wait_received(6), 6);
    assert_eq!(t1.settled(), 1);
    assert_eq!(stat(p, "forwardings_learned"), 1);
}

/// After the store's files went: every process opens a new store (one
/// warning), whose first request learns the forwarding again; nothing
/// failed.
fn relearned_in_a_new_store(case: &Case, p: &Proxy, t1: &Terminal, t2: &Terminal) {
    // Every process checks its store at most once a second.
    std::thread::sleep(Duration::from_millis(1100));
    let r = case.send(p, Send::message(AOR).count(30).rate(10));
    case.report(&r, &[t1, t2]);
    r.assert_all(200);
    assert_eq!(t2.wait_received(36), 36);
    assert_eq!(
        t1.settled(),
        2,
        "the new store is empty: learned again once"
    );
    let s = p.statistics("push_redirect");
    println!("[e2e {}] {s:?}", case.dir.display());
    assert_eq!(s.get("forwardings_learned"), Some(&2));
    assert_eq!(s.get("forwardings_applied"), Some(&(5 + 29)));
    assert_eq!(s.get("store_errors"), Some(&0));
    assert_eq!(p.log_count("opened it again"), 1, "one warning");
    assert_eq!(p.log_count(OUTAGE_LINE), 0);
}

#[test]
#[ignore = "needs Kamailio: run via make test"]
fn store_fault_files_removed() {
    let case = Case::new("store_fault_files_removed");
    let store = case.dir.join("store.sqlite");
    let mut p = proxy_with_store(&case, &store).start();
    let (t1, t2) = redirecting_pair(&case, &p);
    learn_once(&case, &p, &t1, &t2);
    // rm store.sqlite* (the file, its -wal, -shm and -gen).
    for f in std::fs::read_dir(&case.dir).unwrap() {
        let f = f.unwrap().path();
        if f.file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("store.sqlite"))
        {
            std::fs::remove_file(&f).unwrap();
        }
    }
    relearned_in_a_new_store(&case, &p, &t1, &t2);
    assert!(store.exists());
    p.stop();
}

#[test]
#[ignore = "needs Kamailio: run via make test"]
fn store_fault_folder_removed() {
    let case = Case::new("store_fault_folder_removed");
    let store = case.dir.join("var/store.sqlite");
    let mut p = proxy_with_store(&case, &store).start();
    let (t1, t2) = redirecting_pair(&case, &p);
    learn_once(&case, &p, &t1, &t2);
    std::fs::remove_dir_all(case.dir.join("var")).unwrap();
    relearned_in_a_new_store(&case, &p, &t1, &t2);
    assert!(store.exists(), "the folder is made again, as at start");
    p.stop();
}

#[test]
#[ignore = "needs Kamailio and root (a bind mount): run via make test"]
fn store_fault_folder_read_only() {
    let case = Case::new("store_fault_folder_read_only");
    let dir = case.dir.join("var");
    let store = dir.join("store.sqlite");
    let mut p = proxy_with_store(&case, &store).start();
    let (t1, t2) = redirecting_pair(&case, &p);
    // Its files removed and the folder made read-only: no process can
    // open a store there again. (A running process holds its files open:
    // a folder or file made read-only alone changes nothing for it.)
    for f in std::fs::read_dir(&dir).unwrap() {
        std::fs::remove_file(f.unwrap().path()).unwrap();
    }
    let mut ro = Mount::read_only(&dir);
    std::thread::sleep(Duration::from_millis(1100));
    // Each request: a lookup that cannot read the store, and a learned
    // write queued: two store errors.
    thirty_during_the_fault(&case, &p, &t1, &t2, 0, 60);
    ro.undo();
    ten_after_the_fault(&case, &p, &t1, &t2, 30);
    assert_eq!(stat(&p, "forwardings_learned"), 1, "stored once");
    p.stop();
}
