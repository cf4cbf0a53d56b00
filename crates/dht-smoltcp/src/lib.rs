//! Runs a dht-core [`Node`] over any [`smoltcp::phy::Device`]: an Ethernet
//! controller on a microcontroller, an emulator's NIC, a TAP device.
//!
//! [`Stack`] is a smoltcp [`Interface`] with one UDP port. Every datagram of
//! the overlay fits one frame (a fragment travels as pieces no larger than
//! the node's `Config::max_datagram`), so the stack neither fragments nor
//! reassembles IP packets: it has no reassembly or fragmentation buffer,
//! and a lost frame loses one piece, not a whole 8 KB fragment. Give the
//! node the largest datagram a frame carries ([`max_datagram`], 1472 bytes
//! on Ethernet; [`link_config`] does it). It reads no clock: every call
//! takes the time from the caller, as dht-core does.
//!
//! The caller owns every buffer ([`Buffers`] and [`SocketSlots`], each with
//! a `const fn new` so it can be a `static` or live in `main`'s frame). RAM
//! cost, measured in the MPS2 firmware (Cortex-M3, an ARP cache of 32
//! entries as the workspace's `.cargo/config.toml` sets):
//!
//! | buffer | bytes |
//! |--------|-------|
//! | receive payload (`RX`, default [`RX_PAYLOAD`]) | 2 944 |
//! | transmit payload (`TX`, default [`TX_PAYLOAD`]) | 4 992 |
//! | [`SocketSlots`]: [`RX_PACKETS`] + [`TX_PACKETS`] packet metadata, two socket slots | 1 048 |
//! | smoltcp `Interface` (ARP cache, routes, addresses) | 952 |
//! | the [`Stack`] itself (its neighbour learning, see [`learn`]) | about 900 |
//!
//! about 10.8 KB with the defaults (with IP reassembly and fragmentation
//! buffers for 8.3 KB datagrams it was 42 KB), besides the node (whose own
//! transmit buffer is [`dht_core::MAX_DATAGRAM_SIZE`] bytes) and its
//! fragment store.
//!
//! A step of the main loop is [`Stack::service`]: it takes in what the
//! device received one frame at a time, handing each datagram to the node
//! (and answers to the application's own requests to an [`App`]) before
//! the next frame is read, runs the node's and the application's timers,
//! sends what they produced and says when it next needs to run. Frames
//! not yet read wait in the device (a NIC's receive FIFO is the stack's
//! receive queue), so the socket's receive buffer holds one datagram, not
//! a burst. Between steps the caller sleeps until that time or until the
//! device interrupts.
//!
//! Emulators with user-mode networking (QEMU's slirp) put the host's
//! loopback behind the gateway address: a [`Translation`] maps the
//! addresses peers advertise (`127.0.0.1`) to the one that reaches them from
//! inside (`10.0.2.2`) and back.

#![no_std]
#![forbid(unsafe_code)]
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::unimplemented,
    clippy::unreachable
)]
#![cfg_attr(
    test,
    allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)
)]

use core::fmt;

pub mod learn;

use dht_core::driver;
use dht_core::node::{SendError, Transmit};
use dht_core::store::FragmentStore;
use dht_core::{Config, Instant, Node, PeerAddr, MAX_DATAGRAM_SIZE};
use smoltcp::iface::{
    Config as IfaceConfig, Interface, PollIngressSingleResult, SocketHandle, SocketSet,
    SocketStorage,
};
use smoltcp::phy::{self, Device, DeviceCapabilities};
use smoltcp::socket::udp;
use smoltcp::time::{Duration as SmolDuration, Instant as SmolInstant};
use smoltcp::wire::{
    EthernetAddress, HardwareAddress, IpAddress, IpCidr, IpEndpoint, Ipv4Address, Ipv4Cidr,
};

pub use smoltcp;

use learn::{Learned, Learning};

