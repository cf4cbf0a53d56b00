//! Membership: joining, the neighbor table and its upkeep, moving to an
//! empty shard, and the node's lifecycle.
//!
//! [`Membership`] owns the [`NeighborTable`] and the [`Lifecycle`]. Joining
//! follows the original: JOIN to a seed, PEERS back; then the node asks one
//! member of every shard for its shard's members (the *survey*), picks its
//! shard if it may (the emptiest of a few), and makes itself known with
//! ADDME to everyone it learned and by randomcast. Afterwards a maintenance
//! round keeps the table full: a mate is asked for the shard's members, a
//! neighbor outside the shard for members of ours, and some neighbor for a
//! sample of every shard if one is short.
//!
//! The table holds only peers that proved themselves: a member enters it
//! when a datagram comes straight from its address echoing this node's
//! cookie ([`Membership::learn`]). A peer only heard of (listed in PEERS, a
//! holder named in NOTFOUND, the originator of a relayed ADDME, a sender
//! that proved nothing) is *considered*: sent a PING, whose proven PONG
//! brings it in ([`Membership::consider`]). Claims of others never remove
//! or replace an entry; only the peer's own datagrams, its LEAVE and this
//! node's own unanswered probes do.
//!
//! Every member of the node's own shard that joins or leaves the table is
//! recorded as a [`Change`], which the node passes on to replication (its
//! repair scan) after each input.

use heapless::Vec;

use super::liveness::Liveness;
use super::out::{Proof, UNPROVEN_MIN};
use super::Ctx;
use crate::config::{Config, Role, MAX_PEERS_PER_MESSAGE, SHARD_COUNT};
use crate::counters::DropReason;
use crate::id::{NodeId, PeerAddr, PeerInfo, Shard};
use crate::neighbors::{Insert, NeighborTable};
use crate::node::{Event, Transmit};
use crate::time::{Duration, Instant};
use crate::timer::{Timer, TimerTable};
use crate::wire::{Message, PeerList, Source, Transmission};

/// Shards a joining node compares before it picks the smallest: looking at
/// a few random shards keeps most of the balance without the herding of
/// nodes that join at once into the one shard that looks smallest.
pub const SHARD_CHOICES: usize = 4;

/// Where the node stands in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Lifecycle {
    /// Not joining: a root node, or before `join`. `may_choose_shard`: it
    /// will pick its id in a shard that needs members when it joins.
    Alone { may_choose_shard: bool },
    /// JOIN sent to `seed` (`attempt` times), waiting for PEERS.
    Joining { seed: PeerAddr, attempt: u8, may_choose_shard: bool },
    /// The seed answered; one member of each shard was asked for its
    /// shard's members (a client to know every shard, a new member to find
    /// the emptiest shard). Ends when all answered or at the Join timer.
    Surveying {
        asked: [bool; SHARD_COUNT as usize],
        sizes: [u16; SHARD_COUNT as usize],
        may_choose_shard: bool,
        /// Times the unanswered shards were asked again.
        rounds: u8,
    },
    /// A member of the network.
    Joined,
    /// Handing off fragments before leaving.
    Leaving,
    /// Gone: the node does nothing more.
    Left,
}

impl Lifecycle {
    /// Whether the join is complete (a root node has nothing to join).
    pub(crate) fn is_joined(self) -> bool {
        !matches!(self, Lifecycle::Joining { .. } | Lifecycle::Surveying { .. })
    }

    /// Whether the node may still replace its id (it then stays out of
    /// others' tables until it has).
    pub(crate) fn may_choose_shard(self) -> bool {
        match self {
            Lifecycle::Alone { may_choose_shard }
            | Lifecycle::Joining { may_choose_shard, .. }
            | Lifecycle::Surveying { may_choose_shard, .. } => may_choose_shard,
            Lifecycle::Joined | Lifecycle::Leaving | Lifecycle::Left => false,
        }
    }
}

/// A member of the node's own shard joined (`added`) or left its table.
pub(crate) type Change = (PeerInfo, bool);

/// Changes remembered between two drains; beyond them the repair scan
/// announces every fragment to its whole top R, as it does when more
/// changes come during one scan than it remembers.
const CHANGES: usize = 8;

