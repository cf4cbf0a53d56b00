//! A deterministic simulated network of dht-core nodes in one process.
//!
//! Every host is a [`dht_core::Node`] with a RAM store, optionally running
//! an upload or a download as a client. Datagrams travel through a single
//! event queue ordered by a virtual clock: each gets a latency drawn from
//! the configured range and may be lost, duplicated or delayed far enough
//! to arrive out of order; hosts can be partitioned, crashed (their RAM
//! store survives, as a disk would) and restarted. All randomness comes
//! from one seeded generator and all collections iterate in a fixed order,
//! so the same seed gives the same run, datagram for datagram.
//!
//! ```
//! use dht_core::{Config, Duration};
//! use dht_sim::{Faults, Sim};
//! let mut sim = Sim::new(1, Faults::default());
//! let root = sim.add_member(Config::member(), 8);
//! let other = sim.add_member(Config::member(), 8);
//! sim.join(other, root);
//! assert!(sim.run_until(Duration::from_secs(5), |s| s.is_joined(other)));
//! assert_eq!(sim.node(other).unwrap().neighbors().len(), 1);
//! ```

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};

use dht_core::counters::Counters;
use dht_core::download::{Download, DownloadError, DownloadEvent, FileSink};
use dht_core::driver::{self, App};
use dht_core::node::{Event, Reply, SendError, Transmit};
use dht_core::rand::Rng;
use dht_core::store::{RamSlot, RamStore};
use dht_core::upload::{Bytes, Upload, UploadError, UploadEvent};
use dht_core::{
    Config, Duration, FragmentHash, IndexName, Instant, Node, NodeId, PeerAddr, FRAGMENT_SIZE,
};

/// The node type of the simulator: default capacities, RAM store.
pub type SimNode = Node<RamStore<Box<[RamSlot]>>>;

/// Index of a host in the simulation.
pub type HostId = usize;

/// Fault injection, in parts per million of datagrams.
#[derive(Clone, Copy, Debug)]
pub struct Faults {
    /// Shortest one-way latency.
    pub latency_min: Duration,
    /// Longest one-way latency (drawn uniformly in between).
    pub latency_max: Duration,
    /// Datagrams lost.
    pub loss_ppm: u32,
    /// Datagrams delivered twice.
    pub duplicate_ppm: u32,
    /// Datagrams held back by up to `reorder_delay` more, so that later ones
    /// overtake them.
    pub reorder_ppm: u32,
    /// The extra delay of a reordered datagram.
    pub reorder_delay: Duration,
}

impl Default for Faults {
    /// A clean LAN: 0.1 to 1 ms, nothing lost.
    fn default() -> Self {
        Faults {
            latency_min: Duration::from_micros(100),
            latency_max: Duration::from_millis(1),
            loss_ppm: 0,
            duplicate_ppm: 0,
            reorder_ppm: 0,
            reorder_delay: Duration::from_millis(20),
        }
    }
}

impl Faults {
    /// `percent` % loss, duplication and reordering each.
    pub fn lossy(percent: u32) -> Faults {
        let ppm = percent * 10_000;
        Faults { loss_ppm: ppm, duplicate_ppm: ppm, reorder_ppm: ppm, ..Faults::default() }
    }
}

/// What the network did with datagrams.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetStats {
    /// Datagrams handed to a node.
    pub delivered: u64,
    /// Bytes handed to nodes.
    pub delivered_bytes: u64,
    /// Datagrams dropped by the loss model.
    pub lost: u64,
    /// Datagrams duplicated.
    pub duplicated: u64,
    /// Datagrams delayed for reordering.
    pub reordered: u64,
    /// Datagrams to a crashed host, an unknown address, or across a partition.
    pub undeliverable: u64,
    /// Datagrams dropped because a host's receive FIFO was full (see
    /// [`Sim::set_rx_fifo`]).
    pub fifo_drops: u64,
}

/// A network interface's receive FIFO: it holds `capacity` bytes and the
/// host's CPU empties it at `drain_bytes_per_ms`. A datagram that does not
/// fit when it arrives is dropped whole (one lost Ethernet frame loses the
/// IP datagram), as QEMU's LAN9118 model and small SPI controllers do.
#[derive(Clone, Copy, Debug)]
pub struct RxFifo {
    /// Bytes the FIFO holds.
    pub capacity: u32,
    /// How fast the host reads it out.
    pub drain_bytes_per_ms: u32,
}

impl RxFifo {
    /// The LAN9118 of QEMU's MPS2 boards: about 10.5 KB, so one 8.3 KB
    /// datagram at a time; read out at roughly 8 KB per millisecond.
    pub const LAN9118: RxFifo = RxFifo { capacity: 10_560, drain_bytes_per_ms: 8_000 };
}

#[derive(Clone, Copy, Debug)]
struct FifoState {
    model: RxFifo,
    level: u64,
    at: Instant,
    drops: u64,
}

