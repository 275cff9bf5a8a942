#![no_main]

// Invariants: see `barge_fuzz::listing_mlsd` (src/lib.rs).
libfuzzer_sys::fuzz_target!(|data: &[u8]| barge_fuzz::listing_mlsd(data));
