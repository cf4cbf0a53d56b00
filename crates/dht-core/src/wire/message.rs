//! The messages of the protocol, declared once.
//!
//! [`messages!`] takes the list of messages (wire name, variant, fields)
//! and makes the [`Message`] enum, whose variant numbers are the wire tags
//! (postcard encodes an enum as its variant's position), the [`MessageKind`]
//! enum that counters index, its names and [`Message::kind`]. Adding a
//! message is one entry here, appended at the end: its tag is its place in
//! the list, and nothing else has to be kept in step by hand. An entry
//! may start with `cfg(...)`: LISTREQ and LIST exist only with the
//! `listing` feature, so a microcontroller's build neither decodes nor
//! answers them (to it they are unknown tags, dropped as malformed).

use serde::{Deserialize, Serialize};

#[cfg(feature = "listing")]
use super::ListPage;
use super::{HashList, HolderList, NodeStats, PeerList, PieceRef, StoreOutcome};
use crate::fragment::FragmentHash;
use crate::id::{PeerAddr, PeerInfo, Shard};

/// Declares the messages: `"NAME" Variant { fields }` in wire order.
macro_rules! messages {
    ($(
        $(cfg($cfg:meta))?
        $(#[$doc:meta])*
        $name:literal $variant:ident $({ $($fields:tt)* })?,
    )*) => {
        /// The messages of the protocol. The variant's position is its tag
        /// on the wire: new messages are appended, never inserted.
        ///
        /// A decoded message lives briefly on the stack; the PEERS and
        /// HOLDINGS lists (up to 32 entries, inline) make it about 1 KB,
        /// which is why the size difference between variants is accepted
        /// instead of boxing (there is no allocator).
        #[allow(clippy::large_enum_variant)]
        #[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
        pub enum Message<'a> {
            $( $(#[cfg($cfg)])? $(#[$doc])* $variant $({ $($fields)* })?, )*
        }

        /// The kinds of message, in wire order, for counting.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum MessageKind {
            $( $(#[cfg($cfg)])? #[doc = $name] $variant, )*
        }

        impl MessageKind {
            /// All kinds in wire order.
            pub const ALL: &'static [MessageKind] =
                &[$($(#[cfg($cfg)])? MessageKind::$variant,)*];

            /// Number of kinds.
            pub const COUNT: usize = MessageKind::ALL.len();

            /// The name used in documentation and statistics.
            pub const fn name(self) -> &'static str {
                match self {
                    $($(#[cfg($cfg)])? MessageKind::$variant => $name,)*
                }
            }
        }

        impl Message<'_> {
            /// The message's kind.
            pub const fn kind(&self) -> MessageKind {
                match self {
                    $($(#[cfg($cfg)])? Message::$variant { .. } => MessageKind::$variant,)*
                }
            }
        }
    };
}

messages! {

    /// The sender joins (member) or looks around (client): answer with
    /// PEERS listing up to `want` peers, only members of `shard` if given.
    "JOIN" Join {
        /// Peers wanted.
        want: u8,
        /// Restrict the answer to this shard.
        shard: Option<Shard>,
    },
    /// Answers JOIN (and a FIND sent singlecast): peers the sender knows.
    "PEERS" Peers {
        /// The peers.
        peers: PeerList,
    },
    /// Add the originator to your neighbor table.
    "ADDME" AddMe,
    /// Answer with PONG carrying the same nonce.
    "PING" Ping {
        /// Echoed in the PONG.
        nonce: u64,
    },
    /// Answers PING and FIND.
    "PONG" Pong {
        /// The nonce of the PING or FIND answered.
        nonce: u64,
        /// A peer the answerer heard was dead in the last 30 s, if any: the
        /// receiver probes it if it knows it (a DEAD notice that missed it).
        dead: Option<PeerAddr>,
    },
    /// A piece of a fragment, answering a FILEGET: the bytes of units
    /// `first_unit..first_unit + data.len() / 512` (a whole fragment is one
    /// piece of 16 units). The receiver checks the whole fragment against
    /// its hash once every unit has arrived.
    "FILEFRAG" FileFrag {
        /// The fragment's hash.
        hash: FragmentHash,
        /// The first unit (of 512 bytes) the piece carries, `0..16`.
        first_unit: u8,
        /// The piece: 512 to 8192 bytes, a whole number of units.
        #[serde(borrow)]
        data: PieceRef<'a>,
    },
    /// Send me these units of the fragment with this hash (FILEFRAG pieces
    /// of at most `piece_units` units each), or NOTFOUND. The sender must
    /// have shown that it listens at its address (see RETRY).
    "FILEGET" FileGet {
        /// The fragment wanted.
        hash: FragmentHash,
        /// The units wanted, bit `i` for unit `i` (never zero).
        want: u16,
        /// The largest piece the sender takes, in units: 1, 2, 4, 8 or 16.
        piece_units: u8,
    },
    /// Nodes of `shard` answer with PONG; a non-member receiving it
    /// singlecast answers with PEERS listing the members of `shard` it knows.
    "FIND" Find {
        /// The shard looked for.
        shard: Shard,
        /// Echoed in the PONG.
        nonce: u64,
    },
    /// The originator holds a fragment and offers it: a member that should
    /// hold it and lacks it fetches it from the originator (FILEGET) and
    /// answers STORED once it has it; one that has it answers STORED at
    /// once. An upload is an offer from the client, replication an offer
    /// from a holder, a hand-off an offer from a leaving member.
    "NEWFILE" NewFile {
        /// The fragment offered.
        hash: FragmentHash,
        /// Fetch it at once (an upload, a hand-off), not after the
        /// replication delay (an announcement, a repair).
        urgent: bool,
        /// How many members of the shard should hold it when that is more
        /// than the network's `R` (an index fragment, which a file cannot
        /// do without); 0, or a count at most `R`, means `R`. Holders keep
        /// the count with the fragment and keep that many copies.
        copies: u8,
    },
    /// Answers a NEWFILE: the fragment is stored (or why not).
    "STORED" Stored {
        /// The fragment concerned.
        hash: FragmentHash,
        /// What became of it.
        outcome: StoreOutcome,
        /// With [`StoreOutcome::NotHolder`], the members that should hold
        /// it as the receiver sees its shard; empty otherwise.
        holders: HolderList,
    },

    /// Answers a FILEGET for a fragment the receiver does not hold.
    "NOTFOUND" NotFound {
        /// The fragment asked for.
        hash: FragmentHash,
        /// Members of the fragment's shard that should hold it, as the
        /// answering node sees the shard (empty if it does not know). A
        /// member of the shard knows it whole, so one NOTFOUND is enough to
        /// find the holders.
        holders: HolderList,
    },
    /// The originator leaves the network: remove it from your tables.
    "LEAVE" Leave,
    /// Answer with STATS.
    "STATSREQ" StatsRequest {
        /// Echoed in the STATS answer.
        nonce: u64,
        /// Ask also whether this address is in the receiver's neighbor
        /// table (to watch a node leave the tables).
        about: Option<PeerAddr>,
    },

    /// A node's counters.
    "STATS" Stats {
        /// The nonce of the request answered.
        nonce: u64,
        /// What the node says of itself.
        stats: NodeStats,
    },

    /// a page of the fragments the originator holds,
    /// sent to a member of its shard, which fetches (FILEGET) those it
    /// should hold and lacks. The periodic exchange of these pages is how
    /// a shard repairs lost copies and how a new member gets its share.
    "HOLDINGS" Holdings {
        /// Up to 32 fragment hashes.
        hashes: HashList,
    },
    /// `peer` stopped answering the originator's liveness probes: a reason
    /// for each receiver to probe it itself (only its own unanswered probes
    /// make a node dead). A node that hears of its own death says it is
    /// alive with ADDME to its neighbors.
    "DEAD" Dead {
        /// The node suspected dead.
        peer: PeerInfo,
    },
    /// The receiver asked for something big (FILEGET, JOIN, STATSREQ, a
    /// FIND answered with PEERS) from an address it has not shown to listen
    /// at: send it again with the cookie of this datagram's header (its
    /// `grant`) as your `echo`.
    "RETRY" Retry,

    cfg(feature = "listing")
    /// Answer with LIST: a page of the fragments held, from position
    /// `from` of the store's order on. The receiver reads at most
    /// [`crate::config::LIST_SCAN`] fragments for one request.
    "LISTREQ" ListRequest {
        /// Echoed in the LIST answer.
        nonce: u64,
        /// The position to start from (0, then the answer's `next`).
        from: u32,
        /// Only the roots of files, not every fragment.
        files_only: bool,
    },
    cfg(feature = "listing")
    /// Answers LISTREQ: fragments held and, for the roots of files, their
    /// names and sizes.
    "LIST" List {
        /// The nonce of the request answered.
        nonce: u64,
        /// The page.
        page: ListPage,
    },
}

impl MessageKind {
    /// The kind's position in [`MessageKind::ALL`]: its wire tag.
    pub const fn index(self) -> usize {
        self as usize
    }
}
