//! A small network of nodes on a virtual clock, for the unit tests of the
//! node and the client machines, modelled on quinn-proto's `tests/util.rs`:
//! a pair or a trio of hosts, so that one behaviour is shown by a short
//! test rather than a 256-node scenario (that is `dht-sim`'s job).
//!
//! Every host is a node and an [`App`] ([`Task`]): nothing, an upload or a
//! download. Datagrams take [`Net::latency`] to arrive, in order, unless
//! [`Net::lose`] drops them. [`Net::step`] handles the earliest event (a
//! delivery or a wake-up), [`Net::drive`] runs until no datagram is in
//! flight, [`Net::run_for`] and [`Net::run_until`] run virtual time. After
//! every wake-up the harness checks the wake-up invariant of
//! [`crate::node`]: the host's next wake-up is later than now.

extern crate std;

use std::boxed::Box;
use std::collections::VecDeque;
use std::vec::Vec;

use crate::config::{Config, FRAGMENT_SIZE};
use crate::download::{Download, FileSink};
use crate::driver::{self, App};
use crate::fragment::FragmentHash;
use crate::id::{NodeId, PeerAddr, Shard};
use crate::index::IndexName;
use crate::node::{Event, Node, Reply, SendError, Transmit};
use crate::rand::Rng;
use crate::store::{RamSlot, RamStore};
use crate::time::{Duration, Instant};
use crate::upload::{Bytes, Upload};
use crate::wire::{Cookies, Message, Packet, Source, StoreOutcome, Transmission};

/// The node of the harness: small tables, a RAM store.
pub(crate) type TestNode = Node<RamStore<Vec<RamSlot>>, 64, 256, 16>;

impl FileSink for Vec<u8> {
    fn write(&mut self, bytes: &[u8]) -> bool {
        self.extend_from_slice(bytes);
        true
    }
}

/// A download's file in memory: it may start with what an interrupted
/// download left (`bytes`), which the download checks and skips where
/// right; written bytes go at `at`.
#[derive(Debug, Default)]
pub(crate) struct Sink {
    pub(crate) bytes: Vec<u8>,
    at: usize,
}

impl FileSink for Sink {
    fn write(&mut self, bytes: &[u8]) -> bool {
        let end = self.at + bytes.len();
        if self.bytes.len() < end {
            self.bytes.resize(end, 0);
        }
        self.bytes[self.at..end].copy_from_slice(bytes);
        self.at = end;
        true
    }
    fn holds(&mut self, offset: u64, len: usize, hash: &FragmentHash) -> bool {
        let start = offset as usize;
        let Some(have) = self.bytes.get(start..start + len) else { return false };
        let mut fragment = [0u8; FRAGMENT_SIZE];
        fragment[..len].copy_from_slice(have);
        FragmentHash::of(&fragment) == *hash
    }
    fn skip(&mut self, len: usize) -> bool {
        self.at += len;
        true
    }
}

/// What a host runs beside its node.
pub(crate) enum Task {
    Idle,
    Upload(Box<Upload<Bytes<Vec<u8>>, 8>>),
    Download(Box<Download<Sink, 4>>),
    /// A download with one slot, as on a microcontroller.
    SmallDownload(Box<Download<Sink, 1>>),
    /// One fragment offered to a member: served when it asks, with the
    /// answers it gave.
    Offer(Box<Offering>),
    /// A read-back of fragments.
    Verify(Box<crate::verify::Verify<4>>),
}

/// A fragment a host offered, and the STORED answers it got.
pub(crate) struct Offering {
    pub(crate) data: [u8; FRAGMENT_SIZE],
    pub(crate) hash: FragmentHash,
    pub(crate) answers: Vec<(PeerAddr, StoreOutcome)>,
}

/// Datagrams one call sent.
#[derive(Default)]
pub(crate) struct Outbox(Vec<(PeerAddr, Vec<u8>)>);

impl Outbox {
    /// The datagrams sent: (to, bytes).
    pub(crate) fn sent(&self) -> &[(PeerAddr, Vec<u8>)] {
        &self.0
    }
}

impl Transmit for Outbox {
    fn send(&mut self, to: PeerAddr, datagram: &[u8]) -> Result<(), SendError> {
        self.0.push((to, datagram.to_vec()));
        Ok(())
    }
}

/// A host's task and the node events it saw (the driver hands the node's
/// events to the application).
pub(crate) struct Runner {
    pub(crate) task: Task,
    pub(crate) events: Vec<Event>,
}

