//! Neighbour learning from received IPv4 frames.
//!
//! smoltcp learns a neighbour's Ethernet address only from ARP, sends at
//! most one ARP request per second for the whole interface, and holds a UDP
//! socket's whole transmit queue while the datagram at its head waits for
//! one. A node that answers many peers would spend seconds stalled behind
//! ARP. Yet every datagram a peer on the subnet sends us carries its
//! addresses: this wrapper device notes `(source IP, source MAC)` of each
//! IPv4 frame addressed to us and, the next time smoltcp asks for a frame,
//! hands it a synthetic ARP reply saying so, which fills smoltcp's neighbour
//! cache exactly as a real reply would (smoltcp itself accepts only replies
//! aimed at its own address from its own subnet). A peer is re-announced at
//! most every [`REFRESH`], well within smoltcp's 60 s entry lifetime.
//!
//! For a peer it has never heard from, the stack asks for the address
//! itself ([`Learned::arp_request_for`]) as soon as a datagram to it is
//! queued, one request per peer per [`REQUEST_INTERVAL`], so that resolving
//! many new peers at once (a join, a broadcast) takes one round trip rather
//! than smoltcp's one second per peer.

use smoltcp::phy::{self, Device, DeviceCapabilities};
use smoltcp::time::{Duration, Instant};

/// How often a peer already announced to smoltcp is announced again.
pub const REFRESH: Duration = Duration::from_secs(20);
/// Peers remembered (the least recently announced is forgotten first).
pub const LEARNED: usize = 32;
/// How often an unanswered ARP request for one peer is repeated.
pub const REQUEST_INTERVAL: Duration = Duration::from_millis(500);
/// ARP requests in flight that are remembered.
const REQUESTED: usize = 16;

const ETHERTYPE_IPV4: [u8; 2] = [0x08, 0x00];
const ETHERTYPE_ARP: [u8; 2] = [0x08, 0x06];
/// A synthetic ARP reply, padded to Ethernet's minimum frame.
const ARP_FRAME: usize = 60;

/// What the wrapper has learned and not yet told smoltcp.
#[derive(Clone, Debug)]
pub struct Learned {
    mac: [u8; 6],
    ip: [u8; 4],
    prefix_len: u8,
    gateway: Option<[u8; 4]>,
    announced: heapless::Vec<([u8; 4], Instant), LEARNED>,
    requested: heapless::Vec<([u8; 4], Instant), REQUESTED>,
    pending: Option<([u8; 4], [u8; 6])>,
    now: Instant,
    /// Synthetic replies handed to smoltcp.
    pub injected: u64,
}

impl Learned {
    /// Learning for the interface with Ethernet address `mac` and IPv4
    /// address `ip` in a subnet of `prefix_len` bits, reaching other
    /// subnets through `gateway`.
    pub const fn new(mac: [u8; 6], ip: [u8; 4], prefix_len: u8, gateway: Option<[u8; 4]>) -> Self {
        Learned {
            mac,
            ip,
            prefix_len,
            gateway,
            announced: heapless::Vec::new(),
            requested: heapless::Vec::new(),
            pending: None,
            now: Instant::ZERO,
            injected: 0,
        }
    }

    /// Looks at a received frame; remembers its sender if smoltcp should
    /// hear of it.
    fn observe(&mut self, frame: &[u8]) {
        let (Some(dst), Some(src), Some(ethertype), Some(version), Some(src_ip)) = (
            frame.get(0..6),
            frame.get(6..12),
            frame.get(12..14),
            frame.get(14),
            frame.get(26..30),
        ) else {
            return;
        };
        if ethertype == ETHERTYPE_ARP {
            self.observe_arp(frame);
            return;
        }
        if dst != self.mac || ethertype != ETHERTYPE_IPV4 || version >> 4 != 4 {
            return;
        }
        let (Ok(src), Ok(src_ip)) = (<[u8; 6]>::try_from(src), <[u8; 4]>::try_from(src_ip)) else {
            return;
        };
        // Unicast senders only.
        if src.first().is_some_and(|b| b & 1 == 1) || src_ip == [0; 4] || src_ip == self.ip {
            return;
        }
        let fresh = self.announced.iter().any(|(ip, at)| *ip == src_ip && self.now < *at + REFRESH);
        if !fresh {
            self.pending = Some((src_ip, src));
        }
    }

    /// An ARP packet aimed at us: smoltcp fills its cache from it itself;
    /// note the sender as known so that it is not asked for.
    fn observe_arp(&mut self, frame: &[u8]) {
        let (Some(sender_ip), Some(target_ip)) = (frame.get(28..32), frame.get(38..42)) else {
            return;
        };
        let Ok(sender_ip) = <[u8; 4]>::try_from(sender_ip) else { return };
        if target_ip != self.ip || !self.on_link(sender_ip) {
            return;
        }
        self.remember(sender_ip);
        self.requested.retain(|(ip, _)| *ip != sender_ip);
    }