/// The UDP payload of a full Ethernet frame over IPv4 (1500 - 20 - 8):
/// the largest datagram this stack sends or receives on Ethernet.
pub const ETHERNET_PAYLOAD: usize = 1472;
/// Datagrams the receive socket can queue. The stack reads one frame at a
/// time and hands its datagram to the node before it reads the next, so
/// the socket never holds more than one (and a wrap-around marker).
pub const RX_PACKETS: usize = 4;
/// Default payload bytes of the receive socket: two frames' datagrams
/// (one suffices, see [`RX_PACKETS`]).
pub const RX_PAYLOAD: usize = 2 * ETHERNET_PAYLOAD;
/// Datagrams the transmit socket can queue before the stack hands them to
/// the device (a full queue is flushed to the device and the send tried
/// again): a node sends a fragment as up to 16 pieces at once, and one
/// small datagram to each of its neighbors at once (ADDME, LEAVE, a
/// broadcast), while the first may wait for ARP.
pub const TX_PACKETS: usize = 48;
/// Default payload bytes of the transmit socket: two full datagrams and
/// 2 KB of small ones.
pub const TX_PAYLOAD: usize = 2 * ETHERNET_PAYLOAD + 2048;
/// Rounds of smoltcp egress a send waits for room in the transmit buffer
/// (each sends at least one frame).
const FLUSH_ROUNDS: usize = 64;
/// Frames taken in per service step at most, so that a flood cannot keep
/// the node from its timers.
const INGRESS_BUDGET: usize = 256;

/// The payload buffers of a [`Stack`]: `RX` bytes for datagrams received
/// and not yet read, `TX` bytes for datagrams queued to send. Each must
/// hold at least one datagram of the link ([`max_datagram`], 1472 bytes on
/// Ethernet). Owned by the caller:
/// create them with [`Buffers::new`] (a `const fn`) and keep them as long
/// as the stack. They are all zeros, so a `static` of them costs RAM
/// (`.bss`) but no flash.
pub struct Buffers<const RX: usize = RX_PAYLOAD, const TX: usize = TX_PAYLOAD> {
    rx_payload: [u8; RX],
    tx_payload: [u8; TX],
}

impl<const RX: usize, const TX: usize> Buffers<RX, TX> {
    /// Zeroed buffers.
    pub const fn new() -> Self {
        Buffers { rx_payload: [0; RX], tx_payload: [0; TX] }
    }
}

impl<const RX: usize, const TX: usize> Default for Buffers<RX, TX> {
    fn default() -> Self {
        Self::new()
    }
}

/// The socket bookkeeping of a [`Stack`] (packet metadata and socket
/// slots), owned by the caller like [`Buffers`]. Kept apart from them
/// because its initial value is not all zeros: a `static` of it is copied
/// from flash at boot (1 KB on a Cortex-M3), unless it is
/// created at run time in place (`StaticCell::init_with`).
pub struct SocketSlots<'a> {
    rx_meta: [udp::PacketMetadata; RX_PACKETS],
    tx_meta: [udp::PacketMetadata; TX_PACKETS],
    rx_socket: [SocketStorage<'a>; 1],
    tx_socket: [SocketStorage<'a>; 1],
}

impl SocketSlots<'_> {
    /// Empty slots.
    pub const fn new() -> Self {
        SocketSlots {
            rx_meta: [udp::PacketMetadata::EMPTY; RX_PACKETS],
            tx_meta: [udp::PacketMetadata::EMPTY; TX_PACKETS],
            rx_socket: [SocketStorage::EMPTY; 1],
            tx_socket: [SocketStorage::EMPTY; 1],
        }
    }
}

impl Default for SocketSlots<'_> {
    fn default() -> Self {
        Self::new()
    }
}

/// Rewrites addresses between what peers advertise and what reaches them
/// from this interface: datagrams to `outside` go to `inside`, datagrams
/// from `inside` are reported as from `outside` (ports unchanged).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Translation {
    /// The address peers advertise (the host's loopback).
    pub outside: [u8; 4],
    /// The address that reaches them from here (the emulator's gateway).
    pub inside: [u8; 4],
}

impl Translation {
    /// QEMU user-mode networking: the host's `127.0.0.1` is `10.0.2.2`
    /// inside the guest.
    pub const QEMU_USER: Translation =
        Translation { outside: [127, 0, 0, 1], inside: [10, 0, 2, 2] };

    fn outbound(&self, ip: [u8; 4]) -> [u8; 4] {
        if ip == self.outside {
            self.inside
        } else {
            ip
        }
    }

    fn inbound(&self, ip: [u8; 4]) -> [u8; 4] {
        if ip == self.inside {
            self.outside
        } else {
            ip
        }
    }
}

/// How the interface is set up.
#[derive(Clone, Copy, Debug)]
pub struct StackConfig {
    /// The interface's Ethernet address.
    pub mac: [u8; 6],
    /// Its IPv4 address.
    pub address: [u8; 4],
    /// The prefix length of its subnet.
    pub prefix_len: u8,
    /// The default gateway, if peers outside the subnet are to be reached.
    pub gateway: Option<[u8; 4]>,
    /// The UDP port the node listens on.
    pub port: u16,
    /// Address translation for user-mode emulator networking.
    pub translation: Option<Translation>,
}