/// Peers recently sent a PING to prove themselves, not pinged again for
/// [`CONSIDER_AGAIN`].
const CONSIDERED: usize = 32;
/// How soon a considered peer may be pinged again.
const CONSIDER_AGAIN: Duration = Duration::from_secs(2);
/// JOINs that came while this node was still joining, answered when it has.
const WAITING: usize = 4;
/// Times a survey asks the shards that did not answer again before the
/// node decides with what it has.
const SURVEY_ROUNDS: u8 = 2;

#[derive(Clone, Copy, Debug)]
enum MembershipTimer {
    /// A JOIN retry, or the end of the survey.
    Join,
    /// The next maintenance round.
    Maintenance,
}

impl Timer for MembershipTimer {
    const COUNT: usize = 2;
    fn index(self) -> usize {
        self as usize
    }
}

/// Joining, the neighbor table, and the lifecycle.
#[derive(Clone)]
pub(crate) struct Membership<const N: usize> {
    pub(crate) lifecycle: Lifecycle,
    pub(crate) table: NeighborTable<N>,
    /// The node this one joined through, asked again if the table empties.
    seed: Option<PeerAddr>,
    /// A shard in which the node knew nobody at the last maintenance round
    /// and asked around (see [`Membership::move_to_empty_shard`]).
    suspect_empty: Option<Shard>,
    timers: TimerTable<MembershipTimer, 2>,
    changes: Vec<Change, CHANGES>,
    changes_overflowed: bool,
    /// A maintenance round ran since the last [`Membership::take_maintained`].
    maintained: bool,
    considered: heapless::Deque<(PeerAddr, Instant), CONSIDERED>,
    /// Askers (address, peers wanted, shard) to answer once joined.
    waiting: Vec<(PeerAddr, u8, Option<Shard>), WAITING>,
}

impl<const N: usize> Membership<N> {
    pub(crate) fn new(config: &Config, shard: Shard) -> Self {
        Membership {
            lifecycle: Lifecycle::Alone { may_choose_shard: false },
            table: NeighborTable::new(
                shard,
                config.own_shard_neighbors,
                config.per_shard_neighbors,
            ),
            seed: None,
            suspect_empty: None,
            timers: TimerTable::new(),
            changes: Vec::new(),
            changes_overflowed: false,
            maintained: false,
            considered: heapless::Deque::new(),
            waiting: Vec::new(),
        }
    }

    pub(crate) fn poll_timeout(&self) -> Option<crate::time::Instant> {
        self.timers.next()
    }

    /// Takes the own-shard changes recorded since the last call, and
    /// whether some were lost.
    pub(crate) fn take_changes(&mut self) -> (Vec<Change, CHANGES>, bool) {
        let overflow = core::mem::replace(&mut self.changes_overflowed, false);
        (core::mem::take(&mut self.changes), overflow)
    }

    /// Whether a maintenance round ran since the last call: the node then
    /// does the other machines' share of the round.
    pub(crate) fn take_maintained(&mut self) -> bool {
        core::mem::replace(&mut self.maintained, false)
    }

    fn record(&mut self, me: PeerInfo, peer: PeerInfo, added: bool) {
        if peer.shard() == me.shard() && self.changes.push((peer, added)).is_err() {
            self.changes_overflowed = true;
        }
    }

    /// Starts joining through `seed`; JOIN is repeated with backoff until
    /// PEERS arrives.
    pub(crate) fn join(&mut self, ctx: &mut Ctx<'_, impl Transmit>, seed: PeerAddr) {
        let may_choose_shard = self.lifecycle.may_choose_shard();
        self.seed = Some(seed);
        self.lifecycle = Lifecycle::Joining { seed, attempt: 0, may_choose_shard };
        self.timers.set(MembershipTimer::Join, ctx.now + ctx.config.join_retry);
        send_join(ctx, seed, None);
    }

