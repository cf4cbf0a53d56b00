//! Replays the committed seed corpus through the checks of the fuzz
//! targets, without libFuzzer: `cargo test --manifest-path fuzz/Cargo.toml`.

use std::fs;
use std::path::Path;

fn replay(target: &str, check: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus").join(target);
    let mut seeds = 0;
    for entry in fs::read_dir(&dir).expect("the corpus directory exists") {
        let path = entry.expect("a directory entry").path();
        check(&fs::read(&path).expect("a readable seed"));
        seeds += 1;
    }
    assert!(seeds > 0, "no seeds in {}", dir.display());
}

#[test]
fn decode_seeds() {
    replay("decode", dht_fuzz::check_decode);
}

#[test]
fn index_seeds() {
    replay("index", dht_fuzz::check_index);
}

#[test]
fn node_seeds() {
    replay("node", dht_fuzz::run_node);
}

#[test]
fn client_seeds() {
    replay("client", dht_fuzz::run_client);
}

/// The decode and index seeds are valid (a sealed seed once its tag is
/// removed), so fuzzing starts on the accepting side of the decoders
/// (rerun the generator after changing the wire or the index:
/// `cargo run --manifest-path fuzz/Cargo.toml --example corpus`).
#[test]
fn every_seed_decodes_where_it_should() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    let key = dht_fuzz::network_key();
    let mut sealed = 0;
    for entry in fs::read_dir(dir.join("decode")).expect("the decode corpus") {
        let bytes = fs::read(entry.expect("an entry").path()).expect("a seed");
        let body = match key.open(&bytes) {
            Some(body) => {
                sealed += 1;
                body
            }
            None => &bytes[..],
        };
        assert!(dht_core::wire::Packet::decode(body).is_ok());
    }
    assert!(sealed > 0, "a sealed datagram among the decode seeds");
    for entry in fs::read_dir(dir.join("index")).expect("the index corpus") {
        let mut bytes = fs::read(entry.expect("an entry").path()).expect("a seed");
        bytes.resize(dht_core::FRAGMENT_SIZE, 0);
        let array: &[u8; dht_core::FRAGMENT_SIZE] = bytes.as_slice().try_into().expect("8 KB");
        assert!(dht_core::IndexFragment::decode(array).is_ok());
    }
}
