#![no_main]

// Invariants: see `barge_fuzz::location` (src/lib.rs).
libfuzzer_sys::fuzz_target!(|data: &[u8]| barge_fuzz::location(data));
