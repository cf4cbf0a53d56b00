//! The neighbor table: which nodes a node knows, with quotas per shard.
//!
//! The original kept an unordered static list of neighbors. This table is
//! the same fixed-capacity list with one rule added: it keeps at most
//! `per_shard` neighbors of every other shard and at most `own_shard` of
//! its own. With a few neighbors in every shard, the holders of any fragment
//! are one hop away; with (nearly) all of its own shard, a node can tell the
//! other holders about a new fragment without flooding the network.
//!
//! Entries are keyed by address: a node restarted with a new id at the same
//! address replaces its old entry. An id already known at another address
//! is refused: whoever claims it elsewhere must wait until the entry it
//! would displace dies.
//!
//! The table is only ever given peers that proved themselves (a datagram
//! straight from their address echoing the node's cookie): it does no
//! checking of its own, and never evicts an entry to make room for
//! another.
//!
//! ```
//! use dht_core::id::{NodeId, PeerAddr, PeerInfo, Shard};
//! use dht_core::neighbors::{Insert, NeighborTable};
//! use dht_core::time::Instant;
//! let mut table = NeighborTable::<8>::new(Shard::new(0).unwrap(), 2, 1);
//! let peer = PeerInfo { id: NodeId(1), addr: PeerAddr::v4([127, 0, 0, 1], 8001) };
//! assert_eq!(table.insert(peer, Instant::ZERO), Insert::Added);
//! assert_eq!(table.members_of(Shard::new(1).unwrap()).count(), 1);
//! ```

use crate::config::SHARD_COUNT;
use crate::id::{PeerAddr, PeerInfo, Shard};
use crate::rand::Rng;
use crate::time::Instant;
use crate::wire::PeerList;

/// What the table knows about one neighbor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Neighbor {
    /// Who and where.
    pub peer: PeerInfo,
    /// When a proven datagram from it was last processed.
    pub last_heard: Instant,
    /// Its store is full, as its last datagram said: it is not counted
    /// among the holders of new fragments.
    pub full: bool,
}

/// What [`NeighborTable::insert`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Insert {
    /// A new neighbor.
    Added,
    /// Already known at this address; its id was updated (its last-heard
    /// time only moves when a datagram comes from it, see
    /// [`NeighborTable::touch`]).
    Refreshed,
    /// Not added: its shard's quota or the table is full, or its id is
    /// known at another address.
    Full,
}

/// A fixed-capacity neighbor table with per-shard quotas.
#[derive(Clone, Debug)]
pub struct NeighborTable<const N: usize> {
    entries: heapless::Vec<Neighbor, N>,
    own: Shard,
    own_quota: u8,
    per_shard_quota: u8,
}

impl<const N: usize> NeighborTable<N> {
    /// An empty table for a node of shard `own`.
    pub const fn new(own: Shard, own_quota: u8, per_shard_quota: u8) -> Self {
        NeighborTable { entries: heapless::Vec::new(), own, own_quota, per_shard_quota }
    }

    /// Changes the node's own shard (when a joining node picks its id).
    /// Entries beyond the new quotas stay until they are removed.
    pub fn set_own_shard(&mut self, own: Shard) {
        self.own = own;
    }

    /// The quota of `shard`.
    pub fn quota(&self, shard: Shard) -> usize {
        if shard == self.own {
            usize::from(self.own_quota)
        } else {
            usize::from(self.per_shard_quota)
        }
    }

    /// Adds or refreshes `peer`, which proved itself at `now`.
    pub fn insert(&mut self, peer: PeerInfo, now: Instant) -> Insert {
        if self.entries.iter().any(|n| n.peer.id == peer.id && n.peer.addr != peer.addr) {
            return Insert::Full;
        }
        if let Some(entry) = self.entries.iter_mut().find(|n| n.peer.addr == peer.addr) {
            if entry.peer.id.shard() == peer.id.shard() {
                entry.peer = peer;
                return Insert::Refreshed;
            }
            // Same address, new id in another shard: a restarted node. Drop
            // the old entry and insert the new one under its shard's quota.
            self.remove_addr(peer.addr);
        }
        if self.count_in(peer.shard()) >= self.quota(peer.shard()) || self.is_full() {
            return Insert::Full;
        }
        match self.entries.push(Neighbor { peer, last_heard: now, full: false }) {
            Ok(()) => Insert::Added,
            Err(_) => Insert::Full,
        }
    }

    /// Whether `peer` would be added (its shard has room), or is known.
    pub fn has_room_for(&self, peer: &PeerInfo) -> bool {
        self.contains_addr(peer.addr)
            || (self.count_in(peer.shard()) < self.quota(peer.shard()) && !self.is_full())
    }

    /// Records that a proven datagram came from `addr` at `now`. Returns
    /// whether it is a neighbor.
    pub fn touch(&mut self, addr: PeerAddr, now: Instant) -> bool {
        match self.entries.iter_mut().find(|n| n.peer.addr == addr) {
            Some(entry) => {
                entry.last_heard = now;
                true
            }
            None => false,
        }
    }

