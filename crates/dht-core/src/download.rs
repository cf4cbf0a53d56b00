//! Downloading a file: the client state machine behind `dhtrecv`.
//!
//! A [`Download`] first fetches the index fragment by its hash, validates
//! it, and reports its name and size ([`DownloadEvent::IndexReceived`]).
//! It then requests the data fragments, up to `WINDOW` at a time, from the
//! members of each fragment's shard. A fragment comes in pieces that fit a
//! datagram, written into its slot as they arrive; once every unit is
//! there the slot is checked against the fragment's hash. A request whose
//! pieces stop coming asks the same holder again for the missing units only
//! (selective repeat); one that gets nothing in time, or NOTFOUND, or bytes
//! that hash wrong, goes to the next candidate holder. The download keeps
//! fragments that arrive out of order in its `WINDOW` slots and hands
//! bytes to the caller's [`FileSink`] strictly in file order, the last
//! fragment cut to the file's length.
//!
//! Memory: `WINDOW` slots of 8 KB plus the index. A host uses 16 or more
//! slots; a microcontroller can download with one.

use core::fmt;

use crate::client::{refusal_backoff, spent, EventQueue, Pick, Requester, Tried, RETRY_TICK};
use crate::config::FRAGMENT_SIZE;
use crate::driver::App;
use crate::fragment::{FragmentBytes, FragmentHash};
use crate::id::{PeerAddr, Shard};
use crate::index::{IndexError, IndexFragment, IndexName};
use crate::node::{Node, Reply, Transmit};
use crate::requests::{Request, RequestTable};
use crate::store::FragmentStore;
use crate::time::Instant;
use crate::wire::{piece_mask, ALL_UNITS, UNIT};

/// Where downloaded bytes go, in file order.
pub trait FileSink {
    /// Appends `bytes` to the file. Returns `false` if they cannot be
    /// written (the download then fails).
    fn write(&mut self, bytes: &[u8]) -> bool;
}

/// Why a download failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DownloadError {
    /// No holder had the index: the hash is unknown to the network (or all
    /// its holders are gone).
    IndexNotFound {
        /// Attempts made.
        attempts: u8,
    },
    /// The index fragment is malformed.
    BadIndex(IndexError),
    /// A data fragment could not be obtained.
    FragmentUnavailable {
        /// Its position in the file.
        fragment: u16,
        /// Attempts made.
        attempts: u8,
    },
    /// No member of this shard could be found.
    NoHolder {
        /// The shard.
        shard: Shard,
    },
    /// The sink refused the bytes.
    SinkFailed,
}

impl fmt::Display for DownloadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DownloadError::IndexNotFound { attempts } => write!(
                f,
                "no node holds a file with this hash ({attempts} holders asked); \
                 check the hash dhtsend printed"
            ),
            DownloadError::BadIndex(e) => write!(f, "the index fragment is invalid: {e}"),
            DownloadError::FragmentUnavailable { fragment, attempts } => write!(
                f,
                "fragment {fragment} of the file could not be fetched after {attempts} attempts"
            ),
            DownloadError::NoHolder { shard } => {
                write!(f, "no node of shard {shard} could be found")
            }
            DownloadError::SinkFailed => f.write_str("the downloaded bytes could not be written"),
        }
    }
}

/// Progress of a download.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DownloadEvent {
    /// The index arrived and is valid.
    IndexReceived {
        /// The file name it carries.
        name: IndexName,
        /// The file size.
        size: u64,
        /// Its data fragments.
        fragments: u16,
    },
    /// Fragment `fragment` was written to the sink.
    Written {
        /// Its position in the file.
        fragment: u16,
    },
    /// No member of `shard` is known yet: the download searches the
    /// network for one (about 30 s at most) before it fails with
    /// `NoHolder`.
    Searching {
        /// The shard.
        shard: crate::id::Shard,
    },
    /// The whole file was written.
    Finished {
        /// Bytes written.
        size: u64,
    },
    /// The download stopped.
    Failed(DownloadError),
}

/// What a request asks for: the index (`item: None`) or a data fragment,
/// and the peers that failed it.
#[derive(Clone, Copy, Debug)]
struct Wanted {
    item: Option<u16>,
    hash: FragmentHash,
    /// Peers that answered NOTFOUND, did not answer, or sent wrong bytes.
    tried: Tried,
    /// Pieces came since the last FILEGET.
    progress: bool,
    /// The round trip was sampled (at the first piece of a first
    /// attempt), or can no longer be (missing pieces were asked again).
    sampled: bool,
}

