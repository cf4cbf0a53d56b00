//! Writes the seed corpus of every fuzz target with the public encode API:
//!
//! ```text
//! cargo run --manifest-path fuzz/Cargo.toml --example corpus [-- DIR]
//! ```
//!
//! `DIR` defaults to `fuzz/corpus`; each target's seeds go to `DIR/<target>/`
//! (the directories are emptied first, so a rerun gives the same files).
//! Every `node` and `client` seed is run once here and must reach what it
//! was written for (a join, a stored fragment, a hand-off, a finished
//! upload or download, ...), so that fuzzing starts from inputs that get
//! past the cookie checks.

use std::fs;
use std::path::{Path, PathBuf};

use dht_core::config::MAX_PEERS_PER_MESSAGE;
use dht_core::counters::{Counters, DropReason};
use dht_core::id::{NodeId, PeerAddr, PeerInfo, Shard};
use dht_core::index::{IndexFragment, IndexName};
use dht_core::store::FragmentStore;
use dht_core::wire::{
    Cookie, Cookies, HashList, HolderList, Message, MessageKind, NodeStats, Packet, PeerList,
    PieceRef, Source, StoreOutcome, Transmission, ALL_UNITS, UNIT,
};
use dht_core::{FragmentHash, FRAGMENT_SIZE, MAX_DATAGRAM_SIZE};
use dht_fuzz::client::{client_after, index_of_known, Client};
use dht_fuzz::harness::{known_fragment, known_fragments, network_key, Wrinkle};
use dht_fuzz::node::{node_after, node_harness};
use dht_fuzz::Script;

