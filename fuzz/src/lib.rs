//! The fuzz targets of push_redirect (see `fuzz/README.md`).
//!
//! [`harness`] is what each target runs and checks, over plain cases; it
//! is shared with `tests/fuzz_regressions.rs`. [`gen`] turns `arbitrary`
//! input into those cases.

pub mod gen;
#[path = "harness/mod.rs"]
pub mod harness;

use std::path::PathBuf;
use std::sync::OnceLock;

/// `PR_FUZZ_EXPORT=<file>`: the structured targets write the text form of
/// the case they run into `<file>` before running it. `make fuzz` uses it
/// to turn a crash artifact into a regression case.
pub fn export(text: impl FnOnce() -> String) {
    static PATH: OnceLock<Option<PathBuf>> = OnceLock::new();
    if let Some(p) = PATH.get_or_init(|| std::env::var_os("PR_FUZZ_EXPORT").map(PathBuf::from)) {
        if let Err(e) = std::fs::write(p, text()) {
            eprintln!("PR_FUZZ_EXPORT: {}: {e}", p.display());
        }
    }
}

/// Makes every panic abort at once, after the library's own hook has
/// logged it. The library installs a panic hook (routing messages to the
/// host's logger) the first time a handle is made, replacing libFuzzer's
/// abort-on-panic hook: this puts the abort back, for panics caught inside
/// the library too (each is a bug: the C ABI turns it into a fallback
/// value, which the harness might not see).
pub fn abort_on_panic() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        push_redirect::log::install_panic_hook();
        let library = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            library(info);
            eprintln!("{info}");
            std::process::abort();
        }));
    });
}
