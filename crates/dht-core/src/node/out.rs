//! What a node puts out: datagrams through its one transmit buffer, events
//! for the application, and the counters of both.
//!
//! [`Out`] also holds the node's own [`Source`] (id, address, whether it is
//! a visible member, its receive window), its cookie secret and the
//! network key, since every datagram starts with the source, carries
//! cookies for its receiver and ends with the key's tag: the sub-machines
//! send through `Out` and never encode a packet themselves.
//!
//! Two rules live here so that no sender can forget them:
//!
//! * a message to an address that has given this node no cookie yet is
//!   padded to [`UNPROVEN_MIN`] bytes, so that the RETRY it may get is no
//!   larger than what was sent;
//! * an answer to a datagram that was not proven (see [`crate::auth`]) is
//!   sent only if it is no larger than that datagram; otherwise the asker
//!   gets a RETRY (if that fits) or nothing.

use heapless::Deque;

use crate::auth::{CookieSecret, CookieStore, NetworkKey, TAG_LEN};
use crate::config::MAX_DATAGRAM_SIZE;
use crate::counters::{Counters, DropReason};
use crate::fragment::{FragmentBytes, FragmentHash};
use crate::id::{PeerAddr, PeerInfo};
use crate::node::{Event, SendError, Transmit};
use crate::time::Instant;
use crate::wire::Cookie;
use crate::wire::{
    encode_filefrag_header, piece_mask, Cookies, Message, MessageKind, Packet, Source,
    Transmission, UNIT, UNITS,
};

/// Offered fragments remembered (see `Out::offered`).
const OFFERED: usize = 8;

/// Capacity of the application event queue.
const EVENT_QUEUE: usize = 32;

/// The size a message to an address that gave no cookie is padded to, and
/// the least a datagram that proves nothing must measure to be answered
/// or followed up at all.
pub const UNPROVEN_MIN: usize = 96;

/// Requests sent to addresses that gave no cookie, kept to be sent again
/// with the cookie when a RETRY brings one (a joining node's survey asks
/// one member of each of the 16 shards at once, a death notice goes to
/// every neighbor).
const PENDING: usize = 24;

/// The longest message kept for a RETRY (all but lists of peers, holders
/// or hashes, and pieces, are shorter).
const PENDING_LEN: usize = 96;

/// A request kept for a RETRY: where it went and its encoding (without
/// padding or tag).
#[derive(Clone, Copy)]
struct Pending {
    to: PeerAddr,
    len: u8,
    bytes: [u8; PENDING_LEN],
}

/// What a received datagram lets this node send back to its sender.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Proof {
    /// Whether the datagram echoed this node's cookie for its source.
    pub(crate) proven: bool,
    /// Its size: what may be sent back to an address not proven.
    pub(crate) received: usize,
}

/// The node's outputs.
#[derive(Clone)]
pub(crate) struct Out {
    tx: [u8; MAX_DATAGRAM_SIZE],
    /// Where a fragment is read to and checked before its pieces go out.
    scratch: FragmentBytes,
    /// Who this node is on the wire.
    pub(crate) source: Source,
    /// What it did.
    pub(crate) counters: Counters,
    events: Deque<Event, EVENT_QUEUE>,
    pub(crate) secret: CookieSecret,
    pub(crate) key: Option<NetworkKey>,
    pending: Deque<Pending, PENDING>,
    /// Fragments this node offered (NEWFILE) for an application's upload,
    /// newest last: FILEGETs for them go to the application when the
    /// store does not hold them.
    pub(crate) offered: Deque<FragmentHash, OFFERED>,
    /// The grant of the datagram being handled, for answers to its sender
    /// when the jar did not keep it.
    current: Option<(PeerAddr, Cookie)>,
}

impl Out {
    pub(crate) fn new(source: Source, secret: CookieSecret) -> Self {
        Out {
            // Opaque zeros: with literal ones, the compiler keeps the whole
            // initial node (16 KB of zeros and a few fields) as a template
            // in flash and copies it; this way the buffers are cleared at
            // run time.
            tx: [core::hint::black_box(0); MAX_DATAGRAM_SIZE],
            scratch: [core::hint::black_box(0); crate::config::FRAGMENT_SIZE],
            source,
            counters: Counters::default(),
            events: Deque::new(),
            secret,
            key: None,
            pending: Deque::new(),
            offered: Deque::new(),
            current: None,
        }
    }

