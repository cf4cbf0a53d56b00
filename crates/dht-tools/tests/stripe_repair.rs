//! Stripe repair by the nodes themselves, with real processes, and no
//! copies left over once the dead come back.
//!
//! On a 32-node scene (2 members a shard) a 2 MB file is coded 128+72
//! with one copy of each data and parity fragment, so that every piece a
//! killed node held is gone with it: only its stripe can give it back.
//! Eight nodes are killed with SIGKILL, one in each of eight shards (so
//! that no shard is emptied and no node moves). Nobody runs a command: the
//! nodes must rebuild every lost piece by themselves. Then the killed
//! nodes come back on their stores, holding their old pieces again, and
//! the stored fragments must return to the design: every data and parity
//! fragment once, every index fragment as many times as before the crash.
//!
//! A second test restarts a whole network without some of its nodes:
//! nobody is declared dead then (the missing never join the new tables),
//! and the nodes' look after their start must rebuild the pieces.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{
    alive, random_bytes, run_shell, run_tool, run_with_limit, signal, tool, Scene, TempDir,
};

const NODES: u16 = 32;
const REDUNDANCY: &str = "--redundancy=128+72";

/// The fragments of the coded file `file` from `dhthash -v`: pieces (data
/// and parity) and index fragments.
fn fragments(dir: &std::path::Path, file: &str) -> (Vec<String>, Vec<String>) {
    let list = format!("{file}.list");
    let line =
        format!("'{}' -v {REDUNDANCY} --data-copies=1 {file} 2> {list}", tool("dhthash").display());
    let listing = run_shell(&line, dir);
    assert!(listing.ok(), "{}", listing.stderr);
    let (mut pieces, mut indexes) = (Vec::new(), Vec::new());
    for line in std::fs::read_to_string(dir.join(list)).unwrap().lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        let [tag, hash, "shard", _] = words[..] else { continue };
        if tag.parse::<u64>().is_ok() || tag == "par" {
            pieces.push(hash.to_owned());
        } else {
            indexes.push(hash.to_owned());
        }
    }
    (pieces, indexes)
}

/// A 32-node scene holding one 2 MB file coded with one copy of each
/// piece, uploaded and settled.
struct Stored {
    scene: Scene,
    work: TempDir,
    ports: Vec<u16>,
    data: Vec<u8>,
    address: String,
    pieces: Vec<String>,
    indexes: Vec<String>,
}

impl Stored {
    /// Deploys `name` at `offset`, uploads the file made from `seed`, and
    /// waits until each piece is on one node and each index on every
    /// member of the four shards it is spread to (4 a shard at most; about
    /// 2 here).
    fn settled(name: &str, offset: u16, seed: u64) -> Stored {
        let scene = Scene::deploy(name, offset, NODES, "");
        let work = TempDir::new(&format!("{name}-files"));
        let ports: Vec<u16> = (0..NODES).map(|i| scene.base + i).collect();
        let data = random_bytes(seed, 2_000_000);
        std::fs::write(work.path().join("f.bin"), &data).unwrap();
        let entry = ports[1].to_string();
        let sent = run_tool(
            "dhtsend",
            &["-q", "--data-copies=1", REDUNDANCY, "f.bin", "127.0.0.1", &entry],
            work.path(),
        );
        assert!(sent.ok(), "{}", sent.stderr);
        let address = sent.stdout.trim().to_owned();
        let (pieces, indexes) = fragments(work.path(), "f.bin");
        assert!(pieces.len() > 245, "245 data fragments and their parity: {}", pieces.len());
        let stored = Stored { scene, work, ports, data, address, pieces, indexes };
        let settled = stored.scene.wait_for(Duration::from_secs(60), || {
            stored.held(&stored.pieces, &stored.ports).values().all(|n| *n == 1)
                && stored.indexes.iter().all(|h| stored.holders(h, &stored.ports) == stored.want(h))
        });
        assert!(
            settled.is_some(),
            "not settled: pieces {:?}, indexes {:?}",
            stored
                .held(&stored.pieces, &stored.ports)
                .values()
                .filter(|n| **n != 1)
                .collect::<Vec<_>>(),
            stored.held(&stored.indexes, &stored.ports)
        );
        stored
    }

    fn holders(&self, hash: &str, among: &[u16]) -> usize {
        self.scene.holders(hash, among).len()
    }

    /// Holders of each of `hashes` among `among`.
    fn held(&self, hashes: &[String], among: &[u16]) -> BTreeMap<String, usize> {
        hashes.iter().map(|h| (h.clone(), self.holders(h, among))).collect()
    }

    fn members(&self, shard: u8) -> usize {
        self.ports.iter().filter(|&&p| self.scene.node_shard(p) == Some(shard)).count()
    }

    /// Copies of an index: every member of the four shards of its spread,
    /// 4 a shard at most.
    fn want(&self, hash: &str) -> usize {
        let own = common::shard_of_hash(hash);
        (0..4).map(|j| self.members((own + j) % 16).min(4)).sum::<usize>()
    }

    /// `n` nodes holding pieces, one in each of `n` shards that have
    /// another member (so no shard empties), never the first two.
    fn one_a_shard(&self, n: usize) -> Vec<u16> {
        let mut picked: Vec<u16> = Vec::new();
        for port in self.ports.iter().skip(2) {
            let shard = self.scene.node_shard(*port);
            let holds = self.pieces.iter().any(|h| self.holders(h, &[*port]) == 1);
            let mates = shard.map_or(0, |s| self.members(s));
            if holds && mates >= 2 && picked.iter().all(|v| self.scene.node_shard(*v) != shard) {
                picked.push(*port);
            }
            if picked.len() == n {
                break;
            }
        }
        assert_eq!(picked.len(), n, "{n} shards with a node holding pieces");
        picked
    }

