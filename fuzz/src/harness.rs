//! What the targets that run a node share: a node with a RAM store and
//! an application beside it ([`dht_core::driver::App`]), a clock, a sink
//! that checks every datagram the node sends, scripted peers that answer
//! as a cooperating network would (echoing the node's cookies, sealing with
//! the network key), and the interpreter of the records of an input.
//!
//! See the crate documentation for the input formats.

use std::collections::VecDeque;
use std::sync::OnceLock;

use dht_core::auth::{NetworkKey, TAG_LEN};
use dht_core::config::MAX_PEERS_PER_MESSAGE;
use dht_core::driver::{self, App};
use dht_core::fragment::FragmentBytes;
use dht_core::id::{NodeId, PeerAddr, PeerInfo, Shard};
use dht_core::node::{Node, SendError, Transmit, UNPROVEN_MIN};
use dht_core::store::{FragmentStore, RamSlot, RamStore};
use dht_core::time::{Duration, Instant};
use dht_core::wire::{
    piece_mask, Cookie, Cookies, HashList, HolderList, Message, MessageKind, NodeStats, Packet,
    PeerList, PieceRef, Source, StoreOutcome, Transmission, ALL_UNITS, PIECE_UNITS, UNIT, UNITS,
};
use dht_core::{FragmentHash, FRAGMENT_SIZE, MAX_DATAGRAM_SIZE};

/// The store of the node under test.
pub type FuzzStore = RamStore<Vec<RamSlot>>;

/// The node under test: small tables (as in dht-core's unit tests) so that
/// full tables are reached quickly, a RAM store.
pub type FuzzNode = Node<FuzzStore, 64, 256, 16>;

/// The key file of the network a keyed input puts the node and its peers
/// on.
pub const NETWORK_SECRET: &[u8] = b"dht-fuzz network";

/// The key of another network: datagrams sealed with it must be dropped.
pub const WRONG_SECRET: &[u8] = b"some other network";

/// The network key of keyed inputs.
pub fn network_key() -> NetworkKey {
    NetworkKey::new(NETWORK_SECRET)
}

/// The key of another network.
pub fn wrong_key() -> NetworkKey {
    NetworkKey::new(WRONG_SECRET)
}

/// Sent datagrams remembered for answers and echoes.
pub const REMEMBERED: usize = 32;

/// Timer wake-ups handled at their own time within one step; after that the
/// clock jumps to the end of the step (a runtime that slept late).
const MAX_WAKES_PER_STEP: usize = 16;

/// Addresses whose latest grant the sink remembers.
const GRANTS: usize = 64;

/// Known fragments of each shard.
pub const KNOWN_PER_SHARD: usize = 4;

/// Fragments the harness (and the corpus) can produce with a valid hash:
/// [`KNOWN_PER_SHARD`] of each shard, shard after shard, so that every
/// node has fragments it should hold.
pub fn known_fragments() -> &'static [(FragmentHash, Box<FragmentBytes>)] {
    static KNOWN: OnceLock<Vec<(FragmentHash, Box<FragmentBytes>)>> = OnceLock::new();
    KNOWN.get_or_init(|| {
        let mut found: Vec<Vec<(FragmentHash, Box<FragmentBytes>)>> = vec![Vec::new(); 16];
        let mut seed = 0u64;
        while found.iter().any(|f| f.len() < KNOWN_PER_SHARD) {
            let mut data = Box::new([0u8; FRAGMENT_SIZE]);
            let mut x = seed;
            for chunk in data.chunks_mut(8) {
                x = splitmix(x);
                chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
            }
            let hash = FragmentHash::of(&data);
            let slot = &mut found[hash.shard().index()];
            if slot.len() < KNOWN_PER_SHARD {
                slot.push((hash, data));
            }
            seed += 1;
        }
        found.into_iter().flatten().collect()
    })
}

/// The first known fragment of `shard` (`shard % 16`).
pub fn known_fragment(shard: u8) -> &'static (FragmentHash, Box<FragmentBytes>) {
    known_fragment_n(shard, 0)
}

/// The `n`-th known fragment of `shard` (`shard % 16`, `n % 4`).
pub fn known_fragment_n(shard: u8, n: u8) -> &'static (FragmentHash, Box<FragmentBytes>) {
    let i = usize::from(shard % 16) * KNOWN_PER_SHARD + usize::from(n) % KNOWN_PER_SHARD;
    &known_fragments()[i]
}

/// The bytes of a known fragment.
pub fn known_data(hash: &FragmentHash) -> Option<&'static FragmentBytes> {
    known_fragments().iter().find(|(h, _)| h == hash).map(|(_, d)| &**d)
}

