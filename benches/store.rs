//! The forwarding store: the lookups `push_lookup()` does on every PUSH
//! request, and the write a 301/302 causes, in a WAL SQLite file holding
//! 10,000 entries.
//!
//! Cases, each read from the SQLite file (`_file`: a first lookup, or the
//! first after a write: the backend, past the read cache) and as
//! `push_lookup()` does it (`_cached`: a working set of 1,000 AORs read
//! again while the store's change counter has not moved): `get_hit` (an existing (AOR,
//! service); target ≤ 5 µs), `get_miss` (an AOR with no entry: the common
//! case), `get_any` (only the AOR's `*` entry matches); and `put_replace`
//! (replace an existing entry).
//!
//! Run: `cargo bench --bench store`.

use std::hint::black_box;
use std::path::PathBuf;

use criterion::{criterion_group, criterion_main, Criterion};
use push_redirect::engine::{ForwardTarget, ForwardingKind};
use push_redirect::store::{self, Entry, Store, ANY_SERVICE};

const ENTRIES: usize = 10_000;
const NOW: i64 = 1_700_000_000;
const TEXT: &str = "MESSAGE:text/plain";

fn aor(i: usize) -> String {
    format!("sip:user{i}@example.com")
}

fn entry(i: usize, service: &str) -> Entry {
    Entry {
        aor: aor(i),
        service: service.to_string(),
        kind: ForwardingKind::Permanent,
        targets: vec![
            ForwardTarget {
                uri: format!("sip:fwd{i}@partner.example"),
                q: Some(1000),
                instance: None,
            },
            ForwardTarget {
                uri: format!("sip:fwd{i}@backup.example;transport=tcp"),
                q: Some(500),
                instance: None,
            },
        ],
        expires_at: (i % 2 == 0).then_some(NOW + 3600),
        created_at: NOW,
        learned_from: Some(format!("sip:term{i}@127.0.0.1:5071")),
        learned_status: Some(301),
    }
}

fn bench(c: &mut Criterion) {
    let dir: PathBuf =
        std::env::temp_dir().join(format!("push_redirect-bench-store-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let store = match store::open(&dir.join("store.sqlite").to_string_lossy()) {
        Ok(s) => s,
        Err(e) => panic!("{e}"),
    };
    for i in 0..ENTRIES {
        // Every tenth AOR has only a `*` entry.
        let service = if i % 10 == 9 { ANY_SERVICE } else { TEXT };
        if let Err(e) = store.put(&entry(i, service)) {
            panic!("{e}");
        }
    }
    let hits: Vec<String> = (0..ENTRIES).filter(|i| i % 10 != 9).map(aor).collect();
    let anys: Vec<String> = (0..ENTRIES).filter(|i| i % 10 == 9).map(aor).collect();
    let misses: Vec<String> = (0..ENTRIES)
        .map(|i| format!("sip:nobody{i}@example.com"))
        .collect();

    let mut g = c.benchmark_group("store");
    let mut k = 0usize;
    let cases: [(&str, &[String], bool); 3] = [
        ("get_hit", &hits, true),
        ("get_miss", &misses, false),
        ("get_any", &anys, true),
    ];
    for (name, keys, found) in cases {
        g.bench_function(format!("{name}_file"), |b| {
            b.iter(|| {
                k = (k + 7919) % keys.len();
                let e = store.backend().get(black_box(&keys[k]), TEXT, NOW);
                assert!(matches!(&e, Ok(x) if x.is_some() == found));
                e
            })
        });
        // A working set the cache holds (it keeps up to CACHE_MAX_KEYS).
        let set = &keys[..keys.len().min(1000)];
        g.bench_function(format!("{name}_cached"), |b| {
            b.iter(|| {
                k = (k + 7919) % set.len();
                let e = store.get(black_box(&set[k]), TEXT, NOW);
                assert!(matches!(&e, Ok(x) if x.is_some() == found));
                e
            })
        });
    }
    let entries: Vec<Entry> = (0..ENTRIES)
        .filter(|i| i % 10 != 9)
        .map(|i| entry(i, TEXT))
        .collect();
    g.bench_function("put_replace", |b| {
        b.iter(|| {
            k = (k + 7919) % entries.len();
            store.put(black_box(&entries[k]))
        })
    });
    g.finish();
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, bench);
criterion_main!(benches);
