#![no_main]

// Invariants: see `barge::fuzzing::listing_mlsd` (src/fuzzing.rs).
libfuzzer_sys::fuzz_target!(|data: &[u8]| barge::fuzzing::listing_mlsd(data));
