//! Liveness: probing neighbors, declaring the dead, remembering them.
//!
//! Every member watches its `monitors` nearest mates in its shard's id ring
//! (its shard mates sorted by id, wrapping around), alternately on the
//! successor and the predecessor side, and so is watched by as many. A
//! watched mate silent for `monitor_interval` is probed (a quarter interval
//! later by the mate with the higher id, so that of two mates that watch
//! each other one probes and the PING tells the other it is alive); any
//! datagram from a peer counts as an answer. The node wakes exactly when a
//! mate has been silent too long, not on a fixed tick. A probe is a PING
//! sent up to `probe_tries` times, a third of `probe_timeout` apart (every
//! PING carries the same nonce, so a late PONG to an early one counts);
//! a peer that answers none within `probe_timeout` of the last is dead.
//! Each PING thus has at least `probe_timeout` to be answered, as when
//! they went one after another, but a death costs
//! `(probe_tries - 1) * probe_timeout / 3 + probe_timeout` (0.7 s by
//! default) instead of `probe_tries * probe_timeout` (1.5 s). Since shard
//! mates know each other, every node is watched, and a death is found
//! within `1.25 * monitor_interval` + 0.7 s (4.45 s by default) at the cost of
//! about one PING and one PONG per pair of watching mates per
//! `monitor_interval`.
//!
//! A random neighbor not heard from is also probed every
//! `random_probe_interval`, which finds dead entries of other shards.
//!
//! Only a proven datagram (see [`crate::auth`]) counts as an answer, so a
//! host that forges datagrams "from" a crashed node cannot keep it alive.
//!
//! [`Liveness`] reports the dead it finds; the node drops them from its
//! tables and tells the network (a DEAD broadcast). A DEAD notice is only a
//! suspicion, as in SWIM: its receivers probe the node themselves
//! (`suspect_tries` times: the watcher already waited and tried), and only
//! their own unanswered probes make it dead to them (they do not broadcast
//! again). Recently dead nodes are
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
use crate::wire::Message;

/// Probes in flight at once. A DEAD notice that finds the table full is
/// lost (the node learns of that death only from its own quiet-neighbor
/// checks): with 8, killing half of 128 simulated nodes took 28.6 s to
/// repair instead of 9.3 s.
pub(crate) const PROBES: usize = 32;
/// Deaths remembered.
const RECENTLY_DEAD: usize = 32;
/// How long a dead node is kept out of the table unless heard directly.
const DEAD_MEMORY: Duration = Duration::from_secs(30);
/// How long a dead node is still asked, now and then, whether it is back.
const GRAVEYARD_MEMORY: Duration = Duration::from_secs(600);

/// The mates one node watches at most.
const MAX_MONITORED: usize = 4;
/// Peers whose death notices were heard lately.
const NOTICES: usize = 16;
/// How long a death notice is old news.
const NOTICE_MEMORY: Duration = Duration::from_secs(30);

/// A liveness probe: whom, the nonce its PONG must echo, whether the node
/// found the silence itself (then it tells the network of a death), and
/// how many PINGs go unanswered before the peer is dead.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Probe {
    peer: PeerInfo,
    nonce: u64,
    own: bool,
    tries: u8,
}

/// A mate this node watches, and when it was last heard from.
#[derive(Clone, Copy, Debug)]
struct Watched {
    peer: PeerInfo,
    heard: Instant,
    /// Of two mates that watch each other, the one with the lower id probes
    /// first; the other waits a quarter interval longer, so one PING and
    /// PONG a round tells both that the other is alive.
    leader: bool,
}

/// Probes, the watched mates, the dead.
#[derive(Clone)]
pub(crate) struct Liveness {
    probes: RequestTable<Probe, PROBES>,
    recently_dead: Deque<(PeerAddr, Instant), RECENTLY_DEAD>,
    watched: Vec<Watched, MAX_MONITORED>,
    /// Whether the node watches at all (a member that joined).
    started: bool,
    /// When a random quiet neighbor is next probed.
    next_random_probe: Instant,
    /// Subjects of the death notices relayed lately, and when.
    notices: Deque<(PeerAddr, Instant), NOTICES>,
    /// The latest death heard of (a notice, or found): PONGs carry it.
    latest: Option<(PeerAddr, Instant)>,
    /// Peers probed lately because a PONG named them dead, and when.
    suspected: Deque<(PeerAddr, Instant), NOTICES>,
}

impl Liveness {
    pub(crate) const fn new() -> Self {
        Liveness {
            probes: RequestTable::new(),
            recently_dead: Deque::new(),
            watched: Vec::new(),
            started: false,
            next_random_probe: Instant::ZERO,
            notices: Deque::new(),
            latest: None,
            suspected: Deque::new(),
        }
    }