    /// A root node starts maintaining its table once it hears from others.
    pub(crate) fn heard_from_someone(&mut self, ctx: &Ctx<'_, impl Transmit>) {
        let alone = matches!(self.lifecycle, Lifecycle::Alone { .. });
        if alone
            && ctx.config.role == Role::Member
            && !self.timers.is_armed(MembershipTimer::Maintenance)
        {
            let at = ctx.now + self.maintenance_delay(ctx.out.me().shard(), ctx.config);
            self.timers.set(MembershipTimer::Maintenance, at);
        }
    }

    /// Adds or refreshes `peer`, which proved itself: a datagram came
    /// straight from its address echoing this node's cookie. A peer added
    /// is sent ADDME, so that it knows this node too.
    pub(crate) fn learn(
        &mut self,
        ctx: &mut Ctx<'_, impl Transmit>,
        liveness: &Liveness,
        peer: PeerInfo,
    ) -> Insert {
        let me = ctx.out.me();
        if peer.id == me.id || peer.addr == me.addr {
            return Insert::Full;
        }
        if liveness.recently_dead(peer.addr, ctx.now) {
            // The node revives a peer it hears from directly before it
            // learns it; this one is still dead.
            return Insert::Full;
        }
        let replaced =
            self.table.get_addr(peer.addr).map(|n| n.peer).filter(|old| old.id != peer.id);
        let outcome = self.table.insert(peer, ctx.now);
        if let Some(old) = replaced {
            self.record(me, old, false);
        }
        if outcome == Insert::Added || (outcome == Insert::Refreshed && replaced.is_some()) {
            self.record(me, peer, true);
            // Tables stay symmetric: a peer just learned learns this node
            // (it may have heard us before we were a visible member).
            if ctx.out.source.member && ctx.config.role == Role::Member {
                ctx.send(peer.addr, &Message::AddMe);
            }
        }
        outcome
    }

    /// `peer` was heard of, not from: if the table has room for it, it is
    /// sent a PING (at most every [`CONSIDER_AGAIN`]), and its proven PONG
    /// will bring it in.
    pub(crate) fn consider(
        &mut self,
        ctx: &mut Ctx<'_, impl Transmit>,
        liveness: &Liveness,
        peer: PeerInfo,
    ) {
        let me = ctx.out.me();
        let known = self.table.get_addr(peer.addr).is_some_and(|n| n.peer.id == peer.id);
        if known
            || peer.id == me.id
            || peer.addr == me.addr
            || !self.table.has_room_for(&peer)
            || liveness.recently_dead(peer.addr, ctx.now)
        {
            return;
        }
        let now = ctx.now;
        if self.considered.iter().any(|(a, at)| *a == peer.addr && now < *at + CONSIDER_AGAIN) {
            return;
        }
        if self.considered.is_full() {
            self.considered.pop_front();
        }
        let _ = self.considered.push_back((peer.addr, now));
        let nonce = ctx.rng.next_u64();
        ctx.send(peer.addr, &Message::Ping { nonce });
    }

    /// `peer` says whether its store is full; a change is recorded as the
    /// mate leaving (full) or joining (room again) the holders.
    pub(crate) fn note_full(&mut self, me: PeerInfo, peer: PeerInfo, full: bool) {
        let same = self.table.get_addr(peer.addr).is_some_and(|n| n.peer.id == peer.id);
        if same && self.table.set_full(peer.addr, full) {
            self.record(me, peer, !full);
        }
    }

    /// Removes `peer` if it is still the node known at its address;
    /// returns whether it was there.
    pub(crate) fn remove(&mut self, me: PeerInfo, peer: PeerInfo) -> bool {
        let known = self.table.get_addr(peer.addr).is_some_and(|n| n.peer.id == peer.id);
        if known {
            self.table.remove_addr(peer.addr);
            self.record(me, peer, false);
        }
        known
    }

