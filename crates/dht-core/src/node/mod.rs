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

mod liveness;
mod membership;
mod repair;
mod replication;

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
    /// A neighbor was found dead (it stopped answering probes, or another
    /// node said so) and dropped.
    NeighborDead(PeerInfo),
    /// A graceful leave is complete: the hand-off is done and the
    /// neighbors were told. The node should now stop.
    Left,
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
        /// With [`StoreOutcome::NotHolder`], who should hold it instead.
        holders: crate::wire::HolderList,
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
        /// Who should hold it, as the answering node sees its shard.
        holders: crate::wire::HolderList,
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
        /// Whether it knows the address asked about.
        knows: bool,
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
    /// The node that announced the fragment (it has it).
    origin: PeerInfo,
    /// The node the current attempt asks.
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

/// First wait for an announcement's acknowledgement (doubles per retry).
const ANNOUNCE_RETRY: Duration = Duration::from_millis(1_500);
/// Times an announcement is sent before it is given up (the HOLDINGS
/// exchange is the backstop).
const ANNOUNCE_TRIES: u8 = 5;

/// A NEWFILE that its target has not acknowledged yet, by fetching the
/// fragment (FILEGET) or saying it has it (STORED).
#[derive(Clone, Copy, Debug)]
struct Announced {
    hash: FragmentHash,
    to: PeerAddr,
    next: Instant,
    tries: u8,
}

