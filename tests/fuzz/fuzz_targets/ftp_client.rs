#![no_main]

// Invariants: see `barge::fuzzing::ftp_client` (src/fuzzing.rs).
libfuzzer_sys::fuzz_target!(|data: &[u8]| barge::fuzzing::ftp_client(data));
