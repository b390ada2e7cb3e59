//! Raw bytes as a SIP reply: status line, headers, every Contact value and
//! its URI (see `harness::reply`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| pr_fuzz::harness::reply::run(data));
