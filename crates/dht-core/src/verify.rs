//! Reading back what an upload stored, from other holders.
//!
//! An upload is acknowledged by one holder per fragment; a holder that lies
//! (or a STORED that was not its own) would make a file look stored when a
//! fragment has no copy. [`Verify`] checks: it fetches each fragment it is
//! given from a member of the fragment's shard *other than* the one that
//! acknowledged it, checks the bytes against the hash, and reports each
//! fragment found or not ([`VerifyEvent`]). `dhtsend` reads back the index
//! and a sample of the data fragments this way after every upload.
//!
//! One fragment is checked at a time, with one 8 KB buffer: the check is
//! small next to the upload. The holders of a fragment's shard are asked
//! in turn (those named by NOTFOUND answers first), each with the usual
//! retransmission timeout; when all were asked, again after a growing
//! wait (right after an upload the other holders may still be fetching
//! their copies). A fragment no other holder sent within the attempts and
//! time a download allows ([`crate::client::MAX_ATTEMPTS`],
//! [`crate::client::GIVE_UP_AFTER`]) is reported missing.

use core::fmt;

use crate::client::{exhausted, refusal_backoff, Pick, Requester, Tried};
use crate::config::FRAGMENT_SIZE;
use crate::driver::App;
use crate::fragment::{FragmentBytes, FragmentHash};
use crate::id::PeerAddr;
use crate::node::{Node, Reply, Transmit};
use crate::requests::Request;
use crate::store::FragmentStore;
use crate::time::Instant;
use crate::wire::{piece_mask, ALL_UNITS, UNIT};

/// How long after its first request a fragment is asked for again every
/// [`crate::client::RETRY_TICK`] (its copies are on their way).
const EAGER_FOR: crate::time::Duration = crate::time::Duration::from_secs(1);

/// A fragment to read back, and the holder that acknowledged it (not asked).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Check {
    /// The fragment.
    pub hash: FragmentHash,
    /// The holder that acknowledged it.
    pub acknowledged_by: PeerAddr,
}

/// What the check found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VerifyEvent {
    /// Fragment `index` (in the order given) was read back whole and right
    /// from `from`.
    Found {
        /// Its place in the list.
        index: u16,
        /// The holder that sent it.
        from: PeerAddr,
    },
    /// Fragment `index` has no other holder to ask: the acknowledging
    /// member is the only one of its shard this node could find (a network
    /// too small for a second copy).
    Alone {
        /// Its place in the list.
        index: u16,
    },
    /// Fragment `index` could not be read from any other holder.
    Missing {
        /// Its place in the list.
        index: u16,
        /// Holders asked.
        asked: u8,
    },
    /// Every fragment was checked.
    Finished {
        /// Fragments read back.
        found: u16,
        /// Fragments missing.
        missing: u16,
    },
}

/// Why a check cannot start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TooManyChecks;

impl fmt::Display for TooManyChecks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("too many fragments to check at once")
    }
}

/// Peers whose windows are tracked.
const PEERS: usize = 8;

/// Searches for other members of a fragment's shard before a fragment
/// whose acknowledging holder is the only one known is reported alone. One
/// is enough: a client that joined surveyed every shard, and the search
/// itself asks a member of the shard for all its mates (four cost 2 s of
/// read-back on a network of one member per shard, for nothing).
const ALONE_AFTER: u8 = 1;

/// A read-back of up to `N` fragments.
pub struct Verify<const N: usize = 16> {
    checks: heapless::Vec<Check, N>,
    /// The fragment being checked.
    current: usize,
    request: Request<Tried>,
    have: u16,
    slot: FragmentBytes,
    found: u16,
    missing: u16,
    requester: Requester<PEERS>,
    events: crate::client::EventQueue<VerifyEvent>,
    done: bool,
}

impl<const N: usize> Verify<N> {
    /// A check of `checks`.
    pub fn new(checks: &[Check]) -> Result<Self, TooManyChecks> {
        let checks = heapless::Vec::from_slice(checks).map_err(|_| TooManyChecks)?;
        Ok(Verify {
            done: checks.is_empty(),
            checks,
            current: 0,
            request: Request::new(Tried::new(), Instant::ZERO),
            have: 0,
            slot: [0; FRAGMENT_SIZE],
            found: 0,
            missing: 0,
            requester: Requester::new(),
            events: crate::client::EventQueue::new(),
        })
    }