    /// JOIN (from `from`, which proved its address or gets a RETRY):
    /// answer with PEERS, or once joined if this node is still joining.
    pub(crate) fn on_join_request(
        &mut self,
        ctx: &mut Ctx<'_, impl Transmit>,
        proof: Proof,
        from: PeerAddr,
        want: u8,
        shard: Option<Shard>,
    ) {
        if ctx.config.role != Role::Member {
            ctx.out.drop(DropReason::NotServed);
            return;
        }
        if !proof.proven {
            ctx.out.retry(ctx.sink, ctx.now, from, proof);
            return;
        }
        // A node still joining knows too little, and cannot list itself
        // yet: it answers when it has joined.
        if !self.lifecycle.is_joined() || !ctx.out.source.member {
            if !self.waiting.iter().any(|w| w.0 == from) {
                if self.waiting.is_full() {
                    self.waiting.remove(0);
                }
                let _ = self.waiting.push((from, want, shard));
            }
            return;
        }
        self.send_peers(ctx, from, want, shard);
    }

    /// Sends `to` up to `want` peers it may not know, of `shard` if given.
    fn send_peers(
        &mut self,
        ctx: &mut Ctx<'_, impl Transmit>,
        to: PeerAddr,
        want: u8,
        shard: Option<Shard>,
    ) {
        let mut peers = PeerList::new();
        let want = usize::from(want).min(MAX_PEERS_PER_MESSAGE);
        self.table.sample(ctx.rng, want, shard, Some(to), &mut peers);
        ctx.send(to, &Message::Peers { peers });
    }

    /// FIND: a member of the shard answers PONG; anyone else asked
    /// directly lists the members of the shard it knows (to an address
    /// that proved itself).
    pub(crate) fn on_find(
        &mut self,
        ctx: &mut Ctx<'_, impl Transmit>,
        proof: Proof,
        reply_to: PeerAddr,
        shard: Shard,
        nonce: u64,
        singlecast: bool,
    ) {
        if ctx.config.role == Role::Member && shard == ctx.out.me().shard() {
            ctx.answer(reply_to, proof, &Message::Pong { nonce, dead: None });
        } else if singlecast {
            if !proof.proven {
                ctx.out.retry(ctx.sink, ctx.now, reply_to, proof);
                return;
            }
            let want = MAX_PEERS_PER_MESSAGE as u8;
            self.send_peers(ctx, reply_to, want, Some(shard));
        }
    }

    /// PEERS (proven): consider them; during a join this is the seed's
    /// answer or a survey answer.
    pub(crate) fn on_peers(
        &mut self,
        ctx: &mut Ctx<'_, impl Transmit>,
        liveness: &Liveness,
        source: Source,
        peers: &PeerList,
        movable: bool,
    ) {
        for peer in peers.iter() {
            self.consider(ctx, liveness, *peer);
        }
        match self.lifecycle {
            Lifecycle::Joining { may_choose_shard, .. } => {
                // The seed answered: ask one member of every shard for its
                // shard's members (of those the seed listed, or known).
                let mut asked = [false; SHARD_COUNT as usize];
                for shard in Shard::all() {
                    let listed = peers.iter().filter(|p| p.shard() == shard);
                    let pick = ctx.rng.below(listed.clone().count());
                    let member =
                        listed.copied().nth(pick).or_else(|| self.table.random_in(ctx.rng, shard));
                    if let Some(member) = member {
                        send_join(ctx, member.addr, Some(shard));
                        if let Some(a) = asked.get_mut(shard.index()) {
                            *a = true;
                        }
                    }
                }
                // What the seed told us (and the table knows) is a lower
                // bound of each shard's size; the survey answers refine it.
                let mut sizes = self.table.shard_counts();
                for peer in peers.iter() {
                    if let Some(size) = sizes.get_mut(peer.shard().index()) {
                        *size = size.saturating_add(1);
                    }
                }
                if let Some(size) = sizes.get_mut(source.id.shard().index()) {
                    *size = (*size).max(1);
                }
                self.lifecycle = Lifecycle::Surveying { asked, sizes, may_choose_shard, rounds: 0 };
                self.timers.set(MembershipTimer::Join, ctx.now + ctx.config.survey_timeout);
                if !asked.contains(&true) {
                    self.finish_join(ctx, sizes, may_choose_shard, movable);
                }
            }
            Lifecycle::Surveying { mut asked, mut sizes, may_choose_shard, rounds } => {
                // The answer of a member of shard s about shard s.
                let shard = source.id.shard();
                let listed = peers.iter().filter(|p| p.shard() == shard).count() as u16;
                if let (Some(a), Some(size)) =
                    (asked.get_mut(shard.index()), sizes.get_mut(shard.index()))
                {
                    *a = false;
                    *size = (*size).max(listed.saturating_add(1));
                }
                self.lifecycle = Lifecycle::Surveying { asked, sizes, may_choose_shard, rounds };
                if !asked.contains(&true) {
                    self.finish_join(ctx, sizes, may_choose_shard, movable);
                }
            }
            Lifecycle::Alone { .. } | Lifecycle::Joined | Lifecycle::Leaving | Lifecycle::Left => {
                // The PINGs just sent carry our own source: the peers
                // considered will consider us too.
            }
        }
    }

