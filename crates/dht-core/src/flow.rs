//! Timing and pacing of requests: round-trip estimation and per-peer windows.
//!
//! [`RttEstimator`] is the retransmission timer of RFC 6298 (smoothed RTT
//! and its variance, RTO = SRTT + 4 RTTVAR, doubled per retry).
//! [`PeerWindows`] limits the large datagrams in flight to each peer: a
//! window that starts at one datagram, grows by one per acknowledgement up
//! to a threshold and slowly beyond it, and halves on a loss. A
//! microcontroller whose network interface buffers one 8 KB datagram at a
//! time therefore sees one at a time, while hosts open up to
//! [`PeerWindows::MAX_WINDOW`] within a few round trips.
//!
//! ```
//! use dht_core::flow::PeerWindows;
//! use dht_core::id::PeerAddr;
//! let peer = PeerAddr::v4([127, 0, 0, 1], 9000);
//! let mut windows = PeerWindows::<4>::new();
//! assert!(windows.can_send(peer));
//! windows.on_send(peer);
//! assert!(!windows.can_send(peer)); // the first window is one datagram
//! windows.on_ack(peer);
//! windows.on_send(peer);
//! assert!(windows.can_send(peer)); // the window grew to two
//! ```

use crate::id::PeerAddr;
use crate::time::{Duration, Instant};

/// Smoothed round-trip time and retransmission timeout (RFC 6298).
#[derive(Clone, Copy, Debug)]
pub struct RttEstimator {
    srtt: Option<Duration>,
    rttvar: Duration,
    min_rto: Duration,
    max_rto: Duration,
    initial_rto: Duration,
}

impl RttEstimator {
    /// An estimator with no samples yet.
    pub const fn new(initial_rto: Duration, min_rto: Duration, max_rto: Duration) -> Self {
        RttEstimator { srtt: None, rttvar: Duration::ZERO, min_rto, max_rto, initial_rto }
    }

    /// Feeds one measured round trip.
    pub fn sample(&mut self, rtt: Duration) {
        match self.srtt {
            None => {
                self.srtt = Some(rtt);
                self.rttvar = rtt.div(2);
            }
            Some(srtt) => {
                let delta = if srtt > rtt { srtt - rtt } else { rtt - srtt };
                // rttvar = 3/4 rttvar + 1/4 |srtt - rtt|; srtt = 7/8 srtt + 1/8 rtt
                self.rttvar = self.rttvar.saturating_mul(3).div(4) + delta.div(4);
                self.srtt = Some(srtt.saturating_mul(7).div(8) + rtt.div(8));
            }
        }
    }

    /// The smoothed round trip, if measured.
    pub fn srtt(&self) -> Option<Duration> {
        self.srtt
    }

    /// The retransmission timeout for a request's `attempt`-th send
    /// (0 for the first), doubled per attempt and clamped.
    pub fn rto(&self, attempt: u8) -> Duration {
        let base = match self.srtt {
            None => self.initial_rto,
            Some(srtt) => srtt + self.rttvar.saturating_mul(4),
        };
        let backed_off = base.saturating_mul(1u64 << attempt.min(6));
        backed_off.max(self.min_rto).min(self.max_rto)
    }
}

/// The window of one peer.
#[derive(Clone, Copy, Debug)]
struct PeerWindow {
    addr: PeerAddr,
    window: u8,
    threshold: u8,
    in_flight: u8,
    acks_since_growth: u8,
    last_used: Instant,
}

/// Per-peer windows for up to `N` peers at a time; the least recently used
/// idle peer is forgotten when a new one needs room.
#[derive(Clone, Debug)]
pub struct PeerWindows<const N: usize> {
    peers: heapless::Vec<PeerWindow, N>,
}

impl<const N: usize> PeerWindows<N> {
    /// The window of a peer not seen before.
    pub const INITIAL_WINDOW: u8 = 1;
    /// The largest window.
    pub const MAX_WINDOW: u8 = 32;
    /// Beyond the threshold, the window grows by one per this many
    /// acknowledgements (a slow probe of whether the peer can take more).
    pub const PROBE_INTERVAL: u8 = 16;

    /// No peers yet.
    pub const fn new() -> Self {
        PeerWindows { peers: heapless::Vec::new() }
    }

    fn get(&self, addr: PeerAddr) -> Option<&PeerWindow> {
        self.peers.iter().find(|p| p.addr == addr)
    }