    /// The next event.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<VerifyEvent> {
        self.events.pop()
    }

    /// Whether every fragment was checked.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Fragments read back, and missing, so far.
    pub fn counts(&self) -> (u16, u16) {
        (self.found, self.missing)
    }

    /// When [`App::handle_timeout`] should next be called.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.done {
            return None;
        }
        self.request.wake_at(true)
    }

    /// Starts the check.
    pub fn start<S: FragmentStore, const NN: usize, const D: usize, const F: usize>(
        &mut self,
        now: Instant,
        node: &mut Node<S, NN, D, F>,
        sink: &mut impl Transmit,
    ) {
        self.send(now, node, sink);
    }

    fn finish_one(&mut self, found: Option<PeerAddr>) {
        let index = self.current as u16;
        match found {
            Some(from) => {
                self.found += 1;
                self.events.push(VerifyEvent::Found { index, from });
            }
            None => {
                self.missing += 1;
                let asked = self.request.attempts;
                self.events.push(VerifyEvent::Missing { index, asked });
            }
        }
        self.next();
    }

    fn alone(&mut self) {
        let index = self.current as u16;
        self.events.push(VerifyEvent::Alone { index });
        self.next();
    }

    /// How long to wait before asking again after a NOTFOUND. Copies come
    /// within a replication delay of the upload (0.2-0.4 s by default):
    /// for a second after the first request they are asked for every
    /// [`crate::client::RETRY_TICK`], then less and less often. (The
    /// doubling waits alone made every read-back take 0.8 s, half of it
    /// after the copies had come.)
    fn patience(&self, now: Instant) -> crate::time::Duration {
        let early = self.request.first_sent.is_some_and(|t| now < t + EAGER_FOR);
        if early {
            refusal_backoff(self.request.attempts).min(crate::client::RETRY_TICK)
        } else {
            refusal_backoff(self.request.attempts)
        }
    }

    /// On to the next fragment.
    fn next(&mut self) {
        self.current += 1;
        self.have = 0;
        match self.checks.get(self.current) {
            Some(_) => self.request = Request::new(Tried::new(), Instant::ZERO),
            None => {
                self.done = true;
                let (found, missing) = (self.found, self.missing);
                self.events.push(VerifyEvent::Finished { found, missing });
            }
        }
    }

    /// Asks the next holder for the fragment being checked (or gives it up).
    fn send<S: FragmentStore, const NN: usize, const D: usize, const F: usize>(
        &mut self,
        now: Instant,
        node: &mut Node<S, NN, D, F>,
        sink: &mut impl Transmit,
    ) {
        while !self.done {
            let Some(check) = self.checks.get(self.current).copied() else { return };
            if !self.request.is_ready(now) {
                return;
            }
            if exhausted(self.request.attempts, self.request.first_sent, now) {
                self.finish_one(None);
                continue;
            }
            let attempt = self.request.attempts;
            let mut skip = self.request.item;
            skip.remember(check.acknowledged_by);
            let pick = self.requester.pick(now, node, &check.hash, attempt, &skip, false, sink);
            log::trace!("verify: {:?} attempt {attempt}: {pick:?}", check.hash);
            match pick {
                Pick::Target(to) if !skip.contains(&to) => {
                    node.send_fileget(now, to, check.hash, ALL_UNITS & !self.have, sink);
                    self.requester.on_sent(to, now);
                    self.request.sent(to, now, self.requester.rto(0));
                    return;
                }
                // Nobody but the acknowledging holder, after a few
                // searches: a shard of one.
                Pick::Target(to)
                    if to == check.acknowledged_by
                        && attempt >= ALONE_AFTER
                        && node
                            .holder_candidates::<8>(&check.hash)
                            .iter()
                            .all(|p| p.addr == check.acknowledged_by) =>
                {
                    self.alone();
                }
                // Every other holder was asked: ask them all again after a
                // wait (they may still be fetching their copies).
                Pick::Target(_) => {
                    self.request.item = Tried::new();
                    let wait = self.patience(now).max(crate::client::RETRY_TICK);
                    self.request.failed_attempt(now, now + wait);
                    return;
                }
                Pick::NoHolder => self.finish_one(None),
                Pick::Wait | Pick::Full => {
                    self.request.wait_until(now + crate::client::RETRY_TICK);
                    return;
                }
            }
        }
    }
}

impl<S, const NN: usize, const D: usize, const F: usize, const N: usize> App<S, NN, D, F>
    for Verify<N>