/// A good 64-bit mix (splitmix64's finaliser).
pub fn splitmix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The clock advance a `step` byte stands for: mantissa `step & 0x0F`
/// times `2^(2 * (step >> 4) + 6)` microseconds, from 0 to about 12 days.
pub fn step_duration(step: u8) -> Duration {
    let mantissa = u64::from(step & 0x0F);
    let exponent = 2 * u32::from(step >> 4) + 6;
    Duration::from_micros(mantissa << exponent)
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The node's own address.
pub const NODE_ADDR: PeerAddr = PeerAddr::v4([127, 0, 0, 1], 10_000);

/// A datagram the node sent, as its addressee got it.
#[derive(Clone, Debug)]
pub struct Sent {
    /// The addressee.
    pub to: PeerAddr,
    /// The datagram without the network key's tag.
    pub body: Vec<u8>,
}

/// What the node sent to one address while it handled a datagram that
/// proved nothing.
#[derive(Clone, Copy, Debug)]
struct Watched {
    addr: PeerAddr,
    datagrams: usize,
    bytes: usize,
}

/// The sink: checks and remembers every datagram the node sends.
pub struct Sink {
    /// The last datagrams sent, oldest first.
    pub sent: VecDeque<Sent>,
    /// Datagrams sent so far (the one after the newest in `sent` has this
    /// number).
    pub delivered: u64,
    /// Whether every 4th datagram is refused.
    pub refuse: bool,
    /// Datagrams offered so far.
    pub count: u64,
    /// The network key, if the node has one.
    pub key: Option<NetworkKey>,
    /// The node's largest datagram (its configuration's `max_datagram`).
    pub max_datagram: usize,
    /// The latest cookie the node granted each address, most recent last.
    grants: VecDeque<(PeerAddr, Cookie)>,
    /// What went where while a datagram that proved nothing was handled.
    watch: Option<Vec<Watched>>,
}

impl Sink {
    /// A sink for a node that sends at most `max_datagram` bytes.
    pub fn new(max_datagram: usize, key: Option<NetworkKey>, refuse: bool) -> Sink {
        Sink {
            sent: VecDeque::new(),
            delivered: 0,
            refuse,
            count: 0,
            key,
            max_datagram,
            grants: VecDeque::new(),
            watch: None,
        }
    }

    /// The latest cookie the node granted `addr`.
    pub fn grant_for(&self, addr: PeerAddr) -> Option<Cookie> {
        self.grants.iter().rev().find(|(a, _)| *a == addr).map(|(_, c)| *c)
    }

    /// The latest cookie the node granted an address other than `addr`.
    pub fn grant_not_for(&self, addr: PeerAddr) -> Option<Cookie> {
        self.grants.iter().rev().find(|(a, _)| *a != addr).map(|(_, c)| *c)
    }

    fn note_grant(&mut self, to: PeerAddr, grant: Cookie) {
        if let Some(i) = self.grants.iter().position(|(a, _)| *a == to) {
            self.grants.remove(i);
        }
        if self.grants.len() == GRANTS {
            self.grants.pop_front();
        }
        self.grants.push_back((to, grant));
    }
}

impl Transmit for Sink {
    fn send(&mut self, to: PeerAddr, datagram: &[u8]) -> Result<(), SendError> {
        assert!(
            datagram.len() <= self.max_datagram,
            "the node sent {} bytes to {to:?}, more than its max_datagram of {}: {}",
            datagram.len(),
            self.max_datagram,
            hex(datagram)
        );
        let body = match &self.key {
            Some(key) => match key.open(datagram) {
                Some(body) => body,
                None => panic!("the node sent a datagram without its key's tag: {}", hex(datagram)),
            },
            None => datagram,
        };
        let packet = match Packet::decode(body) {
            Ok(packet) => packet,
            Err(e) => panic!("the node sent a datagram it cannot decode ({e}): {}", hex(datagram)),
        };
        let Some(grant) = packet.cookies.grant else {
            panic!("the node sent a datagram without a cookie for its addressee: {packet:?}");
        };
        if let Some(watch) = &mut self.watch {
            match watch.iter_mut().find(|w| w.addr == to) {
                Some(w) => {
                    w.datagrams += 1;
                    w.bytes += datagram.len();
                }
                None => watch.push(Watched { addr: to, datagrams: 1, bytes: datagram.len() }),
            }
        }
        self.count += 1;
        if self.refuse && self.count.is_multiple_of(4) {
            return Err(SendError);
        }
        self.note_grant(to, grant);
        if self.sent.len() == REMEMBERED {
            self.sent.pop_front();
        }
        self.sent.push_back(Sent { to, body: body.to_vec() });
        self.delivered += 1;
        Ok(())
    }
}

/// Reads an input; past its end every byte is zero.
pub struct Input<'a>(pub &'a [u8]);

