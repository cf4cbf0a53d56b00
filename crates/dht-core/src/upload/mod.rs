//! Uploading a file: the client state machine behind `dhtsend`.
//!
//! Driven by a [`Node`], an [`Upload`] reads the source once in file
//! order, hashing each data fragment as it goes and building the index
//! tree bottom-up ([`TreeBuilder`]: one index per level, so memory does
//! not grow with the file). It offers each fragment (NEWFILE), data and
//! interior index alike, to a member of its shard, with up to
//! `WINDOW` offers outstanding and at most each peer's window per peer. The
//! member fetches the fragment from the uploader (a [`Reply::FileGet`] for
//! the units it lacks, answered with pieces that fit a datagram, read from
//! the source again each time, so the upload holds no fragment in memory)
//! and acknowledges it with STORED. An offer that is not acknowledged
//! within the retransmission timeout (each FILEGET pushes it back: the
//! holder is at work), or is refused (store full, busy, wrong shard), goes
//! to the next candidate holder. Only the member that was offered the
//! fragment, answering from its address, can acknowledge it. Interior
//! indexes are kept (at most `DEPTH` of them) until acknowledged; reading
//! waits while they are all in use. The root index goes last, once every
//! other fragment is acknowledged, so a file whose root is found has all
//! its fragments stored. The file's address is known when the tree is
//! complete ([`Upload::index_hash`]); [`hash_file`] computes it beforehand
//! by reading the source once.
//!
//! Driving it:
//!
//! ```text
//! let mut upload = Upload::<_, 32>::new(name, source)?;
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
use crate::config::{FRAGMENT_SIZE, INDEX_MAX_FRAGMENTS};
use crate::driver::App;
use crate::fragment::FragmentHash;
use crate::id::{PeerAddr, PeerInfo, Shard};
use crate::index::{
    data_fragment_len, data_fragments, index_fragments, tree_height, Coding, IndexBuf, IndexError,
    IndexName, TreeBuilder,
};
use crate::node::{Node, Reply, RequestError, Transmit};
use crate::requests::{Request, RequestTable};
use crate::store::FragmentStore;
use crate::time::Duration;
use crate::time::Instant;
use crate::wire::StoreOutcome;

/// Why an upload failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UploadError {
    /// The file is larger than this upload's index tree can describe (its
    /// `DEPTH` levels of `W` entries).
    FileTooLarge {
        /// Its size.
        size: u64,
    },
    /// The source could not be read at this offset.
    SourceFailed {
        /// Where reading failed.
        offset: u64,
    },
    /// A fragment no longer has the hash computed when it was read first:
    /// the file changed during the upload.
    SourceChanged {
        /// The fragment.
        item: Item,
    },
    /// No member of this shard could be found.
    NoHolder {
        /// The shard.
        shard: Shard,
    },
    /// A fragment was not acknowledged after this many attempts.
    GaveUp {
        /// The fragment.
        item: Item,
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
            UploadError::SourceFailed { offset } => {
                write!(f, "could not read the file at byte {offset}")
            }
            UploadError::SourceChanged { item } => {
                write!(f, "the file changed while it was being uploaded ({item} differs)")
            }
            UploadError::NoHolder { shard } => {
                write!(
                    f,
                    "no node of shard {shard} with room could be found to store its fragments"
                )
            }
            UploadError::GaveUp { item, attempts } => write!(
                f,
                "{item} was not acknowledged after {attempts} attempts; \
                 the network may be overloaded or unreachable"
            ),
        }
    }
}

/// One fragment of an upload: a data fragment (numbered in file order),
/// an interior index of the tree, or the root index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Item {
    /// Data fragment `n`.
    Data(u64),
    /// An interior index fragment.
    Index,
    /// The root index: the file's address.
    Root,
}

impl fmt::Display for Item {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Item::Data(n) => write!(f, "fragment {n}"),
            Item::Index => f.write_str("an index fragment"),
            Item::Root => f.write_str("the root index"),
        }
    }
}

/// Progress of an upload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UploadEvent {
    /// A fragment was acknowledged by a holder.
    Stored {
        /// The fragment.
        item: Item,
        /// Its hash.
        hash: FragmentHash,
        /// The node that stored it.
        holder: PeerInfo,
        /// The holder had it already (an upload run again sends only the
        /// offer for such a fragment, not its bytes).
        already: bool,
    },
    /// No member of `shard` can be asked (none is known, or each known
    /// one was tried: busy, full or silent): the upload searches the network
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