    fn get_or_insert(&mut self, addr: PeerAddr) -> Option<&mut PeerWindow> {
        if let Some(i) = self.peers.iter().position(|p| p.addr == addr) {
            return self.peers.get_mut(i);
        }
        let fresh = PeerWindow {
            addr,
            window: Self::INITIAL_WINDOW,
            threshold: Self::MAX_WINDOW,
            in_flight: 0,
            acks_since_growth: 0,
            last_used: Instant::ZERO,
        };
        if self.peers.push(fresh).is_err() {
            // Forget the idle peer used longest ago.
            let victim = self
                .peers
                .iter()
                .enumerate()
                .filter(|(_, p)| p.in_flight == 0)
                .min_by_key(|(_, p)| p.last_used)
                .map(|(i, _)| i)?;
            let slot = self.peers.get_mut(victim)?;
            *slot = fresh;
            return Some(slot);
        }
        self.peers.last_mut()
    }

    /// Whether one more datagram may go to `addr` now. A peer that is not
    /// tracked (all `N` places hold busy peers) may always be sent to: the
    /// window limits bursts to a peer, it must not stall requests to
    /// others.
    pub fn can_send(&self, addr: PeerAddr) -> bool {
        match self.get(addr) {
            Some(p) => p.in_flight < p.window,
            None => true,
        }
    }

    /// Like [`PeerWindows::can_send`], with the window also capped at
    /// `limit`, the receive window the peer advertised (if any).
    pub fn can_send_within(&self, addr: PeerAddr, limit: Option<u8>) -> bool {
        let limit = limit.filter(|l| *l > 0).unwrap_or(u8::MAX);
        match self.get(addr) {
            Some(p) => p.in_flight < p.window.min(limit),
            None => true,
        }
    }

    /// Records a datagram sent to `addr`.
    pub fn on_send_at(&mut self, addr: PeerAddr, now: Instant) {
        if let Some(p) = self.get_or_insert(addr) {
            p.in_flight = p.in_flight.saturating_add(1);
            p.last_used = now;
        }
    }

    /// Records a datagram sent to `addr` (without a time).
    pub fn on_send(&mut self, addr: PeerAddr) {
        let last = self.get(addr).map(|p| p.last_used).unwrap_or(Instant::ZERO);
        self.on_send_at(addr, last);
    }

    /// A datagram to `addr` was acknowledged: the window grows.
    pub fn on_ack(&mut self, addr: PeerAddr) {
        if let Some(p) = self.peers.iter_mut().find(|p| p.addr == addr) {
            p.in_flight = p.in_flight.saturating_sub(1);
            if p.window < p.threshold {
                p.window = p.window.saturating_add(1).min(Self::MAX_WINDOW);
            } else {
                p.acks_since_growth = p.acks_since_growth.saturating_add(1);
                if p.acks_since_growth >= Self::PROBE_INTERVAL {
                    p.acks_since_growth = 0;
                    p.window = p.window.saturating_add(1).min(Self::MAX_WINDOW);
                }
            }
        }
    }

    /// A datagram to `addr` was lost (timed out): the window halves and
    /// growth beyond it becomes slow.
    pub fn on_loss(&mut self, addr: PeerAddr) {
        if let Some(p) = self.peers.iter_mut().find(|p| p.addr == addr) {
            p.in_flight = p.in_flight.saturating_sub(1);
            p.window = (p.window / 2).max(1);
            p.threshold = p.window;
            p.acks_since_growth = 0;
        }
    }

    /// A request to `addr` ended without telling whether it got through (an
    /// answer from elsewhere, or a refusal): frees its place in the window.
    pub fn on_done(&mut self, addr: PeerAddr) {
        if let Some(p) = self.peers.iter_mut().find(|p| p.addr == addr) {
            p.in_flight = p.in_flight.saturating_sub(1);
        }
    }

    /// The current window of `addr`.
    pub fn window(&self, addr: PeerAddr) -> u8 {
        self.get(addr).map(|p| p.window).unwrap_or(Self::INITIAL_WINDOW)
    }
}

impl<const N: usize> Default for PeerWindows<N> {
    fn default() -> Self {
        Self::new()
    }
}

/// The receive windows peers advertised (how many large datagrams each
/// takes in flight from one sender), for the `N` peers with a limit heard
/// most recently. Forgetting one only means that its windows open as for
/// any peer until it is heard again.
#[derive(Clone, Debug)]
pub struct AdvertisedWindows<const N: usize> {
    peers: heapless::Vec<(PeerAddr, u8), N>,
}

impl<const N: usize> AdvertisedWindows<N> {
    /// No limits known.
    pub const fn new() -> Self {
        AdvertisedWindows { peers: heapless::Vec::new() }
    }

