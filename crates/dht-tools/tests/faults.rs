//! Faults on real processes: half the nodes killed, a node stopped and
//! continued, a killed node restarted on its store, a full store. Each test
//! prints the times it measured (run with `--nocapture`).

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use common::{alive, fragment_hashes, random_bytes, run_tool, signal, Scene, TempDir};
use dht_core::wire::{Cookies, Message, Packet, Source, Transmission};
use dht_core::{FragmentHash, NodeId, PeerAddr};
use dht_std::client::Client;

const R: usize = 3;

fn upload(work: &TempDir, name: &str, size: usize, seed: u64, port: u16) -> (String, Vec<String>) {
    std::fs::write(work.path().join(name), random_bytes(seed, size)).unwrap();
    let sent = run_tool("dhtsend", &[name, "127.0.0.1", &port.to_string()], work.path());
    assert!(sent.ok(), "upload of {name}: {}", sent.stderr);
    (sent.stdout.trim().to_owned(), fragment_hashes(&work.path().join(name)))
}

fn download_ok(work: &TempDir, name: &str, hash: &str, port: u16) {
    let out = format!("{name}.back");
    let run = run_tool(
        "dhtrecv",
        &[hash, "127.0.0.1", &port.to_string(), "-o", &out, "--force"],
        work.path(),
    );
    assert!(run.ok(), "download of {name} through {port}: {}", run.stderr);
    let a = std::fs::read(work.path().join(name)).unwrap();
    let b = std::fs::read(work.path().join(&out)).unwrap();
    assert!(a == b, "{name} differs after download");
}

/// Asks `node` directly for fragment `hash` and returns whether it sent it
/// (proving our address first: the node answers a first FILEGET with a
/// RETRY carrying its cookie).
fn serves(node: u16, hash: &str) -> bool {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
    let me = PeerAddr::from(socket.local_addr().unwrap());
    let hash = FragmentHash::from_hex(hash).unwrap();
    let mut echo = None;
    let mut buf = vec![0u8; 9000];
    for _ in 0..6 {
        let packet = Packet {
            transmission: Transmission::Singlecast,
            source: Source { id: NodeId(7), addr: me, member: false, window: 0, full: false },
            cookies: Cookies { echo, grant: None },
            message: Message::FileGet { hash, want: u16::MAX, piece_units: 2 },
        };
        let len = packet.encode_padded(&mut buf, dht_core::node::UNPROVEN_MIN).unwrap();
        socket.send_to(&buf[..len], ("127.0.0.1", node)).unwrap();
        while let Ok((n, _)) = socket.recv_from(&mut buf) {
            match Packet::decode(&buf[..n]) {
                Ok(Packet { message: Message::FileFrag { hash: h, .. }, .. }) => return h == hash,
                Ok(Packet { message: Message::Retry, cookies, .. }) => {
                    echo = cookies.grant;
                    break;
                }
                _ => {}
            }
        }
    }
    false
}

