//! The `client` target: an upload or a download (`dht_core::upload`,
//! `dht_core::download`) driven through `dht_core::driver` by a client
//! node that joined a scripted network, then fed its peers' answers
//! (pieces, STORED, NOTFOUND, FILEGET), raw datagrams, echoes, commands
//! and clock steps. A download fetches an index fragment taken from the
//! input, so the index decoder runs on bytes that came from the network.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use dht_core::config::Config;
use dht_core::download::{Download, FileSink};
use dht_core::driver::{self, App, Idle};
use dht_core::fragment::FragmentBytes;
use dht_core::id::Shard;
use dht_core::index::{IndexFragment, IndexName};
use dht_core::node::{Node, Reply, Transmit};
use dht_core::time::{Duration, Instant};
use dht_core::upload::{Bytes, Upload};
use dht_core::wire::Transmission;
use dht_core::{FragmentHash, FRAGMENT_SIZE};

use crate::harness::{
    id_in, run_records, splitmix, store, FuzzNode, FuzzStore, Harness, Input, Wrinkle, NODE_ADDR,
};
use crate::node::{DATAGRAM_SIZES, SMALL_DATAGRAM};

/// Fragments of the largest file the upload takes (the index included):
/// 8 data fragments, a file of up to 64 KB.
pub const UPLOAD_ITEMS: usize = 9;

/// Offers an upload keeps outstanding.
pub const UPLOAD_WINDOW: usize = 4;

/// Fragment slots of a download.
pub const DOWNLOAD_WINDOW: usize = 2;

/// The upload of the `client` target.
pub type FuzzUpload = Upload<Bytes<Vec<u8>>, UPLOAD_WINDOW, 1, { UPLOAD_ITEMS - 1 }>;

/// The download of the `client` target.
pub type FuzzDownload = Download<Written, DOWNLOAD_WINDOW>;

/// Where a download's bytes go; it refuses the write after `fail_after`
/// writes, if set.
#[derive(Clone, Debug, Default)]
pub struct Written {
    /// The bytes written, in order.
    pub bytes: Vec<u8>,
    /// Writes taken.
    pub writes: usize,
    /// Writes taken before it refuses.
    pub fail_after: Option<usize>,
}

impl FileSink for Written {
    fn write(&mut self, bytes: &[u8]) -> bool {
        if self.fail_after.is_some_and(|n| self.writes >= n) {
            return false;
        }
        self.writes += 1;
        self.bytes.extend_from_slice(bytes);
        true
    }
}

/// The application of the `client` target.
pub enum Client {
    /// An upload.
    Upload(Box<FuzzUpload>),
    /// A download, and the address of the file it fetches.
    Download(Box<FuzzDownload>, FragmentHash),
}

impl Client {
    /// Sends the first requests.
    pub fn start(&mut self, now: Instant, node: &mut FuzzNode, sink: &mut impl Transmit) {
        match self {
            Client::Upload(u) => u.start(now, node, sink),
            Client::Download(d, _) => d.start(now, node, sink),
        }
    }

    /// Whether the upload or download finished successfully.
    pub fn is_finished(&self) -> bool {
        match self {
            Client::Upload(u) => u.is_finished(),
            Client::Download(d, _) => d.is_finished(),
        }
    }

    fn drain(&mut self) {
        match self {
            Client::Upload(u) => while u.poll_event().is_some() {},
            Client::Download(d, _) => while d.poll_event().is_some() {},
        }
    }
}