impl<'a> Input<'a> {
    /// The next byte.
    pub fn byte(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&b, rest)) => {
                self.0 = rest;
                b
            }
            None => 0,
        }
    }
    /// The next `len` bytes, or what is left.
    pub fn bytes(&mut self, len: usize) -> &'a [u8] {
        let (head, rest) = self.0.split_at(len.min(self.0.len()));
        self.0 = rest;
        head
    }
    /// Whether the input is used up.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// How a peer's answer is sent (the high bits of a `pick` byte).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Wrinkle {
    /// Without the node's cookie: the answer proves nothing.
    pub unproven: bool,
    /// From another port of the addressee's host: the node's cookie was
    /// for another address.
    pub moved: bool,
    /// Sealed with another network's key (on a keyed network), or padded
    /// with zeros (on an open one).
    pub bad_seal: bool,
}

impl Wrinkle {
    /// The wrinkle of a `pick` byte's bits 5 to 7.
    pub fn of_pick(pick: u8) -> Wrinkle {
        Wrinkle { unproven: pick & 0x20 != 0, moved: pick & 0x40 != 0, bad_seal: pick & 0x80 != 0 }
    }

    /// The bits of a `pick` byte.
    pub fn bits(self) -> u8 {
        u8::from(self.unproven) << 5 | u8::from(self.moved) << 6 | u8::from(self.bad_seal) << 7
    }
}

/// A node, the application beside it, its clock, its sink and its peers.
pub struct Harness<A> {
    /// The node under test.
    pub node: Box<FuzzNode>,
    /// The application driven with it.
    pub app: A,
    /// Where its datagrams go.
    pub sink: Sink,
    /// The clock.
    pub now: Instant,
    /// Fragments the peers serve besides the known ones.
    pub blobs: Vec<(FragmentHash, Box<FragmentBytes>)>,
    /// The node's shard when it was made (the peers' shards follow it).
    shard: u8,
    /// The number of the first sent datagram not yet answered by an
    /// "answer all" record.
    answered: u64,
    buf: Vec<u8>,
}

impl<A: Clone> Clone for Harness<A> {
    fn clone(&self) -> Self {
        Harness {
            node: self.node.clone(),
            app: self.app.clone(),
            sink: Sink {
                sent: self.sink.sent.clone(),
                delivered: self.sink.delivered,
                refuse: self.sink.refuse,
                count: self.sink.count,
                key: self.sink.key.clone(),
                max_datagram: self.sink.max_datagram,
                grants: self.sink.grants.clone(),
                watch: None,
            },
            now: self.now,
            blobs: self.blobs.clone(),
            shard: self.shard,
            answered: self.answered,
            buf: vec![0u8; MAX_DATAGRAM_SIZE],
        }
    }
}

/// The store of `slots` empty fragments.
pub fn store(slots: usize) -> FuzzStore {
    RamStore::new(vec![RamSlot::EMPTY; slots])
}

/// An id in `shard` drawn from `seed`.
pub fn id_in(shard: u8, seed: u16) -> NodeId {
    NodeId::in_shard(splitmix(u64::from(seed)), Shard::new(shard % 16).unwrap_or(Shard::of(0)))
}

impl<A: App<FuzzStore, 64, 256, 16>> Harness<A> {
    /// A harness around `node` (whose shard is `shard`), with `app`; on a
    /// keyed network if `keyed`, with a sink refusing every 4th datagram
    /// if `refuse`.
    pub fn new(mut node: FuzzNode, app: A, keyed: bool, refuse: bool) -> Harness<A> {
        let key = keyed.then(network_key);
        node.set_network_key(key.clone());
        let shard = node.shard().get();
        let max = usize::from(node.config().max_datagram);
        Harness {
            node: Box::new(node),
            app,
            sink: Sink::new(max, key, refuse),
            now: Instant::from_millis(1),
            blobs: Vec::new(),
            shard,
            answered: 0,
            buf: vec![0u8; MAX_DATAGRAM_SIZE],
        }
    }

    /// The same node, clock, sink and peers with another application.
    pub fn with_app<B>(self, app: B) -> Harness<B> {
        Harness {
            node: self.node,
            app,
            sink: self.sink,
            now: self.now,
            blobs: self.blobs,
            shard: self.shard,
            answered: self.answered,
            buf: self.buf,
        }
    }

    /// Whether the node and its peers share a network key.
    pub fn keyed(&self) -> bool {
        self.sink.key.is_some()
    }