    /// This node as peers see it.
    pub(crate) fn me(&self) -> PeerInfo {
        self.source.peer()
    }

    /// Queues an application event (the oldest is dropped, and counted, if
    /// nobody polls them).
    pub(crate) fn event(&mut self, event: Event) {
        if self.events.is_full() {
            self.events.pop_front();
            self.counters.count_drop(DropReason::EventOverflow);
        }
        let _ = self.events.push_back(event);
    }

    pub(crate) fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Remembers that the application offered `hash`.
    pub(crate) fn note_offer(&mut self, hash: FragmentHash) {
        if self.offered.iter().any(|h| *h == hash) {
            return;
        }
        if self.offered.is_full() {
            self.offered.pop_front();
        }
        let _ = self.offered.push_back(hash);
    }

    /// Counts a drop.
    pub(crate) fn drop(&mut self, reason: DropReason) {
        self.counters.count_drop(reason);
    }

    /// Whether `cookie` is this node's cookie for `from` now.
    pub(crate) fn proves(&self, from: PeerAddr, cookie: Option<Cookie>, now: Instant) -> bool {
        cookie.is_some_and(|c| self.secret.check(from, c, now))
    }

    /// The datagram being handled came from `from` with `grant`: answers
    /// to `from` echo it even if the jar had no room for it.
    pub(crate) fn note_grant(&mut self, from: PeerAddr, grant: Option<Cookie>) {
        self.current = grant.map(|g| (from, g));
    }

    /// The datagram has been handled.
    pub(crate) fn end_of_datagram(&mut self) {
        self.current = None;
    }

    /// The cookie to echo to `to`.
    fn echo_for(&self, jar: &mut dyn CookieStore, to: PeerAddr, now: Instant) -> Option<Cookie> {
        let kept = jar.echo_for(to, now);
        kept.or(self.current.filter(|(addr, _)| *addr == to).map(|(_, c)| c))
    }

    /// Encodes `packet`'s transmission, source and message for `to` with
    /// fresh cookies, padded to `min_len`, tagged; returns the length.
    #[allow(clippy::too_many_arguments)]
    fn encode_for(
        &mut self,
        jar: &mut dyn CookieStore,
        now: Instant,
        to: PeerAddr,
        transmission: Transmission,
        source: Source,
        message: &Message<'_>,
        min_len: usize,
    ) -> Option<usize> {
        let echo = self.echo_for(jar, to, now);
        let grant = Some(self.secret.cookie(to, now));
        let cookies = Cookies { echo, grant };
        let packet = Packet { transmission, source, cookies, message: message.clone() };
        let len = packet.encode(&mut self.tx).ok()?;
        let min_len = if echo.is_none() {
            self.keep_for_retry(to, message.kind(), len);
            min_len.max(UNPROVEN_MIN)
        } else {
            min_len
        };
        if len < min_len {
            self.tx.get_mut(len..min_len)?.fill(0);
        }
        self.seal(len.max(min_len))
    }

    /// Keeps the request just encoded (the first `len` bytes of the
    /// transmit buffer) if it is one a RETRY would ask again.
    fn keep_for_retry(&mut self, to: PeerAddr, kind: MessageKind, len: usize) {
        // Anything short but pieces and RETRY itself: the receiver asks for
        // a cookie (a RETRY) when it will not act on an unproven datagram.
        // PING and ADDME are acted on unproven (a PONG no larger comes
        // back), so they are not kept: a client that pings the 170 nodes
        // a PEERS list named pushed its JOINs out of the ring, and their
        // RETRYs found nothing to send again (joins took 200 ms, not 10).
        let asks = !matches!(
            kind,
            MessageKind::FileFrag
                | MessageKind::Retry
                | MessageKind::Ping
                | MessageKind::Pong
                | MessageKind::AddMe
        );
        let Some(encoded) = self.tx.get(..len).filter(|_| asks && len <= PENDING_LEN) else {
            return;
        };
        let mut pending = Pending { to, len: len as u8, bytes: [0; PENDING_LEN] };
        if let Some(dst) = pending.bytes.get_mut(..len) {
            dst.copy_from_slice(encoded);
        }
        if self.pending.is_full() {
            self.pending.pop_front();
        }
        let _ = self.pending.push_back(pending);
    }