fn main() {
    let dir = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus"));
    let targets = [
        ("decode", decode_seeds()),
        ("index", index_seeds()),
        ("node", node_seeds()),
        ("client", client_seeds()),
    ];
    for (target, seeds) in targets {
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

fn encode(packet: &Packet<'_>, min_len: usize) -> Vec<u8> {
    let mut buf = vec![0u8; MAX_DATAGRAM_SIZE];
    let len = packet.encode_padded(&mut buf, min_len).expect("the packet fits a datagram");
    buf.truncate(len);
    assert_eq!(Packet::decode(&buf).as_ref(), Ok(packet), "the seed decodes");
    buf
}

fn peer(i: u8) -> PeerInfo {
    PeerInfo { id: NodeId(0x1111 * u64::from(i) + 3), addr: PeerAddr::v4([10, 0, 0, i], 8000) }
}

/// One packet of every message kind, then every transmission, address
/// form, cookie combination, piece size, padding and a sealed datagram.
fn decode_seeds() -> Vec<(String, Vec<u8>)> {
    let source = Source {
        id: NodeId(0x0123_4567_89AB_CDEF),
        addr: PeerAddr::v4([192, 168, 1, 20], 8000),
        member: true,
        window: 0,
        full: false,
    };
    let both =
        Cookies { echo: Some(Cookie([1, 2, 3, 4, 5, 6, 7, 8])), grant: Some(Cookie([9; 8])) };
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
    let mut counters = Counters { relayed: 42, ..Counters::default() };
    counters.count_sent(MessageKind::FileFrag, 1452);
    counters.count_received(MessageKind::FileGet, 80);
    counters.count_drop(DropReason::Unproven);
    let messages: Vec<Message<'_>> = vec![
        Message::Join { want: 48, shard: None },
        Message::Peers { peers },
        Message::AddMe,
        Message::Ping { nonce: 0xDEAD_BEEF },
        Message::Pong { nonce: 0xDEAD_BEEF, dead: Some(PeerAddr::v4([127, 0, 0, 1], 9001)) },
        Message::FileFrag { hash: *hash, first_unit: 4, data: PieceRef(&data[4 * UNIT..8 * UNIT]) },
        Message::FileGet { hash: *hash, want: 0x0FF0, piece_units: 2 },
        Message::Find { shard: Shard::new(9).expect("a shard"), nonce: 77 },
        Message::NewFile { hash: *hash, urgent: true, copies: 0 },
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
                uptime: 3600,
                counters,
            },
        },
        Message::Holdings { hashes },
        Message::Dead { peer: peer(5) },
        Message::Retry,
        Message::ListRequest { nonce: 6, from: 12, files_only: true },
        Message::List { nonce: 6, page: list_page(hash) },
    ];
    let mut seeds = Vec::new();
    let mut kinds = Vec::new();
    for message in messages {
        let kind = message.kind();
        kinds.push(kind);
        let packet =
            Packet { transmission: Transmission::Singlecast, source, cookies: both, message };
        let name = format!("{:02}-{}", kind.index(), kind.name().to_lowercase());
        seeds.push((name, encode(&packet, 0)));
    }
    assert_eq!(kinds, MessageKind::ALL, "a seed for every message kind, in wire order");

    let v6 = Source {
        id: NodeId(u64::MAX),
        addr: PeerAddr::v6([0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1], 65535),
        member: false,
        window: 1,
        full: true,
    };
    let grant_only = Cookies { echo: None, grant: Some(Cookie([0xA5; 8])) };
    let whole = Message::FileFrag { hash: *hash, first_unit: 0, data: PieceRef(&data[..]) };
    let last_unit =
        Message::FileFrag { hash: *hash, first_unit: 15, data: PieceRef(&data[15 * UNIT..]) };
    let extra: Vec<(&str, Packet<'_>, usize)> = vec![
        (
            "randomcast-addme-no-cookies",
            Packet {
                transmission: Transmission::Randomcast { hops: 4 },
                source,
                cookies: Cookies::NONE,
                message: Message::AddMe,
            },
            0,
        ),
        (
            "broadcast-dead-grant-only",
            Packet {
                transmission: Transmission::Broadcast { breadth: 2, uid: hash.prefix_u64() },
                source,
                cookies: grant_only,
                message: Message::Dead { peer: peer(9) },
            },
            0,
        ),
        (
            "v6-client-join-shard-padded",
            Packet {
                transmission: Transmission::Singlecast,
                source: v6,
                cookies: grant_only,
                message: Message::Join { want: 16, shard: Shard::new(15) },
            },
            96,
        ),
        (
            "unspecified-stats-request",
            Packet {
                transmission: Transmission::Singlecast,
                source: Source { addr: PeerAddr::v4([0, 0, 0, 0], 8001), ..source },
                cookies: Cookies { echo: Some(Cookie([0; 8])), grant: None },
                message: Message::StatsRequest { nonce: u64::MAX, about: None },
            },
            0,
        ),
        (
            "piece-whole-fragment",
            Packet {
                transmission: Transmission::Singlecast,
                source: v6,
                cookies: both,
                message: whole,
            },
            0,
        ),
        (
            "piece-last-unit",
            Packet {
                transmission: Transmission::Singlecast,
                source,
                cookies: grant_only,
                message: last_unit,
            },
            0,
        ),
        (
            "fileget-all-one-unit-pieces",
            Packet {
                transmission: Transmission::Singlecast,
                source,
                cookies: both,
                message: Message::FileGet { hash: *hash, want: ALL_UNITS, piece_units: 1 },
            },
            0,
        ),
        (
            "newfile-not-urgent-padded",
            Packet {
                transmission: Transmission::Singlecast,
                source,
                cookies: grant_only,
                message: Message::NewFile { hash: *hash, urgent: false, copies: 0 },
            },
            200,
        ),
        (
            "retry-padded",
            Packet {
                transmission: Transmission::Singlecast,
                source,
                cookies: grant_only,
                message: Message::Retry,
            },
            96,
        ),
    ];
    for (name, packet, min_len) in extra {
        seeds.push((name.to_string(), encode(&packet, min_len)));
    }
    // A full PEERS list: the largest list the decoder takes.
    let mut full = PeerList::new();
    for i in 0..MAX_PEERS_PER_MESSAGE as u8 {
        full.push(peer(i)).expect("room");
    }
    let packet = Packet {
        transmission: Transmission::Singlecast,
        source,
        cookies: both,
        message: Message::Peers { peers: full },
    };
    seeds.push(("peers-full".to_string(), encode(&packet, 0)));
    // A datagram of a keyed network: the target checks it without its tag.
    let packet = Packet {
        transmission: Transmission::Singlecast,
        source,
        cookies: both,
        message: Message::Ping { nonce: 1 },
    };
    let mut sealed = encode(&packet, 96);
    let len = sealed.len();
    sealed.resize(len + dht_core::auth::TAG_LEN, 0);
    network_key().seal(&mut sealed, len).expect("room for the tag");
    seeds.push(("sealed-padded-ping".to_string(), sealed));
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
        .chain(nested_index_seeds())
        .chain(std::iter::once(coded_root_seed()))
        .collect()
}

