//! A crashed node keeps its store like a disk; restarted with the same id it
//! rejoins and serves what it holds.

use dht_core::store::FragmentStore;
use dht_core::{Config, Duration};
use dht_sim::scene::{join_members, random_bytes};
use dht_sim::{Faults, Sim};

#[test]
fn restarted_node_rejoins_with_its_id_and_serves_its_fragments() {
    let mut sim = Sim::new(31, Faults::default());
    let members =
        join_members(&mut sim, Config::member(), 64, 48, Duration::from_millis(2)).unwrap();
    sim.run_for(Duration::from_secs(1));
    let data = random_bytes(4, 150_000);
    let sender = sim.add_client();
    sim.join(sender, members[0]);
    assert!(sim.run_until(Duration::from_secs(10), |s| s.is_joined(sender)));
    let hash = sim.start_upload(sender, "crash.bin", data.clone()).unwrap();
    assert!(sim.run_until(Duration::from_secs(60), |s| s.app_done(sender)));
    sim.run_for(Duration::from_secs(2));

    // Crash a node that holds fragments, and every other member of its
    // shard, so that only the crashed node's disk has them.
    let victim = *members.iter().max_by_key(|&&m| sim.node(m).unwrap().store().len()).unwrap();
    let shard = sim.node(victim).unwrap().shard();
    let id = sim.node(victim).unwrap().id();
    let held = sim.node(victim).unwrap().store().len();
    let mates: Vec<_> =
        members.iter().copied().filter(|&m| sim.node(m).unwrap().shard() == shard).collect();
    for &m in &mates {
        sim.crash(m);
    }
    assert!(!sim.is_up(victim));
    sim.run_for(Duration::from_secs(1));

    sim.restart(victim, members.iter().copied().find(|m| !mates.contains(m)).unwrap());
    assert!(sim.run_until(Duration::from_secs(10), |s| s.is_joined(victim)));
    assert_eq!(sim.node(victim).unwrap().id(), id, "same id after restart");
    assert_eq!(sim.node(victim).unwrap().store().len(), held, "store survived the crash");
    sim.run_for(Duration::from_secs(2));

    let receiver = sim.add_client();
    sim.join(receiver, members.iter().copied().find(|m| !mates.contains(m)).unwrap());
    assert!(sim.run_until(Duration::from_secs(10), |s| s.is_joined(receiver)));
    sim.start_download(receiver, hash);
    assert!(sim.run_until(Duration::from_secs(60), |s| s.app_done(receiver)));
    match sim.download_result(receiver) {
        Some(Ok(bytes)) => assert!(*bytes == data),
        other => panic!("download after restart failed: {other:?}"),
    }
    assert!(sim.node(victim).unwrap().counters().fragments_served > 0);
}
