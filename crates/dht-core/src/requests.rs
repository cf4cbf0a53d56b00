//! One request table for everything a node asks of its peers and waits for:
//! an upload's store requests, a download's fragment requests, replication
//! fetches, hand-offs on leave, announcements awaiting acknowledgement.
//!
//! A [`Request`] carries the caller's item (a fragment hash, an item
//! number, ...) and where it stands: *waiting* to be sent from some instant
//! on, or *in flight* to a peer until a deadline. It counts its attempts
//! and remembers when it was first sent, so callers decide when to give
//! up without parallel arrays or sentinel instants.
//!
//! [`RequestTable::poll_timeout`] reports only instants at which the caller
//! can act: the deadline of every request in flight, and the ready instant
//! of waiting requests only while the caller has room to send one (its
//! window is not full). A caller that visits a ready request and cannot
//! send it (no peer free) moves its ready instant forward
//! ([`Request::wait_until`]); so after the caller's `handle_timeout(now)`
//! no reported instant is at or before `now`.
//!
//! ```
//! use dht_core::requests::{Request, RequestTable};
//! use dht_core::time::{Duration, Instant};
//! use dht_core::id::PeerAddr;
//! let peer = PeerAddr::v4([127, 0, 0, 1], 9000);
//! let mut table = RequestTable::<u16, 4>::new();
//! let now = Instant::from_millis(1);
//! table.push(Request::new(7, now)).unwrap();
//! assert_eq!(table.poll_timeout(true), Some(now));
//! assert_eq!(table.poll_timeout(false), None); // no room: nothing to do
//! let i = table.next_ready(now).unwrap();
//! table.get_mut(i).unwrap().sent(peer, now, Duration::from_millis(50));
//! assert_eq!(table.poll_timeout(true), Some(now + Duration::from_millis(50)));
//! ```

use crate::id::PeerAddr;
use crate::time::{Duration, Instant};

/// Where a request stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Not in flight; may be sent from `ready_at` on.
    Waiting {
        /// The earliest instant it may be sent.
        ready_at: Instant,
    },
    /// Not in flight because no peer had room in its window: may be sent
    /// from `ready_at` on, or as soon as a window frees
    /// ([`RequestTable::unblock`]).
    Blocked {
        /// The latest instant it is tried again.
        ready_at: Instant,
    },
    /// Sent to `to` at `sent_at`; counts as lost if unanswered at `deadline`.
    InFlight {
        /// The peer asked.
        to: PeerAddr,
        /// When this attempt was sent.
        sent_at: Instant,
        /// When it counts as lost.
        deadline: Instant,
    },
}

/// One request: the caller's item and where it stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Request<T> {
    /// What is asked for (a hash, an item number, with whatever the caller
    /// keeps beside it).
    pub item: T,
    /// Waiting or in flight.
    pub phase: Phase,
    /// Attempts sent so far.
    pub attempts: u8,
    /// When the first attempt was sent.
    pub first_sent: Option<Instant>,
}

impl<T> Request<T> {
    /// A request for `item`, waiting until `ready_at`.
    pub const fn new(item: T, ready_at: Instant) -> Self {
        Request { item, phase: Phase::Waiting { ready_at }, attempts: 0, first_sent: None }
    }

    /// Records an attempt sent to `to` at `now`, lost after `timeout`.
    pub fn sent(&mut self, to: PeerAddr, now: Instant, timeout: Duration) {
        self.phase = Phase::InFlight { to, sent_at: now, deadline: now + timeout };
        self.attempts = self.attempts.saturating_add(1);
        self.first_sent.get_or_insert(now);
    }

    /// The request in flight made progress (part of its answer came):
    /// it now counts as lost only at `deadline`. No effect while waiting.
    pub fn extend(&mut self, deadline: Instant) {
        if let Phase::InFlight { deadline: d, .. } = &mut self.phase {
            *d = deadline;
        }
    }

    /// Puts the request back to waiting, to be sent again from `ready_at`
    /// on (after a loss or a refusal, or because no peer could take it).
    pub fn wait_until(&mut self, ready_at: Instant) {
        self.phase = Phase::Waiting { ready_at };
    }

    /// No peer could take the request now: it waits for a window to free
    /// ([`RequestTable::unblock`]), or until `ready_at` at the latest.
    pub fn block_until(&mut self, ready_at: Instant) {
        self.phase = Phase::Blocked { ready_at };
    }

