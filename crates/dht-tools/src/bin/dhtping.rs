//! dhtping: check who answers.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use dht_core::Shard;
use dht_std::client::{Client, ClientError, PingMode, Pong};
use dht_std::logger;
use dht_tools::{exit, fail, node_addrs, say, seconds, Failure, Network, Verbosity};

/// Pings nodes of the network, like ping: prints who answered and the
/// round-trip times, and exits 0 only if someone answered (4 if no one did).
///
/// By default the node at HOST:PORT is pinged directly. --randomcast sends
/// the ping on a random walk of HOPS nodes and the last one answers;
/// --broadcast floods it BREADTH levels deep and every node reached
/// answers; --find asks the nodes of a shard to answer. --stats prints the
/// node's counters instead; --list the files whose root index it holds
/// (address, size, name), --list --fragments every fragment it holds with
/// its shard, copy count and kind. --scan N asks the N nodes on ports
/// PORT to PORT+N-1 for their state (used to wait for a test scene to be
/// up).
#[derive(Parser, Debug)]
#[command(
    name = "dhtping",
    version,
    after_help = concat!("Examples:\n  dhtping 127.0.0.1 8000\n  dhtping 127.0.0.1 8000 --broadcast 3\n  dhtping 127.0.0.1 8000 --find 7\n  dhtping 127.0.0.1 8000 --stats -c 3 -i 10\n  dhtping 127.0.0.1 8000 --list\n  dhtping [::1]:8000 --list --fragments\n  dhtping 127.0.0.1 8000 --scan 256 --wait 30", "\n\n", dht_tools::exit_status_help!())
)]
// These doc comments are the --help text: "[::1]" in them is an address,
// not a rustdoc link.
#[allow(rustdoc::broken_intra_doc_links)]
struct Args {
    /// Host of a node: a name, an IPv4 or IPv6 address (::1 or [::1]),
    /// with :PORT if PORT is not given apart ([::1]:8000). The addresses
    /// of a name are pinged in turn until one answers.
    host: String,
    /// Its port (may be given with HOST instead).
    port: Option<u16>,
    /// Random walk of HOPS forwards; the last node answers.
    #[arg(long, value_name = "HOPS", group = "mode")]
    randomcast: Option<u8>,
    /// Flood BREADTH levels deep; every node reached answers.
    #[arg(long, value_name = "BREADTH", group = "mode")]
    broadcast: Option<u8>,
    /// Nodes of shard SHARD (0-15) answer (a FIND broadcast 4 levels deep).
    #[arg(long, value_name = "SHARD", group = "mode")]
    find: Option<u8>,
    /// Print the node's uptime, store and counters.
    #[arg(long, group = "mode")]
    stats: bool,
    /// List the files whose root index the node holds: address, size in
    /// bytes and name (names come from the network and are shown
    /// escaped).
    #[arg(long, group = "mode")]
    list: bool,
    /// With --list: every fragment the node holds, with its shard, the
    /// copies its shard keeps (as the node knows) and what it is.
    #[arg(long, requires = "list")]
    fragments: bool,
    /// Ask the N nodes on ports PORT..PORT+N-1 whether they are up and joined.
    #[arg(long, value_name = "N", group = "mode")]
    scan: Option<u16>,
    /// With --scan: also wait until every shard has a node.
    #[arg(long, requires = "scan")]
    full_shards: bool,
    /// Pings to send (singlecast and randomcast) [default: 3], or reports
    /// to print with --stats [default: 1].
    #[arg(short, long, value_name = "COUNT", value_parser = clap::value_parser!(u32).range(1..))]
    count: Option<u32>,
    /// Seconds between two --stats reports.
    #[arg(short, long, value_name = "SECS", default_value_t = 1.0)]
    interval: f64,
    /// Seconds to wait for answers to each ping (with --scan: for all nodes).
    #[arg(short = 'W', long, value_name = "SECS", default_value_t = 1.0)]
    wait: f64,
    /// UDP port this tool listens on [default: any free port].
    #[arg(long, value_name = "PORT", default_value_t = 0, hide_default_value = true)]
    listen: u16,
    #[command(flatten)]
    network: Network,
    #[command(flatten)]
    verbosity: Verbosity,
}

fn main() -> ExitCode {
    let args = Args::parse();
    logger::init("dhtping: ", args.verbosity.level());
    match run(&args) {
        Ok(true) => ExitCode::SUCCESS,
        // No answer: a script tells it from other failures.
        Ok(false) => ExitCode::from(exit::UNREACHABLE),
        Err(message) => fail("dhtping", message),
    }
}

