//! Writes `include/push_redirect.h` from the C ABI in `src/ffi.rs`.
//!
//! The header is committed; `tests/header.rs` fails when it is stale. Set
//! `PR_SKIP_CBINDGEN=1` to build without touching it.

use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=src/ffi.rs");
    println!("cargo:rerun-if-changed=src/log.rs");
    println!("cargo:rerun-if-changed=cbindgen.toml");
    println!("cargo:rerun-if-env-changed=PR_SKIP_CBINDGEN");
    if std::env::var_os("PR_SKIP_CBINDGEN").is_some() {
        return;
    }
    let crate_dir =
        PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| ".".into()));
    let config = match cbindgen::Config::from_file(crate_dir.join("cbindgen.toml")) {
        Ok(c) => c,
        Err(e) => panic!("cbindgen.toml: {e}"),
    };
    let out = crate_dir.join("include").join("push_redirect.h");
    match cbindgen::Builder::new()
        .with_crate(&crate_dir)
        .with_config(config)
        .generate()
    {
        // Writes only when the content changes, so the file's mtime is stable.
        Ok(bindings) => {
            bindings.write_to_file(out);
        }
        Err(e) => panic!("cbindgen: {e}"),
    }
}
