//! debug
use dht_core::{Config, Duration, FragmentHash, MAX_FILE_SIZE};
use dht_sim::scene::{join_members, random_bytes};
use dht_sim::{Faults, Sim};
use std::sync::Mutex;
static FILTER: Mutex<String> = Mutex::new(String::new());
struct L;
impl log::Log for L {
    fn enabled(&self, _: &log::Metadata) -> bool {
        true
    }
    fn log(&self, r: &log::Record) {
        let f = FILTER.lock().unwrap();
        let m = format!("{}", r.args());
        if !f.is_empty() && m.contains(f.as_str()) {
            eprintln!("{m}");
        }
    }
    fn flush(&self) {}
}
fn main() {
    log::set_logger(&L).unwrap();
    log::set_max_level(log::LevelFilter::Trace);
    let loss: u32 = std::env::args().nth(1).map(|a| a.parse().unwrap()).unwrap_or(0);
    let seed: u64 = std::env::args().nth(3).map(|a| a.parse().unwrap()).unwrap_or(2);
    let nodes: usize = std::env::args().nth(4).map(|a| a.parse().unwrap()).unwrap_or(256);
    let mut sim = Sim::new(seed, Faults::lossy(loss));
    let members =
        join_members(&mut sim, Config::member(), 64, nodes, Duration::from_millis(2)).unwrap();
    let data = random_bytes(seed, 500_000);
    let sender = sim.add_client();
    sim.join(sender, members[seed as usize % nodes]);
    sim.run_until(Duration::from_secs(10), |s| s.is_joined(sender));
    let hash = sim.start_upload(sender, "soak", data.clone()).unwrap();
    sim.run_until(Duration::from_secs(120), |s| s.app_done(sender));
    println!("upload {:?} at {}", sim.upload_result(sender), sim.now());
    for wait in [0u64] {
        sim.run_for(Duration::from_secs(wait));
        let mut hist = std::collections::BTreeMap::new();
        for chunk in data.chunks(8192) {
            let mut f = [0u8; 8192];
            f[..chunk.len()].copy_from_slice(chunk);
            *hist.entry(sim.holders_of(&FragmentHash::of(&f)).len()).or_insert(0) += 1;
        }
        println!("after +{wait}s holders histogram {hist:?}");
    }
    let k: usize = std::env::args().nth(2).map(|a| a.parse().unwrap()).unwrap_or(7);
    let mut f = [0u8; 8192];
    f.copy_from_slice(&data[k * 8192..(k + 1) * 8192]);
    let h = FragmentHash::of(&f);
    *FILTER.lock().unwrap() = format!("{:016x}", h.prefix_u64());
    println!(
        "frag {k} shard {} holders {:?}",
        h.shard(),
        sim.holders_of(&h).iter().map(|&x| sim.addr(x).port()).collect::<Vec<_>>()
    );
    let receiver = sim.add_client();
    sim.join(receiver, members[(seed as usize * 7) % nodes]);
    sim.run_until(Duration::from_secs(10), |s| s.is_joined(receiver));
    sim.start_download(receiver, hash);
    sim.run_until(Duration::from_secs(120), |s| s.app_done(receiver));
    println!("download {:?}", sim.download_result(receiver).map(|r| r.as_ref().map(|v| v.len())));
    let c = sim.node(receiver).unwrap();
    let mut cands: heapless::Vec<dht_core::PeerInfo, 32> = heapless::Vec::new();
    c.holder_candidates(&h, &mut cands);
    println!("client candidates {:?}", cands.iter().map(|p| p.addr.port()).collect::<Vec<_>>());
    let mates: Vec<_> =
        (0..256).filter(|&m| sim.node(m).map(|n| n.shard()) == Some(h.shard())).collect();
    println!("shard members {:?}", mates.iter().map(|&x| sim.addr(x).port()).collect::<Vec<_>>());
}