/// A place for one fragment in the window (the index is received in the
/// first slot before any data fragment is asked for).
#[derive(Clone)]
struct Slot {
    item: Option<u16>,
    ready: bool,
    /// Units received, bit `i` for unit `i`.
    have: u16,
    data: FragmentBytes,
}

impl Slot {
    const EMPTY: Slot = Slot { item: None, ready: false, have: 0, data: [0; FRAGMENT_SIZE] };
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    FetchingIndex,
    Fetching,
    Finished,
    Failed(DownloadError),
}

pub use crate::client::{GIVE_UP_AFTER, MAX_ATTEMPTS};
/// Peers whose windows are tracked at once.
const PEERS: usize = 32;

/// A download into `K` in progress, with `WINDOW` fragment slots.
pub struct Download<K, const WINDOW: usize = 16> {
    sink: K,
    index_hash: FragmentHash,
    index: Option<IndexFragment>,
    slots: [Slot; WINDOW],
    next_deliver: u16,
    next_assign: u16,
    written: u64,
    /// The index's request, then one per slot being filled.
    requests: RequestTable<Wanted, WINDOW>,
    requester: Requester<PEERS>,
    state: State,
    events: EventQueue<DownloadEvent>,
}

impl<K: FileSink, const WINDOW: usize> Download<K, WINDOW> {
    /// A window of zero slots could never hold a fragment.
    const WINDOW_IS_NOT_EMPTY: () = assert!(WINDOW > 0, "a download needs at least one slot");

    /// A download of the file whose index hashes to `index_hash`, written
    /// to `sink`.
    pub fn new(index_hash: FragmentHash, sink: K) -> Self {
        let () = Self::WINDOW_IS_NOT_EMPTY;
        let mut requests = RequestTable::new();
        let wanted = Wanted {
            item: None,
            hash: index_hash,
            tried: Tried::new(),
            progress: false,
            sampled: false,
        };
        let _ = requests.push(Request::new(wanted, Instant::ZERO));
        Download {
            sink,
            index_hash,
            index: None,
            slots: [const { Slot::EMPTY }; WINDOW],
            next_deliver: 0,
            next_assign: 0,
            written: 0,
            requests,
            requester: Requester::new(),
            state: State::FetchingIndex,
            events: EventQueue::new(),
        }
    }

    /// The index, once received.
    pub fn index(&self) -> Option<&IndexFragment> {
        self.index.as_ref()
    }

    /// Bytes written to the sink so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// The sink.
    pub fn sink(&self) -> &K {
        &self.sink
    }

    /// The sink, mutably.
    pub fn sink_mut(&mut self) -> &mut K {
        &mut self.sink
    }

    /// Gives the sink back.
    pub fn into_sink(self) -> K {
        self.sink
    }

    /// Whether the whole file was written.
    pub fn is_finished(&self) -> bool {
        self.state == State::Finished
    }

    /// Whether the download is over (finished or failed).
    pub fn is_done(&self) -> bool {
        matches!(self.state, State::Finished | State::Failed(_))
    }

    /// The error that stopped the download, if any.
    pub fn error(&self) -> Option<DownloadError> {
        match self.state {
            State::Failed(e) => Some(e),
            _ => None,
        }
    }

