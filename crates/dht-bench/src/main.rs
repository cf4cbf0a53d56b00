//! `dht-bench`: measures the test scene with real processes and prints
//! one JSON object (run by `make bench`).
//!
//! It deploys the scene with `deploy_test_scene.sh --clean`, uploads a
//! random 2,088,960-byte file with `dhtsend`, downloads it with `dhtrecv`,
//! and reads the nodes' counters (STATS), their stores (files on disk) and
//! their processes (`/proc`). Nothing here is asserted: the figures are
//! reported, and compared with the targets in the README by a person.
//!
//! Every figure is measured twice in one run, on an open scene
//! (`deploy_test_scene.sh --no-key`) and on a scene with a network key
//! (every datagram carries an HMAC tag), and printed as
//! `{"open": {...}, "keyed": {...}}`.
//!
//! Usage: `dht-bench [NODES] [BASE_PORT]` from the repository root, with
//! the tools built in `bin/`; `--open-only` and `--keyed-only` measure one
//! scene. Each scene also uploads and downloads a 256 MiB file (`--gib`:
//! and a 1 GiB one; `--large-only`: nothing else), beside the machine's own
//! limits: SHA-256 on one core and 8 KB writes to a directory store.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use dht_core::counters::{Counters, Traffic};
use dht_core::wire::MessageKind;
use dht_std::client::Client;

type Error = Box<dyn std::error::Error>;

/// Where the bench runs: the repository, its tools and scene directory.
struct Setup {
    root: PathBuf,
    bin: PathBuf,
    scene: PathBuf,
    nodes: u16,
    base: u16,
    /// Whether the scene has a network key (`scene/network.key`).
    keyed: bool,
}

impl Setup {
    fn ports(&self) -> impl Iterator<Item = u16> + '_ {
        self.base..self.base + self.nodes
    }

    fn addrs(&self) -> Vec<SocketAddr> {
        self.ports().map(|p| SocketAddr::from(([127, 0, 0, 1], p))).collect()
    }

    fn deploy(&self, node_args: &str) -> Result<f64, Error> {
        let started = Instant::now();
        let output = Command::new(self.root.join("deploy_test_scene.sh"))
            .args(["--clean", "-n", &self.nodes.to_string(), "-p", &self.base.to_string()])
            .args(if self.keyed { &[][..] } else { &["--no-key"][..] })
            .env("DHT_BIN_DIR", &self.bin)
            .env("DHT_SCENE_DIR", &self.scene)
            .env("DHT_NODE_ARGS", node_args)
            .stdin(Stdio::null())
            .output()?;
        let elapsed = started.elapsed().as_secs_f64();
        if !output.status.success() {
            return Err(
                format!("deploy failed: {}", String::from_utf8_lossy(&output.stderr)).into()
            );
        }
        // The script's own figure excludes wiping the old stores.
        let text = String::from_utf8_lossy(&output.stdout);
        let reported = text
            .split(" in ")
            .nth(1)
            .and_then(|rest| rest.split(' ').next())
            .and_then(|s| s.parse::<f64>().ok());
        Ok(reported.unwrap_or(elapsed))
    }

    fn stop(&self) {
        let _ = Command::new(self.root.join("deploy_test_scene.sh"))
            .arg("stop")
            .env("DHT_BIN_DIR", &self.bin)
            .env("DHT_SCENE_DIR", &self.scene)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .status();
    }

    fn key_file(&self) -> PathBuf {
        self.scene.join("network.key")
    }

    /// A client of the scene (with its key, if it has one).
    fn client(&self) -> Result<Client, Error> {
        let mut client = Client::bind(SocketAddr::from(([127, 0, 0, 1], self.base)), 0)?;
        if self.keyed {
            client.set_network_key(Some(dht_std::key::read_key_file(&self.key_file())?));
        }
        Ok(client)
    }

    fn pid_of(&self, port: u16) -> Option<u32> {
        let text =
            std::fs::read_to_string(self.scene.join(port.to_string()).join("node.pid")).ok()?;
        text.trim().parse().ok()
    }

    fn pids(&self) -> Vec<u32> {
        self.ports().filter_map(|p| self.pid_of(p)).collect()
    }

    /// Runs a tool of the scene; its time and standard output.
    fn tool(&self, name: &str, args: &[&str]) -> Result<(f64, String), Error> {
        let (elapsed, output) = self.tool_output(name, args)?;
        Ok((elapsed, String::from_utf8_lossy(&output.stdout).into_owned()))
    }

    /// A tool of the scene with `args`, with the scene's key if it has one.
    fn command(&self, name: &str, args: &[&str]) -> Command {
        let mut command = Command::new(self.bin.join(name));
        command.args(args).stdin(Stdio::null()).env_remove("DHT_KEY_FILE");
        if self.keyed {
            command.env("DHT_KEY_FILE", self.key_file());
        }
        command
    }

    /// Runs a tool of the scene (with its key, if any); its time and whole
    /// output, once it exited with success.
    fn tool_output(&self, name: &str, args: &[&str]) -> Result<(f64, Output), Error> {
        let started = Instant::now();
        let output = self.command(name, args).output()?;
        let elapsed = started.elapsed().as_secs_f64();
        if !output.status.success() {
            return Err(
                format!("{name} failed: {}", String::from_utf8_lossy(&output.stderr)).into()
            );
        }
        Ok((elapsed, output))
    }
}

