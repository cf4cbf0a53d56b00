//! From a datagram to the machine it concerns: decoding, the overlay's
//! relaying rules, and one arm per message.

use super::replication::View;
use super::{parts, Node, Reply};
use crate::config::Role;
use crate::counters::DropReason;
use crate::id::PeerAddr;
use crate::node::membership::Lifecycle;
use crate::node::Transmit;
use crate::store::FragmentStore;
use crate::time::Instant;
use crate::wire::{DecodeError, FragMode, Message, NodeStats, Packet, Transmission};

impl<S: FragmentStore, const NEIGHBORS: usize, const DEDUP: usize, const FETCHES: usize>
    Node<S, NEIGHBORS, DEDUP, FETCHES>
{
    /// Decodes a datagram, relays it as its transmission says, and
    /// processes it if it is for this node.
    pub(super) fn receive<'a>(
        &mut self,
        now: Instant,
        from: PeerAddr,
        bytes: &'a [u8],
        sink: &mut impl Transmit,
    ) -> Option<Reply<'a>> {
        let mut packet = match Packet::decode(bytes) {
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
        log::trace!(
            "{}: {} from {} via {from}, {:?}",
            self.out.me().addr,
            kind.name(),
            packet.source.addr,
            packet.transmission
        );
        {
            let (ctx, _, membership, ..) = parts!(self, now, &mut *sink);
            membership.heard_from_someone(&ctx);
        }
        packet.source.addr = packet.source.addr.or_observed(from);
        let me = self.out.me();
        if packet.source.id == me.id || packet.source.addr == me.addr {
            self.out.drop(DropReason::FromSelf);
            return None;
        }
        self.membership.table.touch(from, now);
        if from == packet.source.addr {
            // Heard directly: whatever was said of its death, it is alive.
            self.liveness.revive(from);
            self.windows.note(from, packet.source.window);
        }
        match packet.transmission {
            Transmission::Singlecast | Transmission::Randomcast { hops: 0 } => {}
            Transmission::Randomcast { hops } => {
                let next = self.membership.table.random_except(&mut self.rng, Some(from));
                if let Some(next) = next.filter(|p| p.addr != packet.source.addr) {
                    let relayed = Packet {
                        transmission: Transmission::Randomcast { hops: hops - 1 },
                        ..packet
                    };
                    self.out.relay(sink, &relayed, next.addr);
                    return None;
                }
                // Nobody to forward to: the packet ends its walk here.
            }
            Transmission::Broadcast { breadth, uid } => {
                if !self.dedup.first_time(uid) {
                    self.out.drop(DropReason::DuplicateBroadcast);
                    return None;
                }
                if breadth > 0 {
                    let relayed = Packet {
                        transmission: Transmission::Broadcast { breadth: breadth - 1, uid },
                        source: packet.source,
                        message: packet.message.clone(),
                    };
                    let targets = self.membership.table.iter().map(|n| n.peer.addr);
                    self.out.relay_to_all(sink, &relayed, targets, &[from, packet.source.addr]);
                }
            }
        }
        let direct = from == packet.source.addr;
        let reply = self.process(now, packet, direct, sink);
        self.liveness.heard_from(from, now);
        reply
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
        let singlecast = packet.transmission == Transmission::Singlecast;
        let movable = self.store.is_empty() && self.replication.fetches.is_empty();
        let accepting = !matches!(self.membership.lifecycle, Lifecycle::Leaving | Lifecycle::Left);
        let (mut ctx, store, membership, liveness, replication, windows, _) =
            parts!(self, now, sink);
        let is_member = ctx.config.role == Role::Member;
        let me = ctx.out.me();
        match packet.message {
            Message::Join { want, shard } => {
                membership.on_join_request(&mut ctx, liveness, source, want, shard, direct);
            }
            Message::Peers { peers } => {
                membership.on_peers(&mut ctx, liveness, source, &peers, direct, movable);
            }
            Message::AddMe => {
                if is_member && source.member {
                    let outcome = membership.learn(&ctx, liveness, from, direct);
                    log::trace!("{}: ADDME from {from} direct {direct}: {outcome:?}", me.addr);
                }
            }
            Message::Ping { nonce } => {
                ctx.send(source.addr, &Message::Pong { nonce });
                if is_member && source.member {
                    membership.learn(&ctx, liveness, from, direct);
                }
            }
            Message::Pong { nonce } => {
                if !liveness.is_probe_answer(nonce) {
                    return Some(Reply::Pong { from, nonce });
                }
            }
            Message::FileFrag { mode, hash, data } => {
                if !hash.verifies(data.0) {
                    ctx.out.drop(DropReason::BadHash);
                    return None;
                }
                let view = View { config: ctx.config, table: &membership.table, me, accepting };
                let stored = match mode {
                    FragMode::Store => {
                        replication.on_store_request(&mut ctx, store, &view, source, hash, data.0)
                    }
                    FragMode::Answer => {
                        match replication.on_fetched(&mut ctx, store, &view, hash, data.0) {
                            Ok(stored) => stored,
                            Err(()) => return Some(Reply::Fragment { from, hash, data: data.0 }),
                        }
                    }
                };
                if let Some(hash) = stored {
                    self.announce(now, hash, source.addr, sink);
                }
            }
            Message::FileGet { hash } => {
                let view = View { config: ctx.config, table: &membership.table, me, accepting };
                replication.serve(&mut ctx, store, &view, source.addr, hash);
            }
            Message::Find { shard, nonce } => {
                membership.on_find(&mut ctx, source, shard, nonce, singlecast);
            }
            Message::NewFile { hash } => {
                let view = View { config: ctx.config, table: &membership.table, me, accepting };
                replication.on_newfile(&mut ctx, store, &view, from, hash, singlecast);
            }
            Message::Stored { hash, outcome, holders } => {
                let view = View { config: ctx.config, table: &membership.table, me, accepting };
                if replication.on_stored(&mut ctx, store, &view, windows, source.addr, &hash) {
                    return None;
                }
                if direct {
                    for peer in holders.iter().filter(|p| p.shard() == hash.shard()) {
                        membership.learn(&ctx, liveness, *peer, true);
                    }
                }
                return Some(Reply::Stored { from, hash, outcome, holders });
            }
            Message::NotFound { hash, holders } => {
                // The suggested holders come straight from a node that
                // knows the shard: worth knowing.
                if direct {
                    for peer in holders.iter().filter(|p| p.shard() == hash.shard()) {
                        membership.learn(&ctx, liveness, *peer, true);
                    }
                }
                let view = View { config: ctx.config, table: &membership.table, me, accepting };
                if replication.on_notfound(&mut ctx, &view, source.addr, &hash) {
                    return None;
                }
                return Some(Reply::NotFound { from, hash, holders });
            }
            Message::Holdings { hashes } => {
                if is_member && source.member && source.id.shard() == me.shard() {
                    let view = View { config: ctx.config, table: &membership.table, me, accepting };
                    replication.on_holdings(&mut ctx, store, &view, from, &hashes);
                }
            }
            Message::Leave => {
                membership.remove(me, from);
                replication.peer_gone(source.addr);
            }
            Message::Dead { peer } => {
                if peer.addr == me.addr || peer.id == me.id {
                    // We are alive: say so to everyone we know.
                    log::info!("{}: told of our own death; announcing we are alive", me.addr);
                    if is_member {
                        for to in membership.table.iter().map(|n| n.peer.addr) {
                            ctx.send(to, &Message::AddMe);
                        }
                    }
                } else {
                    self.forget_dead(now, peer);
                }
            }
            Message::StatsRequest { nonce, about } => {
                let stats = NodeStats {
                    held: store.len() as u32,
                    capacity: store.capacity() as u32,
                    neighbors: membership.table.len() as u16,
                    joined: membership.lifecycle.is_joined(),
                    knows: about.is_some_and(|a| membership.table.contains_addr(a)),
                    counters: ctx.out.counters.clone(),
                };
                ctx.send(source.addr, &Message::Stats { nonce, stats });
            }
            Message::Stats { nonce, stats } => return Some(Reply::Stats { from, nonce, stats }),
        }
        None
    }
}
