//! The checks of the fuzz targets ([`check_decode`], [`check_index`],
//! [`run_node`]: each target is one call), and what the corpus generator
//! (`examples/corpus.rs`) shares with them: the fragments the node harness
//! knows, the harness itself, and a builder for its input format. Keeping
//! the checks here lets `cargo test` replay the committed corpus
//! (`tests/corpus.rs`) without libFuzzer.
//!
//! # The `node` input format
//!
//! A header of 4 bytes (missing bytes read as zero), then records until the
//! input ends. A record cut short by the end of the input reads the missing
//! bytes as zero (a datagram is cut to what is left).
//!
//! Header:
//!
//! | byte | meaning |
//! |-----:|---------|
//! | 0 | bits 0-1: 0 member, 1 client, 2 small member, 3 member that may choose its shard on join; bit 2: join through peer 0 first; bit 3: the sink refuses every 4th datagram; bits 4-6: store slots (0..=7); bit 7: the original's replication (every mate holds every fragment, NEWFILE flooded with breadth 2) |
//! | 1 | the node's shard (low 4 bits) |
//! | 2, 3 | the rest of the node's id |
//!
//! Records (`op` is the first byte; `step` advances the clock, see
//! [`step_duration`], and the node's timers due meanwhile fire first):
//!
//! | op | bytes after op | what |
//! |---:|----------------|------|
//! | `0x00..=0xBF` | step, len (u16 LE), len bytes | a datagram from peer `op % 8` ([`Harness::peer_addr`]) |
//! | `0xC0..=0xDF` | step, pick | the answer a peer would give to a datagram the node sent (`pick`: which of the last 32, newest first; `op & 0x1F`: variant, see [`Harness::answer`]) |
//! | `0xE0..=0xEF` | step, pick | a sent datagram handed back as if from its addressee (odd `op`: with the addressee as its source) |
//! | `0xF0..=0xFF` | step, pick | a command: `op & 0x0F` is 0 leave, 1 join, 2 discover a shard, 3 ping or find, 4 ask for stats, 5 FILEGET, 6 store a fragment, 7 broadcast a NEWFILE, 8 allow choosing the shard, anything else nothing (a pure wait) |
//!
//! After every input the harness checks the wake-up invariant of
//! `dht_core::node`: after `handle_timeout(t)` with `t >= poll_timeout()`,
//! `poll_timeout()` is later than `t` or `None`. Every datagram the node
//! sends must decode and fit in `MAX_DATAGRAM_SIZE`.

use std::collections::VecDeque;
use std::sync::OnceLock;

use dht_core::config::{Announce, Config, Replication, MAX_PEERS_PER_MESSAGE};
use dht_core::fragment::FragmentBytes;
use dht_core::id::{NodeId, PeerAddr, PeerInfo, Shard};
use dht_core::index::{fragment_layout, IndexFragment};
use dht_core::node::{Node, SendError, Transmit};
use dht_core::store::{RamSlot, RamStore};
use dht_core::time::{Duration, Instant};
use dht_core::wire::{
    encode_filefrag_header, FragMode, FragmentRef, HashList, HolderList, Message, NodeStats,
    Packet, PeerList, Source, StoreOutcome, Transmission,
};
use dht_core::{FragmentHash, FRAGMENT_SIZE, MAX_DATAGRAM_SIZE};

/// The node under test: small tables (as in dht-core's unit tests) so that
/// full tables are reached quickly, a RAM store.
pub type FuzzNode = Node<RamStore<Vec<RamSlot>>, 64, 256, 16>;

/// Sent datagrams remembered for answers and echoes.
const REMEMBERED: usize = 32;

/// Timer wake-ups handled at their own time within one step; after that the
/// clock jumps to the end of the step (a runtime that slept late).
const MAX_WAKES_PER_STEP: usize = 16;

/// Fragments the harness (and the corpus) can produce with a valid hash:
/// one per shard, so that every node has fragments it should hold.
pub fn known_fragments() -> &'static [(FragmentHash, Box<FragmentBytes>)] {
    static KNOWN: OnceLock<Vec<(FragmentHash, Box<FragmentBytes>)>> = OnceLock::new();
    KNOWN.get_or_init(|| {
        let mut found: Vec<Option<(FragmentHash, Box<FragmentBytes>)>> = vec![None; 16];
        let mut seed = 0u64;
        while found.iter().any(Option::is_none) {
            let mut data = Box::new([0u8; FRAGMENT_SIZE]);
            let mut x = seed;
            for chunk in data.chunks_mut(8) {
                x = splitmix(x);
                chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
            }
            let hash = FragmentHash::of(&data);
            let slot = &mut found[hash.shard().index()];
            if slot.is_none() {
                *slot = Some((hash, data));
            }
            seed += 1;
        }
        found.into_iter().flatten().collect()
    })
}

