//! The forwarding store (SPEC §2 F5–F7, §4 `store`): one test per behaviour
//! of `push_redirect::store`, against real SQLite files in a temporary
//! folder, plus real processes: a fork, and two writers at once. Most go
//! through `store::open` (the read cache over SQLite, as the module uses
//! it); the SQLite backend's own ones through `SqliteStore`; the read cache
//! also over a backend of the test's own.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use push_redirect::forwarding::{
    ForwardTarget, Forwarding, ForwardingKind, Learned, TargetInstance,
};
use push_redirect::store::cache::CACHE_MAX_AGE;
use push_redirect::store::sqlite::{SqliteStore, BUSY_TIMEOUT, MIGRATIONS, SCHEMA_VERSION};
use push_redirect::store::{
    self, Cached, Entry, Store, StoreError, ANY_SERVICE, MAX_KEY_LEN, MAX_TARGETS, MAX_URI_LEN,
};
use rusqlite::Connection;

const U1: &str = "sip:u1@example.com";
const U2: &str = "sip:u2@example.com";
const TEXT: &str = "MESSAGE:text/plain";
const PROFILE: &str = "NOTIFY:ua-profile";
const NOW: i64 = 1_700_000_000;

/// A fresh folder for one test, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir =
            std::env::temp_dir().join(format!("push_redirect-store-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn file(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn target(uri: &str, q: Option<u16>) -> ForwardTarget {
    ForwardTarget {
        uri: uri.into(),
        q,
        instance: None,
    }
}

fn entry(aor: &str, service: &str, kind: ForwardingKind, uri: &str, expires: Option<i64>) -> Entry {
    Entry {
        aor: aor.into(),
        service: service.into(),
        kind,
        targets: vec![
            target(uri, Some(1000)),
            target("sip:t9@127.0.0.1:5079", None),
        ],
        expires_at: expires,
        created_at: NOW,
        learned_from: Some("sip:t1@127.0.0.1:5071".into()),
        learned_status: Some(301),
    }
}

fn permanent(aor: &str, service: &str, uri: &str) -> Entry {
    entry(aor, service, ForwardingKind::Permanent, uri, None)
}

/// The store at `path`, as the module opens it: SQLite behind the read
/// cache.
fn open_path(path: &Path) -> Cached {
    store::open(path.to_str().unwrap()).unwrap()
}

fn open(dir: &TempDir) -> Cached {
    open_path(&dir.file("store.sqlite"))
}

fn raw(path: &Path) -> Connection {
    let c = Connection::open(path).unwrap();
    c.busy_timeout(Duration::from_secs(5)).unwrap();
    c
}

fn user_version(path: &Path) -> i64 {
    raw(path)
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap()
}

fn open_err(path: &Path) -> StoreError {
    match SqliteStore::open(path) {
        Ok(_) => panic!("{} opened", path.display()),
        Err(e) => e,
    }
}

#[test]
fn put_get_replace_remove() {
    let dir = TempDir::new("crud");
    let s = open(&dir);
    assert_eq!(s.get(U1, TEXT, NOW).unwrap(), None);

    let e = permanent(U1, TEXT, "sip:a@example.com");
    s.put(&e).unwrap();
    assert_eq!(s.get(U1, TEXT, NOW).unwrap(), Some(e.clone()));
    // Another service and another AOR are other keys.
    assert_eq!(s.get(U1, PROFILE, NOW).unwrap(), None);
    assert_eq!(s.get(U2, TEXT, NOW).unwrap(), None);

    // Replace: same key, new content; still one entry.
    let mut e2 = entry(
        U1,
        TEXT,
        ForwardingKind::Temporary,
        "sip:b@example.com",
        Some(NOW + 60),
    );
    e2.learned_status = Some(302);
    s.put(&e2).unwrap();
    assert_eq!(s.get(U1, TEXT, NOW).unwrap(), Some(e2));
    assert_eq!(s.count(NOW).unwrap(), 1);

    assert_eq!(s.remove(U1, Some(PROFILE)).unwrap(), 0);
    assert_eq!(s.remove(U1, Some(TEXT)).unwrap(), 1);
    assert_eq!(s.get(U1, TEXT, NOW).unwrap(), None);
    assert_eq!(s.count(NOW).unwrap(), 0);
}

#[test]
fn remove_without_service_removes_every_service_of_the_aor() {
    let dir = TempDir::new("remove-all");
    let s = open(&dir);
    for svc in [TEXT, PROFILE, ANY_SERVICE] {
        s.put(&permanent(U1, svc, "sip:a@example.com")).unwrap();
    }
    s.put(&permanent(U2, TEXT, "sip:b@example.com")).unwrap();
    assert_eq!(s.remove(U1, None).unwrap(), 3);
    assert_eq!(s.list(None, NOW).unwrap().len(), 1);
    assert!(s.get(U2, TEXT, NOW).unwrap().is_some());
}

#[test]
fn list_is_ordered_by_aor_then_service() {
    let dir = TempDir::new("list");
    let s = open(&dir);
    let keys = [(U2, TEXT), (U1, TEXT), (U1, ANY_SERVICE), (U1, PROFILE)];
    for (aor, svc) in keys {
        s.put(&permanent(aor, svc, "sip:a@example.com")).unwrap();
    }
    let all: Vec<(String, String)> = s
        .list(None, NOW)
        .unwrap()
        .into_iter()
        .map(|e| (e.aor, e.service))
        .collect();
    let mut want: Vec<(String, String)> = keys
        .iter()
        .map(|(a, s)| (a.to_string(), s.to_string()))
        .collect();
    want.sort();
    assert_eq!(all, want);
    let u1: Vec<String> = s
        .list(Some(U1), NOW)
        .unwrap()
        .into_iter()
        .map(|e| e.service)
        .collect();
    assert_eq!(u1, [ANY_SERVICE, TEXT, PROFILE]);
    assert!(s
        .list(Some("sip:nobody@example.com"), NOW)
        .unwrap()
        .is_empty());
}

#[test]
fn any_service_is_the_fallback() {
    let dir = TempDir::new("any");
    let s = open(&dir);
    let any = entry(
        U1,
        ANY_SERVICE,
        ForwardingKind::Provisioned,
        "sip:any@example.com",
        None,
    );
    s.put(&any).unwrap();
    // No entry for the service: the "*" one.
    assert_eq!(s.get(U1, TEXT, NOW).unwrap(), Some(any.clone()));
    assert_eq!(s.get(U1, ANY_SERVICE, NOW).unwrap(), Some(any.clone()));
    // An entry for the service wins over "*".
    let exact = entry(
        U1,
        TEXT,
        ForwardingKind::Temporary,
        "sip:text@example.com",
        Some(NOW + 10),
    );
    s.put(&exact).unwrap();
    assert_eq!(s.get(U1, TEXT, NOW).unwrap(), Some(exact));
    assert_eq!(s.get(U1, PROFILE, NOW).unwrap(), Some(any.clone()));
    // Once the exact one has expired, "*" again.
    assert_eq!(s.get(U1, TEXT, NOW + 10).unwrap(), Some(any));
    // "*" of another AOR is not a fallback.
    assert_eq!(s.get(U2, TEXT, NOW).unwrap(), None);
}

#[test]
fn method_service_covers_every_media_type_of_the_method() {
    let dir = TempDir::new("method");
    let s = open(&dir);
    let any = entry(
        U1,
        ANY_SERVICE,
        ForwardingKind::Provisioned,
        "sip:any@example.com",
        None,
    );
    let method = entry(
        U1,
        "MESSAGE",
        ForwardingKind::Provisioned,
        "sip:msg@example.com",
        None,
    );
    s.put(&any).unwrap();
    s.put(&method).unwrap();
    // exact > method > "*"
    assert_eq!(
        s.get(U1, "MESSAGE:text/plain", NOW).unwrap(),
        Some(method.clone())
    );
    assert_eq!(s.get(U1, "NOTIFY:ua-profile", NOW).unwrap(), Some(any));
    let exact = entry(
        U1,
        "MESSAGE:text/plain",
        ForwardingKind::Temporary,
        "sip:t@example.com",
        None,
    );
    s.put(&exact).unwrap();
    assert_eq!(s.get(U1, "MESSAGE:text/plain", NOW).unwrap(), Some(exact));
    assert_eq!(
        s.get(U1, "MESSAGE:application/json", NOW).unwrap(),
        Some(method)
    );
}

#[test]
fn expired_entries_are_ignored_then_swept() {
    let dir = TempDir::new("expiry");
    let s = open(&dir);
    let temp = entry(
        U1,
        TEXT,
        ForwardingKind::Temporary,
        "sip:a@example.com",
        Some(NOW + 30),
    );
    s.put(&temp).unwrap();
    s.put(&permanent(U2, TEXT, "sip:b@example.com")).unwrap();

    // Live until expires_at (exclusive), as Forwarding::is_live.
    assert_eq!(s.get(U1, TEXT, NOW + 29).unwrap(), Some(temp.clone()));
    assert!(temp.forwarding().is_live(NOW + 29));
    assert_eq!(s.get(U1, TEXT, NOW + 30).unwrap(), None);
    assert!(!temp.forwarding().is_live(NOW + 30));
    assert!(!temp.is_live(NOW + 30));
    assert_eq!(s.list(None, NOW + 30).unwrap().len(), 1);
    assert_eq!(s.count(NOW + 30).unwrap(), 1);
    assert_eq!(s.count(NOW).unwrap(), 2);

    // Sweeping at NOW removes nothing; at NOW + 30 the temporary one.
    assert_eq!(s.sweep(NOW).unwrap(), 0);
    assert_eq!(s.sweep(NOW + 30).unwrap(), 1);
    assert_eq!(
        s.get(U1, TEXT, NOW).unwrap(),
        None,
        "gone even at an earlier time"
    );
    assert_eq!(s.sweep(NOW + 30).unwrap(), 0);
}

#[test]
fn permanent_entries_never_expire() {
    let dir = TempDir::new("permanent");
    let s = open(&dir);
    let e = permanent(U1, TEXT, "sip:a@example.com");
    s.put(&e).unwrap();
    assert_eq!(s.get(U1, TEXT, i64::MAX).unwrap(), Some(e.clone()));
    assert_eq!(s.sweep(i64::MAX).unwrap(), 0);
    assert_eq!(s.list(None, i64::MAX).unwrap(), [e]);
}

#[test]
fn entries_persist_across_close_and_reopen() {
    let dir = TempDir::new("reopen");
    let e = permanent(U1, TEXT, "sip:a@example.com");
    let t = entry(
        U2,
        ANY_SERVICE,
        ForwardingKind::Temporary,
        "sip:b@example.com",
        Some(NOW + 5),
    );
    {
        let s = open(&dir);
        s.put(&e).unwrap();
        s.put(&t).unwrap();
    }
    let s = open(&dir);
    assert_eq!(s.get(U1, TEXT, NOW).unwrap(), Some(e));
    assert_eq!(s.get(U2, PROFILE, NOW).unwrap(), Some(t));
    assert_eq!(s.count(NOW).unwrap(), 2);
}

#[test]
fn entry_converts_to_the_engine_forwarding() {
    let e = entry(
        U1,
        TEXT,
        ForwardingKind::Temporary,
        "sip:a@example.com",
        Some(NOW + 9),
    );
    assert_eq!(
        e.forwarding(),
        Forwarding {
            kind: ForwardingKind::Temporary,
            targets: e.targets.clone(),
            expires_at: Some(NOW + 9),
        }
    );
    let learn = Learned {
        kind: ForwardingKind::Temporary,
        ttl: Some(120),
        targets: vec![target("sip:x@example.com", Some(500))],
        learned_from: "sip:t1@127.0.0.1:5071".into(),
        status: 302,
    };
    let l = Entry::learned(U1, TEXT, &learn, NOW);
    assert_eq!(l.expires_at, Some(NOW + 120));
    assert_eq!(l.created_at, NOW);
    assert_eq!(l.learned_status, Some(302));
    assert_eq!(l.learned_from.as_deref(), Some("sip:t1@127.0.0.1:5071"));
    assert_eq!(l.targets, [target("sip:x@example.com", Some(500))]);

    let dir = TempDir::new("learned");
    let s = open(&dir);
    s.put(&l).unwrap();
    assert_eq!(s.get(U1, TEXT, NOW).unwrap(), Some(l));
}

#[test]
fn creates_the_parent_folder() {
    let dir = TempDir::new("mkdir");
    let path = dir.file("a/b/c/store.sqlite");
    let s = SqliteStore::open(&path).unwrap();
    s.put(&permanent(U1, TEXT, "sip:a@example.com")).unwrap();
    assert!(path.is_file());
    assert_eq!(s.path(), path);
}

#[test]
fn empty_file_is_migrated_to_the_current_schema() {
    let dir = TempDir::new("migrate");
    // A zero-byte file (e.g. made by `touch`), and a v0 SQLite file with
    // something else in it.
    let empty = dir.file("empty.sqlite");
    std::fs::write(&empty, b"").unwrap();
    let v0 = dir.file("v0.sqlite");
    raw(&v0)
        .execute_batch("CREATE TABLE other (x); INSERT INTO other VALUES (1);")
        .unwrap();
    assert_eq!(user_version(&v0), 0);
    for path in [&empty, &v0] {
        {
            let s = SqliteStore::open(path).unwrap();
            s.put(&permanent(U1, TEXT, "sip:a@example.com")).unwrap();
        }
        assert_eq!(user_version(path), SCHEMA_VERSION);
        let mode: String = raw(path)
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        // Opening again is a no-op migration and keeps the data.
        let s = SqliteStore::open(path).unwrap();
        assert!(s.get(U1, TEXT, NOW).unwrap().is_some());
    }
    let other: i64 = raw(&v0)
        .query_row("SELECT x FROM other", [], |r| r.get(0))
        .unwrap();
    assert_eq!(other, 1);
}

#[test]
fn newer_schema_is_refused_and_left_untouched() {
    let dir = TempDir::new("newer");
    let path = dir.file("store.sqlite");
    raw(&path)
        .execute_batch("CREATE TABLE forwarding_v9 (x); PRAGMA user_version = 9;")
        .unwrap();
    let e = open_err(&path);
    assert_eq!(
        e,
        StoreError::NewerSchema {
            path: path.clone(),
            found: 9,
            supported: SCHEMA_VERSION
        }
    );
    let text = e.to_string();
    assert!(text.contains("newer version"), "{text}");
    assert!(text.contains(&path.display().to_string()), "{text}");
    assert!(text.contains("schema version 9"), "{text}");
    assert_eq!(user_version(&path), 9);
    let mode: String = raw(&path)
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "delete", "journal mode unchanged");
}