impl FifoState {
    /// Whether a datagram of `len` bytes arriving at `now` fits.
    fn admit(&mut self, now: Instant, len: usize) -> bool {
        let elapsed = now.saturating_since(self.at).total_micros();
        let drained = elapsed.saturating_mul(u64::from(self.model.drain_bytes_per_ms)) / 1000;
        self.level = self.level.saturating_sub(drained);
        self.at = now;
        if self.level + len as u64 > u64::from(self.model.capacity) {
            self.drops += 1;
            return false;
        }
        self.level += len as u64;
        true
    }
}

/// A file sink collecting bytes in memory.
#[derive(Debug, Default)]
pub struct Collect(pub Vec<u8>);

impl FileSink for Collect {
    fn write(&mut self, bytes: &[u8]) -> bool {
        self.0.extend_from_slice(bytes);
        true
    }
}

/// A file sink that keeps only the SHA-256 and the length of what it is
/// given: a streaming download's destination, as on a microcontroller.
#[derive(Clone, Debug, Default)]
pub struct Digest {
    hasher: sha2::Sha256,
    len: u64,
}

impl Digest {
    /// The length and SHA-256 of the bytes written.
    pub fn finish(&self) -> (u64, [u8; 32]) {
        use sha2::Digest as _;
        (self.len, self.hasher.clone().finalize().into())
    }
}

impl FileSink for Digest {
    fn write(&mut self, bytes: &[u8]) -> bool {
        use sha2::Digest as _;
        self.hasher.update(bytes);
        self.len += bytes.len() as u64;
        true
    }
}

/// A streaming download as small as a microcontroller's: 2 fragment
/// slots and a path of 3 indexes (files up to 134 GB), into a digest.
pub type StreamDownload = Download<Digest, 2, 3>;

/// The simulator's upload: a file in memory, 32 requests at a time.
type SimUpload = Upload<Bytes<Vec<u8>>, 32>;
/// The simulator's download: into memory, 16 slots.
type SimDownload = Download<Collect, 16>;

/// What a host runs besides its node.
enum Task {
    Idle,
    Upload {
        upload: Box<SimUpload>,
        result: Option<Result<FragmentHash, UploadError>>,
    },
    Download {
        download: Box<SimDownload>,
        result: Option<Result<Vec<u8>, DownloadError>>,
    },
    Stream {
        download: Box<StreamDownload>,
        result: Option<Result<(u64, [u8; 32]), DownloadError>>,
    },
    /// Serves the fragments it offered (see [`Sim::offer`]) and counts the
    /// STORED answers that say they are held.
    Serve {
        fragments: Vec<[u8; FRAGMENT_SIZE]>,
        held: usize,
    },
}

type Store = RamStore<Box<[RamSlot]>>;

/// A host's task and the node events it saw (the driver hands node events
/// to the application).
struct Runner {
    task: Task,
    events: Vec<Event>,
}

impl App<Store, 256, 1024, 64> for Runner {
    fn poll_timeout(&self) -> Option<Instant> {
        match &self.task {
            Task::Idle | Task::Serve { .. } => None,
            Task::Upload { upload, .. } => upload.poll_timeout(),
            Task::Download { download, .. } => download.poll_timeout(),
            Task::Stream { download, .. } => download.poll_timeout(),
        }
    }
    fn handle_timeout<T: Transmit>(&mut self, now: Instant, node: &mut SimNode, tx: &mut T) {
        match &mut self.task {
            Task::Idle | Task::Serve { .. } => {}
            Task::Upload { upload, .. } => upload.handle_timeout(now, node, tx),
            Task::Download { download, .. } => download.handle_timeout(now, node, tx),
            Task::Stream { download, .. } => download.handle_timeout(now, node, tx),
        }
    }
    fn handle_reply<T: Transmit>(
        &mut self,
        now: Instant,
        node: &mut SimNode,
        reply: &Reply<'_>,
        tx: &mut T,
    ) {
        match &mut self.task {
            Task::Idle => {}
            Task::Upload { upload, .. } => upload.handle_reply(now, node, reply, tx),
            Task::Download { download, .. } => download.handle_reply(now, node, reply, tx),
            Task::Stream { download, .. } => download.handle_reply(now, node, reply, tx),
            Task::Serve { fragments, held } => match reply {
                Reply::FileGet { from, hash, want, piece_units } => {
                    if let Some(data) = fragments.iter().find(|f| FragmentHash::of(f) == *hash) {
                        let fill = |buf: &mut [u8; FRAGMENT_SIZE]| {
                            buf.copy_from_slice(data);
                            true
                        };
                        let _ =
                            node.send_pieces(now, from.addr, *hash, *want, *piece_units, fill, tx);
                    }
                }
                Reply::Stored { outcome, .. } if outcome.is_held() => *held += 1,
                _ => {}
            },
        }
    }
    fn handle_event(&mut self, _node: &SimNode, event: Event) {
        self.events.push(event);
    }
}

