//! One hostile host against a 256-node network: every attack the
//! hostile-network issue lists, tried as an attacker would, each showing
//! the defence holding and printing its figure (run with `--nocapture`).
//!
//! The attacker is a raw host: it sends whatever bytes it likes, from its
//! own address or (where it says so) from a spoofed one, and sees what
//! comes back to its own address.

use dht_core::auth::NetworkKey;
use dht_core::counters::DropReason;
use dht_core::fragment::{FragmentHash, FRAGMENT_SIZE};
use dht_core::holders::Holders;
use dht_core::rand::Rng;
use dht_core::store::FragmentStore;
use dht_core::wire::{
    Cookie, Cookies, HashList, HolderList, Message, MessageKind, NodeStats, Packet, PeerList,
    PieceRef, Source, StoreOutcome, Transmission,
};
use dht_core::{Config, Duration, NodeId, PeerAddr, PeerInfo, Shard};
use dht_sim::scene::{file_hashes, join_members, random_bytes};
use dht_sim::{Faults, HostId, Sim};

const NODES: usize = 256;

/// A settled 256-node network holding a file; its members.
fn network(seed: u64, key: Option<NetworkKey>) -> (Sim, Vec<HostId>, Vec<FragmentHash>) {
    let mut sim = Sim::new(seed, Faults::default());
    sim.set_network_key(key);
    let members = join_members(&mut sim, Config::member(), 64, NODES, Duration::from_millis(1))
        .expect("every node joins");
    sim.run_for(Duration::from_secs(2));
    let client = sim.add_client();
    sim.join(client, members[5]);
    assert!(sim.run_until(Duration::from_secs(10), |s| s.is_joined(client)));
    let data = random_bytes(seed, 200_000);
    let hash = sim.start_upload(client, "f", data.clone()).expect("upload starts");
    assert!(sim.run_until(Duration::from_secs(60), |s| s.app_done(client)));
    assert_eq!(sim.upload_result(client), Some(Ok(hash)));
    sim.run_for(Duration::from_secs(3));
    let mut fragments = file_hashes("f", &data);
    fragments.push(hash);
    (sim, members, fragments)
}

fn source(id: NodeId, addr: PeerAddr, member: bool) -> Source {
    Source { id, addr, member, window: 0, full: false }
}

/// Encodes `message` as `transmission` from `source` with `cookies`,
/// padded to `min` bytes.
fn datagram(
    transmission: Transmission,
    source: Source,
    cookies: Cookies,
    message: Message<'_>,
    min: usize,
) -> Vec<u8> {
    let packet = Packet { transmission, source, cookies, message };
    let mut buf = vec![0u8; 9000];
    let len = packet.encode_padded(&mut buf, min).expect("fits");
    buf.truncate(len);
    buf
}

/// One message of each kind, with fields an attacker would pick to make
/// the answer as large as possible.
fn every_message(hash: FragmentHash, peers: &[PeerInfo], piece: &[u8]) -> Vec<Message<'static>> {
    let mut list = PeerList::new();
    for p in peers.iter().take(list.capacity()) {
        let _ = list.push(*p);
    }
    let mut holders = HolderList::new();
    for p in peers.iter().take(holders.capacity()) {
        let _ = holders.push(*p);
    }
    let mut hashes = HashList::new();
    while hashes.push(hash).is_ok() {}
    let piece: &'static [u8] = Box::leak(piece.to_vec().into_boxed_slice());
    let stats = NodeStats {
        held: 1,
        capacity: 1,
        neighbors: 1,
        joined: true,
        knows: false,
        uptime: 1,
        counters: Default::default(),
    };
    let mut page = dht_core::wire::ListPage::default();
    let listed = dht_core::wire::Listed {
        hash,
        kind: dht_core::wire::ListedKind::File,
        copies: 3,
        size: u64::MAX,
        name: "a name as long as they come..".try_into().unwrap(),
    };
    while page.entries.push(listed.clone()).is_ok() {}
    let shard = hash.shard();
    let all = vec![
        Message::Join { want: 255, shard: None },
        Message::Peers { peers: list },
        Message::AddMe,
        Message::Ping { nonce: 1 },
        Message::Pong { nonce: 1, dead: None },
        Message::FileFrag { hash, first_unit: 0, data: PieceRef(piece) },
        Message::FileGet { hash, want: u16::MAX, piece_units: 16 },
        Message::Find { shard, nonce: 2 },
        Message::NewFile { hash, urgent: true, copies: 0 },
        Message::Stored { hash, outcome: StoreOutcome::Stored, holders: holders.clone() },
        Message::NotFound { hash, holders },
        Message::Leave,
        Message::StatsRequest { nonce: 3, about: None },
        Message::Stats { nonce: 3, stats },
        Message::Holdings { hashes },
        Message::Dead { peer: peers[0] },
        Message::Retry,
        Message::ListRequest { nonce: 4, from: 0, files_only: false },
        Message::List { nonce: 4, page },
    ];
    assert_eq!(all.len(), MessageKind::COUNT, "one of each kind");
    all
}

