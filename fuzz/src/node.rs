//! The `node` target: a member or client node fed datagrams, answers of
//! its scripted peers, echoes, commands and clock steps.

use dht_core::config::{Config, Replication};
use dht_core::driver::{self, App};
use dht_core::fragment::FragmentBytes;
use dht_core::id::Shard;
use dht_core::node::{Node, Reply, Transmit, MIN_DATAGRAM};
use dht_core::store::FragmentStore;
use dht_core::time::{Duration, Instant};
use dht_core::wire::{Message, Transmission, ALL_UNITS, PIECE_UNITS};
use dht_core::MAX_DATAGRAM_SIZE;

use crate::harness::{
    id_in, known_data, known_fragment_n, run_records, store, FuzzNode, FuzzStore, Harness, Input,
    Wrinkle, NODE_ADDR,
};

/// The largest datagram of a node with a small one: one unit of a fragment
/// a piece.
pub const SMALL_DATAGRAM: u16 = MIN_DATAGRAM as u16;

/// The sizes the `set_max_datagram` command picks from (the last two are
/// refused).
pub const DATAGRAM_SIZES: [u16; 6] =
    [SMALL_DATAGRAM, 1452, 1100, MAX_DATAGRAM_SIZE as u16, 100, MAX_DATAGRAM_SIZE as u16 + 1];

/// The application beside the node of the `node` target: it serves the
/// known fragments a peer fetches after the node offered them (a client
/// uploading), corrupted if `corrupt`.
#[derive(Clone, Debug, Default)]
pub struct Server {
    /// Serve wrong bytes (the node must refuse to send them).
    pub corrupt: bool,
    /// Replies the node passed up.
    pub replies: u64,
}

impl App<FuzzStore, 64, 256, 16> for Server {
    fn handle_reply<T: Transmit>(
        &mut self,
        now: Instant,
        node: &mut FuzzNode,
        reply: &Reply<'_>,
        tx: &mut T,
    ) {
        self.replies += 1;
        if let Reply::FileGet { from, hash, want, piece_units } = reply {
            if let Some(data) = known_data(hash) {
                let corrupt = self.corrupt;
                let fill = |buf: &mut FragmentBytes| {
                    buf.copy_from_slice(data);
                    if corrupt {
                        buf[100] ^= 0x40;
                    }
                    true
                };
                let _ = node.send_pieces(now, from.addr, *hash, *want, *piece_units, fill, tx);
            }
        }
    }
}

/// The harness of the `node` target as its 4 header bytes say (see the
/// crate documentation).
pub fn node_harness(header: [u8; 4]) -> Harness<Server> {
    let [flags, net, id_a, id_b] = header;
    let mut config = match flags & 3 {
        0 | 3 => Config::member(),
        1 => Config::client(),
        _ => Config::small(),
    };
    if flags & 0x80 != 0 {
        config.replication = Replication::WholeShard;
    }
    if net & 0x20 != 0 {
        config.max_datagram = SMALL_DATAGRAM;
    } else if net & 0x40 != 0 {
        config.max_datagram = MAX_DATAGRAM_SIZE as u16;
    }
    let shard = net % 16;
    let id = id_in(shard, u16::from_le_bytes([id_a, id_b]));
    let slots = usize::from((flags >> 4) & 7);
    let seed = u64::from_le_bytes([flags, net, id_a, id_b, 1, 2, 3, 4]);
    let mut store = store(slots);
    if net & 0x80 != 0 {
        // Pre-filled: the known fragments of the node's shard, then of the
        // next one (which it should not hold).
        for n in 0..slots {
            let (hash, data) = known_fragment_n(shard + (n / 4) as u8, n as u8);
            let _ = store.store(hash, data);
        }
    }
    let node = Node::new(config, id, NODE_ADDR, seed, store).expect("a valid configuration");
    let mut h = Harness::new(node, Server::default(), net & 0x10 != 0, flags & 8 != 0);
    if flags & 3 == 3 {
        h.node.choose_shard_on_join(true);
    }
    if flags & 4 != 0 {
        let seed = h.peer_addr(0);
        h.node.join(h.now, seed, &mut h.sink);
        driver::drain_events(&mut *h.node, &mut h.app);
    }
    h
}