    /// Runs the JOIN retry, the survey's end and the maintenance round.
    /// `movable`: the node fetches nothing, so it may move to an empty
    /// shard.
    pub(crate) fn handle_timeout(&mut self, ctx: &mut Ctx<'_, impl Transmit>, movable: bool) {
        if self.timers.expire(MembershipTimer::Join, ctx.now) {
            match self.lifecycle {
                Lifecycle::Joining { seed, attempt, may_choose_shard } => {
                    let attempt = attempt.saturating_add(1);
                    let backoff = ctx.config.join_retry.saturating_mul(1 << attempt.min(3));
                    self.lifecycle = Lifecycle::Joining { seed, attempt, may_choose_shard };
                    self.timers.set(MembershipTimer::Join, ctx.now + backoff);
                    send_join(ctx, seed, None);
                    ctx.out.event(Event::JoinRetry { attempt });
                }
                Lifecycle::Surveying { asked, sizes, may_choose_shard, rounds }
                    if rounds < SURVEY_ROUNDS =>
                {
                    // Answers lost (or slow): ask the silent shards again,
                    // through members learned meanwhile where possible.
                    for shard in Shard::all().filter(|s| asked.get(s.index()) == Some(&true)) {
                        if let Some(member) = self.table.random_in(ctx.rng, shard) {
                            send_join(ctx, member.addr, Some(shard));
                        }
                    }
                    let rounds = rounds + 1;
                    self.lifecycle =
                        Lifecycle::Surveying { asked, sizes, may_choose_shard, rounds };
                    self.timers.set(MembershipTimer::Join, ctx.now + ctx.config.survey_timeout);
                }
                Lifecycle::Surveying { sizes, may_choose_shard, .. } => {
                    self.finish_join(ctx, sizes, may_choose_shard, movable)
                }
                _ => {}
            }
        }
        if self.timers.expire(MembershipTimer::Maintenance, ctx.now) {
            self.maintain(ctx, movable);
            let at = ctx.now + self.maintenance_delay(ctx.out.me().shard(), ctx.config);
            self.timers.set(MembershipTimer::Maintenance, at);
        }
    }

    /// Stops the timers of a node that left.
    pub(crate) fn stop(&mut self) {
        self.timers.clear();
    }

    /// Ends the join: a new member picks its shard, then every member
    /// makes itself known (ADDME to the peers it knows, randomcast ADDMEs
    /// as in the original) and runs a first maintenance round.
    fn finish_join(
        &mut self,
        ctx: &mut Ctx<'_, impl Transmit>,
        sizes: [u16; SHARD_COUNT as usize],
        may_choose_shard: bool,
        movable: bool,
    ) {
        self.lifecycle = Lifecycle::Joined;
        self.timers.stop(MembershipTimer::Join);
        if ctx.config.role == Role::Member {
            if may_choose_shard {
                self.choose_shard(ctx, &sizes);
            }
            ctx.out.source.member = true;
            for to in self.table.iter().map(|n| n.peer.addr) {
                ctx.send(to, &Message::AddMe);
            }
            let hops = ctx.config.addme_hops.min(ctx.config.max_hops);
            for _ in 0..ctx.config.addme_randomcasts {
                if let Some(first) = self.table.random_except(ctx.rng, None) {
                    // Padded: the walk's last node probes us only if the
                    // ADDME was as large as the probe (see dispatch).
                    let randomcast = Transmission::Randomcast { hops };
                    ctx.send_padded(first.addr, randomcast, &Message::AddMe, UNPROVEN_MIN);
                }
            }
            for (to, want, shard) in core::mem::take(&mut self.waiting) {
                self.send_peers(ctx, to, want, shard);
            }
            self.maintain(ctx, movable);
            let first_round = ctx.now + ctx.config.maintenance_interval.div(8);
            self.timers.set(MembershipTimer::Maintenance, first_round);
        }
        let neighbors = self.table.len();
        ctx.out.event(Event::Joined { neighbors });
    }

