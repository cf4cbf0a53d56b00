//! Announcements go to the holders of a fragment alone: an upload reaches
//! its top R holders in every shard for a few offers per fragment, not a
//! flood of the overlay (the original broadcast every NEWFILE to every
//! node, 5 million datagrams for a 2 MB file on 256 nodes).

use dht_core::wire::MessageKind;
use dht_core::{Config, Duration, FragmentHash};
use dht_sim::scene::{join_members, random_bytes};
use dht_sim::{Faults, Sim};

#[test]
fn an_upload_reaches_its_holders_with_a_few_offers_per_fragment() {
    let config = Config::member();
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
    sim.run_for(Duration::from_secs(2));
    let after = sim.total_counters();
    let fragments: Vec<FragmentHash> = data
        .chunks(8192)
        .map(|c| {
            let mut f = [0u8; 8192];
            f[..c.len()].copy_from_slice(c);
            FragmentHash::of(&f)
        })
        .collect();
    let copies: Vec<usize> = fragments.iter().map(|h| sim.holders_of(h).len()).collect();
    // 64 members, 4 per shard: R = 3 copies of everything.
    assert!(copies.iter().all(|c| *c == 3), "{copies:?}");
    let offers = after.sent_of(MessageKind::NewFile).datagrams
        - before.sent_of(MessageKind::NewFile).datagrams;
    let all = after.sent_total().datagrams - before.sent_total().datagrams;
    println!("{} fragments: {offers} NEWFILE datagrams, {all} datagrams in all", fragments.len());
    // The client's offer and two announcements per fragment, with room for
    // retries: far from a flood.
    assert!(offers <= 6 * (fragments.len() as u64 + 1), "{offers} offers");
}