    fn remember(&mut self, peer_ip: [u8; 4]) {
        if let Some(i) = self.announced.iter().position(|(ip, _)| *ip == peer_ip) {
            self.announced.remove(i);
        } else if self.announced.is_full() {
            self.announced.remove(0);
        }
        let _ = self.announced.push((peer_ip, self.now));
    }

    fn on_link(&self, ip: [u8; 4]) -> bool {
        let bits = u32::from(self.prefix_len.min(32));
        let mask = u32::MAX.checked_shl(32 - bits).unwrap_or(0);
        u32::from_be_bytes(ip) & mask == u32::from_be_bytes(self.ip) & mask
    }

    /// An ARP request to send before a datagram to `ip` is queued at `now`,
    /// if the next hop towards it is not known and was not asked for
    /// recently.
    pub fn arp_request_for(&mut self, ip: [u8; 4], now: Instant) -> Option<[u8; ARP_FRAME]> {
        self.now = now;
        let hop = if self.on_link(ip) { ip } else { self.gateway? };
        let known = self.announced.iter().any(|(a, at)| *a == hop && now < *at + REFRESH);
        let asked = self.requested.iter().any(|(a, at)| *a == hop && now < *at + REQUEST_INTERVAL);
        if known || asked {
            return None;
        }
        self.requested.retain(|(a, _)| *a != hop);
        if self.requested.is_full() {
            self.requested.remove(0);
        }
        let _ = self.requested.push((hop, now));
        Some(arp_frame(ArpOp::Request, self.mac, self.ip, [0xFF; 6], [0; 6], hop))
    }

    /// The synthetic ARP reply to hand smoltcp now, if any.
    #[cfg(test)]
    fn take_injection(&mut self) -> Option<[u8; ARP_FRAME]> {
        let (peer_ip, peer_mac) = self.pending?;
        Some(self.announce(peer_ip, peer_mac))
    }

    /// Records that smoltcp is told of `peer_ip` now; the reply telling it.
    fn announce(&mut self, peer_ip: [u8; 4], peer_mac: [u8; 6]) -> [u8; ARP_FRAME] {
        self.pending = None;
        self.remember(peer_ip);
        self.requested.retain(|(ip, _)| *ip != peer_ip);
        self.injected += 1;
        arp_frame(ArpOp::Reply, peer_mac, peer_ip, self.mac, self.mac, self.ip)
    }
}

#[derive(Clone, Copy)]
enum ArpOp {
    Request = 1,
    Reply = 2,
}

/// An Ethernet frame carrying ARP (RFC 826) from `sender` to `target`, sent
/// to `dst` (broadcast for a request).
fn arp_frame(
    op: ArpOp,
    sender_mac: [u8; 6],
    sender_ip: [u8; 4],
    dst: [u8; 6],
    target_mac: [u8; 6],
    target_ip: [u8; 4],
) -> [u8; ARP_FRAME] {
    let mut f = [0u8; ARP_FRAME];
    let parts: [&[u8]; 11] = [
        &dst,
        &sender_mac,
        &ETHERTYPE_ARP,
        &[0x00, 0x01], // hardware: Ethernet
        &[0x08, 0x00], // protocol: IPv4
        &[6, 4],       // address lengths
        &[0x00, op as u8],
        &sender_mac,
        &sender_ip,
        &target_mac,
        &target_ip,
    ];
    let mut at = 0;
    for part in parts {
        if let Some(dst) = f.get_mut(at..at + part.len()) {
            dst.copy_from_slice(part);
        }
        at += part.len();
    }
    f
}

/// The caller's device seen through the learning table.
pub(crate) struct Learning<'d, D: Device + ?Sized> {
    pub(crate) inner: &'d mut D,
    pub(crate) learned: &'d mut Learned,
}

/// A received frame: the device's, or a synthetic ARP reply.
pub(crate) enum LearnRx<'a, R> {
    Real { inner: R, learned: &'a mut Learned },
    Synthetic([u8; ARP_FRAME]),
}

impl<R: phy::RxToken> phy::RxToken for LearnRx<'_, R> {
    fn consume<T, F: FnOnce(&[u8]) -> T>(self, f: F) -> T {
        match self {
            LearnRx::Real { inner, learned } => inner.consume(|frame| {
                learned.observe(frame);
                f(frame)
            }),
            LearnRx::Synthetic(frame) => f(&frame),
        }
    }

    fn meta(&self) -> phy::PacketMeta {
        match self {
            LearnRx::Real { inner, .. } => inner.meta(),
            LearnRx::Synthetic(_) => phy::PacketMeta::default(),
        }
    }
}

