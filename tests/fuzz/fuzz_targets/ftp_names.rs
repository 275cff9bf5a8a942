#![no_main]

// Invariants: see `barge_fuzz::ftp_names` (src/lib.rs).
libfuzzer_sys::fuzz_target!(|data: &[u8]| barge_fuzz::ftp_names(data));
