//! Uploading a file: the client state machine behind `dhtsend`.
//!
//! [`Upload::new`] reads the source once to hash every fragment and builds
//! the index (a file over [`MAX_FILE_SIZE`] is refused with
//! [`UploadError::FileTooLarge`]). Driven by a [`Node`], the upload then sends
//! each fragment as a store request to a member of its shard, with up to
//! `WINDOW` requests in flight and at most each peer's window per peer. A
//! request that is not acknowledged within the retransmission timeout, or
//! is refused (store full, wrong shard), goes to the next candidate holder.
//! Fragments are read from the source again when sent, straight into the
//! outgoing datagram, so the upload holds no fragment in memory. The index
//! goes last, once every data fragment is acknowledged, so a file whose
//! index is found has all its fragments stored.
//!
//! Driving it:
//!
//! ```text
//! let mut upload = Upload::<32>::new(name, &mut source)?;
//! upload.start(now, &mut node, &mut source, &mut sink);
//! loop {
//!     // on a datagram:
//!     if let Some(reply) = node.handle_datagram(now, from, bytes, &mut sink) {
//!         upload.handle_reply(now, &mut node, &reply, &mut source, &mut sink);
//!     }
//!     // when min(node.poll_timeout(), upload.poll_timeout()) has come:
//!     node.handle_timeout(now, &mut sink);
//!     upload.handle_timeout(now, &mut node, &mut source, &mut sink);
//!     while let Some(event) = upload.poll_event() { /* progress, finished, failed */ }
//! }
//! ```

use core::fmt;

use heapless::{Deque, Vec};
use sha2::{Digest, Sha256};

use crate::client::{exhausted, refusal_backoff, Pick, Requester, Tried};
use crate::config::{FRAGMENT_SIZE, INDEX_MAX_FRAGMENTS, MAX_FILE_SIZE};
use crate::fragment::{
    fragment_layout, FragmentBytes, FragmentHash, IndexError, IndexName, IndexParts,
};
use crate::id::{PeerAddr, PeerInfo, Shard};
use crate::node::{Node, Reply, RequestError, Transmit};
use crate::store::FragmentStore;
use crate::time::Instant;
use crate::wire::StoreOutcome;

/// The bytes of a file being uploaded.
pub trait FileSource {
    /// The file's size in bytes.
    fn size(&self) -> u64;
    /// Fills `buf` with the bytes at `offset`; `offset + buf.len()` is at
    /// most `size()`. Returns `false` if the bytes cannot be read.
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> bool;
}

impl FileSource for &[u8] {
    fn size(&self) -> u64 {
        self.len() as u64
    }
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> bool {
        let Ok(start) = usize::try_from(offset) else { return false };
        match self.get(start..start.saturating_add(buf.len())) {
            Some(src) => {
                buf.copy_from_slice(src);
                true
            }
            None => false,
        }
    }
}

/// Why an upload failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UploadError {
    /// The file is larger than one index describes.
    FileTooLarge {
        /// Its size.
        size: u64,
    },
    /// The file has more fragments than this upload was built to track
    /// (its `ITEMS` parameter, the index included).
    TooManyFragments {
        /// Fragments of the file, the index included.
        fragments: u16,
        /// What the upload can track.
        capacity: u16,
    },
    /// The source could not be read at this offset.
    SourceFailed {
        /// Where reading failed.
        offset: u64,
    },
    /// Fragment `fragment` no longer has the hash computed at the start:
    /// the file changed during the upload.
    SourceChanged {
        /// The fragment (the index is numbered after the data fragments).
        fragment: u16,
    },
    /// No member of this shard could be found.
    NoHolder {
        /// The shard.
        shard: Shard,
    },
    /// Fragment `fragment` was not acknowledged after this many attempts.
    GaveUp {
        /// The fragment.
        fragment: u16,
        /// Attempts made.
        attempts: u8,
    },
}