#[test]
fn unusable_paths_give_a_clear_error() {
    let dir = TempDir::new("paths");
    let file = dir.file("plain-file");
    std::fs::write(&file, b"not a folder").unwrap();
    let garbage = dir.file("garbage.sqlite");
    std::fs::write(&garbage, vec![0x5a_u8; 8192]).unwrap();

    let cases: [(PathBuf, &str); 5] = [
        (file.join("sub/store.sqlite"), "cannot create the folder"),
        (
            PathBuf::from("/proc/push_redirect/store.sqlite"),
            "cannot create the folder",
        ),
        (dir.0.clone(), "is a folder"),
        (garbage.clone(), "not a database"),
        (PathBuf::from("redis://127.0.0.1/0"), "URL"),
    ];
    for (path, what) in cases {
        let e = open_err(&path);
        let StoreError::Open { path: p, reason } = &e else {
            panic!("{}: {e:?}", path.display());
        };
        assert_eq!(p, &path);
        let text = e.to_string();
        assert!(text.contains(&path.display().to_string()), "{text}");
        assert!(reason.contains(what), "{}: {text}", path.display());
        assert!(
            text.starts_with("cannot open the forwarding store"),
            "{text}"
        );
        // The module's way in gives the same error for a path (a URL is
        // refused before: `open_refuses_urls`).
        if !reason.contains("URL") {
            match store::open(path.to_str().unwrap()) {
                Ok(_) => panic!("{} opened by store::open", path.display()),
                Err(e2) => assert_eq!(e2, e),
            }
        }
    }
    // The garbage file is left as it was.
    assert_eq!(std::fs::read(&garbage).unwrap(), vec![0x5a_u8; 8192]);
}

