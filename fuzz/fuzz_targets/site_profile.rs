#![no_main]
//! Fuzz target: see `vallum_core::residency::fuzzing::site_profile`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| vallum_core::residency::fuzzing::site_profile(data));