impl fmt::Display for UploadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UploadError::FileTooLarge { size } => {
                fmt::Display::fmt(&IndexError::FileTooLarge { size: *size }, f)
            }
            UploadError::TooManyFragments { fragments, capacity } => write!(
                f,
                "the file needs {fragments} fragments with its index; this upload tracks at most \
                 {capacity}"
            ),
            UploadError::SourceFailed { offset } => {
                write!(f, "could not read the file at byte {offset}")
            }
            UploadError::SourceChanged { fragment } => write!(
                f,
                "the file changed while it was being uploaded (fragment {fragment} differs)"
            ),
            UploadError::NoHolder { shard } => {
                write!(f, "no node of shard {shard} could be found to store its fragments")
            }
            UploadError::GaveUp { fragment, attempts } => write!(
                f,
                "fragment {fragment} was not acknowledged after {attempts} attempts; \
                 the network may be overloaded or unreachable"
            ),
        }
    }
}

/// Progress of an upload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UploadEvent {
    /// A fragment (numbered in file order; the index is numbered last) was
    /// acknowledged by a holder.
    Stored {
        /// The fragment.
        fragment: u16,
        /// The node that stored it.
        holder: PeerInfo,
    },
    /// Every fragment and the index are stored.
    Finished {
        /// The file's address.
        index_hash: FragmentHash,
    },
    /// The upload stopped.
    Failed(UploadError),
}

#[derive(Clone, Copy, Debug)]
struct InFlight {
    item: u16,
    to: PeerAddr,
    sent_at: Instant,
    deadline: Instant,
    first: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Running,
    Finished,
    Failed(UploadError),
}

pub use crate::client::{GIVE_UP_AFTER, MAX_ATTEMPTS};
/// Peers whose windows are tracked at once.
const PEERS: usize = 32;
/// Redirects to named holders an item may follow before refusals count as
/// failures.
const MAX_REDIRECTS: u8 = 4;
/// Items of the largest file: data fragments plus the index.
pub const MAX_ITEMS: usize = INDEX_MAX_FRAGMENTS + 1;

/// An upload in progress, with up to `WINDOW` store requests in flight, of
/// a file of at most `ITEMS - 1` data fragments (the default: any file).
///
/// It keeps the data fragments' hashes and a few bytes per fragment, not
/// the index itself, which is rebuilt from them when it is sent: an upload
/// sized for a one-fragment file (`Upload<2, 2>`) takes about 5 KB, most of
/// it the holder choice and per-peer windows it shares with downloads.
pub struct Upload<const WINDOW: usize = 32, const ITEMS: usize = MAX_ITEMS> {
    name: IndexName,
    last_len: u16,
    hashes: [FragmentHash; ITEMS],
    index_hash: FragmentHash,
    size: u64,
    count: u16,
    acked: [bool; ITEMS],
    attempts: [u8; ITEMS],
    /// After a refusal, an item waits until this time.
    not_before: [Instant; ITEMS],
    /// Times each item was redirected to the holders a node named.
    redirects: [u8; ITEMS],
    started: Option<Instant>,
    acked_count: u16,
    in_flight: Vec<InFlight, WINDOW>,
    requester: Requester<PEERS>,
    state: State,
    events: Deque<UploadEvent, 16>,
}

