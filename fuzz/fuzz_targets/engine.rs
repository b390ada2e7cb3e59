//! The decision engine on structured scenarios (see `harness::engine`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use pr_fuzz::gen::EngineInput;

fuzz_target!(|input: EngineInput| {
    pr_fuzz::harness::tolerate_known_bugs();
    let case = input.build();
    pr_fuzz::export(|| case.to_text());
    pr_fuzz::harness::engine::run(&case);
});
