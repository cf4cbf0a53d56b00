//! What goes in and out of a node: the datagram sink, the events for the
//! application, and the answers to the application's own requests.

use core::fmt;

use crate::fragment::FragmentHash;
use crate::id::{NodeId, PeerAddr, PeerInfo};

/// Where a node's datagrams go: a UDP socket, a smoltcp socket, the
/// simulator's network.
pub trait Transmit {
    /// Sends one datagram to `to`. Sending is best effort; an error is
    /// counted by the node (`send_failed`) and otherwise ignored.
    fn send(&mut self, to: PeerAddr, datagram: &[u8]) -> Result<(), SendError>;
}

impl<T: Transmit + ?Sized> Transmit for &mut T {
    fn send(&mut self, to: PeerAddr, datagram: &[u8]) -> Result<(), SendError> {
        (**self).send(to, datagram)
    }
}

/// The transport could not take a datagram (buffer full, unreachable, ...).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SendError;

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("transport refused the datagram")
    }
}

/// Something the application may want to know.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// The node picked its id at join time (to fill the emptiest shard);
    /// persist it so that a restart keeps it.
    IdentityChosen(NodeId),
    /// The join got no answer yet and was sent again.
    JoinRetry {
        /// How many JOINs have been sent.
        attempt: u8,
    },
    /// The node knows peers and is ready (a client: knows the shards).
    Joined {
        /// Neighbors known at that moment.
        neighbors: usize,
    },
    /// A fragment was stored.
    FragmentStored(FragmentHash),
    /// A stored fragment failed its hash check when read and was removed.
    CorruptFragmentRemoved(FragmentHash),
    /// A replication fetch was given up after its attempts.
    FetchAbandoned(FragmentHash),
    /// The store refused a fragment for want of room: the node takes no
    /// more until it has room again (its mates place copies elsewhere).
    StoreFull,
    /// The store has room again.
    StoreAvailable {
        /// Fragments held.
        held: u32,
    },
    /// A neighbor was found dead (it stopped answering probes, or another
    /// node said so) and dropped.
    NeighborDead(PeerInfo),
    /// A graceful leave is complete: the neighbors were told. The node
    /// should now stop.
    Left {
        /// Fragments handed off to the members that replace this node.
        handed_off: u32,
        /// Whether the hand-off ended before the leave deadline.
        complete: bool,
    },
}

/// An answer to a request the application made through this node.
///
/// STATS carries the counters inline (there is no allocator to box them).
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply<'a> {
    /// Answer to a PING or FIND.
    Pong {
        /// Who answered.
        from: PeerInfo,
        /// The nonce of the request.
        nonce: u64,
    },
    /// Answer to an offer (NEWFILE): the fragment is stored, or why not.
    Stored {
        /// Who answered.
        from: PeerInfo,
        /// The fragment.
        hash: FragmentHash,
        /// What happened to it.
        outcome: crate::wire::StoreOutcome,
        /// With [`crate::wire::StoreOutcome::NotHolder`], who should hold it
        /// instead.
        holders: crate::wire::HolderList,
    },
    /// A piece of a fragment answering a FILEGET: units `first_unit..`
    /// of `hash`, not yet checked (the whole fragment is checked against
    /// its hash once every unit has arrived).
    Piece {
        /// Who sent it.
        from: PeerInfo,
        /// The fragment.
        hash: FragmentHash,
        /// Its first unit (of [`crate::wire::UNIT`] bytes).
        first_unit: u8,
        /// Its bytes, borrowed from the datagram: whole units.
        data: &'a [u8],
    },
    /// A holder asks for units of a fragment this client offered (its
    /// FILEGET, from an address that proved it listens there): answer with
    /// [`crate::node::Node::send_pieces`].
    FileGet {
        /// Who asks.
        from: PeerInfo,
        /// The fragment.
        hash: FragmentHash,
        /// The units wanted, bit `i` for unit `i`.
        want: u16,
        /// The largest piece it takes, in units.
        piece_units: u8,
    },
    /// The peer does not hold the fragment asked for.
    NotFound {
        /// Who answered.
        from: PeerInfo,
        /// The fragment asked for.
        hash: FragmentHash,
        /// Who should hold it, as the answering node sees its shard.
        holders: crate::wire::HolderList,
    },
    /// A node's statistics.
    Stats {
        /// Who answered.
        from: PeerInfo,
        /// The nonce of the request.
        nonce: u64,
        /// What it says of itself.
        stats: crate::wire::NodeStats,
    },
    /// A page of what a node holds.
    #[cfg(feature = "listing")]
    List {
        /// Who answered.
        from: PeerInfo,
        /// The nonce of the request.
        nonce: u64,
        /// The page.
        page: crate::wire::ListPage,
    },
}

/// Why a client request could not be sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestError {
    /// The data to send could not be read.
    SourceFailed,
    /// The data read does not hash to the hash given (the source changed).
    HashMismatch,
    /// The transport refused the datagram.
    SendFailed,
}