impl<const WINDOW: usize, const ITEMS: usize> Upload<WINDOW, ITEMS> {
    /// Prepares the upload of `source` under `name`: hashes every fragment
    /// (reading the source once, 512 bytes at a time) and the index.
    pub fn new(name: IndexName, source: &mut impl FileSource) -> Result<Self, UploadError> {
        let size = source.size();
        if size > MAX_FILE_SIZE {
            return Err(UploadError::FileTooLarge { size });
        }
        let (count, last_len) =
            fragment_layout(size).map_err(|_| UploadError::FileTooLarge { size })?;
        let fragments = u16::from(count) + 1;
        if usize::from(fragments) > ITEMS {
            let capacity = u16::try_from(ITEMS).unwrap_or(u16::MAX);
            return Err(UploadError::TooManyFragments { fragments, capacity });
        }
        let mut hashes = [FragmentHash::default(); ITEMS];
        for (i, slot) in hashes.iter_mut().enumerate().take(usize::from(count)) {
            *slot = hash_fragment(source, size, i)?;
        }
        let index_hash = IndexParts { name: &name, count, last_len, hashes: &hashes }.hash();
        Ok(Upload {
            name,
            last_len,
            hashes,
            index_hash,
            size,
            count: u16::from(count),
            acked: [false; ITEMS],
            attempts: [0; ITEMS],
            not_before: [Instant::ZERO; ITEMS],
            redirects: [0; ITEMS],
            started: None,
            acked_count: 0,
            in_flight: Vec::new(),
            requester: Requester::new(),
            state: State::Running,
            events: Deque::new(),
        })
    }

    /// The file's address: the hash of its index fragment.
    pub fn index_hash(&self) -> FragmentHash {
        self.index_hash
    }

    /// The file name stored in the index.
    pub fn name(&self) -> &IndexName {
        &self.name
    }

    /// The file size in bytes.
    pub fn file_size(&self) -> u64 {
        self.size
    }

    /// The data fragments' hashes, in file order.
    pub fn hashes(&self) -> &[FragmentHash] {
        self.hashes.get(..usize::from(self.count)).unwrap_or(&[])
    }