impl App<RamStore<Vec<RamSlot>>, 64, 256, 16> for Runner {
    fn poll_timeout(&self) -> Option<Instant> {
        match &self.task {
            Task::Idle | Task::Offer(_) => None,
            Task::Verify(v) => v.poll_timeout(),
            Task::Upload(u) => u.poll_timeout(),
            Task::Download(d) => d.poll_timeout(),
            Task::SmallDownload(d) => d.poll_timeout(),
        }
    }
    fn handle_timeout<T: Transmit>(&mut self, now: Instant, node: &mut TestNode, tx: &mut T) {
        match &mut self.task {
            Task::Idle | Task::Offer(_) => {}
            Task::Verify(v) => v.handle_timeout(now, node, tx),
            Task::Upload(u) => u.handle_timeout(now, node, tx),
            Task::Download(d) => d.handle_timeout(now, node, tx),
            Task::SmallDownload(d) => d.handle_timeout(now, node, tx),
        }
    }
    fn handle_reply<T: Transmit>(
        &mut self,
        now: Instant,
        node: &mut TestNode,
        reply: &Reply<'_>,
        tx: &mut T,
    ) {
        match &mut self.task {
            Task::Idle => {}
            Task::Upload(u) => u.handle_reply(now, node, reply, tx),
            Task::Download(d) => d.handle_reply(now, node, reply, tx),
            Task::SmallDownload(d) => d.handle_reply(now, node, reply, tx),
            Task::Verify(v) => v.handle_reply(now, node, reply, tx),
            Task::Offer(offer) => match reply {
                Reply::FileGet { from, hash, want, piece_units } if *hash == offer.hash => {
                    let data = &offer.data;
                    let fill = |buf: &mut [u8; FRAGMENT_SIZE]| {
                        buf.copy_from_slice(data);
                        true
                    };
                    let _ = node.send_pieces(now, from.addr, *hash, *want, *piece_units, fill, tx);
                }
                Reply::Stored { from, hash, outcome, .. } if *hash == offer.hash => {
                    offer.answers.push((from.addr, *outcome));
                }
                _ => {}
            },
        }
    }
    fn handle_event(&mut self, _: &TestNode, event: Event) {
        self.events.push(event);
    }
}

pub(crate) struct Host {
    pub(crate) node: TestNode,
    pub(crate) app: Runner,
    wake: Option<Instant>,
}

impl Host {
    /// The node's events so far.
    pub(crate) fn events(&self) -> &[Event] {
        &self.app.events
    }
}

/// A datagram in flight.
struct InFlight {
    at: Instant,
    from: PeerAddr,
    to: PeerAddr,
    bytes: Vec<u8>,
}

/// A predicate over (from, to, datagram): `true` drops it.
type Loss = Box<dyn FnMut(PeerAddr, PeerAddr, &[u8]) -> bool>;

/// Changes datagrams in flight (from, to, datagram).
type Tamper = Box<dyn FnMut(PeerAddr, PeerAddr, &mut Vec<u8>)>;

pub(crate) struct Net {
    pub(crate) now: Instant,
    pub(crate) hosts: Vec<Host>,
    pub(crate) latency: Duration,
    queue: VecDeque<InFlight>,
    loss: Option<Loss>,
    tamper: Option<Tamper>,
    rng: Rng,
    /// Datagrams delivered so far.
    pub(crate) delivered: usize,
}

impl Net {
    pub(crate) fn new(seed: u64) -> Net {
        Net {
            now: Instant::from_millis(1),
            hosts: Vec::new(),
            latency: Duration::from_micros(200),
            queue: VecDeque::new(),
            loss: None,
            tamper: None,
            rng: Rng::new(seed),
            delivered: 0,
        }
    }

    pub(crate) fn addr(i: usize) -> PeerAddr {
        PeerAddr::v4([127, 0, 0, 1], 10_000 + i as u16)
    }

    /// Adds a host with id `id`, `capacity` fragment slots and `config`.
    pub(crate) fn add(&mut self, config: Config, id: NodeId, capacity: usize) -> usize {
        let i = self.hosts.len();
        let store = RamStore::new(std::vec![RamSlot::EMPTY; capacity]);
        let node = Node::new(config, id, Net::addr(i), self.rng.next_u64(), store)
            .expect("the test configuration is valid");
        let app = Runner { task: Task::Idle, events: Vec::new() };
        self.hosts.push(Host { node, app, wake: None });
        i
    }

