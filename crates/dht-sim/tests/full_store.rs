//! A member whose store fills stops taking fragments, says so once, and
//! its mates keep R copies on the others; when room returns, it takes
//! fragments again.

use dht_core::node::Event;
use dht_core::store::FragmentStore;
use dht_core::wire::MessageKind;
use dht_core::{Config, Duration, Shard};
use dht_sim::scene::{file_hashes, join_members, random_bytes};
use dht_sim::{Faults, Sim};

#[test]
fn a_full_member_is_replaced_by_the_next_in_rank_without_a_refetch_loop_and_comes_back() {
    let mut sim = Sim::new(31, Faults::default());
    let members =
        join_members(&mut sim, Config::member(), 64, 80, Duration::from_millis(2)).unwrap();
    // The shard with the most members.
    let count = |sim: &Sim, s: Shard| {
        members.iter().filter(|m| sim.node(**m).unwrap().shard() == s).count()
    };
    let shard = Shard::all().max_by_key(|s| count(&sim, *s)).unwrap();
    let small = sim.add_member_in_shard(Config::member(), 4, shard);
    sim.join(small, members[0]);
    assert!(sim.run_until(Duration::from_secs(10), |s| s.is_joined(small)));
    sim.run_for(Duration::from_secs(3));
    let mates = members.iter().filter(|m| sim.node(**m).unwrap().shard() == shard).count();
    assert!(mates >= 3, "shard {shard} has {mates} other members");

    let client = sim.add_client();
    sim.join(client, members[1]);
    assert!(sim.run_until(Duration::from_secs(10), |s| s.is_joined(client)));
    // A file of which the small member should hold more than its 4
    // (among the top 3 of its shard by rendezvous score): which file that
    // is depends on the ids the run drew.
    let ids: Vec<_> = members
        .iter()
        .chain([&small])
        .filter(|m| sim.node(**m).unwrap().shard() == shard)
        .map(|m| sim.node(*m).unwrap().id())
        .collect();
    let small_id = sim.node(small).unwrap().id();
    let ranked_among_top = |data: &[u8]| {
        file_hashes("big.bin", data)
            .into_iter()
            .filter(|h| h.shard() == shard)
            .filter(|h| {
                let mine = dht_core::holders::rendezvous_score(h, small_id);
                ids.iter().filter(|id| dht_core::holders::rendezvous_score(h, **id) > mine).count()
                    < 3
            })
            .count()
    };
    let data = (8..200)
        .map(|seed| random_bytes(seed, dht_core::MAX_FILE_SIZE as usize))
        .find(|data| ranked_among_top(data) >= 6)
        .expect("some file ranks the small member among the top 3 of 6 of its fragments");
    let hash = sim.start_upload(client, "big.bin", data.clone()).unwrap();
    assert!(sim.run_until(Duration::from_secs(120), |s| s.app_done(client)));
    assert_eq!(sim.upload_result(client), Some(Ok(hash)));
    sim.run_for(Duration::from_secs(20));

    let in_shard: Vec<_> =
        file_hashes("big.bin", &data).into_iter().filter(|h| h.shard() == shard).collect();
    let node = sim.node(small).unwrap();
    let fulls = sim.events(small).iter().filter(|e| matches!(e, Event::StoreFull)).count();
    let gets = node.counters().sent_of(MessageKind::FileGet).datagrams;
    let pieces = node.counters().received_of(MessageKind::FileFrag).bytes;
    println!(
        "{} fragments of shard {shard}; the small member holds {} of 4, said full {fulls} time(s), \
         sent {gets} FILEGETs, received {pieces} bytes of pieces",
        in_shard.len(),
        node.store().len()
    );
    assert_eq!(node.store().len(), 4);
    assert_eq!(fulls, 1, "full once, said once");
    // No refetch loop: it asked for little more than what it could keep.
    assert!(pieces <= 8 * 8192 * 4, "{pieces} bytes of pieces for a store of 4");
    // R copies of every fragment: on the other members for those the
    // full member could not keep, counting its copy for the 4 it keeps.
    for h in &in_shard {
        let kept = usize::from(node.store().contains(h));
        let others = sim.holders_of(h).iter().filter(|x| **x != small).count();
        assert!(others + kept >= 3, "{h} has {others} copies besides the full member's {kept}");
    }

    // Room again: it says so and takes its share once more.
    for _ in 0..2 {
        let victim = sim.node(small).unwrap().store().hash_at(0).unwrap();
        let _ = sim.node_mut(small).unwrap().store_mut().remove(&victim);
    }
    sim.run_for(Duration::from_secs(70));
    let back =
        sim.events(small).iter().filter(|e| matches!(e, Event::StoreAvailable { .. })).count();
    println!(
        "after freeing room: store available {back} time(s), holds {}",
        sim.node(small).unwrap().store().len()
    );
    println!("{}", sim.node(small).unwrap().counters());
    assert!(back >= 1);
    assert_eq!(sim.node(small).unwrap().store().len(), 4, "it took fragments again");
}
