//! Keeping R copies: repair after membership changes, and hand-off on leave.
//!
//! Under bounded replication a fragment belongs to the `R` members of its
//! shard with the highest rendezvous score. When a mate joins or dies, the
//! set changes for some fragments. Each holder then walks its store in
//! batches (`REPAIR_BATCH` fragments every `REPAIR_TICK`, in fixed memory)
//! and, for every fragment whose top `R` the change touched, sends NEWFILE
//! to the members of the new top `R`; the one that lacks it fetches it. So
//! a dead holder's fragments are copied to the next member in rank, and a
//! new member receives the fragments it now ranks for. Under whole-shard
//! replication a new mate is told of every fragment.
//!
//! A member leaving gracefully first hands off, to the member that will
//! replace it in each fragment's top `R`, every fragment whose copies would
//! fall below `R` without it (a store request acknowledged by STORED), then
//! sends LEAVE to its neighbors. The hand-off is bounded by `leave_timeout`.
//!
//! The periodic HOLDINGS exchange (see the maintenance round) is the slow
//! backstop for anything these miss.

use super::*;

/// Store entries examined per repair tick.
pub(super) const REPAIR_BATCH: usize = 32;
/// Time between repair ticks.
pub(super) const REPAIR_TICK: Duration = Duration::from_millis(20);
/// Membership changes remembered by a running scan.
pub(super) const REPAIR_CHANGES: usize = 8;
/// Largest replication factor the repair computes top sets for.
pub(super) const MAX_COPIES: usize = 16;
/// Hand-offs in flight at once while leaving.
const HANDOFFS: usize = 4;

/// A scan of the store after membership changes.
#[derive(Clone, Debug)]
pub(super) struct RepairScan {
    pub(super) cursor: usize,
    pub(super) changes: Vec<(PeerInfo, bool), REPAIR_CHANGES>,
    pub(super) overflow: bool,
    pub(super) next: Instant,
}

/// One fragment being handed off.
#[derive(Clone, Copy, Debug)]
pub(super) struct Handoff {
    pub(super) hash: FragmentHash,
    pub(super) to: PeerAddr,
    pub(super) deadline: Instant,
    pub(super) tries: u8,
}

/// A graceful leave in progress.
#[derive(Clone, Debug)]
pub(super) struct Leaving {
    pub(super) cursor: usize,
    pub(super) in_flight: Vec<Handoff, HANDOFFS>,
    pub(super) deadline: Instant,
}