/// Why the stack could not start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StackError {
    /// The prefix length is not 0 to 32.
    BadPrefix,
    /// The gateway could not be installed as the default route.
    BadGateway,
    /// The UDP socket could not bind the port (port 0?).
    Bind,
}

impl fmt::Display for StackError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            StackError::BadPrefix => "the prefix length must be 0 to 32",
            StackError::BadGateway => "the gateway cannot be the default route",
            StackError::Bind => "the UDP port cannot be bound (0 is not a port)",
        })
    }
}

/// What the stack did, for logs and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StackStats {
    /// Datagrams handed to the node.
    pub received: u64,
    /// Datagrams queued for sending.
    pub sent: u64,
    /// Sends refused (no room in the transmit buffer after flushing, a
    /// datagram larger than a frame carries, or an IPv6 peer this IPv4
    /// stack cannot reach).
    pub send_failed: u64,
}

/// Converts dht-core time to smoltcp time.
pub fn smol_instant(now: Instant) -> SmolInstant {
    SmolInstant::from_micros(i64::try_from(now.total_micros()).unwrap_or(i64::MAX))
}

/// Converts smoltcp time back.
fn dht_instant(at: SmolInstant) -> Instant {
    Instant::from_micros(u64::try_from(at.total_micros()).unwrap_or(0))
}

pub use dht_core::driver::{App, Idle};

/// The largest UDP payload one frame of a device with capabilities `caps`
/// carries over IPv4 (1472 bytes for Ethernet's 1514-byte frames), and at
/// most [`MAX_DATAGRAM_SIZE`]. This stack does not fragment IP packets:
/// the node's `Config::max_datagram` must be no larger (see
/// [`link_config`]), and a larger datagram is refused by the send.
pub fn max_datagram(caps: &DeviceCapabilities) -> usize {
    /// IPv4 header without options, UDP header.
    const HEADERS: usize = 20 + 8;
    caps.ip_mtu().saturating_sub(HEADERS).min(MAX_DATAGRAM_SIZE)
}

/// `config` for a node on `device`: its largest datagram is what one frame
/// carries ([`max_datagram`]), so that every piece of a fragment it asks
/// for or sends fits a frame.
pub fn link_config<D: Device + ?Sized>(mut config: Config, device: &D) -> Config {
    let link = max_datagram(&device.capabilities());
    config.max_datagram = u16::try_from(link).unwrap_or(u16::MAX);
    config
}

/// A smoltcp Ethernet interface with address `mac` on `device`, created at
/// `now`, for [`Stack::new`]. Create it where it will live, for example
/// `IFACE.init_with(|| dht_smoltcp::interface(mac, &mut device, now))` with a
/// `static_cell::StaticCell`.
pub fn interface<D: Device + ?Sized>(mac: [u8; 6], device: &mut D, now: Instant) -> Interface {
    let hw = HardwareAddress::Ethernet(EthernetAddress(mac));
    Interface::new(IfaceConfig::new(hw), device, smol_instant(now))
}

/// A smoltcp interface with the node's UDP port.
///
/// The port has two sockets, each in its own socket set: one that only
/// receives (smoltcp's ingress is run on its set alone) and one that only
/// sends (egress is run on its set alone). The node therefore reads each
/// datagram where smoltcp put it, while it answers through the other
/// socket: no copy of the datagram.
pub struct Stack<'a> {
    iface: &'a mut Interface,
    rx_set: SocketSet<'a>,
    tx_set: SocketSet<'a>,
    rx: SocketHandle,
    tx: SocketHandle,
    translation: Option<Translation>,
    learned: Learned,
    stats: StackStats,
}

