//! Protocol constants and node configuration, in one place.
//!
//! The constants fix the protocol: changing one changes what goes on the
//! wire or on disk and needs a new [`WIRE_VERSION`]. [`Config`] holds the
//! tunables of one node (timeouts, quotas, the replication policy); its
//! defaults suit a host node, [`Config::client`] a tool that uploads or
//! downloads without storing, and [`Config::small`] a microcontroller.

use crate::time::Duration;

/// Bytes in a fragment. Every fragment is exactly this long; the last
/// fragment of a file is padded with zeros.
pub const FRAGMENT_SIZE: usize = 8192;

/// Number of shards. A fragment lives on the nodes whose `id % SHARD_COUNT`
/// equals `u64_be(hash[0..8]) % SHARD_COUNT`.
pub const SHARD_COUNT: u8 = 16;

/// Bytes in a fragment hash (SHA-256).
pub const HASH_SIZE: usize = 32;

/// Bytes of file name in an index fragment.
pub const INDEX_NAME_SIZE: usize = 29;

/// Fragment hashes in an index fragment.
pub const INDEX_MAX_FRAGMENTS: usize = 255;

/// The largest file one index fragment describes: 255 * 8192 bytes.
pub const MAX_FILE_SIZE: u64 = (INDEX_MAX_FRAGMENTS * FRAGMENT_SIZE) as u64;

/// The first byte of every datagram: high nibble `0xD` marks the protocol,
/// low nibble is the wire version (2: cookies in the header, an optional
/// key tag, fragments in pieces, STATS counters as (id, value) pairs).
pub const WIRE_VERSION: u8 = 0xD2;

/// The largest datagram the protocol produces: a FILEFRAG carrying a whole
/// fragment with the longest header and a key tag (on loopback; on a real
/// link a node sends at most its [`Config::max_datagram`]).
pub const MAX_DATAGRAM_SIZE: usize = 8320;

/// The default [`Config::max_datagram`]: the UDP payload of a 1500-byte
/// Ethernet frame over IPv6 (1500 - 40 - 8), so that no datagram is cut
/// into IP fragments, one lost IP packet no longer loses a whole 8 KB
/// datagram, and a small node needs no reassembly buffer.
pub const ETHERNET_DATAGRAM: u16 = 1452;

/// Most peers listed in one PEERS message.
pub const MAX_PEERS_PER_MESSAGE: usize = 32;

/// Most fragment hashes listed in one HOLDINGS message (1 KB of hashes): as
/// large as a PEERS list, so that neither makes every decoded packet larger
/// (a packet on the stack of a microcontroller is as large as its largest
/// message).
pub const MAX_HASHES_PER_MESSAGE: usize = 32;

/// Most fragments one LIST page carries: 12 entries of at most 74 bytes
/// fit an Ethernet-sized datagram with its header and tag.
pub const MAX_LISTED: usize = 12;

/// Most fragments a node reads to answer one LISTREQ: listing costs the
/// node at most this many fragment reads per request, whatever the page
/// finds.
pub const LIST_SCAN: usize = 64;

/// How a fragment is spread over its shard.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Replication {
    /// Every node of the shard holds every fragment of the shard (the
    /// original system's behaviour).
    WholeShard,
    /// The fragment lives on this many nodes of its shard, chosen by
    /// rendezvous hashing over the shard members a node knows.
    Copies(u8),
}

/// Whether a node is a member of the overlay or a client of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Stores fragments of its shard, answers requests, appears in others'
    /// neighbor tables.
    Member,
    /// Uploads and downloads through the overlay but stores nothing and is
    /// never added to neighbor tables (dhtsend, dhtrecv, dhtping).
    Client,
}