struct Host {
    addr: PeerAddr,
    id: NodeId,
    config: Config,
    node: Option<Box<SimNode>>,
    /// The store of a crashed node, kept like a disk.
    disk: Option<RamStore<Box<[RamSlot]>>>,
    app: Runner,
    group: u32,
    wake_generation: u64,
    scheduled: Option<Instant>,
    events: Vec<Event>,
    fifo: Option<FifoState>,
    /// A raw host (no node): the datagrams it received.
    raw: Option<Vec<(PeerAddr, Vec<u8>)>>,
}

#[derive(Clone)]
enum Pending {
    Deliver { to: HostId, from: PeerAddr, bytes: Vec<u8> },
    Wake { host: HostId, generation: u64 },
}

#[derive(Clone)]
struct Queued {
    at: Instant,
    seq: u64,
    what: Pending,
}

impl PartialEq for Queued {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Queued {}
impl PartialOrd for Queued {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Queued {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

/// Datagrams a node sent during one call.
#[derive(Default)]
struct Outbox {
    datagrams: Vec<(PeerAddr, Vec<u8>)>,
}

impl Transmit for Outbox {
    fn send(&mut self, to: PeerAddr, datagram: &[u8]) -> Result<(), SendError> {
        self.datagrams.push((to, datagram.to_vec()));
        Ok(())
    }
}

/// The simulated network.
pub struct Sim {
    now: Instant,
    rng: Rng,
    faults: Faults,
    hosts: Vec<Host>,
    by_addr: BTreeMap<PeerAddr, HostId>,
    queue: BinaryHeap<Reverse<Queued>>,
    seq: u64,
    stats: NetStats,
    /// Counters of node incarnations that crashed.
    retired: Counters,
    /// The network key every node gets, if any.
    key: Option<dht_core::auth::NetworkKey>,
}

impl Sim {
    /// An empty network whose randomness all derives from `seed`.
    pub fn new(seed: u64, faults: Faults) -> Sim {
        Sim {
            now: Instant::ZERO,
            rng: Rng::new(seed),
            faults,
            hosts: Vec::new(),
            by_addr: BTreeMap::new(),
            queue: BinaryHeap::new(),
            seq: 0,
            stats: NetStats::default(),
            retired: Counters::default(),
            key: None,
        }
    }

    /// Puts every node, those up now and those added later, on a network
    /// with `key` (or an open one with `None`).
    pub fn set_network_key(&mut self, key: Option<dht_core::auth::NetworkKey>) {
        for h in self.hosts.iter_mut() {
            if let Some(node) = h.node.as_deref_mut() {
                node.set_network_key(key.clone());
            }
        }
        self.key = key;
    }

    /// The virtual time.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// Changes the fault model from now on.
    pub fn set_faults(&mut self, faults: Faults) {
        self.faults = faults;
    }

    /// Network statistics so far.
    pub fn net_stats(&self) -> NetStats {
        self.stats
    }

    /// Number of hosts.
    pub fn len(&self) -> usize {
        self.hosts.len()
    }

    /// Whether there are no hosts.
    pub fn is_empty(&self) -> bool {
        self.hosts.is_empty()
    }

    /// Adds a member node with room for `capacity` fragments. It does not
    /// join anyone until [`Sim::join`]; the first node is the root.
    pub fn add_member(&mut self, config: Config, capacity: usize) -> HostId {
        let id = NodeId(self.rng.next_u64());
        self.add_host(config, id, capacity)
    }

    /// Adds a member whose id is in `shard` (for tests that need a shard
    /// populated in a particular way).
    pub fn add_member_in_shard(
        &mut self,
        config: Config,
        capacity: usize,
        shard: dht_core::Shard,
    ) -> HostId {
        let id = NodeId::in_shard(self.rng.next_u64(), shard);
        self.add_host(config, id, capacity)
    }

    /// Adds a client (it stores nothing).
    pub fn add_client(&mut self) -> HostId {
        let id = NodeId(self.rng.next_u64());
        self.add_host(Config::client(), id, 0)
    }

    fn add_host(&mut self, config: Config, id: NodeId, capacity: usize) -> HostId {
        let host = self.hosts.len();
        let port = 8000 + host as u16;
        let addr = PeerAddr::v4([127, 0, 0, 1], port);
        let store = RamStore::new(vec![RamSlot::EMPTY; capacity].into_boxed_slice());
        let mut node = Box::new(
            Node::new(config, id, addr, self.rng.next_u64(), store).expect("a valid configuration"),
        );
        node.set_network_key(self.key.clone());
        self.hosts.push(Host {
            addr,
            id,
            config,
            node: Some(node),
            disk: None,
            app: Runner { task: Task::Idle, events: Vec::new() },
            group: 0,
            wake_generation: 0,
            scheduled: None,
            events: Vec::new(),
            fifo: None,
            raw: None,
        });
        self.by_addr.insert(addr, host);
        host
    }

