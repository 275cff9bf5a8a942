#![no_main]

// Invariants: see `barge::fuzzing::units` (src/fuzzing.rs).
libfuzzer_sys::fuzz_target!(|data: &[u8]| barge::fuzzing::units(data));