    /// Counts an attempt that could not even be sent and waits again.
    pub fn failed_attempt(&mut self, now: Instant, ready_at: Instant) {
        self.attempts = self.attempts.saturating_add(1);
        self.first_sent.get_or_insert(now);
        self.wait_until(ready_at);
    }

    /// The peer the request is in flight to.
    pub fn in_flight_to(&self) -> Option<PeerAddr> {
        match self.phase {
            Phase::InFlight { to, .. } => Some(to),
            Phase::Waiting { .. } | Phase::Blocked { .. } => None,
        }
    }

    /// When the attempt in flight was sent.
    pub fn sent_at(&self) -> Option<Instant> {
        match self.phase {
            Phase::InFlight { sent_at, .. } => Some(sent_at),
            Phase::Waiting { .. } | Phase::Blocked { .. } => None,
        }
    }

    /// Whether it is in flight.
    pub fn is_in_flight(&self) -> bool {
        matches!(self.phase, Phase::InFlight { .. })
    }

    /// Whether it is waiting and may be sent at `now`.
    pub fn is_ready(&self, now: Instant) -> bool {
        matches!(self.phase, Phase::Waiting { ready_at } | Phase::Blocked { ready_at } if ready_at <= now)
    }

    /// Whether it is in flight past its deadline at `now`.
    pub fn is_overdue(&self, now: Instant) -> bool {
        matches!(self.phase, Phase::InFlight { deadline, .. } if deadline <= now)
    }

    /// When the request needs its owner's attention: its deadline in
    /// flight; its ready instant while waiting, if the owner has `room`.
    pub fn wake_at(&self, room: bool) -> Option<Instant> {
        match self.phase {
            Phase::InFlight { deadline, .. } => Some(deadline),
            Phase::Waiting { ready_at } | Phase::Blocked { ready_at } => room.then_some(ready_at),
        }
    }
}

/// Up to `N` requests.
#[derive(Clone, Debug)]
pub struct RequestTable<T, const N: usize> {
    entries: heapless::Vec<Request<T>, N>,
}

impl<T, const N: usize> RequestTable<T, N> {
    /// An empty table.
    pub const fn new() -> Self {
        RequestTable { entries: heapless::Vec::new() }
    }

    /// Adds a request; gives it back if the table is full.
    pub fn push(&mut self, request: Request<T>) -> Result<(), Request<T>> {
        self.entries.push(request)
    }

    /// Requests held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Whether the table is full.
    pub fn is_full(&self) -> bool {
        self.entries.is_full()
    }

    /// Requests in flight.
    pub fn in_flight(&self) -> usize {
        self.entries.iter().filter(|r| r.is_in_flight()).count()
    }

    /// The requests, in table order.
    pub fn iter(&self) -> impl Iterator<Item = &Request<T>> {
        self.entries.iter()
    }

    /// The requests, mutably.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut Request<T>> {
        self.entries.iter_mut()
    }

    /// The `i`-th request.
    pub fn get(&self, i: usize) -> Option<&Request<T>> {
        self.entries.get(i)
    }

    /// The `i`-th request, mutably.
    pub fn get_mut(&mut self, i: usize) -> Option<&mut Request<T>> {
        self.entries.get_mut(i)
    }

    /// The position of the first request whose item matches.
    pub fn position(&self, matches: impl FnMut(&Request<T>) -> bool) -> Option<usize> {
        self.entries.iter().position(matches)
    }

    /// The first request whose item matches.
    pub fn find(&self, mut matches: impl FnMut(&T) -> bool) -> Option<&Request<T>> {
        self.entries.iter().find(|r| matches(&r.item))
    }

    /// Whether some request's item matches.
    pub fn contains(&self, matches: impl FnMut(&T) -> bool) -> bool {
        self.find(matches).is_some()
    }

    /// Removes and returns the `i`-th request (the last one takes its
    /// place).
    pub fn remove(&mut self, i: usize) -> Option<Request<T>> {
        (i < self.entries.len()).then(|| self.entries.swap_remove(i))
    }

    /// Keeps the requests for which `keep` holds.
    pub fn retain(&mut self, keep: impl FnMut(&Request<T>) -> bool) {
        self.entries.retain(keep);
    }

    /// The first request in flight past its deadline at `now`.
    pub fn next_overdue(&self, now: Instant) -> Option<usize> {
        self.entries.iter().position(|r| r.is_overdue(now))
    }

    /// The first waiting request that may be sent at `now`.
    pub fn next_ready(&self, now: Instant) -> Option<usize> {
        self.entries.iter().position(|r| r.is_ready(now))
    }

    /// A peer's window has room again: every request blocked for want of
    /// one may be sent at `now`. Returns whether any was blocked.
    pub fn unblock(&mut self, now: Instant) -> bool {
        let mut any = false;
        for r in self.entries.iter_mut() {
            if let Phase::Blocked { .. } = r.phase {
                r.phase = Phase::Waiting { ready_at: now };
                any = true;
            }
        }
        any
    }

    /// The earliest instant at which the owner can act on a request: a
    /// deadline of a request in flight, or, if the owner has `room` for
    /// another request in flight, a waiting request's ready instant.
    pub fn poll_timeout(&self, room: bool) -> Option<Instant> {
        self.entries.iter().filter_map(|r| r.wake_at(room)).min()
    }
}

