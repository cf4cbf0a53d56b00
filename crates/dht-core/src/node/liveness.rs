//! Liveness: probing neighbors, declaring the dead, remembering them.
//!
//! Every member watches its `monitors` nearest mates in its shard's id ring
//! (its shard mates sorted by id, wrapping around), alternately on the
//! successor and the predecessor side, and so is watched by as many. Every
//! `monitor_interval` it probes each of them it has not heard from
//! meanwhile; any datagram from a peer counts as an answer, so two mates
//! that watch each other share one PING and PONG. A probe is a PING sent up to `probe_tries` times,
//! `probe_timeout` apart; a peer that answers none is dead. Since shard
//! mates know each other, every node is watched, and a death is found
//! within `2 * monitor_interval + probe_tries * probe_timeout` (6 s + 1.5 s
//! by default: a mate heard just before it died is quiet only at the second
//! look) at the cost of about one PING and one PONG per pair of watching
//! mates per `monitor_interval`.
//!
//! A random neighbor not heard from is also probed every
//! `random_probe_interval`, which finds dead entries of other shards.
//!
//! [`Liveness`] reports the dead it finds; the node drops them from its
//! tables and tells the network (a DEAD broadcast). Recently dead nodes are
//! remembered for a while so that stale PEERS lists do not bring them back;
//! hearing from one directly does. Dead nodes are remembered for ten
//! minutes, and each maintenance round sends JOIN to one of them: a node
//! that comes back (the other side of a healed partition, a restarted
//! machine) answers with PEERS, and the two sides find each other again.

use heapless::{Deque, Vec};

use super::membership::send_join;
use super::Ctx;
use crate::config::Role;
use crate::id::{PeerAddr, PeerInfo};
use crate::neighbors::{Neighbor, NeighborTable};
use crate::node::Transmit;
use crate::requests::{Request, RequestTable};
use crate::time::{Duration, Instant};
use crate::timer::{Timer, TimerTable};
use crate::wire::Message;

/// Probes in flight at once.
pub(crate) const PROBES: usize = 8;
/// Deaths remembered.
const RECENTLY_DEAD: usize = 32;
/// How long a dead node is kept out of the table unless heard directly.
const DEAD_MEMORY: Duration = Duration::from_secs(30);
/// How long a dead node is still asked, now and then, whether it is back.
const GRAVEYARD_MEMORY: Duration = Duration::from_secs(600);

/// The mates one node watches at most.
const MAX_MONITORED: usize = 4;

/// A liveness probe: whom, and the nonce its PONG must echo.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Probe {
    peer: PeerInfo,
    nonce: u64,
}

#[derive(Clone, Copy, Debug)]
enum LivenessTimer {
    /// Probe the watched mates not heard from (and, every
    /// `random_probe_interval`, one random quiet neighbor: it rides on this
    /// timer rather than waking the node on its own).
    Monitor,
}

impl Timer for LivenessTimer {
    const COUNT: usize = 1;
    fn index(self) -> usize {
        self as usize
    }
}

/// Probes, the dead, and when to look again.
pub(crate) struct Liveness {
    probes: RequestTable<Probe, PROBES>,
    recently_dead: Deque<(PeerAddr, Instant), RECENTLY_DEAD>,
    timers: TimerTable<LivenessTimer, 1>,
    /// When a random quiet neighbor is next probed (at the first Monitor
    /// tick from then on).
    next_random_probe: Instant,
}

impl Liveness {
    pub(crate) const fn new() -> Self {
        Liveness {
            probes: RequestTable::new(),
            recently_dead: Deque::new(),
            timers: TimerTable::new(),
            next_random_probe: Instant::ZERO,
        }
    }

    /// Starts watching (a member that joined, or a root that met someone).
    pub(crate) fn start(&mut self, ctx: &Ctx<'_, impl Transmit>) {
        if ctx.config.role != Role::Member || self.timers.is_armed(LivenessTimer::Monitor) {
            return;
        }
        self.timers.set(LivenessTimer::Monitor, ctx.now + ctx.config.monitor_interval);
        self.next_random_probe = ctx.now + ctx.config.random_probe_interval;
    }