/// Runs one command of the `node` target (see the crate documentation).
pub fn node_command(h: &mut Harness<Server>, op: u8, pick: u8) {
    let now = h.now;
    let peer = h.peer_addr(pick);
    let (hash, data) = known_fragment_n(pick >> 3, pick >> 1);
    match op & 0x0F {
        0 => h.node.leave(now, &mut h.sink),
        1 => h.node.join(now, peer, &mut h.sink),
        2 => {
            let shard = Shard::of(u64::from(pick));
            h.node.discover_shard(now, shard, usize::from(pick >> 4) % 4, &mut h.sink)
        }
        3 => {
            let transmission = match pick >> 6 {
                0 => Transmission::Singlecast,
                1 => Transmission::Randomcast { hops: pick & 3 },
                _ => Transmission::Broadcast { breadth: pick & 3, uid: u64::from(pick) },
            };
            let find = (pick & 32 != 0).then(|| Shard::of(u64::from(pick)));
            let _ = h.node.ping(now, peer, transmission, find, &mut h.sink);
        }
        4 => {
            let about = (pick & 8 != 0).then(|| h.peer_addr(pick >> 4));
            h.node.request_stats(now, peer, about, u64::from(pick), &mut h.sink)
        }
        5 => {
            let want = if pick & 0x80 != 0 { 0x0F0F } else { ALL_UNITS };
            let _ = h.node.send_fileget(now, peer, *hash, want, &mut h.sink);
        }
        6 => {
            h.app.corrupt = pick & 0x80 != 0;
            let _ = h.node.offer(now, peer, *hash, pick & 0x1F, &mut h.sink);
        }
        7 => {
            let message = match pick >> 6 {
                0 => Message::Ping { nonce: u64::from(pick) },
                1 => Message::Find { shard: Shard::of(u64::from(pick)), nonce: 1 },
                2 => Message::AddMe,
                _ => Message::NewFile { hash: *hash, urgent: false, copies: pick & 0x1F },
            };
            let _ = h.node.broadcast(now, pick & 3, &message, &mut h.sink);
        }
        8 => h.node.choose_shard_on_join(pick & 1 == 1),
        9 => {
            // Pieces nobody asked for (or corrupt ones, which must not go).
            let corrupt = pick & 0x80 != 0;
            let fill = |body: &mut FragmentBytes| {
                body.copy_from_slice(&data[..]);
                if corrupt {
                    body[0] ^= 1;
                }
                true
            };
            let want = if pick & 0x40 != 0 { 0x8001 } else { ALL_UNITS };
            let units = PIECE_UNITS[usize::from(pick & 7) % PIECE_UNITS.len()];
            let _ = h.node.send_pieces(now, peer, *hash, want, units, fill, &mut h.sink);
        }
        10 => {
            let size = DATAGRAM_SIZES[usize::from(pick) % DATAGRAM_SIZES.len()];
            if h.node.set_max_datagram(size).is_ok() {
                h.sink.max_datagram = usize::from(size);
            }
        }
        11 => h.answer_all(pick & 0x1F, Wrinkle::of_pick(pick)),
        _ => {}
    }
    driver::drain_events(&mut *h.node, &mut h.app);
}

/// The `node` target: runs a node on one input.
pub fn run_node(data: &[u8]) {
    let _ = node_after(data);
}

/// The harness after running `data` (for tests and the corpus generator).
pub fn node_after(data: &[u8]) -> Harness<Server> {
    let mut input = Input(data);
    let header = [input.byte(), input.byte(), input.byte(), input.byte()];
    let mut h = node_harness(header);
    run_records(&mut h, &mut input, node_command);
    // Let the node's timers run a little after the last input.
    h.advance(Duration::from_secs(5));
    h.check_store();
    h
}
