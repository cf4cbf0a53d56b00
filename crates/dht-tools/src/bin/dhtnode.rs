//! dhtnode: one node of the network.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use dht_core::config::Replication;
use dht_core::driver::App;
use dht_core::node::Event;
use dht_core::{Config, Node, NodeId, PeerAddr};
use dht_std::runtime::Stop;
use dht_std::transport::UdpTransport;
use dht_std::{identity, logger, Clock, DirStore, Runtime};
use dht_tools::address::{self, Attempt, HostArg};
use dht_tools::repair::{Settings as StripeSettings, StripeRepair};
use dht_tools::watch::Watch;
use dht_tools::{fail, node_addrs, Network, Verbosity};

/// Runs a node of the DHT file store on a UDP port.
///
/// Without a seed the node starts a new network (it is the root). With
/// SEED_HOST SEED_PORT it joins the network of that node. The node keeps
/// its fragments and its identity in the store directory, so a node
/// restarted on the same directory comes back with the same id and serves
/// what it held. SIGINT or SIGTERM make it tell its neighbors it leaves,
/// and exit.
#[derive(Parser, Debug)]
#[command(
    name = "dhtnode",
    version,
    after_help = concat!("Examples:\n  dhtnode 8000                         start a network on port 8000\n  dhtnode 8001 127.0.0.1 8000          join it from port 8001\n  dhtnode 8100 --bind ::1              start a network on [::1]:8100\n  dhtnode 8101 [::1]:8100              join it (binding ::1, the seed's family)\n  dhtnode 9000 10.0.0.5 8000 --bind 0.0.0.0 --advertise 10.0.0.7:9000", "\n\n", dht_tools::exit_status_help!())
)]
// These doc comments are the --help text: "[::1]" in them is an address,
// not a rustdoc link.
#[allow(rustdoc::broken_intra_doc_links)]
struct Args {
    /// UDP port to listen on.
    port: u16,
    /// Host of a node already in the network (omit to start a new
    /// network): a name, an IPv4 or IPv6 address (::1 or [::1]), with
    /// :PORT if SEED_PORT is not given apart ([::1]:8000). The addresses of
    /// a name are tried in turn.
    seed_host: Option<String>,
    /// Port of that node (may be given with SEED_HOST instead).
    seed_port: Option<u16>,
    /// Directory for fragments and the node's identity [default: ./PORT].
    #[arg(long, value_name = "DIR")]
    store: Option<PathBuf>,
    /// Address to bind: an IPv4 or IPv6 address (::1 or [::1]) or a name
    /// (its addresses tried in turn), with :PORT only if it is PORT
    /// ([::1]:8000). Only addresses of a family the seed has are used
    /// [default: 127.0.0.1, or ::1 for a seed with only IPv6 addresses].
    #[arg(long, value_name = "ADDR")]
    bind: Option<String>,
    /// Address other nodes should use to reach this one, when it differs
    /// from the bound one (behind NAT, or bound to 0.0.0.0): HOST or
    /// HOST:PORT as for --bind ([::1]:9000); the port defaults to the
    /// bound one.
    #[arg(long, value_name = "HOST[:PORT]")]
    advertise: Option<String>,
    /// Most fragments (of 8 KiB) to store.
    #[arg(long, value_name = "FRAGMENTS", default_value_t = 16_384)]
    capacity: usize,
    /// Seconds between the one-line summaries logged at info (fragments
    /// held, neighbours, traffic since the last one); 0: none.
    #[arg(long, value_name = "SECS", default_value_t = 300)]
    summary_every: u64,
    /// Copies of each fragment: a number, or "all" for every node of its
    /// shard (the original system's behaviour).
    #[arg(long, value_name = "N|all", default_value = "3")]
    copies: String,
    /// Megabytes a second the node may move on average to rebuild the
    /// lost pieces of coded files it looks after (downloaded, and sent to
    /// be stored anew); 0: never rebuild them.
    #[arg(long, value_name = "MB/S", default_value_t = 8.0)]
    repair_rate: f64,
    #[command(flatten)]
    network: Network,
    #[command(flatten)]
    verbosity: Verbosity,
}

