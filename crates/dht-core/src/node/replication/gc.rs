//! Extra copies: a member that holds a fragment outside its shard's top `R`
//! (after restarts, churn, a mate back from a partition) drops it once the
//! top `R` all hold it.
//!
//! Every maintenance round the collector looks at a few more fragments of
//! the store. A fragment this node should not hold, whose `R` holders it
//! knows, becomes a *candidate*: each holder is offered it (a NEWFILE),
//! and answers STORED once it holds it (at once if it already does). A
//! candidate whose holders all said so, and that has been extra for
//! [`EXTRA_GRACE`] (so that a short change of view does not cost a copy),
//! is removed from the store and counted (`extra_copies_dropped`). A
//! candidate that becomes this node's to hold again, or whose holders do
//! not all answer within [`GIVE_UP`], is forgotten.

use heapless::Vec;

use super::View;
use crate::fragment::FragmentHash;
use crate::holders::{Holders, MAX_COPIES};
use crate::id::PeerAddr;
use crate::node::{Ctx, Transmit};
use crate::store::FragmentStore;
use crate::time::{Duration, Instant};
use crate::wire::Message;

// `Candidate::acked` has a bit per holder.
const _: () = assert!(MAX_COPIES <= 16);

/// How long a copy must have been extra before it is dropped.
pub(crate) const EXTRA_GRACE: Duration = Duration::from_secs(60);
/// How long a candidate waits for its holders to answer.
const GIVE_UP: Duration = Duration::from_secs(300);
/// Candidates followed at once.
const CANDIDATES: usize = 8;
/// Store entries looked at per round.
const SCAN: usize = 32;

/// A fragment held outside its top R, and which of its holders said they
/// hold it.
#[derive(Clone, Debug)]
struct Candidate {
    hash: FragmentHash,
    holders: Vec<PeerAddr, MAX_COPIES>,
    /// Bit `i`: `holders[i]` holds it (up to `MAX_COPIES` = 16 holders).
    acked: u16,
    /// When it was first found extra.
    since: Instant,
}

/// The collector of extra copies.
#[derive(Clone, Debug)]
pub(crate) struct Collector {
    cursor: usize,
    candidates: Vec<Candidate, CANDIDATES>,
}

impl Collector {
    pub(crate) const fn new() -> Self {
        Collector { cursor: 0, candidates: Vec::new() }
    }

    /// One round: drops the candidates that are due, forgets the stale
    /// ones, asks again those not all answered, and finds new ones.
    pub(crate) fn round<S: FragmentStore, const N: usize>(
        &mut self,
        ctx: &mut Ctx<'_, impl Transmit>,
        store: &mut S,
        view: &View<'_, N>,
    ) {
        if view.config.copies().is_none() {
            // Under whole-shard replication nothing is extra.
            return;
        }
        // A full store's copies are not extra for being full: they count
        // as if it had room (else it would drop them, have room, fetch
        // again, and so on).
        let view = &View { full: false, ..*view };
        let now = ctx.now;
        let mut i = 0;
        while let Some(c) = self.candidates.get(i) {
            let all = c.acked.count_ones() as usize == c.holders.len();
            let mine = view.should_hold(&c.hash, store.copies(&c.hash)) || !store.contains(&c.hash);
            if mine || now >= c.since + GIVE_UP {
                self.candidates.swap_remove(i);
                continue;
            }
            if all && now >= c.since + EXTRA_GRACE {
                let hash = c.hash;
                self.candidates.swap_remove(i);
                if let Ok(true) = store.remove(&hash) {
                    log::debug!("{}: dropped an extra copy of {hash:?}", view.me.addr);
                    let counters = &mut ctx.out.counters;
                    counters.extra_copies_dropped = counters.extra_copies_dropped.saturating_add(1);
                }
                continue;
            }
            for (k, to) in c.holders.iter().enumerate() {
                if c.acked & (1 << k) == 0 {
                    let copies = store.copies(&c.hash);
                    ctx.send(*to, &Message::NewFile { hash: c.hash, urgent: false, copies });
                }
            }
            i += 1;
        }
        let held = store.len();
        for _ in 0..SCAN.min(held) {
            if self.candidates.is_full() {
                break;
            }
            if self.cursor >= held {
                self.cursor = 0;
            }
            let Some(hash) = store.hash_at(self.cursor) else { break };
            self.cursor += 1;
            let extra = store.copies(&hash);
            if view.should_hold(&hash, extra) || self.candidates.iter().any(|c| c.hash == hash) {
                continue;
            }
            let copies = view.copies_with(extra).unwrap_or(MAX_COPIES);
            // Held in a shard that keeps it: its top there. Held outside
            // (the node moved to an empty shard): its own shard's share.
            let shard = if view.covers(&hash, extra) { view.me.shard() } else { hash.shard() };
            let top = Holders::<MAX_COPIES>::of_shard_in(&hash, shard, view.table, None, copies);
            if top.len() < copies {
                // Not every holder is known: keep the copy.
                continue;
            }
            let holders: Vec<PeerAddr, MAX_COPIES> = top.iter().map(|p| p.addr).collect();
            for to in holders.iter() {
                ctx.send(*to, &Message::NewFile { hash, urgent: false, copies: extra });
            }
            let _ = self.candidates.push(Candidate { hash, holders, acked: 0, since: now });
        }
    }

    /// STORED from `from` for `hash`: a holder of a candidate answered.
    /// Returns whether it was one.
    pub(crate) fn answered(&mut self, from: PeerAddr, hash: &FragmentHash, held: bool) -> bool {
        let Some(c) = self.candidates.iter_mut().find(|c| c.hash == *hash) else { return false };
        let Some(k) = c.holders.iter().position(|h| *h == from) else { return false };
        if held {
            c.acked |= 1 << k;
        }
        true
    }

    /// Forgets everything (the node left).
    pub(crate) fn clear(&mut self) {
        self.candidates.clear();
    }
}
