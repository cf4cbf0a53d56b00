//! dhtnode: one node of the network.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use dht_core::config::Replication;
use dht_core::driver::App;
use dht_core::node::Event;
use dht_core::{Config, Node, NodeId, PeerAddr};
use dht_std::runtime::Stop;
use dht_std::transport::{resolve, UdpTransport};
use dht_std::{identity, logger, Clock, DirStore, Runtime};
use dht_tools::{fail, Verbosity};

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
    version,
    after_help = "Examples:\n  dhtnode 8000                         start a network on port 8000\n  dhtnode 8001 127.0.0.1 8000          join it from port 8001\n  dhtnode 9000 10.0.0.5 8000 --bind 0.0.0.0 --advertise 10.0.0.7:9000"
)]
struct Args {
    /// UDP port to listen on.
    port: u16,
    /// Host of a node already in the network (omit to start a new network).
    #[arg(requires = "seed_port")]
    seed_host: Option<String>,
    /// Port of that node.
    seed_port: Option<u16>,
    /// Directory for fragments and the node's identity [default: ./PORT].
    #[arg(long, value_name = "DIR")]
    store: Option<PathBuf>,
    /// Address to bind.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1")]
    bind: IpAddr,
    /// Address other nodes should use to reach this one, when it differs
    /// from the bound one (behind NAT, or bound to 0.0.0.0).
    #[arg(long, value_name = "HOST:PORT")]
    advertise: Option<String>,
    /// Most fragments (of 8 KiB) to store.
    #[arg(long, value_name = "FRAGMENTS", default_value_t = 16_384)]
    capacity: usize,
    /// Copies of each fragment: a number, or "all" for every node of its
    /// shard (the original system's behaviour).
    #[arg(long, value_name = "N|all", default_value = "3")]
    copies: String,
    #[command(flatten)]
    verbosity: Verbosity,
}

struct NodeApp {
    store: PathBuf,
}

impl App<DirStore, 256, 1024, 64> for NodeApp {
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
            Event::JoinRetry { attempt } if attempt >= 4 => {
                log::warn!("no answer from the seed yet ({attempt} JOINs sent); still trying")
            }
            Event::FragmentStored(hash) => log::debug!("stored {hash}"),
            Event::CorruptFragmentRemoved(hash) => log::warn!("removed corrupt fragment {hash}"),
            Event::FetchAbandoned(hash) => log::debug!("gave up fetching {hash}"),
            Event::NeighborDead(peer) => log::info!("{peer} does not answer; dropped it"),
            Event::Left { .. } | Event::JoinRetry { .. } => {}
        }
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
    logger::init(&format!("dhtnode[{}] ", args.port), args.verbosity.level());
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
    let store_dir = args.store.clone().unwrap_or_else(|| PathBuf::from(args.port.to_string()));
    let store = DirStore::open(&store_dir, args.capacity).map_err(|e| e.to_string())?;
    let saved = identity::load(&store_dir).map_err(|e| e.to_string())?;
    let seed = match (&args.seed_host, args.seed_port) {
        (Some(host), Some(port)) => Some(resolve(host, port).map_err(|e| e.to_string())?),
        _ => None,
    };
    let transport =
        UdpTransport::bind(SocketAddr::new(args.bind, args.port)).map_err(|e| e.to_string())?;
    let local = transport.local_addr().map_err(|e| e.to_string())?;
    let advertised = match &args.advertise {
        Some(text) => parse_host_port(text)?,
        None => local,
    };
    let random = dht_std::random_seed();
    let id = saved.unwrap_or_else(|| NodeId(dht_std::random_seed()));
    let mut node = Node::new(config, id, PeerAddr::from(advertised), random, store)
        .map_err(|e| format!("invalid settings: {e}"))?;
    match (saved, seed) {
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
    if let Some(seed) = seed {
        log::info!("joining through {seed}");
        let now = runtime.clock.now();
        runtime.node.join(now, PeerAddr::from(seed), &mut runtime.transport);
    }
    log::info!("listening on {local}, advertising {advertised}, store {}", store_dir.display());
    let mut app = NodeApp { store: store_dir };
    let stop = runtime.run(&mut app, None).map_err(|e| format!("network error: {e}"))?;
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
            Stop::Done => log::info!("left"),
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

fn parse_host_port(text: &str) -> Result<SocketAddr, String> {
    let (host, port) = text
        .rsplit_once(':')
        .ok_or_else(|| format!("--advertise takes HOST:PORT, not '{text}'"))?;
    let port: u16 = port.parse().map_err(|_| format!("'{port}' is not a port number"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    resolve(host, port).map_err(|e| e.to_string())
}
