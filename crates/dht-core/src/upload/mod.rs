//! Uploading a file: the client state machine behind `dhtsend`.
//!
//! [`Upload::new`] reads the source once to hash every fragment and builds
//! the index (a file over [`MAX_FILE_SIZE`] is refused with
//! [`UploadError::FileTooLarge`]). Driven by a [`Node`], the upload then
//! offers each fragment (NEWFILE) to a member of its shard, with up to
//! `WINDOW` offers outstanding and at most each peer's window per peer. The
//! member fetches the fragment from the uploader (a [`Reply::FileGet`] for
//! the units it lacks, answered with pieces that fit a datagram, read from
//! the source again each time, so the upload holds no fragment in memory)
//! and acknowledges it with STORED. An offer that is not acknowledged
//! within the retransmission timeout (each FILEGET pushes it back: the
//! holder is at work), or is refused (store full, busy, wrong shard), goes
//! to the next candidate holder. Only the member that was offered the
//! fragment, answering from its address, can acknowledge it. The index
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

mod source;

use source::hash_fragment;
pub use source::{read_fragment, Bytes, FileSource};

use crate::client::{refusal_backoff, spent, EventQueue, Pick, Requester, Tried, RETRY_TICK};
use crate::config::{FRAGMENT_SIZE, INDEX_MAX_FRAGMENTS, MAX_FILE_SIZE};
use crate::driver::App;
use crate::fragment::FragmentHash;
use crate::id::{PeerAddr, PeerInfo, Shard};
use crate::index::{fragment_layout, IndexError, IndexName, IndexParts};
use crate::node::{Node, Reply, RequestError, Transmit};
use crate::requests::{Request, RequestTable};
use crate::store::FragmentStore;
use crate::time::Duration;
use crate::time::Instant;
use crate::wire::StoreOutcome;

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
                write!(
                    f,
                    "no node of shard {shard} with room could be found to store its fragments"
                )
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
        /// Its hash.
        hash: FragmentHash,
        /// The node that stored it.
        holder: PeerInfo,
    },
    /// No member of `shard` is known yet: the upload searches the network
    /// for one (about 30 s at most) before it fails with `NoHolder`.
    Searching {
        /// The shard.
        shard: crate::id::Shard,
    },
    /// Every fragment and the index are stored.
    Finished {
        /// The file's address.
        index_hash: FragmentHash,
    },
    /// The upload stopped.
    Failed(UploadError),
}

/// One item of the file (a data fragment, or the index numbered after
/// them) that was asked of a holder and not yet acknowledged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Item {
    /// Its number.
    index: u16,
    /// Its hash.
    hash: FragmentHash,
    /// Times it was redirected to the holders a node named.
    redirects: u8,
    /// The round trip was sampled at the holder's first FILEGET (its
    /// STORED comes after a fetch that may take several rounds).
    sampled: bool,
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

/// An upload in progress of the file `SRC`, with up to `WINDOW` store
/// requests outstanding, of a file of at most `ITEMS - 1` data fragments
/// (the default: any file).
///
/// It keeps the data fragments' hashes and a bit per fragment, not the
/// index itself, which is rebuilt from them when it is sent: an upload
/// sized for a one-fragment file (`Upload<_, 2, 2>`) takes about 5 KB, most
/// of it the holder choice and per-peer windows it shares with downloads.
pub struct Upload<SRC, const WINDOW: usize = 32, const ITEMS: usize = MAX_ITEMS> {
    source: SRC,
    name: IndexName,
    last_len: u16,
    hashes: [FragmentHash; ITEMS],
    index_hash: FragmentHash,
    size: u64,
    count: u16,
    acked: [bool; ITEMS],
    acked_count: u16,
    /// The next item never asked for.
    next: u16,
    /// Items asked for and not acknowledged: in flight, or waiting after a
    /// loss or a refusal.
    requests: RequestTable<Item, WINDOW>,
    requester: Requester<PEERS>,
    state: State,
    events: EventQueue<UploadEvent>,
}

