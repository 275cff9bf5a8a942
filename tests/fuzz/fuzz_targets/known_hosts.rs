#![no_main]

// Invariants: see `barge_fuzz::known_hosts` (src/lib.rs).
libfuzzer_sys::fuzz_target!(|data: &[u8]| barge_fuzz::known_hosts(data));
