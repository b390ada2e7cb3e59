//! The extern "C" functions with arbitrary arguments (see `harness::c_abi`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use pr_fuzz::gen::CAbiInput;

fuzz_target!(|input: CAbiInput| {
    pr_fuzz::abort_on_panic();
    pr_fuzz::harness::tolerate_known_bugs();
    let case = input.build();
    pr_fuzz::export(|| case.to_text());
    pr_fuzz::harness::c_abi::run(&case);
});
