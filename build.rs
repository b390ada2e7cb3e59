//! Generates the C header of `src/ffi.rs` with cbindgen.
//!
//! The header is always written to `$OUT_DIR/push_redirect.h`, and to the
//! committed `include/push_redirect.h` when that file is missing or when
//! `PR_WRITE_HEADER=1` (`make header`). `tests/header.rs` compares the two,
//! so a stale or edited committed header fails the tests instead of being
//! silently rewritten.

use std::path::PathBuf;

fn main() {
    // cbindgen reads the whole crate (lib.rs decides what it skips).
    println!("cargo:rerun-if-changed=src");
    println!("cargo:rerun-if-changed=cbindgen.toml");
    println!("cargo:rerun-if-changed=include/push_redirect.h");
    println!("cargo:rerun-if-env-changed=PR_WRITE_HEADER");
    let crate_dir =
        PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| ".".into()));
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").unwrap_or_else(|_| ".".into()));
    let config = match cbindgen::Config::from_file(crate_dir.join("cbindgen.toml")) {
        Ok(c) => c,
        Err(e) => panic!("cbindgen.toml: {e}"),
    };
    let bindings = match cbindgen::Builder::new()
        .with_crate(&crate_dir)
        .with_config(config)
        .generate()
    {
        Ok(b) => b,
        Err(e) => panic!("cbindgen: {e}"),
    };
    bindings.write_to_file(out_dir.join("push_redirect.h"));
    let committed = crate_dir.join("include").join("push_redirect.h");
    if !committed.exists() || std::env::var_os("PR_WRITE_HEADER").is_some_and(|v| v == "1") {
        bindings.write_to_file(committed);
    }
}
