//! Measures what a 2,088,960-byte upload costs a simulated 256-node network
//! with the original flooding NEWFILE announcements and with shard-targeted
//! ones, and prints one JSON object.
//!
//! `cargo run --release -p dht-sim --example announce_cost [NODES]`

use dht_core::config::Announce;
use dht_core::counters::Counters;
use dht_core::wire::MessageKind;
use dht_core::{Config, Duration, FragmentHash, MAX_FILE_SIZE};
use dht_sim::scene::{join_members, random_bytes};
use dht_sim::{Faults, Sim};

struct Cost {
    datagrams: u64,
    bytes: u64,
    newfile: u64,
    filefrag: u64,
    min_holders: usize,
    upload_ms: u64,
}

fn measure(nodes: usize, announce: Announce) -> Cost {
    let mut config = Config::member();
    config.announce = announce;
    let mut sim = Sim::new(42, Faults::default());
    let members =
        join_members(&mut sim, config, 64, nodes, Duration::from_millis(2)).expect("join");
    sim.run_for(Duration::from_secs(2));
    let before = sim.total_counters();
    let client = sim.add_client();
    sim.join(client, members[1]);
    assert!(sim.run_until(Duration::from_secs(10), |s| s.is_joined(client)));
    let data = random_bytes(9, MAX_FILE_SIZE as usize);
    let start = sim.now();
    let hash = sim.start_upload(client, "cost.bin", data.clone()).expect("upload");
    assert!(sim.run_until(Duration::from_secs(60), |s| s.app_done(client)));
    assert_eq!(sim.upload_result(client), Some(Ok(hash)));
    let upload_ms = (sim.now() - start).total_millis();
    // Let replication finish.
    sim.run_for(Duration::from_secs(10));
    let after = sim.total_counters();
    let mut min_holders = usize::MAX;
    for chunk in data.chunks(8192) {
        let mut fragment = [0u8; 8192];
        fragment[..chunk.len()].copy_from_slice(chunk);
        let h = FragmentHash::of(&fragment);
        min_holders = min_holders.min(sim.holders_of(&h).len());
    }
    let d = diff(&after, &before);
    Cost {
        datagrams: d.sent_total().datagrams,
        bytes: d.sent_total().bytes,
        newfile: d.sent_of(MessageKind::NewFile).datagrams,
        filefrag: d.sent_of(MessageKind::FileFrag).datagrams,
        min_holders,
        upload_ms,
    }
}

fn diff(after: &Counters, before: &Counters) -> Counters {
    let mut d = after.clone();
    for (a, b) in d.sent.iter_mut().zip(before.sent.iter()) {
        a.datagrams -= b.datagrams;
        a.bytes -= b.bytes;
    }
    d
}

fn main() {
    let nodes: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(256);
    let flood = measure(nodes, Announce::Flood { breadth: 4 });
    let shard = measure(nodes, Announce::Shard);
    let show = |c: &Cost| {
        format!(
            "{{\"datagrams\": {}, \"bytes\": {}, \"newfile_datagrams\": {}, \"filefrag_datagrams\": {}, \"min_holders\": {}, \"virtual_upload_ms\": {}}}",
            c.datagrams, c.bytes, c.newfile, c.filefrag, c.min_holders, c.upload_ms
        )
    };
    println!(
        "{{\"nodes\": {nodes}, \"file_bytes\": {MAX_FILE_SIZE}, \"flood\": {}, \"shard\": {}}}",
        show(&flood),
        show(&shard)
    );
}