impl<'a> Stack<'a> {
    /// Sets up `iface` (see [`interface`]) with the address and route of
    /// `config` and opens the UDP port `config.port`.
    ///
    /// The interface is borrowed rather than owned: it is best created
    /// once, in place, where it is to live (a `static` on a
    /// microcontroller), not moved through the stack.
    pub fn new<const RX: usize, const TX: usize>(
        config: StackConfig,
        iface: &'a mut Interface,
        buffers: &'a mut Buffers<RX, TX>,
        slots: &'a mut SocketSlots<'a>,
    ) -> Result<Self, StackError> {
        if config.prefix_len > 32 {
            return Err(StackError::BadPrefix);
        }
        if config.port == 0 {
            return Err(StackError::Bind);
        }
        let [a, b, c, d] = config.address;
        let cidr = IpCidr::Ipv4(Ipv4Cidr::new(Ipv4Address::new(a, b, c, d), config.prefix_len));
        iface.update_ip_addrs(|addrs| {
            addrs.clear();
            let _ = addrs.push(cidr);
        });
        if let Some([a, b, c, d]) = config.gateway {
            iface
                .routes_mut()
                .add_default_ipv4_route(Ipv4Address::new(a, b, c, d))
                .map_err(|_| StackError::BadGateway)?;
        }
        let Buffers { rx_payload, tx_payload } = buffers;
        let SocketSlots { rx_meta, tx_meta, rx_socket, tx_socket } = slots;
        let none = || udp::PacketBuffer::new(&mut [][..], &mut [][..]);
        let mut receiver =
            udp::Socket::new(udp::PacketBuffer::new(&mut rx_meta[..], &mut rx_payload[..]), none());
        let mut sender =
            udp::Socket::new(none(), udp::PacketBuffer::new(&mut tx_meta[..], &mut tx_payload[..]));
        receiver.bind(config.port).map_err(|_| StackError::Bind)?;
        sender.bind(config.port).map_err(|_| StackError::Bind)?;
        let mut rx_set = SocketSet::new(&mut rx_socket[..]);
        let rx = rx_set.add(receiver);
        let mut tx_set = SocketSet::new(&mut tx_socket[..]);
        let tx = tx_set.add(sender);
        Ok(Stack {
            iface,
            rx_set,
            tx_set,
            rx,
            tx,
            translation: config.translation,
            learned: Learned::new(config.mac, config.address, config.prefix_len, config.gateway),
            stats: StackStats::default(),
        })
    }

    /// What the stack did so far.
    pub fn stats(&self) -> StackStats {
        self.stats
    }

    /// Synthetic ARP replies given to smoltcp (see [`learn`]).
    pub fn neighbors_learned(&self) -> u64 {
        self.learned.injected
    }

    /// Payload bytes waiting in the transmit socket.
    pub fn send_queue(&mut self) -> usize {
        self.tx_set.get_mut::<udp::Socket>(self.tx).send_queue()
    }

    /// The smoltcp interface (addresses, routes).
    pub fn interface(&mut self) -> &mut Interface {
        self.iface
    }

    /// A sink for the node's datagrams at `now` on `device`, for commands
    /// the caller gives the node between service steps (join, leave, an
    /// upload's start).
    pub fn tx<'s, D: Device + ?Sized>(
        &'s mut self,
        now: Instant,
        device: &'s mut D,
    ) -> StackTx<'s, 'a, D> {
        StackTx {
            iface: self.iface,
            sockets: &mut self.tx_set,
            udp: self.tx,
            device: Learning { inner: device, learned: &mut self.learned },
            now: smol_instant(now),
            translation: self.translation,
            stats: &mut self.stats,
        }
    }

    /// One step of the main loop at `now`: takes in what `device` received,
    /// one frame at a time, and hands each datagram to `node` before it
    /// reads the next frame (answers to the application's requests go to
    /// `app`); runs due timers, sends everything queued, and returns when
    /// the next step is due (`None`: only when a frame arrives).
    pub fn service<S, A, D, const N: usize, const DD: usize, const F: usize>(
        &mut self,
        now: Instant,
        device: &mut D,
        node: &mut Node<S, N, DD, F>,
        app: &mut A,
    ) -> Option<Instant>
    where
        S: FragmentStore,
        A: App<S, N, DD, F>,
        D: Device + ?Sized,
    {
        let smol_now = smol_instant(now);
        self.iface.poll_maintenance(smol_now);
        for _ in 0..INGRESS_BUDGET {
            let mut learning = Learning { inner: &mut *device, learned: &mut self.learned };
            let result = self.iface.poll_ingress_single(smol_now, &mut learning, &mut self.rx_set);
            // The frame's datagram is read where smoltcp queued it; the
            // node answers through the transmit socket meanwhile.
            loop {
                let socket = self.rx_set.get_mut::<udp::Socket>(self.rx);
                let Ok((bytes, meta)) = socket.recv() else { break };
                let Some(from) = peer_of(meta.endpoint, self.translation) else { continue };
                self.stats.received += 1;
                let mut tx = StackTx {
                    iface: self.iface,
                    sockets: &mut self.tx_set,
                    udp: self.tx,
                    device: Learning { inner: &mut *device, learned: &mut self.learned },
                    now: smol_now,
                    translation: self.translation,
                    stats: &mut self.stats,
                };
                driver::on_datagram(node, app, now, from, bytes, &mut tx);
            }
            if result == PollIngressSingleResult::None {
                break;
            }
        }
        let wake = {
            let mut tx = self.tx(now, &mut *device);
            let wake = driver::on_timeout(node, app, now, &mut tx);
            tx.flush();
            wake
        };
        let net = self.iface.poll_at(smol_now, &self.tx_set).map(dht_instant);
        [wake, net].into_iter().flatten().min()
    }
}