/// One fragment offered to a holder and not yet acknowledged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Offer {
    /// What it is.
    item: Item,
    /// Its hash.
    hash: FragmentHash,
    /// Times it was redirected to the holders a node named.
    redirects: u8,
    /// The round trip was sampled at the holder's first FILEGET (its
    /// STORED comes after a fetch that may take several rounds).
    sampled: bool,
    /// The last member whose offer of it timed out: its STORED saying it
    /// holds the fragment is believed even after the offer has moved on
    /// (a slow member still fetches and stores it).
    timed_out: Option<PeerAddr>,
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

/// An interior index built and not yet acknowledged.
struct Pending<const W: usize> {
    index: IndexBuf<W>,
    hash: FragmentHash,
    offered: bool,
}

/// Keeps an interior index just built until it is acknowledged (a tree of
/// one level has none: no code for them in an upload of `DEPTH` 1).
fn keep<const W: usize, const DEPTH: usize>(
    pending: &mut heapless::Vec<Pending<W>, DEPTH>,
    index: &IndexBuf<W>,
    hash: FragmentHash,
) {
    if DEPTH > 1 {
        let _ = pending.push(Pending { index: index.clone(), hash, offered: false });
    }
}

/// An upload in progress of the file `SRC`, with up to `WINDOW` store
/// requests outstanding, building an index tree of up to `DEPTH` levels
/// of `W` entries.
///
/// The default (`DEPTH` 4, `W` 255) takes any file up to 34 TB and holds
/// about 70 KB: the open index of each level and up to `DEPTH` interior
/// indexes waiting for their acknowledgement. `DEPTH` 1 takes files of one
/// index (2,088,960 bytes), and a small `W` files of `W` fragments: an
/// upload sized for a one-fragment file (`Upload<_, 2, 1, 1>`) takes
/// about 5 KB, most of it the holder choice and per-peer windows it shares
/// with downloads.
pub struct Upload<
    SRC,
    const WINDOW: usize = 32,
    const DEPTH: usize = 4,
    const W: usize = INDEX_MAX_FRAGMENTS,
> {
    source: SRC,
    name: IndexName,
    size: u64,
    /// The tree under construction, until every data fragment is in it.
    tree: Option<TreeBuilder<DEPTH, W>>,
    /// The root, once the tree is complete (a coded root for a coded
    /// upload, whose own tree's root is then an interior index).
    root: Option<(IndexBuf<W>, FragmentHash)>,
    /// The coding and the root of the parity tree already stored, for a
    /// coded upload.
    coding: Option<(Coding, FragmentHash)>,
    /// Copies asked for the index fragments (0: the network's `R`).
    index_copies: u8,
    /// Copies asked for the data fragments (0: the network's `R`).
    data_copies: u8,
    root_offered: bool,
    pending: heapless::Vec<Pending<W>, DEPTH>,
    /// The next data fragment to read.
    next_data: u64,
    data_count: u64,
    total: u64,
    acked_count: u64,
    /// Fragments offered and not acknowledged: in flight, or waiting after
    /// a loss or a refusal.
    requests: RequestTable<Offer, WINDOW>,
    requester: Requester<PEERS>,
    state: State,
    events: EventQueue<UploadEvent>,
}

