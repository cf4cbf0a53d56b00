//! Nodes on smoltcp stacks joined by an in-memory Ethernet hub: every byte
//! goes through smoltcp's ARP, IPv4 and UDP, one frame a datagram.
//! One node is small (4 fragment slots, `Config::small`) and its port drops
//! frames beyond a 10.5 KB receive FIFO, as the LAN9118 of QEMU's MPS2
//! boards does; it joins, stores its share of an upload, serves a download
//! and loses no frame.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;

use dht_core::download::{Download, DownloadEvent, FileSink};
use dht_core::node::{Reply, Transmit};
use dht_core::store::{FragmentStore, RamSlot, RamStore};
use dht_core::upload::{Bytes, Upload, UploadEvent};
use dht_core::{Config, Duration, FragmentHash, IndexName, Instant, Node, NodeId, PeerAddr, Shard};
use dht_smoltcp::smoltcp::phy::{self, Device, DeviceCapabilities, Medium};
use dht_smoltcp::smoltcp::time::Instant as SmolInstant;
use dht_smoltcp::{App, Buffers, Idle, SocketSlots, Stack, StackConfig};

struct TraceLog;
static NOW_MS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
impl log::Log for TraceLog {
    fn enabled(&self, _: &log::Metadata) -> bool {
        true
    }
    fn log(&self, record: &log::Record) {
        if std::env::var("HUB_TRACE").is_ok() {
            eprintln!(
                "{} {} {}",
                NOW_MS.load(std::sync::atomic::Ordering::Relaxed),
                record.target(),
                record.args()
            );
        }
    }
    fn flush(&self) {}
}

/// The LAN9118's receive FIFO in QEMU, in bytes.
const LAN9118_FIFO: usize = 10_560;

#[derive(Default)]
struct Hub {
    queues: Vec<VecDeque<Vec<u8>>>,
    fifo: Vec<Option<usize>>,
    drops: Vec<u64>,
    frames: u64,
}

impl Hub {
    /// Switches a frame: to the port with its destination address, or to
    /// every other port if it is a broadcast.
    fn deliver(&mut self, from: usize, frame: Vec<u8>) {
        self.frames += 1;
        if std::env::var("HUB_TRACE").is_ok() && self.fifo[from].is_some() {
            let et = u16::from_be_bytes([frame[12], frame[13]]);
            if et == 0x0806 {
                eprintln!("small ARP op {} target {:?}", frame[21], &frame[38..42]);
            } else {
                eprintln!("small IPv4 to {:?} len {}", &frame[30..34], frame.len());
            }
        }
        let Some(dst) = frame.get(..6) else { return };
        for to in 0..self.queues.len() {
            if to == from || (dst != mac(to) && dst != [0xFF; 6]) {
                continue;
            }
            let queued: usize = self.queues[to].iter().map(Vec::len).sum();
            if self.fifo[to].is_some_and(|cap| queued + frame.len() > cap) {
                self.drops[to] += 1;
                continue;
            }
            self.queues[to].push_back(frame.clone());
        }
    }

    fn busy(&self) -> bool {
        self.queues.iter().any(|q| !q.is_empty())
    }
}

fn mac(port: usize) -> [u8; 6] {
    [0x02, 0, 0, 0, (port >> 8) as u8, port as u8]
}

#[derive(Clone)]
struct Port {
    hub: Rc<RefCell<Hub>>,
    index: usize,
}

struct RxToken(Vec<u8>);
struct TxToken(Port);

impl phy::RxToken for RxToken {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.0)
    }
}

impl phy::TxToken for TxToken {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut frame = vec![0; len];
        let result = f(&mut frame);
        self.0.hub.borrow_mut().deliver(self.0.index, frame);
        result
    }
}

impl Device for Port {
    type RxToken<'a> = RxToken;
    type TxToken<'a> = TxToken;

    fn receive(&mut self, _now: SmolInstant) -> Option<(RxToken, TxToken)> {
        let frame = self.hub.borrow_mut().queues[self.index].pop_front()?;
        Some((RxToken(frame), TxToken(self.clone())))
    }

    fn transmit(&mut self, _now: SmolInstant) -> Option<TxToken> {
        Some(TxToken(self.clone()))
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = 1514;
        caps
    }
}

/// An upload or download running beside a client node.
#[derive(Default)]
struct ClientApp {
    upload: Option<Box<Upload<Bytes<Vec<u8>>, 8>>>,
    uploaded: Option<FragmentHash>,
    download: Option<Box<Download<Collect, 8>>>,
    downloaded: Option<Vec<u8>>,
    failed: Option<String>,
}

#[derive(Default)]
struct Collect(Vec<u8>);
impl FileSink for Collect {
    fn write(&mut self, bytes: &[u8]) -> bool {
        self.0.extend_from_slice(bytes);
        true
    }
}