where
    S: FragmentStore,
{
    fn poll_timeout(&self) -> Option<Instant> {
        Verify::poll_timeout(self)
    }

    fn handle_timeout<T: Transmit>(
        &mut self,
        now: Instant,
        node: &mut Node<S, NN, D, F>,
        tx: &mut T,
    ) {
        if let Some(to) = self.request.in_flight_to().filter(|_| self.request.is_overdue(now)) {
            // Silent, or sent only part: the next holder is asked for the
            // rest.
            self.requester.on_loss(to);
            self.request.item.remember(to);
            self.request.wait_until(now);
        }
        self.send(now, node, tx);
    }

    fn handle_reply<T: Transmit>(
        &mut self,
        now: Instant,
        node: &mut Node<S, NN, D, F>,
        reply: &Reply<'_>,
        tx: &mut T,
    ) {
        let Some(check) = self.checks.get(self.current).copied() else { return };
        match reply {
            Reply::Piece { from, hash, first_unit, data } if *hash == check.hash => {
                // Only from the holder asked, not the one that acknowledged.
                if self.request.in_flight_to() != Some(from.addr) {
                    return;
                }
                let first = usize::from(*first_unit);
                let Some(target) = self.slot.get_mut(first * UNIT..first * UNIT + data.len())
                else {
                    return;
                };
                target.copy_from_slice(data);
                self.have |= piece_mask(first, data.len() / UNIT);
                self.request.extend(now + self.requester.rto(0));
                if self.have != ALL_UNITS {
                    return;
                }
                if hash.verifies(&self.slot) {
                    self.requester.answered(&self.request, from.addr, now);
                    self.finish_one(Some(from.addr));
                } else {
                    self.have = 0;
                    self.request.item.remember(from.addr);
                    self.request.wait_until(now);
                }
            }
            Reply::NotFound { from, hash, holders } if *hash == check.hash => {
                if self.request.in_flight_to() != Some(from.addr) {
                    return;
                }
                log::trace!("verify: NOTFOUND {hash:?} from {}, naming {holders:?}", from.addr);
                self.requester.hint(*hash, holders);
                self.requester.on_done(from.addr);
                self.request.item.remember(from.addr);
                // The holders may still be fetching their copies: after a
                // few quick tries, ask less and less often (up to 1 s)
                // rather than go round the shard's members every
                // millisecond until the check gives up.
                let wait = self.patience(now);
                self.request.wait_until(now + wait);
            }
            _ => return,
        }
        self.send(now, node, tx);
    }

    fn is_done(&self) -> bool {
        self.done
    }
}

impl<const N: usize> fmt::Debug for Verify<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verify")
            .field("current", &self.current)
            .field("of", &self.checks.len())
            .field("found", &self.found)
            .field("missing", &self.missing)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    extern crate std;

    use super::*;
    use crate::testing::{bytes, Net};
    use crate::time::Duration;

    #[test]
    fn read_back_right_after_an_upload_finds_the_other_holders_while_they_fetch() {
        // Read back at once after the upload, while the other holders may
        // still be fetching: asked too early they say NOTFOUND, and must be
        // asked again. (With a memory of four peers the check forgot them
        // and went round the others: 3 of 24 reported missing.)
        let mut missing = std::vec::Vec::new();
        for seed in 0..6u64 {
            let mut net = Net::joined(10 + seed, 128, 64);
            for k in 0..4u64 {
                let writer = net.add_joined_client((k as usize * 17) % 128, Duration::from_secs(5));
                let data = bytes(seed * 100 + k, 8 * FRAGMENT_SIZE);
                net.upload(writer, "v.bin", data.clone());
                assert!(net.run_until(Duration::from_secs(30), |n| n.upload_done(writer).is_some()));
                let first = data.chunks(FRAGMENT_SIZE).next().expect("a fragment");
                let hash = FragmentHash::of(first.try_into().expect("a whole fragment"));
                let acked = (0..net.hosts.len()).find(|i| net.node(*i).store().contains(&hash));
                let checks = [Check { hash, acknowledged_by: Net::addr(acked.expect("held")) }];
                let results = net.verify(writer, &checks);
                if !matches!(results[0], VerifyEvent::Found { .. }) {
                    missing.push((seed, k, results[0]));
                }
            }
        }
        assert!(missing.is_empty(), "{missing:?}");
    }

    #[test]
    fn fragments_are_read_back_from_a_holder_other_than_the_one_that_acknowledged() {
        let mut net = Net::joined(3, 32, 16);
        let writer = net.add_joined_client(1, Duration::from_secs(5));
        let data = bytes(9, 3 * FRAGMENT_SIZE);
        let index = net.upload(writer, "v.bin", data.clone());
        assert!(net.run_until(Duration::from_secs(30), |n| n.upload_done(writer).is_some()));
        net.run_for(Duration::from_secs(3));
        let holders = |net: &Net, h: &FragmentHash| -> std::vec::Vec<PeerAddr> {
            (0..net.hosts.len())
                .filter(|i| net.node(*i).store().contains(h))
                .map(Net::addr)
                .collect()
        };
        let first = holders(&net, &index)[0];
        let checks = [Check { hash: index, acknowledged_by: first }];
        let results = net.verify(writer, &checks);
        assert_eq!(results.len(), 1);
        assert!(matches!(results[0], VerifyEvent::Found { index: 0, from } if from != first));

        // A fragment whose every other holder lost it is reported missing.
        let lone = FragmentHash([0x77; 32]);
        let checks = [Check { hash: lone, acknowledged_by: first }];
        let results = net.verify(writer, &checks);
        assert!(matches!(results[0], VerifyEvent::Missing { index: 0, .. }), "{results:?}");
    }
}
