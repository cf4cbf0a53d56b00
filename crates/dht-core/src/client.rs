//! What uploads and downloads share: choosing a holder, pacing, discovery.
//!
//! A [`Requester`] picks which member of a fragment's shard a request goes
//! to (the best candidate in rendezvous order that the request has not
//! tried yet, or the `attempt`-th one when all were tried, skipping peers
//! whose window is full), measures round trips, keeps the per-peer windows, and
//! asks the overlay for members of a shard the node knows nobody in, first
//! after [`DISCOVERY_INTERVAL`] and then at doubling intervals up to
//! [`DISCOVERY_MAX_INTERVAL`], giving up after [`DISCOVERY_ATTEMPTS`]
//! (about 30 s: a network that is still starting has time to cover its
//! shards).

use crate::config::SHARD_COUNT;
use crate::flow::{PeerWindows, RttEstimator};
use crate::fragment::FragmentHash;
use crate::holders::{Placement, MAX_COPIES, SHARD_COPIES};
use crate::id::{PeerAddr, PeerInfo};
use crate::node::{Node, Transmit};
use crate::requests::{Request, RequestTable};
use crate::store::FragmentStore;
use crate::time::{Duration, Instant};
use crate::wire::HolderList;

/// How long a node with no member of a shard waits after its first
/// search before asking around again; the wait doubles with each search...
pub const DISCOVERY_INTERVAL: Duration = Duration::from_millis(300);
/// ...up to this.
pub const DISCOVERY_MAX_INTERVAL: Duration = Duration::from_secs(2);
/// How many searches it makes; the request fails when the last one's wait
/// ends with nobody found (30.1 s after the first).
pub const DISCOVERY_ATTEMPTS: u8 = 17;

/// The wait after the `attempts`-th search of a shard.
pub(crate) fn discovery_wait(attempts: u8) -> Duration {
    DISCOVERY_INTERVAL
        .saturating_mul(1 << attempts.saturating_sub(1).min(3))
        .min(DISCOVERY_MAX_INTERVAL)
}
/// How soon a request that had to wait (every candidate's window full, or
/// the shard still being searched) is tried again.
pub const RETRY_TICK: Duration = Duration::from_millis(50);
/// A request is given up once it has been tried this many times...
pub const MAX_ATTEMPTS: u8 = 16;
/// ...and for at least this long since its first attempt, so that a
/// fragment still being replicated (asked of members that do not have it
/// yet) is not given up after a quick round of NOTFOUNDs.
pub const GIVE_UP_AFTER: Duration = Duration::from_secs(8);

/// The first request that is not in flight and has used up its attempts
/// at `now`: the operation fails with it.
pub(crate) fn spent<T, const N: usize>(
    requests: &RequestTable<T, N>,
    now: Instant,
) -> Option<&Request<T>> {
    requests.iter().find(|r| !r.is_in_flight() && exhausted(r.attempts, r.first_sent, now))
}

/// Whether a request first sent at `first_sent` and tried `attempts`
/// times should be given up at `now`.
pub(crate) fn exhausted(attempts: u8, first_sent: Option<Instant>, now: Instant) -> bool {
    attempts >= MAX_ATTEMPTS && first_sent.is_none_or(|t| now >= t + GIVE_UP_AFTER)
}

/// How long to wait before asking again after a refusal (NOTFOUND, store
/// full): the first few go straight to the next candidate, then the waits
/// double from 25 ms up to 1 s, so a fragment that nobody has yet is not
/// asked for in a tight loop.
pub(crate) fn refusal_backoff(attempts: u8) -> Duration {
    match attempts {
        0..=3 => Duration::ZERO,
        n => Duration::from_millis(25)
            .saturating_mul(1 << (n - 4).min(7))
            .min(Duration::from_secs(1)),
    }
}

/// The progress events of an upload or download, for the application to
/// poll; when nobody polls, the oldest are dropped.
#[derive(Clone, Debug)]
pub(crate) struct EventQueue<E> {
    events: heapless::Deque<E, 16>,
}

impl<E> EventQueue<E> {
    pub(crate) const fn new() -> Self {
        EventQueue { events: heapless::Deque::new() }
    }

