//! The node: a state machine that does no I/O.
//!
//! A [`Node`] owns its tables, its store and one datagram buffer. It is
//! driven by four kinds of calls, as in quinn-proto:
//!
//! * getters ([`Node::id`], [`Node::neighbors`], [`Node::counters`], ...);
//! * inputs: [`Node::handle_datagram`] for every datagram received and
//!   [`Node::handle_timeout`] when the time given by [`Node::poll_timeout`]
//!   has come (calling it early is harmless);
//! * commands: [`Node::join`], [`Node::leave`], and the requests clients
//!   make ([`Node::send_fileget`], [`Node::send_fragment`], ...);
//! * outputs: datagrams go out through the caller's [`Transmit`] sink during
//!   any input or command; application events come from
//!   [`Node::poll_event`]; answers to the application's own requests (PONG,
//!   STORED, a fragment, NOTFOUND, STATS) are returned by
//!   `handle_datagram` as a [`Reply`] borrowing the datagram.
//!
//! The calling order is free: after any input or command, the caller asks
//! `poll_timeout` again and sleeps until then or until the next datagram.
//!
//! Packet handling follows the original's `handlenetl`: a singlecast is
//! processed; a randomcast with hops left is forwarded to a random neighbor
//! and otherwise processed; a broadcast is processed once per UID and
//! relayed to every neighbor while breadth remains.

use core::fmt;

use heapless::{Deque, Vec};

use crate::config::{
    Announce, Config, Replication, Role, FRAGMENT_SIZE, MAX_DATAGRAM_SIZE, MAX_PEERS_PER_MESSAGE,
    SHARD_COUNT,
};
use crate::counters::{Counters, DropReason};
use crate::dedup::BroadcastDedup;
use crate::fragment::{FragmentBytes, FragmentHash};
use crate::id::{NodeId, PeerAddr, PeerInfo, Shard};
use crate::neighbors::{Insert, NeighborTable};
use crate::rand::Rng;
use crate::store::{FragmentStore, StoreError};
use crate::time::{Duration, Instant};
use crate::wire::{
    encode_filefrag_header, FragMode, FragmentRef, HashList, Message, MessageKind, Packet,
    PeerList, Source, StoreOutcome, Transmission,
};

/// Where a node's datagrams go: a UDP socket, a smoltcp socket, the
/// simulator's network.
pub trait Transmit {
    /// Sends one datagram to `to`. Sending is best effort; an error is
    /// counted by the node (`send_failed`) and otherwise ignored.
    fn send(&mut self, to: PeerAddr, datagram: &[u8]) -> Result<(), SendError>;
}

/// The transport could not take a datagram (buffer full, unreachable, ...).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SendError;

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("transport refused the datagram")
    }
}

/// Something the application may want to know.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// The node picked its id at join time (to fill the emptiest shard);
    /// persist it so that a restart keeps it.
    IdentityChosen(NodeId),
    /// The join got no answer yet and was sent again.
    JoinRetry {
        /// How many JOINs have been sent.
        attempt: u8,
    },
    /// The node knows peers and is ready (a client: knows the shards).
    Joined {
        /// Neighbors known at that moment.
        neighbors: usize,
    },
    /// A fragment was stored.
    FragmentStored(FragmentHash),
    /// A stored fragment failed its hash check when read and was removed.
    CorruptFragmentRemoved(FragmentHash),
    /// A replication fetch was given up after its attempts.
    FetchAbandoned(FragmentHash),
}

/// An answer to a request the application made through this node.
///
/// STATS carries the counters inline (there is no allocator to box them).
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply<'a> {
    /// Answer to a PING or FIND.
    Pong {
        /// Who answered.
        from: PeerInfo,
        /// The nonce of the request.
        nonce: u64,
    },
    /// Answer to a store request.
    Stored {
        /// Who answered.
        from: PeerInfo,
        /// The fragment.
        hash: FragmentHash,
        /// What happened to it.
        outcome: StoreOutcome,
    },
    /// A fragment (verified against its hash) answering a FILEGET.
    Fragment {
        /// Who sent it.
        from: PeerInfo,
        /// Its hash.
        hash: FragmentHash,
        /// Its bytes, borrowed from the datagram.
        data: &'a FragmentBytes,
    },
    /// The peer does not hold the fragment asked for.
    NotFound {
        /// Who answered.
        from: PeerInfo,
        /// The fragment asked for.
        hash: FragmentHash,
    },
    /// A node's statistics.
    Stats {
        /// Who answered.
        from: PeerInfo,
        /// The nonce of the request.
        nonce: u64,
        /// Fragments held.
        held: u32,
        /// Store capacity.
        capacity: u32,
        /// Neighbors known.
        neighbors: u16,
        /// Whether it has completed its join.
        joined: bool,
        /// Its counters.
        counters: Counters,
    },
}

/// Where the node stands in joining the network.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum JoinState {
    /// Not joining: a root node, or before `join`.
    Alone,
    /// JOIN sent to `seed`, waiting for PEERS.
    Joining { seed: PeerAddr, attempt: u8, next: Instant },
    /// The seed answered; one member of each shard was asked for its
    /// shard's members (a client to know every shard, a new member to find
    /// the emptiest shard). Ends when all answered or at `until`.
    Surveying {
        until: Instant,
        asked: [bool; SHARD_COUNT as usize],
        sizes: [u16; SHARD_COUNT as usize],
    },
    /// Joined.
    Joined,
}

/// A replication fetch: an announced fragment this node should hold.
#[derive(Clone, Copy, Debug)]
struct Fetch {
    hash: FragmentHash,
    from: PeerInfo,
    attempts: u8,
    /// `None` while queued, the timeout of the FILEGET in flight otherwise.
    deadline: Option<Instant>,
    /// A queued fetch starts no earlier than this.
    not_before: Instant,
}

/// Why a client request could not be sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestError {
    /// The data to send could not be read.
    SourceFailed,
    /// The data read does not hash to the hash given (the source changed).
    HashMismatch,
    /// The transport refused the datagram.
    SendFailed,
}

