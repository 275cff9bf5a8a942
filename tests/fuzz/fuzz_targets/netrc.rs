#![no_main]

// Invariants: see `barge::fuzzing::netrc` (src/fuzzing.rs).
libfuzzer_sys::fuzz_target!(|data: &[u8]| barge::fuzzing::netrc(data));
