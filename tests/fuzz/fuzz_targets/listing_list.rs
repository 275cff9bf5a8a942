#![no_main]

// Invariants: see `barge::fuzzing::listing_list` (src/fuzzing.rs).
libfuzzer_sys::fuzz_target!(|data: &[u8]| barge::fuzzing::listing_list(data));