    /// Records whether the neighbor at `addr` says its store is full;
    /// returns whether that changed.
    pub fn set_full(&mut self, addr: PeerAddr, full: bool) -> bool {
        match self.entries.iter_mut().find(|n| n.peer.addr == addr) {
            Some(entry) if entry.full != full => {
                entry.full = full;
                true
            }
            _ => false,
        }
    }

    /// Removes the neighbor at `addr`; returns it if it was there.
    pub fn remove_addr(&mut self, addr: PeerAddr) -> Option<Neighbor> {
        let position = self.entries.iter().position(|n| n.peer.addr == addr)?;
        Some(self.entries.swap_remove(position))
    }

    /// The neighbor at `addr`.
    pub fn get_addr(&self, addr: PeerAddr) -> Option<&Neighbor> {
        self.entries.iter().find(|n| n.peer.addr == addr)
    }

    /// Whether `addr` is a neighbor.
    pub fn contains_addr(&self, addr: PeerAddr) -> bool {
        self.get_addr(addr).is_some()
    }

    /// All neighbors, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = &Neighbor> {
        self.entries.iter()
    }

    /// The neighbors of `shard`.
    pub fn members_of(&self, shard: Shard) -> impl Iterator<Item = &Neighbor> {
        self.entries.iter().filter(move |n| n.peer.shard() == shard)
    }

    /// How many neighbors belong to `shard`.
    pub fn count_in(&self, shard: Shard) -> usize {
        self.members_of(shard).count()
    }

    /// Neighbors per shard.
    pub fn shard_counts(&self) -> [u16; SHARD_COUNT as usize] {
        let mut counts = [0u16; SHARD_COUNT as usize];
        for n in self.entries.iter() {
            if let Some(c) = counts.get_mut(n.peer.shard().index()) {
                *c = c.saturating_add(1);
            }
        }
        counts
    }

    /// Number of neighbors.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Whether the table is at capacity.
    pub fn is_full(&self) -> bool {
        self.entries.is_full()
    }

    /// A random neighbor other than `except`.
    pub fn random_except(&self, rng: &mut Rng, except: Option<PeerAddr>) -> Option<PeerInfo> {
        let candidates = self.entries.iter().filter(|n| Some(n.peer.addr) != except).count();
        let pick = rng.below(candidates);
        self.entries.iter().filter(|n| Some(n.peer.addr) != except).nth(pick).map(|n| n.peer)
    }

    /// A random member of `shard`.
    pub fn random_in(&self, rng: &mut Rng, shard: Shard) -> Option<PeerInfo> {
        let pick = rng.below(self.count_in(shard));
        self.members_of(shard).nth(pick).map(|n| n.peer)
    }

    /// Fills `out` with up to `want` random neighbors other than
    /// `except`, only from `shard` if given. Without a shard filter the
    /// choice goes round the shards, so a short answer still covers as many
    /// shards as possible.
    pub fn sample(
        &self,
        rng: &mut Rng,
        want: usize,
        shard: Option<Shard>,
        except: Option<PeerAddr>,
        out: &mut PeerList,
    ) {
        let mut order: heapless::Vec<u16, N> = heapless::Vec::new();
        for (i, n) in self.entries.iter().enumerate() {
            let wanted_shard = shard.is_none_or(|s| n.peer.shard() == s);
            let eligible = wanted_shard && Some(n.peer.addr) != except;
            if eligible && order.push(i as u16).is_err() {
                break;
            }
        }
        rng.shuffle(&mut order);
        // Round r takes, in random order, untaken candidates of shards that
        // have fewer than r taken. Every round with candidates left takes at
        // least one, so the loop ends.
        let mut taken_per_shard = [0u16; SHARD_COUNT as usize];
        let mut taken = [false; N];
        let mut remaining = order.len();
        let mut round = 0u16;
        while out.len() < want && remaining > 0 {
            round = round.saturating_add(1);
            for &i in order.iter() {
                let index = usize::from(i);
                let (Some(entry), Some(done)) = (self.entries.get(index), taken.get_mut(index))
                else {
                    continue;
                };
                let Some(per_shard) = taken_per_shard.get_mut(entry.peer.shard().index()) else {
                    continue;
                };
                if *done || *per_shard >= round {
                    continue;
                }
                if out.len() >= want || out.push(entry.peer).is_err() {
                    return;
                }
                *done = true;
                *per_shard += 1;
                remaining -= 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use crate::id::NodeId;
    use std::collections::BTreeSet;

    fn peer(id: u64, port: u16) -> PeerInfo {
        PeerInfo { id: NodeId(id), addr: PeerAddr::v4([127, 0, 0, 1], port) }
    }

    fn shard(n: u8) -> Shard {
        Shard::new(n).unwrap()
    }

    #[test]
    fn quotas_limit_each_shard() {
        let mut table = NeighborTable::<64>::new(shard(0), 3, 2);
        let now = Instant::ZERO;
        // Shard 1: quota 2.
        assert_eq!(table.insert(peer(1, 1), now), Insert::Added);
        assert_eq!(table.insert(peer(17, 2), now), Insert::Added);
        assert_eq!(table.insert(peer(33, 3), now), Insert::Full);
        // Own shard 0: quota 3.
        for (i, id) in [16u64, 32, 48].iter().enumerate() {
            assert_eq!(table.insert(peer(*id, 10 + i as u16), now), Insert::Added);
        }
        assert_eq!(table.insert(peer(64, 20), now), Insert::Full);
        assert_eq!(table.count_in(shard(0)), 3);
        assert_eq!(table.count_in(shard(1)), 2);
        assert!(!table.has_room_for(&peer(49, 30)));
        assert!(table.has_room_for(&peer(2, 30)));
    }

    #[test]
    fn an_id_known_elsewhere_is_refused_and_nothing_is_evicted() {
        let mut table = NeighborTable::<8>::new(shard(0), 2, 1);
        let now = Instant::ZERO;
        assert_eq!(table.insert(peer(1, 1), now), Insert::Added);
        // Another address claiming the same id does not move the entry.
        assert_eq!(table.insert(peer(1, 2), now), Insert::Full);
        assert_eq!(table.get_addr(peer(1, 1).addr).unwrap().peer.id, NodeId(1));
        assert!(!table.contains_addr(peer(1, 2).addr));
        // A full shard keeps what it has.
        assert_eq!(table.insert(peer(17, 3), now), Insert::Full);
        assert!(table.contains_addr(peer(1, 1).addr));
    }

    #[test]
    fn capacity_is_never_exceeded() {
        let mut table = NeighborTable::<4>::new(shard(0), 10, 10);
        for i in 0..10u64 {
            table.insert(peer(i, i as u16), Instant::ZERO);
        }
        assert_eq!(table.len(), 4);
        assert!(table.is_full());
    }

    #[test]
    fn known_address_or_id_is_refreshed_not_duplicated() {
        let mut table = NeighborTable::<8>::new(shard(0), 4, 4);
        assert_eq!(table.insert(peer(1, 1), Instant::ZERO), Insert::Added);
        assert_eq!(table.insert(peer(1, 1), Instant::from_millis(5)), Insert::Refreshed);
        assert_eq!(
            table.get_addr(peer(1, 1).addr).unwrap().last_heard,
            Instant::ZERO,
            "being listed again does not make a peer alive"
        );
        table.touch(peer(1, 1).addr, Instant::from_millis(6));
        assert_eq!(table.get_addr(peer(1, 1).addr).unwrap().last_heard, Instant::from_millis(6));
        // Same address, new id in another shard: a restarted node replaces it.
        assert_eq!(table.insert(peer(2, 1), Instant::ZERO), Insert::Added);
        assert_eq!(table.len(), 1);
        assert_eq!(table.get_addr(peer(2, 1).addr).unwrap().peer.id, NodeId(2));
    }

    #[test]
    fn sample_covers_shards_before_repeating_one() {
        let mut table = NeighborTable::<64>::new(shard(0), 8, 8);
        let mut port = 0;
        for s in 0..4u64 {
            for k in 0..4u64 {
                port += 1;
                table.insert(peer(s + 16 * k, port), Instant::ZERO);
            }
        }
        let mut rng = Rng::new(3);
        let mut out = PeerList::new();
        table.sample(&mut rng, 4, None, None, &mut out);
        let shards: BTreeSet<u8> = out.iter().map(|p| p.shard().get()).collect();
        assert_eq!(shards.len(), 4, "{out:?}");

        let mut all = PeerList::new();
        table.sample(&mut rng, 100, None, None, &mut all);
        assert_eq!(all.len(), 16);
        let unique: BTreeSet<u16> = all.iter().map(|p| p.addr.port()).collect();
        assert_eq!(unique.len(), 16);

        let mut only = PeerList::new();
        table.sample(&mut rng, 100, Some(shard(2)), Some(peer(2, 9).addr), &mut only);
        assert!(only.iter().all(|p| p.shard() == shard(2)));
        assert_eq!(only.len(), 3);
    }

    #[test]
    fn random_picks_respect_exclusions() {
        let mut table = NeighborTable::<8>::new(shard(0), 4, 4);
        let mut rng = Rng::new(1);
        assert_eq!(table.random_except(&mut rng, None), None);
        table.insert(peer(1, 1), Instant::ZERO);
        assert_eq!(table.random_except(&mut rng, Some(peer(1, 1).addr)), None);
        table.insert(peer(2, 2), Instant::ZERO);
        for _ in 0..20 {
            assert_eq!(table.random_except(&mut rng, Some(peer(1, 1).addr)), Some(peer(2, 2)));
        }
        assert_eq!(table.random_in(&mut rng, shard(2)), Some(peer(2, 2)));
        assert_eq!(table.random_in(&mut rng, shard(3)), None);
    }
}