/// Peers with a limited receive window that a node remembers (the
/// least recently heard is forgotten first; forgetting one only means that
/// its windows open as for any peer until it is heard again).
const LIMITED_PEERS: usize = 16;

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
/// replication tables (fetches in progress, announcements awaiting their
/// acknowledgement); the defaults suit a host node (see
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
    /// Liveness probes in flight.
    probes: Vec<liveness::Probe, { liveness::PROBES }>,
    /// When the watched mates are next probed.
    next_monitor: Option<Instant>,
    /// When a random quiet neighbor is next probed.
    next_random_probe: Option<Instant>,
    /// Nodes recently found dead, kept out of the table for a while.
    recently_dead: Deque<(PeerAddr, Instant), { liveness::RECENTLY_DEAD }>,
    /// The store scan after shard membership changed.
    repair: Option<repair::RepairScan>,
    /// A graceful leave in progress.
    leaving: Option<repair::Leaving>,
    /// Announcements awaiting acknowledgement (as many as fetches: both
    /// are the node's replication bookkeeping).
    announced: Vec<Announced, FETCHES>,
    /// The node this one joined through, asked again if the table ever
    /// empties.
    seed: Option<PeerAddr>,
    /// Whether the node has left.
    left: bool,
    /// Peers that advertised a limited receive window (see
    /// [`Source::window`]), most recently heard last.
    rx_windows: Vec<(PeerAddr, u8), LIMITED_PEERS>,
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
            probes: Vec::new(),
            next_monitor: None,
            next_random_probe: None,
            recently_dead: Deque::new(),
            repair: None,
            leaving: None,
            announced: Vec::new(),
            seed: None,
            left: false,
            rx_windows: Vec::new(),
            events: Deque::new(),
            counters: Counters::default(),
            // An opaque zero: with a literal one, the compiler keeps the
            // whole initial node (8 KB of zeros and a few fields) as a
            // template in flash and copies it; this way the buffer is
            // cleared at run time.
            tx: [core::hint::black_box(0); MAX_DATAGRAM_SIZE],
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

    /// The receive window `addr` advertised (large datagrams it takes in
    /// flight from one sender), if it advertised a limit.
    pub fn advertised_window(&self, addr: PeerAddr) -> Option<u8> {
        self.rx_windows.iter().find(|(a, _)| *a == addr).map(|(_, w)| *w)
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
        crate::order::sort_by_key_descending(&mut ranked, |(v, s, _)| (*v, *s));
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
        if self.left {
            return None;
        }
        [
            join,
            fetch,
            self.next_maintenance,
            self.liveness_deadline(),
            self.repair_deadline(),
            self.leave_deadline(),
            self.announced.iter().map(|a| a.next).min(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    // ----- inputs --------------------------------------------------------

    /// Does the timed work due at `now`. Safe to call at any time.
    // Kept out of line: inlined into a caller's loop, the packets of
    // every path would share one stack frame (18 KB on a Cortex-M3).
    #[inline(never)]
    pub fn handle_timeout(&mut self, now: Instant, sink: &mut impl Transmit) {
        if self.left {
            return;
        }
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
            self.maintain_table(now, sink);
            self.next_maintenance = Some(now + self.maintenance_delay());
        }
        self.expire_fetches(now, sink);
        self.pump_fetches(now, sink);
        self.liveness_timeout(now, sink);
        self.repair_timeout(now, sink);
        self.leave_timeout(now, sink);
        self.retry_announcements(now, sink);
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
        if self.left {
            return None;
        }
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
        if from == packet.source.addr {
            // Heard directly: whatever was said of its death, it is alive.
            self.revived(from);
            self.note_window(from, packet.source.window);
        }

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
        let reply = self.process(now, packet, direct, sink);
        self.heard_from(from);
        reply
    }

    // ----- commands ------------------------------------------------------

    /// Starts joining the network through `seed`. JOIN is repeated with
    /// backoff until PEERS arrives; [`Event::Joined`] reports success.
    pub fn join(&mut self, now: Instant, seed: PeerAddr, sink: &mut impl Transmit) {
        self.seed = Some(seed);
        self.join = JoinState::Joining { seed, attempt: 0, next: now + self.config.join_retry };
        self.send_join(seed, None, sink);
    }

    /// Leaves the network gracefully: hands off every fragment whose copies
    /// would fall below R without this node (store requests to the members
    /// that replace it, at most `leave_timeout`), then sends LEAVE to every
    /// neighbor. [`Event::Left`] and [`Node::has_left`] tell when it is
    /// done; keep driving the node until then.
    pub fn leave(&mut self, now: Instant, sink: &mut impl Transmit) {
        self.start_leave(now, sink);
    }

    /// Whether the node has left (after [`Node::leave`]).
    pub fn has_left(&self) -> bool {
        self.left
    }

    /// Whether a leave is in progress.
    pub fn is_leaving(&self) -> bool {
        self.leaving.is_some()
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

    /// Asks a known member of `shard` for the shard's members (JOIN
    /// restricted to the shard), and up to `ask` random neighbors which
    /// members of `shard` they know (a FIND sent singlecast is answered with
    /// PEERS by non-members), to fill the table for an upload or download.
    pub fn discover_shard(&mut self, shard: Shard, ask: usize, sink: &mut impl Transmit) {
        // A member of the shard knows the whole shard: ask one if we can.
        if let Some(member) = self.neighbors.random_in(&mut self.rng, shard) {
            self.send_join(member.addr, Some(shard), sink);
        }
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
        Source { id: self.me.id, addr: self.me.addr, member, window: self.config.rx_window }
    }

    /// Remembers the receive window `addr` advertised in a packet it sent.
    fn note_window(&mut self, addr: PeerAddr, window: u8) {
        let known = self.rx_windows.iter().position(|(a, _)| *a == addr);
        match (known, window) {
            (None, 0) => {}
            (Some(i), 0) => {
                self.rx_windows.remove(i);
            }
            (Some(i), w) => {
                // Move to the back: most recently heard.
                self.rx_windows.remove(i);
                let _ = self.rx_windows.push((addr, w));
            }
            (None, w) => {
                if self.rx_windows.is_full() {
                    self.rx_windows.remove(0);
                }
                let _ = self.rx_windows.push((addr, w));
            }
        }
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

    /// Processes a packet addressed to this node; `direct` if it came
    /// straight from its originator.
    // Kept out of line: inlined into a caller's loop, the packets of
    // every path would share one stack frame (18 KB on a Cortex-M3).
    #[inline(never)]
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
                // A node still joining knows too little, and cannot list
                // itself yet: it passes the request on to the node it is
                // joining through, which answers the asker directly.
                if !self.is_joined() || !self.source().member {
                    match self.seed {
                        Some(seed) if seed != source.addr => {
                            let forwarded = Packet {
                                transmission: Transmission::Singlecast,
                                source,
                                message: Message::Join { want, shard },
                            };
                            self.relay(&forwarded, seed, sink);
                        }
                        _ => self.counters.count_drop(DropReason::NotServed),
                    }
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
            Message::Pong { nonce } => {
                if self.is_probe_answer(nonce) {
                    return None;
                }
                Some(Reply::Pong { from, nonce })
            }
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
                let targeted = packet.transmission == Transmission::Singlecast;
                self.on_newfile(now, from, hash, targeted, sink);
                None
            }
            Message::Stored { hash, outcome, holders } => {
                if self.handoff_answered(source.addr, &hash)
                    || self.announcement_acked(source.addr, &hash)
                {
                    return None;
                }
                if direct {
                    for peer in holders.iter().filter(|p| p.shard() == hash.shard()) {
                        self.learn(*peer, now, true);
                    }
                }
                Some(Reply::Stored { from, hash, outcome, holders })
            }
            Message::NotFound { hash, holders } => {
                // The suggested holders come straight from a node that
                // knows the shard: worth knowing.
                if direct {
                    for peer in holders.iter().filter(|p| p.shard() == hash.shard()) {
                        self.learn(*peer, now, true);
                    }
                }
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
                Some(Reply::NotFound { from, hash, holders })
            }
            Message::Holdings { hashes } => {
                if is_member && source.member && source.id.shard() == self.shard() {
                    self.on_holdings(now, from, &hashes, sink);
                }
                None
            }
            Message::Leave => {
                let known =
                    self.neighbors.get_addr(source.addr).is_some_and(|n| n.peer.id == source.id);
                if known {
                    self.neighbors.remove_addr(source.addr);
                    self.membership_changed(now, from, false);
                }
                self.peer_gone(source.addr);
                None
            }
            Message::Dead { peer } => {
                self.on_dead(now, peer, sink);
                None
            }
            Message::StatsRequest { nonce, about } => {
                let stats = Message::Stats {
                    nonce,
                    held: self.store.len() as u32,
                    capacity: self.store.capacity() as u32,
                    neighbors: self.neighbors.len() as u16,
                    joined: self.is_joined(),
                    knows: about.is_some_and(|a| self.neighbors.contains_addr(a)),
                    counters: self.counters.clone(),
                };
                self.send(source.addr, Transmission::Singlecast, &stats, sink);
                None
            }
            Message::Stats { nonce, held, capacity, neighbors, joined, knows, counters } => {
                Some(Reply::Stats {
                    from,
                    nonce,
                    held,
                    capacity,
                    neighbors,
                    joined,
                    knows,
                    counters,
                })
            }
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