    /// The next progress event.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<DownloadEvent> {
        self.events.pop()
    }

    /// When [`Download::handle_timeout`] should next be called: a request's
    /// deadline, or when a waiting one may be sent again.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        if Download::is_done(self) {
            return None;
        }
        // Every request has a slot of its own: there is always room.
        self.requests.poll_timeout(true)
    }

    /// Sends the first request.
    pub fn start<S: FragmentStore, const N: usize, const D: usize, const F: usize>(
        &mut self,
        now: Instant,
        node: &mut Node<S, N, D, F>,
        sink: &mut impl Transmit,
    ) {
        self.send_more(now, node, sink);
    }

    /// Fails the download if a request that is not in flight has used up
    /// its attempts.
    fn check_attempts(&mut self, now: Instant) {
        let Some(request) = spent(&self.requests, now).copied() else { return };
        let attempts = request.attempts;
        match request.item.item {
            None => self.fail(DownloadError::IndexNotFound { attempts }),
            Some(fragment) => self.fail(DownloadError::FragmentUnavailable { fragment, attempts }),
        }
    }

    fn take_index(&mut self) {
        if self.state != State::FetchingIndex {
            return;
        }
        let Some(slot) = self.slots.first_mut() else { return };
        slot.have = 0;
        match IndexFragment::decode(&slot.data) {
            Ok(index) => {
                let fragments = index.fragment_count() as u16;
                self.events.push(DownloadEvent::IndexReceived {
                    name: *index.name(),
                    size: index.file_size(),
                    fragments,
                });
                self.index = Some(index);
                self.state = State::Fetching;
                if fragments == 0 {
                    self.finish();
                }
            }
            Err(e) => self.fail(DownloadError::BadIndex(e)),
        }
    }

    /// Writes ready fragments in order and frees their slots.
    fn deliver(&mut self) {
        if self.state != State::Fetching {
            return;
        }
        loop {
            let Some(index) = self.index.as_ref() else { return };
            let item = self.next_deliver;
            if usize::from(item) >= index.fragment_count() {
                break;
            }
            let len = index.fragment_len(usize::from(item));
            let Some(slot) = self.slots.get_mut(usize::from(item) % WINDOW) else { return };
            if slot.item != Some(item) || !slot.ready {
                return;
            }
            let bytes = slot.data.get(..len).unwrap_or(&[]);
            if !self.sink.write(bytes) {
                self.fail(DownloadError::SinkFailed);
                return;
            }
            slot.item = None;
            slot.ready = false;
            self.written += len as u64;
            self.next_deliver += 1;
            self.events.push(DownloadEvent::Written { fragment: item });
        }
        self.finish();
    }

    fn finish(&mut self) {
        if self.state == State::Fetching {
            self.state = State::Finished;
            self.events.push(DownloadEvent::Finished { size: self.written });
        }
    }

    fn fail(&mut self, error: DownloadError) {
        if matches!(self.state, State::FetchingIndex | State::Fetching) {
            self.state = State::Failed(error);
            self.events.push(DownloadEvent::Failed(error));
        }
    }

    /// Gives free slots the next fragments and sends every request that
    /// may go.
    fn send_more<S: FragmentStore, const N: usize, const D: usize, const F: usize>(
        &mut self,
        now: Instant,
        node: &mut Node<S, N, D, F>,
        sink: &mut impl Transmit,
    ) {
        if self.state == State::Fetching {
            self.assign_slots(now);
        }
        self.requester.unblock(&mut self.requests, now);
        while !Download::is_done(self) {
            let Some(i) = self.requests.next_ready(now) else { return };
            let Some(&request) = self.requests.get(i) else { return };
            let hash = request.item.hash;
            let pick =
                self.requester.pick(now, node, &hash, request.attempts, &request.item.tried, sink);
            if let Some(shard) = self.requester.take_search_began() {
                self.events.push(DownloadEvent::Searching { shard });
            }
            let Some(request) = self.requests.get_mut(i) else { return };
            match pick {
                Pick::Target(to) => {
                    log::trace!("download: FILEGET {hash:?} attempt {} to {to}", request.attempts);
                    let have = slot_of(&mut self.slots, self.state, request.item.item)
                        .map_or(0, |s| s.have);
                    node.send_fileget(now, to, hash, ALL_UNITS & !have, sink);
                    self.requester.on_sent(to, now);
                    request.item.progress = false;
                    request.sent(to, now, self.requester.rto(request.attempts));
                }
                Pick::Wait => request.wait_until(now + RETRY_TICK),
                Pick::Full => request.block_until(now + RETRY_TICK),
                Pick::NoHolder => {
                    self.fail(DownloadError::NoHolder { shard: hash.shard() });
                    return;
                }
            }
        }
    }

    /// Gives free slots the next fragments of the file.
    fn assign_slots(&mut self, now: Instant) {
        let Some(index) = self.index.as_ref() else { return };
        let count = index.fragment_count() as u16;
        while self.next_assign < count && usize::from(self.next_assign - self.next_deliver) < WINDOW
        {
            let item = self.next_assign;
            let Some(slot) = self.slots.get_mut(usize::from(item) % WINDOW) else { return };
            if slot.item.is_some() {
                return;
            }
            let hash = index.hash_of(usize::from(item)).unwrap_or_default();
            let wanted = Wanted {
                item: Some(item),
                hash,
                tried: Tried::new(),
                progress: false,
                sampled: false,
            };
            if self.requests.push(Request::new(wanted, now)).is_err() {
                return;
            }
            slot.item = Some(item);
            slot.ready = false;
            slot.have = 0;
            self.next_assign += 1;
        }
    }
}

