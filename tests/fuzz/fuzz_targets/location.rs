#![no_main]

// Invariants: see `barge::fuzzing::location` (src/fuzzing.rs).
libfuzzer_sys::fuzz_target!(|data: &[u8]| barge::fuzzing::location(data));