    /// `from` sent a RETRY (its cookie is now in the jar): sends again,
    /// with the cookie, what was kept for it.
    pub(crate) fn resend_after_retry(
        &mut self,
        sink: &mut impl Transmit,
        jar: &mut dyn CookieStore,
        now: Instant,
        from: PeerAddr,
    ) {
        let count = self.pending.len();
        for _ in 0..count {
            let Some(kept) = self.pending.pop_front() else { break };
            if kept.to != from {
                let _ = self.pending.push_back(kept);
                continue;
            }
            let Some(bytes) = kept.bytes.get(..usize::from(kept.len)) else { continue };
            let Ok(packet) = Packet::decode(bytes) else { continue };
            let Packet { transmission, source, message, .. } = packet;
            if let Some(len) = self.encode_for(jar, now, from, transmission, source, &message, 0) {
                self.transmit(sink, from, message.kind(), len, false);
            }
        }
    }

    /// Appends the network key's tag, if there is a key.
    fn seal(&mut self, len: usize) -> Option<usize> {
        match &self.key {
            Some(key) => key.seal(&mut self.tx, len),
            None => Some(len),
        }
    }

    /// Sends `message` from this node.
    pub(crate) fn send(
        &mut self,
        sink: &mut impl Transmit,
        jar: &mut dyn CookieStore,
        now: Instant,
        to: PeerAddr,
        transmission: Transmission,
        message: &Message<'_>,
    ) -> bool {
        self.send_padded(sink, jar, now, to, transmission, message, 0)
    }

