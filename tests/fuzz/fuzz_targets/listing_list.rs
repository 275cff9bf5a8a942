#![no_main]

// Invariants: see `barge_fuzz::listing_list` (src/lib.rs).
libfuzzer_sys::fuzz_target!(|data: &[u8]| barge_fuzz::listing_list(data));
