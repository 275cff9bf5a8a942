#![no_main]

// Invariants: see `barge_fuzz::ssh_config` (src/lib.rs).
libfuzzer_sys::fuzz_target!(|data: &[u8]| barge_fuzz::ssh_config(data));