    fn index_parts(&self) -> IndexParts<'_> {
        let count = u8::try_from(self.count).unwrap_or(u8::MAX);
        IndexParts { name: &self.name, count, last_len: self.last_len, hashes: self.hashes() }
    }

    /// Fragments to store, the index included.
    pub fn total(&self) -> u16 {
        self.count + 1
    }

    /// Fragments acknowledged so far, the index included.
    pub fn acknowledged(&self) -> u16 {
        self.acked_count
    }

    /// Whether the upload finished successfully.
    pub fn is_finished(&self) -> bool {
        self.state == State::Finished
    }

    /// The error that stopped the upload, if any.
    pub fn error(&self) -> Option<UploadError> {
        match self.state {
            State::Failed(e) => Some(e),
            State::Running | State::Finished => None,
        }
    }

    /// Whether the upload is over (finished or failed).
    pub fn is_done(&self) -> bool {
        self.state != State::Running
    }

    /// The next progress event.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<UploadEvent> {
        self.events.pop_front()
    }

    /// When [`Upload::handle_timeout`] should next be called.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.state != State::Running {
            return None;
        }
        let flight = self.in_flight.iter().map(|f| f.deadline).min();
        // Items waiting after a refusal wake us at their `not_before`, but
        // only while the window has room to send them: with a full window
        // an answer or a deadline frees a place first, and reporting an
        // instant at which nothing can be sent would make the caller spin.
        let waiting = self
            .not_before
            .iter()
            .zip(self.acked.iter())
            .filter(|(t, acked)| !**acked && **t > Instant::ZERO)
            .map(|(t, _)| *t)
            .min()
            .filter(|_| !self.in_flight.is_full());
        [flight, waiting, self.requester.retry_at()].into_iter().flatten().min()
    }

    /// Sends the first requests.
    pub fn start<S: FragmentStore, const N: usize, const D: usize, const F: usize>(
        &mut self,
        now: Instant,
        node: &mut Node<S, N, D, F>,
        source: &mut impl FileSource,
        sink: &mut impl Transmit,
    ) {
        self.started.get_or_insert(now);
        self.send_more(now, node, source, sink);
    }

    /// Retries overdue requests and sends what the windows allow.
    pub fn handle_timeout<S: FragmentStore, const N: usize, const D: usize, const F: usize>(
        &mut self,
        now: Instant,
        node: &mut Node<S, N, D, F>,
        source: &mut impl FileSource,
        sink: &mut impl Transmit,
    ) {
        self.requester.on_timeout(now);
        let mut i = 0;
        while let Some(flight) = self.in_flight.get(i).copied() {
            if flight.deadline <= now {
                self.in_flight.swap_remove(i);
                self.requester.on_loss(flight.to);
                self.bump_attempts(flight.item, now);
            } else {
                i += 1;
            }
        }
        self.send_more(now, node, source, sink);
    }

    /// Takes an answer the node passed up.
    pub fn handle_reply<S: FragmentStore, const N: usize, const D: usize, const F: usize>(
        &mut self,
        now: Instant,
        node: &mut Node<S, N, D, F>,
        reply: &Reply<'_>,
        source: &mut impl FileSource,
        sink: &mut impl Transmit,
    ) {
        let Reply::Stored { from, hash, outcome, holders } = reply else { return };
        log::trace!(
            "upload: STORED {hash:?} from {} {outcome:?}, {} holders named",
            from.addr,
            holders.len()
        );
        self.requester.hint(*hash, holders);
        let Some(position) = self.in_flight.iter().position(|f| self.item_hash(f.item) == *hash)
        else {
            return;
        };
        let Some(flight) = self.in_flight.get(position).copied() else { return };
        if outcome.is_held() {
            if flight.to == from.addr {
                self.requester.on_answer(flight.to, flight.sent_at, flight.first, now);
            } else {
                self.requester.on_done(flight.to);
            }
            self.in_flight.swap_remove(position);
            self.mark_stored(*hash, *from);
        } else if *outcome == StoreOutcome::NotHolder && self.redirect(flight.item) {
            // The node named the right holders (the node has learned them):
            // try again at once, from the best-ranked candidate.
            self.requester.on_done(flight.to);
            self.in_flight.swap_remove(position);
        } else {
            self.requester.on_done(flight.to);
            self.in_flight.swap_remove(position);
            self.bump_attempts(flight.item, now);
            let attempts = self.attempts.get(usize::from(flight.item)).copied().unwrap_or(0);
            if let Some(t) = self.not_before.get_mut(usize::from(flight.item)) {
                *t = now + refusal_backoff(attempts);
            }
        }
        self.send_more(now, node, source, sink);
    }

    fn item_hash(&self, item: u16) -> FragmentHash {
        if item == self.count {
            self.index_hash
        } else {
            self.hashes().get(usize::from(item)).copied().unwrap_or_default()
        }
    }

    /// Counts a redirect of `item`; `false` once it was redirected too often
    /// (then the refusal counts as a failed attempt).
    fn redirect(&mut self, item: u16) -> bool {
        match self.redirects.get_mut(usize::from(item)) {
            Some(count) if *count < MAX_REDIRECTS => {
                *count += 1;
                true
            }
            _ => false,
        }
    }

    fn bump_attempts(&mut self, item: u16, now: Instant) {
        let Some(attempts) = self.attempts.get_mut(usize::from(item)) else { return };
        *attempts = attempts.saturating_add(1);
        if exhausted(*attempts, self.started, now) {
            let attempts = *attempts;
            self.fail(UploadError::GaveUp { fragment: item, attempts });
        }
    }

    /// Marks every item with this hash stored (a file can repeat a fragment).
    fn mark_stored(&mut self, hash: FragmentHash, holder: PeerInfo) {
        for item in 0..=self.count {
            if self.item_hash(item) != hash {
                continue;
            }
            if let Some(acked) = self.acked.get_mut(usize::from(item)) {
                if !*acked {
                    *acked = true;
                    self.acked_count += 1;
                    self.push_event(UploadEvent::Stored { fragment: item, holder });
                }
            }
            self.in_flight.retain(|f| f.item != item);
        }
        if self.acked.get(usize::from(self.count)) == Some(&true) && self.state == State::Running {
            self.state = State::Finished;
            self.push_event(UploadEvent::Finished { index_hash: self.index_hash });
        }
    }

    fn fail(&mut self, error: UploadError) {
        if self.state == State::Running {
            self.state = State::Failed(error);
            self.push_event(UploadEvent::Failed(error));
        }
    }

    fn push_event(&mut self, event: UploadEvent) {
        if self.events.is_full() {
            self.events.pop_front();
        }
        let _ = self.events.push_back(event);
    }

    fn send_more<S: FragmentStore, const N: usize, const D: usize, const F: usize>(
        &mut self,
        now: Instant,
        node: &mut Node<S, N, D, F>,
        source: &mut impl FileSource,
        sink: &mut impl Transmit,
    ) {
        let data_done = self.acked_count >= self.count
            && self.acked.iter().take(usize::from(self.count)).all(|a| *a);
        let items =
            if data_done { self.count..=self.count } else { 0..=self.count.saturating_sub(1) };
        for item in items {
            if self.state != State::Running || self.in_flight.is_full() {
                return;
            }
            let index = usize::from(item);
            if self.acked.get(index) != Some(&false) {
                continue;
            }
            match self.not_before.get_mut(index) {
                Some(t) if *t > now => continue,
                // The wait is over; a retry timer or the deadline wakes us now.
                Some(t) => *t = Instant::ZERO,
                None => {}
            }
            let hash = self.item_hash(item);
            // One request per distinct hash at a time.
            if self.in_flight.iter().any(|f| self.item_hash(f.item) == hash) {
                continue;
            }
            let attempt = self.attempts.get(index).copied().unwrap_or(0);
            let to = match self.requester.pick(now, node, &hash, attempt, &Tried::new(), sink) {
                Pick::Target(to) => to,
                Pick::Wait => continue,
                Pick::NoHolder => {
                    self.fail(UploadError::NoHolder { shard: hash.shard() });
                    return;
                }
            };
            log::trace!("upload: FILEFRAG {hash:?} item {item} attempt {attempt} to {to}");
            let size = self.size;
            let is_index = item == self.count;
            let index_fragment = self.index_parts();
            let mut read_ok = true;
            let result = node.send_fragment(
                to,
                hash,
                |buf| {
                    if is_index {
                        index_fragment.encode(buf);
                        true
                    } else {
                        read_ok = read_fragment(source, size, index, buf);
                        read_ok
                    }
                },
                sink,
            );
            match result {
                Ok(()) | Err(RequestError::SendFailed) => {
                    // A refused send is treated like a loss: it times out.
                    self.requester.on_sent(to, now);
                    let deadline = now + self.requester.rto(attempt);
                    let flight = InFlight { item, to, sent_at: now, deadline, first: attempt == 0 };
                    let _ = self.in_flight.push(flight);
                }
                Err(RequestError::SourceFailed) => {
                    let offset = index as u64 * FRAGMENT_SIZE as u64;
                    self.fail(UploadError::SourceFailed { offset });
                }
                Err(RequestError::HashMismatch) => {
                    self.fail(UploadError::SourceChanged { fragment: item });
                }
            }
        }
    }
}

