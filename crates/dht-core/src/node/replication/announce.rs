//! Announcements awaiting acknowledgement.
//!
//! A NEWFILE to a member that should hold a fragment is remembered until
//! the member says it has it (STORED) or that it will not take it, and
//! sent again with a doubling wait, at most [`ANNOUNCE_TRIES`] times (the
//! HOLDINGS exchange is the backstop). While the member fetches (its
//! FILEGETs come) the announcement waits; a fetch it gave up is offered
//! again. When the table is full a new announcement is sent once and not
//! remembered, and replication scans the store again once the table has
//! room (a fast upload announces faster than mates answer: none is lost).

use crate::fragment::FragmentHash;
use crate::id::PeerAddr;
use crate::node::{Ctx, Transmit};
use crate::requests::{Request, RequestTable};
use crate::store::FragmentStore;
use crate::time::{Duration, Instant};
use crate::wire::Message;

/// First wait for an announcement's acknowledgement (doubles per retry).
const ANNOUNCE_RETRY: Duration = Duration::from_millis(1_500);
/// Times an announcement is sent before it is given up.
const ANNOUNCE_TRIES: u8 = 5;

/// An announcement of `hash` to `to`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Announcement {
    hash: FragmentHash,
    to: PeerAddr,
}

/// Announcements not yet acknowledged.
#[derive(Clone)]
pub(crate) struct Announcements<const F: usize> {
    table: RequestTable<Announcement, F>,
}

impl<const F: usize> Announcements<F> {
    pub(crate) const fn new() -> Self {
        Announcements { table: RequestTable::new() }
    }

    pub(crate) fn clear(&mut self) {
        self.table.retain(|_| false);
    }

    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        self.table.poll_timeout(false)
    }

    /// Remembers an announcement of `hash` just sent to `to`. Returns
    /// `false` when the table is full and it could not be remembered (it
    /// is sent once, never again: the caller makes up for it with a scan).
    pub(crate) fn expect_ack(&mut self, now: Instant, hash: FragmentHash, to: PeerAddr) -> bool {
        if self.table.contains(|a| a.hash == hash && a.to == to) {
            return true;
        }
        let mut request = Request::new(Announcement { hash, to }, now);
        request.sent(to, now, ANNOUNCE_RETRY);
        self.table.push(request).is_ok()
    }

    /// Announcements that can still be remembered.
    pub(crate) fn room(&self) -> usize {
        F - self.table.len()
    }

    /// `from` answered our announcement of `hash` with STORED: done if it
    /// holds it or will not take it (`settled`); otherwise (busy, a fetch
    /// it gave up) offered again at the next retry. Returns whether there
    /// was such an announcement.
    pub(crate) fn answered(&mut self, from: PeerAddr, hash: &FragmentHash, settled: bool) -> bool {
        let ours = |r: &Request<Announcement>| r.item.to == from && r.item.hash == *hash;
        let found = self.table.iter().any(ours);
        if settled {
            self.table.retain(|r| !ours(r));
        }
        found
    }

    /// `from` fetches `hash`: its announcement waits for the outcome.
    pub(crate) fn fetching(&mut self, now: Instant, from: PeerAddr, hash: &FragmentHash) {
        for request in self.table.iter_mut() {
            if request.item.to == from && request.item.hash == *hash {
                request.extend(now + ANNOUNCE_RETRY);
            }
        }
    }

    /// Sends again the announcements whose acknowledgement is overdue.
    pub(crate) fn retry<S: FragmentStore>(&mut self, ctx: &mut Ctx<'_, impl Transmit>, store: &S) {
        while let Some(i) = self.table.next_overdue(ctx.now) {
            let Some(request) = self.table.get_mut(i) else { return };
            let Announcement { hash, to } = request.item;
            if request.attempts >= ANNOUNCE_TRIES || !store.contains(&hash) {
                self.table.remove(i);
                continue;
            }
            let wait = ANNOUNCE_RETRY.saturating_mul(1 << request.attempts.min(4));
            request.sent(to, ctx.now, wait);
            let copies = store.copies(&hash);
            ctx.send(to, &Message::NewFile { hash, urgent: false, copies });
        }
    }
}
