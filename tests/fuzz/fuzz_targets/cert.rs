#![no_main]

// Invariants: see `barge::fuzzing::cert` (src/fuzzing.rs).
libfuzzer_sys::fuzz_target!(|data: &[u8]| barge::fuzzing::cert(data));