    pub(crate) fn push(&mut self, event: E) {
        if self.events.is_full() {
            self.events.pop_front();
        }
        let _ = self.events.push_back(event);
    }

    pub(crate) fn pop(&mut self) -> Option<E> {
        self.events.pop_front()
    }
}

/// Candidates considered per fragment.
const CANDIDATES: usize = 32;

/// The outcome of choosing where a request goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Pick {
    /// Send it to this peer now.
    Target(PeerAddr),
    /// The shard is being searched: try again [`RETRY_TICK`] later.
    Wait,
    /// Every candidate's window is full: try again when one frees
    /// ([`crate::requests::RequestTable::unblock`]), [`RETRY_TICK`] at the
    /// latest.
    Full,
    /// Nobody in the shard could be found.
    NoHolder,
}

#[derive(Clone, Copy, Debug, Default)]
struct Discovery {
    last: Option<Instant>,
    attempts: u8,
}

/// Peers a request remembers having asked without success: a shard's top
/// three, the one that acknowledged an upload (which a read-back skips),
/// and as many again named by NOTFOUNDs. With four, a read-back forgot the
/// first holders it asked while they were still fetching and went round
/// the others for 8 s without asking them again.
const TRIED: usize = 8;

/// The last peers a request asked without success.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Tried {
    peers: [Option<PeerAddr>; TRIED],
    next: usize,
}

impl Tried {
    /// An empty list.
    pub(crate) const fn new() -> Self {
        Tried { peers: [None; TRIED], next: 0 }
    }

    /// Whether the list is empty.
    pub(crate) fn is_empty(&self) -> bool {
        self.peers.iter().all(Option::is_none)
    }

    /// How many peers are in the list.
    pub(crate) fn len(&self) -> usize {
        self.peers.iter().filter(|p| p.is_some()).count()
    }

    /// Whether `peer` is in the list.
    pub(crate) fn contains(&self, peer: &PeerAddr) -> bool {
        self.peers.contains(&Some(*peer))
    }

    /// Records that `peer` failed (the oldest entry makes room).
    pub(crate) fn remember(&mut self, peer: PeerAddr) {
        if self.contains(&peer) {
            return;
        }
        if let Some(slot) = self.peers.get_mut(self.next % TRIED) {
            *slot = Some(peer);
        }
        self.next = (self.next + 1) % TRIED;
    }
}

/// Holders named by NOTFOUND and STORED answers, kept for the fragments
/// they were named for.
const HINTS: usize = 16;

/// Adds the `peers` not among `candidates` yet, while there is room.
fn push_new<const N: usize>(
    candidates: &mut heapless::Vec<PeerInfo, N>,
    peers: impl Iterator<Item = PeerInfo>,
) {
    for peer in peers {
        if !candidates.iter().any(|p| p.addr == peer.addr) {
            let _ = candidates.push(peer);
        }
    }
}

