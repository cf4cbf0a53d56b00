//! The wire format: one packet per UDP datagram.
//!
//! ```text
//! +------+--------------+--------+---------+
//! | 0xD1 | transmission | source | message |
//! +------+--------------+--------+---------+
//!  1 byte  postcard       postcard postcard
//! ```
//!
//! The first byte is [`WIRE_VERSION`]; everything after it is the
//! [postcard](https://postcard.jamesmunns.com/wire-format) encoding of a
//! [`Transmission`] header, the [`Source`] (originator id, address, and
//! whether it is a member), and one [`Message`]. Integers wider than a byte
//! are varints, enums start with their variant number, fixed arrays are raw
//! bytes, byte strings are a varint length and the bytes. `docs/PROTOCOL.md`
//! walks through every byte with an example datagram per message.
//!
//! Contract: [`Packet::decode`] accepts any byte slice and returns a packet
//! or a [`DecodeError`]; it never panics, never allocates and never copies a
//! fragment: a FILEFRAG's 8192 bytes are borrowed from the datagram.
//! [`Packet::encode`] writes into a caller-supplied buffer.
//!
//! ```
//! use dht_core::id::{NodeId, PeerAddr};
//! use dht_core::wire::{Message, Packet, Source, Transmission};
//! let packet = Packet {
//!     transmission: Transmission::Singlecast,
//!     source: Source { id: NodeId(1), addr: PeerAddr::v4([127, 0, 0, 1], 8000), member: true, window: 0 },
//!     message: Message::Ping { nonce: 7 },
//! };
//! let mut buf = [0u8; 64];
//! let len = packet.encode(&mut buf).unwrap();
//! assert_eq!(Packet::decode(&buf[..len]), Ok(packet));
//! ```

use core::fmt;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

mod message;

pub use message::{Message, MessageKind};

use crate::config::{FRAGMENT_SIZE, MAX_HASHES_PER_MESSAGE, MAX_PEERS_PER_MESSAGE, WIRE_VERSION};
use crate::fragment::{FragmentBytes, FragmentHash};
use crate::id::{NodeId, PeerAddr, PeerInfo};

/// How a packet travels through the overlay.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Transmission {
    /// Point to point; processed by the receiver.
    Singlecast,
    /// Forwarded to a random neighbor while `hops > 0` (each forward
    /// decrements it); processed only by the node that receives it with
    /// `hops == 0`.
    Randomcast {
        /// Forwards still to make.
        hops: u8,
    },
    /// Processed by every node that receives it for the first time and
    /// relayed to all its neighbors while `breadth > 0`.
    Broadcast {
        /// Relay levels still allowed (the original calls it breadth; it is
        /// a depth).
        breadth: u8,
        /// Identifies the broadcast; receivers remember recent UIDs and drop
        /// repeats.
        uid: u64,
    },
}

/// The originator of a packet. Relays keep it unchanged, so the last
/// receiver of a randomcast or broadcast can answer the originator directly.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Source {
    /// The originator's id.
    pub id: NodeId,
    /// Where the originator listens. An unspecified IP (`0.0.0.0`) means
    /// "the IP this datagram came from"; relays fill it in before relaying.
    pub addr: PeerAddr,
    /// Whether the originator is a member that may be added to neighbor
    /// tables (false for clients such as dhtsend).
    pub member: bool,
    /// How many large datagrams (fragments) the originator can take in
    /// flight from one sender; 0 means no limit. A microcontroller whose
    /// network interface buffers one 8 KB datagram says 1, and senders that
    /// heard it keep at most that many store requests or fetch answers
    /// outstanding to it.
    pub window: u8,
}

impl Source {
    /// The originator as a peer.
    pub const fn peer(&self) -> PeerInfo {
        PeerInfo { id: self.id, addr: self.addr }
    }
}

/// What a FILEFRAG asks of its receiver.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum FragMode {
    /// Store this fragment and acknowledge with STORED.
    Store,
    /// This answers your FILEGET; no acknowledgement.
    Answer,
}

/// The receiver's verdict on a FILEFRAG in [`FragMode::Store`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum StoreOutcome {
    /// Stored now.
    Stored,
    /// The fragment was already held.
    AlreadyHeld,
    /// The store is full: try another holder.
    Full,
    /// The fragment's shard is not the receiver's: try a member of the right
    /// shard.
    WrongShard,
    /// The store failed (I/O error): try another holder.
    Failed,
    /// The receiver is not among the members that should hold this
    /// fragment; the answer names those that are.
    NotHolder,
}

impl StoreOutcome {
    /// Whether the fragment is now held by the answering node.
    pub const fn is_held(self) -> bool {
        matches!(self, StoreOutcome::Stored | StoreOutcome::AlreadyHeld)
    }
}

/// A borrowed fragment: exactly [`FRAGMENT_SIZE`] bytes, encoded as a byte
/// string (varint length `0x80 0x40`, then the bytes).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct FragmentRef<'a>(pub &'a FragmentBytes);

impl fmt::Debug for FragmentRef<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FragmentRef({} bytes)", self.0.len())
    }
}

