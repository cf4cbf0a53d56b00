//! Who should hold a fragment: one rendezvous ranking for every question.
//!
//! Under bounded replication a fragment lives on the `R` members of its
//! shard with the highest [`rendezvous_score`] of (fragment, node id).
//! Every node computes the same score for the same pair, so nodes that know
//! the same members agree on the holders without talking. The questions the
//! node asks (which members to announce a new fragment to, whether it
//! should hold one itself, who replaces it when it leaves, which members a
//! client should ask first) are all answered by [`Holders`]: the best few
//! of a set of candidates, best first.
//!
//! ```
//! use dht_core::holders::Holders;
//! use dht_core::id::{NodeId, PeerAddr, PeerInfo};
//! use dht_core::fragment::FragmentHash;
//! let hash = FragmentHash([7; 32]);
//! let peers = (0..5u64).map(|i| PeerInfo { id: NodeId(i * 16 + 7), addr: PeerAddr::v4([127, 0, 0, 1], 9000 + i as u16) });
//! let top = Holders::<3>::rank(&hash, peers, 3);
//! assert_eq!(top.len(), 3);
//! let scores: Vec<u64> = top.iter().map(|p| dht_core::holders::rendezvous_score(&hash, p.id)).collect();
//! assert!(scores.windows(2).all(|w| w[0] >= w[1]));
//! ```

use heapless::Vec;

use crate::config::SHARD_COUNT;
use crate::fragment::FragmentHash;
use crate::id::{NodeId, PeerAddr, PeerInfo, Shard};
use crate::neighbors::NeighborTable;

/// The largest replication factor the ranking computes holders for.
pub const MAX_COPIES: usize = 16;

/// The most copies one shard keeps of a fragment whose uploader asked for
/// a count of its own: a larger count is spread over consecutive shards,
/// so that a shard emptied by a crash (on 64 nodes, a quarter of the
/// shards lose all four members when half the nodes die) does not take
/// the fragment with it.
pub const SHARD_COPIES: usize = 4;

/// Where the copies of a fragment go: the top `per_shard` members of each
/// of `shards` consecutive shards, from the fragment's own (`hash mod 16`)
/// upwards, wrapping after 15.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Placement {
    /// Shards that keep copies (1 to 4).
    pub shards: u8,
    /// Copies each of them keeps.
    pub per_shard: usize,
}

impl Placement {
    /// The network's `r` copies, all in the fragment's own shard (a
    /// fragment stored without a count of its own).
    pub fn home(r: usize) -> Self {
        Placement { shards: 1, per_shard: r.clamp(1, MAX_COPIES) }
    }

    /// A count of its own (NEWFILE's `copies`, 1 to 255): up to
    /// [`SHARD_COPIES`] in the fragment's shard; more spread evenly over
    /// `ceil(copies / 4)` shards (16, the most: 4 in each of 4 shards).
    ///
    /// ```
    /// use dht_core::holders::Placement;
    /// assert_eq!(Placement::counted(2), Placement { shards: 1, per_shard: 2 });
    /// assert_eq!(Placement::counted(16), Placement { shards: 4, per_shard: 4 });
    /// assert_eq!(Placement::counted(5), Placement { shards: 2, per_shard: 3 });
    /// ```
    pub fn counted(copies: u8) -> Self {
        let copies = usize::from(copies).clamp(1, MAX_COPIES);
        let shards = copies.div_ceil(SHARD_COPIES);
        Placement { shards: shards as u8, per_shard: copies.div_ceil(shards) }
    }

    /// Copies kept in all.
    pub fn total(&self) -> usize {
        usize::from(self.shards) * self.per_shard
    }

    /// How many shards after `hash`'s own `shard` is (0 for its own).
    fn step(hash: &FragmentHash, shard: Shard) -> u8 {
        (shard.get() + SHARD_COUNT - hash.shard().get()) % SHARD_COUNT
    }

    /// Whether `shard` keeps copies of `hash`.
    pub fn covers(&self, hash: &FragmentHash, shard: Shard) -> bool {
        Self::step(hash, shard) < self.shards
    }

    /// The shards that keep copies of `hash`, its own first.
    pub fn shards(&self, hash: &FragmentHash) -> impl Iterator<Item = Shard> {
        let own = hash.shard().get();
        (0..self.shards).filter_map(move |j| Shard::new((own + j) % SHARD_COUNT))
    }
}

