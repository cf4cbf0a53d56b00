//! How many files survive a simultaneous crash of a share of the nodes,
//! under whole copies and under erasure-coded designs of no more storage.
//!
//! `cargo run --release -p dht-sim --example durability -- [TRIALS] [SEED]`
//!
//! This is a placement model, not a protocol run: it places every piece of
//! a file exactly as the network does (the shard of `hash mod 16`, the top
//! `c` members of that shard by the core's own rendezvous ranking,
//! [`Holders::rank`]; a count above 4, as index fragments are stored, is
//! spread over consecutive shards by the core's [`Placement`]), on a
//! network whose shards are balanced (as the core's shard choice keeps
//! them), then crashes a uniformly random set of
//! nodes at once. A piece survives when one of its holders does; a file
//! survives when every index fragment survives and every stripe keeps at
//! least `k` of its `k + m` pieces. Index loss is counted as fatal (a
//! conservative reading: a lost leaf index may be rebuilt from parity in
//! some layouts). Repair is not modelled: this is the instant after the
//! crash.
//!
//! `shared` is the share of stripes two of whose pieces (any copy) land on
//! one node, then the most pieces of a stripe one node holds, on average:
//! where a piece goes follows from its hash, so a stripe wider than the
//! shard's members cannot be kept apart.
//!
//! Each cell is `TRIALS` trials (default 1,000), each with a fresh network,
//! fresh fragment hashes and a fresh crash.

use dht_core::fragment::FragmentHash;
use dht_core::holders::{Holders, Placement, MAX_COPIES};
use dht_core::id::{NodeId, PeerAddr, PeerInfo};
use dht_core::rand::Rng;

const SHARDS: u64 = 16;
const FRAGMENT: u64 = 8192;
/// Hashes an index lists (a flat index, 255; nested, 254: 254 is used).
const PER_INDEX: u64 = 254;

/// A way of storing a file.
#[derive(Clone, Copy)]
struct Design {
    name: &'static str,
    /// Data fragments per stripe (0: no coding, every fragment alone).
    k: u64,
    /// Parity fragments per full stripe.
    m: u64,
    /// Copies of every data and parity fragment.
    copies: u8,
    /// Copies of every index fragment, placed as the network places a
    /// counted fragment ([`Placement::counted`]: more than 4 are spread
    /// over several shards; each shard's share is capped by its members).
    index_copies: u8,
}

impl Design {
    /// The stripes of a file of `data` fragments: `(k_i, m_i)`, balanced
    /// so that no stripe is much shorter than the others.
    fn stripes(&self, data: u64) -> Vec<(u64, u64)> {
        if self.k == 0 {
            return (0..data).map(|_| (1, 0)).collect();
        }
        let count = data.div_ceil(self.k).max(1);
        (0..count)
            .map(|i| {
                let k = data / count + u64::from(i < data % count);
                (k, (k * self.m).div_ceil(self.k))
            })
            .collect()
    }

    /// Index fragments: a tree over every piece, plus a coded root.
    fn indexes(&self, pieces: u64) -> u64 {
        let mut count = 0;
        let mut level = pieces;
        while level > 1 || count == 0 {
            level = level.div_ceil(PER_INDEX);
            count += level;
        }
        count + u64::from(self.k != 0)
    }
}

struct Network {
    /// Members of each shard: (node index, id).
    shards: Vec<Vec<PeerInfo>>,
    nodes: usize,
}

impl Network {
    fn new(rng: &mut Rng, nodes: usize) -> Network {
        let mut shards = vec![Vec::new(); SHARDS as usize];
        for i in 0..nodes {
            let shard = i as u64 % SHARDS;
            let id = (rng.next_u64() & !(SHARDS - 1)) | shard;
            let addr = PeerAddr::v4([127, 0, 0, 1], i as u16);
            shards[shard as usize].push(PeerInfo { id: NodeId(id), addr });
        }
        Network { shards, nodes }
    }

    /// The nodes (by index) that hold a fragment of `hash` stored with
    /// `copies`.
    fn holders(&self, hash: &FragmentHash, copies: u8, out: &mut Vec<usize>) {
        out.clear();
        let placement = Placement::counted(copies);
        for shard in placement.shards(hash) {
            // A shard of fewer members than its share: all of them.
            let members = self.shards[shard.index()].iter().copied();
            let top = Holders::<MAX_COPIES>::rank(hash, members, placement.per_shard);
            out.extend(top.iter().map(|p| usize::from(p.addr.port())));
        }
    }
}

fn random_hash(rng: &mut Rng) -> FragmentHash {
    let mut bytes = [0u8; 32];
    rng.fill_bytes(&mut bytes);
    FragmentHash(bytes)
}

/// One placed file: per stripe its `k` and the holder sets of its pieces;
/// the holder sets of its index fragments.
struct Placed {
    stripes: Vec<(u64, Vec<Vec<usize>>)>,
    indexes: Vec<Vec<usize>>,
    stored: u64,
    /// Stripes two of whose pieces share a node.
    shared_stripes: u64,
    /// Over the stripes, the most pieces of the stripe one node holds.
    worst_sum: u64,
}

