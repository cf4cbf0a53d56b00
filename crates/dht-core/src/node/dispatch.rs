//! From a datagram to the machine it concerns: the network key's tag,
//! decoding, the proof of address, the overlay's relaying rules, and one
//! arm per message.
//!
//! The rules, in the order they apply:
//!
//! 1. On a network with a key, a datagram without a valid tag is dropped
//!    before it is decoded.
//! 2. A datagram that echoes this node's cookie for its UDP source is
//!    *proven*: its sender receives at that address. Only a proven
//!    datagram refreshes a neighbor, answers a probe, changes the tables or
//!    gets a big answer. An unproven one gets at most one datagram back, no
//!    larger than itself (a PONG, a RETRY, or the PING that asks an ADDME's
//!    sender to prove itself), and nothing at all if it is shorter than
//!    [`UNPROVEN_MIN`] (an honest sender pads it).
//! 3. Only PING, FIND, ADDME and DEAD travel by randomcast or broadcast,
//!    and only from a sender that proved its address; a broadcast from a
//!    host that is not in the table (its originator or a relay) is
//!    processed but goes no further, so that one datagram from a stranger
//!    costs the network a handful of datagrams, not a flood; hops and
//!    breadth are cut to the configured maxima; every sender has a relay
//!    budget; a broadcast whose UID the ring cannot remember is dropped,
//!    not processed twice.
//! 4. Answers go to the UDP source; a randomcast or broadcast is answered
//!    at its originator's address. Unless the originator is a neighbor
//!    (it proved its address to this node), the end of a randomcast
//!    answers or probes it with no more bytes than it received, and a
//!    broadcast is not answered at all (its originator is probed, once per
//!    `CONSIDER_AGAIN`, by each node it reaches; see `process`).

use super::out::{Proof, UNPROVEN_MIN};
use super::replication::{Offer, View};
use super::{parts, Node, Reply};
use crate::budget::{Cost, Limits};
use crate::config::Role;
use crate::counters::DropReason;
use crate::id::{PeerAddr, PeerInfo};
use crate::node::Transmit;
use crate::store::FragmentStore;
use crate::time::Instant;
use crate::wire::{DecodeError, HolderList, Message, MessageKind, NodeStats, Packet, Transmission};

/// Whether a message of this kind may travel by randomcast or broadcast:
/// only small control messages, never fragments, requests for them, JOIN
/// or STATS.
pub(crate) fn relayable(kind: MessageKind) -> bool {
    matches!(kind, MessageKind::Ping | MessageKind::Find | MessageKind::AddMe | MessageKind::Dead)
}

/// Whether a message of this kind is processed from a sender that has not
/// proven its address (it is then answered with at most its own size).
fn allowed_unproven(kind: MessageKind) -> bool {
    match kind {
        MessageKind::Ping
        | MessageKind::AddMe
        | MessageKind::Find
        | MessageKind::Retry
        // Requests that get a RETRY.
        | MessageKind::Join
        | MessageKind::FileGet
        | MessageKind::NewFile
        | MessageKind::StatsRequest => true,
        #[cfg(feature = "listing")]
        MessageKind::ListRequest => true,
        _ => false,
    }
}

/// Requests whose answer is big: each costs its sender a token of its
/// answer budget.
fn costs_an_answer(kind: MessageKind) -> bool {
    match kind {
        MessageKind::Join
        | MessageKind::FileGet
        | MessageKind::Find
        | MessageKind::StatsRequest => true,
        #[cfg(feature = "listing")]
        MessageKind::ListRequest => true,
        _ => false,
    }
}