impl ClientApp {
    fn drain(&mut self) {
        if let Some(upload) = self.upload.as_mut() {
            while let Some(event) = upload.poll_event() {
                match event {
                    UploadEvent::Finished { index_hash } => self.uploaded = Some(index_hash),
                    UploadEvent::Failed(e) => self.failed = Some(format!("upload: {e:?}")),
                    UploadEvent::Stored { .. } | UploadEvent::Searching { .. } => {}
                }
            }
        }
        if let Some(download) = self.download.as_mut() {
            while let Some(event) = download.poll_event() {
                match event {
                    DownloadEvent::Finished { .. } => {
                        self.downloaded = Some(std::mem::take(&mut download.sink_mut().0))
                    }
                    DownloadEvent::Failed(e) => self.failed = Some(format!("download: {e:?}")),
                    _ => {}
                }
            }
        }
    }
}

type HostNode = Node<RamStore<Box<[RamSlot]>>>;

impl App<RamStore<Box<[RamSlot]>>, 256, 1024, 64> for ClientApp {
    fn poll_timeout(&self) -> Option<Instant> {
        let up = self.upload.as_ref().and_then(|u| u.poll_timeout());
        let down = self.download.as_ref().and_then(|d| d.poll_timeout());
        up.into_iter().chain(down).min()
    }

    fn handle_timeout<T: Transmit>(&mut self, now: Instant, node: &mut HostNode, tx: &mut T) {
        if let Some(upload) = self.upload.as_mut() {
            upload.handle_timeout(now, node, tx);
        }
        if let Some(download) = self.download.as_mut() {
            download.handle_timeout(now, node, tx);
        }
        self.drain();
    }

    fn handle_reply<T: Transmit>(
        &mut self,
        now: Instant,
        node: &mut HostNode,
        reply: &Reply<'_>,
        tx: &mut T,
    ) {
        if let Some(upload) = self.upload.as_mut() {
            upload.handle_reply(now, node, reply, tx);
        }
        if let Some(download) = self.download.as_mut() {
            download.handle_reply(now, node, reply, tx);
        }
        self.drain();
    }
}

/// A node on its own stack and hub port.
struct Host<S: FragmentStore, const N: usize, const D: usize, const F: usize, A> {
    stack: Stack<'static>,
    port: Port,
    node: Node<S, N, D, F>,
    app: A,
    addr: PeerAddr,
}