fn transmissions(rng: &mut Rng) -> [Transmission; 3] {
    [
        Transmission::Singlecast,
        Transmission::Randomcast { hops: 255 },
        Transmission::Broadcast { breadth: 255, uid: rng.next_u64() },
    ]
}

/// Members of the network, as peers.
fn peers(sim: &Sim, members: &[HostId]) -> Vec<PeerInfo> {
    members.iter().filter_map(|m| sim.node(*m)).map(|n| n.me()).collect()
}

/// A member holding `hash`.
fn holder(sim: &Sim, hash: &FragmentHash) -> HostId {
    sim.holders_of(hash)[0]
}

/// Gets the attacker `a` a cookie from `target` (its own address proves
/// itself by receiving the PONG): a padded first PING, then the grant.
fn prove(sim: &mut Sim, a: HostId, target: PeerAddr) -> Cookie {
    let me = sim.addr(a);
    let ping = datagram(
        Transmission::Singlecast,
        source(NodeId(7), me, false),
        Cookies::NONE,
        Message::Ping { nonce: 99 },
        dht_core::node::UNPROVEN_MIN,
    );
    let seen = sim.raw_received(a).len();
    sim.send_raw(a, me, target, ping);
    sim.run_for(Duration::from_millis(20));
    sim.raw_received(a)[seen..]
        .iter()
        .filter(|(from, _)| *from == target)
        .find_map(|(_, bytes)| Packet::decode(bytes).ok()?.cookies.grant)
        .expect("the target answers a padded PING with a PONG and its cookie")
}

fn bytes_received(sim: &Sim, host: HostId) -> usize {
    sim.raw_received(host).iter().map(|(_, b)| b.len()).sum()
}

#[test]
fn no_message_sends_a_spoofed_victim_more_than_the_attacker_sent() {
    let (mut sim, members, fragments) = network(1, None);
    let attacker = sim.add_raw();
    let victim = sim.add_raw();
    let v = sim.addr(victim);
    let mut rng = Rng::new(5);
    let piece = random_bytes(3, 8192);
    let everyone = peers(&sim, &members);
    let held = fragments[0];
    let target = sim.addr(holder(&sim, &held));
    let mut total_sent = 0usize;
    println!("kind      attacker bytes  victim bytes");
    for (k, message) in every_message(held, &everyone, &piece).into_iter().enumerate() {
        let before = bytes_received(&sim, victim);
        let mut sent = 0;
        for transmission in transmissions(&mut rng) {
            for pad in [0, dht_core::node::UNPROVEN_MIN, 1400] {
                // The victim's address as UDP source and as the claimed
                // originator, with an id in the target's shard, a member;
                // cookies made up (the attacker never sees the real ones).
                let id = NodeId::in_shard(rng.next_u64(), held.shard());
                let cookies = Cookies {
                    echo: Some(Cookie(rng.next_u64().to_le_bytes())),
                    grant: Some(Cookie([1; 8])),
                };
                let bytes =
                    datagram(transmission, source(id, v, true), cookies, message.clone(), pad);
                sent += bytes.len();
                sim.send_raw(attacker, v, target, bytes);
                sim.run_for(Duration::from_millis(10));
            }
        }
        sim.run_for(Duration::from_secs(2));
        let got = bytes_received(&sim, victim) - before;
        println!("{:9} {sent:14} {got:13}", MessageKind::ALL[k].name());
        assert!(
            got <= sent,
            "{}: the victim got {got} bytes for {sent}",
            MessageKind::ALL[k].name()
        );
        total_sent += sent;
    }
    let total = bytes_received(&sim, victim);
    println!("in all: attacker sent {total_sent} bytes, the victim received {total}");
    assert!(total <= total_sent);
}

