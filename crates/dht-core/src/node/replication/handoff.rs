//! The hand-off of a graceful leave.
//!
//! A member leaving first hands off, to the member that will replace it in
//! each fragment's top `R`, every fragment whose copies would fall below
//! `R` without it: a store request acknowledged by STORED, tried up to
//! three times, at most [`HANDOFFS`] at once and no more to one peer than
//! the receive window it advertised. Each acknowledgement starts the next
//! store request at once; the whole hand-off is bounded by
//! `leave_timeout`. When it is done (or out of time) the node tells its
//! neighbors it leaves.

use super::{send_stored, View};
use crate::flow::AdvertisedWindows;
use crate::fragment::FragmentHash;
use crate::holders::MAX_COPIES;
use crate::id::{PeerAddr, PeerInfo};
use crate::node::{Ctx, Transmit};
use crate::requests::{Request, RequestTable};
use crate::store::FragmentStore;
use crate::time::Instant;
use crate::wire::FragMode;

/// Hand-offs in flight at once.
const HANDOFFS: usize = 4;
/// Store requests per fragment before it is given up.
const HANDOFF_TRIES: u8 = 3;

/// A leave's hand-off, if one runs.
pub(crate) struct Handoff {
    /// The next store entry to look at.
    cursor: usize,
    in_flight: RequestTable<FragmentHash, HANDOFFS>,
    /// When the leave ends, done or not; `None` while not leaving.
    deadline: Option<Instant>,
    /// Fragments handed off (acknowledged).
    pub(crate) handed_off: u32,
    /// Set when the hand-off ended (`true`: complete, `false`: out of
    /// time); the node then says it leaves.
    finished: Option<bool>,
}

impl Handoff {
    pub(crate) const fn new() -> Self {
        Handoff {
            cursor: 0,
            in_flight: RequestTable::new(),
            deadline: None,
            handed_off: 0,
            finished: None,
        }
    }

    pub(crate) fn start(&mut self, deadline: Instant) {
        *self = Handoff::new();
        self.deadline = Some(deadline);
    }

    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        let deadline = self.deadline?;
        Some(self.in_flight.poll_timeout(false).map_or(deadline, |d| d.min(deadline)))
    }

    /// Whether the hand-off just ended (reported once), and whether it
    /// completed in time.
    pub(crate) fn take_finished(&mut self) -> Option<bool> {
        let complete = self.finished.take()?;
        self.deadline = None;
        Some(complete)
    }

    /// Drives the hand-off: retries, new store requests, the end.
    pub(crate) fn run<S: FragmentStore, const N: usize>(
        &mut self,
        ctx: &mut Ctx<'_, impl Transmit>,
        store: &mut S,
        view: &View<'_, N>,
        windows: &AdvertisedWindows<16>,
    ) {
        let Some(deadline) = self.deadline else { return };
        if self.finished.is_some() {
            return;
        }
        if ctx.now >= deadline {
            self.finished = Some(false);
            return;
        }
        while let Some(i) = self.in_flight.next_overdue(ctx.now) {
            let Some(request) = self.in_flight.get_mut(i) else { break };
            if request.attempts >= HANDOFF_TRIES {
                self.in_flight.remove(i);
                continue;
            }
            let (hash, to) = (request.item, request.in_flight_to());
            match to {
                Some(to) => {
                    request.sent(to, ctx.now, ctx.config.fetch_timeout);
                    send_stored(ctx, store, to, hash, FragMode::Store);
                }
                None => {
                    self.in_flight.remove(i);
                }
            }
        }
        while !self.in_flight.is_full() && self.cursor < store.len() {
            let Some(hash) = store.hash_at(self.cursor) else { break };
            let to = replacement_for(view, &hash);
            if let Some(to) = to {
                // A peer that advertised a small receive window gets no
                // more than that at a time: wait for its answers.
                let limit = windows.get(to.addr).map_or(usize::MAX, usize::from);
                let to_it = self.in_flight.iter().filter(|r| r.in_flight_to() == Some(to.addr));
                if to_it.count() >= limit {
                    break;
                }
            }
            self.cursor += 1;
            if let Some(to) = to {
                if send_stored(ctx, store, to.addr, hash, FragMode::Store) {
                    let mut request = Request::new(hash, ctx.now);
                    request.sent(to.addr, ctx.now, ctx.config.fetch_timeout);
                    let _ = self.in_flight.push(request);
                }
            }
        }
        if self.in_flight.is_empty() && self.cursor >= store.len() {
            self.finished = Some(true);
        }
    }

    /// STORED from `from` for `hash`: if it answered a hand-off, that one is
    /// done. Returns whether it did.
    pub(crate) fn answered(&mut self, from: PeerAddr, hash: &FragmentHash) -> bool {
        if self.deadline.is_none() {
            return false;
        }
        let position =
            self.in_flight.position(|r| r.item == *hash && r.in_flight_to() == Some(from));
        match position {
            Some(i) => {
                self.in_flight.remove(i);
                self.handed_off = self.handed_off.saturating_add(1);
                true
            }
            None => false,
        }
    }

    /// `addr` left or died: hand-offs to it will not be answered.
    pub(crate) fn peer_gone(&mut self, addr: PeerAddr) {
        self.in_flight.retain(|r| r.in_flight_to() != Some(addr));
    }
}

/// The member that takes this node's place among the top R holders of
/// `hash`, if this node is one of them.
fn replacement_for<const N: usize>(view: &View<'_, N>, hash: &FragmentHash) -> Option<PeerInfo> {
    let copies = view.config.copies()?.clamp(1, MAX_COPIES);
    let with_me = view.top(hash, copies, true);
    if !with_me.contains(view.me.id) {
        return None;
    }
    let without_me = view.top(hash, copies, false);
    let replacement = without_me.iter().find(|p| !with_me.contains_addr(p.addr));
    replacement
}
