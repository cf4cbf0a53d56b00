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

use crate::config::{FRAGMENT_SIZE, MAX_HASHES_PER_MESSAGE, MAX_PEERS_PER_MESSAGE, WIRE_VERSION};
use crate::fragment::{FragmentBytes, FragmentHash};
use crate::id::{NodeId, PeerAddr, PeerInfo, Shard};

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

/// The messages of the protocol. Variant numbers are part of the wire
/// format: new messages are appended, never inserted.
///
/// A decoded message lives briefly on the stack; the PEERS and HOLDINGS
/// lists (up to 32 entries, inline) make it about 1 KB, which is why the
/// size difference between variants is accepted instead of boxing (there
/// is no allocator). The lists are capped so that a packet costs a
/// microcontroller's stack about 1 KB per frame that holds one.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Message<'a> {
    /// JOIN (variant 0): The sender joins (member) or looks around (client): answer with
    /// PEERS listing up to `want` peers, only members of `shard` if given.
    Join {
        /// Peers wanted.
        want: u8,
        /// Restrict the answer to this shard.
        shard: Option<Shard>,
    },
    /// PEERS (variant 1): Answers JOIN (and a FIND sent singlecast): peers the sender knows.
    Peers {
        /// The peers.
        peers: PeerList,
    },
    /// ADDME (variant 2): Add the originator to your neighbor table.
    AddMe,
    /// PING (variant 3): Answer with PONG carrying the same nonce.
    Ping {
        /// Echoed in the PONG.
        nonce: u64,
    },
    /// PONG (variant 4): Answers PING and FIND.
    Pong {
        /// The nonce of the PING or FIND answered.
        nonce: u64,
    },
    /// FILEFRAG (variant 5): A fragment: a request to store it, or the answer to a FILEGET.
    FileFrag {
        /// Store request or answer.
        mode: FragMode,
        /// The fragment's hash; the receiver checks the bytes against it.
        hash: FragmentHash,
        /// The 8192 bytes.
        #[serde(borrow)]
        data: FragmentRef<'a>,
    },
    /// FILEGET (variant 6): Send me the fragment with this hash (FILEFRAG in answer mode, or
    /// NOTFOUND).
    FileGet {
        /// The fragment wanted.
        hash: FragmentHash,
    },
    /// FIND (variant 7): Nodes of `shard` answer with PONG; a non-member receiving it
    /// singlecast answers with PEERS listing the members of `shard` it knows.
    Find {
        /// The shard looked for.
        shard: Shard,
        /// Echoed in the PONG.
        nonce: u64,
    },
    /// NEWFILE (variant 8): The originator holds a new fragment; holders that lack it fetch it
    /// from the originator with FILEGET.
    NewFile {
        /// The new fragment.
        hash: FragmentHash,
    },
    /// STORED (variant 9): Answers a FILEFRAG in store mode.
    Stored {
        /// The fragment concerned.
        hash: FragmentHash,
        /// What became of it.
        outcome: StoreOutcome,
        /// With [`StoreOutcome::NotHolder`], the members that should hold
        /// it as the receiver sees its shard; empty otherwise.
        holders: HolderList,
    },

    /// NOTFOUND (variant 10): Answers a FILEGET for a fragment the receiver does not hold.
    NotFound {
        /// The fragment asked for.
        hash: FragmentHash,
        /// Members of the fragment's shard that should hold it, as the
        /// answering node sees the shard (empty if it does not know). A
        /// member of the shard knows it whole, so one NOTFOUND is enough to
        /// find the holders.
        holders: HolderList,
    },
    /// LEAVE (variant 11): The originator leaves the network: remove it from your tables.
    Leave,
    /// STATSREQ (variant 12): Answer with STATS.
    StatsRequest {
        /// Echoed in the STATS answer.
        nonce: u64,
        /// Ask also whether this address is in the receiver's neighbor
        /// table (to watch a node leave the tables).
        about: Option<PeerAddr>,
    },

    /// STATS (variant 13): A node's counters.
    Stats {
        /// The nonce of the request answered.
        nonce: u64,
        /// Fragments held and store capacity.
        held: u32,
        /// Store capacity in fragments.
        capacity: u32,
        /// Neighbors known.
        neighbors: u16,
        /// Whether the node has completed its join (a root node always has).
        joined: bool,
        /// Whether the address the request asked `about` is a neighbor.
        knows: bool,
        /// The counters.
        counters: crate::counters::Counters,
    },

    /// HOLDINGS (variant 14): a page of the fragments the originator holds,
    /// sent to a member of its shard, which fetches (FILEGET) those it
    /// should hold and lacks. The periodic exchange of these pages is how
    /// a shard repairs lost copies and how a new member gets its share.
    Holdings {
        /// Up to 32 fragment hashes.
        hashes: HashList,
    },
    /// DEAD (variant 15): `peer` stopped answering its liveness probes.
    /// Sent as a broadcast whose UID is derived from the peer, so each
    /// node handles one notice per death; receivers drop the peer from
    /// their tables. A node that hears of its own death says it is alive
    /// with ADDME to its neighbors.
    Dead {
        /// The node found dead.
        peer: PeerInfo,
    },
}