/// A coded root (a file's own tree and its parity tree).
fn coded_root_seed() -> (String, Vec<u8>) {
    let coding = dht_core::index::Coding::new(2_500_000, 32, 16).expect("a valid coding");
    let root = IndexFragment::coded_root(
        IndexName::from_file_name("coded.bin"),
        coding,
        FragmentHash([7; 32]),
        FragmentHash([9; 32]),
    );
    let mut bytes = vec![0u8; FRAGMENT_SIZE];
    let array: &mut [u8; FRAGMENT_SIZE] = bytes.as_mut_slice().try_into().expect("8192 bytes");
    root.encode(array);
    let end = bytes.iter().rposition(|b| *b != 0).map_or(0, |i| i + 1);
    bytes.truncate(end);
    ("coded-root".to_string(), bytes)
}

/// Roots of index trees of two and three levels (fake data hashes).
fn nested_index_seeds() -> Vec<(String, Vec<u8>)> {
    let sizes = [
        ("nested-two-levels", dht_core::MAX_FILE_SIZE * 3 + 5),
        ("nested-three-levels", dht_core::index::capacity(2) + 1),
    ];
    sizes
        .iter()
        .map(|&(seed, size)| {
            let mut tree = dht_core::index::TreeBuilder::<4>::new();
            let frag = FRAGMENT_SIZE as u64;
            for n in 0..size.div_ceil(frag) {
                let mut h = [0u8; 32];
                h[..8].copy_from_slice(&n.to_be_bytes());
                h[31] = 1;
                let len = (size - n * frag).min(frag) as usize;
                tree.push(FragmentHash(h), len, |_, _| {}).expect("the tree has room");
            }
            let root =
                tree.finish(IndexName::from_file_name("big.bin"), |_, _| {}).expect("a root");
            let mut bytes = vec![0u8; FRAGMENT_SIZE];
            let array: &mut [u8; FRAGMENT_SIZE] =
                bytes.as_mut_slice().try_into().expect("8192 bytes");
            root.encode(array);
            let end = bytes.iter().rposition(|b| *b != 0).map_or(0, |i| i + 1);
            bytes.truncate(end);
            (seed.to_string(), bytes)
        })
        .collect()
}

/// Answers every datagram sent since the last time, `rounds` times, each
/// after `step`.
fn rounds(s: &mut Script, rounds: usize, step: u8, variant: u8) {
    for _ in 0..rounds {
        s.command(step, 11, variant);
    }
}

/// A packet from a harness peer (cookies filled in by the raw record's
/// mode), without a tag.
fn packet(source: Source, transmission: Transmission, message: Message<'_>) -> Vec<u8> {
    encode(&Packet { transmission, source, cookies: Cookies::NONE, message }, 0)
}