impl<SRC: FileSource, const WINDOW: usize, const DEPTH: usize, const W: usize>
    Upload<SRC, WINDOW, DEPTH, W>
{
    /// Prepares the upload of `source` under `name`. Nothing is read yet;
    /// a file larger than the tree this upload can build is refused.
    pub fn new(name: IndexName, source: SRC) -> Result<Self, (UploadError, SRC)> {
        let size = source.size();
        let data_count = data_fragments(size);
        let flat = data_count <= W.min(INDEX_MAX_FRAGMENTS) as u64;
        let total = if DEPTH <= 1 {
            // One flat index (and no tree arithmetic in a small upload).
            flat.then_some(data_count + 1)
        } else {
            match (tree_height(size), index_fragments(size)) {
                (Ok(height), Ok(indexes))
                    if usize::from(height) <= DEPTH && (height > 1 || flat) =>
                {
                    Some(data_count + indexes)
                }
                _ => None,
            }
        };
        let Some(total) = total else {
            return Err((UploadError::FileTooLarge { size }, source));
        };
        Ok(Upload {
            source,
            name,
            size,
            tree: Some(TreeBuilder::new()),
            root: None,
            coding: None,
            index_copies: 0,
            data_copies: 0,
            root_offered: false,
            pending: heapless::Vec::new(),
            next_data: 0,
            data_count,
            total,
            acked_count: 0,
            requests: RequestTable::new(),
            requester: Requester::new(),
            state: State::Running,
            events: EventQueue::new(),
        })
    }

    /// Makes this the upload of a coded file: its data tree as usual, then
    /// a coded root that lists the data tree's root and `parity_root`, the
    /// root of the parity fragments' tree (uploaded before, as an unnamed
    /// file of [`Coding::parity_size`] bytes). The coded root is the
    /// file's address. Needs room for two levels of at least two entries
    /// (`DEPTH` and `W` of 2 or more) and a file of at least one byte.
    pub fn with_coding(
        mut self,
        k: u16,
        m: u16,
        parity_root: FragmentHash,
    ) -> Result<Self, IndexError> {
        if DEPTH < 2 || W < 2 {
            return Err(IndexError::FileTooLarge { size: self.size });
        }
        let coding = Coding::new(self.size, k, m)?;
        self.coding = Some((coding, parity_root));
        self.total += 1;
        Ok(self)
    }

    /// Asks for `copies` copies of every index fragment of the file (its
    /// root and interior indexes) instead of the network's `R` (0): a file
    /// whose data survives is lost with any index, so indexes are worth
    /// more copies than data (capped at the members of the shard and at
    /// [`crate::holders::MAX_COPIES`]).
    pub fn with_index_copies(mut self, copies: u8) -> Self {
        self.index_copies = copies;
        self
    }

    /// Asks for `copies` copies of every data fragment instead of the
    /// network's `R` (0): fewer for the data and parity of a coded file,
    /// whose stripes survive the loss of some.
    pub fn with_data_copies(mut self, copies: u8) -> Self {
        self.data_copies = copies;
        self
    }

    /// The file's address, the hash of its root index, once every data
    /// fragment has been read.
    pub fn index_hash(&self) -> Option<FragmentHash> {
        self.root.as_ref().map(|(_, hash)| *hash)
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

    /// Fragments to store: data fragments and every index of the tree.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// Fragments acknowledged so far.
    pub fn acknowledged(&self) -> u64 {
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

    /// Marks every request for this hash stored (a file can repeat a
    /// fragment), and frees the interior indexes it was.
    fn mark_stored(&mut self, hash: FragmentHash, holder: PeerInfo, already: bool) {
        let mut i = 0;
        while let Some(request) = self.requests.get(i) {
            if request.item.hash != hash {
                i += 1;
                continue;
            }
            let item = request.item.item;
            self.requests.remove(i);
            self.acked_count += 1;
            self.events.push(UploadEvent::Stored { item, hash, holder, already });
            if item == Item::Root && self.state == State::Running {
                self.state = State::Finished;
                self.events.push(UploadEvent::Finished { index_hash: hash });
            }
        }
        self.pending.retain(|p| !(p.offered && p.hash == hash));
    }

    /// Fails the upload if a request has used up its attempts.
    fn gave_up(&mut self, now: Instant) -> bool {
        if let Some(request) = spent(&self.requests, now) {
            let (attempts, item) = (request.attempts, request.item.item);
            self.fail(UploadError::GaveUp { item, attempts });
        }
        self.is_done()
    }

    fn fail(&mut self, error: UploadError) {
        if self.state == State::Running {
            self.state = State::Failed(error);
            self.events.push(UploadEvent::Failed(error));
        }
    }

    /// The next fragment to offer, if the window and the interior indexes
    /// kept allow: an interior index built and not yet offered, else the
    /// next data fragment (read and hashed now), else the last interior
    /// indexes and the root; the root only once nothing else is
    /// outstanding.
    fn next_offer(&mut self) -> Option<(Item, FragmentHash)> {
        if DEPTH > 1 {
            if let Some(p) = self.pending.iter_mut().find(|p| !p.offered) {
                p.offered = true;
                return Some((Item::Index, p.hash));
            }
        }
        let tree = self.tree.as_mut()?;
        // The next push may complete one interior index per level.
        // (Always, with one level: nothing is ever pending.)
        let room = DEPTH <= 1 || self.pending.len() + tree.levels().max(1) <= DEPTH;
        if self.next_data < self.data_count {
            if !room && tree.levels() > 0 {
                return None;
            }
            let n = self.next_data;
            let hash = match hash_fragment(&mut self.source, self.size, n) {
                Ok(hash) => hash,
                Err(e) => {
                    self.fail(e);
                    return None;
                }
            };
            let len = data_fragment_len(self.size, n);
            let pending = &mut self.pending;
            let pushed = tree.push(hash, len, |index, hash| keep(pending, index, hash));
            if pushed.is_err() {
                self.fail(UploadError::FileTooLarge { size: self.size });
                return None;
            }
            self.next_data += 1;
            return Some((Item::Data(n), hash));
        }
        // Finishing may seal an interior index a level (and a coded
        // upload keeps its data tree's root too).
        if !room && (tree.levels() > 1 || self.coding.is_some()) {
            return None;
        }
        let tree = self.tree.take()?;
        let pending = &mut self.pending;
        let finished = tree.finish(self.name, |index, hash| keep(pending, index, hash));
        match finished {
            Ok(root) => {
                let hash = root.hash();
                // (A small upload cannot be coded: no code for it.)
                let coding = if DEPTH > 1 && W > 1 { self.coding } else { None };
                self.root = Some(match coding {
                    Some((coding, parity)) => {
                        keep(pending, &root, hash);
                        // The copy counts go in the root: a node that
                        // rebuilds lost pieces stores them as asked here.
                        let coding = Coding {
                            data_copies: self.data_copies,
                            index_copies: self.index_copies,
                            ..coding
                        };
                        let coded = IndexBuf::coded_root(self.name, coding, hash, parity);
                        let coded_hash = coded.hash();
                        (coded, coded_hash)
                    }
                    None => (root, hash),
                });
            }
            Err(_) => self.fail(UploadError::FileTooLarge { size: self.size }),
        }
        self.next_offer()
    }

    /// The root, when every other fragment is acknowledged.
    fn root_offer(&mut self) -> Option<(Item, FragmentHash)> {
        let (_, hash) = self.root.as_ref()?;
        if self.root_offered || !self.requests.is_empty() || !self.pending.is_empty() {
            return None;
        }
        self.root_offered = true;
        Some((Item::Root, *hash))
    }

    /// Takes new fragments into the request table while it has room, then
    /// sends every request that may go.
    fn send_more<S: FragmentStore, const N: usize, const D: usize, const F: usize>(
        &mut self,
        now: Instant,
        node: &mut Node<S, N, D, F>,
        sink: &mut impl Transmit,
    ) {
        while self.state == State::Running && !self.requests.is_full() {
            let Some((item, hash)) = self.next_offer().or_else(|| self.root_offer()) else {
                break;
            };
            let offer = Offer { item, hash, redirects: 0, sampled: false, timed_out: None };
            let _ = self.requests.push(Request::new(offer, now));
        }
        self.requester.unblock(&mut self.requests, now);
        while self.state == State::Running && self.requests.in_flight() < WINDOW {
            let Some(i) = self.requests.next_ready(now) else { return };
            let Some(&request) = self.requests.get(i) else { return };
            let Offer { item, hash, .. } = request.item;
            let attempt = request.attempts;
            let pick = self.requester.pick(now, node, &hash, attempt, &Tried::new(), false, sink);
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
            log::trace!("upload: NEWFILE {hash:?} {item} attempt {attempt} to {to}");
            // A refused send is treated like a loss: it times out.
            let copies =
                if matches!(item, Item::Data(_)) { self.data_copies } else { self.index_copies };
            node.offer(now, to, hash, copies, sink);
            self.requester.on_sent(to, now);
            let timeout = self.requester.rto(attempt);
            if let Some(r) = self.requests.get_mut(i) {
                r.sent(to, now, timeout);
            }
        }
    }

    /// A holder asks for units of `hash`: sends them, read from the source
    /// again (or from the index kept), and gives its offer more time.
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
        let Some(item) = self.requests.find(|r| r.hash == hash).map(|r| r.item.item) else {
            return;
        };
        let index = match item {
            Item::Root => self.root.as_ref().map(|(index, _)| index),
            Item::Index => self.pending.iter().find(|p| p.hash == hash).map(|p| &p.index),
            Item::Data(_) => None,
        };
        let (size, source) = (self.size, &mut self.source);
        let fill = |buf: &mut crate::fragment::FragmentBytes| match (item, index) {
            (Item::Data(n), _) => read_fragment(source, size, n, buf),
            (_, Some(index)) => {
                index.encode(buf);
                true
            }
            (_, None) => false,
        };
        match node.send_pieces(now, from, hash, want, piece_units, fill, sink) {
            Ok(()) => {}
            Err(RequestError::SourceFailed) => {
                let offset = match item {
                    Item::Data(n) => n * FRAGMENT_SIZE as u64,
                    Item::Index | Item::Root => self.size,
                };
                self.fail(UploadError::SourceFailed { offset });
                return;
            }
            Err(RequestError::HashMismatch) => {
                self.fail(UploadError::SourceChanged { item });
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

/// The address `name` and `source` would have: the hash of the root of
/// its index tree, computed by reading the source once (as `dhthash`
/// does). `each` sees every fragment of the file in the order an upload
/// offers them (interior indexes as they complete, the root last).
pub fn hash_file<SRC: FileSource>(
    name: IndexName,
    source: &mut SRC,
    mut each: impl FnMut(Item, FragmentHash),
) -> Result<FragmentHash, UploadError> {
    const LEVELS: usize = crate::index::MAX_HEIGHT as usize;
    let size = source.size();
    let too_large = |_| UploadError::FileTooLarge { size };
    let mut tree = TreeBuilder::<LEVELS>::new();
    let mut sealed = heapless::Vec::<FragmentHash, LEVELS>::new();
    for n in 0..data_fragments(size) {
        let hash = hash_fragment(source, size, n)?;
        tree.push(hash, data_fragment_len(size, n), |_, hash| {
            let _ = sealed.push(hash);
        })
        .map_err(too_large)?;
        each(Item::Data(n), hash);
        for index in sealed.drain(..) {
            each(Item::Index, index);
        }
    }
    let root = tree
        .finish(name, |_, hash| {
            let _ = sealed.push(hash);
        })
        .map_err(too_large)?;
    for index in sealed.drain(..) {
        each(Item::Index, index);
    }
    let hash = root.hash();
    each(Item::Root, hash);
    Ok(hash)
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
        const DEPTH: usize,
        const W: usize,
    > App<S, N, D, F> for Upload<SRC, WINDOW, DEPTH, W>
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
        self.requester.expire(&mut self.requests, now, |offer, to| offer.timed_out = Some(to));
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
        // Believed only from a member the offer went to, from its
        // address: anyone else's word is dropped. One whose offer timed
        // out is believed when it holds the fragment: dropping its late
        // STORED left the offer waiting on the next member, which might
        // never answer (0.5 s for one fragment, right after a deploy).
        let held = outcome.is_held();
        let asked = |r: &Request<Offer>| {
            r.item.hash == *hash
                && (r.in_flight_to() == Some(from.addr)
                    || held && r.item.timed_out == Some(from.addr))
        };
        let Some(position) = self.requests.position(asked) else { return };
        self.requester.hint(*hash, holders);
        let Some(request) = self.requests.get_mut(position) else { return };
        let to = request.in_flight_to().unwrap_or(from.addr);
        if outcome.is_held() {
            let sample = !request.item.sampled;
            self.requester.answered_sampling(request, from.addr, now, sample);
            self.mark_stored(*hash, *from, *outcome == StoreOutcome::AlreadyHeld);
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

impl<SRC, const WINDOW: usize, const DEPTH: usize, const W: usize> fmt::Debug
    for Upload<SRC, WINDOW, DEPTH, W>
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Upload")
            .field("root", &self.root.as_ref().map(|(_, hash)| hash))
            .field("acked", &self.acked_count)
            .field("total", &self.total)
            .field("outstanding", &self.requests.len())
            .field("in_flight", &self.requests.in_flight())
            .field("state", &self.state)
            .field("srtt", &self.requester.srtt())
            .finish()
    }
}

#[cfg(test)]
mod tests;