/// Datagrams the network carries in `span` after `attack` is done to a
/// fork of `base`, beyond what it carries in the same span untouched.
fn caused(base: &Sim, span: Duration, attack: impl FnOnce(&mut Sim)) -> i64 {
    let mut quiet = base.fork().expect("no task running");
    let mut attacked = base.fork().expect("no task running");
    let start = attacked.net_stats().delivered;
    attack(&mut attacked);
    let own = attacked.net_stats().delivered - start;
    quiet.run_for(span);
    attacked.run_for(span);
    let extra = attacked.net_stats().delivered as i64 - quiet.net_stats().delivered as i64;
    extra - own as i64
}

#[test]
fn one_datagram_from_a_stranger_costs_the_network_a_handful() {
    let (mut sim, members, fragments) = network(2, None);
    let attacker = sim.add_raw();
    let a = sim.addr(attacker);
    let held = fragments[1];
    let target_host = holder(&sim, &held);
    let target = sim.addr(target_host);
    // The attacker proves its own address first: the worst case.
    let cookie = prove(&mut sim, attacker, target);
    sim.run_for(Duration::from_millis(100));
    let piece = random_bytes(4, 8192);
    let everyone = peers(&sim, &members);
    let mut rng = Rng::new(6);
    let mut worst = 0;
    println!("kind      singlecast randomcast broadcast (datagrams caused)");
    for (k, message) in every_message(held, &everyone, &piece).into_iter().enumerate() {
        let mut row = Vec::new();
        for transmission in transmissions(&mut rng) {
            let cookies = Cookies { echo: Some(cookie), grant: Some(Cookie([2; 8])) };
            let bytes =
                datagram(transmission, source(NodeId(77), a, false), cookies, message.clone(), 0);
            let n = caused(&sim, Duration::from_secs(2), |s| s.inject(target_host, a, &bytes));
            row.push(n);
            worst = worst.max(n);
        }
        println!("{:9} {:10} {:10} {:9}", MessageKind::ALL[k].name(), row[0], row[1], row[2]);
    }
    println!("worst: {worst} datagrams for one datagram of a stranger");
    assert!(worst <= 12, "one datagram caused {worst}");
}

#[test]
fn with_a_key_a_host_without_it_gets_no_answer_at_all() {
    let key = NetworkKey::new(b"the scene's key");
    let (mut sim, members, fragments) = network(3, Some(key));
    let attacker = sim.add_raw();
    let a = sim.addr(attacker);
    let held = fragments[0];
    let target_host = holder(&sim, &held);
    let target = sim.addr(target_host);
    let piece = random_bytes(5, 8192);
    let everyone = peers(&sim, &members);
    let mut rng = Rng::new(7);
    let wrong = NetworkKey::new(b"a guess");
    let mut sent = 0;
    let mut total_caused = 0;
    for message in every_message(held, &everyone, &piece) {
        for transmission in transmissions(&mut rng) {
            for pad in [0, 100] {
                let mut bytes = datagram(
                    transmission,
                    source(NodeId(9), a, true),
                    Cookies::NONE,
                    message.clone(),
                    pad,
                );
                if pad > 0 {
                    // With a tag under a wrong key.
                    let len = bytes.len();
                    bytes.resize(len + 16, 0);
                    let _ = wrong.seal(&mut bytes, len);
                }
                let n =
                    caused(&sim, Duration::from_millis(500), |s| s.inject(target_host, a, &bytes));
                total_caused += n;
                sim.send_raw(attacker, a, target, bytes);
                sent += 1;
            }
        }
    }
    sim.run_for(Duration::from_secs(2));
    let dropped = sim.node(target_host).unwrap().counters().drops_of(DropReason::BadTag);
    println!(
        "{sent} datagrams without the key: {} answers, {total_caused} datagrams caused, {dropped} dropped on the tag",
        sim.raw_received(attacker).len()
    );
    assert!(sim.raw_received(attacker).is_empty());
    assert_eq!(total_caused, 0);
    assert!(dropped >= sent as u64);
}

