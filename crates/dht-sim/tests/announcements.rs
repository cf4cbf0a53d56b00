//! The original flooding NEWFILE and shard-targeted announcements reach the
//! same holders; the targeted ones cost a small fraction of the datagrams.

use dht_core::config::Announce;
use dht_core::counters::Counters;
use dht_core::wire::MessageKind;
use dht_core::{Config, Duration, FragmentHash};
use dht_sim::scene::{join_members, random_bytes};
use dht_sim::{Faults, Sim};

struct Outcome {
    sent: Counters,
    holders: Vec<usize>,
}

fn upload_with(announce: Announce) -> Outcome {
    let mut config = Config::member();
    config.announce = announce;
    let mut sim = Sim::new(5, Faults::default());
    let members = join_members(&mut sim, config, 64, 64, Duration::from_millis(2)).unwrap();
    sim.run_for(Duration::from_secs(2));
    let before = sim.total_counters();
    let client = sim.add_client();
    sim.join(client, members[3]);
    assert!(sim.run_until(Duration::from_secs(10), |s| s.is_joined(client)));
    let data = random_bytes(3, 200_000);
    let hash = sim.start_upload(client, "a", data.clone()).unwrap();
    assert!(sim.run_until(Duration::from_secs(60), |s| s.app_done(client)));
    assert_eq!(sim.upload_result(client), Some(Ok(hash)));
    // Long enough for the announcements, not for a maintenance round.
    sim.run_for(Duration::from_secs(1));
    let mut sent = sim.total_counters();
    for (a, b) in sent.sent.iter_mut().zip(before.sent.iter()) {
        a.datagrams -= b.datagrams;
        a.bytes -= b.bytes;
    }
    let holders = data
        .chunks(8192)
        .map(|c| {
            let mut f = [0u8; 8192];
            f[..c.len()].copy_from_slice(c);
            sim.holders_of(&FragmentHash::of(&f)).len()
        })
        .collect();
    Outcome { sent, holders }
}

#[test]
fn shard_targeted_announcements_reach_every_holder_for_a_fraction_of_the_flood() {
    let flood = upload_with(Announce::Flood { breadth: 4 });
    let shard = upload_with(Announce::Shard);
    // Same network (same seed): every fragment ends on every member of its
    // shard either way.
    assert_eq!(flood.holders, shard.holders);
    assert!(shard.holders.iter().all(|h| *h >= 2), "{:?}", shard.holders);
    let flood_newfile = flood.sent.sent_of(MessageKind::NewFile).datagrams;
    let shard_newfile = shard.sent.sent_of(MessageKind::NewFile).datagrams;
    println!(
        "NEWFILE datagrams: flood {flood_newfile}, shard {shard_newfile}; all datagrams: flood {}, shard {}",
        flood.sent.sent_total().datagrams,
        shard.sent.sent_total().datagrams
    );
    assert!(shard_newfile * 10 < flood_newfile);
    assert!(shard.sent.sent_total().bytes < flood.sent.sent_total().bytes);
}
