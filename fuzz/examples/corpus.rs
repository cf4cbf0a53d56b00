//! Writes the seed corpus of every fuzz target with the public encode API:
//!
//! ```text
//! cargo run --manifest-path fuzz/Cargo.toml --example corpus [-- DIR]
//! ```
//!
//! `DIR` defaults to `fuzz/corpus`; each target's seeds go to `DIR/<target>/`
//! (the directories are emptied first, so a rerun gives the same files).

use std::fs;
use std::path::{Path, PathBuf};

use dht_core::config::MAX_PEERS_PER_MESSAGE;
use dht_core::counters::Counters;
use dht_core::id::{NodeId, PeerAddr, PeerInfo, Shard};
use dht_core::index::{IndexFragment, IndexName};
use dht_core::wire::{
    FragMode, FragmentRef, HashList, HolderList, Message, MessageKind, NodeStats, Packet, PeerList,
    Source, StoreOutcome, Transmission,
};
use dht_core::{FragmentHash, FRAGMENT_SIZE, MAX_DATAGRAM_SIZE};
use dht_fuzz::{known_fragment, known_fragments, Harness, Script};

fn main() {
    let dir = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus"));
    let decode = decode_seeds();
    let index = index_seeds();
    let node = node_seeds();
    for (target, seeds) in [("decode", decode), ("index", index), ("node", node)] {
        let out = dir.join(target);
        let _ = fs::remove_dir_all(&out);
        fs::create_dir_all(&out).expect("the corpus directory can be made");
        let total: usize = seeds.iter().map(|(_, bytes)| bytes.len()).sum();
        for (name, bytes) in &seeds {
            fs::write(out.join(name), bytes).expect("a seed can be written");
        }
        println!("{}: {} seeds, {} bytes", out.display(), seeds.len(), total);
    }
}

fn encode(packet: &Packet<'_>) -> Vec<u8> {
    let mut buf = vec![0u8; MAX_DATAGRAM_SIZE];
    let len = packet.encode(&mut buf).expect("the packet fits a datagram");
    buf.truncate(len);
    assert_eq!(Packet::decode(&buf).as_ref(), Ok(packet), "the seed decodes");
    buf
}

fn peer(i: u8) -> PeerInfo {
    PeerInfo { id: NodeId(0x1111 * u64::from(i) + 3), addr: PeerAddr::v4([10, 0, 0, i], 8000) }
}

/// One packet of every message kind, and every transmission and address
/// form on a few of them.
fn decode_seeds() -> Vec<(String, Vec<u8>)> {
    let source = Source {
        id: NodeId(0x0123_4567_89AB_CDEF),
        addr: PeerAddr::v4([192, 168, 1, 20], 8000),
        member: true,
        window: 0,
    };
    let (hash, data) = known_fragment(3);
    let mut peers = PeerList::new();
    for i in 0..4 {
        peers.push(peer(i)).expect("room");
    }
    let mut holders = HolderList::new();
    holders.push(peer(7)).expect("room");
    holders.push(peer(8)).expect("room");
    let mut hashes = HashList::new();
    for (h, _) in known_fragments().iter().take(3) {
        hashes.push(*h).expect("room");
    }
    let counters = Counters { relayed: 42, ..Counters::default() };
    let messages: Vec<Message<'_>> = vec![
        Message::Join { want: 48, shard: None },
        Message::Peers { peers },
        Message::AddMe,
        Message::Ping { nonce: 0xDEAD_BEEF },
        Message::Pong { nonce: 0xDEAD_BEEF },
        Message::FileFrag { mode: FragMode::Store, hash: *hash, data: FragmentRef(data) },
        Message::FileGet { hash: *hash },
        Message::Find { shard: Shard::new(9).expect("a shard"), nonce: 77 },
        Message::NewFile { hash: *hash },
        Message::Stored { hash: *hash, outcome: StoreOutcome::NotHolder, holders: holders.clone() },
        Message::NotFound { hash: *hash, holders },
        Message::Leave,
        Message::StatsRequest { nonce: 5, about: Some(peer(2).addr) },
        Message::Stats {
            nonce: 5,
            stats: NodeStats {
                held: 10,
                capacity: 100,
                neighbors: 12,
                joined: true,
                knows: true,
                counters,
            },
        },
        Message::Holdings { hashes },
        Message::Dead { peer: peer(5) },
    ];
    let mut seeds = Vec::new();
    let mut kinds = Vec::new();
    for message in messages {
        let kind = message.kind();
        kinds.push(kind);
        let packet = Packet { transmission: Transmission::Singlecast, source, message };
        seeds
            .push((format!("{:02}-{}", kind.index(), kind.name().to_lowercase()), encode(&packet)));
    }
    assert_eq!(kinds, MessageKind::ALL, "a seed for every message kind, in wire order");

    let v6 = Source {
        id: NodeId(u64::MAX),
        addr: PeerAddr::v6([0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1], 65535),
        member: false,
        window: 1,
    };
    let extra = [
        (
            "randomcast-addme",
            Packet {
                transmission: Transmission::Randomcast { hops: 4 },
                source,
                message: Message::AddMe,
            },
        ),
        (
            "broadcast-newfile",
            Packet {
                transmission: Transmission::Broadcast { breadth: 2, uid: hash.prefix_u64() },
                source,
                message: Message::NewFile { hash: *hash },
            },
        ),
        (
            "v6-client-join-shard",
            Packet {
                transmission: Transmission::Singlecast,
                source: v6,
                message: Message::Join { want: 16, shard: Shard::new(15) },
            },
        ),
        (
            "unspecified-stats-request",
            Packet {
                transmission: Transmission::Singlecast,
                source: Source { addr: PeerAddr::v4([0, 0, 0, 0], 8001), ..source },
                message: Message::StatsRequest { nonce: u64::MAX, about: None },
            },
        ),
    ];
    for (name, packet) in extra {
        seeds.push((name.to_string(), encode(&packet)));
    }
    // A full PEERS list: the largest list the decoder takes.
    let mut full = PeerList::new();
    for i in 0..MAX_PEERS_PER_MESSAGE as u8 {
        full.push(peer(i)).expect("room");
    }
    let packet = Packet {
        transmission: Transmission::Singlecast,
        source,
        message: Message::Peers { peers: full },
    };
    seeds.push(("peers-full".to_string(), encode(&packet)));
    seeds
}