impl<S: FragmentStore, const N: usize, const D: usize, const F: usize, A: App<S, N, D, F>>
    Host<S, N, D, F, A>
{
    fn service(&mut self, now: Instant) -> Option<Instant> {
        NOW_MS.store(
            now.total_millis() * 1000 + self.port.index as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
        self.stack.service(now, &mut self.port, &mut self.node, &mut self.app)
    }

    fn join(&mut self, now: Instant, seed: PeerAddr) {
        let mut tx = self.stack.tx(now, &mut self.port);
        self.node.join(now, seed, &mut tx);
        tx.flush();
    }
}

struct Net {
    hub: Rc<RefCell<Hub>>,
    now: Instant,
}

impl Net {
    fn new() -> Net {
        Net { hub: Rc::new(RefCell::new(Hub::default())), now: Instant::ZERO }
    }

    fn host<S: FragmentStore, const N: usize, const D: usize, const F: usize, A>(
        &mut self,
        config: Config,
        id: NodeId,
        store: S,
        app: A,
    ) -> Host<S, N, D, F, A> {
        let index = {
            let mut hub = self.hub.borrow_mut();
            hub.queues.push(VecDeque::new());
            hub.fifo.push(None);
            hub.drops.push(0);
            hub.queues.len() - 1
        };
        let ip = [10, 0, (index >> 8) as u8, index as u8 + 1];
        let mut port = Port { hub: self.hub.clone(), index };
        let buffers: &'static mut Buffers = Box::leak(Box::new(Buffers::new()));
        let slots: &'static mut SocketSlots<'static> = Box::leak(Box::new(SocketSlots::new()));
        let config_stack = StackConfig {
            mac: mac(index),
            address: ip,
            prefix_len: 16,
            gateway: None,
            port: 9000,
            translation: None,
        };
        let iface = Box::leak(Box::new(dht_smoltcp::interface(mac(index), &mut port, self.now)));
        let stack = Stack::new(config_stack, iface, buffers, slots).unwrap();
        let addr = PeerAddr::v4(ip, 9000);
        let node = Node::new(config, id, addr, index as u64 + 1, store).unwrap();
        Host { stack, port, node, app, addr }
    }
}

fn host_store(slots: usize) -> RamStore<Box<[RamSlot]>> {
    RamStore::new(vec![RamSlot::EMPTY; slots].into_boxed_slice())
}

/// 16 members (one per shard), a small node in shard 5 with a LAN9118
/// FIFO, and a client that uploads a file with a share for the small node
/// and another that downloads it through the small node.
#[test]
fn small_node_behind_a_lan9118_fifo_stores_and_serves_over_smoltcp() {
    let _ = log::set_logger(&TraceLog);
    log::set_max_level(log::LevelFilter::Trace);
    let mut net = Net::new();
    let mut members: Vec<Host<_, 256, 1024, 64, Idle>> = (0..16u8)
        .map(|s| {
            let id = NodeId::in_shard(0x1000 + u64::from(s) * 7919, Shard::new(s).unwrap());
            net.host(Config::member(), id, host_store(64), Idle)
        })
        .collect();
    let shard = Shard::new(5).unwrap();
    // The small node's pieces fit a frame (1472 bytes on this hub).
    let small_config =
        dht_smoltcp::link_config(Config::small(), &Port { hub: net.hub.clone(), index: 0 });
    assert_eq!(small_config.max_datagram, 1472);
    let mut small: Host<RamStore<[RamSlot; 4]>, 40, 64, 4, Idle> = net.host(
        small_config,
        NodeId::in_shard(0xABCD, shard),
        RamStore::new([RamSlot::EMPTY; 4]),
        Idle,
    );
    net.hub.borrow_mut().fifo[small.port.index] = Some(LAN9118_FIFO);
    let small_index = small.port.index;
    let mut sender: Host<_, 256, 1024, 64, ClientApp> =
        net.host(Config::client(), NodeId(0x5E4D), host_store(0), ClientApp::default());
    let mut receiver: Host<_, 256, 1024, 64, ClientApp> =
        net.host(Config::client(), NodeId(0x4ECE), host_store(0), ClientApp::default());

    // Join: members through the first, the small node through member 3.
    let root = members[0].addr;
    let seed = members[3].addr;
    for m in members.iter_mut().skip(1) {
        m.join(net.now, root);
    }
    small.join(net.now, seed);
    let joined =
        run(&mut net, Duration::from_secs(20), &mut members, &mut small, &mut [], |m, s, _| {
            m.iter().all(|h| h.node.is_joined()) && s.node.is_joined()
        });
    assert!(joined, "nodes did not join over smoltcp");
    run(&mut net, Duration::from_secs(2), &mut members, &mut small, &mut [], |_, _, _| false);
    assert!(members.iter().any(|m| m.node.neighbors().iter().any(|n| n.peer.addr == small.addr)));

    // A file with two to four fragments in the small node's shard.
    let data = (1..500u64)
        .map(|seed| {
            let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15);
            (0..12 * 8192 + 77)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect::<Vec<u8>>()
        })
        .find(|data| {
            let n = hashes_of(data).iter().filter(|h| h.shard() == shard).count();
            (2..=4).contains(&n)
        })
        .unwrap();
    let share: Vec<FragmentHash> =
        hashes_of(&data).into_iter().filter(|h| h.shard() == shard).collect();

    sender.join(net.now, members[7].addr);
    receiver.join(net.now, small.addr);
    let clients_joined = run(
        &mut net,
        Duration::from_secs(10),
        &mut members,
        &mut small,
        &mut [&mut sender, &mut receiver],
        |_, _, c| c.iter().all(|h| h.node.is_joined()),
    );
    if !clients_joined {
        for c in [&sender, &receiver] {
            eprintln!(
                "client {} joined {} neighbors {} stats {:?} sent {} recv {}",
                c.addr,
                c.node.is_joined(),
                c.node.neighbors().len(),
                c.stack.stats(),
                c.node.counters().sent_total().datagrams,
                c.node.counters().received_total().datagrams
            );
        }
        eprintln!(
            "small queue {} drops {} neighbors {:?}",
            small.stack.send_queue(),
            net.hub.borrow().drops[small_index],
            small.node.neighbors().iter().map(|n| n.peer.addr).collect::<Vec<_>>()
        );
        eprintln!(
            "small {:?} sent {} recv {}",
            small.stack.stats(),
            small.node.counters().sent_total().datagrams,
            small.node.counters().received_total().datagrams
        );
    }
    assert!(clients_joined, "clients did not join");

    let name = IndexName::from_file_name("hub.bin");
    let index = dht_core::upload::hash_file(name, &mut Bytes(&data), |_, _| {}).unwrap();
    let upload = Upload::<_, 8>::new(name, Bytes(data.clone())).unwrap();
    sender.app.upload = Some(Box::new(upload));
    {
        let now = net.now;
        let Host { stack, port, node, app, .. } = &mut sender;
        let mut tx = stack.tx(now, port);
        app.upload.as_mut().unwrap().start(now, node, &mut tx);
        tx.flush();
    }
    let uploaded = run(
        &mut net,
        Duration::from_secs(60),
        &mut members,
        &mut small,
        &mut [&mut sender, &mut receiver],
        |_, _, c| c[0].app.uploaded.is_some() || c[0].app.failed.is_some(),
    );
    if sender.app.failed.is_some() {
        for (i, m) in members.iter().enumerate() {
            eprintln!(
                "member {i} {} joined {} neighbors {} stats {:?} counters sent {} recv {}",
                m.addr,
                m.node.is_joined(),
                m.node.neighbors().len(),
                m.stack.stats(),
                m.node.counters().sent_total().datagrams,
                m.node.counters().received_total().datagrams
            );
        }
        eprintln!(
            "sender neighbors {}: {:?}",
            sender.node.neighbors().len(),
            sender.node.neighbors().iter().map(|n| n.peer.addr).collect::<Vec<_>>()
        );
        eprintln!("sender stats {:?}", sender.stack.stats());
    }
    assert!(uploaded, "upload did not finish");
    assert_eq!(sender.app.failed, None);
    assert_eq!(sender.app.uploaded, Some(index));
    // Let replication settle.
    run(&mut net, Duration::from_secs(5), &mut members, &mut small, &mut [], |_, _, _| false);
    let held: Vec<FragmentHash> =
        share.iter().copied().filter(|h| small.node.store().contains(h)).collect();
    println!(
        "small node holds {} of its shard's {} fragments; FIFO drops {}; frames on the hub {}",
        held.len(),
        share.len(),
        net.hub.borrow().drops[small_index],
        net.hub.borrow().frames
    );
    assert_eq!(held.len(), share.len(), "the small node is missing some of its share");
    assert_eq!(net.hub.borrow().drops[small_index], 0, "frames were dropped at the small node");

    // Download through the small node as entry point.
    receiver.app.download = Some(Box::new(Download::new(index, Collect::default())));
    {
        let now = net.now;
        let Host { stack, port, node, app, .. } = &mut receiver;
        let mut tx = stack.tx(now, port);
        app.download.as_mut().unwrap().start(now, node, &mut tx);
        tx.flush();
    }
    let downloaded = run(
        &mut net,
        Duration::from_secs(60),
        &mut members,
        &mut small,
        &mut [&mut sender, &mut receiver],
        |_, _, c| c[1].app.downloaded.is_some() || c[1].app.failed.is_some(),
    );
    assert!(downloaded, "download did not finish");
    assert_eq!(receiver.app.failed, None);
    assert!(receiver.app.downloaded.as_deref() == Some(&data[..]), "downloaded bytes differ");
    assert!(small.node.counters().fragments_served > 0 || share.is_empty());
    assert_eq!(net.hub.borrow().drops[small_index], 0);
    assert_eq!(small.stack.stats().send_failed, 0);
}