    /// Adds a member of `shard`.
    pub(crate) fn add_member(&mut self, shard: u8, capacity: usize) -> usize {
        let shard = Shard::new(shard).expect("a shard below 16");
        let id = NodeId::in_shard(self.rng.next_u64(), shard);
        self.add(Config::member(), id, capacity)
    }

    /// Adds a client.
    pub(crate) fn add_client(&mut self) -> usize {
        let id = NodeId(self.rng.next_u64());
        self.add(Config::client(), id, 0)
    }

    /// A client joined through host `via`, asserting that it joins within
    /// `within`.
    pub(crate) fn add_joined_client(&mut self, via: usize, within: Duration) -> usize {
        let client = self.add_client();
        self.join(client, via);
        assert!(self.run_until(within, |n| n.node(client).is_joined()), "no join via {via}");
        client
    }

    pub(crate) fn node(&self, i: usize) -> &TestNode {
        &self.hosts[i].node
    }

    /// Drops the datagrams for which `loss(from, to, bytes)` holds.
    pub(crate) fn lose(&mut self, loss: impl FnMut(PeerAddr, PeerAddr, &[u8]) -> bool + 'static) {
        self.loss = Some(Box::new(loss));
    }

    /// Changes datagrams in flight with `tamper(from, to, bytes)`.
    pub(crate) fn tamper(
        &mut self,
        tamper: impl FnMut(PeerAddr, PeerAddr, &mut Vec<u8>) + 'static,
    ) {
        self.tamper = Some(Box::new(tamper));
    }

    /// Host `i` offers `data` (one fragment) to host `to`, and serves it
    /// when asked; returns its hash.
    pub(crate) fn offer(
        &mut self,
        i: usize,
        to: usize,
        data: &[u8; FRAGMENT_SIZE],
    ) -> FragmentHash {
        let hash = FragmentHash::of(data);
        let offering = Offering { data: *data, hash, answers: Vec::new() };
        self.hosts[i].app.task = Task::Offer(Box::new(offering));
        let to = Net::addr(to);
        self.command(i, |node, now, out| {
            node.offer(now, to, hash, 0, out);
        });
        hash
    }

    /// Reads back `checks` from host `i` and returns what it found (runs
    /// until the check is over).
    pub(crate) fn verify(
        &mut self,
        i: usize,
        checks: &[crate::verify::Check],
    ) -> Vec<crate::verify::VerifyEvent> {
        let verify = crate::verify::Verify::new(checks).expect("four checks at most");
        self.hosts[i].app.task = Task::Verify(Box::new(verify));
        self.kick(i);
        let done = |n: &Net| matches!(&n.hosts[i].app.task, Task::Verify(v) if v.is_done());
        assert!(self.run_until(Duration::from_secs(60), done), "the check ends");
        let mut events = Vec::new();
        if let Task::Verify(v) = &mut self.hosts[i].app.task {
            while let Some(event) = v.poll_event() {
                if !matches!(event, crate::verify::VerifyEvent::Finished { .. }) {
                    events.push(event);
                }
            }
        }
        events
    }

    /// The STORED answers host `i`'s offer got.
    pub(crate) fn offer_answers(&self, i: usize) -> &[(PeerAddr, StoreOutcome)] {
        match &self.hosts[i].app.task {
            Task::Offer(offer) => &offer.answers,
            _ => &[],
        }
    }

    /// Hands host `i` a datagram forged by a host at `from` (no key), with
    /// `message` from `source`; `proven` if it echoes host `i`'s cookie for
    /// `from` (as a host that listens at `from` could), padded like an
    /// honest first contact otherwise.
    pub(crate) fn forge(
        &mut self,
        i: usize,
        from: PeerAddr,
        source: Source,
        transmission: Transmission,
        message: Message<'_>,
        proven: bool,
    ) {
        let echo = proven.then(|| self.hosts[i].node.cookie_for(from, self.now));
        let packet =
            Packet { transmission, source, cookies: Cookies { echo, grant: None }, message };
        let mut buf = std::vec![0u8; crate::config::MAX_DATAGRAM_SIZE];
        let min = if proven { 0 } else { crate::node::UNPROVEN_MIN };
        let len = packet.encode_padded(&mut buf, min).expect("fits");
        buf.truncate(len);
        self.inject(i, from, &buf);
    }