#[test]
fn corrupt_rows_are_skipped_not_fatal() {
    let dir = TempDir::new("corrupt");
    let path = dir.file("store.sqlite");
    let s = SqliteStore::open(&path).unwrap();
    let any = permanent(U1, ANY_SERVICE, "sip:any@example.com");
    s.put(&any).unwrap();
    s.put(&permanent(U1, TEXT, "sip:text@example.com")).unwrap();
    s.put(&permanent(U1, PROFILE, "sip:profile@example.com"))
        .unwrap();
    s.put(&permanent(U2, TEXT, "sip:u2@example.com")).unwrap();
    s.put(&permanent("sip:u3@example.com", TEXT, "sip:u3@example.com"))
        .unwrap();
    s.put(&permanent("sip:u4@example.com", TEXT, "sip:u4@example.com"))
        .unwrap();

    let db = raw(&path);
    db.execute_batch(&format!(
        "UPDATE forwarding SET targets = 'garbage' WHERE aor = '{U1}' AND service = '{TEXT}';
         UPDATE forwarding SET kind = 'sideways' WHERE aor = '{U1}' AND service = '{PROFILE}';
         UPDATE forwarding SET targets = x'00ff' WHERE aor = '{U2}';
         UPDATE forwarding SET targets = '1001 sip:a@b' WHERE aor = 'sip:u3@example.com';
         UPDATE forwarding SET learned_status = 70000 WHERE aor = 'sip:u4@example.com';"
    ))
    .unwrap();

    // The exact entry is unreadable: the "*" one is used instead.
    assert_eq!(s.get(U1, TEXT, NOW).unwrap(), Some(any.clone()));
    assert_eq!(s.get(U1, PROFILE, NOW).unwrap(), Some(any.clone()));
    assert_eq!(s.get(U2, TEXT, NOW).unwrap(), None);
    assert_eq!(s.get("sip:u3@example.com", TEXT, NOW).unwrap(), None);
    assert_eq!(s.get("sip:u4@example.com", TEXT, NOW).unwrap(), None);
    assert_eq!(s.skipped_rows(), 5);
    // list skips them and returns the rest.
    assert_eq!(s.list(None, NOW).unwrap(), [any]);
    assert_eq!(s.skipped_rows(), 10);
    // They can still be replaced or removed.
    assert_eq!(s.remove(U2, None).unwrap(), 1);
    let fixed = permanent(U1, TEXT, "sip:fixed@example.com");
    s.put(&fixed).unwrap();
    assert_eq!(s.get(U1, TEXT, NOW).unwrap(), Some(fixed));
}

/// Inserts a row behind the store's back (as the `sqlite3` shell would).
fn insert_raw(path: &Path, aor: &str, service: &str, uri: &str) {
    raw(path)
        .execute(
            "INSERT OR REPLACE INTO forwarding (aor, service, kind, targets, expires_at, created_at) \
             VALUES (?1, ?2, 'provisioned', ?3, NULL, ?4)",
            rusqlite::params![aor, service, format!("- {uri}"), NOW],
        )
        .unwrap();
}

#[test]
fn a_write_by_another_handle_is_seen_at_once_despite_the_cache() {
    let dir = TempDir::new("cache-other");
    let (a, b) = (open(&dir), open(&dir));
    assert!(a.has_read_cache() && b.has_read_cache());
    // a caches "nothing for U1" ...
    assert_eq!(a.get(U1, TEXT, NOW).unwrap(), None);
    assert_eq!(a.get(U1, TEXT, NOW).unwrap(), None);
    // ... and sees b's write, its replacement and its removal at once.
    let e = permanent(U1, TEXT, "sip:x@example.com");
    b.put(&e).unwrap();
    assert_eq!(a.get(U1, TEXT, NOW).unwrap(), Some(e));
    let e2 = permanent(U1, TEXT, "sip:y@example.com");
    b.put(&e2).unwrap();
    assert_eq!(a.get(U1, TEXT, NOW).unwrap(), Some(e2));
    assert_eq!(b.remove(U1, None).unwrap(), 1);
    assert_eq!(a.get(U1, TEXT, NOW).unwrap(), None);
    // A sweep that deletes counts as a write too.
    b.put(&entry(
        U1,
        TEXT,
        ForwardingKind::Temporary,
        "sip:z@example.com",
        Some(NOW + 5),
    ))
    .unwrap();
    assert!(a.get(U1, TEXT, NOW).unwrap().is_some());
    assert_eq!(b.sweep(NOW + 5).unwrap(), 1);
    assert_eq!(a.get(U1, TEXT, NOW).unwrap(), None);
}

#[test]
fn a_write_the_counter_missed_is_seen_within_the_max_age() {
    let dir = TempDir::new("cache-age");
    let path = dir.file("store.sqlite");
    let s = open_path(&path);
    assert_eq!(s.get(U1, TEXT, NOW).unwrap(), None);
    insert_raw(&path, U1, TEXT, "sip:shell@example.com");
    // Served from the cache: the raw write did not move the counter.
    assert_eq!(s.get(U1, TEXT, NOW).unwrap(), None);
    assert_eq!(s.get(U1, TEXT, NOW + CACHE_MAX_AGE - 1).unwrap(), None);
    // Past the age bound it is read again.
    let got = s.get(U1, TEXT, NOW + CACHE_MAX_AGE).unwrap().unwrap();
    assert_eq!(got.targets[0].uri, "sip:shell@example.com");
}

