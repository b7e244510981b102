#![no_main]
//! Fuzz target: see `vallum_ledger::fuzzing::sealed`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| vallum_ledger::fuzzing::sealed(data));
