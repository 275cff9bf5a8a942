#![no_main]

// Invariants: see `barge::fuzzing::ssh_config` (src/fuzzing.rs).
libfuzzer_sys::fuzz_target!(|data: &[u8]| barge::fuzzing::ssh_config(data));
