//! The node: a state machine that does no I/O.
//!
//! A [`Node`] owns its store, its outputs and three sub-machines, each a
//! struct with its own state and timers:
//!
//! * `membership`: joining, the neighbor table and its upkeep, the
//!   node's lifecycle;
//! * `liveness`: probes, the dead, the graveyard;
//! * `replication`: storing, serving, announcing, fetching, repair and
//!   the hand-off of a leave.
//!
//! The node routes each datagram to the machine it concerns and passes the
//! consequences of one machine's work to the others (a peer found dead
//! leaves the table, which starts a repair scan). It is driven by four
//! kinds of calls, as in quinn-proto:
//!
//! * getters ([`Node::id`], [`Node::neighbors`], [`Node::counters`], ...);
//! * inputs: [`Node::handle_datagram`] for every datagram received and
//!   [`Node::handle_timeout`] when the time given by [`Node::poll_timeout`]
//!   has come (calling it early is harmless);
//! * commands: [`Node::join`], [`Node::leave`], and the requests clients
//!   make ([`Node::send_fileget`], [`Node::offer`], [`Node::send_pieces`],
//!   [`Node::ping`], ...);
//! * outputs: datagrams go out through the caller's [`Transmit`] sink during
//!   any input or command; application events come from
//!   [`Node::poll_event`]; answers to the application's own requests (PONG,
//!   STORED, a piece of a fragment, a holder's FILEGET, NOTFOUND, STATS)
//!   are returned by `handle_datagram` as a [`Reply`] borrowing the
//!   datagram.
//!
//! The calling order is free: after any input or command, the caller asks
//! `poll_timeout` again and sleeps until then or until the next datagram
//! ([`crate::driver`] does this once for every runtime).
//!
//! **Wake-up invariant.** After `handle_timeout(t)` with
//! `t >= poll_timeout()`, `poll_timeout()` is later than `t` (or `None`):
//! every timer that fired was re-armed in the future or disarmed, and a
//! request that could not be sent (no room in its window) is not reported.
//! A runtime that trusts `poll_timeout` therefore never spins. The test
//! harness and the simulator check this after every wake-up.
//!
//! Packet handling follows the original's `handlenetl` (a singlecast is
//! processed; a randomcast with hops left is forwarded to a random neighbor
//! and otherwise processed; a broadcast is processed once per UID and
//! relayed to every neighbor while breadth remains) with the rules that
//! keep one hostile host from hurting the network (`dispatch`): the
//! network key's tag is checked before anything is decoded; only what a
//! datagram *proves* (that its sender listens at its address, see
//! [`crate::auth`]) lets it change the tables or get a big answer; only
//! small control messages travel by randomcast and broadcast, within
//! clamped limits and per-sender budgets ([`crate::budget`]).

use core::fmt;

mod dispatch;
mod interface;
#[cfg(feature = "listing")]
mod listing;
pub(crate) mod liveness;
pub(crate) mod membership;
mod out;
pub(crate) mod replication;

use crate::auth::{CookieJar, CookieSecret, CookieStore, NetworkKey};
use crate::budget::Budgets;
use crate::config::{Config, ConfigError, Role};
use crate::counters::Counters;
use crate::dedup::BroadcastDedup;
use crate::flow::AdvertisedWindows;
use crate::fragment::{FragmentBytes, FragmentHash};
use crate::holders::Holders;
use crate::id::{NodeId, PeerAddr, PeerInfo, Shard};
use crate::neighbors::NeighborTable;
use crate::rand::Rng;
use crate::store::FragmentStore;
use crate::time::Instant;
use crate::wire::{Cookies, Message, Packet, Source, Transmission};

#[cfg(test)]
mod tests;

use liveness::Liveness;
use membership::{Lifecycle, Membership};
use out::{Out, Proof};
use replication::{Replication, View};

pub use interface::{Event, Reply, RequestError, SendError, Transmit};
pub use membership::SHARD_CHOICES;
pub use out::{FILEFRAG_OVERHEAD, MIN_DATAGRAM, UNPROVEN_MIN};

/// Peers whose advertised receive windows a node remembers.
const LIMITED_PEERS: usize = 16;

