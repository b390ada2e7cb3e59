//! Replays the fuzz regression inputs (`tests/data/fuzz/<target>/`) through
//! the very code the fuzz targets run: `fuzz/src/harness/` is compiled
//! into this test with `#[path]` (it needs nothing but `push_redirect` and
//! std), so a replay checks the same promises as the fuzzer did.
//!
//! - `reply_parser/`: raw replies (the target's input as is). The target's
//!   seeds, `tests/data/*.sip` and `fuzz/seeds/reply_parser/*`, are
//!   replayed too.
//! - `history_info/`: raw History-Info rows (and `P:` Privacy), as the
//!   target reads them; `seed_*` are hand-written.
//! - `engine/`, `c_abi/`: `*.case` files, the text form of a structured
//!   input (see `fuzz/src/harness/text.rs`); `seed_*.case` are hand-written
//!   scenarios.
//!
//! `make fuzz` writes each new crash as `open-<artifact>`: those are
//! replayed by the `#[ignore]`d `open_fuzz_findings` test (which fails
//! while the bug is there, as the `#[ignore]`d rows of parser_data.rs do).
//! Once the bug is fixed, drop the `open-` prefix so that the input guards
//! against it coming back.

#[allow(dead_code, clippy::all)]
#[path = "../fuzz/src/harness/mod.rs"]
mod harness;

use std::path::{Path, PathBuf};

use harness::{c_abi, engine, history, reply};

const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data");

/// The files of `dir` (none if it does not exist), sorted.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(d) => d
            .map(|e| e.expect("readable directory entry").path())
            .filter(|p| p.is_file())
            .collect(),
        Err(_) => Vec::new(),
    };
    v.sort();
    v
}

fn is_open(p: &Path) -> bool {
    p.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with("open-"))
}

/// Replays one input of `target`; panics (with the file named) on failure.
fn replay(target: &str, path: &Path) {
    let bytes = std::fs::read(path).expect("readable input");
    let name = path.display();
    let run = || match target {
        "reply_parser" => reply::run(&bytes),
        "history_info" => history::run(&bytes),
        "engine" => {
            let text = String::from_utf8(bytes.clone()).expect("a .case file is UTF-8");
            let case = engine::Case::from_text(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
            // The text form reads back as written.
            assert_eq!(engine::Case::from_text(&case.to_text()).as_ref(), Ok(&case));
            engine::run(&case);
        }
        "c_abi" => {
            let text = String::from_utf8(bytes.clone()).expect("a .case file is UTF-8");
            let case = c_abi::Case::from_text(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(c_abi::Case::from_text(&case.to_text()).as_ref(), Ok(&case));
            c_abi::run(&case);
        }
        _ => unreachable!("{target}"),
    };
    if let Err(e) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(run)) {
        let msg = e
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default();
        panic!("{target}: {name}: {msg}");
    }
}

/// Replays the regression inputs of `target` (not the open ones); returns
/// how many.
fn replay_all(target: &str) -> usize {
    let dir = Path::new(DATA).join("fuzz").join(target);
    let list: Vec<PathBuf> = files(&dir).into_iter().filter(|p| !is_open(p)).collect();
    for p in &list {
        replay(target, p);
    }
    list.len()
}

#[test]
fn reply_parser_regressions_and_seeds() {
    let mut n = replay_all("reply_parser");
    // The target's seed corpus: every reply of tests/data and the RFC 4475
    // cases of fuzz/seeds.
    let seeds = files(Path::new(DATA))
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "sip"))
        .chain(files(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds/reply_parser"),
        ));
    for p in seeds {
        replay("reply_parser", &p);
        n += 1;
    }
    assert!(n > 40, "only {n} reply inputs replayed");
}

#[test]
fn engine_regressions_and_seeds() {
    assert!(
        replay_all("engine") >= 1,
        "no engine case under tests/data/fuzz/engine"
    );
}

#[test]
fn c_abi_regressions_and_seeds() {
    assert!(
        replay_all("c_abi") >= 1,
        "no c_abi case under tests/data/fuzz/c_abi"
    );
}

#[test]
fn history_info_regressions_and_seeds() {
    let n = replay_all("history_info");
    assert!(n >= 4, "only {n} history_info inputs");
    // And the hostile rows of README "History-Info and Diversion".
    let thousand: Vec<u8> = (0..1000)
        .map(|k| format!("<sip:x{k}@h.example>;index=1.{k}"))
        .collect::<Vec<_>>()
        .join(",")
        .into_bytes();
    history::run(&thousand);
    history::run(format!("<sip:{}@h.example>;index=1", "a".repeat(60_000)).as_bytes());
    history::run(&b"<sip:a@h>;index=1\n".repeat(20));
}

/// The crashes `make fuzz` found that are not fixed yet: each must pass
/// once its bug is fixed (then drop its `open-` prefix).
#[test]
#[ignore = "open fuzz findings (tests/data/fuzz/*/open-*): they fail until fixed"]
fn open_fuzz_findings() {
    let mut failed = Vec::new();
    for target in ["reply_parser", "engine", "c_abi", "history_info"] {
        let dir = Path::new(DATA).join("fuzz").join(target);
        for p in files(&dir).into_iter().filter(|p| is_open(p)) {
            if std::panic::catch_unwind(|| replay(target, &p)).is_err() {
                failed.push(p.display().to_string());
            }
        }
    }
    assert!(failed.is_empty(), "still failing: {failed:#?}");
}