    /// Stops everything (the node left).
    pub(crate) fn stop(&mut self) {
        self.timers.clear();
        self.probes.retain(|_| false);
    }

    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        // Probes are always in flight: room does not matter.
        [self.timers.next(), self.probes.poll_timeout(false)].into_iter().flatten().min()
    }

    /// The periodic work: probes of the watched mates and of one random
    /// neighbor, and probes that timed out. Returns the peers found dead.
    pub(crate) fn handle_timeout<const N: usize>(
        &mut self,
        ctx: &mut Ctx<'_, impl Transmit>,
        table: &NeighborTable<N>,
    ) -> Vec<PeerInfo, PROBES> {
        let now = ctx.now;
        if self.timers.expire(LivenessTimer::Monitor, now) {
            self.timers.set(LivenessTimer::Monitor, now + ctx.config.monitor_interval);
            let quiet_since = now - ctx.config.monitor_interval;
            for peer in monitored(table, ctx.out.me(), ctx.config.monitors) {
                let heard = table.get_addr(peer.addr).map(|n| n.last_heard);
                if heard.is_none_or(|t| t <= quiet_since) {
                    self.probe(ctx, peer);
                }
            }
        }
        // The random probe has no timer of its own: it goes at the first
        // wake-up after it is due (a Monitor tick at the latest).
        let watching = self.timers.is_armed(LivenessTimer::Monitor);
        if watching && now >= self.next_random_probe {
            self.next_random_probe = now + ctx.config.random_probe_interval;
            let quiet_since = now - ctx.config.random_probe_interval;
            let quiet = |n: &&Neighbor| n.last_heard <= quiet_since;
            let count = table.iter().filter(quiet).count();
            let pick = ctx.rng.below(count);
            if let Some(peer) = table.iter().filter(quiet).nth(pick).map(|n| n.peer) {
                self.probe(ctx, peer);
            }
        }
        let mut dead = Vec::new();
        while let Some(i) = self.probes.next_overdue(now) {
            let Some(probe) = self.probes.get_mut(i) else { break };
            if probe.attempts < ctx.config.probe_tries {
                let (to, nonce) = (probe.item.peer.addr, probe.item.nonce);
                probe.sent(to, now, ctx.config.probe_timeout);
                ctx.send(to, &Message::Ping { nonce });
            } else if let Some(probe) = self.probes.remove(i) {
                let _ = dead.push(probe.item.peer);
            }
        }
        dead
    }

    /// Starts a probe of `peer` unless one is in flight.
    fn probe(&mut self, ctx: &mut Ctx<'_, impl Transmit>, peer: PeerInfo) {
        if self.probes.is_full() || self.probes.contains(|p| p.peer.addr == peer.addr) {
            return;
        }
        let nonce = ctx.rng.next_u64();
        let mut request = Request::new(Probe { peer, nonce }, ctx.now);
        request.sent(peer.addr, ctx.now, ctx.config.probe_timeout);
        if self.probes.push(request).is_ok() {
            ctx.send(peer.addr, &Message::Ping { nonce });
        }
    }

    /// A datagram came from `addr`: a probe of it is answered.
    pub(crate) fn heard_from(&mut self, addr: PeerAddr) {
        self.probes.retain(|p| p.item.peer.addr != addr);
    }

    /// A datagram came straight from its originator at `addr`: whatever was
    /// said of its death is void.
    pub(crate) fn revive(&mut self, addr: PeerAddr) {
        if self.recently_dead.iter().any(|(a, _)| *a == addr) {
            let mut kept: Deque<(PeerAddr, Instant), RECENTLY_DEAD> = Deque::new();
            while let Some(entry) = self.recently_dead.pop_front() {
                if entry.0 != addr {
                    let _ = kept.push_back(entry);
                }
            }
            self.recently_dead = kept;
        }
    }

    /// Whether `nonce` answers one of our probes.
    pub(crate) fn is_probe_answer(&self, nonce: u64) -> bool {
        self.probes.contains(|p| p.nonce == nonce)
    }

    /// `peer` is dead (found so, or told so): stop probing it and keep it
    /// out of the table for a while.
    pub(crate) fn forget(&mut self, peer: PeerInfo, now: Instant) {
        self.probes.retain(|p| p.item.peer.addr != peer.addr);
        if self.recently_dead.is_full() {
            self.recently_dead.pop_front();
        }
        let _ = self.recently_dead.push_back((peer.addr, now));
    }

    /// Whether `addr` died recently (and so must not come back second-hand).
    pub(crate) fn recently_dead(&self, addr: PeerAddr, now: Instant) -> bool {
        self.recently_dead.iter().any(|(a, t)| *a == addr && now < *t + DEAD_MEMORY)
    }

    /// Asks one node that died in the last ten minutes whether it is back
    /// (JOIN; an answer brings it and its peers back into the table).
    pub(crate) fn call_the_dead(&mut self, ctx: &mut Ctx<'_, impl Transmit>) {
        while self.recently_dead.front().is_some_and(|(_, t)| ctx.now >= *t + GRAVEYARD_MEMORY) {
            self.recently_dead.pop_front();
        }
        let pick = ctx.rng.below(self.recently_dead.len());
        if let Some((addr, _)) = self.recently_dead.iter().nth(pick).copied() {
            send_join(ctx, addr, None);
        }
    }
}