/// Holder choice, round-trip estimation and per-peer windows.
#[derive(Clone, Debug)]
pub(crate) struct Requester<const PEERS: usize> {
    rtt: RttEstimator,
    windows: PeerWindows<PEERS>,
    discovery: [Discovery; SHARD_COUNT as usize],
    hints: heapless::Deque<(FragmentHash, HolderList), HINTS>,
    /// A shard whose search just began, for the operation to report.
    search_began: Option<crate::id::Shard>,
    /// A peer's window gained room since requests were last unblocked.
    freed: bool,
    /// Searches of a shard before its requests fail.
    searches: u8,
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
            hints: heapless::Deque::new(),
            search_began: None,
            freed: false,
            searches: DISCOVERY_ATTEMPTS,
        }
    }

    /// Chooses the peer for the `attempt`-th request of `hash`. A request
    /// for a fragment whose copies may be spread over several shards (an
    /// index, [`crate::holders::Placement`]) may go, after the members of
    /// its own shard, to the best known members of the shards they are
    /// spread to (`spread`).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn pick<S: FragmentStore, const N: usize, const D: usize, const F: usize>(
        &mut self,
        now: Instant,
        node: &mut Node<S, N, D, F>,
        hash: &FragmentHash,
        attempt: u8,
        tried: &Tried,
        spread: bool,
        sink: &mut impl Transmit,
    ) -> Pick {
        let mut candidates: heapless::Vec<PeerInfo, CANDIDATES> = heapless::Vec::new();
        // Holders a node named for this fragment come first: they may be
        // missing from our table (a shard larger than our quota for it).
        let mut named_count = 0;
        if let Some((_, named)) = self.hints.iter().find(|(h, _)| h == hash) {
            for peer in named.iter() {
                let _ = candidates.push(*peer);
            }
            named_count = candidates.len();
        }
        let known = node.holder_candidates::<CANDIDATES>(hash);
        push_new(&mut candidates, known.iter());
        // The other shards of a spread fragment only once every member of
        // its own shard we know was asked (a fragment that is not spread
        // is not there: asking them first would spend the attempts).
        if spread && candidates.iter().all(|p| tried.contains(&p.addr)) {
            for shard in Placement::counted(MAX_COPIES as u8).shards(hash).skip(1) {
                let best = node.holder_candidates_in::<SHARD_COPIES>(hash, shard);
                push_new(&mut candidates, best.iter());
            }
        }
        if candidates.is_empty() {
            return if self.discover(now, node, hash.shard(), sink) {
                Pick::Wait
            } else {
                Pick::NoHolder
            };
        }
        let count = candidates.len();
        // A request that remembers whom it tried goes to the best-ranked
        // candidate not tried yet; one that does not (an upload) goes round
        // the candidates by attempt.
        let fresh = if tried.is_empty() {
            None
        } else {
            candidates.iter().find(|p| !tried.contains(&p.addr)).copied()
        };
        let all_tried =
            if tried.is_empty() { usize::from(attempt) >= count } else { fresh.is_none() };
        if all_tried {
            // Every known member was tried: look for more while retrying.
            self.discover(now, node, hash.shard(), sink);
        }
        if let Some(peer) = fresh {
            if self.windows.can_send_within(peer.addr, node.advertised_window(peer.addr)) {
                return Pick::Target(peer.addr);
            }
        }
        // Named holders are the ones to ask: wait for room at one of them
        // rather than ask a node that said it is not a holder.
        let count = if named_count > 0 { named_count } else { count };
        let start = usize::from(attempt) % count;
        for k in 0..count {
            if let Some(peer) = candidates.get((start + k) % count) {
                if self.windows.can_send_within(peer.addr, node.advertised_window(peer.addr)) {
                    return Pick::Target(peer.addr);
                }
            }
        }
        Pick::Full
    }

    /// Searches a shard nobody is known in `searches` times (instead of
    /// [`DISCOVERY_ATTEMPTS`]) before its requests fail: a download that
    /// can do without a fragment (a coded file) does not wait 30 s.
    pub(crate) fn limit_searches(&mut self, searches: u8) {
        self.searches = searches.min(DISCOVERY_ATTEMPTS);
    }

    /// Remembers the holders a node named for `hash`: members of its own
    /// shard (a member of a shard its copies may be spread to names its
    /// shard's, which would come before the fragment's own holders).
    pub(crate) fn hint(&mut self, hash: FragmentHash, holders: &HolderList) {
        if holders.is_empty() || holders.iter().any(|p| p.shard() != hash.shard()) {
            return;
        }
        if let Some(entry) = self.hints.iter_mut().find(|(h, _)| *h == hash) {
            entry.1 = holders.clone();
            return;
        }
        if self.hints.is_full() {
            self.hints.pop_front();
        }
        let _ = self.hints.push_back((hash, holders.clone()));
    }

    /// Asks around for members of `shard`, waiting [`discovery_wait`]
    /// between searches; `false` once the wait after the last of
    /// [`DISCOVERY_ATTEMPTS`] searches has passed.
    fn discover<S: FragmentStore, const N: usize, const D: usize, const F: usize>(
        &mut self,
        now: Instant,
        node: &mut Node<S, N, D, F>,
        shard: crate::id::Shard,
        sink: &mut impl Transmit,
    ) -> bool {
        let Some(state) = self.discovery.get_mut(shard.index()) else { return false };
        let due = state.last.is_none_or(|last| now >= last + discovery_wait(state.attempts));
        if !due {
            return true;
        }
        if state.attempts >= self.searches {
            return false;
        }
        if state.attempts == 0 {
            self.search_began = Some(shard);
        }
        state.last = Some(now);
        state.attempts += 1;
        node.discover_shard(now, shard, 3, sink);
        true
    }

    /// The shard whose search began since the last call, if any: the
    /// operation tells its application that it waits for one.
    pub(crate) fn take_search_began(&mut self) -> Option<crate::id::Shard> {
        self.search_began.take()
    }

    /// Requests in flight past their deadline at `now` are lost: their
    /// peer's window shrinks and they wait to be sent again at once.
    /// `lost` sees each item with the peer it was sent to.
    pub(crate) fn expire<T, const N: usize>(
        &mut self,
        requests: &mut RequestTable<T, N>,
        now: Instant,
        mut lost: impl FnMut(&mut T, PeerAddr),
    ) {
        while let Some(i) = requests.next_overdue(now) {
            let Some(request) = requests.get_mut(i) else { break };
            if let Some(to) = request.in_flight_to() {
                self.on_loss(to);
                lost(&mut request.item, to);
            }
            request.wait_until(now);
        }
    }

    /// `request` was answered by `from` (the fragment, or an
    /// acknowledgement): the peer it was sent to has room again, and the
    /// round trip is sampled if that peer answered a first attempt
    /// (Karn's rule).
    pub(crate) fn answered<T>(&mut self, request: &Request<T>, from: PeerAddr, now: Instant) {
        self.answered_sampling(request, from, now, true);
    }

    /// As [`Requester::answered`]; `sample: false` when the round trip was
    /// sampled already (a download samples the first piece of a fragment,
    /// not its completion, which may take several rounds under loss).
    pub(crate) fn answered_sampling<T>(
        &mut self,
        request: &Request<T>,
        from: PeerAddr,
        now: Instant,
        sample: bool,
    ) {
        match (request.in_flight_to(), request.sent_at()) {
            (Some(to), Some(sent_at)) if to == from => {
                self.on_answer(to, sent_at, sample && request.attempts == 1, now)
            }
            (Some(to), _) => self.on_done(to),
            _ => {}
        }
    }

    pub(crate) fn on_sent(&mut self, to: PeerAddr, now: Instant) {
        self.windows.on_send_at(to, now);
    }

    /// An answer from `to` to a request sent at `sent_at`; the round trip is
    /// sampled only for first attempts (Karn's rule).
    pub(crate) fn on_answer(&mut self, to: PeerAddr, sent_at: Instant, first: bool, now: Instant) {
        self.windows.on_ack(to);
        self.freed = true;
        if first {
            self.rtt.sample(now - sent_at);
        }
    }

    pub(crate) fn on_loss(&mut self, to: PeerAddr) {
        self.windows.on_loss(to);
        self.freed = true;
    }

    pub(crate) fn on_done(&mut self, to: PeerAddr) {
        self.windows.on_done(to);
        self.freed = true;
    }

    /// Lets the requests that waited for a window go at `now` if a window
    /// freed since the last call: without this they waited [`RETRY_TICK`]
    /// (50 ms), which was most of the time of an upload to 256 nodes.
    pub(crate) fn unblock<T, const N: usize>(
        &mut self,
        requests: &mut RequestTable<T, N>,
        now: Instant,
    ) {
        if core::mem::take(&mut self.freed) {
            requests.unblock(now);
        }
    }

    pub(crate) fn rto(&self, attempt: u8) -> Duration {
        self.rtt.rto(attempt)
    }

    /// The first answer to `request` came at `now` (a piece, or the
    /// holder's FILEGET for an offer): one round trip, sampled if the
    /// request is on its first attempt (Karn's rule) and `sampled` is not
    /// yet set; `sampled` is set either way, so that a later answer, which
    /// may come after rounds of asking again under loss, is not sampled.
    pub(crate) fn first_answer<T>(
        &mut self,
        request: &Request<T>,
        sampled: &mut bool,
        now: Instant,
    ) {
        if !*sampled && request.attempts == 1 {
            if let Some(sent_at) = request.sent_at() {
                self.rtt.sample(now - sent_at);
            }
        }
        *sampled = true;
    }

    pub(crate) fn srtt(&self) -> Option<Duration> {
        self.rtt.srtt()
    }
}