/// Shards a joining node compares before it picks the smallest (see
/// `choose_shard`).
pub const SHARD_CHOICES: usize = 4;

/// Capacity of the application event queue.
const EVENT_QUEUE: usize = 32;

/// The score of `id` for holding `hash` in rendezvous hashing: every node
/// computes the same score for the same pair, so nodes that know the same
/// members agree on the top R without talking.
pub fn rendezvous_score(hash: &FragmentHash, id: NodeId) -> u64 {
    let mut z = hash.prefix_u64() ^ id.0.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A node of the overlay. `NEIGHBORS`, `DEDUP` and `FETCHES` are the
/// capacities of the neighbor table, the broadcast-UID ring and the
/// replication fetch table; the defaults suit a host node (see
/// [`SmallNode`] for a microcontroller).
pub struct Node<
    S: FragmentStore,
    const NEIGHBORS: usize = 256,
    const DEDUP: usize = 1024,
    const FETCHES: usize = 64,
> {
    config: Config,
    me: PeerInfo,
    may_choose_shard: bool,
    store: S,
    rng: Rng,
    neighbors: NeighborTable<NEIGHBORS>,
    dedup: BroadcastDedup<DEDUP>,
    fetches: Vec<Fetch, FETCHES>,
    join: JoinState,
    /// When a member next maintains its neighbor table.
    next_maintenance: Option<Instant>,
    /// Where the next HOLDINGS page starts in the store.
    holdings_cursor: usize,
    /// A shard in which the node knew nobody at the last maintenance round
    /// and asked around (see `move_to_empty_shard`).
    suspect_empty: Option<Shard>,
    events: Deque<Event, EVENT_QUEUE>,
    counters: Counters,
    tx: [u8; MAX_DATAGRAM_SIZE],
}

/// A node sized for a microcontroller: 40 neighbors, 64 remembered
/// broadcasts, 4 pending fetches.
pub type SmallNode<S> = Node<S, 40, 64, 4>;

impl<S: FragmentStore, const NEIGHBORS: usize, const DEDUP: usize, const FETCHES: usize>
    Node<S, NEIGHBORS, DEDUP, FETCHES>
{
    /// A node with id `id`, reachable at `addr`, keeping fragments in
    /// `store`, drawing its random choices from `seed`.
    pub fn new(config: Config, id: NodeId, addr: PeerAddr, seed: u64, store: S) -> Self {
        Node {
            config,
            me: PeerInfo { id, addr },
            may_choose_shard: false,
            store,
            // Mixed so that a caller passing the same value as seed and id
            // still gets an independent stream.
            rng: Rng::new(Rng::new(seed).next_u64() ^ id.0),
            neighbors: NeighborTable::new(
                id.shard(),
                config.own_shard_neighbors,
                config.per_shard_neighbors,
            ),
            dedup: BroadcastDedup::new(),
            fetches: Vec::new(),
            join: JoinState::Alone,
            next_maintenance: None,
            holdings_cursor: 0,
            suspect_empty: None,
            events: Deque::new(),
            counters: Counters::default(),
            tx: [0; MAX_DATAGRAM_SIZE],
        }
    }

    // ----- getters -------------------------------------------------------

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.me.id
    }

    /// This node's shard.
    pub fn shard(&self) -> Shard {
        self.me.id.shard()
    }

    /// This node as peers see it.
    pub fn me(&self) -> PeerInfo {
        self.me
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The neighbor table.
    pub fn neighbors(&self) -> &NeighborTable<NEIGHBORS> {
        &self.neighbors
    }

    /// The fragment store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// The fragment store, mutably (for tests and tools that seed it).
    pub fn store_mut(&mut self) -> &mut S {
        &mut self.store
    }

    /// Gives the store back (a crashed node's disk).
    pub fn into_store(self) -> S {
        self.store
    }

    /// The counters.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Whether the join is complete (always true for a root node).
    pub fn is_joined(&self) -> bool {
        matches!(self.join, JoinState::Joined | JoinState::Alone)
    }

    /// Replication fetches pending.
    pub fn pending_fetches(&self) -> usize {
        self.fetches.len()
    }

    /// The random generator, for client state machines driven by this node.
    pub fn rng(&mut self) -> &mut Rng {
        &mut self.rng
    }

    /// Lets the node replace its id at join time with one in the shard
    /// that looks emptiest from the seed's answer (for a node that has no
    /// persisted identity yet). Reported by [`Event::IdentityChosen`].
    pub fn choose_shard_on_join(&mut self, allow: bool) {
        self.may_choose_shard = allow;
    }

    /// Known members of `hash`'s shard that should hold it, best first:
    /// ranked by rendezvous score, so every node that knows the same members
    /// ranks them the same way.
    pub fn holder_candidates<const K: usize>(
        &self,
        hash: &FragmentHash,
        out: &mut Vec<PeerInfo, K>,
    ) {
        // Verified neighbors first, each group in rendezvous order.
        let rank = |n: &crate::neighbors::Neighbor| (n.verified, rendezvous_score(hash, n.peer.id));
        let mut ranked: Vec<(bool, u64, PeerInfo), K> = Vec::new();
        for n in self.neighbors.members_of(hash.shard()) {
            let (verified, score) = rank(n);
            if ranked.push((verified, score, n.peer)).is_err() {
                // Keep the K best: replace the worst if this one is better.
                if let Some(worst) = ranked.iter_mut().min_by_key(|(v, s, _)| (*v, *s)) {
                    if (worst.0, worst.1) < (verified, score) {
                        *worst = (verified, score, n.peer);
                    }
                }
            }
        }
        ranked.sort_unstable_by_key(|(v, s, _)| core::cmp::Reverse((*v, *s)));
        out.clear();
        for (_, _, peer) in ranked {
            let _ = out.push(peer);
        }
    }

    // ----- outputs -------------------------------------------------------

    /// The next application event.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`Node::handle_timeout`] should next be called, if ever.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        let join = match self.join {
            JoinState::Joining { next, .. } => Some(next),
            JoinState::Surveying { until, .. } => Some(until),
            JoinState::Alone | JoinState::Joined => None,
        };
        // In-flight fetches wake us at their deadline; queued ones when they
        // may start, if there is room for another in flight (otherwise an
        // answer or a deadline frees the room first).
        let in_flight = self.fetches.iter().filter(|f| f.deadline.is_some()).count();
        let room = in_flight < usize::from(self.config.parallel_fetches.max(1));
        let fetch = self
            .fetches
            .iter()
            .filter_map(|f| match f.deadline {
                Some(deadline) => Some(deadline),
                None => room.then_some(f.not_before),
            })
            .min();
        [join, fetch, self.next_maintenance].into_iter().flatten().min()
    }

    // ----- inputs --------------------------------------------------------

    /// Does the timed work due at `now`. Safe to call at any time.
    pub fn handle_timeout(&mut self, now: Instant, sink: &mut impl Transmit) {
        match self.join {
            JoinState::Joining { seed, attempt, next } if now >= next => {
                let attempt = attempt.saturating_add(1);
                let backoff = self.config.join_retry.saturating_mul(1 << attempt.min(3));
                self.join = JoinState::Joining { seed, attempt, next: now + backoff };
                self.send_join(seed, None, sink);
                self.push_event(Event::JoinRetry { attempt });
            }
            JoinState::Surveying { until, sizes, .. } if now >= until => {
                self.finish_join(now, sizes, sink)
            }
            _ => {}
        }
        if self.next_maintenance.is_some_and(|at| now >= at) {
            self.maintain_table(sink);
            self.next_maintenance = Some(now + self.maintenance_delay());
        }
        self.expire_fetches(now, sink);
        self.pump_fetches(now, sink);
    }

    /// Processes one datagram received from `from` at `now`. Returns the
    /// answer to one of the application's own requests, if it is one.
    pub fn handle_datagram<'a>(
        &mut self,
        now: Instant,
        from: PeerAddr,
        bytes: &'a [u8],
        sink: &mut impl Transmit,
    ) -> Option<Reply<'a>> {
        let mut packet = match Packet::decode(bytes) {
            Ok(packet) => packet,
            Err(crate::wire::DecodeError::BadVersion(_)) => {
                self.counters.count_drop(DropReason::BadVersion);
                return None;
            }
            Err(_) => {
                self.counters.count_drop(DropReason::Malformed);
                return None;
            }
        };
        let kind = packet.message.kind();
        self.counters.count_received(kind, bytes.len());
        log::trace!(
            "{}: {} from {} via {from}, {:?}",
            self.me.addr,
            kind.name(),
            packet.source.addr,
            packet.transmission
        );
        if self.next_maintenance.is_none()
            && self.config.role == Role::Member
            && self.join == JoinState::Alone
        {
            // A root node starts maintaining its table once it hears from
            // others.
            self.next_maintenance = Some(now + self.maintenance_delay());
        }
        packet.source.addr = packet.source.addr.or_observed(from);
        if packet.source.id == self.me.id || packet.source.addr == self.me.addr {
            self.counters.count_drop(DropReason::FromSelf);
            return None;
        }
        self.neighbors.touch(from, now);

        match packet.transmission {
            Transmission::Singlecast | Transmission::Randomcast { hops: 0 } => {}
            Transmission::Randomcast { hops } => {
                let next = self.neighbors.random_except(&mut self.rng, Some(from));
                let next = next.filter(|p| p.addr != packet.source.addr);
                if let Some(next) = next {
                    let relayed = Packet {
                        transmission: Transmission::Randomcast { hops: hops - 1 },
                        ..packet
                    };
                    self.relay(&relayed, next.addr, sink);
                    return None;
                }
                // Nobody to forward to: the packet ends its walk here.
            }
            Transmission::Broadcast { breadth, uid } => {
                if !self.dedup.first_time(uid) {
                    self.counters.count_drop(DropReason::DuplicateBroadcast);
                    return None;
                }
                if breadth > 0 {
                    let relayed = Packet {
                        transmission: Transmission::Broadcast { breadth: breadth - 1, uid },
                        source: packet.source,
                        message: packet.message.clone(),
                    };
                    self.relay_to_all(&relayed, &[from, packet.source.addr], sink);
                }
            }
        }
        let direct = from == packet.source.addr;
        self.process(now, packet, direct, sink)
    }

    // ----- commands ------------------------------------------------------

    /// Starts joining the network through `seed`. JOIN is repeated with
    /// backoff until PEERS arrives; [`Event::Joined`] reports success.
    pub fn join(&mut self, now: Instant, seed: PeerAddr, sink: &mut impl Transmit) {
        self.join = JoinState::Joining { seed, attempt: 0, next: now + self.config.join_retry };
        self.send_join(seed, None, sink);
    }

    /// Tells every neighbor that this node leaves.
    pub fn leave(&mut self, sink: &mut impl Transmit) {
        let targets = self.neighbor_addrs();
        for to in targets {
            self.send(to, Transmission::Singlecast, &Message::Leave, sink);
        }
    }

    /// Sends a message singlecast (or as a randomcast with `hops`).
    pub fn send_message(
        &mut self,
        to: PeerAddr,
        transmission: Transmission,
        message: &Message<'_>,
        sink: &mut impl Transmit,
    ) -> bool {
        self.send(to, transmission, message, sink)
    }

    /// Sends `message` as a broadcast of the given breadth to every neighbor.
    /// Returns the broadcast's UID.
    pub fn broadcast(
        &mut self,
        breadth: u8,
        message: &Message<'_>,
        sink: &mut impl Transmit,
    ) -> u64 {
        let uid = self.rng.next_u64();
        self.dedup.insert(uid);
        let packet = Packet {
            transmission: Transmission::Broadcast { breadth, uid },
            source: self.source(),
            message: message.clone(),
        };
        self.relay_to_all(&packet, &[], sink);
        uid
    }

    /// Asks `to` for the fragment `hash`.
    pub fn send_fileget(
        &mut self,
        to: PeerAddr,
        hash: FragmentHash,
        sink: &mut impl Transmit,
    ) -> bool {
        self.send(to, Transmission::Singlecast, &Message::FileGet { hash }, sink)
    }

    /// Sends a store request for `hash` to `to`; `fill` writes the fragment's
    /// bytes straight into the outgoing datagram, which is checked against
    /// `hash` before it leaves.
    pub fn send_fragment(
        &mut self,
        to: PeerAddr,
        hash: FragmentHash,
        fill: impl FnOnce(&mut FragmentBytes) -> bool,
        sink: &mut impl Transmit,
    ) -> Result<(), RequestError> {
        let head = encode_filefrag_header(
            Transmission::Singlecast,
            self.source(),
            FragMode::Store,
            &hash,
            &mut self.tx,
        )
        .map_err(|_| RequestError::SendFailed)?;
        let end = head + FRAGMENT_SIZE;
        let Some(body) =
            self.tx.get_mut(head..end).and_then(|s| <&mut FragmentBytes>::try_from(s).ok())
        else {
            return Err(RequestError::SendFailed);
        };
        if !fill(body) {
            return Err(RequestError::SourceFailed);
        }
        if !hash.verifies(body) {
            return Err(RequestError::HashMismatch);
        }
        if self.transmit_tx(to, MessageKind::FileFrag, end, sink) {
            Ok(())
        } else {
            Err(RequestError::SendFailed)
        }
    }

    /// Asks up to `ask` random neighbors which members of `shard` they know
    /// (a FIND sent singlecast is answered with PEERS by non-members), to
    /// fill the table for an upload or download.
    pub fn discover_shard(&mut self, shard: Shard, ask: usize, sink: &mut impl Transmit) {
        for _ in 0..ask {
            let Some(peer) = self.neighbors.random_except(&mut self.rng, None) else { return };
            let nonce = self.rng.next_u64();
            self.send(peer.addr, Transmission::Singlecast, &Message::Find { shard, nonce }, sink);
        }
    }

    // ----- internals -----------------------------------------------------

    fn source(&self) -> Source {
        // A member that may still change its id stays invisible (not added
        // to tables) until it has chosen.
        let member = self.config.role == Role::Member && !self.may_choose_shard;
        Source { id: self.me.id, addr: self.me.addr, member }
    }

    fn push_event(&mut self, event: Event) {
        if self.events.is_full() {
            self.events.pop_front();
            self.counters.count_drop(DropReason::EventOverflow);
        }
        let _ = self.events.push_back(event);
    }

    fn neighbor_addrs(&self) -> Vec<PeerAddr, NEIGHBORS> {
        self.neighbors.iter().map(|n| n.peer.addr).collect()
    }

    /// Sends the first `len` bytes of the tx buffer.
    fn transmit_tx(
        &mut self,
        to: PeerAddr,
        kind: MessageKind,
        len: usize,
        sink: &mut impl Transmit,
    ) -> bool {
        let Some(datagram) = self.tx.get(..len) else { return false };
        match sink.send(to, datagram) {
            Ok(()) => {
                self.counters.count_sent(kind, len);
                true
            }
            Err(SendError) => {
                self.counters.count_drop(DropReason::SendFailed);
                false
            }
        }
    }

    fn send(
        &mut self,
        to: PeerAddr,
        transmission: Transmission,
        message: &Message<'_>,
        sink: &mut impl Transmit,
    ) -> bool {
        let packet = Packet { transmission, source: self.source(), message: message.clone() };
        match packet.encode(&mut self.tx) {
            Ok(len) => self.transmit_tx(to, message.kind(), len, sink),
            Err(_) => false,
        }
    }

    fn relay(&mut self, packet: &Packet<'_>, to: PeerAddr, sink: &mut impl Transmit) {
        if let Ok(len) = packet.encode(&mut self.tx) {
            if self.transmit_tx(to, packet.message.kind(), len, sink) {
                self.counters.relayed = self.counters.relayed.saturating_add(1);
            }
        }
    }

    fn relay_to_all(&mut self, packet: &Packet<'_>, except: &[PeerAddr], sink: &mut impl Transmit) {
        let Ok(len) = packet.encode(&mut self.tx) else { return };
        let kind = packet.message.kind();
        let relaying = packet.source.id != self.me.id;
        let Some(datagram) = self.tx.get(..len) else { return };
        for n in self.neighbors.iter() {
            if except.contains(&n.peer.addr) {
                continue;
            }
            match sink.send(n.peer.addr, datagram) {
                Ok(()) => {
                    self.counters.count_sent(kind, len);
                    if relaying {
                        self.counters.relayed = self.counters.relayed.saturating_add(1);
                    }
                }
                Err(SendError) => self.counters.count_drop(DropReason::SendFailed),
            }
        }
    }

    fn send_join(&mut self, to: PeerAddr, shard: Option<Shard>, sink: &mut impl Transmit) {
        let want = self.config.join_want.min(MAX_PEERS_PER_MESSAGE as u8);
        self.send(to, Transmission::Singlecast, &Message::Join { want, shard }, sink);
    }

    /// Keeps the neighbor table full: asks a random mate for its list of
    /// the shard (JOIN restricted to the shard); asks a random other
    /// neighbor which members of our shard it knows (FIND sent
    /// singlecast), which finds mates the shard does not know yet, or the
    /// first mate of a node that knows none; and, if some shard is below
    /// its quota, asks a random neighbor for a sample of every shard (JOIN).
    /// Peers learned from the answers get an ADDME, so tables become
    /// symmetric. Finally it sends one HOLDINGS page to a random mate.
    fn maintain_table(&mut self, sink: &mut impl Transmit) {
        self.move_to_empty_shard(sink);
        let own = self.shard();
        if let Some(mate) = self.neighbors.random_in(&mut self.rng, own) {
            self.send_join(mate.addr, Some(own), sink);
        }
        self.ask_for_shard(own, true, sink);
        let counts = self.neighbors.shard_counts();
        let short = Shard::all().any(|s| {
            let known = usize::from(counts.get(s.index()).copied().unwrap_or(0));
            s != own && known < self.neighbors.quota(s)
        });
        if short {
            if let Some(peer) = self.neighbors.random_except(&mut self.rng, None) {
                self.send_join(peer.addr, None, sink);
            }
        }
        if let Some(mate) = self.neighbors.random_in(&mut self.rng, own) {
            self.send_holdings(mate.addr, sink);
        }
    }

    /// Sends the next page of this node's holdings to `to`, a member of its
    /// shard. Successive pages walk the whole store and wrap around.
    fn send_holdings(&mut self, to: PeerAddr, sink: &mut impl Transmit) {
        let held = self.store.len();
        if held == 0 {
            return;
        }
        if self.holdings_cursor >= held {
            self.holdings_cursor = 0;
        }
        let mut hashes = HashList::new();
        while !hashes.is_full() && self.holdings_cursor < held {
            if let Some(hash) = self.store.hash_at(self.holdings_cursor) {
                let _ = hashes.push(hash);
            }
            self.holdings_cursor += 1;
        }
        self.send(to, Transmission::Singlecast, &Message::Holdings { hashes }, sink);
    }

    /// Fetches the fragments of a mate's HOLDINGS page that this node
    /// should hold and lacks, as far as the fetch table has room.
    fn on_holdings(
        &mut self,
        now: Instant,
        from: PeerInfo,
        hashes: &HashList,
        sink: &mut impl Transmit,
    ) {
        for hash in hashes.iter() {
            if self.fetches.is_full() {
                break;
            }
            self.want_fragment(now, from, *hash);
        }
        self.pump_fetches(now, sink);
    }

    /// A node that holds nothing, whose shard has other members, moves to a
    /// shard in which nobody can be found: it takes a new id there, saves
    /// it (reported as [`Event::IdentityChosen`]) and tells its neighbors.
    ///
    /// Nodes that join at the same moment choose their shards from the same
    /// stale view and may leave a shard empty, which makes every fragment of
    /// that shard unstorable. A shard in which the node knows nobody is
    /// first only suspected: the node asks three random neighbors for its
    /// members. If a round later it still knows nobody there, the shard is
    /// taken to be empty, and the node moves with probability one half (so
    /// that several candidates do not all move into the same shard).
    fn move_to_empty_shard(&mut self, sink: &mut impl Transmit) {
        let counts = self.neighbors.shard_counts();
        let own = self.shard();
        let known = |s: Shard| counts.get(s.index()).copied().unwrap_or(0);
        let suspect = self.suspect_empty.take();
        let eligible = self.config.role == Role::Member
            && self.store.is_empty()
            && self.fetches.is_empty()
            && known(own) > 0
            && matches!(self.join, JoinState::Joined | JoinState::Alone);
        if !eligible {
            return;
        }
        if let Some(shard) = suspect.filter(|s| *s != own && known(*s) == 0) {
            if self.rng.below(2) == 0 {
                return;
            }
            let id = NodeId::in_shard(self.rng.next_u64(), shard);
            log::info!("{}: moving from shard {own} to empty shard {shard}", self.me.addr);
            self.me.id = id;
            self.neighbors.set_own_shard(shard);
            self.push_event(Event::IdentityChosen(id));
            for to in self.neighbor_addrs() {
                self.send(to, Transmission::Singlecast, &Message::AddMe, sink);
            }
            return;
        }
        let empty = |s: &Shard| *s != own && known(*s) == 0;
        let pick = self.rng.below(Shard::all().filter(empty).count());
        if let Some(shard) = Shard::all().filter(empty).nth(pick) {
            for _ in 0..3 {
                self.ask_for_shard(shard, false, sink);
            }
            self.suspect_empty = Some(shard);
        }
    }

    /// Sends FIND for `shard` singlecast to a random neighbor (outside
    /// `shard` if `outside`), which answers with the members it knows.
    fn ask_for_shard(&mut self, shard: Shard, outside: bool, sink: &mut impl Transmit) {
        let eligible = |n: &&crate::neighbors::Neighbor| !outside || n.peer.shard() != shard;
        let count = self.neighbors.iter().filter(eligible).count();
        let pick = self.rng.below(count);
        let target = self.neighbors.iter().filter(eligible).nth(pick).map(|n| n.peer.addr);
        if let Some(to) = target {
            let nonce = self.rng.next_u64();
            self.send(to, Transmission::Singlecast, &Message::Find { shard, nonce }, sink);
        }
    }

    /// The time to the next table maintenance: short while the table has
    /// gaps (no shard mate, or a shard with nobody), the full interval
    /// otherwise.
    fn maintenance_delay(&self) -> Duration {
        let counts = self.neighbors.shard_counts();
        let gaps = counts.iter().enumerate().any(|(s, c)| *c == 0 && s != self.shard().index());
        let no_mate = counts.get(self.shard().index()) == Some(&0);
        if gaps || no_mate {
            self.config.maintenance_interval.div(8)
        } else {
            self.config.maintenance_interval
        }
    }

    /// Ends the join: a new member picks its shard, then every member
    /// makes itself known (ADDME to the peers it knows, randomcast ADDMEs
    /// as in the original) and asks a shard mate for the whole shard.
    fn finish_join(
        &mut self,
        now: Instant,
        sizes: [u16; SHARD_COUNT as usize],
        sink: &mut impl Transmit,
    ) {
        self.join = JoinState::Joined;
        if self.config.role == Role::Member {
            if self.may_choose_shard {
                self.choose_shard(&sizes);
            }
            for to in self.neighbor_addrs() {
                self.send(to, Transmission::Singlecast, &Message::AddMe, sink);
            }
            let hops = self.config.addme_hops;
            for _ in 0..self.config.addme_randomcasts {
                if let Some(first) = self.neighbors.random_except(&mut self.rng, None) {
                    self.send(first.addr, Transmission::Randomcast { hops }, &Message::AddMe, sink);
                }
            }
            self.maintain_table(sink);
            self.next_maintenance = Some(now + self.config.maintenance_interval.div(8));
        }
        let neighbors = self.neighbors.len();
        self.push_event(Event::Joined { neighbors });
    }

    fn learn(&mut self, peer: PeerInfo, now: Instant, verified: bool) -> Insert {
        if peer.id == self.me.id || peer.addr == self.me.addr {
            return Insert::Full;
        }
        self.neighbors.insert(peer, now, verified)
    }

    /// Processes a packet addressed to this node; `direct` if it came
    /// straight from its originator.
    fn process<'a>(
        &mut self,
        now: Instant,
        packet: Packet<'a>,
        direct: bool,
        sink: &mut impl Transmit,
    ) -> Option<Reply<'a>> {
        let source = packet.source;
        let from = source.peer();
        let is_member = self.config.role == Role::Member;
        match packet.message {
            Message::Join { want, shard } => {
                if !is_member {
                    self.counters.count_drop(DropReason::NotServed);
                    return None;
                }
                let mut peers = PeerList::new();
                let want = usize::from(want).min(MAX_PEERS_PER_MESSAGE);
                self.neighbors.sample(&mut self.rng, want, shard, Some(source.addr), &mut peers);
                self.send(source.addr, Transmission::Singlecast, &Message::Peers { peers }, sink);
                if source.member {
                    self.learn(from, now, direct);
                }
                None
            }
            Message::Peers { peers } => {
                self.on_peers(now, source, &peers, direct, sink);
                None
            }
            Message::AddMe => {
                if is_member && source.member {
                    let outcome = self.learn(from, now, direct);
                    log::trace!("{}: ADDME from {from} direct {direct}: {outcome:?}", self.me.addr);
                }
                None
            }
            Message::Ping { nonce } => {
                self.send(source.addr, Transmission::Singlecast, &Message::Pong { nonce }, sink);
                if is_member && source.member {
                    self.learn(from, now, direct);
                }
                None
            }
            Message::Pong { nonce } => Some(Reply::Pong { from, nonce }),
            Message::FileFrag { mode, hash, data } => {
                self.on_filefrag(now, source, mode, hash, data, sink)
            }
            Message::FileGet { hash } => {
                self.serve(source.addr, hash, sink);
                None
            }
            Message::Find { shard, nonce } => {
                if is_member && shard == self.shard() {
                    self.send(
                        source.addr,
                        Transmission::Singlecast,
                        &Message::Pong { nonce },
                        sink,
                    );
                } else if packet.transmission == Transmission::Singlecast {
                    let mut peers = PeerList::new();
                    let want = MAX_PEERS_PER_MESSAGE;
                    self.neighbors.sample(
                        &mut self.rng,
                        want,
                        Some(shard),
                        Some(source.addr),
                        &mut peers,
                    );
                    self.send(
                        source.addr,
                        Transmission::Singlecast,
                        &Message::Peers { peers },
                        sink,
                    );
                }
                None
            }
            Message::NewFile { hash } => {
                self.on_newfile(now, from, hash, sink);
                None
            }
            Message::Stored { hash, outcome } => Some(Reply::Stored { from, hash, outcome }),
            Message::NotFound { hash } => {
                if let Some(i) =
                    self.fetches.iter().position(|f| f.hash == hash && f.from.addr == source.addr)
                {
                    // The announcer no longer has it: expire the fetch now so
                    // that it is retried elsewhere or given up.
                    if let Some(f) = self.fetches.get_mut(i) {
                        f.deadline = Some(now);
                    }
                    self.expire_fetches(now, sink);
                    self.pump_fetches(now, sink);
                    return None;
                }
                Some(Reply::NotFound { from, hash })
            }
            Message::Holdings { hashes } => {
                if is_member && source.member && source.id.shard() == self.shard() {
                    self.on_holdings(now, from, &hashes, sink);
                }
                None
            }
            Message::Leave => {
                self.neighbors.remove_addr(source.addr);
                None
            }
            Message::StatsRequest { nonce } => {
                let stats = Message::Stats {
                    nonce,
                    held: self.store.len() as u32,
                    capacity: self.store.capacity() as u32,
                    neighbors: self.neighbors.len() as u16,
                    joined: self.is_joined(),
                    counters: self.counters.clone(),
                };
                self.send(source.addr, Transmission::Singlecast, &stats, sink);
                None
            }
            Message::Stats { nonce, held, capacity, neighbors, joined, counters } => {
                Some(Reply::Stats { from, nonce, held, capacity, neighbors, joined, counters })
            }
        }
    }

    fn on_peers(
        &mut self,
        now: Instant,
        source: Source,
        peers: &PeerList,
        direct: bool,
        sink: &mut impl Transmit,
    ) {
        let visible = self.source().member;
        let mut new_peers: Vec<PeerInfo, { MAX_PEERS_PER_MESSAGE + 1 }> = Vec::new();
        let candidates = peers.iter().copied().chain(source.member.then_some(source.peer()));
        for peer in candidates {
            if self.learn(peer, now, direct) == Insert::Added {
                let _ = new_peers.push(peer);
            }
        }
        match self.join {
            JoinState::Joining { .. } => {
                // The seed answered: ask one member of every shard for its
                // shard's members.
                let mut asked = [false; SHARD_COUNT as usize];
                for shard in Shard::all() {
                    if let Some(member) = self.neighbors.random_in(&mut self.rng, shard) {
                        self.send_join(member.addr, Some(shard), sink);
                        if let Some(a) = asked.get_mut(shard.index()) {
                            *a = true;
                        }
                    }
                }
                let until = now + self.config.survey_timeout;
                // What the seed told us is a lower bound of each shard's
                // size; the survey answers refine it.
                let sizes = self.neighbors.shard_counts();
                self.join = JoinState::Surveying { until, asked, sizes };
                if !asked.contains(&true) {
                    self.finish_join(now, sizes, sink);
                }
            }
            JoinState::Surveying { until, mut asked, mut sizes } => {
                // The answer of a member of shard s about shard s.
                let shard = source.id.shard();
                let listed = peers.iter().filter(|p| p.shard() == shard).count() as u16;
                if let (Some(a), Some(size)) =
                    (asked.get_mut(shard.index()), sizes.get_mut(shard.index()))
                {
                    *a = false;
                    *size = (*size).max(listed.saturating_add(1));
                }
                self.join = JoinState::Surveying { until, asked, sizes };
                if !asked.contains(&true) {
                    self.finish_join(now, sizes, sink);
                }
            }
            JoinState::Alone | JoinState::Joined => {
                // Tell the peers just learned about us, so that tables are
                // symmetric and the shard's members know each other.
                if visible {
                    for peer in new_peers.iter() {
                        self.send(peer.addr, Transmission::Singlecast, &Message::AddMe, sink);
                    }
                }
            }
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
    fn choose_shard(&mut self, sizes: &[u16; SHARD_COUNT as usize]) {
        self.may_choose_shard = false;
        let size = |n: u8| sizes.get(usize::from(n)).copied().unwrap_or(0);
        let mut order = [0u8; SHARD_COUNT as usize];
        for (i, slot) in order.iter_mut().enumerate() {
            *slot = i as u8;
        }
        self.rng.shuffle(&mut order);
        let empty = order.iter().filter(|n| size(**n) == 0).count();
        let best = if empty > 0 && self.rng.below(empty + 1) < empty {
            order.iter().copied().find(|n| size(*n) == 0)
        } else {
            order.iter().take(SHARD_CHOICES).copied().min_by_key(|n| size(*n))
        };
        let Some(shard) = best.and_then(Shard::new) else { return };
        let id = NodeId::in_shard(self.rng.next_u64(), shard);
        self.me.id = id;
        self.neighbors.set_own_shard(shard);
        self.push_event(Event::IdentityChosen(id));
    }

    fn on_filefrag<'a>(
        &mut self,
        now: Instant,
        source: Source,
        mode: FragMode,
        hash: FragmentHash,
        data: FragmentRef<'a>,
        sink: &mut impl Transmit,
    ) -> Option<Reply<'a>> {
        if !hash.verifies(data.0) {
            self.counters.count_drop(DropReason::BadHash);
            return None;
        }
        let from = source.peer();
        match mode {
            FragMode::Store => {
                let outcome = self.accept_store(&hash, data.0);
                let stored = Message::Stored { hash, outcome };
                self.send(source.addr, Transmission::Singlecast, &stored, sink);
                if outcome == StoreOutcome::Stored {
                    self.announce(hash, Some(source.addr), sink);
                }
                None
            }
            FragMode::Answer => {
                let fetch = self.fetches.iter().position(|f| f.hash == hash);
                match fetch {
                    Some(i) => {
                        self.fetches.swap_remove(i);
                        self.counters.fetches_completed =
                            self.counters.fetches_completed.saturating_add(1);
                        if self.accept_store(&hash, data.0) == StoreOutcome::Stored {
                            self.announce(hash, Some(source.addr), sink);
                        }
                        self.pump_fetches(now, sink);
                        None
                    }
                    None => Some(Reply::Fragment { from, hash, data: data.0 }),
                }
            }
        }
    }

    /// Decides on and performs a store of a verified fragment.
    fn accept_store(&mut self, hash: &FragmentHash, data: &FragmentBytes) -> StoreOutcome {
        if self.config.role != Role::Member {
            self.counters.count_drop(DropReason::NotServed);
            return StoreOutcome::Failed;
        }
        if hash.shard() != self.shard() {
            self.counters.count_drop(DropReason::WrongShard);
            return StoreOutcome::WrongShard;
        }
        if self.store.contains(hash) {
            return StoreOutcome::AlreadyHeld;
        }
        match self.store.store(hash, data) {
            Ok(()) => {
                self.counters.fragments_stored = self.counters.fragments_stored.saturating_add(1);
                self.push_event(Event::FragmentStored(*hash));
                StoreOutcome::Stored
            }
            Err(StoreError::Full) => {
                self.counters.count_drop(DropReason::StoreFull);
                StoreOutcome::Full
            }
            Err(StoreError::Failed) => {
                self.counters.count_drop(DropReason::StoreError);
                StoreOutcome::Failed
            }
        }
    }

    /// Answers a FILEGET: the fragment read straight into the datagram and
    /// checked, or NOTFOUND.
    fn serve(&mut self, to: PeerAddr, hash: FragmentHash, sink: &mut impl Transmit) {
        let held = self.config.role == Role::Member && self.store.contains(&hash);
        if held {
            if let Ok(head) = encode_filefrag_header(
                Transmission::Singlecast,
                self.source(),
                FragMode::Answer,
                &hash,
                &mut self.tx,
            ) {
                let end = head + FRAGMENT_SIZE;
                let body =
                    self.tx.get_mut(head..end).and_then(|s| <&mut FragmentBytes>::try_from(s).ok());
                if let Some(body) = body {
                    match self.store.read(&hash, body) {
                        Ok(true) if hash.verifies(body) => {
                            if self.transmit_tx(to, MessageKind::FileFrag, end, sink) {
                                self.counters.fragments_served =
                                    self.counters.fragments_served.saturating_add(1);
                            }
                            return;
                        }
                        Ok(true) => {
                            let _ = self.store.remove(&hash);
                            self.counters.count_drop(DropReason::CorruptStored);
                            self.push_event(Event::CorruptFragmentRemoved(hash));
                        }
                        Ok(false) => {}
                        Err(_) => self.counters.count_drop(DropReason::StoreError),
                    }
                }
            }
        }
        self.send(to, Transmission::Singlecast, &Message::NotFound { hash }, sink);
    }

    /// Tells the other holders of `hash` that this node has it.
    fn announce(&mut self, hash: FragmentHash, except: Option<PeerAddr>, sink: &mut impl Transmit) {
        match self.config.announce {
            Announce::Flood { breadth } => {
                // The original: a broadcast whose UID is the hash prefix.
                let uid = hash.prefix_u64();
                self.dedup.insert(uid);
                let packet = Packet {
                    transmission: Transmission::Broadcast { breadth, uid },
                    source: self.source(),
                    message: Message::NewFile { hash },
                };
                self.relay_to_all(&packet, &[], sink);
            }
            Announce::Shard => {
                let targets = self.replica_targets(&hash);
                for peer in targets.iter() {
                    if Some(peer.addr) != except {
                        self.send(
                            peer.addr,
                            Transmission::Singlecast,
                            &Message::NewFile { hash },
                            sink,
                        );
                    }
                }
            }
        }
    }

    /// The known members of this node's shard that should hold `hash`
    /// besides this node.
    fn replica_targets(&self, hash: &FragmentHash) -> Vec<PeerInfo, NEIGHBORS> {
        let mut out: Vec<PeerInfo, NEIGHBORS> = Vec::new();
        let shard = hash.shard();
        match self.config.replication {
            Replication::WholeShard => {
                for n in self.neighbors.members_of(shard) {
                    let _ = out.push(n.peer);
                }
            }
            Replication::Copies(copies) => {
                let mut ranked: Vec<PeerInfo, NEIGHBORS> = Vec::new();
                for n in self.neighbors.members_of(shard) {
                    let _ = ranked.push(n.peer);
                }
                let _ = ranked.push(self.me);
                ranked.sort_unstable_by_key(|p| core::cmp::Reverse(rendezvous_score(hash, p.id)));
                for p in ranked.iter().take(usize::from(copies)) {
                    if p.id != self.me.id {
                        let _ = out.push(*p);
                    }
                }
            }
        }
        out
    }

    fn on_newfile(
        &mut self,
        now: Instant,
        from: PeerInfo,
        hash: FragmentHash,
        sink: &mut impl Transmit,
    ) {
        self.want_fragment(now, from, hash);
        self.pump_fetches(now, sink);
    }

    /// Whether this node should hold `hash`: its shard's, and under bounded
    /// replication among the top copies by rendezvous score over the
    /// members it knows.
    fn should_hold(&self, hash: &FragmentHash) -> bool {
        if self.config.role != Role::Member || hash.shard() != self.shard() {
            return false;
        }
        match self.config.replication {
            Replication::WholeShard => true,
            Replication::Copies(copies) => {
                let mine = rendezvous_score(hash, self.me.id);
                let better = self
                    .neighbors
                    .members_of(hash.shard())
                    .filter(|n| rendezvous_score(hash, n.peer.id) > mine)
                    .count();
                better < usize::from(copies)
            }
        }
    }

    /// Queues a fetch of `hash` from `from` if this node should hold it,
    /// lacks it, and is not already fetching it. The fetch starts after the
    /// configured replication delay plus a random jitter of as much again,
    /// so that replication does not compete with the upload it follows.
    fn want_fragment(&mut self, now: Instant, from: PeerInfo, hash: FragmentHash) {
        if !self.should_hold(&hash) {
            return;
        }
        if self.store.contains(&hash) || self.fetches.iter().any(|f| f.hash == hash) {
            return;
        }
        if self.store.len() + self.fetches.len() >= self.store.capacity() {
            self.counters.count_drop(DropReason::StoreFull);
            return;
        }
        let delay = self.config.replication_delay;
        let jitter = self.rng.below(delay.total_micros() as usize + 1) as u64;
        let not_before = now + delay + Duration::from_micros(jitter);
        let fetch = Fetch { hash, from, attempts: 0, deadline: None, not_before };
        if self.fetches.push(fetch).is_err() {
            self.counters.count_drop(DropReason::FetchTableFull);
        }
    }

    /// Starts queued fetches while fewer than `parallel_fetches` are in flight.
    fn pump_fetches(&mut self, now: Instant, sink: &mut impl Transmit) {
        let limit = usize::from(self.config.parallel_fetches.max(1));
        loop {
            let in_flight = self.fetches.iter().filter(|f| f.deadline.is_some()).count();
            if in_flight >= limit {
                return;
            }
            let due = |f: &Fetch| f.deadline.is_none() && f.not_before <= now;
            let Some(i) = self.fetches.iter().position(due) else { return };
            let deadline = now + self.config.fetch_timeout;
            let Some(fetch) = self.fetches.get_mut(i) else { return };
            fetch.deadline = Some(deadline);
            fetch.attempts = fetch.attempts.saturating_add(1);
            let (to, hash) = (fetch.from.addr, fetch.hash);
            self.send_fileget(to, hash, sink);
        }
    }

    /// Retries or abandons fetches whose answer is overdue. A retry goes to
    /// the announcer on odd attempts and to another member of the shard
    /// (which may have fetched it meanwhile) on even ones.
    fn expire_fetches(&mut self, now: Instant, _sink: &mut impl Transmit) {
        let mut i = 0;
        while let Some(fetch) = self.fetches.get(i).copied() {
            match fetch.deadline {
                Some(deadline) if deadline <= now => {
                    if fetch.attempts >= self.config.fetch_attempts {
                        self.fetches.swap_remove(i);
                        self.counters.fetches_abandoned =
                            self.counters.fetches_abandoned.saturating_add(1);
                        self.push_event(Event::FetchAbandoned(fetch.hash));
                        continue;
                    }
                    let own = self.shard();
                    let other = if fetch.attempts % 2 == 0 {
                        None
                    } else {
                        self.neighbors.random_in(&mut self.rng, own)
                    };
                    if let Some(f) = self.fetches.get_mut(i) {
                        f.deadline = None; // requeue; pump_fetches resends
                        if let Some(other) = other {
                            f.from = other;
                        }
                    }
                }
                _ => {}
            }
            i += 1;
        }
    }
}

impl<S: FragmentStore, const NEIGHBORS: usize, const DEDUP: usize, const FETCHES: usize> fmt::Debug
    for Node<S, NEIGHBORS, DEDUP, FETCHES>
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Node")
            .field("me", &self.me)
            .field("neighbors", &self.neighbors.len())
            .field("held", &self.store.len())
            .field("join", &self.join)
            .finish_non_exhaustive()
    }
}
