//! A node with a RAM store fed datagrams, answers to what it sent, echoes,
//! commands and clock steps; no panic, the wake-up invariant, only
//! decodable datagrams out (see `dht_fuzz::run_node`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| dht_fuzz::run_node(data));