#[test]
fn a_cached_entry_that_expires_gives_way_to_the_fallback() {
    let dir = TempDir::new("cache-expiry");
    let s = open(&dir);
    let temp = entry(
        U1,
        TEXT,
        ForwardingKind::Temporary,
        "sip:t@example.com",
        Some(NOW + 1),
    );
    let any = permanent(U1, ANY_SERVICE, "sip:any@example.com");
    s.put(&temp).unwrap();
    s.put(&any).unwrap();
    assert_eq!(s.get(U1, TEXT, NOW).unwrap(), Some(temp));
    assert_eq!(s.get(U1, TEXT, NOW + 1).unwrap(), Some(any));
}

#[test]
fn without_the_counter_file_every_read_goes_to_sqlite() {
    let dir = TempDir::new("cache-none");
    let path = dir.file("store.sqlite");
    // A folder where the counter file would be: it cannot be mapped.
    std::fs::create_dir_all(dir.file("store.sqlite-gen")).unwrap();
    let s = open_path(&path);
    assert!(!s.has_read_cache());
    assert_eq!(s.get(U1, TEXT, NOW).unwrap(), None);
    insert_raw(&path, U1, TEXT, "sip:shell@example.com");
    assert!(s.get(U1, TEXT, NOW).unwrap().is_some());
}

#[test]
fn caps_are_enforced() {
    let dir = TempDir::new("caps");
    let s = open(&dir);
    let too_big = |r: Result<(), StoreError>, want: &str| match r {
        Err(StoreError::TooBig { what, .. }) => assert_eq!(what, want),
        other => panic!("{want}: {other:?}"),
    };

    // Targets: 64 fit, 65 do not.
    let mut e = permanent(U1, TEXT, "sip:a@example.com");
    e.targets = (0..MAX_TARGETS)
        .map(|i| target(&format!("sip:t{i}@example.com"), Some(1000)))
        .collect();
    s.put(&e).unwrap();
    assert_eq!(
        s.get(U1, TEXT, NOW).unwrap().unwrap().targets.len(),
        MAX_TARGETS
    );
    e.targets.push(target("sip:one-more@example.com", None));
    too_big(s.put(&e), "targets");

    // AOR and service: 256 bytes fit, 257 do not.
    let long_aor = format!("sip:{}@example.com", "a".repeat(MAX_KEY_LEN - 16));
    assert_eq!(long_aor.len(), MAX_KEY_LEN);
    s.put(&permanent(&long_aor, TEXT, "sip:a@example.com"))
        .unwrap();
    assert!(s.get(&long_aor, TEXT, NOW).unwrap().is_some());
    let longer = format!("{long_aor}x");
    too_big(s.put(&permanent(&longer, TEXT, "sip:a@example.com")), "aor");
    too_big(
        s.put(&permanent(
            U1,
            &"S".repeat(MAX_KEY_LEN + 1),
            "sip:a@example.com",
        )),
        "service",
    );
    assert!(matches!(
        s.get(&longer, TEXT, NOW),
        Err(StoreError::TooBig { what: "aor", .. })
    ));
    assert!(matches!(
        s.remove(U1, Some(&"S".repeat(MAX_KEY_LEN + 1))),
        Err(StoreError::TooBig {
            what: "service",
            ..
        })
    ));
    assert!(matches!(
        s.list(Some(&longer), NOW),
        Err(StoreError::TooBig { .. })
    ));

    // URIs: 2048 bytes fit, 2049 do not; learned_from too.
    let uri = format!("sip:{}@example.com", "u".repeat(MAX_URI_LEN - 16));
    assert_eq!(uri.len(), MAX_URI_LEN);
    s.put(&permanent(U2, TEXT, &uri)).unwrap();
    assert_eq!(s.get(U2, TEXT, NOW).unwrap().unwrap().targets[0].uri, uri);
    too_big(s.put(&permanent(U2, TEXT, &format!("{uri}u"))), "uri");
    let mut e = permanent(U2, TEXT, "sip:a@example.com");
    e.learned_from = Some(format!("{uri}u"));
    too_big(s.put(&e), "learned_from");

    // Malformed input.
    let invalid = |e: &Entry| assert!(matches!(s.put(e), Err(StoreError::Invalid(_))), "{e:?}");
    let mut e = permanent(U1, PROFILE, "sip:a@example.com");
    e.targets.clear();
    invalid(&e);
    invalid(&permanent(U1, PROFILE, "sip:a b@example.com"));
    invalid(&permanent(U1, PROFILE, "sip:a\n1000 sip:evil@example.com"));
    invalid(&permanent(U1, PROFILE, ""));
    invalid(&permanent("", PROFILE, "sip:a@example.com"));
    invalid(&permanent(U1, "", "sip:a@example.com"));
    invalid(&permanent(
        "sip:u1@example.com\r\n",
        PROFILE,
        "sip:a@example.com",
    ));
    let mut e = permanent(U1, PROFILE, "sip:a@example.com");
    e.targets[0].q = Some(1001);
    invalid(&e);
    let mut e = permanent(U1, PROFILE, "sip:a@example.com");
    e.learned_status = Some(1000);
    invalid(&e);
    assert!(matches!(s.get("", TEXT, NOW), Err(StoreError::Invalid(_))));
    assert_eq!(
        s.get(U1, PROFILE, NOW).unwrap(),
        None,
        "nothing refused was stored"
    );
}

#[test]
fn a_writer_waits_for_another_connections_lock() {
    let dir = TempDir::new("wait");
    let path = dir.file("store.sqlite");
    let s = open_path(&path);
    let other = raw(&path);
    other
        .execute_batch("BEGIN IMMEDIATE; DELETE FROM forwarding;")
        .unwrap();
    let holder = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        other.execute_batch("COMMIT").unwrap();
    });
    let t = Instant::now();
    s.put(&permanent(U1, TEXT, "sip:a@example.com")).unwrap();
    let waited = t.elapsed();
    holder.join().unwrap();
    assert!(waited >= Duration::from_millis(200), "{waited:?}");
    assert!(s.get(U1, TEXT, NOW).unwrap().is_some());
}

#[test]
fn a_lock_held_past_the_timeout_is_a_busy_error() {
    let dir = TempDir::new("busy");
    let path = dir.file("store.sqlite");
    let s = open_path(&path);
    let other = raw(&path);
    other
        .execute_batch("BEGIN IMMEDIATE; DELETE FROM forwarding;")
        .unwrap();
    let (done, wait) = mpsc::channel::<()>();
    let holder = std::thread::spawn(move || {
        let _ = wait.recv_timeout(Duration::from_secs(30));
        other.execute_batch("COMMIT").unwrap();
    });
    // Readers are not blocked by a writer (WAL).
    assert_eq!(s.get(U1, TEXT, NOW).unwrap(), None);
    let t = Instant::now();
    let r = s.put(&permanent(U1, TEXT, "sip:a@example.com"));
    let waited = t.elapsed();
    done.send(()).unwrap();
    holder.join().unwrap();
    assert_eq!(r, Err(StoreError::Busy));
    assert!(waited >= BUSY_TIMEOUT, "{waited:?}");
    assert!(
        waited < 2 * BUSY_TIMEOUT + Duration::from_secs(1),
        "{waited:?}"
    );
    assert_eq!(StoreError::Busy.to_string(), "forwarding store busy");
    // The store works again once the lock is gone.
    s.put(&permanent(U1, TEXT, "sip:a@example.com")).unwrap();
}

