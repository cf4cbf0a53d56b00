//! Copies beyond R (a crashed holder back on its old store after repair
//! made new copies elsewhere) are dropped once the top R hold them.

use dht_core::{Config, Duration, FragmentHash};
use dht_sim::scene::{file_hashes, join_members, random_bytes};
use dht_sim::{Faults, HostId, Sim};

const R: usize = 3;

/// 64 members (seeded by `seed`) holding an 800 KB file `name` (bytes
/// from `data`) with R copies of every fragment: the simulator, the
/// members and the file's fragments with its index.
fn stored(seed: u64, name: &str, data: u64) -> (Sim, Vec<HostId>, Vec<FragmentHash>) {
    let mut sim = Sim::new(seed, Faults::default());
    let members =
        join_members(&mut sim, Config::member(), 64, 80, Duration::from_millis(2)).unwrap();
    sim.run_for(Duration::from_secs(2));
    let client = sim.add_client();
    sim.join(client, members[3]);
    assert!(sim.run_until(Duration::from_secs(10), |s| s.is_joined(client)));
    let data = random_bytes(data, 800_000);
    let hash = sim.start_upload(client, name, data.clone()).unwrap();
    assert!(sim.run_until(Duration::from_secs(60), |s| s.app_done(client)));
    assert_eq!(sim.upload_result(client), Some(Ok(hash)));
    let mut all = file_hashes(name, &data);
    all.push(hash);
    assert!(sim.run_until(Duration::from_secs(30), |s| all.iter().all(|h| s.copies(h) >= R)));
    (sim, members, all)
}

#[test]
fn extra_copies_are_dropped_once_the_top_r_hold_them_and_no_fragment_falls_below_r() {
    let (mut sim, members, all) = stored(12, "x.bin", 5);

    // The member holding most crashes; repair copies its fragments to the
    // next in rank; it comes back on its old store.
    let victim = *members
        .iter()
        .max_by_key(|m| all.iter().filter(|h| sim.holders_of(h).contains(m)).count())
        .unwrap();
    sim.crash(victim);
    assert!(sim.run_until(Duration::from_secs(60), |s| all.iter().all(|h| s.copies(h) >= R)));
    sim.restart(victim, members[0]);
    sim.run_for(Duration::from_secs(5));
    let extra = |s: &Sim| all.iter().filter(|h| s.copies(h) > R).count();
    let before = extra(&sim);
    assert!(before > 0, "the restart made no extra copy: the test shows nothing");
    let start = sim.now();
    let mut lowest = usize::MAX;
    while extra(&sim) > 0 && sim.now() - start < Duration::from_secs(600) {
        sim.run_for(Duration::from_secs(5));
        lowest = lowest.min(all.iter().map(|h| sim.copies(h)).min().unwrap_or(0));
    }
    let dropped = sim.total_counters().extra_copies_dropped;
    println!(
        "{before} fragments had more than {R} copies; none after {} ({dropped} copies dropped); \
         fewest copies meanwhile: {lowest}",
        sim.now() - start
    );
    assert_eq!(extra(&sim), 0);
    assert!(lowest >= R, "a fragment fell to {lowest} copies");
    assert!(dropped as usize >= before);
}

#[test]
fn a_member_that_moves_to_an_empty_shard_drops_what_it_held_of_its_old_shard() {
    let (mut sim, members, all) = stored(21, "y.bin", 6);

    // Every member of one shard crashes: a member of another moves there,
    // with the fragments of its old shard it holds.
    let shard_of = |s: &Sim, m| s.node(m).map(|n| n.shard());
    let emptied = shard_of(&sim, members[5]).unwrap();
    let was: Vec<_> = members.iter().map(|m| shard_of(&sim, *m)).collect();
    for m in &members {
        if shard_of(&sim, *m) == Some(emptied) {
            sim.crash(*m);
        }
    }
    let moved =
        |s: &Sim| members.iter().zip(&was).any(|(m, w)| s.is_up(*m) && shard_of(s, *m) != *w);
    assert!(sim.run_until(Duration::from_secs(300), moved), "nobody moved to the empty shard");
    let outside = |s: &Sim| -> usize {
        all.iter()
            .map(|h| s.holders_of(h).iter().filter(|m| shard_of(s, **m) != Some(h.shard())).count())
            .sum()
    };
    let before = outside(&sim);
    assert!(
        before > 0,
        "the member that moved held nothing of its old shard: the test shows nothing"
    );
    // Its old shard keeps R copies without it; then its copies go.
    let start = sim.now();
    assert!(
        sim.run_until(Duration::from_secs(600), |s| outside(s) == 0),
        "{} copies still held outside their shard after {}",
        outside(&sim),
        sim.now() - start
    );
    let kept = all.iter().filter(|h| h.shard() != emptied).all(|h| sim.copies(h) >= R);
    println!(
        "{before} copies held outside their shard after the move, none {} later",
        sim.now() - start
    );
    assert!(kept, "a fragment fell below {R} copies");
}
