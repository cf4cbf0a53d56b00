//! Who is who: node ids, shards and peer addresses.
//!
//! A node is named by a random 64-bit [`NodeId`]; its [`Shard`] is
//! `id % 16`. A fragment's shard is computed from its hash (see
//! [`FragmentHash::shard`](crate::fragment::FragmentHash::shard)); the nodes
//! whose shard matches are the ones that hold it. A [`PeerAddr`] is an IPv4
//! or IPv6 address with a UDP port, in the core's own type so that the wire
//! format does not depend on how a platform spells socket addresses;
//! conversions to and from `core::net::SocketAddr` are provided.
//!
//! ```
//! use dht_core::id::{NodeId, PeerAddr, Shard};
//! let id = NodeId(0x1234);
//! assert_eq!(id.shard(), Shard::new(4).unwrap());
//! let addr = PeerAddr::v4([127, 0, 0, 1], 8000);
//! assert_eq!(format!("{addr}"), "127.0.0.1:8000");
//! ```

use core::fmt;
use core::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::config::SHARD_COUNT;

/// A node's identifier, random and fixed for the node's lifetime.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct NodeId(pub u64);

impl NodeId {
    /// The shard this node serves: `id % 16`.
    pub const fn shard(self) -> Shard {
        Shard::of(self.0)
    }

    /// A random id whose shard is `shard`, drawn from `random`.
    pub const fn in_shard(random: u64, shard: Shard) -> NodeId {
        let base = random - random % SHARD_COUNT as u64;
        NodeId(base + shard.0 as u64)
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// One of the 16 shards, `0..16`. Construction checks the range, so a
/// `Shard` is always a valid index into a per-shard table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Shard(u8);

impl Shard {
    /// The shard numbered `n`, if `n < 16`.
    pub const fn new(n: u8) -> Option<Shard> {
        if n < SHARD_COUNT {
            Some(Shard(n))
        } else {
            None
        }
    }

    /// The shard of a 64-bit key: `value % 16`.
    pub const fn of(value: u64) -> Shard {
        Shard((value % SHARD_COUNT as u64) as u8)
    }

    /// The shard's number, `0..16`.
    pub const fn get(self) -> u8 {
        self.0
    }

    /// The shard's number as an index.
    pub const fn index(self) -> usize {
        self.0 as usize
    }

    /// All shards in order.
    pub fn all() -> impl Iterator<Item = Shard> {
        (0..SHARD_COUNT).map(Shard)
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl Serialize for Shard {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u8(self.0)
    }
}

impl<'de> Deserialize<'de> for Shard {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let n = u8::deserialize(deserializer)?;
        Shard::new(n).ok_or_else(|| serde::de::Error::custom("shard out of range"))
    }
}

/// A UDP endpoint: IPv4 or IPv6 address and port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum PeerAddr {
    /// An IPv4 endpoint.
    V4 {
        /// Address octets in network order.
        ip: [u8; 4],
        /// UDP port.
        port: u16,
    },
    /// An IPv6 endpoint.
    V6 {
        /// Address octets in network order.
        ip: [u8; 16],
        /// UDP port.
        port: u16,
    },
}

impl PeerAddr {
    /// An IPv4 endpoint.
    pub const fn v4(ip: [u8; 4], port: u16) -> Self {
        PeerAddr::V4 { ip, port }
    }

    /// An IPv6 endpoint.
    pub const fn v6(ip: [u8; 16], port: u16) -> Self {
        PeerAddr::V6 { ip, port }
    }

    /// The port.
    pub const fn port(&self) -> u16 {
        match self {
            PeerAddr::V4 { port, .. } | PeerAddr::V6 { port, .. } => *port,
        }
    }

    /// The same address with another port.
    pub const fn with_port(self, port: u16) -> Self {
        match self {
            PeerAddr::V4 { ip, .. } => PeerAddr::V4 { ip, port },
            PeerAddr::V6 { ip, .. } => PeerAddr::V6 { ip, port },
        }
    }

    /// Whether the IP part is the unspecified address (`0.0.0.0` or `::`).
    ///
    /// A sender that does not know its own address advertises the
    /// unspecified address with its port; receivers substitute the IP the
    /// datagram came from (see the protocol documentation).
    pub fn is_unspecified(&self) -> bool {
        match self {
            PeerAddr::V4 { ip, .. } => *ip == [0; 4],
            PeerAddr::V6 { ip, .. } => *ip == [0; 16],
        }
    }

    /// The address with its unspecified IP replaced by the IP of `observed`.
    pub fn or_observed(self, observed: PeerAddr) -> PeerAddr {
        if self.is_unspecified() {
            observed.with_port(self.port())
        } else {
            self
        }
    }
}

impl From<SocketAddr> for PeerAddr {
    fn from(addr: SocketAddr) -> Self {
        match addr {
            SocketAddr::V4(a) => PeerAddr::V4 { ip: a.ip().octets(), port: a.port() },
            SocketAddr::V6(a) => match a.ip().to_ipv4_mapped() {
                Some(v4) => PeerAddr::V4 { ip: v4.octets(), port: a.port() },
                None => PeerAddr::V6 { ip: a.ip().octets(), port: a.port() },
            },
        }
    }
}

impl From<PeerAddr> for SocketAddr {
    fn from(addr: PeerAddr) -> Self {
        match addr {
            PeerAddr::V4 { ip, port } => {
                SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::from(ip), port))
            }
            PeerAddr::V6 { ip, port } => {
                SocketAddr::V6(SocketAddrV6::new(Ipv6Addr::from(ip), port, 0, 0))
            }
        }
    }
}

