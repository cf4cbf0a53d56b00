//! Who may speak, and who listens where: the network key's tag and the
//! address cookies.
//!
//! **Network key.** A network may have a key (a file every node and tool
//! is given, like IPFS's `swarm.key`). With one, every datagram ends with a
//! 16-byte tag, HMAC-SHA256 of everything before it under the key, and a
//! node checks the tag before it decodes anything: a datagram without a
//! valid tag is dropped and counted, never answered. Without a key the
//! network is open, as the original was.
//!
//! **Cookies.** A node answers big (a fragment, a list of peers, its
//! statistics) only to an address that has shown it receives what is sent
//! there, so that nobody can make it send to a victim whose address they
//! forge. Every datagram a node sends carries, in its header, the node's
//! cookie for the receiver's address (`grant`): 8 bytes of HMAC-SHA256 of
//! the address and the current ten-minute period under a secret of the
//! node's own.
//! The receiver echoes the last cookie it got from an address in what it
//! sends there (`echo`); a datagram whose echo is the receiver's cookie for
//! the datagram's UDP source (of this period or the last) is *proven*. To
//! an address that has not proven itself, a node sends at most as many
//! bytes as it received from it (a RETRY that carries a cookie, which the
//! sender repeats its request with), as QUIC's Retry and BitTorrent's
//! tokens do. Keeping no state per address, a node cannot be filled with
//! half-open exchanges.
//!
//! ```
//! use dht_core::auth::{CookieSecret, NetworkKey, TAG_LEN};
//! use dht_core::id::PeerAddr;
//! use dht_core::time::Instant;
//! let key = NetworkKey::new(b"the network's secret");
//! let mut datagram = [0u8; 64];
//! datagram[..5].copy_from_slice(b"hello");
//! let sealed = key.seal(&mut datagram, 5).unwrap();
//! assert_eq!(sealed, 5 + TAG_LEN);
//! assert_eq!(key.open(&datagram[..sealed]), Some(&b"hello"[..]));
//! datagram[0] ^= 1;
//! assert_eq!(key.open(&datagram[..sealed]), None);
//!
//! let secret = CookieSecret::new([7; 32]);
//! let peer = PeerAddr::v4([127, 0, 0, 1], 9000);
//! let now = Instant::from_millis(1_000);
//! let cookie = secret.cookie(peer, now);
//! assert!(secret.check(peer, cookie, now));
//! assert!(!secret.check(PeerAddr::v4([127, 0, 0, 1], 9001), cookie, now));
//! ```

use core::fmt;

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use crate::id::PeerAddr;
use crate::time::{Duration, Instant, Stamp};
use crate::wire::Cookie;

type HmacSha256 = Hmac<Sha256>;

/// Bytes of a network key's tag at the end of a datagram.
pub const TAG_LEN: usize = 16;

/// How long a cookie is valid: the period it was made in and the next.
/// Ten minutes, as BitTorrent's tokens: long enough that neighbors that
/// talk only now and then (a liveness probe, a death notice) still hold
/// each other's cookies; a host that sees another's traffic can use the
/// cookie it sees for that long, which gains it nothing it could not do
/// from where it is.
pub const COOKIE_PERIOD: Duration = Duration::from_secs(600);

/// A network's key: the HMAC state after the key's two blocks, kept so
/// that each tag costs only the datagram's blocks and the finalization
/// (two SHA-256 compressions fewer per datagram, most of the cost for the
/// small ones).
#[derive(Clone)]
pub struct NetworkKey {
    keyed: HmacSha256,
}

impl NetworkKey {
    /// The key of a network whose key file holds `secret` (any bytes; they
    /// are hashed to 32).
    pub fn new(secret: &[u8]) -> Self {
        let key: [u8; 32] = Sha256::digest(secret).into();
        // A key of any length is accepted by HMAC: this cannot fail.
        let keyed = match HmacSha256::new_from_slice(&key) {
            Ok(mac) => mac,
            Err(_) => HmacSha256::new(&Default::default()),
        };
        NetworkKey { keyed }
    }

    fn mac(&self) -> HmacSha256 {
        self.keyed.clone()
    }

    /// The tag of `bytes`.
    pub fn tag(&self, bytes: &[u8]) -> [u8; TAG_LEN] {
        let mut mac = self.mac();
        mac.update(bytes);
        let full = mac.finalize().into_bytes();
        let mut tag = [0u8; TAG_LEN];
        for (t, f) in tag.iter_mut().zip(full.iter()) {
            *t = *f;
        }
        tag
    }