    /// Adds a raw host: an address that receives datagrams (kept, see
    /// [`Sim::raw_received`]) and sends whatever [`Sim::send_raw`] is
    /// given, with no node behind it (an attacker, or a victim).
    pub fn add_raw(&mut self) -> HostId {
        let host = self.hosts.len();
        let addr = PeerAddr::v4([127, 0, 0, 1], 8000 + host as u16);
        self.hosts.push(Host {
            addr,
            id: NodeId(0),
            config: Config::client(),
            node: None,
            disk: None,
            app: Runner { task: Task::Idle, events: Vec::new() },
            group: 0,
            wake_generation: 0,
            scheduled: None,
            events: Vec::new(),
            fifo: None,
            raw: Some(Vec::new()),
        });
        self.by_addr.insert(addr, host);
        host
    }

    /// Sends `bytes` from the raw host `from_host` to `to`, claiming to
    /// come from `claimed` (its own address, or a spoofed one).
    pub fn send_raw(&mut self, from_host: HostId, claimed: PeerAddr, to: PeerAddr, bytes: Vec<u8>) {
        self.transmit(from_host, claimed, to, bytes);
    }

    /// What a raw host received: (UDP source, datagram).
    pub fn raw_received(&self, host: HostId) -> &[(PeerAddr, Vec<u8>)] {
        self.hosts.get(host).and_then(|h| h.raw.as_deref()).unwrap_or(&[])
    }

    /// A copy of the whole network as it is now, to run two futures of it
    /// side by side (with and without an attack); `None` if some host runs
    /// an upload or a download not finished yet (finished ones are not
    /// copied).
    pub fn fork(&self) -> Option<Sim> {
        let mut hosts = Vec::with_capacity(self.hosts.len());
        for (i, h) in self.hosts.iter().enumerate() {
            if !self.app_done(i) {
                return None;
            }
            hosts.push(Host {
                addr: h.addr,
                id: h.id,
                config: h.config,
                node: h.node.clone(),
                disk: h.disk.clone(),
                app: Runner { task: Task::Idle, events: h.app.events.clone() },
                group: h.group,
                wake_generation: h.wake_generation,
                scheduled: h.scheduled,
                events: h.events.clone(),
                fifo: h.fifo,
                raw: h.raw.clone(),
            });
        }
        Some(Sim {
            now: self.now,
            rng: self.rng.clone(),
            faults: self.faults,
            hosts,
            by_addr: self.by_addr.clone(),
            queue: self.queue.clone(),
            seq: self.seq,
            stats: self.stats,
            retired: self.retired.clone(),
            key: self.key.clone(),
        })
    }

    /// Makes `host` offer `fragments` to the member `to`, and serve them
    /// when asked; [`Sim::offers_held`] counts the acknowledgements.
    pub fn offer(&mut self, host: HostId, to: HostId, fragments: Vec<[u8; FRAGMENT_SIZE]>) {
        let target = self.addr(to);
        let hashes: Vec<FragmentHash> = fragments.iter().map(FragmentHash::of).collect();
        if let Some(h) = self.hosts.get_mut(host) {
            h.app.task = Task::Serve { fragments, held: 0 };
        }
        self.with_node(host, |node, now, out| {
            for hash in hashes {
                node.offer(now, target, hash, 0, out);
            }
        });
    }

    /// The offers of `host` acknowledged as held.
    pub fn offers_held(&self, host: HostId) -> usize {
        match self.hosts.get(host).map(|h| &h.app.task) {
            Some(Task::Serve { held, .. }) => *held,
            _ => 0,
        }
    }

    /// The node of `host`, if it is up.
    pub fn node(&self, host: HostId) -> Option<&SimNode> {
        self.hosts.get(host).and_then(|h| h.node.as_deref())
    }

    /// The node of `host`, mutably, if it is up.
    pub fn node_mut(&mut self, host: HostId) -> Option<&mut SimNode> {
        self.hosts.get_mut(host).and_then(|h| h.node.as_deref_mut())
    }

    /// The address of `host`.
    pub fn addr(&self, host: HostId) -> PeerAddr {
        self.hosts.get(host).map(|h| h.addr).unwrap_or(PeerAddr::v4([127, 0, 0, 1], 0))
    }

    /// Whether `host` is up.
    pub fn is_up(&self, host: HostId) -> bool {
        self.node(host).is_some()
    }

    /// Whether `host` has completed its join.
    pub fn is_joined(&self, host: HostId) -> bool {
        self.node(host).is_some_and(|n| n.is_joined())
    }

    /// Events `host`'s node reported so far (drained from the node as the
    /// simulation runs).
    pub fn events(&self, host: HostId) -> &[Event] {
        self.hosts.get(host).map(|h| h.events.as_slice()).unwrap_or(&[])
    }

    /// Gives `host` a small receive FIFO (from now on): datagrams that
    /// arrive while it is too full are dropped.
    pub fn set_rx_fifo(&mut self, host: HostId, model: RxFifo) {
        let now = self.now;
        if let Some(h) = self.hosts.get_mut(host) {
            h.fifo = Some(FifoState { model, level: 0, at: now, drops: 0 });
        }
    }