/// Tunables of one node. See the field docs for what each one trades.
#[derive(Clone, Copy, Debug)]
pub struct Config {
    /// Member or client.
    pub role: Role,
    /// How many copies of a fragment the network keeps.
    pub replication: Replication,
    /// Peers asked of the seed in JOIN.
    pub join_want: u8,
    /// Delay before a JOIN that got no PEERS is sent again (doubles up to
    /// eight times this).
    pub join_retry: Duration,
    /// ADDME messages sent by randomcast after joining (the original's way
    /// of becoming known to random nodes).
    pub addme_randomcasts: u8,
    /// Hops of those randomcasts.
    pub addme_hops: u8,
    /// Neighbors kept from each other shard.
    pub per_shard_neighbors: u8,
    /// Neighbors kept from one's own shard (replication news travels among
    /// them, so this should cover the whole shard in networks of the
    /// intended size).
    pub own_shard_neighbors: u8,
    /// Replication fetches (FILEGET for an announced fragment) in flight at
    /// once. A small node keeps this at 1 so that it never receives two
    /// large datagrams at the same time.
    pub parallel_fetches: u8,
    /// Large datagrams this node can take in flight from one sender,
    /// advertised in every packet it sends (0: no limit). Senders keep
    /// their per-peer windows at or below it.
    pub rx_window: u8,
    /// How long a node waits before it fetches an announced fragment (plus
    /// a random jitter of up to as much again): replication yields to the
    /// upload that caused it, which is acknowledged by the first holder.
    pub replication_delay: Duration,
    /// Time to wait for the answer to a replication fetch.
    pub fetch_timeout: Duration,
    /// Attempts of a replication fetch before it is given up (the periodic
    /// repair exchange finds the fragment again later).
    pub fetch_attempts: u8,
    /// How often a member probes the members that follow it in its shard's
    /// id ring (see `monitors`) when it has not heard from them meanwhile.
    pub monitor_interval: Duration,
    /// How many ring successors in its shard each member monitors. Every
    /// member is thereby watched by as many predecessors.
    pub monitors: u8,
    /// How often a member probes one random neighbor it has not heard from
    /// (so that dead entries of other shards are found too).
    pub random_probe_interval: Duration,
    /// How long a probe waits for the answer to its last PING; its PINGs
    /// go out a third of this apart (see `node::liveness`).
    pub probe_timeout: Duration,
    /// Probes without answer after which a neighbor is declared dead.
    pub probe_tries: u8,
    /// Probes without answer after which a neighbor another node said is
    /// dead (a DEAD notice) is dead to this node too: fewer than
    /// `probe_tries`, since the node that said so found it silent for
    /// `monitor_interval` and then tried `probe_tries` times itself.
    pub suspect_tries: u8,
    /// Breadth of the DEAD broadcast that tells the network of a death.
    pub dead_breadth: u8,
    /// How long a graceful leave may spend handing off fragments.
    pub leave_timeout: Duration,
    /// The largest datagram this node sends, and so the largest piece of
    /// a fragment it asks for ([`ETHERNET_DATAGRAM`] by default; loopback
    /// scenes may use up to [`MAX_DATAGRAM_SIZE`], a fragment a datagram).
    pub max_datagram: u16,
    /// Fetches of fragments offered by uploaders in flight at once.
    pub parallel_offers: u8,
    /// Most relay levels a broadcast may still have when this node relays
    /// it, and most forwards a randomcast may still have: larger values
    /// are cut down.
    pub max_breadth: u8,
    /// See `max_breadth`.
    pub max_hops: u8,
    /// Randomcasts and broadcasts relayed for one sender per second (and
    /// in a burst).
    pub relay_rate: u16,
    /// See `relay_rate`.
    pub relay_burst: u16,
    /// Requests that cost a big answer (a fragment, PEERS, STATS) served
    /// to one sender per second (and in a burst).
    pub answer_rate: u16,
    /// See `answer_rate`.
    pub answer_burst: u16,
    /// Fragments offered by one sender that this node takes per second
    /// (and in a burst): the per-sender quota of its store.
    pub store_rate: u16,
    /// See `store_rate`.
    pub store_burst: u16,
    /// How long a joining node waits, after the seed's PEERS, for the
    /// per-shard member lists it asked for before it completes the join.
    pub survey_timeout: Duration,
    /// How often a member maintains its neighbor table when it has no gaps
    /// (eight times as often otherwise): it asks a shard
    /// mate for the shard's members, a random neighbor for members of its
    /// shard it may not know, and, for one shard below its quota, a random
    /// neighbor for members of that shard, and sends a HOLDINGS page to a
    /// mate. Each request is one small datagram and its answer.
    pub maintenance_interval: Duration,
}