fn run(args: &Args) -> Result<bool, Failure> {
    let wait = seconds(args.wait).map_err(Failure::usage)?;
    let mode = mode(args).map_err(Failure::usage)?;
    let entries = node_addrs(&args.host, args.port).map_err(Failure::usage)?;
    let key = args.network.key().map_err(Failure::local)?;
    // Each address of the host in turn, until one answers.
    let mut outcome = Ok(false);
    for entry in &entries {
        outcome = Client::bind(*entry, args.listen).and_then(|mut client| {
            client.set_network_key(key.clone());
            client.set_max_datagram(args.network.max_datagram_for(entry.ip()))?;
            ping_node(&mut client, *entry, args, mode, wait)
        });
        match &outcome {
            Ok(true) | Err(ClientError::Interrupted) => break,
            Ok(false) => {}
            Err(e) => log::info!("{entry}: {e}"),
        }
    }
    Ok(outcome?)
}

/// How pings travel, and how many rounds are sent.
fn mode(args: &Args) -> Result<(PingMode, u32), String> {
    Ok(match (args.randomcast, args.broadcast, args.find) {
        (Some(hops), _, _) => (PingMode::Randomcast(hops), args.count.unwrap_or(3)),
        (_, Some(breadth), _) => (PingMode::Broadcast(breadth), 1),
        (_, _, Some(shard)) => {
            let shard = Shard::new(shard)
                .ok_or(format!("shard {shard} does not exist; shards are 0 to 15"))?;
            (PingMode::Find(shard, 4), 1)
        }
        _ => (PingMode::Singlecast, args.count.unwrap_or(3)),
    })
}

/// Pings the node at `entry` as `args` say; whether someone answered.
fn ping_node(
    client: &mut Client,
    entry: SocketAddr,
    args: &Args,
    (mode, rounds): (PingMode, u32),
    wait: Duration,
) -> Result<bool, ClientError> {
    if let Some(count) = args.scan {
        return scan(client, entry, count, wait, args.full_shards);
    }
    if args.list {
        return list(client, entry, args.fragments, wait);
    }
    if args.stats {
        // Like ping -c and -i: COUNT reports, INTERVAL seconds apart.
        let reports = args.count.unwrap_or(1);
        let interval = Duration::try_from_secs_f64(args.interval).unwrap_or(Duration::from_secs(1));
        let started = std::time::Instant::now();
        let mut answered = false;
        for k in 0..reports {
            if k > 0 {
                std::thread::sleep(interval);
                say("");
            }
            if reports > 1 {
                say(format!(
                    "# report {} of {reports}, {:.1} s after the first",
                    k + 1,
                    started.elapsed().as_secs_f64()
                ));
            }
            answered |= stats_report(client, entry, wait)?;
        }
        return Ok(answered);
    }
    let mut answered = 0usize;
    let mut rtts = Vec::new();
    for _ in 0..rounds.max(1) {
        let pongs = client.ping(mode, wait, |pong: &Pong| {
            say(format!(
                "answer from {} (shard {}) at {}: time={:.3} ms",
                pong.from.id,
                pong.from.id.shard(),
                pong.from.addr,
                pong.rtt.as_secs_f64() * 1000.0
            ));
        })?;
        answered += pongs.len();
        rtts.extend(pongs.iter().map(|p| p.rtt.as_secs_f64() * 1000.0));
    }
    if rtts.is_empty() {
        say(format!("no answer from {entry} ({rounds} sent)"));
        return Ok(false);
    }
    let min = rtts.iter().copied().fold(f64::INFINITY, f64::min);
    let max = rtts.iter().copied().fold(0.0, f64::max);
    let avg = rtts.iter().sum::<f64>() / rtts.len() as f64;
    say(format!(
        "{answered} answers to {rounds} pings; rtt min/avg/max = {min:.3}/{avg:.3}/{max:.3} ms"
    ));
    Ok(true)
}

/// Asks `entry` for its counters and prints them; whether it answered.
fn stats_report(
    client: &mut Client,
    entry: SocketAddr,
    wait: Duration,
) -> Result<bool, ClientError> {
    match client.stats(entry, wait)? {
        Some(stats) => {
            say(format!(
                "node {} shard {} at {}: up {}, {} of {} fragments, {} neighbors, {}",
                stats.from.id,
                stats.from.id.shard(),
                stats.from.addr,
                uptime(stats.stats.uptime),
                stats.stats.held,
                stats.stats.capacity,
                stats.stats.neighbors,
                if stats.stats.joined { "joined" } else { "joining" }
            ));
            say(format!("{:<9} {:>30}   {:>32}", "message", "received", "sent"));
            say(format_args!("{}", stats.stats.counters).to_string().trim_end());
            Ok(true)
        }
        None => {
            eprintln!("dhtping: no answer from {entry} within {:.1} s", wait.as_secs_f64());
            Ok(false)
        }
    }
}