impl<D: Device + ?Sized> Device for Learning<'_, D> {
    type RxToken<'a>
        = LearnRx<'a, D::RxToken<'a>>
    where
        Self: 'a;
    type TxToken<'a>
        = D::TxToken<'a>
    where
        Self: 'a;

    fn receive(&mut self, now: Instant) -> Option<(Self::RxToken<'_>, Self::TxToken<'_>)> {
        self.learned.now = now;
        if let Some((peer_ip, peer_mac)) = self.learned.pending {
            // The ARP reply goes first; without a transmit token (the device
            // is full) nothing is received this time.
            let tx = self.inner.transmit(now)?;
            let frame = self.learned.announce(peer_ip, peer_mac);
            return Some((LearnRx::Synthetic(frame), tx));
        }
        let (rx, tx) = self.inner.receive(now)?;
        Some((LearnRx::Real { inner: rx, learned: &mut *self.learned }, tx))
    }

    fn transmit(&mut self, now: Instant) -> Option<Self::TxToken<'_>> {
        self.inner.transmit(now)
    }

    fn capabilities(&self) -> DeviceCapabilities {
        self.inner.capabilities()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ME: [u8; 6] = [2, 0, 0, 0, 0, 1];
    const PEER: [u8; 6] = [2, 0, 0, 0, 0, 2];

    fn ipv4_frame(dst: [u8; 6], src: [u8; 6], src_ip: [u8; 4]) -> [u8; 42] {
        let mut f = [0u8; 42];
        f[0..6].copy_from_slice(&dst);
        f[6..12].copy_from_slice(&src);
        f[12..14].copy_from_slice(&ETHERTYPE_IPV4);
        f[14] = 0x45;
        f[26..30].copy_from_slice(&src_ip);
        f
    }

    #[test]
    fn learns_a_sender_once_per_refresh() {
        let mut l = Learned::new(ME, [10, 0, 0, 1], 24, None);
        l.observe(&ipv4_frame(ME, PEER, [10, 0, 0, 2]));
        let arp = l.take_injection().expect("a reply to inject");
        assert_eq!(&arp[0..6], &ME);
        assert_eq!(&arp[12..14], &ETHERTYPE_ARP);
        assert_eq!(&arp[20..22], &[0, 2]);
        assert_eq!(&arp[22..28], &PEER);
        assert_eq!(&arp[28..32], &[10, 0, 0, 2]);
        assert_eq!(&arp[38..42], &[10, 0, 0, 1]);
        l.observe(&ipv4_frame(ME, PEER, [10, 0, 0, 2]));
        assert!(l.take_injection().is_none(), "announced again before the refresh");
        l.now += REFRESH;
        l.observe(&ipv4_frame(ME, PEER, [10, 0, 0, 2]));
        assert!(l.take_injection().is_some());
    }

    #[test]
    fn ignores_frames_not_for_us_and_garbage() {
        let mut l = Learned::new(ME, [10, 0, 0, 1], 24, None);
        l.observe(&ipv4_frame(PEER, ME, [10, 0, 0, 3]));
        l.observe(&ipv4_frame(ME, [3, 0, 0, 0, 0, 9], [10, 0, 0, 3]));
        l.observe(&[0xFF; 5]);
        l.observe(&[]);
        assert!(l.take_injection().is_none());
    }

    #[test]
    fn asks_for_unknown_next_hops_once_per_interval() {
        let mut l = Learned::new(ME, [10, 0, 0, 1], 24, Some([10, 0, 0, 254]));
        let t0 = Instant::from_millis(1_000);
        let req = l.arp_request_for([10, 0, 0, 7], t0).expect("a request");
        assert_eq!(&req[0..6], &[0xFF; 6]);
        assert_eq!(&req[20..22], &[0, 1]);
        assert_eq!(&req[28..32], &[10, 0, 0, 1]);
        assert_eq!(&req[38..42], &[10, 0, 0, 7]);
        assert!(l.arp_request_for([10, 0, 0, 7], t0).is_none());
        assert!(l.arp_request_for([10, 0, 0, 7], t0 + REQUEST_INTERVAL).is_some());
        // Off the subnet: the gateway is asked for.
        let via = l.arp_request_for([192, 0, 2, 9], t0).expect("a request for the gateway");
        assert_eq!(&via[38..42], &[10, 0, 0, 254]);
        // Once its reply (aimed at us) has been seen, a peer is known.
        let reply = arp_frame(ArpOp::Reply, PEER, [10, 0, 0, 8], ME, ME, [10, 0, 0, 1]);
        l.observe(&reply);
        assert!(l.arp_request_for([10, 0, 0, 8], t0).is_none());
        assert!(l.pending.is_none(), "smoltcp learns from real ARP itself");
    }
}