impl App<FuzzStore, 64, 256, 16> for Client {
    fn poll_timeout(&self) -> Option<Instant> {
        match self {
            Client::Upload(u) => u.poll_timeout(),
            Client::Download(d, _) => d.poll_timeout(),
        }
    }
    fn handle_timeout<T: Transmit>(&mut self, now: Instant, node: &mut FuzzNode, tx: &mut T) {
        match self {
            Client::Upload(u) => App::handle_timeout(&mut **u, now, node, tx),
            Client::Download(d, _) => App::handle_timeout(&mut **d, now, node, tx),
        }
        self.drain();
    }
    fn handle_reply<T: Transmit>(
        &mut self,
        now: Instant,
        node: &mut FuzzNode,
        reply: &Reply<'_>,
        tx: &mut T,
    ) {
        match self {
            Client::Upload(u) => App::handle_reply(&mut **u, now, node, reply, tx),
            Client::Download(d, _) => App::handle_reply(&mut **d, now, node, reply, tx),
        }
        self.drain();
    }
    fn is_done(&self) -> bool {
        match self {
            Client::Upload(u) => u.is_done(),
            Client::Download(d, _) => d.is_done(),
        }
    }
}

/// A client node (keyed network if `keyed`, small datagrams if `small`, id
/// drawn from `id`) that joined the harness's network through peer 0, its
/// peers answering everything it asked (the members of every shard listed).
/// Made once per configuration and cloned afterwards.
pub fn joined_client(keyed: bool, small: bool, id: u8) -> Harness<Idle> {
    type Cache = Mutex<HashMap<(bool, bool, u8), Harness<Idle>>>;
    static JOINED: OnceLock<Cache> = OnceLock::new();
    let cache = JOINED.get_or_init(Default::default);
    let mut cache = cache.lock().unwrap_or_else(|e| e.into_inner());
    cache.entry((keyed, small, id)).or_insert_with(|| join_client(keyed, small, id)).clone()
}

fn join_client(keyed: bool, small: bool, id: u8) -> Harness<Idle> {
    let mut config = Config::client();
    if small {
        config.max_datagram = SMALL_DATAGRAM;
    }
    let seed = u64::from_le_bytes([id, u8::from(keyed), u8::from(small), 9, 8, 7, 6, 5]);
    let node = Node::new(config, id_in(id % 16, u16::from(id)), NODE_ADDR, seed, store(0))
        .expect("a valid configuration");
    let mut h = Harness::new(node, Idle, keyed, false);
    let seed = h.peer_addr(0);
    h.node.join(h.now, seed, &mut h.sink);
    for _ in 0..8 {
        if h.node.is_joined() {
            break;
        }
        // Variant 4: every JOIN answered with 16 made-up members, one of
        // each shard, besides the harness's peers.
        h.answer_all(4, Wrinkle::default());
        h.advance(Duration::from_millis(50));
    }
    assert!(h.node.is_joined(), "the scripted network lets a client join");
    h.answer_all(4, Wrinkle::default());
    h.advance(Duration::from_millis(50));
    h
}

/// The bytes of the file of `size` bytes an upload sends.
pub fn upload_bytes(size: usize) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(size);
    let mut x = size as u64;
    while bytes.len() < size {
        x = splitmix(x);
        bytes.extend_from_slice(&x.to_le_bytes());
    }
    bytes.truncate(size);
    bytes
}

/// The harness of the `client` target as its header says (reading a
/// download's index fragment from `input`), the application started.
pub fn client_harness(input: &mut Input<'_>) -> Harness<Client> {
    let flags = input.byte();
    let len = u16::from_le_bytes([input.byte(), input.byte()]);
    let id = input.byte();
    let mut h = joined_client(flags & 2 != 0, flags & 4 != 0, id);
    let refuse = flags & 8 != 0;
    h.sink.refuse = refuse;
    let app = if flags & 1 == 0 {
        let name =
            IndexName::from_file_name(["a", "b.bin", "été.txt", ""][usize::from(flags >> 4) % 4]);
        let source = Bytes(upload_bytes(usize::from(len)));
        match FuzzUpload::new(name, source) {
            Ok(upload) => Client::Upload(Box::new(upload)),
            Err((e, _)) => panic!("a file of {len} bytes is not refused: {e}"),
        }
    } else {
        let mut index = Box::new([0u8; FRAGMENT_SIZE]);
        let given = input.bytes(usize::from(len).min(FRAGMENT_SIZE));
        index[..given.len()].copy_from_slice(given);
        let hash = FragmentHash::of(&index);
        h.blobs.push((hash, index));
        let sink = Written { fail_after: refuse.then_some(1), ..Written::default() };
        Client::Download(Box::new(FuzzDownload::new(hash, sink)), hash)
    };
    let mut h = h.with_app(app);
    h.app.start(h.now, &mut h.node, &mut h.sink);
    h.app.drain();
    h
}

