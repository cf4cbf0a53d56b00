//! Client operations for the tools: join as a client, upload, download,
//! ping, ask for statistics. Each runs the core's state machine in the
//! event loop with a deadline, and turns failures into [`ClientError`]s
//! whose messages say what to do.

use std::fmt;
use std::fs::File;
use std::io;
use std::net::SocketAddr;
use std::os::unix::fs::FileExt;
use std::time::Duration as StdDuration;

use dht_core::download::{Download, DownloadError, DownloadEvent, FileSink};
use dht_core::driver::{App, Watched};
use dht_core::node::{Event, Reply, Transmit};
use dht_core::store::NoStore;
use dht_core::upload::{FileSource, Upload, UploadError, UploadEvent};
use dht_core::wire::{Listed, NodeStats, Transmission};
use dht_core::{
    Config, Duration, FragmentHash, IndexName, Instant, Node, NodeId, PeerAddr, PeerInfo, Shard,
};

use crate::runtime::{Clock, Runtime, Stop};
use crate::transport::{client_bind_addr, UdpTransport};

/// A client's node: stores nothing.
pub type ClientNode = Node<NoStore>;

/// Why a client operation failed.
#[derive(Debug)]
pub enum ClientError {
    /// A socket or file error.
    Io(io::Error),
    /// Nobody answered at the entry node within the time allowed.
    NoAnswer {
        /// The entry node.
        entry: SocketAddr,
        /// How long we waited.
        waited: StdDuration,
    },
    /// The upload failed.
    Upload(UploadError),
    /// The download failed.
    Download(DownloadError),
    /// Nothing listens at the entry node's port: the kernel said so (an
    /// ICMP "port unreachable", on loopback or a LAN) before any answer.
    Refused {
        /// The entry node.
        entry: SocketAddr,
    },
    /// The operation did not finish in time.
    Timeout {
        /// What was going on.
        what: &'static str,
        /// How long we waited.
        waited: StdDuration,
    },
    /// SIGINT or SIGTERM.
    Interrupted,
    /// The application refused to go on (its own message).
    Aborted(String),
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::Io(e) => write!(f, "{e}"),
            ClientError::NoAnswer { entry, waited } => write!(
                f,
                "no node answered at {entry} within {:.1} s; is a dhtnode running there, and does \
                 the network have a key (--key-file)?",
                waited.as_secs_f64()
            ),
            ClientError::Refused { entry } => write!(
                f,
                "nothing listens at {entry} (connection refused): is a dhtnode running there, \
                 on that port?"
            ),
            ClientError::Upload(e) => write!(f, "{e}"),
            ClientError::Download(e) => write!(f, "{e}"),
            ClientError::Timeout { what, waited } => {
                write!(f, "{what} did not finish within {:.1} s", waited.as_secs_f64())
            }
            ClientError::Interrupted => f.write_str("interrupted"),
            ClientError::Aborted(message) => f.write_str(message),
        }
    }
}

impl std::error::Error for ClientError {}

impl From<io::Error> for ClientError {
    fn from(e: io::Error) -> Self {
        ClientError::Io(e)
    }
}

/// A file read with positioned reads, as an upload source.
#[derive(Debug)]
pub struct FileReader {
    file: File,
    size: u64,
    /// The first read error, kept for the message.
    pub error: Option<io::Error>,
}

impl FileReader {
    /// Uploads `size` bytes of an open `file`: a regular file, or a copy
    /// of a pipe's contents in a temporary file (the tools' `source`
    /// module decides which).
    pub fn from_file(file: File, size: u64) -> FileReader {
        FileReader { file, size, error: None }
    }

    /// The error of a failed read at `offset`, with its cause.
    fn read_error(&mut self, offset: u64) -> ClientError {
        let cause = self.error.take().map(|e| e.to_string()).unwrap_or_default();
        ClientError::Io(io::Error::other(format!("cannot read the file at byte {offset}: {cause}")))
    }
}

/// How an upload stores its file.
#[derive(Clone, Copy, Debug, Default)]
pub struct UploadOptions {
    /// A coded file: `k`, `m` and the root of its parity tree, stored
    /// before; its address is then its coded root
    /// ([`dht_core::upload::Upload::with_coding`]).
    pub coding: Option<(u16, u16, FragmentHash)>,
    /// Copies of each index fragment (0: the network's R).
    pub index_copies: u8,
    /// Copies of each data fragment (0: the network's R).
    pub data_copies: u8,
}