    /// Appends the tag of the first `len` bytes of `buf` after them;
    /// returns the new length, or `None` if `buf` has no room.
    pub fn seal(&self, buf: &mut [u8], len: usize) -> Option<usize> {
        let tag = self.tag(buf.get(..len)?);
        buf.get_mut(len..len + TAG_LEN)?.copy_from_slice(&tag);
        Some(len + TAG_LEN)
    }

    /// The datagram without its tag, if the tag is right (compared in
    /// constant time).
    pub fn open<'a>(&self, datagram: &'a [u8]) -> Option<&'a [u8]> {
        let split = datagram.len().checked_sub(TAG_LEN)?;
        let (body, tag) = datagram.split_at(split);
        let mut mac = self.mac();
        mac.update(body);
        mac.verify_truncated_left(tag).ok().map(|()| body)
    }
}

impl fmt::Debug for NetworkKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("NetworkKey(..)")
    }
}

/// A node's secret for making cookies.
#[derive(Clone)]
pub struct CookieSecret {
    key: [u8; 32],
}

impl CookieSecret {
    /// A secret from 32 random bytes.
    pub const fn new(key: [u8; 32]) -> Self {
        CookieSecret { key }
    }

    fn period(now: Instant) -> u64 {
        now.total_micros() / COOKIE_PERIOD.total_micros()
    }

    fn make(&self, addr: PeerAddr, period: u64) -> Cookie {
        let mut mac = match HmacSha256::new_from_slice(&self.key) {
            Ok(mac) => mac,
            Err(_) => HmacSha256::new(&Default::default()),
        };
        match addr {
            PeerAddr::V4 { ip, port } => {
                mac.update(&[4]);
                mac.update(&ip);
                mac.update(&port.to_be_bytes());
            }
            PeerAddr::V6 { ip, port } => {
                mac.update(&[6]);
                mac.update(&ip);
                mac.update(&port.to_be_bytes());
            }
        }
        mac.update(&period.to_be_bytes());
        let full = mac.finalize().into_bytes();
        let mut cookie = [0u8; 8];
        for (c, f) in cookie.iter_mut().zip(full.iter()) {
            *c = *f;
        }
        Cookie(cookie)
    }

    /// The cookie for `addr` at `now`.
    pub fn cookie(&self, addr: PeerAddr, now: Instant) -> Cookie {
        self.make(addr, Self::period(now))
    }

    /// Whether `cookie` is this node's cookie for `addr`, of this period or
    /// the last.
    pub fn check(&self, addr: PeerAddr, cookie: Cookie, now: Instant) -> bool {
        let period = Self::period(now);
        self.make(addr, period) == cookie
            || period.checked_sub(1).is_some_and(|p| self.make(addr, p) == cookie)
    }
}

impl fmt::Debug for CookieSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CookieSecret(..)")
    }
}

/// The cookies other nodes gave this one, for up to `N` addresses (the
/// least recently used is forgotten first). An entry is made when this node
/// sends to an address, and filled when the address answers with a grant,
/// so a forged datagram cannot plant a cookie for an address this node
/// never spoke to.
#[derive(Clone, Debug)]
pub struct CookieJar<const N: usize> {
    /// Address, its cookie, when this node last spoke to it, when the
    /// cookie came.
    /// (Stamps, not instants: 40 bytes an entry instead of 48.)
    entries: heapless::Vec<(PeerAddr, Option<Cookie>, Stamp, Stamp), N>,
}

impl<const N: usize> CookieJar<N> {
    /// An empty jar.
    pub const fn new() -> Self {
        CookieJar { entries: heapless::Vec::new() }
    }

    /// The cookie to echo to `to`, if it gave one; remembers that this node
    /// spoke to `to` at `now`.
    pub fn echo_for(&mut self, to: PeerAddr, now: Instant) -> Option<Cookie> {
        if let Some(entry) = self.entries.iter_mut().find(|e| e.0 == to) {
            // A cookie is valid for a period or two; one not refreshed for
            // a period is likely stale (its node restarted, or changed
            // period): better to be asked for a new one.
            // (An age that wrapped, 49.7 days, comes out short: the
            // cookie is tried, and a RETRY brings a fresh one.)
            if entry.3.age(now) >= COOKIE_PERIOD {
                entry.1 = None;
            }
            entry.2 = Stamp::of(now);
            return entry.1;
        }
        let fresh = (to, None, Stamp::of(now), Stamp::of(now));
        if self.entries.push(fresh).is_err() {
            let oldest = self.entries.iter_mut().min_by_key(|e| core::cmp::Reverse(e.2.age(now)));
            if let Some(slot) = oldest {
                *slot = fresh;
            }
        }
        None
    }

