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
use crate::wire::{MessageKind, StoreOutcome};

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

/// The member of `0..members` that ranks first for `hash`.
fn best_for(net: &Net, members: usize, hash: &FragmentHash) -> usize {
    let me = Some(net.node(0).me());
    let top = Holders::<3>::of_shard(hash, net.node(0).neighbors(), me, 3);
    let best = top.iter().next().map(|p| p.addr);
    (0..members).find(|i| Some(Net::addr(*i)) == best).unwrap_or(0)
}

/// Offers the fragment from a client to the member that ranks first for
/// it, as an upload would, and waits until that member holds it.
fn store_at_best(net: &mut Net, members: usize, data: &[u8; FRAGMENT_SIZE]) -> FragmentHash {
    let hash = FragmentHash::of(data);
    let target = best_for(net, members, &hash);
    let client = net.add_joined_client(0, Duration::from_secs(3));
    net.offer(client, target, data);
    assert!(net.run_until(Duration::from_secs(3), |n| n.node(target).store().contains(&hash)));
    hash
}

/// A client joined to `net` through member 0.
fn joined_client(net: &mut Net) -> usize {
    let client = net.add_joined_client(0, Duration::from_secs(3));
    net.drive();
    client
}

fn sent(net: &Net, i: usize, kind: MessageKind) -> u64 {
    net.node(i).counters().sent_of(kind).datagrams
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
fn a_dead_notice_only_makes_its_receivers_probe() {
    // Two members per shard: nobody moves to an empty shard meanwhile.
    let mut net = Net::joined(4, 32, 4);
    assert!(net.node(1).neighbors().contains_addr(net.node(2).me().addr));
    let teller = net.node(0).me();
    let alive = net.node(2).me();
    let source = Source { id: teller.id, addr: teller.addr, member: true, window: 0, full: false };
    let pings_before = sent(&net, 1, MessageKind::Ping);
    net.forge(
        1,
        teller.addr,
        source,
        Transmission::Singlecast,
        Message::Dead { peer: alive },
        true,
    );
    assert_eq!(sent(&net, 1, MessageKind::Ping), pings_before + 1, "node 1 probes it itself");
    net.run_for(Duration::from_secs(3));
    assert!(net.node(1).neighbors().contains_addr(alive.addr), "it answered: still there");

    // Now it is really gone: node 1 finds out by its own probes and does
    // not spread the word (the notice was not its own finding).
    let gone = alive.addr;
    net.lose(move |from, to, _| from == gone || to == gone);
    let dead_sent = sent(&net, 1, MessageKind::Dead);
    net.forge(
        1,
        teller.addr,
        source,
        Transmission::Singlecast,
        Message::Dead { peer: alive },
        true,
    );
    assert!(net.run_until(Duration::from_secs(3), |n| !n.node(1).neighbors().contains_addr(gone)));
    assert_eq!(sent(&net, 1, MessageKind::Dead), dead_sent);
}

#[test]
fn an_offer_for_another_shard_is_refused() {
    let mut net = shard_of(5, 3, 2, 4);
    let client = joined_client(&mut net);
    let (data, hash) = fragment_in(4, 1);
    net.offer(client, 0, &data);
    net.drive();
    assert!(!net.node(0).store().contains(&hash));
    assert_eq!(net.node(0).counters().drops_of(DropReason::WrongShard), 1);
    assert_eq!(net.offer_answers(client), [(Net::addr(0), StoreOutcome::WrongShard)]);
    assert_eq!(sent(&net, 0, MessageKind::FileGet), 0, "nothing was fetched");
}

#[test]
fn pieces_that_do_not_hash_right_are_not_kept() {
    let mut net = shard_of(6, 3, 2, 4);
    let client = joined_client(&mut net);
    // Every piece the client sends has its last byte changed on the way.
    let liar = Net::addr(client);
    net.tamper(move |from, _, bytes| {
        let piece = Packet::decode(bytes).is_ok_and(|p| p.message.kind() == MessageKind::FileFrag);
        if from == liar && piece {
            let last = bytes.len() - 1;
            bytes[last] ^= 1;
        }
    });
    let (data, hash) = fragment_in(3, 2);
    net.offer(client, 0, &data);
    net.run_for(Duration::from_secs(10));
    assert!(!net.node(0).store().contains(&hash));
    assert_eq!(net.node(0).store().len(), 0);
    assert!(net.node(0).counters().drops_of(DropReason::BadHash) >= 1);
    assert!(
        !net.offer_answers(client).iter().any(|(_, o)| o.is_held()),
        "{:?}",
        net.offer_answers(client)
    );
}

#[test]
fn a_fragment_lost_in_pieces_is_completed_by_asking_for_the_missing_ones() {
    let mut net = shard_of(13, 3, 2, 4);
    let client = joined_client(&mut net);
    // Half the pieces the client sends are lost, once each.
    let liar = Net::addr(client);
    let mut seen = std::collections::BTreeSet::new();
    net.lose(move |from, _, bytes| {
        let Ok(p) = Packet::decode(bytes) else { return false };
        if let Message::FileFrag { first_unit, .. } = p.message {
            return from == liar && first_unit % 4 == 0 && seen.insert(first_unit);
        }
        false
    });
    let (data, hash) = fragment_in(3, 7);
    net.offer(client, 0, &data);
    assert!(net.run_until(Duration::from_secs(5), |n| n.node(0).store().contains(&hash)));
    net.drive();
    // The first FILEGET asked for all 16 units; later ones only for what was lost.
    let gets = sent(&net, 0, MessageKind::FileGet);
    assert!(gets >= 2, "{gets} FILEGETs");
    let pieces = net.node(client).counters().sent_of(MessageKind::FileFrag).datagrams;
    let per_fragment = 16 / u64::from(net.node(0).piece_units());
    assert!(pieces < 2 * per_fragment, "{pieces} pieces sent for {per_fragment} per fragment");
    assert_eq!(net.offer_answers(client), [(Net::addr(0), StoreOutcome::Stored)]);
}

#[test]
fn a_fragment_stored_by_one_member_is_copied_to_its_top_three() {
    let mut net = shard_of(7, 9, 6, 8);
    // The best-ranked member takes the upload and announces it.
    let (data, _) = fragment_in(9, 3);
    let hash = store_at_best(&mut net, 6, &data);
    assert!(net.run_until(Duration::from_secs(3), |n| holders(n, &hash) >= 3));
    net.run_for(Duration::from_secs(5));
    // The other shards are empty, so the lowest-id member may move to one
    // meanwhile (keeping its copy until the collector drops it): the
    // shard itself keeps exactly R.
    let in_shard = net
        .hosts
        .iter()
        .filter(|h| h.node.shard() == hash.shard() && h.node.store().contains(&hash))
        .count();
    assert_eq!(in_shard, 3, "exactly R copies in the shard");
}

#[test]
fn a_member_that_should_not_hold_a_fragment_names_those_that_should() {
    let mut net = shard_of(8, 9, 6, 8);
    let (data, hash) = fragment_in(9, 4);
    let top = Holders::<3>::of_shard(&hash, net.node(0).neighbors(), Some(net.node(0).me()), 3);
    let outsider = (0..6).find(|i| !top.contains_addr(Net::addr(*i))).unwrap();
    let client = joined_client(&mut net);
    net.offer(client, outsider, &data);
    net.drive();
    assert!(!net.node(outsider).store().contains(&hash), "the upload went elsewhere");
    assert_eq!(net.offer_answers(client), [(Net::addr(outsider), StoreOutcome::NotHolder)]);
    assert_eq!(sent(&net, outsider, MessageKind::FileGet), 0);
}

#[test]
fn a_table_takes_only_peers_that_prove_their_address() {
    let mut net = shard_of(14, 5, 2, 4);
    let stranger = PeerAddr::v4([127, 0, 0, 1], 30_000);
    let id = NodeId::in_shard(5, Shard::new(5).unwrap());
    let source = Source { id, addr: stranger, member: true, window: 0, full: false };
    let pings = sent(&net, 0, MessageKind::Ping);
    net.forge(0, stranger, source, Transmission::Singlecast, Message::AddMe, false);
    assert!(!net.node(0).neighbors().contains_addr(stranger), "an unproven ADDME adds nobody");
    assert_eq!(
        sent(&net, 0, MessageKind::Ping),
        pings + 1,
        "but the stranger is asked to prove it"
    );
    net.forge(0, stranger, source, Transmission::Singlecast, Message::AddMe, true);
    assert!(net.node(0).neighbors().contains_addr(stranger), "a proven one does");

    // A claim of the stranger's address or id from elsewhere changes nothing.
    let liar = PeerAddr::v4([127, 0, 0, 1], 30_001);
    let claim = Source { id, addr: liar, member: true, window: 0, full: false };
    net.forge(0, liar, claim, Transmission::Singlecast, Message::AddMe, true);
    assert!(!net.node(0).neighbors().contains_addr(liar));
    assert!(net.node(0).neighbors().contains_addr(stranger));
    let mate = net.node(1).me();
    let leave = Source { id: mate.id, addr: mate.addr, member: true, window: 0, full: false };
    net.forge(0, liar, leave, Transmission::Singlecast, Message::Leave, true);
    assert!(
        net.node(0).neighbors().contains_addr(mate.addr),
        "a LEAVE counts only from the leaver"
    );
}

#[test]
fn unproven_askers_get_no_more_than_they_sent_at_their_own_address() {
    let mut net = shard_of(15, 5, 2, 4);
    let asker = PeerAddr::v4([127, 0, 0, 1], 30_000);
    let victim = PeerAddr::v4([127, 0, 0, 1], 30_002);
    let source = Source { id: NodeId(99), addr: victim, member: false, window: 0, full: false };
    let join = Message::Join { want: 32, shard: None };
    let destinations = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
    let seen = destinations.clone();
    net.lose(move |_, to, _| {
        seen.borrow_mut().push(to);
        false
    });
    let peers = sent(&net, 0, MessageKind::Peers);
    let retries = sent(&net, 0, MessageKind::Retry);
    net.forge(0, asker, source, Transmission::Singlecast, join.clone(), false);
    assert_eq!(sent(&net, 0, MessageKind::Peers), peers, "no list for an unproven asker");
    assert_eq!(sent(&net, 0, MessageKind::Retry), retries + 1, "a RETRY instead");
    let retry = net.node(0).counters().sent_of(MessageKind::Retry).bytes / (retries + 1);
    assert!(retry <= crate::node::UNPROVEN_MIN as u64, "{retry} bytes");
    net.forge(0, asker, source, Transmission::Singlecast, join, true);
    assert_eq!(sent(&net, 0, MessageKind::Peers), peers + 1, "a proven asker gets its list");
    assert!(destinations.borrow().iter().all(|to| *to != victim), "nothing to the claimed address");
    let get = Message::FileGet { hash: FragmentHash([1; 32]), want: u16::MAX, piece_units: 16 };
    let broadcast = Transmission::Broadcast { breadth: 3, uid: 5 };
    net.forge(0, asker, source, broadcast, get, true);
    assert_eq!(net.node(0).counters().drops_of(DropReason::NotRelayable), 1);
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
    let client = joined_client(&mut net);
    let relayed_before: u64 = net.hosts.iter().map(|h| h.node.counters().relayed).sum();
    let mut nonce = 0;
    net.command(client, |node, now, out| {
        nonce = node.ping(now, Net::addr(0), Transmission::Randomcast { hops: 3 }, None, out)
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
    net.command(0, |node, now, out| {
        let nonce = 77;
        node.broadcast(now, 3, &Message::Ping { nonce }, out);
    });
    net.drive();
    let pongs = net.node(0).counters().received_of(crate::wire::MessageKind::Pong).datagrams;
    assert_eq!(pongs - pongs_before, 7, "each other node answered once");
    let duplicates: u64 =
        net.hosts.iter().map(|h| h.node.counters().drops_of(DropReason::DuplicateBroadcast)).sum();
    assert!(duplicates > 0, "copies arrived and were dropped");
}

#[test]
fn a_broadcast_seen_with_no_breadth_left_is_relayed_when_a_wider_copy_comes() {
    let mut net = Net::joined(12, 8, 4);
    net.drive();
    // Two neighbors of node 0; the second originated the broadcast.
    let (relay, origin) = (net.node(1).me(), net.node(2).me());
    assert!(net.node(0).neighbors().contains_addr(relay.addr));
    assert!(net.node(0).neighbors().contains_addr(origin.addr));
    let source = Source { id: origin.id, addr: origin.addr, member: true, window: 0, full: false };
    let ping = || Message::Ping { nonce: 42 };
    let (pings, pongs) = (sent(&net, 0, MessageKind::Ping), sent(&net, 0, MessageKind::Pong));
    let duplicates = net.node(0).counters().drops_of(DropReason::DuplicateBroadcast);
    // The copy that came the long way first: answered, not relayed.
    let spent = Transmission::Broadcast { breadth: 0, uid: 77 };
    net.forge(0, relay.addr, source, spent, ping(), true);
    assert_eq!(sent(&net, 0, MessageKind::Pong), pongs + 1, "answered once");
    assert_eq!(sent(&net, 0, MessageKind::Ping), pings, "no breadth left: not relayed");
    // A copy with breadth left, later: relayed to the other neighbors, not
    // answered again.
    let wider = Transmission::Broadcast { breadth: 2, uid: 77 };
    net.forge(0, relay.addr, source, wider, ping(), true);
    let others = net.node(0).neighbors().len() as u64 - 2;
    assert_eq!(sent(&net, 0, MessageKind::Ping), pings + others, "relayed to the rest");
    assert_eq!(sent(&net, 0, MessageKind::Pong), pongs + 1, "not answered twice");
    // The same breadth again is a duplicate.
    net.forge(0, relay.addr, source, wider, ping(), true);
    assert_eq!(sent(&net, 0, MessageKind::Ping), pings + others);
    assert_eq!(net.node(0).counters().drops_of(DropReason::DuplicateBroadcast), duplicates + 1);
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

#[test]
fn members_started_together_cover_the_shards_and_never_move_back() {
    // Sixteen members: the first (the root, in shard 0) and fifteen that
    // may choose their shard and all join through it at the same instant,
    // as a scene started at once does.
    for seed in 0..4 {
        let mut net = Net::new(100 + seed);
        for _ in 0..16 {
            let i = net.add_member(0, 64);
            net.hosts[i].node.choose_shard_on_join(i > 0);
        }
        for i in 1..16 {
            net.join(i, 0);
        }
        let shards = |net: &Net| -> Vec<u8> {
            net.hosts.iter().map(|h| h.node.me().shard().get()).collect::<Vec<_>>()
        };
        let mut history: Vec<Vec<u8>> = (0..16).map(|i| std::vec![shards(&net)[i]]).collect();
        let mut covered_at = None;
        for second in 1..=90u64 {
            net.run_for(Duration::from_secs(1));
            for (i, shard) in shards(&net).into_iter().enumerate() {
                if history[i].last() != Some(&shard) {
                    history[i].push(shard);
                }
            }
            let mut seen = shards(&net);
            seen.sort_unstable();
            seen.dedup();
            if covered_at.is_none() && seen.len() == 16 {
                covered_at = Some(second);
            }
        }
        for (i, path) in history.iter().enumerate() {
            let mut distinct = path.clone();
            distinct.sort_unstable();
            distinct.dedup();
            assert_eq!(distinct.len(), path.len(), "seed {seed}: node {i} moved {path:?}");
        }
        let moves: usize = history.iter().map(|p| p.len() - 1).sum();
        std::println!("seed {seed}: shards covered after {covered_at:?} s, {moves} moves");
        assert!(covered_at.is_some(), "seed {seed}: shards never all covered: {history:?}");
    }
}

/// Datagrams and bytes the network sends to `victim` (they are counted
/// and lost).
fn watch_victim(net: &mut Net, victim: PeerAddr) -> std::rc::Rc<core::cell::Cell<(usize, usize)>> {
    let count = std::rc::Rc::new(core::cell::Cell::new((0, 0)));
    let seen = count.clone();
    net.lose(move |_, to, bytes| {
        if to == victim {
            let (n, b) = seen.get();
            seen.set((n + 1, b + bytes.len()));
        }
        to == victim
    });
    count
}

/// The size of `message` sent as `transmission` from `source`, proven.
fn forged_len(source: Source, transmission: Transmission, message: &Message<'_>) -> usize {
    let echo = Some(crate::wire::Cookie([0; 8]));
    let cookies = crate::wire::Cookies { echo, grant: None };
    let packet = crate::wire::Packet { transmission, source, cookies, message: message.clone() };
    let mut buf = std::vec![0u8; 9000];
    packet.encode(&mut buf).expect("fits")
}

#[test]
fn a_relayed_message_naming_a_victim_as_originator_gets_it_no_more_than_was_sent() {
    // A hostile neighbor (it proved its own address and sits in the
    // tables) names a victim as the originator of broadcasts and
    // randomcasts. Nobody here heard from the victim: a broadcast gets no
    // answer (only a probe per node), the end of a walk answers with no
    // more than it got.
    let mut net = Net::joined(9, 32, 16);
    let victim = PeerAddr::v4([127, 0, 0, 1], 30_000);
    let count = watch_victim(&mut net, victim);
    let hostile = Net::addr(1);
    assert!(net.node(0).neighbors().iter().any(|n| n.peer.addr == hostile));
    let shard = crate::id::Shard::new(3).unwrap();
    let spoofed = Source {
        id: NodeId::in_shard(77, shard),
        addr: victim,
        member: true,
        window: 0,
        full: false,
    };
    let messages = [Message::Ping { nonce: 1 }, Message::Find { shard, nonce: 2 }, Message::AddMe];
    for (k, message) in messages.iter().enumerate() {
        let broadcast = Transmission::Broadcast { breadth: 255, uid: 1000 + k as u64 };
        net.forge(0, hostile, spoofed, broadcast, message.clone(), true);
        net.run_for(Duration::from_secs(2));
    }
    // No answers: each member reached probes the named originator with one
    // PING (the price of learning far-off DEAD senders; see dispatch).
    let (probes, _) = count.get();
    assert!(probes <= messages.len() * net.hosts.len(), "{probes} datagrams to the victim");
    std::println!("3 broadcasts naming a victim: {probes} probes to it, no answers");
    count.set((0, 0));
    let mut sent = 0;
    for message in &messages {
        let walk = Transmission::Randomcast { hops: 0 };
        sent += forged_len(spoofed, walk, message);
        net.forge(0, hostile, spoofed, walk, message.clone(), true);
        net.run_for(Duration::from_secs(2));
    }
    let (datagrams, got) = count.get();
    assert!(datagrams <= messages.len(), "{datagrams} datagrams for {} walks", messages.len());
    assert!(got <= sent, "the victim got {got} bytes for {sent}");
    // A host outside the tables that proved its own address fares no
    // better: its walks are answered as little, its broadcasts not at all.
    let stranger = PeerAddr::v4([127, 0, 0, 1], 30_001);
    for (k, message) in messages.iter().enumerate() {
        let walk = Transmission::Randomcast { hops: 3 };
        sent += forged_len(spoofed, walk, message);
        net.forge(0, stranger, spoofed, walk, message.clone(), true);
        let broadcast = Transmission::Broadcast { breadth: 255, uid: 2000 + k as u64 };
        sent += forged_len(spoofed, broadcast, message);
        net.forge(0, stranger, spoofed, broadcast, message.clone(), true);
        net.run_for(Duration::from_secs(2));
    }
    let (datagrams, got) = count.get();
    assert!(
        datagrams <= 2 * messages.len(),
        "{datagrams} datagrams for {} walks",
        2 * messages.len()
    );
    assert!(got <= sent, "the victim got {got} bytes for {sent}");
}
