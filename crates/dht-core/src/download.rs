//! Downloading a file: the client state machine behind `dhtrecv`.
//!
//! A [`Download`] first fetches the index fragment by its hash, validates
//! it, and reports its name and size ([`DownloadEvent::IndexReceived`]).
//! It then requests the data fragments, up to `WINDOW` at a time, from the
//! members of each fragment's shard: a request that times out or is
//! answered NOTFOUND goes to the next candidate holder. The node has
//! already checked every fragment against its hash; the download keeps
//! fragments that arrive out of order in its `WINDOW` slots and hands
//! bytes to the caller's [`FileSink`] strictly in file order, the last
//! fragment cut to the file's length.
//!
//! Memory: `WINDOW` slots of 8 KB plus the index. A host uses 16 or more
//! slots; a microcontroller can download with one.

use core::fmt;

use heapless::Deque;

use crate::client::{exhausted, refusal_backoff, Pick, Requester, Tried};
use crate::config::FRAGMENT_SIZE;
use crate::fragment::{FragmentBytes, FragmentHash, IndexError, IndexFragment, IndexName};
use crate::id::{PeerAddr, Shard};
use crate::node::{Node, Reply, Transmit};
use crate::store::FragmentStore;
use crate::time::Instant;

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
    /// The whole file was written.
    Finished {
        /// Bytes written.
        size: u64,
    },
    /// The download stopped.
    Failed(DownloadError),
}

/// One outstanding request.
#[derive(Clone, Copy, Debug)]
struct Request {
    hash: FragmentHash,
    to: Option<PeerAddr>,
    sent_at: Instant,
    first_sent: Option<Instant>,
    /// While in flight, when it times out.
    deadline: Option<Instant>,
    /// While waiting after a refusal, not before this.
    not_before: Instant,
    attempts: u8,
    /// Peers that answered NOTFOUND or did not answer.
    tried: Tried,
}

impl Request {
    const fn new(hash: FragmentHash) -> Self {
        Request {
            hash,
            to: None,
            sent_at: Instant::ZERO,
            first_sent: None,
            deadline: None,
            not_before: Instant::ZERO,
            attempts: 0,
            tried: Tried::new(),
        }
    }
}

/// A place for one fragment in the window.
#[derive(Clone)]
struct Slot {
    item: Option<u16>,
    request: Request,
    ready: bool,
    data: FragmentBytes,
}

impl Slot {
    const EMPTY: Slot = Slot {
        item: None,
        request: Request::new(FragmentHash([0; 32])),
        ready: false,
        data: [0; FRAGMENT_SIZE],
    };
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

/// A download in progress with `WINDOW` fragment slots.
pub struct Download<const WINDOW: usize = 16> {
    index_hash: FragmentHash,
    index_request: Request,
    index: Option<IndexFragment>,
    slots: [Slot; WINDOW],
    next_deliver: u16,
    next_assign: u16,
    written: u64,
    requester: Requester<PEERS>,
    state: State,
    events: Deque<DownloadEvent, 16>,
}

impl<const WINDOW: usize> Download<WINDOW> {
    /// A window of zero slots could never hold a fragment.
    const WINDOW_IS_NOT_EMPTY: () = assert!(WINDOW > 0, "a download needs at least one slot");