/// What a sub-machine works with while it handles one input: the time,
/// the configuration, the node's generator, outputs and cookie jar, and
/// the sink.
pub(crate) struct Ctx<'a, T> {
    pub(crate) now: Instant,
    pub(crate) config: &'a Config,
    pub(crate) rng: &'a mut Rng,
    pub(crate) out: &'a mut Out,
    pub(crate) jar: &'a mut dyn CookieStore,
    pub(crate) sink: &'a mut T,
}

impl<T: Transmit> Ctx<'_, T> {
    /// Sends `message` singlecast to `to`.
    pub(crate) fn send(&mut self, to: PeerAddr, message: &Message<'_>) -> bool {
        self.out.send(self.sink, self.jar, self.now, to, Transmission::Singlecast, message)
    }

    /// Sends `message` as `transmission` to `to`, padded to `min_len`
    /// bytes at least.
    pub(crate) fn send_padded(
        &mut self,
        to: PeerAddr,
        transmission: Transmission,
        message: &Message<'_>,
        min_len: usize,
    ) -> bool {
        self.out.send_padded(self.sink, self.jar, self.now, to, transmission, message, min_len)
    }

    /// Answers a datagram from `to` that came with `proof`: as is if it
    /// proved its address or the answer is no larger; else a RETRY.
    pub(crate) fn answer(&mut self, to: PeerAddr, proof: Proof, message: &Message<'_>) -> bool {
        self.out.answer(self.sink, self.jar, self.now, to, proof, message)
    }

    /// Answers only a datagram that proved its address (a list of peers or
    /// holders, statistics); others get a RETRY if it fits.
    pub(crate) fn answer_proven(
        &mut self,
        to: PeerAddr,
        proof: Proof,
        message: &Message<'_>,
    ) -> bool {
        if proof.proven {
            self.send(to, message)
        } else {
            self.out.retry(self.sink, self.now, to, proof)
        }
    }
}

/// A node of the overlay. `NEIGHBORS`, `DEDUP` and `FETCHES` are the
/// capacities of the neighbor table, the broadcast-UID ring and the
/// replication tables (fetches in progress, announcements awaiting their
/// acknowledgement); the defaults suit a host node (see [`SmallNode`] for
/// a microcontroller).
#[derive(Clone)]
pub struct Node<
    S: FragmentStore,
    const NEIGHBORS: usize = 256,
    const DEDUP: usize = 1024,
    const FETCHES: usize = 64,
> {
    config: Config,
    store: S,
    rng: Rng,
    out: Out,
    jar: CookieJar<NEIGHBORS>,
    budgets: Budgets<NEIGHBORS>,
    dedup: BroadcastDedup<DEDUP>,
    windows: AdvertisedWindows<LIMITED_PEERS>,
    membership: Membership<NEIGHBORS>,
    liveness: Liveness,
    replication: Replication<FETCHES>,
}

/// A node sized for a microcontroller: 40 neighbors, 64 remembered
/// broadcasts, 4 pending fetches.
pub type SmallNode<S> = Node<S, 40, 64, 4>;

/// Splits a node into the parts a sub-machine call needs: a [`Ctx`], the
/// store, the sub-machines, the windows peers advertised.
macro_rules! parts {
    ($node:ident, $now:expr, $sink:expr) => {{
        let Node {
            config,
            store,
            rng,
            out,
            jar,
            membership,
            liveness,
            replication,
            windows,
            budgets: _,
            dedup: _,
        } = $node;
        let ctx = $crate::node::Ctx {
            now: $now,
            config: &*config,
            rng,
            out,
            jar: jar as &mut dyn $crate::auth::CookieStore,
            sink: &mut *$sink,
        };
        (ctx, store, membership, liveness, replication, windows)
    }};
}
pub(crate) use parts;

