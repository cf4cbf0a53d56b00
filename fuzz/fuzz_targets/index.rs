//! `IndexFragment::decode` on arbitrary bytes; what it accepts must
//! re-encode byte for byte (see `dht_fuzz::check_index`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| dht_fuzz::check_index(data));
