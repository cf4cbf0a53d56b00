//! An upload or a download driven through `dht_core::driver` by a client
//! node that joined a scripted network, fed its peers' answers; the
//! download's index fragment comes from the input (see `dht_fuzz::client`
//! and the crate documentation).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| dht_fuzz::run_client(data));