    /// Datagrams `host`'s receive FIFO dropped.
    pub fn fifo_drops(&self, host: HostId) -> u64 {
        self.hosts.get(host).and_then(|h| h.fifo).map_or(0, |f| f.drops)
    }

    /// Makes `host` join through `seed`.
    pub fn join(&mut self, host: HostId, seed: HostId) {
        let seed_addr = self.addr(seed);
        self.with_node(host, |node, now, out| node.join(now, seed_addr, out));
    }

    /// Starts uploading `data` under `name` from client `host`.
    pub fn start_upload(
        &mut self,
        host: HostId,
        name: &str,
        data: Vec<u8>,
    ) -> Result<FragmentHash, UploadError> {
        self.start_upload_with_copies(host, name, data, 0, 0)
    }

    /// Starts uploading `data` under `name` from client `host`, asking for
    /// `index_copies` copies of each index fragment and `data_copies` of
    /// each data fragment (0: the network's R).
    pub fn start_upload_with_copies(
        &mut self,
        host: HostId,
        name: &str,
        data: Vec<u8>,
        index_copies: u8,
        data_copies: u8,
    ) -> Result<FragmentHash, UploadError> {
        let name = IndexName::from_file_name(name);
        let hash = dht_core::upload::hash_file(name, &mut Bytes(&data), |_, _| {})?;
        let upload = SimUpload::new(name, Bytes(data)).map_err(|(e, _)| e)?;
        self.run_upload(host, upload.with_index_copies(index_copies).with_data_copies(data_copies));
        Ok(hash)
    }

    /// Starts uploading `data` under `name` from client `host` as a coded
    /// file of `k` data and `m` parity fragments a stripe, whose parity
    /// tree (uploaded before) has the root `parity_root`. Its address is
    /// in [`Sim::upload_result`] once it is over.
    pub fn start_coded_upload(
        &mut self,
        host: HostId,
        name: &str,
        data: Vec<u8>,
        (k, m, parity_root): (u16, u16, FragmentHash),
    ) -> Result<(), UploadError> {
        let name = IndexName::from_file_name(name);
        let size = data.len() as u64;
        let upload = SimUpload::new(name, Bytes(data)).map_err(|(e, _)| e)?;
        let upload = upload
            .with_coding(k, m, parity_root)
            .map_err(|_| UploadError::FileTooLarge { size })?;
        self.run_upload(host, upload);
        Ok(())
    }

    /// Makes `upload` the task of client `host` and starts it.
    fn run_upload(&mut self, host: HostId, upload: SimUpload) {
        if let Some(h) = self.hosts.get_mut(host) {
            h.app.task = Task::Upload { upload: Box::new(upload), result: None };
        }
        self.with_app(host, |node, app, now, out| {
            if let Task::Upload { upload, .. } = &mut app.task {
                upload.start(now, node, out);
            }
        });
    }

    /// The coding a download of `host` met (a coded root's), if any.
    pub fn download_coding(&self, host: HostId) -> Option<(dht_core::index::Coding, FragmentHash)> {
        match self.hosts.get(host).map(|h| &h.app.task) {
            Some(Task::Download { download, .. }) => download.coding(),
            _ => None,
        }
    }

    /// The result of `host`'s upload, once it is over.
    pub fn upload_result(&self, host: HostId) -> Option<Result<FragmentHash, UploadError>> {
        match self.hosts.get(host).map(|h| &h.app.task) {
            Some(Task::Upload { result, .. }) => *result,
            _ => None,
        }
    }

    /// Starts downloading the file `index_hash` from client `host`.
    pub fn start_download(&mut self, host: HostId, index_hash: FragmentHash) {
        if let Some(h) = self.hosts.get_mut(host) {
            let download = Download::new(index_hash, Collect::default());
            h.app.task = Task::Download { download: Box::new(download), result: None };
        }
        self.with_app(host, |node, app, now, out| {
            if let Task::Download { download, .. } = &mut app.task {
                download.start(now, node, out);
            }
        });
    }

    /// Starts a streaming download ([`StreamDownload`]) of `index_hash`
    /// from client `host`.
    pub fn start_stream(&mut self, host: HostId, index_hash: FragmentHash) {
        if let Some(h) = self.hosts.get_mut(host) {
            let download = StreamDownload::new(index_hash, Digest::default());
            h.app.task = Task::Stream { download: Box::new(download), result: None };
        }
        self.with_app(host, |node, app, now, out| {
            if let Task::Stream { download, .. } = &mut app.task {
                download.start(now, node, out);
            }
        });
    }

    /// The length and SHA-256 `host`'s streaming download wrote, once over.
    pub fn stream_result(&self, host: HostId) -> Option<&Result<(u64, [u8; 32]), DownloadError>> {
        match self.hosts.get(host).map(|h| &h.app.task) {
            Some(Task::Stream { result, .. }) => result.as_ref(),
            _ => None,
        }
    }