/// The known fragment of `shard`.
pub fn known_fragment(shard: u8) -> &'static (FragmentHash, Box<FragmentBytes>) {
    &known_fragments()[usize::from(shard % 16)]
}

fn known_data(hash: &FragmentHash) -> Option<&'static FragmentBytes> {
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

/// The node's own address.
pub const NODE_ADDR: PeerAddr = PeerAddr::v4([127, 0, 0, 1], 10_000);

/// The sink: checks and remembers every datagram the node sends.
#[derive(Default)]
pub struct Sink {
    /// The last datagrams sent, oldest first, with their addressee.
    pub sent: VecDeque<(PeerAddr, Vec<u8>)>,
    /// Whether every 4th datagram is refused.
    pub refuse: bool,
    /// Datagrams offered so far.
    pub count: u64,
}

impl Transmit for Sink {
    fn send(&mut self, to: PeerAddr, datagram: &[u8]) -> Result<(), SendError> {
        assert!(
            datagram.len() <= MAX_DATAGRAM_SIZE,
            "the node sent {} bytes, more than MAX_DATAGRAM_SIZE",
            datagram.len()
        );
        if let Err(e) = Packet::decode(datagram) {
            panic!("the node sent a datagram it cannot decode ({e}): {}", hex(datagram));
        }
        self.count += 1;
        if self.refuse && self.count.is_multiple_of(4) {
            return Err(SendError);
        }
        if self.sent.len() == REMEMBERED {
            self.sent.pop_front();
        }
        self.sent.push_back((to, datagram.to_vec()));
        Ok(())
    }
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Reads the fuzz input; past its end every byte is zero.
struct Input<'a>(&'a [u8]);

impl<'a> Input<'a> {
    fn byte(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&b, rest)) => {
                self.0 = rest;
                b
            }
            None => 0,
        }
    }
    fn bytes(&mut self, len: usize) -> &'a [u8] {
        let (head, rest) = self.0.split_at(len.min(self.0.len()));
        self.0 = rest;
        head
    }
}

/// A node, its clock and its sink.
pub struct Harness {
    /// The node under test.
    pub node: Box<FuzzNode>,
    /// Where its datagrams go.
    pub sink: Sink,
    /// The clock.
    pub now: Instant,
    shard: u8,
    buf: Vec<u8>,
}

impl Harness {
    /// A node as the header bytes say.
    pub fn new(header: [u8; 4]) -> Harness {
        let [flags, shard, id_a, id_b] = header;
        let mut config = match flags & 3 {
            0 | 3 => Config::member(),
            1 => Config::client(),
            _ => Config::small(),
        };
        if flags & 0x80 != 0 {
            config.replication = Replication::WholeShard;
            config.announce = Announce::Flood { breadth: 2 };
        }
        let shard = shard % 16;
        let id = NodeId::in_shard(
            splitmix(u64::from(u16::from_le_bytes([id_a, id_b]))),
            Shard::new(shard).unwrap_or(Shard::of(0)),
        );
        let slots = usize::from((flags >> 4) & 7);
        let store = RamStore::new(vec![RamSlot::EMPTY; slots]);
        let seed = u64::from_le_bytes([flags, shard, id_a, id_b, 1, 2, 3, 4]);
        let node = Node::new(config, id, NODE_ADDR, seed, store).expect("a valid configuration");
        let mut harness = Harness {
            node: Box::new(node),
            sink: Sink { refuse: flags & 8 != 0, ..Sink::default() },
            now: Instant::from_millis(1),
            shard,
            buf: vec![0u8; MAX_DATAGRAM_SIZE],
        };
        if flags & 3 == 3 {
            harness.node.choose_shard_on_join(true);
        }
        if flags & 4 != 0 {
            let seed = harness.peer_addr(0);
            harness.node.join(harness.now, seed, &mut harness.sink);
            harness.drain();
        }
        harness
    }

    /// The address of peer `i % 8`: 0 and 1 are members of the node's
    /// shard, 2 to 4 of others, 5 an IPv6 mate, 6 an unspecified IP, 7 the
    /// node's own address.
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
    pub fn source(&self, addr: PeerAddr, window: u8) -> Source {
        Source { id: self.identity(addr), addr, member: true, window }
    }