    /// The address of peer `i % 8`: 0 and 1 are members of the node's
    /// shard, 2 to 4 of the following shards, 5 an IPv6 mate, 6 an
    /// unspecified IP, 7 the node's own address.
    pub fn peer_addr(&self, i: u8) -> PeerAddr {
        match i % 8 {
            i @ 0..=4 => PeerAddr::v4([127, 0, 0, 1], 10_001 + u16::from(i)),
            5 => PeerAddr::v6([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1], 10_006),
            6 => PeerAddr::v4([0, 0, 0, 0], 10_007),
            _ => NODE_ADDR,
        }
    }

    /// The id a peer at `addr` has: the harness's peers are in fixed
    /// shards, `10.s.n.0` is in shard `s`, anything else in the shard its
    /// address hashes to.
    pub fn identity(&self, addr: PeerAddr) -> NodeId {
        if addr == NODE_ADDR {
            return self.node.id();
        }
        let shard = match addr {
            PeerAddr::V4 { ip: [127, 0, 0, 1], port } if (10_001..=10_005).contains(&port) => {
                // Ports 10001 and 10002 are mates, the others follow.
                let offset = (port - 10_001).saturating_sub(1) as u8;
                (self.shard + offset) % 16
            }
            PeerAddr::V6 { .. } | PeerAddr::V4 { ip: [0, 0, 0, 0], .. } => self.shard,
            PeerAddr::V4 { ip: [10, s, _, _], .. } => s % 16,
            _ => (addr_key(addr) % 16) as u8,
        };
        let shard = Shard::new(shard).unwrap_or(Shard::of(0));
        NodeId::in_shard(splitmix(addr_key(addr)), shard)
    }

    /// The peer at `addr` as it names itself.
    pub fn source(&self, addr: PeerAddr, window: u8, full: bool) -> Source {
        Source { id: self.identity(addr), addr, member: true, window, full }
    }

    /// The peers of a PEERS or holder list: the harness's peers of `shard`
    /// (all of them with `None`), then `extra` made-up members.
    pub fn peers(&self, shard: Option<Shard>, extra: u8) -> Vec<PeerInfo> {
        let mut list = Vec::new();
        for i in 0..6 {
            let addr = self.peer_addr(i);
            let peer = PeerInfo { id: self.identity(addr), addr };
            if shard.is_none_or(|s| s == peer.shard()) {
                list.push(peer);
            }
        }
        for n in 0..extra {
            let s = shard.map_or(n % 16, Shard::get);
            let addr = PeerAddr::v4([10, s, n, 0], 10_000);
            list.push(PeerInfo { id: self.identity(addr), addr });
        }
        list
    }

    /// The bytes of a fragment the peers serve.
    pub fn data_of(&self, hash: &FragmentHash) -> Option<&FragmentBytes> {
        known_data(hash).or_else(|| self.blobs.iter().find(|(h, _)| h == hash).map(|(_, d)| &**d))
    }

    /// `packet` encoded (padded to `min_len`) without a tag.
    pub fn encode(&mut self, packet: &Packet<'_>, min_len: usize) -> Option<Vec<u8>> {
        let len = packet.encode_padded(&mut self.buf, min_len).ok()?;
        Some(self.buf[..len].to_vec())
    }

    /// `body` as the network carries it: with the key's tag on a keyed
    /// network; `bad` seals it with another network's key (keyed) or
    /// appends a tag the node does not expect (open).
    pub fn seal(&self, mut body: Vec<u8>, bad: bool) -> Vec<u8> {
        let key = match (&self.sink.key, bad) {
            (Some(_), true) | (None, true) => Some(wrong_key()),
            (Some(key), false) => Some(key.clone()),
            (None, false) => None,
        };
        if let Some(key) = key {
            let len = body.len();
            body.resize(len + TAG_LEN, 0);
            let _ = key.seal(&mut body, len);
        }
        body
    }

    /// A packet from the harness's peer at `addr` as it would send it: the
    /// node's latest cookie for `addr` echoed, its own granted (without a
    /// tag).
    pub fn packet_from(
        &mut self,
        addr: PeerAddr,
        transmission: Transmission,
        message: Message<'_>,
    ) -> Vec<u8> {
        let cookies = Cookies { echo: self.sink.grant_for(addr), grant: Some(peer_cookie(addr)) };
        let packet = Packet { transmission, source: self.source(addr, 0, false), cookies, message };
        self.encode(&packet, 0).expect("a packet fits a datagram")
    }

