//! Downloading a file: the client state machine behind `dhtrecv`.
//!
//! A [`Download`] first fetches the root index by its hash, validates it,
//! and reports the file's name and size ([`DownloadEvent::IndexReceived`]).
//! It then walks the index tree depth first, holding the indexes of one
//! path from the root (`DEPTH` of them; a file of one index has a path of
//! one), fetching each interior index when the walk reaches it (the next
//! one as soon as the last entry of the current one is taken) and checking
//! it against what its parent says (height, size, no name). It requests
//! the data fragments, up to `WINDOW` at a time, from the
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
//! Memory: `WINDOW` slots of 8 KB, one slot for indexes, and `DEPTH`
//! indexes, whatever the file's size. A host uses 16 or more slots; a
//! microcontroller can download a file of one index with one slot and
//! `DEPTH` 1, or any file with `DEPTH` 4, into a streaming sink.

use core::fmt;

use crate::client::{refusal_backoff, spent, EventQueue, Pick, Requester, Tried, RETRY_TICK};
use crate::config::FRAGMENT_SIZE;
use crate::driver::App;
use crate::fragment::{FragmentBytes, FragmentHash};
use crate::id::{PeerAddr, Shard};
use crate::index::{
    data_fragment_len, data_fragments, Coding, IndexError, IndexFragment, IndexName,
};
use crate::node::{Node, Reply, Transmit};
use crate::requests::{Request, RequestTable};
use crate::store::FragmentStore;
use crate::time::{Duration, Instant};
use crate::wire::{piece_mask, ALL_UNITS, UNIT};

/// Where downloaded bytes go, in file order.
pub trait FileSink {
    /// Appends `bytes` to the file. Returns `false` if they cannot be
    /// written (the download then fails).
    fn write(&mut self, bytes: &[u8]) -> bool;

    /// Whether the sink already holds, at `offset`, the `len` bytes of a
    /// data fragment whose hash (zero-padded to 8192 bytes) is `hash`: a
    /// download resumed into what an interrupted one left. Such fragments
    /// are not fetched; [`FileSink::skip`] passes over them in order. The
    /// default holds nothing.
    fn holds(&mut self, offset: u64, len: usize, hash: &FragmentHash) -> bool {
        let _ = (offset, len, hash);
        false
    }

    /// Whether the download should wait for a data fragment as long as
    /// for any (16 attempts over at least 8 s), or give it up after
    /// [`CODED_ATTEMPTS`] over [`CODED_GIVE_UP_AFTER`] (a sink that can do
    /// without fragments, as one that gathers the pieces of a stripe). A
    /// coded file's data fragments are given up early anyway.
    fn patient(&self) -> bool {
        true
    }

    /// No holder gave the data fragment at `offset` (`len` bytes, `hash`):
    /// whether the sink does without it (it is then passed over with
    /// [`FileSink::skip`] in order, as if held). The default does not:
    /// the download fails with [`DownloadError::FragmentUnavailable`].
    fn lost(&mut self, offset: u64, len: usize, hash: &FragmentHash) -> bool {
        let _ = (offset, len, hash);
        false
    }