/// Runs one command of the `client` target (see the crate documentation).
pub fn client_command(h: &mut Harness<Client>, op: u8, pick: u8) {
    let now = h.now;
    let peer = h.peer_addr(pick);
    match op & 0x0F {
        0 => h.node.leave(now, &mut h.sink),
        1 => h.node.join(now, peer, &mut h.sink),
        2 => {
            let shard = Shard::of(u64::from(pick));
            h.node.discover_shard(now, shard, usize::from(pick >> 4) % 4, &mut h.sink)
        }
        3 => {
            let find = (pick & 32 != 0).then(|| Shard::of(u64::from(pick)));
            let _ = h.node.ping(now, peer, Transmission::Singlecast, find, &mut h.sink);
        }
        4 => {
            let size = DATAGRAM_SIZES[usize::from(pick) % DATAGRAM_SIZES.len()];
            if h.node.set_max_datagram(size).is_ok() {
                h.sink.max_datagram = usize::from(size);
            }
        }
        5 => h.answer_all(pick & 0x1F, Wrinkle::of_pick(pick)),
        _ => {}
    }
    driver::drain_events(&mut *h.node, &mut h.app);
}

/// The `client` target: runs an upload or a download on one input.
pub fn run_client(data: &[u8]) {
    let _ = client_after(data);
}

/// The harness after running `data` (for tests and the corpus generator).
pub fn client_after(data: &[u8]) -> Harness<Client> {
    let mut input = Input(data);
    let mut h = client_harness(&mut input);
    run_records(&mut h, &mut input, client_command);
    h.advance(Duration::from_secs(5));
    check_client(&h);
    h
}

/// A finished upload had every fragment acknowledged; a finished download
/// wrote exactly the file its index describes.
fn check_client(h: &Harness<Client>) {
    match &h.app {
        Client::Upload(u) => {
            if u.is_finished() {
                assert_eq!(u.acknowledged(), u.total(), "an upload finished unacknowledged");
            }
        }
        Client::Download(d, hash) => {
            let Some((name, size)) = d.file() else { return };
            let Some(root) = h.data_of(hash).and_then(|b| IndexFragment::decode(b).ok()) else {
                panic!("the download took an index no holder has at its address");
            };
            assert_eq!((name, size), (root.name(), root.file_size()), "another index was taken");
            if !d.is_finished() || root.is_nested() {
                return;
            }
            let mut file = Vec::new();
            for i in 0..root.fragment_count() {
                let Some(data) = root.hash_of(i).and_then(|h2| h.data_of(&h2)) else { return };
                file.extend_from_slice(&data[..root.fragment_len(i)]);
            }
            assert_eq!(file.len() as u64, root.file_size(), "the index's lengths add up");
            assert!(d.sink().bytes == file, "the download wrote other bytes than the file's");
        }
    }
}

/// The index fragment of a file of `size` bytes made of the known
/// fragments of `shards` (for the corpus generator), trailing zeros cut.
pub fn index_of_known(name: &str, size: u64, shards: &[u8]) -> Vec<u8> {
    let index = dht_core::IndexFragment::for_file(IndexName::from_file_name(name), size, |i| {
        crate::harness::known_fragment(shards[i % shards.len()]).0
    })
    .expect("the file fits one index");
    let mut bytes: Box<FragmentBytes> = Box::new([0u8; FRAGMENT_SIZE]);
    index.encode(&mut bytes);
    let end = bytes.iter().rposition(|b| *b != 0).map_or(0, |i| i + 1);
    bytes[..end].to_vec()
}