fn place(rng: &mut Rng, net: &Network, design: &Design, size: u64) -> Placed {
    let data = size.div_ceil(FRAGMENT);
    let mut holders = Vec::new();
    let mut stored = 0;
    let mut pieces = 0;
    let mut shared_stripes = 0;
    let mut worst_sum = 0;
    let mut used = vec![0u32; net.nodes];
    let stripes = design
        .stripes(data)
        .into_iter()
        .map(|(k, m)| {
            let sets: Vec<Vec<usize>> = (0..k + m)
                .map(|_| {
                    net.holders(&random_hash(rng), design.copies, &mut holders);
                    stored += holders.len() as u64;
                    holders.clone()
                })
                .collect();
            pieces += k + m;
            if m > 0 {
                used.iter_mut().for_each(|u| *u = 0);
                for set in &sets {
                    for &n in set {
                        used[n] += 1;
                    }
                }
                let worst = used.iter().copied().max().unwrap_or(0);
                shared_stripes += u64::from(worst > 1);
                worst_sum += u64::from(worst);
            }
            (k, sets)
        })
        .collect();
    let indexes = (0..design.indexes(pieces))
        .map(|_| {
            net.holders(&random_hash(rng), design.index_copies, &mut holders);
            stored += holders.len() as u64;
            holders.clone()
        })
        .collect();
    Placed { stripes, indexes, stored, shared_stripes, worst_sum }
}

fn survives(file: &Placed, dead: &[bool]) -> bool {
    let alive = |set: &Vec<usize>| set.iter().any(|&n| !dead[n]);
    file.indexes.iter().all(alive)
        && file
            .stripes
            .iter()
            .all(|(k, sets)| sets.iter().filter(|s| alive(s)).count() as u64 >= *k)
}

fn main() {
    let args: Vec<u64> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let trials = args.first().copied().unwrap_or(1000);
    let seed = args.get(1).copied().unwrap_or(1);
    let designs = [
        Design { name: "3 copies (plain files)", k: 0, m: 0, copies: 3, index_copies: 3 },
        Design { name: "RS 128+16 x3", k: 128, m: 16, copies: 3, index_copies: 3 },
        Design { name: "RS 128+64 x3", k: 128, m: 64, copies: 3, index_copies: 3 },
        Design { name: "RS 128+32 x3, index x16", k: 128, m: 32, copies: 3, index_copies: 16 },
        Design { name: "RS 128+64 x3, index x16", k: 128, m: 64, copies: 3, index_copies: 16 },
        Design { name: "RS 128+64 x2, index x16", k: 128, m: 64, copies: 2, index_copies: 16 },
        Design { name: "RS 128+72 x2, index x16", k: 128, m: 72, copies: 2, index_copies: 16 },
        Design { name: "RS 64+136 x1, index x16", k: 64, m: 136, copies: 1, index_copies: 16 },
    ];
    let crashes = [30u64, 50, 60];
    let sizes = [("300 KB", 300_000u64), ("2 MB", 2u64 << 20), ("20 MB", 20 << 20)];
    println!("durability: share of files that survive a simultaneous crash ({trials} trials per cell, seed {seed})");
    println!(
        "{:<7} {:<6} {:<25} {:>7} {:>13} {:>8} {:>8} {:>8}",
        "nodes", "file", "design", "stored", "shared", "30 %", "50 %", "60 %"
    );
    for nodes in [64usize, 256, 1024] {
        for (size_name, size) in sizes {
            for design in &designs {
                let mut rng = Rng::new(seed ^ (nodes as u64) << 32 ^ size);
                let mut ok = [0u64; 3];
                let mut stored = 0;
                let mut shared = 0;
                let mut worst = 0;
                let mut stripes = 0;
                for _ in 0..trials {
                    let net = Network::new(&mut rng, nodes);
                    let file = place(&mut rng, &net, design, size);
                    stored += file.stored;
                    shared += file.shared_stripes;
                    worst += file.worst_sum;
                    stripes += file.stripes.len() as u64;
                    let mut order: Vec<usize> = (0..nodes).collect();
                    rng.shuffle(&mut order);
                    for (c, pct) in crashes.iter().enumerate() {
                        let mut dead = vec![false; nodes];
                        for &n in &order[..nodes * *pct as usize / 100] {
                            dead[n] = true;
                        }
                        ok[c] += u64::from(survives(&file, &dead));
                    }
                }
                let ratio = (stored * FRAGMENT) as f64 / (trials * size) as f64;
                let shared = if design.k == 0 {
                    "-".to_string()
                } else {
                    format!(
                        "{:.0} % / {:.1}",
                        100.0 * shared as f64 / stripes as f64,
                        worst as f64 / stripes as f64
                    )
                };
                let cell = |n: u64| format!("{:.1} %", 100.0 * n as f64 / trials as f64);
                println!(
                    "{:<7} {:<6} {:<25} {:>6.2}x {:>13} {:>8} {:>8} {:>8}",
                    nodes,
                    size_name,
                    design.name,
                    ratio,
                    shared,
                    cell(ok[0]),
                    cell(ok[1]),
                    cell(ok[2])
                );
            }
        }
    }
}
