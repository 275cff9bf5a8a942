#![no_main]

// Invariants: see `barge::fuzzing::ftp_reply` (src/fuzzing.rs).
libfuzzer_sys::fuzz_target!(|data: &[u8]| barge::fuzzing::ftp_reply(data));