#[cfg(test)]
mod tests {
    extern crate std;

    use super::*;
    use crate::id::{NodeId, Shard};
    use crate::testing::Net;

    #[test]
    fn refusals_go_to_the_next_candidate_at_once_then_back_off_to_a_second() {
        for attempts in 0..=3 {
            assert_eq!(refusal_backoff(attempts), Duration::ZERO);
        }
        assert_eq!(refusal_backoff(4), Duration::from_millis(25));
        assert_eq!(refusal_backoff(5), Duration::from_millis(50));
        assert_eq!(refusal_backoff(9), Duration::from_millis(800));
        assert_eq!(refusal_backoff(10), Duration::from_secs(1));
        assert_eq!(refusal_backoff(255), Duration::from_secs(1));
    }

    #[test]
    fn a_request_is_given_up_only_after_its_attempts_and_eight_seconds() {
        let first = Some(Instant::from_millis(1_000));
        assert!(!exhausted(MAX_ATTEMPTS - 1, first, Instant::from_millis(60_000)));
        assert!(!exhausted(MAX_ATTEMPTS, first, Instant::from_millis(8_999)));
        assert!(exhausted(MAX_ATTEMPTS, first, Instant::from_millis(9_000)));
        assert!(exhausted(MAX_ATTEMPTS, None, Instant::ZERO));
    }