/// Node inputs, each checked to reach what it is for.
fn node_seeds() -> Vec<(String, Vec<u8>)> {
    let mut seeds = Vec::new();
    let mut add =
        |name: &str,
         s: &Script,
         goal: &dyn Fn(&dht_fuzz::Harness<dht_fuzz::node::Server>) -> bool| {
            let h = node_after(&s.0);
            assert!(
                goal(&h),
                "the seed {name} misses its goal: {:?}, {:?}",
                h.node,
                h.node.counters()
            );
            seeds.push((name.to_string(), s.0.clone()));
        };
    let single = Transmission::Singlecast;

    // A member joins through peer 0; its peers answer everything (PEERS
    // with 12 made-up members, PONGs), it lives a while with its probes
    // answered, then its peers fall silent and it finds them dead.
    let mut s = Script::new(&[0x44, 5, 1, 0]);
    rounds(&mut s, 6, 0x21, 3);
    s.wait(0x8F);
    rounds(&mut s, 4, 0x41, 0);
    s.wait(0x9F).wait(0x9F);
    add("join-live-and-lose-peers", &s, &|h| {
        h.node.is_joined() && h.node.counters().drops_of(DropReason::Unproven) == 0
    });

    // The same on a keyed network with small datagrams, some datagrams
    // sealed with another network's key, some answers without the cookie.
    let mut s = Script::new(&[0x44, 0x35, 1, 0]);
    rounds(&mut s, 4, 0x21, 3);
    s.answer_with(0x11, 0, 0, Wrinkle { bad_seal: true, ..Wrinkle::default() });
    s.answer_with(0x11, 1, 0, Wrinkle { unproven: true, ..Wrinkle::default() });
    s.answer_with(0x11, 2, 0, Wrinkle { moved: true, ..Wrinkle::default() });
    rounds(&mut s, 3, 0x41, 0);
    s.wait(0x8F);
    add("keyed-small-join", &s, &|h| {
        h.node.is_joined() && h.node.counters().drops_of(DropReason::BadTag) > 0
    });

    // A root member (4 slots) hears from its peers (each first pads an
    // unproven PING, which gets a PONG with a cookie), then gets one of
    // every message from them, proven; the offer is fetched in pieces and
    // stored.
    let flags = 0x40;
    let shard = 2;
    let h = node_harness([flags, shard, 7, 0]);
    let src = |i: u8| h.source(h.peer_addr(i), 0, false);
    let (own_hash, _) = known_fragment(shard);
    let (other_hash, other_data) = known_fragment(shard + 1);
    let me = h.node.me();
    let mut peers = PeerList::new();
    for i in 0..5 {
        let addr = h.peer_addr(i);
        peers.push(PeerInfo { id: h.identity(addr), addr }).expect("room");
    }
    let mut hashes = HashList::new();
    hashes.push(*own_hash).expect("room");
    hashes.push(*other_hash).expect("room");
    let mut s = Script::new(&[flags, shard, 7, 0]);
    for i in 0..6 {
        let ping = encode(
            &Packet {
                transmission: single,
                source: src(i),
                cookies: Cookies::NONE,
                message: Message::Ping { nonce: u64::from(i) },
            },
            96,
        );
        s.raw(i, 0, 0x11, &ping);
    }
    let inbound: Vec<(u8, Transmission, Message<'_>)> = vec![
        (0, single, Message::Join { want: 8, shard: None }),
        (0, single, Message::AddMe),
        (1, single, Message::Peers { peers }),
        (2, single, Message::Ping { nonce: 1 }),
        (2, single, Message::Pong { nonce: 1, dead: None }),
        (
            2,
            single,
            Message::FileFrag {
                hash: *other_hash,
                first_unit: 0,
                data: PieceRef(&other_data[..2 * UNIT]),
            },
        ),
        (3, single, Message::FileGet { hash: *own_hash, want: ALL_UNITS, piece_units: 2 }),
        (4, Transmission::Randomcast { hops: 2 }, Message::Find { shard: me.shard(), nonce: 9 }),
        (1, single, Message::NewFile { hash: *own_hash, urgent: true, copies: 0 }),
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
        (5, single, Message::StatsRequest { nonce: 3, about: Some(h.peer_addr(0)) }),
        (0, single, Message::Stats { nonce: 3, stats: NodeStats::default() }),
        (1, single, Message::Holdings { hashes }),
        (
            3,
            Transmission::Broadcast { breadth: 2, uid: 7 },
            Message::Dead {
                peer: PeerInfo { id: h.identity(h.peer_addr(2)), addr: h.peer_addr(2) },
            },
        ),
        (2, single, Message::Retry),
        (3, single, Message::ListRequest { nonce: 4, from: 0, files_only: false }),
        (1, single, Message::List { nonce: 4, page: list_page(own_hash) }),
        (4, single, Message::Leave),
    ];
    let mut kinds: Vec<MessageKind> = inbound.iter().map(|(_, _, m)| m.kind()).collect();
    kinds.sort();
    kinds.dedup();
    assert_eq!(kinds, MessageKind::ALL, "every message kind reaches the node");
    for (from, transmission, message) in inbound {
        s.raw(from, 1, 0x21, &packet(src(from), transmission, message));
        s.answer(0x11, 0, from);
    }
    rounds(&mut s, 4, 0x21, 0);
    s.echo(0x21, 0, true).echo(0x21, 1, false).wait(0x9F);
    add("root-gets-every-message", &s, &|h| h.node.store().contains(own_hash));

    // A client joins, discovers a shard, pings, asks for stats, fetches,
    // offers a fragment it serves when asked, with a sink that refuses
    // every 4th datagram.
    let mut s = Script::new(&[0x0D, 9, 3, 0]);
    rounds(&mut s, 4, 0x21, 4);
    s.command(0x21, 2, 0x13).answer(0x11, 0, 1).answer(0x11, 1, 2);
    s.command(0x11, 3, 0x20).answer(0x11, 0, 0);
    s.command(0x11, 3, 0x41).answer(0x11, 0, 0);
    s.command(0x11, 4, 0x09).answer(0x11, 0, 1);
    s.command(0x11, 5, 0x10).answer(0x11, 0, 0);
    s.command(0x11, 5, 0x99).answer(0x11, 0, 2);
    s.command(0x11, 5, 0x19).answer(0x11, 0, 7);
    s.command(0x11, 6, 0x21).answer(0x11, 0, 1).answer(0x11, 0, 0);
    s.command(0x11, 6, 0xA2).answer(0x11, 0, 0);
    s.command(0x11, 9, 0x43).command(0x11, 7, 0x03).command(0x11, 7, 0xC3).wait(0x7F);
    add("client-at-work", &s, &|h| {
        h.node.is_joined() && h.node.counters().sent_of(MessageKind::FileFrag).datagrams > 0
    });

    // A small member (1 slot, window 1, 632-byte datagrams) joins, is
    // offered a fragment it fetches one unit a piece, and leaves, handing
    // it off to the mate that replaces it.
    let flags = 0x16;
    let shard = 4;
    let h = node_harness([flags, 0x20 | shard, 9, 9]);
    let (hash, _) = known_fragment(shard);
    let offer = packet(
        h.source(h.peer_addr(1), 0, false),
        single,
        Message::NewFile { hash: *hash, urgent: true, copies: 0 },
    );
    let mut s = Script::new(&[flags, 0x20 | shard, 9, 9]);
    rounds(&mut s, 5, 0x21, 4);
    s.raw(1, 1, 0x31, &offer);
    rounds(&mut s, 2, 0x21, 0);
    s.wait(0x6F).command(0x11, 0, 0);
    rounds(&mut s, 4, 0x21, 0);
    s.wait(0x8F);
    add("small-store-and-hand-off", &s, &|h| {
        h.node.has_left() && h.node.counters().fragments_stored > 0
    });

    // A member that may choose its shard joins and is told of a crowded
    // network (many made-up members in the PEERS answers).
    let mut s = Script::new(&[0x47, 0, 0x42, 0x42]);
    rounds(&mut s, 5, 0x21, 7);
    s.wait(0x8F);
    add("choose-shard", &s, &|h| h.node.is_joined());

    // Whole-shard replication on a keyed network with whole-fragment
    // datagrams: a member joins, takes an upload, announces it to every
    // mate, which fetch it from it in one piece; then it hears of its own
    // death and leaves with nobody answering.
    let flags = 0xC4;
    let shard = 11;
    let net = 0x50 | shard;
    let h = node_harness([flags, net, 5, 5]);
    let (hash, _) = known_fragment(shard);
    let offer = packet(
        h.source(h.peer_addr(3), 0, false),
        single,
        Message::NewFile { hash: *hash, urgent: true, copies: 0 },
    );
    let dead = packet(
        h.source(h.peer_addr(2), 0, false),
        Transmission::Broadcast { breadth: 1, uid: 0xDEAD },
        Message::Dead { peer: h.node.me() },
    );
    let mut s = Script::new(&[flags, net, 5, 5]);
    rounds(&mut s, 5, 0x21, 3);
    s.raw(3, 1, 0x31, &offer);
    rounds(&mut s, 3, 0x31, 1);
    s.raw(2, 1, 0x31, &dead);
    s.command(0x31, 0, 0).wait(0x9F).wait(0x9F);
    add("keyed-whole-shard-big-datagrams", &s, &|h| {
        h.node.has_left() && h.node.counters().fragments_served > 0
    });

    // A member whose store starts full (7 fragments, 4 of its shard, with
    // 632-byte datagrams) joins: it offers its fragments to the mates
    // that should hold them, serves their fetches one unit a piece, sends
    // HOLDINGS pages, and leaves handing several fragments off.
    let mut s = Script::new(&[0x74, 0xA0 | 8, 3, 3]);
    rounds(&mut s, 5, 0x21, 3);
    s.wait(0x5F);
    rounds(&mut s, 4, 0x31, 0);
    s.wait(0x9F);
    rounds(&mut s, 2, 0x31, 2);
    s.command(0x21, 0, 0);
    rounds(&mut s, 4, 0x21, 0);
    s.wait(0x8F);
    add("full-store-serves-and-hands-off", &s, &|h| {
        let c = h.node.counters();
        h.node.has_left()
            && c.fragments_served > 1
            && c.sent_of(MessageKind::Holdings).datagrams > 0
    });

    // Requests to peers that never gave a cookie are padded; the peers
    // answer RETRY, and the node asks again with the cookie; unproven
    // requests of the peers get RETRYs.
    let flags = 0x45;
    let h = node_harness([flags, 6, 1, 2]);
    let retry = |i: u8| packet(h.source(h.peer_addr(i), 0, false), single, Message::Retry);
    let mut s = Script::new(&[flags, 6, 1, 2]);
    s.raw(0, 1, 0x21, &retry(0));
    rounds(&mut s, 2, 0x21, 3);
    let ask = encode(
        &Packet {
            transmission: single,
            source: h.source(h.peer_addr(3), 0, false),
            cookies: Cookies::NONE,
            message: Message::FileGet {
                hash: known_fragment(6).0,
                want: ALL_UNITS,
                piece_units: 4,
            },
        },
        120,
    );
    s.raw(3, 0, 0x21, &ask);
    s.raw(2, 1, 0x21, &retry(2)).raw(4, 2, 0x21, &retry(4));
    s.command(0x21, 4, 0x03).raw(3, 1, 0x11, &retry(3));
    rounds(&mut s, 2, 0x21, 0);
    add("retries", &s, &|h| {
        h.node.counters().sent_of(MessageKind::Retry).datagrams > 0 && h.node.is_joined()
    });

    seeds
}