/// Suggested holders carried by NOTFOUND.
pub type HolderList = heapless::Vec<PeerInfo, MAX_SUGGESTED_HOLDERS>;

/// Most holders suggested in one NOTFOUND.
pub const MAX_SUGGESTED_HOLDERS: usize = 4;

/// Fragment hashes carried by HOLDINGS.
pub type HashList = heapless::Vec<FragmentHash, MAX_HASHES_PER_MESSAGE>;

/// The kinds of message, for counting. Same order as [`Message`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[allow(missing_docs)]
pub enum MessageKind {
    Join,
    Peers,
    AddMe,
    Ping,
    Pong,
    FileFrag,
    FileGet,
    Find,
    NewFile,
    Stored,
    NotFound,
    Leave,
    StatsRequest,
    Stats,
    Holdings,
    Dead,
}

impl MessageKind {
    /// Number of kinds.
    pub const COUNT: usize = 16;

    /// All kinds in wire order.
    pub const ALL: [MessageKind; MessageKind::COUNT] = [
        MessageKind::Join,
        MessageKind::Peers,
        MessageKind::AddMe,
        MessageKind::Ping,
        MessageKind::Pong,
        MessageKind::FileFrag,
        MessageKind::FileGet,
        MessageKind::Find,
        MessageKind::NewFile,
        MessageKind::Stored,
        MessageKind::NotFound,
        MessageKind::Leave,
        MessageKind::StatsRequest,
        MessageKind::Stats,
        MessageKind::Holdings,
        MessageKind::Dead,
    ];

    /// The kind's position in [`MessageKind::ALL`].
    pub const fn index(self) -> usize {
        self as usize
    }

    /// The name used in documentation and statistics.
    pub const fn name(self) -> &'static str {
        match self {
            MessageKind::Join => "JOIN",
            MessageKind::Peers => "PEERS",
            MessageKind::AddMe => "ADDME",
            MessageKind::Ping => "PING",
            MessageKind::Pong => "PONG",
            MessageKind::FileFrag => "FILEFRAG",
            MessageKind::FileGet => "FILEGET",
            MessageKind::Find => "FIND",
            MessageKind::NewFile => "NEWFILE",
            MessageKind::Stored => "STORED",
            MessageKind::NotFound => "NOTFOUND",
            MessageKind::Leave => "LEAVE",
            MessageKind::StatsRequest => "STATSREQ",
            MessageKind::Stats => "STATS",
            MessageKind::Holdings => "HOLDINGS",
            MessageKind::Dead => "DEAD",
        }
    }

    /// The kind of the message whose variant number is `tag`.
    pub fn from_tag(tag: u8) -> Option<MessageKind> {
        MessageKind::ALL.get(usize::from(tag)).copied()
    }
}

