//! Every example datagram in docs/PROTOCOL.md decodes, and re-encodes to
//! the same bytes; the truncated FILEFRAG example matches the encoder's
//! header.

use dht_core::wire::Packet;
use dht_core::MAX_DATAGRAM_SIZE;

fn blocks(doc: &str, tag: &str) -> Vec<Vec<u8>> {
    let fence = format!("```{tag}\n");
    let mut out = Vec::new();
    let mut rest = doc;
    while let Some(start) = rest.find(&fence) {
        let body = &rest[start + fence.len()..];
        let end = body.find("```").expect("closed block");
        let bytes = body[..end]
            .split_whitespace()
            .map(|b| u8::from_str_radix(b, 16).expect("hex byte"))
            .collect();
        out.push(bytes);
        rest = &body[end..];
    }
    out
}

#[test]
fn every_documented_datagram_round_trips() {
    let doc = include_str!("../../../docs/PROTOCOL.md");
    let examples = blocks(doc, "hex");
    assert!(examples.len() >= 17, "found {} examples", examples.len());
    for bytes in examples {
        let packet = Packet::decode(&bytes).unwrap_or_else(|e| panic!("{e}: {bytes:02x?}"));
        let mut buf = [0u8; MAX_DATAGRAM_SIZE];
        let len = packet.encode(&mut buf).unwrap();
        assert_eq!(&buf[..len], &bytes[..]);
    }
}

#[test]
fn documented_filefrag_prefix_matches_the_encoder() {
    let doc = include_str!("../../../docs/PROTOCOL.md");
    let prefixes = blocks(doc, "hex-prefix");
    assert_eq!(prefixes.len(), 1);
    let mut full = prefixes[0].clone();
    full.extend_from_slice(&[0u8; 8192]);
    let packet = Packet::decode(&full).expect("prefix + 8192 zero bytes is a FILEFRAG");
    assert_eq!(packet.message.kind(), dht_core::wire::MessageKind::FileFrag);
}