/// The sum of every node's counters (STATS answers themselves excluded).
fn totals(client: &mut Client, setup: &Setup) -> Result<Counters, Error> {
    let answers = client.stats_of_all(&setup.addrs(), Duration::from_secs(5), |_| true)?;
    let mut total = Counters::default();
    for stats in answers.iter().flatten() {
        total.accumulate(&stats.stats.counters);
    }
    if let Some(t) = total.sent.get_mut(MessageKind::Stats.index()) {
        *t = Traffic::default();
    }
    Ok(total)
}

fn sent_since(after: &Counters, before: &Counters) -> Traffic {
    let a = after.sent_total();
    let b = before.sent_total();
    Traffic { datagrams: a.datagrams - b.datagrams, bytes: a.bytes - b.bytes }
}

/// Waits until the nodes stop sending FILEFRAGs (replication settled), at
/// most `limit`; returns the last totals.
fn settle(client: &mut Client, setup: &Setup, limit: Duration) -> Result<Counters, Error> {
    let started = Instant::now();
    let mut last = totals(client, setup)?;
    loop {
        std::thread::sleep(Duration::from_millis(300));
        let now = totals(client, setup)?;
        let moved = now.sent_of(MessageKind::FileFrag).datagrams
            != last.sent_of(MessageKind::FileFrag).datagrams;
        last = now;
        if !moved || started.elapsed() > limit {
            return Ok(last);
        }
    }
}

/// The fragments (hex hashes) the store of the node on `port` holds.
fn held(setup: &Setup, port: u16) -> Vec<String> {
    dht_std::store::held_in(&setup.scene.join(port.to_string()))
        .unwrap_or_default()
        .iter()
        .map(|(hash, _)| hash.to_string())
        .collect()
}

/// Holders of each of `hashes`, from the nodes' stores.
fn holders(setup: &Setup, hashes: &[String]) -> Vec<usize> {
    let mut count: HashMap<&str, usize> = hashes.iter().map(|h| (h.as_str(), 0)).collect();
    for port in setup.ports() {
        for hash in held(setup, port) {
            if let Some(c) = count.get_mut(hash.as_str()) {
                *c += 1;
            }
        }
    }
    let mut out: Vec<usize> =
        hashes.iter().map(|h| count.get(h.as_str()).copied().unwrap_or(0)).collect();
    out.sort_unstable();
    out
}

/// The shard of the node on `port`, from its saved identity.
fn node_shard(setup: &Setup, port: u16) -> Option<u64> {
    let text = std::fs::read_to_string(setup.scene.join(port.to_string()).join("node.id")).ok()?;
    u64::from_str_radix(text.trim(), 16).ok().map(|id| id % 16)
}

/// What the stores of the nodes on `ports` hold, read once.
fn holdings(setup: &Setup, ports: &[u16]) -> HashMap<u16, std::collections::HashSet<String>> {
    ports.iter().map(|p| (*p, held(setup, *p).into_iter().collect())).collect()
}

/// Ports among `ports` whose store holds `hash`, in `holdings`.
fn holders_among(
    holdings: &HashMap<u16, std::collections::HashSet<String>>,
    hash: &str,
    ports: &[u16],
) -> Vec<u16> {
    ports.iter().copied().filter(|p| holdings.get(p).is_some_and(|h| h.contains(hash))).collect()
}

