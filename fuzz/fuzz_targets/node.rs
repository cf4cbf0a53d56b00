//! A node with a RAM store fed datagrams, answers of scripted peers that
//! echo its cookies (on an open or a keyed network), echoes, commands and
//! clock steps; no panic, the wake-up invariant, only decodable datagrams
//! within `max_datagram` out, no amplification towards unproven senders
//! (see `dht_fuzz::node` and the crate documentation).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| dht_fuzz::run_node(data));
