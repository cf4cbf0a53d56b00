//! Hostile input: a node fed 100,000 random and mutated datagrams must not
//! panic, must count what it dropped, and must still serve a download.

use dht_core::counters::DropReason;
use dht_core::fragment::{FragmentHash, FRAGMENT_SIZE};
use dht_core::rand::Rng;
use dht_core::store::FragmentStore;
use dht_core::wire::{
    Cookie, Cookies, Message, Packet, PeerList, PieceRef, Source, StoreOutcome, Transmission,
};
use dht_core::{Config, Duration, NodeId, PeerAddr, PeerInfo, Shard, MAX_DATAGRAM_SIZE};
use dht_sim::scene::{join_members, random_bytes};
use dht_sim::{Faults, Sim};

const DATAGRAMS: usize = 100_000;

fn random_addr(rng: &mut Rng) -> PeerAddr {
    if rng.chance(1, 4) {
        let mut ip = [0u8; 16];
        rng.fill_bytes(&mut ip);
        PeerAddr::v6(ip, rng.next_u64() as u16)
    } else {
        PeerAddr::v4([127, 0, rng.below(4) as u8, rng.below(256) as u8], rng.next_u64() as u16)
    }
}

fn random_hash(rng: &mut Rng) -> FragmentHash {
    let mut h = [0u8; 32];
    rng.fill_bytes(&mut h);
    FragmentHash(h)
}

/// A well-formed packet of a random kind with random fields.
fn valid_packet(rng: &mut Rng, fragment: &[u8; FRAGMENT_SIZE], buf: &mut [u8]) -> usize {
    let transmission = match rng.below(3) {
        0 => Transmission::Singlecast,
        1 => Transmission::Randomcast { hops: rng.below(6) as u8 },
        _ => Transmission::Broadcast { breadth: rng.below(4) as u8, uid: rng.next_u64() },
    };
    let source = Source {
        id: NodeId(rng.next_u64()),
        addr: random_addr(rng),
        member: rng.chance(1, 2),
        window: rng.next_u64() as u8,
        full: rng.chance(1, 8),
    };
    let cookie = |rng: &mut Rng| rng.chance(1, 2).then(|| Cookie(rng.next_u64().to_le_bytes()));
    let cookies = Cookies { echo: cookie(rng), grant: cookie(rng) };
    let shard = Shard::new(rng.below(16) as u8).unwrap();
    let mut peers = PeerList::new();
    for _ in 0..rng.below(65) {
        let _ = peers.push(PeerInfo { id: NodeId(rng.next_u64()), addr: random_addr(rng) });
    }
    let hash = random_hash(rng);
    let units = 1 + rng.below(16);
    let first_unit = rng.below(17 - units) as u8;
    let message = match rng.below(19) {
        0 => Message::Join { want: rng.next_u64() as u8, shard: rng.chance(1, 2).then_some(shard) },
        1 => Message::Peers { peers },
        2 => Message::AddMe,
        3 => Message::Ping { nonce: rng.next_u64() },
        4 => Message::Pong { nonce: rng.next_u64(), dead: None },
        5 => Message::FileFrag {
            // Half of them name the hash of the fragment they are cut from.
            hash: if rng.chance(1, 2) { FragmentHash::of(fragment) } else { hash },
            first_unit,
            data: PieceRef(&fragment[usize::from(first_unit) * 512..][..units * 512]),
        },
        6 => Message::FileGet {
            hash,
            want: (rng.next_u64() as u16).max(1),
            piece_units: [1, 2, 4, 8, 16][rng.below(5)],
        },
        7 => Message::Find { shard, nonce: rng.next_u64() },
        8 => Message::NewFile { hash, urgent: rng.chance(1, 2), copies: 0 },
        9 => Message::Stored { hash, outcome: StoreOutcome::Stored, holders: Default::default() },
        10 => Message::NotFound { hash, holders: Default::default() },
        11 => Message::Leave,
        12 => Message::StatsRequest { nonce: rng.next_u64(), about: None },
        13 => {
            Message::Dead { peer: PeerInfo { id: NodeId(rng.next_u64()), addr: random_addr(rng) } }
        }
        14 => {
            let mut hashes = dht_core::wire::HashList::new();
            for _ in 0..rng.below(129) {
                let _ = hashes.push(random_hash(rng));
            }
            Message::Holdings { hashes }
        }
        15 => Message::Retry,
        16 => Message::ListRequest {
            nonce: rng.next_u64(),
            from: rng.next_u64() as u32 % 8,
            files_only: rng.chance(1, 2),
        },
        17 => {
            let mut page = dht_core::wire::ListPage::default();
            for _ in 0..rng.below(13) {
                let _ = page.entries.push(dht_core::wire::Listed {
                    hash: random_hash(rng),
                    kind: dht_core::wire::ListedKind::File,
                    copies: rng.next_u64() as u8,
                    size: rng.next_u64(),
                    name: "x".try_into().unwrap(),
                });
            }
            Message::List { nonce: rng.next_u64(), page }
        }
        _ => Message::Stats {
            nonce: 1,
            stats: dht_core::wire::NodeStats {
                held: 2,
                capacity: 3,
                neighbors: 4,
                joined: true,
                knows: false,
                uptime: 5,
                counters: Default::default(),
            },
        },
    };
    Packet { transmission, source, cookies, message }.encode(buf).unwrap()
}

