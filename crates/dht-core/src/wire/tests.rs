//! Fixed byte vectors and round trips of the wire format.

extern crate std;
use super::*;
use crate::config::MAX_DATAGRAM_SIZE;
use crate::counters::Counters;
use crate::id::Shard;
use std::vec::Vec;

fn source() -> Source {
    Source { id: NodeId(0x0102), addr: PeerAddr::v4([127, 0, 0, 1], 8000), member: true, window: 0 }
}

fn encode(packet: &Packet<'_>) -> Vec<u8> {
    let mut buf = [0u8; MAX_DATAGRAM_SIZE];
    let len = packet.encode(&mut buf).unwrap();
    buf[..len].to_vec()
}

fn single(message: Message<'_>) -> Packet<'_> {
    Packet { transmission: Transmission::Singlecast, source: source(), message }
}

/// Header bytes shared by the fixed vectors below: version, singlecast,
/// id 0x0102 as varint (0x82 0x02), V4, 127.0.0.1, port 8000 as varint
/// (0xC0 0x3E), member, window.
const HEAD: [u8; 11] = [0xD2, 0x00, 0x82, 0x02, 0x00, 127, 0, 0, 1, 0xC0, 0x3E];

fn with_head(tail: &[u8]) -> Vec<u8> {
    let mut v = HEAD.to_vec();
    v.push(0x01); // member = true
    v.push(0x00); // window = 0 (no limit)
    v.extend_from_slice(tail);
    v
}

fn check(message: Message<'_>, tail: &[u8]) {
    let packet = single(message);
    let bytes = encode(&packet);
    assert_eq!(bytes, with_head(tail), "{:?}", packet.message.kind());
    assert_eq!(Packet::decode(&bytes).unwrap(), packet);
}

#[test]
fn fixed_vectors_for_every_message() {
    let hash = FragmentHash([0xAA; 32]);
    let mut hash_bytes = Vec::from([0xAA; 32]);

    check(Message::Join { want: 8, shard: None }, &[0x00, 0x08, 0x00]);
    check(Message::Join { want: 8, shard: Shard::new(5) }, &[0x00, 0x08, 0x01, 0x05]);

    let mut peers = PeerList::new();
    peers.push(PeerInfo { id: NodeId(3), addr: PeerAddr::v4([127, 0, 0, 1], 8001) }).unwrap();
    check(Message::Peers { peers }, &[0x01, 0x01, 0x03, 0x00, 127, 0, 0, 1, 0xC1, 0x3E]);

    check(Message::AddMe, &[0x02]);
    check(Message::Ping { nonce: 300 }, &[0x03, 0xAC, 0x02]);
    check(Message::Pong { nonce: 300 }, &[0x04, 0xAC, 0x02]);

    let mut tail = Vec::from([0x06]);
    tail.extend_from_slice(&hash_bytes);
    check(Message::FileGet { hash }, &tail);

    check(Message::Find { shard: Shard::new(15).unwrap(), nonce: 1 }, &[0x07, 0x0F, 0x01]);

    let mut tail = Vec::from([0x08]);
    tail.extend_from_slice(&hash_bytes);
    check(Message::NewFile { hash }, &tail);

    let mut tail = Vec::from([0x09]);
    tail.extend_from_slice(&hash_bytes);
    tail.push(0x02); // Full
    tail.push(0x00); // no holders named
    check(Message::Stored { hash, outcome: StoreOutcome::Full, holders: HolderList::new() }, &tail);

    let mut tail = Vec::from([0x0A]);
    tail.extend_from_slice(&hash_bytes);
    tail.push(0x00); // no suggested holders
    check(Message::NotFound { hash, holders: HolderList::new() }, &tail);

    check(Message::Leave, &[0x0B]);
    let mut hashes = HashList::new();
    hashes.push(hash).unwrap();
    let mut tail = Vec::from([0x0E, 0x01]);
    tail.extend_from_slice(&[0xAA; 32]);
    check(Message::Holdings { hashes }, &tail);
    let peer = PeerInfo { id: NodeId(3), addr: PeerAddr::v4([127, 0, 0, 1], 8001) };
    check(Message::Dead { peer }, &[0x0F, 0x03, 0x00, 127, 0, 0, 1, 0xC1, 0x3E]);
    check(Message::StatsRequest { nonce: 2, about: None }, &[0x0C, 0x02, 0x00]);

    let fragment = [0x5Au8; FRAGMENT_SIZE];
    let mut tail = Vec::from([0x05, 0x01]); // FILEFRAG, Answer
    tail.append(&mut hash_bytes);
    tail.extend_from_slice(&[0x80, 0x40]);
    tail.extend_from_slice(&fragment);
    check(Message::FileFrag { mode: FragMode::Answer, hash, data: FragmentRef(&fragment) }, &tail);
}

#[test]
fn stats_round_trip() {
    let mut counters = Counters::default();
    counters.count_sent(MessageKind::Ping, 20);
    let stats =
        NodeStats { held: 3, capacity: 100, neighbors: 17, joined: true, knows: false, counters };
    let packet = single(Message::Stats { nonce: 9, stats });
    let bytes = encode(&packet);
    assert_eq!(&bytes[13..15], &[0x0D, 0x09]);
    assert_eq!(Packet::decode(&bytes).unwrap(), packet);
}

#[test]
fn transmission_headers() {
    let mut packet = single(Message::AddMe);
    packet.transmission = Transmission::Randomcast { hops: 3 };
    assert_eq!(&encode(&packet)[1..3], &[0x01, 0x03]);
    packet.transmission = Transmission::Broadcast { breadth: 2, uid: 1 << 63 };
    let bytes = encode(&packet);
    assert_eq!(
        &bytes[1..13],
        &[0x02, 0x02, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01]
    );
    assert_eq!(Packet::decode(&bytes).unwrap(), packet);
}

#[test]
fn longest_filefrag_fits_the_datagram_limit() {
    let fragment = [0u8; FRAGMENT_SIZE];
    let packet = Packet {
        transmission: Transmission::Broadcast { breadth: 255, uid: u64::MAX },
        source: Source {
            id: NodeId(u64::MAX),
            addr: PeerAddr::v6([0xFF; 16], u16::MAX),
            member: true,
            window: u8::MAX,
        },
        message: Message::FileFrag {
            mode: FragMode::Store,
            hash: FragmentHash([0xFF; 32]),
            data: FragmentRef(&fragment),
        },
    };
    let len = encode(&packet).len();
    assert_eq!(len, 8273);
    assert!(len <= MAX_DATAGRAM_SIZE);
}

#[test]
fn full_peer_list_fits_the_datagram_limit() {
    let mut peers = PeerList::new();
    while peers
        .push(PeerInfo { id: NodeId(u64::MAX), addr: PeerAddr::v6([0xFF; 16], u16::MAX) })
        .is_ok()
    {}
    assert!(encode(&single(Message::Peers { peers })).len() <= MAX_DATAGRAM_SIZE);
}

#[test]
fn full_hash_list_fits_the_datagram_limit() {
    let mut hashes = HashList::new();
    while hashes.push(FragmentHash([0xFF; 32])).is_ok() {}
    assert!(encode(&single(Message::Holdings { hashes })).len() <= MAX_DATAGRAM_SIZE);
}

#[test]
fn in_place_header_matches_full_encoding() {
    let fragment = [7u8; FRAGMENT_SIZE];
    let hash = FragmentHash([3; 32]);
    for transmission in [
        Transmission::Singlecast,
        Transmission::Randomcast { hops: 200 },
        Transmission::Broadcast { breadth: 3, uid: 0xFFFF_FFFF },
    ] {
        let packet = Packet {
            transmission,
            source: source(),
            message: Message::FileFrag {
                mode: FragMode::Store,
                hash,
                data: FragmentRef(&fragment),
            },
        };
        let full = encode(&packet);
        let mut buf = [0u8; MAX_DATAGRAM_SIZE];
        let head = encode_filefrag_header(transmission, source(), FragMode::Store, &hash, &mut buf)
            .unwrap();
        buf[head..head + FRAGMENT_SIZE].copy_from_slice(&fragment);
        assert_eq!(&buf[..head + FRAGMENT_SIZE], &full[..]);
    }
}

#[test]
fn decode_rejects_what_it_must() {
    let bytes = encode(&single(Message::Ping { nonce: 1 }));
    assert_eq!(Packet::decode(&[]), Err(DecodeError::Empty));
    let mut wrong = bytes.clone();
    wrong[0] = 0xD1;
    assert_eq!(Packet::decode(&wrong), Err(DecodeError::BadVersion(0xD1)));
    for cut in 1..bytes.len() {
        assert_eq!(Packet::decode(&bytes[..cut]), Err(DecodeError::Malformed), "cut {cut}");
    }
    let mut long = bytes.clone();
    long.push(0);
    assert_eq!(Packet::decode(&long), Err(DecodeError::TrailingBytes));
    let mut unknown = bytes.clone();
    unknown[13] = 0x7F; // no such message
    assert_eq!(Packet::decode(&unknown), Err(DecodeError::Malformed));
}

#[test]
fn fragment_of_wrong_length_is_malformed() {
    let fragment = [1u8; FRAGMENT_SIZE];
    let bytes = encode(&single(Message::FileFrag {
        mode: FragMode::Store,
        hash: FragmentHash([0; 32]),
        data: FragmentRef(&fragment),
    }));
    // Claim 8191 bytes (0xFF 0x3F) and drop one.
    let mut short = bytes.clone();
    let at = 13 + 2 + 32;
    assert_eq!(&short[at..at + 2], &[0x80, 0x40]);
    short[at] = 0xFF;
    short[at + 1] = 0x3F;
    short.pop();
    assert_eq!(Packet::decode(&short), Err(DecodeError::Malformed));
}

#[test]
fn too_many_peers_is_malformed() {
    let mut bytes = with_head(&[0x01, 65]);
    for _ in 0..65 {
        bytes.extend_from_slice(&[0x03, 0x00, 127, 0, 0, 1, 0xC1, 0x3E]);
    }
    assert_eq!(Packet::decode(&bytes), Err(DecodeError::Malformed));
}