/// Index fragments of a few files, trailing zeros cut (the target pads
/// them back to 8192 bytes).
fn index_seeds() -> Vec<(String, Vec<u8>)> {
    let files: [(&str, &str, u64); 5] = [
        ("empty", "", 0),
        ("one-byte", "a", 1),
        ("three-fragments", "holiday.jpg", 2 * FRAGMENT_SIZE as u64 + 100),
        ("unicode-name", "été-à-paris.txt", FRAGMENT_SIZE as u64),
        ("largest", "a-very-long-name-for-a-file.bin", dht_core::MAX_FILE_SIZE),
    ];
    files
        .iter()
        .map(|&(seed, name, size)| {
            let index = IndexFragment::for_file(IndexName::from_file_name(name), size, |i| {
                let mut h = [0u8; 32];
                for (j, b) in h.iter_mut().enumerate() {
                    *b = (i as u8).wrapping_mul(31).wrapping_add(j as u8) | 1;
                }
                FragmentHash(h)
            })
            .expect("the file fits one index");
            let mut bytes = vec![0u8; FRAGMENT_SIZE];
            let array: &mut [u8; FRAGMENT_SIZE] =
                bytes.as_mut_slice().try_into().expect("8192 bytes");
            index.encode(array);
            let end = bytes.iter().rposition(|b| *b != 0).map_or(0, |i| i + 1);
            bytes.truncate(end);
            (seed.to_string(), bytes)
        })
        .collect()
}