    /// Peers for a PEERS or holder list: the harness's peers of `shard`
    /// (all of them with `None`), then `extra` made-up members.
    fn peers(&self, shard: Option<Shard>, extra: u8) -> Vec<PeerInfo> {
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

    /// Advances the clock by `step`, firing the node's timers on the way and
    /// checking the wake-up invariant after each.
    pub fn advance(&mut self, step: Duration) {
        let end = self.now + step;
        let mut wakes = 0;
        while let Some(at) = self.node.poll_timeout() {
            if at > end {
                break;
            }
            let t = if wakes >= MAX_WAKES_PER_STEP { end } else { at.max(self.now) };
            self.now = t;
            self.node.handle_timeout(t, &mut self.sink);
            self.drain();
            let next = self.node.poll_timeout();
            assert!(
                next.is_none_or(|next| next > t),
                "wake-up invariant broken: after handle_timeout({t}) poll_timeout() is {next:?}"
            );
            wakes += 1;
        }
        self.now = end;
    }

    /// Hands `bytes` to the node as if from `from`, now.
    pub fn deliver(&mut self, from: PeerAddr, bytes: &[u8]) {
        let _reply = self.node.handle_datagram(self.now, from, bytes, &mut self.sink);
        self.drain();
    }

    fn drain(&mut self) {
        while self.node.poll_event().is_some() {}
    }

    /// The `pick`-th last datagram sent, newest first.
    fn sent(&self, pick: u8) -> Option<(PeerAddr, Vec<u8>)> {
        let n = self.sink.sent.len();
        if n == 0 {
            return None;
        }
        self.sink.sent.get(n - 1 - usize::from(pick) % n).cloned()
    }

    /// The answer the addressee of `datagram` would give, in the variant
    /// `variant` (bits 0-2 choose among answers, bit 3 sends it as a
    /// broadcast, bit 4 advertises a window of 1).
    pub fn answer(&mut self, to: PeerAddr, datagram: &[u8], variant: u8) -> Option<Vec<u8>> {
        let packet = Packet::decode(datagram).ok()?;
        let choice = variant & 7;
        let holders = |h: &Harness, hash: &FragmentHash| -> HolderList {
            h.peers(Some(hash.shard()), choice).into_iter().take(4).collect()
        };
        let message = match packet.message {
            Message::Join { shard, .. } => {
                let peers: PeerList =
                    self.peers(shard, choice * 4).into_iter().take(MAX_PEERS_PER_MESSAGE).collect();
                Message::Peers { peers }
            }
            Message::Ping { nonce } => Message::Pong { nonce },
            Message::Find { shard, nonce } => {
                if choice & 1 == 0 {
                    Message::Pong { nonce }
                } else {
                    let peers: PeerList = self
                        .peers(Some(shard), choice)
                        .into_iter()
                        .take(MAX_PEERS_PER_MESSAGE)
                        .collect();
                    Message::Peers { peers }
                }
            }
            Message::FileGet { hash } => match known_data(&hash) {
                Some(data) if choice != 7 => {
                    let mode = if choice == 6 { FragMode::Store } else { FragMode::Answer };
                    Message::FileFrag { mode, hash, data: FragmentRef(data) }
                }
                _ => Message::NotFound { hash, holders: holders(self, &hash) },
            },
            Message::FileFrag { mode: FragMode::Store, hash, .. } => {
                const OUTCOMES: [StoreOutcome; 6] = [
                    StoreOutcome::Stored,
                    StoreOutcome::AlreadyHeld,
                    StoreOutcome::Full,
                    StoreOutcome::WrongShard,
                    StoreOutcome::Failed,
                    StoreOutcome::NotHolder,
                ];
                let outcome = OUTCOMES[usize::from(choice) % OUTCOMES.len()];
                let holders = if outcome == StoreOutcome::NotHolder {
                    holders(self, &hash)
                } else {
                    HolderList::new()
                };
                Message::Stored { hash, outcome, holders }
            }
            Message::NewFile { hash } => Message::FileGet { hash },
            Message::Holdings { hashes } => match hashes.first() {
                Some(&hash) if choice & 1 == 0 => Message::FileGet { hash },
                _ => {
                    let mut back = HashList::new();
                    for (hash, _) in known_fragments().iter().take(usize::from(choice) * 4) {
                        let _ = back.push(*hash);
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
            Message::AddMe | Message::Peers { .. } => Message::AddMe,
            Message::Leave => Message::Leave,
            Message::Dead { peer } => {
                if choice & 1 == 0 {
                    Message::AddMe
                } else {
                    Message::Dead { peer }
                }
            }
            Message::FileFrag { mode: FragMode::Answer, .. }
            | Message::Pong { .. }
            | Message::Stored { .. }
            | Message::NotFound { .. }
            | Message::Stats { .. } => Message::Ping { nonce: u64::from(variant) },
        };
        let transmission = if variant & 8 != 0 {
            Transmission::Broadcast { breadth: choice % 3, uid: splitmix(self.sink.count) }
        } else {
            Transmission::Singlecast
        };
        let window = if variant & 16 != 0 { 1 } else { 0 };
        let reply = Packet { transmission, source: self.source(to, window), message };
        let len = reply.encode(&mut self.buf).ok()?;
        Some(self.buf[..len].to_vec())
    }

    /// Runs one command (see the module documentation).
    fn command(&mut self, op: u8, pick: u8) {
        let now = self.now;
        let peer = self.peer_addr(pick);
        let (hash, data) = known_fragment(pick >> 3);
        match op & 0x0F {
            0 => self.node.leave(now, &mut self.sink),
            1 => self.node.join(now, peer, &mut self.sink),
            2 => {
                let shard = Shard::of(u64::from(pick));
                self.node.discover_shard(now, shard, usize::from(pick >> 4) % 4, &mut self.sink)
            }
            3 => {
                let transmission = match pick >> 6 {
                    0 => Transmission::Singlecast,
                    1 => Transmission::Randomcast { hops: pick & 3 },
                    _ => Transmission::Broadcast { breadth: pick & 3, uid: u64::from(pick) },
                };
                let find = (pick & 32 != 0).then(|| Shard::of(u64::from(pick)));
                let _ = self.node.ping(peer, transmission, find, &mut self.sink);
            }
            4 => {
                let about = (pick & 8 != 0).then(|| self.peer_addr(pick >> 4));
                self.node.request_stats(peer, about, u64::from(pick), &mut self.sink)
            }
            5 => {
                let _ = self.node.send_fileget(peer, *hash, &mut self.sink);
            }
            6 => {
                let corrupt = pick & 0x80 != 0;
                let fill = |body: &mut FragmentBytes| {
                    body.copy_from_slice(&data[..]);
                    if corrupt {
                        body[0] ^= 1;
                    }
                    true
                };
                let _ = self.node.send_fragment(peer, *hash, fill, &mut self.sink);
            }
            7 => {
                let _ = self.node.broadcast(
                    pick & 3,
                    &Message::NewFile { hash: *hash },
                    &mut self.sink,
                );
            }
            8 => self.node.choose_shard_on_join(pick & 1 == 1),
            _ => {}
        }
        self.drain();
    }
}

/// The `decode` target: `Packet::decode` must not panic, and a packet it
/// accepts must encode and decode again to the same value. Values are
/// compared, not bytes: the wire accepts some non-canonical forms (postcard
/// takes over-long varints, such as `0x8d 0x00` for 13), so the
/// re-encoding may differ from the input. A FILEFRAG must also encode the
/// same through `encode_filefrag_header`.
pub fn check_decode(data: &[u8]) {
    let Ok(packet) = Packet::decode(data) else { return };
    let mut buf = vec![0u8; data.len().max(MAX_DATAGRAM_SIZE) + 16];
    let len = match packet.encode(&mut buf) {
        Ok(len) => len,
        Err(e) => panic!("a decoded packet does not encode ({e}): {packet:?}"),
    };
    let again = match Packet::decode(&buf[..len]) {
        Ok(again) => again,
        Err(e) => panic!("a re-encoded packet does not decode ({e}): {packet:?}"),
    };
    assert_eq!(again, packet, "the round trip changes the packet");
    // A node writes a FILEFRAG as encode_filefrag_header plus the fragment
    // read straight from its store, promised byte-identical to encode.
    if let Message::FileFrag { mode, hash, data } = &packet.message {
        let mut direct = vec![0u8; 2 * MAX_DATAGRAM_SIZE];
        let head =
            encode_filefrag_header(packet.transmission, packet.source, *mode, hash, &mut direct)
                .expect("a FILEFRAG header fits a datagram buffer");
        direct[head..head + FRAGMENT_SIZE].copy_from_slice(data.0);
        assert!(
            direct[..head + FRAGMENT_SIZE] == buf[..len],
            "encode_filefrag_header and Packet::encode disagree on {packet:?}"
        );
    }
}

/// The `index` target: `data` cut or zero-padded to 8192 bytes;
/// `IndexFragment::decode` must not panic, and an index it accepts must
/// re-encode to exactly the same bytes (one file, one address).
pub fn check_index(data: &[u8]) {
    let mut bytes = [0u8; FRAGMENT_SIZE];
    let n = data.len().min(FRAGMENT_SIZE);
    bytes[..n].copy_from_slice(&data[..n]);
    let Ok(index) = IndexFragment::decode(&bytes) else { return };
    let mut again = [0u8; FRAGMENT_SIZE];
    index.encode(&mut again);
    if let Some(at) = (0..FRAGMENT_SIZE).find(|&i| again[i] != bytes[i]) {
        panic!(
            "re-encoding {index:?} differs at byte {at}: {:#04x} decoded, {:#04x} encoded",
            bytes[at], again[at]
        );
    }
    assert_eq!(index.hash(), FragmentHash::of(&bytes), "the address is not the bytes' hash");
    assert_eq!(
        fragment_layout(index.file_size()),
        Ok((index.fragment_count() as u8, index.last_len() as u16)),
        "the file size does not give back the fragment count and last length"
    );
    assert_eq!(IndexFragment::decode(&again).as_ref(), Ok(&index));
}

/// The `node` target: runs a node on one input (see the module
/// documentation).
pub fn run_node(data: &[u8]) {
    let _ = node_after(data);
}

/// The harness after running `data` (for tests and the corpus generator).
pub fn node_after(data: &[u8]) -> Harness {
    let mut input = Input(data);
    let header = [input.byte(), input.byte(), input.byte(), input.byte()];
    let mut h = Harness::new(header);
    while !input.0.is_empty() {
        let op = input.byte();
        let step = step_duration(input.byte());
        match op {
            0x00..=0xBF => {
                let len = usize::from(u16::from_le_bytes([input.byte(), input.byte()]));
                let bytes = input.bytes(len);
                h.advance(step);
                let from = h.peer_addr(op);
                h.deliver(from, bytes);
            }
            0xC0..=0xDF => {
                let pick = input.byte();
                h.advance(step);
                if let Some((to, sent)) = h.sent(pick) {
                    if let Some(answer) = h.answer(to, &sent, op & 0x1F) {
                        h.deliver(to, &answer);
                    }
                }
            }
            0xE0..=0xEF => {
                let pick = input.byte();
                h.advance(step);
                if let Some((to, mut sent)) = h.sent(pick) {
                    if op & 1 == 1 {
                        if let Ok(mut packet) = Packet::decode(&sent) {
                            packet.source = h.source(to, 0);
                            let mut buf = vec![0u8; MAX_DATAGRAM_SIZE];
                            if let Ok(len) = packet.encode(&mut buf) {
                                buf.truncate(len);
                                sent = buf;
                            }
                        }
                    }
                    h.deliver(to, &sent);
                }
            }
            0xF0..=0xFF => {
                let pick = input.byte();
                h.advance(step);
                h.command(op, pick);
            }
        }
    }
    // Let the node's timers run a little after the last input.
    h.advance(Duration::from_secs(5));
    h
}

/// Builds `node` inputs (for the corpus generator).
pub struct Script(pub Vec<u8>);

impl Script {
    /// Header: see the module documentation.
    pub fn new(flags: u8, shard: u8, id: u16) -> Script {
        let [a, b] = id.to_le_bytes();
        Script(vec![flags, shard, a, b])
    }
    /// A datagram from peer `from`.
    pub fn raw(&mut self, from: u8, step: u8, bytes: &[u8]) -> &mut Self {
        assert!(from < 0xC0);
        let len = u16::try_from(bytes.len()).expect("a datagram below 64 KB");
        self.0.extend_from_slice(&[from, step]);
        self.0.extend_from_slice(&len.to_le_bytes());
        self.0.extend_from_slice(bytes);
        self
    }
    /// An answer to the `pick`-th last datagram sent.
    pub fn answer(&mut self, step: u8, pick: u8, variant: u8) -> &mut Self {
        self.0.extend_from_slice(&[0xC0 | (variant & 0x1F), step, pick]);
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

/// A packet from the harness's peer at `addr` (for the corpus generator).
pub fn packet_from(
    h: &Harness,
    addr: PeerAddr,
    transmission: Transmission,
    message: Message<'_>,
) -> Vec<u8> {
    let packet = Packet { transmission, source: h.source(addr, 0), message };
    let mut buf = vec![0u8; MAX_DATAGRAM_SIZE];
    let len = packet.encode(&mut buf).expect("the packet fits");
    buf.truncate(len);
    buf
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