    /// Passes over `len` bytes the sink said it [holds](FileSink::holds),
    /// in file order where they would have been written. Returns `false`
    /// if it cannot (the download then fails).
    fn skip(&mut self, len: usize) -> bool {
        let _ = len;
        false
    }
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
    /// An interior index of the file's tree could not be obtained.
    IndexUnavailable {
        /// Attempts made.
        attempts: u8,
    },
    /// The file's tree is taller than this download can walk.
    TooDeep {
        /// The root's height.
        height: u8,
    },
    /// A data fragment could not be obtained.
    FragmentUnavailable {
        /// Its position in the file.
        fragment: u64,
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
            DownloadError::BadIndex(e) => write!(
                f,
                "what came is not a file's index ({e}): the hash of a data fragment, or a \
                 damaged index; give the address dhtsend printed"
            ),
            DownloadError::IndexUnavailable { attempts } => write!(
                f,
                "an index fragment of the file could not be fetched after {attempts} attempts"
            ),
            DownloadError::TooDeep { height } => write!(
                f,
                "the file's index tree has {height} levels, more than this download can hold"
            ),
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
        fragments: u64,
    },
    /// Fragment `fragment` was written to the sink.
    Written {
        /// Its position in the file.
        fragment: u64,
    },
    /// No member of `shard` can be asked (none is known, or each known
    /// one was tried: busy, full or silent): the download searches the
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

/// What a request asks for: an index (`item: None`) or a data fragment,
/// and the peers that failed it.
#[derive(Clone, Copy, Debug)]
struct Wanted {
    item: Option<u64>,
    hash: FragmentHash,
    /// Peers that answered NOTFOUND, did not answer, or sent wrong bytes.
    tried: Tried,
    /// Pieces came since the last FILEGET.
    progress: bool,
    /// The round trip was sampled (at the first piece of a first
    /// attempt), or can no longer be (missing pieces were asked again).
    sampled: bool,
    /// Every member known to hold it was asked and failed it: the pick
    /// came back to one tried already.
    asked_all: bool,
}

/// A place for one fragment in the window, or for the index being
/// fetched.
#[derive(Clone)]
struct Slot {
    item: Option<u64>,
    ready: bool,
    /// The sink holds these bytes already: skipped, not written.
    held: bool,
    /// Units received, bit `i` for unit `i`.
    have: u16,
    data: FragmentBytes,
}

impl Slot {
    const EMPTY: Slot =
        Slot { item: None, ready: false, held: false, have: 0, data: [0; FRAGMENT_SIZE] };
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    FetchingIndex,
    Fetching,
    Finished,
    Failed(DownloadError),
}

/// What a coded root said.
#[derive(Clone, Copy, Debug)]
struct Coded {
    name: IndexName,
    coding: Coding,
    parity: FragmentHash,
}

/// An index on the walk's path and its next entry to take.
#[derive(Clone)]
struct Level {
    index: IndexFragment,
    next: usize,
}

/// What the walk gives next.
enum Step {
    /// The hash of the next data fragment.
    Data(FragmentHash),
    /// The index that must be fetched first (entry `next - 1` of the
    /// nested index on top of the path).
    Index(FragmentHash),
    /// The file has no more data fragments.
    End,
}

pub use crate::client::{GIVE_UP_AFTER, MAX_ATTEMPTS};
/// Peers whose windows are tracked at once.
const PEERS: usize = 32;
/// A data fragment of a coded file is given up (for its stripe to be
/// decoded) after this many attempts, once as many members said they do
/// not have it (or failed to answer)...
pub const CODED_ATTEMPTS: u8 = 4;
/// ...or this long since the first.
pub const CODED_GIVE_UP_AFTER: Duration = Duration::from_secs(1);
/// Searches of a shard nobody is known in before a coded download (or an
/// impatient sink's) gives its fragments up: about 4.5 s.
const QUICK_SEARCHES: u8 = 4;

/// A download into `K` in progress, with `WINDOW` fragment slots, walking
/// an index tree of up to `DEPTH` levels.
pub struct Download<K, const WINDOW: usize = 16, const DEPTH: usize = 4> {
    sink: K,
    index_hash: FragmentHash,
    /// The root's name and the file's size, once the root is in.
    file: Option<(IndexName, u64)>,
    /// The coding of a coded file, once its coded root is in.
    coded: Option<Coded>,
    /// The indexes from the root down to the one being read.
    path: heapless::Vec<Level, DEPTH>,
    /// An index is being fetched into `index_slot`.
    fetching_index: bool,
    index_slot: Slot,
    slots: [Slot; WINDOW],
    data_count: u64,
    next_deliver: u64,
    next_assign: u64,
    written: u64,
    /// Data fragments the sink already held.
    reused: u64,
    /// The index's request, then one per slot being filled.
    requests: RequestTable<Wanted, WINDOW>,
    requester: Requester<PEERS>,
    state: State,
    events: EventQueue<DownloadEvent>,
}

impl<K: FileSink, const WINDOW: usize, const DEPTH: usize> Download<K, WINDOW, DEPTH> {
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
            asked_all: false,
        };
        let _ = requests.push(Request::new(wanted, Instant::ZERO));
        let mut requester = Requester::new();
        if !sink.patient() {
            requester.limit_searches(QUICK_SEARCHES);
        }
        Download {
            sink,
            index_hash,
            file: None,
            coded: None,
            path: heapless::Vec::new(),
            fetching_index: true,
            index_slot: Slot::EMPTY,
            slots: [const { Slot::EMPTY }; WINDOW],
            data_count: 0,
            next_deliver: 0,
            next_assign: 0,
            written: 0,
            reused: 0,
            requests,
            requester,
            state: State::FetchingIndex,
            events: EventQueue::new(),
        }
    }

    /// The coding of a coded file and the root of its parity tree, once
    /// its coded root is in. The download reads the file's own tree, data
    /// fragments only; a caller that meets a fragment nobody holds decodes
    /// its stripe from the parity tree ([`Coding::stripe`]).
    pub fn coding(&self) -> Option<(Coding, FragmentHash)> {
        self.coded.as_ref().map(|c| (c.coding, c.parity))
    }

    /// The file's name and size, once its root index is in.
    pub fn file(&self) -> Option<(&IndexName, u64)> {
        self.file.as_ref().map(|(name, size)| (name, *size))
    }

    /// Bytes written to the sink so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Data fragments the sink already held (not fetched).
    pub fn reused(&self) -> u64 {
        self.reused
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
        // Every spent request at once: a sink that does without lost
        // fragments should not wait a timeout for each.
        loop {
            let quick = self.can_do_without();
            let coded_spent = |r: &&Request<Wanted>| {
                // A coded file's data fragment is rebuilt from its stripe
                // rather than waited for.
                quick
                    && r.item.item.is_some()
                    && !r.is_in_flight()
                    && r.attempts >= CODED_ATTEMPTS
                    && (r.item.tried.len() >= usize::from(CODED_ATTEMPTS)
                        || r.item.asked_all
                        || r.first_sent.is_some_and(|t| now >= t + CODED_GIVE_UP_AFTER))
            };
            let found =
                spent(&self.requests, now).or_else(|| self.requests.iter().find(coded_spent));
            let Some(request) = found.copied() else { return };
            let attempts = request.attempts;
            match request.item.item {
                None if self.file.is_none() && self.coded.is_none() => {
                    return self.fail(DownloadError::IndexNotFound { attempts })
                }
                None => return self.fail(DownloadError::IndexUnavailable { attempts }),
                Some(fragment) if self.pass_over(fragment, &request.item.hash) => {}
                Some(fragment) => {
                    return self.fail(DownloadError::FragmentUnavailable { fragment, attempts })
                }
            }
        }
    }

    /// Whether a data fragment nobody gives is given up early: a coded
    /// file's is rebuilt from its stripe, an impatient sink's passed over.
    fn can_do_without(&self) -> bool {
        self.coded.is_some() || !self.sink.patient()
    }

    /// Offers the sink to do without data fragment `item`, which no
    /// holder gave ([`FileSink::lost`]); if it takes the offer, the
    /// fragment is passed over like one it holds.
    fn pass_over(&mut self, item: u64, hash: &FragmentHash) -> bool {
        let Some((_, size)) = self.file else { return false };
        let (offset, len) = (item * FRAGMENT_SIZE as u64, data_fragment_len(size, item));
        // Passed over only if its request goes (else the caller would find
        // it spent again and again).
        let Some(i) = self.requests.position(|r| r.item.item == Some(item)) else { return false };
        if !self.sink.lost(offset, len, hash) {
            return false;
        }
        self.requests.remove(i);
        if let Some(slot) = slot_of(&mut self.slots, &mut self.index_slot, Some(item)) {
            slot.ready = true;
            slot.held = true;
            slot.have = 0;
        }
        true
    }

    /// Takes the index just received: the root, or the next index of the
    /// walk, checked against its parent.
    fn take_index(&mut self, now: Instant) {
        self.fetching_index = false;
        self.index_slot.have = 0;
        let index = match IndexFragment::decode(&self.index_slot.data) {
            Ok(index) => index,
            Err(e) => return self.fail(DownloadError::BadIndex(e)),
        };
        let checked = match (self.path.last(), &self.coded) {
            (None, None) => index.check_root(),
            // The file's own tree under a coded root: a plain root of the
            // same name and size.
            (None, Some(coded)) => index.check_root().and_then(|()| {
                let same = index.coded().is_none()
                    && index.name() == &coded.name
                    && index.file_size() == coded.coding.size;
                if same {
                    Ok(())
                } else {
                    Err(crate::index::IndexError::ChildMismatch)
                }
            }),
            (Some(parent), _) => parent.index.check_child(parent.next.wrapping_sub(1), &index),
        };
        if let Err(e) = checked {
            return self.fail(DownloadError::BadIndex(e));
        }
        if let Some((coding, data, parity)) = index.coded() {
            // Read the data the cheap way: the file's own tree, no parity.
            self.coded = Some(Coded { name: *index.name(), coding, parity });
            self.requester.limit_searches(QUICK_SEARCHES);
            let wanted = Wanted {
                item: None,
                hash: data,
                tried: Tried::new(),
                progress: false,
                sampled: false,
                asked_all: false,
            };
            if self.requests.push(Request::new(wanted, now)).is_ok() {
                self.fetching_index = true;
            }
            return;
        }
        if self.path.is_empty() {
            let size = index.file_size();
            let fragments = data_fragments(size);
            self.events.push(DownloadEvent::IndexReceived { name: *index.name(), size, fragments });
            self.file = Some((*index.name(), size));
            self.data_count = fragments;
            self.state = State::Fetching;
        }
        let height = index.height();
        if self.path.push(Level { index, next: 0 }).is_err() {
            return self.fail(DownloadError::TooDeep { height });
        }
        if self.data_count == 0 {
            self.finish();
        }
    }

    /// Takes the next entry of the walk: a data fragment's hash, or the
    /// hash of an index to fetch first. Exhausted indexes leave the path.
    fn step(&mut self) -> Step {
        while let Some(level) = self.path.last_mut() {
            let Some(hash) = level.index.hash_of(level.next) else {
                self.path.pop();
                continue;
            };
            level.next += 1;
            return match level.index.is_nested() {
                true => Step::Index(hash),
                false => Step::Data(hash),
            };
        }
        Step::End
    }

    /// Writes ready fragments in order and frees their slots.
    fn deliver(&mut self) {
        if self.state != State::Fetching {
            return;
        }
        let Some((_, size)) = self.file else { return };
        loop {
            let item = self.next_deliver;
            if item >= self.data_count {
                break;
            }
            let len = data_fragment_len(size, item);
            let Some(slot) = self.slots.get_mut(slot_number::<WINDOW>(item)) else { return };
            if slot.item != Some(item) || !slot.ready {
                return;
            }
            let done = match slot.held {
                true => self.sink.skip(len),
                false => self.sink.write(slot.data.get(..len).unwrap_or(&[])),
            };
            if !done {
                self.fail(DownloadError::SinkFailed);
                return;
            }
            slot.item = None;
            slot.ready = false;
            slot.held = false;
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
        // A fragment given up for want of any holder frees its slot: go
        // round again to deliver past it and fill the slot.
        while self.send_round(now, node, sink) {}
    }

    /// One round of [`Download::send_more`]; `true` if a fragment was
    /// passed over (the slots changed).
    fn send_round<S: FragmentStore, const N: usize, const D: usize, const F: usize>(
        &mut self,
        now: Instant,
        node: &mut Node<S, N, D, F>,
        sink: &mut impl Transmit,
    ) -> bool {
        // Fragments the sink holds already are ready at once: skipping
        // them frees slots for more, until one must be fetched.
        while self.state == State::Fetching {
            let before = (self.next_assign, self.next_deliver);
            self.assign_slots(now);
            self.deliver();
            if (self.next_assign, self.next_deliver) == before {
                break;
            }
        }
        self.requester.unblock(&mut self.requests, now);
        while !Download::is_done(self) {
            let Some(i) = self.requests.next_ready(now) else { return false };
            let Some(&request) = self.requests.get(i) else { return false };
            let hash = request.item.hash;
            // An index (no item number) may have copies in several shards.
            let spread = request.item.item.is_none();
            let tried = &request.item.tried;
            let pick = self.requester.pick(now, node, &hash, request.attempts, tried, spread, sink);
            if let Some(shard) = self.requester.take_search_began() {
                self.events.push(DownloadEvent::Searching { shard });
            }
            let Some(request) = self.requests.get_mut(i) else { return false };
            match pick {
                Pick::Target(to) => {
                    log::trace!("download: FILEGET {hash:?} attempt {} to {to}", request.attempts);
                    request.item.asked_all |= request.item.tried.contains(&to);
                    let have = slot_of(&mut self.slots, &mut self.index_slot, request.item.item)
                        .map_or(0, |s| s.have);
                    node.send_fileget(now, to, hash, ALL_UNITS & !have, sink);
                    self.requester.on_sent(to, now);
                    request.item.progress = false;
                    request.sent(to, now, self.requester.rto(request.attempts));
                }
                Pick::Wait => request.wait_until(now + RETRY_TICK),
                Pick::Full => request.block_until(now + RETRY_TICK),
                Pick::NoHolder => {
                    // Nobody of the shard can be found: a fragment a coded
                    // download (or an impatient sink) can do without is
                    // given up like one nobody has.
                    let (item, attempts) = (request.item.item, request.attempts);
                    let quick = self.can_do_without();
                    match item.filter(|_| quick) {
                        Some(fragment) if self.pass_over(fragment, &hash) => return true,
                        Some(fragment) => {
                            self.fail(DownloadError::FragmentUnavailable { fragment, attempts });
                            return false;
                        }
                        None => {
                            self.fail(DownloadError::NoHolder { shard: hash.shard() });
                            return false;
                        }
                    }
                }
            }
        }
        false
    }

    /// Gives free slots the next fragments of the file, and asks for the
    /// next index of the walk as soon as the current one is used up.
    fn assign_slots(&mut self, now: Instant) {
        while !self.fetching_index && self.state == State::Fetching && !self.requests.is_full() {
            let exhausted = self.path.last().is_some_and(|l| l.next >= l.index.fragment_count());
            let room = self.next_assign < self.data_count
                && self.next_assign - self.next_deliver < WINDOW as u64;
            if !exhausted && !room {
                return;
            }
            let item = self.next_assign;
            if !exhausted {
                let Some(slot) = self.slots.get(slot_number::<WINDOW>(item)) else { return };
                if slot.item.is_some() {
                    return;
                }
            }
            let (item, hash) = match self.step() {
                Step::Data(hash) => (Some(item), hash),
                Step::Index(hash) => (None, hash),
                Step::End => return,
            };
            if let Some(item) = item {
                if self.sink_holds(item, &hash) {
                    continue;
                }
            }
            let wanted = Wanted {
                item,
                hash,
                tried: Tried::new(),
                progress: false,
                sampled: false,
                asked_all: false,
            };
            if self.requests.push(Request::new(wanted, now)).is_err() {
                return;
            }
            match item {
                None => {
                    self.fetching_index = true;
                    self.index_slot.have = 0;
                }
                Some(item) => {
                    if let Some(slot) = self.slots.get_mut(slot_number::<WINDOW>(item)) {
                        slot.item = Some(item);
                        slot.ready = false;
                        slot.have = 0;
                    }
                    self.next_assign += 1;
                }
            }
        }
    }
}

