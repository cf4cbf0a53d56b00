//! Liveness: probing neighbors, declaring the dead, spreading the news.
//!
//! Every member watches the `monitors` members that follow it in its
//! shard's id ring (its shard mates sorted by id, wrapping around), and so
//! is watched by as many predecessors. Every `monitor_interval` it probes
//! each of them it has not heard from meanwhile; any datagram from a peer
//! counts as an answer. A probe is a PING sent up to `probe_tries` times,
//! `probe_timeout` apart; a peer that answers none is dead. Since shard
//! mates know each other, every node is watched, and a death is found
//! within `monitor_interval + probe_tries * probe_timeout` (3.5 s + 1.2 s
//! by default) at the cost of about one PING and one PONG per node per
//! `monitor_interval / monitors`.
//!
//! The finder drops the dead node and broadcasts DEAD (breadth
//! `dead_breadth`, UID derived from the dead node, so the network handles
//! one notice per death); every node that gets it drops the node too, so it
//! leaves every table at about the time it is found. A node that hears of
//! its own death (it was only slow, or stopped for a while) answers with
//! ADDME to its neighbors and is back. Recently dead nodes are remembered
//! for a while so that stale PEERS lists do not bring them back; hearing
//! from one directly does.
//!
//! A random neighbor not heard from is also probed every
//! `random_probe_interval`, which finds dead entries that missed the
//! broadcast (a lost datagram, a partition).
//!
//! Dead nodes are remembered for ten minutes, and each table maintenance
//! round sends JOIN to one of them: a node that comes back (the other side
//! of a healed partition, a restarted machine) answers with PEERS, and the
//! two sides of the network find each other again.

use super::*;

/// A liveness probe in flight.
#[derive(Clone, Copy, Debug)]
pub(super) struct Probe {
    pub(super) peer: PeerInfo,
    pub(super) nonce: u64,
    pub(super) deadline: Instant,
    pub(super) tries: u8,
}

/// Probes in flight at once.
pub(super) const PROBES: usize = 8;
/// Deaths remembered.
pub(super) const RECENTLY_DEAD: usize = 32;
/// How long a dead node is kept out of the table unless heard directly.
pub(super) const DEAD_MEMORY: Duration = Duration::from_secs(30);
/// How long a dead node is still asked, now and then, whether it is back
/// (a healed partition, a restarted machine).
pub(super) const GRAVEYARD_MEMORY: Duration = Duration::from_secs(600);

/// The broadcast UID of the DEAD notice about `peer`.
pub(super) fn dead_uid(peer: &PeerInfo) -> u64 {
    let mut rng = crate::rand::Rng::new(peer.id.0 ^ 0xDEAD_DEAD_DEAD_DEAD);
    let port = u64::from(peer.addr.port());
    rng.next_u64() ^ port.rotate_left(17)
}