impl Config {
    /// The replication factor, if bounded (`None`: every member of the
    /// shard holds every fragment).
    pub fn copies(&self) -> Option<usize> {
        match self.replication {
            Replication::WholeShard => None,
            Replication::Copies(r) => Some(usize::from(r)),
        }
    }

    /// A storing member node on a host.
    pub const fn member() -> Config {
        Config {
            role: Role::Member,
            replication: Replication::Copies(3),
            join_want: 48,
            join_retry: Duration::from_millis(250),
            addme_randomcasts: 4,
            addme_hops: 4,
            per_shard_neighbors: 4,
            own_shard_neighbors: 48,
            parallel_fetches: 4,
            rx_window: 0,
            replication_delay: Duration::from_millis(200),
            fetch_timeout: Duration::from_millis(500),
            fetch_attempts: 6,
            survey_timeout: Duration::from_millis(200),
            maintenance_interval: Duration::from_secs(30),
            monitor_interval: Duration::from_secs(3),
            monitors: 2,
            random_probe_interval: Duration::from_secs(10),
            probe_timeout: Duration::from_millis(300),
            probe_tries: 5,
            suspect_tries: 3,
            dead_breadth: 3,
            leave_timeout: Duration::from_secs(5),
            max_datagram: ETHERNET_DATAGRAM,
            parallel_offers: 16,
            max_breadth: 3,
            max_hops: 8,
            relay_rate: 50,
            relay_burst: 200,
            answer_rate: 2_000,
            answer_burst: 4_000,
            store_rate: 256,
            store_burst: 1_024,
        }
    }

    /// A client (upload, download, ping tools): stores nothing, learns as
    /// many members of every shard as its table holds.
    pub const fn client() -> Config {
        let mut config = Config::member();
        config.role = Role::Client;
        config.per_shard_neighbors = 16;
        config.own_shard_neighbors = 16;
        config.addme_randomcasts = 0;
        config
    }

    /// A member on a microcontroller: one fragment in flight at a time,
    /// small tables.
    pub const fn small() -> Config {
        let mut config = Config::member();
        config.parallel_offers = 1;
        config.per_shard_neighbors = 2;
        config.own_shard_neighbors = 8;
        config.parallel_fetches = 1;
        config.rx_window = 1;
        config.join_want = 24;
        config
    }
}

/// Why a [`Config`] cannot run a node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfigError {
    /// `Replication::Copies(0)`: fragments would be stored nowhere.
    NoCopies,
    /// More copies than a node can rank: at most
    /// [`crate::holders::MAX_COPIES`], and at most one more than the
    /// shard mates it keeps (`own_shard_neighbors`).
    TooManyCopies {
        /// Copies asked for.
        copies: u8,
        /// The most this configuration supports.
        max: usize,
    },
    /// A table quota of zero (`per_shard_neighbors` or
    /// `own_shard_neighbors`): the node could know nobody.
    NoNeighbors,
    /// `parallel_fetches` or `fetch_attempts` is zero: replication could
    /// never fetch.
    NoFetches,
    /// `join_want` is zero: a JOIN would ask for nobody.
    ZeroJoinWant,
    /// More watched mates than a node keeps (at most 4).
    TooManyMonitors {
        /// Mates asked for.
        monitors: u8,
    },
    /// `probe_tries` or `suspect_tries` is zero: nobody could ever be
    /// found dead.
    NoProbeTries,
    /// A timeout or interval is zero, which would wake the node in a loop.
    ZeroInterval {
        /// The field's name.
        field: &'static str,
    },
    /// `max_datagram` cannot carry the smallest piece of a fragment, or is
    /// larger than any datagram.
    DatagramSize {
        /// The size asked for.
        max_datagram: u16,
    },
}