impl<K: FileSink, const WINDOW: usize, const DEPTH: usize> Download<K, WINDOW, DEPTH> {
    /// Asks the sink whether it holds data fragment `item` already; if so
    /// its slot is ready to be skipped, with no request.
    fn sink_holds(&mut self, item: u64, hash: &FragmentHash) -> bool {
        let Some((_, size)) = self.file else { return false };
        let (offset, len) = (item * FRAGMENT_SIZE as u64, data_fragment_len(size, item));
        if !self.sink.holds(offset, len, hash) {
            return false;
        }
        let Some(slot) = self.slots.get_mut(slot_number::<WINDOW>(item)) else { return false };
        slot.item = Some(item);
        slot.ready = true;
        slot.held = true;
        slot.have = 0;
        self.next_assign += 1;
        self.reused += 1;
        true
    }
}

/// The slot of data fragment `item`.
fn slot_number<const WINDOW: usize>(item: u64) -> usize {
    (item % WINDOW.max(1) as u64) as usize
}

impl<K: FileSink, const WINDOW: usize, const DEPTH: usize> Download<K, WINDOW, DEPTH> {
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
            let Some(slot) = slot_of(&mut self.slots, &mut self.index_slot, request.item.item)
            else {
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
                None => self.take_index(now),
                Some(_) => slot.ready = true,
            }
        }
    }
}