impl<S: FragmentStore, const NEIGHBORS: usize, const DEDUP: usize, const FETCHES: usize>
    Node<S, NEIGHBORS, DEDUP, FETCHES>
{
    /// The mates this node watches: the `monitors` members of its shard
    /// that follow it in id order, wrapping around.
    pub(super) fn monitored(&self) -> Vec<PeerInfo, 4> {
        let mut out: Vec<PeerInfo, 4> = Vec::new();
        let want = usize::from(self.config.monitors).min(out.capacity());
        let me = self.me.id.0;
        while out.len() < want {
            let next = self
                .neighbors
                .members_of(self.shard())
                .filter(|n| !out.iter().any(|p| p.addr == n.peer.addr))
                .min_by_key(|n| n.peer.id.0.wrapping_sub(me));
            match next {
                Some(n) => {
                    let _ = out.push(n.peer);
                }
                None => break,
            }
        }
        out
    }

    /// Starts a probe of `peer` unless one is in flight.
    pub(super) fn probe(&mut self, now: Instant, peer: PeerInfo, sink: &mut impl Transmit) {
        if self.probes.iter().any(|p| p.peer.addr == peer.addr) || self.probes.is_full() {
            return;
        }
        let nonce = self.rng.next_u64();
        let deadline = now + self.config.probe_timeout;
        let _ = self.probes.push(Probe { peer, nonce, deadline, tries: 1 });
        self.send(peer.addr, Transmission::Singlecast, &Message::Ping { nonce }, sink);
    }

    /// The periodic work of liveness: probes of the watched mates and of
    /// one random neighbor, and probes that timed out.
    pub(super) fn liveness_timeout(&mut self, now: Instant, sink: &mut impl Transmit) {
        if self.config.role != Role::Member || !self.is_joined() {
            return;
        }
        if self.next_monitor.is_none_or(|at| now >= at) {
            self.next_monitor = Some(now + self.config.monitor_interval);
            let quiet_since = now - self.config.monitor_interval;
            for peer in self.monitored() {
                let heard = self.neighbors.get_addr(peer.addr).map(|n| n.last_heard);
                if heard.is_none_or(|t| t <= quiet_since) {
                    self.probe(now, peer, sink);
                }
            }
        }
        if self.next_random_probe.is_none_or(|at| now >= at) {
            self.next_random_probe = Some(now + self.config.random_probe_interval);
            let quiet_since = now - self.config.random_probe_interval;
            let quiet = |n: &&crate::neighbors::Neighbor| n.last_heard <= quiet_since;
            let count = self.neighbors.iter().filter(quiet).count();
            let pick = self.rng.below(count);
            let peer = self.neighbors.iter().filter(quiet).nth(pick).map(|n| n.peer);
            if let Some(peer) = peer {
                self.probe(now, peer, sink);
            }
        }
        let mut i = 0;
        while let Some(probe) = self.probes.get(i).copied() {
            if probe.deadline > now {
                i += 1;
                continue;
            }
            if probe.tries < self.config.probe_tries {
                if let Some(p) = self.probes.get_mut(i) {
                    p.tries += 1;
                    p.deadline = now + self.config.probe_timeout;
                }
                let ping = Message::Ping { nonce: probe.nonce };
                self.send(probe.peer.addr, Transmission::Singlecast, &ping, sink);
                i += 1;
            } else {
                self.probes.swap_remove(i);
                self.declare_dead(now, probe.peer, sink);
            }
        }
    }

    /// When liveness work is next due.
    pub(super) fn liveness_deadline(&self) -> Option<Instant> {
        if self.config.role != Role::Member || !self.is_joined() {
            return None;
        }
        let probes = self.probes.iter().map(|p| p.deadline).min();
        [self.next_monitor, self.next_random_probe, probes].into_iter().flatten().min()
    }

    /// A datagram came straight from `from`: a probe of it is answered.
    pub(super) fn heard_from(&mut self, from: PeerAddr) {
        self.probes.retain(|p| p.peer.addr != from);
    }

    /// Whether `nonce` answers one of our probes (the PONG is consumed).
    pub(super) fn is_probe_answer(&self, nonce: u64) -> bool {
        self.probes.iter().any(|p| p.nonce == nonce)
    }

    /// `peer` did not answer: drop it, remember it, and tell the network.
    pub(super) fn declare_dead(&mut self, now: Instant, peer: PeerInfo, sink: &mut impl Transmit) {
        log::info!("{}: {} does not answer; dropping it", self.me.addr, peer);
        self.forget_dead(now, peer);
        let uid = dead_uid(&peer);
        self.dedup.insert(uid);
        let packet = Packet {
            transmission: Transmission::Broadcast { breadth: self.config.dead_breadth, uid },
            source: self.source(),
            message: Message::Dead { peer },
        };
        self.relay_to_all(&packet, &[peer.addr], sink);
    }

    /// Drops `peer` from the tables (if it is still the same node at that
    /// address) and remembers it as dead.
    pub(super) fn forget_dead(&mut self, now: Instant, peer: PeerInfo) {
        let known = self.neighbors.get_addr(peer.addr).is_some_and(|n| n.peer.id == peer.id);
        if known {
            self.neighbors.remove_addr(peer.addr);
            self.push_event(Event::NeighborDead(peer));
            self.membership_changed(now, peer, false);
        }
        self.probes.retain(|p| p.peer.addr != peer.addr);
        self.peer_gone(peer.addr);
        self.fetches.retain(|f| f.from.addr != peer.addr || f.deadline.is_none());
        if self.recently_dead.is_full() {
            self.recently_dead.pop_front();
        }
        let _ = self.recently_dead.push_back((peer.addr, now));
    }

    /// Asks one node that died in the last ten minutes whether it is back
    /// (JOIN; an answer brings it and its peers back into the table).
    pub(super) fn call_the_dead(&mut self, now: Instant, sink: &mut impl Transmit) {
        while self.recently_dead.front().is_some_and(|(_, t)| now >= *t + GRAVEYARD_MEMORY) {
            self.recently_dead.pop_front();
        }
        let pick = self.rng.below(self.recently_dead.len());
        if let Some((addr, _)) = self.recently_dead.iter().nth(pick).copied() {
            self.send_join(addr, None, sink);
        }
    }

    /// A DEAD notice arrived.
    pub(super) fn on_dead(&mut self, now: Instant, peer: PeerInfo, sink: &mut impl Transmit) {
        if peer.addr == self.me.addr || peer.id == self.me.id {
            // We are alive: say so to everyone we know.
            log::info!("{}: told of our own death; announcing we are alive", self.me.addr);
            if self.config.role == Role::Member {
                for to in self.neighbor_addrs() {
                    self.send(to, Transmission::Singlecast, &Message::AddMe, sink);
                }
            }
            return;
        }
        self.forget_dead(now, peer);
    }

    /// Whether `addr` died recently (and so must not come back second-hand).
    pub(super) fn recently_dead(&self, addr: PeerAddr, now: Instant) -> bool {
        self.recently_dead.iter().any(|(a, t)| *a == addr && now < *t + DEAD_MEMORY)
    }

    /// `addr` is heard from directly: it is alive after all.
    pub(super) fn revived(&mut self, addr: PeerAddr) {
        let mut kept: Deque<(PeerAddr, Instant), RECENTLY_DEAD> = Deque::new();
        while let Some(entry) = self.recently_dead.pop_front() {
            if entry.0 != addr {
                let _ = kept.push_back(entry);
            }
        }
        self.recently_dead = kept;
    }
}