    /// Advances the clock by `step`, running the node's and the
    /// application's timers on the way and checking the wake-up invariant
    /// after each.
    pub fn advance(&mut self, step: Duration) {
        let end = self.now + step;
        let mut wakes = 0;
        while let Some(at) = driver::next_timeout(&*self.node, &self.app) {
            if at > end {
                break;
            }
            let t = if wakes >= MAX_WAKES_PER_STEP { end } else { at.max(self.now) };
            self.now = t;
            let next = driver::on_timeout(&mut *self.node, &mut self.app, t, &mut self.sink);
            assert!(
                next.is_none_or(|next| next > t),
                "wake-up invariant broken: after on_timeout({t:?}) the next wake-up is {next:?} \
                 (node: {:?}, application: {:?}, node parts: {:?})",
                self.node.poll_timeout(),
                self.app.poll_timeout(),
                self.node.timeouts()
            );
            wakes += 1;
        }
        self.now = end;
    }

    /// Hands `datagram` (as the network carries it) to the node as if from
    /// `from`, now. A datagram that proves nothing (a bad tag, undecodable,
    /// or no echoed cookie) may make the node send at most one datagram,
    /// no larger than itself, to any one address (its UDP source, or the
    /// source address it names), and none if it is shorter than
    /// `UNPROVEN_MIN`: no amplification towards a forged address. A RETRY
    /// is exempt (it makes the node send again what it kept for its
    /// sender).
    pub fn deliver(&mut self, from: PeerAddr, datagram: &[u8]) {
        let limit = self.unproven_limit(datagram);
        self.sink.watch = limit.map(|_| Vec::new());
        let (node, app, sink) = (&mut *self.node, &mut self.app, &mut self.sink);
        driver::on_datagram(node, app, self.now, from, datagram, sink);
        let watch = self.sink.watch.take();
        let (Some((max_datagrams, max_bytes)), Some(watch)) = (limit, watch) else { return };
        for w in watch {
            assert!(
                w.datagrams <= max_datagrams && w.bytes <= max_bytes,
                "amplification: {} bytes from {from:?} that proved nothing made the node send \
                 {} datagrams of {} bytes to {:?} (at most {max_datagrams} of {max_bytes}): {}",
                datagram.len(),
                w.datagrams,
                w.bytes,
                w.addr,
                hex(datagram)
            );
        }
    }

    /// What the node may send back to the sender of `datagram` if it
    /// certainly proves nothing: (datagrams, bytes).
    fn unproven_limit(&self, datagram: &[u8]) -> Option<(usize, usize)> {
        let body = match &self.sink.key {
            Some(key) => match key.open(datagram) {
                Some(body) => body,
                None => return Some((0, 0)),
            },
            None => datagram,
        };
        let Ok(packet) = Packet::decode(body) else { return Some((0, 0)) };
        if packet.cookies.echo.is_some() || packet.message.kind() == MessageKind::Retry {
            return None;
        }
        if datagram.len() < UNPROVEN_MIN {
            Some((0, 0))
        } else {
            Some((1, datagram.len() + if self.sink.key.is_some() { TAG_LEN } else { 0 }))
        }
    }

    /// The `pick`-th last datagram sent (`pick % 32`), newest first.
    pub fn sent(&self, pick: u8) -> Option<Sent> {
        let n = self.sink.sent.len();
        if n == 0 {
            return None;
        }
        self.sink.sent.get(n - 1 - usize::from(pick & 0x1F) % n).cloned()
    }

    /// Delivers the answer of the addressee of `sent` in `variant` (see
    /// [`Harness::answer`]).
    pub fn answer_sent(&mut self, sent: &Sent, variant: u8, wrinkle: Wrinkle) {
        let from = if wrinkle.moved { sent.to.with_port(sent.to.port() ^ 0x0100) } else { sent.to };
        for body in self.answer(sent, variant, wrinkle) {
            let datagram = self.seal(body, wrinkle.bad_seal);
            self.deliver(from, &datagram);
        }
    }

    /// Answers, in `variant`, every datagram sent since the last time.
    pub fn answer_all(&mut self, variant: u8, wrinkle: Wrinkle) {
        let first = self.answered.max(self.sink.delivered - self.sink.sent.len() as u64);
        let end = self.sink.delivered;
        self.answered = end;
        let base = self.sink.delivered - self.sink.sent.len() as u64;
        let batch: Vec<Sent> =
            (first..end).filter_map(|n| self.sink.sent.get((n - base) as usize).cloned()).collect();
        for sent in batch {
            self.answer_sent(&sent, variant, wrinkle);
        }
    }