impl<K: FileSink, const WINDOW: usize> Download<K, WINDOW> {
    /// A piece of `hash` from `from`: written into the slot of every
    /// request for these bytes (a file can repeat a fragment); a slot
    /// complete and right is ready, one complete and wrong starts over
    /// with another holder.
    fn take_piece(
        &mut self,
        now: Instant,
        from: PeerAddr,
        hash: &FragmentHash,
        first_unit: u8,
        data: &[u8],
    ) {
        let first = usize::from(first_unit);
        let mask = piece_mask(first, data.len() / UNIT);
        let timeout = self.requester.rto(0);
        let mut i = 0;
        while i < self.requests.len() {
            let Some(request) = self.requests.get_mut(i) else { break };
            i += 1;
            if request.item.hash != *hash {
                continue;
            }
            let Some(slot) = slot_of(&mut self.slots, self.state, request.item.item) else {
                continue;
            };
            if slot.have & mask == mask {
                continue;
            }
            let Some(target) = slot.data.get_mut(first * UNIT..first * UNIT + data.len()) else {
                continue;
            };
            target.copy_from_slice(data);
            slot.have |= mask;
            // The first piece: one round trip, whatever happens to the
            // other pieces.
            let mut sampled = request.item.sampled;
            self.requester.first_answer(request, &mut sampled, now);
            request.item.sampled = sampled;
            request.item.progress = true;
            request.extend(now + timeout);
            if slot.have != ALL_UNITS {
                continue;
            }
            if !hash.verifies(&slot.data) {
                // A holder sent wrong bytes: ask another for all of it.
                log::debug!("download: {hash:?} from {from} does not hash right");
                slot.have = 0;
                request.item.tried.remember(from);
                if let Some(to) = request.in_flight_to() {
                    self.requester.on_done(to);
                }
                request.wait_until(now);
                continue;
            }
            let request = *request;
            i -= 1;
            self.requests.remove(i);
            self.requester.answered_sampling(&request, from, now, false);
            match request.item.item {
                None => self.take_index(),
                Some(_) => slot.ready = true,
            }
        }
    }
}

/// The slot that receives `item` (the first slot for the index, while it
/// is being fetched).
fn slot_of<const WINDOW: usize>(
    slots: &mut [Slot; WINDOW],
    state: State,
    item: Option<u16>,
) -> Option<&mut Slot> {
    match item {
        None => slots.first_mut().filter(|_| state == State::FetchingIndex),
        Some(item) => slots.get_mut(usize::from(item) % WINDOW).filter(|s| s.item == Some(item)),
    }
}

impl<S, K, const N: usize, const D: usize, const F: usize, const WINDOW: usize> App<S, N, D, F>
    for Download<K, WINDOW>
where
    S: FragmentStore,
    K: FileSink,
{
    fn poll_timeout(&self) -> Option<Instant> {
        Download::poll_timeout(self)
    }
    /// Asks again for the missing pieces of requests that made progress,
    /// retries other overdue ones elsewhere, and sends what the windows
    /// allow.
    fn handle_timeout<T: Transmit>(
        &mut self,
        now: Instant,
        node: &mut Node<S, N, D, F>,
        sink: &mut T,
    ) {
        let timeout = self.requester.rto(0);
        for request in self.requests.iter_mut() {
            let Some(to) = request.in_flight_to() else { continue };
            if !request.is_overdue(now) || !request.item.progress {
                continue;
            }
            request.item.progress = false;
            request.extend(now + timeout);
            let have =
                slot_of(&mut self.slots, self.state, request.item.item).map_or(0, |s| s.have);
            node.send_fileget(now, to, request.item.hash, ALL_UNITS & !have, sink);
        }
        self.requester.expire(&mut self.requests, now, |wanted, to| wanted.tried.remember(to));
        self.check_attempts(now);
        self.send_more(now, node, sink);
    }

    /// Takes an answer the node passed up, writing what is now in order.
    fn handle_reply<T: Transmit>(
        &mut self,
        now: Instant,
        node: &mut Node<S, N, D, F>,
        reply: &Reply<'_>,
        sink: &mut T,
    ) {
        match reply {
            Reply::Piece { from, hash, first_unit, data } => {
                self.take_piece(now, from.addr, hash, *first_unit, data);
                self.deliver();
            }
            Reply::NotFound { from, hash, holders } => {
                self.requester.hint(*hash, holders);
                log::trace!("download: NOTFOUND {hash:?} from {}", from.addr);
                for request in self.requests.iter_mut() {
                    if request.item.hash == *hash && request.in_flight_to() == Some(from.addr) {
                        self.requester.on_done(from.addr);
                        request.item.tried.remember(from.addr);
                        request.wait_until(now + refusal_backoff(request.attempts));
                    }
                }
                self.check_attempts(now);
            }
            _ => return,
        }
        self.send_more(now, node, sink);
    }

    fn is_done(&self) -> bool {
        Download::is_done(self)
    }
}

