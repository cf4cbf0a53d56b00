//! Index fragments stored with more copies than R: the count travels with
//! the fragment, repair restores it after a crash, and the extra copies a
//! restart leaves are dropped down to it, never below.

use dht_core::upload::{hash_file, Bytes, Item};
use dht_core::{Config, Duration, FragmentHash, IndexName};
use dht_sim::scene::{join_members, random_bytes};
use dht_sim::{Faults, HostId, Sim};

const R: usize = 3;
const INDEX_COPIES: usize = 8;

/// `nodes` members joined and settled, and a client joined through one.
fn network(seed: u64, nodes: usize) -> (Sim, Vec<HostId>, HostId) {
    let mut sim = Sim::new(seed, Faults::default());
    let members =
        join_members(&mut sim, Config::member(), 128, nodes, Duration::from_millis(2)).unwrap();
    sim.run_for(Duration::from_secs(2));
    let client = sim.add_client();
    sim.join(client, members[5]);
    assert!(sim.run_until(Duration::from_secs(10), |s| s.is_joined(client)));
    (sim, members, client)
}

#[test]
fn index_fragments_keep_the_copies_their_upload_asked_for() {
    // 10 members a shard: room for 8 copies and for losing two holders.
    let (mut sim, members, client) = network(31, 160);
    // Two leaf indexes and a root of height 2.
    let data = random_bytes(9, 2_500_000);
    let (mut indexes, mut fragments) = (Vec::new(), Vec::new());
    let name = IndexName::from_file_name("kept.bin");
    hash_file(name, &mut Bytes(&data[..]), |item, hash| match item {
        Item::Data(_) => fragments.push(hash),
        Item::Index | Item::Root => indexes.push(hash),
    })
    .unwrap();
    assert_eq!(indexes.len(), 3);
    // Stored plain first (R copies of everything), then again asking for
    // more copies of the indexes: the holders raise the count they keep.
    let plain = sim.start_upload(client, "kept.bin", data.clone()).unwrap();
    assert!(sim.run_until(Duration::from_secs(60), |s| s.app_done(client)));
    assert_eq!(sim.upload_result(client), Some(Ok(plain)));
    assert!(sim.run_until(Duration::from_secs(30), |s| indexes.iter().all(|h| s.copies(h) == R)));
    let hash =
        sim.start_upload_with_copies(client, "kept.bin", data, INDEX_COPIES as u8, 0).unwrap();
    assert!(sim.run_until(Duration::from_secs(60), |s| s.app_done(client)));
    assert_eq!(sim.upload_result(client), Some(Ok(hash)));
    let settled = |s: &Sim, want: usize| {
        indexes.iter().all(|h| s.copies(h) == want) && fragments.iter().all(|h| s.copies(h) >= R)
    };
    assert!(
        sim.run_until(Duration::from_secs(120), |s| settled(s, INDEX_COPIES)),
        "index copies {:?}",
        indexes.iter().map(|h| sim.copies(h)).collect::<Vec<_>>()
    );
    let data_copies = |s: &Sim| fragments.iter().map(|h| s.copies(h)).max().unwrap_or(0);
    // Eight copies are four in each of two shards: the fragment's own and
    // the next (a shard emptied by a crash does not take them all).
    for index in &indexes {
        let mut per_shard = [0usize; 16];
        for holder in sim.holders_of(index) {
            per_shard[sim.node(holder).unwrap().shard().index()] += 1;
        }
        let own = index.shard().index();
        let mut want = [0usize; 16];
        want[own] = 4;
        want[(own + 1) % 16] = 4;
        assert_eq!(per_shard, want, "copies of {index:?} by shard");
    }

    // Two holders of the root crash: repair brings it back to 8 (4 in
    // each of its two shards, of 10 members each).
    let root: FragmentHash = hash;
    let victims: Vec<_> = sim.holders_of(&root).into_iter().take(2).collect();
    for &v in &victims {
        sim.crash(v);
    }
    let shard = root.shard();
    let left = members
        .iter()
        .filter(|&&m| sim.is_up(m) && sim.node(m).is_some_and(|n| n.shard() == shard))
        .count();
    let attainable = INDEX_COPIES.min(left);
    assert!(attainable >= 7, "the shard has {left} members left");
    let start = sim.now();
    assert!(
        sim.run_until(Duration::from_secs(120), |s| s.copies(&root) == attainable),
        "root at {} copies, {attainable} attainable",
        sim.copies(&root)
    );
    println!(
        "root back to {attainable} copies {} after two of its holders crashed",
        sim.now() - start
    );

    // They come back on their stores: the extra copies go, down to 8.
    // Each through a member that stayed up (not through itself).
    let seed = *members.iter().find(|m| !victims.contains(m)).unwrap();
    for &v in &victims {
        sim.restart(v, seed);
    }
    sim.run_for(Duration::from_secs(5));
    let start = sim.now();
    let mut fewest = usize::MAX;
    while !settled(&sim, INDEX_COPIES) && sim.now() - start < Duration::from_secs(600) {
        sim.run_for(Duration::from_secs(5));
        fewest = fewest.min(indexes.iter().map(|h| sim.copies(h)).min().unwrap_or(0));
    }
    assert!(
        settled(&sim, INDEX_COPIES),
        "index copies {:?}",
        indexes.iter().map(|h| sim.copies(h)).collect::<Vec<_>>()
    );
    assert!(fewest >= INDEX_COPIES, "an index fragment fell to {fewest} copies");
    // The restarted holders brought their data fragments back too: the
    // extra copies of those go down to R (a maintenance round or two),
    // never up to the index count.
    let start = sim.now();
    while data_copies(&sim) > R + 1 && sim.now() - start < Duration::from_secs(300) {
        sim.run_for(Duration::from_secs(5));
    }
    assert!(
        data_copies(&sim) <= R + 1,
        "data fragments are kept at R, not at the index count: {}",
        data_copies(&sim)
    );
}