/// Whether every fragment has R copies among `live`, or as many as its
/// shard still has members.
fn repaired(setup: &Setup, hashes: &[String], live: &[u16]) -> bool {
    let holdings = holdings(setup, live);
    hashes.iter().all(|h| {
        let shard = u64::from_str_radix(&h[..16], 16).map(|v| v % 16).ok();
        let members = live.iter().filter(|p| node_shard(setup, **p) == shard).count();
        holders_among(&holdings, h, live).len() >= REPLICATION.min(members)
    })
}

/// Replication factor of the default node configuration.
const REPLICATION: usize = 3;

/// Polls `done` every 50 ms for at most `limit`; the time it took.
fn time_until(limit: Duration, mut done: impl FnMut() -> bool) -> Option<f64> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if done() {
            return Some(start.elapsed().as_secs_f64());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

/// Total proportional set size of the processes, in MiB.
fn pss_mib(pids: &[u32]) -> f64 {
    let kib: u64 = pids
        .iter()
        .filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok())
        .filter_map(|text| {
            text.lines()
                .find(|l| l.starts_with("Pss:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
        })
        .sum();
    kib as f64 / 1024.0
}

/// CPU time the processes have used, in seconds, from
/// `/proc/PID/schedstat` (nanoseconds, unlike the tick counts of
/// `/proc/PID/stat`, which round an idle node's few microseconds to zero).
fn cpu_seconds(pids: &[u32]) -> f64 {
    let nanos: u64 = pids
        .iter()
        .filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/schedstat")).ok())
        .filter_map(|text| text.split_whitespace().next()?.parse::<u64>().ok())
        .sum();
    nanos as f64 / 1e9
}

fn median(sorted: &[usize]) -> usize {
    sorted.get(sorted.len() / 2).copied().unwrap_or(0)
}

fn fragment_hashes(setup: &Setup, file: &Path) -> Result<Vec<String>, Error> {
    // dhthash -v lists the fragments on standard error.
    let (_, output) = setup.tool_output("dhthash", &["-v", file.to_str().ok_or("path")?])?;
    let listing = String::from_utf8_lossy(&output.stderr);
    Ok(listing
        .lines()
        .filter_map(|l| {
            // "  7 <hash> shard 3" and "index <hash> shard 9"
            let mut words = l.split_whitespace().skip(1);
            let hash = words.next()?;
            (hash.len() == 64 && words.next() == Some("shard")).then(|| hash.to_owned())
        })
        .collect())
}

fn main() {
    if let Err(e) = run() {
        eprintln!("dht-bench: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), Error> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    // `--round-trips-only`: deploy, run the consecutive round trips, stop
    // (needs nothing of the nodes but the tools, so it also measures
    // another build's binaries given in DHT_BIN_DIR).
    let only_round_trips = args.iter().any(|a| a == "--round-trips-only");
    // `--detect-only`: deploy, kill one node, time until no node knows it.
    let detect_only = args.iter().any(|a| a == "--detect-only");
    // `--large-only`: deploy, upload and download a 256 MiB file, stop.
    let large_only = args.iter().any(|a| a == "--large-only");
    // `--gib`: a 1 GiB file as well.
    let sizes: &[u64] =
        if args.iter().any(|a| a == "--gib") { &[LARGE_MIB, 1024] } else { &[LARGE_MIB] };
    let open = !args.iter().any(|a| a == "--keyed-only");
    let keyed = !args.iter().any(|a| a == "--open-only");
    args.retain(|a| !a.starts_with("--"));
    let nodes: u16 = args.first().map(|a| a.parse()).transpose()?.unwrap_or(256);
    let base: u16 = args.get(1).map(|a| a.parse()).transpose()?.unwrap_or(8000);
    let root = std::env::current_dir()?;
    let bin = std::env::var_os("DHT_BIN_DIR").map_or_else(|| root.join("bin"), PathBuf::from);
    let mut parts = vec![hmac_cost()];
    if !detect_only && !only_round_trips {
        parts.push(machine_limits(&root.join("test_scene"))?);
    }
    for (name, with_key) in [("open", false), ("keyed", true)] {
        if (with_key && !keyed) || (!with_key && !open) {
            continue;
        }
        eprintln!("dht-bench: the {name} scene");
        let setup = Setup {
            bin: bin.clone(),
            scene: root.join("test_scene"),
            root: root.clone(),
            nodes,
            base,
            keyed: with_key,
        };
        let large = |setup: &Setup| -> Result<String, Error> {
            let fields: Result<Vec<String>, Error> =
                sizes.iter().map(|&mib| throughput(setup, mib)).collect();
            Ok(fields?.join(", "))
        };
        let result = if large_only {
            setup.deploy("").and_then(|_| large(&setup)).map(|f| format!("{{{f}}}"))
        } else if detect_only {
            let args = std::env::var("DHT_BENCH_NODE_ARGS").unwrap_or_default();
            setup.deploy(&args).and_then(|_| detect(&setup)).map(|f| format!("{{{f}}}"))
        } else if only_round_trips {
            setup
                .deploy("")
                .and_then(|_| round_trips(&setup, ROUND_TRIPS))
                .map(|fields| format!("{{{fields}}}"))
        } else {
            measure(&setup, &large)
        };
        setup.stop();
        parts.push(format!("\"{name}\": {}", result?));
    }
    println!("{{{}}}", parts.join(", "));
    Ok(())
}

/// Kills one node of a settled scene; the JSON field of how long until no
/// other node has it in its table.
fn detect(setup: &Setup) -> Result<String, Error> {
    let mut client = setup.client()?;
    std::thread::sleep(Duration::from_secs(3));
    let victim = setup.base + setup.nodes / 2;
    kill(setup.pid_of(victim), 9);
    let (detect_s, knowers) = time_until_forgotten(&mut client, setup, victim);
    let opt = |v: Option<f64>| v.map_or("null".to_owned(), |x| format!("{x:.3}"));
    Ok(format!(
        "\"dead_node_gone_from_every_table_s\": {}, \"still_knowing\": {knowers}",
        opt(detect_s)
    ))
}

/// Seconds until no node but `victim` has `victim` in its table (at most
/// a minute), and how many still had it at the last look.
fn time_until_forgotten(client: &mut Client, setup: &Setup, victim: u16) -> (Option<f64>, usize) {
    let victim_addr = SocketAddr::from(([127, 0, 0, 1], victim));
    let others: Vec<SocketAddr> = setup.addrs().into_iter().filter(|a| *a != victim_addr).collect();
    let mut knowers = 0;
    let took = time_until(Duration::from_secs(60), || {
        client
            .stats_of_all_about(&others, Some(victim_addr), Duration::from_secs(2), |_| true)
            .map(|answers| {
                let still: Vec<String> = others
                    .iter()
                    .zip(answers.iter())
                    .filter(|(_, s)| s.as_ref().is_some_and(|s| s.stats.knows))
                    .map(|(a, _)| a.port().to_string())
                    .collect();
                knowers = still.len();
                if !still.is_empty() && still.len() <= 8 {
                    eprintln!("dht-bench: {victim} still known by {}", still.join(" "));
                }
                knowers == 0
            })
            .unwrap_or(false)
    });
    (took, knowers)
}

/// What the network key's tag costs on this host per datagram: the
/// median of 21 runs of 2,000 tags each, for a whole fragment, a piece
/// that fits a frame, and a small control datagram.
fn hmac_cost() -> String {
    let key = dht_core::auth::NetworkKey::new(b"bench");
    let fields: Vec<String> = [8320usize, 1452, 96]
        .iter()
        .map(|&len| {
            let data = vec![0x5au8; len];
            let mut runs: Vec<f64> = (0..21)
                .map(|_| {
                    let started = Instant::now();
                    for _ in 0..2_000 {
                        std::hint::black_box(key.tag(std::hint::black_box(&data)));
                    }
                    started.elapsed().as_secs_f64() / 2_000.0 * 1e6
                })
                .collect();
            runs.sort_by(f64::total_cmp);
            format!("\"hmac_tag_{len}_bytes_us\": {:.2}", runs[runs.len() / 2])
        })
        .collect();
    fields.join(", ")
}

/// Consecutive round trips of a 2 MB file.
const ROUND_TRIPS: usize = 50;

/// `count` round trips of a fresh random 2,088,960-byte file, each
/// uploaded through one node and downloaded through another (chosen at
/// random); the JSON fields of their upload and download times.
fn round_trips(setup: &Setup, count: usize) -> Result<String, Error> {
    let work = setup.scene.join("bench-round-trips");
    std::fs::create_dir_all(&work)?;
    let file = work.join("trip.bin");
    let out = work.join("trip.out");
    let mut rng = dht_core::rand::Rng::new(dht_std::random_seed());
    let mut data = vec![0u8; dht_core::MAX_FILE_SIZE as usize];
    let (mut uploads, mut downloads) = (Vec::new(), Vec::new());
    let mut differing = 0;
    let mut failed = 0;
    eprintln!("dht-bench: {count} consecutive round trips of a 2 MB file");
    for _ in 0..count {
        rng.fill_bytes(&mut data);
        std::fs::write(&file, &data)?;
        let entry = (setup.base + rng.below(usize::from(setup.nodes)) as u16).to_string();
        let exit = (setup.base + rng.below(usize::from(setup.nodes)) as u16).to_string();
        // Without the read-back, to compare with the uploads of before it
        // existed (`upload_s` above includes it).
        let path = file.to_str().ok_or("path")?;
        let target = out.to_str().ok_or("path")?;
        let trip = || -> Result<(f64, f64), Error> {
            let send = ["-q", "--no-verify", path, "127.0.0.1", &entry];
            let (up, stdout) = setup.tool("dhtsend", &send)?;
            let recv = ["-q", stdout.trim(), "127.0.0.1", &exit, "-o", target, "--force"];
            let (down, _) = setup.tool("dhtrecv", &recv)?;
            Ok((up, down))
        };
        let (up, down) = match trip() {
            Ok(times) => times,
            Err(e) => {
                eprintln!("dht-bench: round trip failed: {e}");
                failed += 1;
                continue;
            }
        };
        if std::fs::read(&out)? != data {
            differing += 1;
        }
        uploads.push(up);
        downloads.push(down);
    }
    let stats = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        (v.get(v.len() / 2).copied().unwrap_or(0.0), v.last().copied().unwrap_or(0.0))
    };
    let (up_median, up_max) = stats(&mut uploads);
    let (down_median, down_max) = stats(&mut downloads);
    Ok(format!(
        concat!(
            "\"round_trips\": {}, \"round_trips_failed\": {}, \"round_trips_differing\": {}, ",
            "\"round_trip_upload_median_s\": {:.3}, \"round_trip_upload_max_s\": {:.3}, ",
            "\"round_trip_download_median_s\": {:.3}, \"round_trip_download_max_s\": {:.3}"
        ),
        count, failed, differing, up_median, up_max, down_median, down_max
    ))
}

fn measure(
    setup: &Setup,
    large: &dyn Fn(&Setup) -> Result<String, Error>,
) -> Result<String, Error> {
    let work = setup.scene.join("bench");
    std::fs::create_dir_all(&work)?;
    let file = work.join("sample.bin");
    let mut data = vec![0u8; dht_core::MAX_FILE_SIZE as usize];
    dht_core::rand::Rng::new(dht_std::random_seed()).fill_bytes(&mut data);
    std::fs::write(&file, &data)?;
    let hashes = fragment_hashes(setup, &file)?;

    eprintln!("dht-bench: deploying {} nodes", setup.nodes);
    let deploy_s = setup.deploy("")?;
    let mut client = setup.client()?;
    std::thread::sleep(Duration::from_millis(500));

    let entry = setup.base.to_string();
    let exit = (setup.base + setup.nodes - 1).to_string();
    let before_upload = totals(&mut client, setup)?;
    eprintln!("dht-bench: uploading");
    // Without the read-back, as before it existed.
    let path = file.to_str().ok_or("path")?;
    let (upload_s, stdout) =
        setup.tool("dhtsend", &["-q", "--no-verify", path, "127.0.0.1", &entry])?;
    let hash = stdout.trim().to_owned();
    let after_upload = settle(&mut client, setup, Duration::from_secs(30))?;
    let upload = sent_since(&after_upload, &before_upload);
    let upload_newfile = after_upload.sent_of(MessageKind::NewFile).datagrams
        - before_upload.sent_of(MessageKind::NewFile).datagrams;

    eprintln!("dht-bench: downloading");
    let out = work.join("sample.out");
    let (download_s, _) = setup.tool(
        "dhtrecv",
        &["-q", &hash, "127.0.0.1", &exit, "-o", out.to_str().ok_or("path")?, "--force"],
    )?;
    let after_download = totals(&mut client, setup)?;
    let download = sent_since(&after_download, &after_upload);
    let identical = std::fs::read(&out)? == data;

    let holders = holders(setup, &hashes);
    let pids = setup.pids();
    eprintln!("dht-bench: measuring the idle scene for 10 s");
    let before_idle = totals(&mut client, setup)?;
    let cpu_before = cpu_seconds(&pids);
    let idle_started = Instant::now();
    std::thread::sleep(Duration::from_secs(10));
    let idle_cpu_s = cpu_seconds(&pids) - cpu_before;
    let idle_wall = idle_started.elapsed().as_secs_f64();
    let after_idle = totals(&mut client, setup)?;
    let idle = sent_since(&after_idle, &before_idle);
    let pss = pss_mib(&pids);

    let idle_per_node = idle.datagrams as f64 / idle_wall / f64::from(setup.nodes);

    // Detection: SIGKILL one node, and time until no node knows it.
    eprintln!("dht-bench: killing one node");
    let ports: Vec<u16> = setup.ports().collect();
    let pids_by_port: HashMap<u16, u32> =
        ports.iter().filter_map(|p| setup.pid_of(*p).map(|pid| (*p, pid))).collect();
    let victim = setup.base + setup.nodes / 2;
    kill(pids_by_port.get(&victim).copied(), 9);
    let (detect_s, _) = time_until_forgotten(&mut client, setup, victim);

    // Repair: SIGKILL half of the nodes (among those whose death leaves
    // every fragment a copy), and time until every fragment is back at R
    // copies (or as many as its shard still has members).
    eprintln!("dht-bench: killing half of the nodes");
    let mut live: Vec<u16> = ports.iter().copied().filter(|p| *p != victim).collect();
    let mut rng = dht_core::rand::Rng::new(dht_std::random_seed());
    let mut order = live.clone();
    rng.shuffle(&mut order);
    let mut victims = Vec::new();
    let before = holdings(setup, &live);
    for &p in &order {
        if victims.len() + 1 >= usize::from(setup.nodes) / 2 {
            break;
        }
        let keeps = hashes.iter().all(|h| {
            holders_among(&before, h, &live).iter().any(|x| *x != p && !victims.contains(x))
        });
        if keeps {
            victims.push(p);
        }
    }
    for p in &victims {
        kill(pids_by_port.get(p).copied(), 9);
    }
    live.retain(|p| !victims.contains(p));
    let repair_s = time_until(Duration::from_secs(300), || repaired(setup, &hashes, &live));
    let now = holdings(setup, &live);
    let mut after: Vec<usize> =
        hashes.iter().map(|h| holders_among(&now, h, &live).len()).collect();
    after.sort_unstable();
    setup.stop();

    // Consecutive round trips on a fresh scene (so that the repair above
    // is measured on the first file alone).
    eprintln!("dht-bench: deploying again for the round trips");
    setup.deploy("")?;
    let trips = round_trips(setup, ROUND_TRIPS)?;
    let large = large(setup)?;

    let opt = |v: Option<f64>| v.map_or("null".to_owned(), |x| format!("{x:.3}"));
    Ok(format!(
        concat!(
            "{{\"nodes\": {}, \"deploy_s\": {:.3}, \"upload_s\": {:.3}, \"download_s\": {:.3}, ",
            "\"round_trip_identical\": {}, ",
            "\"upload_datagrams\": {}, \"upload_bytes\": {}, \"upload_newfile_datagrams\": {}, ",
            "\"download_datagrams\": {}, \"download_bytes\": {}, ",
            "\"holders_per_fragment_median\": {}, \"holders_per_fragment_min\": {}, ",
            "\"pss_total_mib\": {:.1}, \"idle_cpu_s_over_10s\": {:.3}, \"idle_cpu_percent_of_one_core\": {:.2}, ",
            "\"idle_datagrams_per_s\": {:.1}, \"idle_datagrams_per_node_per_s\": {:.3}, ",
            "\"dead_node_gone_from_every_table_s\": {}, ",
            "\"killed_half\": {}, \"repair_after_killing_half_s\": {}, ",
            "\"holders_after_repair_median\": {}, \"holders_after_repair_min\": {}, {}, {}}}"
        ),
        setup.nodes,
        deploy_s,
        upload_s,
        download_s,
        identical,
        upload.datagrams,
        upload.bytes,
        upload_newfile,
        download.datagrams,
        download.bytes,
        median(&holders),
        holders.first().copied().unwrap_or(0),
        pss,
        idle_cpu_s,
        idle_cpu_s / idle_wall * 100.0,
        idle.datagrams as f64 / idle_wall,
        idle_per_node,
        opt(detect_s),
        victims.len() + 1,
        opt(repair_s),
        median(&after),
        after.first().copied().unwrap_or(0),
        trips,
        large,
    ))
}

/// Sends signal `number` to `pid` (through kill(1)).
fn kill(pid: Option<u32>, number: u8) {
    if let Some(pid) = pid {
        let _ = Command::new("kill").arg(format!("-{number}")).arg(pid.to_string()).status();
    }
}

/// Size of the large file of the throughput figures (`--gib` adds 1 GiB).
const LARGE_MIB: u64 = 256;

/// Runs a tool of the scene like [`Setup::tool`], polling its peak
/// resident set (VmHWM) until it exits; its time, peak RSS in MiB and
/// standard output.
fn tool_with_rss(setup: &Setup, name: &str, args: &[&str]) -> Result<(f64, f64, String), Error> {
    let started = Instant::now();
    let child = setup.command(name, args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn()?;
    let status_path = format!("/proc/{}/status", child.id());
    let peak_kib = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let watcher = {
        let peak = peak_kib.clone();
        std::thread::spawn(move || {
            while let Ok(text) = std::fs::read_to_string(&status_path) {
                let hwm = text
                    .lines()
                    .find(|l| l.starts_with("VmHWM:"))
                    .and_then(|l| l.split_whitespace().nth(1))
                    .and_then(|v| v.parse::<u64>().ok());
                match hwm {
                    Some(kib) => peak.fetch_max(kib, std::sync::atomic::Ordering::Relaxed),
                    // A zombie has no memory left to report.
                    None => break,
                };
                std::thread::sleep(Duration::from_millis(10));
            }
        })
    };
    let output = child.wait_with_output()?;
    let elapsed = started.elapsed().as_secs_f64();
    let _ = watcher.join();
    if !output.status.success() {
        return Err(format!("{name} failed: {}", String::from_utf8_lossy(&output.stderr)).into());
    }
    let peak = peak_kib.load(std::sync::atomic::Ordering::Relaxed) as f64 / 1024.0;
    Ok((elapsed, peak, String::from_utf8_lossy(&output.stdout).into_owned()))
}

/// Writes `mib` MiB of random bytes to `path`, 8 MiB at a time.
fn write_random(path: &Path, mib: u64) -> Result<(), Error> {
    use std::io::Write;
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    let mut rng = dht_core::rand::Rng::new(dht_std::random_seed());
    let mut chunk = vec![0u8; 8 << 20];
    for _ in 0..mib.div_ceil(8) {
        rng.fill_bytes(&mut chunk);
        out.write_all(&chunk)?;
    }
    out.flush()?;
    Ok(())
}

/// Whether two files have the same bytes, read 8 MiB at a time.
fn same_files(a: &Path, b: &Path) -> Result<bool, Error> {
    use std::io::Read;
    let (mut x, mut y) = (std::fs::File::open(a)?, std::fs::File::open(b)?);
    let (mut bx, mut by) = (vec![0u8; 8 << 20], vec![0u8; 8 << 20]);
    loop {
        let n = x.read(&mut bx)?;
        if n == 0 {
            return Ok(y.read(&mut by)? == 0);
        }
        y.read_exact(&mut by[..n])?;
        if bx[..n] != by[..n] {
            return Ok(false);
        }
    }
}

/// Upload and download of a `mib` MiB file on the scene: seconds, MB/s,
/// datagrams and bytes the nodes sent and received per byte of file, and
/// the peak RSS of dhtsend and dhtrecv (JSON fields prefixed `large_<mib>_`).
fn throughput(setup: &Setup, mib: u64) -> Result<String, Error> {
    let work = setup.scene.join("bench-large");
    std::fs::create_dir_all(&work)?;
    let file = work.join("large.bin");
    let out = work.join("large.out");
    write_random(&file, mib)?;
    let bytes = (mib << 20) as f64;
    let mut client = setup.client()?;
    let entry = (setup.base + 1).to_string();
    let exit = (setup.base + setup.nodes - 2).to_string();
    eprintln!("dht-bench: uploading {mib} MiB");
    let before = totals(&mut client, setup)?;
    let path = file.to_str().ok_or("path")?;
    let send = ["-q", "--no-verify", path, "127.0.0.1", &entry];
    let (up_s, up_rss, stdout) = tool_with_rss(setup, "dhtsend", &send)?;
    let hash = stdout.trim().to_owned();
    let uploaded = settle(&mut client, setup, Duration::from_secs(120))?;
    eprintln!("dht-bench: downloading {mib} MiB");
    let target = out.to_str().ok_or("path")?;
    let recv = ["-q", &hash, "127.0.0.1", &exit, "-o", target, "--force"];
    let (down_s, down_rss, _) = tool_with_rss(setup, "dhtrecv", &recv)?;
    let downloaded = totals(&mut client, setup)?;
    let identical = same_files(&file, &out)?;
    let _ = std::fs::remove_file(&file);
    let _ = std::fs::remove_file(&out);
    let per_byte = |after: &Counters, before: &Counters| {
        let sent = sent_since(after, before);
        let received = after.received_total().bytes - before.received_total().bytes;
        (
            (sent.datagrams + after.received_total().datagrams - before.received_total().datagrams)
                as f64
                / (bytes / 1e6),
            sent.bytes as f64 / bytes,
            received as f64 / bytes,
        )
    };
    let (up_dg, up_sent, up_recv) = per_byte(&uploaded, &before);
    let (down_dg, down_sent, down_recv) = per_byte(&downloaded, &uploaded);
    let p = format!("large_{mib}mib_");
    Ok(format!(
        concat!(
            "\"{p}identical\": {}, \"{p}upload_s\": {:.3}, \"{p}upload_mb_s\": {:.1}, ",
            "\"{p}download_s\": {:.3}, \"{p}download_mb_s\": {:.1}, ",
            "\"{p}upload_node_datagrams_per_mb\": {:.0}, ",
            "\"{p}upload_node_sent_bytes_per_byte\": {:.3}, ",
            "\"{p}upload_node_received_bytes_per_byte\": {:.3}, ",
            "\"{p}download_node_datagrams_per_mb\": {:.0}, ",
            "\"{p}download_node_sent_bytes_per_byte\": {:.3}, ",
            "\"{p}download_node_received_bytes_per_byte\": {:.3}, ",
            "\"{p}dhtsend_peak_rss_mib\": {:.1}, \"{p}dhtrecv_peak_rss_mib\": {:.1}"
        ),
        identical,
        up_s,
        bytes / 1e6 / up_s,
        down_s,
        bytes / 1e6 / down_s,
        up_dg,
        up_sent,
        up_recv,
        down_dg,
        down_sent,
        down_recv,
        up_rss,
        down_rss,
        p = p,
    ))
}

/// The machine's own limits beside the throughput figures: SHA-256 of
/// 8 KB fragments on one core, and 8 KB fragments written to a directory
/// store (the nodes' store) in `dir`, in MB/s.
fn machine_limits(dir: &Path) -> Result<String, Error> {
    use dht_core::store::FragmentStore;
    let mut fragment = [0u8; dht_core::FRAGMENT_SIZE];
    dht_core::rand::Rng::new(7).fill_bytes(&mut fragment);
    let rounds = 32_768; // 256 MiB
    let started = Instant::now();
    for i in 0..rounds {
        fragment[0] = i as u8;
        std::hint::black_box(dht_core::FragmentHash::of(std::hint::black_box(&fragment)));
    }
    let sha_mb_s =
        (rounds * dht_core::FRAGMENT_SIZE) as f64 / 1e6 / started.elapsed().as_secs_f64();
    let store_dir = dir.join("bench-store");
    let _ = std::fs::remove_dir_all(&store_dir);
    let mut store = dht_std::store::DirStore::open(&store_dir, 16_384)?;
    let writes = 8_192u32; // 64 MiB
    let started = Instant::now();
    for i in 0..writes {
        fragment[..4].copy_from_slice(&i.to_be_bytes());
        let hash = dht_core::FragmentHash::of(&fragment);
        store.store(&hash, &fragment).map_err(|e| format!("store: {e:?}"))?;
    }
    let store_s = started.elapsed().as_secs_f64();
    drop(store);
    let _ = std::fs::remove_dir_all(&store_dir);
    Ok(format!(
        concat!(
            "\"limit_sha256_one_core_mb_s\": {:.0}, \"limit_dir_store_8k_writes_per_s\": {:.0}, ",
            "\"limit_dir_store_write_mb_s\": {:.0}"
        ),
        sha_mb_s,
        f64::from(writes) / store_s,
        f64::from(writes) * dht_core::FRAGMENT_SIZE as f64 / 1e6 / store_s,
    ))
}