    /// The result of `host`'s download, once it is over.
    pub fn download_result(&self, host: HostId) -> Option<&Result<Vec<u8>, DownloadError>> {
        match self.hosts.get(host).map(|h| &h.app.task) {
            Some(Task::Download { result, .. }) => result.as_ref(),
            _ => None,
        }
    }

    /// A debugging description of what `host`'s upload or download is doing.
    pub fn app_debug(&self, host: HostId) -> String {
        match self.hosts.get(host).map(|h| &h.app.task) {
            Some(Task::Upload { upload, .. }) => format!("{upload:?}"),
            Some(Task::Download { download, .. }) => format!("{download:?}"),
            Some(Task::Stream { download, .. }) => format!("{download:?}"),
            _ => String::from("idle"),
        }
    }

    /// Whether `host`'s upload or download is over.
    pub fn app_done(&self, host: HostId) -> bool {
        match self.hosts.get(host).map(|h| &h.app.task) {
            Some(Task::Upload { result, .. }) => result.is_some(),
            Some(Task::Download { result, .. }) => result.is_some(),
            Some(Task::Stream { result, .. }) => result.is_some(),
            _ => true,
        }
    }

    /// Crashes `host`: its node state and any client work are gone, its
    /// store is kept like a disk.
    pub fn crash(&mut self, host: HostId) {
        let Some(h) = self.hosts.get_mut(host) else { return };
        if let Some(node) = h.node.take() {
            self.retired.accumulate(node.counters());
            h.disk = Some(node.into_store());
        }
        h.app.task = Task::Idle;
        h.scheduled = None;
        h.wake_generation += 1;
    }

    /// Makes `host` leave gracefully: it hands off its fragments and tells
    /// its neighbors, then goes down (its store is kept, like a disk).
    pub fn leave(&mut self, host: HostId) {
        self.with_node(host, |node, now, out| node.leave(now, out));
    }

    /// Restarts a crashed `host` on its store, with the same id and address,
    /// joining through `seed`.
    pub fn restart(&mut self, host: HostId, seed: HostId) {
        let seed_value = self.rng.next_u64();
        let Some(h) = self.hosts.get_mut(host) else { return };
        let Some(store) = h.disk.take() else { return };
        let node = Node::new(h.config, h.id, h.addr, seed_value, store);
        let mut node = Box::new(node.expect("the configuration was valid before"));
        node.set_network_key(self.key.clone());
        h.node = Some(node);
        self.join(host, seed);
    }

    /// Splits the network: datagrams only flow between hosts of the same
    /// group. `group_of(host)` gives each host's group.
    pub fn partition(&mut self, group_of: impl Fn(HostId) -> u32) {
        for (i, h) in self.hosts.iter_mut().enumerate() {
            h.group = group_of(i);
        }
    }

    /// The partition group of `host` (0 when there is no partition).
    pub fn group(&self, host: HostId) -> u32 {
        self.hosts.get(host).map(|h| h.group).unwrap_or(0)
    }

    /// Moves `host` into partition group `group` (a host added during a
    /// partition starts in group 0).
    pub fn set_group(&mut self, host: HostId, group: u32) {
        if let Some(h) = self.hosts.get_mut(host) {
            h.group = group;
        }
    }

    /// Heals any partition.
    pub fn heal(&mut self) {
        for h in self.hosts.iter_mut() {
            h.group = 0;
        }
    }

    /// The sum of all nodes' counters, crashed incarnations included.
    pub fn total_counters(&self) -> Counters {
        let mut total = self.retired.clone();
        for h in self.hosts.iter() {
            if let Some(node) = h.node.as_deref() {
                total.accumulate(node.counters());
            }
        }
        total
    }

    /// Hosts that hold `hash` right now.
    pub fn holders_of(&self, hash: &FragmentHash) -> Vec<HostId> {
        use dht_core::store::FragmentStore;
        (0..self.hosts.len())
            .filter(|&i| self.node(i).is_some_and(|n| n.store().contains(hash)))
            .collect()
    }

    /// Live hosts that hold `hash`, counted.
    pub fn copies(&self, hash: &FragmentHash) -> usize {
        self.holders_of(hash).len()
    }

    /// Hosts that are up.
    pub fn live_hosts(&self) -> Vec<HostId> {
        (0..self.hosts.len()).filter(|&h| self.is_up(h)).collect()
    }

    /// Runs for `span` of virtual time.
    pub fn run_for(&mut self, span: Duration) {
        let end = self.now + span;
        while self.step(end) {}
        self.now = self.now.max(end);
    }

    /// Runs until `done` holds or `limit` of virtual time has passed;
    /// returns whether `done` held. `done` is checked after every event.
    pub fn run_until(&mut self, limit: Duration, mut done: impl FnMut(&Sim) -> bool) -> bool {
        let end = self.now + limit;
        loop {
            if done(self) {
                return true;
            }
            if !self.step(end) {
                self.now = self.now.max(end);
                return done(self);
            }
        }
    }

