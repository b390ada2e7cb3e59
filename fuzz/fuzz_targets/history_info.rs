//! Raw bytes as a request's History-Info rows and Privacy header, through
//! the parser and three rounds of the engine (see `harness::history`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| pr_fuzz::harness::history::run(data));
