//! Prints one example datagram per message in hex, as used in
//! docs/PROTOCOL.md (whose `hex` blocks a test decodes again; the one
//! `hex-prefix` block is a FILEFRAG header that the test completes with a
//! fragment of zeros; a `hex-padded` block decodes but re-encodes without
//! its padding, and a `hex-keyed` block ends with a network key's tag,
//! which `Packet::decode` does not strip).
//!
//! `cargo run -p dht-core --features listing --example protocol_examples`

use dht_core::auth::NetworkKey;
use dht_core::counters::Counters;
use dht_core::fragment::FRAGMENT_SIZE;
use dht_core::wire::{
    encode_filefrag_header, Cookie, Cookies, HashList, Message, MessageKind, NodeStats, Packet,
    PeerList, PieceRef, Source, StoreOutcome, Transmission, UNITS,
};
use dht_core::{FragmentHash, NodeId, PeerAddr, PeerInfo, Shard, MAX_DATAGRAM_SIZE};

fn hex(bytes: &[u8]) -> String {
    let mut out = String::new();
    for (i, b) in bytes.iter().enumerate() {
        if i > 0 {
            out.push(if i % 16 == 0 { '\n' } else { ' ' });
        }
        out.push_str(&format!("{b:02x}"));
    }
    out
}

