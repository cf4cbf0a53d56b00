//! `dht-bench`: measures the test scene with real processes and prints
//! one JSON object (run by `make bench`).
//!
//! It deploys the scene with `deploy_test_scene.sh --clean`, uploads a
//! random 2,088,960-byte file with `dhtsend`, downloads it with `dhtrecv`,
//! and reads the nodes' counters (STATS), their stores (files on disk) and
//! their processes (`/proc`). Nothing here is asserted: the figures are
//! reported, and compared with the targets in the README by a person.
//!
//! Usage: `dht-bench [NODES] [BASE_PORT]` from the repository root, with
//! the tools built in `bin/`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
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

    fn pids(&self) -> Vec<u32> {
        self.ports()
            .filter_map(|p| {
                let text = std::fs::read_to_string(self.scene.join(p.to_string()).join("node.pid"))
                    .ok()?;
                text.trim().parse().ok()
            })
            .collect()
    }

    fn tool(&self, name: &str, args: &[&str]) -> Result<(f64, String), Error> {
        let started = Instant::now();
        let output = Command::new(self.bin.join(name)).args(args).stdin(Stdio::null()).output()?;
        let elapsed = started.elapsed().as_secs_f64();
        if !output.status.success() {
            return Err(
                format!("{name} failed: {}", String::from_utf8_lossy(&output.stderr)).into()
            );
        }
        Ok((elapsed, String::from_utf8_lossy(&output.stdout).into_owned()))
    }
}

/// The sum of every node's counters (STATS answers themselves excluded).
fn totals(client: &mut Client, setup: &Setup) -> Result<Counters, Error> {
    let answers = client.stats_of_all(&setup.addrs(), Duration::from_secs(5), |_| true)?;
    let mut total = Counters::default();
    for stats in answers.iter().flatten() {
        total.accumulate(&stats.counters);
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

/// Holders of each of `hashes`, from the files in the nodes' stores.
fn holders(setup: &Setup, hashes: &[String]) -> Vec<usize> {
    let mut count: HashMap<&str, usize> = hashes.iter().map(|h| (h.as_str(), 0)).collect();
    for port in setup.ports() {
        let dir = setup.scene.join(port.to_string()).join("fragments");
        for hash in hashes {
            if dir.join(hash).exists() {
                if let Some(c) = count.get_mut(hash.as_str()) {
                    *c += 1;
                }
            }
        }
    }
    let mut out: Vec<usize> =
        hashes.iter().map(|h| count.get(h.as_str()).copied().unwrap_or(0)).collect();
    out.sort_unstable();
    out
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

/// User plus system CPU time of the processes, in clock ticks.
fn cpu_ticks(pids: &[u32]) -> u64 {
    pids.iter()
        .filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/stat")).ok())
        .filter_map(|text| {
            let after = text.rsplit_once(')')?.1;
            let fields: Vec<&str> = after.split_whitespace().collect();
            let utime: u64 = fields.get(11)?.parse().ok()?;
            let stime: u64 = fields.get(12)?.parse().ok()?;
            Some(utime + stime)
        })
        .sum()
}

fn clock_ticks_per_second() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

fn median(sorted: &[usize]) -> usize {
    sorted.get(sorted.len() / 2).copied().unwrap_or(0)
}

fn fragment_hashes(setup: &Setup, file: &Path) -> Result<Vec<String>, Error> {
    let (_, listing) = setup.tool("dhthash", &["-v", file.to_str().ok_or("path")?])?;
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
    let args: Vec<String> = std::env::args().skip(1).collect();
    let nodes: u16 = args.first().map(|a| a.parse()).transpose()?.unwrap_or(256);
    let base: u16 = args.get(1).map(|a| a.parse()).transpose()?.unwrap_or(8000);
    let root = std::env::current_dir()?;
    let setup = Setup { bin: root.join("bin"), scene: root.join("test_scene"), root, nodes, base };
    let result = measure(&setup);
    setup.stop();
    let json = result?;
    println!("{json}");
    Ok(())
}

fn measure(setup: &Setup) -> Result<String, Error> {
    let work = setup.scene.join("bench");
    std::fs::create_dir_all(&work)?;
    let file = work.join("sample.bin");
    let mut data = vec![0u8; dht_core::MAX_FILE_SIZE as usize];
    dht_core::rand::Rng::new(dht_std::random_seed()).fill_bytes(&mut data);
    std::fs::write(&file, &data)?;
    let hashes = fragment_hashes(setup, &file)?;

    eprintln!("dht-bench: deploying {} nodes", setup.nodes);
    let deploy_s = setup.deploy("")?;
    let mut client = Client::bind(SocketAddr::from(([127, 0, 0, 1], setup.base)), 0)?;
    std::thread::sleep(Duration::from_millis(500));

    let entry = setup.base.to_string();
    let exit = (setup.base + setup.nodes - 1).to_string();
    let before_upload = totals(&mut client, setup)?;
    eprintln!("dht-bench: uploading");
    let (upload_s, stdout) =
        setup.tool("dhtsend", &["-q", file.to_str().ok_or("path")?, "127.0.0.1", &entry])?;
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
    let ticks = cpu_ticks(&pids);
    let idle_started = Instant::now();
    std::thread::sleep(Duration::from_secs(10));
    let idle_cpu_s = (cpu_ticks(&pids) - ticks) as f64 / clock_ticks_per_second();
    let idle_wall = idle_started.elapsed().as_secs_f64();
    let after_idle = totals(&mut client, setup)?;
    let idle = sent_since(&after_idle, &before_idle);
    let pss = pss_mib(&pids);

    let idle_per_node = idle.datagrams as f64 / idle_wall / f64::from(setup.nodes);
    Ok(format!(
        concat!(
            "{{\"nodes\": {}, \"deploy_s\": {:.3}, \"upload_s\": {:.3}, \"download_s\": {:.3}, ",
            "\"round_trip_identical\": {}, ",
            "\"upload_datagrams\": {}, \"upload_bytes\": {}, \"upload_newfile_datagrams\": {}, ",
            "\"download_datagrams\": {}, \"download_bytes\": {}, ",
            "\"holders_per_fragment_median\": {}, \"holders_per_fragment_min\": {}, ",
            "\"pss_total_mib\": {:.1}, \"idle_cpu_s_over_10s\": {:.3}, \"idle_cpu_percent_of_one_core\": {:.2}, ",
            "\"idle_datagrams_per_node_per_s\": {:.3}}}"
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
        idle_per_node,
    ))
}