#[test]
fn no_claim_of_others_removes_a_live_node_or_inserts_one_that_never_answered() {
    let (mut sim, members, _) = network(4, None);
    let attacker = sim.add_raw();
    let a = sim.addr(attacker);
    let mut rng = Rng::new(8);
    let known = |sim: &Sim, addr: PeerAddr| {
        members
            .iter()
            .filter(|m| sim.node(**m).is_some_and(|n| n.neighbors().contains_addr(addr)))
            .count()
    };
    let victim = members[40];
    let v = sim.node(victim).unwrap().me();
    let before = known(&sim, v.addr);
    let tables_before: Vec<usize> =
        members.iter().map(|m| sim.node(*m).unwrap().neighbors().len()).collect();
    // Made-up peers, at addresses where nobody listens.
    let ghosts: Vec<PeerInfo> = (0..40)
        .map(|i| PeerInfo {
            id: NodeId::in_shard(rng.next_u64(), v.shard()),
            addr: PeerAddr::v4([127, 0, 9, i as u8], 9000),
        })
        .collect();
    let mut holders = HolderList::new();
    for g in ghosts.iter().take(4) {
        let _ = holders.push(*g);
    }
    let mut list = PeerList::new();
    for g in ghosts.iter().take(32) {
        let _ = list.push(*g);
    }
    let mut sent = 0;
    for &m in members.iter().step_by(3) {
        let to = sim.addr(m);
        let cookie = prove(&mut sim, attacker, to);
        let c = Cookies { echo: Some(cookie), grant: Some(Cookie([3; 8])) };
        let mine = source(NodeId(5), a, false);
        let claim = source(v.id, v.addr, true);
        let hash = FragmentHash([0x44; 32]);
        let uid = rng.next_u64();
        let attacks = [
            // A LEAVE "from" the victim: from the attacker's address, and
            // spoofed from the victim's (it cannot echo a cookie then).
            (a, Transmission::Singlecast, claim, c, Message::Leave),
            (v.addr, Transmission::Singlecast, claim, Cookies::NONE, Message::Leave),
            (a, Transmission::Broadcast { breadth: 255, uid }, claim, c, Message::Leave),
            // DEAD about the victim, broadcast.
            (
                a,
                Transmission::Broadcast { breadth: 3, uid: uid ^ 1 },
                mine,
                c,
                Message::Dead { peer: v },
            ),
            // ADDMEs claiming the victim's address under another shard's id.
            (
                a,
                Transmission::Singlecast,
                source(
                    NodeId::in_shard(
                        rng.next_u64(),
                        Shard::new((v.shard().get() + 1) % 16).unwrap(),
                    ),
                    v.addr,
                    true,
                ),
                c,
                Message::AddMe,
            ),
            // Lists of made-up peers nobody asked for.
            (a, Transmission::Singlecast, mine, c, Message::Peers { peers: list.clone() }),
            (
                a,
                Transmission::Singlecast,
                mine,
                c,
                Message::NotFound { hash, holders: holders.clone() },
            ),
            (
                a,
                Transmission::Singlecast,
                mine,
                c,
                Message::Stored {
                    hash,
                    outcome: StoreOutcome::NotHolder,
                    holders: holders.clone(),
                },
            ),
        ];
        for (from, transmission, src, cookies, message) in attacks {
            let bytes = datagram(transmission, src, cookies, message, 100);
            sim.send_raw(attacker, from, to, bytes);
            sent += 1;
        }
        sim.run_for(Duration::from_millis(5));
    }
    sim.run_for(Duration::from_secs(20));
    let after = known(&sim, v.addr);
    let ghosts_known: usize =
        ghosts.iter().map(|g| known(&sim, g.addr)).sum::<usize>() + known(&sim, a);
    let shrunk = members
        .iter()
        .zip(&tables_before)
        .filter(|(m, before)| sim.node(**m).unwrap().neighbors().len() + 2 < **before)
        .count();
    println!(
        "{sent} forged datagrams: the victim is in {after} tables (was {before}); \
         made-up peers in tables: {ghosts_known}; tables that shrank: {shrunk}"
    );
    assert!(after >= before, "the victim lost tables: {before} -> {after}");
    assert_eq!(ghosts_known, 0, "a peer that never answered got into a table");
    assert_eq!(shrunk, 0);
}

