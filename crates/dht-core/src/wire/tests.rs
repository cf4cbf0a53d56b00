//! Fixed byte vectors and round trips of the wire format.

extern crate std;
use super::*;
use crate::config::MAX_DATAGRAM_SIZE;
use crate::counters::Counters;
use crate::id::Shard;
use std::vec::Vec;

fn source() -> Source {
    Source {
        id: NodeId(0x0102),
        addr: PeerAddr::v4([127, 0, 0, 1], 8000),
        member: true,
        window: 0,
        full: false,
    }
}

fn encode(packet: &Packet<'_>) -> Vec<u8> {
    let mut buf = [0u8; MAX_DATAGRAM_SIZE];
    let len = packet.encode(&mut buf).unwrap();
    buf[..len].to_vec()
}

fn single(message: Message<'_>) -> Packet<'_> {
    Packet {
        transmission: Transmission::Singlecast,
        source: source(),
        cookies: Cookies::NONE,
        message,
    }
}

/// Header bytes shared by the fixed vectors below: version, singlecast,
/// id 0x0102 as varint (0x82 0x02), V4, 127.0.0.1, port 8000 as varint
/// (0xC0 0x3E), member, window.
const HEAD: [u8; 11] = [0xD2, 0x00, 0x82, 0x02, 0x00, 127, 0, 0, 1, 0xC0, 0x3E];

/// Where the message starts in these vectors.
const TAG_AT: usize = 16;

fn with_head(tail: &[u8]) -> Vec<u8> {
    let mut v = HEAD.to_vec();
    v.push(0x01); // member = true
    v.push(0x00); // window = 0 (no limit)
    v.push(0x00); // full = false
    v.push(0x00); // no echo
    v.push(0x00); // no grant
    assert_eq!(v.len(), TAG_AT);
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
    check(Message::Pong { nonce: 300, dead: None }, &[0x04, 0xAC, 0x02, 0x00]);
    let dead = Some(PeerAddr::v4([127, 0, 0, 1], 8001));
    check(
        Message::Pong { nonce: 300, dead },
        &[0x04, 0xAC, 0x02, 0x01, 0x00, 127, 0, 0, 1, 0xC1, 0x3E],
    );

    let mut tail = Vec::from([0x06]);
    tail.extend_from_slice(&hash_bytes);
    tail.extend_from_slice(&[0xFF, 0xFF, 0x03, 0x02]); // all 16 units, 2-unit pieces
    check(Message::FileGet { hash, want: 0xFFFF, piece_units: 2 }, &tail);

    check(Message::Find { shard: Shard::new(15).unwrap(), nonce: 1 }, &[0x07, 0x0F, 0x01]);

    let mut tail = Vec::from([0x08]);
    tail.extend_from_slice(&hash_bytes);
    tail.push(0x01); // urgent
    tail.push(0x10); // 16 copies
    check(Message::NewFile { hash, urgent: true, copies: 16 }, &tail);

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

    check(Message::Retry, &[0x10]);

    let piece = [0x5Au8; 2 * UNIT];
    let mut tail = Vec::from([0x05]); // FILEFRAG
    tail.append(&mut hash_bytes);
    tail.push(0x04); // from unit 4
    tail.extend_from_slice(&[0x80, 0x08]); // 1024 bytes
    tail.extend_from_slice(&piece);
    check(Message::FileFrag { hash, first_unit: 4, data: PieceRef(&piece) }, &tail);
}

#[test]
fn cookies_follow_the_source() {
    let mut packet = single(Message::AddMe);
    packet.cookies = Cookies { echo: Some(Cookie([1; 8])), grant: Some(Cookie([2; 8])) };
    let bytes = encode(&packet);
    let mut cookies = Vec::from([0x01]);
    cookies.extend_from_slice(&[1; 8]);
    cookies.push(0x01);
    cookies.extend_from_slice(&[2; 8]);
    assert_eq!(&bytes[TAG_AT - 2..TAG_AT + 16], &cookies[..]);
    assert_eq!(Packet::decode(&bytes).unwrap(), packet);
}

#[test]
fn zero_padding_is_accepted_and_nothing_else() {
    let packet = single(Message::Ping { nonce: 7 });
    let mut buf = [0u8; 200];
    let len = packet.encode_padded(&mut buf, 96).unwrap();
    assert_eq!(len, 96);
    assert_eq!(Packet::decode(&buf[..len]).unwrap(), packet);
    buf[95] = 1;
    assert_eq!(Packet::decode(&buf[..len]), Err(DecodeError::TrailingBytes));
}

#[test]
fn fields_that_do_not_fit_together_are_refused() {
    let hash = FragmentHash([1; 32]);
    let piece = [0u8; 4 * UNIT];
    let past_the_end = single(Message::FileFrag { hash, first_unit: 14, data: PieceRef(&piece) });
    assert_eq!(Packet::decode(&encode(&past_the_end)), Err(DecodeError::Inconsistent));
    let wants_nothing = single(Message::FileGet { hash, want: 0, piece_units: 1 });
    assert_eq!(Packet::decode(&encode(&wants_nothing)), Err(DecodeError::Inconsistent));
    let odd_pieces = single(Message::FileGet { hash, want: 1, piece_units: 3 });
    assert_eq!(Packet::decode(&encode(&odd_pieces)), Err(DecodeError::Inconsistent));
    // A piece that is not whole units does not decode at all.
    let mut bytes = with_head(&[0x05]);
    bytes.extend_from_slice(&[1; 32]);
    bytes.extend_from_slice(&[0x00, 100]);
    bytes.extend_from_slice(&[0; 100]);
    assert_eq!(Packet::decode(&bytes), Err(DecodeError::Malformed));
}

#[test]
fn stats_round_trip() {
    let mut counters = Counters::default();
    counters.count_sent(MessageKind::Ping, 20);
    let stats = NodeStats {
        held: 3,
        capacity: 100,
        neighbors: 17,
        joined: true,
        knows: false,
        uptime: 70,
        counters,
    };
    let packet = single(Message::Stats { nonce: 9, stats });
    let bytes = encode(&packet);
    assert_eq!(&bytes[TAG_AT..TAG_AT + 2], &[0x0D, 0x09]);
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
fn longest_filefrag_fits_the_datagram_limit_and_its_overhead() {
    let fragment = [0u8; FRAGMENT_SIZE];
    let packet = Packet {
        transmission: Transmission::Singlecast,
        source: Source {
            id: NodeId(u64::MAX),
            addr: PeerAddr::v6([0xFF; 16], u16::MAX),
            member: true,
            window: u8::MAX,
            full: true,
        },
        cookies: Cookies { echo: Some(Cookie([0xFF; 8])), grant: Some(Cookie([0xFF; 8])) },
        message: Message::FileFrag {
            hash: FragmentHash([0xFF; 32]),
            first_unit: 0,
            data: PieceRef(&fragment),
        },
    };
    let len = encode(&packet).len() + crate::auth::TAG_LEN;
    assert!(len <= MAX_DATAGRAM_SIZE, "{len}");
    assert!(len <= FRAGMENT_SIZE + crate::node::FILEFRAG_OVERHEAD, "{len}");
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
    let cookies = Cookies { echo: None, grant: Some(Cookie([9; 8])) };
    for (first_unit, units) in [(0u8, 16usize), (4, 2), (15, 1)] {
        let data = &fragment[..units * UNIT];
        let packet = Packet {
            transmission: Transmission::Singlecast,
            source: source(),
            cookies,
            message: Message::FileFrag { hash, first_unit, data: PieceRef(data) },
        };
        let full = encode(&packet);
        let mut buf = [0u8; MAX_DATAGRAM_SIZE];
        let head = encode_filefrag_header(
            Transmission::Singlecast,
            source(),
            cookies,
            &hash,
            first_unit,
            units,
            &mut buf,
        )
        .unwrap();
        buf[head..head + data.len()].copy_from_slice(data);
        assert_eq!(&buf[..head + data.len()], &full[..]);
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
    long.push(1);
    assert_eq!(Packet::decode(&long), Err(DecodeError::TrailingBytes));
    let mut unknown = bytes.clone();
    unknown[TAG_AT] = 0x7F; // no such message
    assert_eq!(Packet::decode(&unknown), Err(DecodeError::Malformed));
}

#[test]
fn piece_of_wrong_length_is_malformed() {
    let fragment = [1u8; FRAGMENT_SIZE];
    let hash = FragmentHash([0; 32]);
    let bytes =
        encode(&single(Message::FileFrag { hash, first_unit: 0, data: PieceRef(&fragment) }));
    // Claim 8191 bytes (0xFF 0x3F) and drop one.
    let mut short = bytes.clone();
    let at = TAG_AT + 1 + 32 + 1;
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

#[cfg(feature = "listing")]
#[test]
fn a_full_list_page_fits_an_ethernet_datagram() {
    use crate::config::{ETHERNET_DATAGRAM, INDEX_NAME_SIZE, MAX_LISTED};
    use crate::wire::{ListPage, Listed, ListedKind};
    let mut page = ListPage { held: u32::MAX, next: Some(u32::MAX), ..ListPage::default() };
    let mut name = heapless::String::new();
    while name.len() < INDEX_NAME_SIZE {
        name.push('x').unwrap();
    }
    let entry = Listed {
        hash: FragmentHash([0xFF; 32]),
        kind: ListedKind::CodedFile,
        copies: 255,
        size: u64::MAX,
        name,
    };
    while page.entries.push(entry.clone()).is_ok() {}
    assert_eq!(page.entries.len(), MAX_LISTED);
    let packet = Packet {
        transmission: Transmission::Singlecast,
        source: Source {
            id: NodeId(u64::MAX),
            addr: PeerAddr::v6([0xFF; 16], 65535),
            member: true,
            window: 255,
            full: true,
        },
        cookies: Cookies { echo: Some(Cookie([1; 8])), grant: Some(Cookie([2; 8])) },
        message: Message::List { nonce: u64::MAX, page },
    };
    let bytes = encode(&packet);
    // With the 16-byte tag of a keyed network.
    assert!(bytes.len() + 16 <= usize::from(ETHERNET_DATAGRAM), "{} bytes", bytes.len());
    assert_eq!(Packet::decode(&bytes).unwrap(), packet);
    // A name longer than an index can hold does not decode.
    let long = encode(&packet);
    let at = long.windows(INDEX_NAME_SIZE + 1).position(|w| w[0] == 29 && w[1] == b'x').unwrap();
    let mut longer = long.clone();
    longer[at] = 30;
    longer.insert(at + 1, b'x');
    assert!(Packet::decode(&longer).is_err());
}