impl core::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ConfigError::NoCopies => f.write_str("at least one copy of each fragment is needed"),
            ConfigError::TooManyCopies { copies, max } => {
                write!(f, "{copies} copies asked; this configuration keeps at most {max}")
            }
            ConfigError::NoNeighbors => f.write_str("neighbor quotas must be at least 1"),
            ConfigError::NoFetches => {
                f.write_str("parallel_fetches and fetch_attempts must be at least 1")
            }
            ConfigError::ZeroJoinWant => f.write_str("join_want must be at least 1"),
            ConfigError::TooManyMonitors { monitors } => {
                write!(f, "{monitors} watched mates asked; at most 4")
            }
            ConfigError::NoProbeTries => {
                f.write_str("probe_tries and suspect_tries must be at least 1")
            }
            ConfigError::ZeroInterval { field } => write!(f, "{field} must not be zero"),
            ConfigError::DatagramSize { max_datagram } => write!(
                f,
                "a largest datagram of {max_datagram} bytes is not between {} and \
                 {MAX_DATAGRAM_SIZE}",
                crate::node::MIN_DATAGRAM
            ),
        }
    }
}

impl Config {
    /// Checks that a node can run with this configuration.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Replication::Copies(copies) = self.replication {
            if copies == 0 {
                return Err(ConfigError::NoCopies);
            }
            let max = crate::holders::MAX_COPIES.min(usize::from(self.own_shard_neighbors) + 1);
            if usize::from(copies) > max {
                return Err(ConfigError::TooManyCopies { copies, max });
            }
        }
        if self.per_shard_neighbors == 0 || self.own_shard_neighbors == 0 {
            return Err(ConfigError::NoNeighbors);
        }
        if self.parallel_fetches == 0 || self.fetch_attempts == 0 {
            return Err(ConfigError::NoFetches);
        }
        if self.join_want == 0 {
            return Err(ConfigError::ZeroJoinWant);
        }
        if self.monitors > 4 {
            return Err(ConfigError::TooManyMonitors { monitors: self.monitors });
        }
        if self.probe_tries == 0 || self.suspect_tries == 0 {
            return Err(ConfigError::NoProbeTries);
        }
        let datagram = usize::from(self.max_datagram);
        if !(crate::node::MIN_DATAGRAM..=MAX_DATAGRAM_SIZE).contains(&datagram) {
            return Err(ConfigError::DatagramSize { max_datagram: self.max_datagram });
        }
        let intervals = [
            ("join_retry", self.join_retry),
            ("fetch_timeout", self.fetch_timeout),
            ("monitor_interval", self.monitor_interval),
            ("random_probe_interval", self.random_probe_interval),
            ("probe_timeout", self.probe_timeout),
            ("leave_timeout", self.leave_timeout),
            ("survey_timeout", self.survey_timeout),
            ("maintenance_interval", self.maintenance_interval),
        ];
        for (field, value) in intervals {
            if value == Duration::ZERO {
                return Err(ConfigError::ZeroInterval { field });
            }
        }
        Ok(())
    }
}

impl Default for Config {
    fn default() -> Self {
        Config::member()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_configurations_are_valid() {
        for config in [Config::member(), Config::client(), Config::small()] {
            assert_eq!(config.validate(), Ok(()));
        }
    }

    #[test]
    fn impossible_settings_are_refused_with_their_reason() {
        let mut c = Config::member();
        c.replication = Replication::Copies(0);
        assert_eq!(c.validate(), Err(ConfigError::NoCopies));
        c.replication = Replication::Copies(17);
        assert_eq!(c.validate(), Err(ConfigError::TooManyCopies { copies: 17, max: 16 }));
        let mut c = Config::small();
        c.replication = Replication::Copies(10);
        assert_eq!(c.validate(), Err(ConfigError::TooManyCopies { copies: 10, max: 9 }));
        let mut c = Config::member();
        c.parallel_fetches = 0;
        assert_eq!(c.validate(), Err(ConfigError::NoFetches));
        let mut c = Config::member();
        c.probe_timeout = Duration::ZERO;
        assert_eq!(c.validate(), Err(ConfigError::ZeroInterval { field: "probe_timeout" }));
        let mut c = Config::client();
        c.per_shard_neighbors = 0;
        assert_eq!(c.validate(), Err(ConfigError::NoNeighbors));
        c = Config::member();
        c.monitors = 5;
        assert_eq!(c.validate(), Err(ConfigError::TooManyMonitors { monitors: 5 }));
    }
}
