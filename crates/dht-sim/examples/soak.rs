//! Runs the lossy round trip over many seeds to find the seeds that fail.
//!
//! `cargo run --release -p dht-sim --example soak -- [FIRST_SEED] [COUNT] [NODES] [LOSS%]`

use dht_core::{Config, Duration};
use dht_sim::scene::{join_members, random_bytes};
use dht_sim::{Faults, Sim};

fn main() {
    let args: Vec<u64> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let first = args.first().copied().unwrap_or(1);
    let count = args.get(1).copied().unwrap_or(20);
    let nodes = args.get(2).copied().unwrap_or(64) as usize;
    let loss = args.get(3).copied().unwrap_or(10) as u32;
    let mut failures = 0;
    for seed in first..first + count {
        let mut sim = Sim::new(seed, Faults::lossy(loss));
        let Some(members) =
            join_members(&mut sim, Config::member(), 64, nodes, Duration::from_millis(2))
        else {
            println!("seed {seed}: join did not complete");
            failures += 1;
            continue;
        };
        let data = random_bytes(seed, 500_000);
        let sender = sim.add_client();
        sim.join(sender, members[seed as usize % nodes]);
        sim.run_until(Duration::from_secs(10), |s| s.is_joined(sender));
        let hash = match sim.start_upload(sender, "soak", data.clone()) {
            Ok(h) => h,
            Err(e) => panic!("{e}"),
        };
        sim.run_until(Duration::from_secs(120), |s| s.app_done(sender));
        let up = sim.upload_result(sender);
        let receiver = sim.add_client();
        sim.join(receiver, members[(seed as usize * 7) % nodes]);
        sim.run_until(Duration::from_secs(10), |s| s.is_joined(receiver));
        sim.start_download(receiver, hash);
        sim.run_until(Duration::from_secs(120), |s| s.app_done(receiver));
        let ok = matches!(sim.download_result(receiver), Some(Ok(b)) if *b == data);
        if !ok {
            failures += 1;
            println!(
                "seed {seed}: upload {up:?} download {:?}",
                sim.download_result(receiver).map(|r| r.as_ref().map(|b| b.len()))
            );
        }
    }
    println!("{failures} of {count} seeds failed ({nodes} nodes, {loss}% loss)");
}