    /// The logs of the nodes on `ports`, one after the other.
    fn logs(&self, ports: &[u16]) -> String {
        ports
            .iter()
            .map(|p| {
                std::fs::read_to_string(self.scene.store(*p).join("node.log")).unwrap_or_default()
            })
            .collect()
    }

    /// Downloads the file through `exit` and compares it.
    fn download_through(&self, exit: u16) {
        let received = run_with_limit(
            &tool("dhtrecv"),
            &["-q", &self.address, "127.0.0.1", &exit.to_string(), "-o", "back.bin"],
            self.work.path(),
            Duration::from_secs(120),
        );
        assert!(received.ok(), "{}", received.stderr);
        let back = std::fs::read(self.work.path().join("back.bin")).unwrap();
        assert!(back == self.data, "the file differs");
    }
}

#[test]
fn lost_pieces_are_rebuilt_by_the_nodes_and_extra_copies_go_once_the_dead_return() {
    let stored = Stored::settled("stripe-repair", 1800, 77);
    let Stored { scene, ports, pieces, indexes, address, .. } = &stored;
    let designed_indexes = stored.held(indexes, ports);

    // One node of each of eight shards that have another, holding pieces,
    // killed at once.
    let pids = scene.pids();
    let victims = stored.one_a_shard(8);
    let live: Vec<u16> = ports.iter().copied().filter(|p| !victims.contains(p)).collect();
    let lost = stored.held(pieces, &live).values().filter(|n| **n == 0).count();
    assert!(lost > 0, "the victims held pieces");
    for (port, pid) in &pids {
        if victims.contains(port) {
            signal(*pid, "KILL");
        }
    }

    // The nodes rebuild every lost piece by themselves.
    let rebuilt = scene.wait_for(Duration::from_secs(180), || {
        stored.held(pieces, &live).values().all(|n| *n >= 1)
    });
    let missing = stored.held(pieces, &live).values().filter(|n| **n == 0).count();
    assert!(rebuilt.is_some(), "{missing} of {lost} lost pieces still missing after 180 s");
    let logs = stored.logs(&live);
    let repair_line = logs
        .lines()
        .find(|l| l.contains(&format!("stripe repair of {address}")))
        .expect("a node logged the file's repair");
    println!("{lost} pieces lost with 8 of 32 nodes, all back after {rebuilt:?}: {repair_line}");
    stored.download_through(live[1]);

    // The dead return with their old pieces: the copies made by the
    // repair or the old ones go, down to the design.
    for victim in &victims {
        scene.start_node(*victim, scene.base, &[]);
    }
    let designed = scene.wait_for(Duration::from_secs(400), || {
        stored.held(pieces, ports).values().all(|n| *n == 1)
            && stored.held(indexes, ports) == designed_indexes
    });
    let extra: Vec<usize> =
        stored.held(pieces, ports).values().copied().filter(|n| *n != 1).collect();
    assert!(
        designed.is_some(),
        "not back to the design 400 s after the restart: pieces held {extra:?} times, indexes \
         {:?} against {designed_indexes:?}",
        stored.held(indexes, ports)
    );
    let fragments: usize = ports.iter().map(|p| scene.held(*p).len()).sum();
    println!(
        "back to {fragments} fragments ({} pieces once, indexes as before) {designed:?} after the \
         restart",
        pieces.len()
    );
}

#[test]
fn a_network_restarted_without_some_of_its_nodes_rebuilds_their_pieces() {
    let stored = Stored::settled("stripe-restart", 1840, 78);
    let Stored { scene, ports, pieces, .. } = &stored;

    // Every node stops at once (SIGKILL); six, one in each of six shards
    // that have another member, holding pieces, never come back.
    let missing = stored.one_a_shard(6);
    let pids = scene.pids();
    for (_, pid) in &pids {
        signal(*pid, "KILL");
    }
    let down = scene.wait_for(Duration::from_secs(10), || pids.iter().all(|(_, p)| !alive(*p)));
    assert!(down.is_some(), "the nodes did not stop");
    let back: Vec<u16> = ports.iter().copied().filter(|p| !missing.contains(p)).collect();
    let lost = pieces.iter().filter(|h| stored.holders(h, &back) == 0).count();
    assert!(lost > 0, "the missing nodes held pieces");

    // The rest restart on their stores, the first without a seed.
    scene.start_node_from(back[0], None, &[]);
    for port in &back[1..] {
        scene.start_node_from(*port, Some(back[0]), &[]);
    }
    let rebuilt = scene
        .wait_for(Duration::from_secs(300), || pieces.iter().all(|h| stored.holders(h, &back) > 0));
    let still = pieces.iter().filter(|h| stored.holders(h, &back) == 0).count();
    assert!(
        rebuilt.is_some(),
        "{still} of {lost} lost pieces still missing 300 s after the restart"
    );
    assert!(
        !stored.logs(&back).contains("declared dead"),
        "a node was declared dead: the look after the start is not what is tested"
    );
    println!("{lost} pieces of 6 missing nodes rebuilt {rebuilt:?} after the restart of the rest");
    stored.download_through(back[1]);
}