#[test]
fn half_the_nodes_killed_repair_restores_copies_and_a_restarted_node_serves() {
    let scene = Scene::deploy("kill-half", 1000, 64, "");
    let work = TempDir::new("kill-half-files");
    let ports: Vec<u16> = (scene.base..scene.base + scene.count).collect();
    let files: Vec<(String, String, Vec<String>)> = [(200_000, 1u64), (500_000, 2), (1_000_000, 3)]
        .iter()
        .enumerate()
        .map(|(i, &(size, seed))| {
            let name = format!("f{i}.bin");
            let (hash, fragments) = upload(&work, &name, size, seed, ports[i + 1]);
            (name, hash, fragments)
        })
        .collect();
    let all: Vec<String> = files.iter().flat_map(|f| f.2.iter().cloned()).collect();
    // R copies, or as many as the fragment's shard has members: nodes that
    // join at once may leave a shard with two.
    let settled = scene.wait_for(Duration::from_secs(60), || {
        all.iter().all(|h| scene.holders(h, &ports).len() >= scene.attainable(h, &ports, R))
    });
    if settled.is_none() {
        for h in &all {
            let (held, can) = (scene.holders(h, &ports).len(), scene.attainable(h, &ports, R));
            if held < can {
                eprintln!("{h}: {held} copies of {can} (shard {})", common::shard_of_hash(h));
            }
        }
    }
    assert!(settled.is_some(), "replication did not reach {R} copies (or its shard's size)");

    // Kill half the nodes at once with SIGKILL. A fragment whose R holders
    // all die is gone; repair restores R copies from any survivor, so the
    // victims are drawn among the nodes whose death leaves every fragment
    // at least one copy.
    let pids: std::collections::HashMap<u16, u32> = scene.pids().into_iter().collect();
    let mut rng = dht_core::rand::Rng::new(11);
    let mut order = ports.clone();
    rng.shuffle(&mut order);
    let mut victims: Vec<u16> = Vec::new();
    for &p in &order {
        if victims.len() == ports.len() / 2 {
            break;
        }
        let ok = all
            .iter()
            .all(|h| scene.holders(h, &ports).iter().any(|x| *x != p && !victims.contains(x)));
        if ok {
            victims.push(p);
        }
    }
    assert_eq!(victims.len(), 32);
    for p in &victims {
        signal(pids[p], "KILL");
    }
    let live: Vec<u16> = ports.iter().copied().filter(|p| !victims.contains(p)).collect();
    // Every fragment back at R copies, or at as many as its shard still has
    // members if fewer than R of them survived.
    let repaired = |h: &String| scene.holders(h, &live).len() >= scene.attainable(h, &live, R);
    let repair = scene.wait_for(Duration::from_secs(90), || all.iter().all(repaired));
    let repair = repair.unwrap_or_else(|| {
        let short = all.iter().filter(|h| !repaired(h)).count();
        panic!("repair did not restore the copies within 90 s ({short} fragments short)")
    });
    println!("repair after killing 32 of 64 nodes: {:.1} s", repair.as_secs_f64());
    for (i, (name, hash, _)) in files.iter().enumerate() {
        download_ok(&work, name, hash, live[i * 7 % live.len()]);
    }

    // A killed node restarted on its store comes back with its id and serves
    // what it holds.
    let back =
        *victims.iter().find(|p| all.iter().any(|h| scene.holders(h, &[**p]).len() == 1)).unwrap();
    let id_before = std::fs::read_to_string(scene.store(back).join("node.id")).unwrap();
    let held: Vec<String> =
        all.iter().filter(|h| scene.holders(h, &[back]).len() == 1).cloned().collect();
    let pid = scene.start_node(back, live[0], &[]);
    let entry = SocketAddr::from(([127, 0, 0, 1], back));
    let mut client = Client::bind(entry, 0).unwrap();
    let joined = scene.wait_for(Duration::from_secs(20), || {
        client
            .stats(entry, Duration::from_millis(200))
            .ok()
            .flatten()
            .is_some_and(|s| s.stats.joined)
    });
    assert!(joined.is_some(), "restarted node did not rejoin");
    assert!(alive(pid));
    assert_eq!(std::fs::read_to_string(scene.store(back).join("node.id")).unwrap(), id_before);
    assert!(held.iter().all(|h| serves(back, h)), "restarted node serves its fragments");
}

#[test]
fn a_stopped_node_is_evicted_and_comes_back_when_continued() {
    let scene = Scene::deploy("stop-cont", 1100, 32, "");
    let ports: Vec<u16> = (scene.base..scene.base + scene.count).collect();
    let victim = ports[9];
    let pid = scene.pids().into_iter().find(|(p, _)| *p == victim).unwrap().1;
    let others: Vec<SocketAddr> = ports
        .iter()
        .filter(|p| **p != victim)
        .map(|p| SocketAddr::from(([127, 0, 0, 1], *p)))
        .collect();
    let about = SocketAddr::from(([127, 0, 0, 1], victim));
    let mut client = Client::bind(others[0], 0).unwrap();
    // Every other node must answer: one that did not answer is not one
    // that forgot the stopped node.
    let knowers = |client: &mut Client| {
        let answers = client
            .stats_of_all_about(&others, Some(about), Duration::from_secs(5), |_| true)
            .unwrap();
        let silent = answers.iter().filter(|a| a.is_none()).count();
        assert_eq!(silent, 0, "{silent} live nodes did not answer");
        answers.iter().flatten().filter(|s| s.stats.knows).count()
    };
    let known = scene.wait_for(Duration::from_secs(30), || knowers(&mut client) >= 3);
    assert!(known.is_some(), "the node is in others' tables before it stops");
    signal(pid, "STOP");
    let gone = scene.wait_for(Duration::from_secs(30), || knowers(&mut client) == 0);
    let gone = gone.expect("the stopped node was not evicted from every table");
    println!("stopped node gone from every table after {:.1} s", gone.as_secs_f64());
    signal(pid, "CONT");
    let back = scene.wait_for(Duration::from_secs(30), || knowers(&mut client) >= 3);
    let back = back.expect("the continued node did not come back");
    println!("continued node back in tables after {:.1} s", back.as_secs_f64());
}