    /// Runs a command on host `i`'s node (join, leave, ...).
    pub(crate) fn command(
        &mut self,
        i: usize,
        f: impl FnOnce(&mut TestNode, Instant, &mut Outbox),
    ) {
        let now = self.now;
        let mut out = Outbox::default();
        {
            let host = &mut self.hosts[i];
            f(&mut host.node, now, &mut out);
            driver::drain_events(&mut host.node, &mut host.app);
        }
        self.after(i, out);
    }

    /// Makes host `i` join through host `seed`.
    pub(crate) fn join(&mut self, i: usize, seed: usize) {
        let seed = Net::addr(seed);
        self.command(i, |node, now, out| node.join(now, seed, out));
    }

    /// Starts uploading `data` as `name` from host `i`; returns the file's
    /// address.
    pub(crate) fn upload(&mut self, i: usize, name: &str, data: Vec<u8>) -> FragmentHash {
        let name = IndexName::from_file_name(name);
        let hash = crate::upload::hash_file(name, &mut Bytes(&data), |_, _| {})
            .expect("the file can be hashed");
        let upload = Upload::new(name, Bytes(data)).map_err(|(e, _)| e).expect("the upload starts");
        self.hosts[i].app.task = Task::Upload(Box::new(upload));
        self.command(i, |_, _, _| {});
        self.kick(i);
        hash
    }

    /// Starts downloading `hash` on host `i`.
    pub(crate) fn download(&mut self, i: usize, hash: FragmentHash) {
        self.download_over(i, hash, Vec::new());
    }

    /// Starts downloading `hash` on host `i` into what an interrupted
    /// download left: `left`.
    pub(crate) fn download_over(&mut self, i: usize, hash: FragmentHash, left: Vec<u8>) {
        let sink = Sink { bytes: left, at: 0 };
        self.hosts[i].app.task = Task::Download(Box::new(Download::new(hash, sink)));
        self.kick(i);
    }

    /// Data fragments host `i`'s download found already there.
    pub(crate) fn reused(&self, i: usize) -> u64 {
        match &self.hosts[i].app.task {
            Task::Download(d) => d.reused(),
            _ => 0,
        }
    }

    /// Starts downloading `hash` on host `i` with a single slot.
    pub(crate) fn download_one_slot(&mut self, i: usize, hash: FragmentHash) {
        let download = Download::new(hash, Sink::default());
        self.hosts[i].app.task = Task::SmallDownload(Box::new(download));
        self.kick(i);
    }

    /// Starts host `i`'s task.
    fn kick(&mut self, i: usize) {
        let now = self.now;
        let mut out = Outbox::default();
        {
            let host = &mut self.hosts[i];
            match &mut host.app.task {
                Task::Upload(u) => u.start(now, &mut host.node, &mut out),
                Task::Download(d) => d.start(now, &mut host.node, &mut out),
                Task::SmallDownload(d) => d.start(now, &mut host.node, &mut out),
                Task::Verify(v) => v.start(now, &mut host.node, &mut out),
                Task::Idle | Task::Offer(_) => {}
            }
        }
        self.after(i, out);
    }

    fn after(&mut self, i: usize, out: Outbox) {
        let from = Net::addr(i);
        for (to, mut bytes) in out.0 {
            if let Some(tamper) = self.tamper.as_mut() {
                tamper(from, to, &mut bytes);
            }
            let lost = self.loss.as_mut().is_some_and(|loss| loss(from, to, &bytes));
            if !lost {
                self.queue.push_back(InFlight { at: self.now + self.latency, from, to, bytes });
            }
        }
        let host = &mut self.hosts[i];
        driver::drain_events(&mut host.node, &mut host.app);
        host.wake = driver::next_timeout(&host.node, &host.app);
    }

    /// Handles the earliest event; `false` if there is none before `end`.
    pub(crate) fn step(&mut self, end: Instant) -> bool {
        let delivery = self.queue.front().map(|d| d.at);
        let wake = self.hosts.iter().enumerate().filter_map(|(i, h)| h.wake.map(|w| (w, i))).min();
        match (delivery, wake) {
            (Some(at), w) if at <= end && w.is_none_or(|(w, _)| at <= w) => {
                let datagram = self.queue.pop_front().expect("peeked");
                self.now = self.now.max(at);
                self.deliver(datagram);
                true
            }
            (_, Some((at, i))) if at <= end => {
                self.now = self.now.max(at);
                let now = self.now;
                let mut out = Outbox::default();
                {
                    let host = &mut self.hosts[i];
                    let next = driver::on_timeout(&mut host.node, &mut host.app, now, &mut out);
                    assert!(
                        next.is_none_or(|next| next > now),
                        "host {i} woken at {now} asks to be woken again at {next:?}"
                    );
                }
                self.after(i, out);
                true
            }
            _ => false,
        }
    }