#[test]
fn data_fragments_asked_in_fewer_copies_than_r_stay_that_few_and_are_repaired() {
    let (mut sim, _, client) = network(32, 96);
    let data = random_bytes(10, 600_000);
    let mut fragments = Vec::new();
    hash_file(IndexName::from_file_name("few.bin"), &mut Bytes(&data[..]), |item, hash| {
        if let Item::Data(_) = item {
            fragments.push(hash);
        }
    })
    .unwrap();
    let hash = sim.start_upload_with_copies(client, "few.bin", data, 6, 2).unwrap();
    assert!(sim.run_until(Duration::from_secs(60), |s| s.app_done(client)));
    assert_eq!(sim.upload_result(client), Some(Ok(hash)));
    let exactly = |s: &Sim, n: usize| fragments.iter().all(|h| s.copies(h) == n);
    assert!(
        sim.run_until(Duration::from_secs(120), |s| exactly(s, 2) && s.copies(&hash) == 6),
        "data copies {:?}",
        fragments.iter().map(|h| sim.copies(h)).collect::<Vec<_>>()
    );
    // Many maintenance rounds (HOLDINGS pages between mates, the extra-copy
    // check): no third copy appears.
    let start = sim.now();
    while sim.now() - start < Duration::from_secs(300) {
        sim.run_for(Duration::from_secs(10));
        let most = fragments.iter().map(|h| sim.copies(h)).max().unwrap_or(0);
        assert!(most <= 2, "a data fragment has {most} copies after {}", sim.now() - start);
    }
    // One holder of each of a few fragments crashes: each is back to 2.
    let victim = sim.holders_of(&fragments[0])[0];
    sim.crash(victim);
    assert!(
        sim.run_until(Duration::from_secs(120), |s| exactly(s, 2)),
        "data copies after a crash {:?}",
        fragments.iter().map(|h| sim.copies(h)).collect::<Vec<_>>()
    );
}

#[test]
fn an_index_whose_own_shard_died_is_read_from_the_next_shards() {
    // 4 members a shard, as on 64 nodes: 16 copies of an index are 4 in
    // each of 4 shards, every member of them.
    let (mut sim, members, client) = network(33, 64);
    // One data fragment and its root, in different shards (the data has
    // no copies outside its own).
    let (data, fragment) = (0..)
        .map(|seed| {
            let data = random_bytes(seed, 5_000);
            let mut fragment = None;
            let name = IndexName::from_file_name("small.bin");
            let root = hash_file(name, &mut Bytes(&data[..]), |item, hash| {
                if let Item::Data(_) = item {
                    fragment = Some(hash);
                }
            })
            .unwrap();
            (data, fragment.unwrap(), root)
        })
        .find(|(_, fragment, root)| fragment.shard() != root.shard())
        .map(|(data, fragment, _)| (data, fragment))
        .unwrap();
    let root = sim.start_upload_with_copies(client, "small.bin", data.clone(), 16, 0).unwrap();
    assert!(sim.run_until(Duration::from_secs(60), |s| s.app_done(client)));
    assert_eq!(sim.upload_result(client), Some(Ok(root)));
    let shard_of = |s: &Sim, h: HostId| s.node(h).map(|n| n.shard());
    let spread: Vec<_> = (0..4).map(|j| (root.shard().get() + j) % 16).collect();
    let in_spread = |s: &Sim| {
        let mut shards: Vec<u8> =
            s.holders_of(&root).iter().filter_map(|&h| shard_of(s, h)).map(|x| x.get()).collect();
        shards.sort_unstable();
        shards.dedup();
        let mut want = spread.clone();
        want.sort_unstable();
        shards == want
    };
    assert!(sim.run_until(Duration::from_secs(60), in_spread), "root not in 4 shards");
    assert!(sim.copies(&fragment) >= 1);

    // Every member of the root's own shard crashes.
    let victims: Vec<HostId> =
        members.iter().copied().filter(|&m| shard_of(&sim, m) == Some(root.shard())).collect();
    assert!(!victims.is_empty());
    for &v in &victims {
        sim.crash(v);
    }
    assert_eq!(sim.copies(&root), sim.holders_of(&root).len());
    sim.start_download(client, root);
    assert!(sim.run_until(Duration::from_secs(60), |s| s.app_done(client)));
    assert_eq!(sim.download_result(client), Some(&Ok(data)), "{} victims", victims.len());
}