/// The upload the tools run: 128 store requests at a time.
pub type HostUpload = Upload<FileReader, 128>;

impl FileSource for FileReader {
    fn size(&self) -> u64 {
        self.size
    }
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> bool {
        match self.file.read_exact_at(buf, offset) {
            Ok(()) => true,
            Err(e) => {
                self.error.get_or_insert(e);
                false
            }
        }
    }
}

/// How a ping travels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PingMode {
    /// To the node itself.
    Singlecast,
    /// Forwarded this many times at random; the last node answers.
    Randomcast(u8),
    /// Relayed to everyone up to this depth; everyone answers.
    Broadcast(u8),
    /// A broadcast FIND: members of this shard answer.
    Find(Shard, u8),
}

/// One answer to a ping.
#[derive(Clone, Copy, Debug)]
pub struct Pong {
    /// Who answered.
    pub from: PeerInfo,
    /// The round trip.
    pub rtt: StdDuration,
}

/// A node's answer to a STATS request.
#[derive(Clone, Debug)]
pub struct StatsAnswer {
    /// The node.
    pub from: PeerInfo,
    /// What it says of itself.
    pub stats: NodeStats,
}

impl StatsAnswer {
    /// The answer in `reply`, if it is the STATS answer to `nonce`.
    fn answering(reply: &Reply<'_>, nonce: u64) -> Option<StatsAnswer> {
        match reply {
            Reply::Stats { from, nonce: n, stats } if *n == nonce => {
                Some(StatsAnswer { from: *from, stats: stats.clone() })
            }
            _ => None,
        }
    }
}

/// A client attached to the network through an entry node.
pub struct Client {
    runtime: Runtime<NoStore>,
    entry: SocketAddr,
    coding: Option<(dht_core::index::Coding, FragmentHash)>,
}

impl Client {
    /// Binds a client socket (port `listen`, 0 for any) to talk to `entry`.
    pub fn bind(entry: SocketAddr, listen: u16) -> Result<Client, ClientError> {
        let transport = UdpTransport::bind(client_bind_addr(entry, listen))?;
        crate::transport::report_refusals(transport.socket())?;
        let local = transport.local_addr()?;
        let clock = Clock::new();
        let id = NodeId(crate::random_seed());
        let seed = crate::random_seed();
        let node = Node::new(Config::client(), id, PeerAddr::from(local), seed, NoStore)
            .map(Box::new)
            .map_err(|e| ClientError::Io(io::Error::other(e.to_string())))?;
        let mut runtime = Runtime::new(node, transport, clock);
        runtime.handle_signals()?;
        Ok(Client { runtime, entry, coding: None })
    }

    /// The client's node.
    pub fn node(&self) -> &ClientNode {
        &self.runtime.node
    }

    /// Puts the client on a network with a key (see [`crate::key`]).
    pub fn set_network_key(&mut self, key: Option<dht_core::auth::NetworkKey>) {
        self.runtime.node.set_network_key(key);
    }

