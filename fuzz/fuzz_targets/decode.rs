//! `Packet::decode` on arbitrary bytes (and on them without a tag of the
//! fuzz network's key, when they carry one); round trip of what it accepts
//! (see `dht_fuzz::check_decode`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| dht_fuzz::check_decode(data));