/// The slot that receives `item` (the index slot for an index).
fn slot_of<'a, const WINDOW: usize>(
    slots: &'a mut [Slot; WINDOW],
    index_slot: &'a mut Slot,
    item: Option<u64>,
) -> Option<&'a mut Slot> {
    match item {
        None => Some(index_slot),
        Some(item) => slots.get_mut(slot_number::<WINDOW>(item)).filter(|s| s.item == Some(item)),
    }
}

impl<
        S,
        K,
        const N: usize,
        const D: usize,
        const F: usize,
        const WINDOW: usize,
        const DEPTH: usize,
    > App<S, N, D, F> for Download<K, WINDOW, DEPTH>
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
            let have = slot_of(&mut self.slots, &mut self.index_slot, request.item.item)
                .map_or(0, |s| s.have);
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

impl<K, const WINDOW: usize, const DEPTH: usize> fmt::Debug for Download<K, WINDOW, DEPTH> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let pending: heapless::Vec<(Option<u64>, Option<PeerAddr>, u8), WINDOW> =
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
        let writer = net.add_joined_client(1, Duration::from_secs(5));
        let hash = net.upload(writer, "f.bin", data.to_vec());
        assert!(net.run_until(Duration::from_secs(30), |n| n.upload_done(writer).is_some()));
        assert_eq!(net.upload_done(writer), Some(Ok(hash)));
        net.run_for(Duration::from_secs(2));
        let reader = net.add_joined_client(40, Duration::from_secs(5));
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
    fn a_file_of_two_index_levels_round_trips_and_a_one_slot_download_walks_it() {
        // One byte more than one index holds: a root, two leaf indexes.
        let data = bytes(6, crate::MAX_FILE_SIZE as usize + 1 + FRAGMENT_SIZE);
        let (mut net, hash, reader) = uploaded(6, &data);
        net.download(reader, hash);
        assert!(net.run_until(Duration::from_secs(60), |n| n.downloaded(reader).is_some()));
        assert_eq!(net.downloaded(reader), Some(Ok(&data[..])));
        let other = net.add_joined_client(9, Duration::from_secs(5));
        net.download_one_slot(other, hash);
        assert!(net.run_until(Duration::from_secs(120), |n| n.downloaded(other).is_some()));
        assert_eq!(net.downloaded(other), Some(Ok(&data[..])));
    }

    #[test]
    fn a_resumed_download_fetches_only_what_is_missing_or_wrong() {
        let data = bytes(7, 40 * FRAGMENT_SIZE + 77);
        let (mut net, hash, reader) = uploaded(7, &data);
        // An interrupted download left 25 fragments and a half, one of
        // them damaged.
        let mut left = data[..25 * FRAGMENT_SIZE + 4000].to_vec();
        left[3 * FRAGMENT_SIZE + 10] ^= 0xFF;
        net.download_over(reader, hash, left);
        assert!(net.run_until(Duration::from_secs(30), |n| n.downloaded(reader).is_some()));
        assert_eq!(net.downloaded(reader), Some(Ok(&data[..])));
        assert_eq!(net.reused(reader), 24, "24 whole, right fragments are kept");
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
