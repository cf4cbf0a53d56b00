//! The wire format: one packet per UDP datagram.
//!
//! ```text
//! +------+--------------+--------+---------+---------+------------+-----+
//! | 0xD2 | transmission | source | cookies | message | zero bytes | tag |
//! +------+--------------+--------+---------+---------+------------+-----+
//!  1 byte  postcard       postcard postcard postcard   padding     16 bytes,
//!                                                                  with a key
//! ```
//!
//! The first byte is [`WIRE_VERSION`]; after it comes the
//! [postcard](https://postcard.jamesmunns.com/wire-format) encoding of a
//! [`Transmission`] header, the [`Source`] (originator id, address, whether
//! it is a member, its receive window), the [`Cookies`] (proof that the
//! sender listens at its address, and a cookie for the receiver), and one
//! [`Message`]. Integers wider than a byte are varints, enums start with
//! their variant number, fixed arrays are raw bytes, byte strings are a
//! varint length and the bytes. The packet may be padded with zero bytes
//! (a request from an address not yet proven is padded so that the
//! RETRY it gets is no larger). On a network with a key the datagram ends
//! with a 16-byte tag over everything before it ([`crate::auth`]).
//! `docs/PROTOCOL.md` walks through every byte with an example datagram per
//! message.
//!
//! Contract: [`Packet::decode`] accepts any byte slice and returns a packet
//! or a [`DecodeError`]; it never panics, never allocates and never copies a
//! fragment: a FILEFRAG's piece is borrowed from the datagram.
//! [`Packet::encode`] writes into a caller-supplied buffer.
//!
//! ```
//! use dht_core::id::{NodeId, PeerAddr};
//! use dht_core::wire::{Cookies, Message, Packet, Source, Transmission};
//! let packet = Packet {
//!     transmission: Transmission::Singlecast,
//!     source: Source {
//!         id: NodeId(1),
//!         addr: PeerAddr::v4([127, 0, 0, 1], 8000),
//!         member: true,
//!         window: 0,
//!         full: false,
//!     },
//!     cookies: Cookies::NONE,
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
use crate::fragment::FragmentHash;
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
    /// How many fragments the originator can take in flight from one
    /// sender; 0 means no limit. A microcontroller says 1, and senders that
    /// heard it keep at most that many offers outstanding to it.
    pub window: u8,
    /// The originator's store is full: it takes no fragments, and its
    /// mates rank it after those that do until it says otherwise.
    pub full: bool,
}

impl Source {
    /// The originator as a peer.
    pub const fn peer(&self) -> PeerInfo {
        PeerInfo { id: self.id, addr: self.addr }
    }
}

/// A cookie: 8 bytes a node derives from an address and a secret of its
/// own (see [`crate::auth::CookieSecret`]). Echoed back, it shows that the
/// sender receives what is sent to the address it sends from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Cookie(pub [u8; 8]);

/// The cookies of a packet's header.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cookies {
    /// The cookie the receiver gave the sender for the sender's address,
    /// if the sender has one: the proof that it listens there.
    pub echo: Option<Cookie>,
    /// The sender's cookie for the receiver's address, for the receiver to
    /// echo in what it sends next.
    pub grant: Option<Cookie>,
}

impl Cookies {
    /// No cookies.
    pub const NONE: Cookies = Cookies { echo: None, grant: None };
}

/// The receiver's verdict on a NEWFILE (an offer of a fragment).
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
    /// The receiver fetches as many fragments as it can at the moment, or
    /// the sender has used its share of the receiver's store: try again
    /// later or elsewhere.
    Busy,
}

impl StoreOutcome {
    /// Whether the fragment is now held by the answering node.
    pub const fn is_held(self) -> bool {
        matches!(self, StoreOutcome::Stored | StoreOutcome::AlreadyHeld)
    }
}

/// Bytes of a fragment: 512 of them make a unit, 16 units a fragment.
pub const UNIT: usize = 512;

/// Units in a fragment.
pub const UNITS: usize = FRAGMENT_SIZE / UNIT;

const _: () = assert!(UNITS == 16 && UNIT * UNITS == FRAGMENT_SIZE);

/// A borrowed piece of a fragment: 1 to 16 whole units, encoded as a byte
/// string (varint length, then the bytes).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PieceRef<'a>(pub &'a [u8]);

impl PieceRef<'_> {
    /// Units in the piece.
    pub fn units(&self) -> usize {
        self.0.len() / UNIT
    }
}

impl fmt::Debug for PieceRef<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PieceRef({} bytes)", self.0.len())
    }
}

impl Serialize for PieceRef<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(self.0)
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for PieceRef<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct PieceVisitor<'a>(core::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for PieceVisitor<'a> {
            type Value = PieceRef<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "1 to {UNITS} units of {UNIT} bytes")
            }
            fn visit_borrowed_bytes<E: de::Error>(self, v: &'de [u8]) -> Result<Self::Value, E> {
                let whole =
                    !v.is_empty() && v.len().is_multiple_of(UNIT) && v.len() <= FRAGMENT_SIZE;
                if whole {
                    Ok(PieceRef(v))
                } else {
                    Err(E::invalid_length(v.len(), &self))
                }
            }
        }
        deserializer.deserialize_bytes(PieceVisitor(core::marker::PhantomData))
    }
}

/// Piece sizes a FILEGET may ask for, in units.
pub const PIECE_UNITS: [u8; 5] = [1, 2, 4, 8, 16];

/// Every unit of a fragment, as a FILEGET's `want`.
pub const ALL_UNITS: u16 = u16::MAX;