impl<SRC: FileSource, const WINDOW: usize, const ITEMS: usize> Upload<SRC, WINDOW, ITEMS> {
    /// Prepares the upload of `source` under `name`: hashes every fragment
    /// (reading the source once, 512 bytes at a time) and the index.
    pub fn new(name: IndexName, mut source: SRC) -> Result<Self, (UploadError, SRC)> {
        let size = source.size();
        if size > MAX_FILE_SIZE {
            return Err((UploadError::FileTooLarge { size }, source));
        }
        let Ok((count, last_len)) = fragment_layout(size) else {
            return Err((UploadError::FileTooLarge { size }, source));
        };
        let fragments = u16::from(count) + 1;
        if usize::from(fragments) > ITEMS {
            let capacity = u16::try_from(ITEMS).unwrap_or(u16::MAX);
            return Err((UploadError::TooManyFragments { fragments, capacity }, source));
        }
        let mut hashes = [FragmentHash::default(); ITEMS];
        for (i, slot) in hashes.iter_mut().enumerate().take(usize::from(count)) {
            match hash_fragment(&mut source, size, i) {
                Ok(hash) => *slot = hash,
                Err(e) => return Err((e, source)),
            }
        }
        let index_hash = IndexParts { name: &name, count, last_len, hashes: &hashes }.hash();
        Ok(Upload {
            source,
            name,
            last_len,
            hashes,
            index_hash,
            size,
            count: u16::from(count),
            acked: [false; ITEMS],
            acked_count: 0,
            next: 0,
            requests: RequestTable::new(),
            requester: Requester::new(),
            state: State::Running,
            events: EventQueue::new(),
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

    /// The source being uploaded.
    pub fn source(&self) -> &SRC {
        &self.source
    }

    /// The source, mutably (to take its error).
    pub fn source_mut(&mut self) -> &mut SRC {
        &mut self.source
    }

    /// The data fragments' hashes, in file order.
    pub fn hashes(&self) -> &[FragmentHash] {
        self.hashes.get(..usize::from(self.count)).unwrap_or(&[])
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
        self.events.pop()
    }

    /// When [`Upload::handle_timeout`] should next be called: a request's
    /// deadline, or when a waiting one may go, if the window has room.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.state != State::Running {
            return None;
        }
        self.requests.poll_timeout(self.requests.in_flight() < WINDOW)
    }

    /// Sends the first requests.
    pub fn start<S: FragmentStore, const N: usize, const D: usize, const F: usize>(
        &mut self,
        now: Instant,
        node: &mut Node<S, N, D, F>,
        sink: &mut impl Transmit,
    ) {
        self.send_more(now, node, sink);
    }

    fn item_hash(&self, item: u16) -> FragmentHash {
        if item == self.count {
            self.index_hash
        } else {
            self.hashes().get(usize::from(item)).copied().unwrap_or_default()
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
                    self.events.push(UploadEvent::Stored { fragment: item, hash, holder });
                }
            }
        }
        self.requests.retain(|r| r.item.hash != hash);
        if self.acked.get(usize::from(self.count)) == Some(&true) && self.state == State::Running {
            self.state = State::Finished;
            self.events.push(UploadEvent::Finished { index_hash: self.index_hash });
        }
    }

    /// Fails the upload if a request has used up its attempts.
    fn gave_up(&mut self, now: Instant) -> bool {
        if let Some(request) = spent(&self.requests, now) {
            let (attempts, fragment) = (request.attempts, request.item.index);
            self.fail(UploadError::GaveUp { fragment, attempts });
        }
        self.is_done()
    }

    fn fail(&mut self, error: UploadError) {
        if self.state == State::Running {
            self.state = State::Failed(error);
            self.events.push(UploadEvent::Failed(error));
        }
    }

    /// Takes new items into the request table while it has room (the
    /// index only once every data fragment is acknowledged), then sends
    /// every request that may go.
    fn send_more<S: FragmentStore, const N: usize, const D: usize, const F: usize>(
        &mut self,
        now: Instant,
        node: &mut Node<S, N, D, F>,
        sink: &mut impl Transmit,
    ) {
        while self.state == State::Running && !self.requests.is_full() && self.next <= self.count {
            let index = self.next;
            if index == self.count && self.acked_count < self.count {
                break;
            }
            self.next += 1;
            let hash = self.item_hash(index);
            // One request per distinct hash: an acknowledgement marks every
            // item with the hash stored.
            let acked = self.acked.get(usize::from(index)) == Some(&true);
            if !acked && !self.requests.contains(|r| r.hash == hash) {
                let _ = self
                    .requests
                    .push(Request::new(Item { index, hash, redirects: 0, sampled: false }, now));
            }
        }
        self.requester.unblock(&mut self.requests, now);
        while self.state == State::Running && self.requests.in_flight() < WINDOW {
            let Some(i) = self.requests.next_ready(now) else { return };
            let Some(&request) = self.requests.get(i) else { return };
            let Item { index, hash, .. } = request.item;
            let attempt = request.attempts;
            let pick = self.requester.pick(now, node, &hash, attempt, &Tried::new(), sink);
            if let Some(shard) = self.requester.take_search_began() {
                self.events.push(UploadEvent::Searching { shard });
            }
            let to = match pick {
                Pick::Target(to) => to,
                Pick::Wait => {
                    if let Some(r) = self.requests.get_mut(i) {
                        r.wait_until(now + RETRY_TICK);
                    }
                    continue;
                }
                Pick::Full => {
                    if let Some(r) = self.requests.get_mut(i) {
                        r.block_until(now + RETRY_TICK);
                    }
                    continue;
                }
                Pick::NoHolder => {
                    self.fail(UploadError::NoHolder { shard: hash.shard() });
                    return;
                }
            };
            log::trace!("upload: NEWFILE {hash:?} item {index} attempt {attempt} to {to}");
            // A refused send is treated like a loss: it times out.
            node.offer(now, to, hash, sink);
            self.requester.on_sent(to, now);
            let timeout = self.requester.rto(attempt);
            if let Some(r) = self.requests.get_mut(i) {
                r.sent(to, now, timeout);
            }
        }
    }

    /// A holder asks for units of `hash`: sends them, read from the source
    /// again (the index rebuilt), and gives its offer more time.
    #[allow(clippy::too_many_arguments)]
    fn serve<S: FragmentStore, const N: usize, const D: usize, const F: usize>(
        &mut self,
        now: Instant,
        node: &mut Node<S, N, D, F>,
        from: PeerAddr,
        hash: FragmentHash,
        want: u16,
        piece_units: u8,
        sink: &mut impl Transmit,
    ) {
        let Some(index) = (0..=self.count).find(|i| self.item_hash(*i) == hash) else {
            return;
        };
        let is_index = index == self.count;
        let count = u8::try_from(self.count).unwrap_or(u8::MAX);
        let hashes = self.hashes.get(..usize::from(self.count)).unwrap_or(&[]);
        let index_fragment =
            IndexParts { name: &self.name, count, last_len: self.last_len, hashes };
        let (size, source) = (self.size, &mut self.source);
        let fill = |buf: &mut crate::fragment::FragmentBytes| {
            if is_index {
                index_fragment.encode(buf);
                true
            } else {
                read_fragment(source, size, usize::from(index), buf)
            }
        };
        match node.send_pieces(now, from, hash, want, piece_units, fill, sink) {
            Ok(()) => {}
            Err(RequestError::SourceFailed) => {
                let offset = u64::from(index) * FRAGMENT_SIZE as u64;
                self.fail(UploadError::SourceFailed { offset });
                return;
            }
            Err(RequestError::HashMismatch) => {
                self.fail(UploadError::SourceChanged { fragment: index });
                return;
            }
            Err(RequestError::SendFailed) => {}
        }
        // The holder is at work on it: its STORED comes after the pieces.
        let extra = self.requester.rto(0).max(HOLDER_AT_WORK);
        for request in self.requests.iter_mut() {
            if request.item.hash == hash && request.in_flight_to() == Some(from) {
                // NEWFILE to FILEGET: one round trip.
                let mut sampled = request.item.sampled;
                self.requester.first_answer(request, &mut sampled, now);
                request.item.sampled = sampled;
                request.extend(now + extra);
            }
        }
    }
}