struct NodeApp {
    store: PathBuf,
    /// The seed's addresses, tried in turn while the node joins.
    seeds: Vec<SocketAddr>,
    /// Which of them the node joins through.
    seed: usize,
    /// JOINs sent again since the node started joining.
    join_retries: u32,
    /// The seed's address did not answer: try its next one.
    next_seed: bool,
    /// When the next one-line summary is logged, and the counters at the
    /// last one.
    summary_at: Option<dht_core::time::Instant>,
    summary_every: dht_core::time::Duration,
    last: dht_core::counters::Counters,
    /// The store was said to be nearly full (said again once it has
    /// emptied below 80 %).
    nearly_full: bool,
    /// Neighbors that may come back, repairs running, and when to look
    /// again; the node's clock, for the events (which come without the
    /// time).
    watch: Watch,
    watch_at: Option<dht_core::time::Instant>,
    clock: Clock,
    /// The rebuilding of lost pieces of coded files (none with
    /// --repair-rate 0).
    stripes: Option<StripeRepair>,
}

/// Whether a store holding `held` of `capacity` fragments is nearly full
/// (90 % or more), and whether it is back under 80 % (said again then).
fn fill_level(held: usize, capacity: usize) -> (bool, bool) {
    let (held, capacity) = (held as u64, capacity.max(1) as u64);
    (held * 10 >= capacity * 9, held * 10 < capacity * 8)
}

impl App<DirStore, 256, 1024, 64> for NodeApp {
    fn poll_timeout(&self) -> Option<dht_core::time::Instant> {
        let stripes = self.stripes.as_ref().and_then(StripeRepair::poll_timeout);
        [self.summary_at, self.watch_at, stripes].into_iter().flatten().min()
    }

    /// Every `--summary-every` seconds: fragments held, neighbours, and the traffic
    /// since the last summary, on one line.
    fn handle_timeout<T: dht_core::node::Transmit>(
        &mut self,
        now: dht_core::time::Instant,
        node: &mut Node<DirStore>,
        _: &mut T,
    ) {
        if self.watch_at.is_some_and(|at| now >= at) {
            self.watch.look(now, node);
            self.watch_at = self.watch.poll_timeout(now);
        }
        if let Some(stripes) = &mut self.stripes {
            stripes.handle_timeout(now, node);
        }
        if self.summary_at.is_none_or(|at| now < at) {
            return;
        }
        let counters = node.counters();
        let (rx, tx) = (counters.received_total(), counters.sent_total());
        let (rx0, tx0) = (self.last.received_total(), self.last.sent_total());
        let store = node.store();
        log::info!(
            "summary: shard {}, {} of {} fragments held, {} neighbors; in the last {} s \
             {} datagrams in ({:.1} MB), {} out ({:.1} MB), {} dropped",
            node.shard(),
            dht_core::store::FragmentStore::len(store),
            dht_core::store::FragmentStore::capacity(store),
            node.neighbors().len(),
            self.summary_every.total_micros() / 1_000_000,
            rx.datagrams - rx0.datagrams,
            (rx.bytes - rx0.bytes) as f64 / 1e6,
            tx.datagrams - tx0.datagrams,
            (tx.bytes - tx0.bytes) as f64 / 1e6,
            counters.drops.iter().sum::<u64>() - self.last.drops.iter().sum::<u64>(),
        );
        self.last = counters.clone();
        self.summary_at = Some(now + self.summary_every);
    }

