//! The messages of the protocol, declared once.
//!
//! [`messages!`] takes the list of messages (wire name, variant, fields)
//! and makes the [`Message`] enum, whose variant numbers are the wire tags
//! (postcard encodes an enum as its variant's position), the [`MessageKind`]
//! enum that counters index, its names and [`Message::kind`]. Adding a
//! message is one entry here, appended at the end: its tag is its place in
//! the list, and nothing else has to be kept in step by hand.

use serde::{Deserialize, Serialize};

use super::{FragMode, FragmentRef, HashList, HolderList, NodeStats, PeerList, StoreOutcome};
use crate::fragment::FragmentHash;
use crate::id::{PeerAddr, PeerInfo, Shard};

/// Declares the messages: `"NAME" Variant { fields }` in wire order.
macro_rules! messages {
    ($(
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
            $( $(#[$doc])* $variant $({ $($fields)* })?, )*
        }

        /// The kinds of message, in wire order, for counting.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum MessageKind {
            $( #[doc = $name] $variant, )*
        }

        impl MessageKind {
            /// All kinds in wire order.
            pub const ALL: &'static [MessageKind] = &[$(MessageKind::$variant,)*];

            /// Number of kinds.
            pub const COUNT: usize = MessageKind::ALL.len();

            /// The name used in documentation and statistics.
            pub const fn name(self) -> &'static str {
                match self {
                    $(MessageKind::$variant => $name,)*
                }
            }
        }

        impl Message<'_> {
            /// The message's kind.
            pub const fn kind(&self) -> MessageKind {
                match self {
                    $(Message::$variant { .. } => MessageKind::$variant,)*
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
    },
    /// A fragment: a request to store it, or the answer to a FILEGET.
    "FILEFRAG" FileFrag {
        /// Store request or answer.
        mode: FragMode,
        /// The fragment's hash; the receiver checks the bytes against it.
        hash: FragmentHash,
        /// The 8192 bytes.
        #[serde(borrow)]
        data: FragmentRef<'a>,
    },
    /// Send me the fragment with this hash (FILEFRAG in answer mode, or
    /// NOTFOUND).
    "FILEGET" FileGet {
        /// The fragment wanted.
        hash: FragmentHash,
    },
    /// Nodes of `shard` answer with PONG; a non-member receiving it
    /// singlecast answers with PEERS listing the members of `shard` it knows.
    "FIND" Find {
        /// The shard looked for.
        shard: Shard,
        /// Echoed in the PONG.
        nonce: u64,
    },
    /// The originator holds a new fragment; holders that lack it fetch it
    /// from the originator with FILEGET.
    "NEWFILE" NewFile {
        /// The new fragment.
        hash: FragmentHash,
    },
    /// Answers a FILEFRAG in store mode.
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
    /// `peer` stopped answering its liveness probes.
    /// Sent as a broadcast whose UID is derived from the peer, so each
    /// node handles one notice per death; receivers drop the peer from
    /// their tables. A node that hears of its own death says it is alive
    /// with ADDME to its neighbors.
    "DEAD" Dead {
        /// The node found dead.
        peer: PeerInfo,
    },
}

impl MessageKind {
    /// The kind's position in [`MessageKind::ALL`]: its wire tag.
    pub const fn index(self) -> usize {
        self as usize
    }
}