#[test]
fn wrong_process_after_fork() {
    let dir = TempDir::new("fork");
    let path = dir.file("store.sqlite");
    let s = SqliteStore::open(&path).unwrap();
    let e = permanent(U1, TEXT, "sip:a@example.com");
    s.put(&e).unwrap();
    assert_eq!(s.opened_by(), std::process::id());
    // The module's store, its cache holding the entry: the child must not
    // be answered from it either.
    let c = open_path(&path);
    assert_eq!(c.get(U1, TEXT, NOW).unwrap(), Some(e.clone()));
    assert!(c.has_read_cache());

    // SAFETY: the child runs only code that neither locks nor calls into
    // SQLite (the store's pid check comes first, before the read cache's
    // lock too, and Drop leaks the connection), then leaves with _exit, so
    // no state shared with the parent's other threads is used.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        let mut code: u32 = 0;
        let wrong = |r: &StoreError| matches!(r, StoreError::WrongProcess { .. });
        for (shift, s) in [(0, &s as &dyn Store), (5, &c as &dyn Store)] {
            if !s.get(U1, TEXT, NOW).is_err_and(|e| wrong(&e)) {
                code |= 1 << shift;
            }
            if !s.put(&e).is_err_and(|e| wrong(&e)) {
                code |= 2 << shift;
            }
            if !s.remove(U1, None).is_err_and(|e| wrong(&e)) {
                code |= 4 << shift;
            }
            if !s.list(None, NOW).is_err_and(|e| wrong(&e)) {
                code |= 8 << shift;
            }
            if !s.sweep(NOW).is_err_and(|e| wrong(&e))
                || !s.count(NOW).is_err_and(|e| wrong(&e))
                || !s.generation().is_err_and(|e| wrong(&e))
            {
                code |= 16 << shift;
            }
        }
        if c.get_shared(U1, TEXT, NOW).is_ok() || c.has_read_cache() {
            code |= 1 << 10;
        }
        drop(c);
        drop(s);
        // An exit status has 8 bits: the first failed check, from 1.
        let status = match code {
            0 => 0,
            c => 1 + c.trailing_zeros() as i32,
        };
        // SAFETY: ends the child without running the parent's atexit
        // handlers or destructors.
        unsafe { libc::_exit(status) };
    }
    let mut status = 0;
    // SAFETY: waits for the child forked above; `status` is a valid out
    // parameter.
    let r = unsafe { libc::waitpid(pid, &mut status, 0) };
    assert_eq!(r, pid);
    assert!(libc::WIFEXITED(status), "child status {status}");
    assert_eq!(
        libc::WEXITSTATUS(status),
        0,
        "child saw a store call succeed (check bit {} of SqliteStore 0-4, \
         Cached 5-9, get_shared/has_read_cache 10)",
        libc::WEXITSTATUS(status) - 1
    );

    // The parent's store is untouched by the child.
    assert_eq!(s.get(U1, TEXT, NOW).unwrap(), Some(e.clone()));
    assert_eq!(c.get(U1, TEXT, NOW).unwrap(), Some(e));
    s.put(&permanent(U2, TEXT, "sip:b@example.com")).unwrap();
    assert_eq!(s.count(NOW).unwrap(), 2);
    assert_eq!(c.count(NOW).unwrap(), 2);
    let text = StoreError::WrongProcess {
        opened_by: 1,
        used_by: 2,
    }
    .to_string();
    assert!(text.contains("pid 1") && text.contains("pid 2"), "{text}");
}

/// How the two writers of `two_processes_write_and_read_at_once` find their
/// work: `path|id|count|go-file`.
const CHILD_ENV: &str = "PR_STORE_TEST_WRITER";
const WRITES_PER_CHILD: usize = 3000;

fn unix_micros() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_micros()
}

fn writer_aor(id: usize, i: usize) -> String {
    format!("sip:w{id}-{i}@example.com")
}

/// Child mode of `two_processes_write_and_read_at_once`: one writer. Does
/// nothing unless started by it.
#[test]
#[ignore = "child mode of two_processes_write_and_read_at_once"]
fn store_writer_child() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return;
    };
    let parts: Vec<&str> = spec.split('|').collect();
    let [path, id, n, go] = parts[..] else {
        panic!("bad {CHILD_ENV}: {spec}");
    };
    let (id, n): (usize, usize) = (id.parse().unwrap(), n.parse().unwrap());
    // Tell the parent this writer is up, then wait for both to be.
    std::fs::write(format!("{go}.ready{id}"), b"").unwrap();
    let give_up = Instant::now() + Duration::from_secs(30);
    while !Path::new(go).exists() {
        assert!(Instant::now() < give_up, "no go file");
        std::thread::sleep(Duration::from_millis(1));
    }
    let start = unix_micros();
    // Both writers open (and migrate) the new file at the same time.
    let s = open_path(Path::new(path));
    let other = 1 - id;
    let mut seen_other = 0;
    for i in 0..n {
        let svc = if i % 2 == 0 { TEXT } else { PROFILE };
        let e = entry(
            &writer_aor(id, i),
            svc,
            ForwardingKind::Temporary,
            &format!("sip:t{i}@127.0.{id}.1"),
            Some(NOW + 3600),
        );
        s.put(&e)
            .unwrap_or_else(|err| panic!("writer {id} put {i}: {err}"));
        let back = s
            .get(&e.aor, svc, NOW)
            .unwrap_or_else(|err| panic!("writer {id} get {i}: {err}"));
        assert_eq!(back.as_ref(), Some(&e), "writer {id} entry {i}");
        let theirs = s
            .get(&writer_aor(other, i), ANY_SERVICE, NOW)
            .unwrap_or_else(|err| panic!("writer {id} reads {other}'s {i}: {err}"));
        let theirs_svc = s
            .get(&writer_aor(other, i), svc, NOW)
            .unwrap_or_else(|err| panic!("writer {id} reads {other}'s {i}: {err}"));
        assert!(theirs.is_none(), "no '*' entries are written");
        seen_other += usize::from(theirs_svc.is_some());
        if i % 250 == 0 {
            s.count(NOW)
                .unwrap_or_else(|err| panic!("writer {id} count: {err}"));
            s.sweep(NOW)
                .unwrap_or_else(|err| panic!("writer {id} sweep: {err}"));
        }
    }
    let end = unix_micros();
    println!("WRITER {id} {start} {end} {seen_other}");
}

