//! What uploads and downloads share: choosing a holder, pacing, discovery.
//!
//! A [`Requester`] picks which member of a fragment's shard a request goes
//! to (the `attempt`-th candidate in rendezvous order, skipping peers whose
//! window is full), measures round trips, keeps the per-peer windows, and
//! asks the overlay for members of a shard the node knows nobody in, at
//! most every [`DISCOVERY_INTERVAL`], giving up after
//! [`DISCOVERY_ATTEMPTS`].

use crate::config::SHARD_COUNT;
use crate::flow::{PeerWindows, RttEstimator};
use crate::fragment::FragmentHash;
use crate::id::{PeerAddr, PeerInfo};
use crate::node::{Node, Transmit};
use crate::store::FragmentStore;
use crate::time::{Duration, Instant};

/// How often a node with no member of a shard asks around for one.
pub const DISCOVERY_INTERVAL: Duration = Duration::from_millis(300);
/// How many times it asks before the request fails.
pub const DISCOVERY_ATTEMPTS: u8 = 10;
/// Candidates considered per fragment.
const CANDIDATES: usize = 32;

/// The outcome of choosing where a request goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Pick {
    /// Send it to this peer now.
    Target(PeerAddr),
    /// Every candidate's window is full, or the shard is being searched:
    /// try again later.
    Wait,
    /// Nobody in the shard could be found.
    NoHolder,
}

#[derive(Clone, Copy, Debug, Default)]
struct Discovery {
    last: Option<Instant>,
    attempts: u8,
}

/// Holder choice, round-trip estimation and per-peer windows.
#[derive(Clone, Debug)]
pub(crate) struct Requester<const PEERS: usize> {
    rtt: RttEstimator,
    windows: PeerWindows<PEERS>,
    discovery: [Discovery; SHARD_COUNT as usize],
}

impl<const PEERS: usize> Requester<PEERS> {
    pub(crate) const fn new() -> Self {
        Requester {
            rtt: RttEstimator::new(
                Duration::from_millis(250),
                Duration::from_millis(40),
                Duration::from_secs(2),
            ),
            windows: PeerWindows::new(),
            discovery: [Discovery { last: None, attempts: 0 }; SHARD_COUNT as usize],
        }
    }

    /// Chooses the peer for the `attempt`-th request of `hash`.
    pub(crate) fn pick<S: FragmentStore, const N: usize, const D: usize, const F: usize>(
        &mut self,
        now: Instant,
        node: &mut Node<S, N, D, F>,
        hash: &FragmentHash,
        attempt: u8,
        sink: &mut impl Transmit,
    ) -> Pick {
        let mut candidates: heapless::Vec<PeerInfo, CANDIDATES> = heapless::Vec::new();
        node.holder_candidates(hash, &mut candidates);
        if candidates.is_empty() {
            let shard = hash.shard();
            let Some(state) = self.discovery.get_mut(shard.index()) else { return Pick::NoHolder };
            if state.attempts >= DISCOVERY_ATTEMPTS {
                return Pick::NoHolder;
            }
            if state.last.is_none_or(|last| now >= last + DISCOVERY_INTERVAL) {
                state.last = Some(now);
                state.attempts += 1;
                node.discover_shard(shard, 3, sink);
            }
            return Pick::Wait;
        }
        let count = candidates.len();
        let start = usize::from(attempt) % count;
        for k in 0..count {
            if let Some(peer) = candidates.get((start + k) % count) {
                if self.windows.can_send(peer.addr) {
                    return Pick::Target(peer.addr);
                }
            }
        }
        Pick::Wait
    }

    /// When a shard search started now would allow the next pick.
    pub(crate) fn next_discovery(&self) -> Option<Instant> {
        self.discovery
            .iter()
            .filter(|d| d.attempts > 0 && d.attempts < DISCOVERY_ATTEMPTS)
            .filter_map(|d| d.last)
            .min()
            .map(|last| last + DISCOVERY_INTERVAL)
    }

    pub(crate) fn on_sent(&mut self, to: PeerAddr, now: Instant) {
        self.windows.on_send_at(to, now);
    }

    /// An answer from `to` to a request sent at `sent_at`; the round trip is
    /// sampled only for first attempts (Karn's rule).
    pub(crate) fn on_answer(&mut self, to: PeerAddr, sent_at: Instant, first: bool, now: Instant) {
        self.windows.on_ack(to);
        if first {
            self.rtt.sample(now - sent_at);
        }
    }

    pub(crate) fn on_loss(&mut self, to: PeerAddr) {
        self.windows.on_loss(to);
    }

    pub(crate) fn on_done(&mut self, to: PeerAddr) {
        self.windows.on_done(to);
    }

    pub(crate) fn rto(&self, attempt: u8) -> Duration {
        self.rtt.rto(attempt)
    }

    pub(crate) fn srtt(&self) -> Option<Duration> {
        self.rtt.srtt()
    }
}
