#![no_main]

// Invariants: see `barge::fuzzing::relpath` (src/fuzzing.rs).
libfuzzer_sys::fuzz_target!(|data: &[u8]| barge::fuzzing::relpath(data));
