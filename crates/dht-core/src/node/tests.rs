//! The node's behaviours, each shown on a few nodes of the test harness.

extern crate std;

use std::vec::Vec;

use super::*;
use crate::counters::DropReason;
use crate::fragment::FRAGMENT_SIZE;
use crate::rand::Rng;
use crate::store::FragmentStore;
use crate::testing::{bytes, Net};
use crate::time::Duration;
use crate::wire::{FragmentRef, StoreOutcome};

/// `count` members of `shard` joined through the first.
fn shard_of(seed: u64, shard: u8, count: usize, capacity: usize) -> Net {
    let mut net = Net::new(seed);
    for _ in 0..count {
        net.add_member(shard, capacity);
    }
    for i in 1..count {
        net.join(i, 0);
        net.run_for(Duration::from_millis(5));
    }
    assert!(net.run_until(Duration::from_secs(5), |n| n.hosts.iter().all(|h| h.node.is_joined())));
    net.run_for(Duration::from_secs(1));
    net
}

/// A fragment whose hash falls in `shard`.
fn fragment_in(shard: u8, seed: u64) -> ([u8; FRAGMENT_SIZE], FragmentHash) {
    let mut rng = Rng::new(seed);
    loop {
        let mut data = [0u8; FRAGMENT_SIZE];
        rng.fill_bytes(&mut data);
        let hash = FragmentHash::of(&data);
        if hash.shard().get() == shard {
            return (data, hash);
        }
    }
}

fn store_request(from: PeerAddr, id: NodeId, data: &[u8; FRAGMENT_SIZE]) -> Vec<u8> {
    let packet = Packet {
        transmission: Transmission::Singlecast,
        source: Source { id, addr: from, member: false, window: 0 },
        message: Message::FileFrag {
            mode: FragMode::Store,
            hash: FragmentHash::of(data),
            data: FragmentRef(data),
        },
    };
    let mut buf = std::vec![0u8; crate::config::MAX_DATAGRAM_SIZE];
    let len = packet.encode(&mut buf).unwrap();
    buf.truncate(len);
    buf
}

/// Sends the fragment as a client's store request to the member that ranks
/// first for it, as an upload would.
fn store_at_best(net: &mut Net, members: usize, data: &[u8; FRAGMENT_SIZE]) -> FragmentHash {
    let hash = FragmentHash::of(data);
    let me = Some(net.node(0).me());
    let top = Holders::<3>::of_shard(&hash, net.node(0).neighbors(), me, 3, Rank::ByScore);
    let best = top.iter().next().map(|p| p.addr);
    let target = (0..members).find(|i| Some(Net::addr(*i)) == best).unwrap_or(0);
    let client = PeerAddr::v4([127, 0, 0, 1], 20_000);
    net.inject(target, client, &store_request(client, NodeId(99), data));
    assert!(net.node(target).store().contains(&hash));
    hash
}

fn holders(net: &Net, hash: &FragmentHash) -> usize {
    net.hosts.iter().filter(|h| !h.node.has_left() && h.node.store().contains(hash)).count()
}

#[test]
fn a_member_joins_through_a_seed_and_both_know_each_other() {
    let mut net = Net::new(1);
    let a = net.add_member(0, 4);
    let b = net.add_member(1, 4);
    net.join(b, a);
    assert!(net.run_until(Duration::from_secs(2), |n| n.node(b).is_joined()));
    net.drive();
    assert!(net.node(a).neighbors().contains_addr(Net::addr(b)));
    assert!(net.node(b).neighbors().contains_addr(Net::addr(a)));
    assert!(net.hosts[b].events().iter().any(|e| matches!(e, Event::Joined { neighbors: 1 })));
}

#[test]
fn a_join_without_answer_is_retried_with_backoff() {
    let mut net = Net::new(2);
    let a = net.add_member(0, 4);
    let b = net.add_member(1, 4);
    net.lose(|_, _, _| true);
    net.join(b, a);
    net.run_for(Duration::from_secs(4));
    let retries: Vec<u8> = net.hosts[b]
        .events()
        .iter()
        .filter_map(|e| match e {
            Event::JoinRetry { attempt } => Some(*attempt),
            _ => None,
        })
        .collect();
    // After 0.25 s, then 0.5, 1 and 2 s apart: four retries in four seconds.
    assert_eq!(retries, [1, 2, 3, 4]);
    assert!(!net.node(b).is_joined());
}