#[test]
fn two_processes_write_and_read_at_once() {
    let dir = TempDir::new("two-writers");
    let path = dir.file("shared/store.sqlite");
    let go = dir.file("go");
    let exe = std::env::current_exe().unwrap();
    let children: Vec<_> = (0..2)
        .map(|id| {
            Command::new(&exe)
                .args([
                    "store_writer_child",
                    "--exact",
                    "--ignored",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env(
                    CHILD_ENV,
                    format!(
                        "{}|{id}|{WRITES_PER_CHILD}|{}",
                        path.display(),
                        go.display()
                    ),
                )
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let give_up = Instant::now() + Duration::from_secs(30);
    while !(0..2).all(|id| Path::new(&format!("{}.ready{id}", go.display())).exists()) {
        assert!(Instant::now() < give_up, "writers did not start");
        std::thread::sleep(Duration::from_millis(1));
    }
    std::fs::write(&go, b"go").unwrap();
    let mut spans = Vec::new();
    for (id, child) in children.into_iter().enumerate() {
        let out = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "writer {id} failed: {}\n{stdout}\n{stderr}",
            out.status
        );
        assert!(
            !stdout.contains("busy") && !stderr.contains("busy"),
            "{stdout}{stderr}"
        );
        let line = stdout
            .lines()
            .find_map(|l| l.split_once("WRITER ").map(|(_, rest)| rest))
            .unwrap_or_else(|| panic!("writer {id} did not run: {stdout}"));
        let f: Vec<u128> = line
            .split_whitespace()
            .take(4)
            .map(|x| x.parse().unwrap())
            .collect();
        assert_eq!(f[0], id as u128);
        println!(
            "writer {id}: {WRITES_PER_CHILD} put+get in {} ms, saw {} of the other's entries",
            (f[2] - f[1]) / 1000,
            f[3]
        );
        spans.push((f[1], f[2]));
    }
    // They really ran at the same time.
    let (a, b) = (spans[0], spans[1]);
    assert!(a.0 < b.1 && b.0 < a.1, "writers did not overlap: {spans:?}");

    // The parent sees every entry of both.
    let s = open_path(&path);
    assert_eq!(s.count(NOW).unwrap(), 2 * WRITES_PER_CHILD);
    for id in 0..2 {
        for i in 0..WRITES_PER_CHILD {
            let svc = if i % 2 == 0 { TEXT } else { PROFILE };
            let e = s.get(&writer_aor(id, i), svc, NOW).unwrap();
            let e = e.unwrap_or_else(|| panic!("writer {id} entry {i} missing"));
            assert_eq!(e.targets[0].uri, format!("sip:t{i}@127.0.{id}.1"));
        }
    }
}

#[test]
fn open_takes_redis_urls_and_refuses_others() {
    // redis:// opens without connecting (Kamailio starts with Redis down);
    // the store says what it is.
    for url in [
        "redis://127.0.0.1/0",
        "REDIS://127.0.0.1:6379",
        "redis://user:s3cret@127.0.0.1:6379/2?prefix=pr",
    ] {
        let s = store::open(url).unwrap_or_else(|e| panic!("{url}: {e}"));
        assert_eq!(s.faults().status().kind, "redis");
        assert!(!format!("{s:?}").contains("s3cret"));
    }
    // A bad Redis URL is refused at once, without the password.
    let e = store::open("redis://user:s3cret@127.0.0.1:6379/2?prefix=a*b").unwrap_err();
    assert!(e.to_string().contains("prefix"), "{e}");
    assert!(!e.to_string().contains("s3cret"), "{e}");
    // Through sentinels too (SPEC §6); a bad sentinel URL is refused
    // without the password.
    let s =
        store::open("redis+sentinel://:s3cret@127.0.0.1:26379,127.0.0.1:26380/mymaster/0").unwrap();
    assert_eq!(s.faults().status().kind, "redis");
    let e = store::open("redis+sentinel://:s3cret@10.0.0.1:26379/").unwrap_err();
    let text = e.to_string();
    assert!(text.contains("master"), "{text}");
    assert!(!text.contains("s3cret"), "{text}");
    assert!(text.contains("://***@"), "{text}");
    // Another URL is no file path either.
    let e = store::open("mysql://root:s3cret@db/push").unwrap_err();
    let text = e.to_string();
    assert!(matches!(e, StoreError::Unsupported { .. }), "{e:?}");
    assert!(text.contains("give a file path"), "{text}");
    assert!(
        text.contains("mysql://***@db/push") && !text.contains("s3cret"),
        "{text}"
    );
}

/// A backend of the test's own, to show the read cache works over any
/// [`Store`]: entries by exact (AOR, service), a change counter the test
/// moves, and how many times it was read.
#[derive(Default)]
struct Fake {
    entries: Mutex<HashMap<(String, String), Entry>>,
    /// The change counter; `u64::MAX`: none, `u64::MAX - 1`: the wrong
    /// process.
    counter: AtomicU64,
    reads: AtomicUsize,
}

#[derive(Clone, Default)]
struct FakeStore(Arc<Fake>);

const NO_COUNTER: u64 = u64::MAX;
const ELSEWHERE: u64 = u64::MAX - 1;

impl FakeStore {
    fn reads(&self) -> usize {
        self.0.reads.load(Ordering::SeqCst)
    }

    fn set_counter(&self, value: u64) {
        self.0.counter.store(value, Ordering::SeqCst);
    }

    /// A write by someone else: stored, and counted.
    fn write_elsewhere(&self, e: &Entry) {
        self.0
            .entries
            .lock()
            .unwrap()
            .insert((e.aor.clone(), e.service.clone()), e.clone());
        self.0.counter.fetch_add(1, Ordering::SeqCst);
    }
}

impl Store for FakeStore {
    fn get(&self, aor: &str, service: &str, _now: i64) -> Result<Option<Entry>, StoreError> {
        self.0.reads.fetch_add(1, Ordering::SeqCst);
        let entries = self.0.entries.lock().unwrap();
        Ok(entries.get(&(aor.into(), service.into())).cloned())
    }

    /// Does not move the counter: the cache must forget by itself what a
    /// write through it changed.
    fn put(&self, e: &Entry) -> Result<(), StoreError> {
        e.validate()?;
        let mut entries = self.0.entries.lock().unwrap();
        entries.insert((e.aor.clone(), e.service.clone()), e.clone());
        Ok(())
    }

    fn remove(&self, aor: &str, service: Option<&str>) -> Result<usize, StoreError> {
        let mut entries = self.0.entries.lock().unwrap();
        let before = entries.len();
        entries.retain(|(a, s), _| a != aor || service.is_some_and(|x| x != s));
        Ok(before - entries.len())
    }

    fn list(&self, aor: Option<&str>, _now: i64) -> Result<Vec<Entry>, StoreError> {
        let entries = self.0.entries.lock().unwrap();
        let mut out: Vec<Entry> = entries
            .values()
            .filter(|e| aor.is_none_or(|a| a == e.aor))
            .cloned()
            .collect();
        out.sort_by(|a, b| (&a.aor, &a.service).cmp(&(&b.aor, &b.service)));
        Ok(out)
    }

    fn sweep(&self, now: i64) -> Result<usize, StoreError> {
        let mut entries = self.0.entries.lock().unwrap();
        let before = entries.len();
        entries.retain(|_, e| e.is_live(now));
        Ok(before - entries.len())
    }

    fn count(&self, now: i64) -> Result<usize, StoreError> {
        let entries = self.0.entries.lock().unwrap();
        Ok(entries.values().filter(|e| e.is_live(now)).count())
    }

    fn generation(&self) -> Result<Option<u64>, StoreError> {
        match self.0.counter.load(Ordering::SeqCst) {
            NO_COUNTER => Ok(None),
            ELSEWHERE => Err(StoreError::WrongProcess {
                opened_by: 1,
                used_by: 2,
            }),
            g => Ok(Some(g)),
        }
    }
}

#[test]
fn the_read_cache_works_over_any_backend() {
    let fake = FakeStore::default();
    let backend: Box<dyn Store> = Box::new(fake.clone());
    let c = Cached::new(backend);
    assert!(c.has_read_cache());

    // Read once, then answered from the cache, without a copy; "nothing"
    // is cached too.
    let e = permanent(U1, TEXT, "sip:a@example.com");
    fake.write_elsewhere(&e);
    let first = c.get_shared(U1, TEXT, NOW).unwrap().unwrap();
    let again = c.get_shared(U1, TEXT, NOW).unwrap().unwrap();
    assert!(Arc::ptr_eq(&first.entry, &again.entry));
    assert!(Arc::ptr_eq(&first.forwarding, &again.forwarding));
    assert_eq!(*first.entry, e);
    assert_eq!(*first.forwarding, e.forwarding());
    assert_eq!(c.get(U2, TEXT, NOW).unwrap(), None);
    assert_eq!(c.get(U2, TEXT, NOW).unwrap(), None);
    assert_eq!(fake.reads(), 2);

    // Past the cache: the backend, every time.
    assert_eq!(c.backend().get(U1, TEXT, NOW).unwrap(), Some(e.clone()));
    assert_eq!(fake.reads(), 3);

    // Another writer moves the counter: read again.
    let e2 = permanent(U2, TEXT, "sip:b@example.com");
    fake.write_elsewhere(&e2);
    assert_eq!(c.get(U2, TEXT, NOW).unwrap(), Some(e2));
    assert_eq!(fake.reads(), 4);

    // A write through the cache is seen at once, though this backend's
    // counter did not move; so are a removal and a sweep.
    let e3 = entry(
        U1,
        TEXT,
        ForwardingKind::Temporary,
        "sip:c@example.com",
        Some(NOW + 5),
    );
    assert_eq!(c.get(U1, TEXT, NOW).unwrap(), Some(e.clone()));
    c.put(&e3).unwrap();
    assert_eq!(c.get(U1, TEXT, NOW).unwrap(), Some(e3.clone()));
    assert_eq!(c.sweep(NOW + 5).unwrap(), 1);
    assert_eq!(c.get(U1, TEXT, NOW).unwrap(), None);
    c.put(&e3).unwrap();
    assert_eq!(c.get(U1, TEXT, NOW).unwrap(), Some(e3));
    assert_eq!(c.remove(U1, None).unwrap(), 1);
    assert_eq!(c.get(U1, TEXT, NOW).unwrap(), None);
    assert_eq!(c.count(NOW).unwrap(), 1);
    assert_eq!(c.list(None, NOW).unwrap().len(), 1);

    // The age bound holds whatever the backend.
    let reads = fake.reads();
    assert_eq!(c.get(U1, TEXT, NOW).unwrap(), None);
    assert_eq!(fake.reads(), reads);
    assert_eq!(c.get(U1, TEXT, NOW + CACHE_MAX_AGE).unwrap(), None);
    assert_eq!(fake.reads(), reads + 1);

    // Keys are checked before the backend is asked, and never cached.
    assert!(matches!(c.get("", TEXT, NOW), Err(StoreError::Invalid(_))));
    let long = "a".repeat(MAX_KEY_LEN + 1);
    assert!(matches!(
        c.get(U1, &long, NOW),
        Err(StoreError::TooBig {
            what: "service",
            ..
        })
    ));
    assert_eq!(fake.reads(), reads + 1);

    // A backend that cannot use its store here: an error, never a cached
    // answer.
    fake.set_counter(ELSEWHERE);
    assert!(!c.has_read_cache());
    assert!(matches!(
        c.get(U1, TEXT, NOW + CACHE_MAX_AGE),
        Err(StoreError::WrongProcess { .. })
    ));
    assert!(matches!(
        c.generation(),
        Err(StoreError::WrongProcess { .. })
    ));

    // Without a counter, nothing is cached.
    fake.set_counter(NO_COUNTER);
    assert!(!c.has_read_cache());
    let reads = fake.reads();
    for _ in 0..3 {
        assert_eq!(c.get(U2, TEXT, NOW).unwrap().unwrap().aor, U2);
    }
    assert_eq!(fake.reads(), reads + 3);
}

// --- Faults (store::fault): what a process does while its store fails. ---

use push_redirect::store::fault::{Write, Written};

fn learned_entry(aor: &str, uri: &str) -> Entry {
    permanent(aor, TEXT, uri)
}

/// Waits past the fault handling's first back-off.
fn past_backoff() {
    std::thread::sleep(push_redirect::store::fault::RETRY_FIRST + Duration::from_millis(50));
}

#[test]
fn a_lock_held_past_store_timeout_queues_the_write_and_it_lands_later() {
    let dir = TempDir::new("fault-lock");
    let path = dir.file("store.sqlite");
    let timeout = Duration::from_millis(100);
    let s = store::open_with(path.to_str().unwrap(), timeout).unwrap();
    let other = raw(&path);
    other
        .execute_batch("BEGIN IMMEDIATE; DELETE FROM forwarding;")
        .unwrap();
    let t = Instant::now();
    let w = s.write_or_queue(Write::Put(learned_entry(U1, "sip:a@example.com")));
    let first = t.elapsed();
    assert_eq!(w, Written::Queued);
    // Further writes in the back-off do not wait at all; none waits much
    // past store_timeout (not the 2 s default).
    let t = Instant::now();
    for i in 0..20 {
        let w = s.write_or_queue(Write::Put(learned_entry(
            U2,
            &format!("sip:b{i}@example.com"),
        )));
        assert_eq!(w, Written::Queued);
    }
    let rest = t.elapsed();
    println!("first write waited {first:?}, 20 more {rest:?}");
    assert!(first >= timeout && first < BUSY_TIMEOUT, "{first:?}");
    assert!(rest < timeout, "{rest:?}");
    // Reads go on (WAL).
    assert_eq!(s.get(U1, TEXT, NOW).unwrap(), None);
    let c = s.take_counts();
    assert_eq!((c.errors, c.learned), (21, 0));
    assert_eq!(s.faults().queued(), 2, "one per key");
    other.execute_batch("COMMIT").unwrap();
    past_backoff();
    // The next use of the store writes the queue; the read sees it.
    assert_eq!(
        s.get(U1, TEXT, NOW).unwrap().unwrap().targets[0].uri,
        "sip:a@example.com"
    );
    assert_eq!(
        s.get(U2, TEXT, NOW).unwrap().unwrap().targets[0].uri,
        "sip:b19@example.com",
        "the last write of a key wins"
    );
    let c = s.take_counts();
    assert_eq!((c.errors, c.learned, c.dropped), (0, 2, 0));
    assert!(!s.faults().in_outage());
    assert_eq!(s.faults().queued(), 0);
}

#[test]
fn a_removed_store_file_is_opened_again_and_nothing_is_written_into_the_old_one() {
    let dir = TempDir::new("fault-removed");
    let path = dir.file("store.sqlite");
    let s = store::open_with(path.to_str().unwrap(), Duration::from_millis(100)).unwrap();
    s.put(&learned_entry(U1, "sip:a@example.com")).unwrap();
    // `rm store.sqlite*`: the file, its -wal, -shm and -gen.
    for f in std::fs::read_dir(&dir.0).unwrap() {
        std::fs::remove_file(f.unwrap().path()).unwrap();
    }
    let w = s.write_or_queue(Write::Put(learned_entry(U2, "sip:b@example.com")));
    assert_eq!(w, Written::Stored, "into a new file at the same path");
    assert!(path.exists());
    // Another program sees it there (the old entry went with the old file).
    let n: i64 = raw(&path)
        .query_row(
            "SELECT count(*) FROM forwarding WHERE aor = ?1",
            [U2],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(n, 1);
    assert_eq!(s.get(U1, TEXT, NOW).unwrap(), None);
    assert!(
        s.take_counts().is_empty(),
        "opened again at once: nothing failed"
    );
    assert!(!s.faults().in_outage());
}

#[test]
fn a_removed_store_folder_is_made_again() {
    let dir = TempDir::new("fault-folder");
    let path = dir.file("sub/store.sqlite");
    let s = store::open_with(path.to_str().unwrap(), Duration::from_millis(100)).unwrap();
    s.put(&learned_entry(U1, "sip:a@example.com")).unwrap();
    assert!(s.get(U1, TEXT, NOW).unwrap().is_some());
    std::fs::remove_dir_all(dir.file("sub")).unwrap();
    // A lookup notices within a second (the read cache answers meanwhile).
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(
        s.get(U1, TEXT, NOW).unwrap(),
        None,
        "the new store is empty"
    );
    assert!(path.exists());
    let w = s.write_or_queue(Write::Put(learned_entry(U2, "sip:b@example.com")));
    assert_eq!(w, Written::Stored);
    assert!(s.get(U2, TEXT, NOW).unwrap().is_some());
}

#[test]
fn a_store_that_cannot_be_opened_again_queues_until_it_can() {
    let dir = TempDir::new("fault-unopenable");
    let path = dir.file("sub/store.sqlite");
    let s = store::open_with(path.to_str().unwrap(), Duration::from_millis(100)).unwrap();
    // The folder replaced by a file: nothing can be created there.
    std::fs::remove_dir_all(dir.file("sub")).unwrap();
    std::fs::write(dir.file("sub"), b"not a folder").unwrap();
    for i in 0..10 {
        let w = s.write_or_queue(Write::Put(learned_entry(
            U1,
            &format!("sip:a{i}@example.com"),
        )));
        assert_eq!(w, Written::Queued);
        assert!(s.get(U2, TEXT, NOW).is_err(), "no store to read");
    }
    assert!(s.faults().in_outage());
    assert_eq!(s.faults().queued(), 1);
    let c = s.take_counts();
    assert!(c.errors >= 20, "{c:?}");
    assert_eq!(c.learned, 0);
    // Fixed: after the back-off, the store is opened again and the queue
    // lands.
    std::fs::remove_file(dir.file("sub")).unwrap();
    std::thread::sleep(push_redirect::store::fault::RETRY_MAX);
    assert_eq!(
        s.get(U1, TEXT, NOW).unwrap().unwrap().targets[0].uri,
        "sip:a9@example.com"
    );
    assert_eq!(s.take_counts().learned, 1);
    assert!(!s.faults().in_outage());
}

/// A forwarding target that names a registered terminal by its instance.
fn instance_target(uri: &str, instance: &str) -> ForwardTarget {
    ForwardTarget {
        uri: uri.into(),
        q: Some(900),
        instance: Some(TargetInstance {
            aor: U1.into(),
            instance: instance.into(),
        }),
    }
}

const INST: &str = "\"<urn:uuid:00000000-0000-1000-8000-000a95a0e128>\"";

/// Schema v2 keeps the instances of targets (SPEC §3: a learned
/// forwarding follows the terminal); a target without one stays a URI.
#[test]
fn targets_keep_their_instances() {
    let dir = TempDir::new("instances");
    let s = SqliteStore::open(dir.file("store.sqlite")).unwrap();
    let mut e = permanent(U1, TEXT, "sip:plain@example.com");
    e.targets
        .insert(0, instance_target("sip:t2@127.0.0.1:5072", INST));
    s.put(&e).unwrap();
    assert_eq!(s.get(U1, TEXT, NOW).unwrap(), Some(e.clone()));
    assert_eq!(s.list(Some(U1), NOW).unwrap(), [e.clone()]);
    // Entry -> engine forwarding keeps them.
    assert_eq!(e.forwarding().targets, e.targets);
    // An entry without any instance stores NULL (as a v1 row).
    s.put(&permanent(U2, TEXT, "sip:x@example.com")).unwrap();
    let null: Option<String> = raw(&dir.file("store.sqlite"))
        .query_row(
            "SELECT instances FROM forwarding WHERE aor = ?1",
            [U2],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(null, None);
    // Bad instances are refused on write...
    for bad in ["", "has space", "tab\there", &"x".repeat(300)] {
        let mut e = permanent(U1, PROFILE, "sip:a@example.com");
        e.targets[0].instance = Some(TargetInstance {
            aor: U1.into(),
            instance: bad.into(),
        });
        assert!(s.put(&e).is_err(), "{bad:?}");
    }
    // ... and skipped on read.
    for (i, bad) in [
        "-\n-\n-",
        "sip:u1@example.com",
        " x",
        "sip:u1@example.com a b",
        "sip:u1@example.com \u{1}",
    ]
    .iter()
    .enumerate()
    {
        let aor = format!("sip:bad{i}@example.com");
        s.put(&permanent(&aor, TEXT, "sip:a@example.com")).unwrap();
        raw(&dir.file("store.sqlite"))
            .execute(
                "UPDATE forwarding SET instances = ?1 WHERE aor = ?2",
                rusqlite::params![bad, aor],
            )
            .unwrap();
        assert_eq!(s.get(&aor, TEXT, NOW).unwrap(), None, "{bad:?}");
    }
}

/// A store written by the previous version (schema 1, no instances
/// column) is migrated in place when opened: its rows read as before
/// (targets without instances) and new rows keep instances.
#[test]
fn a_version_1_store_is_migrated_to_version_2() {
    let dir = TempDir::new("migrate-v1");
    let path = dir.file("store.sqlite");
    {
        let db = raw(&path);
        db.execute_batch(MIGRATIONS[0]).unwrap();
        db.execute_batch("PRAGMA user_version = 1;").unwrap();
        db.execute(
            "INSERT INTO forwarding (aor, service, kind, targets, expires_at, created_at, \
             learned_from, learned_status) VALUES (?1, ?2, 'permanent', ?3, NULL, ?4, ?5, 301)",
            rusqlite::params![
                U1,
                TEXT,
                "800 sip:t2@127.0.0.1:5072",
                NOW,
                "sip:t1@127.0.0.1:5071"
            ],
        )
        .unwrap();
    }
    assert_eq!(user_version(&path), 1);
    let s = SqliteStore::open(&path).unwrap();
    assert_eq!(user_version(&path), 2);
    assert_eq!(SCHEMA_VERSION, 2);
    let old = s.get(U1, TEXT, NOW).unwrap().expect("the v1 row");
    assert_eq!(old.targets, [target("sip:t2@127.0.0.1:5072", Some(800))]);
    assert_eq!(old.learned_status, Some(301));
    let mut e = permanent(U2, TEXT, "sip:t3@127.0.0.1:5073");
    e.targets[0] = instance_target("sip:t3@127.0.0.1:5073", INST);
    s.put(&e).unwrap();
    drop(s);
    // Opening again is a no-op and keeps both.
    let s = SqliteStore::open(&path).unwrap();
    assert_eq!(s.get(U2, TEXT, NOW).unwrap(), Some(e));
    assert_eq!(s.get(U1, TEXT, NOW).unwrap(), Some(old));
}