impl From<PeerAddr> for IpAddr {
    fn from(addr: PeerAddr) -> Self {
        SocketAddr::from(addr).ip()
    }
}

impl fmt::Display for PeerAddr {
    /// `a.b.c.d:port` or `[h:h::h]:port` (RFC 5952 form: the longest run of
    /// two or more zero groups shortened to `::`). Written out here rather
    /// than through `core::net`, whose formatting costs a microcontroller
    /// about 2 KB of flash.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PeerAddr::V4 { ip: [a, b, c, d], port } => write!(f, "{a}.{b}.{c}.{d}:{port}"),
            PeerAddr::V6 { ip, port } => {
                let mut groups = [0u16; 8];
                for (g, pair) in groups.iter_mut().zip(ip.chunks_exact(2)) {
                    if let [hi, lo] = pair {
                        *g = u16::from_be_bytes([*hi, *lo]);
                    }
                }
                // The longest run of zero groups (first if tied), if >= 2.
                let (mut best, mut best_len, mut run, mut run_len) = (0, 0, 0, 0);
                for (i, g) in groups.iter().enumerate() {
                    if *g == 0 {
                        if run_len == 0 {
                            run = i;
                        }
                        run_len += 1;
                        if run_len > best_len {
                            (best, best_len) = (run, run_len);
                        }
                    } else {
                        run_len = 0;
                    }
                }
                f.write_str("[")?;
                let mut i = 0;
                while i < 8 {
                    if best_len >= 2 && i == best {
                        f.write_str(if i == 0 { "::" } else { ":" })?;
                        i += best_len;
                        continue;
                    }
                    let g = groups.get(i).copied().unwrap_or(0);
                    write!(f, "{g:x}")?;
                    if i < 7 {
                        f.write_str(":")?;
                    }
                    i += 1;
                }
                write!(f, "]:{port}")
            }
        }
    }
}

/// A node as others know it: its id and where it listens.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PeerInfo {
    /// The node's id (and through it, its shard).
    pub id: NodeId,
    /// The address the node advertises.
    pub addr: PeerAddr,
}

impl PeerInfo {
    /// The peer's shard.
    pub const fn shard(&self) -> Shard {
        self.id.shard()
    }
}

impl fmt::Display for PeerInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.id, self.addr)
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::format;

    #[test]
    fn shard_is_id_mod_16() {
        assert_eq!(NodeId(0).shard().get(), 0);
        assert_eq!(NodeId(17).shard().get(), 1);
        assert_eq!(NodeId(u64::MAX).shard().get(), 15);
    }

    #[test]
    fn addresses_print_like_the_standard_library() {
        extern crate std;
        use std::string::ToString;
        let cases: [[u8; 16]; 6] = [
            [0; 16],
            [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
            [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
            [0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 1],
            [0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0x12, 0x34, 0, 0, 0, 0, 0xab, 0xcd],
            [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1],
        ];
        for ip in cases {
            let ours = PeerAddr::v6(ip, 8080).to_string();
            let std = SocketAddr::from(PeerAddr::v6(ip, 8080)).to_string();
            assert_eq!(ours, std, "{ip:?}");
        }
        assert_eq!(PeerAddr::v4([127, 0, 0, 1], 9).to_string(), "127.0.0.1:9");
    }

    #[test]
    fn in_shard_keeps_the_requested_shard() {
        for s in Shard::all() {
            for r in [0u64, 1, 15, 16, u64::MAX, 0xDEAD_BEEF] {
                assert_eq!(NodeId::in_shard(r, s).shard(), s);
            }
        }
    }

    #[test]
    fn shard_rejects_out_of_range() {
        assert!(Shard::new(15).is_some());
        assert!(Shard::new(16).is_none());
        let mut buf = [0u8; 4];
        let bytes = postcard::to_slice(&16u8, &mut buf).unwrap();
        assert!(postcard::from_bytes::<Shard>(bytes).is_err());
    }

    #[test]
    fn socket_addr_round_trip() {
        let v4: SocketAddr = "127.0.0.1:8000".parse().unwrap();
        assert_eq!(SocketAddr::from(PeerAddr::from(v4)), v4);
        let v6: SocketAddr = "[::1]:9000".parse().unwrap();
        assert_eq!(SocketAddr::from(PeerAddr::from(v6)), v6);
        let mapped: SocketAddr = "[::ffff:127.0.0.1]:7".parse().unwrap();
        assert_eq!(PeerAddr::from(mapped), PeerAddr::v4([127, 0, 0, 1], 7));
        assert_eq!(format!("{}", PeerAddr::from(v6)), "[::1]:9000");
    }

    #[test]
    fn unspecified_ip_takes_the_observed_one() {
        let advertised = PeerAddr::v4([0, 0, 0, 0], 5000);
        let observed = PeerAddr::v4([127, 0, 0, 9], 41234);
        assert_eq!(advertised.or_observed(observed), PeerAddr::v4([127, 0, 0, 9], 5000));
        let fixed = PeerAddr::v4([127, 0, 0, 2], 5000);
        assert_eq!(fixed.or_observed(observed), fixed);
    }
}