    /// The answers (without tags) the addressee of `sent` gives, in the
    /// variant `variant`: bits 0-2 choose among answers, bit 3 sends a
    /// single answer as a broadcast, bit 4 advertises a window of 1 and a
    /// full store. The node's cookie is echoed unless `wrinkle.unproven`.
    pub fn answer(&mut self, sent: &Sent, variant: u8, wrinkle: Wrinkle) -> Vec<Vec<u8>> {
        let Ok(packet) = Packet::decode(&sent.body) else { return Vec::new() };
        let to = sent.to;
        let choice = variant & 7;
        let echo = if wrinkle.unproven { None } else { packet.cookies.grant };
        let cookies = Cookies { echo, grant: Some(peer_cookie(to)) };
        let limited = variant & 16 != 0;
        let source = self.source(to, u8::from(limited), limited);
        let holders = |h: &Harness<A>, hash: &FragmentHash| -> HolderList {
            h.peers(Some(hash.shard()), choice).into_iter().take(4).collect()
        };
        let message = match packet.message {
            Message::Join { shard, .. } => {
                let peers: PeerList =
                    self.peers(shard, choice * 4).into_iter().take(MAX_PEERS_PER_MESSAGE).collect();
                Message::Peers { peers }
            }
            Message::Ping { nonce } => {
                // Now and then naming a peer as dead (the PONG piggyback).
                let dead = self.peers(None, choice).first().map(|p| p.addr);
                Message::Pong { nonce, dead: dead.filter(|_| choice & 4 != 0) }
            }
            Message::Find { shard, nonce } => {
                if choice & 1 == 0 {
                    Message::Pong { nonce, dead: None }
                } else {
                    let peers: PeerList = self
                        .peers(Some(shard), choice * 2)
                        .into_iter()
                        .take(MAX_PEERS_PER_MESSAGE)
                        .collect();
                    Message::Peers { peers }
                }
            }
            Message::FileGet { hash, want, piece_units } => {
                return match self.data_of(&hash).map(|d| Box::new(*d)) {
                    Some(data) if choice != 7 => {
                        self.pieces(source, cookies, &hash, &data, want, piece_units, choice)
                    }
                    _ => {
                        let message = Message::NotFound { hash, holders: holders(self, &hash) };
                        let packet = Packet {
                            transmission: Transmission::Singlecast,
                            source,
                            cookies,
                            message,
                        };
                        self.encode(&packet, 0).into_iter().collect()
                    }
                };
            }
            Message::FileFrag { hash, .. } => {
                const OUTCOMES: [StoreOutcome; 8] = [
                    StoreOutcome::Stored,
                    StoreOutcome::AlreadyHeld,
                    StoreOutcome::Full,
                    StoreOutcome::WrongShard,
                    StoreOutcome::Failed,
                    StoreOutcome::NotHolder,
                    StoreOutcome::Busy,
                    StoreOutcome::Stored,
                ];
                let outcome = OUTCOMES[usize::from(choice)];
                let holders = if outcome == StoreOutcome::NotHolder {
                    holders(self, &hash)
                } else {
                    HolderList::new()
                };
                Message::Stored { hash, outcome, holders }
            }
            Message::NewFile { hash, .. } => {
                const FETCH: [(u16, u8); 4] =
                    [(ALL_UNITS, 4), (ALL_UNITS, 16), (ALL_UNITS, 1), (0x00FF, 8)];
                const REFUSE: [StoreOutcome; 4] = [
                    StoreOutcome::AlreadyHeld,
                    StoreOutcome::NotHolder,
                    StoreOutcome::Full,
                    StoreOutcome::Busy,
                ];
                match FETCH.get(usize::from(choice)) {
                    Some(&(want, piece_units)) => Message::FileGet { hash, want, piece_units },
                    None => {
                        let outcome = REFUSE[usize::from(choice) - 4];
                        let holders = if outcome == StoreOutcome::NotHolder {
                            holders(self, &hash)
                        } else {
                            HolderList::new()
                        };
                        Message::Stored { hash, outcome, holders }
                    }
                }
            }
            Message::Holdings { hashes } => match hashes.first() {
                Some(&hash) if choice & 1 == 0 => Message::FileGet {
                    hash,
                    want: ALL_UNITS,
                    piece_units: PIECE_UNITS[usize::from(choice >> 1)],
                },
                _ => {
                    let mut back = HashList::new();
                    // What a mate holds: known fragments of the shard.
                    for n in 0..choice {
                        let _ = back.push(known_fragment_n(self.shard + n / 4, n).0);
                    }
                    Message::Holdings { hashes: back }
                }
            },
            Message::StatsRequest { nonce, .. } => Message::Stats {
                nonce,
                stats: NodeStats {
                    held: u32::from(choice),
                    capacity: 4,
                    neighbors: 3,
                    joined: true,
                    knows: choice & 1 == 1,
                    ..NodeStats::default()
                },
            },
            Message::ListRequest { nonce, .. } => Message::List {
                nonce,
                page: dht_core::wire::ListPage { held: u32::from(choice), ..Default::default() },
            },
            Message::AddMe | Message::Peers { .. } => Message::AddMe,
            Message::Leave => Message::Leave,
            Message::Dead { peer } => {
                if choice & 1 == 0 {
                    Message::AddMe
                } else {
                    Message::Dead { peer }
                }
            }
            Message::Pong { .. }
            | Message::Stored { .. }
            | Message::NotFound { .. }
            | Message::Stats { .. }
            | Message::List { .. }
            | Message::Retry => Message::Ping { nonce: u64::from(variant) },
        };
        let transmission = if variant & 8 != 0 {
            Transmission::Broadcast { breadth: choice % 3, uid: splitmix(self.sink.count) }
        } else {
            Transmission::Singlecast
        };
        let packet = Packet { transmission, source, cookies, message };
        let min_len = if wrinkle.bad_seal && self.sink.key.is_none() { 128 } else { 0 };
        self.encode(&packet, min_len).into_iter().collect()
    }