/// Client inputs, each checked to reach what it is for.
fn client_seeds() -> Vec<(String, Vec<u8>)> {
    let mut seeds = Vec::new();
    let mut add = |name: &str, s: &Script, goal: &dyn Fn(&Client) -> bool| {
        let h = client_after(&s.0);
        assert!(goal(&h.app), "the seed {name} misses its goal: {:?}", h.node.counters());
        seeds.push((name.to_string(), s.0.clone()));
    };
    let finished = |app: &Client| app.is_finished();

    // Uploads: a file of one byte with every peer cooperating; three
    // fragments refused (not a holder, store full) before they are taken;
    // two fragments on a keyed network with small datagrams.
    let mut s = Script::new(&[0x00, 1, 0, 3]);
    rounds_client(&mut s, 8, 0x21, 0);
    add("upload-one-byte", &s, &finished);

    let size = (2 * FRAGMENT_SIZE + 100) as u16;
    let [a, b] = size.to_le_bytes();
    let mut s = Script::new(&[0x10, a, b, 7]);
    rounds_client(&mut s, 1, 0x21, 5);
    rounds_client(&mut s, 1, 0x21, 6);
    rounds_client(&mut s, 1, 0x21, 3);
    rounds_client(&mut s, 12, 0x21, 0);
    add("upload-refused-then-taken", &s, &finished);

    let size = (FRAGMENT_SIZE + 1) as u16;
    let [a, b] = size.to_le_bytes();
    let mut s = Script::new(&[0x26, a, b, 12]);
    rounds_client(&mut s, 10, 0x21, 1);
    add("upload-keyed-small", &s, &finished);

    // Downloads of a file of two known fragments: everything as asked;
    // pieces reversed, one unit a piece, the first piece only, corrupt,
    // NOTFOUND and duplicates; on a keyed network with small datagrams.
    let index = index_of_known("fuzz.bin", (FRAGMENT_SIZE + 100) as u64, &[3, 9]);
    let [a, b] = (index.len() as u16).to_le_bytes();
    let mut s = Script::new(&[0x01, a, b, 5]);
    s.0.extend_from_slice(&index);
    rounds_client(&mut s, 6, 0x21, 0);
    add("download-two-fragments", &s, &finished);

    let mut s = Script::new(&[0x01, a, b, 6]);
    s.0.extend_from_slice(&index);
    for variant in [1, 7, 2, 3, 5, 6] {
        rounds_client(&mut s, 1, 0x21, variant);
    }
    rounds_client(&mut s, 8, 0x31, 0);
    add("download-pieces-every-way", &s, &finished);

    let index3 = index_of_known("three.bin", (3 * FRAGMENT_SIZE) as u64, &[1, 2, 1]);
    let [a, b] = (index3.len() as u16).to_le_bytes();
    let mut s = Script::new(&[0x07, a, b, 8]);
    s.0.extend_from_slice(&index3);
    rounds_client(&mut s, 10, 0x21, 0);
    add("download-keyed-small", &s, &finished);

    // The address of a fragment that is not an index.
    let junk = b"\xD2 not an index fragment";
    let [a, b] = (junk.len() as u16).to_le_bytes();
    let mut s = Script::new(&[0x01, a, b, 2]);
    s.0.extend_from_slice(junk);
    rounds_client(&mut s, 3, 0x21, 0);
    add("download-bad-index", &s, &|app| match app {
        Client::Download(d, _) => {
            matches!(d.error(), Some(dht_core::download::DownloadError::BadIndex(_)))
        }
        Client::Upload(_) => false,
    });

    seeds
}

/// Answers every datagram sent since the last time (client command 5),
/// `rounds` times, each after `step`.
fn rounds_client(s: &mut Script, rounds: usize, step: u8, variant: u8) {
    for _ in 0..rounds {
        s.command(step, 5, variant);
    }
}

/// A LIST page: a file's root and an index, more to come.
fn list_page(hash: &FragmentHash) -> dht_core::wire::ListPage {
    use dht_core::wire::{ListPage, Listed, ListedKind};
    let mut page = ListPage { held: 40, next: Some(14), ..ListPage::default() };
    let file = Listed {
        hash: *hash,
        kind: ListedKind::File,
        copies: 3,
        size: 10_000,
        name: "photo.jpg".try_into().expect("short"),
    };
    let index =
        Listed { kind: ListedKind::Index, size: 0, name: Default::default(), ..file.clone() };
    page.entries.extend([file, index]);
    page
}