impl Serialize for FragmentRef<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(self.0)
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for FragmentRef<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct FragmentVisitor<'a>(core::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for FragmentVisitor<'a> {
            type Value = FragmentRef<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{FRAGMENT_SIZE} bytes of fragment")
            }
            fn visit_borrowed_bytes<E: de::Error>(self, v: &'de [u8]) -> Result<Self::Value, E> {
                <&FragmentBytes>::try_from(v)
                    .map(FragmentRef)
                    .map_err(|_| E::invalid_length(v.len(), &self))
            }
        }
        deserializer.deserialize_bytes(FragmentVisitor(core::marker::PhantomData))
    }
}

/// A list of peers as carried by PEERS.
pub type PeerList = heapless::Vec<PeerInfo, MAX_PEERS_PER_MESSAGE>;

/// What a node says of itself in STATS (its fields follow the nonce on
/// the wire, in this order).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeStats {
    /// Fragments held.
    pub held: u32,
    /// Store capacity in fragments.
    pub capacity: u32,
    /// Neighbors known.
    pub neighbors: u16,
    /// Whether the node has completed its join (a root node always has).
    pub joined: bool,
    /// Whether the address the request asked `about` is a neighbor.
    pub knows: bool,
    /// The counters.
    pub counters: crate::counters::Counters,
}

/// Suggested holders carried by NOTFOUND.
pub type HolderList = heapless::Vec<PeerInfo, MAX_SUGGESTED_HOLDERS>;

/// Most holders suggested in one NOTFOUND.
pub const MAX_SUGGESTED_HOLDERS: usize = 4;

/// Fragment hashes carried by HOLDINGS.
pub type HashList = heapless::Vec<FragmentHash, MAX_HASHES_PER_MESSAGE>;

/// A whole datagram, decoded.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Packet<'a> {
    /// How the packet travels.
    pub transmission: Transmission,
    /// Who sent it first.
    pub source: Source,
    /// What it says.
    #[serde(borrow)]
    pub message: Message<'a>,
}

/// Why a datagram was not decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// The datagram is empty.
    Empty,
    /// The first byte is not [`WIRE_VERSION`].
    BadVersion(u8),
    /// The bytes after the version are not a valid packet (truncated, an
    /// unknown variant, an out-of-range shard, a fragment of the wrong
    /// length, too many peers, ...).
    Malformed,
    /// A valid packet followed by extra bytes.
    TrailingBytes,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::Empty => f.write_str("empty datagram"),
            DecodeError::BadVersion(v) => {
                write!(f, "first byte {v:#04x} is not wire version {WIRE_VERSION:#04x}")
            }
            DecodeError::Malformed => f.write_str("malformed packet"),
            DecodeError::TrailingBytes => f.write_str("extra bytes after the packet"),
        }
    }
}

/// Why a packet was not encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EncodeError {
    /// The buffer is too small.
    BufferTooSmall,
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("buffer too small for the packet")
    }
}

impl<'a> Packet<'a> {
    /// Decodes a datagram. Never panics; borrows fragment bytes from `bytes`.
    pub fn decode(bytes: &'a [u8]) -> Result<Packet<'a>, DecodeError> {
        let (&version, body) = bytes.split_first().ok_or(DecodeError::Empty)?;
        if version != WIRE_VERSION {
            return Err(DecodeError::BadVersion(version));
        }
        let (packet, rest) =
            postcard::take_from_bytes::<Packet<'a>>(body).map_err(|_| DecodeError::Malformed)?;
        if !rest.is_empty() {
            return Err(DecodeError::TrailingBytes);
        }
        Ok(packet)
    }

    /// Encodes into `buf`, returning the datagram's length.
    pub fn encode(&self, buf: &mut [u8]) -> Result<usize, EncodeError> {
        let (first, body) = buf.split_first_mut().ok_or(EncodeError::BufferTooSmall)?;
        *first = WIRE_VERSION;
        let used = postcard::to_slice(self, body).map_err(|_| EncodeError::BufferTooSmall)?;
        Ok(used.len() + 1)
    }
}

/// The variant number of FILEFRAG (one varint byte).
const FILEFRAG_TAG: u8 = MessageKind::FileFrag as u8;
/// `FRAGMENT_SIZE` as a postcard varint.
const FRAGMENT_LEN_VARINT: [u8; 2] = [0x80, 0x40];
const _: () = assert!(FRAGMENT_SIZE == 0x40 << 7);

/// Encodes the header of a FILEFRAG up to the fragment bytes and returns its
/// length; the caller puts the 8192 bytes right after it.
///
/// This lets a node read a fragment from its store straight into the
/// outgoing datagram instead of into a second 8 KB buffer. The result is
/// byte-identical to [`Packet::encode`] of the same FILEFRAG.
pub fn encode_filefrag_header(
    transmission: Transmission,
    source: Source,
    mode: FragMode,
    hash: &FragmentHash,
    buf: &mut [u8],
) -> Result<usize, EncodeError> {
    let (first, body) = buf.split_first_mut().ok_or(EncodeError::BufferTooSmall)?;
    *first = WIRE_VERSION;
    let header = (transmission, source, FILEFRAG_TAG, mode, hash, FRAGMENT_LEN_VARINT);
    let used = postcard::to_slice(&header, body).map_err(|_| EncodeError::BufferTooSmall)?;
    let len = used.len() + 1;
    if buf.len() < len + FRAGMENT_SIZE {
        return Err(EncodeError::BufferTooSmall);
    }
    Ok(len)
}

#[cfg(test)]
mod tests;