#[test]
fn a_stranger_cannot_fill_a_store_past_its_quota() {
    // Small store budgets, to see the quota within seconds.
    let mut config = Config::member();
    config.store_rate = 4;
    config.store_burst = 16;
    let mut sim = Sim::new(5, Faults::default());
    let members = join_members(&mut sim, config, 4096, 64, Duration::from_millis(1)).unwrap();
    sim.run_for(Duration::from_secs(2));
    let attacker = sim.add_client();
    sim.join(attacker, members[1]);
    assert!(sim.run_until(Duration::from_secs(10), |s| s.is_joined(attacker)));
    // Real fragments, each of which the target should hold: what an
    // attacker who wants to fill that store would offer.
    let target = members[10];
    let node = sim.node(target).unwrap();
    let me = node.me();
    let mut fragments = Vec::new();
    let mut seed = 0;
    while fragments.len() < 400 {
        seed += 1;
        let mut f = [0u8; FRAGMENT_SIZE];
        Rng::new(seed).fill_bytes(&mut f);
        let h = FragmentHash::of(&f);
        let top = Holders::<3>::of_shard(&h, node.neighbors(), Some(me), 3);
        if h.shard() == me.shard() && top.contains(me.id) {
            fragments.push(f);
        }
    }
    let held_before = sim.node(target).unwrap().store().len();
    let start = sim.now();
    sim.offer(attacker, target, fragments);
    sim.run_for(Duration::from_secs(5));
    let elapsed = (sim.now() - start).total_micros() as f64 / 1e6;
    let taken = sim.node(target).unwrap().store().len() - held_before;
    let quota = 16.0 + 4.0 * elapsed;
    let limited = sim.node(target).unwrap().counters().drops_of(DropReason::RateLimited);
    println!(
        "400 offers of fragments it should hold: {taken} stored in {elapsed:.1} s \
         (quota {quota:.0}), {limited} refused as over budget"
    );
    assert!(taken as f64 <= quota + 1.0, "{taken} stored, quota {quota}");
    assert!(taken >= 16, "the quota's burst was taken: {taken}");
}

#[test]
fn a_forged_stored_never_makes_an_upload_succeed() {
    let (mut sim, members, _) = network(6, None);
    let attacker = sim.add_raw();
    let a = sim.addr(attacker);
    // The uploader cannot reach any member of shard 3: fragments of that
    // shard cannot be stored, whatever the attacker says.
    let uploader = sim.add_client();
    sim.join(uploader, members[2]);
    assert!(sim.run_until(Duration::from_secs(10), |s| s.is_joined(uploader)));
    let cut: Vec<HostId> = members
        .iter()
        .copied()
        .filter(|m| sim.node(*m).unwrap().shard() == Shard::new(3).unwrap())
        .collect();
    sim.partition(|h| u32::from(cut.contains(&h)));
    let data = random_bytes(66, 300_000);
    let hashes = file_hashes("victim.bin", &data);
    sim.start_upload(uploader, "victim.bin", data).unwrap();
    let u = sim.addr(uploader);
    let holders: Vec<PeerAddr> = cut.iter().map(|m| sim.addr(*m)).collect();
    let mut forged = 0;
    for round in 0..20 {
        for hash in &hashes {
            let message = Message::Stored {
                hash: *hash,
                outcome: StoreOutcome::Stored,
                holders: HolderList::new(),
            };
            // From its own address, and spoofed from the real holders'.
            let from = if round % 2 == 0 { a } else { holders[round % holders.len()] };
            let id = NodeId::in_shard(round as u64, hash.shard());
            let bytes = datagram(
                Transmission::Singlecast,
                source(id, from, true),
                Cookies::NONE,
                message,
                100,
            );
            sim.send_raw(attacker, from, u, bytes);
            forged += 1;
        }
        sim.run_for(Duration::from_millis(500));
    }
    assert!(sim.run_until(Duration::from_secs(60), |s| s.app_done(uploader)));
    let result = sim.upload_result(uploader);
    println!("{forged} forged STOREDs: the upload ended with {result:?}");
    assert!(matches!(result, Some(Err(_))), "{result:?}");
}