    /// Keeps the neighbor table full: asks a random mate for its list of
    /// the shard (JOIN restricted to the shard); asks a random neighbor
    /// outside the shard which members of our shard it knows (FIND sent
    /// singlecast), which finds mates the shard does not know yet, or the
    /// first mate of a node that knows none; and, if some shard is below
    /// its quota, asks a random neighbor for a sample of every shard (JOIN).
    fn maintain(&mut self, ctx: &mut Ctx<'_, impl Transmit>, movable: bool) {
        self.maintained = true;
        if self.table.is_empty() {
            // Everyone we knew is gone (or we never met anyone): ask the
            // seed again.
            if let Some(seed) = self.seed {
                send_join(ctx, seed, None);
            }
        }
        self.move_to_empty_shard(ctx, movable);
        let own = ctx.out.me().shard();
        if let Some(mate) = self.table.random_in(ctx.rng, own) {
            send_join(ctx, mate.addr, Some(own));
        }
        self.ask_for_shard(ctx, own, true);
        let counts = self.table.shard_counts();
        let short = Shard::all().any(|s| {
            let known = usize::from(counts.get(s.index()).copied().unwrap_or(0));
            s != own && known < self.table.quota(s)
        });
        if short {
            if let Some(peer) = self.table.random_except(ctx.rng, None) {
                send_join(ctx, peer.addr, None);
            }
        }
    }

    /// A node that is fetching nothing, whose shard has other members,
    /// moves to a shard in which nobody can be found: it takes a new id
    /// there (reported as [`Event::IdentityChosen`]) and tells its
    /// neighbors. What it holds of its old shard it announced to its mates
    /// when it stored it, and it keeps serving it; the extra-copy collector
    /// (`replication::gc`) offers each fragment to the old shard's holders
    /// and drops it only once they all hold it. (When a node had to hold
    /// nothing to move, the nodes of a network started together took an
    /// upload's fragments at once and the empty shards stayed empty.)
    ///
    /// Nodes that join at the same moment choose their shards from the same
    /// stale view and may leave a shard empty, which makes every fragment of
    /// that shard unstorable. A shard in which the node knows nobody is
    /// first only suspected: the node asks three random neighbors for its
    /// members. If a round later it still knows nobody there, the shard is
    /// taken to be empty, and the node moves if it has the lowest id among
    /// the mates it knows.
    fn move_to_empty_shard(&mut self, ctx: &mut Ctx<'_, impl Transmit>, movable: bool) {
        let counts = self.table.shard_counts();
        let own = ctx.out.me().shard();
        let known = |s: Shard| counts.get(s.index()).copied().unwrap_or(0);
        let suspect = self.suspect_empty.take();
        let eligible = movable
            && ctx.config.role == Role::Member
            && known(own) > 0
            && matches!(self.lifecycle, Lifecycle::Joined | Lifecycle::Alone { .. });
        if !eligible {
            return;
        }
        if let Some(shard) = suspect.filter(|s| *s != own && known(*s) == 0) {
            // Of the shard's members, only the one with the lowest id moves:
            // its mates stay, so the shard it leaves is not emptied and
            // nobody moves back. (Each shard's mover suspects an empty
            // shard drawn at random, so the movers spread.)
            let me = ctx.out.me().id;
            let designated = self.table.iter().all(|n| n.peer.shard() != own || n.peer.id > me);
            if !designated {
                return;
            }
            log::info!("{}: moving from shard {own} to empty shard {shard}", ctx.out.me().addr);
            let id = NodeId::in_shard(ctx.rng.next_u64(), shard);
            self.take_id(ctx, id);
            for to in self.table.iter().map(|n| n.peer.addr) {
                ctx.send(to, &Message::AddMe);
            }
            return;
        }
        let empty = |s: &Shard| *s != own && known(*s) == 0;
        let pick = ctx.rng.below(Shard::all().filter(empty).count());
        if let Some(shard) = Shard::all().filter(empty).nth(pick) {
            for _ in 0..3 {
                self.ask_for_shard(ctx, shard, false);
            }
            self.suspect_empty = Some(shard);
        }
    }