/// The units bit map of a piece of `units` units from unit `first`.
///
/// ```
/// use dht_core::wire::piece_mask;
/// assert_eq!(piece_mask(0, 16), 0xFFFF);
/// assert_eq!(piece_mask(4, 2), 0b11_0000);
/// assert_eq!(piece_mask(15, 4), 0x8000); // cut at the fragment's end
/// ```
pub fn piece_mask(first: usize, units: usize) -> u16 {
    let ones = if units >= UNITS { u16::MAX } else { (1u16 << units) - 1 };
    ones.checked_shl(first as u32).unwrap_or(0)
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
    /// Seconds on the node's clock, which starts with the node on the host
    /// runtime and the firmware: how long it has been up.
    pub uptime: u64,
    /// The counters.
    pub counters: crate::counters::Counters,
}

/// What a listed fragment is, as far as its holder tells by decoding it.
#[cfg(feature = "listing")]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ListedKind {
    /// Not an index: data or parity of some file.
    Data,
    /// An index that is not a file's root: an interior index of a tree,
    /// or an index of parity fragments.
    Index,
    /// The root of a file (a named index, flat or a tree's root).
    File,
    /// The coded root of an erasure-coded file.
    CodedFile,
}

/// One fragment of a LIST page.
#[cfg(feature = "listing")]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Listed {
    /// The fragment (for a root: the file's address).
    pub hash: FragmentHash,
    /// What it is.
    pub kind: ListedKind,
    /// How many members of its shard the holder keeps it on: the count it
    /// was stored with, else the network's `R` (0: every member).
    pub copies: u8,
    /// For a root: the file's size in bytes; otherwise 0.
    pub size: u64,
    /// For a root: the file's name; otherwise empty. Untrusted: a reader
    /// must not print it raw.
    pub name: heapless::String<{ crate::config::INDEX_NAME_SIZE }>,
}

/// A page of LIST: some of the fragments a node holds.
#[cfg(feature = "listing")]
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListPage {
    /// Fragments the node holds in all.
    pub held: u32,
    /// The position the next LISTREQ starts from; `None` when the page
    /// reached the end of the store.
    pub next: Option<u32>,
    /// The fragments of this page that were asked for (every fragment
    /// read, or only the roots of files).
    pub entries: heapless::Vec<Listed, { crate::config::MAX_LISTED }>,
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
    /// The cookies between the last sender and the receiver.
    pub cookies: Cookies,
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
    /// A valid packet followed by bytes that are not zero padding.
    TrailingBytes,
    /// The fields do not fit together (a piece past the fragment's end, a
    /// FILEGET that wants nothing or pieces of a size that does not
    /// exist).
    Inconsistent,
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
            DecodeError::Inconsistent => f.write_str("fields that do not fit together"),
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
    /// Decodes a datagram (without a network key's tag). Never panics;
    /// borrows pieces from `bytes`.
    pub fn decode(bytes: &'a [u8]) -> Result<Packet<'a>, DecodeError> {
        let (&version, body) = bytes.split_first().ok_or(DecodeError::Empty)?;
        if version != WIRE_VERSION {
            return Err(DecodeError::BadVersion(version));
        }
        let (packet, rest) =
            postcard::take_from_bytes::<Packet<'a>>(body).map_err(|_| DecodeError::Malformed)?;
        if rest.iter().any(|b| *b != 0) {
            return Err(DecodeError::TrailingBytes);
        }
        if !packet.message.is_consistent() {
            return Err(DecodeError::Inconsistent);
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

    /// Encodes into `buf` padded with zero bytes to at least `min_len`.
    pub fn encode_padded(&self, buf: &mut [u8], min_len: usize) -> Result<usize, EncodeError> {
        let len = self.encode(buf)?;
        if len >= min_len {
            return Ok(len);
        }
        let padding = buf.get_mut(len..min_len).ok_or(EncodeError::BufferTooSmall)?;
        padding.fill(0);
        Ok(min_len)
    }
}

impl Message<'_> {
    /// Whether fields that depend on each other agree: a piece stays within
    /// its fragment, a FILEGET wants something in a piece size that exists.
    fn is_consistent(&self) -> bool {
        match self {
            Message::FileFrag { first_unit, data, .. } => {
                usize::from(*first_unit) + data.units() <= UNITS
            }
            Message::FileGet { want, piece_units, .. } => {
                *want != 0 && PIECE_UNITS.contains(piece_units)
            }
            _ => true,
        }
    }
}

/// The variant number of FILEFRAG (one varint byte).
const FILEFRAG_TAG: u8 = MessageKind::FileFrag as u8;

/// Encodes the header of a FILEFRAG carrying `units` units from
/// `first_unit` up to the piece's bytes and returns its length; the caller
/// puts the `units * 512` bytes right after it.
///
/// This lets a node copy a piece from its store straight into the outgoing
/// datagram. The result is byte-identical to [`Packet::encode`] of the same
/// FILEFRAG.
pub fn encode_filefrag_header(
    transmission: Transmission,
    source: Source,
    cookies: Cookies,
    hash: &FragmentHash,
    first_unit: u8,
    units: usize,
    buf: &mut [u8],
) -> Result<usize, EncodeError> {
    let (first, body) = buf.split_first_mut().ok_or(EncodeError::BufferTooSmall)?;
    *first = WIRE_VERSION;
    let piece_len = units * UNIT;
    let header = (transmission, source, cookies, FILEFRAG_TAG, hash, first_unit, piece_len);
    let used = postcard::to_slice(&header, body).map_err(|_| EncodeError::BufferTooSmall)?;
    let len = used.len() + 1;
    if buf.len() < len + piece_len {
        return Err(EncodeError::BufferTooSmall);
    }
    Ok(len)
}

#[cfg(test)]
mod tests;
