#![no_main]

// Invariants: see `barge_fuzz::kexinit` (src/lib.rs).
libfuzzer_sys::fuzz_target!(|data: &[u8]| barge_fuzz::kexinit(data));