    /// Processes the next queued event if it is due by `end`.
    fn step(&mut self, end: Instant) -> bool {
        let Some(Reverse(next)) = self.queue.peek() else { return false };
        if next.at > end {
            return false;
        }
        let Some(Reverse(item)) = self.queue.pop() else { return false };
        self.now = self.now.max(item.at);
        match item.what {
            Pending::Deliver { to, from, bytes } => self.deliver(to, from, &bytes),
            Pending::Wake { host, generation } => {
                let current = self.hosts.get(host).map(|h| h.wake_generation);
                if current == Some(generation) {
                    if let Some(h) = self.hosts.get_mut(host) {
                        h.scheduled = None;
                    }
                    let next = self.with_app(host, |node, app, now, out| {
                        driver::on_timeout(node, app, now, out);
                    });
                    // The wake-up invariant of dht_core::node: a host woken
                    // at `now` asks to be woken later, or not at all.
                    if let Some(next) = next {
                        assert!(
                            next > self.now,
                            "host {host} woken at {} asks to be woken again at {next}: {}; node {:?}",
                            self.now,
                            self.app_debug(host),
                            self.node(host).map(|n| n.timeouts())
                        );
                    }
                }
            }
        }
        true
    }

    /// Hands `bytes` to `host` as if it came from `from`, now (for
    /// hostile-input tests). Whatever the node answers goes out on the
    /// network as usual.
    pub fn inject(&mut self, host: HostId, from: PeerAddr, bytes: &[u8]) {
        self.deliver(host, from, bytes);
    }

    fn deliver(&mut self, to: HostId, from: PeerAddr, bytes: &[u8]) {
        if let Some(raw) = self.hosts.get_mut(to).and_then(|h| h.raw.as_mut()) {
            raw.push((from, bytes.to_vec()));
            self.stats.delivered += 1;
            self.stats.delivered_bytes += bytes.len() as u64;
            return;
        }
        if !self.is_up(to) {
            self.stats.undeliverable += 1;
            return;
        }
        let now = self.now;
        if let Some(fifo) = self.hosts.get_mut(to).and_then(|h| h.fifo.as_mut()) {
            if !fifo.admit(now, bytes.len()) {
                self.stats.fifo_drops += 1;
                return;
            }
        }
        self.stats.delivered += 1;
        self.stats.delivered_bytes += bytes.len() as u64;
        self.with_app(to, |node, app, now, out| {
            driver::on_datagram(node, app, now, from, bytes, out);
        });
    }

    fn with_node(&mut self, host: HostId, f: impl FnOnce(&mut SimNode, Instant, &mut Outbox)) {
        self.with_app(host, |node, _, now, out| f(node, now, out));
    }

    /// Runs a command on a host's node now (a PING, a FILEGET, a leave);
    /// whatever it sends goes out on the network.
    pub fn command(
        &mut self,
        host: HostId,
        f: impl FnOnce(&mut SimNode, Instant, &mut dyn Transmit),
    ) {
        self.with_node(host, |node, now, out| f(node, now, out));
    }

    /// Runs `f` on a host's node and app, then sends what it sent,
    /// collects events and reschedules the host's wake-up, which it
    /// returns.
    fn with_app(
        &mut self,
        host: HostId,
        f: impl FnOnce(&mut SimNode, &mut Runner, Instant, &mut Outbox),
    ) -> Option<Instant> {
        let now = self.now;
        let mut out = Outbox::default();
        let mut left_counters = None;
        let (addr, next_wake) = {
            let h = self.hosts.get_mut(host)?;
            let node = h.node.as_deref_mut()?;
            f(node, &mut h.app, now, &mut out);
            driver::drain_events(node, &mut h.app);
            for event in h.app.events.drain(..) {
                if let Event::IdentityChosen(id) = event {
                    h.id = id;
                }
                h.events.push(event);
            }
            match &mut h.app.task {
                Task::Upload { upload, result } => {
                    while let Some(event) = upload.poll_event() {
                        match event {
                            UploadEvent::Finished { index_hash } => *result = Some(Ok(index_hash)),
                            UploadEvent::Failed(e) => *result = Some(Err(e)),
                            UploadEvent::Stored { .. } | UploadEvent::Searching { .. } => {}
                        }
                    }
                }
                Task::Download { download, result } => {
                    while let Some(event) = download.poll_event() {
                        match event {
                            DownloadEvent::Finished { .. } => {
                                *result = Some(Ok(std::mem::take(&mut download.sink_mut().0)))
                            }
                            DownloadEvent::Failed(e) => *result = Some(Err(e)),
                            DownloadEvent::IndexReceived { .. }
                            | DownloadEvent::Written { .. }
                            | DownloadEvent::Searching { .. } => {}
                        }
                    }
                }
                Task::Stream { download, result } => {
                    while let Some(event) = download.poll_event() {
                        match event {
                            DownloadEvent::Finished { .. } => {
                                *result = Some(Ok(download.sink().finish()))
                            }
                            DownloadEvent::Failed(e) => *result = Some(Err(e)),
                            _ => {}
                        }
                    }
                }
                Task::Idle | Task::Serve { .. } => {}
            }
            let next = driver::next_timeout(node, &h.app);
            if node.has_left() {
                // A node that left is down: its process would exit now.
                if let Some(node) = h.node.take() {
                    left_counters = Some(node.counters().clone());
                    h.disk = Some(node.into_store());
                }
                h.app.task = Task::Idle;
            }
            (h.addr, next)
        };
        if let Some(counters) = left_counters {
            self.retired.accumulate(&counters);
        }
        for (to, bytes) in out.datagrams {
            self.transmit(host, addr, to, bytes);
        }
        self.schedule_wake(host, next_wake);
        next_wake
    }