/// A datagram: random bytes, or a valid packet broken in one of the ways a
/// buggy or malicious peer would break it.
fn hostile_datagram(rng: &mut Rng, fragment: &[u8; FRAGMENT_SIZE], out: &mut Vec<u8>) {
    out.clear();
    let mut buf = vec![0u8; MAX_DATAGRAM_SIZE + 64];
    if rng.chance(1, 5) {
        let len = rng.below(9_000);
        out.resize(len, 0);
        rng.fill_bytes(out);
        if rng.chance(1, 2) && !out.is_empty() {
            out[0] = 0xD2; // right version, garbage after it
        }
        return;
    }
    let len = valid_packet(rng, fragment, &mut buf);
    out.extend_from_slice(&buf[..len]);
    match rng.below(8) {
        0 => out.truncate(rng.below(len)),
        1 => {
            for _ in 0..1 + rng.below(5) {
                let at = rng.below(out.len());
                out[at] ^= 1 << rng.below(8);
            }
        }
        2 => out[0] = rng.next_u64() as u8 | 1, // never 0xD2
        3 => out.extend_from_slice(&[0xFF; 17]),
        4 => {
            // An oversized varint somewhere after the header.
            let at = 1 + rng.below(out.len().saturating_sub(1).max(1));
            let tail = out.split_off(at.min(out.len()));
            out.extend_from_slice(&[0xFF; 10]);
            out.extend_from_slice(&tail);
        }
        5 => {
            // Claim a huge count or length right after the message tag.
            let at = rng.below(out.len());
            out[at] = 0xFF;
            out.insert(at + 1, 0xFF);
        }
        6 => {} // well-formed: processed, must be handled sanely
        _ => {
            let cut = rng.below(out.len());
            out.truncate(cut);
            let extra = rng.below(64);
            for _ in 0..extra {
                out.push(rng.next_u64() as u8);
            }
        }
    }
}

#[test]
fn node_survives_100k_hostile_datagrams_and_still_serves() {
    let mut sim = Sim::new(21, Faults::default());
    let members =
        join_members(&mut sim, Config::member(), 64, 32, Duration::from_millis(2)).unwrap();
    sim.run_for(Duration::from_secs(1));

    // Store a file first.
    let data = random_bytes(1, 300_000);
    let sender = sim.add_client();
    sim.join(sender, members[0]);
    assert!(sim.run_until(Duration::from_secs(10), |s| s.is_joined(sender)));
    let hash = sim.start_upload(sender, "before.bin", data.clone()).unwrap();
    assert!(sim.run_until(Duration::from_secs(60), |s| s.app_done(sender)));
    assert_eq!(sim.upload_result(sender), Some(Ok(hash)));
    sim.run_for(Duration::from_secs(2));

    // The target: a member holding fragments.
    let target = *members.iter().max_by_key(|&&m| sim.node(m).unwrap().store().len()).unwrap();
    let held_before = sim.node(target).unwrap().store().len();
    assert!(held_before > 0);

    let mut rng = Rng::new(0xBAD);
    let fragment: [u8; FRAGMENT_SIZE] = random_bytes(2, FRAGMENT_SIZE).try_into().unwrap();
    let mut datagram = Vec::new();
    for i in 0..DATAGRAMS {
        hostile_datagram(&mut rng, &fragment, &mut datagram);
        let from = random_addr(&mut rng);
        sim.inject(target, from, &datagram);
        if i % 1000 == 0 {
            // Let the network carry whatever the node answered.
            sim.run_for(Duration::from_millis(5));
        }
    }
    sim.run_for(Duration::from_secs(2));

    let counters = sim.node(target).unwrap().counters().clone();
    let dropped: u64 = [DropReason::Malformed, DropReason::BadVersion, DropReason::Unproven]
        .iter()
        .map(|r| counters.drops_of(*r))
        .sum();
    assert!(counters.drops_of(DropReason::Malformed) > 30_000, "{counters}");
    assert!(counters.drops_of(DropReason::BadVersion) > 5_000, "{counters}");
    // Valid packets from addresses that never proved themselves change
    // nothing and get no more than a RETRY.
    assert!(counters.drops_of(DropReason::Unproven) > 5_000, "{counters}");
    assert!(dropped < DATAGRAMS as u64);
    // Whatever it stored, it stored only fragments that hash right.
    let store = sim.node(target).unwrap().store();
    assert!(store.len() >= held_before);
    for i in 0..store.len() {
        let hash = store.hash_at(i).unwrap();
        let bytes = store.get(&hash).unwrap();
        assert_eq!(FragmentHash::of(bytes), hash, "stored a fragment under a wrong hash");
    }

    // It still serves: a download through it as entry point, and a direct
    // FILEGET of a fragment it holds.
    let served_before = sim.node(target).unwrap().counters().fragments_served;
    let receiver = sim.add_client();
    sim.join(receiver, target);
    assert!(sim.run_until(Duration::from_secs(10), |s| s.is_joined(receiver)));
    sim.start_download(receiver, hash);
    assert!(sim.run_until(Duration::from_secs(120), |s| s.app_done(receiver)));
    match sim.download_result(receiver) {
        Some(Ok(bytes)) => assert!(*bytes == data, "downloaded bytes differ"),
        other => panic!("download through the attacked node failed: {other:?}"),
    }
    let probe = sim.add_client();
    let held = sim.node(target).unwrap().store().hash_at(0).unwrap();
    let target_addr = sim.addr(target);
    sim.command(probe, |node, now, mut out| {
        node.send_fileget(now, target_addr, held, u16::MAX, &mut out);
    });
    sim.run_for(Duration::from_millis(50));
    assert!(sim.node(target).unwrap().counters().fragments_served > served_before);
    let probe_rx =
        sim.node(probe).unwrap().counters().received_of(dht_core::wire::MessageKind::FileFrag);
    let pieces = 16 / u64::from(sim.node(probe).unwrap().piece_units());
    assert_eq!(probe_rx.datagrams, pieces, "the whole fragment, in pieces");
}