    /// Sends `message` as `transmission` to `to`, padded to `min_len`
    /// bytes at least.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn send_padded(
        &mut self,
        sink: &mut impl Transmit,
        jar: &mut dyn CookieStore,
        now: Instant,
        to: PeerAddr,
        transmission: Transmission,
        message: &Message<'_>,
        min_len: usize,
    ) -> bool {
        let source = self.source;
        match self.encode_for(jar, now, to, transmission, source, message, min_len) {
            Some(len) => self.transmit(sink, to, message.kind(), len, false),
            None => false,
        }
    }

    /// Answers a datagram from `to` that came with `proof`: sent as is if
    /// the datagram was proven or the answer is no larger than it; else a
    /// RETRY if that is no larger; else nothing (counted).
    pub(crate) fn answer(
        &mut self,
        sink: &mut impl Transmit,
        jar: &mut dyn CookieStore,
        now: Instant,
        to: PeerAddr,
        proof: Proof,
        message: &Message<'_>,
    ) -> bool {
        let source = self.source;
        let Some(len) = self.encode_for(jar, now, to, Transmission::Singlecast, source, message, 0)
        else {
            return false;
        };
        if proof.proven || len <= proof.received {
            return self.transmit(sink, to, message.kind(), len, false);
        }
        self.retry(sink, now, to, proof)
    }

    /// Asks `to` to prove its address (a RETRY), if that is no larger than
    /// what it sent.
    pub(crate) fn retry(
        &mut self,
        sink: &mut impl Transmit,
        now: Instant,
        to: PeerAddr,
        proof: Proof,
    ) -> bool {
        let source = self.source;
        let retry = Message::Retry;
        // A RETRY carries no echo: it must not count as proof either way.
        let packet = Packet {
            transmission: Transmission::Singlecast,
            source,
            cookies: Cookies { echo: None, grant: Some(self.secret.cookie(to, now)) },
            message: retry,
        };
        let len = packet.encode(&mut self.tx).ok().and_then(|len| self.seal(len));
        match len {
            Some(len) if len <= proof.received => {
                self.counters.count_drop(DropReason::Unproven);
                self.transmit(sink, to, MessageKind::Retry, len, false)
            }
            _ => {
                self.counters.count_drop(DropReason::Unproven);
                false
            }
        }
    }

    /// Sends `packet` on to `to` (a randomcast's next hop), with cookies
    /// for `to`, padded to `min_len` bytes at least.
    pub(crate) fn relay(
        &mut self,
        sink: &mut impl Transmit,
        jar: &mut dyn CookieStore,
        now: Instant,
        packet: &Packet<'_>,
        to: PeerAddr,
        min_len: usize,
    ) {
        let Packet { transmission, source, message, .. } = packet;
        let found = self.encode_for(jar, now, to, *transmission, *source, message, min_len);
        if let Some(len) = found {
            self.transmit(sink, to, message.kind(), len, true);
        }
    }

    /// Sends `packet` to every address of `targets` but those in `except`.
    pub(crate) fn relay_to_all(
        &mut self,
        sink: &mut impl Transmit,
        jar: &mut dyn CookieStore,
        now: Instant,
        packet: &Packet<'_>,
        targets: impl Iterator<Item = PeerAddr>,
        except: &[PeerAddr],
    ) {
        let relaying = packet.source.id != self.source.id;
        let Packet { transmission, source, message, .. } = packet;
        for to in targets.filter(|a| !except.contains(a)) {
            if let Some(len) = self.encode_for(jar, now, to, *transmission, *source, message, 0) {
                self.transmit(sink, to, message.kind(), len, relaying);
            }
        }
    }

    /// Fills the fragment buffer with `fill`, checks it against `hash`,
    /// and sends `to` the units of `want` in pieces of at most
    /// `piece_units` units. Returns whether the bytes were right.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn send_pieces(
        &mut self,
        sink: &mut impl Transmit,
        jar: &mut dyn CookieStore,
        now: Instant,
        to: PeerAddr,
        hash: &FragmentHash,
        want: u16,
        piece_units: usize,
        fill: impl FnOnce(&mut FragmentBytes) -> bool,
    ) -> bool {
        if !fill(&mut self.scratch) || !hash.verifies(&self.scratch) {
            return false;
        }
        let echo = self.echo_for(jar, to, now);
        let cookies = Cookies { echo, grant: Some(self.secret.cookie(to, now)) };
        let units = piece_units.clamp(1, UNITS);
        let mut first = 0;
        while first < UNITS {
            let mask = piece_mask(first, units);
            if want & mask != 0 {
                self.send_piece(sink, to, hash, cookies, first, units);
            }
            first += units;
        }
        true
    }

    fn send_piece(
        &mut self,
        sink: &mut impl Transmit,
        to: PeerAddr,
        hash: &FragmentHash,
        cookies: Cookies,
        first: usize,
        units: usize,
    ) {
        let source = self.source;
        let first_unit = first as u8;
        let Ok(head) = encode_filefrag_header(
            Transmission::Singlecast,
            source,
            cookies,
            hash,
            first_unit,
            units,
            &mut self.tx,
        ) else {
            return;
        };
        let bytes = self.scratch.get(first * UNIT..(first + units) * UNIT);
        let slot = self.tx.get_mut(head..head + units * UNIT);
        let (Some(bytes), Some(slot)) = (bytes, slot) else { return };
        slot.copy_from_slice(bytes);
        if let Some(len) = self.seal(head + units * UNIT) {
            self.transmit(sink, to, MessageKind::FileFrag, len, false);
        }
    }

    /// Sends the first `len` bytes of the transmit buffer.
    fn transmit(
        &mut self,
        sink: &mut impl Transmit,
        to: PeerAddr,
        kind: MessageKind,
        len: usize,
        relayed: bool,
    ) -> bool {
        let Some(datagram) = self.tx.get(..len) else { return false };
        match sink.send(to, datagram) {
            Ok(()) => {
                self.counters.count_sent(kind, len);
                if relayed {
                    self.counters.relayed = self.counters.relayed.saturating_add(1);
                }
                true
            }
            Err(SendError) => {
                self.counters.count_drop(DropReason::SendFailed);
                false
            }
        }
    }
}

/// The largest piece, in units, a datagram of at most `max_datagram` bytes
/// carries (with the longest header and a tag).
pub(crate) fn piece_units_for(max_datagram: usize) -> usize {
    [16, 8, 4, 2, 1].into_iter().find(|u| u * UNIT + FILEFRAG_OVERHEAD <= max_datagram).unwrap_or(1)
}

/// The longest FILEFRAG header with a tag: version, transmission, source
/// (IPv6), both cookies, tag, hash, first unit, length, network key tag.
pub const FILEFRAG_OVERHEAD: usize = 1 + 12 + 34 + 20 + 1 + 32 + 1 + 3 + TAG_LEN;

/// The smallest largest-datagram a node may be configured with: one unit
/// of a fragment and the longest FILEFRAG header.
pub const MIN_DATAGRAM: usize = crate::wire::UNIT + FILEFRAG_OVERHEAD;