impl Message<'_> {
    /// The message's kind.
    pub const fn kind(&self) -> MessageKind {
        match self {
            Message::Join { .. } => MessageKind::Join,
            Message::Peers { .. } => MessageKind::Peers,
            Message::AddMe => MessageKind::AddMe,
            Message::Ping { .. } => MessageKind::Ping,
            Message::Pong { .. } => MessageKind::Pong,
            Message::FileFrag { .. } => MessageKind::FileFrag,
            Message::FileGet { .. } => MessageKind::FileGet,
            Message::Find { .. } => MessageKind::Find,
            Message::NewFile { .. } => MessageKind::NewFile,
            Message::Stored { .. } => MessageKind::Stored,
            Message::NotFound { .. } => MessageKind::NotFound,
            Message::Leave => MessageKind::Leave,
            Message::StatsRequest { .. } => MessageKind::StatsRequest,
            Message::Stats { .. } => MessageKind::Stats,
            Message::Holdings { .. } => MessageKind::Holdings,
            Message::Dead { .. } => MessageKind::Dead,
        }
    }
}

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
mod tests {
    extern crate std;
    use super::*;
    use crate::config::MAX_DATAGRAM_SIZE;
    use crate::counters::Counters;
    use std::vec::Vec;

    fn source() -> Source {
        Source {
            id: NodeId(0x0102),
            addr: PeerAddr::v4([127, 0, 0, 1], 8000),
            member: true,
            window: 0,
        }
    }

    fn encode(packet: &Packet<'_>) -> Vec<u8> {
        let mut buf = [0u8; MAX_DATAGRAM_SIZE];
        let len = packet.encode(&mut buf).unwrap();
        buf[..len].to_vec()
    }