#[test]
fn datagrams_spoofed_from_a_crashed_node_do_not_keep_it_alive() {
    let (mut sim, members, fragments) = network(7, None);
    let attacker = sim.add_raw();
    let victim = holder(&sim, &fragments[2]);
    let v = sim.node(victim).unwrap().me();
    let neighbors: Vec<PeerAddr> = members
        .iter()
        .filter(|m| sim.node(**m).is_some_and(|n| n.neighbors().contains_addr(v.addr)))
        .map(|m| sim.addr(*m))
        .collect();
    sim.crash(victim);
    let start = sim.now();
    let mut spoofed = 0;
    let gone = |s: &Sim| {
        members.iter().all(|m| s.node(*m).is_none_or(|n| !n.neighbors().contains_addr(v.addr)))
    };
    while !gone(&sim) && sim.now() - start < Duration::from_secs(60) {
        for to in &neighbors {
            for message in
                [Message::Ping { nonce: 5 }, Message::Pong { nonce: 5, dead: None }, Message::AddMe]
            {
                let bytes = datagram(
                    Transmission::Singlecast,
                    source(v.id, v.addr, true),
                    Cookies::NONE,
                    message,
                    100,
                );
                sim.send_raw(attacker, v.addr, *to, bytes);
                spoofed += 1;
            }
        }
        sim.run_for(Duration::from_millis(250));
    }
    let took = sim.now() - start;
    let still: Vec<HostId> = members
        .iter()
        .copied()
        .filter(|m| sim.node(*m).is_some_and(|n| n.neighbors().contains_addr(v.addr)))
        .collect();
    for m in still.iter().take(3) {
        let n = sim.node(*m).unwrap();
        println!(
            "host {m} still has it: last heard {:?} now {}; mate {} timeouts {:?}",
            n.neighbors().get_addr(v.addr).map(|x| x.last_heard),
            sim.now(),
            n.shard() == v.shard(),
            n.timeouts()
        );
    }
    println!("{} tables keep it; {spoofed} datagrams spoofed from the crashed node; gone from every table after {took}", still.len());
    assert!(gone(&sim), "the crashed node is still in some table");
    // And its fragments are copied elsewhere.
    assert!(sim.run_until(Duration::from_secs(60), |s| fragments.iter().all(|h| s.copies(h) >= 3)));
}

#[test]
fn unsolicited_pieces_fill_no_store_and_are_never_relayed() {
    let (mut sim, members, _) = network(8, None);
    let attacker = sim.add_raw();
    let a = sim.addr(attacker);
    let target = members[20];
    let to = sim.addr(target);
    let me = sim.node(target).unwrap().me();
    let cookie = prove(&mut sim, attacker, to);
    let held = sim.node(target).unwrap().store().len();
    let before = sim.net_stats().delivered;
    let piece = random_bytes(9, 8192);
    for i in 0..32u64 {
        // A mate's id, a hash of its shard, broadcast as far as it goes.
        let id = NodeId::in_shard(i, me.shard());
        let mut hash = [0u8; 32];
        Rng::new(i).fill_bytes(&mut hash);
        hash[31] = (hash[31] & 0xF0) | me.shard().get();
        let message =
            Message::FileFrag { hash: FragmentHash(hash), first_unit: 0, data: PieceRef(&piece) };
        let c = Cookies { echo: Some(cookie), grant: None };
        for transmission in
            [Transmission::Singlecast, Transmission::Broadcast { breadth: 255, uid: i }]
        {
            let bytes = datagram(transmission, source(id, a, true), c, message.clone(), 0);
            sim.send_raw(attacker, a, to, bytes);
        }
    }
    sim.run_for(Duration::from_secs(1));
    let node = sim.node(target).unwrap();
    let not_relayable = node.counters().drops_of(DropReason::NotRelayable);
    println!(
        "64 junk FILEFRAGs (8 KB, half broadcast): store {} -> {}, {} not relayable, {} datagrams in the network meanwhile",
        held,
        node.store().len(),
        not_relayable,
        sim.net_stats().delivered - before
    );
    assert_eq!(node.store().len(), held);
    assert_eq!(not_relayable, 32);
}