    /// The FILEFRAG pieces answering a FILEGET for `want` in pieces of
    /// `piece_units`, as `choice` says: 0 as asked, 1 in reverse order, 2
    /// one unit a piece, 3 the first piece only (the rest lost), 4 pieces of
    /// a whole fragment, 5 the first piece corrupted, 6 every piece twice.
    #[allow(clippy::too_many_arguments)]
    fn pieces(
        &mut self,
        source: Source,
        cookies: Cookies,
        hash: &FragmentHash,
        data: &FragmentBytes,
        want: u16,
        piece_units: u8,
        choice: u8,
    ) -> Vec<Vec<u8>> {
        let units = match choice {
            2 => 1,
            4 => UNITS,
            _ => usize::from(piece_units).clamp(1, UNITS),
        };
        let mut pieces = Vec::new();
        let mut first = 0;
        while first < UNITS {
            if want & piece_mask(first, units) != 0 {
                let end = (first + units).min(UNITS);
                pieces.push((first, end));
            }
            first += units;
        }
        match choice {
            1 => pieces.reverse(),
            3 => pieces.truncate(1),
            6 => pieces = pieces.into_iter().flat_map(|p| [p, p]).collect(),
            _ => {}
        }
        let mut out = Vec::new();
        for (n, (first, end)) in pieces.into_iter().enumerate() {
            let mut bytes = data[first * UNIT..end * UNIT].to_vec();
            if choice == 5 && n == 0 {
                bytes[0] ^= 1;
            }
            let message =
                Message::FileFrag { hash: *hash, first_unit: first as u8, data: PieceRef(&bytes) };
            let packet =
                Packet { transmission: Transmission::Singlecast, source, cookies, message };
            out.extend(self.encode(&packet, 0));
        }
        out
    }

    /// A raw datagram `bytes` from peer `peer`, in `mode` (see the crate
    /// documentation).
    pub fn raw(&mut self, peer: u8, mode: u8, bytes: &[u8]) {
        let from = self.peer_addr(peer);
        let body = match mode & 3 {
            1 | 2 => match Packet::decode(bytes) {
                Ok(mut packet) => {
                    let echo = if mode & 3 == 1 {
                        self.sink.grant_for(from)
                    } else {
                        self.sink.grant_not_for(from)
                    };
                    packet.cookies = Cookies { echo, grant: Some(peer_cookie(from)) };
                    self.encode(&packet, bytes.len()).unwrap_or_else(|| bytes.to_vec())
                }
                Err(_) => bytes.to_vec(),
            },
            _ => bytes.to_vec(),
        };
        let datagram = self.seal(body, mode & 3 == 3);
        self.deliver(from, &datagram);
    }

    /// A sent datagram handed back as if from its addressee: as it is, or
    /// (`as_addressee`) with the addressee as its source and the node's
    /// cookie for it echoed.
    pub fn echo(&mut self, sent: &Sent, as_addressee: bool) {
        let mut body = sent.body.clone();
        if as_addressee {
            if let Ok(mut packet) = Packet::decode(&sent.body) {
                packet.source = self.source(sent.to, 0, false);
                packet.cookies =
                    Cookies { echo: packet.cookies.grant, grant: Some(peer_cookie(sent.to)) };
                if let Some(bytes) = self.encode(&packet, 0) {
                    body = bytes;
                }
            }
        }
        let datagram = self.seal(body, false);
        self.deliver(sent.to, &datagram);
    }