    /// Sends FIND for `shard` singlecast to a random neighbor (outside
    /// `shard` if `outside`), which answers with the members it knows.
    pub(crate) fn ask_for_shard(
        &mut self,
        ctx: &mut Ctx<'_, impl Transmit>,
        shard: Shard,
        outside: bool,
    ) {
        let eligible = |n: &&crate::neighbors::Neighbor| !outside || n.peer.shard() != shard;
        let count = self.table.iter().filter(eligible).count();
        let pick = ctx.rng.below(count);
        let target = self.table.iter().filter(eligible).nth(pick).map(|n| n.peer.addr);
        if let Some(to) = target {
            let nonce = ctx.rng.next_u64();
            ctx.send(to, &Message::Find { shard, nonce });
        }
    }

    /// The time to the next maintenance: short while the table has gaps
    /// (no shard mate, or a shard with nobody), the full interval otherwise.
    fn maintenance_delay(&self, own: Shard, config: &Config) -> Duration {
        let counts = self.table.shard_counts();
        let gaps = counts.iter().enumerate().any(|(s, c)| *c == 0 && s != own.index());
        let no_mate = counts.get(own.index()) == Some(&0);
        if gaps || no_mate {
            config.maintenance_interval.div(8)
        } else {
            config.maintenance_interval
        }
    }

    /// Takes a fresh id in a shard that the survey found small.
    ///
    /// If some shards look empty, it fills one of them with probability
    /// `e / (e + 1)` for `e` empty shards; otherwise (or if the coin says
    /// no) it takes the smallest of [`SHARD_CHOICES`] random shards. Always
    /// taking the smallest shard balances best when nodes join one at a
    /// time, but nodes that join at the same moment share a stale view and
    /// would all crowd into the one shard that looks smallest; looking at a
    /// few random shards keeps most of the balance without that herding.
    fn choose_shard(
        &mut self,
        ctx: &mut Ctx<'_, impl Transmit>,
        sizes: &[u16; SHARD_COUNT as usize],
    ) {
        let size = |n: u8| sizes.get(usize::from(n)).copied().unwrap_or(0);
        let mut order = [0u8; SHARD_COUNT as usize];
        for (i, slot) in order.iter_mut().enumerate() {
            *slot = i as u8;
        }
        ctx.rng.shuffle(&mut order);
        let empty = order.iter().filter(|n| size(**n) == 0).count();
        let best = if empty > 0 && ctx.rng.below(empty + 1) < empty {
            order.iter().copied().find(|n| size(*n) == 0)
        } else {
            order.iter().take(SHARD_CHOICES).copied().min_by_key(|n| size(*n))
        };
        let Some(shard) = best.and_then(Shard::new) else { return };
        let id = NodeId::in_shard(ctx.rng.next_u64(), shard);
        self.take_id(ctx, id);
    }

    fn take_id(&mut self, ctx: &mut Ctx<'_, impl Transmit>, id: NodeId) {
        ctx.out.source.id = id;
        self.table.set_own_shard(id.shard());
        ctx.out.event(Event::IdentityChosen(id));
        // The node's mates are all new: whoever keeps track of them (the
        // repair scan, the watched mates) starts over, and peers pinged
        // before (for a shard whose quota they did not fit) are worth
        // asking again.
        self.changes_overflowed = true;
        self.considered.clear();
    }
}

/// Sends JOIN (restricted to `shard` if given) to `to`.
pub(crate) fn send_join(ctx: &mut Ctx<'_, impl Transmit>, to: PeerAddr, shard: Option<Shard>) {
    let want = ctx.config.join_want.min(MAX_PEERS_PER_MESSAGE as u8);
    ctx.send(to, &Message::Join { want, shard });
}