    fn handle_event(&mut self, node: &Node<DirStore>, event: Event) {
        match event {
            Event::IdentityChosen(id) => match identity::save(&self.store, id) {
                Ok(()) => log::info!("took id {id} in shard {}", id.shard()),
                Err(e) => log::error!("{e}"),
            },
            Event::Joined { neighbors } => {
                log::info!(
                    "joined as {} (shard {}) with {neighbors} neighbors",
                    node.id(),
                    node.shard()
                )
            }
            Event::JoinRetry { .. } => {
                self.join_retries += 1;
                if self.join_retries >= 4 {
                    log::warn!(
                        "no answer from the seed yet ({} JOINs sent); still trying",
                        self.join_retries
                    );
                }
                self.next_seed = self.seeds.len() > 1;
            }
            Event::FragmentStored(hash) => {
                log::debug!("stored {hash}");
                let store = node.store();
                let held = dht_core::store::FragmentStore::len(store);
                let capacity = dht_core::store::FragmentStore::capacity(store);
                let (nearly, under) = fill_level(held, capacity);
                if nearly && !self.nearly_full {
                    self.nearly_full = true;
                    log::warn!(
                        "the store is nearly full: {held} of {capacity} fragments ({}%); \
                         --capacity or more disk lets the node keep taking fragments",
                        held * 100 / capacity.max(1)
                    );
                } else if under {
                    self.nearly_full = false;
                }
            }
            Event::CorruptFragmentRemoved(hash) => log::warn!("removed corrupt fragment {hash}"),
            Event::FetchAbandoned(hash) => log::debug!("gave up fetching {hash}"),
            Event::StoreFull => log::warn!(
                "the store is full ({} fragments): taking no more until there is room; \
                 the shard places copies on the next members",
                dht_core::store::FragmentStore::len(node.store())
            ),
            Event::StoreAvailable { held } => {
                log::info!("the store has room again ({held} fragments held)")
            }
            Event::NeighborDead(peer) => {
                log::info!("neighbor {peer} does not answer: declared dead, dropped from the table")
            }
            Event::Left { .. } => {}
        }
        let now = self.clock.now();
        if let Some(stripes) = &mut self.stripes {
            stripes.on_event(now, &event);
        }
        self.watch.on_event(now, node, &event);
        self.watch_at = self.watch.poll_timeout(now);
    }
    /// Done only to join through the seed's next address.
    fn is_done(&self) -> bool {
        self.next_seed
    }
}

fn parse_config(args: &Args) -> Result<Config, String> {
    let mut config = Config::member();
    config.replication = match args.copies.as_str() {
        "all" => Replication::WholeShard,
        n => match n.parse::<u8>() {
            Ok(copies) if copies >= 1 => Replication::Copies(copies),
            _ => {
                return Err(format!("--copies takes a number from 1 to 255 or \"all\", not '{n}'"))
            }
        },
    };
    Ok(config)
}

fn main() -> ExitCode {
    let args = Args::parse();
    // A daemon says what happens (info) unless told to be quiet.
    let level = if args.verbosity.quiet { -1 } else { args.verbosity.level() + 1 };
    logger::init_daemon(&format!("dhtnode[{}] ", args.port), level);
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => fail("dhtnode", message),
    }
}

