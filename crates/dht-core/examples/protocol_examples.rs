//! Prints one example datagram per message in hex, as used in
//! docs/PROTOCOL.md (whose hex blocks a test decodes again).
//!
//! `cargo run -p dht-core --example protocol_examples`

use dht_core::counters::Counters;
use dht_core::wire::{
    FragMode, FragmentRef, HashList, Message, MessageKind, NodeStats, Packet, PeerList, Source,
    StoreOutcome, Transmission,
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
    let fragment = [0u8; 8192];
    let examples: Vec<(Transmission, Message)> = vec![
        (Transmission::Singlecast, Message::Join { want: 48, shard: None }),
        (Transmission::Singlecast, Message::Join { want: 48, shard: Shard::new(5) }),
        (Transmission::Singlecast, Message::Peers { peers }),
        (Transmission::Randomcast { hops: 4 }, Message::AddMe),
        (Transmission::Singlecast, Message::Ping { nonce: 300 }),
        (Transmission::Broadcast { breadth: 3, uid: 0x1234_5678 }, Message::Ping { nonce: 7 }),
        (Transmission::Singlecast, Message::Pong { nonce: 300 }),
        (
            Transmission::Singlecast,
            Message::FileFrag { mode: FragMode::Store, hash, data: FragmentRef(&fragment) },
        ),
        (Transmission::Singlecast, Message::FileGet { hash }),
        (Transmission::Singlecast, Message::Find { shard: Shard::new(15).unwrap(), nonce: 1 }),
        (
            Transmission::Broadcast { breadth: 4, uid: 0xAAAA_AAAA_AAAA_AAAA },
            Message::NewFile { hash },
        ),
        (Transmission::Singlecast, Message::NewFile { hash }),
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
    ];
    let mut buf = [0u8; MAX_DATAGRAM_SIZE];
    for (transmission, message) in examples {
        let kind = message.kind().name();
        let packet = Packet { transmission, source, message };
        let len = packet.encode(&mut buf).unwrap_or(0);
        let shown = if kind == "FILEFRAG" { len - 8192 } else { len };
        println!("## {kind} {transmission:?} ({len} bytes)\n```hex\n{}\n```\n", hex(&buf[..shown]));
    }
}