impl<K, const WINDOW: usize> fmt::Debug for Download<K, WINDOW> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let pending: heapless::Vec<(Option<u16>, Option<PeerAddr>, u8), WINDOW> =
            self.requests.iter().map(|r| (r.item.item, r.in_flight_to(), r.attempts)).collect();
        f.debug_struct("Download")
            .field("index_hash", &self.index_hash)
            .field("state", &self.state)
            .field("next_deliver", &self.next_deliver)
            .field("written", &self.written)
            .field("requests", &pending)
            .field("requester", &self.requester)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    extern crate std;

    use super::*;
    use crate::testing::{bytes, Net};
    use crate::time::Duration;

    /// A 64-member network with `data` uploaded; returns it, the file's
    /// address and a joined reader client.
    fn uploaded(seed: u64, data: &[u8]) -> (Net, FragmentHash, usize) {
        let mut net = Net::joined(seed, 64, 64);
        let writer = net.add_client();
        net.join(writer, 1);
        assert!(net.run_until(Duration::from_secs(5), |n| n.node(writer).is_joined()));
        let hash = net.upload(writer, "f.bin", data.to_vec());
        assert!(net.run_until(Duration::from_secs(30), |n| n.upload_done(writer).is_some()));
        assert_eq!(net.upload_done(writer), Some(Ok(hash)));
        net.run_for(Duration::from_secs(2));
        let reader = net.add_client();
        net.join(reader, 40);
        assert!(net.run_until(Duration::from_secs(5), |n| n.node(reader).is_joined()));
        (net, hash, reader)
    }

    #[test]
    fn a_download_writes_the_file_in_order_byte_identical() {
        let data = bytes(1, 9 * FRAGMENT_SIZE + 123);
        let (mut net, hash, reader) = uploaded(1, &data);
        net.download(reader, hash);
        assert!(net.run_until(Duration::from_secs(30), |n| n.downloaded(reader).is_some()));
        assert_eq!(net.downloaded(reader), Some(Ok(&data[..])));
    }

    #[test]
    fn a_download_asks_another_holder_when_one_is_silent() {
        let data = bytes(2, 6 * FRAGMENT_SIZE);
        let (mut net, hash, reader) = uploaded(2, &data);
        // Every fragment has three holders; silence one member in each
        // shard (the first of each) that holds something.
        let silent: std::vec::Vec<PeerAddr> = (0..16).map(Net::addr).collect();
        net.lose(move |from, to, _| silent.contains(&from) || silent.contains(&to));
        net.download(reader, hash);
        assert!(net.run_until(Duration::from_secs(60), |n| n.downloaded(reader).is_some()));
        assert_eq!(net.downloaded(reader), Some(Ok(&data[..])));
    }

    #[test]
    fn an_unknown_file_ends_with_index_not_found() {
        let data = bytes(3, 100);
        let (mut net, _, reader) = uploaded(3, &data);
        net.download(reader, FragmentHash([0x42; 32]));
        assert!(net.run_until(Duration::from_secs(60), |n| n.downloaded(reader).is_some()));
        assert!(
            matches!(net.downloaded(reader), Some(Err(DownloadError::IndexNotFound { .. }))),
            "{:?}",
            net.downloaded(reader)
        );
    }

    #[test]
    fn a_data_fragment_given_as_a_file_is_refused_as_a_bad_index() {
        let data = bytes(4, 2 * FRAGMENT_SIZE);
        let (mut net, _, reader) = uploaded(4, &data);
        let mut first = [0u8; FRAGMENT_SIZE];
        first.copy_from_slice(&data[..FRAGMENT_SIZE]);
        net.download(reader, FragmentHash::of(&first));
        assert!(net.run_until(Duration::from_secs(30), |n| n.downloaded(reader).is_some()));
        assert!(
            matches!(net.downloaded(reader), Some(Err(DownloadError::BadIndex(_)))),
            "{:?}",
            net.downloaded(reader)
        );
    }

    #[test]
    fn a_download_with_one_slot_still_completes() {
        // One 8 KB slot: what a microcontroller can afford.
        let data = bytes(5, 3 * FRAGMENT_SIZE + 5);
        let (mut net, hash, reader) = uploaded(5, &data);
        net.download_one_slot(reader, hash);
        assert!(net.run_until(Duration::from_secs(30), |n| n.downloaded(reader).is_some()));
        assert_eq!(net.downloaded(reader), Some(Ok(&data[..])));
    }
}
