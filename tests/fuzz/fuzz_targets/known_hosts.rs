#![no_main]

// Invariants: see `barge::fuzzing::known_hosts` (src/fuzzing.rs).
libfuzzer_sys::fuzz_target!(|data: &[u8]| barge::fuzzing::known_hosts(data));
