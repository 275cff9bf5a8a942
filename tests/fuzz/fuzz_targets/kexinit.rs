#![no_main]

// Invariants: see `barge::fuzzing::kexinit` (src/fuzzing.rs).
libfuzzer_sys::fuzz_target!(|data: &[u8]| barge::fuzzing::kexinit(data));
