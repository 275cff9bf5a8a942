#![no_main]

// Invariants: see `barge_fuzz::netrc` (src/lib.rs).
libfuzzer_sys::fuzz_target!(|data: &[u8]| barge_fuzz::netrc(data));
