//! The std runtime of the DHT tools: everything `dhtnode`, `dhtsend`,
//! `dhtrecv` and `dhtping` share, and nothing of the protocol.
//!
//! * [`transport`]: a [`dht_core::Transmit`] sink on a `std::net::UdpSocket`;
//! * [`store`]: a [`dht_core::store::FragmentStore`] on a directory, one file
//!   per fragment, written under a temporary name and renamed;
//! * [`identity`]: the node id kept in the store directory;
//! * [`key`]: network key files;
//! * [`runtime`]: the single-threaded event loop that sleeps until the next
//!   datagram or the core's next timeout, and ends on SIGINT/SIGTERM;
//! * [`client`]: joining as a client, uploading, downloading, pinging;
//! * [`logger`]: a small stderr logger behind the `log` facade.
//!
//! The protocol decisions (who to ask, when to retry, what to store) all
//! stay in `dht-core`; this crate moves bytes between the core, the socket,
//! the disk and the clock.

pub mod client;
pub mod identity;
pub mod key;
pub mod logger;
pub mod runtime;
pub mod store;
pub mod transport;

pub use runtime::{Clock, Runtime, Stop};
pub use store::DirStore;
pub use transport::UdpTransport;

/// A seed for the core's generator: 8 bytes of `/dev/urandom`, or, if that
/// cannot be read, the time and process id mixed.
pub fn random_seed() -> u64 {
    use std::io::Read;
    let mut bytes = [0u8; 8];
    if std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes)).is_ok() {
        return u64::from_le_bytes(bytes);
    }
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let mut rng = dht_core::rand::Rng::new(nanos ^ (u64::from(std::process::id()) << 32));
    rng.next_u64()
}