/// Runs smoltcp's egress until nothing is left to send now (or the device
/// is full).
fn flush<D: Device + ?Sized>(
    iface: &mut Interface,
    sockets: &mut SocketSet<'_>,
    now: SmolInstant,
    device: &mut D,
) {
    for _ in 0..FLUSH_ROUNDS {
        iface.poll_egress(now, device, sockets);
        match iface.poll_delay(now, sockets) {
            Some(delay) if delay == SmolDuration::ZERO => continue,
            _ => return,
        }
    }
}

/// The overlay address of a datagram's sender.
fn peer_of(endpoint: IpEndpoint, translation: Option<Translation>) -> Option<PeerAddr> {
    #[allow(unreachable_patterns)] // IPv6 is compiled out
    let ip = match endpoint.addr {
        IpAddress::Ipv4(v4) => v4.octets(),
        _ => return None,
    };
    let ip = translation.map_or(ip, |t| t.inbound(ip));
    Some(PeerAddr::v4(ip, endpoint.port))
}

/// The node's datagram sink on a [`Stack`]: queues each datagram on the
/// transmit socket, letting smoltcp send earlier ones first when its
/// buffer is full.
pub struct StackTx<'s, 'a, D: Device + ?Sized> {
    iface: &'s mut Interface,
    sockets: &'s mut SocketSet<'a>,
    udp: SocketHandle,
    device: Learning<'s, D>,
    now: SmolInstant,
    translation: Option<Translation>,
    stats: &'s mut StackStats,
}

impl<D: Device + ?Sized> StackTx<'_, '_, D> {
    /// Sends everything queued now (the service step does this anyway).
    pub fn flush(&mut self) {
        flush(self.iface, self.sockets, self.now, &mut self.device);
    }
}

impl<D: Device + ?Sized> Transmit for StackTx<'_, '_, D> {
    fn send(&mut self, to: PeerAddr, datagram: &[u8]) -> Result<(), SendError> {
        let PeerAddr::V4 { ip, port } = to else {
            self.stats.send_failed += 1;
            return Err(SendError);
        };
        if datagram.len() > max_datagram(&self.device.inner.capabilities()) {
            // It would need IP fragmentation, which this stack leaves out.
            self.stats.send_failed += 1;
            return Err(SendError);
        }
        let ip = self.translation.map_or(ip, |t| t.outbound(ip));
        if let Some(request) = self.device.learned.arp_request_for(ip, self.now) {
            // Resolve the next hop now rather than when this datagram
            // reaches the head of the queue (see `learn`).
            if let Some(token) = self.device.inner.transmit(self.now) {
                phy::TxToken::consume(token, request.len(), |buf| buf.copy_from_slice(&request));
            }
        }
        let [a, b, c, d] = ip;
        let endpoint = IpEndpoint::new(IpAddress::Ipv4(Ipv4Address::new(a, b, c, d)), port);
        for attempt in 0..2 {
            let socket = self.sockets.get_mut::<udp::Socket>(self.udp);
            match socket.send_slice(datagram, endpoint) {
                Ok(()) => {
                    self.stats.sent += 1;
                    return Ok(());
                }
                Err(udp::SendError::BufferFull) if attempt == 0 => {
                    flush(self.iface, self.sockets, self.now, &mut self.device)
                }
                Err(_) => break,
            }
        }
        self.stats.send_failed += 1;
        Err(SendError)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use smoltcp::phy::Medium;

    fn caps(medium: Medium, mtu: usize) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = medium;
        caps.max_transmission_unit = mtu;
        caps
    }

    #[test]
    fn the_largest_datagram_is_a_frames_udp_payload_and_at_most_a_dht_datagram() {
        assert_eq!(max_datagram(&caps(Medium::Ethernet, 1514)), ETHERNET_PAYLOAD);
        assert_eq!(max_datagram(&caps(Medium::Ethernet, 9014)), MAX_DATAGRAM_SIZE);
        assert_eq!(max_datagram(&caps(Medium::Ethernet, 20)), 0);
        // The node takes it: a piece of two units fits a 1472-byte datagram.
        let config = Config { max_datagram: ETHERNET_PAYLOAD as u16, ..Config::small() };
        assert_eq!(config.validate(), Ok(()));
    }
}