#[test]
fn a_full_node_sends_uploads_elsewhere_without_an_error() {
    let scene = Scene::deploy("full", 1200, 24, "");
    let work = TempDir::new("full-files");
    let full_port = scene.base + 30;
    scene.start_node(full_port, scene.base, &["--capacity", "1"]);
    let entry = SocketAddr::from(([127, 0, 0, 1], full_port));
    let mut client = Client::bind(entry, 0).unwrap();
    let joined = scene.wait_for(Duration::from_secs(20), || {
        client
            .stats(entry, Duration::from_millis(200))
            .ok()
            .flatten()
            .is_some_and(|s| s.stats.joined)
    });
    assert!(joined.is_some());
    // Its shard mates know it before the uploads start.
    let mates: Vec<SocketAddr> = (scene.base..scene.base + scene.count)
        .map(|p| SocketAddr::from(([127, 0, 0, 1], p)))
        .collect();
    let known = scene.wait_for(Duration::from_secs(30), || {
        let answers = client
            .stats_of_all_about(&mates, Some(entry), Duration::from_secs(5), |_| true)
            .unwrap();
        answers.iter().flatten().filter(|s| s.stats.knows).count() >= 3
    });
    assert!(known.is_some(), "nobody learned the full node");
    let mut sent = Vec::new();
    for i in 0..6 {
        let name = format!("u{i}.bin");
        sent.push((name.clone(), upload(&work, &name, 120_000, 40 + i, scene.base + i as u16).0));
    }
    let stats = client.stats(entry, Duration::from_secs(2)).unwrap().unwrap();
    assert!(stats.stats.held <= 1, "the full node holds {} fragments", stats.stats.held);
    // The full node filled its one slot, and then either refused what it
    // was asked (uploads, announcements, HOLDINGS) or was not asked at all,
    // having told its mates it is full: the uploads below still succeeded,
    // elsewhere.
    let refused = stats.stats.counters.drops_of(dht_core::counters::DropReason::StoreFull);
    assert!(refused > 0 || stats.stats.held == 1, "the full node never filled");
    println!("full node: holds {}, refused {refused} store requests", stats.stats.held);
    if stats.stats.held == 1 {
        // One fragment of one: the operator was told before it filled.
        let log = std::fs::read_to_string(scene.store(full_port).join("node.log")).unwrap();
        assert!(log.contains("the store is nearly full: 1 of 1 fragments (100%)"), "{log}");
    }
    for (i, (name, hash)) in sent.iter().enumerate() {
        download_ok(&work, name, hash, scene.base + 10 + i as u16);
    }
}

#[test]
fn a_node_holding_fifty_fragments_leaves_within_a_second_with_every_fragment_at_r_copies() {
    // Four members per shard: every fragment has a member to go to.
    let scene = Scene::deploy("leave", 1300, 64, "");
    let work = TempDir::new("leave-files");
    let ports: Vec<u16> = (scene.base..scene.base + scene.count).collect();
    let mut all = Vec::new();
    for i in 0..4u64 {
        let name = format!("l{i}.bin");
        all.extend(upload(&work, &name, 2_000_000, 60 + i, ports[i as usize + 1]).1);
    }
    let settled = scene.wait_for(Duration::from_secs(60), || {
        all.iter().all(|h| scene.holders(h, &ports).len() >= scene.attainable(h, &ports, R))
    });
    assert!(settled.is_some(), "replication did not reach {R} copies");
    // The leaver: the node that most fragments need, those it holds whose
    // other holders are fewer than R (an extra copy needs no hand-off).
    let needs = |p: u16| -> Vec<String> {
        let others: Vec<u16> = ports.iter().copied().filter(|q| *q != p).collect();
        all.iter()
            .filter(|h| {
                let holders = scene.holders(h, &ports);
                holders.contains(&p) && holders.len() - 1 < scene.attainable(h, &others, R)
            })
            .cloned()
            .collect()
    };
    let (leaver, needed) =
        ports.iter().map(|p| (*p, needs(*p))).max_by_key(|(_, n)| n.len()).unwrap();
    let held: Vec<String> =
        all.iter().filter(|h| scene.holders(h, &ports).contains(&leaver)).cloned().collect();
    assert!(held.len() >= 50, "the chosen node holds only {}", held.len());
    assert!(needed.len() >= 20, "only {} fragments need the chosen node", needed.len());
    let pid = scene.pids().into_iter().find(|(p, _)| *p == leaver).unwrap().1;
    let started = std::time::Instant::now();
    signal(pid, "TERM");
    let exited = scene.wait_for(Duration::from_secs(10), || !alive(pid));
    let took = started.elapsed();
    assert!(exited.is_some(), "the node did not exit");
    let rest: Vec<u16> = ports.iter().copied().filter(|p| *p != leaver).collect();
    let short: Vec<&String> = held
        .iter()
        .filter(|h| scene.holders(h, &rest).len() < scene.attainable(h, &rest, R))
        .collect();
    let log = std::fs::read_to_string(scene.store(leaver).join("node.log")).unwrap_or_default();
    let summary = log.lines().find(|l| l.contains("handed off") && l.contains("leaving"));
    println!(
        "SIGTERM of a node holding {} fragments ({} with fewer than R copies elsewhere): \
         exited in {:.3} s; {}",
        held.len(),
        needed.len(),
        took.as_secs_f64(),
        summary.unwrap_or("no hand-off line in its log")
    );
    assert!(took < Duration::from_secs(1), "leaving took {took:?}");
    assert!(short.is_empty(), "{} fragments below R after the leave", short.len());
    assert!(summary.is_some(), "dhtnode did not log its hand-off: {log}");
    assert!(log.lines().any(|l| l.contains("fragments to 127.0.0.1:")), "no recipients logged");
}