    /// `from` granted `cookie`: kept if this node spoke to `from`, or if
    /// the datagram was `proven` (then `from` listens where it says).
    pub fn keep(&mut self, from: PeerAddr, cookie: Cookie, proven: bool, now: Instant) {
        if let Some(entry) = self.entries.iter_mut().find(|e| e.0 == from) {
            entry.1 = Some(cookie);
            entry.3 = Stamp::of(now);
        } else if proven {
            let _ = self.echo_for(from, now);
            self.keep(from, cookie, false, now);
        }
    }

    /// Forgets the cookie of `addr` (it was refused: a stale one).
    pub fn forget(&mut self, addr: PeerAddr) {
        if let Some(entry) = self.entries.iter_mut().find(|e| e.0 == addr) {
            entry.1 = None;
        }
    }
}

/// Where a node keeps the cookies others gave it (see [`CookieJar`]).
pub trait CookieStore {
    /// The cookie to echo to `to`; remembers that this node spoke to it.
    fn echo_for(&mut self, to: PeerAddr, now: Instant) -> Option<Cookie>;
    /// `from` granted `cookie` (see [`CookieJar::keep`]).
    fn keep(&mut self, from: PeerAddr, cookie: Cookie, proven: bool, now: Instant);
    /// Forgets the cookie of `addr`.
    fn forget(&mut self, addr: PeerAddr);
}

impl<const N: usize> CookieStore for CookieJar<N> {
    fn echo_for(&mut self, to: PeerAddr, now: Instant) -> Option<Cookie> {
        CookieJar::echo_for(self, to, now)
    }
    fn keep(&mut self, from: PeerAddr, cookie: Cookie, proven: bool, now: Instant) {
        CookieJar::keep(self, from, cookie, proven, now)
    }
    fn forget(&mut self, addr: PeerAddr) {
        CookieJar::forget(self, addr)
    }
}

impl<const N: usize> Default for CookieJar<N> {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(port: u16) -> PeerAddr {
        PeerAddr::v4([127, 0, 0, 1], port)
    }

    #[test]
    fn a_cookie_lasts_its_period_and_the_next() {
        let secret = CookieSecret::new([1; 32]);
        let made = Instant::from_millis(300_000);
        let cookie = secret.cookie(peer(1), made);
        assert!(secret.check(peer(1), cookie, Instant::from_millis(1_100_000)));
        assert!(!secret.check(peer(1), cookie, Instant::from_millis(1_200_000)));
        assert!(!secret.check(peer(2), cookie, made), "another port, another cookie");
        let other = CookieSecret::new([2; 32]);
        assert!(!other.check(peer(1), cookie, made), "another node, another cookie");
    }

    #[test]
    fn a_tag_covers_every_byte_and_a_short_datagram_is_refused() {
        let key = NetworkKey::new(b"k");
        let mut buf = [0u8; 40];
        buf[..20].copy_from_slice(&[9; 20]);
        let len = key.seal(&mut buf, 20).unwrap();
        for i in 0..len {
            let mut bad = buf;
            bad[i] ^= 0x80;
            assert_eq!(key.open(&bad[..len]), None, "byte {i}");
        }
        assert_eq!(key.open(&buf[..len]), Some(&buf[..20]));
        assert_eq!(key.open(&buf[..5]), None);
        assert_eq!(NetworkKey::new(b"other").open(&buf[..len]), None);
        assert_eq!(key.seal(&mut buf, 30), None, "no room for the tag");
    }

    #[test]
    fn the_jar_keeps_grants_only_from_addresses_spoken_to_or_proven() {
        let mut jar = CookieJar::<2>::new();
        let now = Instant::ZERO;
        let c = Cookie([5; 8]);
        jar.keep(peer(1), c, false, now);
        assert_eq!(jar.echo_for(peer(1), now), None, "a stranger's grant is not kept");
        jar.keep(peer(1), c, false, now);
        assert_eq!(jar.echo_for(peer(1), now), Some(c), "kept once we spoke to it");
        jar.keep(peer(2), c, true, now);
        assert_eq!(jar.echo_for(peer(2), now), Some(c), "a proven grant is kept");
        let later = Instant::from_millis(5);
        let _ = jar.echo_for(peer(3), later); // evicts the least recently used
        assert_eq!(jar.echo_for(peer(1), later), None);
        jar.forget(peer(2));
        assert_eq!(jar.echo_for(peer(2), later), None);
    }
}