fn run(args: Args) -> Result<(), String> {
    let config = parse_config(&args)?;
    if args.capacity == 0 {
        return Err("--capacity must be at least 1 fragment".into());
    }
    let rate = args.repair_rate;
    if !(rate.is_finite() && rate >= 0.0) {
        return Err(format!("--repair-rate takes megabytes a second (0 or more), not {rate}"));
    }
    let seeds = match &args.seed_host {
        Some(host) => node_addrs(host, args.seed_port)?,
        None => Vec::new(),
    };
    // The port first: a node that cannot have it leaves no store behind.
    let transport = bind(&args, &seeds)?;
    let local = transport.local_addr().map_err(|e| e.to_string())?;
    // A socket reaches only addresses of its own family.
    let seeds: Vec<SocketAddr> =
        seeds.into_iter().filter(|seed| seed.is_ipv4() == local.is_ipv4()).collect();
    if args.seed_host.is_some() && seeds.is_empty() {
        return Err(format!("the seed has no address of the family of {local}"));
    }
    let advertised = match &args.advertise {
        Some(text) => advertised(text, local)?,
        None => local,
    };
    // A node that joins through itself waits for ever.
    let own = |seed: &SocketAddr| {
        *seed == local
            || *seed == advertised
            || seed.port() == local.port()
                && seed.ip().is_loopback()
                && (local.ip().is_loopback() || local.ip().is_unspecified())
    };
    if seeds.iter().any(own) {
        return Err(format!(
            "the seed {} is this node itself ({local}): give another node's address, or no \
             seed to start a new network",
            address::list(&seeds)
        ));
    }
    let key = args.network.key()?;
    let max_datagram = args.network.max_datagram_for(local.ip());
    // The store last: a node that cannot start leaves none behind.
    let store_dir = args.store.clone().unwrap_or_else(|| PathBuf::from(args.port.to_string()));
    let mut store = DirStore::open(&store_dir, args.capacity).map_err(|e| e.to_string())?;
    let stripes = if rate > 0.0 {
        let settings = StripeSettings {
            entry: if advertised.ip().is_unspecified() {
                SocketAddr::new(Ipv4Addr::LOCALHOST.into(), local.port())
            } else {
                advertised
            },
            key: key.clone(),
            max_datagram,
            store: store_dir.clone(),
            rate: (rate * 1e6) as u64,
        };
        Some(StripeRepair::start(settings).map_err(|e| format!("cannot start the repair: {e}"))?)
    } else {
        None
    };
    if let Some(stripes) = &stripes {
        store.on_written(stripes.store_hook());
    }
    let saved = identity::load(&store_dir).map_err(|e| e.to_string())?;
    let random = dht_std::random_seed();
    let id = saved.unwrap_or_else(|| NodeId(dht_std::random_seed()));
    let mut config = config;
    config.max_datagram = max_datagram;
    let mut node = dht_std::runtime::build_node(|| {
        Node::new(config, id, PeerAddr::from(advertised), random, store)
    })
    .map_err(|e| format!("invalid settings: {e}"))?;
    if key.is_some() {
        log::info!("on a network with a key ({})", args.network.key_file_display());
    }
    node.set_network_key(key);
    match (saved, seeds.first()) {
        (Some(id), _) => log::info!(
            "resuming as {id} (shard {}) with {} fragments",
            id.shard(),
            node_store_len(&node)
        ),
        (None, Some(_)) => node.choose_shard_on_join(true),
        (None, None) => {
            identity::save(&store_dir, id).map_err(|e| e.to_string())?;
            log::info!("starting a new network as {id} (shard {})", id.shard());
        }
    }
    let clock = Clock::new();
    let mut runtime = Runtime::new(node, transport, clock);
    runtime.handle_signals().map_err(|e| format!("cannot handle signals: {e}"))?;
    if let Some(seed) = seeds.first() {
        log::info!("joining through {seed}");
        let now = runtime.clock.now();
        runtime.node.join(now, PeerAddr::from(*seed), &mut runtime.transport);
    }
    log::info!("listening on {local}, advertising {advertised}, store {}", store_dir.display());
    let summary_every = dht_core::time::Duration::from_secs(args.summary_every);
    let mut app = NodeApp {
        store: store_dir,
        seeds,
        seed: 0,
        join_retries: 0,
        next_seed: false,
        summary_at: (args.summary_every > 0).then(|| runtime.clock.now() + summary_every),
        summary_every,
        last: dht_core::counters::Counters::default(),
        nearly_full: false,
        watch: Watch::new(),
        watch_at: None,
        clock: runtime.clock,
        stripes,
    };
    if let Some(stripes) = &mut app.stripes {
        stripes.look_later(runtime.clock.now() + dht_tools::repair::AFTER_START);
    }
    let stop = loop {
        let stop = runtime.run(&mut app, None).map_err(|e| format!("network error: {e}"))?;
        if stop != Stop::Done {
            break stop;
        }
        // The seed's address did not answer: on to its next one.
        app.next_seed = false;
        let silent = app.seeds.get(app.seed).copied();
        app.seed = (app.seed + 1) % app.seeds.len().max(1);
        if let (Some(silent), Some(seed)) = (silent, app.seeds.get(app.seed)) {
            log::info!("no answer from {silent}; joining through {seed}");
            let now = runtime.clock.now();
            runtime.node.join(now, PeerAddr::from(*seed), &mut runtime.transport);
        }
    };
    if stop == Stop::Signal {
        // Hand off what would fall below R copies, tell the neighbors, go.
        // A second signal ends the hand-off at once.
        log::info!("leaving the network");
        runtime.reset_signal();
        let now = runtime.clock.now();
        runtime.node.leave(now, &mut runtime.transport);
        let deadline = now + runtime.node.config().leave_timeout + dht_core::Duration::from_secs(1);
        let mut leaving = Leaving { left: runtime.node.has_left() };
        match runtime
            .run(&mut leaving, Some(deadline))
            .map_err(|e| format!("network error: {e}"))?
        {
            Stop::Done | Stop::Refused => log::info!("left"),
            Stop::Deadline => log::warn!("leave did not finish in time"),
            Stop::Signal => log::warn!("second signal: leaving without finishing the hand-off"),
        }
    }
    Ok(())
}