    /// Changes the largest datagram the client sends and asks for.
    pub fn set_max_datagram(&mut self, max_datagram: u16) -> Result<(), ClientError> {
        self.runtime.node.set_max_datagram(max_datagram).map_err(|e| {
            ClientError::Io(io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))
        })
    }

    /// The entry node.
    pub fn entry(&self) -> SocketAddr {
        self.entry
    }

    fn deadline(&self, timeout: StdDuration) -> Instant {
        self.runtime.clock.now() + Duration::from_micros(timeout.as_micros() as u64)
    }

    /// Joins as a client: learns members of every shard from the entry
    /// node. Fails with [`ClientError::NoAnswer`] after `timeout`.
    pub fn join(&mut self, timeout: StdDuration) -> Result<usize, ClientError> {
        struct Joining {
            neighbors: Option<usize>,
        }
        impl App<NoStore, 256, 1024, 64> for Joining {
            fn handle_event(&mut self, _: &ClientNode, event: Event) {
                if let Event::Joined { neighbors } = event {
                    self.neighbors = Some(neighbors);
                }
            }
            fn is_done(&self) -> bool {
                self.neighbors.is_some()
            }
        }
        let now = self.runtime.clock.now();
        let entry = PeerAddr::from(self.entry);
        self.runtime.node.join(now, entry, &mut self.runtime.transport);
        let mut app = Joining { neighbors: None };
        let deadline = self.deadline(timeout);
        match self.runtime.run_until_refused(&mut app, Some(deadline))? {
            Stop::Done => Ok(app.neighbors.unwrap_or(0)),
            Stop::Deadline => Err(ClientError::NoAnswer { entry: self.entry, waited: timeout }),
            Stop::Signal => Err(ClientError::Interrupted),
            Stop::Refused => Err(ClientError::Refused { entry: self.entry }),
        }
    }

    /// The coding of the last file downloaded and the root of its parity
    /// tree, if it was a coded file (see [`Download::coding`]).
    pub fn last_coding(&self) -> Option<(dht_core::index::Coding, FragmentHash)> {
        self.coding
    }

    /// Uploads `source` under `name` as `options` say; `progress` sees
    /// every event with the number of fragments to store. Returns the
    /// index hash.
    pub fn upload(
        &mut self,
        name: IndexName,
        source: FileReader,
        options: &UploadOptions,
        timeout: StdDuration,
        mut progress: impl FnMut(&UploadEvent, u64),
    ) -> Result<FragmentHash, ClientError> {
        let mut upload = match HostUpload::new(name, source) {
            Ok(upload) => Box::new(upload),
            Err((UploadError::SourceFailed { offset }, mut source)) => {
                return Err(source.read_error(offset));
            }
            Err((e, _)) => return Err(ClientError::Upload(e)),
        };
        *upload =
            (*upload).with_index_copies(options.index_copies).with_data_copies(options.data_copies);
        if let Some((k, m, parity)) = options.coding {
            *upload = (*upload).with_coding(k, m, parity).map_err(|e| {
                ClientError::Io(io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))
            })?;
        }
        let mut result = None;
        let watch = |upload: &mut HostUpload| {
            while let Some(event) = upload.poll_event() {
                progress(&event, upload.total());
                match event {
                    UploadEvent::Finished { index_hash } => result = Some(Ok(index_hash)),
                    UploadEvent::Failed(e) => result = Some(Err(e)),
                    UploadEvent::Stored { .. } | UploadEvent::Searching { .. } => {}
                }
            }
            false
        };
        let mut app = Watched::new(&mut *upload, watch);
        let now = self.runtime.clock.now();
        app.app().start(now, &mut self.runtime.node, &mut self.runtime.transport);
        app.watch();
        let deadline = self.deadline(timeout);
        let stop = self.runtime.run(&mut app, Some(deadline))?;
        match (stop, result) {
            (_, Some(Ok(hash))) => Ok(hash),
            (_, Some(Err(UploadError::SourceFailed { offset }))) => {
                Err(upload.source_mut().read_error(offset))
            }
            (_, Some(Err(e))) => Err(ClientError::Upload(e)),
            (Stop::Signal, None) => Err(ClientError::Interrupted),
            (_, None) => Err(ClientError::Timeout { what: "the upload", waited: timeout }),
        }
    }

    /// Reads back `checks` (fragments, each with the holder that
    /// acknowledged it) from other holders (see [`dht_core::verify`]);
    /// returns what was found and missing.
    pub fn verify(
        &mut self,
        checks: &[dht_core::verify::Check],
        timeout: StdDuration,
    ) -> Result<Vec<dht_core::verify::VerifyEvent>, ClientError> {
        use dht_core::verify::{Verify, VerifyEvent};
        let mut verify = Box::new(Verify::<256>::new(checks).map_err(|e| {
            ClientError::Io(io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))
        })?);
        let mut events = Vec::new();
        let started = std::time::Instant::now();
        let watch = |verify: &mut Verify<256>| {
            while let Some(event) = verify.poll_event() {
                log::debug!(
                    "read back: {event:?} after {:.1} ms",
                    started.elapsed().as_secs_f64() * 1e3
                );
                if !matches!(event, VerifyEvent::Finished { .. }) {
                    events.push(event);
                }
            }
            false
        };
        let mut app = Watched::new(&mut *verify, watch);
        let now = self.runtime.clock.now();
        app.app().start(now, &mut self.runtime.node, &mut self.runtime.transport);
        app.watch();
        let deadline = self.deadline(timeout);
        let stop = self.runtime.run(&mut app, Some(deadline))?;
        match stop {
            Stop::Signal => Err(ClientError::Interrupted),
            Stop::Deadline if !verify.is_done() => {
                Err(ClientError::Timeout { what: "reading the upload back", waited: timeout })
            }
            Stop::Done | Stop::Deadline | Stop::Refused => Ok(events),
        }
    }

    /// Downloads the file `hash` into `sink`. `on_event` sees every event
    /// and may stop the download by returning an error message (for
    /// example when the file name from the index is unacceptable).
    pub fn download<K: FileSink>(
        &mut self,
        hash: FragmentHash,
        sink: K,
        timeout: StdDuration,
        mut on_event: impl FnMut(&DownloadEvent) -> Result<(), String>,
    ) -> (K, Result<u64, ClientError>) {
        let mut result = None;
        let watch = |download: &mut Download<K, 16>| {
            while let Some(event) = download.poll_event() {
                if result.is_some() {
                    continue;
                }
                if let Err(message) = on_event(&event) {
                    result = Some(Err(ClientError::Aborted(message)));
                    continue;
                }
                match event {
                    DownloadEvent::Finished { size } => result = Some(Ok(size)),
                    DownloadEvent::Failed(e) => result = Some(Err(ClientError::Download(e))),
                    DownloadEvent::IndexReceived { .. }
                    | DownloadEvent::Written { .. }
                    | DownloadEvent::Searching { .. } => {}
                }
            }
            // An abort stops the run although the download itself goes on.
            result.is_some()
        };
        let mut download = Box::new(Download::<K, 16>::new(hash, sink));
        let mut app = Watched::new(&mut *download, watch);
        let now = self.runtime.clock.now();
        app.app().start(now, &mut self.runtime.node, &mut self.runtime.transport);
        app.watch();
        let deadline = self.deadline(timeout);
        let stop = self.runtime.run(&mut app, Some(deadline));
        self.coding = download.coding();
        let sink = download.into_sink();
        let outcome = match stop {
            Err(e) => Err(ClientError::Io(e)),
            Ok(stop) => match (stop, result) {
                (_, Some(result)) => result,
                (Stop::Signal, None) => Err(ClientError::Interrupted),
                (_, None) => Err(ClientError::Timeout { what: "the download", waited: timeout }),
            },
        };
        (sink, outcome)
    }

    /// Sends one ping to the entry node as `mode` says and collects the
    /// answers that arrive within `wait` (a singlecast ping stops at the
    /// first). `on_pong` sees each as it arrives.
    pub fn ping(
        &mut self,
        mode: PingMode,
        wait: StdDuration,
        mut on_pong: impl FnMut(&Pong),
    ) -> Result<Vec<Pong>, ClientError> {
        struct Pinging<F: FnMut(&Pong)> {
            nonce: u64,
            sent: Instant,
            single: bool,
            pongs: Vec<Pong>,
            on_pong: F,
        }
        impl<F: FnMut(&Pong)> App<NoStore, 256, 1024, 64> for Pinging<F> {
            fn handle_reply<T: Transmit>(
                &mut self,
                now: Instant,
                _: &mut ClientNode,
                reply: &Reply<'_>,
                _: &mut T,
            ) {
                if let Reply::Pong { from, nonce } = reply {
                    let duplicate = self.pongs.iter().any(|p| p.from.addr == from.addr);
                    if *nonce == self.nonce && !duplicate {
                        let rtt = StdDuration::from_micros((now - self.sent).total_micros());
                        let pong = Pong { from: *from, rtt };
                        (self.on_pong)(&pong);
                        self.pongs.push(pong);
                    }
                }
            }
            fn is_done(&self) -> bool {
                self.single && !self.pongs.is_empty()
            }
        }
        let uid = self.runtime.node.rng().next_u64();
        let (transmission, find) = match mode {
            PingMode::Singlecast => (Transmission::Singlecast, None),
            PingMode::Randomcast(hops) => (Transmission::Randomcast { hops }, None),
            PingMode::Broadcast(breadth) => (Transmission::Broadcast { breadth, uid }, None),
            PingMode::Find(shard, breadth) => {
                (Transmission::Broadcast { breadth, uid }, Some(shard))
            }
        };
        let entry = PeerAddr::from(self.entry);
        if transmission != Transmission::Singlecast {
            // Only a sender that proved its address may start a randomcast
            // or a broadcast: get the entry node's cookie first.
            let ignore: &mut dyn FnMut(&Pong) = &mut |_| {};
            self.ping(PingMode::Singlecast, wait, ignore)?;
        }
        let sent = self.runtime.clock.now();
        let nonce =
            self.runtime.node.ping(sent, entry, transmission, find, &mut self.runtime.transport);
        let single = matches!(mode, PingMode::Singlecast | PingMode::Randomcast(_));
        let mut app = Pinging { nonce, sent, single, pongs: Vec::new(), on_pong: &mut on_pong };
        let deadline = self.deadline(wait);
        // Nothing listening at the entry shows at once: no pong will come.
        match self.runtime.run_until_refused(&mut app, Some(deadline))? {
            Stop::Signal => Err(ClientError::Interrupted),
            Stop::Done | Stop::Deadline | Stop::Refused => Ok(app.pongs),
        }
    }

    /// Asks `target` for its statistics; `None` if it did not answer within
    /// `wait`.
    pub fn stats(
        &mut self,
        target: SocketAddr,
        wait: StdDuration,
    ) -> Result<Option<StatsAnswer>, ClientError> {
        let answers = self.stats_of_all(&[target], wait, |_| true)?;
        Ok(answers.into_iter().next().flatten())
    }

    /// Asks every node of `targets` for its statistics, again every few ms
    /// (5 ms plus 0.1 ms per target)
    /// for those that did not answer or whose answer fails `ready`, until
    /// all are ready or `wait` has passed. Returns the last answer of each.
    pub fn stats_of_all(
        &mut self,
        targets: &[SocketAddr],
        wait: StdDuration,
        ready: impl Fn(&StatsAnswer) -> bool,
    ) -> Result<Vec<Option<StatsAnswer>>, ClientError> {
        self.stats_of_all_about(targets, None, wait, ready)
    }

    /// [`Client::stats_of_all`], also asking each node whether `about` is
    /// in its neighbor table ([`NodeStats::knows`]).
    pub fn stats_of_all_about(
        &mut self,
        targets: &[SocketAddr],
        about: Option<SocketAddr>,
        wait: StdDuration,
        ready: impl Fn(&StatsAnswer) -> bool,
    ) -> Result<Vec<Option<StatsAnswer>>, ClientError> {
        struct Survey<'a, R: Fn(&StatsAnswer) -> bool> {
            targets: &'a [PeerAddr],
            about: Option<PeerAddr>,
            nonce: u64,
            answers: Vec<Option<StatsAnswer>>,
            ready: R,
            next_round: Instant,
        }
        impl<R: Fn(&StatsAnswer) -> bool> Survey<'_, R> {
            fn pending(&self) -> impl Iterator<Item = PeerAddr> + '_ {
                self.targets
                    .iter()
                    .zip(self.answers.iter())
                    .filter(|(_, a)| !a.as_ref().is_some_and(|s| (self.ready)(s)))
                    .map(|(t, _)| *t)
            }
        }
        impl<R: Fn(&StatsAnswer) -> bool> App<NoStore, 256, 1024, 64> for Survey<'_, R> {
            fn poll_timeout(&self) -> Option<Instant> {
                Some(self.next_round)
            }
            fn handle_timeout<T: Transmit>(
                &mut self,
                now: Instant,
                node: &mut ClientNode,
                tx: &mut T,
            ) {
                if now < self.next_round {
                    return;
                }
                let spacing = 5_000 + 100 * self.targets.len() as u64;
                self.next_round = now + Duration::from_micros(spacing);
                let pending: Vec<PeerAddr> = self.pending().collect();
                for to in pending {
                    node.request_stats(now, to, self.about, self.nonce, tx);
                }
            }
            fn handle_reply<T: Transmit>(
                &mut self,
                _: Instant,
                _: &mut ClientNode,
                reply: &Reply<'_>,
                _: &mut T,
            ) {
                let Some(stats) = StatsAnswer::answering(reply, self.nonce) else { return };
                if let Some(i) = self.targets.iter().position(|t| *t == stats.from.addr) {
                    if let Some(slot) = self.answers.get_mut(i) {
                        *slot = Some(stats);
                    }
                }
            }
            fn is_done(&self) -> bool {
                self.pending().next().is_none()
            }
        }
        let peers: Vec<PeerAddr> = targets.iter().map(|t| PeerAddr::from(*t)).collect();
        let nonce = self.runtime.node.rng().next_u64();
        let mut app = Survey {
            targets: &peers,
            about: about.map(PeerAddr::from),
            nonce,
            answers: vec![None; peers.len()],
            ready,
            next_round: self.runtime.clock.now(),
        };
        let deadline = self.deadline(wait);
        match self.runtime.run(&mut app, Some(deadline))? {
            Stop::Signal => Err(ClientError::Interrupted),
            Stop::Done | Stop::Deadline | Stop::Refused => Ok(app.answers),
        }
    }

    /// Lists what `target` holds, page by page (every fragment, or only
    /// the roots of files), handing each page's entries to `on_entry`.
    /// Each page is asked again every 200 ms until it comes or `wait`
    /// passes; returns the fragments the node said it holds, or `None` if
    /// a page did not come in time (the entries handed over so far stand).
    pub fn list(
        &mut self,
        target: SocketAddr,
        files_only: bool,
        wait: StdDuration,
        mut on_entry: impl FnMut(&PeerInfo, &Listed),
    ) -> Result<Option<u32>, ClientError> {
        struct Listing<'a> {
            target: PeerAddr,
            files_only: bool,
            /// The page asked for; `None` once the last page came.
            from: Option<u32>,
            nonce: u64,
            resend: Instant,
            page_deadline: Instant,
            wait: Duration,
            held: Option<u32>,
            late: bool,
            on_entry: &'a mut dyn FnMut(&PeerInfo, &Listed),
        }
        impl App<NoStore, 256, 1024, 64> for Listing<'_> {
            fn poll_timeout(&self) -> Option<Instant> {
                Some(self.resend)
            }
            fn handle_timeout<T: Transmit>(
                &mut self,
                now: Instant,
                node: &mut ClientNode,
                tx: &mut T,
            ) {
                let Some(from) = self.from.filter(|_| now >= self.resend) else { return };
                if now >= self.page_deadline {
                    self.late = true;
                    return;
                }
                self.resend = now + Duration::from_millis(200);
                node.request_list(now, self.target, from, self.files_only, self.nonce, tx);
            }
            fn handle_reply<T: Transmit>(
                &mut self,
                now: Instant,
                node: &mut ClientNode,
                reply: &Reply<'_>,
                tx: &mut T,
            ) {
                let Reply::List { from, nonce, page } = reply else { return };
                if *nonce != self.nonce || from.addr != self.target || self.from.is_none() {
                    return;
                }
                for entry in &page.entries {
                    (self.on_entry)(from, entry);
                }
                self.held = Some(page.held);
                // A page that does not move forward ends the listing.
                self.from = page.next.filter(|n| Some(*n) > self.from);
                // A new nonce a page: a late copy of an answer to the page
                // before is not taken for this one.
                self.nonce = node.rng().next_u64();
                self.page_deadline = now + self.wait;
                self.resend = now;
                self.handle_timeout(now, node, tx);
            }
            fn is_done(&self) -> bool {
                self.from.is_none() || self.late
            }
        }
        let now = self.runtime.clock.now();
        let wait_core = Duration::from_micros(wait.as_micros() as u64);
        let mut app = Listing {
            target: PeerAddr::from(target),
            files_only,
            from: Some(0),
            nonce: self.runtime.node.rng().next_u64(),
            resend: now,
            page_deadline: now + wait_core,
            wait: wait_core,
            held: None,
            late: false,
            on_entry: &mut on_entry,
        };
        match self.runtime.run_until_refused(&mut app, None)? {
            Stop::Signal => Err(ClientError::Interrupted),
            Stop::Refused => Err(ClientError::Refused { entry: target }),
            Stop::Done | Stop::Deadline => Ok(if app.late { None } else { app.held }),
        }
    }
}