/// The score of `id` for holding `hash` in rendezvous hashing.
pub fn rendezvous_score(hash: &FragmentHash, id: NodeId) -> u64 {
    let mut z = hash.prefix_u64() ^ id.0.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The best `K` (or fewer) candidates for holding a fragment, best first.
#[derive(Clone, Debug)]
pub struct Holders<const K: usize> {
    ranked: Vec<(u64, PeerInfo), K>,
}

impl<const K: usize> Holders<K> {
    /// Ranks `candidates` for `hash`, keeping the best `limit` (at most
    /// `K`).
    pub fn rank(
        hash: &FragmentHash,
        candidates: impl IntoIterator<Item = PeerInfo>,
        limit: usize,
    ) -> Self {
        let limit = limit.min(K);
        let mut ranked: Vec<(u64, PeerInfo), K> = Vec::new();
        for peer in candidates {
            let entry = (rendezvous_score(hash, peer.id), peer);
            if ranked.len() < limit {
                let _ = ranked.push(entry);
            } else if let Some(worst) = ranked.iter_mut().min_by_key(|(s, _)| *s) {
                if worst.0 < entry.0 {
                    *worst = entry;
                }
            }
        }
        crate::order::sort_by_key_descending(&mut ranked, |(s, _)| *s);
        Holders { ranked }
    }

    /// Ranks the members of `hash`'s shard in `table`, and `me` if given
    /// and of that shard.
    pub fn of_shard<const N: usize>(
        hash: &FragmentHash,
        table: &NeighborTable<N>,
        me: Option<PeerInfo>,
        limit: usize,
    ) -> Self {
        Self::of_shard_in(hash, hash.shard(), table, me, limit)
    }

    /// Ranks the members of `shard` in `table` for `hash` (a shard its
    /// copies are spread to, [`Placement`]), and `me` if given and of that
    /// shard.
    pub fn of_shard_in<const N: usize>(
        hash: &FragmentHash,
        shard: Shard,
        table: &NeighborTable<N>,
        me: Option<PeerInfo>,
        limit: usize,
    ) -> Self {
        let me = me.filter(|m| m.shard() == shard);
        // A member whose store is full holds no new fragment: the next in
        // rank takes its place.
        let members = table.members_of(shard).filter(|n| !n.full).map(|n| n.peer);
        Self::rank(hash, members.chain(me), limit)
    }

    /// The holders, best first.
    pub fn iter(&self) -> impl Iterator<Item = PeerInfo> + Clone + '_ {
        self.ranked.iter().map(|(_, p)| *p)
    }

    /// How many there are.
    pub fn len(&self) -> usize {
        self.ranked.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.ranked.is_empty()
    }

    /// Whether `id` is among them.
    pub fn contains(&self, id: NodeId) -> bool {
        self.ranked.iter().any(|(_, p)| p.id == id)
    }

    /// Whether the node at `addr` is among them.
    pub fn contains_addr(&self, addr: PeerAddr) -> bool {
        self.ranked.iter().any(|(_, p)| p.addr == addr)
    }

    /// The lowest score among them, if they are `full` of `limit`: a
    /// member scoring at least this would be among them.
    pub fn threshold(&self, limit: usize) -> u64 {
        if self.ranked.len() < limit {
            0
        } else {
            self.ranked.last().map_or(0, |(s, _)| *s)
        }
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use crate::id::Shard;
    use crate::time::Instant;

    fn member(i: u64, shard: u8) -> PeerInfo {
        PeerInfo {
            id: NodeId::in_shard(i.wrapping_mul(0x1234_5678_9ABC), Shard::new(shard).unwrap()),
            addr: PeerAddr::v4([127, 0, 0, 1], 9000 + i as u16),
        }
    }

    #[test]
    fn every_node_that_knows_the_same_members_picks_the_same_top_r() {
        let hash = FragmentHash([0x30; 32]);
        let shard = hash.shard().get();
        let members: std::vec::Vec<PeerInfo> = (1..12).map(|i| member(i, shard)).collect();
        let forward = Holders::<3>::rank(&hash, members.iter().copied(), 3);
        let backward = Holders::<3>::rank(&hash, members.iter().rev().copied(), 3);
        let a: std::vec::Vec<_> = forward.iter().collect();
        let b: std::vec::Vec<_> = backward.iter().collect();
        assert_eq!(a, b);
        let best = members.iter().max_by_key(|p| rendezvous_score(&hash, p.id)).unwrap();
        assert_eq!(a[0], *best);
    }

    #[test]
    fn of_shard_counts_only_the_fragments_shard_and_me_if_i_belong() {
        let hash = FragmentHash([0x32; 32]);
        let shard = hash.shard().get();
        let other = (shard + 1) % 16;
        let mut table = NeighborTable::<16>::new(Shard::new(shard).unwrap(), 8, 8);
        for i in 1..4 {
            table.insert(member(i, shard), Instant::ZERO);
            table.insert(member(10 + i, other), Instant::ZERO);
        }
        let me = member(20, shard);
        let with_me = Holders::<8>::of_shard(&hash, &table, Some(me), 8);
        assert_eq!(with_me.len(), 4);
        assert!(with_me.contains(me.id));
        let stranger = member(21, other);
        let without = Holders::<8>::of_shard(&hash, &table, Some(stranger), 8);
        assert_eq!(without.len(), 3);
        assert!(!without.contains(stranger.id));
        let lowest = without.iter().map(|p| rendezvous_score(&hash, p.id)).min().unwrap();
        assert_eq!(without.threshold(3), lowest);
        assert_eq!(without.threshold(4), 0, "fewer than asked: anyone would be among them");
    }
}