#[test]
fn a_silent_member_is_found_dead_by_its_watchers_and_dropped_everywhere() {
    // Three members per shard: the victim's two shard mates watch it.
    let mut net = Net::joined(3, 48, 4);
    let victim = 20;
    let gone = Net::addr(victim);
    net.lose(move |from, to, _| from == gone || to == gone);
    let start = net.now;
    let others: Vec<usize> = (0..48).filter(|i| *i != victim).collect();
    let reported = |n: &Net| {
        others.iter().any(|i| {
            n.hosts[*i]
                .events()
                .iter()
                .any(|e| matches!(e, Event::NeighborDead(p) if p.addr == gone))
        })
    };
    assert!(net.run_until(Duration::from_secs(10), reported), "nobody found it dead");
    // A watcher probes a mate silent for 3 s (3.75 s for the one of a pair
    // with the higher id), and five probes 300 ms apart find it dead.
    let found = net.now - start;
    assert!(found <= Duration::from_millis(5_300), "found dead after {found}");
    let dropped = net.run_until(Duration::from_secs(20), |n| {
        others.iter().all(|i| !n.node(*i).neighbors().contains_addr(gone))
    });
    assert!(dropped, "the silent member is still in some table");
    std::println!("found dead after {found}, gone from every table after {}", net.now - start);
}

#[test]
fn a_quiet_neighbor_listed_by_others_is_still_probed() {
    // Hearsay keeps no one alive: a neighbor that sends nothing is probed
    // although PEERS answers keep listing it.
    let mut net = Net::joined(12, 32, 4);
    let victim = 7;
    let gone = Net::addr(victim);
    net.lose(move |from, _, _| from == gone);
    let pings_to_victim = |n: &Net| {
        (0..32).filter(|i| *i != victim).any(|i| !n.node(i).neighbors().contains_addr(gone))
    };
    assert!(net.run_until(Duration::from_secs(30), pings_to_victim));
}

#[test]
fn a_node_told_of_its_own_death_announces_it_is_alive() {
    let mut net = shard_of(4, 6, 3, 4);
    let me = net.node(2).me();
    let teller = net.node(0).me();
    let packet = Packet {
        transmission: Transmission::Singlecast,
        source: Source { id: teller.id, addr: teller.addr, member: true, window: 0 },
        message: Message::Dead { peer: me },
    };
    let mut buf = [0u8; 128];
    let len = packet.encode(&mut buf).unwrap();
    let sent_before = net.node(2).counters().sent_of(crate::wire::MessageKind::AddMe).datagrams;
    net.inject(2, Net::addr(0), &buf[..len]);
    let sent = net.node(2).counters().sent_of(crate::wire::MessageKind::AddMe).datagrams;
    assert_eq!(sent - sent_before, net.node(2).neighbors().len() as u64);
}

#[test]
fn a_store_request_for_another_shard_is_refused() {
    let mut net = shard_of(5, 3, 2, 4);
    let (data, hash) = fragment_in(4, 1);
    let client = PeerAddr::v4([127, 0, 0, 1], 20_000);
    net.inject(0, client, &store_request(client, NodeId(99), &data));
    assert!(!net.node(0).store().contains(&hash));
    assert_eq!(net.node(0).counters().drops_of(DropReason::WrongShard), 1);
}

#[test]
fn a_fragment_with_a_wrong_hash_is_dropped_and_counted() {
    let mut net = shard_of(6, 3, 2, 4);
    let (data, _) = fragment_in(3, 2);
    let client = PeerAddr::v4([127, 0, 0, 1], 20_000);
    let mut datagram = store_request(client, NodeId(99), &data);
    let last = datagram.len() - 1;
    datagram[last] ^= 1;
    net.inject(0, client, &datagram);
    assert_eq!(net.node(0).store().len(), 0);
    assert_eq!(net.node(0).counters().drops_of(DropReason::BadHash), 1);
}

#[test]
fn a_fragment_stored_by_one_member_is_copied_to_its_top_three() {
    let mut net = shard_of(7, 9, 6, 8);
    // The best-ranked member takes the upload and announces it.
    let (data, _) = fragment_in(9, 3);
    let hash = store_at_best(&mut net, 6, &data);
    assert!(net.run_until(Duration::from_secs(3), |n| holders(n, &hash) >= 3));
    net.run_for(Duration::from_secs(5));
    assert_eq!(holders(&net, &hash), 3, "exactly R copies");
}

#[test]
fn a_member_that_should_not_hold_a_fragment_names_those_that_should() {
    let mut net = shard_of(8, 9, 6, 8);
    let (data, hash) = fragment_in(9, 4);
    let top = Holders::<3>::of_shard(
        &hash,
        net.node(0).neighbors(),
        Some(net.node(0).me()),
        3,
        Rank::ByScore,
    );
    let outsider = (0..6).find(|i| !top.contains_addr(Net::addr(*i))).unwrap();
    let client = PeerAddr::v4([127, 0, 0, 1], 20_000);
    net.inject(outsider, client, &store_request(client, NodeId(99), &data));
    assert!(!net.node(outsider).store().contains(&hash), "the upload went elsewhere");
    let stored = net.node(outsider).counters().sent_of(crate::wire::MessageKind::Stored);
    assert_eq!(stored.datagrams, 1, "answered NotHolder with the holders");
    let _ = StoreOutcome::NotHolder;
}

