//! Per-sender budgets in fixed memory.
//!
//! One host must not be able to make a node relay without end, answer
//! without end or fill its store. [`Budgets`] keeps, for up to `N` senders
//! (by address), a token bucket per kind of cost ([`Cost`]): a bucket holds
//! up to `burst` tokens and refills at `rate` tokens a second; a request
//! that finds its bucket empty is refused (and counted by the caller). A
//! sender not in the table takes the place of the one heard from longest
//! ago, starting with full buckets: forgetting a sender only ever gives it
//! a fresh burst, never more than that per eviction, and an attacker that
//! cycles through many addresses must prove each of them (see
//! [`crate::auth`]) before its requests reach a budget.
//!
//! ```
//! use dht_core::budget::{Budgets, Cost, Limits};
//! use dht_core::id::PeerAddr;
//! use dht_core::time::{Duration, Instant};
//! let limits = Limits { rate: 10, burst: 2 };
//! let mut budgets = Budgets::<4>::new();
//! let peer = PeerAddr::v4([127, 0, 0, 1], 9000);
//! let t = Instant::from_millis(1);
//! assert!(budgets.take(peer, Cost::Relay, limits, t));
//! assert!(budgets.take(peer, Cost::Relay, limits, t));
//! assert!(!budgets.take(peer, Cost::Relay, limits, t), "burst spent");
//! assert!(budgets.take(peer, Cost::Relay, limits, t + Duration::from_millis(100)), "refilled");
//! ```

use core::cmp::Reverse;

use crate::id::PeerAddr;
use crate::time::{Instant, Stamp};

/// What a sender spends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cost {
    /// A randomcast or broadcast relayed for it.
    Relay,
    /// A request answered with something big (a fragment, PEERS, STATS).
    Answer,
    /// A fragment it offered, fetched and stored.
    Store,
}

impl Cost {
    const COUNT: usize = 3;

    fn index(self) -> usize {
        self as usize
    }
}

/// A bucket's size and refill rate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Tokens added per second.
    pub rate: u16,
    /// Most tokens held.
    pub burst: u16,
}

/// Tokens are counted in thousandths, so that slow rates refill smoothly.
const MILLI: u32 = 1_000;

/// A bucket never spent from: full whatever its limits (`take` caps the
/// count at the burst).
const UNTOUCHED: u32 = u32::MAX;

/// One sender's buckets: 48 bytes (it was 104 with an [`Instant`] per
/// bucket; 256 senders are 12 KB of every node).
#[derive(Clone, Copy, Debug)]
struct Sender {
    addr: PeerAddr,
    /// Per cost: tokens in thousandths, as counted at `counted`
    /// ([`UNTOUCHED`] until first spent).
    tokens: [u32; Cost::COUNT],
    counted: [Stamp; Cost::COUNT],
    /// When the sender last spent anything.
    at: Stamp,
}

/// Token buckets for up to `N` senders.
#[derive(Clone, Debug)]
pub struct Budgets<const N: usize> {
    senders: heapless::Vec<Sender, N>,
}

impl<const N: usize> Budgets<N> {
    /// No sender known.
    pub const fn new() -> Self {
        Budgets { senders: heapless::Vec::new() }
    }

    /// Takes one token of `cost` from `addr`'s bucket at `now`; `false` if
    /// the bucket is empty.
    pub fn take(&mut self, addr: PeerAddr, cost: Cost, limits: Limits, now: Instant) -> bool {
        let Some(i) = self.position(addr, now) else { return false };
        let Some(sender) = self.senders.get_mut(i) else { return false };
        let stamp = Stamp::of(now);
        sender.at = stamp;
        let k = cost.index();
        let (Some(tokens), Some(counted)) = (sender.tokens.get_mut(k), sender.counted.get_mut(k))
        else {
            return false;
        };
        let full = u32::from(limits.burst) * MILLI;
        // `rate` tokens a second are `rate` thousandths a millisecond. An
        // age that wrapped (49.7 days) only refills less.
        let refill = counted.age(now).total_millis().saturating_mul(u64::from(limits.rate));
        let before = tokens.saturating_add(u32::try_from(refill).unwrap_or(u32::MAX)).min(full);
        let granted = before >= MILLI;
        *tokens = if granted { before - MILLI } else { before };
        *counted = stamp;
        granted
    }

    /// The position of `addr`'s entry, made (in place of the sender heard
    /// from longest ago if the table is full) if needed; `None` only for a
    /// table of no capacity.
    fn position(&mut self, addr: PeerAddr, now: Instant) -> Option<usize> {
        if let Some(i) = self.senders.iter().position(|s| s.addr == addr) {
            return Some(i);
        }
        let fresh = Sender {
            addr,
            tokens: [UNTOUCHED; Cost::COUNT],
            counted: [Stamp::of(now); Cost::COUNT],
            at: Stamp::of(now),
        };
        if self.senders.push(fresh).is_ok() {
            return Some(self.senders.len() - 1);
        }
        let oldest = self
            .senders
            .iter()
            .enumerate()
            .min_by_key(|(_, s)| Reverse(s.at.age(now)))
            .map(|(i, _)| i)?;
        *self.senders.get_mut(oldest)? = fresh;
        Some(oldest)
    }
}

impl<const N: usize> Default for Budgets<N> {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::Duration;

    fn peer(port: u16) -> PeerAddr {
        PeerAddr::v4([127, 0, 0, 1], port)
    }

    #[test]
    fn each_cost_has_its_own_bucket_and_refills_at_its_rate() {
        let mut b = Budgets::<4>::new();
        let relay = Limits { rate: 2, burst: 1 };
        let store = Limits { rate: 1000, burst: 3 };
        let t0 = Instant::from_millis(10);
        assert!(b.take(peer(1), Cost::Relay, relay, t0));
        assert!(!b.take(peer(1), Cost::Relay, relay, t0));
        for _ in 0..3 {
            assert!(b.take(peer(1), Cost::Store, store, t0));
        }
        assert!(!b.take(peer(1), Cost::Store, store, t0));
        // Half a second refills one relay token at 2 a second.
        let t1 = t0 + Duration::from_millis(500);
        assert!(b.take(peer(1), Cost::Relay, relay, t1));
        assert!(!b.take(peer(1), Cost::Relay, relay, t1));
        assert!(b.take(peer(1), Cost::Store, store, t1), "the store bucket refilled too");
    }

    #[test]
    fn senders_are_apart_and_the_longest_silent_makes_room() {
        let mut b = Budgets::<2>::new();
        let one = Limits { rate: 0, burst: 1 };
        let t = Instant::from_millis(1);
        assert!(b.take(peer(1), Cost::Answer, one, t));
        assert!(b.take(peer(2), Cost::Answer, one, t + Duration::from_millis(1)));
        assert!(!b.take(peer(1), Cost::Answer, one, t + Duration::from_millis(2)));
        // A third sender evicts the one heard from longest ago (peer 2 was
        // heard at t + 1 ms, peer 1 at t + 2 ms).
        assert!(b.take(peer(3), Cost::Answer, one, t + Duration::from_millis(3)));
        assert!(!b.take(peer(1), Cost::Answer, one, t + Duration::from_millis(4)));
        assert!(
            b.take(peer(2), Cost::Answer, one, t + Duration::from_millis(5)),
            "forgotten, fresh"
        );
    }
}