    /// Checks that the store holds only fragments that hash right.
    pub fn check_store(&self) {
        let store = self.node.store();
        for i in 0..store.len() {
            let Some(hash) = store.hash_at(i) else { continue };
            if let Some(data) = store.get(&hash) {
                assert!(hash.verifies(data), "the store holds bytes that do not hash to {hash:?}");
            }
        }
    }
}

/// Runs the records of `input` on `h` until the input ends; `command`
/// runs the target's commands (`0xF0..=0xFF`: `op & 0x0F` and `pick`).
pub fn run_records<A: App<FuzzStore, 64, 256, 16>>(
    h: &mut Harness<A>,
    input: &mut Input<'_>,
    mut command: impl FnMut(&mut Harness<A>, u8, u8),
) {
    while !input.is_empty() {
        let op = input.byte();
        let step = step_duration(input.byte());
        match op {
            0x00..=0xBF => {
                let len = usize::from(u16::from_le_bytes([input.byte(), input.byte()]));
                let bytes = input.bytes(len);
                h.advance(step);
                h.raw(op & 7, op >> 3, bytes);
            }
            0xC0..=0xDF => {
                let pick = input.byte();
                h.advance(step);
                if let Some(sent) = h.sent(pick) {
                    h.answer_sent(&sent, op & 0x1F, Wrinkle::of_pick(pick));
                }
            }
            0xE0..=0xEF => {
                let pick = input.byte();
                h.advance(step);
                if let Some(sent) = h.sent(pick) {
                    h.echo(&sent, op & 1 == 1);
                }
            }
            0xF0..=0xFF => {
                let pick = input.byte();
                h.advance(step);
                command(h, op & 0x0F, pick);
            }
        }
    }
}

/// The cookie the harness's peer at `addr` grants the node.
pub fn peer_cookie(addr: PeerAddr) -> Cookie {
    Cookie(splitmix(addr_key(addr) ^ 0xC00C_1E00).to_le_bytes())
}

fn addr_key(addr: PeerAddr) -> u64 {
    match addr {
        PeerAddr::V4 { ip, port } => {
            u64::from(u32::from_be_bytes(ip)) << 16 | u64::from(port) | 1 << 60
        }
        PeerAddr::V6 { ip, port } => {
            let mut x = u64::from(port) | 2 << 60;
            for chunk in ip.chunks(8) {
                let mut word = [0u8; 8];
                word.copy_from_slice(chunk);
                x = splitmix(x ^ u64::from_be_bytes(word));
            }
            x
        }
    }
}

/// Builds inputs of the targets that run a node (for the corpus
/// generator).
pub struct Script(pub Vec<u8>);

impl Script {
    /// An input starting with `header`.
    pub fn new(header: &[u8]) -> Script {
        Script(header.to_vec())
    }
    /// A datagram from peer `from` (`mode`: see the crate documentation).
    pub fn raw(&mut self, from: u8, mode: u8, step: u8, bytes: &[u8]) -> &mut Self {
        let op = (from & 7) | (mode & 3) << 3;
        let len = u16::try_from(bytes.len()).expect("a datagram below 64 KB");
        self.0.extend_from_slice(&[op, step]);
        self.0.extend_from_slice(&len.to_le_bytes());
        self.0.extend_from_slice(bytes);
        self
    }
    /// The answer to the `pick`-th last datagram sent.
    pub fn answer(&mut self, step: u8, pick: u8, variant: u8) -> &mut Self {
        self.answer_with(step, pick, variant, Wrinkle::default())
    }
    /// The answer to the `pick`-th last datagram sent, with a wrinkle.
    pub fn answer_with(&mut self, step: u8, pick: u8, variant: u8, wrinkle: Wrinkle) -> &mut Self {
        self.0.extend_from_slice(&[0xC0 | (variant & 0x1F), step, (pick & 0x1F) | wrinkle.bits()]);
        self
    }
    /// The `pick`-th last datagram sent, handed back.
    pub fn echo(&mut self, step: u8, pick: u8, as_addressee: bool) -> &mut Self {
        self.0.extend_from_slice(&[0xE0 | u8::from(as_addressee), step, pick]);
        self
    }
    /// A command.
    pub fn command(&mut self, step: u8, command: u8, pick: u8) -> &mut Self {
        self.0.extend_from_slice(&[0xF0 | (command & 0x0F), step, pick]);
        self
    }
    /// Only time passing.
    pub fn wait(&mut self, step: u8) -> &mut Self {
        self.command(step, 0x0F, 0)
    }
}