/// Node inputs: a join with its answers, a member that receives one of
/// every message, a client at work, a small member that stores and leaves.
fn node_seeds() -> Vec<(String, Vec<u8>)> {
    let mut seeds = Vec::new();
    let single = Transmission::Singlecast;

    // A member joins through peer 0, gets PEERS, answers its pings and
    // finds, then lives for a while (steps of 0x9F = 15 << 24 us ~ 4 min).
    let mut s = Script::new(0x44, 5, 1);
    s.answer(0x21, 0, 3);
    for i in 0..24 {
        s.answer(0x31, i % 4, i);
    }
    s.wait(0x8F);
    for i in 0..16 {
        s.answer(0x41, i % 6, i * 3);
    }
    s.wait(0x9F);
    seeds.push(("join-and-live".to_string(), s.0));

    // A root member (4 slots) receives one of every message from its peers.
    let flags = 0x40;
    let shard = 2;
    let h = Harness::new([flags, shard, 7, 0]);
    let mate = h.peer_addr(0);
    let other = h.peer_addr(2);
    let (own_hash, own_data) = known_fragment(shard);
    let (other_hash, other_data) = known_fragment(shard + 1);
    let mut s = Script::new(flags, shard, 7);
    let me = h.node.me();
    let mut peers = PeerList::new();
    for i in 0..5 {
        let addr = h.peer_addr(i);
        peers.push(PeerInfo { id: h.identity(addr), addr }).expect("room");
    }
    let mut hashes = HashList::new();
    hashes.push(*own_hash).expect("room");
    hashes.push(*other_hash).expect("room");
    let inbound: Vec<(u8, Transmission, Message<'_>)> = vec![
        (0, single, Message::Join { want: 8, shard: None }),
        (0, single, Message::AddMe),
        (1, single, Message::Peers { peers }),
        (2, single, Message::Ping { nonce: 1 }),
        (2, single, Message::Pong { nonce: 1 }),
        (
            1,
            single,
            Message::FileFrag {
                mode: FragMode::Store,
                hash: *own_hash,
                data: FragmentRef(own_data),
            },
        ),
        (
            2,
            single,
            Message::FileFrag {
                mode: FragMode::Store,
                hash: *other_hash,
                data: FragmentRef(other_data),
            },
        ),
        (3, single, Message::FileGet { hash: *own_hash }),
        (3, single, Message::FileGet { hash: *other_hash }),
        (4, Transmission::Randomcast { hops: 2 }, Message::Find { shard: me.shard(), nonce: 9 }),
        (1, Transmission::Broadcast { breadth: 1, uid: 99 }, Message::NewFile { hash: *own_hash }),
        (
            0,
            single,
            Message::Stored {
                hash: *own_hash,
                outcome: StoreOutcome::Stored,
                holders: HolderList::new(),
            },
        ),
        (0, single, Message::NotFound { hash: *other_hash, holders: HolderList::new() }),
        (5, single, Message::StatsRequest { nonce: 3, about: Some(mate) }),
        (0, single, Message::Stats { nonce: 3, stats: NodeStats::default() }),
        (1, single, Message::Holdings { hashes }),
        (
            3,
            Transmission::Broadcast { breadth: 2, uid: 7 },
            Message::Dead { peer: PeerInfo { id: h.identity(other), addr: other } },
        ),
        (4, single, Message::Leave),
    ];
    for (from, transmission, message) in inbound {
        let addr = h.peer_addr(from);
        s.raw(from, 0x21, &dht_fuzz::packet_from(&h, addr, transmission, message));
        s.answer(0x11, 0, from);
    }
    for i in 0..8 {
        s.answer(0x51, i, i + 1);
    }
    s.echo(0x21, 0, true).echo(0x21, 1, false).wait(0x9F);
    seeds.push(("every-message".to_string(), s.0));

    // A client joins, discovers a shard, pings, asks for stats, fetches and
    // stores, with a sink that refuses every 4th datagram.
    let mut s = Script::new(0x0D, 9, 3);
    s.answer(0x21, 0, 7);
    s.command(0x21, 2, 0x13).answer(0x11, 0, 1).answer(0x11, 1, 2);
    s.command(0x11, 3, 0x20).answer(0x11, 0, 0);
    s.command(0x11, 3, 0x41).answer(0x11, 0, 0);
    s.command(0x11, 4, 0x09).answer(0x11, 0, 1);
    s.command(0x11, 5, 0x10).answer(0x11, 0, 0);
    s.command(0x11, 5, 0x19).answer(0x11, 0, 7);
    s.command(0x11, 6, 0x21).answer(0x11, 0, 5);
    s.command(0x11, 6, 0xA2).answer(0x11, 0, 0);
    s.command(0x11, 7, 0x03).wait(0x7F);
    seeds.push(("client-at-work".to_string(), s.0));

    // A small member (1 slot, window 1) joins, stores a fragment, and
    // leaves, handing it off.
    let flags = 0x16;
    let shard = 4;
    let h = Harness::new([flags, shard, 9, 9]);
    let (hash, data) = known_fragment(shard);
    let mut s = Script::new(flags, shard, 0x0909);
    s.answer(0x21, 0, 4);
    for i in 0..8 {
        s.answer(0x31, i % 3, i);
    }
    let store = Message::FileFrag { mode: FragMode::Store, hash: *hash, data: FragmentRef(data) };
    s.raw(1, 0x31, &dht_fuzz::packet_from(&h, h.peer_addr(1), single, store));
    s.wait(0x6F).command(0x11, 0, 0);
    for i in 0..6 {
        s.answer(0x31, i, i);
    }
    s.wait(0x8F);
    seeds.push(("small-store-and-leave".to_string(), s.0));

    // A member that may choose its shard joins and is told of a crowded
    // network (many made-up members in the PEERS answer).
    let mut s = Script::new(0x47, 0, 0x4242);
    s.answer(0x21, 0, 7).answer(0x21, 0, 6);
    for i in 0..12 {
        s.answer(0x31, i % 5, i);
    }
    s.wait(0x8F);
    seeds.push(("choose-shard".to_string(), s.0));

    // The original's flooding (bit 7): a member joins, stores a fragment
    // it floods, hears of its own death, and leaves with nobody answering
    // its hand-off until the leave deadline.
    let flags = 0xC4;
    let shard = 11;
    let h = Harness::new([flags, shard, 5, 5]);
    let (hash, data) = known_fragment(shard);
    let mut s = Script::new(flags, shard, 0x0505);
    s.answer(0x21, 0, 2);
    for i in 0..6 {
        s.answer(0x31, i % 3, i);
    }
    let store = Message::FileFrag { mode: FragMode::Store, hash: *hash, data: FragmentRef(data) };
    s.raw(0, 0x31, &dht_fuzz::packet_from(&h, h.peer_addr(0), single, store));
    let dead = Message::Dead { peer: h.node.me() };
    let broadcast = Transmission::Broadcast { breadth: 1, uid: 0xDEAD };
    s.raw(2, 0x31, &dht_fuzz::packet_from(&h, h.peer_addr(2), broadcast, dead));
    s.command(0x31, 0, 0).wait(0x9F).wait(0x9F);
    seeds.push(("flood-death-and-lonely-leave".to_string(), s.0));

    seeds
}