fn main() {
    let source = Source {
        id: NodeId(0x0102),
        addr: PeerAddr::v4([127, 0, 0, 1], 8000),
        member: true,
        window: 0,
        full: false,
    };
    let hash = FragmentHash([0xAA; 32]);
    let mut peers = PeerList::new();
    let _ = peers.push(PeerInfo { id: NodeId(3), addr: PeerAddr::v4([127, 0, 0, 1], 8001) });
    let _ = peers.push(PeerInfo {
        id: NodeId(0x11),
        addr: PeerAddr::v6([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1], 8002),
    });
    let mut hashes = HashList::new();
    let _ = hashes.push(hash);
    let _ = hashes.push(FragmentHash([0xBB; 32]));
    let mut holders = dht_core::wire::HolderList::new();
    let _ = holders.push(PeerInfo { id: NodeId(0x23), addr: PeerAddr::v4([127, 0, 0, 1], 8003) });
    let mut counters = Counters::default();
    counters.count_received(MessageKind::Ping, 15);
    counters.count_sent(MessageKind::Pong, 15);
    let piece = [0u8; 1024];
    let examples: Vec<(Transmission, Message)> = vec![
        (Transmission::Singlecast, Message::Join { want: 48, shard: None }),
        (Transmission::Singlecast, Message::Join { want: 48, shard: Shard::new(5) }),
        (Transmission::Singlecast, Message::Peers { peers }),
        (Transmission::Randomcast { hops: 4 }, Message::AddMe),
        (Transmission::Singlecast, Message::Ping { nonce: 300 }),
        (Transmission::Broadcast { breadth: 3, uid: 0x1234_5678 }, Message::Ping { nonce: 7 }),
        (Transmission::Singlecast, Message::Pong { nonce: 300, dead: None }),
        (
            Transmission::Singlecast,
            Message::FileFrag { hash, first_unit: 4, data: PieceRef(&piece) },
        ),
        (Transmission::Singlecast, Message::FileGet { hash, want: 0xFFFF, piece_units: 2 }),
        (Transmission::Singlecast, Message::Find { shard: Shard::new(15).unwrap(), nonce: 1 }),
        (Transmission::Singlecast, Message::NewFile { hash, urgent: true, copies: 16 }),
        (
            Transmission::Singlecast,
            Message::Stored {
                hash,
                outcome: StoreOutcome::Stored,
                holders: dht_core::wire::HolderList::new(),
            },
        ),
        (Transmission::Singlecast, Message::NotFound { hash, holders }),
        (Transmission::Singlecast, Message::Leave),
        (Transmission::Singlecast, Message::StatsRequest { nonce: 2, about: None }),
        (
            Transmission::Singlecast,
            Message::Stats {
                nonce: 2,
                stats: NodeStats {
                    held: 17,
                    capacity: 4096,
                    neighbors: 75,
                    joined: true,
                    knows: false,
                    uptime: 3725,
                    counters,
                },
            },
        ),
        (Transmission::Singlecast, Message::Holdings { hashes }),
        (
            Transmission::Broadcast { breadth: 2, uid: 0x55 },
            Message::Dead {
                peer: PeerInfo { id: NodeId(0x23), addr: PeerAddr::v4([127, 0, 0, 1], 8003) },
            },
        ),
        (Transmission::Singlecast, Message::ListRequest { nonce: 0x42, from: 0, files_only: true }),
        (Transmission::Singlecast, Message::List { nonce: 0x42, page: list_page() }),
    ];
    let mut buf = [0u8; MAX_DATAGRAM_SIZE];
    // Every example carries cookies as between two nodes that have spoken
    // before: the receiver's cookie echoed, and one granted to it.
    let cookies = Cookies {
        echo: Some(Cookie([0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88])),
        grant: Some(Cookie([0x99, 0xAA, 0xBB, 0xCC, 0xDD, 0xEE, 0xFF, 0x00])),
    };
    for (transmission, message) in examples {
        let kind = message.kind().name();
        let packet = Packet { transmission, source, cookies, message };
        let len = packet.encode(&mut buf).unwrap_or(0);
        println!("## {kind} {transmission:?} ({len} bytes)\n```hex\n{}\n```\n", hex(&buf[..len]));
    }
    // A whole fragment in one FILEFRAG (a loopback datagram): only its
    // header is shown, as a `hex-prefix` block that the test completes
    // with 8192 zero bytes. The encoder that copies a piece straight from
    // the store writes the same header.
    let whole = [0u8; FRAGMENT_SIZE];
    let packet = Packet {
        transmission: Transmission::Singlecast,
        source,
        cookies,
        message: Message::FileFrag { hash, first_unit: 0, data: PieceRef(&whole) },
    };
    let len = packet.encode(&mut buf).unwrap_or(0);
    let head = len - FRAGMENT_SIZE;
    let mut header = [0u8; MAX_DATAGRAM_SIZE];
    let in_place = encode_filefrag_header(
        Transmission::Singlecast,
        source,
        cookies,
        &hash,
        0,
        UNITS,
        &mut header,
    );
    assert_eq!(in_place, Ok(head));
    assert_eq!(&header[..head], &buf[..head]);
    println!(
        "## FILEFRAG, a whole fragment: the first {head} of {len} bytes\n```hex-prefix\n{}\n```\n",
        hex(&buf[..head])
    );
    let first = Packet {
        transmission: Transmission::Singlecast,
        source,
        cookies: Cookies { echo: None, grant: Some(Cookie([0x99; 8])) },
        message: Message::Join { want: 48, shard: None },
    };
    let len = first.encode_padded(&mut buf, dht_core::node::UNPROVEN_MIN).unwrap_or(0);
    println!(
        "## JOIN, first contact, padded ({len} bytes)\n```hex-padded\n{}\n```\n",
        hex(&buf[..len])
    );
    let retry = Packet {
        transmission: Transmission::Singlecast,
        source,
        cookies: Cookies { echo: None, grant: Some(Cookie([0x42; 8])) },
        message: Message::Retry,
    };
    let len = retry.encode(&mut buf).unwrap_or(0);
    println!("## RETRY ({len} bytes)\n```hex\n{}\n```\n", hex(&buf[..len]));
    let key = NetworkKey::new(b"example network key");
    let ping = Packet {
        transmission: Transmission::Singlecast,
        source,
        cookies,
        message: Message::Ping { nonce: 300 },
    };
    let len = ping.encode(&mut buf).unwrap_or(0);
    let len = key.seal(&mut buf, len).unwrap_or(0);
    println!(
        "## PING with the key \"example network key\" ({len} bytes)\n```hex-keyed\n{}\n```\n",
        hex(&buf[..len])
    );
}

/// A LIST page: one file's root found among the first fragments read,
/// more to read from position 64.
fn list_page() -> dht_core::wire::ListPage {
    use dht_core::wire::{ListPage, Listed, ListedKind};
    let mut page = ListPage { held: 300, next: Some(64), ..ListPage::default() };
    let _ = page.entries.push(Listed {
        hash: FragmentHash([0xCC; 32]),
        kind: ListedKind::File,
        copies: 3,
        size: 10_000,
        name: "notes.txt".try_into().unwrap_or_default(),
    });
    page
}
