#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| provchain_fuzz::consensus_tx(data));