    /// Starts watching (a member that joined, or a root that met someone).
    pub(crate) fn start<const N: usize>(
        &mut self,
        ctx: &mut Ctx<'_, impl Transmit>,
        table: &NeighborTable<N>,
    ) {
        if ctx.config.role != Role::Member || self.started {
            return;
        }
        self.started = true;
        self.next_random_probe = ctx.now + ctx.config.random_probe_interval;
        self.rewatch(ctx, table);
    }

    /// The mates to watch may have changed (a mate joined or left the
    /// table, the node moved to another shard).
    pub(crate) fn rewatch<const N: usize>(
        &mut self,
        ctx: &mut Ctx<'_, impl Transmit>,
        table: &NeighborTable<N>,
    ) {
        if !self.started {
            return;
        }
        let me = ctx.out.me();
        let interval = ctx.config.monitor_interval;
        let before = core::mem::take(&mut self.watched);
        for peer in monitored(table, me, ctx.config.monitors) {
            // A mate watched already keeps its time; a new one starts from
            // when the table last heard from it (when half the shard dies
            // at once, the next mate may be dead too), and one silent for
            // too long already is probed now.
            let known = table.get_addr(peer.addr).map_or(ctx.now, |n| n.last_heard);
            let heard = before.iter().find(|w| w.peer.addr == peer.addr).map_or(known, |w| w.heard);
            let mut watched = Watched { peer, heard, leader: me.id < peer.id };
            if ctx.now >= heard + Self::patience(&watched, interval) {
                watched.heard = ctx.now;
                self.probe_own(ctx, peer);
            }
            let _ = self.watched.push(watched);
        }
    }

    /// Stops everything (the node left).
    pub(crate) fn stop(&mut self) {
        self.started = false;
        self.watched.clear();
        self.probes.retain(|_| false);
    }

    /// How long a watched mate may stay silent before it is probed.
    fn patience(w: &Watched, interval: Duration) -> Duration {
        if w.leader {
            interval
        } else {
            interval + interval.div(4)
        }
    }

    /// The next wake-up: a probe's deadline, the moment a watched mate has
    /// been silent too long, the random probe.
    pub(crate) fn poll_timeout(&self, config: &crate::config::Config) -> Option<Instant> {
        // Probes are always in flight: room does not matter.
        let probes = self.probes.poll_timeout(false);
        if !self.started {
            return probes;
        }
        let interval = config.monitor_interval;
        let quiet = self
            .watched
            .iter()
            .filter(|w| !self.probes.contains(|p| p.peer.addr == w.peer.addr))
            .map(|w| w.heard + Self::patience(w, interval))
            .min();
        [probes, quiet, Some(self.next_random_probe)].into_iter().flatten().min()
    }

    /// Probes the watched mates silent too long and, every
    /// `random_probe_interval`, one random quiet neighbor; handles probes
    /// that timed out. Returns the peers found dead, each with whether the
    /// node found the silence itself (rather than on a DEAD notice).
    pub(crate) fn handle_timeout<const N: usize>(
        &mut self,
        ctx: &mut Ctx<'_, impl Transmit>,
        table: &NeighborTable<N>,
    ) -> Vec<(PeerInfo, bool), PROBES> {
        let now = ctx.now;
        if self.started {
            let interval = ctx.config.monitor_interval;
            for i in 0..self.watched.len() {
                let Some(w) = self.watched.get(i).copied() else { break };
                if now >= w.heard + Self::patience(&w, interval) {
                    // From here the probe decides; the next look at this
                    // mate is an interval after its answer.
                    if let Some(entry) = self.watched.get_mut(i) {
                        entry.heard = now;
                    }
                    self.probe_own(ctx, w.peer);
                }
            }
            if now >= self.next_random_probe {
                self.next_random_probe = now + ctx.config.random_probe_interval;
                let quiet_since = now - ctx.config.random_probe_interval;
                let quiet = |n: &&Neighbor| n.last_heard <= quiet_since;
                let count = table.iter().filter(quiet).count();
                let pick = ctx.rng.below(count);
                if let Some(peer) = table.iter().filter(quiet).nth(pick).map(|n| n.peer) {
                    self.probe_own(ctx, peer);
                }
            }
        }
        let mut dead = Vec::new();
        while let Some(i) = self.probes.next_overdue(now) {
            let Some(probe) = self.probes.get_mut(i) else { break };
            let tries = probe.item.tries;
            if probe.attempts < tries {
                let (to, nonce) = (probe.item.peer.addr, probe.item.nonce);
                probe.sent(to, now, probe_wait(ctx.config, probe.attempts + 1, tries));
                ctx.send(to, &Message::Ping { nonce });
            } else if let Some(probe) = self.probes.remove(i) {
                log::debug!(
                    "{}: {} answered none of {} probes: dead{}",
                    ctx.out.me().addr,
                    probe.item.peer.addr,
                    tries,
                    if probe.item.own { "" } else { " (as another node said)" }
                );
                let _ = dead.push((probe.item.peer, probe.item.own));
            }
        }
        dead
    }