    /// A download of the file whose index hashes to `index_hash`.
    pub fn new(index_hash: FragmentHash) -> Self {
        let () = Self::WINDOW_IS_NOT_EMPTY;
        Download {
            index_hash,
            index_request: Request::new(index_hash),
            index: None,
            slots: [const { Slot::EMPTY }; WINDOW],
            next_deliver: 0,
            next_assign: 0,
            written: 0,
            requester: Requester::new(),
            state: State::FetchingIndex,
            events: Deque::new(),
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
        self.events.pop_front()
    }

    /// When [`Download::handle_timeout`] should next be called.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        // A request in flight wakes us at its deadline, one waiting after a
        // refusal at its `not_before`.
        let wake = |r: &Request| r.deadline.or(Some(r.not_before).filter(|t| *t > Instant::ZERO));
        let requests = match self.state {
            State::FetchingIndex => wake(&self.index_request),
            State::Fetching => self
                .slots
                .iter()
                .filter(|s| s.item.is_some() && !s.ready)
                .filter_map(|s| wake(&s.request))
                .min(),
            State::Finished | State::Failed(_) => return None,
        };
        match (requests, self.requester.retry_at()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
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

    /// Retries overdue requests and sends what the windows allow.
    pub fn handle_timeout<S: FragmentStore, const N: usize, const D: usize, const F: usize>(
        &mut self,
        now: Instant,
        node: &mut Node<S, N, D, F>,
        sink: &mut impl Transmit,
    ) {
        self.requester.on_timeout(now);
        let overdue = |r: &Request| r.deadline.is_some_and(|d| d <= now);
        if overdue(&self.index_request) {
            Self::lost(&mut self.requester, &mut self.index_request);
        }
        for slot in self.slots.iter_mut() {
            if slot.item.is_some() && !slot.ready && overdue(&slot.request) {
                Self::lost(&mut self.requester, &mut slot.request);
            }
        }
        self.check_attempts(now);
        self.send_more(now, node, sink);
    }

    /// Takes an answer the node passed up, writing what is now in order.
    pub fn handle_reply<S: FragmentStore, const N: usize, const D: usize, const F: usize>(
        &mut self,
        now: Instant,
        node: &mut Node<S, N, D, F>,
        reply: &Reply<'_>,
        out: &mut impl FileSink,
        sink: &mut impl Transmit,
    ) {
        match reply {
            Reply::Fragment { from, hash, data } => {
                if self.state == State::FetchingIndex && *hash == self.index_hash {
                    Self::answered(&mut self.requester, &mut self.index_request, from.addr, now);
                    self.take_index(data);
                } else if self.state == State::Fetching {
                    for slot in self.slots.iter_mut() {
                        if slot.item.is_some() && !slot.ready && slot.request.hash == *hash {
                            Self::answered(&mut self.requester, &mut slot.request, from.addr, now);
                            slot.data.copy_from_slice(*data);
                            slot.ready = true;
                        }
                    }
                    self.deliver(out);
                }
            }
            Reply::NotFound { from, hash, holders } => {
                self.requester.hint(*hash, holders);
                log::trace!("download: NOTFOUND {hash:?} from {}", from.addr);
                let refused = |r: &mut Request, requester: &mut Requester<PEERS>| {
                    if r.hash == *hash && r.to == Some(from.addr) && r.deadline.is_some() {
                        requester.on_done(from.addr);
                        r.tried.remember(from.addr);
                        r.deadline = None;
                        r.to = None;
                        r.attempts = r.attempts.saturating_add(1);
                        r.not_before = now + refusal_backoff(r.attempts);
                    }
                };
                if self.state == State::FetchingIndex {
                    refused(&mut self.index_request, &mut self.requester);
                }
                for slot in self.slots.iter_mut() {
                    if slot.item.is_some() && !slot.ready {
                        refused(&mut slot.request, &mut self.requester);
                    }
                }
                self.check_attempts(now);
            }
            _ => return,
        }
        self.send_more(now, node, sink);
    }

    fn lost(requester: &mut Requester<PEERS>, request: &mut Request) {
        if let Some(to) = request.to.take() {
            requester.on_loss(to);
            request.tried.remember(to);
        }
        request.deadline = None;
        request.attempts = request.attempts.saturating_add(1);
    }

    fn answered(
        requester: &mut Requester<PEERS>,
        request: &mut Request,
        from: PeerAddr,
        now: Instant,
    ) {
        match request.to.take() {
            Some(to) if to == from => {
                requester.on_answer(to, request.sent_at, request.attempts == 0, now)
            }
            Some(to) => requester.on_done(to),
            None => {}
        }
        request.deadline = None;
    }

    fn check_attempts(&mut self, now: Instant) {
        let spent = |r: &Request| r.deadline.is_none() && exhausted(r.attempts, r.first_sent, now);
        if self.state == State::FetchingIndex && spent(&self.index_request) {
            let attempts = self.index_request.attempts;
            self.fail(DownloadError::IndexNotFound { attempts });
            return;
        }
        let gone = self
            .slots
            .iter()
            .find(|s| s.item.is_some() && !s.ready && spent(&s.request))
            .and_then(|s| s.item.map(|item| (item, s.request.attempts)));
        if let Some((fragment, attempts)) = gone {
            self.fail(DownloadError::FragmentUnavailable { fragment, attempts });
        }
    }

    fn take_index(&mut self, data: &FragmentBytes) {
        match IndexFragment::decode(data) {
            Ok(index) => {
                let fragments = index.fragment_count() as u16;
                self.push_event(DownloadEvent::IndexReceived {
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
    fn deliver(&mut self, out: &mut impl FileSink) {
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
            if !out.write(bytes) {
                self.fail(DownloadError::SinkFailed);
                return;
            }
            slot.item = None;
            slot.ready = false;
            self.written += len as u64;
            self.next_deliver += 1;
            self.push_event(DownloadEvent::Written { fragment: item });
        }
        self.finish();
    }

    fn finish(&mut self) {
        if self.state == State::Fetching {
            self.state = State::Finished;
            self.push_event(DownloadEvent::Finished { size: self.written });
        }
    }

    fn fail(&mut self, error: DownloadError) {
        if matches!(self.state, State::FetchingIndex | State::Fetching) {
            self.state = State::Failed(error);
            self.push_event(DownloadEvent::Failed(error));
        }
    }

    fn push_event(&mut self, event: DownloadEvent) {
        if self.events.is_full() {
            self.events.pop_front();
        }
        let _ = self.events.push_back(event);
    }

    fn send_more<S: FragmentStore, const N: usize, const D: usize, const F: usize>(
        &mut self,
        now: Instant,
        node: &mut Node<S, N, D, F>,
        sink: &mut impl Transmit,
    ) {
        match self.state {
            State::FetchingIndex => {
                let r = &self.index_request;
                if r.deadline.is_none() && r.not_before <= now {
                    let mut request = self.index_request;
                    let result = self.send_request(now, node, &mut request, sink);
                    self.index_request = request;
                    if let Err(shard) = result {
                        self.fail(DownloadError::NoHolder { shard });
                    }
                }
            }
            State::Fetching => {
                self.assign_slots();
                for i in 0..WINDOW {
                    let Some(slot) = self.slots.get(i) else { break };
                    let r = &slot.request;
                    if slot.item.is_none()
                        || slot.ready
                        || r.deadline.is_some()
                        || r.not_before > now
                    {
                        continue;
                    }
                    let mut request = slot.request;
                    let result = self.send_request(now, node, &mut request, sink);
                    if let Some(slot) = self.slots.get_mut(i) {
                        slot.request = request;
                    }
                    if let Err(shard) = result {
                        self.fail(DownloadError::NoHolder { shard });
                        return;
                    }
                }
            }
            State::Finished | State::Failed(_) => {}
        }
    }

    /// Gives free slots the next fragments of the file.
    fn assign_slots(&mut self) {
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
            slot.item = Some(item);
            slot.ready = false;
            slot.request = Request::new(hash);
            self.next_assign += 1;
        }
    }

    /// Sends one FILEGET for `request` if a holder is free; `Err` if the
    /// shard has no member at all.
    fn send_request<S: FragmentStore, const N: usize, const D: usize, const F: usize>(
        &mut self,
        now: Instant,
        node: &mut Node<S, N, D, F>,
        request: &mut Request,
        sink: &mut impl Transmit,
    ) -> Result<(), Shard> {
        // The wait after a refusal is over; from here on a retry timer or
        // the request's deadline wakes us.
        request.not_before = Instant::ZERO;
        match self.requester.pick(now, node, &request.hash, request.attempts, &request.tried, sink)
        {
            Pick::Target(to) => {
                log::trace!(
                    "download: FILEGET {:?} attempt {} to {to}",
                    request.hash,
                    request.attempts
                );
                node.send_fileget(to, request.hash, sink);
                self.requester.on_sent(to, now);
                request.to = Some(to);
                request.sent_at = now;
                request.first_sent.get_or_insert(now);
                request.deadline = Some(now + self.requester.rto(request.attempts));
                Ok(())
            }
            Pick::Wait => Ok(()),
            Pick::NoHolder => Err(request.hash.shard()),
        }
    }
}

impl<const WINDOW: usize> fmt::Debug for Download<WINDOW> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let pending: heapless::Vec<(u16, Option<PeerAddr>, u8, bool), WINDOW> = self
            .slots
            .iter()
            .filter_map(|s| s.item.map(|i| (i, s.request.to, s.request.attempts, s.ready)))
            .collect();
        f.debug_struct("Download")
            .field("index_hash", &self.index_hash)
            .field("state", &self.state)
            .field("next_deliver", &self.next_deliver)
            .field("written", &self.written)
            .field("slots", &pending)
            .field("requester", &self.requester)
            .finish()
    }
}