fn scan(
    client: &mut Client,
    first: SocketAddr,
    count: u16,
    wait: Duration,
    full_shards: bool,
) -> Result<bool, ClientError> {
    let targets: Vec<SocketAddr> = (0..count)
        .filter_map(|i| first.port().checked_add(i).map(|p| SocketAddr::new(first.ip(), p)))
        .collect();
    let start = std::time::Instant::now();
    let mut answers = client.stats_of_all(&targets, wait, |s| s.stats.joined)?;
    // Nodes may move to empty shards after joining: ask again until every
    // shard has a node, within the same time limit.
    while full_shards && start.elapsed() < wait && shards_of(&answers).contains(&0) {
        std::thread::sleep(Duration::from_millis(100));
        let left = wait.saturating_sub(start.elapsed());
        answers = client.stats_of_all(&targets, left, |s| s.stats.joined)?;
    }
    let up = answers.iter().filter(|a| a.is_some()).count();
    let joined = answers.iter().filter(|a| a.as_ref().is_some_and(|s| s.stats.joined)).count();
    let shards = shards_of(&answers);
    let held: u64 = answers.iter().flatten().map(|s| u64::from(s.stats.held)).sum();
    say(format!(
        "{up} of {} nodes answered, {joined} joined, in {:.3} s; nodes per shard {shards:?}; \
         {held} fragments held",
        targets.len(),
        start.elapsed().as_secs_f64()
    ));
    for (target, answer) in targets.iter().zip(answers.iter()) {
        if answer.is_none() {
            say(format!("no answer from {target}"));
        }
    }
    Ok(joined == targets.len() && !(full_shards && shards.contains(&0)))
}

fn shards_of(answers: &[Option<dht_std::client::StatsAnswer>]) -> [usize; 16] {
    let mut shards = [0usize; 16];
    for stats in answers.iter().flatten() {
        if let Some(n) = shards.get_mut(stats.from.id.shard().index()) {
            *n += 1;
        }
    }
    shards
}

/// `secs` as people read an uptime: `3 d 4 h`, `2 h 5 min`, `40 s`.
fn uptime(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s} s"),
        (0, 0, _) => format!("{m} min {s} s"),
        (0, _, _) => format!("{h} h {m} min"),
        _ => format!("{d} d {h} h"),
    }
}

/// Lists what `entry` holds (files, or every fragment); whether it
/// answered every page.
fn list(
    client: &mut Client,
    entry: SocketAddr,
    fragments: bool,
    wait: Duration,
) -> Result<bool, ClientError> {
    use dht_core::wire::ListedKind;
    let mut listed = 0u64;
    let mut who = None;
    let held = client.list(entry, !fragments, wait, |from, e| {
        who.get_or_insert(*from);
        listed += 1;
        let coded = if e.kind == ListedKind::CodedFile { ", coded" } else { "" };
        let line = if !fragments {
            format!("{}  {:>12}  {}{coded}", e.hash, e.size, e.name.escape_debug())
        } else {
            let what = match e.kind {
                ListedKind::Data => "data".to_string(),
                ListedKind::Index => "index".to_string(),
                _ => format!("file {} ({} bytes{coded})", e.name.escape_debug(), e.size),
            };
            let copies = match e.copies {
                0 => "all".to_string(),
                n => n.to_string(),
            };
            format!("{}  shard {:>2}  copies {:>3}  {what}", e.hash, e.hash.shard(), copies)
        };
        say(line);
    })?;
    let node = who.map_or(entry.to_string(), |p| {
        format!("node {} (shard {}) at {}", p.id, p.id.shard(), p.addr)
    });
    let what = if fragments { "fragments" } else { "files" };
    match held {
        Some(held) => {
            say(format!("{listed} {what} listed; {node} holds {held} fragments"));
            Ok(true)
        }
        None if listed == 0 => {
            eprintln!("dhtping: no answer from {entry} within {:.1} s", wait.as_secs_f64());
            Ok(false)
        }
        None => {
            eprintln!(
                "dhtping: {node} stopped answering after {listed} {what}; the list is incomplete"
            );
            Err(ClientError::Timeout { what: "listing", waited: wait })
        }
    }
}