type Member = Host<RamStore<Box<[RamSlot]>>, 256, 1024, 64, Idle>;
type Small = Host<RamStore<[RamSlot; 4]>, 40, 64, 4, Idle>;
type Client = Host<RamStore<Box<[RamSlot]>>, 256, 1024, 64, ClientApp>;

fn run(
    net: &mut Net,
    limit: Duration,
    members: &mut [Member],
    small: &mut Small,
    clients: &mut [&mut Client],
    mut done: impl FnMut(&[Member], &Small, &[&mut Client]) -> bool,
) -> bool {
    // 100 µs steps while frames are in flight, otherwise a jump to the next
    // wake-up.
    let end = net.now + limit;
    while net.now < end {
        let now = net.now;
        let mut next = now + Duration::from_millis(50);
        let mut wake = |at: Option<Instant>| {
            if let Some(at) = at {
                next = next.min(at);
            }
        };
        for m in members.iter_mut() {
            wake(m.service(now));
        }
        wake(small.service(now));
        for c in clients.iter_mut() {
            wake(c.service(now));
        }
        if done(members, small, clients) {
            return true;
        }
        let step = now + Duration::from_micros(100);
        net.now = if net.hub.borrow().busy() { step } else { next.max(step) };
    }
    done(members, small, clients)
}

fn hashes_of(mut data: &[u8]) -> Vec<FragmentHash> {
    let mut hashes = Vec::new();
    let name = IndexName::from_file_name("hub.bin");
    dht_core::upload::hash_file(name, &mut data, |_, hash| hashes.push(hash)).unwrap();
    hashes
}

#[test]
fn smoltcp_time_conversion_is_monotonic_and_saturates() {
    let a = dht_smoltcp::smol_instant(Instant::from_micros(1_500));
    assert_eq!(a.total_micros(), 1_500);
    let far = dht_smoltcp::smol_instant(Instant::from_micros(u64::MAX));
    assert_eq!(far.total_micros(), i64::MAX);
}