    fn deliver(&mut self, datagram: InFlight) {
        let Some(i) = self.hosts.iter().position(|h| h.node.me().addr == datagram.to) else {
            return;
        };
        if self.hosts[i].node.has_left() {
            return;
        }
        self.delivered += 1;
        let now = self.now;
        let mut out = Outbox::default();
        {
            let host = &mut self.hosts[i];
            driver::on_datagram(
                &mut host.node,
                &mut host.app,
                now,
                datagram.from,
                &datagram.bytes,
                &mut out,
            );
        }
        self.after(i, out);
    }

    /// Hands `bytes` to host `i` as if from `from`, now.
    pub(crate) fn inject(&mut self, i: usize, from: PeerAddr, bytes: &[u8]) {
        let datagram = InFlight { at: self.now, from, to: Net::addr(i), bytes: bytes.to_vec() };
        self.deliver(datagram);
    }

    /// Runs until no datagram is in flight (at most a virtual minute).
    pub(crate) fn drive(&mut self) {
        let end = self.now + Duration::from_secs(60);
        while !self.queue.is_empty() {
            assert!(self.step(end), "the network did not go quiet within a virtual minute");
        }
    }

    /// Runs `steps` events at most; panics if more were pending.
    pub(crate) fn drive_bounded(&mut self, steps: usize) {
        let end = self.now + Duration::from_secs(60);
        for _ in 0..steps {
            if self.queue.is_empty() {
                return;
            }
            self.step(end);
        }
        assert!(self.queue.is_empty(), "still busy after {steps} steps");
    }

    /// Runs `span` of virtual time.
    pub(crate) fn run_for(&mut self, span: Duration) {
        let end = self.now + span;
        while self.step(end) {}
        self.now = self.now.max(end);
    }

    /// Runs until `done` holds (checked after every event) or `limit`
    /// passes; returns whether `done` held.
    pub(crate) fn run_until(
        &mut self,
        limit: Duration,
        mut done: impl FnMut(&Net) -> bool,
    ) -> bool {
        let end = self.now + limit;
        loop {
            if done(self) {
                return true;
            }
            if !self.step(end) {
                return done(self);
            }
        }
    }

    /// A network of `count` members, one per shard in turn, all joined
    /// through the first.
    pub(crate) fn joined(seed: u64, count: usize, capacity: usize) -> Net {
        let mut net = Net::new(seed);
        for i in 0..count {
            net.add_member((i % 16) as u8, capacity);
        }
        for i in 1..count {
            net.join(i, 0);
            net.run_for(Duration::from_millis(5));
        }
        let all =
            net.run_until(Duration::from_secs(10), |n| n.hosts.iter().all(|h| h.node.is_joined()));
        assert!(all, "every member joins");
        net.run_for(Duration::from_secs(1));
        net
    }

    /// The result of host `i`'s upload.
    pub(crate) fn upload_done(
        &self,
        i: usize,
    ) -> Option<Result<FragmentHash, crate::upload::UploadError>> {
        match &self.hosts[i].app.task {
            Task::Upload(u) if u.is_finished() => u.index_hash().map(Ok),
            Task::Upload(u) => u.error().map(Err),
            _ => None,
        }
    }

    /// The bytes of host `i`'s finished download.
    pub(crate) fn downloaded(
        &self,
        i: usize,
    ) -> Option<Result<&[u8], crate::download::DownloadError>> {
        match &self.hosts[i].app.task {
            Task::Download(d) if d.is_finished() => Some(Ok(d.sink().bytes.as_slice())),
            Task::Download(d) => d.error().map(Err),
            Task::SmallDownload(d) if d.is_finished() => Some(Ok(d.sink().bytes.as_slice())),
            Task::SmallDownload(d) => d.error().map(Err),
            _ => None,
        }
    }
}

/// Deterministic bytes.
pub(crate) fn bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut data = std::vec![0u8; len];
    Rng::new(seed).fill_bytes(&mut data);
    data
}
