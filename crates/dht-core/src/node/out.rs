//! What a node puts out: datagrams through its one transmit buffer, events
//! for the application, and the counters of both.
//!
//! [`Out`] also holds the node's own [`Source`] (id, address, whether it is
//! a visible member, its receive window), since every datagram starts with
//! it: the sub-machines send through `Out` and never encode a packet
//! themselves. A fragment is read from the store straight into the transmit
//! buffer behind its header ([`Out::fragment_body`]), so an 8 KB fragment
//! is never held twice.

use heapless::Deque;

use crate::config::{FRAGMENT_SIZE, MAX_DATAGRAM_SIZE};
use crate::counters::{Counters, DropReason};
use crate::fragment::{FragmentBytes, FragmentHash};
use crate::id::{PeerAddr, PeerInfo};
use crate::node::{Event, SendError, Transmit};
use crate::wire::{
    encode_filefrag_header, FragMode, Message, MessageKind, Packet, Source, Transmission,
};

/// Capacity of the application event queue.
const EVENT_QUEUE: usize = 32;

/// The node's outputs.
pub(crate) struct Out {
    tx: [u8; MAX_DATAGRAM_SIZE],
    /// Who this node is on the wire.
    pub(crate) source: Source,
    /// What it did.
    pub(crate) counters: Counters,
    events: Deque<Event, EVENT_QUEUE>,
}

impl Out {
    pub(crate) fn new(source: Source) -> Self {
        Out {
            // An opaque zero: with a literal one, the compiler keeps the
            // whole initial node (8 KB of zeros and a few fields) as a
            // template in flash and copies it; this way the buffer is
            // cleared at run time.
            tx: [core::hint::black_box(0); MAX_DATAGRAM_SIZE],
            source,
            counters: Counters::default(),
            events: Deque::new(),
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

    /// Counts a drop.
    pub(crate) fn drop(&mut self, reason: DropReason) {
        self.counters.count_drop(reason);
    }

    /// Sends `message` from this node.
    pub(crate) fn send(
        &mut self,
        sink: &mut impl Transmit,
        to: PeerAddr,
        transmission: Transmission,
        message: &Message<'_>,
    ) -> bool {
        let packet = Packet { transmission, source: self.source, message: message.clone() };
        match packet.encode(&mut self.tx) {
            Ok(len) => self.transmit(sink, to, message.kind(), len, false),
            Err(_) => false,
        }
    }

    /// Sends `packet` on to `to` as it is (a randomcast's next hop, a JOIN
    /// passed to the seed).
    pub(crate) fn relay(&mut self, sink: &mut impl Transmit, packet: &Packet<'_>, to: PeerAddr) {
        if let Ok(len) = packet.encode(&mut self.tx) {
            self.transmit(sink, to, packet.message.kind(), len, true);
        }
    }

    /// Sends `packet` to every address of `targets` but those in `except`.
    pub(crate) fn relay_to_all(
        &mut self,
        sink: &mut impl Transmit,
        packet: &Packet<'_>,
        targets: impl Iterator<Item = PeerAddr>,
        except: &[PeerAddr],
    ) {
        let Ok(len) = packet.encode(&mut self.tx) else { return };
        let kind = packet.message.kind();
        let relaying = packet.source.id != self.source.id;
        for to in targets.filter(|a| !except.contains(a)) {
            self.transmit(sink, to, kind, len, relaying);
        }
    }

    /// Writes the header of a FILEFRAG from this node into the transmit
    /// buffer and returns the datagram's length and the place of the
    /// fragment's bytes, for the caller to fill before
    /// [`Out::send_fragment`].
    pub(crate) fn fragment_body(
        &mut self,
        mode: FragMode,
        hash: &FragmentHash,
    ) -> Option<(usize, &mut FragmentBytes)> {
        let head =
            encode_filefrag_header(Transmission::Singlecast, self.source, mode, hash, &mut self.tx)
                .ok()?;
        let end = head + FRAGMENT_SIZE;
        let body =
            self.tx.get_mut(head..end).and_then(|s| <&mut FragmentBytes>::try_from(s).ok())?;
        Some((end, body))
    }

    /// Sends the FILEFRAG prepared by [`Out::fragment_body`].
    pub(crate) fn send_fragment(
        &mut self,
        sink: &mut impl Transmit,
        to: PeerAddr,
        len: usize,
    ) -> bool {
        self.transmit(sink, to, MessageKind::FileFrag, len, false)
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
