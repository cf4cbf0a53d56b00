//! Repair after membership changes: keeping R copies.
//!
//! When a mate joins or dies, the top `R` holders change for some
//! fragments. Each holder then walks its store in batches ([`REPAIR_BATCH`]
//! fragments every [`REPAIR_TICK`], in fixed memory) and, for every
//! fragment whose top `R` the change touched, announces it to the members
//! of the new top `R`; the one that lacks it fetches it. So a dead holder's
//! fragments are copied to the next member in rank, and a new member
//! receives the fragments it now ranks for. Under whole-shard replication
//! a new mate is told of every fragment.

use heapless::Vec;

use super::{Announcements, View};
use crate::fragment::FragmentHash;
use crate::holders::{rendezvous_score, MAX_COPIES};
use crate::id::{PeerAddr, PeerInfo};
use crate::node::{Ctx, Transmit};
use crate::store::FragmentStore;
use crate::time::{Duration, Instant};
use crate::wire::Message;

/// Store entries examined per repair tick.
const REPAIR_BATCH: usize = 32;
/// Time between repair ticks.
const REPAIR_TICK: Duration = Duration::from_millis(20);
/// Membership changes remembered by a running scan (beyond them, every
/// fragment is announced to its whole top R).
const REPAIR_CHANGES: usize = 8;

/// A scan of the store after membership changes, if one runs.
#[derive(Clone)]
pub(crate) struct RepairScan {
    cursor: usize,
    changes: Vec<(PeerInfo, bool), REPAIR_CHANGES>,
    overflow: bool,
    /// An announcement was lost while this scan ran: another scan of every
    /// fragment follows it.
    again: bool,
    /// When the next batch runs; `None` while no scan runs.
    next: Option<Instant>,
}

impl RepairScan {
    pub(crate) const fn new() -> Self {
        RepairScan { cursor: 0, changes: Vec::new(), overflow: false, again: false, next: None }
    }

    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        self.next
    }

    /// A member of this node's shard joined (`added`) or left: the scan
    /// (re)starts from the first entry.
    pub(crate) fn changed(&mut self, now: Instant, peer: PeerInfo, added: bool) {
        if self.changes.push((peer, added)).is_err() {
            self.overflow = true;
        }
        self.restart(now);
    }

    /// An announcement could not be remembered: every fragment is
    /// announced again, by a scan that starts now or after the one running
    /// (which may have passed it).
    pub(crate) fn lost(&mut self, now: Instant) {
        if self.next.is_some() {
            self.again = true;
        } else {
            self.overflowed(now);
        }
    }

    /// Changes (or announcements) were lost: the scan announces every
    /// fragment.
    pub(crate) fn overflowed(&mut self, now: Instant) {
        self.overflow = true;
        self.restart(now);
    }

    fn restart(&mut self, now: Instant) {
        // Entries already passed must be looked at again for this change.
        self.cursor = 0;
        self.next = Some(self.next.map_or(now, |next| next.min(now + REPAIR_TICK)));
    }

    /// Runs one batch of the scan if it is due.
    pub(crate) fn run<S: FragmentStore, const N: usize, const F: usize>(
        &mut self,
        ctx: &mut Ctx<'_, impl Transmit>,
        store: &S,
        view: &View<'_, N>,
        announcements: &mut Announcements<F>,
    ) {
        if self.next.is_none_or(|next| next > ctx.now) {
            return;
        }
        let mut end = self.cursor.saturating_add(REPAIR_BATCH).min(store.len());
        for i in self.cursor..end {
            let Some(hash) = store.hash_at(i) else { break };
            let copies = store.copies(&hash);
            let targets = self.targets(view, &hash, copies);
            if announcements.room() < targets.len() {
                // Paced by the answers: go on when announcements have room.
                end = i;
                break;
            }
            for to in targets {
                ctx.send(to, &Message::NewFile { hash, urgent: false, copies });
                announcements.expect_ack(ctx.now, hash, to);
            }
        }
        if end < store.len() {
            self.cursor = end;
            self.next = Some(ctx.now + REPAIR_TICK);
        } else if self.again {
            *self = RepairScan::new();
            self.overflowed(ctx.now + REPAIR_TICK);
        } else {
            *self = RepairScan::new();
        }
    }

    /// The members that should now be told that this node has `hash`.
    fn targets<const N: usize>(
        &self,
        view: &View<'_, N>,
        hash: &FragmentHash,
        extra: u8,
    ) -> Vec<PeerAddr, MAX_COPIES> {
        let mut targets: Vec<PeerAddr, MAX_COPIES> = Vec::new();
        let Some(copies) = view.copies_with(extra) else {
            for (peer, added) in self.changes.iter() {
                if *added && peer.shard() == hash.shard() {
                    let _ = targets.push(peer.addr);
                }
            }
            return targets;
        };
        let top = view.top(hash, copies, true);
        let threshold = top.threshold(copies);
        let lost_a_holder = self
            .changes
            .iter()
            .any(|(p, added)| !*added && rendezvous_score(hash, p.id) >= threshold);
        for peer in top.iter().filter(|p| p.id != view.me.id) {
            let is_new = self.changes.iter().any(|(p, added)| *added && p.addr == peer.addr);
            if self.overflow || lost_a_holder || is_new {
                let _ = targets.push(peer.addr);
            }
        }
        targets
    }
}