    /// Another node says `peer` is dead: probe it (unless a probe is in
    /// flight), `tries` times; only its silence makes it dead to this node.
    /// A DEAD notice gets `suspect_tries` (its sender waited and tried
    /// already); a PONG's rumour gets `probe_tries`: it is second hand and
    /// reaches every node that knows the peer, and with 3 tries live nodes
    /// were dropped under 20 % loss often enough to fail a download.
    pub(crate) fn suspect(&mut self, ctx: &mut Ctx<'_, impl Transmit>, peer: PeerInfo, tries: u8) {
        log::debug!("{}: told {} is dead: probing it", ctx.out.me().addr, peer.addr);
        self.probe(ctx, peer, false, tries);
    }

    /// Probes `peer`, whose silence this node noticed itself.
    fn probe_own(&mut self, ctx: &mut Ctx<'_, impl Transmit>, peer: PeerInfo) {
        let tries = ctx.config.probe_tries;
        self.probe(ctx, peer, true, tries);
    }

    /// Starts a probe of `peer`, dead after `tries` unanswered PINGs,
    /// unless one is in flight; `own` if this node noticed the silence
    /// itself.
    fn probe(&mut self, ctx: &mut Ctx<'_, impl Transmit>, peer: PeerInfo, own: bool, tries: u8) {
        if self.probes.contains(|p| p.peer.addr == peer.addr) {
            return;
        }
        if self.probes.is_full() {
            log::debug!("{}: no room to probe {}", ctx.out.me().addr, peer.addr);
            return;
        }
        let nonce = ctx.rng.next_u64();
        let mut request = Request::new(Probe { peer, nonce, own, tries }, ctx.now);
        request.sent(peer.addr, ctx.now, probe_wait(ctx.config, 1, tries));
        if self.probes.push(request).is_ok() {
            ctx.send(peer.addr, &Message::Ping { nonce });
        }
    }

    /// A datagram came from `addr` at `now`: a probe of it is answered,
    /// and a watched mate is quiet again only an interval from now.
    pub(crate) fn heard_from(&mut self, addr: PeerAddr, now: Instant) {
        self.probes.retain(|p| p.item.peer.addr != addr);
        for w in self.watched.iter_mut().filter(|w| w.peer.addr == addr) {
            w.heard = now;
        }
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

    /// A death notice about `addr` came at `now`: whether it is the first
    /// in [`NOTICE_MEMORY`] (then it is remembered, and relayed).
    pub(crate) fn note_notice(&mut self, addr: PeerAddr, now: Instant) -> bool {
        first_in(&mut self.notices, addr, now)
    }

    /// A death was heard of (a DEAD notice) or found at `now`.
    pub(crate) fn heard_of_death(&mut self, addr: PeerAddr, now: Instant) {
        self.latest = Some((addr, now));
    }

    /// The latest death heard of in the last [`NOTICE_MEMORY`], for a PONG
    /// to carry.
    pub(crate) fn latest_notice(&self, now: Instant) -> Option<PeerAddr> {
        self.latest.filter(|(_, at)| now < *at + NOTICE_MEMORY).map(|(a, _)| a)
    }

    /// Whether a PONG naming `addr` dead should make this node probe it:
    /// once per [`NOTICE_MEMORY`] (mates' PONGs repeat it every round).
    pub(crate) fn first_suspicion(&mut self, addr: PeerAddr, now: Instant) -> bool {
        first_in(&mut self.suspected, addr, now)
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

/// How long after the `sent`-th PING of a probe of `tries` the next goes
/// out (a third of `probe_timeout`), or, after the last, the peer is dead
/// (`probe_timeout`): the PINGs share a nonce, so each keeps its whole
/// `probe_timeout` to be answered while a death is known sooner.
fn probe_wait(config: &crate::config::Config, sent: u8, tries: u8) -> Duration {
    if sent < tries {
        config.probe_timeout.div(3)
    } else {
        config.probe_timeout
    }
}

/// Records `addr` in `ring` at `now`; whether it was not there already
/// within [`NOTICE_MEMORY`] (the oldest entry makes room).
fn first_in(ring: &mut Deque<(PeerAddr, Instant), NOTICES>, addr: PeerAddr, now: Instant) -> bool {
    if ring.iter().any(|(a, at)| *a == addr && now < *at + NOTICE_MEMORY) {
        return false;
    }
    if ring.is_full() {
        ring.pop_front();
    }
    let _ = ring.push_back((addr, now));
    true
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
            table.insert(peer(k * 16 + 3), Instant::ZERO);
        }
        table.insert(peer(6 * 16 + 4), Instant::ZERO); // another shard
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
        pair.insert(peer(16 + 3), Instant::ZERO);
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