    fn schedule_wake(&mut self, host: HostId, at: Option<Instant>) {
        let Some(at) = at else { return };
        let at = at.max(self.now);
        let Some(h) = self.hosts.get_mut(host) else { return };
        if h.scheduled == Some(at) {
            return;
        }
        h.wake_generation += 1;
        h.scheduled = Some(at);
        let generation = h.wake_generation;
        self.push(at, Pending::Wake { host, generation });
    }

    fn push(&mut self, at: Instant, what: Pending) {
        self.seq += 1;
        self.queue.push(Reverse(Queued { at, seq: self.seq, what }));
    }

    fn latency(&mut self) -> Duration {
        let min = self.faults.latency_min.total_micros();
        let max = self.faults.latency_max.total_micros().max(min);
        let spread = (max - min) as usize;
        Duration::from_micros(min + self.rng.below(spread + 1) as u64)
    }

    fn transmit(&mut self, from_host: HostId, from: PeerAddr, to: PeerAddr, bytes: Vec<u8>) {
        let Some(&to_host) = self.by_addr.get(&to) else {
            self.stats.undeliverable += 1;
            return;
        };
        let same_side =
            self.hosts.get(from_host).map(|h| h.group) == self.hosts.get(to_host).map(|h| h.group);
        if !same_side {
            self.stats.undeliverable += 1;
            return;
        }
        if self.rng.chance(self.faults.loss_ppm, 1_000_000) {
            self.stats.lost += 1;
            return;
        }
        let mut at = self.now + self.latency();
        if self.rng.chance(self.faults.reorder_ppm, 1_000_000) {
            self.stats.reordered += 1;
            let extra = self.rng.below(self.faults.reorder_delay.total_micros() as usize + 1);
            at += Duration::from_micros(extra as u64);
        }
        if self.rng.chance(self.faults.duplicate_ppm, 1_000_000) {
            self.stats.duplicated += 1;
            let again = at + self.latency();
            self.push(again, Pending::Deliver { to: to_host, from, bytes: bytes.clone() });
        }
        self.push(at, Pending::Deliver { to: to_host, from, bytes });
    }
}

/// Helpers for building scenes in tests and benchmarks.
pub mod scene {
    use super::*;

    /// Adds `count` members that join one after another through `seed`
    /// (the first host added if `seed` is `None`, which then is the root),
    /// spacing their joins by `spacing`, and runs until all have joined.
    /// Returns the members' ids, or `None` if the joins did not complete
    /// within a virtual minute.
    pub fn join_members(
        sim: &mut Sim,
        config: Config,
        capacity: usize,
        count: usize,
        spacing: Duration,
    ) -> Option<Vec<HostId>> {
        let mut members = Vec::with_capacity(count);
        let root = sim.add_member(config, capacity);
        members.push(root);
        for _ in 1..count {
            let host = sim.add_member(config, capacity);
            if let Some(node) = sim.node_mut(host) {
                node.choose_shard_on_join(true);
            }
            sim.join(host, root);
            members.push(host);
            sim.run_for(spacing);
        }
        let all = members.clone();
        let joined =
            sim.run_until(Duration::from_secs(60), |s| all.iter().all(|&h| s.is_joined(h)));
        joined.then_some(members)
    }

    /// Every fragment address of a file uploaded as `name`: its data
    /// fragments and interior indexes in upload order, the root last.
    pub fn file_hashes(name: &str, mut data: &[u8]) -> Vec<FragmentHash> {
        let mut hashes = Vec::new();
        let name = IndexName::from_file_name(name);
        let _ = dht_core::upload::hash_file(name, &mut data, |_, hash| hashes.push(hash));
        hashes
    }

    /// The address of a file uploaded as `name`.
    pub fn file_address(name: &str, mut data: &[u8]) -> FragmentHash {
        let name = IndexName::from_file_name(name);
        dht_core::upload::hash_file(name, &mut data, |_, _| {}).unwrap_or_default()
    }

    /// Deterministic pseudo-random bytes.
    pub fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
        let mut rng = Rng::new(seed);
        let mut data = vec![0u8; len];
        rng.fill_bytes(&mut data);
        data
    }
}