    #[test]
    fn tried_remembers_the_last_eight_peers() {
        let peer = |p: u16| PeerAddr::v4([127, 0, 0, 1], p);
        let mut tried = Tried::new();
        assert!(tried.is_empty());
        for p in 1..=9 {
            tried.remember(peer(p));
            tried.remember(peer(p)); // no duplicates
        }
        assert!(!tried.contains(&peer(1)), "the oldest made room");
        assert!((2..=9).all(|p| tried.contains(&peer(p))));
    }

    #[test]
    fn pick_asks_the_holders_a_node_named_first() {
        let mut net = Net::joined(1, 32, 4);
        let client = net.add_joined_client(0, Duration::from_secs(5));
        let hash = FragmentHash([0x13; 32]);
        let named = PeerInfo {
            id: NodeId::in_shard(77, hash.shard()),
            addr: PeerAddr::v4([127, 0, 0, 1], 30_000),
        };
        let mut holders = HolderList::new();
        holders.push(named).unwrap();
        let mut requester = Requester::<8>::new();
        let now = net.now;
        let mut picked = None;
        net.command(client, |node, _, out| {
            let before = requester.pick(now, node, &hash, 0, &Tried::new(), false, out);
            requester.hint(hash, &holders);
            let after = requester.pick(now, node, &hash, 0, &Tried::new(), false, out);
            picked = Some((before, after));
        });
        let (before, after) = picked.unwrap();
        assert!(matches!(before, Pick::Target(to) if to != named.addr));
        assert_eq!(after, Pick::Target(named.addr));
    }

    #[test]
    fn pick_searches_a_shard_it_knows_nobody_in_then_gives_up() {
        let mut net = Net::new(2);
        let client = net.add_client();
        let lonely = net.add_member(0, 4);
        net.join(client, lonely);
        net.drive_bounded(100);
        let hash = FragmentHash([0x21; 32]);
        assert_ne!(hash.shard(), Shard::new(0).unwrap());
        let mut requester = Requester::<8>::new();
        let mut picks = std::vec::Vec::new();
        let mut now = net.now;
        for k in 0..DISCOVERY_ATTEMPTS {
            net.command(client, |node, _, out| {
                picks.push(requester.pick(now, node, &hash, 0, &Tried::new(), false, out));
                // Not yet time for the next search: it still waits.
                let early = now + discovery_wait(k + 1) - Duration::from_millis(1);
                picks.push(requester.pick(early, node, &hash, 0, &Tried::new(), false, out));
            });
            now += discovery_wait(k + 1);
        }
        assert_eq!(requester.take_search_began(), Some(hash.shard()));
        assert_eq!(requester.take_search_began(), None);
        assert!(picks.iter().all(|p| *p == Pick::Wait));
        let searched = now - net.now;
        assert_eq!(searched, Duration::from_millis(30_100), "{searched}");
        net.command(client, |node, _, out| {
            assert_eq!(
                requester.pick(now, node, &hash, 0, &Tried::new(), false, out),
                Pick::NoHolder
            );
        });
    }
}