#[test]
fn a_leaving_member_hands_off_at_every_acknowledgement_and_leaves_quickly() {
    let mut net = shard_of(9, 9, 6, 64);
    let mut hashes = Vec::new();
    for seed in 0..20 {
        let (data, _) = fragment_in(9, 100 + seed);
        hashes.push(store_at_best(&mut net, 6, &data));
    }
    net.run_for(Duration::from_secs(5));
    let leaver = (0..6).max_by_key(|i| net.node(*i).store().len()).unwrap();
    let held = net.node(leaver).store().len();
    assert!(held > 5);
    let start = net.now;
    net.command(leaver, |node, now, out| node.leave(now, out));
    assert!(net.run_until(Duration::from_secs(6), |n| n.node(leaver).has_left()));
    let took = net.now - start;
    assert!(took < Duration::from_millis(100), "the hand-off took {took}");
    let left = net.hosts[leaver].events().iter().find_map(|e| match e {
        Event::Left { handed_off, complete } => Some((*handed_off, *complete)),
        _ => None,
    });
    let (handed_off, complete) = left.expect("a Left event");
    assert!(complete);
    assert!(handed_off >= 1, "it held {held} and handed off {handed_off}");
    net.run_for(Duration::from_secs(3));
    for hash in &hashes {
        assert!(holders(&net, hash) >= 3, "{hash:?} fell below R after the leave");
    }
    for i in (0..6).filter(|i| *i != leaver) {
        assert!(!net.node(i).neighbors().contains_addr(Net::addr(leaver)));
    }
}

#[test]
fn a_randomcast_is_processed_only_at_the_end_of_its_walk() {
    let mut net = Net::joined(10, 8, 4);
    let client = net.add_client();
    net.join(client, 0);
    assert!(net.run_until(Duration::from_secs(3), |n| n.node(client).is_joined()));
    net.drive();
    let relayed_before: u64 = net.hosts.iter().map(|h| h.node.counters().relayed).sum();
    let mut nonce = 0;
    net.command(client, |node, _, out| {
        nonce = node.ping(Net::addr(0), Transmission::Randomcast { hops: 3 }, None, out)
    });
    net.drive();
    let relayed: u64 = net.hosts.iter().map(|h| h.node.counters().relayed).sum();
    assert_eq!(relayed - relayed_before, 3, "three forwards");
    let pongs: u64 = net
        .hosts
        .iter()
        .map(|h| h.node.counters().sent_of(crate::wire::MessageKind::Pong).datagrams)
        .sum();
    assert!(pongs >= 1);
}

#[test]
fn a_broadcast_is_processed_once_per_node_however_often_it_arrives() {
    let mut net = Net::joined(11, 8, 4);
    net.drive();
    let pongs_before = net.node(0).counters().received_of(crate::wire::MessageKind::Pong).datagrams;
    net.command(0, |node, _, out| {
        let nonce = 77;
        node.broadcast(3, &Message::Ping { nonce }, out);
    });
    net.drive();
    let pongs = net.node(0).counters().received_of(crate::wire::MessageKind::Pong).datagrams;
    assert_eq!(pongs - pongs_before, 7, "each other node answered once");
    let duplicates: u64 =
        net.hosts.iter().map(|h| h.node.counters().drops_of(DropReason::DuplicateBroadcast)).sum();
    assert!(duplicates > 0, "copies arrived and were dropped");
}

#[test]
fn the_wake_up_invariant_holds_under_loss_churn_and_leaves() {
    // The harness asserts the invariant after every wake-up; this runs it
    // through many states: joins, uploads, downloads, 20 % loss, a leave,
    // a node cut off, for several seeds.
    for seed in 0..6u64 {
        let mut net = Net::joined(100 + seed, 20, 16);
        let mut rng = Rng::new(seed);
        net.lose(move |_, _, _| rng.chance(1, 5));
        let client = net.add_client();
        net.join(client, 1);
        net.run_until(Duration::from_secs(10), |n| n.node(client).is_joined());
        let hash = net.upload(client, "x.bin", bytes(seed, 3 * FRAGMENT_SIZE + 7));
        net.run_for(Duration::from_secs(2));
        net.command(5, |node, now, out| node.leave(now, out));
        net.run_for(Duration::from_secs(10));
        let reader = net.add_client();
        net.join(reader, 2);
        net.run_until(Duration::from_secs(10), |n| n.node(reader).is_joined());
        net.download(reader, hash);
        net.run_for(Duration::from_secs(20));
        assert!(net.delivered > 1_000, "seed {seed}: only {} datagrams", net.delivered);
    }
}
