//! The hand-off of a graceful leave.
//!
//! A member leaving first offers, to the member that will replace it in
//! each fragment's top `R`, every fragment whose copies would fall below
//! `R` without it: an urgent NEWFILE, which the replacement fetches at once
//! and acknowledges with STORED. At most [`HANDOFFS`] are in flight, and no
//! more to one peer than the receive window it advertised; each
//! acknowledgement starts the next offer at once, and a refusal or a
//! silence sends the fragment to the next member by rank, up to
//! [`HANDOFF_TRIES`] times. The whole hand-off is bounded by
//! `leave_timeout`. When it is done (or out of time) the node tells its
//! neighbors it leaves.

use super::View;
use crate::config::Config;
use crate::flow::AdvertisedWindows;
use crate::fragment::FragmentHash;
use crate::holders::{Holders, MAX_COPIES};
use crate::id::{PeerAddr, PeerInfo};
use crate::node::{Ctx, Transmit};
use crate::requests::{Request, RequestTable};
use crate::store::FragmentStore;
use crate::time::{Duration, Instant};
use crate::wire::Message;

/// Hand-offs in flight at once.
const HANDOFFS: usize = 8;
/// Offers per fragment before it is given up.
const HANDOFF_TRIES: u8 = 3;
/// Recipients of a hand-off remembered for the log.
pub(crate) const RECIPIENTS: usize = 8;

/// A leave's hand-off, if one runs.
#[derive(Clone)]
pub(crate) struct Handoff {
    /// The next store entry to look at.
    cursor: usize,
    in_flight: RequestTable<FragmentHash, HANDOFFS>,
    /// When the leave ends, done or not; `None` while not leaving.
    deadline: Option<Instant>,
    /// Fragments handed off (acknowledged).
    pub(crate) handed_off: u32,
    /// To whom, with how many each (the first [`RECIPIENTS`]).
    pub(crate) recipients: heapless::Vec<(PeerAddr, u32), RECIPIENTS>,
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
            recipients: heapless::Vec::new(),
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

    /// Drives the hand-off: retries, new offers, the end.
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
        let wait = offer_wait(ctx.config);
        while let Some(i) = self.in_flight.next_overdue(ctx.now) {
            let Some(request) = self.in_flight.get_mut(i) else { break };
            let hash = request.item;
            let copies = store.copies(&hash);
            let next = replacement_for(view, &hash, copies, request.attempts);
            match next.filter(|_| request.attempts < HANDOFF_TRIES) {
                Some(to) => {
                    request.sent(to.addr, ctx.now, wait);
                    ctx.send(to.addr, &Message::NewFile { hash, urgent: true, copies });
                }
                None => {
                    self.in_flight.remove(i);
                }
            }
        }
        while !self.in_flight.is_full() && self.cursor < store.len() {
            let Some(hash) = store.hash_at(self.cursor) else { break };
            let copies = store.copies(&hash);
            let to = replacement_for(view, &hash, copies, 0);
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
                let mut request = Request::new(hash, ctx.now);
                request.sent(to.addr, ctx.now, wait);
                if self.in_flight.push(request).is_ok() {
                    ctx.send(to.addr, &Message::NewFile { hash, urgent: true, copies });
                }
            }
        }
        if self.in_flight.is_empty() && self.cursor >= store.len() {
            self.finished = Some(true);
        }
    }

    /// STORED from `from` for `hash`: if it answered a hand-off, that one is
    /// done if the fragment is `held`, or goes to the next member by rank.
    /// Returns whether it answered one.
    pub(crate) fn answered(
        &mut self,
        now: Instant,
        from: PeerAddr,
        hash: &FragmentHash,
        held: bool,
    ) -> bool {
        if self.deadline.is_none() {
            return false;
        }
        let position =
            self.in_flight.position(|r| r.item == *hash && r.in_flight_to() == Some(from));
        let Some(i) = position else { return false };
        if held {
            self.in_flight.remove(i);
            self.handed_off = self.handed_off.saturating_add(1);
            match self.recipients.iter_mut().find(|(a, _)| *a == from) {
                Some((_, n)) => *n = n.saturating_add(1),
                None => {
                    let _ = self.recipients.push((from, 1));
                }
            }
        } else if let Some(request) = self.in_flight.get_mut(i) {
            request.extend(now);
        }
        true
    }

    /// The replacement `from` fetches `hash`: its offer is being taken.
    pub(crate) fn progress(
        &mut self,
        now: Instant,
        config: &Config,
        from: PeerAddr,
        hash: &FragmentHash,
    ) {
        let wait = offer_wait(config);
        for request in self.in_flight.iter_mut() {
            if request.item == *hash && request.in_flight_to() == Some(from) {
                request.extend(now + wait);
            }
        }
    }

    /// `addr` left or died: hand-offs to it go elsewhere.
    pub(crate) fn peer_gone(&mut self, now: Instant, addr: PeerAddr) {
        for request in self.in_flight.iter_mut().filter(|r| r.in_flight_to() == Some(addr)) {
            request.extend(now);
        }
    }
}

/// How long an offer of a hand-off waits for its replacement to fetch.
fn offer_wait(config: &Config) -> Duration {
    config.fetch_timeout.saturating_mul(2)
}

/// The member that takes this node's place among the top R holders of
/// `hash` (of copy count `extra`) (the `skip`-th in rank after the first, cyclically, for a retry),
/// if this node is one of them.
fn replacement_for<const N: usize>(
    view: &View<'_, N>,
    hash: &FragmentHash,
    extra: u8,
    skip: u8,
) -> Option<PeerInfo> {
    let copies = view.copies_with(extra)?;
    let with_me = view.top(hash, copies, true);
    if !with_me.contains(view.me.id) {
        return None;
    }
    let wider_count = copies + usize::from(HANDOFF_TRIES);
    let wider: Holders<{ MAX_COPIES + HANDOFF_TRIES as usize }> =
        Holders::of_shard_in(hash, view.me.shard(), view.table, None, wider_count);
    let outside = |p: &PeerInfo| !with_me.contains_addr(p.addr);
    let count = wider.iter().filter(outside).count();
    if count == 0 {
        return None;
    }
    let chosen = wider.iter().filter(outside).nth(usize::from(skip) % count);
    chosen
}