    /// `addr` advertised `window` (0: no limit) in a datagram it sent.
    pub fn note(&mut self, addr: PeerAddr, window: u8) {
        let known = self.peers.iter().position(|(a, _)| *a == addr);
        match (known, window) {
            (None, 0) => {}
            (Some(i), 0) => {
                self.peers.remove(i);
            }
            (Some(i), w) => {
                // Move to the back: most recently heard.
                self.peers.remove(i);
                let _ = self.peers.push((addr, w));
            }
            (None, w) => {
                if self.peers.is_full() {
                    self.peers.remove(0);
                }
                let _ = self.peers.push((addr, w));
            }
        }
    }

    /// The window `addr` advertised, if it advertised a limit.
    pub fn get(&self, addr: PeerAddr) -> Option<u8> {
        self.peers.iter().find(|(a, _)| *a == addr).map(|(_, w)| *w)
    }
}

impl<const N: usize> Default for AdvertisedWindows<N> {
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
    fn advertised_windows_keep_the_most_recent_limits() {
        let mut w = AdvertisedWindows::<2>::new();
        w.note(peer(1), 1);
        w.note(peer(2), 3);
        assert_eq!(w.get(peer(1)), Some(1));
        w.note(peer(3), 2); // forgets peer 1, heard longest ago
        assert_eq!(w.get(peer(1)), None);
        assert_eq!(w.get(peer(3)), Some(2));
        w.note(peer(3), 0); // no limit any more
        assert_eq!(w.get(peer(3)), None);
        assert_eq!(w.get(peer(2)), Some(3));
    }

    #[test]
    fn rto_follows_rfc6298() {
        let mut rtt = RttEstimator::new(
            Duration::from_millis(300),
            Duration::from_millis(10),
            Duration::from_secs(2),
        );
        assert_eq!(rtt.rto(0), Duration::from_millis(300));
        rtt.sample(Duration::from_millis(20));
        // srtt 20, rttvar 10: 20 + 40 = 60
        assert_eq!(rtt.rto(0), Duration::from_millis(60));
        assert_eq!(rtt.rto(1), Duration::from_millis(120));
        assert_eq!(rtt.rto(200), Duration::from_secs(2));
        rtt.sample(Duration::from_millis(20));
        // rttvar 3/4*10 + 0 = 7.5, srtt 20: 20 + 30 = 50
        assert_eq!(rtt.rto(0), Duration::from_millis(50));
    }

    #[test]
    fn advertised_limit_caps_the_window() {
        let mut w = PeerWindows::<2>::new();
        let p = peer(1);
        for _ in 0..10 {
            w.on_send(p);
            w.on_ack(p);
        }
        assert!(w.can_send_within(p, Some(1)));
        w.on_send(p);
        assert!(!w.can_send_within(p, Some(1)), "the advertised limit holds");
        assert!(w.can_send_within(p, None), "without a limit the grown window holds");
        assert!(w.can_send_within(p, Some(0)), "0 advertises no limit");
    }

    #[test]
    fn window_grows_on_acks_and_halves_on_loss() {
        let mut w = PeerWindows::<2>::new();
        let p = peer(1);
        for _ in 0..10 {
            w.on_send(p);
            w.on_ack(p);
        }
        assert_eq!(w.window(p), 11);
        w.on_send(p);
        w.on_loss(p);
        assert_eq!(w.window(p), 5);
        // Beyond the threshold growth is one per PROBE_INTERVAL acks.
        for _ in 0..PeerWindows::<2>::PROBE_INTERVAL - 1 {
            w.on_send(p);
            w.on_ack(p);
        }
        assert_eq!(w.window(p), 5);
        w.on_send(p);
        w.on_ack(p);
        assert_eq!(w.window(p), 6);
    }

    #[test]
    fn small_peer_that_loses_the_second_datagram_settles_at_one() {
        let mut w = PeerWindows::<2>::new();
        let p = peer(1);
        w.on_send(p);
        w.on_ack(p);
        assert_eq!(w.window(p), 2);
        w.on_send(p);
        w.on_send(p);
        w.on_ack(p);
        w.on_loss(p);
        assert_eq!(w.window(p), 1);
        w.on_send(p);
        assert!(!w.can_send(p));
    }

    #[test]
    fn idle_peers_are_forgotten_busy_ones_are_not() {
        let mut w = PeerWindows::<2>::new();
        w.on_send_at(peer(1), Instant::from_millis(1));
        w.on_send_at(peer(2), Instant::from_millis(2));
        assert!(w.can_send(peer(3))); // both busy: peer 3 goes untracked
        w.on_send_at(peer(3), Instant::from_millis(3)); // no room: not tracked
        assert_eq!(w.window(peer(3)), PeerWindows::<2>::INITIAL_WINDOW);
        w.on_ack(peer(1));
        w.on_send_at(peer(3), Instant::from_millis(3));
        assert_eq!(w.window(peer(1)), PeerWindows::<2>::INITIAL_WINDOW); // forgotten
        assert!(!w.can_send(peer(2)));
    }
}