impl<T, const N: usize> Default for RequestTable<T, N> {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(port: u16) -> PeerAddr {
        PeerAddr::v4([127, 0, 0, 1], port)
    }

    #[test]
    fn a_request_goes_round_from_waiting_to_flight_and_back() {
        let t0 = Instant::from_millis(10);
        let mut r = Request::new("x", t0);
        assert!(!r.is_ready(Instant::from_millis(9)));
        assert!(r.is_ready(t0));
        r.sent(peer(1), t0, Duration::from_millis(5));
        assert_eq!(r.attempts, 1);
        assert_eq!(r.first_sent, Some(t0));
        assert_eq!(r.in_flight_to(), Some(peer(1)));
        assert!(!r.is_overdue(Instant::from_millis(14)));
        assert!(r.is_overdue(Instant::from_millis(15)));
        r.wait_until(Instant::from_millis(20));
        r.sent(peer(2), Instant::from_millis(20), Duration::from_millis(5));
        assert_eq!(r.attempts, 2);
        assert_eq!(r.first_sent, Some(t0), "the first attempt's time is kept");
    }

    #[test]
    fn poll_timeout_reports_waiting_requests_only_with_room() {
        let mut table = RequestTable::<u8, 4>::new();
        let now = Instant::from_millis(100);
        table.push(Request::new(1, now)).unwrap();
        table.push(Request::new(2, now + Duration::from_millis(30))).unwrap();
        let i = table.next_ready(now).unwrap();
        table.get_mut(i).unwrap().sent(peer(1), now, Duration::from_millis(50));
        assert_eq!(table.in_flight(), 1);
        assert_eq!(table.poll_timeout(true), Some(now + Duration::from_millis(30)));
        assert_eq!(table.poll_timeout(false), Some(now + Duration::from_millis(50)));
        assert_eq!(table.next_overdue(now + Duration::from_millis(50)), Some(i));
        assert!(table.find(|item| *item == 2).is_some());
        table.retain(|r| r.item != 1);
        assert_eq!(table.len(), 1);
        assert_eq!(table.poll_timeout(false), None);
    }

    #[test]
    fn a_full_table_gives_the_request_back() {
        let mut table = RequestTable::<u8, 1>::new();
        assert!(table.push(Request::new(1, Instant::ZERO)).is_ok());
        assert_eq!(table.push(Request::new(2, Instant::ZERO)).unwrap_err().item, 2);
        assert!(table.is_full());
        assert_eq!(table.remove(0).map(|r| r.item), Some(1));
        assert_eq!(table.remove(0), None);
    }

    #[test]
    fn a_blocked_request_goes_when_a_window_frees_not_only_at_its_instant() {
        let mut table = RequestTable::<u8, 4>::new();
        let now = Instant::from_millis(10);
        table.push(Request::new(1, now)).unwrap();
        table.push(Request::new(2, now)).unwrap();
        table.get_mut(0).unwrap().block_until(now + Duration::from_millis(50));
        table.get_mut(1).unwrap().wait_until(now + Duration::from_millis(50));
        let later = now + Duration::from_millis(1);
        assert_eq!(table.next_ready(later), None);
        assert!(table.unblock(later), "one was blocked");
        assert_eq!(table.next_ready(later).map(|i| table.get(i).unwrap().item), Some(1));
        // A request waiting for its own reasons (a backoff) keeps waiting.
        assert!(!table.get(1).unwrap().is_ready(later));
        assert!(!table.unblock(later), "nothing blocked any more");
        // Blocked or not, it is ready at its instant at the latest.
        table.get_mut(0).unwrap().block_until(now + Duration::from_millis(50));
        assert!(table.get(0).unwrap().is_ready(now + Duration::from_millis(50)));
    }
}