    fn single(message: Message<'_>) -> Packet<'_> {
        Packet { transmission: Transmission::Singlecast, source: source(), message }
    }

    /// Header bytes shared by the fixed vectors below: version, singlecast,
    /// id 0x0102 as varint (0x82 0x02), V4, 127.0.0.1, port 8000 as varint
    /// (0xC0 0x3E), member, window.
    const HEAD: [u8; 11] = [0xD1, 0x00, 0x82, 0x02, 0x00, 127, 0, 0, 1, 0xC0, 0x3E];

    fn with_head(tail: &[u8]) -> Vec<u8> {
        let mut v = HEAD.to_vec();
        v.push(0x01); // member = true
        v.push(0x00); // window = 0 (no limit)
        v.extend_from_slice(tail);
        v
    }

    fn check(message: Message<'_>, tail: &[u8]) {
        let packet = single(message);
        let bytes = encode(&packet);
        assert_eq!(bytes, with_head(tail), "{:?}", packet.message.kind());
        assert_eq!(Packet::decode(&bytes).unwrap(), packet);
    }

    #[test]
    fn fixed_vectors_for_every_message() {
        let hash = FragmentHash([0xAA; 32]);
        let mut hash_bytes = Vec::from([0xAA; 32]);

        check(Message::Join { want: 8, shard: None }, &[0x00, 0x08, 0x00]);
        check(Message::Join { want: 8, shard: Shard::new(5) }, &[0x00, 0x08, 0x01, 0x05]);

        let mut peers = PeerList::new();
        peers.push(PeerInfo { id: NodeId(3), addr: PeerAddr::v4([127, 0, 0, 1], 8001) }).unwrap();
        check(Message::Peers { peers }, &[0x01, 0x01, 0x03, 0x00, 127, 0, 0, 1, 0xC1, 0x3E]);

        check(Message::AddMe, &[0x02]);
        check(Message::Ping { nonce: 300 }, &[0x03, 0xAC, 0x02]);
        check(Message::Pong { nonce: 300 }, &[0x04, 0xAC, 0x02]);

        let mut tail = Vec::from([0x06]);
        tail.extend_from_slice(&hash_bytes);
        check(Message::FileGet { hash }, &tail);

        check(Message::Find { shard: Shard::new(15).unwrap(), nonce: 1 }, &[0x07, 0x0F, 0x01]);

        let mut tail = Vec::from([0x08]);
        tail.extend_from_slice(&hash_bytes);
        check(Message::NewFile { hash }, &tail);

        let mut tail = Vec::from([0x09]);
        tail.extend_from_slice(&hash_bytes);
        tail.push(0x02); // Full
        tail.push(0x00); // no holders named
        check(
            Message::Stored { hash, outcome: StoreOutcome::Full, holders: HolderList::new() },
            &tail,
        );

        let mut tail = Vec::from([0x0A]);
        tail.extend_from_slice(&hash_bytes);
        tail.push(0x00); // no suggested holders
        check(Message::NotFound { hash, holders: HolderList::new() }, &tail);

        check(Message::Leave, &[0x0B]);
        let mut hashes = HashList::new();
        hashes.push(hash).unwrap();
        let mut tail = Vec::from([0x0E, 0x01]);
        tail.extend_from_slice(&[0xAA; 32]);
        check(Message::Holdings { hashes }, &tail);
        let peer = PeerInfo { id: NodeId(3), addr: PeerAddr::v4([127, 0, 0, 1], 8001) };
        check(Message::Dead { peer }, &[0x0F, 0x03, 0x00, 127, 0, 0, 1, 0xC1, 0x3E]);
        check(Message::StatsRequest { nonce: 2, about: None }, &[0x0C, 0x02, 0x00]);

        let fragment = [0x5Au8; FRAGMENT_SIZE];
        let mut tail = Vec::from([0x05, 0x01]); // FILEFRAG, Answer
        tail.append(&mut hash_bytes);
        tail.extend_from_slice(&[0x80, 0x40]);
        tail.extend_from_slice(&fragment);
        check(
            Message::FileFrag { mode: FragMode::Answer, hash, data: FragmentRef(&fragment) },
            &tail,
        );
    }

    #[test]
    fn stats_round_trip() {
        let mut counters = Counters::default();
        counters.count_sent(MessageKind::Ping, 20);
        let packet = single(Message::Stats {
            nonce: 9,
            held: 3,
            capacity: 100,
            neighbors: 17,
            joined: true,
            knows: false,
            counters: counters.clone(),
        });
        let bytes = encode(&packet);
        assert_eq!(&bytes[13..15], &[0x0D, 0x09]);
        assert_eq!(Packet::decode(&bytes).unwrap(), packet);
    }

    #[test]
    fn transmission_headers() {
        let mut packet = single(Message::AddMe);
        packet.transmission = Transmission::Randomcast { hops: 3 };
        assert_eq!(&encode(&packet)[1..3], &[0x01, 0x03]);
        packet.transmission = Transmission::Broadcast { breadth: 2, uid: 1 << 63 };
        let bytes = encode(&packet);
        assert_eq!(
            &bytes[1..13],
            &[0x02, 0x02, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01]
        );
        assert_eq!(Packet::decode(&bytes).unwrap(), packet);
    }

    #[test]
    fn longest_filefrag_fits_the_datagram_limit() {
        let fragment = [0u8; FRAGMENT_SIZE];
        let packet = Packet {
            transmission: Transmission::Broadcast { breadth: 255, uid: u64::MAX },
            source: Source {
                id: NodeId(u64::MAX),
                addr: PeerAddr::v6([0xFF; 16], u16::MAX),
                member: true,
                window: u8::MAX,
            },
            message: Message::FileFrag {
                mode: FragMode::Store,
                hash: FragmentHash([0xFF; 32]),
                data: FragmentRef(&fragment),
            },
        };
        let len = encode(&packet).len();
        assert_eq!(len, 8273);
        assert!(len <= MAX_DATAGRAM_SIZE);
    }

    #[test]
    fn full_peer_list_fits_the_datagram_limit() {
        let mut peers = PeerList::new();
        while peers
            .push(PeerInfo { id: NodeId(u64::MAX), addr: PeerAddr::v6([0xFF; 16], u16::MAX) })
            .is_ok()
        {}
        assert!(encode(&single(Message::Peers { peers })).len() <= MAX_DATAGRAM_SIZE);
    }

    #[test]
    fn full_hash_list_fits_the_datagram_limit() {
        let mut hashes = HashList::new();
        while hashes.push(FragmentHash([0xFF; 32])).is_ok() {}
        assert!(encode(&single(Message::Holdings { hashes })).len() <= MAX_DATAGRAM_SIZE);
    }

    #[test]
    fn in_place_header_matches_full_encoding() {
        let fragment = [7u8; FRAGMENT_SIZE];
        let hash = FragmentHash([3; 32]);
        for transmission in [
            Transmission::Singlecast,
            Transmission::Randomcast { hops: 200 },
            Transmission::Broadcast { breadth: 3, uid: 0xFFFF_FFFF },
        ] {
            let packet = Packet {
                transmission,
                source: source(),
                message: Message::FileFrag {
                    mode: FragMode::Store,
                    hash,
                    data: FragmentRef(&fragment),
                },
            };
            let full = encode(&packet);
            let mut buf = [0u8; MAX_DATAGRAM_SIZE];
            let head =
                encode_filefrag_header(transmission, source(), FragMode::Store, &hash, &mut buf)
                    .unwrap();
            buf[head..head + FRAGMENT_SIZE].copy_from_slice(&fragment);
            assert_eq!(&buf[..head + FRAGMENT_SIZE], &full[..]);
        }
    }

    #[test]
    fn decode_rejects_what_it_must() {
        let bytes = encode(&single(Message::Ping { nonce: 1 }));
        assert_eq!(Packet::decode(&[]), Err(DecodeError::Empty));
        let mut wrong = bytes.clone();
        wrong[0] = 0xD2;
        assert_eq!(Packet::decode(&wrong), Err(DecodeError::BadVersion(0xD2)));
        for cut in 1..bytes.len() {
            assert_eq!(Packet::decode(&bytes[..cut]), Err(DecodeError::Malformed), "cut {cut}");
        }
        let mut long = bytes.clone();
        long.push(0);
        assert_eq!(Packet::decode(&long), Err(DecodeError::TrailingBytes));
        let mut unknown = bytes.clone();
        unknown[13] = 0x7F; // no such message
        assert_eq!(Packet::decode(&unknown), Err(DecodeError::Malformed));
    }

    #[test]
    fn fragment_of_wrong_length_is_malformed() {
        let fragment = [1u8; FRAGMENT_SIZE];
        let bytes = encode(&single(Message::FileFrag {
            mode: FragMode::Store,
            hash: FragmentHash([0; 32]),
            data: FragmentRef(&fragment),
        }));
        // Claim 8191 bytes (0xFF 0x3F) and drop one.
        let mut short = bytes.clone();
        let at = 13 + 2 + 32;
        assert_eq!(&short[at..at + 2], &[0x80, 0x40]);
        short[at] = 0xFF;
        short[at + 1] = 0x3F;
        short.pop();
        assert_eq!(Packet::decode(&short), Err(DecodeError::Malformed));
    }

    #[test]
    fn too_many_peers_is_malformed() {
        let mut bytes = with_head(&[0x01, 65]);
        for _ in 0..65 {
            bytes.extend_from_slice(&[0x03, 0x00, 127, 0, 0, 1, 0xC1, 0x3E]);
        }
        assert_eq!(Packet::decode(&bytes), Err(DecodeError::Malformed));
    }
}