impl<const WINDOW: usize, const ITEMS: usize> fmt::Debug for Upload<WINDOW, ITEMS> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Upload")
            .field("index_hash", &self.index_hash)
            .field("acked", &self.acked_count)
            .field("total", &self.total())
            .field("in_flight", &self.in_flight.len())
            .field("state", &self.state)
            .field("srtt", &self.requester.srtt())
            .finish()
    }
}

/// Reads fragment `i` of a file of `size` bytes into `buf`, zero-padded.
pub fn read_fragment(
    source: &mut impl FileSource,
    size: u64,
    i: usize,
    buf: &mut FragmentBytes,
) -> bool {
    let offset = i as u64 * FRAGMENT_SIZE as u64;
    let len = size.saturating_sub(offset).min(FRAGMENT_SIZE as u64) as usize;
    let (data, padding) = buf.split_at_mut(len);
    padding.fill(0);
    source.read_at(offset, data)
}

/// Hashes fragment `i` of a file of `size` bytes, 512 bytes at a time.
fn hash_fragment(
    source: &mut impl FileSource,
    size: u64,
    i: usize,
) -> Result<FragmentHash, UploadError> {
    let mut hasher = Sha256::new();
    let mut chunk = [0u8; 512];
    let start = i as u64 * FRAGMENT_SIZE as u64;
    let mut offset = start;
    let end = start + FRAGMENT_SIZE as u64;
    while offset < end {
        let take = (end - offset).min(chunk.len() as u64) as usize;
        let available = size.saturating_sub(offset).min(take as u64) as usize;
        let (data, padding) = chunk.split_at_mut(available);
        padding.fill(0);
        if !data.is_empty() && !source.read_at(offset, data) {
            return Err(UploadError::SourceFailed { offset });
        }
        hasher.update(chunk.get(..take).unwrap_or(&[]));
        offset += take as u64;
    }
    Ok(FragmentHash(hasher.finalize().into()))
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::vec;

    #[test]
    fn streamed_hash_equals_hash_of_padded_fragment() {
        let data: std::vec::Vec<u8> = (0..20_000u32).map(|i| (i * 7 + 3) as u8).collect();
        let mut source: &[u8] = &data;
        for i in 0..3 {
            let streamed = hash_fragment(&mut source, data.len() as u64, i).unwrap();
            let mut buf = [0u8; FRAGMENT_SIZE];
            assert!(read_fragment(&mut source, data.len() as u64, i, &mut buf));
            assert_eq!(streamed, FragmentHash::of(&buf), "fragment {i}");
        }
    }

    #[test]
    fn too_large_file_is_refused_with_a_typed_error() {
        let data = vec![0u8; MAX_FILE_SIZE as usize + 1];
        let mut source: &[u8] = &data;
        let result = Upload::<4>::new(IndexName::from_file_name("big"), &mut source);
        assert_eq!(result.err(), Some(UploadError::FileTooLarge { size: 2_088_961 }));
    }

    #[test]
    fn index_of_prepared_upload_lists_every_fragment() {
        let data = vec![1u8; 8193];
        let mut source: &[u8] = &data;
        let upload = Upload::<4>::new(IndexName::from_file_name("x"), &mut source).unwrap();
        assert_eq!(upload.total(), 3);
        assert_eq!(upload.file_size(), 8193);
        let mut first = [1u8; FRAGMENT_SIZE];
        assert_eq!(upload.hashes().first(), Some(&FragmentHash::of(&first)));
        first.fill(0);
        first[0] = 1;
        assert_eq!(upload.hashes().get(1), Some(&FragmentHash::of(&first)));
        // The index hash is that of the full index the download will read.
        let index =
            crate::fragment::IndexFragment::for_file(IndexName::from_file_name("x"), 8193, |i| {
                upload.hashes()[i]
            })
            .unwrap();
        assert_eq!(upload.index_hash(), index.hash());
        let mut bytes = [0u8; FRAGMENT_SIZE];
        index.encode(&mut bytes);
        assert_eq!(upload.index_hash(), FragmentHash::of(&bytes));
    }

    #[test]
    fn an_upload_sized_for_small_files_refuses_larger_ones() {
        let data = vec![7u8; 3 * FRAGMENT_SIZE];
        let mut source: &[u8] = &data;
        let result = Upload::<2, 2>::new(IndexName::from_file_name("s"), &mut source);
        assert_eq!(result.err(), Some(UploadError::TooManyFragments { fragments: 4, capacity: 2 }));
        let mut small: &[u8] = &data[..100];
        let upload = Upload::<2, 2>::new(IndexName::from_file_name("s"), &mut small).unwrap();
        assert_eq!(upload.total(), 2);
        let size = core::mem::size_of::<Upload<2, 2>>();
        assert!(size < 8192, "{size}");
    }
}