impl<S: FragmentStore, const NEIGHBORS: usize, const DEDUP: usize, const FETCHES: usize>
    Node<S, NEIGHBORS, DEDUP, FETCHES>
{
    /// The replication factor, if bounded.
    fn copies(&self) -> Option<usize> {
        match self.config.replication {
            Replication::WholeShard => None,
            Replication::Copies(r) => Some(usize::from(r).clamp(1, MAX_COPIES)),
        }
    }

    /// The top `copies` holders of `hash` among the known members of its
    /// shard, and this node unless `without_me`, best first.
    pub(super) fn top_holders(
        &self,
        hash: &FragmentHash,
        copies: usize,
        without_me: bool,
    ) -> Vec<PeerInfo, MAX_COPIES> {
        let mut top: Vec<(u64, PeerInfo), MAX_COPIES> = Vec::new();
        let mine = (!without_me && hash.shard() == self.shard()).then_some(self.me);
        let candidates = self.neighbors.members_of(hash.shard()).map(|n| n.peer).chain(mine);
        for peer in candidates {
            let score = rendezvous_score(hash, peer.id);
            if top.len() < copies.min(MAX_COPIES) {
                let _ = top.push((score, peer));
            } else if let Some(worst) = top.iter_mut().min_by_key(|(s, _)| *s) {
                if worst.0 < score {
                    *worst = (score, peer);
                }
            }
        }
        crate::order::sort_by_key_descending(&mut top, |(s, _)| *s);
        top.iter().map(|(_, p)| *p).collect()
    }

    /// A member of this node's shard joined (`added`) or left: holders
    /// re-examine their store.
    pub(super) fn membership_changed(&mut self, now: Instant, peer: PeerInfo, added: bool) {
        if self.config.role != Role::Member || peer.shard() != self.shard() || self.store.is_empty()
        {
            return;
        }
        let scan = self.repair.get_or_insert(RepairScan {
            cursor: 0,
            changes: Vec::new(),
            overflow: false,
            next: now,
        });
        // Entries already passed must be looked at again for this change.
        scan.cursor = 0;
        scan.next = scan.next.min(now + REPAIR_TICK);
        if scan.changes.push((peer, added)).is_err() {
            scan.overflow = true;
        }
    }

    /// When the repair scan next runs.
    pub(super) fn repair_deadline(&self) -> Option<Instant> {
        self.repair.as_ref().map(|r| r.next)
    }

    /// Runs one batch of the repair scan.
    pub(super) fn repair_timeout(&mut self, now: Instant, sink: &mut impl Transmit) {
        let Some(scan) = self.repair.as_ref() else { return };
        if scan.next > now {
            return;
        }
        let (start, changes, overflow) = (scan.cursor, scan.changes.clone(), scan.overflow);
        let end = start.saturating_add(REPAIR_BATCH).min(self.store.len());
        for i in start..end {
            let Some(hash) = self.store.hash_at(i) else { break };
            self.repair_fragment(now, &hash, &changes, overflow, sink);
        }
        match self.repair.as_mut() {
            Some(scan) if end < self.store.len() => {
                scan.cursor = end;
                scan.next = now + REPAIR_TICK;
            }
            _ => self.repair = None,
        }
    }

    /// Tells the members that should now hold `hash` that we have it.
    fn repair_fragment(
        &mut self,
        now: Instant,
        hash: &FragmentHash,
        changes: &[(PeerInfo, bool)],
        overflow: bool,
        sink: &mut impl Transmit,
    ) {
        let mut targets: Vec<PeerAddr, MAX_COPIES> = Vec::new();
        match self.copies() {
            None => {
                for (peer, added) in changes {
                    if *added && peer.shard() == hash.shard() {
                        let _ = targets.push(peer.addr);
                    }
                }
            }
            Some(copies) => {
                let top = self.top_holders(hash, copies, false);
                let threshold = if top.len() < copies {
                    0
                } else {
                    top.last().map(|p| rendezvous_score(hash, p.id)).unwrap_or(0)
                };
                let lost_a_holder = changes
                    .iter()
                    .any(|(p, added)| !*added && rendezvous_score(hash, p.id) >= threshold);
                for peer in top.iter().filter(|p| p.id != self.me.id) {
                    let is_new = changes.iter().any(|(p, added)| *added && p.addr == peer.addr);
                    if overflow || lost_a_holder || is_new {
                        let _ = targets.push(peer.addr);
                    }
                }
            }
        }
        for to in targets {
            self.send(to, Transmission::Singlecast, &Message::NewFile { hash: *hash }, sink);
            self.expect_ack(now, *hash, to);
        }
    }

    // ----- graceful leave ------------------------------------------------

    /// Starts leaving: hand off what would fall below R copies, then LEAVE.
    pub(super) fn start_leave(&mut self, now: Instant, sink: &mut impl Transmit) {
        if self.left || self.leaving.is_some() {
            return;
        }
        let hands_off =
            self.config.role == Role::Member && self.copies().is_some() && !self.store.is_empty();
        if hands_off {
            let deadline = now + self.config.leave_timeout;
            self.leaving = Some(Leaving { cursor: 0, in_flight: Vec::new(), deadline });
            self.leave_timeout(now, sink);
        } else {
            self.finish_leave(sink);
        }
    }

    /// When the leave next needs attention.
    pub(super) fn leave_deadline(&self) -> Option<Instant> {
        let leaving = self.leaving.as_ref()?;
        let flights = leaving.in_flight.iter().map(|h| h.deadline).min();
        Some(flights.map_or(leaving.deadline, |f| f.min(leaving.deadline)))
    }

    /// Drives the hand-off: retries, new hand-offs, the end.
    pub(super) fn leave_timeout(&mut self, now: Instant, sink: &mut impl Transmit) {
        let Some(mut leaving) = self.leaving.take() else { return };
        if now >= leaving.deadline {
            log::warn!("{}: hand-off unfinished at the leave deadline", self.me.addr);
            self.finish_leave(sink);
            return;
        }
        // Retry or give up overdue hand-offs.
        let mut i = 0;
        while let Some(h) = leaving.in_flight.get(i).copied() {
            if h.deadline > now {
                i += 1;
                continue;
            }
            if h.tries >= 3 {
                leaving.in_flight.swap_remove(i);
                continue;
            }
            if let Some(entry) = leaving.in_flight.get_mut(i) {
                entry.tries += 1;
                entry.deadline = now + self.config.fetch_timeout;
            }
            self.push_copy(h.to, h.hash, sink);
            i += 1;
        }
        // Start new ones.
        while !leaving.in_flight.is_full() && leaving.cursor < self.store.len() {
            let Some(hash) = self.store.hash_at(leaving.cursor) else { break };
            let to = self.replacement_for(&hash);
            if let Some(to) = to {
                // A peer that advertised a small receive window gets no
                // more than that at a time: wait for its answers.
                let limit = self.advertised_window(to.addr).map_or(usize::MAX, usize::from);
                if leaving.in_flight.iter().filter(|h| h.to == to.addr).count() >= limit {
                    break;
                }
            }
            leaving.cursor += 1;
            if let Some(to) = to {
                if self.push_copy(to.addr, hash, sink) {
                    let deadline = now + self.config.fetch_timeout;
                    let _ =
                        leaving.in_flight.push(Handoff { hash, to: to.addr, deadline, tries: 1 });
                }
            }
        }
        if leaving.in_flight.is_empty() && leaving.cursor >= self.store.len() {
            self.finish_leave(sink);
        } else {
            self.leaving = Some(leaving);
        }
    }

    /// The member that takes this node's place among the top R holders of
    /// `hash`, if this node is one of them.
    fn replacement_for(&self, hash: &FragmentHash) -> Option<PeerInfo> {
        let copies = self.copies()?;
        let with_me = self.top_holders(hash, copies, false);
        if !with_me.iter().any(|p| p.id == self.me.id) {
            return None;
        }
        let without_me = self.top_holders(hash, copies, true);
        without_me.iter().find(|p| !with_me.iter().any(|q| q.addr == p.addr)).copied()
    }

    /// Sends our copy of `hash` to `to` as a store request.
    fn push_copy(&mut self, to: PeerAddr, hash: FragmentHash, sink: &mut impl Transmit) -> bool {
        self.send_stored(to, hash, FragMode::Store, sink)
    }

    /// A STORED answered a hand-off: it is done.
    pub(super) fn handoff_answered(&mut self, from: PeerAddr, hash: &FragmentHash) -> bool {
        let Some(leaving) = self.leaving.as_mut() else { return false };
        let Some(i) = leaving.in_flight.iter().position(|h| h.hash == *hash && h.to == from) else {
            return false;
        };
        leaving.in_flight.swap_remove(i);
        true
    }

    /// `addr` left or died: hand-offs to it will not be answered.
    pub(super) fn peer_gone(&mut self, addr: PeerAddr) {
        if let Some(leaving) = self.leaving.as_mut() {
            leaving.in_flight.retain(|h| h.to != addr);
        }
    }

    /// Tells every neighbor that this node leaves, and marks it gone.
    pub(super) fn finish_leave(&mut self, sink: &mut impl Transmit) {
        self.leaving = None;
        for to in self.neighbor_addrs() {
            self.send(to, Transmission::Singlecast, &Message::Leave, sink);
        }
        self.left = true;
        self.push_event(Event::Left);
    }
}