impl<S: FragmentStore, const NEIGHBORS: usize, const DEDUP: usize, const FETCHES: usize>
    Node<S, NEIGHBORS, DEDUP, FETCHES>
{
    /// Checks and decodes a datagram, relays it as its transmission says,
    /// and processes it if it is for this node.
    pub(super) fn receive<'a>(
        &mut self,
        now: Instant,
        from: PeerAddr,
        bytes: &'a [u8],
        sink: &mut impl Transmit,
    ) -> Option<Reply<'a>> {
        let body = match &self.out.key {
            Some(key) => match key.open(bytes) {
                Some(body) => body,
                None => {
                    self.out.drop(DropReason::BadTag);
                    return None;
                }
            },
            None => bytes,
        };
        let mut packet = match Packet::decode(body) {
            Ok(packet) => packet,
            Err(DecodeError::BadVersion(_)) => {
                self.out.drop(DropReason::BadVersion);
                return None;
            }
            Err(_) => {
                self.out.drop(DropReason::Malformed);
                return None;
            }
        };
        let kind = packet.message.kind();
        self.out.counters.count_received(kind, bytes.len());
        let proven = self.out.proves(from, packet.cookies.echo, now);
        let proof = Proof { proven, received: bytes.len() };
        if let Some(grant) = packet.cookies.grant {
            self.jar.keep(from, grant, proven, now);
        }
        self.out.note_grant(from, packet.cookies.grant);
        log::trace!(
            "{}: {} from {} via {from} ({}), {:?}",
            self.out.me().addr,
            kind.name(),
            packet.source.addr,
            if proven { "proven" } else { "unproven" },
            packet.transmission
        );
        packet.source.addr = packet.source.addr.or_observed(from);
        let me = self.out.me();
        if packet.source.id == me.id || packet.source.addr == me.addr {
            self.out.drop(DropReason::FromSelf);
            return None;
        }
        if proven {
            self.membership.table.touch(from, now);
            if from == packet.source.addr {
                // A mate whose store filled or emptied changes who holds
                // what: the repair scan hears of it as of a mate gone or
                // back.
                self.membership.note_full(self.out.me(), packet.source.peer(), packet.source.full);
            }
            self.liveness.heard_from(from, now);
            if from == packet.source.addr {
                // Heard directly: whatever was said of its death, it is alive.
                self.liveness.revive(from);
                self.windows.note(from, packet.source.window);
            }
            let (ctx, _, membership, ..) = parts!(self, now, &mut *sink);
            membership.heard_from_someone(&ctx);
        } else if !allowed_unproven(kind)
            || bytes.len() < UNPROVEN_MIN && kind != MessageKind::Retry
        {
            self.refuse_unproven(sink, now, from, kind, proof);
            return None;
        }
        let singlecast = packet.transmission == Transmission::Singlecast;
        if !singlecast && !proven {
            self.refuse_unproven(sink, now, from, kind, proof);
            return None;
        }
        // Deaths are the watchers' news: only a member tells them, directly
        // or relayed. A stranger's DEAD on a random walk made every node of
        // the walk probe the named peer (14 datagrams for one).
        if kind == MessageKind::Dead && !packet.source.member {
            self.out.drop(DropReason::NotServed);
            return None;
        }
        let first_copy = if singlecast { true } else { self.admit_relayed(now, from, &packet)? };
        let neighbor = self.membership.table.contains_addr(from);
        match packet.transmission {
            Transmission::Singlecast | Transmission::Randomcast { hops: 0 } => {}
            Transmission::Randomcast { hops } => {
                let hops = hops.min(self.config.max_hops);
                let next = self.membership.table.random_except(&mut self.rng, Some(from));
                if let Some(next) = next.filter(|p| p.addr != packet.source.addr) {
                    let relayed = Packet {
                        transmission: Transmission::Randomcast { hops: hops - 1 },
                        ..packet
                    };
                    // Padded as it came (up to a probe's size): its last
                    // hop probes the originator only if it was that large.
                    let padded = bytes.len().min(UNPROVEN_MIN);
                    self.out.relay(sink, &mut self.jar, now, &relayed, next.addr, padded);
                    return None;
                }
                // Nobody to forward to: the packet ends its walk here.
            }
            Transmission::Broadcast { breadth, uid } => {
                let breadth = breadth.min(self.config.max_breadth);
                // A wider copy of a broadcast seen already is relayed
                // (the news was judged at the first copy), not processed.
                let news = !first_copy || self.news(now, &packet.message);
                if breadth > 0 && neighbor && news {
                    let relayed = Packet {
                        transmission: Transmission::Broadcast { breadth: breadth - 1, uid },
                        source: packet.source,
                        cookies: packet.cookies,
                        message: packet.message.clone(),
                    };
                    let targets = self.membership.table.iter().map(|n| n.peer.addr);
                    let except = [from, packet.source.addr];
                    self.out.relay_to_all(sink, &mut self.jar, now, &relayed, targets, &except);
                }
                if !first_copy {
                    return None;
                }
            }
        }
        if costs_an_answer(kind) && proven {
            let limits = Limits { rate: self.config.answer_rate, burst: self.config.answer_burst };
            if !self.budgets.take(from, Cost::Answer, limits, now) {
                self.out.drop(DropReason::RateLimited);
                return None;
            }
        }
        // A randomcast or broadcast is answered at its originator (rule 4).
        // Its first relay saw it send from there, but a hostile relay could
        // name anyone: unless the originator is a neighbor (it proved its
        // address to this node), the end of a walk answers it with no more
        // than it received, and a broadcast, which reaches every node, gets
        // no answer at all.
        let (reply_to, proof) = if singlecast {
            (from, proof)
        } else {
            let listens = from == packet.source.addr
                || self.membership.table.contains_addr(packet.source.addr);
            let received = match packet.transmission {
                Transmission::Broadcast { .. } if !listens => 0,
                _ => bytes.len(),
            };
            (packet.source.addr, Proof { proven: listens, received })
        };
        self.process(now, packet, from, reply_to, proof, sink)
    }

    /// Whether a broadcast is news worth relaying: a DEAD notice about a
    /// peer is relayed once per `NOTICE_MEMORY` (several watchers notice
    /// one death; their notices stop where the news is old). Whether this
    /// node is probing the peer already does not matter: a node that first
    /// heard the notice from a non-neighbor (not relayed) and then from a
    /// neighbor did not relay it either, and a node that only it could
    /// reach (a late joiner in few tables) kept the dead node for a minute.
    fn news(&mut self, now: Instant, message: &Message<'_>) -> bool {
        match message {
            Message::Dead { peer } => self.liveness.note_notice(peer.addr, now),
            _ => true,
        }
    }

    /// A datagram this node will not act on without proof: counted, and a
    /// sender that padded it as honest ones do is told how to prove itself
    /// (its cookie went stale, or it never had one) with a RETRY no larger.
    fn refuse_unproven(
        &mut self,
        sink: &mut impl Transmit,
        now: Instant,
        from: PeerAddr,
        kind: MessageKind,
        proof: Proof,
    ) {
        if proof.received >= UNPROVEN_MIN && kind != MessageKind::Retry {
            self.out.retry(sink, now, from, proof);
        } else {
            self.out.drop(DropReason::Unproven);
        }
    }

    /// Rule 3 for a randomcast or broadcast: whether it may be relayed and
    /// processed (`Some(true)`), only relayed (`Some(false)`: a wider copy
    /// of a broadcast seen already), or neither (`None`, counted).
    fn admit_relayed(&mut self, now: Instant, from: PeerAddr, packet: &Packet<'_>) -> Option<bool> {
        if !relayable(packet.message.kind()) {
            self.out.drop(DropReason::NotRelayable);
            return None;
        }
        let mut first_copy = true;
        if let Transmission::Broadcast { uid, breadth } = packet.transmission {
            let breadth = breadth.min(self.config.max_breadth);
            match self.dedup.first_time(uid, breadth, now) {
                crate::dedup::Seen::New => {}
                crate::dedup::Seen::Wider => first_copy = false,
                crate::dedup::Seen::Duplicate => {
                    self.out.drop(DropReason::DuplicateBroadcast);
                    return None;
                }
                crate::dedup::Seen::Full => {
                    self.out.drop(DropReason::DedupFull);
                    return None;
                }
            }
        }
        let limits = Limits { rate: self.config.relay_rate, burst: self.config.relay_burst };
        if !self.budgets.take(from, Cost::Relay, limits, now) {
            self.out.drop(DropReason::RateLimited);
            return None;
        }
        Some(first_copy)
    }

    /// Processes a packet addressed to this node, received from `from`;
    /// answers go to `reply_to`.
    // Kept out of line: inlined into a caller's loop, the packets of
    // every path would share one stack frame (18 KB on a Cortex-M3).
    #[inline(never)]
    fn process<'a>(
        &mut self,
        now: Instant,
        packet: Packet<'a>,
        from: PeerAddr,
        reply_to: PeerAddr,
        proof: Proof,
        sink: &mut impl Transmit,
    ) -> Option<Reply<'a>> {
        let source = packet.source;
        let singlecast = packet.transmission == Transmission::Singlecast;
        let direct = from == source.addr;
        // Who answered, as the application sees it: the id it gave, at the
        // address its datagram came from.
        let peer = PeerInfo { id: source.id, addr: from };
        let movable = self.replication.fetches.is_empty();
        let store_limits = Limits { rate: self.config.store_rate, burst: self.config.store_burst };
        let offer_budget = matches!(packet.message, Message::NewFile { .. })
            && proof.proven
            && self.budgets.take(from, Cost::Store, store_limits, now);
        let (mut ctx, store, membership, liveness, replication, windows) = parts!(self, now, sink);
        let is_member = ctx.config.role == Role::Member;
        let me = ctx.out.me();
        // A member that proves it is where it says is worth knowing. One
        // only heard of (the originator of a relayed message) is asked to
        // prove it by a member (clients learn members from lists and their
        // PONGs), and so is the sender of an unproven ADDME; any other
        // unproven datagram gets its one answer below and no more.
        // An originator that never proved itself here is probed at the end
        // of a walk only if the walk's datagram was as large as the probe
        // (relays keep the padding). The originator of a broadcast that a
        // neighbor handed over is probed by every node it reaches, once per
        // `CONSIDER_AGAIN`: that is how the watchers that send DEAD notices
        // come to be known far off, and without it a dead node stayed in
        // some tables for more than a minute on the 256-node scene. It is
        // also the one thing a hostile member can make the network send to
        // an address it names (a PING per node reached, per 2 s).
        let broadcast = matches!(packet.transmission, Transmission::Broadcast { .. });
        let relayed_by_neighbor = broadcast && membership.table.contains_addr(from);
        let heard_of = (!direct || matches!(packet.message, Message::AddMe))
            && (proof.proven || relayed_by_neighbor || proof.received >= UNPROVEN_MIN);
        if source.member {
            if proof.proven && direct {
                membership.learn(&mut ctx, liveness, source.peer());
            } else if is_member && heard_of {
                membership.consider(&mut ctx, liveness, source.peer());
            }
        }
        match packet.message {
            Message::Join { want, shard } => {
                membership.on_join_request(&mut ctx, proof, from, want, shard);
            }
            Message::Peers { peers } => {
                membership.on_peers(&mut ctx, liveness, source, &peers, movable);
            }
            Message::AddMe => {}
            Message::Ping { nonce } => {
                // The latest death this node heard of rides along: a node
                // that a DEAD broadcast missed (relays forward only from
                // neighbors, and a late joiner is in few tables) hears of
                // it from the next PONG it gets, its mates' every 3 s.
                let dead = liveness.latest_notice(now);
                ctx.answer(reply_to, proof, &Message::Pong { nonce, dead });
            }
            Message::Pong { nonce, dead } => {
                if let Some(dead) = dead.filter(|d| *d != me.addr && *d != from) {
                    let known = membership.table.get_addr(dead).map(|n| n.peer);
                    // Probed once per notice memory.
                    if let Some(known) = known.filter(|_| liveness.first_suspicion(dead, now)) {
                        let tries = ctx.config.probe_tries;
                        liveness.suspect(&mut ctx, known, tries);
                    }
                }
                if !liveness.is_probe_answer(nonce) && singlecast {
                    return Some(Reply::Pong { from: peer, nonce });
                }
            }
            Message::FileFrag { hash, first_unit, data } => {
                let view = View::of(&ctx, &membership.table, membership.lifecycle);
                if !replication.on_piece(&mut ctx, store, &view, from, &hash, first_unit, data.0) {
                    return Some(Reply::Piece { from: peer, hash, first_unit, data: data.0 });
                }
            }
            Message::FileGet { hash, want, piece_units } => {
                if !proof.proven {
                    ctx.out.retry(ctx.sink, now, from, proof);
                    return None;
                }
                if !store.contains(&hash) && ctx.out.offered.iter().any(|h| *h == hash) {
                    // Our application's upload: it serves the pieces.
                    return Some(Reply::FileGet { from: peer, hash, want, piece_units });
                }
                let view = View::of(&ctx, &membership.table, membership.lifecycle);
                let served =
                    replication.serve(&mut ctx, store, &view, from, hash, want, piece_units);
                if !served && !is_member {
                    return Some(Reply::FileGet { from: peer, hash, want, piece_units });
                }
            }
            Message::Find { shard, nonce } => {
                membership.on_find(&mut ctx, proof, reply_to, shard, nonce, singlecast);
            }
            Message::NewFile { hash, urgent, copies } => {
                if !proof.proven {
                    ctx.out.retry(ctx.sink, now, from, proof);
                    return None;
                }
                let view = View::of(&ctx, &membership.table, membership.lifecycle);
                let offer = Offer {
                    from: source.peer(),
                    addr: from,
                    hash,
                    urgent,
                    copies,
                    budget: offer_budget,
                };
                replication.on_offer(&mut ctx, store, &view, offer);
            }
            Message::Stored { hash, outcome, holders } => {
                consider_holders(&mut ctx, membership, liveness, &hash, &holders);
                let view = View::of(&ctx, &membership.table, membership.lifecycle);
                if replication.on_stored(&mut ctx, store, &view, windows, from, &hash, outcome) {
                    return None;
                }
                return Some(Reply::Stored { from: peer, hash, outcome, holders });
            }
            Message::NotFound { hash, holders } => {
                consider_holders(&mut ctx, membership, liveness, &hash, &holders);
                let view = View::of(&ctx, &membership.table, membership.lifecycle);
                if replication.on_notfound(&mut ctx, store, &view, from, &hash) {
                    return None;
                }
                return Some(Reply::NotFound { from: peer, hash, holders });
            }
            Message::Holdings { hashes } => {
                let mate = is_member
                    && direct
                    && source.member
                    && source.id.shard() == me.shard()
                    && membership.table.contains_addr(from);
                if mate {
                    let view = View::of(&ctx, &membership.table, membership.lifecycle);
                    replication.on_holdings(&mut ctx, store, &view, source.peer(), &hashes);
                } else {
                    ctx.out.drop(DropReason::NotServed);
                }
            }
            Message::Leave => {
                // Only the leaving node itself, straight from its address.
                if singlecast && direct {
                    membership.remove(me, source.peer());
                    liveness.forget(source.peer(), now);
                    replication.peer_gone(now, from);
                } else {
                    ctx.out.drop(DropReason::NotServed);
                }
            }
            Message::Dead { peer: suspect } => {
                log::debug!("{}: DEAD {} from {from} ({})", me.addr, suspect.addr, source.addr);
                liveness.heard_of_death(suspect.addr, now);
                // Only a reason to probe it ourselves.
                let known = membership.table.get_addr(suspect.addr).map(|n| n.peer);
                if let Some(known) = known.filter(|k| k.id == suspect.id && k.addr != me.addr) {
                    let tries = ctx.config.suspect_tries;
                    liveness.suspect(&mut ctx, known, tries);
                }
            }
            Message::StatsRequest { nonce, about } => {
                let stats = NodeStats {
                    held: store.len() as u32,
                    capacity: store.capacity() as u32,
                    neighbors: membership.table.len() as u16,
                    joined: membership.lifecycle.is_joined(),
                    knows: about.is_some_and(|a| membership.table.contains_addr(a)),
                    uptime: now.total_millis() / 1000,
                    counters: ctx.out.counters.clone(),
                };
                ctx.answer_proven(from, proof, &Message::Stats { nonce, stats });
            }
            Message::Stats { nonce, stats } => {
                return Some(Reply::Stats { from: peer, nonce, stats })
            }
            #[cfg(feature = "listing")]
            Message::ListRequest { nonce, from: first, files_only } => {
                let room = super::listing::room(ctx.config.max_datagram);
                let page =
                    super::listing::page(store, first, files_only, room, ctx.config.replication);
                ctx.answer_proven(from, proof, &Message::List { nonce, page });
            }
            #[cfg(feature = "listing")]
            Message::List { nonce, page } => return Some(Reply::List { from: peer, nonce, page }),
            Message::Retry => {
                ctx.out.resend_after_retry(ctx.sink, ctx.jar, now, from);
            }
        }
        None
    }
}

/// Holders named in a STORED or NOTFOUND: members of the fragment's shard
/// worth knowing, once they answer a PING themselves.
fn consider_holders<T: Transmit, const N: usize>(
    ctx: &mut super::Ctx<'_, T>,
    membership: &mut super::membership::Membership<N>,
    liveness: &super::liveness::Liveness,
    hash: &crate::fragment::FragmentHash,
    holders: &HolderList,
) {
    if ctx.config.role == Role::Member && hash.shard() != ctx.out.me().shard() {
        // A member keeps only its quota of other shards: no need to chase.
        return;
    }
    for peer in holders.iter().filter(|p| p.shard() == hash.shard()) {
        membership.consider(ctx, liveness, *peer);
    }
}