/// The mates `me` watches: its neighbors on both sides of its shard's id
/// ring, the nearest successor first, then the nearest predecessor, and so
/// on, `monitors` in all. Two mates that watch each other share one probe:
/// a PING from either counts as hearing from it at the other end, so each
/// pair of neighbors in the ring exchanges about one PING and PONG per
/// `monitor_interval`, and every member is still watched from two sides.
fn monitored<const N: usize>(
    table: &NeighborTable<N>,
    me: PeerInfo,
    monitors: u8,
) -> Vec<PeerInfo, MAX_MONITORED> {
    let mut out: Vec<PeerInfo, MAX_MONITORED> = Vec::new();
    let want = usize::from(monitors).min(MAX_MONITORED);
    let mut successor = true;
    let mut stuck = 0;
    while out.len() < want && stuck < 2 {
        let candidates =
            table.members_of(me.shard()).filter(|n| !out.iter().any(|p| p.addr == n.peer.addr));
        let next = if successor {
            candidates.min_by_key(|n| n.peer.id.0.wrapping_sub(me.id.0))
        } else {
            candidates.min_by_key(|n| me.id.0.wrapping_sub(n.peer.id.0))
        };
        successor = !successor;
        match next {
            Some(n) => {
                stuck = 0;
                let _ = out.push(n.peer);
            }
            None => stuck += 1,
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::{NodeId, Shard};

    fn peer(id: u64) -> PeerInfo {
        PeerInfo { id: NodeId(id), addr: PeerAddr::v4([127, 0, 0, 1], 9000 + id as u16) }
    }

    #[test]
    fn each_member_watches_its_nearest_mates_on_both_sides_of_the_id_ring() {
        let me = peer(5 * 16 + 3);
        let mut table = NeighborTable::<16>::new(Shard::new(3).unwrap(), 8, 2);
        for k in [1u64, 2, 7, 9] {
            table.insert(peer(k * 16 + 3), Instant::ZERO, true);
        }
        table.insert(peer(6 * 16 + 4), Instant::ZERO, true); // another shard
        let ids = |v: Vec<PeerInfo, MAX_MONITORED>| -> std::vec::Vec<u64> {
            v.iter().map(|p| p.id.0).collect()
        };
        // Successor 7, predecessor 2, then successor 9, predecessor 1.
        assert_eq!(ids(monitored(&table, me, 2)), [7 * 16 + 3, 2 * 16 + 3]);
        assert_eq!(ids(monitored(&table, me, 4)), [7 * 16 + 3, 2 * 16 + 3, 9 * 16 + 3, 16 + 3]);
        // The ring wraps: the member with the highest id has the lowest as
        // its successor.
        let last = peer(10 * 16 + 3);
        assert_eq!(ids(monitored(&table, last, 2)), [16 + 3, 9 * 16 + 3]);
        // Two mates: each watches the other once.
        let mut pair = NeighborTable::<16>::new(Shard::new(3).unwrap(), 8, 2);
        pair.insert(peer(16 + 3), Instant::ZERO, true);
        assert_eq!(ids(monitored(&pair, me, 2)), [16 + 3]);
    }

    #[test]
    fn the_dead_stay_out_for_a_while_unless_heard_directly() {
        let mut liveness = Liveness::new();
        let dead = peer(1);
        liveness.forget(dead, Instant::from_millis(1_000));
        assert!(liveness.recently_dead(dead.addr, Instant::from_millis(2_000)));
        assert!(!liveness.recently_dead(dead.addr, Instant::from_millis(31_000)));
        liveness.revive(dead.addr);
        assert!(!liveness.recently_dead(dead.addr, Instant::from_millis(2_000)));
    }

    extern crate std;
}