impl<S: FragmentStore, const NEIGHBORS: usize, const DEDUP: usize, const FETCHES: usize>
    Node<S, NEIGHBORS, DEDUP, FETCHES>
{
    /// A node with id `id`, reachable at `addr`, keeping fragments in
    /// `store`, drawing its random choices and its cookie secret from
    /// `seed` (which must therefore be unpredictable to others: the host
    /// runtime takes it from the operating system). Fails if `config`
    /// cannot run a node (see [`Config::validate`]).
    pub fn new(
        config: Config,
        id: NodeId,
        addr: PeerAddr,
        seed: u64,
        store: S,
    ) -> Result<Self, ConfigError> {
        config.validate()?;
        let member = config.role == Role::Member;
        let source = Source { id, addr, member, window: config.rx_window, full: false };
        // Mixed so that a caller passing the same value as seed and id
        // still gets an independent stream.
        let mut rng = Rng::new(Rng::new(seed).next_u64() ^ id.0);
        let mut secret = [0u8; 32];
        for chunk in secret.chunks_mut(8) {
            chunk.copy_from_slice(&rng.next_u64().to_le_bytes());
        }
        Ok(Node {
            config,
            store,
            rng,
            out: Out::new(source, CookieSecret::new(secret)),
            jar: CookieJar::new(),
            budgets: Budgets::new(),
            dedup: BroadcastDedup::new(),
            windows: AdvertisedWindows::new(),
            membership: Membership::new(&config, id.shard()),
            liveness: Liveness::new(),
            replication: Replication::new(),
        })
    }

    // ----- getters -------------------------------------------------------

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.out.source.id
    }

    /// This node's shard.
    pub fn shard(&self) -> Shard {
        self.id().shard()
    }

    /// This node as peers see it.
    pub fn me(&self) -> PeerInfo {
        self.out.me()
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The neighbor table.
    pub fn neighbors(&self) -> &NeighborTable<NEIGHBORS> {
        &self.membership.table
    }

    /// The fragment store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// The fragment store, mutably (to free room, or for an operator's
    /// tool: the node notices what changed at its next maintenance round).
    pub fn store_mut(&mut self) -> &mut S {
        &mut self.store
    }

    /// Gives the store back (a crashed node's disk).
    pub fn into_store(self) -> S {
        self.store
    }

    /// The counters.
    pub fn counters(&self) -> &Counters {
        &self.out.counters
    }

    /// Whether the join is complete (always true for a root node).
    pub fn is_joined(&self) -> bool {
        self.membership.lifecycle.is_joined()
    }

    /// Whether a leave is in progress.
    pub fn is_leaving(&self) -> bool {
        self.membership.lifecycle == Lifecycle::Leaving
    }

    /// Whether the node has left (after [`Node::leave`]).
    pub fn has_left(&self) -> bool {
        self.membership.lifecycle == Lifecycle::Left
    }

    /// The receive window `addr` advertised (large datagrams it takes in
    /// flight from one sender), if it advertised a limit.
    pub fn advertised_window(&self, addr: PeerAddr) -> Option<u8> {
        self.windows.get(addr)
    }

    /// Replication fetches pending.
    pub fn pending_fetches(&self) -> usize {
        self.replication.fetches.len()
    }

    /// Whether the node is scanning its store to restore copies after a
    /// change among its shard's members (or a lost announcement).
    pub fn is_repairing(&self) -> bool {
        self.replication.repairing()
    }

    /// The random generator, for client state machines driven by this node.
    pub fn rng(&mut self) -> &mut Rng {
        &mut self.rng
    }

    /// Lets the node replace its id at join time with one in the shard
    /// that looks emptiest from the seed's answer (for a node that has no
    /// persisted identity yet). Reported by [`Event::IdentityChosen`].
    pub fn choose_shard_on_join(&mut self, allow: bool) {
        if let Lifecycle::Alone { may_choose_shard } = &mut self.membership.lifecycle {
            *may_choose_shard = allow;
            // A member that may still change its id stays invisible (not
            // added to tables) until it has chosen.
            self.out.source.member = self.config.role == Role::Member && !allow;
        }
    }

    /// Puts the node on a network with a key (or takes it off with
    /// `None`): every datagram it sends then ends with the key's tag, and
    /// every datagram without a valid tag is dropped before it is decoded.
    pub fn set_network_key(&mut self, key: Option<NetworkKey>) {
        self.out.key = key;
    }

    /// This node's cookie for `addr` at `now` (for tests that forge what a
    /// host listening at `addr` could send).
    #[cfg(test)]
    pub(crate) fn cookie_for(&self, addr: PeerAddr, now: Instant) -> crate::wire::Cookie {
        self.out.secret.cookie(addr, now)
    }

    /// Changes the largest datagram the node sends (and so the pieces it
    /// asks for): a loopback scene may use whole-fragment datagrams, a real
    /// link what fits its MTU. Fails if no piece fits.
    pub fn set_max_datagram(&mut self, max_datagram: u16) -> Result<(), ConfigError> {
        let mut config = self.config;
        config.max_datagram = max_datagram;
        config.validate()?;
        self.config = config;
        Ok(())
    }

    /// Whether the node is on a network with a key.
    pub fn has_network_key(&self) -> bool {
        self.out.key.is_some()
    }

    /// Known members of `hash`'s shard that should hold it, best first, in
    /// rendezvous order, so every node that knows the same members ranks
    /// them the same way.
    pub fn holder_candidates<const K: usize>(&self, hash: &FragmentHash) -> Holders<K> {
        Holders::of_shard(hash, &self.membership.table, None, K)
    }

    /// Known members of `shard` that should hold `hash` if its copies are
    /// spread there ([`crate::holders::Placement`]), best first.
    pub fn holder_candidates_in<const K: usize>(
        &self,
        hash: &FragmentHash,
        shard: crate::id::Shard,
    ) -> Holders<K> {
        Holders::of_shard_in(hash, shard, &self.membership.table, None, K)
    }

    // ----- outputs -------------------------------------------------------

    /// The next application event.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<Event> {
        self.out.poll_event()
    }

    /// When [`Node::handle_timeout`] should next be called, if ever.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.has_left() {
            return None;
        }
        [
            self.membership.poll_timeout(),
            self.liveness.poll_timeout(&self.config),
            self.replication.poll_timeout(&self.config),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// The next wake-up each part of the node asks for (membership,
    /// liveness, fetches, announcements, repair, hand-off), for
    /// diagnostics: [`Node::poll_timeout`] is their minimum.
    pub fn timeouts(&self) -> [(&'static str, Option<Instant>); 6] {
        let [fetches, announcements, repair, handoff] = self.replication.timeouts(&self.config);
        [
            ("membership", self.membership.poll_timeout()),
            ("liveness", self.liveness.poll_timeout(&self.config)),
            ("fetches", fetches),
            ("announcements", announcements),
            ("repair", repair),
            ("handoff", handoff),
        ]
    }

    // ----- inputs --------------------------------------------------------

    /// Does the timed work due at `now`. Safe to call at any time.
    // Kept out of line: inlined into a caller's loop, the packets of
    // every path would share one stack frame (18 KB on a Cortex-M3).
    #[inline(never)]
    pub fn handle_timeout(&mut self, now: Instant, sink: &mut impl Transmit) {
        if self.has_left() {
            return;
        }
        let movable = self.replication.fetches.is_empty();
        {
            let (mut ctx, _, membership, ..) = parts!(self, now, sink);
            membership.handle_timeout(&mut ctx, movable);
        }
        self.after_membership(now, sink);
        let dead = {
            let (mut ctx, _, membership, liveness, ..) = parts!(self, now, sink);
            liveness.handle_timeout(&mut ctx, &membership.table)
        };
        for (peer, tell) in dead {
            self.declare_dead(now, peer, tell, sink);
        }
        self.after_membership(now, sink);
        {
            let (mut ctx, store, membership, _, replication, windows) = parts!(self, now, sink);
            let view = View::of(&ctx, &membership.table, membership.lifecycle);
            replication.handle_timeout(&mut ctx, store, &view, windows);
        }
        self.after_replication(now, sink);
    }

    /// Processes one datagram received from `from` at `now`. Returns the
    /// answer to one of the application's own requests, if it is one.
    // Kept out of line: inlined into a caller's loop, the packets of
    // every path would share one stack frame (18 KB on a Cortex-M3).
    #[inline(never)]
    pub fn handle_datagram<'a>(
        &mut self,
        now: Instant,
        from: PeerAddr,
        bytes: &'a [u8],
        sink: &mut impl Transmit,
    ) -> Option<Reply<'a>> {
        if self.has_left() {
            return None;
        }
        let reply = self.receive(now, from, bytes, sink);
        self.out.end_of_datagram();
        self.after_membership(now, sink);
        self.after_replication(now, sink);
        reply
    }

    // ----- commands ------------------------------------------------------

    /// Starts joining the network through `seed`. JOIN is repeated with
    /// backoff until PEERS arrives; [`Event::Joined`] reports success.
    pub fn join(&mut self, now: Instant, seed: PeerAddr, sink: &mut impl Transmit) {
        let (mut ctx, _, membership, ..) = parts!(self, now, sink);
        membership.join(&mut ctx, seed);
    }

    /// Leaves the network gracefully: offers every fragment whose copies
    /// would fall below R without this node to the member that replaces it
    /// (each acknowledgement moves the hand-off on; at most
    /// `leave_timeout`), then sends LEAVE to every neighbor. [`Event::Left`]
    /// and [`Node::has_left`] tell when it is done; keep driving the node
    /// until then.
    pub fn leave(&mut self, now: Instant, sink: &mut impl Transmit) {
        if matches!(self.membership.lifecycle, Lifecycle::Leaving | Lifecycle::Left) {
            return;
        }
        self.membership.lifecycle = Lifecycle::Leaving;
        let handing_off = {
            let (mut ctx, store, membership, _, replication, windows) = parts!(self, now, sink);
            let view = View::of(&ctx, &membership.table, membership.lifecycle);
            replication.start_handoff(&mut ctx, store, &view, windows)
        };
        if handing_off {
            self.after_replication(now, sink);
        } else {
            self.finish_leave(now, sink, true);
        }
    }

    /// Sends `message` (PING, FIND, ADDME or DEAD: only small control
    /// messages travel by broadcast) as a broadcast of the given breadth
    /// to every neighbor. Returns the broadcast's UID, or `None` if the
    /// message may not be broadcast.
    pub fn broadcast(
        &mut self,
        now: Instant,
        breadth: u8,
        message: &Message<'_>,
        sink: &mut impl Transmit,
    ) -> Option<u64> {
        if !dispatch::relayable(message.kind()) {
            return None;
        }
        let uid = self.rng.next_u64();
        self.dedup.insert(uid, now);
        let breadth = breadth.min(self.config.max_breadth);
        let packet = Packet {
            transmission: Transmission::Broadcast { breadth, uid },
            source: self.out.source,
            cookies: Cookies::NONE,
            message: message.clone(),
        };
        let targets = self.membership.table.iter().map(|n| n.peer.addr);
        self.out.relay_to_all(sink, &mut self.jar, now, &packet, targets, &[]);
        Some(uid)
    }

    /// Sends a PING (or, with `find`, a FIND for that shard) to `to` as
    /// `transmission` says; returns the nonce its PONGs carry.
    pub fn ping(
        &mut self,
        now: Instant,
        to: PeerAddr,
        transmission: Transmission,
        find: Option<Shard>,
        sink: &mut impl Transmit,
    ) -> u64 {
        let nonce = self.rng.next_u64();
        let message = match find {
            Some(shard) => Message::Find { shard, nonce },
            None => Message::Ping { nonce },
        };
        let transmission = match transmission {
            Transmission::Randomcast { hops } => {
                Transmission::Randomcast { hops: hops.min(self.config.max_hops) }
            }
            other => other,
        };
        self.out.send(sink, &mut self.jar, now, to, transmission, &message);
        nonce
    }

    /// Asks `to` for its statistics (and whether it knows `about`); the
    /// STATS answer carries `nonce`.
    pub fn request_stats(
        &mut self,
        now: Instant,
        to: PeerAddr,
        about: Option<PeerAddr>,
        nonce: u64,
        sink: &mut impl Transmit,
    ) {
        let message = Message::StatsRequest { nonce, about };
        self.out.send(sink, &mut self.jar, now, to, Transmission::Singlecast, &message);
    }

    /// Asks `to` for a page of what it holds, from position `from` (0,
    /// then the `next` of the page before); the LIST answer carries
    /// `nonce`.
    #[cfg(feature = "listing")]
    pub fn request_list(
        &mut self,
        now: Instant,
        to: PeerAddr,
        from: u32,
        files_only: bool,
        nonce: u64,
        sink: &mut impl Transmit,
    ) {
        let message = Message::ListRequest { nonce, from, files_only };
        self.out.send(sink, &mut self.jar, now, to, Transmission::Singlecast, &message);
    }

    /// Asks `to` for the units `want` of the fragment `hash` (bit `i` for
    /// unit `i`), in pieces that fit this node's largest datagram.
    pub fn send_fileget(
        &mut self,
        now: Instant,
        to: PeerAddr,
        hash: FragmentHash,
        want: u16,
        sink: &mut impl Transmit,
    ) -> bool {
        let piece_units = self.piece_units();
        let message = Message::FileGet { hash, want, piece_units };
        self.out.send(sink, &mut self.jar, now, to, Transmission::Singlecast, &message)
    }

    /// The largest piece, in units, this node asks for.
    pub fn piece_units(&self) -> u8 {
        out::piece_units_for(usize::from(self.config.max_datagram)) as u8
    }

    /// Offers the fragment `hash` to `to` (NEWFILE): a member that should
    /// hold it fetches it from this node (a [`Reply::FileGet`] to answer
    /// with [`Node::send_pieces`]) and answers STORED. `copies` asks for
    /// more copies than the network's `R` (0: `R`).
    pub fn offer(
        &mut self,
        now: Instant,
        to: PeerAddr,
        hash: FragmentHash,
        copies: u8,
        sink: &mut impl Transmit,
    ) -> bool {
        self.out.note_offer(hash);
        let message = Message::NewFile { hash, urgent: true, copies };
        self.out.send(sink, &mut self.jar, now, to, Transmission::Singlecast, &message)
    }

    /// Answers a [`Reply::FileGet`]: `fill` writes the fragment's bytes
    /// into the node's fragment buffer, which is checked against `hash`;
    /// then the units `want` go to `to` in pieces of at most `piece_units`
    /// units (and no larger than this node's largest datagram).
    #[allow(clippy::too_many_arguments)]
    pub fn send_pieces(
        &mut self,
        now: Instant,
        to: PeerAddr,
        hash: FragmentHash,
        want: u16,
        piece_units: u8,
        fill: impl FnOnce(&mut FragmentBytes) -> bool,
        sink: &mut impl Transmit,
    ) -> Result<(), RequestError> {
        let units = usize::from(piece_units.min(self.piece_units()));
        let mut filled = true;
        let fill = |buf: &mut FragmentBytes| {
            filled = fill(buf);
            filled
        };
        if self.out.send_pieces(sink, &mut self.jar, now, to, &hash, want, units, fill) {
            Ok(())
        } else if filled {
            Err(RequestError::HashMismatch)
        } else {
            Err(RequestError::SourceFailed)
        }
    }

    /// Asks a known member of `shard` for the shard's members (JOIN
    /// restricted to the shard), and up to `ask` random neighbors which
    /// members of `shard` they know (a FIND sent singlecast is answered with
    /// PEERS by non-members), to fill the table for an upload or download.
    pub fn discover_shard(
        &mut self,
        now: Instant,
        shard: Shard,
        ask: usize,
        sink: &mut impl Transmit,
    ) {
        let (mut ctx, _, membership, ..) = parts!(self, now, sink);
        // A member of the shard knows the whole shard: ask one if we can.
        if let Some(member) = membership.table.random_in(ctx.rng, shard) {
            membership::send_join(&mut ctx, member.addr, Some(shard));
        }
        for _ in 0..ask {
            membership.ask_for_shard(&mut ctx, shard, false);
        }
    }

    // ----- internals -----------------------------------------------------

    /// After any membership work: passes the shard's membership changes to
    /// replication, and if a maintenance round ran, the other machines'
    /// share of it (a HOLDINGS page to a mate, a call to the dead).
    fn after_membership(&mut self, now: Instant, sink: &mut impl Transmit) {
        let (changes, overflow) = self.membership.take_changes();
        let changed = overflow || !changes.is_empty();
        for (peer, added) in changes {
            self.replication.membership_changed(&self.config, now, &self.store, peer, added);
        }
        if overflow {
            self.replication.membership_overflowed(&self.config, now, &self.store);
        }
        let watching = match self.membership.lifecycle {
            Lifecycle::Joined => true,
            // A root starts watching once it has met someone.
            Lifecycle::Alone { .. } => !self.membership.table.is_empty(),
            _ => false,
        };
        if watching {
            let (mut ctx, _, membership, liveness, ..) = parts!(self, now, &mut *sink);
            liveness.start(&mut ctx, &membership.table);
            if changed {
                liveness.rewatch(&mut ctx, &membership.table);
            }
        }
        if self.membership.take_maintained() {
            let (mut ctx, store, membership, liveness, replication, _) = parts!(self, now, sink);
            let own = ctx.out.me().shard();
            if let Some(mate) = membership.table.random_in(ctx.rng, own) {
                replication.send_holdings(&mut ctx, store, mate.addr);
            }
            liveness.call_the_dead(&mut ctx);
            let view = View::of(&ctx, &membership.table, membership.lifecycle);
            replication.maintain(&mut ctx, store, &view);
        }
    }

    /// After replication work: a hand-off that ended completes the leave.
    fn after_replication(&mut self, now: Instant, sink: &mut impl Transmit) {
        if let Some(complete) = self.replication.handoff.take_finished() {
            let handoff = &self.replication.handoff;
            let handed = handoff.handed_off;
            let me = self.out.me().addr;
            if complete {
                log::info!("{me}: handed off {handed} fragments; leaving");
            } else {
                log::warn!("{me}: hand-off unfinished at the leave deadline ({handed} handed off)");
            }
            for (to, count) in handoff.recipients.iter() {
                log::info!("{me}: handed off {count} fragments to {to}");
            }
            self.finish_leave(now, sink, complete);
        }
    }

    /// Tells every neighbor that this node leaves, and marks it gone.
    fn finish_leave(&mut self, now: Instant, sink: &mut impl Transmit, complete: bool) {
        let (mut ctx, _, membership, ..) = parts!(self, now, sink);
        for to in membership.table.iter().map(|n| n.peer.addr) {
            ctx.send(to, &Message::Leave);
        }
        let handed_off = self.replication.handoff.handed_off;
        self.membership.lifecycle = Lifecycle::Left;
        self.membership.stop();
        self.liveness.stop();
        self.replication.stop(&mut self.store);
        self.out.event(Event::Left { handed_off, complete });
    }

    /// `peer` did not answer its probes: drop it, and if this node found it
    /// out itself (`tell`), tell the network, whose nodes then probe it
    /// themselves.
    fn declare_dead(&mut self, now: Instant, peer: PeerInfo, tell: bool, sink: &mut impl Transmit) {
        // (The application says so to its operator: Event::NeighborDead.)
        log::debug!("{}: {} does not answer; dropping it", self.out.me().addr, peer);
        self.forget_dead(now, peer);
        self.liveness.heard_of_death(peer.addr, now);
        if !tell {
            return;
        }
        // Its own notice is the news: others' about the same death are not
        // relayed again.
        let _ = self.liveness.note_notice(peer.addr, now);
        let uid = self.rng.next_u64();
        self.dedup.insert(uid, now);
        let breadth = self.config.dead_breadth.min(self.config.max_breadth);
        let packet = Packet {
            transmission: Transmission::Broadcast { breadth, uid },
            source: self.out.source,
            cookies: Cookies::NONE,
            message: Message::Dead { peer },
        };
        let targets = self.membership.table.iter().map(|n| n.peer.addr);
        self.out.relay_to_all(sink, &mut self.jar, now, &packet, targets, &[peer.addr]);
    }

    /// Drops `peer` from the tables (if it is still the same node at that
    /// address) and remembers it as dead.
    fn forget_dead(&mut self, now: Instant, peer: PeerInfo) {
        if self.membership.remove(self.out.me(), peer) {
            self.out.event(Event::NeighborDead(peer));
        }
        self.liveness.forget(peer, now);
        self.replication.peer_gone(now, peer.addr);
    }
}

impl<S: FragmentStore, const NEIGHBORS: usize, const DEDUP: usize, const FETCHES: usize> fmt::Debug
    for Node<S, NEIGHBORS, DEDUP, FETCHES>
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Node")
            .field("me", &self.out.me())
            .field("neighbors", &self.membership.table.len())
            .field("held", &self.store.len())
            .field("lifecycle", &self.membership.lifecycle)
            .finish_non_exhaustive()
    }
}