/// Runs until the node has left.
struct Leaving {
    left: bool,
}

impl App<DirStore, 256, 1024, 64> for Leaving {
    fn handle_event(&mut self, _: &Node<DirStore>, event: Event) {
        match event {
            Event::Left { handed_off, complete } => {
                self.left = true;
                if complete {
                    log::info!("handed off {handed_off} fragments");
                } else {
                    log::warn!(
                        "handed off {handed_off} fragments; the leave deadline ended the rest"
                    );
                }
            }
            Event::NeighborDead(peer) => log::info!("{peer} is dead"),
            _ => {}
        }
    }
    fn is_done(&self) -> bool {
        self.left
    }
}

fn node_store_len(node: &Node<DirStore>) -> usize {
    use dht_core::store::FragmentStore;
    node.store().len()
}

/// Binds the node's socket: the addresses of --bind in turn (or the
/// default), keeping to the families the seed has so that the node can
/// reach it. A port in use or not allowed ends the search there: another
/// family would hide the problem.
fn bind(args: &Args, seeds: &[SocketAddr]) -> Result<UdpTransport, String> {
    let candidates = match &args.bind {
        Some(text) => {
            let host = HostArg::parse(text).map_err(|e| format!("--bind: {e}"))?;
            host.resolve(host.port_with(Some(args.port)).map_err(|e| format!("--bind: {e}"))?)?
        }
        None => vec![
            SocketAddr::new(Ipv4Addr::LOCALHOST.into(), args.port),
            SocketAddr::new(Ipv6Addr::LOCALHOST.into(), args.port),
        ],
    };
    let usable: Vec<SocketAddr> = candidates
        .iter()
        .copied()
        .filter(|c| seeds.is_empty() || seeds.iter().any(|s| s.is_ipv4() == c.is_ipv4()))
        .collect();
    if usable.is_empty() {
        return Err(format!(
            "the seed is at {} and this node would bind {}: a node reaches only addresses of \
             its own family; bind an address of the seed's family (--bind)",
            address::list(seeds),
            address::list(&candidates)
        ));
    }
    // The default is one address: the first family the seed has.
    let usable = if args.bind.is_some() { &usable[..] } else { &usable[..1] };
    address::in_turn(usable, |addr| {
        UdpTransport::bind(addr).map_err(|e| match e.kind() {
            io::ErrorKind::AddrInUse | io::ErrorKind::PermissionDenied => Attempt::Stop(e),
            _ => Attempt::Next(e),
        })
    })
    .map_err(|errors| errors.iter().map(|(_, e)| e.to_string()).collect::<Vec<_>>().join("; "))
}

/// The address to advertise from `--advertise TEXT`: its first address of
/// the bound socket's family, with the bound port unless it names one.
fn advertised(text: &str, local: SocketAddr) -> Result<SocketAddr, String> {
    let host = HostArg::parse(text).map_err(|e| format!("--advertise: {e}"))?;
    let addrs = host.resolve(host.port.unwrap_or(local.port()))?;
    addrs.iter().copied().find(|a| a.is_ipv4() == local.is_ipv4()).ok_or_else(|| {
        format!(
            "--advertise {text} has no {} address, and the node is bound to {local}",
            if local.is_ipv4() { "IPv4" } else { "IPv6" }
        )
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_store_is_nearly_full_from_90_percent_and_said_again_below_80() {
        assert_eq!(super::fill_level(89, 100), (false, false));
        assert_eq!(super::fill_level(90, 100), (true, false));
        assert_eq!(super::fill_level(79, 100), (false, true));
        assert_eq!(super::fill_level(1, 1), (true, false));
        assert_eq!(super::fill_level(0, 0), (false, true));
        assert_eq!(super::fill_level(14_746, 16_384), (true, false));
    }
}