/// The least time an offer is given after its holder asked for pieces.
const HOLDER_AT_WORK: Duration = Duration::from_millis(200);

impl<
        S,
        SRC,
        const N: usize,
        const D: usize,
        const F: usize,
        const WINDOW: usize,
        const ITEMS: usize,
    > App<S, N, D, F> for Upload<SRC, WINDOW, ITEMS>
where
    S: FragmentStore,
    SRC: FileSource,
{
    fn poll_timeout(&self) -> Option<Instant> {
        Upload::poll_timeout(self)
    }
    /// Handles requests past their deadline and sends what the windows
    /// allow.
    fn handle_timeout<T: Transmit>(
        &mut self,
        now: Instant,
        node: &mut Node<S, N, D, F>,
        sink: &mut T,
    ) {
        self.requester.expire(&mut self.requests, now, |_, _| {});
        if self.gave_up(now) {
            return;
        }
        self.send_more(now, node, sink);
    }

    /// Takes an answer the node passed up.
    fn handle_reply<T: Transmit>(
        &mut self,
        now: Instant,
        node: &mut Node<S, N, D, F>,
        reply: &Reply<'_>,
        sink: &mut T,
    ) {
        let (from, hash, outcome, holders) = match reply {
            Reply::Stored { from, hash, outcome, holders } => (from, hash, outcome, holders),
            Reply::FileGet { from, hash, want, piece_units } => {
                self.serve(now, node, from.addr, *hash, *want, *piece_units, sink);
                return;
            }
            _ => return,
        };
        log::trace!(
            "upload: STORED {hash:?} from {} {outcome:?}, {} holders named",
            from.addr,
            holders.len()
        );
        // Believed only from the member the offer went to, from its
        // address: anyone else's word is dropped.
        let asked = |r: &Request<Item>| r.item.hash == *hash && r.in_flight_to() == Some(from.addr);
        let Some(position) = self.requests.position(asked) else { return };
        self.requester.hint(*hash, holders);
        let Some(request) = self.requests.get_mut(position) else { return };
        let to = request.in_flight_to().unwrap_or(from.addr);
        if outcome.is_held() {
            let sample = !request.item.sampled;
            self.requester.answered_sampling(request, from.addr, now, sample);
            self.requests.remove(position);
            self.mark_stored(*hash, *from);
        } else if *outcome == StoreOutcome::NotHolder && request.item.redirects < MAX_REDIRECTS {
            // The node named the right holders (the node has learned them):
            // try again at once, from the best-ranked candidate.
            self.requester.on_done(to);
            request.item.redirects += 1;
            request.wait_until(now);
        } else {
            self.requester.on_done(to);
            request.wait_until(now + refusal_backoff(request.attempts));
            if self.gave_up(now) {
                return;
            }
        }
        self.send_more(now, node, sink);
    }

    fn is_done(&self) -> bool {
        Upload::is_done(self)
    }
}

impl<SRC, const WINDOW: usize, const ITEMS: usize> fmt::Debug for Upload<SRC, WINDOW, ITEMS> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Upload")
            .field("index_hash", &self.index_hash)
            .field("acked", &self.acked_count)
            .field("total", &(self.count + 1))
            .field("outstanding", &self.requests.len())
            .field("in_flight", &self.requests.in_flight())
            .field("state", &self.state)
            .field("srtt", &self.requester.srtt())
            .finish()
    }
}

#[cfg(test)]
mod tests;
